//! The client's errors: one enum for everything a call can fail with, where a
//! broker's answer keeps its Kafka error code (named as Kafka names it, e.g.
//! `UNKNOWN_TOPIC_OR_PARTITION`) and whether it is retriable. Bindings map
//! each variant onto one exception or Error class.

use kafka_protocol::error::ResponseError;

/// A Kafka protocol error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KafkaCode(pub i16);

impl KafkaCode {
    pub const NONE: KafkaCode = KafkaCode(0);

    /// Kafka's own name for the code, e.g. `NOT_LEADER_OR_FOLLOWER`.
    pub fn name(&self) -> String {
        match ResponseError::try_from_code(self.0) {
            None => "NONE".to_string(),
            Some(ResponseError::Unknown(c)) => format!("UNKNOWN_ERROR_CODE_{c}"),
            Some(e) => screaming_snake(&format!("{e:?}")),
        }
    }

    /// Whether Kafka classifies the error as retriable.
    pub fn is_retriable(&self) -> bool {
        ResponseError::try_from_code(self.0).is_some_and(|e| e.is_retriable())
    }

    /// Errors after which cached metadata (leaders) must be refreshed.
    pub fn invalidates_metadata(&self) -> bool {
        matches!(self.0, 3 | 5 | 6 | 15 | 16 | 74 | 75 | 100)
    }
}

impl std::fmt::Display for KafkaCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is unknown or has an invalid value.
    #[error("invalid configuration `{name}`: {reason}")]
    Config { name: String, reason: String },
    /// The broker answered with a Kafka error code.
    #[error("{code}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        code: KafkaCode,
        message: Option<String>,
    },
    /// No bootstrap server could be reached.
    #[error("no brokers available (tried {0})")]
    NoBrokersAvailable(String),
    /// A request or operation did not finish in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A connection failed or broke.
    #[error("connection to {broker} failed: {reason}")]
    Connection { broker: String, reason: String },
    /// Bytes from the broker did not parse, or a request could not be encoded.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The broker does not support something this call needs.
    #[error("unsupported by the broker: {0}")]
    Unsupported(String),
    /// Authentication (TLS or SASL) failed.
    #[error("authentication failed: {0}")]
    Authentication(String),
    /// The producer's buffer stayed full for `max.block.ms`, or a record is too large.
    #[error("record rejected: {0}")]
    RecordRejected(String),
    /// The client was closed.
    #[error("client is closed")]
    Closed,
}

impl Error {
    pub fn kafka(code: i16) -> Error {
        Error::Kafka {
            code: KafkaCode(code),
            message: None,
        }
    }

    pub fn kafka_with(code: i16, message: Option<String>) -> Error {
        Error::Kafka {
            code: KafkaCode(code),
            message,
        }
    }

    pub fn config(name: &str, reason: impl Into<String>) -> Error {
        Error::Config {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// The Kafka error code this error carries, if any.
    pub fn code(&self) -> Option<KafkaCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            Error::Timeout(_) => Some(KafkaCode(7)), // REQUEST_TIMED_OUT
            Error::Authentication(_) => Some(KafkaCode(58)), // SASL_AUTHENTICATION_FAILED
            _ => None,
        }
    }

    /// Whether retrying the same operation may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka { code, .. } => code.is_retriable(),
            Error::Timeout(_) | Error::Connection { .. } | Error::NoBrokersAvailable(_) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_kafka_names_them() {
        assert_eq!(KafkaCode(3).name(), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(KafkaCode(58).name(), "SASL_AUTHENTICATION_FAILED");
        assert_eq!(KafkaCode(6).name(), "NOT_LEADER_OR_FOLLOWER");
        assert!(KafkaCode(6).is_retriable());
        assert!(!KafkaCode(29).is_retriable());
        let e = Error::kafka_with(3, Some("no such topic".into()));
        assert_eq!(e.to_string(), "UNKNOWN_TOPIC_OR_PARTITION: no such topic");
    }
}
