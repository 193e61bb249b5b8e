//! DeleteTopics (v1-v6): by name, or by topic id (v6+). The topic leaves
//! the metadata image first; then each shard closes its partitions (waking
//! parked fetches) and removes their directories.

use crate::auth::{Action, Resource};
use std::sync::Arc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::cluster::TopicMeta;
use crate::log::PartitionLog;

pub const MIN_VERSION: i16 = 1;
pub const MAX_VERSION: i16 = 6;

pub async fn handle(ctx: &RequestContext, req: DeleteTopicsRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let mut resp = DeleteTopicsResponse::default();
    let mut quota = super::mutation_quota::MutationQuota::new(ctx, 5);
    let targets: Vec<(Option<String>, uuid::Uuid)> = if ctx.version >= 6 {
        req.topics
            .iter()
            .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id))
            .collect()
    } else {
        req.topic_names
            .iter()
            .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    for (name, id) in targets {
        let mut r = DeletableTopicResult::default();
        if ctx.version >= 6 {
            r.topic_id = id;
        }
        let asked_by_name = name.is_some();
        let name = match name {
            Some(n) => Some(n),
            None => broker
                .metadata
                .image()
                .by_id
                .get(&id)
                .map(|m| m.name.clone()),
        };
        if let Some(n) = &name {
            if !ctx.allowed(Action::DeleteTopic, Resource::Topic(n)) {
                // Asked by id, the name is said only to who may describe it.
                if asked_by_name || ctx.may_see(Action::DescribeTopic, Resource::Topic(n)) {
                    r.name = Some(TopicName(StrBytes::from_string(n.clone())));
                }
                r.error_code = ErrorCode::TopicAuthorizationFailed.code();
                resp.responses.push(r);
                continue;
            }
        }
        let Some(name) = name else {
            r.error_code = ErrorCode::UnknownTopicId.code();
            resp.responses.push(r);
            continue;
        };
        r.name = Some(TopicName(StrBytes::from_string(name.clone())));
        let outcome = match quota.check(ctx) {
            Ok(()) => broker.metadata.delete_topic(&name).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(meta) => {
                quota.record(ctx, meta.partitions);
                if ctx.version >= 6 {
                    r.topic_id = meta.id;
                }
                tracing::info!(topic = %name, "deleted topic");
                remove_partitions(&broker, meta).await;
            }
            Err(e) => {
                r.error_code = e.code.code();
                if ctx.version >= 5 {
                    r.error_message = Some(StrBytes::from_string(e.message));
                }
            }
        }
        resp.responses.push(r);
    }
    resp.throttle_time_ms = quota.throttle_time_ms(ctx);
    ctx.delay_if_old(resp.throttle_time_ms as u64, 2).await;
    ctx.respond(&resp)
}

async fn remove_partitions(broker: &Arc<crate::shard::Broker>, meta: Arc<TopicMeta>) {
    let id = meta.id;
    broker
        .on_all_shards(move |shard| async move {
            shard.drop_topic(&id);
        })
        .await;
    for p in 0..meta.partitions {
        let dir = broker
            .config
            .data_dir
            .join(PartitionLog::dir_name(&meta.name, p));
        if let Err(e) = crate::log::deletion::delete_partition_dir(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove deleted partition");
        }
    }
    crate::metrics::METRICS.forget_topic(&meta.name);
}
