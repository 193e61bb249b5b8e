//! How a leader's ISR changes reach the controller: the [`IsrChanger`]
//! trait (Kafka's AlterPartition), implemented over the controller quorum by
//! the cluster wiring. A leader never applies its own proposal; the change
//! takes effect when the partition's new state comes back (the answer, or
//! the metadata image through `become_leader`).

use futures::future::LocalBoxFuture;
use sluice_protocol::ErrorCode;
use uuid::Uuid;

/// A partition's leadership as the controller records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderAndIsr {
    pub leader_epoch: i32,
    /// Bumped by the controller on every change of the partition's state;
    /// an AlterPartition naming an older one is refused.
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

impl LeaderAndIsr {
    /// The single-node state: this broker the only replica, epoch 0.
    pub fn single(node_id: i32) -> LeaderAndIsr {
        LeaderAndIsr {
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![node_id],
            isr: vec![node_id],
        }
    }
}

/// A proposed ISR, as AlterPartition carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub topic_id: Uuid,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Sends ISR changes to the controller. Called on the partition's owner
/// shard; the future runs there. `Ok` carries the partition's state as the
/// controller committed it (applied if newer than what the leader has);
/// an error (e.g. `FENCED_LEADER_EPOCH`, `INVALID_UPDATE_VERSION`,
/// `NOT_CONTROLLER`) leaves the ISR as it is and lets a later check retry.
pub trait IsrChanger {
    fn alter_partition(
        &self,
        proposal: IsrProposal,
    ) -> LocalBoxFuture<'static, Result<LeaderAndIsr, ErrorCode>>;
}

/// The changer of a broker with no controller (single node): a partition
/// there has no followers, so this is never called; if it were, it refuses.
pub struct NoController;

impl IsrChanger for NoController {
    fn alter_partition(
        &self,
        _proposal: IsrProposal,
    ) -> LocalBoxFuture<'static, Result<LeaderAndIsr, ErrorCode>> {
        Box::pin(async { Err(ErrorCode::NotController) })
    }
}
