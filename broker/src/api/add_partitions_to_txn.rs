//! AddPartitionsToTxn (v0-v3, the client form): the partitions a
//! transactional producer is about to write join its transaction at the
//! coordinator, so EndTxn knows where to send markers. Write on the
//! transactional id and on each topic is required; when any partition is
//! refused (unauthorized, unknown), none is added and the others answer
//! OPERATION_NOT_ATTEMPTED, as Kafka does. (v4+, the brokers' batched
//! verification of KIP-890, is not served.)

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName};
use sluice_protocol::ErrorCode;

use super::init_producer_id::fenced_for;
use super::{on_txn_coordinator, RequestContext, Response};
use crate::auth::{Action, Resource};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 3;

pub async fn handle(ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> Response {
    let id = req.v3_and_below_transactional_id.to_string();
    let image = ctx.shard.broker.metadata.image();
    let id_allowed = ctx.allowed(Action::AlterTransactionalId, Resource::TransactionalId(&id));
    let mut outcomes: Vec<(TopicName, Vec<(i32, ErrorCode)>)> = Vec::new();
    let mut wanted: Vec<(String, i32)> = Vec::new();
    let mut refused = false;
    for t in &req.v3_and_below_topics {
        let name = t.name.as_str();
        let refusal = if !id_allowed {
            Some(ErrorCode::TransactionalIdAuthorizationFailed)
        } else if !ctx.allowed(Action::WriteData, Resource::Topic(name)) {
            Some(ErrorCode::TopicAuthorizationFailed)
        } else {
            None
        };
        let count = image.by_name.get(name).map_or(0, |m| m.partitions);
        let parts = t
            .partitions
            .iter()
            .map(|&p| {
                let code = match refusal {
                    Some(code) => code,
                    None if p < 0 || p >= count => ErrorCode::UnknownTopicOrPartition,
                    None => {
                        wanted.push((name.to_string(), p));
                        ErrorCode::None
                    }
                };
                refused |= code != ErrorCode::None;
                (p, code)
            })
            .collect();
        outcomes.push((t.name.clone(), parts));
    }
    let outcome = if refused {
        Err(ErrorCode::OperationNotAttempted)
    } else {
        let (pid, epoch) = (
            req.v3_and_below_producer_id.0,
            req.v3_and_below_producer_epoch,
        );
        on_txn_coordinator(ctx, &id.clone(), move |c| async move {
            c.add_partitions(&id, pid, epoch, &wanted).await
        })
        .await
        .map_err(|code| fenced_for(code, ctx.version, 2))
    };
    let mut resp = AddPartitionsToTxnResponse::default();
    resp.results_by_topic_v3_and_below = outcomes
        .into_iter()
        .map(|(name, parts)| {
            let mut rt = AddPartitionsToTxnTopicResult::default();
            rt.name = name;
            rt.results_by_partition = parts
                .into_iter()
                .map(|(p, code)| {
                    let mut rp = AddPartitionsToTxnPartitionResult::default();
                    rp.partition_index = p;
                    rp.partition_error_code = match (&outcome, code) {
                        (Err(ErrorCode::OperationNotAttempted), ErrorCode::None) => {
                            ErrorCode::OperationNotAttempted
                        }
                        (Err(ErrorCode::OperationNotAttempted), code) => code,
                        (Err(code), _) => *code,
                        (Ok(()), _) => ErrorCode::None,
                    }
                    .code();
                    rp
                })
                .collect();
            rt
        })
        .collect();
    ctx.respond(&resp)
}
