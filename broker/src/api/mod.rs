//! The Kafka APIs `sluiced` serves, one module per API named after it. Each
//! module declares its supported version range and a `handle` function; the
//! `registry!` list below is the single place that ties an API key to its
//! module, and it is also what ApiVersions answers, so the advertised ranges
//! cannot drift from what is implemented.

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::LocalBoxFuture;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use sluice_protocol::ErrorCode;

use crate::cluster::ApiError;
use crate::log::read::FileRange;
use crate::metrics::FetchFrom;
use crate::shard::Shard;

pub mod add_offsets_to_txn;
pub mod add_partitions_to_txn;
pub mod alter_client_quotas;
pub mod alter_configs;
pub mod alter_partition_reassignments;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_groups;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_client_quotas;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_groups;
pub mod describe_producers;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod describe_transactions;
pub mod describe_user_scram_credentials;
pub mod elect_leaders;
pub mod end_txn;
pub mod fetch;
pub mod find_coordinator;
pub mod heartbeat;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod join_group;
pub mod leave_group;
pub mod list_groups;
pub mod list_offsets;
pub mod list_partition_reassignments;
pub mod list_transactions;
pub mod metadata;
pub mod mutation_quota;
pub mod offset_commit;
pub mod offset_delete;
pub mod offset_fetch;
pub mod offset_for_leader_epoch;
pub mod produce;
pub mod sync_group;
pub mod txn_offset_commit;
pub mod unregister_broker;
pub mod write_txn_markers;

pub struct RequestContext {
    pub shard: Rc<Shard>,
    pub api: ApiKey,
    pub version: i16,
    pub correlation_id: i32,
    pub client_id: String,
    pub peer: SocketAddr,
    /// The connection's listener and authenticated principal.
    pub session: Rc<crate::auth::Session>,
    /// The connection's mute: a throttled request mutes it (KIP-219).
    pub mute: Rc<crate::quota::ChannelMute>,
}

/// One piece of an encoded response: bytes, or a file range to splice.
pub enum ResponsePart {
    Bytes(Bytes),
    File(FileRange),
}

pub enum Response {
    /// No response at all (Produce with acks=0).
    None,
    /// Close the connection: the answer could not be encoded.
    Close,
    /// A whole frame, size prefix included.
    Frame(Bytes),
    /// A frame in pieces (Fetch: record bytes come from segment files).
    Parts(Vec<ResponsePart>),
}

impl RequestContext {
    /// Whether this connection's principal may do `action` on `resource`
    /// (always, when no IAM policies are configured).
    pub fn allowed(
        &self,
        action: crate::auth::Action,
        resource: crate::auth::Resource<'_>,
    ) -> bool {
        self.check(action, resource, true)
    }

    /// [`Self::allowed`] for filtering a listing (Metadata of all topics,
    /// ListGroups, ListTransactions): what is left out is not a refused
    /// request, so it is neither logged nor counted (Kafka's
    /// `logIfDenied = false`).
    pub fn may_see(
        &self,
        action: crate::auth::Action,
        resource: crate::auth::Resource<'_>,
    ) -> bool {
        self.check(action, resource, false)
    }

    fn check(
        &self,
        action: crate::auth::Action,
        resource: crate::auth::Resource<'_>,
        audit: bool,
    ) -> bool {
        let security = &self.shard.broker.security;
        if security.authorizer.is_none() {
            return true;
        }
        let principal = self.session.principal();
        let ok = security.authorize(&principal, action, resource);
        if !ok && audit {
            crate::metrics::METRICS
                .authorization_denied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Kafka logs denials at INFO (its authorizer log): an audit trail.
            tracing::info!(target: "sluice::authorizer", %principal, action = action.as_str(), resource = ?resource, api = ?self.api, "denied by IAM policy");
        }
        ok
    }

    /// Whether this connection's principal may take a producer id for
    /// idempotent writes (`Security::may_write_idempotently`: MSK's rule).
    pub fn may_write_idempotently(&self) -> bool {
        let security = &self.shard.broker.security;
        if security.authorizer.is_none() {
            return true;
        }
        let principal = self.session.principal();
        // On refusal, `allowed` logs and counts it as every other denial.
        security.may_write_idempotently(&principal)
            || self.allowed(
                crate::auth::Action::WriteDataIdempotently,
                crate::auth::Resource::Cluster,
            )
    }

    /// `action` on the cluster, or the CLUSTER_AUTHORIZATION_FAILED refusal
    /// Kafka answers, naming the action.
    pub fn require_cluster(&self, action: crate::auth::Action) -> Result<(), ApiError> {
        if self.allowed(action, crate::auth::Resource::Cluster) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::ClusterAuthorizationFailed,
            format!("not authorized to {}", action.as_str()),
        ))
    }

    /// Runs `f` with what every quota decision of this request needs: the
    /// quota manager, the client quotas in force, this connection's client
    /// (principal and client id) and the number of live brokers (cluster
    /// caps are shared among them).
    fn with_quota_client<R>(
        &self,
        f: impl FnOnce(
            &crate::quota::QuotaManager,
            &crate::quota::ClientQuotas,
            crate::quota::Client<'_>,
            usize,
        ) -> R,
    ) -> R {
        let broker = &self.shard.broker;
        let image = broker.metadata.image();
        let principal = self.session.principal();
        let client = crate::quota::Client {
            user: crate::quota::entity::quota_user(&principal),
            client_id: &self.client_id,
        };
        let brokers = image.live_brokers().count().max(1);
        f(&broker.quotas, &image.client_quotas, client, brokers)
    }

    /// Records `value` against this client's `key` quota (and the cluster
    /// caps) and answers the throttle time in ms. A throttled connection is
    /// muted for that time: the caller answers at once with the time in
    /// `throttle_time_ms`, and the connection's next request is not read
    /// before it passes (KIP-219).
    pub fn record_quota(&self, key: crate::quota::QuotaKey, value: f64) -> u64 {
        let throttle = self.with_quota_client(|quotas, in_force, client, brokers| {
            quotas.record(in_force, key, client, value, brokers)
        });
        self.mute.mute_for(throttle);
        throttle
    }

    /// Takes `value` back off this client's `key` quota (a fetch answered
    /// empty because it was throttled).
    pub fn unrecord_quota(&self, key: crate::quota::QuotaKey, value: f64) {
        self.with_quota_client(|quotas, in_force, client, brokers| {
            quotas.unrecord(in_force, key, client, value, brokers)
        });
    }

    /// The throttle time already earned for `key`, recording nothing.
    pub fn quota_throttle_now(&self, key: crate::quota::QuotaKey) -> u64 {
        self.with_quota_client(|quotas, in_force, client, _| {
            quotas.throttle_now(in_force, key, client)
        })
    }

    /// The most this client may take for `key` in one quota window, if a
    /// quota or cluster cap applies.
    pub fn quota_max_in_window(&self, key: crate::quota::QuotaKey) -> Option<f64> {
        self.with_quota_client(|quotas, in_force, client, brokers| {
            quotas.max_in_window(in_force, key, client, brokers)
        })
    }

    /// For versions before KIP-219 (the client does not throttle itself),
    /// Kafka holds the response for the throttle time instead.
    pub async fn delay_if_old(&self, throttle_ms: u64, first_client_throttled_version: i16) {
        if throttle_ms > 0 && self.version < first_client_throttled_version {
            compio::time::sleep(std::time::Duration::from_millis(throttle_ms)).await;
        }
    }

    /// The address clients of this connection's listener are told to use.
    pub fn advertised(&self) -> (&str, u16) {
        let l = &self.session.listener;
        (&l.advertised_host, l.advertised_port)
    }

    /// Brokers clients are told about: every live broker with its address
    /// on this connection's listener (Kafka answers per listener), this node
    /// included; on a single node, just this node.
    pub fn live_brokers(
        &self,
        image: &crate::cluster::MetadataImage,
    ) -> Vec<(crate::cluster::NodeId, String, u16, Option<String>)> {
        let me = self.shard.broker.config.node_id;
        let (host, port) = self.advertised();
        let mut out = vec![(
            me,
            host.to_string(),
            port,
            self.shard.broker.config.cluster.rack.clone(),
        )];
        let listener = &self.session.listener.name;
        for b in image.live_brokers().filter(|b| b.id != me) {
            if let Some(e) = b.endpoint(listener) {
                out.push((b.id, e.host.clone(), e.port, b.rack.clone()));
            }
        }
        out.sort_by_key(|b| b.0);
        out
    }

    /// Broker `id`'s address on this connection's listener, if it is live.
    pub fn broker_address(
        &self,
        image: &crate::cluster::MetadataImage,
        id: crate::cluster::NodeId,
    ) -> Option<(String, u16)> {
        if id == self.shard.broker.config.node_id {
            let (host, port) = self.advertised();
            return Some((host.to_string(), port));
        }
        let b = image.brokers.get(&id).filter(|b| !b.fenced)?;
        let e = b.endpoint(&self.session.listener.name)?;
        Some((e.host.clone(), e.port))
    }

    /// The node clients are told to send controller requests to (Metadata
    /// and DescribeCluster `controller_id`). In a cluster that is this
    /// broker while it is registered and unfenced: every broker forwards
    /// admin writes to the active controller, as KRaft brokers do (Kafka
    /// answers a random live broker), so an admin client never waits on a
    /// dead controller until its next metadata refresh; a fenced or
    /// unregistered broker names the active controller. DescribeQuorum
    /// tells who the active controller really is.
    pub fn controller_id(&self) -> crate::cluster::NodeId {
        let own = self.shard.broker.config.node_id;
        match self.shard.broker.metadata.member() {
            Some(member) => {
                let image = self.shard.broker.metadata.image();
                match image.brokers.get(&own) {
                    Some(b) if !b.fenced => own,
                    _ => member.controller_id(),
                }
            }
            None => own,
        }
    }

    /// Encodes a response message with its header as one frame.
    pub fn respond<R: Encodable + HeaderVersion>(&self, body: &R) -> Response {
        encode_frame(
            self.correlation_id,
            R::header_version(self.version),
            body,
            self.version,
        )
    }
}

pub fn encode_frame<R: Encodable>(
    correlation_id: i32,
    header_version: i16,
    body: &R,
    version: i16,
) -> Response {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    buf.put_i32(correlation_id);
    if header_version >= 1 {
        buf.put_u8(0); // no tagged fields
    }
    if let Err(e) = body.encode(&mut buf, version) {
        // Our own response failed to encode for this version: a bug. Close
        // rather than send a frame the client would misparse.
        tracing::error!(error = %e, version, api = std::any::type_name::<R>(), "cannot encode response; closing connection");
        return Response::Close;
    }
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Response::Frame(buf.freeze())
}

fn decode<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, String> {
    T::decode(body, version).map_err(|e| e.to_string())
}

/// For a Fetch, who sent it: a replica id names a follower.
fn fetch_from(req: &dyn std::any::Any, version: i16) -> Option<FetchFrom> {
    let fetch = req.downcast_ref::<kafka_protocol::messages::FetchRequest>()?;
    Some(if fetch::from_follower(version, fetch) {
        FetchFrom::Follower
    } else {
        FetchFrom::Consumer
    })
}

macro_rules! registry {
    ($( $key:ident => $module:ident ( $req:ty ) ),* $(,)?) => {
        /// Every API served, with its version range: ApiVersions answers this.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
            $( (ApiKey::$key, $module::MIN_VERSION, $module::MAX_VERSION) ),*
        ];

        /// Decodes the request body and returns the handler's future, and
        /// for a Fetch who sent it (the request metrics tell them apart).
        pub fn prepare(ctx: RequestContext, mut body: Bytes) -> Result<(LocalBoxFuture<'static, Response>, Option<FetchFrom>), String> {
            match ctx.api {
                $( ApiKey::$key => {
                    let req: $req = decode(&mut body, ctx.version)?;
                    let from = fetch_from(&req as &dyn std::any::Any, ctx.version);
                    Ok((Box::pin(async move { $module::handle(&ctx, req).await }), from))
                } )*
                other => Err(format!("{other:?} is not served")),
            }
        }
    };
}

use kafka_protocol::messages as m;
registry! {
    Produce => produce(m::ProduceRequest),
    Fetch => fetch(m::FetchRequest),
    ListOffsets => list_offsets(m::ListOffsetsRequest),
    Metadata => metadata(m::MetadataRequest),
    FindCoordinator => find_coordinator(m::FindCoordinatorRequest),
    OffsetCommit => offset_commit(m::OffsetCommitRequest),
    OffsetFetch => offset_fetch(m::OffsetFetchRequest),
    JoinGroup => join_group(m::JoinGroupRequest),
    Heartbeat => heartbeat(m::HeartbeatRequest),
    LeaveGroup => leave_group(m::LeaveGroupRequest),
    SyncGroup => sync_group(m::SyncGroupRequest),
    DescribeGroups => describe_groups(m::DescribeGroupsRequest),
    ListGroups => list_groups(m::ListGroupsRequest),
    ApiVersions => api_versions(m::ApiVersionsRequest),
    CreateTopics => create_topics(m::CreateTopicsRequest),
    DeleteTopics => delete_topics(m::DeleteTopicsRequest),
    DeleteRecords => delete_records(m::DeleteRecordsRequest),
    InitProducerId => init_producer_id(m::InitProducerIdRequest),
    OffsetForLeaderEpoch => offset_for_leader_epoch(m::OffsetForLeaderEpochRequest),
    AddPartitionsToTxn => add_partitions_to_txn(m::AddPartitionsToTxnRequest),
    AddOffsetsToTxn => add_offsets_to_txn(m::AddOffsetsToTxnRequest),
    EndTxn => end_txn(m::EndTxnRequest),
    TxnOffsetCommit => txn_offset_commit(m::TxnOffsetCommitRequest),
    DescribeConfigs => describe_configs(m::DescribeConfigsRequest),
    AlterConfigs => alter_configs(m::AlterConfigsRequest),
    CreatePartitions => create_partitions(m::CreatePartitionsRequest),
    DeleteGroups => delete_groups(m::DeleteGroupsRequest),
    IncrementalAlterConfigs => incremental_alter_configs(m::IncrementalAlterConfigsRequest),
    OffsetDelete => offset_delete(m::OffsetDeleteRequest),
    DescribeCluster => describe_cluster(m::DescribeClusterRequest),
    DescribeQuorum => describe_quorum(m::DescribeQuorumRequest),
    DescribeUserScramCredentials => describe_user_scram_credentials(m::DescribeUserScramCredentialsRequest),
    AlterUserScramCredentials => alter_user_scram_credentials(m::AlterUserScramCredentialsRequest),
    DescribeTopicPartitions => describe_topic_partitions(m::DescribeTopicPartitionsRequest),
    ElectLeaders => elect_leaders(m::ElectLeadersRequest),
    AlterPartitionReassignments => alter_partition_reassignments(m::AlterPartitionReassignmentsRequest),
    ListPartitionReassignments => list_partition_reassignments(m::ListPartitionReassignmentsRequest),
    UnregisterBroker => unregister_broker(m::UnregisterBrokerRequest),
    WriteTxnMarkers => write_txn_markers(m::WriteTxnMarkersRequest),
    DescribeProducers => describe_producers(m::DescribeProducersRequest),
    DescribeClientQuotas => describe_client_quotas(m::DescribeClientQuotasRequest),
    AlterClientQuotas => alter_client_quotas(m::AlterClientQuotasRequest),
    DescribeTransactions => describe_transactions(m::DescribeTransactionsRequest),
    ListTransactions => list_transactions(m::ListTransactionsRequest),
}

/// APIs answered by the connection itself rather than a handler module,
/// because they change the connection's state (see `net::sasl`).
pub const CONNECTION_LEVEL: &[(ApiKey, i16, i16)] = &[
    (ApiKey::SaslHandshake, 0, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Every API ApiVersions advertises.
pub fn advertised_apis() -> impl Iterator<Item = &'static (ApiKey, i16, i16)> {
    SUPPORTED.iter().chain(CONNECTION_LEVEL)
}

pub fn supported_range(api: ApiKey) -> Option<(i16, i16)> {
    advertised_apis()
        .find(|(k, _, _)| *k == api)
        .map(|(_, a, b)| (*a, *b))
}

/// Runs `f` on a partition's log on its owner shard. Errors carry a Kafka
/// error code (unknown partition, storage error, shard gone).
pub async fn with_partition<T, F>(
    ctx: &RequestContext,
    meta: std::sync::Arc<crate::cluster::TopicMeta>,
    partition: i32,
    f: F,
) -> Result<T, ErrorCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<crate::log::PartitionLog>) -> T + Send + 'static,
{
    with_replica(ctx, meta, partition, move |replica| f(replica.log.clone())).await
}

/// Runs `f` with a partition of the replica layer (log plus role) on its
/// owner shard. Errors as [`with_partition`].
pub async fn with_replica<T, F>(
    ctx: &RequestContext,
    meta: std::sync::Arc<crate::cluster::TopicMeta>,
    partition: i32,
    f: F,
) -> Result<T, ErrorCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<crate::replica::Partition>) -> T + Send + 'static,
{
    let broker = &ctx.shard.broker;
    let owner = broker.owner_of_partition(&meta.id, partition);
    broker
        .on_shard(owner, move |shard| async move {
            shard.replica(&meta, partition).await.map(f)
        })
        .await
        .unwrap_or(Err(ErrorCode::LeaderNotAvailable))
}

/// Runs `f` with the transaction coordinator of the shard owning
/// `transactional_id`'s `__transaction_state` partition. NOT_COORDINATOR
/// when that topic does not exist yet or the shard has no coordinator; the
/// coordinator itself refuses ids of partitions it does not lead.
pub async fn on_txn_coordinator<T, F, Fut>(
    ctx: &RequestContext,
    transactional_id: &str,
    f: F,
) -> Result<T, ErrorCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<crate::txn::TxnCoordinator>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, ErrorCode>> + 'static,
{
    let broker = &ctx.shard.broker;
    let image = broker.metadata.image();
    let meta = image
        .by_name
        .get(crate::txn::TXN_TOPIC)
        .ok_or(ErrorCode::NotCoordinator)?;
    let partition = crate::txn::partition_for(
        transactional_id,
        broker.config.transactions.state_log_num_partitions,
    );
    let owner = broker.owner_of_partition(&meta.id, partition);
    broker
        .on_shard(owner, move |shard| async move {
            match shard.txn_coordinator() {
                Some(c) => f(c).await,
                None => Err(ErrorCode::NotCoordinator),
            }
        })
        .await
        .unwrap_or(Err(ErrorCode::NotCoordinator))
}

/// Runs `f` with the group coordinator of the shard owning `group`.
/// `None` when that shard has no coordinator (shutting down).
pub async fn on_coordinator<T, F, Fut>(ctx: &RequestContext, group: &str, f: F) -> Option<T>
where
    T: Send + 'static,
    F: FnOnce(Rc<crate::group::GroupCoordinator>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + 'static,
{
    let broker = &ctx.shard.broker;
    let owner = broker.owner_of_group(group);
    let partition = broker.offsets_partition_of_group(group);
    let clustered = broker.metadata.member().is_some();
    broker
        .on_shard(owner, move |shard| async move {
            // In a cluster only the leader of the group's partition
            // coordinates it, once its groups are loaded.
            if clustered
                && !shard
                    .roles
                    .led_offsets_partitions
                    .borrow()
                    .contains(&partition)
            {
                return None;
            }
            match shard.coordinator() {
                Some(c) => Some(f(c).await),
                None => None,
            }
        })
        .await
        .flatten()
}

/// Kafka reports a client's host as "/a.b.c.d".
pub fn client_host(ctx: &RequestContext) -> String {
    format!("/{}", ctx.peer.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ranges_are_within_the_protocol_crate() {
        for (key, min, max) in advertised_apis() {
            let valid = key.valid_versions();
            assert!(
                *min >= valid.min && *max <= valid.max && min <= max,
                "{key:?} {min}..{max} vs {valid:?}"
            );
        }
    }
}
