//! Topic-level configuration: [`TOPIC_CONFIGS`], one descriptor per Kafka
//! topic property the broker knows, with its value type (what
//! DescribeConfigs reports and how values are parsed), the broker property
//! its default comes from (Kafka's synonym), that default, and the rule a
//! value must satisfy. CreateTopics and AlterConfigs validate through it,
//! DescribeConfigs lists it, and a topic's effective [`crate::log::LogConfig`]
//! resolves its overrides on top of these defaults.

use super::names::*;
use super::{
    parse_bool, parse_num, positive, positive_i64, validate_cleanup_policy, validate_dirty_ratio,
    validate_timestamp_type, BrokerConfig, ConfigError,
};

/// A property's value type, as Kafka's ConfigType names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ValueType {
    /// The DescribeConfigs (v3+) `config_type` code.
    pub fn describe_code(self) -> i8 {
        match self {
            ValueType::Boolean => 1,
            ValueType::String => 2,
            ValueType::Int => 3,
            ValueType::Long => 5,
            ValueType::Double => 6,
            ValueType::List => 7,
        }
    }
}

/// One topic-level property.
pub struct TopicConfig {
    pub name: &'static str,
    pub value_type: ValueType,
    /// The broker property whose value is this one's default, if any.
    pub broker_synonym: Option<&'static str>,
    default: fn(&BrokerConfig) -> String,
    check: fn(&str, &str) -> Result<(), ConfigError>,
}

impl TopicConfig {
    /// The value a topic has when it does not override this property.
    pub fn default_value(&self, broker: &BrokerConfig) -> String {
        (self.default)(broker)
    }

    /// Checks a value a client sent (CreateTopics, AlterConfigs).
    pub fn validate(&self, value: &str) -> Result<(), ConfigError> {
        (self.check)(self.name, value)
    }
}

/// The descriptor of topic property `name`.
pub fn topic_config(name: &str) -> Option<&'static TopicConfig> {
    TOPIC_CONFIGS.iter().find(|c| c.name == name)
}

/// Every topic-level property, in name order (DescribeConfigs lists them so).
pub const TOPIC_CONFIGS: &[TopicConfig] = &[
    TopicConfig {
        name: CLEANUP_POLICY,
        value_type: ValueType::List,
        broker_synonym: Some(LOG_CLEANUP_POLICY),
        default: |b| b.log_cleanup_policy.clone(),
        check: |n, v| validate_cleanup_policy(n, v).map(drop),
    },
    TopicConfig {
        name: COMPRESSION_TYPE,
        value_type: ValueType::String,
        broker_synonym: None,
        default: |_| "producer".into(),
        check: check_compression_type,
    },
    TopicConfig {
        name: DELETE_RETENTION_MS,
        value_type: ValueType::Long,
        broker_synonym: Some(LOG_CLEANER_DELETE_RETENTION_MS),
        default: |b| b.log_cleaner_delete_retention_ms.to_string(),
        check: check_long,
    },
    TopicConfig {
        name: FILE_DELETE_DELAY_MS,
        value_type: ValueType::Long,
        broker_synonym: None,
        default: |_| "60000".into(),
        check: check_long,
    },
    TopicConfig {
        name: FLUSH_MESSAGES,
        value_type: ValueType::Long,
        broker_synonym: None,
        default: |_| i64::MAX.to_string(),
        check: check_long,
    },
    TopicConfig {
        name: FLUSH_MS,
        value_type: ValueType::Long,
        broker_synonym: None,
        default: |_| i64::MAX.to_string(),
        check: check_long,
    },
    TopicConfig {
        name: INDEX_INTERVAL_BYTES,
        value_type: ValueType::Int,
        broker_synonym: Some(LOG_INDEX_INTERVAL_BYTES),
        default: |b| b.log_index_interval_bytes.to_string(),
        check: check_positive_int,
    },
    TopicConfig {
        name: LOCAL_RETENTION_BYTES,
        value_type: ValueType::Long,
        broker_synonym: None,
        default: |_| "-2".into(),
        check: check_retention,
    },
    TopicConfig {
        name: LOCAL_RETENTION_MS,
        value_type: ValueType::Long,
        broker_synonym: None,
        default: |_| "-2".into(),
        check: check_retention,
    },
    TopicConfig {
        name: MAX_COMPACTION_LAG_MS,
        value_type: ValueType::Long,
        broker_synonym: Some(LOG_CLEANER_MAX_COMPACTION_LAG_MS),
        default: |b| b.log_cleaner_max_compaction_lag_ms.to_string(),
        check: |n, v| positive_i64(n, v).map(drop),
    },
    TopicConfig {
        name: MAX_MESSAGE_BYTES,
        value_type: ValueType::Int,
        broker_synonym: Some(MESSAGE_MAX_BYTES),
        default: |b| b.message_max_bytes.to_string(),
        check: check_positive_int,
    },
    TopicConfig {
        name: MESSAGE_TIMESTAMP_AFTER_MAX_MS,
        value_type: ValueType::Long,
        broker_synonym: None,
        default: |_| i64::MAX.to_string(),
        check: check_long,
    },
    TopicConfig {
        name: MESSAGE_TIMESTAMP_BEFORE_MAX_MS,
        value_type: ValueType::Long,
        broker_synonym: None,
        default: |_| i64::MAX.to_string(),
        check: check_long,
    },
    TopicConfig {
        name: MESSAGE_TIMESTAMP_TYPE,
        value_type: ValueType::String,
        broker_synonym: Some(LOG_MESSAGE_TIMESTAMP_TYPE),
        default: |b| b.log_message_timestamp_type.clone(),
        check: |n, v| validate_timestamp_type(n, v).map(drop),
    },
    TopicConfig {
        name: MIN_CLEANABLE_DIRTY_RATIO,
        value_type: ValueType::Double,
        broker_synonym: Some(LOG_CLEANER_MIN_CLEANABLE_RATIO),
        default: |b| b.log_cleaner_min_cleanable_ratio.to_string(),
        check: |n, v| validate_dirty_ratio(n, v).map(drop),
    },
    TopicConfig {
        name: MIN_COMPACTION_LAG_MS,
        value_type: ValueType::Long,
        broker_synonym: Some(LOG_CLEANER_MIN_COMPACTION_LAG_MS),
        default: |b| b.log_cleaner_min_compaction_lag_ms.to_string(),
        check: check_long,
    },
    TopicConfig {
        name: MIN_INSYNC_REPLICAS,
        value_type: ValueType::Int,
        broker_synonym: Some(MIN_INSYNC_REPLICAS),
        default: |b| b.min_insync_replicas.to_string(),
        check: check_positive_int,
    },
    TopicConfig {
        name: PREALLOCATE,
        value_type: ValueType::Boolean,
        broker_synonym: None,
        default: |_| "false".into(),
        check: check_bool,
    },
    TopicConfig {
        name: RETENTION_BYTES,
        value_type: ValueType::Long,
        broker_synonym: Some(LOG_RETENTION_BYTES),
        default: |b| b.log_retention_bytes.to_string(),
        check: check_retention,
    },
    TopicConfig {
        name: RETENTION_MS,
        value_type: ValueType::Long,
        broker_synonym: Some(LOG_RETENTION_MS),
        default: |b| b.log_retention_ms.to_string(),
        check: check_retention,
    },
    TopicConfig {
        name: SEGMENT_BYTES,
        value_type: ValueType::Int,
        broker_synonym: Some(LOG_SEGMENT_BYTES),
        default: |b| b.log_segment_bytes.to_string(),
        check: check_segment_bytes,
    },
    TopicConfig {
        name: SEGMENT_INDEX_BYTES,
        value_type: ValueType::Int,
        broker_synonym: None,
        default: |_| "10485760".into(),
        check: check_positive_int,
    },
    TopicConfig {
        name: SEGMENT_MS,
        value_type: ValueType::Long,
        broker_synonym: Some(LOG_ROLL_MS),
        default: |b| b.log_roll_ms.to_string(),
        check: check_long,
    },
    TopicConfig {
        name: UNCLEAN_LEADER_ELECTION_ENABLE,
        value_type: ValueType::Boolean,
        broker_synonym: None,
        default: |_| "false".into(),
        check: check_bool,
    },
];

fn check_compression_type(name: &str, value: &str) -> Result<(), ConfigError> {
    match value {
        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd" => Ok(()),
        _ => Err(ConfigError::Invalid {
            name: name.into(),
            reason: format!("unknown compression type `{value}`"),
        }),
    }
}

/// Retention limits: -1 (none), or -2 for the local.* ones (follow the
/// non-local value), or a value.
fn check_retention(name: &str, value: &str) -> Result<(), ConfigError> {
    let v: i64 = parse_num(name, value)?;
    if v < -2 {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: "must be -1 or more".into(),
        });
    }
    Ok(())
}

fn check_segment_bytes(name: &str, value: &str) -> Result<(), ConfigError> {
    let v: i64 = parse_num(name, value)?;
    if v < 14 {
        return Err(ConfigError::Invalid {
            name: name.into(),
            reason: "must be at least 14".into(),
        });
    }
    Ok(())
}

fn check_positive_int(name: &str, value: &str) -> Result<(), ConfigError> {
    let v: i32 = parse_num(name, value)?;
    positive(name, v).map(drop)
}

fn check_long(name: &str, value: &str) -> Result<(), ConfigError> {
    parse_num::<i64>(name, value).map(drop)
}

fn check_bool(name: &str, value: &str) -> Result<(), ConfigError> {
    parse_bool(name, value).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_unique_and_complete() {
        let names: Vec<&str> = TOPIC_CONFIGS.iter().map(|c| c.name).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted, "in name order, each once");
        let broker = BrokerConfig::default();
        for c in TOPIC_CONFIGS {
            let default = c.default_value(&broker);
            c.validate(&default)
                .unwrap_or_else(|e| panic!("{}: its default {default} is invalid: {e}", c.name));
        }
        assert!(topic_config(RETENTION_MS).is_some());
        assert!(topic_config("retention.msx").is_none());
    }

    #[test]
    fn values_are_checked() {
        let check = |name: &str, value: &str| topic_config(name).expect(name).validate(value);
        assert!(check(RETENTION_MS, "-1").is_ok());
        assert!(check(RETENTION_MS, "-3").is_err());
        assert!(check(RETENTION_MS, "soon").is_err());
        assert!(check(SEGMENT_BYTES, "13").is_err());
        assert!(check(CLEANUP_POLICY, "compact,delete").is_ok());
        assert!(check(CLEANUP_POLICY, "archive").is_err());
        assert!(check(COMPRESSION_TYPE, "zstd").is_ok());
        assert!(check(COMPRESSION_TYPE, "brotli").is_err());
        assert!(check(MIN_INSYNC_REPLICAS, "0").is_err());
        assert!(check(PREALLOCATE, "true").is_ok());
        assert!(check(MESSAGE_TIMESTAMP_TYPE, "LogAppendTime").is_ok());
        assert!(check(MIN_CLEANABLE_DIRTY_RATIO, "0.01").is_ok());
        assert!(check(MIN_CLEANABLE_DIRTY_RATIO, "1.5").is_err());
        assert!(check(MAX_COMPACTION_LAG_MS, "0").is_err());
    }
}
