//! CreateTopics (v2-v7): validates names, partition counts, replication
//! factors (above the broker count is INVALID_REPLICATION_FACTOR, as Kafka
//! says) and configs, persists the topic, then opens its partitions on
//! their owner shards so the directories exist before the answer. Under
//! the controller mutation quota and the cluster partition cap
//! (api/mutation_quota.rs).

use crate::auth::{Action, Resource};
use crate::cluster::{ApiError, TopicLayout};
use std::collections::BTreeMap;

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::describe_configs::{SOURCE_DEFAULT, SOURCE_DYNAMIC_TOPIC};
use super::mutation_quota::{check_partition_cap, MutationQuota};
use super::{RequestContext, Response};
use crate::config::topic::TOPIC_CONFIGS;

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 7;

pub async fn handle(ctx: &RequestContext, req: CreateTopicsRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let mut resp = CreateTopicsResponse::default();
    let mut seen = std::collections::HashSet::new();
    let mut quota = MutationQuota::new(ctx, 6);
    for t in req.topics {
        let mut r = CreatableTopicResult::default();
        r.name = t.name.clone();
        r.num_partitions = -1;
        r.replication_factor = -1;
        let name = t.name.to_string();
        let outcome = if !seen.insert(name.clone()) {
            Err(ApiError::new(
                ErrorCode::InvalidRequest,
                "duplicate topic in request",
            ))
        } else if !ctx.allowed(Action::CreateTopic, Resource::Topic(&name)) {
            Err(ApiError::new(
                ErrorCode::TopicAuthorizationFailed,
                "not authorized to kafka-cluster:CreateTopic",
            ))
        } else {
            let layout = if t.assignments.is_empty() {
                Ok(TopicLayout::Counts {
                    partitions: t.num_partitions,
                    replication_factor: t.replication_factor,
                })
            } else {
                manual_assignments(&t).map(TopicLayout::Manual)
            };
            let adding = match &layout {
                Ok(TopicLayout::Counts { partitions, .. }) if *partitions == -1 => {
                    i64::from(broker.config.num_partitions)
                }
                Ok(TopicLayout::Counts { partitions, .. }) => i64::from(*partitions),
                Ok(TopicLayout::Manual(a)) => a.len() as i64,
                Err(_) => 0,
            };
            match layout {
                Ok(layout) => match quota
                    .check(ctx)
                    .and_then(|()| check_partition_cap(ctx, adding))
                {
                    Ok(()) => {
                        let created =
                            create(&broker, &name, layout, &t.configs, req.validate_only).await;
                        if let (Ok(meta), false) = (&created, req.validate_only) {
                            quota.record(ctx, meta.partitions);
                        }
                        created
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            }
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
                if ctx.version >= 5
                    && !ctx.may_see(
                        Action::DescribeTopicDynamicConfiguration,
                        Resource::Topic(&name),
                    )
                {
                    // Kafka: the configs are for who may describe them.
                    r.topic_config_error_code = ErrorCode::TopicAuthorizationFailed.code();
                } else if ctx.version >= 5 {
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
    resp.throttle_time_ms = quota.throttle_time_ms(ctx);
    ctx.delay_if_old(resp.throttle_time_ms as u64, 3).await;
    ctx.respond(&resp)
}

async fn create(
    broker: &crate::shard::Broker,
    name: &str,
    layout: TopicLayout,
    configs: &[kafka_protocol::messages::create_topics_request::CreatableTopicConfig],
    validate_only: bool,
) -> Result<std::sync::Arc<crate::cluster::TopicMeta>, ApiError> {
    let mut map = BTreeMap::new();
    for c in configs {
        if let Some(v) = &c.value {
            map.insert(c.name.to_string(), v.to_string());
        }
    }
    broker
        .metadata
        .create_topic(name, layout, map, validate_only, false)
        .await
}

/// A topic's manual replica assignment (`kafka-topics --replica-assignment`)
/// in partition order, checked as Kafka checks it: no partition count or
/// replication factor beside it, partitions numbered 0 to n-1.
fn manual_assignments(
    t: &kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<Vec<Vec<i32>>, ApiError> {
    if t.num_partitions != -1 || t.replication_factor != -1 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time.",
        ));
    }
    let mut by_partition: Vec<(i32, Vec<i32>)> = t
        .assignments
        .iter()
        .map(|a| {
            (
                a.partition_index,
                a.broker_ids.iter().map(|b| b.0).collect(),
            )
        })
        .collect();
    by_partition.sort_by_key(|(p, _)| *p);
    if by_partition.iter().zip(0..).any(|((p, _), i)| *p != i) {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicaAssignment,
            "partitions should be a consecutive 0-based integer sequence",
        ));
    }
    Ok(by_partition.into_iter().map(|(_, b)| b).collect())
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
