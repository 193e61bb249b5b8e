//! EndTxn (v0-v4): commit or abort a transaction. The coordinator answers
//! once PrepareCommit/PrepareAbort is durable; the markers follow.

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse};
use sluice_protocol::ErrorCode;

use super::init_producer_id::fenced_for;
use super::{on_txn_coordinator, RequestContext, Response};
use crate::auth::{Action, Resource};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &RequestContext, req: EndTxnRequest) -> Response {
    let id = req.transactional_id.to_string();
    let code = if !ctx.allowed(Action::AlterTransactionalId, Resource::TransactionalId(&id)) {
        ErrorCode::TransactionalIdAuthorizationFailed
    } else {
        let (pid, epoch, commit) = (req.producer_id.0, req.producer_epoch, req.committed);
        on_txn_coordinator(ctx, &id.clone(), move |c| async move {
            c.end_txn(&id, pid, epoch, commit).await
        })
        .await
        .err()
        .map_or(ErrorCode::None, |code| fenced_for(code, ctx.version, 2))
    };
    let mut resp = EndTxnResponse::default();
    resp.error_code = code.code();
    ctx.respond(&resp)
}
