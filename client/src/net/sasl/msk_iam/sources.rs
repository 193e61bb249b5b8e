//! Turns a [`CredentialSource`] (and an optional role to assume) into the
//! AWS SDK for Rust's own credential provider, from aws-config: the default
//! chain, profiles with assume-role chains, `credential_process` and SSO,
//! web identity, the ECS/EKS container endpoint, IMDSv2, and STS
//! AssumeRole on top. Their HTTP client is rustls with ring, as everywhere
//! else in Sluice, so no second TLS stack (aws-lc) is built. Endpoints follow the SDK's
//! settings, e.g. `AWS_ENDPOINT_URL_STS`, `AWS_EC2_METADATA_SERVICE_ENDPOINT`.

use aws_config::ecs::EcsCredentialsProvider;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::imds::credentials::ImdsCredentialsProvider;
use aws_config::profile::ProfileFileCredentialsProvider;
use aws_config::provider_config::ProviderConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_config::web_identity_token::WebIdentityTokenCredentialsProvider;
use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider as TlsProvider};

use super::credentials::{
    cred_err, AssumeRole, AwsCredentials, CredentialSource, DEFAULT_ROLE_SESSION_NAME,
};
use super::region::blank_profile_as_default;
use super::SaslError;

/// The SDK provider for `source`, assuming `role` with it when given.
/// `region` is where STS (and SSO's token refresh) are called when the role
/// names no STS region: the signing region. Built afresh for each fetch
/// (every 15 minutes at most), so profile files are read again and a
/// provider that failed to set itself up gets another chance.
pub(super) async fn provider_for(
    source: &CredentialSource,
    role: Option<&AssumeRole>,
    region: &str,
) -> Result<SharedCredentialsProvider, SaslError> {
    let sts_region = Region::new(
        role.and_then(|r| r.sts_region.as_deref())
            .unwrap_or(region)
            .to_owned(),
    );
    // One HTTP client for every call this provider makes (STS, SSO, the
    // container endpoint, IMDS).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(TlsProvider::Rustls(CryptoMode::Ring))
        .build_https();
    let conf = ProviderConfig::without_region()
        .with_http_client(http.clone())
        .with_region(Some(sts_region.clone()));
    // The SDK's own configuration (endpoints, FIPS, retries from the
    // environment and the profile) for the default chain and for STS.
    // The region is given, so nothing looks it up through IMDS (a timeout
    // off EC2).
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .region(sts_region);
    if let Some(p) = profile_name(source) {
        loader = loader.profile_name(p);
    }
    let base = match source {
        CredentialSource::Explicit(c) => Some(SharedCredentialsProvider::new(Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            c.session_token.clone(),
            c.expires_at,
            "sluice-explicit",
        ))),
        CredentialSource::Environment => Some(SharedCredentialsProvider::new(
            EnvironmentVariableCredentialsProvider::new(),
        )),
        CredentialSource::Profile(_) => {
            let mut b = ProfileFileCredentialsProvider::builder().configure(&conf);
            if let Some(n) = profile_name(source) {
                b = b.profile_name(n);
            }
            Some(SharedCredentialsProvider::new(b.build()))
        }
        CredentialSource::WebIdentity => Some(SharedCredentialsProvider::new(
            WebIdentityTokenCredentialsProvider::builder()
                .configure(&conf)
                .build(),
        )),
        CredentialSource::Container => Some(SharedCredentialsProvider::new(
            EcsCredentialsProvider::builder().configure(&conf).build(),
        )),
        CredentialSource::Imds => Some(SharedCredentialsProvider::new(
            ImdsCredentialsProvider::builder().configure(&conf).build(),
        )),
        CredentialSource::Provider(p) => Some(p.clone()),
        // The loader's own chain.
        CredentialSource::DefaultChain => None,
    };
    if let Some(b) = base {
        loader = loader.credentials_provider(b);
    }
    let sdk = loader.load().await;
    let Some(base) = sdk.credentials_provider() else {
        return Err(cred_err("aws-config set up no credentials provider"));
    };
    let Some(role) = role else {
        return Ok(base);
    };
    let mut assume = AssumeRoleProvider::builder(role.role_arn.clone())
        .session_name(
            role.session_name
                .clone()
                .unwrap_or_else(|| DEFAULT_ROLE_SESSION_NAME.to_owned()),
        )
        .configure(&sdk);
    if let Some(id) = &role.external_id {
        assume = assume.external_id(id.clone());
    }
    Ok(SharedCredentialsProvider::new(
        assume.build_from_provider(base).await,
    ))
}

/// The profile `source` names (for the default chain, what a blank
/// `AWS_PROFILE` means).
fn profile_name(source: &CredentialSource) -> Option<String> {
    match source {
        CredentialSource::Profile(Some(p)) => Some(p.clone()),
        CredentialSource::Profile(None) | CredentialSource::DefaultChain => {
            blank_profile_as_default()
        }
        _ => None,
    }
}

/// Asks `provider` for credentials; the error names the source and carries
/// the SDK's whole explanation.
pub(super) async fn fetch(
    provider: &SharedCredentialsProvider,
    what: &str,
) -> Result<AwsCredentials, SaslError> {
    provider
        .provide_credentials()
        .await
        .map(|c| AwsCredentials::from(&c))
        .map_err(|e| cred_err(format!("{what}: {}", error_chain(&e))))
}

/// An error and its sources, each said once: the SDK nests the same
/// message at several levels.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let m = c.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cause = c.source();
    }
    out
}

/// How a source is named in errors and logs.
pub(super) fn describe(source: &CredentialSource, role: Option<&AssumeRole>) -> String {
    let base = match source {
        CredentialSource::Explicit(_) => "explicit credentials".to_owned(),
        CredentialSource::Environment => "environment credentials".to_owned(),
        CredentialSource::Profile(Some(p)) => format!("profile {p:?}"),
        CredentialSource::Profile(None) => "the AWS_PROFILE or default profile".to_owned(),
        CredentialSource::WebIdentity => "web identity credentials".to_owned(),
        CredentialSource::Container => "the container credentials endpoint".to_owned(),
        CredentialSource::Imds => "EC2 instance metadata".to_owned(),
        CredentialSource::Provider(_) => "the given credentials provider".to_owned(),
        CredentialSource::DefaultChain => "the default AWS credential chain".to_owned(),
    };
    match role {
        Some(r) => format!("role {} assumed with {base}", r.role_arn),
        None => base,
    }
}
