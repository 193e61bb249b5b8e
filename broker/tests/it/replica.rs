//! The replica layer seen from the wire on a single-node sluiced (every
//! partition led by node 1 with ISR [1]): a fetch claiming a replica id
//! that is no replica of the partition is refused, acks=all works with the
//! ISR of one, and `min.insync.replicas` above the ISR size refuses acks=all
//! while acks=1 still works.

use crate::support::*;
use kafka_protocol::messages::{BrokerId, FetchResponse};
use sluice_protocol::ErrorCode;

/// A fetch with a replica id (`replica_id` before v15, `replica_state`
/// since) for one partition.
fn replica_fetch(
    c: &mut Client,
    version: i16,
    topic: &TopicRef,
    replica_id: i32,
) -> kafka_protocol::messages::fetch_response::PartitionData {
    let mut req = fetch_request(version, topic, &[(0, 0)], 0, 0);
    if version >= 15 {
        req.replica_state.replica_id = BrokerId(replica_id);
    } else {
        req.replica_id = BrokerId(replica_id);
    }
    let resp: FetchResponse = c.send(version, &req);
    assert_eq!(resp.error_code, ErrorCode::None.code());
    assert_eq!(resp.responses.len(), 1);
    assert_eq!(resp.responses[0].partitions.len(), 1);
    resp.responses[0].partitions[0].clone()
}

#[test]
fn fetch_from_a_non_replica_is_not_leader_or_follower() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "replicas", 1, &[]);
    let topic = TopicRef {
        name: "replicas".into(),
        id,
    };
    produce_ok(&mut c, "replicas", 0, batch(&["a", "b"]));
    // Node 1 is the only replica: broker 2, and node 1 claiming to follow
    // itself, are refused, as Kafka does.
    for version in [12i16, 15, 16] {
        for replica_id in [2, 1] {
            let p = replica_fetch(&mut c, version, &topic, replica_id);
            assert_eq!(
                p.error_code,
                ErrorCode::NotLeaderOrFollower.code(),
                "fetch v{version} as replica {replica_id}"
            );
            assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
        }
    }
    // Consumers (replica id -1) read as before.
    let p = fetch(&mut c, &topic, 0, 0);
    assert_eq!(p.error_code, ErrorCode::None.code());
    assert_eq!(p.high_watermark, 2);
    assert_eq!(decode(p.records.as_ref()).len(), 2);
}

#[test]
fn acks_all_with_an_isr_of_one() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "acks-all", 2, &[]);
    let topic = TopicRef {
        name: "acks-all".into(),
        id,
    };
    for (i, values) in [["a", "b"], ["c", "d"]].iter().enumerate() {
        let r = produce(&mut c, "acks-all", 1, batch(values));
        assert_eq!(r.error_code, ErrorCode::None.code());
        assert_eq!(r.base_offset, 2 * i as i64);
    }
    let recs = fetch_all(&mut c, &topic, 1, 0);
    let values: Vec<String> = recs.iter().map(Rec::value_str).collect();
    assert_eq!(values, ["a", "b", "c", "d"]);
    let latest = list_offsets(&mut c, "acks-all", 1, -1);
    assert_eq!(latest.error_code, ErrorCode::None.code());
    assert_eq!(latest.offset, 4);
}

#[test]
fn min_insync_above_the_isr_refuses_acks_all_only() {
    let broker = Broker::start();
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "strict", 1, &[("min.insync.replicas", "2")]);
    let topic = TopicRef {
        name: "strict".into(),
        id,
    };
    let r = produce(&mut c, "strict", 0, batch(&["refused"]));
    assert_eq!(
        r.error_code,
        ErrorCode::NotEnoughReplicas.code(),
        "acks=all with ISR [1] and min.insync.replicas=2"
    );
    let resp = c.send(9, &produce_request(1, &[("strict", 0, batch(&["kept"]))]));
    let r = &resp.responses[0].partition_responses[0];
    assert_eq!(r.error_code, ErrorCode::None.code(), "acks=1 still works");
    assert_eq!(r.base_offset, 0, "the refused batch was never appended");
    let values: Vec<String> = fetch_all(&mut c, &topic, 0, 0)
        .iter()
        .map(Rec::value_str)
        .collect();
    assert_eq!(values, ["kept"]);
}

/// The `[auth]` table with one policy for the PLAINTEXT principal.
fn auth_config(actions: &str) -> String {
    format!(
        "[auth]\nregion = \"us-east-1\"\naccount = \"123456789012\"\ncluster_name = \"sluice-test\"\n\
         cluster_uuid = \"11111111-2222-3333-4444-555555555555\"\n\
         [[auth.policies]]\nprincipal = \"User:ANONYMOUS\"\ndocument = '''\n\
         {{\"Version\": \"2012-10-17\", \"Statement\": [{{\"Effect\": \"Allow\", \"Action\": {actions}, \"Resource\": \"*\"}}]}}\n'''\n"
    )
}

#[test]
fn replica_fetch_needs_cluster_action_when_authorizing() {
    // Everything a client needs, AlterCluster included (AWS's example
    // client policy grants it), but not ClusterAction: a client must not
    // pass for a follower.
    let client_actions = r#"["kafka-cluster:Connect", "kafka-cluster:DescribeCluster", "kafka-cluster:AlterCluster", "kafka-cluster:CreateTopic", "kafka-cluster:DescribeTopic", "kafka-cluster:ReadData", "kafka-cluster:WriteData"]"#;
    let broker = Broker::start_with(&auth_config(client_actions));
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "guarded", 1, &[]);
    let topic = TopicRef {
        name: "guarded".into(),
        id,
    };
    produce_ok(&mut c, "guarded", 0, batch(&["a"]));
    for version in [12i16, 15] {
        let p = replica_fetch(&mut c, version, &topic, 2);
        assert_eq!(
            p.error_code,
            ErrorCode::TopicAuthorizationFailed.code(),
            "fetch v{version} with a replica id and no ClusterAction"
        );
    }
    let p = fetch(&mut c, &topic, 0, 0);
    assert_eq!(p.error_code, ErrorCode::None.code(), "consumers still read");
    drop(c);
    drop(broker);

    // With kafka-cluster:* the claim passes authorization and meets the
    // replica check instead.
    let broker = Broker::start_with(&auth_config(r#""kafka-cluster:*""#));
    let mut c = broker.client();
    let id = create_topic_ok(&mut c, "guarded", 1, &[]);
    let topic = TopicRef {
        name: "guarded".into(),
        id,
    };
    let p = replica_fetch(&mut c, 12, &topic, 2);
    assert_eq!(p.error_code, ErrorCode::NotLeaderOrFollower.code());
}
