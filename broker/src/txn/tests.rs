//! The coordinator's rules over an in-memory log, id source and marker
//! writer: the broker-level paths (real partitions, real markers, real
//! clients) are tested in broker/tests/transactions.rs and the interop suite.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use sluice_protocol::ErrorCode;

use super::*;

#[derive(Default)]
struct MemLog {
    records: RefCell<Vec<(i32, Bytes, Option<Bytes>)>>,
    fail_next: Cell<Option<ErrorCode>>,
}

impl TxnLog for MemLog {
    fn append(
        &self,
        partition: i32,
        key: Bytes,
        value: Option<Bytes>,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>> {
        let r = match self.fail_next.take() {
            Some(code) => Err(code),
            None => {
                self.records.borrow_mut().push((partition, key, value));
                Ok(())
            }
        };
        Box::pin(async move { r })
    }
}

#[derive(Default)]
struct Ids(Cell<i64>);

impl ProducerIdSource for Ids {
    fn allocate(&self) -> LocalBoxFuture<'static, Result<i64, ErrorCode>> {
        self.0.set(self.0.get() + 1);
        let id = 1000 + self.0.get();
        Box::pin(async move { Ok(id) })
    }
}

/// Records every marker job; fails the partitions listed in `refuse` with
/// their code, once each.
#[derive(Default)]
struct Markers {
    jobs: RefCell<Vec<MarkerJob>>,
    refuse: RefCell<Vec<((String, i32), ErrorCode)>>,
}

impl MarkerWriter for Markers {
    fn write(&self, job: MarkerJob) -> LocalBoxFuture<'static, Vec<((String, i32), ErrorCode)>> {
        let mut refuse = self.refuse.borrow_mut();
        let out = job
            .partitions
            .iter()
            .map(|tp| match refuse.iter().position(|(r, _)| r == tp) {
                Some(i) => (tp.clone(), refuse.remove(i).1),
                None => (tp.clone(), ErrorCode::None),
            })
            .collect();
        self.jobs.borrow_mut().push(job);
        Box::pin(async move { out })
    }
}

struct Fixture {
    c: Rc<TxnCoordinator>,
    log: Rc<MemLog>,
    markers: Rc<Markers>,
}

fn fixture(config: TxnConfig) -> Fixture {
    let log = Rc::new(MemLog::default());
    let markers = Rc::new(Markers::default());
    let c = TxnCoordinator::new(
        config,
        log.clone(),
        Rc::new(Ids::default()),
        markers.clone(),
    );
    for p in 0..c.config.num_partitions {
        c.load(p, 7, Vec::new());
    }
    Fixture { c, log, markers }
}

fn config() -> TxnConfig {
    TxnConfig {
        num_partitions: 4,
        ..TxnConfig::default()
    }
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(f)
}

async fn settle() {
    for _ in 0..20 {
        compio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn tp(t: &str, p: i32) -> (String, i32) {
    (t.to_string(), p)
}

#[test]
fn init_bumps_the_epoch_and_fences_the_previous_instance() {
    run(async {
        let f = fixture(config());
        let (pid, e0) = f.c.init_producer_id("tx", 60_000, None).await.unwrap();
        assert_eq!(e0, 0);
        let (pid2, e1) = f.c.init_producer_id("tx", 60_000, None).await.unwrap();
        assert_eq!((pid2, e1), (pid, 1));
        // The first instance is fenced everywhere it speaks.
        assert_eq!(
            f.c.add_partitions("tx", pid, e0, &[tp("a", 0)]).await,
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            f.c.end_txn("tx", pid, e0, true).await,
            Err(ErrorCode::ProducerFenced)
        );
        assert_eq!(
            f.c.add_partitions("tx", pid + 1, e1, &[tp("a", 0)]).await,
            Err(ErrorCode::InvalidProducerIdMapping)
        );
        assert_eq!(
            f.c.init_producer_id("tx", 0, None).await,
            Err(ErrorCode::InvalidTransactionTimeout)
        );
        // KIP-360: the current instance may re-init with what it holds; a
        // stale one may not.
        assert_eq!(
            f.c.init_producer_id("tx", 60_000, Some((pid, e1))).await,
            Ok((pid, 2))
        );
        assert_eq!(
            f.c.init_producer_id("tx", 60_000, Some((pid, e0))).await,
            Err(ErrorCode::ProducerFenced)
        );
    })
}

#[test]
fn commit_writes_prepare_then_markers_then_complete() {
    run(async {
        let f = fixture(config());
        let (pid, e) = f.c.init_producer_id("tx", 60_000, None).await.unwrap();
        f.c.add_partitions("tx", pid, e, &[tp("a", 0), tp("b", 1)])
            .await
            .unwrap();
        // Adding what is already in the transaction writes nothing.
        let written = f.log.records.borrow().len();
        f.c.add_partitions("tx", pid, e, &[tp("a", 0)])
            .await
            .unwrap();
        assert_eq!(f.log.records.borrow().len(), written);
        assert_eq!(f.c.describe("tx").unwrap().state, TxnState::Ongoing);
        f.c.end_txn("tx", pid, e, true).await.unwrap();
        settle().await;
        let jobs = f.markers.jobs.borrow().clone();
        assert_eq!(
            jobs,
            vec![MarkerJob {
                producer_id: pid,
                producer_epoch: e,
                coordinator_epoch: 7,
                commit: true,
                partitions: vec![tp("a", 0), tp("b", 1)],
            }]
        );
        let d = f.c.describe("tx").unwrap();
        assert_eq!(d.state, TxnState::CompleteCommit);
        assert!(d.topics.is_empty());
        let states: Vec<TxnState> = f
            .log
            .records
            .borrow()
            .iter()
            .map(|(_, _, v)| records::decode_value(v.as_ref().unwrap()).unwrap().state)
            .collect();
        assert_eq!(
            states,
            vec![
                TxnState::Empty,
                TxnState::Ongoing,
                TxnState::PrepareCommit,
                TxnState::CompleteCommit
            ]
        );
        // A retried EndTxn succeeds; the opposite outcome is refused.
        assert_eq!(f.c.end_txn("tx", pid, e, true).await, Ok(()));
        assert_eq!(
            f.c.end_txn("tx", pid, e, false).await,
            Err(ErrorCode::InvalidTxnState)
        );
    })
}

#[test]
fn refused_markers_are_retried_until_written() {
    run(async {
        let f = fixture(config());
        let (pid, e) = f.c.init_producer_id("tx", 60_000, None).await.unwrap();
        f.c.add_partitions("tx", pid, e, &[tp("a", 0)])
            .await
            .unwrap();
        f.markers
            .refuse
            .borrow_mut()
            .push((tp("a", 0), ErrorCode::NotLeaderOrFollower));
        f.c.end_txn("tx", pid, e, false).await.unwrap();
        // While the markers are out, the id is busy.
        assert_eq!(
            f.c.init_producer_id("tx", 60_000, None).await,
            Err(ErrorCode::ConcurrentTransactions)
        );
        compio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(f.markers.jobs.borrow().len(), 2);
        assert_eq!(f.c.describe("tx").unwrap().state, TxnState::CompleteAbort);
    })
}

#[test]
fn a_new_instance_aborts_what_the_old_one_left_open() {
    run(async {
        let f = fixture(config());
        let (pid, e) = f.c.init_producer_id("tx", 60_000, None).await.unwrap();
        f.c.add_partitions("tx", pid, e, &[tp("a", 0)])
            .await
            .unwrap();
        assert_eq!(
            f.c.init_producer_id("tx", 60_000, None).await,
            Err(ErrorCode::ConcurrentTransactions)
        );
        settle().await;
        let job = f.markers.jobs.borrow()[0].clone();
        assert!(!job.commit);
        assert_eq!(job.producer_epoch, e + 1, "the abort fences the old epoch");
        assert_eq!(
            f.c.init_producer_id("tx", 60_000, None).await,
            Ok((pid, e + 2))
        );
    })
}

#[test]
fn timed_out_transactions_are_aborted_and_their_producer_fenced() {
    run(async {
        let f = fixture(config());
        let (pid, e) = f.c.init_producer_id("tx", 1_000, None).await.unwrap();
        f.c.add_partitions("tx", pid, e, &[tp("a", 0)])
            .await
            .unwrap();
        let start = f.c.describe("tx").unwrap().start_ms;
        f.c.abort_timed_out(start + 500).await;
        assert_eq!(f.c.describe("tx").unwrap().state, TxnState::Ongoing);
        f.c.abort_timed_out(start + 1_001).await;
        settle().await;
        assert_eq!(f.c.timed_out_count(), 1);
        let d = f.c.describe("tx").unwrap();
        assert_eq!(d.state, TxnState::CompleteAbort);
        assert_eq!(d.producer_epoch, e + 1);
        assert_eq!(
            f.c.end_txn("tx", pid, e, true).await,
            Err(ErrorCode::ProducerFenced)
        );
    })
}

#[test]
fn a_reloaded_coordinator_resumes_prepared_transactions_and_expires_idle_ids() {
    run(async {
        let f = fixture(config());
        let (pid, e) = f.c.init_producer_id("tx", 60_000, None).await.unwrap();
        f.c.add_partitions("tx", pid, e, &[tp("a", 0)])
            .await
            .unwrap();
        f.markers
            .refuse
            .borrow_mut()
            .push((tp("a", 0), ErrorCode::TransactionCoordinatorFenced));
        f.c.end_txn("tx", pid, e, true).await.unwrap();
        settle().await;
        // The fenced coordinator left it prepared.
        assert_eq!(f.c.describe("tx").unwrap().state, TxnState::PrepareCommit);
        // Another coordinator loads the partition's records in a newer epoch.
        let p = f.c.partition_of("tx");
        let records: Vec<(Bytes, Option<Bytes>)> = f
            .log
            .records
            .borrow()
            .iter()
            .filter(|(q, _, _)| *q == p)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        let g = fixture(config());
        g.c.unload(p);
        assert_eq!(g.c.describe("tx"), Err(ErrorCode::NotCoordinator));
        g.c.begin_load(p);
        assert_eq!(
            g.c.describe("tx"),
            Err(ErrorCode::CoordinatorLoadInProgress)
        );
        g.c.load(p, 8, records);
        settle().await;
        assert_eq!(g.markers.jobs.borrow()[0].coordinator_epoch, 8);
        assert_eq!(g.c.describe("tx").unwrap().state, TxnState::CompleteCommit);
        let listed = g.c.list(&[TxnState::CompleteCommit], &[], -1, 0);
        assert_eq!(listed.len(), 1);
        assert!(g.c.list(&[TxnState::Ongoing], &[], -1, 0).is_empty());
        assert!(g.c.list(&[], &[pid + 1], -1, 0).is_empty());
        // Idle past the expiration: a tombstone, and the id is gone.
        let last = g.log.records.borrow().len();
        g.c.expire_ids(sluice_protocol::clock::now_ms() + 604_800_001)
            .await;
        assert_eq!(g.log.records.borrow()[last].2, None);
        assert_eq!(g.c.describe("tx"), Err(ErrorCode::TransactionalIdNotFound));
    })
}

#[test]
fn a_failed_write_changes_nothing() {
    run(async {
        let f = fixture(config());
        let (pid, e) = f.c.init_producer_id("tx", 60_000, None).await.unwrap();
        f.log.fail_next.set(Some(ErrorCode::NotLeaderOrFollower));
        assert_eq!(
            f.c.add_partitions("tx", pid, e, &[tp("a", 0)]).await,
            Err(ErrorCode::NotCoordinator)
        );
        assert_eq!(f.c.describe("tx").unwrap().state, TxnState::Empty);
        // And the id is not left busy.
        f.c.add_partitions("tx", pid, e, &[tp("a", 0)])
            .await
            .unwrap();
    })
}
