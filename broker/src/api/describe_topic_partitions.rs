//! DescribeTopicPartitions (v0, KIP-966): what Metadata says of topics'
//! partitions plus their eligible leader replicas, paged the way Kafka pages
//! it (topics in name order from the request's cursor, at most
//! `response_partition_limit` partitions, capped at Kafka's 2000, and a
//! `next_cursor` where the answer stops). Kafka's admin client describes
//! topics by name through it, so `kafka-topics --describe` shows "Elr:".
//! An empty topic list asks for every topic the principal may describe;
//! named topics it may not describe answer TOPIC_AUTHORIZATION_FAILED.

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::{Action, Resource};
use crate::cluster::{validate_topic_name, TopicMeta, NO_LEADER};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 0;

/// Kafka's `max.request.partition.size.limit` default: the most partitions
/// one answer carries whatever the request asks.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn ids(nodes: &[i32]) -> Vec<BrokerId> {
    nodes.iter().map(|n| BrokerId(*n)).collect()
}

/// Partitions `from..` of `meta`, at most `limit` of them.
fn partitions(
    meta: &TopicMeta,
    from: i32,
    limit: usize,
) -> Vec<DescribeTopicPartitionsResponsePartition> {
    meta.assignment
        .iter()
        .zip(0..)
        .skip(usize::try_from(from).unwrap_or(0))
        .take(limit)
        .map(|(a, index)| {
            let mut p = DescribeTopicPartitionsResponsePartition::default();
            p.partition_index = index;
            p.leader_id = BrokerId(a.leader);
            if a.leader == NO_LEADER {
                p.error_code = ErrorCode::LeaderNotAvailable.code();
            }
            p.leader_epoch = a.leader_epoch;
            p.replica_nodes = ids(&a.replicas);
            p.isr_nodes = ids(&a.isr);
            p.eligible_leader_replicas = Some(ids(&a.elr));
            // The broker's image does not carry the last known ELR (only
            // the controller's does; it matters for recovery, not clients).
            p.last_known_elr = Some(Vec::new());
            p.offline_replicas = ids(&a.offline);
            p
        })
        .collect()
}

fn topic_error(topic: &str, code: ErrorCode) -> DescribeTopicPartitionsResponseTopic {
    let mut t = DescribeTopicPartitionsResponseTopic::default();
    t.name = Some(name(topic));
    t.error_code = code.code();
    t.is_internal = topic.starts_with("__");
    t.topic_authorized_operations = i32::MIN;
    t
}

pub async fn handle(ctx: &RequestContext, req: DescribeTopicPartitionsRequest) -> Response {
    let image = ctx.shard.broker.metadata.image();
    let mut resp = DescribeTopicPartitionsResponse::default();
    let all = req.topics.is_empty();
    let (cursor_topic, cursor_partition) = match &req.cursor {
        Some(c) => (c.topic_name.as_str().to_string(), c.partition_index),
        None => (String::new(), 0),
    };
    let mut names: Vec<String> = if all {
        image.by_name.keys().cloned().collect()
    } else {
        req.topics
            .iter()
            .map(|t| t.name.as_str().to_string())
            .collect()
    };
    names.retain(|n| *n >= cursor_topic);
    names.sort();
    names.dedup();
    let cursor_unlisted = req.cursor.is_some() && !all && !names.contains(&cursor_topic);
    if cursor_partition < 0 || cursor_unlisted {
        // Kafka refuses such a request; its error answer puts the code on
        // every requested topic.
        resp.topics = req
            .topics
            .iter()
            .map(|t| topic_error(t.name.as_str(), ErrorCode::InvalidRequest))
            .collect();
        return ctx.respond(&resp);
    }
    let mut denied = Vec::new();
    names.retain(|n| {
        let ok = if all {
            ctx.may_see(Action::DescribeTopic, Resource::Topic(n))
        } else {
            ctx.allowed(Action::DescribeTopic, Resource::Topic(n))
        };
        if !ok && !all {
            denied.push(topic_error(n, ErrorCode::TopicAuthorizationFailed));
        }
        ok
    });
    let limit = req
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut remaining = usize::try_from(limit).unwrap_or(1);
    for topic in names {
        if remaining == 0 {
            let mut next = Cursor::default();
            next.topic_name = name(&topic);
            next.partition_index = 0;
            resp.next_cursor = Some(next);
            break;
        }
        let Some(meta) = image.by_name.get(&topic) else {
            if !all {
                let code = match validate_topic_name(&topic) {
                    Ok(()) => ErrorCode::UnknownTopicOrPartition,
                    Err(e) => e.code,
                };
                resp.topics.push(topic_error(&topic, code));
            }
            continue;
        };
        let from = if topic == cursor_topic {
            cursor_partition
        } else {
            0
        };
        let listed = partitions(meta, from, remaining);
        let next_index = from.saturating_add(i32::try_from(listed.len()).unwrap_or(i32::MAX));
        let mut t = DescribeTopicPartitionsResponseTopic::default();
        t.name = Some(name(&topic));
        t.topic_id = meta.id;
        t.is_internal = meta.internal;
        t.topic_authorized_operations = i32::MIN;
        remaining -= listed.len();
        t.partitions = listed;
        resp.topics.push(t);
        if next_index < meta.partitions {
            let mut next = Cursor::default();
            next.topic_name = name(&topic);
            next.partition_index = next_index;
            resp.next_cursor = Some(next);
            break;
        }
    }
    resp.topics.extend(denied);
    ctx.respond(&resp)
}
