//! Error mapping: each `sluice::Error` variant becomes a JS Error whose
//! message is `SLUICE_ERROR:` plus a small JSON object (kind = the variant,
//! type = Kafka's error name, code, retriable, message, broker). errors.js
//! decodes it into the matching KafkaJS-named Error class.

use sluice::Error;

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The JS error for a client error.
pub fn to_js(e: Error) -> napi::Error {
    let kind = match &e {
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
        _ => "Other",
    };
    let code = e.code();
    let broker = match &e {
        Error::Connection { broker, .. } => json_str(broker),
        _ => "null".into(),
    };
    let body = format!(
        "SLUICE_ERROR:{{\"kind\":\"{kind}\",\"type\":{},\"code\":{},\"retriable\":{},\"broker\":{broker},\"message\":{}}}",
        code.map(|c| json_str(c.name())).unwrap_or_else(|| "null".into()),
        code.map(|c| c.code().to_string()).unwrap_or_else(|| "null".into()),
        e.is_retriable(),
        json_str(&e.to_string()),
    );
    napi::Error::from_reason(body)
}

/// A usage error raised by the binding itself (bad argument, not connected).
pub fn usage(msg: impl Into<String>) -> napi::Error {
    let msg = msg.into();
    napi::Error::from_reason(format!(
        "SLUICE_ERROR:{{\"kind\":\"Usage\",\"type\":null,\"code\":null,\"retriable\":false,\"broker\":null,\"message\":{}}}",
        json_str(&msg)
    ))
}
