"""Sluice's MSK IAM tokens are byte-identical to the official Python signer's.

For several credentials, regions, session tokens and instants, the official
aws-msk-iam-sasl-signer-python (clock frozen through botocore, the only place
it reads the time) and `sluice iam-token` (the Rust signer in sluice-client)
must print the same token.
"""
import datetime
import importlib.metadata
import os
import random
import string
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SLUICE = Path(os.environ.get("SLUICE_BIN", ROOT / "target" / "release" / "sluice"))

import botocore.auth  # noqa: E402
from aws_msk_iam_sasl_signer import MSKAuthTokenProvider  # noqa: E402
from botocore.credentials import CredentialProvider, Credentials  # noqa: E402


class Fixed(CredentialProvider):
    METHOD = "fixed"

    def __init__(self, key, secret, token):
        super().__init__()
        self.creds = Credentials(key, secret, token)

    def load(self):
        return self.creds


def official_token(region, key, secret, token, at):
    frozen = datetime.datetime.fromtimestamp(at, datetime.timezone.utc).replace(tzinfo=None)
    orig = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: frozen
    try:
        value, _expiry = MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            region, Fixed(key, secret, token))
        return value
    finally:
        botocore.auth.get_current_datetime = orig


def sluice_token(region, key, secret, token, at, user_agent):
    args = [str(SLUICE), "iam-token", "--region", region, "--access-key-id", key,
            "--secret-access-key", secret, "--at-epoch", str(at), "--user-agent", user_agent]
    if token:
        args += ["--session-token", token]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def cases():
    rng = random.Random(20261125)
    alphabet = string.ascii_letters + string.digits + "/+="
    regions = ["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"]
    for i in range(8):
        key = "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
        secret = "".join(rng.choice(alphabet) for _ in range(40))
        token = "".join(rng.choice(alphabet) for _ in range(rng.randint(40, 300))) if i % 2 else None
        at = rng.randint(1_600_000_000, 1_900_000_000)
        yield pytest.param(regions[i % len(regions)], key, secret, token, at, id=f"case{i}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("region,key,secret,token,at", list(cases()))
def test_tokens_are_byte_identical(region, key, secret, token, at):
    if not SLUICE.exists():
        pytest.fail(f"{SLUICE} is not built (cargo build --release -p sluice-cli)")
    ua = "aws-msk-iam-sasl-signer-python/" + importlib.metadata.version("aws-msk-iam-sasl-signer-python")
    assert sluice_token(region, key, secret, token, at, ua) == official_token(region, key, secret, token, at)
