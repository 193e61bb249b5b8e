//! AlterPartitionReassignments (v0-v1, KIP-455/KIP-860): what
//! `kafka-reassign-partitions --execute` and `--cancel` and Admin's
//! `alterPartitionReassignments` send. Each partition gets a new target
//! replica list or, with none, has its reassignment in progress cancelled;
//! the controller decides (cluster/reassignment.rs) and the answer waits
//! until this broker's metadata has the change. v1's
//! `allow_replication_factor_change = false` refuses targets of another
//! size. Needs kafka-cluster:AlterCluster (Kafka's ALTER on the cluster).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::Action;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

pub async fn handle(ctx: &RequestContext, req: AlterPartitionReassignmentsRequest) -> Response {
    let mut resp = AlterPartitionReassignmentsResponse::default();
    resp.allow_replication_factor_change = req.allow_replication_factor_change;
    let mut asked: Vec<(String, i32, Option<Vec<i32>>)> = Vec::new();
    for t in &req.topics {
        for p in &t.partitions {
            let target = p
                .replicas
                .as_ref()
                .map(|r| r.iter().map(|b| b.0).collect::<Vec<i32>>());
            asked.push((t.name.to_string(), p.partition_index, target));
        }
    }
    let outcomes = match ctx.require_cluster(Action::AlterCluster) {
        Ok(()) => {
            ctx.shard
                .broker
                .metadata
                .alter_partition_reassignments(asked.clone(), req.allow_replication_factor_change)
                .await
        }
        Err(refused) => Err(refused),
    };
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err(e) => {
            // A refused request: the error at the top, as Kafka answers.
            resp.error_code = e.code.code();
            resp.error_message = Some(StrBytes::from_string(e.message));
            return ctx.respond(&resp);
        }
    };
    // Answer in request order.
    for (topic, partition, _) in asked {
        let outcome = outcomes
            .iter()
            .find(|o| o.topic == topic && o.partition == partition);
        let mut result = ReassignablePartitionResponse::default();
        result.partition_index = partition;
        result.error_code = outcome.map_or(ErrorCode::UnknownServerError.code(), |o| o.error_code);
        result.error_message = outcome
            .and_then(|o| o.message.clone())
            .map(StrBytes::from_string);
        match resp.responses.iter_mut().find(|r| r.name.as_str() == topic) {
            Some(r) => r.partitions.push(result),
            None => {
                let mut r = ReassignableTopicResponse::default();
                r.name = TopicName(StrBytes::from_string(topic));
                r.partitions.push(result);
                resp.responses.push(r);
            }
        }
    }
    ctx.respond(&resp)
}
