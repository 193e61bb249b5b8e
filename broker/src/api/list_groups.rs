//! ListGroups (v0-v5): every shard lists its own groups; the lists are merged.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::{ListGroupsRequest, ListGroupsResponse};

use super::{RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 5;

pub async fn handle(ctx: &RequestContext, req: ListGroupsRequest) -> Response {
    let version = ctx.version;
    let states: Vec<String> = req.states_filter.iter().map(|s| s.to_string()).collect();
    let types: Vec<String> = req.types_filter.iter().map(|s| s.to_string()).collect();
    let lists = ctx
        .shard
        .broker
        .on_all_shards(move |shard| {
            let (states, types) = (states.clone(), types.clone());
            async move {
                shard
                    .coordinator()
                    .map(|c| c.list_groups_for_version(&states, &types, version))
                    .unwrap_or_default()
            }
        })
        .await;
    let mut resp = ListGroupsResponse::default();
    // Describe on the cluster lists every group (KIP-231); otherwise groups
    // the principal may not describe are left out, as Kafka does.
    let every_group = ctx.may_see(Action::DescribeCluster, Resource::Cluster);
    resp.groups = lists
        .into_iter()
        .flatten()
        .filter(|g| {
            every_group || ctx.may_see(Action::DescribeGroup, Resource::Group(g.group_id.as_str()))
        })
        .collect();
    resp.groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    ctx.respond(&resp)
}
