//! DescribeGroups (v0-v5): each group is described by the shard that owns it.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use sluice_protocol::ErrorCode;

use super::{on_coordinator, RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &RequestContext, req: DescribeGroupsRequest) -> Response {
    let version = ctx.version;
    let calls = req.groups.into_iter().map(|g| async move {
        let id = g.to_string();
        if !ctx.allowed(Action::DescribeGroup, Resource::Group(&id)) {
            let mut d =
                kafka_protocol::messages::describe_groups_response::DescribedGroup::default();
            d.group_id = g;
            d.error_code = ErrorCode::GroupAuthorizationFailed.code();
            return d;
        }
        let id2 = id.clone();
        on_coordinator(ctx, &id, move |c| async move {
            c.describe_group_for_version(&id2, version)
        })
        .await
        .unwrap_or_else(|| {
            let mut d =
                kafka_protocol::messages::describe_groups_response::DescribedGroup::default();
            d.group_id = g;
            d.error_code = ErrorCode::CoordinatorNotAvailable.code();
            d
        })
    });
    let mut resp = DescribeGroupsResponse::default();
    resp.groups = futures::future::join_all(calls).await;
    ctx.respond(&resp)
}
