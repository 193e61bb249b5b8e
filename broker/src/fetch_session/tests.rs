//! The session cache's rules, driven with requests as a client sends them.

use kafka_protocol::messages::fetch_request::ForgottenTopic;
use kafka_protocol::protocol::StrBytes;

use super::*;

const V12: i16 = 12;
const V13: i16 = 13;
const EVICTION_MS: i64 = 120_000;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn part(partition: i32, offset: i64) -> FetchPartition {
    let mut p = FetchPartition::default();
    p.partition = partition;
    p.fetch_offset = offset;
    p.partition_max_bytes = 1 << 20;
    p
}

/// A v12 request (topics by name) for `(topic, partition, offset)`s.
fn request(session_id: i32, epoch: i32, parts: &[(&str, i32, i64)]) -> FetchRequest {
    let mut req = FetchRequest::default();
    req.session_id = session_id;
    req.session_epoch = epoch;
    for &(topic, partition, offset) in parts {
        match req.topics.last_mut() {
            Some(t) if t.topic == name(topic) => t.partitions.push(part(partition, offset)),
            _ => {
                let mut t = FetchTopic::default();
                t.topic = name(topic);
                t.partitions.push(part(partition, offset));
                req.topics.push(t);
            }
        }
    }
    req
}

fn forget(req: &mut FetchRequest, topic: &str, partitions: &[i32]) {
    let mut f = ForgottenTopic::default();
    f.topic = name(topic);
    f.partitions = partitions.to_vec();
    req.forgotten_topics_data.push(f);
}

/// (topic, partition, offset) of each partition a request lists, in order.
fn listed(req: &FetchRequest) -> Vec<(String, i32, i64)> {
    req.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(move |p| (t.topic.0.to_string(), p.partition, p.fetch_offset))
        })
        .collect()
}

fn quiet(hw: i64) -> Outcome {
    Outcome {
        high_watermark: hw,
        last_stable_offset: hw,
        log_start_offset: 0,
        error: ErrorCode::None,
        has_records: false,
        must_send: false,
    }
}

fn with_records(hw: i64) -> Outcome {
    Outcome {
        has_records: true,
        ..quiet(hw)
    }
}

fn cache(slots: usize) -> FetchSessionCache {
    FetchSessionCache::new(0, 1, slots, EVICTION_MS)
}

/// Opens a full fetch of `parts` and finishes it with `outcome` for each:
/// the new session's id.
fn new_session(
    c: &mut FetchSessionCache,
    parts: &[(&str, i32, i64)],
    privileged: bool,
    now: i64,
) -> i32 {
    let mut req = request(0, INITIAL_EPOCH, parts);
    let opened = c.open(V12, &mut req, privileged, now);
    assert_eq!(
        opened,
        Opened::Full {
            privileged,
            uses_topic_ids: false
        }
    );
    let outcomes = vec![quiet(10); parts.len()];
    let f = c.finish(&opened, V12, &req, &outcomes, now);
    assert_eq!(f.error, ErrorCode::None);
    assert_eq!(f.keep, None, "a full answer carries every partition");
    f.session_id
}

#[test]
fn epochs_advance_and_wrap_as_kafka_does() {
    assert_eq!(next_epoch(0), 1);
    assert_eq!(next_epoch(41), 42);
    assert_eq!(next_epoch(i32::MAX), 1);
    assert_eq!(next_epoch(-1), -1);
}

#[test]
fn full_fetch_creates_a_session_and_incremental_fetches_use_it() {
    let mut c = cache(10);
    let id = new_session(&mut c, &[("a", 0, 0), ("a", 1, 0), ("b", 0, 5)], false, 0);
    assert!(id > 0);
    assert_eq!(c.len(), 1);
    assert_eq!(c.partitions_cached(), 3);
    assert_eq!(c.epoch_of(id), Some(1));

    // Nothing changed: the request lists nothing, the session lists all.
    let mut req = request(id, 1, &[]);
    let opened = c.open(V12, &mut req, false, 1);
    assert_eq!(opened, Opened::Incremental { id, epoch: 2 });
    assert_eq!(
        listed(&req),
        vec![("a".into(), 0, 0), ("a".into(), 1, 0), ("b".into(), 0, 5)]
    );
    // Only the partition with records (and the one whose high watermark
    // moved) go out.
    let f = c.finish(
        &opened,
        V12,
        &req,
        &[quiet(10), with_records(10), quiet(11)],
        1,
    );
    assert_eq!(f.session_id, id);
    assert_eq!(f.keep, Some(vec![false, true, true]));

    // a-1 advanced its offset; a-2 is added.
    let mut req = request(id, 2, &[("a", 1, 7), ("a", 2, 0)]);
    let opened = c.open(V12, &mut req, false, 2);
    assert_eq!(opened, Opened::Incremental { id, epoch: 3 });
    // Answered partitions went to the end last time; the new one after.
    assert_eq!(
        listed(&req),
        vec![
            ("a".into(), 0, 0),
            ("a".into(), 1, 7),
            ("b".into(), 0, 5),
            ("a".into(), 2, 0)
        ]
    );
    assert_eq!(
        req.topics.len(),
        3,
        "a, b, a: consecutive partitions share a topic"
    );
    assert_eq!(c.partitions_cached(), 4);
    // Nothing new anywhere, but the added partition is always answered
    // once (its offsets are unknown to the client).
    let f = c.finish(
        &opened,
        V12,
        &req,
        &[quiet(10), quiet(10), quiet(11), quiet(10)],
        2,
    );
    assert_eq!(f.keep, Some(vec![false, false, false, true]));
}

#[test]
fn errors_are_always_answered_and_so_is_their_end() {
    let mut c = cache(10);
    let id = new_session(&mut c, &[("a", 0, 0)], false, 0);
    let failing = Outcome {
        high_watermark: -1,
        error: ErrorCode::NotLeaderOrFollower,
        ..quiet(-1)
    };
    for epoch in [1, 2] {
        let mut req = request(id, epoch, &[]);
        let opened = c.open(V12, &mut req, false, 0);
        let f = c.finish(&opened, V12, &req, &[failing], 0);
        assert_eq!(f.keep, Some(vec![true]), "epoch {epoch}: an error goes out");
    }
    // The error cleared with the same high watermark as before it: still
    // answered, so the client learns it cleared.
    let mut req = request(id, 3, &[]);
    let opened = c.open(V12, &mut req, false, 0);
    let f = c.finish(&opened, V12, &req, &[quiet(10)], 0);
    assert_eq!(f.keep, Some(vec![true]));
    let mut req = request(id, 4, &[]);
    let opened = c.open(V12, &mut req, false, 0);
    let f = c.finish(&opened, V12, &req, &[quiet(10)], 0);
    assert_eq!(f.keep, Some(vec![false]));
}

#[test]
fn log_start_and_last_stable_offset_changes_are_answered() {
    let mut c = cache(10);
    let id = new_session(&mut c, &[("a", 0, 0), ("a", 1, 0)], false, 0);
    let mut req = request(id, 1, &[]);
    let opened = c.open(V12, &mut req, false, 0);
    let moved_start = Outcome {
        log_start_offset: 4,
        ..quiet(10)
    };
    let moved_lso = Outcome {
        last_stable_offset: 8,
        ..quiet(10)
    };
    let f = c.finish(&opened, V12, &req, &[moved_start, moved_lso], 0);
    assert_eq!(f.keep, Some(vec![true, true]));
}

#[test]
fn forgotten_partitions_leave_the_session_and_an_empty_session_ends() {
    let mut c = cache(10);
    let id = new_session(&mut c, &[("a", 0, 0), ("a", 1, 0)], false, 0);
    let mut req = request(id, 1, &[]);
    forget(&mut req, "a", &[0]);
    let opened = c.open(V12, &mut req, false, 0);
    assert_eq!(opened, Opened::Incremental { id, epoch: 2 });
    assert_eq!(listed(&req), vec![("a".into(), 1, 0)]);
    assert!(req.forgotten_topics_data.is_empty());
    assert_eq!(c.partitions_cached(), 1);
    c.finish(&opened, V12, &req, &[quiet(10)], 0);

    let mut req = request(id, 2, &[]);
    forget(&mut req, "a", &[1]);
    assert_eq!(c.open(V12, &mut req, false, 0), Opened::Sessionless);
    assert!(c.is_empty());
}

#[test]
fn wrong_epoch_unknown_session_and_topic_id_mix_are_refused() {
    let mut c = cache(10);
    let id = new_session(&mut c, &[("a", 0, 0)], false, 0);
    let mut req = request(id, 5, &[]);
    assert_eq!(
        c.open(V12, &mut req, false, 0),
        Opened::Refused(ErrorCode::InvalidFetchSessionEpoch)
    );
    // A refused fetch changes nothing: the right epoch still works.
    assert_eq!(c.epoch_of(id), Some(1));
    let mut req = request(id.wrapping_add(1), 1, &[]);
    assert_eq!(
        c.open(V12, &mut req, false, 0),
        Opened::Refused(ErrorCode::FetchSessionIdNotFound)
    );
    // A session made with names is not used with ids (v13+).
    let mut req = request(id, 1, &[]);
    assert_eq!(
        c.open(V13, &mut req, false, 0),
        Opened::Refused(ErrorCode::FetchSessionTopicIdError)
    );
    let mut req = request(id, 1, &[]);
    assert!(matches!(
        c.open(V12, &mut req, false, 0),
        Opened::Incremental { .. }
    ));
    // The same epoch again (a resent request) is refused.
    let mut req = request(id, 1, &[]);
    assert_eq!(
        c.open(V12, &mut req, false, 0),
        Opened::Refused(ErrorCode::InvalidFetchSessionEpoch)
    );
}

#[test]
fn sessions_by_topic_id() {
    let mut c = cache(10);
    let topic = Uuid::from_u128(7);
    let mut req = FetchRequest::default();
    req.session_epoch = INITIAL_EPOCH;
    let mut t = FetchTopic::default();
    t.topic_id = topic;
    t.partitions = vec![part(0, 0), part(1, 0)];
    req.topics.push(t);
    let opened = c.open(V13, &mut req, false, 0);
    let id = c
        .finish(&opened, V13, &req, &[quiet(3), quiet(3)], 0)
        .session_id;
    assert!(id > 0);

    let mut req = FetchRequest::default();
    req.session_id = id;
    req.session_epoch = 1;
    let mut f = ForgottenTopic::default();
    f.topic_id = topic;
    f.partitions = vec![0];
    req.forgotten_topics_data.push(f);
    let opened = c.open(V13, &mut req, false, 0);
    assert_eq!(opened, Opened::Incremental { id, epoch: 2 });
    assert_eq!(req.topics.len(), 1);
    assert_eq!(req.topics[0].topic_id, topic);
    assert_eq!(req.topics[0].partitions.len(), 1);
    assert_eq!(req.topics[0].partitions[0].partition, 1);
}

#[test]
fn final_epoch_closes_and_initial_epoch_replaces_a_session() {
    let mut c = cache(10);
    let id = new_session(&mut c, &[("a", 0, 0)], false, 0);
    let mut req = request(id, FINAL_EPOCH, &[]);
    assert_eq!(c.open(V12, &mut req, false, 0), Opened::Sessionless);
    assert!(c.is_empty());

    let id = new_session(&mut c, &[("a", 0, 0)], false, 0);
    // Epoch 0 naming a session: that one closes, a new one is asked for.
    let mut req = request(id, INITIAL_EPOCH, &[("a", 0, 0)]);
    let opened = c.open(V12, &mut req, false, 0);
    assert!(matches!(opened, Opened::Full { .. }));
    assert!(c.is_empty());
    let again = c.finish(&opened, V12, &req, &[quiet(1)], 0).session_id;
    assert!(again > 0 && again != id);

    // Session-less fetch: no session made.
    let mut req = request(0, FINAL_EPOCH, &[("a", 0, 0)]);
    let opened = c.open(V12, &mut req, false, 0);
    assert_eq!(opened, Opened::Sessionless);
    assert_eq!(
        c.finish(&opened, V12, &req, &[quiet(1)], 0),
        Finished::all(0)
    );
    assert_eq!(c.len(), 1);
    // Versions before 7 know nothing of sessions.
    let mut req = request(0, INITIAL_EPOCH, &[("a", 0, 0)]);
    assert_eq!(c.open(6, &mut req, false, 0), Opened::Sessionless);
}

#[test]
fn a_session_used_twice_at_once_refuses_the_older_fetch() {
    let mut c = cache(10);
    let id = new_session(&mut c, &[("a", 0, 0)], false, 0);
    let mut first = request(id, 1, &[]);
    let opened_first = c.open(V12, &mut first, false, 0);
    let mut second = request(id, 2, &[]);
    let opened_second = c.open(V12, &mut second, false, 0);
    let f = c.finish(&opened_first, V12, &first, &[with_records(10)], 0);
    assert_eq!(f.error, ErrorCode::InvalidFetchSessionEpoch);
    assert_eq!(f.keep, Some(vec![false]));
    let f = c.finish(&opened_second, V12, &second, &[with_records(10)], 0);
    assert_eq!(f.error, ErrorCode::None);
    assert_eq!(f.keep, Some(vec![true]));
}

#[test]
fn no_slots_means_no_sessions() {
    let mut c = cache(0);
    let mut req = request(0, INITIAL_EPOCH, &[("a", 0, 0)]);
    let opened = c.open(V12, &mut req, false, 0);
    assert_eq!(c.finish(&opened, V12, &req, &[quiet(1)], 0).session_id, 0);
    assert!(c.is_empty());
}

#[test]
fn a_full_cache_evicts_a_stale_session_first() {
    let mut c = cache(2);
    let big = new_session(&mut c, &[("a", 0, 0), ("a", 1, 0), ("a", 2, 0)], true, 0);
    let small = new_session(&mut c, &[("b", 0, 0)], false, 1_000);
    // Both young and in use: a small newcomer finds no room.
    assert_eq!(new_session(&mut c, &[("c", 0, 0)], false, 2_000), 0);
    // The big privileged one is used now and then; the small one idles
    // past the eviction time and loses its slot to any newcomer.
    let mut req = request(big, 1, &[]);
    let opened = c.open(V12, &mut req, true, 100_000);
    c.finish(&opened, V12, &req, &[quiet(10); 3], 100_000);
    let newcomer = new_session(&mut c, &[("c", 0, 0)], false, 1_000 + EVICTION_MS + 1);
    assert!(newcomer > 0);
    assert_eq!(c.epoch_of(small), None, "the stale session was evicted");
    assert!(c.epoch_of(big).is_some());
}

#[test]
fn a_more_valuable_session_evicts_an_old_enough_one() {
    let mut c = cache(1);
    let small = new_session(&mut c, &[("a", 0, 0)], false, 0);
    // Kept in use, so never stale.
    let touch = |c: &mut FetchSessionCache, id: i32, epoch: i32, now: i64| {
        let mut req = request(id, epoch, &[]);
        let opened = c.open(V12, &mut req, false, now);
        assert!(matches!(opened, Opened::Incremental { .. }));
        c.finish(&opened, V12, &req, &[quiet(10)], now);
    };
    touch(&mut c, small, 1, 60_000);
    // Younger than the eviction time: a bigger non-privileged session may
    // not evict it.
    assert_eq!(
        new_session(&mut c, &[("b", 0, 0), ("b", 1, 0)], false, 61_000),
        0
    );
    // Used again once older than the eviction time: now it may.
    touch(&mut c, small, 2, EVICTION_MS + 1);
    // Not by one of equal worth (one partition, not privileged)...
    assert_eq!(
        new_session(&mut c, &[("b", 0, 0)], false, EVICTION_MS + 2),
        0
    );
    // ...but by one with more partitions.
    let bigger = new_session(&mut c, &[("b", 0, 0), ("b", 1, 0)], false, EVICTION_MS + 3);
    assert!(bigger > 0);
    assert_eq!(c.epoch_of(small), None);
}

#[test]
fn follower_sessions_are_privileged() {
    let mut c = cache(1);
    let consumer = new_session(&mut c, &[("a", 0, 0), ("a", 1, 0)], false, 0);
    // A follower's session evicts a young consumer session, even a bigger one.
    let follower = new_session(&mut c, &[("b", 0, 0)], true, 1);
    assert!(follower > 0);
    assert_eq!(c.epoch_of(consumer), None);
    // A consumer cannot evict a young follower session, however big...
    assert_eq!(
        new_session(&mut c, &[("c", 0, 0), ("c", 1, 0), ("c", 2, 0)], false, 2),
        0
    );
    // ...nor a young one by another follower (privileged sessions are
    // evictable only once old).
    assert_eq!(new_session(&mut c, &[("d", 0, 0), ("d", 1, 0)], true, 3), 0);
    assert!(c.epoch_of(follower).is_some());
}

#[test]
fn session_ids_name_their_shard() {
    for shard in 0..4 {
        let mut c = FetchSessionCache::new(shard, 4, 100, EVICTION_MS);
        for _ in 0..20 {
            let id = new_session(&mut c, &[("a", 0, 0)], false, 0);
            assert!(id > 0);
            assert_eq!(shard_of_session(id, 4), shard);
        }
        // Its share of the slots: 100 / 4.
        assert_eq!(c.len(), 20);
    }
    let c = FetchSessionCache::new(1, 4, 100, EVICTION_MS);
    let mut req = request(8, INITIAL_EPOCH, &[]);
    assert_eq!(c.foreign_session_to_close(V12, &req), Some((0, 8)));
    req.session_id = 9;
    assert_eq!(
        c.foreign_session_to_close(V12, &req),
        None,
        "9 is shard 1's"
    );
    req.session_id = 8;
    req.session_epoch = 3;
    assert_eq!(
        c.foreign_session_to_close(V12, &req),
        None,
        "incremental fetches of another shard's session are refused, not closed"
    );
    // A session on another shard is unknown here.
    let mut c = FetchSessionCache::new(1, 4, 100, EVICTION_MS);
    let mut req = request(8, 1, &[]);
    assert_eq!(
        c.open(V12, &mut req, false, 0),
        Opened::Refused(ErrorCode::FetchSessionIdNotFound)
    );
}

#[test]
fn slots_are_shared_out_between_shards() {
    let mut c = FetchSessionCache::new(0, 3, 4, EVICTION_MS);
    // ceil(4 / 3) = 2 per shard.
    assert!(new_session(&mut c, &[("a", 0, 0)], false, 0) > 0);
    assert!(new_session(&mut c, &[("a", 0, 0)], false, 0) > 0);
    assert_eq!(new_session(&mut c, &[("a", 0, 0)], false, 0), 0);
}
