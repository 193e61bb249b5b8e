//! UnregisterBroker (v0): what `kafka-cluster unregister --id N` sends to
//! retire a broker for good (after its partitions were reassigned away).
//! The controller removes a stopped broker's registration and its place
//! among the quorum's observers (cluster/controller.rs `unregister`); a
//! running broker is refused, since it would register again. Needs
//! kafka-cluster:AlterCluster (Kafka's ALTER on the cluster).

use kafka_protocol::messages::{UnregisterBrokerRequest, UnregisterBrokerResponse};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, Response};
use crate::auth::Action;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

pub async fn handle(ctx: &RequestContext, req: UnregisterBrokerRequest) -> Response {
    let mut resp = UnregisterBrokerResponse::default();
    let outcome = match ctx.require_cluster(Action::AlterCluster) {
        Ok(()) => {
            ctx.shard
                .broker
                .metadata
                .unregister_broker(req.broker_id.0)
                .await
        }
        Err(refused) => Err(refused),
    };
    if let Err(e) = outcome {
        resp.error_code = e.code.code();
        resp.error_message = Some(StrBytes::from_string(e.message));
    }
    ctx.respond(&resp)
}
