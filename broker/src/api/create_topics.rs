//! CreateTopics (v2-v7): validates names, partition counts, replication
//! factors (above the broker count is INVALID_REPLICATION_FACTOR, as Kafka
//! says) and configs, persists the topic, then opens its partitions on
//! their owner shards so the directories exist before the answer.

use crate::auth::{Action, Resource};
use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::describe_configs::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC};
use super::{RequestContext, Response};
use crate::config::topic::TOPIC_CONFIGS;

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 7;

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let mut resp = CreateTopicsResponse::default();
    let mut seen = std::collections::HashSet::new();
    for t in req.topics {
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let name = t.name.to_string();
        let outcome = if !seen.insert(name.clone()) {
            Err(crate::cluster::ApiError::new(
                ErrorCode::InvalidRequest,
                "duplicate topic in request",
            ))
        } else if !ctx.allowed(Action::CreateTopic, Resource::Topic(&name)) {
            Err(crate::cluster::ApiError::new(
                ErrorCode::TopicAuthorizationFailed,
                "not authorized to kafka-cluster:CreateTopic",
            ))
        } else if !t.assignments.is_empty() {
            let single = t
                .assignments
                .iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == broker.config.node_id);
            if !single || t.num_partitions != -1 || t.replication_factor != -1 {
                Err(crate::cluster::ApiError::new(
                    ErrorCode::InvalidReplicaAssignment,
                    "replica assignment must name only this broker",
                ))
            } else {
                create(
                    &broker,
                    &name,
                    t.assignments.len() as i32,
                    1,
                    &t.configs,
                    req.validate_only,
                )
                .await
            }
        } else {
            create(
                &broker,
                &name,
                t.num_partitions,
                t.replication_factor,
                &t.configs,
                req.validate_only,
            )
            .await
        };
        match outcome {
            Ok(meta) => {
                if ctx.version >= 7 {
                    r.topic_id = meta.id;
                }
                if ctx.version >= 5 {
                    r.num_partitions = meta.partitions;
                    let asked = if t.replication_factor == -1 {
                        broker.config.default_replication_factor
                    } else {
                        t.replication_factor
                    };
                    r.replication_factor = meta
                        .assignment
                        .first()
                        .map_or(asked, |a| a.replicas.len() as i16);
                }
                if ctx.version >= 5 {
                    r.configs = Some(
                        TOPIC_CONFIGS
                            .iter()
                            .map(|t| {
                                let mut c = CreatableTopicConfigs::default();
                                c.name = StrBytes::from_static_str(t.name);
                                let (value, source) = match meta.configs.get(t.name) {
                                    Some(v) => (v.clone(), SOURCE_DYNAMIC_TOPIC),
                                    None => (t.default_value(&broker.config), SOURCE_DEFAULT),
                                };
                                let value = Some(value);
                                c.value = value.map(StrBytes::from_string);
                                c.config_source = source;
                                c
                            })
                            .collect(),
                    );
                }
                if !req.validate_only {
                    tracing::info!(topic = %name, partitions = meta.partitions, "created topic");
                    open_partitions(&broker, meta).await;
                }
            }
            Err(e) => {
                r.error_code = e.code.code();
                r.error_message = Some(StrBytes::from_string(e.message));
            }
        }
        resp.topics.push(r);
    }
    ctx.respond(&resp)
}

async fn create(
    broker: &crate::shard::Broker,
    name: &str,
    partitions: i32,
    rf: i16,
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
    validate_only: bool,
) -> Result<std::sync::Arc<crate::cluster::TopicMeta>, crate::cluster::ApiError> {
    let mut map = BTreeMap::new();
    for c in configs {
        if let Some(v) = &c.value {
            map.insert(c.name.to_string(), v.to_string());
        }
    }
    broker
        .metadata
        .create_topic(name, partitions, rf, map, validate_only, false)
        .await
}

/// Opens every partition of a new topic on its owner shard.
pub async fn open_partitions(
    broker: &std::sync::Arc<crate::shard::Broker>,
    meta: std::sync::Arc<crate::cluster::TopicMeta>,
) {
    let opens = (0..meta.partitions).map(|p| {
        let meta = meta.clone();
        let owner = broker.owner_of_partition(&meta.id, p);
        broker.on_shard(owner, move |shard| async move {
            let _ = shard.partition(&meta, p).await;
        })
    });
    futures::future::join_all(opens).await;
}
