//! Reading a whole partition back for the coordinators that keep their state
//! in one (`__consumer_offsets`, `__transaction_state`): every record below
//! the high watermark in log order, each with the transactional producer
//! that wrote it, and the commit and abort markers that settle those
//! producers' transactions, so a replay can apply committed transactional
//! writes and drop aborted ones as Kafka's coordinators do.

use std::os::unix::fs::FileExt;

use bytes::Bytes;
use sluice_protocol::batch::{decode_records, BatchHeader, BATCH_HEADER_LEN};

use super::{LogError, PartitionLog};

/// One thing a coordinator replays, in log order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEntry {
    /// A keyed record; `txn_producer` is the producer id of a transactional
    /// batch (its effect waits for that producer's marker).
    Record {
        key: Bytes,
        value: Option<Bytes>,
        txn_producer: Option<i64>,
    },
    /// A control batch's commit or abort marker.
    TxnMarker { producer_id: i64, commit: bool },
}

impl From<(Bytes, Option<Bytes>)> for LogEntry {
    fn from((key, value): (Bytes, Option<Bytes>)) -> Self {
        LogEntry::Record {
            key,
            value,
            txn_producer: None,
        }
    }
}

/// A control record's key: version (i16) then type (i16: 0 abort, 1 commit).
pub fn marker_is_commit(key: &[u8]) -> Option<bool> {
    match key.get(2..4)? {
        [0, 0] => Some(false),
        [0, 1] => Some(true),
        _ => None,
    }
}

impl PartitionLog {
    /// Every record and marker below the high watermark, in log order.
    pub fn read_all_entries(&self) -> Result<Vec<LogEntry>, LogError> {
        let st = self.state.borrow();
        let mut out = Vec::new();
        for seg in st.segments.values() {
            let mut buf = vec![0u8; seg.size as usize];
            seg.reader.read_exact_at(&mut buf, 0)?;
            let buf = Bytes::from(buf);
            let mut pos = 0usize;
            while pos + BATCH_HEADER_LEN <= buf.len() {
                let Ok(h) = BatchHeader::parse(&buf[pos..]) else {
                    break;
                };
                let end = pos + h.total_len();
                if end > buf.len() || h.base_offset >= st.high_watermark {
                    break;
                }
                if h.last_offset() >= st.log_start_offset {
                    match decode_records(&buf.slice(pos..end)) {
                        Ok(records) if h.is_control() => {
                            out.extend(records.iter().filter_map(|r| {
                                let commit = marker_is_commit(r.key.as_deref()?)?;
                                Some(LogEntry::TxnMarker {
                                    producer_id: h.producer_id,
                                    commit,
                                })
                            }))
                        }
                        Ok(records) => {
                            let txn_producer = h.is_transactional().then_some(h.producer_id);
                            out.extend(records.into_iter().filter_map(|r| {
                                Some(LogEntry::Record {
                                    key: r.key?,
                                    value: r.value,
                                    txn_producer,
                                })
                            }))
                        }
                        Err(e) => {
                            tracing::warn!(topic = %self.topic, partition = self.partition, error = %e, "skipping undecodable batch")
                        }
                    }
                }
                pos = end;
            }
        }
        Ok(out)
    }

    /// Every committed (key, value) below the high watermark: what the
    /// coordinators replay when no transaction is involved.
    pub fn read_all_records(&self) -> Result<Vec<(Bytes, Option<Bytes>)>, LogError> {
        Ok(self
            .read_all_entries()?
            .into_iter()
            .filter_map(|e| match e {
                LogEntry::Record {
                    key,
                    value,
                    txn_producer: None,
                } => Some((key, value)),
                _ => None,
            })
            .collect())
    }
}
