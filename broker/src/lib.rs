//! sluiced: a Kafka-compatible broker, thread-per-core on io_uring.
//!
//! # Layout
//! - [`alloc`]: the global allocator that survives absurd length claims.
//! - [`config`]: every setting, named after Kafka's properties; the names
//!   spelled once ([`config::names`]) and the topic-level properties'
//!   descriptors ([`config::topic`]).
//! - [`runtime`]: start-up (io_uring probe, shards, listeners, signals) and
//!   clean shutdown.
//! - [`shard`]: thread-per-core shards, ownership of partitions and groups,
//!   cross-shard mailboxes.
//! - [`net`]: listeners (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
//!   driving the SASL exchange, framing, the per-connection loop,
//!   zero-copy fetch.
//! - [`auth`]: who a client is and what it may do: the security state every
//!   layer reads (listeners, sessions, [`auth::Security`]), SCRAM, PLAIN,
//!   MSK IAM signature verification, IAM policy documents and the
//!   authorizer.
//! - [`api`]: one module per Kafka API and the registry that lists them.
//! - [`replica`]: the replica layer between the handlers and the logs
//!   (Kafka's ReplicaManager): each partition a log plus a role, the high
//!   watermark over the ISR, follower fetch tracking, acks=all, ISR changes.
//! - [`log`]: partition logs: segments, indexes, group-commit appends (each
//!   round staged by the pure [`log::staging`]), reads, recovery, retention,
//!   idempotent producer state, the leader epoch cache
//!   ([`log::epoch_cache`]) and a follower's appends and truncation
//!   ([`log::follower`]).
//! - [`group`]: the consumer-group coordinator.
//! - [`fetch_session`]: incremental fetch sessions (KIP-227), a cache per
//!   shard, pure; api/fetch.rs opens and finishes a Fetch through it.
//! - [`peer`]: outbound connections to other brokers (compio, through
//!   `sluice_protocol::codec`), with ApiVersions and reconnect backoff.
//! - [`tls`]: rustls over the io_uring socket, both sides: the SSL
//!   listeners' (net) and connections to other brokers' (peer).
//! - [`replica`]: the replica layer; [`replica::fetcher`], a follower's
//!   fetcher pulling from one leader.
//! - [`cluster`]: the metadata image (topics, configs, producer ids).
//! - [`metrics`]: Prometheus exposition.
//!
//! Layers, top to bottom: runtime -> net -> api -> replica -> log; shard, cluster,
//! group, fetch_session, auth, config and metrics beside them; replica's fetcher uses peer,
//! net and peer use tls,
//! and log imports neither. Imports point down only
//! (`scripts/check-modules broker/src` checks there are no cycles).

pub mod alloc;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod fetch_session;
pub mod group;
pub mod log;
pub mod metrics;
pub mod net;
pub mod peer;
pub mod quota;
pub mod replica;
pub mod runtime;
pub mod shard;
pub mod tls;
pub mod txn;
