//! Idempotent-producer state of one partition: for each producer id, its
//! current epoch and the metadata of its last five batches, which is what
//! Kafka keeps to recognise a retried batch (answered with its original
//! offset), a sequence gap (OUT_OF_ORDER_SEQUENCE_NUMBER) and a fenced epoch
//! (INVALID_PRODUCER_EPOCH). The state is rebuilt from the batch headers in
//! the log on recovery, so a retry after a crash is still recognised.

use std::collections::{HashMap, VecDeque};

use sluice_protocol::batch::BatchHeader;
use sluice_protocol::ErrorCode;

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

#[derive(Debug, Clone, Default)]
pub struct ProducerEntry {
    pub epoch: i16,
    pub batches: VecDeque<BatchMeta>,
    /// Wall-clock ms of the last append, for expiry.
    pub last_update_ms: i64,
}

impl ProducerEntry {
    /// Records an appended batch of this producer (`h` carries its assigned
    /// base offset); a new epoch starts the history afresh.
    pub fn record(&mut self, h: &BatchHeader, now_ms: i64) {
        if h.producer_epoch != self.epoch {
            self.epoch = h.producer_epoch;
            self.batches.clear();
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
        self.last_update_ms = now_ms;
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
    pub fn check(&self, h: &BatchHeader) -> SequenceCheck {
        Self::check_entry(self.producers.get(&h.producer_id), h)
    }

    /// Checks an incoming batch against `entry`, the state of its producer
    /// (`None`: unknown), as [`check`](Self::check) does.
    pub fn check_entry(entry: Option<&ProducerEntry>, h: &BatchHeader) -> SequenceCheck {
        if !h.has_producer_id() {
            return SequenceCheck::Append;
        }
        let Some(entry) = entry else {
            // Unknown producer (new, or its state expired): accept, as Kafka
            // does since KIP-360, whatever the first sequence.
            return SequenceCheck::Append;
        };
        if h.producer_epoch < entry.epoch {
            return SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch);
        }
        if h.producer_epoch > entry.epoch {
            // A bumped epoch restarts sequences at zero.
            return if h.base_sequence == 0 {
                SequenceCheck::Append
            } else {
                SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
            };
        }
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
    }

    /// Records an appended batch (`h` carries its assigned base offset).
    pub fn update(&mut self, h: &BatchHeader, now_ms: i64) {
        if !h.has_producer_id() {
            return;
        }
        self.producers
            .entry(h.producer_id)
            .or_default()
            .record(h, now_ms);
    }

    /// Drops producers idle for longer than `expiration_ms`.
    pub fn expire(&mut self, now_ms: i64, expiration_ms: i64) {
        self.producers
            .retain(|_, e| now_ms - e.last_update_ms < expiration_ms);
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
        assert_eq!(m.check(&b0), SequenceCheck::Append);
        m.update(&b0, 0);
        let b1 = header(7, 0, 3, 2, 3);
        assert_eq!(m.check(&b1), SequenceCheck::Append);
        m.update(&b1, 0);
        // A retry of b0 is a duplicate answered with its original offset.
        match m.check(&header(7, 0, 0, 3, -1)) {
            SequenceCheck::Duplicate(meta) => assert_eq!(meta.first_offset, 0),
            other => panic!("{other:?}"),
        }
        // A gap.
        assert_eq!(
            m.check(&header(7, 0, 9, 1, -1)),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
        );
        // A new epoch must restart at zero; an old one is fenced.
        assert_eq!(
            m.check(&header(7, 1, 5, 1, -1)),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
        );
        m.update(&header(7, 1, 0, 1, 5), 0);
        assert_eq!(
            m.check(&header(7, 0, 5, 1, -1)),
            SequenceCheck::Reject(ErrorCode::InvalidProducerEpoch)
        );
        // Non-idempotent batches are never checked.
        assert_eq!(m.check(&header(-1, -1, -1, 1, -1)), SequenceCheck::Append);
    }

    #[test]
    fn only_five_batches_are_retained() {
        let mut m = ProducerStateMap::default();
        for i in 0..7 {
            m.update(&header(1, 0, i, 1, i as i64), 0);
        }
        assert_eq!(m.producers[&1].batches.len(), RETAINED_BATCHES);
        assert_eq!(
            m.check(&header(1, 0, 0, 1, -1)),
            SequenceCheck::Reject(ErrorCode::OutOfOrderSequenceNumber)
        );
        assert!(matches!(
            m.check(&header(1, 0, 6, 1, -1)),
            SequenceCheck::Duplicate(_)
        ));
    }
}
