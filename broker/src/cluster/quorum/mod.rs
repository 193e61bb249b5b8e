//! The controller quorum: a KRaft-like replicated metadata log. Controllers
//! (the nodes named by `controller.quorum.voters`) replicate
//! [`MetadataRecord`] batches through Raft; every controller applies the
//! committed log to a deterministic [`MetadataImage`] and publishes it.
//!
//! The rest of the broker sees only the [`MetadataQuorum`] trait and our own
//! types: propose records (answered with the committed offset, or
//! NOT_CONTROLLER naming the leader), read or subscribe to the image, ask
//! who leads, describe the quorum the way Kafka's DescribeQuorum does, shut
//! down. [`ControllerQuorum`] implements it on openraft, on a thread with
//! its own tokio runtime beside the broker's compio shards; openraft's types
//! stay inside this module tree.
//!
//! Brokers that are not controllers (`process.roles=broker`) run the same
//! node as an **observer**, KRaft's word (an openraft learner): it keeps its
//! own copy of the log and image, replicated and applied like a voter's,
//! but never votes and never leads. The active controller adds it to the
//! membership on request ([`MetadataQuorum::add_observer`]); DescribeQuorum
//! lists it under observers. openraft pushes entries to learners, so an
//! observer listens for the leader's Raft traffic on an address of its own
//! (see `ControllerQuorum::start_with_listener`).
//!
//! Layout: `records` and `image` (pure metadata), `types` (openraft type
//! configuration), `log_store` and `state_machine` (durable storage),
//! `transport` (length-prefixed TCP, with TLS and SASL as `security`
//! resolves them from the controller listener's protocol) and `network`
//! (openraft RPCs on it), `node` (start-up, bootstrap, the trait
//! implementation).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_protocol::ErrorCode;
use tokio::sync::watch;

pub mod image;
mod log_store;
mod network;
mod node;
pub mod records;
pub mod security;
mod state_machine;
pub mod transport;
mod types;

pub use image::{MetadataImage, RecordError};
pub use log_store::LogRecovery;
pub use node::ControllerQuorum;
pub use records::{MetadataRecord, NodeId};
pub use security::TransportSecurity;

/// The replicated metadata log as the broker uses it.
pub trait MetadataQuorum: Send + Sync {
    /// Replicates `records` as one atomic batch and applies it. Answers the
    /// batch's offset in the metadata log once it is committed and applied
    /// here. Only the leader accepts proposals.
    fn propose(
        &self,
        records: Vec<MetadataRecord>,
    ) -> impl Future<Output = Result<u64, QuorumError>> + Send;

    /// The latest image this node has applied.
    fn image(&self) -> Arc<MetadataImage>;

    /// Every newly applied image, as it is published.
    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>>;

    /// The current leader, if this node knows one.
    fn leader(&self) -> Option<NodeId>;

    /// Leader, epoch, high watermark and each replica's progress.
    fn describe(&self) -> QuorumDescription;

    /// Installs the service that answers [`MetadataQuorum::call`]s made to
    /// this node (set once; later calls are ignored).
    fn set_service(&self, service: Arc<dyn ControllerService>);

    /// Sends `request` to the controller service of node `target` (this
    /// node's own is called directly) and waits up to `timeout`.
    fn call(
        &self,
        target: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, QuorumError>> + Send;

    /// Adds node `node_id` as an observer (a non-voting learner that
    /// replicates and applies the log) whose Raft address is `address`, or
    /// updates the address of one already added. Only the leader accepts it;
    /// answers once the membership change is committed (at once when
    /// nothing changes). A voter's id is refused.
    fn add_observer(
        &self,
        node_id: NodeId,
        address: String,
    ) -> impl Future<Output = Result<(), QuorumError>> + Send;

    /// Removes observer `node_id` from the quorum's membership (a broker
    /// unregistered for good); nothing to do if it is none. Only the leader
    /// accepts it. A voter's id is refused.
    fn remove_observer(
        &self,
        node_id: NodeId,
    ) -> impl Future<Output = Result<(), QuorumError>> + Send;

    /// Runs `task` on the controller's own runtime (timers and loops of the
    /// controller service live there, beside Raft).
    fn spawn(&self, task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>);

    /// Stops this node's controller: its Raft, its listener, its thread.
    fn shutdown(self) -> impl Future<Output = ()> + Send
    where
        Self: Sized;
}

/// What answers requests sent with [`MetadataQuorum::call`]: the
/// controller's logic above the replicated log (registrations, heartbeats,
/// topic changes), whose bytes the quorum only carries.
pub trait ControllerService: Send + Sync + 'static {
    fn handle(
        self: Arc<Self>,
        request: Vec<u8>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Vec<u8>> + Send>>;
}

/// Why a proposal (or start-up) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuorumError {
    /// This node is not the leader. Retry on `leader` (at `leader_endpoint`)
    /// when one is known.
    #[error("not the active controller; leader is {}", leader.map_or("unknown".to_string(), |l| l.to_string()))]
    NotController {
        leader: Option<NodeId>,
        leader_endpoint: Option<String>,
    },
    /// The batch committed but the image refused it (nothing changed).
    #[error("metadata batch at offset {offset} refused: {error}")]
    Rejected { offset: u64, error: RecordError },
    /// Leadership changed while the batch was in flight: it may or may not
    /// have committed. Check the image before retrying.
    #[error("leadership changed while the proposal was in flight; outcome unknown")]
    Indeterminate { leader: Option<NodeId> },
    /// The controller stopped or failed.
    #[error("controller unavailable: {0}")]
    Unavailable(String),
    /// The configuration cannot form a quorum; start-up refused.
    #[error("invalid controller quorum configuration: {0}")]
    Config(String),
    /// The quorum directory could not be opened or is corrupt.
    #[error("controller storage: {0}")]
    Storage(String),
}

impl QuorumError {
    /// The Kafka error a client of the controller is answered with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            QuorumError::NotController { .. } => ErrorCode::NotController,
            QuorumError::Rejected { error, .. } => error.code,
            QuorumError::Indeterminate { .. } => ErrorCode::RequestTimedOut,
            QuorumError::Unavailable(_) | QuorumError::Config(_) | QuorumError::Storage(_) => {
                ErrorCode::UnknownServerError
            }
        }
    }
}

/// What Kafka's DescribeQuorum answers for the metadata partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QuorumDescription {
    /// The node that answered.
    pub node_id: NodeId,
    pub leader_id: Option<NodeId>,
    /// The Raft term: KRaft's leader epoch.
    pub leader_epoch: u64,
    /// The offset after the last committed entry.
    pub high_watermark: u64,
    /// Per voter progress; only the leader knows the others' (-1 elsewhere).
    pub voters: Vec<ReplicaProgress>,
    /// Non-voting replicas (learners).
    pub observers: Vec<ReplicaProgress>,
}

/// One replica's row in [`QuorumDescription`]; -1 means unknown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReplicaProgress {
    pub replica_id: NodeId,
    pub log_end_offset: i64,
    /// Wall-clock ms of the replica's last acknowledged append or heartbeat.
    pub last_fetch_timestamp_ms: i64,
    /// Wall-clock ms when the replica last had the leader's whole log.
    pub last_caught_up_timestamp_ms: i64,
}

/// The static voter set, Kafka's `controller.quorum.voters`:
/// `1@host:port,2@host:port,...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voters(pub BTreeMap<NodeId, String>);

impl Voters {
    pub fn parse(spec: &str) -> Result<Voters, QuorumError> {
        let voters =
            crate::config::parse_voters(crate::config::names::CONTROLLER_QUORUM_VOTERS, spec)
                .map_err(|e| QuorumError::Config(e.to_string()))?;
        if voters.is_empty() {
            return Err(QuorumError::Config(
                "controller.quorum.voters is empty".into(),
            ));
        }
        Ok(Voters(voters))
    }
}

impl std::fmt::Display for Voters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, (id, addr)) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ",")?;
            }
            write!(f, "{id}@{addr}")?;
        }
        Ok(())
    }
}

/// How one controller (or observer) runs.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (`node.id`); one of the voters, unless `observer`.
    pub node_id: NodeId,
    pub voters: Voters,
    /// A broker-only node: a learner that never votes. Its id must not be a
    /// voter's.
    pub observer: bool,
    /// `controller.quorum.bootstrap.servers` (`host:port`): an observer
    /// with no `voters` asks these for the voter set at start-up.
    pub bootstrap_servers: Vec<String>,
    /// Where the Raft log, vote and snapshots live.
    pub dir: PathBuf,
    /// The cluster id the initialising leader writes (a random one if
    /// `None`).
    pub cluster_id: Option<String>,
    /// Build a snapshot (and purge the log) after this many entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot, for followers slightly behind.
    pub snapshot_keep: u64,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How connections to and from other controllers are secured (the
    /// controller listener's protocol); PLAINTEXT by default.
    pub security: Arc<TransportSecurity>,
}

impl QuorumConfig {
    /// Defaults close to KRaft's (1 s election timeout, heartbeats well
    /// inside it), a snapshot every 10 000 entries.
    pub fn new(node_id: NodeId, voters: Voters, dir: impl Into<PathBuf>) -> Self {
        QuorumConfig {
            node_id,
            voters,
            observer: false,
            bootstrap_servers: Vec::new(),
            dir: dir.into(),
            cluster_id: None,
            snapshot_every: 10_000,
            snapshot_keep: 1_000,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(1_000),
            election_timeout_max: Duration::from_millis(2_000),
            security: Arc::new(TransportSecurity::plaintext()),
        }
    }

    /// The checks Kafka makes before a controller starts.
    pub fn validate(&self) -> Result<(), QuorumError> {
        // Only an observer may learn the voters from bootstrap servers.
        let can_discover = self.observer && !self.bootstrap_servers.is_empty();
        if self.voters.0.is_empty() && !can_discover {
            return Err(QuorumError::Config(if self.observer {
                "a broker-only node needs controller.quorum.voters or controller.quorum.bootstrap.servers".into()
            } else {
                "controller.quorum.voters is empty".into()
            }));
        }
        if self.observer {
            if self.voters.0.contains_key(&self.node_id) {
                return Err(QuorumError::Config(format!(
                    "node.id {} is among controller.quorum.voters {} but this node is not a controller",
                    self.node_id, self.voters
                )));
            }
        } else if !self.voters.0.contains_key(&self.node_id) {
            return Err(QuorumError::Config(format!(
                "node.id {} is not among controller.quorum.voters {}",
                self.node_id, self.voters
            )));
        }
        if self.snapshot_every == 0 {
            return Err(QuorumError::Config(
                "snapshot interval must be at least 1 entry".into(),
            ));
        }
        if self.heartbeat_interval.is_zero() || self.election_timeout_min <= self.heartbeat_interval
        {
            return Err(QuorumError::Config(
                "the election timeout must exceed the heartbeat interval".into(),
            ));
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return Err(QuorumError::Config(
                "the maximum election timeout must exceed the minimum".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voters_parse_like_kafka() {
        let voters = Voters::parse("1@127.0.0.1:9093, 2@localhost:9094,3@[::1]:9095").unwrap();
        assert_eq!(voters.0.len(), 3);
        assert_eq!(voters.0[&3], "[::1]:9095");
        assert_eq!(
            voters.to_string(),
            "1@127.0.0.1:9093,2@localhost:9094,3@[::1]:9095"
        );
        for bad in ["", "1", "x@h:1", "1@h", "1@h:x", "-1@h:1", "1@:9"] {
            assert!(Voters::parse(bad).is_err(), "{bad}");
        }
        let twice = Voters::parse("1@h:1,1@h:2").unwrap_err();
        assert!(twice.to_string().contains("twice"));
    }

    #[test]
    fn a_node_outside_the_voters_is_refused() {
        let voters = Voters::parse("1@127.0.0.1:1,2@127.0.0.1:2").unwrap();
        let config = QuorumConfig::new(3, voters, "/nonexistent");
        let err = config.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid controller quorum configuration: node.id 3 is not among \
             controller.quorum.voters 1@127.0.0.1:1,2@127.0.0.1:2"
        );
    }
}

/// The controller quorum's Raft timers, from Kafka's
/// `controller.quorum.election.timeout.ms` (E) and
/// `controller.quorum.fetch.timeout.ms` (F).
///
/// openraft's follower campaigns once it has not heard from the leader for
/// its leader lease, which is the maximum election timeout, plus a random
/// election timeout in `[min, max)`; a failed campaign is retried after
/// another random `[min, max)`. With `max = min(E, F / 2)` and
/// `min = max / 2` a voter campaigns between 1.5 and 2 `max` after the
/// leader's last heartbeat (1.5-2 s with Kafka's defaults: within F, as
/// KRaft's voters) and a split vote is retried within E, where
/// `min = E, max = 2 E` made a dead leader's successor wait 3-4 s.
/// Heartbeats go every `max / 10`, so a campaign needs 15 of them missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
}

impl RaftTiming {
    pub fn of(settings: &crate::config::ClusterSettings) -> RaftTiming {
        let max_ms = settings
            .election_timeout_ms
            .min(settings.fetch_timeout_ms / 2)
            .max(2);
        let max = Duration::from_millis(max_ms);
        RaftTiming {
            heartbeat_interval: Duration::from_millis((max_ms / 10).max(1)),
            election_timeout_min: max / 2,
            election_timeout_max: max,
        }
    }
}
