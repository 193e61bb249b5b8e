//! One partition as the replica layer sees it (Kafka's `Partition`): its log
//! plus its role. Handlers append and read through it, so a leadership
//! change is one call here (`become_leader`, `become_follower`) and no
//! handler changes. On a leader it owns the high watermark (the ISR's
//! minimum log end, see `leader`), records follower fetches, holds acks=all
//! produces until the high watermark passes them, and proposes ISR changes
//! through the [`IsrChanger`](super::IsrChanger).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

/// How long a leader waits after a refused ISR change before proposing
/// again.
const ISR_RETRY_BACKOFF_MS: i64 = 1_000;

use bytes::Bytes;
use futures::FutureExt;
use sluice_protocol::batch::BatchHeader;
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use super::isr::{IsrProposal, LeaderAndIsr};
use super::leader::LeaderState;
use super::ReplicaContext;
use crate::log::append::AppendResult;
use crate::log::read::{Isolation, ReadResult};
use crate::log::txn_marker::EndTxnMarker;
use crate::log::PartitionLog;

/// A partition's role on this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Leader(LeaderState),
    /// Replicating from `leader` (the replica fetcher appends to the log).
    Follower {
        leader: i32,
        leader_epoch: i32,
    },
}

/// The role a partition should take, as the metadata image says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignment {
    Leader(LeaderAndIsr),
    Follower { leader: i32, leader_epoch: i32 },
}

/// Who is reading: a consumer (up to the high watermark) or a follower
/// broker by replica id (up to the log end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Consumer,
    Follower(i32),
}

impl Reader {
    /// From a Fetch or ListOffsets replica id: >= 0 is a broker.
    pub fn from_replica_id(replica_id: i32) -> Reader {
        if replica_id >= 0 {
            Reader::Follower(replica_id)
        } else {
            Reader::Consumer
        }
    }
}

pub struct Partition {
    pub log: Rc<PartitionLog>,
    ctx: Rc<ReplicaContext>,
    role: RefCell<Role>,
}

impl Partition {
    /// Wraps an open log in the given role and takes over its high
    /// watermark (the log calls back here when its log end moves).
    pub fn new(log: Rc<PartitionLog>, ctx: Rc<ReplicaContext>, assignment: Assignment) -> Rc<Self> {
        let role = match &assignment {
            Assignment::Leader(spec) => Role::Leader(LeaderState::new(
                ctx.local_id,
                spec,
                log.log_end_offset(),
                ctx.now_ms(),
            )),
            Assignment::Follower {
                leader,
                leader_epoch,
            } => Role::Follower {
                leader: *leader,
                leader_epoch: *leader_epoch,
            },
        };
        let epoch = match &role {
            Role::Leader(s) => s.leader_epoch,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        };
        log.state.borrow_mut().leader_epoch = epoch;
        let p = Rc::new(Partition {
            log,
            ctx,
            role: RefCell::new(role),
        });
        let weak = Rc::downgrade(&p);
        p.log.set_log_end_listener(Rc::new(move || {
            if let Some(p) = weak.upgrade() {
                p.update_high_watermark();
            }
        }));
        p.update_high_watermark();
        p
    }

    pub fn topic_id(&self) -> Uuid {
        self.log.topic_id
    }

    pub fn partition(&self) -> i32 {
        self.log.partition
    }

    /// A copy of the current role.
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    pub fn is_leader(&self) -> bool {
        matches!(*self.role.borrow(), Role::Leader(_))
    }

    pub fn leader_epoch(&self) -> i32 {
        match &*self.role.borrow() {
            Role::Leader(s) => s.leader_epoch,
            Role::Follower { leader_epoch, .. } => *leader_epoch,
        }
    }

    /// The committed ISR while leader.
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &*self.role.borrow() {
            Role::Leader(s) => Some(s.isr.clone()),
            Role::Follower { .. } => None,
        }
    }

    pub fn high_watermark(&self) -> i64 {
        self.log.high_watermark()
    }

    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// Becomes (or stays) leader with the given state. The same leader epoch
    /// updates the ISR and replicas in place (an ISR change came back); a new
    /// one starts the epoch afresh: follower positions unknown, the epoch's
    /// start offset this log end. An older epoch is refused
    /// (`FENCED_LEADER_EPOCH`).
    pub fn become_leader(&self, spec: LeaderAndIsr) -> Result<(), ErrorCode> {
        let now = self.ctx.now_ms();
        let log_end = self.log.log_end_offset();
        {
            let mut role = self.role.borrow_mut();
            match &mut *role {
                Role::Leader(s) if spec.leader_epoch == s.leader_epoch => {
                    update_leader(s, &spec, now)
                }
                Role::Leader(LeaderState { leader_epoch, .. })
                | Role::Follower { leader_epoch, .. }
                    if spec.leader_epoch < *leader_epoch =>
                {
                    return Err(ErrorCode::FencedLeaderEpoch);
                }
                _ => *role = Role::Leader(LeaderState::new(self.ctx.local_id, &spec, log_end, now)),
            }
        }
        // Batches appended from now on carry the new epoch, which starts at
        // this log end (Kafka's epoch start offset for diverging followers).
        {
            let mut st = self.log.state.borrow_mut();
            st.leader_epoch = spec.leader_epoch;
            if st.epochs.assign(spec.leader_epoch, log_end) {
                st.epochs.flush_or_warn();
            }
        }
        self.update_high_watermark();
        // Parked produces and fetches look at the new state.
        self.log.wake_parked();
        Ok(())
    }

    /// Becomes a follower of `leader`. Parked acks=all produces answer
    /// NOT_LEADER_OR_FOLLOWER; the replica fetcher takes over the log (and
    /// truncates it as the leader's epochs say). An older epoch is refused.
    pub fn become_follower(&self, leader: i32, leader_epoch: i32) -> Result<(), ErrorCode> {
        {
            let mut role = self.role.borrow_mut();
            let current = match &*role {
                Role::Leader(s) => s.leader_epoch,
                Role::Follower { leader_epoch, .. } => *leader_epoch,
            };
            if leader_epoch < current {
                return Err(ErrorCode::FencedLeaderEpoch);
            }
            *role = Role::Follower {
                leader,
                leader_epoch,
            };
        }
        self.log.state.borrow_mut().leader_epoch = leader_epoch;
        self.log.wake_parked();
        Ok(())
    }

    /// On a follower: the high watermark the leader sent (capped at the log
    /// end). For the replica fetcher.
    pub fn set_follower_high_watermark(&self, hw: i64) {
        if !self.is_leader() {
            self.log.set_high_watermark(hw);
        }
    }

    /// Kafka's check of a request's `current_leader_epoch` (-1: none).
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ErrorCode> {
        let epoch = self.leader_epoch();
        match current_leader_epoch {
            -1 => Ok(()),
            e if e < epoch => Err(ErrorCode::FencedLeaderEpoch),
            e if e > epoch => Err(ErrorCode::UnknownLeaderEpoch),
            _ => Ok(()),
        }
    }

    /// NOT_LEADER_OR_FOLLOWER unless leader.
    pub fn require_leader(&self) -> Result<(), ErrorCode> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(ErrorCode::NotLeaderOrFollower)
        }
    }

    /// Appends a produce's batches. acks=0 and acks=1 answer as the log does
    /// (after the leader's own durable append for acks=1); acks=-1 needs an
    /// ISR of at least `min.insync.replicas` before appending and then waits
    /// until the high watermark passes the batches or `deadline`.
    pub async fn append(
        &self,
        batches: Vec<(BatchHeader, Bytes)>,
        acks: i16,
        deadline: Instant,
    ) -> AppendResult {
        let min_isr = self.log.config.borrow().min_insync_replicas;
        let epoch = {
            let role = self.role.borrow();
            let Role::Leader(s) = &*role else {
                return AppendResult::error(ErrorCode::NotLeaderOrFollower);
            };
            if acks == -1 && (s.isr.len() as i64) < i64::from(min_isr) {
                return AppendResult::error(ErrorCode::NotEnoughReplicas);
            }
            s.leader_epoch
        };
        let records: i64 = batches
            .iter()
            .map(|(h, _)| i64::from(h.last_offset_delta) + 1)
            .sum();
        let result = self.log.append_as_leader(batches, acks != 0, epoch).await;
        if acks != -1 || result.error != ErrorCode::None {
            return result;
        }
        let last_offset = result.base_offset + records - 1;
        match self
            .wait_replicated(last_offset, epoch, min_isr, deadline)
            .await
        {
            Ok(()) => result,
            Err(code) => AppendResult {
                log_start_offset: result.log_start_offset,
                ..AppendResult::error(code)
            },
        }
    }

    /// Kafka's delayed produce: done when the high watermark passes
    /// `last_offset` (NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR fell below
    /// `min_isr` meanwhile, at once on a replicated partition, where the
    /// high watermark then holds), NOT_LEADER_OR_FOLLOWER if leadership moved,
    /// REQUEST_TIMED_OUT at `deadline`.
    async fn wait_replicated(
        &self,
        last_offset: i64,
        epoch: i32,
        min_isr: i32,
        deadline: Instant,
    ) -> Result<(), ErrorCode> {
        loop {
            {
                let role = self.role.borrow();
                match &*role {
                    Role::Leader(s) if s.leader_epoch == epoch && !self.log.closed.get() => {
                        if self.log.high_watermark() > last_offset {
                            return if (s.maximal_isr().len() as i64) < i64::from(min_isr) {
                                Err(ErrorCode::NotEnoughReplicasAfterAppend)
                            } else {
                                Ok(())
                            };
                        }
                        // The ISR fell below min.insync.replicas: the high
                        // watermark holds until it recovers, so answer now
                        // (retriable; an idempotent retry finds the batch).
                        if s.holds_high_watermark(min_isr) {
                            return Err(ErrorCode::NotEnoughReplicasAfterAppend);
                        }
                    }
                    _ => return Err(ErrorCode::NotLeaderOrFollower),
                }
            }
            if Instant::now() >= deadline {
                return Err(ErrorCode::RequestTimedOut);
            }
            self.log.wait_for_data(last_offset, deadline).await;
        }
    }

    /// Writes a transaction marker for `producer_id` (WriteTxnMarkers):
    /// leader only, with acks=all semantics (an ISR of at least
    /// `min.insync.replicas` before appending, then a wait until the high
    /// watermark passes the marker or `deadline`). The log checks it as
    /// Kafka does (INVALID_PRODUCER_EPOCH for an older producer epoch,
    /// TRANSACTION_COORDINATOR_FENCED for an older coordinator epoch); a
    /// producer with no open transaction here still gets its marker, as in
    /// Kafka. Returns the marker's offset.
    pub async fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        coordinator_epoch: i32,
        commit: bool,
        deadline: Instant,
    ) -> Result<i64, ErrorCode> {
        let marker = EndTxnMarker {
            commit,
            coordinator_epoch,
        };
        let bytes = marker.build_batch(producer_id, producer_epoch, self.ctx.now_ms());
        let header = BatchHeader::parse(&bytes).map_err(|_| ErrorCode::CorruptMessage)?;
        let result = self.append(vec![(header, bytes)], -1, deadline).await;
        match result.error {
            ErrorCode::None => Ok(result.base_offset),
            code => Err(code),
        }
    }

    /// Reads for a fetch: consumers below the high watermark (read_committed
    /// below the last stable offset, with the aborted transactions), followers
    /// below the log end. A follower's read also records its position, moves the
    /// high watermark and may propose adding it back to the ISR. A replica id
    /// that is no replica of this partition gets NOT_LEADER_OR_FOLLOWER, as
    /// does any read of a non-leader.
    pub fn read(
        self: &Rc<Self>,
        reader: Reader,
        offset: i64,
        max_bytes: usize,
        current_leader_epoch: i32,
        isolation: Isolation,
    ) -> Result<ReadResult, ErrorCode> {
        self.require_leader()?;
        self.check_leader_epoch(current_leader_epoch)?;
        let Reader::Follower(id) = reader else {
            return self
                .log
                .read(offset, max_bytes, isolation)
                .map_err(|e| e.kafka_code());
        };
        let is_follower = match &*self.role.borrow() {
            Role::Leader(s) => s.followers.contains_key(&id),
            Role::Follower { .. } => false,
        };
        if !is_follower {
            return Err(ErrorCode::NotLeaderOrFollower);
        }
        let log_end = self.log.log_end_offset();
        let mut result = self
            .log
            .read_for_follower(offset, max_bytes)
            .map_err(|e| e.kafka_code())?;
        let now = self.ctx.now_ms();
        if let Role::Leader(s) = &mut *self.role.borrow_mut() {
            s.record_fetch(id, offset, log_end, now);
        }
        self.update_high_watermark();
        self.maybe_expand_isr();
        result.high_watermark = self.log.high_watermark();
        Ok(result)
    }

    /// Parks a fetch: consumers until the high watermark (read_committed:
    /// the last stable offset) passes `offset`,
    /// followers until the log end passes it or the high watermark moves
    /// (so they learn it); the partition closing or changing role ends it
    /// too.
    pub async fn wait(&self, reader: Reader, offset: i64, deadline: Instant, isolation: Isolation) {
        match reader {
            Reader::Consumer if isolation == Isolation::ReadCommitted => {
                self.log.wait_for_stable(offset, deadline).await
            }
            Reader::Consumer => self.log.wait_for_data(offset, deadline).await,
            Reader::Follower(_) => {
                let hw = self.log.high_watermark();
                let end = self.log.wait_for_log_end(offset, deadline).boxed_local();
                let moved = self.log.wait_for_data(hw, deadline).boxed_local();
                futures::future::select(end, moved).await;
            }
        }
    }

    /// Recomputes a leader's high watermark from the replicas' positions; it
    /// only moves forward (the log wakes parked fetches and produces).
    pub fn update_high_watermark(&self) {
        let hw = match &*self.role.borrow() {
            // KIP-966: while a replicated partition's ISR is below
            // min.insync.replicas the high watermark stays where it is, so
            // every record below it is on each eligible leader replica the
            // controller may elect (acks=all is refused there already;
            // acks=1 records wait until the ISR recovers). A single replica
            // has no ELR to protect.
            Role::Leader(s)
                if s.holds_high_watermark(self.log.config.borrow().min_insync_replicas) =>
            {
                return
            }
            Role::Leader(s) => {
                let fenced = self.ctx.fenced_brokers.borrow();
                s.high_watermark_with(
                    self.log.log_end_offset(),
                    self.ctx.now_ms(),
                    self.ctx.config.replica_lag_time_max_ms,
                    |id| !fenced.contains(&id),
                )
            }
            Role::Follower { .. } => return,
        };
        self.log.set_high_watermark(hw);
    }

    /// The periodic ISR check: propose dropping members behind for
    /// `replica.lag.time.max.ms`, else adding followers that caught up.
    pub fn check_isr(self: &Rc<Self>) {
        let proposal = {
            let mut role = self.role.borrow_mut();
            let Role::Leader(s) = &mut *role else { return };
            if !self.may_propose(s) {
                return;
            }
            let new_isr = s
                .propose_shrink(
                    self.log.log_end_offset(),
                    self.ctx.now_ms(),
                    self.ctx.config.replica_lag_time_max_ms,
                )
                .or_else(|| s.propose_expand(self.log.high_watermark()));
            new_isr.map(|isr| self.proposal(s, isr))
        };
        if let Some(p) = proposal {
            self.send_isr_change(p);
        }
    }

    /// Whether a proposal may go now: not within the back-off after a
    /// refusal; also refreshes which brokers may not join.
    fn may_propose(&self, s: &mut LeaderState) -> bool {
        if self.ctx.now_ms() < s.retry_at_ms {
            return false;
        }
        let fenced = self.ctx.fenced_brokers.borrow();
        s.ineligible = s
            .followers
            .keys()
            .filter(|id| fenced.contains(id))
            .copied()
            .collect();
        true
    }

    fn maybe_expand_isr(self: &Rc<Self>) {
        let proposal = {
            let mut role = self.role.borrow_mut();
            let Role::Leader(s) = &mut *role else { return };
            if !self.may_propose(s) {
                return;
            }
            s.propose_expand(self.log.high_watermark())
                .map(|isr| self.proposal(s, isr))
        };
        if let Some(p) = proposal {
            self.send_isr_change(p);
        }
    }

    fn proposal(&self, s: &LeaderState, new_isr: Vec<i32>) -> IsrProposal {
        IsrProposal {
            topic_id: self.log.topic_id,
            partition: self.log.partition,
            leader_epoch: s.leader_epoch,
            partition_epoch: s.partition_epoch,
            new_isr,
        }
    }

    /// Sends a proposal (already marked pending) to the controller. Its
    /// answer is applied if it is newer than what we have; a refusal clears
    /// the pending mark so a later check can try again.
    fn send_isr_change(self: &Rc<Self>, proposal: IsrProposal) {
        tracing::info!(topic = %self.log.topic, partition = self.log.partition, isr = ?proposal.new_isr, "proposing ISR change");
        let changer = self.ctx.changer.borrow().clone();
        let this = self.clone();
        let epoch = proposal.leader_epoch;
        compio::runtime::spawn(async move {
            let answer = changer.alter_partition(proposal).await;
            this.isr_change_answered(epoch, answer);
        })
        .detach();
    }

    fn isr_change_answered(&self, epoch: i32, answer: Result<LeaderAndIsr, ErrorCode>) {
        let changed = {
            let mut role = self.role.borrow_mut();
            let Role::Leader(s) = &mut *role else { return };
            if s.leader_epoch != epoch {
                return;
            }
            match answer {
                Ok(state)
                    if state.leader_epoch == s.leader_epoch
                        && state.partition_epoch > s.partition_epoch =>
                {
                    update_leader(s, &state, self.ctx.now_ms());
                    true
                }
                Ok(_) => false,
                Err(code) => {
                    tracing::warn!(topic = %self.log.topic, partition = self.log.partition, error = %code, "ISR change refused; retrying in a second at the earliest");
                    s.pending_isr = None;
                    s.retry_at_ms = self.ctx.now_ms() + ISR_RETRY_BACKOFF_MS;
                    false
                }
            }
        };
        if changed {
            self.update_high_watermark();
            self.log.wake_parked();
        }
    }

    #[cfg(test)]
    pub fn ctx_for_tests(&self) -> &Rc<ReplicaContext> {
        &self.ctx
    }

    /// Closes the log (the partition is dropped from this broker).
    pub fn close(&self) {
        self.log.close();
    }
}

/// Applies a new state within the leader epoch, counting an ISR shrink or
/// expansion for the metrics (Kafka's IsrShrinksPerSec/IsrExpandsPerSec).
fn update_leader(s: &mut LeaderState, spec: &LeaderAndIsr, now_ms: i64) {
    let before = s.isr.clone();
    s.update(spec, now_ms);
    crate::metrics::METRICS.isr_changed(&before, &s.isr);
}
