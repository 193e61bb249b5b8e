//! Cluster mode: keeps the partitions a shard owns in the roles the metadata
//! image gives them. Every new image is compared with what was last applied
//! per partition (leader epoch, partition epoch); a change makes the
//! partition leader (with its replicas and ISR) or follower of the new
//! leader; a partition reassigned away from here, or of a deleted topic, is
//! closed and its directory removed. Group
//! coordination follows `__consumer_offsets` leadership: becoming leader of
//! one of its partitions loads that partition's groups, losing it unloads
//! them. ISR changes go to the controller as AlterPartition. Followers get
//! partitions fetched by one replica fetcher per leader. Each shard also
//! reports its high watermarks for the checkpoint (`super::hw_checkpoint`).

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use futures::future::LocalBoxFuture;
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use super::Shard;
use crate::cluster::controller::ControllerAnswer;
use crate::cluster::member::ClusterMember;
use crate::cluster::{MetadataImage, NodeId, PartitionMeta, TopicMeta, OFFSETS_TOPIC};
use std::time::Duration;

use crate::peer::PeerConfig;
use crate::replica::fetcher::{FetcherConfig, ReplicaFetcher};
use crate::replica::isr::{IsrChanger, IsrProposal, LeaderAndIsr};
use crate::replica::partition::Assignment;
use crate::txn::TXN_TOPIC;

/// The role a partition takes on `node`, or `None` when it has no replica
/// here (or no leader yet: a leaderless partition waits for its election).
pub fn assignment_of(node: NodeId, p: &PartitionMeta) -> Option<Assignment> {
    if !p.replicas.contains(&node) {
        return None;
    }
    if p.leader == node {
        Some(Assignment::Leader(LeaderAndIsr {
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            replicas: p.replicas.clone(),
            isr: p.isr.clone(),
        }))
    } else {
        Some(Assignment::Follower {
            leader: p.leader,
            leader_epoch: p.leader_epoch,
        })
    }
}

/// AlterPartition over the controller quorum.
struct QuorumIsrChanger {
    member: ClusterMember,
}

impl IsrChanger for QuorumIsrChanger {
    fn alter_partition(
        &self,
        proposal: IsrProposal,
    ) -> LocalBoxFuture<'static, Result<LeaderAndIsr, ErrorCode>> {
        let member = self.member.clone();
        Box::pin(async move {
            let answer = member
                .alter_partition(
                    proposal.topic_id,
                    proposal.partition,
                    proposal.leader_epoch,
                    proposal.partition_epoch,
                    proposal.new_isr,
                )
                .await
                .map_err(|e| {
                    tracing::info!(topic_id = %proposal.topic_id, partition = proposal.partition, error = %e.message, "AlterPartition refused");
                    e.code
                })?;
            match answer {
                ControllerAnswer::Partition {
                    leader_epoch,
                    partition_epoch,
                    isr,
                    ..
                } => {
                    let replicas = member
                        .image()
                        .by_id
                        .get(&proposal.topic_id)
                        .and_then(|t| t.partition(proposal.partition).map(|p| p.replicas.clone()))
                        .unwrap_or_default();
                    Ok(LeaderAndIsr {
                        leader_epoch,
                        partition_epoch,
                        replicas,
                        isr,
                    })
                }
                _ => Err(ErrorCode::UnknownServerError),
            }
        })
    }
}

/// What was last applied to a partition: (leader epoch, partition epoch,
/// whether this broker leads).
type AppliedRole = (i32, i32, bool);

/// Per shard: the role last applied to each partition.
#[derive(Default)]
pub struct RoleState {
    applied: RefCell<HashMap<(Uuid, i32), AppliedRole>>,
    /// `__consumer_offsets` partitions whose groups this shard coordinates.
    pub led_offsets_partitions: RefCell<HashSet<i32>>,
    /// `__transaction_state` partitions whose transactional ids this shard
    /// coordinates, with the coordinator epoch.
    pub led_txn_partitions: RefCell<HashMap<i32, i32>>,
    /// One replica fetcher per leader this shard follows partitions of.
    fetchers: RefCell<HashMap<NodeId, Rc<ReplicaFetcher>>>,
    /// Which leader each followed partition is fetched from.
    following: RefCell<HashMap<(Uuid, i32), NodeId>>,
}

impl RoleState {
    /// Stops every fetcher (shutdown): dropping a fetcher stops its task
    /// after the append in progress.
    pub fn stop_fetchers(&self) {
        self.fetchers.borrow_mut().clear();
        self.following.borrow_mut().clear();
    }
}

/// Points the fetching of partition `p` at `follow` (leader, epoch), or
/// stops it (`None`).
async fn refetch(
    shard: &Rc<Shard>,
    image: &MetadataImage,
    topic_id: Uuid,
    p: i32,
    follow: Option<(NodeId, i32)>,
) {
    let key = (topic_id, p);
    let previous = shard.roles.following.borrow().get(&key).copied();
    if let Some(old) = previous {
        if follow.map(|f| f.0) != Some(old) {
            let fetcher = shard.roles.fetchers.borrow().get(&old).cloned();
            if let Some(fetcher) = fetcher {
                fetcher.remove_partition(key).await;
            }
            shard.roles.following.borrow_mut().remove(&key);
        }
    }
    let Some((leader, epoch)) = follow else {
        return;
    };
    let Some(partition) = shard.replicas.get(&topic_id, p) else {
        return;
    };
    let config = &shard.broker.config;
    let listener = config.inter_broker_listener_name().unwrap_or("PLAINTEXT");
    let Some(addr) = image
        .brokers
        .get(&leader)
        .and_then(|b| b.endpoint(listener))
        .map(|e| format!("{}:{}", e.host, e.port))
    else {
        tracing::warn!(
            leader,
            listener,
            "no address for the leader on the inter-broker listener"
        );
        return;
    };
    let mut fetchers = shard.roles.fetchers.borrow_mut();
    let stale = fetchers.get(&leader).is_some_and(|f| f.leader_addr != addr);
    if stale {
        // The leader restarted elsewhere: a new fetcher for the new address.
        fetchers.remove(&leader);
    }
    let fetcher = fetchers.entry(leader).or_insert_with(|| {
        let epoch = shard
            .broker
            .metadata
            .member()
            .map_or(-1, |m| m.broker_epoch());
        Rc::new(ReplicaFetcher::start(
            leader,
            &addr,
            fetcher_config(config, epoch, shard.broker.inter_broker_security.clone()),
        ))
    });
    fetcher.add_partition(partition.log.clone(), epoch);
    shard.roles.following.borrow_mut().insert(key, leader);
}

fn fetcher_config(
    config: &crate::config::BrokerConfig,
    broker_epoch: i64,
    security: crate::peer::PeerSecurity,
) -> FetcherConfig {
    let c = &config.cluster;
    let mut peer = PeerConfig {
        client_id: format!("sluice-replica-fetcher-{}", config.node_id),
        request_timeout: Duration::from_millis(c.replica_socket_timeout_ms),
        security,
        ..PeerConfig::default()
    };
    peer.max_response_bytes = peer
        .max_response_bytes
        .max(usize::try_from(c.replica_fetch_response_max_bytes).unwrap_or(0) + (1 << 20));
    FetcherConfig {
        replica_id: config.node_id,
        broker_epoch,
        max_wait: Duration::from_millis(c.replica_fetch_wait_max_ms),
        min_bytes: c.replica_fetch_min_bytes,
        max_bytes: c.replica_fetch_max_bytes,
        response_max_bytes: c.replica_fetch_response_max_bytes,
        backoff: Duration::from_millis(c.replica_fetch_backoff_ms),
        peer,
    }
}

/// Installs the cluster wiring on a shard: the assignment source, the ISR
/// changer, and the task that follows the metadata image.
pub fn install(shard: &Rc<Shard>, member: &ClusterMember) {
    let node = shard.broker.config.node_id;
    let source_member = member.clone();
    shard
        .replicas
        .set_assignment_source(Rc::new(move |topic: &TopicMeta, p: i32| {
            let image = source_member.image();
            let meta = image.by_id.get(&topic.id)?;
            assignment_of(node, meta.partition(p)?)
        }));
    shard.replicas.set_isr_changer(Rc::new(QuorumIsrChanger {
        member: member.clone(),
    }));
    super::hw_checkpoint::start(shard);
    let mut rx = member.subscribe();
    let weak = Rc::downgrade(shard);
    compio::runtime::spawn(async move {
        loop {
            let image = rx.borrow_and_update().clone();
            let Some(shard) = weak.upgrade() else { return };
            if shard.is_shutting_down() {
                return;
            }
            sync(&shard, &image).await;
            drop(shard);
            if rx.changed().await.is_err() {
                return;
            }
        }
    })
    .detach();
}

/// Brings this shard's partitions to the roles `image` gives them.
pub async fn sync(shard: &Rc<Shard>, image: &Arc<MetadataImage>) {
    let node = shard.broker.config.node_id;
    // Fenced brokers first: high watermarks recomputed below must not wait
    // for them.
    let fenced: HashSet<NodeId> = image
        .brokers
        .values()
        .filter(|b| b.fenced)
        .map(|b| b.id)
        .collect();
    let fencing_changed = *shard.replicas.context().fenced_brokers.borrow() != fenced;
    if fencing_changed {
        *shard.replicas.context().fenced_brokers.borrow_mut() = fenced;
        for p in shard.replicas.all() {
            p.update_high_watermark();
        }
    }
    let mut wanted: HashSet<(Uuid, i32)> = HashSet::new();
    let mut topics: Vec<&Arc<TopicMeta>> = image.by_id.values().collect();
    // The coordinators' topics first: coordination moves promptly.
    topics.sort_by_key(|t| t.name != OFFSETS_TOPIC && t.name != TXN_TOPIC);
    for topic in topics {
        for (p, meta) in (0..).zip(&topic.assignment) {
            if shard.broker.owner_of_partition(&topic.id, p) != shard.id {
                continue;
            }
            let Some(assignment) = assignment_of(node, meta) else {
                continue;
            };
            wanted.insert((topic.id, p));
            let key = (meta.leader_epoch, meta.partition_epoch, meta.leader == node);
            if shard.roles.applied.borrow().get(&(topic.id, p)) == Some(&key) {
                continue;
            }
            let result = match assignment {
                Assignment::Leader(spec) => {
                    // No fetched batch may land once this log leads.
                    refetch(shard, image, topic.id, p, None).await;
                    shard.replicas.become_leader(topic, p, spec).await
                }
                Assignment::Follower {
                    leader,
                    leader_epoch,
                } => {
                    shard
                        .replicas
                        .become_follower(topic, p, leader, leader_epoch)
                        .await
                }
            };
            match result {
                Ok(()) => {
                    shard.roles.applied.borrow_mut().insert((topic.id, p), key);
                    let follow = (meta.leader != node && meta.leader >= 0)
                        .then_some((meta.leader, meta.leader_epoch));
                    refetch(shard, image, topic.id, p, follow).await;
                    if topic.name == OFFSETS_TOPIC {
                        offsets_leadership(shard, topic, p, meta.leader == node).await;
                    }
                    if topic.name == TXN_TOPIC {
                        txn_leadership(
                            shard,
                            topic,
                            p,
                            (meta.leader == node).then_some(meta.leader_epoch),
                        );
                    }
                }
                Err(code) => {
                    tracing::warn!(topic = %topic.name, partition = p, error = %code, "cannot take the role the metadata gives")
                }
            }
        }
    }
    // Partitions no longer assigned here, or of deleted topics.
    let stale: Vec<(Uuid, i32)> = shard
        .roles
        .applied
        .borrow()
        .keys()
        .filter(|k| !wanted.contains(k))
        .copied()
        .collect();
    for (topic_id, p) in stale {
        shard.roles.applied.borrow_mut().remove(&(topic_id, p));
        if let Some(topic) = image
            .by_id
            .get(&topic_id)
            .filter(|t| t.name == OFFSETS_TOPIC)
        {
            // Its groups are coordinated elsewhere from now on.
            offsets_leadership(shard, topic, p, false).await;
        }
        if let Some(topic) = image.by_id.get(&topic_id).filter(|t| t.name == TXN_TOPIC) {
            txn_leadership(shard, topic, p, None);
        }
        refetch(shard, image, topic_id, p, None).await;
        let removed = shard.replicas.remove(&topic_id, p);
        if let Some(partition) = removed {
            // The topic is gone from the cluster, or the partition was
            // reassigned away from this broker: either way its files go
            // (Kafka's StopReplica with deletion). Were it reassigned back
            // later, it starts empty and fetches everything again.
            let dir = partition.log.dir.clone();
            let why = if image.by_id.contains_key(&topic_id) {
                "reassigned away from this broker"
            } else {
                "its topic was deleted"
            };
            match crate::log::deletion::delete_partition_dir(&dir) {
                Ok(()) => tracing::info!(dir = %dir.display(), "partition removed: {why}"),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a partition that was {why}")
                }
            }
        }
    }
}

/// Group coordination follows the leadership of `__consumer_offsets`
/// partition `p`.
async fn offsets_leadership(shard: &Rc<Shard>, topic: &Arc<TopicMeta>, p: i32, leads: bool) {
    let Some(coordinator) = shard.coordinator() else {
        return;
    };
    let broker = shard.broker.clone();
    let was = shard.roles.led_offsets_partitions.borrow().contains(&p);
    if leads && !was {
        let Some(log) = shard.partition_if_open(&topic.id, p) else {
            return;
        };
        match log.read_all_entries() {
            Ok(entries) => {
                coordinator.load(entries);
                shard.roles.led_offsets_partitions.borrow_mut().insert(p);
                tracing::info!(
                    partition = p,
                    "now coordinating the groups of {OFFSETS_TOPIC}-{p}"
                );
            }
            Err(e) => tracing::error!(partition = p, error = %e, "cannot load {OFFSETS_TOPIC}-{p}"),
        }
    } else if !leads && was {
        shard.roles.led_offsets_partitions.borrow_mut().remove(&p);
        let unloaded = coordinator.unload(|group| broker.offsets_partition_of_group(group) == p);
        tracing::info!(
            partition = p,
            groups = unloaded,
            "no longer coordinating the groups of {OFFSETS_TOPIC}-{p}"
        );
    }
}

/// Transaction coordination follows the leadership of
/// `__transaction_state` partition `p`: leading it in `leader_epoch` loads
/// its ids with that epoch as the coordinator epoch (a new epoch reloads).
fn txn_leadership(shard: &Rc<Shard>, topic: &Arc<TopicMeta>, p: i32, leader_epoch: Option<i32>) {
    let Some(coordinator) = shard.txn_coordinator() else {
        return;
    };
    let led = shard.roles.led_txn_partitions.borrow().get(&p).copied();
    match (leader_epoch, led) {
        (Some(epoch), led) if led != Some(epoch) => {
            coordinator.begin_load(p);
            let records = match shard.partition_if_open(&topic.id, p) {
                Some(log) => log.read_all_records(),
                None => Ok(Vec::new()),
            };
            match records {
                Ok(records) => {
                    coordinator.load(p, epoch, records);
                    shard.roles.led_txn_partitions.borrow_mut().insert(p, epoch);
                    tracing::info!(
                        partition = p,
                        coordinator_epoch = epoch,
                        "now coordinating the transactions of {TXN_TOPIC}-{p}"
                    );
                }
                Err(e) => {
                    coordinator.unload(p);
                    tracing::error!(partition = p, error = %e, "cannot load {TXN_TOPIC}-{p}")
                }
            }
        }
        (None, Some(_)) => {
            shard.roles.led_txn_partitions.borrow_mut().remove(&p);
            let dropped = coordinator.unload(p);
            tracing::info!(
                partition = p,
                transactional_ids = dropped,
                "no longer coordinating the transactions of {TXN_TOPIC}-{p}"
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(leader: NodeId, replicas: &[NodeId]) -> PartitionMeta {
        PartitionMeta {
            leader,
            leader_epoch: 3,
            partition_epoch: 7,
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            elr: Vec::new(),
            offline: Vec::new(),
        }
    }

    #[test]
    fn roles_follow_the_assignment() {
        assert_eq!(
            assignment_of(1, &meta(1, &[1, 2, 3])),
            Some(Assignment::Leader(LeaderAndIsr {
                leader_epoch: 3,
                partition_epoch: 7,
                replicas: vec![1, 2, 3],
                isr: vec![1, 2, 3],
            }))
        );
        assert_eq!(
            assignment_of(2, &meta(1, &[1, 2, 3])),
            Some(Assignment::Follower {
                leader: 1,
                leader_epoch: 3
            })
        );
        assert_eq!(assignment_of(4, &meta(1, &[1, 2, 3])), None);
    }
}
