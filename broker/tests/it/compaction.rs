//! Log compaction end to end on a real `sluiced`: keyed updates and
//! tombstones on a compacted topic with small segments; after cleaning only
//! the latest record per key remains below the active segment, survivors
//! keep their offsets, tombstones vanish after `delete.retention.ms`, a
//! consumer scanning during a (throttled) clean always sees offsets
//! increasing and ends on the latest values; kill -9 in the middle of a
//! clean loses nothing and leaves no `.cleaned`/`.swap` file after restart;
//! keyless records are refused as Kafka refuses them.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::*;
use bytes::Bytes;
use sluice_protocol::batch::BatchBuilder;
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;

/// One batch of (key, value) records; `None` values are tombstones.
fn keyed(records: &[(&str, Option<&str>)]) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    let ts = now_ms();
    for (k, v) in records {
        b.push(ts, Some(k.as_bytes()), v.map(str::as_bytes), &[])
            .expect("push");
    }
    b.build()
}

type Latest = BTreeMap<String, (i64, Option<String>)>;

/// Every record from offset 0 up to the high watermark as (offset, key,
/// value), advancing past each batch's last offset as Kafka consumers do
/// (a cleaned batch may end in removed offsets). Asserts offsets increase.
fn scan(c: &mut Client, topic: &TopicRef) -> Vec<(i64, String, Option<String>)> {
    let mut out: Vec<(i64, String, Option<String>)> = Vec::new();
    let mut next = 0;
    for _ in 0..100_000 {
        let p = fetch(c, topic, 0, next);
        assert_eq!(p.error_code, ErrorCode::None.code(), "fetch at {next}");
        let bases = batch_bases(p.records.as_ref());
        let Some(&(_, last)) = bases.last() else {
            assert!(next >= p.high_watermark, "no batch below the hw at {next}");
            return out;
        };
        for r in decode(p.records.as_ref()) {
            if r.offset < next {
                continue;
            }
            if let Some((prev, _, _)) = out.last() {
                assert!(
                    r.offset > *prev,
                    "offsets increase: {} after {prev}",
                    r.offset
                );
            }
            let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
            let value = r.value.as_ref().map(|_| r.value_str());
            out.push((r.offset, key, value));
        }
        next = last + 1;
    }
    panic!("scan did not reach the high watermark");
}

/// The last record per key of a scan.
fn latest_of(records: &[(i64, String, Option<String>)]) -> Latest {
    let mut m = Latest::new();
    for (o, k, v) in records {
        m.insert(k.clone(), (*o, v.clone()));
    }
    m
}

/// Produces `rounds` updates of keys k0..k{keys-1} (one batch of `per_batch`
/// records at a time), returning what was written: key -> (offset, value).
fn produce_updates(
    c: &mut Client,
    topic: &str,
    keys: usize,
    rounds: usize,
    per_batch: usize,
    pad: usize,
) -> Latest {
    let mut latest = Latest::new();
    let padding = "x".repeat(pad);
    let mut pending: Vec<(String, String)> = Vec::new();
    for round in 0..rounds {
        for k in 0..keys {
            pending.push((format!("k{k}"), format!("r{round}-{padding}")));
            if pending.len() == per_batch {
                flush(c, topic, &mut pending, &mut latest);
            }
        }
    }
    flush(c, topic, &mut pending, &mut latest);
    latest
}

fn flush(c: &mut Client, topic: &str, pending: &mut Vec<(String, String)>, latest: &mut Latest) {
    if pending.is_empty() {
        return;
    }
    let recs: Vec<(&str, Option<&str>)> = pending
        .iter()
        .map(|(k, v)| (k.as_str(), Some(v.as_str())))
        .collect();
    let base = produce_ok(c, topic, 0, keyed(&recs));
    for (i, (k, v)) in pending.drain(..).enumerate() {
        latest.insert(k, (base + i as i64, Some(v)));
    }
}

/// Fills the active segment with unique keys so everything before lies in
/// closed segments; returns the fillers.
fn roll_past(c: &mut Client, topic: &str, n: usize) -> Latest {
    let mut fillers = Latest::new();
    let pad = "f".repeat(200);
    for i in 0..n {
        let k = format!("filler{i}");
        let base = produce_ok(c, topic, 0, keyed(&[(&k, Some(&pad))]));
        fillers.insert(k, (base, Some(pad.clone())));
    }
    fillers
}

fn files_with_suffix(dir: &Path, suffixes: &[&str]) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| suffixes.iter().any(|s| n.ends_with(s)))
                .collect()
        })
        .unwrap_or_default()
}

const FAST_CLEANER: &str = "\"log.cleaner.backoff.ms\" = 50\n";

#[test]
fn only_the_latest_value_per_key_survives_with_its_offset_and_tombstones_expire() {
    let broker = Broker::start_with(FAST_CLEANER);
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "cmp",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "2048"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "5000"),
        ],
    );
    let mut written = produce_updates(&mut c, "cmp", 20, 8, 4, 40);
    // Tombstones for five keys, each in its own batch.
    for k in 0..5 {
        let key = format!("k{k}");
        let base = produce_ok(&mut c, "cmp", 0, keyed(&[(&key, None)]));
        written.insert(key, (base, None));
    }
    written.extend(roll_past(&mut c, "cmp", 12));
    let topic = topic_ref(&mut c, "cmp");
    let produced = 20 * 8 + 5 + 12;

    // Cleaned: one record per key, at the offset it was written at.
    let superseded = |records: &[(i64, String, Option<String>)]| -> Vec<(i64, String)> {
        records
            .iter()
            .filter(|(o, k, _)| written.get(k).is_none_or(|(w, _)| w != o))
            .map(|(o, k, _)| (*o, k.clone()))
            .collect()
    };
    let mut seen = Vec::new();
    let cleaned = wait_until(|| {
        seen = scan(&mut c, &topic);
        superseded(&seen).is_empty()
    });
    assert!(
        cleaned,
        "compaction never finished: {} of {produced} records left, older values {:?}\n{}",
        seen.len(),
        superseded(&seen),
        tail(&broker.log(), 30)
    );
    assert_eq!(
        latest_of(&seen),
        written,
        "latest value per key, same offset"
    );
    assert_eq!(
        seen.iter().filter(|(_, _, v)| v.is_none()).count(),
        5,
        "the tombstones outlive their first clean"
    );

    // Tombstones vanish once delete.retention.ms has passed since their
    // first clean.
    let gone = wait_until(|| {
        seen = scan(&mut c, &topic);
        !seen.iter().any(|(_, _, v)| v.is_none())
    });
    assert!(gone, "tombstones still there: {seen:?}");
    let expected: Vec<(i64, String, Option<String>)> = {
        let mut v: Vec<_> = written
            .iter()
            .filter(|(_, (_, val))| val.is_some())
            .map(|(k, (o, val))| (*o, k.clone(), val.clone()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(seen, expected, "exactly the latest live value per key");

    // The log goes on at the same end.
    let end = offset_of(&mut c, "cmp", 0, LATEST);
    assert_eq!(end, produced as i64);
    assert_eq!(
        produce_ok(&mut c, "cmp", 0, keyed(&[("k9", Some("new"))])),
        end
    );
}

#[test]
fn a_consumer_reading_during_a_clean_sees_a_consistent_stream() {
    // Throttled to ~150 KB/s so one pass over ~300 KB takes seconds.
    let broker = Broker::start_with(&format!(
        "{FAST_CLEANER}\"log.cleaner.io.max.bytes.per.second\" = 150000\n"
    ));
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "live",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "8192"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let mut written = produce_updates(&mut c, "live", 50, 20, 10, 200);
    written.extend(roll_past(&mut c, "live", 45));
    let topic = topic_ref(&mut c, "live");
    let mut scans = 0;
    let mut partial = 0;
    let mut full_len = None;
    let done = wait_until(|| {
        let records = scan(&mut c, &topic);
        scans += 1;
        let full = *full_len.get_or_insert(records.len());
        assert_eq!(
            latest_of(&records),
            written,
            "scan {scans}: the last value per key is the latest written"
        );
        if records.len() == written.len() {
            return true;
        }
        if records.len() < full {
            partial += 1;
        }
        false
    });
    assert!(
        done,
        "the clean did not finish; {scans} scans\n{}",
        tail(&broker.log(), 30)
    );
    assert!(
        partial > 0 || full_len == Some(written.len()),
        "no scan saw the clean half done ({scans} scans)"
    );
    eprintln!("{scans} scans, {partial} during the clean");
}

#[test]
fn kill_9_in_the_middle_of_a_clean_loses_nothing() {
    let mut broker = Broker::start_with(&format!(
        "{FAST_CLEANER}\"log.cleaner.io.max.bytes.per.second\" = 100000\n"
    ));
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "crash",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "4096"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    );
    let mut written = produce_updates(&mut c, "crash", 30, 15, 5, 150);
    written.extend(roll_past(&mut c, "crash", 25));
    let end = offset_of(&mut c, "crash", 0, LATEST);
    drop(c);
    let dir = broker.partition_dir("crash", 0);
    // Kill while a clean's output exists (a `.cleaned` or `.swap` file).
    let mid_clean = wait_until(|| !files_with_suffix(&dir, &[".cleaned", ".swap"]).is_empty());
    broker.kill9();
    assert!(
        mid_clean,
        "no clean seen in progress\n{}",
        tail(&broker.log(), 30)
    );
    let leftovers = files_with_suffix(&dir, &[".cleaned", ".swap"]);
    assert!(
        !leftovers.is_empty(),
        "the kill left a clean's output behind"
    );

    // Restart with the cleaner off, so what we see is what recovery made.
    let cfg = broker.root().join("config.toml");
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, format!("{text}\n\"log.cleaner.enable\" = false\n")).expect("config");
    broker.restart();
    let remaining = files_with_suffix(&dir, &[".cleaned", ".swap"]);
    assert!(
        remaining.is_empty(),
        "recovery left {remaining:?} (had {leftovers:?})"
    );
    let mut c = broker.client();
    assert_eq!(offset_of(&mut c, "crash", 0, LATEST), end, "same log end");
    let topic = topic_ref(&mut c, "crash");
    let records = scan(&mut c, &topic);
    assert_eq!(
        latest_of(&records),
        written,
        "every key's latest value is there"
    );
    assert!(records.iter().all(|(o, _, _)| *o < end));

    // And the cleaner finishes the job after another restart.
    std::fs::write(&cfg, &text).expect("config");
    broker.restart();
    let mut c = broker.client();
    let mut left = 0;
    let done = wait_until(|| {
        let r = scan(&mut c, &topic);
        left = r.len();
        assert_eq!(latest_of(&r), written);
        r.len() == written.len()
    });
    assert!(
        done,
        "{left} records left after the restart\n{}",
        tail(&broker.log(), 30)
    );
}

#[test]
fn a_compacted_topic_refuses_records_without_a_key() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "keyed", 1, &[("cleanup.policy", "compact")]);
    let r = produce(&mut c, "keyed", 0, {
        let mut b = BatchBuilder::new(Compression::Lz4);
        b.push(now_ms(), Some(b"k"), Some(b"v"), &[]).unwrap();
        b.push(now_ms(), None, Some(b"no key"), &[]).unwrap();
        b.build()
    });
    assert_eq!(r.error_code, ErrorCode::InvalidRecord.code());
    assert_eq!(
        produce_ok(&mut c, "keyed", 0, keyed(&[("k", Some("v"))])),
        0
    );
    create_topic_ok(&mut c, "plain", 1, &[]);
    let mut b = BatchBuilder::new(Compression::None);
    b.push(now_ms(), None, Some(b"fine"), &[]).unwrap();
    assert_eq!(produce_ok(&mut c, "plain", 0, b.build()), 0);
}

/// The batches of a segment file, each with its records' (offset, key).
fn segment_batches(path: &Path) -> Vec<(Bytes, Vec<(i64, String)>)> {
    let data = Bytes::from(std::fs::read(path).expect("segment"));
    sluice_protocol::batch::split_batches(&data)
        .expect("whole batches")
        .into_iter()
        .map(|(h, b)| {
            let recs = sluice_protocol::batch::decode_records(&b)
                .expect("records")
                .into_iter()
                .map(|r| {
                    let k = r.key.as_deref().unwrap_or_default();
                    (r.offset(&h), String::from_utf8_lossy(k).into_owned())
                })
                .collect();
            (b, recs)
        })
        .collect()
}

#[test]
fn recovery_completes_a_swap_and_drops_a_half_written_clean() {
    let mut broker = Broker::start_with("\"log.cleaner.enable\" = false\n");
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "swapped",
        1,
        &[("cleanup.policy", "compact"), ("segment.bytes", "1024")],
    );
    // One record per batch, so a clean keeps or drops whole batches; each
    // round also writes a key never updated again, so every segment keeps
    // something.
    let mut written = Latest::new();
    for round in 0..8 {
        written.extend(produce_updates(&mut c, "swapped", 6, 1, 1, 60 + round));
        let stable = format!("stable{round}");
        let base = produce_ok(&mut c, "swapped", 0, keyed(&[(&stable, Some("s"))]));
        written.insert(stable, (base, Some("s".into())));
    }
    written.extend(roll_past(&mut c, "swapped", 6));
    let end = offset_of(&mut c, "swapped", 0, LATEST);
    drop(c);
    broker.kill9();

    // What a cleaner killed mid-swap leaves: the first three segments
    // cleaned into `<first>.log.swap`, the second of them already deleted;
    // and a half-written `.cleaned` of the next group.
    let dir = broker.partition_dir("swapped", 0);
    let segments = log_files(&dir);
    assert!(segments.len() >= 6, "{segments:?}");
    let mut swap = Vec::new();
    let mut removed = 0;
    for name in &segments[..3] {
        for (bytes, recs) in segment_batches(&dir.join(name)) {
            let latest = recs.iter().all(|(o, k)| written[k].0 == *o);
            if latest {
                swap.extend_from_slice(&bytes);
            } else {
                removed += 1;
            }
        }
    }
    assert!(removed > 0, "the first segments hold superseded values");
    std::fs::write(dir.join(format!("{}.swap", segments[0])), &swap).expect("swap");
    std::fs::remove_file(dir.join(&segments[1])).expect("remove");
    let next = std::fs::read(dir.join(&segments[3])).expect("segment");
    std::fs::write(
        dir.join(format!("{}.cleaned", segments[3])),
        &next[..next.len() / 2],
    )
    .expect("cleaned");

    broker.restart();
    let leftovers = files_with_suffix(&dir, &[".cleaned", ".swap"]);
    assert!(leftovers.is_empty(), "recovery left {leftovers:?}");
    // Segments the swap's offsets reach into were in the group and are gone.
    // (A group segment whose records were all cleaned away would stay, as
    // in Kafka, whose swap recovery works the same way: it holds only
    // superseded values, before their newer ones, which no consumer of a
    // compacted topic can tell from a log not yet cleaned.)
    let swap_last = sluice_protocol::batch::split_batches(&Bytes::from(swap))
        .expect("batches")
        .last()
        .map(|(h, _)| h.last_offset())
        .expect("a batch");
    for name in &segments[1..3] {
        let base: i64 = name.trim_end_matches(".log").parse().expect("base");
        assert!(base <= swap_last, "every segment keeps a stable key");
        assert!(!dir.join(name).exists(), "{name} was replaced by the swap");
    }
    let mut c = broker.client();
    assert_eq!(offset_of(&mut c, "swapped", 0, LATEST), end);
    let topic = topic_ref(&mut c, "swapped");
    let records = scan(&mut c, &topic);
    assert_eq!(latest_of(&records), written, "nothing lost");
    assert_eq!(
        produce_ok(&mut c, "swapped", 0, keyed(&[("k0", Some("after"))])),
        end
    );
}

mod offsets {
    //! `__consumer_offsets` is compacted like any compacted topic, and
    //! the group coordinator loads the cleaned log (gaps, tombstones of
    //! deleted groups) after a restart.

    use kafka_protocol::messages::offset_commit_request::{
        OffsetCommitRequestPartition, OffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{
        DeleteGroupsRequest, GroupId, OffsetCommitRequest, OffsetFetchRequest,
    };

    use super::*;

    fn commit(c: &mut Client, group: &str, topic: &str, offset: i64) {
        let mut p = OffsetCommitRequestPartition::default();
        p.partition_index = 0;
        p.committed_offset = offset;
        let mut t = OffsetCommitRequestTopic::default();
        t.name = topic_name(topic);
        t.partitions = vec![p];
        let mut req = OffsetCommitRequest::default();
        req.group_id = GroupId(s(group));
        req.generation_id_or_member_epoch = -1;
        req.topics = vec![t];
        let resp = c.send(8, &req);
        assert_eq!(
            resp.topics[0].partitions[0].error_code,
            ErrorCode::None.code(),
            "commit {group} {offset}"
        );
    }

    /// The group's committed offset of `topic`-0 (-1: none), once the
    /// coordinator answers.
    fn committed(c: &mut Client, group: &str, topic: &str) -> Option<i64> {
        let mut t = OffsetFetchRequestTopic::default();
        t.name = topic_name(topic);
        t.partition_indexes = vec![0];
        let mut req = OffsetFetchRequest::default();
        req.group_id = GroupId(s(group));
        req.topics = Some(vec![t]);
        let resp = c.send(7, &req);
        (resp.error_code == ErrorCode::None.code())
            .then(|| {
                resp.topics
                    .first()?
                    .partitions
                    .first()
                    .map(|p| p.committed_offset)
            })
            .flatten()
    }

    fn offsets_log_bytes(data: &Path) -> u64 {
        std::fs::read_dir(data)
            .expect("data dir")
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("__consumer_offsets-")
            })
            .flat_map(|d| {
                std::fs::read_dir(d.path())
                    .expect("partition")
                    .filter_map(|e| e.ok())
            })
            .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
            .map(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    #[test]
    fn the_offsets_log_is_compacted_and_groups_load_from_it() {
        let mut broker = Broker::start_with(&format!(
            "{FAST_CLEANER}\"log.cleaner.min.cleanable.ratio\" = 0.01\n"
        ));
        let mut c = broker.client();
        create_topic_ok(&mut c, "src", 1, &[]);
        commit(&mut c, "kept", "src", 0);
        set_topic_config(&mut c, "__consumer_offsets", "segment.bytes", "1024");
        let mut written = 0u64;
        for i in 1..=300 {
            commit(&mut c, "kept", "src", i);
            if i <= 60 {
                commit(&mut c, "deleted", "src", i);
            }
            written = written.max(offsets_log_bytes(&broker.data_dir()));
        }
        let mut req = DeleteGroupsRequest::default();
        req.groups_names = vec![GroupId(s("deleted"))];
        let resp = c.send(2, &req);
        assert_eq!(resp.results[0].error_code, ErrorCode::None.code());
        let data = broker.data_dir();
        let mut size = 0;
        let shrunk = wait_until(|| {
            size = offsets_log_bytes(&data);
            size * 4 < written
        });
        assert!(
            shrunk,
            "__consumer_offsets still {size} bytes of {written}\n{}",
            tail(&broker.log(), 30)
        );
        let checkpoint =
            std::fs::read_to_string(data.join("cleaner-offset-checkpoint")).unwrap_or_default();
        assert!(checkpoint.contains("__consumer_offsets "), "{checkpoint}");

        drop(c);
        broker.kill9();
        broker.restart();
        let mut c = broker.client();
        let mut got = None;
        let loaded = wait_until(|| {
            got = committed(&mut c, "kept", "src");
            got == Some(300)
        });
        assert!(loaded, "kept's offset after the restart: {got:?}");
        assert_eq!(
            committed(&mut c, "deleted", "src"),
            Some(-1),
            "a deleted group stays deleted"
        );
    }
}

#[test]
fn describe_configs_lists_the_cleaner_settings() {
    use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
    use kafka_protocol::messages::DescribeConfigsRequest;

    let broker = Broker::start_with("\"log.cleaner.backoff.ms\" = 250\n");
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "described",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.2"),
        ],
    );
    assert_eq!(
        create_topic(&mut c, "bad", 1, 1, &[("min.cleanable.dirty.ratio", "2")]).error_code,
        ErrorCode::InvalidConfig.code(),
        "a ratio above 1 is refused"
    );
    let describe = |c: &mut Client, resource_type: i8, name: &str| {
        let mut res = DescribeConfigsResource::default();
        res.resource_type = resource_type;
        res.resource_name = s(name);
        res.configuration_keys = None;
        let mut req = DescribeConfigsRequest::default();
        req.resources = vec![res];
        let resp = c.send(4, &req);
        assert_eq!(resp.results[0].error_code, ErrorCode::None.code());
        resp.results[0]
            .configs
            .iter()
            .map(|e| {
                let v = e.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                (e.name.to_string(), (v, e.config_source, e.config_type))
            })
            .collect::<BTreeMap<_, _>>()
    };
    let topic = describe(&mut c, 2, "described");
    assert_eq!(topic["min.cleanable.dirty.ratio"], ("0.2".into(), 1, 6));
    assert_eq!(topic["delete.retention.ms"], ("86400000".into(), 5, 5));
    assert_eq!(topic["min.compaction.lag.ms"], ("0".into(), 5, 5));
    let broker_cfg = describe(&mut c, 4, "1");
    assert_eq!(broker_cfg["log.cleaner.enable"], ("true".into(), 5, 1));
    assert_eq!(broker_cfg["log.cleaner.backoff.ms"], ("250".into(), 4, 5));
    assert_eq!(
        broker_cfg["log.cleaner.min.cleanable.ratio"],
        ("0.5".into(), 5, 6)
    );
    assert!(broker_cfg.contains_key("log.cleaner.dedupe.buffer.size"));
    assert!(broker_cfg.contains_key("log.cleaner.io.max.bytes.per.second"));
}
