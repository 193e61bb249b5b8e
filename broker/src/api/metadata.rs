//! Metadata (v0-v12): the live brokers (addresses on the listener the
//! client came through), the active controller, each partition's leader,
//! leader epoch, replicas, ISR and offline replicas from the metadata image
//! (a single node leads everything at epoch 0), topic ids, the internal
//! flag, and auto-creation of requested topics when both the request and
//! `auto.create.topics.enable` allow it (v4+ carries the flag; older
//! versions always ask).

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

pub fn topic_entry(meta: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let mut t = MetadataResponseTopic::default();
    t.name = Some(TopicName(StrBytes::from_string(meta.name.clone())));
    t.topic_id = meta.id;
    t.is_internal = meta.internal;
    if version >= 8 {
        t.topic_authorized_operations = i32::MIN;
    }
    let ids = |nodes: &[i32]| nodes.iter().map(|n| BrokerId(*n)).collect::<Vec<_>>();
    t.partitions = meta
        .assignment
        .iter()
        .zip(0..)
        .map(|(a, p)| {
            let mut mp = MetadataResponsePartition::default();
            mp.partition_index = p;
            mp.leader_id = BrokerId(a.leader);
            if a.leader == crate::cluster::NO_LEADER {
                mp.error_code = ErrorCode::LeaderNotAvailable.code();
            }
            if version >= 7 {
                mp.leader_epoch = a.leader_epoch;
            }
            mp.replica_nodes = ids(&a.replicas);
            mp.isr_nodes = ids(&a.isr);
            if version >= 5 {
                mp.offline_replicas = ids(&a.offline);
            }
            mp
        })
        .collect();
    t
}

pub async fn handle(ctx: &RequestContext, req: MetadataRequest) -> Response {
    let broker = &ctx.shard.broker;
    let cfg = &broker.config;
    let mut resp = MetadataResponse::default();
    let image = broker.metadata.image();
    for (id, host, port, rack) in ctx.live_brokers(&image) {
        let mut b = MetadataResponseBroker::default();
        b.node_id = BrokerId(id);
        b.host = StrBytes::from_string(host);
        b.port = i32::from(port);
        b.rack = rack.map(StrBytes::from_string);
        resp.brokers.push(b);
    }
    resp.cluster_id = Some(StrBytes::from_string(image.cluster_id.clone()));
    resp.controller_id = BrokerId(ctx.controller_id());
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
            .filter(|m| ctx.may_see(Action::DescribeTopic, Resource::Topic(&m.name)))
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        resp.topics = names
            .into_iter()
            .map(|m| topic_entry(m, ctx.version))
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
            // Asked by id, the name stays unsaid: it is what the principal
            // may not see (Kafka answers a null name).
            t.name = rt.name.clone();
            t.topic_id = rt.topic_id;
            t.error_code = ErrorCode::TopicAuthorizationFailed.code();
            resp.topics.push(t);
            continue;
        }
        match (meta, rt.name) {
            (Some(m), _) => resp.topics.push(topic_entry(&m, ctx.version)),
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
                    // Kafka: may describe but not create -> not authorized.
                    t.error_code = ErrorCode::TopicAuthorizationFailed.code();
                } else if auto_create {
                    match broker
                        .metadata
                        .create_topic(
                            &name,
                            crate::cluster::TopicLayout::DEFAULTS,
                            Default::default(),
                            false,
                            false,
                        )
                        .await
                    {
                        Ok(m) => {
                            tracing::info!(topic = %name.as_str(), partitions = m.partitions, "auto-created topic");
                            // Kafka answers LEADER_NOT_AVAILABLE while a new
                            // topic's leaders are elected; ours are ready, so
                            // answer with the topic right away.
                            t = topic_entry(&m, ctx.version);
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
