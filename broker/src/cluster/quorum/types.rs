//! The openraft type configuration of the controller quorum and the two
//! payload types it replicates: a [`Proposal`] (one atomic batch of metadata
//! records) in, an [`ApplyResult`] (accepted, or refused by the image) out.
//! openraft's types stay inside `quorum/`; the public trait speaks ours.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::image::RecordError;
use super::records::{MetadataRecord, NodeId};

/// One proposal: records the image applies atomically, in order.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Proposal {
    pub records: Vec<MetadataRecord>,
}

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Proposal[")?;
        for (i, record) in self.records.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{}", record.kind())?;
        }
        write!(f, "]")
    }
}

/// What applying a committed proposal did; every node computes the same.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ApplyResult(pub Result<(), RecordError>);

openraft::declare_raft_types!(
    /// The controller quorum's openraft types: standard Raft leader ids (one
    /// leader per term, as KRaft's epochs) and the tokio runtime.
    pub TypeConfig:
        D = Proposal,
        R = ApplyResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        Term = u64,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
);

pub type RaftNodeId = u64;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotData = std::io::Cursor<Vec<u8>>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// Kafka node ids are non-negative `i32`s; openraft's are `u64`.
pub fn raft_id(id: NodeId) -> Option<RaftNodeId> {
    u64::try_from(id).ok()
}

pub fn kafka_id(id: RaftNodeId) -> NodeId {
    NodeId::try_from(id).unwrap_or(NodeId::MAX)
}
