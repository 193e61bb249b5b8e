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
use crate::config::names::*;
use crate::config::topic::{ValueType, TOPIC_CONFIGS};
use crate::config::BrokerConfig;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 4;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's ConfigSource codes.
pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

fn entry(
    name: &str,
    value_type: ValueType,
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
        c.config_type = value_type.describe_code();
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
    TOPIC_CONFIGS
        .iter()
        .filter(|t| keys.is_none_or(|k| k.iter().any(|x| x.as_str() == t.name)))
        .map(|t| match overrides.get(t.name) {
            Some(v) => entry(
                t.name,
                t.value_type,
                Some(v.clone()),
                SOURCE_DYNAMIC_TOPIC,
                version,
                synonyms,
                false,
            ),
            None => {
                let explicit = t
                    .broker_synonym
                    .is_some_and(|b| cfg.explicit.contains_key(b));
                entry(
                    t.name,
                    t.value_type,
                    Some(t.default_value(cfg)),
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
    use ValueType::{Boolean, Double, Int, List, Long};
    let all: Vec<(&str, ValueType, String)> = vec![
        (NODE_ID, Int, cfg.node_id.to_string()),
        (NUM_PARTITIONS, Int, cfg.num_partitions.to_string()),
        (
            DEFAULT_REPLICATION_FACTOR,
            Int,
            cfg.default_replication_factor.to_string(),
        ),
        (
            AUTO_CREATE_TOPICS_ENABLE,
            Boolean,
            cfg.auto_create_topics_enable.to_string(),
        ),
        (
            DELETE_TOPIC_ENABLE,
            Boolean,
            cfg.delete_topic_enable.to_string(),
        ),
        (MESSAGE_MAX_BYTES, Int, cfg.message_max_bytes.to_string()),
        (
            SOCKET_REQUEST_MAX_BYTES,
            Int,
            cfg.socket_request_max_bytes.to_string(),
        ),
        (LOG_SEGMENT_BYTES, Int, cfg.log_segment_bytes.to_string()),
        (LOG_ROLL_MS, Long, cfg.log_roll_ms.to_string()),
        (LOG_RETENTION_MS, Long, cfg.log_retention_ms.to_string()),
        (
            LOG_RETENTION_BYTES,
            Long,
            cfg.log_retention_bytes.to_string(),
        ),
        (
            LOG_RETENTION_CHECK_INTERVAL_MS,
            Long,
            cfg.log_retention_check_interval_ms.to_string(),
        ),
        (
            LOG_INDEX_INTERVAL_BYTES,
            Int,
            cfg.log_index_interval_bytes.to_string(),
        ),
        (LOG_CLEANUP_POLICY, List, cfg.log_cleanup_policy.clone()),
        (
            LOG_CLEANER_ENABLE,
            Boolean,
            cfg.log_cleaner_enable.to_string(),
        ),
        (
            LOG_CLEANER_DEDUPE_BUFFER_SIZE,
            Long,
            cfg.log_cleaner_dedupe_buffer_size.to_string(),
        ),
        (
            LOG_CLEANER_IO_MAX_BYTES_PER_SECOND,
            Double,
            format!("{:?}", cfg.log_cleaner_io_max_bytes_per_second),
        ),
        (
            LOG_CLEANER_BACKOFF_MS,
            Long,
            cfg.log_cleaner_backoff_ms.to_string(),
        ),
        (
            LOG_CLEANER_MIN_CLEANABLE_RATIO,
            Double,
            cfg.log_cleaner_min_cleanable_ratio.to_string(),
        ),
        (
            LOG_CLEANER_MIN_COMPACTION_LAG_MS,
            Long,
            cfg.log_cleaner_min_compaction_lag_ms.to_string(),
        ),
        (
            LOG_CLEANER_MAX_COMPACTION_LAG_MS,
            Long,
            cfg.log_cleaner_max_compaction_lag_ms.to_string(),
        ),
        (
            LOG_CLEANER_DELETE_RETENTION_MS,
            Long,
            cfg.log_cleaner_delete_retention_ms.to_string(),
        ),
        (
            LOG_MESSAGE_TIMESTAMP_TYPE,
            ValueType::String,
            cfg.log_message_timestamp_type.clone(),
        ),
        (
            MIN_INSYNC_REPLICAS,
            Int,
            cfg.min_insync_replicas.to_string(),
        ),
        (
            OFFSETS_TOPIC_NUM_PARTITIONS,
            Int,
            cfg.offsets_topic_num_partitions.to_string(),
        ),
        (
            TRANSACTION_STATE_LOG_NUM_PARTITIONS,
            Int,
            cfg.transactions.state_log_num_partitions.to_string(),
        ),
        (
            TRANSACTION_STATE_LOG_REPLICATION_FACTOR,
            Int,
            cfg.transactions.state_log_replication_factor.to_string(),
        ),
        (
            TRANSACTION_STATE_LOG_MIN_ISR,
            Int,
            cfg.transactions.state_log_min_isr.to_string(),
        ),
        (
            TRANSACTION_STATE_LOG_SEGMENT_BYTES,
            Int,
            cfg.transactions.state_log_segment_bytes.to_string(),
        ),
        (
            TRANSACTION_MAX_TIMEOUT_MS,
            Int,
            cfg.transactions.max_timeout_ms.to_string(),
        ),
        (
            TRANSACTIONAL_ID_EXPIRATION_MS,
            Int,
            cfg.transactions.id_expiration_ms.to_string(),
        ),
        (
            TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS,
            Int,
            cfg.transactions.abort_check_interval_ms.to_string(),
        ),
        (
            TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS,
            Int,
            cfg.transactions.expiry_check_interval_ms.to_string(),
        ),
        (
            OFFSETS_RETENTION_MINUTES,
            Long,
            cfg.offsets_retention_minutes.to_string(),
        ),
        (
            GROUP_INITIAL_REBALANCE_DELAY_MS,
            Int,
            cfg.group_initial_rebalance_delay_ms.to_string(),
        ),
        (
            GROUP_MIN_SESSION_TIMEOUT_MS,
            Int,
            cfg.group_min_session_timeout_ms.to_string(),
        ),
        (
            GROUP_MAX_SESSION_TIMEOUT_MS,
            Int,
            cfg.group_max_session_timeout_ms.to_string(),
        ),
        (
            CONNECTIONS_MAX_IDLE_MS,
            Long,
            cfg.connections_max_idle_ms.to_string(),
        ),
        (
            MAX_INCREMENTAL_FETCH_SESSION_CACHE_SLOTS,
            Int,
            cfg.max_incremental_fetch_session_cache_slots.to_string(),
        ),
        (
            MIN_INCREMENTAL_FETCH_SESSION_EVICTION_MS,
            Int,
            cfg.min_incremental_fetch_session_eviction_ms.to_string(),
        ),
        (
            LOG_FLUSH_INTERVAL_MS,
            Long,
            cfg.log_flush_interval_ms.to_string(),
        ),
        (
            FLUSH_POLICY,
            ValueType::String,
            match cfg.flush_policy {
                crate::config::FlushPolicy::Always => "always".into(),
                crate::config::FlushPolicy::Interval => "interval".into(),
            },
        ),
        (QUOTA_WINDOW_NUM, Int, cfg.quotas.window_num.to_string()),
        (
            QUOTA_WINDOW_SIZE_SECONDS,
            Int,
            cfg.quotas.window_size_seconds.to_string(),
        ),
    ];
    let quota_caps = [
        (
            QUOTA_CLUSTER_PRODUCER_BYTE_RATE,
            Long,
            cfg.quotas.cluster_producer_byte_rate.map(|v| v.to_string()),
        ),
        (
            QUOTA_CLUSTER_CONSUMER_BYTE_RATE,
            Long,
            cfg.quotas.cluster_consumer_byte_rate.map(|v| v.to_string()),
        ),
        (
            QUOTA_CLUSTER_MAX_PARTITIONS,
            Int,
            cfg.quotas.cluster_max_partitions.map(|v| v.to_string()),
        ),
    ];
    // Unset caps are listed with a null value (no limit), as Kafka lists
    // unset optional settings.
    let all = all
        .into_iter()
        .map(|(n, t, v)| (n, t, Some(v)))
        .chain(quota_caps);
    all.into_iter()
        .filter(|(n, _, _)| keys.is_none_or(|k| k.iter().any(|x| x.as_str() == *n)))
        .map(|(n, value_type, v)| {
            let source = if cfg.explicit.contains_key(n) {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            entry(n, value_type, v, source, version, synonyms, true)
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
