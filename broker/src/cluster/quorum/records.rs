//! The records of the replicated metadata log, modelled on KRaft's
//! `__cluster_metadata` records: broker registrations and their fencing,
//! topics and partitions with their leaders, ISR, eligible leader replicas
//! (KIP-966) and epochs, configs, producer-id blocks, SCRAM credentials,
//! client quotas and the cluster id. A record says what happened; [`super::image::MetadataImage`]
//! decides deterministically what it does to the metadata. Records are
//! serde-encoded inside the quorum's log entries, so a field added later needs
//! `#[serde(default)]` to keep old logs readable.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A Kafka node id (`node.id`): brokers and controllers share the space.
pub type NodeId = i32;

/// Kafka's "no leader" partition leader id.
pub const NO_LEADER: NodeId = -1;

/// One record of the metadata log. A proposal is a batch of these, applied
/// atomically: either every record of the batch applies or none does.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum MetadataRecord {
    /// The cluster id, written once by the node that initialises the quorum.
    ClusterId { cluster_id: String },
    /// A broker (re-)registered: a new broker epoch and incarnation. A newly
    /// registered broker starts fenced, as in KRaft.
    RegisterBroker(BrokerRegistration),
    /// A broker shut down cleanly or was removed.
    UnregisterBroker {
        broker_id: NodeId,
        broker_epoch: i64,
    },
    /// The broker missed its session timeout (or asked to be fenced):
    /// it may no longer lead or be in any ISR.
    FenceBroker {
        broker_id: NodeId,
        broker_epoch: i64,
    },
    /// The broker finished a controlled shutdown: fenced, its leaderships
    /// and ISR places already moved, and known to have stopped cleanly, so
    /// it keeps its places in eligible leader replicas when it registers
    /// again (KIP-966; Kafka learns this from the broker's clean-shutdown
    /// marker, sluiced from the controlled shutdown).
    ControlledShutdown {
        broker_id: NodeId,
        broker_epoch: i64,
    },
    /// The broker's heartbeats show it caught up with the metadata log.
    UnfenceBroker {
        broker_id: NodeId,
        broker_epoch: i64,
    },
    /// A topic was created (its partitions follow as `Partition` records).
    Topic { name: String, topic_id: Uuid },
    /// A partition was created, with its assignment and first leader.
    Partition(PartitionRecord),
    /// A partition's leader, ISR, ELR or replicas changed.
    PartitionChange(PartitionChange),
    /// A topic and all its partitions and configs were deleted.
    RemoveTopic { topic_id: Uuid },
    /// A config was set (`value: Some`) or deleted (`value: None`).
    Config(ConfigRecord),
    /// A block of producer ids was handed to a broker.
    ProducerIdsBlock(ProducerIdsBlock),
    /// A SCRAM credential was created or replaced.
    UserScramCredential(ScramCredential),
    /// A SCRAM credential was deleted.
    RemoveUserScramCredential {
        name: String,
        mechanism: ScramMechanism,
    },
    /// Client quotas of one entity set or removed (KRaft's
    /// ClientQuotaRecord, one per entity and AlterClientQuotas entry).
    ClientQuota(crate::quota::entity::QuotaAlteration),
}

impl MetadataRecord {
    /// The record's kind, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            MetadataRecord::ClusterId { .. } => "ClusterId",
            MetadataRecord::RegisterBroker(_) => "RegisterBroker",
            MetadataRecord::UnregisterBroker { .. } => "UnregisterBroker",
            MetadataRecord::FenceBroker { .. } => "FenceBroker",
            MetadataRecord::ControlledShutdown { .. } => "ControlledShutdown",
            MetadataRecord::UnfenceBroker { .. } => "UnfenceBroker",
            MetadataRecord::Topic { .. } => "Topic",
            MetadataRecord::Partition(_) => "Partition",
            MetadataRecord::PartitionChange(_) => "PartitionChange",
            MetadataRecord::RemoveTopic { .. } => "RemoveTopic",
            MetadataRecord::Config(_) => "Config",
            MetadataRecord::ProducerIdsBlock(_) => "ProducerIdsBlock",
            MetadataRecord::UserScramCredential(_) => "UserScramCredential",
            MetadataRecord::RemoveUserScramCredential { .. } => "RemoveUserScramCredential",
            MetadataRecord::ClientQuota(_) => "ClientQuota",
        }
    }
}

/// One listener a broker accepts connections on.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// The listener name, e.g. `PLAINTEXT` or `CONTROLLER`.
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's security protocol id (0 PLAINTEXT, 1 SSL, 2 SASL_PLAINTEXT,
    /// 3 SASL_SSL).
    pub security_protocol: i16,
}

/// What a broker registers with, as in KRaft's RegisterBrokerRecord.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub broker_id: NodeId,
    /// Grows with every registration of this id; requests carrying an older
    /// epoch come from a stale incarnation (KIP-903).
    pub broker_epoch: i64,
    /// Random per process start, so a second process with the same id is
    /// told apart from a restart.
    pub incarnation_id: Uuid,
    pub listeners: Vec<Endpoint>,
    pub rack: Option<String>,
    /// The `directory.id`s of the broker's log directories (KIP-858): a
    /// new incarnation with one of these is the same node restarted on its
    /// own data (sluiced locks a data directory while it runs).
    #[serde(default)]
    pub log_dirs: Vec<Uuid>,
}

/// A new partition: its replica assignment and initial leadership.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct PartitionRecord {
    pub topic_id: Uuid,
    pub partition: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// Eligible leader replicas (KIP-966): out of the ISR only because the
    /// ISR went below min.insync.replicas, still safe to elect.
    #[serde(default)]
    pub elr: Vec<NodeId>,
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
}

/// A change to an existing partition; `None` leaves a field as it is. The
/// epochs are not carried: applying the change bumps the partition epoch,
/// and the leader epoch too when the leader changes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct PartitionChange {
    pub topic_id: Uuid,
    pub partition: i32,
    /// The new leader ([`NO_LEADER`] when none is eligible).
    pub leader: Option<NodeId>,
    pub isr: Option<Vec<NodeId>>,
    pub elr: Option<Vec<NodeId>>,
    /// KIP-966's last known ELR: replicas that left the ELR through an
    /// unclean shutdown, or the last leader once the ISR emptied; kept for
    /// recovery when no ISR or ELR member is left.
    #[serde(default)]
    pub last_known_elr: Option<Vec<NodeId>>,
    /// A new assignment (reassignment, KIP-455).
    pub replicas: Option<Vec<NodeId>>,
    /// The replicas a reassignment adds (empty: none in progress).
    #[serde(default)]
    pub adding_replicas: Option<Vec<NodeId>>,
    /// The replicas a reassignment removes once it completes.
    #[serde(default)]
    pub removing_replicas: Option<Vec<NodeId>>,
    /// Applies only if the partition epoch is still this (AlterPartition's
    /// optimistic check); refused with INVALID_UPDATE_VERSION otherwise.
    #[serde(default)]
    pub expect_partition_epoch: Option<i32>,
}

/// Which kind of resource a config belongs to (Kafka's ConfigResource types).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfigResourceType {
    Topic,
    /// A broker's id as the name, or the empty name for the cluster default.
    Broker,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ConfigRecord {
    pub resource_type: ConfigResourceType,
    pub resource_name: String,
    pub key: String,
    /// `None` deletes the key.
    pub value: Option<String>,
}

/// Producer ids `[first_id, first_id + size)` belong to `broker_id`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProducerIdsBlock {
    pub broker_id: NodeId,
    pub first_id: i64,
    pub size: i32,
}

impl ProducerIdsBlock {
    /// The first id after the block.
    pub fn end(&self) -> i64 {
        self.first_id.saturating_add(i64::from(self.size))
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

/// A user's SCRAM credential as stored (RFC 5802: never the password).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ScramCredential {
    pub name: String,
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: i32,
}
