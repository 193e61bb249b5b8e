//! Transaction markers: Kafka's v2 control records that end a producer's
//! transaction on a partition. A marker is a control batch (attributes
//! control + transactional) of the producer's id and epoch, no sequence,
//! holding one record whose key is version 0 (i16) and type (i16: 0 abort,
//! 1 commit) and whose value is version 0 (i16) and the coordinator epoch
//! (i32). This module builds marker batches for the leader and reads them
//! back wherever the log is interpreted (appends, followers, recovery).

use bytes::Bytes;
use sluice_protocol::batch::{self, BatchBuilder, BatchHeader};
use sluice_protocol::compression::Compression;

/// Control record type of an abort marker.
pub const CONTROL_TYPE_ABORT: i16 = 0;
/// Control record type of a commit marker.
pub const CONTROL_TYPE_COMMIT: i16 = 1;

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndTxnMarker {
    pub commit: bool,
    pub coordinator_epoch: i32,
}

impl EndTxnMarker {
    /// The control record's key: version 0, then the type.
    pub fn key(&self) -> [u8; 4] {
        let kind = if self.commit {
            CONTROL_TYPE_COMMIT
        } else {
            CONTROL_TYPE_ABORT
        };
        let mut k = [0u8; 4];
        k[2..].copy_from_slice(&kind.to_be_bytes());
        k
    }

    /// The control record's value: version 0, then the coordinator epoch.
    pub fn value(&self) -> [u8; 6] {
        let mut v = [0u8; 6];
        v[2..].copy_from_slice(&self.coordinator_epoch.to_be_bytes());
        v
    }

    /// Reads a marker from a control record's key and value; `None` for
    /// another control type (Kafka has others, none of which ends a
    /// transaction) or a record too short to be one.
    pub fn parse(key: &[u8], value: Option<&[u8]>) -> Option<EndTxnMarker> {
        let kind = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
        let commit = match kind {
            CONTROL_TYPE_ABORT => false,
            CONTROL_TYPE_COMMIT => true,
            _ => return None,
        };
        let coordinator_epoch = value
            .and_then(|v| v.get(2..6))
            .and_then(|b| b.try_into().ok())
            .map(i32::from_be_bytes)
            .unwrap_or(-1);
        Some(EndTxnMarker {
            commit,
            coordinator_epoch,
        })
    }

    /// The marker of a whole control batch (header and records), if it is
    /// one; `None` for a data batch or one that does not decode.
    pub fn of_batch(h: &BatchHeader, bytes: &Bytes) -> Option<EndTxnMarker> {
        if !h.is_control() {
            return None;
        }
        let records = batch::decode_records(bytes).ok()?;
        let first = records.first()?;
        EndTxnMarker::parse(first.key.as_deref()?, first.value.as_deref())
    }

    /// A marker batch for `producer_id`/`producer_epoch` stamped `now_ms`
    /// (base offset 0: the appender assigns the real one).
    pub fn build_batch(&self, producer_id: i64, producer_epoch: i16, now_ms: i64) -> Bytes {
        let mut b = BatchBuilder::new(Compression::None)
            .with_producer(producer_id, producer_epoch, -1)
            .with_transactional(true)
            .with_control(true);
        // One record of 10 bytes of key and value cannot exceed the builder's cap.
        let pushed = b.push(now_ms, Some(&self.key()), Some(&self.value()), &[]);
        debug_assert!(pushed.is_ok());
        b.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_batches_round_trip() {
        for commit in [false, true] {
            let m = EndTxnMarker {
                commit,
                coordinator_epoch: 7,
            };
            let bytes = m.build_batch(42, 3, 1_000);
            let h = batch::validate_batch(&bytes).expect("valid batch");
            assert!(h.is_control() && h.is_transactional());
            assert_eq!(
                (h.producer_id, h.producer_epoch, h.base_sequence),
                (42, 3, -1)
            );
            assert_eq!(EndTxnMarker::of_batch(&h, &bytes), Some(m));
        }
        // Kafka's layout, byte for byte: key = 0,0 then type; value = 0,0 then epoch.
        let m = EndTxnMarker {
            commit: true,
            coordinator_epoch: 0x01020304,
        };
        assert_eq!(m.key(), [0, 0, 0, 1]);
        assert_eq!(m.value(), [0, 0, 1, 2, 3, 4]);
        assert_eq!(EndTxnMarker::parse(&[0, 0, 0, 2], None), None);
        assert_eq!(EndTxnMarker::parse(&[0, 0], None), None);
    }
}
