//! AlterClientQuotas (v0-v1): sets and removes client quotas
//! (`kafka-configs --alter --entity-type users|clients --add-config
//! producer_byte_rate=...`). Each entry is validated as Kafka does (entity
//! types and names, known keys, non-negative values: INVALID_REQUEST
//! otherwise) and answered on its own; the valid entries are written
//! together, to the metadata file on a single node or through the
//! controller as ClientQuota records in a cluster, before the answer.
//! `validate_only` writes nothing. Needs AlterConfigs on the cluster
//! (IAM: kafka-cluster:AlterClusterDynamicConfiguration), as Kafka.

use kafka_protocol::messages::alter_client_quotas_response::{EntityData, EntryData};
use kafka_protocol::messages::{AlterClientQuotasRequest, AlterClientQuotasResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::quota::entity::{parse_entity, parse_ops, QuotaAlteration};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

fn answer(
    entity: &[kafka_protocol::messages::alter_client_quotas_request::EntityData],
    outcome: Result<(), (ErrorCode, String)>,
) -> EntryData {
    let mut e = EntryData::default();
    e.entity = entity
        .iter()
        .map(|c| {
            let mut d = EntityData::default();
            d.entity_type = c.entity_type.clone();
            d.entity_name = c.entity_name.clone();
            d
        })
        .collect();
    match outcome {
        Ok(()) => e.error_code = 0,
        Err((code, message)) => {
            e.error_code = code.code();
            e.error_message = Some(StrBytes::from_string(message));
        }
    }
    e
}

pub async fn handle(ctx: &RequestContext, req: AlterClientQuotasRequest) -> Response {
    let mut resp = AlterClientQuotasResponse::default();
    if !ctx.allowed(Action::AlterClusterDynamicConfiguration, Resource::Cluster) {
        for entry in &req.entries {
            resp.entries.push(answer(
                &entry.entity,
                Err((
                    ErrorCode::ClusterAuthorizationFailed,
                    format!(
                        "not authorized to {}",
                        Action::AlterClusterDynamicConfiguration.as_str()
                    ),
                )),
            ));
        }
        return ctx.respond(&resp);
    }
    // Parse every entry; the valid ones are written together.
    let mut valid: Vec<(usize, QuotaAlteration)> = Vec::new();
    let mut outcomes: Vec<Result<(), (ErrorCode, String)>> = Vec::new();
    for (i, entry) in req.entries.iter().enumerate() {
        let parsed = parse_entity(
            entry
                .entity
                .iter()
                .map(|c| (c.entity_type.as_str(), c.entity_name.as_deref())),
        )
        .and_then(|entity| {
            let ops = parse_ops(
                entry
                    .ops
                    .iter()
                    .map(|o| (o.key.as_str(), o.value, o.remove)),
            )?;
            Ok(QuotaAlteration { entity, ops })
        });
        match parsed {
            Ok(a) => {
                if valid.iter().any(|(_, v)| v.entity == a.entity) {
                    outcomes.push(Err((
                        ErrorCode::InvalidRequest,
                        "the entity appears more than once in the request".into(),
                    )));
                } else {
                    valid.push((i, a));
                    outcomes.push(Ok(()));
                }
            }
            Err(refusal) => outcomes.push(Err(refusal)),
        }
    }
    if !req.validate_only && !valid.is_empty() {
        let alterations: Vec<QuotaAlteration> = valid.iter().map(|(_, a)| a.clone()).collect();
        if let Err(e) = ctx
            .shard
            .broker
            .metadata
            .alter_client_quotas(alterations)
            .await
        {
            for (i, _) in &valid {
                outcomes[*i] = Err((e.code, e.message.clone()));
            }
        }
    }
    for (entry, outcome) in req.entries.iter().zip(outcomes) {
        resp.entries.push(answer(&entry.entity, outcome));
    }
    ctx.respond(&resp)
}
