//! One classic group's state: the `GroupState` enum with Kafka's allowed
//! transitions, the member table (with static `group.instance.id`
//! mappings, pending members that were sent MEMBER_ID_REQUIRED, members yet
//! to SyncGroup), the committed offsets, and the pure helpers Kafka's
//! GroupMetadata has: protocol support checks, protocol voting, leader
//! election, subscribed-topic computation, and the GroupMetadataValue record
//! of the group. No I/O and no timers here; `membership` and `offsets` drive
//! it. The state field is private to this module: it changes only through
//! [`Group::transition`], which refuses what Kafka's GroupMetadata refuses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use bytes::Bytes;
use futures::channel::oneshot;
use indexmap::IndexMap;
use sluice_protocol::ErrorCode;

use super::records::{self, GroupValue, MemberValue};

/// Kafka's "consumer" protocol type, whose subscriptions we can parse.
pub(super) const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The join phase of a rebalance: when it ends at the latest, and whether it
/// is the initial delay (`group.initial.rebalance.delay.ms`) of a group that
/// was empty, which only ends on its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct JoinPhase {
    pub deadline: Instant,
    pub initial: Option<InitialDelay>,
}

/// Kafka's InitialDelayedJoin: the current delay and what is left of the
/// rebalance timeout for further extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct InitialDelay {
    pub delay_ms: u64,
    pub remaining_ms: u64,
}

/// The classic group state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum GroupState {
    /// No members; offsets may remain.
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance(JoinPhase),
    /// Join phase done; waiting for the leader's assignment.
    CompletingRebalance,
    /// Assignment distributed.
    Stable,
    /// Removed; never seen in the group table for long.
    Dead,
}

impl GroupState {
    pub(super) fn name(&self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance(_) => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Kafka's valid previous states for each target state.
    pub(super) fn can_transition_to(&self, to: &GroupState) -> bool {
        use GroupState::*;
        match to {
            Empty => matches!(self, PreparingRebalance(_)),
            PreparingRebalance(_) => matches!(self, Empty | CompletingRebalance | Stable),
            CompletingRebalance => matches!(self, PreparingRebalance(_)),
            Stable => matches!(self, CompletingRebalance),
            Dead => true,
        }
    }

    pub(super) fn is_preparing(&self) -> bool {
        matches!(self, GroupState::PreparingRebalance(_))
    }
}

/// A state change Kafka's GroupMetadata forbids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid group state transition {from} -> {to}")]
pub(super) struct InvalidTransition {
    pub from: &'static str,
    pub to: &'static str,
}

/// What a waiting JoinGroup is answered with.
#[derive(Debug, Clone)]
pub(super) struct JoinOutcome {
    pub error: ErrorCode,
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub skip_assignment: bool,
    /// (member id, group instance id, metadata); only the leader gets them.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    pub(super) fn error(member_id: &str, error: ErrorCode) -> Self {
        JoinOutcome {
            error,
            member_id: member_id.to_owned(),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            members: Vec::new(),
        }
    }
}

/// What a waiting SyncGroup is answered with.
#[derive(Debug, Clone)]
pub(super) struct SyncOutcome {
    pub error: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncOutcome {
    pub(super) fn error(error: ErrorCode) -> Self {
        SyncOutcome {
            error,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A group member.
#[derive(Debug)]
pub(super) struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// Set while a JoinGroup of this member waits for the join phase to end.
    pub awaiting_join: Option<oneshot::Sender<JoinOutcome>>,
    /// Set while a SyncGroup of this member waits for the leader's assignment.
    pub awaiting_sync: Option<oneshot::Sender<SyncOutcome>>,
    /// Joined during the current rebalance and not yet given a generation.
    pub is_new: bool,
    /// Session (or, for new members, join) expiry.
    pub deadline: Instant,
}

impl Member {
    pub(super) fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub(super) fn matches(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// The member's most preferred protocol among `candidates`.
    fn vote(&self, candidates: &HashSet<&str>) -> Option<&str> {
        self.protocols
            .iter()
            .map(|(n, _)| n.as_str())
            .find(|n| candidates.contains(n))
    }

    /// Kafka keeps members that wait in a JoinGroup or SyncGroup alive; new
    /// members only until their join timeout.
    pub(super) fn kept_alive_by_pending_request(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }
}

/// One committed offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    pub expire_timestamp_ms: Option<i64>,
}

/// A classic group.
#[derive(Debug)]
pub(super) struct Group {
    pub id: String,
    /// Distinguishes this group from a later one with the same id (an
    /// await may span a delete and a re-create).
    pub incarnation: u64,
    /// Changed only by [`Group::transition`] (and the join-phase and load
    /// helpers next to it), so every change is checked.
    state: GroupState,
    /// Wall-clock ms of the last transition (Kafka's currentStateTimestamp).
    pub state_timestamp_ms: Option<i64>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: IndexMap<String, Member>,
    /// group.instance.id -> member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with their expiry.
    pub pending_members: HashMap<String, Instant>,
    /// Members of the current generation that have not sent SyncGroup yet.
    pub pending_sync: HashSet<String>,
    pub sync_deadline: Option<Instant>,
    /// A new member joined during the initial delay: extend it.
    pub new_member_added: bool,
    /// Topics the consumer members subscribe to; `None` = unknown.
    pub subscribed_topics: Option<HashSet<String>>,
    pub offsets: BTreeMap<String, BTreeMap<i32, CommittedOffset>>,
    /// Offset commits being written, per partition.
    pub pending_commits: HashMap<(String, i32), u32>,
    /// Transactional offset commits (TxnOffsetCommit) written but not yet
    /// settled by their producer's commit or abort marker, per producer id.
    pub pending_txn_offsets: HashMap<i64, BTreeMap<(String, i32), CommittedOffset>>,
    /// The earliest instant a timer check of this group is queued for.
    pub scheduled: Option<Instant>,
}

impl Group {
    pub(super) fn new(id: &str, incarnation: u64, now_ms: i64) -> Self {
        Group {
            id: id.to_owned(),
            incarnation,
            state: GroupState::Empty,
            state_timestamp_ms: Some(now_ms),
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            pending_sync: HashSet::new(),
            sync_deadline: None,
            new_member_added: false,
            subscribed_topics: None,
            offsets: BTreeMap::new(),
            pending_commits: HashMap::new(),
            pending_txn_offsets: HashMap::new(),
            scheduled: None,
        }
    }

    /// The group's state.
    pub(super) fn state(&self) -> GroupState {
        self.state
    }

    /// Moves to `to`, as Kafka's transitionTo: a transition Kafka's
    /// GroupMetadata does not allow is refused (logged, state unchanged),
    /// since it means the caller's view of the group is wrong.
    pub(super) fn transition(
        &mut self,
        to: GroupState,
        now_ms: i64,
    ) -> Result<(), InvalidTransition> {
        if !self.state.can_transition_to(&to) {
            let invalid = InvalidTransition {
                from: self.state.name(),
                to: to.name(),
            };
            tracing::error!(group = %self.id, %invalid, "refused group state transition");
            return Err(invalid);
        }
        tracing::debug!(group = %self.id, from = self.state.name(), to = to.name(), "group state transition");
        self.state = to;
        self.state_timestamp_ms = Some(now_ms);
        Ok(())
    }

    /// Gives the running join phase a new deadline (another initial delay,
    /// or another rebalance timeout for static members that have not
    /// rejoined). Not a transition: the group stays PreparingRebalance.
    pub(super) fn extend_join_phase(&mut self, phase: JoinPhase) -> Result<(), InvalidTransition> {
        match &mut self.state {
            GroupState::PreparingRebalance(current) => {
                *current = phase;
                Ok(())
            }
            other => Err(InvalidTransition {
                from: other.name(),
                to: "a longer PreparingRebalance",
            }),
        }
    }

    /// The state of a group rebuilt from its records, as Kafka's loadGroup
    /// sets it: Empty without members, else Stable. A group being loaded
    /// starts Empty, so this is its initial state, not a transition.
    pub(super) fn settle_loaded_state(&mut self) -> Result<(), InvalidTransition> {
        let loaded = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        if !matches!(self.state, GroupState::Empty) {
            return Err(InvalidTransition {
                from: self.state.name(),
                to: loaded.name(),
            });
        }
        self.state = loaded;
        Ok(())
    }

    pub(super) fn is(&self, state: &GroupState) -> bool {
        std::mem::discriminant(&self.state) == std::mem::discriminant(state)
    }

    pub(super) fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// The largest rebalance timeout of the members (Kafka's group rebalance timeout).
    pub(super) fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
            .max(0)
    }

    /// `group.instance.id` is known but bound to another member id.
    pub(super) fn is_static_member_fenced(
        &self,
        instance_id: Option<&str>,
        member_id: &str,
    ) -> bool {
        instance_id
            .and_then(|i| self.static_members.get(i))
            .is_some_and(|m| m != member_id)
    }

    pub(super) fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Kafka's supportsProtocols.
    pub(super) fn supports_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if self.is(&GroupState::Empty) {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            let n = self.members.len();
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|(name, _)| {
                    self.members
                        .values()
                        .filter(|m| m.protocols.iter().any(|(p, _)| p == name))
                        .count()
                        == n
                })
        }
    }

    /// Protocols every member supports.
    fn candidate_protocols(&self) -> HashSet<&str> {
        let mut iter = self.members.values();
        let Some(first) = iter.next() else {
            return HashSet::new();
        };
        let mut set: HashSet<&str> = first.protocols.iter().map(|(n, _)| n.as_str()).collect();
        for m in iter {
            set.retain(|p| m.protocols.iter().any(|(n, _)| n == p));
        }
        set
    }

    /// Kafka's selectProtocol: each member votes for its most preferred
    /// common protocol; most votes win (ties: the first voted for, in member order).
    pub(super) fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: IndexMap<&str, usize> = IndexMap::new();
        for m in self.members.values() {
            if let Some(p) = m.vote(&candidates) {
                *votes.entry(p).or_default() += 1;
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (p, n) in votes {
            if best.is_none_or(|(_, b)| n > b) {
                best = Some((p, n));
            }
        }
        best.map(|(p, _)| p.to_owned())
    }

    /// Adds a member (Kafka's GroupMetadata.add).
    pub(super) fn add_member(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member.id.clone());
        }
        if let Some(instance) = &member.instance_id {
            self.static_members
                .insert(instance.clone(), member.id.clone());
        }
        self.pending_members.remove(&member.id);
        self.members.insert(member.id.clone(), member);
    }

    /// Removes a member without answering its waiting requests (their
    /// senders are dropped). Kafka's GroupMetadata.remove.
    pub(super) fn remove_member(&mut self, member_id: &str) -> Option<Member> {
        let removed = self.members.shift_remove(member_id);
        if let Some(m) = &removed {
            if let Some(instance) = &m.instance_id {
                if self
                    .static_members
                    .get(instance)
                    .is_some_and(|id| id == member_id)
                {
                    self.static_members.remove(instance);
                }
            }
        }
        if self.is_leader(member_id) {
            self.leader = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync.remove(member_id);
        removed
    }

    /// Gives a static member's entry a new member id, fencing any request the
    /// old id still has waiting. Kafka's replaceStaticMember.
    pub(super) fn replace_static_member(
        &mut self,
        instance_id: &str,
        old_id: &str,
        new_id: &str,
    ) -> bool {
        let Some(index) = self.members.get_index_of(old_id) else {
            return false;
        };
        let Some((_, mut member)) = self.members.shift_remove_index(index) else {
            return false;
        };
        let fenced = super::error::code(super::error::GroupError::FencedInstanceId);
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinOutcome::error(old_id, fenced));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncOutcome::error(fenced));
        }
        member.id = new_id.to_owned();
        self.members
            .shift_insert(index.min(self.members.len()), new_id.to_owned(), member);
        if self.is_leader(old_id) {
            self.leader = Some(new_id.to_owned());
        }
        self.static_members
            .insert(instance_id.to_owned(), new_id.to_owned());
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.to_owned());
        }
        true
    }

    /// If the leader has not rejoined, makes any rejoined member leader.
    /// False when nobody has rejoined. Kafka's maybeElectNewJoinedLeader.
    pub(super) fn elect_joined_leader(&mut self) -> bool {
        let Some(leader) = self.leader.clone() else {
            return false;
        };
        if self
            .members
            .get(&leader)
            .is_some_and(|m| m.awaiting_join.is_some())
        {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(m) => {
                self.leader = Some(m.id.clone());
                true
            }
            None => false,
        }
    }

    /// The member list the leader receives.
    pub(super) fn member_metadata_for_leader(&self) -> Vec<(String, Option<String>, Bytes)> {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| (m.id.clone(), m.instance_id.clone(), m.metadata(&protocol)))
            .collect()
    }

    /// Kafka's computeSubscribedTopics.
    pub(super) fn compute_subscribed_topics(&self) -> Option<HashSet<String>> {
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        if self.members.is_empty() {
            return Some(HashSet::new());
        }
        let protocol = self.protocol_name.as_deref()?;
        let mut topics = HashSet::new();
        for m in self.members.values() {
            match records::subscription_topics(&m.metadata(protocol)) {
                Some(t) => topics.extend(t),
                None => {
                    tracing::warn!(group = %self.id, member = %m.id, "cannot parse consumer subscription");
                    return None;
                }
            }
        }
        Some(topics)
    }

    /// Whether OffsetDelete must refuse the topic (unknown subscriptions count as subscribed).
    pub(super) fn is_subscribed_to(&self, topic: &str) -> bool {
        match &self.subscribed_topics {
            Some(t) => t.contains(topic),
            None => true,
        }
    }

    pub(super) fn has_offsets(&self) -> bool {
        self.offsets.values().any(|p| !p.is_empty())
            || !self.pending_commits.is_empty()
            || !self.pending_txn_offsets.is_empty()
    }

    /// A commit of this partition is in flight, or a transaction holds one
    /// (Kafka's `hasPendingOffsetCommitsForTopicPartition`): a fetch that
    /// requires stable offsets must wait.
    pub(super) fn has_pending_offset(&self, topic: &str, partition: i32) -> bool {
        let key = (topic.to_string(), partition);
        self.pending_commits.contains_key(&key)
            || self
                .pending_txn_offsets
                .values()
                .any(|offsets| offsets.contains_key(&key))
    }

    pub(super) fn offset(&self, topic: &str, partition: i32) -> Option<&CommittedOffset> {
        self.offsets.get(topic).and_then(|p| p.get(&partition))
    }

    pub(super) fn remove_offset(&mut self, topic: &str, partition: i32) -> Option<CommittedOffset> {
        let parts = self.offsets.get_mut(topic)?;
        let removed = parts.remove(&partition);
        if parts.is_empty() {
            self.offsets.remove(topic);
        }
        removed
    }

    /// The GroupMetadataValue of this group, with `assignment` giving each
    /// member's assignment (Kafka's storeGroup).
    pub(super) fn metadata_value(&self, assignment: &dyn Fn(&Member) -> Bytes) -> GroupValue {
        let protocol = self.protocol_name.clone();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: protocol.clone(),
            leader: self.leader.clone(),
            current_state_timestamp_ms: self.state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol.as_deref().unwrap_or_default()),
                    assignment: assignment(m),
                })
                .collect(),
        }
    }

    /// The group's record: (GroupMetadataKey, GroupMetadataValue).
    pub(super) fn metadata_record(
        &self,
        assignment: &dyn Fn(&Member) -> Bytes,
    ) -> (Bytes, Option<Bytes>) {
        (
            records::group_key(&self.id),
            Some(records::group_value(&self.metadata_value(assignment))),
        )
    }

    /// The earliest deadline the timer must check this group at.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let join = match self.state {
            GroupState::PreparingRebalance(phase) => Some(phase.deadline),
            _ => None,
        };
        self.members
            .values()
            .map(|m| m.deadline)
            .chain(self.pending_members.values().copied())
            .chain(self.sync_deadline)
            .chain(join)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase() -> JoinPhase {
        JoinPhase {
            deadline: Instant::now(),
            initial: None,
        }
    }

    #[test]
    fn illegal_transitions_are_refused_and_change_nothing() {
        let mut g = Group::new("g", 1, 100);
        assert_eq!(g.state(), GroupState::Empty);
        // Kafka's GroupMetadata: Stable only from CompletingRebalance,
        // CompletingRebalance only from PreparingRebalance.
        assert_eq!(
            g.transition(GroupState::Stable, 200),
            Err(InvalidTransition {
                from: "Empty",
                to: "Stable"
            })
        );
        assert_eq!(
            g.transition(GroupState::CompletingRebalance, 200)
                .map_err(|e| e.to_string()),
            Err("invalid group state transition Empty -> CompletingRebalance".into())
        );
        assert_eq!(g.state(), GroupState::Empty);
        assert_eq!(
            g.state_timestamp_ms,
            Some(100),
            "a refused change is no change"
        );
        // The join phase can only be extended while it runs.
        assert!(g.extend_join_phase(phase()).is_err());
        assert_eq!(g.state(), GroupState::Empty);

        // The legal path, with its timestamps.
        g.transition(GroupState::PreparingRebalance(phase()), 300)
            .expect("Empty -> PreparingRebalance");
        g.extend_join_phase(phase()).expect("extend the join phase");
        assert!(g
            .transition(GroupState::PreparingRebalance(phase()), 350)
            .is_err());
        assert!(g.transition(GroupState::Stable, 350).is_err());
        g.transition(GroupState::CompletingRebalance, 400)
            .expect("PreparingRebalance -> CompletingRebalance");
        assert!(g.transition(GroupState::Empty, 450).is_err());
        g.transition(GroupState::Stable, 500)
            .expect("CompletingRebalance -> Stable");
        assert_eq!(g.state_timestamp_ms, Some(500));
        // Only a group being loaded gets its loaded state.
        assert!(g.settle_loaded_state().is_err());
        assert_eq!(g.state(), GroupState::Stable);
        g.transition(GroupState::Dead, 600)
            .expect("anything -> Dead");
        assert!(g.transition(GroupState::Empty, 700).is_err());
    }

    #[test]
    fn a_loaded_group_starts_empty_or_stable() {
        let mut g = Group::new("g", 1, 0);
        g.settle_loaded_state().expect("new group");
        assert_eq!(g.state(), GroupState::Empty);
    }
}
