//! [`Security`]: the broker-wide authentication and authorization state,
//! built once at start-up from the config: the SASL mechanisms offered,
//! PLAIN users, the SCRAM credential store (and its file), the IAM verifier
//! and the IAM-policy authorizer. Every shard reads it through the broker;
//! the connection loop consults it during the SASL exchange and request
//! handlers consult it for authorization.

use std::path::PathBuf;
use std::sync::RwLock;

use super::{Action, Authorizer, IamVerifier, PlainUsers, Resource, ScramStore};
use crate::config::BrokerConfig;

/// Broker-wide authentication and authorization state.
pub struct Security {
    /// `sasl.enabled.mechanisms`, upper case.
    pub mechanisms: Vec<String>,
    /// `connections.max.reauth.ms`
    pub reauth_ms: i64,
    pub plain: PlainUsers,
    pub scram: RwLock<ScramStore>,
    pub scram_path: PathBuf,
    /// None when `[auth]` configures no IAM region and credentials.
    pub iam: Option<IamVerifier>,
    /// None: every request of every principal is allowed (no `[auth]`
    /// policies), like Kafka without an authorizer.
    pub authorizer: Option<Authorizer>,
}

impl Security {
    pub fn from_config(cfg: &BrokerConfig) -> anyhow::Result<Security> {
        use anyhow::Context;
        let built = match &cfg.auth {
            Some(table) => {
                let parsed: super::AuthConfig = toml::Value::Table(table.clone())
                    .try_into()
                    .map_err(|e| anyhow::anyhow!("invalid [auth] section: {e}"))?;
                Some(
                    parsed
                        .build()
                        .map_err(|e| anyhow::anyhow!("invalid [auth] section: {e}"))?,
                )
            }
            None => None,
        };
        let scram_path = ScramStore::path_in(&cfg.data_dir);
        let scram = ScramStore::load(&scram_path).with_context(|| {
            format!(
                "cannot load SCRAM credentials from {}",
                scram_path.display()
            )
        })?;
        let (plain, iam, authorizer) = match built {
            Some(b) => (b.plain, b.iam, b.authorizer),
            None => (PlainUsers::default(), None, None),
        };
        Ok(Security {
            mechanisms: cfg.sasl_enabled_mechanisms.clone(),
            reauth_ms: cfg.connections_max_reauth_ms,
            plain,
            scram: RwLock::new(scram),
            scram_path,
            iam,
            authorizer,
        })
    }

    /// Whether `principal` may do `action` on `resource`.
    pub fn authorize(&self, principal: &str, action: Action, resource: Resource<'_>) -> bool {
        match &self.authorizer {
            None => true,
            Some(a) => a.authorize(principal, action, resource),
        }
    }

    /// Whether `principal` may take a producer id for idempotent writes
    /// ([`Authorizer::may_write_idempotently`]: MSK's rule).
    pub fn may_write_idempotently(&self, principal: &str) -> bool {
        match &self.authorizer {
            None => true,
            Some(a) => a.may_write_idempotently(principal),
        }
    }

    /// Whether `sasl.enabled.mechanisms` lists `mechanism` (upper case).
    pub fn offers(&self, mechanism: &str) -> bool {
        self.mechanisms.iter().any(|m| m == mechanism)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// examples/broker/msk-iam.toml loads, and its policy (the one AWS
    /// documents for MSK) grants and refuses what AWS says it does.
    #[test]
    fn the_msk_iam_example_config_behaves_as_aws_documents() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/broker/msk-iam.toml");
        let mut cfg = BrokerConfig::default();
        cfg.apply_file(&path).expect("example config loads");
        cfg.validate().expect("example config is consistent");
        let dir = tempfile::tempdir().expect("tempdir");
        cfg.data_dir = dir.path().to_path_buf();
        let security = Security::from_config(&cfg).expect("[auth] builds");
        assert!(security.iam.is_some());
        let app = "arn:aws:iam::123456789012:user/app";
        let allowed = [
            (Action::Connect, Resource::Cluster),
            (Action::AlterCluster, Resource::Cluster),
            (Action::DescribeCluster, Resource::Cluster),
            (Action::CreateTopic, Resource::Topic("orders")),
            (Action::DescribeTopic, Resource::Topic("orders")),
            (Action::AlterTopic, Resource::Topic("orders")),
            (Action::DeleteTopic, Resource::Topic("orders")),
            (
                Action::DescribeTopicDynamicConfiguration,
                Resource::Topic("orders"),
            ),
            (
                Action::AlterTopicDynamicConfiguration,
                Resource::Topic("orders"),
            ),
            (Action::WriteData, Resource::Topic("orders")),
            (Action::ReadData, Resource::Topic("orders")),
            (Action::AlterGroup, Resource::Group("billing")),
            (Action::DescribeGroup, Resource::Group("billing")),
        ];
        for (action, resource) in allowed {
            assert!(
                security.authorize(app, action, resource),
                "{action} on {resource:?} must be allowed"
            );
        }
        let refused = [
            // Not granted by any statement.
            (Action::WriteDataIdempotently, Resource::Cluster),
            (Action::DeleteGroup, Resource::Group("billing")),
            (Action::AlterClusterDynamicConfiguration, Resource::Cluster),
            (
                Action::DescribeTransactionalId,
                Resource::TransactionalId("tx"),
            ),
            (
                Action::AlterTransactionalId,
                Resource::TransactionalId("tx"),
            ),
        ];
        for (action, resource) in refused {
            assert!(
                !security.authorize(app, action, resource),
                "{action} on {resource:?} must be refused"
            );
        }
        // KIP-679: the documented policy grants WriteData on every topic,
        // which MSK takes as WriteDataIdempotently too, so a modern
        // client's default (idempotent) producer gets its producer id.
        assert!(security.may_write_idempotently(app));
        // Another principal has no policy at all.
        assert!(!security.authorize(
            "arn:aws:iam::123456789012:user/other",
            Action::Connect,
            Resource::Cluster
        ));
    }
}
