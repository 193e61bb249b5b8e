//! Partition reassignment (KIP-455, as KRaft's controller runs it): the
//! pure decisions behind AlterPartitionReassignments and the completion
//! that follows ISR changes. A reassignment to `target` widens the
//! assignment to `target` followed by the current replicas not in it,
//! recording which replicas are being added and removed; the added ones
//! start as followers and fetch, the leader adds them to the ISR once
//! caught up, and as soon as the whole target is in the ISR the controller
//! completes it in the same metadata change: the assignment becomes the
//! target, the ISR and eligible leader replicas keep only target members,
//! and a leader being removed hands over to the first target replica that
//! can lead. Cancelling goes back to the original assignment.
//!
//! Nothing here reads the clock or the network: the controller passes in
//! which brokers exist and which may lead, and writes the returned
//! [`PartitionChange`] to the metadata log.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use super::quorum::image::{MetadataImage, PartitionImage};
use super::quorum::records::{NodeId, PartitionChange, NO_LEADER};

/// A partition reassignment in progress, as ListPartitionReassignments
/// answers it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PartitionReassignment {
    pub topic: String,
    pub partition: i32,
    pub replicas: Vec<NodeId>,
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

/// The reassignments in progress in `image`, for the asked partitions
/// (every partition when `None`), in topic and partition order.
pub fn in_progress(
    image: &MetadataImage,
    wanted: Option<&[(String, i32)]>,
) -> Vec<PartitionReassignment> {
    let mut out = Vec::new();
    for topic in image.topics.values() {
        for (index, p) in &topic.partitions {
            let asked =
                wanted.is_none_or(|w| w.iter().any(|(t, i)| *t == topic.name && i == index));
            if asked && p.is_reassigning() {
                out.push(PartitionReassignment {
                    topic: topic.name.clone(),
                    partition: *index,
                    replicas: p.replicas.clone(),
                    adding: p.adding_replicas.clone(),
                    removing: p.removing_replicas.clone(),
                });
            }
        }
    }
    out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    out
}

/// Why a reassignment of one partition was refused: the Kafka error code
/// its entry of the response carries, and a message.
pub type Refusal = (ErrorCode, String);

/// Checks a replica list given by a user (a reassignment target, or a
/// manual assignment in CreateTopics/CreatePartitions): not empty, no
/// broker twice, every broker registered.
pub fn check_manual_assignment(
    replicas: &[NodeId],
    registered: &dyn Fn(NodeId) -> bool,
) -> Result<(), Refusal> {
    let invalid = |m: String| Err((ErrorCode::InvalidReplicaAssignment, m));
    if replicas.is_empty() {
        return invalid("The manual partition assignment includes an empty replica list.".into());
    }
    let distinct: BTreeSet<NodeId> = replicas.iter().copied().collect();
    if distinct.len() != replicas.len() {
        return invalid(format!(
            "The manual partition assignment {replicas:?} contains a duplicate broker."
        ));
    }
    if let Some(missing) = replicas.iter().find(|r| !registered(**r)) {
        return invalid(format!(
            "The manual partition assignment includes broker {missing}, but no such broker is registered."
        ));
    }
    Ok(())
}

/// Starts (or replaces) a reassignment of `p` to `target`, or cancels the
/// one in progress (`target: None`). `Ok(None)`: nothing to change (the
/// partition already has exactly this assignment).
pub fn alter(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionImage,
    target: Option<&[NodeId]>,
    registered: &dyn Fn(NodeId) -> bool,
    can_lead: &dyn Fn(NodeId) -> bool,
) -> Result<Option<PartitionChange>, Refusal> {
    let Some(target) = target else {
        return cancel(topic_id, partition, p, can_lead).map(Some);
    };
    check_manual_assignment(target, registered)?;
    if !p.is_reassigning() && p.replicas == target {
        return Ok(None);
    }
    // A reassignment replacing one in progress starts from everything
    // assigned now: replicas half-added stay until the new one completes.
    let current = &p.replicas;
    let mut replicas = target.to_vec();
    replicas.extend(current.iter().filter(|r| !target.contains(r)));
    let adding: Vec<NodeId> = target
        .iter()
        .copied()
        .filter(|r| !current.contains(r))
        .collect();
    let removing: Vec<NodeId> = current
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    let widened = PartitionImage {
        replicas,
        adding_replicas: adding,
        removing_replicas: removing,
        ..p.clone()
    };
    // Only reordering or removing replicas that are in sync: done at once.
    if let Some(done) = completion(&widened, &widened.isr, can_lead) {
        return Ok(Some(done.into_change(topic_id, partition)));
    }
    Ok(Some(PartitionChange {
        topic_id,
        partition,
        replicas: Some(widened.replicas),
        adding_replicas: Some(widened.adding_replicas),
        removing_replicas: Some(widened.removing_replicas),
        ..PartitionChange::default()
    }))
}

/// Goes back to the assignment before the reassignment in progress: the
/// replicas being added leave the assignment, the ISR and the eligible
/// leader replicas; a leader among them hands over to the first original
/// replica in the ISR that can lead.
fn cancel(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionImage,
    can_lead: &dyn Fn(NodeId) -> bool,
) -> Result<PartitionChange, Refusal> {
    if !p.is_reassigning() {
        return Err((
            ErrorCode::NoReassignmentInProgress,
            format!("no reassignment of partition {partition} is in progress"),
        ));
    }
    let original = p.original_replicas();
    let keep = |set: &[NodeId]| -> Vec<NodeId> {
        set.iter()
            .copied()
            .filter(|r| original.contains(r))
            .collect()
    };
    let isr = keep(&p.isr);
    if isr.is_empty() {
        // Reverting would leave no replica known to hold every
        // acknowledged record; the reassignment has to finish instead.
        return Err((
            ErrorCode::InvalidReplicaAssignment,
            format!(
                "cancelling would leave partition {partition} without an in-sync replica (ISR {:?}, original replicas {original:?})",
                p.isr
            ),
        ));
    }
    let leader = leader_among(p.leader, &original, &isr, can_lead);
    Ok(PartitionChange {
        topic_id,
        partition,
        leader: (leader != p.leader).then_some(leader),
        isr: Some(isr),
        elr: Some(keep(&p.elr)),
        last_known_elr: Some(keep(&p.last_known_elr)),
        replicas: Some(original),
        adding_replicas: Some(Vec::new()),
        removing_replicas: Some(Vec::new()),
        expect_partition_epoch: None,
    })
}

/// A reassignment that `isr` completes: the final assignment, ISR, ELR and
/// leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub elr: Vec<NodeId>,
    pub last_known_elr: Vec<NodeId>,
    pub leader: NodeId,
    pub leader_changed: bool,
}

impl Completed {
    fn into_change(self, topic_id: Uuid, partition: i32) -> PartitionChange {
        PartitionChange {
            topic_id,
            partition,
            leader: self.leader_changed.then_some(self.leader),
            isr: Some(self.isr),
            elr: Some(self.elr),
            last_known_elr: Some(self.last_known_elr),
            replicas: Some(self.replicas),
            adding_replicas: Some(Vec::new()),
            removing_replicas: Some(Vec::new()),
            expect_partition_epoch: None,
        }
    }

    /// Applies the completion to a change that sets the ISR (an
    /// AlterPartition): one record both changes the ISR and finishes the
    /// reassignment.
    pub fn merge_into(self, change: &mut PartitionChange) {
        change.leader = self.leader_changed.then_some(self.leader);
        change.isr = Some(self.isr);
        change.elr = Some(self.elr);
        change.last_known_elr = Some(self.last_known_elr);
        change.replicas = Some(self.replicas);
        change.adding_replicas = Some(Vec::new());
        change.removing_replicas = Some(Vec::new());
    }
}

/// Whether the reassignment in progress on `p` is complete once the ISR is
/// `isr`: the whole target in it and a target replica able to lead.
pub fn completion(
    p: &PartitionImage,
    isr: &[NodeId],
    can_lead: &dyn Fn(NodeId) -> bool,
) -> Option<Completed> {
    if !p.is_reassigning() {
        return None;
    }
    let target = p.target_replicas();
    if !target.iter().all(|r| isr.contains(r)) {
        return None;
    }
    let keep = |set: &[NodeId]| -> Vec<NodeId> {
        set.iter().copied().filter(|r| target.contains(r)).collect()
    };
    let new_isr = keep(isr);
    let leader = leader_among(p.leader, &target, &new_isr, can_lead);
    if leader == NO_LEADER {
        // Nobody of the target can lead now: finish on a later ISR change.
        return None;
    }
    Some(Completed {
        elr: keep(&p.elr),
        last_known_elr: keep(&p.last_known_elr),
        leader_changed: leader != p.leader,
        leader,
        isr: new_isr,
        replicas: target,
    })
}

/// `current` if it stays a replica, else the first of `replicas` in `isr`
/// that can lead, else no leader.
fn leader_among(
    current: NodeId,
    replicas: &[NodeId],
    isr: &[NodeId],
    can_lead: &dyn Fn(NodeId) -> bool,
) -> NodeId {
    if current != NO_LEADER && replicas.contains(&current) && isr.contains(&current) {
        return current;
    }
    replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && can_lead(*r))
        .unwrap_or(NO_LEADER)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(replicas: &[NodeId], isr: &[NodeId], leader: NodeId) -> PartitionImage {
        PartitionImage {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            elr: Vec::new(),
            last_known_elr: Vec::new(),
            leader,
            leader_epoch: 4,
            partition_epoch: 9,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        }
    }

    fn any(_: NodeId) -> bool {
        true
    }

    fn brokers_1_to_4(b: NodeId) -> bool {
        (1..=4).contains(&b)
    }

    #[test]
    fn moving_a_replica_widens_the_assignment_until_the_new_one_is_in_sync() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let change = alter(Uuid::nil(), 0, &p, Some(&[1, 2, 4]), &brokers_1_to_4, &any)
            .unwrap()
            .unwrap();
        let during = p.changed(&change);
        assert_eq!(during.replicas, vec![1, 2, 4, 3]);
        assert_eq!(during.adding_replicas, vec![4]);
        assert_eq!(during.removing_replicas, vec![3]);
        assert_eq!(
            during.isr,
            vec![1, 2, 3],
            "the ISR is untouched until 4 catches up"
        );
        assert_eq!(change.leader, None);
        assert_eq!(during.target_replicas(), vec![1, 2, 4]);
        assert_eq!(during.original_replicas(), vec![1, 2, 3]);

        // 4 joins the ISR: complete, 3 leaves assignment and ISR.
        let done = completion(&during, &[1, 2, 3, 4], &any).unwrap();
        assert_eq!(done.replicas, vec![1, 2, 4]);
        assert_eq!(done.isr, vec![1, 2, 4]);
        assert!(!done.leader_changed);
        // Not while 4 is still outside.
        assert_eq!(completion(&during, &[1, 2, 3], &any), None);
    }

    #[test]
    fn a_removed_leader_hands_over_to_the_first_target_replica_that_can_lead() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let change = alter(Uuid::nil(), 0, &p, Some(&[2, 3, 4]), &brokers_1_to_4, &any)
            .unwrap()
            .unwrap();
        let during = p.changed(&change);
        assert_eq!(during.leader, 1, "the old leader leads until completion");
        let cannot_lead_2 = |b: NodeId| b != 2;
        let done = completion(&during, &[1, 2, 3, 4], &cannot_lead_2).unwrap();
        assert_eq!(done.leader, 3);
        assert!(done.leader_changed);
        assert_eq!(done.replicas, vec![2, 3, 4]);
    }

    #[test]
    fn reordering_or_dropping_in_sync_replicas_completes_at_once() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let change = alter(Uuid::nil(), 0, &p, Some(&[3, 1]), &brokers_1_to_4, &any)
            .unwrap()
            .unwrap();
        let after = p.changed(&change);
        assert_eq!(after.replicas, vec![3, 1]);
        assert_eq!(after.isr, vec![1, 3]);
        assert!(!after.is_reassigning());
        assert_eq!(
            after.leader, 1,
            "a leader that stays a replica keeps leading"
        );
        // The same assignment again: nothing to do.
        assert_eq!(
            alter(Uuid::nil(), 0, &p, Some(&[1, 2, 3]), &brokers_1_to_4, &any),
            Ok(None)
        );
    }

    #[test]
    fn bad_targets_are_refused_with_invalid_replica_assignment() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        for target in [&[][..], &[1, 1, 2][..], &[1, 2, 9][..]] {
            let refused = alter(Uuid::nil(), 0, &p, Some(target), &brokers_1_to_4, &any);
            assert_eq!(
                refused.map_err(|e| e.0),
                Err(ErrorCode::InvalidReplicaAssignment),
                "{target:?}"
            );
        }
    }

    #[test]
    fn cancelling_goes_back_to_the_original_assignment() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        assert_eq!(
            alter(Uuid::nil(), 0, &p, None, &brokers_1_to_4, &any).map_err(|e| e.0),
            Err(ErrorCode::NoReassignmentInProgress)
        );
        let during = p.changed(
            &alter(Uuid::nil(), 0, &p, Some(&[4, 5, 6]), &any, &any)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(during.replicas, vec![4, 5, 6, 1, 2, 3]);
        // 4 made it into the ISR and even leads by now.
        let during = PartitionImage {
            isr: vec![1, 2, 3, 4],
            leader: 4,
            ..during
        };
        let reverted = during.changed(
            &alter(Uuid::nil(), 0, &during, None, &any, &any)
                .unwrap()
                .unwrap(),
        );
        assert_eq!(reverted.replicas, vec![1, 2, 3]);
        assert_eq!(reverted.isr, vec![1, 2, 3]);
        assert_eq!(reverted.leader, 1);
        assert!(!reverted.is_reassigning());
    }

    #[test]
    fn a_cancel_that_would_empty_the_isr_is_refused() {
        let p = PartitionImage {
            replicas: vec![4, 1],
            adding_replicas: vec![4],
            removing_replicas: vec![1],
            isr: vec![4],
            leader: 4,
            ..partition(&[1], &[1], 1)
        };
        assert_eq!(
            alter(Uuid::nil(), 0, &p, None, &any, &any).map_err(|e| e.0),
            Err(ErrorCode::InvalidReplicaAssignment)
        );
    }

    #[test]
    fn a_new_target_replaces_the_one_in_progress() {
        let p = partition(&[1, 2, 3], &[1, 2, 3], 1);
        let first = p.changed(
            &alter(Uuid::nil(), 0, &p, Some(&[1, 2, 4]), &brokers_1_to_4, &any)
                .unwrap()
                .unwrap(),
        );
        // 4 never caught up; now 3 is to stay and 4 to go.
        let second = first.changed(
            &alter(
                Uuid::nil(),
                0,
                &first,
                Some(&[1, 2, 3]),
                &brokers_1_to_4,
                &any,
            )
            .unwrap()
            .unwrap(),
        );
        assert_eq!(second.replicas, vec![1, 2, 3]);
        assert!(!second.is_reassigning());
    }
}
