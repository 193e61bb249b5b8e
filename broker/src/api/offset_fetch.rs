//! OffsetFetch (v1-v9): v1-v7 ask one group, v8+ a list of groups; each
//! group is answered by the coordinator on the shard that owns it.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse};
use sluice_protocol::ErrorCode;

use super::{on_coordinator, RequestContext, Response};
use crate::group::{OffsetFetchGroupResult, OffsetFetchPartitionResult};

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 9;

async fn fetch_group(
    ctx: &RequestContext,
    group: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> OffsetFetchGroupResult {
    if !ctx.allowed(Action::DescribeGroup, Resource::Group(&group)) {
        return OffsetFetchGroupResult {
            error_code: ErrorCode::GroupAuthorizationFailed,
            topics: Vec::new(),
        };
    }
    let every_topic = topics.is_none();
    let g = group.clone();
    let mut result = on_coordinator(ctx, &group, move |c| async move {
        c.offset_fetch(&g, topics, require_stable)
    })
    .await
    .unwrap_or(OffsetFetchGroupResult {
        error_code: ErrorCode::CoordinatorNotAvailable,
        topics: Vec::new(),
    });
    // Offsets of a topic the principal may not describe are not its to
    // see, as in Kafka: asked for all, the topic is left out; asked by
    // name, its partitions answer TOPIC_AUTHORIZATION_FAILED.
    if every_topic {
        result
            .topics
            .retain(|t| ctx.may_see(Action::DescribeTopic, Resource::Topic(&t.name)));
    } else {
        for t in &mut result.topics {
            if !ctx.allowed(Action::DescribeTopic, Resource::Topic(&t.name)) {
                for p in &mut t.partitions {
                    *p = OffsetFetchPartitionResult::none(
                        p.partition_index,
                        ErrorCode::TopicAuthorizationFailed,
                    );
                }
            }
        }
    }
    result
}

pub async fn handle(ctx: &RequestContext, req: OffsetFetchRequest) -> Response {
    let mut resp = OffsetFetchResponse::default();
    if ctx.version >= 8 {
        let calls = req.groups.into_iter().map(|g| {
            let topics = g.topics.map(|ts| {
                ts.into_iter()
                    .map(|t| (t.name.to_string(), t.partition_indexes))
                    .collect()
            });
            let id = g.group_id.to_string();
            async move {
                let r = fetch_group(ctx, id.clone(), topics, req.require_stable).await;
                r.into_response_group(&id)
            }
        });
        resp.groups = futures::future::join_all(calls).await;
    } else {
        let topics = req.topics.map(|ts| {
            ts.into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect()
        });
        let r = fetch_group(ctx, req.group_id.to_string(), topics, req.require_stable).await;
        resp.error_code = r.error_code.code();
        resp.topics = r.into_response_topics(ctx.version);
    }
    ctx.respond(&resp)
}
