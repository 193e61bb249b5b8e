//! The consumer's incremental fetch sessions (KIP-227) against a real
//! broker: a fresh `sluiced` by default, or Apache Kafka with
//! SLUICE_TEST_KAFKA_BOOTSTRAP=host:port (see tests/support). Against
//! sluiced the broker's session metrics show the consumer holds a session
//! while it reads and closes it on close; against both, everything is read
//! exactly once while later fetches carry only what changed.

use crate::support;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::{create_topic, unique, TestBroker};
use sluice::consumer::{Consumer, ConsumerRecord};
use sluice::net::Cluster;
use sluice::{Compression, ConsumerConfig};
use sluice_protocol::batch::BatchBuilder;

const WAIT: Duration = Duration::from_secs(60);
const PARTITIONS: i32 = 40;

async fn cluster(b: &TestBroker) -> Arc<Cluster> {
    support::connect_cluster(b, "fetch-session-test-setup").await
}

/// Appends `values` to one partition through its leader.
async fn produce(c: &Cluster, topic: &str, partition: i32, values: &[String]) {
    let mut b = BatchBuilder::new(Compression::None);
    for v in values {
        b.push(1_700_000_000_000, None, Some(v.as_bytes()), &[])
            .unwrap();
    }
    support::produce_batch(c, topic, partition, b.build()).await;
}

fn config(b: &TestBroker) -> ConsumerConfig {
    ConsumerConfig::from_properties([
        ("bootstrap.servers", b.bootstrap.as_str()),
        ("auto.offset.reset", "earliest"),
        ("fetch.max.wait.ms", "100"),
    ])
    .unwrap()
}

/// Polls until `n` records arrived (or panics after WAIT); checks on the
/// way that each (partition, offset) comes once.
async fn read(c: &mut Consumer, n: usize, seen: &mut BTreeMap<(i32, i64), String>) {
    let deadline = Instant::now() + WAIT;
    let mut got = 0;
    while got < n {
        assert!(
            Instant::now() < deadline,
            "only {got} of {n} records arrived"
        );
        for r in c.poll(Duration::from_millis(200)).await.unwrap() {
            got += 1;
            let ConsumerRecord {
                partition,
                offset,
                value,
                ..
            } = r;
            let value = String::from_utf8(value.unwrap_or_default().to_vec()).unwrap();
            let again = seen.insert((partition, offset), value);
            assert!(
                again.is_none(),
                "{partition}/{offset} arrived twice: {again:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_reads_through_an_incremental_fetch_session() {
    let Some(b) = TestBroker::start() else { return };
    let c = cluster(&b).await;
    let t = unique("fetch-sessions");
    create_topic(&c, &t, PARTITIONS).await;
    for p in 0..PARTITIONS {
        let values: Vec<String> = (0..5).map(|i| format!("{p}/{i}")).collect();
        produce(&c, &t, p, &values).await;
    }

    let mut consumer = Consumer::connect(config(&b)).await.unwrap();
    consumer
        .assign((0..PARTITIONS).map(|p| (t.as_str(), p)))
        .unwrap();
    let mut seen = BTreeMap::new();
    read(&mut consumer, PARTITIONS as usize * 5, &mut seen).await;

    if b.is_sluiced() {
        // The consumer holds a session with the broker, over its partitions
        // (those with records still buffered are out of it for a moment).
        let sessions = b.metric("sluice_fetch_session_count");
        assert_eq!(sessions, Some(1.0), "one fetch session while reading");
        let cached = b.metric("sluice_fetch_session_partitions").unwrap_or(0.0);
        assert!(cached >= 1.0, "partitions in the session: {cached}");
    }

    // Later records in a few partitions arrive once each, through fetches
    // that name only the partitions whose positions moved.
    for p in [3, 17, 31] {
        let values: Vec<String> = (5..8).map(|i| format!("{p}/{i}")).collect();
        produce(&c, &t, p, &values).await;
    }
    read(&mut consumer, 9, &mut seen).await;
    assert_eq!(seen.len(), PARTITIONS as usize * 5 + 9);
    for p in 0..PARTITIONS {
        let last = if [3, 17, 31].contains(&p) { 8 } else { 5 };
        for i in 0..last {
            assert_eq!(
                seen.get(&(p, i)).map(String::as_str),
                Some(format!("{p}/{i}").as_str()),
                "partition {p} offset {i}"
            );
        }
    }
    // Nothing more comes.
    let more = consumer.poll(Duration::from_millis(500)).await.unwrap();
    assert!(more.is_empty(), "unexpected records: {more:?}");

    consumer.close().await.unwrap();
    if b.is_sluiced() {
        assert_eq!(
            b.metric("sluice_fetch_session_count"),
            Some(0.0),
            "close() closes the fetch session"
        );
    }
}
