"""kafka-python's ``AbstractTokenProvider`` for ``sasl_oauth_token_provider``:
subclass it and implement ``token()`` (returning the token string, e.g. from
aws-msk-iam-sasl-signer's ``MSKAuthTokenProvider.generate_auth_token``)."""

from __future__ import annotations

import abc


class AbstractTokenProvider(abc.ABC):
    def __init__(self, **config: object) -> None:
        self.config = config

    @abc.abstractmethod
    def token(self) -> str:
        """The token for the next authentication (called on a client thread)."""

    def extensions(self) -> dict[str, str]:
        """SASL extensions sent with the token."""
        return {}
