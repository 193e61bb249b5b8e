//! JoinGroup (v0-v9): routed to the coordinator on the shard that owns the
//! group (the owner of its `__consumer_offsets` partition).

use crate::auth::{Action, Resource};
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use sluice_protocol::ErrorCode;

use super::{on_coordinator, RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 9;

pub async fn handle(ctx: &RequestContext, req: JoinGroupRequest) -> Response {
    let version = ctx.version;
    let group = req.group_id.to_string();
    if !ctx.allowed(Action::AlterGroup, Resource::Group(&group)) {
        let mut r = JoinGroupResponse::default();
        r.error_code = ErrorCode::GroupAuthorizationFailed.code();
        return ctx.respond(&r);
    }
    let client_id = ctx.client_id.clone();
    let host = super::client_host(ctx);
    let resp = on_coordinator(ctx, &group, move |c| async move {
        c.join_group(req, version, &client_id, &host).await
    })
    .await
    .unwrap_or_else(|| {
        let mut r = JoinGroupResponse::default();
        r.error_code = ErrorCode::CoordinatorNotAvailable.code();
        r
    });
    ctx.respond(&resp)
}
