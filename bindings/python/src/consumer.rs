//! `_sluice.Consumer`: `sluice::Consumer` for Python. Every call locks the
//! consumer with the GIL released (a consumer is one thread's object, as in
//! kafka-python; a second thread waits its turn instead of deadlocking), and
//! network waits run through `runtime::wait`. Records cross as tuples the
//! Python layer turns into `ConsumerRecord`s; rebalance callbacks run inside
//! `poll` on the calling Python thread, as the Java client runs them.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sluice::config::TokenProviderHandle;
use sluice::admin::OffsetSpec;
use sluice::consumer::TimestampType;
use sluice::{Consumer as RustConsumer, ConsumerConfig, ConsumerRecord, Error, OffsetAndMetadata, RebalanceListener, TopicPartition};

use crate::errors::{guard, to_py, IntoPy};
use crate::runtime::{runtime, seconds, wait, wait_done};
use crate::token::PyTokenProvider;

type Tp = (String, i32);
/// (topic, partition, offset, timestamp, timestamp_type, key, value, headers, leader_epoch)
type RecordTuple = (String, i32, i64, i64, i32, Option<Py<PyBytes>>, Option<Py<PyBytes>>, Vec<(String, Option<Py<PyBytes>>)>, Option<i32>);

fn tps(parts: Vec<Tp>) -> Vec<TopicPartition> {
    parts.into_iter().map(|(t, p)| TopicPartition::new(t, p)).collect()
}

fn tuples<'a>(parts: impl IntoIterator<Item = &'a TopicPartition>) -> Vec<Tp> {
    parts.into_iter().map(|tp| (tp.topic.clone(), tp.partition)).collect()
}

fn record(py: Python<'_>, r: &ConsumerRecord) -> RecordTuple {
    let b = |v: &Option<bytes::Bytes>| v.as_ref().map(|v| PyBytes::new(py, v).unbind());
    (
        r.topic.clone(),
        r.partition,
        r.offset,
        r.timestamp,
        match r.timestamp_type {
            TimestampType::CreateTime => 0,
            TimestampType::LogAppendTime => 1,
        },
        b(&r.key),
        b(&r.value),
        r.headers.iter().map(|(k, v)| (k.clone(), b(v))).collect(),
        r.leader_epoch,
    )
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
}

impl Consumer {
    /// Runs `f` on the consumer with the GIL released; `KafkaClosedError`
    /// after `close`.
    fn with<T>(&self, py: Python<'_>, f: impl FnOnce(Python<'_>, &mut RustConsumer) -> PyResult<T>) -> PyResult<T> {
        let mut g: MutexGuard<'_, Option<RustConsumer>> = py.detach(|| self.inner.blocking_lock());
        match g.as_mut() {
            Some(c) => f(py, c),
            None => Err(to_py(py, &Error::Closed)),
        }
    }
}

#[pymethods]
impl Consumer {
    #[new]
    #[pyo3(signature = (properties, token_provider=None))]
    fn new(py: Python<'_>, properties: Vec<(String, String)>, token_provider: Option<Py<PyAny>>) -> PyResult<Self> {
        let mut cfg = ConsumerConfig::from_properties(properties.iter().map(|(k, v)| (k.as_str(), v.as_str()))).py_err(py)?;
        cfg.client.sasl_oauth_token_provider = token_provider.map(|p| TokenProviderHandle(Arc::new(PyTokenProvider::new(p))));
        let consumer = wait_done(py, RustConsumer::connect(cfg))?.py_err(py)?;
        Ok(Consumer { inner: Mutex::new(Some(consumer)), admin: std::sync::OnceLock::new() })
    }

    #[pyo3(signature = (topics=None, pattern=None, listener=None))]
    fn subscribe(&self, py: Python<'_>, topics: Option<Vec<String>>, pattern: Option<String>, listener: Option<Py<PyAny>>) -> PyResult<()> {
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
        self.with(py, |py, c| {
            wait_done(py, c.unsubscribe())?.py_err(py)
        })
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

    /// Records as tuples: waits up to `timeout` seconds for some, returns at
    /// most `max_records` (None: max.poll.records).
    #[pyo3(signature = (timeout, max_records=None))]
    fn poll(&self, py: Python<'_>, timeout: f64, max_records: Option<usize>) -> PyResult<Vec<RecordTuple>> {
        let timeout = seconds(Some(timeout))?.unwrap_or(Duration::ZERO);
        let mut g = py.detach(|| self.inner.blocking_lock());
        let Some(c) = g.as_mut() else { return Err(to_py(py, &Error::Closed)) };
        let max = max_records.unwrap_or(c.config().max_poll_records);
        // The poll itself gets no outer timeout: it returns by `timeout`.
        let records = wait_done(py, c.poll_up_to(timeout, max))?.py_err(py)?;
        drop(g);
        Ok(records.iter().map(|r| record(py, r)).collect())
    }

    /// Commits `offsets` [(topic, partition, offset, metadata)], or the
    /// consumed positions when None.
    #[pyo3(signature = (offsets=None))]
    fn commit(&self, py: Python<'_>, offsets: Option<Vec<(String, i32, i64, String)>>) -> PyResult<()> {
        let mut g = py.detach(|| self.inner.blocking_lock());
        let Some(c) = g.as_mut() else { return Err(to_py(py, &Error::Closed)) };
        let r = match offsets {
            None => wait_done(py, c.commit_sync())?,
            Some(o) => {
                let o: Vec<(TopicPartition, OffsetAndMetadata)> = o
                    .into_iter()
                    .map(|(t, p, off, md)| (TopicPartition::new(t, p), OffsetAndMetadata { offset: off, leader_epoch: None, metadata: md }))
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
    fn commit_async(&self, py: Python<'_>, offsets: Option<Vec<(String, i32, i64, String)>>, callback: Option<Py<PyAny>>) -> PyResult<()> {
        let rt = runtime()?;
        let fut = self.with(py, |_, c| {
            let _ctx = rt.enter();
            Ok(match offsets {
                None => c.commit_async().boxed(),
                Some(o) => c
                    .commit_async_offsets(o.into_iter().map(|(t, p, off, md)| {
                        (TopicPartition::new(t, p), OffsetAndMetadata { offset: off, leader_epoch: None, metadata: md })
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
        let mut g = py.detach(|| self.inner.blocking_lock());
        let Some(c) = g.as_mut() else { return Err(to_py(py, &Error::Closed)) };
        let tp = TopicPartition::new(topic, partition);
        wait_done(py, c.position(&tp))?.py_err(py)
    }

    /// Committed offsets: [(topic, partition, offset or None, metadata)].
    fn committed(&self, py: Python<'_>, partitions: Vec<Tp>) -> PyResult<Vec<(String, i32, Option<i64>, String)>> {
        let g = py.detach(|| self.inner.blocking_lock());
        let Some(c) = g.as_ref() else { return Err(to_py(py, &Error::Closed)) };
        let parts = tps(partitions);
        let m = wait_done(py, c.committed(&parts))?.py_err(py)?;
        Ok(parts
            .iter()
            .map(|tp| {
                let o = m.get(tp).cloned().flatten();
                (tp.topic.clone(), tp.partition, o.as_ref().map(|o| o.offset), o.map(|o| o.metadata).unwrap_or_default())
            })
            .collect())
    }

    /// ListOffsets for `partitions`: `spec` -2 earliest, -1 latest, else a
    /// timestamp (ms). Returns (topic, partition, offset, timestamp); offset
    /// -1 where no record is that recent.
    fn list_offsets(&self, py: Python<'_>, partitions: Vec<Tp>, spec: i64) -> PyResult<Vec<(String, i32, i64, i64)>> {
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
        wait_done(py, async move { admin.list_offsets(&partitions, spec).await })?.py_err(py)
    }

    /// The partition numbers of `topic` (refreshing metadata), or None if
    /// the topic does not exist.
    fn partitions_for_topic(&self, py: Python<'_>, topic: String) -> PyResult<Option<Vec<i32>>> {
        let cluster = self.with(py, |_, c| Ok(c.cluster().clone()))?;
        let t = topic.clone();
        let refreshed = wait_done(py, async move { cluster.refresh_metadata(&[t]).await.map(|_| cluster) })?.py_err(py)?;
        Ok(refreshed.topic(&topic).filter(|t| t.error == 0).map(|t| t.partitions.iter().map(|p| p.partition).collect()))
    }

    /// Every topic name in the cluster (refreshing metadata).
    fn topics(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let cluster = self.with(py, |_, c| Ok(c.cluster().clone()))?;
        let refreshed = wait_done(py, async move { cluster.refresh_all_topics().await.map(|_| cluster) })?.py_err(py)?;
        Ok(refreshed.topics().iter().filter(|t| !t.internal && t.error == 0).map(|t| t.name.clone()).collect())
    }

    /// Commits (auto-commit), leaves the group, stops; later calls raise
    /// `KafkaClosedError`. Waits up to `timeout` seconds for the group exit.
    #[pyo3(signature = (timeout=None))]
    fn close(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let timeout = seconds(timeout)?;
        let mut g = py.detach(|| self.inner.blocking_lock());
        let Some(mut c) = g.take() else { return Ok(()) };
        drop(g);
        match wait(py, timeout, async move { c.close().await })? {
            Some(r) => r.py_err(py),
            None => Ok(()),
        }
    }
}
