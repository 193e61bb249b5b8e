//! Thread-per-core: one pinned thread per shard, each running its own
//! io_uring (`compio`) runtime. A shard owns its partitions and consumer
//! groups outright; nothing on the produce or fetch path takes a lock. Work
//! for another shard crosses through that shard's mailbox (a `flume` channel
//! of closures, woken through the runtime's eventfd), and the answer comes
//! back on a oneshot. Ownership is a pure function of (topic id, partition),
//! and a group belongs to the owner of its `__consumer_offsets` partition.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::channel::oneshot;
use futures::future::{FutureExt, LocalBoxFuture, Shared};
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use crate::cluster::{Metadata, TopicMeta, OFFSETS_TOPIC};
use crate::config::BrokerConfig;
use crate::fetch_session::FetchSessionCache;
use crate::group::GroupCoordinator;
use crate::log::PartitionLog;
use crate::replica::{Partition, ReplicaConfig, ReplicaManager};

pub mod groups;
pub mod hw_checkpoint;
pub mod roles;
pub mod txns;

pub type Job = Box<dyn FnOnce(&Rc<Shard>) + Send>;

/// State shared by all shards (read-mostly).
pub struct Broker {
    pub config: Arc<BrokerConfig>,
    pub metadata: Metadata,
    mailboxes: Vec<flume::Sender<Job>>,
    pub shutting_down: AtomicBool,
    /// Every listener, bound (advertised addresses resolved).
    pub listeners: Vec<Arc<crate::auth::Listener>>,
    /// Authentication (SASL credentials) and authorization (IAM policies).
    pub security: crate::auth::Security,
    /// Cluster mode: the data directory's `replication-offset-checkpoint`.
    pub hw_checkpoint: hw_checkpoint::HwCheckpoint,
    /// The data directory's `cleaner-offset-checkpoint`, shared by the
    /// shards' log cleaners.
    pub cleaner_checkpoint: Arc<crate::log::cleaner::checkpoint::CleanerCheckpoint>,
    /// TLS and SASL for connections to other brokers (the inter-broker
    /// listener's protocol).
    pub inter_broker_security: crate::peer::PeerSecurity,
    /// Client quota accounting, shared by every shard.
    pub quotas: crate::quota::QuotaManager,
}

thread_local! {
    static CURRENT: RefCell<Option<Rc<Shard>>> = const { RefCell::new(None) };
}

/// FNV-1a: stable across runs and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

impl Broker {
    pub fn new(
        config: Arc<BrokerConfig>,
        metadata: Metadata,
        mailboxes: Vec<flume::Sender<Job>>,
        listeners: Vec<Arc<crate::auth::Listener>>,
        security: crate::auth::Security,
        inter_broker_security: crate::peer::PeerSecurity,
    ) -> Broker {
        let hw_checkpoint =
            hw_checkpoint::HwCheckpoint::new(config.data_dir.clone(), mailboxes.len().max(1));
        let cleaner_checkpoint = Arc::new(crate::log::cleaner::checkpoint::CleanerCheckpoint::new(
            config.data_dir.clone(),
        ));
        let quotas = crate::quota::QuotaManager::new(&config.quotas);
        Broker {
            quotas,
            config,
            metadata,
            hw_checkpoint,
            cleaner_checkpoint,
            mailboxes,
            shutting_down: AtomicBool::new(false),
            listeners,
            security,
            inter_broker_security,
        }
    }

    pub fn shard_count(&self) -> usize {
        self.mailboxes.len()
    }

    /// The shard owning a partition: partitions of one topic are spread
    /// round-robin from a start derived from the topic id.
    pub fn owner_of_partition(&self, topic_id: &Uuid, partition: i32) -> usize {
        let n = self.shard_count() as u64;
        ((fnv1a(topic_id.as_bytes()) % n + partition.max(0) as u64) % n) as usize
    }

    /// Kafka's mapping of a group to its `__consumer_offsets` partition.
    pub fn offsets_partition_of_group(&self, group: &str) -> i32 {
        crate::cluster::coordinator_partition(group, self.config.offsets_topic_num_partitions)
    }

    pub fn owner_of_group(&self, group: &str) -> usize {
        let img = self.metadata.image();
        match img.by_name.get(OFFSETS_TOPIC) {
            Some(t) => self.owner_of_partition(&t.id, self.offsets_partition_of_group(group)),
            None => 0,
        }
    }

    /// Runs `f` on shard `target` and returns its result. On the current
    /// shard it runs inline, without a hop. `None` if the shard is gone.
    pub async fn on_shard<T, F, Fut>(&self, target: usize, f: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce(Rc<Shard>) -> Fut + Send + 'static,
        Fut: Future<Output = T> + 'static,
    {
        if let Some(shard) = Shard::current() {
            if shard.id == target {
                return Some(f(shard).await);
            }
        }
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |shard: &Rc<Shard>| {
            let fut = f(shard.clone());
            compio::runtime::spawn(async move {
                let _ = tx.send(fut.await);
            })
            .detach();
        });
        self.mailboxes.get(target)?.send(job).ok()?;
        rx.await.ok()
    }

    /// Sends `f` to every shard and collects the results in shard order.
    pub async fn on_all_shards<T, F, Fut>(&self, f: F) -> Vec<T>
    where
        T: Send + 'static,
        F: Fn(Rc<Shard>) -> Fut + Send + Sync + Clone + 'static,
        Fut: Future<Output = T> + 'static,
    {
        let calls = (0..self.shard_count()).map(|i| {
            let f = f.clone();
            self.on_shard(i, f)
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

pub struct Shard {
    pub id: usize,
    pub broker: Arc<Broker>,
    /// The partitions this shard hosts, each a log plus its role.
    pub replicas: Rc<ReplicaManager>,
    pub groups: RefCell<Option<Rc<GroupCoordinator>>>,
    pub txns: RefCell<Option<Rc<crate::txn::TxnCoordinator>>>,
    /// Cluster mode: the roles last applied from the metadata image.
    pub roles: roles::RoleState,
    /// The fetch sessions (KIP-227) of this shard's connections.
    pub fetch_sessions: RefCell<FetchSessionCache>,
    shutdown_tx: RefCell<Option<oneshot::Sender<()>>>,
    pub shutdown: Shared<LocalBoxFuture<'static, ()>>,
}

impl Shard {
    pub fn new(id: usize, broker: Arc<Broker>) -> Rc<Shard> {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = rx.map(|_| ()).boxed_local().shared();
        let replicas = ReplicaManager::new(
            ReplicaConfig::from_broker(&broker.config),
            broker.config.data_dir.clone(),
        );
        if broker.metadata.member().is_some() {
            // Replicated partitions: high watermarks start from the
            // checkpoint, and a directory of a deleted topic is removed.
            replicas.set_replicated(broker.hw_checkpoint.checkpointed());
        }
        let fetch_sessions = RefCell::new(FetchSessionCache::new(
            id,
            broker.shard_count(),
            broker.config.max_incremental_fetch_session_cache_slots,
            broker.config.min_incremental_fetch_session_eviction_ms,
        ));
        Rc::new(Shard {
            id,
            fetch_sessions,
            broker,
            replicas,
            groups: RefCell::new(None),
            txns: RefCell::new(None),
            roles: roles::RoleState::default(),
            shutdown_tx: RefCell::new(Some(tx)),
            shutdown,
        })
    }

    pub fn current() -> Option<Rc<Shard>> {
        CURRENT.with(|c| c.borrow().clone())
    }

    pub fn set_current(shard: &Rc<Shard>) {
        CURRENT.with(|c| *c.borrow_mut() = Some(shard.clone()));
    }

    pub fn begin_shutdown(&self) {
        if let Some(tx) = self.shutdown_tx.borrow_mut().take() {
            let _ = tx.send(());
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.broker.shutting_down.load(Ordering::Relaxed)
    }

    pub fn coordinator(&self) -> Option<Rc<GroupCoordinator>> {
        self.groups.borrow().clone()
    }

    pub fn txn_coordinator(&self) -> Option<Rc<crate::txn::TxnCoordinator>> {
        self.txns.borrow().clone()
    }

    /// The logs of every partition this shard hosts.
    pub fn open_partitions(&self) -> Vec<Rc<PartitionLog>> {
        self.replicas
            .all()
            .into_iter()
            .map(|p| p.log.clone())
            .collect()
    }

    /// An already-open partition's log.
    pub fn partition_if_open(&self, topic_id: &Uuid, partition: i32) -> Option<Rc<PartitionLog>> {
        self.replicas
            .get(topic_id, partition)
            .map(|p| p.log.clone())
    }

    /// The partition's log, opened (and recovered) on first use. Handlers
    /// append and read through [`Shard::replica`] instead.
    pub async fn partition(
        &self,
        topic: &Arc<TopicMeta>,
        partition: i32,
    ) -> Result<Rc<PartitionLog>, ErrorCode> {
        self.replica(topic, partition).await.map(|p| p.log.clone())
    }

    /// The partition (log plus role), opened on first use.
    pub async fn replica(
        &self,
        topic: &Arc<TopicMeta>,
        partition: i32,
    ) -> Result<Rc<Partition>, ErrorCode> {
        self.replicas.open(topic, partition).await
    }

    /// Closes and removes a deleted topic's partitions owned by this shard.
    pub fn drop_topic(&self, topic_id: &Uuid) -> Vec<Rc<PartitionLog>> {
        self.replicas
            .remove_topic(topic_id)
            .into_iter()
            .map(|p| p.log.clone())
            .collect()
    }

    /// Applies a topic's new config to the partitions this shard has open.
    pub fn refresh_topic_config(&self, topic: &TopicMeta) {
        for p in self.replicas.all() {
            if p.topic_id() == topic.id {
                *p.log.config.borrow_mut() = topic.log_config.clone();
            }
        }
    }
}

impl Broker {
    pub(crate) fn mailbox(&self, i: usize) -> Option<&flume::Sender<Job>> {
        self.mailboxes.get(i)
    }
}
