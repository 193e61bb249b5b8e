//! The replica layer between the API handlers and the partition logs
//! (Kafka's ReplicaManager): each partition this shard hosts is a log plus a
//! role, leader (with its ISR, follower positions and the high watermark) or
//! follower. Handlers append and read through [`Partition`], so leadership
//! changes touch only this module; the cluster wiring calls
//! [`ReplicaManager::become_leader`] / [`ReplicaManager::become_follower`] /
//! [`ReplicaManager::remove`] on the owner shard when the metadata image
//! changes, and proposes ISR changes through an [`IsrChanger`].
//!
//! A single-node broker (no controller) hosts every partition as leader
//! with replicas = ISR = [node.id] and leader epoch 0, so its high watermark
//! is its log end and everything behaves as a plain log.
//!
//! Opening a partition directory checks its `partition.metadata` against
//! the topic id (writing the file when it is missing, as for a new or an
//! older directory). In cluster mode ([`ReplicaManager::set_replicated`])
//! a directory of another topic id holds a deleted topic of the same name
//! and is removed, and the high watermark starts from the
//! `replication-offset-checkpoint` rather than the log end; standalone, such
//! a directory is set aside as `<dir>.<old id>-stray` for the operator.
//!
//! The pure leader state and its decisions live in `leader`; `partition`
//! holds [`Partition`]; `isr` the AlterPartition trait. The replica fetcher
//! (the follower side, `fetcher`) is built beside this.

pub mod fetcher;
pub mod isr;
pub mod leader;
pub mod partition;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::{Rc, Weak};
use std::time::Duration;

use sluice_protocol::ErrorCode;
use uuid::Uuid;

use crate::cluster::TopicMeta;
use crate::config::BrokerConfig;
use crate::log::hw_checkpoint::HighWatermarks;
use crate::log::partition_metadata::{self, encode_topic_id, StoredTopicId};
use crate::log::PartitionLog;

pub use isr::{IsrChanger, IsrProposal, LeaderAndIsr, NoController};
pub use leader::{FollowerState, LeaderState};
pub use partition::{Assignment, Partition, Reader, Role};

/// The replica layer's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaConfig {
    /// This broker's `node.id`.
    pub node_id: i32,
    /// `replica.lag.time.max.ms`: how long an ISR member may go without
    /// being caught up before the leader proposes dropping it; the ISR
    /// check runs every half of it.
    pub replica_lag_time_max_ms: i64,
}

impl ReplicaConfig {
    pub fn from_broker(config: &BrokerConfig) -> ReplicaConfig {
        ReplicaConfig {
            node_id: config.node_id,
            replica_lag_time_max_ms: config.cluster.replica_lag_time_max_ms,
        }
    }
}

/// Wall clock in ms; tests substitute their own.
pub type Clock = Rc<dyn Fn() -> i64>;

/// What every partition of a shard shares: who we are, settings, the
/// changer and the clock.
pub struct ReplicaContext {
    pub local_id: i32,
    pub config: ReplicaConfig,
    pub changer: RefCell<Rc<dyn IsrChanger>>,
    pub clock: Clock,
    /// Brokers fenced or shutting down (cluster mode, from the metadata
    /// image): never counted as caught up.
    pub fenced_brokers: RefCell<std::collections::HashSet<i32>>,
}

impl ReplicaContext {
    pub fn new(config: ReplicaConfig, clock: Clock) -> Rc<ReplicaContext> {
        Rc::new(ReplicaContext {
            local_id: config.node_id,
            config,
            changer: RefCell::new(Rc::new(NoController)),
            clock,
            fenced_brokers: RefCell::new(std::collections::HashSet::new()),
        })
    }

    pub fn now_ms(&self) -> i64 {
        (self.clock)()
    }
}

/// Decides the role a partition opens in: `None` means this broker does
/// not host it (requests get NOT_LEADER_OR_FOLLOWER).
pub type AssignmentSource = Rc<dyn Fn(&TopicMeta, i32) -> Option<Assignment>>;

/// The partitions one shard hosts.
pub struct ReplicaManager {
    ctx: Rc<ReplicaContext>,
    data_dir: PathBuf,
    partitions: RefCell<HashMap<(Uuid, i32), Rc<Partition>>>,
    open_lock: futures::lock::Mutex<()>,
    assignment: RefCell<AssignmentSource>,
    isr_checker_started: std::cell::Cell<bool>,
    /// Cluster mode: the checkpointed high watermarks not yet claimed by an
    /// opened partition. `None`: standalone.
    replicated: RefCell<Option<HighWatermarks>>,
}

impl ReplicaManager {
    pub fn new(config: ReplicaConfig, data_dir: PathBuf) -> Rc<ReplicaManager> {
        let ctx = ReplicaContext::new(config, Rc::new(sluice_protocol::clock::now_ms));
        Self::with_context(ctx, data_dir)
    }

    pub fn with_context(ctx: Rc<ReplicaContext>, data_dir: PathBuf) -> Rc<ReplicaManager> {
        let node_id = ctx.local_id;
        Rc::new(ReplicaManager {
            ctx,
            data_dir,
            partitions: RefCell::new(HashMap::new()),
            open_lock: futures::lock::Mutex::new(()),
            assignment: RefCell::new(Rc::new(move |_, _| {
                Some(Assignment::Leader(LeaderAndIsr::single(node_id)))
            })),
            isr_checker_started: std::cell::Cell::new(false),
            replicated: RefCell::new(None),
        })
    }

    /// Cluster mode: partitions opened from now on are replicated. Each
    /// starts its high watermark at min(its entry in `checkpointed`, log
    /// end), or at its log start without one, and rises from there only as
    /// the ISR's log ends allow; a directory whose `partition.metadata`
    /// names another topic id is removed (a deleted topic's).
    pub fn set_replicated(&self, checkpointed: HighWatermarks) {
        *self.replicated.borrow_mut() = Some(checkpointed);
    }

    pub fn is_replicated(&self) -> bool {
        self.replicated.borrow().is_some()
    }

    /// The high watermark of every partition open here, for the
    /// `replication-offset-checkpoint`.
    pub fn high_watermarks(&self) -> HighWatermarks {
        self.partitions
            .borrow()
            .values()
            .map(|p| ((p.log.topic.clone(), p.log.partition), p.high_watermark()))
            .collect()
    }

    pub fn context(&self) -> &Rc<ReplicaContext> {
        &self.ctx
    }

    /// Where ISR changes go (the controller); the default refuses them.
    pub fn set_isr_changer(&self, changer: Rc<dyn IsrChanger>) {
        *self.ctx.changer.borrow_mut() = changer;
    }

    /// How a partition's role is decided when it is first opened (default:
    /// single-node leader).
    pub fn set_assignment_source(&self, source: AssignmentSource) {
        *self.assignment.borrow_mut() = source;
    }

    pub fn get(&self, topic_id: &Uuid, partition: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(*topic_id, partition))
            .cloned()
    }

    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// The partition, opened (and its log recovered) on first use in the
    /// role the assignment source gives.
    pub async fn open(
        self: &Rc<Self>,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<Rc<Partition>, ErrorCode> {
        let source = self.assignment.borrow().clone();
        self.open_with(topic, partition, || source(topic, partition))
            .await
    }

    /// Opens a partition not open yet in the role `assignment` gives.
    async fn open_with(
        self: &Rc<Self>,
        topic: &TopicMeta,
        partition: i32,
        assignment: impl FnOnce() -> Option<Assignment>,
    ) -> Result<Rc<Partition>, ErrorCode> {
        if partition < 0 || partition >= topic.partitions {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        if let Some(p) = self.get(&topic.id, partition) {
            return Ok(p);
        }
        let _guard = self.open_lock.lock().await;
        if let Some(p) = self.get(&topic.id, partition) {
            return Ok(p);
        }
        let Some(assignment) = assignment() else {
            return Err(ErrorCode::NotLeaderOrFollower);
        };
        let dir = self
            .data_dir
            .join(PartitionLog::dir_name(&topic.name, partition));
        let write_topic_id = self.claim_dir(&dir, topic, partition)?;
        let metrics = crate::metrics::METRICS.partition(&topic.name, partition);
        let log = PartitionLog::open(
            &dir,
            &topic.name,
            topic.id,
            partition,
            topic.log_config.clone(),
            metrics,
        )
        .await
        .map_err(|e| {
            tracing::error!(topic = %topic.name, partition, error = %e, "cannot open partition");
            e.kafka_code()
        })?;
        if write_topic_id {
            if let Err(e) = partition_metadata::write(&dir, topic.id) {
                // The log itself is fine; the next open tries again.
                tracing::warn!(dir = %dir.display(), error = %e, "cannot write partition.metadata");
            }
        }
        if let Some(checkpointed) = self.replicated.borrow_mut().as_mut() {
            let key = (topic.name.clone(), partition);
            let start = checkpointed
                .remove(&key)
                .unwrap_or_else(|| log.log_start_offset());
            log.start_high_watermark_at(start);
        }
        {
            let st = log.state.borrow();
            log.metrics
                .set_offsets(st.log_start_offset, st.log_end_offset, st.size_bytes());
        }
        let has_followers = matches!(&assignment, Assignment::Leader(s) if s.replicas.len() > 1);
        let p = Partition::new(log, self.ctx.clone(), assignment);
        self.partitions
            .borrow_mut()
            .insert((topic.id, partition), p.clone());
        if has_followers {
            self.start_isr_checker();
        }
        Ok(p)
    }

    /// Checks the directory a partition is about to open from against its
    /// topic id (Kafka's `partition.metadata`). Returns whether the file
    /// must be (re)written: absent (a new directory, or one from before the
    /// file existed: adopted) or malformed (a warning, then as absent). A
    /// directory of another topic id holds a deleted topic of the same
    /// name: removed in cluster mode (with its checkpointed high
    /// watermark), set aside standalone; either way the partition starts
    /// empty. KAFKA_STORAGE_ERROR if that fails, rather than serving the
    /// old topic's records.
    fn claim_dir(
        &self,
        dir: &std::path::Path,
        topic: &TopicMeta,
        partition: i32,
    ) -> Result<bool, ErrorCode> {
        let found = match partition_metadata::read(dir) {
            StoredTopicId::Absent => return Ok(true),
            StoredTopicId::Id(id) if id == topic.id => return Ok(false),
            StoredTopicId::Malformed(why) => {
                tracing::warn!(dir = %dir.display(), problem = %why, "partition.metadata is malformed; treating it as absent and rewriting it");
                return Ok(true);
            }
            StoredTopicId::Id(found) => found,
        };
        let expected = encode_topic_id(topic.id);
        let found_text = encode_topic_id(found);
        let result = if let Some(checkpointed) = self.replicated.borrow_mut().as_mut() {
            tracing::warn!(
                dir = %dir.display(),
                topic = %topic.name,
                partition,
                expected_topic_id = %expected,
                found_topic_id = %found_text,
                "the partition directory belongs to a deleted topic of the same name; removing it and starting empty"
            );
            checkpointed.remove(&(topic.name.clone(), partition));
            std::fs::remove_dir_all(dir)
        } else {
            let stray = dir.with_file_name(format!(
                "{}.{}-stray",
                PartitionLog::dir_name(&topic.name, partition),
                found.simple()
            ));
            tracing::warn!(
                dir = %dir.display(),
                topic = %topic.name,
                partition,
                expected_topic_id = %expected,
                found_topic_id = %found_text,
                set_aside_as = %stray.display(),
                "the partition directory belongs to another topic of the same name; setting it aside and starting empty"
            );
            std::fs::rename(dir, &stray)
        };
        match result {
            Ok(()) => Ok(true),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot move a deleted topic's partition directory out of the way");
                Err(ErrorCode::KafkaStorageError)
            }
        }
    }

    /// Makes this broker the partition's leader (opening it if needed).
    pub async fn become_leader(
        self: &Rc<Self>,
        topic: &TopicMeta,
        partition: i32,
        spec: LeaderAndIsr,
    ) -> Result<(), ErrorCode> {
        let has_followers = spec.replicas.len() > 1;
        let p = match self.get(&topic.id, partition) {
            Some(p) => p,
            None => {
                let a = Assignment::Leader(spec.clone());
                self.open_with(topic, partition, || Some(a)).await?
            }
        };
        p.become_leader(spec)?;
        if has_followers {
            self.start_isr_checker();
        }
        Ok(())
    }

    /// Makes this broker a follower of `leader` (opening it if needed).
    pub async fn become_follower(
        self: &Rc<Self>,
        topic: &TopicMeta,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
    ) -> Result<(), ErrorCode> {
        let p = match self.get(&topic.id, partition) {
            Some(p) => p,
            None => {
                let a = Assignment::Follower {
                    leader,
                    leader_epoch,
                };
                self.open_with(topic, partition, || Some(a)).await?
            }
        };
        p.become_follower(leader, leader_epoch)
    }

    /// Drops a partition from this broker (reassigned away or deleted):
    /// closes its log; files stay (deleting them is the caller's).
    pub fn remove(&self, topic_id: &Uuid, partition: i32) -> Option<Rc<Partition>> {
        let p = self.partitions.borrow_mut().remove(&(*topic_id, partition));
        if let Some(p) = &p {
            p.close();
        }
        p
    }

    /// Drops every partition of a topic; returns them, closed.
    pub fn remove_topic(&self, topic_id: &Uuid) -> Vec<Rc<Partition>> {
        let mut map = self.partitions.borrow_mut();
        let keys: Vec<_> = map.keys().filter(|(t, _)| t == topic_id).copied().collect();
        keys.into_iter()
            .filter_map(|k| map.remove(&k))
            .inspect(|p| p.close())
            .collect()
    }

    /// Runs the ISR check on every partition this shard leads.
    pub fn check_isr(&self) {
        for p in self.all() {
            p.check_isr();
        }
    }

    /// Starts the periodic ISR check (every `replica.lag.time.max.ms / 2`)
    /// once a partition has followers; it ends with the manager.
    fn start_isr_checker(self: &Rc<Self>) {
        if self.isr_checker_started.replace(true) {
            return;
        }
        let period =
            Duration::from_millis((self.ctx.config.replica_lag_time_max_ms / 2).max(10) as u64);
        let weak: Weak<ReplicaManager> = Rc::downgrade(self);
        compio::runtime::spawn(async move {
            loop {
                compio::time::sleep(period).await;
                let Some(m) = weak.upgrade() else { break };
                m.check_isr();
            }
        })
        .detach();
    }
}
