//! Appends with group commit. Each partition has one appender task on its
//! owner shard; produce requests queue to it. The task takes everything that
//! queued up, assigns offsets and checks producer sequences in order, writes
//! all accepted batches with one io_uring write, fdatasyncs once, and only
//! then advances the log end offset and answers every waiting request. While
//! one round's write and sync are in flight, new requests queue and ride the
//! next round: that is the group commit.
//!
//! A round goes through three steps: [`stage_round`] (pure, in `staging`:
//! outcomes, offsets, patched headers, the write plan), `write_and_sync`
//! (the io_uring vectored write and fdatasync; a failed write is cut off)
//! and `commit` (indexes, producer state and open transactions, log end
//! offset, metrics, then the log-end listener: the replica layer moves the
//! high watermark). A round whose abort markers ended transactions then
//! appends their entries to the segment's `.txnindex` (synced as the round
//! was) before anyone is answered. Nothing of the partition changes before
//! the write is durable, so a failed round leaves no trace.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use compio::io::AsyncWriteAtExt;
use compio::BufResult;
use futures::channel::{mpsc, oneshot};
use futures::StreamExt;
use sluice_protocol::batch::BatchHeader;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

use super::producer_state::{ProducerEntry, TxnEvent};
use super::segment::Segment;
use super::staging::{stage_round, RoundBuffers, RoundPlan, RoundStart, Staged};
use super::PartitionLog;
use crate::config::FlushPolicy;

/// Most bytes one group-commit round writes.
const MAX_ROUND_BYTES: usize = 8 << 20;

pub struct AppendRequest {
    pub batches: Vec<(BatchHeader, Bytes)>,
    /// `None` for acks=0: nobody waits for the outcome.
    pub reply: Option<oneshot::Sender<AppendResult>>,
    /// The leader epoch the replica layer accepted the produce under; the
    /// round refuses it (NOT_LEADER_OR_FOLLOWER) if the partition's epoch
    /// moved on while it queued, so a produce can never be stamped with a
    /// later leader's epoch. `None`: append under whatever epoch is current.
    pub leader_epoch: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    pub error: ErrorCode,
    pub base_offset: i64,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

impl AppendResult {
    pub fn error(code: ErrorCode) -> AppendResult {
        AppendResult {
            error: code,
            base_offset: -1,
            log_append_time: -1,
            log_start_offset: -1,
        }
    }
}

impl PartitionLog {
    pub(crate) fn start_appender(self: &Rc<Self>) {
        let (tx, rx) = mpsc::unbounded();
        *self.appender.borrow_mut() = Some(tx);
        compio::runtime::spawn(run_appender(self.clone(), rx)).detach();
    }

    /// Queues batches for append; resolves once they are durable (or at once
    /// for acks=0, when `wait` is false).
    pub async fn append(&self, batches: Vec<(BatchHeader, Bytes)>, wait: bool) -> AppendResult {
        self.submit(batches, wait, None).await
    }

    /// [`append`](Self::append) for a leader that accepted the produce under
    /// `leader_epoch`: refused with NOT_LEADER_OR_FOLLOWER if the partition
    /// changed epoch (became a follower, or leader again later) before the
    /// batches were staged. Kafka holds the partition's leader lock across
    /// the check and the append; here the check is repeated where offsets
    /// are assigned, which nothing can interleave with on the shard.
    pub async fn append_as_leader(
        &self,
        batches: Vec<(BatchHeader, Bytes)>,
        wait: bool,
        leader_epoch: i32,
    ) -> AppendResult {
        self.submit(batches, wait, Some(leader_epoch)).await
    }

    async fn submit(
        &self,
        batches: Vec<(BatchHeader, Bytes)>,
        wait: bool,
        leader_epoch: Option<i32>,
    ) -> AppendResult {
        let (tx, rx) = oneshot::channel();
        let req = AppendRequest {
            batches,
            reply: wait.then_some(tx),
            leader_epoch,
        };
        let sent = match self.appender.borrow().as_ref() {
            Some(a) => a.unbounded_send(req).is_ok(),
            None => false,
        };
        if !sent {
            return AppendResult::error(ErrorCode::UnknownTopicOrPartition);
        }
        if !wait {
            return AppendResult {
                error: ErrorCode::None,
                base_offset: -1,
                log_append_time: -1,
                log_start_offset: -1,
            };
        }
        rx.await
            .unwrap_or(AppendResult::error(ErrorCode::UnknownTopicOrPartition))
    }
}

async fn run_appender(log: Rc<PartitionLog>, mut rx: mpsc::UnboundedReceiver<AppendRequest>) {
    while let Some(first) = rx.next().await {
        let mut bytes: usize = first.batches.iter().map(|b| b.1.len()).sum();
        let mut round = vec![first];
        while bytes < MAX_ROUND_BYTES {
            match rx.try_recv() {
                Ok(r) => {
                    bytes += r.batches.iter().map(|b| b.1.len()).sum::<usize>();
                    round.push(r);
                }
                _ => break,
            }
        }
        log.append_round(round, bytes).await;
    }
}

impl PartitionLog {
    pub(super) async fn maybe_roll(&self, incoming: usize, now: i64) -> std::io::Result<()> {
        let (roll, next_base) = {
            let st = self.state.borrow();
            let cfg = self.config.borrow();
            match st.active() {
                None => (true, st.log_end_offset),
                Some(a) => {
                    let by_size = a.size > 0
                        && a.size + incoming as u64 > cfg.segment_bytes.min(i32::MAX as u64);
                    let roll_ms = cfg.roll_ms();
                    let by_time = a.size > 0 && roll_ms >= 0 && now - a.created_ms >= roll_ms;
                    // Positions in the index are u32: never let a segment pass 2 GiB.
                    (by_size || by_time, st.log_end_offset)
                }
            }
        };
        if !roll {
            return Ok(());
        }
        let old_writer = self.state.borrow().active().map(|a| a.writer.clone());
        if let Some(w) = old_writer {
            // The finished segment must be durable before it stops being the
            // one that recovery checks.
            w.sync_data().await?;
        }
        if let Some(a) = self.state.borrow().active() {
            a.persist_indexes()?;
        }
        let seg = Segment::create(&self.dir, next_base, now).await?;
        self.state.borrow_mut().segments.insert(next_base, seg);
        self.metrics.segment_rolled();
        Ok(())
    }

    /// One group-commit round: stage it (pure), write and sync it, commit
    /// it, then answer every request of the round.
    async fn append_round(&self, round: Vec<AppendRequest>, bytes: usize) {
        let _writing = self.write_lock.lock().await;
        let now = now_ms();
        if let Err(e) = self.maybe_roll(bytes, now).await {
            tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "segment roll failed");
            return reply_all(round, AppendResult::error(ErrorCode::KafkaStorageError));
        }
        let cfg = self.config.borrow().clone();
        // From here to staging nothing awaits, so no role change can come
        // between the epoch check and the offsets the round assigns.
        let (stale, round): (Vec<_>, Vec<_>) = {
            let epoch = self.state.borrow().leader_epoch;
            round
                .into_iter()
                .partition(|r| r.leader_epoch.is_some_and(|e| e != epoch))
        };
        reply_all(stale, AppendResult::error(ErrorCode::NotLeaderOrFollower));
        if round.is_empty() {
            return;
        }
        let (writer, start, plan) = {
            let st = self.state.borrow();
            let Some(active) = st.active() else {
                return reply_all(round, AppendResult::error(ErrorCode::KafkaStorageError));
            };
            let start = RoundStart {
                write_pos: active.size,
                next_offset: st.log_end_offset,
                leader_epoch: st.leader_epoch,
                now_ms: now,
                log_append_time: cfg.log_append_time,
            };
            let requests = round.iter().map(|r| &r.batches[..]);
            let plan = stage_round(requests, &st.producers, start);
            (active.writer.clone(), start, plan)
        };
        let records = plan.record_count();
        let RoundPlan {
            buffers,
            outcomes,
            placed,
            next_offset,
            producers,
            txn_events,
        } = plan;
        if buffers.len > 0 {
            let must_sync =
                cfg.flush_policy == FlushPolicy::Always && round.iter().any(|r| r.reply.is_some());
            let written = buffers.len;
            let synced = match self
                .write_and_sync(writer, buffers, start.write_pos, must_sync, round.len())
                .await
            {
                Ok(synced) => synced,
                Err(_) => {
                    return reply_all(round, AppendResult::error(ErrorCode::KafkaStorageError))
                }
            };
            let committed = Committed {
                placed,
                next_offset,
                producers,
                txn_events,
                written,
                records,
                synced,
            };
            if let Some(aborts) = self.commit(committed, cfg.index_interval_bytes) {
                self.write_txn_index(aborts, synced).await;
            }
        } else {
            // Nothing to write (duplicates and rejections only).
            self.wake_waiters();
        }
        self.answer(round, outcomes, now, cfg.log_append_time);
    }

    /// Writes a staged round at `write_pos` with one vectored write and,
    /// with `must_sync`, fdatasyncs it. Returns whether it was synced. On
    /// failure the partial write is cut off (or, if that fails too, the
    /// partition closed) so recovery and readers never see it.
    pub(super) async fn write_and_sync(
        &self,
        writer: compio::fs::File,
        buffers: RoundBuffers,
        write_pos: u64,
        must_sync: bool,
        requests: usize,
    ) -> std::io::Result<bool> {
        let mut w = writer.clone();
        let res = write_buffers(buffers, &mut w, write_pos).await;
        let res = match res {
            Ok(()) if must_sync => {
                let t = Instant::now();
                let r = w.sync_data().await;
                self.metrics.observe_fsync(t.elapsed(), requests);
                r.map(|()| true)
            }
            Ok(()) => Ok(false),
            Err(e) => Err(e),
        };
        match res {
            Ok(synced) => Ok(synced),
            Err(e) => {
                tracing::error!(topic = %self.topic, partition = self.partition, error = %e, "append failed; rolling back");
                if let Err(e) = writer.set_len(write_pos).await {
                    tracing::error!(error = %e, "cannot truncate after failed append; closing partition");
                    self.close();
                }
                Err(e)
            }
        }
    }

    /// Makes a written round part of the log: indexes, producer state and
    /// open transactions, log end offset, metrics; then wakes parked
    /// follower fetches and lets the replica layer move the high watermark
    /// (`log_end_moved`). Returns the `.txnindex` entries the round's
    /// aborts added to the active segment, still to be written.
    fn commit(&self, round: Committed, index_interval_bytes: usize) -> Option<TxnIndexWrite> {
        let aborts = {
            let mut st = self.state.borrow_mut();
            let st = &mut *st;
            if let Some(active) = st.segments.values_mut().next_back() {
                for (pos, h) in &round.placed {
                    active.note_batch(*pos, h, index_interval_bytes);
                }
            }
            st.producers.producers.extend(round.producers);
            let aborted: Vec<_> = round
                .txn_events
                .into_iter()
                .filter_map(|e| st.producers.apply(e))
                .collect();
            let aborts = st
                .segments
                .values_mut()
                .next_back()
                .and_then(|active| TxnIndexWrite::add(active, aborted));
            let epochs = round
                .placed
                .iter()
                .map(|(_, h)| (h.partition_leader_epoch, h.base_offset));
            if st.epochs.observe(epochs) {
                st.epochs.flush_or_warn();
            }
            st.log_end_offset = round.next_offset;
            st.dirty |= !round.synced;
            self.metrics
                .set_offsets(st.log_start_offset, st.log_end_offset, st.size_bytes());
            aborts
        };
        self.metrics.add_in(round.written as u64, round.records);
        self.log_end_moved();
        aborts
    }

    /// Appends entries [`TxnIndexWrite::add`] put in a segment's memory to
    /// its `.txnindex` file; synced when the log bytes were. A failure is
    /// logged: recovery rebuilds the entries from the markers in the log.
    pub(super) async fn write_txn_index(&self, w: TxnIndexWrite, sync: bool) {
        let result =
            super::segment::append_txn_index(&self.dir, w.base, w.position, w.bytes, sync).await;
        if let Err(e) = result {
            tracing::error!(topic = %self.topic, partition = self.partition, segment = w.base, error = %e, "cannot append to the transaction index; recovery rebuilds it");
        }
    }

    /// Answers each request of a round with its staged outcome.
    fn answer(
        &self,
        round: Vec<AppendRequest>,
        outcomes: Vec<Staged>,
        now: i64,
        append_time: bool,
    ) {
        let log_start = self.state.borrow().log_start_offset;
        for (req, outcome) in round.into_iter().zip(outcomes) {
            let Some(reply) = req.reply else { continue };
            let result = match outcome {
                Staged::Appended { base_offset } | Staged::Duplicate { base_offset } => {
                    AppendResult {
                        error: ErrorCode::None,
                        base_offset,
                        log_append_time: if append_time { now } else { -1 },
                        log_start_offset: log_start,
                    }
                }
                Staged::Rejected(code) => AppendResult {
                    log_start_offset: log_start,
                    ..AppendResult::error(code)
                },
            };
            let _ = reply.send(result);
        }
    }

    /// fdatasyncs the active segment if anything was written since the last
    /// sync (the `flush.policy = interval` flusher and shutdown use this).
    pub async fn flush(&self) -> std::io::Result<()> {
        let writer = {
            let st = self.state.borrow();
            if !st.dirty {
                return Ok(());
            }
            st.active().map(|a| a.writer.clone())
        };
        if let Some(w) = writer {
            w.sync_data().await?;
        }
        self.state.borrow_mut().dirty = false;
        Ok(())
    }
}

fn reply_all(round: Vec<AppendRequest>, result: AppendResult) {
    for r in round {
        if let Some(reply) = r.reply {
            let _ = reply.send(result);
        }
    }
}

/// Entries added to a segment's transaction index in memory, to append to
/// its file.
pub(super) struct TxnIndexWrite {
    base: i64,
    position: u64,
    bytes: Vec<u8>,
}

impl TxnIndexWrite {
    /// Adds `aborted` to `seg`'s index in memory; what to write, if any.
    pub(super) fn add(
        seg: &mut Segment,
        aborted: Vec<super::txn_index::AbortedTxn>,
    ) -> Option<TxnIndexWrite> {
        if aborted.is_empty() {
            return None;
        }
        let position = (seg.txn_index.entries.len() * super::txn_index::ENTRY_LEN) as u64;
        seg.txn_index.entries.extend_from_slice(&aborted);
        Some(TxnIndexWrite {
            base: seg.base_offset,
            position,
            bytes: super::txn_index::encode_entries(&aborted),
        })
    }
}

/// What a written round commits (its plan, less what was written).
struct Committed {
    placed: Vec<(u64, BatchHeader)>,
    next_offset: i64,
    producers: HashMap<i64, ProducerEntry>,
    txn_events: Vec<TxnEvent>,
    written: usize,
    records: u64,
    synced: bool,
}

/// Above this many buffers (the kernel takes at most 1024 per writev) a
/// round is joined into one buffer instead.
const MAX_IOVECS: usize = 1000;

async fn write_buffers(
    buffers: RoundBuffers,
    w: &mut compio::fs::File,
    pos: u64,
) -> std::io::Result<()> {
    if buffers.parts.len() > MAX_IOVECS {
        let mut joined = Vec::with_capacity(buffers.len);
        for p in &buffers.parts {
            joined.extend_from_slice(p);
        }
        let BufResult(res, _) = w.write_all_at(joined, pos).await;
        return res;
    }
    let BufResult(res, _) = w.write_vectored_all_at(buffers.parts, pos).await;
    res
}
