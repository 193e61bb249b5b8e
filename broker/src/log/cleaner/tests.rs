//! Tests of the cleaner: selection rules and grouping (pure), the batch
//! filter and re-encoding, the throttle, and whole passes over real logs in
//! a temporary directory on a compio runtime (key map bound, tombstones,
//! offsets kept, crash recovery of `.cleaned` and `.swap` files).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use sluice_protocol::batch::{self, BatchBuilder, BatchHeader};
use sluice_protocol::compression::Compression;

use super::filter::{filter_batch, filter_marker, AbortedRanges, FilterContext, Filtered};
use super::key_map::{KeyMap, ENTRY_COST_BYTES};
use super::plan::{cleanable, group_segments, LogSummary, Reason, SegmentSummary};
use super::*;
use crate::log::read::Isolation;
use crate::log::LogConfig;

fn run<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("compio runtime")
        .block_on(f)
}

fn config(overrides: &[(&str, &str)]) -> LogConfig {
    let mut all: BTreeMap<String, String> = [("cleanup.policy", "compact")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in overrides {
        all.insert(k.to_string(), v.to_string());
    }
    LogConfig::resolve(&BrokerConfig::default(), &all)
}

// ------------------------------------------------------------ selection

fn seg(base: i64, next: i64, size: u64, max_ts: i64) -> SegmentSummary {
    SegmentSummary {
        base,
        next_offset: next,
        size,
        max_timestamp: max_ts,
    }
}

/// Three closed segments of 100 bytes (offsets 0..30) and an active one.
fn summary(first_dirty: i64) -> LogSummary {
    LogSummary {
        segments: vec![
            seg(0, 10, 100, 1_000),
            seg(10, 20, 100, 2_000),
            seg(20, 30, 100, 3_000),
            seg(30, 35, 50, 4_000),
        ],
        log_start: 0,
        first_dirty,
        high_watermark: 35,
        first_dirty_timestamp: None,
        earliest_delete_horizon: None,
    }
}

#[test]
fn the_dirty_ratio_decides_and_the_active_segment_is_never_cleanable() {
    let cfg = config(&[]);
    let c = cleanable(&summary(0), &cfg, 10_000).expect("all dirty");
    assert_eq!((c.first_dirty, c.first_uncleanable), (0, 30));
    assert_eq!((c.clean_bytes, c.dirty_bytes), (0, 300));
    assert_eq!(c.reason, Reason::DirtyRatio);
    // One dirty segment of three: 1/3 < 0.5.
    assert!(cleanable(&summary(20), &cfg, 10_000).is_none());
    let low = config(&[("min.cleanable.dirty.ratio", "0.3")]);
    let c = cleanable(&summary(20), &low, 10_000).expect("1/3 >= 0.3");
    assert_eq!((c.clean_bytes, c.dirty_bytes), (200, 100));
    // Everything clean: only the active segment is left, never cleaned.
    assert!(cleanable(&summary(30), &low, 10_000).is_none());
    let mut only_active = summary(0);
    only_active.segments.drain(..3);
    assert!(cleanable(&only_active, &low, 10_000).is_none());
    // Not compacted: never.
    let delete = LogConfig {
        cleanup_compact: false,
        ..config(&[])
    };
    assert!(cleanable(&summary(0), &delete, 10_000).is_none());
}

#[test]
fn the_high_watermark_and_min_compaction_lag_bound_the_dirty_section() {
    let cfg = config(&[]);
    let mut s = summary(0);
    s.high_watermark = 15;
    // Segment 10..20 reaches past the hw: cleaning stops at its base.
    let c = cleanable(&s, &cfg, 10_000).expect("the first segment");
    assert_eq!((c.first_uncleanable, c.dirty_bytes), (10, 100));
    s.high_watermark = 35;
    let lag = config(&[("min.compaction.lag.ms", "8500")]);
    // now - lag = 1500: segment 10..20 (max ts 2000) is too young.
    assert_eq!(summary(0).first_uncleanable(&lag, 10_000), 10);
    let c = cleanable(&summary(0), &lag, 10_000).expect("the old segment");
    assert_eq!((c.dirty_bytes, c.first_uncleanable), (100, 10));
    assert!(
        cleanable(&summary(0), &lag, 1_500).is_none(),
        "all too young"
    );
}

#[test]
fn max_compaction_lag_and_expired_tombstones_force_a_clean() {
    let cfg = config(&[("max.compaction.lag.ms", "5000")]);
    let mut s = summary(20);
    s.first_dirty_timestamp = Some(3_000);
    assert!(
        cleanable(&s, &cfg, 8_000).is_none(),
        "lag 5000 not exceeded"
    );
    let c = cleanable(&s, &cfg, 8_001).expect("lag exceeded");
    assert_eq!(c.reason, Reason::MaxCompactionLag);
    assert!(c.dirty_ratio < 0.5);

    let mut s = summary(30);
    s.earliest_delete_horizon = Some(9_000);
    assert!(cleanable(&s, &cfg, 8_999).is_none());
    let c = cleanable(&s, &cfg, 9_000).expect("tombstones due");
    assert_eq!(c.reason, Reason::TombstonesExpired);
    assert_eq!(c.dirty_bytes, 0);
}

#[test]
fn the_first_dirty_offset_is_never_below_the_log_start() {
    let mut s = summary(0);
    s.log_start = 12;
    assert_eq!(s.first_dirty(), 12);
    let c = cleanable(&s, &config(&[]), 10_000).expect("dirty");
    assert_eq!(c.first_dirty, 12);
    assert_eq!(
        c.dirty_bytes, 200,
        "a segment wholly below the log start counts for nothing"
    );
}

#[test]
fn groups_stay_within_segment_bytes_and_the_index_range() {
    let segs = [
        seg(0, 10, 40, 0),
        seg(10, 20, 40, 0),
        seg(20, 30, 40, 0),
        seg(30, 40, 200, 0),
        seg(40, 50, 10, 0),
        seg(50, 60 + i64::from(u32::MAX), 10, 0),
    ];
    assert_eq!(
        group_segments(&segs, 100),
        vec![0..2, 2..3, 3..4, 4..5, 5..6]
    );
    assert_eq!(group_segments(&segs[..3], 120), vec![0..3]);
    assert!(group_segments(&[], 100).is_empty());
}

#[test]
fn the_throttle_waits_for_what_ran_ahead_of_the_rate() {
    use std::time::Duration;
    assert_eq!(
        throttle_delay(1000, Duration::from_millis(0), 1000.0),
        Duration::from_secs(1)
    );
    assert_eq!(
        throttle_delay(1000, Duration::from_millis(400), 1000.0),
        Duration::from_millis(600)
    );
    assert_eq!(
        throttle_delay(1000, Duration::from_secs(2), 1000.0),
        Duration::ZERO
    );
    assert_eq!(
        throttle_delay(1 << 30, Duration::ZERO, f64::MAX),
        Duration::ZERO
    );
}

// ------------------------------------------------------------ the filter

/// A batch of (key, value) records at `base`, timestamps 1000 + delta.
fn keyed_batch(
    base: i64,
    records: &[(Option<&str>, Option<&str>)],
    codec: Compression,
    producer: Option<(i64, i16, i32)>,
) -> (BatchHeader, Bytes) {
    let mut b = BatchBuilder::new(codec).with_partition_leader_epoch(3);
    if let Some((pid, epoch, seq)) = producer {
        b = b.with_producer(pid, epoch, seq);
    }
    for (i, (k, v)) in records.iter().enumerate() {
        b.push(
            1_000 + i as i64,
            k.map(str::as_bytes),
            v.map(str::as_bytes),
            &[],
        )
        .expect("push");
    }
    let mut bytes = BytesMut::from(&b.build()[..]);
    batch::set_base_offset(&mut bytes, base);
    let bytes = bytes.freeze();
    (BatchHeader::parse(&bytes).expect("header"), bytes)
}

fn pairs(bytes: &[u8]) -> Vec<(i64, Option<String>, Option<String>)> {
    let b = Bytes::copy_from_slice(bytes);
    let h = BatchHeader::parse(&b).expect("header");
    let s = |x: Option<Bytes>| x.map(|v| String::from_utf8_lossy(&v).into_owned());
    batch::decode_records(&b)
        .expect("records")
        .into_iter()
        .map(|r| (r.offset(&h), s(r.key.clone()), s(r.value)))
        .collect()
}

static NO_ABORTS: std::sync::LazyLock<AbortedRanges> =
    std::sync::LazyLock::new(AbortedRanges::default);

fn ctx<'a>(map: &'a KeyMap, producers: &'a HashMap<i64, i64>, now: i64) -> FilterContext<'a> {
    FilterContext {
        map,
        now_ms: now,
        delete_retention_ms: 500,
        last_batch_of_producer: producers,
        aborted: &NO_ABORTS,
    }
}

#[test]
fn superseded_and_keyless_records_go_and_the_rest_is_reencoded_faithfully() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let (h, bytes) = keyed_batch(
            100,
            &[
                (Some("a"), Some("a1")),
                (Some("b"), Some("b1")),
                (None, Some("nokey")),
                (Some("c"), Some("c1")),
            ],
            codec,
            Some((7, 2, 40)),
        );
        let mut map = KeyMap::with_budget(1 << 20);
        map.put(b"a", 200); // a newer "a" exists
        map.put(b"c", 103); // this "c" is the latest
        let producers = HashMap::new();
        let (out, stats) = filter_batch(&bytes, &h, &ctx(&map, &producers, 5_000)).unwrap();
        assert_eq!(stats.records_removed, 2, "{codec:?}");
        let Filtered::Rewritten(new) = out else {
            panic!("{codec:?}: expected a rewrite, got {out:?}");
        };
        batch::verify_crc(&new).expect("a fresh, valid CRC");
        let nh = BatchHeader::parse(&new).unwrap();
        assert_eq!(nh.base_offset, 100);
        assert_eq!(nh.last_offset_delta, 3, "the original last offset delta");
        assert_eq!(nh.last_offset(), h.last_offset());
        assert_eq!(
            (nh.producer_id, nh.producer_epoch, nh.base_sequence),
            (7, 2, 40)
        );
        assert_eq!(nh.partition_leader_epoch, 3);
        assert_eq!(nh.compression().unwrap(), codec, "same codec");
        assert_eq!(nh.records_count, 2);
        assert_eq!(nh.base_timestamp, h.base_timestamp);
        assert_eq!(nh.max_timestamp, 1_003);
        assert!(!nh.has_delete_horizon());
        assert_eq!(
            pairs(&new),
            vec![
                (101, Some("b".into()), Some("b1".into())),
                (103, Some("c".into()), Some("c1".into())),
            ]
        );
        let recs = batch::decode_records(&Bytes::from(new.clone())).unwrap();
        assert_eq!(recs[0].timestamp(&nh), 1_001, "timestamps kept");
    }
}

#[test]
fn a_batch_that_keeps_everything_is_kept_byte_for_byte() {
    let (h, bytes) = keyed_batch(
        0,
        &[(Some("a"), Some("1")), (Some("b"), Some("2"))],
        Compression::None,
        None,
    );
    let mut map = KeyMap::with_budget(1 << 20);
    map.put(b"a", 0);
    let producers = HashMap::new();
    let (out, stats) = filter_batch(&bytes, &h, &ctx(&map, &producers, 0)).unwrap();
    assert_eq!(out, Filtered::Unchanged);
    assert_eq!(stats.records_removed, 0);
}

#[test]
fn an_emptied_batch_goes_unless_it_is_a_producers_last() {
    let (h, bytes) = keyed_batch(
        10,
        &[(Some("a"), Some("1"))],
        Compression::Lz4,
        Some((5, 1, 9)),
    );
    let mut map = KeyMap::with_budget(1 << 20);
    map.put(b"a", 50);
    let mut producers = HashMap::new();
    producers.insert(5, 99);
    let (out, _) = filter_batch(&bytes, &h, &ctx(&map, &producers, 0)).unwrap();
    assert_eq!(out, Filtered::Removed, "not the producer's last batch");
    producers.insert(5, 10);
    let (out, _) = filter_batch(&bytes, &h, &ctx(&map, &producers, 0)).unwrap();
    let Filtered::Rewritten(empty) = out else {
        panic!("the producer's last batch keeps its header: {out:?}");
    };
    batch::verify_crc(&empty).expect("valid CRC");
    let eh = BatchHeader::parse(&empty).unwrap();
    assert_eq!(eh.records_count, 0);
    assert_eq!(eh.total_len(), batch::BATCH_HEADER_LEN);
    assert_eq!(
        eh.compression().unwrap(),
        Compression::None,
        "no codec over nothing"
    );
    assert!(batch::decode_records(&Bytes::from(empty.clone()))
        .unwrap()
        .is_empty());
    assert_eq!(
        (
            eh.base_offset,
            eh.last_offset(),
            eh.producer_id,
            eh.base_sequence,
            eh.last_sequence()
        ),
        (10, 10, 5, 9, 9)
    );
}

#[test]
fn tombstones_get_a_delete_horizon_then_go_after_it() {
    let (h, bytes) = keyed_batch(
        0,
        &[(Some("a"), None), (Some("b"), Some("1")), (Some("c"), None)],
        Compression::Gzip,
        None,
    );
    let mut map = KeyMap::with_budget(1 << 20);
    map.put(b"c", 9); // "c" was written again later
    let producers = HashMap::new();
    // First clean at 10_000: the horizon is 10_500, the tombstone of "a" stays.
    let (out, stats) = filter_batch(&bytes, &h, &ctx(&map, &producers, 10_000)).unwrap();
    assert_eq!(stats.delete_horizon, Some(10_500));
    let Filtered::Rewritten(first) = out else {
        panic!("{out:?}")
    };
    let fh = BatchHeader::parse(&first).unwrap();
    assert!(fh.has_delete_horizon());
    assert_eq!(fh.base_timestamp, 10_500);
    assert_eq!(
        pairs(&first),
        vec![
            (0, Some("a".into()), None),
            (1, Some("b".into()), Some("1".into()))
        ]
    );
    let recs = batch::decode_records(&Bytes::from(first.clone())).unwrap();
    assert_eq!(
        recs.iter().map(|r| r.timestamp(&fh)).collect::<Vec<_>>(),
        vec![1_000, 1_001],
        "record timestamps survive the re-basing"
    );
    // Before the horizon nothing changes.
    let first = Bytes::from(first);
    let (out, stats) = filter_batch(&first, &fh, &ctx(&map, &producers, 10_499)).unwrap();
    assert_eq!(out, Filtered::Unchanged);
    assert_eq!(stats.delete_horizon, Some(10_500));
    // At the horizon the tombstone goes and so does the horizon.
    let (out, stats) = filter_batch(&first, &fh, &ctx(&map, &producers, 10_500)).unwrap();
    assert_eq!(stats.delete_horizon, None);
    let Filtered::Rewritten(second) = out else {
        panic!("{out:?}")
    };
    let sh = BatchHeader::parse(&second).unwrap();
    assert!(!sh.has_delete_horizon());
    assert_eq!(sh.base_timestamp, 1_001);
    assert_eq!(
        pairs(&second),
        vec![(1, Some("b".into()), Some("1".into()))]
    );
    batch::verify_crc(&second).unwrap();
}

#[test]
fn control_batches_are_kept() {
    let mut b = BatchBuilder::new(Compression::None)
        .with_control(true)
        .with_transactional(true)
        .with_producer(3, 0, -1);
    b.push(1, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]), &[])
        .unwrap();
    let bytes = b.build();
    let h = BatchHeader::parse(&bytes).unwrap();
    let map = KeyMap::with_budget(1 << 20);
    let producers = HashMap::new();
    let (out, _) = filter_batch(&bytes, &h, &ctx(&map, &producers, 0)).unwrap();
    assert_eq!(out, Filtered::Unchanged);
}

#[test]
fn a_marker_of_a_transaction_without_records_gets_a_horizon_then_goes() {
    let mut b = BatchBuilder::new(Compression::None)
        .with_control(true)
        .with_transactional(true)
        .with_producer(3, 0, -1);
    b.push(1, Some(&[0, 0, 0, 0]), Some(&[0, 0, 0, 0, 0, 0]), &[])
        .unwrap();
    let bytes = b.build();
    let h = BatchHeader::parse(&bytes).unwrap();
    let map = KeyMap::with_budget(1 << 20);
    let producers = HashMap::new();
    let mut c = ctx(&map, &producers, 5_000);
    c.delete_retention_ms = 1_000;

    let (out, _) = filter_marker(&bytes, &h, &c, true).unwrap();
    assert_eq!(
        out,
        Filtered::Unchanged,
        "its transaction still has records"
    );

    let (out, stats) = filter_marker(&bytes, &h, &c, false).unwrap();
    assert_eq!(stats.delete_horizon, Some(6_000));
    let Filtered::Rewritten(stamped) = out else {
        panic!("stamped with a horizon: {out:?}");
    };
    batch::verify_crc(&stamped).unwrap();
    let sh = BatchHeader::parse(&stamped).unwrap();
    assert!(sh.is_control() && sh.is_transactional() && sh.has_delete_horizon());
    assert_eq!(
        (sh.base_offset, sh.producer_id, sh.records_count),
        (h.base_offset, 3, 1)
    );
    assert_eq!(
        batch::decode_records(&Bytes::from(stamped.clone())).unwrap()[0].key,
        batch::decode_records(&bytes).unwrap()[0].key,
        "the marker record itself is unchanged"
    );

    let stamped = Bytes::from(stamped);
    let (out, stats) = filter_marker(&stamped, &sh, &c, false).unwrap();
    assert_eq!(
        (out, stats.delete_horizon),
        (Filtered::Unchanged, Some(6_000))
    );
    c.now_ms = 6_000;
    let (out, _) = filter_marker(&stamped, &sh, &c, false).unwrap();
    assert_eq!(out, Filtered::Removed, "gone once the horizon passed");
}

// ------------------------------------------------------------ whole passes

use crate::log::open_test_log as open;

/// Appends one batch of (key, value) records; returns its base offset.
async fn put(log: &PartitionLog, records: &[(&str, Option<&str>)]) -> i64 {
    let mut b = BatchBuilder::new(Compression::None);
    for (k, v) in records {
        b.push(
            sluice_protocol::clock::now_ms(),
            Some(k.as_bytes()),
            v.map(str::as_bytes),
            &[],
        )
        .unwrap();
    }
    let bytes = b.build();
    let h = BatchHeader::parse(&bytes).unwrap();
    let r = log.append(vec![(h, bytes)], true).await;
    assert_eq!(r.error, sluice_protocol::ErrorCode::None);
    r.base_offset
}

/// Every record in the log as (offset, key, value).
fn contents(log: &PartitionLog) -> Vec<(i64, String, Option<String>)> {
    let st = log.state.borrow();
    let mut out = Vec::new();
    for seg in st.segments.values() {
        let data = Bytes::from(std::fs::read(seg.path("log")).expect("segment"));
        assert_eq!(data.len() as u64, seg.size, "file and state agree");
        let mut pos = 0;
        while pos < data.len() {
            let h = BatchHeader::parse(&data[pos..]).unwrap();
            let b = data.slice(pos..pos + h.total_len());
            batch::verify_crc(&b).expect("every batch valid");
            for r in batch::decode_records(&b).unwrap() {
                out.push((
                    r.offset(&h),
                    String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned(),
                    r.value.map(|v| String::from_utf8_lossy(&v).into_owned()),
                ));
            }
            pos += h.total_len();
        }
    }
    out
}

fn cleaner_cfg(buffer: u64) -> CleanerConfig {
    CleanerConfig {
        dedupe_buffer_size: buffer,
        io_max_bytes_per_second: f64::MAX,
        backoff: std::time::Duration::from_millis(10),
    }
}

async fn clean(log: &Rc<PartitionLog>, buffer: u64) -> Option<PassStats> {
    let mut throttle = Throttle::new(f64::MAX);
    clean_if_cleanable(log, &cleaner_cfg(buffer), &mut throttle, &|| false)
        .await
        .expect("clean")
}

/// 3 keys updated 4 times each, one batch per segment, then an active
/// segment with one more batch.
async fn updated_log(dir: &Path, cfg: LogConfig) -> Rc<PartitionLog> {
    let log = open(dir, cfg).await;
    for round in 0..4 {
        for k in ["a", "b", "c"] {
            let v = format!("{k}{round}");
            put(&log, &[(k, Some(&v))]).await;
        }
    }
    put(&log, &[("z", Some("active"))]).await;
    log
}

#[test]
fn a_pass_keeps_the_latest_value_per_key_with_its_offset() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let log = updated_log(dir.path(), config(&[("segment.bytes", "100")])).await;
        assert_eq!(
            log.state.borrow().segments.len(),
            13,
            "one batch per segment"
        );
        let before = contents(&log);
        let stats = clean(&log, 1 << 20).await.expect("cleanable");
        assert_eq!(stats.end_offset, 12, "everything below the active segment");
        assert_eq!(stats.records_removed, 9);
        assert!(stats.groups_swapped > 0);
        let after = contents(&log);
        assert_eq!(
            after,
            vec![
                (9, "a".into(), Some("a3".into())),
                (10, "b".into(), Some("b3".into())),
                (11, "c".into(), Some("c3".into())),
                (12, "z".into(), Some("active".into())),
            ]
        );
        for r in &after {
            assert!(before.contains(r), "survivor {r:?} kept its offset");
        }
        assert!(clean(&log, 1 << 20).await.is_none(), "nothing dirty now");
        // Reads still find everything, also from a removed offset.
        let range = log
            .read(0, 1 << 20, Isolation::ReadUncommitted)
            .unwrap()
            .records
            .expect("records");
        assert!(range.len > 0);
        assert_eq!(log.log_end_offset(), 13);
        // And so does a reopened log: same records, same end.
        log.close();
        drop(log);
        let log = open(dir.path(), config(&[("segment.bytes", "100")])).await;
        assert_eq!(contents(&log), after);
        assert_eq!(log.log_end_offset(), 13);
        assert_eq!(put(&log, &[("a", Some("a4"))]).await, 13);
    });
}

#[test]
fn a_small_key_map_cleans_up_to_where_it_fits_then_carries_on() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[
            ("segment.bytes", "100"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ]);
        let log = updated_log(dir.path(), cfg).await;
        // Room for two keys: the map covers offsets 0..1 (a, b), stops at c.
        let stats = clean(&log, 2 * ENTRY_COST_BYTES).await.expect("cleanable");
        assert_eq!(stats.end_offset, 2, "the pass ends where the map filled");
        assert_eq!(log.cleaner.borrow().first_dirty, Some(2));
        assert_eq!(
            stats.records_removed, 0,
            "nothing older than the map's keys"
        );
        let mut passes = 1;
        while let Some(s) = clean(&log, 2 * ENTRY_COST_BYTES).await {
            passes += 1;
            assert!(s.end_offset > 2);
            assert!(passes < 20, "the passes move forward");
        }
        let keys: Vec<(i64, String)> = contents(&log).into_iter().map(|(o, k, _)| (o, k)).collect();
        assert_eq!(
            keys,
            vec![
                (9, "a".into()),
                (10, "b".into()),
                (11, "c".into()),
                (12, "z".into())
            ]
        );
    });
}

#[test]
fn tombstones_outlive_their_first_clean_by_delete_retention() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[("segment.bytes", "100"), ("delete.retention.ms", "300")]);
        let log = open(dir.path(), cfg).await;
        put(&log, &[("a", Some("1"))]).await;
        put(&log, &[("b", Some("1"))]).await;
        put(&log, &[("a", None)]).await;
        put(&log, &[("z", Some("active"))]).await;
        clean(&log, 1 << 20).await.expect("cleanable");
        assert_eq!(
            contents(&log),
            vec![
                (1, "b".into(), Some("1".into())),
                (2, "a".into(), None),
                (3, "z".into(), Some("active".into())),
            ],
            "the tombstone stays for now"
        );
        let horizon = log
            .cleaner
            .borrow()
            .earliest_delete_horizon
            .expect("horizon");
        assert!(clean(&log, 1 << 20).await.is_none(), "not due yet");
        let wait = horizon - sluice_protocol::clock::now_ms();
        if wait >= 0 {
            compio::time::sleep(std::time::Duration::from_millis(wait as u64 + 20)).await;
        }
        let stats = clean(&log, 1 << 20).await.expect("tombstones due");
        assert_eq!(stats.records_removed, 1);
        assert_eq!(
            contents(&log),
            vec![
                (1, "b".into(), Some("1".into())),
                (3, "z".into(), Some("active".into())),
            ]
        );
        assert_eq!(log.cleaner.borrow().earliest_delete_horizon, None);
    });
}

#[test]
fn the_horizon_is_found_again_after_a_restart() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[("segment.bytes", "100"), ("delete.retention.ms", "60000")]);
        let log = open(dir.path(), cfg.clone()).await;
        put(&log, &[("a", None)]).await;
        put(&log, &[("z", Some("active"))]).await;
        clean(&log, 1 << 20).await.expect("cleanable");
        let horizon = log.cleaner.borrow().earliest_delete_horizon;
        assert!(horizon.is_some());
        log.close();
        drop(log);
        let log = open(dir.path(), cfg).await;
        assert_eq!(log.cleaner.borrow().earliest_delete_horizon, horizon);
    });
}

#[test]
fn recovery_drops_cleaned_files_and_completes_swaps() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[("segment.bytes", "100")]);
        let log = updated_log(dir.path(), cfg.clone()).await;
        let before = contents(&log);
        let part = log.dir.clone();
        // What a finished clean of segments 0..=5 would have written: the
        // latest of each key among offsets 0..6 (3, 4, 5), as one file.
        let mut swap = Vec::new();
        let mut cleaned = Vec::new();
        {
            let st = log.state.borrow();
            for (base, s) in st.segments.range(3..6) {
                let data = std::fs::read(s.path("log")).unwrap();
                assert_eq!(*base, s.base_offset);
                swap.extend_from_slice(&data);
            }
            cleaned.extend_from_slice(&std::fs::read(st.segments[&6].path("log")).unwrap());
        }
        log.close();
        drop(log);
        std::fs::write(swap::swap_path(&part, 0), &swap).unwrap();
        // A clean killed in step 1 of another group: half a file.
        std::fs::write(swap::cleaned_path(&part, 6), &cleaned[..10]).unwrap();
        // Killed after deleting one of the group's other segments.
        std::fs::remove_file(part.join(log_file_name(4))).unwrap();

        let log = open(dir.path(), cfg).await;
        let names: Vec<String> = std::fs::read_dir(&part)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            !names
                .iter()
                .any(|n| n.ends_with(".swap") || n.ends_with(".cleaned")),
            "{names:?}"
        );
        for gone in [1, 2, 3, 4, 5] {
            assert!(
                !part.join(log_file_name(gone)).exists(),
                "segment {gone} replaced"
            );
        }
        let after = contents(&log);
        let expected: Vec<_> = before.iter().filter(|(o, _, _)| *o >= 3).cloned().collect();
        assert_eq!(
            after, expected,
            "the swap took the group's place, nothing else changed"
        );
        assert_eq!(log.log_end_offset(), 13);
    });
}

#[test]
fn a_log_that_changed_under_the_clean_is_left_alone() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let log = updated_log(dir.path(), config(&[("segment.bytes", "100")])).await;
        let group = log.snapshot_segments()[..2].to_vec();
        // Retention (or a truncation) replaced segment 0 meanwhile.
        let replaced = {
            let st = log.state.borrow();
            let s = &st.segments[&1];
            Segment::empty(
                &log.dir,
                5_000,
                s.writer.clone(),
                std::fs::File::open(s.path("log")).unwrap(),
                0,
            )
        };
        log.state.borrow_mut().segments.remove(&0);
        assert!(!swap_in(&log, &group, replaced, &[]));
        assert!(log.state.borrow().segments.contains_key(&1));
        assert!(!log.state.borrow().segments.contains_key(&5_000));
    });
}

/// One batch of `records` from producer `pid` (epoch 0) starting at
/// sequence `seq`, transactional or not.
fn producer_batch(
    pid: i64,
    seq: i32,
    records: &[(&str, &str)],
    transactional: bool,
    codec: Compression,
) -> (BatchHeader, Bytes) {
    let mut b = BatchBuilder::new(codec)
        .with_producer(pid, 0, seq)
        .with_transactional(transactional);
    for (k, v) in records {
        b.push(
            sluice_protocol::clock::now_ms(),
            Some(k.as_bytes()),
            Some(v.as_bytes()),
            &[],
        )
        .unwrap();
    }
    let bytes = b.build();
    (BatchHeader::parse(&bytes).unwrap(), bytes)
}

/// Appends one idempotent batch of `records` from producer `pid` (epoch 0)
/// starting at sequence `seq`.
async fn put_idempotent(log: &PartitionLog, pid: i64, seq: i32, records: &[(&str, &str)]) -> i64 {
    let batch = producer_batch(pid, seq, records, false, Compression::Zstd);
    let r = log.append(vec![batch], true).await;
    assert_eq!(r.error, sluice_protocol::ErrorCode::None);
    r.base_offset
}

#[test]
fn a_producers_last_batch_survives_as_an_empty_header_across_a_restart() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[("segment.bytes", "100")]);
        let log = open(dir.path(), cfg.clone()).await;
        put_idempotent(&log, 7, 0, &[("a", "1"), ("b", "1")]).await;
        put_idempotent(&log, 7, 2, &[("a", "2"), ("b", "2")]).await;
        // Another producer overwrites both keys: producer 7's batches are
        // all superseded, the second one is its last.
        put_idempotent(&log, 8, 0, &[("a", "3"), ("b", "3")]).await;
        put(&log, &[("z", Some("active"))]).await;
        clean(&log, 1 << 20).await.expect("cleanable");
        let headers: Vec<(i64, i32, i64, i32)> = {
            let st = log.state.borrow();
            let mut v = Vec::new();
            for s in st.segments.values() {
                let mut pos = 0;
                while let Some(h) = s.header_at(pos).unwrap() {
                    v.push((
                        h.base_offset,
                        h.records_count,
                        h.producer_id,
                        h.last_sequence(),
                    ));
                    pos += h.total_len() as u64;
                }
            }
            v
        };
        assert_eq!(
            headers,
            vec![(2, 0, 7, 3), (4, 2, 8, 1), (6, 1, -1, -1)],
            "producer 7's first batch is gone, its last kept empty"
        );
        assert_eq!(
            contents(&log)
                .into_iter()
                .map(|(o, _, v)| (o, v.unwrap_or_default()))
                .collect::<Vec<_>>(),
            vec![(4, "3".into()), (5, "3".into()), (6, "active".into())]
        );
        log.close();
        drop(log);
        let log = open(dir.path(), cfg).await;
        let last = log.state.borrow().producers.producers[&7]
            .batches
            .back()
            .copied()
            .expect("producer 7 is known after the restart");
        assert_eq!((last.first_seq, last.last_seq, last.last_offset), (2, 3, 3));
        // Its retry is still recognised, its next sequence accepted.
        let dup = put_idempotent(&log, 7, 2, &[("a", "2"), ("b", "2")]).await;
        assert_eq!(dup, 2, "a retry of the last batch answers its offset");
        assert_eq!(put_idempotent(&log, 7, 4, &[("c", "1")]).await, 7);
    });
}

/// Appends one transactional batch of `records` from producer `pid`
/// (epoch 0) at sequence `seq`, then its commit or abort marker.
async fn put_transaction(
    log: &PartitionLog,
    pid: i64,
    seq: i32,
    records: &[(&str, &str)],
    commit: bool,
) {
    let batch = producer_batch(pid, seq, records, true, Compression::None);
    let r = log.append(vec![batch], true).await;
    assert_eq!(r.error, sluice_protocol::ErrorCode::None);
    let marker = crate::log::txn_marker::EndTxnMarker {
        commit,
        coordinator_epoch: 0,
    }
    .build_batch(pid, 0, sluice_protocol::clock::now_ms());
    let h = BatchHeader::parse(&marker).unwrap();
    let r = log.append(vec![(h, marker)], true).await;
    assert_eq!(r.error, sluice_protocol::ErrorCode::None);
}

#[test]
fn an_aborted_transactions_records_go_and_never_displace_committed_ones() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[("segment.bytes", "100")]);
        let log = open(dir.path(), cfg).await;
        put(&log, &[("a", Some("committed-a"))]).await;
        put_transaction(&log, 9, 0, &[("b", "committed-b")], true).await;
        // A later transaction overwrites both keys, then aborts.
        put_transaction(&log, 10, 0, &[("a", "aborted"), ("b", "aborted")], false).await;
        put(&log, &[("z", Some("active"))]).await;
        clean(&log, 1 << 20).await.expect("cleanable");
        let values: Vec<(String, Option<String>)> =
            contents(&log).into_iter().map(|(_, k, v)| (k, v)).collect();
        assert!(
            values.contains(&("a".into(), Some("committed-a".into())))
                && values.contains(&("b".into(), Some("committed-b".into()))),
            "the committed values survive: {values:?}"
        );
        assert!(
            !values.iter().any(|(_, v)| v.as_deref() == Some("aborted")),
            "the aborted records are gone: {values:?}"
        );
    })
}

/// Every batch header in the log, in order.
fn headers(log: &PartitionLog) -> Vec<BatchHeader> {
    let st = log.state.borrow();
    let mut out = Vec::new();
    for seg in st.segments.values() {
        let data = std::fs::read(seg.path("log")).expect("segment");
        let mut pos = 0;
        while pos < data.len() {
            let h = BatchHeader::parse(&data[pos..]).unwrap();
            pos += h.total_len();
            out.push(h);
        }
    }
    out
}

#[test]
fn markers_of_transactions_left_without_records_go_after_the_delete_horizon() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[("segment.bytes", "100"), ("delete.retention.ms", "0")]);
        let log = open(dir.path(), cfg).await;
        put(&log, &[("a", Some("committed-a"))]).await;
        // Producer 10: an aborted transaction, then a committed one.
        put_transaction(&log, 10, 0, &[("a", "aborted")], false).await;
        put_transaction(&log, 10, 1, &[("d", "d1")], true).await;
        // Producer 9: a committed transaction whose record is superseded
        // below, then one that stays.
        put_transaction(&log, 9, 0, &[("b", "old")], true).await;
        put_transaction(&log, 9, 1, &[("c", "c1")], true).await;
        put(&log, &[("b", Some("new"))]).await;
        put(&log, &[("z", Some("active"))]).await;
        let markers = |log: &PartitionLog| -> Vec<(i64, i64)> {
            headers(log)
                .iter()
                .filter(|h| h.is_control())
                .map(|h| (h.producer_id, h.base_offset))
                .collect()
        };
        let before = markers(&log);
        assert_eq!(before.len(), 4);
        let aborted_entries = |log: &PartitionLog| -> usize {
            let st = log.state.borrow();
            st.segments
                .values()
                .map(|s| s.txn_index.entries.len())
                .sum()
        };
        assert_eq!(aborted_entries(&log), 1);

        clean(&log, 1 << 20).await.expect("cleanable");
        assert_eq!(markers(&log), before, "the first clean only stamps them");
        let stamped: Vec<(i64, i64)> = headers(&log)
            .iter()
            .filter(|h| h.is_control() && h.has_delete_horizon())
            .map(|h| (h.producer_id, h.base_offset))
            .collect();
        // Producer 10's abort marker (offset 2) and producer 9's first
        // commit marker (offset 6) lost their transactions' records.
        assert_eq!(stamped, vec![(10, 2), (9, 6)]);

        std::thread::sleep(std::time::Duration::from_millis(5));
        clean(&log, 1 << 20)
            .await
            .expect("past the horizon: cleanable");
        assert_eq!(
            markers(&log),
            vec![(10, 4), (9, 8)],
            "the markers of transactions with records stay"
        );
        assert_eq!(
            aborted_entries(&log),
            0,
            "the abort's index entry went with it"
        );
        let values: Vec<(String, Option<String>)> =
            contents(&log).into_iter().map(|(_, k, v)| (k, v)).collect();
        for kv in [("a", "committed-a"), ("b", "new"), ("c", "c1"), ("d", "d1")] {
            assert!(
                values.contains(&(kv.0.into(), Some(kv.1.into()))),
                "{kv:?} stays: {values:?}"
            );
        }
        log.close();
        drop(log);
        let log = open(dir.path(), config(&[("segment.bytes", "100")])).await;
        assert_eq!(markers(&log), vec![(10, 4), (9, 8)], "after a restart too");
        assert_eq!(aborted_entries(&log), 0);
    })
}

/// Files of `dir` this process still holds open although they were
/// unlinked (`/proc/self/fd` links ending in " (deleted)").
fn deleted_files_held_open(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&prefix) && p.ends_with(" (deleted)"))
        .collect()
}

#[test]
fn replaced_segments_are_closed_off_the_shard_thread_and_not_held() {
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;

    /// Notes the thread that drops it.
    struct DropThread(Arc<Mutex<Option<ThreadId>>>);
    impl Drop for DropThread {
        fn drop(&mut self) {
            *self.0.lock().unwrap() = Some(std::thread::current().id());
        }
    }

    run(async {
        let seen = Arc::new(Mutex::new(None));
        drop_off_shard(DropThread(seen.clone())).await;
        let dropped_on = seen
            .lock()
            .unwrap()
            .expect("dropped by the time it returns");
        assert_ne!(
            dropped_on,
            std::thread::current().id(),
            "not on the shard's thread"
        );

        // A whole pass: the originals it replaced are unlinked and no handle
        // of theirs outlives it (the pass's snapshots were the last ones).
        let dir = tempfile::tempdir().unwrap();
        let log = updated_log(dir.path(), config(&[("segment.bytes", "100")])).await;
        let stats = clean(&log, 1 << 20).await.expect("cleanable");
        assert!(stats.groups_swapped > 0);
        assert_eq!(deleted_files_held_open(dir.path()), Vec::<String>::new());
        assert_eq!(contents(&log).len(), 4, "the pass itself did its work");
    });
}
