//! The partition log on disk: segment rolling, size retention,
//! DeleteRecords, offsets by timestamp, and recovery of a damaged tail
//! after a crash.

use std::io::Write;

use crate::support::*;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::DeleteRecordsRequest;
use sluice_protocol::ErrorCode;

fn delete_records(c: &mut Client, topic: &str, partition: i32, offset: i64) -> (i16, i64) {
    let mut p = DeleteRecordsPartition::default();
    p.partition_index = partition;
    p.offset = offset;
    let mut t = DeleteRecordsTopic::default();
    t.name = topic_name(topic);
    t.partitions = vec![p];
    let mut req = DeleteRecordsRequest::default();
    req.topics = vec![t];
    req.timeout_ms = 10_000;
    let resp = c.send(2, &req);
    let r = &resp.topics[0].partitions[0];
    (r.error_code, r.low_watermark)
}

#[test]
fn segments_roll_and_size_retention_deletes_old_ones() {
    let broker = Broker::start_with("\"log.segment.bytes\" = 4096\n");
    let mut c = broker.client();
    create_topic_ok(&mut c, "ret", 1, &[]);
    let value = "v".repeat(900);
    // ~1 KB per batch, 4 KB segments: ~10 segments for 40 batches.
    for i in 0..40i64 {
        let v = format!("{i:04}-{value}");
        assert_eq!(produce_ok(&mut c, "ret", 0, batch(&[&v])), i);
    }
    let dir = broker.partition_dir("ret", 0);
    let before = log_files(&dir);
    assert!(
        before.len() >= 5,
        "several segments after rolling: {before:?}"
    );
    assert_eq!(before[0], "00000000000000000000.log");
    assert_eq!(offset_of(&mut c, "ret", 0, EARLIEST), 0);

    set_topic_config(&mut c, "ret", "retention.bytes", "8192");
    let moved = wait_until(|| {
        offset_of(&mut c, "ret", 0, EARLIEST) > 0 && !dir.join("00000000000000000000.log").exists()
    });
    assert!(
        moved,
        "retention moved the log start and deleted the first segment; files now {:?}",
        log_files(&dir)
    );
    // Wait for the retention pass to settle (it may run more than once).
    let after = log_files(&dir);
    assert!(
        after.len() < before.len(),
        "segments deleted: {before:?} -> {after:?}"
    );
    let start = offset_of(&mut c, "ret", 0, EARLIEST);
    assert!(start > 0 && start < 40, "log start {start}");
    // The first remaining segment starts at the log start offset.
    assert_eq!(
        after[0],
        format!("{start:020}.log"),
        "first file {after:?} vs log start {start}"
    );

    let tr = topic_ref(&mut c, "ret");
    let p = fetch(&mut c, &tr, 0, 0);
    assert_eq!(
        p.error_code,
        ErrorCode::OffsetOutOfRange.code(),
        "offset 0 was deleted"
    );
    let recs = fetch_all(&mut c, &tr, 0, start);
    assert_eq!(recs.first().map(|r| r.offset), Some(start));
    assert_eq!(recs.last().map(|r| r.offset), Some(39));
    for r in &recs {
        assert!(
            r.value_str().starts_with(&format!("{:04}-", r.offset)),
            "record {} holds its own value",
            r.offset
        );
    }
    // New data still goes to the end.
    assert_eq!(produce_ok(&mut c, "ret", 0, batch(&["tail"])), 40);
}

#[test]
fn delete_records_moves_log_start_and_survives_restart() {
    let mut broker = Broker::start_with("\"log.segment.bytes\" = 1024\n");
    let mut c = broker.client();
    create_topic_ok(&mut c, "dr", 1, &[]);
    let pad = "p".repeat(200);
    for i in 0..20i64 {
        let v = format!("{i}-{pad}");
        assert_eq!(produce_ok(&mut c, "dr", 0, batch(&[&v])), i);
    }
    let segments_before = log_files(&broker.partition_dir("dr", 0));
    assert!(segments_before.len() > 2, "{segments_before:?}");

    let (err, low) = delete_records(&mut c, "dr", 0, 21);
    assert_eq!(
        err,
        ErrorCode::OffsetOutOfRange.code(),
        "DeleteRecords beyond the high watermark"
    );
    assert_eq!(low, -1);

    let (err, low) = delete_records(&mut c, "dr", 0, 13);
    assert_eq!(err, ErrorCode::None.code());
    assert_eq!(low, 13);
    assert_eq!(offset_of(&mut c, "dr", 0, EARLIEST), 13);
    assert_eq!(offset_of(&mut c, "dr", 0, LATEST), 20);
    let tr = topic_ref(&mut c, "dr");
    for below in [0i64, 5, 12] {
        assert_eq!(
            fetch(&mut c, &tr, 0, below).error_code,
            ErrorCode::OffsetOutOfRange.code(),
            "fetch at {below} below the log start"
        );
    }
    let recs = fetch_all(&mut c, &tr, 0, 13);
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (13..20).collect::<Vec<_>>()
    );
    let segments_after = log_files(&broker.partition_dir("dr", 0));
    assert!(
        segments_after.len() < segments_before.len(),
        "segments below the log start are gone: {segments_after:?}"
    );

    // Moving backwards is a no-op that reports the current low watermark.
    let (err, low) = delete_records(&mut c, "dr", 0, 3);
    assert_eq!(err, ErrorCode::None.code());
    assert_eq!(low, 13);

    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    assert_eq!(
        offset_of(&mut c, "dr", 0, EARLIEST),
        13,
        "log start survives a restart"
    );
    assert_eq!(offset_of(&mut c, "dr", 0, LATEST), 20);
    assert_eq!(
        fetch(&mut c, &tr, 0, 12).error_code,
        ErrorCode::OffsetOutOfRange.code()
    );
    let recs = fetch_all(&mut c, &tr, 0, 13);
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (13..20).collect::<Vec<_>>()
    );
    assert_eq!(produce_ok(&mut c, "dr", 0, batch(&["next"])), 20);
}

#[test]
fn list_offsets_by_timestamp() {
    // Small segments and an index entry for every batch, so lookups go
    // through several segments and their time indexes.
    let broker = Broker::start();
    let mut c = broker.client();
    // Fixed timestamps from 2023: time retention must not delete them.
    create_topic_ok(
        &mut c,
        "ts",
        1,
        &[
            ("segment.bytes", "300"),
            ("index.interval.bytes", "1"),
            ("retention.ms", "-1"),
        ],
    );
    let t0: i64 = 1_700_000_000_000;
    // Batch k holds two records: t0 + 1000k and t0 + 1000k + 500, at
    // offsets 2k and 2k+1.
    for k in 0..6i64 {
        let (a, b) = (t0 + 1000 * k, t0 + 1000 * k + 500);
        let va = format!("r{}", 2 * k);
        let vb = format!("r{}", 2 * k + 1);
        assert_eq!(
            produce_ok(&mut c, "ts", 0, batch_ts(&[(a, &va), (b, &vb)])),
            2 * k
        );
    }
    assert!(
        log_files(&broker.partition_dir("ts", 0)).len() > 1,
        "several segments"
    );

    let cases: &[(i64, i64, i64)] = &[
        // (query, expected offset, expected timestamp)
        (t0 - 5, 0, t0),
        (t0, 0, t0),
        (t0 + 1, 1, t0 + 500),
        (t0 + 500, 1, t0 + 500),
        (t0 + 501, 2, t0 + 1000),
        (t0 + 1000, 2, t0 + 1000),
        (t0 + 2600, 6, t0 + 3000),
        (t0 + 5500, 11, t0 + 5500),
    ];
    for &(q, off, ts) in cases {
        let r = list_offsets(&mut c, "ts", 0, q);
        assert_eq!(r.error_code, ErrorCode::None.code(), "query {q}");
        assert_eq!(
            (r.offset, r.timestamp),
            (off, ts),
            "ListOffsets(t0{:+})",
            q - t0
        );
    }
    let r = list_offsets(&mut c, "ts", 0, t0 + 100_000);
    assert_eq!(r.error_code, ErrorCode::None.code());
    assert_eq!(
        r.offset, -1,
        "a timestamp beyond every record gives offset -1"
    );
    assert_eq!(offset_of(&mut c, "ts", 0, LATEST), 12);
    assert_eq!(offset_of(&mut c, "ts", 0, EARLIEST), 0);
    let r = list_offsets(&mut c, "ts", 0, -3);
    assert_eq!((r.offset, r.timestamp), (11, t0 + 5500), "MAX_TIMESTAMP");
}

/// Produces `n` single-record batches "v0".."v{n-1}", kills the broker and
/// returns the path of the active segment file.
fn fill_and_kill(broker: &mut Broker, topic: &str, n: i64) -> std::path::PathBuf {
    let mut c = broker.client();
    create_topic_ok(&mut c, topic, 1, &[]);
    for i in 0..n {
        let v = format!("v{i}");
        assert_eq!(
            produce_ok(&mut c, topic, 0, batch(&[&v, &format!("{v}b")])),
            2 * i
        );
    }
    drop(c);
    broker.kill9();
    let dir = broker.partition_dir(topic, 0);
    let files = log_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    dir.join(&files[0])
}

/// After restart the log must hold exactly offsets 0..end with the values
/// produced, and the next produce must get `end`.
fn check_recovered(broker: &Broker, topic: &str, end: i64) {
    let mut c = broker.client();
    assert_eq!(
        offset_of(&mut c, topic, 0, LATEST),
        end,
        "log end after recovery"
    );
    let tr = topic_ref(&mut c, topic);
    let recs = fetch_all(&mut c, &tr, 0, 0);
    let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (0..end).collect::<Vec<_>>(),
        "every earlier record is fetchable"
    );
    for r in &recs {
        let base = format!("v{}", r.offset / 2);
        let want = if r.offset % 2 == 0 {
            base
        } else {
            format!("{base}b")
        };
        assert_eq!(r.value_str(), want);
    }
    assert_eq!(
        produce_ok(&mut c, topic, 0, batch(&["after-a", "after-b"])),
        end,
        "next offset follows the last whole batch"
    );
    let recs = fetch_all(&mut c, &tr, 0, 0);
    let offsets: Vec<i64> = recs.iter().map(|r| r.offset).collect();
    assert_eq!(
        offsets,
        (0..end + 2).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(recs[end as usize].value_str(), "after-a");
}

#[test]
fn recovery_cuts_a_torn_half_batch() {
    let mut broker = Broker::start();
    let seg = fill_and_kill(&mut broker, "torn", 5);
    let len = std::fs::metadata(&seg).unwrap().len();
    // Half of a real batch, as a crash mid-write leaves it.
    let mut half = batch(&["lost", "lostb"]).to_vec();
    half[..8].copy_from_slice(&10i64.to_be_bytes());
    half.truncate(half.len() / 2);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&half)
        .unwrap();
    broker.restart();
    check_recovered(&broker, "torn", 10);
    // The torn bytes were cut from the file before the new batch went in.
    let new_len = std::fs::metadata(&seg).unwrap().len();
    assert_eq!(
        new_len,
        len + batch(&["after-a", "after-b"]).len() as u64,
        "segment = old batches + the new one"
    );
}

#[test]
fn recovery_cuts_garbage_after_the_last_batch() {
    let mut broker = Broker::start();
    let seg = fill_and_kill(&mut broker, "garbage", 5);
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    // Zeros (a preallocated tail) followed by arbitrary bytes.
    f.write_all(&[0u8; 100]).unwrap();
    f.write_all(&[0xAB; 300]).unwrap();
    drop(f);
    broker.restart();
    check_recovered(&broker, "garbage", 10);
}

#[test]
fn recovery_cuts_a_last_batch_with_a_bad_crc() {
    let mut broker = Broker::start();
    let seg = fill_and_kill(&mut broker, "crc", 5);
    // Flip a byte inside the last batch's records (the file's last byte is
    // part of its last record).
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0xFF;
    std::fs::write(&seg, &bytes).unwrap();
    broker.restart();
    // Batch 4 (offsets 8, 9) is cut; 0..8 stay.
    check_recovered(&broker, "crc", 8);
}

#[test]
fn recovery_cuts_a_torn_header_shorter_than_a_batch_header() {
    let mut broker = Broker::start();
    let seg = fill_and_kill(&mut broker, "shorthdr", 3);
    let partial = batch(&["x"]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&partial[..20])
        .unwrap();
    broker.restart();
    check_recovered(&broker, "shorthdr", 6);
}

#[test]
fn every_offset_is_found_across_segments_before_and_after_restart() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "idx",
        1,
        &[("segment.bytes", "700"), ("index.interval.bytes", "150")],
    );
    // Batches of 1..=3 records so batch boundaries and offsets differ.
    let mut end = 0i64;
    let mut bounds = Vec::new();
    for i in 0..30 {
        let n = 1 + (i % 3) as usize;
        let values: Vec<String> = (0..n).map(|j| format!("o{}", end + j as i64)).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        assert_eq!(produce_ok(&mut c, "idx", 0, batch(&refs)), end);
        bounds.push((end, end + n as i64 - 1));
        end += n as i64;
    }
    assert!(
        log_files(&broker.partition_dir("idx", 0)).len() > 3,
        "several segments"
    );
    let check = |c: &mut Client| {
        let tr = topic_ref(c, "idx");
        for o in 0..end {
            let p = fetch(c, &tr, 0, o);
            assert_eq!(p.error_code, ErrorCode::None.code(), "fetch at {o}");
            let first = batch_bases(p.records.as_ref()).first().copied();
            let want = bounds.iter().copied().find(|(a, b)| *a <= o && o <= *b);
            assert_eq!(first, want, "fetch at {o} starts with the batch holding it");
            let recs = decode(p.records.as_ref());
            let r = recs.iter().find(|r| r.offset == o).expect("record present");
            assert_eq!(r.value_str(), format!("o{o}"));
        }
        assert_eq!(fetch_all(c, &tr, 0, 0).len() as i64, end);
    };
    check(&mut c);
    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    check(&mut c);
    // And after a clean stop, which writes the index files.
    drop(c);
    assert!(broker.sigterm().success());
    broker.restart();
    let mut c = broker.client();
    check(&mut c);
    assert_eq!(produce_ok(&mut c, "idx", 0, batch(&["last"])), end);
}

#[test]
fn list_offsets_by_timestamp_after_restart() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "ts2",
        1,
        &[
            ("segment.bytes", "250"),
            ("index.interval.bytes", "1"),
            ("retention.ms", "-1"),
        ],
    );
    let t0: i64 = 1_600_000_000_000;
    for k in 0..8i64 {
        let v = format!("r{k}");
        produce_ok(&mut c, "ts2", 0, batch_ts(&[(t0 + 1000 * k, &v)]));
    }
    let ask = |c: &mut Client| -> Vec<(i64, i64)> {
        (0..9)
            .map(|k| {
                let r = list_offsets(c, "ts2", 0, t0 + 1000 * k - 1);
                (r.offset, r.timestamp)
            })
            .collect()
    };
    let want: Vec<(i64, i64)> = (0..8)
        .map(|k| (k, t0 + 1000 * k))
        .chain([(-1, -1)])
        .collect();
    assert_eq!(ask(&mut c), want, "before restart");
    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    assert_eq!(ask(&mut c), want, "after kill -9 (indexes rebuilt)");
    drop(c);
    assert!(broker.sigterm().success());
    broker.restart();
    let mut c = broker.client();
    assert_eq!(
        ask(&mut c),
        want,
        "after a clean restart (indexes from disk)"
    );
}

#[test]
fn concurrent_producers_get_distinct_contiguous_offsets() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "busy", 1, &[]);
    let port = broker.port;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut c = Client::connect(port);
                let mut offsets = Vec::new();
                for i in 0..50 {
                    let a = format!("t{t}-{i}-a");
                    let b = format!("t{t}-{i}-b");
                    offsets.push(produce_ok(&mut c, "busy", 0, batch(&[&a, &b])));
                }
                offsets
            })
        })
        .collect();
    let mut all: Vec<i64> = threads
        .into_iter()
        .flat_map(|h| h.join().expect("producer thread"))
        .collect();
    all.sort();
    assert_eq!(
        all,
        (0..200).map(|i| 2 * i).collect::<Vec<_>>(),
        "every batch has its own base offset"
    );
    assert_eq!(offset_of(&mut c, "busy", 0, LATEST), 400);
    let tr = topic_ref(&mut c, "busy");
    let recs = fetch_all(&mut c, &tr, 0, 0);
    assert_eq!(recs.len(), 400);
    for pair in recs.chunks(2) {
        let a = pair[0].value_str();
        assert_eq!(
            pair[1].value_str(),
            format!("{}b", a.trim_end_matches('a')),
            "a batch's records stay together"
        );
    }
}

#[test]
fn recovery_of_a_multi_segment_log_with_a_torn_tail() {
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(&mut c, "multi", 1, &[("segment.bytes", "600")]);
    for i in 0..20i64 {
        let v = format!("v{i}");
        assert_eq!(
            produce_ok(&mut c, "multi", 0, batch(&[&v, &format!("{v}b")])),
            2 * i
        );
    }
    drop(c);
    broker.kill9();
    let dir = broker.partition_dir("multi", 0);
    let files = log_files(&dir);
    assert!(files.len() > 2, "{files:?}");
    let active = dir.join(files.last().unwrap());
    let mut half = batch(&["lost"]).to_vec();
    half[..8].copy_from_slice(&40i64.to_be_bytes());
    half.truncate(40);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&active)
        .unwrap()
        .write_all(&half)
        .unwrap();
    // Stale index files must not confuse recovery either.
    for f in &files {
        let idx = dir.join(f.replace(".log", ".index"));
        let _ = std::fs::write(&idx, [0xFFu8; 24]);
    }
    broker.restart();
    check_recovered(&broker, "multi", 40);
}

#[test]
fn time_retention_deletes_segments_of_old_records_only() {
    let broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "aged",
        1,
        &[("segment.bytes", "300"), ("retention.ms", "600000")],
    );
    let old = 1_600_000_000_000i64;
    for k in 0..6i64 {
        let v = format!("old{k}");
        produce_ok(&mut c, "aged", 0, batch_ts(&[(old + k, &v)]));
    }
    for k in 0..6i64 {
        let v = format!("new{k}");
        assert_eq!(produce_ok(&mut c, "aged", 0, batch(&[&v])), 6 + k);
    }
    let moved = wait_until(|| offset_of(&mut c, "aged", 0, EARLIEST) > 0);
    assert!(
        moved,
        "segments of year-2020 records are deleted by retention.ms"
    );
    let start = offset_of(&mut c, "aged", 0, EARLIEST);
    assert!(
        start <= 6,
        "no segment holding recent records is deleted (log start {start})"
    );
    let tr = topic_ref(&mut c, "aged");
    let values: Vec<String> = fetch_all(&mut c, &tr, 0, start)
        .iter()
        .map(Rec::value_str)
        .collect();
    let news: Vec<&String> = values.iter().filter(|v| v.starts_with("new")).collect();
    assert_eq!(
        news.len(),
        6,
        "every recent record is still there: {values:?}"
    );
}

#[test]
fn log_append_time_batches_are_stamped_and_survive_restart() {
    // LogAppendTime changes bytes inside the CRC, so these batches are the
    // ones the append path copies whole and re-checksums.
    let mut broker = Broker::start();
    let mut c = broker.client();
    create_topic_ok(
        &mut c,
        "lat",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    );
    let before = now_ms();
    for i in 0..5i64 {
        let recs = batch_ts(&[(1_000, &format!("a{i}")), (2_000, &format!("b{i}"))]);
        assert_eq!(produce_ok(&mut c, "lat", 0, recs), 2 * i);
    }
    let after = now_ms();
    drop(c);
    broker.kill9();
    broker.restart();
    let mut c = broker.client();
    assert_eq!(
        offset_of(&mut c, "lat", 0, LATEST),
        10,
        "nothing lost by the crash"
    );
    let tr = topic_ref(&mut c, "lat");
    // fetch_all decodes every batch, checking its CRC.
    let recs = fetch_all(&mut c, &tr, 0, 0);
    assert_eq!(
        recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (0..10).collect::<Vec<_>>()
    );
    for r in &recs {
        assert!(
            (before..=after).contains(&r.timestamp),
            "offset {} has timestamp {}, not the append time ({before}..={after})",
            r.offset,
            r.timestamp
        );
    }
    assert_eq!(recs[9].value_str(), "b4");
}
