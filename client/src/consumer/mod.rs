//! The consumer, with the Java client's semantics: `subscribe` (topic names
//! or a pattern, group-managed) or `assign` (manual), `poll` returning at
//! most `max.poll.records` records, a [`Stream`] of records, sync and async
//! commits, `seek`, `pause`/`resume`, rebalance callbacks, and
//! [`Consumer::run_batches`], a handler loop that receives ordered
//! per-partition batches and commits each only after the handler succeeds
//! (what an AWS Lambda event source mapping does for Kafka).
//!
//! # Layout
//! - [`assignor`]: range, roundrobin and cooperative-sticky assignors.
//! - `membership`: join / sync / heartbeat / leave, the member state machine.
//! - `fetcher`: pipelined Fetch per leader, record decoding, ListOffsets.
//! - `offsets`: OffsetCommit / OffsetFetch and the ordered committer.
//! - `protocol`: the embedded consumer protocol (subscription, assignment).
//! - `state`: subscription, assigned partitions, positions, pauses.
//!
//! # Threads of control
//! Everything that changes what the application sees (assignment,
//! positions, callbacks) happens inside `poll` on the caller's task, as in
//! the Java client. Background tasks only talk to brokers: one heartbeat
//! task (so a slow handler never stops heartbeats), the join task of a
//! rebalance in progress, one fetch task per broker with a fetch in flight,
//! and the committer. Nothing blocks a runtime thread.

pub mod assignor;
mod fetcher;
mod membership;
mod offsets;
mod protocol;
mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use regex::Regex;
use tokio::sync::{oneshot, Notify};

pub use assignor::{
    Assignor, CooperativeStickyAssignor, GroupAssignment, MemberSubscription, RangeAssignor,
    RebalanceProtocol, RoundRobinAssignor,
};
pub use offsets::OffsetAndMetadata;

use crate::config::{ConsumerConfig, OffsetReset};
use crate::error::{Error, ErrorCode, Result};
use crate::net::Cluster;
use fetcher::Fetcher;
use membership::{GenerationInfo, GroupCtx, GroupShared, JoinOutcome, JoinRequest, MemberState};
use offsets::Committer;
use state::{Assignment, Position, ResetTo, Subscription};

/// A topic and a partition number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

impl From<(String, i32)> for TopicPartition {
    fn from((topic, partition): (String, i32)) -> Self {
        TopicPartition { topic, partition }
    }
}

impl From<(&str, i32)> for TopicPartition {
    fn from((topic, partition): (&str, i32)) -> Self {
        TopicPartition::new(topic, partition)
    }
}

impl From<&TopicPartition> for TopicPartition {
    fn from(tp: &TopicPartition) -> Self {
        tp.clone()
    }
}

/// What a record's timestamp means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// One record as the consumer hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub timestamp_type: TimestampType,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    pub leader_epoch: Option<i32>,
}

impl ConsumerRecord {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition::new(self.topic.clone(), self.partition)
    }
}

/// Consecutive records of one partition, in offset order, for
/// [`Consumer::run_batches`].
#[derive(Debug, Clone)]
pub struct PartitionBatch {
    pub topic: String,
    pub partition: i32,
    pub records: Vec<ConsumerRecord>,
}

/// Rebalance callbacks, run inside `poll` (as in the Java client). With
/// `enable.auto.commit`, consumed offsets are committed before
/// `on_partitions_revoked` is called.
pub trait RebalanceListener: Send + Sync {
    /// Partitions newly assigned (eager: the whole assignment; cooperative:
    /// only the added ones; possibly empty).
    fn on_partitions_assigned(&self, _partitions: &[TopicPartition]) {}
    /// Partitions taken away in an orderly rebalance.
    fn on_partitions_revoked(&self, _partitions: &[TopicPartition]) {}
    /// Partitions that may already belong to another member (the
    /// generation was lost). Defaults to `on_partitions_revoked`, as Java.
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        self.on_partitions_revoked(partitions)
    }
}

/// Stops [`Consumer::run_batches`] and ends [`Consumer::stream`]; wakes a
/// `poll` in progress (which then returns no records).
#[derive(Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl ShutdownHandle {
    pub fn shutdown(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }
    pub fn is_shutdown(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// Group membership pieces, present when `group.id` is set.
struct Group {
    ctx: Arc<GroupCtx>,
    heartbeat: tokio::task::JoinHandle<()>,
    join: Option<(
        tokio::task::JoinHandle<()>,
        oneshot::Receiver<Result<JoinOutcome>>,
    )>,
    protocol: RebalanceProtocol,
    /// Leader only: partition counts the last assignment was made with.
    partition_counts: Option<BTreeMap<String, i32>>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some((task, _)) = self.join.take() {
            task.abort();
        }
    }
}

/// A Kafka consumer. See the module documentation.
pub struct Consumer {
    cluster: Arc<Cluster>,
    config: ConsumerConfig,
    subscription: Subscription,
    assignment: Assignment,
    fetcher: Fetcher,
    group: Option<Group>,
    committer: Option<Committer>,
    listener: Option<Arc<dyn RebalanceListener>>,
    wake: Arc<Notify>,
    shutdown: ShutdownHandle,
    next_auto_commit: Instant,
    last_metadata_refresh: Instant,
    metadata_refresh_forced: bool,
    /// Offsets of batches `run_batches` finished whose commit has not
    /// succeeded yet; committed before their partitions are revoked.
    pending_batch_commits: BTreeMap<TopicPartition, OffsetAndMetadata>,
    closed: bool,
}

fn illegal_state(what: &str, reason: impl Into<String>) -> Error {
    Error::config(what, reason)
}

fn sorted(parts: impl IntoIterator<Item = TopicPartition>) -> Vec<TopicPartition> {
    let mut v: Vec<TopicPartition> = parts.into_iter().collect();
    v.sort();
    v.dedup();
    v
}

impl Consumer {
    /// Connects to the cluster. Nothing is fetched until `subscribe` or
    /// `assign` and then `poll`.
    pub async fn connect(config: ConsumerConfig) -> Result<Consumer> {
        config.validate()?;
        let cluster = Cluster::connect(config.client.clone()).await?;
        Ok(Consumer::with_cluster(cluster, config))
    }

    /// A consumer over an existing cluster handle (sharing its connections).
    pub fn with_cluster(cluster: Arc<Cluster>, config: ConsumerConfig) -> Consumer {
        let wake = Arc::new(Notify::new());
        let fetcher = Fetcher::new(cluster.clone(), &config, wake.clone());
        let timeout = config.client.request_timeout;
        let backoff = config.client.retry_backoff;
        let (group, committer) = match &config.group_id {
            Some(group_id) => {
                let shared = Arc::new(GroupShared::new(wake.clone()));
                let assignors: Vec<Arc<dyn Assignor>> = config
                    .assignors
                    .iter()
                    .map(|k| Arc::from(assignor::assignor_for(*k)))
                    .collect();
                let protocol = if !assignors.is_empty()
                    && assignors
                        .iter()
                        .all(|a| a.rebalance_protocol() == RebalanceProtocol::Cooperative)
                {
                    RebalanceProtocol::Cooperative
                } else {
                    RebalanceProtocol::Eager
                };
                let ctx = Arc::new(GroupCtx {
                    cluster: cluster.clone(),
                    group_id: group_id.clone(),
                    instance_id: config.group_instance_id.clone(),
                    session_timeout: config.session_timeout,
                    rebalance_timeout: config.max_poll_interval,
                    heartbeat_interval: config.heartbeat_interval,
                    retry_backoff: backoff,
                    assignors,
                    shared: shared.clone(),
                });
                let heartbeat = tokio::spawn(membership::heartbeat_loop(
                    ctx.clone(),
                    config.max_poll_interval,
                ));
                let committer = Committer::spawn(
                    cluster.clone(),
                    group_id.clone(),
                    Some(shared),
                    timeout,
                    backoff,
                );
                (
                    Some(Group {
                        ctx,
                        heartbeat,
                        join: None,
                        protocol,
                        partition_counts: None,
                    }),
                    Some(committer),
                )
            }
            None => (None, None),
        };
        Consumer {
            next_auto_commit: Instant::now() + config.auto_commit_interval,
            cluster,
            subscription: Subscription::None,
            assignment: Assignment::default(),
            fetcher,
            group,
            committer,
            listener: None,
            shutdown: ShutdownHandle {
                flag: Arc::new(AtomicBool::new(false)),
                wake: wake.clone(),
            },
            wake,
            last_metadata_refresh: Instant::now(),
            metadata_refresh_forced: false,
            pending_batch_commits: BTreeMap::new(),
            closed: false,
            config,
        }
    }

    pub fn config(&self) -> &ConsumerConfig {
        &self.config
    }

    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Sets the callbacks run on rebalances.
    pub fn set_rebalance_listener(&mut self, listener: Arc<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// A handle that stops `run_batches` / `stream` from another task.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    fn require_group(&self, op: &str) -> Result<&Group> {
        self.group
            .as_ref()
            .ok_or_else(|| Error::config("group.id", format!("{op} needs a group.id")))
    }

    /// Subscribes to topics by name; the group assigns their partitions.
    pub fn subscribe<S: AsRef<str>>(&mut self, topics: &[S]) -> Result<()> {
        self.require_group("subscribe")?;
        if matches!(self.subscription, Subscription::Manual) {
            return Err(illegal_state(
                "subscription",
                "subscribe() cannot follow assign(); call unsubscribe() first",
            ));
        }
        let set: BTreeSet<String> = topics
            .iter()
            .map(|t| t.as_ref().trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if set.is_empty() {
            return Err(illegal_state(
                "subscription",
                "no topic given; use unsubscribe() to stop consuming",
            ));
        }
        let changed = self.subscription.topics() != set
            || !matches!(self.subscription, Subscription::Topics(_));
        self.subscription = Subscription::Topics(set);
        if changed {
            self.subscription_changed();
        }
        Ok(())
    }

    /// Subscribes to every topic whose whole name matches `pattern`
    /// (checked on each metadata refresh, every `metadata.max.age.ms`).
    pub fn subscribe_pattern(&mut self, pattern: &str) -> Result<()> {
        self.require_group("subscribe_pattern")?;
        if matches!(self.subscription, Subscription::Manual) {
            return Err(illegal_state(
                "subscription",
                "subscribe_pattern() cannot follow assign(); call unsubscribe() first",
            ));
        }
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| Error::config("pattern", e.to_string()))?;
        self.subscription = Subscription::Pattern {
            regex,
            matched: BTreeSet::new(),
        };
        self.metadata_refresh_forced = true;
        self.subscription_changed();
        Ok(())
    }

    fn subscription_changed(&mut self) {
        if let Some(g) = &self.group {
            if g.ctx.shared.state() != MemberState::Unjoined {
                g.ctx.shared.request_rejoin("subscription changed");
            }
        }
    }

    /// Reads exactly these partitions, without group management.
    pub fn assign<I, T>(&mut self, partitions: I) -> Result<()>
    where
        I: IntoIterator<Item = T>,
        T: Into<TopicPartition>,
    {
        if self.subscription.is_group_managed() {
            return Err(illegal_state(
                "subscription",
                "assign() cannot follow subscribe(); call unsubscribe() first",
            ));
        }
        let parts: Vec<TopicPartition> = partitions.into_iter().map(Into::into).collect();
        self.subscription = if parts.is_empty() {
            Subscription::None
        } else {
            Subscription::Manual
        };
        self.assignment.set(parts);
        self.fetcher.retain_assigned(&self.assignment);
        Ok(())
    }

    /// Stops consuming: commits (auto-commit), runs the revoke callback and
    /// leaves the group.
    pub async fn unsubscribe(&mut self) -> Result<()> {
        if self.subscription.is_group_managed() {
            self.leave("the consumer unsubscribed from all topics")
                .await;
        }
        self.subscription = Subscription::None;
        self.assignment.clear();
        self.fetcher.retain_assigned(&self.assignment);
        Ok(())
    }

    /// The assigned partitions.
    pub fn assignment(&self) -> BTreeSet<TopicPartition> {
        self.assignment.partitions()
    }

    /// The subscribed topics (for a pattern: those it matches now).
    pub fn subscription(&self) -> BTreeSet<String> {
        self.subscription.topics()
    }

    /// Stops fetching from these partitions until `resume`.
    pub fn pause(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            if !self.assignment.set_paused(tp, true) {
                return Err(illegal_state(
                    "pause",
                    format!("{tp} is not assigned to this consumer"),
                ));
            }
        }
        Ok(())
    }

    pub fn resume(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        for tp in partitions {
            if !self.assignment.set_paused(tp, false) {
                return Err(illegal_state(
                    "resume",
                    format!("{tp} is not assigned to this consumer"),
                ));
            }
        }
        self.wake.notify_one();
        Ok(())
    }

    pub fn paused(&self) -> BTreeSet<TopicPartition> {
        self.assignment.paused()
    }

    /// Makes the next `poll` read `tp` from `offset`.
    pub fn seek(&mut self, tp: &TopicPartition, offset: i64) -> Result<()> {
        if offset < 0 {
            return Err(illegal_state(
                "seek",
                format!("offset {offset} is negative"),
            ));
        }
        if !self.assignment.set_position(
            tp,
            Position {
                offset,
                leader_epoch: None,
            },
        ) {
            return Err(illegal_state(
                "seek",
                format!("{tp} is not assigned to this consumer"),
            ));
        }
        self.fetcher.discard(tp);
        Ok(())
    }

    fn seek_reset(&mut self, partitions: &[TopicPartition], to: ResetTo) -> Result<()> {
        let parts: Vec<TopicPartition> = if partitions.is_empty() {
            self.assignment.partitions().into_iter().collect()
        } else {
            partitions.to_vec()
        };
        for tp in &parts {
            if !self.assignment.request_reset(tp, to) {
                return Err(illegal_state(
                    "seek",
                    format!("{tp} is not assigned to this consumer"),
                ));
            }
            self.fetcher.discard(tp);
        }
        Ok(())
    }

    /// Seeks to the first offset (an empty slice: every assigned partition).
    /// Evaluated lazily, on the next `poll` or `position`.
    pub fn seek_to_beginning(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_reset(partitions, ResetTo::Earliest)
    }

    /// Seeks to the log end (an empty slice: every assigned partition).
    pub fn seek_to_end(&mut self, partitions: &[TopicPartition]) -> Result<()> {
        self.seek_reset(partitions, ResetTo::Latest)
    }

    /// The offset of the next record `poll` will return for `tp`, looking
    /// it up (committed offset or reset) if needed.
    pub async fn position(&mut self, tp: &TopicPartition) -> Result<i64> {
        if !self.assignment.contains(tp) {
            return Err(illegal_state(
                "position",
                format!("{tp} is not assigned to this consumer"),
            ));
        }
        let deadline = Instant::now() + self.config.client.request_timeout;
        loop {
            if let Some(p) = self.assignment.position(tp) {
                return Ok(p.offset);
            }
            self.update_positions(deadline).await?;
            if self.assignment.position(tp).is_some() {
                continue;
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!("position of {tp}")));
            }
            if self.fetcher.metadata_needed {
                let _ = self.cluster.refresh_metadata(&[]).await;
                self.fetcher.metadata_needed = false;
            }
            tokio::time::sleep(self.config.client.retry_backoff).await;
        }
    }

    /// The committed offsets of `partitions` (None where nothing is committed).
    pub async fn committed(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<TopicPartition, Option<OffsetAndMetadata>>> {
        let g = self.require_group("committed")?;
        offsets::fetch_committed(
            &self.cluster,
            &g.ctx.group_id,
            partitions,
            self.config.client.request_timeout,
            self.config.client.retry_backoff,
        )
        .await
    }

    fn commit_identity(&self) -> Result<GenerationInfo> {
        let g = self.require_group("commit")?;
        if self.subscription.is_group_managed() {
            g.ctx.shared.generation_if_stable(g.ctx.instance_id.as_ref()).ok_or_else(|| {
                Error::kafka_with(ErrorCode::RebalanceInProgress, Some("the consumer is rebalancing; offsets can be committed after the next poll".into()))
            })
        } else {
            Ok(GenerationInfo::standalone())
        }
    }

    fn consumed_offsets(
        &self,
        only: Option<&[TopicPartition]>,
    ) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.assignment
            .consumed()
            .into_iter()
            .filter(|(tp, _)| only.is_none_or(|o| o.contains(tp)))
            .map(|(tp, p)| {
                (
                    tp,
                    OffsetAndMetadata {
                        offset: p.offset,
                        leader_epoch: p.leader_epoch,
                        metadata: String::new(),
                    },
                )
            })
            .collect()
    }

    /// Commits the positions of every assigned partition (the offsets after
    /// the records `poll` returned).
    pub async fn commit_sync(&mut self) -> Result<()> {
        let offsets = self.consumed_offsets(None);
        self.commit_sync_offsets(offsets).await
    }

    /// Commits the given offsets (the next offset to read per partition).
    pub async fn commit_sync_offsets<I, O>(&mut self, offsets: I) -> Result<()>
    where
        I: IntoIterator<Item = (TopicPartition, O)>,
        O: Into<OffsetAndMetadata>,
    {
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> =
            offsets.into_iter().map(|(tp, o)| (tp, o.into())).collect();
        if offsets.is_empty() {
            return Ok(());
        }
        let who = self.commit_identity()?;
        let committer = self.committer.as_ref().ok_or(Error::Closed)?;
        committer.commit_sync(offsets, who).await
    }

    /// Queues a commit of the current positions and returns at once; the
    /// returned future (which need not be awaited) yields the result.
    /// Commits reach the broker in the order they were made.
    pub fn commit_async(&mut self) -> impl Future<Output = Result<()>> + Send + 'static {
        let offsets = self.consumed_offsets(None);
        let queued = self.commit_identity().and_then(|who| {
            let c = self.committer.as_ref().ok_or(Error::Closed)?;
            Ok(c.commit_async(offsets, who))
        });
        async move {
            match queued {
                Ok(rx) => rx.await.unwrap_or(Err(Error::Closed)),
                Err(e) => Err(e),
            }
        }
    }

    /// Queues a commit of the given offsets (the next offset to read per
    /// partition) and returns at once, like [`commit_async`](Self::commit_async);
    /// the returned future (which need not be awaited) yields the result.
    pub fn commit_async_offsets<I, O>(
        &mut self,
        offsets: I,
    ) -> impl Future<Output = Result<()>> + Send + 'static
    where
        I: IntoIterator<Item = (TopicPartition, O)>,
        O: Into<OffsetAndMetadata>,
    {
        let offsets: BTreeMap<TopicPartition, OffsetAndMetadata> =
            offsets.into_iter().map(|(tp, o)| (tp, o.into())).collect();
        let queued = if offsets.is_empty() {
            Ok(None)
        } else {
            self.commit_identity().and_then(|who| {
                let c = self.committer.as_ref().ok_or(Error::Closed)?;
                Ok(Some(c.commit_async(offsets, who)))
            })
        };
        async move {
            match queued {
                Ok(Some(rx)) => rx.await.unwrap_or(Err(Error::Closed)),
                Ok(None) => Ok(()),
                Err(e) => Err(e),
            }
        }
    }

    /// Commits before partitions go away; errors are logged (as Java does).
    async fn commit_before_revoke(&mut self, parts: Option<&[TopicPartition]>) {
        let mut offsets = BTreeMap::new();
        if self.config.enable_auto_commit {
            offsets = self.consumed_offsets(parts);
        }
        for (tp, om) in &self.pending_batch_commits {
            if parts.is_none_or(|p| p.contains(tp)) {
                offsets.insert(tp.clone(), om.clone());
            }
        }
        if offsets.is_empty() {
            return;
        }
        match self.commit_sync_offsets(offsets.clone()).await {
            Ok(()) => {
                self.pending_batch_commits
                    .retain(|tp, _| !offsets.contains_key(tp));
            }
            Err(e) => tracing::warn!(error = %e, "committing offsets before revocation failed"),
        }
    }

    fn listener_call(&self, what: &str, parts: &[TopicPartition]) {
        let Some(l) = self.listener.clone() else {
            return;
        };
        tracing::debug!(callback = what, partitions = ?parts, "rebalance callback");
        match what {
            "assigned" => l.on_partitions_assigned(parts),
            "revoked" => l.on_partitions_revoked(parts),
            _ => l.on_partitions_lost(parts),
        }
    }

    /// Fetches records: at most `max.poll.records`, waiting up to `timeout`
    /// for some to arrive. Also where rebalances, offset lookups and auto
    /// commits happen.
    pub async fn poll(&mut self, timeout: Duration) -> Result<Vec<ConsumerRecord>> {
        let max = self.config.max_poll_records;
        self.poll_up_to(timeout, max).await
    }

    /// Like [`poll`](Self::poll), returning at most `max_records` records
    /// (at least one) instead of `max.poll.records` (kafka-python's
    /// `poll(max_records=..)`).
    pub async fn poll_up_to(
        &mut self,
        timeout: Duration,
        max_records: usize,
    ) -> Result<Vec<ConsumerRecord>> {
        let max_records = max_records.max(1);
        if self.closed {
            return Err(Error::Closed);
        }
        if matches!(self.subscription, Subscription::None) {
            return Err(illegal_state(
                "subscription",
                "the consumer is not subscribed to any topic nor assigned any partition",
            ));
        }
        let deadline = Instant::now() + timeout;
        if let Some(g) = &self.group {
            g.ctx.shared.note_poll();
        }
        loop {
            if self.shutdown.is_shutdown() {
                return Ok(Vec::new());
            }
            if let Some(g) = &self.group {
                if let Some(e) = g.ctx.shared.lock().fatal.clone() {
                    return Err(e);
                }
            }
            self.maybe_refresh_metadata().await;
            if self.subscription.is_group_managed() {
                self.coordinate().await?;
            }
            self.maybe_auto_commit();
            self.update_positions(deadline).await?;
            self.fetcher.process_completed(&mut self.assignment)?;
            let records = self.fetcher.drain(max_records, &mut self.assignment);
            // Send the next fetches now, so they travel while the
            // application works on these records.
            self.fetcher.send_fetches(&self.assignment);
            if !records.is_empty() {
                return Ok(records);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake_at = deadline.min(
                now + self
                    .config
                    .client
                    .retry_backoff
                    .max(Duration::from_millis(10)),
            );
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(wake_at.into()) => {}
            }
        }
    }

    /// The records as a stream (polling as needed); ends after `close` or
    /// a [`ShutdownHandle::shutdown`].
    pub fn stream(&mut self) -> impl Stream<Item = Result<ConsumerRecord>> + Send + '_ {
        futures::stream::unfold(
            (self, VecDeque::<ConsumerRecord>::new()),
            |(c, mut buf)| async move {
                loop {
                    if let Some(r) = buf.pop_front() {
                        return Some((Ok(r), (c, buf)));
                    }
                    if c.closed || c.shutdown.is_shutdown() {
                        return None;
                    }
                    match c.poll(Duration::from_millis(500)).await {
                        Ok(v) => buf.extend(v),
                        Err(e) => return Some((Err(e), (c, buf))),
                    }
                }
            },
        )
    }

    /// Runs `handler` over ordered per-partition batches until shut down
    /// (see [`ShutdownHandle`]) or a fatal error. A batch's next offset is
    /// committed only after the handler returns `Ok`; on `Err` the
    /// partition is rewound to the batch's first record and retried after
    /// a backoff (doubling from `retry.backoff.ms` up to 1 s, or
    /// `retry.backoff.ms` if larger), while other partitions and heartbeats
    /// carry on.
    pub async fn run_batches<F, Fut, E>(&mut self, mut handler: F) -> Result<()>
    where
        F: FnMut(PartitionBatch) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>>,
        E: std::fmt::Display,
    {
        // Partition -> (consecutive failures, resume time while backing off).
        let mut retries: HashMap<TopicPartition, (u32, Option<Instant>)> = HashMap::new();
        let base = self
            .config
            .client
            .retry_backoff
            .max(Duration::from_millis(1));
        let cap = base.max(Duration::from_secs(1));
        while !self.shutdown.is_shutdown() && !self.closed {
            let now = Instant::now();
            let mut next_resume: Option<Instant> = None;
            for (tp, (_, until)) in retries.iter_mut() {
                if let Some(at) = *until {
                    if now >= at {
                        *until = None;
                        let _ = self.assignment.set_paused(tp, false);
                    } else {
                        next_resume = Some(next_resume.map_or(at, |n: Instant| n.min(at)));
                    }
                }
            }
            let wait = next_resume.map_or(Duration::from_millis(500), |at| {
                at.saturating_duration_since(now)
                    .min(Duration::from_millis(500))
            });
            let records = self.poll(wait).await?;
            retries.retain(|tp, _| self.assignment.contains(tp));
            self.pending_batch_commits
                .retain(|tp, _| self.assignment.contains(tp));
            if !self.pending_batch_commits.is_empty() {
                let pending = self.pending_batch_commits.clone();
                if self.commit_sync_offsets(pending.clone()).await.is_ok() {
                    self.pending_batch_commits
                        .retain(|tp, om| pending.get(tp) != Some(om));
                }
            }
            for batch in group_by_partition(records) {
                let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
                let (Some(first), Some(last)) = (batch.records.first(), batch.records.last())
                else {
                    continue;
                };
                let (first, next, epoch) = (first.offset, last.offset + 1, last.leader_epoch);
                match handler(batch).await {
                    Ok(()) => {
                        retries.remove(&tp);
                        let om = OffsetAndMetadata {
                            offset: next,
                            leader_epoch: epoch,
                            metadata: String::new(),
                        };
                        self.pending_batch_commits.insert(tp.clone(), om.clone());
                        match self.commit_sync_offsets([(tp.clone(), om.clone())]).await {
                            Ok(()) => {
                                if self.pending_batch_commits.get(&tp) == Some(&om) {
                                    self.pending_batch_commits.remove(&tp);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(%tp, offset = next, error = %e, "commit after a successful batch failed; will retry")
                            }
                        }
                    }
                    Err(e) => {
                        let entry = retries.entry(tp.clone()).or_insert((0, None));
                        entry.0 = entry.0.saturating_add(1);
                        let delay = base
                            .saturating_mul(1u32 << entry.0.saturating_sub(1).min(16))
                            .min(cap);
                        tracing::warn!(%tp, offset = first, attempt = entry.0, ?delay, error = %e, "batch handler failed; retrying the batch");
                        entry.1 = Some(Instant::now() + delay);
                        if self.assignment.contains(&tp) {
                            self.seek(&tp, first)?;
                            let _ = self.assignment.set_paused(&tp, true);
                        }
                    }
                }
            }
        }
        for tp in retries.keys() {
            let _ = self.assignment.set_paused(tp, false);
        }
        Ok(())
    }

    /// Commits (auto-commit), runs the revoke callback, leaves the group
    /// (dynamic members) and stops the background tasks.
    pub async fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        if self.subscription.is_group_managed() {
            self.leave("the consumer is being closed").await;
        } else if self.group.is_some() && !self.assignment.is_empty() {
            self.commit_before_revoke(None).await;
        }
        self.closed = true;
        self.shutdown.shutdown();
        self.assignment.clear();
        self.group = None;
        self.committer = None;
        Ok(())
    }

    /// The orderly way out of the group: commit, revoke (or lost)
    /// callback, LeaveGroup.
    async fn leave(&mut self, reason: &str) {
        let Some(g) = self.group.as_mut() else { return };
        if let Some((task, _)) = g.join.take() {
            task.abort();
        }
        let (state, lost) = {
            let s = g.ctx.shared.lock();
            (s.state, s.lost)
        };
        let owned = sorted(self.assignment.partitions());
        if state == MemberState::Stable && !lost {
            self.commit_before_revoke(None).await;
            if !owned.is_empty() {
                self.listener_call("revoked", &owned);
            }
        } else if !owned.is_empty() {
            self.listener_call("lost", &owned);
        }
        self.assignment.clear();
        self.fetcher.retain_assigned(&self.assignment);
        if let Some(g) = &self.group {
            if let Err(e) = membership::leave_group(&g.ctx, reason).await {
                tracing::warn!(error = %e, "LeaveGroup failed");
            }
        }
    }

    fn maybe_auto_commit(&mut self) {
        if !self.config.enable_auto_commit
            || self.group.is_none()
            || Instant::now() < self.next_auto_commit
        {
            return;
        }
        self.next_auto_commit = Instant::now() + self.config.auto_commit_interval;
        let offsets = self.consumed_offsets(None);
        if offsets.is_empty() {
            return;
        }
        // Skipped while rebalancing, as in the Java client.
        if let (Ok(who), Some(c)) = (self.commit_identity(), self.committer.as_ref()) {
            drop(c.commit_async(offsets, who));
        }
    }

    async fn maybe_refresh_metadata(&mut self) {
        let age = self.last_metadata_refresh.elapsed();
        let due = self.metadata_refresh_forced
            || (self.fetcher.metadata_needed && age >= self.config.client.retry_backoff)
            || age >= self.config.client.metadata_max_age;
        if !due {
            return;
        }
        self.last_metadata_refresh = Instant::now();
        self.metadata_refresh_forced = false;
        self.fetcher.metadata_needed = false;
        let result = if matches!(self.subscription, Subscription::Pattern { .. }) {
            self.cluster.refresh_all_topics().await
        } else {
            self.cluster.refresh_metadata(&[]).await
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "metadata refresh failed");
            self.fetcher.metadata_needed = true;
            return;
        }
        let mut rejoin: Option<String> = None;
        if let Subscription::Pattern { regex, matched } = &mut self.subscription {
            let now: BTreeSet<String> = self
                .cluster
                .topics()
                .iter()
                .filter(|t| !t.internal && regex.is_match(&t.name))
                .map(|t| t.name.clone())
                .collect();
            if &now != matched {
                tracing::info!(topics = ?now, "pattern subscription matches a new set of topics");
                *matched = now;
                rejoin = Some("pattern subscription matched new topics".into());
            }
        }
        if let Some(counts) = self
            .group
            .as_ref()
            .and_then(|g| g.partition_counts.as_ref())
        {
            for (topic, n) in counts {
                let current = self
                    .cluster
                    .topic(topic)
                    .map_or(0, |t| t.partitions.len() as i32);
                if current != *n {
                    rejoin = Some(format!(
                        "topic {topic} now has {current} partitions (was {n})"
                    ));
                }
            }
        }
        if let (Some(reason), Some(g)) = (rejoin, &self.group) {
            if g.ctx.shared.state() != MemberState::Unjoined {
                g.ctx.shared.request_rejoin(reason);
            }
        }
    }

    /// Finishes a completed rebalance, or starts one when needed.
    async fn coordinate(&mut self) -> Result<()> {
        let Some(g) = self.group.as_mut() else {
            return Ok(());
        };
        if let Some((_, rx)) = g.join.as_mut() {
            match rx.try_recv() {
                Err(oneshot::error::TryRecvError::Empty) => return Ok(()),
                Err(oneshot::error::TryRecvError::Closed) => {
                    g.join = None;
                    g.ctx.shared.lock().state = MemberState::Unjoined;
                }
                Ok(result) => {
                    g.join = None;
                    match result {
                        Ok(outcome) => self.on_join_complete(outcome).await,
                        Err(e) => {
                            // Try again at the next poll (a fatal error
                            // is reported by every poll instead).
                            g.ctx.shared.lock().state = MemberState::Unjoined;
                            tracing::warn!(error = %e, "joining the group failed");
                            return Err(e);
                        }
                    }
                }
            }
        }
        let Some(g) = self.group.as_ref() else {
            return Ok(());
        };
        let (state, reason, lost) = {
            let s = g.ctx.shared.lock();
            (s.state, s.rejoin_reason.clone(), s.lost)
        };
        if state != MemberState::Unjoined && reason.is_none() {
            return Ok(());
        }
        self.on_join_prepare(lost).await;
        let topics: Vec<String> = self.subscription.topics().into_iter().collect();
        if !topics.is_empty() {
            if let Err(e) = self.cluster.ensure_topics(&topics).await {
                tracing::debug!(error = %e, "metadata for subscribed topics");
            }
        }
        let Some(g) = self.group.as_mut() else {
            return Ok(());
        };
        let (generation, member_id) = {
            let mut s = g.ctx.shared.lock();
            s.state = MemberState::Rebalancing;
            s.rejoin_reason = None;
            s.lost = false;
            (s.generation, s.member_id.clone())
        };
        let owned = match g.protocol {
            RebalanceProtocol::Cooperative => sorted(self.assignment.partitions()),
            RebalanceProtocol::Eager => Vec::new(),
        };
        let req = JoinRequest {
            topics,
            owned,
            generation,
            reason: reason.unwrap_or_else(|| {
                if member_id.is_empty() {
                    "joining the group".into()
                } else {
                    "rejoining the group".into()
                }
            }),
        };
        let (tx, rx) = oneshot::channel();
        let ctx = g.ctx.clone();
        let wake = self.wake.clone();
        let task = tokio::spawn(async move {
            let r = membership::join_and_sync(ctx, req).await;
            let _ = tx.send(r);
            wake.notify_one();
        });
        g.join = Some((task, rx));
        Ok(())
    }

    /// Before JoinGroup: eager members commit and give up everything;
    /// cooperative members commit and give up only partitions of topics
    /// they no longer subscribe to; a member that lost its generation
    /// reports its partitions lost.
    async fn on_join_prepare(&mut self, lost: bool) {
        let Some(protocol) = self.group.as_ref().map(|g| g.protocol) else {
            return;
        };
        let owned = sorted(self.assignment.partitions());
        if lost {
            if !owned.is_empty() {
                self.listener_call("lost", &owned);
            }
            self.assignment.clear();
        } else {
            match protocol {
                RebalanceProtocol::Eager => {
                    self.commit_before_revoke(None).await;
                    if !owned.is_empty() {
                        self.listener_call("revoked", &owned);
                    }
                    self.assignment.clear();
                }
                RebalanceProtocol::Cooperative => {
                    self.commit_before_revoke(None).await;
                    let topics = self.subscription.topics();
                    let gone: Vec<TopicPartition> = owned
                        .into_iter()
                        .filter(|tp| !topics.contains(&tp.topic))
                        .collect();
                    if !gone.is_empty() {
                        self.listener_call("revoked", &gone);
                        self.assignment.remove(&gone);
                    }
                }
            }
        }
        self.fetcher.retain_assigned(&self.assignment);
    }

    async fn on_join_complete(&mut self, outcome: JoinOutcome) {
        let Some(g) = self.group.as_mut() else { return };
        tracing::debug!(generation = outcome.generation, member = %outcome.member_id, protocol = %outcome.protocol, "rebalance complete");
        g.partition_counts = if outcome.leader {
            outcome.partition_counts.clone()
        } else {
            None
        };
        let protocol = g.protocol;
        let topics = self.subscription.topics();
        let (valid, invalid): (Vec<TopicPartition>, Vec<TopicPartition>) = outcome
            .assignment
            .into_iter()
            .partition(|tp| topics.contains(&tp.topic));
        if !invalid.is_empty() {
            tracing::warn!(partitions = ?invalid, "assignment includes topics this member does not subscribe to; rejoining");
            self.metadata_refresh_forced = true;
            if let Some(g) = &self.group {
                g.ctx
                    .shared
                    .request_rejoin("assignment includes unsubscribed topics");
            }
        }
        let new: BTreeSet<TopicPartition> = valid.into_iter().collect();
        match protocol {
            RebalanceProtocol::Cooperative => {
                let owned = self.assignment.partitions();
                let revoked: Vec<TopicPartition> = owned.difference(&new).cloned().collect();
                let added: Vec<TopicPartition> = new.difference(&owned).cloned().collect();
                if !revoked.is_empty() {
                    self.commit_before_revoke(Some(&revoked)).await;
                    self.listener_call("revoked", &revoked);
                    self.assignment.remove(&revoked);
                    self.fetcher.retain_assigned(&self.assignment);
                    if let Some(g) = &self.group {
                        g.ctx
                            .shared
                            .request_rejoin("revoked partitions must be reassigned");
                    }
                }
                self.assignment.add(added.clone());
                self.listener_call("assigned", &added);
            }
            RebalanceProtocol::Eager => {
                self.assignment.set(new.iter().cloned());
                self.fetcher.retain_assigned(&self.assignment);
                let all: Vec<TopicPartition> = new.into_iter().collect();
                self.listener_call("assigned", &all);
            }
        }
        let assigned_topics: Vec<String> = self.assignment.topics().into_iter().collect();
        if !assigned_topics.is_empty() {
            if let Err(e) = self.cluster.ensure_topics(&assigned_topics).await {
                tracing::debug!(error = %e, "metadata for assigned topics");
            }
        }
    }

    fn reset_default(&mut self, tp: &TopicPartition) -> Result<()> {
        match self.config.auto_offset_reset {
            OffsetReset::Earliest => {
                self.assignment.request_reset(tp, ResetTo::Earliest);
            }
            OffsetReset::Latest => {
                self.assignment.request_reset(tp, ResetTo::Latest);
            }
            OffsetReset::None => {
                return Err(Error::kafka_with(
                    ErrorCode::OffsetOutOfRange,
                    Some(format!(
                        "no committed offset for {tp} and auto.offset.reset is none"
                    )),
                ));
            }
        }
        Ok(())
    }

    /// Gives a position to every assigned partition lacking one: the
    /// committed offset, else `auto.offset.reset`; then runs pending
    /// resets with ListOffsets.
    async fn update_positions(&mut self, deadline: Instant) -> Result<()> {
        // Offset lookups may outlive a short poll timeout, but their
        // retries stop with it.
        let budget = deadline
            .saturating_duration_since(Instant::now())
            .max(self.config.client.retry_backoff.saturating_mul(2))
            .min(self.config.client.request_timeout);
        let unknown: Vec<String> = self
            .assignment
            .topics()
            .into_iter()
            .filter(|t| self.cluster.topic(t).is_none())
            .collect();
        if !unknown.is_empty() {
            if let Err(e) = self.cluster.ensure_topics(&unknown).await {
                tracing::debug!(error = %e, "metadata for assigned topics");
            }
        }
        let need = self.assignment.needing_committed();
        if !need.is_empty() {
            match &self.group {
                Some(g) => {
                    let group_id = g.ctx.group_id.clone();
                    match offsets::fetch_committed(
                        &self.cluster,
                        &group_id,
                        &need,
                        budget,
                        self.config.client.retry_backoff,
                    )
                    .await
                    {
                        Ok(found) => {
                            for tp in &need {
                                match found.get(tp) {
                                    Some(Some(om)) => {
                                        tracing::debug!(%tp, offset = om.offset, "starting from the committed offset");
                                        if self.assignment.get(tp).is_some_and(|s| {
                                            s.position.is_none() && s.reset.is_none()
                                        }) {
                                            self.assignment.set_position(
                                                tp,
                                                Position {
                                                    offset: om.offset,
                                                    leader_epoch: om.leader_epoch,
                                                },
                                            );
                                        }
                                    }
                                    _ => self.reset_default(tp)?,
                                }
                            }
                        }
                        Err(e)
                            if e.is_retriable()
                                || matches!(
                                    e.code(),
                                    Some(
                                        ErrorCode::CoordinatorLoadInProgress
                                            | ErrorCode::CoordinatorNotAvailable
                                            | ErrorCode::NotCoordinator
                                    )
                                ) =>
                        {
                            tracing::debug!(error = %e, "fetching committed offsets; will retry");
                        }
                        Err(e) => return Err(e),
                    }
                }
                None => {
                    for tp in &need {
                        self.reset_default(tp)?;
                    }
                }
            }
        }
        let resets = self.assignment.pending_resets();
        if !resets.is_empty() {
            let query: Vec<(TopicPartition, i64)> = resets
                .iter()
                .map(|(tp, to)| (tp.clone(), to.timestamp()))
                .collect();
            let (found, metadata_needed) =
                fetcher::list_offsets(&self.cluster, &query, self.config.read_committed).await?;
            if metadata_needed {
                self.fetcher.metadata_needed = true;
            }
            for (tp, to) in resets {
                if let Some(pos) = found.get(&tp) {
                    tracing::debug!(%tp, offset = pos.offset, ?to, "reset position");
                    self.assignment.finish_reset(&tp, to, *pos);
                }
            }
        }
        Ok(())
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if !self.closed && self.subscription.is_group_managed() {
            tracing::debug!(
                "consumer dropped without close(): the group notices after session.timeout.ms"
            );
        }
    }
}

/// Splits a poll's records into per-partition batches, keeping each
/// partition's order and the partitions' first-seen order.
fn group_by_partition(records: Vec<ConsumerRecord>) -> Vec<PartitionBatch> {
    let mut out: Vec<PartitionBatch> = Vec::new();
    let mut index: HashMap<(String, i32), usize> = HashMap::new();
    for r in records {
        let key = (r.topic.clone(), r.partition);
        let i = *index.entry(key).or_insert_with(|| {
            out.push(PartitionBatch {
                topic: r.topic.clone(),
                partition: r.partition,
                records: Vec::new(),
            });
            out.len() - 1
        });
        if let Some(b) = out.get_mut(i) {
            b.records.push(r);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: &str, p: i32, o: i64) -> ConsumerRecord {
        ConsumerRecord {
            topic: t.into(),
            partition: p,
            offset: o,
            timestamp: 0,
            timestamp_type: TimestampType::CreateTime,
            key: None,
            value: None,
            headers: vec![],
            leader_epoch: None,
        }
    }

    #[test]
    fn batches_keep_partition_order() {
        let b = group_by_partition(vec![
            rec("a", 0, 1),
            rec("a", 0, 2),
            rec("b", 1, 7),
            rec("a", 0, 3),
        ]);
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[0].records.iter().map(|r| r.offset).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!((b[1].topic.as_str(), b[1].partition), ("b", 1));
    }

    #[test]
    fn topic_partition_conversions() {
        let a: TopicPartition = ("t", 3).into();
        let b: TopicPartition = (String::from("t"), 3).into();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), "t-3");
    }
}
