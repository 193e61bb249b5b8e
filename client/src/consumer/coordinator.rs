//! The consumer's coordination loop: what one `poll` round does on the
//! application's task, in order (metadata refresh, group coordination,
//! auto-commit, position lookups, fetch completion, the next fetches), and
//! the group side of it: starting membership ([`Group::start`]), finishing
//! a rebalance the join task completed or starting one, the rebalance
//! callbacks with the commits before a revocation, and leaving. Member state
//! changes go through `membership::Transition`; the per-partition
//! positions it fills in are `positions::Assignment`'s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{oneshot, Notify};

use super::assignor::{self, Assignor, RebalanceProtocol};
use super::fetcher;
use super::membership::{
    self, GroupCtx, GroupShared, JoinOutcome, JoinRequest, MemberState, Transition,
};
use super::offsets::{self, Committer};
use super::positions::{Position, ResetTo};
use super::subscription::Subscription;
use super::{sorted, Consumer, ConsumerRecord, TopicPartition};
use crate::config::{ConsumerConfig, OffsetReset};
use crate::error::{Error, ErrorCode, Result};
use crate::net::Cluster;

/// Group membership pieces, present when `group.id` is set.
pub(super) struct Group {
    pub(super) ctx: Arc<GroupCtx>,
    pub(super) heartbeat: tokio::task::JoinHandle<()>,
    pub(super) join: Option<(
        tokio::task::JoinHandle<()>,
        oneshot::Receiver<Result<JoinOutcome>>,
    )>,
    pub(super) protocol: RebalanceProtocol,
    /// Leader only: partition counts the last assignment was made with.
    pub(super) partition_counts: Option<BTreeMap<String, i32>>,
}

impl Drop for Group {
    fn drop(&mut self) {
        self.heartbeat.abort();
        if let Some((task, _)) = self.join.take() {
            task.abort();
        }
    }
}

impl Group {
    /// Starts membership of `group_id`: the heartbeat task and the
    /// committer (the join waits for the first `poll`).
    pub(super) fn start(
        cluster: &Arc<Cluster>,
        config: &ConsumerConfig,
        group_id: &str,
        wake: Arc<Notify>,
    ) -> (Group, Committer) {
        let timeout = config.client.request_timeout;
        let backoff = config.client.retry_backoff;
        let shared = Arc::new(GroupShared::new(wake));
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
            group_id: group_id.to_string(),
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
            group_id.to_string(),
            Some(shared),
            timeout,
            backoff,
        );
        (
            Group {
                ctx,
                heartbeat,
                join: None,
                protocol,
                partition_counts: None,
            },
            committer,
        )
    }
}

impl Consumer {
    /// One round of the coordination loop; returns the records ready for
    /// the application (possibly none). Sends the next fetches before it
    /// returns, so they travel while the application works.
    pub(super) async fn poll_round(
        &mut self,
        deadline: Instant,
        max_records: usize,
    ) -> Result<Vec<ConsumerRecord>> {
        self.maybe_refresh_metadata().await;
        if self.subscription.is_group_managed() {
            self.coordinate().await?;
        }
        self.maybe_auto_commit();
        self.update_positions(deadline).await?;
        self.fetcher.process_completed(&mut self.assignment)?;
        let records = self.fetcher.drain(max_records, &mut self.assignment);
        self.fetcher.send_fetches(&self.assignment);
        Ok(records)
    }

    /// Sleeps until `until` (a retry's backoff), waking early only for a
    /// shutdown.
    pub(super) async fn back_off_until(&self, until: Instant) {
        while Instant::now() < until && !self.shutdown.is_shutdown() {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }

    /// Commits before partitions go away; errors are logged (as Java does).
    pub(super) async fn commit_before_revoke(&mut self, parts: Option<&[TopicPartition]>) {
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

    /// The orderly way out of the group: commit, revoke (or lost)
    /// callback, LeaveGroup.
    pub(super) async fn leave(&mut self, reason: &str) {
        let Some(g) = self.group.as_mut() else { return };
        if let Some((task, _)) = g.join.take() {
            task.abort();
        }
        let (state, lost) = {
            let s = g.ctx.shared.lock();
            (s.state(), s.lost)
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
                    g.ctx.shared.lock().apply(Transition::JoinFailed);
                }
                Ok(result) => {
                    g.join = None;
                    match result {
                        Ok(outcome) => self.on_join_complete(outcome).await,
                        Err(e) => {
                            // Try again at the next poll (a fatal error
                            // is reported by every poll instead).
                            g.ctx.shared.lock().apply(Transition::JoinFailed);
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
            (s.state(), s.rejoin_reason.clone(), s.lost)
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
            s.apply(Transition::JoinStarted);
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
    pub(super) async fn update_positions(&mut self, deadline: Instant) -> Result<()> {
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
