//! The replica layer over real logs (a compio runtime, a temporary
//! directory), with a fake clock and an [`IsrChanger`] that records calls:
//! acks=all waiting, timeouts and NOT_ENOUGH_REPLICAS, follower fetches
//! moving the high watermark, ISR proposals, the follower role refusing
//! produce.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use sluice_protocol::batch::{BatchBuilder, BatchHeader};
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;

use super::*;
use crate::config::BrokerConfig;
use crate::log::read::Isolation;
use crate::log::LogConfig;
use crate::metrics::PartitionMetrics;

const T0: i64 = 1_700_000_000_000;
const LAG: i64 = 10_000;

#[derive(Default)]
struct RecordingChanger {
    calls: RefCell<Vec<IsrProposal>>,
    /// What to answer; `None` refuses with INVALID_UPDATE_VERSION.
    answer: RefCell<Option<LeaderAndIsr>>,
}

impl IsrChanger for RecordingChanger {
    fn alter_partition(
        &self,
        proposal: IsrProposal,
    ) -> LocalBoxFuture<'static, Result<LeaderAndIsr, ErrorCode>> {
        self.calls.borrow_mut().push(proposal);
        let answer = self.answer.borrow().clone();
        Box::pin(async move { answer.ok_or(ErrorCode::InvalidUpdateVersion) })
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    clock: Rc<Cell<i64>>,
    changer: Rc<RecordingChanger>,
    partition: Rc<Partition>,
}

fn batch(values: &[&str]) -> (BatchHeader, Bytes) {
    let mut b = BatchBuilder::new(Compression::None).with_base_timestamp(T0);
    for v in values {
        b.push(T0, None, Some(v.as_bytes()), &[])
            .expect("small test batch");
    }
    let bytes = b.build();
    (BatchHeader::parse(&bytes).expect("built batch"), bytes)
}

async fn fixture(assignment: Assignment, min_isr: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let overrides: BTreeMap<String, String> =
        [("min.insync.replicas".to_string(), min_isr.to_string())].into();
    let cfg = LogConfig::resolve(&BrokerConfig::default(), &overrides);
    let log = crate::log::PartitionLog::open(
        &dir.path().join("t-0"),
        "t",
        uuid::Uuid::new_v4(),
        0,
        cfg,
        PartitionMetrics::default(),
    )
    .await
    .expect("open log");
    let clock = Rc::new(Cell::new(T0));
    let c = clock.clone();
    let ctx = ReplicaContext::new(
        ReplicaConfig {
            node_id: 1,
            replica_lag_time_max_ms: LAG,
        },
        Rc::new(move || c.get()),
    );
    let changer = Rc::new(RecordingChanger::default());
    *ctx.changer.borrow_mut() = changer.clone();
    let partition = Partition::new(log, ctx, assignment);
    Fixture {
        _dir: dir,
        clock,
        changer,
        partition,
    }
}

fn leader(replicas: &[i32], isr: &[i32]) -> Assignment {
    Assignment::Leader(LeaderAndIsr {
        leader_epoch: 1,
        partition_epoch: 1,
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
    })
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("io_uring runtime")
        .block_on(f)
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

#[test]
fn single_node_leader_behaves_as_the_log() {
    run(async {
        let f = fixture(Assignment::Leader(LeaderAndIsr::single(1)), "1").await;
        let p = &f.partition;
        for acks in [1, -1] {
            let r = p.append(vec![batch(&["a", "b"])], acks, soon()).await;
            assert_eq!(r.error, ErrorCode::None, "acks={acks}");
        }
        assert_eq!(p.log_end_offset(), 4);
        assert_eq!(p.high_watermark(), 4);
        let r = p
            .read(Reader::Consumer, 0, 1 << 20, -1, Isolation::ReadUncommitted)
            .expect("read");
        assert_eq!(r.high_watermark, 4);
        assert!(r.records.is_some());
        // acks=0 moves the high watermark too (nobody awaits the append).
        p.append(vec![batch(&["c"])], 0, soon()).await;
        p.log.wait_for_data(4, soon()).await;
        assert_eq!(p.high_watermark(), 5);
        assert!(f.changer.calls.borrow().is_empty());
    });
}

#[test]
fn follower_role_refuses_produce_and_reads() {
    run(async {
        let f = fixture(
            Assignment::Follower {
                leader: 2,
                leader_epoch: 4,
            },
            "1",
        )
        .await;
        let p = &f.partition;
        let r = p.append(vec![batch(&["a"])], 1, soon()).await;
        assert_eq!(r.error, ErrorCode::NotLeaderOrFollower);
        assert_eq!(
            p.read(Reader::Consumer, 0, 100, -1, Isolation::ReadUncommitted)
                .err(),
            Some(ErrorCode::NotLeaderOrFollower)
        );
        assert_eq!(p.log.state.borrow().leader_epoch, 4);
        // An older epoch cannot take the partition back.
        assert_eq!(
            p.become_leader(LeaderAndIsr {
                leader_epoch: 3,
                partition_epoch: 9,
                replicas: vec![1, 2],
                isr: vec![1, 2],
            }),
            Err(ErrorCode::FencedLeaderEpoch)
        );
    });
}

#[test]
fn acks_all_refused_below_min_insync_while_acks_one_works() {
    run(async {
        let f = fixture(Assignment::Leader(LeaderAndIsr::single(1)), "2").await;
        let p = &f.partition;
        let r = p.append(vec![batch(&["a"])], -1, soon()).await;
        assert_eq!(r.error, ErrorCode::NotEnoughReplicas);
        assert_eq!(p.log_end_offset(), 0, "nothing appended");
        let r = p.append(vec![batch(&["a"])], 1, soon()).await;
        assert_eq!(r.error, ErrorCode::None);
        assert_eq!(p.high_watermark(), 1);
    });
}

#[test]
fn the_high_watermark_holds_while_a_replicated_isr_is_below_min_insync() {
    run(async {
        // RF 2, ISR down to the leader, min.insync.replicas 2 (KIP-966).
        let f = fixture(leader(&[1, 2], &[1]), "2").await;
        let p = &f.partition;
        let r = p.append(vec![batch(&["a"])], 1, soon()).await;
        assert_eq!(r.error, ErrorCode::None, "acks=1 is still taken");
        assert_eq!(p.high_watermark(), 0, "but not exposed");
        let r = p
            .read(Reader::Consumer, 0, 1 << 20, -1, Isolation::ReadUncommitted)
            .expect("read");
        assert!(r.records.is_none());
        // The follower catching up does not move it while out of the ISR ...
        p.read(
            Reader::Follower(2),
            1,
            1 << 20,
            1,
            Isolation::ReadUncommitted,
        )
        .expect("follower read");
        assert_eq!(p.high_watermark(), 0);
        // ... the ISR back at min.insync.replicas does.
        let spec = LeaderAndIsr {
            leader_epoch: 1,
            partition_epoch: 2,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        };
        assert_eq!(p.become_leader(spec), Ok(()));
        assert_eq!(p.high_watermark(), 1);
    });
}

#[test]
fn acks_all_waits_for_the_follower_fetch() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "2").await;
        let p = f.partition.clone();
        let producer = {
            let p = p.clone();
            compio::runtime::spawn(
                async move { p.append(vec![batch(&["a", "b"])], -1, soon()).await },
            )
        };
        // Let the append land; the follower has not fetched it.
        while p.log_end_offset() < 2 {
            compio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(p.high_watermark(), 0);
        // A consumer sees nothing above the high watermark.
        let r = p
            .read(Reader::Consumer, 0, 1 << 20, -1, Isolation::ReadUncommitted)
            .expect("read");
        assert!(r.records.is_none());
        // The follower reads up to the log end...
        let r = p
            .read(
                Reader::Follower(2),
                0,
                1 << 20,
                1,
                Isolation::ReadUncommitted,
            )
            .expect("follower read");
        assert!(r.records.is_some());
        assert_eq!(r.high_watermark, 0);
        // ...and its next fetch offset tells the leader it has them.
        let r = p
            .read(
                Reader::Follower(2),
                2,
                1 << 20,
                1,
                Isolation::ReadUncommitted,
            )
            .expect("follower read");
        assert_eq!(r.high_watermark, 2);
        let answer = producer.await.expect("producer task");
        assert_eq!(answer.error, ErrorCode::None);
        assert_eq!(answer.base_offset, 0);
        let st = p.role();
        let Role::Leader(s) = st else {
            panic!("leader")
        };
        assert_eq!(s.followers[&2].log_end_offset, 2);
        assert_eq!(s.followers[&2].last_caught_up_ms, T0);
    });
}

#[test]
fn acks_all_times_out_without_the_follower() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "1").await;
        let deadline = Instant::now() + Duration::from_millis(50);
        let r = f.partition.append(vec![batch(&["a"])], -1, deadline).await;
        assert_eq!(r.error, ErrorCode::RequestTimedOut);
        // acks=1 answers after the leader's own append.
        let r = f.partition.append(vec![batch(&["b"])], 1, soon()).await;
        assert_eq!(r.error, ErrorCode::None);
        assert_eq!(r.base_offset, 1);
    });
}

#[test]
fn isr_shrink_answers_waiting_produce_not_enough_replicas_after_append() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "2").await;
        let p = f.partition.clone();
        let producer = {
            let p = p.clone();
            compio::runtime::spawn(async move { p.append(vec![batch(&["a"])], -1, soon()).await })
        };
        while p.log_end_offset() < 1 {
            compio::time::sleep(Duration::from_millis(1)).await;
        }
        // The follower stays away past the lag: the check proposes [1].
        f.clock.set(T0 + LAG + 1);
        *f.changer.answer.borrow_mut() = Some(LeaderAndIsr {
            leader_epoch: 1,
            partition_epoch: 2,
            replicas: vec![1, 2],
            isr: vec![1],
        });
        p.check_isr();
        let answer = producer.await.expect("producer task");
        assert_eq!(answer.error, ErrorCode::NotEnoughReplicasAfterAppend);
        let calls = f.changer.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].new_isr, vec![1]);
        assert_eq!((calls[0].leader_epoch, calls[0].partition_epoch), (1, 1));
        assert_eq!(p.isr(), Some(vec![1]));
        // An ISR below min.insync.replicas holds the high watermark (KIP-966:
        // the follower, now an eligible leader replica, may lack the record).
        assert_eq!(p.high_watermark(), 0, "below min ISR it holds");
    });
}

#[test]
fn caught_up_follower_is_proposed_back_and_refusals_retry() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1]), "1").await;
        let p = &f.partition;
        let r = p.append(vec![batch(&["a"])], 1, soon()).await;
        assert_eq!(r.error, ErrorCode::None);
        assert_eq!(p.high_watermark(), 1);
        // Behind the high watermark: not yet.
        p.read(
            Reader::Follower(2),
            0,
            1 << 20,
            -1,
            Isolation::ReadUncommitted,
        )
        .expect("read");
        compio::time::sleep(Duration::from_millis(1)).await;
        assert!(f.changer.calls.borrow().is_empty());
        // At it: proposed (and refused, answer None).
        p.read(
            Reader::Follower(2),
            1,
            1 << 20,
            -1,
            Isolation::ReadUncommitted,
        )
        .expect("read");
        compio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(f.changer.calls.borrow().len(), 1);
        assert_eq!(f.changer.calls.borrow()[0].new_isr, vec![1, 2]);
        assert_eq!(p.isr(), Some(vec![1]), "not applied locally");
        // The refusal cleared the pending change; a check within the
        // back-off sends nothing, the one after it retries.
        p.check_isr();
        compio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(f.changer.calls.borrow().len(), 1, "backing off");
        f.clock.set(f.clock.get() + 1_001);
        p.check_isr();
        compio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(f.changer.calls.borrow().len(), 2);
        // The metadata brings the change back.
        p.become_leader(LeaderAndIsr {
            leader_epoch: 1,
            partition_epoch: 2,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        })
        .expect("same epoch");
        assert_eq!(p.isr(), Some(vec![1, 2]));
    });
}

#[test]
fn fenced_followers_are_never_proposed_into_the_isr() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1]), "1").await;
        let p = &f.partition;
        let r = p.append(vec![batch(&["a"])], 1, soon()).await;
        assert_eq!(r.error, ErrorCode::None);
        f.partition
            .ctx_for_tests()
            .fenced_brokers
            .borrow_mut()
            .insert(2);
        p.read(
            Reader::Follower(2),
            1,
            1 << 20,
            -1,
            Isolation::ReadUncommitted,
        )
        .expect("read");
        compio::time::sleep(Duration::from_millis(1)).await;
        assert!(
            f.changer.calls.borrow().is_empty(),
            "a fenced broker may not join"
        );
        f.partition
            .ctx_for_tests()
            .fenced_brokers
            .borrow_mut()
            .clear();
        p.read(
            Reader::Follower(2),
            1,
            1 << 20,
            -1,
            Isolation::ReadUncommitted,
        )
        .expect("read");
        compio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(f.changer.calls.borrow().len(), 1);
    });
}

#[test]
fn non_replica_fetch_and_stale_epochs_are_refused() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "1").await;
        let p = &f.partition;
        assert_eq!(
            p.read(Reader::Follower(7), 0, 100, -1, Isolation::ReadUncommitted)
                .err(),
            Some(ErrorCode::NotLeaderOrFollower)
        );
        assert_eq!(
            p.read(Reader::Follower(1), 0, 100, -1, Isolation::ReadUncommitted)
                .err(),
            Some(ErrorCode::NotLeaderOrFollower),
            "the leader is not its own follower"
        );
        assert_eq!(
            p.read(Reader::Consumer, 0, 100, 0, Isolation::ReadUncommitted)
                .err(),
            Some(ErrorCode::FencedLeaderEpoch)
        );
        assert_eq!(
            p.read(Reader::Consumer, 0, 100, 2, Isolation::ReadUncommitted)
                .err(),
            Some(ErrorCode::UnknownLeaderEpoch)
        );
        assert!(p
            .read(Reader::Consumer, 0, 100, 1, Isolation::ReadUncommitted)
            .is_ok());
    });
}

#[test]
fn losing_leadership_answers_parked_produce() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "1").await;
        let p = f.partition.clone();
        let producer = {
            let p = p.clone();
            compio::runtime::spawn(async move { p.append(vec![batch(&["a"])], -1, soon()).await })
        };
        while p.log_end_offset() < 1 {
            compio::time::sleep(Duration::from_millis(1)).await;
        }
        p.become_follower(2, 2).expect("newer epoch");
        let answer = producer.await.expect("producer task");
        assert_eq!(answer.error, ErrorCode::NotLeaderOrFollower);
        // A new leader epoch starts follower positions afresh.
        p.become_leader(LeaderAndIsr {
            leader_epoch: 3,
            partition_epoch: 5,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        })
        .expect("newer epoch");
        let Role::Leader(s) = p.role() else {
            panic!("leader")
        };
        assert_eq!(s.epoch_start_offset, 1);
        assert_eq!(s.followers[&2].log_end_offset, -1);
        assert_eq!(p.log.state.borrow().leader_epoch, 3);
    });
}

#[test]
fn follower_fetch_parks_until_the_log_end_moves() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "1").await;
        let p = f.partition.clone();
        let waiter = {
            let p = p.clone();
            compio::runtime::spawn(async move {
                let started = Instant::now();
                p.wait(
                    Reader::Follower(2),
                    0,
                    Instant::now() + Duration::from_secs(5),
                    Isolation::ReadUncommitted,
                )
                .await;
                started.elapsed()
            })
        };
        compio::time::sleep(Duration::from_millis(20)).await;
        // acks=1: the high watermark does not move (the follower has not
        // fetched), but the log end does, which wakes the follower.
        p.append(vec![batch(&["a"])], 1, soon()).await;
        assert_eq!(p.high_watermark(), 0);
        let waited = waiter.await.expect("waiter");
        assert!(waited < Duration::from_secs(4), "woken by the log end");
    });
}

#[test]
fn manager_opens_in_the_assigned_role_and_changes_roles() {
    run(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let manager = ReplicaManager::new(
            ReplicaConfig {
                node_id: 1,
                replica_lag_time_max_ms: LAG,
            },
            dir.path().to_path_buf(),
        );
        let topic = crate::cluster::TopicMeta {
            name: "t".into(),
            id: uuid::Uuid::new_v4(),
            partitions: 3,
            configs: BTreeMap::new(),
            log_config: LogConfig::resolve(&BrokerConfig::default(), &BTreeMap::new()),
            internal: false,
            assignment: (0..3)
                .map(|_| crate::cluster::PartitionMeta::solo(1))
                .collect(),
        };
        // Default: single-node leader, epoch 0.
        let p0 = manager.open(&topic, 0).await.expect("open");
        assert_eq!(p0.isr(), Some(vec![1]));
        assert_eq!(p0.leader_epoch(), 0);
        assert_eq!(
            manager.open(&topic, 3).await.err(),
            Some(ErrorCode::UnknownTopicOrPartition)
        );
        // A source that hosts only partition 1, as a follower.
        manager.set_assignment_source(Rc::new(|_, p| {
            (p == 1).then_some(Assignment::Follower {
                leader: 2,
                leader_epoch: 5,
            })
        }));
        assert_eq!(
            manager.open(&topic, 2).await.err(),
            Some(ErrorCode::NotLeaderOrFollower)
        );
        let p1 = manager.open(&topic, 1).await.expect("open");
        assert!(!p1.is_leader());
        // The cluster wiring moves leadership; the same Partition serves on.
        manager
            .become_leader(
                &topic,
                1,
                LeaderAndIsr {
                    leader_epoch: 6,
                    partition_epoch: 9,
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                },
            )
            .await
            .expect("leader");
        assert!(Rc::ptr_eq(&p1, &manager.get(&topic.id, 1).expect("open")));
        assert_eq!(p1.isr(), Some(vec![1, 2]));
        // Becoming follower of a partition not open yet opens it.
        manager
            .become_follower(&topic, 2, 3, 1)
            .await
            .expect("follower");
        assert_eq!(
            manager.get(&topic.id, 2).map(|p| p.role()),
            Some(Role::Follower {
                leader: 3,
                leader_epoch: 1
            })
        );
        assert!(manager.remove(&topic.id, 2).is_some());
        assert!(manager.get(&topic.id, 2).is_none());
        assert_eq!(manager.remove_topic(&topic.id).len(), 2);
        assert!(p0.log.closed.get());
    });
}

fn one_partition_topic(name: &str, id: uuid::Uuid) -> crate::cluster::TopicMeta {
    crate::cluster::TopicMeta {
        name: name.into(),
        id,
        partitions: 1,
        configs: BTreeMap::new(),
        log_config: LogConfig::resolve(&BrokerConfig::default(), &BTreeMap::new()),
        internal: false,
        assignment: vec![crate::cluster::PartitionMeta::solo(1)],
    }
}

fn manager_in(dir: &std::path::Path) -> Rc<ReplicaManager> {
    ReplicaManager::new(
        ReplicaConfig {
            node_id: 1,
            replica_lag_time_max_ms: LAG,
        },
        dir.to_path_buf(),
    )
}

fn checkpoint(entries: &[(&str, i32, i64)]) -> crate::log::hw_checkpoint::HighWatermarks {
    entries
        .iter()
        .map(|(t, p, o)| ((t.to_string(), *p), *o))
        .collect()
}

#[test]
fn a_reopened_replicated_log_starts_its_high_watermark_at_the_checkpoint() {
    run(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let topic = one_partition_topic("t", uuid::Uuid::new_v4());
        // Five records written (a standalone leader commits them at once).
        let first = manager_in(dir.path());
        let p = first.open(&topic, 0).await.expect("open");
        let r = p
            .append(vec![batch(&["a", "b", "c", "d", "e"])], 1, soon())
            .await;
        assert_eq!(r.error, ErrorCode::None);
        assert_eq!(p.high_watermark(), 5);
        first.remove(&topic.id, 0);

        let two_replicas = LeaderAndIsr {
            leader_epoch: 1,
            partition_epoch: 1,
            replicas: vec![1, 2],
            isr: vec![1, 2],
        };
        // Replicated, checkpointed at 2: the three records past it were
        // never known committed, so consumers do not see them...
        let replicated = manager_in(dir.path());
        replicated.set_replicated(checkpoint(&[("t", 0, 2), ("other", 0, 7)]));
        replicated
            .become_leader(&topic, 0, two_replicas.clone())
            .await
            .expect("leader");
        let p = replicated.get(&topic.id, 0).expect("open");
        assert_eq!(p.log_end_offset(), 5);
        assert_eq!(
            p.high_watermark(),
            2,
            "from the checkpoint, not the log end"
        );
        let read = p
            .read(Reader::Consumer, 0, 1 << 20, -1, Isolation::ReadUncommitted)
            .expect("read");
        assert_eq!(read.high_watermark, 2);
        // ...until the ISR's log ends allow: the follower has all five.
        p.read(
            Reader::Follower(2),
            5,
            1 << 20,
            -1,
            Isolation::ReadUncommitted,
        )
        .expect("follower read");
        assert_eq!(p.high_watermark(), 5);
        assert_eq!(
            replicated.high_watermarks(),
            checkpoint(&[("t", 0, 5)]),
            "what the next checkpoint holds"
        );
        replicated.remove(&topic.id, 0);

        // A checkpoint past the log end (a tail lost in a crash): the log end.
        let past = manager_in(dir.path());
        past.set_replicated(checkpoint(&[("t", 0, 99)]));
        past.become_leader(&topic, 0, two_replicas.clone())
            .await
            .expect("leader");
        assert_eq!(past.get(&topic.id, 0).map(|p| p.high_watermark()), Some(5));
        past.remove(&topic.id, 0);

        // No entry (or no file): the log start, as a follower too.
        let none = manager_in(dir.path());
        none.set_replicated(checkpoint(&[]));
        none.become_follower(&topic, 0, 2, 2)
            .await
            .expect("follower");
        assert_eq!(none.get(&topic.id, 0).map(|p| p.high_watermark()), Some(0));
        none.remove(&topic.id, 0);

        // Standalone keeps the high watermark at the log end.
        let standalone = manager_in(dir.path());
        let p = standalone.open(&topic, 0).await.expect("open");
        assert_eq!(p.high_watermark(), 5);
    });
}

#[test]
fn partition_metadata_binds_a_directory_to_its_topic_id() {
    use crate::log::partition_metadata::{self, StoredTopicId, PARTITION_METADATA};
    run(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let part_dir = dir.path().join("t-0");
        let old = one_partition_topic("t", uuid::Uuid::new_v4());
        let m = manager_in(dir.path());
        let p = m.open(&old, 0).await.expect("open");
        p.append(vec![batch(&["old-1", "old-2"])], 1, soon()).await;
        assert_eq!(
            partition_metadata::read(&part_dir),
            StoredTopicId::Id(old.id)
        );
        m.remove(&old.id, 0);

        // A directory from before the file existed is adopted: the file is
        // written, the records stay.
        std::fs::remove_file(part_dir.join(PARTITION_METADATA)).expect("remove");
        let m = manager_in(dir.path());
        assert_eq!(m.open(&old, 0).await.expect("open").log_end_offset(), 2);
        assert_eq!(
            partition_metadata::read(&part_dir),
            StoredTopicId::Id(old.id)
        );
        m.remove(&old.id, 0);

        // A malformed file: a warning, then as absent.
        std::fs::write(
            part_dir.join(PARTITION_METADATA),
            "version: 0\ntopic_id: ???",
        )
        .expect("write");
        let m = manager_in(dir.path());
        assert_eq!(m.open(&old, 0).await.expect("open").log_end_offset(), 2);
        assert_eq!(
            partition_metadata::read(&part_dir),
            StoredTopicId::Id(old.id)
        );
        m.remove(&old.id, 0);

        // The topic deleted and recreated under its name while this node was
        // away: in cluster mode the old directory is removed and the
        // partition starts empty, its checkpointed high watermark dropped.
        let new = one_partition_topic("t", uuid::Uuid::new_v4());
        let m = manager_in(dir.path());
        m.set_replicated(checkpoint(&[("t", 0, 2)]));
        m.become_follower(&new, 0, 2, 0).await.expect("follower");
        let p = m.get(&new.id, 0).expect("open");
        assert_eq!((p.log_start_offset(), p.log_end_offset()), (0, 0));
        assert_eq!(p.high_watermark(), 0);
        assert_eq!(
            partition_metadata::read(&part_dir),
            StoredTopicId::Id(new.id)
        );
        m.remove(&new.id, 0);

        // Standalone, a directory of another id is set aside, not deleted.
        let third = one_partition_topic("t", uuid::Uuid::new_v4());
        let m = manager_in(dir.path());
        let p = m.open(&third, 0).await.expect("open");
        assert_eq!(p.log_end_offset(), 0);
        let stray = dir.path().join(format!("t-0.{}-stray", new.id.simple()));
        assert_eq!(partition_metadata::read(&stray), StoredTopicId::Id(new.id));
        assert_eq!(
            partition_metadata::read(&part_dir),
            StoredTopicId::Id(third.id)
        );
    });
}

#[test]
fn a_produce_queued_before_a_role_change_is_refused_not_restamped() {
    // A produce accepted while leader but staged only after the partition
    // became a follower must not be written under the new leader's epoch
    // (which would hide it from the diverging-epoch truncation).
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "1").await;
        let p = f.partition.clone();
        let writing = p.log.write_lock.lock().await;
        let producer = {
            let p = p.clone();
            compio::runtime::spawn(async move { p.append(vec![batch(&["a"])], 1, soon()).await })
        };
        // The produce passes the leader check and queues behind the lock.
        for _ in 0..10 {
            compio::time::sleep(Duration::from_millis(1)).await;
        }
        p.become_follower(2, 2).expect("newer epoch");
        drop(writing);
        let r = producer.await.expect("produce task");
        assert_eq!(r.error, ErrorCode::NotLeaderOrFollower);
        assert_eq!(p.log_end_offset(), 0, "nothing written under epoch 2");
    });
}

#[test]
fn txn_markers_are_appended_by_leaders_only_and_wait_for_replication() {
    run(async {
        let f = fixture(leader(&[1, 2], &[1, 2]), "1").await;
        let p = &f.partition;
        let mut b = BatchBuilder::new(Compression::None)
            .with_producer(5, 0, 0)
            .with_transactional(true);
        b.push(T0, None, Some(b"t"), &[]).expect("push");
        let bytes = b.build();
        let txn = (BatchHeader::parse(&bytes).expect("header"), bytes);
        assert_eq!(p.append(vec![txn], 1, soon()).await.error, ErrorCode::None);
        // Follower 2 has not fetched: the marker is written but, as an
        // acks=all produce, answers REQUEST_TIMED_OUT at its deadline, and
        // the transaction holds the last stable offset meanwhile.
        let short = Instant::now() + Duration::from_millis(200);
        assert_eq!(
            p.append_txn_marker(5, 0, 0, false, short).await,
            Err(ErrorCode::RequestTimedOut)
        );
        assert_eq!(p.log_end_offset(), 2);
        assert_eq!(p.log.last_stable_offset(), 0);
        // Once the follower has the marker, it is stable; the next marker
        // (a producer with no transaction here) answers its offset.
        p.read(
            Reader::Follower(2),
            2,
            1 << 20,
            -1,
            Isolation::ReadUncommitted,
        )
        .expect("follower fetch");
        assert_eq!(p.high_watermark(), 2);
        assert_eq!(p.log.last_stable_offset(), 2);
        let next = p.append_txn_marker(6, 0, 0, true, soon());
        let follower = async {
            p.log.wait_for_log_end(2, soon()).await;
            p.read(
                Reader::Follower(2),
                3,
                1 << 20,
                -1,
                Isolation::ReadUncommitted,
            )
            .expect("follower fetch");
        };
        let (written, ()) = futures::join!(next, follower);
        assert_eq!(written, Ok(2));
        // An older coordinator is fenced by the log's check.
        p.read(
            Reader::Follower(2),
            3,
            1 << 20,
            -1,
            Isolation::ReadUncommitted,
        )
        .expect("follower fetch");
        assert_eq!(
            p.append_txn_marker(6, 0, -1, true, short).await,
            Err(ErrorCode::TransactionCoordinatorFenced)
        );
        // A follower writes no markers.
        p.become_follower(2, 2).expect("follower");
        assert_eq!(
            p.append_txn_marker(5, 0, 0, true, soon()).await,
            Err(ErrorCode::NotLeaderOrFollower)
        );
    });
}
