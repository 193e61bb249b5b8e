//! OffsetForLeaderEpoch (v2-v4): the end offset of a leader epoch, which
//! consumers use to detect log truncation after a leader change. A single
//! node has had one epoch (0) for every partition, so epoch 0 (or any later
//! one asked for) ends at the log end offset; an earlier unknown epoch has
//! no answer (-1), as in Kafka.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use sluice_protocol::ErrorCode;

use super::{with_partition, RequestContext, Response};

pub const MIN_VERSION: i16 = 2;
pub const MAX_VERSION: i16 = 4;

pub async fn handle(ctx: &RequestContext, req: OffsetForLeaderEpochRequest) -> Response {
    let image = ctx.shard.broker.metadata.image();
    let mut resp = OffsetForLeaderEpochResponse::default();
    for t in req.topics {
        let mut tr = OffsetForLeaderTopicResult::default();
        tr.topic = t.topic.clone();
        let allowed = ctx.allowed(Action::DescribeTopic, Resource::Topic(t.topic.as_str()));
        let meta = image.by_name.get(t.topic.as_str()).cloned();
        for p in t.partitions {
            let mut e = EpochEndOffset::default();
            e.partition = p.partition;
            e.leader_epoch = -1;
            e.end_offset = -1;
            match meta.clone() {
                _ if !allowed => e.error_code = ErrorCode::TopicAuthorizationFailed.code(),
                None => e.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                Some(_) if p.current_leader_epoch > 0 => {
                    e.error_code = ErrorCode::UnknownLeaderEpoch.code()
                }
                Some(_) if p.current_leader_epoch < -1 => {
                    e.error_code = ErrorCode::FencedLeaderEpoch.code()
                }
                Some(meta) => match with_partition(ctx, meta, p.partition, |log| {
                    log.state.borrow().log_end_offset
                })
                .await
                {
                    Ok(leo) if p.leader_epoch >= 0 => {
                        e.leader_epoch = 0;
                        e.end_offset = leo;
                    }
                    Ok(_) => {}
                    Err(code) => e.error_code = code.code(),
                },
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    ctx.respond(&resp)
}
