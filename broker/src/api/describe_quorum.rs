//! DescribeQuorum (v0-v2): the controller quorum's leader, epoch, high
//! watermark and every voter's progress, as the active controller sees it,
//! so `kafka-metadata-quorum describe --status/--replication` work through
//! any broker. A single node answers as a quorum of one. Requires Describe
//! on the cluster, as in Kafka.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::cluster::quorum::{QuorumDescription, ReplicaProgress};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// KRaft's metadata topic and partition, the only ones a quorum describes.
const METADATA_TOPIC: &str = "__cluster_metadata";

pub async fn handle(ctx: &RequestContext, req: DescribeQuorumRequest) -> Response {
    let mut resp = DescribeQuorumResponse::default();
    if !ctx.allowed(Action::DescribeCluster, Resource::Cluster) {
        resp.error_code = ErrorCode::ClusterAuthorizationFailed.code();
        return ctx.respond(&resp);
    }
    let broker = &ctx.shard.broker;
    let (description, voters) = match broker.metadata.member() {
        Some(member) => (member.describe_quorum().await, member.voters().clone()),
        None => {
            // A single node is a quorum of one that is always caught up.
            let now = now_ms();
            let me = broker.config.node_id;
            let image = broker.metadata.image();
            let progress = ReplicaProgress {
                replica_id: me,
                log_end_offset: i64::try_from(image.offset).unwrap_or(0),
                last_fetch_timestamp_ms: now,
                last_caught_up_timestamp_ms: now,
            };
            let (host, port) = ctx.advertised();
            (
                QuorumDescription {
                    node_id: me,
                    leader_id: Some(me),
                    leader_epoch: 0,
                    high_watermark: image.offset,
                    voters: vec![progress],
                    observers: Vec::new(),
                },
                [(me, format!("{host}:{port}"))].into_iter().collect(),
            )
        }
    };
    for topic in &req.topics {
        let mut t = TopicData::default();
        t.topic_name = topic.topic_name.clone();
        for p in &topic.partitions {
            let mut pd = PartitionData::default();
            pd.partition_index = p.partition_index;
            if topic.topic_name.as_str() != METADATA_TOPIC || p.partition_index != 0 {
                pd.error_code = ErrorCode::UnknownTopicOrPartition.code();
                t.partitions.push(pd);
                continue;
            }
            pd.leader_id = BrokerId(description.leader_id.unwrap_or(-1));
            pd.leader_epoch = i32::try_from(description.leader_epoch).unwrap_or(i32::MAX);
            pd.high_watermark = i64::try_from(description.high_watermark).unwrap_or(i64::MAX);
            pd.current_voters = description.voters.iter().map(replica_state).collect();
            pd.observers = description.observers.iter().map(replica_state).collect();
            t.partitions.push(pd);
        }
        resp.topics.push(t);
    }
    if ctx.version >= 2 {
        for (id, addr) in voters {
            let Some((host, port)) = addr.rsplit_once(':') else {
                continue;
            };
            let mut listener = Listener::default();
            listener.name = StrBytes::from_string(
                broker
                    .config
                    .cluster
                    .controller_listener_names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| "CONTROLLER".into()),
            );
            listener.host = StrBytes::from_string(host.trim_matches(['[', ']']).to_string());
            listener.port = port.parse().unwrap_or(0);
            let mut node = Node::default();
            node.node_id = BrokerId(id);
            node.listeners = vec![listener];
            resp.nodes.push(node);
        }
    }
    ctx.respond(&resp)
}

fn replica_state(r: &ReplicaProgress) -> ReplicaState {
    let mut s = ReplicaState::default();
    s.replica_id = BrokerId(r.replica_id);
    s.log_end_offset = r.log_end_offset;
    s.last_fetch_timestamp = r.last_fetch_timestamp_ms;
    s.last_caught_up_timestamp = r.last_caught_up_timestamp_ms;
    s
}
