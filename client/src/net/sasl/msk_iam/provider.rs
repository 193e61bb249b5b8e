//! [`MskIamTokenProvider`]: MSK IAM tokens and `AWS_MSK_IAM` sessions from
//! a credential source (optionally with a role assumed on top), a region
//! (configured, from the environment or profile, or read off an MSK broker
//! host name), a user agent and a clock. Credentials are kept by
//! `credentials_cache` and each OAUTHBEARER token by `cache` until it is due
//! for re-signing.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use futures::future::BoxFuture;
use sluice_protocol::clock::{now_ms, system_time_ms};

use super::super::{OAuthToken, TokenProvider};
use super::cache::TokenCache;
use super::credentials::{cred_err, AssumeRole, AwsCredentials, CredentialSource};
use super::credentials_cache::CredentialsCache;
use super::region::{region_from_broker_host, resolve_region};
use super::sources::{describe, fetch, provider_for};
use super::token::{json_payload, token_for};
use super::{MskIamJsonSession, SaslError, DEFAULT_USER_AGENT, TOKEN_EXPIRY};
use crate::config::ClientConfig;

/// Where the provider reads the time (the system clock unless frozen).
type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Produces MSK IAM OAUTHBEARER tokens (and `AWS_MSK_IAM` payloads) from AWS
/// credentials, caching the credentials until they are due for refresh and
/// each token until 80% of its lifetime has passed.
pub struct MskIamTokenProvider {
    region: Option<String>,
    source: CredentialSource,
    role: Option<AssumeRole>,
    user_agent: String,
    clock: Clock,
    cache: TokenCache,
    credentials: CredentialsCache,
}

impl fmt::Debug for MskIamTokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MskIamTokenProvider")
            .field("region", &self.region)
            .field("source", &self.source)
            .field("role", &self.role)
            .field("user_agent", &self.user_agent)
            .finish_non_exhaustive()
    }
}

impl Default for MskIamTokenProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl MskIamTokenProvider {
    /// A provider using the AWS SDK's default credential chain, the region
    /// from `AWS_REGION`/`AWS_DEFAULT_REGION`/the profile, and the system clock.
    pub fn new() -> Self {
        MskIamTokenProvider {
            region: None,
            source: CredentialSource::DefaultChain,
            role: None,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            clock: Arc::new(SystemTime::now),
            cache: TokenCache::default(),
            credentials: CredentialsCache::default(),
        }
    }

    /// The signer the `aws.*` properties describe: `aws.region`, the
    /// default chain or `aws.profile`, and `aws.role.arn` (with
    /// `aws.role.session.name`, `aws.role.external.id`, `aws.sts.region`)
    /// assumed on top when set.
    pub fn from_client_config(cfg: &ClientConfig) -> Self {
        let mut signer = MskIamTokenProvider::new();
        if let Some(r) = &cfg.aws_region {
            signer = signer.with_region(r.clone());
        }
        if let Some(p) = &cfg.aws_profile {
            signer = signer.with_profile(p.clone());
        }
        if let Some(arn) = &cfg.aws_role_arn {
            signer = signer.with_assume_role(AssumeRole {
                role_arn: arn.clone(),
                session_name: cfg.aws_role_session_name.clone(),
                external_id: cfg.aws_role_external_id.clone(),
                sts_region: cfg.aws_sts_region.clone(),
            });
        }
        signer
    }

    /// Signs for this region instead of resolving one.
    pub fn with_region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Uses fixed credentials.
    pub fn with_credentials(self, creds: AwsCredentials) -> Self {
        self.with_source(CredentialSource::Explicit(creds))
    }

    /// Uses a named profile of the shared files.
    pub fn with_profile(self, profile: impl Into<String>) -> Self {
        self.with_source(CredentialSource::Profile(Some(profile.into())))
    }

    /// Uses any AWS SDK credentials provider.
    pub fn with_credentials_provider(self, provider: impl ProvideCredentials + 'static) -> Self {
        self.with_source(CredentialSource::Provider(SharedCredentialsProvider::new(
            provider,
        )))
    }

    /// Uses a given credential source.
    pub fn with_source(mut self, source: CredentialSource) -> Self {
        self.source = source;
        self
    }

    /// Assumes `role` (STS AssumeRole) with the source's credentials and
    /// signs with the role's.
    pub fn with_assume_role(mut self, role: AssumeRole) -> Self {
        self.role = Some(role);
        self
    }

    /// The `User-Agent` appended to tokens (not signed).
    pub fn with_user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Freezes the clock at `time` (tests, reproducible tokens).
    pub fn with_clock(self, time: SystemTime) -> Self {
        self.with_clock_fn(move || time)
    }

    /// Reads the time from `clock`.
    pub fn with_clock_fn(mut self, clock: impl Fn() -> SystemTime + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    async fn region(&self, broker_host: Option<&str>) -> Result<String, SaslError> {
        if let Some(r) = &self.region {
            return Ok(r.clone());
        }
        let profile = match &self.source {
            CredentialSource::Profile(p) => p.as_deref(),
            _ => None,
        };
        if let Some(r) = resolve_region(profile).await {
            return Ok(r);
        }
        broker_host
            .and_then(region_from_broker_host)
            .ok_or_else(|| {
                cred_err("no AWS region: configure one or set AWS_REGION / AWS_DEFAULT_REGION")
            })
    }

    /// The credentials tokens are signed with now: cached, or fetched from
    /// the source. `region` is the signing region (where STS is called
    /// unless the role names its own).
    async fn current_credentials(&self, region: &str) -> Result<AwsCredentials, SaslError> {
        if let (CredentialSource::Explicit(c), None) = (&self.source, &self.role) {
            return Ok(c.clone());
        }
        let now = (self.clock)();
        self.credentials
            .get(now, || async {
                let provider = provider_for(&self.source, self.role.as_ref(), region).await?;
                fetch(&provider, &describe(&self.source, self.role.as_ref())).await
            })
            .await
    }

    /// The credentials the next token would be signed with (what
    /// aws-msk-iam-auth's `awsDebugCreds` logs): the source resolved, the
    /// role assumed.
    pub async fn credentials(&self) -> Result<AwsCredentials, SaslError> {
        let region = self.region(None).await?;
        self.current_credentials(&region).await
    }

    /// Signs a token now (credentials from the cache; the token is not cached).
    pub async fn sign_token(&self) -> Result<(OAuthToken, Option<SystemTime>), SaslError> {
        let region = self.region(None).await?;
        let creds = self.current_credentials(&region).await?;
        let token = token_for(&region, &creds, (self.clock)(), &self.user_agent)?;
        Ok((token, creds.expires_at))
    }

    /// Starts an `AWS_MSK_IAM` session for `broker_host`.
    pub async fn json_session(&self, broker_host: &str) -> Result<MskIamJsonSession, SaslError> {
        let region = self.region(Some(broker_host)).await?;
        let creds = self.current_credentials(&region).await?;
        let now = (self.clock)();
        let payload = json_payload(broker_host, &region, &creds, now, &self.user_agent)?;
        let expires =
            system_time_ms(now.checked_add(TOKEN_EXPIRY).unwrap_or(now)).saturating_sub(now_ms());
        let lifetime = u64::try_from(expires).ok().map(Duration::from_millis);
        Ok(MskIamJsonSession::new(payload, lifetime))
    }
}

impl TokenProvider for MskIamTokenProvider {
    fn token(&self) -> BoxFuture<'_, Result<OAuthToken, SaslError>> {
        Box::pin(async move {
            let now = (self.clock)();
            if let Some(token) = self.cache.fresh(now) {
                return Ok(token);
            }
            let (token, creds_expiry) = self.sign_token().await?;
            self.cache.store(&token, now, creds_expiry);
            Ok(token)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::sasl::msk_iam::test_vectors::*;

    #[tokio::test]
    async fn provider_matches_python_and_doc_signature() {
        let p = MskIamTokenProvider::new()
            .with_region("us-east-1")
            .with_credentials(AwsCredentials::new(AKID, SECRET, None))
            .with_user_agent(PY_USER_AGENT)
            .with_clock(py_time());
        let t = ok(p.token().await);
        assert_eq!(t.value, PY_TOKEN);
        // MSK-IAM.md: 20261125T144447Z -> 41ea68d0...
        let url = decode(&t.value);
        assert!(url.contains("&X-Amz-Date=20261125T144447Z&"), "{url}");
        assert!(
            url.contains("&X-Amz-Signature=41ea68d0967ca1036448737d7e72d280e28b6a625f1f6ed4a9e31988639f0504&"),
            "{url}"
        );
        assert!(url.ends_with("&User-Agent=aws-msk-iam-sasl-signer-python%2F1.0.2"));
    }

    #[tokio::test]
    async fn oauthbearer_session_through_config() {
        let p = MskIamTokenProvider::new()
            .with_region("us-east-1")
            .with_credentials(AwsCredentials::new(AKID, SECRET, None))
            .with_user_agent(PY_USER_AGENT)
            .with_clock(py_time());
        let cfg = crate::net::sasl::SaslConfig::AwsMskIam {
            provider: Arc::new(p),
        };
        assert_eq!(cfg.mechanism_name(), "OAUTHBEARER");
        let mut s = ok(cfg.start("b-1.x.kafka.us-east-1.amazonaws.com").await);
        let first = ok(s.step(None)).unwrap_or_default();
        assert_eq!(
            first,
            format!("n,,\x01auth=Bearer {PY_TOKEN}\x01\x01").into_bytes()
        );
        assert!(matches!(s.step(Some(b"")), Ok(None)));
    }
}
