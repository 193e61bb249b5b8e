//! ElectLeaders (v0-v2): `kafka-leader-election` and Admin's
//! `electLeaders`. Preferred elections move each partition's leadership to
//! its first replica when that replica is in the ISR and live; unclean ones
//! give a leaderless partition any live replica. The controller decides
//! (cluster/controller.rs `elections`); a single node leads everything and
//! answers ELECTION_NOT_NEEDED. Needs kafka-cluster:AlterCluster (Kafka's
//! ALTER on the cluster).

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use sluice_protocol::ErrorCode;

use super::{RequestContext, Response};
use crate::auth::Action;
use crate::cluster::controller::{ElectionType, PartitionOutcome};

pub const MIN_VERSION: i16 = 0;
pub const MAX_VERSION: i16 = 2;

pub async fn handle(ctx: &RequestContext, req: ElectLeadersRequest) -> Response {
    let mut resp = ElectLeadersResponse::default();
    let wanted: Option<Vec<(String, i32)>> = req.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(|p| (t.topic.to_string(), *p)))
            .collect()
    });
    // v0 has no election type: it is a preferred election.
    let election = match (ctx.version, req.election_type) {
        (0, _) | (_, 0) => Ok(ElectionType::Preferred),
        (_, 1) => Ok(ElectionType::Unclean),
        (_, other) => Err(format!("unknown election type {other}")),
    };
    let outcomes = if let Err(e) = ctx.require_cluster(Action::AlterCluster) {
        Err((e.code, e.message))
    } else {
        match election {
            Err(message) => Err((ErrorCode::InvalidRequest, message)),
            Ok(election) => ctx
                .shard
                .broker
                .metadata
                .elect_leaders(election, wanted.clone())
                .await
                .map_err(|e| (e.code, e.message)),
        }
    };
    let outcomes = match outcomes {
        Ok(outcomes) => outcomes,
        Err((code, message)) => {
            // Every asked partition carries the error (and, from v1, the
            // response too), as Kafka answers a refused request.
            if ctx.version >= 1 {
                resp.error_code = code.code();
            }
            wanted
                .unwrap_or_default()
                .into_iter()
                .map(|(topic, partition)| PartitionOutcome {
                    topic,
                    partition,
                    error_code: code.code(),
                    message: Some(message.clone()),
                })
                .collect()
        }
    };
    for o in outcomes {
        let mut result = PartitionResult::default();
        result.partition_id = o.partition;
        result.error_code = o.error_code;
        result.error_message = o.message.map(StrBytes::from_string);
        match resp
            .replica_election_results
            .iter_mut()
            .find(|r| r.topic.as_str() == o.topic)
        {
            Some(r) => r.partition_result.push(result),
            None => {
                let mut r = ReplicaElectionResult::default();
                r.topic = TopicName(StrBytes::from_string(o.topic));
                r.partition_result.push(result);
                resp.replica_election_results.push(r);
            }
        }
    }
    ctx.respond(&resp)
}
