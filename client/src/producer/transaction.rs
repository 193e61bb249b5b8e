//! Transactions, as the Java client and librdkafka run them (KIP-98, with
//! KIP-360 epoch bumps and KIP-447 consumer-group fencing): the state
//! machine ([`TransactionState`]), what the sender and the transactional
//! calls share ([`TxnShared`]), and the calls themselves on [`Producer`]:
//! `init_transactions` (FindCoordinator for the `transactional.id`, then
//! InitProducerId with it, which fences older instances), `begin_transaction`,
//! `send_offsets_to_transaction` (AddOffsetsToTxn, then TxnOffsetCommit to
//! the group's coordinator with the consumer's generation), and
//! `commit_transaction` / `abort_transaction` (EndTxn). The sender adds each
//! partition to the transaction (AddPartitionsToTxn) before its first batch
//! goes out and flags every batch transactional.
//!
//! Errors are sorted as Java sorts them: coordinator moves and loads and
//! CONCURRENT_TRANSACTIONS are retried until `max.block.ms`; a fenced
//! producer (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH), a refused
//! `transactional.id` and answers the protocol does not allow are fatal
//! ([`Error::TransactionFatal`]: only `close` is left); anything else that
//! fails a send or the offsets makes the transaction abortable
//! ([`Error::TransactionAbortable`]). A failed batch that had sequence
//! numbers leaves a gap the partition's next batch cannot cross, so the
//! abort that follows bumps the epoch (InitProducerId with the current id
//! and epoch, KIP-360) and the sequences start again from 0.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, ApiKey, EndTxnRequest, GroupId,
    InitProducerIdRequest, ProducerId, TopicName, TransactionalId, TxnOffsetCommitRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::batch::{ProducerIdentity, TopicPartition as BatchTp};
use super::Producer;
use crate::consumer::{ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition};
use crate::error::{Error, ErrorCode, Result};
use crate::net::{Cluster, Connection, CoordinatorType};

/// Where a transactional producer stands (the Java client's states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionState {
    /// `init_transactions` has not completed.
    Uninitialized,
    /// `init_transactions` is running.
    Initializing,
    /// Between transactions.
    Ready,
    /// After `begin_transaction`: sends and offsets join the transaction.
    InTransaction,
    /// `commit_transaction` is running (or timed out and may be called again).
    CommittingTransaction,
    /// `abort_transaction` is running (or timed out and may be called again).
    AbortingTransaction,
    /// The transaction failed: only `abort_transaction` (or `close`) helps.
    AbortableError,
    /// The producer cannot go on: only `close` is left.
    FatalError,
}

impl TransactionState {
    /// The name Java gives the state (for messages).
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Uninitialized => "UNINITIALIZED",
            TransactionState::Initializing => "INITIALIZING",
            TransactionState::Ready => "READY",
            TransactionState::InTransaction => "IN_TRANSACTION",
            TransactionState::CommittingTransaction => "COMMITTING_TRANSACTION",
            TransactionState::AbortingTransaction => "ABORTING_TRANSACTION",
            TransactionState::AbortableError => "ABORTABLE_ERROR",
            TransactionState::FatalError => "FATAL_ERROR",
        }
    }
}

/// How a coordinator's (or a partition's) answer is handled.
#[derive(Debug)]
pub(crate) enum Step {
    Done,
    /// Try again after a backoff; `refind`: look the coordinator up again.
    Retry {
        refind: bool,
    },
    Fail(Error),
}

/// Fenced: a newer producer with the same `transactional.id` bumped the
/// epoch. Java reports INVALID_PRODUCER_EPOCH as ProducerFencedException
/// too, so both become PRODUCER_FENCED here.
fn fenced(code: ErrorCode, what: &str) -> Error {
    Error::TransactionFatal(Box::new(Error::kafka_with(
        ErrorCode::ProducerFenced,
        Some(format!(
            "{what}: {} (a newer producer with the same transactional.id fenced this one)",
            code.name()
        )),
    )))
}

/// Sorts a transactional answer's error code.
pub(crate) fn classify(code: ErrorCode, what: &str) -> Step {
    let err = || Box::new(Error::kafka_with(code, Some(what.to_string())));
    match code {
        ErrorCode::None => Step::Done,
        ErrorCode::NotCoordinator | ErrorCode::CoordinatorNotAvailable => {
            Step::Retry { refind: true }
        }
        ErrorCode::CoordinatorLoadInProgress
        | ErrorCode::ConcurrentTransactions
        | ErrorCode::UnknownTopicOrPartition
        | ErrorCode::OperationNotAttempted => Step::Retry { refind: false },
        ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch => {
            Step::Fail(fenced(code, what))
        }
        ErrorCode::TopicAuthorizationFailed
        | ErrorCode::GroupAuthorizationFailed
        | ErrorCode::TransactionAbortable
        | ErrorCode::UnknownProducerId
        | ErrorCode::UnknownMemberId
        | ErrorCode::IllegalGeneration
        | ErrorCode::FencedInstanceId
        | ErrorCode::RebalanceInProgress => Step::Fail(Error::TransactionAbortable(err())),
        c if c.is_retriable() => Step::Retry { refind: false },
        // TRANSACTIONAL_ID_AUTHORIZATION_FAILED, INVALID_TXN_STATE,
        // INVALID_PRODUCER_ID_MAPPING, INVALID_TRANSACTION_TIMEOUT and
        // whatever the protocol does not expect: Java treats them as fatal.
        _ => Step::Fail(Error::TransactionFatal(err())),
    }
}

/// Whether a send's error ends the producer (rather than the transaction).
fn is_fatal_send_error(e: &Error) -> bool {
    matches!(
        e.root_cause().code(),
        Some(
            ErrorCode::ProducerFenced
                | ErrorCode::InvalidProducerEpoch
                | ErrorCode::TransactionalIdAuthorizationFailed
                | ErrorCode::ClusterAuthorizationFailed
        )
    ) || e.is_fatal_transaction_error()
}

struct TxnInner {
    state: TransactionState,
    /// The error of `AbortableError` / `FatalError`.
    error: Option<Error>,
    identity: Option<ProducerIdentity>,
    /// Partitions AddPartitionsToTxn added to the current transaction.
    added: HashSet<BatchTp>,
    /// The coordinator knows of the current transaction (a partition or a
    /// group's offsets were added): only then is there anything to end.
    started: bool,
    /// A batch with sequence numbers failed: the abort bumps the epoch.
    bump_needed: bool,
    /// Counts ended transactions, so a late AddPartitionsToTxn answer is
    /// not taken for the next transaction.
    generation: u64,
}

/// What the producer's transactional calls and its sender share.
pub(crate) struct TxnShared {
    pub id: String,
    pub timeout_ms: i32,
    inner: Mutex<TxnInner>,
    /// One transactional call at a time.
    op: tokio::sync::Mutex<()>,
}

impl TxnShared {
    pub fn new(id: String, timeout: Duration) -> TxnShared {
        TxnShared {
            id,
            timeout_ms: i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX),
            inner: Mutex::new(TxnInner {
                state: TransactionState::Uninitialized,
                error: None,
                identity: None,
                added: HashSet::new(),
                started: false,
                bump_needed: false,
                generation: 0,
            }),
            op: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, TxnInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn wire_id(&self) -> TransactionalId {
        TransactionalId(StrBytes::from_string(self.id.clone()))
    }

    pub fn state(&self) -> TransactionState {
        self.lock().state
    }

    /// Whether `send` may take a record now.
    pub fn check_send(&self) -> Result<()> {
        let g = self.lock();
        match g.state {
            TransactionState::InTransaction => Ok(()),
            TransactionState::AbortableError | TransactionState::FatalError => {
                Err(g.error.clone().unwrap_or(Error::Closed))
            }
            TransactionState::Uninitialized | TransactionState::Initializing => {
                Err(Error::IllegalState(
                    "a transactional producer cannot send before init_transactions completes"
                        .into(),
                ))
            }
            s => Err(Error::IllegalState(format!(
                "cannot send in state {}: sends of a transactional producer go inside begin_transaction .. commit/abort",
                s.name()
            ))),
        }
    }

    /// Whether the sender may send batches (the transaction is on).
    pub fn can_send_batches(&self) -> bool {
        matches!(
            self.lock().state,
            TransactionState::InTransaction | TransactionState::CommittingTransaction
        )
    }

    /// The error queued batches fail with, when the transaction failed.
    pub fn failed_with(&self) -> Option<Error> {
        let g = self.lock();
        match g.state {
            TransactionState::AbortableError | TransactionState::FatalError => g.error.clone(),
            _ => None,
        }
    }

    pub fn is_added(&self, tp: &BatchTp) -> bool {
        self.lock().added.contains(tp)
    }

    /// Which transaction is current (see [`mark_added`](Self::mark_added)).
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Partitions added to the transaction that was current at `generation`.
    pub fn mark_added(&self, generation: u64, tps: impl IntoIterator<Item = BatchTp>) {
        let mut g = self.lock();
        if g.generation != generation {
            return;
        }
        for tp in tps {
            g.added.insert(tp);
            g.started = true;
        }
    }

    /// A transactional failure (already sorted into fatal or abortable).
    pub fn fail(&self, e: Error) {
        let mut g = self.lock();
        match g.state {
            TransactionState::FatalError => {}
            _ if e.is_fatal_transaction_error() => {
                tracing::error!(transactional_id = %self.id, error = %e, "transactional producer failed fatally");
                g.state = TransactionState::FatalError;
                g.error = Some(e);
            }
            TransactionState::InTransaction | TransactionState::CommittingTransaction => {
                let e = if e.is_abortable_transaction_error() {
                    e
                } else {
                    Error::TransactionAbortable(Box::new(e))
                };
                tracing::warn!(transactional_id = %self.id, error = %e, "transaction must be aborted");
                g.state = TransactionState::AbortableError;
                g.error = Some(e);
            }
            // Already failing or aborting: the first error stands.
            _ => {}
        }
    }

    /// A batch of the transaction failed. `had_sequence`: it was numbered,
    /// so its partition's next sequence no longer follows.
    pub fn on_send_failed(&self, err: &Error, had_sequence: bool) {
        if had_sequence {
            self.require_bump();
        }
        if matches!(err, Error::TransactionAborted) {
            return;
        }
        if is_fatal_send_error(err) {
            // Fatal wins over an earlier abortable error, as in Java.
            let e = match err.root_cause().code() {
                Some(c @ (ErrorCode::ProducerFenced | ErrorCode::InvalidProducerEpoch)) => {
                    fenced(c, "produce")
                }
                _ if err.is_fatal_transaction_error() => err.clone(),
                _ => Error::TransactionFatal(Box::new(err.clone())),
            };
            self.fail(e);
        } else if self.failed_with().is_none() {
            self.fail(Error::TransactionAbortable(Box::new(err.clone())));
        }
    }

    /// The epoch must be bumped before the next transaction (KIP-360).
    pub fn require_bump(&self) {
        self.lock().bump_needed = true;
    }

    fn identity(&self) -> Result<ProducerIdentity> {
        self.lock()
            .identity
            .ok_or_else(|| Error::IllegalState("no producer id: call init_transactions".into()))
    }

    /// The error for a call not allowed in the current state.
    fn refuse(&self, call: &str) -> Error {
        let g = self.lock();
        match g.state {
            TransactionState::AbortableError | TransactionState::FatalError => {
                g.error.clone().unwrap_or(Error::Closed)
            }
            s => Error::IllegalState(format!("cannot {call} in state {}", s.name())),
        }
    }

    /// Moves from one of `from` to `to`, or refuses `call`.
    fn transition(
        &self,
        call: &str,
        from: &[TransactionState],
        to: TransactionState,
    ) -> Result<TransactionState> {
        let prev = {
            let mut g = self.lock();
            if !from.contains(&g.state) {
                None
            } else {
                let prev = g.state;
                g.state = to;
                Some(prev)
            }
        };
        prev.ok_or_else(|| self.refuse(call))
    }

    fn set_state(&self, to: TransactionState) {
        self.lock().state = to;
    }

    /// Back to Ready after a commit or an abort.
    fn end(&self) {
        let mut g = self.lock();
        g.state = TransactionState::Ready;
        g.error = None;
        g.added.clear();
        g.started = false;
        g.generation += 1;
    }
}

/// A request to a coordinator, retried while its answer says so (moves,
/// loads, CONCURRENT_TRANSACTIONS, broken connections) until `deadline`.
/// `attempt` sends once and returns the answer's error code (or
/// `ErrorCode::None` with the value).
async fn with_coordinator<T, F, Fut>(
    cluster: &Cluster,
    kind: CoordinatorType,
    key: &str,
    what: &str,
    deadline: Instant,
    backoff: Duration,
    mut attempt: F,
) -> Result<T>
where
    F: FnMut(Arc<Connection>) -> Fut,
    Fut: Future<Output = Result<(ErrorCode, Option<T>)>>,
{
    let mut last: Option<String>;
    loop {
        let outcome = match cluster.coordinator_for(kind, key).await {
            Ok(conn) => match attempt(conn).await {
                Ok((code, value)) => match (classify(code, what), value) {
                    (Step::Done, Some(v)) => return Ok(v),
                    (Step::Done, None) => {
                        return Err(Error::Protocol(format!("{what}: empty answer")))
                    }
                    (Step::Fail(e), _) => return Err(e),
                    (Step::Retry { refind }, _) => {
                        last = Some(code.name().to_string());
                        refind
                    }
                },
                Err(e) if e.is_retriable() => {
                    last = Some(e.to_string());
                    true
                }
                Err(e) => return Err(e),
            },
            // FindCoordinator's own answer (COORDINATOR_NOT_AVAILABLE while
            // Kafka creates __transaction_state), or no connection.
            Err(e) if e.is_retriable() => {
                last = Some(e.to_string());
                true
            }
            Err(Error::Kafka { code, message }) => match classify(code, what) {
                Step::Fail(e) => return Err(e),
                _ => {
                    last = Some(message.unwrap_or_else(|| code.name().to_string()));
                    true
                }
            },
            Err(e) => return Err(e),
        };
        if outcome {
            cluster.forget_coordinator_for(kind, key);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::Timeout(format!(
                "{what} did not complete in time{}",
                last.map(|l| format!(" (last error: {l})"))
                    .unwrap_or_default()
            )));
        }
        tracing::debug!(what, last = ?last, "transactional request: retrying");
        tokio::time::sleep(backoff.min(deadline - now)).await;
    }
}

/// InitProducerId for `txn`: a new epoch (fencing older instances), or with
/// `bump_from` the next epoch of that identity (KIP-360, v3+).
async fn init_producer_id(
    cluster: &Cluster,
    txn: &TxnShared,
    bump_from: Option<ProducerIdentity>,
    deadline: Instant,
    backoff: Duration,
) -> Result<ProducerIdentity> {
    with_coordinator(
        cluster,
        CoordinatorType::Transaction,
        &txn.id,
        "InitProducerId",
        deadline,
        backoff,
        |conn| async move {
            let v = conn.versions().pick(ApiKey::InitProducerId)?;
            let mut req = InitProducerIdRequest::default();
            req.transactional_id = Some(txn.wire_id());
            req.transaction_timeout_ms = txn.timeout_ms;
            match bump_from {
                Some(cur) if v >= 3 => {
                    req.producer_id = ProducerId(cur.id);
                    req.producer_epoch = cur.epoch;
                }
                Some(_) => {
                    return Err(Error::TransactionFatal(Box::new(Error::Unsupported(
                        "the broker cannot bump a producer epoch (InitProducerId v3, KIP-360): the transaction's sequence numbers cannot recover".into(),
                    ))))
                }
                None => {
                    req.producer_id = ProducerId(-1);
                    req.producer_epoch = -1;
                }
            }
            let resp = conn.send_versioned(&req, v).await?;
            Ok((
                ErrorCode::from_code(resp.error_code),
                Some(ProducerIdentity {
                    id: resp.producer_id.0,
                    epoch: resp.producer_epoch,
                }),
            ))
        },
    )
    .await
}

async fn end_txn(
    cluster: &Cluster,
    txn: &TxnShared,
    ident: ProducerIdentity,
    commit: bool,
    deadline: Instant,
    backoff: Duration,
) -> Result<()> {
    let what = if commit {
        "EndTxn(commit)"
    } else {
        "EndTxn(abort)"
    };
    with_coordinator(
        cluster,
        CoordinatorType::Transaction,
        &txn.id,
        what,
        deadline,
        backoff,
        |conn| async move {
            let mut req = EndTxnRequest::default();
            req.transactional_id = txn.wire_id();
            req.producer_id = ProducerId(ident.id);
            req.producer_epoch = ident.epoch;
            req.committed = commit;
            let (resp, _) = conn.send_with_version(&req).await?;
            Ok((ErrorCode::from_code(resp.error_code), Some(())))
        },
    )
    .await
}

/// AddPartitionsToTxn (v0-3) for the sender: each partition's answer.
pub(crate) async fn add_partitions(
    cluster: &Cluster,
    txn: &TxnShared,
    ident: ProducerIdentity,
    tps: &[BatchTp],
) -> Result<Vec<(BatchTp, ErrorCode)>> {
    let conn = cluster
        .coordinator_for(CoordinatorType::Transaction, &txn.id)
        .await?;
    let mut req = AddPartitionsToTxnRequest::default();
    req.v3_and_below_transactional_id = txn.wire_id();
    req.v3_and_below_producer_id = ProducerId(ident.id);
    req.v3_and_below_producer_epoch = ident.epoch;
    for tp in tps {
        match req
            .v3_and_below_topics
            .iter_mut()
            .find(|t| t.name.0.as_str() == &*tp.topic)
        {
            Some(t) => t.partitions.push(tp.partition),
            None => {
                let mut t = AddPartitionsToTxnTopic::default();
                t.name = TopicName(StrBytes::from_string(tp.topic.to_string()));
                t.partitions.push(tp.partition);
                req.v3_and_below_topics.push(t);
            }
        }
    }
    let resp = match conn.send_with_version(&req).await {
        Ok((r, _)) => r,
        Err(e) => {
            cluster.forget_coordinator_for(CoordinatorType::Transaction, &txn.id);
            return Err(e);
        }
    };
    let mut out = Vec::with_capacity(tps.len());
    for tp in tps {
        let code = resp
            .results_by_topic_v3_and_below
            .iter()
            .find(|t| t.name.0.as_str() == &*tp.topic)
            .and_then(|t| {
                t.results_by_partition
                    .iter()
                    .find(|p| p.partition_index == tp.partition)
            })
            .map(|p| ErrorCode::from_code(p.partition_error_code))
            // Not answered: the whole request failed.
            .unwrap_or(ErrorCode::from_code(resp.error_code));
        out.push((tp.clone(), code));
    }
    Ok(out)
}

impl Producer {
    fn txn(&self) -> Result<&Arc<TxnShared>> {
        self.inner.txn.as_ref().ok_or_else(|| {
            Error::IllegalState(
                "transactional calls need a transactional.id in the producer's configuration"
                    .into(),
            )
        })
    }

    /// The transaction state; `None` for a producer without a `transactional.id`.
    pub fn transaction_state(&self) -> Option<TransactionState> {
        self.inner.txn.as_ref().map(|t| t.state())
    }

    fn txn_deadline(&self) -> Instant {
        Instant::now() + self.inner.cfg.max_block
    }

    fn txn_backoff(&self) -> Duration {
        self.inner.cfg.client.retry_backoff
    }

    /// Hands a producer identity to the sender and waits until it is in
    /// use, so no batch of the next transaction goes out with the old one.
    async fn install_identity(&self, txn: &TxnShared, ident: ProducerIdentity) -> Result<()> {
        self.inner.commands.set_identity(ident).await?;
        txn.lock().identity = Some(ident);
        Ok(())
    }

    /// Registers the `transactional.id` with its coordinator (waiting up to
    /// `max.block.ms`): gets a producer id and a new epoch, which fences
    /// any older producer with the same id and aborts (or completes) a
    /// transaction it left open. Call once, before the first transaction.
    /// After a timeout it may be called again.
    pub async fn init_transactions(&self) -> Result<()> {
        let txn = self.txn()?.clone();
        let _op = txn.op.lock().await;
        txn.transition(
            "init_transactions",
            &[TransactionState::Uninitialized],
            TransactionState::Initializing,
        )?;
        let r = init_producer_id(
            &self.inner.cluster,
            &txn,
            None,
            self.txn_deadline(),
            self.txn_backoff(),
        )
        .await;
        let r = match r {
            Ok(ident) => self.install_identity(&txn, ident).await.map(|_| ident),
            Err(e) => Err(e),
        };
        match r {
            Ok(ident) => {
                tracing::info!(transactional_id = %txn.id, producer_id = ident.id, epoch = ident.epoch, "transactions initialized");
                txn.set_state(TransactionState::Ready);
                Ok(())
            }
            Err(e) if e.is_fatal_transaction_error() => {
                txn.fail(e.clone());
                Err(e)
            }
            Err(e) => {
                // A timeout or a closed producer: it may be tried again.
                txn.set_state(TransactionState::Uninitialized);
                Err(e)
            }
        }
    }

    /// Starts a transaction: every record sent until `commit_transaction`
    /// or `abort_transaction` belongs to it.
    pub fn begin_transaction(&self) -> Result<()> {
        let txn = self.txn()?;
        txn.transition(
            "begin_transaction",
            &[TransactionState::Ready],
            TransactionState::InTransaction,
        )?;
        Ok(())
    }

    /// Adds consumed offsets to the transaction: they are committed for
    /// the consumer's group when (and only if) the transaction commits.
    /// `group` comes from [`Consumer::group_metadata`](crate::Consumer::group_metadata),
    /// so the group coordinator refuses the offsets of a member a rebalance
    /// fenced (KIP-447); offsets are the next positions to read.
    pub async fn send_offsets_to_transaction<I>(
        &self,
        offsets: I,
        group: &ConsumerGroupMetadata,
    ) -> Result<()>
    where
        I: IntoIterator<Item = (TopicPartition, OffsetAndMetadata)>,
    {
        let txn = self.txn()?.clone();
        let _op = txn.op.lock().await;
        if txn.state() != TransactionState::InTransaction {
            return Err(txn.refuse("send_offsets_to_transaction"));
        }
        let mut offsets: Vec<(TopicPartition, OffsetAndMetadata)> = offsets.into_iter().collect();
        if offsets.is_empty() {
            return Ok(());
        }
        offsets.sort_by(|a, b| a.0.cmp(&b.0));
        let ident = txn.identity()?;
        let deadline = self.txn_deadline();
        let backoff = self.txn_backoff();
        let cluster = &self.inner.cluster;
        let group_id = group.group_id.clone();
        let added = with_coordinator(
            cluster,
            CoordinatorType::Transaction,
            &txn.id,
            "AddOffsetsToTxn",
            deadline,
            backoff,
            |conn| {
                let txn = &txn;
                let group_id = group_id.clone();
                async move {
                    let mut req = AddOffsetsToTxnRequest::default();
                    req.transactional_id = txn.wire_id();
                    req.producer_id = ProducerId(ident.id);
                    req.producer_epoch = ident.epoch;
                    req.group_id = GroupId(StrBytes::from_string(group_id));
                    let (resp, _) = conn.send_with_version(&req).await?;
                    Ok((ErrorCode::from_code(resp.error_code), Some(())))
                }
            },
        )
        .await;
        if let Err(e) = added {
            return Err(self.txn_call_failed(&txn, e));
        }
        txn.lock().started = true;
        let committed = with_coordinator(
            cluster,
            CoordinatorType::Group,
            &group.group_id,
            "TxnOffsetCommit",
            deadline,
            backoff,
            |conn| {
                let txn = &txn;
                let offsets = &offsets;
                async move {
                    let v = conn.versions().pick(ApiKey::TxnOffsetCommit)?;
                    let req = txn_offset_commit_request(txn, ident, group, offsets, v);
                    let resp = conn.send_versioned(&req, v).await?;
                    // The first partition error decides (all are retried together).
                    let code = resp
                        .topics
                        .iter()
                        .flat_map(|t| t.partitions.iter())
                        .map(|p| ErrorCode::from_code(p.error_code))
                        .find(|c| *c != ErrorCode::None)
                        .unwrap_or(ErrorCode::None);
                    Ok((code, Some(())))
                }
            },
        )
        .await;
        committed.map_err(|e| self.txn_call_failed(&txn, e))
    }

    /// A transactional call failed: a timeout leaves the state alone (the
    /// call may be repeated); anything else fails the transaction (or the
    /// producer) as sorted.
    fn txn_call_failed(&self, txn: &TxnShared, e: Error) -> Error {
        match e {
            Error::Timeout(_) | Error::Closed => e,
            e if e.is_fatal_transaction_error() || e.is_abortable_transaction_error() => {
                txn.fail(e.clone());
                e
            }
            e => {
                let e = Error::TransactionAbortable(Box::new(e));
                txn.fail(e.clone());
                e
            }
        }
    }

    /// Sends what is buffered and commits the transaction. If a send of the
    /// transaction failed, the commit fails with that error
    /// ([`Error::TransactionAbortable`]) and the transaction must be
    /// aborted. After a timeout it may be called again.
    pub async fn commit_transaction(&self) -> Result<()> {
        let txn = self.txn()?.clone();
        let _op = txn.op.lock().await;
        txn.transition(
            "commit_transaction",
            &[
                TransactionState::InTransaction,
                TransactionState::CommittingTransaction,
            ],
            TransactionState::CommittingTransaction,
        )?;
        self.flush().await;
        if let Some(e) = txn.failed_with() {
            return Err(e);
        }
        if txn.lock().started {
            let ident = txn.identity()?;
            end_txn(
                &self.inner.cluster,
                &txn,
                ident,
                true,
                self.txn_deadline(),
                self.txn_backoff(),
            )
            .await
            .map_err(|e| self.txn_call_failed(&txn, e))?;
        }
        txn.end();
        Ok(())
    }

    /// Aborts the transaction: records not sent yet fail with
    /// [`Error::TransactionAborted`], the ones in flight are waited for,
    /// and the coordinator writes abort markers, so read_committed
    /// consumers never see the transaction's records. Also the way out of
    /// an abortable error. After a timeout it may be called again.
    pub async fn abort_transaction(&self) -> Result<()> {
        let txn = self.txn()?.clone();
        let _op = txn.op.lock().await;
        txn.transition(
            "abort_transaction",
            &[
                TransactionState::InTransaction,
                TransactionState::AbortableError,
                TransactionState::AbortingTransaction,
            ],
            TransactionState::AbortingTransaction,
        )?;
        // Records still waiting for metadata or buffer space enter the
        // accumulator first, then everything unsent is failed, then the
        // batches in flight are waited for.
        self.inner.backlog.drained().await;
        self.inner.commands.abort_queued().await?;
        self.inner.acc.flush().await;
        let deadline = self.txn_deadline();
        let backoff = self.txn_backoff();
        let ident = txn.identity()?;
        if txn.lock().started {
            match end_txn(&self.inner.cluster, &txn, ident, false, deadline, backoff).await {
                Ok(()) => {}
                // The coordinator lost the producer: the epoch bump below
                // aborts whatever it still has open.
                Err(e) if e.is_abortable_transaction_error() => txn.require_bump(),
                Err(e) => return Err(self.txn_abort_failed(&txn, e)),
            }
        }
        if std::mem::take(&mut txn.lock().bump_needed) {
            let bumped =
                init_producer_id(&self.inner.cluster, &txn, Some(ident), deadline, backoff).await;
            let installed = match bumped {
                Ok(new) => self.install_identity(&txn, new).await.map(|_| new),
                Err(e) => Err(e),
            };
            match installed {
                Ok(new) => {
                    tracing::info!(transactional_id = %txn.id, producer_id = new.id, epoch = new.epoch, "producer epoch bumped after the abort");
                }
                Err(e) => {
                    txn.require_bump();
                    return Err(self.txn_abort_failed(&txn, e));
                }
            }
        }
        txn.end();
        Ok(())
    }

    /// An abort could not finish: a timeout keeps it resumable, anything
    /// else is fatal (the transaction's end is unknown).
    fn txn_abort_failed(&self, txn: &TxnShared, e: Error) -> Error {
        match e {
            Error::Timeout(_) | Error::Closed => e,
            e if e.is_fatal_transaction_error() => {
                txn.fail(e.clone());
                e
            }
            e => {
                let e = Error::TransactionFatal(Box::new(e));
                txn.fail(e.clone());
                e
            }
        }
    }
}

fn txn_offset_commit_request(
    txn: &TxnShared,
    ident: ProducerIdentity,
    group: &ConsumerGroupMetadata,
    offsets: &[(TopicPartition, OffsetAndMetadata)],
    version: i16,
) -> TxnOffsetCommitRequest {
    let mut req = TxnOffsetCommitRequest::default();
    req.transactional_id = txn.wire_id();
    req.group_id = GroupId(StrBytes::from_string(group.group_id.clone()));
    req.producer_id = ProducerId(ident.id);
    req.producer_epoch = ident.epoch;
    if version >= 3 {
        req.generation_id = group.generation_id;
        req.member_id = StrBytes::from_string(group.member_id.clone());
        req.group_instance_id = group.group_instance_id.clone().map(StrBytes::from_string);
    }
    let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
    for (tp, om) in offsets {
        let mut p = TxnOffsetCommitRequestPartition::default();
        p.partition_index = tp.partition;
        p.committed_offset = om.offset;
        p.committed_leader_epoch = om.leader_epoch.unwrap_or(-1);
        p.committed_metadata = Some(StrBytes::from_string(om.metadata.clone()));
        match topics.last_mut() {
            Some(t) if t.name.0.as_str() == tp.topic => t.partitions.push(p),
            _ => {
                let mut t = TxnOffsetCommitRequestTopic::default();
                t.name = TopicName(StrBytes::from_string(tp.topic.clone()));
                t.partitions.push(p);
                topics.push(t);
            }
        }
    }
    req.topics = topics;
    req
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tp(p: i32) -> BatchTp {
        BatchTp {
            topic: Arc::from("t"),
            partition: p,
        }
    }

    #[test]
    fn errors_sort_into_retry_abortable_and_fatal() {
        assert!(matches!(
            classify(ErrorCode::NotCoordinator, "x"),
            Step::Retry { refind: true }
        ));
        assert!(matches!(
            classify(ErrorCode::ConcurrentTransactions, "x"),
            Step::Retry { refind: false }
        ));
        for code in [ErrorCode::ProducerFenced, ErrorCode::InvalidProducerEpoch] {
            match classify(code, "EndTxn") {
                Step::Fail(e) => {
                    assert!(e.is_fatal_transaction_error());
                    assert_eq!(e.code(), Some(ErrorCode::ProducerFenced));
                }
                s => panic!("{code}: {s:?}"),
            }
        }
        match classify(ErrorCode::TransactionalIdAuthorizationFailed, "x") {
            Step::Fail(e) => assert!(e.is_fatal_transaction_error()),
            s => panic!("{s:?}"),
        }
        match classify(ErrorCode::TopicAuthorizationFailed, "x") {
            Step::Fail(e) => assert!(e.is_abortable_transaction_error()),
            s => panic!("{s:?}"),
        }
        match classify(ErrorCode::IllegalGeneration, "TxnOffsetCommit") {
            Step::Fail(e) => assert!(e.is_abortable_transaction_error()),
            s => panic!("{s:?}"),
        }
    }

    #[test]
    fn state_machine_allows_only_java_transitions() {
        let t = TxnShared::new("tx".into(), Duration::from_secs(60));
        assert!(matches!(t.check_send(), Err(Error::IllegalState(_))));
        assert!(t
            .transition(
                "begin_transaction",
                &[TransactionState::Ready],
                TransactionState::InTransaction
            )
            .is_err());
        t.set_state(TransactionState::Ready);
        assert!(matches!(t.check_send(), Err(Error::IllegalState(_))));
        t.transition(
            "begin_transaction",
            &[TransactionState::Ready],
            TransactionState::InTransaction,
        )
        .unwrap();
        assert!(t.check_send().is_ok());
        assert!(t.can_send_batches());
        // A failed send makes the transaction abortable, with a bump when
        // the batch was numbered.
        t.mark_added(t.generation(), [tp(0)]);
        assert!(t.is_added(&tp(0)));
        t.on_send_failed(&Error::kafka(ErrorCode::MessageTooLarge), true);
        assert_eq!(t.state(), TransactionState::AbortableError);
        assert!(t.lock().bump_needed);
        assert!(t.check_send().unwrap_err().is_abortable_transaction_error());
        assert!(!t.can_send_batches());
        // A second abortable error does not replace the first.
        t.on_send_failed(&Error::kafka(ErrorCode::NotEnoughReplicas), false);
        assert!(t
            .failed_with()
            .unwrap()
            .to_string()
            .contains("MESSAGE_TOO_LARGE"));
        let old = t.generation();
        t.end();
        assert_eq!(t.state(), TransactionState::Ready);
        assert!(!t.is_added(&tp(0)));
        // A late answer for the ended transaction adds nothing.
        t.mark_added(old, [tp(1)]);
        assert!(!t.is_added(&tp(1)));
        t.set_state(TransactionState::InTransaction);
        t.on_send_failed(&Error::kafka(ErrorCode::ProducerFenced), false);
        assert_eq!(t.state(), TransactionState::FatalError);
        let e = t.check_send().unwrap_err();
        assert!(e.is_fatal_transaction_error());
        assert_eq!(e.code(), Some(ErrorCode::ProducerFenced));
        // Nothing brings a fatal producer back.
        t.on_send_failed(&Error::kafka(ErrorCode::NotEnoughReplicas), false);
        assert_eq!(t.state(), TransactionState::FatalError);
        assert!(t
            .transition(
                "abort_transaction",
                &[TransactionState::AbortableError],
                TransactionState::AbortingTransaction
            )
            .unwrap_err()
            .is_fatal_transaction_error());
    }
}
