//! The `[auth]` section of the broker's TOML config, and turning it into the
//! running security objects ([`AuthConfig::build`]). This module owns the
//! names and validation of every authentication/authorization setting:
//!
//! ```toml
//! [auth]
//! # Where the cluster "lives": IAM token scope and resource ARNs.
//! region = "us-east-1"                 # required with iam_credentials or policies
//! account = "123456789012"             # 12 digits; required with policies
//! cluster_name = "my-kafka-cluster"    # required with policies
//! cluster_uuid = "abcd1234-5678-90ef-abcd-1234567890ab-2"   # required with policies
//! clock_skew_ms = 300000               # how far X-Amz-Date may be in the future (default 5 min)
//! iam_hosts = ["b-1.example.com"]      # host names an AWS_MSK_IAM signature may name
//!                                      # (default: any valid host)
//! allow_everyone_if_no_policies = false  # principals no policy matches: allowed?
//!
//! # SASL/PLAIN users, inline and/or from a TOML file of `name = "password"` lines.
//! plain_users = { alice = "alice-secret" }
//! plain_users_file = "/etc/sluice/plain-users.toml"
//!
//! # IAM access keys the broker accepts (the broker holds the secrets to
//! # recompute SigV4 signatures).
//! [[auth.iam_credentials]]
//! access_key_id = "AKIAEXAMPLE"
//! secret_access_key = "..."
//! principal_arn = "arn:aws:iam::123456789012:user/alice"
//! session_token = "..."                # optional: temporary credentials
//!
//! # IAM policy documents (AWS JSON), attached to a principal or a pattern
//! # (`User:*`); exactly one of document / document_file.
//! [[auth.policies]]
//! principal = "arn:aws:iam::123456789012:user/alice"
//! document = '''{"Version": "2012-10-17", "Statement": [...]}'''
//! # document_file = "/etc/sluice/alice-policy.json"
//! ```
//!
//! Relative file paths are taken from the broker's working directory.
//! Unknown keys are errors (a typo must not silently disable a setting).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::authorizer::{Authorizer, ClusterIdentity};
use super::msk_iam::{IamCredential, IamCredentialStore, IamVerifier, DEFAULT_CLOCK_SKEW_MS};
use super::plain::PlainUsers;
use super::policy::PolicyDocument;

fn default_clock_skew_ms() -> i64 {
    DEFAULT_CLOCK_SKEW_MS
}

/// `[auth]`.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub region: Option<String>,
    pub account: Option<String>,
    pub cluster_name: Option<String>,
    pub cluster_uuid: Option<String>,
    #[serde(default = "default_clock_skew_ms")]
    pub clock_skew_ms: i64,
    #[serde(default)]
    pub iam_hosts: Vec<String>,
    #[serde(default)]
    pub allow_everyone_if_no_policies: bool,
    #[serde(default)]
    pub plain_users: BTreeMap<String, String>,
    pub plain_users_file: Option<PathBuf>,
    #[serde(default)]
    pub iam_credentials: Vec<IamCredentialConfig>,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("region", &self.region)
            .field("account", &self.account)
            .field("cluster_name", &self.cluster_name)
            .field("cluster_uuid", &self.cluster_uuid)
            .field("clock_skew_ms", &self.clock_skew_ms)
            .field("iam_hosts", &self.iam_hosts)
            .field(
                "allow_everyone_if_no_policies",
                &self.allow_everyone_if_no_policies,
            )
            .field("plain_users", &self.plain_users.keys().collect::<Vec<_>>())
            .field("plain_users_file", &self.plain_users_file)
            .field("iam_credentials", &self.iam_credentials)
            .field("policies", &self.policies)
            .finish()
    }
}

/// `[[auth.iam_credentials]]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IamCredentialConfig {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub principal_arn: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for IamCredentialConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamCredentialConfig")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("principal_arn", &self.principal_arn)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// `[[auth.policies]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A principal (`arn:aws:iam::...`, `User:alice`) or pattern (`User:*`).
    pub principal: String,
    pub document: Option<String>,
    pub document_file: Option<PathBuf>,
}

/// What [`AuthConfig::build`] produces for the broker.
#[derive(Debug, Clone)]
pub struct BuiltAuth {
    /// PLAIN users (may be empty).
    pub plain: PlainUsers,
    /// The IAM verifier; `None` when no IAM credentials are configured.
    pub iam: Option<IamVerifier>,
    /// The policy authorizer; `None` when no policies are configured
    /// (every authenticated principal may do everything).
    pub authorizer: Option<Authorizer>,
}

fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn read(path: &Path, what: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))
}

impl AuthConfig {
    /// Validates the section and builds the security objects. Errors name
    /// the setting (and, for policies, the principal).
    pub fn build(&self) -> Result<BuiltAuth, String> {
        // Region / cluster identity.
        if let Some(r) = &self.region {
            if !valid_region(r) {
                return Err(format!("auth.region {r:?} is not an AWS region name"));
            }
        }
        if self.clock_skew_ms < 0 {
            return Err("auth.clock_skew_ms must not be negative".into());
        }

        // PLAIN.
        let mut plain = PlainUsers::new();
        for (user, password) in &self.plain_users {
            plain
                .insert(user, password)
                .map_err(|e| format!("auth.plain_users: {e}"))?;
        }
        if let Some(path) = &self.plain_users_file {
            let text = read(path, "auth.plain_users_file")?;
            let table: BTreeMap<String, String> = toml::from_str(&text).map_err(|e| {
                format!(
                    "auth.plain_users_file {}: expected `name = \"password\"` lines: {}",
                    path.display(),
                    // toml's message may quote the offending line, i.e. a password.
                    e.span().map_or_else(String::new, |s| format!(
                        "error at bytes {}..{}",
                        s.start, s.end
                    ))
                )
            })?;
            for (user, password) in &table {
                plain
                    .insert(user, password)
                    .map_err(|e| format!("auth.plain_users_file {}: {e}", path.display()))?;
            }
        }

        // IAM credentials.
        let iam = if self.iam_credentials.is_empty() {
            None
        } else {
            let region = self
                .region
                .clone()
                .ok_or("auth.region is required when auth.iam_credentials are configured")?;
            let mut store = IamCredentialStore::new();
            for (i, c) in self.iam_credentials.iter().enumerate() {
                let at = format!("auth.iam_credentials[{i}] ({})", c.access_key_id);
                if !c.principal_arn.starts_with("arn:") {
                    return Err(format!(
                        "{at}: principal_arn {:?} is not an ARN",
                        c.principal_arn
                    ));
                }
                if c.session_token.as_deref() == Some("") {
                    return Err(format!("{at}: session_token is empty (omit it instead)"));
                }
                store
                    .insert(
                        c.access_key_id.clone(),
                        IamCredential {
                            secret_access_key: c.secret_access_key.clone(),
                            principal_arn: c.principal_arn.clone(),
                            session_token: c.session_token.clone(),
                        },
                    )
                    .map_err(|e| format!("auth.iam_credentials[{i}]: {e}"))?;
            }
            for h in &self.iam_hosts {
                if h.is_empty() || h.contains(['/', ':', ' ']) {
                    return Err(format!("auth.iam_hosts: {h:?} is not a host name"));
                }
            }
            Some(
                IamVerifier::new(region, store)
                    .with_clock_skew_ms(self.clock_skew_ms)
                    .with_json_hosts(self.iam_hosts.iter().cloned()),
            )
        };

        // Policies.
        let authorizer = if self.policies.is_empty() {
            None
        } else {
            let need = |v: &Option<String>, key: &str| {
                v.clone().filter(|s| !s.is_empty()).ok_or_else(|| {
                    format!("auth.{key} is required when auth.policies are configured")
                })
            };
            let cluster = ClusterIdentity {
                region: need(&self.region, "region")?,
                account: need(&self.account, "account")?,
                name: need(&self.cluster_name, "cluster_name")?,
                uuid: need(&self.cluster_uuid, "cluster_uuid")?,
            };
            if cluster.account.len() != 12 || !cluster.account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "auth.account {:?} is not a 12-digit AWS account id",
                    cluster.account
                ));
            }
            let name_ok = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
            if !name_ok(&cluster.name) || cluster.name.len() > 64 {
                return Err(format!(
                    "auth.cluster_name {:?}: letters, digits and '-' only (at most 64)",
                    cluster.name
                ));
            }
            if !name_ok(&cluster.uuid) {
                return Err(format!(
                    "auth.cluster_uuid {:?}: letters, digits and '-' only",
                    cluster.uuid
                ));
            }
            let mut authorizer = Authorizer::new(cluster)
                .with_allow_everyone_if_no_policies(self.allow_everyone_if_no_policies);
            for (i, p) in self.policies.iter().enumerate() {
                let at = format!("auth.policies[{i}] (principal {:?})", p.principal);
                if p.principal.is_empty() {
                    return Err(format!("{at}: principal is empty"));
                }
                let text = match (&p.document, &p.document_file) {
                    (Some(d), None) => d.clone(),
                    (None, Some(f)) => read(f, &at)?,
                    _ => {
                        return Err(format!(
                            "{at}: set exactly one of document and document_file"
                        ))
                    }
                };
                let doc = PolicyDocument::parse(&text).map_err(|e| format!("{at}: {e}"))?;
                authorizer.attach(p.principal.clone(), doc);
            }
            Some(authorizer)
        };

        Ok(BuiltAuth {
            plain,
            iam,
            authorizer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Action, Resource};

    const FULL: &str = r#"
region = "us-east-1"
account = "123456789012"
cluster_name = "my-kafka-cluster"
cluster_uuid = "abcd-1234-2"
clock_skew_ms = 60000
plain_users = { alice = "alice-secret", "we ird" = "x" }

[[iam_credentials]]
access_key_id = "AKIDEXAMPLE"
secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
principal_arn = "arn:aws:iam::123456789012:user/alice"

[[iam_credentials]]
access_key_id = "ASIAEXAMPLE"
secret_access_key = "s2"
principal_arn = "arn:aws:sts::123456789012:assumed-role/r/s"
session_token = "tok"

[[policies]]
principal = "arn:aws:iam::123456789012:user/alice"
document = '''{"Version": "2012-10-17", "Statement": [
  {"Effect": "Allow", "Action": ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"],
   "Resource": "arn:aws:kafka:us-east-1:123456789012:cluster/my-kafka-cluster/*"},
  {"Effect": "Allow", "Action": ["kafka-cluster:*Topic*", "kafka-cluster:ReadData"],
   "Resource": "arn:aws:kafka:us-east-1:123456789012:topic/my-kafka-cluster/*/*"}]}'''

[[policies]]
principal = "User:*"
document = '{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kafka-cluster:Connect","Resource":"*"}}'
"#;

    fn parse(s: &str) -> AuthConfig {
        match toml::from_str(s) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn build_err(s: &str) -> String {
        match parse(s).build() {
            Ok(b) => panic!("built {b:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn full_config_builds() {
        let c = parse(FULL);
        let b = match c.build() {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            b.plain.authenticate(b"\0alice\0alice-secret"),
            Ok("alice".into())
        );
        let iam = b
            .iam
            .as_ref()
            .map(|v| (v.region().to_string(), v.clock_skew_ms(), v.store().len()));
        assert_eq!(iam, Some(("us-east-1".to_string(), 60_000, 2)));
        let a = match &b.authorizer {
            Some(a) => a,
            None => panic!("no authorizer"),
        };
        let alice = "arn:aws:iam::123456789012:user/alice";
        assert!(a.authorize(alice, Action::ReadData, Resource::Topic("t")));
        assert!(!a.authorize(alice, Action::WriteData, Resource::Topic("t")));
        assert!(a.authorize("User:bob", Action::Connect, Resource::Cluster));
        assert!(!a.authorize("User:bob", Action::ReadData, Resource::Topic("t")));
        // Debug output of config and result carries no secret.
        for d in [format!("{c:?}"), format!("{b:?}")] {
            assert!(
                !d.contains("alice-secret")
                    && !d.contains("EXAMPLEKEY")
                    && !d.contains("\"tok\"")
                    && !d.contains("s2\""),
                "{d}"
            );
        }
    }

    #[test]
    fn empty_section_builds_nothing() {
        let b = parse("").build();
        assert!(matches!(
            b,
            Ok(BuiltAuth {
                iam: None,
                authorizer: None,
                ..
            })
        ));
        assert!(b.is_ok_and(|b| b.plain.is_empty()));
    }

    #[test]
    fn validation_errors() {
        let base = "region = \"us-east-1\"\naccount = \"123456789012\"\ncluster_name = \"c\"\ncluster_uuid = \"u\"\n";
        let pol =
            |doc: &str| format!("{base}[[policies]]\nprincipal = \"User:x\"\ndocument = '{doc}'\n");
        let e = build_err(&pol(
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{}}}"#,
        ));
        assert!(e.contains("User:x") && e.contains("Condition"), "{e}");
        let e = build_err(&format!("{base}[[policies]]\nprincipal = \"User:x\"\n"));
        assert!(e.contains("exactly one"), "{e}");
        let e = build_err(&format!(
            "{base}[[policies]]\nprincipal = \"User:x\"\ndocument_file = \"/nonexistent/p.json\"\n"
        ));
        assert!(
            e.contains("/nonexistent/p.json") && e.contains("User:x"),
            "{e}"
        );
        let e = build_err(
            &pol(r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#)
                .replace("123456789012", "12"),
        );
        assert!(e.contains("auth.account"), "{e}");
        let e = build_err("[[policies]]\nprincipal = \"User:x\"\ndocument = '{}'\n");
        assert!(e.contains("auth.region"), "{e}");
        let e = build_err("[[iam_credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\nprincipal_arn = \"arn:aws:iam::1:user/a\"\n");
        assert!(e.contains("auth.region"), "{e}");
        let e = build_err("region = \"us-east-1\"\n[[iam_credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"topsecret\"\nprincipal_arn = \"alice\"\n");
        assert!(e.contains("not an ARN") && !e.contains("topsecret"), "{e}");
        let e = build_err("region = \"us-east-1\"\n[[iam_credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\nprincipal_arn = \"arn:x\"\n[[iam_credentials]]\naccess_key_id = \"A\"\nsecret_access_key = \"s\"\nprincipal_arn = \"arn:x\"\n");
        assert!(e.contains("twice"), "{e}");
        let e = build_err("region = \"US East\"\n");
        assert!(e.contains("auth.region"), "{e}");
        let e = build_err("plain_users = { \"\" = \"x\" }\n");
        assert!(e.contains("plain_users"), "{e}");
        let e = build_err("clock_skew_ms = -1\n");
        assert!(e.contains("clock_skew_ms"), "{e}");
        // Unknown keys are refused at deserialization.
        assert!(toml::from_str::<AuthConfig>("regoin = \"us-east-1\"\n").is_err());
        assert!(
            toml::from_str::<AuthConfig>("[[iam_credentials]]\naccess_key_id = \"A\"\n").is_err()
        );
    }

    #[test]
    fn files() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let users = dir.path().join("users.toml");
        let policy = dir.path().join("p.json");
        let _ = std::fs::write(&users, "carol = \"c-pass\"\n");
        let _ = std::fs::write(
            &policy,
            r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
        );
        let cfg = format!(
            "region = \"us-east-1\"\naccount = \"123456789012\"\ncluster_name = \"c\"\ncluster_uuid = \"u\"\nplain_users_file = {:?}\n[[policies]]\nprincipal = \"User:carol\"\ndocument_file = {:?}\n",
            users.display().to_string(),
            policy.display().to_string()
        );
        let b = parse(&cfg).build();
        let b = match b {
            Ok(b) => b,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(b.plain.authenticate(b"\0carol\0c-pass"), Ok("carol".into()));
        assert!(b.authorizer.is_some_and(|a| a.authorize(
            "User:carol",
            Action::DeleteTopic,
            Resource::Topic("x")
        )));
        // A broken users file: the error names the file but not its content.
        let _ = std::fs::write(&users, "carol = hunter2\n");
        let e = build_err(&cfg);
        assert!(e.contains("users.toml") && !e.contains("hunter2"), "{e}");
    }
}
