//! Wiring the transaction coordinator into a shard: its [`TxnLog`] is the
//! id's `__transaction_state` partition (appended through the replica layer
//! with acks=all), its producer ids come from the cluster's id blocks, and
//! its markers go to each partition's leader: this broker's own partitions
//! are marked on their owning shard ([`write_marker`], which WriteTxnMarkers
//! uses too), other brokers' through WriteTxnMarkers over one inter-broker
//! connection per broker. Also: creating `__transaction_state` on first use
//! (as Kafka does on the first FindCoordinator for a transactional id), and
//! loading a shard's partitions of it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use futures::lock::Mutex as AsyncMutex;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::batch::{BatchBuilder, BatchHeader};
use sluice_protocol::clock::now_ms;
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;

use crate::cluster::{NodeId, TopicLayout, TopicMeta, OFFSETS_TOPIC};
use crate::config::names::{CLEANUP_POLICY, MIN_INSYNC_REPLICAS, SEGMENT_BYTES};
use crate::peer::{Peer, PeerConfig};
use crate::shard::Shard;
use crate::txn::{
    MarkerJob, MarkerWriter, ProducerIdSource, TxnConfig, TxnCoordinator, TxnLog, TXN_TOPIC,
};

/// How long a `__transaction_state` append waits for the ISR (Kafka's
/// coordinator uses the request timeout; its default is far longer than a
/// client waits for InitProducerId).
const TXN_LOG_TIMEOUT: Duration = Duration::from_millis(5000);
/// How long a marker waits for its partition's ISR.
const MARKER_TIMEOUT: Duration = Duration::from_millis(5000);

struct TxnStateLog {
    shard: Weak<Shard>,
}

impl TxnLog for TxnStateLog {
    fn append(
        &self,
        partition: i32,
        key: Bytes,
        value: Option<Bytes>,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>> {
        let shard = self.shard.upgrade();
        Box::pin(async move {
            let shard = shard.ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let meta = shard
                .broker
                .metadata
                .image()
                .by_name
                .get(TXN_TOPIC)
                .cloned()
                .ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let replica = shard.replica(&meta, partition).await?;
            let now = now_ms();
            let mut b = BatchBuilder::new(Compression::None).with_base_timestamp(now);
            b.push(now, Some(&key[..]), value.as_deref(), &[])
                .map_err(|_| ErrorCode::CorruptMessage)?;
            let bytes = b.build();
            let header = BatchHeader::parse(&bytes).map_err(|_| ErrorCode::CorruptMessage)?;
            let deadline = Instant::now() + TXN_LOG_TIMEOUT;
            let r = replica.append(vec![(header, bytes)], -1, deadline).await;
            if r.error == ErrorCode::None {
                Ok(())
            } else {
                Err(r.error)
            }
        })
    }
}

struct ClusterProducerIds {
    shard: Weak<Shard>,
}

impl ProducerIdSource for ClusterProducerIds {
    fn allocate(&self) -> LocalBoxFuture<'static, Result<i64, ErrorCode>> {
        let shard = self.shard.upgrade();
        Box::pin(async move {
            let shard = shard.ok_or(ErrorCode::CoordinatorNotAvailable)?;
            shard
                .broker
                .metadata
                .allocate_producer_id()
                .await
                .map_err(|e| e.code)
        })
    }
}

/// Marks one partition this broker leads, on the shard that owns it, and
/// settles a `__consumer_offsets` partition's transactional offsets.
pub async fn write_marker(
    shard: &Rc<Shard>,
    topic: &Arc<TopicMeta>,
    partition: i32,
    job: &MarkerJob,
    deadline: Instant,
) -> ErrorCode {
    let owner = shard.broker.owner_of_partition(&topic.id, partition);
    let topic = topic.clone();
    let (producer_id, producer_epoch, coordinator_epoch, commit) = (
        job.producer_id,
        job.producer_epoch,
        job.coordinator_epoch,
        job.commit,
    );
    shard
        .broker
        .on_shard(owner, move |shard| async move {
            let replica = match shard.replica(&topic, partition).await {
                Ok(r) => r,
                Err(code) => return code,
            };
            let written = replica
                .append_txn_marker(
                    producer_id,
                    producer_epoch,
                    coordinator_epoch,
                    commit,
                    deadline,
                )
                .await;
            if let Err(code) = written {
                return code;
            }
            if topic.name == OFFSETS_TOPIC {
                if let Some(groups) = shard.coordinator() {
                    let broker = shard.broker.clone();
                    groups.complete_txn(producer_id, commit, |g| {
                        broker.offsets_partition_of_group(g) == partition
                    });
                }
            }
            ErrorCode::None
        })
        .await
        .unwrap_or(ErrorCode::NotLeaderOrFollower)
}

/// One broker's shared connection for markers.
type SharedPeer = Rc<AsyncMutex<Peer>>;

/// Delivers markers: local partitions directly, the rest by WriteTxnMarkers
/// to their leaders.
struct BrokerMarkers {
    shard: Weak<Shard>,
    /// One connection per broker, shared by this shard's marker jobs.
    peers: RefCell<HashMap<NodeId, SharedPeer>>,
}

impl BrokerMarkers {
    fn peer(&self, shard: &Shard, node: NodeId) -> Option<SharedPeer> {
        let image = shard.broker.metadata.image();
        let config = &shard.broker.config;
        let listener = config.inter_broker_listener_name().unwrap_or("PLAINTEXT");
        let addr = image
            .brokers
            .get(&node)
            .and_then(|b| b.endpoint(listener))
            .map(|e| format!("{}:{}", e.host, e.port))?;
        let mut peers = self.peers.borrow_mut();
        if let Some(p) = peers.get(&node) {
            if p.try_lock().is_none_or(|p| p.addr() == addr) {
                return Some(p.clone());
            }
        }
        let cfg = PeerConfig {
            client_id: format!("sluice-txn-markers-{}", config.node_id),
            security: shard.broker.inter_broker_security.clone(),
            ..PeerConfig::default()
        };
        let p = Rc::new(AsyncMutex::new(Peer::new(node, &addr, cfg)));
        peers.insert(node, p.clone());
        Some(p)
    }
}

impl MarkerWriter for BrokerMarkers {
    fn write(&self, job: MarkerJob) -> LocalBoxFuture<'static, Vec<((String, i32), ErrorCode)>> {
        let Some(shard) = self.shard.upgrade() else {
            let out = job
                .partitions
                .iter()
                .map(|tp| (tp.clone(), ErrorCode::CoordinatorNotAvailable))
                .collect();
            return Box::pin(async move { out });
        };
        let image = shard.broker.metadata.image();
        let me = shard.broker.config.node_id;
        let clustered = shard.broker.metadata.member().is_some();
        let mut out: Vec<((String, i32), ErrorCode)> = Vec::new();
        let mut local: Vec<(Arc<TopicMeta>, i32)> = Vec::new();
        let mut remote: BTreeMap<NodeId, Vec<(String, i32)>> = BTreeMap::new();
        for (topic, p) in &job.partitions {
            let Some(meta) = image.by_name.get(topic.as_str()) else {
                // Deleted: nothing left to mark.
                out.push(((topic.clone(), *p), ErrorCode::None));
                continue;
            };
            match meta.partition(*p).map(|a| a.leader) {
                _ if !clustered => local.push((meta.clone(), *p)),
                Some(leader) if leader == me => local.push((meta.clone(), *p)),
                Some(leader) if leader >= 0 => {
                    remote.entry(leader).or_default().push((topic.clone(), *p))
                }
                _ => out.push(((topic.clone(), *p), ErrorCode::NotLeaderOrFollower)),
            }
        }
        let remote: Vec<_> = remote
            .into_iter()
            .map(|(node, parts)| (self.peer(&shard, node), parts))
            .collect();
        Box::pin(async move {
            let deadline = Instant::now() + MARKER_TIMEOUT;
            let locals = local.iter().map(|(meta, p)| {
                let shard = shard.clone();
                let job = &job;
                async move {
                    let code = write_marker(&shard, meta, *p, job, deadline).await;
                    ((meta.name.clone(), *p), code)
                }
            });
            let remotes = remote.into_iter().map(|(peer, parts)| {
                let job = &job;
                async move { send_markers(peer, job, parts).await }
            });
            let (l, r) = futures::future::join(
                futures::future::join_all(locals),
                futures::future::join_all(remotes),
            )
            .await;
            out.extend(l);
            out.extend(r.into_iter().flatten());
            out
        })
    }
}

/// WriteTxnMarkers for `parts` to their leader; every partition gets the
/// request's failure if it fails as a whole.
async fn send_markers(
    peer: Option<SharedPeer>,
    job: &MarkerJob,
    parts: Vec<(String, i32)>,
) -> Vec<((String, i32), ErrorCode)> {
    let fail = |parts: Vec<(String, i32)>, code: ErrorCode| {
        parts.into_iter().map(|tp| (tp, code)).collect::<Vec<_>>()
    };
    let Some(peer) = peer else {
        return fail(parts, ErrorCode::NotLeaderOrFollower);
    };
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &parts {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut marker = WritableTxnMarker::default();
    marker.producer_id = ProducerId(job.producer_id);
    marker.producer_epoch = job.producer_epoch;
    marker.transaction_result = job.commit;
    marker.coordinator_epoch = job.coordinator_epoch;
    marker.topics = by_topic
        .into_iter()
        .map(|(t, ps)| {
            let mut mt = WritableTxnMarkerTopic::default();
            mt.name = TopicName(StrBytes::from_string(t.to_string()));
            mt.partition_indexes = ps;
            mt
        })
        .collect();
    let mut req = WriteTxnMarkersRequest::default();
    req.markers = vec![marker];
    let mut peer = peer.lock().await;
    match peer.send(&req, MARKER_TIMEOUT).await {
        Ok((resp, _)) => {
            let mut out = Vec::new();
            for m in resp.markers {
                for t in m.topics {
                    for p in t.partitions {
                        out.push((
                            (t.name.to_string(), p.partition_index),
                            ErrorCode::from_code(p.error_code),
                        ));
                    }
                }
            }
            // Anything the answer left out is retried.
            for tp in parts {
                if !out.iter().any(|(x, _)| *x == tp) {
                    out.push((tp, ErrorCode::UnknownServerError));
                }
            }
            out
        }
        Err(e) => {
            tracing::debug!(error = %e, "WriteTxnMarkers to a leader failed");
            fail(parts, ErrorCode::NetworkException)
        }
    }
}

/// Starts the shard's transaction coordinator; on a single node it takes
/// over the shard's `__transaction_state` partitions at once (in a cluster,
/// shard::roles does that as leadership arrives).
pub fn start(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let t = &shard.broker.config.transactions;
    let config = TxnConfig {
        num_partitions: t.state_log_num_partitions,
        max_timeout_ms: t.max_timeout_ms,
        id_expiration_ms: t.id_expiration_ms,
        abort_check_interval_ms: t.abort_check_interval_ms,
        expiry_check_interval_ms: t.expiry_check_interval_ms,
    };
    let weak = Rc::downgrade(shard);
    let coordinator = TxnCoordinator::new(
        config,
        Rc::new(TxnStateLog {
            shard: weak.clone(),
        }),
        Rc::new(ClusterProducerIds {
            shard: weak.clone(),
        }),
        Rc::new(BrokerMarkers {
            shard: weak,
            peers: RefCell::new(HashMap::new()),
        }),
    );
    *shard.txns.borrow_mut() = Some(coordinator);
    if shard.broker.metadata.member().is_none() {
        take_over_standalone(shard)?;
    }
    Ok(())
}

/// Single node: this shard coordinates the ids of every
/// `__transaction_state` partition it owns (coordinator epoch 0).
pub fn take_over_standalone(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let Some(coordinator) = shard.txn_coordinator() else {
        return Ok(());
    };
    let image = shard.broker.metadata.image();
    let Some(meta) = image.by_name.get(TXN_TOPIC) else {
        return Ok(());
    };
    for p in 0..meta.partitions {
        if shard.broker.owner_of_partition(&meta.id, p) != shard.id || coordinator.owns(p) {
            continue;
        }
        let records = match shard.partition_if_open(&meta.id, p) {
            Some(log) => log.read_all_records()?,
            None => Vec::new(),
        };
        coordinator.load(p, 0, records);
    }
    Ok(())
}

/// Creates `__transaction_state` if it does not exist yet, with Kafka's
/// settings (compacted, `transaction.state.log.*`), the replication factor
/// capped at the brokers registered and `min.insync.replicas` at that.
pub async fn ensure_topic(shard: &Rc<Shard>) -> Result<(), ErrorCode> {
    let broker = &shard.broker;
    if broker.metadata.image().by_name.contains_key(TXN_TOPIC) {
        return Ok(());
    }
    let t = &broker.config.transactions;
    let brokers = match broker.metadata.member() {
        Some(_) => broker.metadata.image().brokers.len().max(1),
        None => 1,
    };
    let rf = i16::try_from(brokers)
        .unwrap_or(i16::MAX)
        .min(t.state_log_replication_factor);
    let mut configs = BTreeMap::new();
    configs.insert(CLEANUP_POLICY.to_string(), "compact".to_string());
    configs.insert(
        SEGMENT_BYTES.to_string(),
        t.state_log_segment_bytes.to_string(),
    );
    configs.insert(
        MIN_INSYNC_REPLICAS.to_string(),
        t.state_log_min_isr.min(i32::from(rf)).to_string(),
    );
    let layout = TopicLayout::Counts {
        partitions: t.state_log_num_partitions,
        replication_factor: rf,
    };
    match broker
        .metadata
        .create_topic(TXN_TOPIC, layout, configs, false, true)
        .await
    {
        Ok(_) => {
            tracing::info!(replication_factor = rf, "created {TXN_TOPIC}");
        }
        Err(e) if e.code == ErrorCode::TopicAlreadyExists => return Ok(()),
        Err(e) => {
            tracing::warn!(error = %e.message, "cannot create {TXN_TOPIC}");
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
    }
    if broker.metadata.member().is_none() {
        broker
            .on_all_shards(|shard| async move {
                if let Err(e) = take_over_standalone(&shard) {
                    tracing::error!(error = %e, "cannot load {TXN_TOPIC}");
                }
            })
            .await;
    }
    Ok(())
}
