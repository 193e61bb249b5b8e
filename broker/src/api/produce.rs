//! Produce (v3-v11). Batches are validated where the request arrived (size
//! prefix, magic, CRC, `max.message.bytes`), then handed, still as zero-copy
//! slices of the request frame, to the shard owning each partition, where
//! the replica layer checks leadership and `min.insync.replicas` and the
//! appender assigns offsets and answers after fdatasync (group commit);
//! acks=all then waits for the high watermark.
//! Records are never decompressed here, except for compacted topics, whose
//! records must all have keys (INVALID_RECORD otherwise, as in Kafka).
//! acks=0 gets no response, as in Kafka.
//! Transactional batches are accepted (the partition log checks them
//! against the producer's transaction state); a request naming a
//! `transactional_id` needs Write on it (MSK IAM's AlterTransactionalId),
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED otherwise. Control batches
//! (transaction markers) come only from WriteTxnMarkers, never from a
//! client.
//!
//! Leader discovery (KIP-951): a v10+ partition answered
//! NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH names the partition's
//! current leader and epoch, and the response's `node_endpoints` that
//! leader's address on the request's listener, so a client moves to the new
//! leader without a metadata refresh. [`current_leader`] is shared with
//! Fetch (v16+), which answers the same way.

use crate::quota::QuotaKey;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::batch::{self, BatchHeader};
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::cluster::{MetadataImage, NodeId, TopicMeta, NO_LEADER};
use crate::log::append::AppendResult;

pub const MIN_VERSION: i16 = 3;
pub const MAX_VERSION: i16 = 11;

/// The first Produce version that carries leader hints (KIP-951).
const LEADER_HINT_VERSION: i16 = 10;

/// A live broker's address on one listener: (node id, host, port, rack).
pub(super) type LeaderEndpoint = (NodeId, String, u16, Option<String>);

/// Whether a partition answered `error` gets a KIP-951 leader hint: only
/// the errors that mean "this broker is not (or no longer) the leader".
pub(super) fn wants_leader_hint(error: ErrorCode) -> bool {
    matches!(
        error,
        ErrorCode::NotLeaderOrFollower | ErrorCode::FencedLeaderEpoch
    )
}

/// KIP-951's `current_leader` of `topic`'s `partition` as `image` has it:
/// (leader id, leader epoch) and, when that leader is a live broker with an
/// endpoint on this connection's listener, its address. Kafka's rule: an
/// unknown topic or partition answers (-1, -1), a leader that is not live
/// (or [`NO_LEADER`]) its id and epoch with no endpoint.
pub(super) fn current_leader(
    ctx: &RequestContext,
    image: &MetadataImage,
    topic: Option<&TopicMeta>,
    partition: i32,
) -> (NodeId, i32, Option<LeaderEndpoint>) {
    let Some(p) = topic.and_then(|t| t.partition(partition)) else {
        return (NO_LEADER, -1, None);
    };
    let endpoint = if p.leader == NO_LEADER {
        None
    } else {
        ctx.live_brokers(image)
            .into_iter()
            .find(|b| b.0 == p.leader)
    };
    (p.leader, p.leader_epoch, endpoint)
}

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
    has_transactional_id: bool,
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
        // Kafka: transactional records need the request's transactional id
        // (and so the authorization on it); without one, a transaction
        // would open that no coordinator ends.
        if h.is_transactional() && !has_transactional_id {
            return Err((
                ErrorCode::TransactionalIdAuthorizationFailed,
                "a transactional batch needs the request's transactional_id".into(),
            ));
        }
        if h.has_producer_id() && h.base_sequence < 0 {
            return Err((
                ErrorCode::InvalidRecord,
                "a batch with a producer id needs a base sequence".into(),
            ));
        }
        if meta.log_config.cleanup_compact {
            check_keyed(bytes)?;
        }
    }
    Ok(batches)
}

/// A compacted topic keeps the latest record per key, so (as Kafka) it
/// refuses records without one. This is the one place produce decodes
/// records, and only for compacted topics.
fn check_keyed(batch_bytes: &Bytes) -> Result<(), (ErrorCode, String)> {
    let records =
        batch::decode_records(batch_bytes).map_err(|e| (e.kafka_error_code(), e.to_string()))?;
    if records.iter().any(|r| r.key.is_none()) {
        return Err((
            ErrorCode::InvalidRecord,
            "Compacted topic cannot accept message without key".into(),
        ));
    }
    Ok(())
}

/// From this version clients throttle themselves on `throttle_time_ms`
/// (KIP-219); older ones get the answer late instead.
const CLIENT_THROTTLES_VERSION: i16 = 6;

pub async fn handle(ctx: &RequestContext, req: ProduceRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let image = broker.metadata.image();
    let wait = req.acks != 0;
    let acks = req.acks;
    let deadline = Instant::now() + Duration::from_millis(req.timeout_ms.max(0) as u64);
    // What the producer quota counts: the record bytes of the request.
    let produced: usize = req
        .topic_data
        .iter()
        .flat_map(|t| t.partition_data.iter())
        .map(|p| p.records.as_ref().map_or(0, |r| r.len()))
        .sum();
    let mut response = ProduceResponse::default();
    let mut by_shard: BTreeMap<usize, Vec<Item>> = BTreeMap::new();
    let transactional_id_allowed = req.transactional_id.as_ref().is_none_or(|id| {
        ctx.allowed(
            Action::AlterTransactionalId,
            Resource::TransactionalId(id.as_str()),
        )
    });
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
            // Kafka checks the transactional id before the topics.
            let outcome = if !transactional_id_allowed {
                Err((
                    ErrorCode::TransactionalIdAuthorizationFailed,
                    "not authorized to kafka-cluster:AlterTransactionalId on this transactional id"
                        .into(),
                ))
            } else if !write_allowed {
                Err((
                    ErrorCode::TopicAuthorizationFailed,
                    "not authorized to kafka-cluster:WriteData on this topic".into(),
                ))
            } else if !(-1..=1).contains(&req.acks) {
                Err((
                    ErrorCode::InvalidRequiredAcks,
                    format!("acks={} is not one of -1, 0, 1", req.acks),
                ))
            } else {
                match &meta {
                    Some(m) if pd.index >= 0 && pd.index < m.partitions => {
                        validate(m, pd.records.as_ref(), req.transactional_id.is_some())
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
    // producer_byte_rate and the cluster's ingress cap: a throttled
    // producer is answered now and its connection muted (acks=0 too,
    // which gets no answer to carry the time).
    let throttle = ctx.record_quota(QuotaKey::ProducerByteRate, produced as f64);
    if !wait {
        return Response::None;
    }
    response.throttle_time_ms = i32::try_from(throttle).unwrap_or(i32::MAX);
    ctx.delay_if_old(throttle, CLIENT_THROTTLES_VERSION).await;
    for (positions, results) in all {
        match results {
            Some(results) => {
                for ((ti, pi), r) in positions.into_iter().zip(results) {
                    let pr = &mut response.responses[ti].partition_responses[pi];
                    pr.error_code = r.error.code();
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
    if ctx.version >= LEADER_HINT_VERSION {
        add_leader_hints(ctx, &mut response);
    }
    ctx.respond(&response)
}

/// Fills KIP-951's `current_leader` of every partition refused for not
/// leading, and `node_endpoints` with those leaders' addresses. The image
/// is read afresh: leadership may have moved while the appends ran, and
/// the newest leader is the useful hint.
fn add_leader_hints(ctx: &RequestContext, response: &mut ProduceResponse) {
    let mut endpoints: BTreeMap<NodeId, LeaderEndpoint> = BTreeMap::new();
    let mut image = None;
    for tr in &mut response.responses {
        for pr in &mut tr.partition_responses {
            if !wants_leader_hint(ErrorCode::from_code(pr.error_code)) {
                continue;
            }
            let image = image.get_or_insert_with(|| ctx.shard.broker.metadata.image());
            let topic = image.by_name.get(tr.name.as_str()).map(Arc::as_ref);
            let (leader, epoch, endpoint) = current_leader(ctx, image, topic, pr.index);
            let mut hint = LeaderIdAndEpoch::default();
            hint.leader_id = BrokerId(leader);
            hint.leader_epoch = epoch;
            pr.current_leader = hint;
            if let Some(e) = endpoint {
                endpoints.insert(e.0, e);
            }
        }
    }
    response.node_endpoints = endpoints
        .into_values()
        .map(|(id, host, port, rack)| {
            let mut n = NodeEndpoint::default();
            n.node_id = BrokerId(id);
            n.host = StrBytes::from_string(host);
            n.port = i32::from(port);
            n.rack = rack.map(StrBytes::from_string);
            n
        })
        .collect();
}
