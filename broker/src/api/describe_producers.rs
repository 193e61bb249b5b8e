//! DescribeProducers (v0): per partition, the producers the leader's log
//! holds state for (producer id, epoch, last sequence, last timestamp,
//! coordinator epoch of the last marker, and the first offset of the open
//! transaction or -1), as `kafka-transactions describe-producers` shows
//! them. Needs Read on the topic (MSK IAM's ReadData, TOPIC_AUTHORIZATION_FAILED
//! otherwise); answered by the partition's leader only.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use sluice_protocol::ErrorCode;

use super::{with_replica, RequestContext, Response};
use crate::auth::{Action, Resource};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: DescribeProducersRequest) -> Response {
    let image = ctx.shard.broker.metadata.image();
    let mut resp = DescribeProducersResponse::default();
    for t in req.topics {
        let mut tr = TopicResponse::default();
        tr.name = t.name.clone();
        let allowed = ctx.allowed(Action::ReadData, Resource::Topic(t.name.as_str()));
        let meta = image.by_name.get(t.name.as_str()).cloned();
        for partition in t.partition_indexes {
            let mut pr = PartitionResponse::default();
            pr.partition_index = partition;
            let answer = match meta.clone() {
                _ if !allowed => Err(ErrorCode::TopicAuthorizationFailed),
                Some(m) if partition >= 0 && partition < m.partitions => {
                    with_replica(ctx, m, partition, |part| {
                        part.require_leader()?;
                        Ok(producer_states(&part.log))
                    })
                    .await
                    .and_then(|r| r)
                }
                _ => Err(ErrorCode::UnknownTopicOrPartition),
            };
            match answer {
                Ok(states) => pr.active_producers = states,
                Err(code) => pr.error_code = code.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    ctx.respond(&resp)
}

/// The log's producers as DescribeProducers reports them, by producer id.
fn producer_states(log: &crate::log::PartitionLog) -> Vec<ProducerState> {
    let st = log.state.borrow();
    let mut out: Vec<ProducerState> = st
        .producers
        .producers
        .iter()
        .map(|(&id, e)| {
            let mut p = ProducerState::default();
            p.producer_id = ProducerId(id);
            p.producer_epoch = i32::from(e.epoch);
            p.last_sequence = e.last_sequence();
            p.last_timestamp = e.last_timestamp;
            p.coordinator_epoch = e.coordinator_epoch;
            p.current_txn_start_offset = e.current_txn_first_offset.unwrap_or(-1);
            p
        })
        .collect();
    out.sort_by_key(|p| p.producer_id.0);
    out
}
