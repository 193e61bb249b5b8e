//! Metadata (v0-v12): this broker as the only node and leader of every
//! partition (leader epoch 0, replicas and ISR = [this node]), topic ids,
//! the internal flag, and auto-creation of requested topics when both the
//! request and `auto.create.topics.enable` allow it (v4+ carries the flag;
//! older versions always ask).

use crate::auth::{Action, Resource};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::cluster::{validate_topic_name, TopicMeta};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 12;

pub fn topic_entry(meta: &TopicMeta, node_id: i32, version: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(meta.name.clone())));
    t.topic_id = meta.id;
    t.is_internal = meta.internal;
    if version >= 8 {
        t.topic_authorized_operations = i32::MIN;
    }
    t.partitions = (0..meta.partitions)
        .map(|p| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p;
            mp.leader_id = BrokerId(node_id);
            if version >= 7 {
                mp.leader_epoch = 0;
            }
            mp.replica_nodes = vec![BrokerId(node_id)];
            mp.isr_nodes = vec![BrokerId(node_id)];
            mp
        })
        .collect();
    t
}

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> Response {
    let broker = &ctx.shard.broker;
    let cfg = &broker.config;
    let mut resp = MetadataResponse::default();
    let mut b = MetadataResponseBroker::default();
    b.node_id = BrokerId(cfg.node_id);
    b.host = StrBytes::from_string(ctx.advertised().0.to_string());
    b.port = i32::from(ctx.advertised().1);
    resp.brokers.push(b);
    let image = broker.metadata.image();
    resp.cluster_id = Some(StrBytes::from_string(image.cluster_id.clone()));
    resp.controller_id = BrokerId(cfg.node_id);
    if (8..=10).contains(&ctx.version) {
        resp.cluster_authorized_operations = i32::MIN;
    }
    // v0 asks for all topics with an empty list; v1+ with null.
    let all = match &req.topics {
        None => true,
        Some(t) => t.is_empty() && ctx.version == 0,
    };
    if all {
        // Topics the principal may not describe are left out, as Kafka does.
        let mut names: Vec<_> = image
            .by_name
            .values()
            .filter(|m| ctx.allowed(Action::DescribeTopic, Resource::Topic(&m.name)))
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        resp.topics = names
            .into_iter()
            .map(|m| topic_entry(m, cfg.node_id, ctx.version))
            .collect();
        return ctx.respond(&resp);
    }
    let auto_create =
        cfg.auto_create_topics_enable && (ctx.version < 4 || req.allow_auto_topic_creation);
    for rt in req.topics.unwrap_or_default() {
        let meta = match &rt.name {
            Some(n) => image.by_name.get(n.as_str()).cloned(),
            None => image.by_id.get(&rt.topic_id).cloned(),
        };
        let described = match (&meta, &rt.name) {
            (Some(m), _) => ctx.allowed(Action::DescribeTopic, Resource::Topic(&m.name)),
            (None, Some(n)) => ctx.allowed(Action::DescribeTopic, Resource::Topic(n.as_str())),
            (None, None) => true,
        };
        if !described {
            let mut t = MetadataResponseTopic::default();
            t.name = rt.name.clone().or_else(|| {
                meta.as_ref().map(|m| {
                    kafka_protocol::messages::TopicName(StrBytes::from_string(m.name.clone()))
                })
            });
            t.topic_id = rt.topic_id;
            t.error_code = ErrorCode::TopicAuthorizationFailed.code();
            resp.topics.push(t);
            continue;
        }
        match (meta, rt.name) {
            (Some(m), _) => resp.topics.push(topic_entry(&m, cfg.node_id, ctx.version)),
            (None, Some(name)) => {
                let mut t = MetadataResponseTopic::default();
                t.name = Some(name.clone());
                if ctx.version >= 8 {
                    t.topic_authorized_operations = i32::MIN;
                }
                if let Err(e) = validate_topic_name(&name) {
                    t.error_code = e.code.code();
                } else if auto_create
                    && !ctx.allowed(Action::CreateTopic, Resource::Topic(name.as_str()))
                {
                    // Kafka: may describe but not create -> unknown topic.
                    t.error_code = ErrorCode::UnknownTopicOrPartition.code();
                } else if auto_create {
                    match broker.metadata.create_topic(
                        &name,
                        -1,
                        -1,
                        Default::default(),
                        false,
                        false,
                    ) {
                        Ok(m) => {
                            tracing::info!(topic = %name.as_str(), partitions = m.partitions, "auto-created topic");
                            // Kafka answers LEADER_NOT_AVAILABLE while a new
                            // topic's leaders are elected; ours are ready, so
                            // answer with the topic right away.
                            t = topic_entry(&m, cfg.node_id, ctx.version);
                        }
                        Err(e) if e.code == ErrorCode::TopicAlreadyExists => {
                            t.error_code = ErrorCode::LeaderNotAvailable.code();
                        }
                        Err(e) => t.error_code = e.code.code(),
                    }
                } else {
                    t.error_code = ErrorCode::UnknownTopicOrPartition.code();
                }
                resp.topics.push(t);
            }
            (None, None) => {
                let mut t = MetadataResponseTopic::default();
                t.topic_id = rt.topic_id;
                t.error_code = ErrorCode::UnknownTopicId.code();
                resp.topics.push(t);
            }
        }
    }
    ctx.respond(&resp)
}
