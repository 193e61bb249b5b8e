//! InitProducerId (v0-v5). Without a transactional id: a fresh producer id
//! (unique across restarts) with epoch 0 for an idempotent producer;
//! producers that ask to bump their epoch (KIP-360) get a fresh id too,
//! which fences nothing they still need. With one: the transaction
//! coordinator's answer (its producer id and a bumped epoch that fences
//! every older instance; CONCURRENT_TRANSACTIONS while it aborts what an
//! older instance left open).

use crate::auth::{Action, Resource};
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use sluice_protocol::ErrorCode;

use super::{on_txn_coordinator, RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &RequestContext, req: InitProducerIdRequest) -> Response {
    let mut resp = InitProducerIdResponse::default();
    resp.producer_id = ProducerId(-1);
    resp.producer_epoch = -1;
    if let Some(id) = req.transactional_id.as_ref().filter(|id| !id.is_empty()) {
        if !ctx.allowed(
            Action::AlterTransactionalId,
            Resource::TransactionalId(id.as_str()),
        ) {
            resp.error_code = ErrorCode::TransactionalIdAuthorizationFailed.code();
            return ctx.respond(&resp);
        }
        let id = id.to_string();
        let timeout_ms = req.transaction_timeout_ms;
        let expected = (ctx.version >= 3).then_some((req.producer_id.0, req.producer_epoch));
        let answer = on_txn_coordinator(ctx, &id.clone(), move |c| async move {
            c.init_producer_id(&id, timeout_ms, expected).await
        })
        .await;
        match answer {
            Ok((pid, epoch)) => {
                resp.producer_id = ProducerId(pid);
                resp.producer_epoch = epoch;
            }
            Err(code) => resp.error_code = fenced_for(code, ctx.version, 4).code(),
        }
        return ctx.respond(&resp);
    }
    if !ctx.may_write_idempotently() {
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

/// PRODUCER_FENCED (KIP-588) for versions from `since`, INVALID_PRODUCER_EPOCH
/// for older clients, which do not know it.
pub fn fenced_for(code: ErrorCode, version: i16, since: i16) -> ErrorCode {
    if code == ErrorCode::ProducerFenced && version < since {
        ErrorCode::InvalidProducerEpoch
    } else {
        code
    }
}
