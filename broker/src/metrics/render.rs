//! The `sluice_*` families as `prometheus-client` metric families, read
//! from the atomics at scrape time (nothing is copied on the data path), and
//! the helpers msk.rs writes its families with. Label values are escaped
//! here: the library writes them as is.

use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::{api_name, lock, Metrics, PartitionCounters};

/// One family's samples: label pairs and a value.
pub(super) type Samples = Vec<(Vec<(&'static str, String)>, f64)>;

/// Escapes a label value for the text formats (`\`, `"` and newlines).
pub(super) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `labels` with their values escaped, as the encoder takes them.
fn escaped<'a>(labels: &'a [(&'static str, String)]) -> Vec<(&'a str, String)> {
    labels.iter().map(|(k, v)| (*k, escape(v))).collect()
}

/// Writes one family of gauges, counters or untyped samples. A counter's
/// name is given without `_total`: the encoder appends it.
pub(super) fn family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &Samples,
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let labels = escaped(labels);
        if labels.is_empty() {
            write_value(&mut m, kind, *v)?;
        } else {
            let mut f = m.encode_family(&labels)?;
            write_value(&mut f, kind, *v)?;
        }
    }
    Ok(())
}

fn write_value(
    m: &mut prometheus_client::encoding::MetricEncoder,
    kind: MetricType,
    v: f64,
) -> Result<(), std::fmt::Error> {
    match kind {
        MetricType::Counter if v.fract() == 0.0 && (0.0..9e15).contains(&v) => {
            m.encode_counter::<NoLabelSet, u64, u64>(&(v as u64), None)
        }
        MetricType::Counter => m.encode_counter::<NoLabelSet, f64, f64>(&v, None),
        // Integral values print without a fraction, as before.
        _ if v.fract() == 0.0 && v.abs() < 9e15 => m.encode_gauge(&(v as i64)),
        _ => m.encode_gauge(&v),
    }
}

/// A bucketed histogram family (one label set or none).
fn histogram<const N: usize>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(Vec<(&'static str, String)>, &super::Histogram<N>)],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (labels, h) in series {
        let snap = h.snapshot();
        let mut buckets: Vec<(f64, u64)> = h
            .bounds()
            .iter()
            .copied()
            .zip(snap.counts.iter().copied())
            .collect();
        // The library's +Inf bucket.
        buckets.push((f64::MAX, snap.overflow));
        let count = h.count();
        if labels.is_empty() {
            m.encode_histogram::<NoLabelSet>(snap.sum, count, &buckets, None)?;
        } else {
            m.encode_family(&escaped(labels))?
                .encode_histogram::<NoLabelSet>(snap.sum, count, &buckets, None)?;
        }
    }
    Ok(())
}

type QuotaSeriesDef = (
    &'static str,
    MetricType,
    &'static str,
    fn(&super::QuotaSeries) -> f64,
);

type PartitionSeries = (
    &'static str,
    MetricType,
    &'static str,
    fn(&PartitionCounters) -> f64,
);

pub(super) fn encode_sluice(
    m: &Metrics,
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    let parts = lock(&m.partitions).clone();
    let series: [PartitionSeries; 6] = [
        (
            "sluice_partition_bytes_in",
            Counter,
            "Bytes appended",
            |c| c.bytes_in.load(Relaxed) as f64,
        ),
        (
            "sluice_partition_records_in",
            Counter,
            "Records appended",
            |c| c.records_in.load(Relaxed) as f64,
        ),
        (
            "sluice_partition_bytes_out",
            Counter,
            "Bytes served to fetches",
            |c| c.bytes_out.load(Relaxed) as f64,
        ),
        (
            "sluice_partition_log_end_offset",
            Gauge,
            "Log end offset",
            |c| c.log_end_offset.load(Relaxed) as f64,
        ),
        (
            "sluice_partition_log_start_offset",
            Gauge,
            "Log start offset",
            |c| c.log_start_offset.load(Relaxed) as f64,
        ),
        ("sluice_partition_size_bytes", Gauge, "Size on disk", |c| {
            c.size_bytes.load(Relaxed) as f64
        }),
    ];
    for (name, kind, help, get) in series {
        let samples: Samples = parts
            .iter()
            .map(|((t, p), pm)| {
                (
                    vec![("topic", t.clone()), ("partition", p.to_string())],
                    get(&pm.0),
                )
            })
            .collect();
        family(enc, name, help, kind, &samples)?;
    }
    // Records out are not counted per record (fetches are zero-copy and
    // never parse records); bytes out are.
    let per_api = |counters: &[std::sync::atomic::AtomicU64]| -> Samples {
        counters
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let v = c.load(Relaxed);
                (v > 0).then(|| (vec![("api", api_name(i as i16))], v as f64))
            })
            .collect()
    };
    family(
        enc,
        "sluice_requests",
        "Requests handled per API",
        Counter,
        &per_api(&m.requests),
    )?;
    family(
        enc,
        "sluice_request_errors",
        "Requests that failed to decode or were refused",
        Counter,
        &per_api(&m.request_errors),
    )?;
    let latency: Vec<_> = m
        .request_latency
        .iter()
        .enumerate()
        .filter(|(i, _)| m.requests[*i].load(Relaxed) > 0)
        .map(|(i, h)| (vec![("api", api_name(i as i16))], h))
        .collect();
    histogram(
        enc,
        "sluice_request_latency_seconds",
        "Request handling latency per API",
        &latency,
    )?;
    histogram(
        enc,
        "sluice_log_fsync_seconds",
        "fdatasync latency",
        &[(vec![], &m.fsync_seconds)],
    )?;
    histogram(
        enc,
        "sluice_log_group_commit_requests",
        "Produce requests made durable per fdatasync",
        &[(vec![], &m.group_commit_requests)],
    )?;
    let sum_i =
        |a: &[std::sync::atomic::AtomicI64]| a.iter().map(|g| g.load(Relaxed)).sum::<i64>() as f64;
    let one = |v: f64| -> Samples { vec![(vec![], v)] };
    let singles: [(&str, MetricType, &str, f64); 14] = [
        (
            "sluice_net_connections_open",
            Gauge,
            "Client connections open",
            m.connections_open.load(Relaxed) as f64,
        ),
        (
            "sluice_net_connections",
            Counter,
            "Client connections accepted",
            m.connections_total.load(Relaxed) as f64,
        ),
        (
            "sluice_net_connections_closed_bad_input",
            Counter,
            "Connections closed for malformed input",
            m.connections_closed_bad_input.load(Relaxed) as f64,
        ),
        (
            "sluice_auth_authentication_failures",
            Counter,
            "Failed SASL authentications",
            m.authentication_failures.load(Relaxed) as f64,
        ),
        (
            "sluice_auth_authorization_denied",
            Counter,
            "Operations the authorizer denied",
            m.authorization_denied.load(Relaxed) as f64,
        ),
        (
            "sluice_group_count",
            Gauge,
            "Consumer groups held by this broker's coordinators",
            sum_i(&m.groups_by_shard),
        ),
        (
            "sluice_group_rebalances",
            Counter,
            "Group rebalances started",
            m.rebalances_by_shard
                .iter()
                .map(|r| r.load(Relaxed))
                .sum::<u64>() as f64,
        ),
        (
            "sluice_fetch_session_count",
            Gauge,
            "Incremental fetch sessions cached (KIP-227)",
            sum_i(&m.fetch_sessions_by_shard),
        ),
        (
            "sluice_fetch_session_partitions",
            Gauge,
            "Partitions in cached fetch sessions",
            sum_i(&m.fetch_session_partitions_by_shard),
        ),
        (
            "sluice_fetch_session_evictions",
            Counter,
            "Fetch sessions evicted to make room for another",
            m.fetch_session_evictions.load(Relaxed) as f64,
        ),
        (
            "sluice_log_cleaner_runs",
            Counter,
            "Log cleaner passes",
            m.cleaner_runs.load(Relaxed) as f64,
        ),
        (
            "sluice_log_cleaner_bytes_read",
            Counter,
            "Bytes the log cleaner read",
            m.cleaner_bytes_read.load(Relaxed) as f64,
        ),
        (
            "sluice_log_cleaner_bytes_written",
            Counter,
            "Bytes the log cleaner wrote",
            m.cleaner_bytes_written.load(Relaxed) as f64,
        ),
        (
            "sluice_log_cleaner_records_removed",
            Counter,
            "Records the log cleaner removed",
            m.cleaner_records_removed.load(Relaxed) as f64,
        ),
    ];
    for (name, kind, help, v) in singles {
        family(enc, name, help, kind, &one(v))?;
    }
    let quotas = lock(&m.quotas).clone();
    let quota_series: [QuotaSeriesDef; 4] = [
        ("sluice_quota_recorded", Counter, "Usage counted against a client quota (bytes, request-thread percent-seconds, partition mutations)", |s| s.recorded),
        ("sluice_quota_rate", Gauge, "A quota entity's windowed rate per second (quota.window.num x quota.window.size.seconds)", |s| s.rate),
        ("sluice_quota_throttle_time_ms", Counter, "Throttle time given to a quota entity's clients", |s| s.throttle_ms as f64),
        ("sluice_quota_throttled_requests", Counter, "Requests answered with a throttle time", |s| s.throttled as f64),
    ];
    for (name, kind, help, get) in quota_series {
        let samples: Samples = quotas
            .iter()
            .map(|((quota, user, client), s)| {
                (
                    vec![
                        ("quota", quota.to_string()),
                        ("user", user.clone()),
                        ("client_id", client.clone()),
                    ],
                    get(s),
                )
            })
            .collect();
        family(enc, name, help, kind, &samples)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::METRICS;
    use super::*;
    use prometheus_client::collector::Collector;
    use prometheus_client::registry::Registry;

    /// The value of the sample line `series` (name and labels exactly).
    fn sample(body: &str, series: &str) -> Option<String> {
        body.lines().find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
    }

    #[test]
    fn sluice_and_msk_families_render_from_the_atomics() {
        // METRICS is process-wide: this test's topic is its own.
        let pm = METRICS.partition("render-test", 0);
        pm.add_in(1000, 7);
        pm.add_replicated_in(200, 2);
        pm.add_out(300);
        pm.add_replicated_out(50);
        METRICS.observe_request(0, None, std::time::Duration::from_millis(3), false);
        METRICS.observe_request(
            1,
            Some(super::super::FetchFrom::Follower),
            std::time::Duration::from_millis(7),
            false,
        );
        let body = METRICS.render();
        let count = |series: &str| -> u64 {
            sample(&body, series)
                .unwrap_or_else(|| panic!("{series} missing"))
                .parse::<f64>()
                .unwrap() as u64
        };
        // A follower's fetch is replication out, and a FetchFollower
        // request besides a Fetch (METRICS is shared: at least ours).
        assert!(
            count("kafka_server_BrokerTopicMetrics_Count{name=\"ReplicationBytesOutPerSec\"}")
                >= 50
        );
        let follower = count(
            "kafka_network_RequestMetrics_Count{name=\"RequestsPerSec\",request=\"FetchFollower\"}",
        );
        assert!(follower >= 1);
        assert!(
            count("kafka_network_RequestMetrics_Count{name=\"RequestsPerSec\",request=\"Fetch\"}")
                >= follower
        );
        assert!(body.contains(
            "kafka_network_RequestMetrics_99thPercentile{name=\"TotalTimeMs\",request=\"FetchFollower\"}"
        ));
        assert!(body.ends_with("# EOF\n"), "OpenMetrics");
        let t = "topic=\"render-test\"";
        assert_eq!(
            sample(
                &body,
                &format!("sluice_partition_bytes_in_total{{{t},partition=\"0\"}}")
            )
            .as_deref(),
            Some("1200")
        );
        assert!(body.contains("# TYPE sluice_partition_bytes_in counter"));
        // Client bytes only: the follower's 200 are replication.
        assert_eq!(
            sample(
                &body,
                &format!("kafka_server_BrokerTopicMetrics_Count{{name=\"BytesInPerSec\",{t}}}")
            )
            .as_deref(),
            Some("1000")
        );
        assert_eq!(
            sample(
                &body,
                &format!("kafka_server_BrokerTopicMetrics_Count{{name=\"MessagesInPerSec\",{t}}}")
            )
            .as_deref(),
            Some("7")
        );
        assert_eq!(
            sample(
                &body,
                &format!("kafka_server_BrokerTopicMetrics_Count{{name=\"BytesOutPerSec\",{t}}}")
            )
            .as_deref(),
            Some("300")
        );
        assert!(body.contains("# TYPE kafka_server_BrokerTopicMetrics_OneMinuteRate unknown"));
        let p99 = sample(
            &body,
            "kafka_network_RequestMetrics_99thPercentile{name=\"TotalTimeMs\",request=\"Produce\"}",
        )
        .expect("Produce p99")
        .parse::<f64>()
        .unwrap();
        // 3 ms lies in the (2.5, 5] ms bucket.
        assert!(p99 > 2.5 && p99 <= 5.0, "{p99}");
        assert!(
            body.contains("sluice_request_latency_seconds_bucket{le=\"+Inf\",api=\"Produce\"}"),
            "{body}"
        );
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut out = String::new();
        let mut registry = Registry::default();
        #[derive(Debug)]
        struct One;
        impl Collector for One {
            fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
                family(
                    &mut enc,
                    "x",
                    "h",
                    MetricType::Gauge,
                    &vec![(vec![("user", "q\"uote\n".into())], 1.0)],
                )
            }
        }
        registry.register_collector(Box::new(One));
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(out.contains("x{user=\"q\\\"uote\\n\"} 1\n"), "{out}");
    }
}
