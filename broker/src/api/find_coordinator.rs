//! FindCoordinator (v0-v6): a group's coordinator is the leader of its
//! `__consumer_offsets` partition, a transactional id's the leader of its
//! `__transaction_state` partition (this node on a single node), and the
//! first request for a transactional id creates that topic, as Kafka does;
//! COORDINATOR_NOT_AVAILABLE while the partition has no live leader or the
//! topic does not exist yet.

use crate::auth::{Action, Resource};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 6;

pub async fn handle(ctx: &RequestContext, req: FindCoordinatorRequest) -> Response {
    let broker = &ctx.shard.broker;
    if req.key_type == 1 {
        // Failing here leaves COORDINATOR_NOT_AVAILABLE below: retriable.
        let _ = crate::shard::txns::ensure_topic(&ctx.shard).await;
    }
    let image = broker.metadata.image();
    let offsets = image.by_name.get(crate::cluster::OFFSETS_TOPIC).cloned();
    let txn_state = image.by_name.get(crate::txn::TXN_TOPIC).cloned();
    let txn_partitions = broker.config.transactions.state_log_num_partitions;
    let keys: Vec<StrBytes> = if ctx.version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let answer = |key: StrBytes| {
        let mut c = Coordinator::default();
        c.key = key;
        match req.key_type {
            0 if !ctx.allowed(Action::DescribeGroup, Resource::Group(c.key.as_str())) => {
                c.error_code = ErrorCode::GroupAuthorizationFailed.code();
                c.node_id = BrokerId(-1);
                c.port = -1;
            }
            1 if !ctx.allowed(
                Action::DescribeTransactionalId,
                Resource::TransactionalId(c.key.as_str()),
            ) =>
            {
                c.error_code = ErrorCode::TransactionalIdAuthorizationFailed.code();
                c.node_id = BrokerId(-1);
                c.port = -1;
            }
            0 | 1 => {
                let leader = if req.key_type == 0 {
                    offsets.as_ref().and_then(|t| {
                        let p = broker.offsets_partition_of_group(c.key.as_str());
                        t.partition(p).map(|a| a.leader)
                    })
                } else {
                    txn_state.as_ref().and_then(|t| {
                        let p = crate::txn::partition_for(c.key.as_str(), txn_partitions);
                        t.partition(p).map(|a| a.leader)
                    })
                };
                match leader.and_then(|l| ctx.broker_address(&image, l).map(|a| (l, a))) {
                    Some((leader, (host, port))) => {
                        c.node_id = BrokerId(leader);
                        c.host = StrBytes::from_string(host);
                        c.port = i32::from(port);
                    }
                    None => {
                        c.error_code = ErrorCode::CoordinatorNotAvailable.code();
                        c.node_id = BrokerId(-1);
                        c.port = -1;
                    }
                }
            }
            _ => {
                c.error_code = ErrorCode::InvalidRequest.code();
                c.node_id = BrokerId(-1);
                c.port = -1;
            }
        }
        c
    };
    let mut resp = FindCoordinatorResponse::default();
    let coordinators: Vec<Coordinator> = keys.into_iter().map(answer).collect();
    if ctx.version >= 4 {
        resp.coordinators = coordinators;
    } else if let Some(c) = coordinators.into_iter().next() {
        resp.error_code = c.error_code;
        if ctx.version >= 1 {
            resp.error_message = c.error_message;
        }
        resp.node_id = c.node_id;
        resp.host = c.host;
        resp.port = c.port;
    }
    ctx.respond(&resp)
}
