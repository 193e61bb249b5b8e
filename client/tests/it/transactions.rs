//! Transactions end to end: the transactional producer (commit, abort,
//! fencing, offsets in a transaction) and the consumer's isolation levels,
//! against a real broker (see tests/support: a fresh `sluiced`, or Apache
//! Kafka with SLUICE_TEST_KAFKA_BOOTSTRAP=host:port).
//!
//! Every test here needs a transaction-capable broker. Apache Kafka always
//! is; a `sluiced` that does not advertise EndTxn yet (before its
//! transaction coordinator) makes each test print that it was skipped and
//! pass, and the same tests run unchanged once it does.

/// examples/rust/transactional.rs, whose `run` the last test drives.
#[allow(dead_code)]
#[path = "../../../examples/rust/transactional.rs"]
mod transactional_example;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::{unique, TestBroker};
use kafka_protocol::messages::ApiKey;
use sluice::consumer::{Consumer, ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition};
use sluice::net::Cluster;
use sluice::producer::{Producer, ProducerRecord};
use sluice::{
    AdminClient, ClientConfig, ConsumerConfig, ErrorCode, NewTopic, ProducerConfig,
    TransactionState,
};

const WAIT: Duration = Duration::from_secs(60);

/// The broker for a transactional test, or `None` (after saying so) when
/// it is a `sluiced` that does not serve transactions yet.
async fn transactional_broker() -> Option<TestBroker> {
    let b = TestBroker::start()?;
    if !b.is_sluiced() {
        return Some(b);
    }
    let cfg = ClientConfig::from_properties([("bootstrap.servers", b.bootstrap.as_str())])
        .expect("config");
    let cluster = Cluster::connect(cfg).await.expect("connect");
    let conn = cluster.any_connection().await.expect("connection");
    if conn.versions().supports(ApiKey::EndTxn) {
        Some(b)
    } else {
        eprintln!(
            "SKIPPED: this sluiced does not serve transactions yet (no EndTxn in ApiVersions); \
             run with SLUICE_TEST_KAFKA_BOOTSTRAP to test against Apache Kafka"
        );
        None
    }
}

async fn create_topic(b: &TestBroker, name: &str, partitions: i32) {
    let cfg = ClientConfig::from_properties([("bootstrap.servers", b.bootstrap.as_str())])
        .expect("config");
    let admin = AdminClient::connect(cfg).await.expect("admin");
    let r = admin
        .create_topics(vec![NewTopic::new(name, partitions, 1)], false)
        .await
        .expect("CreateTopics");
    for (t, res) in r {
        res.unwrap_or_else(|e| panic!("creating {t}: {e}"));
    }
}

fn producer_config(b: &TestBroker, transactional_id: Option<&str>) -> ProducerConfig {
    let mut props = vec![
        ("bootstrap.servers", b.bootstrap.as_str()),
        ("linger.ms", "2"),
        ("transaction.timeout.ms", "30000"),
    ];
    if let Some(id) = transactional_id {
        props.push(("transactional.id", id));
    }
    ProducerConfig::from_properties(props).expect("producer config")
}

async fn txn_producer(b: &TestBroker, id: &str) -> Producer {
    let p = Producer::connect(producer_config(b, Some(id)))
        .await
        .expect("producer");
    p.init_transactions().await.expect("init_transactions");
    assert_eq!(p.transaction_state(), Some(TransactionState::Ready));
    p
}

fn consumer_config(b: &TestBroker, isolation: &str, group: Option<&str>) -> ConsumerConfig {
    let mut props = vec![
        ("bootstrap.servers", b.bootstrap.as_str()),
        ("auto.offset.reset", "earliest"),
        ("isolation.level", isolation),
        ("enable.auto.commit", "false"),
        ("fetch.max.wait.ms", "100"),
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "300"),
    ];
    if let Some(g) = group {
        props.push(("group.id", g));
    }
    ConsumerConfig::from_properties(props).expect("consumer config")
}

fn record(topic: &str, partition: i32, value: &str) -> ProducerRecord {
    ProducerRecord::new(topic)
        .partition(partition)
        .value(value.to_string())
}

/// Sends `values` to `topic`, round-robin over `partitions`, and waits for
/// each delivery.
async fn send_all(p: &Producer, topic: &str, partitions: i32, values: &[String]) {
    let sends: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, v)| p.send(record(topic, i as i32 % partitions, v)))
        .collect();
    for (s, v) in futures::future::join_all(sends)
        .await
        .into_iter()
        .zip(values)
    {
        s.unwrap_or_else(|e| panic!("sending {v}: {e}"));
    }
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// Reads `topic` from the beginning until the record "end" arrived from
/// every partition, then until each position has moved past the commit
/// marker that follows it (control batches advance positions without
/// being delivered). Returns every other value read, by partition.
async fn read_to_end(
    b: &TestBroker,
    isolation: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<String>> {
    let mut c = Consumer::connect(consumer_config(b, isolation, None))
        .await
        .expect("consumer");
    let tps: Vec<TopicPartition> = (0..partitions)
        .map(|p| TopicPartition::new(topic, p))
        .collect();
    c.assign(tps.clone()).expect("assign");
    let mut seen: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut end_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + WAIT;
    while end_offsets.len() < partitions as usize {
        assert!(
            Instant::now() < deadline,
            "{isolation}: the end records of {topic} did not all arrive: {end_offsets:?}, read {seen:?}"
        );
        for r in c.poll(Duration::from_millis(200)).await.expect("poll") {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
            if v == "end" {
                end_offsets.insert(r.partition, r.offset);
            } else {
                assert!(
                    !end_offsets.contains_key(&r.partition),
                    "{isolation}: {v} at {}-{} after the end record",
                    r.topic,
                    r.partition
                );
                seen.entry(r.partition).or_default().push(v);
            }
        }
    }
    // The commit marker after each end record is a control batch: the
    // position moves past it and nothing is delivered.
    for tp in &tps {
        let end = end_offsets[&tp.partition];
        loop {
            let more = c.poll(Duration::from_millis(100)).await.expect("poll");
            assert!(
                more.is_empty(),
                "{isolation}: records after the end: {more:?}"
            );
            let pos = c.position(tp).await.expect("position");
            if pos == end + 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{isolation}: {tp} stays at {pos}, not past the marker at {}",
                end + 1
            );
        }
    }
    c.close().await.expect("close");
    seen
}

fn all_values(by_partition: &BTreeMap<i32, Vec<String>>) -> BTreeSet<String> {
    by_partition.values().flatten().cloned().collect()
}

/// Needs a transaction-capable broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_and_aborted_transactions_by_isolation_level() {
    let Some(b) = transactional_broker().await else {
        return;
    };
    let topic = unique("txn-isolation");
    create_topic(&b, &topic, 3).await;
    let p = txn_producer(&b, &unique("txn-id")).await;

    // Committed: delivered, then committed.
    let first = values("committed-a", 12);
    p.begin_transaction().expect("begin");
    assert_eq!(p.transaction_state(), Some(TransactionState::InTransaction));
    send_all(&p, &topic, 3, &first).await;
    p.commit_transaction().await.expect("commit");
    assert_eq!(p.transaction_state(), Some(TransactionState::Ready));

    // Aborted after its records were written: they are in the log, and
    // read_committed must drop them using the aborted-transactions list.
    let aborted_written = values("aborted-written", 9);
    p.begin_transaction().expect("begin");
    send_all(&p, &topic, 3, &aborted_written).await;
    p.abort_transaction().await.expect("abort");

    // Aborted right away: records may or may not have gone out; each
    // send resolves either way.
    let aborted_fast = values("aborted-fast", 30);
    p.begin_transaction().expect("begin");
    let sends: Vec<_> = aborted_fast
        .iter()
        .enumerate()
        .map(|(i, v)| p.send(record(&topic, i as i32 % 3, v)))
        .collect();
    p.abort_transaction().await.expect("abort");
    let outcomes = tokio::time::timeout(WAIT, futures::future::join_all(sends))
        .await
        .expect("every send of an aborted transaction resolves");
    for o in outcomes {
        if let Err(e) = o {
            assert!(
                matches!(e, sluice::Error::TransactionAborted),
                "unexpected send error: {e}"
            );
        }
    }

    // Sends outside a transaction are refused.
    let e = p.send(record(&topic, 0, "outside")).await.unwrap_err();
    assert!(matches!(e, sluice::Error::IllegalState(_)), "{e}");

    // Committed again, ending with one "end" record per partition.
    let second = values("committed-b", 6);
    p.begin_transaction().expect("begin");
    send_all(&p, &topic, 3, &second).await;
    let ends: Vec<String> = vec!["end".to_string(); 3];
    send_all(&p, &topic, 3, &ends).await;
    p.commit_transaction().await.expect("commit");
    p.close(Duration::from_secs(10)).await.expect("close");

    let committed: BTreeSet<String> = first.iter().chain(&second).cloned().collect();
    let rc = read_to_end(&b, "read_committed", &topic, 3).await;
    assert_eq!(
        all_values(&rc),
        committed,
        "read_committed sees exactly the committed records"
    );
    let rc_count: usize = rc.values().map(Vec::len).sum();
    assert_eq!(rc_count, committed.len(), "no duplicates: {rc:?}");

    let ru = read_to_end(&b, "read_uncommitted", &topic, 3).await;
    let ru_values = all_values(&ru);
    for v in committed.iter().chain(&aborted_written) {
        assert!(ru_values.contains(v), "read_uncommitted misses {v}");
    }
    assert!(
        ru_values.iter().all(|v| !v.starts_with("outside")),
        "a refused send was written"
    );
}

/// Needs a transaction-capable broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let Some(b) = transactional_broker().await else {
        return;
    };
    let topic = unique("txn-fence");
    create_topic(&b, &topic, 1).await;
    let id = unique("txn-id");
    let zombie = txn_producer(&b, &id).await;
    zombie.begin_transaction().expect("begin");
    send_all(&zombie, &topic, 1, &values("zombie", 3)).await;

    // The new instance fences the old one and aborts its open transaction.
    let fresh = txn_producer(&b, &id).await;

    let sent = zombie.send(record(&topic, 0, "zombie-late")).await;
    assert!(sent.is_err(), "a fenced producer's send went through");
    let e = zombie.commit_transaction().await.unwrap_err();
    assert!(e.is_fatal_transaction_error(), "not fatal: {e}");
    assert_eq!(e.code(), Some(ErrorCode::ProducerFenced), "{e}");
    assert_eq!(
        zombie.transaction_state(),
        Some(TransactionState::FatalError)
    );
    // Fatal means fatal: nothing else works any more.
    let e = zombie.abort_transaction().await.unwrap_err();
    assert!(e.is_fatal_transaction_error(), "{e}");
    assert!(zombie.begin_transaction().is_err());
    let _ = zombie.close(Duration::from_secs(5)).await;

    fresh.begin_transaction().expect("begin");
    send_all(&fresh, &topic, 1, &values("fresh", 3)).await;
    send_all(&fresh, &topic, 1, &["end".to_string()]).await;
    fresh.commit_transaction().await.expect("commit");
    fresh.close(Duration::from_secs(10)).await.expect("close");

    let rc = read_to_end(&b, "read_committed", &topic, 1).await;
    assert_eq!(
        all_values(&rc),
        values("fresh", 3).into_iter().collect::<BTreeSet<_>>(),
        "only the new instance's transaction is committed"
    );
}

/// Needs a transaction-capable broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_sent_to_a_transaction_are_committed_only_with_it() {
    let Some(b) = transactional_broker().await else {
        return;
    };
    let input = unique("txn-in");
    let output = unique("txn-out");
    create_topic(&b, &input, 1).await;
    create_topic(&b, &output, 1).await;
    let plain = Producer::connect(producer_config(&b, None))
        .await
        .expect("producer");
    send_all(&plain, &input, 1, &values("in", 10)).await;
    plain.close(Duration::from_secs(10)).await.expect("close");

    let group = unique("txn-group");
    let mut consumer = Consumer::connect(consumer_config(&b, "read_committed", Some(&group)))
        .await
        .expect("consumer");
    consumer.subscribe(&[&input]).expect("subscribe");
    let mut read = 0;
    let deadline = Instant::now() + WAIT;
    while read < 10 {
        assert!(Instant::now() < deadline, "read only {read} of 10");
        read += consumer
            .poll(Duration::from_millis(200))
            .await
            .expect("poll")
            .len();
    }
    let meta = consumer.group_metadata().expect("group metadata");
    assert_eq!(meta.group_id, group);
    assert!(meta.generation_id >= 1, "{meta:?}");
    assert!(!meta.member_id.is_empty(), "{meta:?}");

    let tp = TopicPartition::new(input.clone(), 0);
    let p = txn_producer(&b, &unique("txn-id")).await;

    // Aborted: its offsets are never committed.
    p.begin_transaction().expect("begin");
    send_all(&p, &output, 1, &values("out-aborted", 5)).await;
    p.send_offsets_to_transaction([(tp.clone(), OffsetAndMetadata::new(5))], &meta)
        .await
        .expect("send_offsets_to_transaction");
    p.abort_transaction().await.expect("abort");
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        let c = consumer
            .committed(std::slice::from_ref(&tp))
            .await
            .expect("committed");
        assert_eq!(
            c.get(&tp).cloned().flatten(),
            None,
            "an aborted transaction's offsets were committed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Committed: its offsets are.
    p.begin_transaction().expect("begin");
    send_all(&p, &output, 1, &values("out", 10)).await;
    p.send_offsets_to_transaction([(tp.clone(), OffsetAndMetadata::new(10))], &meta)
        .await
        .expect("send_offsets_to_transaction");
    p.commit_transaction().await.expect("commit");
    let deadline = Instant::now() + WAIT;
    loop {
        let c = consumer
            .committed(std::slice::from_ref(&tp))
            .await
            .expect("committed");
        match c.get(&tp).cloned().flatten() {
            Some(om) => {
                assert_eq!(om.offset, 10, "committed {om:?}");
                break;
            }
            None => {
                assert!(Instant::now() < deadline, "the offsets were not committed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    // A stale generation is refused (KIP-447): the transaction must be aborted.
    let mut stale = meta.clone();
    stale.generation_id += 100;
    p.begin_transaction().expect("begin");
    let e = p
        .send_offsets_to_transaction([(tp.clone(), OffsetAndMetadata::new(10))], &stale)
        .await
        .unwrap_err();
    assert!(e.is_abortable_transaction_error(), "{e}");
    assert_eq!(e.code(), Some(ErrorCode::IllegalGeneration), "{e}");
    assert_eq!(
        p.transaction_state(),
        Some(TransactionState::AbortableError)
    );
    assert!(p.commit_transaction().await.is_err());
    p.abort_transaction()
        .await
        .expect("abort after the abortable error");
    assert_eq!(p.transaction_state(), Some(TransactionState::Ready));

    // A bare group id (no generation, as KafkaJS's sendOffsets sends) is
    // accepted too.
    p.begin_transaction().expect("begin");
    p.send_offsets_to_transaction(
        [(tp.clone(), OffsetAndMetadata::new(9))],
        &ConsumerGroupMetadata::new(group.clone()),
    )
    .await
    .expect("send_offsets_to_transaction with a bare group id");
    p.commit_transaction().await.expect("commit");
    let deadline = Instant::now() + WAIT;
    while consumer
        .committed(std::slice::from_ref(&tp))
        .await
        .expect("committed")[&tp]
        .as_ref()
        .map(|o| o.offset)
        != Some(9)
    {
        assert!(Instant::now() < deadline, "offset 9 was not committed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    p.close(Duration::from_secs(10)).await.expect("close");
    consumer.close().await.expect("close");
}

/// Needs a transaction-capable broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_calls_follow_the_state_machine() {
    let Some(b) = transactional_broker().await else {
        return;
    };
    let p = Producer::connect(producer_config(&b, Some(&unique("txn-id"))))
        .await
        .expect("producer");
    assert_eq!(p.transaction_state(), Some(TransactionState::Uninitialized));
    assert!(matches!(
        p.begin_transaction(),
        Err(sluice::Error::IllegalState(_))
    ));
    p.init_transactions().await.expect("init");
    assert!(matches!(
        p.init_transactions().await,
        Err(sluice::Error::IllegalState(_))
    ));
    assert!(matches!(
        p.commit_transaction().await,
        Err(sluice::Error::IllegalState(_))
    ));
    p.begin_transaction().expect("begin");
    assert!(p.begin_transaction().is_err(), "begin twice");
    // Nothing sent: commit and abort need no EndTxn.
    p.commit_transaction().await.expect("empty commit");
    p.begin_transaction().expect("begin");
    p.abort_transaction().await.expect("empty abort");
    p.close(Duration::from_secs(5)).await.expect("close");

    let plain = Producer::connect(producer_config(&b, None))
        .await
        .expect("producer");
    assert_eq!(plain.transaction_state(), None);
    assert!(matches!(
        plain.begin_transaction(),
        Err(sluice::Error::IllegalState(_))
    ));
    plain.close(Duration::from_secs(5)).await.expect("close");
}

/// Needs a transaction-capable broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transactional_example_transforms_every_record_once() {
    let Some(b) = transactional_broker().await else {
        return;
    };
    let input = unique("example-in");
    let output = unique("example-out");
    let group = unique("example-group");
    create_topic(&b, &input, 3).await;
    create_topic(&b, &output, 3).await;
    let plain = Producer::connect(producer_config(&b, None))
        .await
        .expect("producer");
    let inputs = values("event", 300);
    send_all(&plain, &input, 3, &inputs).await;
    plain.close(Duration::from_secs(10)).await.expect("close");

    let (records, transactions) =
        transactional_example::run(&b.bootstrap, inputs.len(), &input, &output, &group)
            .await
            .expect("the example runs");
    assert_eq!(records, inputs.len());
    assert!(transactions >= 1);

    // Every input once, upper-cased, in committed transactions; the
    // group's offsets committed with them.
    let producer = Producer::connect(producer_config(&b, None))
        .await
        .expect("producer");
    send_all(&producer, &output, 3, &vec!["end".to_string(); 3]).await;
    producer
        .close(Duration::from_secs(10))
        .await
        .expect("close");
    let out = read_to_end_plain(&b, &output, 3).await;
    let want: BTreeSet<String> = inputs.iter().map(|v| v.to_uppercase()).collect();
    assert_eq!(all_values(&out), want);
    assert_eq!(out.values().map(Vec::len).sum::<usize>(), inputs.len());
    let c = Consumer::connect(consumer_config(&b, "read_committed", Some(&group)))
        .await
        .expect("consumer");
    let tps: Vec<TopicPartition> = (0..3).map(|p| TopicPartition::new(&input, p)).collect();
    let committed = c.committed(&tps).await.expect("committed");
    let total: i64 = committed
        .values()
        .map(|o| o.as_ref().map_or(0, |o| o.offset))
        .sum();
    assert_eq!(total, inputs.len() as i64, "{committed:?}");
}

/// Like `read_to_end` for a topic whose "end" records were written without
/// a transaction (no commit marker follows them).
async fn read_to_end_plain(
    b: &TestBroker,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<String>> {
    let mut c = Consumer::connect(consumer_config(b, "read_committed", None))
        .await
        .expect("consumer");
    c.assign((0..partitions).map(|p| TopicPartition::new(topic, p)))
        .expect("assign");
    let mut seen: BTreeMap<i32, Vec<String>> = BTreeMap::new();
    let mut ended: BTreeSet<i32> = BTreeSet::new();
    let deadline = Instant::now() + WAIT;
    while ended.len() < partitions as usize {
        assert!(Instant::now() < deadline, "read {seen:?}, ended {ended:?}");
        for r in c.poll(Duration::from_millis(200)).await.expect("poll") {
            let v = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).to_string();
            if v == "end" {
                ended.insert(r.partition);
            } else {
                seen.entry(r.partition).or_default().push(v);
            }
        }
    }
    c.close().await.expect("close");
    seen
}
