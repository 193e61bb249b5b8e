//! The sender: one task that turns ready batches into Produce requests.
//! Each pass expires batches past `delivery.timeout.ms`, takes the front
//! batch of every partition whose batch is ready and whose leader's
//! connection has fewer than `max.in.flight.requests.per.connection`
//! requests out, packs them per broker up to `max.request.size`, and
//! hands each request to its own task that encodes (compresses) the new
//! batches and sends it. Answers come back to this task as events, so all
//! bookkeeping (retries, sequences, in-flight counts) happens here, on one
//! task, without locks beyond the accumulator's. Retriable failures go
//! back to their queue after `retry.backoff.ms` with a metadata refresh;
//! the rest fail their records. Connections, metadata refreshes and
//! InitProducerId also run as tasks reporting back, so a slow broker never
//! stalls the others.
//!
//! A transactional producer's sender (see `transaction`) takes its producer
//! identity from `init_transactions` instead of asking for one, sends only
//! while a transaction is on, adds each partition to the transaction
//! (AddPartitionsToTxn, a task like the others) before the partition's
//! first batch, flags batches transactional, and reports failed batches to
//! the transaction; once the transaction failed, unsent batches fail with
//! its error.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, ProduceRequest, ProduceResponse, ProducerId, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{mpsc, oneshot};

use super::accumulator::Accumulator;
use super::batch::{
    Payload, ProducerBatch, ProducerIdentity, SeqAssignment, TopicPartition, ROOT_SPLIT_SPAN,
};
use super::completion::BatchOutcome;
use super::idempotence::{self, Idempotence, Verdict};
use super::transaction::{self, Step, TxnShared};
use crate::config::{Acks, ProducerConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::net::{Cluster, Connection, CoordinatorType};

/// What background tasks report to the sender.
enum Event {
    Produced {
        req: u64,
        built: Vec<Result<Bytes>>,
        result: Result<Option<ProduceResponse>>,
    },
    Connected {
        node: i32,
        result: Result<Arc<Connection>>,
    },
    Metadata(Result<()>),
    ProducerId {
        result: Result<ProducerIdentity>,
    },
    /// A transactional producer's identity (from `init_transactions` or an
    /// epoch bump); `done` once in use.
    SetIdentity {
        ident: ProducerIdentity,
        done: oneshot::Sender<()>,
    },
    /// Fail every batch not yet sent (a transaction is being aborted).
    AbortQueued {
        done: oneshot::Sender<()>,
    },
    /// AddPartitionsToTxn's answer, per partition.
    PartitionsAdded {
        result: Result<Vec<(TopicPartition, ErrorCode)>>,
    },
}

/// What the producer's transactional calls ask of the sender task.
pub(crate) struct SenderCommands(mpsc::UnboundedSender<Event>);

impl SenderCommands {
    /// Puts `ident` in use; returns once no batch can go out with the old one.
    pub async fn set_identity(&self, ident: ProducerIdentity) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.0
            .send(Event::SetIdentity { ident, done })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }

    /// Fails every queued batch with [`Error::TransactionAborted`].
    pub async fn abort_queued(&self) -> Result<()> {
        let (done, rx) = oneshot::channel();
        self.0
            .send(Event::AbortQueued { done })
            .map_err(|_| Error::Closed)?;
        rx.await.map_err(|_| Error::Closed)
    }
}

/// A partition's answer: error code, base offset, LogAppendTime, message.
type PartitionAnswer = (ErrorCode, i64, i64, Option<String>);

/// A request on its way to the wire.
struct Dispatch {
    req_id: u64,
    conn: Arc<Connection>,
    version: Result<i16>,
    acks: i16,
    timeout_ms: i32,
    transactional_id: Option<kafka_protocol::messages::TransactionalId>,
    encoded: tokio::task::JoinHandle<(Vec<TopicPartition>, Vec<Result<Bytes>>)>,
}

/// One per broker: writes its requests in order, then waits for each
/// answer on a task of its own (pipelining).
async fn dispatch(mut rx: mpsc::UnboundedReceiver<Dispatch>, events: mpsc::UnboundedSender<Event>) {
    while let Some(d) = rx.recv().await {
        let req = d.req_id;
        let (tps, built) = match d.encoded.await {
            Ok(x) => x,
            Err(e) => {
                let err = Error::Protocol(format!("encoding task failed: {e}"));
                let _ = events.send(Event::Produced {
                    req,
                    built: Vec::new(),
                    result: Err(err),
                });
                continue;
            }
        };
        let result = match (
            d.version,
            produce_request(d.acks, d.timeout_ms, d.transactional_id, &tps, &built),
        ) {
            (Err(e), _) => Err(e),
            // Nothing encoded: every batch carries its own error.
            (Ok(_), None) => Ok(None),
            (Ok(v), Some(r)) if d.acks == 0 => d.conn.send_no_response(&r, v).await.map(|_| None),
            (Ok(v), Some(r)) => match d.conn.send_pipelined(&r, v).await {
                Err(e) => Err(e),
                Ok(answer) => {
                    let events = events.clone();
                    tokio::spawn(async move {
                        let result = answer.await.map(Some);
                        let _ = events.send(Event::Produced { req, built, result });
                    });
                    continue;
                }
            },
        };
        let _ = events.send(Event::Produced { req, built, result });
    }
}

struct InFlight {
    node: i32,
    batches: Vec<ProducerBatch>,
}

/// Shared between the producer handle and the sender task.
#[derive(Default)]
pub(crate) struct SenderControl {
    /// Fail everything left and stop (close timeout ran out).
    pub force_close: AtomicBool,
}

pub(crate) struct Sender {
    acc: Arc<Accumulator>,
    cluster: Arc<Cluster>,
    control: Arc<SenderControl>,
    acks: Acks,
    max_in_flight: usize,
    retries: u32,
    delivery_timeout: Duration,
    retry_backoff: Duration,
    reconnect_backoff: Duration,
    request_timeout: Duration,
    max_request_size: usize,
    idem: Option<Idempotence>,
    tx: mpsc::UnboundedSender<Event>,
    rx: mpsc::UnboundedReceiver<Event>,
    conns: HashMap<i32, Arc<Connection>>,
    connecting: HashSet<i32>,
    connect_retry_at: HashMap<i32, Instant>,
    in_flight: HashMap<u64, InFlight>,
    dispatchers: HashMap<i32, mpsc::UnboundedSender<Dispatch>>,
    node_in_flight: HashMap<i32, usize>,
    next_req: u64,
    metadata_refreshing: bool,
    metadata_wanted: bool,
    last_metadata: Option<Instant>,
    pid_requesting: bool,
    pid_retry_at: Option<Instant>,
    rotation: usize,
    /// A transactional producer's shared transaction state.
    txn: Option<Arc<TxnShared>>,
    /// Partitions whose batches wait for AddPartitionsToTxn.
    txn_want_add: HashSet<TopicPartition>,
    /// The transaction generation and partitions of the AddPartitionsToTxn
    /// in flight, if one is.
    txn_adding: Option<(u64, Vec<TopicPartition>)>,
    txn_add_retry_at: Option<Instant>,
}

impl Sender {
    pub fn new(
        cfg: &ProducerConfig,
        acc: Arc<Accumulator>,
        cluster: Arc<Cluster>,
        control: Arc<SenderControl>,
        txn: Option<Arc<TxnShared>>,
    ) -> Sender {
        let (tx, rx) = mpsc::unbounded_channel();
        Sender {
            acc,
            cluster,
            control,
            acks: cfg.acks,
            max_in_flight: cfg.max_in_flight.max(1),
            retries: cfg.retries,
            delivery_timeout: cfg.delivery_timeout,
            retry_backoff: cfg.client.retry_backoff,
            reconnect_backoff: cfg.client.reconnect_backoff,
            request_timeout: cfg.client.request_timeout,
            max_request_size: cfg.max_request_size,
            idem: cfg.enable_idempotence.then(Idempotence::default),
            tx,
            rx,
            conns: HashMap::new(),
            connecting: HashSet::new(),
            connect_retry_at: HashMap::new(),
            in_flight: HashMap::new(),
            dispatchers: HashMap::new(),
            node_in_flight: HashMap::new(),
            next_req: 0,
            metadata_refreshing: false,
            metadata_wanted: false,
            last_metadata: None,
            pid_requesting: false,
            pid_retry_at: None,
            rotation: 0,
            txn,
            txn_want_add: HashSet::new(),
            txn_adding: None,
            txn_add_retry_at: None,
        }
    }

    /// The handle the producer's transactional calls use.
    pub fn commands(&self) -> SenderCommands {
        SenderCommands(self.tx.clone())
    }

    /// Runs until the producer is closed and everything is delivered (or
    /// failed), or a forced close.
    pub async fn run(mut self) {
        loop {
            while let Ok(ev) = self.rx.try_recv() {
                self.handle(ev);
            }
            if self.control.force_close.load(Ordering::Relaxed) {
                self.abort_all();
                break;
            }
            let now = Instant::now();
            let next = self.run_once(now);
            if self.acc.is_closing() && self.in_flight.is_empty() && self.acc.incomplete() == 0 {
                break;
            }
            let sleep_until = next.unwrap_or(now + Duration::from_secs(3600));
            if sleep_until <= now {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                ev = self.rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle(ev);
                    }
                }
                _ = self.acc.wake.notified() => {}
                _ = tokio::time::sleep_until(sleep_until.into()) => {}
            }
        }
        tracing::debug!("producer sender stopped");
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Produced { req, built, result } => self.on_produced(req, built, result),
            Event::Connected { node, result } => {
                self.connecting.remove(&node);
                match result {
                    Ok(c) => {
                        self.connect_retry_at.remove(&node);
                        self.conns.insert(node, c);
                    }
                    Err(e) => {
                        tracing::debug!(node, error = %e, "producer connection failed");
                        self.connect_retry_at
                            .insert(node, Instant::now() + self.reconnect_backoff);
                        self.metadata_wanted = true;
                    }
                }
            }
            Event::Metadata(r) => {
                self.metadata_refreshing = false;
                if let Err(e) = r {
                    tracing::debug!(error = %e, "producer metadata refresh failed");
                }
            }
            Event::ProducerId { result } => {
                self.pid_requesting = false;
                match result {
                    Ok(ident) => {
                        if let Some(idem) = &mut self.idem {
                            idem.set_identity(ident);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "InitProducerId failed");
                        self.pid_retry_at = Some(Instant::now() + self.retry_backoff);
                        if !e.is_retriable() {
                            // Nothing can be sent without a producer id.
                            let n = self.acc.abort_queued(&e);
                            tracing::error!(error = %e, batches = n, "failing queued batches: no producer id");
                        }
                    }
                }
            }
            Event::SetIdentity { ident, done } => {
                if let Some(idem) = &mut self.idem {
                    idem.set_identity(ident);
                }
                let _ = done.send(());
            }
            Event::AbortQueued { done } => {
                self.txn_want_add.clear();
                self.fail_queued(&Error::TransactionAborted);
                let _ = done.send(());
            }
            Event::PartitionsAdded { result } => self.on_partitions_added(result),
        }
    }

    /// Fails every batch not yet sent with `err` (through the idempotence
    /// bookkeeping, unlike `Accumulator::abort_queued`).
    fn fail_queued(&mut self, err: &Error) {
        let batches: Vec<ProducerBatch> = {
            let acc = self.acc.clone();
            let mut st = acc.lock();
            let mut all = Vec::new();
            for dq in st.queues.values_mut() {
                all.extend(dq.drain(..));
            }
            all
        };
        let n = batches.len();
        for b in batches {
            // A batch that was sent before may have been written.
            let not_written = b.attempts == 0;
            self.fail(b, err.clone(), not_written);
        }
        if n > 0 {
            tracing::debug!(batches = n, error = %err, "failed unsent batches");
        }
    }

    fn on_partitions_added(&mut self, result: Result<Vec<(TopicPartition, ErrorCode)>>) {
        let Some(txn) = self.txn.clone() else { return };
        let (generation, tried) = self.txn_adding.take().unwrap_or_default();
        if generation != txn.generation() {
            return; // that transaction is over
        }
        let mut retry = false;
        match result {
            Err(e) => {
                tracing::debug!(error = %e, "AddPartitionsToTxn failed; retrying");
                retry = true;
            }
            Ok(answers) => {
                let mut added = Vec::new();
                for (tp, code) in answers {
                    match transaction::classify(code, "AddPartitionsToTxn") {
                        Step::Done => added.push(tp),
                        Step::Retry { refind } => {
                            if refind {
                                self.cluster
                                    .forget_coordinator_for(CoordinatorType::Transaction, &txn.id);
                            }
                            retry = true;
                        }
                        Step::Fail(e) => txn.fail(e),
                    }
                }
                txn.mark_added(generation, added);
            }
        }
        if retry {
            self.txn_want_add.extend(tried);
            // CONCURRENT_TRANSACTIONS clears within milliseconds (the
            // previous transaction's markers): a short backoff, as Java's.
            let backoff = self.retry_backoff.min(Duration::from_millis(20));
            self.txn_add_retry_at = Some(Instant::now() + backoff);
        }
    }

    fn start_add_partitions(&mut self, now: Instant) -> Option<Instant> {
        let txn = self.txn.clone()?;
        if self.txn_adding.is_some() || self.txn_want_add.is_empty() {
            return None;
        }
        if let Some(t) = self.txn_add_retry_at.filter(|t| *t > now) {
            return Some(t);
        }
        let ident = self.idem.as_ref().and_then(|i| i.current())?;
        let tps: Vec<TopicPartition> = self
            .txn_want_add
            .drain()
            .filter(|tp| !txn.is_added(tp))
            .collect();
        if tps.is_empty() {
            return None;
        }
        self.txn_adding = Some((txn.generation(), tps.clone()));
        let cluster = self.cluster.clone();
        let tx = self.tx.clone();
        let timeout = self.request_timeout;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(
                timeout,
                transaction::add_partitions(&cluster, &txn, ident, &tps),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout("AddPartitionsToTxn".into())),
            };
            let _ = tx.send(Event::PartitionsAdded { result });
        });
        None
    }

    /// One pass: background work to start, then drain. Returns when the
    /// next pass is due (timers), if any.
    fn run_once(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let wake_at = |t: Instant, next: &mut Option<Instant>| {
            if next.is_none_or(|n| t < n) {
                *next = Some(t);
            }
        };

        // A failed transaction sends nothing more: its unsent batches fail.
        if let Some(e) = self.txn.as_ref().and_then(|t| t.failed_with()) {
            if self.acc.lock().queues.values().any(|q| !q.is_empty()) {
                self.fail_queued(&e);
            }
        }

        // Producer id: first one, or an epoch bump (a transactional
        // producer's come from its transactional calls).
        if let Some(idem) = self.idem.as_ref().filter(|_| self.txn.is_none()) {
            let want = idem.current().is_none() || idem.needs_bump();
            if want && !self.pid_requesting {
                match self.pid_retry_at.filter(|t| *t > now) {
                    Some(t) => wake_at(t, &mut next),
                    None => {
                        self.start_init_producer_id(idem.current().filter(|_| idem.needs_bump()))
                    }
                }
            }
        }

        let (batches_by_node, need_metadata, more, expired, t) = self.drain(now);
        if let Some(t) = t {
            wake_at(t, &mut next);
        }
        for (batch, err) in expired {
            self.fail(batch, err, false);
        }
        for (node, batches) in batches_by_node {
            self.send_request(node, batches);
        }
        if more {
            wake_at(now, &mut next);
        }
        if let Some(t) = self.start_add_partitions(now) {
            wake_at(t, &mut next);
        }

        // Connections wanted by the drain.
        for t in self.connect_retry_at.values() {
            if *t > now {
                wake_at(*t, &mut next);
            }
        }

        if need_metadata || self.metadata_wanted {
            let due = self.last_metadata.map_or(now, |t| t + self.retry_backoff);
            if self.metadata_refreshing {
                // Its event wakes us.
            } else if due <= now {
                self.metadata_wanted = false;
                self.start_metadata_refresh(now);
            } else {
                self.metadata_wanted = true;
                wake_at(due, &mut next);
            }
        }
        next
    }

    /// The connection to `node` if open; else starts opening it.
    fn connection(&mut self, node: i32, now: Instant) -> Option<Arc<Connection>> {
        if let Some(c) = self.conns.get(&node) {
            if !c.is_closed() {
                return Some(c.clone());
            }
            self.conns.remove(&node);
        }
        if self.connecting.contains(&node)
            || self.connect_retry_at.get(&node).is_some_and(|t| *t > now)
        {
            return None;
        }
        self.connecting.insert(node);
        let cluster = self.cluster.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let result = cluster.connection(node).await;
            let _ = tx.send(Event::Connected { node, result });
        });
        None
    }

    fn start_metadata_refresh(&mut self, now: Instant) {
        self.metadata_refreshing = true;
        self.last_metadata = Some(now);
        let cluster = self.cluster.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let r = cluster.refresh_metadata(&[]).await;
            let _ = tx.send(Event::Metadata(r));
        });
    }

    fn start_init_producer_id(&mut self, bump_from: Option<ProducerIdentity>) {
        self.pid_requesting = true;
        let cluster = self.cluster.clone();
        let tx = self.tx.clone();
        let timeout = self.request_timeout;
        tokio::spawn(async move {
            let result = match tokio::time::timeout(
                timeout * 2,
                init_producer_id(&cluster, bump_from),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(Error::Timeout("InitProducerId".into())),
            };
            let _ = tx.send(Event::ProducerId { result });
        });
    }

    /// Takes the sendable batches. Returns them per broker, whether metadata
    /// is needed, whether more could go right away (a request filled up),
    /// the expired batches, and the next timer.
    #[allow(clippy::type_complexity)]
    fn drain(
        &mut self,
        now: Instant,
    ) -> (
        Vec<(i32, Vec<ProducerBatch>)>,
        bool,
        bool,
        Vec<(ProducerBatch, Error)>,
        Option<Instant>,
    ) {
        let all_ready = self.acc.flushing() || self.acc.memory_exhausted();
        let mut next: Option<Instant> = None;
        let mut need_metadata = false;
        let mut more = false;
        let mut expired = Vec::new();
        let mut per_node: HashMap<i32, (usize, Vec<ProducerBatch>)> = HashMap::new();
        let acc = self.acc.clone();
        let mut st = acc.lock();

        let mut keys: Vec<TopicPartition> = Vec::with_capacity(st.queues.len());
        st.queues.retain(|tp, dq| {
            if dq.is_empty() {
                return false;
            }
            keys.push(tp.clone());
            true
        });
        if keys.is_empty() {
            return (Vec::new(), false, false, expired, None);
        }
        self.rotation = self.rotation.wrapping_add(1);
        let start = self.rotation % keys.len();
        // Split pieces are rare: one pass here keeps the check below off
        // the hot path.
        let is_piece = |b: &ProducerBatch| b.split_span < ROOT_SPLIT_SPAN;
        let pieces_in_flight = self
            .in_flight
            .values()
            .any(|f| f.batches.iter().any(is_piece));
        let mut topics: HashMap<Arc<str>, Option<Arc<crate::net::TopicInfo>>> = HashMap::new();

        for i in 0..keys.len() {
            let tp = &keys[(start + i) % keys.len()];
            let Some(dq) = st.queues.get_mut(tp) else {
                continue;
            };
            // Expire (oldest first: queues are in creation order).
            while let Some(front) = dq.front() {
                let deadline = front.created + self.delivery_timeout;
                if deadline > now {
                    break;
                }
                if let Some(b) = dq.pop_front() {
                    let n = b.record_count();
                    let last = b
                        .last_error
                        .as_ref()
                        .map(|e| format!("; last error: {e}"))
                        .unwrap_or_default();
                    let err = Error::Timeout(format!(
                        "expiring {n} record(s) for {tp}: {} ms has passed since batch creation{last}",
                        self.delivery_timeout.as_millis()
                    ));
                    expired.push((b, err));
                }
            }
            let Some(front) = dq.front() else { continue };
            if let Some(t) = dq.front().map(|b| b.created + self.delivery_timeout) {
                if next.is_none_or(|n| t < n) {
                    next = Some(t);
                }
            }
            let ready_at = acc.front_ready_at(dq, all_ready).unwrap_or(now);
            if ready_at > now {
                if next.is_none_or(|n| ready_at < n) {
                    next = Some(ready_at);
                }
                continue;
            }
            // Leader.
            let info = topics
                .entry(tp.topic.clone())
                .or_insert_with(|| self.cluster.topic(&tp.topic))
                .clone();
            let leader = info
                .as_ref()
                .and_then(|t| t.partitions.iter().find(|p| p.partition == tp.partition))
                .map(|p| p.leader)
                .filter(|l| *l >= 0);
            let Some(node) = leader else {
                need_metadata = true;
                continue;
            };
            // The pieces of a split batch go one at a time, and nothing of
            // their partition overtakes them: a piece may be refused and
            // split again, and records must still land in send order.
            let front_is_piece = is_piece(front);
            if (front_is_piece || pieces_in_flight)
                && self.in_flight.values().any(|f| {
                    f.batches
                        .iter()
                        .any(|b| b.tp == *tp && (front_is_piece || is_piece(b)))
                })
            {
                continue;
            }
            let size = front.size;
            let node_busy = self.node_in_flight.get(&node).copied().unwrap_or(0);
            match per_node.get(&node) {
                None if node_busy >= self.max_in_flight => continue,
                Some((used, _)) if *used + size > self.max_request_size => {
                    more = true;
                    continue;
                }
                _ => {}
            }
            if let Some(txn) = &self.txn {
                // Batches go out only inside a transaction, and only to
                // partitions already added to it.
                if !txn.can_send_batches() {
                    continue;
                }
                if !txn.is_added(tp) {
                    self.txn_want_add.insert(tp.clone());
                    continue;
                }
            }
            if self.connection(node, now).is_none() {
                continue;
            }
            if let Some(idem) = &mut self.idem {
                idem.maybe_reset(tp, dq);
                let Some(front) = dq.front_mut() else {
                    continue;
                };
                if !idem.gate(tp, front, self.max_in_flight) {
                    continue;
                }
                idem.on_sent(tp);
            }
            let Some(mut batch) = dq.pop_front() else {
                continue;
            };
            batch.attempts += 1;
            batch.retry_at = None;
            batch.closed = true;
            let e = per_node.entry(node).or_insert((0, Vec::new()));
            e.0 += size;
            e.1.push(batch);
        }
        drop(st);
        (
            per_node.into_iter().map(|(n, (_, b))| (n, b)).collect(),
            need_metadata,
            more,
            expired,
            next,
        )
    }

    fn send_request(&mut self, node: i32, mut batches: Vec<ProducerBatch>) {
        let req_id = self.next_req;
        self.next_req += 1;
        let conn = match self.conns.get(&node) {
            Some(c) => c.clone(),
            None => {
                // Cannot happen (drain checked), but never lose batches.
                let err = Error::Connection {
                    broker: format!("node {node}"),
                    reason: "not connected".into(),
                };
                self.in_flight.insert(req_id, InFlight { node, batches });
                *self.node_in_flight.entry(node).or_insert(0) += 1;
                let n = self.in_flight.get(&req_id).map_or(0, |f| f.batches.len());
                self.on_produced(req_id, (0..n).map(|_| Err(err.clone())).collect(), Err(err));
                return;
            }
        };
        let version = conn.versions().pick(ApiKey::Produce);
        let mut work: Vec<(TopicPartition, Payload, Option<SeqAssignment>)> =
            Vec::with_capacity(batches.len());
        for b in batches.iter_mut() {
            work.push((
                b.tp.clone(),
                std::mem::replace(&mut b.payload, Payload::Taken),
                b.seq,
            ));
        }
        self.in_flight.insert(req_id, InFlight { node, batches });
        *self.node_in_flight.entry(node).or_insert(0) += 1;
        let acks = self.acks.as_i16();
        let timeout_ms = i32::try_from(self.request_timeout.as_millis()).unwrap_or(i32::MAX);
        let transactional_id = self.txn.as_ref().map(|t| t.wire_id());
        let transactional = transactional_id.is_some();
        // Encode (compress) off this task, in parallel with other requests...
        let encoded = tokio::spawn(async move {
            let tps: Vec<TopicPartition> = work.iter().map(|(tp, _, _)| tp.clone()).collect();
            let built: Vec<Result<Bytes>> = work
                .into_iter()
                .map(|(_, p, seq)| encode(p, seq, transactional))
                .collect();
            (tps, built)
        });
        // ...but put requests on the wire in drain order: the broker handles
        // a connection's requests in order, and sequence numbers of one
        // partition's pipelined batches must arrive in order.
        let d = Dispatch {
            req_id,
            conn,
            version,
            acks,
            timeout_ms,
            transactional_id,
            encoded,
        };
        let d = match self.dispatchers.get(&node) {
            Some(q) => match q.send(d) {
                Ok(()) => return,
                Err(mpsc::error::SendError(d)) => d,
            },
            None => d,
        };
        let (q, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(rx, self.tx.clone()));
        let _ = q.send(d);
        self.dispatchers.insert(node, q);
    }

    fn on_produced(
        &mut self,
        req: u64,
        built: Vec<Result<Bytes>>,
        result: Result<Option<ProduceResponse>>,
    ) {
        let Some(inf) = self.in_flight.remove(&req) else {
            return;
        };
        if let Some(n) = self.node_in_flight.get_mut(&inf.node) {
            *n = n.saturating_sub(1);
        }
        let now = Instant::now();
        let node = inf.node;
        let mut batches = inf.batches;
        let mut encode_errors: Vec<Option<Error>> = Vec::with_capacity(batches.len());
        let mut built = built.into_iter();
        for b in batches.iter_mut() {
            let bytes = built
                .next()
                .unwrap_or_else(|| Err(Error::Protocol("batch was not encoded".into())));
            match bytes {
                Ok(bytes) => {
                    b.size = bytes.len();
                    b.payload = Payload::Built(bytes);
                    encode_errors.push(None);
                }
                Err(e) => encode_errors.push(Some(e)),
            }
            if let (Some(idem), Some(_)) = (&mut self.idem, b.seq) {
                idem.on_returned(&b.tp);
            }
        }
        match result {
            Err(e) => {
                tracing::debug!(node, error = %e, batches = batches.len(), "produce request failed");
                if matches!(e, Error::Connection { .. } | Error::Timeout(_)) {
                    // Java disconnects on a request timeout too: answers on
                    // this connection can no longer be trusted to arrive.
                    self.conns.remove(&node);
                    self.cluster.invalidate_connection(node);
                    self.metadata_wanted = true;
                }
                let retriable = e.is_retriable();
                for (b, enc) in batches.into_iter().zip(encode_errors) {
                    if let Some(enc) = enc {
                        self.fail(b, enc, true);
                    } else if retriable {
                        self.retry_or_fail(b, e.clone(), now);
                    } else {
                        self.fail(b, e.clone(), false);
                    }
                }
            }
            Ok(None) => {
                // acks=0: done once written.
                for (b, enc) in batches.into_iter().zip(encode_errors) {
                    match enc {
                        Some(e) => self.fail(b, e, true),
                        None => self.acc.complete(
                            b,
                            BatchOutcome::Done {
                                base_offset: -1,
                                log_append_time: -1,
                            },
                        ),
                    }
                }
            }
            Ok(Some(resp)) => {
                let mut answers: HashMap<(&str, i32), PartitionAnswer> = HashMap::new();
                for t in &resp.responses {
                    for p in &t.partition_responses {
                        let msg = p.error_message.as_ref().map(|m| m.to_string()).or_else(|| {
                            p.record_errors.first().and_then(|r| {
                                r.batch_index_error_message.as_ref().map(|m| m.to_string())
                            })
                        });
                        answers.insert(
                            (t.name.0.as_str(), p.index),
                            (
                                ErrorCode::from_code(p.error_code),
                                p.base_offset,
                                p.log_append_time_ms,
                                msg,
                            ),
                        );
                    }
                }
                let mut outcomes = Vec::with_capacity(batches.len());
                for (b, enc) in batches.iter().zip(encode_errors) {
                    let answer = answers.get(&(&*b.tp.topic, b.tp.partition)).cloned();
                    outcomes.push((enc, answer));
                }
                drop(answers);
                for (b, (enc, answer)) in batches.into_iter().zip(outcomes) {
                    if let Some(e) = enc {
                        self.fail(b, e, true);
                        continue;
                    }
                    let Some((code, base_offset, log_append_time, msg)) = answer else {
                        let e = Error::Protocol(format!(
                            "no answer for {} in a produce response",
                            b.tp
                        ));
                        self.retry_or_fail(b, e, now);
                        continue;
                    };
                    self.on_partition_answer(b, code, base_offset, log_append_time, msg, now);
                }
            }
        }
    }

    fn on_partition_answer(
        &mut self,
        b: ProducerBatch,
        code: ErrorCode,
        base_offset: i64,
        log_append_time: i64,
        msg: Option<String>,
        now: Instant,
    ) {
        let verdict = match (&mut self.idem, b.seq) {
            (Some(idem), Some(seq)) => idem.classify(&b.tp, seq, b.record_count(), code),
            _ => match code {
                ErrorCode::None => Verdict::Success,
                c if c.is_retriable() => Verdict::Retry,
                _ => Verdict::Fail,
            },
        };
        let err = Error::kafka_with(code, msg);
        if code != ErrorCode::None {
            tracing::debug!(partition = %b.tp, error = %err, ?verdict, attempts = b.attempts, "produce error");
        }
        if code.invalidates_metadata() {
            self.metadata_wanted = true;
        }
        // In a transaction, a lost producer or a sequence gap fails the
        // batch (and so the transaction, whose abort bumps the epoch), and
        // an old epoch means fenced; a batch is never split (its pieces
        // would need new sequences mid-transaction).
        let verdict = match verdict {
            Verdict::ResetAndRetry if self.txn.is_some() => Verdict::Fail,
            v => v,
        };
        let splittable = self.txn.is_none();
        match verdict {
            Verdict::Success => {
                if let (Some(idem), Some(seq)) = (&mut self.idem, b.seq) {
                    idem.on_acked(&b.tp, seq, b.record_count());
                }
                // A duplicate may come back without its original offset.
                let base_offset = if code == ErrorCode::None {
                    base_offset
                } else {
                    base_offset.max(-1)
                };
                self.acc.complete(
                    b,
                    BatchOutcome::Done {
                        base_offset,
                        log_append_time,
                    },
                );
            }
            Verdict::Retry => self.retry_or_fail(b, err, now),
            Verdict::ResetAndRetry => {
                if let Some(idem) = &mut self.idem {
                    idem.request_reset(&b.tp);
                }
                self.retry_or_fail(b, err, now);
            }
            Verdict::Fail
                if splittable && code == ErrorCode::MessageTooLarge && b.record_count() > 1 =>
            {
                // Not written: give its sequences back (the partition's
                // sequence is reset, as for any unwritten batch), then send
                // it again as two batches. Halving repeats until the pieces
                // fit or are single records, which then fail for good.
                tracing::info!(partition = %b.tp, records = b.record_count(), "MESSAGE_TOO_LARGE: splitting the batch in two");
                let mut b = b;
                if let (Some(idem), Some(seq)) = (&mut self.idem, b.seq.take()) {
                    idem.on_dropped(&b.tp, seq, true);
                }
                if let Err(failed) = self.acc.split_in_two(b) {
                    let (b, e) = *failed;
                    tracing::warn!(partition = %b.tp, error = %e, "cannot split the batch");
                    self.fail(b, err, true);
                }
            }
            Verdict::Fail => self.fail(b, err, true),
        }
    }

    /// Fails a batch. `not_written`: the broker surely did not write it.
    fn fail(&mut self, b: ProducerBatch, err: Error, not_written: bool) {
        if let (Some(idem), Some(seq)) = (&mut self.idem, b.seq) {
            idem.on_dropped(&b.tp, seq, not_written);
        }
        if let Some(txn) = &self.txn {
            txn.on_send_failed(&err, b.seq.is_some());
        }
        self.acc.complete(b, BatchOutcome::Failed(err));
    }

    fn retry_or_fail(&mut self, mut b: ProducerBatch, err: Error, now: Instant) {
        let deadline = b.created + self.delivery_timeout;
        if now >= deadline {
            let e = Error::Timeout(format!(
                "expiring {} record(s) for {}: {} ms has passed since batch creation; last error: {err}",
                b.record_count(),
                b.tp,
                self.delivery_timeout.as_millis()
            ));
            return self.fail(b, e, false);
        }
        if b.attempts > self.retries {
            return self.fail(b, err, false);
        }
        b.retry_at = Some(now + self.retry_backoff);
        b.last_error = Some(err);
        let acc = self.acc.clone();
        let mut st = acc.lock();
        acc.reenqueue(&mut st, b);
    }

    /// Forced close: every queued and in-flight batch fails.
    fn abort_all(&mut self) {
        let err = Error::Timeout("the producer was closed before the record was delivered".into());
        let in_flight: Vec<InFlight> = self.in_flight.drain().map(|(_, f)| f).collect();
        for f in in_flight {
            for b in f.batches {
                self.acc.complete(b, BatchOutcome::Failed(err.clone()));
            }
        }
        let n = self.acc.abort_queued(&err);
        if n > 0 {
            tracing::warn!(batches = n, "producer closed with undelivered batches");
        }
    }
}

/// The bytes to send for a batch: encoded now (first send) with its
/// producer fields, or the earlier bytes (restamped after an epoch bump).
/// `transactional` flags the batch as part of a transaction.
pub(crate) fn encode(p: Payload, seq: Option<SeqAssignment>, transactional: bool) -> Result<Bytes> {
    match p {
        Payload::Open(b) => Ok(match seq {
            Some(s) => b
                .with_producer(s.ident.id, s.ident.epoch, s.wire_sequence())
                .with_transactional(transactional)
                .build(),
            None => b.build(),
        }),
        Payload::Built(bytes) => match seq {
            Some(s) => idempotence::stamp(bytes, &s),
            None => Ok(bytes),
        },
        Payload::Taken => Err(Error::Protocol("batch payload missing".into())),
    }
}

/// One Produce request for the encoded batches (`None` if none encoded).
fn produce_request(
    acks: i16,
    timeout_ms: i32,
    transactional_id: Option<kafka_protocol::messages::TransactionalId>,
    tps: &[TopicPartition],
    built: &[Result<Bytes>],
) -> Option<ProduceRequest> {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for (tp, bytes) in tps.iter().zip(built) {
        let Ok(bytes) = bytes else { continue };
        let i = match topics.iter().position(|t| t.name.0.as_str() == &*tp.topic) {
            Some(i) => i,
            None => {
                let mut t = TopicProduceData::default();
                t.name = TopicName(StrBytes::from_string(tp.topic.to_string()));
                topics.push(t);
                topics.len() - 1
            }
        };
        let mut p = PartitionProduceData::default();
        p.index = tp.partition;
        p.records = Some(bytes.clone());
        topics[i].partition_data.push(p);
    }
    if topics.is_empty() {
        return None;
    }
    let mut req = ProduceRequest::default();
    req.transactional_id = transactional_id;
    req.acks = acks;
    req.timeout_ms = timeout_ms;
    req.topic_data = topics;
    Some(req)
}

async fn init_producer_id(
    cluster: &Cluster,
    bump_from: Option<ProducerIdentity>,
) -> Result<ProducerIdentity> {
    let conn = cluster.any_connection().await?;
    let v = conn.versions().pick(ApiKey::InitProducerId)?;
    let mut req = InitProducerIdRequest::default();
    req.transactional_id = None;
    req.transaction_timeout_ms = i32::MAX;
    match bump_from {
        Some(cur) if v >= 3 => {
            req.producer_id = ProducerId(cur.id);
            req.producer_epoch = cur.epoch;
        }
        _ => {
            req.producer_id = ProducerId(-1);
            req.producer_epoch = -1;
        }
    }
    let resp = conn.send_versioned(&req, v).await?;
    if resp.error_code != ErrorCode::None.code() {
        return Err(Error::from_wire(
            resp.error_code,
            Some("InitProducerId".into()),
        ));
    }
    Ok(ProducerIdentity {
        id: resp.producer_id.0,
        epoch: resp.producer_epoch,
    })
}
