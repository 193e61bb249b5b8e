"""SASL from Python against a real Apache Kafka with an OAUTHBEARER listener
(Kafka's unsecured-JWT validator), started by scripts/kafka-kraft for this
module: a kafka-python-style ``sasl_oauth_token_provider`` authenticates,
a failing provider surfaces as SaslAuthenticationFailedError, and
``AWS_MSK_IAM`` runs the built-in Rust signer (Kafka rejects its token,
which is all a non-MSK broker can do). Skipped when Kafka's jars are not
installed (scripts/setup installs them)."""

import base64
import json
import os
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from sluice import AbstractTokenProvider, KafkaConsumer, KafkaProducer, TopicPartition, errors

REPO = Path(__file__).resolve().parents[3]
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sluice"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def oauth_kafka():
    if not list(CACHE.glob("kafka-*/libs")):
        pytest.skip("Apache Kafka jars are not installed (scripts/setup)")
    port, sasl, ctrl = free_port(), free_port(), free_port()
    data = tempfile.mkdtemp(prefix="sluice-py-kafka-")
    sets = {
        "listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl},CONTROLLER://127.0.0.1:{ctrl}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},SASL_PLAINTEXT://127.0.0.1:{sasl}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "OAUTHBEARER",
        "listener.name.sasl_plaintext.oauthbearer.sasl.jaas.config":
            "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required "
            'unsecuredLoginStringClaim_sub="admin";',
    }
    cmd = [str(REPO / "scripts" / "kafka-kraft"), "start", "--port", str(port), "--controller-port", str(ctrl),
           "--data-dir", data]
    for k, v in sets.items():
        cmd += ["--set", f"{k}={v}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        pytest.fail("starting Kafka failed:\n" + r.stdout + r.stderr)
    try:
        yield f"127.0.0.1:{sasl}"
    finally:
        subprocess.run([str(REPO / "scripts" / "kafka-kraft"), "stop", "--port", str(port)], capture_output=True,
                       timeout=120)


def b64(d: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()


class UnsecuredJwt(AbstractTokenProvider):
    """What aws-msk-iam-sasl-signer users write, with an unsecured JWT in
    place of the MSK token (Kafka's default validator accepts those)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def token(self) -> str:
        self.calls += 1
        now = int(time.time())
        return b64({"alg": "none"}) + "." + b64({"sub": "alice", "iat": now, "exp": now + 3600}) + "."


def test_oauthbearer_token_provider(oauth_kafka):
    provider = UnsecuredJwt()
    sasl = dict(bootstrap_servers=oauth_kafka, security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                sasl_oauth_token_provider=provider)
    topic = "oauth-" + uuid.uuid4().hex[:8]
    p = KafkaProducer(**sasl)
    md = p.send(topic, b"hello", key=b"k").get(60)
    p.close()
    c = KafkaConsumer(auto_offset_reset="earliest", consumer_timeout_ms=30000, **sasl)
    c.assign([TopicPartition(topic, md.partition)])
    assert next(iter(c)).value == b"hello"
    c.close()
    assert provider.calls >= 2


def test_failing_token_provider_is_an_authentication_error(oauth_kafka):
    class Broken:
        def token(self):
            raise RuntimeError("no token today")

    with pytest.raises(errors.SaslAuthenticationFailedError, match="no token today"):
        KafkaProducer(bootstrap_servers=oauth_kafka, security_protocol="SASL_PLAINTEXT", sasl_mechanism="OAUTHBEARER",
                      sasl_oauth_token_provider=Broken(), request_timeout_ms=10000)


def test_aws_msk_iam_uses_the_builtin_signer(oauth_kafka, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    # Kafka is not MSK: it gets a signed MSK IAM token and rejects it.
    with pytest.raises(errors.SaslAuthenticationFailedError, match="SASL_AUTHENTICATION_FAILED"):
        KafkaProducer(bootstrap_servers=oauth_kafka, security_protocol="SASL_PLAINTEXT", sasl_mechanism="AWS_MSK_IAM",
                      sasl_aws_msk_iam_region="us-east-1", request_timeout_ms=10000)


def test_aws_msk_iam_assumes_the_configured_role_through_sts(oauth_kafka, monkeypatch, tmp_path):
    """sasl_aws_msk_iam_role_arn / _role_session_name (aws-msk-iam-auth's
    awsRoleArn / awsRoleSessionName): the signer assumes the role with the
    credentials found, here through moto's STS on 127.0.0.1."""
    from moto.server import ThreadedMotoServer
    from moto.sts.models import sts_backends

    port = free_port()
    sts = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    sts.start()
    try:
        monkeypatch.setenv("HOME", str(tmp_path))
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
        role = "arn:aws:iam::123456789012:role/python-app"
        # Kafka is not MSK: it rejects the token, signed with the role's keys.
        with pytest.raises(errors.SaslAuthenticationFailedError):
            KafkaProducer(bootstrap_servers=oauth_kafka, security_protocol="SASL_PLAINTEXT",
                          sasl_mechanism="AWS_MSK_IAM", sasl_aws_msk_iam_region="us-east-1",
                          sasl_aws_msk_iam_role_arn=role, sasl_aws_msk_iam_role_session_name="py-session",
                          request_timeout_ms=10000)
        assumed = {(r.role_arn, r.session_name) for b in sts_backends.values() for region in b.values()
                   for r in region.assumed_roles}
        assert assumed == {(role, "py-session")}
    finally:
        sts.stop()
