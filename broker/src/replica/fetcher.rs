//! The replica fetcher: one task per (shard, leader broker), on the shard
//! that owns its partitions, pulling each partition's new batches from the
//! leader with Fetch (as a follower, with its replica id) and appending them
//! unchanged to the local log (`PartitionLog::append_replicated`). It is
//! Kafka's ReplicaFetcherThread on a compio task.
//!
//! Each round sends one Fetch for every partition that is fetching (from
//! its log end, with `current_leader_epoch` and `last_fetched_epoch`), then
//! per partition:
//! - records: appended (and under `flush.policy=always` fdatasync'ed) before
//!   the next Fetch, so the leader's view of this follower's log end (the
//!   next fetch offset) only counts durable records; then the follower's
//!   high watermark follows the leader's;
//! - a diverging epoch (KIP-320/595): the log is truncated to the smaller of
//!   the leader's end offset for that epoch and this log's own, and fetching
//!   goes on from there;
//! - OFFSET_OUT_OF_RANGE: the leader's log end and start (ListOffsets)
//!   decide between truncating to the leader's end and starting over at its
//!   log start (`truncate_fully_and_start_at`);
//! - FENCED_LEADER_EPOCH, NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_*: the
//!   partition is parked until it is added again (new metadata);
//! - other retriable errors and connection failures: retried after
//!   `replica.fetch.backoff.ms`.
//!
//! The handle ([`ReplicaFetcher`]) adds and removes partitions and stops
//! the task. A stop never interrupts an append (only a Fetch in flight).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::channel::{mpsc, oneshot};
use futures::future::{join_all, select, Either};
use futures::StreamExt;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ListOffsetsRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use crate::log::follower::{split_fetched, ReplicationError};
use crate::log::{LogError, PartitionLog};
use crate::peer::{Peer, PeerConfig, PeerError};

/// Kafka's ListOffsets timestamps for the log end and the log start.
const LATEST_TIMESTAMP: i64 = -1;
const EARLIEST_TIMESTAMP: i64 = -2;

/// How a fetcher fetches; defaults are Kafka's broker defaults.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// The replica id sent in Fetch and ListOffsets: this broker's
    /// `node.id` as a follower; -1 fetches consumer-style (up to the high
    /// watermark), which tests against a single node use.
    pub replica_id: i32,
    /// This broker's epoch (Fetch v15+ `replica_state.replica_epoch`), -1
    /// when unknown.
    pub broker_epoch: i64,
    /// `replica.fetch.wait.max.ms` (500).
    pub max_wait: Duration,
    /// `replica.fetch.min.bytes` (1).
    pub min_bytes: i32,
    /// `replica.fetch.max.bytes` (1 MiB), per partition.
    pub max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (10 MiB), per response.
    pub response_max_bytes: i32,
    /// `replica.fetch.backoff.ms` (1000): the wait after an error.
    pub backoff: Duration,
    /// The connection to the leader.
    pub peer: PeerConfig,
}

impl Default for FetcherConfig {
    fn default() -> Self {
        FetcherConfig {
            replica_id: -1,
            broker_epoch: -1,
            max_wait: Duration::from_millis(500),
            min_bytes: 1,
            max_bytes: 1 << 20,
            response_max_bytes: 10 << 20,
            backoff: Duration::from_millis(1000),
            peer: PeerConfig::default(),
        }
    }
}

/// Where one partition's fetching stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchState {
    /// In every Fetch.
    Fetching,
    /// Left out of Fetches until then (after a retriable error).
    Delayed(Instant),
    /// Left out until added again: the leader refused it with this error,
    /// or the local log failed.
    Parked(ErrorCode),
}

/// A partition is known by its topic id and index.
pub type PartitionKey = (Uuid, i32);

struct FetchedPartition {
    log: Rc<PartitionLog>,
    leader_epoch: i32,
    state: FetchState,
}

enum Control {
    /// Partitions changed: look again.
    Wake,
    Stop,
}

/// What the handle and the task share (both on the same shard).
struct Shared {
    partitions: RefCell<BTreeMap<PartitionKey, FetchedPartition>>,
    /// Partitions whose response is being applied (appending, truncating).
    busy: RefCell<HashSet<PartitionKey>>,
    /// Woken whenever a partition stops being busy.
    idle_waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Fetch rounds completed (tests and metrics).
    rounds: Cell<u64>,
}

/// The handle of one fetcher task. Dropping it stops the task (after the
/// append in progress, if any).
pub struct ReplicaFetcher {
    pub leader_id: i32,
    pub leader_addr: String,
    shared: Rc<Shared>,
    control: mpsc::UnboundedSender<Control>,
    task: Option<compio::runtime::JoinHandle<()>>,
}

impl ReplicaFetcher {
    /// Starts a fetcher from the broker `leader_id` at `leader_addr` on the
    /// current (shard's) runtime. It fetches nothing until partitions are
    /// added.
    pub fn start(leader_id: i32, leader_addr: &str, config: FetcherConfig) -> ReplicaFetcher {
        let shared = Rc::new(Shared {
            partitions: RefCell::new(BTreeMap::new()),
            busy: RefCell::new(HashSet::new()),
            idle_waiters: RefCell::new(Vec::new()),
            rounds: Cell::new(0),
        });
        let (control, rx) = mpsc::unbounded();
        let peer = Peer::new(leader_id, leader_addr, config.peer.clone());
        let task = compio::runtime::spawn(run(shared.clone(), peer, config, rx));
        ReplicaFetcher {
            leader_id,
            leader_addr: leader_addr.to_string(),
            shared,
            control,
            task: Some(task),
        }
    }

    /// Fetches `log` from this leader in `leader_epoch` (again, if it was
    /// parked; with the new epoch, if it was there).
    pub fn add_partition(&self, log: Rc<PartitionLog>, leader_epoch: i32) {
        let key = (log.topic_id, log.partition);
        self.shared.partitions.borrow_mut().insert(
            key,
            FetchedPartition {
                log,
                leader_epoch,
                state: FetchState::Fetching,
            },
        );
        let _ = self.control.unbounded_send(Control::Wake);
    }

    /// Stops fetching a partition; resolves once no response is being
    /// applied to it, so the caller owns a quiet log afterwards.
    pub async fn remove_partition(&self, key: PartitionKey) -> Option<Rc<PartitionLog>> {
        let removed = self.shared.partitions.borrow_mut().remove(&key);
        while self.shared.busy.borrow().contains(&key) {
            let (tx, rx) = oneshot::channel();
            self.shared.idle_waiters.borrow_mut().push(tx);
            let _ = rx.await;
        }
        let _ = self.control.unbounded_send(Control::Wake);
        removed.map(|p| p.log)
    }

    /// The partitions and where each stands.
    pub fn states(&self) -> Vec<(PartitionKey, FetchState)> {
        self.shared
            .partitions
            .borrow()
            .iter()
            .map(|(k, p)| (*k, p.state))
            .collect()
    }

    pub fn state_of(&self, key: PartitionKey) -> Option<FetchState> {
        self.shared.partitions.borrow().get(&key).map(|p| p.state)
    }

    /// Fetch rounds completed so far.
    pub fn rounds(&self) -> u64 {
        self.shared.rounds.get()
    }

    /// Stops the task and waits for it (a Fetch in flight is abandoned, an
    /// append in progress finishes).
    pub async fn stop(mut self) {
        let _ = self.control.unbounded_send(Control::Stop);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for ReplicaFetcher {
    fn drop(&mut self) {
        let _ = self.control.unbounded_send(Control::Stop);
        if let Some(task) = self.task.take() {
            // Dropping a JoinHandle cancels its task, which could cut an
            // append short: let it stop on its own instead.
            task.detach();
        }
    }
}

/// One partition of one Fetch: what was asked.
struct Asked {
    key: PartitionKey,
    log: Rc<PartitionLog>,
    leader_epoch: i32,
    fetch_offset: i64,
}

/// What applying one partition's answer calls for next.
enum Outcome {
    Continue,
    Delay,
    Park(ErrorCode),
    OutOfRange,
}

async fn run(
    shared: Rc<Shared>,
    mut peer: Peer,
    cfg: FetcherConfig,
    mut control: mpsc::UnboundedReceiver<Control>,
) {
    tracing::info!(
        leader = peer.node_id,
        addr = peer.addr(),
        "replica fetcher started"
    );
    // The last failure logged at warn: a leader that stays unreachable (or
    // refuses our login) is reported once, then at debug until it recovers.
    let mut last_failure: Option<String> = None;
    loop {
        let asked = fetchable(&shared);
        if asked.is_empty() {
            // Nothing to fetch: wait for partitions or the next delay's end.
            let wait = next_delay_end(&shared)
                .map(|t| t.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(1));
            match compio::time::timeout(wait, control.next()).await {
                Ok(Some(Control::Stop)) | Ok(None) => break,
                Ok(Some(Control::Wake)) | Err(_) => continue,
            }
        }
        let fetch = Box::pin(fetch_once(&mut peer, &cfg, &asked));
        let Some(result) = unless_stopped(fetch, &mut control).await else {
            break;
        };
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let failure = e.to_string();
                if last_failure.as_ref() != Some(&failure) {
                    tracing::warn!(leader = peer.node_id, error = %failure, "replica fetch failed; retrying after backoff");
                    last_failure = Some(failure);
                } else {
                    tracing::debug!(leader = peer.node_id, error = %failure, "replica fetch failed again");
                }
                peer.disconnect();
                if pause(cfg.backoff, &mut control).await {
                    break;
                }
                continue;
            }
        };
        if last_failure.take().is_some() {
            tracing::info!(leader = peer.node_id, "replica fetch works again");
        }
        if response.error_code != ErrorCode::None.code() {
            let code = ErrorCode::from_code(response.error_code);
            tracing::warn!(leader = peer.node_id, error = %code, "replica fetch refused");
            if pause(cfg.backoff, &mut control).await {
                break;
            }
            continue;
        }
        let outcomes = apply_response(&shared, &asked, response).await;
        let mut out_of_range = Vec::new();
        for (a, outcome) in asked.iter().zip(outcomes) {
            match outcome {
                Outcome::Continue => {}
                Outcome::Delay => set_state(
                    &shared,
                    a.key,
                    FetchState::Delayed(Instant::now() + cfg.backoff),
                ),
                Outcome::Park(code) => {
                    tracing::info!(topic = %a.log.topic, partition = a.log.partition, error = %code, "replica fetch parked");
                    set_state(&shared, a.key, FetchState::Parked(code))
                }
                Outcome::OutOfRange => out_of_range.push(a),
            }
        }
        for a in out_of_range {
            let outcome = guarded(&shared, a.key, handle_out_of_range(&mut peer, &cfg, a)).await;
            match outcome {
                Outcome::Continue => {}
                Outcome::Park(code) => set_state(&shared, a.key, FetchState::Parked(code)),
                Outcome::Delay | Outcome::OutOfRange => set_state(
                    &shared,
                    a.key,
                    FetchState::Delayed(Instant::now() + cfg.backoff),
                ),
            }
        }
        shared.rounds.set(shared.rounds.get() + 1);
    }
    tracing::info!(leader = peer.node_id, "replica fetcher stopped");
}

/// Runs `fut` unless a Stop arrives first (Wakes are taken in passing);
/// `None` when stopped.
async fn unless_stopped<F: std::future::Future + Unpin>(
    mut fut: F,
    control: &mut mpsc::UnboundedReceiver<Control>,
) -> Option<F::Output> {
    loop {
        match select(fut, control.next()).await {
            Either::Left((out, _)) => return Some(out),
            Either::Right((Some(Control::Wake), rest)) => fut = rest,
            Either::Right((Some(Control::Stop) | None, _)) => return None,
        }
    }
}

/// Waits `d` unless stopped; returns whether a Stop came.
async fn pause(d: Duration, control: &mut mpsc::UnboundedReceiver<Control>) -> bool {
    unless_stopped(Box::pin(compio::time::sleep(d)), control)
        .await
        .is_none()
}

/// The partitions to put in the next Fetch, each from its log end.
fn fetchable(shared: &Shared) -> Vec<Asked> {
    let now = Instant::now();
    let mut partitions = shared.partitions.borrow_mut();
    let mut out = Vec::new();
    for (key, p) in partitions.iter_mut() {
        if let FetchState::Delayed(until) = p.state {
            if until <= now {
                p.state = FetchState::Fetching;
            }
        }
        if p.state == FetchState::Fetching && !p.log.closed.get() {
            out.push(Asked {
                key: *key,
                log: p.log.clone(),
                leader_epoch: p.leader_epoch,
                fetch_offset: p.log.state.borrow().log_end_offset,
            });
        }
    }
    out
}

fn next_delay_end(shared: &Shared) -> Option<Instant> {
    shared
        .partitions
        .borrow()
        .values()
        .filter_map(|p| match p.state {
            FetchState::Delayed(t) => Some(t),
            _ => None,
        })
        .min()
}

fn set_state(shared: &Shared, key: PartitionKey, state: FetchState) {
    if let Some(p) = shared.partitions.borrow_mut().get_mut(&key) {
        p.state = state;
    }
}

/// Builds and sends one Fetch for `asked` at the negotiated version.
async fn fetch_once(
    peer: &mut Peer,
    cfg: &FetcherConfig,
    asked: &[Asked],
) -> Result<FetchResponse, PeerError> {
    let conn = peer.connection().await?;
    let version = conn.pick(ApiKey::Fetch)?;
    let req = fetch_request(cfg, asked, version);
    let timeout = cfg.peer.request_timeout + cfg.max_wait;
    conn.send_versioned(&req, version, timeout).await
}

/// The Fetch for `asked` at `version` (12+): replica id in `replica_id`
/// before v15 and in `replica_state` from v15; topics by id from v13.
fn fetch_request(cfg: &FetcherConfig, asked: &[Asked], version: i16) -> FetchRequest {
    let mut req = FetchRequest::default();
    if version >= 15 {
        let mut state = ReplicaState::default();
        state.replica_id = BrokerId(cfg.replica_id);
        state.replica_epoch = cfg.broker_epoch;
        req.replica_state = state;
    } else {
        req.replica_id = BrokerId(cfg.replica_id);
    }
    req.max_wait_ms = cfg.max_wait.as_millis().min(i32::MAX as u128) as i32;
    req.min_bytes = cfg.min_bytes;
    req.max_bytes = cfg.response_max_bytes;
    req.isolation_level = 0;
    req.session_id = 0;
    req.session_epoch = -1;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for a in asked {
        let mut p = FetchPartition::default();
        p.partition = a.log.partition;
        p.current_leader_epoch = a.leader_epoch;
        p.fetch_offset = a.fetch_offset;
        p.last_fetched_epoch = a.log.last_epoch();
        p.log_start_offset = a.log.log_start_offset();
        p.partition_max_bytes = cfg.max_bytes;
        let same_topic = |t: &&mut FetchTopic| {
            if version >= 13 {
                t.topic_id == a.log.topic_id
            } else {
                t.topic.as_str() == a.log.topic
            }
        };
        match topics.iter_mut().find(same_topic) {
            Some(t) => t.partitions.push(p),
            None => {
                let mut t = FetchTopic::default();
                if version >= 13 {
                    t.topic_id = a.log.topic_id;
                } else {
                    t.topic = TopicName(StrBytes::from_string(a.log.topic.clone()));
                }
                t.partitions.push(p);
                topics.push(t);
            }
        }
    }
    req.topics = topics;
    req
}

/// Applies each asked partition's answer (concurrently: their appends and
/// syncs overlap); returns one outcome per asked partition, in order.
async fn apply_response(shared: &Rc<Shared>, asked: &[Asked], resp: FetchResponse) -> Vec<Outcome> {
    let mut answers: BTreeMap<
        PartitionKey,
        kafka_protocol::messages::fetch_response::PartitionData,
    > = BTreeMap::new();
    for t in resp.responses {
        for p in t.partitions {
            let key = asked.iter().find(|a| {
                a.log.partition == p.partition_index
                    && if t.topic_id.is_nil() {
                        a.log.topic == t.topic.as_str()
                    } else {
                        a.log.topic_id == t.topic_id
                    }
            });
            if let Some(a) = key {
                answers.insert(a.key, p);
            }
        }
    }
    let work = asked.iter().map(|a| {
        let answer = answers.remove(&a.key);
        async move {
            match answer {
                // Not in the answer (the leader's byte limit): next time.
                None => Outcome::Continue,
                Some(data) => guarded(shared, a.key, apply_partition(shared, a, data)).await,
            }
        }
    });
    join_all(work).await
}

/// Runs `fut` for `key` unless the partition was removed or re-added since
/// it was asked for, marking it busy meanwhile.
async fn guarded<F: std::future::Future<Output = Outcome>>(
    shared: &Shared,
    key: PartitionKey,
    fut: F,
) -> Outcome {
    if !shared.partitions.borrow().contains_key(&key) {
        return Outcome::Continue;
    }
    shared.busy.borrow_mut().insert(key);
    let out = fut.await;
    shared.busy.borrow_mut().remove(&key);
    for w in shared.idle_waiters.borrow_mut().drain(..) {
        let _ = w.send(());
    }
    out
}

async fn apply_partition(
    shared: &Shared,
    a: &Asked,
    data: kafka_protocol::messages::fetch_response::PartitionData,
) -> Outcome {
    let log = &a.log;
    // Re-added with another epoch while the Fetch was out: ask again.
    let current = shared
        .partitions
        .borrow()
        .get(&a.key)
        .map(|p| (p.leader_epoch, p.state));
    if current != Some((a.leader_epoch, FetchState::Fetching)) {
        return Outcome::Continue;
    }
    match ErrorCode::from_code(data.error_code) {
        ErrorCode::None => {}
        ErrorCode::OffsetOutOfRange => return Outcome::OutOfRange,
        code @ (ErrorCode::FencedLeaderEpoch
        | ErrorCode::NotLeaderOrFollower
        | ErrorCode::UnknownTopicOrPartition
        | ErrorCode::UnknownTopicId
        | ErrorCode::InconsistentTopicId) => return Outcome::Park(code),
        code if code.is_retriable() => return Outcome::Delay,
        code => {
            tracing::warn!(topic = %log.topic, partition = log.partition, error = %code, "replica fetch error");
            return Outcome::Delay;
        }
    }
    let diverging = (data.diverging_epoch.epoch, data.diverging_epoch.end_offset);
    if diverging != (-1, -1) {
        return truncate_diverged(log, diverging).await;
    }
    if log.state.borrow().log_end_offset != a.fetch_offset {
        // The log moved while the Fetch was out (truncated): ask again.
        return Outcome::Continue;
    }
    let batches = data.records.as_ref().map(split_fetched).unwrap_or_default();
    if !batches.is_empty() {
        match log.append_replicated(batches).await {
            Ok(_) => {}
            Err(ReplicationError::NotContinuous { .. } | ReplicationError::OutOfOrder { .. }) => {
                return Outcome::Continue
            }
            Err(e @ ReplicationError::Corrupt { .. }) => {
                tracing::warn!(topic = %log.topic, partition = log.partition, error = %e, "corrupt batch from the leader");
                return Outcome::Delay;
            }
            Err(ReplicationError::Log(e)) => return local_failure(log, e),
        }
    }
    log.set_high_watermark_from_leader(data.high_watermark);
    Outcome::Continue
}

/// The leader says this log diverged at `(epoch, end_offset)`: cut it to
/// the smaller of the leader's end for that epoch and this log's own end
/// for it (Kafka's rule); an undefined epoch cuts to the high watermark.
async fn truncate_diverged(log: &PartitionLog, (epoch, end_offset): (i32, i64)) -> Outcome {
    let log_end = log.state.borrow().log_end_offset;
    let target = if epoch < 0 || end_offset < 0 {
        log.high_watermark().min(log_end)
    } else {
        match log.local_end_offset_for(epoch) {
            (local_epoch, local_end) if local_epoch >= 0 && local_end >= 0 => {
                end_offset.min(local_end)
            }
            _ => end_offset.min(log_end),
        }
    };
    tracing::info!(topic = %log.topic, partition = log.partition, epoch, end_offset, target, "truncating a diverged follower log");
    match log.truncate_to(target).await {
        Ok(_) => Outcome::Continue,
        Err(e) => local_failure(log, e),
    }
}

/// The local log failed: stop fetching it (the follower falls out of the
/// ISR rather than corrupting anything).
fn local_failure(log: &PartitionLog, e: LogError) -> Outcome {
    tracing::error!(topic = %log.topic, partition = log.partition, error = %e, "follower log failed; parking the partition");
    Outcome::Park(e.kafka_code())
}

/// OFFSET_OUT_OF_RANGE: a leader whose log ends before ours cuts ours to
/// its end; one whose log starts after ours ends makes us start over at its
/// start; otherwise fetch again.
async fn handle_out_of_range(peer: &mut Peer, cfg: &FetcherConfig, a: &Asked) -> Outcome {
    let log = &a.log;
    let log_end = log.state.borrow().log_end_offset;
    let leader_end = match leader_offset(peer, cfg, a, LATEST_TIMESTAMP).await {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    if leader_end < log_end {
        tracing::warn!(topic = %log.topic, partition = log.partition, leader_end, log_end, "leader's log ends before ours; truncating");
        return match log.truncate_to(leader_end).await {
            Ok(_) => Outcome::Continue,
            Err(e) => local_failure(log, e),
        };
    }
    let leader_start = match leader_offset(peer, cfg, a, EARLIEST_TIMESTAMP).await {
        Ok(o) => o,
        Err(outcome) => return outcome,
    };
    if leader_start > log_end {
        tracing::info!(topic = %log.topic, partition = log.partition, leader_start, log_end, "leader's log starts after ours ends; starting over");
        return match log.truncate_fully_and_start_at(leader_start).await {
            Ok(()) => Outcome::Continue,
            Err(e) => local_failure(log, e),
        };
    }
    Outcome::Delay
}

/// The leader's offset for `timestamp` (latest or earliest) by ListOffsets.
async fn leader_offset(
    peer: &mut Peer,
    cfg: &FetcherConfig,
    a: &Asked,
    timestamp: i64,
) -> Result<i64, Outcome> {
    let fail = |e: PeerError| {
        tracing::warn!(error = %e, "ListOffsets to the leader failed");
        Outcome::Delay
    };
    let conn = peer.connection().await.map_err(fail)?;
    let version = conn.pick(ApiKey::ListOffsets).map_err(fail)?;
    let mut p = ListOffsetsPartition::default();
    p.partition_index = a.log.partition;
    p.timestamp = timestamp;
    if version >= 4 {
        p.current_leader_epoch = a.leader_epoch;
    }
    let mut t = ListOffsetsTopic::default();
    t.name = TopicName(StrBytes::from_string(a.log.topic.clone()));
    t.partitions.push(p);
    let mut req = ListOffsetsRequest::default();
    req.replica_id = BrokerId(cfg.replica_id);
    req.topics.push(t);
    let timeout = cfg.peer.request_timeout;
    let resp = conn
        .send_versioned(&req, version, timeout)
        .await
        .map_err(fail)?;
    let answer = resp
        .topics
        .iter()
        .flat_map(|t| t.partitions.iter())
        .find(|p| p.partition_index == a.log.partition);
    match answer.map(|p| (ErrorCode::from_code(p.error_code), p.offset)) {
        Some((ErrorCode::None, offset)) => Ok(offset),
        Some((
            code @ (ErrorCode::FencedLeaderEpoch
            | ErrorCode::NotLeaderOrFollower
            | ErrorCode::UnknownTopicOrPartition),
            _,
        )) => Err(Outcome::Park(code)),
        _ => Err(Outcome::Delay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafkas_replica_fetch_defaults() {
        let c = FetcherConfig::default();
        assert_eq!(c.max_wait, Duration::from_millis(500));
        assert_eq!(c.min_bytes, 1);
        assert_eq!(c.max_bytes, 1_048_576);
        assert_eq!(c.response_max_bytes, 10_485_760);
        assert_eq!(c.backoff, Duration::from_secs(1));
    }
}
