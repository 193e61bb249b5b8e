//! Prometheus metrics: counters and histograms kept in atomics (each written
//! by its owner shard, so there is no contention on the data path) and a
//! small HTTP endpoint on its own thread that renders the text exposition
//! format. Names follow `sluice_<area>_<what>_<unit>`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut cumulative = 0;
        for (i, b) in self.bounds.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micro.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
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
}

/// A partition's handle on its counters.
#[derive(Clone, Default)]
pub struct PartitionMetrics(pub Arc<PartitionCounters>);

/// One per-partition series: name, type, help, and how to read it.
type PartitionSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PartitionCounters) -> String,
);
impl PartitionMetrics {
    pub fn add_in(&self, bytes: u64, records: u64) {
        self.0.bytes_in.fetch_add(bytes, Relaxed);
        self.0.records_in.fetch_add(records, Relaxed);
    }
    pub fn add_out(&self, bytes: u64) {
        self.0.bytes_out.fetch_add(bytes, Relaxed);
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
    requests: [AtomicU64; 128],
    request_errors: [AtomicU64; 128],
    request_latency: [Histogram<14>; 128],
    partitions: Mutex<BTreeMap<(String, i32), PartitionMetrics>>,
    /// Client quota series per (quota, user, client id) entity.
    quotas: Mutex<BTreeMap<(&'static str, String, String), QuotaSeries>>,
}

/// One per-entity quota series: name, type, help, and how to read it.
type QuotaSeriesDef = (
    &'static str,
    &'static str,
    &'static str,
    fn(&QuotaSeries) -> String,
);

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
    requests: [const { AtomicU64::new(0) }; 128],
    request_errors: [const { AtomicU64::new(0) }; 128],
    request_latency: [const { Histogram::new(&LATENCY_BUCKETS) }; 128],
    partitions: Mutex::new(BTreeMap::new()),
    quotas: Mutex::new(BTreeMap::new()),
};

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

    fn render_quotas(&self, out: &mut String) {
        let quotas = self
            .quotas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let series: [QuotaSeriesDef; 4] = [
            (
                "sluice_quota_recorded_total",
                "counter",
                "Usage counted against a client quota (bytes, request-thread percent-seconds, partition mutations)",
                |s| s.recorded.to_string(),
            ),
            (
                "sluice_quota_rate",
                "gauge",
                "A quota entity's windowed rate per second (quota.window.num x quota.window.size.seconds)",
                |s| s.rate.to_string(),
            ),
            (
                "sluice_quota_throttle_time_ms_total",
                "counter",
                "Throttle time given to a quota entity's clients",
                |s| s.throttle_ms.to_string(),
            ),
            (
                "sluice_quota_throttled_requests_total",
                "counter",
                "Requests answered with a throttle time",
                |s| s.throttled.to_string(),
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((quota, user, client), s) in &quotas {
                let _ = writeln!(
                    out,
                    "{name}{{quota=\"{quota}\",user=\"{}\",client_id=\"{}\"}} {}",
                    escape(user),
                    escape(client),
                    get(s)
                );
            }
        }
    }

    pub fn observe_request(&self, api_key: i16, took: Duration, failed: bool) {
        let i = (api_key.max(0) as usize).min(127);
        self.requests[i].fetch_add(1, Relaxed);
        if failed {
            self.request_errors[i].fetch_add(1, Relaxed);
        }
        self.request_latency[i].observe(took.as_secs_f64());
    }

    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let parts = self
            .partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let series: [PartitionSeries; 6] = [
            (
                "sluice_partition_bytes_in_total",
                "counter",
                "Bytes appended",
                |c| c.bytes_in.load(Relaxed).to_string(),
            ),
            (
                "sluice_partition_records_in_total",
                "counter",
                "Records appended",
                |c| c.records_in.load(Relaxed).to_string(),
            ),
            (
                "sluice_partition_bytes_out_total",
                "counter",
                "Bytes served to fetches",
                |c| c.bytes_out.load(Relaxed).to_string(),
            ),
            (
                "sluice_partition_log_end_offset",
                "gauge",
                "Log end offset",
                |c| c.log_end_offset.load(Relaxed).to_string(),
            ),
            (
                "sluice_partition_log_start_offset",
                "gauge",
                "Log start offset",
                |c| c.log_start_offset.load(Relaxed).to_string(),
            ),
            (
                "sluice_partition_size_bytes",
                "gauge",
                "Size on disk",
                |c| c.size_bytes.load(Relaxed).to_string(),
            ),
        ];
        for (name, kind, help, get) in series {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((t, p), m) in &parts {
                let _ = writeln!(
                    out,
                    "{name}{{topic=\"{}\",partition=\"{p}\"}} {}",
                    escape(t),
                    get(&m.0)
                );
            }
        }
        // Records out are not counted per record (fetches are zero-copy and
        // never parse records); bytes out are.
        render_per_api(
            &mut out,
            "sluice_requests_total",
            "Requests handled per API",
            &self.requests,
        );
        render_per_api(
            &mut out,
            "sluice_request_errors_total",
            "Requests that failed to decode or were refused",
            &self.request_errors,
        );
        let _ = writeln!(out, "# HELP sluice_request_latency_seconds Request handling latency per API\n# TYPE sluice_request_latency_seconds histogram");
        for (i, h) in self.request_latency.iter().enumerate() {
            if self.requests[i].load(Relaxed) > 0 {
                h.render(
                    &mut out,
                    "sluice_request_latency_seconds",
                    &format!("api=\"{}\"", api_name(i as i16)),
                );
            }
        }
        let _ = writeln!(out, "# HELP sluice_log_fsync_seconds fdatasync latency\n# TYPE sluice_log_fsync_seconds histogram");
        self.fsync_seconds
            .render(&mut out, "sluice_log_fsync_seconds", "");
        let _ = writeln!(out, "# HELP sluice_log_group_commit_requests Produce requests made durable per fdatasync\n# TYPE sluice_log_group_commit_requests histogram");
        self.group_commit_requests
            .render(&mut out, "sluice_log_group_commit_requests", "");
        let gauges: [(&str, &str, i64); 14] = [
            (
                "sluice_net_connections_open",
                "gauge",
                self.connections_open.load(Relaxed),
            ),
            (
                "sluice_net_connections_total",
                "counter",
                self.connections_total.load(Relaxed) as i64,
            ),
            (
                "sluice_net_connections_closed_bad_input_total",
                "counter",
                self.connections_closed_bad_input.load(Relaxed) as i64,
            ),
            (
                "sluice_auth_authentication_failures_total",
                "counter",
                self.authentication_failures.load(Relaxed) as i64,
            ),
            (
                "sluice_auth_authorization_denied_total",
                "counter",
                self.authorization_denied.load(Relaxed) as i64,
            ),
            (
                "sluice_group_count",
                "gauge",
                self.groups_by_shard.iter().map(|g| g.load(Relaxed)).sum(),
            ),
            (
                "sluice_group_rebalances_total",
                "counter",
                self.rebalances_by_shard
                    .iter()
                    .map(|r| r.load(Relaxed) as i64)
                    .sum(),
            ),
            (
                "sluice_fetch_session_count",
                "gauge",
                self.fetch_sessions_by_shard
                    .iter()
                    .map(|s| s.load(Relaxed))
                    .sum(),
            ),
            (
                "sluice_fetch_session_partitions",
                "gauge",
                self.fetch_session_partitions_by_shard
                    .iter()
                    .map(|p| p.load(Relaxed))
                    .sum(),
            ),
            (
                "sluice_fetch_session_evictions_total",
                "counter",
                self.fetch_session_evictions.load(Relaxed) as i64,
            ),
            (
                "sluice_log_cleaner_runs_total",
                "counter",
                self.cleaner_runs.load(Relaxed) as i64,
            ),
            (
                "sluice_log_cleaner_bytes_read_total",
                "counter",
                self.cleaner_bytes_read.load(Relaxed) as i64,
            ),
            (
                "sluice_log_cleaner_bytes_written_total",
                "counter",
                self.cleaner_bytes_written.load(Relaxed) as i64,
            ),
            (
                "sluice_log_cleaner_records_removed_total",
                "counter",
                self.cleaner_records_removed.load(Relaxed) as i64,
            ),
        ];
        for (name, kind, v) in gauges {
            let _ = writeln!(out, "# TYPE {name} {kind}\n{name} {v}");
        }
        self.render_quotas(&mut out);
        out
    }
}

/// One counter family labelled by API, listing only APIs that were used.
fn render_per_api(out: &mut String, name: &str, help: &str, counters: &[AtomicU64]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for (i, c) in counters.iter().enumerate() {
        let v = c.load(Relaxed);
        if v > 0 {
            let _ = writeln!(out, "{name}{{api=\"{}\"}} {v}", api_name(i as i16));
        }
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn api_name(key: i16) -> String {
    match kafka_protocol::messages::ApiKey::try_from(key) {
        Ok(k) => format!("{k:?}"),
        Err(_) => key.to_string(),
    }
}

/// Serves `GET /metrics` on its own thread until the process exits.
pub fn serve(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("sluice-metrics".into()).spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut req = [0u8; 2048];
            let n = s.read(&mut req).unwrap_or(0);
            let head = String::from_utf8_lossy(&req[..n]);
            let (status, body) = if head.starts_with("GET /metrics") || head.starts_with("GET / ") {
                ("200 OK", METRICS.render())
            } else {
                ("404 Not Found", "not found\n".to_string())
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(local)
}
