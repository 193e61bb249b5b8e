//! `_sluice.Consumer`: `sluice::Consumer` for Python. Every call locks the
//! consumer with the GIL released (a consumer is one thread's object, as in
//! kafka-python; a second thread waits its turn instead of deadlocking), and
//! network waits run through `runtime::wait`. `poll` builds kafka-python's
//! `ConsumerRecord` and `TopicPartition` named tuples itself (the classes are
//! handed over once by the Python layer), grouped per partition: per record
//! that is a handful of allocations instead of an intermediate tuple plus a
//! Python-level constructor, which is what made consuming slower than
//! confluent-kafka. Rebalance callbacks run inside `poll` on the calling
//! Python thread, as the Java client runs them.
//!
//! `run_batches` drives the Rust client's `run_batches_until` (ordered
//! per-partition batches, each committed after its handler returns) and
//! calls the Python handler on the calling thread with the GIL held but
//! outside the runtime, so a handler may itself wait on a producer or
//! anything else that enters the runtime. Consumer methods other than
//! `stop_batches` raise when called from inside the handler: the consumer
//! is busy with that very loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::ThreadId;

use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex, MutexGuard};

use futures::FutureExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple, PyType};
use sluice::admin::OffsetSpec;
use sluice::config::TokenProviderHandle;
use sluice::consumer::TimestampType;
use sluice::{
    Consumer as RustConsumer, ConsumerConfig, ConsumerRecord, Error, OffsetAndMetadata,
    PartitionBatch, RebalanceListener, TopicPartition,
};

use crate::errors::{guard, to_py, IntoPy};
use crate::instances::named_tuple;
use crate::runtime::{runtime, seconds, wait, wait_done, SLICE};
use crate::token::PyTokenProvider;

type Tp = (String, i32);

fn tps(parts: Vec<Tp>) -> Vec<TopicPartition> {
    parts
        .into_iter()
        .map(|(t, p)| TopicPartition::new(t, p))
        .collect()
}

fn tuples<'a>(parts: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<Tp> {
    parts
        .into_iter()
        .map(|tp| (tp.topic.clone(), tp.partition))
        .collect()
}

/// The Python classes `poll` builds (sluice.structs), and the
/// deserializers it applies, handed over once by `KafkaConsumer.__init__`.
struct RecordTypes {
    record: Py<PyType>,
    topic_partition: Py<PyType>,
    key_deserializer: Option<Py<PyAny>>,
    value_deserializer: Option<Py<PyAny>>,
}

/// `{TopicPartition: [ConsumerRecord, ...]}` for records in fetch order (a
/// partition's records come in contiguous runs; each run is appended to its
/// partition's list, so order within a partition holds).
fn group_records<'py>(
    py: Python<'py>,
    types: &RecordTypes,
    records: &[ConsumerRecord],
) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    let record_cls = types.record.bind(py);
    let tp_cls = types.topic_partition.bind(py);
    let none = py.None().into_bound(py);
    let mut i = 0;
    while i < records.len() {
        let first = &records[i];
        let run = records[i..]
            .iter()
            .take_while(|r| r.partition == first.partition && r.topic == first.topic)
            .count();
        let topic = PyString::new(py, &first.topic).into_any();
        let partition = first.partition.into_pyobject(py)?.into_any();
        let tp = named_tuple(py, tp_cls, [topic.clone(), partition.clone()])?;
        let list = match out.get_item(&tp)? {
            Some(l) => l.cast_into::<PyList>()?,
            None => {
                let l = PyList::empty(py);
                out.set_item(&tp, &l)?;
                l
            }
        };
        for r in &records[i..i + run] {
            list.append(record(py, types, record_cls, &topic, &partition, &none, r)?)?;
        }
        i += run;
    }
    Ok(out)
}

/// One kafka-python ConsumerRecord: (topic, partition, leader_epoch, offset,
/// timestamp, timestamp_type, key, value, headers, checksum,
/// serialized_key_size, serialized_value_size, serialized_header_size).
fn record<'py>(
    py: Python<'py>,
    types: &RecordTypes,
    cls: &Bound<'py, PyType>,
    topic: &Bound<'py, PyAny>,
    partition: &Bound<'py, PyAny>,
    none: &Bound<'py, PyAny>,
    r: &ConsumerRecord,
) -> PyResult<Bound<'py, PyAny>> {
    let bytes =
        |v: &Option<bytes::Bytes>, des: &Option<Py<PyAny>>| -> PyResult<Bound<'py, PyAny>> {
            match v {
                None => Ok(none.clone()),
                Some(v) => {
                    let b = PyBytes::new(py, v).into_any();
                    match des {
                        Some(f) => f.bind(py).call1((b,)),
                        None => Ok(b),
                    }
                }
            }
        };
    let size = |v: &Option<bytes::Bytes>| v.as_ref().map_or(-1, |v| v.len() as i64);
    let headers = PyList::empty(py);
    for (k, v) in &r.headers {
        headers.append(PyTuple::new(
            py,
            [PyString::new(py, k).into_any(), bytes(v, &None)?],
        )?)?;
    }
    let header_size: i64 = if r.headers.is_empty() {
        -1
    } else {
        r.headers
            .iter()
            .map(|(k, v)| k.len() as i64 + v.as_ref().map_or(0, |v| v.len() as i64))
            .sum()
    };
    let ts_type: i32 = match r.timestamp_type {
        TimestampType::CreateTime => 0,
        TimestampType::LogAppendTime => 1,
    };
    named_tuple(
        py,
        cls,
        [
            topic.clone(),
            partition.clone(),
            r.leader_epoch.unwrap_or(-1).into_pyobject(py)?.into_any(),
            r.offset.into_pyobject(py)?.into_any(),
            r.timestamp.into_pyobject(py)?.into_any(),
            ts_type.into_pyobject(py)?.into_any(),
            bytes(&r.key, &types.key_deserializer)?,
            bytes(&r.value, &types.value_deserializer)?,
            headers.into_any(),
            none.clone(),
            size(&r.key).into_pyobject(py)?.into_any(),
            size(&r.value).into_pyobject(py)?.into_any(),
            header_size.into_pyobject(py)?.into_any(),
        ],
    )
}

/// Builds the Python batch for `batch` and calls the handler with it.
fn call_handler(
    py: Python<'_>,
    types: &RecordTypes,
    handler: &Py<PyAny>,
    batch_factory: &Py<PyAny>,
    batch: PartitionBatch,
) -> PyResult<()> {
    let record_cls = types.record.bind(py);
    let topic = PyString::new(py, &batch.topic).into_any();
    let partition = batch.partition.into_pyobject(py)?.into_any();
    let none = py.None().into_bound(py);
    let records = PyList::empty(py);
    for r in &batch.records {
        records.append(record(py, types, record_cls, &topic, &partition, &none, r)?)?;
    }
    let b = batch_factory.bind(py).call1((topic, partition, records))?;
    handler.bind(py).call1((b,))?;
    Ok(())
}

/// Calls a Python listener's `on_partitions_revoked` / `_assigned` / `_lost`
/// with a list of (topic, partition) tuples. Exceptions are printed (as
/// kafka-python logs them) and never stop the consumer.
struct PyListener(Py<PyAny>);

impl PyListener {
    fn call(&self, method: &str, parts: &[TopicPartition]) {
        let _ = guard("the rebalance listener", || {
            Python::attach(|py| {
                if let Err(e) = self.0.bind(py).call_method1(method, (tuples(parts),)) {
                    e.print(py);
                }
            });
            Ok(())
        });
    }
}

impl RebalanceListener for PyListener {
    fn on_partitions_assigned(&self, partitions: &[TopicPartition]) {
        self.call("on_partitions_assigned", partitions)
    }
    fn on_partitions_revoked(&self, partitions: &[TopicPartition]) {
        self.call("on_partitions_revoked", partitions)
    }
    fn on_partitions_lost(&self, partitions: &[TopicPartition]) {
        self.call("on_partitions_lost", partitions)
    }
}

#[pyclass(frozen, module = "sluice._sluice")]
pub struct Consumer {
    inner: Mutex<Option<RustConsumer>>,
    /// For ListOffsets lookups (beginning/end offsets, offsets for times):
    /// an admin client on the same settings, connected on first use.
    admin: std::sync::OnceLock<sluice::AdminClient>,
    /// The classes and deserializers `poll` uses (set_record_types).
    types: std::sync::OnceLock<RecordTypes>,
    /// Set by `stop_batches`: ends the `run_batches` loop in progress.
    stop_batches: Arc<AtomicBool>,
    /// The thread running `run_batches` (its handler must not lock the
    /// consumer that loop holds).
    batch_thread: std::sync::Mutex<Option<ThreadId>>,
}

/// What the `run_batches` loop on the runtime asks of the Python thread.
enum BatchStep {
    /// The loop ended (shut down, stopped, or a consumer error).
    Done(sluice::Result<()>),
    /// A batch for the handler, and where its outcome goes.
    Batch(PartitionBatch, oneshot::Sender<Result<(), String>>),
    /// A slice passed: time to check for signals and the stop event.
    Tick,
}

impl Consumer {
    /// Locks the consumer with the GIL released (waiting for another
    /// thread's call to finish); raises instead from inside this consumer's
    /// own `run_batches` handler, whose loop holds the lock.
    fn lock(&self, py: Python<'_>) -> PyResult<MutexGuard<'_, Option<RustConsumer>>> {
        let me = std::thread::current().id();
        let busy = *self.batch_thread.lock().unwrap_or_else(|e| e.into_inner()) == Some(me);
        if busy {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "the consumer is running run_batches() on this thread: inside the batch handler \
                 only stop_batches() may be called (return from the handler to commit the batch)",
            ));
        }
        Ok(py.detach(|| self.inner.blocking_lock()))
    }

    /// Runs `f` on the consumer with the GIL released; `KafkaClosedError`
    /// after `close`.
    fn with<T>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(Python<'_>, &mut RustConsumer) -> PyResult<T>,
    ) -> PyResult<T> {
        let mut g: MutexGuard<'_, Option<RustConsumer>> = self.lock(py)?;
        match g.as_mut() {
            Some(c) => f(py, c),
            None => Err(to_py(py, &Error::Closed)),
        }
    }
}

/// A group membership as Python receives it: (group id, generation,
/// member id, instance id).
type GroupMetadata = (String, i32, String, Option<String>);

/// A committed offset as Python receives it: (topic, partition, offset or
/// None, metadata).
type CommittedOffset = (String, i32, Option<i64>, String);

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (properties, token_provider=None))]
    fn new(
        py: Python<'_>,
        properties: Vec<(String, String)>,
        token_provider: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let mut cfg = ConsumerConfig::from_properties(
            properties.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .py_err(py)?;
        cfg.client.sasl_oauth_token_provider =
            token_provider.map(|p| TokenProviderHandle(Arc::new(PyTokenProvider::new(p))));
        let consumer = wait_done(py, RustConsumer::connect(cfg))?.py_err(py)?;
        Ok(Consumer {
            inner: Mutex::new(Some(consumer)),
            admin: std::sync::OnceLock::new(),
            types: std::sync::OnceLock::new(),
            stop_batches: Arc::new(AtomicBool::new(false)),
            batch_thread: std::sync::Mutex::new(None),
        })
    }

    #[pyo3(signature = (topics=None, pattern=None, listener=None))]
    fn subscribe(
        &self,
        py: Python<'_>,
        topics: Option<Vec<String>>,
        pattern: Option<String>,
        listener: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.with(py, |py, c| {
            if let Some(l) = listener {
                c.set_rebalance_listener(Arc::new(PyListener(l)));
            }
            match (topics, pattern) {
                (_, Some(p)) => c.subscribe_pattern(&p),
                (Some(t), None) => c.subscribe(&t),
                (None, None) => Ok(()),
            }
            .py_err(py)
        })
    }

    fn unsubscribe(&self, py: Python<'_>) -> PyResult<()> {
        self.with(py, |py, c| wait_done(py, c.unsubscribe())?.py_err(py))
    }

    fn assign(&self, py: Python<'_>, partitions: Vec<Tp>) -> PyResult<()> {
        self.with(py, |py, c| {
            let r = c.assign(tps(partitions));
            r.py_err(py)
        })
    }

    fn assignment(&self, py: Python<'_>) -> PyResult<Vec<Tp>> {
        self.with(py, |_, c| Ok(tuples(&c.assignment())))
    }

    fn subscription(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        self.with(py, |_, c| Ok(c.subscription().into_iter().collect()))
    }

    /// `{TopicPartition: [ConsumerRecord]}`: waits up to `timeout` seconds
    /// for records, returns at most `max_records` (None: max.poll.records).
    #[pyo3(signature = (timeout, max_records=None))]
    fn poll<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
        max_records: Option<usize>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let Some(types) = self.types.get() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "set_record_types() was not called",
            ));
        };
        let timeout = seconds(Some(timeout))?.unwrap_or(Duration::ZERO);
        let mut g = self.lock(py)?;
        let Some(c) = g.as_mut() else {
            return Err(to_py(py, &Error::Closed));
        };
        let max = max_records.unwrap_or(c.config().max_poll_records);
        // The poll itself gets no outer timeout: it returns by `timeout`.
        let records = wait_done(py, c.poll_up_to(timeout, max))?.py_err(py)?;
        drop(g);
        group_records(py, types, &records)
    }

    /// Hands over the ConsumerRecord and TopicPartition classes `poll`
    /// builds and the deserializers it applies (once, before any poll).
    #[pyo3(signature = (record, topic_partition, key_deserializer=None, value_deserializer=None))]
    fn set_record_types(
        &self,
        record: Py<PyType>,
        topic_partition: Py<PyType>,
        key_deserializer: Option<Py<PyAny>>,
        value_deserializer: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        self.types
            .set(RecordTypes {
                record,
                topic_partition,
                key_deserializer,
                value_deserializer,
            })
            .map_err(|_| pyo3::exceptions::PyRuntimeError::new_err("record types are already set"))
    }

    /// Commits `offsets` [(topic, partition, offset, metadata)], or the
    /// consumed positions when None.
    #[pyo3(signature = (offsets=None))]
    fn commit(
        &self,
        py: Python<'_>,
        offsets: Option<Vec<(String, i32, i64, String)>>,
    ) -> PyResult<()> {
        let mut g = self.lock(py)?;
        let Some(c) = g.as_mut() else {
            return Err(to_py(py, &Error::Closed));
        };
        let r = match offsets {
            None => wait_done(py, c.commit_sync())?,
            Some(o) => {
                let o: Vec<(TopicPartition, OffsetAndMetadata)> = o
                    .into_iter()
                    .map(|(t, p, off, md)| {
                        (
                            TopicPartition::new(t, p),
                            OffsetAndMetadata {
                                offset: off,
                                leader_epoch: None,
                                metadata: md,
                            },
                        )
                    })
                    .collect();
                wait_done(py, c.commit_sync_offsets(o))?
            }
        };
        r.py_err(py)
    }

    /// Queues a commit of `offsets` [(topic, partition, offset, metadata)]
    /// (None: the consumed positions) and returns at once; `callback` is
    /// later queued for the Python callback thread (see `next_completed`)
    /// and called with the exception or None.
    #[pyo3(signature = (offsets=None, callback=None))]
    fn commit_async(
        &self,
        py: Python<'_>,
        offsets: Option<Vec<(String, i32, i64, String)>>,
        callback: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let rt = runtime()?;
        let fut = self.with(py, |_, c| {
            let _ctx = rt.enter();
            Ok(match offsets {
                None => c.commit_async().boxed(),
                Some(o) => c
                    .commit_async_offsets(o.into_iter().map(|(t, p, off, md)| {
                        (
                            TopicPartition::new(t, p),
                            OffsetAndMetadata {
                                offset: off,
                                leader_epoch: None,
                                metadata: md,
                            },
                        )
                    }))
                    .boxed(),
            })
        })?;
        rt.spawn(async move {
            let r = fut.await;
            if let Some(cb) = callback {
                crate::producer::complete(cb, r.err());
            }
        });
        Ok(())
    }

    fn seek(&self, py: Python<'_>, topic: String, partition: i32, offset: i64) -> PyResult<()> {
        self.with(py, |py, c| {
            let r = c.seek(&TopicPartition::new(topic, partition), offset);
            r.py_err(py)
        })
    }

    fn seek_to_beginning(&self, py: Python<'_>, partitions: Vec<Tp>) -> PyResult<()> {
        self.with(py, |py, c| {
            let r = c.seek_to_beginning(&tps(partitions));
            r.py_err(py)
        })
    }

    fn seek_to_end(&self, py: Python<'_>, partitions: Vec<Tp>) -> PyResult<()> {
        self.with(py, |py, c| {
            let r = c.seek_to_end(&tps(partitions));
            r.py_err(py)
        })
    }

    fn pause(&self, py: Python<'_>, partitions: Vec<Tp>) -> PyResult<()> {
        self.with(py, |py, c| {
            let r = c.pause(&tps(partitions));
            r.py_err(py)
        })
    }

    fn resume(&self, py: Python<'_>, partitions: Vec<Tp>) -> PyResult<()> {
        self.with(py, |py, c| {
            let r = c.resume(&tps(partitions));
            r.py_err(py)
        })
    }

    fn paused(&self, py: Python<'_>) -> PyResult<Vec<Tp>> {
        self.with(py, |_, c| Ok(tuples(&c.paused())))
    }

    fn position(&self, py: Python<'_>, topic: String, partition: i32) -> PyResult<i64> {
        let mut g = self.lock(py)?;
        let Some(c) = g.as_mut() else {
            return Err(to_py(py, &Error::Closed));
        };
        let tp = TopicPartition::new(topic, partition);
        wait_done(py, c.position(&tp))?.py_err(py)
    }

    /// The group membership for `send_offsets_to_transaction`: (group id,
    /// generation, member id, instance id), or None without a group.id.
    fn group_metadata(&self, py: Python<'_>) -> PyResult<Option<GroupMetadata>> {
        self.with(py, |_, c| {
            Ok(c.group_metadata().map(|g| {
                (
                    g.group_id,
                    g.generation_id,
                    g.member_id,
                    g.group_instance_id,
                )
            }))
        })
    }

    /// Committed offsets: [(topic, partition, offset or None, metadata)].
    fn committed(&self, py: Python<'_>, partitions: Vec<Tp>) -> PyResult<Vec<CommittedOffset>> {
        let g = self.lock(py)?;
        let Some(c) = g.as_ref() else {
            return Err(to_py(py, &Error::Closed));
        };
        let parts = tps(partitions);
        let m = wait_done(py, c.committed(&parts))?.py_err(py)?;
        Ok(parts
            .iter()
            .map(|tp| {
                let o = m.get(tp).cloned().flatten();
                (
                    tp.topic.clone(),
                    tp.partition,
                    o.as_ref().map(|o| o.offset),
                    o.map(|o| o.metadata).unwrap_or_default(),
                )
            })
            .collect())
    }

    /// ListOffsets for `partitions`: `spec` -2 earliest, -1 latest, else a
    /// timestamp (ms). Returns (topic, partition, offset, timestamp); offset
    /// -1 where no record is that recent.
    fn list_offsets(
        &self,
        py: Python<'_>,
        partitions: Vec<Tp>,
        spec: i64,
    ) -> PyResult<Vec<(String, i32, i64, i64)>> {
        let admin = match self.admin.get() {
            Some(a) => a.clone(),
            None => {
                let cfg = self.with(py, |_, c| Ok(c.config().client.clone()))?;
                let a = wait_done(py, sluice::AdminClient::connect(cfg))?.py_err(py)?;
                self.admin.get_or_init(|| a).clone()
            }
        };
        let spec = match spec {
            -2 => OffsetSpec::Earliest,
            -1 => OffsetSpec::Latest,
            t => OffsetSpec::Timestamp(t),
        };
        wait_done(
            py,
            async move { admin.list_offsets(&partitions, spec).await },
        )?
        .py_err(py)
    }

    /// The partition numbers of `topic` (refreshing metadata), or None if
    /// the topic does not exist.
    fn partitions_for_topic(&self, py: Python<'_>, topic: String) -> PyResult<Option<Vec<i32>>> {
        let cluster = self.with(py, |_, c| Ok(c.cluster().clone()))?;
        let t = topic.clone();
        let refreshed = wait_done(py, async move {
            cluster.refresh_metadata(&[t]).await.map(|_| cluster)
        })?
        .py_err(py)?;
        Ok(refreshed
            .topic(&topic)
            .filter(|t| t.error.is_ok())
            .map(|t| t.partitions.iter().map(|p| p.partition).collect()))
    }

    /// Every topic name in the cluster (refreshing metadata).
    fn topics(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let cluster = self.with(py, |_, c| Ok(c.cluster().clone()))?;
        let refreshed = wait_done(py, async move {
            cluster.refresh_all_topics().await.map(|_| cluster)
        })?
        .py_err(py)?;
        Ok(refreshed
            .topics()
            .iter()
            .filter(|t| !t.internal && t.error.is_ok())
            .map(|t| t.name.clone())
            .collect())
    }

    /// Runs `handler(batch_factory(topic, partition, [ConsumerRecord]))`
    /// over ordered per-partition batches on this thread, committing each
    /// batch's next offset after the handler returns. Ends when
    /// `stop_batches()` is called, `stop.is_set()` turns true, `max_batches`
    /// batches were handled, or the handler raises: then the batch is not
    /// committed, its partition is rewound to it, and the exception is
    /// raised here once the loop has ended; with `retry` an `Exception` is
    /// instead retried after a backoff (the Rust client's behaviour, as a
    /// Lambda event source mapping does). Signals (Ctrl-C) end the loop the
    /// same way. Returns the number of batches handled.
    #[pyo3(signature = (handler, batch_factory, max_batches=None, retry=false, stop=None))]
    fn run_batches(
        &self,
        py: Python<'_>,
        handler: Py<PyAny>,
        batch_factory: Py<PyAny>,
        max_batches: Option<u64>,
        retry: bool,
        stop: Option<Py<PyAny>>,
    ) -> PyResult<u64> {
        let Some(types) = self.types.get() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "set_record_types() was not called",
            ));
        };
        if max_batches == Some(0) {
            return Ok(0);
        }
        let rt = runtime()?;
        let mut g = self.lock(py)?;
        let Some(c) = g.as_mut() else {
            return Err(to_py(py, &Error::Closed));
        };
        let stop_flag = self.stop_batches.clone();
        stop_flag.store(false, Ordering::SeqCst);
        *self.batch_thread.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(std::thread::current().id());
        let stop_requested = |py: Python<'_>| -> PyResult<bool> {
            match &stop {
                Some(ev) => ev.bind(py).call_method0("is_set")?.is_truthy(),
                None => Ok(false),
            }
        };

        let (tx, mut rx) =
            mpsc::channel::<(PartitionBatch, oneshot::Sender<Result<(), String>>)>(1);
        let loop_stop = stop_flag.clone();
        let mut run = Box::pin(c.run_batches_until(
            move || loop_stop.load(Ordering::SeqCst),
            move |batch: PartitionBatch| {
                let tx = tx.clone();
                async move {
                    let (reply, answer) = oneshot::channel();
                    tx.send((batch, reply))
                        .await
                        .map_err(|_| "the Python thread left run_batches".to_string())?;
                    answer
                        .await
                        .unwrap_or_else(|_| Err("the handler gave no answer".to_string()))
                }
            },
        ));

        let mut handled: u64 = 0;
        let mut raised: Option<PyErr> = None;
        let ended = |raised: &mut Option<PyErr>, e: PyErr| {
            stop_flag.store(true, Ordering::SeqCst);
            raised.get_or_insert(e);
        };
        match stop_requested(py) {
            Ok(true) => stop_flag.store(true, Ordering::SeqCst),
            Ok(false) => {}
            Err(e) => ended(&mut raised, e),
        }
        let result = loop {
            let step = py.detach(|| {
                rt.block_on(async {
                    tokio::select! {
                        biased;
                        r = &mut run => BatchStep::Done(r),
                        Some((batch, reply)) = rx.recv() => BatchStep::Batch(batch, reply),
                        _ = tokio::time::sleep(SLICE) => BatchStep::Tick,
                    }
                })
            });
            match step {
                BatchStep::Done(r) => break r,
                BatchStep::Tick => {}
                BatchStep::Batch(batch, reply) => {
                    let outcome = call_handler(py, types, &handler, &batch_factory, batch);
                    let answer = match outcome {
                        Ok(()) => {
                            handled += 1;
                            if max_batches.is_some_and(|m| handled >= m) {
                                stop_flag.store(true, Ordering::SeqCst);
                            }
                            Ok(())
                        }
                        Err(e) => {
                            let message = e.to_string();
                            // Only an Exception is retried: KeyboardInterrupt,
                            // SystemExit and the like always end the loop.
                            if !(retry && e.is_instance_of::<pyo3::exceptions::PyException>(py)) {
                                ended(&mut raised, e);
                            }
                            Err(message)
                        }
                    };
                    let _ = reply.send(answer);
                }
            }
            if let Err(e) = py.check_signals() {
                ended(&mut raised, e);
            }
            match stop_requested(py) {
                Ok(true) => stop_flag.store(true, Ordering::SeqCst),
                Ok(false) => {}
                Err(e) => ended(&mut raised, e),
            }
        };
        drop(run);
        drop(g);
        *self.batch_thread.lock().unwrap_or_else(|e| e.into_inner()) = None;
        if let Some(e) = raised {
            return Err(e);
        }
        result.py_err(py)?;
        Ok(handled)
    }

    /// Ends the `run_batches` loop in progress (from its handler or any
    /// thread): the batch being handled is still committed if its handler
    /// returns; later ones are left for the next poll.
    fn stop_batches(&self) {
        self.stop_batches.store(true, Ordering::SeqCst);
    }

    /// Commits (auto-commit), leaves the group, stops; later calls raise
    /// `KafkaClosedError`. Waits up to `timeout` seconds for the group exit.
    #[pyo3(signature = (timeout=None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout)?;
        let mut g = self.lock(py)?;
        let Some(mut c) = g.take() else { return Ok(()) };
        drop(g);
        match wait(py, timeout, async move { c.close().await })? {
            Some(r) => r.py_err(py),
            None => Ok(()),
        }
    }
}
