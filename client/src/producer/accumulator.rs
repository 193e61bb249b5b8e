//! The record accumulator: per-partition queues of batches between `send`
//! and the sender task. A record is appended to the newest open batch of
//! its partition (a [`BatchBuilder`] encoding records as they come); the
//! batch closes when it reaches `batch.size`, and the front batch of a
//! queue is ready to send when it is closed, when `linger.ms` has passed
//! since it was opened, or when a flush, a close, or a caller waiting for
//! buffer space asks for everything now. `buffer.memory` bounds the bytes
//! held by unsent and in-flight records: `send` waits (up to `max.block.ms`)
//! for space that completed batches give back. Batches that failed with a
//! retriable error come back to the front of their queue in order, and a
//! batch the broker refused as MESSAGE_TOO_LARGE comes back split in two
//! (again and again if need be, down to single records), as the Java
//! producer does.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sluice_protocol::batch::{decode_records, BatchBuilder, BatchHeader, RecordHeader};
use sluice_protocol::compression::Compression;
use tokio::sync::{Notify, Semaphore};

use super::batch::{Payload, ProducerBatch, TopicPartition, ROOT_SPLIT_SPAN};
use super::completion::{BatchOutcome, DeliveryFuture, Records};
use crate::error::{Error, ErrorCode, Result};

/// Fixed v2 batch header size.
pub(crate) const BATCH_OVERHEAD: usize = 61;

/// FxHash (rustc's hasher): the queue map is hit on every append and keyed
/// by the application's own topic names, so speed matters and flooding
/// does not.
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher(u64);

impl std::hash::Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }
    fn write_i32(&mut self, i: i32) {
        self.add(i as u32 as u64);
    }
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(crate) type FxBuild = std::hash::BuildHasherDefault<FxHasher>;

/// A queue key that can be borrowed from a `TopicPartition` or made from
/// a `(&str, i32)`, so appends look their queue up without building (and
/// allocating) a `TopicPartition`. Hashes exactly as the derived `Hash` of
/// `TopicPartition` (the topic's `str`, then the partition).
pub(crate) trait TpKey {
    fn key(&self) -> (&str, i32);
}

impl TpKey for TopicPartition {
    fn key(&self) -> (&str, i32) {
        (&self.topic, self.partition)
    }
}

impl TpKey for (&str, i32) {
    fn key(&self) -> (&str, i32) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn TpKey + 'a> for TopicPartition {
    fn borrow(&self) -> &(dyn TpKey + 'a) {
        self
    }
}

impl std::hash::Hash for dyn TpKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let (topic, partition) = self.key();
        topic.hash(h);
        partition.hash(h);
    }
}

impl PartialEq for dyn TpKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for dyn TpKey + '_ {}

pub(crate) enum Append {
    /// In a batch; `true` if a batch of the partition closed on the way
    /// (it became full, or had no room and a new one was opened).
    Appended(DeliveryFuture, bool),
    /// The partition needs a new batch and the caller asked to be told
    /// first (the sticky partitioner then moves on).
    NewBatchNeeded,
}

#[derive(Debug, Clone)]
pub(crate) struct AccumulatorConfig {
    pub batch_size: usize,
    pub linger: Duration,
    pub compression: Compression,
    pub buffer_memory: usize,
}

#[derive(Default)]
pub(crate) struct AccState {
    pub queues: HashMap<TopicPartition, VecDeque<ProducerBatch>, FxBuild>,
    next_id: u64,
    /// Ids of batches not yet completed (queued or in flight) -> pieces
    /// not yet completed (more than one once split).
    incomplete: BTreeMap<u64, u32>,
    /// One shared name per topic, for the batches' `TopicPartition`s (the
    /// append path is given a `&str`).
    names: std::collections::HashSet<Arc<str>, FxBuild>,
}

impl AccState {
    fn intern(&mut self, topic: &str) -> Arc<str> {
        if let Some(t) = self.names.get(topic) {
            return t.clone();
        }
        let t: Arc<str> = Arc::from(topic);
        self.names.insert(t.clone());
        t
    }

    /// One piece of batch `id` completed.
    fn untrack(&mut self, id: u64) {
        if let Some(n) = self.incomplete.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.incomplete.remove(&id);
            }
        }
    }
}

pub(crate) struct Accumulator {
    pub cfg: AccumulatorConfig,
    state: Mutex<AccState>,
    memory: Semaphore,
    memory_waiters: AtomicUsize,
    flushing: AtomicUsize,
    closing: AtomicBool,
    /// Wakes the sender (new batch, full batch, flush, close).
    pub wake: Notify,
    /// Signalled whenever batches complete (flush waits on it).
    completed: Notify,
}

/// An upper bound of the bytes a record adds to a batch, plus the batch
/// header: what `max.request.size` and `buffer.memory` are checked against.
pub(crate) fn record_size_upper_bound(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    headers: &[RecordHeader],
) -> usize {
    let mut n = BATCH_OVERHEAD
        + 5
        + 1
        + 10
        + 5
        + 5
        + key.map_or(0, <[u8]>::len)
        + 5
        + value.map_or(0, <[u8]>::len)
        + 5;
    for h in headers {
        n += 5 + h.key.len() + 5 + h.value.as_ref().map_or(0, Bytes::len);
    }
    n
}

impl Accumulator {
    pub fn new(cfg: AccumulatorConfig) -> Accumulator {
        let permits = cfg.buffer_memory.min(Semaphore::MAX_PERMITS);
        Accumulator {
            cfg,
            state: Mutex::new(AccState::default()),
            memory: Semaphore::new(permits),
            memory_waiters: AtomicUsize::new(0),
            flushing: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
            wake: Notify::new(),
            completed: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, AccState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- buffer.memory ----

    fn permits(bytes: usize) -> Result<u32> {
        u32::try_from(bytes)
            .map_err(|_| Error::RecordRejected(format!("record of {bytes} bytes is too large")))
    }

    /// Takes `bytes` of buffer memory if free now.
    pub fn try_reserve(&self, bytes: usize) -> Result<bool> {
        match self.memory.try_acquire_many(Self::permits(bytes)?) {
            Ok(p) => {
                p.forget();
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    /// Waits for `bytes` of buffer memory until `deadline`.
    pub async fn reserve(&self, bytes: usize, deadline: Instant) -> Result<()> {
        let n = Self::permits(bytes)?;
        self.memory_waiters.fetch_add(1, Ordering::Relaxed);
        // Full batches should go out now to give memory back.
        self.wake.notify_one();
        let r = tokio::time::timeout_at(deadline.into(), self.memory.acquire_many(n)).await;
        self.memory_waiters.fetch_sub(1, Ordering::Relaxed);
        match r {
            Ok(Ok(p)) => {
                p.forget();
                Ok(())
            }
            Ok(Err(_)) => Err(Error::Closed),
            Err(_) => Err(Error::Timeout(format!(
                "failed to allocate {bytes} bytes of buffer.memory within max.block.ms"
            ))),
        }
    }

    pub fn release(&self, bytes: usize) {
        if bytes > 0 {
            self.memory.add_permits(bytes);
        }
    }

    /// Someone is waiting for buffer memory: everything is ready to send.
    pub fn memory_exhausted(&self) -> bool {
        self.memory_waiters.load(Ordering::Relaxed) > 0
    }

    #[cfg(test)]
    pub fn available_memory(&self) -> usize {
        self.memory.available_permits()
    }

    // ---- appends ----

    /// Appends one record to `topic`-`partition`'s open batch, or a new
    /// one. The caller has reserved `reserved` bytes of buffer memory for
    /// it. The queue is found by the borrowed name: the common case (an
    /// open batch with room) neither allocates nor touches a reference
    /// count beyond the batch's completion cell.
    #[allow(clippy::too_many_arguments)]
    pub fn append(
        &self,
        topic: &str,
        partition: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
        reserved: usize,
        abort_on_new_batch: bool,
    ) -> Result<Append> {
        let est = reserved.saturating_sub(BATCH_OVERHEAD);
        let mut st = self.lock();
        let lookup: &dyn TpKey = &(topic, partition);
        let mut appended = None;
        let mut older = false;
        if let Some(dq) = st.queues.get_mut(lookup) {
            older = !dq.is_empty();
            if let Some(last) = dq.back_mut() {
                if !last.closed {
                    if let Payload::Open(b) = &mut last.payload {
                        if b.is_empty() || b.estimated_size() + est <= self.cfg.batch_size {
                            b.push(timestamp, key, value, headers).map_err(|e| {
                                Error::RecordRejected(format!("record does not encode: {e}"))
                            })?;
                            let d = last.records.push(timestamp);
                            last.reserved += reserved;
                            last.size = b.estimated_size();
                            let full = last.size >= self.cfg.batch_size;
                            last.closed = full;
                            appended = Some((d, full));
                        }
                    }
                    if appended.is_none() {
                        last.closed = true;
                    }
                }
            }
        }
        if let Some((d, full)) = appended {
            drop(st);
            if full {
                self.wake.notify_one();
            }
            return Ok(Append::Appended(d, full));
        }
        if abort_on_new_batch {
            return Ok(Append::NewBatchNeeded);
        }
        let id = st.next_id;
        st.next_id += 1;
        let mut b = BatchBuilder::with_capacity(self.cfg.compression, self.cfg.batch_size.max(est));
        b.push(timestamp, key, value, headers)
            .map_err(|e| Error::RecordRejected(format!("record does not encode: {e}")))?;
        let tp = TopicPartition {
            topic: st.intern(topic),
            partition,
        };
        let mut records = Records::new(tp.topic.clone(), partition);
        let d = records.push(timestamp);
        let size = b.estimated_size();
        let batch = ProducerBatch {
            id,
            split_key: 0,
            split_span: ROOT_SPLIT_SPAN,
            tp: tp.clone(),
            payload: Payload::Open(b),
            records,
            created: Instant::now(),
            size,
            reserved,
            closed: size >= self.cfg.batch_size,
            attempts: 0,
            retry_at: None,
            seq: None,
            last_error: None,
        };
        *st.incomplete.entry(id).or_default() += 1;
        // Any older batch in the queue is closed now.
        let closed = batch.closed || older;
        st.queues.entry(tp).or_default().push_back(batch);
        drop(st);
        // A new batch starts a linger timer the sender must know about.
        self.wake.notify_one();
        Ok(Append::Appended(d, closed))
    }

    // ---- readiness ----

    pub fn flushing(&self) -> bool {
        self.flushing.load(Ordering::Relaxed) > 0 || self.closing.load(Ordering::Relaxed)
    }

    pub fn begin_close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// When the front batch of a queue may be sent (`None`: empty queue).
    /// `all_ready` (flush, close, memory exhausted) ends lingering.
    pub fn front_ready_at(&self, dq: &VecDeque<ProducerBatch>, all_ready: bool) -> Option<Instant> {
        let front = dq.front()?;
        if let Some(t) = front.retry_at {
            return Some(t);
        }
        if all_ready || front.closed || dq.len() > 1 {
            return Some(front.created);
        }
        Some(front.created + self.cfg.linger)
    }

    /// Puts a batch that will be retried back into its queue, before every
    /// newer batch (ids grow in creation order, which is sequence order).
    pub fn reenqueue(&self, st: &mut AccState, batch: ProducerBatch) {
        let dq = st.queues.entry(batch.tp.clone()).or_default();
        let key = (batch.id, batch.split_key);
        let pos = dq
            .iter()
            .position(|b| (b.id, b.split_key) > key)
            .unwrap_or(dq.len());
        dq.insert(pos, batch);
    }

    // ---- completion ----

    /// Reports a batch's outcome to its records and gives its memory back.
    pub fn complete(&self, batch: ProducerBatch, outcome: BatchOutcome) {
        {
            let mut st = self.lock();
            st.untrack(batch.id);
        }
        self.finish(batch, outcome);
        self.completed.notify_waiters();
    }

    /// [`complete`](Self::complete) for a batch whose id the caller already
    /// removed under the lock (bulk paths).
    fn finish(&self, batch: ProducerBatch, outcome: BatchOutcome) {
        let reserved = batch.reserved;
        batch.records.settle(outcome);
        self.release(reserved);
    }

    /// Fails every queued batch (close with a timeout that ran out).
    pub fn abort_queued(&self, err: &Error) -> usize {
        let batches: Vec<ProducerBatch> = {
            let mut st = self.lock();
            let mut all = Vec::new();
            for (_, dq) in st.queues.iter_mut() {
                all.extend(dq.drain(..));
            }
            for b in &all {
                st.untrack(b.id);
            }
            all
        };
        let n = batches.len();
        for b in batches {
            self.finish(b, BatchOutcome::Failed(err.clone()));
        }
        self.completed.notify_waiters();
        n
    }

    /// Number of batches not yet completed.
    pub fn incomplete(&self) -> usize {
        self.lock().incomplete.values().map(|n| *n as usize).sum()
    }

    /// Splits a batch the broker refused as too large into two halves (by
    /// record count) and puts both back at its place in the queue, each
    /// with half of its records' completions and memory. Fails (giving the
    /// batch back) if it has fewer than two records, cannot be split
    /// further, or its bytes do not decode.
    pub fn split_in_two(
        &self,
        mut batch: ProducerBatch,
    ) -> std::result::Result<(), Box<(ProducerBatch, Error)>> {
        let n = batch.record_count();
        if n < 2 || batch.split_span < 2 {
            return Err(Box::new((batch, Error::kafka(ErrorCode::MessageTooLarge))));
        }
        let bytes = match std::mem::replace(&mut batch.payload, Payload::Taken) {
            Payload::Built(b) => b,
            Payload::Open(b) => b.build(),
            Payload::Taken => {
                return Err(Box::new((
                    batch,
                    Error::Protocol("batch payload missing".into()),
                )))
            }
        };
        let decoded = BatchHeader::parse(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|h| {
                let compression = h.compression().map_err(|e| e.to_string())?;
                let records = decode_records(&bytes).map_err(|e| e.to_string())?;
                Ok((h, compression, records))
            });
        let (header, compression, records) = match decoded {
            Ok(d) if d.2.len() == n => d,
            Ok(d) => {
                batch.payload = Payload::Built(bytes);
                let e = Error::Protocol(format!(
                    "splitting a batch: {} records decoded, {n} expected",
                    d.2.len()
                ));
                return Err(Box::new((batch, e)));
            }
            Err(e) => {
                batch.payload = Payload::Built(bytes);
                return Err(Box::new((
                    batch,
                    Error::Protocol(format!("splitting a batch: {e}")),
                )));
            }
        };
        let half = n / 2;
        let build = |records: &[sluice_protocol::batch::Record]| -> Result<BatchBuilder> {
            let mut b = BatchBuilder::with_capacity(compression, bytes.len() / 2 + 64);
            for r in records {
                b.push(
                    header.base_timestamp.wrapping_add(r.timestamp_delta),
                    r.key.as_deref(),
                    r.value.as_deref(),
                    &r.headers,
                )
                .map_err(|e| Error::Protocol(format!("splitting a batch: {e}")))?;
            }
            Ok(b)
        };
        let (first_b, second_b) = match (build(&records[..half]), build(&records[half..])) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => {
                batch.payload = Payload::Built(bytes);
                return Err(Box::new((batch, e)));
            }
        };
        let second_records = batch.records.split_off(half);
        // The whole first half moves out; `batch` keeps an empty range.
        let first_records = batch.records.split_off(0);
        let span = batch.split_span / 2;
        let piece =
            |payload: BatchBuilder, records: Records, key: u64, reserved: usize| ProducerBatch {
                id: batch.id,
                split_key: key,
                split_span: span,
                tp: batch.tp.clone(),
                size: payload.estimated_size(),
                payload: Payload::Open(payload),
                records,
                created: batch.created,
                reserved,
                closed: true,
                attempts: 0,
                retry_at: None,
                seq: None,
                last_error: batch.last_error.clone(),
            };
        let first_reserved = batch.reserved / 2;
        let first = piece(first_b, first_records, batch.split_key, first_reserved);
        let second = piece(
            second_b,
            second_records,
            batch.split_key + span,
            batch.reserved - first_reserved,
        );
        let mut st = self.lock();
        *st.incomplete.entry(batch.id).or_default() += 1;
        self.reenqueue(&mut st, first);
        self.reenqueue(&mut st, second);
        drop(st);
        self.wake.notify_one();
        Ok(())
    }

    /// Waits until every batch that existed when called has completed.
    pub async fn flush(&self) {
        let mark = self.lock().next_id;
        self.flushing.fetch_add(1, Ordering::Relaxed);
        self.wake.notify_one();
        self.wait_completed_before(mark).await;
        self.flushing.fetch_sub(1, Ordering::Relaxed);
    }

    async fn wait_completed_before(&self, mark: u64) {
        loop {
            let notified = self.completed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self
                .lock()
                .incomplete
                .keys()
                .next()
                .is_none_or(|&id| id >= mark)
            {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn acc(batch_size: usize, linger_ms: u64, memory: usize) -> Accumulator {
        Accumulator::new(AccumulatorConfig {
            batch_size,
            linger: Duration::from_millis(linger_ms),
            compression: Compression::None,
            buffer_memory: memory,
        })
    }

    fn tp(p: i32) -> TopicPartition {
        TopicPartition {
            topic: Arc::from("t"),
            partition: p,
        }
    }

    fn push(a: &Accumulator, p: i32, value: &[u8]) -> Append {
        let size = record_size_upper_bound(None, Some(value), &[]);
        assert!(a.try_reserve(size).unwrap());
        a.append("t", p, 1, None, Some(value), &[], size, false)
            .unwrap()
    }

    #[test]
    fn a_batch_closes_at_batch_size() {
        let a = acc(1000, 60_000, 1 << 20);
        for _ in 0..5 {
            push(&a, 0, &[7u8; 100]);
        }
        {
            let st = a.lock();
            let dq = &st.queues[&tp(0)];
            assert_eq!(dq.len(), 1);
            assert!(!dq[0].closed);
            // Lingering for a minute: not ready yet.
            let at = a.front_ready_at(dq, false).unwrap();
            assert!(at > Instant::now() + Duration::from_secs(50));
        }
        for _ in 0..20 {
            push(&a, 0, &[7u8; 100]);
        }
        let st = a.lock();
        let dq = &st.queues[&tp(0)];
        assert!(dq.len() >= 3, "{}", dq.len());
        for b in dq.iter().take(dq.len() - 1) {
            assert!(b.closed);
            assert!(b.size <= 1000, "{}", b.size);
            assert!(
                b.size + 100 > 1000 - 61 - 40,
                "batch closed early at {}",
                b.size
            );
        }
        // A closed front batch is ready now.
        assert!(a.front_ready_at(dq, false).unwrap() <= Instant::now());
        assert_eq!(dq.iter().map(|b| b.record_count()).sum::<usize>(), 25);
    }

    #[test]
    fn linger_makes_a_small_batch_ready() {
        let a = acc(16384, 20, 1 << 20);
        push(&a, 0, b"x");
        let st = a.lock();
        let dq = &st.queues[&tp(0)];
        let at = a.front_ready_at(dq, false).unwrap();
        let created = dq[0].created;
        assert_eq!(at, created + Duration::from_millis(20));
        // Flush or close makes it ready at once.
        assert_eq!(a.front_ready_at(dq, true).unwrap(), created);
    }

    #[test]
    fn a_record_larger_than_batch_size_gets_its_own_batch() {
        let a = acc(100, 0, 1 << 20);
        push(&a, 0, b"small");
        push(&a, 0, &[1u8; 500]);
        push(&a, 0, b"small");
        let st = a.lock();
        let counts: Vec<usize> = st.queues[&tp(0)].iter().map(|b| b.record_count()).collect();
        assert_eq!(counts, vec![1, 1, 1]);
    }

    #[test]
    fn abort_on_new_batch_reports_instead_of_opening() {
        let a = acc(400, 0, 1 << 20);
        let size = record_size_upper_bound(None, Some(&[0u8; 100]), &[]);
        assert!(matches!(
            a.append("t", 0, 1, None, Some(&[0u8; 100]), &[], size, true)
                .unwrap(),
            Append::NewBatchNeeded
        ));
        assert!(matches!(
            a.append("t", 0, 1, None, Some(&[0u8; 100]), &[], size, false)
                .unwrap(),
            Append::Appended(..)
        ));
        assert!(matches!(
            a.append("t", 0, 1, None, Some(&[0u8; 100]), &[], size, true)
                .unwrap(),
            Append::Appended(..)
        ));
        assert!(matches!(
            a.append("t", 0, 1, None, Some(&[0u8; 100]), &[], size, true)
                .unwrap(),
            Append::NewBatchNeeded
        ));
    }

    #[test]
    fn completion_reports_offsets_and_timestamps() {
        let a = acc(16384, 0, 1 << 20);
        let rxs: Vec<_> = (0..3)
            .map(|_| match push(&a, 2, b"v") {
                Append::Appended(rx, _) => rx,
                _ => unreachable!(),
            })
            .collect();
        let b = a
            .lock()
            .queues
            .get_mut(&tp(2))
            .unwrap()
            .pop_front()
            .unwrap();
        a.complete(
            b,
            BatchOutcome::Done {
                base_offset: 40,
                log_append_time: -1,
            },
        );
        for (i, rx) in rxs.into_iter().enumerate() {
            let md = rx.now_or_never().unwrap().unwrap();
            assert_eq!(
                (md.partition, md.offset, md.timestamp),
                (2, 40 + i as i64, 1)
            );
        }
        assert_eq!(a.available_memory(), 1 << 20);
        assert_eq!(a.incomplete(), 0);
    }

    #[test]
    fn a_too_large_batch_splits_in_order_keeping_completions_and_memory() {
        let a = acc(1 << 20, 0, 1 << 20);
        let rxs: Vec<_> = (0..5u8)
            .map(|i| match push(&a, 0, &[i; 10]) {
                Append::Appended(rx, _) => rx,
                _ => unreachable!(),
            })
            .collect();
        // A later batch of the same partition must stay behind the pieces.
        let later = {
            let mut st = a.lock();
            let b = st.queues.get_mut(&tp(0)).unwrap().pop_front().unwrap();
            drop(st);
            let _ = push(&a, 0, &[9; 10]);
            b
        };
        let held = (1 << 20) - a.available_memory();
        a.split_in_two(later).map_err(|f| f.1).unwrap();
        assert_eq!(a.incomplete(), 3, "two pieces and the later batch");
        let pieces: Vec<ProducerBatch> =
            a.lock().queues.get_mut(&tp(0)).unwrap().drain(..).collect();
        assert_eq!(
            pieces.iter().map(|b| b.record_count()).collect::<Vec<_>>(),
            vec![2, 3, 1]
        );
        assert_eq!(pieces.iter().map(|b| b.reserved).sum::<usize>(), held);
        // The second piece splits again and still sorts before the later batch.
        let mut pieces = pieces.into_iter();
        let first = pieces.next().unwrap();
        let second = pieces.next().unwrap();
        let later = pieces.next().unwrap();
        {
            let mut st = a.lock();
            a.reenqueue(&mut st, later);
            a.reenqueue(&mut st, first);
        }
        a.split_in_two(second).map_err(|f| f.1).unwrap();
        let order: Vec<Vec<u8>> = a.lock().queues[&tp(0)]
            .iter()
            .map(|b| match &b.payload {
                Payload::Open(bb) => {
                    let built = bb.clone().build();
                    decode_records(&built)
                        .unwrap()
                        .iter()
                        .map(|r| r.value.as_ref().unwrap()[0])
                        .collect()
                }
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, vec![vec![0, 1], vec![2], vec![3, 4], vec![9]]);
        // Completing the pieces completes every record, in offset order.
        let batches: Vec<ProducerBatch> =
            a.lock().queues.get_mut(&tp(0)).unwrap().drain(..).collect();
        let mut base = 100;
        for b in batches.into_iter().take(3) {
            let n = b.record_count() as i64;
            a.complete(
                b,
                BatchOutcome::Done {
                    base_offset: base,
                    log_append_time: -1,
                },
            );
            base += n;
        }
        for (i, rx) in rxs.into_iter().enumerate() {
            assert_eq!(rx.now_or_never().unwrap().unwrap().offset, 100 + i as i64);
        }
        assert_eq!(a.incomplete(), 1, "only the later batch is left");
    }

    #[tokio::test]
    async fn buffer_memory_backpressure() {
        let a = Arc::new(acc(16384, 0, 1000));
        assert!(a.try_reserve(600).unwrap());
        assert!(!a.try_reserve(600).unwrap());
        // Times out while nothing is released...
        let t0 = Instant::now();
        let e = a
            .reserve(600, Instant::now() + Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Timeout(_)), "{e}");
        assert!(t0.elapsed() >= Duration::from_millis(45));
        // ...and proceeds as soon as a completed batch gives memory back.
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            a2.reserve(600, Instant::now() + Duration::from_secs(5))
                .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(a.memory_exhausted(), "a waiter makes every batch ready");
        assert!(!waiter.is_finished());
        a.release(600);
        waiter.await.unwrap().unwrap();
        assert_eq!(a.available_memory(), 400);
    }

    #[tokio::test]
    async fn flush_waits_for_earlier_batches_only() {
        let a = Arc::new(acc(16384, 0, 1 << 20));
        push(&a, 0, b"a");
        push(&a, 1, b"b");
        let a2 = a.clone();
        let f = tokio::spawn(async move { a2.flush().await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(a.flushing());
        assert!(!f.is_finished());
        let b0 = a
            .lock()
            .queues
            .get_mut(&tp(0))
            .unwrap()
            .pop_front()
            .unwrap();
        a.complete(
            b0,
            BatchOutcome::Done {
                base_offset: 0,
                log_append_time: -1,
            },
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!f.is_finished());
        // A batch created after the flush began does not hold it up.
        push(&a, 3, b"later");
        let b1 = a
            .lock()
            .queues
            .get_mut(&tp(1))
            .unwrap()
            .pop_front()
            .unwrap();
        a.complete(b1, BatchOutcome::Failed(Error::Closed));
        tokio::time::timeout(Duration::from_secs(1), f)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(a.incomplete(), 1);
    }

    #[test]
    fn reenqueue_keeps_creation_order() {
        let a = acc(10, 0, 1 << 20);
        for _ in 0..4 {
            push(&a, 0, b"0123456789");
        }
        let mut st = a.lock();
        let dq = st.queues.get_mut(&tp(0)).unwrap();
        let b0 = dq.pop_front().unwrap();
        let b1 = dq.pop_front().unwrap();
        a.reenqueue(&mut st, b1);
        a.reenqueue(&mut st, b0);
        let ids: Vec<u64> = st.queues[&tp(0)].iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3]);
    }
}
