//! Native module of the `sluice` Python package (`sluice._sluice`): the
//! Rust client (`sluice-client`) exposed to Python with conversions and
//! error mapping only. The pure-Python package (`python/sluice/`) gives it
//! kafka-python's names and keywords; this module takes Kafka property
//! names (`linger.ms`, ...) and bytes.
//!
//! # Layout
//! - `runtime`: the process-wide tokio runtime; GIL-free, interruptible waits.
//! - `errors`: `sluice::Error` -> `sluice.errors` exception classes.
//! - `token`: OAUTHBEARER tokens from a Python token provider object.
//! - `producer`: `Producer`, `Delivery` and the callback completion queue.
//! - `consumer`: `Consumer` and the rebalance listener bridge.
//! - `admin`: `Admin`.
//! - `instances`: per-record Python objects allocated without a constructor call.

mod admin;
mod consumer;
mod errors;
mod instances;
mod producer;
mod runtime;
mod token;

use pyo3::prelude::*;

#[pymodule]
fn _sluice(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<producer::Producer>()?;
    m.add_class::<producer::Delivery>()?;
    m.add_class::<consumer::Consumer>()?;
    m.add_class::<admin::Admin>()?;
    m.add_function(wrap_pyfunction!(producer::next_completed, m)?)?;
    m.add_function(wrap_pyfunction!(errors::kafka_error_codes, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
