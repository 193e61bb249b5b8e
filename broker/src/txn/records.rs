//! The `__transaction_state` record formats as Apache Kafka writes them:
//! TransactionLogKey (version 0: the transactional id) and
//! TransactionLogValue (version 0: producer id and epoch, timeout, status,
//! the partitions in the transaction grouped by topic, last-update and start
//! timestamps). Big-endian and non-flexible like the `__consumer_offsets`
//! formats, whose reader and string writer this module shares. A tombstone
//! (no value) removes an expired transactional id. Decoding is total:
//! malformed input gives `None`.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};

use super::TxnState;
use crate::group::records::{put_str, Reader};

const KEY_VERSION: i16 = 0;
const VALUE_VERSION: i16 = 0;

/// TransactionLogValue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnValue {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// -1 when no transaction has started.
    pub start_ms: i64,
}

pub fn key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(KEY_VERSION);
    put_str(&mut buf, transactional_id);
    buf.freeze()
}

pub fn value(v: &TxnValue) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, p) in &v.partitions {
        by_topic.entry(topic).or_default().push(*p);
    }
    let mut buf = BytesMut::with_capacity(64 + 16 * v.partitions.len());
    buf.put_i16(VALUE_VERSION);
    buf.put_i64(v.producer_id);
    buf.put_i16(v.producer_epoch);
    buf.put_i32(v.timeout_ms);
    buf.put_i8(v.state.status());
    buf.put_i32(by_topic.len() as i32);
    for (topic, ps) in by_topic {
        put_str(&mut buf, topic);
        buf.put_i32(ps.len() as i32);
        for p in ps {
            buf.put_i32(p);
        }
    }
    buf.put_i64(v.last_update_ms);
    buf.put_i64(v.start_ms);
    buf.freeze()
}

pub fn decode_key(key: &Bytes) -> Option<String> {
    let mut r = Reader::new(key);
    if r.i16()? != KEY_VERSION {
        return None;
    }
    r.string()
}

pub fn decode_value(value: &Bytes) -> Option<TxnValue> {
    let mut r = Reader::new(value);
    if r.i16()? != VALUE_VERSION {
        return None;
    }
    let producer_id = r.i64()?;
    let producer_epoch = r.i16()?;
    let timeout_ms = r.i32()?;
    let state = TxnState::from_status(r.i8()?)?;
    let mut partitions = BTreeSet::new();
    for _ in 0..r.count(6)? {
        let topic = r.string()?;
        for _ in 0..r.count(4)? {
            partitions.insert((topic.clone(), r.i32()?));
        }
    }
    Some(TxnValue {
        producer_id,
        producer_epoch,
        timeout_ms,
        state,
        partitions,
        last_update_ms: r.i64()?,
        start_ms: r.i64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_bytes_match_kafkas_layout() {
        let v = TxnValue {
            producer_id: 42,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [
                ("a".to_string(), 1),
                ("a".to_string(), 0),
                ("b".to_string(), 2),
            ]
            .into_iter()
            .collect(),
            last_update_ms: 1000,
            start_ms: 900,
        };
        let bytes = value(&v);
        assert_eq!(decode_value(&bytes), Some(v));
        // version, pid, epoch, timeout, status 1 (Ongoing), 2 topics.
        assert_eq!(&bytes[..2], &[0, 0]);
        assert_eq!(&bytes[2..10], &42i64.to_be_bytes());
        assert_eq!(bytes[16], 1);
        assert_eq!(&bytes[17..21], &2i32.to_be_bytes());
        // "a": [0, 1]
        assert_eq!(&bytes[21..24], &[0, 1, b'a']);
        assert_eq!(&bytes[24..28], &2i32.to_be_bytes());
        assert_eq!(decode_key(&key("tx-1")).as_deref(), Some("tx-1"));
        assert_eq!(&key("tx")[..], &[0, 0, 0, 2, b't', b'x']);
    }

    #[test]
    fn damaged_records_decode_to_none() {
        let v = TxnValue {
            producer_id: 1,
            producer_epoch: 0,
            timeout_ms: 1,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: 0,
            start_ms: -1,
        };
        let bytes = value(&v);
        for cut in 0..bytes.len() {
            assert_eq!(decode_value(&bytes.slice(..cut)), None, "cut at {cut}");
        }
        let mut bad = bytes.to_vec();
        bad[16] = 42; // no such status
        assert_eq!(decode_value(&Bytes::from(bad)), None);
        assert_eq!(decode_key(&Bytes::from_static(&[0, 9])), None);
    }
}
