//! WriteTxnMarkers (v1; kafka-protocol serves no v0): a transaction
//! coordinator telling partition leaders to end a producer's transaction.
//! For each marker and each of its partitions, the partition's owner shard
//! appends a commit or abort control batch through the replica layer
//! ([`Partition::append_txn_marker`](crate::replica::Partition::append_txn_marker):
//! leader only, acks=all), and the answer carries one error code per
//! partition as Kafka's (NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION,
//! INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, ...). Needs
//! ClusterAction or (KIP-1037: `kafka-transactions abort` is an admin's tool)
//! AlterCluster on the cluster, as MSK from Kafka 3.8 on; without either
//! every partition answers CLUSTER_AUTHORIZATION_FAILED.
//!
//! A marker on a `__consumer_offsets` partition also ends the producer's
//! transactional offset commits there (shard::txns `write_marker`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::cluster::TopicMeta;
use crate::shard::Shard;
use crate::txn::MarkerJob;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 1;

/// How long a marker may wait for its replication: Kafka's
/// `request.timeout.ms` default, which is what its coordinator waits too.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// One partition's marker to write on its owner shard.
struct MarkerWrite {
    /// (marker index, topic index, partition index) in the response.
    at: (usize, usize, usize),
    meta: Arc<TopicMeta>,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
}

pub async fn handle(ctx: &RequestContext, req: WriteTxnMarkersRequest) -> Response {
    let image = ctx.shard.broker.metadata.image();
    let allowed = ctx.may_see(Action::ClusterAction, Resource::Cluster)
        || ctx.allowed(Action::AlterCluster, Resource::Cluster);
    let deadline = Instant::now() + MARKER_TIMEOUT;
    let mut resp = WriteTxnMarkersResponse::default();
    let mut by_shard: BTreeMap<usize, Vec<MarkerWrite>> = BTreeMap::new();
    for (mi, marker) in req.markers.iter().enumerate() {
        let mut mr = WritableTxnMarkerResult::default();
        mr.producer_id = marker.producer_id;
        for (ti, topic) in marker.topics.iter().enumerate() {
            let mut tr = WritableTxnMarkerTopicResult::default();
            tr.name = topic.name.clone();
            let meta = image.by_name.get(topic.name.as_str());
            for (pi, &partition) in topic.partition_indexes.iter().enumerate() {
                let mut pr = WritableTxnMarkerPartitionResult::default();
                pr.partition_index = partition;
                match meta {
                    _ if !allowed => pr.error_code = ErrorCode::ClusterAuthorizationFailed.code(),
                    Some(m) if partition >= 0 && partition < m.partitions => {
                        let owner = ctx.shard.broker.owner_of_partition(&m.id, partition);
                        by_shard.entry(owner).or_default().push(MarkerWrite {
                            at: (mi, ti, pi),
                            meta: m.clone(),
                            partition,
                            producer_id: marker.producer_id.0,
                            producer_epoch: marker.producer_epoch,
                            coordinator_epoch: marker.coordinator_epoch,
                            commit: marker.transaction_result,
                        });
                    }
                    _ => pr.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                }
                tr.partitions.push(pr);
            }
            mr.topics.push(tr);
        }
        resp.markers.push(mr);
    }

    let broker = ctx.shard.broker.clone();
    let calls = by_shard.into_iter().map(|(owner, writes)| {
        let broker = broker.clone();
        async move {
            let positions: Vec<_> = writes.iter().map(|w| w.at).collect();
            let results = broker
                .on_shard(owner, move |shard| async move {
                    let each = writes.into_iter().map(|w| {
                        let shard = shard.clone();
                        async move { write_marker(&shard, w, deadline).await }
                    });
                    futures::future::join_all(each).await
                })
                .await;
            (positions, results)
        }
    });
    for (positions, results) in futures::future::join_all(calls).await {
        let codes: Vec<ErrorCode> = match results {
            Some(r) => r,
            None => vec![ErrorCode::LeaderNotAvailable; positions.len()],
        };
        for ((mi, ti, pi), code) in positions.into_iter().zip(codes) {
            resp.markers[mi].topics[ti].partitions[pi].error_code = code.code();
        }
    }
    ctx.respond(&resp)
}

/// Writes one marker on the partition's owner shard (the coordinator's own
/// local path, shard::txns `write_marker`, which also settles a
/// `__consumer_offsets` partition's transactional offsets); its error code.
async fn write_marker(shard: &Rc<Shard>, w: MarkerWrite, deadline: Instant) -> ErrorCode {
    let job = MarkerJob {
        producer_id: w.producer_id,
        producer_epoch: w.producer_epoch,
        coordinator_epoch: w.coordinator_epoch,
        commit: w.commit,
        partitions: Vec::new(),
    };
    crate::shard::txns::write_marker(shard, &w.meta, w.partition, &job, deadline).await
}
