//! Test support: a real broker to talk to. By default a fresh `sluiced`
//! (the release binary the workspace builds) on a free loopback port with a
//! temporary data directory; with `SLUICE_TEST_KAFKA_BOOTSTRAP=host:port`,
//! an Apache Kafka broker started by `scripts/kafka-kraft` instead.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestBroker {
    pub bootstrap: String,
    /// sluiced's Prometheus endpoint (host:port); `None` against Kafka.
    pub metrics: Option<String>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

pub fn sluiced_bin() -> PathBuf {
    std::env::var_os("SLUICED_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/release/sluiced"))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

impl TestBroker {
    /// A broker for this test, or `None` (with a message) when neither a
    /// Kafka bootstrap is given nor the sluiced binary is built.
    pub fn start() -> Option<TestBroker> {
        if let Ok(b) = std::env::var("SLUICE_TEST_KAFKA_BOOTSTRAP") {
            return Some(TestBroker {
                bootstrap: b,
                metrics: None,
                child: None,
                _dir: None,
            });
        }
        let bin = sluiced_bin();
        // Missing is a failure, not a skip: a suite that quietly tests
        // nothing is worse than a red one.
        assert!(
            bin.exists(),
            "{} is not built: cargo build --release -p sluice-broker (or set SLUICED_BIN)",
            bin.display()
        );
        let dir = tempfile::tempdir().ok()?;
        let port = free_port();
        let metrics = format!("127.0.0.1:{}", free_port());
        let child = Command::new(&bin)
            .args([
                "--metrics",
                &metrics,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--shards",
                "2",
                "--data-dir",
            ])
            .arg(dir.path().join("data"))
            .args([
                "--set",
                "group.initial.rebalance.delay.ms=0",
                "--set",
                "num.partitions=3",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let bootstrap = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&bootstrap).is_err() {
            if Instant::now() > deadline {
                panic!("sluiced did not start on {bootstrap}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(TestBroker {
            bootstrap,
            metrics: Some(metrics),
            child: Some(child),
            _dir: Some(dir),
        })
    }

    pub fn is_sluiced(&self) -> bool {
        self.child.is_some()
    }

    /// The value of an unlabelled sluiced metric (`None` against Kafka, or
    /// when the endpoint or the series is missing).
    pub fn metric(&self, name: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let addr = self.metrics.as_ref()?;
        let mut s = std::net::TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        body.lines().find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            if n == name {
                v.trim().parse().ok()
            } else {
                None
            }
        })
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// A client cluster view of `b` for a test's own setup requests.
pub async fn connect_cluster(
    b: &TestBroker,
    client_id: &str,
) -> std::sync::Arc<sluice::net::Cluster> {
    let cfg = sluice::ClientConfig::from_properties([
        ("bootstrap.servers", b.bootstrap.as_str()),
        ("client.id", client_id),
    ])
    .unwrap();
    sluice::net::Cluster::connect(cfg).await.expect("connect")
}

/// Creates `name` (replication factor 1) and waits until every partition
/// has a leader.
pub async fn create_topic(c: &sluice::net::Cluster, name: &str, partitions: i32) {
    use kafka_protocol::messages::create_topics_request::CreatableTopic;
    use kafka_protocol::messages::{CreateTopicsRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use sluice::ErrorCode;
    let mut t = CreatableTopic::default();
    t.name = TopicName(StrBytes::from_string(name.to_string()));
    t.num_partitions = partitions;
    t.replication_factor = 1;
    let mut req = CreateTopicsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 30_000;
    let conn = c.any_connection().await.unwrap();
    let resp = conn.send(&req).await.unwrap();
    assert_eq!(
        ErrorCode::from_code(resp.topics[0].error_code),
        ErrorCode::None,
        "CreateTopics {name}: {:?}",
        resp.topics[0].error_message
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        c.refresh_metadata(&[name.to_string()]).await.unwrap();
        if let Some(t) = c.topic(name) {
            if t.partitions.len() == partitions as usize
                && t.partitions.iter().all(|p| p.leader >= 0)
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "topic {name} has no leaders");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Produces one batch (acks=all) to a partition through its leader,
/// retrying while a new topic's leader is not ready yet (Kafka answers
/// NOT_LEADER_OR_FOLLOWER for a moment); returns its base offset.
pub async fn produce_batch(
    c: &sluice::net::Cluster,
    topic: &str,
    partition: i32,
    records: bytes::Bytes,
) -> i64 {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use sluice::ErrorCode;
    let mut pd = PartitionProduceData::default();
    pd.index = partition;
    pd.records = Some(records);
    let mut td = TopicProduceData::default();
    td.name = TopicName(StrBytes::from_string(topic.to_string()));
    td.partition_data = vec![pd];
    let mut req = ProduceRequest::default();
    req.acks = -1;
    req.timeout_ms = 30_000;
    req.topic_data = vec![td];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let leader = c.leader_for(topic, partition).expect("leader");
        let conn = c.connection(leader).await.unwrap();
        let resp = conn.send(&req).await.unwrap();
        let p = &resp.responses[0].partition_responses[0];
        if p.error_code == ErrorCode::NotLeaderOrFollower.code() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            c.refresh_metadata(&[topic.to_string()]).await.unwrap();
            continue;
        }
        assert_eq!(
            ErrorCode::from_code(p.error_code),
            ErrorCode::None,
            "produce to {topic}-{partition}"
        );
        return p.base_offset;
    }
}
