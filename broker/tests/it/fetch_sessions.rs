//! Incremental fetch sessions (KIP-227) over the wire, with raw Fetch
//! requests: a full fetch makes a session; incremental fetches name only
//! changed partitions and get only partitions with news; forgotten
//! partitions leave the session; a wrong epoch, an unknown session and a
//! mix of topic names and ids are refused; epoch -1 closes; the cache's
//! slots and eviction follow `max.incremental.fetch.session.cache.slots`
//! and `min.incremental.fetch.session.eviction.ms`, and its metrics count.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::support::*;
use kafka_protocol::messages::fetch_request::ForgottenTopic;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use sluice_protocol::ErrorCode;

/// Every answered partition: (partition, error, high watermark, record values).
fn answered(resp: &FetchResponse) -> Vec<(i32, i16, i64, Vec<String>)> {
    let mut out: Vec<_> = resp
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                let values = decode(p.records.as_ref())
                    .iter()
                    .map(Rec::value_str)
                    .collect();
                (p.partition_index, p.error_code, p.high_watermark, values)
            })
        })
        .collect();
    out.sort_by_key(|a| a.0);
    out
}

fn partitions_of(resp: &FetchResponse) -> Vec<i32> {
    answered(resp).iter().map(|a| a.0).collect()
}

/// A fetch in session `id` at `epoch` naming `parts` ((partition, offset)).
fn session_fetch(
    version: i16,
    topic: &TopicRef,
    id: i32,
    epoch: i32,
    parts: &[(i32, i64)],
) -> FetchRequest {
    let mut req = fetch_request(version, topic, parts, 50, 1);
    req.session_id = id;
    req.session_epoch = epoch;
    if parts.is_empty() {
        req.topics.clear();
    }
    req
}

fn forget(req: &mut FetchRequest, version: i16, topic: &TopicRef, partitions: &[i32]) {
    let mut f = ForgottenTopic::default();
    if version >= 13 {
        f.topic_id = topic.id;
    } else {
        f.topic = topic_name(&topic.name);
    }
    f.partitions = partitions.to_vec();
    req.forgotten_topics_data.push(f);
}

fn ok(resp: &FetchResponse) {
    assert_eq!(
        ErrorCode::from_code(resp.error_code),
        ErrorCode::None,
        "fetch top-level error"
    );
}

fn refused(resp: &FetchResponse, code: ErrorCode) {
    assert_eq!(ErrorCode::from_code(resp.error_code), code);
    assert_eq!(resp.session_id, 0);
    assert!(resp.responses.is_empty(), "a refused fetch carries no data");
}

fn metric(broker: &Broker, name: &str) -> f64 {
    let port = broker.metrics_port.expect("metrics port");
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("read metrics");
    body.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

fn values(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

fn produce_values(c: &mut Client, topic: &str, partition: i32, vs: &[String]) -> i64 {
    let refs: Vec<&str> = vs.iter().map(String::as_str).collect();
    produce_ok(c, topic, partition, batch(&refs))
}

/// Full, then incremental fetches, with topics named (v12) or by id (v13+).
fn full_and_incremental(version: i16) {
    let broker = Broker::start_opts(Opts {
        metrics: true,
        ..Opts::default()
    });
    let mut c = broker.client();
    let name = format!("sessions-v{version}");
    create_topic_ok(&mut c, &name, 4, &[]);
    let topic = topic_ref(&mut c, &name);
    produce_values(&mut c, &name, 0, &values("a", 3));
    produce_values(&mut c, &name, 1, &values("b", 2));

    // A full fetch asks for a session and is answered for every partition.
    let all: Vec<(i32, i64)> = (0..4).map(|p| (p, 0)).collect();
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, 0, 0, &all));
    ok(&resp);
    let id = resp.session_id;
    assert!(id > 0, "a full fetch with epoch 0 gets a session");
    let a = answered(&resp);
    assert_eq!(partitions_of(&resp), vec![0, 1, 2, 3]);
    assert_eq!(a[0].3, values("a", 3));
    assert_eq!(a[1].3, values("b", 2));
    assert_eq!(metric(&broker, "sluice_fetch_session_count"), 1.0);
    assert_eq!(metric(&broker, "sluice_fetch_session_partitions"), 4.0);

    // Positions moved on 0 and 1; nothing new anywhere: an empty answer.
    let resp: FetchResponse = c.send(
        version,
        &session_fetch(version, &topic, id, 1, &[(0, 3), (1, 2)]),
    );
    ok(&resp);
    assert_eq!(resp.session_id, id);
    assert_eq!(partitions_of(&resp), Vec::<i32>::new());

    // Records on 2: only 2 is answered, though the request names nothing.
    produce_values(&mut c, &name, 2, &values("c", 4));
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, id, 2, &[]));
    ok(&resp);
    assert_eq!(resp.session_id, id);
    let a = answered(&resp);
    assert_eq!(a.len(), 1, "only the partition with news: {a:?}");
    assert_eq!((a[0].0, a[0].2), (2, 4));
    assert_eq!(a[0].3, values("c", 4));

    // 2 is forgotten; records on 2 and 3: only 3 is answered.
    produce_values(&mut c, &name, 2, &values("c2", 1));
    produce_values(&mut c, &name, 3, &values("d", 1));
    let mut req = session_fetch(version, &topic, id, 3, &[]);
    forget(&mut req, version, &topic, &[2]);
    let resp: FetchResponse = c.send(version, &req);
    ok(&resp);
    let a = answered(&resp);
    assert_eq!(partitions_of(&resp), vec![3], "{a:?}");
    assert_eq!(a[0].3, values("d", 1));
    assert_eq!(metric(&broker, "sluice_fetch_session_partitions"), 3.0);

    // A wrong epoch and an unknown session are refused; the session is
    // still there at the right epoch afterwards.
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, id, 9, &[]));
    refused(&resp, ErrorCode::InvalidFetchSessionEpoch);
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, id, 3, &[]));
    refused(&resp, ErrorCode::InvalidFetchSessionEpoch);
    let unknown = id.wrapping_add(2).max(1);
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, unknown, 1, &[]));
    refused(&resp, ErrorCode::FetchSessionIdNotFound);
    // Names and ids do not mix in one session.
    let other = if version >= 13 { 12 } else { 13 };
    let resp: FetchResponse = c.send(other, &session_fetch(other, &topic, id, 4, &[]));
    refused(&resp, ErrorCode::FetchSessionTopicIdError);
    // 3 moves on; 0 gets records.
    produce_values(&mut c, &name, 0, &values("a2", 2));
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, id, 4, &[(3, 1)]));
    ok(&resp);
    let a = answered(&resp);
    assert_eq!(partitions_of(&resp), vec![0], "{a:?}");
    assert_eq!(a[0].3, values("a2", 2));

    // A partition added to the session is answered once even with no news.
    let resp: FetchResponse = c.send(
        version,
        &session_fetch(version, &topic, id, 5, &[(0, 5), (2, 5)]),
    );
    ok(&resp);
    assert_eq!(partitions_of(&resp), vec![2]);
    assert!(answered(&resp)[0].3.is_empty());

    // Session-less fetches (epoch -1, no id) leave the cache alone.
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, 0, -1, &all));
    ok(&resp);
    assert_eq!(resp.session_id, 0);
    assert_eq!(partitions_of(&resp), vec![0, 1, 2, 3]);
    assert_eq!(metric(&broker, "sluice_fetch_session_count"), 1.0);

    // Epoch -1 with the id closes the session.
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, id, -1, &[]));
    ok(&resp);
    assert_eq!(resp.session_id, 0);
    assert_eq!(metric(&broker, "sluice_fetch_session_count"), 0.0);
    assert_eq!(metric(&broker, "sluice_fetch_session_partitions"), 0.0);
    let resp: FetchResponse = c.send(version, &session_fetch(version, &topic, id, 6, &[]));
    refused(&resp, ErrorCode::FetchSessionIdNotFound);
}

#[test]
fn full_and_incremental_fetches_by_topic_name() {
    full_and_incremental(12);
}

#[test]
fn full_and_incremental_fetches_by_topic_id() {
    full_and_incremental(13);
}

#[test]
fn a_session_named_from_another_connection() {
    // Four shards: a new connection lands on the session's shard or on
    // another (SO_REUSEPORT), and either must be handled.
    let broker = Broker::start_opts(Opts {
        metrics: true,
        shards: 4,
        ..Opts::default()
    });
    let mut c = broker.client();
    create_topic_ok(&mut c, "moving", 2, &[]);
    let topic = topic_ref(&mut c, "moving");
    let all = [(0, 0), (1, 0)];
    let resp: FetchResponse = c.send(12, &session_fetch(12, &topic, 0, 0, &all));
    let mut session = resp.session_id;
    assert!(session > 0);
    let mut foreign = 0;
    for round in 0..8 {
        let mut other = broker.client();
        // Incremental from the new connection: served by the session's
        // shard, or the client is told to start over; nothing else.
        let resp: FetchResponse = other.send(12, &session_fetch(12, &topic, session, 1, &[]));
        match ErrorCode::from_code(resp.error_code) {
            ErrorCode::None => {
                assert_eq!(resp.session_id, session);
                assert!(resp.responses.is_empty(), "nothing new");
            }
            ErrorCode::FetchSessionIdNotFound => foreign += 1,
            other => panic!("round {round}: {other}"),
        }
        // A full fetch naming the session closes it wherever it lives and
        // makes a new one on this connection's shard.
        let resp: FetchResponse = other.send(12, &session_fetch(12, &topic, session, 0, &all));
        ok(&resp);
        assert!(resp.session_id > 0 && resp.session_id != session);
        assert_eq!(
            metric(&broker, "sluice_fetch_session_count"),
            1.0,
            "round {round}: the old session is gone"
        );
        session = resp.session_id;
    }
    assert!(foreign > 0, "no connection landed on another shard");
}

#[test]
fn cache_slots_and_eviction() {
    // One shard, one slot, sessions evictable as soon as idle.
    let broker = Broker::start_opts(Opts {
        metrics: true,
        shards: 1,
        config: "\"max.incremental.fetch.session.cache.slots\" = 1\n\
                 \"min.incremental.fetch.session.eviction.ms\" = 0\n"
            .into(),
        ..Opts::default()
    });
    let mut c = broker.client();
    create_topic_ok(&mut c, "slots", 3, &[]);
    let topic = topic_ref(&mut c, "slots");
    let resp: FetchResponse = c.send(12, &session_fetch(12, &topic, 0, 0, &[(0, 0)]));
    let first = resp.session_id;
    assert!(first > 0);
    std::thread::sleep(Duration::from_millis(20));
    // The slot is taken, but its session idled past the eviction time.
    let resp: FetchResponse = c.send(12, &session_fetch(12, &topic, 0, 0, &[(1, 0)]));
    let second = resp.session_id;
    assert!(second > 0 && second != first);
    assert_eq!(metric(&broker, "sluice_fetch_session_evictions_total"), 1.0);
    assert_eq!(metric(&broker, "sluice_fetch_session_count"), 1.0);
    let resp: FetchResponse = c.send(12, &session_fetch(12, &topic, first, 1, &[]));
    refused(&resp, ErrorCode::FetchSessionIdNotFound);
    let resp: FetchResponse = c.send(12, &session_fetch(12, &topic, second, 1, &[]));
    ok(&resp);
    assert_eq!(resp.session_id, second);
    drop(broker);

    // No slots: no sessions, every fetch answered in full.
    let broker = Broker::start_opts(Opts {
        shards: 1,
        config: "\"max.incremental.fetch.session.cache.slots\" = 0\n".into(),
        ..Opts::default()
    });
    let mut c = broker.client();
    create_topic_ok(&mut c, "no-slots", 2, &[]);
    let topic = topic_ref(&mut c, "no-slots");
    let resp: FetchResponse = c.send(12, &session_fetch(12, &topic, 0, 0, &[(0, 0), (1, 0)]));
    ok(&resp);
    assert_eq!(resp.session_id, 0);
    assert_eq!(partitions_of(&resp), vec![0, 1]);
}
