//! Transactional offset commits (KIP-98, KIP-447): TxnOffsetCommit writes
//! the offsets to `__consumer_offsets` as a transactional batch of the
//! committing producer, and holds them pending; the producer's commit marker
//! on that partition makes them the group's committed offsets, its abort
//! marker drops them. Until then a fetch requiring stable offsets gets
//! UNSTABLE_OFFSET_COMMIT, which is how exactly-once consumers avoid reading
//! from an offset a transaction may still undo.

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

use super::error::{code, map_offset_store_error, GroupError};
use super::records::{self, OffsetValue};
use super::state::{CommittedOffset, Group, GroupState};
use super::GroupCoordinator;

impl GroupCoordinator {
    /// TxnOffsetCommit (v0-v4). Topic existence and authorization are the
    /// caller's.
    pub async fn txn_offset_commit(
        self: &Rc<Self>,
        req: TxnOffsetCommitRequest,
        version: i16,
    ) -> TxnOffsetCommitResponse {
        self.ensure_timer_task();
        let plan = self.txn_commit_step(&req, version);
        let outcome: Result<Vec<(String, i32, CommittedOffset)>, ErrorCode> = match plan {
            Err(e) => Err(code(e)),
            Ok((entries, records)) => {
                let written = self
                    .log
                    .append_transactional(records, req.producer_id.0, req.producer_epoch)
                    .await;
                match written {
                    Ok(()) => Ok(entries),
                    // A producer fenced at the partition is fenced here too.
                    Err(ErrorCode::InvalidProducerEpoch) if version >= 3 => {
                        Err(ErrorCode::ProducerFenced)
                    }
                    Err(c) => Err(code(map_offset_store_error(c))),
                }
            }
        };
        let error = match outcome {
            Ok(entries) => {
                let mut groups = self.groups.borrow_mut();
                match groups.get_mut(req.group_id.as_str()) {
                    Some(g) => {
                        let pending = g.pending_txn_offsets.entry(req.producer_id.0).or_default();
                        for (t, p, o) in entries {
                            pending.insert((t, p), o);
                        }
                        ErrorCode::None
                    }
                    None => ErrorCode::CoordinatorNotAvailable,
                }
            }
            Err(c) => c,
        };
        let mut r = TxnOffsetCommitResponse::default();
        r.topics = req
            .topics
            .iter()
            .map(|t| {
                let mut rt = TxnOffsetCommitResponseTopic::default();
                rt.name = t.name.clone();
                rt.partitions = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let mut rp = TxnOffsetCommitResponsePartition::default();
                        rp.partition_index = p.partition_index;
                        rp.error_code = error.code();
                        rp
                    })
                    .collect();
                rt
            })
            .collect();
        r
    }

    /// Checks the group (KIP-447 generation and member fencing) and builds
    /// the records to write.
    #[allow(clippy::type_complexity)]
    fn txn_commit_step(
        &self,
        req: &TxnOffsetCommitRequest,
        version: i16,
    ) -> Result<
        (
            Vec<(String, i32, CommittedOffset)>,
            Vec<(Bytes, Option<Bytes>)>,
        ),
        GroupError,
    > {
        if self.is_shut_down() {
            return Err(GroupError::NotCoordinator);
        }
        let group_id = req.group_id.as_str();
        let now = now_ms();
        let mut groups = self.groups.borrow_mut();
        // Kafka creates the group: a transactional producer may commit for a
        // group that has never had members (e.g. a standalone consumer).
        let group = groups
            .entry(group_id.to_owned())
            .or_insert_with(|| Group::new(group_id, self.new_incarnation(), now));
        if group.is(&GroupState::Dead) {
            return Err(GroupError::CoordinatorNotAvailable);
        }
        if version >= 3 {
            let member_id = req.member_id.as_str();
            let instance_id = req.group_instance_id.as_deref();
            if group.is_static_member_fenced(instance_id, member_id) {
                return Err(GroupError::FencedInstanceId);
            }
            if !member_id.is_empty() && !group.members.contains_key(member_id) {
                return Err(GroupError::UnknownMemberId);
            }
            if req.generation_id >= 0 && req.generation_id != group.generation {
                return Err(GroupError::IllegalGeneration);
            }
        }
        let max_metadata = self.config.offset_metadata_max_bytes.max(0) as usize;
        let mut entries = Vec::new();
        let mut records = Vec::new();
        for t in &req.topics {
            for p in &t.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or("").to_owned();
                if metadata.len() > max_metadata {
                    return Err(GroupError::OffsetMetadataTooLarge);
                }
                let o = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_timestamp_ms: now,
                    expire_timestamp_ms: None,
                };
                records.push((
                    records::offset_key(group_id, t.name.as_str(), p.partition_index),
                    Some(records::offset_value(&OffsetValue {
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_timestamp_ms: now,
                        expire_timestamp_ms: None,
                    })),
                ));
                entries.push((t.name.to_string(), p.partition_index, o));
            }
        }
        Ok((entries, records))
    }

    /// A commit or abort marker of `producer_id` was written to the
    /// `__consumer_offsets` partition whose groups `in_partition` selects:
    /// its pending transactional offsets become committed, or vanish.
    /// Returns how many offsets were settled.
    pub fn complete_txn(
        &self,
        producer_id: i64,
        commit: bool,
        in_partition: impl Fn(&str) -> bool,
    ) -> usize {
        let mut settled = 0;
        for group in self.groups.borrow_mut().values_mut() {
            if !in_partition(&group.id) {
                continue;
            }
            let Some(offsets) = group.pending_txn_offsets.remove(&producer_id) else {
                continue;
            };
            settled += offsets.len();
            if commit {
                for ((topic, partition), o) in offsets {
                    group.offsets.entry(topic).or_default().insert(partition, o);
                }
            }
        }
        settled
    }
}
