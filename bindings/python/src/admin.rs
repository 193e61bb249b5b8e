//! `_sluice.Admin`: `sluice::AdminClient` for Python, answering with plain
//! tuples and dicts that the Python `KafkaAdminClient` shapes as
//! kafka-python does. Per-topic failures come back as exception instances
//! next to the topic name, so the Python layer can raise or report them.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use sluice::config::TokenProviderHandle;
use sluice::{AdminClient, ClientConfig, Error, NewTopic};

use crate::errors::{to_py, IntoPy};
use crate::runtime::wait_done;
use crate::token::PyTokenProvider;

#[pyclass(frozen, module = "sluice._sluice")]
pub struct Admin {
    inner: AdminClient,
}

type Outcomes = Vec<(String, Option<Py<PyAny>>)>;

fn outcomes(py: Python<'_>, results: Vec<(String, Result<(), Error>)>) -> Outcomes {
    results
        .into_iter()
        .map(|(name, r)| {
            (
                name,
                r.err().map(|e| to_py(py, &e).into_value(py).into_any()),
            )
        })
        .collect()
}

/// A topic to create as Python passes it: (name, partitions, replication
/// factor, [(config, value)]).
type NewTopicSpec = (String, i32, i16, Vec<(String, String)>);

#[pymethods]
impl Admin {
    #[new]
    #[pyo3(signature = (properties, token_provider=None))]
    fn new(
        py: Python<'_>,
        properties: Vec<(String, String)>,
        token_provider: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let mut cfg =
            ClientConfig::from_properties(properties.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .py_err(py)?;
        cfg.sasl_oauth_token_provider =
            token_provider.map(|p| TokenProviderHandle(Arc::new(PyTokenProvider::new(p))));
        let inner = wait_done(py, AdminClient::connect(cfg))?.py_err(py)?;
        Ok(Admin { inner })
    }

    /// Creates topics given as (name, partitions, replication factor,
    /// [(config, value)]); returns (name, exception or None) per topic.
    #[pyo3(signature = (topics, validate_only=false))]
    fn create_topics(
        &self,
        py: Python<'_>,
        topics: Vec<NewTopicSpec>,
        validate_only: bool,
    ) -> PyResult<Outcomes> {
        let topics: Vec<NewTopic> = topics
            .into_iter()
            .map(|(name, partitions, rf, configs)| NewTopic {
                name,
                partitions,
                replication_factor: rf,
                configs,
            })
            .collect();
        let admin = self.inner.clone();
        let r = wait_done(py, async move {
            admin.create_topics(topics, validate_only).await
        })?
        .py_err(py)?;
        Ok(outcomes(py, r))
    }

    fn delete_topics(&self, py: Python<'_>, topics: Vec<String>) -> PyResult<Outcomes> {
        let admin = self.inner.clone();
        let r = wait_done(py, async move { admin.delete_topics(&topics).await })?.py_err(py)?;
        Ok(outcomes(py, r))
    }

    /// Raises a topic's partition count to `total`.
    fn create_partitions(&self, py: Python<'_>, topic: String, total: i32) -> PyResult<()> {
        let admin = self.inner.clone();
        wait_done(
            py,
            async move { admin.create_partitions(&topic, total).await },
        )?
        .py_err(py)
    }

    #[pyo3(signature = (include_internal=false))]
    fn list_topics(&self, py: Python<'_>, include_internal: bool) -> PyResult<Vec<String>> {
        let admin = self.inner.clone();
        let r =
            wait_done(py, async move { admin.list_topics(include_internal).await })?.py_err(py)?;
        Ok(r.iter().map(|t| t.name.clone()).collect())
    }

    /// kafka-python's describe_topics entries: dicts with error_code, topic,
    /// is_internal and partitions (error_code, partition, leader, replicas, isr).
    fn describe_topics(&self, py: Python<'_>, topics: Vec<String>) -> PyResult<Vec<Py<PyDict>>> {
        let admin = self.inner.clone();
        let r = wait_done(py, async move {
            if topics.is_empty() {
                admin.list_topics(false).await
            } else {
                admin.describe_topics(&topics).await
            }
        })?
        .py_err(py)?;
        r.iter()
            .map(|t| {
                let d = PyDict::new(py);
                d.set_item("error_code", t.error.code())?;
                d.set_item("topic", &t.name)?;
                d.set_item("is_internal", t.internal)?;
                let parts = t
                    .partitions
                    .iter()
                    .map(|p| {
                        let pd = PyDict::new(py);
                        pd.set_item("error_code", p.error.code())?;
                        pd.set_item("partition", p.partition)?;
                        pd.set_item("leader", p.leader)?;
                        pd.set_item("leader_epoch", p.leader_epoch)?;
                        pd.set_item("replicas", p.replicas.clone())?;
                        pd.set_item("isr", p.isr.clone())?;
                        Ok(pd.unbind())
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                d.set_item("partitions", parts)?;
                Ok(d.unbind())
            })
            .collect()
    }

    /// [(group_id, protocol_type)] as kafka-python's list_consumer_groups.
    fn list_groups(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        let admin = self.inner.clone();
        let r = wait_done(py, async move { admin.list_groups().await })?.py_err(py)?;
        Ok(r.into_iter()
            .map(|g| (g.group_id, g.protocol_type))
            .collect())
    }

    /// Dicts: group_id, state, protocol_type, protocol, error_code, members
    /// (member_id, group_instance_id, client_id, client_host, assignment).
    fn describe_groups(&self, py: Python<'_>, groups: Vec<String>) -> PyResult<Vec<Py<PyDict>>> {
        let admin = self.inner.clone();
        let r = wait_done(py, async move { admin.describe_groups(&groups).await })?.py_err(py)?;
        r.iter()
            .map(|g| {
                let d = PyDict::new(py);
                d.set_item("group_id", &g.group_id)?;
                d.set_item("state", &g.state)?;
                d.set_item("protocol_type", &g.protocol_type)?;
                d.set_item("protocol", &g.protocol)?;
                d.set_item("error_code", g.error.code())?;
                let members = g
                    .members
                    .iter()
                    .map(|m| {
                        let md = PyDict::new(py);
                        md.set_item("member_id", &m.member_id)?;
                        md.set_item("group_instance_id", &m.group_instance_id)?;
                        md.set_item("client_id", &m.client_id)?;
                        md.set_item("client_host", &m.host)?;
                        md.set_item("assignment", m.assignment.clone())?;
                        Ok(md.unbind())
                    })
                    .collect::<PyResult<Vec<_>>>()?;
                d.set_item("members", members)?;
                Ok(d.unbind())
            })
            .collect()
    }

    /// [(topic, partition, committed offset)] of a group.
    fn list_group_offsets(
        &self,
        py: Python<'_>,
        group: String,
    ) -> PyResult<Vec<(String, i32, i64)>> {
        let admin = self.inner.clone();
        let r = wait_done(py, async move { admin.list_group_offsets(&group).await })?.py_err(py)?;
        Ok(r.into_iter().map(|((t, p), o)| (t, p, o)).collect())
    }

    /// dict: cluster_id, controller_id, brokers [(node_id, host, port, rack)].
    fn describe_cluster(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let cluster = self.inner.cluster().clone();
        let c = cluster.clone();
        wait_done(py, async move { c.refresh_metadata(&[]).await })?.py_err(py)?;
        let d = PyDict::new(py);
        d.set_item("cluster_id", cluster.cluster_id())?;
        d.set_item("controller_id", cluster.controller_id())?;
        let brokers: Vec<(i32, String, i32, Option<String>)> = cluster
            .brokers()
            .into_iter()
            .map(|b| (b.node_id, b.host, b.port, b.rack))
            .collect();
        d.set_item("brokers", brokers)?;
        Ok(d.unbind())
    }
}
