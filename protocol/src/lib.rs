//! Wire-level pieces both sides of Sluice must agree on byte for byte, with
//! no I/O: the Kafka v2 record batch codec, the compression codecs, request
//! framing, the Java-compatible partitioner hash and the SigV4 signature of
//! AWS MSK IAM sign-ins. Request and response message types come from the
//! `kafka-protocol` crate, re-exported here so every crate uses the same
//! version.
//!
//! # Layout
//! - [`civil`]: days since the Unix epoch for a calendar date and back
//!   (SigV4 dates).
//! - [`batch`]: v2 RecordBatch header, CRC-32C, validation, in-place
//!   patches, recovery scan, record encode/decode ([`batch::BatchBuilder`]).
//! - [`clock`]: wall-clock epoch milliseconds ([`clock::now_ms`]).
//! - [`codec`]: request frames out, response frames in, for any
//!   `kafka_protocol` request type (the one wire client codec).
//! - [`compression`]: gzip, snappy (xerial framing), lz4 (frame), zstd,
//!   with capped decompression.
//! - [`error`]: [`ErrorCode`], Kafka's error codes (name, code, retriable,
//!   message) for broker, client and bindings.
//! - [`frame`]: the 4-byte size prefix and its limit check.
//! - [`msk_iam`]: AWS MSK IAM's SigV4-presigned `kafka-cluster:Connect`
//!   request (constants, URI encoding, canonical request, signature), which
//!   the client signs and the broker verifies.
//! - [`murmur2`]: the Java client's murmur2 and keyed partition choice.
//! - [`varint`]: zigzag varint/varlong primitives.
//! - [`versions`]: a peer's ApiVersions ranges and choosing the highest
//!   common version.

pub mod batch;
pub mod civil;
pub mod clock;
pub mod codec;
pub mod compression;
pub mod error;
pub mod frame;
pub mod msk_iam;
pub mod murmur2;
pub mod sasl;
pub mod varint;
pub mod versions;

pub use error::ErrorCode;
pub use kafka_protocol;
