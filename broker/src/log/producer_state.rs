//! Idempotent and transactional producer state of one partition: for each
//! producer id, its current epoch and the metadata of its last five
//! batches, which is what Kafka keeps to recognise a retried batch
//! (answered with its original offset), a sequence gap
//! (OUT_OF_ORDER_SEQUENCE_NUMBER) and a fenced epoch
//! (INVALID_PRODUCER_EPOCH); and for transactions (KIP-98) the producer's
//! open transaction on this partition (its first offset) and the
//! coordinator epoch of its last marker, plus the partition's open
//! transactions ordered by first offset, from which the last stable offset
//! follows. The state is rebuilt from the batches in the log on recovery,
//! so a retry after a crash is still recognised and an open transaction
//! still holds the last stable offset.

use std::collections::{BTreeMap, HashMap, VecDeque};

use sluice_protocol::batch::BatchHeader;
use sluice_protocol::ErrorCode;

use super::txn_index::AbortedTxn;
use super::txn_marker::EndTxnMarker;

/// Kafka keeps this many batches per producer for duplicate detection; it is
/// also the largest `max.in.flight.requests.per.connection` idempotence allows.
pub const RETAINED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMeta {
    pub first_seq: i32,
    pub last_seq: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
}

#[derive(Debug, Clone)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Wall-clock ms of the last append, for expiry.
    pub last_update_ms: i64,
    /// The coordinator epoch of the last transaction marker (-1: none yet);
    /// a marker from an older coordinator is fenced.
    pub coordinator_epoch: i32,
    /// The first offset of the producer's open transaction here, if any.
    pub current_txn_first_offset: Option<i64>,
    /// The max timestamp of the last batch or marker (DescribeProducers).
    pub last_timestamp: i64,
}

impl Default for ProducerEntry {
    fn default() -> Self {
        ProducerEntry {
            epoch: 0,
            batches: VecDeque::new(),
            last_update_ms: 0,
            coordinator_epoch: -1,
            current_txn_first_offset: None,
            last_timestamp: -1,
        }
    }
}

/// How an appended batch changed the partition's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnEvent {
    /// The producer's first transactional batch since its last marker.
    Began { producer_id: i64, first_offset: i64 },
    /// A marker ended the producer's open transaction (`first_offset`
    /// `None`: it had none here, which Kafka writes and ignores).
    Ended {
        producer_id: i64,
        first_offset: Option<i64>,
        marker_offset: i64,
        commit: bool,
    },
}

impl ProducerEntry {
    /// Records an appended batch of this producer (`h` carries its assigned
    /// base offset; `marker` what a control batch says); a new epoch starts
    /// the sequence history afresh. Returns the transaction it began or
    /// ended.
    pub fn record(
        &mut self,
        h: &BatchHeader,
        marker: Option<EndTxnMarker>,
        now_ms: i64,
    ) -> Option<TxnEvent> {
        self.last_update_ms = now_ms;
        self.last_timestamp = h.max_timestamp;
        if h.is_control() {
            // A marker may carry a bumped epoch (the coordinator aborting
            // on a timeout or fencing): it fences the older epoch here too,
            // as Kafka's `maybeUpdateProducerEpoch`. Sequences are not touched.
            if h.producer_epoch > self.epoch {
                self.epoch = h.producer_epoch;
                self.batches.clear();
            }
            let m = marker?;
            self.coordinator_epoch = m.coordinator_epoch;
            return Some(TxnEvent::Ended {
                producer_id: h.producer_id,
                first_offset: self.current_txn_first_offset.take(),
                marker_offset: h.base_offset,
                commit: m.commit,
            });
        }
        if h.producer_epoch != self.epoch {
            self.epoch = h.producer_epoch;
            self.batches.clear();
        }
        // A batch without a sequence (a coordinator's write for the
        // producer: transactional offset commits) leaves the sequence
        // history alone.
        if h.base_sequence < 0 {
            return self.begin_txn(h);
        }
        self.batches.push_back(BatchMeta {
            first_seq: h.base_sequence,
            last_seq: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
            max_timestamp: h.max_timestamp,
        });
        while self.batches.len() > RETAINED_BATCHES {
            self.batches.pop_front();
        }
        self.begin_txn(h)
    }

    /// The transaction a transactional batch begins, if none is open.
    fn begin_txn(&mut self, h: &BatchHeader) -> Option<TxnEvent> {
        if h.is_transactional() && self.current_txn_first_offset.is_none() {
            self.current_txn_first_offset = Some(h.base_offset);
            return Some(TxnEvent::Began {
                producer_id: h.producer_id,
                first_offset: h.base_offset,
            });
        }
        None
    }

    /// The last sequence number appended (-1: none).
    pub fn last_sequence(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }
}

/// What the appender should do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already in the log: answer with the original offsets, append nothing.
    Duplicate(BatchMeta),
    /// Reject with this Kafka error code.
    Reject(ErrorCode),
}

#[derive(Debug, Default, Clone)]
pub struct ProducerStateMap {
    pub producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id, oldest first.
    pub ongoing: BTreeMap<i64, i64>,
    /// Ended transactions whose marker the high watermark has not passed
    /// yet: first offset -> marker offset. They stay unstable until it has
    /// (Kafka's unreplicated transactions), so read_committed never sees a
    /// transaction's records before its marker is committed.
    pub unreplicated: BTreeMap<i64, i64>,
}

fn next_seq(seq: i32) -> i32 {
    if seq == i32::MAX {
        0
    } else {
        seq + 1
    }
}

impl ProducerStateMap {
    /// Checks an incoming batch against the producer's state (Kafka's rules).
    pub fn check(&self, h: &BatchHeader, marker: Option<&EndTxnMarker>) -> SequenceCheck {
        Self::check_entry(self.producers.get(&h.producer_id), h, marker)
    }

    /// Checks an incoming batch (`marker`: what a control batch says)
    /// against `entry`, the state of its producer (`None`: unknown), as
    /// [`check`](Self::check) does.
    pub fn check_entry(
        entry: Option<&ProducerEntry>,
        h: &BatchHeader,
        marker: Option<&EndTxnMarker>,
    ) -> SequenceCheck {
        if !h.has_producer_id() {
            return SequenceCheck::Append;
        }
        if h.is_control() {
            return Self::check_marker(entry, h, marker);
        }
        let Some(entry) = entry else {
            // Unknown producer (new, or its state expired): accept, as Kafka
            // does since KIP-360, whatever the first sequence.
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch);
        }
        let sequence = if h.base_sequence < 0 {
            // No sequence to check: a coordinator writing for the producer
            // (clients' batches with a producer id always carry one; the
            // produce path refuses them otherwise).
            SequenceCheck::Append
        } else if h.producer_epoch > entry.epoch {
            // A bumped epoch restarts sequences at zero.
            if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
            }
        } else {
            let last_seq = h.last_sequence();
            if let Some(dup) = entry
                .batches
                .iter()
                .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
            {
                return SequenceCheck::Duplicate(*dup);
            }
            match entry.batches.back() {
                Some(last) if h.base_sequence != next_seq(last.last_seq) => {
                    SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
                }
                _ => SequenceCheck::Append,
            }
        };
        // A producer in a transaction writes only transactional batches
        // until its marker (Kafka's "Expected transactional write").
        if sequence == SequenceCheck::Append
            && !h.is_transactional()
            && entry.current_txn_first_offset.is_some()
        {
            return SequenceCheck::Reject(ErrorCode::InvalidTxnState);
        }
        sequence
    }

    /// Kafka's checks of a transaction marker: not from an older producer
    /// epoch, not from an older coordinator. Markers carry no sequence.
    fn check_marker(
        entry: Option<&ProducerEntry>,
        h: &BatchHeader,
        marker: Option<&EndTxnMarker>,
    ) -> SequenceCheck {
        let Some(marker) = marker else {
            return SequenceCheck::Reject(ErrorCode::InvalidRecord);
        };
        let Some(entry) = entry else {
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch);
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return SequenceCheck::Reject(ErrorCode::TransactionCoordinatorFenced);
        }
        SequenceCheck::Append
    }

    /// Records an appended batch (`h` carries its assigned base offset,
    /// `marker` what a control batch says): the producer's entry, then the
    /// partition's transactions. Returns the index entry of a transaction
    /// it aborted. This is how followers and recovery replay the log.
    pub fn update(
        &mut self,
        h: &BatchHeader,
        marker: Option<EndTxnMarker>,
        now_ms: i64,
    ) -> Option<AbortedTxn> {
        if !h.has_producer_id() {
            return None;
        }
        let event = self
            .producers
            .entry(h.producer_id)
            .or_default()
            .record(h, marker, now_ms)?;
        self.apply(event)
    }

    /// Applies a transaction event to the partition's open transactions
    /// (the producer entries already reflect it). An abort of a transaction
    /// that wrote here returns its index entry, with the last stable offset
    /// as Kafka computes it: the first offset of the oldest other open
    /// transaction, or the offset after the marker.
    pub fn apply(&mut self, event: TxnEvent) -> Option<AbortedTxn> {
        match event {
            TxnEvent::Began {
                producer_id,
                first_offset,
            } => {
                self.ongoing.insert(first_offset, producer_id);
                None
            }
            TxnEvent::Ended {
                producer_id,
                first_offset,
                marker_offset,
                commit,
            } => {
                let first_offset = first_offset?;
                let last_stable_offset = self
                    .ongoing
                    .iter()
                    .find(|(_, pid)| **pid != producer_id)
                    .map_or(marker_offset + 1, |(first, _)| *first);
                self.ongoing.remove(&first_offset);
                self.unreplicated.insert(first_offset, marker_offset);
                (!commit).then_some(AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset: marker_offset,
                    last_stable_offset,
                })
            }
        }
    }

    /// The high watermark reached `hw`: ended transactions whose marker is
    /// below it are stable now.
    pub fn on_high_watermark(&mut self, hw: i64) {
        self.unreplicated.retain(|_, marker| *marker >= hw);
    }

    /// The first offset of the oldest transaction that is not yet stable
    /// (open, or ended with its marker not yet below the high watermark).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let open = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (open, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Kafka's last stable offset under high watermark `hw`.
    pub fn last_stable_offset(&self, hw: i64) -> i64 {
        let unreplicated = self
            .unreplicated
            .iter()
            .find(|(_, marker)| **marker >= hw)
            .map(|(first, _)| *first);
        [self.ongoing.keys().next().copied(), unreplicated]
            .into_iter()
            .flatten()
            .fold(hw, i64::min)
    }

    /// Drops producers idle for longer than `expiration_ms`, except those
    /// with an open transaction (Kafka never expires those).
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some() || now_ms - e.last_update_ms < expiration_ms
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        BatchHeader {
            base_offset: base,
            batch_length: 100,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: count,
        }
    }

    #[test]
    fn sequences_duplicates_gaps_and_fencing() {
        let mut m = ProducerStateMap::default();
        let b0 = header(7, 0, 0, 3, 0);
        assert_eq!(m.check(&b0, None), SequenceCheck::Append);
        m.update(&b0, None, 0);
        let b1 = header(7, 0, 3, 2, 3);
        assert_eq!(m.check(&b1, None), SequenceCheck::Append);
        m.update(&b1, None, 0);
        // A retry of b0 is a duplicate answered with its original offset.
        match m.check(&header(7, 0, 0, 3, -1), None) {
            SequenceCheck::Duplicate(meta) => assert_eq!(meta.first_offset, 0),
            other => panic!("{other:?}"),
        }
        // A gap.
        assert_eq!(
            m.check(&header(7, 0, 9, 1, -1), None),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
        );
        // A new epoch must restart at zero; an old one is fenced.
        assert_eq!(
            m.check(&header(7, 1, 5, 1, -1), None),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
        );
        m.update(&header(7, 1, 0, 1, 5), None, 0);
        assert_eq!(
            m.check(&header(7, 0, 5, 1, -1), None),
            SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch)
        );
        // Non-idempotent batches are never checked.
        assert_eq!(
            m.check(&header(-1, -1, -1, 1, -1), None),
            SequenceCheck::Append
        );
    }

    #[test]
    fn only_five_batches_are_retained() {
        let mut m = ProducerStateMap::default();
        for i in 0..7 {
            m.update(&header(1, 0, i, 1, i as i64), None, 0);
        }
        assert_eq!(m.producers[&1].batches.len(), RETAINED_BATCHES);
        assert_eq!(
            m.check(&header(1, 0, 0, 1, -1), None),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert!(matches!(
            m.check(&header(1, 0, 6, 1, -1), None),
            SequenceCheck::Duplicate(_)
        ));
    }

    fn txn(pid: i64, epoch: i16, seq: i32, count: i32, base: i64) -> BatchHeader {
        let mut h = header(pid, epoch, seq, count, base);
        h.attributes |= 0x10;
        h
    }

    fn marker_header(pid: i64, epoch: i16, base: i64) -> BatchHeader {
        let mut h = header(pid, epoch, -1, 1, base);
        h.attributes |= 0x30;
        h
    }

    fn marker(commit: bool, coordinator_epoch: i32) -> EndTxnMarker {
        EndTxnMarker {
            commit,
            coordinator_epoch,
        }
    }

    #[test]
    fn transactions_open_at_their_first_batch_and_end_at_their_marker() {
        let mut m = ProducerStateMap::default();
        assert_eq!(m.update(&txn(1, 0, 0, 2, 10), None, 0), None);
        assert_eq!(m.update(&txn(1, 0, 2, 2, 12), None, 0), None);
        assert_eq!(m.producers[&1].current_txn_first_offset, Some(10));
        assert_eq!(m.update(&txn(2, 0, 0, 1, 14), None, 0), None);
        assert_eq!(m.ongoing.iter().collect::<Vec<_>>(), [(&10, &1), (&14, &2)]);
        assert_eq!(m.last_stable_offset(100), 10);
        assert_eq!(m.last_stable_offset(5), 5, "never past the high watermark");
        // Producer 1 aborts at 15: its index entry's LSO is producer 2's start.
        let aborted = m.update(&marker_header(1, 0, 15), Some(marker(false, 3)), 0);
        assert_eq!(
            aborted,
            Some(AbortedTxn {
                producer_id: 1,
                first_offset: 10,
                last_offset: 15,
                last_stable_offset: 14,
            })
        );
        assert_eq!(m.producers[&1].current_txn_first_offset, None);
        assert_eq!(m.producers[&1].coordinator_epoch, 3);
        assert_eq!(m.producers[&1].last_sequence(), 3, "markers keep sequences");
        // Until the high watermark passes the marker the ended transaction
        // still holds the LSO.
        assert_eq!(m.last_stable_offset(15), 10);
        m.on_high_watermark(16);
        assert_eq!(m.last_stable_offset(16), 14);
        // Producer 2 commits at 16: nothing for the index; the LSO is the
        // high watermark once the marker is below it.
        assert_eq!(
            m.update(&marker_header(2, 0, 16), Some(marker(true, 3)), 0),
            None
        );
        assert_eq!(m.last_stable_offset(16), 14);
        m.on_high_watermark(17);
        assert_eq!(m.last_stable_offset(17), 17);
        assert_eq!(m.first_unstable_offset(), None);
        // A marker for a producer with no open transaction here is written
        // and changes nothing but its coordinator epoch.
        assert_eq!(
            m.update(&marker_header(1, 0, 17), Some(marker(false, 4)), 0),
            None
        );
        assert_eq!(m.first_unstable_offset(), None);
        assert_eq!(m.producers[&1].coordinator_epoch, 4);
        // The index entry of a lone abort names the marker + 1 as its LSO.
        m.update(&txn(1, 0, 4, 1, 18), None, 0);
        let lone = m.update(&marker_header(1, 0, 19), Some(marker(false, 4)), 0);
        assert_eq!(lone.map(|a| a.last_stable_offset), Some(20));
    }

    #[test]
    fn transaction_rules_as_kafka() {
        let mut m = ProducerStateMap::default();
        m.update(&txn(1, 2, 0, 1, 0), None, 0);
        // A non-transactional batch inside the transaction.
        assert_eq!(
            m.check(&header(1, 2, 1, 1, -1), None),
            SequenceCheck::Reject(ErrorCode::InvalidTxnState)
        );
        // A transactional one continues it; a retry is still a duplicate.
        assert_eq!(m.check(&txn(1, 2, 1, 1, -1), None), SequenceCheck::Append);
        assert!(matches!(
            m.check(&txn(1, 2, 0, 1, -1), None),
            SequenceCheck::Duplicate(_)
        ));
        // An older epoch is fenced, data or marker.
        assert_eq!(
            m.check(&txn(1, 1, 1, 1, -1), None),
            SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(
            m.check(&marker_header(1, 1, -1), Some(&marker(true, 0))),
            SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch)
        );
        // A marker needs its control record.
        assert_eq!(
            m.check(&marker_header(1, 2, -1), None),
            SequenceCheck::Reject(ErrorCode::InvalidRecord)
        );
        // Coordinator epochs: once 5 was seen, 4 is fenced, 5 and 6 are not.
        m.update(&marker_header(1, 2, 1), Some(marker(true, 5)), 0);
        assert_eq!(
            m.check(&marker_header(1, 2, -1), Some(&marker(false, 4))),
            SequenceCheck::Reject(ErrorCode::TransactionCoordinatorFenced)
        );
        for e in [5, 6] {
            assert_eq!(
                m.check(&marker_header(1, 2, -1), Some(&marker(false, e))),
                SequenceCheck::Append
            );
        }
        // After the marker, a non-transactional batch is fine again.
        assert_eq!(
            m.check(&header(1, 2, 1, 1, -1), None),
            SequenceCheck::Append
        );
        // A marker with a bumped epoch fences the old epoch's data.
        m.update(&marker_header(1, 3, 2), Some(marker(false, 6)), 0);
        assert_eq!(
            m.check(&txn(1, 2, 1, 1, -1), None),
            SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch)
        );
        assert_eq!(m.check(&txn(1, 3, 0, 1, -1), None), SequenceCheck::Append);
        // Markers for unknown producers are written.
        assert_eq!(
            m.check(&marker_header(9, 0, -1), Some(&marker(true, 0))),
            SequenceCheck::Append
        );
    }

    #[test]
    fn producers_in_a_transaction_never_expire() {
        let mut m = ProducerStateMap::default();
        m.update(&txn(1, 0, 0, 1, 0), None, 0);
        m.update(&header(2, 0, 0, 1, 1), None, 0);
        m.expire(10_000, 100);
        assert!(m.producers.contains_key(&1));
        assert!(!m.producers.contains_key(&2));
    }
}
