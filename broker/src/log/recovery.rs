//! Opening a partition at start-up: find the segments, walk every batch
//! header to rebuild indexes and idempotent-producer state, check each batch
//! of the active segment against its CRC, and cut a torn tail (what a crash
//! mid-write leaves) so that the log ends at its last whole, valid batch.
//! Acknowledged batches were fdatasync'ed before the ack, so they survive.
//!
//! Transactions come back from the same walk. It covers the whole log
//! (there are no producer-state snapshots, so there is no recovery point to
//! start from): every transactional batch and marker is replayed in order,
//! which reopens each transaction still open (the last stable offset holds
//! at its first batch again) and recomputes each segment's aborted
//! transactions. The walk reads only headers, and the whole batch of the
//! rare control batches, so it stays bounded by the log's batch count, as
//! before. A transaction whose first batches retention already deleted
//! reopens at its first batch still in the log, which is where a reader
//! can start anyway. The `.txnindex` files are checked against the walk:
//! one entry per abort marker the log holds that ended a transaction here,
//! its first offset taken from the file when the file has the marker (it
//! may know a first offset below the log start), from the walk otherwise
//! (a crash between the log write and the index write); entries for
//! markers the log does not hold (a torn tail) go, and files of segments
//! that no longer exist (an interrupted clean's swap) are deleted.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;

use bytes::Bytes;
use sluice_protocol::batch::{self, BatchHeader};
use sluice_protocol::clock::now_ms;

use super::epoch_cache::EpochCache;
use super::producer_state::ProducerStateMap;
use super::segment::{self, parse_log_file_name, Segment};
use super::txn_index::{txn_index_path, AbortedTxn, TxnIndex};
use super::txn_marker::EndTxnMarker;
use super::{LogConfig, LogError, PartitionLog, PartitionState};

pub const LOG_START_CHECKPOINT: &str = "log-start-offset";

impl PartitionLog {
    /// Opens (creating if needed) the partition directory `dir` and recovers it.
    pub async fn open(
        dir: &Path,
        topic: &str,
        topic_id: uuid::Uuid,
        partition: i32,
        config: LogConfig,
        metrics: crate::metrics::PartitionMetrics,
    ) -> Result<Rc<PartitionLog>, LogError> {
        std::fs::create_dir_all(dir)?;
        // A clean interrupted by a crash: drop its output or finish its swap.
        super::cleaner::swap::recover_interrupted_cleans(dir)?;
        let mut bases: Vec<i64> = Vec::new();
        let mut txn_index_bases: Vec<i64> = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(entry.path());
            } else if let Some(b) = parse_log_file_name(&name) {
                bases.push(b);
            } else if let Some(b) = parse_txn_index_file_name(&name) {
                txn_index_bases.push(b);
            }
        }
        let on_disk = StoredTxnIndexes::read(dir, &txn_index_bases);
        bases.sort_unstable();
        let checkpoint = read_checkpoint(&dir.join(LOG_START_CHECKPOINT));
        let now = now_ms();
        let mut segments = BTreeMap::new();
        let mut rebuilt = Rebuilt::default();
        let mut expected_next: Option<i64> = None;
        let last = bases.last().copied();
        for base in bases {
            let (mut seg, file_len) = Segment::open_raw(dir, base).await?;
            let verify = Some(base) == last;
            let valid = walk_segment(
                &mut seg,
                file_len,
                verify,
                config.index_interval_bytes,
                &mut rebuilt,
                expected_next,
                &on_disk,
            )?;
            if valid < file_len {
                tracing::warn!(
                    dir = %dir.display(),
                    segment = base,
                    valid_bytes = valid,
                    file_bytes = file_len,
                    "truncating torn or corrupt tail of segment"
                );
                seg.writer.set_len(valid).await?;
                seg.writer.sync_data().await?;
            }
            expected_next = Some(seg.next_offset);
            let index_matches = on_disk
                .files
                .get(&base)
                .map_or(seg.txn_index.entries.is_empty(), |f| *f == seg.txn_index);
            if !index_matches {
                seg.persist_txn_index()?;
            }
            if !verify {
                // Rewrite indexes only if they were missing or stale.
                let on_disk = std::fs::metadata(seg.path("index"))
                    .map(|m| m.len())
                    .unwrap_or(u64::MAX);
                if on_disk != (seg.offset_index.entries.len() * 8) as u64 {
                    seg.persist_indexes()?;
                }
            }
            segments.insert(base, seg);
        }
        // Index files of segments that are gone (a clean's swap completed
        // above, or a crash mid-deletion).
        for base in txn_index_bases {
            if !segments.contains_key(&base) {
                let _ = std::fs::remove_file(txn_index_path(dir, base));
            }
        }
        let log_end = expected_next.unwrap_or(checkpoint.unwrap_or(0).max(0));
        if segments.is_empty() {
            let seg = Segment::create(dir, log_end, now).await?;
            segments.insert(log_end, seg);
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let log_start = checkpoint
            .unwrap_or(first_base)
            .max(first_base)
            .min(log_end);
        let Rebuilt {
            producers,
            epochs,
            delete_horizon,
        } = rebuilt;
        let epochs = EpochCache::recover(dir, epochs, log_start);
        let state = PartitionState {
            segments,
            log_start_offset: log_start,
            log_end_offset: log_end,
            // A standalone log's; the replica layer starts a replicated
            // one from the checkpoint (`start_high_watermark_at`).
            high_watermark: log_end,
            // Never stamp an epoch older than the log already holds.
            leader_epoch: epochs.latest_epoch().unwrap_or(0).max(0),
            producers,
            epochs,
            dirty: false,
        };
        let log = Rc::new(PartitionLog {
            topic: topic.to_string(),
            topic_id,
            partition,
            dir: dir.to_path_buf(),
            config: RefCell::new(config),
            state: RefCell::new(state),
            appender: RefCell::new(None),
            waiters: RefCell::new(Vec::new()),
            end_waiters: RefCell::new(Vec::new()),
            log_end_listener: RefCell::new(None),
            write_lock: futures::lock::Mutex::new(()),
            closed: Cell::new(false),
            metrics,
            cleaner: RefCell::new(super::cleaner::CleanerState {
                earliest_delete_horizon: delete_horizon,
                ..Default::default()
            }),
        });
        log.start_appender();
        Ok(log)
    }
}

/// What the walk over the segments rebuilds besides the segments.
#[derive(Default)]
struct Rebuilt {
    producers: ProducerStateMap,
    epochs: EpochCache,
    /// The earliest delete horizon a cleaned batch carries (the cleaner's).
    delete_horizon: Option<i64>,
}

/// The `.txnindex` files found at start-up.
struct StoredTxnIndexes {
    /// Each file as parsed, by segment base.
    files: HashMap<i64, TxnIndex>,
    /// Every entry of every file, by marker offset.
    by_marker: HashMap<i64, AbortedTxn>,
}

impl StoredTxnIndexes {
    fn read(dir: &Path, bases: &[i64]) -> StoredTxnIndexes {
        let mut files = HashMap::new();
        let mut by_marker = HashMap::new();
        for &base in bases {
            let idx = TxnIndex::read(dir, base);
            for e in &idx.entries {
                by_marker.insert(e.last_offset, *e);
            }
            files.insert(base, idx);
        }
        StoredTxnIndexes { files, by_marker }
    }

    /// The index entry of the abort marker `h` (`walked`: what the walk
    /// computed): the stored one if it names this marker's producer.
    fn entry_for(&self, h: &BatchHeader, walked: Option<AbortedTxn>) -> Option<AbortedTxn> {
        self.by_marker
            .get(&h.base_offset)
            .filter(|e| e.producer_id == h.producer_id)
            .copied()
            .or(walked)
    }
}

/// `<base, 20 digits>.txnindex`
fn parse_txn_index_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".txnindex")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Walks the batches of one segment from position 0, rebuilding its indexes
/// (the transaction index from the abort markers, see `stored`), and into
/// `rebuilt` the producer and transaction state, the leader epoch cache and
/// the earliest delete horizon; with `verify`, also reads each whole batch
/// and checks its CRC. Returns the length of the valid prefix.
fn walk_segment(
    seg: &mut Segment,
    file_len: u64,
    verify: bool,
    index_interval: usize,
    rebuilt: &mut Rebuilt,
    expected_next: Option<i64>,
    stored: &StoredTxnIndexes,
) -> std::io::Result<u64> {
    seg.size = file_len;
    let mut pos = 0u64;
    let mut next = expected_next
        .unwrap_or(seg.base_offset)
        .max(seg.base_offset);
    let mut buf = Vec::new();
    seg.next_offset = next;
    while pos < file_len {
        let Some(h) = segment::read_header(&seg.reader, pos, file_len)? else {
            break;
        };
        let len = h.total_len() as u64;
        if h.batch_length < 49
            || pos + len > file_len
            || h.base_offset < next
            || h.last_offset_delta < 0
        {
            break;
        }
        if verify || h.is_control() {
            buf.resize(len as usize, 0);
            seg.reader.read_exact_at(&mut buf, pos)?;
            if verify && batch::verify_crc(&buf).is_err() {
                break;
            }
        }
        seg.note_batch(pos, &h, index_interval);
        if h.has_delete_horizon() {
            let d = rebuilt.delete_horizon.get_or_insert(h.base_timestamp);
            *d = (*d).min(h.base_timestamp);
        }
        let marker = if h.is_control() {
            EndTxnMarker::of_batch(&h, &Bytes::copy_from_slice(&buf))
        } else {
            None
        };
        let walked = rebuilt.producers.update(&h, marker, now_ms());
        if marker.is_some_and(|m| !m.commit) && h.has_producer_id() {
            seg.txn_index.entries.extend(stored.entry_for(&h, walked));
        }
        rebuilt
            .epochs
            .observe([(h.partition_leader_epoch, h.base_offset)]);
        next = h.last_offset() + 1;
        pos += len;
    }
    seg.size = pos;
    seg.next_offset = next;
    Ok(pos)
}

fn read_checkpoint(path: &Path) -> Option<i64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn write_checkpoint(dir: &Path, log_start: i64) -> std::io::Result<()> {
    segment::write_file_synced(
        &dir.join(LOG_START_CHECKPOINT),
        log_start.to_string().as_bytes(),
    )
}
