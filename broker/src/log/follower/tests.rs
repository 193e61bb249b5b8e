//! Tests of the follower's log operations on real files in a temporary
//! directory, on a compio runtime.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use sluice_protocol::batch::{self, BatchBuilder, BatchHeader};
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;

use super::*;
use crate::config::BrokerConfig;
use crate::log::epoch_cache::LEADER_EPOCH_CHECKPOINT;
use crate::log::read::Isolation;
use crate::log::LogConfig;

fn run<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("compio runtime")
        .block_on(f)
}

fn config(overrides: &[(&str, &str)]) -> LogConfig {
    let overrides: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    LogConfig::resolve(&BrokerConfig::default(), &overrides)
}

use crate::log::open_test_log as open;

/// A batch as a leader would have written it: `records` records from
/// `base`, stamped with leader `epoch`.
fn leader_batch(base: i64, epoch: i32, records: usize, producer: Option<(i64, i16, i32)>) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None);
    if let Some((pid, pe, seq)) = producer {
        b = b.with_producer(pid, pe, seq);
    }
    for i in 0..records {
        let value = format!("value-{base}-{i}");
        b.push(1_000 + base + i as i64, None, Some(value.as_bytes()), &[])
            .expect("push");
    }
    let mut bytes = BytesMut::from(&b.build()[..]);
    batch::set_base_offset(&mut bytes, base);
    batch::set_partition_leader_epoch(&mut bytes, epoch);
    bytes.freeze()
}

/// Batches of 2 records each from offset 0, with the given epochs.
fn leader_log(epochs: &[i32]) -> Vec<Bytes> {
    epochs
        .iter()
        .enumerate()
        .map(|(i, &e)| leader_batch(2 * i as i64, e, 2, None))
        .collect()
}

/// The log's segment files, concatenated in offset order.
fn log_bytes(log: &PartitionLog) -> Vec<u8> {
    let st = log.state.borrow();
    let mut out = Vec::new();
    for seg in st.segments.values() {
        let file = std::fs::read(seg.path("log")).expect("segment file");
        assert_eq!(file.len() as u64, seg.size, "file and state agree");
        out.extend_from_slice(&file);
    }
    out
}

fn concat(batches: &[Bytes]) -> Vec<u8> {
    batches.iter().flat_map(|b| b.to_vec()).collect()
}

fn epochs_of(log: &PartitionLog) -> Vec<(i32, i64)> {
    log.state
        .borrow()
        .epochs
        .entries()
        .iter()
        .map(|e| (e.epoch, e.start_offset))
        .collect()
}

#[test]
fn appends_fetched_batches_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), config(&[])).await;
        let batches = leader_log(&[0, 0, 3, 3, 4]);
        let r = log
            .append_replicated(batches[..2].to_vec())
            .await
            .expect("append");
        assert_eq!(r.first_offset, Some(0));
        assert_eq!(r.log_end_offset, 4);
        assert_eq!(r.records, 4);
        assert!(r.synced, "flush.policy=always syncs before returning");
        let r = log
            .append_replicated(batches[2..].to_vec())
            .await
            .expect("append");
        assert_eq!(r.log_end_offset, 10);
        assert_eq!(log_bytes(&log), concat(&batches), "byte for byte");
        // The follower's high watermark comes from the leader, capped.
        assert_eq!(log.high_watermark(), 0);
        assert_eq!(log.set_high_watermark_from_leader(6), 6);
        assert_eq!(log.set_high_watermark_from_leader(4), 6, "never back");
        assert_eq!(
            log.set_high_watermark_from_leader(99),
            10,
            "capped at the log end"
        );
        // The epoch cache follows the batches, on disk too.
        assert_eq!(epochs_of(&log), [(0, 0), (3, 4), (4, 8)]);
        assert_eq!(log.last_epoch(), 4);
        let file =
            std::fs::read_to_string(log.dir.join(LEADER_EPOCH_CHECKPOINT)).expect("checkpoint");
        assert_eq!(file, "0\n3\n0 0\n3 4\n4 8\n");
        assert_eq!(log.local_end_offset_for(3), (3, 8));
        // Nothing to append is fine.
        let r = log.append_replicated(Vec::new()).await.expect("empty");
        assert_eq!((r.first_offset, r.log_end_offset), (None, 10));
    });
}

#[test]
fn refuses_gaps_overlaps_disorder_and_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), config(&[])).await;
        let err = log
            .append_replicated(vec![leader_batch(4, 0, 1, None)])
            .await
            .expect_err("gap");
        assert!(
            matches!(
                err,
                ReplicationError::NotContinuous {
                    expected: 0,
                    got: 4
                }
            ),
            "{err}"
        );
        let err = log
            .append_replicated(vec![
                leader_batch(0, 0, 3, None),
                leader_batch(2, 0, 1, None),
            ])
            .await
            .expect_err("overlap");
        assert!(
            matches!(
                err,
                ReplicationError::OutOfOrder {
                    offset: 2,
                    after: 2
                }
            ),
            "{err}"
        );
        let mut bad = BytesMut::from(&leader_batch(0, 0, 2, None)[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let err = log
            .append_replicated(vec![bad.freeze()])
            .await
            .expect_err("crc");
        assert!(
            matches!(err, ReplicationError::Corrupt { index: 0, .. }),
            "{err}"
        );
        // Nothing of a refused append reached the log.
        assert_eq!(log.state.borrow().log_end_offset, 0);
        assert!(log_bytes(&log).is_empty());
        // Gaps between batches (as compaction leaves) are allowed.
        let ok = vec![leader_batch(0, 0, 2, None), leader_batch(5, 0, 1, None)];
        let r = log
            .append_replicated(ok)
            .await
            .expect("gap between batches");
        assert_eq!(r.log_end_offset, 6);
    });
}

#[test]
fn split_fetched_drops_a_partial_tail() {
    let batches = leader_log(&[0, 0, 1]);
    let mut blob = concat(&batches);
    let whole = Bytes::from(blob.clone());
    assert_eq!(split_fetched(&whole), batches);
    blob.truncate(blob.len() - 5);
    assert_eq!(split_fetched(&Bytes::from(blob)), batches[..2].to_vec());
    assert!(split_fetched(&Bytes::from_static(&[0; 30])).is_empty());
    assert!(split_fetched(&Bytes::new()).is_empty());
}

#[test]
fn producer_state_survives_becoming_leader() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), config(&[])).await;
        let fetched = vec![
            leader_batch(0, 2, 3, Some((77, 0, 0))),
            leader_batch(3, 2, 2, Some((77, 0, 3))),
        ];
        log.append_replicated(fetched.clone())
            .await
            .expect("append");
        assert_eq!(
            log.state.borrow().producers.producers[&77]
                .batches
                .back()
                .map(|b| (b.last_seq, b.last_offset)),
            Some((4, 4))
        );
        // Now leader: the producer retries its last batch and gets the
        // original offset, not a second copy.
        log.state.borrow_mut().leader_epoch = 3;
        let retry = fetched[1].clone();
        let h = BatchHeader::parse(&retry).expect("header");
        let r = log.append(vec![(h, retry)], true).await;
        assert_eq!((r.error, r.base_offset), (ErrorCode::None, 3));
        assert_eq!(log.state.borrow().log_end_offset, 5);
        // Its next batch continues, stamped with the new epoch.
        let next = leader_batch(0, 0, 1, Some((77, 0, 5)));
        let h = BatchHeader::parse(&next).expect("header");
        let r = log.append(vec![(h, next)], true).await;
        assert_eq!((r.error, r.base_offset), (ErrorCode::None, 5));
        assert_eq!(epochs_of(&log), [(2, 0), (3, 5)]);
        // The leader's answers count its current epoch.
        assert_eq!(log.end_offset_for_epoch(2), (2, 5));
        assert_eq!(log.end_offset_for_epoch(3), (3, 6));
        assert_eq!(log.diverging_epoch(2, 5), None);
        assert_eq!(log.diverging_epoch(2, 6), Some((2, 5)));
    });
}

#[test]
fn segments_roll_on_the_replicated_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), config(&[("segment.bytes", "300")])).await;
        let batches = leader_log(&[0; 8]);
        for b in &batches {
            log.append_replicated(vec![b.clone()])
                .await
                .expect("append");
        }
        let bases: Vec<i64> = log.state.borrow().segments.keys().copied().collect();
        assert!(bases.len() > 2, "rolled: {bases:?}");
        assert_eq!(log_bytes(&log), concat(&batches));
        // Reads find every batch through the indexes.
        log.set_high_watermark_from_leader(16);
        for offset in (0..16).step_by(2) {
            let r = log
                .read(offset, 1, Isolation::ReadUncommitted)
                .expect("read");
            let range = r.records.expect("records");
            assert_eq!(range.len as usize, batches[offset as usize / 2].len());
        }
    });
}

#[test]
fn truncate_then_reopen_is_the_expected_prefix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let batches = leader_log(&[0, 0, 1, 1, 1, 4, 4, 4, 6, 6]);
    run(async {
        let log = open(dir.path(), config(&[("segment.bytes", "400")])).await;
        for chunk in batches.chunks(3) {
            log.append_replicated(chunk.to_vec()).await.expect("append");
        }
        log.set_high_watermark_from_leader(20);
        assert!(log.state.borrow().segments.len() > 2);
        // Mid-batch: the batch holding offset 11 goes with everything after.
        assert_eq!(log.truncate_to(11).await.expect("truncate"), 10);
        assert_eq!(log_bytes(&log), concat(&batches[..5]));
        assert_eq!(log.high_watermark(), 10);
        assert_eq!(epochs_of(&log), [(0, 0), (1, 4)]);
        // At or past the end: nothing.
        assert_eq!(log.truncate_to(10).await.expect("noop"), 10);
        assert_eq!(log.truncate_to(8).await.expect("truncate"), 8);
        assert_eq!(log_bytes(&log), concat(&batches[..4]));
        // Appending continues at the new end, with a new epoch.
        let next = leader_batch(8, 7, 2, None);
        log.append_replicated(vec![next.clone()])
            .await
            .expect("append");
        let mut expected = concat(&batches[..4]);
        expected.extend_from_slice(&next);
        assert_eq!(log_bytes(&log), expected);
        assert_eq!(epochs_of(&log), [(0, 0), (1, 4), (7, 8)]);
        log.close();
    });
    // A restart recovers exactly that.
    run(async {
        let log = open(dir.path(), config(&[("segment.bytes", "400")])).await;
        let next = leader_batch(8, 7, 2, None);
        let mut expected = concat(&batches[..4]);
        expected.extend_from_slice(&next);
        assert_eq!(log_bytes(&log), expected);
        assert_eq!(log.state.borrow().log_end_offset, 10);
        assert_eq!(epochs_of(&log), [(0, 0), (1, 4), (7, 8)]);
        assert_eq!(log.state.borrow().leader_epoch, 7);
        // Truncating across segment files, then a restart.
        log.truncate_to(3).await.expect("truncate");
        assert_eq!(log_bytes(&log), concat(&batches[..1]));
        log.close();
    });
    run(async {
        let log = open(dir.path(), config(&[("segment.bytes", "400")])).await;
        assert_eq!(log_bytes(&log), concat(&batches[..1]));
        assert_eq!(log.state.borrow().log_end_offset, 2);
        assert_eq!(epochs_of(&log), [(0, 0)]);
        let file =
            std::fs::read_to_string(log.dir.join(LEADER_EPOCH_CHECKPOINT)).expect("checkpoint");
        assert_eq!(file, "0\n1\n0 0\n");
    });
}

#[test]
fn truncate_rebuilds_producer_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), config(&[])).await;
        let fetched = vec![
            leader_batch(0, 0, 2, Some((9, 0, 0))),
            leader_batch(2, 0, 2, Some((9, 0, 2))),
        ];
        log.append_replicated(fetched).await.expect("append");
        log.truncate_to(2).await.expect("truncate");
        let last = log.state.borrow().producers.producers[&9]
            .batches
            .back()
            .map(|b| b.last_seq);
        assert_eq!(last, Some(1), "the cut batch is forgotten");
    });
}

#[test]
fn emptied_logs_start_again_elsewhere() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), config(&[("segment.bytes", "300")])).await;
        log.append_replicated(leader_log(&[0, 0, 1, 1]))
            .await
            .expect("append");
        log.truncate_fully_and_start_at(100).await.expect("restart");
        {
            let st = log.state.borrow();
            assert_eq!(
                (st.log_start_offset, st.log_end_offset, st.high_watermark),
                (100, 100, 100)
            );
            assert_eq!(st.segments.keys().copied().collect::<Vec<_>>(), [100]);
            assert!(st.producers.producers.is_empty());
        }
        assert!(epochs_of(&log).is_empty());
        let next = leader_batch(100, 5, 1, None);
        log.append_replicated(vec![next.clone()])
            .await
            .expect("append");
        log.close();
        // Truncating below the log start empties too.
        let log = open(dir.path(), config(&[("segment.bytes", "300")])).await;
        assert_eq!(log.log_start_offset(), 100);
        assert_eq!(log_bytes(&log), next.to_vec());
        assert_eq!(epochs_of(&log), [(5, 100)]);
        assert_eq!(log.truncate_to(50).await.expect("below start"), 50);
        assert_eq!(log.log_start_offset(), 50);
        assert!(log_bytes(&log).is_empty());
    });
}

#[test]
fn an_empty_log_starts_at_a_batch_holding_its_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    run(async {
        let log = open(dir.path(), config(&[])).await;
        log.truncate_fully_and_start_at(3)
            .await
            .expect("start at 3");
        // The leader's log start is 3, inside its batch [2, 5].
        let b = leader_batch(2, 0, 4, None);
        let r = log
            .append_replicated(vec![b.clone()])
            .await
            .expect("append");
        assert_eq!(r.log_end_offset, 6);
        assert_eq!(log.log_start_offset(), 2);
        assert_eq!(log_bytes(&log), b.to_vec());
        // Not when the log holds anything.
        let err = log
            .append_replicated(vec![leader_batch(4, 0, 4, None)])
            .await
            .expect_err("overlap");
        assert!(
            matches!(
                err,
                ReplicationError::NotContinuous {
                    expected: 6,
                    got: 4
                }
            ),
            "{err}"
        );
    });
}
