//! The partition log: an ordered list of segments in Kafka's on-disk layout,
//! owned by exactly one shard. This module holds the partition's state and
//! its effective configuration; the submodules own appends with group commit
//! (`append`, staging each round in `staging`), reads for Fetch and ListOffsets (`read`), start-up recovery
//! (`recovery`), retention and DeleteRecords (`retention`), removing a
//! partition directory crash-safely (`deletion`), idempotent and
//! transactional producer state with the last stable offset
//! (`producer_state`), transaction markers (`txn_marker`) and each
//! segment's index of aborted transactions (`txn_index`), the leader epoch cache and its
//! checkpoint (`epoch_cache`), a follower's appends of fetched batches and
//! truncation (`follower`), compaction of `cleanup.policy=compact` logs
//! (`cleaner`), the segment/index files, and two small files of
//! Kafka's: `partition.metadata` binding a directory to its topic id
//! (`partition_metadata`) and the data directory's
//! `replication-offset-checkpoint` of high watermarks (`hw_checkpoint`).
//!
//! The log end offset is the durable log end: an append round moves it only
//! after its write (and, under `flush.policy = always`, its fdatasync). The
//! high watermark is kept apart from it and belongs to the replica layer
//! (`crate::replica`), which computes it from the ISR's log ends and sets it
//! with [`PartitionLog::set_high_watermark`]; a log without a log-end
//! listener (tests, tools) keeps the high watermark at its log end.

pub mod append;
pub mod cleaner;
pub mod deletion;
pub mod epoch_cache;
pub mod follower;
pub mod hw_checkpoint;
pub mod index;
pub mod partition_metadata;
pub mod producer_state;
pub mod read;
pub mod recovery;
pub mod replay;
pub mod retention;
pub mod segment;
pub mod staging;
pub mod txn_index;
pub mod txn_marker;
#[cfg(test)]
mod txn_tests;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::channel::{mpsc, oneshot};
use sluice_protocol::ErrorCode;

use crate::config::{names, BrokerConfig, FlushPolicy};
use producer_state::ProducerStateMap;
use segment::Segment;

/// A topic's effective log settings (its overrides on top of broker defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub retention_ms: i64,
    pub retention_bytes: i64,
    pub cleanup_delete: bool,
    /// `cleanup.policy` holds `compact`: the log cleaner keeps the latest
    /// record per key (`cleaner`).
    pub cleanup_compact: bool,
    /// `min.cleanable.dirty.ratio`
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`
    pub max_compaction_lag_ms: i64,
    /// `delete.retention.ms`: how long tombstones outlive their first clean.
    pub delete_retention_ms: i64,
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub index_interval_bytes: usize,
    pub flush_policy: FlushPolicy,
    /// `min.insync.replicas`: the ISR size acks=all produce needs.
    pub min_insync_replicas: i32,
}

impl LogConfig {
    pub fn resolve(broker: &BrokerConfig, overrides: &BTreeMap<String, String>) -> LogConfig {
        let get = |name: &str| -> String {
            overrides
                .get(name)
                .cloned()
                .or_else(|| broker.topic_default(name))
                .unwrap_or_default()
        };
        let num = |name: &str, dflt: i64| get(name).parse::<i64>().unwrap_or(dflt);
        LogConfig {
            segment_bytes: num(names::SEGMENT_BYTES, broker.log_segment_bytes).max(14) as u64,
            segment_ms: num(names::SEGMENT_MS, broker.log_roll_ms),
            retention_ms: num(names::RETENTION_MS, broker.log_retention_ms),
            retention_bytes: num(names::RETENTION_BYTES, broker.log_retention_bytes),
            cleanup_delete: get(names::CLEANUP_POLICY)
                .split(',')
                .any(|p| p.trim() == "delete"),
            cleanup_compact: get(names::CLEANUP_POLICY)
                .split(',')
                .any(|p| p.trim() == "compact"),
            min_cleanable_dirty_ratio: get(names::MIN_CLEANABLE_DIRTY_RATIO)
                .parse::<f64>()
                .unwrap_or(broker.log_cleaner_min_cleanable_ratio),
            min_compaction_lag_ms: num(
                names::MIN_COMPACTION_LAG_MS,
                broker.log_cleaner_min_compaction_lag_ms,
            )
            .max(0),
            max_compaction_lag_ms: num(
                names::MAX_COMPACTION_LAG_MS,
                broker.log_cleaner_max_compaction_lag_ms,
            )
            .max(1),
            delete_retention_ms: num(
                names::DELETE_RETENTION_MS,
                broker.log_cleaner_delete_retention_ms,
            )
            .max(0),
            max_message_bytes: num(names::MAX_MESSAGE_BYTES, broker.message_max_bytes as i64).max(0)
                as usize,
            log_append_time: get(names::MESSAGE_TIMESTAMP_TYPE) == "LogAppendTime",
            index_interval_bytes: num(
                names::INDEX_INTERVAL_BYTES,
                broker.log_index_interval_bytes as i64,
            )
            .max(1) as usize,
            flush_policy: broker.flush_policy,
            min_insync_replicas: num(
                names::MIN_INSYNC_REPLICAS,
                i64::from(broker.min_insync_replicas),
            )
            .clamp(1, i64::from(i32::MAX)) as i32,
        }
    }
}

impl LogConfig {
    /// How old the active segment may get before a roll: `segment.ms`, or
    /// for a compacted log `max.compaction.lag.ms` if sooner, since the
    /// cleaner never touches the active segment (Kafka's rule).
    pub fn roll_ms(&self) -> i64 {
        if self.cleanup_compact && self.segment_ms >= 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    #[error("log I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("offset {offset} is out of range [{start}, {end}]")]
    OffsetOutOfRange { offset: i64, start: i64, end: i64 },
    #[error("partition is closed")]
    Closed,
}

impl LogError {
    pub fn kafka_code(&self) -> ErrorCode {
        match self {
            LogError::Io(_) => ErrorCode::KafkaStorageError,
            LogError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
            LogError::Closed => ErrorCode::UnknownTopicOrPartition,
        }
    }
}

/// Mutable state of the partition, touched only on its owner shard and never
/// borrowed across an await.
pub struct PartitionState {
    /// Segments by base offset; the last one is active.
    pub segments: BTreeMap<i64, Segment>,
    pub log_start_offset: i64,
    /// Next offset to assign; everything below it is written (durable under
    /// `flush.policy = always`).
    pub log_end_offset: i64,
    /// Offsets below this are visible to consumers. Set by the replica layer
    /// (`set_high_watermark`), never past the log end.
    pub high_watermark: i64,
    pub leader_epoch: i32,
    pub producers: ProducerStateMap,
    /// The first offset of each leader epoch in the log.
    pub epochs: epoch_cache::EpochCache,
    /// Bytes written but not yet synced (interval flush policy).
    pub dirty: bool,
}

impl PartitionState {
    pub fn active(&self) -> Option<&Segment> {
        self.segments.values().next_back()
    }

    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
}

/// What the log calls after its log end moved (see `set_log_end_listener`).
pub type LogEndListener = std::rc::Rc<dyn Fn()>;

pub struct PartitionLog {
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub dir: PathBuf,
    pub config: RefCell<LogConfig>,
    pub state: RefCell<PartitionState>,
    appender: RefCell<Option<mpsc::UnboundedSender<append::AppendRequest>>>,
    /// Fetches (and acks=all produces) parked until the high watermark moves.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Follower fetches parked until the log end moves.
    end_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Called after every append round that moved the log end; the replica
    /// layer recomputes the high watermark there. `None`: the high watermark
    /// follows the log end (a log with no replica layer above it).
    log_end_listener: RefCell<Option<LogEndListener>>,
    /// Held by whatever writes or cuts the segment files (an append round,
    /// a follower's append, a truncation), so they never interleave.
    pub(crate) write_lock: futures::lock::Mutex<()>,
    pub closed: Cell<bool>,
    pub metrics: crate::metrics::PartitionMetrics,
    /// The log cleaner's state of this log (compacted topics).
    pub cleaner: RefCell<cleaner::CleanerState>,
}

impl PartitionLog {
    pub fn dir_name(topic: &str, partition: i32) -> String {
        format!("{topic}-{partition}")
    }

    pub fn high_watermark(&self) -> i64 {
        self.state.borrow().high_watermark
    }

    pub fn log_start_offset(&self) -> i64 {
        self.state.borrow().log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.state.borrow().log_end_offset
    }

    /// Kafka's last stable offset: the high watermark, or before it the
    /// first offset of the oldest transaction not yet ended (or ended by a
    /// marker the high watermark has not passed). read_committed reads stop
    /// here.
    pub fn last_stable_offset(&self) -> i64 {
        let st = self.state.borrow();
        st.producers.last_stable_offset(st.high_watermark)
    }

    fn wake_waiters(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }

    fn wake_end_waiters(&self) {
        for w in self.end_waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }

    /// Wakes everything parked on this log (high watermark and log end
    /// waiters), so they look again: the replica layer calls it when the
    /// partition's role or ISR changes.
    pub fn wake_parked(&self) {
        self.wake_waiters();
        self.wake_end_waiters();
    }

    /// Registers what to call after the log end moves (replaces any earlier
    /// listener). From then on only `set_high_watermark` moves the high
    /// watermark.
    pub fn set_log_end_listener(&self, listener: LogEndListener) {
        *self.log_end_listener.borrow_mut() = Some(listener);
    }

    /// Sets where the high watermark starts, before anything reads the
    /// log: a replicated log opens with the checkpointed one rather than
    /// its log end (records past it may never have been committed). Kept
    /// within [log start, log end]; from here it only moves forward.
    pub fn start_high_watermark_at(&self, hw: i64) {
        let mut st = self.state.borrow_mut();
        st.high_watermark = hw.min(st.log_end_offset).max(st.log_start_offset);
        let hw = st.high_watermark;
        st.producers.on_high_watermark(hw);
    }

    /// Moves the high watermark forward to `hw` (capped at the log end; it
    /// never goes backwards here) and wakes parked fetches if it moved.
    pub fn set_high_watermark(&self, hw: i64) {
        let moved = {
            let mut st = self.state.borrow_mut();
            let hw = hw.min(st.log_end_offset);
            let moved = hw > st.high_watermark;
            if moved {
                st.high_watermark = hw;
            }
            // Ended transactions the high watermark passed are stable now
            // (the last stable offset moves with the high watermark, so the
            // fetches woken below see it).
            if !st.producers.unreplicated.is_empty() {
                let hw = st.high_watermark;
                st.producers.on_high_watermark(hw);
            }
            moved
        };
        if moved {
            self.wake_waiters();
        }
    }

    /// After an append round moved the log end: wake follower fetches, then
    /// let the replica layer (or, without one, the log end) move the high
    /// watermark.
    fn log_end_moved(&self) {
        self.wake_end_waiters();
        let listener = self.log_end_listener.borrow().clone();
        match listener {
            Some(f) => f(),
            None => self.set_high_watermark(self.log_end_offset()),
        }
    }

    /// Stops the appender and wakes parked fetches; in-flight appends finish.
    pub fn close(&self) {
        self.closed.set(true);
        self.appender.borrow_mut().take();
        self.log_end_listener.borrow_mut().take();
        self.wake_parked();
    }
}

/// Opens partition `t-0` of topic `t` under `dir`: the log the unit tests
/// of the submodules (follower, cleaner) work on.
#[cfg(test)]
pub(crate) async fn open_test_log(
    dir: &std::path::Path,
    cfg: LogConfig,
) -> std::rc::Rc<PartitionLog> {
    PartitionLog::open(
        &dir.join("t-0"),
        "t",
        uuid::Uuid::nil(),
        0,
        cfg,
        crate::metrics::PartitionMetrics::default(),
    )
    .await
    .expect("open")
}
