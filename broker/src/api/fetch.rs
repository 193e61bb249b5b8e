//! Fetch (v4-v17). Each partition is read by its owner shard through the
//! replica layer (consumers up to the high watermark, read_committed ones
//! up to the last stable offset with the aborted transactions they cover;
//! a follower broker, named by its replica id, up to the log end, its
//! position recorded), which
//! returns a (segment file, position, length) range rather than bytes; the response
//! is encoded here by hand around those ranges so the connection can splice
//! them from the page cache to the socket. Long polling waits on the owners
//! until `min_bytes` are there or `max_wait_ms` passes. Fetch sessions
//! (KIP-227, v7+) go through the shard's
//! [`crate::fetch_session::FetchSessionCache`]: `open`
//! before reading turns an incremental fetch into the session's whole
//! partition list (or refuses it with a top-level error), `finish` before
//! encoding gives the session id and drops the partitions an incremental
//! answer need not carry. A v16+ partition answered NOT_LEADER_OR_FOLLOWER or
//! FENCED_LEADER_EPOCH carries the partition's current leader and epoch,
//! and the response that leader's endpoint (KIP-951, as Produce v10+).
//! v17's `replica_directory_id` (KIP-853, for KRaft voters) is not used:
//! a partition's follower is known by its replica id alone.

use crate::quota::QuotaKey;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures::FutureExt;
use kafka_protocol::messages::fetch_response::NodeEndpoint;
use kafka_protocol::messages::{BrokerId, FetchRequest};
use kafka_protocol::protocol::{Encodable, StrBytes};
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use super::produce::{current_leader, wants_leader_hint};
use super::{RequestContext, Response, ResponsePart};
use crate::auth::{Action, Resource};
use crate::cluster::TopicMeta;
use crate::fetch_session::{Finished, Opened, Outcome};
use crate::log::read::{FileRange, Isolation};
use crate::log::txn_index::AbortedTxn;
use crate::replica::Reader;

pub const MIN_VERSION: i16 = 4;
pub const MAX_VERSION: i16 = 17;

/// The first Fetch version whose answers carry leader hints (KIP-951;
/// `current_leader` exists since v12 but Kafka fills it from v16, when
/// `node_endpoints` came).
const LEADER_HINT_VERSION: i16 = 16;

/// One partition's answer.
#[derive(Clone)]
struct PartitionOut {
    partition: i32,
    error: ErrorCode,
    high_watermark: i64,
    /// The last stable offset (-1 with an error, as the high watermark).
    last_stable_offset: i64,
    log_start_offset: i64,
    records: Option<FileRange>,
    /// read_committed: the aborted transactions the records overlap
    /// (`None`, encoded as null, for read_uncommitted).
    aborted: Option<Vec<AbortedTxn>>,
    /// Fetch v12+ `diverging_epoch` for a follower whose log went another
    /// way: (epoch, end offset) to truncate to (KIP-320/595).
    diverging: Option<(i32, i64)>,
    /// KIP-951 `current_leader` (leader id, leader epoch), filled for v16+
    /// answers of NOT_LEADER_OR_FOLLOWER or FENCED_LEADER_EPOCH.
    current_leader: Option<(i32, i32)>,
}

struct TopicOut {
    name: String,
    id: Uuid,
    partitions: Vec<PartitionOut>,
}

/// What to read for one partition.
#[derive(Clone)]
struct ReadPlan {
    topic_idx: usize,
    part_idx: usize,
    meta: Arc<TopicMeta>,
    partition: i32,
    offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
    /// A follower's last fetched epoch (v12+), -1 when absent.
    last_fetched_epoch: i32,
    reader: Reader,
    isolation: Isolation,
}

impl PartitionOut {
    /// An answer with no data yet.
    fn empty(partition: i32, error: ErrorCode) -> PartitionOut {
        PartitionOut {
            partition,
            error,
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: None,
            aborted: None,
            diverging: None,
            current_leader: None,
        }
    }
}

/// Whether a broker sent this fetch (a replica id, not a consumer's -1).
pub(crate) fn from_follower(version: i16, req: &FetchRequest) -> bool {
    replica_id(version, req) >= 0
}

/// The replica id of a fetch: `replica_id` before v15, `replica_state` since.
fn replica_id(version: i16, req: &FetchRequest) -> i32 {
    if version >= 15 {
        req.replica_state.replica_id.0
    } else {
        req.replica_id.0
    }
}

async fn read_all(ctx: &RequestContext, plans: &[ReadPlan]) -> Vec<(usize, usize, PartitionOut)> {
    let broker = &ctx.shard.broker;
    let mut by_owner: BTreeMap<usize, Vec<ReadPlan>> = BTreeMap::new();
    for p in plans {
        by_owner
            .entry(broker.owner_of_partition(&p.meta.id, p.partition))
            .or_default()
            .push(p.clone());
    }
    let calls = by_owner.into_iter().map(|(owner, plans)| {
        let positions: Vec<_> = plans
            .iter()
            .map(|p| (p.topic_idx, p.part_idx, p.partition))
            .collect();
        broker
            .on_shard(owner, move |shard| async move {
                let mut out = Vec::with_capacity(plans.len());
                for p in plans {
                    let r = match shard.replica(&p.meta, p.partition).await {
                        Err(code) => PartitionOut::empty(p.partition, code),
                        Ok(part)
                            if matches!(p.reader, Reader::Follower(_))
                                && p.last_fetched_epoch >= 0
                                && part.is_leader()
                                && part.check_leader_epoch(p.current_leader_epoch).is_ok()
                                && part
                                    .log
                                    .diverging_epoch(p.last_fetched_epoch, p.offset)
                                    .is_some() =>
                        {
                            PartitionOut {
                                high_watermark: part.high_watermark(),
                                last_stable_offset: part.log.last_stable_offset(),
                                log_start_offset: part.log_start_offset(),
                                diverging: part.log.diverging_epoch(p.last_fetched_epoch, p.offset),
                                ..PartitionOut::empty(p.partition, ErrorCode::None)
                            }
                        }
                        Ok(part) => {
                            match part.read(
                                p.reader,
                                p.offset,
                                p.max_bytes,
                                p.current_leader_epoch,
                                p.isolation,
                            ) {
                                Ok(r) => PartitionOut {
                                    high_watermark: r.high_watermark,
                                    last_stable_offset: r.last_stable_offset,
                                    log_start_offset: r.log_start_offset,
                                    records: r.records,
                                    aborted: r.aborted_transactions,
                                    ..PartitionOut::empty(p.partition, ErrorCode::None)
                                },
                                // Not the leader (or not a replica): no offsets.
                                Err(
                                    code @ (ErrorCode::NotLeaderOrFollower
                                    | ErrorCode::FencedLeaderEpoch
                                    | ErrorCode::UnknownLeaderEpoch),
                                ) => PartitionOut::empty(p.partition, code),
                                Err(code) => PartitionOut {
                                    high_watermark: part.high_watermark(),
                                    last_stable_offset: part.log.last_stable_offset(),
                                    log_start_offset: part.log_start_offset(),
                                    ..PartitionOut::empty(p.partition, code)
                                },
                            }
                        }
                    };
                    out.push(r);
                }
                out
            })
            .map(move |r| (positions, r))
    });
    let mut merged = Vec::with_capacity(plans.len());
    for (positions, result) in futures::future::join_all(calls).await {
        match result {
            Some(outs) => {
                for ((ti, pi, _), o) in positions.into_iter().zip(outs) {
                    merged.push((ti, pi, o));
                }
            }
            None => {
                for (ti, pi, partition) in positions {
                    merged.push((
                        ti,
                        pi,
                        PartitionOut::empty(partition, ErrorCode::LeaderNotAvailable),
                    ));
                }
            }
        }
    }
    merged
}

async fn wait_any(ctx: &RequestContext, plans: &[ReadPlan], deadline: Instant) {
    let broker = &ctx.shard.broker;
    let waits = plans.iter().map(|p| {
        let owner = broker.owner_of_partition(&p.meta.id, p.partition);
        let (meta, partition, offset, reader) = (p.meta.clone(), p.partition, p.offset, p.reader);
        let isolation = p.isolation;
        broker
            .on_shard(owner, move |shard| async move {
                if let Some(part) = shard.replicas.get(&meta.id, partition) {
                    part.wait(reader, offset, deadline, isolation).await;
                } else {
                    compio::time::sleep_until(deadline).await;
                }
            })
            .boxed_local()
    });
    let waits: Vec<_> = waits.collect();
    if waits.is_empty() {
        compio::time::sleep_until(deadline).await;
        return;
    }
    // Shutdown ends the wait too, so a parked fetch does not hold up a clean exit.
    let shutdown = ctx.shard.shutdown.clone();
    let _ = futures::future::select(futures::future::select_all(waits), shutdown).await;
}

pub async fn handle(ctx: &RequestContext, mut req: FetchRequest) -> Response {
    let session = match open_session(ctx, &mut req).await {
        Opened::Refused(code) => return encode(ctx, &[], &[], code, 0, 0),
        opened => opened,
    };
    let image = ctx.shard.broker.metadata.image();
    let started = Instant::now();
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let deadline = started + max_wait;
    let mut response_max = if req.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        req.max_bytes as usize
    };
    let reader = Reader::from_replica_id(replica_id(ctx.version, &req));
    if reader == Reader::Consumer {
        // A consumer under a byte-rate quota gets at most what one quota
        // window allows (Kafka's getMaxValueInQuotaWindow): capped, not
        // refused.
        if let Some(cap) = ctx.quota_max_in_window(QuotaKey::ConsumerByteRate) {
            response_max = response_max.min((cap as usize).max(1));
        }
    }
    // Followers read everything up to the log end whatever they ask.
    let isolation = match reader {
        Reader::Consumer => Isolation::from_level(req.isolation_level),
        Reader::Follower(_) => Isolation::ReadUncommitted,
    };
    // A follower's fetch needs ClusterAction instead of ReadData on topics;
    // without it every partition answers TOPIC_AUTHORIZATION_FAILED (Kafka).
    // Reading past the high watermark and moving a follower's fetch position
    // (so the high watermark and the ISR) is for brokers only: not
    // AlterCluster, which AWS's example client policy grants.
    let cluster_action_allowed = matches!(reader, Reader::Follower(_))
        && ctx.allowed(Action::ClusterAction, Resource::Cluster);
    let mut topics: Vec<TopicOut> = Vec::with_capacity(req.topics.len());
    let mut plans: Vec<ReadPlan> = Vec::new();
    for (ti, t) in req.topics.iter().enumerate() {
        let meta = if ctx.version >= 13 {
            image.by_id.get(&t.topic_id).cloned()
        } else {
            image.by_name.get(t.topic.as_str()).cloned()
        };
        let read_allowed = match (&meta, reader) {
            (_, Reader::Follower(_)) => cluster_action_allowed,
            (Some(m), Reader::Consumer) => ctx.allowed(Action::ReadData, Resource::Topic(&m.name)),
            (None, Reader::Consumer) => {
                ctx.version >= 13
                    || ctx.allowed(Action::ReadData, Resource::Topic(t.topic.as_str()))
            }
        };
        let mut out = TopicOut {
            name: meta
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_else(|| t.topic.to_string()),
            id: t.topic_id,
            partitions: Vec::with_capacity(t.partitions.len()),
        };
        for (pi, p) in t.partitions.iter().enumerate() {
            let mut po = PartitionOut::empty(p.partition, ErrorCode::None);
            match &meta {
                _ if !read_allowed => po.error = ErrorCode::TopicAuthorizationFailed,
                None => {
                    po.error = if ctx.version >= 13 {
                        ErrorCode::UnknownTopicId
                    } else {
                        ErrorCode::UnknownTopicOrPartition
                    }
                }
                Some(m) if p.partition < 0 || p.partition >= m.partitions => {
                    po.error = ErrorCode::UnknownTopicOrPartition
                }
                // The leader epoch is checked by the replica layer.
                Some(m) => plans.push(ReadPlan {
                    topic_idx: ti,
                    part_idx: pi,
                    meta: m.clone(),
                    partition: p.partition,
                    offset: p.fetch_offset,
                    max_bytes: (p.partition_max_bytes.max(0) as usize).min(response_max),
                    current_leader_epoch: p.current_leader_epoch,
                    last_fetched_epoch: if ctx.version >= 12 {
                        p.last_fetched_epoch
                    } else {
                        -1
                    },
                    reader,
                    isolation,
                }),
            }
            out.partitions.push(po);
        }
        topics.push(out);
    }

    loop {
        let (total, any_error) =
            apply_results(&mut topics, read_all(ctx, &plans).await, response_max);
        let enough = total >= req.min_bytes.max(0) as usize || total > 0 && req.min_bytes <= 1;
        if enough
            || any_error
            || plans.is_empty()
            || Instant::now() >= deadline
            || ctx.shard.is_shutting_down()
        {
            return respond(ctx, &req, &session, topics, reader).await;
        }
        wait_any(ctx, &plans, deadline).await;
        if Instant::now() >= deadline {
            // One last read after the wait so data that arrived is included.
            apply_results(&mut topics, read_all(ctx, &plans).await, response_max);
            return respond(ctx, &req, &session, topics, reader).await;
        }
    }
}

/// Resolves the fetch's session (KIP-227) before anything is read: an
/// incremental fetch has `req.topics` replaced by its session's partitions.
/// A full fetch naming another shard's session has it removed there.
async fn open_session(ctx: &RequestContext, req: &mut FetchRequest) -> Opened {
    let foreign = ctx
        .shard
        .fetch_sessions
        .borrow()
        .foreign_session_to_close(ctx.version, req);
    if let Some((owner, id)) = foreign {
        ctx.shard
            .broker
            .on_shard(owner, move |shard| async move {
                shard.fetch_sessions.borrow_mut().remove(id);
            })
            .await;
    }
    let follower = matches!(
        Reader::from_replica_id(replica_id(ctx.version, req)),
        Reader::Follower(_)
    );
    let now = sluice_protocol::clock::now_ms();
    ctx.shard
        .fetch_sessions
        .borrow_mut()
        .open(ctx.version, req, follower, now)
}

/// What the session compares for one partition's answer.
fn outcome(p: &PartitionOut) -> Outcome {
    Outcome {
        high_watermark: p.high_watermark,
        last_stable_offset: p.last_stable_offset,
        log_start_offset: p.log_start_offset,
        error: p.error,
        has_records: p.records.as_ref().is_some_and(|r| r.len > 0),
        must_send: p.diverging.is_some(),
    }
}

/// Lets the session pick what goes out (an incremental answer carries only
/// partitions with news), adds the leader hints (v16+) and encodes.
async fn respond(
    ctx: &RequestContext,
    req: &FetchRequest,
    session: &Opened,
    mut topics: Vec<TopicOut>,
    reader: Reader,
) -> Response {
    let outcomes: Vec<Outcome> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(outcome))
        .collect();
    let Finished {
        error,
        session_id,
        keep,
    } = ctx.shard.fetch_sessions.borrow_mut().finish(
        session,
        ctx.version,
        req,
        &outcomes,
        sluice_protocol::clock::now_ms(),
    );
    if let Some(keep) = keep {
        let mut keep = keep.into_iter();
        for t in &mut topics {
            t.partitions.retain(|_| keep.next().unwrap_or(true));
        }
        topics.retain(|t| !t.partitions.is_empty());
    }
    let endpoints = if ctx.version >= LEADER_HINT_VERSION {
        add_leader_hints(ctx, &mut topics)
    } else {
        Vec::new()
    };
    let throttle = match reader {
        Reader::Consumer => consumer_quota(ctx, &mut topics),
        Reader::Follower(_) => 0,
    };
    ctx.delay_if_old(throttle, CLIENT_THROTTLES_VERSION).await;
    encode(ctx, &topics, &endpoints, error, session_id, throttle)
}

/// From this version clients throttle themselves on `throttle_time_ms`
/// (KIP-219); older ones get the answer late instead.
const CLIENT_THROTTLES_VERSION: i16 = 8;

/// consumer_byte_rate and the cluster's egress cap: counts the bytes
/// going out; over the quota, the answer carries no records (the bytes
/// are taken back off the quota, as Kafka does) and the throttle time,
/// and the connection is muted for it.
fn consumer_quota(ctx: &RequestContext, topics: &mut [TopicOut]) -> u64 {
    let bytes: u64 = topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .filter_map(|p| p.records.as_ref().map(|r| r.len))
        .sum();
    let throttle = ctx.record_quota(QuotaKey::ConsumerByteRate, bytes as f64);
    if throttle > 0 && bytes > 0 {
        ctx.unrecord_quota(QuotaKey::ConsumerByteRate, bytes as f64);
        for p in topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
            p.records = None;
            p.aborted = None;
        }
    }
    throttle
}

/// Fills `current_leader` of every partition refused for not leading (or a
/// stale leader epoch) from a fresh metadata image, and returns the
/// endpoints of the leaders named, for the response's `node_endpoints`.
fn add_leader_hints(ctx: &RequestContext, topics: &mut [TopicOut]) -> Vec<NodeEndpoint> {
    let mut endpoints: BTreeMap<i32, NodeEndpoint> = BTreeMap::new();
    let mut image = None;
    for t in topics.iter_mut() {
        for p in &mut t.partitions {
            if !wants_leader_hint(p.error) {
                continue;
            }
            let image = image.get_or_insert_with(|| ctx.shard.broker.metadata.image());
            // v16 names topics by id.
            let topic = image.by_id.get(&t.id).map(Arc::as_ref);
            let (leader, epoch, endpoint) = current_leader(ctx, image, topic, p.partition);
            p.current_leader = Some((leader, epoch));
            if let Some((id, host, port, rack)) = endpoint {
                let mut n = NodeEndpoint::default();
                n.node_id = BrokerId(id);
                n.host = StrBytes::from_string(host);
                n.port = i32::from(port);
                n.rack = rack.map(StrBytes::from_string);
                endpoints.insert(id, n);
            }
        }
    }
    endpoints.into_values().collect()
}

/// Places read results into the response in request order, applying the
/// response byte budget as Kafka does (the first partition with data always
/// gets its batches). Returns the bytes included and whether any errored.
fn apply_results(
    topics: &mut [TopicOut],
    mut results: Vec<(usize, usize, PartitionOut)>,
    response_max: usize,
) -> (usize, bool) {
    results.sort_by_key(|(ti, pi, _)| (*ti, *pi));
    let mut total = 0usize;
    let mut any_error = false;
    for (ti, pi, mut o) in results {
        if let Some(r) = &o.records {
            if total > 0 && total + r.len as usize > response_max {
                o.records = None;
            } else {
                total += r.len as usize;
            }
        }
        // A diverged follower is answered at once, like an error.
        any_error |= o.error != ErrorCode::None || o.diverging.is_some();
        topics[ti].partitions[pi] = o;
    }
    (total, any_error)
}

fn put_uvarint(buf: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        buf.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    buf.put_u8(v as u8);
}

fn put_array_len(buf: &mut BytesMut, flexible: bool, len: usize) {
    if flexible {
        put_uvarint(buf, len as u64 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

/// Encodes the response, leaving a gap for each partition's record bytes,
/// which are spliced from the segment files.
fn encode(
    ctx: &RequestContext,
    topics: &[TopicOut],
    node_endpoints: &[NodeEndpoint],
    error: ErrorCode,
    session_id: i32,
    throttle_ms: u64,
) -> Response {
    let v = ctx.version;
    let flexible = v >= 12;
    let mut parts: Vec<ResponsePart> = Vec::new();
    let mut buf = BytesMut::with_capacity(256);
    let mut total_len: usize = 0;
    buf.put_i32(0); // size, patched below
    buf.put_i32(ctx.correlation_id);
    if flexible {
        buf.put_u8(0); // response header tagged fields
    }
    buf.put_i32(i32::try_from(throttle_ms).unwrap_or(i32::MAX)); // throttle_time_ms
    if v >= 7 {
        buf.put_i16(error.code());
        buf.put_i32(session_id);
    }
    put_array_len(&mut buf, flexible, topics.len());
    for t in topics {
        if v >= 13 {
            buf.put_slice(t.id.as_bytes());
        } else if flexible {
            put_uvarint(&mut buf, t.name.len() as u64 + 1);
            buf.put_slice(t.name.as_bytes());
        } else {
            buf.put_i16(t.name.len() as i16);
            buf.put_slice(t.name.as_bytes());
        }
        put_array_len(&mut buf, flexible, t.partitions.len());
        for p in &t.partitions {
            buf.put_i32(p.partition);
            buf.put_i16(p.error.code());
            buf.put_i64(p.high_watermark);
            buf.put_i64(p.last_stable_offset);
            if v >= 5 {
                buf.put_i64(p.log_start_offset);
            }
            // aborted_transactions: null for read_uncommitted (as Kafka),
            // else (producer_id, first_offset) entries, each with no
            // tagged fields when flexible.
            match &p.aborted {
                None if flexible => put_uvarint(&mut buf, 0),
                None => buf.put_i32(-1),
                Some(list) => {
                    put_array_len(&mut buf, flexible, list.len());
                    for a in list {
                        buf.put_i64(a.producer_id);
                        buf.put_i64(a.first_offset);
                        if flexible {
                            buf.put_u8(0);
                        }
                    }
                }
            }
            if v >= 11 {
                buf.put_i32(-1); // preferred_read_replica
            }
            let len = p.records.as_ref().map(|r| r.len as usize).unwrap_or(0);
            if flexible {
                put_uvarint(&mut buf, len as u64 + 1);
            } else {
                buf.put_i32(len as i32);
            }
            if let Some(r) = &p.records {
                if r.len > 0 {
                    total_len += buf.len();
                    parts.push(ResponsePart::Bytes(buf.split().freeze()));
                    parts.push(ResponsePart::File(r.clone()));
                    total_len += r.len as usize;
                }
            }
            if flexible {
                // Partition tagged fields, in tag order: diverging_epoch
                // (tag 0, an EpochEndOffset: epoch, end offset, no tags)
                // and current_leader (tag 1, a LeaderIdAndEpoch: leader
                // id, leader epoch, no tags).
                let tags =
                    usize::from(p.diverging.is_some()) + usize::from(p.current_leader.is_some());
                put_uvarint(&mut buf, tags as u64);
                if let Some((epoch, end_offset)) = p.diverging {
                    put_uvarint(&mut buf, 0);
                    put_uvarint(&mut buf, 13);
                    buf.put_i32(epoch);
                    buf.put_i64(end_offset);
                    buf.put_u8(0);
                }
                if let Some((leader, epoch)) = p.current_leader {
                    put_uvarint(&mut buf, 1);
                    put_uvarint(&mut buf, 9);
                    buf.put_i32(leader);
                    buf.put_i32(epoch);
                    buf.put_u8(0);
                }
            }
        }
        if flexible {
            buf.put_u8(0); // topic tagged fields
        }
    }
    if flexible {
        // Top-level tagged fields: node_endpoints (tag 0, v16+) when a
        // partition named a leader with a known endpoint.
        if node_endpoints.is_empty() {
            buf.put_u8(0);
        } else {
            let mut field = BytesMut::new();
            put_uvarint(&mut field, node_endpoints.len() as u64 + 1);
            for n in node_endpoints {
                if let Err(e) = n.encode(&mut field, v) {
                    // Our own struct failed to encode: a bug. Close rather
                    // than send a frame the client would misparse.
                    tracing::error!(error = %e, version = v, "cannot encode fetch node_endpoints; closing connection");
                    return Response::Close;
                }
            }
            put_uvarint(&mut buf, 1);
            put_uvarint(&mut buf, 0);
            put_uvarint(&mut buf, field.len() as u64);
            buf.put_slice(&field);
        }
    }
    total_len += buf.len();
    parts.push(ResponsePart::Bytes(buf.freeze()));
    let size = (total_len - 4) as i32;
    // Patch the size prefix into the first part.
    if let Some(ResponsePart::Bytes(first)) = parts.first_mut() {
        let mut b = BytesMut::from(&first[..]);
        b[..4].copy_from_slice(&size.to_be_bytes());
        *first = b.freeze();
    }
    if parts.len() == 1 {
        if let Some(ResponsePart::Bytes(b)) = parts.pop() {
            return Response::Frame(b);
        }
    }
    Response::Parts(parts)
}
