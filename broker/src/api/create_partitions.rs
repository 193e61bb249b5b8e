//! CreatePartitions (v0-v3): grows a topic; the new partitions open on their
//! owner shards before the answer.

use super::mutation_quota::{check_partition_cap, MutationQuota};
use crate::auth::{Action, Resource};
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 3;

pub async fn handle(ctx: &RequestContext, req: CreatePartitionsRequest) -> Response {
    let broker = ctx.shard.broker.clone();
    let mut resp = CreatePartitionsResponse::default();
    let mut quota = MutationQuota::new(ctx, 3);
    for t in req.topics {
        let mut r = CreatePartitionsTopicResult::default();
        r.name = t.name.clone();
        if !ctx.allowed(Action::AlterTopic, Resource::Topic(t.name.as_str())) {
            r.error_code = ErrorCode::TopicAuthorizationFailed.code();
            r.error_message = Some(StrBytes::from_static_str(
                "not authorized to kafka-cluster:AlterTopic",
            ));
            resp.results.push(r);
            continue;
        }
        // `kafka-topics --alter --partitions N --replica-assignment ...`
        // lays out the new partitions itself.
        let assignments = t.assignments.as_ref().map(|list| {
            list.iter()
                .map(|a| a.broker_ids.iter().map(|b| b.0).collect())
                .collect()
        });
        let before = broker
            .metadata
            .image()
            .by_name
            .get(t.name.as_str())
            .map_or(0, |m| m.partitions);
        let adding = i64::from(t.count) - i64::from(before);
        let allowed = quota
            .check(ctx)
            .and_then(|()| check_partition_cap(ctx, adding.max(0)));
        let outcome = match allowed {
            Ok(()) => {
                broker
                    .metadata
                    .create_partitions(&t.name, t.count, req.validate_only, assignments)
                    .await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(meta) => {
                if !req.validate_only {
                    quota.record(ctx, meta.partitions - before);
                    super::create_topics::open_partitions(&broker, meta).await;
                }
            }
            Err(e) => {
                r.error_code = e.code.code();
                r.error_message = Some(StrBytes::from_string(e.message));
            }
        }
        resp.results.push(r);
    }
    resp.throttle_time_ms = quota.throttle_time_ms(ctx);
    ctx.delay_if_old(resp.throttle_time_ms as u64, 1).await;
    ctx.respond(&resp)
}
