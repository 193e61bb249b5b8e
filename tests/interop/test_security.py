"""Third-party clients against sluiced's secured listeners, configured the
way MSK users configure them:

* kafka-python and confluent-kafka (librdkafka) over SASL_SSL with
  SCRAM-SHA-512 (users created with `sluice users add`) and PLAIN;
* MSK IAM through OAUTHBEARER with the official aws-msk-iam-sasl-signer
  token (kafka-python's token-provider pattern and librdkafka's oauth_cb);
* the `sluice` CLI with the AWS_MSK_IAM mechanism (the JSON message of the
  Java aws-msk-iam-auth library);
* IAM policy authorization: an allowed topic works, a denied one fails with
  TopicAuthorizationFailed;
* a plaintext client on the TLS port is refused, with the reason logged.

The broker runs with its own listeners and `[auth]` table, so this module
starts its own sluiced (it is sluiced-only: the test Kafka has no SASL).
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO_ROOT, SLUICED_BIN, _die_with_parent, free_port, port_accepts

pytestmark = pytest.mark.sluiced_only("needs sluiced's SASL/TLS listeners")

SLUICE = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "release" / "sluice"))
REGION = "eu-west-1"
ACCOUNT = "210987654321"
AKID = "AKIAINTEROPEXAMPLE01"
SECRET = "interop/secret/for/tests/only/000000000"
ARN = f"arn:aws:iam::{ACCOUNT}:role/interop-app"
# A second principal, governed by AWS's documented example policy verbatim
# (create-iam-access-control-policies, for this cluster's name and account).
EXAMPLE_AKID = "AKIAINTEROPEXAMPLE02"
EXAMPLE_SECRET = "interop/secret/for/tests/only/111111111"
EXAMPLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/documented-example"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path) -> None:
    """A CA and a server certificate for 127.0.0.1/localhost (openssl CLI)."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=sluice interop CA", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    (d / "keystore.pem").write_text((d / "server.pem").read_text() + (d / "server.key").read_text())


class SecureBroker:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.plain_port, self.ssl_port, self.iam_port = free_port(), free_port(), free_port()
        make_pki(workdir)
        cluster = f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/interop/*"
        topics = f"arn:aws:kafka:{REGION}:{ACCOUNT}:topic/interop/*/iam-*"
        groups = f"arn:aws:kafka:{REGION}:{ACCOUNT}:group/interop/*/*"
        app_policy = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster",
                                           "kafka-cluster:WriteDataIdempotently"], "Resource": cluster},
            {"Effect": "Allow", "Action": ["kafka-cluster:*Topic*", "kafka-cluster:WriteData",
                                           "kafka-cluster:ReadData"], "Resource": topics},
            {"Effect": "Allow", "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
             "Resource": groups},
        ]}
        documented_example = {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow",
             "Action": ["kafka-cluster:Connect", "kafka-cluster:AlterCluster", "kafka-cluster:DescribeCluster"],
             "Resource": [f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/interop/abcdef01-2345-6789-abcd-ef0123456789"]},
            {"Effect": "Allow",
             "Action": ["kafka-cluster:*Topic*", "kafka-cluster:WriteData", "kafka-cluster:ReadData"],
             "Resource": [f"arn:aws:kafka:{REGION}:{ACCOUNT}:topic/interop/*"]},
            {"Effect": "Allow",
             "Action": ["kafka-cluster:AlterGroup", "kafka-cluster:DescribeGroup"],
             "Resource": [f"arn:aws:kafka:{REGION}:{ACCOUNT}:group/interop/*"]},
        ]}
        everything = {"Version": "2012-10-17",
                      "Statement": [{"Effect": "Allow", "Action": "kafka-cluster:*", "Resource": "*"}]}
        conf = f'''
"ssl.keystore.location" = "{workdir / 'keystore.pem'}"
"sasl.enabled.mechanisms" = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512,OAUTHBEARER,AWS_MSK_IAM"
"auto.create.topics.enable" = false
"group.initial.rebalance.delay.ms" = 0
"offsets.topic.num.partitions" = 4

[auth]
region = "{REGION}"
account = "{ACCOUNT}"
cluster_name = "interop"
cluster_uuid = "abcdef01-2345-6789-abcd-ef0123456789"
plain_users = {{ frank = "frank-secret" }}

[[auth.iam_credentials]]
access_key_id = "{AKID}"
secret_access_key = "{SECRET}"
principal_arn = "{ARN}"

[[auth.iam_credentials]]
access_key_id = "{EXAMPLE_AKID}"
secret_access_key = "{EXAMPLE_SECRET}"
principal_arn = "{EXAMPLE_ARN}"

[[auth.policies]]
principal = "{ARN}"
document = \'\'\'{json.dumps(app_policy)}\'\'\'

[[auth.policies]]
principal = "{EXAMPLE_ARN}"
document = \'\'\'{json.dumps(documented_example)}\'\'\'

[[auth.policies]]
principal = "User:*"
document = \'\'\'{json.dumps(everything)}\'\'\'
'''
        (workdir / "sluiced.toml").write_text(conf)
        self.log_path = workdir / "broker.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        cmd = [str(SLUICED_BIN), "--data-dir", str(self.workdir / "data"),
               "--config", str(self.workdir / "sluiced.toml"),
               "--listen", f"PLAINTEXT://127.0.0.1:{self.plain_port}",
               "--listen", f"SASL_SSL://127.0.0.1:{self.ssl_port}",
               "--listen", f"SASL_PLAINTEXT://127.0.0.1:{self.iam_port}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 30
        while not port_accepts(self.plain_port):
            assert self.proc.poll() is None, f"sluiced exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"sluiced did not start:\n{self.log()}"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sluice(self, *args: str, port: int | None = None, env: dict | None = None, inp: str | None = None):
        return subprocess.run([str(SLUICE), "-b", f"127.0.0.1:{port or self.plain_port}", *args],
                              input=inp, capture_output=True, text=True, timeout=60,
                              env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    if not SLUICE.exists():
        pytest.fail(f"{SLUICE} does not exist: cargo build --release -p sluice-cli")
    b = SecureBroker(tmp_path_factory.mktemp("secure"))
    b.start()
    try:
        yield b
    finally:
        b.stop()


def new_topic(secure: SecureBroker, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    r = secure.sluice("topics", "create", name, "--partitions", "2")
    assert r.returncode == 0, r.stderr
    return name


def test_kafka_python_scram_sha512_over_tls_with_cli_managed_user(secure):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError

    r = secure.sluice("users", "add", "grace", "--mechanism", "SCRAM-SHA-512", "--iterations", "8192",
                      env={"SLUICE_USER_PASSWORD": "grace-secret"})
    assert r.returncode == 0, r.stderr
    listed = secure.sluice("users", "list")
    assert "grace" in listed.stdout and "SCRAM-SHA-512 (iterations 8192)" in listed.stdout, listed.stdout
    topic = new_topic(secure, "scram")
    common = dict(bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", security_protocol="SASL_SSL",
                  ssl_cafile=str(secure.workdir / "ca.pem"), sasl_mechanism="SCRAM-SHA-512",
                  sasl_plain_username="grace", sasl_plain_password="grace-secret")
    producer = KafkaProducer(acks="all", **common)
    for i in range(10):
        producer.send(topic, key=b"k", value=f"v{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000, **common)
    values = [m.value.decode() for m in consumer]
    consumer.close()
    assert values == [f"v{i}" for i in range(10)]

    with pytest.raises(KafkaError):
        bad = KafkaProducer(**{**common, "sasl_plain_password": "wrong"}, max_block_ms=5000)
        bad.send(topic, value=b"x").get(timeout=10)
    assert "SASL authentication failed" in secure.log()


def test_confluent_kafka_scram_sha512_over_tls(secure):
    """librdkafka with SCRAM-SHA-512 over SSL; PLAIN users work the same way."""
    from confluent_kafka import Consumer, Producer

    r = secure.sluice("users", "add", "heidi", "--mechanism", "SCRAM-SHA-512", inp="heidi-secret\n")
    assert r.returncode == 0, r.stderr
    topic = new_topic(secure, "scram")
    base = {"bootstrap.servers": f"127.0.0.1:{secure.ssl_port}", "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(secure.workdir / "ca.pem")}
    for conf in ({**base, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "heidi", "sasl.password": "heidi-secret"},
                 {**base, "sasl.mechanism": "PLAIN", "sasl.username": "frank", "sasl.password": "frank-secret"}):
        p = Producer({**conf, "acks": "all", "enable.idempotence": False})
        errors = []
        for i in range(10):
            # `errors` bound per iteration: each producer reports into its own list.
            p.produce(topic, key=b"k", value=f"v{i}".encode(),
                      on_delivery=lambda e, m, errors=errors: errors.append(e) if e else None)
        assert p.flush(30) == 0 and not errors, (conf["sasl.mechanism"], errors)
    c = Consumer({**base, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "heidi", "sasl.password": "heidi-secret",
                  "group.id": f"g-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 20 and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.append(m.value().decode())
    c.close()
    assert sorted(got) == sorted([f"v{i}" for i in range(10)] * 2)

    errors = []
    bad = Producer({**base, "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "heidi", "sasl.password": "nope",
                    "error_cb": lambda e: errors.append(e)})
    deadline = time.monotonic() + 20
    while not any("SASL" in str(e) or "uthentication" in str(e) for e in errors) and time.monotonic() < deadline:
        bad.poll(0.5)
    assert any("SASL" in str(e) or "uthentication" in str(e) for e in errors), errors
    # Failed logins never put a password into the broker's log.
    assert "nope" not in secure.log() and "heidi-secret" not in secure.log()


@pytest.fixture
def aws_env(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def test_documented_example_policy_lets_a_default_idempotent_producer_write(secure, aws_env, monkeypatch):
    """AWS's example policy grants WriteData on every topic and no
    WriteDataIdempotently. MSK takes the first as the second (KIP-679 made
    idempotence the default), so kafka-python's default producer, which is
    idempotent, gets its producer id and writes; consumers read as usual."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.net.sasl.oauth import AbstractTokenProvider

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", EXAMPLE_AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", EXAMPLE_SECRET)

    class MSKTokenProvider(AbstractTokenProvider):
        def token(self):
            token, _ = MSKAuthTokenProvider.generate_auth_token(REGION)
            return token

    topic = new_topic(secure, "documented")
    common = dict(bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", security_protocol="SASL_SSL",
                  ssl_cafile=str(secure.workdir / "ca.pem"), sasl_mechanism="OAUTHBEARER",
                  sasl_oauth_token_provider=MSKTokenProvider())
    producer = KafkaProducer(**common)
    assert producer.config["enable_idempotence"], "kafka-python's default producer is idempotent"
    for i in range(5):
        producer.send(topic, value=f"d{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id="documented-readers", auto_offset_reset="earliest",
                             consumer_timeout_ms=10000, **common)
    assert sorted(m.value.decode() for m in consumer) == [f"d{i}" for i in range(5)]
    consumer.close()


def test_kafka_python_msk_iam_oauthbearer_with_official_signer(secure, aws_env):
    """The aws-msk-iam-sasl-signer-python pattern for kafka-python."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class MSKTokenProvider(AbstractTokenProvider):
        def token(self):
            token, _ = MSKAuthTokenProvider.generate_auth_token(REGION)
            return token

    topic = new_topic(secure, "iam")
    denied = new_topic(secure, "other")
    common = dict(bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", security_protocol="SASL_SSL",
                  ssl_cafile=str(secure.workdir / "ca.pem"), sasl_mechanism="OAUTHBEARER",
                  sasl_oauth_token_provider=MSKTokenProvider())
    producer = KafkaProducer(acks="all", **common)
    for i in range(5):
        producer.send(topic, value=f"m{i}".encode()).get(timeout=30)
    with pytest.raises(TopicAuthorizationFailedError):
        producer.send(denied, value=b"x").get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(topic, group_id="iam-readers", auto_offset_reset="earliest",
                             consumer_timeout_ms=10000, **common)
    # No key: records spread over both partitions, so compare as a set.
    assert sorted(m.value.decode() for m in consumer) == [f"m{i}" for i in range(5)]
    consumer.close()


def _fixed_token_provider(token):
    from kafka.net.sasl.oauth import AbstractTokenProvider

    class FixedToken(AbstractTokenProvider):
        def token(self):
            return token

    return FixedToken()


def _signer_token(monkeypatch, secret=None):
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    if secret is not None:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    token, _ = MSKAuthTokenProvider.generate_auth_token(REGION)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    return token


@pytest.mark.parametrize("case", ["wrong-secret", "expired"])
def test_kafka_python_msk_iam_bad_tokens_fail_authentication(secure, aws_env, monkeypatch, case):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    if case == "wrong-secret":
        token, reason = _signer_token(monkeypatch, secret="not-the-secret"), "signature"
    else:
        # Signed (correctly) an hour ago: X-Amz-Date + 900 s is long past.
        r = subprocess.run([str(SLUICE), "iam-token", "--region", REGION, "--access-key-id", AKID,
                            "--secret-access-key", SECRET, "--at-epoch", str(int(time.time()) - 3600)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        token, reason = r.stdout.strip(), "expired"
    before = secure.log().count("SASL authentication failed")
    with pytest.raises(KafkaError):
        p = KafkaProducer(bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", security_protocol="SASL_SSL",
                          ssl_cafile=str(secure.workdir / "ca.pem"), sasl_mechanism="OAUTHBEARER",
                          sasl_oauth_token_provider=_fixed_token_provider(token), max_block_ms=5000,
                          api_version=(2, 8), request_timeout_ms=5000)
        p.send("iam-anything", value=b"x").get(timeout=10)
    deadline = time.monotonic() + 10
    while secure.log().count("SASL authentication failed") == before and time.monotonic() < deadline:
        time.sleep(0.2)
    tail = secure.log().split("SASL authentication failed")[-1][:300]
    assert reason in tail, tail
    assert token not in secure.log(), "a token must never be logged"


def test_kafkajs_msk_iam_with_official_js_signer(secure, aws_env):
    """KafkaJS's oauthbearer provider fed by aws-msk-iam-sasl-signer-js."""
    topic = new_topic(secure, "iam")
    denied = new_topic(secure, "other")
    script = Path(__file__).parent / "node" / "kafkajs_msk_iam.js"
    r = subprocess.run(["node", str(script), f"127.0.0.1:{secure.ssl_port}", str(secure.workdir / "ca.pem"),
                        REGION, topic, denied], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kafkajs-msk-iam OK" in r.stdout


def test_confluent_kafka_msk_iam_oauth_cb_with_official_signer(secure, aws_env):
    """The aws-msk-iam-sasl-signer-python pattern for confluent-kafka."""
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    from confluent_kafka import Producer

    def oauth_cb(_config):
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(REGION)
        return token, expiry_ms / 1000

    topic = new_topic(secure, "iam")
    p = Producer({"bootstrap.servers": f"127.0.0.1:{secure.iam_port}", "security.protocol": "SASL_PLAINTEXT",
                  "sasl.mechanism": "OAUTHBEARER", "oauth_cb": oauth_cb, "acks": "all"})
    errors = []
    for i in range(5):
        p.produce(topic, value=f"c{i}".encode(), on_delivery=lambda e, m: errors.append(e) if e else None)
    assert p.flush(30) == 0 and not errors, errors


def test_sluice_cli_aws_msk_iam_json_mechanism(secure, aws_env):
    topic = new_topic(secure, "iam")
    props = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=AWS_MSK_IAM", "-X", f"aws.region={REGION}"]
    r = secure.sluice(*props, "topics", "list", port=secure.iam_port)
    assert r.returncode == 0, r.stderr
    assert topic in r.stdout and "other-" not in r.stdout, r.stdout  # Metadata hides what the role may not describe
    r = secure.sluice(*props, "produce", topic, port=secure.iam_port, inp="a\nb\n")
    assert r.returncode == 0, r.stderr
    wrong = {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    r = secure.sluice(*props, "topics", "list", port=secure.iam_port, env=wrong)
    assert r.returncode != 0 and "signature" in r.stderr, r.stderr


def test_sluice_cli_msk_iam_with_container_endpoint_credentials(secure, tmp_path):
    """The AWS SDK's chain finds the ECS/EKS container endpoint (a local
    stand-in handing out this cluster's test keys); the credentials are
    fetched once for all of the client's connections, not per connection."""
    from aws_standins import CredentialEndpoints

    endpoints = CredentialEndpoints(AKID, SECRET)
    try:
        topic = new_topic(secure, "iam")
        props = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=AWS_MSK_IAM",
                 "-X", f"aws.region={REGION}"]
        # Only what the case sets: no AWS variable of the runner's takes part.
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{endpoints.url}/container",
               "AWS_CONTAINER_AUTHORIZATION_TOKEN": endpoints.container_token}

        def sluice(*args, inp=None):
            return subprocess.run([str(SLUICE), "-b", f"127.0.0.1:{secure.iam_port}", *props, *args], input=inp,
                                  capture_output=True, text=True, timeout=60, env=env)

        r = sluice("produce", topic, inp="a\nb\n")
        assert r.returncode == 0, r.stderr
        assert endpoints.hits("/container") == 1, endpoints.requests
        r = sluice("consume", topic, "--from-beginning", "--max-messages", "2")
        assert r.returncode == 0 and r.stdout.split() == ["a", "b"], r.stderr
    finally:
        endpoints.stop()


def test_garbage_and_oversized_auth_bytes_end_only_that_connection(secure):
    import socket
    import struct

    def frame(api_key, version, body):
        header = struct.pack(">hhih", api_key, version, 99, -1)
        return struct.pack(">i", len(header) + len(body)) + header + body

    # A 10 MB frame before authentication is over sasl.server.max.receive.size.
    s = socket.create_connection(("127.0.0.1", secure.iam_port), timeout=10)
    s.sendall(struct.pack(">i", 10 * 1024 * 1024) + b"\0" * 1024)
    assert s.recv(64) == b""
    s.close()
    # Garbage SASL bytes after a valid SCRAM handshake: an error, then close.
    s = socket.create_connection(("127.0.0.1", secure.iam_port), timeout=10)
    s.sendall(frame(17, 1, struct.pack(">h", 13) + b"SCRAM-SHA-256"))
    size = struct.unpack(">i", s.recv(4))[0]
    resp = b""
    while len(resp) < size:
        resp += s.recv(size - len(resp))
    assert struct.unpack(">h", resp[4:6])[0] == 0
    junk = bytes(range(256)) * 4
    s.sendall(frame(36, 1, struct.pack(">i", len(junk)) + junk))
    size = struct.unpack(">i", s.recv(4))[0]
    resp = b""
    while len(resp) < size:
        resp += s.recv(size - len(resp))
    assert struct.unpack(">h", resp[4:6])[0] == 58  # SASL_AUTHENTICATION_FAILED
    assert s.recv(64) == b""
    s.close()
    # Everyone else is unaffected.
    r = secure.sluice("topics", "list")
    assert r.returncode == 0, r.stderr
    assert "sasl.server.max.receive.size" in secure.log()


def test_plaintext_client_on_tls_port_is_refused(secure):
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", max_block_ms=3000,
                      request_timeout_ms=3000, api_version=(2, 8)).send("x", b"y").get(timeout=5)
    deadline = time.monotonic() + 10
    while "plaintext client on a TLS listener" not in secure.log() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "plaintext client on a TLS listener" in secure.log()


def _run_java_msk_iam(secure, topic: str, denied: str) -> None:
    """The Java client with aws-msk-iam-auth (tests/interop/java
    MskIamInterop): an idempotent producer, a denied topic unless "-", a
    group consumer; credentials from the environment."""
    from conftest import CACHE

    launcher = CACHE / "java-interop" / "run-msk-iam"
    assert launcher.exists(), f"{launcher} is missing: run scripts/setup"
    r = subprocess.run([str(launcher), f"127.0.0.1:{secure.ssl_port}", str(secure.workdir / "ca.pem"), topic, denied],
                       capture_output=True, text=True, timeout=150)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "java-msk-iam OK" in r.stdout


def test_java_client_with_aws_msk_iam_auth_library(secure, aws_env):
    """The Java client with AWS's aws-msk-iam-auth (AWS_MSK_IAM), configured
    as the MSK documentation shows."""
    _run_java_msk_iam(secure, new_topic(secure, "iam"), new_topic(secure, "other"))


def test_documented_example_policy_with_the_java_client_and_aws_msk_iam_auth(secure, aws_env, monkeypatch):
    """AWS's example policy verbatim, with the Java client (idempotent, as
    3.0+ defaults) signing in through aws-msk-iam-auth: it writes, and its
    group reads back."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", EXAMPLE_AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", EXAMPLE_SECRET)
    _run_java_msk_iam(secure, new_topic(secure, "documented-java"), "-")


def test_documented_example_policy_with_the_sluice_python_package(secure, aws_env, monkeypatch):
    """AWS's example policy verbatim, with the Sluice Python package's
    default (idempotent) producer and a group consumer, signing with its
    built-in signer."""
    import sluice

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", EXAMPLE_AKID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", EXAMPLE_SECRET)
    topic = new_topic(secure, "documented-sluice")
    common = dict(bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", security_protocol="SASL_SSL",
                  ssl_cafile=str(secure.workdir / "ca.pem"), sasl_mechanism="AWS_MSK_IAM",
                  sasl_aws_msk_iam_region=REGION)
    producer = sluice.KafkaProducer(**common)
    for i in range(5):
        producer.send(topic, value=f"s{i}".encode()).get(timeout=30)
    producer.close()
    consumer = sluice.KafkaConsumer(topic, group_id="documented-sluice", auto_offset_reset="earliest",
                                    consumer_timeout_ms=10000, **common)
    assert sorted(m.value for m in consumer) == [f"s{i}".encode() for i in range(5)]
    consumer.commit()
    consumer.close()


def test_sluice_python_package_with_builtin_iam_signer(secure, aws_env):
    """The Sluice Python package (built and installed by scripts/test-python)
    signing in with its built-in Rust MSK IAM signer, both mechanisms."""
    import sluice
    from sluice.errors import TopicAuthorizationFailedError

    topic = new_topic(secure, "iam")
    denied = new_topic(secure, "other")
    for mechanism in ("AWS_MSK_IAM", "OAUTHBEARER"):
        common = dict(bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", security_protocol="SASL_SSL",
                      ssl_cafile=str(secure.workdir / "ca.pem"), sasl_mechanism=mechanism,
                      sasl_aws_msk_iam_region=REGION)
        if mechanism == "OAUTHBEARER":
            # kafka-python's shape: a token provider object; here the
            # official signer, as MSK users wire it.
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

            class Provider:
                def token(self):
                    return MSKAuthTokenProvider.generate_auth_token(REGION)[0]

            common.pop("sasl_aws_msk_iam_region")
            common["sasl_oauth_token_provider"] = Provider()
        producer = sluice.KafkaProducer(acks="all", **common)
        producer.send(topic, value=mechanism.encode()).get(timeout=30)
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send(denied, value=b"x").get(timeout=30)
        producer.close()
    consumer = sluice.KafkaConsumer(topic, group_id="py-iam", auto_offset_reset="earliest", consumer_timeout_ms=10000,
                                    bootstrap_servers=f"127.0.0.1:{secure.ssl_port}", security_protocol="SASL_SSL",
                                    ssl_cafile=str(secure.workdir / "ca.pem"), sasl_mechanism="AWS_MSK_IAM",
                                    sasl_aws_msk_iam_region=REGION)
    assert sorted(m.value for m in consumer) == [b"AWS_MSK_IAM", b"OAUTHBEARER"]
    consumer.close()
