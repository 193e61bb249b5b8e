//! openraft's RPCs (AppendEntries, Vote, PreVote, full snapshots,
//! TransferLeader) carried over [`super::transport`]: each request is the
//! JSON of an [`RpcRequest`] naming the node it is meant for, each answer
//! the JSON of an [`RpcResponse`]. A node answers `WrongNode` to a request
//! meant for another id, so a stale address never delivers votes or entries
//! to the wrong controller. Voters' addresses come from the static voter set
//! (`controller.quorum.voters`), not from the replicated membership, so a
//! controller that moved port is reached at its configured address;
//! observers' (learners') come from the membership through an
//! [`AddressBook`] the leader refreshes, so an observer that restarted on
//! another port is followed there without rebuilding the replication stream.
//! `DescribeVoters` tells a broker that only knows
//! `controller.quorum.bootstrap.servers` the voters' ids and addresses.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetworkV2};
use serde::{Deserialize, Serialize};

use super::records::NodeId;
use super::state_machine::Raft;
use super::transport::{PeerClient, TransportError, TransportSecurity};
use super::types::{kafka_id, RaftNodeId, Snapshot, SnapshotData, SnapshotMeta, TypeConfig, Vote};
use super::ControllerService;

#[derive(Serialize, Deserialize)]
pub(super) struct RpcRequest {
    /// The node the sender means to reach.
    target: RaftNodeId,
    rpc: Rpc,
}

#[derive(Serialize, Deserialize)]
enum Rpc {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    PreVote(VoteRequest<TypeConfig>),
    Snapshot {
        vote: Vote,
        meta: SnapshotMeta,
        data: Vec<u8>,
    },
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A request for the controller service above the quorum (broker
    /// registration, heartbeats, topic changes): opaque to the quorum.
    Service(Vec<u8>),
    /// The voter set this node knows (answered whatever `target` says, so a
    /// bootstrap server's id need not be known).
    DescribeVoters,
}

#[derive(Serialize, Deserialize)]
enum RpcResponse {
    Append(Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>>),
    Vote(Result<VoteResponse<TypeConfig>, RaftError<TypeConfig>>),
    Snapshot(Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>>),
    TransferLeader(Result<TransferLeaderResponse<TypeConfig>, RaftError<TypeConfig>>),
    /// The controller service's answer.
    Service(Vec<u8>),
    /// Voter id -> `host:port`.
    Voters(BTreeMap<NodeId, String>),
    /// No controller service is installed on this node yet.
    NoService,
    /// The request was meant for another node id.
    WrongNode {
        this: RaftNodeId,
    },
    /// The request did not decode.
    Undecodable(String),
}

/// Answers one request frame on behalf of the local Raft node.
pub(super) async fn handle(
    raft: &Raft,
    service: &ServiceSlot,
    voters: &BTreeMap<NodeId, String>,
    this: RaftNodeId,
    request: &[u8],
) -> Vec<u8> {
    let response = match serde_json::from_slice::<RpcRequest>(request) {
        Err(e) => RpcResponse::Undecodable(e.to_string()),
        Ok(RpcRequest {
            rpc: Rpc::DescribeVoters,
            ..
        }) => RpcResponse::Voters(voters.clone()),
        Ok(req) if req.target != this => RpcResponse::WrongNode { this },
        Ok(req) => match req.rpc {
            Rpc::Append(rpc) => RpcResponse::Append(raft.append_entries(rpc).await),
            Rpc::Vote(rpc) => RpcResponse::Vote(raft.vote(rpc).await),
            Rpc::PreVote(rpc) => RpcResponse::Vote(raft.pre_vote(rpc).await),
            Rpc::Snapshot { vote, meta, data } => {
                let snapshot = Snapshot {
                    meta,
                    snapshot: SnapshotData::new(data),
                };
                RpcResponse::Snapshot(
                    raft.install_full_snapshot(vote, snapshot)
                        .await
                        .map_err(RaftError::Fatal),
                )
            }
            Rpc::TransferLeader(rpc) => RpcResponse::TransferLeader(
                raft.handle_transfer_leader(rpc)
                    .await
                    .map_err(RaftError::Fatal),
            ),
            Rpc::Service(request) => match service.get() {
                Some(service) => RpcResponse::Service(service.clone().handle(request).await),
                None => RpcResponse::NoService,
            },
            Rpc::DescribeVoters => RpcResponse::Voters(voters.clone()),
        },
    };
    // Serialising openraft's plain message types does not fail.
    serde_json::to_vec(&response).unwrap_or_default()
}

/// Where the controller service is installed once the broker built it.
pub(super) type ServiceSlot = std::sync::OnceLock<Arc<dyn ControllerService>>;

/// Calls the controller service of node `target` at `addr` over `client`.
pub(super) async fn call_service(
    client: &mut PeerClient,
    target: RaftNodeId,
    request: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let frame = serde_json::to_vec(&RpcRequest {
        target,
        rpc: Rpc::Service(request),
    })
    .map_err(|e| e.to_string())?;
    let answer = client
        .call(&frame, timeout)
        .await
        .map_err(|e| e.to_string())?;
    match serde_json::from_slice::<RpcResponse>(&answer) {
        Ok(RpcResponse::Service(answer)) => Ok(answer),
        Ok(RpcResponse::NoService) => Err(format!("controller {target} is still starting")),
        Ok(RpcResponse::WrongNode { this }) => Err(format!(
            "{} is controller {this}, not {target}",
            client.addr()
        )),
        Ok(_) => Err(format!("controller {target} answered another request kind")),
        Err(e) => Err(format!("undecodable answer from controller {target}: {e}")),
    }
}

/// Asks the node at `addr` (a `controller.quorum.bootstrap.servers` entry)
/// for the voter set it knows.
pub(super) async fn describe_voters(
    addr: &str,
    security: Arc<TransportSecurity>,
    timeout: Duration,
) -> Result<BTreeMap<NodeId, String>, String> {
    let frame = serde_json::to_vec(&RpcRequest {
        target: 0,
        rpc: Rpc::DescribeVoters,
    })
    .map_err(|e| e.to_string())?;
    let mut client = PeerClient::new(addr, security);
    let answer = client
        .call(&frame, timeout)
        .await
        .map_err(|e| e.to_string())?;
    match serde_json::from_slice::<RpcResponse>(&answer) {
        Ok(RpcResponse::Voters(voters)) if !voters.is_empty() => Ok(voters),
        Ok(RpcResponse::Voters(_)) => Err(format!("{addr} knows no voters")),
        Ok(_) => Err(format!("{addr} answered another request kind")),
        Err(e) => Err(format!("undecodable answer from {addr}: {e}")),
    }
}

/// Observer (learner) id -> `host:port`, as the replicated membership
/// has them; the leader refreshes it (see `node::housekeeping`).
pub(super) type AddressBook = Arc<RwLock<BTreeMap<RaftNodeId, String>>>;

/// Creates one [`PeerLink`] per target, as openraft asks.
#[derive(Clone)]
pub struct Network {
    /// Controller id -> `host:port` from the static voter set.
    addresses: Arc<BTreeMap<RaftNodeId, String>>,
    observers: AddressBook,
    security: Arc<TransportSecurity>,
}

impl Network {
    pub fn new(
        addresses: BTreeMap<RaftNodeId, String>,
        observers: AddressBook,
        security: Arc<TransportSecurity>,
    ) -> Self {
        Network {
            addresses: Arc::new(addresses),
            observers,
            security,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: RaftNodeId, node: &BasicNode) -> PeerLink {
        let voter = self.addresses.get(&target).cloned();
        let addr = voter.clone().unwrap_or_else(|| node.addr.clone());
        PeerLink {
            target,
            client: PeerClient::new(addr, self.security.clone()),
            unreachable_since: None,
            observers: voter.is_none().then(|| self.observers.clone()),
        }
    }
}

/// The connection to one peer controller or observer.
pub struct PeerLink {
    target: RaftNodeId,
    client: PeerClient,
    /// Set while calls fail to connect: the change is logged once each way
    /// (openraft's own heartbeat warnings, one per 100 ms, are filtered out
    /// by default in main.rs).
    unreachable_since: Option<std::time::Instant>,
    /// For an observer: where to look up its current address.
    observers: Option<AddressBook>,
}

/// What went wrong getting an answer, before openraft's error types.
enum CallError {
    Unreachable(String),
    Network(String),
}

impl From<CallError> for RPCError<TypeConfig> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(m) => RPCError::Unreachable(Unreachable::from_string(m)),
            CallError::Network(m) => RPCError::Network(NetworkError::from_string(m)),
        }
    }
}

impl From<CallError> for StreamingError<TypeConfig> {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(m) => StreamingError::Unreachable(Unreachable::from_string(m)),
            CallError::Network(m) => StreamingError::Network(NetworkError::from_string(m)),
        }
    }
}

impl PeerLink {
    async fn call(&mut self, rpc: Rpc, timeout: Duration) -> Result<RpcResponse, CallError> {
        let result = self.call_once(rpc, timeout).await;
        match (&result, self.unreachable_since) {
            (Err(CallError::Unreachable(why)), None) => {
                tracing::warn!(node = kafka_id(self.target), addr = %self.client.addr(), error = %why, "quorum peer unreachable");
                self.unreachable_since = Some(std::time::Instant::now());
            }
            (Ok(_), Some(since)) => {
                tracing::info!(node = kafka_id(self.target), down_for = ?since.elapsed(), "quorum peer reachable again");
                self.unreachable_since = None;
            }
            _ => {}
        }
        result
    }

    async fn call_once(&mut self, rpc: Rpc, timeout: Duration) -> Result<RpcResponse, CallError> {
        if let Some(book) = &self.observers {
            let current = book
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(&self.target)
                .cloned();
            if let Some(addr) = current.filter(|a| a != self.client.addr()) {
                // The observer restarted elsewhere: reconnect there.
                self.client = PeerClient::new(addr, self.client.security());
            }
        }
        let request = serde_json::to_vec(&RpcRequest {
            target: self.target,
            rpc,
        })
        .map_err(|e| CallError::Network(e.to_string()))?;
        let answer = self
            .client
            .call(&request, timeout)
            .await
            .map_err(|e| match e {
                // A refusal (TLS, SASL) will not change by retrying at
                // once: back off as from an unreachable peer.
                TransportError::Unreachable { .. } | TransportError::Refused { .. } => {
                    CallError::Unreachable(e.to_string())
                }
                other => CallError::Network(other.to_string()),
            })?;
        let response: RpcResponse = serde_json::from_slice(&answer)
            .map_err(|e| CallError::Network(format!("undecodable answer: {e}")))?;
        match response {
            RpcResponse::WrongNode { this } => Err(CallError::Unreachable(format!(
                "{} is controller {this}, not {}",
                self.client.addr(),
                self.target
            ))),
            RpcResponse::Undecodable(e) => Err(CallError::Network(format!(
                "controller {} could not decode our request: {e}",
                self.target
            ))),
            other => Ok(other),
        }
    }

    fn remote_failed(&self, e: RaftError<TypeConfig>) -> CallError {
        // The peer's Raft core stopped: as good as unreachable, back off.
        CallError::Unreachable(format!("controller {} failed: {e}", self.target))
    }

    fn unexpected(&self) -> CallError {
        CallError::Network(format!(
            "controller {} answered another request kind",
            self.target
        ))
    }
}

impl RaftNetworkV2<TypeConfig> for PeerLink {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Rpc::Append(rpc), option.soft_ttl()).await? {
            RpcResponse::Append(r) => r.map_err(|e| self.remote_failed(e).into()),
            _ => Err(self.unexpected().into()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Rpc::Vote(rpc), option.soft_ttl()).await? {
            RpcResponse::Vote(r) => r.map_err(|e| self.remote_failed(e).into()),
            _ => Err(self.unexpected().into()),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self.call(Rpc::PreVote(rpc), option.soft_ttl()).await? {
            RpcResponse::Vote(r) => r.map_err(|e| self.remote_failed(e).into()),
            _ => Err(self.unexpected().into()),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let rpc = Rpc::Snapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        // A snapshot may be large: give it the hard TTL, not the soft one.
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            answer = self.call(rpc, option.hard_ttl()) => answer?,
        };
        match answer {
            RpcResponse::Snapshot(r) => r.map_err(|e| self.remote_failed(e).into()),
            _ => Err(self.unexpected().into()),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(Rpc::TransferLeader(req), option.soft_ttl())
            .await?
        {
            RpcResponse::TransferLeader(r) => r.map_err(|e| self.remote_failed(e).into()),
            _ => Err(self.unexpected().into()),
        }
    }
}
