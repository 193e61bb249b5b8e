//! Prometheus metrics: counters and histograms kept in atomics (each written
//! by its owner shard, so there is no contention on the data path), the
//! figures shards publish once a second (groups, committed offsets, high
//! watermarks), and the exposition: `sluice_<area>_<what>_<unit>` series
//! (render.rs) and the series MSK open monitoring's JMX exporter produces
//! (msk.rs), both encoded by the `prometheus-client` crate and served over
//! HTTP by hyper on the `sluice-metrics` thread (http.rs).

mod http;
pub mod meter;
mod msk;
mod render;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use http::serve;
pub use msk::ReplicaFigures;

const MAX_SHARDS: usize = 256;

/// Latency bucket upper bounds in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Group-commit batch-size buckets (requests per fdatasync).
const COUNT_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

pub struct Histogram<const N: usize> {
    bounds: &'static [f64; N],
    buckets: [AtomicU64; N],
    count: AtomicU64,
    /// Sum in microunits (µs for latencies) to stay integral.
    sum_micro: AtomicU64,
}

impl<const N: usize> Histogram<N> {
    pub const fn new(bounds: &'static [f64; N]) -> Self {
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; N],
            count: AtomicU64::new(0),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Relaxed);
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micro.fetch_add((v * 1e6) as u64, Relaxed);
    }

    /// Per-bucket counts (not cumulative), the overflow past the last
    /// bound, and the sum in the histogram's unit.
    pub fn snapshot(&self) -> meter::Buckets {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count = self.count.load(Relaxed);
        meter::Buckets {
            overflow: count.saturating_sub(counts.iter().sum()),
            counts,
            sum: self.sum_micro.load(Relaxed) as f64 / 1e6,
        }
    }

    pub fn bounds(&self) -> &'static [f64; N] {
        self.bounds
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }
}

/// Who sent a Fetch: Kafka's RequestMetrics name them FetchConsumer and
/// FetchFollower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchFrom {
    Consumer = 0,
    Follower = 1,
}

impl FetchFrom {
    /// The `request` label Kafka gives it.
    pub fn request_name(self) -> &'static str {
        match self {
            FetchFrom::Consumer => "FetchConsumer",
            FetchFrom::Follower => "FetchFollower",
        }
    }
}

#[derive(Default)]
pub struct PartitionCounters {
    pub bytes_in: AtomicU64,
    pub records_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub log_end_offset: AtomicI64,
    pub log_start_offset: AtomicI64,
    pub size_bytes: AtomicU64,
    pub segments_rolled: AtomicU64,
    /// The part of `bytes_in`/`records_in` a follower copied from its
    /// leader (Kafka's ReplicationBytesInPerSec; BytesInPerSec and
    /// MessagesInPerSec leave it out).
    pub replicated_bytes_in: AtomicU64,
    pub replicated_records_in: AtomicU64,
    /// What followers fetched (Kafka's ReplicationBytesOutPerSec); not in
    /// `bytes_out`, which is what consumers fetched (BytesOutPerSec).
    pub replicated_bytes_out: AtomicU64,
    /// Published by the owning shard once a second (consumer lag).
    pub high_watermark: AtomicI64,
}

/// A partition's handle on its counters.
#[derive(Clone, Default)]
pub struct PartitionMetrics(pub Arc<PartitionCounters>);

impl PartitionMetrics {
    pub fn add_in(&self, bytes: u64, records: u64) {
        self.0.bytes_in.fetch_add(bytes, Relaxed);
        self.0.records_in.fetch_add(records, Relaxed);
    }
    /// A follower appended what its leader sent.
    pub fn add_replicated_in(&self, bytes: u64, records: u64) {
        self.add_in(bytes, records);
        self.0.replicated_bytes_in.fetch_add(bytes, Relaxed);
        self.0.replicated_records_in.fetch_add(records, Relaxed);
    }
    pub fn set_high_watermark(&self, hw: i64) {
        self.0.high_watermark.store(hw, Relaxed);
    }
    pub fn add_out(&self, bytes: u64) {
        self.0.bytes_out.fetch_add(bytes, Relaxed);
    }
    /// A follower fetched this much.
    pub fn add_replicated_out(&self, bytes: u64) {
        self.0.replicated_bytes_out.fetch_add(bytes, Relaxed);
    }
    pub fn observe_fsync(&self, took: Duration, requests: usize) {
        METRICS.fsync_seconds.observe(took.as_secs_f64());
        METRICS.group_commit_requests.observe(requests as f64);
    }
    pub fn set_offsets(&self, start: i64, end: i64, size: u64) {
        self.0.log_start_offset.store(start, Relaxed);
        self.0.log_end_offset.store(end, Relaxed);
        self.0.size_bytes.store(size, Relaxed);
    }
    pub fn segment_rolled(&self) {
        self.0.segments_rolled.fetch_add(1, Relaxed);
    }
}

pub struct Metrics {
    pub fsync_seconds: Histogram<14>,
    pub group_commit_requests: Histogram<9>,
    pub connections_open: AtomicI64,
    pub connections_total: AtomicU64,
    pub connections_closed_bad_input: AtomicU64,
    pub authentication_failures: AtomicU64,
    pub authorization_denied: AtomicU64,
    /// The log cleaner's passes and their I/O, all shards together.
    pub cleaner_runs: AtomicU64,
    pub cleaner_bytes_read: AtomicU64,
    pub cleaner_bytes_written: AtomicU64,
    pub cleaner_records_removed: AtomicU64,
    /// Per shard: each shard's coordinator publishes its own figures.
    groups_by_shard: [AtomicI64; MAX_SHARDS],
    rebalances_by_shard: [AtomicU64; MAX_SHARDS],
    /// Per shard: the fetch sessions (KIP-227) each shard's cache holds and
    /// the partitions in them (Kafka's NumIncrementalFetchSessions and
    /// NumIncrementalFetchPartitionsCached).
    fetch_sessions_by_shard: [AtomicI64; MAX_SHARDS],
    fetch_session_partitions_by_shard: [AtomicI64; MAX_SHARDS],
    /// Fetch sessions evicted to make room for another (Kafka's
    /// IncrementalFetchSessionEvictionsPerSec, as a counter).
    pub fetch_session_evictions: AtomicU64,
    /// ISR changes that took effect on partitions this broker leads
    /// (Kafka's IsrShrinksPerSec / IsrExpandsPerSec).
    pub isr_shrinks: AtomicU64,
    pub isr_expands: AtomicU64,
    requests: [AtomicU64; 128],
    request_errors: [AtomicU64; 128],
    request_latency: [Histogram<14>; 128],
    /// Fetches again, by who sent them: [consumers, followers] (Kafka's
    /// RequestMetrics for FetchConsumer and FetchFollower, which
    /// dashboards chart rather than Fetch).
    fetch_requests: [AtomicU64; 2],
    fetch_errors: [AtomicU64; 2],
    fetch_latency: [Histogram<14>; 2],
    partitions: Mutex<BTreeMap<(String, i32), PartitionMetrics>>,
    /// Client quota series per (quota, user, client id) entity.
    quotas: Mutex<BTreeMap<(&'static str, String, String), QuotaSeries>>,
    /// Per shard: the Linux thread id of its thread (its CPU time gives
    /// NetworkProcessorAvgIdlePercent), 0 until the shard starts.
    shard_tids: [AtomicI64; MAX_SHARDS],
    /// Per shard: the committed offsets of the groups its coordinator holds
    /// in a state MSK reports lag for (Stable or Empty).
    committed_by_shard: Mutex<BTreeMap<usize, Vec<CommittedOffset>>>,
    /// What the broker's metadata says about its replicas; set by
    /// `runtime` once the broker exists.
    replica_figures: Mutex<Option<ReplicaFiguresFn>>,
    /// Meters, histogram windows and lag rates the metrics thread ticks.
    msk: Mutex<msk::MskState>,
}

/// Reads this broker's replica figures from its metadata.
pub type ReplicaFiguresFn = Box<dyn Fn() -> ReplicaFigures + Send>;

/// One committed offset of a group, as the coordinator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// One quota entity's figures (Kafka's per-entity quota metrics).
#[derive(Default, Clone)]
struct QuotaSeries {
    /// Bytes, request-thread percent-seconds or partition mutations.
    recorded: f64,
    /// The windowed rate after the latest request.
    rate: f64,
    throttle_ms: u64,
    throttled: u64,
}

pub static METRICS: Metrics = Metrics {
    fsync_seconds: Histogram::new(&LATENCY_BUCKETS),
    group_commit_requests: Histogram::new(&COUNT_BUCKETS),
    connections_open: AtomicI64::new(0),
    connections_total: AtomicU64::new(0),
    connections_closed_bad_input: AtomicU64::new(0),
    authentication_failures: AtomicU64::new(0),
    authorization_denied: AtomicU64::new(0),
    cleaner_runs: AtomicU64::new(0),
    cleaner_bytes_read: AtomicU64::new(0),
    cleaner_bytes_written: AtomicU64::new(0),
    cleaner_records_removed: AtomicU64::new(0),
    groups_by_shard: [const { AtomicI64::new(0) }; MAX_SHARDS],
    rebalances_by_shard: [const { AtomicU64::new(0) }; MAX_SHARDS],
    fetch_sessions_by_shard: [const { AtomicI64::new(0) }; MAX_SHARDS],
    fetch_session_partitions_by_shard: [const { AtomicI64::new(0) }; MAX_SHARDS],
    fetch_session_evictions: AtomicU64::new(0),
    isr_shrinks: AtomicU64::new(0),
    isr_expands: AtomicU64::new(0),
    requests: [const { AtomicU64::new(0) }; 128],
    request_errors: [const { AtomicU64::new(0) }; 128],
    request_latency: [const { Histogram::new(&LATENCY_BUCKETS) }; 128],
    fetch_requests: [const { AtomicU64::new(0) }; 2],
    fetch_errors: [const { AtomicU64::new(0) }; 2],
    fetch_latency: [const { Histogram::new(&LATENCY_BUCKETS) }; 2],
    partitions: Mutex::new(BTreeMap::new()),
    quotas: Mutex::new(BTreeMap::new()),
    shard_tids: [const { AtomicI64::new(0) }; MAX_SHARDS],
    committed_by_shard: Mutex::new(BTreeMap::new()),
    replica_figures: Mutex::new(None),
    msk: Mutex::new(msk::MskState::new()),
};

/// A poisoned lock still holds figures worth reporting.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    pub fn partition(&self, topic: &str, partition: i32) -> PartitionMetrics {
        let mut m = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        m.entry((topic.to_string(), partition)).or_default().clone()
    }

    pub fn forget_topic(&self, topic: &str) {
        let mut m = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|(t, _), _| t != topic);
    }

    pub fn set_group_figures(&self, shard: usize, groups: usize, rebalances: u64) {
        if let (Some(g), Some(r)) = (
            self.groups_by_shard.get(shard),
            self.rebalances_by_shard.get(shard),
        ) {
            g.store(groups as i64, Relaxed);
            r.store(rebalances, Relaxed);
        }
    }

    pub fn set_fetch_session_figures(&self, shard: usize, sessions: usize, partitions: usize) {
        if let (Some(s), Some(p)) = (
            self.fetch_sessions_by_shard.get(shard),
            self.fetch_session_partitions_by_shard.get(shard),
        ) {
            s.store(sessions as i64, Relaxed);
            p.store(partitions as i64, Relaxed);
        }
    }

    /// A quota sensor recorded `value` for an entity: its rate now and the
    /// throttle time it earned.
    pub fn observe_quota(
        &self,
        quota: &'static str,
        user: &str,
        client_id: &str,
        value: f64,
        rate: f64,
        throttle_ms: u64,
    ) {
        let mut m = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        let s = m
            .entry((quota, user.to_string(), client_id.to_string()))
            .or_default();
        s.recorded += value;
        s.rate = rate;
        s.throttle_ms += throttle_ms;
        s.throttled += u64::from(throttle_ms > 0);
    }

    /// Drops an expired quota entity's series.
    pub fn forget_quota(&self, quota: &'static str, user: &str, client_id: &str) {
        let mut m = self.quotas.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&(quota, user.to_string(), client_id.to_string()));
    }

    /// A request answered after `took` (`failed`: it could not be
    /// decoded). A Fetch counts under Fetch and under who sent it.
    pub fn observe_request(
        &self,
        api_key: i16,
        fetch: Option<FetchFrom>,
        took: Duration,
        failed: bool,
    ) {
        let i = (api_key.max(0) as usize).min(127);
        self.requests[i].fetch_add(1, Relaxed);
        if failed {
            self.request_errors[i].fetch_add(1, Relaxed);
        }
        self.request_latency[i].observe(took.as_secs_f64());
        if let Some(from) = fetch {
            let j = from as usize;
            self.fetch_requests[j].fetch_add(1, Relaxed);
            if failed {
                self.fetch_errors[j].fetch_add(1, Relaxed);
            }
            self.fetch_latency[j].observe(took.as_secs_f64());
        }
    }

    /// A shard's thread started (called on that thread).
    pub fn register_shard_thread(&self, shard: usize) {
        if let (Some(t), Some(tid)) = (self.shard_tids.get(shard), msk::current_tid()) {
            t.store(tid, Relaxed);
        }
    }

    /// A shard's coordinator publishes its groups' committed offsets.
    pub fn set_committed_offsets(&self, shard: usize, offsets: Vec<CommittedOffset>) {
        lock(&self.committed_by_shard).insert(shard, offsets);
    }

    /// An ISR change took effect on a partition this broker leads.
    pub fn isr_changed(&self, before: &[i32], after: &[i32]) {
        if before.iter().any(|r| !after.contains(r)) {
            self.isr_shrinks.fetch_add(1, Relaxed);
        }
        if after.iter().any(|r| !before.contains(r)) {
            self.isr_expands.fetch_add(1, Relaxed);
        }
    }

    pub fn set_replica_figures(&self, f: ReplicaFiguresFn) {
        *lock(&self.replica_figures) = Some(f);
    }

    /// Advances the meters and windows; the metrics thread calls it every
    /// [`meter::TICK`].
    pub fn tick(&self) {
        let now = msk::Inputs::read(self);
        lock(&self.msk).tick(&now);
    }

    /// The whole exposition in the OpenMetrics text format (always of
    /// [`METRICS`], which the collector reads).
    pub fn render(&self) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(Collector));
        let mut out = String::with_capacity(64 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

/// One `prometheus-client` collector for every family, read at scrape time.
#[derive(Debug)]
struct Collector;

impl prometheus_client::collector::Collector for Collector {
    fn encode(
        &self,
        mut enc: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        render::encode_sluice(&METRICS, &mut enc)?;
        msk::encode(&METRICS, &mut enc)
    }
}

fn api_name(key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(_) => key.to_string(),
    }
}
