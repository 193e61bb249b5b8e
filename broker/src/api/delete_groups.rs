//! DeleteGroups (v0-v2): each group is deleted by the shard that owns it
//! (NON_EMPTY_GROUP while it has members; tombstones make it durable).

use crate::auth::{Action, Resource};
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use sluice_protocol::ErrorCode;

use super::{on_coordinator, RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

pub async fn handle(ctx: &RequestContext, req: DeleteGroupsRequest) -> Response {
    let calls = req.groups_names.into_iter().map(|g| async move {
        let id = g.to_string();
        let id2 = id.clone();
        let code = if !ctx.allowed(Action::DeleteGroup, Resource::Group(&id)) {
            ErrorCode::GroupAuthorizationFailed
        } else {
            on_coordinator(ctx, &id, move |c| async move { c.delete_group(&id2).await })
                .await
                .unwrap_or(ErrorCode::CoordinatorNotAvailable)
        };
        let mut r = DeletableGroupResult::default();
        r.group_id = g;
        r.error_code = code.code();
        r
    });
    let mut resp = DeleteGroupsResponse::default();
    resp.results = futures::future::join_all(calls).await;
    ctx.respond(&resp)
}
