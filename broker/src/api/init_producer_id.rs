//! InitProducerId (v0-v5) for idempotent producers: a fresh producer id
//! (unique across restarts) with epoch 0. Producers that ask to bump their
//! epoch (KIP-360) get a fresh id too, which fences nothing they still need.
//! A transactional id is refused until transactions exist.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> Response {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = &req.transactional_id {
        resp.error_code = if ctx.allowed(
            Action::AlterTransactionalId,
            Resource::TransactionalId(id.as_str()),
        ) {
            ErrorCode::CoordinatorNotAvailable
        } else {
            ErrorCode::TransactionalIdAuthorizationFailed
        }
        .code();
        return ctx.respond(&resp);
    }
    if !ctx.allowed(Action::WriteDataIdempotently, Resource::Cluster) {
        resp.error_code = ErrorCode::ClusterAuthorizationFailed.code();
        return ctx.respond(&resp);
    }
    match ctx.shard.broker.metadata.allocate_producer_id().await {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => resp.error_code = e.code.code(),
    }
    ctx.respond(&resp)
}
