//! DescribeClientQuotas (v0-v1): the configured client quotas whose entity
//! matches the request's filter (KIP-546: per entity type an exact name,
//! the default entity, or any; `strict` leaves out entities with types the
//! filter does not name), as `kafka-configs --describe --entity-type
//! users|clients` asks. A bad filter is INVALID_REQUEST for the whole
//! request, as in Kafka. Needs DescribeConfigs on the cluster (IAM:
//! kafka-cluster:DescribeClusterDynamicConfiguration).

use kafka_protocol::messages::describe_client_quotas_response::{EntityData, EntryData, ValueData};
use kafka_protocol::messages::{DescribeClientQuotasRequest, DescribeClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::quota::entity::{describe, Filter};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

pub async fn handle(ctx: &RequestContext, req: DescribeClientQuotasRequest) -> Response {
    let mut resp = DescribeClientQuotasResponse::default();
    let fail = |resp: &mut DescribeClientQuotasResponse, code: ErrorCode, message: String| {
        resp.error_code = code.code();
        resp.error_message = Some(StrBytes::from_string(message));
        resp.entries = None;
    };
    if !ctx.allowed(
        Action::DescribeClusterDynamicConfiguration,
        Resource::Cluster,
    ) {
        fail(
            &mut resp,
            ErrorCode::ClusterAuthorizationFailed,
            format!(
                "not authorized to {}",
                Action::DescribeClusterDynamicConfiguration.as_str()
            ),
        );
        return ctx.respond(&resp);
    }
    let filter = match Filter::parse(
        req.components
            .iter()
            .map(|c| (c.entity_type.as_str(), c.match_type, c._match.as_deref())),
        req.strict,
    ) {
        Ok(f) => f,
        Err((code, message)) => {
            fail(&mut resp, code, message);
            return ctx.respond(&resp);
        }
    };
    let image = ctx.shard.broker.metadata.image();
    let entries = describe(&image.client_quotas, &filter)
        .map(|(entity, values)| {
            let mut e = EntryData::default();
            e.entity = entity
                .components()
                .into_iter()
                .map(|(t, name)| {
                    let mut d = EntityData::default();
                    d.entity_type = StrBytes::from_static_str(t);
                    d.entity_name = name.map(|n| StrBytes::from_string(n.to_string()));
                    d
                })
                .collect();
            e.values = values
                .iter()
                .map(|(key, value)| {
                    let mut v = ValueData::default();
                    v.key = StrBytes::from_static_str(key.name());
                    v.value = value.0;
                    v
                })
                .collect();
            e
        })
        .collect();
    resp.entries = Some(entries);
    ctx.respond(&resp)
}
