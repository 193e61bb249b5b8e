//! The log cleaner: compaction of `cleanup.policy=compact` (and
//! `compact,delete`) logs as Kafka's LogCleaner does it, run by each shard
//! over its own logs as one background task ([`run`]) that never holds the
//! partition state across an await, so produce and fetch go on meanwhile.
//!
//! A pass over one log ([`clean_log`]): pick the log by its dirty ratio and
//! compaction lags (`plan`); build the key map (`key_map`, bounded by
//! `log.cleaner.dedupe.buffer.size`: when it fills, the pass ends there)
//! over the dirty section; rewrite every segment below that end in groups
//! (`plan::group_segments`), keeping the batches and records `filter`
//! keeps; swap each cleaned group in crash-safely (`swap`); and move the
//! log's first dirty offset to the end, saved in the
//! `cleaner-offset-checkpoint` (`checkpoint`). Reads and writes go through
//! the shard's io_uring (compio) files, throttled by
//! `log.cleaner.io.max.bytes.per.second`; the CPU work (decoding, key
//! hashing, filtering, re-encoding) runs about a megabyte at a time on the
//! process's low-priority cleaner threads (`worker`, `pool`).
//! Fetches holding a replaced segment's file keep reading it (an unlinked
//! file stays readable), so a reader sees the old segment or the new one.
//! The pass's own handles of a replaced segment are closed on a blocking
//! thread (`drop_off_shard`): that last close frees the file in the kernel.

pub mod checkpoint;
pub mod filter;
pub mod key_map;
pub mod plan;
pub mod pool;
pub mod swap;
#[cfg(test)]
mod tests;
pub mod worker;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::io::{AsyncReadAtExt, AsyncWriteAtExt};
use compio::BufResult;
use sluice_protocol::batch::{BatchHeader, BATCH_HEADER_LEN, MIN_BATCH_LENGTH};
use sluice_protocol::clock::now_ms;

use super::segment::{log_file_name, Segment};
use super::PartitionLog;
use crate::config::BrokerConfig;
use checkpoint::CleanerCheckpoint;
use filter::AbortedRanges;
use key_map::KeyMap;
use plan::{Cleanable, LogSummary, SegmentSummary};
use worker::{BatchChunk, FilterInputs, FilteredChunk, OpenTransactions};

/// Bytes read or written per I/O.
const IO_CHUNK: usize = 1 << 20;

/// The broker-level cleaner settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CleanerConfig {
    pub dedupe_buffer_size: u64,
    pub io_max_bytes_per_second: f64,
    pub backoff: Duration,
}

impl CleanerConfig {
    pub fn from_broker(b: &BrokerConfig) -> CleanerConfig {
        CleanerConfig {
            dedupe_buffer_size: b.log_cleaner_dedupe_buffer_size,
            io_max_bytes_per_second: b.log_cleaner_io_max_bytes_per_second,
            backoff: Duration::from_millis(b.log_cleaner_backoff_ms.max(1)),
        }
    }
}

/// The cleaner's own state of one log (on its owner shard).
#[derive(Debug, Default, Clone, Copy)]
pub struct CleanerState {
    /// Where the dirty section starts; `None` until read from the checkpoint.
    pub first_dirty: Option<i64>,
    /// The earliest delete horizon of a batch still holding tombstones.
    pub earliest_delete_horizon: Option<i64>,
    /// After a failed pass: leave the log alone until then (wall-clock ms).
    pub retry_after_ms: i64,
}

/// What a pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassStats {
    /// The log's first dirty offset after the pass.
    pub end_offset: i64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_removed: u64,
    /// Groups of segments replaced by a cleaned one.
    pub groups_swapped: usize,
    /// Groups left alone because the log changed under the clean.
    pub groups_abandoned: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CleanError {
    #[error("cleaner I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("undecodable batch at offset {offset}: {reason}")]
    Corrupt { offset: i64, reason: String },
    #[error("the cleaner is stopping")]
    Stopped,
    #[error("a cleaner worker thread panicked")]
    WorkerPanicked,
}

/// `log.cleaner.io.max.bytes.per.second`: I/O waits so that the bytes
/// read and written since the window began never run ahead of the rate.
pub struct Throttle {
    rate: f64,
    window_start: Instant,
    bytes: u64,
}

/// How long to wait after `bytes` in `elapsed` at `rate` bytes/second.
pub fn throttle_delay(bytes: u64, elapsed: Duration, rate: f64) -> Duration {
    if !(rate.is_finite() && rate > 0.0) {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64((bytes as f64 / rate).min(3600.0));
    due.saturating_sub(elapsed)
}

impl Throttle {
    pub fn new(rate: f64) -> Throttle {
        Throttle {
            rate,
            window_start: Instant::now(),
            bytes: 0,
        }
    }

    async fn spend(&mut self, bytes: u64) {
        self.bytes += bytes;
        let elapsed = self.window_start.elapsed();
        let wait = throttle_delay(self.bytes, elapsed, self.rate);
        if !wait.is_zero() {
            compio::time::sleep(wait).await;
        } else if elapsed > Duration::from_secs(1) {
            // A new window, so an idle spell earns no burst.
            self.window_start = Instant::now();
            self.bytes = 0;
        }
    }
}

/// Gives the shard's other tasks a turn.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn yield_now() -> YieldNow {
    YieldNow(false)
}

/// One segment as the pass saw it when it began.
#[derive(Clone)]
struct SegmentSnapshot {
    summary: SegmentSummary,
    reader: Arc<std::fs::File>,
    created_ms: i64,
    path: PathBuf,
}

/// Reads a segment's batches in order through a compio file, a chunk at a time.
struct BatchScan {
    file: compio::fs::File,
    base: i64,
    end: u64,
    next_pos: u64,
    chunk: Bytes,
    chunk_pos: u64,
}

impl BatchScan {
    async fn open(seg: &SegmentSnapshot) -> std::io::Result<BatchScan> {
        Ok(BatchScan {
            file: compio::fs::File::open(&seg.path).await?,
            base: seg.summary.base,
            end: seg.summary.size,
            next_pos: 0,
            chunk: Bytes::new(),
            chunk_pos: 0,
        })
    }

    fn in_chunk(&self, len: u64) -> bool {
        self.next_pos >= self.chunk_pos
            && self.next_pos + len <= self.chunk_pos + self.chunk.len() as u64
    }

    async fn fill(&mut self, need: u64, throttle: &mut Throttle) -> std::io::Result<u64> {
        let want = need.max(IO_CHUNK as u64).min(self.end - self.next_pos);
        let BufResult(res, buf) = self
            .file
            .read_exact_at(vec![0u8; want as usize], self.next_pos)
            .await;
        res?;
        self.chunk = Bytes::from(buf);
        self.chunk_pos = self.next_pos;
        throttle.spend(want).await;
        Ok(want)
    }

    /// The next whole batch (its file position, header and bytes), or
    /// `None` at the end. Adds the bytes read to `read`.
    async fn next_batch(
        &mut self,
        throttle: &mut Throttle,
        read: &mut u64,
    ) -> Result<Option<(u64, BatchHeader, Bytes)>, CleanError> {
        if self.next_pos + BATCH_HEADER_LEN as u64 > self.end {
            return Ok(None);
        }
        if !self.in_chunk(BATCH_HEADER_LEN as u64) {
            *read += self.fill(BATCH_HEADER_LEN as u64, throttle).await?;
        }
        let at = (self.next_pos - self.chunk_pos) as usize;
        let h = BatchHeader::parse(&self.chunk[at..]).map_err(|e| CleanError::Corrupt {
            offset: self.base,
            reason: e.to_string(),
        })?;
        let total = h.total_len() as u64;
        if h.batch_length < MIN_BATCH_LENGTH || self.next_pos + total > self.end {
            return Err(CleanError::Corrupt {
                offset: h.base_offset,
                reason: format!("batch of {total} bytes at position {}", self.next_pos),
            });
        }
        if !self.in_chunk(total) {
            *read += self.fill(total, throttle).await?;
        }
        let at = (self.next_pos - self.chunk_pos) as usize;
        let bytes = self.chunk.slice(at..at + total as usize);
        let pos = self.next_pos;
        self.next_pos += total;
        Ok(Some((pos, h, bytes)))
    }
}

/// Writes a cleaned segment sequentially, a chunk at a time.
struct CleanedWriter {
    file: compio::fs::File,
    pos: u64,
    pending: Vec<u8>,
}

impl CleanedWriter {
    async fn push(&mut self, bytes: &[u8], throttle: &mut Throttle) -> std::io::Result<u64> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= IO_CHUNK {
            return self.flush(throttle).await;
        }
        Ok(0)
    }

    async fn flush(&mut self, throttle: &mut Throttle) -> std::io::Result<u64> {
        if self.pending.is_empty() {
            return Ok(0);
        }
        let buf = std::mem::take(&mut self.pending);
        let n = buf.len() as u64;
        let BufResult(res, mut buf) = self.file.write_all_at(buf, self.pos).await;
        res?;
        self.pos += n;
        buf.clear();
        self.pending = buf;
        throttle.spend(n).await;
        Ok(n)
    }
}

impl PartitionLog {
    /// The log as selection sees it now.
    fn cleaner_summary(&self, with_first_dirty_timestamp: bool) -> LogSummary {
        let st = self.state.borrow();
        let cs = *self.cleaner.borrow();
        let segments: Vec<SegmentSummary> = st
            .segments
            .values()
            .map(|s| SegmentSummary {
                base: s.base_offset,
                next_offset: s.next_offset,
                size: s.size,
                max_timestamp: s.max_timestamp,
            })
            .collect();
        let first_dirty = cs.first_dirty.unwrap_or(st.log_start_offset);
        let first_dirty_timestamp = if with_first_dirty_timestamp {
            let from = st
                .segments
                .range(..=first_dirty)
                .next_back()
                .map_or(i64::MIN, |(b, _)| *b);
            st.segments
                .range(from..)
                .find_map(|(_, s)| s.position_of(first_dirty).ok().flatten())
                .map(|(_, h)| h.max_timestamp)
        } else {
            None
        };
        LogSummary {
            segments,
            log_start: st.log_start_offset,
            first_dirty,
            // Kafka cleans only below the first unstable offset: the last
            // stable offset is the high watermark or, before it, where the
            // oldest open transaction starts, so no batch of an open
            // transaction is ever cleaned.
            high_watermark: st.producers.last_stable_offset(st.high_watermark),
            first_dirty_timestamp,
            earliest_delete_horizon: cs.earliest_delete_horizon,
        }
    }

    /// Whether (and why) this log should be cleaned now.
    pub fn cleanable(&self, now_ms: i64) -> Option<Cleanable> {
        let cfg = self.config.borrow().clone();
        if !cfg.cleanup_compact || self.closed.get() {
            return None;
        }
        if self.cleaner.borrow().retry_after_ms > now_ms {
            return None;
        }
        let summary = self.cleaner_summary(cfg.max_compaction_lag_ms < i64::MAX);
        plan::cleanable(&summary, &cfg, now_ms)
    }

    /// Sets the first dirty offset from the checkpoint the first time the
    /// cleaner meets this log (an entry past the log end is a deleted
    /// topic's: ignored).
    pub fn load_first_dirty(&self, checkpoint: &CleanerCheckpoint) {
        if self.cleaner.borrow().first_dirty.is_some() {
            return;
        }
        let (start, end) = {
            let st = self.state.borrow();
            (st.log_start_offset, st.log_end_offset)
        };
        let saved = checkpoint
            .get(&self.topic, self.partition)
            .filter(|o| *o <= end)
            .unwrap_or(start);
        self.cleaner.borrow_mut().first_dirty = Some(saved.max(start));
    }

    fn snapshot_segments(&self) -> Vec<SegmentSnapshot> {
        let st = self.state.borrow();
        st.segments
            .values()
            .map(|s| SegmentSnapshot {
                summary: SegmentSummary {
                    base: s.base_offset,
                    next_offset: s.next_offset,
                    size: s.size,
                    max_timestamp: s.max_timestamp,
                },
                reader: s.reader.clone(),
                created_ms: s.created_ms,
                path: s.path("log"),
            })
            .collect()
    }
}

/// Cleans `log` once if it is cleanable now (see [`clean_log`]).
pub async fn clean_if_cleanable(
    log: &Rc<PartitionLog>,
    cfg: &CleanerConfig,
    throttle: &mut Throttle,
    stopping: &dyn Fn() -> bool,
) -> Result<Option<PassStats>, CleanError> {
    let now = now_ms();
    let Some(plan) = log.cleanable(now) else {
        return Ok(None);
    };
    clean_log(log, plan, cfg, throttle, stopping)
        .await
        .map(Some)
}

/// One cleaning pass over `log` as `plan` says.
pub async fn clean_log(
    log: &Rc<PartitionLog>,
    plan: Cleanable,
    cfg: &CleanerConfig,
    throttle: &mut Throttle,
    stopping: &dyn Fn() -> bool,
) -> Result<PassStats, CleanError> {
    let log_cfg = log.config.borrow().clone();
    let segments = log.snapshot_segments();
    let now = now_ms();
    let mut stats = PassStats::default();

    // Records of aborted transactions neither count in the key map nor stay.
    let mut aborted = AbortedRanges::default();
    for seg in log.state.borrow().segments.values() {
        for t in &seg.txn_index.entries {
            aborted.insert(t.producer_id, t.first_offset, t.last_offset);
        }
    }

    // 1. The key map over the dirty section, as far as it fits.
    let mut map = KeyMap::with_budget(cfg.dedupe_buffer_size);
    let mut end = plan.first_uncleanable;
    let mut chunk = BatchChunk::default();
    'dirty: for seg in segments.iter().filter(|s| {
        s.summary.next_offset > plan.first_dirty && s.summary.base < plan.first_uncleanable
    }) {
        let mut scan = BatchScan::open(seg).await?;
        while let Some((_, h, bytes)) = scan.next_batch(throttle, &mut stats.bytes_read).await? {
            if h.last_offset() < plan.first_dirty || h.is_control() || aborted.contains(&h) {
                continue;
            }
            if chunk.push(h, bytes) {
                let (m, full_at) = worker::index_chunk(map, &mut chunk, plan.first_dirty).await?;
                map = m;
                if let Some(at) = full_at {
                    end = at;
                    break 'dirty;
                }
                if stopping() || log.closed.get() {
                    return Err(CleanError::Stopped);
                }
            }
        }
    }
    if !chunk.is_empty() {
        let (m, full_at) = worker::index_chunk(map, &mut chunk, plan.first_dirty).await?;
        map = m;
        if let Some(at) = full_at {
            end = at;
        }
    }
    // The pass never goes backwards (a map full at once still moves on).
    let end = end.max(plan.first_dirty);

    // 2. Rewrite every segment below the end, group by group.
    let last_batch_of_producer: HashMap<i64, i64> = log
        .state
        .borrow()
        .producers
        .producers
        .iter()
        .filter_map(|(pid, e)| e.batches.back().map(|b| (*pid, b.last_offset)))
        .collect();
    let inputs = Arc::new(FilterInputs {
        map,
        now_ms: now,
        delete_retention_ms: log_cfg.delete_retention_ms,
        last_batch_of_producer,
        aborted,
    });
    let Some((_active, done)) = segments.split_last() else {
        return Ok(stats);
    };
    // Each group's snapshots are taken out as the group is cleaned, and the
    // pass's other copies dropped now, so that a replaced group's files are
    // released as soon as it is swapped (`drop_off_shard`).
    let mut to_clean: Vec<Option<SegmentSnapshot>> = done
        .iter()
        .filter(|s| s.summary.base < end && s.summary.base < plan.first_uncleanable)
        .cloned()
        .map(Some)
        .collect();
    drop(segments);
    let summaries: Vec<SegmentSummary> = to_clean.iter().flatten().map(|s| s.summary).collect();
    let max_group_bytes = log_cfg.segment_bytes.min(i32::MAX as u64);
    let mut earliest_horizon: Option<i64> = None;
    let mut open = OpenTransactions::new();
    for range in plan::group_segments(&summaries, max_group_bytes) {
        if stopping() || log.closed.get() {
            return Err(CleanError::Stopped);
        }
        let group: Vec<SegmentSnapshot> = to_clean[range]
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        let outcome = clean_group(log, &group, &inputs, &mut open, throttle, &mut stats).await?;
        // The pass is done with these files; for a swapped group these are
        // the last handles of the unlinked originals.
        drop_off_shard(group).await;
        match outcome {
            GroupOutcome::Swapped { horizon } => {
                stats.groups_swapped += 1;
                earliest_horizon = min_opt(earliest_horizon, horizon);
            }
            GroupOutcome::Unchanged { horizon } => {
                earliest_horizon = min_opt(earliest_horizon, horizon);
            }
            GroupOutcome::Abandoned => {
                stats.groups_abandoned += 1;
                earliest_horizon = min_opt(
                    earliest_horizon,
                    log.cleaner.borrow().earliest_delete_horizon,
                );
            }
        }
    }

    // 3. The dirty section now starts at the end.
    {
        let mut cs = log.cleaner.borrow_mut();
        cs.first_dirty = Some(end);
        cs.earliest_delete_horizon = earliest_horizon;
    }
    stats.end_offset = end;
    let m = &crate::metrics::METRICS;
    m.cleaner_runs.fetch_add(1, Relaxed);
    m.cleaner_bytes_read.fetch_add(stats.bytes_read, Relaxed);
    m.cleaner_bytes_written
        .fetch_add(stats.bytes_written, Relaxed);
    m.cleaner_records_removed
        .fetch_add(stats.records_removed, Relaxed);
    Ok(stats)
}

/// Drops `value` on a blocking-pool thread, not the shard's. A replaced
/// segment's last file handle is the pass's snapshot of it, and closing an
/// unlinked file frees its blocks and page cache inside `close`: tens of
/// milliseconds for a 16 MiB segment, during which the shard would serve
/// no request (measured: ~300 ms of produce stalls at the end of a pass
/// over 30 segments, scripts/bench --compaction).
pub async fn drop_off_shard<T: Send + 'static>(value: T) {
    // Err only if the drop panicked on the pool thread: nothing left to do.
    let _ = compio::runtime::spawn_blocking(move || drop(value)).await;
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

enum GroupOutcome {
    /// The group was replaced by its cleaned segment.
    Swapped { horizon: Option<i64> },
    /// Nothing in the group changes: the originals stay.
    Unchanged { horizon: Option<i64> },
    /// The log changed under the clean (retention, truncation, close): the
    /// cleaned file was discarded.
    Abandoned,
}

/// Cleans one group of consecutive segments into `<first base>.log.cleaned`
/// and swaps it in.
async fn clean_group(
    log: &Rc<PartitionLog>,
    group: &[SegmentSnapshot],
    inputs: &Arc<FilterInputs>,
    open: &mut OpenTransactions,
    throttle: &mut Throttle,
    stats: &mut PassStats,
) -> Result<GroupOutcome, CleanError> {
    let (Some(first), Some(last)) = (group.first(), group.last()) else {
        return Ok(GroupOutcome::Unchanged { horizon: None });
    };
    let base = first.summary.base;
    let cleaned = swap::cleaned_path(&log.dir, base);
    let file = compio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&cleaned)
        .await?;
    let mut out = CleanedWriter {
        file,
        pos: 0,
        pending: Vec::with_capacity(IO_CHUNK + (64 << 10)),
    };
    let result = write_cleaned(group, inputs, open, throttle, stats, &mut out).await;
    let CleanedGroup {
        placed,
        changed,
        horizon,
        removed_markers,
    } = match result {
        Ok(r) => r,
        Err(e) => {
            let _ = std::fs::remove_file(&cleaned);
            return Err(e);
        }
    };
    if !changed {
        let _ = std::fs::remove_file(&cleaned);
        return Ok(GroupOutcome::Unchanged { horizon });
    }
    let written = out.pos;
    stats.bytes_written += written;
    out.file.sync_all().await?;

    // Step 2: the clean is done once `.swap` is durable.
    let swap = swap::swap_path(&log.dir, base);
    std::fs::rename(&cleaned, &swap)?;
    compio::fs::File::open(&log.dir).await?.sync_all().await?;
    let reader = std::fs::File::open(&swap)?;

    let index_interval = log.config.borrow().index_interval_bytes;
    let mut seg = Segment::empty(&log.dir, base, out.file, reader, last.created_ms);
    for (pos, h) in &placed {
        seg.note_batch(*pos, h, index_interval);
    }
    seg.size = written;
    // The segment still covers the group's offsets (gaps are the cleaned
    // records), so the next segment starts where this one ends.
    seg.next_offset = last.summary.next_offset;

    // Step 3, with no await: nothing else on the shard sees a half swap.
    if !swap_in(log, group, seg, &removed_markers) {
        let _ = std::fs::remove_file(&swap);
        return Ok(GroupOutcome::Abandoned);
    }
    // Kafka gives a cleaned segment its group's last modification time, so
    // time-based retention and segment age see the data's age.
    if let Ok(modified) = std::fs::metadata(&last.path).and_then(|m| m.modified()) {
        if let Ok(f) = std::fs::File::options()
            .write(true)
            .open(log.dir.join(log_file_name(base)))
        {
            let _ = f.set_modified(modified);
        }
    }
    compio::fs::File::open(&log.dir).await?.sync_all().await?;
    let (dir, offsets, times) = {
        let st = log.state.borrow();
        let Some(s) = st.segments.get(&base) else {
            return Ok(GroupOutcome::Swapped { horizon });
        };
        (
            log.dir.clone(),
            s.offset_index.clone(),
            s.time_index.clone(),
        )
    };
    let persisted = compio::runtime::spawn_blocking(move || {
        super::segment::persist_index_files(&dir, base, &offsets, &times)
    })
    .await;
    if !matches!(persisted, Ok(Ok(()))) {
        tracing::warn!(topic = %log.topic, partition = log.partition, segment = base, "cannot write a cleaned segment's indexes; they are rebuilt at start-up");
    }
    Ok(GroupOutcome::Swapped { horizon })
}

/// What a group's cleaned file holds so far.
#[derive(Default)]
struct CleanedGroup {
    /// The batches written: (position in the file, header).
    placed: Vec<(u64, BatchHeader)>,
    /// Whether any batch was removed or rewritten.
    changed: bool,
    /// The earliest delete horizon of the batches kept.
    horizon: Option<i64>,
    /// Offsets of the transaction markers removed.
    removed_markers: Vec<i64>,
}

impl CleanedGroup {
    /// Writes what a worker kept of a chunk.
    async fn write(
        &mut self,
        filtered: FilteredChunk,
        out: &mut CleanedWriter,
        throttle: &mut Throttle,
        stats: &mut PassStats,
    ) -> std::io::Result<()> {
        stats.records_removed += filtered.records_removed;
        self.horizon = min_opt(self.horizon, filtered.horizon);
        self.changed |= filtered.changed;
        self.removed_markers.extend(filtered.removed_markers);
        for (h, bytes) in filtered.kept {
            self.placed.push((out.pos + out.pending.len() as u64, h));
            out.push(&bytes, throttle).await?;
        }
        Ok(())
    }
}

/// Filters every batch of `group` into `out`, a chunk at a time on the
/// blocking pool.
async fn write_cleaned(
    group: &[SegmentSnapshot],
    inputs: &Arc<FilterInputs>,
    open: &mut OpenTransactions,
    throttle: &mut Throttle,
    stats: &mut PassStats,
    out: &mut CleanedWriter,
) -> Result<CleanedGroup, CleanError> {
    let mut cleaned = CleanedGroup {
        changed: group.len() > 1,
        ..CleanedGroup::default()
    };
    let mut chunk = BatchChunk::default();
    for seg in group {
        let mut scan = BatchScan::open(seg).await?;
        while let Some((_, h, bytes)) = scan.next_batch(throttle, &mut stats.bytes_read).await? {
            if chunk.push(h, bytes) {
                let filtered = worker::filter_chunk(inputs, &mut chunk, open).await?;
                cleaned.write(filtered, out, throttle, stats).await?;
            }
        }
    }
    if !chunk.is_empty() {
        let filtered = worker::filter_chunk(inputs, &mut chunk, open).await?;
        cleaned.write(filtered, out, throttle, stats).await?;
    }
    out.flush(throttle).await?;
    Ok(cleaned)
}

/// Replaces `group` by `cleaned` in the log, then renames the files (no
/// await in here). False, with nothing changed, if the log no longer holds
/// exactly the segments the clean read.
fn swap_in(
    log: &PartitionLog,
    group: &[SegmentSnapshot],
    cleaned: Segment,
    removed_markers: &[i64],
) -> bool {
    if log.closed.get() {
        return false;
    }
    let mut st = log.state.borrow_mut();
    let active = st.segments.keys().next_back().copied();
    let unchanged = group.iter().all(|g| {
        Some(g.summary.base) != active
            && st
                .segments
                .get(&g.summary.base)
                .is_some_and(|s| Arc::ptr_eq(&s.reader, &g.reader) && s.size == g.summary.size)
    });
    if !unchanged {
        return false;
    }
    let base = cleaned.base_offset;
    let mut cleaned = cleaned;
    for g in group {
        if let Some(old) = st.segments.remove(&g.summary.base) {
            // An abort marker the clean kept keeps its index entry.
            cleaned.txn_index.entries.extend(
                old.txn_index
                    .entries
                    .into_iter()
                    .filter(|e| !removed_markers.contains(&e.last_offset)),
            );
        }
    }
    // The merged transaction index goes in before the group's other files
    // go (start-up recovery reads every `.txnindex` it finds, orphans too).
    if let Err(e) = cleaned.persist_txn_index() {
        tracing::warn!(topic = %log.topic, partition = log.partition, segment = base, error = %e, "cannot write a cleaned segment's transaction index; it is rebuilt at start-up");
    }
    st.segments.insert(base, cleaned);
    for g in &group[1..] {
        let b = g.summary.base;
        let _ = std::fs::remove_file(log.dir.join(log_file_name(b)));
        swap::remove_index_files(&log.dir, b);
        let _ = std::fs::remove_file(crate::log::txn_index::txn_index_path(&log.dir, b));
    }
    swap::remove_index_files(&log.dir, base);
    if let Err(e) = std::fs::rename(
        swap::swap_path(&log.dir, base),
        log.dir.join(log_file_name(base)),
    ) {
        // The swap file stays; start-up recovery completes the swap.
        tracing::error!(topic = %log.topic, partition = log.partition, segment = base, error = %e, "cannot rename a cleaned segment into place");
    }
    log.metrics
        .set_offsets(st.log_start_offset, st.log_end_offset, st.size_bytes());
    true
}

/// The shard's cleaner: forever (until `stopping`), clean the filthiest of
/// `logs()` that is cleanable, else sleep `log.cleaner.backoff.ms`.
pub async fn run(
    cfg: CleanerConfig,
    checkpoint: Arc<CleanerCheckpoint>,
    logs: impl Fn() -> Vec<Rc<PartitionLog>>,
    stopping: impl Fn() -> bool,
) {
    let mut throttle = Throttle::new(cfg.io_max_bytes_per_second);
    loop {
        if stopping() {
            return;
        }
        let now = now_ms();
        let mut best: Option<(Rc<PartitionLog>, Cleanable)> = None;
        for log in logs() {
            if !log.config.borrow().cleanup_compact {
                continue;
            }
            log.load_first_dirty(&checkpoint);
            let Some(c) = log.cleanable(now) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|(_, b)| c.dirty_ratio > b.dirty_ratio)
            {
                best = Some((log, c));
            }
        }
        let Some((log, plan)) = best else {
            compio::time::sleep(cfg.backoff).await;
            continue;
        };
        let started = Instant::now();
        match clean_log(&log, plan, &cfg, &mut throttle, &stopping).await {
            Ok(stats) => {
                tracing::debug!(topic = %log.topic, partition = log.partition, ?plan.reason, end = stats.end_offset, read = stats.bytes_read, written = stats.bytes_written, removed = stats.records_removed, took_ms = started.elapsed().as_millis() as u64, "cleaned log");
                checkpoint.set(&log.topic, log.partition, stats.end_offset);
                let cp = checkpoint.clone();
                match compio::runtime::spawn_blocking(move || cp.write()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot write the cleaner checkpoint"),
                    Err(_) => tracing::warn!("the cleaner checkpoint writer failed"),
                }
            }
            Err(CleanError::Stopped) => {}
            Err(e) => {
                tracing::warn!(topic = %log.topic, partition = log.partition, error = %e, "cleaning failed; retrying after the backoff");
                log.cleaner.borrow_mut().retry_after_ms =
                    now_ms().saturating_add(cfg.backoff.as_millis() as i64 * 10);
            }
        }
        yield_now().await;
    }
}
