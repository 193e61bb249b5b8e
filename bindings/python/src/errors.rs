//! Error mapping: each variant of `sluice::Error` becomes one exception class
//! of `sluice.errors` (a Kafka error code becomes the class kafka-python names
//! for it, with Kafka's error name leading the message), and a panic in Rust
//! code a Python call reaches becomes a Python exception instead of
//! unwinding across the boundary.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use sluice::{Error, ErrorCode};

/// The `sluice.errors` kind name for a client error.
fn kind(e: &Error) -> &'static str {
    match e {
        // A transactional error is raised as its cause's class (e.g.
        // ProducerFencedError); the message says fatal or abortable.
        Error::TransactionFatal(cause) | Error::TransactionAbortable(cause) => kind(cause),
        Error::TransactionAborted => "txn_aborted",
        Error::IllegalState(_) => "illegal_state",
        Error::Config { .. } => "config",
        Error::Kafka { .. } => "kafka",
        Error::NoBrokersAvailable(_) => "no_brokers",
        Error::Timeout(_) => "timeout",
        Error::Connection { .. } => "connection",
        Error::Protocol(_) => "protocol",
        Error::Unsupported(_) => "unsupported",
        Error::Authentication(_) => "authentication",
        Error::RecordRejected(_) => "rejected",
        Error::Closed => "closed",
        _ => "other",
    }
}

/// The Python exception for a client error.
pub fn to_py(py: Python<'_>, e: &Error) -> PyErr {
    let text = match (e, e.code()) {
        (Error::Kafka { .. }, _) | (_, None) => e.to_string(),
        (_, Some(code)) => format!("{} ({e})", code.name()),
    };
    let code = e.code().map(|c| c.code());
    let built = py
        .import("sluice.errors")
        .and_then(|m| m.getattr("_from_native"))
        .and_then(|f| f.call1((kind(e), code, text.clone())));
    match built {
        Ok(exc) => PyErr::from_value(exc),
        Err(err) => PyRuntimeError::new_err(format!("{text} (and sluice.errors failed: {err})")),
    }
}

/// Extension to turn `sluice::Result` into `PyResult`.
pub trait IntoPy<T> {
    fn py_err(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for Result<T, Error> {
    fn py_err(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, &e))
    }
}

/// Runs `f`, turning a panic into a `RuntimeError` (used around code that
/// calls back into Python from Rust, where a panic must not unwind further).
pub fn guard<T>(what: &str, f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!(
                "internal error in {what}: {msg}"
            )))
        }
    }
}

/// Every Kafka error code the client knows but NONE: (code, NAME,
/// retriable), for the test that checks `sluice.errors` has a class for each.
#[pyfunction]
pub fn kafka_error_codes() -> Vec<(i16, String, bool)> {
    ErrorCode::ALL
        .iter()
        .filter(|c| !c.is_ok())
        .map(|c| (c.code(), c.name().to_string(), c.is_retriable()))
        .collect()
}
