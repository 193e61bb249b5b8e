//! A producer batch and what names it: the partition it goes to
//! ([`TopicPartition`]), its bytes through its life ([`Payload`]), and the
//! producer id, epoch and sequence an idempotent producer numbers it with
//! ([`SeqAssignment`]). A leaf the accumulator (which fills batches), the
//! idempotence bookkeeping (which numbers them) and the sender share.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sluice_protocol::batch::BatchBuilder;

use super::completion::Records;
use crate::error::Error;

/// Split-key range of an unsplit batch: room for 62 halvings, more than
/// any record count needs.
pub(crate) const ROOT_SPLIT_SPAN: u64 = 1 << 62;

/// A topic partition, with the topic name shared between batches.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A batch's bytes through its life.
pub(crate) enum Payload {
    /// Still taking records.
    Open(BatchBuilder),
    /// Encoded (on its first send), kept for retries.
    Built(Bytes),
    /// Handed to a request being sent.
    Taken,
}

pub(crate) struct ProducerBatch {
    /// Creation order (per producer), used for ordered re-enqueueing and flush.
    pub id: u64,
    /// Order among the pieces of a split batch (which share `id`): pieces
    /// of `[split_key, split_key + split_span)` sort by key.
    pub split_key: u64,
    pub split_span: u64,
    pub tp: TopicPartition,
    pub payload: Payload,
    /// Its records' delivery futures' shared outcome.
    pub records: Records,
    pub created: Instant,
    /// Uncompressed size estimate (an upper bound of the wire size).
    pub size: usize,
    /// Bytes of `buffer.memory` this batch holds.
    pub reserved: usize,
    /// No more appends (reached `batch.size`, or a newer batch exists).
    pub closed: bool,
    /// Send attempts so far.
    pub attempts: u32,
    /// Not before this instant (retry backoff).
    pub retry_at: Option<Instant>,
    /// Producer id, epoch and sequence once drained with idempotence.
    pub seq: Option<SeqAssignment>,
    pub last_error: Option<Error>,
}

impl ProducerBatch {
    pub fn record_count(&self) -> usize {
        self.records.len()
    }
}

/// A producer id and epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// The identity and first sequence a drained batch was numbered with.
/// Sequences are counted without wrapping here and wrap as Kafka's do
/// (at i32::MAX back to 0) on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SeqAssignment {
    pub ident: ProducerIdentity,
    pub base: i64,
}

impl SeqAssignment {
    pub fn wire_sequence(&self) -> i32 {
        (self.base % (i32::MAX as i64 + 1)) as i32
    }
}
