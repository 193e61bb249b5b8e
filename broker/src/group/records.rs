//! The `__consumer_offsets` record formats, byte for byte as Apache Kafka
//! writes them: OffsetCommitKey (key version 1: group, topic, partition),
//! OffsetCommitValue (v3: offset, leader epoch, metadata, commit timestamp;
//! v1 when an explicit retention gives an expire timestamp),
//! GroupMetadataKey (key version 2: group) and GroupMetadataValue (v3).
//! Everything is big-endian, non-flexible: strings carry an i16 length (-1 =
//! null), bytes an i32 length, arrays an i32 count, and both key and value
//! open with their i16 version. Decoding is total: malformed input gives
//! `None`, never a panic. Decoders accept value versions 0-3.

use bytes::{BufMut, Bytes, BytesMut};

/// Key version of an offset commit record (0 and 1 share the layout).
pub(super) const OFFSET_KEY_VERSION: i16 = 1;
/// Key version of a group metadata record.
pub(super) const GROUP_KEY_VERSION: i16 = 2;
/// OffsetCommitValue version written when no expire timestamp is set.
pub(super) const OFFSET_VALUE_VERSION: i16 = 3;
/// GroupMetadataValue version written.
pub(super) const GROUP_VALUE_VERSION: i16 = 3;

/// A decoded record key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum RecordKey {
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    Group {
        group: String,
    },
}

/// OffsetCommitValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct OffsetValue {
    pub offset: i64,
    /// -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only from OffsetCommit v2-v4 with an explicit retention time.
    pub expire_timestamp_ms: Option<i64>,
}

/// GroupMetadataValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct GroupValue {
    pub protocol_type: String,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    /// -1 when unknown.
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberValue>,
}

/// GroupMetadataValue.MemberMetadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MemberValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

// ---------------------------------------------------------------- encoding

pub(crate) fn put_str(buf: &mut BytesMut, s: &str) {
    // Kafka strings are at most i16::MAX bytes; longer input is truncated at a
    // char boundary rather than producing an unreadable record.
    let mut end = s.len().min(i16::MAX as usize);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    buf.put_i16(end as i16);
    buf.put_slice(&s.as_bytes()[..end]);
}

fn put_nullable_str(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len().min(i32::MAX as usize) as i32);
    buf.put_slice(b);
}

pub(super) fn offset_key(group: &str, topic: &str, partition: i32) -> Bytes {
    let mut buf = BytesMut::with_capacity(2 + 2 + group.len() + 2 + topic.len() + 4);
    buf.put_i16(OFFSET_KEY_VERSION);
    put_str(&mut buf, group);
    put_str(&mut buf, topic);
    buf.put_i32(partition);
    buf.freeze()
}

pub(super) fn group_key(group: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + group.len());
    buf.put_i16(GROUP_KEY_VERSION);
    put_str(&mut buf, group);
    buf.freeze()
}

pub(super) fn offset_value(v: &OffsetValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(32 + v.metadata.len());
    match v.expire_timestamp_ms {
        // Kafka keeps the old per-offset expiry semantics in value version 1.
        Some(expire) => {
            buf.put_i16(1);
            buf.put_i64(v.offset);
            put_str(&mut buf, &v.metadata);
            buf.put_i64(v.commit_timestamp_ms);
            buf.put_i64(expire);
        }
        None => {
            buf.put_i16(OFFSET_VALUE_VERSION);
            buf.put_i64(v.offset);
            buf.put_i32(v.leader_epoch);
            put_str(&mut buf, &v.metadata);
            buf.put_i64(v.commit_timestamp_ms);
        }
    }
    buf.freeze()
}

pub(super) fn group_value(v: &GroupValue) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(GROUP_VALUE_VERSION);
    put_str(&mut buf, &v.protocol_type);
    buf.put_i32(v.generation);
    put_nullable_str(&mut buf, v.protocol.as_deref());
    put_nullable_str(&mut buf, v.leader.as_deref());
    buf.put_i64(v.current_state_timestamp_ms);
    buf.put_i32(v.members.len() as i32);
    for m in &v.members {
        put_str(&mut buf, &m.member_id);
        put_nullable_str(&mut buf, m.group_instance_id.as_deref());
        put_str(&mut buf, &m.client_id);
        put_str(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

// ---------------------------------------------------------------- decoding

/// A bounds-checked big-endian reader over a record.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    owner: Option<&'a Bytes>,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a Bytes) -> Self {
        Reader {
            buf: bytes,
            owner: Some(bytes),
            pos: 0,
        }
    }

    pub(crate) fn from_slice(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            owner: None,
            pos: 0,
        }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn i8(&mut self) -> Option<i8> {
        Some(i8::from_be_bytes(self.take(1)?.try_into().ok()?))
    }

    pub(crate) fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }

    pub(crate) fn nullable_string(&mut self) -> Option<Option<String>> {
        let len = self.i16()?;
        if len < 0 {
            return Some(None);
        }
        let raw = self.take(len as usize)?;
        Some(Some(std::str::from_utf8(raw).ok()?.to_owned()))
    }

    pub(crate) fn string(&mut self) -> Option<String> {
        self.nullable_string()?
    }

    pub(crate) fn bytes(&mut self) -> Option<Bytes> {
        let len = self.i32()?;
        if len < 0 {
            return Some(Bytes::new());
        }
        let start = self.pos;
        self.take(len as usize)?;
        Some(match self.owner {
            Some(owner) => owner.slice(start..start + len as usize),
            None => Bytes::copy_from_slice(&self.buf[start..start + len as usize]),
        })
    }

    /// An array count, rejected when it could not possibly fit in what is left
    /// (so a corrupt count never drives a huge allocation).
    pub(crate) fn count(&mut self, min_elem_size: usize) -> Option<usize> {
        let n = self.i32()?;
        if n < 0 {
            return Some(0);
        }
        let n = n as usize;
        let left = self.buf.len() - self.pos;
        if n.checked_mul(min_elem_size.max(1))? > left {
            return None;
        }
        Some(n)
    }
}

pub(super) fn decode_key(key: &Bytes) -> Option<RecordKey> {
    let mut r = Reader::new(key);
    match r.i16()? {
        0 | 1 => Some(RecordKey::Offset {
            group: r.string()?,
            topic: r.string()?,
            partition: r.i32()?,
        }),
        2 => Some(RecordKey::Group { group: r.string()? }),
        _ => None,
    }
}

pub(super) fn decode_offset_value(value: &Bytes) -> Option<OffsetValue> {
    let mut r = Reader::new(value);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    let expire_timestamp_ms = if version == 1 {
        Some(r.i64()?).filter(|t| *t >= 0)
    } else {
        None
    };
    Some(OffsetValue {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp_ms,
        expire_timestamp_ms,
    })
}

pub(super) fn decode_group_value(value: &Bytes) -> Option<GroupValue> {
    let mut r = Reader::new(value);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let current_state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let n = r.count(2 + 2 + 2 + 4 + 4 + 4)?;
    let mut members = Vec::with_capacity(n);
    for _ in 0..n {
        let member_id = r.string()?;
        let group_instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { -1 };
        let session_timeout_ms = r.i32()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 {
            session_timeout_ms
        } else {
            rebalance_timeout_ms
        };
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(MemberValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(GroupValue {
        protocol_type,
        generation,
        protocol,
        leader,
        current_state_timestamp_ms,
        members,
    })
}

/// The topics of a consumer-protocol subscription. Like Kafka, it reads the
/// version-0 prefix that every version shares (i16 version, then the topic
/// array), so future subscription versions parse too.
pub(super) fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut r = Reader::from_slice(metadata);
    let version = r.i16()?;
    if version < 0 {
        return None;
    }
    let n = r.count(2)?;
    let mut topics = Vec::with_capacity(n);
    for _ in 0..n {
        topics.push(r.string()?);
    }
    Some(topics)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_key_layout() {
        let k = offset_key("g", "t", 7);
        assert_eq!(&k[..], &[0, 1, 0, 1, b'g', 0, 1, b't', 0, 0, 0, 7]);
        assert_eq!(
            decode_key(&k),
            Some(RecordKey::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 7
            })
        );
        let g = group_key("grp");
        assert_eq!(&g[..], &[0, 2, 0, 3, b'g', b'r', b'p']);
        assert_eq!(
            decode_key(&g),
            Some(RecordKey::Group {
                group: "grp".into()
            })
        );
    }

    #[test]
    fn offset_value_layout() {
        let v = OffsetValue {
            offset: 5,
            leader_epoch: 2,
            metadata: "m".into(),
            commit_timestamp_ms: 9,
            expire_timestamp_ms: None,
        };
        let b = offset_value(&v);
        let mut want = vec![0, 3];
        want.extend_from_slice(&5i64.to_be_bytes());
        want.extend_from_slice(&2i32.to_be_bytes());
        want.extend_from_slice(&[0, 1, b'm']);
        want.extend_from_slice(&9i64.to_be_bytes());
        assert_eq!(&b[..], &want[..]);
        assert_eq!(decode_offset_value(&b), Some(v.clone()));
        let v1 = OffsetValue {
            expire_timestamp_ms: Some(100),
            leader_epoch: -1,
            ..v
        };
        assert_eq!(decode_offset_value(&offset_value(&v1)), Some(v1));
    }

    #[test]
    fn group_value_round_trip_and_truncation() {
        let v = GroupValue {
            protocol_type: "consumer".into(),
            generation: 3,
            protocol: Some("range".into()),
            leader: Some("m1".into()),
            current_state_timestamp_ms: 42,
            members: vec![MemberValue {
                member_id: "m1".into(),
                group_instance_id: Some("i1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300,
                session_timeout_ms: 100,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let b = group_value(&v);
        assert_eq!(&b[..2], &[0, 3]);
        assert_eq!(decode_group_value(&b), Some(v));
        for cut in 0..b.len() {
            assert_eq!(decode_group_value(&b.slice(..cut)), None);
        }
        // A corrupt member count does not allocate or panic.
        let mut bad = BytesMut::new();
        bad.put_i16(3);
        put_str(&mut bad, "consumer");
        bad.put_i32(1);
        bad.put_i16(-1);
        bad.put_i16(-1);
        bad.put_i64(0);
        bad.put_i32(i32::MAX);
        assert_eq!(decode_group_value(&bad.freeze()), None);
    }

    #[test]
    fn subscription_prefix() {
        let mut b = BytesMut::new();
        b.put_i16(3);
        b.put_i32(2);
        put_str(&mut b, "a");
        put_str(&mut b, "b");
        b.put_i32(-1); // user data, ignored
        assert_eq!(
            subscription_topics(&b),
            Some(vec!["a".to_string(), "b".to_string()])
        );
        assert_eq!(subscription_topics(&[0, 0, 0, 0, 0, 9]), None);
    }
}
