//! The classic consumer-group coordinator, as Apache Kafka's GroupCoordinator
//! runs it: group membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! static members, session and rebalance timeouts), committed offsets
//! (OffsetCommit, OffsetFetch, OffsetDelete, retention) and the admin views
//! (DescribeGroups, ListGroups, DeleteGroups). Everything it must remember
//! goes through a [`GroupLog`] in Kafka's own `__consumer_offsets` record
//! formats and comes back through [`GroupCoordinator::load`].
//!
//! One coordinator lives on one shard and owns that shard's groups outright:
//! it is single-threaded state (`Rc`, `RefCell`, `Cell`); no borrow is ever
//! held across an `.await`. Requests that must wait (a JoinGroup until the
//! join phase ends, a follower's SyncGroup until the leader's assignment)
//! park a oneshot sender in the member, as Kafka parks a callback.
//!
//! Layout:
//! - `state`: the group state machine, members, offsets, protocol voting.
//! - `membership`: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, timer checks.
//! - `offsets`: OffsetCommit, OffsetFetch, OffsetDelete, retention, DeleteGroups.
//! - `admin`: DescribeGroups and ListGroups views.
//! - `txn_offsets`: TxnOffsetCommit and the markers that settle it.
//! - `records`: the `__consumer_offsets` key/value codecs, and `load`.
//! - `timers`: the one timer task per coordinator.
//! - `error`: [`GroupError`] and its Kafka error codes.

mod admin;
mod error;
mod load;
mod membership;
mod offsets;
pub(crate) mod records;
mod state;
mod timers;
mod txn_offsets;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

pub use error::GroupError;
pub use offsets::{OffsetFetchGroupResult, OffsetFetchPartitionResult, OffsetFetchTopicResult};

use state::Group;

/// Coordinator settings, named after Kafka's broker properties.
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (6000).
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000): how long a rebalance of an
    /// empty group waits for more members; 0 disables the delay.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.max.size` (i32::MAX).
    pub group_max_size: i32,
    /// `offsets.retention.minutes` (10080).
    pub offsets_retention_minutes: i32,
    /// This broker's node id.
    pub broker_node_id: i32,
    /// `offset.metadata.max.bytes` (4096).
    pub offset_metadata_max_bytes: i32,
    /// `offsets.retention.check.interval.ms` (600000).
    pub offsets_retention_check_interval_ms: i64,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            group_min_session_timeout_ms: 6000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3000,
            group_max_size: i32::MAX,
            offsets_retention_minutes: 10080,
            broker_node_id: 0,
            offset_metadata_max_bytes: 4096,
            offsets_retention_check_interval_ms: 600_000,
        }
    }
}

/// Durable store for the coordinator's records (the broker backs it with its
/// `__consumer_offsets` partition log, fsync'ed before the future resolves).
/// Appends must become durable in call order.
pub trait GroupLog {
    /// Appends (key, value) records; a `None` value is a tombstone. Resolves
    /// with a Kafka error code on failure.
    fn append(
        &self,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>>;

    /// Appends records as one transactional batch of `producer_id` (a
    /// TxnOffsetCommit): they take effect at that producer's commit marker.
    fn append_transactional(
        &self,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>>;
}

/// How long a member that joined during a rebalance may wait in JoinGroup
/// before it is dropped (Kafka's NewMemberJoinTimeoutMs).
const NEW_MEMBER_JOIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The group coordinator of one shard.
pub struct GroupCoordinator {
    config: GroupConfig,
    log: Rc<dyn GroupLog>,
    me: Weak<GroupCoordinator>,
    groups: RefCell<HashMap<String, Group>>,
    next_incarnation: Cell<u64>,
    rebalances: Cell<u64>,
    timers: timers::TimerQueue,
    timer_task: RefCell<Option<compio::runtime::JoinHandle<()>>>,
    next_retention_check: Cell<Instant>,
    shut_down: Cell<bool>,
}

impl GroupCoordinator {
    /// A coordinator with no groups. Its timer task starts on the first call
    /// made inside a compio runtime.
    pub fn new(config: GroupConfig, log: Rc<dyn GroupLog>) -> Rc<Self> {
        let interval =
            Duration::from_millis(config.offsets_retention_check_interval_ms.max(1) as u64);
        Rc::new_cyclic(|me| GroupCoordinator {
            config,
            log,
            me: me.clone(),
            groups: RefCell::new(HashMap::new()),
            next_incarnation: Cell::new(1),
            rebalances: Cell::new(0),
            timers: timers::TimerQueue::default(),
            timer_task: RefCell::new(None),
            next_retention_check: Cell::new(Instant::now() + interval),
            shut_down: Cell::new(false),
        })
    }

    /// Number of groups held (any state).
    pub fn group_count(&self) -> usize {
        self.groups.borrow().len()
    }

    /// The committed offsets of the groups MSK reports consumer lag for:
    /// Stable or Empty (no lag while a group rebalances), and not with a
    /// colon in the group id (MSK leaves those out too).
    pub fn committed_offsets_for_lag(&self) -> Vec<crate::metrics::CommittedOffset> {
        let groups = self.groups.borrow();
        let mut out = Vec::new();
        for g in groups.values() {
            if !matches!(
                g.state(),
                state::GroupState::Stable | state::GroupState::Empty
            ) || g.id.contains(':')
            {
                continue;
            }
            for (topic, partitions) in &g.offsets {
                for (p, c) in partitions.iter().filter(|(_, c)| c.offset >= 0) {
                    out.push(crate::metrics::CommittedOffset {
                        group: g.id.clone(),
                        topic: topic.clone(),
                        partition: *p,
                        offset: c.offset,
                    });
                }
            }
        }
        out
    }

    /// Rebalances started since creation.
    pub fn rebalance_count(&self) -> u64 {
        self.rebalances.get()
    }

    /// Called by the broker on shutdown: stops the timer task and answers
    /// every waiting JoinGroup/SyncGroup with NOT_COORDINATOR, as Kafka does
    /// when it unloads a group. Later calls answer NOT_COORDINATOR.
    pub fn shutdown(&self) {
        self.shut_down.set(true);
        drop(self.timer_task.borrow_mut().take());
        self.timers.clear();
        let not_coordinator = error::code(GroupError::NotCoordinator);
        for group in self.groups.borrow_mut().values_mut() {
            for m in group.members.values_mut() {
                if let Some(tx) = m.awaiting_join.take() {
                    let _ = tx.send(state::JoinOutcome::error(&m.id, not_coordinator));
                }
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(state::SyncOutcome::error(not_coordinator));
                }
            }
        }
    }

    /// Drops the groups `leaving` selects (their `__consumer_offsets`
    /// partition moved to another broker): waiting members are told
    /// NOT_COORDINATOR and find the new coordinator. Returns how many.
    pub fn unload(&self, leaving: impl Fn(&str) -> bool) -> usize {
        let not_coordinator = error::code(GroupError::NotCoordinator);
        let mut groups = self.groups.borrow_mut();
        let names: Vec<String> = groups.keys().filter(|g| leaving(g)).cloned().collect();
        for name in &names {
            if let Some(mut group) = groups.remove(name) {
                for m in group.members.values_mut() {
                    if let Some(tx) = m.awaiting_join.take() {
                        let _ = tx.send(state::JoinOutcome::error(&m.id, not_coordinator));
                    }
                    if let Some(tx) = m.awaiting_sync.take() {
                        let _ = tx.send(state::SyncOutcome::error(not_coordinator));
                    }
                }
            }
        }
        names.len()
    }

    fn is_shut_down(&self) -> bool {
        self.shut_down.get()
    }

    fn new_incarnation(&self) -> u64 {
        let n = self.next_incarnation.get();
        self.next_incarnation.set(n + 1);
        n
    }

    /// Starts the timer task if it is not running and we are on a runtime.
    fn ensure_timer_task(&self) {
        if self.is_shut_down() || self.timer_task.borrow().is_some() {
            return;
        }
        let me = self.me.clone();
        if let Ok(handle) =
            compio::runtime::Runtime::try_with_current(|rt| rt.spawn(timers::run(me)))
        {
            *self.timer_task.borrow_mut() = Some(handle);
        }
    }

    /// Makes sure the group is checked no later than `at`.
    fn arm(&self, group: &mut Group, at: Instant) {
        if group.scheduled.is_none_or(|s| at < s) {
            group.scheduled = Some(at);
            self.timers.push(at, &group.id);
        }
    }

    /// Appends records in the background (for writes nobody waits on, e.g.
    /// the empty-group record after a rebalance, or expired offsets).
    fn append_detached(&self, records: Vec<(Bytes, Option<Bytes>)>, what: &'static str) {
        if records.is_empty() {
            return;
        }
        let fut = self.log.append(records);
        let task = async move {
            if let Err(code) = fut.await {
                tracing::warn!(
                    error = %code,
                    "failed to write {what} to the offsets log"
                );
            }
        };
        if compio::runtime::Runtime::try_with_current(|rt| rt.spawn(task).detach()).is_err() {
            tracing::warn!("no runtime to write {what} to the offsets log");
        }
    }

    /// Runs the offset-retention sweep if it is due; returns when the next one is.
    fn run_retention_if_due(&self, now: Instant) -> Instant {
        let next = self.next_retention_check.get();
        if now < next {
            return next;
        }
        self.expire_offsets(now_ms());
        let interval =
            Duration::from_millis(self.config.offsets_retention_check_interval_ms.max(1) as u64);
        let next = now + interval;
        self.next_retention_check.set(next);
        next
    }
}
