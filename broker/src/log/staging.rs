//! Staging of one group-commit round, with no I/O: given the batches that
//! queued up, the partition's producer state and where the log ends, it
//! decides each request's outcome (appended, duplicate, rejected), assigns
//! base offsets, patches the batch headers and lays the accepted bytes out
//! as the buffers of one vectored write. Nothing of the partition changes
//! here: the [`RoundPlan`] carries the producer entries and index positions
//! that `append` commits once the write is durable.
//!
//! Record bytes are never copied: per batch the plan holds a patched copy of
//! its 61-byte header and a slice of the request buffer for the rest (this
//! memcpy was ~7% of the broker's produce profile when rounds were joined).

use std::collections::HashMap;

use bytes::{Bytes, BytesMut};
use sluice_protocol::batch::{self, BatchHeader};
use sluice_protocol::ErrorCode;

use super::producer_state::{ProducerEntry, ProducerStateMap, SequenceCheck, TxnEvent};
use super::txn_marker::EndTxnMarker;

/// Where the round starts and how it is stamped, read from the partition
/// just before staging.
#[derive(Debug, Clone, Copy)]
pub struct RoundStart {
    /// Size of the active segment: the file position of the first byte.
    pub write_pos: u64,
    /// The log end offset: the first offset to assign.
    pub next_offset: i64,
    pub leader_epoch: i32,
    pub now_ms: i64,
    /// The topic uses LogAppendTime: stamp `now_ms` into every batch.
    pub log_append_time: bool,
}

/// One request's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Staged {
    Appended {
        base_offset: i64,
    },
    /// Every batch was already in the log (an idempotent retry).
    Duplicate {
        base_offset: i64,
    },
    /// Nothing of the request is written (all or nothing, as in Kafka).
    Rejected(ErrorCode),
}

/// What one round writes and, once written, commits.
pub struct RoundPlan {
    /// The accepted bytes in log order.
    pub buffers: RoundBuffers,
    /// One outcome per request, in request order.
    pub outcomes: Vec<Staged>,
    /// Each appended batch: its file position and its header as written.
    pub placed: Vec<(u64, BatchHeader)>,
    /// The log end offset after the round.
    pub next_offset: i64,
    /// The new state of every producer the round appended for.
    pub producers: HashMap<i64, ProducerEntry>,
    /// The transactions the round began and ended, in log order (commit
    /// applies them to the partition's open transactions).
    pub txn_events: Vec<TxnEvent>,
}

impl RoundPlan {
    /// Records in the appended batches.
    pub fn record_count(&self) -> u64 {
        self.placed
            .iter()
            .map(|(_, h)| h.records_count.max(0) as u64)
            .sum()
    }
}

/// Stages the requests of one round (each a list of validated batches)
/// against the partition's producer state, which it only reads.
pub fn stage_round<'a>(
    requests: impl IntoIterator<Item = &'a [(BatchHeader, Bytes)]>,
    live: &ProducerStateMap,
    start: RoundStart,
) -> RoundPlan {
    let requests = requests.into_iter();
    let mut plan = RoundPlan {
        buffers: RoundBuffers::with_capacity(requests.size_hint().0 * 2),
        outcomes: Vec::with_capacity(requests.size_hint().0),
        placed: Vec::new(),
        next_offset: start.next_offset,
        producers: HashMap::new(),
        txn_events: Vec::new(),
    };
    let stamp = start.log_append_time.then_some(start.now_ms);
    for batches in requests {
        let mark = (plan.buffers.mark(), plan.placed.len(), plan.next_offset);
        // This request's producer changes, on top of the round's so far.
        let mut touched: HashMap<i64, ProducerEntry> = HashMap::new();
        let mut events: Vec<TxnEvent> = Vec::new();
        let mut outcome: Option<Staged> = None;
        for (h, data) in batches {
            let pid = h.producer_id;
            let current = touched
                .get(&pid)
                .or_else(|| plan.producers.get(&pid))
                .or_else(|| live.producers.get(&pid));
            // Only transaction markers (control batches) are decoded here.
            let marker = EndTxnMarker::of_batch(h, data);
            match ProducerStateMap::check_entry(current, h, marker.as_ref()) {
                SequenceCheck::Reject(code) => {
                    outcome = Some(Staged::Rejected(code));
                    break;
                }
                SequenceCheck::Duplicate(meta) => {
                    outcome.get_or_insert(Staged::Duplicate {
                        base_offset: meta.first_offset,
                    });
                }
                SequenceCheck::Append => {
                    let offset = plan.next_offset;
                    let position = start.write_pos + plan.buffers.len as u64;
                    plan.buffers
                        .push_batch(data, offset, start.leader_epoch, stamp);
                    let mut placed = *h;
                    placed.base_offset = offset;
                    placed.partition_leader_epoch = start.leader_epoch;
                    if let Some(now) = stamp {
                        placed.max_timestamp = now;
                    }
                    if h.has_producer_id() {
                        let base = current.cloned().unwrap_or_default();
                        let event = touched.entry(pid).or_insert(base).record(
                            &placed,
                            marker,
                            start.now_ms,
                        );
                        events.extend(event);
                    }
                    outcome.get_or_insert(Staged::Appended {
                        base_offset: offset,
                    });
                    plan.placed.push((position, placed));
                    plan.next_offset += i64::from(h.last_offset_delta) + 1;
                }
            }
        }
        let outcome = outcome.unwrap_or(Staged::Rejected(ErrorCode::CorruptMessage));
        if let Staged::Rejected(_) = outcome {
            // All or nothing per request: unstage what it placed.
            let (buffers, placed, next_offset) = mark;
            plan.buffers.truncate(buffers);
            plan.placed.truncate(placed);
            plan.next_offset = next_offset;
        } else {
            plan.producers.extend(touched);
            plan.txn_events.extend(events);
        }
        plan.outcomes.push(outcome);
    }
    plan
}

/// The bytes of one append round, in log order, as buffers for one
/// vectored write.
pub struct RoundBuffers {
    pub parts: Vec<Bytes>,
    /// Total bytes in `parts`.
    pub len: usize,
}

impl RoundBuffers {
    fn with_capacity(n: usize) -> RoundBuffers {
        RoundBuffers {
            parts: Vec::with_capacity(n),
            len: 0,
        }
    }

    /// A point to [`truncate`](Self::truncate) back to.
    fn mark(&self) -> (usize, usize) {
        (self.parts.len(), self.len)
    }

    fn truncate(&mut self, (parts, len): (usize, usize)) {
        self.parts.truncate(parts);
        self.len = len;
    }

    /// Adds one validated batch with its base offset and leader epoch set;
    /// with `log_append_time`, a whole stamped copy (that changes bytes
    /// inside the CRC, so the CRC is recomputed over the copy).
    fn push_batch(
        &mut self,
        data: &Bytes,
        base_offset: i64,
        leader_epoch: i32,
        log_append_time: Option<i64>,
    ) {
        self.len += data.len();
        // The header is copied whole (61 bytes) because the setters work on a
        // whole header; only its base offset and leader epoch change, and
        // both are outside the CRC.
        let prefix = batch::BATCH_HEADER_LEN;
        if let Some(now) = log_append_time {
            let mut copy = BytesMut::from(&data[..]);
            batch::set_base_offset(&mut copy, base_offset);
            batch::set_partition_leader_epoch(&mut copy, leader_epoch);
            batch::set_log_append_time(&mut copy, now);
            self.parts.push(copy.freeze());
        } else if data.len() < prefix {
            self.parts.push(data.clone()); // not a batch header: left as it came
        } else {
            let mut head = BytesMut::from(&data[..prefix]);
            batch::set_base_offset(&mut head, base_offset);
            batch::set_partition_leader_epoch(&mut head, leader_epoch);
            self.parts.push(head.freeze());
            self.parts.push(data.slice(prefix..));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::batch::BatchBuilder;
    use sluice_protocol::compression::Compression;

    fn batch(producer: Option<(i64, i16, i32)>, records: usize) -> (BatchHeader, Bytes) {
        let mut b = BatchBuilder::new(Compression::None);
        if let Some((pid, epoch, seq)) = producer {
            b = b.with_producer(pid, epoch, seq);
        }
        for i in 0..records {
            let value = format!("v{i}");
            b.push(1_000 + i as i64, None, Some(value.as_bytes()), &[])
                .expect("push");
        }
        let bytes = b.build();
        (BatchHeader::parse(&bytes).expect("header"), bytes)
    }

    fn start(next_offset: i64) -> RoundStart {
        RoundStart {
            write_pos: 500,
            next_offset,
            leader_epoch: 7,
            now_ms: 9_999,
            log_append_time: false,
        }
    }

    fn written(plan: &RoundPlan) -> Vec<u8> {
        plan.buffers.parts.iter().flat_map(|p| p.to_vec()).collect()
    }

    #[test]
    fn offsets_positions_and_headers_are_assigned_in_order() {
        let a = [batch(None, 3)];
        let b = [batch(None, 2), batch(None, 1)];
        let plan = stage_round([&a[..], &b[..]], &ProducerStateMap::default(), start(10));
        assert_eq!(
            plan.outcomes,
            [
                Staged::Appended { base_offset: 10 },
                Staged::Appended { base_offset: 13 }
            ]
        );
        assert_eq!(plan.next_offset, 16);
        assert_eq!(plan.record_count(), 6);
        let lens: Vec<u64> = [&a[0], &b[0], &b[1]]
            .iter()
            .map(|(_, d)| d.len() as u64)
            .collect();
        let positions: Vec<u64> = plan.placed.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            positions,
            [500, 500 + lens[0], 500 + lens[0] + lens[1]],
            "file positions follow the active segment's size"
        );
        // The bytes to write are the batches with base offset and leader
        // epoch patched, headers only (two buffers per batch, no copy of
        // the records), CRCs still valid.
        assert_eq!(plan.buffers.parts.len(), 6);
        assert_eq!(plan.buffers.len, written(&plan).len());
        let bytes = Bytes::from(written(&plan));
        let batches = batch::split_batches(&bytes).expect("batches");
        let bases: Vec<(i64, i32)> = batches
            .iter()
            .map(|(h, _)| (h.base_offset, h.partition_leader_epoch))
            .collect();
        assert_eq!(bases, [(10, 7), (13, 7), (15, 7)]);
        for (h, (placed_at, placed)) in batches.iter().map(|(h, _)| h).zip(&plan.placed) {
            assert_eq!(h, placed, "the committed header is the one written");
            assert!(*placed_at >= 500);
        }
        for (_, data) in &batches {
            batch::verify_crc(data).expect("CRC intact");
        }
        assert!(plan.producers.is_empty());
    }

    #[test]
    fn duplicates_gaps_and_fencing_within_a_round() {
        let mut live = ProducerStateMap::default();
        let (first, _) = batch(Some((42, 0, 0)), 2);
        let mut first = first;
        first.base_offset = 0;
        live.update(&first, None, 0);

        let retry = [batch(Some((42, 0, 0)), 2)];
        let next = [batch(Some((42, 0, 2)), 1)];
        let next_again = [batch(Some((42, 0, 2)), 1)];
        let gap = [batch(None, 1), batch(Some((42, 0, 9)), 1)];
        let fenced = [batch(Some((42, -1, 3)), 1)];
        let empty: [(BatchHeader, Bytes); 0] = [];
        let plan = stage_round(
            [
                &retry[..],
                &next[..],
                &next_again[..],
                &gap[..],
                &fenced[..],
                &empty[..],
            ],
            &live,
            start(2),
        );
        assert_eq!(
            plan.outcomes,
            [
                Staged::Duplicate { base_offset: 0 },
                Staged::Appended { base_offset: 2 },
                // The batch staged just before counts for duplicate detection.
                Staged::Duplicate { base_offset: 2 },
                Staged::Rejected(ErrorCode::OutOfOrderSequenceNumber),
                Staged::Rejected(ErrorCode::InvalidProducerEpoch),
                Staged::Rejected(ErrorCode::CorruptMessage),
            ]
        );
        // The rejected request's first (valid) batch was unstaged with it.
        assert_eq!(plan.placed.len(), 1);
        assert_eq!(plan.next_offset, 3);
        assert_eq!(plan.buffers.len, next[0].1.len());
        // The producer's new state is in the plan; the live map is as it was.
        let entry = &plan.producers[&42];
        assert_eq!(entry.batches.back().map(|b| b.last_seq), Some(2));
        assert_eq!(entry.last_update_ms, 9_999);
        assert_eq!(live.producers[&42].batches.len(), 1);
    }

    #[test]
    fn log_append_time_stamps_a_whole_copy() {
        let a = [batch(None, 2)];
        let plan = stage_round(
            [&a[..]],
            &ProducerStateMap::default(),
            RoundStart {
                log_append_time: true,
                ..start(0)
            },
        );
        assert_eq!(plan.buffers.parts.len(), 1);
        let bytes = Bytes::from(written(&plan));
        let h = BatchHeader::parse(&bytes).expect("header");
        assert!(h.timestamp_type_log_append());
        assert_eq!(h.max_timestamp, 9_999);
        assert_eq!(plan.placed[0].1.max_timestamp, 9_999);
        batch::verify_crc(&bytes).expect("CRC recomputed");
    }
}
