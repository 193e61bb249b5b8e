//! The consumer against a real broker: a fresh `sluiced` by default, or
//! Apache Kafka with SLUICE_TEST_KAFKA_BOOTSTRAP=host:port (see
//! tests/support). Test data is written with raw Produce requests built
//! with the protocol crate's BatchBuilder, so these tests do not depend on
//! the producer.

use crate::support;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{create_topic, unique, TestBroker};
use futures::StreamExt;
use sluice::consumer::{
    Consumer, ConsumerRecord, PartitionBatch, RebalanceListener, TopicPartition,
};
use sluice::net::Cluster;
use sluice::{Compression, ConsumerConfig, ErrorCode};
use sluice_protocol::batch::{BatchBuilder, RecordHeader};

const WAIT: Duration = Duration::from_secs(60);

async fn cluster(b: &TestBroker) -> Arc<Cluster> {
    support::connect_cluster(b, "consumer-test-setup").await
}

/// Appends `values` to one partition; returns the base offset.
async fn produce(
    c: &Cluster,
    topic: &str,
    partition: i32,
    values: &[String],
    compression: Compression,
) -> i64 {
    let mut b = BatchBuilder::new(compression);
    let now = 1_700_000_000_000i64;
    for (i, v) in values.iter().enumerate() {
        let key = format!("key-{i}");
        let headers = [RecordHeader {
            key: "h".into(),
            value: Some(bytes::Bytes::from(v.clone())),
        }];
        b.push(
            now + i as i64,
            Some(key.as_bytes()),
            Some(v.as_bytes()),
            &headers,
        )
        .unwrap();
    }
    support::produce_batch(c, topic, partition, b.build()).await
}

async fn fill(c: &Cluster, topic: &str, partitions: i32, per_partition: usize) {
    for p in 0..partitions {
        let values: Vec<String> = (0..per_partition)
            .map(|i| format!("{topic}/{p}/{i}"))
            .collect();
        // Alternate codecs so decompression is covered.
        let codec = [
            Compression::None,
            Compression::Gzip,
            Compression::Lz4,
            Compression::Zstd,
            Compression::Snappy,
        ][p as usize % 5];
        // Two batches per partition.
        let half = values.len() / 2;
        produce(c, topic, p, &values[..half], codec).await;
        produce(c, topic, p, &values[half..], codec).await;
    }
}

fn config(b: &TestBroker, group: Option<&str>, extra: &[(&str, &str)]) -> ConsumerConfig {
    let mut props: Vec<(&str, &str)> = vec![
        ("bootstrap.servers", b.bootstrap.as_str()),
        ("auto.offset.reset", "earliest"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
        ("fetch.max.wait.ms", "100"),
    ];
    if let Some(g) = group {
        props.push(("group.id", g));
    }
    props.extend_from_slice(extra);
    ConsumerConfig::from_properties(props).unwrap()
}

/// Polls until `n` records arrived (or panics after WAIT).
async fn poll_n(c: &mut Consumer, n: usize) -> Vec<ConsumerRecord> {
    let deadline = Instant::now() + WAIT;
    let mut out = Vec::new();
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} records arrived",
            out.len()
        );
        out.extend(c.poll(Duration::from_millis(200)).await.unwrap());
    }
    out
}

fn by_partition(records: &[ConsumerRecord]) -> BTreeMap<i32, Vec<i64>> {
    let mut m: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for r in records {
        m.entry(r.partition).or_default().push(r.offset);
    }
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assign_reads_everything_from_earliest() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("assign");
    create_topic(&c, &t, 3).await;
    fill(&c, &t, 3, 20).await;

    let mut consumer = Consumer::connect(config(&b, None, &[("max.poll.records", "7")]))
        .await
        .unwrap();
    consumer.assign((0..3).map(|p| (t.as_str(), p))).unwrap();
    let mut got = Vec::new();
    let deadline = Instant::now() + WAIT;
    while got.len() < 60 {
        assert!(Instant::now() < deadline);
        let batch = consumer.poll(Duration::from_millis(200)).await.unwrap();
        assert!(
            batch.len() <= 7,
            "max.poll.records exceeded: {}",
            batch.len()
        );
        got.extend(batch);
    }
    assert_eq!(got.len(), 60);
    for (p, offsets) in by_partition(&got) {
        assert_eq!(offsets, (0..20).collect::<Vec<i64>>(), "partition {p}");
    }
    let r = got
        .iter()
        .find(|r| r.partition == 1 && r.offset == 13)
        .unwrap();
    assert_eq!(r.value.as_deref(), Some(format!("{t}/1/13").as_bytes()));
    assert_eq!(r.key.as_deref(), Some(&b"key-3"[..]));
    assert_eq!(r.headers, vec![("h".to_string(), r.value.clone())]);
    assert_eq!(r.timestamp, 1_700_000_000_003);
    assert_eq!(
        consumer
            .position(&TopicPartition::new(&t, 2))
            .await
            .unwrap(),
        20
    );

    // New records show up on the stream.
    produce(
        &c,
        &t,
        0,
        &["late-1".into(), "late-2".into()],
        Compression::None,
    )
    .await;
    let late: Vec<ConsumerRecord> = consumer
        .stream()
        .take(2)
        .map(|r| r.unwrap())
        .collect()
        .await;
    assert_eq!(
        late.iter().map(|r| r.offset).collect::<Vec<_>>(),
        vec![20, 21]
    );
    assert_eq!(late[1].value.as_deref(), Some(&b"late-2"[..]));
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_pause_and_resume() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("seek");
    create_topic(&c, &t, 2).await;
    fill(&c, &t, 2, 10).await;
    let (p0, p1) = (TopicPartition::new(&t, 0), TopicPartition::new(&t, 1));

    let mut consumer = Consumer::connect(config(&b, None, &[])).await.unwrap();
    consumer.assign([p0.clone(), p1.clone()]).unwrap();
    poll_n(&mut consumer, 20).await;

    consumer.seek(&p0, 6).unwrap();
    let again = poll_n(&mut consumer, 4).await;
    assert_eq!(by_partition(&again).get(&0), Some(&vec![6, 7, 8, 9]));

    consumer
        .seek_to_beginning(std::slice::from_ref(&p1))
        .unwrap();
    assert_eq!(consumer.position(&p1).await.unwrap(), 0);
    let again = poll_n(&mut consumer, 10).await;
    assert_eq!(by_partition(&again).get(&1).map(Vec::len), Some(10));

    consumer.pause(std::slice::from_ref(&p1)).unwrap();
    assert_eq!(consumer.paused(), BTreeSet::from([p1.clone()]));
    produce(&c, &t, 0, &["a".into()], Compression::None).await;
    produce(&c, &t, 1, &["b".into()], Compression::None).await;
    let mut seen = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        seen.extend(consumer.poll(Duration::from_millis(200)).await.unwrap());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].partition, seen[0].offset), (0, 10));
    consumer.resume(std::slice::from_ref(&p1)).unwrap();
    let resumed = poll_n(&mut consumer, 1).await;
    assert_eq!((resumed[0].partition, resumed[0].offset), (1, 10));

    consumer.seek_to_end(&[]).unwrap();
    assert_eq!(consumer.position(&p0).await.unwrap(), 11);
    assert_eq!(consumer.position(&p1).await.unwrap(), 11);
    assert!(consumer.seek(&TopicPartition::new(&t, 7), 0).is_err());

    // Out of range: auto.offset.reset (earliest) applies.
    consumer.seek(&p0, 1000).unwrap();
    let reset = poll_n(&mut consumer, 11).await;
    assert_eq!(
        by_partition(&reset).get(&0).map(|v| (v[0], v.len())),
        Some((0, 11))
    );
    consumer.close().await.unwrap();

    // With auto.offset.reset=none, no position is an error.
    let mut strict = Consumer::connect(config(&b, None, &[("auto.offset.reset", "none")]))
        .await
        .unwrap();
    assert!(
        strict.poll(Duration::from_millis(10)).await.is_err(),
        "polling with nothing assigned"
    );
    strict.assign([p0.clone()]).unwrap();
    let e = strict.poll(Duration::from_millis(500)).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::OffsetOutOfRange), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_and_restart_resume_at_committed_offsets() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("commit");
    let g = unique("g-commit");
    create_topic(&c, &t, 2).await;
    fill(&c, &t, 2, 30).await;

    let cfg = config(
        &b,
        Some(&g),
        &[("enable.auto.commit", "false"), ("max.poll.records", "10")],
    );
    let mut first = Consumer::connect(cfg).await.unwrap();
    first.subscribe(&[&t]).unwrap();
    let got = poll_n(&mut first, 25).await;
    first.commit_sync().await.unwrap();
    let mut expected: HashMap<i32, i64> = HashMap::new();
    for r in &got {
        let e = expected.entry(r.partition).or_insert(0);
        *e = (*e).max(r.offset + 1);
    }
    let parts = [TopicPartition::new(&t, 0), TopicPartition::new(&t, 1)];
    let committed = first.committed(&parts).await.unwrap();
    for tp in &parts {
        assert_eq!(
            committed[tp].as_ref().map(|o| o.offset),
            expected.get(&tp.partition).copied(),
            "{tp}"
        );
    }
    // An explicit offset, then a restart.
    first
        .commit_sync_offsets([(parts[0].clone(), 3i64)])
        .await
        .unwrap();
    first.close().await.unwrap();

    // This one auto-commits: close commits where it stopped.
    let mut second = Consumer::connect(config(&b, Some(&g), &[("max.poll.records", "10")]))
        .await
        .unwrap();
    second.subscribe(&[&t]).unwrap();
    let rest = poll_n(
        &mut second,
        27 + 30 - expected.get(&1).copied().unwrap_or(0) as usize,
    )
    .await;
    let m = by_partition(&rest);
    assert_eq!(m.get(&0).and_then(|v| v.first()).copied(), Some(3));
    if let Some(&p1) = expected.get(&1) {
        assert_eq!(m.get(&1).and_then(|v| v.first()).copied(), Some(p1));
    }

    // Auto commit on close.
    second.close().await.unwrap();
    let committed = {
        let probe = Consumer::connect(config(&b, Some(&g), &[])).await.unwrap();
        probe.committed(&parts).await.unwrap()
    };
    assert_eq!(committed[&parts[0]].as_ref().map(|o| o.offset), Some(30));
    assert_eq!(committed[&parts[1]].as_ref().map(|o| o.offset), Some(30));
}

/// Records which partitions a member was given and lost.
#[derive(Default)]
struct Recorder {
    assigned: Mutex<Vec<Vec<TopicPartition>>>,
    revoked: Mutex<Vec<Vec<TopicPartition>>>,
    lost: Mutex<Vec<Vec<TopicPartition>>>,
}

impl RebalanceListener for Recorder {
    fn on_partitions_assigned(&self, p: &[TopicPartition]) {
        self.assigned.lock().unwrap().push(p.to_vec());
    }
    fn on_partitions_revoked(&self, p: &[TopicPartition]) {
        self.revoked.lock().unwrap().push(p.to_vec());
    }
    fn on_partitions_lost(&self, p: &[TopicPartition]) {
        self.lost.lock().unwrap().push(p.to_vec());
    }
}

/// A group member running on its own task: polls, records what it got,
/// commits after each poll, publishes its assignment.
struct Member {
    stop: Arc<AtomicBool>,
    assignment: Arc<Mutex<BTreeSet<TopicPartition>>>,
    listener: Arc<Recorder>,
    task: tokio::task::JoinHandle<()>,
}

fn start_member(cfg: ConsumerConfig, topic: String, seen: Arc<Mutex<Vec<(i32, i64)>>>) -> Member {
    let stop = Arc::new(AtomicBool::new(false));
    let assignment = Arc::new(Mutex::new(BTreeSet::new()));
    let listener = Arc::new(Recorder::default());
    let (s, a, l) = (stop.clone(), assignment.clone(), listener.clone());
    let task = tokio::spawn(async move {
        let mut c = Consumer::connect(cfg).await.unwrap();
        c.set_rebalance_listener(l);
        c.subscribe(&[topic]).unwrap();
        while !s.load(Ordering::SeqCst) {
            let records = c.poll(Duration::from_millis(100)).await.unwrap();
            if !records.is_empty() {
                seen.lock()
                    .unwrap()
                    .extend(records.iter().map(|r| (r.partition, r.offset)));
                if let Err(e) = c.commit_sync().await {
                    eprintln!("commit failed: {e}");
                }
            }
            *a.lock().unwrap() = c.assignment();
        }
        c.close().await.unwrap();
        a.lock().unwrap().clear();
    });
    Member {
        stop,
        assignment,
        listener,
        task,
    }
}

impl Member {
    async fn stop(self) -> Arc<Recorder> {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.listener
    }
    fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.assignment.lock().unwrap().clone()
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn disjoint_cover(members: &[&Member], partitions: i32) -> bool {
    let mut all = Vec::new();
    for m in members {
        all.extend(m.assignment());
    }
    let n = all.len();
    let set: BTreeSet<TopicPartition> = all.into_iter().collect();
    n == set.len()
        && set.len() == partitions as usize
        && members.iter().all(|m| !m.assignment().is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_of_three_members_joining_and_leaving() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("group3");
    let g = unique("g3");
    create_topic(&c, &t, 6).await;
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let cfg = config(
        &b,
        Some(&g),
        &[("enable.auto.commit", "false"), ("max.poll.records", "20")],
    );

    fill(&c, &t, 6, 50).await;
    let m1 = start_member(cfg.clone(), t.clone(), seen.clone());
    wait_for("the first member's records", || {
        seen.lock().unwrap().len() >= 40
    })
    .await;
    let m2 = start_member(cfg.clone(), t.clone(), seen.clone());
    let m3 = start_member(cfg.clone(), t.clone(), seen.clone());
    wait_for("three members sharing six partitions", || {
        disjoint_cover(&[&m1, &m2, &m3], 6)
    })
    .await;
    for m in [&m1, &m2, &m3] {
        assert_eq!(m.assignment().len(), 2);
    }
    fill(&c, &t, 6, 50).await;
    wait_for("more records", || seen.lock().unwrap().len() >= 450).await;
    let r2 = m2.stop().await;
    assert!(
        !r2.revoked.lock().unwrap().is_empty(),
        "close runs the revoke callback"
    );
    wait_for("two members sharing six partitions", || {
        disjoint_cover(&[&m1, &m3], 6)
    })
    .await;
    fill(&c, &t, 6, 20).await;
    let total = 6 * (50 + 50 + 20);
    wait_for("every record", || {
        let s = seen.lock().unwrap();
        s.iter().collect::<BTreeSet<_>>().len() >= total
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    m1.stop().await;
    m3.stop().await;
    let s = seen.lock().unwrap();
    let unique_records: BTreeSet<&(i32, i64)> = s.iter().collect();
    assert_eq!(unique_records.len(), total, "every record consumed");
    assert_eq!(
        s.len(),
        total,
        "no record consumed twice (commits before each rebalance)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_keeps_partitions_that_do_not_move() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("coop");
    let g = unique("g-coop");
    create_topic(&c, &t, 4).await;
    fill(&c, &t, 4, 10).await;
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let cfg = config(
        &b,
        Some(&g),
        &[
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("enable.auto.commit", "false"),
        ],
    );

    let m1 = start_member(cfg.clone(), t.clone(), seen.clone());
    wait_for("the first member owning all four", || {
        m1.assignment().len() == 4
    })
    .await;
    let before = m1.assignment();
    let m2 = start_member(cfg.clone(), t.clone(), seen.clone());
    wait_for("two members sharing four partitions", || {
        disjoint_cover(&[&m1, &m2], 4)
    })
    .await;
    let after1 = m1.assignment();
    assert_eq!(after1.len(), 2);
    assert!(after1.is_subset(&before));
    // Incremental: only the two moving partitions were revoked, never all.
    let revoked: Vec<Vec<TopicPartition>> = m1.listener.revoked.lock().unwrap().clone();
    let revoked_all: BTreeSet<TopicPartition> = revoked.iter().flatten().cloned().collect();
    assert_eq!(revoked_all.len(), 2, "{revoked:?}");
    assert!(revoked_all.is_disjoint(&after1));
    // The added partitions were reported as added, in a second rebalance.
    let assigned2: BTreeSet<TopicPartition> = m2
        .listener
        .assigned
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert_eq!(assigned2, m2.assignment());
    assert!(m1.listener.lost.lock().unwrap().is_empty());
    m2.stop().await;
    wait_for("the first member owning all four again", || {
        m1.assignment().len() == 4
    })
    .await;
    let r1 = m1.stop().await;
    // Getting m2's partitions back revoked nothing from m1.
    assert_eq!(
        r1.revoked.lock().unwrap().iter().flatten().count(),
        2 + 4,
        "{:?}",
        r1.revoked.lock().unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_handler_retries_and_commits_only_after_success() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("batches");
    let g = unique("g-batches");
    create_topic(&c, &t, 2).await;
    fill(&c, &t, 2, 15).await;
    let tp0 = TopicPartition::new(&t, 0);

    let cfg = config(
        &b,
        Some(&g),
        &[("enable.auto.commit", "false"), ("max.poll.records", "10")],
    );
    let mut consumer = Consumer::connect(cfg.clone()).await.unwrap();
    let probe = Consumer::connect(cfg).await.unwrap();
    consumer.subscribe(&[&t]).unwrap();
    let shutdown = consumer.shutdown_handle();
    let attempts: Arc<Mutex<Vec<(i32, i64, usize)>>> = Arc::default();
    let processed: Arc<Mutex<BTreeSet<(i32, i64)>>> = Arc::default();
    let failed_once = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let probe = &probe;
    let result = tokio::time::timeout(
        WAIT,
        consumer.run_batches(|batch: PartitionBatch| {
            let attempts = attempts.clone();
            let processed = processed.clone();
            let failed_once = failed_once.clone();
            let shutdown = shutdown.clone();
            let calls = calls.clone();
            let tp0 = tp0.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let first = batch.records[0].offset;
                // Offsets are in order within the batch.
                assert!(batch
                    .records
                    .windows(2)
                    .all(|w| w[1].offset == w[0].offset + 1));
                attempts
                    .lock()
                    .unwrap()
                    .push((batch.partition, first, batch.records.len()));
                if batch.partition == 0 && !failed_once.swap(true, Ordering::SeqCst) {
                    return Err(format!("first attempt at {first} fails"));
                }
                if batch.partition == 0 && first == 0 {
                    // The failed attempt committed nothing.
                    let committed = probe.committed(std::slice::from_ref(&tp0)).await.unwrap();
                    assert_eq!(committed[&tp0], None);
                }
                let mut p = processed.lock().unwrap();
                for r in &batch.records {
                    p.insert((r.partition, r.offset));
                }
                if p.len() == 30 {
                    shutdown.shutdown();
                }
                Ok::<(), String>(())
            }
        }),
    )
    .await;
    result.expect("run_batches finished").unwrap();
    let attempts = attempts.lock().unwrap().clone();
    let p0: Vec<&(i32, i64, usize)> = attempts.iter().filter(|a| a.0 == 0).collect();
    assert!(p0.len() >= 2, "{attempts:?}");
    assert_eq!(p0[0].1, 0);
    assert_eq!(
        p0[1].1, 0,
        "the failed batch is retried from its first record: {attempts:?}"
    );
    assert_eq!(processed.lock().unwrap().len(), 30);
    let parts = [tp0.clone(), TopicPartition::new(&t, 1)];
    let committed = probe.committed(&parts).await.unwrap();
    assert_eq!(committed[&parts[0]].as_ref().map(|o| o.offset), Some(15));
    assert_eq!(committed[&parts[1]].as_ref().map(|o| o.offset), Some(15));
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_loop_until_stops_rewinds_and_leaves_the_consumer_usable() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("batches-until");
    let g = unique("g-batches-until");
    create_topic(&c, &t, 2).await;
    fill(&c, &t, 2, 15).await;
    let parts = [TopicPartition::new(&t, 0), TopicPartition::new(&t, 1)];
    // Room for both partitions in one poll, so stopping leaves a batch of
    // that poll unhandled (with 8 a poll mostly held one partition and a
    // planted skip of the rewind went unnoticed).
    let cfg = config(
        &b,
        Some(&g),
        &[("enable.auto.commit", "false"), ("max.poll.records", "30")],
    );
    let mut consumer = Consumer::connect(cfg.clone()).await.unwrap();
    let probe = Consumer::connect(cfg).await.unwrap();
    consumer.subscribe(&[&t]).unwrap();
    let stop = AtomicBool::new(false);
    let seen: Mutex<Vec<(i32, i64)>> = Mutex::default();
    let firsts: Mutex<Vec<(i32, i64)>> = Mutex::default();

    // 1. The first handled batch fails and asks to stop: nothing is
    //    committed, nothing retried, the loop ends.
    let r = tokio::time::timeout(
        WAIT,
        consumer.run_batches_until(
            || stop.load(Ordering::SeqCst),
            |batch: PartitionBatch| {
                firsts
                    .lock()
                    .unwrap()
                    .push((batch.partition, batch.records[0].offset));
                stop.store(true, Ordering::SeqCst);
                async { Err::<(), _>("fails") }
            },
        ),
    )
    .await;
    r.expect("the loop ended").unwrap();
    assert_eq!(firsts.lock().unwrap().len(), 1, "not retried once stopping");
    let committed = probe.committed(&parts).await.unwrap();
    assert!(committed.values().all(|o| o.is_none()), "{committed:?}");

    // 2. Stopping after one handled batch: it is committed; the rest of
    //    that poll is rewound, not skipped.
    stop.store(false, Ordering::SeqCst);
    let handled = AtomicUsize::new(0);
    tokio::time::timeout(
        WAIT,
        consumer.run_batches_until(
            || stop.load(Ordering::SeqCst) || handled.load(Ordering::SeqCst) >= 1,
            |batch: PartitionBatch| {
                firsts
                    .lock()
                    .unwrap()
                    .push((batch.partition, batch.records[0].offset));
                seen.lock()
                    .unwrap()
                    .extend(batch.records.iter().map(|r| (r.partition, r.offset)));
                handled.fetch_add(1, Ordering::SeqCst);
                async { Ok::<(), String>(()) }
            },
        ),
    )
    .await
    .expect("the loop ended")
    .unwrap();
    assert_eq!(handled.load(Ordering::SeqCst), 1);
    let failed = firsts.lock().unwrap()[0];
    assert_eq!(
        firsts.lock().unwrap()[1].1,
        0,
        "the failed batch's partition was rewound: {:?} after {failed:?}",
        firsts.lock().unwrap()
    );

    // 3. The consumer is still usable: run to the end; every record exactly once.
    tokio::time::timeout(
        WAIT,
        consumer.run_batches_until(
            || seen.lock().unwrap().len() >= 30,
            |batch: PartitionBatch| {
                seen.lock()
                    .unwrap()
                    .extend(batch.records.iter().map(|r| (r.partition, r.offset)));
                async { Ok::<(), String>(()) }
            },
        ),
    )
    .await
    .expect("the loop ended")
    .unwrap();
    let mut all = seen.lock().unwrap().clone();
    all.sort();
    let want: Vec<(i32, i64)> = (0..2).flat_map(|p| (0..15).map(move |o| (p, o))).collect();
    assert_eq!(all, want, "every record exactly once");
    let committed = probe.committed(&parts).await.unwrap();
    for tp in &parts {
        assert_eq!(committed[tp].as_ref().map(|o| o.offset), Some(15), "{tp}");
    }
    consumer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_member_rejoins_with_its_assignment() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("static");
    let g = unique("g-static");
    create_topic(&c, &t, 4).await;
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let cfg = |id: &str| {
        config(
            &b,
            Some(&g),
            &[
                ("group.instance.id", id),
                ("partition.assignment.strategy", "range"),
            ],
        )
    };

    let a = start_member(cfg("instance-a"), t.clone(), seen.clone());
    let bm = start_member(cfg("instance-b"), t.clone(), seen.clone());
    wait_for("two static members sharing four partitions", || {
        disjoint_cover(&[&a, &bm], 4)
    })
    .await;
    let a_parts = a.assignment();
    let b_revocations = bm.listener.revoked.lock().unwrap().len();
    let b_assignments = bm.listener.assigned.lock().unwrap().len();
    // Static members do not leave on close; the replacement takes over the
    // same assignment without a rebalance.
    a.stop().await;
    let a2 = start_member(cfg("instance-a"), t.clone(), seen.clone());
    wait_for("the restarted member's assignment", || {
        !a2.assignment().is_empty()
    })
    .await;
    assert_eq!(a2.assignment(), a_parts);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        bm.listener.revoked.lock().unwrap().len(),
        b_revocations,
        "the other member was not disturbed"
    );
    assert_eq!(bm.listener.assigned.lock().unwrap().len(), b_assignments);
    a2.stop().await;
    bm.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_subscription_follows_new_topics() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let prefix = unique("pat");
    let g = unique("g-pat");
    create_topic(&c, &format!("{prefix}-a"), 1).await;
    create_topic(&c, &format!("{prefix}-b"), 2).await;
    create_topic(&c, &unique("other"), 1).await;
    fill(&c, &format!("{prefix}-a"), 1, 5).await;
    fill(&c, &format!("{prefix}-b"), 2, 5).await;

    let mut consumer = Consumer::connect(config(&b, Some(&g), &[("metadata.max.age.ms", "500")]))
        .await
        .unwrap();
    consumer
        .subscribe_pattern(&format!("{}-.*", regex::escape(&prefix)))
        .unwrap();
    let got = poll_n(&mut consumer, 15).await;
    let topics: BTreeSet<String> = got.iter().map(|r| r.topic.clone()).collect();
    assert_eq!(
        topics,
        BTreeSet::from([format!("{prefix}-a"), format!("{prefix}-b")])
    );

    let late = format!("{prefix}-c");
    create_topic(&c, &late, 1).await;
    fill(&c, &late, 1, 4).await;
    let got = poll_n(&mut consumer, 4).await;
    assert!(got.iter().all(|r| r.topic == late), "{got:?}");
    assert!(consumer.subscription().contains(&late));
    consumer.close().await.unwrap();
}

/// Polls `c` until `cond` holds on it and the other members.
async fn poll_until(c: &mut Consumer, what: &str, mut cond: impl FnMut(&Consumer) -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond(c) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        c.poll(Duration::from_millis(100)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_processing_keeps_membership_but_poll_timeout_leaves() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("slow");
    let g = unique("g-slow");
    create_topic(&c, &t, 2).await;
    let seen: Arc<Mutex<Vec<(i32, i64)>>> = Arc::default();
    let base = [
        ("session.timeout.ms", "6000"),
        ("partition.assignment.strategy", "range"),
    ];
    let other = start_member(config(&b, Some(&g), &base), t.clone(), seen.clone());

    // Processing for longer than session.timeout.ms: heartbeats continue,
    // nobody rebalances.
    let mut slow = Consumer::connect(config(
        &b,
        Some(&g),
        &[base[0], base[1], ("max.poll.interval.ms", "20000")],
    ))
    .await
    .unwrap();
    let recorder = Arc::new(Recorder::default());
    slow.set_rebalance_listener(recorder.clone());
    slow.subscribe(&[&t]).unwrap();
    poll_until(&mut slow, "an even split", |s| {
        s.assignment().len() == 1 && other.assignment().len() == 1
    })
    .await;
    let mine = slow.assignment();
    let other_events = (
        other.listener.assigned.lock().unwrap().len(),
        other.listener.revoked.lock().unwrap().len(),
    );
    tokio::time::sleep(Duration::from_secs(9)).await;
    slow.poll(Duration::from_millis(300)).await.unwrap();
    assert_eq!(slow.assignment(), mine);
    assert!(
        recorder.lost.lock().unwrap().is_empty() && recorder.revoked.lock().unwrap().is_empty()
    );
    assert_eq!(
        (
            other.listener.assigned.lock().unwrap().len(),
            other.listener.revoked.lock().unwrap().len()
        ),
        other_events
    );
    slow.close().await.unwrap();
    wait_for("the other member owning both", || {
        other.assignment().len() == 2
    })
    .await;

    // Not polling for longer than max.poll.interval.ms: the member leaves,
    // the other one takes over, and the next poll reports the loss and
    // rejoins.
    let mut stuck = Consumer::connect(config(
        &b,
        Some(&g),
        &[base[0], base[1], ("max.poll.interval.ms", "2000")],
    ))
    .await
    .unwrap();
    let recorder = Arc::new(Recorder::default());
    stuck.set_rebalance_listener(recorder.clone());
    stuck.subscribe(&[&t]).unwrap();
    poll_until(&mut stuck, "an even split", |s| {
        s.assignment().len() == 1 && other.assignment().len() == 1
    })
    .await;
    let lost = stuck.assignment();
    wait_for("the other member taking over", || {
        other.assignment().len() == 2
    })
    .await;
    poll_until(&mut stuck, "a rejoin", |s| {
        s.assignment().len() == 1 && other.assignment().len() == 1
    })
    .await;
    let lost_reported: BTreeSet<TopicPartition> = recorder
        .lost
        .lock()
        .unwrap()
        .iter()
        .flatten()
        .cloned()
        .collect();
    assert_eq!(lost_reported, lost);
    stuck.close().await.unwrap();
    other.stop().await;
}

fn venv_python() -> Option<std::path::PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))?;
    let py = cache.join("sluice/venv/bin/python");
    py.exists().then_some(py)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_what_librdkafka_produced_with_every_codec() {
    let Some(b) = TestBroker::start() else { return };
    let Some(py) = venv_python() else {
        eprintln!("skipping: no Python venv with confluent_kafka (scripts/setup creates it)");
        return;
    };
    let c = cluster(&b).await;
    let t = unique("rdkafka");
    create_topic(&c, &t, 5).await;
    let script = r#"
import sys
from confluent_kafka import Producer
bootstrap, topic = sys.argv[1], sys.argv[2]
for p, codec in enumerate(["none", "gzip", "snappy", "lz4", "zstd"]):
    pr = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20})
    for i in range(50):
        pr.produce(topic, value=f"{codec}-{i}".encode(), key=f"k{i}".encode(), partition=p, headers=[("codec", codec.encode())])
    assert pr.flush(30) == 0
"#;
    let (bootstrap, topic) = (b.bootstrap.clone(), t.clone());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(py)
            .args(["-c", script, &bootstrap, &topic])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut consumer = Consumer::connect(config(&b, Some(&unique("g-rd")), &[]))
        .await
        .unwrap();
    consumer.subscribe(&[&t]).unwrap();
    let got = poll_n(&mut consumer, 250).await;
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    for (p, offsets) in by_partition(&got) {
        assert_eq!(offsets, (0..50).collect::<Vec<i64>>(), "partition {p}");
    }
    for r in &got {
        let codec = codecs[r.partition as usize];
        assert_eq!(
            r.value.as_deref(),
            Some(format!("{codec}-{}", r.offset).as_bytes())
        );
        assert_eq!(r.key.as_deref(), Some(format!("k{}", r.offset).as_bytes()));
        assert_eq!(
            r.headers,
            vec![("codec".to_string(), Some(bytes::Bytes::from(codec)))]
        );
    }
    consumer.close().await.unwrap();
}
