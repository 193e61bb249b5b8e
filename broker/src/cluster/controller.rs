//! The active controller's decisions, KRaft's QuorumController: broker
//! registration and heartbeats, fencing a broker whose heartbeats stop for
//! `broker.session.timeout.ms` (its leaderships move to other ISR members),
//! unfencing a caught-up broker, controlled shutdown, topic creation with
//! replica assignment, deletion, new partitions, config changes, producer-id
//! blocks and AlterPartition (ISR changes from partition leaders). Every
//! decision is a batch of records proposed to the quorum; decisions are
//! taken one at a time against the applied image, so two of them never race.
//!
//! Brokers reach it with [`ControllerRequest`]s carried by
//! [`MetadataQuorum::call`]; it runs on every controller and answers
//! NOT_CONTROLLER unless this node leads the quorum.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sluice_protocol::ErrorCode;
use uuid::Uuid;

use super::quorum::image::PartitionImage;
use super::quorum::records::{
    BrokerRegistration, ConfigRecord, ConfigResourceType, Endpoint, MetadataRecord, NodeId,
    PartitionChange, PartitionRecord, ScramCredential, ScramMechanism, NO_LEADER,
};
use super::quorum::{
    ControllerService, MetadataImage, MetadataQuorum, QuorumDescription, QuorumError, RaftTiming,
    RecordError,
};
use super::reassignment;
use super::{check_name_collision, not_enough_brokers, resolve_new_topic, OFFSETS_TOPIC};
use crate::config::names::{CLEANUP_POLICY, MIN_INSYNC_REPLICAS, SEGMENT_BYTES};
use crate::config::BrokerConfig;

/// Producer ids handed to a broker at a time.
pub const PRODUCER_ID_BLOCK_SIZE: i32 = 1000;
/// How often the controller looks for brokers whose session expired.
const LIVENESS_CHECK: Duration = Duration::from_millis(100);

/// What a broker asks of the active controller.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum ControllerRequest {
    RegisterBroker {
        broker_id: NodeId,
        incarnation_id: Uuid,
        listeners: Vec<Endpoint>,
        rack: Option<String>,
        /// The cluster id the broker already belongs to, if any.
        cluster_id: Option<String>,
        /// The `directory.id` of each of the broker's log directories.
        #[serde(default)]
        log_dirs: Vec<Uuid>,
    },
    BrokerHeartbeat {
        broker_id: NodeId,
        broker_epoch: i64,
        /// The metadata offset the broker has applied.
        metadata_offset: u64,
        want_shutdown: bool,
    },
    CreateTopic {
        name: String,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
        allow_internal: bool,
        /// Manual replica assignments, one per partition (then
        /// `partitions` and `replication_factor` are -1).
        #[serde(default)]
        assignments: Option<Vec<Vec<NodeId>>>,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        validate_only: bool,
        /// Manual replica assignments of the new partitions.
        #[serde(default)]
        assignments: Option<Vec<Vec<NodeId>>>,
    },
    /// Replace a topic's overrides with `configs`.
    AlterTopicConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    AllocateProducerIds {
        broker_id: NodeId,
        broker_epoch: i64,
    },
    /// AlterUserScramCredentials, already validated by the broker: every
    /// change of a user applies, or none of that user's does.
    AlterScramCredentials {
        deletions: Vec<(String, ScramMechanism)>,
        upsertions: Vec<ScramCredential>,
    },
    /// AlterClientQuotas, already validated by the broker: one record per
    /// entry, all written together.
    AlterClientQuotas {
        alterations: Vec<crate::quota::entity::QuotaAlteration>,
    },
    /// Kafka's AlterPartition: the leader asks for a new ISR.
    AlterPartition {
        broker_id: NodeId,
        broker_epoch: i64,
        topic_id: Uuid,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<NodeId>,
    },
    /// The leader's view of the quorum (only it knows every voter's
    /// progress).
    DescribeQuorum,
    /// A broker-only node asks to replicate the metadata log as an observer
    /// (a learner) whose Raft listener is at `address`. Idempotent: a
    /// restart asks again, with its possibly new address.
    AddObserver {
        node_id: NodeId,
        address: String,
    },
    /// Kafka's ElectLeaders: move leaderships to preferred replicas, or
    /// elect any live replica of leaderless partitions (unclean). `None`
    /// means every partition.
    ElectLeaders {
        election: ElectionType,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Kafka's AlterPartitionReassignments: per partition a new target
    /// assignment, or `None` to cancel the reassignment in progress.
    AlterPartitionReassignments {
        reassignments: Vec<(String, i32, Option<Vec<NodeId>>)>,
        /// KIP-860: `false` refuses a target of another size than the
        /// partition's replication factor.
        allow_replication_factor_change: bool,
    },
    /// Kafka's ListPartitionReassignments (`None`: every partition).
    ListPartitionReassignments {
        partitions: Option<Vec<(String, i32)>>,
    },
    /// Kafka's UnregisterBroker (`kafka-cluster unregister`): a broker
    /// removed for good leaves the metadata and, if an observer, the quorum.
    UnregisterBroker {
        broker_id: NodeId,
    },
}

/// ElectLeaders' election types (Kafka's `ElectionType`: 0, 1).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    Preferred,
    Unclean,
}

/// One partition's answer to an election or a reassignment: a Kafka error
/// code (0: done) and why.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct PartitionOutcome {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
    pub message: Option<String>,
}

/// The controller's answer; errors travel as [`RecordError`] (a Kafka code
/// and a message).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum ControllerAnswer {
    Registered {
        broker_epoch: i64,
    },
    Heartbeat {
        is_fenced: bool,
        should_shutdown: bool,
    },
    /// The change committed at this metadata offset (the broker waits for
    /// its image to reach it before answering its client).
    Committed {
        offset: u64,
        topic_id: Option<Uuid>,
    },
    /// Validation passed; nothing was written (validate_only).
    Valid,
    ProducerIds {
        first_id: i64,
        size: i32,
    },
    Partition {
        offset: u64,
        leader_epoch: i32,
        partition_epoch: i32,
        isr: Vec<NodeId>,
    },
    Quorum(QuorumDescription),
    /// The requesting broker is an observer of the quorum.
    ObserverAdded,
    /// SCRAM changes committed at `offset` (None: nothing to write) and
    /// the users whose changes were refused, with why.
    ScramAltered {
        offset: Option<u64>,
        refused: BTreeMap<String, (i16, String)>,
    },
    /// ElectLeaders' per-partition outcomes; the elections committed at
    /// `offset` (None: nothing changed).
    Elected {
        offset: Option<u64>,
        outcomes: Vec<PartitionOutcome>,
    },
    /// AlterPartitionReassignments' per-partition outcomes; the changes
    /// committed at `offset` (None: nothing changed).
    Reassigned {
        offset: Option<u64>,
        outcomes: Vec<PartitionOutcome>,
    },
    Reassignments(Vec<reassignment::PartitionReassignment>),
}

pub type ControllerResult = Result<ControllerAnswer, RecordError>;

/// Last heartbeat per broker, as the active controller saw it.
#[derive(Default)]
struct Liveness {
    /// The Raft term these entries were taken in: a new leader starts
    /// everyone's session afresh, as KRaft does.
    term: u64,
    /// When this node first acted as leader in `term`.
    since: Option<Instant>,
    last_heartbeat: HashMap<NodeId, Instant>,
    /// Brokers in controlled shutdown.
    shutting_down: BTreeSet<NodeId>,
    /// When leader imbalance was last checked (`auto.leader.rebalance.enable`).
    last_imbalance_check: Option<Instant>,
}

/// The controller logic on one controller node.
pub struct Controller<Q: MetadataQuorum> {
    quorum: Arc<Q>,
    node_id: NodeId,
    config: Arc<BrokerConfig>,
    /// Decisions one at a time.
    serial: tokio::sync::Mutex<()>,
    liveness: Mutex<Liveness>,
}

fn err(code: ErrorCode, message: impl Into<String>) -> RecordError {
    RecordError::new(code, message)
}

impl<Q: MetadataQuorum + 'static> Controller<Q> {
    pub fn new(quorum: Arc<Q>, config: Arc<BrokerConfig>) -> Arc<Self> {
        Arc::new(Controller {
            quorum,
            node_id: config.node_id,
            config,
            serial: tokio::sync::Mutex::new(()),
            liveness: Mutex::new(Liveness::default()),
        })
    }

    /// Installs the controller as the quorum's service and starts its
    /// liveness timer on the controller runtime.
    pub fn install(self: &Arc<Self>) {
        self.quorum.set_service(self.clone());
        let this = self.clone();
        self.quorum.spawn(Box::pin(async move {
            let mut tick = tokio::time::interval(LIVENESS_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.periodic().await;
            }
        }));
    }

    fn is_leader(&self) -> bool {
        self.quorum.leader() == Some(self.node_id)
    }

    fn not_controller(&self) -> RecordError {
        err(
            ErrorCode::NotController,
            format!(
                "node {} is not the active controller (leader: {:?})",
                self.node_id,
                self.quorum.leader()
            ),
        )
    }

    /// The current term's liveness table, reset when leadership changed.
    fn with_liveness<T>(&self, f: impl FnOnce(&mut Liveness) -> T) -> T {
        let term = self.quorum.describe().leader_epoch;
        let mut l = self.liveness.lock().unwrap_or_else(|p| p.into_inner());
        if l.term != term {
            *l = Liveness {
                term,
                since: Some(Instant::now()),
                ..Liveness::default()
            };
        }
        f(&mut l)
    }

    async fn propose(&self, records: Vec<MetadataRecord>) -> Result<u64, RecordError> {
        self.quorum.propose(records).await.map_err(|e| match e {
            QuorumError::Rejected { error, .. } => error,
            QuorumError::NotController { .. } => self.not_controller(),
            other => err(other.error_code(), other.to_string()),
        })
    }

    /// The image with everything committed so far applied: a new leader
    /// first catches up (its blank entry commits with the earlier ones).
    async fn current_image(&self) -> Result<Arc<MetadataImage>, RecordError> {
        if !self.is_leader() {
            return Err(self.not_controller());
        }
        let target = self.quorum.describe().high_watermark.saturating_sub(1);
        let mut rx = self.quorum.subscribe();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let image = rx.borrow_and_update().clone();
            if image.offset >= target {
                return Ok(image);
            }
            if tokio::time::timeout_at(deadline, rx.changed())
                .await
                .is_err()
            {
                return Err(err(
                    ErrorCode::RequestTimedOut,
                    "the controller is still applying its log",
                ));
            }
        }
    }

    /// Takes one decision and commits it.
    pub async fn decide(&self, request: ControllerRequest) -> ControllerResult {
        if let ControllerRequest::DescribeQuorum = request {
            if !self.is_leader() {
                return Err(self.not_controller());
            }
            return Ok(ControllerAnswer::Quorum(self.quorum.describe()));
        }
        if let ControllerRequest::ListPartitionReassignments { partitions } = &request {
            // A read: no need to queue behind decisions.
            let image = self.current_image().await?;
            return Ok(ControllerAnswer::Reassignments(reassignment::in_progress(
                &image,
                partitions.as_deref(),
            )));
        }
        if let ControllerRequest::AddObserver { node_id, address } = request {
            // A membership change, not a metadata record: openraft orders
            // it with the log, no need to queue behind decisions.
            if !self.is_leader() {
                return Err(self.not_controller());
            }
            return match self.quorum.add_observer(node_id, address.clone()).await {
                Ok(()) => {
                    tracing::info!(node_id, %address, "observer added to the controller quorum");
                    Ok(ControllerAnswer::ObserverAdded)
                }
                Err(QuorumError::NotController { .. }) => Err(self.not_controller()),
                Err(QuorumError::Config(message)) => Err(err(ErrorCode::InvalidRequest, message)),
                Err(other) => Err(err(other.error_code(), other.to_string())),
            };
        }
        // The common heartbeat (a live, unfenced broker staying so) changes
        // nothing in the log: answer it without queueing behind decisions,
        // so a busy controller never starves sessions into fencing.
        if let ControllerRequest::BrokerHeartbeat {
            broker_id,
            broker_epoch,
            want_shutdown: false,
            ..
        } = request
        {
            if !self.is_leader() {
                return Err(self.not_controller());
            }
            let image = self.quorum.image();
            if image
                .broker(broker_id)
                .is_some_and(|b| !b.fenced && b.registration.broker_epoch == broker_epoch)
            {
                self.with_liveness(|l| {
                    l.last_heartbeat.insert(broker_id, Instant::now());
                });
                return Ok(ControllerAnswer::Heartbeat {
                    is_fenced: false,
                    should_shutdown: false,
                });
            }
        }
        let _serial = self.serial.lock().await;
        let image = self.current_image().await?;
        match request {
            ControllerRequest::RegisterBroker {
                broker_id,
                incarnation_id,
                listeners,
                rack,
                cluster_id,
                log_dirs,
            } => {
                if let (Some(theirs), Some(ours)) = (&cluster_id, &image.cluster_id) {
                    if theirs != ours {
                        return Err(err(
                            ErrorCode::InconsistentClusterId,
                            format!("broker {broker_id} belongs to cluster {theirs}, this quorum is cluster {ours}"),
                        ));
                    }
                }
                let mut records = Vec::new();
                if let Some(existing) = image.broker(broker_id) {
                    let old = &existing.registration;
                    let session =
                        Duration::from_millis(self.config.cluster.broker_session_timeout_ms);
                    let alive = self.with_liveness(|l| {
                        l.last_heartbeat
                            .get(&broker_id)
                            .is_some_and(|t| t.elapsed() < session)
                    });
                    // The same data directory under a new incarnation is
                    // this node restarted (the directory is locked while a
                    // process uses it): the old process is gone, so its
                    // session need not be waited out.
                    let restarted = old.incarnation_id != incarnation_id
                        && log_dirs.iter().any(|d| old.log_dirs.contains(d));
                    if old.incarnation_id != incarnation_id
                        && !existing.fenced
                        && alive
                        && !restarted
                    {
                        return Err(err(
                            ErrorCode::DuplicateBrokerRegistration,
                            format!("another live process is registered as broker {broker_id}"),
                        ));
                    }
                    // A new process whose predecessor did not finish a
                    // controlled shutdown stopped uncleanly: it may have
                    // lost what it had not synced, so it may no longer be
                    // an eligible leader (KIP-966; Kafka tells this from the
                    // broker's clean-shutdown marker).
                    let unclean_restart = restarted_uncleanly(existing, incarnation_id);
                    // Whatever the old registration led or replicated in
                    // an ISR moves away first: the new incarnation starts
                    // fenced and earns its place back once caught up.
                    if !existing.fenced {
                        records.push(MetadataRecord::FenceBroker {
                            broker_id,
                            broker_epoch: old.broker_epoch,
                        });
                        records.extend(partition_moves(
                            &image,
                            broker_id,
                            self.rules(),
                            unclean_restart,
                        ));
                        tracing::warn!(
                            broker_id,
                            restarted,
                            "broker registered again before its old registration was fenced: fencing the old one"
                        );
                    } else if unclean_restart {
                        let moves = partition_moves(&image, broker_id, self.rules(), true);
                        if !moves.is_empty() {
                            tracing::info!(
                                broker_id,
                                partitions = moves.len(),
                                "broker restarted after an unclean shutdown: removed from eligible leader replicas"
                            );
                        }
                        records.extend(moves);
                    }
                }
                let broker_epoch = i64::try_from(image.offset).unwrap_or(i64::MAX - 1) + 1;
                let broker_epoch = match image.broker(broker_id) {
                    Some(b) => broker_epoch.max(b.registration.broker_epoch + 1),
                    None => broker_epoch,
                };
                records.push(MetadataRecord::RegisterBroker(BrokerRegistration {
                    broker_id,
                    broker_epoch,
                    incarnation_id,
                    listeners,
                    rack,
                    log_dirs,
                }));
                self.propose(records).await?;
                self.with_liveness(|l| {
                    l.last_heartbeat.insert(broker_id, Instant::now());
                    l.shutting_down.remove(&broker_id);
                });
                tracing::info!(broker_id, broker_epoch, "broker registered");
                Ok(ControllerAnswer::Registered { broker_epoch })
            }
            ControllerRequest::BrokerHeartbeat {
                broker_id,
                broker_epoch,
                metadata_offset,
                want_shutdown,
            } => {
                self.heartbeat(
                    &image,
                    broker_id,
                    broker_epoch,
                    metadata_offset,
                    want_shutdown,
                )
                .await
            }
            ControllerRequest::CreateTopic {
                name,
                partitions,
                replication_factor,
                configs,
                validate_only,
                allow_internal,
                assignments,
            } => {
                let records = match assignments {
                    Some(assignments) => self.assigned_topic_records(
                        &image,
                        &name,
                        &assignments,
                        configs,
                        allow_internal,
                    )?,
                    None => self.topic_records(
                        &image,
                        &name,
                        partitions,
                        replication_factor,
                        configs,
                        allow_internal,
                    )?,
                };
                if validate_only {
                    return Ok(ControllerAnswer::Valid);
                }
                let topic_id = match records.first() {
                    Some(MetadataRecord::Topic { topic_id, .. }) => Some(*topic_id),
                    _ => None,
                };
                let offset = self.propose(records).await?;
                tracing::info!(topic = %name, "topic created");
                Ok(ControllerAnswer::Committed { offset, topic_id })
            }
            ControllerRequest::ElectLeaders {
                election,
                partitions,
            } => {
                let (records, outcomes) = self.elections(&image, election, partitions.as_deref());
                let offset = if records.is_empty() {
                    None
                } else {
                    Some(self.propose(records).await?)
                };
                Ok(ControllerAnswer::Elected { offset, outcomes })
            }
            ControllerRequest::DeleteTopic { name } => {
                let topic = image.topic_by_name(&name).ok_or_else(|| {
                    err(
                        ErrorCode::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )
                })?;
                let topic_id = topic.id;
                let offset = self
                    .propose(vec![MetadataRecord::RemoveTopic { topic_id }])
                    .await?;
                Ok(ControllerAnswer::Committed {
                    offset,
                    topic_id: Some(topic_id),
                })
            }
            ControllerRequest::CreatePartitions {
                name,
                count,
                validate_only,
                assignments,
            } => {
                let topic = image.topic_by_name(&name).ok_or_else(|| {
                    err(
                        ErrorCode::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    )
                })?;
                let current = i32::try_from(topic.partitions.len()).unwrap_or(i32::MAX);
                if count <= current {
                    return Err(err(
                        ErrorCode::InvalidPartitions,
                        format!("Topic currently has {current} partitions, which is higher than the requested {count}."),
                    ));
                }
                // A partition being reassigned counts with its target.
                let rf = topic
                    .partitions
                    .values()
                    .next()
                    .map_or(1, |p| p.target_replicas().len());
                let new_assignments: Vec<Vec<NodeId>> = match assignments {
                    Some(assignments) => {
                        let added = usize::try_from(count - current).unwrap_or(0);
                        if assignments.len() != added {
                            return Err(err(
                                ErrorCode::InvalidReplicaAssignment,
                                format!("Increasing the number of partitions by {added} but {} assignments provided.", assignments.len()),
                            ));
                        }
                        check_assignments(&image, &assignments, Some(rf))?;
                        assignments
                    }
                    None => {
                        let brokers = assignable_brokers(&image);
                        if brokers.len() < rf {
                            return Err(record_error(not_enough_brokers(
                                i16::try_from(rf).unwrap_or(i16::MAX),
                                brokers.len(),
                            )));
                        }
                        let start = rand::random::<u32>() as usize;
                        (current..count)
                            .map(|p| assign(&brokers, start, p, rf))
                            .collect()
                    }
                };
                if validate_only {
                    return Ok(ControllerAnswer::Valid);
                }
                let can_lead = self.can_lead(&image);
                let records = (current..)
                    .zip(&new_assignments)
                    .map(|(p, replicas)| manual_partition(topic.id, p, replicas, &can_lead))
                    .collect::<Result<Vec<_>, _>>()?;
                let offset = self.propose(records).await?;
                Ok(ControllerAnswer::Committed {
                    offset,
                    topic_id: Some(topic.id),
                })
            }
            ControllerRequest::AlterTopicConfigs { name, configs } => {
                if image.topic_by_name(&name).is_none() {
                    return Err(err(
                        ErrorCode::UnknownTopicOrPartition,
                        "This server does not host this topic-partition.",
                    ));
                }
                super::MetadataStore::validate_configs(&configs).map_err(record_error)?;
                let empty = BTreeMap::new();
                let current = image.topic_configs.get(&name).unwrap_or(&empty);
                let mut records = Vec::new();
                for key in current.keys().filter(|k| !configs.contains_key(*k)) {
                    records.push(config_record(&name, key, None));
                }
                for (key, value) in &configs {
                    if current.get(key) != Some(value) {
                        records.push(config_record(&name, key, Some(value)));
                    }
                }
                if current.get(MIN_INSYNC_REPLICAS) != configs.get(MIN_INSYNC_REPLICAS) {
                    if let Some(topic) = image.topic_by_name(&name) {
                        records.extend(elr_cleared(topic));
                    }
                }
                if records.is_empty() {
                    return Ok(ControllerAnswer::Committed {
                        offset: image.offset,
                        topic_id: None,
                    });
                }
                let offset = self.propose(records).await?;
                Ok(ControllerAnswer::Committed {
                    offset,
                    topic_id: None,
                })
            }
            ControllerRequest::AllocateProducerIds {
                broker_id,
                broker_epoch,
            } => {
                check_epoch(&image, broker_id, broker_epoch)?;
                let block = image.next_producer_ids_block(broker_id, PRODUCER_ID_BLOCK_SIZE);
                self.propose(vec![MetadataRecord::ProducerIdsBlock(block)])
                    .await?;
                Ok(ControllerAnswer::ProducerIds {
                    first_id: block.first_id,
                    size: block.size,
                })
            }
            ControllerRequest::AlterScramCredentials {
                deletions,
                upsertions,
            } => {
                let mut refused = BTreeMap::new();
                for (user, mechanism) in &deletions {
                    if !image
                        .scram_credentials
                        .contains_key(&(user.clone(), *mechanism))
                    {
                        refused.entry(user.clone()).or_insert((
                            ErrorCode::ResourceNotFound.code(),
                            format!("no {mechanism:?} credential for this user"),
                        ));
                    }
                }
                let records: Vec<MetadataRecord> = deletions
                    .into_iter()
                    .filter(|(user, _)| !refused.contains_key(user))
                    .map(
                        |(name, mechanism)| MetadataRecord::RemoveUserScramCredential {
                            name,
                            mechanism,
                        },
                    )
                    .chain(
                        upsertions
                            .into_iter()
                            .filter(|c| !refused.contains_key(&c.name))
                            .map(MetadataRecord::UserScramCredential),
                    )
                    .collect();
                let offset = if records.is_empty() {
                    None
                } else {
                    Some(self.propose(records).await?)
                };
                Ok(ControllerAnswer::ScramAltered { offset, refused })
            }
            ControllerRequest::AlterClientQuotas { alterations } => {
                let records: Vec<MetadataRecord> = alterations
                    .into_iter()
                    .map(MetadataRecord::ClientQuota)
                    .collect();
                if records.is_empty() {
                    return Ok(ControllerAnswer::Valid);
                }
                let offset = self.propose(records).await?;
                Ok(ControllerAnswer::Committed {
                    offset,
                    topic_id: None,
                })
            }
            ControllerRequest::AlterPartition {
                broker_id,
                broker_epoch,
                topic_id,
                partition,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => {
                check_epoch(&image, broker_id, broker_epoch)?;
                let current = image.partition(topic_id, partition).ok_or_else(|| {
                    err(
                        ErrorCode::UnknownTopicOrPartition,
                        format!("no partition {partition} of {topic_id}"),
                    )
                })?;
                if current.leader != broker_id {
                    return Err(err(
                        ErrorCode::NotLeaderOrFollower,
                        format!("broker {broker_id} does not lead {topic_id}-{partition}"),
                    ));
                }
                if leader_epoch != current.leader_epoch {
                    return Err(err(
                        ErrorCode::FencedLeaderEpoch,
                        format!(
                            "leader epoch {leader_epoch} is not the current {}",
                            current.leader_epoch
                        ),
                    ));
                }
                if partition_epoch != current.partition_epoch {
                    return Err(err(
                        ErrorCode::InvalidUpdateVersion,
                        format!(
                            "partition epoch {partition_epoch} is not the current {}",
                            current.partition_epoch
                        ),
                    ));
                }
                if !new_isr.contains(&broker_id) {
                    return Err(err(
                        ErrorCode::InvalidRequest,
                        "the leader must stay in the ISR",
                    ));
                }
                for r in new_isr.iter().filter(|r| !current.isr.contains(r)) {
                    let eligible = image.broker(*r).is_some_and(|b| !b.fenced)
                        && !self.with_liveness(|l| l.shutting_down.contains(r));
                    if !eligible {
                        return Err(err(
                            ErrorCode::IneligibleReplica,
                            format!("replica {r} is fenced or shutting down"),
                        ));
                    }
                }
                // The ELR follows the ISR: members shrunk out below
                // min.insync.replicas join it, rejoining ones leave it, and
                // it empties once the ISR is back at min.insync.replicas.
                let rules = self.rules();
                let topic_name = image.topics.get(&topic_id).map(|t| t.name.clone());
                let min_isr = rules.min_isr(&image, topic_name.as_deref().unwrap_or(""));
                // The leader is in `new_isr`, so it stays and the ISR is
                // taken as asked; only the ELR fields are decided here.
                let leader_stays = |r: NodeId| r == broker_id;
                let next = next_partition(
                    current,
                    new_isr.clone(),
                    min_isr,
                    None,
                    &leader_stays,
                    rules,
                );
                let (elr, last_known_elr) = (next.elr, next.last_known_elr);
                let mut change = PartitionChange {
                    topic_id,
                    partition,
                    isr: Some(new_isr.clone()),
                    elr: (elr != current.elr).then_some(elr),
                    last_known_elr: (last_known_elr != current.last_known_elr)
                        .then_some(last_known_elr),
                    expect_partition_epoch: Some(partition_epoch),
                    ..PartitionChange::default()
                };
                // The ISR now holding a reassignment's whole target
                // finishes it in the same record.
                let mut leader_epoch = current.leader_epoch;
                let mut isr = new_isr;
                let can_lead = self.can_lead(&image);
                if let Some(done) = reassignment::completion(current, &isr, &can_lead) {
                    tracing::info!(%topic_id, partition, replicas = ?done.replicas, leader = done.leader, "reassignment complete");
                    if done.leader_changed {
                        leader_epoch += 1;
                    }
                    isr = done.isr.clone();
                    done.merge_into(&mut change);
                }
                let offset = self
                    .propose(vec![MetadataRecord::PartitionChange(change)])
                    .await?;
                Ok(ControllerAnswer::Partition {
                    offset,
                    leader_epoch,
                    partition_epoch: current.partition_epoch + 1,
                    isr,
                })
            }
            ControllerRequest::AlterPartitionReassignments {
                reassignments,
                allow_replication_factor_change,
            } => {
                let (records, outcomes) =
                    self.reassignments(&image, reassignments, allow_replication_factor_change);
                let offset = if records.is_empty() {
                    None
                } else {
                    Some(self.propose(records).await?)
                };
                Ok(ControllerAnswer::Reassigned { offset, outcomes })
            }
            ControllerRequest::UnregisterBroker { broker_id } => {
                self.unregister(&image, broker_id).await
            }
            ControllerRequest::DescribeQuorum => {
                Ok(ControllerAnswer::Quorum(self.quorum.describe()))
            }
            ControllerRequest::AddObserver { .. }
            | ControllerRequest::ListPartitionReassignments { .. } => Err(err(
                ErrorCode::UnknownServerError,
                "answered before decisions are queued",
            )),
        }
    }

    /// UnregisterBroker: only a broker that is not running (fenced) may go,
    /// since a running one would register again at once (and, broker-only,
    /// lose the metadata log it observes). Its leaderships and ISR and ELR
    /// places move as for an unclean shutdown, its registration goes, and
    /// so does its observer place in the quorum. Its replicas stay in the
    /// assignments, offline, until reassigned.
    async fn unregister(&self, image: &MetadataImage, broker_id: NodeId) -> ControllerResult {
        let state = image.broker(broker_id).ok_or_else(|| {
            err(
                ErrorCode::BrokerIdNotRegistered,
                format!("broker {broker_id} is not registered"),
            )
        })?;
        if !state.fenced {
            return Err(err(
                ErrorCode::InvalidRequest,
                format!("broker {broker_id} is running: stop it before unregistering it (a running broker registers again)"),
            ));
        }
        let mut records = partition_moves(image, broker_id, self.rules(), true);
        records.push(MetadataRecord::UnregisterBroker {
            broker_id,
            broker_epoch: state.registration.broker_epoch,
        });
        let offset = self.propose(records).await?;
        self.with_liveness(|l| {
            l.last_heartbeat.remove(&broker_id);
            l.shutting_down.remove(&broker_id);
        });
        tracing::info!(broker_id, "broker unregistered");
        if !self.config.cluster.voters.contains_key(&broker_id) {
            if let Err(e) = self.quorum.remove_observer(broker_id).await {
                tracing::warn!(broker_id, error = %e, "unregistered broker stays an observer of the quorum");
            }
        }
        Ok(ControllerAnswer::Committed {
            offset,
            topic_id: None,
        })
    }

    async fn heartbeat(
        &self,
        image: &MetadataImage,
        broker_id: NodeId,
        broker_epoch: i64,
        metadata_offset: u64,
        want_shutdown: bool,
    ) -> ControllerResult {
        let state = check_epoch(image, broker_id, broker_epoch)?;
        self.with_liveness(|l| {
            l.last_heartbeat.insert(broker_id, Instant::now());
            if want_shutdown {
                l.shutting_down.insert(broker_id);
            }
        });
        if want_shutdown {
            // Controlled shutdown: move its leaderships and take it out of
            // every ISR while it still serves, then let it go.
            let mut records = partition_moves(image, broker_id, self.rules(), false);
            if !(state.fenced && state.shut_down_cleanly) {
                records.push(MetadataRecord::ControlledShutdown {
                    broker_id,
                    broker_epoch,
                });
            }
            if !records.is_empty() {
                self.propose(records).await?;
            }
            return Ok(ControllerAnswer::Heartbeat {
                is_fenced: true,
                should_shutdown: true,
            });
        }
        // Caught up once it applied its own registration.
        let caught_up = i64::try_from(metadata_offset).unwrap_or(i64::MAX) + 1 >= broker_epoch;
        if state.fenced && caught_up {
            let mut records = vec![MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch,
            }];
            records.extend(elections_on_return(image, broker_id, self.rules()));
            self.propose(records).await?;
            tracing::info!(broker_id, "broker unfenced");
            return Ok(ControllerAnswer::Heartbeat {
                is_fenced: false,
                should_shutdown: false,
            });
        }
        Ok(ControllerAnswer::Heartbeat {
            is_fenced: state.fenced,
            should_shutdown: false,
        })
    }

    /// Whether a broker may take a leadership now: registered, unfenced
    /// and not shutting down.
    fn can_lead<'a>(&self, image: &'a MetadataImage) -> impl Fn(NodeId) -> bool + 'a {
        let shutting_down = self.with_liveness(|l| l.shutting_down.clone());
        move |b: NodeId| !shutting_down.contains(&b) && image.broker(b).is_some_and(|s| !s.fenced)
    }

    /// AlterPartitionReassignments: each partition's change (KIP-455,
    /// `super::reassignment`) and outcome, in request order.
    fn reassignments(
        &self,
        image: &MetadataImage,
        reassignments: Vec<(String, i32, Option<Vec<NodeId>>)>,
        allow_replication_factor_change: bool,
    ) -> (Vec<MetadataRecord>, Vec<PartitionOutcome>) {
        let can_lead = self.can_lead(image);
        let registered = |b: NodeId| image.broker(b).is_some();
        let asked = reassignments
            .into_iter()
            .map(|(topic, partition, target)| ((topic, partition), target));
        partition_changes(image, asked, |topic_id, partition, p, target| {
            let original_rf = p.original_replicas().len();
            if let Some(t) = target.as_ref().filter(|t| t.len() != original_rf) {
                if !allow_replication_factor_change {
                    return Err((
                        ErrorCode::InvalidReplicationFactor,
                        format!(
                            "The replication factor is changed from {original_rf} to {}",
                            t.len()
                        ),
                    ));
                }
            }
            let change = reassignment::alter(
                topic_id,
                partition,
                p,
                target.as_deref(),
                &registered,
                &can_lead,
            )?;
            if change.is_some() {
                tracing::info!(%topic_id, partition, ?target, "partition reassignment");
            }
            Ok(change)
        })
    }

    fn rules(&self) -> ElectionRules {
        ElectionRules {
            elr: ELIGIBLE_LEADER_REPLICAS,
            unclean: self.config.unclean_leader_election_enable,
            default_min_isr: self.config.min_insync_replicas,
        }
    }

    /// ElectLeaders over `partitions` (every partition when `None`): the
    /// records to write and each partition's outcome, in request order.
    fn elections(
        &self,
        image: &MetadataImage,
        election: ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> (Vec<MetadataRecord>, Vec<PartitionOutcome>) {
        let can_lead = self.can_lead(image);
        let rules = self.rules();
        let wanted: Vec<(String, i32)> = match partitions {
            Some(list) => list.to_vec(),
            None => image
                .topics
                .values()
                .flat_map(|t| t.partitions.keys().map(|i| (t.name.clone(), *i)))
                .collect(),
        };
        let asked = wanted.into_iter().map(|tp| (tp, ()));
        partition_changes(image, asked, |topic_id, partition, p, ()| {
            match election {
                ElectionType::Preferred => preferred_election(topic_id, partition, p, &can_lead),
                ElectionType::Unclean => {
                    let topic = image.topics.get(&topic_id).map_or("", |t| t.name.as_str());
                    let min_isr = rules.min_isr(image, topic);
                    unclean_election(topic_id, partition, p, min_isr, &can_lead, rules)
                }
            }
            .map(Some)
        })
    }

    /// Kafka's auto leader rebalance: when more than
    /// `leader.imbalance.per.broker.percentage` of the partitions some
    /// broker is preferred for are led elsewhere, those whose preferred
    /// replica can lead move back (at most every
    /// `leader.imbalance.check.interval.seconds`).
    async fn rebalance_leaders(&self, image: &MetadataImage) {
        let settings = &self.config.cluster;
        if !settings.auto_leader_rebalance_enable {
            return;
        }
        let interval = Duration::from_secs(settings.leader_imbalance_check_interval_seconds);
        let due = self.with_liveness(|l| {
            let now = Instant::now();
            // A new leader waits a whole interval first, as Kafka's does:
            // brokers coming back after the election settle meanwhile.
            let last = *l.last_imbalance_check.get_or_insert(now);
            let due = now.duration_since(last) >= interval;
            if due {
                l.last_imbalance_check = Some(now);
            }
            due
        });
        if !due {
            return;
        }
        let imbalanced =
            imbalanced_partitions(image, settings.leader_imbalance_per_broker_percentage);
        if imbalanced.is_empty() {
            return;
        }
        let (records, _) = self.elections(image, ElectionType::Preferred, Some(&imbalanced));
        if records.is_empty() {
            return;
        }
        let moved = records.len();
        match self.propose(records).await {
            Ok(_) => tracing::info!(
                partitions = moved,
                "leaderships moved back to preferred replicas"
            ),
            Err(e) => tracing::warn!(error = %e, "leader rebalance failed"),
        }
    }

    /// The records that create a topic: its id, partitions with replicas
    /// spread over the live brokers (racks alternating), and its configs.
    fn topic_records(
        &self,
        image: &MetadataImage,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        allow_internal: bool,
    ) -> Result<Vec<MetadataRecord>, RecordError> {
        let (partitions, rf) = resolve_new_topic(
            &self.config,
            name,
            partitions,
            replication_factor,
            allow_internal,
        )
        .map_err(record_error)?;
        super::MetadataStore::validate_configs(&configs).map_err(record_error)?;
        check_name_collision(name, image.topic_ids.keys().map(String::as_str))
            .map_err(record_error)?;
        let brokers = assignable_brokers(image);
        let rf_usize = usize::try_from(rf).unwrap_or(usize::MAX);
        if brokers.len() < rf_usize {
            return Err(record_error(not_enough_brokers(rf, brokers.len())));
        }
        let topic_id = Uuid::new_v4();
        let start = rand::random::<u32>() as usize;
        let mut records = vec![MetadataRecord::Topic {
            name: name.to_string(),
            topic_id,
        }];
        for p in 0..partitions {
            let replicas = assign(&brokers, start, p, rf_usize);
            records.push(MetadataRecord::Partition(new_partition(
                topic_id, p, replicas,
            )));
        }
        for (key, value) in &configs {
            records.push(config_record(name, key, Some(value)));
        }
        Ok(records)
    }

    /// The records that create a topic laid out by the user (CreateTopics
    /// with assignments, `kafka-topics --replica-assignment`).
    fn assigned_topic_records(
        &self,
        image: &MetadataImage,
        name: &str,
        assignments: &[Vec<NodeId>],
        configs: BTreeMap<String, String>,
        allow_internal: bool,
    ) -> Result<Vec<MetadataRecord>, RecordError> {
        check_assignments(image, assignments, None)?;
        let partitions = i32::try_from(assignments.len()).unwrap_or(i32::MAX);
        let rf = assignments.first().map_or(0, Vec::len);
        resolve_new_topic(
            &self.config,
            name,
            partitions,
            i16::try_from(rf).unwrap_or(i16::MAX),
            allow_internal,
        )
        .map_err(record_error)?;
        super::MetadataStore::validate_configs(&configs).map_err(record_error)?;
        check_name_collision(name, image.topic_ids.keys().map(String::as_str))
            .map_err(record_error)?;
        let topic_id = Uuid::new_v4();
        let mut records = vec![MetadataRecord::Topic {
            name: name.to_string(),
            topic_id,
        }];
        let can_lead = self.can_lead(image);
        for (p, replicas) in (0..).zip(assignments) {
            records.push(manual_partition(topic_id, p, replicas, &can_lead)?);
        }
        for (key, value) in &configs {
            records.push(config_record(name, key, Some(value)));
        }
        Ok(records)
    }

    /// Voters that have not acknowledged this leader's Raft traffic for a
    /// minimum election timeout (five heartbeat intervals, which a live
    /// voter answers within one), once it has led (since `since`) that long.
    fn unreachable_voters(&self, since: Instant) -> BTreeSet<NodeId> {
        let grace = RaftTiming::of(&self.config.cluster).election_timeout_min;
        if since.elapsed() <= grace {
            return BTreeSet::new();
        }
        let cutoff =
            sluice_protocol::clock::now_ms() - i64::try_from(grace.as_millis()).unwrap_or(i64::MAX);
        self.quorum
            .describe()
            .voters
            .iter()
            .filter(|v| v.replica_id != self.node_id && v.last_fetch_timestamp_ms < cutoff)
            .map(|v| v.replica_id)
            .collect()
    }

    /// Leader duties on a timer: fence brokers whose session expired, and
    /// create `__consumer_offsets` once enough brokers are up.
    async fn periodic(&self) {
        if !self.is_leader() {
            return;
        }
        let session = Duration::from_millis(self.config.cluster.broker_session_timeout_ms);
        let _serial = self.serial.lock().await;
        let Ok(image) = self.current_image().await else {
            return;
        };
        let now = Instant::now();
        // A broker heartbeat this late, from a node whose controller has
        // also stopped answering Raft, means the process is gone.
        let heartbeat = Duration::from_millis(self.config.cluster.broker_heartbeat_interval_ms);
        let silent_for =
            (heartbeat * 2).max(RaftTiming::of(&self.config.cluster).election_timeout_min);
        let expired: Vec<(NodeId, i64)> = self.with_liveness(|l| {
            let since = *l.since.get_or_insert(now);
            // Asked of the quorum only when some broker is late or has not
            // heartbeated to this leader yet (right after an election).
            let mut unreachable_voters: Option<BTreeSet<NodeId>> = None;
            image
                .brokers
                .values()
                .filter(|b| !b.fenced)
                .filter(|b| {
                    let id = b.registration.broker_id;
                    match l.last_heartbeat.get(&id) {
                        // A combined node whose Raft has been silent for a
                        // minimum election timeout and whose broker is late
                        // is not waited on for a whole session: the same
                        // evidence a new leader acts on (below), so a
                        // killed combined node's partitions move within
                        // about a second instead of the session timeout.
                        // Broker-only nodes keep the session rule.
                        Some(last) => {
                            let late = now.duration_since(*last);
                            late > session
                                || (late > silent_for
                                    && unreachable_voters
                                        .get_or_insert_with(|| self.unreachable_voters(since))
                                        .contains(&id))
                        }
                        // A new leader knows no heartbeat times: a broker
                        // gets a whole session from the leader's start, as
                        // in KRaft, unless it is a controller too and has
                        // not answered this leader's Raft heartbeats: then
                        // its process is gone (typically the old leader,
                        // killed), and waiting out a session would only
                        // leave its partitions leaderless longer.
                        None => {
                            now.duration_since(since) > session
                                || unreachable_voters
                                    .get_or_insert_with(|| self.unreachable_voters(since))
                                    .contains(&id)
                        }
                    }
                })
                .map(|b| (b.registration.broker_id, b.registration.broker_epoch))
                .collect()
        });
        // One fencing per round: later decisions need the image with it.
        if let Some(&(broker_id, broker_epoch)) = expired.first() {
            let mut records = vec![MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch,
            }];
            records.extend(partition_moves(&image, broker_id, self.rules(), false));
            let moved = records.len() - 1;
            match self.propose(records).await {
                Ok(_) => tracing::warn!(
                    broker_id,
                    partitions = moved,
                    "broker fenced (session expired, or late with its controller silent): its partitions moved"
                ),
                Err(e) => tracing::warn!(broker_id, error = %e, "fencing failed"),
            }
            return;
        }
        self.rebalance_leaders(&image).await;
        if image.topic_by_name(OFFSETS_TOPIC).is_none() {
            let live = assignable_brokers(&image).len();
            let wanted = usize::try_from(self.config.offsets_topic_replication_factor)
                .unwrap_or(3)
                .min(self.config.cluster.voters.len().max(1));
            if live >= wanted && live > 0 {
                let mut configs = BTreeMap::new();
                configs.insert(CLEANUP_POLICY.to_string(), "compact".to_string());
                configs.insert(SEGMENT_BYTES.to_string(), (100 << 20).to_string());
                let rf = i16::try_from(wanted).unwrap_or(3);
                match self.topic_records(
                    &image,
                    OFFSETS_TOPIC,
                    self.config.offsets_topic_num_partitions,
                    rf,
                    configs,
                    true,
                ) {
                    Ok(records) => match self.propose(records).await {
                        Ok(_) => tracing::info!(replication_factor = rf, "created {OFFSETS_TOPIC}"),
                        Err(e) => tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot create {OFFSETS_TOPIC}"),
                }
            }
        }
    }
}

impl<Q: MetadataQuorum + 'static> ControllerService for Controller<Q> {
    fn handle(self: Arc<Self>, request: Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> {
        Box::pin(async move {
            let answer: ControllerResult = match serde_json::from_slice(&request) {
                Ok(request) => self.decide(request).await,
                Err(e) => Err(err(
                    ErrorCode::InvalidRequest,
                    format!("undecodable controller request: {e}"),
                )),
            };
            // Our own plain types always serialise.
            serde_json::to_vec(&answer).unwrap_or_default()
        })
    }
}

/// Whether a registration by `incarnation_id` is a new process after one
/// that stopped without finishing a controlled shutdown.
fn restarted_uncleanly(existing: &super::quorum::image::BrokerState, incarnation_id: Uuid) -> bool {
    existing.registration.incarnation_id != incarnation_id && !existing.shut_down_cleanly
}

/// Broker `broker_id` must be registered with `broker_epoch`.
fn check_epoch(
    image: &MetadataImage,
    broker_id: NodeId,
    broker_epoch: i64,
) -> Result<&super::quorum::image::BrokerState, RecordError> {
    let state = image.broker(broker_id).ok_or_else(|| {
        err(
            ErrorCode::BrokerIdNotRegistered,
            format!("broker {broker_id} is not registered"),
        )
    })?;
    if state.registration.broker_epoch != broker_epoch {
        return Err(err(
            ErrorCode::StaleBrokerEpoch,
            format!(
                "broker {broker_id} is at epoch {}, not {broker_epoch}",
                state.registration.broker_epoch
            ),
        ));
    }
    Ok(state)
}

fn record_error(e: super::ApiError) -> RecordError {
    RecordError::new(e.code, e.message)
}

fn config_record(topic: &str, key: &str, value: Option<&String>) -> MetadataRecord {
    MetadataRecord::Config(ConfigRecord {
        resource_type: ConfigResourceType::Topic,
        resource_name: topic.to_string(),
        key: key.to_string(),
        value: value.cloned(),
    })
}

/// One decision per asked partition of a request that changes partitions
/// one by one (ElectLeaders, AlterPartitionReassignments): the records of
/// the changes and each partition's outcome, in request order; an unknown
/// partition is UNKNOWN_TOPIC_OR_PARTITION, `Ok(None)` a success that
/// changes nothing.
fn partition_changes<T>(
    image: &MetadataImage,
    asked: impl IntoIterator<Item = ((String, i32), T)>,
    mut decide: impl FnMut(
        Uuid,
        i32,
        &PartitionImage,
        T,
    ) -> Result<Option<PartitionChange>, reassignment::Refusal>,
) -> (Vec<MetadataRecord>, Vec<PartitionOutcome>) {
    let mut records = Vec::new();
    let mut outcomes = Vec::new();
    for ((topic, partition), arg) in asked {
        let found = image
            .topic_ids
            .get(&topic)
            .and_then(|id| Some((*id, image.partition(*id, partition)?)));
        let decided = match found {
            None => Err((
                ErrorCode::UnknownTopicOrPartition,
                format!("no partition {partition} of {topic}"),
            )),
            Some((topic_id, p)) => decide(topic_id, partition, p, arg),
        };
        let (error_code, message) = match decided {
            Ok(change) => {
                records.extend(change.map(MetadataRecord::PartitionChange));
                (ErrorCode::None.code(), None)
            }
            Err((code, message)) => (code.code(), Some(message)),
        };
        outcomes.push(PartitionOutcome {
            topic,
            partition,
            error_code,
            message,
        });
    }
    (records, outcomes)
}

/// Manual assignments: each a valid replica list of registered brokers,
/// all of one length (`rf` when the topic has one already), as KRaft checks.
fn check_assignments(
    image: &MetadataImage,
    assignments: &[Vec<NodeId>],
    rf: Option<usize>,
) -> Result<(), RecordError> {
    let registered = |b: NodeId| image.broker(b).is_some();
    let expected = rf.or_else(|| assignments.first().map(Vec::len));
    for replicas in assignments {
        reassignment::check_manual_assignment(replicas, &registered)
            .map_err(|(code, message)| err(code, message))?;
        if let Some(expected) = expected.filter(|n| *n != replicas.len()) {
            return Err(err(
                ErrorCode::InvalidReplicaAssignment,
                format!(
                    "The manual partition assignment includes a partition with {} replica(s), but this is inconsistent with previous partitions, which have {expected} replica(s).",
                    replicas.len()
                ),
            ));
        }
    }
    Ok(())
}

/// A new partition on replicas the user (or the assignment above) chose:
/// its ISR are those that can lead now, the first of them leads; with none,
/// it is refused as KRaft refuses it.
fn manual_partition(
    topic_id: Uuid,
    partition: i32,
    replicas: &[NodeId],
    can_lead: &dyn Fn(NodeId) -> bool,
) -> Result<MetadataRecord, RecordError> {
    let isr: Vec<NodeId> = replicas.iter().copied().filter(|r| can_lead(*r)).collect();
    let Some(&leader) = isr.first() else {
        return Err(err(
            ErrorCode::InvalidReplicaAssignment,
            format!("All brokers specified in the manual partition assignment for partition {partition} are fenced or in controlled shutdown."),
        ));
    };
    Ok(MetadataRecord::Partition(PartitionRecord {
        leader,
        isr,
        ..new_partition(topic_id, partition, replicas.to_vec())
    }))
}

fn new_partition(topic_id: Uuid, partition: i32, replicas: Vec<NodeId>) -> PartitionRecord {
    PartitionRecord {
        topic_id,
        partition,
        leader: replicas[0],
        isr: replicas.clone(),
        replicas,
        elr: Vec::new(),
        leader_epoch: 0,
        partition_epoch: 0,
    }
}

/// Unfenced brokers in the order replicas are dealt from: racks alternate
/// (a, b, c, a, b, c, ...) so consecutive replicas land in different racks,
/// as Kafka's rack-aware assignment does.
pub fn assignable_brokers(image: &MetadataImage) -> Vec<NodeId> {
    let mut by_rack: BTreeMap<Option<&str>, Vec<NodeId>> = BTreeMap::new();
    for b in image.unfenced_brokers() {
        by_rack
            .entry(b.registration.rack.as_deref())
            .or_default()
            .push(b.registration.broker_id);
    }
    let racks: Vec<Vec<NodeId>> = by_rack.into_values().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while racks.iter().any(|r| i < r.len()) {
        out.extend(racks.iter().filter_map(|rack| rack.get(i)));
        i += 1;
    }
    out
}

/// Replicas of `partition`: `rf` consecutive brokers from a per-topic
/// random start, shifted by the partition so leaders spread evenly.
fn assign(brokers: &[NodeId], start: usize, partition: i32, rf: usize) -> Vec<NodeId> {
    let n = brokers.len();
    let first = (start + usize::try_from(partition).unwrap_or(0)) % n;
    (0..rf).map(|j| brokers[(first + j) % n]).collect()
}

/// Whether KIP-966's eligible leader replicas are kept (Kafka's
/// `eligible.leader.replicas.version=1`, the default of new 4.1 clusters).
/// Off, the last ISR member stays (leaderless) in the ISR instead.
const ELIGIBLE_LEADER_REPLICAS: bool = true;

/// How the controller changes leaders and ISRs: with eligible leader
/// replicas or not, with unclean election or not, and the cluster's
/// `min.insync.replicas` for topics without their own.
#[derive(Clone, Copy, Debug)]
struct ElectionRules {
    elr: bool,
    unclean: bool,
    default_min_isr: i32,
}

impl ElectionRules {
    /// The topic's `min.insync.replicas` (its override, else the broker's),
    /// resolved as the brokers' log configs resolve it.
    fn min_isr(&self, image: &MetadataImage, topic: &str) -> usize {
        let value = image
            .topic_configs
            .get(topic)
            .and_then(|c| c.get(MIN_INSYNC_REPLICAS))
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(i64::from(self.default_min_isr));
        usize::try_from(value.clamp(1, i64::from(i32::MAX))).unwrap_or(1)
    }
}

/// A partition's leadership after a change, before it becomes a record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NextPartition {
    leader: NodeId,
    isr: Vec<NodeId>,
    elr: Vec<NodeId>,
    last_known_elr: Vec<NodeId>,
}

/// The members of `set` in replica order (records stay deterministic).
fn in_replica_order(p: &PartitionImage, set: &BTreeSet<NodeId>) -> Vec<NodeId> {
    p.replicas
        .iter()
        .copied()
        .filter(|r| set.contains(r))
        .collect()
}

/// Decides a partition's leader, ISR and eligible leader replicas once its
/// ISR is to become `target_isr`, as KRaft's partition change builder does
/// under KIP-966:
/// - ISR at or above min.insync.replicas: no ELR (nor last known ELR);
/// - below it: every replica that was in the ISR or the ELR and is not in
///   the new ISR is in the ELR (the high watermark cannot have advanced
///   since it was in sync, so it holds every committed record), except a
///   broker known to have stopped uncleanly (`unclean_shutdown`), which
///   goes to the last known ELR instead;
/// - a leader is kept while valid, else the first `acceptable` replica of
///   the ISR; with an empty ISR, the first acceptable ELR member, which then
///   forms the ISR alone and leaves the ELR (the rest of the ELR stays);
/// - with neither, the last known leader if it is back (Kafka 4's fallback,
///   what keeping the last ISR member did before), else an unclean election
///   if enabled (which clears the ELR), else no leader;
/// - an ISR emptied by this change records its last leader as the last
///   known ELR; any elected leader clears it.
///
/// Without ELR the last ISR member stays in the ISR, leaderless.
fn next_partition(
    p: &PartitionImage,
    target_isr: Vec<NodeId>,
    min_isr: usize,
    unclean_shutdown: Option<NodeId>,
    acceptable: &dyn Fn(NodeId) -> bool,
    rules: ElectionRules,
) -> NextPartition {
    let mut isr = target_isr;
    if !rules.elr && isr.is_empty() {
        isr = p.isr.clone();
    }
    let (mut elr, mut last_known_elr) = if !rules.elr || isr.len() >= min_isr {
        (Vec::new(), Vec::new())
    } else {
        let in_isr: BTreeSet<NodeId> = isr.iter().copied().collect();
        let candidates: BTreeSet<NodeId> = p.elr.iter().chain(&p.isr).copied().collect();
        let elr: BTreeSet<NodeId> = candidates
            .iter()
            .copied()
            .filter(|r| !in_isr.contains(r) && Some(*r) != unclean_shutdown)
            .collect();
        let last_known: BTreeSet<NodeId> = candidates
            .iter()
            .chain(&p.last_known_elr)
            .copied()
            .filter(|r| !in_isr.contains(r) && !elr.contains(r))
            .collect();
        (in_replica_order(p, &elr), in_replica_order(p, &last_known))
    };
    let valid =
        |r: NodeId| acceptable(r) && (isr.contains(&r) || (isr.is_empty() && elr.contains(&r)));
    let mut unclean_election = false;
    let leader = if p.leader != NO_LEADER && valid(p.leader) {
        p.leader
    } else if let Some(r) = p.replicas.iter().copied().find(|r| valid(*r)) {
        r
    } else if let Some(r) = p.last_known_elr.first().copied().filter(|r| {
        rules.elr
            && isr.is_empty()
            && elr.is_empty()
            && p.last_known_elr.len() == 1
            && acceptable(*r)
    }) {
        unclean_election = true;
        r
    } else if let Some(r) = p
        .replicas
        .iter()
        .copied()
        .find(|r| rules.unclean && acceptable(*r))
    {
        unclean_election = true;
        r
    } else {
        NO_LEADER
    };
    if unclean_election {
        isr = vec![leader];
        elr.clear();
        last_known_elr.clear();
    } else if leader != NO_LEADER && elr.contains(&leader) {
        isr = vec![leader];
        elr.retain(|r| *r != leader);
    }
    if rules.elr {
        if isr.is_empty() && !p.isr.is_empty() && p.leader != NO_LEADER {
            last_known_elr = vec![p.leader];
        } else if leader != NO_LEADER {
            last_known_elr.clear();
        }
    }
    NextPartition {
        leader,
        isr,
        elr,
        last_known_elr,
    }
}

/// The record taking partition `p` to `next`, if anything changes. The
/// leader (and, with `always_isr`, the ISR) is always written; ELR fields
/// only when they change.
fn change_to(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionImage,
    next: NextPartition,
    always_isr: bool,
) -> Option<PartitionChange> {
    let same = |a: &[NodeId], b: &[NodeId]| {
        a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
    };
    let elr_changed = !same(&next.elr, &p.elr);
    let last_known_changed = !same(&next.last_known_elr, &p.last_known_elr);
    if next.leader == p.leader && next.isr == p.isr && !elr_changed && !last_known_changed {
        return None;
    }
    let isr_changed = next.isr != p.isr;
    Some(PartitionChange {
        topic_id,
        partition,
        leader: Some(next.leader),
        isr: (always_isr || isr_changed).then_some(next.isr),
        elr: elr_changed.then_some(next.elr),
        last_known_elr: last_known_changed.then_some(next.last_known_elr),
        ..PartitionChange::default()
    })
}

/// Partition changes when `gone` is fenced or shuts down: it leaves every
/// ISR it is in, going to the ELR where the ISR falls below
/// min.insync.replicas (unless it stopped uncleanly: `unclean_shutdown`,
/// which also takes it out of every ELR), and partitions it led get a new
/// leader from the remaining ISR, else from the ELR (see [`next_partition`]).
fn partition_moves(
    image: &MetadataImage,
    gone: NodeId,
    rules: ElectionRules,
    unclean_shutdown: bool,
) -> Vec<MetadataRecord> {
    let alive = |b: NodeId| b != gone && image.broker(b).is_some_and(|s| !s.fenced);
    let mut records = Vec::new();
    for topic in image.topics.values() {
        let min_isr = rules.min_isr(image, &topic.name);
        for (index, p) in &topic.partitions {
            let in_elr = unclean_shutdown && p.elr.contains(&gone);
            if !p.isr.contains(&gone) && p.leader != gone && !in_elr {
                continue;
            }
            let remaining: Vec<NodeId> = p.isr.iter().copied().filter(|r| *r != gone).collect();
            let next = next_partition(
                p,
                remaining,
                min_isr,
                unclean_shutdown.then_some(gone),
                &alive,
                rules,
            );
            if let Some(change) = change_to(topic.id, *index, p, next, true) {
                records.push(MetadataRecord::PartitionChange(change));
            }
        }
    }
    records
}

/// A preferred-leader election for one partition: its first replica
/// becomes leader when it is in the ISR and `can_lead` (live, not shutting
/// down); ELECTION_NOT_NEEDED when it leads already.
fn preferred_election(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionImage,
    can_lead: &dyn Fn(NodeId) -> bool,
) -> Result<PartitionChange, (ErrorCode, String)> {
    let Some(&preferred) = p.replicas.first() else {
        return Err((ErrorCode::PreferredLeaderNotAvailable, "no replicas".into()));
    };
    if p.leader == preferred {
        return Err((
            ErrorCode::ElectionNotNeeded,
            format!("the preferred replica {preferred} leads already"),
        ));
    }
    if !p.isr.contains(&preferred) || !can_lead(preferred) {
        return Err((
            ErrorCode::PreferredLeaderNotAvailable,
            format!(
                "the preferred replica {preferred} is {}",
                if p.isr.contains(&preferred) {
                    "not live"
                } else {
                    "not in the ISR"
                }
            ),
        ));
    }
    Ok(PartitionChange {
        topic_id,
        partition,
        leader: Some(preferred),
        expect_partition_epoch: Some(p.partition_epoch),
        ..PartitionChange::default()
    })
}

/// An unclean election for one partition (kafka-leader-election
/// --election-type unclean): only a leaderless partition gets one, by the
/// same rules as a failover with `unclean.leader.election.enable` on (ISR,
/// then eligible replicas, then any live replica).
fn unclean_election(
    topic_id: Uuid,
    partition: i32,
    p: &PartitionImage,
    min_isr: usize,
    can_lead: &dyn Fn(NodeId) -> bool,
    rules: ElectionRules,
) -> Result<PartitionChange, (ErrorCode, String)> {
    if p.leader != NO_LEADER {
        return Err((
            ErrorCode::ElectionNotNeeded,
            format!("replica {} leads", p.leader),
        ));
    }
    let rules = ElectionRules {
        unclean: true,
        ..rules
    };
    let next = next_partition(p, p.isr.clone(), min_isr, None, can_lead, rules);
    if next.leader == NO_LEADER {
        return Err((
            ErrorCode::EligibleLeadersNotAvailable,
            "no replica of the partition is live".into(),
        ));
    }
    change_to(topic_id, partition, p, next, true)
        .map(|c| PartitionChange {
            expect_partition_epoch: Some(p.partition_epoch),
            ..c
        })
        .ok_or_else(|| (ErrorCode::ElectionNotNeeded, "nothing to change".into()))
}

/// The partitions to move back to their preferred replica: those of every
/// broker for which more than `percentage`% of the partitions it is
/// preferred for are led by another replica (Kafka's per-broker imbalance
/// ratio), restricted to the ones not led by their preferred replica.
fn imbalanced_partitions(image: &MetadataImage, percentage: u32) -> Vec<(String, i32)> {
    let mut preferred_for: BTreeMap<NodeId, Vec<(String, i32, bool)>> = BTreeMap::new();
    for topic in image.topics.values() {
        for (index, p) in &topic.partitions {
            if let Some(&preferred) = p.replicas.first() {
                preferred_for.entry(preferred).or_default().push((
                    topic.name.clone(),
                    *index,
                    p.leader == preferred,
                ));
            }
        }
    }
    let mut out = Vec::new();
    for partitions in preferred_for.values() {
        let not_led = partitions.iter().filter(|(.., led)| !led).count();
        if not_led * 100 > partitions.len() * percentage as usize {
            out.extend(
                partitions
                    .iter()
                    .filter(|(.., led)| !led)
                    .map(|(t, i, _)| (t.clone(), *i)),
            );
        }
    }
    out
}

/// Partitions left leaderless that broker `back` (being unfenced) can lead
/// again: it is in their ISR, or in their ELR with the ISR empty, or their
/// last known leader with no ISR or ELR left (or, with unclean election,
/// any replica of a partition whose ISR is all dead).
fn elections_on_return(
    image: &MetadataImage,
    back: NodeId,
    rules: ElectionRules,
) -> Vec<MetadataRecord> {
    let acceptable = |b: NodeId| b == back || image.broker(b).is_some_and(|s| !s.fenced);
    let mut records = Vec::new();
    for topic in image.topics.values() {
        let min_isr = rules.min_isr(image, &topic.name);
        for (index, p) in &topic.partitions {
            if p.leader != NO_LEADER || !p.replicas.contains(&back) {
                continue;
            }
            let next = next_partition(p, p.isr.clone(), min_isr, None, &acceptable, rules);
            if next.leader == NO_LEADER {
                continue;
            }
            if let Some(change) = change_to(topic.id, *index, p, next, false) {
                records.push(MetadataRecord::PartitionChange(change));
            }
        }
    }
    records
}

/// Clears the ELR state of `topic`'s partitions, as Kafka does when the
/// topic's min.insync.replicas changes (the ELR was judged against the old
/// value).
fn elr_cleared(topic: &super::quorum::image::TopicImage) -> Vec<MetadataRecord> {
    topic
        .partitions
        .iter()
        .filter(|(_, p)| !p.elr.is_empty() || !p.last_known_elr.is_empty())
        .map(|(index, _)| {
            MetadataRecord::PartitionChange(PartitionChange {
                topic_id: topic.id,
                partition: *index,
                elr: Some(Vec::new()),
                last_known_elr: Some(Vec::new()),
                ..PartitionChange::default()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image with brokers `ids` (racks by the given letters), `fenced`
    /// among them fenced, and one topic of `partitions` assigned in order.
    fn image(ids: &[(NodeId, &str)], fenced: &[NodeId]) -> MetadataImage {
        let mut image = MetadataImage::default();
        for (id, rack) in ids {
            image
                .apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                    broker_id: *id,
                    broker_epoch: 1,
                    incarnation_id: Uuid::new_v4(),
                    listeners: Vec::new(),
                    rack: Some(rack.to_string()),
                    log_dirs: Vec::new(),
                }))
                .unwrap();
            if !fenced.contains(id) {
                image
                    .apply(&MetadataRecord::UnfenceBroker {
                        broker_id: *id,
                        broker_epoch: 1,
                    })
                    .unwrap();
            }
        }
        image
    }

    fn with_partition(
        image: &mut MetadataImage,
        replicas: &[NodeId],
        isr: &[NodeId],
        leader: NodeId,
    ) -> Uuid {
        let topic_id = Uuid::new_v4();
        image
            .apply(&MetadataRecord::Topic {
                name: "t".into(),
                topic_id,
            })
            .unwrap();
        image
            .apply(&MetadataRecord::Partition(PartitionRecord {
                topic_id,
                partition: 0,
                replicas: replicas.to_vec(),
                isr: isr.to_vec(),
                elr: Vec::new(),
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            }))
            .unwrap();
        topic_id
    }

    /// Eligible leader replicas on or off, unclean election on or off,
    /// min.insync.replicas 1 unless a topic says otherwise.
    fn rules(elr: bool, unclean: bool) -> ElectionRules {
        ElectionRules {
            elr,
            unclean,
            default_min_isr: 1,
        }
    }

    const ELR: ElectionRules = ElectionRules {
        elr: true,
        unclean: false,
        default_min_isr: 2,
    };

    /// Topic `t` with min.insync.replicas = `min_isr`.
    fn with_min_isr(image: &mut MetadataImage, min_isr: i32) {
        image
            .apply(&config_record(
                "t",
                MIN_INSYNC_REPLICAS,
                Some(&min_isr.to_string()),
            ))
            .unwrap();
    }

    fn set_fenced(image: &mut MetadataImage, broker_id: NodeId, fenced: bool) {
        let record = if fenced {
            MetadataRecord::FenceBroker {
                broker_id,
                broker_epoch: 1,
            }
        } else {
            MetadataRecord::UnfenceBroker {
                broker_id,
                broker_epoch: 1,
            }
        };
        image.apply(&record).unwrap();
    }

    /// Applies `records` and answers the partition's (leader, isr, elr,
    /// last known elr).
    fn applied(
        image: &mut MetadataImage,
        t: Uuid,
        records: &[MetadataRecord],
    ) -> (NodeId, Vec<NodeId>, Vec<NodeId>, Vec<NodeId>) {
        image.apply_batch(records).unwrap();
        let p = image.partition(t, 0).unwrap();
        (
            p.leader,
            p.isr.clone(),
            p.elr.clone(),
            p.last_known_elr.clone(),
        )
    }

    fn change(records: &[MetadataRecord]) -> Option<&PartitionChange> {
        records.iter().find_map(|r| match r {
            MetadataRecord::PartitionChange(c) => Some(c),
            _ => None,
        })
    }

    #[test]
    fn replicas_alternate_racks_and_leaders_spread() {
        let image = image(&[(1, "a"), (2, "a"), (3, "b"), (4, "c"), (5, "b")], &[5]);
        // Fenced brokers get nothing; racks alternate a, b, c, a.
        assert_eq!(assignable_brokers(&image), vec![1, 3, 4, 2]);
        let brokers = assignable_brokers(&image);
        let mut leaders = BTreeMap::new();
        for p in 0..8 {
            let replicas = assign(&brokers, 7, p, 3);
            assert_eq!(replicas.iter().collect::<BTreeSet<_>>().len(), 3);
            *leaders.entry(replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(
            leaders.values().copied().collect::<Vec<_>>(),
            vec![2, 2, 2, 2]
        );
    }

    #[test]
    fn a_lost_leader_is_replaced_from_the_isr_in_replica_order() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1, 2, 3], 1);
        let records = partition_moves(&img, 1, rules(true, false), false);
        let c = change(&records).unwrap();
        assert_eq!(
            (c.topic_id, c.leader, c.isr.clone()),
            (t, Some(2), Some(vec![2, 3]))
        );
        // A follower lost: it leaves the ISR, the leader stays.
        let records = partition_moves(&img, 3, rules(true, false), false);
        let c = change(&records).unwrap();
        assert_eq!((c.leader, c.isr.clone()), (Some(1), Some(vec![1, 2])));
        // A broker outside the ISR and not leading changes nothing.
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        with_partition(&mut img, &[1, 2, 3], &[1, 2], 1);
        assert!(partition_moves(&img, 3, rules(true, false), false).is_empty());
    }

    #[test]
    fn the_last_isr_member_keeps_the_partition_unless_unclean_election_is_on() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        with_partition(&mut img, &[1, 2, 3], &[1], 1);
        // Without eligible leader replicas (with them, see below).
        let records = partition_moves(&img, 1, rules(false, false), false);
        let c = change(&records).unwrap();
        assert_eq!((c.leader, c.isr.clone()), (Some(NO_LEADER), Some(vec![1])));
        // With unclean election a live out-of-sync replica takes over alone.
        let records = partition_moves(&img, 1, rules(false, true), false);
        let c = change(&records).unwrap();
        assert_eq!((c.leader, c.isr.clone()), (Some(2), Some(vec![2])));
    }

    #[test]
    fn a_returning_isr_member_leads_a_leaderless_partition() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[1]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1], NO_LEADER);
        let records = elections_on_return(&img, 1, rules(true, false));
        let c = change(&records).unwrap();
        assert_eq!((c.topic_id, c.leader, c.isr.clone()), (t, Some(1), None));
        // Not in the ISR: only unclean election lets it lead.
        assert!(elections_on_return(&img, 2, rules(true, false)).is_empty());
        let records = elections_on_return(&img, 2, rules(true, true));
        assert_eq!(change(&records).unwrap().isr, Some(vec![2]));
    }

    #[test]
    fn an_isr_change_with_a_stale_partition_epoch_is_refused_by_the_image() {
        let mut img = image(&[(1, "a"), (2, "b")], &[]);
        let t = with_partition(&mut img, &[1, 2], &[1, 2], 1);
        let shrink = |epoch| {
            MetadataRecord::PartitionChange(PartitionChange {
                topic_id: t,
                partition: 0,
                isr: Some(vec![1]),
                expect_partition_epoch: Some(epoch),
                ..PartitionChange::default()
            })
        };
        img.apply(&shrink(0)).unwrap();
        let err = img.apply(&shrink(0)).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidUpdateVersion);
        assert_eq!(img.partition(t, 0).unwrap().partition_epoch, 1);
    }

    #[test]
    fn min_isr_is_the_topics_override_else_the_brokers() {
        let mut img = image(&[(1, "a")], &[]);
        with_partition(&mut img, &[1], &[1], 1);
        assert_eq!(ELR.min_isr(&img, "t"), 2);
        with_min_isr(&mut img, 3);
        assert_eq!(ELR.min_isr(&img, "t"), 3);
        assert_eq!(ELR.min_isr(&img, "other"), 2);
    }

    #[test]
    fn replicas_leaving_the_isr_below_min_isr_become_eligible_leaders() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1, 2, 3], 1);
        // 3 leaves: the ISR is still at min.insync.replicas 2, no ELR.
        set_fenced(&mut img, 3, true);
        let records = partition_moves(&img, 3, ELR, false);
        assert_eq!(change(&records).unwrap().elr, None);
        assert_eq!(
            applied(&mut img, t, &records),
            (1, vec![1, 2], vec![], vec![])
        );
        // 2 leaves (a controlled shutdown moves it the same way): below
        // min ISR, so it is eligible; 3 left while the ISR was big enough.
        let records = partition_moves(&img, 2, ELR, false);
        assert_eq!(
            applied(&mut img, t, &records),
            (1, vec![1], vec![2], vec![])
        );
        // The leader, the last ISR member, goes too: the ISR empties, no
        // live eligible leader is left (2 is still up only in this test,
        // so fence it first), and 1 is the last known leader.
        set_fenced(&mut img, 2, true);
        let records = partition_moves(&img, 1, ELR, false);
        assert_eq!(
            applied(&mut img, t, &records),
            (NO_LEADER, vec![], vec![1, 2], vec![1])
        );
        assert_eq!(img.partition(t, 0).unwrap().leader_epoch, 1);
        set_fenced(&mut img, 1, true);
        // 3 (never eligible) comes back: nothing to lead.
        assert!(elections_on_return(&img, 3, ELR).is_empty());
        // 2 comes back: it leads alone, 1 stays eligible.
        let records = elections_on_return(&img, 2, ELR);
        assert_eq!(
            applied(&mut img, t, &records),
            (2, vec![2], vec![1], vec![])
        );
        assert_eq!(img.partition(t, 0).unwrap().leader_epoch, 2);
    }

    #[test]
    fn a_live_eligible_replica_takes_over_from_a_lost_last_isr_member() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1, 2], 1);
        let records = partition_moves(&img, 2, ELR, false);
        assert_eq!(
            applied(&mut img, t, &records),
            (1, vec![1], vec![2], vec![])
        );
        // 2 is out of the ISR but alive (it lagged, say): 1 dies, 2 leads.
        let records = partition_moves(&img, 1, ELR, false);
        assert_eq!(
            applied(&mut img, t, &records),
            (2, vec![2], vec![1], vec![])
        );
    }

    #[test]
    fn the_isr_back_at_min_isr_clears_the_elr_and_a_rejoining_replica_leaves_it() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1, 2, 3], 1);
        with_min_isr(&mut img, 3);
        let records = partition_moves(&img, 3, ELR, false);
        assert_eq!(
            applied(&mut img, t, &records),
            (1, vec![1, 2], vec![3], vec![])
        );
        let records = partition_moves(&img, 2, ELR, false);
        assert_eq!(
            applied(&mut img, t, &records),
            (1, vec![1], vec![2, 3], vec![])
        );
        let rules = ELR;
        let leader = |r: NodeId| r == 1;
        // 2 rejoins (AlterPartition): it leaves the ELR, 3 stays.
        let p = img.partition(t, 0).unwrap().clone();
        let next = next_partition(&p, vec![1, 2], 3, None, &leader, rules);
        assert_eq!((next.leader, next.elr), (1, vec![3]));
        // At min.insync.replicas the ELR empties.
        with_min_isr(&mut img, 2);
        let next = next_partition(&p, vec![1, 2], 2, None, &leader, rules);
        assert_eq!(
            (next.elr.clone(), next.last_known_elr.clone()),
            (vec![], vec![])
        );
        let change = change_to(t, 0, &p, next, false).unwrap();
        assert_eq!(change.elr, Some(vec![]));
        assert_eq!(change.isr, Some(vec![1, 2]));
    }

    #[test]
    fn an_unclean_shutdown_removes_a_broker_from_every_elr() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[2, 3]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1], 1);
        img.apply(&MetadataRecord::PartitionChange(PartitionChange {
            topic_id: t,
            partition: 0,
            elr: Some(vec![2, 3]),
            ..PartitionChange::default()
        }))
        .unwrap();
        // 2 restarted after a crash: out of the ELR (the last known ELR
        // only matters while no leader is left, so it stays empty here).
        let records = partition_moves(&img, 2, ELR, true);
        let c = change(&records).unwrap();
        assert_eq!((c.leader, c.isr.clone()), (Some(1), Some(vec![1])));
        assert_eq!(
            applied(&mut img, t, &records),
            (1, vec![1], vec![3], vec![])
        );
        // A crashed ISR member does not go to the ELR either.
        let records = partition_moves(&img, 1, ELR, true);
        assert_eq!(
            applied(&mut img, t, &records),
            (NO_LEADER, vec![], vec![3], vec![1])
        );

        // Which registrations count as unclean restarts.
        let mut state = img.broker(2).unwrap().clone();
        let same = state.registration.incarnation_id;
        assert!(!restarted_uncleanly(&state, same), "the same process");
        assert!(
            restarted_uncleanly(&state, Uuid::new_v4()),
            "fenced by its session"
        );
        state.shut_down_cleanly = true;
        assert!(
            !restarted_uncleanly(&state, Uuid::new_v4()),
            "after a controlled shutdown"
        );
    }

    #[test]
    fn with_no_isr_and_no_live_eligible_replica_the_partition_waits() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[2]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1], 1);
        img.apply(&MetadataRecord::PartitionChange(PartitionChange {
            topic_id: t,
            partition: 0,
            elr: Some(vec![2]),
            ..PartitionChange::default()
        }))
        .unwrap();
        // 3 is live but never was eligible: no clean leader.
        let records = partition_moves(&img, 1, ELR, false);
        assert_eq!(
            applied(&mut img, t, &records),
            (NO_LEADER, vec![], vec![1, 2], vec![1])
        );
        set_fenced(&mut img, 1, true);
        assert!(elections_on_return(&img, 3, ELR).is_empty());
        // Unclean election (when enabled) takes 3 and forgets the ELR.
        let unclean = ElectionRules {
            unclean: true,
            ..ELR
        };
        let records = elections_on_return(&img, 3, unclean);
        assert_eq!(applied(&mut img, t, &records), (3, vec![3], vec![], vec![]));
    }

    #[test]
    fn the_last_known_leader_leads_again_when_no_isr_or_elr_is_left() {
        // The KIP's fallback for what the last ISR member staying used to
        // give: 1, the last leader, crashed and restarted (so it left the
        // ELR); once back, nothing better exists.
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[1, 2, 3]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1], 1);
        img.apply(&MetadataRecord::PartitionChange(PartitionChange {
            topic_id: t,
            partition: 0,
            leader: Some(NO_LEADER),
            isr: Some(vec![]),
            elr: Some(vec![]),
            last_known_elr: Some(vec![1]),
            ..PartitionChange::default()
        }))
        .unwrap();
        assert!(elections_on_return(&img, 2, ELR).is_empty());
        let records = elections_on_return(&img, 1, ELR);
        assert_eq!(applied(&mut img, t, &records), (1, vec![1], vec![], vec![]));
    }

    #[test]
    fn the_last_isr_member_goes_to_the_elr_when_eligible_leader_replicas_are_on() {
        // The ELR-on counterpart of the test above that keeps it in the ISR.
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1], 1);
        let records = partition_moves(&img, 1, rules(true, false), false);
        assert_eq!(
            applied(&mut img, t, &records),
            (NO_LEADER, vec![], vec![1], vec![1])
        );
        // It leads again from the ELR when it returns.
        set_fenced(&mut img, 1, true);
        let records = elections_on_return(&img, 1, rules(true, false));
        assert_eq!(applied(&mut img, t, &records), (1, vec![1], vec![], vec![]));
    }

    #[test]
    fn a_min_isr_change_clears_the_elr() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[]);
        let t = with_partition(&mut img, &[1, 2, 3], &[1, 2], 1);
        let records = partition_moves(&img, 2, ELR, false);
        applied(&mut img, t, &records);
        let topic = img.topics[&t].clone();
        let records = elr_cleared(&topic);
        assert_eq!(applied(&mut img, t, &records), (1, vec![1], vec![], vec![]));
        assert!(elr_cleared(&img.topics[&t]).is_empty());
    }

    #[test]
    fn a_preferred_election_needs_the_first_replica_in_the_isr_and_live() {
        // (image, topic id, partition) of one partition; broker 3 fenced.
        let one = |replicas: &[NodeId], isr: &[NodeId], leader: NodeId| {
            let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[3]);
            let id = with_partition(&mut img, replicas, isr, leader);
            let p = img.partition(id, 0).unwrap().clone();
            (img, id, p)
        };
        let (img, id, p) = one(&[3, 1, 2], &[1, 2, 3], 1);
        let live = |b: NodeId| img.broker(b).is_some_and(|s| !s.fenced);
        // Fenced preferred replica: not available.
        let refused = preferred_election(id, 0, &p, &live).unwrap_err();
        assert_eq!(
            refused.0,
            ErrorCode::PreferredLeaderNotAvailable,
            "{refused:?}"
        );
        // Live and in the ISR: it becomes leader, guarded by the epoch.
        let change = preferred_election(id, 0, &p, &|_| true).unwrap();
        assert_eq!(change.leader, Some(3));
        assert_eq!(change.expect_partition_epoch, Some(p.partition_epoch));
        assert_eq!((change.isr, change.elr), (None, None));
        // Out of the ISR: not available either.
        let (_, id, p) = one(&[2, 1], &[1], 1);
        let refused = preferred_election(id, 0, &p, &|_| true).unwrap_err();
        assert!(refused.1.contains("not in the ISR"), "{refused:?}");
        // Already leading: not needed.
        let (_, id, p) = one(&[1, 2], &[1, 2], 1);
        let refused = preferred_election(id, 0, &p, &|_| true).unwrap_err();
        assert_eq!(refused.0, ErrorCode::ElectionNotNeeded);
    }

    #[test]
    fn an_unclean_election_only_gives_leaderless_partitions_a_live_replica() {
        let mut img = image(&[(1, "a"), (2, "b"), (3, "c")], &[1]);
        let leaderless = with_partition(&mut img, &[1, 2, 3], &[1], NO_LEADER);
        let p = img.partition(leaderless, 0).unwrap().clone();
        let live = |b: NodeId| img.broker(b).is_some_and(|s| !s.fenced);
        let change = unclean_election(leaderless, 0, &p, 2, &live, ELR).unwrap();
        assert_eq!(change.leader, Some(2), "the first live replica");
        assert_eq!(change.isr, Some(vec![2]));
        let nobody = unclean_election(leaderless, 0, &p, 2, &|_| false, ELR).unwrap_err();
        assert_eq!(nobody.0, ErrorCode::EligibleLeadersNotAvailable);
        let mut img = image(&[(2, "b"), (3, "c")], &[]);
        let led = with_partition(&mut img, &[2, 3], &[2, 3], 2);
        let p = img.partition(led, 0).unwrap().clone();
        let refused = unclean_election(led, 0, &p, 2, &|_| true, ELR).unwrap_err();
        assert_eq!(refused.0, ErrorCode::ElectionNotNeeded);
    }

    #[test]
    fn leader_imbalance_is_measured_per_preferred_broker() {
        let mut img = image(&[(1, "a"), (2, "b")], &[]);
        // Broker 1 is preferred for ten partitions and leads nine of them:
        // 10% not led is not above a 10% threshold.
        let mut topics = Vec::new();
        for i in 0..10 {
            let id = Uuid::new_v4();
            let name = format!("t{i}");
            img.apply(&MetadataRecord::Topic {
                name: name.clone(),
                topic_id: id,
            })
            .unwrap();
            let leader = if i == 0 { 2 } else { 1 };
            img.apply(&MetadataRecord::Partition(PartitionRecord {
                topic_id: id,
                partition: 0,
                replicas: vec![1, 2],
                isr: vec![1, 2],
                elr: Vec::new(),
                leader,
                leader_epoch: 0,
                partition_epoch: 0,
            }))
            .unwrap();
            topics.push(name);
        }
        assert!(imbalanced_partitions(&img, 10).is_empty());
        // At 5% it is imbalanced: only the partition led elsewhere moves.
        assert_eq!(imbalanced_partitions(&img, 5), vec![("t0".to_string(), 0)]);
    }
}
