#!/usr/bin/env python3
"""Generate MSK IAM OAUTHBEARER token vectors with the official Python signer.

Uses aws-msk-iam-sasl-signer-python (PyPI) at a frozen clock and fixed
(fake) credentials, and prints Rust constants for the byte-equality test in
src/net/sasl/msk_iam.rs.

The signer gets the time only through botocore: `SigV4QueryAuth.add_auth`
calls `botocore.auth.get_current_datetime()` (a name imported into
botocore.auth from botocore.compat), and the user agent from
`importlib.metadata.version("aws-msk-iam-sasl-signer-python")`. We patch the
former and print the latter.

Run: ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/venv/bin/python gen_msk_vectors.py
"""
import base64
import datetime
import importlib.metadata

import botocore.auth
from botocore.credentials import CredentialProvider, Credentials

from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
# A made-up session token using the characters that need escaping (/ + =).
SESSION_TOKEN = "FQoGZXIvYXdzEXAMPLE/tok+en=="
REGION = "us-east-1"
FROZEN = datetime.datetime(2026, 11, 25, 14, 44, 47)  # naive UTC, as botocore uses


class FixedProvider(CredentialProvider):
    METHOD = "fixed"

    def __init__(self, token):
        super().__init__()
        self._token = token

    def load(self):
        return Credentials(ACCESS_KEY, SECRET_KEY, self._token)


def token_at(token):
    orig = botocore.auth.get_current_datetime
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: FROZEN
    try:
        return MSKAuthTokenProvider.generate_auth_token_from_credentials_provider(
            REGION, FixedProvider(token)
        )
    finally:
        botocore.auth.get_current_datetime = orig


def main():
    version = importlib.metadata.version("aws-msk-iam-sasl-signer-python")
    print(f"// aws-msk-iam-sasl-signer-python {version}, botocore "
          f"{importlib.metadata.version('botocore')}")
    print(f'const PY_USER_AGENT: &str = "aws-msk-iam-sasl-signer-python/{version}";')
    print(f"const PY_EPOCH_SECS: u64 = {int(FROZEN.replace(tzinfo=datetime.timezone.utc).timestamp())};")
    print(f'const PY_SESSION_TOKEN: &str = "{SESSION_TOKEN}";')
    for name, tok in (("PY_TOKEN", None), ("PY_TOKEN_SESSION", SESSION_TOKEN)):
        value, expiry_ms = token_at(tok)
        url = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
        print(f"// {url}")
        print(f'const {name}: &str = "{value}";')
        print(f"const {name}_EXPIRY_MS: i64 = {expiry_ms};")


if __name__ == "__main__":
    main()
