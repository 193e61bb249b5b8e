//! Start-up replay of the coordinator's own `__consumer_offsets` records, as
//! Kafka's GroupMetadataManager loads a partition: the last record per key
//! wins and tombstones erase; groups come back with their generation,
//! protocol, leader and members (Stable when they have members, else
//! Empty), and every member gets a fresh session deadline, so members that
//! do not heartbeat after a restart expire; groups known only through
//! offsets come back Empty.

use std::collections::HashMap;
use std::time::Instant;

use sluice_protocol::clock::now_ms;

use super::membership::ms;
use super::records::{self, GroupValue, RecordKey};
use super::state::{CommittedOffset, Group, Member};
use super::GroupCoordinator;
use crate::log::replay::LogEntry;

impl GroupCoordinator {
    /// Replays records previously appended (in order), at start-up before
    /// serving. Transactional offset commits count once their producer's
    /// commit marker follows, vanish at its abort marker, and stay pending
    /// (UNSTABLE_OFFSET_COMMIT for stable fetches) while neither has.
    pub fn load<E: Into<LogEntry>>(&self, log_records: impl IntoIterator<Item = E>) {
        type OffsetKey = (String, String, i32);
        let mut offsets: HashMap<OffsetKey, Option<CommittedOffset>> = HashMap::new();
        let mut pending_txn: HashMap<i64, HashMap<OffsetKey, CommittedOffset>> = HashMap::new();
        let mut group_values: HashMap<String, Option<GroupValue>> = HashMap::new();
        let mut skipped = 0usize;
        for entry in log_records {
            let (key, value, txn_producer) = match entry.into() {
                LogEntry::Record {
                    key,
                    value,
                    txn_producer,
                } => (key, value, txn_producer),
                LogEntry::TxnMarker {
                    producer_id,
                    commit,
                } => {
                    if let Some(settled) = pending_txn.remove(&producer_id) {
                        if commit {
                            offsets.extend(settled.into_iter().map(|(k, o)| (k, Some(o))));
                        }
                    }
                    continue;
                }
            };
            match records::decode_key(&key) {
                Some(RecordKey::Offset {
                    group,
                    topic,
                    partition,
                }) => match value {
                    None => {
                        offsets.insert((group, topic, partition), None);
                    }
                    Some(v) => match records::decode_offset_value(&v) {
                        Some(o) => {
                            let o = CommittedOffset {
                                offset: o.offset,
                                leader_epoch: o.leader_epoch,
                                metadata: o.metadata,
                                commit_timestamp_ms: o.commit_timestamp_ms,
                                expire_timestamp_ms: o.expire_timestamp_ms,
                            };
                            let k = (group, topic, partition);
                            match txn_producer {
                                Some(pid) => {
                                    pending_txn.entry(pid).or_default().insert(k, o);
                                }
                                None => {
                                    offsets.insert(k, Some(o));
                                }
                            }
                        }
                        None => skipped += 1,
                    },
                },
                Some(RecordKey::Group { group }) => match value {
                    None => {
                        group_values.insert(group, None);
                    }
                    Some(v) => match records::decode_group_value(&v) {
                        Some(g) => {
                            group_values.insert(group, Some(g));
                        }
                        None => skipped += 1,
                    },
                },
                None => skipped += 1,
            }
        }
        if skipped > 0 {
            tracing::warn!(
                skipped,
                "skipped unreadable or foreign records while loading groups"
            );
        }

        let now = Instant::now();
        let now_ms = now_ms();
        let mut loaded: HashMap<String, Group> = HashMap::new();
        for (id, value) in group_values {
            let Some(value) = value else { continue };
            let mut group = Group::new(&id, self.new_incarnation(), now_ms);
            restore_group(&mut group, value, now);
            loaded.insert(id, group);
        }
        for ((group_id, topic, partition), offset) in offsets {
            let Some(offset) = offset else { continue };
            let group = loaded
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id, self.new_incarnation(), now_ms));
            group
                .offsets
                .entry(topic)
                .or_default()
                .insert(partition, offset);
        }

        for (pid, settled) in pending_txn {
            for ((group_id, topic, partition), offset) in settled {
                let group = loaded
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(&group_id, self.new_incarnation(), now_ms));
                group
                    .pending_txn_offsets
                    .entry(pid)
                    .or_default()
                    .insert((topic, partition), offset);
            }
        }

        let count = loaded.len();
        let mut groups = self.groups.borrow_mut();
        for (id, mut group) in loaded {
            if let Some(next) = group.next_deadline() {
                self.arm(&mut group, next);
            }
            groups.insert(id, group);
        }
        drop(groups);
        tracing::info!(groups = count, "loaded groups from the offsets log");
        self.ensure_timer_task();
    }
}

fn restore_group(group: &mut Group, v: GroupValue, now: Instant) {
    group.protocol_type = Some(v.protocol_type.clone()).filter(|t| !t.is_empty());
    group.generation = v.generation;
    group.protocol_name = v.protocol.clone();
    group.leader = v.leader;
    group.state_timestamp_ms =
        (v.current_state_timestamp_ms >= 0).then_some(v.current_state_timestamp_ms);
    let protocol = v.protocol.unwrap_or_default();
    for m in v.members {
        if let Some(instance) = &m.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        group.members.insert(
            m.member_id.clone(),
            Member {
                id: m.member_id,
                instance_id: m.group_instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms: m.session_timeout_ms,
                protocol_type: v.protocol_type.clone(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                deadline: now + ms(m.session_timeout_ms),
            },
        );
    }
    if group
        .leader
        .as_ref()
        .is_none_or(|l| !group.members.contains_key(l))
    {
        group.leader = group.members.keys().next().cloned();
    }
    if let Err(e) = group.settle_loaded_state() {
        tracing::error!(group = %group.id, error = %e, "loaded group is not new");
    }
    group.subscribed_topics = group.compute_subscribed_topics();
}
