//! Native module of the `sluice-client` npm package: napi-rs classes over
//! the Rust client (`sluice-client`), used by the KafkaJS-shaped JavaScript
//! layer in `index.js`. It owns no Kafka logic: it turns JavaScript values
//! into the client's configs and records, runs every network call as a
//! future on napi's tokio runtime (a Promise on the JS side, so Node's
//! event loop never blocks), and turns the client's results and errors
//! back into JavaScript values.
//!
//! # Layout
//! - `config`: Kafka property maps -> `ClientConfig`/`ProducerConfig`/
//!   `ConsumerConfig`; the OAUTHBEARER token callback (a threadsafe
//!   function awaited from Rust) and explicit MSK IAM credentials.
//! - `error`: `sluice::Error` -> a JS Error whose message carries the
//!   variant, Kafka error name, code and retriability (decoded by errors.js).
//! - `producer`: `NativeProducer` (send with backpressure, flush, close).
//! - `consumer`: `NativeConsumer` (subscribe, poll, commit, seek, pause).
//! - `admin`: `NativeAdmin` (topics, offsets, groups).

mod admin;
mod config;
mod consumer;
mod error;
mod producer;

pub use admin::NativeAdmin;
pub use consumer::NativeConsumer;
pub use producer::NativeProducer;

use napi_derive::napi;

/// The partition the Java client (and sluice-client's default
/// partitioner) picks for `key` among `partitions`: murmur2, positive, modulo.
#[napi]
pub fn default_partition(key: napi::bindgen_prelude::Buffer, partitions: i32) -> i32 {
    if partitions <= 0 {
        return 0;
    }
    use sluice::producer::{Murmur2Partitioner, Partitioner};
    Murmur2Partitioner.partition("", Some(&key), None, partitions)
}
