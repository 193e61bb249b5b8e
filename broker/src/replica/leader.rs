//! The leader's view of a partition's replication, as pure state and
//! decisions (no I/O, the time passed in): each follower's fetch position
//! and caught-up time, the high watermark over the ISR, and when to propose
//! shrinking or expanding the ISR. Kafka's `Partition`/`Replica` rules:
//!
//! - a follower's fetch offset is its log end offset;
//! - it is *caught up* at a fetch that reached the leader's log end as of
//!   that fetch, or as of its previous fetch (then from that fetch's time);
//! - the high watermark is the minimum log end over the maximal ISR (the ISR
//!   plus members a pending change adds) and over followers caught up within
//!   `replica.lag.time.max.ms`, and never goes backwards;
//! - an ISR member not caught up within `replica.lag.time.max.ms` is
//!   dropped; a follower whose log end reached the high watermark and the
//!   start of the leader's epoch joins; one change is in flight at a time.

use std::collections::BTreeMap;

use super::isr::LeaderAndIsr;

/// What the leader knows about one follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The offset of its last fetch: its log end. -1 until it fetches in
    /// this leader epoch.
    pub log_end_offset: i64,
    /// When it last fetched (ms), 0 if never.
    pub last_fetch_ms: i64,
    /// The last time it was known to be caught up (ms), 0 if never.
    pub last_caught_up_ms: i64,
    /// The leader's log end at its last fetch (-1 if none).
    pub last_fetch_leader_log_end: i64,
}

impl FollowerState {
    fn new(in_isr: bool, now_ms: i64) -> FollowerState {
        FollowerState {
            log_end_offset: -1,
            last_fetch_ms: 0,
            // An ISR member gets a full lag period from the start of the epoch
            // before it can be dropped, as in Kafka.
            last_caught_up_ms: if in_isr { now_ms } else { 0 },
            last_fetch_leader_log_end: -1,
        }
    }

    /// Kafka's `isCaughtUp`: at the leader's log end, or caught up recently.
    pub fn is_caught_up(&self, leader_log_end: i64, now_ms: i64, max_lag_ms: i64) -> bool {
        self.log_end_offset >= leader_log_end || now_ms - self.last_caught_up_ms <= max_lag_ms
    }
}

/// The leader role of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderState {
    /// This broker's id (always a replica and in the ISR while leader).
    pub local_id: i32,
    pub leader_epoch: i32,
    /// The controller's version of the partition's state, sent back with
    /// every proposed ISR change (AlterPartition).
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// Every replica but this one.
    pub followers: BTreeMap<i32, FollowerState>,
    /// An ISR proposed to the controller and not yet answered or come back
    /// in the metadata (Kafka's in-flight `PendingShrinkIsr`/`PendingExpandIsr`).
    pub pending_isr: Option<Vec<i32>>,
    /// The log end when this leader epoch began: a follower must reach it
    /// to rejoin the ISR.
    pub epoch_start_offset: i64,
    /// After a refused proposal, no new one before this wall-clock ms (a
    /// follower fetching many times a second must not flood the controller).
    pub retry_at_ms: i64,
    /// Brokers that may not join the ISR now (fenced or shutting down, as
    /// the metadata says; Kafka's `isReplicaIsrEligible`).
    pub ineligible: std::collections::BTreeSet<i32>,
}

impl LeaderState {
    /// Leadership for a new epoch: follower positions start unknown.
    pub fn new(local_id: i32, spec: &LeaderAndIsr, leader_log_end: i64, now_ms: i64) -> Self {
        let followers = spec
            .replicas
            .iter()
            .filter(|r| **r != local_id)
            .map(|r| (*r, FollowerState::new(spec.isr.contains(r), now_ms)))
            .collect();
        LeaderState {
            local_id,
            leader_epoch: spec.leader_epoch,
            partition_epoch: spec.partition_epoch,
            replicas: spec.replicas.clone(),
            isr: with_member(&spec.isr, local_id),
            followers,
            pending_isr: None,
            epoch_start_offset: leader_log_end,
            retry_at_ms: 0,
            ineligible: std::collections::BTreeSet::new(),
        }
    }

    /// A new partition state within the same leader epoch (an ISR change
    /// came back, or a reassignment): follower positions are kept, the
    /// pending change is settled.
    pub fn update(&mut self, spec: &LeaderAndIsr, now_ms: i64) {
        self.partition_epoch = spec.partition_epoch;
        self.replicas = spec.replicas.clone();
        self.isr = with_member(&spec.isr, self.local_id);
        self.pending_isr = None;
        let local = self.local_id;
        self.followers.retain(|id, _| spec.replicas.contains(id));
        for r in spec.replicas.iter().filter(|r| **r != local) {
            self.followers
                .entry(*r)
                .or_insert_with(|| FollowerState::new(spec.isr.contains(r), now_ms));
        }
    }

    pub fn is_replica(&self, id: i32) -> bool {
        self.replicas.contains(&id)
    }

    /// KIP-966: a replicated partition whose ISR is below `min_isr` holds
    /// its high watermark (a single replica has no eligible replicas to
    /// protect, so it never is).
    pub fn holds_high_watermark(&self, min_isr: i32) -> bool {
        self.replicas.len() > 1 && (self.isr.len() as i64) < i64::from(min_isr)
    }

    /// The ISR plus anyone a pending change adds: what the high watermark
    /// and acks=all count while a change is in flight.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut out = self.isr.clone();
        for id in self.pending_isr.iter().flatten() {
            if !out.contains(id) {
                out.push(*id);
            }
        }
        out
    }

    /// The high watermark the replicas' positions allow (the caller keeps
    /// the maximum of this and the current one).
    pub fn high_watermark(&self, leader_log_end: i64, now_ms: i64, max_lag_ms: i64) -> i64 {
        self.high_watermark_with(leader_log_end, now_ms, max_lag_ms, |_| true)
    }

    /// As [`high_watermark`](Self::high_watermark), counting caught-up
    /// followers outside the ISR only if `eligible` (Kafka skips fenced and
    /// shutting-down brokers: a dead follower that was caught up must not
    /// hold the high watermark for `replica.lag.time.max.ms`).
    pub fn high_watermark_with(
        &self,
        leader_log_end: i64,
        now_ms: i64,
        max_lag_ms: i64,
        eligible: impl Fn(i32) -> bool,
    ) -> i64 {
        let maximal = self.maximal_isr();
        self.followers
            .iter()
            .filter(|(id, f)| {
                maximal.contains(id)
                    || (eligible(**id) && f.is_caught_up(leader_log_end, now_ms, max_lag_ms))
            })
            .map(|(_, f)| f.log_end_offset)
            .fold(leader_log_end, i64::min)
    }

    /// Records a follower's fetch from `fetch_offset` while the leader's log
    /// end was `leader_log_end`. `false` if `id` is not a follower here.
    pub fn record_fetch(
        &mut self,
        id: i32,
        fetch_offset: i64,
        leader_log_end: i64,
        now_ms: i64,
    ) -> bool {
        let Some(f) = self.followers.get_mut(&id) else {
            return false;
        };
        if fetch_offset >= leader_log_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(now_ms);
        } else if f.last_fetch_leader_log_end >= 0 && fetch_offset >= f.last_fetch_leader_log_end {
            f.last_caught_up_ms = f.last_caught_up_ms.max(f.last_fetch_ms);
        }
        f.log_end_offset = fetch_offset;
        f.last_fetch_leader_log_end = leader_log_end;
        f.last_fetch_ms = now_ms;
        true
    }

    /// ISR followers not caught up within `max_lag_ms`.
    pub fn out_of_sync(&self, leader_log_end: i64, now_ms: i64, max_lag_ms: i64) -> Vec<i32> {
        self.isr
            .iter()
            .filter(|id| **id != self.local_id)
            .filter(|id| match self.followers.get(id) {
                Some(f) => !f.is_caught_up(leader_log_end, now_ms, max_lag_ms),
                // An ISR member that is no replica any more: drop it.
                None => true,
            })
            .copied()
            .collect()
    }

    /// The smaller ISR to propose, if a member fell behind and no change is
    /// in flight; marks it pending.
    pub fn propose_shrink(
        &mut self,
        leader_log_end: i64,
        now_ms: i64,
        max_lag_ms: i64,
    ) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let out = self.out_of_sync(leader_log_end, now_ms, max_lag_ms);
        if out.is_empty() {
            return None;
        }
        let isr: Vec<i32> = self
            .isr
            .iter()
            .filter(|id| !out.contains(id))
            .copied()
            .collect();
        self.pending_isr = Some(isr.clone());
        Some(isr)
    }

    /// Followers outside the ISR that may join: log end at or past the high
    /// watermark and the start of this leader epoch.
    pub fn ready_to_join(&self, high_watermark: i64) -> Vec<i32> {
        self.followers
            .iter()
            .filter(|(id, f)| {
                !self.isr.contains(id)
                    && !self.ineligible.contains(id)
                    && f.log_end_offset >= 0
                    && f.log_end_offset >= high_watermark
                    && f.log_end_offset >= self.epoch_start_offset
            })
            .map(|(id, _)| *id)
            .collect()
    }

    /// The larger ISR to propose, if a follower may join and no change is
    /// in flight; marks it pending.
    pub fn propose_expand(&mut self, high_watermark: i64) -> Option<Vec<i32>> {
        if self.pending_isr.is_some() {
            return None;
        }
        let joining = self.ready_to_join(high_watermark);
        if joining.is_empty() {
            return None;
        }
        let mut isr = self.isr.clone();
        isr.extend(joining);
        self.pending_isr = Some(isr.clone());
        Some(isr)
    }
}

fn with_member(isr: &[i32], id: i32) -> Vec<i32> {
    let mut out = isr.to_vec();
    if !out.contains(&id) {
        out.insert(0, id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 30_000;

    fn spec(replicas: &[i32], isr: &[i32]) -> LeaderAndIsr {
        LeaderAndIsr {
            leader_epoch: 3,
            partition_epoch: 7,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
        }
    }

    #[test]
    fn single_replica_high_watermark_is_the_log_end() {
        let s = LeaderState::new(1, &spec(&[1], &[1]), 10, 0);
        assert_eq!(s.high_watermark(10, 0, LAG), 10);
        assert_eq!(s.high_watermark(42, 99, LAG), 42);
        assert!(s.followers.is_empty());
    }

    #[test]
    fn high_watermark_is_the_isr_minimum() {
        let mut s = LeaderState::new(1, &spec(&[1, 2, 3], &[1, 2, 3]), 10, 1000);
        // Nobody fetched yet in this epoch: positions unknown.
        assert_eq!(s.high_watermark(10, 1000, LAG), -1);
        assert!(s.record_fetch(2, 8, 10, 1001));
        assert!(s.record_fetch(3, 10, 10, 1002));
        assert_eq!(s.high_watermark(10, 1002, LAG), 8);
        assert!(s.record_fetch(2, 10, 12, 1003));
        assert_eq!(s.high_watermark(12, 1003, LAG), 10);
        // The leader's own log end bounds it too.
        assert_eq!(s.high_watermark(9, 1003, LAG), 9);
    }

    #[test]
    fn lagging_non_isr_follower_does_not_hold_back_the_high_watermark() {
        // Real clock values: a follower outside the ISR was never caught up.
        let t = 1_700_000_000_000;
        let mut s = LeaderState::new(1, &spec(&[1, 2, 3], &[1, 2]), 10, t);
        s.record_fetch(2, 10, 10, t + 1);
        s.record_fetch(3, 2, 10, t + 1);
        assert_eq!(s.high_watermark(10, t + 1, LAG), 10);
    }

    #[test]
    fn caught_up_non_isr_follower_holds_back_the_high_watermark() {
        // Kafka counts a follower caught up within the lag so the high
        // watermark does not race ahead of one about to join.
        let mut s = LeaderState::new(1, &spec(&[1, 2, 3], &[1, 2]), 10, 1000);
        s.record_fetch(2, 10, 10, 1001);
        s.record_fetch(3, 10, 10, 1001);
        assert_eq!(s.high_watermark(12, 1002, LAG), 10);
        s.record_fetch(2, 12, 12, 1003);
        assert_eq!(s.high_watermark(12, 1003, LAG), 10);
    }

    #[test]
    fn pending_expansion_counts_in_the_maximal_isr() {
        let mut s = LeaderState::new(1, &spec(&[1, 2], &[1]), 5, 0);
        s.record_fetch(2, 5, 5, 10);
        assert_eq!(s.propose_expand(5), Some(vec![1, 2]));
        assert_eq!(s.maximal_isr(), vec![1, 2]);
        // The member being added holds back the high watermark at once.
        assert_eq!(s.high_watermark(9, 20 + LAG * 10, LAG), 5);
    }

    #[test]
    fn caught_up_rule_follows_kafka() {
        let mut s = LeaderState::new(1, &spec(&[1, 2], &[1]), 100, 0);
        // Fetch at the leader's log end: caught up now.
        s.record_fetch(2, 100, 100, 1000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 1000);
        // Behind the current log end (120) but at the log end as of the
        // previous fetch (100): caught up as of the previous fetch's time.
        s.record_fetch(2, 110, 120, 2000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 1000);
        s.record_fetch(2, 120, 150, 3000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 2000);
        // Behind both: no change.
        s.record_fetch(2, 130, 200, 4000);
        assert_eq!(s.followers[&2].last_caught_up_ms, 2000);
        assert_eq!(s.followers[&2].log_end_offset, 130);
        assert_eq!(s.followers[&2].last_fetch_ms, 4000);
        assert_eq!(s.followers[&2].last_fetch_leader_log_end, 200);
    }

    #[test]
    fn fetch_from_a_non_replica_is_refused() {
        let mut s = LeaderState::new(1, &spec(&[1, 2], &[1, 2]), 0, 0);
        assert!(!s.record_fetch(9, 0, 0, 1));
        assert!(!s.record_fetch(1, 0, 0, 1), "the leader is no follower");
        assert!(s.record_fetch(2, 0, 0, 1));
    }

    #[test]
    fn shrink_drops_members_behind_for_the_lag() {
        let mut s = LeaderState::new(1, &spec(&[1, 2, 3], &[1, 2, 3]), 50, 0);
        s.record_fetch(2, 50, 50, 100);
        s.record_fetch(3, 40, 50, 100);
        // Within the lag of the epoch start: nobody leaves.
        assert_eq!(s.propose_shrink(50, LAG, LAG), None);
        // Follower 3 never reached the log end; 2 is at it.
        assert_eq!(s.out_of_sync(50, LAG + 1, LAG), vec![3]);
        assert_eq!(s.propose_shrink(50, LAG + 1, LAG), Some(vec![1, 2]));
        assert_eq!(s.pending_isr, Some(vec![1, 2]));
        // One change in flight at a time; the shrink is not applied yet.
        assert_eq!(s.propose_shrink(50, LAG * 3, LAG), None);
        assert_eq!(s.isr, vec![1, 2, 3]);
        assert_eq!(s.maximal_isr(), vec![1, 2, 3]);
    }

    #[test]
    fn shrink_spares_a_follower_at_the_log_end() {
        let mut s = LeaderState::new(1, &spec(&[1, 2], &[1, 2]), 50, 0);
        s.record_fetch(2, 50, 50, 10);
        // Long quiet, but nothing was written: still caught up.
        assert_eq!(s.propose_shrink(50, LAG * 10, LAG), None);
    }

    #[test]
    fn expand_needs_the_high_watermark_and_the_epoch_start() {
        let mut s = LeaderState::new(1, &spec(&[1, 2, 3], &[1]), 100, 0);
        s.record_fetch(2, 90, 100, 10);
        assert_eq!(s.propose_expand(80), None, "below the epoch start");
        s.record_fetch(2, 100, 110, 20);
        assert_eq!(s.propose_expand(105), None, "below the high watermark");
        assert_eq!(s.propose_expand(100), Some(vec![1, 2]));
        s.record_fetch(3, 110, 110, 30);
        assert_eq!(s.propose_expand(100), None, "a change is in flight");
    }

    #[test]
    fn update_settles_the_pending_change_and_keeps_positions() {
        let mut s = LeaderState::new(1, &spec(&[1, 2, 3], &[1, 2, 3]), 0, 0);
        s.record_fetch(2, 0, 0, 5);
        s.propose_shrink(0, LAG * 2, LAG);
        let mut next = spec(&[1, 2, 3], &[1, 2]);
        next.partition_epoch = 8;
        s.update(&next, 100);
        assert_eq!(s.isr, vec![1, 2]);
        assert_eq!(s.partition_epoch, 8);
        assert_eq!(s.pending_isr, None);
        assert_eq!(s.followers[&2].log_end_offset, 0);
        // A reassignment drops and adds followers.
        s.update(&spec(&[1, 2, 4], &[1, 2]), 200);
        assert!(!s.followers.contains_key(&3));
        assert_eq!(s.followers[&4].log_end_offset, -1);
    }

    #[test]
    fn leader_is_always_in_its_isr() {
        let s = LeaderState::new(5, &spec(&[5, 6], &[6]), 0, 0);
        assert_eq!(s.isr, vec![5, 6]);
    }
}
