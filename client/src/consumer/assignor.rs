//! Partition assignors: the group leader runs one of these over every
//! member's subscription to decide who reads which partition. Three are
//! built in, named as the Java client names them in JoinGroup:
//!
//! - `range` ([`RangeAssignor`]): per topic, consecutive partition ranges to
//!   members in member order; the first `partitions % members` get one more.
//! - `roundrobin` ([`RoundRobinAssignor`]): every partition of every
//!   subscribed topic, sorted, dealt out to members in turn (skipping members
//!   not subscribed to the partition's topic).
//! - `cooperative-sticky` ([`CooperativeStickyAssignor`]): balanced, keeps
//!   partitions where they are when it can, and never hands a partition to a
//!   new owner in the same rebalance its old owner still holds it (KIP-429):
//!   the old owner revokes it, rejoins, and the next rebalance places it.
//!
//! Member order is Java's `MemberInfo` order: members with a
//! `group.instance.id` first, by instance id, then the rest by member id.
//! Results match the Java assignors for the same input; for
//! cooperative-sticky that holds when all members subscribe to the same
//! topics (Java's "constrained" path); with differing subscriptions the
//! outcome is balanced and sticky but not necessarily identical to Java's.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;

use super::TopicPartition;
use crate::config::AssignorKind;

/// How members hand partitions over during a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebalanceProtocol {
    /// Every member revokes everything before rejoining.
    Eager,
    /// Members keep what they own; only partitions that move are revoked.
    Cooperative,
}

/// What one member told the group in JoinGroup (its decoded
/// ConsumerProtocolSubscription plus identity).
#[derive(Debug, Clone, Default)]
pub struct MemberSubscription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<String>,
    pub owned_partitions: Vec<TopicPartition>,
    /// The generation `owned_partitions` belong to; -1 when unknown.
    pub generation: i32,
    pub user_data: Option<Bytes>,
    pub rack_id: Option<String>,
}

/// Member id -> assigned partitions (sorted).
pub type GroupAssignment = BTreeMap<String, Vec<TopicPartition>>;

/// A partition assignment strategy.
pub trait Assignor: Send + Sync {
    /// The protocol name sent in JoinGroup.
    fn name(&self) -> &'static str;
    fn rebalance_protocol(&self) -> RebalanceProtocol;
    /// Opaque bytes this member adds to its subscription.
    fn user_data(&self, _generation: i32) -> Option<Bytes> {
        None
    }
    /// Assigns the partitions of `partitions_per_topic` (topic -> partition
    /// count) to `members`. Every member appears in the result.
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment;
}

/// The built-in assignor for a configured kind.
pub fn assignor_for(kind: AssignorKind) -> Box<dyn Assignor> {
    match kind {
        AssignorKind::Range => Box::new(RangeAssignor),
        AssignorKind::RoundRobin => Box::new(RoundRobinAssignor),
        AssignorKind::CooperativeSticky => Box::new(CooperativeStickyAssignor),
    }
}

/// Java's `MemberInfo.compareTo`: static members first (by instance id),
/// then dynamic members by member id.
pub fn member_order(a: &MemberSubscription, b: &MemberSubscription) -> Ordering {
    match (&a.group_instance_id, &b.group_instance_id) {
        (Some(x), Some(y)) => x.cmp(y).then_with(|| a.member_id.cmp(&b.member_id)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.member_id.cmp(&b.member_id),
    }
}

fn sorted_members(members: &[MemberSubscription]) -> Vec<&MemberSubscription> {
    let mut v: Vec<&MemberSubscription> = members.iter().collect();
    v.sort_by(|a, b| member_order(a, b));
    v
}

fn empty_assignment(members: &[MemberSubscription]) -> GroupAssignment {
    members
        .iter()
        .map(|m| (m.member_id.clone(), Vec::new()))
        .collect()
}

fn finish(mut a: GroupAssignment) -> GroupAssignment {
    for v in a.values_mut() {
        v.sort();
    }
    a
}

/// Java's `RangeAssignor`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut out = empty_assignment(members);
        let sorted = sorted_members(members);
        for (topic, &count) in partitions_per_topic {
            let consumers: Vec<&&MemberSubscription> = sorted
                .iter()
                .filter(|m| m.topics.iter().any(|t| t == topic))
                .collect();
            if consumers.is_empty() || count <= 0 {
                continue;
            }
            let n = consumers.len() as i32;
            let per = count / n;
            let extra = count % n;
            for (i, m) in consumers.iter().enumerate() {
                let i = i as i32;
                let start = per * i + i.min(extra);
                let len = per + i32::from(i < extra);
                let slot = out.entry(m.member_id.clone()).or_default();
                slot.extend((start..start + len).map(|p| TopicPartition::new(topic.clone(), p)));
            }
        }
        finish(out)
    }
}

/// Java's `RoundRobinAssignor`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Eager
    }
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let mut out = empty_assignment(members);
        let sorted = sorted_members(members);
        if sorted.is_empty() {
            return out;
        }
        let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
        let mut next = 0usize;
        for topic in subscribed {
            let Some(&count) = partitions_per_topic.get(topic) else {
                continue;
            };
            for p in 0..count.max(0) {
                // Advance the circular iterator to the next member that
                // subscribes to this topic (one exists: the topic came from
                // someone's subscription).
                for _ in 0..sorted.len() {
                    if sorted[next % sorted.len()]
                        .topics
                        .iter()
                        .any(|t| t == topic)
                    {
                        break;
                    }
                    next += 1;
                }
                let m = sorted[next % sorted.len()];
                next += 1;
                out.entry(m.member_id.clone())
                    .or_default()
                    .push(TopicPartition::new(topic.clone(), p));
            }
        }
        finish(out)
    }
}

/// Java's `CooperativeStickyAssignor` (protocol name `cooperative-sticky`).
#[derive(Debug, Clone, Copy, Default)]
pub struct CooperativeStickyAssignor;

impl Assignor for CooperativeStickyAssignor {
    fn name(&self) -> &'static str {
        "cooperative-sticky"
    }
    fn rebalance_protocol(&self) -> RebalanceProtocol {
        RebalanceProtocol::Cooperative
    }
    /// As Java does, the generation travels in the user data too (4 bytes,
    /// big-endian) for members that only read subscription v0/v1.
    fn user_data(&self, generation: i32) -> Option<Bytes> {
        Some(Bytes::copy_from_slice(&generation.to_be_bytes()))
    }
    fn assign(
        &self,
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> GroupAssignment {
        let claims = OwnedClaims::collect(partitions_per_topic, members);
        let mut assignment = sticky_assign(partitions_per_topic, members, &claims);
        // KIP-429: a partition still owned by another member is withheld
        // this round; its owner revokes it and rejoins.
        for (member, parts) in assignment.iter_mut() {
            parts.retain(|tp| match claims.owner.get(tp) {
                Some(owner) => owner == member,
                None => !claims.conflicted.contains(tp),
            });
        }
        finish(assignment)
    }
}

/// Previously owned partitions that still count: only members of the
/// highest generation keep their claims; a partition claimed twice in that
/// generation belongs to nobody.
struct OwnedClaims {
    owned: HashMap<String, Vec<TopicPartition>>,
    owner: HashMap<TopicPartition, String>,
    conflicted: HashSet<TopicPartition>,
}

impl OwnedClaims {
    fn collect(
        partitions_per_topic: &BTreeMap<String, i32>,
        members: &[MemberSubscription],
    ) -> OwnedClaims {
        let max_generation = members.iter().map(|m| m.generation).max().unwrap_or(-1);
        let mut owner: HashMap<TopicPartition, String> = HashMap::new();
        let mut conflicted: HashSet<TopicPartition> = HashSet::new();
        for m in members {
            if m.generation != max_generation {
                continue;
            }
            for tp in &m.owned_partitions {
                let exists = partitions_per_topic
                    .get(&tp.topic)
                    .is_some_and(|&n| tp.partition >= 0 && tp.partition < n);
                if !exists || !m.topics.iter().any(|t| t == &tp.topic) {
                    continue;
                }
                if let Some(prev) = owner.insert(tp.clone(), m.member_id.clone()) {
                    if prev != m.member_id {
                        conflicted.insert(tp.clone());
                    }
                }
            }
        }
        for tp in &conflicted {
            owner.remove(tp);
        }
        let mut owned: HashMap<String, Vec<TopicPartition>> = HashMap::new();
        for (tp, m) in &owner {
            owned.entry(m.clone()).or_default().push(tp.clone());
        }
        OwnedClaims {
            owned,
            owner,
            conflicted,
        }
    }
}

fn sticky_assign(
    partitions_per_topic: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
    claims: &OwnedClaims,
) -> GroupAssignment {
    let topic_sets: Vec<BTreeSet<&String>> = members
        .iter()
        .map(|m| {
            m.topics
                .iter()
                .filter(|t| partitions_per_topic.contains_key(*t))
                .collect()
        })
        .collect();
    let all_equal = topic_sets.windows(2).all(|w| w[0] == w[1]);
    if all_equal {
        constrained_assign(partitions_per_topic, members, claims)
    } else {
        general_assign(partitions_per_topic, members, claims)
    }
}

/// Every partition of the topics someone subscribes to, sorted by topic
/// then partition.
fn all_partitions(
    partitions_per_topic: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
) -> Vec<TopicPartition> {
    let subscribed: BTreeSet<&String> = members.iter().flat_map(|m| m.topics.iter()).collect();
    let mut out = Vec::new();
    for t in subscribed {
        if let Some(&n) = partitions_per_topic.get(t) {
            out.extend((0..n.max(0)).map(|p| TopicPartition::new(t.clone(), p)));
        }
    }
    out
}

/// Java's `ConstrainedAssignmentBuilder` (all members subscribe to the same
/// topics): quotas `floor` and `ceil` of partitions / members; members keep
/// owned partitions up to their quota, then the rest are dealt round-robin
/// to members under the minimum quota, then one each to members at the
/// minimum until the number of members at the maximum is reached.
fn constrained_assign(
    partitions_per_topic: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
    claims: &OwnedClaims,
) -> GroupAssignment {
    let mut out = empty_assignment(members);
    let sorted = sorted_members(members);
    let all = all_partitions(partitions_per_topic, members);
    if sorted.is_empty() || all.is_empty() {
        return out;
    }
    let n_members = sorted.len();
    let min_quota = all.len() / n_members;
    let max_quota = all.len().div_ceil(n_members);
    let expected_over_min = all.len() % n_members;
    let mut over_min = 0usize;
    let mut assigned: HashSet<TopicPartition> = HashSet::new();
    let mut under_min: Vec<String> = Vec::new();
    let mut exactly_min: Vec<String> = Vec::new();

    for m in &sorted {
        let mut owned = claims.owned.get(&m.member_id).cloned().unwrap_or_default();
        // Java keeps owned partitions in (partition, topic) order.
        owned.sort_by(|a, b| {
            a.partition
                .cmp(&b.partition)
                .then_with(|| a.topic.cmp(&b.topic))
        });
        let slot = out.entry(m.member_id.clone()).or_default();
        if owned.len() < min_quota {
            assigned.extend(owned.iter().cloned());
            slot.extend(owned);
            under_min.push(m.member_id.clone());
        } else if owned.len() >= max_quota && over_min < expected_over_min {
            over_min += 1;
            if over_min == expected_over_min {
                exactly_min.clear();
            }
            owned.truncate(max_quota);
            assigned.extend(owned.iter().cloned());
            slot.extend(owned);
        } else {
            owned.truncate(min_quota);
            assigned.extend(owned.iter().cloned());
            slot.extend(owned);
            if over_min < expected_over_min {
                exactly_min.push(m.member_id.clone());
            }
        }
    }
    under_min.sort();
    exactly_min.sort();
    let mut exactly_min: std::collections::VecDeque<String> = exactly_min.into();

    let unassigned: Vec<TopicPartition> = all
        .into_iter()
        .filter(|tp| !assigned.contains(tp))
        .collect();
    let mut idx = 0usize;
    for tp in unassigned {
        let member = if idx < under_min.len() {
            let m = under_min[idx].clone();
            idx += 1;
            m
        } else if !under_min.is_empty() {
            idx = 0;
            let m = under_min[idx].clone();
            idx += 1;
            m
        } else if let Some(m) = exactly_min.pop_front() {
            m
        } else {
            // Cannot happen with the quotas above; keep every partition
            // assigned regardless.
            tracing::error!(%tp, "sticky assignor ran out of members under quota");
            sorted[0].member_id.clone()
        };
        let slot = out.entry(member.clone()).or_default();
        slot.push(tp);
        let count = slot.len();
        if count == min_quota && under_min.iter().any(|m| m == &member) {
            // Java's `unfilledConsumerIter.remove()`.
            if let Some(pos) = under_min.iter().position(|m| m == &member) {
                under_min.remove(pos);
                if pos < idx {
                    idx -= 1;
                }
            }
            exactly_min.push_back(member);
        }
    }
    out
}

/// Subscriptions differ: keep valid owned partitions, place the rest on the
/// eligible member with the fewest partitions (most constrained partitions
/// first), then move partitions from the fullest to the emptiest eligible
/// members until no move narrows the gap.
fn general_assign(
    partitions_per_topic: &BTreeMap<String, i32>,
    members: &[MemberSubscription],
    claims: &OwnedClaims,
) -> GroupAssignment {
    let mut out = empty_assignment(members);
    let sorted = sorted_members(members);
    let rank: HashMap<&str, usize> = sorted
        .iter()
        .enumerate()
        .map(|(i, m)| (m.member_id.as_str(), i))
        .collect();
    let subscribes = |m: &MemberSubscription, t: &str| m.topics.iter().any(|x| x == t);
    let mut assigned: HashSet<TopicPartition> = HashSet::new();
    for m in &sorted {
        if let Some(owned) = claims.owned.get(&m.member_id) {
            let slot = out.entry(m.member_id.clone()).or_default();
            for tp in owned {
                slot.push(tp.clone());
                assigned.insert(tp.clone());
            }
        }
    }
    let mut todo: Vec<(usize, TopicPartition)> = all_partitions(partitions_per_topic, members)
        .into_iter()
        .filter(|tp| !assigned.contains(tp))
        .map(|tp| {
            (
                sorted.iter().filter(|m| subscribes(m, &tp.topic)).count(),
                tp,
            )
        })
        .collect();
    todo.sort();
    for (_, tp) in todo {
        let best = sorted
            .iter()
            .filter(|m| subscribes(m, &tp.topic))
            .min_by_key(|m| {
                (
                    out.get(&m.member_id).map_or(0, Vec::len),
                    rank.get(m.member_id.as_str()).copied().unwrap_or(0),
                )
            });
        if let Some(m) = best {
            out.entry(m.member_id.clone()).or_default().push(tp);
        }
    }
    // Balance: bounded number of single-partition moves.
    let total: usize = out.values().map(Vec::len).sum();
    for _ in 0..=total {
        let mut moved = false;
        let mut by_load: Vec<&MemberSubscription> = sorted.clone();
        by_load.sort_by_key(|m| std::cmp::Reverse(out.get(&m.member_id).map_or(0, Vec::len)));
        'heavy: for heavy in &by_load {
            let heavy_len = out.get(&heavy.member_id).map_or(0, Vec::len);
            let mut candidates: Vec<TopicPartition> =
                out.get(&heavy.member_id).cloned().unwrap_or_default();
            // Move partitions the heavy member did not own before first.
            candidates.sort_by_key(|tp| claims.owner.get(tp) == Some(&heavy.member_id));
            for tp in candidates {
                let light = sorted
                    .iter()
                    .filter(|m| m.member_id != heavy.member_id && subscribes(m, &tp.topic))
                    .min_by_key(|m| {
                        (
                            out.get(&m.member_id).map_or(0, Vec::len),
                            rank.get(m.member_id.as_str()).copied().unwrap_or(0),
                        )
                    });
                if let Some(light) = light {
                    if out.get(&light.member_id).map_or(0, Vec::len) + 1 < heavy_len {
                        if let Some(v) = out.get_mut(&heavy.member_id) {
                            v.retain(|x| x != &tp);
                        }
                        out.entry(light.member_id.clone()).or_default().push(tp);
                        moved = true;
                        break 'heavy;
                    }
                }
            }
        }
        if !moved {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str]) -> MemberSubscription {
        MemberSubscription {
            member_id: id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            generation: -1,
            ..Default::default()
        }
    }

    fn owning(
        mut m: MemberSubscription,
        generation: i32,
        owned: &[(&str, i32)],
    ) -> MemberSubscription {
        m.generation = generation;
        m.owned_partitions = owned
            .iter()
            .map(|(t, p)| TopicPartition::new(*t, *p))
            .collect();
        m
    }

    fn topics(t: &[(&str, i32)]) -> BTreeMap<String, i32> {
        t.iter().map(|(n, c)| (n.to_string(), *c)).collect()
    }

    fn tps(v: &[(&str, i32)]) -> Vec<TopicPartition> {
        let mut out: Vec<TopicPartition> =
            v.iter().map(|(t, p)| TopicPartition::new(*t, *p)).collect();
        out.sort();
        out
    }

    #[test]
    fn range_two_consumers_three_partitions() {
        let a = RangeAssignor.assign(
            &topics(&[("t", 3)]),
            &[member("c1", &["t"]), member("c0", &["t"])],
        );
        assert_eq!(a["c0"], tps(&[("t", 0), ("t", 1)]));
        assert_eq!(a["c1"], tps(&[("t", 2)]));
    }

    #[test]
    fn range_is_per_topic() {
        // Java RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let a = RangeAssignor.assign(
            &topics(&[("t1", 3), ("t2", 3)]),
            &[member("c1", &["t1", "t2"]), member("c2", &["t1", "t2"])],
        );
        assert_eq!(a["c1"], tps(&[("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)]));
        assert_eq!(a["c2"], tps(&[("t1", 2), ("t2", 2)]));
        // Only subscribers of a topic share it; more members than partitions.
        let a = RangeAssignor.assign(
            &topics(&[("t1", 1), ("t2", 2)]),
            &[
                member("a", &["t1"]),
                member("b", &["t1", "t2"]),
                member("c", &["t2"]),
            ],
        );
        assert_eq!(a["a"], tps(&[("t1", 0)]));
        assert_eq!(a["b"], tps(&[("t2", 0)]));
        assert_eq!(a["c"], tps(&[("t2", 1)]));
    }

    #[test]
    fn range_orders_static_members_first() {
        let mut s = member("zzz", &["t"]);
        s.group_instance_id = Some("i1".into());
        let a = RangeAssignor.assign(&topics(&[("t", 3)]), &[member("aaa", &["t"]), s]);
        assert_eq!(a["zzz"], tps(&[("t", 0), ("t", 1)]));
        assert_eq!(a["aaa"], tps(&[("t", 2)]));
    }

    #[test]
    fn roundrobin_matches_java() {
        // Java RoundRobinAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let a = RoundRobinAssignor.assign(
            &topics(&[("t1", 3), ("t2", 3)]),
            &[member("c1", &["t1", "t2"]), member("c2", &["t1", "t2"])],
        );
        assert_eq!(a["c1"], tps(&[("t1", 0), ("t1", 2), ("t2", 1)]));
        assert_eq!(a["c2"], tps(&[("t1", 1), ("t2", 0), ("t2", 2)]));
        // testMultipleConsumersMixedTopics: c1 [t1], c2 [t1,t2], c3 [t1].
        let a = RoundRobinAssignor.assign(
            &topics(&[("t1", 3), ("t2", 2)]),
            &[
                member("c1", &["t1"]),
                member("c2", &["t1", "t2"]),
                member("c3", &["t1"]),
            ],
        );
        assert_eq!(a["c1"], tps(&[("t1", 0)]));
        assert_eq!(a["c2"], tps(&[("t1", 1), ("t2", 0), ("t2", 1)]));
        assert_eq!(a["c3"], tps(&[("t1", 2)]));
    }

    #[test]
    fn sticky_fresh_group_matches_java() {
        // Java AbstractStickyAssignorTest.testTwoConsumersTwoTopicsSixPartitions.
        let a = CooperativeStickyAssignor.assign(
            &topics(&[("t1", 3), ("t2", 3)]),
            &[member("c1", &["t1", "t2"]), member("c2", &["t1", "t2"])],
        );
        assert_eq!(a["c1"], tps(&[("t1", 0), ("t1", 2), ("t2", 1)]));
        assert_eq!(a["c2"], tps(&[("t1", 1), ("t2", 0), ("t2", 2)]));
        let a = CooperativeStickyAssignor.assign(
            &topics(&[("t", 3)]),
            &[member("c0", &["t"]), member("c1", &["t"])],
        );
        assert_eq!(a["c0"], tps(&[("t", 0), ("t", 2)]));
        assert_eq!(a["c1"], tps(&[("t", 1)]));
    }

    #[test]
    fn cooperative_sticky_keeps_and_withholds_moving_partitions() {
        // c0 owned all 4; c1 joins: c0 keeps 2, the 2 that move are withheld
        // from c1 until c0 revoked them (next rebalance).
        let t = topics(&[("t", 4)]);
        let c0 = owning(
            member("c0", &["t"]),
            3,
            &[("t", 0), ("t", 1), ("t", 2), ("t", 3)],
        );
        let first = CooperativeStickyAssignor.assign(&t, &[c0, member("c1", &["t"])]);
        assert_eq!(first["c0"], tps(&[("t", 0), ("t", 1)]));
        assert!(first["c1"].is_empty());
        // Second round: c0 revoked 2 and 3; c1 gets them, c0 keeps its own.
        let c0 = owning(member("c0", &["t"]), 4, &[("t", 0), ("t", 1)]);
        let c1 = owning(member("c1", &["t"]), 4, &[]);
        let second = CooperativeStickyAssignor.assign(&t, &[c0, c1]);
        assert_eq!(second["c0"], tps(&[("t", 0), ("t", 1)]));
        assert_eq!(second["c1"], tps(&[("t", 2), ("t", 3)]));
    }

    #[test]
    fn cooperative_sticky_member_leaving_moves_only_its_partitions() {
        let t = topics(&[("t", 6)]);
        let c0 = owning(member("c0", &["t"]), 5, &[("t", 0), ("t", 3)]);
        let c1 = owning(member("c1", &["t"]), 5, &[("t", 1), ("t", 4)]);
        // c2 (owning 2 and 5) left.
        let a = CooperativeStickyAssignor.assign(&t, &[c0, c1]);
        assert_eq!(a["c0"], tps(&[("t", 0), ("t", 2), ("t", 3)]));
        assert_eq!(a["c1"], tps(&[("t", 1), ("t", 4), ("t", 5)]));
    }

    #[test]
    fn cooperative_sticky_ignores_stale_and_double_claims() {
        let t = topics(&[("t", 2)]);
        let stale = owning(member("a", &["t"]), 1, &[("t", 0), ("t", 1)]);
        let fresh = owning(member("b", &["t"]), 2, &[("t", 0)]);
        let a = CooperativeStickyAssignor.assign(&t, &[stale, fresh]);
        assert_eq!(a["b"], tps(&[("t", 0)]));
        assert_eq!(a["a"], tps(&[("t", 1)]));
        let x = owning(member("x", &["t"]), 3, &[("t", 0)]);
        let y = owning(member("y", &["t"]), 3, &[("t", 0)]);
        let a = CooperativeStickyAssignor.assign(&t, &[x, y]);
        // t-0 was claimed twice: withheld this round from both.
        assert!(
            !a["x"].contains(&TopicPartition::new("t", 0))
                && !a["y"].contains(&TopicPartition::new("t", 0))
        );
    }

    #[test]
    fn sticky_general_case_is_balanced_and_complete() {
        let t = topics(&[("t1", 4), ("t2", 4)]);
        let a = CooperativeStickyAssignor.assign(
            &t,
            &[
                member("a", &["t1"]),
                member("b", &["t1", "t2"]),
                member("c", &["t2"]),
            ],
        );
        let total: usize = a.values().map(Vec::len).sum();
        assert_eq!(total, 8);
        let lens: Vec<usize> = a.values().map(Vec::len).collect();
        assert!(
            lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1,
            "{a:?}"
        );
        assert!(a["a"].iter().all(|tp| tp.topic == "t1"));
        assert!(a["c"].iter().all(|tp| tp.topic == "t2"));
    }

    #[test]
    fn more_members_than_partitions() {
        let t = topics(&[("t", 2)]);
        let ms = [
            member("a", &["t"]),
            member("b", &["t"]),
            member("c", &["t"]),
        ];
        for assignor in [
            assignor_for(AssignorKind::Range),
            assignor_for(AssignorKind::RoundRobin),
            assignor_for(AssignorKind::CooperativeSticky),
        ] {
            let a = assignor.assign(&t, &ms);
            assert_eq!(a.len(), 3);
            assert_eq!(
                a.values().map(Vec::len).sum::<usize>(),
                2,
                "{}",
                assignor.name()
            );
            assert!(a.values().all(|v| v.len() <= 1));
        }
    }
}
