//! IncrementalAlterConfigs (v0-v1): SET, DELETE, APPEND and SUBTRACT on a
//! topic's overrides (APPEND/SUBTRACT only for list configs such as
//! `cleanup.policy`).

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use sluice_protocol::ErrorCode;

use super::alter_configs::alter;
use super::{RequestContext, Response};
use crate::cluster::ApiError;
use crate::config::topic::{topic_config, ValueType};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 1;

/// APPEND and SUBTRACT apply to list properties only (`cleanup.policy`).
fn is_list(name: &str) -> bool {
    topic_config(name).is_some_and(|c| c.value_type == ValueType::List)
}

pub async fn handle(ctx: &RequestContext, req: IncrementalAlterConfigsRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let mut resp = IncrementalAlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let ops: Vec<(String, i8, Option<String>)> = res
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.to_string()),
                )
            })
            .collect();
        let edit = move |configs: &mut std::collections::BTreeMap<String, String>| {
            for (name, op, value) in ops {
                match op {
                    0 => {
                        let v = value.ok_or_else(|| {
                            ApiError::new(
                                ErrorCode::InvalidConfig,
                                format!("no value to SET for {name}"),
                            )
                        })?;
                        configs.insert(name, v);
                    }
                    1 => {
                        configs.remove(&name);
                    }
                    2 | 3 if is_list(&name) => {
                        let current = configs
                            .get(&name)
                            .cloned()
                            .unwrap_or_else(|| "delete".into());
                        let mut items: Vec<String> = current
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                            .collect();
                        for v in value
                            .unwrap_or_default()
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty())
                        {
                            if op == 2 && !items.contains(&v) {
                                items.push(v);
                            } else if op == 3 {
                                items.retain(|x| *x != v);
                            }
                        }
                        configs.insert(name, items.join(","));
                    }
                    2 | 3 => {
                        return Err(ApiError::new(
                            ErrorCode::InvalidConfig,
                            format!("{name} is not a list config"),
                        ))
                    }
                    other => {
                        return Err(ApiError::new(
                            ErrorCode::InvalidRequest,
                            format!("unknown config operation {other}"),
                        ))
                    }
                }
            }
            Ok(())
        };
        let (code, message) =
            match super::alter_configs::refusal(ctx, res.resource_type, &res.resource_name) {
                Some(denied) => denied,
                None => {
                    alter(
                        &broker,
                        res.resource_type,
                        &res.resource_name,
                        edit,
                        req.validate_only,
                    )
                    .await
                }
            };
        (r.error_code, r.error_message) = (code.code(), message);
        resp.responses.push(r);
    }
    ctx.respond(&resp)
}
