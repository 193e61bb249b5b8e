//! The transaction coordinator, as Apache Kafka's TransactionCoordinator
//! runs it (KIP-98, transaction version 1): for each transactional id, its
//! producer id and epoch, its timeout, its state and the partitions of its
//! ongoing transaction. InitProducerId with a transactional id (epoch bump,
//! fencing of zombies by aborting what they left open), AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn (two-phase: PrepareCommit/PrepareAbort is written
//! and answered, then the commit or abort markers go to every partition
//! leader, then CompleteCommit/CompleteAbort is written), transactions past
//! their timeout aborted with a bumped epoch, expired ids removed, and the
//! admin views (DescribeTransactions, ListTransactions).
//!
//! One coordinator lives on one shard and owns the transactional ids whose
//! `__transaction_state` partition (Java's `String.hashCode` of the id,
//! modulo the partition count) that shard leads. Every state change is a
//! record in Kafka's format appended through a [`TxnLog`] (acks=all) before
//! it takes effect in memory; leading a partition loads its records back
//! ([`TxnCoordinator::load`]) and resumes the markers of transactions caught
//! between prepare and complete. The partition's leader epoch is the
//! coordinator epoch the markers carry, so a deposed coordinator's markers
//! are refused by the partitions. State is single-threaded (`RefCell`); no
//! borrow is held across an `.await`, and a per-id `pending` flag makes
//! concurrent requests for one id answer CONCURRENT_TRANSACTIONS, as Kafka's
//! pending state does.
//!
//! Layout: `records` (the `__transaction_state` codecs), this file (state,
//! ownership, loading, the requests), `complete` (markers and completion,
//! timeouts, expiry), `admin` (the describe and list views).

mod admin;
mod complete;
pub mod records;

#[cfg(test)]
mod tests;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::{Rc, Weak};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use sluice_protocol::clock::now_ms;
use sluice_protocol::ErrorCode;

pub use admin::{TxnDescription, TxnListing};
pub use complete::{MarkerJob, MarkerWriter};
use records::TxnValue;

/// Name of the internal topic holding the coordinator's records.
pub const TXN_TOPIC: &str = "__transaction_state";

/// Kafka's transaction states, with the status byte its log records carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub const ALL: [TxnState; 8] = [
        TxnState::Empty,
        TxnState::Ongoing,
        TxnState::PrepareCommit,
        TxnState::PrepareAbort,
        TxnState::CompleteCommit,
        TxnState::CompleteAbort,
        TxnState::Dead,
        TxnState::PrepareEpochFence,
    ];

    pub fn status(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_status(status: i8) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.status() == status)
    }

    /// The name DescribeTransactions and ListTransactions use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        TxnState::ALL.into_iter().find(|s| s.name() == name)
    }

    fn is_prepare(self) -> bool {
        matches!(
            self,
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
        )
    }
}

/// Coordinator settings, named after Kafka's broker properties.
#[derive(Debug, Clone)]
pub struct TxnConfig {
    /// `transaction.state.log.num.partitions` (50).
    pub num_partitions: i32,
    /// `transaction.max.timeout.ms` (900000): the longest timeout a producer
    /// may ask for.
    pub max_timeout_ms: i32,
    /// `transactional.id.expiration.ms` (7 days): an id idle this long
    /// (and not in a transaction) is forgotten.
    pub id_expiration_ms: i64,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10000).
    pub abort_check_interval_ms: i64,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (3600000).
    pub expiry_check_interval_ms: i64,
}

impl Default for TxnConfig {
    fn default() -> Self {
        TxnConfig {
            num_partitions: 50,
            max_timeout_ms: 900_000,
            id_expiration_ms: 604_800_000,
            abort_check_interval_ms: 10_000,
            expiry_check_interval_ms: 3_600_000,
        }
    }
}

/// Durable store for the coordinator's records: the broker appends them to
/// the id's `__transaction_state` partition with acks=all. Resolves with a
/// Kafka error code on failure.
pub trait TxnLog {
    fn append(
        &self,
        partition: i32,
        key: Bytes,
        value: Option<Bytes>,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>>;
}

/// Where fresh producer ids come from (the cluster's id blocks).
pub trait ProducerIdSource {
    fn allocate(&self) -> LocalBoxFuture<'static, Result<i64, ErrorCode>>;
}

/// What the coordinator knows of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The id and epoch before the last InitProducerId, so a retried
    /// InitProducerId (KIP-360) is recognised; not persisted, as in Kafka.
    pub last_producer_id: i64,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    /// -1 when no transaction is open.
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// A state change is being written: others wait (CONCURRENT_TRANSACTIONS).
    pending: bool,
}

impl TxnMetadata {
    fn value(&self) -> TxnValue {
        TxnValue {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            last_update_ms: self.last_update_ms,
            start_ms: self.start_ms,
        }
    }

    fn from_value(v: TxnValue) -> TxnMetadata {
        TxnMetadata {
            producer_id: v.producer_id,
            producer_epoch: v.producer_epoch,
            last_producer_id: -1,
            last_producer_epoch: -1,
            timeout_ms: v.timeout_ms,
            state: v.state,
            partitions: v.partitions,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            pending: false,
        }
    }
}

/// Epochs stop one short of `i16::MAX`, as Kafka's: past that a producer
/// gets a fresh id.
const MAX_EPOCH: i16 = i16::MAX - 1;

/// The transaction coordinator of one shard.
pub struct TxnCoordinator {
    config: TxnConfig,
    log: Rc<dyn TxnLog>,
    ids: Rc<dyn ProducerIdSource>,
    markers: Rc<dyn MarkerWriter>,
    me: Weak<TxnCoordinator>,
    txns: RefCell<HashMap<String, TxnMetadata>>,
    /// `__transaction_state` partitions this coordinator leads, with the
    /// coordinator epoch (the partition's leader epoch) it leads them in.
    owned: RefCell<HashMap<i32, i32>>,
    /// Partitions being loaded: their ids answer COORDINATOR_LOAD_IN_PROGRESS.
    loading: RefCell<BTreeSet<i32>>,
    timer_task: RefCell<Option<compio::runtime::JoinHandle<()>>>,
    shut_down: Cell<bool>,
    /// Transactions aborted for passing their timeout, for metrics and tests.
    timed_out: Cell<u64>,
}

/// The `__transaction_state` partition of a transactional id.
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::cluster::coordinator_partition(transactional_id, partitions)
}

impl TxnCoordinator {
    pub fn new(
        config: TxnConfig,
        log: Rc<dyn TxnLog>,
        ids: Rc<dyn ProducerIdSource>,
        markers: Rc<dyn MarkerWriter>,
    ) -> Rc<Self> {
        Rc::new_cyclic(|me| TxnCoordinator {
            config,
            log,
            ids,
            markers,
            me: me.clone(),
            txns: RefCell::new(HashMap::new()),
            owned: RefCell::new(HashMap::new()),
            loading: RefCell::new(BTreeSet::new()),
            timer_task: RefCell::new(None),
            shut_down: Cell::new(false),
            timed_out: Cell::new(0),
        })
    }

    pub fn partition_of(&self, transactional_id: &str) -> i32 {
        partition_for(transactional_id, self.config.num_partitions)
    }

    /// Number of transactional ids held.
    pub fn txn_count(&self) -> usize {
        self.txns.borrow().len()
    }

    /// Transactions aborted because they outlived their timeout.
    pub fn timed_out_count(&self) -> u64 {
        self.timed_out.get()
    }

    /// The coordinator epoch `transactional_id` is served in, or the error a
    /// request for it gets.
    fn coordinator_epoch(&self, transactional_id: &str) -> Result<i32, ErrorCode> {
        if self.shut_down.get() {
            return Err(ErrorCode::NotCoordinator);
        }
        let p = self.partition_of(transactional_id);
        if self.loading.borrow().contains(&p) {
            return Err(ErrorCode::CoordinatorLoadInProgress);
        }
        self.owned
            .borrow()
            .get(&p)
            .copied()
            .ok_or(ErrorCode::NotCoordinator)
    }

    /// Whether this coordinator serves `partition`'s ids.
    pub fn owns(&self, partition: i32) -> bool {
        self.owned.borrow().contains_key(&partition)
    }

    /// Marks a partition as loading (requests for its ids wait).
    pub fn begin_load(&self, partition: i32) {
        self.loading.borrow_mut().insert(partition);
    }

    /// Takes over `partition` in `coordinator_epoch` with its records (in log
    /// order; the last value per id wins, a tombstone removes it), then
    /// resumes the markers of every transaction caught between prepare and
    /// complete. Malformed records are skipped with a warning.
    pub fn load(
        &self,
        partition: i32,
        coordinator_epoch: i32,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) {
        let mut latest: HashMap<String, Option<TxnMetadata>> = HashMap::new();
        let mut skipped = 0usize;
        for (k, v) in records {
            let Some(id) = records::decode_key(&k) else {
                skipped += 1;
                continue;
            };
            match v {
                None => {
                    latest.insert(id, None);
                }
                Some(v) => match records::decode_value(&v) {
                    Some(v) => {
                        latest.insert(id, Some(TxnMetadata::from_value(v)));
                    }
                    None => skipped += 1,
                },
            }
        }
        if skipped > 0 {
            tracing::warn!(partition, skipped, "unreadable {TXN_TOPIC} records skipped");
        }
        let mut resume = Vec::new();
        {
            let mut txns = self.txns.borrow_mut();
            txns.retain(|id, _| self.partition_of(id) != partition);
            for (id, meta) in latest {
                let Some(meta) = meta else { continue };
                if meta.state.is_prepare() {
                    resume.push(id.clone());
                }
                txns.insert(id, meta);
            }
        }
        self.owned.borrow_mut().insert(partition, coordinator_epoch);
        self.loading.borrow_mut().remove(&partition);
        self.ensure_timer_task();
        for id in resume {
            self.spawn_completion(id, coordinator_epoch);
        }
    }

    /// Gives up `partition` (its leadership moved): its ids are forgotten
    /// here, and their marker loops stop at their next step. Returns how
    /// many ids were dropped.
    pub fn unload(&self, partition: i32) -> usize {
        self.owned.borrow_mut().remove(&partition);
        self.loading.borrow_mut().remove(&partition);
        let mut txns = self.txns.borrow_mut();
        let before = txns.len();
        txns.retain(|id, _| partition_for(id, self.config.num_partitions) != partition);
        before - txns.len()
    }

    /// Stops the timer task; later requests answer NOT_COORDINATOR.
    pub fn shutdown(&self) {
        self.shut_down.set(true);
        drop(self.timer_task.borrow_mut().take());
    }

    /// Writes `meta` as `transactional_id`'s new state and applies it once
    /// durable, provided the id is still served in `epoch`. The id must be
    /// marked pending by the caller; this clears the mark either way.
    async fn persist(
        &self,
        transactional_id: &str,
        epoch: i32,
        meta: TxnMetadata,
    ) -> Result<(), ErrorCode> {
        let partition = self.partition_of(transactional_id);
        let written = self
            .log
            .append(
                partition,
                records::key(transactional_id),
                Some(records::value(&meta.value())),
            )
            .await
            .map_err(append_error);
        let mut txns = self.txns.borrow_mut();
        let still_ours = self.owned.borrow().get(&partition) == Some(&epoch);
        if !still_ours {
            return Err(ErrorCode::NotCoordinator);
        }
        match written {
            Ok(()) => {
                let mut meta = meta;
                meta.pending = false;
                txns.insert(transactional_id.to_string(), meta);
                Ok(())
            }
            Err(code) => {
                if let Some(m) = txns.get_mut(transactional_id) {
                    m.pending = false;
                }
                Err(code)
            }
        }
    }

    /// Marks `transactional_id` pending, or says why it cannot change now.
    fn begin_change(&self, transactional_id: &str) -> Result<TxnMetadata, ErrorCode> {
        let mut txns = self.txns.borrow_mut();
        let meta = txns
            .get_mut(transactional_id)
            .ok_or(ErrorCode::InvalidProducerIdMapping)?;
        if meta.pending {
            return Err(ErrorCode::ConcurrentTransactions);
        }
        meta.pending = true;
        Ok(meta.clone())
    }

    fn end_change(&self, transactional_id: &str) {
        if let Some(m) = self.txns.borrow_mut().get_mut(transactional_id) {
            m.pending = false;
        }
    }

    /// InitProducerId with a transactional id: the producer id and the
    /// bumped epoch that fences every older instance. An open transaction is
    /// aborted first (the caller retries on CONCURRENT_TRANSACTIONS).
    /// `expected` is the id and epoch a KIP-360 producer already holds.
    pub async fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ErrorCode> {
        let epoch = self.coordinator_epoch(transactional_id)?;
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ErrorCode::InvalidTransactionTimeout);
        }
        if !self.txns.borrow().contains_key(transactional_id) {
            let producer_id = self.ids.allocate().await?;
            let epoch_now = self.coordinator_epoch(transactional_id)?;
            if epoch_now != epoch {
                return Err(ErrorCode::NotCoordinator);
            }
            self.txns
                .borrow_mut()
                .entry(transactional_id.to_string())
                .or_insert(TxnMetadata {
                    producer_id,
                    producer_epoch: -1,
                    last_producer_id: -1,
                    last_producer_epoch: -1,
                    timeout_ms,
                    state: TxnState::Empty,
                    partitions: BTreeSet::new(),
                    start_ms: -1,
                    last_update_ms: now_ms(),
                    pending: false,
                });
        }
        let meta = self.begin_change(transactional_id)?;
        if let Some((pid, ep)) = expected.filter(|(pid, _)| *pid >= 0) {
            let current = pid == meta.producer_id && ep == meta.producer_epoch;
            let retried = pid == meta.last_producer_id && ep == meta.last_producer_epoch;
            if retried && matches!(meta.state, TxnState::Empty) {
                // A retry of the InitProducerId that already bumped: the
                // answer it missed.
                self.end_change(transactional_id);
                return Ok((meta.producer_id, meta.producer_epoch));
            }
            if !current {
                self.end_change(transactional_id);
                return Err(ErrorCode::ProducerFenced);
            }
        }
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                self.end_change(transactional_id);
                Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // A new instance of a producer that left a transaction open:
                // abort it with a bumped epoch, which fences the old one at
                // every partition the markers reach.
                let mut next = meta.clone();
                next.producer_epoch = bump(meta.producer_epoch);
                next.state = TxnState::PrepareAbort;
                next.last_update_ms = now_ms();
                self.persist(transactional_id, epoch, next).await?;
                self.spawn_completion(transactional_id.to_string(), epoch);
                Err(ErrorCode::ConcurrentTransactions)
            }
            TxnState::Empty
            | TxnState::CompleteCommit
            | TxnState::CompleteAbort
            | TxnState::Dead => {
                let mut next = meta.clone();
                next.last_producer_id = meta.producer_id;
                next.last_producer_epoch = meta.producer_epoch;
                if meta.producer_epoch >= MAX_EPOCH {
                    match self.ids.allocate().await {
                        Ok(id) => {
                            next.producer_id = id;
                            next.producer_epoch = 0;
                        }
                        Err(code) => {
                            self.end_change(transactional_id);
                            return Err(code);
                        }
                    }
                } else {
                    next.producer_epoch = meta.producer_epoch + 1;
                }
                next.timeout_ms = timeout_ms;
                next.state = TxnState::Empty;
                next.partitions.clear();
                next.start_ms = -1;
                next.last_update_ms = now_ms();
                let answer = (next.producer_id, next.producer_epoch);
                self.persist(transactional_id, epoch, next).await?;
                Ok(answer)
            }
        }
    }

    /// Checks a request's producer id and epoch against the id's state.
    fn check_producer(meta: &TxnMetadata, producer_id: i64, epoch: i16) -> Result<(), ErrorCode> {
        if producer_id != meta.producer_id {
            return Err(ErrorCode::InvalidProducerIdMapping);
        }
        if epoch != meta.producer_epoch {
            return Err(ErrorCode::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn, whose partition is the
    /// group's `__consumer_offsets` partition): the partitions join the
    /// transaction, which starts if none is open.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), ErrorCode> {
        let epoch = self.coordinator_epoch(transactional_id)?;
        let meta = self.begin_change(transactional_id)?;
        let checked = Self::check_producer(&meta, producer_id, producer_epoch).and_then(|()| {
            if meta.state.is_prepare() {
                Err(ErrorCode::ConcurrentTransactions)
            } else {
                Ok(())
            }
        });
        if let Err(code) = checked {
            self.end_change(transactional_id);
            return Err(code);
        }
        let already = meta.state == TxnState::Ongoing
            && partitions.iter().all(|p| meta.partitions.contains(p));
        if already {
            self.end_change(transactional_id);
            return Ok(());
        }
        let mut next = meta.clone();
        let now = now_ms();
        if meta.state != TxnState::Ongoing {
            next.partitions.clear();
            next.start_ms = now;
        }
        next.partitions.extend(partitions.iter().cloned());
        next.state = TxnState::Ongoing;
        next.last_update_ms = now;
        self.persist(transactional_id, epoch, next).await
    }

    /// EndTxn: writes PrepareCommit or PrepareAbort and answers; the markers
    /// and the Complete record follow in the background. A retry of a
    /// finished EndTxn succeeds; one still in progress waits
    /// (CONCURRENT_TRANSACTIONS).
    pub async fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), ErrorCode> {
        let epoch = self.coordinator_epoch(transactional_id)?;
        let meta = self.begin_change(transactional_id)?;
        if let Err(code) = Self::check_producer(&meta, producer_id, producer_epoch) {
            self.end_change(transactional_id);
            return Err(code);
        }
        let done = |code| {
            self.end_change(transactional_id);
            code
        };
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {
                let mut next = meta.clone();
                next.state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                next.last_update_ms = now_ms();
                self.persist(transactional_id, epoch, next).await?;
                self.spawn_completion(transactional_id.to_string(), epoch);
                Ok(())
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => done(Ok(())),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                done(Err(ErrorCode::ConcurrentTransactions))
            }
            _ => done(Err(ErrorCode::InvalidTxnState)),
        }
    }

    /// The state of an id this coordinator serves, for TxnOffsetCommit's
    /// check that the producer is the id's current one.
    pub fn check_current_producer(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<(), ErrorCode> {
        let meta = self.txns.borrow().get(transactional_id).cloned();
        match meta {
            Some(meta) => Self::check_producer(&meta, producer_id, producer_epoch),
            None => Err(ErrorCode::InvalidProducerIdMapping),
        }
    }

    /// Starts the periodic task (timeouts, expiry) if it is not running and
    /// we are on a runtime.
    fn ensure_timer_task(&self) {
        if self.shut_down.get() || self.timer_task.borrow().is_some() {
            return;
        }
        let me = self.me.clone();
        if let Ok(handle) =
            compio::runtime::Runtime::try_with_current(|rt| rt.spawn(complete::run_timers(me)))
        {
            *self.timer_task.borrow_mut() = Some(handle);
        }
    }
}

/// The next epoch after `epoch` (held at the maximum, where only a new
/// producer id helps).
fn bump(epoch: i16) -> i16 {
    if epoch >= MAX_EPOCH {
        epoch
    } else {
        epoch + 1
    }
}

/// Kafka's mapping of a failed `__transaction_state` append to what the
/// client is told: it must find the coordinator again, or retry.
fn append_error(code: ErrorCode) -> ErrorCode {
    match code {
        ErrorCode::NotLeaderOrFollower | ErrorCode::KafkaStorageError => ErrorCode::NotCoordinator,
        ErrorCode::UnknownTopicOrPartition
        | ErrorCode::NotEnoughReplicas
        | ErrorCode::NotEnoughReplicasAfterAppend
        | ErrorCode::RequestTimedOut => ErrorCode::CoordinatorNotAvailable,
        ErrorCode::MessageTooLarge | ErrorCode::RecordListTooLarge => ErrorCode::UnknownServerError,
        other => other,
    }
}
