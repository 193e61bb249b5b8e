//! Reads: offset -> (file, byte range) for Fetch, so the connection can splice
//! the bytes from the page cache to the socket (read_uncommitted consumers
//! below the high watermark, read_committed ones below the last stable
//! offset with the aborted transactions from the segments' transaction
//! indexes, followers below the log end); long-poll parking until the high
//! watermark (consumers), the last stable offset (read_committed) or the
//! log end (followers) moves; offset lookups by timestamp for ListOffsets.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;

use super::txn_index::AbortedTxn;
use super::{LogError, PartitionLog};

/// A byte range of a segment file holding whole record batches.
#[derive(Debug, Clone)]
pub struct FileRange {
    pub file: Arc<std::fs::File>,
    pub position: u64,
    pub len: u64,
}

/// Kafka's fetch isolation level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Everything below the high watermark (isolation_level 0).
    #[default]
    ReadUncommitted,
    /// Only below the last stable offset, with the aborted transactions
    /// the answer overlaps (isolation_level 1).
    ReadCommitted,
}

impl Isolation {
    /// From a Fetch or ListOffsets `isolation_level` (1: read_committed).
    pub fn from_level(level: i8) -> Isolation {
        if level == 1 {
            Isolation::ReadCommitted
        } else {
            Isolation::ReadUncommitted
        }
    }
}

#[derive(Debug, Clone)]
pub struct ReadResult {
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    pub records: Option<FileRange>,
    /// read_committed: the aborted transactions overlapping the records
    /// returned (empty when none); `None` for read_uncommitted, which Kafka
    /// answers with a null list.
    pub aborted_transactions: Option<Vec<AbortedTxn>>,
}

impl PartitionLog {
    /// Whole batches from `offset` below the high watermark (read_committed:
    /// below the last stable offset, with the aborted transactions they
    /// overlap), at most `max_bytes` unless the first batch alone is larger
    /// (then it comes alone, so consumers make progress).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<ReadResult, LogError> {
        let result = match isolation {
            Isolation::ReadUncommitted => {
                let hw = self.high_watermark();
                self.read_range(offset, max_bytes, hw).map(|(r, _)| r)
            }
            Isolation::ReadCommitted => self.read_committed(offset, max_bytes),
        }?;
        if let Some(r) = &result.records {
            self.metrics.add_out(r.len);
        }
        Ok(result)
    }

    /// As [`read`](Self::read) with read_uncommitted, but up to the log end
    /// instead of the high watermark: a follower's read. Its bytes count as
    /// replication out (Kafka's ReplicationBytesOutPerSec), not as bytes out.
    pub fn read_for_follower(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        let (result, _) = self.read_range(offset, max_bytes, self.log_end_offset())?;
        if let Some(r) = &result.records {
            self.metrics.add_replicated_out(r.len);
        }
        Ok(result)
    }

    fn read_committed(&self, offset: i64, max_bytes: usize) -> Result<ReadResult, LogError> {
        let lso = self.last_stable_offset();
        let (mut result, upper_bound) = self.read_range(offset, max_bytes, lso)?;
        let aborted = match upper_bound {
            Some(upper) => self.aborted_transactions(offset, upper),
            None => Vec::new(),
        };
        result.aborted_transactions = Some(aborted);
        Ok(result)
    }

    /// Kafka's `collectAbortedTransactions`: the aborted transactions with
    /// their marker at or after `fetch_offset` and their first offset
    /// below `upper_bound`, from the transaction indexes of the segment
    /// holding `fetch_offset` onwards (a marker follows its transaction),
    /// until one says every transaction that started below the bound has
    /// ended.
    pub fn aborted_transactions(&self, fetch_offset: i64, upper_bound: i64) -> Vec<AbortedTxn> {
        let st = self.state.borrow();
        let from = st
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(b, _)| *b);
        let mut out = Vec::new();
        for seg in st.segments.range(from..).map(|(_, s)| s) {
            let found = seg.txn_index.collect(fetch_offset, upper_bound);
            out.extend(found.aborted);
            if found.complete {
                break;
            }
        }
        out
    }

    /// Reads below `limit` (capped at the log end); with the records, the
    /// offset after the last batch returned (the upper bound of what the
    /// answer covers).
    fn read_range(
        &self,
        offset: i64,
        max_bytes: usize,
        limit: i64,
    ) -> Result<(ReadResult, Option<i64>), LogError> {
        let st = self.state.borrow();
        let limit = limit.min(st.log_end_offset);
        let base = ReadResult {
            high_watermark: st.high_watermark,
            last_stable_offset: st.producers.last_stable_offset(st.high_watermark),
            log_start_offset: st.log_start_offset,
            records: None,
            aborted_transactions: None,
        };
        // Out of range is judged against the log end, as Kafka does: an
        // offset between the limit (the high watermark) and the log end is
        // valid and answers no records yet.
        if offset < st.log_start_offset || offset > st.log_end_offset {
            return Err(LogError::OffsetOutOfRange {
                offset,
                start: st.log_start_offset,
                end: st.log_end_offset,
            });
        }
        if offset >= limit {
            return Ok((base, None));
        }
        let first_seg = st
            .segments
            .range(..=offset)
            .next_back()
            .map(|(b, _)| *b)
            .unwrap_or(i64::MIN);
        for (_, seg) in st.segments.range(first_seg..) {
            let Some((start, _)) = seg.position_of(offset)? else {
                continue;
            };
            // Fast path: the rest of the segment is visible and fits.
            if seg.size - start <= max_bytes as u64 && seg.next_offset <= limit {
                let len = seg.size - start;
                let result = ReadResult {
                    records: Some(FileRange {
                        file: seg.reader.clone(),
                        position: start,
                        len,
                    }),
                    ..base
                };
                return Ok((result, Some(seg.next_offset)));
            }
            let mut end = start;
            let mut next_offset = offset;
            while end < seg.size {
                let Some(h) = seg.header_at(end)? else { break };
                if h.base_offset >= limit {
                    break;
                }
                let len = h.total_len() as u64;
                if end > start && end - start + len > max_bytes as u64 {
                    break;
                }
                end += len;
                next_offset = h.next_offset();
            }
            if end == start {
                return Ok((base, None));
            }
            let result = ReadResult {
                records: Some(FileRange {
                    file: seg.reader.clone(),
                    position: start,
                    len: end - start,
                }),
                ..base
            };
            return Ok((result, Some(next_offset)));
        }
        Ok((base, None))
    }

    /// Resolves when the high watermark passes `offset`, the partition
    /// closes, or `deadline` comes.
    pub async fn wait_for_data(&self, offset: i64, deadline: Instant) {
        if self.high_watermark() > offset || self.closed.get() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push(tx);
        let _ = compio::time::timeout_at(deadline, rx).await;
    }

    /// A read_committed fetch's wait: resolves when the last stable offset
    /// passes `offset`, the partition closes, or `deadline` comes. The last
    /// stable offset moves only when the high watermark does, so it parks
    /// with the high watermark's waiters (a move that leaves the last
    /// stable offset where it was costs the fetch one empty read).
    pub async fn wait_for_stable(&self, offset: i64, deadline: Instant) {
        if self.last_stable_offset() > offset || self.closed.get() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().push(tx);
        let _ = compio::time::timeout_at(deadline, rx).await;
    }

    /// Resolves when the log end passes `offset` (follower fetches), the
    /// partition closes, the replica layer wakes parked requests, or
    /// `deadline` comes.
    pub async fn wait_for_log_end(&self, offset: i64, deadline: Instant) {
        if self.log_end_offset() > offset || self.closed.get() {
            return;
        }
        let (tx, rx) = oneshot::channel();
        self.end_waiters.borrow_mut().push(tx);
        let _ = compio::time::timeout_at(deadline, rx).await;
    }

    /// Kafka's ListOffsets by timestamp: the first offset whose record
    /// timestamp is >= `ts`, with that timestamp; `None` if there is none.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>, LogError> {
        let st = self.state.borrow();
        let hw = st.high_watermark;
        for seg in st.segments.values() {
            if seg.max_timestamp < ts || seg.size == 0 {
                continue;
            }
            let rel = seg.time_index.lookup(ts);
            let from = (seg.base_offset + i64::from(rel)).max(st.log_start_offset);
            let Some((mut pos, _)) = seg.position_of(from)? else {
                continue;
            };
            while pos < seg.size {
                let Some(h) = seg.header_at(pos)? else { break };
                if h.base_offset >= hw {
                    return Ok(None);
                }
                if h.max_timestamp >= ts {
                    let mut buf = vec![0u8; h.total_len()];
                    seg.reader.read_exact_at(&mut buf, pos)?;
                    let records = sluice_protocol::batch::decode_records(&Bytes::from(buf))
                        .map_err(|e| {
                            LogError::Io(std::io::Error::new(
                                std::io::ErrorKind::InvalidData,
                                e.to_string(),
                            ))
                        })?;
                    for r in records {
                        let off = h.base_offset + i64::from(r.offset_delta);
                        let rts = if h.timestamp_type_log_append() {
                            h.max_timestamp
                        } else {
                            h.base_timestamp + r.timestamp_delta
                        };
                        if rts >= ts && off >= st.log_start_offset {
                            return Ok(Some((off, rts)));
                        }
                    }
                }
                pos += h.total_len() as u64;
            }
        }
        Ok(None)
    }

    /// The offset and timestamp of the record with the largest timestamp
    /// (ListOffsets v7 `MAX_TIMESTAMP`).
    pub fn max_timestamp_offset(&self) -> Result<Option<(i64, i64)>, LogError> {
        let max = self
            .state
            .borrow()
            .segments
            .values()
            .map(|s| s.max_timestamp)
            .max()
            .unwrap_or(-1);
        if max < 0 {
            return Ok(None);
        }
        self.offset_for_timestamp(max)
    }
}
