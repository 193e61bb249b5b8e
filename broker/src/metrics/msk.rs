//! The series MSK open monitoring serves: Apache Kafka's Yammer metrics as
//! the JMX exporter on an MSK broker names them, `kafka_<domain>_<type>_<attribute>`
//! with the MBean's `name` and other key properties as labels (for example
//! `kafka_server_BrokerTopicMetrics_OneMinuteRate{name="BytesInPerSec",topic="t"}`),
//! plus MSK's consumer-lag metrics
//! (`kafka_consumer_group_ConsumerLagMetrics_Value{name="SumOffsetLag",groupId,topic}`).
//! Meters carry Count, MeanRate and the 1/5/15-minute EWMAs; timers and
//! histograms Count, Mean and the percentiles; gauges Value. `MskState`
//! holds what needs history (meters, histogram windows, consumption rates,
//! shard CPU time) and is ticked every [`TICK`] by the metrics thread.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;

use super::meter::{Buckets, Ewma, HistogramWindow, Meter};
use super::render::{family, Samples};
use super::{api_name, lock, Metrics};

/// Labels of one series, `name` first.
type Labels = Vec<(&'static str, String)>;

/// This broker's replicas as its metadata image shows them (Kafka's
/// ReplicaManager and KafkaController gauges).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplicaFigures {
    /// Partitions with a replica on this broker.
    pub partitions: u64,
    /// Partitions this broker leads.
    pub leaders: u64,
    /// Partitions this broker leads whose ISR is smaller than their replicas.
    pub under_replicated: u64,
    /// 1 on the active controller (a single node is its own), else 0.
    pub active_controller: u64,
    /// Partitions without a leader; reported by the active controller only,
    /// as Kafka does (others report 0).
    pub offline: u64,
}

/// One meter's input: its MBean (`kafka_<domain>_<type>`), labels and the
/// absolute count now.
struct MeterInput {
    mbean: &'static str,
    labels: Labels,
    count: u64,
}

/// One histogram's input, in milliseconds.
struct HistogramInput {
    mbean: &'static str,
    labels: Labels,
    buckets: Buckets,
    bounds: Vec<f64>,
}

/// Everything read from the atomics for one tick or one scrape.
pub(super) struct Inputs {
    meters: Vec<MeterInput>,
    histograms: Vec<HistogramInput>,
    /// Per shard: (thread id, CPU time in clock ticks).
    shard_cpu: Vec<(i64, u64)>,
    /// (group, topic, partition) -> (committed offset, high watermark).
    lag: BTreeMap<(String, String, i32), (i64, i64)>,
}

impl Inputs {
    pub(super) fn read(m: &Metrics) -> Inputs {
        let parts = lock(&m.partitions).clone();
        let mut meters = Vec::new();
        let mut per_topic: BTreeMap<&str, [u64; 5]> = BTreeMap::new();
        for ((t, _), pm) in &parts {
            let c = &pm.0;
            let e = per_topic.entry(t.as_str()).or_default();
            let repl_bytes = c.replicated_bytes_in.load(Relaxed);
            e[0] += c.bytes_in.load(Relaxed).saturating_sub(repl_bytes);
            e[1] += c.bytes_out.load(Relaxed);
            e[2] += c
                .records_in
                .load(Relaxed)
                .saturating_sub(c.replicated_records_in.load(Relaxed));
            e[3] += repl_bytes;
            e[4] += c.replicated_bytes_out.load(Relaxed);
        }
        let mut total = [0u64; 5];
        for (t, v) in &per_topic {
            for (name, i) in [
                ("BytesInPerSec", 0),
                ("BytesOutPerSec", 1),
                ("MessagesInPerSec", 2),
            ] {
                meters.push(MeterInput {
                    mbean: "kafka_server_BrokerTopicMetrics",
                    labels: vec![("name", name.into()), ("topic", t.to_string())],
                    count: v[i],
                });
            }
            for (sum, x) in total.iter_mut().zip(v) {
                *sum += x;
            }
        }
        for (name, i) in [
            ("BytesInPerSec", 0),
            ("BytesOutPerSec", 1),
            ("MessagesInPerSec", 2),
            ("ReplicationBytesInPerSec", 3),
            ("ReplicationBytesOutPerSec", 4),
        ] {
            meters.push(MeterInput {
                mbean: "kafka_server_BrokerTopicMetrics",
                labels: vec![("name", name.into())],
                count: total[i],
            });
        }
        let mut histograms = Vec::new();
        // RequestsPerSec, ErrorsPerSec and TotalTimeMs of one `request` label.
        let mut request_series = |request: String, n: u64, errors: u64, latency| {
            for (metric, count) in [("RequestsPerSec", n), ("ErrorsPerSec", errors)] {
                meters.push(MeterInput {
                    mbean: "kafka_network_RequestMetrics",
                    labels: vec![("name", metric.into()), ("request", request.clone())],
                    count,
                });
            }
            histograms.push(millis(
                "kafka_network_RequestMetrics",
                vec![("name", "TotalTimeMs".into()), ("request", request)],
                latency,
            ));
        };
        for (i, c) in m.requests.iter().enumerate() {
            let n = c.load(Relaxed);
            if n > 0 {
                let errors = m.request_errors[i].load(Relaxed);
                request_series(api_name(i as i16), n, errors, &m.request_latency[i]);
            }
        }
        // A Fetch again, under who sent it.
        for from in [super::FetchFrom::Consumer, super::FetchFrom::Follower] {
            let j = from as usize;
            let n = m.fetch_requests[j].load(Relaxed);
            if n > 0 {
                let errors = m.fetch_errors[j].load(Relaxed);
                request_series(from.request_name().into(), n, errors, &m.fetch_latency[j]);
            }
        }
        for (name, c) in [
            ("IsrShrinksPerSec", &m.isr_shrinks),
            ("IsrExpandsPerSec", &m.isr_expands),
        ] {
            meters.push(MeterInput {
                mbean: "kafka_server_ReplicaManager",
                labels: vec![("name", name.into())],
                count: c.load(Relaxed),
            });
        }
        // LogFlushRateAndTimeMs is a timer: a meter of flushes and a
        // histogram of their time.
        let flush = millis(
            "kafka_log_LogFlushStats",
            vec![("name", "LogFlushRateAndTimeMs".into())],
            &m.fsync_seconds,
        );
        meters.push(MeterInput {
            mbean: "kafka_log_LogFlushStats",
            labels: flush.labels.clone(),
            count: m.fsync_seconds.count(),
        });
        histograms.push(flush);

        let shard_cpu = m
            .shard_tids
            .iter()
            .map(|t| t.load(Relaxed))
            .take_while(|t| *t > 0)
            .map(|tid| (tid, thread_cpu_ticks(tid).unwrap_or(0)))
            .collect();

        let mut lag = BTreeMap::new();
        for offsets in lock(&m.committed_by_shard).values() {
            for o in offsets {
                // Only partitions this broker holds a replica of have a high
                // watermark here.
                if let Some(pm) = parts.get(&(o.topic.clone(), o.partition)) {
                    let hw = pm.0.high_watermark.load(Relaxed);
                    lag.insert(
                        (o.group.clone(), o.topic.clone(), o.partition),
                        (o.offset, hw),
                    );
                }
            }
        }
        Inputs {
            meters,
            histograms,
            shard_cpu,
            lag,
        }
    }
}

/// A seconds histogram as milliseconds (Kafka's *TimeMs histograms).
fn millis<const N: usize>(
    mbean: &'static str,
    labels: Labels,
    h: &super::Histogram<N>,
) -> HistogramInput {
    let mut buckets = h.snapshot();
    buckets.sum *= 1000.0;
    HistogramInput {
        mbean,
        labels,
        buckets,
        bounds: h.bounds().iter().map(|b| b * 1000.0).collect(),
    }
}

/// A thread's user + system CPU time in clock ticks, from
/// /proc/self/task/<tid>/stat (fields 14 and 15).
fn thread_cpu_ticks(tid: i64) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Per (group, topic, partition): the committed offset at the last tick and
/// the moving average of how fast it advances (records per second).
#[derive(Debug, Clone)]
struct Consumption {
    last_offset: i64,
    rate: Ewma,
}

/// What the JMX-style series need from the past.
#[derive(Debug)]
pub(super) struct MskState {
    meters: BTreeMap<(&'static str, Labels), Meter>,
    windows: BTreeMap<(&'static str, Labels), HistogramWindow>,
    consumption: BTreeMap<(String, String, i32), Consumption>,
    /// Per shard thread: CPU ticks at the last tick.
    cpu: BTreeMap<i64, u64>,
    last_tick: Option<Instant>,
    /// Shard idle fraction over the last tick, averaged over shards.
    idle: Option<f64>,
}

impl MskState {
    pub(super) const fn new() -> MskState {
        MskState {
            meters: BTreeMap::new(),
            windows: BTreeMap::new(),
            consumption: BTreeMap::new(),
            cpu: BTreeMap::new(),
            last_tick: None,
            idle: None,
        }
    }

    pub(super) fn tick(&mut self, now: &Inputs) {
        self.tick_at(now, Instant::now(), clock_ticks_per_second());
    }

    fn tick_at(&mut self, now: &Inputs, at: Instant, hz: f64) {
        let mut seen = std::collections::BTreeSet::new();
        for m in &now.meters {
            let key = (m.mbean, m.labels.clone());
            match self.meters.get_mut(&key) {
                Some(meter) => meter.tick(m.count),
                // A meter seen for the first time starts from zero: it was
                // created after the previous tick.
                None => {
                    let mut meter = Meter::new(0);
                    meter.tick(m.count);
                    self.meters.insert(key.clone(), meter);
                }
            }
            seen.insert(key);
        }
        self.meters.retain(|k, _| seen.contains(k));
        let mut seen = std::collections::BTreeSet::new();
        for h in &now.histograms {
            let key = (h.mbean, h.labels.clone());
            self.windows
                .entry(key.clone())
                .or_default()
                .tick(h.buckets.clone());
            seen.insert(key);
        }
        self.windows.retain(|k, _| seen.contains(k));

        for (key, (offset, _)) in &now.lag {
            match self.consumption.get_mut(key) {
                Some(c) => {
                    let advanced = (*offset - c.last_offset).max(0) as u64;
                    c.last_offset = *offset;
                    c.rate.tick(advanced);
                }
                // No interval observed yet: the first tick after this one
                // sets the rate.
                None => {
                    self.consumption.insert(
                        key.clone(),
                        Consumption {
                            last_offset: *offset,
                            rate: Ewma::minutes(1.0),
                        },
                    );
                }
            }
        }
        self.consumption.retain(|k, _| now.lag.contains_key(k));

        if let Some(last) = self.last_tick {
            let wall = at.duration_since(last).as_secs_f64();
            let mut idle = Vec::new();
            for (tid, ticks) in &now.shard_cpu {
                if let Some(before) = self.cpu.get(tid) {
                    let busy = ticks.saturating_sub(*before) as f64 / hz;
                    if wall > 0.0 {
                        idle.push((1.0 - busy / wall).clamp(0.0, 1.0));
                    }
                }
            }
            if !idle.is_empty() {
                self.idle = Some(idle.iter().sum::<f64>() / idle.len() as f64);
            }
        }
        self.cpu = now.shard_cpu.iter().copied().collect();
        self.last_tick = Some(at);
    }
}

/// /proc reports CPU times in USER_HZ, which Linux fixes at 100 for every
/// userspace ABI (whatever the kernel's own HZ).
fn clock_ticks_per_second() -> f64 {
    100.0
}

/// The calling thread's Linux thread id, from /proc/thread-self
/// (`<pid>/task/<tid>`).
pub(super) fn current_tid() -> Option<i64> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// The lag figures of one (group, topic): per partition (offset lag,
/// estimated seconds to drain it), then MSK's aggregates.
pub(super) fn lag_series(inputs: &Inputs, state: &MskState) -> Samples {
    let mut out: Samples = Vec::new();
    let mut per_topic: BTreeMap<(&str, &str), (u64, u64, f64)> = BTreeMap::new();
    for ((group, topic, partition), (committed, hw)) in &inputs.lag {
        let lag = (hw - committed).max(0) as u64;
        let rate = state
            .consumption
            .get(&(group.clone(), topic.clone(), *partition))
            .map(|c| c.rate.rate())
            .unwrap_or(0.0);
        let time_lag = estimated_time_lag(lag, rate);
        let labels = |name: &str| -> Labels {
            vec![
                ("name", name.into()),
                ("groupId", group.clone()),
                ("topic", topic.clone()),
                ("partition", partition.to_string()),
            ]
        };
        out.push((labels("OffsetLag"), lag as f64));
        out.push((labels("EstimatedTimeLag"), time_lag));
        let e = per_topic
            .entry((group.as_str(), topic.as_str()))
            .or_insert((0, 0, 0.0));
        e.0 += lag;
        e.1 = e.1.max(lag);
        e.2 = e.2.max(time_lag);
    }
    for ((group, topic), (sum, max, time)) in per_topic {
        let labels = |name: &str| -> Labels {
            vec![
                ("name", name.into()),
                ("groupId", group.into()),
                ("topic", topic.into()),
            ]
        };
        out.push((labels("SumOffsetLag"), sum as f64));
        out.push((labels("MaxOffsetLag"), max as f64));
        out.push((labels("EstimatedMaxTimeLag"), time));
    }
    out
}

/// MSK's EstimatedTimeLag, "time to drain the partition offset lag": the
/// lag over the group's consumption rate on that partition (how fast its
/// committed offset advanced, a one-minute moving average). Caught up: 0;
/// lagging with no progress in the last minutes: +Inf (it never drains at
/// that rate).
pub fn estimated_time_lag(lag: u64, records_per_second: f64) -> f64 {
    if lag == 0 {
        0.0
    } else if records_per_second <= 1e-9 {
        f64::INFINITY
    } else {
        lag as f64 / records_per_second
    }
}

const METER_ATTRS: [&str; 5] = [
    "Count",
    "MeanRate",
    "OneMinuteRate",
    "FiveMinuteRate",
    "FifteenMinuteRate",
];
const HISTOGRAM_ATTRS: [&str; 8] = [
    "Mean",
    "50thPercentile",
    "75thPercentile",
    "95thPercentile",
    "98thPercentile",
    "99thPercentile",
    "999thPercentile",
    "Count",
];

/// Groups samples by family name (`kafka_<domain>_<type>_<attribute>`).
fn push(
    families: &mut BTreeMap<String, Samples>,
    mbean: &str,
    attr: &str,
    labels: &[(&'static str, String)],
    v: f64,
) {
    families
        .entry(format!("{mbean}_{attr}"))
        .or_default()
        .push((labels.to_vec(), v));
}

pub(super) fn encode(m: &Metrics, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let inputs = Inputs::read(m);
    let figures = lock(&m.replica_figures).as_ref().map(|f| f());
    let state = lock(&m.msk);
    let mut families: BTreeMap<String, Samples> = BTreeMap::new();
    for mi in &inputs.meters {
        let meter = state.meters.get(&(mi.mbean, mi.labels.clone()));
        let rates = meter.map_or([0.0; 4], |mt| {
            [
                mt.mean_rate(),
                mt.one.rate(),
                mt.five.rate(),
                mt.fifteen.rate(),
            ]
        });
        push(
            &mut families,
            mi.mbean,
            "Count",
            &mi.labels,
            mi.count as f64,
        );
        for (attr, v) in METER_ATTRS[1..].iter().zip(rates) {
            push(&mut families, mi.mbean, attr, &mi.labels, v);
        }
    }
    for hi in &inputs.histograms {
        let window = state
            .windows
            .get(&(hi.mbean, hi.labels.clone()))
            .cloned()
            .unwrap_or_default();
        let s = window.stats(&hi.buckets, &hi.bounds);
        let values = [s.mean, s.p50, s.p75, s.p95, s.p98, s.p99, s.p999];
        for (attr, v) in HISTOGRAM_ATTRS.iter().zip(values) {
            push(&mut families, hi.mbean, attr, &hi.labels, v);
        }
        // A timer's Count is its meter's (already there); a plain
        // histogram's Count is the number of observations since start.
        if !inputs
            .meters
            .iter()
            .any(|mi| mi.mbean == hi.mbean && mi.labels == hi.labels)
        {
            let total = hi.buckets.counts.iter().sum::<u64>() + hi.buckets.overflow;
            push(&mut families, hi.mbean, "Count", &hi.labels, total as f64);
        }
    }
    if let Some(f) = figures {
        let value = |name: &str| -> Labels { vec![("name", name.into())] };
        for (name, v) in [
            ("UnderReplicatedPartitions", f.under_replicated),
            ("PartitionCount", f.partitions),
            ("LeaderCount", f.leaders),
        ] {
            push(
                &mut families,
                "kafka_server_ReplicaManager",
                "Value",
                &value(name),
                v as f64,
            );
        }
        for (name, v) in [
            ("ActiveControllerCount", f.active_controller),
            ("OfflinePartitionsCount", f.offline),
        ] {
            push(
                &mut families,
                "kafka_controller_KafkaController",
                "Value",
                &value(name),
                v as f64,
            );
        }
    }
    if let Some(idle) = state.idle {
        push(
            &mut families,
            "kafka_network_SocketServer",
            "Value",
            &[("name", "NetworkProcessorAvgIdlePercent".into())],
            idle,
        );
    }
    let lag = lag_series(&inputs, &state);
    drop(state);
    if !lag.is_empty() {
        families.insert("kafka_consumer_group_ConsumerLagMetrics_Value".into(), lag);
    }
    for (name, samples) in &families {
        // The JMX exporter's MSK rules leave these untyped.
        family(
            enc,
            name,
            "Kafka MBean attribute, as MSK open monitoring's JMX exporter names it",
            MetricType::Unknown,
            samples,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::meter::TICK;
    use super::*;

    fn inputs(count: u64, committed: i64, hw: i64, cpu: u64) -> Inputs {
        let mut lag = BTreeMap::new();
        lag.insert(("g".to_string(), "t".to_string(), 0), (committed, hw));
        Inputs {
            meters: vec![MeterInput {
                mbean: "kafka_server_BrokerTopicMetrics",
                labels: vec![("name", "BytesInPerSec".into()), ("topic", "t".into())],
                count,
            }],
            histograms: vec![],
            shard_cpu: vec![(1, cpu)],
            lag,
        }
    }

    #[test]
    fn state_ticks_meters_lag_rates_and_idle() {
        let mut s = MskState::new();
        let t0 = Instant::now();
        s.tick_at(&inputs(0, 0, 100, 0), t0, 100.0);
        assert_eq!(s.idle, None, "idle needs two ticks");
        // 5 s later: 500 bytes in, the group committed 50 records, the shard
        // used 1 s of CPU (100 ticks at 100 Hz).
        s.tick_at(&inputs(500, 50, 100, 100), t0 + TICK, 100.0);
        let meter = s.meters.values().next().unwrap();
        // Created at the first tick with nothing counted: the EWMA starts at
        // 0 and moves by alpha towards 100 bytes/s.
        let expected = 100.0 * (1.0 - (-5.0f64 / 60.0).exp());
        assert!(
            (meter.one.rate() - expected).abs() < 1e-9,
            "{}",
            meter.one.rate()
        );
        assert!((s.idle.unwrap() - 0.8).abs() < 1e-9, "{:?}", s.idle);
        let now = inputs(500, 50, 100, 100);
        let lag = lag_series(&now, &s);
        let get = |name: &str| {
            lag.iter()
                .find(|(l, _)| l[0].1 == name)
                .map(|(_, v)| *v)
                .unwrap()
        };
        assert_eq!(get("OffsetLag"), 50.0);
        assert_eq!(get("SumOffsetLag"), 50.0);
        assert_eq!(get("MaxOffsetLag"), 50.0);
        // 10 records/s consumed: 50 behind drains in 5 s.
        assert!((get("EstimatedTimeLag") - 5.0).abs() < 1e-9);
        assert!((get("EstimatedMaxTimeLag") - 5.0).abs() < 1e-9);
    }

    #[test]
    fn time_lag_edges() {
        assert_eq!(estimated_time_lag(0, 0.0), 0.0);
        assert_eq!(estimated_time_lag(10, 0.0), f64::INFINITY);
        assert_eq!(estimated_time_lag(10, 2.0), 5.0);
    }

    #[test]
    fn thread_cpu_time_of_this_thread_is_readable() {
        let tid = current_tid().expect("/proc/thread-self");
        let before = thread_cpu_ticks(tid).expect("own /proc stat");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        let after = thread_cpu_ticks(tid).unwrap();
        assert!(after > before, "{before} -> {after}");
    }
}
