//! AWS MSK IAM authentication, both ways MSK clients sign in: as an
//! OAUTHBEARER [`TokenProvider`] ([`MskIamTokenProvider`]), whose token is
//! byte-for-byte what aws-msk-iam-sasl-signer produces, and as the
//! `AWS_MSK_IAM` mechanism of the Java aws-msk-iam-auth library
//! ([`MskIamJsonSession`]): the same signature, taken over the broker's host
//! name, sent as a JSON object that the broker answers with
//! `{"version":"2020_10_22","request-id":...}`. This file owns that JSON
//! session and the module's public surface; the jobs behind it live apart:
//!
//! - `credentials`: [`AwsCredentials`], [`CredentialSource`] and
//!   [`AssumeRole`] (the types, a leaf the rest builds on).
//! - `sources`: each source as the AWS SDK for Rust's own provider
//!   (aws-config: default chain, profiles with assume-role chains,
//!   `credential_process` and SSO, web identity, the ECS/EKS container
//!   endpoint, IMDSv2, STS AssumeRole on top).
//! - `credentials_cache`: when credentials are reused and when refreshed.
//! - `region`: the signing region ([`resolve_region`],
//!   [`region_from_broker_host`]).
//! - `token`: the presigned `kafka-cluster:Connect` URL as an OAUTHBEARER
//!   token ([`token_for`]) and as the `AWS_MSK_IAM` JSON ([`json_payload`]),
//!   signed by [`sluice_protocol::msk_iam`], the SigV4 code the broker
//!   verifies with (kept rather than aws-sigv4, whose presigned URLs order
//!   the query parameters differently, so tokens would no longer match
//!   aws-msk-iam-sasl-signer's byte for byte).
//! - `cache`: when a signed token is reused and when it is re-signed.
//! - `provider`: [`MskIamTokenProvider`], tying credentials, region, clock,
//!   signing and the caches together.

mod cache;
mod credentials;
mod credentials_cache;
mod provider;
mod region;
mod sources;
#[cfg(test)]
mod test_vectors;
mod token;

use std::time::Duration;

use super::{SaslError, SaslSession};

pub use credentials::{AssumeRole, AwsCredentials, CredentialSource, DEFAULT_ROLE_SESSION_NAME};
pub use provider::MskIamTokenProvider;
pub use region::{region_from_broker_host, resolve_region};
pub use token::{json_payload, token_for};

/// The action a token authorizes.
pub use sluice_protocol::msk_iam::CONNECT_ACTION as ACTION;
/// `version` of the AWS_MSK_IAM JSON payload and of the broker's answer.
pub use sluice_protocol::msk_iam::JSON_VERSION;
/// Signing service name for MSK.
pub use sluice_protocol::msk_iam::SERVICE as SIGNING_NAME;
/// Token lifetime (`X-Amz-Expires`), as the official signers use.
pub const TOKEN_EXPIRY: Duration = Duration::from_secs(sluice_protocol::msk_iam::EXPIRES_SECS);
/// The user agent we send by default.
pub const DEFAULT_USER_AGENT: &str = concat!("sluice-client/", env!("CARGO_PKG_VERSION"));

// -------------------------------------------------- AWS_MSK_IAM JSON session

enum JsonState {
    Initial(Vec<u8>),
    Sent,
    Done,
}

/// One `AWS_MSK_IAM` authentication: send the signed JSON, check the answer.
pub struct MskIamJsonSession {
    state: JsonState,
    lifetime: Option<Duration>,
}

impl MskIamJsonSession {
    /// A session that will send `payload` and report `lifetime` as the
    /// signature's remaining validity.
    fn new(payload: Vec<u8>, lifetime: Option<Duration>) -> Self {
        MskIamJsonSession {
            state: JsonState::Initial(payload),
            lifetime,
        }
    }
}

impl SaslSession for MskIamJsonSession {
    fn step(&mut self, server: Option<&[u8]>) -> Result<Option<Vec<u8>>, SaslError> {
        match (std::mem::replace(&mut self.state, JsonState::Done), server) {
            (JsonState::Initial(payload), None) => {
                self.state = JsonState::Sent;
                Ok(Some(payload))
            }
            (JsonState::Sent, Some(answer)) => {
                if answer.is_empty() {
                    return Err(SaslError::AuthenticationFailed(
                        "AWS_MSK_IAM: empty server response".into(),
                    ));
                }
                let v: serde_json::Value = serde_json::from_slice(answer).map_err(|e| {
                    SaslError::MalformedServerMessage(format!(
                        "AWS_MSK_IAM response is not JSON: {e}"
                    ))
                })?;
                match v.get("version").and_then(|x| x.as_str()) {
                    Some(JSON_VERSION) => {}
                    other => {
                        return Err(SaslError::AuthenticationFailed(format!(
                            "AWS_MSK_IAM: unexpected response version {other:?}"
                        )));
                    }
                }
                if v.get("request-id").and_then(|x| x.as_str()).is_none() {
                    return Err(SaslError::MalformedServerMessage(
                        "AWS_MSK_IAM response has no request-id".into(),
                    ));
                }
                Ok(None)
            }
            (_, _) => Err(SaslError::IllegalState(
                "AWS_MSK_IAM stepped out of order".into(),
            )),
        }
    }

    fn session_lifetime_hint(&self) -> Option<Duration> {
        self.lifetime
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::test_vectors::*;
    use super::*;

    #[tokio::test]
    async fn json_mechanism() {
        let creds = AwsCredentials::new(AKID, SECRET, Some(PY_SESSION_TOKEN.into()));
        let host = "b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com";
        // Session via SaslConfig; region comes from the broker host here.
        let p = MskIamTokenProvider::new()
            .with_credentials(creds)
            .with_clock(py_time());
        let cfg = super::super::SaslConfig::AwsMskIamJson {
            signer: Arc::new(p),
        };
        assert_eq!(cfg.mechanism_name(), "AWS_MSK_IAM");
        let mut s = ok(cfg.start(host).await);
        let first = ok(s.step(None)).unwrap_or_default();
        assert!(String::from_utf8_lossy(&first).contains("us-east-1/kafka-cluster"));
        assert!(matches!(
            s.step(Some(br#"{"version":"2020_10_22","request-id":"abc"}"#)),
            Ok(None)
        ));

        let answer = |a: &[u8]| {
            let mut s = MskIamJsonSession {
                state: JsonState::Initial(Vec::new()),
                lifetime: None,
            };
            let _ = s.step(None);
            s.step(Some(a))
        };
        assert!(matches!(
            answer(br#"{"version":"2021_01_01","request-id":"abc"}"#),
            Err(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            answer(b""),
            Err(SaslError::AuthenticationFailed(_))
        ));
        assert!(matches!(
            answer(b"nope"),
            Err(SaslError::MalformedServerMessage(_))
        ));
    }
}
