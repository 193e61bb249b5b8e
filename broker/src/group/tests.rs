//! Coordinator tests: each drives a real coordinator on a compio runtime with
//! an in-memory GroupLog. Timeouts are short, but no test asserts on how
//! long anything took, only on outcomes.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_protocol::ErrorCode as E;

use super::{GroupConfig, GroupCoordinator, GroupLog};

// ---------------------------------------------------------------- harness

/// A (key, value) record.
type Record = (Bytes, Option<Bytes>);

#[derive(Default)]
struct MemLog {
    records: RefCell<Vec<(Bytes, Option<Bytes>)>>,
    /// Transactional appends, with their producer id.
    txn_records: RefCell<Vec<(i64, Record)>>,
    fail_with: Cell<Option<E>>,
}

impl GroupLog for MemLog {
    fn append(
        &self,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> LocalBoxFuture<'static, Result<(), E>> {
        if let Some(code) = self.fail_with.get() {
            return Box::pin(async move { Err(code) });
        }
        self.records.borrow_mut().extend(records);
        Box::pin(async { Ok(()) })
    }

    fn append_transactional(
        &self,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer_id: i64,
        _producer_epoch: i16,
    ) -> LocalBoxFuture<'static, Result<(), E>> {
        if let Some(code) = self.fail_with.get() {
            return Box::pin(async move { Err(code) });
        }
        self.txn_records
            .borrow_mut()
            .extend(records.into_iter().map(|r| (producer_id, r)));
        Box::pin(async { Ok(()) })
    }
}

fn config() -> GroupConfig {
    GroupConfig {
        group_min_session_timeout_ms: 10,
        group_initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

fn coordinator(cfg: GroupConfig) -> (Rc<GroupCoordinator>, Rc<MemLog>) {
    let log = Rc::new(MemLog::default());
    (GroupCoordinator::new(cfg, log.clone()), log)
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(f)
}

/// Lets spawned tasks and timers run.
async fn settle() {
    compio::time::sleep(Duration::from_millis(5)).await;
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_owned())
}

/// A consumer-protocol subscription (version 0).
fn sub(topics: &[&str]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i16(0);
    b.put_i32(topics.len() as i32);
    for t in topics {
        b.put_i16(t.len() as i16);
        b.put_slice(t.as_bytes());
    }
    b.put_i32(-1);
    b.freeze()
}

struct Join<'a> {
    group: &'a str,
    member: &'a str,
    instance: Option<&'a str>,
    session_ms: i32,
    rebalance_ms: i32,
    protocols: Vec<(&'a str, Bytes)>,
}

impl<'a> Join<'a> {
    fn new(group: &'a str, member: &'a str) -> Self {
        Join {
            group,
            member,
            instance: None,
            session_ms: 10_000,
            rebalance_ms: 10_000,
            protocols: vec![("range", sub(&["t1"]))],
        }
    }
    fn instance(mut self, i: &'a str) -> Self {
        self.instance = Some(i);
        self
    }
    fn timeouts(mut self, session_ms: i32, rebalance_ms: i32) -> Self {
        self.session_ms = session_ms;
        self.rebalance_ms = rebalance_ms;
        self
    }
    fn protocols(mut self, p: Vec<(&'a str, Bytes)>) -> Self {
        self.protocols = p;
        self
    }
    fn req(&self) -> JoinGroupRequest {
        let mut r = JoinGroupRequest::default();
        r.group_id = GroupId(s(self.group));
        r.member_id = s(self.member);
        r.group_instance_id = self.instance.map(s);
        r.session_timeout_ms = self.session_ms;
        r.rebalance_timeout_ms = self.rebalance_ms;
        r.protocol_type = s("consumer");
        r.protocols = self
            .protocols
            .iter()
            .map(|(n, m)| {
                let mut p = JoinGroupRequestProtocol::default();
                p.name = s(n);
                p.metadata = m.clone();
                p
            })
            .collect();
        r
    }
}

async fn join(c: &Rc<GroupCoordinator>, j: Join<'_>, version: i16) -> JoinGroupResponse {
    c.join_group(j.req(), version, "client", "/127.0.0.1").await
}

fn spawn_join(
    c: &Rc<GroupCoordinator>,
    j: Join<'_>,
    version: i16,
) -> compio::runtime::JoinHandle<JoinGroupResponse> {
    let c = c.clone();
    let req = j.req();
    compio::runtime::spawn(async move { c.join_group(req, version, "client", "/127.0.0.1").await })
}

fn sync_req(
    group: &str,
    member: &str,
    generation: i32,
    assignments: &[(&str, &[u8])],
) -> SyncGroupRequest {
    let mut r = SyncGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.generation_id = generation;
    r.assignments = assignments
        .iter()
        .map(|(m, a)| {
            let mut x = SyncGroupRequestAssignment::default();
            x.member_id = s(m);
            x.assignment = Bytes::copy_from_slice(a);
            x
        })
        .collect();
    r
}

fn spawn_sync(
    c: &Rc<GroupCoordinator>,
    req: SyncGroupRequest,
) -> compio::runtime::JoinHandle<SyncGroupResponse> {
    let c = c.clone();
    compio::runtime::spawn(async move { c.sync_group(req, 3).await })
}

async fn heartbeat(
    c: &Rc<GroupCoordinator>,
    group: &str,
    member: &str,
    generation: i32,
    instance: Option<&str>,
) -> i16 {
    let mut r = HeartbeatRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.generation_id = generation;
    r.group_instance_id = instance.map(s);
    c.heartbeat(r, 4).await.error_code
}

fn commit_req(
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> OffsetCommitRequest {
    let mut r = OffsetCommitRequest::default();
    r.group_id = GroupId(s(group));
    r.member_id = s(member);
    r.generation_id_or_member_epoch = generation;
    for (t, p, o) in offsets {
        let mut part = OffsetCommitRequestPartition::default();
        part.partition_index = *p;
        part.committed_offset = *o;
        part.committed_leader_epoch = 3;
        part.committed_metadata = Some(s("meta"));
        match r.topics.iter_mut().find(|x| x.name.as_str() == *t) {
            Some(topic) => topic.partitions.push(part),
            None => {
                let mut topic = OffsetCommitRequestTopic::default();
                topic.name = TopicName(s(t));
                topic.partitions.push(part);
                r.topics.push(topic);
            }
        }
    }
    r
}

async fn commit(
    c: &Rc<GroupCoordinator>,
    group: &str,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> Vec<i16> {
    let resp = c
        .offset_commit(commit_req(group, member, generation, offsets), 8)
        .await;
    resp.topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

fn fetched(c: &GroupCoordinator, group: &str, topic: &str, partition: i32) -> i64 {
    let r = c.offset_fetch(
        group,
        Some(vec![(topic.to_owned(), vec![partition])]),
        false,
    );
    assert_eq!(r.error_code, E::None);
    r.topics[0].partitions[0].committed_offset
}

fn describe(c: &GroupCoordinator, group: &str) -> DescribedGroup {
    c.describe_group(group)
}

fn state(c: &GroupCoordinator, group: &str) -> String {
    describe(c, group).group_state.to_string()
}

/// Joins one member (v5) and syncs it to a Stable generation; returns (member id, generation).
async fn stable_single(c: &Rc<GroupCoordinator>, group: &str, j: Join<'_>) -> (String, i32) {
    let mut req = j.req();
    let mut r = c.join_group(req.clone(), 5, "client", "/127.0.0.1").await;
    if r.error_code == E::MemberIdRequired.code() {
        req.member_id = r.member_id.clone();
        r = c.join_group(req, 5, "client", "/127.0.0.1").await;
    }
    assert_eq!(r.error_code, E::None.code());
    let id = r.member_id.to_string();
    let s = c
        .sync_group(sync_req(group, &id, r.generation_id, &[(&id, b"A")]), 3)
        .await;
    assert_eq!(s.error_code, E::None.code());
    (id, r.generation_id)
}

async fn leave(
    c: &Rc<GroupCoordinator>,
    group: &str,
    members: &[(&str, Option<&str>)],
) -> LeaveGroupResponse {
    let mut r = LeaveGroupRequest::default();
    r.group_id = GroupId(s(group));
    r.members = members
        .iter()
        .map(|(m, i)| {
            let mut x = MemberIdentity::default();
            x.member_id = s(m);
            x.group_instance_id = i.map(s);
            x
        })
        .collect();
    c.leave_group(r, 4).await
}

// ---------------------------------------------------------------- tests

#[test]
fn single_member_join_sync_heartbeat_commit_fetch() {
    run(async {
        let (c, log) = coordinator(config());
        let r = join(&c, Join::new("g", ""), 3).await;
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(r.generation_id, 1);
        assert!(r.member_id.starts_with("client-"));
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.protocol_name.as_deref(), Some("range"));
        assert_eq!(r.members.len(), 1);
        assert_eq!(state(&c, "g"), "CompletingRebalance");
        let id = r.member_id.to_string();

        let sr = c
            .sync_group(sync_req("g", &id, 1, &[(&id, b"assignment")]), 3)
            .await;
        assert_eq!(sr.error_code, E::None.code());
        assert_eq!(&sr.assignment[..], b"assignment");
        assert_eq!(state(&c, "g"), "Stable");
        assert_eq!(
            log.records.borrow().len(),
            1,
            "assignment persisted before answering"
        );

        assert_eq!(heartbeat(&c, "g", &id, 1, None).await, E::None.code());
        assert_eq!(
            commit(&c, "g", &id, 1, &[("t1", 0, 42), ("t1", 1, 7)]).await,
            vec![E::None.code(); 2]
        );
        assert_eq!(fetched(&c, "g", "t1", 0), 42);
        assert_eq!(fetched(&c, "g", "t1", 1), 7);
        assert_eq!(fetched(&c, "g", "t1", 2), -1);
        let all = c.offset_fetch("g", None, true);
        assert_eq!(all.topics.len(), 1);
        assert_eq!(all.topics[0].partitions.len(), 2);
        assert_eq!(all.topics[0].partitions[0].committed_leader_epoch, 3);
        assert_eq!(all.topics[0].partitions[0].metadata, "meta");
        // Unknown group: -1, no error.
        assert_eq!(fetched(&c, "nope", "t1", 0), -1);
        assert!(c.offset_fetch("nope", None, false).topics.is_empty());

        let d = describe(&c, "g");
        assert_eq!(d.protocol_type.as_str(), "consumer");
        assert_eq!(d.protocol_data.as_str(), "range");
        assert_eq!(&d.members[0].member_assignment[..], b"assignment");
        assert_eq!(d.members[0].member_metadata, sub(&["t1"]));
        assert_eq!(c.group_count(), 1);
        assert_eq!(c.rebalance_count(), 1);

        // The leader rejoining while Stable forces a rebalance (here it is
        // alone, so it completes at once).
        let r = join(&c, Join::new("g", &id), 3).await;
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(r.generation_id, 2);
        assert_eq!(r.members.len(), 1);
        assert_eq!(c.rebalance_count(), 2);
        // Rejoining again with the same metadata while CompletingRebalance
        // repeats the current generation.
        let r = join(&c, Join::new("g", &id), 3).await;
        assert_eq!((r.error_code, r.generation_id), (E::None.code(), 2));
        assert_eq!(c.rebalance_count(), 2);
        c.shutdown();
    });
}

#[test]
fn member_id_required_on_v4_and_later() {
    run(async {
        let (c, _) = coordinator(config());
        let r = join(&c, Join::new("g", ""), 4).await;
        assert_eq!(r.error_code, E::MemberIdRequired.code());
        assert_eq!(r.generation_id, -1);
        let id = r.member_id.to_string();
        assert!(id.starts_with("client-") && id.len() > "client-".len() + 30);
        assert_eq!(state(&c, "g"), "Empty");
        // Rejoining with the given id completes the join.
        let r = join(&c, Join::new("g", &id), 4).await;
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(r.member_id.as_str(), id);
        assert_eq!(r.generation_id, 1);
        // A made-up member id is unknown.
        let r = join(&c, Join::new("g", "client-made-up"), 4).await;
        assert_eq!(r.error_code, E::UnknownMemberId.code());
        // An unknown member id for an unknown group, too.
        let r = join(&c, Join::new("other", "x"), 4).await;
        assert_eq!(r.error_code, E::UnknownMemberId.code());
        c.shutdown();
    });
}

#[test]
fn pending_member_id_expires_after_session_timeout() {
    run(async {
        let (c, _) = coordinator(config());
        let r = join(&c, Join::new("g", "").timeouts(20, 20), 4).await;
        assert_eq!(r.error_code, E::MemberIdRequired.code());
        let id = r.member_id.to_string();
        let pending = |c: &GroupCoordinator| {
            c.groups
                .borrow()
                .get("g")
                .is_some_and(|g| !g.pending_members.is_empty())
        };
        assert!(pending(&c));
        for _ in 0..500 {
            if !pending(&c) {
                break;
            }
            settle().await;
        }
        assert!(!pending(&c), "pending member id never expired");
        let r = join(&c, Join::new("g", &id), 4).await;
        assert_eq!(r.error_code, E::UnknownMemberId.code());
        c.shutdown();
    });
}

#[test]
fn second_member_triggers_rebalance_and_leader_gets_members() {
    run(async {
        let (c, _) = coordinator(config());
        let (a, gen1) = stable_single(&c, "g", Join::new("g", "")).await;
        let rebalances = c.rebalance_count();

        let b_join = spawn_join(&c, Join::new("g", ""), 3);
        settle().await;
        assert_eq!(state(&c, "g"), "PreparingRebalance");
        assert_eq!(
            heartbeat(&c, "g", &a, gen1, None).await,
            E::RebalanceInProgress.code()
        );
        let a_join = join(&c, Join::new("g", &a), 3).await;
        let b_join = b_join.await.expect("task");
        assert_eq!(a_join.error_code, E::None.code());
        assert_eq!(b_join.error_code, E::None.code());
        assert_eq!(a_join.generation_id, gen1 + 1);
        assert_eq!(b_join.generation_id, gen1 + 1);
        assert_eq!(a_join.leader.as_str(), a);
        assert_eq!(b_join.leader.as_str(), a);
        assert_eq!(a_join.members.len(), 2, "leader gets the member list");
        assert!(b_join.members.is_empty(), "followers do not");
        assert_eq!(c.rebalance_count(), rebalances + 1);
        let b = b_join.member_id.to_string();

        // The follower waits for the leader's assignment.
        let b_sync = spawn_sync(&c, sync_req("g", &b, gen1 + 1, &[]));
        settle().await;
        assert_eq!(state(&c, "g"), "CompletingRebalance");
        // Commits are refused while the assignment is pending.
        assert_eq!(
            commit(&c, "g", &a, gen1 + 1, &[("t1", 0, 1)]).await,
            vec![E::RebalanceInProgress.code()]
        );
        let a_sync = c
            .sync_group(
                sync_req("g", &a, gen1 + 1, &[(&a, b"for-a"), (&b, b"for-b")]),
                3,
            )
            .await;
        assert_eq!(&a_sync.assignment[..], b"for-a");
        let b_sync = b_sync.await.expect("task");
        assert_eq!(b_sync.error_code, E::None.code());
        assert_eq!(&b_sync.assignment[..], b"for-b");
        assert_eq!(state(&c, "g"), "Stable");

        // A follower rejoining with unchanged metadata while Stable: current
        // generation, no rebalance.
        let again = join(&c, Join::new("g", &b), 3).await;
        assert_eq!(again.error_code, E::None.code());
        assert_eq!(again.generation_id, gen1 + 1);
        assert_eq!(again.leader.as_str(), a);
        assert!(again.members.is_empty());
        assert_eq!(state(&c, "g"), "Stable");
        assert_eq!(c.rebalance_count(), rebalances + 1);
        let s = c.sync_group(sync_req("g", &b, gen1 + 1, &[]), 3).await;
        assert_eq!(&s.assignment[..], b"for-b");

        // Stale generation: fenced everywhere.
        assert_eq!(
            commit(&c, "g", &a, gen1, &[("t1", 0, 1)]).await,
            vec![E::IllegalGeneration.code()]
        );
        assert_eq!(
            heartbeat(&c, "g", &a, gen1, None).await,
            E::IllegalGeneration.code()
        );
        let s = c.sync_group(sync_req("g", &a, gen1, &[]), 3).await;
        assert_eq!(s.error_code, E::IllegalGeneration.code());
        // Non-members cannot commit; simple commits are refused while members exist.
        assert_eq!(
            commit(&c, "g", "stranger", gen1 + 1, &[("t1", 0, 1)]).await,
            vec![E::UnknownMemberId.code()]
        );
        assert_eq!(
            commit(&c, "g", "", -1, &[("t1", 0, 1)]).await,
            vec![E::UnknownMemberId.code()]
        );
        c.shutdown();
    });
}

#[test]
fn session_expiry_removes_member_and_rebalances() {
    run(async {
        let (c, _) = coordinator(config());
        let (a, _) = stable_single(&c, "g", Join::new("g", "").timeouts(5000, 5000)).await;
        // b joins with a 30 ms session and then falls silent.
        let b_join = spawn_join(&c, Join::new("g", "").timeouts(30, 30), 3);
        settle().await;
        let a_join = join(&c, Join::new("g", &a).timeouts(5000, 5000), 3).await;
        let b_join = b_join.await.expect("task");
        let gen = a_join.generation_id;
        let b = b_join.member_id.to_string();
        let b_sync = spawn_sync(&c, sync_req("g", &b, gen, &[]));
        c.sync_group(sync_req("g", &a, gen, &[(&a, b"x"), (&b, b"y")]), 3)
            .await;
        assert_eq!(b_sync.await.expect("task").error_code, E::None.code());
        assert_eq!(describe(&c, "g").members.len(), 2);

        // a keeps heartbeating; b's session runs out and a is told to rejoin.
        let mut saw_rebalance = false;
        for _ in 0..500 {
            settle().await;
            let e = heartbeat(&c, "g", &a, gen, None).await;
            if e == E::RebalanceInProgress.code() {
                saw_rebalance = true;
                break;
            }
            assert_eq!(e, E::None.code());
        }
        assert!(saw_rebalance, "b's session never expired");
        assert_eq!(
            heartbeat(&c, "g", &b, gen, None).await,
            E::UnknownMemberId.code()
        );
        let r = join(&c, Join::new("g", &a).timeouts(5000, 5000), 3).await;
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(r.generation_id, gen + 1);
        assert_eq!(r.members.len(), 1);

        // Without heartbeats the last member expires too and the group empties.
        let c2 = c.clone();
        let (z, _) = stable_single(&c2, "h", Join::new("h", "").timeouts(20, 20)).await;
        for _ in 0..500 {
            settle().await;
            if state(&c, "h") == "Empty" {
                break;
            }
        }
        assert_eq!(state(&c, "h"), "Empty");
        assert_eq!(
            heartbeat(&c, "h", &z, 1, None).await,
            E::UnknownMemberId.code()
        );
        c.shutdown();
    });
}

#[test]
fn rebalance_timeout_drops_members_that_do_not_rejoin() {
    run(async {
        let (c, _) = coordinator(config());
        // a: short rebalance timeout, long session; b: same.
        let (a, gen) = stable_single(&c, "g", Join::new("g", "").timeouts(60_000, 40)).await;
        let b_join = spawn_join(&c, Join::new("g", "").timeouts(60_000, 40), 3);
        settle().await;
        // a never rejoins: when the rebalance timeout passes, it is dropped.
        let b_join = b_join.await.expect("task");
        assert_eq!(b_join.error_code, E::None.code());
        assert_eq!(b_join.generation_id, gen + 1);
        assert_eq!(b_join.leader, b_join.member_id, "b became leader");
        assert_eq!(b_join.members.len(), 1);
        assert_eq!(
            heartbeat(&c, "g", &a, gen, None).await,
            E::UnknownMemberId.code()
        );
        c.shutdown();
    });
}

#[test]
fn initial_rebalance_delay_collects_members() {
    run(async {
        let (c, _) = coordinator(GroupConfig {
            group_initial_rebalance_delay_ms: 50,
            ..config()
        });
        let a = spawn_join(&c, Join::new("g", ""), 3);
        let b = spawn_join(&c, Join::new("g", ""), 3);
        let (a, b) = (a.await.expect("task"), b.await.expect("task"));
        assert_eq!(
            (a.error_code, b.error_code),
            (E::None.code(), E::None.code())
        );
        assert_eq!(a.generation_id, 1);
        assert_eq!(b.generation_id, 1);
        assert_eq!(a.leader, b.leader);
        assert_eq!(a.members.len() + b.members.len(), 2);
        assert_eq!(c.rebalance_count(), 1);
        c.shutdown();
    });
}

#[test]
fn static_member_rejoins_without_rebalance_and_fences_old_id() {
    run(async {
        let (c, log) = coordinator(config());
        let (old, gen) = stable_single(&c, "g", Join::new("g", "").instance("i1")).await;
        assert!(old.starts_with("i1-"));
        let rebalances = c.rebalance_count();
        let writes = log.records.borrow().len();

        // Restarted static member: unknown member id, same instance id and protocols.
        let r = join(&c, Join::new("g", "").instance("i1"), 5).await;
        assert_eq!(r.error_code, E::None.code());
        let new = r.member_id.to_string();
        assert_ne!(new, old);
        assert_eq!(r.generation_id, gen);
        // Before v9 the old leader id is returned so it does not run the assignor.
        assert_eq!(r.leader.as_str(), old);
        assert!(r.members.is_empty());
        assert_eq!(c.rebalance_count(), rebalances, "no rebalance");
        assert_eq!(state(&c, "g"), "Stable");
        assert_eq!(
            log.records.borrow().len(),
            writes + 1,
            "new member id persisted"
        );

        // It keeps its assignment.
        let sr = c.sync_group(sync_req("g", &new, gen, &[]), 3).await;
        assert_eq!(sr.error_code, E::None.code());
        assert_eq!(&sr.assignment[..], b"A");
        // The old member id is fenced.
        assert_eq!(
            heartbeat(&c, "g", &old, gen, Some("i1")).await,
            E::FencedInstanceId.code()
        );
        let mut sreq = sync_req("g", &old, gen, &[]);
        sreq.group_instance_id = Some(s("i1"));
        assert_eq!(
            c.sync_group(sreq, 3).await.error_code,
            E::FencedInstanceId.code()
        );
        let mut creq = commit_req("g", &old, gen, &[("t1", 0, 5)]);
        creq.group_instance_id = Some(s("i1"));
        assert_eq!(
            c.offset_commit(creq, 8).await.topics[0].partitions[0].error_code,
            E::FencedInstanceId.code()
        );
        let r = join(&c, Join::new("g", &old).instance("i1"), 5).await;
        assert_eq!(r.error_code, E::FencedInstanceId.code());
        assert_eq!(
            heartbeat(&c, "g", &new, gen, Some("i1")).await,
            E::None.code()
        );

        // v9: the static leader is told it leads but skips the assignment.
        let r = join(&c, Join::new("g", "").instance("i1"), 9).await;
        assert_eq!(r.error_code, E::None.code());
        assert!(r.skip_assignment);
        assert_eq!(r.leader, r.member_id);
        assert_eq!(r.members.len(), 1);
        assert_eq!(c.rebalance_count(), rebalances);

        // Changed protocols trigger a rebalance instead.
        let p = spawn_join(
            &c,
            Join::new("g", "")
                .instance("i1")
                .protocols(vec![("roundrobin", sub(&["t1"])), ("range", sub(&["t1"]))]),
            5,
        );
        let r = p.await.expect("task");
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(r.generation_id, gen + 1);
        assert_eq!(r.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(c.rebalance_count(), rebalances + 1);
        c.shutdown();
    });
}

#[test]
fn leave_group_single_and_batch() {
    run(async {
        let (c, _) = coordinator(config());
        let (a, gen) = stable_single(&c, "g", Join::new("g", "").instance("ia")).await;
        let b_join = spawn_join(&c, Join::new("g", ""), 3);
        settle().await;
        join(&c, Join::new("g", &a).instance("ia"), 5).await;
        let b = b_join.await.expect("task").member_id.to_string();
        let gen2 = gen + 1;

        // v0-v2: one member, top-level error.
        let mut old = LeaveGroupRequest::default();
        old.group_id = GroupId(s("g"));
        old.member_id = s("nobody");
        assert_eq!(
            c.leave_group(old, 1).await.error_code,
            E::UnknownMemberId.code()
        );

        // v3+: a batch, per-member errors; a static member by instance id alone.
        let r = leave(&c, "g", &[(&b, None), ("", Some("ia")), ("x", None)]).await;
        assert_eq!(r.error_code, E::None.code());
        let errors: Vec<i16> = r.members.iter().map(|m| m.error_code).collect();
        assert_eq!(
            errors,
            vec![E::None.code(), E::None.code(), E::UnknownMemberId.code()]
        );
        assert_eq!(r.members[1].group_instance_id.as_deref(), Some("ia"));
        // Everyone left: the rebalance completes at once with an empty group.
        assert_eq!(state(&c, "g"), "Empty");
        assert_eq!(
            heartbeat(&c, "g", &a, gen2, None).await,
            E::UnknownMemberId.code()
        );
        let r = leave(&c, "unknown-group", &[("m", None)]).await;
        assert_eq!(r.members[0].error_code, E::UnknownMemberId.code());
        c.shutdown();
    });
}

#[test]
fn delete_group_non_empty_then_empty() {
    run(async {
        let (c, log) = coordinator(config());
        let (a, gen) = stable_single(&c, "g", Join::new("g", "")).await;
        assert_eq!(
            commit(&c, "g", &a, gen, &[("t1", 0, 10)]).await,
            vec![E::None.code()]
        );
        assert_eq!(c.delete_group("g").await, E::NonEmptyGroup);
        assert_eq!(c.delete_group("missing").await, E::GroupIdNotFound);
        leave(&c, "g", &[(&a, None)]).await;
        assert_eq!(state(&c, "g"), "Empty");
        assert_eq!(c.delete_group("g").await, E::None);
        assert_eq!(state(&c, "g"), "Dead");
        assert_eq!(c.group_count(), 0);
        assert_eq!(fetched(&c, "g", "t1", 0), -1);
        assert_eq!(c.delete_group("g").await, E::GroupIdNotFound);
        // Tombstones for the offset and the group were written.
        let tail: Vec<_> = log.records.borrow().iter().rev().take(2).cloned().collect();
        assert!(tail.iter().all(|(_, v)| v.is_none()));
        c.shutdown();
    });
}

#[test]
fn simple_commits_and_offset_checks() {
    run(async {
        let (c, _) = coordinator(config());
        // Standalone consumer: generation -1, no member id.
        assert_eq!(
            commit(&c, "solo", "", -1, &[("t", 0, 5)]).await,
            vec![E::None.code()]
        );
        assert_eq!(fetched(&c, "solo", "t", 0), 5);
        assert_eq!(state(&c, "solo"), "Empty");
        // A generation for a group we never saw.
        assert_eq!(
            commit(&c, "ghost", "m", 3, &[("t", 0, 5)]).await,
            vec![E::IllegalGeneration.code()]
        );
        // Metadata too large: only that partition fails.
        let mut req = commit_req("solo", "", -1, &[("t", 0, 6), ("t", 1, 6)]);
        req.topics[0].partitions[1].committed_metadata =
            Some(StrBytes::from_string("x".repeat(4097)));
        let r = c.offset_commit(req, 8).await;
        let errors: Vec<i16> = r.topics[0]
            .partitions
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(
            errors,
            vec![E::None.code(), E::OffsetMetadataTooLarge.code()]
        );
        assert_eq!(fetched(&c, "solo", "t", 0), 6);
        assert_eq!(fetched(&c, "solo", "t", 1), -1);
        c.shutdown();
    });
}

#[test]
fn failed_log_append_is_reported() {
    run(async {
        let (c, log) = coordinator(config());
        let r = join(&c, Join::new("g", ""), 3).await;
        let id = r.member_id.to_string();
        log.fail_with.set(Some(E::NotLeaderOrFollower));
        let s = c.sync_group(sync_req("g", &id, 1, &[(&id, b"x")]), 3).await;
        assert_eq!(s.error_code, E::NotCoordinator.code());
        assert_ne!(state(&c, "g"), "Stable");
        log.fail_with.set(Some(E::MessageTooLarge));
        assert_eq!(
            commit(&c, "solo", "", -1, &[("t", 0, 1)]).await,
            vec![E::InvalidCommitOffsetSize.code()]
        );
        assert_eq!(
            fetched(&c, "solo", "t", 0),
            -1,
            "nothing visible that was not written"
        );
        c.shutdown();
    });
}

#[test]
fn protocol_checks_and_voting() {
    run(async {
        let (c, _) = coordinator(config());
        let r = join(&c, Join::new("g", "").protocols(vec![]), 3).await;
        assert_eq!(r.error_code, E::InconsistentGroupProtocol.code());
        let r = join(&c, Join::new("g", "").timeouts(5, 5), 3).await;
        assert_eq!(r.error_code, E::InvalidSessionTimeout.code());
        let r = join(&c, Join::new("", ""), 3).await;
        assert_eq!(r.error_code, E::InvalidGroupId.code());

        let both = vec![("range", sub(&["t1"])), ("roundrobin", sub(&["t1"]))];
        let (a, _) = stable_single(&c, "g", Join::new("g", "").protocols(both.clone())).await;
        let r = join(
            &c,
            Join::new("g", "").protocols(vec![("sticky", sub(&["t1"]))]),
            3,
        )
        .await;
        assert_eq!(r.error_code, E::InconsistentGroupProtocol.code());

        // b only speaks roundrobin; a prefers range but roundrobin is the only common one.
        let pending = join(&c, Join::new("g", ""), 7).await;
        assert_eq!(pending.error_code, E::MemberIdRequired.code());
        let b_id = pending.member_id.to_string();
        let b = spawn_join(
            &c,
            Join::new("g", &b_id).protocols(vec![("roundrobin", sub(&["t2"]))]),
            7,
        );
        settle().await;
        let ra = join(&c, Join::new("g", &a).protocols(both), 7).await;
        let rb = b.await.expect("task");
        assert_eq!(ra.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(rb.protocol_name.as_deref(), Some("roundrobin"));
        assert_eq!(rb.protocol_type.as_deref(), Some("consumer"));

        // SyncGroup v5 protocol checks.
        let mut bad = sync_req("g", &a, ra.generation_id, &[]);
        bad.protocol_name = Some(s("range"));
        assert_eq!(
            c.sync_group(bad, 5).await.error_code,
            E::InconsistentGroupProtocol.code()
        );
        c.shutdown();
    });
}

#[test]
fn group_max_size() {
    run(async {
        let (c, _) = coordinator(GroupConfig {
            group_max_size: 1,
            ..config()
        });
        let _ = stable_single(&c, "g", Join::new("g", "")).await;
        let r = join(&c, Join::new("g", ""), 3).await;
        assert_eq!(r.error_code, E::GroupMaxSizeReached.code());
        c.shutdown();
    });
}

#[test]
fn offset_delete_respects_subscriptions() {
    run(async {
        let (c, _) = coordinator(config());
        let (a, gen) = stable_single(&c, "g", Join::new("g", "")).await; // subscribed to t1
        assert_eq!(
            commit(&c, "g", &a, gen, &[("t1", 0, 1), ("t2", 0, 2)]).await,
            vec![E::None.code(); 2]
        );
        let mut req = OffsetDeleteRequest::default();
        req.group_id = GroupId(s("g"));
        for t in ["t1", "t2"] {
            let mut topic = OffsetDeleteRequestTopic::default();
            topic.name = TopicName(s(t));
            let mut p = OffsetDeleteRequestPartition::default();
            p.partition_index = 0;
            topic.partitions.push(p);
            req.topics.push(topic);
        }
        let r = c.offset_delete(req.clone(), 0).await;
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(
            r.topics[0].partitions[0].error_code,
            E::GroupSubscribedToTopic.code()
        );
        assert_eq!(r.topics[1].partitions[0].error_code, E::None.code());
        assert_eq!(fetched(&c, "g", "t1", 0), 1);
        assert_eq!(fetched(&c, "g", "t2", 0), -1);
        let mut missing = req.clone();
        missing.group_id = GroupId(s("missing"));
        assert_eq!(
            c.offset_delete(missing, 0).await.error_code,
            E::GroupIdNotFound.code()
        );
        // Once empty, the rest goes, and the group with it.
        leave(&c, "g", &[(&a, None)]).await;
        let r = c.offset_delete(req, 0).await;
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(
            r.topics.len(),
            1,
            "only partitions that had offsets are reported"
        );
        assert_eq!(fetched(&c, "g", "t1", 0), -1);
        assert_eq!(c.group_count(), 0);
        c.shutdown();
    });
}

#[test]
fn load_replays_offsets_and_groups() {
    run(async {
        let (c, log) = coordinator(config());
        let (a, gen) = stable_single(&c, "g", Join::new("g", "").instance("ia")).await;
        assert_eq!(
            commit(&c, "g", &a, gen, &[("t1", 0, 100), ("t1", 1, 101)]).await,
            vec![E::None.code(); 2]
        );
        assert_eq!(
            commit(&c, "g", &a, gen, &[("t1", 0, 200)]).await,
            vec![E::None.code()]
        );
        assert_eq!(
            commit(&c, "solo", "", -1, &[("t", 3, 9)]).await,
            vec![E::None.code()]
        );
        assert_eq!(
            commit(&c, "gone", "", -1, &[("t", 0, 1)]).await,
            vec![E::None.code()]
        );
        assert_eq!(c.delete_group("gone").await, E::None);
        c.shutdown();

        let records = log.records.borrow().clone();
        let (c2, _) = coordinator(config());
        // Junk and foreign records are skipped.
        let mut all = vec![(
            Bytes::from_static(&[0, 9, 1]),
            Some(Bytes::from_static(b"zz")),
        )];
        all.extend(records);
        c2.load(all);
        assert_eq!(c2.group_count(), 2);
        assert_eq!(fetched(&c2, "g", "t1", 0), 200);
        assert_eq!(fetched(&c2, "g", "t1", 1), 101);
        assert_eq!(fetched(&c2, "solo", "t", 3), 9);
        assert_eq!(fetched(&c2, "gone", "t", 0), -1);
        let d = describe(&c2, "g");
        assert_eq!(d.group_state.as_str(), "Stable");
        assert_eq!(d.protocol_data.as_str(), "range");
        assert_eq!(d.members.len(), 1);
        assert_eq!(d.members[0].member_id.as_str(), a);
        assert_eq!(d.members[0].group_instance_id.as_deref(), Some("ia"));
        assert_eq!(&d.members[0].member_assignment[..], b"A");
        // The member is back: it can heartbeat and commit in its generation.
        assert_eq!(
            heartbeat(&c2, "g", &a, gen, Some("ia")).await,
            E::None.code()
        );
        assert_eq!(
            commit(&c2, "g", &a, gen, &[("t1", 0, 300)]).await,
            vec![E::None.code()]
        );
        // The static member's restart keeps its assignment after reload.
        let r = join(&c2, Join::new("g", "").instance("ia"), 5).await;
        assert_eq!(r.error_code, E::None.code());
        assert_eq!(r.generation_id, gen);
        c2.shutdown();
    });
}

#[test]
fn loaded_members_expire_without_heartbeats() {
    run(async {
        let (c, log) = coordinator(config());
        let _ = stable_single(&c, "g", Join::new("g", "").timeouts(20, 20)).await;
        c.shutdown();
        let (c2, _) = coordinator(config());
        c2.load(log.records.borrow().clone());
        assert_eq!(state(&c2, "g"), "Stable");
        for _ in 0..500 {
            settle().await;
            if state(&c2, "g") == "Empty" {
                break;
            }
        }
        assert_eq!(state(&c2, "g"), "Empty");
        c2.shutdown();
    });
}

#[test]
fn list_and_describe_views() {
    run(async {
        let (c, _) = coordinator(config());
        let _ = stable_single(&c, "b", Join::new("b", "")).await;
        commit(&c, "a", "", -1, &[("t", 0, 1)]).await;
        let all = c.list_groups(&[], &[]);
        let ids: Vec<&str> = all.iter().map(|g| g.group_id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(all[1].group_state.as_str(), "Stable");
        assert_eq!(all[1].group_type.as_str(), "classic");
        assert_eq!(c.list_groups(&["stable".into()], &[]).len(), 1);
        assert_eq!(c.list_groups(&[], &["consumer".into()]).len(), 0);
        assert_eq!(c.list_groups(&[], &["Classic".into()]).len(), 2);
        let d = c.describe_group_for_version("nope", 5);
        assert_eq!(
            (d.error_code, d.group_state.as_str()),
            (E::None.code(), "Dead")
        );
        let d = c.describe_group_for_version("nope", 6);
        assert_eq!(d.error_code, E::GroupIdNotFound.code());
        c.shutdown();
    });
}

#[test]
fn shutdown_answers_waiters_and_stops() {
    run(async {
        let (c, _) = coordinator(config());
        let (a, _) = stable_single(&c, "g", Join::new("g", "")).await;
        let b = spawn_join(&c, Join::new("g", ""), 3);
        settle().await;
        c.shutdown();
        assert_eq!(b.await.expect("task").error_code, E::NotCoordinator.code());
        assert_eq!(
            heartbeat(&c, "g", &a, 1, None).await,
            E::NotCoordinator.code()
        );
    });
}

/// Every response encodes in every version it may be asked for (fields a
/// version lacks are left unset).
#[test]
fn responses_encode_in_every_version() {
    run(async {
        let (c, _) = coordinator(config());
        for v in 0..=9i16 {
            let g = format!("g{v}");
            let r = join(&c, Join::new(&g, "").instance("i"), v).await;
            let mut buf = BytesMut::new();
            r.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("JoinGroup v{v}: {e}"));
            let bad = join(&c, Join::new(&g, "unknown"), v).await;
            bad.encode(&mut buf, v)
                .unwrap_or_else(|e| panic!("JoinGroup error v{v}: {e}"));
            if v <= 5 {
                let id = r.member_id.to_string();
                let sr = c
                    .sync_group(sync_req(&g, &id, r.generation_id, &[(&id, b"x")]), v)
                    .await;
                sr.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("SyncGroup v{v}: {e}"));
                let d = c.describe_group_for_version(&g, v);
                let mut resp = DescribeGroupsResponse::default();
                resp.groups.push(d);
                resp.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("DescribeGroups v{v}: {e}"));
                let mut l = LeaveGroupRequest::default();
                l.group_id = GroupId(s(&g));
                l.member_id = s(&id);
                let mut m = MemberIdentity::default();
                m.member_id = s(&id);
                l.members.push(m);
                let lr = c.leave_group(l, v).await;
                lr.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("LeaveGroup v{v}: {e}"));
                let mut lg = ListGroupsResponse::default();
                lg.groups = c.list_groups_for_version(&[], &[], v);
                lg.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("ListGroups v{v}: {e}"));
            }
            if v <= 4 {
                let h = c.heartbeat(HeartbeatRequest::default(), v).await;
                h.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("Heartbeat v{v}: {e}"));
            }
            if (2..=9).contains(&v) {
                let r = c
                    .offset_commit(commit_req("solo", "", -1, &[("t", 0, 1)]), v)
                    .await;
                r.encode(&mut buf, v)
                    .unwrap_or_else(|e| panic!("OffsetCommit v{v}: {e}"));
            }
        }
        let d = describe(&c, "g6");
        let mut resp = DescribeGroupsResponse::default();
        resp.groups.push(c.describe_group_for_version("missing", 6));
        resp.groups.push(d);
        resp.encode(&mut BytesMut::new(), 6)
            .expect("DescribeGroups v6");
        for v in 1..=9i16 {
            let f = c.offset_fetch("solo", Some(vec![("t".into(), vec![0, 1])]), false);
            let mut resp = OffsetFetchResponse::default();
            if v >= 8 {
                resp.groups.push(f.into_response_group("solo"));
            } else {
                resp.error_code = if v >= 2 {
                    f.error_code.code()
                } else {
                    E::None.code()
                };
                resp.topics = f.into_response_topics(v);
            }
            resp.encode(&mut BytesMut::new(), v)
                .unwrap_or_else(|e| panic!("OffsetFetch v{v}: {e}"));
        }
        let mut del = OffsetDeleteRequest::default();
        del.group_id = GroupId(s("solo"));
        c.offset_delete(del, 0)
            .await
            .encode(&mut BytesMut::new(), 0)
            .expect("OffsetDelete v0");
        c.shutdown();
    });
}

#[test]
fn offset_retention_expires_offsets() {
    run(async {
        let cfg = GroupConfig {
            offsets_retention_minutes: 0,
            offsets_retention_check_interval_ms: 10,
            ..config()
        };
        let (c, log) = coordinator(cfg);
        let (a, gen) = stable_single(&c, "g", Join::new("g", "")).await; // subscribed to t1
        assert_eq!(
            commit(&c, "g", &a, gen, &[("t1", 0, 1), ("t2", 0, 2)]).await,
            vec![E::None.code(); 2]
        );
        assert_eq!(
            commit(&c, "solo", "", -1, &[("t", 0, 1)]).await,
            vec![E::None.code()]
        );
        for _ in 0..500 {
            settle().await;
            if c.group_count() == 1 && fetched(&c, "g", "t2", 0) == -1 {
                break;
            }
            heartbeat(&c, "g", &a, gen, None).await;
        }
        // The simple group lost its offsets and itself; the stable group kept
        // the offsets of the topic it subscribes to.
        assert_eq!(c.group_count(), 1);
        assert_eq!(fetched(&c, "solo", "t", 0), -1);
        assert_eq!(fetched(&c, "g", "t2", 0), -1);
        assert_eq!(fetched(&c, "g", "t1", 0), 1);
        assert!(
            log.records.borrow().iter().any(|(_, v)| v.is_none()),
            "tombstones written"
        );
        c.shutdown();
    });
}

fn txn_commit_req(
    group: &str,
    producer_id: i64,
    member: &str,
    generation: i32,
    offsets: &[(&str, i32, i64)],
) -> kafka_protocol::messages::TxnOffsetCommitRequest {
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    let mut req = kafka_protocol::messages::TxnOffsetCommitRequest::default();
    req.transactional_id = kafka_protocol::messages::TransactionalId(s("tx"));
    req.group_id = kafka_protocol::messages::GroupId(s(group));
    req.producer_id = kafka_protocol::messages::ProducerId(producer_id);
    req.producer_epoch = 0;
    req.member_id = s(member);
    req.generation_id = generation;
    for (topic, partition, offset) in offsets {
        let mut t = TxnOffsetCommitRequestTopic::default();
        t.name = kafka_protocol::messages::TopicName(s(topic));
        let mut p = TxnOffsetCommitRequestPartition::default();
        p.partition_index = *partition;
        p.committed_offset = *offset;
        p.committed_leader_epoch = -1;
        t.partitions.push(p);
        req.topics.push(t);
    }
    req
}

fn stable_fetch(c: &GroupCoordinator, group: &str, topic: &str, partition: i32) -> (i64, E) {
    let r = c.offset_fetch(group, Some(vec![(topic.to_owned(), vec![partition])]), true);
    let p = &r.topics[0].partitions[0];
    (p.committed_offset, p.error_code)
}

#[test]
fn transactional_offsets_count_at_the_commit_marker_and_vanish_at_the_abort() {
    run(async {
        let (c, log) = coordinator(config());
        let (a, gen) = stable_single(&c, "g", Join::new("g", "")).await;
        assert_eq!(commit(&c, "g", &a, gen, &[("t", 0, 5)]).await, vec![0]);
        let codes = |r: kafka_protocol::messages::TxnOffsetCommitResponse| -> Vec<i16> {
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                .collect()
        };
        // KIP-447 fencing of a stale generation or an unknown member.
        let stale = c
            .txn_offset_commit(txn_commit_req("g", 7, &a, gen + 1, &[("t", 0, 10)]), 3)
            .await;
        assert_eq!(codes(stale), vec![E::IllegalGeneration.code()]);
        let unknown = c
            .txn_offset_commit(txn_commit_req("g", 7, "who", gen, &[("t", 0, 10)]), 3)
            .await;
        assert_eq!(codes(unknown), vec![E::UnknownMemberId.code()]);
        let ok = c
            .txn_offset_commit(txn_commit_req("g", 7, &a, gen, &[("t", 0, 10)]), 3)
            .await;
        assert_eq!(codes(ok), vec![0]);
        assert_eq!(log.txn_records.borrow().len(), 1);
        // Pending: the old offset for plain fetches, unstable for stable ones.
        assert_eq!(fetched(&c, "g", "t", 0), 5);
        assert_eq!(stable_fetch(&c, "g", "t", 0).1, E::UnstableOffsetCommit);
        assert_eq!(c.complete_txn(7, true, |g| g == "other"), 0);
        assert_eq!(c.complete_txn(7, true, |g| g == "g"), 1);
        assert_eq!(stable_fetch(&c, "g", "t", 0), (10, E::None));
        // An aborted one leaves the committed offset alone.
        let ok = c
            .txn_offset_commit(txn_commit_req("g", 8, &a, gen, &[("t", 0, 20)]), 3)
            .await;
        assert_eq!(codes(ok), vec![0]);
        assert_eq!(c.complete_txn(8, false, |_| true), 1);
        assert_eq!(stable_fetch(&c, "g", "t", 0), (10, E::None));
        c.shutdown();
    })
}

#[test]
fn load_settles_transactional_offsets_by_their_markers() {
    use crate::log::replay::LogEntry;
    run(async {
        let (c, log) = coordinator(config());
        for (pid, offset) in [(1, 11), (2, 22), (3, 33)] {
            let r = c
                .txn_offset_commit(
                    txn_commit_req("solo", pid, "", -1, &[("t", pid as i32, offset)]),
                    3,
                )
                .await;
            assert_eq!(r.topics[0].partitions[0].error_code, 0);
        }
        c.shutdown();
        let mut entries: Vec<LogEntry> = log
            .txn_records
            .borrow()
            .iter()
            .map(|(pid, (key, value))| LogEntry::Record {
                key: key.clone(),
                value: value.clone(),
                txn_producer: Some(*pid),
            })
            .collect();
        entries.push(LogEntry::TxnMarker {
            producer_id: 1,
            commit: true,
        });
        entries.push(LogEntry::TxnMarker {
            producer_id: 2,
            commit: false,
        });
        let (c2, _) = coordinator(config());
        c2.load(entries);
        assert_eq!(stable_fetch(&c2, "solo", "t", 1), (11, E::None));
        assert_eq!(stable_fetch(&c2, "solo", "t", 2), (-1, E::None));
        // Producer 3's transaction is still open after the reload.
        assert_eq!(stable_fetch(&c2, "solo", "t", 3).1, E::UnstableOffsetCommit);
        assert_eq!(c2.complete_txn(3, true, |_| true), 1);
        assert_eq!(stable_fetch(&c2, "solo", "t", 3), (33, E::None));
        c2.shutdown();
    })
}
