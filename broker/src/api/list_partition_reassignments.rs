//! ListPartitionReassignments (v0, KIP-455): what
//! `kafka-reassign-partitions --verify` and `--list` and Admin's
//! `listPartitionReassignments` ask. Answers the reassignments in progress
//! (replicas, adding, removing) as the active controller knows them, as
//! KRaft forwards it, for the asked partitions or all. Needs kafka-cluster:DescribeCluster
//! (Kafka's DESCRIBE on the cluster).

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, Response};
use crate::auth::Action;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: ListPartitionReassignmentsRequest) -> Response {
    let mut resp = ListPartitionReassignmentsResponse::default();
    if let Err(e) = ctx.require_cluster(Action::DescribeCluster) {
        resp.error_code = e.code.code();
        resp.error_message = Some(StrBytes::from_string(e.message));
        return ctx.respond(&resp);
    }
    let wanted: Option<Vec<(String, i32)>> = req.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partition_indexes.iter().map(|p| (t.name.to_string(), *p)))
            .collect()
    });
    let ids = |v: Vec<i32>| v.into_iter().map(BrokerId).collect::<Vec<_>>();
    let listed = ctx
        .shard
        .broker
        .metadata
        .partition_reassignments(wanted)
        .await;
    let listed = match listed {
        Ok(listed) => listed,
        Err(e) => {
            resp.error_code = e.code.code();
            resp.error_message = Some(StrBytes::from_string(e.message));
            return ctx.respond(&resp);
        }
    };
    for r in listed {
        let mut p = OngoingPartitionReassignment::default();
        p.partition_index = r.partition;
        p.replicas = ids(r.replicas);
        p.adding_replicas = ids(r.adding);
        p.removing_replicas = ids(r.removing);
        match resp.topics.iter_mut().find(|t| t.name.as_str() == r.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = OngoingTopicReassignment::default();
                t.name = TopicName(StrBytes::from_string(r.topic));
                t.partitions.push(p);
                resp.topics.push(t);
            }
        }
    }
    ctx.respond(&resp)
}
