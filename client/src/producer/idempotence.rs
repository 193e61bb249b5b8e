//! Idempotent delivery: the producer id and epoch from InitProducerId, and
//! per partition the sequence numbers that let the broker drop a retried
//! batch it already wrote. A batch gets its sequence when it is first
//! drained and keeps it across retries. Up to `max.in.flight` batches of a
//! partition may be in flight, once its first batch under the current
//! identity was acknowledged (before that the broker may hold no state for
//! the producer and would take a later batch first); when one fails, it and every later one come
//! back in sequence order and are resent one at a time from the first
//! unresolved sequence, so order holds. A duplicate answer, or an answer
//! for a sequence already acknowledged, is a success. A sequence gap the
//! broker reports (OUT_OF_ORDER_SEQUENCE_NUMBER on the first unresolved
//! batch), a lost producer (UNKNOWN_PRODUCER_ID) or a fenced epoch asks
//! for a new epoch (KIP-360: InitProducerId with the current id and epoch);
//! once the partition has nothing in flight its queued batches are
//! renumbered from 0 under the new identity and resent. Each partition keeps
//! the identity its sequences belong to and takes up the producer's newest
//! one only when it has nothing unresolved, so a bump for one partition
//! never breaks the numbering of another.

use std::collections::{BTreeSet, HashMap, VecDeque};

use bytes::Bytes;
use sluice_protocol::batch::{decode_records, BatchBuilder, BatchHeader};

use super::batch::{ProducerBatch, ProducerIdentity, SeqAssignment, TopicPartition};
use crate::error::{Error, ErrorCode, Result};

/// What to do with a batch after a Produce answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    Success,
    Retry,
    /// Retry after an epoch bump and renumbering of the partition.
    ResetAndRetry,
    Fail,
}

#[derive(Debug, Default)]
struct PartitionSeq {
    /// The identity this partition's sequences belong to.
    ident: Option<ProducerIdentity>,
    next: i64,
    /// Base sequences assigned and not yet resolved (in flight or queued for retry).
    unresolved: BTreeSet<i64>,
    /// Batches of this partition in requests awaiting an answer.
    in_flight: usize,
    last_acked: i64,
    /// Renumbering wanted, asked while the producer generation was this.
    reset_requested: Option<u64>,
}

/// The producer's idempotence state; owned by the sender task.
#[derive(Debug, Default)]
pub(crate) struct Idempotence {
    current: Option<ProducerIdentity>,
    /// Increments on every new identity.
    generation: u64,
    partitions: HashMap<TopicPartition, PartitionSeq>,
}

impl Idempotence {
    pub fn current(&self) -> Option<ProducerIdentity> {
        self.current
    }

    pub fn set_identity(&mut self, ident: ProducerIdentity) {
        tracing::info!(
            producer_id = ident.id,
            epoch = ident.epoch,
            "producer identity"
        );
        self.current = Some(ident);
        self.generation += 1;
    }

    /// Whether some partition waits for an epoch bump that has not happened yet.
    pub fn needs_bump(&self) -> bool {
        self.current.is_some()
            && self
                .partitions
                .values()
                .any(|p| p.reset_requested == Some(self.generation))
    }

    fn part(&mut self, tp: &TopicPartition) -> &mut PartitionSeq {
        self.partitions
            .entry(tp.clone())
            .or_insert_with(|| PartitionSeq {
                last_acked: -1,
                ..Default::default()
            })
    }

    /// Asks for `tp`'s sequences to be renumbered under a new epoch.
    pub fn request_reset(&mut self, tp: &TopicPartition) {
        let g = self.generation;
        let p = self.part(tp);
        if p.reset_requested.is_none() {
            tracing::warn!(partition = %tp, "sequence reset requested: bumping the producer epoch");
            p.reset_requested = Some(g);
        }
    }

    /// If `tp` waits for a renumbering and it can happen now (nothing in
    /// flight, a new identity since it was asked), renumbers the queued
    /// batches that already had sequences, from 0.
    pub fn maybe_reset(&mut self, tp: &TopicPartition, queue: &mut VecDeque<ProducerBatch>) {
        let (gen, cur) = (self.generation, self.current);
        let p = self.part(tp);
        let Some(asked) = p.reset_requested else {
            return;
        };
        let Some(cur) = cur else { return };
        if p.in_flight > 0 || gen <= asked {
            return;
        }
        p.ident = Some(cur);
        p.next = 0;
        p.last_acked = -1;
        p.unresolved.clear();
        p.reset_requested = None;
        for b in queue.iter_mut().filter(|b| b.seq.is_some()) {
            let base = p.next;
            b.seq = Some(SeqAssignment { ident: cur, base });
            p.unresolved.insert(base);
            p.next += b.record_count() as i64;
        }
        tracing::info!(partition = %tp, producer_id = cur.id, epoch = cur.epoch, renumbered = p.unresolved.len(), "sequences reset");
    }

    /// May the front batch of `tp` be sent now? Numbers a fresh batch
    /// (`batch.seq` is set on success).
    pub fn gate(
        &mut self,
        tp: &TopicPartition,
        batch: &mut ProducerBatch,
        max_in_flight: usize,
    ) -> bool {
        let cur = self.current;
        let p = self.part(tp);
        if p.reset_requested.is_some() || p.in_flight >= max_in_flight {
            return false;
        }
        if let Some(seq) = batch.seq {
            // A retry goes only as the first unresolved batch of its partition.
            return p.unresolved.first() == Some(&seq.base);
        }
        let Some(cur) = cur else { return false };
        if p.ident != Some(cur) {
            if !p.unresolved.is_empty() || p.in_flight > 0 {
                return false; // older identity still has batches to settle
            }
            p.ident = Some(cur);
            p.next = 0;
            p.last_acked = -1;
        }
        // Until the broker has acknowledged one batch of this identity on
        // the partition, one batch at a time: a broker holding no state for
        // the producer appends any first sequence, so a second batch that
        // overtook a failed first one would be written ahead of it.
        if p.last_acked < 0 && (p.in_flight > 0 || !p.unresolved.is_empty()) {
            return false;
        }
        // Batches queued for retry sit at the front of the queue, so a fresh
        // front batch means none of this partition's is waiting.
        let base = p.next;
        p.next += batch.record_count() as i64;
        p.unresolved.insert(base);
        batch.seq = Some(SeqAssignment { ident: cur, base });
        true
    }

    pub fn on_sent(&mut self, tp: &TopicPartition) {
        self.part(tp).in_flight += 1;
    }

    pub fn on_returned(&mut self, tp: &TopicPartition) {
        let p = self.part(tp);
        p.in_flight = p.in_flight.saturating_sub(1);
    }

    /// Classifies a Produce answer with `code` for a batch numbered `seq`.
    pub fn classify(
        &mut self,
        tp: &TopicPartition,
        seq: SeqAssignment,
        count: usize,
        code: ErrorCode,
    ) -> Verdict {
        let p = self.part(tp);
        let last = seq.base + count as i64 - 1;
        match code {
            ErrorCode::None | ErrorCode::DuplicateSequenceNumber => Verdict::Success,
            // A later sequence was acknowledged, so the broker wrote this
            // one (it appends a producer's sequences only in order). Not for
            // a partition's first batch: a broker without state for the
            // producer takes any first sequence.
            _ if p.ident == Some(seq.ident) && seq.base > 0 && last <= p.last_acked => {
                Verdict::Success
            }
            ErrorCode::OutOfOrderSequenceNumber => {
                if p.unresolved.first().is_some_and(|&first| first < seq.base) {
                    // An earlier batch is unresolved: this one failed because
                    // of it and is retried after it.
                    Verdict::Retry
                } else {
                    Verdict::ResetAndRetry
                }
            }
            ErrorCode::UnknownProducerId | ErrorCode::InvalidProducerEpoch => {
                Verdict::ResetAndRetry
            }
            c if c.is_retriable() => Verdict::Retry,
            _ => Verdict::Fail,
        }
    }

    pub fn on_acked(&mut self, tp: &TopicPartition, seq: SeqAssignment, count: usize) {
        let p = self.part(tp);
        p.unresolved.remove(&seq.base);
        if p.ident == Some(seq.ident) {
            p.last_acked = p.last_acked.max(seq.base + count as i64 - 1);
        }
    }

    /// A numbered batch is given up. When the broker surely did not write
    /// it, its sequences are a gap that later batches cannot cross: the
    /// partition is renumbered under a new epoch.
    pub fn on_dropped(
        &mut self,
        tp: &TopicPartition,
        seq: SeqAssignment,
        surely_not_written: bool,
    ) {
        let p = self.part(tp);
        p.unresolved.remove(&seq.base);
        if surely_not_written && p.ident == Some(seq.ident) {
            self.request_reset(tp);
        }
    }
}

/// The batch's bytes with `seq`'s producer id, epoch and base sequence:
/// unchanged if it already has them, else decoded and re-encoded (only after
/// an epoch bump, so rarely).
pub(crate) fn stamp(batch: Bytes, seq: &SeqAssignment) -> Result<Bytes> {
    let h =
        BatchHeader::parse(&batch).map_err(|e| Error::Protocol(format!("retried batch: {e}")))?;
    if h.producer_id == seq.ident.id
        && h.producer_epoch == seq.ident.epoch
        && h.base_sequence == seq.wire_sequence()
    {
        return Ok(batch);
    }
    let records =
        decode_records(&batch).map_err(|e| Error::Protocol(format!("retried batch: {e}")))?;
    let compression = h
        .compression()
        .map_err(|e| Error::Protocol(format!("retried batch: {e}")))?;
    let mut b = BatchBuilder::with_capacity(compression, batch.len())
        .with_producer(seq.ident.id, seq.ident.epoch, seq.wire_sequence())
        .with_transactional(h.is_transactional())
        .with_base_timestamp(h.base_timestamp);
    for r in records {
        b.push_with_offset_delta(
            r.offset_delta,
            h.base_timestamp.wrapping_add(r.timestamp_delta),
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )
        .map_err(|e| Error::Protocol(format!("re-encoding batch: {e}")))?;
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use sluice_protocol::batch::split_batches;
    use sluice_protocol::compression::Compression;

    use super::*;
    use crate::producer::batch::{Payload, ROOT_SPLIT_SPAN};

    const ID: ProducerIdentity = ProducerIdentity { id: 7, epoch: 0 };

    fn tp() -> TopicPartition {
        TopicPartition {
            topic: Arc::from("t"),
            partition: 0,
        }
    }

    fn batch(id: u64, records: usize) -> ProducerBatch {
        let mut recs = super::super::completion::Records::new(tp().topic, 0);
        for _ in 0..records {
            drop(recs.push(0));
        }
        ProducerBatch {
            id,
            split_key: 0,
            split_span: ROOT_SPLIT_SPAN,
            tp: tp(),
            payload: Payload::Taken,
            records: recs,
            created: Instant::now(),
            size: 0,
            reserved: 0,
            closed: true,
            attempts: 0,
            retry_at: None,
            seq: None,
            last_error: None,
        }
    }

    #[test]
    fn sequences_are_assigned_in_drain_order_and_kept() {
        let mut st = Idempotence::default();
        let mut b = batch(0, 3);
        assert!(!st.gate(&tp(), &mut b, 5), "no producer id yet");
        st.set_identity(ID);
        // The partition's first batch goes alone: until it is acknowledged
        // the broker may hold no state for us and would take b first.
        let mut w = batch(9, 1);
        assert!(st.gate(&tp(), &mut w, 5));
        assert_eq!(w.seq.unwrap().base, 0);
        st.on_sent(&tp());
        assert!(
            !st.gate(&tp(), &mut b, 5),
            "one batch until the first is acked"
        );
        st.on_returned(&tp());
        st.on_acked(&tp(), w.seq.unwrap(), 1);
        assert!(st.gate(&tp(), &mut b, 5));
        assert_eq!(b.seq.unwrap().base, 1);
        st.on_sent(&tp());
        let mut c = batch(1, 2);
        assert!(st.gate(&tp(), &mut c, 5));
        assert_eq!(c.seq.unwrap().base, 4);
        st.on_sent(&tp());
        // b fails retriably; c then fails out of order because of it.
        st.on_returned(&tp());
        assert_eq!(
            st.classify(&tp(), b.seq.unwrap(), 3, ErrorCode::NotLeaderOrFollower),
            Verdict::Retry
        );
        st.on_returned(&tp());
        assert_eq!(
            st.classify(
                &tp(),
                c.seq.unwrap(),
                2,
                ErrorCode::OutOfOrderSequenceNumber
            ),
            Verdict::Retry
        );
        // Only the first unresolved may be resent.
        assert!(!st.gate(&tp(), &mut c, 5));
        assert!(st.gate(&tp(), &mut b, 5));
        assert_eq!(b.seq.unwrap().base, 1, "a retry keeps its sequence");
        st.on_sent(&tp());
        st.on_returned(&tp());
        st.on_acked(&tp(), b.seq.unwrap(), 3);
        assert!(st.gate(&tp(), &mut c, 5));
        st.on_sent(&tp());
        assert_eq!(
            st.classify(&tp(), c.seq.unwrap(), 2, ErrorCode::DuplicateSequenceNumber),
            Verdict::Success
        );
        st.on_returned(&tp());
        st.on_acked(&tp(), c.seq.unwrap(), 2);
        // A late answer for an already acknowledged sequence is a success...
        assert_eq!(
            st.classify(
                &tp(),
                c.seq.unwrap(),
                2,
                ErrorCode::OutOfOrderSequenceNumber
            ),
            Verdict::Success
        );
        assert_eq!(
            st.classify(&tp(), c.seq.unwrap(), 2, ErrorCode::NotLeaderOrFollower),
            Verdict::Success
        );
        // ...except for sequence 0, which a broker without our state takes
        // from any later batch too.
        assert_eq!(
            st.classify(
                &tp(),
                w.seq.unwrap(),
                1,
                ErrorCode::OutOfOrderSequenceNumber
            ),
            Verdict::ResetAndRetry
        );
    }

    #[test]
    fn in_flight_per_partition_is_bounded() {
        let mut st = Idempotence::default();
        st.set_identity(ID);
        let mut first = batch(9, 1);
        assert!(st.gate(&tp(), &mut first, 5));
        st.on_sent(&tp());
        st.on_returned(&tp());
        st.on_acked(&tp(), first.seq.unwrap(), 1);
        for i in 0..5 {
            let mut b = batch(i, 1);
            assert!(st.gate(&tp(), &mut b, 5));
            st.on_sent(&tp());
        }
        assert!(!st.gate(&tp(), &mut batch(5, 1), 5));
        st.on_returned(&tp());
        assert!(st.gate(&tp(), &mut batch(5, 1), 5));
    }

    #[test]
    fn a_gap_bumps_the_epoch_and_renumbers_from_zero() {
        let mut st = Idempotence::default();
        st.set_identity(ID);
        let mut a = batch(0, 4);
        let mut b = batch(1, 4);
        assert!(st.gate(&tp(), &mut a, 5));
        st.on_sent(&tp());
        st.on_returned(&tp());
        st.on_acked(&tp(), a.seq.unwrap(), 4);
        assert!(st.gate(&tp(), &mut b, 5));
        st.on_sent(&tp());
        // The broker lost our state.
        st.on_returned(&tp());
        assert_eq!(
            st.classify(&tp(), b.seq.unwrap(), 4, ErrorCode::UnknownProducerId),
            Verdict::ResetAndRetry
        );
        st.request_reset(&tp());
        assert!(st.needs_bump());
        let mut q: VecDeque<ProducerBatch> = VecDeque::new();
        q.push_back(b);
        q.push_back(batch(2, 1));
        st.maybe_reset(&tp(), &mut q);
        assert_eq!(q[0].seq.unwrap().base, 4, "no renumbering before the bump");
        assert!(!st.gate(&tp(), &mut q[0], 5), "waits for the reset");
        st.set_identity(ProducerIdentity { id: 7, epoch: 1 });
        assert!(!st.needs_bump());
        st.maybe_reset(&tp(), &mut q);
        let s = q[0].seq.unwrap();
        assert_eq!((s.base, s.ident.epoch), (0, 1));
        assert!(q[1].seq.is_none());
        let mut front = q.pop_front().unwrap();
        assert!(st.gate(&tp(), &mut front, 5));
        st.on_sent(&tp());
        let mut next = q.pop_front().unwrap();
        assert!(
            !st.gate(&tp(), &mut next, 5),
            "under the new epoch too, one batch until the first is acked"
        );
        st.on_returned(&tp());
        st.on_acked(&tp(), front.seq.unwrap(), 4);
        assert!(st.gate(&tp(), &mut next, 5));
        assert_eq!(next.seq.unwrap().base, 4);
    }

    #[test]
    fn a_new_identity_is_taken_up_only_when_settled() {
        let mut st = Idempotence::default();
        st.set_identity(ID);
        let other = TopicPartition {
            topic: Arc::from("t"),
            partition: 1,
        };
        let mut a = batch(0, 1);
        assert!(st.gate(&other, &mut a, 5));
        st.on_sent(&other);
        st.set_identity(ProducerIdentity { id: 8, epoch: 0 });
        let mut b = batch(1, 1);
        assert!(
            !st.gate(&other, &mut b, 5),
            "waits for the old identity's batch"
        );
        st.on_returned(&other);
        st.on_acked(&other, a.seq.unwrap(), 1);
        assert!(st.gate(&other, &mut b, 5));
        assert_eq!(
            b.seq.unwrap(),
            SeqAssignment {
                ident: ProducerIdentity { id: 8, epoch: 0 },
                base: 0
            }
        );
    }

    #[test]
    fn stamping_rewrites_the_producer_fields_only() {
        let mut bb = BatchBuilder::new(Compression::Lz4).with_producer(7, 0, 10);
        for i in 0..20u8 {
            bb.push(1000 + i as i64, Some(&[i]), Some(&[i; 30]), &[])
                .unwrap();
        }
        let built = bb.build();
        let same = stamp(
            built.clone(),
            &SeqAssignment {
                ident: ID,
                base: 10,
            },
        )
        .unwrap();
        assert_eq!(same, built);
        let re = stamp(
            built.clone(),
            &SeqAssignment {
                ident: ProducerIdentity { id: 9, epoch: 3 },
                base: 0,
            },
        )
        .unwrap();
        let (h, _) = split_batches(&re).unwrap().remove(0);
        assert_eq!(
            (
                h.producer_id,
                h.producer_epoch,
                h.base_sequence,
                h.records_count
            ),
            (9, 3, 0, 20)
        );
        assert_eq!(h.base_timestamp, 1000);
        assert_eq!(
            decode_records(&re).unwrap(),
            decode_records(&built).unwrap()
        );
        // Sequences wrap as Kafka's do.
        let s = SeqAssignment {
            ident: ID,
            base: i32::MAX as i64 + 5,
        };
        assert_eq!(s.wire_sequence(), 4);
    }
}
