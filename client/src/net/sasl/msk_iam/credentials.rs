//! AWS credentials and the environment they are resolved in: the
//! [`AwsCredentials`] themselves, [`Env`] (process variables or a fixed map),
//! the [`CredentialSource`] a caller picks, and the error they fail with. A
//! leaf: the sources that produce credentials (`chain`, `profile_file`,
//! `endpoints`) build on it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use super::SaslError;

/// AWS credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary credentials stop working, if known.
    pub expires_at: Option<SystemTime>,
}

impl AwsCredentials {
    /// Long-term or temporary credentials without a known expiry.
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
    ) -> Self {
        AwsCredentials {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            expires_at: None,
        }
    }
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The environment credential resolution reads: the process's, or a fixed
/// map (tests, embedding applications).
#[derive(Clone, Debug, Default)]
pub enum Env {
    /// `std::env::var` at the time of each look-up.
    #[default]
    Process,
    /// A fixed set of variables.
    Fixed(HashMap<String, String>),
}

impl Env {
    /// A fixed environment from pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env::Fixed(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }

    /// A variable's value, `None` when unset or empty.
    pub fn get(&self, key: &str) -> Option<String> {
        let v = match self {
            Env::Process => std::env::var(key).ok(),
            Env::Fixed(m) => m.get(key).cloned(),
        };
        v.filter(|v| !v.is_empty())
    }

    pub(super) fn home(&self) -> Option<PathBuf> {
        self.get("HOME")
            .or_else(|| self.get("USERPROFILE"))
            .map(PathBuf::from)
    }

    /// `var` if set (with a leading `~/` expanded), else `$HOME/.aws/<default>`.
    pub(super) fn aws_file(&self, var: &str, default: &str) -> Option<PathBuf> {
        match self.get(var) {
            Some(p) => match (p.strip_prefix("~/"), self.home()) {
                (Some(rest), Some(home)) => Some(home.join(rest)),
                _ => Some(PathBuf::from(p)),
            },
            None => self.home().map(|h| h.join(".aws").join(default)),
        }
    }
}

/// Where credentials come from.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CredentialSource {
    /// Fixed credentials.
    Explicit(AwsCredentials),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`.
    Environment,
    /// A profile of the shared files (`None`: `AWS_PROFILE` or `default`).
    Profile(Option<String>),
    /// The ECS/EKS container credentials endpoint.
    Container,
    /// EC2 instance metadata (IMDSv2).
    Imds,
    /// The standard chain: environment, web identity (unsupported), shared
    /// files, container endpoint, IMDS (unless `AWS_EC2_METADATA_DISABLED=true`).
    DefaultChain,
}

pub(super) fn cred_err(msg: impl Into<String>) -> SaslError {
    SaslError::Credentials(msg.into())
}
