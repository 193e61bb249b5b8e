//! OffsetCommit (v2-v9): partitions of unknown topics are answered
//! UNKNOWN_TOPIC_OR_PARTITION here (as Kafka's broker does before the
//! coordinator sees them); the rest go to the group's coordinator, which
//! fences stale generations and makes the offsets durable before answering.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use sluice_protocol::ErrorCode;

use super::{on_coordinator, RequestContext, Response};

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 9;

pub async fn handle(ctx: &RequestContext, mut req: OffsetCommitRequest) -> Response {
    let version = ctx.version;
    let group = req.group_id.to_string();
    let image = ctx.shard.broker.metadata.image();
    // Split off partitions that do not exist or may not be committed.
    let group_allowed = ctx.allowed(Action::AlterGroup, Resource::Group(&group));
    let mut unknown: Vec<OffsetCommitResponseTopic> = Vec::new();
    for t in req.topics.iter_mut() {
        let refusal = if !group_allowed {
            Some(ErrorCode::GroupAuthorizationFailed)
        } else if !ctx.allowed(Action::ReadData, Resource::Topic(t.name.as_str())) {
            Some(ErrorCode::TopicAuthorizationFailed)
        } else {
            None
        };
        let count = image
            .by_name
            .get(t.name.as_str())
            .filter(|_| refusal.is_none())
            .map(|m| m.partitions)
            .unwrap_or(0);
        let (known, bad): (Vec<_>, Vec<_>) = t
            .partitions
            .drain(..)
            .partition(|p| p.partition_index >= 0 && p.partition_index < count);
        t.partitions = known;
        if !bad.is_empty() {
            let mut rt = OffsetCommitResponseTopic::default();
            rt.name = t.name.clone();
            rt.partitions = bad
                .into_iter()
                .map(|p| {
                    let mut rp = OffsetCommitResponsePartition::default();
                    rp.partition_index = p.partition_index;
                    rp.error_code = refusal.unwrap_or(ErrorCode::UnknownTopicOrPartition).code();
                    rp
                })
                .collect();
            unknown.push(rt);
        }
    }
    req.topics.retain(|t| !t.partitions.is_empty());
    let all_partitions: Vec<(kafka_protocol::messages::TopicName, Vec<i32>)> = req
        .topics
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let mut resp = if req.topics.is_empty() {
        OffsetCommitResponse::default()
    } else {
        on_coordinator(ctx, &group, move |c| async move {
            c.offset_commit(req, version).await
        })
        .await
        .unwrap_or_else(|| {
            let mut r = OffsetCommitResponse::default();
            r.topics = all_partitions
                .into_iter()
                .map(|(name, parts)| {
                    let mut t = OffsetCommitResponseTopic::default();
                    t.name = name;
                    t.partitions = parts
                        .into_iter()
                        .map(|p| {
                            let mut rp = OffsetCommitResponsePartition::default();
                            rp.partition_index = p;
                            rp.error_code = ErrorCode::CoordinatorNotAvailable.code();
                            rp
                        })
                        .collect();
                    t
                })
                .collect();
            r
        })
    };
    for u in unknown {
        match resp.topics.iter_mut().find(|t| t.name == u.name) {
            Some(t) => t.partitions.extend(u.partitions),
            None => resp.topics.push(u),
        }
    }
    ctx.respond(&resp)
}
