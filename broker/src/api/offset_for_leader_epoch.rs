//! OffsetForLeaderEpoch (v2-v4): the end offset of a leader epoch, which
//! consumers use to detect log truncation after a leader change and
//! followers use to find where their log parted from the leader's. Answered
//! from the partition's leader epoch cache (log/epoch_cache.rs) with Kafka's
//! rules: the largest epoch <= the one asked for and the start of the next,
//! or the log end for the current epoch; -1/-1 for an unknown later epoch.
//! `current_leader_epoch` (when not -1) is checked against the partition's
//! epoch: older is FENCED_LEADER_EPOCH, newer UNKNOWN_LEADER_EPOCH.
//! `replica_id` (v3+) is accepted: consumers send -1, followers their id.

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
                Some(meta) => {
                    let (current, requested) = (p.current_leader_epoch, p.leader_epoch);
                    let answer = with_partition(ctx, meta, p.partition, move |log| {
                        check_current_epoch(current, log.state.borrow().leader_epoch)?;
                        Ok(log.end_offset_for_epoch(requested))
                    })
                    .await;
                    match answer.and_then(|r| r) {
                        Ok((epoch, end_offset)) => {
                            e.leader_epoch = epoch;
                            e.end_offset = end_offset;
                        }
                        Err(code) => e.error_code = code.code(),
                    }
                }
            }
            tr.partitions.push(e);
        }
        resp.topics.push(tr);
    }
    ctx.respond(&resp)
}

/// Kafka's check of a request's `current_leader_epoch` against the
/// partition's: -1 skips it, an older one is fenced, a newer one unknown.
fn check_current_epoch(requested: i32, current: i32) -> Result<(), ErrorCode> {
    match requested {
        -1 => Ok(()),
        r if r < current => Err(ErrorCode::FencedLeaderEpoch),
        r if r > current => Err(ErrorCode::UnknownLeaderEpoch),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn current_leader_epoch_is_checked_as_kafka_does() {
        assert_eq!(check_current_epoch(-1, 5), Ok(()));
        assert_eq!(check_current_epoch(5, 5), Ok(()));
        assert_eq!(check_current_epoch(4, 5), Err(ErrorCode::FencedLeaderEpoch));
        assert_eq!(
            check_current_epoch(6, 5),
            Err(ErrorCode::UnknownLeaderEpoch)
        );
        // What a single node (epoch 0) answered before the epoch cache.
        assert_eq!(check_current_epoch(0, 0), Ok(()));
        assert_eq!(
            check_current_epoch(1, 0),
            Err(ErrorCode::UnknownLeaderEpoch)
        );
        assert_eq!(
            check_current_epoch(-2, 0),
            Err(ErrorCode::FencedLeaderEpoch)
        );
    }
}
