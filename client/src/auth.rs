//! Authentication vocabulary that configuration and connections share:
//! [`OAuthToken`] and its source, the [`TokenProvider`] a user plugs into
//! [`ClientConfig`](crate::config::ClientConfig) through a
//! [`TokenProviderHandle`], and [`SaslError`], what an authentication or a
//! provider fails with (each variant with the Kafka error code the broker
//! would use). A leaf below both `config` and `net`, so the settings can
//! carry a provider without naming the connection code; the mechanisms
//! themselves live in `net::sasl`, which re-exports these.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;
use sluice_protocol::ErrorCode;

/// What can go wrong while authenticating. Every variant maps onto the Kafka
/// error code the broker would use for the same failure
/// ([`SaslError::kafka_error_code`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SaslError {
    /// The server (or the mechanism's verification of it) rejected the exchange.
    #[error("SASL authentication failed: {0}")]
    AuthenticationFailed(String),
    /// A server message that does not parse as the mechanism requires.
    #[error("malformed SASL server message: {0}")]
    MalformedServerMessage(String),
    /// The session was stepped out of order (e.g. after it finished).
    #[error("illegal SASL state: {0}")]
    IllegalState(String),
    /// The broker does not offer the mechanism, or we do not implement it.
    #[error("unsupported SASL mechanism: {0}")]
    UnsupportedMechanism(String),
    /// The user's configuration cannot produce a valid message.
    #[error("invalid SASL configuration: {0}")]
    InvalidConfig(String),
    /// AWS credentials or region could not be resolved.
    #[error("AWS credentials: {0}")]
    Credentials(String),
    /// A token provider failed to produce a token.
    #[error("OAUTHBEARER token provider: {0}")]
    TokenProvider(String),
    /// SigV4 signing failed.
    #[error("SigV4 signing failed: {0}")]
    Signing(String),
}

impl SaslError {
    /// The Kafka error code that describes this failure.
    pub fn kafka_error_code(&self) -> ErrorCode {
        match self {
            SaslError::IllegalState(_) => ErrorCode::IllegalSaslState,
            SaslError::UnsupportedMechanism(_) => ErrorCode::UnsupportedSaslMechanism,
            SaslError::AuthenticationFailed(_)
            | SaslError::MalformedServerMessage(_)
            | SaslError::InvalidConfig(_)
            | SaslError::Credentials(_)
            | SaslError::TokenProvider(_)
            | SaslError::Signing(_) => ErrorCode::SaslAuthenticationFailed,
        }
    }
}

impl From<sluice_protocol::sasl::SaslClientError> for SaslError {
    fn from(e: sluice_protocol::sasl::SaslClientError) -> SaslError {
        use sluice_protocol::sasl::SaslClientError as E;
        match e {
            E::AuthenticationFailed(m) => SaslError::AuthenticationFailed(m),
            E::MalformedServerMessage(m) => SaslError::MalformedServerMessage(m),
            E::IllegalState(m) => SaslError::IllegalState(m),
            E::InvalidConfig(m) => SaslError::InvalidConfig(m),
        }
    }
}

impl From<&SaslError> for ErrorCode {
    fn from(e: &SaslError) -> ErrorCode {
        e.kafka_error_code()
    }
}

/// An OAUTHBEARER token, as Kafka's `OAuthBearerToken` describes one.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthToken {
    /// The compact token sent after `auth=Bearer `.
    pub value: String,
    /// When the token stops being valid, epoch milliseconds.
    pub expires_at_ms: i64,
    /// The principal the token names, if known (informational: it is not sent
    /// as an authzid, as Kafka's own client does not send one either).
    pub principal: Option<String>,
    /// SASL extensions (RFC 7628 section 3.1 key/value pairs) sent with the token.
    pub extensions: Vec<(String, String)>,
}

impl fmt::Debug for OAuthToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthToken")
            .field("value", &"<redacted>")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("principal", &self.principal)
            .field("extensions", &self.extensions)
            .finish()
    }
}

/// A source of OAUTHBEARER tokens. Implementations cache and refresh tokens
/// themselves; each call should return a token that is valid for a while.
pub trait TokenProvider: Send + Sync {
    /// The token to authenticate the next connection with.
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, SaslError>>;
}

/// A shareable OAUTHBEARER token callback.
#[derive(Clone)]
pub struct TokenProviderHandle(pub Arc<dyn TokenProvider>);

impl fmt::Debug for TokenProviderHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider(..)")
    }
}
