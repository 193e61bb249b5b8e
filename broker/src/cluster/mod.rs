//! The metadata the broker serves from: topics (name, id, partitions with
//! their leader, epochs, replicas and ISR, config overrides), the live
//! brokers, the cluster id and producer ids. Shards read the current
//! [`MetadataImage`] lock-free through an `ArcSwap`. [`Metadata`] is what
//! handlers call; it has two backends:
//!
//! - [`MetadataStore`] (here), single-node sluiced: the rare writers
//!   (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs,
//!   InitProducerId blocks) serialise on a mutex, persist
//!   `__cluster_metadata.json` with write-then-rename, and publish; this
//!   node leads every partition.
//! - [`member::ClusterMember`], a node of a KRaft-style cluster: writes go
//!   as requests to the active controller ([`controller`]), which decides
//!   and commits records to the replicated log ([`quorum`]); every node
//!   turns the quorum's image into this one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use crate::config::names::{CLEANUP_POLICY, SEGMENT_BYTES};
use crate::config::topic::topic_config;
use crate::config::{BrokerConfig, ConfigError};
use crate::log::LogConfig;

pub mod controller;
pub mod member;
pub mod quorum;
pub mod reassignment;

pub use quorum::records::{Endpoint, NodeId, NO_LEADER};

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` over UTF-16 code units.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

/// Kafka's mapping of a coordinator key (a group id, a transactional id) to
/// a partition of its internal topic (`__consumer_offsets`,
/// `__transaction_state`): the absolute Java hash modulo the count.
pub fn coordinator_partition(key: &str, partitions: i32) -> i32 {
    let h = java_string_hash(key);
    let abs = if h == i32::MIN { 0 } else { h.abs() };
    abs % partitions.max(1)
}
const META_FILE: &str = "__cluster_metadata.json";
/// Producer ids are reserved on disk in blocks so a restart never reuses one.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// A Kafka error code with a message for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

#[derive(Debug)]
pub struct TopicMeta {
    pub name: String,
    pub id: Uuid,
    pub partitions: i32,
    pub configs: BTreeMap<String, String>,
    pub log_config: LogConfig,
    pub internal: bool,
    /// One entry per partition, by index.
    pub assignment: Vec<PartitionMeta>,
}

impl TopicMeta {
    pub fn partition(&self, partition: i32) -> Option<&PartitionMeta> {
        usize::try_from(partition)
            .ok()
            .and_then(|p| self.assignment.get(p))
    }
}

/// Who holds a partition: Kafka's PartitionRegistration as Metadata
/// answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionMeta {
    /// [`NO_LEADER`] when no eligible replica is alive.
    pub leader: NodeId,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// Eligible leader replicas (KIP-966).
    pub elr: Vec<NodeId>,
    /// Replicas on brokers that are fenced or gone.
    pub offline: Vec<NodeId>,
}

impl PartitionMeta {
    /// A single-node partition: `node` leads it alone, at epoch 0.
    pub fn solo(node: NodeId) -> PartitionMeta {
        PartitionMeta {
            leader: node,
            leader_epoch: 0,
            partition_epoch: 0,
            replicas: vec![node],
            isr: vec![node],
            elr: Vec::new(),
            offline: Vec::new(),
        }
    }
}

/// A registered broker as clients are told about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: NodeId,
    pub epoch: i64,
    pub rack: Option<String>,
    pub endpoints: Vec<Endpoint>,
    pub fenced: bool,
}

impl BrokerInfo {
    /// The endpoint on listener `name` (clients get addresses on the
    /// listener they connected through, as in Kafka).
    pub fn endpoint(&self, listener: &str) -> Option<&Endpoint> {
        self.endpoints.iter().find(|e| e.name == listener)
    }
}

#[derive(Debug, Default)]
pub struct MetadataImage {
    pub cluster_id: String,
    pub by_name: HashMap<String, Arc<TopicMeta>>,
    pub by_id: HashMap<Uuid, Arc<TopicMeta>>,
    /// Registered brokers, fenced ones included; empty on a single node
    /// (that node answers for itself).
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    /// The active controller, or -1 while there is none.
    pub controller_id: NodeId,
    /// Offset of the metadata log this image reflects (0 on a single node).
    pub offset: u64,
    /// Client quotas (AlterClientQuotas): the metadata file's on a single
    /// node, the metadata log's in a cluster.
    pub client_quotas: Arc<crate::quota::ClientQuotas>,
}

impl MetadataImage {
    /// What this image says about `node`'s replicas, for the ReplicaManager
    /// and KafkaController gauges: under-replicated counts the partitions
    /// `node` leads with an ISR smaller than their replicas (Kafka's rule on
    /// the leader); offline partitions (no leader) are counted by the active
    /// controller only, as Kafka reports them.
    pub fn replica_figures(&self, node: NodeId) -> crate::metrics::ReplicaFigures {
        let active = self.controller_id == node;
        let mut f = crate::metrics::ReplicaFigures {
            active_controller: u64::from(active),
            ..Default::default()
        };
        for t in self.by_name.values() {
            for p in &t.assignment {
                if p.replicas.contains(&node) {
                    f.partitions += 1;
                }
                if p.leader == node {
                    f.leaders += 1;
                    if p.isr.len() < p.replicas.len() {
                        f.under_replicated += 1;
                    }
                }
                if active && p.leader == NO_LEADER {
                    f.offline += 1;
                }
            }
        }
        f
    }

    /// Whether partition `partition` of `topic` exists.
    pub fn has_partition(&self, topic: &str, partition: i32) -> bool {
        self.by_name
            .get(topic)
            .is_some_and(|t| t.partition(partition).is_some())
    }

    /// Brokers clients may use: registered and not fenced.
    pub fn live_brokers(&self) -> impl Iterator<Item = &BrokerInfo> {
        self.brokers.values().filter(|b| !b.fenced)
    }
}

#[derive(Serialize, Deserialize, Clone)]
struct TopicRecord {
    name: String,
    #[serde(with = "uuid_text")]
    id: Uuid,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

/// Topic ids are stored as their hyphenated text; anything else fails the
/// load (a damaged id must never be replaced by a new one: clients and the
/// partition directories know the topic by it).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&id.hyphenated())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(d)?;
        Uuid::parse_str(&text)
            .map_err(|e| serde::de::Error::custom(format!("topic id {text:?} is not a UUID: {e}")))
    }
}

/// Why the metadata file cannot be used. Start-up stops on any of these:
/// regenerating what it holds would silently give topics new ids.
#[derive(Debug, thiserror::Error)]
pub enum MetadataFileError {
    #[error("cannot read metadata file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("metadata file {path} is damaged: {problem}; sluiced will not start on it (restore it from a backup; its topic ids cannot be regenerated)")]
    Damaged { path: PathBuf, problem: String },
}

impl MetaFile {
    /// Reads the metadata file: `None` if there is none (a fresh data
    /// directory), an error if it cannot be read, does not parse, or
    /// contradicts itself.
    fn load(path: &Path) -> Result<Option<MetaFile>, MetadataFileError> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(MetadataFileError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let damaged = |problem: String| MetadataFileError::Damaged {
            path: path.to_owned(),
            problem,
        };
        let file: MetaFile = serde_json::from_slice(&bytes).map_err(|e| damaged(e.to_string()))?;
        file.check().map_err(damaged)?;
        Ok(Some(file))
    }

    /// What a file we wrote always satisfies.
    fn check(&self) -> Result<(), String> {
        if self.cluster_id.is_empty() {
            return Err("the cluster id is empty".into());
        }
        let mut names = HashSet::new();
        let mut ids = HashSet::new();
        for t in &self.topics {
            validate_topic_name(&t.name).map_err(|e| e.message)?;
            if t.partitions <= 0 {
                return Err(format!("topic {} has {} partitions", t.name, t.partitions));
            }
            if t.id.is_nil() {
                return Err(format!("topic {} has the nil topic id", t.name));
            }
            if !names.insert(t.name.as_str()) {
                return Err(format!("topic {} is listed twice", t.name));
            }
            if !ids.insert(t.id) {
                return Err(format!("topic id {} is used twice", t.id));
            }
        }
        Ok(())
    }
}

#[derive(Serialize, Deserialize, Clone, Default)]
struct MetaFile {
    cluster_id: String,
    producer_id_reserved: i64,
    topics: Vec<TopicRecord>,
    /// Client quotas, one entry per entity (absent in older files).
    #[serde(default)]
    client_quotas: Vec<QuotaRecord>,
}

#[derive(Serialize, Deserialize, Clone)]
struct QuotaRecord {
    entity: crate::quota::entity::QuotaEntity,
    values: BTreeMap<crate::quota::QuotaKey, crate::quota::entity::QuotaValue>,
}

pub struct MetadataStore {
    config: Arc<BrokerConfig>,
    path: PathBuf,
    image: ArcSwap<MetadataImage>,
    file: Mutex<MetaFile>,
    next_producer_id: AtomicI64,
}

/// How a new topic's partitions are laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicLayout {
    /// A partition count and replication factor (-1: the broker's
    /// defaults); the controller places the replicas.
    Counts {
        partitions: i32,
        replication_factor: i16,
    },
    /// One replica list per partition, as the user gave them
    /// (`kafka-topics --replica-assignment`).
    Manual(Vec<Vec<NodeId>>),
}

impl TopicLayout {
    /// The broker's default partition count and replication factor.
    pub const DEFAULTS: TopicLayout = TopicLayout::Counts {
        partitions: -1,
        replication_factor: -1,
    };
}

/// Kafka's legal topic names: 1-249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty() || name.len() > 249 || name == "." || name == ".." {
        return Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!("invalid topic name `{name}`"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!("topic name `{name}` has characters other than ASCII alphanumerics, '.', '_' and '-'"),
        ));
    }
    Ok(())
}

/// A Kafka-style cluster id: a random UUID in URL-safe base64 without
/// padding (22 characters). Like Kafka's `Uuid.randomUuid`, ids starting
/// with '-' are skipped: command-line tools would read them as options.
pub(crate) fn new_cluster_id() -> String {
    use base64::Engine;
    loop {
        let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Uuid::new_v4().as_bytes());
        if !id.starts_with('-') {
            return id;
        }
    }
}

impl MetadataStore {
    pub fn open(config: Arc<BrokerConfig>) -> anyhow::Result<MetadataStore> {
        std::fs::create_dir_all(&config.data_dir)?;
        let path = config.data_dir.join(META_FILE);
        let file = match MetaFile::load(&path)? {
            Some(file) => file,
            None => MetaFile {
                cluster_id: config.cluster_id.clone().unwrap_or_else(new_cluster_id),
                ..MetaFile::default()
            },
        };
        let next_pid = file.producer_id_reserved;
        let store = MetadataStore {
            config,
            path,
            image: ArcSwap::from_pointee(MetadataImage::default()),
            file: Mutex::new(file.clone()),
            next_producer_id: AtomicI64::new(next_pid),
        };
        // Ids handed out before a crash may be anywhere in the reserved
        // block: start after it.
        {
            let mut f = store.lock();
            f.producer_id_reserved = next_pid;
        }
        store.publish(&file);
        if !store.image().by_name.contains_key(OFFSETS_TOPIC) {
            let mut configs = BTreeMap::new();
            configs.insert(CLEANUP_POLICY.to_string(), "compact".to_string());
            configs.insert(SEGMENT_BYTES.to_string(), (100 << 20).to_string());
            store
                .create_topic(
                    OFFSETS_TOPIC,
                    store.config.offsets_topic_num_partitions,
                    -1,
                    configs,
                    false,
                    true,
                )
                .map_err(|e| anyhow::anyhow!("cannot create {OFFSETS_TOPIC}: {}", e.message))?;
        } else {
            store.persist(&store.lock().clone())?;
        }
        Ok(store)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MetaFile> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.load_full()
    }

    pub fn config(&self) -> &Arc<BrokerConfig> {
        &self.config
    }

    fn publish(&self, file: &MetaFile) {
        let mut img = MetadataImage {
            cluster_id: file.cluster_id.clone(),
            controller_id: self.config.node_id,
            ..Default::default()
        };
        for t in &file.topics {
            let id = t.id;
            let meta = Arc::new(TopicMeta {
                name: t.name.clone(),
                id,
                partitions: t.partitions,
                configs: t.configs.clone(),
                log_config: LogConfig::resolve(&self.config, &t.configs),
                internal: t.name.starts_with("__"),
                assignment: (0..t.partitions)
                    .map(|_| PartitionMeta::solo(self.config.node_id))
                    .collect(),
            });
            img.by_name.insert(t.name.clone(), meta.clone());
            img.by_id.insert(id, meta);
        }
        img.client_quotas = Arc::new(
            file.client_quotas
                .iter()
                .map(|q| (q.entity.clone(), q.values.clone()))
                .collect(),
        );
        self.image.store(Arc::new(img));
    }

    fn persist(&self, file: &MetaFile) -> std::io::Result<()> {
        let bytes = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
        crate::log::segment::write_file_synced(&self.path, &bytes)?;
        if let Ok(d) = std::fs::File::open(&self.config.data_dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    fn commit(&self, file: &mut MetaFile, next: MetaFile) -> Result<(), ApiError> {
        self.persist(&next).map_err(|e| {
            ApiError::new(
                ErrorCode::KafkaStorageError,
                format!("cannot persist metadata: {e}"),
            )
        })?;
        *file = next;
        self.publish(file);
        Ok(())
    }

    pub fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
        for (k, v) in configs {
            topic_config(k)
                .ok_or_else(|| ConfigError::Unknown(k.clone()))
                .and_then(|c| c.validate(v))
                .map_err(|e| ApiError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        }
        Ok(())
    }

    /// A manual assignment on a single node may name only this node, once
    /// per partition (the cluster's controller checks the general case).
    pub fn check_solo_assignments(&self, assignments: &[Vec<NodeId>]) -> Result<(), ApiError> {
        let node = self.config.node_id;
        let registered = |b: NodeId| b == node;
        for replicas in assignments {
            reassignment::check_manual_assignment(replicas, &registered)
                .map_err(|(code, message)| ApiError::new(code, message))?;
        }
        Ok(())
    }

    /// CreateTopics for one topic. `partitions`/`replication_factor` of -1
    /// take the broker defaults.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        allow_internal: bool,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        let (partitions, rf) = resolve_new_topic(
            &self.config,
            name,
            partitions,
            replication_factor,
            allow_internal,
        )?;
        if rf > 1 {
            return Err(not_enough_brokers(rf, 1));
        }
        Self::validate_configs(&configs)?;
        let mut file = self.lock();
        check_name_collision(name, file.topics.iter().map(|t| t.name.as_str()))?;
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(Arc::new(TopicMeta {
                name: record.name,
                id: record.id,
                partitions,
                log_config: LogConfig::resolve(&self.config, &record.configs),
                configs: record.configs,
                internal: false,
                assignment: (0..partitions)
                    .map(|_| PartitionMeta::solo(self.config.node_id))
                    .collect(),
            }));
        }
        let mut next = file.clone();
        next.topics.push(record);
        self.commit(&mut file, next)?;
        drop(file);
        self.image()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::KafkaStorageError, "topic vanished"))
    }

    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, ApiError> {
        if !self.config.delete_topic_enable {
            return Err(ApiError::new(
                ErrorCode::TopicDeletionDisabled,
                "topic deletion is disabled",
            ));
        }
        let existing = self.image().by_name.get(name).cloned();
        let Some(meta) = existing else {
            return Err(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            ));
        };
        if meta.internal {
            return Err(ApiError::new(
                ErrorCode::InvalidTopicException,
                format!("cannot delete internal topic {name}"),
            ));
        }
        let mut file = self.lock();
        let mut next = file.clone();
        next.topics.retain(|t| t.name != name);
        self.commit(&mut file, next)?;
        Ok(meta)
    }

    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        let mut file = self.lock();
        let Some(pos) = file.topics.iter().position(|t| t.name == name) else {
            return Err(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            ));
        };
        let current = file.topics[pos].partitions;
        if count <= current {
            return Err(ApiError::new(
                ErrorCode::InvalidPartitions,
                format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
            ));
        }
        if !validate_only {
            let mut next = file.clone();
            next.topics[pos].partitions = count;
            self.commit(&mut file, next)?;
        }
        drop(file);
        self.image()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownTopicOrPartition, "gone"))
    }

    /// Replaces (or, with `incremental`, edits) a topic's config overrides.
    pub fn alter_topic_configs(
        &self,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        let mut file = self.lock();
        let Some(pos) = file.topics.iter().position(|t| t.name == name) else {
            return Err(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            ));
        };
        let mut next = file.clone();
        edit(&mut next.topics[pos].configs)?;
        Self::validate_configs(&next.topics[pos].configs)?;
        if !validate_only {
            self.commit(&mut file, next)?;
        }
        drop(file);
        self.image()
            .by_name
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::UnknownTopicOrPartition, "gone"))
    }

    /// Applies AlterClientQuotas entries (validated by the handler) and
    /// persists them before answering.
    pub fn alter_client_quotas(
        &self,
        alterations: &[crate::quota::entity::QuotaAlteration],
    ) -> Result<(), ApiError> {
        let mut file = self.lock();
        let mut quotas: crate::quota::ClientQuotas = file
            .client_quotas
            .iter()
            .map(|q| (q.entity.clone(), q.values.clone()))
            .collect();
        for a in alterations {
            crate::quota::entity::apply(&mut quotas, a);
        }
        let mut next = file.clone();
        next.client_quotas = quotas
            .into_iter()
            .map(|(entity, values)| QuotaRecord { entity, values })
            .collect();
        self.commit(&mut file, next)
    }

    /// A fresh producer id, unique across restarts.
    pub fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let id = self.next_producer_id.fetch_add(1, Ordering::SeqCst);
        let mut file = self.lock();
        if id >= file.producer_id_reserved {
            let mut next = file.clone();
            next.producer_id_reserved = id + PRODUCER_ID_BLOCK;
            self.commit(&mut file, next)?;
        }
        Ok(id)
    }
}

/// What the API handlers call for metadata: the single-node store or a
/// member of a cluster. Reads are the image; writes are async because a
/// cluster member asks the active controller.
pub enum Metadata {
    Standalone(MetadataStore),
    Cluster(member::ClusterMember),
}

impl Metadata {
    pub fn image(&self) -> Arc<MetadataImage> {
        match self {
            Metadata::Standalone(store) => store.image(),
            Metadata::Cluster(member) => member.image(),
        }
    }

    /// The cluster member, when this node is one.
    pub fn member(&self) -> Option<&member::ClusterMember> {
        match self {
            Metadata::Standalone(_) => None,
            Metadata::Cluster(member) => Some(member),
        }
    }

    /// CreateTopics for one topic (-1 partitions or replication factor take
    /// the broker defaults).
    pub async fn create_topic(
        &self,
        name: &str,
        layout: TopicLayout,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        allow_internal: bool,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        match self {
            Metadata::Standalone(store) => {
                let (partitions, replication_factor) = match &layout {
                    TopicLayout::Manual(a) => {
                        store.check_solo_assignments(a)?;
                        (i32::try_from(a.len()).unwrap_or(i32::MAX), 1)
                    }
                    TopicLayout::Counts {
                        partitions,
                        replication_factor,
                    } => (*partitions, *replication_factor),
                };
                store.create_topic(
                    name,
                    partitions,
                    replication_factor,
                    configs,
                    validate_only,
                    allow_internal,
                )
            }
            Metadata::Cluster(member) => {
                member
                    .create_topic(name, layout, configs, validate_only, allow_internal)
                    .await
            }
        }
    }

    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, ApiError> {
        match self {
            Metadata::Standalone(store) => store.delete_topic(name),
            Metadata::Cluster(member) => member.delete_topic(name).await,
        }
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        assignments: Option<Vec<Vec<NodeId>>>,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        match self {
            Metadata::Standalone(store) => {
                if let Some(a) = &assignments {
                    store.check_solo_assignments(a)?;
                }
                store.create_partitions(name, count, validate_only)
            }
            Metadata::Cluster(member) => {
                member
                    .create_partitions(name, count, validate_only, assignments)
                    .await
            }
        }
    }

    /// Kafka's AlterPartitionReassignments. A single node can only be
    /// "reassigned" onto itself, which changes nothing.
    pub async fn alter_partition_reassignments(
        &self,
        reassignments: Vec<(String, i32, Option<Vec<NodeId>>)>,
        allow_replication_factor_change: bool,
    ) -> Result<Vec<controller::PartitionOutcome>, ApiError> {
        match self {
            Metadata::Cluster(member) => {
                member
                    .alter_partition_reassignments(reassignments, allow_replication_factor_change)
                    .await
            }
            Metadata::Standalone(store) => {
                let image = store.image();
                Ok(reassignments
                    .into_iter()
                    .map(|(topic, partition, target)| {
                        let known = image.has_partition(&topic, partition);
                        let refused = if !known {
                            Some(ApiError::new(
                                ErrorCode::UnknownTopicOrPartition,
                                "unknown topic or partition",
                            ))
                        } else {
                            match target {
                                None => Some(ApiError::new(
                                    ErrorCode::NoReassignmentInProgress,
                                    format!(
                                        "no reassignment of partition {partition} is in progress"
                                    ),
                                )),
                                Some(t) => store.check_solo_assignments(&[t]).err(),
                            }
                        };
                        controller::PartitionOutcome {
                            topic,
                            partition,
                            error_code: refused.as_ref().map_or(0, |e| e.code.code()),
                            message: refused.map(|e| e.message),
                        }
                    })
                    .collect())
            }
        }
    }

    /// Kafka's UnregisterBroker. A single node has no other broker, and
    /// does not unregister itself while it runs.
    pub async fn unregister_broker(&self, broker_id: NodeId) -> Result<(), ApiError> {
        match self {
            Metadata::Cluster(member) => member.unregister_broker(broker_id).await,
            Metadata::Standalone(store) if broker_id == store.config.node_id => Err(ApiError::new(
                ErrorCode::InvalidRequest,
                format!("broker {broker_id} is running: stop it before unregistering it"),
            )),
            Metadata::Standalone(_) => Err(ApiError::new(
                ErrorCode::BrokerIdNotRegistered,
                format!("broker {broker_id} is not registered"),
            )),
        }
    }

    /// Reassignments in progress (none on a single node).
    pub async fn partition_reassignments(
        &self,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<reassignment::PartitionReassignment>, ApiError> {
        match self {
            Metadata::Cluster(member) => member.partition_reassignments(partitions).await,
            Metadata::Standalone(_) => Ok(Vec::new()),
        }
    }

    /// Replaces (or, with `incremental`, edits) a topic's config overrides.
    pub async fn alter_topic_configs(
        &self,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        match self {
            Metadata::Standalone(store) => store.alter_topic_configs(name, edit, validate_only),
            Metadata::Cluster(member) => {
                member.alter_topic_configs(name, edit, validate_only).await
            }
        }
    }

    /// AlterClientQuotas: every entry applies, then the answer.
    pub async fn alter_client_quotas(
        &self,
        alterations: Vec<crate::quota::entity::QuotaAlteration>,
    ) -> Result<(), ApiError> {
        match self {
            Metadata::Standalone(store) => store.alter_client_quotas(&alterations),
            Metadata::Cluster(member) => member.alter_client_quotas(alterations).await,
        }
    }

    /// Kafka's ElectLeaders. A single node leads every partition it has,
    /// so no election is ever needed there.
    pub async fn elect_leaders(
        &self,
        election: controller::ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<controller::PartitionOutcome>, ApiError> {
        match self {
            Metadata::Cluster(member) => member.elect_leaders(election, partitions).await,
            Metadata::Standalone(store) => {
                let image = store.image();
                let wanted = partitions.unwrap_or_else(|| {
                    image
                        .by_name
                        .values()
                        .flat_map(|t| (0..t.partitions).map(|i| (t.name.clone(), i)))
                        .collect()
                });
                Ok(wanted
                    .into_iter()
                    .map(|(topic, partition)| {
                        let known = image.has_partition(&topic, partition);
                        let (code, message) = if known {
                            (
                                ErrorCode::ElectionNotNeeded,
                                "a single node leads every partition",
                            )
                        } else {
                            (
                                ErrorCode::UnknownTopicOrPartition,
                                "unknown topic or partition",
                            )
                        };
                        controller::PartitionOutcome {
                            topic,
                            partition,
                            error_code: code.code(),
                            message: Some(message.to_string()),
                        }
                    })
                    .collect())
            }
        }
    }

    /// A fresh producer id, unique across restarts and brokers.
    pub async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        match self {
            Metadata::Standalone(store) => store.allocate_producer_id(),
            Metadata::Cluster(member) => member.allocate_producer_id().await,
        }
    }
}

/// CreateTopics' checks before any broker is picked: a legal name, `__`
/// names only for internal topics, -1 partitions or replication factor
/// replaced by the broker defaults, both positive. Answers the resolved
/// (partitions, replication factor).
pub fn resolve_new_topic(
    config: &BrokerConfig,
    name: &str,
    partitions: i32,
    replication_factor: i16,
    allow_internal: bool,
) -> Result<(i32, i16), ApiError> {
    validate_topic_name(name)?;
    if name.starts_with("__") && !allow_internal {
        return Err(ApiError::new(
            ErrorCode::InvalidTopicException,
            format!("`{name}` is reserved for internal topics"),
        ));
    }
    let partitions = if partitions == -1 {
        config.num_partitions
    } else {
        partitions
    };
    let rf = if replication_factor == -1 {
        config.default_replication_factor
    } else {
        replication_factor
    };
    check_new_topic(partitions, rf)?;
    Ok((partitions, rf))
}

/// Checks a topic's partition count and replication factor the way Kafka
/// does, after -1 was replaced by the defaults.
pub fn check_new_topic(partitions: i32, replication_factor: i16) -> Result<(), ApiError> {
    if partitions <= 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidPartitions,
            "number of partitions must be larger than 0",
        ));
    }
    if replication_factor <= 0 {
        return Err(ApiError::new(
            ErrorCode::InvalidReplicationFactor,
            "replication factor must be larger than 0",
        ));
    }
    Ok(())
}

/// Kafka's answer when there are fewer brokers than replicas asked for.
pub fn not_enough_brokers(replication_factor: i16, brokers: usize) -> ApiError {
    ApiError::new(
        ErrorCode::InvalidReplicationFactor,
        format!("Unable to replicate the partition {replication_factor} time(s): The target replication factor of {replication_factor} cannot be reached because only {brokers} broker(s) are registered."),
    )
}

/// Kafka refuses a name that collides with an existing one once '.' and
/// '_' are equated; `existing` are the current topic names.
pub fn check_name_collision<'a>(
    name: &str,
    existing: impl IntoIterator<Item = &'a str>,
) -> Result<(), ApiError> {
    let norm = |s: &str| s.replace('.', "_");
    for t in existing {
        if t == name {
            return Err(ApiError::new(
                ErrorCode::TopicAlreadyExists,
                format!("Topic '{name}' already exists."),
            ));
        }
        if norm(t) == norm(name) {
            return Err(ApiError::new(
                ErrorCode::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic: {t}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_figures_of_each_node_in_a_three_node_image() {
        let p = |leader: NodeId, replicas: &[NodeId], isr: &[NodeId]| PartitionMeta {
            leader,
            leader_epoch: 1,
            partition_epoch: 1,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            elr: Vec::new(),
            offline: Vec::new(),
        };
        let topic = TopicMeta {
            name: "t".into(),
            id: Uuid::new_v4(),
            partitions: 4,
            configs: BTreeMap::new(),
            log_config: LogConfig::resolve(&BrokerConfig::default(), &BTreeMap::new()),
            internal: false,
            assignment: vec![
                p(1, &[1, 2, 3], &[1, 2, 3]),
                // Node 3 fell out of the ISR.
                p(2, &[2, 3, 1], &[2, 1]),
                p(3, &[3, 1], &[3, 1]),
                // Every replica gone.
                p(NO_LEADER, &[2, 3], &[]),
            ],
        };
        let topic = Arc::new(topic);
        let mut image = MetadataImage {
            controller_id: 2,
            ..Default::default()
        };
        image.by_name.insert("t".into(), topic.clone());
        image.by_id.insert(topic.id, topic);
        let f = |node| image.replica_figures(node);
        use crate::metrics::ReplicaFigures as F;
        assert_eq!(
            f(1),
            F {
                partitions: 3,
                leaders: 1,
                under_replicated: 0,
                active_controller: 0,
                offline: 0
            }
        );
        assert_eq!(
            f(2),
            F {
                partitions: 3,
                leaders: 1,
                under_replicated: 1,
                active_controller: 1,
                offline: 1
            }
        );
        assert_eq!(
            f(3),
            F {
                partitions: 4,
                leaders: 1,
                under_replicated: 0,
                active_controller: 0,
                offline: 0
            }
        );
    }

    fn store(dir: &Path) -> MetadataStore {
        let cfg = BrokerConfig {
            data_dir: dir.to_path_buf(),
            offsets_topic_num_partitions: 3,
            ..Default::default()
        };
        MetadataStore::open(Arc::new(cfg)).unwrap()
    }

    #[test]
    fn topics_persist_and_validate() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        let cluster = s.image().cluster_id.clone();
        assert_eq!(cluster.len(), 22);
        s.create_topic("orders", 3, 1, BTreeMap::new(), false, false)
            .unwrap();
        assert_eq!(
            s.create_topic("orders", 3, 1, BTreeMap::new(), false, false)
                .unwrap_err()
                .code,
            ErrorCode::TopicAlreadyExists
        );
        assert_eq!(
            s.create_topic("x", 1, 3, BTreeMap::new(), false, false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidReplicationFactor
        );
        assert_eq!(
            s.create_topic("bad/name", 1, 1, BTreeMap::new(), false, false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidTopicException
        );
        assert_eq!(
            s.create_topic("y", 0, 1, BTreeMap::new(), false, false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidPartitions
        );
        let mut bad = BTreeMap::new();
        bad.insert(crate::config::names::RETENTION_MS.into(), "soon".into());
        assert_eq!(
            s.create_topic("z", 1, 1, bad, false, false)
                .unwrap_err()
                .code,
            ErrorCode::InvalidConfig
        );
        let pid1 = s.allocate_producer_id().unwrap();
        drop(s);
        let s = store(dir.path());
        assert_eq!(s.image().cluster_id, cluster);
        assert_eq!(s.image().by_name["orders"].partitions, 3);
        assert!(s.image().by_name[OFFSETS_TOPIC].internal);
        assert!(s.allocate_producer_id().unwrap() > pid1);
    }

    #[test]
    fn a_damaged_metadata_file_is_refused_and_left_as_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(dir.path());
        s.create_topic("orders", 5, 1, BTreeMap::new(), false, false)
            .unwrap();
        let id = s.image().by_name["orders"].id;
        drop(s);
        let path = dir.path().join(META_FILE);
        let good = std::fs::read_to_string(&path).unwrap();
        let cfg = Arc::new(BrokerConfig {
            data_dir: dir.path().to_path_buf(),
            offsets_topic_num_partitions: 3,
            ..Default::default()
        });
        let bad_id = good.replace(&id.to_string(), "not-a-uuid");
        let twice = good.replace(&id.to_string(), &id_in_file(&good, OFFSETS_TOPIC));
        let cases = [
            (good[..good.len() / 2].to_string(), "EOF"),
            (String::new(), "EOF"),
            ("[1, 2]".to_string(), "invalid type"),
            (bad_id, "\"not-a-uuid\" is not a UUID"),
            (twice, "is used twice"),
            (
                good.replace("\"partitions\": 5", "\"partitions\": 0"),
                "orders has 0 partitions",
            ),
        ];
        for (text, problem) in cases {
            std::fs::write(&path, &text).unwrap();
            let err = match MetadataStore::open(cfg.clone()) {
                Ok(_) => panic!("a damaged file ({problem}) was accepted"),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains(&path.display().to_string()) && err.contains(problem),
                "{err}"
            );
            assert_eq!(
                std::fs::read_to_string(&path).unwrap(),
                text,
                "left as it is"
            );
        }
        std::fs::write(&path, &good).unwrap();
        assert_eq!(store(dir.path()).image().by_name["orders"].id, id);
    }

    /// The id of `topic` in a metadata file's text.
    fn id_in_file(text: &str, topic: &str) -> String {
        let file: MetaFile = serde_json::from_str(text).unwrap();
        file.topics
            .iter()
            .find(|t| t.name == topic)
            .map(|t| t.id.to_string())
            .unwrap()
    }
}
