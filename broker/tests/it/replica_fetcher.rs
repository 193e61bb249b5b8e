//! The replica fetcher against a real single-node `sluiced`: records
//! produced to the broker are fetched (consumer-style, replica id -1, up to
//! the high watermark) into local partition logs in a temporary directory,
//! which must end up holding byte-identical batches at the leader's offsets,
//! across a restart of the follower side, and from a leader whose log start
//! was moved by DeleteRecords (OFFSET_OUT_OF_RANGE, then starting over).

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::support::*;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::DeleteRecordsRequest;
use sluice_broker::config::BrokerConfig;
use sluice_broker::log::{LogConfig, PartitionLog};
use sluice_broker::metrics::PartitionMetrics;
use sluice_broker::peer::PeerConfig;
use sluice_broker::replica::fetcher::{FetchState, FetcherConfig, ReplicaFetcher};
use sluice_protocol::ErrorCode;

const TOPIC: &str = "replicated";

fn fetcher_config() -> FetcherConfig {
    FetcherConfig {
        replica_id: -1,
        max_wait: Duration::from_millis(100),
        backoff: Duration::from_millis(50),
        peer: PeerConfig {
            reconnect_backoff: Duration::from_millis(20),
            reconnect_backoff_max: Duration::from_millis(200),
            ..PeerConfig::default()
        },
        ..FetcherConfig::default()
    }
}

async fn open_local(dir: &Path, topic: &TopicRef, partition: i32) -> Rc<PartitionLog> {
    // Small segments, so the follower rolls on its own schedule.
    let overrides = BTreeMap::from([("segment.bytes".to_string(), "1024".to_string())]);
    PartitionLog::open(
        &dir.join(PartitionLog::dir_name(TOPIC, partition)),
        TOPIC,
        topic.id,
        partition,
        LogConfig::resolve(&BrokerConfig::default(), &overrides),
        PartitionMetrics::default(),
    )
    .await
    .expect("open the local log")
}

/// The concatenated segment files of a partition directory.
fn segment_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for name in log_files(dir) {
        out.extend(std::fs::read(dir.join(name)).expect("segment"));
    }
    out
}

/// Waits (bounded) on the compio runtime until `log` ends at `end`.
async fn caught_up(log: &PartitionLog, end: i64, fetcher: &ReplicaFetcher) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.state.borrow().log_end_offset < end || log.high_watermark() < end {
        assert!(
            Instant::now() < deadline,
            "follower of {}-{} stuck at {} (hw {}) short of {end}; states {:?}",
            log.topic,
            log.partition,
            log.state.borrow().log_end_offset,
            log.high_watermark(),
            fetcher.states()
        );
        compio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn produce_some(c: &mut Client, partition: i32, from: usize, n: usize) -> i64 {
    let mut end = 0;
    for i in from..from + n {
        let v1 = format!("p{partition}-value-{i}-a");
        let v2 = format!("p{partition}-value-{i}-b");
        let records = if i % 3 == 0 {
            idem_batch(
                4_000 + i64::from(partition),
                0,
                2 * (i / 3) as i32,
                &[&v1, &v2],
            )
        } else {
            batch(&[&v1, &v2])
        };
        let base = produce_ok(c, TOPIC, partition, records);
        end = base + 2;
    }
    end
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("compio runtime")
        .block_on(f)
}

#[test]
fn a_follower_log_matches_the_leader_byte_for_byte() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, TOPIC, 2, &[]);
    let topic = topic_ref(&mut c, TOPIC);
    // Idempotent producers start at sequence 0 per partition.
    let mut ends = [0i64; 2];
    for p in 0..2 {
        ends[p as usize] = produce_some(&mut c, p, 0, 12);
    }
    let local = tempfile::tempdir().expect("tempdir");

    run(async {
        let fetcher =
            ReplicaFetcher::start(1, &format!("127.0.0.1:{}", broker.port), fetcher_config());
        let mut logs = Vec::new();
        for p in 0..2 {
            let log = open_local(local.path(), &topic, p).await;
            fetcher.add_partition(log.clone(), 0);
            logs.push(log);
        }
        for (p, log) in logs.iter().enumerate() {
            caught_up(log, ends[p], &fetcher).await;
        }
        assert!(fetcher.rounds() > 0);
        // Removing a partition returns its log, quiet.
        let removed = fetcher.remove_partition((topic.id, 1)).await;
        assert!(removed.is_some());
        assert_eq!(fetcher.state_of((topic.id, 1)), None);
        fetcher.stop().await;
        for log in &logs {
            log.close();
        }
    });
    for p in 0..2 {
        assert_eq!(
            segment_bytes(&local.path().join(format!("{TOPIC}-{p}"))),
            segment_bytes(&broker.partition_dir(TOPIC, p)),
            "partition {p}: the follower's batches are the leader's, byte for byte"
        );
    }

    // More records; the follower side restarts from its own files.
    for p in 0..2 {
        ends[p as usize] = produce_some(&mut c, p, 12, 40);
    }
    run(async {
        let fetcher =
            ReplicaFetcher::start(1, &format!("127.0.0.1:{}", broker.port), fetcher_config());
        let mut logs = Vec::new();
        for p in 0..2 {
            let log = open_local(local.path(), &topic, p).await;
            fetcher.add_partition(log.clone(), 0);
            logs.push(log);
        }
        for (p, log) in logs.iter().enumerate() {
            caught_up(log, ends[p], &fetcher).await;
            // The leader's producer state came along.
            let pid = 4_000 + p as i64;
            assert!(log.state.borrow().producers.producers.contains_key(&pid));
            assert_eq!(log.last_epoch(), 0);
            assert!(log.state.borrow().segments.len() > 1, "rolled");
        }
        fetcher.stop().await;
        for log in &logs {
            log.close();
        }
    });
    for p in 0..2 {
        let dir = local.path().join(format!("{TOPIC}-{p}"));
        assert_eq!(
            segment_bytes(&dir),
            segment_bytes(&broker.partition_dir(TOPIC, p)),
            "partition {p} after a restart"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("leader-epoch-checkpoint")).expect("checkpoint"),
            "0\n1\n0 0\n"
        );
    }
}

#[test]
fn a_follower_behind_the_leaders_log_start_starts_over() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, TOPIC, 1, &[]);
    let topic = topic_ref(&mut c, TOPIC);
    let end = produce_some(&mut c, 0, 0, 6);
    // Move the leader's log start into the middle of a batch.
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = 0;
    p.offset = 5;
    let mut t = DeleteRecordsTopic::default();
    t.name = topic_name(TOPIC);
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let resp = c.send(2, &req);
    assert_eq!(
        resp.topics[0].partitions[0].error_code,
        ErrorCode::None.code()
    );
    assert_eq!(resp.topics[0].partitions[0].low_watermark, 5);

    let local = tempfile::tempdir().expect("tempdir");
    run(async {
        let fetcher =
            ReplicaFetcher::start(1, &format!("127.0.0.1:{}", broker.port), fetcher_config());
        let log = open_local(local.path(), &topic, 0).await;
        fetcher.add_partition(log.clone(), 0);
        caught_up(&log, end, &fetcher).await;
        // Out of range at 0, started over at 5, then at the batch holding 5.
        assert_eq!(log.log_start_offset(), 4);
        assert_eq!(fetcher.state_of((topic.id, 0)), Some(FetchState::Fetching));
        // A partition the leader does not have gets parked.
        let stray = PartitionLog::open(
            &local.path().join("stray-0"),
            "stray",
            uuid::Uuid::new_v4(),
            0,
            LogConfig::resolve(&BrokerConfig::default(), &BTreeMap::new()),
            PartitionMetrics::default(),
        )
        .await
        .expect("open");
        let stray_key = (stray.topic_id, 0);
        fetcher.add_partition(stray, 0);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(fetcher.state_of(stray_key), Some(FetchState::Parked(_))) {
            assert!(Instant::now() < deadline, "{:?}", fetcher.states());
            compio::time::sleep(Duration::from_millis(20)).await;
        }
        fetcher.stop().await;
        log.close();
    });
    // The follower holds the leader's batches from the one holding offset 5.
    let leader = segment_bytes(&broker.partition_dir(TOPIC, 0));
    let follower = segment_bytes(&local.path().join(format!("{TOPIC}-0")));
    assert!(!follower.is_empty());
    assert!(
        leader.ends_with(&follower),
        "the follower's bytes are the tail of the leader's"
    );
    let first = sluice_protocol::batch::BatchHeader::parse(&follower).expect("header");
    assert_eq!(first.base_offset, 4);
}
