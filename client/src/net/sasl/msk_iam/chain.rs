//! The standard AWS credential chain and the region look-up: resolves a
//! [`CredentialSource`] to [`AwsCredentials`] by trying, in turn, explicit
//! keys, the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
//! variables, the shared files of `AWS_PROFILE`, the ECS/EKS container
//! endpoint and EC2 IMDSv2. Reading the shared files and calling the endpoints
//! is done by `profile_file` and `endpoints`.

use super::credentials::{cred_err, AwsCredentials, CredentialSource, Env};
use super::endpoints::{container_credentials, imds_credentials};
use super::profile_file::SharedFiles;
use super::SaslError;

fn from_env(env: &Env) -> Option<AwsCredentials> {
    let ak = env.get("AWS_ACCESS_KEY_ID")?;
    let sk = env.get("AWS_SECRET_ACCESS_KEY")?;
    Some(AwsCredentials::new(ak, sk, env.get("AWS_SESSION_TOKEN")))
}

/// Resolves credentials from `source`.
pub async fn resolve_credentials(
    source: &CredentialSource,
    env: &Env,
) -> Result<AwsCredentials, SaslError> {
    match source {
        CredentialSource::Explicit(c) => Ok(c.clone()),
        CredentialSource::Environment => from_env(env).ok_or_else(|| {
            cred_err("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not both set")
        }),
        CredentialSource::Profile(name) => {
            let name = name
                .clone()
                .or_else(|| env.get("AWS_PROFILE"))
                .unwrap_or_else(|| "default".into());
            let files = SharedFiles::load(env).await?;
            files.credentials(&name)?.ok_or_else(|| {
                cred_err(format!(
                    "profile {name:?} not found in the shared credentials/config files"
                ))
            })
        }
        CredentialSource::Container => container_credentials(env).await,
        CredentialSource::Imds => imds_credentials(env).await,
        CredentialSource::DefaultChain => {
            if let Some(c) = from_env(env) {
                return Ok(c);
            }
            if env.get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
                return Err(cred_err(
                    "web identity credentials (AWS_WEB_IDENTITY_TOKEN_FILE) are not supported yet",
                ));
            }
            let explicit_profile = env.get("AWS_PROFILE");
            let name = explicit_profile.clone().unwrap_or_else(|| "default".into());
            let files = SharedFiles::load(env).await?;
            match files.credentials(&name)? {
                Some(c) => return Ok(c),
                None if explicit_profile.is_some() => {
                    return Err(cred_err(format!(
                        "AWS_PROFILE {name:?} not found in the shared credentials/config files"
                    )));
                }
                None => {}
            }
            if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some()
                || env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some()
            {
                return container_credentials(env).await;
            }
            if env
                .get("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"))
            {
                return Err(cred_err(
                    "no credentials in the environment, shared files or container endpoint, and IMDS is disabled",
                ));
            }
            imds_credentials(env).await.map_err(|e| {
                cred_err(format!("no credentials in the environment, shared files or container endpoint; IMDS: {e}"))
            })
        }
    }
}

/// Region from `AWS_REGION`, `AWS_DEFAULT_REGION`, then the profile's `region`.
pub async fn resolve_region(env: &Env, profile: Option<&str>) -> Option<String> {
    if let Some(r) = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
    {
        return Some(r);
    }
    let name = profile
        .map(str::to_owned)
        .or_else(|| env.get("AWS_PROFILE"))
        .unwrap_or_else(|| "default".into());
    let files = SharedFiles::load(env).await.ok()?;
    files.profile(&name).and_then(|p| p.get("region").cloned())
}

/// The region in an MSK broker host name (`b-1.x.y.c2.kafka.us-east-1.amazonaws.com`,
/// `boot-x.c1.kafka-serverless.us-east-1.amazonaws.com`).
pub fn region_from_broker_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let i = labels
        .iter()
        .position(|l| *l == "kafka" || *l == "kafka-serverless")?;
    let region = labels.get(i + 1)?;
    (labels.get(i + 2) == Some(&"amazonaws") && !region.is_empty()).then(|| (*region).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::sasl::msk_iam::test_vectors::ok;
    use std::path::PathBuf;

    #[test]
    fn broker_host_region() {
        assert_eq!(
            region_from_broker_host("b-1.demo.abc.c2.kafka.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_from_broker_host("boot-abc.c1.kafka-serverless.us-east-2.amazonaws.com")
                .as_deref(),
            Some("us-east-2")
        );
        assert_eq!(region_from_broker_host("localhost"), None);
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sluice-msk-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let _ = std::fs::create_dir_all(&d);
        d
    }

    #[tokio::test]
    async fn env_and_shared_files() {
        let env = Env::from_pairs([
            ("AWS_ACCESS_KEY_ID", "AK1"),
            ("AWS_SECRET_ACCESS_KEY", "SK1"),
            ("AWS_SESSION_TOKEN", "ST1"),
        ]);
        let c = ok(resolve_credentials(&CredentialSource::DefaultChain, &env).await);
        assert_eq!(c, AwsCredentials::new("AK1", "SK1", Some("ST1".into())));

        let home = temp_dir("home");
        let aws = home.join(".aws");
        let _ = std::fs::create_dir_all(&aws);
        let _ = std::fs::write(
            aws.join("credentials"),
            "# comment\n[default]\naws_access_key_id = AKDEF\naws_secret_access_key=SKDEF ; inline\n\n[dev]\naws_access_key_id=AKDEV\naws_secret_access_key=SKDEV\naws_session_token=STDEV\n",
        );
        let _ = std::fs::write(
            aws.join("config"),
            "[default]\nregion = us-west-2\n[profile dev]\nregion=ap-south-1\ns3 =\n  max_concurrent_requests = 20\n[profile cfgonly]\naws_access_key_id=AKCFG\naws_secret_access_key=SKCFG\n[profile role]\nrole_arn=arn:aws:iam::1:role/x\nsource_profile=default\n",
        );
        let h = home.to_string_lossy().to_string();
        let env = Env::from_pairs([("HOME", h.as_str())]);
        let c = ok(resolve_credentials(&CredentialSource::DefaultChain, &env).await);
        assert_eq!(c, AwsCredentials::new("AKDEF", "SKDEF", None));
        assert_eq!(
            resolve_region(&env, None).await.as_deref(),
            Some("us-west-2")
        );

        let env = Env::from_pairs([("HOME", h.as_str()), ("AWS_PROFILE", "dev")]);
        let c = ok(resolve_credentials(&CredentialSource::DefaultChain, &env).await);
        assert_eq!(
            c,
            AwsCredentials::new("AKDEV", "SKDEV", Some("STDEV".into()))
        );
        assert_eq!(
            resolve_region(&env, None).await.as_deref(),
            Some("ap-south-1")
        );
        let env2 = Env::from_pairs([
            ("HOME", h.as_str()),
            ("AWS_PROFILE", "dev"),
            ("AWS_REGION", "eu-north-1"),
        ]);
        assert_eq!(
            resolve_region(&env2, None).await.as_deref(),
            Some("eu-north-1")
        );

        let c =
            ok(resolve_credentials(&CredentialSource::Profile(Some("cfgonly".into())), &env).await);
        assert_eq!(c.access_key_id, "AKCFG");
        let err = resolve_credentials(&CredentialSource::Profile(Some("role".into())), &env)
            .await
            .err();
        assert!(
            matches!(err, Some(SaslError::Credentials(ref m)) if m.contains("not supported yet"))
        );
        let env = Env::from_pairs([("HOME", h.as_str()), ("AWS_PROFILE", "missing")]);
        assert!(resolve_credentials(&CredentialSource::DefaultChain, &env)
            .await
            .is_err());

        // Explicit file locations.
        let custom = home.join("creds-elsewhere");
        let _ = std::fs::write(
            &custom,
            "[x]\naws_access_key_id=AKX\naws_secret_access_key=SKX\n",
        );
        let c2 = custom.to_string_lossy().to_string();
        let env = Env::from_pairs([
            ("AWS_SHARED_CREDENTIALS_FILE", c2.as_str()),
            ("AWS_CONFIG_FILE", "/nonexistent/cfg"),
        ]);
        let c = ok(resolve_credentials(&CredentialSource::Profile(Some("x".into())), &env).await);
        assert_eq!(c.access_key_id, "AKX");

        // Web identity is reported, not silently skipped.
        let env = Env::from_pairs([
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/t"),
            ("AWS_ROLE_ARN", "arn"),
        ]);
        let err = resolve_credentials(&CredentialSource::DefaultChain, &env)
            .await
            .err();
        assert!(
            matches!(err, Some(SaslError::Credentials(ref m)) if m.contains("not supported yet"))
        );

        // Nothing anywhere and IMDS disabled: a clear error, no network.
        let env = Env::from_pairs([
            ("HOME", "/nonexistent"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]);
        let err = resolve_credentials(&CredentialSource::DefaultChain, &env)
            .await
            .err();
        assert!(matches!(err, Some(SaslError::Credentials(_))));
        let _ = std::fs::remove_dir_all(&home);
    }
}
