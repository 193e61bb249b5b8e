//! ListOffsets (v1-v8): earliest (-2), latest (-1: the high watermark for
//! consumers, the last stable offset for read_committed ones
//! (`isolation_level` 1, v2+), whose timestamp lookups also answer only
//! below it, the log end for a replica id, as Kafka), max timestamp (-3,
//! v7+) and by timestamp (the first record whose timestamp is >= the one
//! asked for, via the time index). Answered by the partition's leader
//! through the replica layer.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use sluice_protocol::ErrorCode;

use super::{with_replica, RequestContext, Response};
use crate::log::read::Isolation;
use crate::replica::Reader;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 8;

pub async fn handle(ctx: &RequestContext, req: ListOffsetsRequest) -> Response {
    let image = ctx.shard.broker.metadata.image();
    let mut resp = ListOffsetsResponse::default();
    let reader = Reader::from_replica_id(req.replica_id.0);
    let isolation = if ctx.version >= 2 {
        Isolation::from_level(req.isolation_level)
    } else {
        Isolation::ReadUncommitted
    };
    for t in req.topics {
        let mut tr = ListOffsetsTopicResponse::default();
        tr.name = t.name.clone();
        let allowed = ctx.allowed(Action::DescribeTopic, Resource::Topic(t.name.as_str()));
        let meta = image.by_name.get(t.name.as_str()).cloned();
        for p in t.partitions {
            let mut pr = ListOffsetsPartitionResponse::default();
            pr.partition_index = p.partition_index;
            pr.timestamp = -1;
            pr.offset = -1;
            pr.leader_epoch = -1;
            if !allowed {
                pr.error_code = ErrorCode::TopicAuthorizationFailed.code();
                tr.partitions.push(pr);
                continue;
            }
            let Some(meta) = meta.clone() else {
                pr.error_code = ErrorCode::UnknownTopicOrPartition.code();
                tr.partitions.push(pr);
                continue;
            };
            let ts = p.timestamp;
            let current_leader_epoch = p.current_leader_epoch;
            let r = with_replica(ctx, meta, p.partition_index, move |part| {
                part.require_leader()?;
                part.check_leader_epoch(current_leader_epoch)?;
                let log = &part.log;
                let found = match ts {
                    -2 => Ok(Some((log.log_start_offset(), -1))),
                    -1 => Ok(Some(match (reader, isolation) {
                        (Reader::Consumer, Isolation::ReadCommitted) => {
                            (log.last_stable_offset(), -1)
                        }
                        (Reader::Consumer, Isolation::ReadUncommitted) => {
                            (part.high_watermark(), -1)
                        }
                        (Reader::Follower(_), _) => (part.log_end_offset(), -1),
                    })),
                    -3 => log.max_timestamp_offset().map_err(|e| e.kafka_code()),
                    // -4 (earliest local) and -5 (earliest tiered) are the log start here.
                    -4 | -5 => Ok(Some((log.log_start_offset(), -1))),
                    ts => log
                        .offset_for_timestamp(ts)
                        .map(|found| match (reader, isolation) {
                            // Kafka: only offsets a read_committed consumer
                            // can fetch.
                            (Reader::Consumer, Isolation::ReadCommitted) => {
                                found.filter(|(offset, _)| *offset < log.last_stable_offset())
                            }
                            _ => found,
                        })
                        .map_err(|e| e.kafka_code()),
                };
                // TODO(issue 13): the epoch of the batch holding the offset,
                // from the leader-epoch cache; the current epoch until then.
                found.map(|f| f.map(|(offset, ts)| (offset, ts, part.leader_epoch())))
            })
            .await;
            match r {
                Ok(Ok(Some((offset, timestamp, leader_epoch)))) => {
                    pr.offset = offset;
                    pr.timestamp = timestamp;
                    if ctx.version >= 4 {
                        pr.leader_epoch = leader_epoch;
                    }
                }
                Ok(Ok(None)) => {}
                Ok(Err(code)) | Err(code) => pr.error_code = code.code(),
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    ctx.respond(&resp)
}
