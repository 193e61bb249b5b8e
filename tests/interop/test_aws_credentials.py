"""Every AWS credential source the SDKs support, as Sluice's MSK IAM signer
finds them (issue 15 part 2): the Rust client's chain is the AWS SDK for
Rust's own (aws-config), and ``sluice iam-token`` drives it with the same
``aws.*`` settings the client, the Python and the Node packages take.

Each case runs the CLI in an environment of its own (a fresh HOME, only the
variables the case sets, IMDS off unless it is the case) and reads back the
access key the token was signed with. STS is moto's server, reached through
``AWS_ENDPOINT_URL_STS``; the container endpoint, IMDSv2 and the SSO portal
are local stand-ins (aws_standins.py). No request leaves the machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aws_standins import CredentialEndpoints, MotoSts, token_access_key
from conftest import REPO_ROOT

SLUICE = Path(os.environ.get("SLUICE_BIN", REPO_ROOT / "target" / "release" / "sluice"))
REGION = "us-east-1"
ACCOUNT = "123456789012"


@pytest.fixture(scope="module")
def sts():
    m = MotoSts()
    try:
        yield m
    finally:
        m.stop()


@pytest.fixture
def endpoints():
    e = CredentialEndpoints("ASIASTANDIN000000001", "standin-secret")
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def home(tmp_path):
    (tmp_path / ".aws").mkdir()
    return tmp_path


def iam_token(home: Path, env: dict, *args: str, sts: MotoSts | None = None) -> subprocess.CompletedProcess:
    if not SLUICE.exists():
        pytest.fail(f"{SLUICE} does not exist: cargo build --release -p sluice-cli")
    base = {"PATH": os.environ["PATH"], "HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true"}
    if sts:
        base["AWS_ENDPOINT_URL_STS"] = sts.url
    return subprocess.run([str(SLUICE), "iam-token", "--region", REGION, "--debug-creds", *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def signed_with(r: subprocess.CompletedProcess) -> tuple[str, bool]:
    assert r.returncode == 0, r.stderr
    return token_access_key(r.stdout.strip())


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_environment_variables(home):
    env = {"AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT00001", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"}
    assert signed_with(iam_token(home, env)) == ("AKIAENVIRONMENT00001", True)


def test_environment_beats_the_default_profile(home):
    write(home / ".aws" / "credentials", "[default]\naws_access_key_id = AKIAPROFILE000000001\n"
                                         "aws_secret_access_key = p\n")
    assert signed_with(iam_token(home, {}))[0] == "AKIAPROFILE000000001"
    env = {"AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT00001", "AWS_SECRET_ACCESS_KEY": "s"}
    assert signed_with(iam_token(home, env)) == ("AKIAENVIRONMENT00001", False)


def test_named_profile_from_the_flag_and_from_aws_profile(home):
    write(home / ".aws" / "config", "[profile dev]\naws_access_key_id = AKIADEVPROFILE000001\n"
                                    "aws_secret_access_key = d\naws_session_token = dt\n")
    assert signed_with(iam_token(home, {}, "--profile", "dev")) == ("AKIADEVPROFILE000001", True)
    assert signed_with(iam_token(home, {"AWS_PROFILE": "dev"}))[0] == "AKIADEVPROFILE000001"


def test_profile_assume_role_chain_through_sts(home, sts):
    # base (static keys) -> middle (role) -> app (role): two AssumeRole calls.
    write(home / ".aws" / "config",
          "[profile base]\naws_access_key_id = AKIABASE000000000001\naws_secret_access_key = b\n"
          f"[profile middle]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/middle\nsource_profile = base\n"
          f"[profile app]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/msk-app\nsource_profile = middle\n"
          "role_session_name = chained-session\n")
    key, has_token = signed_with(iam_token(home, {"AWS_PROFILE": "app"}, sts=sts))
    assert key.startswith("ASIA") and has_token
    assert sts.caller_arn(key) == f"arn:aws:sts::{ACCOUNT}:assumed-role/msk-app/chained-session"


def test_profile_role_with_credential_source_environment(home, sts):
    write(home / ".aws" / "config", f"[profile ci]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/ci-deployer\n"
                                    "credential_source = Environment\nrole_session_name = ci\n")
    # Named explicitly: in the default chain the variables themselves would
    # win over AWS_PROFILE, as in every AWS SDK.
    env = {"AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT00001", "AWS_SECRET_ACCESS_KEY": "s"}
    key, _ = signed_with(iam_token(home, env, "--profile", "ci", sts=sts))
    assert sts.caller_arn(key) == f"arn:aws:sts::{ACCOUNT}:assumed-role/ci-deployer/ci"


def test_profile_with_web_identity_token_file(home, sts):
    token_file = write(home / "oidc-token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJjaSJ9.sig")
    write(home / ".aws" / "config", f"[profile oidc]\nrole_arn = arn:aws:iam::{ACCOUNT}:role/oidc\n"
                                    f"web_identity_token_file = {token_file}\nrole_session_name = gha\n")
    key, _ = signed_with(iam_token(home, {}, "--profile", "oidc", sts=sts))
    assert sts.caller_arn(key) == f"arn:aws:sts::{ACCOUNT}:assumed-role/oidc/gha"


def test_credential_process(home):
    script = write(home / "creds.py", "import json\nprint(json.dumps({'Version': 1, "
                   "'AccessKeyId': 'AKIAPROCESS000000001', 'SecretAccessKey': 'p', 'SessionToken': 'pt', "
                   "'Expiration': '2031-01-01T00:00:00Z'}))\n")
    write(home / ".aws" / "config", f"[profile proc]\ncredential_process = {sys.executable} {script}\n")
    assert signed_with(iam_token(home, {}, "--profile", "proc")) == ("AKIAPROCESS000000001", True)


def test_a_failing_credential_process_is_reported(home):
    write(home / ".aws" / "config", "[profile broken]\ncredential_process = /bin/false\n")
    r = iam_token(home, {}, "--profile", "broken")
    assert r.returncode != 0
    assert 'profile "broken"' in r.stderr and "external process exited" in r.stderr, r.stderr


def test_web_identity_as_eks_irsa_sets_it(home, sts):
    token_file = write(home / "irsa-token", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.sig")
    env = {"AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file), "AWS_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/irsa",
           "AWS_ROLE_SESSION_NAME": "pod-session"}
    key, has_token = signed_with(iam_token(home, env, sts=sts))
    assert key.startswith("ASIA") and has_token
    assert sts.caller_arn(key) == f"arn:aws:sts::{ACCOUNT}:assumed-role/irsa/pod-session"


def test_role_arn_assumed_on_top_of_the_chain(home, sts):
    env = {"AWS_ACCESS_KEY_ID": "AKIAENVIRONMENT00001", "AWS_SECRET_ACCESS_KEY": "s"}
    role = f"arn:aws:iam::{ACCOUNT}:role/msk-client"
    key, _ = signed_with(iam_token(home, env, "--role-arn", role, "--role-external-id", "ext-1", sts=sts))
    assert sts.caller_arn(key) == f"arn:aws:sts::{ACCOUNT}:assumed-role/msk-client/aws-msk-iam-auth"
    # STS in the signing region unless the role names its own.
    assert sts.assumed("aws-msk-iam-auth") == {"role_arn": role, "external_id": "ext-1", "region": REGION}
    key, _ = signed_with(iam_token(home, env, "--role-arn", role, "--role-session-name", "named",
                                   "--sts-region", "eu-west-1", sts=sts))
    assert sts.caller_arn(key) == f"arn:aws:sts::{ACCOUNT}:assumed-role/msk-client/named"
    assert sts.assumed("named") == {"role_arn": role, "external_id": None, "region": "eu-west-1"}


def test_container_endpoint_with_an_authorization_token_file(home, endpoints):
    # EKS Pod Identity: a full URI and a token file, read on every call.
    write(home / "pod-token", endpoints.container_token)
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{endpoints.url}/container",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(home / "pod-token")}
    assert signed_with(iam_token(home, env)) == ("ASIASTANDIN000000001", True)
    assert endpoints.hits("/container") == 1


def test_container_endpoint_with_an_authorization_token(home, endpoints):
    env = {"AWS_CONTAINER_CREDENTIALS_FULL_URI": f"{endpoints.url}/container",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN": endpoints.container_token}
    assert signed_with(iam_token(home, env))[0] == "ASIASTANDIN000000001"
    env["AWS_CONTAINER_AUTHORIZATION_TOKEN"] = "wrong"
    r = iam_token(home, env)
    assert r.returncode != 0 and "EcsContainer" in r.stderr and "401" in r.stderr, r.stderr


def test_ec2_instance_metadata_v2(home, endpoints):
    env = {"AWS_EC2_METADATA_DISABLED": "false", "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoints.url}
    assert signed_with(iam_token(home, env)) == ("ASIASTANDIN000000001", True)
    # IMDSv2: a session token first, then every read carries it.
    assert endpoints.requests[0][:2] == ("PUT", "/latest/api/token")
    assert all(h.get("x-aws-ec2-metadata-token") in endpoints.imds_tokens
               for m, p, h in endpoints.requests if m == "GET")


def test_iam_identity_center_sso_session(home, endpoints):
    write(home / ".aws" / "config",
          "[profile sso-dev]\nsso_session = corp\nsso_account_id = 123456789012\nsso_role_name = KafkaDeveloper\n"
          "[sso-session corp]\nsso_region = us-east-1\nsso_start_url = https://corp.awsapps.com/start\n")
    # What `aws sso login` leaves: the token, cached under sha1(session name).
    cache = home / ".aws" / "sso" / "cache" / (hashlib.sha1(b"corp").hexdigest() + ".json")
    write(cache, json.dumps({"accessToken": endpoints.sso_token, "expiresAt": "2031-01-01T00:00:00Z",
                             "region": "us-east-1", "startUrl": "https://corp.awsapps.com/start"}))
    env = {"AWS_ENDPOINT_URL_SSO": endpoints.url}
    assert signed_with(iam_token(home, env, "--profile", "sso-dev")) == ("ASIASTANDIN000000001", True)
    (_, path, headers), = [r for r in endpoints.requests if r[1].startswith("/federation/credentials")]
    assert "role_name=KafkaDeveloper" in path and "account_id=123456789012" in path


def test_no_credentials_anywhere_is_a_clear_error(home):
    r = iam_token(home, {})
    assert r.returncode != 0
    # The chain says what it tried.
    for source in ("Environment", "Profile", "WebIdentityToken", "EcsContainer", "Ec2InstanceMetadata"):
        assert source in r.stderr, r.stderr


def test_blank_variables_count_as_unset(home):
    write(home / ".aws" / "credentials", "[default]\naws_access_key_id = AKIAPROFILE000000001\n"
                                         "aws_secret_access_key = p\n")
    env = {"AWS_PROFILE": "", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    assert signed_with(iam_token(home, env))[0] == "AKIAPROFILE000000001"
