//! SASL client mechanisms for Kafka's SaslHandshake (v1) + SaslAuthenticate
//! (v0-v2) exchange. This module owns the mechanism-neutral surface the
//! connection code drives: [`SaslConfig`] (what the user chose, with its
//! secrets), [`SaslSession`] (one authentication's state machine, fed the
//! broker's `auth_bytes` and answering the next client message), the
//! [`TokenProvider`] hook for OAUTHBEARER tokens, and [`SaslError`] with its
//! mapping onto Kafka error codes. The mechanisms live in their own files:
//! `plain` (RFC 4616), `scram` (RFC 5802/7677), `oauthbearer` (RFC 7628) and
//! `msk_iam` (AWS MSK IAM, both as an OAUTHBEARER token provider and as the
//! `AWS_MSK_IAM` JSON mechanism).
//!
//! Driving a session: send SaslHandshake with [`SaslConfig::mechanism_name`],
//! call [`SaslConfig::start`], then loop: `step(None)` yields the first
//! client message; send each `Some(bytes)` in a SaslAuthenticate request and
//! feed the response's `auth_bytes` to the next `step(Some(..))`. `Ok(None)`
//! means the client is satisfied; a non-zero SaslAuthenticate error code ends
//! the exchange on the broker's side regardless of the session's state.

pub mod msk_iam;
pub mod oauthbearer;
pub mod plain;
pub mod scram;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_protocol::clock::now_ms;

pub use crate::auth::{OAuthToken, SaslError, TokenProvider};

/// One SASL authentication in progress (a state machine per mechanism).
pub trait SaslSession: Send {
    /// The next client message given the server's last message (`None` at
    /// the start); `Ok(None)` when the client side is done.
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError>;

    /// How long the authenticated session may last from the client's point
    /// of view (the token's remaining lifetime), if the mechanism knows.
    /// The connection should re-authenticate before the smaller of this and
    /// the broker's `session_lifetime_ms`.
    fn session_lifetime_hint(&self) -> Option<Duration>;
}

/// The SASL mechanism a connection authenticates with, and its secrets.
#[derive(Clone)]
#[non_exhaustive]
pub enum SaslConfig {
    /// RFC 4616 PLAIN.
    Plain { username: String, password: String },
    /// RFC 7677 SCRAM-SHA-256.
    ScramSha256 { username: String, password: String },
    /// RFC 5802-style SCRAM-SHA-512.
    ScramSha512 { username: String, password: String },
    /// RFC 7628 OAUTHBEARER with tokens from a user-supplied provider.
    OAuthBearer { provider: Arc<dyn TokenProvider> },
    /// AWS MSK IAM through OAUTHBEARER: the token is the presigned URL that
    /// aws-msk-iam-sasl-signer produces (usually an
    /// [`msk_iam::MskIamTokenProvider`]).
    AwsMskIam { provider: Arc<dyn TokenProvider> },
    /// AWS MSK IAM through the `AWS_MSK_IAM` mechanism (JSON first message,
    /// as the Java aws-msk-iam-auth library sends).
    AwsMskIamJson {
        signer: Arc<msk_iam::MskIamTokenProvider>,
    },
}

impl fmt::Debug for SaslConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaslConfig::Plain { username, .. }
            | SaslConfig::ScramSha256 { username, .. }
            | SaslConfig::ScramSha512 { username, .. } => f
                .debug_struct(self.mechanism_name())
                .field("username", username)
                .field("password", &"<redacted>")
                .finish(),
            SaslConfig::OAuthBearer { .. } => f.write_str("OAuthBearer"),
            SaslConfig::AwsMskIam { .. } => f.write_str("AwsMskIam"),
            SaslConfig::AwsMskIamJson { signer } => f
                .debug_struct("AwsMskIamJson")
                .field("signer", signer)
                .finish(),
        }
    }
}

impl SaslConfig {
    /// The mechanism name sent in SaslHandshake.
    pub fn mechanism_name(&self) -> &'static str {
        match self {
            SaslConfig::Plain { .. } => "PLAIN",
            SaslConfig::ScramSha256 { .. } => "SCRAM-SHA-256",
            SaslConfig::ScramSha512 { .. } => "SCRAM-SHA-512",
            SaslConfig::OAuthBearer { .. } | SaslConfig::AwsMskIam { .. } => "OAUTHBEARER",
            SaslConfig::AwsMskIamJson { .. } => "AWS_MSK_IAM",
        }
    }

    /// AWS MSK IAM over OAUTHBEARER with the built-in signer: credentials
    /// from the default chain, `region` or else `AWS_REGION` /
    /// `AWS_DEFAULT_REGION` / the profile's region.
    pub fn aws_msk_iam(region: Option<String>) -> Self {
        let mut signer = msk_iam::MskIamTokenProvider::new();
        if let Some(r) = region {
            signer = signer.with_region(r);
        }
        SaslConfig::AwsMskIam {
            provider: Arc::new(signer),
        }
    }

    /// Checks that the broker's SaslHandshake answer offers our mechanism.
    pub fn check_offered(&self, enabled_mechanisms: &[String]) -> Result<(), SaslError> {
        let ours = self.mechanism_name();
        if enabled_mechanisms.iter().any(|m| m == ours) {
            Ok(())
        } else {
            Err(SaslError::UnsupportedMechanism(format!(
                "broker offers [{}], not {ours}",
                enabled_mechanisms.join(", ")
            )))
        }
    }

    /// Begins one authentication against `broker_host` (the host name the
    /// connection was opened to; only `AWS_MSK_IAM` signs it). Fetches a
    /// token or credentials first where the mechanism needs them.
    pub async fn start(&self, broker_host: &str) -> Result<Box<dyn SaslSession>, SaslError> {
        Ok(match self {
            SaslConfig::Plain { username, password } => {
                Box::new(plain::PlainClient::new(username, password)?)
            }
            SaslConfig::ScramSha256 { username, password } => Box::new(scram::ScramClient::new(
                scram::ScramMechanism::Sha256,
                username,
                password,
            )?),
            SaslConfig::ScramSha512 { username, password } => Box::new(scram::ScramClient::new(
                scram::ScramMechanism::Sha512,
                username,
                password,
            )?),
            SaslConfig::OAuthBearer { provider } | SaslConfig::AwsMskIam { provider } => {
                let token = provider.token().await?;
                Box::new(oauthbearer::OAuthBearerSession::new(&token, now_ms())?)
            }
            SaslConfig::AwsMskIamJson { signer } => {
                Box::new(signer.json_session(broker_host).await?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::ErrorCode;

    #[test]
    fn mechanism_names_and_codes() {
        let plain = SaslConfig::Plain {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(plain.mechanism_name(), "PLAIN");
        assert!(!format!("{plain:?}").contains("\"p\""));
        let s = SaslConfig::ScramSha512 {
            username: "u".into(),
            password: "p".into(),
        };
        assert_eq!(s.mechanism_name(), "SCRAM-SHA-512");
        let err = s.check_offered(&["PLAIN".to_string()]).err();
        assert_eq!(
            err.map(|e| e.kafka_error_code()),
            Some(ErrorCode::UnsupportedSaslMechanism)
        );
        assert!(plain
            .check_offered(&["GSSAPI".into(), "PLAIN".into()])
            .is_ok());
        assert_eq!(
            SaslError::IllegalState(String::new())
                .kafka_error_code()
                .code(),
            34
        );
        assert_eq!(
            ErrorCode::from(&SaslError::AuthenticationFailed(String::new())).code(),
            58
        );
    }

    #[test]
    fn start_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let cfg = SaslConfig::aws_msk_iam(Some("us-east-1".into()));
        let fut = cfg.start("broker");
        assert_send(&fut);
        let json = SaslConfig::AwsMskIamJson {
            signer: Arc::new(msk_iam::MskIamTokenProvider::new()),
        };
        assert_send(&json.start("broker"));
    }

    #[tokio::test]
    async fn plain_through_config() {
        let cfg = SaslConfig::Plain {
            username: "alice".into(),
            password: "secret".into(),
        };
        let mut s = match cfg.start("broker").await {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            s.step(None).ok().flatten(),
            Some(b"\0alice\0secret".to_vec())
        );
        assert!(matches!(s.step(Some(b"")), Ok(None)));
    }
}
