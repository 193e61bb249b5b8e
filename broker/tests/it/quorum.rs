//! The controller quorum end to end: three controllers in this process, each
//! on its own thread and tokio runtime, talking TCP on 127.0.0.1 ephemeral
//! ports, with their storage in temporary directories. Leader election,
//! replication and convergence of the metadata image, NOT_CONTROLLER from
//! followers, failover when the leader stops, catch-up of a restarted node
//! (by log and by snapshot), a torn log tail cut at start-up and a corrupt
//! snapshot refused. Every wait is bounded by a tokio timeout.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sluice_broker::cluster::quorum::records::{
    BrokerRegistration, ConfigRecord, ConfigResourceType, Endpoint, PartitionRecord,
};
use sluice_broker::cluster::quorum::{
    ControllerQuorum, MetadataQuorum, MetadataRecord, NodeId, QuorumConfig, QuorumError, Voters,
};
use uuid::Uuid;

/// Generous bound for anything that should take a few seconds.
const WAIT: Duration = Duration::from_secs(20);

struct Cluster {
    _root: tempfile::TempDir,
    dirs: BTreeMap<NodeId, PathBuf>,
    voters: Voters,
    nodes: BTreeMap<NodeId, ControllerQuorum>,
    snapshot_every: u64,
}

impl Cluster {
    fn config(&self, id: NodeId) -> QuorumConfig {
        let mut config = QuorumConfig::new(id, self.voters.clone(), self.dirs[&id].clone());
        config.cluster_id = Some("quorum-test-cluster".into());
        config.snapshot_every = self.snapshot_every;
        config.snapshot_keep = 0;
        config.heartbeat_interval = Duration::from_millis(100);
        config.election_timeout_min = Duration::from_millis(600);
        config.election_timeout_max = Duration::from_millis(1200);
        config
    }

    /// Three controllers on ephemeral ports, started in parallel.
    fn start(snapshot_every: u64) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let listeners: BTreeMap<NodeId, std::net::TcpListener> = (1..=3)
            .map(|id| (id, std::net::TcpListener::bind("127.0.0.1:0").unwrap()))
            .collect();
        let voters = Voters(
            listeners
                .iter()
                .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
                .collect(),
        );
        let dirs = (1..=3)
            .map(|id| (id, root.path().join(format!("node-{id}"))))
            .collect();
        let mut cluster = Cluster {
            _root: root,
            dirs,
            voters,
            nodes: BTreeMap::new(),
            snapshot_every,
        };
        for (id, listener) in listeners {
            let node = ControllerQuorum::start_with_listener(cluster.config(id), listener).unwrap();
            cluster.nodes.insert(id, node);
        }
        cluster
    }

    /// Restarts a stopped node from its directory on its voter address.
    fn restart(&mut self, id: NodeId) -> Result<(), QuorumError> {
        assert!(!self.nodes.contains_key(&id));
        let node = ControllerQuorum::start(self.config(id))?;
        self.nodes.insert(id, node);
        Ok(())
    }

    async fn stop(&mut self, id: NodeId) {
        let node = self.nodes.remove(&id).unwrap();
        tokio::time::timeout(WAIT, node.shutdown())
            .await
            .expect("controller shutdown hung");
    }

    async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }

    /// Waits until every running node names the same running leader and
    /// that leader knows it leads.
    async fn leader(&self) -> NodeId {
        tokio::time::timeout(WAIT, async {
            loop {
                let named: Vec<Option<NodeId>> = self.nodes.values().map(|n| n.leader()).collect();
                if let Some(Some(leader)) = named.first() {
                    if named.iter().all(|n| *n == Some(*leader))
                        && self
                            .nodes
                            .get(leader)
                            .is_some_and(|n| n.describe().leader_id == Some(*leader))
                    {
                        return *leader;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("no leader agreed on in time")
    }

    /// Proposes on whichever node leads, retrying through elections.
    async fn propose(&self, records: Vec<MetadataRecord>) -> u64 {
        tokio::time::timeout(WAIT, async {
            loop {
                let leader = self.leader().await;
                match self.nodes[&leader].propose(records.clone()).await {
                    Ok(offset) => return offset,
                    Err(QuorumError::NotController { .. })
                    | Err(QuorumError::Indeterminate { .. }) => {
                        tokio::time::sleep(Duration::from_millis(20)).await
                    }
                    Err(e) => panic!("proposal failed: {e}"),
                }
            }
        })
        .await
        .expect("proposal did not commit in time")
    }

    /// Waits until every running node's image reflects `offset`, and
    /// checks that the images are equal.
    async fn converged(&self, offset: u64) {
        tokio::time::timeout(WAIT, async {
            loop {
                if self.nodes.values().all(|n| n.image().offset >= offset) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            let offsets: Vec<(NodeId, u64)> = self
                .nodes
                .iter()
                .map(|(id, n)| (*id, n.image().offset))
                .collect();
            panic!("images did not reach offset {offset}: {offsets:?}")
        });
        // Nodes may have applied further (blank) entries; compare content.
        let mut images = self.nodes.values().map(|n| {
            let mut image = (*n.image()).clone();
            image.offset = 0;
            image
        });
        let first = images.next().unwrap();
        for other in images {
            assert_eq!(first, other, "controller images diverged");
        }
    }
}

fn register(broker_id: NodeId, epoch: i64) -> MetadataRecord {
    MetadataRecord::RegisterBroker(BrokerRegistration {
        broker_id,
        broker_epoch: epoch,
        incarnation_id: Uuid::new_v4(),
        listeners: vec![Endpoint {
            name: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port: 9092,
            security_protocol: 0,
        }],
        rack: None,
        log_dirs: Vec::new(),
    })
}

fn create_topic(name: &str, partitions: i32) -> Vec<MetadataRecord> {
    let topic_id = Uuid::new_v4();
    let mut records = vec![MetadataRecord::Topic {
        name: name.into(),
        topic_id,
    }];
    for p in 0..partitions {
        let replicas = vec![p % 3 + 1, (p + 1) % 3 + 1, (p + 2) % 3 + 1];
        records.push(MetadataRecord::Partition(PartitionRecord {
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
    records.push(MetadataRecord::Config(ConfigRecord {
        resource_type: ConfigResourceType::Topic,
        resource_name: name.into(),
        key: "retention.ms".into(),
        value: Some("604800000".into()),
    }));
    records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_controllers_elect_replicate_and_fail_over() {
    let started = Instant::now();
    let mut cluster = Cluster::start(10_000);
    let leader = cluster.leader().await;
    eprintln!(
        "initial election: leader {leader} after {:?}",
        started.elapsed()
    );

    // The leader writes the configured cluster id by itself.
    tokio::time::timeout(WAIT, async {
        while cluster
            .nodes
            .values()
            .any(|n| n.image().cluster_id.is_none())
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("cluster id never replicated");
    for node in cluster.nodes.values() {
        assert_eq!(
            node.image().cluster_id.as_deref(),
            Some("quorum-test-cluster")
        );
    }

    // Proposals on the leader commit and every image converges.
    let mut last = 0;
    for id in 1..=3 {
        last = cluster.propose(vec![register(id, 1)]).await;
    }
    let created = cluster.propose(create_topic("application-events", 6)).await;
    assert!(created > last);
    cluster.converged(created).await;
    let image = cluster.nodes[&leader].image();
    assert_eq!(image.brokers.len(), 3);
    assert_eq!(
        image
            .topic_by_name("application-events")
            .unwrap()
            .partitions
            .len(),
        6
    );

    // A refused batch commits as a no-op on every node and says why.
    let refused = cluster.nodes[&leader]
        .propose(create_topic("application-events", 1))
        .await
        .unwrap_err();
    match &refused {
        QuorumError::Rejected { error, .. } => {
            assert_eq!(error.code, sluice_protocol::ErrorCode::TopicAlreadyExists)
        }
        other => panic!("expected a rejection, got {other}"),
    }

    // A follower answers NOT_CONTROLLER naming the leader and its address.
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    match cluster.nodes[&follower].propose(vec![register(9, 1)]).await {
        Err(e @ QuorumError::NotController { .. }) => {
            assert_eq!(e.error_code(), sluice_protocol::ErrorCode::NotController);
            let QuorumError::NotController {
                leader: named,
                leader_endpoint,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(named, Some(leader));
            assert_eq!(
                leader_endpoint.as_deref(),
                Some(cluster.voters.0[&leader].as_str())
            );
        }
        other => panic!("a follower accepted or failed otherwise: {other:?}"),
    }

    // DescribeQuorum's view from the leader: every voter caught up.
    let description = tokio::time::timeout(WAIT, async {
        loop {
            let d = cluster.nodes[&leader].describe();
            if d.voters
                .iter()
                .all(|v| v.log_end_offset == d.high_watermark as i64)
            {
                return d;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("voters never caught up");
    assert_eq!(description.leader_id, Some(leader));
    assert!(description.leader_epoch >= 1);
    assert_eq!(description.voters.len(), 3);
    assert!(description.observers.is_empty());
    for voter in &description.voters {
        assert!(voter.last_fetch_timestamp_ms > 0, "{voter:?}");
        assert!(voter.last_caught_up_timestamp_ms > 0, "{voter:?}");
    }
    let follower_view = cluster.nodes[&follower].describe();
    assert_eq!(follower_view.leader_id, Some(leader));
    assert!(follower_view.voters.iter().all(|v| v.log_end_offset == -1));

    // Kill the leader: a new one is elected and proposals continue.
    let old_epoch = description.leader_epoch;
    cluster.stop(leader).await;
    let stopped = Instant::now();
    let new_leader = cluster.leader().await;
    let failover = stopped.elapsed();
    eprintln!("failover: leader {leader} stopped, {new_leader} elected after {failover:?}");
    assert_ne!(new_leader, leader);
    assert!(
        failover < Duration::from_secs(5),
        "failover took {failover:?}"
    );
    assert!(cluster.nodes[&new_leader].describe().leader_epoch > old_epoch);
    let after_failover = cluster.propose(create_topic("after-failover", 2)).await;
    cluster.converged(after_failover).await;

    // Restart the old leader from its directory: it catches up.
    cluster.restart(leader).unwrap();
    assert_eq!(cluster.nodes[&leader].log_recovery().truncated_bytes, 0);
    let more = cluster.propose(vec![register(4, 1)]).await;
    cluster.converged(more).await;
    let rejoined = cluster.nodes[&leader].image();
    assert!(rejoined.topic_by_name("after-failover").is_some());
    assert_eq!(rejoined.brokers.len(), 4);

    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_node_gets_a_snapshot_and_storage_damage_is_handled() {
    const SNAPSHOT_EVERY: u64 = 5;
    let mut cluster = Cluster::start(SNAPSHOT_EVERY);
    let leader = cluster.leader().await;
    let first = cluster.propose(vec![register(1, 1)]).await;
    cluster.converged(first).await;

    // Take a follower down and move the log well past it.
    let lagging = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let (_, _, lagging_last) = cluster.nodes[&lagging].log_bounds();
    let lagging_last = lagging_last.unwrap();
    cluster.stop(lagging).await;
    let mut last = 0;
    for i in 0..(4 * SNAPSHOT_EVERY as i32) {
        last = cluster.propose(create_topic(&format!("t{i}"), 1)).await;
    }
    // The leader snapshotted and purged the entries the lagging node lacks.
    let leader_now = cluster.leader().await;
    let purged = tokio::time::timeout(WAIT, async {
        loop {
            let (purged, snapshot, _) = cluster.nodes[&leader_now].log_bounds();
            if let (Some(purged), Some(_)) = (purged, snapshot) {
                if purged > lagging_last {
                    return purged;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the leader never snapshotted and purged its log");

    // Back from its directory, it can only catch up through the snapshot.
    cluster.restart(lagging).unwrap();
    cluster.converged(last).await;
    let (_, snapshot, _) = cluster.nodes[&lagging].log_bounds();
    assert!(
        snapshot.is_some_and(|s| s >= purged),
        "lagging node's snapshot {snapshot:?} is not the leader's (purged to {purged})"
    );
    assert_eq!(
        cluster.nodes[&lagging].image().topics.len(),
        4 * SNAPSHOT_EVERY as usize
    );

    // A torn log tail: cut at start-up to the last whole entry; the node
    // then fetches the rest from the leader again.
    let leader = cluster.leader().await;
    let victim = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    let more = cluster.propose(create_topic("before-the-tear", 1)).await;
    cluster.converged(more).await;
    // Make sure the victim holds entries after its last purge to tear.
    let mut filler = 0;
    while {
        let (purged, _, last) = cluster.nodes[&victim].log_bounds();
        last <= purged
    } {
        filler += 1;
        let at = cluster.propose(vec![register(100 + filler, 1)]).await;
        cluster.converged(at).await;
    }
    cluster.stop(victim).await;
    let log = cluster.dirs[&victim].join("raft.log");
    let len = std::fs::metadata(&log).unwrap().len();
    assert!(len > 20, "victim's log is unexpectedly short ({len} bytes)");
    let file = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    file.set_len(len - 7).unwrap();
    drop(file);
    cluster.restart(victim).unwrap();
    assert!(cluster.nodes[&victim].log_recovery().truncated_bytes > 0);
    let after_tear = cluster.propose(create_topic("after-the-tear", 1)).await;
    cluster.converged(after_tear).await;
    assert!(cluster.nodes[&victim]
        .image()
        .topic_by_name("before-the-tear")
        .is_some());

    // A corrupt snapshot refuses start-up, naming the file.
    cluster.stop(victim).await;
    let snapshot = cluster.dirs[&victim].join("snapshot");
    let mut bytes = std::fs::read(&snapshot).expect("victim has a snapshot");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&snapshot, &bytes).unwrap();
    match cluster.restart(victim) {
        Err(QuorumError::Storage(message)) => {
            assert!(message.contains("snapshot"), "{message}")
        }
        Err(other) => panic!("wrong start-up error: {other}"),
        Ok(()) => panic!("started from a corrupt snapshot"),
    }

    cluster.shutdown().await;
}

#[test]
fn a_node_outside_the_voters_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let voters = Voters::parse("1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3").unwrap();
    match ControllerQuorum::start(QuorumConfig::new(4, voters, dir.path())) {
        Err(QuorumError::Config(message)) => assert!(
            message.contains("node.id 4 is not among controller.quorum.voters"),
            "{message}"
        ),
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a non-voter started"),
    }
}
