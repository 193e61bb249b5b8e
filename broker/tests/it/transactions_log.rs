//! Transactions on the partition side, over the wire: transactional
//! batches produced raw, commit and abort markers written with
//! WriteTxnMarkers as a coordinator would, and what consumers see:
//! read_uncommitted everything, read_committed only below the last stable
//! offset with the aborted transactions, ListOffsets isolation 1 answering
//! the last stable offset, DescribeProducers; all of it after kill -9 and
//! a restart, and on a 3-broker cluster after the leader dies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::*;
use bytes::Bytes;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, FetchRequest, FetchResponse, ListOffsetsRequest, ProducerId,
    WriteTxnMarkersRequest,
};
use sluice_protocol::batch::BatchBuilder;
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;

const TOPIC: &str = "txn";

/// A transactional batch from `pid` (epoch 0) starting at sequence `seq`.
fn txn_batch(pid: i64, seq: i32, values: &[&str]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None)
        .with_producer(pid, 0, seq)
        .with_transactional(true);
    for v in values {
        b.push(now_ms(), Some(b"k"), Some(v.as_bytes()), &[])
            .expect("push");
    }
    b.build()
}

/// Produce `records` (transactional batches) as producer `pid`'s
/// transactional id would, acks=all; asserts success, returns the base
/// offset. Transactional records need the request's transactional id.
fn produce_txn_ok(c: &mut Client, pid: i64, records: Bytes) -> i64 {
    let mut req = produce_request(-1, &[(TOPIC, 0, records)]);
    req.transactional_id = Some(kafka_protocol::messages::TransactionalId(s(&format!(
        "tx-{pid}"
    ))));
    let p = &c.send(9, &req).responses[0].partition_responses[0];
    assert_eq!(
        p.error_code, 0,
        "transactional produce: {:?}",
        p.error_message
    );
    p.base_offset
}

/// WriteTxnMarkers for one partition; its error code.
fn write_marker(
    c: &mut Client,
    topic: &str,
    partition: i32,
    pid: i64,
    commit: bool,
    coordinator_epoch: i32,
) -> ErrorCode {
    let mut t = WritableTxnMarkerTopic::default();
    t.name = topic_name(topic);
    t.partition_indexes = vec![partition];
    let mut m = WritableTxnMarker::default();
    m.producer_id = ProducerId(pid);
    m.producer_epoch = 0;
    m.transaction_result = commit;
    m.coordinator_epoch = coordinator_epoch;
    m.topics = vec![t];
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = vec![m];
    let resp = c.send(1, &req);
    assert_eq!(resp.markers.len(), 1);
    assert_eq!(resp.markers[0].producer_id.0, pid);
    let p = &resp.markers[0].topics[0].partitions[0];
    assert_eq!(p.partition_index, partition);
    ErrorCode::from_code(p.error_code)
}

/// One fetch of partition 0 at `version` and isolation level `isolation`.
fn fetch_iso(
    c: &mut Client,
    topic: &TopicRef,
    version: i16,
    offset: i64,
    isolation: i8,
) -> PartitionData {
    let mut req = fetch_request(version, topic, &[(0, offset)], 0, 0);
    req.isolation_level = isolation;
    let resp: FetchResponse = c.send(version, &req);
    let p = resp.responses[0].partitions[0].clone();
    assert_eq!(p.error_code, 0, "fetch at {offset}");
    p
}

/// (producer id, first offset) of a fetch answer's aborted transactions;
/// `None` when the list is null.
fn aborted(p: &PartitionData) -> Option<Vec<(i64, i64)>> {
    p.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect()
    })
}

/// ListOffsets LATEST with `isolation`.
fn latest(c: &mut Client, topic: &str, isolation: i8) -> i64 {
    let mut p = ListOffsetsPartition::default();
    p.partition_index = 0;
    p.timestamp = LATEST;
    let mut t = ListOffsetsTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = ListOffsetsRequest::default();
    req.replica_id = (-1).into();
    req.isolation_level = isolation;
    req.topics = vec![t];
    let resp = c.send(7, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets");
    p.offset
}

/// DescribeProducers of partition 0: producer id -> (epoch, last sequence,
/// coordinator epoch, current transaction start).
fn producers(c: &mut Client, topic: &str) -> BTreeMap<i64, (i32, i32, i32, i64)> {
    let mut t = TopicRequest::default();
    t.name = topic_name(topic);
    t.partition_indexes = vec![0];
    let mut req = DescribeProducersRequest::default();
    req.topics = vec![t];
    let resp = c.send(0, &req);
    let p = &resp.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "DescribeProducers");
    p.active_producers
        .iter()
        .map(|s| {
            (
                s.producer_id.0,
                (
                    s.producer_epoch,
                    s.last_sequence,
                    s.coordinator_epoch,
                    s.current_txn_start_offset,
                ),
            )
        })
        .collect()
}

/// The data records (control batches left out) of a fetch answer.
fn data_offsets(p: &PartitionData) -> Vec<i64> {
    let Some(records) = p.records.as_ref() else {
        return Vec::new();
    };
    sluice_protocol::batch::split_batches(records)
        .expect("batches")
        .into_iter()
        .filter(|(h, _)| !h.is_control())
        .flat_map(|(h, _)| h.base_offset..=h.last_offset())
        .collect()
}

#[test]
fn read_committed_stops_at_the_lso_and_lists_aborts_across_a_kill9() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, TOPIC, 1, &[]);
    let topic = topic_ref(&mut c, TOPIC);
    let (a, b) = (1_000, 2_000);

    // 0-1 plain, 2-3 a's transaction, 4 b's transaction.
    assert_eq!(produce_ok(&mut c, TOPIC, 0, batch(&["p0", "p1"])), 0);
    assert_eq!(produce_txn_ok(&mut c, a, txn_batch(a, 0, &["a0", "a1"])), 2);
    assert_eq!(produce_txn_ok(&mut c, b, txn_batch(b, 0, &["b0"])), 4);
    // Inside its transaction a producer writes only transactional batches.
    let r = produce(&mut c, TOPIC, 0, idem_batch(a, 0, 2, &["x"]));
    assert_eq!(r.error_code, ErrorCode::InvalidTxnState.code());

    for version in [4, 12] {
        let all = fetch_iso(&mut c, &topic, version, 0, 0);
        assert_eq!(all.high_watermark, 5);
        assert_eq!(all.last_stable_offset, 2, "a's transaction holds the LSO");
        assert_eq!(aborted(&all), None, "null for read_uncommitted");
        assert_eq!(data_offsets(&all), [0, 1, 2, 3, 4]);
        let committed = fetch_iso(&mut c, &topic, version, 0, 1);
        assert_eq!(committed.last_stable_offset, 2);
        assert_eq!(data_offsets(&committed), [0, 1]);
        assert_eq!(aborted(&committed), Some(Vec::new()));
        let none_yet = fetch_iso(&mut c, &topic, version, 2, 1);
        assert!(none_yet.records.as_ref().is_none_or(|r| r.is_empty()));
    }
    assert_eq!(latest(&mut c, TOPIC, 0), 5);
    assert_eq!(latest(&mut c, TOPIC, 1), 2);
    let ps = producers(&mut c, TOPIC);
    assert_eq!(ps[&a], (0, 1, -1, 2));
    assert_eq!(ps[&b], (0, 0, -1, 4));

    // a aborts (marker at 5); b is still open.
    assert_eq!(write_marker(&mut c, TOPIC, 0, a, false, 3), ErrorCode::None);
    // A coordinator with an older epoch is fenced; unknown partitions say so.
    assert_eq!(
        write_marker(&mut c, TOPIC, 0, a, true, 2),
        ErrorCode::TransactionCoordinatorFenced
    );
    assert_eq!(
        write_marker(&mut c, TOPIC, 7, a, true, 3),
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        write_marker(&mut c, "nope", 0, a, true, 3),
        ErrorCode::UnknownTopicOrPartition
    );
    let check_after_abort = |c: &mut Client| {
        assert_eq!(latest(c, TOPIC, 1), 4, "b's transaction holds the LSO");
        for version in [4, 12] {
            let p = fetch_iso(c, &topic, version, 0, 1);
            assert_eq!(p.last_stable_offset, 4);
            assert_eq!(data_offsets(&p), [0, 1, 2, 3]);
            assert_eq!(aborted(&p), Some(vec![(a, 2)]));
        }
        let ps = producers(c, TOPIC);
        assert_eq!(ps[&a], (0, 1, 3, -1));
        assert_eq!(ps[&b].3, 4);
    };
    check_after_abort(&mut c);

    // kill -9 with b's transaction open: its start holds the LSO again and
    // a's abort is still listed (the transaction index came back).
    broker.restart();
    let mut c = broker.client();
    check_after_abort(&mut c);

    // A read_committed long poll at the LSO wakes when b commits.
    let port = broker.port;
    let waiter = std::thread::spawn(move || {
        let mut c = Client::connect(port);
        let mut req: FetchRequest = fetch_request(12, &topic, &[(0, 4)], 5_000, 1);
        req.isolation_level = 1;
        let started = Instant::now();
        let resp: FetchResponse = c.send(12, &req);
        (resp.responses[0].partitions[0].clone(), started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(write_marker(&mut c, TOPIC, 0, b, true, 3), ErrorCode::None);
    let (woken, waited) = waiter.join().expect("waiter");
    assert!(waited < Duration::from_secs(4), "woke after {waited:?}");
    assert_eq!(woken.last_stable_offset, 7);
    assert_eq!(data_offsets(&woken), [4]);
    // a's abort marker (5) is among what it returns: still listed.
    assert_eq!(aborted(&woken), Some(vec![(a, 2)]));
    assert_eq!(latest(&mut c, TOPIC, 1), 7);
    let topic = topic_ref(&mut c, TOPIC);
    let p = fetch_iso(&mut c, &topic, 12, 0, 1);
    assert_eq!(data_offsets(&p), [0, 1, 2, 3, 4]);
    assert_eq!(aborted(&p), Some(vec![(a, 2)]));

    // Produce naming a transactional id is served (no IAM policies here);
    // control batches from clients stay refused.
    let mut req = produce_request(-1, &[(TOPIC, 0, txn_batch(a, 2, &["a2"]))]);
    req.transactional_id = Some(kafka_protocol::messages::TransactionalId(s("tx-a")));
    let resp = c.send(9, &req);
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    let control = BatchBuilder::new(Compression::None)
        .with_producer(a, 0, -1)
        .with_transactional(true)
        .with_control(true);
    let mut control = control;
    control
        .push(
            now_ms(),
            Some(&[0, 0, 0, 1]),
            Some(&[0, 0, 0, 0, 0, 3]),
            &[],
        )
        .expect("push");
    let r = produce(&mut c, TOPIC, 0, control.build());
    assert_eq!(r.error_code, ErrorCode::InvalidRecord.code());
    assert_eq!(
        latest(&mut c, TOPIC, 1),
        7,
        "a's new transaction holds the LSO"
    );
}

// ---------------------------------------------------------------- cluster

fn node_config(id: i32, voters: &str) -> String {
    format!(
        r#"
"node.id" = {id}
"process.roles" = "broker,controller"
"controller.quorum.voters" = "{voters}"
"controller.listener.names" = "CONTROLLER"
"broker.session.timeout.ms" = 2000
"broker.heartbeat.interval.ms" = 300
"controller.quorum.election.timeout.ms" = 500
"shards.pin.cores" = false
"#
    )
}

fn start_cluster() -> Vec<Broker> {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let voters = quorum_voters(&ports);
    let mut nodes: Vec<Broker> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            Broker::launch_opts(Opts {
                config: node_config(i as i32 + 1, &voters),
                shards: 1,
                listeners: vec![format!("CONTROLLER://127.0.0.1:{port}")],
                ..Opts::default()
            })
        })
        .collect();
    for n in &mut nodes {
        n.wait_until_ready();
    }
    nodes
}

/// Partition 0's (leader, isr) as `node` sees it.
fn leader_and_isr(node: &Broker, topic: &str) -> (i32, Vec<i32>) {
    let m = metadata(&mut node.client(), Some(&[topic]));
    let t = &m.topics[0];
    match t.partitions.iter().find(|p| p.partition_index == 0) {
        Some(p) if t.error_code == 0 => (
            p.leader_id.0,
            p.isr_nodes.iter().map(|b| b.0).collect::<Vec<_>>(),
        ),
        _ => (-1, Vec::new()),
    }
}

fn logs(nodes: &[Broker]) -> String {
    node_logs(nodes, 40)
}

#[test]
fn a_new_leader_keeps_the_lso_of_an_open_transaction_and_the_aborted_list() {
    let mut nodes = start_cluster();
    let r = create_topic(&mut nodes[0].client(), TOPIC, 1, 3, &[]);
    assert_eq!(r.error_code, 0, "{:?}", r.error_message);
    let ok = wait_until(|| {
        let (leader, isr) = leader_and_isr(&nodes[0], TOPIC);
        leader > 0 && isr.len() == 3
    });
    assert!(ok, "no leader with a full ISR\n{}", logs(&nodes));
    let (leader, _) = leader_and_isr(&nodes[0], TOPIC);
    let (a, b) = (1_000, 2_000);
    {
        let mut c = nodes[(leader - 1) as usize].client();
        assert_eq!(produce_ok(&mut c, TOPIC, 0, batch(&["p0"])), 0);
        assert_eq!(produce_txn_ok(&mut c, a, txn_batch(a, 0, &["a0", "a1"])), 1);
        assert_eq!(produce_txn_ok(&mut c, b, txn_batch(b, 0, &["b0"])), 3);
        assert_eq!(write_marker(&mut c, TOPIC, 0, a, false, 0), ErrorCode::None);
        assert_eq!(produce_ok(&mut c, TOPIC, 0, batch(&["p5"])), 5);
        assert_eq!(latest(&mut c, TOPIC, 1), 3);
    }
    // Every replica has everything (the marker waited for the high
    // watermark; the last produce was acks=all too).
    nodes[(leader - 1) as usize].kill9();
    let survivor = if leader == 1 { 2 } else { 1 };
    let mut new_leader = -1;
    let ok = wait_until(|| {
        let (l, _) = leader_and_isr(&nodes[(survivor - 1) as usize], TOPIC);
        new_leader = l;
        l > 0 && l != leader
    });
    assert!(ok, "no new leader\n{}", logs(&nodes));
    let mut c = nodes[(new_leader - 1) as usize].client();
    let topic = topic_ref(&mut c, TOPIC);
    // The new leader may need a moment to take over; then b's transaction
    // still holds the LSO and a's abort is still listed.
    let mut last = None;
    let ok = wait_until(|| {
        let mut req = fetch_request(12, &topic, &[(0, 0)], 0, 0);
        req.isolation_level = 1;
        let resp: FetchResponse = c.send(12, &req);
        let p = resp.responses[0].partitions[0].clone();
        let done = p.error_code == 0 && p.high_watermark == 6;
        last = Some(p);
        done
    });
    assert!(ok, "new leader did not serve: {last:?}\n{}", logs(&nodes));
    let p = last.expect("answer");
    assert_eq!(p.last_stable_offset, 3, "b's open transaction");
    assert_eq!(data_offsets(&p), [0, 1, 2]);
    assert_eq!(aborted(&p), Some(vec![(a, 1)]));
    assert_eq!(latest(&mut c, TOPIC, 1), 3);
    let ps = producers(&mut c, TOPIC);
    assert_eq!(ps[&b].3, 3, "the new leader knows b's transaction");
    // b commits through the new leader: everything is stable.
    assert_eq!(write_marker(&mut c, TOPIC, 0, b, true, 0), ErrorCode::None);
    assert_eq!(latest(&mut c, TOPIC, 1), 7);
}
