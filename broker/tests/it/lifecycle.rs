//! Process lifecycle: clean shutdown on SIGTERM, consumer-group offsets
//! across restarts, and the Prometheus endpoint.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    FindCoordinatorRequest, GroupId, JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest,
    OffsetFetchRequest, SyncGroupRequest,
};
use sluice_protocol::ErrorCode;

#[test]
fn sigterm_exits_cleanly_and_keeps_acknowledged_data() {
    let mut broker = Broker::start_with("\"log.segment.bytes\" = 2048\n");
    let mut c = broker.client();
    create_topic_ok(&mut c, "clean", 3, &[]);
    let mut expected: Vec<Vec<String>> = vec![Vec::new(); 3];
    for i in 0..30 {
        let p = i % 3;
        let v = format!("m{i}-{}", "x".repeat(100));
        produce_ok(&mut c, "clean", p, batch(&[&v]));
        expected[p as usize].push(v);
    }
    // An idle connection stays open across the signal.
    let idle = broker.client();
    let status = broker.sigterm();
    assert!(status.success(), "sluiced exits 0 on SIGTERM, got {status}");
    drop(idle);
    drop(c);

    broker.restart();
    let mut c = broker.client();
    let tr = topic_ref(&mut c, "clean");
    for p in 0..3 {
        let values: Vec<String> = fetch_all(&mut c, &tr, p, 0)
            .iter()
            .map(Rec::value_str)
            .collect();
        assert_eq!(
            values, expected[p as usize],
            "partition {p} after a clean restart"
        );
    }
    assert_eq!(produce_ok(&mut c, "clean", 0, batch(&["after"])), 10);
    // A second clean stop right after start also exits 0.
    drop(c);
    let status = broker.sigterm();
    assert!(status.success(), "second SIGTERM: {status}");
}

fn join(c: &mut Client, group: &str, member_id: &str) -> JoinGroupResponse {
    let mut p = JoinGroupRequestProtocol::default();
    p.name = s("range");
    p.metadata = Bytes::from_static(b"\x00\x01\x00\x00\x00\x01\x00\x05group\x00\x00\x00\x00");
    let mut req = JoinGroupRequest::default();
    req.group_id = GroupId(s(group));
    req.session_timeout_ms = 10_000;
    req.rebalance_timeout_ms = 10_000;
    req.member_id = s(member_id);
    req.protocol_type = s("consumer");
    req.protocols = vec![p];
    c.send(7, &req)
}

/// Joins as a new member (handling MEMBER_ID_REQUIRED) and syncs; returns
/// (member id, generation).
fn join_and_sync(c: &mut Client, group: &str, member_id: &str) -> (String, i32) {
    let mut resp = join(c, group, member_id);
    if resp.error_code == ErrorCode::MemberIdRequired.code() {
        let id = resp.member_id.to_string();
        assert!(!id.is_empty(), "MEMBER_ID_REQUIRED carries a member id");
        resp = join(c, group, &id);
    }
    assert_eq!(resp.error_code, ErrorCode::None.code(), "JoinGroup");
    let member = resp.member_id.to_string();
    assert_eq!(resp.leader.as_str(), member, "the only member leads");
    let generation = resp.generation_id;

    let mut a = SyncGroupRequestAssignment::default();
    a.member_id = s(&member);
    a.assignment = Bytes::from_static(
        b"\x00\x01\x00\x00\x00\x01\x00\x05group\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",
    );
    let mut req = SyncGroupRequest::default();
    req.group_id = GroupId(s(group));
    req.generation_id = generation;
    req.member_id = s(&member);
    req.protocol_type = Some(s("consumer"));
    req.protocol_name = Some(s("range"));
    req.assignments = vec![a];
    let sync = c.send(5, &req);
    assert_eq!(sync.error_code, ErrorCode::None.code(), "SyncGroup");
    assert!(
        !sync.assignment.is_empty(),
        "the leader gets its assignment back"
    );
    (member, generation)
}

fn commit(
    c: &mut Client,
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    offsets: &[(i32, i64)],
) -> Vec<(i32, i16)> {
    let mut t = OffsetCommitRequestTopic::default();
    t.name = topic_name(topic);
    t.partitions = offsets
        .iter()
        .map(|(p, o)| {
            let mut rp = OffsetCommitRequestPartition::default();
            rp.partition_index = *p;
            rp.committed_offset = *o;
            rp.committed_metadata = Some(s("meta"));
            rp
        })
        .collect();
    let mut req = OffsetCommitRequest::default();
    req.group_id = GroupId(s(group));
    req.generation_id_or_member_epoch = generation;
    req.member_id = s(member);
    req.topics = vec![t];
    let resp = c.send(8, &req);
    let mut out: Vec<(i32, i16)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.error_code))
        })
        .collect();
    out.sort();
    out
}

fn fetch_offsets(
    c: &mut Client,
    group: &str,
    topic: &str,
    partitions: &[i32],
) -> Vec<(i32, i64, i16)> {
    let mut t = OffsetFetchRequestTopic::default();
    t.name = topic_name(topic);
    t.partition_indexes = partitions.to_vec();
    let mut req = OffsetFetchRequest::default();
    req.group_id = GroupId(s(group));
    req.topics = Some(vec![t]);
    let resp = c.send(7, &req);
    assert_eq!(resp.error_code, ErrorCode::None.code(), "OffsetFetch");
    let mut out: Vec<(i32, i64, i16)> = resp
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset, p.error_code))
        })
        .collect();
    out.sort();
    out
}

/// Every file under `dir` with its contents, for before/after comparisons.
fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read file");
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_damaged_metadata_file_stops_start_up_and_nothing_is_touched() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "kept", 2, &[]);
    let id = topic_ref(&mut c, "kept").id;
    produce_ok(&mut c, "kept", 0, batch(&["a", "b"]));
    drop(c);
    assert!(broker.sigterm().success());

    let meta = broker.data_dir().join("__cluster_metadata.json");
    let good = std::fs::read(&meta).expect("metadata file");
    let damages: [(&str, Vec<u8>, &str); 2] = [
        (
            "truncated",
            good[..good.len() / 2].to_vec(),
            "EOF while parsing",
        ),
        (
            "a topic id overwritten",
            String::from_utf8(good.clone())
                .expect("utf-8")
                .replace(&id.to_string(), "00000000-0000-zzzz-0000-000000000000")
                .into_bytes(),
            "is not a UUID",
        ),
    ];
    for (what, bytes, problem) in damages {
        std::fs::write(&meta, &bytes).expect("damage the file");
        let before = snapshot(&broker.data_dir());
        let status = broker.restart_expecting_exit();
        assert!(!status.success(), "{what}: sluiced must refuse to start");
        let log = broker.log();
        let last_start = log.rsplit("===== start #").next().unwrap_or_default();
        assert!(
            last_start.contains(&format!("metadata file {} is damaged", meta.display()))
                && last_start.contains(problem),
            "{what}: the error names the file and the problem\n{last_start}"
        );
        assert_eq!(
            snapshot(&broker.data_dir()),
            before,
            "{what}: the data directory is untouched"
        );
    }

    // With the file restored the topic is back, under its own id.
    std::fs::write(&meta, &good).expect("restore the file");
    broker.restart();
    let mut c = broker.client();
    let tr = topic_ref(&mut c, "kept");
    assert_eq!(tr.id, id);
    let values: Vec<String> = fetch_all(&mut c, &tr, 0, 0)
        .iter()
        .map(Rec::value_str)
        .collect();
    assert_eq!(values, ["a", "b"]);
}

#[test]
fn group_offsets_survive_restart_and_stale_generations_are_fenced() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "events", 3, &[]);

    let mut fc = FindCoordinatorRequest::default();
    fc.key_type = 0;
    fc.coordinator_keys = vec![s("g1")];
    let resp = c.send(4, &fc);
    assert_eq!(resp.coordinators.len(), 1);
    assert_eq!(resp.coordinators[0].error_code, ErrorCode::None.code());
    assert_eq!(resp.coordinators[0].port, i32::from(broker.port));

    let (member, gen1) = join_and_sync(&mut c, "g1", "");
    let r = commit(
        &mut c,
        "g1",
        &member,
        gen1,
        "events",
        &[(0, 5), (1, 7), (2, 11)],
    );
    assert_eq!(
        r,
        [
            (0, ErrorCode::None.code()),
            (1, ErrorCode::None.code()),
            (2, ErrorCode::None.code())
        ]
    );
    assert_eq!(
        fetch_offsets(&mut c, "g1", "events", &[0, 1, 2]),
        [
            (0, 5, ErrorCode::None.code()),
            (1, 7, ErrorCode::None.code()),
            (2, 11, ErrorCode::None.code())
        ]
    );

    // A generation the group never had.
    let r = commit(&mut c, "g1", &member, gen1 + 100, "events", &[(0, 99)]);
    assert_eq!(
        r,
        [(0, ErrorCode::IllegalGeneration.code())],
        "commit with a wrong generation"
    );

    // The leader rejoining starts a new generation; the old one is stale.
    let (member2, gen2) = join_and_sync(&mut c, "g1", &member);
    assert_eq!(member2, member);
    assert!(
        gen2 > gen1,
        "rejoin of the leader bumps the generation ({gen1} -> {gen2})"
    );
    let r = commit(&mut c, "g1", &member, gen1, "events", &[(0, 99)]);
    assert_eq!(
        r,
        [(0, ErrorCode::IllegalGeneration.code())],
        "commit with a stale generation"
    );
    let r = commit(&mut c, "g1", &member, gen2, "events", &[(1, 8)]);
    assert_eq!(r, [(1, ErrorCode::None.code())]);
    assert_eq!(
        fetch_offsets(&mut c, "g1", "events", &[0, 1, 2]),
        [
            (0, 5, ErrorCode::None.code()),
            (1, 8, ErrorCode::None.code()),
            (2, 11, ErrorCode::None.code())
        ]
    );

    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    // Loading the group may take a moment (COORDINATOR_LOAD_IN_PROGRESS);
    // poll, bounded.
    let mut got = Vec::new();
    let loaded = wait_until(|| {
        let mut t = OffsetFetchRequestTopic::default();
        t.name = topic_name("events");
        t.partition_indexes = vec![0, 1, 2];
        let mut req = OffsetFetchRequest::default();
        req.group_id = GroupId(s("g1"));
        req.topics = Some(vec![t]);
        let resp = c.send(7, &req);
        if resp.error_code != ErrorCode::None.code() {
            return false;
        }
        got = resp
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions
                    .iter()
                    .map(|p| (p.partition_index, p.committed_offset, p.error_code))
            })
            .collect();
        got.sort();
        true
    });
    assert!(loaded, "OffsetFetch answers after restart");
    assert_eq!(
        got,
        [
            (0, 5, ErrorCode::None.code()),
            (1, 8, ErrorCode::None.code()),
            (2, 11, ErrorCode::None.code())
        ],
        "committed offsets survive kill -9"
    );

    // The membership was persisted too: the old member rejoins at once (a
    // new member would wait for it to rejoin or time out, as in Kafka) and
    // the generation keeps growing.
    let (m3, gen3) = join_and_sync(&mut c, "g1", &member);
    assert_eq!(m3, member);
    assert!(
        gen3 > gen2,
        "generation keeps growing across restart ({gen2} -> {gen3})"
    );
    let r = commit(&mut c, "g1", &member, gen2, "events", &[(0, 99)]);
    assert_eq!(
        r,
        [(0, ErrorCode::IllegalGeneration.code())],
        "pre-restart generation is stale after the rebalance"
    );
    let r = commit(&mut c, "g1", &member, gen3, "events", &[(2, 12)]);
    assert_eq!(r, [(2, ErrorCode::None.code())]);
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read metrics");
    out
}

/// The value of the first sample line starting with `prefix`.
fn sample(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_endpoint_reports_produce() {
    let broker = Broker::start_opts(Opts {
        metrics: true,
        ..Opts::default()
    });
    let mut c = broker.client();
    create_topic_ok(&mut c, "metered", 1, &[]);
    for _ in 0..3 {
        produce_ok(&mut c, "metered", 0, batch(&["a", "b"]));
    }
    let port = broker.metrics_port.expect("metrics port");
    let resp = http_get(port, "/metrics");
    let (head, body) = resp.split_once("\r\n\r\n").expect("http response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let records = sample(
        body,
        "sluice_partition_records_in_total{topic=\"metered\",partition=\"0\"}",
    );
    assert_eq!(records, Some(6.0), "records in for metered-0");
    let produces = sample(body, "sluice_requests_total{api=\"Produce\"}");
    assert!(
        produces.is_some_and(|v| v >= 3.0),
        "Produce request count: {produces:?}"
    );
    let fsyncs = sample(body, "sluice_log_fsync_seconds_count");
    assert!(fsyncs.is_some_and(|v| v >= 1.0), "fsync count: {fsyncs:?}");

    let missing = http_get(port, "/nope");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // The MSK-style series beside them.
    let bytes_in = sample(
        body,
        "kafka_server_BrokerTopicMetrics_Count{name=\"MessagesInPerSec\",topic=\"metered\"}",
    );
    assert_eq!(bytes_in, Some(6.0), "MessagesInPerSec count for metered");
}

/// Reads one HTTP/1.1 response with a Content-Length body (or none, for
/// HEAD) off a kept-alive connection: (head, body).
fn read_response(s: &mut TcpStream, head_only: bool) -> (String, String) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read response head");
        assert!(
            n == 1,
            "connection closed mid-head: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length: ")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let mut body = vec![0u8; if head_only { 0 } else { len }];
    s.read_exact(&mut body).expect("read body");
    (head, String::from_utf8(body).unwrap())
}

#[test]
fn metrics_http_keep_alive_head_accept_and_bad_requests() {
    let broker = Broker::start_opts(Opts {
        metrics: true,
        ..Opts::default()
    });
    let port = broker.metrics_port.expect("metrics port");
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The request in pieces, then a second one on the same connection.
    s.write_all(b"GET /metrics HTTP/1.1\r\nHo").unwrap();
    std::thread::sleep(Duration::from_millis(50));
    s.write_all(b"st: x\r\n\r\n").unwrap();
    let (head, body) = read_response(&mut s, false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(!body.contains("# EOF"), "classic format has no EOF marker");
    assert!(
        body.contains("# TYPE sluice_requests_total counter"),
        "{body}"
    );
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n")
        .unwrap();
    let (head, body) = read_response(&mut s, false);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    // HEAD: the headers of a GET, no body.
    s.write_all(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s, true);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    s.write_all(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s, false);
    assert!(head.starts_with("HTTP/1.1 405"), "{head}");
    s.write_all(b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let (head, _) = read_response(&mut s, false);
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");

    // Garbage gets 400 and a closed connection; the server goes on.
    let mut bad = TcpStream::connect(("127.0.0.1", port)).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    bad.write_all(b"\x00\x01 NOT HTTP AT ALL\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = bad.read_to_string(&mut out);
    assert!(out.is_empty() || out.starts_with("HTTP/1.1 400"), "{out}");
    // A connection that sends half a request and vanishes.
    let mut half = TcpStream::connect(("127.0.0.1", port)).unwrap();
    half.write_all(b"GET /metr").unwrap();
    drop(half);
    let ok = http_get(port, "/metrics");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
}

#[test]
fn standalone_commits_without_membership() {
    // Consumers using assign() commit with generation -1 and no member id.
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "solo", 2, &[]);
    let r = commit(&mut c, "solo-group", "", -1, "solo", &[(0, 42)]);
    assert_eq!(
        r,
        [(0, ErrorCode::None.code())],
        "commit with generation -1 to an empty group"
    );
    assert_eq!(
        fetch_offsets(&mut c, "solo-group", "solo", &[0, 1]),
        [
            (0, 42, ErrorCode::None.code()),
            (1, -1, ErrorCode::None.code())
        ],
        "no commit -> offset -1"
    );
    let r = commit(&mut c, "solo-group", "", -1, "no-such-topic", &[(0, 1)]);
    assert_eq!(r, [(0, ErrorCode::UnknownTopicOrPartition.code())]);
    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    let ok = wait_until(|| {
        let mut t = OffsetFetchRequestTopic::default();
        t.name = topic_name("solo");
        t.partition_indexes = vec![0];
        let mut req = OffsetFetchRequest::default();
        req.group_id = GroupId(s("solo-group"));
        req.topics = Some(vec![t]);
        let resp = c.send(7, &req);
        resp.error_code == ErrorCode::None.code()
            && resp
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .map(|p| p.committed_offset)
                == Some(42)
    });
    assert!(ok, "standalone commit survives kill -9");
}

#[test]
fn sigterm_with_a_parked_long_poll_still_exits_cleanly() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "parked", 2, &[]);
    produce_ok(&mut c, "parked", 0, batch(&["kept"]));
    let topic = TopicRef {
        name: "parked".into(),
        id,
    };
    let port = broker.port;
    let waiter = std::thread::spawn(move || {
        let mut fc = Client::connect(port);
        // Either an (empty) answer or a closed connection is fine; the
        // point is that the broker does not hang.
        let _ = fc.try_send(12, &fetch_request(12, &topic, &[(0, 1), (1, 0)], 20_000, 1));
    });
    std::thread::sleep(Duration::from_millis(300));
    let status = broker.sigterm();
    assert!(status.success(), "exit status {status}");
    waiter.join().expect("fetch thread");
    broker.restart();
    let mut c = broker.client();
    let tr = topic_ref(&mut c, "parked");
    assert_eq!(
        fetch_all(&mut c, &tr, 0, 0)
            .iter()
            .map(Rec::value_str)
            .collect::<Vec<_>>(),
        ["kept"]
    );
}
