//! The metadata image: what the metadata log says at one offset, built by
//! applying [`MetadataRecord`]s in log order. `apply` is pure and
//! deterministic (no clock, no randomness, no I/O), so every controller that
//! applies the same committed log holds the same image; a record that breaks
//! an invariant (an unknown topic, a stale broker epoch, an overlapping
//! producer-id block) is refused with a [`RecordError`] on every node alike
//! and changes nothing. Batches apply atomically. The image also encodes to
//! and decodes from a versioned, CRC-checked snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use super::records::{
    BrokerRegistration, ConfigRecord, ConfigResourceType, MetadataRecord, NodeId, PartitionChange,
    PartitionRecord, ProducerIdsBlock, ScramCredential, ScramMechanism, NO_LEADER,
};

/// Why a record was refused; the code is what a Kafka client is answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}: {message}", code.name())]
pub struct RecordError {
    #[serde(with = "error_code_serde")]
    pub code: ErrorCode,
    pub message: String,
}

impl RecordError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RecordError {
            code,
            message: message.into(),
        }
    }
}

/// `ErrorCode` travels and is stored as its wire code.
mod error_code_serde {
    use serde::{Deserialize, Deserializer, Serializer};
    use sluice_protocol::ErrorCode;

    pub fn serialize<S: Serializer>(code: &ErrorCode, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i16(code.code())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ErrorCode, D::Error> {
        Ok(ErrorCode::from_code(i16::deserialize(d)?))
    }
}

/// A registered broker and whether it is fenced.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BrokerState {
    pub registration: BrokerRegistration,
    pub fenced: bool,
    /// This registration ended in a controlled shutdown (fenced by it and
    /// not unfenced since): the process stopped cleanly.
    #[serde(default)]
    pub shut_down_cleanly: bool,
}

/// A partition's assignment and leadership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionImage {
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    pub elr: Vec<NodeId>,
    /// KIP-966's last known ELR (see [`PartitionChange::last_known_elr`]).
    #[serde(default)]
    pub last_known_elr: Vec<NodeId>,
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// A reassignment in progress (KIP-455): replicas being added, which
    /// complete it once all of the target is in the ISR...
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<NodeId>,
    /// ...and replicas that leave `replicas` when it completes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<NodeId>,
}

impl PartitionImage {
    pub fn is_reassigning(&self) -> bool {
        !self.adding_replicas.is_empty() || !self.removing_replicas.is_empty()
    }

    /// Where a reassignment in progress goes: the replicas without those
    /// being removed (the assignment itself when none is in progress).
    pub fn target_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing_replicas.contains(r))
            .collect()
    }

    /// This partition with `c` applied: the fields it sets, the partition
    /// epoch bumped, and the leader epoch too when the leader changes. Not
    /// checked (the image checks before it keeps the result).
    pub fn changed(&self, c: &PartitionChange) -> PartitionImage {
        let mut next = self.clone();
        if let Some(replicas) = &c.replicas {
            next.replicas = replicas.clone();
        }
        if let Some(isr) = &c.isr {
            next.isr = isr.clone();
        }
        if let Some(elr) = &c.elr {
            next.elr = elr.clone();
        }
        if let Some(last_known) = &c.last_known_elr {
            next.last_known_elr = last_known.clone();
        }
        if let Some(adding) = &c.adding_replicas {
            next.adding_replicas = adding.clone();
        }
        if let Some(removing) = &c.removing_replicas {
            next.removing_replicas = removing.clone();
        }
        if let Some(leader) = c.leader {
            if leader != next.leader {
                next.leader = leader;
                next.leader_epoch = next.leader_epoch.saturating_add(1);
            }
        }
        next.partition_epoch = next.partition_epoch.saturating_add(1);
        next
    }

    /// The assignment before a reassignment in progress: the replicas
    /// without those being added (what cancelling it goes back to).
    pub fn original_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.adding_replicas.contains(r))
            .collect()
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: Uuid,
    pub partitions: BTreeMap<i32, PartitionImage>,
}

/// The whole metadata state at `offset`. Topics sit behind `Arc`s so that
/// publishing a new image after a change copies only the changed topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// The index of the last log entry reflected here (0: none yet).
    pub offset: u64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<NodeId, BrokerState>,
    pub topics: BTreeMap<Uuid, Arc<TopicImage>>,
    pub topic_ids: BTreeMap<String, Uuid>,
    /// Topic name -> config overrides.
    pub topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Broker id (or "" for the cluster default) -> config overrides.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// Every producer id below this is handed out.
    pub next_producer_id: i64,
    /// Each broker's latest block.
    pub producer_id_blocks: BTreeMap<NodeId, ProducerIdsBlock>,
    pub scram_credentials: BTreeMap<(String, ScramMechanism), ScramCredential>,
    /// Client quotas (AlterClientQuotas), entity -> key -> value.
    pub client_quotas: crate::quota::ClientQuotas,
}

impl MetadataImage {
    pub fn topic_by_name(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topic_ids.get(name).and_then(|id| self.topics.get(id))
    }

    pub fn partition(&self, topic_id: Uuid, partition: i32) -> Option<&PartitionImage> {
        self.topics.get(&topic_id)?.partitions.get(&partition)
    }

    pub fn broker(&self, broker_id: NodeId) -> Option<&BrokerState> {
        self.brokers.get(&broker_id)
    }

    /// Registered brokers that are not fenced, in id order.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerState> {
        self.brokers.values().filter(|b| !b.fenced)
    }

    /// The record that hands the next `size` producer ids to `broker_id`.
    pub fn next_producer_ids_block(&self, broker_id: NodeId, size: i32) -> ProducerIdsBlock {
        ProducerIdsBlock {
            broker_id,
            first_id: self.next_producer_id,
            size,
        }
    }

    /// Applies a batch atomically: on error the image is left as it was.
    pub fn apply_batch(&mut self, records: &[MetadataRecord]) -> Result<(), RecordError> {
        if let [record] = records {
            // A single record validates before it mutates; no copy needed.
            return self.apply(record);
        }
        let mut next = self.clone();
        for record in records {
            next.apply(record)?;
        }
        *self = next;
        Ok(())
    }

    /// Applies one record, or refuses it and changes nothing.
    pub fn apply(&mut self, record: &MetadataRecord) -> Result<(), RecordError> {
        match record {
            MetadataRecord::ClusterId { cluster_id } => self.apply_cluster_id(cluster_id),
            MetadataRecord::RegisterBroker(reg) => self.apply_register(reg),
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                self.registered(*broker_id, *broker_epoch)?;
                self.brokers.remove(broker_id);
                Ok(())
            }
            MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            } => self.set_fenced(*broker_id, *broker_epoch, true),
            MetadataRecord::ControlledShutdown {
                broker_id,
                broker_epoch,
            } => {
                self.set_fenced(*broker_id, *broker_epoch, true)?;
                if let Some(b) = self.brokers.get_mut(broker_id) {
                    b.shut_down_cleanly = true;
                }
                Ok(())
            }
            MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            } => self.set_fenced(*broker_id, *broker_epoch, false),
            MetadataRecord::Topic { name, topic_id } => self.apply_topic(name, *topic_id),
            MetadataRecord::Partition(p) => self.apply_partition(p),
            MetadataRecord::PartitionChange(c) => self.apply_partition_change(c),
            MetadataRecord::RemoveTopic { topic_id } => {
                let topic = self.topics.remove(topic_id).ok_or_else(|| {
                    RecordError::new(ErrorCode::UnknownTopicId, format!("no topic {topic_id}"))
                })?;
                self.topic_ids.remove(&topic.name);
                self.topic_configs.remove(&topic.name);
                Ok(())
            }
            MetadataRecord::Config(c) => self.apply_config(c),
            MetadataRecord::ProducerIdsBlock(block) => self.apply_producer_ids(*block),
            MetadataRecord::UserScramCredential(cred) => {
                if cred.name.is_empty() || cred.iterations <= 0 {
                    return Err(RecordError::new(
                        ErrorCode::UnacceptableCredential,
                        "SCRAM credential needs a user name and positive iterations",
                    ));
                }
                self.scram_credentials
                    .insert((cred.name.clone(), cred.mechanism), cred.clone());
                Ok(())
            }
            MetadataRecord::RemoveUserScramCredential { name, mechanism } => {
                match self.scram_credentials.remove(&(name.clone(), *mechanism)) {
                    Some(_) => Ok(()),
                    None => Err(RecordError::new(
                        ErrorCode::ResourceNotFound,
                        format!("no {mechanism:?} credential for user {name}"),
                    )),
                }
            }
            MetadataRecord::ClientQuota(alteration) => {
                crate::quota::entity::apply(&mut self.client_quotas, alteration);
                Ok(())
            }
        }
    }

    fn apply_cluster_id(&mut self, cluster_id: &str) -> Result<(), RecordError> {
        match &self.cluster_id {
            None => {
                self.cluster_id = Some(cluster_id.to_string());
                Ok(())
            }
            Some(existing) if existing == cluster_id => Ok(()),
            Some(existing) => Err(RecordError::new(
                ErrorCode::InconsistentClusterId,
                format!("cluster id is {existing}, not {cluster_id}"),
            )),
        }
    }

    fn apply_register(&mut self, reg: &BrokerRegistration) -> Result<(), RecordError> {
        if reg.broker_id < 0 {
            return Err(RecordError::new(
                ErrorCode::InvalidRequest,
                format!("broker id {} is negative", reg.broker_id),
            ));
        }
        if let Some(existing) = self.brokers.get(&reg.broker_id) {
            if reg.broker_epoch <= existing.registration.broker_epoch {
                return Err(RecordError::new(
                    ErrorCode::StaleBrokerEpoch,
                    format!(
                        "broker {} registers with epoch {}, not above its current {}",
                        reg.broker_id, reg.broker_epoch, existing.registration.broker_epoch
                    ),
                ));
            }
        }
        self.brokers.insert(
            reg.broker_id,
            BrokerState {
                registration: reg.clone(),
                fenced: true,
                shut_down_cleanly: false,
            },
        );
        Ok(())
    }

    fn registered(
        &self,
        broker_id: NodeId,
        broker_epoch: i64,
    ) -> Result<&BrokerState, RecordError> {
        let broker = self.brokers.get(&broker_id).ok_or_else(|| {
            RecordError::new(
                ErrorCode::BrokerIdNotRegistered,
                format!("broker {broker_id} is not registered"),
            )
        })?;
        if broker.registration.broker_epoch != broker_epoch {
            return Err(RecordError::new(
                ErrorCode::StaleBrokerEpoch,
                format!(
                    "broker {broker_id} has epoch {}, not {broker_epoch}",
                    broker.registration.broker_epoch
                ),
            ));
        }
        Ok(broker)
    }

    fn set_fenced(
        &mut self,
        broker_id: NodeId,
        broker_epoch: i64,
        fenced: bool,
    ) -> Result<(), RecordError> {
        self.registered(broker_id, broker_epoch)?;
        if let Some(broker) = self.brokers.get_mut(&broker_id) {
            broker.fenced = fenced;
            // Serving again: a later stop is judged afresh.
            if !fenced {
                broker.shut_down_cleanly = false;
            }
        }
        Ok(())
    }

    fn apply_topic(&mut self, name: &str, topic_id: Uuid) -> Result<(), RecordError> {
        if name.is_empty() || topic_id.is_nil() {
            return Err(RecordError::new(
                ErrorCode::InvalidTopicException,
                "a topic needs a name and a non-nil id",
            ));
        }
        if self.topic_ids.contains_key(name) {
            return Err(RecordError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic '{name}' already exists"),
            ));
        }
        if self.topics.contains_key(&topic_id) {
            return Err(RecordError::new(
                ErrorCode::TopicAlreadyExists,
                format!("topic id {topic_id} is already in use"),
            ));
        }
        self.topic_ids.insert(name.to_string(), topic_id);
        self.topics.insert(
            topic_id,
            Arc::new(TopicImage {
                name: name.to_string(),
                id: topic_id,
                partitions: BTreeMap::new(),
            }),
        );
        Ok(())
    }

    fn topic_mut(&mut self, topic_id: Uuid) -> Result<&mut TopicImage, RecordError> {
        self.topics
            .get_mut(&topic_id)
            .map(Arc::make_mut)
            .ok_or_else(|| {
                RecordError::new(ErrorCode::UnknownTopicId, format!("no topic {topic_id}"))
            })
    }

    fn apply_partition(&mut self, p: &PartitionRecord) -> Result<(), RecordError> {
        let image = PartitionImage {
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
            elr: p.elr.clone(),
            last_known_elr: Vec::new(),
            leader: p.leader,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            adding_replicas: Vec::new(),
            removing_replicas: Vec::new(),
        };
        check_partition(&image)?;
        if p.partition < 0 {
            return Err(RecordError::new(
                ErrorCode::InvalidPartitions,
                format!("partition index {} is negative", p.partition),
            ));
        }
        if self
            .topics
            .get(&p.topic_id)
            .is_some_and(|t| t.partitions.contains_key(&p.partition))
        {
            return Err(RecordError::new(
                ErrorCode::InvalidPartitions,
                format!("partition {} of {} already exists", p.partition, p.topic_id),
            ));
        }
        self.topic_mut(p.topic_id)?
            .partitions
            .insert(p.partition, image);
        Ok(())
    }

    fn apply_partition_change(&mut self, c: &PartitionChange) -> Result<(), RecordError> {
        let current = self.partition(c.topic_id, c.partition).ok_or_else(|| {
            RecordError::new(
                ErrorCode::UnknownTopicOrPartition,
                format!("no partition {} of {}", c.partition, c.topic_id),
            )
        })?;
        if let Some(expected) = c.expect_partition_epoch {
            if expected != current.partition_epoch {
                return Err(RecordError::new(
                    ErrorCode::InvalidUpdateVersion,
                    format!(
                        "partition {} of {} is at partition epoch {}, not {expected}",
                        c.partition, c.topic_id, current.partition_epoch
                    ),
                ));
            }
        }
        let next = current.changed(c);
        check_partition(&next)?;
        self.topic_mut(c.topic_id)?
            .partitions
            .insert(c.partition, next);
        Ok(())
    }

    fn apply_config(&mut self, c: &ConfigRecord) -> Result<(), RecordError> {
        if c.key.is_empty() {
            return Err(RecordError::new(
                ErrorCode::InvalidConfig,
                "a config needs a key",
            ));
        }
        let map = match c.resource_type {
            ConfigResourceType::Topic => {
                if !self.topic_ids.contains_key(&c.resource_name) {
                    return Err(RecordError::new(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("no topic '{}'", c.resource_name),
                    ));
                }
                &mut self.topic_configs
            }
            ConfigResourceType::Broker => {
                if !c.resource_name.is_empty() && c.resource_name.parse::<NodeId>().is_err() {
                    return Err(RecordError::new(
                        ErrorCode::InvalidRequest,
                        format!("broker resource '{}' is not a broker id", c.resource_name),
                    ));
                }
                &mut self.broker_configs
            }
        };
        match &c.value {
            Some(value) => {
                map.entry(c.resource_name.clone())
                    .or_default()
                    .insert(c.key.clone(), value.clone());
            }
            None => {
                if let Some(entries) = map.get_mut(&c.resource_name) {
                    entries.remove(&c.key);
                    if entries.is_empty() {
                        map.remove(&c.resource_name);
                    }
                }
            }
        }
        Ok(())
    }

    fn apply_producer_ids(&mut self, block: ProducerIdsBlock) -> Result<(), RecordError> {
        if block.size <= 0 || block.first_id < self.next_producer_id || block.end() == i64::MAX {
            return Err(RecordError::new(
                ErrorCode::InvalidRequest,
                format!(
                    "producer id block [{}, {}) overlaps ids handed out (next free {}) or is empty",
                    block.first_id,
                    block.end(),
                    self.next_producer_id
                ),
            ));
        }
        self.next_producer_id = block.end();
        self.producer_id_blocks.insert(block.broker_id, block);
        Ok(())
    }
}

/// Assignment invariants every partition state keeps: distinct replicas, ISR
/// and ELR drawn from them and disjoint, the last known ELR drawn from them,
/// a leader from the ISR (or none).
fn check_partition(p: &PartitionImage) -> Result<(), RecordError> {
    let replicas: BTreeSet<NodeId> = p.replicas.iter().copied().collect();
    let bad = |why: String| Err(RecordError::new(ErrorCode::InvalidReplicaAssignment, why));
    if p.replicas.is_empty()
        || replicas.len() != p.replicas.len()
        || replicas.iter().any(|r| *r < 0)
    {
        return bad(format!(
            "replicas {:?} must be distinct broker ids",
            p.replicas
        ));
    }
    let isr: BTreeSet<NodeId> = p.isr.iter().copied().collect();
    if isr.len() != p.isr.len() || !isr.is_subset(&replicas) {
        return bad(format!(
            "isr {:?} is not a set of replicas {:?}",
            p.isr, p.replicas
        ));
    }
    let elr: BTreeSet<NodeId> = p.elr.iter().copied().collect();
    if elr.len() != p.elr.len() || !elr.is_subset(&replicas) || !elr.is_disjoint(&isr) {
        return bad(format!(
            "elr {:?} must be replicas {:?} outside the isr {:?}",
            p.elr, p.replicas, p.isr
        ));
    }
    let last_known: BTreeSet<NodeId> = p.last_known_elr.iter().copied().collect();
    if last_known.len() != p.last_known_elr.len() || !last_known.is_subset(&replicas) {
        return bad(format!(
            "last known elr {:?} is not a set of replicas {:?}",
            p.last_known_elr, p.replicas
        ));
    }
    let adding: BTreeSet<NodeId> = p.adding_replicas.iter().copied().collect();
    let removing: BTreeSet<NodeId> = p.removing_replicas.iter().copied().collect();
    if adding.len() != p.adding_replicas.len()
        || removing.len() != p.removing_replicas.len()
        || !adding.is_subset(&replicas)
        || !removing.is_subset(&replicas)
        || !adding.is_disjoint(&removing)
        // Both the target (replicas - removing) and the original
        // assignment (replicas - adding) keep a replica.
        || removing.len() >= replicas.len()
        || adding.len() >= replicas.len()
    {
        return bad(format!(
            "adding {:?} and removing {:?} must be disjoint proper subsets of replicas {:?}",
            p.adding_replicas, p.removing_replicas, p.replicas
        ));
    }
    if p.leader != NO_LEADER && !isr.contains(&p.leader) {
        return bad(format!("leader {} is not in the isr {:?}", p.leader, p.isr));
    }
    Ok(())
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"SLMI";
const SNAPSHOT_VERSION: u16 = 1;
const SNAPSHOT_HEADER: usize = 4 + 2 + 4;

/// Why a snapshot could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a metadata image snapshot (bad magic or too short)")]
    BadMagic,
    #[error("metadata image snapshot version {0} is not supported (this build reads {SNAPSHOT_VERSION})")]
    UnsupportedVersion(u16),
    #[error("metadata image snapshot is corrupt (CRC mismatch)")]
    Corrupt,
    #[error("metadata image snapshot does not decode: {0}")]
    Decode(#[from] serde_json::Error),
}

/// The image as written in a snapshot, version 1. Plain vectors, so the
/// encoding needs no map keys other than strings.
#[derive(Serialize, Deserialize)]
struct ImageV1 {
    offset: u64,
    cluster_id: Option<String>,
    brokers: Vec<BrokerState>,
    topics: Vec<TopicImage>,
    topic_configs: BTreeMap<String, BTreeMap<String, String>>,
    broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    next_producer_id: i64,
    producer_id_blocks: Vec<ProducerIdsBlock>,
    scram_credentials: Vec<ScramCredential>,
    /// Added with client quotas; older snapshots have none.
    #[serde(default)]
    client_quotas: Vec<ClientQuotaEntry>,
}

/// One entity's quotas in a snapshot.
#[derive(Serialize, Deserialize)]
struct ClientQuotaEntry {
    entity: crate::quota::entity::QuotaEntity,
    values: BTreeMap<crate::quota::QuotaKey, crate::quota::entity::QuotaValue>,
}

impl MetadataImage {
    /// `SLMI` | version (u16 BE) | CRC-32C of the body (u32 BE) | body (JSON).
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let body = ImageV1 {
            offset: self.offset,
            cluster_id: self.cluster_id.clone(),
            brokers: self.brokers.values().cloned().collect(),
            topics: self.topics.values().map(|t| TopicImage::clone(t)).collect(),
            topic_configs: self.topic_configs.clone(),
            broker_configs: self.broker_configs.clone(),
            next_producer_id: self.next_producer_id,
            producer_id_blocks: self.producer_id_blocks.values().copied().collect(),
            scram_credentials: self.scram_credentials.values().cloned().collect(),
            client_quotas: self
                .client_quotas
                .iter()
                .map(|(entity, values)| ClientQuotaEntry {
                    entity: entity.clone(),
                    values: values.clone(),
                })
                .collect(),
        };
        // Serialising plain structs with string keys cannot fail.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut out = Vec::with_capacity(SNAPSHOT_HEADER + body.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        out.extend_from_slice(&body);
        out
    }

    pub fn decode_snapshot(bytes: &[u8]) -> Result<MetadataImage, SnapshotError> {
        if bytes.len() < SNAPSHOT_HEADER || &bytes[..4] != SNAPSHOT_MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        let version = u16::from_be_bytes([bytes[4], bytes[5]]);
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError::UnsupportedVersion(version));
        }
        let crc = u32::from_be_bytes([bytes[6], bytes[7], bytes[8], bytes[9]]);
        let body = &bytes[SNAPSHOT_HEADER..];
        if crc32c::crc32c(body) != crc {
            return Err(SnapshotError::Corrupt);
        }
        let v1: ImageV1 = serde_json::from_slice(body)?;
        Ok(MetadataImage {
            offset: v1.offset,
            cluster_id: v1.cluster_id,
            brokers: v1
                .brokers
                .into_iter()
                .map(|b| (b.registration.broker_id, b))
                .collect(),
            topic_ids: v1.topics.iter().map(|t| (t.name.clone(), t.id)).collect(),
            topics: v1.topics.into_iter().map(|t| (t.id, Arc::new(t))).collect(),
            topic_configs: v1.topic_configs,
            broker_configs: v1.broker_configs,
            next_producer_id: v1.next_producer_id,
            producer_id_blocks: v1
                .producer_id_blocks
                .into_iter()
                .map(|b| (b.broker_id, b))
                .collect(),
            scram_credentials: v1
                .scram_credentials
                .into_iter()
                .map(|c| ((c.name.clone(), c.mechanism), c))
                .collect(),
            client_quotas: v1
                .client_quotas
                .into_iter()
                .map(|e| (e.entity, e.values))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::quorum::records::Endpoint;

    fn registration(broker_id: NodeId, broker_epoch: i64) -> BrokerRegistration {
        BrokerRegistration {
            broker_id,
            broker_epoch,
            incarnation_id: Uuid::from_u128(broker_id as u128 * 1000 + broker_epoch as u128),
            listeners: vec![Endpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092 + broker_id as u16,
                security_protocol: 0,
            }],
            rack: Some(format!("rack-{broker_id}")),
            log_dirs: Vec::new(),
        }
    }

    fn three_brokers() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in 1..=3 {
            image
                .apply(&MetadataRecord::RegisterBroker(registration(id, 10)))
                .unwrap();
        }
        image
    }

    fn create_topic(image: &mut MetadataImage, name: &str, id: u128, partitions: i32) -> Uuid {
        let topic_id = Uuid::from_u128(id);
        let mut batch = vec![MetadataRecord::Topic {
            name: name.into(),
            topic_id,
        }];
        for p in 0..partitions {
            let replicas: Vec<NodeId> = (0..3).map(|r| (p + r) % 3 + 1).collect();
            batch.push(MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: p,
                leader: replicas[0],
                isr: replicas.clone(),
                replicas,
                elr: vec![],
                leader_epoch: 0,
                partition_epoch: 0,
            }));
        }
        image.apply_batch(&batch).unwrap();
        topic_id
    }

    #[test]
    fn register_starts_fenced_and_epochs_only_grow() {
        let mut image = three_brokers();
        assert!(image.brokers.values().all(|b| b.fenced));
        assert_eq!(
            image.broker(2).unwrap().registration.rack.as_deref(),
            Some("rack-2")
        );

        let stale = image.apply(&MetadataRecord::RegisterBroker(registration(2, 10)));
        assert_eq!(stale.unwrap_err().code, ErrorCode::StaleBrokerEpoch);

        image
            .apply(&MetadataRecord::RegisterBroker(registration(2, 11)))
            .unwrap();
        assert_eq!(image.broker(2).unwrap().registration.broker_epoch, 11);
        assert_eq!(image.brokers.len(), 3);
    }

    #[test]
    fn fence_and_unfence_need_the_current_epoch() {
        let mut image = three_brokers();
        image
            .apply(&MetadataRecord::UnfenceBroker {
                broker_id: 1,
                broker_epoch: 10,
            })
            .unwrap();
        assert!(!image.broker(1).unwrap().fenced);
        assert_eq!(image.unfenced_brokers().count(), 1);

        let stale = image.apply(&MetadataRecord::FenceBroker {
            broker_id: 1,
            broker_epoch: 9,
        });
        assert_eq!(stale.unwrap_err().code, ErrorCode::StaleBrokerEpoch);
        assert!(!image.broker(1).unwrap().fenced);

        let unknown = image.apply(&MetadataRecord::FenceBroker {
            broker_id: 7,
            broker_epoch: 10,
        });
        assert_eq!(unknown.unwrap_err().code, ErrorCode::BrokerIdNotRegistered);

        image
            .apply(&MetadataRecord::FenceBroker {
                broker_id: 1,
                broker_epoch: 10,
            })
            .unwrap();
        assert!(image.broker(1).unwrap().fenced);

        image
            .apply(&MetadataRecord::UnregisterBroker {
                broker_id: 1,
                broker_epoch: 10,
            })
            .unwrap();
        assert!(image.broker(1).is_none());
    }

    #[test]
    fn create_topic_with_assignments() {
        let mut image = three_brokers();
        let id = create_topic(&mut image, "events", 1, 6);
        let topic = image.topic_by_name("events").unwrap();
        assert_eq!(topic.id, id);
        assert_eq!(topic.partitions.len(), 6);
        let p4 = image.partition(id, 4).unwrap();
        assert_eq!(p4.replicas, vec![2, 3, 1]);
        assert_eq!(p4.leader, 2);
        assert_eq!(p4.isr, vec![2, 3, 1]);

        // Same name or same id again: refused, image unchanged.
        let before = image.clone();
        let dup = image.apply(&MetadataRecord::Topic {
            name: "events".into(),
            topic_id: Uuid::from_u128(2),
        });
        assert_eq!(dup.unwrap_err().code, ErrorCode::TopicAlreadyExists);
        let dup_id = image.apply(&MetadataRecord::Topic {
            name: "other".into(),
            topic_id: id,
        });
        assert_eq!(dup_id.unwrap_err().code, ErrorCode::TopicAlreadyExists);
        assert_eq!(image, before);
    }

    #[test]
    fn a_batch_applies_all_or_nothing() {
        let mut image = three_brokers();
        let before = image.clone();
        let topic_id = Uuid::from_u128(5);
        let batch = vec![
            MetadataRecord::Topic {
                name: "half".into(),
                topic_id,
            },
            MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: 0,
                replicas: vec![1, 1],
                isr: vec![1],
                elr: vec![],
                leader: 1,
                leader_epoch: 0,
                partition_epoch: 0,
            }),
        ];
        let err = image.apply_batch(&batch).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidReplicaAssignment);
        assert_eq!(image, before);
        assert!(image.topic_by_name("half").is_none());
    }

    #[test]
    fn leader_change_bumps_leader_and_partition_epochs() {
        let mut image = three_brokers();
        let id = create_topic(&mut image, "t", 1, 1);

        // ISR shrink alone: partition epoch only.
        image
            .apply(&MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                isr: Some(vec![1, 2]),
                ..Default::default()
            }))
            .unwrap();
        let p = image.partition(id, 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (1, 0, 1));

        // New leader: both epochs.
        image
            .apply(&MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(2),
                isr: Some(vec![2]),
                elr: Some(vec![1]),
                ..Default::default()
            }))
            .unwrap();
        let p = image.partition(id, 0).unwrap();
        assert_eq!((p.leader, p.leader_epoch, p.partition_epoch), (2, 1, 2));
        assert_eq!(p.elr, vec![1]);

        // The same leader again is no leader change.
        image
            .apply(&MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(2),
                ..Default::default()
            }))
            .unwrap();
        let p = image.partition(id, 0).unwrap();
        assert_eq!((p.leader_epoch, p.partition_epoch), (1, 3));

        // No leader at all.
        image
            .apply(&MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(NO_LEADER),
                isr: Some(vec![]),
                elr: Some(vec![1, 2]),
                ..Default::default()
            }))
            .unwrap();
        let p = image.partition(id, 0).unwrap();
        assert_eq!(
            (p.leader, p.leader_epoch, p.partition_epoch),
            (NO_LEADER, 2, 4)
        );

        // A leader outside the ISR is refused.
        let err = image
            .apply(&MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(3),
                ..Default::default()
            }))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidReplicaAssignment);

        let unknown = image
            .apply(&MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 9,
                ..Default::default()
            }))
            .unwrap_err();
        assert_eq!(unknown.code, ErrorCode::UnknownTopicOrPartition);
    }

    #[test]
    fn remove_topic_drops_partitions_and_configs() {
        let mut image = three_brokers();
        let id = create_topic(&mut image, "gone", 1, 2);
        image
            .apply(&MetadataRecord::Config(ConfigRecord {
                resource_type: ConfigResourceType::Topic,
                resource_name: "gone".into(),
                key: "retention.ms".into(),
                value: Some("1000".into()),
            }))
            .unwrap();
        image
            .apply(&MetadataRecord::RemoveTopic { topic_id: id })
            .unwrap();
        assert!(image.topic_by_name("gone").is_none());
        assert!(image.partition(id, 0).is_none());
        assert!(image.topic_configs.is_empty());
        let again = image.apply(&MetadataRecord::RemoveTopic { topic_id: id });
        assert_eq!(again.unwrap_err().code, ErrorCode::UnknownTopicId);

        // The name can be reused with a new id.
        create_topic(&mut image, "gone", 2, 1);
        assert_eq!(image.topic_by_name("gone").unwrap().id, Uuid::from_u128(2));
    }

    #[test]
    fn configs_set_and_delete() {
        let mut image = three_brokers();
        create_topic(&mut image, "t", 1, 1);
        let set = |resource_type, name: &str, key: &str, value: Option<&str>| {
            MetadataRecord::Config(ConfigRecord {
                resource_type,
                resource_name: name.into(),
                key: key.into(),
                value: value.map(str::to_string),
            })
        };
        image
            .apply_batch(&[
                set(
                    ConfigResourceType::Topic,
                    "t",
                    "cleanup.policy",
                    Some("compact"),
                ),
                set(
                    ConfigResourceType::Topic,
                    "t",
                    "retention.ms",
                    Some("60000"),
                ),
                set(
                    ConfigResourceType::Broker,
                    "",
                    "log.retention.ms",
                    Some("1"),
                ),
                set(
                    ConfigResourceType::Broker,
                    "2",
                    "log.retention.ms",
                    Some("2"),
                ),
            ])
            .unwrap();
        assert_eq!(image.topic_configs["t"].len(), 2);
        assert_eq!(image.broker_configs[""]["log.retention.ms"], "1");
        assert_eq!(image.broker_configs["2"]["log.retention.ms"], "2");

        image
            .apply(&set(ConfigResourceType::Topic, "t", "retention.ms", None))
            .unwrap();
        assert_eq!(
            image.topic_configs["t"].keys().collect::<Vec<_>>(),
            vec!["cleanup.policy"]
        );
        image
            .apply(&set(
                ConfigResourceType::Broker,
                "2",
                "log.retention.ms",
                None,
            ))
            .unwrap();
        assert!(!image.broker_configs.contains_key("2"));

        let unknown = image.apply(&set(ConfigResourceType::Topic, "nope", "a", Some("b")));
        assert_eq!(
            unknown.unwrap_err().code,
            ErrorCode::UnknownTopicOrPartition
        );
        let bad_broker = image.apply(&set(ConfigResourceType::Broker, "x", "a", Some("b")));
        assert_eq!(bad_broker.unwrap_err().code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn producer_id_blocks_never_overlap() {
        let mut image = three_brokers();
        let mut handed_out: Vec<ProducerIdsBlock> = Vec::new();
        for round in 0..5 {
            for broker in 1..=3 {
                let block = image.next_producer_ids_block(broker, 1000 + round);
                image
                    .apply(&MetadataRecord::ProducerIdsBlock(block))
                    .unwrap();
                handed_out.push(block);
            }
        }
        for (i, a) in handed_out.iter().enumerate() {
            for b in &handed_out[i + 1..] {
                assert!(
                    a.end() <= b.first_id || b.end() <= a.first_id,
                    "{a:?} overlaps {b:?}"
                );
            }
        }
        assert_eq!(image.producer_id_blocks[&3], handed_out[14]);

        // Two brokers that computed their block from the same image: the
        // second to commit is refused.
        let first = image.next_producer_ids_block(1, 10);
        let second = image.next_producer_ids_block(2, 10);
        image
            .apply(&MetadataRecord::ProducerIdsBlock(first))
            .unwrap();
        let err = image
            .apply(&MetadataRecord::ProducerIdsBlock(second))
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        let empty = image.next_producer_ids_block(2, 0);
        assert!(image
            .apply(&MetadataRecord::ProducerIdsBlock(empty))
            .is_err());
    }

    #[test]
    fn cluster_id_is_written_once() {
        let mut image = MetadataImage::default();
        let set = |id: &str| MetadataRecord::ClusterId {
            cluster_id: id.into(),
        };
        image.apply(&set("abc")).unwrap();
        image.apply(&set("abc")).unwrap();
        let err = image.apply(&set("xyz")).unwrap_err();
        assert_eq!(err.code, ErrorCode::InconsistentClusterId);
        assert_eq!(image.cluster_id.as_deref(), Some("abc"));
    }

    #[test]
    fn client_quotas_apply_and_survive_a_snapshot() {
        use crate::quota::entity::{EntityName, QuotaAlteration, QuotaEntity, QuotaValue};
        use crate::quota::QuotaKey;
        let entity = QuotaEntity {
            user: Some(EntityName::Named("alice".into())),
            client_id: Some(EntityName::Default),
        };
        let mut image = MetadataImage::default();
        image
            .apply(&MetadataRecord::ClientQuota(QuotaAlteration {
                entity: entity.clone(),
                ops: vec![
                    (QuotaKey::ProducerByteRate, Some(QuotaValue(1024.0))),
                    (QuotaKey::RequestPercentage, Some(QuotaValue(12.5))),
                ],
            }))
            .unwrap();
        image
            .apply(&MetadataRecord::ClientQuota(QuotaAlteration {
                entity: entity.clone(),
                ops: vec![(QuotaKey::RequestPercentage, None)],
            }))
            .unwrap();
        assert_eq!(
            image.client_quotas[&entity].get(&QuotaKey::ProducerByteRate),
            Some(&QuotaValue(1024.0))
        );
        assert_eq!(image.client_quotas[&entity].len(), 1);
        let back = MetadataImage::decode_snapshot(&image.encode_snapshot()).unwrap();
        assert_eq!(back, image);
    }

    #[test]
    fn scram_credentials_upsert_and_delete() {
        let mut image = MetadataImage::default();
        let cred = |iterations| ScramCredential {
            name: "alice".into(),
            mechanism: ScramMechanism::ScramSha256,
            salt: vec![1, 2, 3],
            stored_key: vec![4; 32],
            server_key: vec![5; 32],
            iterations,
        };
        image
            .apply(&MetadataRecord::UserScramCredential(cred(4096)))
            .unwrap();
        image
            .apply(&MetadataRecord::UserScramCredential(cred(8192)))
            .unwrap();
        let key = ("alice".to_string(), ScramMechanism::ScramSha256);
        assert_eq!(image.scram_credentials[&key].iterations, 8192);
        let remove = |mechanism| MetadataRecord::RemoveUserScramCredential {
            name: "alice".into(),
            mechanism,
        };
        assert!(image.apply(&remove(ScramMechanism::ScramSha512)).is_err());
        image.apply(&remove(ScramMechanism::ScramSha256)).unwrap();
        assert!(image.scram_credentials.is_empty());
    }

    #[test]
    fn snapshot_round_trips_and_detects_corruption() {
        let mut image = three_brokers();
        image
            .apply(&MetadataRecord::ClusterId {
                cluster_id: "c1".into(),
            })
            .unwrap();
        create_topic(&mut image, "a", 1, 3);
        create_topic(&mut image, "b", 2, 1);
        image
            .apply_batch(&[
                MetadataRecord::Config(ConfigRecord {
                    resource_type: ConfigResourceType::Topic,
                    resource_name: "a".into(),
                    key: "retention.ms".into(),
                    value: Some("5".into()),
                }),
                MetadataRecord::ProducerIdsBlock(image.next_producer_ids_block(1, 1000)),
                MetadataRecord::UserScramCredential(ScramCredential {
                    name: "u".into(),
                    mechanism: ScramMechanism::ScramSha512,
                    salt: vec![9],
                    stored_key: vec![8],
                    server_key: vec![7],
                    iterations: 4096,
                }),
            ])
            .unwrap();
        image.offset = 42;

        let bytes = image.encode_snapshot();
        assert_eq!(MetadataImage::decode_snapshot(&bytes).unwrap(), image);

        let mut flipped = bytes.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x20;
        assert!(matches!(
            MetadataImage::decode_snapshot(&flipped),
            Err(SnapshotError::Corrupt)
        ));
        assert!(matches!(
            MetadataImage::decode_snapshot(&bytes[..bytes.len() - 1]),
            Err(SnapshotError::Corrupt)
        ));
        assert!(matches!(
            MetadataImage::decode_snapshot(&bytes[..3]),
            Err(SnapshotError::BadMagic)
        ));
        let mut future = bytes.clone();
        future[5] = 9;
        assert!(matches!(
            MetadataImage::decode_snapshot(&future),
            Err(SnapshotError::UnsupportedVersion(9))
        ));
    }

    #[test]
    fn a_controlled_shutdown_fences_and_is_remembered_until_unfenced() {
        let mut image = three_brokers();
        image
            .apply(&MetadataRecord::UnfenceBroker {
                broker_id: 1,
                broker_epoch: 10,
            })
            .unwrap();
        let stale = image.apply(&MetadataRecord::ControlledShutdown {
            broker_id: 1,
            broker_epoch: 9,
        });
        assert_eq!(stale.unwrap_err().code, ErrorCode::StaleBrokerEpoch);
        image
            .apply(&MetadataRecord::ControlledShutdown {
                broker_id: 1,
                broker_epoch: 10,
            })
            .unwrap();
        let b = image.broker(1).unwrap();
        assert!(b.fenced && b.shut_down_cleanly);
        // A plain fencing does not count as a clean stop.
        image
            .apply(&MetadataRecord::UnfenceBroker {
                broker_id: 2,
                broker_epoch: 10,
            })
            .unwrap();
        image
            .apply(&MetadataRecord::FenceBroker {
                broker_id: 2,
                broker_epoch: 10,
            })
            .unwrap();
        assert!(!image.broker(2).unwrap().shut_down_cleanly);
        // Serving again forgets it; so does a new registration.
        image
            .apply(&MetadataRecord::UnfenceBroker {
                broker_id: 1,
                broker_epoch: 10,
            })
            .unwrap();
        assert!(!image.broker(1).unwrap().shut_down_cleanly);
        image
            .apply(&MetadataRecord::ControlledShutdown {
                broker_id: 1,
                broker_epoch: 10,
            })
            .unwrap();
        image
            .apply(&MetadataRecord::RegisterBroker(registration(1, 11)))
            .unwrap();
        assert!(!image.broker(1).unwrap().shut_down_cleanly);
    }

    #[test]
    fn a_reassignment_in_progress_is_kept_checked_and_snapshotted() {
        let mut image = three_brokers();
        let id = create_topic(&mut image, "a", 1, 1);
        // Partition 0 is on [1, 2, 3]; moving to [1, 2, 4] ... with a 4th
        // broker registered.
        image
            .apply(&MetadataRecord::RegisterBroker(registration(4, 10)))
            .unwrap();
        let widen = PartitionChange {
            topic_id: id,
            partition: 0,
            replicas: Some(vec![1, 2, 4, 3]),
            adding_replicas: Some(vec![4]),
            removing_replicas: Some(vec![3]),
            ..PartitionChange::default()
        };
        image
            .apply(&MetadataRecord::PartitionChange(widen.clone()))
            .unwrap();
        let p = image.partition(id, 0).unwrap().clone();
        assert!(p.is_reassigning());
        assert_eq!(p.target_replicas(), vec![1, 2, 4]);
        assert_eq!(p.original_replicas(), vec![1, 2, 3]);
        let back = MetadataImage::decode_snapshot(&image.encode_snapshot()).unwrap();
        assert_eq!(back.partition(id, 0), Some(&p));

        // Adding and removing must be disjoint replicas leaving a target.
        for (adding, removing) in [
            (vec![5], vec![]),
            (vec![4], vec![4]),
            (vec![], vec![1, 2, 4, 3]),
        ] {
            let bad = image.apply(&MetadataRecord::PartitionChange(PartitionChange {
                adding_replicas: Some(adding.clone()),
                removing_replicas: Some(removing.clone()),
                ..widen.clone()
            }));
            assert_eq!(
                bad.map_err(|e| e.code),
                Err(ErrorCode::InvalidReplicaAssignment),
                "{adding:?} {removing:?}"
            );
        }
        // An image written before reassignments existed reads as none.
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("adding_replicas"));
        let old: PartitionImage = serde_json::from_str(
            r#"{"replicas":[1],"isr":[1],"elr":[],"leader":1,"leader_epoch":0,"partition_epoch":0}"#,
        )
        .unwrap();
        assert!(!old.is_reassigning());
    }

    #[test]
    fn the_last_known_elr_is_a_set_of_replicas() {
        let mut image = three_brokers();
        let id = create_topic(&mut image, "t", 1, 1);
        image
            .apply(&MetadataRecord::PartitionChange(PartitionChange {
                topic_id: id,
                partition: 0,
                leader: Some(NO_LEADER),
                isr: Some(vec![]),
                elr: Some(vec![2, 3]),
                last_known_elr: Some(vec![1]),
                ..Default::default()
            }))
            .unwrap();
        let p = image.partition(id, 0).unwrap();
        assert_eq!(
            (p.elr.clone(), p.last_known_elr.clone()),
            (vec![2, 3], vec![1])
        );
        for bad in [vec![4], vec![1, 1]] {
            let err = image
                .apply(&MetadataRecord::PartitionChange(PartitionChange {
                    topic_id: id,
                    partition: 0,
                    last_known_elr: Some(bad),
                    ..Default::default()
                }))
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::InvalidReplicaAssignment);
        }
        // Kept in snapshots.
        let decoded = MetadataImage::decode_snapshot(&image.encode_snapshot()).unwrap();
        assert_eq!(decoded.partition(id, 0).unwrap().last_known_elr, vec![1]);
    }
}
