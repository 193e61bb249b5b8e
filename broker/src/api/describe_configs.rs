//! DescribeConfigs (v1-v4) for topics (overrides as DYNAMIC_TOPIC_CONFIG,
//! the rest from broker settings as STATIC_BROKER_CONFIG when set in the
//! config file, else DEFAULT_CONFIG) and for this broker.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::config::BrokerConfig;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 4;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
const SOURCE_DYNAMIC_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's ConfigType for the describe answer (v3+).
fn config_type(name: &str) -> i8 {
    const BOOLEAN: i8 = 1;
    const STRING: i8 = 2;
    const INT: i8 = 3;
    const LONG: i8 = 5;
    const LIST: i8 = 7;
    match name {
        "preallocate"
        | "unclean.leader.election.enable"
        | "auto.create.topics.enable"
        | "delete.topic.enable" => BOOLEAN,
        "cleanup.policy" | "log.cleanup.policy" => LIST,
        "compression.type"
        | "message.timestamp.type"
        | "log.message.timestamp.type"
        | "flush.policy" => STRING,
        "max.message.bytes"
        | "min.insync.replicas"
        | "index.interval.bytes"
        | "segment.index.bytes"
        | "segment.bytes"
        | "num.partitions"
        | "message.max.bytes"
        | "log.segment.bytes"
        | "log.index.interval.bytes"
        | "node.id"
        | "socket.request.max.bytes"
        | "offsets.topic.num.partitions"
        | "group.initial.rebalance.delay.ms"
        | "group.min.session.timeout.ms"
        | "group.max.session.timeout.ms"
        | "default.replication.factor" => INT,
        _ => LONG,
    }
}

fn entry(
    name: &str,
    value: Option<String>,
    source: i8,
    version: i16,
    synonyms: bool,
    read_only: bool,
) -> DescribeConfigsResourceResult {
    let mut c = DescribeConfigsResourceResult::default();
    c.name = StrBytes::from_string(name.to_string());
    c.value = value.clone().map(StrBytes::from_string);
    c.read_only = read_only;
    c.config_source = source;
    if version >= 3 {
        c.config_type = config_type(name);
    }
    if synonyms {
        let mut s = DescribeConfigsSynonym::default();
        s.name = c.name.clone();
        s.value = c.value.clone();
        s.source = source;
        c.synonyms.push(s);
    }
    c
}

pub fn topic_configs(
    cfg: &BrokerConfig,
    overrides: &std::collections::BTreeMap<String, String>,
    keys: Option<&[StrBytes]>,
    version: i16,
    synonyms: bool,
) -> Vec<DescribeConfigsResourceResult> {
    BrokerConfig::TOPIC_CONFIG_NAMES
        .iter()
        .filter(|n| keys.map_or(true, |k| k.iter().any(|x| x.as_str() == **n)))
        .map(|n| match overrides.get(*n) {
            Some(v) => entry(
                n,
                Some(v.clone()),
                SOURCE_DYNAMIC_TOPIC,
                version,
                synonyms,
                false,
            ),
            None => {
                let explicit = BrokerConfig::broker_name_of_topic_config(n)
                    .is_some_and(|b| cfg.explicit.contains_key(b));
                entry(
                    n,
                    cfg.topic_default(n),
                    if explicit {
                        SOURCE_STATIC_BROKER
                    } else {
                        SOURCE_DEFAULT
                    },
                    version,
                    synonyms,
                    false,
                )
            }
        })
        .collect()
}

fn broker_configs(
    cfg: &BrokerConfig,
    keys: Option<&[StrBytes]>,
    version: i16,
    synonyms: bool,
) -> Vec<DescribeConfigsResourceResult> {
    let all: Vec<(&str, String)> = vec![
        ("node.id", cfg.node_id.to_string()),
        ("num.partitions", cfg.num_partitions.to_string()),
        (
            "default.replication.factor",
            cfg.default_replication_factor.to_string(),
        ),
        (
            "auto.create.topics.enable",
            cfg.auto_create_topics_enable.to_string(),
        ),
        ("delete.topic.enable", cfg.delete_topic_enable.to_string()),
        ("message.max.bytes", cfg.message_max_bytes.to_string()),
        (
            "socket.request.max.bytes",
            cfg.socket_request_max_bytes.to_string(),
        ),
        ("log.segment.bytes", cfg.log_segment_bytes.to_string()),
        ("log.roll.ms", cfg.log_roll_ms.to_string()),
        ("log.retention.ms", cfg.log_retention_ms.to_string()),
        ("log.retention.bytes", cfg.log_retention_bytes.to_string()),
        (
            "log.retention.check.interval.ms",
            cfg.log_retention_check_interval_ms.to_string(),
        ),
        (
            "log.index.interval.bytes",
            cfg.log_index_interval_bytes.to_string(),
        ),
        ("log.cleanup.policy", cfg.log_cleanup_policy.clone()),
        (
            "log.message.timestamp.type",
            cfg.log_message_timestamp_type.clone(),
        ),
        ("min.insync.replicas", cfg.min_insync_replicas.to_string()),
        (
            "offsets.topic.num.partitions",
            cfg.offsets_topic_num_partitions.to_string(),
        ),
        (
            "offsets.retention.minutes",
            cfg.offsets_retention_minutes.to_string(),
        ),
        (
            "group.initial.rebalance.delay.ms",
            cfg.group_initial_rebalance_delay_ms.to_string(),
        ),
        (
            "group.min.session.timeout.ms",
            cfg.group_min_session_timeout_ms.to_string(),
        ),
        (
            "group.max.session.timeout.ms",
            cfg.group_max_session_timeout_ms.to_string(),
        ),
        (
            "connections.max.idle.ms",
            cfg.connections_max_idle_ms.to_string(),
        ),
        (
            "log.flush.interval.ms",
            cfg.log_flush_interval_ms.to_string(),
        ),
        (
            "flush.policy",
            match cfg.flush_policy {
                crate::config::FlushPolicy::Always => "always".into(),
                crate::config::FlushPolicy::Interval => "interval".into(),
            },
        ),
    ];
    all.into_iter()
        .filter(|(n, _)| keys.map_or(true, |k| k.iter().any(|x| x.as_str() == *n)))
        .map(|(n, v)| {
            let source = if cfg.explicit.contains_key(n) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            entry(n, Some(v), source, version, synonyms, true)
        })
        .collect()
}

pub async fn handle(ctx: &RequestContext, req: DescribeConfigsRequest) -> Response {
    let broker = &ctx.shard.broker;
    let image = broker.metadata.image();
    let mut resp = DescribeConfigsResponse::default();
    for res in req.resources {
        let mut r = DescribeConfigsResult::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let keys = res.configuration_keys.as_deref();
        match res.resource_type {
            RESOURCE_TOPIC
                if !ctx.allowed(
                    Action::DescribeTopicDynamicConfiguration,
                    Resource::Topic(res.resource_name.as_str()),
                ) =>
            {
                r.error_code = ErrorCode::TopicAuthorizationFailed.code();
            }
            RESOURCE_BROKER
                if !ctx.allowed(
                    Action::DescribeClusterDynamicConfiguration,
                    Resource::Cluster,
                ) =>
            {
                r.error_code = ErrorCode::ClusterAuthorizationFailed.code();
            }
            RESOURCE_TOPIC => match image.by_name.get(res.resource_name.as_str()) {
                Some(meta) => {
                    r.configs = topic_configs(
                        &broker.config,
                        &meta.configs,
                        keys,
                        ctx.version,
                        req.include_synonyms,
                    )
                }
                None => {
                    r.error_code = ErrorCode::UnknownTopicOrPartition.code();
                    r.error_message = Some(StrBytes::from_static_str(
                        "This server does not host this topic-partition.",
                    ));
                }
            },
            RESOURCE_BROKER
                if res.resource_name.is_empty()
                    || res.resource_name.as_str() == broker.config.node_id.to_string() =>
            {
                r.configs = broker_configs(&broker.config, keys, ctx.version, req.include_synonyms)
            }
            _ => {
                r.error_code = ErrorCode::InvalidRequest.code();
                r.error_message = Some(StrBytes::from_static_str(
                    "unsupported resource type or unknown broker",
                ));
            }
        }
        resp.results.push(r);
    }
    ctx.respond(&resp)
}
