//! The cluster as the client sees it: brokers and topic metadata (leaders,
//! leader epochs, topic ids), refreshed on demand, on errors that mean the
//! cache is stale, and after `metadata.max.age.ms`; one connection per
//! broker, reopened with exponential backoff (`reconnect.backoff.ms` up to
//! `reconnect.backoff.max.ms`); and group and transaction coordinators
//! found by FindCoordinator and cached until they fail.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{FindCoordinatorRequest, MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpStream;

use super::connection::Connection;
use crate::backoff::ExponentialBackoff;
use crate::config::ClientConfig;
use crate::error::{Error, ErrorCode, Result};

#[derive(Debug, Clone)]
pub struct PartitionInfo {
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub error: ErrorCode,
}

#[derive(Debug, Clone)]
pub struct TopicInfo {
    pub name: String,
    pub id: uuid::Uuid,
    pub internal: bool,
    pub error: ErrorCode,
    pub partitions: Vec<PartitionInfo>,
}

#[derive(Debug, Clone)]
pub struct BrokerInfo {
    pub node_id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// What a coordinator coordinates (FindCoordinator's `key_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoordinatorType {
    /// A consumer group (key: the group id).
    Group,
    /// A transactional producer (key: its `transactional.id`).
    Transaction,
}

impl CoordinatorType {
    fn key_type(self) -> i8 {
        match self {
            CoordinatorType::Group => 0,
            CoordinatorType::Transaction => 1,
        }
    }
}

/// A broker address's reconnect backoff (`reconnect.backoff.ms` growing to
/// `reconnect.backoff.max.ms`, as the Java client's).
struct Backoff {
    /// Failed connects in a row.
    failures: u32,
    until: Instant,
}

#[derive(Default)]
struct State {
    brokers: HashMap<i32, BrokerInfo>,
    topics: HashMap<String, Arc<TopicInfo>>,
    cluster_id: Option<String>,
    controller_id: i32,
    conns: HashMap<i32, Arc<Connection>>,
    backoff: HashMap<String, Backoff>,
    coordinators: HashMap<(CoordinatorType, String), i32>,
    last_refresh: Option<Instant>,
    /// Topics this client cares about (refreshed together).
    interest: HashSet<String>,
}

pub struct Cluster {
    pub config: ClientConfig,
    /// The SASL mechanism, built once so its caches (an MSK IAM signer's
    /// credentials and token) serve every connection.
    sasl: Option<super::sasl::SaslConfig>,
    state: Mutex<State>,
    /// One metadata refresh at a time; waiters reuse its result.
    refresh: tokio::sync::Mutex<()>,
    connecting: tokio::sync::Mutex<()>,
    bootstrap: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl Cluster {
    /// Connects to a bootstrap server and loads the broker list.
    pub async fn connect(config: ClientConfig) -> Result<Arc<Cluster>> {
        let sasl = if config.security_protocol.uses_sasl() {
            Some(super::secure::sasl_config(&config)?)
        } else {
            None
        };
        let c = Arc::new(Cluster {
            config,
            sasl,
            state: Mutex::new(State::default()),
            refresh: tokio::sync::Mutex::new(()),
            connecting: tokio::sync::Mutex::new(()),
            bootstrap: tokio::sync::Mutex::new(None),
        });
        c.refresh_metadata(&[]).await?;
        Ok(c)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.lock().cluster_id.clone()
    }

    pub fn controller_id(&self) -> i32 {
        self.lock().controller_id
    }

    pub fn brokers(&self) -> Vec<BrokerInfo> {
        let mut b: Vec<_> = self.lock().brokers.values().cloned().collect();
        b.sort_by_key(|b| b.node_id);
        b
    }

    pub fn topic(&self, name: &str) -> Option<Arc<TopicInfo>> {
        self.lock().topics.get(name).cloned()
    }

    pub fn topics(&self) -> Vec<Arc<TopicInfo>> {
        self.lock().topics.values().cloned().collect()
    }

    pub fn leader_for(&self, topic: &str, partition: i32) -> Option<i32> {
        let st = self.lock();
        let t = st.topics.get(topic)?;
        t.partitions
            .iter()
            .find(|p| p.partition == partition)
            .map(|p| p.leader)
            .filter(|l| *l >= 0)
    }

    pub fn is_stale(&self) -> bool {
        self.lock()
            .last_refresh
            .is_none_or(|t| t.elapsed() > self.config.metadata_max_age)
    }

    /// Opens a TCP (and, when configured, TLS + SASL) connection.
    async fn dial(&self, addr: &str, node_id: i32) -> Result<Arc<Connection>> {
        let cfg = &self.config;
        let tcp = tokio::time::timeout(cfg.connection_setup_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| Error::Connection {
                broker: addr.to_string(),
                reason: "connection setup timed out".into(),
            })?
            .map_err(|e| Error::Connection {
                broker: addr.to_string(),
                reason: e.to_string(),
            })?;
        let _ = tcp.set_nodelay(true);
        if cfg.security_protocol.uses_tls() || cfg.security_protocol.uses_sasl() {
            return super::secure::open(tcp, addr, node_id, cfg, self.sasl.as_ref()).await;
        }
        Connection::open(tcp, addr, node_id, &cfg.client_id, cfg.request_timeout).await
    }

    fn check_backoff(&self, addr: &str) -> Result<()> {
        let st = self.lock();
        if let Some(b) = st.backoff.get(addr) {
            if Instant::now() < b.until {
                return Err(Error::Connection {
                    broker: addr.to_string(),
                    reason: "in reconnect backoff".into(),
                });
            }
        }
        Ok(())
    }

    fn note_result<T>(&self, addr: &str, r: &Result<T>) {
        let mut st = self.lock();
        match r {
            Ok(_) => {
                st.backoff.remove(addr);
            }
            Err(_) => {
                let backoff = ExponentialBackoff::new(
                    self.config.reconnect_backoff,
                    self.config.reconnect_backoff_max,
                );
                let b = st.backoff.entry(addr.to_string()).or_insert(Backoff {
                    failures: 0,
                    until: Instant::now(),
                });
                // The n-th failure in a row waits as the n-th retry does.
                b.until = Instant::now() + backoff.delay(b.failures);
                b.failures = b.failures.saturating_add(1);
            }
        }
    }

    /// The connection to broker `node_id`, opened if needed.
    pub async fn connection(&self, node_id: i32) -> Result<Arc<Connection>> {
        if let Some(c) = self
            .lock()
            .conns
            .get(&node_id)
            .filter(|c| !c.is_closed())
            .cloned()
        {
            return Ok(c);
        }
        let _g = self.connecting.lock().await;
        if let Some(c) = self
            .lock()
            .conns
            .get(&node_id)
            .filter(|c| !c.is_closed())
            .cloned()
        {
            return Ok(c);
        }
        let addr = {
            let st = self.lock();
            let b = st.brokers.get(&node_id).ok_or_else(|| Error::Connection {
                broker: format!("node {node_id}"),
                reason: "unknown broker".into(),
            })?;
            format!("{}:{}", b.host, b.port)
        };
        self.check_backoff(&addr)?;
        let r = self.dial(&addr, node_id).await;
        self.note_result(&addr, &r);
        let conn = r?;
        self.lock().conns.insert(node_id, conn.clone());
        Ok(conn)
    }

    /// Any usable connection: a known broker's, else a bootstrap server's.
    pub async fn any_connection(&self) -> Result<Arc<Connection>> {
        let nodes: Vec<i32> = {
            let st = self.lock();
            let mut open: Vec<i32> = st
                .conns
                .iter()
                .filter(|(_, c)| !c.is_closed())
                .map(|(n, _)| *n)
                .collect();
            let mut rest: Vec<i32> = st
                .brokers
                .keys()
                .filter(|n| !open.contains(n))
                .copied()
                .collect();
            rest.sort();
            open.append(&mut rest);
            open
        };
        for n in nodes {
            if let Ok(c) = self.connection(n).await {
                return Ok(c);
            }
        }
        self.bootstrap_connection().await
    }

    async fn bootstrap_connection(&self) -> Result<Arc<Connection>> {
        let mut slot = self.bootstrap.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let mut last_err = None;
        for addr in &self.config.bootstrap_servers {
            match self.dial(addr, -1).await {
                Ok(c) => {
                    *slot = Some(c.clone());
                    return Ok(c);
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "bootstrap server unreachable");
                    last_err = Some(e);
                }
            }
        }
        match last_err {
            Some(Error::Authentication(m)) => Err(Error::Authentication(m)),
            _ => Err(Error::NoBrokersAvailable(
                self.config.bootstrap_servers.join(","),
            )),
        }
    }

    /// Adds topics to those refreshed, and refreshes if any were unknown.
    pub async fn ensure_topics(&self, topics: &[String]) -> Result<()> {
        let missing: Vec<String> = {
            let mut st = self.lock();
            for t in topics {
                st.interest.insert(t.clone());
            }
            topics
                .iter()
                .filter(|t| !st.topics.contains_key(*t))
                .cloned()
                .collect()
        };
        if !missing.is_empty() {
            self.refresh_metadata(&missing).await?;
        }
        Ok(())
    }

    /// Refreshes metadata for `topics` plus every topic of interest
    /// (an empty slice with no interest asks for no topics).
    pub async fn refresh_metadata(&self, topics: &[String]) -> Result<()> {
        let _g = self.refresh.lock().await;
        let names: Vec<String> = {
            let st = self.lock();
            let mut all: HashSet<String> = st.interest.clone();
            all.extend(topics.iter().cloned());
            all.into_iter().collect()
        };
        self.fetch_metadata(Some(names), self.config.allow_auto_create_topics)
            .await
    }

    /// Refreshes metadata of every topic in the cluster.
    pub async fn refresh_all_topics(&self) -> Result<()> {
        let _g = self.refresh.lock().await;
        self.fetch_metadata(None, false).await
    }

    async fn fetch_metadata(
        &self,
        names: Option<Vec<String>>,
        allow_auto_create: bool,
    ) -> Result<()> {
        let conn = self.any_connection().await?;
        let mut req = MetadataRequest::default();
        req.topics = names.map(|ns| {
            ns.into_iter()
                .map(|n| {
                    let mut t = MetadataRequestTopic::default();
                    t.name = Some(TopicName(StrBytes::from_string(n)));
                    t
                })
                .collect()
        });
        req.allow_auto_topic_creation = allow_auto_create;
        let all_topics = req.topics.is_none();
        let resp = match conn.send(&req).await {
            Ok(r) => r,
            Err(e) => {
                return Err(e);
            }
        };
        let mut st = self.lock();
        st.brokers = resp
            .brokers
            .iter()
            .map(|b| {
                (
                    b.node_id.0,
                    BrokerInfo {
                        node_id: b.node_id.0,
                        host: b.host.to_string(),
                        port: b.port,
                        rack: b.rack.as_ref().map(|r| r.to_string()),
                    },
                )
            })
            .collect();
        st.cluster_id = resp.cluster_id.as_ref().map(|c| c.to_string());
        st.controller_id = resp.controller_id.0;
        if all_topics {
            // A full answer lists every topic: forget the deleted ones.
            let live: HashSet<String> = resp
                .topics
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                .collect();
            st.topics.retain(|name, _| live.contains(name));
        }
        for t in resp.topics {
            let Some(name) = t.name.as_ref().map(|n| n.to_string()) else {
                continue;
            };
            let topic_error = ErrorCode::from_code(t.error_code);
            if topic_error == ErrorCode::UnknownTopicOrPartition {
                st.topics.remove(&name);
                continue;
            }
            let mut partitions: Vec<PartitionInfo> = t
                .partitions
                .iter()
                .map(|p| PartitionInfo {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    leader_epoch: p.leader_epoch,
                    replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                    isr: p.isr_nodes.iter().map(|r| r.0).collect(),
                    error: ErrorCode::from_code(p.error_code),
                })
                .collect();
            partitions.sort_by_key(|p| p.partition);
            st.topics.insert(
                name.clone(),
                Arc::new(TopicInfo {
                    name,
                    id: t.topic_id,
                    internal: t.is_internal,
                    error: topic_error,
                    partitions,
                }),
            );
        }
        // Drop connections to brokers that left.
        let known: HashSet<i32> = st.brokers.keys().copied().collect();
        st.conns.retain(|n, _| known.contains(n));
        st.last_refresh = Some(Instant::now());
        Ok(())
    }

    /// Forgets a broker connection after an error on it.
    pub fn invalidate_connection(&self, node_id: i32) {
        self.lock().conns.remove(&node_id);
    }

    /// The connection to `group`'s coordinator (FindCoordinator, cached).
    pub async fn coordinator(&self, group: &str) -> Result<Arc<Connection>> {
        self.coordinator_for(CoordinatorType::Group, group).await
    }

    /// The connection to the coordinator of `key` (a group id or a
    /// transactional id), found with FindCoordinator and cached until
    /// forgotten. FindCoordinator's error (e.g. COORDINATOR_NOT_AVAILABLE
    /// while Kafka creates `__transaction_state`) is returned as is: the
    /// caller decides how long to retry.
    pub async fn coordinator_for(
        &self,
        kind: CoordinatorType,
        key: &str,
    ) -> Result<Arc<Connection>> {
        let cached = self
            .lock()
            .coordinators
            .get(&(kind, key.to_string()))
            .copied();
        if let Some(node) = cached {
            if let Ok(c) = self.connection(node).await {
                return Ok(c);
            }
        }
        let group = key;
        let conn = self.any_connection().await?;
        let mut req = FindCoordinatorRequest::default();
        req.key_type = kind.key_type();
        let (resp, v) = if conn
            .versions()
            .pick(kafka_protocol::messages::ApiKey::FindCoordinator)?
            >= 4
        {
            req.coordinator_keys = vec![StrBytes::from_string(group.to_string())];
            conn.send_with_version(&req).await?
        } else {
            req.key = StrBytes::from_string(group.to_string());
            conn.send_with_version(&req).await?
        };
        let (code, node, host, port, msg) = if v >= 4 {
            let c = resp
                .coordinators
                .first()
                .ok_or_else(|| Error::Protocol("empty FindCoordinator answer".into()))?;
            (
                c.error_code,
                c.node_id.0,
                c.host.to_string(),
                c.port,
                c.error_message.as_ref().map(|m| m.to_string()),
            )
        } else {
            (
                resp.error_code,
                resp.node_id.0,
                resp.host.to_string(),
                resp.port,
                resp.error_message.as_ref().map(|m| m.to_string()),
            )
        };
        if code != ErrorCode::None.code() {
            return Err(Error::from_wire(code, msg));
        }
        {
            let mut st = self.lock();
            st.brokers.entry(node).or_insert(BrokerInfo {
                node_id: node,
                host,
                port,
                rack: None,
            });
            st.coordinators.insert((kind, group.to_string()), node);
        }
        self.connection(node).await
    }

    pub fn forget_coordinator(&self, group: &str) {
        self.forget_coordinator_for(CoordinatorType::Group, group);
    }

    /// Forgets a cached coordinator (after NOT_COORDINATOR or a broken connection).
    pub fn forget_coordinator_for(&self, kind: CoordinatorType, key: &str) {
        self.lock().coordinators.remove(&(kind, key.to_string()));
    }
}
