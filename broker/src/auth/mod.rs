//! The broker's security core: everything that decides *who* a client is and
//! *what* it may do, kept free of I/O (except loading and saving the SCRAM
//! credential file) and of async so the connection loop can call it inline
//! and tests can drive it exhaustively. The connection loop owns the SASL
//! handshake framing, sockets and TLS; this tree owns the security state
//! every layer reads (listeners, sessions, credentials, the authorizer), the
//! mechanisms' server-side state machines and the checks behind them:
//!
//! - [`scram`]: SCRAM-SHA-256/512 server (RFC 5802/7677 as Kafka speaks it).
//! - [`credentials`]: the broker's salted SCRAM credential store and its file.
//! - [`plain`]: SASL/PLAIN (RFC 4616) message parsing and password check.
//! - [`oauthbearer`]: the RFC 7628 OAUTHBEARER client message grammar.
//! - [`msk_iam`]: AWS MSK IAM sign-in: SigV4 verification of OAUTHBEARER
//!   presigned-URL tokens and of the `AWS_MSK_IAM` JSON message.
//! - [`policy`]: AWS IAM policy documents and their evaluation.
//! - [`authorizer`]: MSK actions, resource ARNs and the per-principal
//!   policy authorizer.
//! - [`config`]: the `[auth]` section of the broker's TOML config.
//! - [`security`]: [`Security`], the broker-wide state built from it
//!   (mechanisms offered, credential stores, verifier, authorizer).
//! - [`session`]: each connection's [`Listener`] and [`Session`]
//!   (principal, SASL exchange state, KIP-368 expiry).
//!
//! Errors from authentication are [`AuthError`]; their messages are what the
//! broker sends back in SaslAuthenticate, so they never contain a secret and
//! only quote short, sanitized pieces of what the client sent.

pub mod authorizer;
pub mod config;
pub mod credentials;
pub mod msk_iam;
pub mod oauthbearer;
pub mod plain;
pub mod policy;
pub mod scram;
pub mod security;
pub mod session;

use sluice_protocol::ErrorCode;

pub use authorizer::{Action, Authorizer, ClusterIdentity, Resource};
pub use config::{AuthConfig, BuiltAuth};
pub use credentials::{CredentialStoreError, ScramStore};
pub use msk_iam::{IamCredential, IamCredentialStore, IamIdentity, IamVerifier};
pub use oauthbearer::OAuthBearerMessage;
pub use plain::PlainUsers;
pub use policy::{Decision, PolicyDocument, PolicyError};
pub use scram::{ScramCredential, ScramMechanism, ScramServer};
pub use security::Security;
pub use session::{Listener, Session};

/// Why an authentication attempt failed. The `Display` text is meant to be
/// sent to the client as the SaslAuthenticate error message: it names the
/// reason without any secret, and attacker-supplied values it quotes are
/// passed through [`sanitize`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The client message does not parse as the mechanism requires.
    #[error("malformed {mechanism} message: {reason}")]
    Malformed {
        mechanism: &'static str,
        reason: String,
    },
    /// A step was taken out of order (or after the exchange ended).
    #[error("illegal SASL state: {0}")]
    IllegalState(String),
    /// The mechanism feature the client asked for is not offered.
    #[error("unsupported {mechanism} feature: {reason}")]
    Unsupported {
        mechanism: &'static str,
        reason: String,
    },
    /// Wrong password / proof, or a user that does not exist (the two are
    /// deliberately indistinguishable). Worded as Kafka's own broker does.
    #[error("Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}")]
    InvalidCredentials { mechanism: &'static str },
    /// The client asked to act as another identity.
    #[error("Authentication failed: client requested an authorization id that is different from the username")]
    AuthzidMismatch,
    /// IAM: the access key id is not in the broker's credential store.
    #[error("IAM authentication failed: unknown access key id")]
    UnknownAccessKey,
    /// IAM: the recomputed SigV4 signature differs.
    #[error("IAM authentication failed: signature mismatch")]
    SignatureMismatch,
    /// IAM: the signature's validity window is over.
    #[error("IAM authentication failed: the signature expired")]
    Expired,
    /// IAM: X-Amz-Date is further in the future than the allowed clock skew.
    #[error(
        "IAM authentication failed: the signature is not yet valid (X-Amz-Date is in the future)"
    )]
    NotYetValid,
    /// IAM: the credential scope names another region.
    #[error("IAM authentication failed: wrong region {got:?} (this cluster is in {expected:?})")]
    WrongRegion { expected: String, got: String },
    /// IAM: the credential scope names another service.
    #[error("IAM authentication failed: wrong signing service {0:?} (expected \"kafka-cluster\")")]
    WrongService(String),
    /// IAM: the signed action is not `kafka-cluster:Connect`.
    #[error("IAM authentication failed: action {0:?} is not kafka-cluster:Connect")]
    BadAction(String),
    /// IAM: X-Amz-Expires is over the 900 s MSK allows.
    #[error("IAM authentication failed: X-Amz-Expires {0} is over the maximum of 900 seconds")]
    ExpiresTooLong(u64),
    /// IAM: the signed host is not one this broker answers for.
    #[error("IAM authentication failed: signed host {0:?} is not accepted by this broker")]
    WrongHost(String),
    /// IAM: the session token does not match the temporary credentials.
    #[error("IAM authentication failed: the security token does not match the access key")]
    SessionTokenMismatch,
}

impl AuthError {
    pub(crate) fn malformed(mechanism: &'static str, reason: impl Into<String>) -> Self {
        AuthError::Malformed {
            mechanism,
            reason: reason.into(),
        }
    }

    /// The Kafka error code the SaslAuthenticate response carries.
    pub fn kafka_error_code(&self) -> ErrorCode {
        match self {
            AuthError::IllegalState(_) => ErrorCode::IllegalSaslState,
            _ => ErrorCode::SaslAuthenticationFailed,
        }
    }
}

/// Compares two byte strings in time that depends only on their lengths
/// (which are public: hash sizes, or the length the client chose). Used for
/// every comparison involving a secret or a value derived from one, so a
/// timing side channel cannot reveal how many leading bytes matched.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

/// A short, printable rendering of an attacker-supplied value for an error
/// message or a log line: control characters escaped, at most 64 chars.
pub fn sanitize(s: &str) -> String {
    const MAX: usize = 64;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_basics() {
        assert!(ct_eq(b"", b""));
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }

    #[test]
    fn sanitize_bounds_and_escapes() {
        assert_eq!(sanitize("a\nb"), "a\\nb");
        let long = "x".repeat(1000);
        assert_eq!(sanitize(&long).chars().count(), 65);
    }

    #[test]
    fn error_codes() {
        assert_eq!(
            AuthError::IllegalState("x".into()).kafka_error_code(),
            ErrorCode::IllegalSaslState
        );
        assert_eq!(
            AuthError::Expired.kafka_error_code(),
            ErrorCode::SaslAuthenticationFailed
        );
        assert_eq!(
            AuthError::InvalidCredentials {
                mechanism: "SCRAM-SHA-256"
            }
            .to_string(),
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-256"
        );
    }
}
