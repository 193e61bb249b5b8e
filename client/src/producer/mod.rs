//! The producer: `send` puts a record into the accumulator and returns a
//! future of its delivery; one sender task per producer batches, compresses
//! and sends records, retries what can be retried and reports each
//! record's topic, partition, offset and timestamp. Semantics follow the
//! Java client: `linger.ms` and `batch.size` batching, `buffer.memory`
//! backpressure bounded by `max.block.ms`, acks 0/1/all, idempotence on by
//! default (ordered, duplicate-free retries), the Java partition for a key,
//! sticky partitioning for records without one, `flush` and `close`, and
//! transactions (with a `transactional.id`: `init_transactions`,
//! `begin_transaction`, `send_offsets_to_transaction`, `commit_transaction`,
//! `abort_transaction`).
//!
//! - `accumulator`: per-partition batches, readiness, buffer memory.
//! - `completion`: one shared outcome cell per batch, the records'
//!   [`DeliveryFuture`]s.
//! - `partitioner`: murmur2, sticky, the [`Partitioner`] trait.
//! - `sender`: the task that drains batches into Produce requests.
//! - `idempotence`: producer id, epochs and sequence numbers.
//! - `transaction`: the transaction state machine and the transactional
//!   calls (KIP-98, KIP-360, KIP-447).
//!
//! Records sent from one task keep their order: `send` enqueues at once
//! when it can, and when it must wait (buffer space, metadata of a new
//! topic) later calls queue behind it in call order.
//!
//! ```no_run
//! # async fn demo() -> sluice::Result<()> {
//! use sluice::producer::{Producer, ProducerRecord};
//! let cfg = sluice::ProducerConfig::builder().bootstrap_servers("127.0.0.1:9092").build()?;
//! let producer = Producer::connect(cfg).await?;
//! let md = producer.send(ProducerRecord::new("events").key("user-1").value("{}")).await?;
//! println!("{}-{}@{}", md.topic, md.partition, md.offset);
//! producer.close(std::time::Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```

mod accumulator;
mod batch;
mod completion;
mod idempotence;
mod partitioner;
mod sender;
mod transaction;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_protocol::batch::RecordHeader;
use sluice_protocol::clock::now_ms;
use tokio::sync::{oneshot, Notify};

pub use completion::DeliveryFuture;
pub use partitioner::{Murmur2Partitioner, Partitioner, RoundRobinPartitioner};
pub use transaction::TransactionState;

use accumulator::{record_size_upper_bound, Accumulator, AccumulatorConfig, Append};
use partitioner::{keyed_partition, Sticky};
use sender::{Sender, SenderCommands, SenderControl};
use transaction::TxnShared;

use crate::config::ProducerConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::net::{Cluster, PartitionInfo, TopicInfo};

/// A record to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerRecord {
    pub topic: String,
    /// An explicit partition; else the partitioner chooses.
    pub partition: Option<i32>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Option<Bytes>)>,
    /// Create time in ms since the epoch; now when absent.
    pub timestamp: Option<i64>,
}

impl ProducerRecord {
    pub fn new(topic: impl Into<String>) -> Self {
        ProducerRecord {
            topic: topic.into(),
            ..Default::default()
        }
    }
    pub fn key(mut self, key: impl Into<Bytes>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn value(mut self, value: impl Into<Bytes>) -> Self {
        self.value = Some(value.into());
        self
    }
    pub fn partition(mut self, partition: i32) -> Self {
        self.partition = Some(partition);
        self
    }
    pub fn header(mut self, key: impl Into<String>, value: impl Into<Bytes>) -> Self {
        self.headers.push((key.into(), Some(value.into())));
        self
    }
    pub fn null_header(mut self, key: impl Into<String>) -> Self {
        self.headers.push((key.into(), None));
        self
    }
    pub fn timestamp(mut self, ms: i64) -> Self {
        self.timestamp = Some(ms);
        self
    }
}

/// Where a record was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMetadata {
    pub topic: String,
    pub partition: i32,
    /// -1 when unknown (acks=0).
    pub offset: i64,
    /// The broker's LogAppendTime for such topics, else the record's create time.
    pub timestamp: i64,
}

enum SendState {
    Failed(Option<Error>),
    Waiting(oneshot::Receiver<Result<DeliveryFuture>>),
    Delivering(DeliveryFuture),
}

/// What [`Producer::send`] returns: the record is already in the
/// accumulator, or queued to enter it in call order; the future resolves
/// with its delivery.
#[must_use = "the record is sent anyway; await this to learn its outcome"]
pub struct SendFuture(SendState);

impl Future for SendFuture {
    type Output = Result<RecordMetadata>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            match &mut self.0 {
                SendState::Failed(e) => return Poll::Ready(Err(e.take().unwrap_or(Error::Closed))),
                SendState::Waiting(rx) => match Pin::new(rx).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(_)) => return Poll::Ready(Err(Error::Closed)),
                    Poll::Ready(Ok(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(Ok(d))) => self.0 = SendState::Delivering(d),
                },
                SendState::Delivering(d) => return Pin::new(d).poll(cx),
            }
        }
    }
}

/// How a send started.
enum Start {
    Ready(DeliveryFuture),
    Failed(Error),
    /// Queued in the backlog; resolves once in the accumulator.
    Waiting(oneshot::Receiver<Result<DeliveryFuture>>),
}

/// A record that must wait (for buffer space or metadata) before it can
/// enter the accumulator.
struct Waiting {
    record: ProducerRecord,
    deadline: Instant,
    tx: oneshot::Sender<Result<DeliveryFuture>>,
}

/// Sends that must wait, served first come first served by one task, so
/// records enter the accumulator in call order. While it is not empty (or
/// its task is busy) every send joins it.
#[derive(Default)]
struct Backlog {
    state: Mutex<BacklogState>,
    /// Records queued or being served (`items.len()` plus `busy`), kept
    /// apart so the per-send "is anyone waiting" check takes no lock.
    outstanding: AtomicUsize,
    notify: Notify,
    /// Signalled each time a waiting record has been served.
    served: Notify,
}

#[derive(Default)]
struct BacklogState {
    items: VecDeque<Waiting>,
    busy: bool,
    closed: bool,
    /// Records ever queued / served, for `flush`.
    pushed: u64,
    done: u64,
}

impl Backlog {
    fn lock(&self) -> std::sync::MutexGuard<'_, BacklogState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) == 0
    }

    fn close(&self) {
        let items: Vec<Waiting> = {
            let mut b = self.lock();
            b.closed = true;
            let items: Vec<Waiting> = b.items.drain(..).collect();
            self.outstanding.fetch_sub(items.len(), Ordering::AcqRel);
            items
        };
        for w in items {
            let _ = w.tx.send(Err(Error::Closed));
        }
        self.notify.notify_one();
        self.served.notify_waiters();
    }

    /// The backlog's task: holds the producer only while serving a record.
    async fn run(self: Arc<Self>, inner: Weak<Inner>) {
        loop {
            let item = {
                let mut b = self.lock();
                match b.items.pop_front() {
                    Some(w) => {
                        b.busy = true;
                        Some(w)
                    }
                    None if b.closed => return,
                    None => None,
                }
            };
            let Some(w) = item else {
                self.notify.notified().await;
                continue;
            };
            let r = match inner.upgrade() {
                Some(inner) => inner.enqueue_waiting(w.record, w.deadline).await,
                None => Err(Error::Closed),
            };
            let _ = w.tx.send(r);
            {
                let mut b = self.lock();
                b.busy = false;
                b.done += 1;
                self.outstanding.fetch_sub(1, Ordering::AcqRel);
            }
            self.served.notify_waiters();
        }
    }

    /// Waits until every record queued so far has entered the accumulator
    /// (or failed to).
    async fn drained(&self) {
        let target = self.lock().pushed;
        loop {
            let notified = self.served.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let b = self.lock();
                if b.done >= target || b.closed {
                    return;
                }
            }
            notified.await;
        }
    }
}

struct Inner {
    cfg: ProducerConfig,
    cluster: Arc<Cluster>,
    acc: Arc<Accumulator>,
    partitioner: Option<Arc<dyn Partitioner>>,
    sticky: Sticky,
    /// The metadata of the topic sent to last. Current while the cluster's
    /// map still holds it: a refresh (or a deletion) replaces the map's
    /// `Arc`, leaving this one its only holder (strong count 1), and the
    /// next send looks the topic up again. Saves a run of sends to one
    /// topic the cluster lock and a SipHash lookup per record. Held
    /// through the append, so the count never includes our own clones.
    topic_cache: Mutex<Option<Arc<TopicInfo>>>,
    backlog: Arc<Backlog>,
    closed: AtomicBool,
    control: Arc<SenderControl>,
    commands: SenderCommands,
    /// With a `transactional.id`: the transaction state the sender shares.
    txn: Option<Arc<TxnShared>>,
    sender: tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is gone: the sender delivers what is queued and stops.
        self.backlog.close();
        self.acc.begin_close();
    }
}

/// A Kafka producer. Cheap to clone (handles share one producer); `Send`
/// and `Sync`. Dropping the last handle without `close` lets queued
/// records go out in the background.
#[derive(Clone)]
pub struct Producer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("client_id", &self.inner.cfg.client.client_id)
            .finish()
    }
}

/// The synchronous attempt's outcome.
enum Fast {
    Done(DeliveryFuture),
    Failed(Error),
    Blocked(ProducerRecord),
}

impl Producer {
    /// Connects to the cluster and starts the sender.
    pub async fn connect(cfg: ProducerConfig) -> Result<Producer> {
        Self::build(cfg, None).await
    }

    /// Like [`connect`](Self::connect), with a custom partitioner for every
    /// record that has no explicit partition.
    pub async fn with_partitioner(
        cfg: ProducerConfig,
        partitioner: Arc<dyn Partitioner>,
    ) -> Result<Producer> {
        Self::build(cfg, Some(partitioner)).await
    }

    async fn build(
        cfg: ProducerConfig,
        partitioner: Option<Arc<dyn Partitioner>>,
    ) -> Result<Producer> {
        cfg.validate()?;
        let cluster = Cluster::connect(cfg.client.clone()).await?;
        Ok(Self::from_cluster(cluster, cfg, partitioner))
    }

    /// A producer over an existing cluster view (shared with other clients).
    pub fn from_cluster(
        cluster: Arc<Cluster>,
        cfg: ProducerConfig,
        partitioner: Option<Arc<dyn Partitioner>>,
    ) -> Producer {
        let acc = Arc::new(Accumulator::new(AccumulatorConfig {
            batch_size: cfg.batch_size,
            linger: cfg.linger,
            compression: cfg.compression,
            buffer_memory: cfg.buffer_memory,
        }));
        let control = Arc::new(SenderControl::default());
        let txn = cfg
            .transactional_id
            .clone()
            .map(|id| Arc::new(TxnShared::new(id, cfg.transaction_timeout)));
        let sender = Sender::new(
            &cfg,
            acc.clone(),
            cluster.clone(),
            control.clone(),
            txn.clone(),
        );
        let commands = sender.commands();
        let handle = tokio::spawn(sender.run());
        let backlog = Arc::new(Backlog::default());
        let inner = Arc::new(Inner {
            cfg,
            cluster,
            acc,
            partitioner,
            sticky: Sticky::default(),
            topic_cache: Mutex::new(None),
            backlog: backlog.clone(),
            closed: AtomicBool::new(false),
            control,
            commands,
            txn,
            sender: tokio::sync::Mutex::new(Some(handle)),
        });
        tokio::spawn(backlog.run(Arc::downgrade(&inner)));
        Producer { inner }
    }

    pub fn config(&self) -> &ProducerConfig {
        &self.inner.cfg
    }

    /// The cluster view this producer uses (metadata, connections).
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    /// Sends a record. It enters the accumulator before this returns when
    /// the topic's metadata is known and there is buffer space; otherwise
    /// it waits in a queue, in call order, for them (up to `max.block.ms`,
    /// then `Error::Timeout`) whether or not the future is polled. The
    /// future resolves when the record is acknowledged as `acks` asks, or
    /// failed for good. Calling `send` in a loop without awaiting anything
    /// bypasses backpressure: use [`enqueue`](Self::enqueue) for that.
    pub fn send(&self, record: ProducerRecord) -> SendFuture {
        SendFuture(match self.start(record) {
            Start::Ready(d) => SendState::Delivering(d),
            Start::Failed(e) => SendState::Failed(Some(e)),
            Start::Waiting(rx) => SendState::Waiting(rx),
        })
    }

    /// Two-step send, for pipelining with backpressure: the outer future
    /// resolves once the record is in the accumulator (waiting for buffer
    /// space or metadata as `send` does), the inner one on delivery.
    pub fn enqueue(
        &self,
        record: ProducerRecord,
    ) -> impl Future<Output = Result<DeliveryFuture>> + Send + 'static {
        let start = self.start(record);
        async move {
            match start {
                Start::Ready(d) => Ok(d),
                Start::Failed(e) => Err(e),
                Start::Waiting(rx) => rx.await.unwrap_or(Err(Error::Closed)),
            }
        }
    }

    fn start(&self, record: ProducerRecord) -> Start {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Relaxed) {
            return Start::Failed(Error::Closed);
        }
        if let Some(Err(e)) = inner.txn.as_ref().map(|t| t.check_send()) {
            return Start::Failed(e);
        }
        let record = if inner.backlog.idle() {
            match inner.try_enqueue_now(record) {
                Fast::Done(d) => return Start::Ready(d),
                Fast::Failed(e) => return Start::Failed(e),
                Fast::Blocked(r) => r,
            }
        } else {
            record
        };
        let (tx, rx) = oneshot::channel();
        let deadline = Instant::now() + inner.cfg.max_block;
        {
            let mut b = inner.backlog.lock();
            if b.closed {
                return Start::Failed(Error::Closed);
            }
            b.items.push_back(Waiting {
                record,
                deadline,
                tx,
            });
            b.pushed += 1;
            inner.backlog.outstanding.fetch_add(1, Ordering::AcqRel);
        }
        inner.backlog.notify.notify_one();
        Start::Waiting(rx)
    }

    /// Sends a record given by reference, if it can enter the accumulator
    /// right now: the topic's metadata is known, there is buffer space and
    /// no earlier send is still waiting (so call order holds). Returns
    /// `None` when it would have to wait; then nothing was sent, and the
    /// caller goes on with [`send`](Self::send) or
    /// [`enqueue`](Self::enqueue) and an owned record. Otherwise the same
    /// as `enqueue` for a record without headers, minus building the
    /// record: for callers (bindings) whose key and value live in buffers
    /// of their own, which the batch then copies once.
    pub fn try_send_now(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        timestamp: Option<i64>,
    ) -> Option<Result<DeliveryFuture>> {
        let inner = &self.inner;
        if inner.closed.load(Ordering::Relaxed) {
            return Some(Err(Error::Closed));
        }
        if let Some(Err(e)) = inner.txn.as_ref().map(|t| t.check_send()) {
            return Some(Err(e));
        }
        if !inner.backlog.idle() {
            return None;
        }
        inner.try_append_now(&RecordRef {
            topic,
            partition,
            key,
            value,
            headers: &[],
            timestamp,
        })
    }

    /// Waits until every record sent before this call has completed
    /// (delivered or failed); lingering batches go out at once.
    pub async fn flush(&self) {
        self.inner.backlog.drained().await;
        self.inner.acc.flush().await
    }

    /// Stops taking records, delivers what is queued for up to `timeout`,
    /// then fails whatever is left (`Error::Timeout`) and stops the sender.
    /// Returns `Err(Timeout)` if records had to be failed.
    pub async fn close(&self, timeout: Duration) -> Result<()> {
        self.inner.closed.store(true, Ordering::Relaxed);
        self.inner.backlog.close();
        self.inner.acc.begin_close();
        let mut handle = self.inner.sender.lock().await;
        let Some(h) = handle.as_mut() else {
            return Ok(());
        };
        let graceful = tokio::time::timeout(timeout, &mut *h).await.is_ok();
        if !graceful {
            self.inner
                .control
                .force_close
                .store(true, Ordering::Relaxed);
            self.inner.acc.wake.notify_one();
            let _ = h.await;
        }
        *handle = None;
        if graceful {
            Ok(())
        } else {
            Err(Error::Timeout(format!(
                "close: records still undelivered after {timeout:?} were failed"
            )))
        }
    }

    /// The topic's partitions (waiting up to `max.block.ms` for metadata).
    pub async fn partitions_for(&self, topic: &str) -> Result<Vec<PartitionInfo>> {
        let deadline = Instant::now() + self.inner.cfg.max_block;
        Ok(self
            .inner
            .wait_for_topic(topic, None, deadline)
            .await?
            .partitions
            .clone())
    }
}

impl Inner {
    /// The synchronous path: metadata known and buffer space free now.
    fn try_enqueue_now(&self, mut record: ProducerRecord) -> Fast {
        let headers = take_headers(&mut record);
        let r = RecordRef::of(&record, &headers);
        match self.try_append_now(&r) {
            Some(Ok(d)) => Fast::Done(d),
            Some(Err(e)) => Fast::Failed(e),
            None => {
                record.headers = headers.into_iter().map(|h| (h.key, h.value)).collect();
                Fast::Blocked(record)
            }
        }
    }

    /// [`try_enqueue_now`](Self::try_enqueue_now) on borrowed parts; `None`
    /// when the record must wait (nothing was taken).
    fn try_append_now(&self, r: &RecordRef<'_>) -> Option<Result<DeliveryFuture>> {
        let mut cache = self.topic_cache.lock().unwrap_or_else(|e| e.into_inner());
        let current = cache
            .as_ref()
            .is_some_and(|t| t.name == r.topic && Arc::strong_count(t) > 1);
        if !current {
            *cache = self.cluster.topic(r.topic);
        }
        let info = cache.as_deref().filter(|t| !t.partitions.is_empty())?;
        if let Some(p) = r.partition {
            if p < 0 {
                return Some(Err(Error::RecordRejected(format!("invalid partition {p}"))));
            }
            if p as usize >= info.partitions.len() {
                return None; // maybe the topic grew: refresh first
            }
        }
        let size = match self.check_size(r) {
            Ok(s) => s,
            Err(e) => return Some(Err(e)),
        };
        match self.acc.try_reserve(size) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => return Some(Err(e)),
        }
        Some(self.append(info, r, size))
    }

    /// The waiting path, run in call order: metadata, then buffer space.
    async fn enqueue_waiting(
        &self,
        mut record: ProducerRecord,
        deadline: Instant,
    ) -> Result<DeliveryFuture> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed);
        }
        let info = self
            .wait_for_topic(&record.topic, record.partition, deadline)
            .await?;
        let headers = take_headers(&mut record);
        let r = RecordRef::of(&record, &headers);
        let size = self.check_size(&r)?;
        if !self.acc.try_reserve(size)? {
            self.acc.reserve(size, deadline).await?;
        }
        self.append(&info, &r, size)
    }

    fn check_size(&self, r: &RecordRef<'_>) -> Result<usize> {
        let size = record_size_upper_bound(r.key, r.value, r.headers);
        if size > self.cfg.max_request_size {
            return Err(Error::RecordRejected(format!(
                "the record is {size} bytes when serialized, larger than max.request.size ({})",
                self.cfg.max_request_size
            )));
        }
        if size > self.cfg.buffer_memory {
            return Err(Error::RecordRejected(format!(
                "the record is {size} bytes when serialized, larger than buffer.memory ({})",
                self.cfg.buffer_memory
            )));
        }
        Ok(size)
    }

    /// Picks the partition and appends; `size` bytes of memory are reserved
    /// (given back here on failure).
    fn append(&self, info: &TopicInfo, r: &RecordRef<'_>, size: usize) -> Result<DeliveryFuture> {
        let res = self.append_inner(info, r, size);
        if res.is_err() {
            self.acc.release(size);
        }
        res
    }

    fn append_inner(
        &self,
        info: &TopicInfo,
        r: &RecordRef<'_>,
        size: usize,
    ) -> Result<DeliveryFuture> {
        let n = info.partitions.len() as i32;
        let RecordRef {
            topic,
            key,
            value,
            headers,
            ..
        } = *r;
        let timestamp = r.timestamp.unwrap_or_else(now_ms);
        let (partition, sticky) = match (r.partition, &self.partitioner) {
            (Some(p), _) => (p, false),
            (None, Some(custom)) => {
                let p = custom.partition(topic, key, value, n);
                if !(0..n).contains(&p) {
                    return Err(Error::RecordRejected(format!(
                        "the partitioner chose partition {p} of topic {topic} which has {n}"
                    )));
                }
                (p, false)
            }
            (None, None) => match keyed_partition(key, self.cfg.partitioner_ignore_keys, n) {
                Some(p) => (p, false),
                None => (self.sticky.partition(topic, || available(info), n), true),
            },
        };
        match self.acc.append(
            topic, partition, timestamp, key, value, headers, size, sticky,
        )? {
            Append::Appended(d, _) => Ok(d),
            Append::NewBatchNeeded => {
                let p = self
                    .sticky
                    .on_new_batch(topic, partition, &available(info), n);
                match self
                    .acc
                    .append(topic, p, timestamp, key, value, headers, size, false)?
                {
                    Append::Appended(d, _) => Ok(d),
                    Append::NewBatchNeeded => Err(Error::Protocol(
                        "internal: append refused a new batch".into(),
                    )),
                }
            }
        }
    }

    /// Metadata for `topic` (with `partition` in range when given), waiting
    /// and refreshing until `deadline`.
    async fn wait_for_topic(
        &self,
        topic: &str,
        partition: Option<i32>,
        deadline: Instant,
    ) -> Result<Arc<TopicInfo>> {
        if let Some(p) = partition.filter(|p| *p < 0) {
            return Err(Error::RecordRejected(format!("invalid partition {p}")));
        }
        let names = [topic.to_string()];
        let mut refreshed = false;
        loop {
            // Errors that waiting cannot cure fail the send at once, as the
            // Java producer does (TOPIC_AUTHORIZATION_FAILED, INVALID_TOPIC_EXCEPTION).
            if let Some(info) = self.cluster.topic(topic).filter(|t| {
                refreshed
                    && matches!(
                        t.error,
                        ErrorCode::InvalidTopicException | ErrorCode::TopicAuthorizationFailed
                    )
            }) {
                return Err(Error::kafka_with(
                    info.error,
                    Some(format!("topic {topic}")),
                ));
            }
            if let Some(info) = self
                .cluster
                .topic(topic)
                .filter(|t| !t.partitions.is_empty())
            {
                match partition {
                    Some(p) if p as usize >= info.partitions.len() => {
                        if refreshed {
                            return Err(Error::RecordRejected(format!(
                                "partition {p} of topic {topic} does not exist (it has {} partitions)",
                                info.partitions.len()
                            )));
                        }
                    }
                    _ => return Ok(info),
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "topic {topic} not present in metadata after {} ms",
                    self.cfg.max_block.as_millis()
                )));
            }
            if refreshed {
                let pause = self
                    .cfg
                    .client
                    .retry_backoff
                    .min(deadline.saturating_duration_since(Instant::now()));
                tokio::time::sleep(pause).await;
            }
            let r = if refreshed {
                tokio::time::timeout_at(deadline.into(), self.cluster.refresh_metadata(&names))
                    .await
            } else {
                tokio::time::timeout_at(deadline.into(), async {
                    self.cluster.ensure_topics(&names).await?;
                    self.cluster.refresh_metadata(&names).await
                })
                .await
            };
            refreshed = true;
            if let Ok(Err(e)) = r {
                tracing::debug!(topic, error = %e, "metadata refresh failed while sending");
                if matches!(e, Error::Authentication(_)) {
                    return Err(e);
                }
            }
        }
    }
}

/// A record's parts, borrowed: what the append path works on, so a
/// caller holding the bytes elsewhere (a binding) need not copy them into
/// a [`ProducerRecord`] first.
#[derive(Clone, Copy)]
struct RecordRef<'a> {
    topic: &'a str,
    partition: Option<i32>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: &'a [RecordHeader],
    timestamp: Option<i64>,
}

impl<'a> RecordRef<'a> {
    /// `record` borrowed, with the headers already taken out of it (see
    /// [`take_headers`]).
    fn of(record: &'a ProducerRecord, headers: &'a [RecordHeader]) -> RecordRef<'a> {
        RecordRef {
            topic: &record.topic,
            partition: record.partition,
            key: record.key.as_deref(),
            value: record.value.as_deref(),
            headers,
            timestamp: record.timestamp,
        }
    }
}

/// Moves a record's headers into the batch codec's form.
fn take_headers(record: &mut ProducerRecord) -> Vec<RecordHeader> {
    std::mem::take(&mut record.headers)
        .into_iter()
        .map(|(key, value)| RecordHeader { key, value })
        .collect()
}

/// Partitions with a leader.
fn available(info: &TopicInfo) -> Vec<i32> {
    info.partitions
        .iter()
        .filter(|p| p.leader >= 0)
        .map(|p| p.partition)
        .collect()
}

/// The batching and encoding path without a network, for benchmarks:
/// records go through the keyed partitioner, buffer accounting and the
/// accumulator, and every closed batch is encoded (compressed, stamped
/// with a producer id and sequence) and completed, as the sender would.
#[doc(hidden)]
pub mod bench_support {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use sluice_protocol::compression::Compression;

    use super::accumulator::{record_size_upper_bound, Accumulator, AccumulatorConfig, Append};
    use super::batch::{Payload, ProducerIdentity, SeqAssignment};
    use super::completion::BatchOutcome;
    use super::partitioner::keyed_partition;
    use crate::error::{Error, Result};

    pub struct Pipeline {
        acc: Accumulator,
        topic: Arc<str>,
        partitions: i32,
        next_seq: HashMap<i32, i64>,
        /// Encoded bytes so far.
        pub bytes_out: usize,
        pub batches_out: usize,
    }

    impl Pipeline {
        pub fn new(compression: Compression, batch_size: usize, partitions: i32) -> Pipeline {
            Pipeline {
                acc: Accumulator::new(AccumulatorConfig {
                    batch_size,
                    linger: Duration::from_millis(5),
                    compression,
                    buffer_memory: 64 << 20,
                }),
                topic: Arc::from("bench"),
                partitions,
                next_seq: HashMap::new(),
                bytes_out: 0,
                batches_out: 0,
            }
        }

        /// Appends one record (keyed: murmur2 partition), encoding whatever
        /// batches that closed.
        pub fn send(&mut self, timestamp: i64, key: &[u8], value: &[u8]) -> Result<()> {
            let partition = keyed_partition(Some(key), false, self.partitions).unwrap_or(0);
            let size = record_size_upper_bound(Some(key), Some(value), &[]);
            if !self.acc.try_reserve(size)? {
                self.drain(true);
                if !self.acc.try_reserve(size)? {
                    return Err(Error::RecordRejected("bench buffer full".into()));
                }
            }
            let closed = match self.acc.append(
                &self.topic,
                partition,
                timestamp,
                Some(key),
                Some(value),
                &[],
                size,
                false,
            )? {
                Append::Appended(_d, closed) => closed,
                Append::NewBatchNeeded => false,
            };
            if closed {
                self.drain(false);
            }
            Ok(())
        }

        /// Encodes and completes closed batches (all batches if `all`).
        pub fn drain(&mut self, all: bool) {
            let mut ready = Vec::new();
            {
                let mut st = self.acc.lock();
                for q in st.queues.values_mut() {
                    while q.front().is_some_and(|b| all || b.closed) {
                        if let Some(b) = q.pop_front() {
                            ready.push(b);
                        }
                    }
                }
            }
            for mut b in ready {
                let seq = self.next_seq.entry(b.tp.partition).or_insert(0);
                let assignment = SeqAssignment {
                    ident: ProducerIdentity { id: 1, epoch: 0 },
                    base: *seq,
                };
                *seq += b.record_count() as i64;
                let payload = std::mem::replace(&mut b.payload, Payload::Taken);
                if let Ok(bytes) = super::sender::encode(payload, Some(assignment), false) {
                    self.bytes_out += bytes.len();
                    self.batches_out += 1;
                    b.payload = Payload::Built(bytes);
                }
                self.acc.complete(
                    b,
                    BatchOutcome::Done {
                        base_offset: 0,
                        log_append_time: -1,
                    },
                );
            }
        }

        /// Drains everything; returns (batches, encoded bytes).
        pub fn finish(mut self) -> (usize, usize) {
            self.drain(true);
            (self.batches_out, self.bytes_out)
        }
    }

    /// Appends `values` round-robin over `partitions` partitions of one
    /// accumulator (no encoding, no network), keeping every delivery
    /// future; returns them (the batches stay queued). The per-record cost
    /// of `Accumulator::append` and of handing out a delivery future.
    pub fn append_only(values: &[Vec<u8>], partitions: i32) -> Vec<super::DeliveryFuture> {
        let acc = Accumulator::new(AccumulatorConfig {
            batch_size: 1 << 20,
            linger: Duration::from_millis(5),
            compression: Compression::None,
            buffer_memory: 1 << 30,
        });
        let mut out = Vec::with_capacity(values.len());
        for (i, v) in values.iter().enumerate() {
            let size = record_size_upper_bound(None, Some(v), &[]);
            let p = i as i32 % partitions;
            if let Ok(Append::Appended(d, _)) =
                acc.append("bench", p, 1, None, Some(v), &[], size, false)
            {
                out.push(d);
            }
        }
        out
    }

    /// Completes one batch of `n` records and collects every record's
    /// metadata through its future: the completion path per record.
    pub fn complete_batch(n: usize) -> usize {
        use futures::FutureExt;
        let mut records = super::completion::Records::new(Arc::from("bench"), 0);
        let futures: Vec<_> = (0..n).map(|i| records.push(i as i64)).collect();
        records.settle(BatchOutcome::Done {
            base_offset: 0,
            log_append_time: -1,
        });
        futures
            .into_iter()
            .filter_map(|f| f.now_or_never())
            .filter(Result::is_ok)
            .count()
    }
}
