//! Sluice's native Kafka client: a producer, a consumer and an admin client
//! that work the same against Apache Kafka, AWS MSK and `sluiced`.
//!
//! # Layout
//! - [`auth`]: OAuth tokens, token providers and SASL errors, which the
//!   settings carry and the connections use.
//! - [`config`]: typed settings with Kafka's defaults; `from_properties`
//!   takes Kafka's property names.
//! - [`error`]: the one error type; Kafka error codes are [`ErrorCode`]
//!   (from `sluice-protocol`), named as Kafka names them.
//! - [`net`]: pipelined broker connections, version negotiation, metadata
//!   and coordinators.
//! - [`producer`]: accumulators, partitioner, sender, idempotence,
//!   transactions.
//! - [`consumer`]: group membership, assignors, fetcher (read_committed
//!   included), offsets.
//! - [`admin`]: topics, configs, groups, offsets, cluster.

pub mod admin;
pub mod auth;
mod backoff;
pub mod config;
pub mod consumer;
pub mod error;
pub mod net;
pub mod producer;

pub use admin::{AdminClient, NewTopic};
pub use config::{
    Acks, AssignorKind, ClientConfig, ConsumerConfig, OffsetReset, ProducerConfig, SecurityProtocol,
};
pub use consumer::{
    Consumer, ConsumerGroupMetadata, ConsumerRecord, OffsetAndMetadata, PartitionBatch,
    RebalanceListener, ShutdownHandle, TopicPartition,
};
pub use error::{Error, ErrorCode, Result};
pub use producer::{
    DeliveryFuture, Partitioner, Producer, ProducerRecord, RecordMetadata, SendFuture,
    TransactionState,
};
pub use sluice_protocol::clock;
pub use sluice_protocol::compression::Compression;
