//! Tests of transactions through the whole partition log, on real files in
//! a temporary directory: the last stable offset as transactional batches
//! and markers are appended, read_committed reads and their aborted lists,
//! the `.txnindex` files, recovery after a restart (with the index lost or
//! stale), a follower's appends and truncation.

use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use sluice_protocol::batch::{self, BatchBuilder, BatchHeader};
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;

use super::read::Isolation;
use super::txn_index::{txn_index_path, AbortedTxn, TxnIndex};
use super::txn_marker::EndTxnMarker;
use super::{open_test_log, LogConfig, PartitionLog};
use crate::config::BrokerConfig;

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

fn data_batch(pid: i64, seq: i32, records: usize, transactional: bool) -> Bytes {
    let mut b = BatchBuilder::new(Compression::None).with_transactional(transactional);
    if pid >= 0 {
        b = b.with_producer(pid, 0, seq);
    }
    for i in 0..records {
        b.push(1_000, None, Some(format!("v{i}").as_bytes()), &[])
            .expect("push");
    }
    b.build()
}

fn with_header(bytes: Bytes) -> (BatchHeader, Bytes) {
    (BatchHeader::parse(&bytes).expect("header"), bytes)
}

/// Appends a transactional batch of `records` for `pid` at sequence `seq`.
async fn txn(log: &PartitionLog, pid: i64, seq: i32, records: usize) -> i64 {
    let r = log
        .append(vec![with_header(data_batch(pid, seq, records, true))], true)
        .await;
    assert_eq!(r.error, ErrorCode::None);
    r.base_offset
}

async fn plain(log: &PartitionLog, records: usize) -> i64 {
    let r = log
        .append(vec![with_header(data_batch(-1, -1, records, false))], true)
        .await;
    assert_eq!(r.error, ErrorCode::None);
    r.base_offset
}

async fn end(
    log: &PartitionLog,
    pid: i64,
    commit: bool,
    coordinator_epoch: i32,
) -> (ErrorCode, i64) {
    let m = EndTxnMarker {
        commit,
        coordinator_epoch,
    };
    let r = log
        .append(vec![with_header(m.build_batch(pid, 0, 5_000))], true)
        .await;
    (r.error, r.base_offset)
}

fn aborted_of(log: &PartitionLog, offset: i64) -> Vec<(i64, i64)> {
    let r = log
        .read(offset, 1 << 20, Isolation::ReadCommitted)
        .expect("read");
    r.aborted_transactions
        .expect("read_committed answers a list")
        .iter()
        .map(|a| (a.producer_id, a.first_offset))
        .collect()
}

/// Bytes returned by a read, as batch (base, last) offsets.
fn read_bases(log: &PartitionLog, offset: i64, isolation: Isolation) -> Vec<(i64, i64)> {
    use std::os::unix::fs::FileExt;
    let r = log.read(offset, 1 << 20, isolation).expect("read");
    let Some(range) = r.records else {
        return Vec::new();
    };
    let mut buf = vec![0u8; range.len as usize];
    range
        .file
        .read_exact_at(&mut buf, range.position)
        .expect("read range");
    batch::split_batches(&Bytes::from(buf))
        .expect("batches")
        .iter()
        .map(|(h, _)| (h.base_offset, h.last_offset()))
        .collect()
}

/// A log with: plain 0-1, pid 7 txn 2-3, pid 8 txn 4, pid 7 abort at 5,
/// plain 6, pid 8 still open.
async fn mixed_log(dir: &Path) -> Rc<PartitionLog> {
    let log = open_test_log(dir, config(&[])).await;
    assert_eq!(plain(&log, 2).await, 0);
    assert_eq!(txn(&log, 7, 0, 2).await, 2);
    assert_eq!(txn(&log, 8, 0, 1).await, 4);
    assert_eq!(end(&log, 7, false, 1).await, (ErrorCode::None, 5));
    assert_eq!(plain(&log, 1).await, 6);
    log
}

#[test]
fn last_stable_offset_and_read_committed() {
    run(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = mixed_log(dir.path()).await;
        assert_eq!(log.high_watermark(), 7);
        // pid 8's open transaction from 4 holds the LSO.
        assert_eq!(log.last_stable_offset(), 4);
        let uncommitted = log
            .read(0, 1 << 20, Isolation::ReadUncommitted)
            .expect("read");
        assert_eq!(uncommitted.last_stable_offset, 4);
        assert!(
            uncommitted.aborted_transactions.is_none(),
            "null for read_uncommitted"
        );
        assert_eq!(
            read_bases(&log, 0, Isolation::ReadUncommitted).last(),
            Some(&(6, 6))
        );
        // read_committed stops at the LSO; pid 7's abort (2..5) overlaps.
        assert_eq!(
            read_bases(&log, 0, Isolation::ReadCommitted),
            [(0, 1), (2, 3)]
        );
        assert_eq!(aborted_of(&log, 0), [(7, 2)]);
        assert_eq!(
            aborted_of(&log, 4),
            Vec::<(i64, i64)>::new(),
            "nothing to return"
        );
        // pid 8 commits at 7: everything is stable; the abort is still
        // listed for reads that cover it, not for reads after its marker.
        assert_eq!(end(&log, 8, true, 1).await, (ErrorCode::None, 7));
        assert_eq!(log.last_stable_offset(), 8);
        assert_eq!(
            read_bases(&log, 4, Isolation::ReadCommitted).last(),
            Some(&(7, 7))
        );
        assert_eq!(aborted_of(&log, 3), [(7, 2)]);
        assert_eq!(aborted_of(&log, 6), Vec::<(i64, i64)>::new());
        // The index file has Kafka's layout: one 34-byte entry, LSO 4 (pid 8's
        // transaction was open when pid 7 aborted).
        let file = std::fs::read(txn_index_path(&log.dir, 0)).expect("txnindex");
        assert_eq!(
            TxnIndex::parse(&file).entries,
            [AbortedTxn {
                producer_id: 7,
                first_offset: 2,
                last_offset: 5,
                last_stable_offset: 4,
            }]
        );
        assert_eq!(file.len(), 34);
    });
}

#[test]
fn the_last_stable_offset_waits_for_the_high_watermark_to_pass_the_marker() {
    run(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_test_log(dir.path(), config(&[])).await;
        // A replica layer owns the high watermark: it stays where it is set.
        log.set_log_end_listener(Rc::new(|| {}));
        txn(&log, 3, 0, 2).await;
        log.set_high_watermark(2);
        assert_eq!(log.last_stable_offset(), 0);
        end(&log, 3, true, 0).await;
        log.set_high_watermark(2);
        assert_eq!(
            log.last_stable_offset(),
            0,
            "the marker is not replicated yet"
        );
        log.set_high_watermark(3);
        assert_eq!(log.last_stable_offset(), 3);
    });
}

#[test]
fn markers_are_checked_as_kafka() {
    run(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = open_test_log(dir.path(), config(&[])).await;
        txn(&log, 1, 0, 1).await;
        // A non-transactional batch inside the transaction.
        let r = log
            .append(vec![with_header(data_batch(1, 1, 1, false))], true)
            .await;
        assert_eq!(r.error, ErrorCode::InvalidTxnState);
        assert_eq!(end(&log, 1, true, 5).await.0, ErrorCode::None);
        assert_eq!(
            end(&log, 1, true, 4).await.0,
            ErrorCode::TransactionCoordinatorFenced
        );
        // A marker for a producer with no transaction here is written.
        assert_eq!(end(&log, 99, false, 0).await, (ErrorCode::None, 2));
        assert_eq!(log.last_stable_offset(), 3);
        assert!(
            aborted_of(&log, 0).is_empty(),
            "an empty abort is not indexed"
        );
        // Clients may not sneak markers into a data request either way:
        // the log checks the control record.
        let mut bare = BatchBuilder::new(Compression::None)
            .with_producer(1, 0, -1)
            .with_transactional(true)
            .with_control(true);
        bare.push(0, Some(&[0, 0, 0, 9]), None, &[]).expect("push");
        let r = log.append(vec![with_header(bare.build())], true).await;
        assert_eq!(r.error, ErrorCode::InvalidRecord);
    });
}

#[test]
fn open_transactions_and_the_index_survive_a_restart() {
    run(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = {
            let log = mixed_log(dir.path()).await;
            let path = log.dir.clone();
            log.close();
            path
        };
        let log = open_test_log(dir.path(), config(&[])).await;
        assert_eq!(
            log.last_stable_offset(),
            4,
            "pid 8's transaction is open again"
        );
        assert_eq!(
            log.state.borrow().producers.producers[&8].current_txn_first_offset,
            Some(4)
        );
        assert_eq!(aborted_of(&log, 0), [(7, 2)]);
        log.close();
        drop(log);

        // A crash between the log write and the index write: the index is
        // rebuilt from the markers.
        std::fs::remove_file(txn_index_path(&path, 0)).expect("remove");
        let log = open_test_log(dir.path(), config(&[])).await;
        assert_eq!(aborted_of(&log, 0), [(7, 2)]);
        let rebuilt = TxnIndex::read(&path, 0);
        assert_eq!(rebuilt.entries.len(), 1);
        assert_eq!(rebuilt.entries[0].last_stable_offset, 4);
        log.close();
        drop(log);

        // An index naming a marker the log does not hold (a torn tail cut
        // it off) loses that entry; the stored first offset of a marker
        // the log holds wins over the walk's (retention may have deleted
        // the transaction's start).
        let mut bytes = std::fs::read(txn_index_path(&path, 0)).expect("read");
        let mut stored = AbortedTxn::decode(bytes[..34].try_into().expect("entry")).expect("entry");
        stored.first_offset = 1;
        bytes[..34].copy_from_slice(&stored.encode());
        bytes.extend_from_slice(
            &AbortedTxn {
                producer_id: 9,
                first_offset: 6,
                last_offset: 40,
                last_stable_offset: 41,
            }
            .encode(),
        );
        std::fs::write(txn_index_path(&path, 0), &bytes).expect("write");
        let log = open_test_log(dir.path(), config(&[])).await;
        assert_eq!(aborted_of(&log, 0), [(7, 1)]);
        assert_eq!(TxnIndex::read(&path, 0).entries.len(), 1);
    });
}

#[test]
fn indexes_follow_segments_and_reads_search_later_ones() {
    run(async {
        let dir = tempfile::tempdir().expect("tempdir");
        // Tiny segments: every append rolls.
        let log = open_test_log(dir.path(), config(&[("segment.bytes", "100")])).await;
        txn(&log, 1, 0, 1).await; // 0
        plain(&log, 1).await; // 1
        txn(&log, 2, 0, 1).await; // 2
        assert_eq!(end(&log, 1, false, 0).await.1, 3);
        assert_eq!(end(&log, 2, false, 0).await.1, 4);
        assert!(log.state.borrow().segments.len() >= 4);
        // The aborts are indexed in the segments holding their markers.
        assert_eq!(TxnIndex::read(&log.dir, 3).entries.len(), 1);
        assert_eq!(TxnIndex::read(&log.dir, 4).entries.len(), 1);
        // A read from offset 1 returns segment 1 only (one segment per read)
        // and finds pid 1's abort (started at 0, before the read) in a
        // later segment's index.
        assert_eq!(read_bases(&log, 1, Isolation::ReadCommitted), [(1, 1)]);
        assert_eq!(aborted_of(&log, 1), [(1, 0)]);
        assert_eq!(aborted_of(&log, 2), [(1, 0), (2, 2)]);
        // DeleteRecords (and retention) delete a segment's index with it;
        // the reads that remain still find the later abort.
        assert_eq!(log.delete_records(4).expect("delete records"), 4);
        assert!(!txn_index_path(&log.dir, 3).exists());
        assert!(txn_index_path(&log.dir, 4).exists());
        // A read of pid 2's marker alone still lists its abort (the marker
        // is what ends the consumer's skipping).
        assert_eq!(aborted_of(&log, 4), [(2, 2)]);
    });
}

#[test]
fn followers_keep_transactions_and_truncation_reopens_them() {
    run(async {
        let leader_dir = tempfile::tempdir().expect("tempdir");
        let leader = mixed_log(leader_dir.path()).await;
        // The follower appends the leader's batches as they are.
        let bytes = std::fs::read(leader.state.borrow().segments[&0].path("log")).expect("log");
        let fetched = super::follower::split_fetched(&Bytes::from(bytes));
        let dir = tempfile::tempdir().expect("tempdir");
        let follower = open_test_log(dir.path(), config(&[])).await;
        follower.set_log_end_listener(Rc::new(|| {}));
        follower.append_replicated(fetched).await.expect("append");
        follower.set_high_watermark(7);
        assert_eq!(follower.last_stable_offset(), 4);
        assert_eq!(aborted_of(&follower, 0), [(7, 2)]);
        assert_eq!(TxnIndex::read(&follower.dir, 0).entries.len(), 1);
        // Truncating below pid 7's abort marker reopens its transaction and
        // drops its index entry.
        assert_eq!(follower.truncate_to(5).await.expect("truncate"), 5);
        assert_eq!(follower.last_stable_offset(), 2);
        assert!(aborted_of(&follower, 0).is_empty());
        assert!(TxnIndex::read(&follower.dir, 0).entries.is_empty());
        assert!(!txn_index_path(&follower.dir, 0).exists());
    });
}

#[test]
fn control_batches_in_a_fetched_blob_keep_their_marker() {
    // A marker batch as the leader stamps it still parses after its base
    // offset and leader epoch are set (both outside the CRC).
    let m = EndTxnMarker {
        commit: false,
        coordinator_epoch: 2,
    };
    let mut b = BytesMut::from(&m.build_batch(5, 1, 0)[..]);
    batch::set_base_offset(&mut b, 42);
    batch::set_partition_leader_epoch(&mut b, 3);
    let b = b.freeze();
    let h = batch::validate_batch(&b).expect("valid");
    assert_eq!(EndTxnMarker::of_batch(&h, &b), Some(m));
}
