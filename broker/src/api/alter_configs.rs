//! AlterConfigs (v0-v2): replaces a topic's whole set of overrides. Broker
//! configs are static (set in the config file) and cannot be altered.

use crate::auth::{Action, Resource};
use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{RequestContext, Response};
use crate::cluster::ApiError;

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

/// Pushes a topic's new log settings to the shards that have it open.
pub async fn publish_topic_config(
    broker: &std::sync::Arc<crate::shard::Broker>,
    meta: std::sync::Arc<crate::cluster::TopicMeta>,
) {
    broker
        .on_all_shards(move |shard| {
            let meta = meta.clone();
            async move { shard.refresh_topic_config(&meta) }
        })
        .await;
}

/// Applies `edit` to one resource's configs (topics only: broker configs
/// are static, so only deleting them, a no-op, succeeds), publishes the change unless validating only, and returns the
/// (error code, message) pair both AlterConfigs answers carry.
pub async fn alter(
    broker: &std::sync::Arc<crate::shard::Broker>,
    resource_type: i8,
    resource_name: &str,
    edit: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), ApiError>,
    validate_only: bool,
) -> (ErrorCode, Option<StrBytes>) {
    let outcome = match resource_type {
        RESOURCE_TOPIC => {
            broker
                .metadata
                .alter_topic_configs(resource_name, edit, validate_only)
                .await
        }
        RESOURCE_BROKER => {
            // No broker config is ever set dynamically, so deleting one is
            // a no-op that succeeds, as in Kafka (`kafka-reassign-partitions
            // --verify` clears replication throttles this way); anything
            // that would set one is refused.
            let mut dynamic = BTreeMap::new();
            return match edit(&mut dynamic) {
                Ok(()) if dynamic.is_empty() => (ErrorCode::None, None),
                Ok(()) => {
                    let e = broker_not_alterable();
                    (e.code, Some(StrBytes::from_string(e.message)))
                }
                Err(e) => (e.code, Some(StrBytes::from_string(e.message))),
            };
        }
        _ => Err(ApiError::new(
            ErrorCode::InvalidRequest,
            "unsupported resource type",
        )),
    };
    match outcome {
        Ok(meta) => {
            if !validate_only {
                publish_topic_config(broker, meta).await;
            }
            (ErrorCode::None, None)
        }
        Err(e) => (e.code, Some(StrBytes::from_string(e.message))),
    }
}

/// The authorization error for altering a resource's configs, if denied.
pub fn refusal(
    ctx: &RequestContext,
    resource_type: i8,
    name: &str,
) -> Option<(ErrorCode, Option<StrBytes>)> {
    let (allowed, code) = match resource_type {
        RESOURCE_TOPIC => (
            ctx.allowed(
                Action::AlterTopicDynamicConfiguration,
                Resource::Topic(name),
            ),
            ErrorCode::TopicAuthorizationFailed,
        ),
        RESOURCE_BROKER => (
            ctx.allowed(Action::AlterClusterDynamicConfiguration, Resource::Cluster),
            ErrorCode::ClusterAuthorizationFailed,
        ),
        _ => (true, ErrorCode::None),
    };
    (!allowed).then(|| {
        (
            code,
            Some(StrBytes::from_static_str("not authorized by IAM policy")),
        )
    })
}

pub fn broker_not_alterable() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidRequest,
        "broker configs are static in sluiced; change the config file and restart",
    )
}

pub async fn handle(ctx: &RequestContext, req: AlterConfigsRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let mut resp = AlterConfigsResponse::default();
    for res in req.resources {
        let mut r = AlterConfigsResourceResponse::default();
        r.resource_type = res.resource_type;
        r.resource_name = res.resource_name.clone();
        let mut next = BTreeMap::new();
        for c in &res.configs {
            if let Some(v) = &c.value {
                next.insert(c.name.to_string(), v.to_string());
            }
        }
        let replace = move |configs: &mut BTreeMap<String, String>| {
            *configs = next;
            Ok(())
        };
        let (code, message) = match refusal(ctx, res.resource_type, &res.resource_name) {
            Some(denied) => denied,
            None => {
                alter(
                    &broker,
                    res.resource_type,
                    &res.resource_name,
                    replace,
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
