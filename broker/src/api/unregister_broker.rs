//! UnregisterBroker (v0): what `kafka-cluster unregister --id N` sends to
//! retire a broker for good (after its partitions were reassigned away).
//! The controller removes a stopped broker's registration and its place
//! among the quorum's observers (cluster/controller.rs `unregister`); a
//! running broker is refused, since it would register again. Needs
//! kafka-cluster:AlterCluster (Kafka's ALTER on the cluster).

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: UnregisterBrokerRequest) -> Response {
    let mut resp = UnregisterBrokerResponse::default();
    let outcome = if !ctx.allowed(Action::AlterCluster, Resource::Cluster) {
        Err((
            ErrorCode::ClusterAuthorizationFailed,
            "not authorized to kafka-cluster:AlterCluster".to_string(),
        ))
    } else {
        ctx.shard
            .broker
            .metadata
            .unregister_broker(req.broker_id.0)
            .await
            .map_err(|e| (e.code, e.message))
    };
    if let Err((code, message)) = outcome {
        resp.error_code = code.code();
        resp.error_message = Some(StrBytes::from_string(message));
    }
    ctx.respond(&resp)
}
