//! Group membership, as Kafka's GroupCoordinator runs it: JoinGroup (new,
//! pending, known and static members, MEMBER_ID_REQUIRED, protocol checks,
//! group.max.size, the initial rebalance delay), the join phase ending when
//! everyone rejoined or the rebalance timeout passed, SyncGroup (leader's
//! assignment persisted before anyone is answered), Heartbeat, LeaveGroup,
//! and the timer checks: session expiry, join-phase and pending-sync
//! deadlines, expiry of member ids handed out with MEMBER_ID_REQUIRED.
//!
//! Each request is split into a synchronous step that changes state (and may
//! park a oneshot sender in the member) and an async tail that awaits the log
//! or the sender; no RefCell borrow crosses an await.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::channel::oneshot;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

use super::error::{code, map_group_store_error, GroupError};
use super::state::{Group, GroupState, InitialDelay, JoinOutcome, JoinPhase, Member, SyncOutcome};
use super::{GroupCoordinator, NEW_MEMBER_JOIN_TIMEOUT};

pub(super) fn ms(v: i32) -> Duration {
    Duration::from_millis(v.max(0) as u64)
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

/// `<prefix>-<random UUID>`, as Kafka names members.
fn new_member_id(prefix: &str) -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{prefix}-{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A JoinGroup request, normalised across versions.
struct JoinParams<'a> {
    group_id: &'a str,
    member_id: &'a str,
    instance_id: Option<&'a str>,
    client_id: &'a str,
    client_host: &'a str,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: &'a str,
    protocols: Vec<(String, Bytes)>,
    version: i16,
}

enum JoinStep {
    Done(JoinOutcome),
    Wait(oneshot::Receiver<JoinOutcome>),
    /// A static member replaced its old member id while the group is Stable:
    /// persist the group, then answer without a rebalance.
    PersistStatic(StaticRejoin),
}

struct StaticRejoin {
    rx: oneshot::Receiver<JoinOutcome>,
    records: Vec<(Bytes, Option<Bytes>)>,
    group_id: String,
    incarnation: u64,
    instance_id: String,
    old_id: String,
    new_id: String,
    old_protocols: Vec<(String, Bytes)>,
    old_rebalance_timeout_ms: i32,
    old_session_timeout_ms: i32,
    leader_before: Option<String>,
    supports_skip_assignment: bool,
}

enum SyncStep {
    Done(SyncOutcome),
    Wait(oneshot::Receiver<SyncOutcome>),
    /// The leader's assignment: persist it, then distribute it.
    LeaderPersist {
        rx: oneshot::Receiver<SyncOutcome>,
        records: Vec<(Bytes, Option<Bytes>)>,
        group_id: String,
        incarnation: u64,
        generation: i32,
        assignment: HashMap<String, Bytes>,
    },
}

fn join_response(o: JoinOutcome, version: i16) -> JoinGroupResponse {
    let mut r = JoinGroupResponse::default();
    r.error_code = o.error.code();
    r.generation_id = o.generation;
    if version >= 7 {
        r.protocol_type = o.protocol_type.map(s);
        r.protocol_name = o.protocol_name.map(s);
    } else {
        r.protocol_name = Some(s(o.protocol_name.unwrap_or_default()));
    }
    r.leader = s(o.leader);
    if version >= 9 {
        r.skip_assignment = o.skip_assignment;
    }
    r.member_id = s(o.member_id);
    r.members = o
        .members
        .into_iter()
        .map(|(id, instance, metadata)| {
            let mut m = JoinGroupResponseMember::default();
            m.member_id = s(id);
            m.group_instance_id = if version >= 5 { instance.map(s) } else { None };
            m.metadata = metadata;
            m
        })
        .collect();
    r
}

fn sync_response(o: SyncOutcome, version: i16) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = o.error.code();
    if version >= 5 {
        r.protocol_type = o.protocol_type.map(s);
        r.protocol_name = o.protocol_name.map(s);
    }
    r.assignment = o.assignment;
    r
}

impl GroupCoordinator {
    // ------------------------------------------------------------ JoinGroup

    /// JoinGroup (v0-v9).
    pub async fn join_group(
        self: &Rc<Self>,
        req: JoinGroupRequest,
        version: i16,
        client_id: &str,
        client_host: &str,
    ) -> JoinGroupResponse {
        self.ensure_timer_task();
        let params = JoinParams {
            group_id: req.group_id.as_str(),
            member_id: req.member_id.as_str(),
            instance_id: if version >= 5 {
                req.group_instance_id.as_deref()
            } else {
                None
            },
            client_id,
            client_host,
            session_timeout_ms: req.session_timeout_ms,
            // v0 has no rebalance timeout: Kafka uses the session timeout.
            rebalance_timeout_ms: if version == 0 {
                req.session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            protocol_type: req.protocol_type.as_str(),
            protocols: req
                .protocols
                .iter()
                .map(|p| (p.name.to_string(), p.metadata.clone()))
                .collect(),
            version,
        };
        let outcome = match self.join_step(&params) {
            JoinStep::Done(o) => o,
            JoinStep::Wait(rx) => self.wait_join(rx, params.member_id).await,
            JoinStep::PersistStatic(mut p) => {
                let records = std::mem::take(&mut p.records);
                let result = self.log.append(records).await;
                let rx = self.finish_static_rejoin(p, result);
                self.wait_join(rx, params.member_id).await
            }
        };
        join_response(outcome, version)
    }

    async fn wait_join(&self, rx: oneshot::Receiver<JoinOutcome>, member_id: &str) -> JoinOutcome {
        match rx.await {
            Ok(o) => o,
            // The member was dropped without an answer (removed, or replaced
            // by a newer JoinGroup of the same member).
            Err(_) if self.is_shut_down() => {
                JoinOutcome::error(member_id, code(GroupError::NotCoordinator))
            }
            Err(_) => JoinOutcome::error("", code(GroupError::UnknownMemberId)),
        }
    }

    fn join_step(&self, p: &JoinParams<'_>) -> JoinStep {
        let err = |e: GroupError| JoinStep::Done(JoinOutcome::error(p.member_id, code(e)));
        if self.is_shut_down() {
            return err(GroupError::NotCoordinator);
        }
        if p.group_id.is_empty() {
            return err(GroupError::InvalidGroupId);
        }
        if p.session_timeout_ms < self.config.group_min_session_timeout_ms
            || p.session_timeout_ms > self.config.group_max_session_timeout_ms
        {
            return err(GroupError::InvalidSessionTimeout);
        }
        let now_ms = now_ms();
        let unknown = p.member_id.is_empty();
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(p.group_id) {
            if !unknown {
                return err(GroupError::UnknownMemberId);
            }
            let group = Group::new(p.group_id, self.new_incarnation(), now_ms);
            groups.insert(p.group_id.to_owned(), group);
        }
        let Some(group) = groups.get_mut(p.group_id) else {
            return err(GroupError::UnknownMemberId);
        };
        let step = if !self.accept_joining_member(group, p.member_id) {
            group.remove_member(p.member_id);
            JoinStep::Done(JoinOutcome::error(
                "",
                code(GroupError::GroupMaxSizeReached),
            ))
        } else if unknown {
            self.new_member_join(group, p, now_ms)
        } else {
            self.current_member_join(group, p, now_ms)
        };
        if group.state().is_preparing() {
            self.try_complete_join(group, now_ms);
        }
        step
    }

    /// Kafka's acceptJoiningMember (group.max.size).
    fn accept_joining_member(&self, group: &Group, member_id: &str) -> bool {
        let max = self.config.group_max_size.max(0) as usize;
        match group.state() {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance(_) => {
                group
                    .members
                    .get(member_id)
                    .is_some_and(|m| m.awaiting_join.is_some())
                    || group
                        .members
                        .values()
                        .filter(|m| m.awaiting_join.is_some())
                        .count()
                        < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                group.members.contains_key(member_id) || group.members.len() < max
            }
        }
    }

    fn new_member_join(&self, group: &mut Group, p: &JoinParams<'_>, now_ms: i64) -> JoinStep {
        let err = |e: GroupError| JoinStep::Done(JoinOutcome::error(p.member_id, code(e)));
        if group.is(&GroupState::Dead) {
            return err(GroupError::CoordinatorNotAvailable);
        }
        if !group.supports_protocols(p.protocol_type, &p.protocols) {
            return err(GroupError::InconsistentGroupProtocol);
        }
        let new_id = new_member_id(p.instance_id.unwrap_or(p.client_id));
        match p.instance_id {
            Some(instance) => match group.static_members.get(instance).cloned() {
                Some(old_id) => self.update_static_member_and_rebalance(
                    group, p, instance, &old_id, new_id, now_ms,
                ),
                None => self.add_member_and_rebalance(group, p, new_id, now_ms),
            },
            None if p.version >= 4 => {
                let deadline = Instant::now() + ms(p.session_timeout_ms);
                group.pending_members.insert(new_id.clone(), deadline);
                self.arm(group, deadline);
                JoinStep::Done(JoinOutcome::error(
                    &new_id,
                    code(GroupError::MemberIdRequired),
                ))
            }
            None => self.add_member_and_rebalance(group, p, new_id, now_ms),
        }
    }

    fn current_member_join(&self, group: &mut Group, p: &JoinParams<'_>, now_ms: i64) -> JoinStep {
        let err = |e: GroupError| JoinStep::Done(JoinOutcome::error(p.member_id, code(e)));
        let member_id = p.member_id;
        if group.is(&GroupState::Dead) {
            return err(GroupError::CoordinatorNotAvailable);
        }
        if !group.supports_protocols(p.protocol_type, &p.protocols) {
            return err(GroupError::InconsistentGroupProtocol);
        }
        if group.pending_members.contains_key(member_id) {
            // A member id we handed out with MEMBER_ID_REQUIRED; never static.
            if p.instance_id.is_some() {
                return err(GroupError::UnknownMemberId);
            }
            return self.add_member_and_rebalance(group, p, member_id.to_owned(), now_ms);
        }
        if group.is_static_member_fenced(p.instance_id, member_id) {
            return err(GroupError::FencedInstanceId);
        }
        let instance_unknown = p
            .instance_id
            .is_some_and(|i| !group.static_members.contains_key(i));
        let Some(member) = group.members.get(member_id) else {
            return err(GroupError::UnknownMemberId);
        };
        if instance_unknown {
            return err(GroupError::UnknownMemberId);
        }
        let same_metadata = member.matches(&p.protocols);
        match group.state() {
            GroupState::PreparingRebalance(_) => self.update_member_and_rebalance(group, p, now_ms),
            GroupState::CompletingRebalance => {
                if same_metadata {
                    // It probably missed the JoinGroup response: repeat it.
                    let with_members = group.is_leader(member_id);
                    JoinStep::Done(current_generation(group, member_id, with_members))
                } else {
                    self.update_member_and_rebalance(group, p, now_ms)
                }
            }
            GroupState::Stable => {
                if group.is_leader(member_id) || !same_metadata {
                    // The leader rejoining forces a rebalance (it may have
                    // seen metadata changes); so does changed metadata.
                    self.update_member_and_rebalance(group, p, now_ms)
                } else {
                    // A follower with unchanged metadata: current generation,
                    // no rebalance; it proceeds to SyncGroup.
                    JoinStep::Done(current_generation(group, member_id, false))
                }
            }
            GroupState::Empty | GroupState::Dead => err(GroupError::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(
        &self,
        group: &mut Group,
        p: &JoinParams<'_>,
        member_id: String,
        now_ms: i64,
    ) -> JoinStep {
        let (tx, rx) = oneshot::channel();
        if group.state().is_preparing() && group.generation == 0 {
            group.new_member_added = true;
        }
        // New members cannot heartbeat yet; they get a long join timeout instead.
        let deadline = Instant::now() + NEW_MEMBER_JOIN_TIMEOUT;
        group.add_member(Member {
            id: member_id.clone(),
            instance_id: p.instance_id.map(str::to_owned),
            client_id: p.client_id.to_owned(),
            client_host: p.client_host.to_owned(),
            rebalance_timeout_ms: p.rebalance_timeout_ms,
            session_timeout_ms: p.session_timeout_ms,
            protocol_type: p.protocol_type.to_owned(),
            protocols: p.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            is_new: true,
            deadline,
        });
        self.arm(group, deadline);
        tracing::info!(group = %group.id, member = %member_id, "new member joins");
        self.maybe_prepare_rebalance(group, now_ms, "adding new member");
        JoinStep::Wait(rx)
    }

    fn update_member_and_rebalance(
        &self,
        group: &mut Group,
        p: &JoinParams<'_>,
        now_ms: i64,
    ) -> JoinStep {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = group.members.get_mut(p.member_id) {
            m.protocols = p.protocols.clone();
            m.rebalance_timeout_ms = p.rebalance_timeout_ms;
            m.session_timeout_ms = p.session_timeout_ms;
            m.awaiting_join = Some(tx);
        }
        self.maybe_prepare_rebalance(group, now_ms, "member rejoins");
        JoinStep::Wait(rx)
    }

    fn update_static_member_and_rebalance(
        &self,
        group: &mut Group,
        p: &JoinParams<'_>,
        instance_id: &str,
        old_id: &str,
        new_id: String,
        now_ms: i64,
    ) -> JoinStep {
        let leader_before = group.leader.clone();
        if !group.replace_static_member(instance_id, old_id, &new_id) {
            return JoinStep::Done(JoinOutcome::error(
                p.member_id,
                code(GroupError::UnknownMemberId),
            ));
        }
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + ms(p.session_timeout_ms);
        let Some(member) = group.members.get_mut(&new_id) else {
            return JoinStep::Done(JoinOutcome::error(
                p.member_id,
                code(GroupError::UnknownMemberId),
            ));
        };
        let old_protocols = std::mem::replace(&mut member.protocols, p.protocols.clone());
        let old_rebalance_timeout_ms =
            std::mem::replace(&mut member.rebalance_timeout_ms, p.rebalance_timeout_ms);
        let old_session_timeout_ms =
            std::mem::replace(&mut member.session_timeout_ms, p.session_timeout_ms);
        member.awaiting_join = Some(tx);
        member.deadline = deadline;
        self.arm(group, deadline);
        tracing::info!(group = %group.id, instance = instance_id, old = old_id, new = %new_id, "static member rejoins");
        match group.state() {
            GroupState::Stable => {
                if group.select_protocol() == group.protocol_name {
                    // Same selected protocol: keep the assignment, persist the
                    // new member id, no rebalance.
                    let records = vec![group.metadata_record(&|m| m.assignment.clone())];
                    JoinStep::PersistStatic(StaticRejoin {
                        rx,
                        records,
                        group_id: group.id.clone(),
                        incarnation: group.incarnation,
                        instance_id: instance_id.to_owned(),
                        old_id: old_id.to_owned(),
                        new_id,
                        old_protocols,
                        old_rebalance_timeout_ms,
                        old_session_timeout_ms,
                        leader_before,
                        supports_skip_assignment: p.version >= 9,
                    })
                } else {
                    self.maybe_prepare_rebalance(group, now_ms, "static member changed protocols");
                    JoinStep::Wait(rx)
                }
            }
            // Its old member id may already be in the leader's assignment.
            GroupState::CompletingRebalance => {
                self.prepare_rebalance(
                    group,
                    now_ms,
                    "static member rejoins during CompletingRebalance",
                );
                JoinStep::Wait(rx)
            }
            GroupState::PreparingRebalance(_) => JoinStep::Wait(rx),
            GroupState::Empty | GroupState::Dead => {
                tracing::error!(group = %group.id, "static member found in a group without members");
                if let Some(m) = group.members.get_mut(&new_id) {
                    m.awaiting_join = None;
                }
                JoinStep::Done(JoinOutcome::error(
                    p.member_id,
                    code(GroupError::UnknownMemberId),
                ))
            }
        }
    }

    /// After persisting a static member's new id: answer it, or undo the
    /// replacement if the write failed.
    fn finish_static_rejoin(
        &self,
        p: StaticRejoin,
        result: Result<(), ErrorCode>,
    ) -> oneshot::Receiver<JoinOutcome> {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups
            .get_mut(&p.group_id)
            .filter(|g| g.incarnation == p.incarnation)
        else {
            return p.rx;
        };
        // If a rebalance started meanwhile, the member takes part in it and
        // that rebalance answers it.
        if !group.is(&GroupState::Stable) {
            return p.rx;
        }
        let Some(member) = group.members.get_mut(&p.new_id) else {
            return p.rx;
        };
        let Some(tx) = member.awaiting_join.take() else {
            return p.rx;
        };
        match result {
            Err(log_code) => {
                tracing::warn!(group = %group.id, error = %log_code, "failed to persist static member's new id");
                member.protocols = p.old_protocols;
                member.rebalance_timeout_ms = p.old_rebalance_timeout_ms;
                member.session_timeout_ms = p.old_session_timeout_ms;
                let deadline = Instant::now() + ms(member.session_timeout_ms);
                member.deadline = deadline;
                group.replace_static_member(&p.instance_id, &p.new_id, &p.old_id);
                self.arm(group, deadline);
                let _ = tx.send(JoinOutcome {
                    error: code(map_group_store_error(log_code)),
                    member_id: String::new(),
                    generation: group.generation,
                    protocol_type: group.protocol_type.clone(),
                    protocol_name: group.protocol_name.clone(),
                    leader: p.leader_before.unwrap_or_default(),
                    skip_assignment: false,
                    members: Vec::new(),
                });
            }
            Ok(()) => {
                let is_leader = group.is_leader(&p.new_id);
                let outcome = if p.supports_skip_assignment {
                    // v9+: the leader learns it leads but skips the assignor.
                    JoinOutcome {
                        error: ErrorCode::None,
                        member_id: p.new_id.clone(),
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        leader: group.leader.clone().unwrap_or_default(),
                        skip_assignment: is_leader,
                        members: if is_leader {
                            group.member_metadata_for_leader()
                        } else {
                            Vec::new()
                        },
                    }
                } else {
                    // Before v9: report the old leader id so a static leader
                    // does not run a pointless assignment.
                    JoinOutcome {
                        error: ErrorCode::None,
                        member_id: p.new_id.clone(),
                        generation: group.generation,
                        protocol_type: group.protocol_type.clone(),
                        protocol_name: group.protocol_name.clone(),
                        leader: p.leader_before.unwrap_or_default(),
                        skip_assignment: false,
                        members: Vec::new(),
                    }
                };
                let _ = tx.send(outcome);
            }
        }
        p.rx
    }

    // ------------------------------------------------------------ rebalance

    pub(super) fn maybe_prepare_rebalance(&self, group: &mut Group, now_ms: i64, reason: &str) {
        if matches!(
            group.state(),
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        ) {
            self.prepare_rebalance(group, now_ms, reason);
        }
    }

    fn prepare_rebalance(&self, group: &mut Group, now_ms: i64, reason: &str) {
        if group.is(&GroupState::CompletingRebalance) {
            reset_and_propagate_assignment_error(group, code(GroupError::RebalanceInProgress));
        }
        group.sync_deadline = None;
        let now = Instant::now();
        let rebalance_timeout = group.rebalance_timeout_ms().max(0) as u64;
        let delay = self.config.group_initial_rebalance_delay_ms.max(0) as u64;
        let phase = if group.is(&GroupState::Empty) && delay > 0 {
            JoinPhase {
                deadline: now + Duration::from_millis(delay),
                initial: Some(InitialDelay {
                    delay_ms: delay,
                    remaining_ms: rebalance_timeout.saturating_sub(delay),
                }),
            }
        } else {
            JoinPhase {
                deadline: now + Duration::from_millis(rebalance_timeout),
                initial: None,
            }
        };
        if group
            .transition(GroupState::PreparingRebalance(phase), now_ms)
            .is_err()
        {
            return;
        }
        self.rebalances.set(self.rebalances.get() + 1);
        tracing::info!(group = %group.id, generation = group.generation, reason, "preparing to rebalance");
        self.arm(group, phase.deadline);
        if phase.initial.is_none() {
            self.try_complete_join(group, now_ms);
        }
    }

    /// Ends the join phase early when every member has rejoined.
    pub(super) fn try_complete_join(&self, group: &mut Group, now_ms: i64) {
        if let GroupState::PreparingRebalance(phase) = group.state() {
            if phase.initial.is_none() && group.all_members_joined() {
                self.complete_join(group, now_ms);
            }
        }
    }

    /// Kafka's onCompleteJoin.
    fn complete_join(&self, group: &mut Group, now_ms: i64) {
        let not_rejoined: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && m.instance_id.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in &not_rejoined {
            tracing::info!(group = %group.id, member = %id, "removing member that did not rejoin");
            group.remove_member(id);
        }
        if group.is(&GroupState::Dead) {
            return;
        }
        let now = Instant::now();
        if !group.elect_joined_leader() && !group.members.is_empty() {
            // Only static members that have not rejoined are left: wait for
            // them (or their session expiry) another rebalance timeout.
            let deadline = now + ms(group.rebalance_timeout_ms());
            if group
                .extend_join_phase(JoinPhase {
                    deadline,
                    initial: None,
                })
                .is_ok()
            {
                self.arm(group, deadline);
            }
            return;
        }
        group.generation = group.generation.wrapping_add(1);
        if group.members.is_empty() {
            group.protocol_name = None;
            group.subscribed_topics = group.compute_subscribed_topics();
            if group.transition(GroupState::Empty, now_ms).is_err() {
                return;
            }
        } else {
            let leader_first = group
                .leader
                .as_ref()
                .and_then(|l| group.members.get(l))
                .and_then(|m| m.protocols.first())
                .map(|(n, _)| n.clone());
            group.protocol_name = group.select_protocol().or(leader_first);
            group.subscribed_topics = group.compute_subscribed_topics();
            if group
                .transition(GroupState::CompletingRebalance, now_ms)
                .is_err()
            {
                return;
            }
        }
        group.pending_sync.clear();
        if group.members.is_empty() {
            tracing::info!(group = %group.id, generation = group.generation, "group is now empty");
            let record = group.metadata_record(&|_| Bytes::new());
            self.append_detached(vec![record], "empty group metadata");
            return;
        }
        tracing::info!(group = %group.id, generation = group.generation, members = group.members.len(), "join phase complete");
        let leader = group.leader.clone().unwrap_or_default();
        let leader_view = group.member_metadata_for_leader();
        let generation = group.generation;
        let protocol_type = group.protocol_type.clone();
        let protocol_name = group.protocol_name.clone();
        let mut pending = Vec::with_capacity(group.members.len());
        for m in group.members.values_mut() {
            let outcome = JoinOutcome {
                error: ErrorCode::None,
                member_id: m.id.clone(),
                generation,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                leader: leader.clone(),
                skip_assignment: false,
                members: if m.id == leader {
                    leader_view.clone()
                } else {
                    Vec::new()
                },
            };
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(outcome);
            }
            m.deadline = now + ms(m.session_timeout_ms);
            m.is_new = false;
            pending.push(m.id.clone());
        }
        group.pending_sync.extend(pending);
        let sync_deadline = now + ms(group.rebalance_timeout_ms());
        group.sync_deadline = Some(sync_deadline);
        if let Some(next) = group.next_deadline() {
            self.arm(group, next);
        }
    }

    /// Removes a member, answering its waiting JoinGroup, and lets the group
    /// react (Kafka's removeMemberAndUpdateGroup).
    pub(super) fn remove_member_and_update(
        &self,
        group: &mut Group,
        member_id: &str,
        now_ms: i64,
        reason: &str,
    ) {
        if let Some(tx) = group
            .members
            .get_mut(member_id)
            .and_then(|m| m.awaiting_join.take())
        {
            let _ = tx.send(JoinOutcome::error("", code(GroupError::UnknownMemberId)));
        }
        group.remove_member(member_id);
        tracing::info!(group = %group.id, member = member_id, reason, "member removed");
        match group.state() {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(group, now_ms, reason)
            }
            GroupState::PreparingRebalance(_) => self.try_complete_join(group, now_ms),
        }
    }

    // ------------------------------------------------------------ SyncGroup

    /// SyncGroup (v0-v5).
    pub async fn sync_group(
        self: &Rc<Self>,
        req: SyncGroupRequest,
        version: i16,
    ) -> SyncGroupResponse {
        self.ensure_timer_task();
        let outcome = match self.sync_step(&req, version) {
            SyncStep::Done(o) => o,
            SyncStep::Wait(rx) => self.wait_sync(rx).await,
            SyncStep::LeaderPersist {
                rx,
                records,
                group_id,
                incarnation,
                generation,
                assignment,
            } => {
                let result = self.log.append(records).await;
                self.finish_leader_sync(&group_id, incarnation, generation, assignment, result);
                self.wait_sync(rx).await
            }
        };
        sync_response(outcome, version)
    }

    async fn wait_sync(&self, rx: oneshot::Receiver<SyncOutcome>) -> SyncOutcome {
        match rx.await {
            Ok(o) => o,
            Err(_) if self.is_shut_down() => SyncOutcome::error(code(GroupError::NotCoordinator)),
            Err(_) => SyncOutcome::error(code(GroupError::UnknownMemberId)),
        }
    }

    fn sync_step(&self, req: &SyncGroupRequest, version: i16) -> SyncStep {
        let err = |e: GroupError| SyncStep::Done(SyncOutcome::error(code(e)));
        if self.is_shut_down() {
            return err(GroupError::NotCoordinator);
        }
        let group_id = req.group_id.as_str();
        if group_id.is_empty() {
            return err(GroupError::InvalidGroupId);
        }
        let member_id = req.member_id.as_str();
        let instance_id = if version >= 3 {
            req.group_instance_id.as_deref()
        } else {
            None
        };
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return err(GroupError::UnknownMemberId);
        };
        if group.is(&GroupState::Dead) {
            return err(GroupError::CoordinatorNotAvailable);
        }
        if group.is_static_member_fenced(instance_id, member_id) {
            return err(GroupError::FencedInstanceId);
        }
        if !group.members.contains_key(member_id) {
            return err(GroupError::UnknownMemberId);
        }
        if req.generation_id != group.generation {
            return err(GroupError::IllegalGeneration);
        }
        if let Some(t) = req.protocol_type.as_deref() {
            if group.protocol_type.as_deref() != Some(t) {
                return err(GroupError::InconsistentGroupProtocol);
            }
        }
        if let Some(n) = req.protocol_name.as_deref() {
            if group.protocol_name.as_deref() != Some(n) {
                return err(GroupError::InconsistentGroupProtocol);
            }
        }
        match group.state() {
            GroupState::Empty => err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance(_) => err(GroupError::RebalanceInProgress),
            GroupState::Dead => err(GroupError::CoordinatorNotAvailable),
            GroupState::Stable => {
                mark_synced(group, member_id);
                let now = Instant::now();
                let protocol_type = group.protocol_type.clone();
                let protocol_name = group.protocol_name.clone();
                let Some(m) = group.members.get_mut(member_id) else {
                    return err(GroupError::UnknownMemberId);
                };
                m.deadline = now + ms(m.session_timeout_ms);
                SyncStep::Done(SyncOutcome {
                    error: ErrorCode::None,
                    protocol_type,
                    protocol_name,
                    assignment: m.assignment.clone(),
                })
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = group.members.get_mut(member_id) {
                    m.awaiting_sync = Some(tx);
                }
                mark_synced(group, member_id);
                if !group.is_leader(member_id) {
                    return SyncStep::Wait(rx);
                }
                let mut assignment: HashMap<String, Bytes> = req
                    .assignments
                    .iter()
                    .map(|a| (a.member_id.to_string(), a.assignment.clone()))
                    .collect();
                for id in group.members.keys() {
                    if !assignment.contains_key(id) {
                        tracing::warn!(group = %group.id, member = %id, "leader sent no assignment for member; using empty");
                        assignment.insert(id.clone(), Bytes::new());
                    }
                }
                tracing::info!(group = %group.id, generation = group.generation, "assignment received from leader");
                let records =
                    vec![group
                        .metadata_record(&|m| assignment.get(&m.id).cloned().unwrap_or_default())];
                SyncStep::LeaderPersist {
                    rx,
                    records,
                    group_id: group.id.clone(),
                    incarnation: group.incarnation,
                    generation: group.generation,
                    assignment,
                }
            }
        }
    }

    fn finish_leader_sync(
        &self,
        group_id: &str,
        incarnation: u64,
        generation: i32,
        assignment: HashMap<String, Bytes>,
        result: Result<(), ErrorCode>,
    ) {
        let now_ms = now_ms();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups
            .get_mut(group_id)
            .filter(|g| g.incarnation == incarnation)
        else {
            return;
        };
        // A member may have joined while we were writing: then a new
        // rebalance already answered everyone.
        if !(group.is(&GroupState::CompletingRebalance) && group.generation == generation) {
            return;
        }
        match result {
            Err(log_code) => {
                tracing::warn!(group = %group.id, error = %log_code, "failed to persist group assignment");
                reset_and_propagate_assignment_error(group, code(map_group_store_error(log_code)));
                self.maybe_prepare_rebalance(group, now_ms, "error storing group assignment");
            }
            Ok(()) => {
                set_and_propagate_assignment(group, &assignment);
                if group.transition(GroupState::Stable, now_ms).is_err() {
                    return;
                }
                tracing::info!(group = %group.id, generation, "group stable");
            }
        }
    }

    // ------------------------------------------------------------ Heartbeat

    /// Heartbeat (v0-v4).
    pub async fn heartbeat(
        self: &Rc<Self>,
        req: HeartbeatRequest,
        version: i16,
    ) -> HeartbeatResponse {
        self.ensure_timer_task();
        let instance_id = if version >= 3 {
            req.group_instance_id.as_deref()
        } else {
            None
        };
        let error = match self.heartbeat_step(
            req.group_id.as_str(),
            req.member_id.as_str(),
            instance_id,
            req.generation_id,
        ) {
            Ok(()) => ErrorCode::None,
            Err(e) => code(e),
        };
        let mut r = HeartbeatResponse::default();
        r.error_code = error.code();
        r
    }

    fn heartbeat_step(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), GroupError> {
        if self.is_shut_down() {
            return Err(GroupError::NotCoordinator);
        }
        if group_id.is_empty() {
            return Err(GroupError::InvalidGroupId);
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::UnknownMemberId)?;
        if group.is(&GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if group.is_static_member_fenced(instance_id, member_id) {
            return Err(GroupError::FencedInstanceId);
        }
        if !group.members.contains_key(member_id) {
            return Err(GroupError::UnknownMemberId);
        }
        if generation != group.generation {
            return Err(GroupError::IllegalGeneration);
        }
        let rebalancing = match group.state() {
            GroupState::Empty | GroupState::Dead => return Err(GroupError::UnknownMemberId),
            GroupState::PreparingRebalance(_) => true,
            GroupState::CompletingRebalance | GroupState::Stable => false,
        };
        if let Some(m) = group.members.get_mut(member_id) {
            m.deadline = Instant::now() + ms(m.session_timeout_ms);
            let deadline = m.deadline;
            self.arm(group, deadline);
        }
        if rebalancing {
            Err(GroupError::RebalanceInProgress)
        } else {
            Ok(())
        }
    }

    // ------------------------------------------------------------ LeaveGroup

    /// LeaveGroup (v0-v5; v3+ carries a batch of members).
    pub async fn leave_group(
        self: &Rc<Self>,
        req: LeaveGroupRequest,
        version: i16,
    ) -> LeaveGroupResponse {
        self.ensure_timer_task();
        let leaving: Vec<(String, Option<String>)> = if version >= 3 {
            req.members
                .iter()
                .map(|m| {
                    (
                        m.member_id.to_string(),
                        m.group_instance_id.as_ref().map(|i| i.to_string()),
                    )
                })
                .collect()
        } else {
            vec![(req.member_id.to_string(), None)]
        };
        let (top, errors) = self.leave_step(req.group_id.as_str(), &leaving);
        let mut r = LeaveGroupResponse::default();
        if version >= 3 {
            r.error_code = top.code();
            r.members = leaving
                .into_iter()
                .zip(errors)
                .map(|((member_id, instance_id), error)| {
                    let mut m = MemberResponse::default();
                    m.member_id = s(member_id);
                    m.group_instance_id = instance_id.map(s);
                    m.error_code = error.code();
                    m
                })
                .collect();
        } else {
            r.error_code = if top != ErrorCode::None {
                top.code()
            } else {
                errors.first().copied().unwrap_or(ErrorCode::None).code()
            };
        }
        r
    }

    fn leave_step(
        &self,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> (ErrorCode, Vec<ErrorCode>) {
        if self.is_shut_down() {
            return (code(GroupError::NotCoordinator), Vec::new());
        }
        if group_id.is_empty() {
            return (code(GroupError::InvalidGroupId), Vec::new());
        }
        let unknown = code(GroupError::UnknownMemberId);
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return (ErrorCode::None, vec![unknown; leaving.len()]);
        };
        if group.is(&GroupState::Dead) {
            return (code(GroupError::CoordinatorNotAvailable), Vec::new());
        }
        let now_ms = now_ms();
        let mut errors = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let error = if member_id.is_empty() {
                // Administrative removal by group.instance.id.
                match instance_id
                    .as_ref()
                    .and_then(|i| group.static_members.get(i))
                    .cloned()
                {
                    Some(current) => {
                        self.remove_member_and_update(
                            group,
                            &current,
                            now_ms,
                            "LeaveGroup by instance id",
                        );
                        ErrorCode::None
                    }
                    None => unknown,
                }
            } else if group.pending_members.remove(member_id).is_some() {
                if group.state().is_preparing() {
                    self.try_complete_join(group, now_ms);
                }
                ErrorCode::None
            } else if group.is_static_member_fenced(instance_id.as_deref(), member_id) {
                code(GroupError::FencedInstanceId)
            } else if group.members.contains_key(member_id) {
                self.remove_member_and_update(group, member_id, now_ms, "LeaveGroup");
                ErrorCode::None
            } else {
                unknown
            };
            errors.push(error);
        }
        (ErrorCode::None, errors)
    }

    // ------------------------------------------------------------ timers

    /// Runs every due deadline of one group; called by the timer task.
    pub(super) fn check_group(&self, group_id: &str, now: Instant) {
        let now_ms = now_ms();
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups.get_mut(group_id) else {
            return;
        };
        group.scheduled = None;
        if group.is(&GroupState::Dead) {
            return;
        }

        // The join phase.
        if let GroupState::PreparingRebalance(phase) = group.state() {
            if phase.deadline <= now {
                match phase.initial {
                    Some(d) if group.new_member_added && d.remaining_ms > 0 => {
                        // More members arrived during the initial delay: wait again.
                        group.new_member_added = false;
                        let configured = self.config.group_initial_rebalance_delay_ms.max(0) as u64;
                        let delay = configured.min(d.remaining_ms);
                        let remaining = d.remaining_ms.saturating_sub(d.delay_ms);
                        let _ = group.extend_join_phase(JoinPhase {
                            deadline: now + Duration::from_millis(delay),
                            initial: Some(InitialDelay {
                                delay_ms: delay,
                                remaining_ms: remaining,
                            }),
                        });
                    }
                    _ => self.complete_join(group, now_ms),
                }
            }
        }

        // Member ids handed out with MEMBER_ID_REQUIRED that never came back.
        let expired_pending: Vec<String> = group
            .pending_members
            .iter()
            .filter(|(_, d)| **d <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired_pending.is_empty() {
            for id in &expired_pending {
                group.pending_members.remove(id);
            }
            if group.state().is_preparing() {
                self.try_complete_join(group, now_ms);
            }
        }

        // Session expiry.
        let mut expired = Vec::new();
        for m in group.members.values_mut() {
            if m.deadline <= now {
                if m.kept_alive_by_pending_request() {
                    m.deadline = now + ms(m.session_timeout_ms);
                } else {
                    expired.push(m.id.clone());
                }
            }
        }
        for id in expired {
            tracing::info!(group = %group.id, member = %id, "member session expired");
            self.remove_member_and_update(group, &id, now_ms, "session timeout");
        }

        // Members that never sent SyncGroup.
        if group.sync_deadline.is_some_and(|d| d <= now) {
            group.sync_deadline = None;
            if matches!(
                group.state(),
                GroupState::CompletingRebalance | GroupState::Stable
            ) && !group.pending_sync.is_empty()
            {
                let missing: Vec<String> = group.pending_sync.drain().collect();
                for id in &missing {
                    tracing::info!(group = %group.id, member = %id, "member did not sync in time");
                    group.remove_member(id);
                }
                self.prepare_rebalance(group, now_ms, "members did not sync in time");
            }
        }

        if let Some(next) = group.next_deadline() {
            self.arm(group, next);
        }
    }
}

fn current_generation(group: &Group, member_id: &str, with_members: bool) -> JoinOutcome {
    JoinOutcome {
        error: ErrorCode::None,
        member_id: member_id.to_owned(),
        generation: group.generation,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader.clone().unwrap_or_default(),
        skip_assignment: false,
        members: if with_members {
            group.member_metadata_for_leader()
        } else {
            Vec::new()
        },
    }
}

fn mark_synced(group: &mut Group, member_id: &str) {
    group.pending_sync.remove(member_id);
    if group.pending_sync.is_empty() {
        group.sync_deadline = None;
    }
}

/// Clears assignments and fails every waiting SyncGroup with `error`.
fn reset_and_propagate_assignment_error(group: &mut Group, error: ErrorCode) {
    let now = Instant::now();
    for m in group.members.values_mut() {
        m.assignment = Bytes::new();
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome::error(error));
            m.deadline = now + ms(m.session_timeout_ms);
        }
    }
}

/// Installs the leader's assignment and answers every waiting SyncGroup.
fn set_and_propagate_assignment(group: &mut Group, assignment: &HashMap<String, Bytes>) {
    let now = Instant::now();
    let protocol_type = group.protocol_type.clone();
    let protocol_name = group.protocol_name.clone();
    for m in group.members.values_mut() {
        m.assignment = assignment.get(&m.id).cloned().unwrap_or_default();
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome {
                error: ErrorCode::None,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                assignment: m.assignment.clone(),
            });
            m.deadline = now + ms(m.session_timeout_ms);
        }
    }
}
