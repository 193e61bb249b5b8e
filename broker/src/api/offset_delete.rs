//! OffsetDelete (v0-v0): routed to the coordinator on the shard that owns the
//! group (the owner of its `__consumer_offsets` partition).

use crate::auth::{Action, Resource};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use sluice_protocol::ErrorCode;

use super::{on_coordinator, RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, mut req: OffsetDeleteRequest) -> Response {
    let version = ctx.version;
    let group = req.group_id.to_string();
    if !ctx.allowed(Action::DeleteGroup, Resource::Group(&group)) {
        let mut r = OffsetDeleteResponse::default();
        r.error_code = ErrorCode::GroupAuthorizationFailed.code();
        return ctx.respond(&r);
    }
    // Kafka's READ on each topic (MSK's ReadData): the offsets of a topic
    // the principal may not read stay, and its partitions say why.
    let mut refused = Vec::new();
    req.topics.retain(|t| {
        let ok = ctx.allowed(Action::ReadData, Resource::Topic(t.name.as_str()));
        if !ok {
            let mut out = OffsetDeleteResponseTopic::default();
            out.name = t.name.clone();
            out.partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let mut r = OffsetDeleteResponsePartition::default();
                    r.partition_index = p.partition_index;
                    r.error_code = ErrorCode::TopicAuthorizationFailed.code();
                    r
                })
                .collect();
            refused.push(out);
        }
        ok
    });

    let mut resp = on_coordinator(ctx, &group, move |c| async move {
        c.offset_delete(req, version).await
    })
    .await
    .unwrap_or_else(|| {
        let mut r = OffsetDeleteResponse::default();
        r.error_code = ErrorCode::CoordinatorNotAvailable.code();
        r
    });
    if resp.error_code == 0 {
        resp.topics.extend(refused);
    }
    ctx.respond(&resp)
}
