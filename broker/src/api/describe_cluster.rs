//! DescribeCluster (v0-v1): the cluster id, the active controller and the
//! live brokers (addresses on the client's listener).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

pub async fn handle(ctx: &RequestContext, req: DescribeClusterRequest) -> Response {
    let broker = &ctx.shard.broker;
    let mut resp = DescribeClusterResponse::default();
    resp.endpoint_type = if ctx.version >= 1 {
        req.endpoint_type
    } else {
        1
    };
    resp.cluster_id = StrBytes::from_string(broker.metadata.image().cluster_id.clone());
    resp.controller_id = BrokerId(ctx.controller_id());
    // Kafka answers every principal (only the authorized-operations field
    // depends on Describe on the cluster), so AWS's producer and consumer
    // policies, which grant no DescribeCluster, can bootstrap an admin
    // client.
    resp.cluster_authorized_operations = i32::MIN;
    let image = broker.metadata.image();
    for (id, host, port, rack) in ctx.live_brokers(&image) {
        let mut b = DescribeClusterBroker::default();
        b.broker_id = BrokerId(id);
        b.host = StrBytes::from_string(host);
        b.port = i32::from(port);
        b.rack = rack.map(StrBytes::from_string);
        resp.brokers.push(b);
    }
    ctx.respond(&resp)
}
