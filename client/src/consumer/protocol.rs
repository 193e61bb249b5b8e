//! The "consumer" embedded protocol carried opaquely by JoinGroup and
//! SyncGroup: a member's subscription (ConsumerProtocolSubscription,
//! versions 0-3: topics, user data, owned partitions, generation, rack) and
//! the leader's assignment (ConsumerProtocolAssignment). Both are a 2-byte
//! version followed by the struct at that version; a newer version than we
//! know is read as our newest, as the Java client does (fields are only
//! ever appended).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::{
    self as cpa, ConsumerProtocolAssignment,
};
use kafka_protocol::messages::consumer_protocol_subscription::{
    self as cps, ConsumerProtocolSubscription,
};
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::assignor::MemberSubscription;
use super::TopicPartition;
use crate::error::{Error, Result};

/// The subscription version we write (the newest).
pub const SUBSCRIPTION_VERSION: i16 = 3;
/// The assignment version we write.
pub const ASSIGNMENT_VERSION: i16 = 3;

fn group_by_topic(parts: &[TopicPartition]) -> Vec<(String, Vec<i32>)> {
    let mut sorted: Vec<&TopicPartition> = parts.iter().collect();
    sorted.sort();
    let mut out: Vec<(String, Vec<i32>)> = Vec::new();
    for tp in sorted {
        match out.last_mut() {
            Some((t, ps)) if *t == tp.topic => ps.push(tp.partition),
            _ => out.push((tp.topic.clone(), vec![tp.partition])),
        }
    }
    out
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Encodes this member's subscription.
pub fn encode_subscription(
    topics: &[String],
    user_data: Option<Bytes>,
    owned: &[TopicPartition],
    generation: i32,
    rack: Option<&str>,
) -> Result<Bytes> {
    let mut s = ConsumerProtocolSubscription::default();
    let mut sorted = topics.to_vec();
    sorted.sort();
    sorted.dedup();
    s.topics = sorted.into_iter().map(StrBytes::from_string).collect();
    s.user_data = user_data;
    s.owned_partitions = group_by_topic(owned)
        .into_iter()
        .map(|(t, ps)| {
            let mut tp = cps::TopicPartition::default();
            tp.topic = name(&t);
            tp.partitions = ps;
            tp
        })
        .collect();
    s.generation_id = generation;
    s.rack_id = rack.map(|r| StrBytes::from_string(r.to_string()));
    let mut buf = BytesMut::new();
    buf.put_i16(SUBSCRIPTION_VERSION);
    s.encode(&mut buf, SUBSCRIPTION_VERSION)
        .map_err(|e| Error::Protocol(format!("encoding subscription: {e}")))?;
    Ok(buf.freeze())
}

fn read_version(buf: &mut Bytes, what: &str) -> Result<i16> {
    if buf.remaining() < 2 {
        return Err(Error::Protocol(format!("{what} shorter than its version")));
    }
    let v = buf.get_i16();
    if v < 0 {
        return Err(Error::Protocol(format!("{what} has negative version {v}")));
    }
    Ok(v)
}

/// Decodes a member's subscription from its JoinGroup metadata.
pub fn decode_subscription(
    member_id: &str,
    group_instance_id: Option<String>,
    metadata: &Bytes,
) -> Result<MemberSubscription> {
    let mut buf = metadata.clone();
    let version = read_version(&mut buf, "subscription")?.min(SUBSCRIPTION_VERSION);
    let s = ConsumerProtocolSubscription::decode(&mut buf, version)
        .map_err(|e| Error::Protocol(format!("subscription of member {member_id}: {e}")))?;
    let owned = s
        .owned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| TopicPartition::new(tp.topic.0.to_string(), *p))
        })
        .collect();
    // Before v2 the cooperative-sticky assignor kept the generation in the
    // user data (4 bytes).
    let generation = if version >= 2 {
        s.generation_id
    } else {
        s.user_data
            .as_ref()
            .filter(|u| u.len() == 4)
            .map(|u| i32::from_be_bytes([u[0], u[1], u[2], u[3]]))
            .unwrap_or(-1)
    };
    Ok(MemberSubscription {
        member_id: member_id.to_string(),
        group_instance_id,
        topics: s.topics.iter().map(|t| t.to_string()).collect(),
        owned_partitions: owned,
        generation,
        user_data: s.user_data,
        rack_id: s.rack_id.map(|r| r.to_string()),
    })
}

/// Encodes an assignment for SyncGroup.
pub fn encode_assignment(parts: &[TopicPartition]) -> Result<Bytes> {
    let mut a = ConsumerProtocolAssignment::default();
    a.assigned_partitions = group_by_topic(parts)
        .into_iter()
        .map(|(t, ps)| {
            let mut tp = cpa::TopicPartition::default();
            tp.topic = name(&t);
            tp.partitions = ps;
            tp
        })
        .collect();
    let mut buf = BytesMut::new();
    buf.put_i16(ASSIGNMENT_VERSION);
    a.encode(&mut buf, ASSIGNMENT_VERSION)
        .map_err(|e| Error::Protocol(format!("encoding assignment: {e}")))?;
    Ok(buf.freeze())
}

/// Decodes the assignment SyncGroup returned; empty bytes mean nothing
/// assigned.
pub fn decode_assignment(bytes: &Bytes) -> Result<Vec<TopicPartition>> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut buf = bytes.clone();
    let version = read_version(&mut buf, "assignment")?.min(ASSIGNMENT_VERSION);
    let a = ConsumerProtocolAssignment::decode(&mut buf, version)
        .map_err(|e| Error::Protocol(format!("assignment: {e}")))?;
    let mut out: Vec<TopicPartition> = a
        .assigned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(move |p| TopicPartition::new(tp.topic.0.to_string(), *p))
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_round_trip() {
        let owned = vec![
            TopicPartition::new("b", 1),
            TopicPartition::new("a", 0),
            TopicPartition::new("b", 0),
        ];
        let bytes = encode_subscription(
            &["b".into(), "a".into()],
            Some(Bytes::from_static(&[0, 0, 0, 7])),
            &owned,
            7,
            None,
        )
        .unwrap();
        assert_eq!(&bytes[..2], &[0, 3]);
        let m = decode_subscription("m1", Some("i".into()), &bytes).unwrap();
        assert_eq!(m.topics, vec!["a", "b"]);
        assert_eq!(m.generation, 7);
        let mut got = m.owned_partitions.clone();
        got.sort();
        assert_eq!(
            got,
            vec![
                TopicPartition::new("a", 0),
                TopicPartition::new("b", 0),
                TopicPartition::new("b", 1)
            ]
        );
    }

    #[test]
    fn java_v0_subscription_bytes() {
        // Java ConsumerProtocol.serializeSubscription(new Subscription(["foo","bar"]), 0):
        // version 0, array of 2 strings, null user data.
        let mut b = BytesMut::new();
        b.put_i16(0);
        b.put_i32(2);
        b.put_i16(3);
        b.put_slice(b"foo");
        b.put_i16(3);
        b.put_slice(b"bar");
        b.put_i32(-1);
        let m = decode_subscription("m", None, &b.freeze()).unwrap();
        assert_eq!(m.topics, vec!["foo", "bar"]);
        assert!(m.owned_partitions.is_empty());
        assert_eq!(m.generation, -1);
    }

    #[test]
    fn assignment_round_trip_and_future_version() {
        let parts = vec![TopicPartition::new("t", 2), TopicPartition::new("t", 0)];
        let bytes = encode_assignment(&parts).unwrap();
        assert_eq!(
            decode_assignment(&bytes).unwrap(),
            vec![TopicPartition::new("t", 0), TopicPartition::new("t", 2)]
        );
        // A v4 assignment (unknown to us) with a trailing field still reads.
        let mut v4 = BytesMut::new();
        v4.put_i16(4);
        v4.put_slice(&bytes[2..]);
        v4.put_slice(&[1, 2, 3]);
        assert_eq!(decode_assignment(&v4.freeze()).unwrap().len(), 2);
        assert!(decode_assignment(&Bytes::new()).unwrap().is_empty());
        assert!(decode_assignment(&Bytes::from_static(&[0])).is_err());
    }
}
