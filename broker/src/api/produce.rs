//! Produce (v3-v11). Batches are validated where the request arrived (size
//! prefix, magic, CRC, `max.message.bytes`), then handed, still as zero-copy
//! slices of the request frame, to the shard owning each partition, where
//! the replica layer checks leadership and `min.insync.replicas` and the
//! appender assigns offsets and answers after fdatasync (group commit);
//! acks=all then waits for the high watermark.
//! Records are never decompressed here. acks=0 gets no response, as in Kafka;
//! transactional produce is refused until transactions exist.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::batch::{self, BatchHeader};
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::cluster::TopicMeta;
use crate::log::append::AppendResult;

pub const MIN_VERSION: i16 = 3;
pub const MAX_VERSION: i16 = 11;

struct Item {
    topic_idx: usize,
    part_idx: usize,
    meta: Arc<TopicMeta>,
    partition: i32,
    batches: Vec<(BatchHeader, Bytes)>,
}

fn validate(
    meta: &TopicMeta,
    records: Option<&Bytes>,
) -> Result<Vec<(BatchHeader, Bytes)>, (ErrorCode, String)> {
    let Some(records) = records else {
        return Err((
            ErrorCode::CorruptMessage,
            "produce request carries no records".into(),
        ));
    };
    let batches =
        batch::split_batches(records).map_err(|e| (e.kafka_error_code(), e.to_string()))?;
    if batches.is_empty() {
        return Err((
            ErrorCode::CorruptMessage,
            "produce request carries no record batch".into(),
        ));
    }
    for (h, bytes) in &batches {
        if bytes.len() > meta.log_config.max_message_bytes {
            return Err((
                ErrorCode::MessageTooLarge,
                format!(
                    "batch of {} bytes is larger than max.message.bytes {}",
                    bytes.len(),
                    meta.log_config.max_message_bytes
                ),
            ));
        }
        if h.is_control() {
            return Err((
                ErrorCode::InvalidRecord,
                "clients may not produce control batches".into(),
            ));
        }
        if h.is_transactional() {
            return Err((
                ErrorCode::TransactionalIdAuthorizationFailed,
                "transactions are not supported by this broker yet".into(),
            ));
        }
    }
    Ok(batches)
}

pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let image = broker.metadata.image();
    let wait = req.acks != 0;
    let acks = req.acks;
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    let mut response = ProduceResponse::default();
    let mut by_shard: BTreeMap<usize, Vec<Item>> = BTreeMap::new();
    for (ti, topic) in req.topic_data.into_iter().enumerate() {
        let mut tr = TopicProduceResponse::default();
        tr.name = topic.name.clone();
        let meta = image.by_name.get(topic.name.as_str()).cloned();
        let write_allowed = ctx.allowed(Action::WriteData, Resource::Topic(topic.name.as_str()));
        for (pi, pd) in topic.partition_data.into_iter().enumerate() {
            let mut pr = PartitionProduceResponse::default();
            pr.index = pd.index;
            pr.base_offset = -1;
            pr.log_append_time_ms = -1;
            pr.log_start_offset = -1;
            let outcome = if !write_allowed {
                Err((
                    ErrorCode::TopicAuthorizationFailed,
                    "not authorized to kafka-cluster:WriteData on this topic".into(),
                ))
            } else if req.transactional_id.is_some() {
                Err((
                    ErrorCode::TransactionalIdAuthorizationFailed,
                    "transactions are not supported by this broker yet".into(),
                ))
            } else if !(-1..=1).contains(&req.acks) {
                Err((
                    ErrorCode::InvalidRequiredAcks,
                    format!("acks={} is not one of -1, 0, 1", req.acks),
                ))
            } else {
                match &meta {
                    Some(m) if pd.index >= 0 && pd.index < m.partitions => {
                        validate(m, pd.records.as_ref())
                    }
                    _ => Err((
                        ErrorCode::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.".into(),
                    )),
                }
            };
            match (outcome, &meta) {
                (Ok(batches), Some(m)) => {
                    let owner = broker.owner_of_partition(&m.id, pd.index);
                    by_shard.entry(owner).or_default().push(Item {
                        topic_idx: ti,
                        part_idx: pi,
                        meta: m.clone(),
                        partition: pd.index,
                        batches,
                    });
                }
                (Err((code, msg)), _) => {
                    pr.error_code = code.code();
                    if ctx.version >= 8 {
                        pr.error_message = Some(StrBytes::from_string(msg));
                    }
                }
                (Ok(_), None) => pr.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            }
            tr.partition_responses.push(pr);
        }
        response.responses.push(tr);
    }

    let dispatch = by_shard.into_iter().map(|(owner, items)| {
        let broker = broker.clone();
        async move {
            let positions: Vec<(usize, usize)> =
                items.iter().map(|i| (i.topic_idx, i.part_idx)).collect();
            let results = broker
                .on_shard(owner, move |shard| async move {
                    let appends = items.into_iter().map(|item| {
                        let shard = shard.clone();
                        async move {
                            match shard.replica(&item.meta, item.partition).await {
                                Ok(p) => p.append(item.batches, acks, deadline).await,
                                Err(code) => AppendResult::error(code),
                            }
                        }
                    });
                    futures::future::join_all(appends).await
                })
                .await;
            (positions, results)
        }
    });
    // Awaited here even for acks=0: the appends are queued to their
    // partitions during this task's first poll, in request order, and the
    // connection answers requests in order anyway. acks=0 just gets no answer.
    let all = futures::future::join_all(dispatch).await;
    if !wait {
        return Response::None;
    }
    for (positions, results) in all {
        match results {
            Some(results) => {
                for ((ti, pi), r) in positions.into_iter().zip(results) {
                    let pr = &mut response.responses[ti].partition_responses[pi];
                    pr.error_code = r.error.code();
                    // TODO(issue 13, KIP-951): on NOT_LEADER_OR_FOLLOWER, v10+
                    // answers carry `current_leader` and the response's
                    // `node_endpoints`; the cluster wiring fills them from
                    // the metadata image.
                    pr.base_offset = r.base_offset;
                    pr.log_append_time_ms = r.log_append_time;
                    if ctx.version >= 5 {
                        pr.log_start_offset = r.log_start_offset;
                    }
                }
            }
            None => {
                for (ti, pi) in positions {
                    response.responses[ti].partition_responses[pi].error_code =
                        ErrorCode::LeaderNotAvailable.code();
                }
            }
        }
    }
    ctx.respond(&response)
}
