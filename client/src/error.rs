//! The client's errors: one enum for everything a call can fail with, where a
//! broker's answer keeps its Kafka error code (named as Kafka names it, e.g.
//! `UNKNOWN_TOPIC_OR_PARTITION`) and whether it is retriable. Bindings map
//! each variant onto one exception or Error class.
//!
//! Transactional producers sort failures as the Java client does: a
//! [`Error::TransactionFatal`] (fenced by a newer producer with the same
//! `transactional.id`, not authorized for it, ...) leaves only `close`; a
//! [`Error::TransactionAbortable`] fails the current transaction, which
//! `abort_transaction` ends so the next one can begin; an
//! [`Error::IllegalState`] is a call the producer's state does not allow
//! (Java's `IllegalStateException`). The first two carry the cause, whose
//! Kafka code [`Error::code`] reports.

pub use sluice_protocol::ErrorCode;

#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting is unknown or has an invalid value.
    #[error("invalid configuration `{name}`: {reason}")]
    Config { name: String, reason: String },
    /// The broker answered with a Kafka error code.
    #[error("{code}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        code: ErrorCode,
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
    /// The transactional producer cannot go on and must be closed: fenced
    /// by a newer producer with its `transactional.id` (PRODUCER_FENCED,
    /// also reported for INVALID_PRODUCER_EPOCH), TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    /// or an answer the transaction protocol does not allow.
    #[error("fatal transactional producer error: {0}")]
    TransactionFatal(Box<Error>),
    /// The current transaction cannot commit (a send failed, offsets were
    /// refused, ...): `abort_transaction`, then begin a new one.
    #[error("the transaction must be aborted: {0}")]
    TransactionAbortable(Box<Error>),
    /// The record's transaction was aborted before the record was sent.
    #[error("the transaction was aborted before the record was sent")]
    TransactionAborted,
    /// The call is not allowed in the client's current state (e.g. a send
    /// of a transactional producer outside a transaction, `commit_transaction`
    /// without `begin_transaction`).
    #[error("illegal state: {0}")]
    IllegalState(String),
}

impl Error {
    /// The broker answered `code`.
    pub fn kafka(code: ErrorCode) -> Error {
        Error::Kafka {
            code,
            message: None,
        }
    }

    /// The broker answered `code`, with its message or our context.
    pub fn kafka_with(code: ErrorCode, message: Option<String>) -> Error {
        Error::Kafka { code, message }
    }

    /// A response's wire error code (unknown codes become
    /// `UNKNOWN_SERVER_ERROR`, as the Java client decodes them).
    pub fn from_wire(code: i16, message: Option<String>) -> Error {
        Error::kafka_with(ErrorCode::from_code(code), message)
    }

    pub fn config(name: &str, reason: impl Into<String>) -> Error {
        Error::Config {
            name: name.to_string(),
            reason: reason.into(),
        }
    }

    /// The Kafka error code this error carries, if any.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Kafka { code, .. } => Some(*code),
            Error::TransactionFatal(e) | Error::TransactionAbortable(e) => e.code(),
            Error::Timeout(_) => Some(ErrorCode::RequestTimedOut),
            Error::Authentication(_) => Some(ErrorCode::SaslAuthenticationFailed),
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

    /// Whether this is a fatal transactional error: the producer must be closed.
    pub fn is_fatal_transaction_error(&self) -> bool {
        matches!(self, Error::TransactionFatal(_))
    }

    /// Whether the current transaction must be aborted (and can be).
    pub fn is_abortable_transaction_error(&self) -> bool {
        matches!(self, Error::TransactionAbortable(_))
    }

    /// The cause of a transactional error (`self` for any other error).
    pub fn root_cause(&self) -> &Error {
        match self {
            Error::TransactionFatal(e) | Error::TransactionAbortable(e) => e.root_cause(),
            e => e,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_named_as_kafka_names_them() {
        assert_eq!(ErrorCode::from_code(3).name(), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(
            ErrorCode::from_code(58).name(),
            "SASL_AUTHENTICATION_FAILED"
        );
        assert_eq!(ErrorCode::from_code(6).name(), "NOT_LEADER_OR_FOLLOWER");
        assert!(ErrorCode::from_code(6).is_retriable());
        assert!(!ErrorCode::from_code(29).is_retriable());
        let e = Error::from_wire(3, Some("no such topic".into()));
        assert_eq!(e.to_string(), "UNKNOWN_TOPIC_OR_PARTITION: no such topic");
    }

    #[test]
    fn transactional_errors_keep_their_cause_code() {
        let fenced = Error::TransactionFatal(Box::new(Error::kafka(ErrorCode::ProducerFenced)));
        assert_eq!(fenced.code(), Some(ErrorCode::ProducerFenced));
        assert!(fenced.is_fatal_transaction_error());
        assert!(!fenced.is_retriable());
        assert!(fenced.to_string().contains("PRODUCER_FENCED"), "{fenced}");
        let abort = Error::TransactionAbortable(Box::new(Error::kafka(
            ErrorCode::TopicAuthorizationFailed,
        )));
        assert!(abort.is_abortable_transaction_error());
        assert_eq!(
            abort.root_cause().code(),
            Some(ErrorCode::TopicAuthorizationFailed)
        );
        assert_eq!(Error::IllegalState("x".into()).code(), None);
    }
}
