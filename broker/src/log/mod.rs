//! The partition log: an ordered list of segments in Kafka's on-disk layout,
//! owned by exactly one shard. This module holds the partition's state and
//! its effective configuration; the submodules own appends with group commit
//! (`append`, staging each round in `staging`), reads for Fetch and ListOffsets (`read`), start-up recovery
//! (`recovery`), retention and DeleteRecords (`retention`), idempotent
//! producer state (`producer_state`), the leader epoch cache and its
//! checkpoint (`epoch_cache`), a follower's appends of fetched batches and
//! truncation (`follower`) and the segment/index files.
//!
//! The high watermark is kept apart from the log end offset: on a single node
//! it advances once a batch is durable (after fdatasync under
//! `flush.policy = always`), and replication will later advance it from the
//! followers' positions instead.

pub mod append;
pub mod epoch_cache;
pub mod follower;
pub mod index;
pub mod producer_state;
pub mod read;
pub mod recovery;
pub mod retention;
pub mod segment;
pub mod staging;

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
    pub max_message_bytes: usize,
    pub log_append_time: bool,
    pub index_interval_bytes: usize,
    pub flush_policy: FlushPolicy,
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
            max_message_bytes: num(names::MAX_MESSAGE_BYTES, broker.message_max_bytes as i64).max(0)
                as usize,
            log_append_time: get(names::MESSAGE_TIMESTAMP_TYPE) == "LogAppendTime",
            index_interval_bytes: num(
                names::INDEX_INTERVAL_BYTES,
                broker.log_index_interval_bytes as i64,
            )
            .max(1) as usize,
            flush_policy: broker.flush_policy,
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
    /// Next offset to assign.
    pub log_end_offset: i64,
    /// Offsets below this are durable and visible to consumers.
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

pub struct PartitionLog {
    pub topic: String,
    pub topic_id: uuid::Uuid,
    pub partition: i32,
    pub dir: PathBuf,
    pub config: RefCell<LogConfig>,
    pub state: RefCell<PartitionState>,
    appender: RefCell<Option<mpsc::UnboundedSender<append::AppendRequest>>>,
    /// Fetches parked until the high watermark moves.
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Held by whatever writes or cuts the segment files (an append round,
    /// a follower's append, a truncation), so they never interleave.
    write_lock: futures::lock::Mutex<()>,
    pub closed: Cell<bool>,
    pub metrics: crate::metrics::PartitionMetrics,
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

    fn wake_waiters(&self) {
        for w in self.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }

    /// Stops the appender and wakes parked fetches; in-flight appends finish.
    pub fn close(&self) {
        self.closed.set(true);
        self.appender.borrow_mut().take();
        self.wake_waiters();
    }
}
