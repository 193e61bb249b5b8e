//! The broker's integration tests, one binary: each module drives real
//! `sluiced` processes (or, in `quorum`, the controllers in-process) over
//! the wire. One binary rather than one per file: every test binary of a
//! release build is linked with thin LTO over the whole dependency graph,
//! which cost CI a link of the broker per file.

mod support;

mod cluster;
mod cluster_security;
mod compaction;
mod fetch_sessions;
mod idempotence;
mod io_uring_missing;
mod lifecycle;
mod protocol;
mod quorum;
mod quotas;
mod replica;
mod replica_fetcher;
mod security;
mod storage;
mod transactions_log;
