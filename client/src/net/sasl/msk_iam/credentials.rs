//! AWS credentials and where they come from: the [`AwsCredentials`] the
//! signer uses, the [`CredentialSource`] a caller picks, the optional role
//! to assume on top of it ([`AssumeRole`]), and the error they fail with. A
//! leaf: `sources` turns a source into the AWS SDK's provider, and
//! `credentials_cache` keeps what it returns.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::provider::SharedCredentialsProvider;

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

impl From<&aws_credential_types::Credentials> for AwsCredentials {
    fn from(c: &aws_credential_types::Credentials) -> Self {
        AwsCredentials {
            access_key_id: c.access_key_id().to_owned(),
            secret_access_key: c.secret_access_key().to_owned(),
            session_token: c.session_token().map(str::to_owned),
            expires_at: c.expiry(),
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

/// Where credentials come from. Every source but `Explicit` is the AWS SDK
/// for Rust's own provider (aws-config), reading the process environment
/// and the shared files as every AWS SDK does.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum CredentialSource {
    /// Fixed credentials.
    Explicit(AwsCredentials),
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optional `AWS_SESSION_TOKEN`.
    Environment,
    /// A profile of the shared files (`None`: `AWS_PROFILE` or `default`),
    /// with everything a profile can say: static keys, `role_arn` with
    /// `source_profile` or `credential_source` chains, `credential_process`,
    /// `sso_session`/legacy SSO, `web_identity_token_file`.
    Profile(Option<String>),
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` (+ `AWS_ROLE_SESSION_NAME`):
    /// STS AssumeRoleWithWebIdentity, as on EKS with IRSA.
    WebIdentity,
    /// The ECS / EKS Pod Identity container endpoint
    /// (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `..._FULL_URI`, with
    /// `AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`).
    Container,
    /// EC2 instance metadata (IMDSv2).
    Imds,
    /// Any provider of the AWS SDK (`aws_credential_types::provider::ProvideCredentials`).
    Provider(SharedCredentialsProvider),
    /// The SDK's default chain: environment, profile (`AWS_PROFILE` or the
    /// given one), web identity, container endpoint, IMDS.
    DefaultChain,
}

/// A role to assume (STS AssumeRole) with the credentials of the source, as
/// aws-msk-iam-auth's `awsRoleArn` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssumeRole {
    pub role_arn: String,
    /// `RoleSessionName` (aws-msk-iam-auth's default: `aws-msk-iam-auth`).
    pub session_name: Option<String>,
    pub external_id: Option<String>,
    /// Region of the STS endpoint (default: the signing region).
    pub sts_region: Option<String>,
}

impl AssumeRole {
    /// Assumes `role_arn` with the default session name.
    pub fn new(role_arn: impl Into<String>) -> Self {
        AssumeRole {
            role_arn: role_arn.into(),
            session_name: None,
            external_id: None,
            sts_region: None,
        }
    }
}

/// The session name aws-msk-iam-auth uses when none is configured.
pub const DEFAULT_ROLE_SESSION_NAME: &str = "aws-msk-iam-auth";

pub(super) fn cred_err(msg: impl Into<String>) -> SaslError {
    SaslError::Credentials(msg.into())
}
