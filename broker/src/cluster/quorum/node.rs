//! [`ControllerQuorum`]: one controller of the quorum, running openraft on a
//! thread of its own with its own tokio runtime, and the
//! [`MetadataQuorum`] implementation the broker calls from any executor
//! (every future it returns completes through runtime-neutral channels).
//!
//! Start-up opens the quorum directory (log, vote, snapshot), starts Raft
//! and the controller listener, and bootstraps: a node whose storage is
//! pristine and whose id is the lowest voter initialises the cluster with
//! the static voter set; the others wait to be contacted. A restart with
//! existing state resumes without re-initialising. Once a leader has applied
//! its log and finds no cluster id, it writes one.
//!
//! An observer (a broker-only node, `QuorumConfig::observer`) starts the
//! same way but never initialises: it waits for the leader, which it asks to
//! add it as a learner (`MetadataQuorum::add_observer`, sent by the broker
//! above), to replicate the log to it. With only
//! `controller.quorum.bootstrap.servers` it first learns the voters from one
//! of them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ChangeMembershipError, ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ChangeMembers, Instant, ServerState, SnapshotPolicy};
use sluice_protocol::clock::now_ms;
use tokio::sync::{oneshot, watch};

use super::image::MetadataImage;
use super::log_store::{LogRecovery, LogStore};
use super::network::{self, AddressBook, Network};
use super::records::{MetadataRecord, NodeId};
use super::state_machine::Raft;
use super::state_machine::{ImagePublisher, StateMachine};
use super::transport::{PeerClient, Server, TransportSecurity};
use super::types::{kafka_id, raft_id, Proposal, RaftNodeId, TypeConfig};

/// What a Raft membership change answers.
type MembershipOutcome = Result<
    openraft::raft::ClientWriteResponse<TypeConfig>,
    RaftError<TypeConfig, ClientWriteError<TypeConfig>>,
>;
use super::{
    ControllerService, MetadataQuorum, QuorumConfig, QuorumDescription, QuorumError,
    ReplicaProgress,
};

/// How often the controller refreshes its caught-up bookkeeping.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(100);
/// How long one bootstrap server may take to name the voters.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a resigning leader waits for the voter it asked to take over
/// before it asks again.
const RESIGN_RETRY: Duration = Duration::from_millis(500);

/// State the handle shares with the controller thread.
struct Shared {
    node_id: NodeId,
    raft: Raft,
    runtime: tokio::runtime::Handle,
    publisher: Arc<ImagePublisher>,
    /// The voters' addresses (configured, or learned from a bootstrap
    /// server).
    addresses: BTreeMap<NodeId, String>,
    /// Observers' addresses from the membership (kept by `housekeeping`).
    observers: AddressBook,
    observer: bool,
    /// Voter id -> wall-clock ms it last had the leader's whole log.
    caught_up: Mutex<BTreeMap<NodeId, i64>>,
    recovery: LogRecovery,
    /// The controller service above the quorum, once installed.
    service: Arc<network::ServiceSlot>,
    /// One connection per peer for service calls.
    service_clients: Mutex<BTreeMap<NodeId, Arc<tokio::sync::Mutex<PeerClient>>>>,
    /// `QuorumConfig::security`, for those connections.
    security: Arc<TransportSecurity>,
}

/// A running controller. Dropping it stops the controller too, without
/// waiting; [`MetadataQuorum::shutdown`] waits until it has stopped.
pub struct ControllerQuorum {
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    thread: Option<thread::JoinHandle<()>>,
}

/// What the controller thread keeps running until it is told to stop.
struct Running {
    raft: Raft,
    server: Server,
    housekeeping: tokio::task::JoinHandle<()>,
}

impl Running {
    async fn stop(self) {
        self.housekeeping.abort();
        let _ = self.housekeeping.await;
        self.server.stop().await;
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(error = %e, "controller raft did not shut down cleanly");
        }
    }
}

fn storage_error(e: std::io::Error) -> QuorumError {
    QuorumError::Storage(e.to_string())
}

impl ControllerQuorum {
    /// Starts the controller, listening on its own voter address. An
    /// observer has no voter address: start it with
    /// [`ControllerQuorum::start_with_listener`].
    pub fn start(config: QuorumConfig) -> Result<ControllerQuorum, QuorumError> {
        config.validate()?;
        if config.observer {
            return Err(QuorumError::Config(
                "an observer needs a listener of its own for the leader's replication".into(),
            ));
        }
        let addr = config.voters.0[&config.node_id].clone();
        let listener = std::net::TcpListener::bind(&addr).map_err(|e| {
            QuorumError::Config(format!("cannot listen on controller address {addr}: {e}"))
        })?;
        Self::start_with_listener(config, listener)
    }

    /// Starts the controller on an already bound listener (tests bind port 0
    /// first to learn the voter addresses). An observer serves the leader's
    /// Raft traffic (AppendEntries, snapshots) on it: openraft pushes to
    /// learners, so a broker-only node needs this inbound port, and announces
    /// its address with `add_observer`. Blocks until the voters are known
    /// (an observer with only bootstrap servers waits for one to answer).
    pub fn start_with_listener(
        config: QuorumConfig,
        listener: std::net::TcpListener,
    ) -> Result<ControllerQuorum, QuorumError> {
        config.validate()?;
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Arc<Shared>, QuorumError>>();
        let (stop_tx, stop_rx) = oneshot::channel::<oneshot::Sender<()>>();
        let node_id = config.node_id;
        let thread = thread::Builder::new()
            .name(format!("controller-{node_id}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name(format!("controller-{node_id}-rt"))
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = ready_tx.send(Err(QuorumError::Unavailable(format!(
                            "cannot start the controller runtime: {e}"
                        ))));
                        return;
                    }
                };
                let handle = runtime.handle().clone();
                runtime.block_on(async move {
                    match boot(config, listener, handle).await {
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                        Ok((running, shared)) => {
                            let _ = ready_tx.send(Ok(shared));
                            // A dropped handle stops the controller too.
                            let done = stop_rx.await;
                            running.stop().await;
                            if let Ok(done) = done {
                                let _ = done.send(());
                            }
                        }
                    }
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| {
                QuorumError::Unavailable(format!("cannot start the controller thread: {e}"))
            })?;
        let shared = match ready_rx.recv() {
            Ok(Ok(shared)) => shared,
            Ok(Err(e)) => {
                let _ = thread.join();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                return Err(QuorumError::Unavailable(
                    "the controller thread died starting up".into(),
                ));
            }
        };
        Ok(ControllerQuorum {
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub fn node_id(&self) -> NodeId {
        self.shared.node_id
    }

    /// The voters and their controller addresses.
    pub fn voters(&self) -> &BTreeMap<NodeId, String> {
        &self.shared.addresses
    }

    /// Whether this node is an observer (never votes, never leads).
    pub fn is_observer(&self) -> bool {
        self.shared.observer
    }

    /// What opening the log found (a torn tail cut off, entries kept).
    pub fn log_recovery(&self) -> &LogRecovery {
        &self.shared.recovery
    }

    /// Where this node's log stands: (last purged index, last snapshot
    /// index, last log index). For diagnostics and tests.
    pub fn log_bounds(&self) -> (Option<u64>, Option<u64>, Option<u64>) {
        let metrics = self.shared.raft.metrics().borrow_watched().clone();
        (
            metrics.purged.as_ref().map(|l| l.index()),
            metrics.snapshot.as_ref().map(|l| l.index()),
            metrics.last_log_index,
        )
    }

    /// Runs `work` on the controller runtime and hands back its result
    /// through a channel any executor can await.
    async fn on_controller<T, F>(&self, work: F) -> Result<T, QuorumError>
    where
        T: Send + 'static,
        F: std::future::Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.shared.runtime.spawn(async move {
            let _ = tx.send(work.await);
        });
        rx.await
            .map_err(|_| QuorumError::Unavailable("the controller stopped".into()))
    }

    /// Hands the quorum's leadership to a caught-up voter, as a KRaft
    /// controller resigns when it shuts down: the voters elect the chosen
    /// one at once instead of waiting out the leader lease and an election
    /// timeout. Answers the new leader once this node knows it, or `None`
    /// when this node did not lead or nobody took over within `timeout`
    /// (then stopping simply leaves the election to the timers).
    pub async fn resign(&self, timeout: Duration) -> Option<NodeId> {
        let raft = self.shared.raft.clone();
        let me = raft_id(self.shared.node_id)?;
        self.on_controller(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            // The voter asked to take over and when; asked again (or
            // another one) if it has not after a while, e.g. because its
            // log was one entry behind when it got the request.
            let mut asked: Option<(RaftNodeId, tokio::time::Instant)> = None;
            while tokio::time::Instant::now() < deadline {
                let metrics = raft.metrics().borrow_watched().clone();
                if metrics.state != ServerState::Leader {
                    match metrics.current_leader {
                        Some(leader) if leader != me => return Some(kafka_id(leader)),
                        // Nobody asked: this node never led.
                        _ if asked.is_none() => return None,
                        _ => {}
                    }
                } else if asked.is_none_or(|(_, at)| at.elapsed() >= RESIGN_RETRY) {
                    match caught_up_voter(&metrics, me, asked.map(|(id, _)| id)) {
                        Some(target) => {
                            tracing::info!(
                                to = kafka_id(target),
                                "handing the controller leadership over"
                            );
                            if raft.trigger().transfer_leader(target).await.is_err() {
                                return None;
                            }
                            asked = Some((target, tokio::time::Instant::now()));
                        }
                        None => tracing::debug!("no caught-up voter to hand over to yet"),
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            None
        })
        .await
        .ok()
        .flatten()
    }

    /// The Raft id of `node_id` as an observer; a voter's id is refused.
    fn observer_id(&self, node_id: NodeId) -> Result<RaftNodeId, QuorumError> {
        if self.shared.addresses.contains_key(&node_id) {
            return Err(QuorumError::Config(format!(
                "node {node_id} is a voter, not an observer"
            )));
        }
        raft_id(node_id)
            .ok_or_else(|| QuorumError::Config(format!("node id {node_id} is negative")))
    }

    /// Runs a change of the observers on the controller runtime: `attempt`
    /// answers `None` when nothing needs changing, else the membership
    /// change's outcome. A new leader's own membership entry must commit
    /// before another change, so an attempt refused as "in progress" is
    /// retried (bounded) instead of failing.
    async fn change_observers<F, Fut>(&self, attempt: F) -> Result<(), QuorumError>
    where
        F: Fn(Raft) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Option<MembershipOutcome>> + Send + 'static,
    {
        let raft = self.shared.raft.clone();
        let result = self
            .on_controller(async move {
                let mut last = None;
                for _ in 0..100 {
                    let outcome = attempt(raft.clone()).await;
                    if let Some(Err(RaftError::APIError(
                        ClientWriteError::ChangeMembershipError(ChangeMembershipError::InProgress(
                            _,
                        )),
                    ))) = &outcome
                    {
                        last = outcome;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                    return outcome;
                }
                last
            })
            .await?;
        match result {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(self.not_controller(f.leader_id))
            }
            Some(Err(RaftError::APIError(e))) => Err(QuorumError::Unavailable(e.to_string())),
            Some(Err(RaftError::Fatal(e))) => Err(QuorumError::Unavailable(e.to_string())),
        }
    }

    fn not_controller(&self, leader: Option<RaftNodeId>) -> QuorumError {
        let leader = leader.map(kafka_id);
        QuorumError::NotController {
            leader,
            leader_endpoint: leader.and_then(|l| self.shared.addresses.get(&l).cloned()),
        }
    }
}

async fn boot(
    config: QuorumConfig,
    listener: std::net::TcpListener,
    runtime: tokio::runtime::Handle,
) -> Result<(Running, Arc<Shared>), QuorumError> {
    let this = raft_id(config.node_id)
        .ok_or_else(|| QuorumError::Config(format!("node.id {} is negative", config.node_id)))?;
    let voters = if config.voters.0.is_empty() {
        discover_voters(&config.bootstrap_servers, &config.security).await
    } else {
        config.voters.0.clone()
    };
    if config.observer && voters.contains_key(&config.node_id) {
        return Err(QuorumError::Config(format!(
            "node.id {} is a voter of the quorum at {} but this node is not a controller",
            config.node_id,
            config.bootstrap_servers.join(",")
        )));
    }
    let (log_store, recovery) = LogStore::open(&config.dir).map_err(storage_error)?;
    let pristine = log_store.is_pristine().map_err(storage_error)?;
    let state_machine = StateMachine::open(&config.dir).map_err(storage_error)?;
    let publisher = state_machine.publisher();

    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let raft_config = openraft::Config {
        cluster_name: "sluice-controller".into(),
        heartbeat_interval: ms(config.heartbeat_interval),
        election_timeout_min: ms(config.election_timeout_min),
        election_timeout_max: ms(config.election_timeout_max),
        // A whole snapshot goes in one request; allow it time.
        install_snapshot_timeout: ms(config.election_timeout_max).max(2_000),
        snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
        max_in_snapshot_log_to_keep: config.snapshot_keep,
        purge_batch_size: 1,
        enable_pre_vote: Some(true),
        // Appends are fsync'd before they are acknowledged, so a follower's
        // log only goes backwards when start-up cut a corrupt entry off its
        // tail. openraft's default is to panic the leader's Raft core on
        // seeing that; re-replicating to the follower is what KRaft does,
        // and is safe while a majority kept its logs.
        allow_log_reversion: Some(true),
        ..Default::default()
    }
    .validate()
    .map_err(|e| QuorumError::Config(e.to_string()))?;

    let mut raft_addresses = BTreeMap::new();
    for (id, addr) in &voters {
        let rid = raft_id(*id)
            .ok_or_else(|| QuorumError::Config(format!("voter id {id} is negative")))?;
        raft_addresses.insert(rid, addr.clone());
    }
    let observers: AddressBook = Arc::default();
    let raft = Raft::new(
        this,
        Arc::new(raft_config),
        Network::new(
            raft_addresses.clone(),
            observers.clone(),
            config.security.clone(),
        ),
        log_store,
        state_machine,
    )
    .await
    .map_err(|e| QuorumError::Unavailable(format!("controller raft failed to start: {e}")))?;

    let service: Arc<network::ServiceSlot> = Arc::new(std::sync::OnceLock::new());
    let known_voters = Arc::new(voters.clone());
    let server = listener
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpListener::from_std(listener))
        .and_then(|listener| {
            let raft = raft.clone();
            let service = service.clone();
            Server::start(
                listener,
                config.security.clone(),
                move |request: Vec<u8>| {
                    let raft = raft.clone();
                    let service = service.clone();
                    let voters = known_voters.clone();
                    async move { network::handle(&raft, &service, &voters, this, &request).await }
                },
            )
        })
        .map_err(|e| QuorumError::Config(format!("controller listener: {e}")))?;

    let lowest = voters.keys().next().copied();
    if pristine && !config.observer && lowest == Some(config.node_id) {
        let members: BTreeMap<RaftNodeId, BasicNode> = raft_addresses
            .iter()
            .map(|(id, addr)| (*id, BasicNode::new(addr)))
            .collect();
        match raft.initialize(members).await {
            Ok(()) => tracing::info!(voters = %config.voters, "controller quorum initialised"),
            // Already initialised (e.g. by an earlier run): nothing to do.
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
            Err(e) => {
                server.stop().await;
                let _ = raft.shutdown().await;
                return Err(QuorumError::Unavailable(format!(
                    "controller quorum initialisation failed: {e}"
                )));
            }
        }
    }

    let shared = Arc::new(Shared {
        node_id: config.node_id,
        raft: raft.clone(),
        runtime,
        publisher,
        addresses: voters,
        observers,
        observer: config.observer,
        caught_up: Mutex::new(BTreeMap::new()),
        recovery,
        service,
        service_clients: Mutex::new(BTreeMap::new()),
        security: config.security.clone(),
    });
    let housekeeping = tokio::spawn(housekeeping(shared.clone(), config.cluster_id.clone()));
    Ok((
        Running {
            raft,
            server,
            housekeeping,
        },
        shared,
    ))
}

/// Asks the bootstrap servers in turn until one names the voters.
async fn discover_voters(
    bootstrap: &[String],
    security: &Arc<TransportSecurity>,
) -> BTreeMap<NodeId, String> {
    let started = std::time::Instant::now();
    let mut told = false;
    loop {
        for server in bootstrap {
            match network::describe_voters(server, security.clone(), BOOTSTRAP_TIMEOUT).await {
                Ok(voters) => {
                    tracing::info!(bootstrap = %server, ?voters, "learned the controller quorum's voters");
                    return voters;
                }
                Err(e) => {
                    tracing::debug!(bootstrap = %server, error = %e, "bootstrap server not answering")
                }
            }
        }
        if !told && started.elapsed() > Duration::from_secs(5) {
            told = true;
            tracing::info!(
                ?bootstrap,
                "waiting for a controller.quorum.bootstrap.servers entry to answer"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How long one attempt to write the cluster id may take.
const CLUSTER_ID_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Periodic duties: keep the observers' addresses current (every node, so
/// a new leader has them), and as leader note when each voter was last
/// caught up and write the cluster id once if the log has none.
async fn housekeeping(shared: Arc<Shared>, cluster_id: Option<String>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cluster_id_written_in_term = None;
    loop {
        tick.tick().await;
        let metrics = shared.raft.metrics().borrow_watched().clone();
        {
            let membership = metrics.membership_config.membership();
            let voter_ids: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
            let book: BTreeMap<RaftNodeId, String> = membership
                .nodes()
                .filter(|(id, _)| !voter_ids.contains(id))
                .map(|(id, node)| (*id, node.addr.clone()))
                .collect();
            let mut current = shared.observers.write().unwrap_or_else(|p| p.into_inner());
            if *current != book {
                *current = book;
            }
        }
        if metrics.state != ServerState::Leader {
            continue;
        }
        let now = now_ms();
        let leader_end = metrics.last_log_index;
        {
            let mut caught_up = shared.caught_up.lock().unwrap_or_else(|p| p.into_inner());
            caught_up.insert(shared.node_id, now);
            for (id, matched) in metrics.replication.iter().flatten() {
                if matched.as_ref().map(|m| m.index()) >= leader_end {
                    let at = metrics
                        .heartbeat
                        .as_ref()
                        .and_then(|h| h.get(id).cloned().flatten())
                        .map_or(now, |t| now - elapsed_ms(t.elapsed()));
                    caught_up.insert(kafka_id(*id), at);
                }
            }
        }
        let applied_all = metrics.last_applied.as_ref().map(|l| l.index())
            >= metrics.local_committed.as_ref().map(|l| l.index());
        let image = shared.publisher.load();
        if image.cluster_id.is_none()
            && applied_all
            && cluster_id_written_in_term != Some(metrics.current_term)
        {
            let id = cluster_id
                .clone()
                .unwrap_or_else(crate::cluster::new_cluster_id);
            let record = MetadataRecord::ClusterId {
                cluster_id: id.clone(),
            };
            // Bounded, so a write that never completes cannot stall the
            // caught-up bookkeeping above; a failed one is tried again at
            // the next tick (nothing serves until the cluster id exists).
            let write = shared.raft.client_write(Proposal {
                records: vec![record],
            });
            match tokio::time::timeout(CLUSTER_ID_WRITE_TIMEOUT, write).await {
                Ok(Ok(resp)) if resp.data.0.is_ok() => {
                    cluster_id_written_in_term = Some(metrics.current_term);
                    tracing::info!(cluster_id = %id, "controller wrote the cluster id")
                }
                Ok(Ok(resp)) => {
                    cluster_id_written_in_term = Some(metrics.current_term);
                    tracing::debug!(result = ?resp.data.0, "cluster id already set")
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cluster id not written; retrying")
                }
                Err(_) => tracing::warn!(
                    timeout_ms = CLUSTER_ID_WRITE_TIMEOUT.as_millis() as u64,
                    "cluster id write did not complete; retrying"
                ),
            }
        } else if let (Some(want), Some(have)) = (&cluster_id, &image.cluster_id) {
            if want != have && cluster_id_written_in_term != Some(u64::MAX) {
                cluster_id_written_in_term = Some(u64::MAX);
                tracing::error!(configured = %want, quorum = %have, "controller quorum has another cluster id");
            }
        }
    }
}

/// A voter other than `me` whose log matches the leader's last entry (the
/// one a leadership transfer needs), preferring one other than `not` (a
/// voter already asked that did not take over) and then the most recently
/// heard from.
fn caught_up_voter(
    metrics: &openraft::RaftMetrics<super::types::TypeConfig>,
    me: RaftNodeId,
    not: Option<RaftNodeId>,
) -> Option<RaftNodeId> {
    let last = metrics.last_log_index;
    let replication = metrics.replication.as_ref()?;
    let heard = |id: &RaftNodeId| {
        metrics
            .heartbeat
            .as_ref()
            .and_then(|h| h.get(id).cloned().flatten())
            .map(|t| t.elapsed())
    };
    metrics
        .membership_config
        .membership()
        .voter_ids()
        .filter(|id| *id != me)
        .filter(|id| {
            replication
                .get(id)
                .cloned()
                .flatten()
                .map(|l| l.index())
                .is_some_and(|matched| Some(matched) >= last)
        })
        .min_by_key(|id| (Some(*id) == not, heard(id).unwrap_or(Duration::MAX)))
}

fn elapsed_ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl MetadataQuorum for ControllerQuorum {
    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, QuorumError> {
        let raft = self.shared.raft.clone();
        let result = self
            .on_controller(async move { raft.client_write(Proposal { records }).await })
            .await?;
        match result {
            Ok(resp) => {
                let offset = resp.log_id.index();
                match resp.data.0 {
                    Ok(()) => Ok(offset),
                    Err(error) => Err(QuorumError::Rejected { offset, error }),
                }
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(self.not_controller(f.leader_id))
            }
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(f))) => {
                Err(QuorumError::Indeterminate {
                    leader: f.leader_id.map(kafka_id),
                })
            }
            Err(RaftError::APIError(e)) => Err(QuorumError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(e)) => Err(QuorumError::Unavailable(e.to_string())),
        }
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.shared.publisher.load()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.shared.publisher.subscribe()
    }

    fn leader(&self) -> Option<NodeId> {
        self.shared
            .raft
            .metrics()
            .borrow_watched()
            .current_leader
            .map(kafka_id)
    }

    fn describe(&self) -> QuorumDescription {
        let metrics = self.shared.raft.metrics().borrow_watched().clone();
        let now = now_ms();
        let is_leader = metrics.state == ServerState::Leader;
        let caught_up = self
            .shared
            .caught_up
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let membership = metrics.membership_config.membership();
        let voter_ids: BTreeSet<RaftNodeId> = membership.voter_ids().collect();
        let row = |id: RaftNodeId| -> ReplicaProgress {
            let kid = kafka_id(id);
            let unknown = ReplicaProgress {
                replica_id: kid,
                log_end_offset: -1,
                last_fetch_timestamp_ms: -1,
                last_caught_up_timestamp_ms: -1,
            };
            if !is_leader {
                return unknown;
            }
            let end =
                |index: Option<u64>| index.map_or(0, |i| i64::try_from(i + 1).unwrap_or(i64::MAX));
            if id == metrics.id {
                return ReplicaProgress {
                    log_end_offset: end(metrics.last_log_index),
                    last_fetch_timestamp_ms: now,
                    last_caught_up_timestamp_ms: now,
                    ..unknown
                };
            }
            let matched = metrics
                .replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned())
                .flatten()
                .map(|l| l.index());
            let last_fetch = metrics
                .heartbeat
                .as_ref()
                .and_then(|h| h.get(&id).cloned().flatten())
                .map_or(-1, |t| now - elapsed_ms(t.elapsed()));
            ReplicaProgress {
                log_end_offset: end(matched),
                last_fetch_timestamp_ms: last_fetch,
                last_caught_up_timestamp_ms: caught_up.get(&kid).copied().unwrap_or(-1),
                ..unknown
            }
        };
        QuorumDescription {
            node_id: self.shared.node_id,
            leader_id: metrics.current_leader.map(kafka_id),
            leader_epoch: metrics.current_term,
            high_watermark: metrics
                .local_committed
                .as_ref()
                .map_or(0, |c| c.index() + 1),
            voters: voter_ids.iter().map(|id| row(*id)).collect(),
            observers: membership.learner_ids().map(row).collect(),
        }
    }

    fn set_service(&self, service: Arc<dyn ControllerService>) {
        let _ = self.shared.service.set(service);
    }

    async fn call(
        &self,
        target: NodeId,
        request: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, QuorumError> {
        if target == self.shared.node_id {
            let service = self.shared.service.get().cloned().ok_or_else(|| {
                QuorumError::Unavailable("the controller service is not installed".into())
            })?;
            return self.on_controller(service.handle(request)).await;
        }
        let addr = self
            .shared
            .addresses
            .get(&target)
            .cloned()
            .ok_or_else(|| QuorumError::Config(format!("node {target} is not a controller")))?;
        let rid = raft_id(target)
            .ok_or_else(|| QuorumError::Config(format!("node id {target} is negative")))?;
        let client = self
            .shared
            .service_clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(target)
            .or_insert_with(|| {
                let client = PeerClient::new(addr, self.shared.security.clone());
                Arc::new(tokio::sync::Mutex::new(client))
            })
            .clone();
        self.on_controller(async move {
            let mut client = client.lock().await;
            network::call_service(&mut client, rid, request, timeout).await
        })
        .await?
        .map_err(QuorumError::Unavailable)
    }

    async fn add_observer(&self, node_id: NodeId, address: String) -> Result<(), QuorumError> {
        let rid = self.observer_id(node_id)?;
        self.change_observers(move |raft| {
            let address = address.clone();
            async move {
                let metrics = raft.metrics().borrow_watched().clone();
                let membership = metrics.membership_config.membership();
                let known = membership.get_node(&rid).map(|n| n.addr.clone());
                if metrics.state == ServerState::Leader && known.as_deref() == Some(&address) {
                    // Already an observer at this address: a restart.
                    return None;
                }
                let node = BasicNode::new(&address);
                Some(match known {
                    // Restarted on another address: same learner, new node.
                    Some(_) => {
                        raft.change_membership(
                            ChangeMembers::SetNodes(BTreeMap::from([(rid, node)])),
                            true,
                        )
                        .await
                    }
                    None => raft.add_learner(rid, node, false).await,
                })
            }
        })
        .await
    }

    async fn remove_observer(&self, node_id: NodeId) -> Result<(), QuorumError> {
        let rid = self.observer_id(node_id)?;
        self.change_observers(move |raft| async move {
            let known = raft
                .metrics()
                .borrow_watched()
                .membership_config
                .membership()
                .get_node(&rid)
                .is_some();
            if !known {
                return None;
            }
            Some(
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([rid])), false)
                    .await,
            )
        })
        .await
    }

    fn spawn(&self, task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>) {
        self.shared.runtime.spawn(task);
    }

    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
        if let Some(thread) = self.thread.take() {
            // The thread only drops its runtime now; don't block an executor on it.
            drop(thread);
        }
    }
}

impl Drop for ControllerQuorum {
    fn drop(&mut self) {
        // Dropping the stop sender tells the controller thread to stop.
        self.stop.take();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::Voters;
    use super::*;

    const WAIT: Duration = Duration::from_secs(20);

    fn config(id: NodeId, voters: &Voters, dir: &std::path::Path) -> QuorumConfig {
        let mut config = QuorumConfig::new(id, voters.clone(), dir.join(format!("node-{id}")));
        config.cluster_id = Some("observer-test".into());
        config.election_timeout_min = Duration::from_millis(600);
        config.election_timeout_max = Duration::from_millis(1200);
        config
    }

    async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(t) = f() {
                return t;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Three voters and an observer that knows them only through a bootstrap
    /// server: it is added as a learner, replicates and applies the log,
    /// shows up under observers, never leads; adding it again is a no-op,
    /// a voter's id is refused, and a restart on another port is followed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_observer_replicates_the_log_and_never_votes() {
        let root = tempfile::tempdir().unwrap();
        let listeners: Vec<(NodeId, std::net::TcpListener)> = (1..=3)
            .map(|id| (id, std::net::TcpListener::bind("127.0.0.1:0").unwrap()))
            .collect();
        let voters = Voters(
            listeners
                .iter()
                .map(|(id, l)| (*id, l.local_addr().unwrap().to_string()))
                .collect(),
        );
        let mut nodes: BTreeMap<NodeId, ControllerQuorum> = BTreeMap::new();
        for (id, listener) in listeners {
            let node =
                ControllerQuorum::start_with_listener(config(id, &voters, root.path()), listener)
                    .unwrap();
            nodes.insert(id, node);
        }

        let start_observer = |root: &std::path::Path| {
            let mut observer = config(4, &Voters(BTreeMap::new()), root);
            observer.observer = true;
            observer.bootstrap_servers = vec![voters.0[&2].clone()];
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap().to_string();
            let quorum = ControllerQuorum::start_with_listener(observer, listener).unwrap();
            (quorum, address)
        };
        let (observer, address) = start_observer(root.path());
        assert!(observer.is_observer());
        assert_eq!(
            observer.voters(),
            &voters.0,
            "learned from the bootstrap server"
        );

        let leader = eventually("a leader", || {
            nodes
                .values()
                .find(|n| n.describe().leader_id == Some(n.node_id()))
                .map(|n| n.node_id())
        })
        .await;
        let follower = if leader == 1 { 2 } else { 1 };
        assert!(matches!(
            nodes[&follower].add_observer(4, address.clone()).await,
            Err(QuorumError::NotController { .. })
        ));
        assert!(matches!(
            nodes[&leader].add_observer(follower, address.clone()).await,
            Err(QuorumError::Config(_))
        ));
        nodes[&leader]
            .add_observer(4, address.clone())
            .await
            .unwrap();
        nodes[&leader]
            .add_observer(4, address.clone())
            .await
            .unwrap();
        nodes[&leader]
            .propose(vec![MetadataRecord::Topic {
                name: "seen-by-the-observer".into(),
                topic_id: uuid::Uuid::new_v4(),
            }])
            .await
            .unwrap();
        eventually("the observer applies the log", || {
            let image = observer.image();
            (image.topic_by_name("seen-by-the-observer").is_some()
                && image.cluster_id.as_deref() == Some("observer-test"))
            .then_some(())
        })
        .await;
        assert_eq!(observer.leader(), Some(leader));
        let described = nodes[&leader].describe();
        let voter_ids: Vec<NodeId> = described.voters.iter().map(|v| v.replica_id).collect();
        assert_eq!(voter_ids, vec![1, 2, 3]);
        assert_eq!(described.observers.len(), 1);
        assert_eq!(described.observers[0].replica_id, 4);
        assert!(described.observers[0].log_end_offset > 0);

        // Restarted on another port from its directory: still an observer,
        // followed to its new address.
        observer.shutdown().await;
        let (observer, new_address) = start_observer(root.path());
        assert_ne!(new_address, address);
        nodes[&leader]
            .add_observer(4, new_address.clone())
            .await
            .unwrap();
        nodes[&leader]
            .propose(vec![MetadataRecord::Topic {
                name: "after-the-restart".into(),
                topic_id: uuid::Uuid::new_v4(),
            }])
            .await
            .unwrap();
        eventually("the restarted observer catches up", || {
            observer
                .image()
                .topic_by_name("after-the-restart")
                .map(|_| ())
        })
        .await;
        assert_eq!(nodes[&leader].describe().observers.len(), 1);
        assert_ne!(observer.describe().leader_id, Some(4));

        observer.shutdown().await;
        for (_, node) in nodes {
            node.shutdown().await;
        }
    }
}
