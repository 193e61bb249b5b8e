//! The CPU half of a cleaning pass, done on a cleaner thread instead of the
//! shard thread. The shard reads batches through io_uring and hands them
//! over about a megabyte at a time ([`BatchChunk`]); a cleaner thread decodes
//! them and hashes their keys into the key map ([`index_chunk`]), or filters
//! and re-encodes them ([`filter_chunk`]), and hands the result back. Done
//! inline, that work held the shard for milliseconds per large batch, and
//! every produce and fetch behind it waited (produce p99 tripled during a
//! clean, `scripts/bench --compaction`); off the shard, the kernel
//! schedules it beside the shard, which wakes for I/O ahead of it.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::batch::BatchHeader;

use super::filter::{self, AbortedRanges, FilterContext, Filtered};
use super::key_map::KeyMap;
use super::{min_opt, CleanError};

/// Bytes of batches handed to a pool thread at once: large enough that the
/// hand-over costs nothing next to the work, small enough that the key map
/// and the cleaned file follow the reads closely.
const CHUNK_BYTES: usize = 1 << 20;

/// Whole batches read by the shard, on their way to a pool thread.
#[derive(Default)]
pub struct BatchChunk {
    batches: Vec<(BatchHeader, Bytes)>,
    bytes: usize,
}

impl BatchChunk {
    /// Adds a batch; true once the chunk is worth handing over.
    pub fn push(&mut self, h: BatchHeader, bytes: Bytes) -> bool {
        self.bytes += bytes.len();
        self.batches.push((h, bytes));
        self.bytes >= CHUNK_BYTES
    }

    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    fn take(&mut self) -> Vec<(BatchHeader, Bytes)> {
        self.bytes = 0;
        std::mem::take(&mut self.batches)
    }
}

/// Runs `work` on a low-priority cleaner thread ([`super::pool`]). A panic
/// there is a cleaner bug: the pass fails (and is retried after the
/// backoff) instead of the broker.
async fn off_shard<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CleanError> + Send + 'static,
) -> Result<T, CleanError> {
    match super::pool::run(work).await {
        Ok(result) => result,
        Err(_) => Err(CleanError::WorkerPanicked),
    }
}

fn corrupt(h: &BatchHeader, e: impl std::fmt::Display) -> CleanError {
    CleanError::Corrupt {
        offset: h.base_offset,
        reason: e.to_string(),
    }
}

/// Puts the keys of `chunk`'s records at or past `first_dirty` into `map`,
/// batch by batch, stopping before the first batch whose records might not
/// fit (a map never stops empty-handed). Returns the map and, if it filled,
/// the base offset of the batch it stopped at: the pass ends there.
pub async fn index_chunk(
    map: KeyMap,
    chunk: &mut BatchChunk,
    first_dirty: i64,
) -> Result<(KeyMap, Option<i64>), CleanError> {
    let batches = chunk.take();
    off_shard(move || {
        let mut map = map;
        for (h, bytes) in batches {
            if !map.is_empty() && !map.has_room_for(h.records_count.max(0) as usize) {
                return Ok((map, Some(h.base_offset)));
            }
            let records =
                sluice_protocol::batch::decode_records(&bytes).map_err(|e| corrupt(&h, e))?;
            for r in records {
                if let Some(key) = r.key.as_deref() {
                    let offset = r.offset(&h);
                    if offset >= first_dirty {
                        map.put(key, offset);
                    }
                }
            }
        }
        Ok((map, None))
    })
    .await
}

/// Everything the filter reads, owned, so that pool threads can share it.
pub struct FilterInputs {
    pub map: KeyMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// Producer id -> last offset of that producer's last batch in the log.
    pub last_batch_of_producer: HashMap<i64, i64>,
    pub aborted: AbortedRanges,
}

impl FilterInputs {
    fn context(&self) -> FilterContext<'_> {
        FilterContext {
            map: &self.map,
            now_ms: self.now_ms,
            delete_retention_ms: self.delete_retention_ms,
            last_batch_of_producer: &self.last_batch_of_producer,
            aborted: &self.aborted,
        }
    }
}

/// Per producer with a transaction under way in the pass's reading: whether
/// the pass kept any of its records (its marker decides on that).
pub type OpenTransactions = HashMap<i64, bool>;

/// What filtering one chunk gave.
#[derive(Default)]
pub struct FilteredChunk {
    /// Offsets of the transaction markers removed.
    pub removed_markers: Vec<i64>,
    /// The batches that stay, in order, as they are to be written.
    pub kept: Vec<(BatchHeader, Bytes)>,
    /// Whether any batch was removed or rewritten.
    pub changed: bool,
    pub records_removed: u64,
    /// The earliest delete horizon of the batches kept.
    pub horizon: Option<i64>,
}

/// Filters every batch of `chunk` (see [`filter::filter_batch`] and
/// [`filter::filter_marker`]), in log order: `open` carries what the pass
/// kept of each producer's current transaction from chunk to chunk.
pub async fn filter_chunk(
    inputs: &Arc<FilterInputs>,
    chunk: &mut BatchChunk,
    open: &mut OpenTransactions,
) -> Result<FilteredChunk, CleanError> {
    let batches = chunk.take();
    let inputs = inputs.clone();
    let mut txns = std::mem::take(open);
    let (filtered, txns) = off_shard(move || {
        let ctx = inputs.context();
        let mut out = FilteredChunk {
            kept: Vec::with_capacity(batches.len()),
            ..FilteredChunk::default()
        };
        for (h, bytes) in batches {
            let (outcome, stats) = if h.is_control() {
                let has_records = txns.remove(&h.producer_id).unwrap_or(false);
                filter::filter_marker(&bytes, &h, &ctx, has_records)
            } else {
                filter::filter_batch(&bytes, &h, &ctx)
            }
            .map_err(|e| corrupt(&h, e))?;
            if h.is_transactional() && !h.is_control() {
                // A batch kept as a producer's empty last header counts as
                // kept: without its marker, a recovery reading it would see
                // a transaction that never ends.
                let kept = !matches!(outcome, Filtered::Removed);
                *txns.entry(h.producer_id).or_default() |= kept;
            }
            if h.is_control() && outcome == Filtered::Removed {
                out.removed_markers.push(h.base_offset);
            }
            out.records_removed += stats.records_removed;
            out.horizon = min_opt(out.horizon, stats.delete_horizon);
            match outcome {
                Filtered::Unchanged => out.kept.push((h, bytes)),
                Filtered::Removed => out.changed = true,
                Filtered::Rewritten(b) => {
                    out.changed = true;
                    let nh = BatchHeader::parse(&b).map_err(|e| corrupt(&h, e))?;
                    out.kept.push((nh, Bytes::from(b)));
                }
            }
        }
        Ok((out, txns))
    })
    .await?;
    *open = txns;
    Ok(filtered)
}
