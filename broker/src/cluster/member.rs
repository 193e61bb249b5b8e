//! This node as a member of a KRaft-style cluster. In combined mode
//! (`process.roles=broker,controller`) it runs its controller of the quorum;
//! a broker-only node (`process.roles=broker`) runs an observer of it
//! instead (an openraft learner with its own copy of the metadata log, which
//! it asks the active controller to add it as, see
//! [`ControllerRequest::AddObserver`]). Either way it
//! registers with the active controller and heartbeats every
//! `broker.heartbeat.interval.ms`, turns every metadata image the quorum
//! applies into the broker's [`MetadataImage`] (published through the
//! `ArcSwap` shards read and a watch channel for those that follow
//! changes), and sends the broker's metadata writes to the active
//! controller, answering its client once its own image has the change.
//!
//! `meta.properties` in the data directory binds the directory to its
//! cluster and node id, as in Kafka: a directory from another cluster or
//! node is refused at start-up.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sluice_protocol::ErrorCode;
use tokio::sync::watch;
use uuid::Uuid;

use super::controller::{
    Controller, ControllerAnswer, ControllerRequest, ControllerResult, ElectionType,
    PartitionOutcome,
};
use super::quorum::records::{Endpoint, NodeId, ScramCredential, ScramMechanism};
use super::quorum::{
    ControllerQuorum, MetadataImage as QuorumImage, MetadataQuorum, QuorumConfig,
    QuorumDescription, RaftTiming, TransportSecurity, Voters,
};
use super::{ApiError, BrokerInfo, MetadataImage, PartitionMeta, TopicLayout, TopicMeta};
use crate::config::BrokerConfig;
use crate::log::partition_metadata::{decode_topic_id, encode_topic_id};
use crate::log::LogConfig;

/// How long a write waits for an active controller before giving up.
const CONTROLLER_WAIT: Duration = Duration::from_secs(15);
/// One controller call's timeout.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping active controller waits for a voter to take over.
const RESIGN_TIMEOUT: Duration = Duration::from_secs(3);
const META_PROPERTIES: &str = "meta.properties";

struct Inner {
    config: Arc<BrokerConfig>,
    quorum: Arc<ControllerQuorum>,
    image: ArcSwap<MetadataImage>,
    changes: watch::Sender<Arc<MetadataImage>>,
    /// -1 until registered.
    broker_epoch: AtomicI64,
    incarnation: Uuid,
    /// `directory.id` of the data directory, from meta.properties.
    directory_id: Uuid,
    listeners: Vec<Endpoint>,
    /// Producer ids `[next, end)` this broker may hand out.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// Set when start-up must be abandoned (wrong cluster, duplicate id).
    fatal: std::sync::Mutex<Option<String>>,
    stopping: AtomicBool,
    /// When registration was first refused as a duplicate.
    duplicate_since: std::sync::Mutex<Option<Instant>>,
    /// Round-robin position over the voters, for an observer that does not
    /// know the active controller yet.
    next_voter: std::sync::atomic::AtomicUsize,
}

/// A running cluster member. Cloning shares it.
#[derive(Clone)]
pub struct ClusterMember {
    inner: Arc<Inner>,
}

impl ClusterMember {
    /// Starts this node's controller and its broker registration.
    /// `listeners` are the client listeners as other nodes should reach them.
    pub fn start(
        config: Arc<BrokerConfig>,
        listeners: Vec<Endpoint>,
    ) -> anyhow::Result<ClusterMember> {
        let settings = &config.cluster;
        let observer = !settings.is_controller();
        let stored = read_meta_properties(&config.data_dir)?;
        if let Some(node) = stored.get("node.id") {
            anyhow::ensure!(
                node == &config.node_id.to_string(),
                "{} in {} says node.id {node}, but this node is configured as node.id {}; \
                 a data directory belongs to one node",
                META_PROPERTIES,
                config.data_dir.display(),
                config.node_id
            );
        }
        // The data directory's own id (KIP-858), kept across restarts so
        // the controller can tell this node restarted from a second process
        // claiming its id.
        let directory_id = match stored.get("directory.id") {
            Some(text) => decode_topic_id(text).ok_or_else(|| {
                anyhow::anyhow!(
                    "{} in {} has a malformed directory.id {text:?}",
                    META_PROPERTIES,
                    config.data_dir.display()
                )
            })?,
            None => {
                let id = Uuid::new_v4();
                write_meta_properties(
                    &config.data_dir,
                    stored.get("cluster.id").map(String::as_str),
                    config.node_id,
                    id,
                )?;
                id
            }
        };
        let voters = Voters(settings.voters.clone());
        let dir = settings
            .metadata_log_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("__cluster_metadata-0"));
        let mut quorum_config = QuorumConfig::new(config.node_id, voters, dir);
        quorum_config.observer = observer;
        quorum_config.bootstrap_servers = settings.bootstrap_servers.clone();
        quorum_config.security = Arc::new(TransportSecurity::from_config(&config)?);
        quorum_config.cluster_id = config
            .cluster_id
            .clone()
            .or_else(|| stored.get("cluster.id").cloned());
        let timing = RaftTiming::of(settings);
        quorum_config.election_timeout_min = timing.election_timeout_min;
        quorum_config.election_timeout_max = timing.election_timeout_max;
        quorum_config.heartbeat_interval = timing.heartbeat_interval;
        let (quorum, observer_address) = if observer {
            let (listener, address) = observer_listener(&config, &listeners)?;
            tracing::info!(%address, "broker-only node: the metadata log is replicated to this address");
            let quorum = ControllerQuorum::start_with_listener(quorum_config, listener)?;
            (Arc::new(quorum), Some(address))
        } else {
            (Arc::new(ControllerQuorum::start(quorum_config)?), None)
        };
        if !observer {
            let controller = Controller::new(quorum.clone(), config.clone());
            controller.install();
        }

        let first = Arc::new(MetadataImage {
            controller_id: -1,
            ..MetadataImage::default()
        });
        let (changes, _) = watch::channel(first.clone());
        let member = ClusterMember {
            inner: Arc::new(Inner {
                config,
                quorum: quorum.clone(),
                image: ArcSwap::new(first),
                changes,
                broker_epoch: AtomicI64::new(-1),
                incarnation: Uuid::new_v4(),
                directory_id,
                listeners,
                producer_ids: tokio::sync::Mutex::new((0, 0)),
                fatal: std::sync::Mutex::new(None),
                stopping: AtomicBool::new(false),
                duplicate_since: std::sync::Mutex::new(None),
                next_voter: std::sync::atomic::AtomicUsize::new(0),
            }),
        };
        if let Some(address) = observer_address {
            let joiner = member.clone();
            quorum.spawn(Box::pin(
                async move { joiner.join_as_observer(address).await },
            ));
        }
        let publisher = member.clone();
        quorum.spawn(Box::pin(async move { publisher.follow_images().await }));
        let heart = member.clone();
        quorum.spawn(Box::pin(
            async move { heart.register_and_heartbeat().await },
        ));
        Ok(member)
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.image.load_full()
    }

    /// Every new broker image, for code that reacts to leadership changes.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.changes.subscribe()
    }

    pub fn node_id(&self) -> NodeId {
        self.inner.config.node_id
    }

    /// The broker epoch of this process's registration (-1 before).
    pub fn broker_epoch(&self) -> i64 {
        self.inner.broker_epoch.load(Ordering::SeqCst)
    }

    /// The active controller, which clients are told to send admin
    /// requests to (in combined mode it is also a broker).
    pub fn controller_id(&self) -> NodeId {
        self.inner.quorum.leader().unwrap_or(-1)
    }

    /// DescribeQuorum as the active controller sees it (this node's own
    /// view, with other voters' progress unknown, if it cannot be asked).
    pub async fn describe_quorum(&self) -> QuorumDescription {
        let local = self.inner.quorum.describe();
        if local.leader_id == Some(self.node_id()) {
            return local;
        }
        let this = self.clone();
        let asked = self
            .on_runtime(async move {
                this.call_active(ControllerRequest::DescribeQuorum, Duration::from_secs(2))
                    .await
            })
            .await;
        match asked {
            Some(Ok(ControllerAnswer::Quorum(description))) => description,
            _ => local,
        }
    }

    /// The controllers and their addresses (`controller.quorum.voters`,
    /// or as a bootstrap server named them).
    pub fn voters(&self) -> &BTreeMap<NodeId, String> {
        self.inner.quorum.voters()
    }

    /// Whether this node is broker-only (an observer of the quorum).
    pub fn is_observer(&self) -> bool {
        self.inner.quorum.is_observer()
    }

    /// Blocks until this broker is registered and unfenced (Kafka's brokers
    /// serve only then), or start-up failed for good.
    pub fn wait_until_serving(&self) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut told = false;
        loop {
            if let Some(problem) = self.fatal() {
                anyhow::bail!("{problem}");
            }
            let image = self.image();
            let me = image.brokers.get(&self.node_id());
            // Serving needs the cluster id (meta.properties is written
            // before the image with it is published).
            if me.is_some_and(|b| !b.fenced && b.epoch == self.broker_epoch())
                && !image.cluster_id.is_empty()
            {
                return Ok(());
            }
            if !told && started.elapsed() > Duration::from_secs(5) {
                told = true;
                tracing::info!(
                    voters = ?self.voters(),
                    "waiting for the controller quorum (a majority of the voters must be up)"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn fatal(&self) -> Option<String> {
        self.inner
            .fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_fatal(&self, problem: String) {
        tracing::error!("{problem}");
        *self.inner.fatal.lock().unwrap_or_else(|p| p.into_inner()) = Some(problem);
    }

    /// Kafka's controlled shutdown: ask the controller to move this broker's
    /// leaderships away and take it out of every ISR, and wait (up to
    /// `timeout`) until it agrees, so clients see only retriable errors.
    pub async fn controlled_shutdown(&self, timeout: Duration) {
        let this = self.clone();
        self.on_runtime(async move { this.controlled_shutdown_here(timeout).await })
            .await;
    }

    async fn controlled_shutdown_here(&self, timeout: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + timeout;
        self.move_leaderships_away(deadline).await;
        // The active controller resigns too, as KRaft's does: the other
        // voters elect the one it names at once, instead of waiting out
        // the leader lease and an election timeout once it is gone (its
        // broker's leaderships have just moved; the controller's would
        // otherwise be missing for seconds).
        if self.inner.quorum.leader() == Some(self.node_id()) {
            match self.inner.quorum.resign(RESIGN_TIMEOUT).await {
                Some(successor) => tracing::info!(
                    successor,
                    "handed the controller leadership over before stopping"
                ),
                None => tracing::warn!(
                    "no voter took the controller leadership over; the quorum elects one once this node is gone"
                ),
            }
        }
    }

    /// Asks the controller until it has moved this broker's leaderships
    /// away (or `deadline` passes).
    async fn move_leaderships_away(&self, deadline: Instant) {
        while Instant::now() < deadline {
            let request = ControllerRequest::BrokerHeartbeat {
                broker_id: self.node_id(),
                broker_epoch: self.broker_epoch(),
                metadata_offset: self.image().offset,
                want_shutdown: true,
            };
            match self.call_active(request, Duration::from_secs(2)).await {
                Ok(ControllerAnswer::Heartbeat {
                    should_shutdown: true,
                    ..
                }) => {
                    tracing::info!("controlled shutdown: leaderships moved");
                    return;
                }
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e.message, "controlled shutdown not answered"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tracing::warn!("controlled shutdown did not complete in time");
    }

    /// Stops the controller (after the broker stopped serving).
    pub fn stop(&self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
    }

    /// Turns every image the quorum applies into the broker's image.
    async fn follow_images(self) {
        let mut rx = self.inner.quorum.subscribe();
        // The cluster id the data directory was found bound to: checked
        // against meta.properties once, not on every image.
        let mut bound_cluster_id: Option<String> = None;
        loop {
            let quorum_image = rx.borrow_and_update().clone();
            let image = Arc::new(broker_image(&self.inner.config, &quorum_image));
            if bound_cluster_id.as_deref() != Some(image.cluster_id.as_str()) {
                match self.check_cluster_id(&image.cluster_id) {
                    Ok(()) if !image.cluster_id.is_empty() => {
                        bound_cluster_id = Some(image.cluster_id.clone())
                    }
                    Ok(()) => {}
                    Err(problem) => self.set_fatal(problem),
                }
            }
            self.inner.image.store(image.clone());
            self.inner.changes.send_replace(image);
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Binds the data directory to the quorum's cluster id on first sight;
    /// refuses a directory of another cluster.
    fn check_cluster_id(&self, cluster_id: &str) -> Result<(), String> {
        if cluster_id.is_empty() {
            return Ok(());
        }
        let dir = &self.inner.config.data_dir;
        let stored = read_meta_properties(dir).map_err(|e| e.to_string())?;
        match stored.get("cluster.id") {
            Some(theirs) if theirs != cluster_id => Err(format!(
                "{} in {} belongs to cluster {theirs}, but the controller quorum is cluster {cluster_id}; \
                 refusing to mix their data",
                META_PROPERTIES,
                dir.display()
            )),
            Some(_) => Ok(()),
            None => write_meta_properties(
                dir,
                Some(cluster_id),
                self.node_id(),
                self.inner.directory_id,
            )
            .map_err(|e| format!("cannot write {META_PROPERTIES}: {e}")),
        }
    }

    /// A broker-only node asks the active controller to add it as an
    /// observer of the quorum, until it is (a restart asks again: the
    /// controller answers at once, or records its new address).
    async fn join_as_observer(self, address: String) {
        let started = Instant::now();
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            let request = ControllerRequest::AddObserver {
                node_id: self.node_id(),
                address: address.clone(),
            };
            match self.call_active(request, CALL_TIMEOUT).await {
                Ok(ControllerAnswer::ObserverAdded) => {
                    tracing::info!(
                        %address,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "observer of the controller quorum: replicating the metadata log"
                    );
                    return;
                }
                Ok(other) => tracing::warn!(?other, "unexpected answer to joining as observer"),
                Err(e) if e.code == ErrorCode::InvalidRequest => {
                    self.set_fatal(format!(
                        "the controller refused this node as an observer: {}",
                        e.message
                    ));
                    return;
                }
                Err(e) => tracing::debug!(error = %e.message, "not an observer yet"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn register_and_heartbeat(self) {
        let interval =
            Duration::from_millis(self.inner.config.cluster.broker_heartbeat_interval_ms);
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return;
            }
            if self.broker_epoch() < 0 {
                self.register().await;
                continue;
            }
            let request = ControllerRequest::BrokerHeartbeat {
                broker_id: self.node_id(),
                broker_epoch: self.broker_epoch(),
                metadata_offset: self.image().offset,
                want_shutdown: false,
            };
            match self.call_active(request, CALL_TIMEOUT).await {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.code,
                        ErrorCode::StaleBrokerEpoch | ErrorCode::BrokerIdNotRegistered
                    ) =>
                {
                    tracing::warn!(error = %e.message, "registration lost; registering again");
                    self.inner.broker_epoch.store(-1, Ordering::SeqCst);
                    continue;
                }
                Err(e) => tracing::debug!(error = %e.message, "heartbeat not answered"),
            }
            // Heartbeat faster while fenced so unfencing is quick.
            let fenced = self
                .image()
                .brokers
                .get(&self.node_id())
                .is_none_or(|b| b.fenced);
            let wait = if fenced {
                interval.min(Duration::from_millis(200))
            } else {
                interval
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn register(&self) {
        let stored_cluster = read_meta_properties(&self.inner.config.data_dir)
            .ok()
            .and_then(|p| p.get("cluster.id").cloned());
        let request = ControllerRequest::RegisterBroker {
            broker_id: self.node_id(),
            incarnation_id: self.inner.incarnation,
            listeners: self.inner.listeners.clone(),
            rack: self.inner.config.cluster.rack.clone(),
            cluster_id: stored_cluster,
            log_dirs: vec![self.inner.directory_id],
        };
        match self.call_active(request, CALL_TIMEOUT).await {
            Ok(ControllerAnswer::Registered { broker_epoch }) => {
                tracing::info!(broker_epoch, "registered with the controller");
                self.inner
                    .broker_epoch
                    .store(broker_epoch, Ordering::SeqCst);
            }
            Ok(other) => tracing::warn!(?other, "unexpected answer to registration"),
            Err(e) if e.code == ErrorCode::InconsistentClusterId => {
                self.set_fatal(format!("the controller refused this broker: {}", e.message));
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) if e.code == ErrorCode::DuplicateBrokerRegistration => {
                // A restart on the same data directory is recognised by its
                // directory.id; one whose meta.properties was lost looks
                // like a second process with this id: wait the old session
                // out (twice, to be sure) before calling it a duplicate.
                let session =
                    Duration::from_millis(self.inner.config.cluster.broker_session_timeout_ms);
                let first = *self
                    .inner
                    .duplicate_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(Instant::now);
                if first.elapsed() > session * 2 + Duration::from_secs(2) {
                    self.set_fatal(format!(
                        "the controller refused this broker: {} (node.id {} is used by another running node)",
                        e.message,
                        self.node_id()
                    ));
                } else {
                    tracing::info!("the previous registration of this node is still live; waiting for its session to expire");
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => {
                tracing::debug!(error = %e.message, "registration not answered yet");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Sends `request` to the active controller, following leadership
    /// changes, until it answers or `CONTROLLER_WAIT` passes.
    async fn call_active(
        &self,
        request: ControllerRequest,
        call_timeout: Duration,
    ) -> Result<ControllerAnswer, ApiError> {
        let bytes = serde_json::to_vec(&request)
            .map_err(|e| ApiError::new(ErrorCode::UnknownServerError, e.to_string()))?;
        let deadline = Instant::now() + CONTROLLER_WAIT;
        let mut last = ApiError::new(ErrorCode::NotController, "no active controller");
        // An observer learns the leader only once the leader replicates to
        // it; until then, and after its known leader failed it, it tries the
        // voters in turn (the others answer NOT_CONTROLLER).
        let observer = self.is_observer();
        let mut failed: Option<NodeId> = None;
        while Instant::now() < deadline {
            let leader = match self.inner.quorum.leader() {
                Some(leader) if Some(leader) != failed => leader,
                _ if observer && !self.voters().is_empty() => {
                    let turn = self.inner.next_voter.fetch_add(1, Ordering::Relaxed);
                    let ids: Vec<NodeId> = self.voters().keys().copied().collect();
                    ids[turn % ids.len()]
                }
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            match self
                .inner
                .quorum
                .call(leader, bytes.clone(), call_timeout)
                .await
            {
                Ok(answer) => match serde_json::from_slice::<ControllerResult>(&answer) {
                    Ok(Ok(answer)) => return Ok(answer),
                    Ok(Err(e)) if e.code == ErrorCode::NotController => {
                        failed = observer.then_some(leader);
                        last = ApiError::new(e.code, e.message);
                    }
                    Ok(Err(e)) => return Err(ApiError::new(e.code, e.message)),
                    Err(e) => {
                        last = ApiError::new(
                            ErrorCode::UnknownServerError,
                            format!("undecodable controller answer: {e}"),
                        )
                    }
                },
                Err(e) => {
                    failed = observer.then_some(leader);
                    last = ApiError::new(ErrorCode::NotController, e.to_string());
                }
            }
            tokio::time::sleep(Duration::from_millis(if observer { 20 } else { 100 })).await;
        }
        // Clients retry NOT_CONTROLLER / REQUEST_TIMED_OUT.
        if last.code == ErrorCode::NotController {
            last.code = ErrorCode::RequestTimedOut;
        }
        Err(last)
    }

    /// Waits until this node's image has applied metadata offset `offset`.
    /// Runs on the controller runtime (tokio's timer).
    async fn caught_up_to(&self, offset: u64) -> Result<Arc<MetadataImage>, ApiError> {
        let mut rx = self.subscribe();
        let wait = async {
            loop {
                let image = rx.borrow_and_update().clone();
                if image.offset >= offset {
                    return image;
                }
                if rx.changed().await.is_err() {
                    return self.image();
                }
            }
        };
        tokio::time::timeout(CALL_TIMEOUT, wait).await.map_err(|_| {
            ApiError::new(
                ErrorCode::RequestTimedOut,
                "the change committed but this broker has not applied it yet",
            )
        })
    }

    fn on_runtime<T: Send + 'static>(
        &self,
        work: impl std::future::Future<Output = T> + Send + 'static,
    ) -> impl std::future::Future<Output = Option<T>> {
        let (tx, rx) = futures::channel::oneshot::channel();
        self.inner.quorum.spawn(Box::pin(async move {
            let _ = tx.send(work.await);
        }));
        async move { rx.await.ok() }
    }

    /// Runs a controller request on the controller runtime (its timers are
    /// tokio's) and hands the answer back to any executor.
    async fn ask(&self, request: ControllerRequest) -> Result<ControllerAnswer, ApiError> {
        let this = self.clone();
        self.on_runtime(async move { this.call_active(request, CALL_TIMEOUT).await })
            .await
            .unwrap_or_else(|| {
                Err(ApiError::new(
                    ErrorCode::UnknownServerError,
                    "the controller runtime stopped",
                ))
            })
    }

    /// This node's image once it holds metadata offset `offset` (a change
    /// the controller committed for a request this broker answers).
    async fn image_at(&self, offset: u64) -> Result<Arc<MetadataImage>, ApiError> {
        let this = self.clone();
        self.on_runtime(async move { this.caught_up_to(offset).await })
            .await
            .unwrap_or_else(|| Err(ApiError::new(ErrorCode::UnknownServerError, "stopped")))
    }

    async fn committed_topic(
        &self,
        answer: ControllerAnswer,
        name: &str,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        let ControllerAnswer::Committed { offset, .. } = answer else {
            return Err(unexpected_answer(&answer));
        };
        let image = self.image_at(offset).await?;
        image.by_name.get(name).cloned().ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            )
        })
    }

    pub async fn create_topic(
        &self,
        name: &str,
        layout: TopicLayout,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        allow_internal: bool,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        let (partitions, replication_factor, assignments) = match layout {
            TopicLayout::Counts {
                partitions,
                replication_factor,
            } => (partitions, replication_factor, None),
            TopicLayout::Manual(a) => (-1, -1, Some(a)),
        };
        let manual_count = assignments
            .as_ref()
            .map(|a| i32::try_from(a.len()).unwrap_or(i32::MAX));
        let answer = self
            .ask(ControllerRequest::CreateTopic {
                name: name.to_string(),
                partitions,
                replication_factor,
                configs: configs.clone(),
                validate_only,
                allow_internal,
                assignments,
            })
            .await?;
        if answer == ControllerAnswer::Valid {
            // What the topic would look like; nothing was written.
            let partitions = match manual_count {
                Some(n) => n,
                None if partitions == -1 => self.inner.config.num_partitions,
                None => partitions,
            };
            return Ok(Arc::new(TopicMeta {
                name: name.to_string(),
                id: Uuid::nil(),
                partitions,
                log_config: LogConfig::resolve(&self.inner.config, &configs),
                configs,
                internal: false,
                assignment: Vec::new(),
            }));
        }
        self.committed_topic(answer, name).await
    }

    pub async fn delete_topic(&self, name: &str) -> Result<Arc<TopicMeta>, ApiError> {
        if !self.inner.config.delete_topic_enable {
            return Err(ApiError::new(
                ErrorCode::TopicDeletionDisabled,
                "topic deletion is disabled",
            ));
        }
        let Some(meta) = self.image().by_name.get(name).cloned() else {
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
        let answer = self
            .ask(ControllerRequest::DeleteTopic {
                name: name.to_string(),
            })
            .await?;
        if let ControllerAnswer::Committed { offset, .. } = answer {
            self.image_at(offset).await?;
        }
        Ok(meta)
    }

    pub async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
        assignments: Option<Vec<Vec<NodeId>>>,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        let answer = self
            .ask(ControllerRequest::CreatePartitions {
                name: name.to_string(),
                count,
                validate_only,
                assignments,
            })
            .await?;
        if answer == ControllerAnswer::Valid {
            return self
                .image()
                .by_name
                .get(name)
                .cloned()
                .ok_or_else(|| ApiError::new(ErrorCode::UnknownTopicOrPartition, "unknown topic"));
        }
        self.committed_topic(answer, name).await
    }

    pub async fn alter_topic_configs(
        &self,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
        validate_only: bool,
    ) -> Result<Arc<TopicMeta>, ApiError> {
        let Some(meta) = self.image().by_name.get(name).cloned() else {
            return Err(ApiError::new(
                ErrorCode::UnknownTopicOrPartition,
                "This server does not host this topic-partition.",
            ));
        };
        let mut configs = meta.configs.clone();
        edit(&mut configs)?;
        super::MetadataStore::validate_configs(&configs)?;
        if validate_only {
            return Ok(meta);
        }
        let answer = self
            .ask(ControllerRequest::AlterTopicConfigs {
                name: name.to_string(),
                configs,
            })
            .await?;
        self.committed_topic(answer, name).await
    }

    /// A producer id from this broker's block, asking the controller for a
    /// new block when it is used up.
    pub async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let mut ids = self.inner.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let answer = self
                .ask(ControllerRequest::AllocateProducerIds {
                    broker_id: self.node_id(),
                    broker_epoch: self.broker_epoch(),
                })
                .await?;
            let ControllerAnswer::ProducerIds { first_id, size } = answer else {
                return Err(unexpected_answer(&answer));
            };
            *ids = (first_id, first_id + i64::from(size));
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// AlterUserScramCredentials through the controller, so every broker
    /// of the cluster authenticates with the same credentials. Answers the
    /// users whose changes were refused (the others committed and this
    /// broker's image has them).
    pub async fn alter_scram_credentials(
        &self,
        deletions: Vec<(String, ScramMechanism)>,
        upsertions: Vec<ScramCredential>,
    ) -> Result<BTreeMap<String, (ErrorCode, String)>, ApiError> {
        let answer = self
            .ask(ControllerRequest::AlterScramCredentials {
                deletions,
                upsertions,
            })
            .await?;
        let ControllerAnswer::ScramAltered { offset, refused } = answer else {
            return Err(unexpected_answer(&answer));
        };
        if let Some(offset) = offset {
            self.image_at(offset).await?;
        }
        Ok(refused
            .into_iter()
            .map(|(user, (code, message))| (user, (ErrorCode::from_code(code), message)))
            .collect())
    }

    /// AlterClientQuotas through the controller, so every broker applies
    /// the same quotas; answers once this node's image has them.
    pub async fn alter_client_quotas(
        &self,
        alterations: Vec<crate::quota::entity::QuotaAlteration>,
    ) -> Result<(), ApiError> {
        let answer = self
            .ask(ControllerRequest::AlterClientQuotas { alterations })
            .await?;
        match answer {
            ControllerAnswer::Valid => Ok(()),
            ControllerAnswer::Committed { offset, .. } => {
                self.image_at(offset).await?;
                Ok(())
            }
            other => Err(unexpected_answer(&other)),
        }
    }

    /// Kafka's ElectLeaders through the controller; answers once this
    /// node's image holds the elections.
    pub async fn elect_leaders(
        &self,
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<PartitionOutcome>, ApiError> {
        let answer = self
            .ask(ControllerRequest::ElectLeaders {
                election,
                partitions,
            })
            .await?;
        let ControllerAnswer::Elected { offset, outcomes } = answer else {
            return Err(unexpected_answer(&answer));
        };
        if let Some(offset) = offset {
            self.image_at(offset).await?;
        }
        Ok(outcomes)
    }

    /// Kafka's AlterPartitionReassignments: per partition a target, or
    /// `None` to cancel; answers once this node's image has the changes.
    pub async fn alter_partition_reassignments(
        &self,
        reassignments: Vec<(String, i32, Option<Vec<NodeId>>)>,
        allow_replication_factor_change: bool,
    ) -> Result<Vec<PartitionOutcome>, ApiError> {
        let answer = self
            .ask(ControllerRequest::AlterPartitionReassignments {
                reassignments,
                allow_replication_factor_change,
            })
            .await?;
        let ControllerAnswer::Reassigned { offset, outcomes } = answer else {
            return Err(unexpected_answer(&answer));
        };
        if let Some(offset) = offset {
            self.image_at(offset).await?;
        }
        Ok(outcomes)
    }

    /// Kafka's UnregisterBroker; answers once this node's image has it.
    pub async fn unregister_broker(&self, broker_id: NodeId) -> Result<(), ApiError> {
        let answer = self
            .ask(ControllerRequest::UnregisterBroker { broker_id })
            .await?;
        let ControllerAnswer::Committed { offset, .. } = answer else {
            return Err(unexpected_answer(&answer));
        };
        self.image_at(offset).await?;
        Ok(())
    }

    /// Reassignments in progress, as the active controller knows them (a
    /// broker's own image may lag a reassignment another broker started).
    pub async fn partition_reassignments(
        &self,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<super::reassignment::PartitionReassignment>, ApiError> {
        let answer = self
            .ask(ControllerRequest::ListPartitionReassignments { partitions })
            .await?;
        match answer {
            ControllerAnswer::Reassignments(list) => Ok(list),
            other => Err(unexpected_answer(&other)),
        }
    }

    /// The SCRAM credentials of this node's latest metadata image.
    pub fn scram_credentials(&self) -> BTreeMap<(String, ScramMechanism), ScramCredential> {
        self.inner.quorum.image().scram_credentials.clone()
    }

    /// Calls `apply` with the cluster's SCRAM credentials now and whenever
    /// they change (on the controller runtime), so the broker's credential
    /// store follows the metadata log.
    pub fn follow_scram_credentials(
        &self,
        apply: impl Fn(&BTreeMap<(String, ScramMechanism), ScramCredential>) + Send + 'static,
    ) {
        let mut rx = self.inner.quorum.subscribe();
        self.inner.quorum.spawn(Box::pin(async move {
            let mut last = None;
            loop {
                let image = rx.borrow_and_update().clone();
                if last.as_ref() != Some(&image.scram_credentials) {
                    apply(&image.scram_credentials);
                    last = Some(image.scram_credentials.clone());
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }));
    }

    /// Kafka's AlterPartition, for a partition this broker leads.
    pub async fn alter_partition(
        &self,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<NodeId>,
    ) -> Result<ControllerAnswer, ApiError> {
        let answer = self
            .ask(ControllerRequest::AlterPartition {
                broker_id: self.node_id(),
                broker_epoch: self.broker_epoch(),
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            })
            .await?;
        if let ControllerAnswer::Partition { offset, .. } = &answer {
            self.image_at(*offset).await?;
        }
        Ok(answer)
    }
}

/// A controller answer of the wrong kind for the request asked.
fn unexpected_answer(answer: &ControllerAnswer) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownServerError,
        format!("unexpected controller answer {answer:?}"),
    )
}

/// The broker's view of a quorum image.
pub fn broker_image(config: &BrokerConfig, q: &QuorumImage) -> MetadataImage {
    let mut image = MetadataImage {
        cluster_id: q.cluster_id.clone().unwrap_or_default(),
        offset: q.offset,
        controller_id: -1,
        ..MetadataImage::default()
    };
    for (id, b) in &q.brokers {
        image.brokers.insert(
            *id,
            BrokerInfo {
                id: *id,
                epoch: b.registration.broker_epoch,
                rack: b.registration.rack.clone(),
                endpoints: b.registration.listeners.clone(),
                fenced: b.fenced,
            },
        );
    }
    let live = |r: &NodeId| q.brokers.get(r).is_some_and(|b| !b.fenced);
    let empty = BTreeMap::new();
    for topic in q.topics.values() {
        let configs = q.topic_configs.get(&topic.name).unwrap_or(&empty).clone();
        let assignment: Vec<PartitionMeta> = topic
            .partitions
            .values()
            .map(|p| PartitionMeta {
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
                elr: p.elr.clone(),
                offline: p.replicas.iter().copied().filter(|r| !live(r)).collect(),
            })
            .collect();
        let meta = Arc::new(TopicMeta {
            name: topic.name.clone(),
            id: topic.id,
            partitions: i32::try_from(assignment.len()).unwrap_or(i32::MAX),
            log_config: LogConfig::resolve(config, &configs),
            configs,
            internal: topic.name.starts_with("__"),
            assignment,
        });
        image.by_name.insert(topic.name.clone(), meta.clone());
        image.by_id.insert(topic.id, meta);
    }
    image.client_quotas = Arc::new(q.client_quotas.clone());
    image
}

/// Where a broker-only node receives the metadata log from the leader
/// (openraft pushes to learners): its controller listener if `listeners`
/// has one (a fixed port), else an ephemeral port on its inter-broker
/// listener's address. Answers the bound socket and the address to
/// announce (the inter-broker listener's advertised host for a wildcard).
fn observer_listener(
    config: &BrokerConfig,
    listeners: &[Endpoint],
) -> anyhow::Result<(std::net::TcpListener, String)> {
    let inter_broker = config.inter_broker_listener_name();
    let spec = config
        .client_listeners()
        .find(|l| Some(l.name.as_str()) == inter_broker)
        .or_else(|| config.client_listeners().next())
        .ok_or_else(|| {
            anyhow::anyhow!("a broker needs a listener besides the controller listener")
        })?;
    let advertised_host = listeners
        .iter()
        .find(|e| e.name == spec.name)
        .map_or_else(|| spec.addr.ip().to_string(), |e| e.host.clone());
    let bind = match config.controller_listener() {
        Some(controller) => controller.addr,
        None => std::net::SocketAddr::new(spec.addr.ip(), 0),
    };
    let listener = std::net::TcpListener::bind(bind)
        .map_err(|e| anyhow::anyhow!("cannot listen for the metadata log on {bind}: {e}"))?;
    let local = listener.local_addr()?;
    let host = if local.ip().is_unspecified() {
        advertised_host
    } else {
        local.ip().to_string()
    };
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    Ok((listener, format!("{host}:{}", local.port())))
}

/// Kafka's `meta.properties`: `key=value` lines.
fn read_meta_properties(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let path = dir.join(META_PROPERTIES);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

fn write_meta_properties(
    dir: &Path,
    cluster_id: Option<&str>,
    node_id: NodeId,
    directory_id: Uuid,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let cluster = cluster_id.map_or(String::new(), |id| format!("cluster.id={id}\n"));
    let text = format!(
        "#\n# Written by sluiced: this directory belongs to this cluster and node.\nversion=1\n{cluster}node.id={node_id}\ndirectory.id={}\n",
        encode_topic_id(directory_id)
    );
    let path: PathBuf = dir.join(META_PROPERTIES);
    crate::log::segment::write_file_atomically(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_properties_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_meta_properties(dir.path()).unwrap().is_empty());
        let directory = Uuid::new_v4();
        write_meta_properties(dir.path(), None, 3, directory).unwrap();
        let p = read_meta_properties(dir.path()).unwrap();
        assert!(!p.contains_key("cluster.id"));
        assert_eq!(decode_topic_id(&p["directory.id"]), Some(directory));
        write_meta_properties(dir.path(), Some("abc"), 3, directory).unwrap();
        let p = read_meta_properties(dir.path()).unwrap();
        assert_eq!(p["cluster.id"], "abc");
        assert_eq!(p["node.id"], "3");
        assert_eq!(decode_topic_id(&p["directory.id"]), Some(directory));
    }
}
