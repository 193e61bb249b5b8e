//! Error mapping: each `sluice::Error` variant becomes a JS Error whose
//! message is `SLUICE_ERROR:` plus a small JSON object (kind = the variant,
//! type = Kafka's error name, code, retriable, message, broker). errors.js
//! decodes it into the matching KafkaJS-named Error class.

use serde_json::json;
use sluice::Error;

/// The JS error's message: the marker errors.js looks for, then the JSON.
fn sluice_error(body: serde_json::Value) -> napi::Error {
    napi::Error::from_reason(format!("SLUICE_ERROR:{body}"))
}

/// The JS error for a client error.
pub fn to_js(e: Error) -> napi::Error {
    let kind = match e.root_cause() {
        Error::Config { .. } => "Config",
        Error::Kafka { .. } => "Kafka",
        Error::NoBrokersAvailable(_) => "NoBrokersAvailable",
        Error::Timeout(_) => "Timeout",
        Error::Connection { .. } => "Connection",
        Error::Protocol(_) => "Protocol",
        Error::Unsupported(_) => "Unsupported",
        Error::Authentication(_) => "Authentication",
        Error::RecordRejected(_) => "RecordRejected",
        Error::Closed => "Closed",
        Error::TransactionAborted => "TransactionAborted",
        Error::IllegalState(_) => "IllegalState",
        _ => "Other",
    };
    let code = e.code();
    let broker = match &e {
        Error::Connection { broker, .. } => Some(broker.clone()),
        _ => None,
    };
    sluice_error(json!({
        "kind": kind,
        "type": code.map(|c| c.name()),
        "code": code.map(|c| c.code()),
        "retriable": e.is_retriable(),
        "broker": broker,
        "message": e.to_string(),
    }))
}

/// A usage error raised by the binding itself (bad argument, not connected).
pub fn usage(msg: impl Into<String>) -> napi::Error {
    sluice_error(json!({
        "kind": "Usage",
        "type": null,
        "code": null,
        "retriable": false,
        "broker": null,
        "message": msg.into(),
    }))
}
