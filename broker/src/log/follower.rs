//! A follower's side of the partition log: appending batches exactly as the
//! leader sent them (offsets and leader epochs already assigned), cutting
//! the log back when it diverged from the leader's, and the high watermark
//! a follower learns from its leader. Also the leader-side epoch lookups
//! (OffsetForLeaderEpoch, Fetch's diverging epoch) that take the leader's
//! current epoch into account.
//!
//! Appends go through the same write path as produce: one vectored write
//! per fetched round, segment rolls, indexes through `Segment::note_batch`,
//! and under `flush.policy=always` an fdatasync before
//! [`PartitionLog::append_replicated`] returns, so a fetcher that fetches
//! again only after it returned has made everything it acknowledged (by
//! fetching further) durable. Producer state, open transactions, the
//! segments' transaction indexes and the epoch cache are updated from the
//! batches as the leader's are, so a follower that becomes leader
//! recognises idempotent retries, keeps the last stable offset of every
//! open transaction and serves the aborted ones to read_committed fetches.
//!
//! Truncation updates the in-memory state first (readers never see bytes
//! about to go) and then the files: later segments are deleted from the
//! highest down and the directory is synced before the cut segment is
//! shortened, so a crash at any point leaves a prefix of the old log that
//! recovery opens as is (and that the fetcher truncates again).

use bytes::Bytes;
use sluice_protocol::batch::{self, BatchHeader, BATCH_HEADER_LEN};
use sluice_protocol::clock::now_ms;

use super::append::TxnIndexWrite;
use super::epoch_cache::{EpochCache, EpochEntry};
use super::producer_state::ProducerStateMap;
use super::recovery::write_checkpoint;
use super::segment::{self, Segment};
use super::staging::RoundBuffers;
use super::txn_marker::EndTxnMarker;
use super::{LogError, PartitionLog};
use crate::config::FlushPolicy;

/// Fetched batches the log refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    #[error("fetched batch at offset {got} does not continue the log at {expected}")]
    NotContinuous { expected: i64, got: i64 },
    #[error("fetched batch at offset {offset} does not follow offset {after}")]
    OutOfOrder { offset: i64, after: i64 },
    #[error("fetched batch {index} is corrupt: {reason}")]
    Corrupt { index: usize, reason: String },
    #[error(transparent)]
    Log(#[from] LogError),
}

/// What one replicated append wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicatedAppend {
    /// The first offset appended (the log end before), if anything was.
    pub first_offset: Option<i64>,
    /// The log end offset after the append.
    pub log_end_offset: i64,
    pub bytes: usize,
    pub records: u64,
    /// Whether the bytes were fdatasync'ed before returning.
    pub synced: bool,
}

/// Splits a fetched records blob into whole batches by their headers' lengths,
/// dropping a trailing partial batch (a leader may cut the last one at its
/// byte limit). CRCs are checked by [`PartitionLog::append_replicated`].
pub fn split_fetched(records: &Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(rest) = records.get(pos..) {
        let Ok(h) = BatchHeader::parse(rest) else {
            break;
        };
        let len = h.total_len();
        if h.batch_length < 0 || len < BATCH_HEADER_LEN || len > rest.len() {
            break;
        }
        out.push(records.slice(pos..pos + len));
        pos += len;
    }
    out
}

impl PartitionLog {
    /// Appends batches fetched from the leader, unchanged: each must be a
    /// valid v2 batch (CRC included), the first must start at this log's
    /// end and each next one after the previous. Returns once written (and,
    /// under `flush.policy=always`, fdatasync'ed). Does not move the high
    /// watermark ([`set_high_watermark_from_leader`](Self::set_high_watermark_from_leader) does).
    pub async fn append_replicated(
        &self,
        batches: Vec<Bytes>,
    ) -> Result<ReplicatedAppend, ReplicationError> {
        let _writing = self.write_lock.lock().await;
        if self.closed.get() {
            return Err(LogError::Closed.into());
        }
        let (log_start, mut log_end) = {
            let st = self.state.borrow();
            (st.log_start_offset, st.log_end_offset)
        };
        if let Some(first) = batches.first().and_then(|b| BatchHeader::parse(b).ok()) {
            // An empty log starting inside the leader's first batch (its log
            // start was moved there by DeleteRecords): start at the batch,
            // as Kafka's follower does.
            if log_end == log_start && first.base_offset < log_end && first.last_offset() >= log_end
            {
                self.start_fresh_at(first.base_offset).await?;
                log_end = first.base_offset;
            }
        }
        let headers = check_replicated(&batches, log_end)?;
        let Some(last) = headers.last() else {
            return Ok(ReplicatedAppend {
                first_offset: None,
                log_end_offset: log_end,
                bytes: 0,
                records: 0,
                synced: false,
            });
        };
        let next_offset = last.last_offset() + 1;
        let bytes: usize = batches.iter().map(Bytes::len).sum();
        let now = now_ms();
        self.maybe_roll(bytes, now).await.map_err(LogError::from)?;
        let cfg = self.config.borrow().clone();
        let (writer, write_pos) = {
            let st = self.state.borrow();
            let active = st.active().ok_or(LogError::Closed)?;
            (active.writer.clone(), active.size)
        };
        let must_sync = cfg.flush_policy == FlushPolicy::Always;
        let markers: Vec<Option<EndTxnMarker>> = headers
            .iter()
            .zip(&batches)
            .map(|(h, b)| EndTxnMarker::of_batch(h, b))
            .collect();
        let buffers = RoundBuffers {
            parts: batches,
            len: bytes,
        };
        let synced = self
            .write_and_sync(writer, buffers, write_pos, must_sync, 1)
            .await
            .map_err(LogError::from)?;
        let records: u64 = headers.iter().map(|h| h.records_count.max(0) as u64).sum();
        let aborts = {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            if let Some(active) = st.segments.values_mut().next_back() {
                let mut pos = write_pos;
                for h in &headers {
                    active.note_batch(pos, h, cfg.index_interval_bytes);
                    pos += h.total_len() as u64;
                }
            }
            let aborted: Vec<_> = headers
                .iter()
                .zip(markers)
                .filter_map(|(h, marker)| st.producers.update(h, marker, now))
                .collect();
            let aborts = st
                .segments
                .values_mut()
                .next_back()
                .and_then(|active| TxnIndexWrite::add(active, aborted));
            if st.epochs.observe(
                headers
                    .iter()
                    .map(|h| (h.partition_leader_epoch, h.base_offset)),
            ) {
                st.epochs.flush_or_warn();
            }
            st.log_end_offset = next_offset;
            st.dirty |= !synced;
            self.metrics
                .set_offsets(st.log_start_offset, st.log_end_offset, st.size_bytes());
            aborts
        };
        if let Some(aborts) = aborts {
            self.write_txn_index(aborts, synced).await;
        }
        self.metrics.add_replicated_in(bytes as u64, records);
        Ok(ReplicatedAppend {
            first_offset: Some(log_end),
            log_end_offset: next_offset,
            bytes,
            records,
            synced,
        })
    }

    /// A follower's high watermark: the leader's, but never past what this
    /// log holds, and never moving back (only truncation lowers it).
    /// Returns the high watermark now.
    pub fn set_high_watermark_from_leader(&self, leader_hw: i64) -> i64 {
        self.set_high_watermark(leader_hw);
        self.high_watermark()
    }

    /// The epoch of the last batch in the log (a follower's
    /// `last_fetched_epoch`), -1 when unknown.
    pub fn last_epoch(&self) -> i32 {
        self.state.borrow().epochs.latest_epoch().unwrap_or(-1)
    }

    /// This log's own answer for `epoch` (a follower looking for where it
    /// parted from its leader): [`EpochCache::end_offset_for`] at its end.
    pub fn local_end_offset_for(&self, epoch: i32) -> (i32, i64) {
        let st = self.state.borrow();
        st.epochs.end_offset_for(epoch, st.log_end_offset)
    }

    /// The leader's answer for `epoch` (OffsetForLeaderEpoch): as
    /// [`EpochCache::end_offset_for`], with the current leader epoch
    /// counted as started at the log end when no batch carries it yet (a
    /// Kafka leader records its epoch when it is elected).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        let st = self.state.borrow();
        leader_view(&st.epochs, st.leader_epoch, st.log_end_offset)
            .end_offset_for(epoch, st.log_end_offset)
    }

    /// The leader's diverging-epoch check for a follower's Fetch (v12+
    /// `diverging_epoch`): see [`EpochCache::diverging_epoch`]; with the
    /// current leader epoch counted as [`end_offset_for_epoch`](Self::end_offset_for_epoch) does.
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
    ) -> Option<(i32, i64)> {
        let st = self.state.borrow();
        leader_view(&st.epochs, st.leader_epoch, st.log_end_offset).diverging_epoch(
            last_fetched_epoch,
            fetch_offset,
            st.log_end_offset,
        )
    }

    /// Cuts the log so it ends before `offset` (a follower that diverged
    /// from its leader): segments after it go, the batch holding `offset`
    /// and everything after it in its segment go, indexes, producer state
    /// and epoch cache follow, the high watermark drops if it was past the
    /// new end. An offset at or past the log end changes nothing; one below
    /// the log start empties the log to start there. Returns the new end.
    pub async fn truncate_to(&self, offset: i64) -> Result<i64, LogError> {
        let _writing = self.write_lock.lock().await;
        if self.closed.get() {
            return Err(LogError::Closed);
        }
        let (log_start, log_end) = {
            let st = self.state.borrow();
            (st.log_start_offset, st.log_end_offset)
        };
        if offset >= log_end {
            return Ok(log_end);
        }
        if offset < log_start {
            self.start_fresh_at(offset).await?;
            return Ok(offset);
        }
        let interval = self.config.borrow().index_interval_bytes;
        // In memory first: readers stop at the new end at once.
        let (doomed, writer, cut_at, new_end, txn_index_cut) = {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            let doomed: Vec<Segment> = {
                let later: Vec<i64> = st.segments.range(offset + 1..).map(|(b, _)| *b).collect();
                later
                    .into_iter()
                    .rev()
                    .filter_map(|b| st.segments.remove(&b))
                    .collect()
            };
            let Some(seg) = st.segments.values_mut().next_back() else {
                return Err(LogError::Closed);
            };
            let cut_at = match seg.position_of(offset)? {
                Some((pos, _)) => pos,
                None => seg.size,
            };
            reindex(seg, cut_at, interval)?;
            let (new_end, writer) = (seg.next_offset, seg.writer.clone());
            let txn_index_cut = seg.txn_index.truncate_from(new_end);
            st.producers = replay_producers(st.segments.values())?;
            if st.epochs.truncate_from_end(new_end) {
                st.epochs.flush_or_warn();
            }
            st.log_end_offset = new_end;
            st.high_watermark = st.high_watermark.min(new_end);
            let hw = st.high_watermark;
            st.producers.on_high_watermark(hw);
            self.metrics
                .set_offsets(st.log_start_offset, st.log_end_offset, st.size_bytes());
            (doomed, writer, cut_at, new_end, txn_index_cut)
        };
        tracing::info!(topic = %self.topic, partition = self.partition, offset, new_end, "truncating log");
        // Then the files: later segments gone (durably) before the cut.
        let files = async {
            for seg in &doomed {
                seg.delete_files();
            }
            if !doomed.is_empty() {
                sync_dir(&self.dir)?;
            }
            writer.set_len(cut_at).await?;
            writer.sync_data().await?;
            if let Some(seg) = self.state.borrow().active() {
                seg.persist_indexes()?;
                if txn_index_cut {
                    seg.persist_txn_index()?;
                }
            }
            Ok::<(), std::io::Error>(())
        };
        if let Err(e) = files.await {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "truncation failed; closing partition");
            self.close();
            return Err(e.into());
        }
        Ok(new_end)
    }

    /// Empties the log and starts it again at `offset` (a follower whose
    /// fetch offset fell below the leader's log start, or that must start
    /// over): every segment goes, a new empty one starts at `offset`, and
    /// log start, log end and high watermark are all `offset`.
    pub async fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), LogError> {
        let _writing = self.write_lock.lock().await;
        if self.closed.get() {
            return Err(LogError::Closed);
        }
        self.start_fresh_at(offset).await
    }

    async fn start_fresh_at(&self, offset: i64) -> Result<(), LogError> {
        let doomed: Vec<Segment> = {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            let all = std::mem::take(&mut st.segments);
            st.log_start_offset = offset;
            st.log_end_offset = offset;
            st.high_watermark = offset;
            st.producers = ProducerStateMap::default();
            if st.epochs.clear() {
                st.epochs.flush_or_warn();
            }
            all.into_values().rev().collect()
        };
        tracing::info!(topic = %self.topic, partition = self.partition, offset, "log emptied to start again");
        let files = async {
            for seg in &doomed {
                seg.delete_files();
            }
            sync_dir(&self.dir)?;
            let seg = Segment::create(&self.dir, offset, now_ms()).await?;
            write_checkpoint(&self.dir, offset)?;
            Ok::<Segment, std::io::Error>(seg)
        };
        match files.await {
            Ok(seg) => {
                let mut st = self.state.borrow_mut();
                st.segments.insert(offset, seg);
                self.metrics
                    .set_offsets(st.log_start_offset, st.log_end_offset, st.size_bytes());
                Ok(())
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "emptying the log failed; closing partition");
                self.close();
                Err(e.into())
            }
        }
    }
}

/// Validates fetched batches against a log ending at `log_end`; returns
/// their headers.
fn check_replicated(batches: &[Bytes], log_end: i64) -> Result<Vec<BatchHeader>, ReplicationError> {
    let mut headers: Vec<BatchHeader> = Vec::with_capacity(batches.len());
    for (index, data) in batches.iter().enumerate() {
        let h = batch::validate_batch(data).map_err(|e| ReplicationError::Corrupt {
            index,
            reason: e.to_string(),
        })?;
        if h.total_len() != data.len() {
            return Err(ReplicationError::Corrupt {
                index,
                reason: format!("{} bytes after the batch", data.len() - h.total_len()),
            });
        }
        match headers.last() {
            None if h.base_offset != log_end => {
                return Err(ReplicationError::NotContinuous {
                    expected: log_end,
                    got: h.base_offset,
                })
            }
            Some(prev) if h.base_offset <= prev.last_offset() => {
                return Err(ReplicationError::OutOfOrder {
                    offset: h.base_offset,
                    after: prev.last_offset(),
                })
            }
            _ => {}
        }
        headers.push(h);
    }
    Ok(headers)
}

/// The epoch cache as a leader answers from it: its current epoch counted
/// from the log end when no batch carries it yet.
fn leader_view(epochs: &EpochCache, current: i32, log_end: i64) -> EpochCache {
    let mut view = EpochCache::in_memory(epochs.entries().iter().map(
        |&EpochEntry {
             epoch,
             start_offset,
         }| (epoch, start_offset),
    ));
    if view.latest_epoch().is_none_or(|latest| current > latest) {
        view.assign(current, log_end);
    }
    view
}

/// Rebuilds a segment's in-memory indexes, size and next offset from its
/// batch headers below `limit` (the position it is cut at).
fn reindex(seg: &mut Segment, limit: u64, interval: usize) -> std::io::Result<()> {
    let headers = headers_of(seg, limit)?;
    seg.offset_index.entries.clear();
    seg.time_index.entries.clear();
    seg.max_timestamp = -1;
    seg.bytes_since_last_index = 0;
    seg.size = 0;
    seg.next_offset = seg.base_offset;
    for (pos, h) in headers {
        seg.note_batch(pos, &h, interval);
    }
    Ok(())
}

/// The producer and transaction state of the batches in `segments`,
/// replayed from their headers and markers (what recovery does; no
/// snapshots yet).
fn replay_producers<'a>(
    segments: impl Iterator<Item = &'a Segment>,
) -> std::io::Result<ProducerStateMap> {
    use std::os::unix::fs::FileExt;
    let now = now_ms();
    let mut producers = ProducerStateMap::default();
    for seg in segments {
        for (pos, h) in headers_of(seg, seg.size)? {
            let marker = if h.is_control() {
                let mut buf = vec![0u8; h.total_len()];
                seg.reader.read_exact_at(&mut buf, pos)?;
                EndTxnMarker::of_batch(&h, &Bytes::from(buf))
            } else {
                None
            };
            producers.update(&h, marker, now);
        }
    }
    Ok(producers)
}

/// Every batch header of a segment below `limit`, with its position.
fn headers_of(seg: &Segment, limit: u64) -> std::io::Result<Vec<(u64, BatchHeader)>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while let Some(h) = segment::read_header(&seg.reader, pos, limit)? {
        let len = h.total_len() as u64;
        if h.batch_length < 0 || pos + len > limit {
            break;
        }
        out.push((pos, h));
        pos += len;
    }
    Ok(out)
}

/// Makes deletions in `dir` durable.
fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests;
