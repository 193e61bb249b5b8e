//! Committed offsets and group deletion, as Kafka's GroupCoordinator and
//! GroupMetadataManager handle them: OffsetCommit with generation fencing
//! (simple "generation -1" commits allowed for groups without members),
//! offsets written to the log before they are visible or acknowledged;
//! OffsetFetch (-1 for unknown partitions, UNSTABLE_OFFSET_COMMIT for
//! in-flight commits when stability is required); OffsetDelete (refused for
//! topics a consumer group subscribes to); DeleteGroups (tombstones for the
//! offsets and the group); and the periodic offset-retention sweep.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    GroupId, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

use super::error::{code, map_offset_store_error, GroupError};
use super::membership::ms;
use super::records::{self, OffsetValue};
use super::state::{CommittedOffset, Group, GroupState, CONSUMER_PROTOCOL_TYPE};
use super::GroupCoordinator;

/// One group's answer to an OffsetFetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchGroupResult {
    pub error_code: ErrorCode,
    pub topics: Vec<OffsetFetchTopicResult>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetFetchTopicResult {
    pub name: String,
    pub partitions: Vec<OffsetFetchPartitionResult>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchPartitionResult {
    pub partition_index: i32,
    /// -1 when nothing is committed.
    pub committed_offset: i64,
    /// -1 when unknown.
    pub committed_leader_epoch: i32,
    pub metadata: String,
    pub error_code: ErrorCode,
}

impl OffsetFetchPartitionResult {
    pub fn none(partition_index: i32, error_code: ErrorCode) -> Self {
        OffsetFetchPartitionResult {
            partition_index,
            committed_offset: -1,
            committed_leader_epoch: -1,
            metadata: String::new(),
            error_code,
        }
    }
}

impl OffsetFetchGroupResult {
    /// The v1-v7 top-level topics of an OffsetFetchResponse (the caller sets
    /// the response's `error_code` from `self.error_code` for v2+).
    pub fn into_response_topics(self, version: i16) -> Vec<OffsetFetchResponseTopic> {
        self.topics
            .into_iter()
            .map(|t| {
                let mut rt = OffsetFetchResponseTopic::default();
                rt.name = TopicName(StrBytes::from_string(t.name));
                rt.partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let mut rp = OffsetFetchResponsePartition::default();
                        rp.partition_index = p.partition_index;
                        rp.committed_offset = p.committed_offset;
                        if version >= 5 {
                            rp.committed_leader_epoch = p.committed_leader_epoch;
                        }
                        rp.metadata = Some(StrBytes::from_string(p.metadata));
                        rp.error_code = p.error_code.code();
                        rp
                    })
                    .collect();
                rt
            })
            .collect()
    }

    /// The v8-v9 group entry of an OffsetFetchResponse. (v10 identifies
    /// topics by id: the caller maps names to ids and clears `name`.)
    pub fn into_response_group(self, group_id: &str) -> OffsetFetchResponseGroup {
        let mut g = OffsetFetchResponseGroup::default();
        g.group_id = GroupId(StrBytes::from_string(group_id.to_owned()));
        g.error_code = self.error_code.code();
        g.topics = self
            .topics
            .into_iter()
            .map(|t| {
                let mut rt = OffsetFetchResponseTopics::default();
                rt.name = TopicName(StrBytes::from_string(t.name));
                rt.partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let mut rp = OffsetFetchResponsePartitions::default();
                        rp.partition_index = p.partition_index;
                        rp.committed_offset = p.committed_offset;
                        rp.committed_leader_epoch = p.committed_leader_epoch;
                        rp.metadata = Some(StrBytes::from_string(p.metadata));
                        rp.error_code = p.error_code.code();
                        rp
                    })
                    .collect();
                rt
            })
            .collect();
        g
    }
}

/// One partition of an OffsetCommit: what to write, or why not.
struct CommitEntry {
    topic: String,
    partition: i32,
    result: Result<CommittedOffset, ErrorCode>,
}

struct CommitPlan {
    incarnation: u64,
    entries: Vec<CommitEntry>,
    records: Vec<(Bytes, Option<Bytes>)>,
}

/// What an offset's age is measured from, per Kafka's removeExpiredOffsets.
#[derive(Clone, Copy)]
enum ExpiryRule {
    /// Empty group with a protocol type: since it became empty (else since the commit).
    SinceEmpty(Option<i64>),
    /// Stable consumer group: offsets of unsubscribed topics, since the commit.
    UnsubscribedSinceCommit,
    /// No group management: since the commit.
    SinceCommit,
}

fn tombstone_offset(group: &str, topic: &str, partition: i32) -> (Bytes, Option<Bytes>) {
    (records::offset_key(group, topic, partition), None)
}

impl GroupCoordinator {
    // ------------------------------------------------------------ OffsetCommit

    /// OffsetCommit (v2-v9). Topic and partition existence is the caller's.
    pub async fn offset_commit(
        self: &Rc<Self>,
        req: OffsetCommitRequest,
        version: i16,
    ) -> OffsetCommitResponse {
        self.ensure_timer_task();
        let group_id = req.group_id.to_string();
        let errors: Vec<ErrorCode> = match self.commit_step(&req, version) {
            Err(e) => vec![code(e); req.topics.iter().map(|t| t.partitions.len()).sum()],
            Ok(plan) => {
                let result = if plan.records.is_empty() {
                    Ok(())
                } else {
                    self.log.append(plan.records).await
                };
                self.finish_commit(&group_id, plan.incarnation, &plan.entries, result);
                let write_error = match result {
                    Ok(()) => ErrorCode::None,
                    Err(c) => code(map_offset_store_error(c)),
                };
                plan.entries
                    .iter()
                    .map(|e| e.result.as_ref().map_or_else(|c| *c, |_| write_error))
                    .collect()
            }
        };
        let mut errors = errors.into_iter();
        let mut r = OffsetCommitResponse::default();
        r.topics = req
            .topics
            .iter()
            .map(|t| {
                let mut rt = OffsetCommitResponseTopic::default();
                rt.name = t.name.clone();
                rt.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut rp = OffsetCommitResponsePartition::default();
                        rp.partition_index = p.partition_index;
                        rp.error_code = errors.next().unwrap_or(ErrorCode::None).code();
                        rp
                    })
                    .collect();
                rt
            })
            .collect();
        r
    }

    fn commit_step(
        &self,
        req: &OffsetCommitRequest,
        version: i16,
    ) -> Result<CommitPlan, GroupError> {
        if self.is_shut_down() {
            return Err(GroupError::NotCoordinator);
        }
        let group_id = req.group_id.as_str();
        let generation = req.generation_id_or_member_epoch;
        let member_id = req.member_id.as_str();
        let instance_id = if version >= 7 {
            req.group_instance_id.as_deref()
        } else {
            None
        };
        let now_ms = now_ms();
        let mut groups = self.groups.borrow_mut();
        if !groups.contains_key(group_id) {
            if generation >= 0 {
                // A member of a generation we do not know (e.g. after the group expired).
                return Err(GroupError::IllegalGeneration);
            }
            // Not using group management: offsets storage only.
            groups.insert(
                group_id.to_owned(),
                Group::new(group_id, self.new_incarnation(), now_ms),
            );
        }
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::CoordinatorNotAvailable)?;
        if group.is(&GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if generation >= 0 || !member_id.is_empty() || instance_id.is_some() {
            if group.is_static_member_fenced(instance_id, member_id) {
                return Err(GroupError::FencedInstanceId);
            }
            if !group.members.contains_key(member_id) {
                return Err(GroupError::UnknownMemberId);
            }
            if generation != group.generation {
                return Err(GroupError::IllegalGeneration);
            }
        } else if !group.is(&GroupState::Empty) {
            // Only members may commit for a group that has members.
            return Err(GroupError::UnknownMemberId);
        }
        match group.state() {
            GroupState::Empty => {}
            GroupState::Stable | GroupState::PreparingRebalance(_) => {
                // Rebalance news reaches the member through its heartbeat.
                if let Some(m) = group.members.get_mut(member_id) {
                    m.deadline = Instant::now() + ms(m.session_timeout_ms);
                }
            }
            GroupState::CompletingRebalance => return Err(GroupError::RebalanceInProgress),
            GroupState::Dead => return Err(GroupError::CoordinatorNotAvailable),
        }

        // v2-v4 may carry an explicit retention (-1 = broker default).
        let expire_timestamp_ms = if version <= 4 && req.retention_time_ms != -1 {
            Some(now_ms.saturating_add(req.retention_time_ms))
        } else {
            None
        };
        let max_metadata = self.config.offset_metadata_max_bytes.max(0) as usize;
        let mut entries = Vec::new();
        let mut records = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                let topic = t.name.to_string();
                let metadata = p.committed_metadata.as_deref().unwrap_or("");
                let result = if metadata.len() > max_metadata {
                    Err(code(GroupError::OffsetMetadataTooLarge))
                } else {
                    let offset = CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 6 {
                            p.committed_leader_epoch
                        } else {
                            -1
                        },
                        metadata: metadata.to_owned(),
                        commit_timestamp_ms: now_ms,
                        expire_timestamp_ms,
                    };
                    records.push((
                        records::offset_key(group_id, &topic, p.partition_index),
                        Some(records::offset_value(&OffsetValue {
                            offset: offset.offset,
                            leader_epoch: offset.leader_epoch,
                            metadata: offset.metadata.clone(),
                            commit_timestamp_ms: offset.commit_timestamp_ms,
                            expire_timestamp_ms: offset.expire_timestamp_ms,
                        })),
                    ));
                    *group
                        .pending_commits
                        .entry((topic.clone(), p.partition_index))
                        .or_default() += 1;
                    Ok(offset)
                };
                entries.push(CommitEntry {
                    topic,
                    partition: p.partition_index,
                    result,
                });
            }
        }
        Ok(CommitPlan {
            incarnation: group.incarnation,
            entries,
            records,
        })
    }

    fn finish_commit(
        &self,
        group_id: &str,
        incarnation: u64,
        entries: &[CommitEntry],
        result: Result<(), ErrorCode>,
    ) {
        let mut groups = self.groups.borrow_mut();
        let Some(group) = groups
            .get_mut(group_id)
            .filter(|g| g.incarnation == incarnation)
        else {
            return;
        };
        for e in entries {
            let Ok(offset) = &e.result else { continue };
            let key = (e.topic.clone(), e.partition);
            if let Some(n) = group.pending_commits.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    group.pending_commits.remove(&key);
                }
            }
            if result.is_ok() && !group.is(&GroupState::Dead) {
                group
                    .offsets
                    .entry(e.topic.clone())
                    .or_default()
                    .insert(e.partition, offset.clone());
            }
        }
    }

    // ------------------------------------------------------------ OffsetFetch

    /// One group's part of an OffsetFetch. `topics: None` = every committed
    /// partition of the group. Unknown groups and partitions read as -1.
    pub fn offset_fetch(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> OffsetFetchGroupResult {
        if self.is_shut_down() {
            return OffsetFetchGroupResult {
                error_code: code(GroupError::NotCoordinator),
                topics: Vec::new(),
            };
        }
        let groups = self.groups.borrow();
        let group = groups.get(group_id).filter(|g| !g.is(&GroupState::Dead));
        let topics = match (topics, group) {
            (Some(topics), group) => topics
                .into_iter()
                .map(|(name, partitions)| {
                    let partitions = partitions
                        .into_iter()
                        .map(|p| match group {
                            Some(g) if require_stable && g.has_pending_offset(&name, p) => {
                                OffsetFetchPartitionResult::none(
                                    p,
                                    code(GroupError::UnstableOffsetCommit),
                                )
                            }
                            Some(g) => match g.offset(&name, p) {
                                Some(o) => OffsetFetchPartitionResult {
                                    partition_index: p,
                                    committed_offset: o.offset,
                                    committed_leader_epoch: o.leader_epoch,
                                    metadata: o.metadata.clone(),
                                    error_code: ErrorCode::None,
                                },
                                None => OffsetFetchPartitionResult::none(p, ErrorCode::None),
                            },
                            None => OffsetFetchPartitionResult::none(p, ErrorCode::None),
                        })
                        .collect();
                    OffsetFetchTopicResult { name, partitions }
                })
                .collect(),
            (None, Some(g)) => g
                .offsets
                .iter()
                .map(|(name, parts)| OffsetFetchTopicResult {
                    name: name.clone(),
                    partitions: parts
                        .iter()
                        .map(|(p, o)| {
                            if require_stable && g.has_pending_offset(name, *p) {
                                OffsetFetchPartitionResult::none(
                                    *p,
                                    code(GroupError::UnstableOffsetCommit),
                                )
                            } else {
                                OffsetFetchPartitionResult {
                                    partition_index: *p,
                                    committed_offset: o.offset,
                                    committed_leader_epoch: o.leader_epoch,
                                    metadata: o.metadata.clone(),
                                    error_code: ErrorCode::None,
                                }
                            }
                        })
                        .collect(),
                })
                .collect(),
            (None, None) => Vec::new(),
        };
        OffsetFetchGroupResult {
            error_code: ErrorCode::None,
            topics,
        }
    }

    // ------------------------------------------------------------ OffsetDelete

    /// OffsetDelete (v0).
    pub async fn offset_delete(
        self: &Rc<Self>,
        req: OffsetDeleteRequest,
        _version: i16,
    ) -> OffsetDeleteResponse {
        self.ensure_timer_task();
        let mut r = OffsetDeleteResponse::default();
        match self.offset_delete_step(&req) {
            Err(e) => r.error_code = code(e).code(),
            Ok((results, records)) => {
                if !records.is_empty() {
                    if let Err(c) = self.log.append(records).await {
                        r.error_code = code(map_offset_store_error(c)).code();
                    }
                }
                r.topics = results
                    .into_iter()
                    .filter(|(_, parts)| !parts.is_empty())
                    .map(|(name, parts)| {
                        let mut t = OffsetDeleteResponseTopic::default();
                        t.name = TopicName(StrBytes::from_string(name));
                        t.partitions = parts
                            .into_iter()
                            .map(|(p, e)| {
                                let mut rp = OffsetDeleteResponsePartition::default();
                                rp.partition_index = p;
                                rp.error_code = e.code();
                                rp
                            })
                            .collect();
                        t
                    })
                    .collect();
            }
        }
        r
    }

    #[allow(clippy::type_complexity)]
    fn offset_delete_step(
        &self,
        req: &OffsetDeleteRequest,
    ) -> Result<
        (
            Vec<(String, Vec<(i32, ErrorCode)>)>,
            Vec<(Bytes, Option<Bytes>)>,
        ),
        GroupError,
    > {
        if self.is_shut_down() {
            return Err(GroupError::NotCoordinator);
        }
        let group_id = req.group_id.as_str();
        let now_ms = now_ms();
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .filter(|g| !g.is(&GroupState::Dead))
            .ok_or(GroupError::GroupIdNotFound)?;
        let empty = group.is(&GroupState::Empty);
        if !empty && group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return Err(GroupError::NonEmptyGroup);
        }
        let mut results = Vec::new();
        let mut records = Vec::new();
        for t in &req.topics {
            let topic = t.name.as_str();
            let subscribed = !empty && group.is_subscribed_to(topic);
            let mut parts = Vec::new();
            for p in &t.partitions {
                let p = p.partition_index;
                if subscribed {
                    parts.push((p, code(GroupError::GroupSubscribedToTopic)));
                    continue;
                }
                let existed = group.remove_offset(topic, p).is_some();
                if existed {
                    records.push(tombstone_offset(group_id, topic, p));
                }
                // Like Kafka: an empty group answers only for partitions it had.
                if existed || !empty {
                    parts.push((p, ErrorCode::None));
                }
            }
            results.push((topic.to_owned(), parts));
        }
        if group.is(&GroupState::Empty) && !group.has_offsets() && group.pending_members.is_empty()
        {
            let _ = group.transition(GroupState::Dead, now_ms); // always allowed
            records.push((records::group_key(group_id), None));
            groups.remove(group_id);
        }
        Ok((results, records))
    }

    // ------------------------------------------------------------ DeleteGroups

    /// Deletes an empty group and its offsets (one group of a DeleteGroups).
    pub async fn delete_group(self: &Rc<Self>, group_id: &str) -> ErrorCode {
        self.ensure_timer_task();
        let records = match self.delete_group_step(group_id) {
            Ok(records) => records,
            Err(e) => return code(e),
        };
        match self.log.append(records).await {
            Ok(()) => ErrorCode::None,
            Err(c) => code(map_offset_store_error(c)),
        }
    }

    fn delete_group_step(&self, group_id: &str) -> Result<Vec<(Bytes, Option<Bytes>)>, GroupError> {
        if self.is_shut_down() {
            return Err(GroupError::NotCoordinator);
        }
        let now_ms = now_ms();
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .get_mut(group_id)
            .ok_or(GroupError::GroupIdNotFound)?;
        match group.state() {
            GroupState::Dead => return Err(GroupError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Err(GroupError::NonEmptyGroup),
        }
        let _ = group.transition(GroupState::Dead, now_ms); // always allowed
                                                            // Commits still being written get tombstones too, so a replay cannot
                                                            // bring them back without their group.
        let mut partitions: Vec<(String, i32)> = group
            .offsets
            .iter()
            .flat_map(|(t, parts)| parts.keys().map(move |p| (t.clone(), *p)))
            .collect();
        partitions.extend(
            group
                .pending_commits
                .keys()
                .filter(|k| group.offset(&k.0, k.1).is_none())
                .cloned(),
        );
        let mut records: Vec<(Bytes, Option<Bytes>)> = partitions
            .iter()
            .map(|(t, p)| tombstone_offset(group_id, t, *p))
            .collect();
        records.push((records::group_key(group_id), None));
        // Pending members (MEMBER_ID_REQUIRED) rejoin as unknown members.
        groups.remove(group_id);
        tracing::info!(group = group_id, "group deleted");
        Ok(records)
    }

    // ------------------------------------------------------------ retention

    /// Kafka's offset expiration: offsets of empty groups expire
    /// `offsets.retention.minutes` after the group became empty; offsets of
    /// stable consumer groups for topics no longer subscribed, and offsets of
    /// groups without group management, expire that long after their commit.
    /// An empty group left without offsets is deleted.
    pub(super) fn expire_offsets(&self, now_ms: i64) {
        let retention_ms =
            (self.config.offsets_retention_minutes.max(0) as i64).saturating_mul(60_000);
        let mut records = Vec::new();
        let mut dead = Vec::new();
        let mut groups = self.groups.borrow_mut();
        for group in groups.values_mut() {
            let empty = group.is(&GroupState::Empty);
            let rule = match (group.protocol_type.as_deref(), group.state()) {
                (Some(_), GroupState::Empty) => ExpiryRule::SinceEmpty(group.state_timestamp_ms),
                (Some(CONSUMER_PROTOCOL_TYPE), GroupState::Stable)
                    if group.subscribed_topics.is_some() =>
                {
                    ExpiryRule::UnsubscribedSinceCommit
                }
                (None, _) => ExpiryRule::SinceCommit,
                _ => continue,
            };
            let mut expired = Vec::new();
            for (topic, parts) in &group.offsets {
                for (p, o) in parts {
                    if group.pending_commits.contains_key(&(topic.clone(), *p)) {
                        continue;
                    }
                    let base_ts = match rule {
                        ExpiryRule::SinceEmpty(ts) => ts.unwrap_or(o.commit_timestamp_ms),
                        ExpiryRule::UnsubscribedSinceCommit if group.is_subscribed_to(topic) => {
                            continue
                        }
                        ExpiryRule::UnsubscribedSinceCommit | ExpiryRule::SinceCommit => {
                            o.commit_timestamp_ms
                        }
                    };
                    let is_expired = match o.expire_timestamp_ms {
                        Some(expire) => now_ms >= expire,
                        None => now_ms.saturating_sub(base_ts) >= retention_ms,
                    };
                    if is_expired {
                        expired.push((topic.clone(), *p));
                    }
                }
            }
            for (topic, p) in &expired {
                group.remove_offset(topic, *p);
                records.push(tombstone_offset(&group.id, topic, *p));
            }
            if !expired.is_empty() {
                tracing::info!(group = %group.id, count = expired.len(), "expired committed offsets");
            }
            if empty && !group.has_offsets() && group.pending_members.is_empty() {
                let _ = group.transition(GroupState::Dead, now_ms); // always allowed
                records.push((records::group_key(&group.id), None));
                dead.push(group.id.clone());
            }
        }
        for id in dead {
            groups.remove(&id);
        }
        drop(groups);
        self.append_detached(records, "offset expiration tombstones");
    }
}
