//! The client's integration tests, one binary: each module runs against a
//! real `sluiced` started by `support` and, when
//! SLUICE_TEST_KAFKA_BOOTSTRAP is set, against that Apache Kafka. One
//! binary rather than one per file, so a release build links (with thin
//! LTO) once.

mod support;

mod admin;
mod consumer;
mod fetch_sessions;
mod producer;
mod transactions;
