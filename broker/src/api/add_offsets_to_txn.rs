//! AddOffsetsToTxn (v0-v4): a transactional producer about to commit a
//! group's offsets (`sendOffsetsToTransaction`) adds that group's
//! `__consumer_offsets` partition to its transaction, so the markers settle
//! the offsets with the records. Write on the transactional id and Read on
//! the group are required.

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use sluice_protocol::ErrorCode;

use super::init_producer_id::fenced_for;
use super::{on_txn_coordinator, RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::cluster::OFFSETS_TOPIC;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &RequestContext, req: AddOffsetsToTxnRequest) -> Response {
    let id = req.transactional_id.to_string();
    let group = req.group_id.to_string();
    let code = if !ctx.allowed(Action::AlterTransactionalId, Resource::TransactionalId(&id)) {
        ErrorCode::TransactionalIdAuthorizationFailed
    } else if !ctx.allowed(Action::AlterGroup, Resource::Group(&group)) {
        // Kafka's READ on the group, which MSK calls AlterGroup.
        ErrorCode::GroupAuthorizationFailed
    } else {
        let partition = ctx.shard.broker.offsets_partition_of_group(&group);
        let (pid, epoch) = (req.producer_id.0, req.producer_epoch);
        let added = vec![(OFFSETS_TOPIC.to_string(), partition)];
        on_txn_coordinator(ctx, &id.clone(), move |c| async move {
            c.add_partitions(&id, pid, epoch, &added).await
        })
        .await
        .err()
        .map_or(ErrorCode::None, |code| fenced_for(code, ctx.version, 2))
    };
    let mut resp = AddOffsetsToTxnResponse::default();
    resp.error_code = code.code();
    ctx.respond(&resp)
}
