//! InitProducerId (v0-v5) for idempotent producers: a fresh producer id
//! (unique across restarts) with epoch 0. Producers that ask to bump their
//! epoch (KIP-360) get a fresh id too, which fences nothing they still need.
//! A transactional id is refused until transactions exist.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> Response {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = &req.transactional_id {
        resp.error_code = if ctx.allowed(
            Action::AlterTransactionalId,
            Resource::TransactionalId(id.as_str()),
        ) {
            COORDINATOR_NOT_AVAILABLE
        } else {
            TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        };
        return ctx.respond(&resp);
    }
    if !ctx.allowed(Action::WriteDataIdempotently, Resource::Cluster) {
        resp.error_code = super::CLUSTER_AUTHORIZATION_FAILED;
        return ctx.respond(&resp);
    }
    match ctx.shard.broker.metadata.allocate_producer_id() {
        Ok(id) => {
            resp.producer_id = ProducerId(id);
            resp.producer_epoch = 0;
        }
        Err(e) => resp.error_code = e.code,
    }
    ctx.respond(&resp)
}
