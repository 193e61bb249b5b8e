//! Group membership with the classic protocol, as the Java consumer runs
//! it: FindCoordinator, JoinGroup (retried once with the assigned member id
//! on MEMBER_ID_REQUIRED), the leader running the chosen assignor over every
//! member's subscription, SyncGroup, Heartbeat and LeaveGroup.
//!
//! Ownership: [`GroupShared`] holds the member's state machine
//! ([`MemberState`]: Unjoined -> Rebalancing -> Stable, back to Unjoined
//! when the generation is lost) together with the member id, generation and
//! the reasons to rejoin. Three parties touch it: the application thread
//! (`poll` decides when to rejoin and runs the rebalance callbacks), the
//! join task ([`join_and_sync`], spawned so a long rebalance never blocks
//! `poll`), and the heartbeat task ([`heartbeat_loop`]), which beats every
//! `heartbeat.interval.ms` while Stable whatever the application is doing,
//! turns broker errors into state transitions (REBALANCE_IN_PROGRESS ->
//! rejoin; ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID -> generation lost;
//! FENCED_INSTANCE_ID -> fatal; NOT_COORDINATOR /
//! COORDINATOR_NOT_AVAILABLE -> rediscover) and enforces
//! `max.poll.interval.ms` by leaving the group (dynamic members only, as
//! Java does) when the application stops polling.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::Notify;

use super::assignor::{Assignor, MemberSubscription};
use super::protocol::{
    decode_assignment, decode_subscription, encode_assignment, encode_subscription,
};
use super::TopicPartition;
use crate::error::{Error, ErrorCode, Result};
use crate::net::Cluster;

/// Who commits: a group member (generation and member id), or a consumer
/// with manually assigned partitions (generation -1, no member id).
#[derive(Debug, Clone)]
pub(crate) struct GenerationInfo {
    pub generation: i32,
    pub member_id: String,
    pub instance_id: Option<String>,
}

impl GenerationInfo {
    pub fn standalone() -> Self {
        GenerationInfo {
            generation: -1,
            member_id: String::new(),
            instance_id: None,
        }
    }
}

/// Where this member stands in the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MemberState {
    /// Not in the group: never joined, left, or lost its generation.
    Unjoined,
    /// JoinGroup / SyncGroup in progress.
    Rebalancing,
    /// Holds an assignment for the current generation; heartbeats flow.
    Stable,
}

/// What moves a member from one [`MemberState`] to another. Every change of
/// state (and of the generation, member id and `lost` flag that go with it)
/// is one of these, applied by [`GroupInner::apply`].
#[derive(Debug)]
pub(crate) enum Transition {
    /// `poll` starts a JoinGroup / SyncGroup round: Unjoined or Stable ->
    /// Rebalancing; the rejoin reason and the `lost` flag are consumed.
    JoinStarted,
    /// SyncGroup handed out an assignment: Rebalancing -> Stable in
    /// `generation` as `member_id`.
    Joined { member_id: String, generation: i32 },
    /// The join round failed (or its task vanished): Rebalancing ->
    /// Unjoined; the next `poll` tries again.
    JoinFailed,
    /// The coordinator no longer knows the generation (ILLEGAL_GENERATION,
    /// UNKNOWN_MEMBER_ID, poll timeout): -> Unjoined with its partitions
    /// lost, and a rejoin requested.
    GenerationLost {
        reset_member_id: bool,
        reason: String,
    },
    /// The member left the group (LeaveGroup, or a static member stopping):
    /// -> Unjoined without a generation.
    Left { reset_member_id: bool },
    /// An error that ends the membership for good (FENCED_INSTANCE_ID):
    /// -> Unjoined, and every later `poll` reports it.
    Fatal(Error),
}

#[derive(Debug)]
pub(crate) struct GroupInner {
    /// Changed only by [`GroupInner::apply`].
    state: MemberState,
    pub member_id: String,
    pub generation: i32,
    pub protocol: Option<String>,
    /// Why the member must rejoin at the next `poll`, if it must.
    pub rejoin_reason: Option<String>,
    /// The generation was lost: owned partitions are "lost", not revoked.
    pub lost: bool,
    /// An error that ends this consumer's membership for good.
    pub fatal: Option<Error>,
    pub last_poll: Instant,
}

impl GroupInner {
    pub fn state(&self) -> MemberState {
        self.state
    }

    /// The one place the member's state changes.
    pub fn apply(&mut self, t: Transition) {
        let from = self.state;
        self.state = match t {
            Transition::JoinStarted => {
                self.rejoin_reason = None;
                self.lost = false;
                MemberState::Rebalancing
            }
            Transition::Joined {
                member_id,
                generation,
            } => {
                self.member_id = member_id;
                self.generation = generation;
                self.lost = false;
                MemberState::Stable
            }
            Transition::JoinFailed => MemberState::Unjoined,
            Transition::GenerationLost {
                reset_member_id,
                reason,
            } => {
                tracing::warn!(member = %self.member_id, generation = self.generation, %reason, "lost group generation");
                self.generation = -1;
                if reset_member_id {
                    self.member_id.clear();
                }
                self.lost = true;
                self.rejoin_reason.get_or_insert(reason);
                MemberState::Unjoined
            }
            Transition::Left { reset_member_id } => {
                self.generation = -1;
                if reset_member_id {
                    self.member_id.clear();
                }
                MemberState::Unjoined
            }
            Transition::Fatal(e) => {
                tracing::error!(error = %e, "fatal group membership error");
                self.fatal.get_or_insert(e);
                MemberState::Unjoined
            }
        };
        if from != self.state {
            tracing::debug!(member = %self.member_id, generation = self.generation, ?from, to = ?self.state, "member state");
        }
    }
}

/// The membership state shared by `poll`, the join task and the heartbeat
/// task.
pub(crate) struct GroupShared {
    inner: Mutex<GroupInner>,
    /// Wakes a `poll` waiting for records when the group needs it.
    pub wake: Arc<Notify>,
}

impl GroupShared {
    pub fn new(wake: Arc<Notify>) -> GroupShared {
        GroupShared {
            inner: Mutex::new(GroupInner {
                state: MemberState::Unjoined,
                member_id: String::new(),
                generation: -1,
                protocol: None,
                rejoin_reason: None,
                lost: false,
                fatal: None,
                last_poll: Instant::now(),
            }),
            wake,
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, GroupInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn note_poll(&self) {
        self.lock().last_poll = Instant::now();
    }

    pub fn state(&self) -> MemberState {
        self.lock().state
    }

    pub fn request_rejoin(&self, reason: impl Into<String>) {
        let reason = reason.into();
        {
            let mut g = self.lock();
            if g.rejoin_reason.is_none() {
                tracing::info!(%reason, "requesting a rebalance");
                g.rejoin_reason = Some(reason);
            }
        }
        self.wake.notify_one();
    }

    /// The generation is gone (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, poll
    /// timeout): owned partitions are lost and the member must rejoin.
    pub fn mark_lost(&self, reset_member_id: bool, reason: &str) {
        self.apply(Transition::GenerationLost {
            reset_member_id,
            reason: reason.to_string(),
        });
    }

    pub fn set_fatal(&self, e: Error) {
        self.apply(Transition::Fatal(e));
    }

    /// Applies `t` and wakes a `poll` waiting for records, which acts on it.
    pub fn apply(&self, t: Transition) {
        self.lock().apply(t);
        self.wake.notify_one();
    }

    /// Reacts to an OffsetCommit error code as the Java client does.
    pub fn on_commit_error(&self, code: ErrorCode, generation: i32) {
        let current = self.lock().generation;
        if current != generation {
            return;
        }
        match code {
            ErrorCode::RebalanceInProgress => {
                self.request_rejoin("offset commit found the group rebalancing")
            }
            ErrorCode::IllegalGeneration => {
                self.mark_lost(false, "offset commit: illegal generation")
            }
            ErrorCode::UnknownMemberId => self.mark_lost(true, "offset commit: unknown member id"),
            ErrorCode::FencedInstanceId => {
                self.set_fatal(Error::kafka(ErrorCode::FencedInstanceId))
            }
            _ => {}
        }
    }

    /// The identity to commit offsets with, if the member is Stable.
    pub fn generation_if_stable(&self, instance_id: Option<&String>) -> Option<GenerationInfo> {
        let g = self.lock();
        (g.state == MemberState::Stable).then(|| GenerationInfo {
            generation: g.generation,
            member_id: g.member_id.clone(),
            instance_id: instance_id.cloned(),
        })
    }
}

/// What the join task needs that does not change between rebalances.
pub(crate) struct GroupCtx {
    pub cluster: Arc<Cluster>,
    pub group_id: String,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub retry_backoff: Duration,
    pub assignors: Vec<Arc<dyn Assignor>>,
    pub shared: Arc<GroupShared>,
}

/// What this member puts in JoinGroup.
#[derive(Debug, Clone)]
pub(crate) struct JoinRequest {
    pub topics: Vec<String>,
    pub owned: Vec<TopicPartition>,
    pub generation: i32,
    pub reason: String,
}

/// A finished rebalance.
#[derive(Debug, Clone)]
pub(crate) struct JoinOutcome {
    pub generation: i32,
    pub member_id: String,
    pub protocol: String,
    pub leader: bool,
    pub assignment: Vec<TopicPartition>,
    /// Leader only: partition counts of every topic the group subscribes
    /// to, at assignment time (a change triggers a rebalance).
    pub partition_counts: Option<BTreeMap<String, i32>>,
}

fn ms(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl GroupCtx {
    fn coordinator_failed(&self, e: &Error, node: Option<i32>) {
        tracing::debug!(group = %self.group_id, error = %e, "coordinator request failed; rediscovering");
        self.cluster.forget_coordinator(&self.group_id);
        if let Some(n) = node {
            if matches!(e, Error::Connection { .. }) {
                self.cluster.invalidate_connection(n);
            }
        }
    }
}

/// JoinGroup then SyncGroup, retried until the member holds an assignment
/// or a fatal error occurs.
pub(crate) async fn join_and_sync(ctx: Arc<GroupCtx>, req: JoinRequest) -> Result<JoinOutcome> {
    let mut backoff = false;
    loop {
        if backoff {
            tokio::time::sleep(ctx.retry_backoff).await;
        }
        backoff = true;
        if let Some(e) = ctx.shared.lock().fatal.clone() {
            return Err(e);
        }
        let conn = match ctx.cluster.coordinator(&ctx.group_id).await {
            Ok(c) => c,
            Err(e)
                if e.is_retriable()
                    || matches!(
                        e.code(),
                        Some(ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator)
                    ) =>
            {
                ctx.coordinator_failed(&e, None);
                continue;
            }
            Err(e) => return Err(e),
        };
        let version = conn.versions().pick(ApiKey::JoinGroup)?;
        if ctx.instance_id.is_some() && version < 5 {
            return Err(Error::Unsupported(
                "static membership (group.instance.id) needs JoinGroup v5".into(),
            ));
        }
        let member_id = ctx.shared.lock().member_id.clone();
        let mut join = JoinGroupRequest::default();
        join.group_id = GroupId(s(&ctx.group_id));
        join.session_timeout_ms = ms(ctx.session_timeout);
        if version >= 1 {
            join.rebalance_timeout_ms = ms(ctx.rebalance_timeout);
        }
        join.member_id = s(&member_id);
        if version >= 5 {
            join.group_instance_id = ctx.instance_id.as_deref().map(s);
        }
        join.protocol_type = StrBytes::from_static_str("consumer");
        for a in &ctx.assignors {
            let mut p = JoinGroupRequestProtocol::default();
            p.name = StrBytes::from_static_str(a.name());
            p.metadata = encode_subscription(
                &req.topics,
                a.user_data(req.generation),
                &req.owned,
                req.generation,
                None,
            )?;
            join.protocols.push(p);
        }
        if version >= 8 {
            join.reason = Some(s(&req.reason));
        }
        tracing::debug!(group = %ctx.group_id, member = %member_id, version, "JoinGroup");
        // The coordinator holds JoinGroup until the rebalance completes, up
        // to the rebalance timeout: wait that long, as the Java client does.
        let join_timeout =
            ctx.rebalance_timeout.max(Duration::from_secs(1)) + Duration::from_secs(5);
        let resp = match conn
            .send_versioned_with_timeout(&join, version, join_timeout)
            .await
        {
            Ok(r) => r,
            Err(e @ Error::Timeout(_)) => {
                // The rebalance outlasted its timeout: join again with the
                // same member id, as Kafka expects.
                tracing::debug!(error = %e, "JoinGroup timed out; retrying");
                backoff = false;
                continue;
            }
            Err(e) if e.is_retriable() => {
                ctx.coordinator_failed(&e, Some(conn.node_id));
                continue;
            }
            Err(e) => return Err(e),
        };
        match ErrorCode::from_code(resp.error_code) {
            ErrorCode::None => {}
            ErrorCode::MemberIdRequired => {
                ctx.shared.lock().member_id = resp.member_id.to_string();
                backoff = false;
                continue;
            }
            ErrorCode::UnknownMemberId => {
                ctx.shared.lock().member_id.clear();
                backoff = false;
                continue;
            }
            code @ (ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator) => {
                ctx.coordinator_failed(&Error::kafka(code), None);
                continue;
            }
            ErrorCode::CoordinatorLoadInProgress
            | ErrorCode::RebalanceInProgress
            | ErrorCode::IllegalGeneration => continue,
            ErrorCode::FencedInstanceId => {
                let e = Error::kafka_with(
                    ErrorCode::FencedInstanceId,
                    Some(format!(
                        "group.instance.id {:?} was fenced",
                        ctx.instance_id
                    )),
                );
                ctx.shared.set_fatal(e.clone());
                return Err(e);
            }
            code if code.is_retriable() => continue,
            code => {
                return Err(Error::kafka_with(
                    code,
                    Some(format!("JoinGroup of group {}", ctx.group_id)),
                ))
            }
        }
        let member_id = resp.member_id.to_string();
        let generation = resp.generation_id;
        let protocol = resp
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .ok_or_else(|| Error::Protocol("JoinGroup answer names no protocol".into()))?;
        let leader = resp.leader.as_str() == member_id;
        {
            let mut g = ctx.shared.lock();
            g.member_id = member_id.clone();
            g.generation = generation;
            g.protocol = Some(protocol.clone());
        }
        tracing::info!(group = %ctx.group_id, %member_id, generation, %protocol, leader, "joined group");

        let mut partition_counts = None;
        let mut assignments: Vec<SyncGroupRequestAssignment> = Vec::new();
        if leader && !resp.skip_assignment {
            let assignor = ctx
                .assignors
                .iter()
                .find(|a| a.name() == protocol)
                .ok_or_else(|| {
                    Error::Protocol(format!(
                        "the group chose assignor `{protocol}`, which this member did not offer"
                    ))
                })?;
            let mut members = Vec::with_capacity(resp.members.len());
            for m in &resp.members {
                members.push(decode_subscription(
                    &m.member_id,
                    m.group_instance_id.as_ref().map(|i| i.to_string()),
                    &m.metadata,
                )?);
            }
            let counts = partition_counts_for(&ctx.cluster, &members).await?;
            let result = assignor.assign(&counts, &members);
            tracing::debug!(group = %ctx.group_id, ?result, "computed assignment");
            for (member, parts) in &result {
                let mut a = SyncGroupRequestAssignment::default();
                a.member_id = s(member);
                a.assignment = encode_assignment(parts)?;
                assignments.push(a);
            }
            partition_counts = Some(counts);
        } else if leader {
            // Static leader rejoining an unchanged group: keep the current
            // assignment, only refresh what we watch.
            let mut members = Vec::new();
            for m in &resp.members {
                if let Ok(sub) = decode_subscription(&m.member_id, None, &m.metadata) {
                    members.push(sub);
                }
            }
            partition_counts = Some(partition_counts_for(&ctx.cluster, &members).await?);
        }

        let sync_version = conn.versions().pick(ApiKey::SyncGroup)?;
        let mut sync = SyncGroupRequest::default();
        sync.group_id = GroupId(s(&ctx.group_id));
        sync.generation_id = generation;
        sync.member_id = s(&member_id);
        if sync_version >= 3 {
            sync.group_instance_id = ctx.instance_id.as_deref().map(s);
        }
        if sync_version >= 5 {
            sync.protocol_type = Some(StrBytes::from_static_str("consumer"));
            sync.protocol_name = Some(s(&protocol));
        }
        sync.assignments = assignments;
        let sresp = match conn.send_versioned(&sync, sync_version).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => {
                ctx.coordinator_failed(&e, Some(conn.node_id));
                continue;
            }
            Err(e) => return Err(e),
        };
        match ErrorCode::from_code(sresp.error_code) {
            ErrorCode::None => {}
            code @ (ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration) => {
                tracing::debug!(group = %ctx.group_id, error = %code, "SyncGroup: rejoining");
                backoff = false;
                continue;
            }
            ErrorCode::UnknownMemberId => {
                ctx.shared.lock().member_id.clear();
                backoff = false;
                continue;
            }
            code @ (ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator) => {
                ctx.coordinator_failed(&Error::kafka(code), None);
                continue;
            }
            ErrorCode::FencedInstanceId => {
                let e = Error::kafka_with(
                    ErrorCode::FencedInstanceId,
                    Some(format!(
                        "group.instance.id {:?} was fenced",
                        ctx.instance_id
                    )),
                );
                ctx.shared.set_fatal(e.clone());
                return Err(e);
            }
            code if code.is_retriable() => continue,
            code => {
                return Err(Error::kafka_with(
                    code,
                    Some(format!("SyncGroup of group {}", ctx.group_id)),
                ))
            }
        }
        let assignment = decode_assignment(&sresp.assignment)?;
        ctx.shared.lock().apply(Transition::Joined {
            member_id: member_id.clone(),
            generation,
        });
        tracing::info!(group = %ctx.group_id, %member_id, generation, partitions = assignment.len(), "received assignment");
        return Ok(JoinOutcome {
            generation,
            member_id,
            protocol,
            leader,
            assignment,
            partition_counts,
        });
    }
}

/// Partition counts of every topic in the members' subscriptions, from
/// fresh metadata.
pub(crate) async fn partition_counts_for(
    cluster: &Cluster,
    members: &[MemberSubscription],
) -> Result<BTreeMap<String, i32>> {
    let topics: BTreeSet<String> = members
        .iter()
        .flat_map(|m| m.topics.iter().cloned())
        .collect();
    let topics: Vec<String> = topics.into_iter().collect();
    if !topics.is_empty() {
        cluster.ensure_topics(&topics).await?;
        cluster.refresh_metadata(&topics).await?;
    }
    // Missing topics count 0 partitions, so their creation is noticed.
    Ok(topics
        .iter()
        .map(|t| {
            (
                t.clone(),
                cluster.topic(t).map_or(0, |i| i.partitions.len() as i32),
            )
        })
        .collect())
}

/// Beats every `heartbeat.interval.ms` while the member is Stable, and
/// leaves the group when `max.poll.interval.ms` passes without a `poll`.
pub(crate) async fn heartbeat_loop(ctx: Arc<GroupCtx>, max_poll_interval: Duration) {
    let mut tick = tokio::time::interval(ctx.heartbeat_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_ok = Instant::now();
    loop {
        tick.tick().await;
        let (state, member_id, generation, last_poll) = {
            let g = ctx.shared.lock();
            (g.state, g.member_id.clone(), g.generation, g.last_poll)
        };
        if state != MemberState::Stable {
            last_ok = Instant::now();
            continue;
        }
        if last_poll.elapsed() > max_poll_interval {
            tracing::warn!(
                group = %ctx.group_id,
                "consumer poll timeout has expired: the time between polls exceeded max.poll.interval.ms ({max_poll_interval:?}); leaving the group"
            );
            if ctx.instance_id.is_none() {
                if let Err(e) =
                    send_leave(&ctx, &member_id, "consumer poll timeout has expired").await
                {
                    tracing::debug!(error = %e, "LeaveGroup failed");
                }
            }
            ctx.shared
                .mark_lost(true, "consumer poll timeout has expired");
            continue;
        }
        if last_ok.elapsed() > ctx.session_timeout {
            // No answer for a whole session: the coordinator is probably
            // gone; find it again.
            ctx.cluster.forget_coordinator(&ctx.group_id);
        }
        let conn = match ctx.cluster.coordinator(&ctx.group_id).await {
            Ok(c) => c,
            Err(e) => {
                ctx.coordinator_failed(&e, None);
                continue;
            }
        };
        let version = match conn.versions().pick(ApiKey::Heartbeat) {
            Ok(v) => v,
            Err(e) => {
                ctx.shared.set_fatal(e);
                return;
            }
        };
        let mut hb = HeartbeatRequest::default();
        hb.group_id = GroupId(s(&ctx.group_id));
        hb.generation_id = generation;
        hb.member_id = s(&member_id);
        if version >= 3 {
            hb.group_instance_id = ctx.instance_id.as_deref().map(s);
        }
        let resp = match conn.send_versioned(&hb, version).await {
            Ok(r) => r,
            Err(e) => {
                ctx.coordinator_failed(&e, Some(conn.node_id));
                continue;
            }
        };
        // Ignore answers about a generation we already left behind.
        {
            let g = ctx.shared.lock();
            if g.generation != generation
                || g.member_id != member_id
                || g.state != MemberState::Stable
            {
                continue;
            }
        }
        match ErrorCode::from_code(resp.error_code) {
            ErrorCode::None => last_ok = Instant::now(),
            ErrorCode::RebalanceInProgress => {
                last_ok = Instant::now();
                ctx.shared.request_rejoin("the group is rebalancing");
            }
            ErrorCode::IllegalGeneration => {
                ctx.shared.mark_lost(false, "heartbeat: illegal generation")
            }
            ErrorCode::UnknownMemberId => {
                ctx.shared.mark_lost(true, "heartbeat: unknown member id")
            }
            ErrorCode::FencedInstanceId => {
                ctx.shared.set_fatal(Error::kafka_with(
                    ErrorCode::FencedInstanceId,
                    Some(format!(
                        "group.instance.id {:?} was fenced",
                        ctx.instance_id
                    )),
                ));
                return;
            }
            code @ (ErrorCode::CoordinatorNotAvailable | ErrorCode::NotCoordinator) => {
                ctx.coordinator_failed(&Error::kafka(code), None)
            }
            code => {
                tracing::warn!(group = %ctx.group_id, error = %code, "heartbeat failed")
            }
        }
    }
}

async fn send_leave(ctx: &GroupCtx, member_id: &str, reason: &str) -> Result<()> {
    if member_id.is_empty() {
        return Ok(());
    }
    let conn = ctx.cluster.coordinator(&ctx.group_id).await?;
    let version = conn.versions().pick(ApiKey::LeaveGroup)?;
    let mut req = LeaveGroupRequest::default();
    req.group_id = GroupId(s(&ctx.group_id));
    if version >= 3 {
        let mut m = MemberIdentity::default();
        m.member_id = s(member_id);
        m.group_instance_id = ctx.instance_id.as_deref().map(s);
        if version >= 5 {
            m.reason = Some(s(reason));
        }
        req.members = vec![m];
    } else {
        req.member_id = s(member_id);
    }
    let resp = conn.send_versioned(&req, version).await?;
    let code = if resp.error_code != ErrorCode::None.code() {
        resp.error_code
    } else {
        resp.members
            .iter()
            .map(|m| m.error_code)
            .find(|c| *c != ErrorCode::None.code())
            .unwrap_or(ErrorCode::None.code())
    };
    match ErrorCode::from_code(code) {
        ErrorCode::None | ErrorCode::UnknownMemberId => Ok(()),
        c => Err(Error::kafka_with(c, Some("LeaveGroup".into()))),
    }
}

/// Leaves the group (LeaveGroup for dynamic members; static members just
/// stop, as Java does on close) and resets the member's state.
pub(crate) async fn leave_group(ctx: &GroupCtx, reason: &str) -> Result<()> {
    let member_id = ctx.shared.lock().member_id.clone();
    let result = if ctx.instance_id.is_none() {
        tracing::info!(group = %ctx.group_id, %member_id, %reason, "leaving group");
        send_leave(ctx, &member_id, reason).await
    } else {
        Ok(())
    };
    ctx.shared.lock().apply(Transition::Left {
        reset_member_id: ctx.instance_id.is_none(),
    });
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_state_transitions() {
        let g = GroupShared::new(Arc::new(Notify::new()));
        {
            let mut s = g.lock();
            s.state = MemberState::Stable;
            s.member_id = "m-1".into();
            s.generation = 4;
        }
        assert_eq!(g.generation_if_stable(None).map(|w| w.generation), Some(4));
        // A commit error about an older generation changes nothing.
        g.on_commit_error(ErrorCode::IllegalGeneration, 3);
        assert_eq!(g.state(), MemberState::Stable);
        g.on_commit_error(ErrorCode::RebalanceInProgress, 4);
        assert_eq!(g.state(), MemberState::Stable);
        assert!(g.lock().rejoin_reason.is_some());
        g.on_commit_error(ErrorCode::IllegalGeneration, 4);
        {
            let s = g.lock();
            assert_eq!(
                (s.state, s.generation, s.lost, s.member_id.as_str()),
                (MemberState::Unjoined, -1, true, "m-1")
            );
        }
        assert!(g.generation_if_stable(None).is_none());
        g.lock().generation = 5;
        g.on_commit_error(ErrorCode::UnknownMemberId, 5);
        assert!(g.lock().member_id.is_empty());
        g.on_commit_error(ErrorCode::FencedInstanceId, -1);
        assert!(g.lock().fatal.is_some());
    }

    #[test]
    fn transitions_are_the_one_way_state_changes() {
        let g = GroupShared::new(Arc::new(Notify::new()));
        let mut s = g.lock();
        s.rejoin_reason = Some("first join".into());
        s.apply(Transition::JoinStarted);
        assert_eq!(s.state(), MemberState::Rebalancing);
        assert!(s.rejoin_reason.is_none());
        s.apply(Transition::Joined {
            member_id: "m-1".into(),
            generation: 7,
        });
        assert_eq!(
            (s.state(), s.generation, s.member_id.as_str(), s.lost),
            (MemberState::Stable, 7, "m-1", false)
        );
        s.apply(Transition::JoinStarted);
        s.apply(Transition::JoinFailed);
        assert_eq!((s.state(), s.generation), (MemberState::Unjoined, 7));
        s.apply(Transition::Left {
            reset_member_id: false,
        });
        assert_eq!(
            (s.state(), s.generation, s.member_id.as_str()),
            (MemberState::Unjoined, -1, "m-1")
        );
        s.apply(Transition::Left {
            reset_member_id: true,
        });
        assert!(s.member_id.is_empty());
        s.apply(Transition::Fatal(Error::kafka(ErrorCode::FencedInstanceId)));
        s.apply(Transition::Fatal(Error::Closed));
        assert!(matches!(
            s.fatal,
            Some(Error::Kafka {
                code: ErrorCode::FencedInstanceId,
                ..
            })
        ));
    }
}
