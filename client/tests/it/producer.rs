//! Producer integration tests against a real `sluiced` (started here on a
//! free port, from <repo>/target/release/sluiced or $SLUICED_BIN) and,
//! when SLUICE_TEST_KAFKA_BOOTSTRAP is set, the same checks against that
//! Apache Kafka. Records are read back with raw Fetch requests (there is no
//! consumer here) and decoded with the protocol crate.

use crate::support;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, CreateTopicsRequest, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice::config::{Acks, ClientConfig, ProducerConfig};
use sluice::net::Cluster;
use sluice::producer::{Partitioner, Producer, ProducerRecord};
use sluice::{Compression, Error, ErrorCode};
use sluice_protocol::batch::{decode_records, scan_valid_prefix, split_batches};
use sluice_protocol::murmur2::partition_for_key;

// ---------------------------------------------------------------- brokers

/// The sluiced under test. Missing is a failure, not a skip: a suite that
/// quietly tests nothing is worse than a red one.
fn sluiced_bin() -> Option<PathBuf> {
    let p = support::sluiced_bin();
    assert!(
        p.exists(),
        "{} is not built: cargo build --release -p sluice-broker (or set SLUICED_BIN)",
        p.display()
    );
    Some(p)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A `sluiced` child process on a fixed port and data directory, so it can
/// be killed and restarted in place.
struct Sluiced {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    dir: tempfile::TempDir,
}

impl Sluiced {
    fn start() -> Option<Sluiced> {
        let bin = sluiced_bin()?;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Sluiced {
            child: None,
            bin,
            port: free_port(),
            dir,
        };
        s.spawn();
        Some(s)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sluiced.log"))
            .expect("log file");
        let child = Command::new(&self.bin)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--set")
            .arg("group.initial.rebalance.delay.ms=0")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn sluiced");
        self.child = Some(child);
        wait_for_port(self.port, self.dir.path());
        std::thread::sleep(Duration::from_millis(50));
        if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
            let log =
                std::fs::read_to_string(self.dir.path().join("sluiced.log")).unwrap_or_default();
            panic!("sluiced exited ({status}) although port {} answers (taken by another process?); log:\n{log}", self.port);
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Sluiced {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("sluiced.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- sluiced log (last lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn wait_for_port(port: u16, dir: &Path) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(20) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("sluiced.log")).unwrap_or_default();
    panic!("sluiced did not listen on {port} within 20 s; log:\n{log}");
}

/// Where a test runs: our own sluiced, plus an external Kafka if given.
struct Target {
    name: &'static str,
    bootstrap: String,
    _broker: Option<Sluiced>,
}

fn targets() -> Vec<Target> {
    let mut t = Vec::new();
    if let Some(s) = Sluiced::start() {
        t.push(Target {
            name: "sluiced",
            bootstrap: s.bootstrap(),
            _broker: Some(s),
        });
    }
    if let Ok(b) = std::env::var("SLUICE_TEST_KAFKA_BOOTSTRAP") {
        if !b.trim().is_empty() {
            t.push(Target {
                name: "kafka",
                bootstrap: b,
                _broker: None,
            });
        }
    }
    t
}

fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::new_v4().simple())
}

// ---------------------------------------------------------------- helpers

fn client_config(bootstrap: &str) -> ClientConfig {
    ClientConfig {
        bootstrap_servers: vec![bootstrap.to_string()],
        client_id: "producer-tests".into(),
        ..Default::default()
    }
}

fn producer_config(bootstrap: &str) -> ProducerConfig {
    ProducerConfig::builder()
        .bootstrap_servers(bootstrap)
        .client_id("producer-tests")
        .build()
        .expect("config")
}

/// Whether every partition's leader already answers for it (Kafka's
/// metadata can name a leader a moment before that broker serves the
/// partition; an acks=0 produce sent then is dropped, as acks=0 allows).
async fn leaders_serve(cluster: &Cluster, t: &sluice::net::TopicInfo) -> bool {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest};
    for p in &t.partitions {
        let Ok(conn) = cluster.connection(p.leader).await else {
            return false;
        };
        let mut lp = ListOffsetsPartition::default();
        lp.partition_index = p.partition;
        lp.timestamp = -1;
        let mut lt = ListOffsetsTopic::default();
        lt.name = TopicName(StrBytes::from_string(t.name.clone()));
        lt.partitions = vec![lp];
        let mut req = ListOffsetsRequest::default();
        req.replica_id = BrokerId(-1);
        req.topics = vec![lt];
        match conn.send(&req).await {
            Ok(r)
                if r.topics.iter().all(|t| {
                    t.partitions
                        .iter()
                        .all(|p| p.error_code == ErrorCode::None.code())
                }) => {}
            _ => return false,
        }
    }
    true
}

async fn create_topic(cluster: &Cluster, name: &str, partitions: i32) {
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(name.to_string()));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let conn = cluster.any_connection().await.expect("connection");
    let resp = conn.send(&req).await.expect("CreateTopics");
    for r in &resp.topics {
        assert!(
            matches!(
                ErrorCode::from_code(r.error_code),
                ErrorCode::None | ErrorCode::TopicAlreadyExists
            ),
            "CreateTopics {name}: error {}",
            ErrorCode::from_code(r.error_code)
        );
    }
    // Wait until every partition has a leader.
    let t0 = Instant::now();
    loop {
        cluster.refresh_metadata(&[name.to_string()]).await.ok();
        if let Some(t) = cluster.topic(name) {
            if t.partitions.len() == partitions as usize
                && t.partitions.iter().all(|p| p.leader >= 0)
                && leaders_serve(cluster, &t).await
            {
                return;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "topic {name} has no leaders"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[derive(Debug, Clone)]
struct Fetched {
    offset: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    headers: Vec<(String, Option<Bytes>)>,
    timestamp: i64,
    compression: Compression,
    producer_id: i64,
}

/// Every record of one partition, read with raw Fetch requests.
async fn fetch_all(cluster: &Cluster, topic: &str, partition: i32) -> Vec<Fetched> {
    let mut out = Vec::new();
    let mut offset = 0i64;
    let t0 = Instant::now();
    loop {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "fetching {topic}-{partition} takes too long"
        );
        let leader = cluster.leader_for(topic, partition).expect("leader");
        let conn = match cluster.connection(leader).await {
            Ok(c) => c,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let mut p = FetchPartition::default();
        p.partition = partition;
        p.fetch_offset = offset;
        p.partition_max_bytes = 4 << 20;
        p.current_leader_epoch = -1;
        p.log_start_offset = -1;
        let mut ft = FetchTopic::default();
        ft.topic = TopicName(StrBytes::from_string(topic.to_string()));
        ft.partitions = vec![p];
        let mut req = FetchRequest::default();
        req.replica_id = BrokerId(-1);
        req.max_wait_ms = 10;
        req.min_bytes = 1;
        req.max_bytes = 8 << 20;
        req.session_id = 0;
        req.session_epoch = -1;
        req.topics = vec![ft];
        let resp = match conn.send(&req).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("fetch error (retrying): {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pd = resp
            .responses
            .first()
            .and_then(|t| t.partitions.first())
            .expect("partition data");
        if matches!(
            ErrorCode::from_code(pd.error_code),
            ErrorCode::UnknownTopicOrPartition
                | ErrorCode::LeaderNotAvailable
                | ErrorCode::NotLeaderOrFollower
                | ErrorCode::FencedLeaderEpoch
                | ErrorCode::UnknownLeaderEpoch
        ) {
            // Leadership still settling (a new topic on Kafka): refresh, retry.
            cluster.refresh_metadata(&[topic.to_string()]).await.ok();
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        assert_eq!(
            ErrorCode::from_code(pd.error_code),
            ErrorCode::None,
            "fetch error for {topic}-{partition}"
        );
        let hw = pd.high_watermark;
        if offset >= hw {
            return out;
        }
        let records = pd.records.clone().unwrap_or_default();
        let (valid, _) = scan_valid_prefix(&records);
        let batches = split_batches(&records.slice(..valid)).expect("batches");
        if batches.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        for (h, b) in batches {
            for r in decode_records(&b).expect("records") {
                let o = r.offset(&h);
                if o < offset {
                    continue;
                }
                out.push(Fetched {
                    offset: o,
                    key: r.key.clone(),
                    value: r.value.clone(),
                    headers: r
                        .headers
                        .iter()
                        .map(|h| (h.key.clone(), h.value.clone()))
                        .collect(),
                    timestamp: r.timestamp(&h),
                    compression: h.compression().expect("codec"),
                    producer_id: h.producer_id,
                });
            }
            offset = offset.max(h.next_offset());
        }
    }
}

async fn connect_cluster(bootstrap: &str) -> Arc<Cluster> {
    Cluster::connect(client_config(bootstrap))
        .await
        .expect("cluster")
}

// ---------------------------------------------------------------- tests

#[test]
fn producer_handles_are_send_and_sync() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Producer>();
    fn check_send<T: Send + 'static>() {}
    check_send::<sluice::producer::SendFuture>();
    check_send::<sluice::producer::DeliveryFuture>();
}

/// 10k keyed records per codec: all come back, each on the Java partition
/// for its key, in send order per key, with headers and timestamps, in
/// batches compressed with the codec asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_keyed_records_round_trip_with_every_codec() {
    for target in targets() {
        let cluster = connect_cluster(&target.bootstrap).await;
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let topic = unique(&format!("codec-{codec:?}").to_lowercase());
            let partitions = 6;
            create_topic(&cluster, &topic, partitions).await;
            let mut cfg = producer_config(&target.bootstrap);
            cfg.compression = codec;
            let producer = Producer::connect(cfg).await.expect("producer");
            let n = 10_000usize;
            let base_ts = 1_700_000_000_000i64;
            let futs: Vec<_> = (0..n)
                .map(|i| {
                    let mut r = ProducerRecord::new(topic.clone())
                        .key(format!("key-{}", i % 1000))
                        .value(format!("value-{i}-{}", "x".repeat(i % 50)))
                        .timestamp(base_ts + i as i64);
                    if i % 7 == 0 {
                        r = r.header("h", format!("{i}")).null_header("empty");
                    }
                    producer.send(r)
                })
                .collect();
            let results = join_all(futs).await;
            let mut acked: HashMap<(i32, i64), usize> = HashMap::new();
            for (i, r) in results.into_iter().enumerate() {
                let md =
                    r.unwrap_or_else(|e| panic!("[{}] {codec:?} record {i}: {e}", target.name));
                let key = format!("key-{}", i % 1000);
                assert_eq!(
                    md.partition,
                    partition_for_key(key.as_bytes(), partitions),
                    "Java partition for {key}"
                );
                assert_eq!(md.topic, topic);
                assert_eq!(md.timestamp, base_ts + i as i64);
                assert!(md.offset >= 0);
                assert!(
                    acked.insert((md.partition, md.offset), i).is_none(),
                    "offset reported twice"
                );
            }
            producer
                .close(Duration::from_secs(10))
                .await
                .expect("close");

            let mut total = 0;
            for p in 0..partitions {
                let recs = fetch_all(&cluster, &topic, p).await;
                total += recs.len();
                let mut last_per_key: HashMap<Bytes, usize> = HashMap::new();
                for r in recs {
                    let i = acked[&(p, r.offset)];
                    let key = r.key.clone().expect("key");
                    assert_eq!(key, Bytes::from(format!("key-{}", i % 1000)));
                    assert_eq!(
                        r.value,
                        Some(Bytes::from(format!("value-{i}-{}", "x".repeat(i % 50))))
                    );
                    assert_eq!(r.timestamp, base_ts + i as i64);
                    assert_eq!(r.compression, codec, "batch codec");
                    if i.is_multiple_of(7) {
                        assert_eq!(
                            r.headers,
                            vec![
                                ("h".to_string(), Some(Bytes::from(format!("{i}")))),
                                ("empty".to_string(), None)
                            ]
                        );
                    } else {
                        assert!(r.headers.is_empty());
                    }
                    assert!(r.producer_id >= 0, "idempotent batches carry a producer id");
                    if let Some(prev) = last_per_key.insert(key, i) {
                        assert!(prev < i, "per-key order");
                    }
                }
            }
            assert_eq!(total, n, "[{}] {codec:?}: records in the log", target.name);
            eprintln!("[{}] {codec:?}: {n} records round-tripped", target.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_one_and_all() {
    for target in targets() {
        let cluster = connect_cluster(&target.bootstrap).await;
        for acks in [Acks::None, Acks::Leader, Acks::All] {
            let topic = unique("acks");
            create_topic(&cluster, &topic, 3).await;
            let mut cfg = producer_config(&target.bootstrap);
            cfg.acks = acks;
            cfg.enable_idempotence = acks == Acks::All;
            let producer = Producer::connect(cfg).await.expect("producer");
            let futs: Vec<_> = (0..3000)
                .map(|i| {
                    producer.send(
                        ProducerRecord::new(topic.clone())
                            .key(format!("k{i}"))
                            .value("v"),
                    )
                })
                .collect();
            producer.flush().await;
            let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
            for r in join_all(futs).await {
                let md = r.expect("delivered");
                offsets.entry(md.partition).or_default().push(md.offset);
            }
            for (p, mut offs) in offsets {
                if acks == Acks::None {
                    assert!(offs.iter().all(|o| *o == -1), "acks=0 reports no offsets");
                } else {
                    offs.sort();
                    let expect: Vec<i64> = (0..offs.len() as i64).collect();
                    assert_eq!(offs, expect, "partition {p}: offsets contiguous from 0");
                }
            }
            producer
                .close(Duration::from_secs(10))
                .await
                .expect("close");
            // acks=0 completes when written: give the broker a moment.
            let t0 = Instant::now();
            loop {
                let mut total = 0;
                for p in 0..3 {
                    total += fetch_all(&cluster, &topic, p).await.len();
                }
                if total == 3000 || t0.elapsed() > Duration::from_secs(10) {
                    assert_eq!(total, 3000, "[{}] acks={acks:?}", target.name);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_sends_lingering_batches_and_close_rejects_new_sends() {
    for target in targets() {
        let cluster = connect_cluster(&target.bootstrap).await;
        let topic = unique("flush");
        create_topic(&cluster, &topic, 2).await;
        let mut cfg = producer_config(&target.bootstrap);
        // A linger far longer than the test: only flush can send these.
        cfg.linger = Duration::from_secs(3600);
        cfg.delivery_timeout = Duration::from_secs(7200);
        let producer = Producer::connect(cfg).await.expect("producer");
        let futs: Vec<_> = (0..100)
            .map(|i| producer.send(ProducerRecord::new(topic.clone()).value(format!("{i}"))))
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tokio::time::timeout(Duration::from_secs(120), producer.flush())
            .await
            .expect("flush sends lingering batches");
        for r in join_all(futs).await {
            r.expect("flushed record delivered");
        }
        // Null keys with a large batch: sticky partitioning keeps them together.
        let futs: Vec<_> = (0..50)
            .map(|i| producer.send(ProducerRecord::new(topic.clone()).value(format!("{i}"))))
            .collect();
        let c = producer.clone();
        let closing = tokio::spawn(async move { c.close(Duration::from_secs(10)).await });
        let parts: HashSet<i32> = join_all(futs)
            .await
            .into_iter()
            .map(|r| r.expect("delivered by close").partition)
            .collect();
        assert_eq!(parts.len(), 1, "one sticky partition for one batch");
        closing.await.unwrap().expect("close delivered everything");
        let e = producer
            .send(ProducerRecord::new(topic.clone()).value("late"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Closed), "{e}");
        eprintln!("[{}] flush/close ok", target.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioning_explicit_sticky_and_custom() {
    struct Last;
    impl Partitioner for Last {
        fn partition(&self, _t: &str, _k: Option<&[u8]>, _v: Option<&[u8]>, n: i32) -> i32 {
            n - 1
        }
    }
    for target in targets() {
        let cluster = connect_cluster(&target.bootstrap).await;
        let topic = unique("parts");
        create_topic(&cluster, &topic, 4).await;
        let mut cfg = producer_config(&target.bootstrap);
        cfg.batch_size = 200;
        cfg.linger = Duration::from_millis(1);
        let producer = Producer::connect(cfg.clone()).await.expect("producer");
        assert_eq!(producer.partitions_for(&topic).await.unwrap().len(), 4);
        // Explicit partition honoured; out of range rejected.
        let md = producer
            .send(
                ProducerRecord::new(topic.clone())
                    .key("k")
                    .partition(2)
                    .value("v"),
            )
            .await
            .unwrap();
        assert_eq!(md.partition, 2);
        let e = producer
            .send(ProducerRecord::new(topic.clone()).partition(9).value("v"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::RecordRejected(_)), "{e}");
        // Null keys with small batches move between partitions.
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let futs: Vec<_> = (0..20)
                .map(|_| producer.send(ProducerRecord::new(topic.clone()).value(vec![0u8; 50])))
                .collect();
            for r in join_all(futs).await {
                seen.insert(r.unwrap().partition);
            }
        }
        assert!(
            seen.len() > 1,
            "sticky partitioning moves on after a batch: {seen:?}"
        );
        // partitioner.ignore.keys: keys do not pin the partition.
        let mut c2 = cfg.clone();
        c2.partitioner_ignore_keys = true;
        let p2 = Producer::connect(c2).await.unwrap();
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let futs: Vec<_> = (0..20)
                .map(|_| {
                    p2.send(
                        ProducerRecord::new(topic.clone())
                            .key("same")
                            .value(vec![0u8; 50]),
                    )
                })
                .collect();
            for r in join_all(futs).await {
                seen.insert(r.unwrap().partition);
            }
        }
        assert!(seen.len() > 1, "ignore.keys spreads a single key: {seen:?}");
        // A custom partitioner decides.
        let p3 = Producer::with_partitioner(cfg.clone(), Arc::new(Last))
            .await
            .unwrap();
        for k in ["a", "b", "c"] {
            assert_eq!(
                p3.send(ProducerRecord::new(topic.clone()).key(k).value("v"))
                    .await
                    .unwrap()
                    .partition,
                3
            );
        }
        // Too large for max.request.size: rejected at once.
        let mut c4 = cfg.clone();
        c4.max_request_size = 1000;
        let p4 = Producer::connect(c4).await.unwrap();
        let e = p4
            .send(ProducerRecord::new(topic.clone()).value(vec![1u8; 2000]))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::RecordRejected(_)), "{e}");
        // A topic that does not exist: Timeout after max.block.ms.
        let mut c5 = cfg.clone();
        c5.max_block = Duration::from_millis(500);
        c5.client.allow_auto_create_topics = false;
        let p5 = Producer::connect(c5).await.unwrap();
        let e = p5
            .send(ProducerRecord::new(unique("missing")).value("v"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e}");
        for p in [producer, p2, p3, p4, p5] {
            p.close(Duration::from_secs(5)).await.unwrap();
        }
    }
}

/// `buffer.memory` backpressure end to end: a tiny buffer, many records,
/// `enqueue` awaits space; everything still arrives in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_buffer_memory_applies_backpressure() {
    for target in targets() {
        let cluster = connect_cluster(&target.bootstrap).await;
        let topic = unique("backpressure");
        create_topic(&cluster, &topic, 1).await;
        let mut cfg = producer_config(&target.bootstrap);
        cfg.buffer_memory = 64 * 1024;
        cfg.batch_size = 8 * 1024;
        let producer = Producer::connect(cfg).await.unwrap();
        let mut deliveries = Vec::new();
        for i in 0..5000 {
            let d = producer
                .enqueue(ProducerRecord::new(topic.clone()).value(format!("{i:0>200}")))
                .await
                .unwrap();
            deliveries.push(d);
        }
        let mds: Vec<_> = join_all(deliveries)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        for (i, md) in mds.iter().enumerate() {
            assert_eq!(md.offset, i as i64, "send order kept under backpressure");
        }
        producer.close(Duration::from_secs(5)).await.unwrap();
        assert_eq!(fetch_all(&cluster, &topic, 0).await.len(), 5000);
    }
}

/// A broker the test can kill -9 and restart in place.
enum Restartable {
    Sluiced(Sluiced),
    /// A KRaft Apache Kafka run by scripts/kafka-kraft.
    Kafka {
        script: PathBuf,
        port: u16,
        dir: tempfile::TempDir,
    },
}

impl Restartable {
    fn kafka() -> Option<Restartable> {
        let script = support::repo_root().join("scripts/kafka-kraft");
        if std::env::var("SLUICE_TEST_KAFKA_RESTART").ok().as_deref() != Some("1")
            || !script.exists()
        {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let k = Restartable::Kafka {
            script,
            port: free_port(),
            dir,
        };
        k.kafka_start();
        Some(k)
    }

    fn kafka_start(&self) {
        if let Restartable::Kafka { script, port, dir } = self {
            let ok = Command::new(script)
                .args(["start", "--port", &port.to_string(), "--data-dir"])
                .arg(dir.path().join("k"))
                .stdout(Stdio::null())
                .status()
                .expect("kafka-kraft");
            assert!(ok.success(), "kafka-kraft start failed");
        }
    }

    fn bootstrap(&self) -> String {
        match self {
            Restartable::Sluiced(s) => s.bootstrap(),
            Restartable::Kafka { port, .. } => format!("127.0.0.1:{port}"),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Restartable::Sluiced(_) => "sluiced",
            Restartable::Kafka { .. } => "kafka",
        }
    }

    fn kill9(&mut self) {
        match self {
            Restartable::Sluiced(s) => s.kill9(),
            Restartable::Kafka { dir, .. } => {
                let pid = std::fs::read_to_string(dir.path().join("k").join("kafka.pid"))
                    .unwrap_or_default();
                let pid = pid.trim();
                if !pid.is_empty() {
                    let _ = Command::new("kill")
                        .args(["-9", pid])
                        .stderr(Stdio::null())
                        .status();
                    let t0 = Instant::now();
                    while Path::new(&format!("/proc/{pid}")).exists()
                        && t0.elapsed() < Duration::from_secs(10)
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        }
    }

    fn restart(&mut self) {
        self.kill9();
        match self {
            Restartable::Sluiced(s) => s.spawn(),
            Restartable::Kafka { .. } => self.kafka_start(),
        }
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        if let Restartable::Kafka { script, dir, .. } = self {
            let _ = Command::new(script.as_path())
                .args(["stop", "--data-dir"])
                .arg(dir.path().join("k"))
                .status();
        }
    }
}

/// The broker is killed -9 and restarted (twice) while an idempotent
/// producer streams: every acknowledged record is in the log exactly once,
/// and each partition holds its records in send order. Against sluiced;
/// also against a KRaft Kafka this test starts when SLUICE_TEST_KAFKA_RESTART=1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_produce_survives_broker_kill_and_restart() {
    let mut brokers: Vec<Restartable> = Vec::new();
    if let Some(s) = Sluiced::start() {
        brokers.push(Restartable::Sluiced(s));
    }
    if let Some(k) = Restartable::kafka() {
        brokers.push(k);
    }
    for mut b in brokers {
        idempotent_kill_restart(&mut b).await;
    }
}

async fn idempotent_kill_restart(broker: &mut Restartable) {
    let bootstrap = broker.bootstrap();
    let name = broker.name();
    let topic = unique("idem");
    let partitions = 4;
    {
        let cluster = connect_cluster(&bootstrap).await;
        create_topic(&cluster, &topic, partitions).await;
    }
    let mut cfg = producer_config(&bootstrap);
    cfg.client.request_timeout = Duration::from_secs(5);
    cfg.client.retry_backoff = Duration::from_millis(50);
    cfg.client.reconnect_backoff_max = Duration::from_millis(200);
    cfg.delivery_timeout = Duration::from_secs(100);
    cfg.linger = Duration::from_millis(2);
    cfg.batch_size = 4096;
    let producer = Producer::connect(cfg).await.expect("producer");

    let n = 30_000usize;
    let p2 = producer.clone();
    let topic2 = topic.clone();
    let progress = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress2 = progress.clone();
    let sending = tokio::spawn(async move {
        let mut deliveries = Vec::with_capacity(n);
        for i in 0..n {
            let r = ProducerRecord::new(topic2.clone())
                .key(format!("k{}", i % 64))
                .value(format!("{i}"));
            deliveries.push(p2.enqueue(r).await.expect("enqueue"));
            progress2.store(i + 1, std::sync::atomic::Ordering::Relaxed);
            if i % 500 == 499 {
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }
        join_all(deliveries).await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    let at_kill = progress.load(std::sync::atomic::Ordering::Relaxed);
    broker.kill9();
    eprintln!("[{name}] broker killed after {at_kill} records were sent");
    tokio::time::sleep(Duration::from_millis(700)).await;
    broker.restart();
    eprintln!("[{name}] broker restarted");
    tokio::time::sleep(Duration::from_millis(600)).await;
    broker.kill9();
    tokio::time::sleep(Duration::from_millis(300)).await;
    broker.restart();
    eprintln!("[{name}] broker restarted again");
    assert!(
        at_kill > 0 && at_kill < n,
        "the kill happened mid-stream ({at_kill} of {n})"
    );

    let results = tokio::time::timeout(Duration::from_secs(150), sending)
        .await
        .expect("sends finish")
        .unwrap();
    let mut acked: HashMap<usize, (i32, i64)> = HashMap::new();
    let mut failed = 0;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(md) => {
                acked.insert(i, (md.partition, md.offset));
            }
            Err(e) => {
                failed += 1;
                if failed < 5 {
                    eprintln!("[{name}] record {i} failed: {e}");
                }
            }
        }
    }
    producer.close(Duration::from_secs(10)).await.ok();
    assert_eq!(
        failed, 0,
        "[{name}] with unlimited retries and a 100 s delivery timeout every record is delivered"
    );

    let cluster = connect_cluster(&bootstrap).await;
    cluster
        .ensure_topics(std::slice::from_ref(&topic))
        .await
        .unwrap();
    let mut seen: HashMap<usize, i64> = HashMap::new();
    for p in 0..partitions {
        let recs = fetch_all(&cluster, &topic, p).await;
        let mut last_per_key: HashMap<String, usize> = HashMap::new();
        for r in recs {
            let i: usize = std::str::from_utf8(r.value.as_deref().unwrap())
                .unwrap()
                .parse()
                .unwrap();
            assert!(
                seen.insert(i, r.offset).is_none(),
                "[{name}] record {i} is in the log twice"
            );
            let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
            assert_eq!(key, format!("k{}", i % 64));
            assert_eq!(p, partition_for_key(key.as_bytes(), partitions));
            if let Some(prev) = last_per_key.insert(key, i) {
                assert!(
                    prev < i,
                    "[{name}] partition {p}: record {i} after {prev}: order broken"
                );
            }
        }
    }
    for (i, (p, off)) in &acked {
        let o = seen
            .get(i)
            .unwrap_or_else(|| panic!("[{name}] acknowledged record {i} missing"));
        if *off >= 0 {
            assert_eq!(
                o, off,
                "[{name}] record {i} (partition {p}) at the acknowledged offset"
            );
        }
    }
    eprintln!(
        "[{name}] {} records acknowledged, {} in the log, no duplicates, order kept",
        acked.len(),
        seen.len()
    );
}

/// `close` with a timeout while the broker is gone: it returns after the
/// timeout and fails what was not delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_times_out_and_fails_undeliverable_records() {
    let Some(mut broker) = Sluiced::start() else {
        return;
    };
    let bootstrap = broker.bootstrap();
    let topic = unique("close");
    {
        let cluster = connect_cluster(&bootstrap).await;
        create_topic(&cluster, &topic, 1).await;
    }
    let producer = Producer::connect(producer_config(&bootstrap))
        .await
        .unwrap();
    producer
        .send(ProducerRecord::new(topic.clone()).value("first"))
        .await
        .unwrap();
    broker.kill9();
    let f = producer.send(ProducerRecord::new(topic.clone()).value("never"));
    let r = tokio::time::timeout(
        Duration::from_secs(120),
        producer.close(Duration::from_millis(800)),
    )
    .await
    .expect("close gives up at its timeout");
    assert!(matches!(r, Err(Error::Timeout(_))), "{r:?}");
    let e = f.await.unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e}");
}

/// A batch larger than the topic's max.message.bytes is split (repeatedly)
/// and every record still lands once, in order, at the offset its future
/// reported; a single record over the limit fails alone with
/// MESSAGE_TOO_LARGE. With and without idempotence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_max_message_bytes_are_split_and_delivered_in_order() {
    use kafka_protocol::messages::create_topics_request::CreatableTopicConfig;
    for target in targets() {
        let cluster = connect_cluster(&target.bootstrap).await;
        for idempotence in [true, false] {
            let topic = unique("split");
            let mut t = CreatableTopic::default();
            t.name = TopicName(StrBytes::from_string(topic.clone()));
            t.num_partitions = 1;
            t.replication_factor = 1;
            let mut c = CreatableTopicConfig::default();
            c.name = StrBytes::from_static_str("max.message.bytes");
            c.value = Some(StrBytes::from_static_str("4096"));
            t.configs.push(c);
            let mut req = CreateTopicsRequest::default();
            req.topics = vec![t];
            req.timeout_ms = 30_000;
            let resp = cluster
                .any_connection()
                .await
                .expect("conn")
                .send(&req)
                .await
                .expect("CreateTopics");
            assert_eq!(
                ErrorCode::from_code(resp.topics[0].error_code),
                ErrorCode::None,
                "[{}] create {topic}",
                target.name
            );
            create_topic(&cluster, &topic, 1).await; // waits for the leader

            let mut cfg = producer_config(&target.bootstrap);
            cfg.batch_size = 1 << 20;
            cfg.linger = Duration::from_millis(200);
            cfg.enable_idempotence = idempotence;
            let producer = Producer::connect(cfg).await.expect("producer");
            // ~40 KB of records in one lingering batch, ten times the limit,
            // and one record that cannot fit on its own.
            let mut futs: Vec<_> = (0..400)
                .map(|i| {
                    producer.send(
                        ProducerRecord::new(topic.clone())
                            .partition(0)
                            .value(format!("{i:0>100}")),
                    )
                })
                .collect();
            let huge = producer.send(
                ProducerRecord::new(topic.clone())
                    .partition(0)
                    .value(vec![b'x'; 8192]),
            );
            futs.extend((400..410).map(|i| {
                producer.send(
                    ProducerRecord::new(topic.clone())
                        .partition(0)
                        .value(format!("{i:0>100}")),
                )
            }));
            producer.flush().await;
            let offsets: Vec<i64> = join_all(futs)
                .await
                .into_iter()
                .map(|r| {
                    r.unwrap_or_else(|e| panic!("[{}] idempotence={idempotence}: {e}", target.name))
                        .offset
                })
                .collect();
            assert_eq!(
                offsets,
                (0..410).collect::<Vec<i64>>(),
                "[{}] offsets follow send order",
                target.name
            );
            let e = huge
                .await
                .expect_err("an 8 KB record is over max.message.bytes on its own");
            assert_eq!(
                e.code(),
                Some(ErrorCode::MessageTooLarge),
                "[{}] {e}",
                target.name
            );
            producer
                .close(Duration::from_secs(10))
                .await
                .expect("close");
            let values: Vec<String> = fetch_all(&cluster, &topic, 0)
                .await
                .into_iter()
                .map(|f| {
                    String::from_utf8_lossy(f.value.as_deref().unwrap_or_default()).to_string()
                })
                .collect();
            let expect: Vec<String> = (0..410).map(|i| format!("{i:0>100}")).collect();
            assert_eq!(
                values, expect,
                "[{}] idempotence={idempotence}: every record once, in order",
                target.name
            );
        }
    }
}
