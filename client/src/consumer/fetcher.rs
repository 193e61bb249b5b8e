//! The fetcher: one Fetch request in flight per leader broker, sent as a
//! background task so the next fetch travels while the application works
//! on the last one (as the Java consumer pipelines). Finished fetches are
//! queued; `poll` turns them into records: batches are CRC-checked when
//! `check.crcs` is on, decompressed, records below the fetch position
//! (inside a batch that starts earlier) are skipped, an incomplete trailing
//! batch is ignored (the next fetch starts there), control batches and, in
//! read_committed mode, aborted transactions are dropped. Partition errors
//! become an offset reset (OFFSET_OUT_OF_RANGE under `auto.offset.reset`) or
//! a metadata refresh (leader moved, unknown partition). Each broker's
//! fetches run in an incremental fetch session (fetch_session.rs): only
//! changed partitions are sent, and the answer carries only partitions
//! with news; a session error starts over with a full fetch, and
//! [`Fetcher::close_sessions`] closes them when the consumer closes. Also
//! ListOffsets, used for resets and `seek_to_beginning/end`.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::batch::{
    decode_records, verify_crc, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2,
    MIN_BATCH_LENGTH,
};
use tokio::sync::Notify;

use super::fetch_session::{FetchSession, PartitionParams, FINAL_EPOCH};
use super::positions::{Assignment, Position, ResetTo};
use super::{ConsumerRecord, TimestampType, TopicPartition};
use crate::config::{ConsumerConfig, OffsetReset};
use crate::error::{Error, ErrorCode, Result};
use crate::net::Cluster;

/// The answer for one partition of a finished fetch.
#[derive(Debug)]
struct PartitionResult {
    tp: TopicPartition,
    fetch_offset: i64,
    error: ErrorCode,
    high_watermark: i64,
    records: Option<Bytes>,
    aborted: Option<Vec<(i64, i64)>>,
}

#[derive(Debug)]
struct CompletedFetch {
    node: i32,
    result: Result<Vec<PartitionResult>>,
}

/// Fetch results waiting for `poll`, shared with the fetch tasks.
#[derive(Default)]
struct Shared {
    completed: Mutex<VecDeque<CompletedFetch>>,
    in_flight: Mutex<HashSet<i32>>,
    /// The fetch session with each broker (by node id).
    sessions: Mutex<HashMap<i32, FetchSession>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Decoded records of one partition not yet handed to the application.
#[derive(Debug)]
pub(crate) struct PartitionRecords {
    pub tp: TopicPartition,
    pub records: VecDeque<ConsumerRecord>,
    /// Where the position goes once every record here is handed out.
    pub next_offset: i64,
    pub next_epoch: Option<i32>,
}

/// Fetch settings taken from the consumer configuration.
#[derive(Debug, Clone)]
struct Settings {
    min_bytes: i32,
    max_bytes: i32,
    max_wait: Duration,
    partition_max_bytes: i32,
    read_committed: bool,
    check_crcs: bool,
    reset: OffsetReset,
}

pub(crate) struct Fetcher {
    cluster: Arc<Cluster>,
    settings: Settings,
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    buffered: VecDeque<PartitionRecords>,
    /// A fetch failed in a way that needs fresh metadata (leaders).
    pub metadata_needed: bool,
}

impl Fetcher {
    pub fn new(cluster: Arc<Cluster>, config: &ConsumerConfig, wake: Arc<Notify>) -> Fetcher {
        Fetcher {
            cluster,
            settings: Settings {
                min_bytes: config.fetch_min_bytes,
                max_bytes: config.fetch_max_bytes,
                max_wait: config.fetch_max_wait,
                partition_max_bytes: config.max_partition_fetch_bytes,
                read_committed: config.read_committed,
                check_crcs: config.check_crcs,
                reset: config.auto_offset_reset,
            },
            shared: Arc::new(Shared::default()),
            wake,
            buffered: VecDeque::new(),
            metadata_needed: false,
        }
    }

    fn has_buffered(&self, tp: &TopicPartition) -> bool {
        self.buffered.iter().any(|b| &b.tp == tp)
    }

    /// Drops buffered records of a partition (after a seek or revocation).
    pub fn discard(&mut self, tp: &TopicPartition) {
        self.buffered.retain(|b| &b.tp != tp);
    }

    /// Drops buffered records of partitions no longer assigned.
    pub fn retain_assigned(&mut self, assignment: &Assignment) {
        self.buffered.retain(|b| assignment.contains(&b.tp));
    }

    /// Sends a fetch to every leader with fetchable partitions and no fetch
    /// in flight. Partitions with buffered records wait until those are
    /// handed out.
    pub fn send_fetches(&mut self, assignment: &Assignment) {
        let mut by_node: BTreeMap<i32, Vec<(TopicPartition, Position, i32)>> = BTreeMap::new();
        let mut any_buffered = false;
        for (tp, pos) in assignment.fetchable() {
            if self.has_buffered(&tp) {
                any_buffered = true;
                continue;
            }
            let leader = self.cluster.topic(&tp.topic).and_then(|t| {
                t.partitions
                    .iter()
                    .find(|p| p.partition == tp.partition)
                    .filter(|p| p.leader >= 0)
                    .map(|p| (p.leader, p.leader_epoch))
            });
            match leader {
                Some((node, epoch)) => by_node.entry(node).or_default().push((tp, pos, epoch)),
                None => self.metadata_needed = true,
            }
        }
        for (node, parts) in by_node {
            {
                let mut in_flight = lock(&self.shared.in_flight);
                if !in_flight.insert(node) {
                    continue;
                }
            }
            let cluster = self.cluster.clone();
            let mut settings = self.settings.clone();
            if any_buffered {
                // Partitions with buffered records are left out of this
                // fetch; if the ones in it have nothing new, a long poll
                // would hold the node's only fetch slot for fetch.max.wait.ms
                // and the buffered partitions could not be fetched again once
                // drained (a stall of up to 500 ms per round with one empty
                // partition among busy ones). The application has records to
                // work on, so this fetch need not wait.
                settings.max_wait = Duration::ZERO;
            }
            let shared = self.shared.clone();
            let wake = self.wake.clone();
            tokio::spawn(async move {
                let result = fetch_from(&cluster, node, &settings, &parts, &shared.sessions).await;
                if let Err(e) = &result {
                    tracing::debug!(node, error = %e, "fetch failed");
                    if matches!(e, Error::Connection { .. } | Error::Timeout(_)) {
                        cluster.invalidate_connection(node);
                    }
                }
                lock(&shared.completed).push_back(CompletedFetch { node, result });
                lock(&shared.in_flight).remove(&node);
                wake.notify_one();
            });
        }
    }

    /// Closes the fetch session with every broker that holds one (a fetch
    /// with epoch -1 and no partitions), as the Java consumer does on close.
    /// Best effort: a broker that does not answer in time evicts it later.
    pub async fn close_sessions(&self) {
        let open: Vec<(i32, i32)> = lock(&self.shared.sessions)
            .iter_mut()
            .filter_map(|(node, s)| s.close().map(|id| (*node, id)))
            .collect();
        // A fetch still in flight holds the connection for up to
        // fetch.max.wait.ms before the close is read.
        let limit = self.settings.max_wait + Duration::from_secs(5);
        let closes = open.into_iter().map(|(node, id)| {
            let cluster = self.cluster.clone();
            async move {
                let close = async {
                    let conn = cluster.connection(node).await?;
                    let version = conn.versions().pick(ApiKey::Fetch)?;
                    let mut req = FetchRequest::default();
                    req.session_id = id;
                    req.session_epoch = FINAL_EPOCH;
                    req.max_wait_ms = 0;
                    req.min_bytes = 0;
                    let resp: FetchResponse = conn.send_versioned(&req, version).await?;
                    Ok::<i16, Error>(resp.error_code)
                };
                match tokio::time::timeout(limit, close).await {
                    Ok(Ok(code)) => {
                        tracing::debug!(node, session = id, error = code, "fetch session closed")
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(node, session = id, error = %e, "closing fetch session failed")
                    }
                    Err(_) => tracing::debug!(node, session = id, "closing fetch session timed out"),
                }
            }
        });
        futures::future::join_all(closes).await;
    }

    /// Turns finished fetches into buffered records and position updates.
    /// Returns an error the application must see (OFFSET_OUT_OF_RANGE with
    /// `auto.offset.reset=none`, authorization, corrupt data).
    pub fn process_completed(&mut self, assignment: &mut Assignment) -> Result<()> {
        let done: Vec<CompletedFetch> = lock(&self.shared.completed).drain(..).collect();
        let mut first_error: Option<Error> = None;
        for fetch in done {
            let parts = match fetch.result {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(node = fetch.node, error = %e, "fetch failed; refreshing metadata");
                    self.metadata_needed = true;
                    continue;
                }
            };
            for r in parts {
                // Stale: unassigned, moved by a seek, or already buffered.
                if assignment.position(&r.tp).map(|p| p.offset) != Some(r.fetch_offset)
                    || self.has_buffered(&r.tp)
                {
                    continue;
                }
                match r.error {
                    ErrorCode::None => {
                        assignment.set_high_watermark(&r.tp, r.high_watermark);
                        let Some(bytes) = r.records.filter(|b| !b.is_empty()) else {
                            continue;
                        };
                        match parse_partition(
                            &r.tp,
                            r.fetch_offset,
                            &bytes,
                            &self.settings,
                            r.aborted.as_deref(),
                        ) {
                            Ok(pr) => {
                                if pr.records.is_empty() {
                                    if pr.next_offset > r.fetch_offset {
                                        // Only control batches or aborted data: move past them.
                                        assignment.set_position(
                                            &r.tp,
                                            Position {
                                                offset: pr.next_offset,
                                                leader_epoch: pr.next_epoch,
                                            },
                                        );
                                    }
                                } else {
                                    self.buffered.push_back(pr);
                                }
                            }
                            Err(e) => {
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    ErrorCode::OffsetOutOfRange => match self.settings.reset {
                        OffsetReset::Earliest => {
                            tracing::info!(tp = %r.tp, offset = r.fetch_offset, "offset out of range; resetting to earliest");
                            assignment.request_reset(&r.tp, ResetTo::Earliest);
                        }
                        OffsetReset::Latest => {
                            tracing::info!(tp = %r.tp, offset = r.fetch_offset, "offset out of range; resetting to latest");
                            assignment.request_reset(&r.tp, ResetTo::Latest);
                        }
                        OffsetReset::None => {
                            first_error.get_or_insert(Error::kafka_with(
                                ErrorCode::OffsetOutOfRange,
                                Some(format!("fetch offset {} is out of range for {} and auto.offset.reset is none", r.fetch_offset, r.tp)),
                            ));
                        }
                    },
                    code if code.invalidates_metadata() || code == ErrorCode::KafkaStorageError => {
                        tracing::debug!(tp = %r.tp, error = %code, "fetch: refreshing metadata");
                        self.metadata_needed = true;
                    }
                    ErrorCode::TopicAuthorizationFailed
                    | ErrorCode::GroupAuthorizationFailed
                    | ErrorCode::ClusterAuthorizationFailed => {
                        first_error.get_or_insert(Error::kafka_with(
                            r.error,
                            Some(format!("fetching {}", r.tp)),
                        ));
                    }
                    code => {
                        tracing::warn!(tp = %r.tp, error = %code, "fetch error; retrying");
                        if code.is_retriable() {
                            self.metadata_needed = true;
                        }
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Hands out up to `max` buffered records of unpaused partitions and
    /// moves positions past them.
    pub fn drain(&mut self, max: usize, assignment: &mut Assignment) -> Vec<ConsumerRecord> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.buffered.len() && out.len() < max {
            let Some(b) = self.buffered.get_mut(i) else {
                break;
            };
            if !assignment.contains(&b.tp) {
                self.buffered.remove(i);
                continue;
            }
            if assignment.is_paused(&b.tp) {
                i += 1;
                continue;
            }
            let mut last: Option<(i64, Option<i32>)> = None;
            while out.len() < max {
                let Some(r) = b.records.pop_front() else {
                    break;
                };
                last = Some((r.offset, r.leader_epoch));
                out.push(r);
            }
            if b.records.is_empty() {
                assignment.set_position(
                    &b.tp,
                    Position {
                        offset: b.next_offset,
                        leader_epoch: b.next_epoch,
                    },
                );
                self.buffered.remove(i);
            } else if let Some((offset, epoch)) = last {
                assignment.set_position(
                    &b.tp,
                    Position {
                        offset: offset + 1,
                        leader_epoch: epoch,
                    },
                );
                // Rotate so the next poll starts with another partition.
                if let Some(b) = self.buffered.remove(i) {
                    self.buffered.push_back(b);
                }
                break;
            }
        }
        out
    }
}

fn topic_name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn fetch_from(
    cluster: &Cluster,
    node: i32,
    s: &Settings,
    parts: &[(TopicPartition, Position, i32)],
    sessions: &Mutex<HashMap<i32, FetchSession>>,
) -> Result<Vec<PartitionResult>> {
    let conn = cluster.connection(node).await?;
    let version = conn.versions().pick(ApiKey::Fetch)?;
    let wanted: Vec<(TopicPartition, PartitionParams)> = parts
        .iter()
        .map(|(tp, pos, leader_epoch)| {
            let params = PartitionParams {
                fetch_offset: pos.offset,
                leader_epoch: if version >= 9 { *leader_epoch } else { -1 },
                max_bytes: s.partition_max_bytes,
            };
            (tp.clone(), params)
        })
        .collect();
    let mut plan = lock(sessions)
        .entry(node)
        .or_default()
        .plan(version, &wanted);
    let mut req = FetchRequest::default();
    req.max_wait_ms = s.max_wait.as_millis().min(i32::MAX as u128) as i32;
    req.min_bytes = s.min_bytes;
    req.max_bytes = s.max_bytes;
    req.isolation_level = i8::from(s.read_committed);
    req.session_id = plan.session_id;
    req.session_epoch = plan.epoch;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for (tp, params) in &plan.send {
        let mut p = FetchPartition::default();
        p.partition = tp.partition;
        p.current_leader_epoch = params.leader_epoch;
        p.fetch_offset = params.fetch_offset;
        p.log_start_offset = -1;
        p.partition_max_bytes = params.max_bytes;
        match topics.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = FetchTopic::default();
                t.topic = topic_name(&tp.topic);
                t.partitions.push(p);
                topics.push(t);
            }
        }
    }
    req.topics = topics;
    let mut forgotten: Vec<ForgottenTopic> = Vec::new();
    for tp in &plan.forget {
        match forgotten
            .iter_mut()
            .find(|t| t.topic.0.as_str() == tp.topic)
        {
            Some(t) => t.partitions.push(tp.partition),
            None => {
                let mut t = ForgottenTopic::default();
                t.topic = topic_name(&tp.topic);
                t.partitions.push(tp.partition);
                forgotten.push(t);
            }
        }
    }
    req.forgotten_topics_data = forgotten;
    let resp: FetchResponse = match conn.send_versioned(&req, version).await {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(session) = lock(sessions).get_mut(&node) {
                session.failed();
            }
            return Err(e);
        }
    };
    let error = ErrorCode::from_code(resp.error_code);
    let fetching = std::mem::take(&mut plan.fetching);
    if let Some(session) = lock(sessions).get_mut(&node) {
        session.answered(plan, error, resp.session_id);
    }
    if matches!(
        error,
        ErrorCode::FetchSessionIdNotFound
            | ErrorCode::InvalidFetchSessionEpoch
            | ErrorCode::FetchSessionTopicIdError
    ) {
        // The session is gone or out of step: the next fetch is full.
        tracing::debug!(node, %error, "fetch session reset");
        return Ok(Vec::new());
    }
    if error != ErrorCode::None {
        return Err(Error::from_wire(resp.error_code, Some("fetch".into())));
    }
    let mut out = Vec::new();
    for t in resp.responses {
        let topic = t.topic.0.to_string();
        for p in t.partitions {
            let tp = TopicPartition::new(topic.clone(), p.partition_index);
            let Some(&fetch_offset) = fetching.get(&tp) else {
                continue;
            };
            out.push(PartitionResult {
                tp,
                fetch_offset,
                error: ErrorCode::from_code(p.error_code),
                high_watermark: p.high_watermark,
                records: p.records,
                aborted: p.aborted_transactions.map(|v| {
                    v.iter()
                        .map(|a| (a.producer_id.0, a.first_offset))
                        .collect()
                }),
            });
        }
    }
    Ok(out)
}

/// Decodes one partition's records blob (see the module doc for the rules).
fn parse_partition(
    tp: &TopicPartition,
    fetch_offset: i64,
    bytes: &Bytes,
    s: &Settings,
    aborted: Option<&[(i64, i64)]>,
) -> Result<PartitionRecords> {
    let mut out = PartitionRecords {
        tp: tp.clone(),
        records: VecDeque::new(),
        next_offset: fetch_offset,
        next_epoch: None,
    };
    // Aborted transactions by first offset (min-heap), and the producers
    // currently inside an aborted transaction.
    let mut aborted_heap: BinaryHeap<std::cmp::Reverse<(i64, i64)>> = aborted
        .unwrap_or_default()
        .iter()
        .map(|&(pid, first)| std::cmp::Reverse((first, pid)))
        .collect();
    let mut aborting: HashSet<i64> = HashSet::new();
    let mut pos = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < BATCH_HEADER_LEN {
            break; // partial trailing batch
        }
        let h = BatchHeader::parse(rest).map_err(|e| Error::Protocol(format!("{tp}: {e}")))?;
        if h.magic != MAGIC_V2 {
            if out.records.is_empty() && out.next_offset == fetch_offset {
                return Err(Error::Protocol(format!(
                    "{tp}: record batch magic {} at offset {} is not supported",
                    h.magic, h.base_offset
                )));
            }
            break;
        }
        if h.batch_length < MIN_BATCH_LENGTH {
            if out.records.is_empty() && out.next_offset == fetch_offset {
                return Err(Error::Protocol(format!(
                    "{tp}: corrupt record batch at offset {}",
                    h.base_offset
                )));
            }
            break;
        }
        let total = h.total_len();
        if total > rest.len() || total < LOG_OVERHEAD {
            break; // partial trailing batch
        }
        let batch = bytes.slice(pos..pos + total);
        pos += total;
        if h.next_offset() <= fetch_offset {
            continue; // entirely before the position
        }
        if s.check_crcs {
            if let Err(e) = verify_crc(&batch) {
                if out.records.is_empty() && out.next_offset == fetch_offset {
                    return Err(Error::Protocol(format!(
                        "{tp}: record batch at offset {} is corrupt: {e}",
                        h.base_offset
                    )));
                }
                break; // hand out what came before; the next fetch reports it
            }
        }
        let epoch = Some(h.partition_leader_epoch).filter(|e| *e >= 0);
        if s.read_committed && h.has_producer_id() {
            while let Some(std::cmp::Reverse((first, pid))) = aborted_heap.peek().copied() {
                if first > h.last_offset() {
                    break;
                }
                aborted_heap.pop();
                aborting.insert(pid);
            }
            if h.is_control() {
                if aborting.contains(&h.producer_id) && is_abort_marker(&batch) {
                    aborting.remove(&h.producer_id);
                }
            } else if h.is_transactional() && aborting.contains(&h.producer_id) {
                out.next_offset = out.next_offset.max(h.next_offset());
                out.next_epoch = epoch;
                continue;
            }
        }
        if h.is_control() {
            out.next_offset = out.next_offset.max(h.next_offset());
            out.next_epoch = epoch;
            continue;
        }
        let records = match decode_records(&batch) {
            Ok(r) => r,
            Err(e) => {
                if out.records.is_empty() && out.next_offset == fetch_offset {
                    return Err(Error::Protocol(format!(
                        "{tp}: record batch at offset {} does not decode: {e}",
                        h.base_offset
                    )));
                }
                break;
            }
        };
        let ts_type = if h.timestamp_type_log_append() {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        };
        for r in records {
            let offset = r.offset(&h);
            if offset < fetch_offset {
                continue;
            }
            out.records.push_back(ConsumerRecord {
                topic: tp.topic.clone(),
                partition: tp.partition,
                offset,
                timestamp: r.timestamp(&h),
                timestamp_type: ts_type,
                key: r.key,
                value: r.value,
                headers: r.headers.into_iter().map(|h| (h.key, h.value)).collect(),
                leader_epoch: epoch,
            });
        }
        out.next_offset = out.next_offset.max(h.next_offset());
        out.next_epoch = epoch;
    }
    Ok(out)
}

/// A control batch's record key is (version i16, type i16); type 0 = ABORT.
fn is_abort_marker(batch: &Bytes) -> bool {
    decode_records(batch)
        .ok()
        .and_then(|r| r.into_iter().next())
        .and_then(|r| r.key)
        .is_some_and(|k| k.len() >= 4 && i16::from_be_bytes([k[2], k[3]]) == 0)
}

/// Looks up offsets by timestamp (-2 earliest, -1 latest) with ListOffsets
/// to each partition's leader. Partitions whose leader is unknown or that
/// failed are left out (and `metadata_needed` reported as true).
pub(crate) async fn list_offsets(
    cluster: &Cluster,
    parts: &[(TopicPartition, i64)],
    read_committed: bool,
) -> Result<(HashMap<TopicPartition, Position>, bool)> {
    let mut by_node: BTreeMap<i32, Vec<(TopicPartition, i64, i32)>> = BTreeMap::new();
    let mut metadata_needed = false;
    for (tp, ts) in parts {
        let leader = cluster.topic(&tp.topic).and_then(|t| {
            t.partitions
                .iter()
                .find(|p| p.partition == tp.partition)
                .filter(|p| p.leader >= 0)
                .map(|p| (p.leader, p.leader_epoch))
        });
        match leader {
            Some((node, epoch)) => by_node
                .entry(node)
                .or_default()
                .push((tp.clone(), *ts, epoch)),
            None => metadata_needed = true,
        }
    }
    let calls = by_node.into_iter().map(|(node, parts)| async move {
        let conn = cluster.connection(node).await?;
        let version = conn.versions().pick(ApiKey::ListOffsets)?;
        let mut req = ListOffsetsRequest::default();
        req.replica_id = (-1).into();
        req.isolation_level = if version >= 2 {
            i8::from(read_committed)
        } else {
            0
        };
        let mut topics: Vec<ListOffsetsTopic> = Vec::new();
        for (tp, ts, epoch) in &parts {
            let mut p = ListOffsetsPartition::default();
            p.partition_index = tp.partition;
            p.timestamp = *ts;
            p.current_leader_epoch = if version >= 4 { *epoch } else { -1 };
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == tp.topic => t.partitions.push(p),
                _ => {
                    let mut t = ListOffsetsTopic::default();
                    t.name = topic_name(&tp.topic);
                    t.partitions.push(p);
                    topics.push(t);
                }
            }
        }
        req.topics = topics;
        let r = conn.send_versioned(&req, version).await;
        if let Err(Error::Connection { .. }) = &r {
            cluster.invalidate_connection(node);
        }
        r
    });
    let results = futures::future::join_all(calls).await;
    let mut out = HashMap::new();
    let mut last_err = None;
    for r in results {
        match r {
            Ok(resp) => {
                for t in resp.topics {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.name.0.to_string(), p.partition_index);
                        let code = ErrorCode::from_code(p.error_code);
                        if code == ErrorCode::None {
                            out.insert(
                                tp,
                                Position {
                                    offset: p.offset,
                                    leader_epoch: Some(p.leader_epoch).filter(|e| *e >= 0),
                                },
                            );
                        } else if code.is_retriable() || code.invalidates_metadata() {
                            tracing::debug!(%tp, error = %code, "list offsets: will retry");
                            metadata_needed = true;
                        } else {
                            last_err = Some(Error::kafka_with(
                                code,
                                Some(format!("listing offsets of {tp}")),
                            ));
                        }
                    }
                }
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(error = %e, "list offsets failed; will retry");
                metadata_needed = true;
            }
            Err(e) => last_err = Some(e),
        }
    }
    if out.is_empty() {
        if let Some(e) = last_err {
            return Err(e);
        }
    }
    Ok((out, metadata_needed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::batch::{set_base_offset, BatchBuilder};
    use sluice_protocol::compression::Compression;

    fn settings() -> Settings {
        Settings {
            min_bytes: 1,
            max_bytes: 1 << 20,
            max_wait: Duration::from_millis(10),
            partition_max_bytes: 1 << 20,
            read_committed: false,
            check_crcs: true,
            reset: OffsetReset::Earliest,
        }
    }

    fn batch(base: i64, n: usize, compression: Compression) -> Vec<u8> {
        let mut b = BatchBuilder::new(compression);
        for i in 0..n {
            let v = format!("v{}", base + i as i64);
            b.push(1000 + i as i64, Some(b"k"), Some(v.as_bytes()), &[])
                .unwrap();
        }
        let mut bytes = b.build().to_vec();
        set_base_offset(&mut bytes, base);
        bytes
    }

    #[test]
    fn skips_records_before_position_and_partial_tail() {
        let tp = TopicPartition::new("t", 0);
        let mut blob = batch(0, 5, Compression::Gzip);
        blob.extend(batch(5, 3, Compression::None));
        let third = batch(8, 2, Compression::None);
        blob.extend(&third[..third.len() - 7]); // cut short
        let pr = parse_partition(&tp, 3, &Bytes::from(blob), &settings(), None).unwrap();
        let offsets: Vec<i64> = pr.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![3, 4, 5, 6, 7]);
        assert_eq!(pr.next_offset, 8);
        assert_eq!(pr.records[0].value.as_deref(), Some(&b"v3"[..]));
    }

    #[test]
    fn control_batches_advance_without_records() {
        let tp = TopicPartition::new("t", 0);
        let mut b = BatchBuilder::new(Compression::None)
            .with_control(true)
            .with_producer(7, 0, 0)
            .with_transactional(true);
        b.push(0, Some(&[0, 0, 0, 1]), Some(&[0, 0, 0, 0, 0, 0]), &[])
            .unwrap();
        let mut bytes = b.build().to_vec();
        set_base_offset(&mut bytes, 10);
        let pr = parse_partition(&tp, 10, &Bytes::from(bytes), &settings(), None).unwrap();
        assert!(pr.records.is_empty());
        assert_eq!(pr.next_offset, 11);
    }

    #[test]
    fn corrupt_batch_is_an_error_first_and_a_stop_later() {
        let tp = TopicPartition::new("t", 0);
        let good = batch(0, 2, Compression::None);
        let mut bad = batch(2, 2, Compression::None);
        // Flip a byte of a value: structure intact, CRC wrong.
        let at = bad.windows(2).position(|w| w == b"v3").unwrap();
        bad[at] = b'w';
        let mut blob = good.clone();
        blob.extend(&bad);
        let pr = parse_partition(&tp, 0, &Bytes::from(blob), &settings(), None).unwrap();
        assert_eq!(pr.records.len(), 2);
        assert_eq!(pr.next_offset, 2);
        assert!(parse_partition(&tp, 2, &Bytes::from(bad.clone()), &settings(), None).is_err());
        let mut no_check = settings();
        no_check.check_crcs = false;
        // Without check.crcs the flipped byte is just data.
        assert!(parse_partition(&tp, 2, &Bytes::from(bad), &no_check, None).is_ok());
    }

    #[test]
    fn read_committed_drops_aborted_transactions() {
        let tp = TopicPartition::new("t", 0);
        let txn = |base: i64, pid: i64, n: usize| {
            let mut b = BatchBuilder::new(Compression::None)
                .with_producer(pid, 0, 0)
                .with_transactional(true);
            for _ in 0..n {
                b.push(0, None, Some(b"x"), &[]).unwrap();
            }
            let mut bytes = b.build().to_vec();
            set_base_offset(&mut bytes, base);
            bytes
        };
        let marker = |base: i64, pid: i64, kind: i16| {
            let mut b = BatchBuilder::new(Compression::None)
                .with_producer(pid, 0, 0)
                .with_transactional(true)
                .with_control(true);
            let mut key = vec![0, 0];
            key.extend(kind.to_be_bytes());
            b.push(0, Some(&key), Some(&[0, 0, 0, 0, 0, 0]), &[])
                .unwrap();
            let mut bytes = b.build().to_vec();
            set_base_offset(&mut bytes, base);
            bytes
        };
        let mut blob = txn(0, 1, 2); // aborted: 0,1
        blob.extend(txn(2, 2, 2)); // committed: 2,3
        blob.extend(marker(4, 1, 0)); // abort pid 1
        blob.extend(marker(5, 2, 1)); // commit pid 2
        let mut s = settings();
        s.read_committed = true;
        let pr = parse_partition(&tp, 0, &Bytes::from(blob), &s, Some(&[(1, 0)])).unwrap();
        let offsets: Vec<i64> = pr.records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, vec![2, 3]);
        assert_eq!(pr.next_offset, 6);
    }
}
