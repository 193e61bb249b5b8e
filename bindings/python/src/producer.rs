//! `_sluice.Producer`: `sluice::Producer` for Python. `send` takes bytes
//! already serialized by the Python layer and returns a [`Delivery`], a
//! handle on the record's outcome that Python threads can wait on (GIL
//! released, interruptible) or ask to be told about through the completion
//! queue. A delivery is polled only when asked about; waiting or watching
//! hands it to a tokio task that stores the outcome and, when a watcher
//! object is set, queues it for the Python callback thread
//! (`next_completed`), so user callbacks never run on a runtime thread.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::FutureExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyType};
use sluice::config::TokenProviderHandle;
use sluice::{
    ConsumerGroupMetadata, DeliveryFuture, Error, OffsetAndMetadata, Producer as RustProducer,
    ProducerConfig, ProducerRecord, RecordMetadata, TopicPartition,
};

use crate::errors::{to_py, IntoPy};
use crate::runtime::{runtime, seconds, wait, wait_done, SLICE};
use crate::token::PyTokenProvider;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A callable and its argument (None, or the exception for an error), to
/// be called on the Python callback thread.
type Item = (Py<PyAny>, Option<Error>);

/// Objects whose delivery finished, for the Python callback thread.
struct Completions {
    queue: Mutex<VecDeque<Item>>,
    ready: Condvar,
}

fn completions() -> &'static Completions {
    static C: OnceLock<Completions> = OnceLock::new();
    C.get_or_init(|| Completions {
        queue: Mutex::new(VecDeque::new()),
        ready: Condvar::new(),
    })
}

/// Queues `callable(arg)` for the Python callback thread.
pub fn complete(callable: Py<PyAny>, arg: Option<Error>) {
    let c = completions();
    lock(&c.queue).push_back((callable, arg));
    c.ready.notify_one();
}

/// Waits (GIL released) up to `timeout` seconds for queued callbacks and
/// returns them as (callable, argument or None) pairs, oldest first; the
/// Python callback thread calls each.
#[pyfunction]
#[pyo3(signature = (timeout))]
pub fn next_completed(py: Python<'_>, timeout: f64) -> PyResult<Vec<(Py<PyAny>, Py<PyAny>)>> {
    let timeout = seconds(Some(timeout))?.unwrap_or(SLICE);
    let c = completions();
    let items: Vec<Item> = py.detach(|| {
        let q = lock(&c.queue);
        let (mut q, _) = c
            .ready
            .wait_timeout_while(q, timeout, |q| q.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        q.drain(..).collect()
    });
    Ok(items
        .into_iter()
        .map(|(f, e)| {
            let arg = match e {
                None => py.None(),
                Some(e) => to_py(py, &e).into_value(py).into_any(),
            };
            (f, arg)
        })
        .collect())
}

/// Where a delivery stands. A record nobody asks about is never polled:
/// the client completes it whether or not its future is awaited, so `send`
/// costs no task or wake-up. Waiting or watching hands the future to a task
/// (`Driven`) that stores the outcome and wakes waiters.
enum State {
    Pending(DeliveryFuture),
    Driven { watcher: Option<Py<PyAny>> },
    Done(Result<RecordMetadata, Error>),
}

struct Slot {
    state: Mutex<State>,
    done: Condvar,
}

impl Slot {
    fn finish(&self, outcome: Result<RecordMetadata, Error>) {
        let watcher = {
            let mut s = lock(&self.state);
            match std::mem::replace(&mut *s, State::Done(outcome)) {
                State::Driven { watcher } => watcher,
                _ => None,
            }
        };
        self.done.notify_all();
        if let Some(w) = watcher {
            complete(w, None);
        }
    }
}

/// Polls a pending delivery once (no waker needed: callers poll again or
/// switch to a driving task), moving it to `Done` when it has finished.
fn refresh(state: &mut State) {
    if let State::Pending(f) = state {
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        if let Poll::Ready(r) = f.poll_unpin(&mut cx) {
            *state = State::Done(r);
        }
    }
}

/// The outcome of one `send`, and the serialized key, value and header
/// sizes kafka-python's RecordMetadata reports (-1: none).
#[pyclass(frozen, module = "sluice._sluice")]
pub struct Delivery {
    slot: Arc<Slot>,
    sizes: (i64, i64, i64),
}

type Meta = (String, i32, i64, i64);

fn meta(m: &RecordMetadata) -> Meta {
    (m.topic.clone(), m.partition, m.offset, m.timestamp)
}

impl Delivery {
    /// Makes sure a task drives the delivery (setting `watcher` if given);
    /// returns the watcher back if the outcome is already known.
    fn drive(&self, watcher: Option<Py<PyAny>>) -> PyResult<Option<Py<PyAny>>> {
        let mut s = lock(&self.slot.state);
        refresh(&mut s);
        match &mut *s {
            State::Done(_) => Ok(watcher),
            State::Driven { watcher: w } => {
                if watcher.is_some() {
                    *w = watcher;
                }
                Ok(None)
            }
            State::Pending(_) => {
                let State::Pending(fut) = std::mem::replace(&mut *s, State::Driven { watcher })
                else {
                    return Ok(None);
                };
                let slot = self.slot.clone();
                runtime()?.spawn(async move { slot.finish(fut.await) });
                Ok(None)
            }
        }
    }
}

#[pymethods]
impl Delivery {
    /// Whether the outcome is known.
    fn is_done(&self) -> bool {
        let mut s = lock(&self.slot.state);
        refresh(&mut s);
        matches!(*s, State::Done(_))
    }

    /// Waits up to `timeout` seconds (None: forever) and returns
    /// (topic, partition, offset, timestamp), or raises the delivery error;
    /// `KafkaTimeoutError` when the time runs out first.
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Meta> {
        let deadline = seconds(timeout)?.map(|t| Instant::now() + t);
        self.drive(None)?;
        loop {
            let done = py.detach(|| {
                let s = lock(&self.slot.state);
                let slice = deadline
                    .map(|d| d.saturating_duration_since(Instant::now()).min(SLICE))
                    .unwrap_or(SLICE);
                let (s, _) = self
                    .slot
                    .done
                    .wait_timeout_while(s, slice, |s| !matches!(s, State::Done(_)))
                    .unwrap_or_else(|p| p.into_inner());
                match &*s {
                    State::Done(r) => Some(r.clone()),
                    _ => None,
                }
            });
            match done {
                Some(Ok(m)) => return Ok(meta(&m)),
                Some(Err(e)) => return Err(to_py(py, &e)),
                None => {}
            }
            py.check_signals()?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(to_py(
                    py,
                    &Error::Timeout("the record's delivery did not complete in time".into()),
                ));
            }
        }
    }

    /// The outcome if known: None while pending, else (True, metadata
    /// tuple) or (False, exception).
    fn outcome(&self, py: Python<'_>) -> Option<(bool, Py<PyAny>)> {
        let mut s = lock(&self.slot.state);
        refresh(&mut s);
        match &*s {
            State::Done(Ok(m)) => meta(m)
                .into_pyobject(py)
                .ok()
                .map(|t| (true, t.into_any().unbind())),
            State::Done(Err(e)) => Some((false, to_py(py, e).into_value(py).into_any())),
            _ => None,
        }
    }

    /// Queues `watcher(None)` for `next_completed` once the outcome is known
    /// (at once if it already is). One watcher per delivery.
    /// (key size, value size, header size), -1 for absent.
    fn sizes(&self) -> (i64, i64, i64) {
        self.sizes
    }

    fn watch(&self, watcher: Py<PyAny>) -> PyResult<()> {
        if let Some(w) = self.drive(Some(watcher))? {
            complete(w, None);
        }
        Ok(())
    }
}

/// Builds the producer config from Kafka property names.
pub fn producer_config(
    props: Vec<(String, String)>,
    token_provider: Option<Py<PyAny>>,
) -> Result<ProducerConfig, Error> {
    let mut cfg =
        ProducerConfig::from_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    cfg.client.sasl_oauth_token_provider =
        token_provider.map(|p| TokenProviderHandle(Arc::new(PyTokenProvider::new(p))));
    Ok(cfg)
}

#[pyclass(frozen, module = "sluice._sluice")]
pub struct Producer {
    inner: RustProducer,
    /// The last topic object `send` saw and its text: a send loop passes
    /// the same `str` object every time, and recognizing it by identity
    /// skips decoding it into a new Rust string per record.
    last_topic: Mutex<Option<(Py<PyString>, Arc<str>)>>,
    /// sluice.producer.FutureRecordMetadata (set_future_type): `send`
    /// returns one, built here rather than by a Python constructor call
    /// per record, which cost about as much as the send itself.
    future_type: std::sync::OnceLock<Py<PyType>>,
}

impl Producer {
    fn topic_name(&self, topic: &Bound<'_, PyString>) -> PyResult<Arc<str>> {
        let mut last = lock(&self.last_topic);
        if let Some((obj, name)) = &*last {
            if obj.as_ptr() == topic.as_ptr() {
                return Ok(name.clone());
            }
        }
        let name: Arc<str> = Arc::from(topic.to_cow()?.as_ref());
        *last = Some((topic.clone().unbind(), name.clone()));
        Ok(name)
    }
}

fn delivery(d: DeliveryFuture, sizes: (i64, i64, i64)) -> Delivery {
    Delivery {
        slot: Arc::new(Slot {
            state: Mutex::new(State::Pending(d)),
            done: Condvar::new(),
        }),
        sizes,
    }
}

impl Producer {
    /// The Python future for `d`: an instance of the registered
    /// FutureRecordMetadata class (its `_delivery` slot set, `_cb` None),
    /// or the bare Delivery when no class was registered.
    fn future<'py>(&self, py: Python<'py>, d: Delivery) -> PyResult<Bound<'py, PyAny>> {
        let d = Bound::new(py, d)?.into_any();
        let Some(cls) = self.future_type.get() else {
            return Ok(d);
        };
        let cls = cls.bind(py);
        let fut = crate::instances::alloc(py, cls, 0)?;
        fut.setattr(pyo3::intern!(py, "_delivery"), d)?;
        fut.setattr(pyo3::intern!(py, "_cb"), py.None())?;
        Ok(fut)
    }
}

#[pymethods]
impl Producer {
    /// Connects (Kafka property names and values, as strings).
    #[new]
    #[pyo3(signature = (properties, token_provider=None))]
    fn new(
        py: Python<'_>,
        properties: Vec<(String, String)>,
        token_provider: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let cfg = producer_config(properties, token_provider).py_err(py)?;
        let inner = wait_done(py, RustProducer::connect(cfg))?.py_err(py)?;
        Ok(Producer {
            inner,
            last_topic: Mutex::new(None),
            future_type: std::sync::OnceLock::new(),
        })
    }

    /// Queues one record (waiting, GIL released, for buffer space or
    /// metadata up to max.block.ms) and returns its [`Delivery`].
    /// Without headers, the record goes straight from the Python bytes
    /// into its batch when it can enter at once (no copy into an owned
    /// record, no future to box); otherwise it takes the general path.
    #[pyo3(signature = (topic, key=None, value=None, partition=None, timestamp_ms=None, headers=None, header_size=None))]
    #[allow(clippy::too_many_arguments)]
    fn send<'py>(
        &self,
        py: Python<'py>,
        topic: &Bound<'py, PyString>,
        key: Option<&Bound<'py, PyBytes>>,
        value: Option<&Bound<'py, PyBytes>>,
        partition: Option<i32>,
        timestamp_ms: Option<i64>,
        headers: Option<Vec<(String, Option<Vec<u8>>)>>,
        header_size: Option<i64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let sizes = (
            key.map_or(-1, |k| k.as_bytes().len() as i64),
            value.map_or(-1, |v| v.as_bytes().len() as i64),
            header_size.unwrap_or(-1),
        );
        let topic = self.topic_name(topic)?;
        let headers = headers.unwrap_or_default();
        if headers.is_empty() {
            let fast = self.inner.try_send_now(
                &topic,
                partition,
                key.map(|k| k.as_bytes()),
                value.map(|v| v.as_bytes()),
                timestamp_ms,
            );
            if let Some(r) = fast {
                return self.future(py, delivery(r.py_err(py)?, sizes));
            }
        }
        let rt = runtime()?;
        let record = ProducerRecord {
            topic: topic.to_string(),
            partition,
            key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k, v.map(Bytes::from)))
                .collect(),
            timestamp: timestamp_ms,
        };
        let mut enqueued = {
            let _ctx = rt.enter();
            Box::pin(self.inner.enqueue(record))
        };
        let d = match (&mut enqueued).now_or_never() {
            Some(r) => r,
            None => wait_done(py, enqueued)?,
        }
        .py_err(py)?;
        self.future(py, delivery(d, sizes))
    }

    /// Registers the class `send` returns instances of (once).
    fn set_future_type(&self, cls: Py<PyType>) -> PyResult<()> {
        self.future_type.set(cls).map_err(|_| {
            pyo3::exceptions::PyRuntimeError::new_err("the future type is already set")
        })
    }

    /// Waits until every record sent so far has completed; `KafkaTimeoutError`
    /// if `timeout` seconds pass first.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout)?;
        let producer = self.inner.clone();
        match wait(py, timeout, async move { producer.flush().await })? {
            Some(()) => Ok(()),
            None => Err(to_py(
                py,
                &Error::Timeout(format!(
                    "flush did not complete within {:?}",
                    timeout.unwrap_or_default()
                )),
            )),
        }
    }

    /// Delivers what is queued for up to `timeout` seconds, then fails the
    /// rest and stops.
    #[pyo3(signature = (timeout=None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout)?.unwrap_or(Duration::from_secs(365 * 86_400));
        let producer = self.inner.clone();
        wait_done(py, async move { producer.close(timeout).await })?.py_err(py)
    }

    /// Registers the transactional.id (fencing older producers with it);
    /// waits up to max.block.ms, GIL released.
    fn init_transactions(&self, py: Python<'_>) -> PyResult<()> {
        let producer = self.inner.clone();
        wait_done(py, async move { producer.init_transactions().await })?.py_err(py)
    }

    fn begin_transaction(&self, py: Python<'_>) -> PyResult<()> {
        self.inner.begin_transaction().py_err(py)
    }

    /// Adds `offsets` [(topic, partition, offset, metadata, leader epoch or
    /// -1)] of the consumer group (id, generation, member id, instance id)
    /// to the transaction.
    #[pyo3(signature = (offsets, group_id, generation_id=-1, member_id=String::new(), group_instance_id=None))]
    fn send_offsets_to_transaction(
        &self,
        py: Python<'_>,
        offsets: Vec<(String, i32, i64, String, i32)>,
        group_id: String,
        generation_id: i32,
        member_id: String,
        group_instance_id: Option<String>,
    ) -> PyResult<()> {
        let group = ConsumerGroupMetadata {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
        };
        let offsets: Vec<(TopicPartition, OffsetAndMetadata)> = offsets
            .into_iter()
            .map(|(t, p, offset, metadata, epoch)| {
                (
                    TopicPartition::new(t, p),
                    OffsetAndMetadata {
                        offset,
                        leader_epoch: Some(epoch).filter(|e| *e >= 0),
                        metadata,
                    },
                )
            })
            .collect();
        let producer = self.inner.clone();
        wait_done(py, async move {
            producer.send_offsets_to_transaction(offsets, &group).await
        })?
        .py_err(py)
    }

    /// Flushes and commits the transaction, GIL released.
    fn commit_transaction(&self, py: Python<'_>) -> PyResult<()> {
        let producer = self.inner.clone();
        wait_done(py, async move { producer.commit_transaction().await })?.py_err(py)
    }

    /// Aborts the transaction, GIL released.
    fn abort_transaction(&self, py: Python<'_>) -> PyResult<()> {
        let producer = self.inner.clone();
        wait_done(py, async move { producer.abort_transaction().await })?.py_err(py)
    }

    /// The transaction state's Java name, or None without a transactional.id.
    fn transaction_state(&self) -> Option<&'static str> {
        self.inner.transaction_state().map(|s| s.name())
    }

    /// The partition numbers of `topic`.
    fn partitions_for(&self, py: Python<'_>, topic: String) -> PyResult<Vec<i32>> {
        let producer = self.inner.clone();
        let parts =
            wait_done(py, async move { producer.partitions_for(&topic).await })?.py_err(py)?;
        Ok(parts.iter().map(|p| p.partition).collect())
    }
}
