//! The second phase of a transaction and the coordinator's clock: sending
//! the commit or abort markers to every partition of a prepared transaction
//! until each leader has written its marker (retrying what failed, with
//! backoff, for as long as this coordinator still serves the id), then
//! writing CompleteCommit/CompleteAbort; aborting, with a bumped epoch,
//! transactions open longer than their timeout; and forgetting ids idle
//! longer than `transactional.id.expiration.ms` with a tombstone.

use std::rc::Weak;
use std::time::Duration;

use futures::future::LocalBoxFuture;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

use super::{bump, records, TxnCoordinator, TxnState};

/// One marker for a set of partitions, as WriteTxnMarkers carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkerJob {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub commit: bool,
    pub partitions: Vec<(String, i32)>,
}

/// Delivers markers to partition leaders (this broker's own partitions
/// directly, others' by WriteTxnMarkers).
pub trait MarkerWriter {
    /// Each partition's outcome. A partition whose topic no longer exists
    /// reports NONE: there is nothing left to mark.
    fn write(&self, job: MarkerJob) -> LocalBoxFuture<'static, Vec<((String, i32), ErrorCode)>>;
}

const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
const RETRY_BACKOFF_MAX: Duration = Duration::from_millis(1000);

impl TxnCoordinator {
    /// Completes `transactional_id`'s prepared transaction in the
    /// background (see the module comment).
    pub(super) fn spawn_completion(&self, transactional_id: String, epoch: i32) {
        let me = self.me.clone();
        let task = async move { complete(me, transactional_id, epoch).await };
        if compio::runtime::Runtime::try_with_current(|rt| rt.spawn(task).detach()).is_err() {
            tracing::warn!("no runtime to complete a transaction on");
        }
    }

    fn still_serving(&self, transactional_id: &str, epoch: i32) -> bool {
        self.coordinator_epoch(transactional_id) == Ok(epoch)
    }

    /// Aborts every transaction open past its timeout, fencing its producer
    /// with a bumped epoch as Kafka does.
    pub async fn abort_timed_out(&self, now: i64) {
        let expired: Vec<String> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, m)| {
                m.state == TxnState::Ongoing
                    && !m.pending
                    && m.start_ms + i64::from(m.timeout_ms) < now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            let Ok(epoch) = self.coordinator_epoch(&id) else {
                continue;
            };
            let Ok(meta) = self.begin_change(&id) else {
                continue;
            };
            if meta.state != TxnState::Ongoing {
                self.end_change(&id);
                continue;
            }
            let mut next = meta.clone();
            next.producer_epoch = bump(meta.producer_epoch);
            next.state = TxnState::PrepareAbort;
            next.last_update_ms = now_ms();
            match self.persist(&id, epoch, next).await {
                Ok(()) => {
                    tracing::info!(
                        transactional_id = %id,
                        producer_id = meta.producer_id,
                        timeout_ms = meta.timeout_ms,
                        "transaction timed out: aborting it and fencing its producer"
                    );
                    self.timed_out.set(self.timed_out.get() + 1);
                    self.spawn_completion(id, epoch);
                }
                Err(code) => {
                    tracing::warn!(transactional_id = %id, error = %code, "cannot abort a timed-out transaction")
                }
            }
        }
    }

    /// Forgets ids idle longer than `transactional.id.expiration.ms`.
    pub async fn expire_ids(&self, now: i64) {
        let idle: Vec<String> = self
            .txns
            .borrow()
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m.state,
                    TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
                ) && !m.pending
                    && m.last_update_ms + self.config.id_expiration_ms < now
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            let Ok(epoch) = self.coordinator_epoch(&id) else {
                continue;
            };
            if self.begin_change(&id).is_err() {
                continue;
            }
            let written = self
                .log
                .append(self.partition_of(&id), records::key(&id), None)
                .await;
            if written.is_ok() && self.still_serving(&id, epoch) {
                self.txns.borrow_mut().remove(&id);
                tracing::info!(transactional_id = %id, "transactional id expired");
            } else {
                self.end_change(&id);
            }
        }
    }
}

async fn complete(me: Weak<TxnCoordinator>, transactional_id: String, epoch: i32) {
    let mut backoff = RETRY_BACKOFF_MIN;
    // Phase 2a: the markers.
    let (meta, commit) = loop {
        let Some(c) = me.upgrade() else { return };
        if !c.still_serving(&transactional_id, epoch) {
            return;
        }
        let Some(meta) = c.txns.borrow().get(&transactional_id).cloned() else {
            return;
        };
        let commit = match meta.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort | TxnState::PrepareEpochFence => false,
            _ => return,
        };
        let job = MarkerJob {
            producer_id: meta.producer_id,
            producer_epoch: meta.producer_epoch,
            coordinator_epoch: epoch,
            commit,
            partitions: meta.partitions.iter().cloned().collect(),
        };
        let markers = c.markers.clone();
        drop(c);
        let outcomes = markers.write(job).await;
        let failed: Vec<&((String, i32), ErrorCode)> = outcomes
            .iter()
            .filter(|(_, code)| *code != ErrorCode::None)
            .collect();
        if failed.is_empty() {
            break (meta, commit);
        }
        if let Some((tp, code)) = failed.iter().find(|(_, code)| {
            matches!(
                code,
                ErrorCode::TransactionCoordinatorFenced
                    | ErrorCode::InvalidProducerEpoch
                    | ErrorCode::ProducerFenced
            )
        }) {
            // A newer coordinator (or producer epoch) exists: this one is
            // stale and leaves the transaction to it.
            tracing::warn!(
                transactional_id = %transactional_id,
                topic = %tp.0, partition = tp.1, error = %code,
                "transaction marker refused: this coordinator is stale"
            );
            return;
        }
        tracing::debug!(
            transactional_id = %transactional_id,
            failed = failed.len(),
            first_error = %failed[0].1,
            "transaction markers to retry"
        );
        // Retry every partition: a marker written twice is harmless (the
        // second finds no open transaction), and the partition set is small.
        compio::time::sleep(sleep_and_grow(&mut backoff)).await;
    };
    // Phase 2b: the Complete record.
    loop {
        let Some(c) = me.upgrade() else { return };
        if !c.still_serving(&transactional_id, epoch) {
            return;
        }
        let current = match c.begin_change(&transactional_id) {
            Ok(m) => m,
            Err(ErrorCode::ConcurrentTransactions) => {
                drop(c);
                compio::time::sleep(RETRY_BACKOFF_MIN).await;
                continue;
            }
            Err(_) => return,
        };
        if current.state != meta.state || current.producer_epoch != meta.producer_epoch {
            c.end_change(&transactional_id);
            return;
        }
        let mut next = current.clone();
        next.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        next.partitions.clear();
        next.last_update_ms = now_ms();
        match c.persist(&transactional_id, epoch, next).await {
            Ok(()) => return,
            Err(ErrorCode::NotCoordinator) => return,
            Err(code) => {
                tracing::warn!(transactional_id = %transactional_id, error = %code, "cannot write a transaction's completion; retrying");
                drop(c);
                compio::time::sleep(sleep_and_grow(&mut backoff)).await;
            }
        }
    }
}

/// The current backoff, doubling the next one up to the maximum.
fn sleep_and_grow(backoff: &mut Duration) -> Duration {
    let d = *backoff;
    *backoff = (*backoff * 2).min(RETRY_BACKOFF_MAX);
    d
}

/// The coordinator's clock: timeouts every
/// `transaction.abort.timed.out.transaction.cleanup.interval.ms`, expiry
/// every `transaction.remove.expired.transaction.cleanup.interval.ms`.
pub(super) async fn run_timers(me: Weak<TxnCoordinator>) {
    let (abort_every, expire_every) = match me.upgrade() {
        Some(c) => (
            c.config.abort_check_interval_ms.max(1),
            c.config.expiry_check_interval_ms.max(1),
        ),
        None => return,
    };
    let mut next_expiry = now_ms() + expire_every;
    loop {
        compio::time::sleep(Duration::from_millis(abort_every as u64)).await;
        let Some(c) = me.upgrade() else { return };
        if c.shut_down.get() {
            return;
        }
        let now = now_ms();
        c.abort_timed_out(now).await;
        if now >= next_expiry {
            c.expire_ids(now).await;
            next_expiry = now + expire_every;
        }
    }
}
