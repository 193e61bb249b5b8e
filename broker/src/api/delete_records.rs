//! DeleteRecords (v0-v2): moves each partition's log start offset (-1 means
//! the high watermark); whole segments below it are removed. Only the
//! partition's leader does it (followers learn the new log start from its
//! fetch answers).

use crate::auth::{Action, Resource};
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use sluice_protocol::ErrorCode;

use super::{with_replica, RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

pub async fn handle(ctx: &RequestContext, req: DeleteRecordsRequest) -> Response {
    let image = ctx.shard.broker.metadata.image();
    let mut resp = DeleteRecordsResponse::default();
    for t in req.topics {
        let mut tr = DeleteRecordsTopicResult::default();
        tr.name = t.name.clone();
        let allowed = ctx.allowed(Action::DeleteTopic, Resource::Topic(t.name.as_str()));
        let meta = image.by_name.get(t.name.as_str()).cloned();
        for p in t.partitions {
            let mut pr = DeleteRecordsPartitionResult::default();
            pr.partition_index = p.partition_index;
            pr.low_watermark = -1;
            match meta.clone() {
                _ if !allowed => pr.error_code = ErrorCode::TopicAuthorizationFailed.code(),
                None => pr.error_code = ErrorCode::UnknownTopicOrPartition.code(),
                Some(meta) => {
                    let offset = p.offset;
                    match with_replica(ctx, meta, p.partition_index, move |part| {
                        part.require_leader()?;
                        part.log.delete_records(offset).map_err(|e| e.kafka_code())
                    })
                    .await
                    {
                        Ok(Ok(low)) => pr.low_watermark = low,
                        Ok(Err(code)) | Err(code) => pr.error_code = code.code(),
                    }
                }
            }
            tr.partitions.push(pr);
        }
        resp.topics.push(tr);
    }
    ctx.respond(&resp)
}
