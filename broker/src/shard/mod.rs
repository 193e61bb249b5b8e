//! Thread-per-core: one pinned thread per shard, each running its own
//! io_uring (`compio`) runtime. A shard owns its partitions and consumer
//! groups outright; nothing on the produce or fetch path takes a lock. Work
//! for another shard crosses through that shard's mailbox (a `flume` channel
//! of closures, woken through the runtime's eventfd), and the answer comes
//! back on a oneshot. Ownership is a pure function of (topic id, partition),
//! and a group belongs to the owner of its `__consumer_offsets` partition.

use std::cell::RefCell;
use std::collections::HashMap;
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
use crate::group::GroupCoordinator;
use crate::log::PartitionLog;

pub mod groups;

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

/// Java's `String.hashCode` over UTF-16 code units, which Kafka uses to map
/// a group id to its `__consumer_offsets` partition.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

impl Broker {
    pub fn new(
        config: Arc<BrokerConfig>,
        metadata: Metadata,
        mailboxes: Vec<flume::Sender<Job>>,
        listeners: Vec<Arc<crate::auth::Listener>>,
        security: crate::auth::Security,
    ) -> Broker {
        Broker {
            config,
            metadata,
            mailboxes,
            shutting_down: AtomicBool::new(false),
            listeners,
            security,
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
        let h = java_string_hash(group);
        let abs = if h == i32::MIN { 0 } else { h.abs() };
        abs % self.config.offsets_topic_num_partitions
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
    partitions: RefCell<HashMap<(Uuid, i32), Rc<PartitionLog>>>,
    open_lock: futures::lock::Mutex<()>,
    pub groups: RefCell<Option<Rc<GroupCoordinator>>>,
    shutdown_tx: RefCell<Option<oneshot::Sender<()>>>,
    pub shutdown: Shared<LocalBoxFuture<'static, ()>>,
}

impl Shard {
    pub fn new(id: usize, broker: Arc<Broker>) -> Rc<Shard> {
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = rx.map(|_| ()).boxed_local().shared();
        Rc::new(Shard {
            id,
            broker,
            partitions: RefCell::new(HashMap::new()),
            open_lock: futures::lock::Mutex::new(()),
            groups: RefCell::new(None),
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

    pub fn open_partitions(&self) -> Vec<Rc<PartitionLog>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// An already-open partition.
    pub fn partition_if_open(&self, topic_id: &Uuid, partition: i32) -> Option<Rc<PartitionLog>> {
        self.partitions
            .borrow()
            .get(&(*topic_id, partition))
            .cloned()
    }

    /// The partition's log, opened (and recovered) on first use.
    pub async fn partition(
        &self,
        topic: &Arc<TopicMeta>,
        partition: i32,
    ) -> Result<Rc<PartitionLog>, ErrorCode> {
        if partition < 0 || partition >= topic.partitions {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        if let Some(p) = self.partition_if_open(&topic.id, partition) {
            return Ok(p);
        }
        let _guard = self.open_lock.lock().await;
        if let Some(p) = self.partition_if_open(&topic.id, partition) {
            return Ok(p);
        }
        let dir = self
            .broker
            .config
            .data_dir
            .join(PartitionLog::dir_name(&topic.name, partition));
        let metrics = crate::metrics::METRICS.partition(&topic.name, partition);
        match PartitionLog::open(
            &dir,
            &topic.name,
            topic.id,
            partition,
            topic.log_config.clone(),
            metrics,
        )
        .await
        {
            Ok(log) => {
                {
                    let st = log.state.borrow();
                    log.metrics.set_offsets(
                        st.log_start_offset,
                        st.log_end_offset,
                        st.size_bytes(),
                    );
                }
                self.partitions
                    .borrow_mut()
                    .insert((topic.id, partition), log.clone());
                Ok(log)
            }
            Err(e) => {
                tracing::error!(topic = %topic.name, partition, error = %e, "cannot open partition");
                Err(e.kafka_code())
            }
        }
    }

    /// Closes and removes a deleted topic's partitions owned by this shard.
    pub fn drop_topic(&self, topic_id: &Uuid) -> Vec<Rc<PartitionLog>> {
        let mut map = self.partitions.borrow_mut();
        let keys: Vec<_> = map.keys().filter(|(t, _)| t == topic_id).copied().collect();
        keys.into_iter()
            .filter_map(|k| map.remove(&k))
            .inspect(|p| p.close())
            .collect()
    }

    /// Applies a topic's new config to the partitions this shard has open.
    pub fn refresh_topic_config(&self, topic: &TopicMeta) {
        for ((t, _), p) in self.partitions.borrow().iter() {
            if *t == topic.id {
                *p.config.borrow_mut() = topic.log_config.clone();
            }
        }
    }
}

impl Broker {
    pub(crate) fn mailbox(&self, i: usize) -> Option<&flume::Sender<Job>> {
        self.mailboxes.get(i)
    }
}
