//! The consumer, with the Java client's semantics: `subscribe` (topic names
//! or a pattern, group-managed) or `assign` (manual), `poll` returning at
//! most `max.poll.records` records, a [`Stream`] of records, sync and async
//! commits, `seek`, `pause`/`resume`, rebalance callbacks, and
//! [`Consumer::run_batches`], a handler loop that receives ordered
//! per-partition batches and commits each only after the handler succeeds
//! (what an AWS Lambda event source mapping does for Kafka).
//!
//! # Layout
//! - this file: the public API ([`Consumer`], records, callbacks).
//! - `coordinator`: the coordination loop one `poll` round runs (metadata,
//!   rebalances, auto-commit, position lookups, fetches) and the group's
//!   side of it (join, callbacks, leave).
//! - [`assignor`]: range, roundrobin and cooperative-sticky assignors.
//! - `membership`: join / sync / heartbeat / leave, the member state
//!   machine (`MemberState`, changed only through `Transition`).
//! - `fetcher`: pipelined Fetch per leader, record decoding, ListOffsets.
//! - `fetch_session`: the incremental fetch session (KIP-227) with each
//!   broker: what a fetch sends and forgets, starting over on errors.
//! - `offsets`: OffsetCommit / OffsetFetch and the ordered committer.
//! - `protocol`: the embedded consumer protocol (subscription, assignment).
//! - `positions`: assigned partitions, positions, resets, pauses.
//! - `subscription`: topic names, a pattern, or a manual assignment.
//!
//! # Threads of control
//! Everything that changes what the application sees (assignment,
//! positions, callbacks) happens inside `poll` on the caller's task, as in
//! the Java client. Background tasks only talk to brokers: one heartbeat
//! task (so a slow handler never stops heartbeats), the join task of a
//! rebalance in progress, one fetch task per broker with a fetch in flight,
//! and the committer. Nothing blocks a runtime thread.

pub mod assignor;
mod coordinator;
mod fetch_session;
mod fetcher;
mod membership;
mod offsets;
mod positions;
mod protocol;
mod subscription;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::Stream;
use regex::Regex;
use tokio::sync::Notify;

pub use assignor::{
    Assignor, CooperativeStickyAssignor, GroupAssignment, MemberSubscription, RangeAssignor,
    RebalanceProtocol, RoundRobinAssignor,
};
pub use offsets::OffsetAndMetadata;

use crate::backoff::{ExponentialBackoff, RetryStreak};
use crate::config::ConsumerConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::net::Cluster;
use coordinator::Group;
use fetcher::Fetcher;
use membership::{GenerationInfo, MemberState};
use offsets::Committer;
use positions::{Assignment, Position, ResetTo};
use subscription::Subscription;

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

/// A consumer's place in its group, for a transactional producer's
/// `send_offsets_to_transaction` (Java's `ConsumerGroupMetadata`): with the
/// generation, member id and instance id the group coordinator refuses
/// offsets from a member that was fenced by a rebalance (KIP-447).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConsumerGroupMetadata {
    pub group_id: String,
    /// -1 outside a generation.
    pub generation_id: i32,
    /// Empty before the first join.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl ConsumerGroupMetadata {
    /// Only a group id (generation -1, no member id): the coordinator then
    /// checks no membership, as for clients that predate KIP-447.
    pub fn new(group_id: impl Into<String>) -> Self {
        ConsumerGroupMetadata {
            group_id: group_id.into(),
            generation_id: -1,
            member_id: String::new(),
            group_instance_id: None,
        }
    }
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
    /// Consecutive `poll` rounds failing with retriable errors, waited out
    /// with `retry.backoff.ms`..`retry.backoff.max.ms` for up to
    /// `request.timeout.ms` before the error reaches the caller.
    poll_retry: RetryStreak,
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
        let (group, committer) = match &config.group_id {
            Some(group_id) => {
                let (group, committer) = Group::start(&cluster, &config, group_id, wake.clone());
                (Some(group), Some(committer))
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
            poll_retry: RetryStreak::new(
                ExponentialBackoff::new(
                    config.client.retry_backoff,
                    config.client.retry_backoff_max,
                ),
                config.client.request_timeout,
            ),
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

    /// The group membership (group id, generation, member id, instance id)
    /// to pass to a transactional producer's `send_offsets_to_transaction`;
    /// `None` without a `group.id`. The generation is the current one,
    /// even during a rebalance (the coordinator then refuses stale offsets).
    pub fn group_metadata(&self) -> Option<ConsumerGroupMetadata> {
        let g = self.group.as_ref()?;
        let inner = g.ctx.shared.lock();
        Some(ConsumerGroupMetadata {
            group_id: g.ctx.group_id.clone(),
            generation_id: inner.generation,
            member_id: inner.member_id.clone(),
            group_instance_id: g.ctx.instance_id.clone(),
        })
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

    /// Fetches records: at most `max.poll.records`, waiting up to `timeout`
    /// for some to arrive. Also where rebalances, offset lookups and auto
    /// commits happen. Retriable errors (a coordinator or leader moving, a
    /// broken connection, a timeout) are retried with exponential backoff
    /// (`retry.backoff.ms` growing to `retry.backoff.max.ms`, with jitter,
    /// as the Java client does) within the timeout, and across polls until
    /// they have lasted `request.timeout.ms`; only other errors, or one
    /// that outlasts that budget, are returned.
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
            let records = match self.poll_round(deadline, max_records).await {
                Ok(records) => {
                    self.poll_retry.reset();
                    records
                }
                Err(e) => {
                    let retry_at = self.poll_retry.on_error(e, Instant::now())?;
                    if Instant::now() >= deadline {
                        return Ok(Vec::new());
                    }
                    self.back_off_until(retry_at.min(deadline)).await;
                    continue;
                }
            };
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
    /// carry on. Needs a `group.id` (the offsets are committed to it).
    pub async fn run_batches<F, Fut, E>(&mut self, handler: F) -> Result<()>
    where
        F: FnMut(PartitionBatch) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>>,
        E: std::fmt::Display,
    {
        self.run_batches_until(|| false, handler).await
    }

    /// [`run_batches`](Self::run_batches) that also ends once `stop`
    /// returns true, leaving the consumer usable (a [`ShutdownHandle`]
    /// ends it for good). `stop` is asked between polls (at least every
    /// 500 ms) and before each batch; batches of the last poll that were
    /// not handled, and a batch whose handler failed, are rewound so the
    /// next poll (or the group's next owner) gets them again. A failed
    /// batch is retried only while not stopping.
    pub async fn run_batches_until<S, F, Fut, E>(
        &mut self,
        mut stop: S,
        mut handler: F,
    ) -> Result<()>
    where
        S: FnMut() -> bool,
        F: FnMut(PartitionBatch) -> Fut,
        Fut: Future<Output = std::result::Result<(), E>>,
        E: std::fmt::Display,
    {
        if self.closed {
            return Err(Error::Closed);
        }
        self.require_group("run_batches")?;
        // Partition -> (consecutive failures, resume time while backing off).
        let mut retries: HashMap<TopicPartition, (u32, Option<Instant>)> = HashMap::new();
        let base = self
            .config
            .client
            .retry_backoff
            .max(Duration::from_millis(1));
        let cap = base.max(Duration::from_secs(1));
        let result = loop {
            if self.shutdown.is_shutdown() || self.closed || stop() {
                break Ok(());
            }
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
            let records = match self.poll(wait).await {
                Ok(r) => r,
                Err(e) => break Err(e),
            };
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
            let mut stopping = false;
            for batch in group_by_partition(records) {
                let tp = TopicPartition::new(batch.topic.clone(), batch.partition);
                let (Some(first), Some(last)) = (batch.records.first(), batch.records.last())
                else {
                    continue;
                };
                let (first, next, epoch) = (first.offset, last.offset + 1, last.leader_epoch);
                stopping = stopping || self.shutdown.is_shutdown() || stop();
                if stopping {
                    // Not handed out: the position goes back to the batch.
                    if self.assignment.contains(&tp) {
                        self.seek(&tp, first)?;
                    }
                    continue;
                }
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
                        if self.assignment.contains(&tp) {
                            self.seek(&tp, first)?;
                        }
                        stopping = self.shutdown.is_shutdown() || stop();
                        if stopping {
                            tracing::debug!(%tp, offset = first, error = %e, "batch handler failed; stopping without committing the batch");
                            continue;
                        }
                        let entry = retries.entry(tp.clone()).or_insert((0, None));
                        entry.0 = entry.0.saturating_add(1);
                        let delay = base
                            .saturating_mul(1u32 << entry.0.saturating_sub(1).min(16))
                            .min(cap);
                        tracing::warn!(%tp, offset = first, attempt = entry.0, ?delay, error = %e, "batch handler failed; retrying the batch");
                        entry.1 = Some(Instant::now() + delay);
                        if self.assignment.contains(&tp) {
                            let _ = self.assignment.set_paused(&tp, true);
                        }
                    }
                }
            }
        };
        for tp in retries.keys() {
            let _ = self.assignment.set_paused(tp, false);
        }
        result
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
        self.fetcher.close_sessions().await;
        self.closed = true;
        self.shutdown.shutdown();
        self.assignment.clear();
        self.group = None;
        self.committer = None;
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
