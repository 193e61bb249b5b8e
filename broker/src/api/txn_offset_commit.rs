//! TxnOffsetCommit (v0-v4): a transactional producer commits a group's
//! offsets inside its transaction (`sendOffsetsToTransaction`). Write on the
//! transactional id, Read on the group and on each topic are required;
//! partitions of unknown topics answer UNKNOWN_TOPIC_OR_PARTITION; the rest
//! go to the group's coordinator, which writes them as part of the
//! transaction (group/txn_offsets.rs).

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use sluice_protocol::ErrorCode;

use super::init_producer_id::fenced_for;
use super::{on_coordinator, RequestContext, Response};
use crate::auth::{Action, Resource};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 4;

fn refuse(
    topic: &kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic,
    code: ErrorCode,
) -> TxnOffsetCommitResponseTopic {
    let mut rt = TxnOffsetCommitResponseTopic::default();
    rt.name = topic.name.clone();
    rt.partitions = topic
        .partitions
        .iter()
        .map(|p| {
            let mut rp = TxnOffsetCommitResponsePartition::default();
            rp.partition_index = p.partition_index;
            rp.error_code = code.code();
            rp
        })
        .collect();
    rt
}

pub async fn handle(ctx: &RequestContext, mut req: TxnOffsetCommitRequest) -> Response {
    let version = ctx.version;
    let group = req.group_id.to_string();
    let whole = if !ctx.allowed(
        Action::AlterTransactionalId,
        Resource::TransactionalId(req.transactional_id.as_str()),
    ) {
        Some(ErrorCode::TransactionalIdAuthorizationFailed)
    } else if !ctx.allowed(Action::AlterGroup, Resource::Group(&group)) {
        // Kafka's READ on the group, which MSK calls AlterGroup.
        Some(ErrorCode::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(code) = whole {
        let mut resp = TxnOffsetCommitResponse::default();
        resp.topics = req.topics.iter().map(|t| refuse(t, code)).collect();
        return ctx.respond(&resp);
    }
    let image = ctx.shard.broker.metadata.image();
    let mut refused = Vec::new();
    req.topics.retain(|t| {
        let code = if !ctx.allowed(Action::ReadData, Resource::Topic(t.name.as_str())) {
            ErrorCode::TopicAuthorizationFailed
        } else {
            let count = image
                .by_name
                .get(t.name.as_str())
                .map_or(0, |m| m.partitions);
            if t.partitions
                .iter()
                .all(|p| p.partition_index >= 0 && p.partition_index < count)
            {
                return true;
            }
            ErrorCode::UnknownTopicOrPartition
        };
        refused.push(refuse(t, code));
        false
    });
    let mut resp = if req.topics.is_empty() {
        TxnOffsetCommitResponse::default()
    } else {
        let topics = req.topics.clone();
        on_coordinator(ctx, &group, move |c| async move {
            c.txn_offset_commit(req, version).await
        })
        .await
        .unwrap_or_else(|| {
            let mut r = TxnOffsetCommitResponse::default();
            r.topics = topics
                .iter()
                .map(|t| refuse(t, ErrorCode::NotCoordinator))
                .collect();
            r
        })
    };
    for t in &mut resp.topics {
        for p in &mut t.partitions {
            p.error_code = fenced_for(ErrorCode::from_code(p.error_code), version, 3).code();
        }
    }
    resp.topics.extend(refused);
    ctx.respond(&resp)
}
