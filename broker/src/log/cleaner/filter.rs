//! What cleaning does to one record batch, as Kafka's `MemoryRecords.filterTo`
//! does it: a record stays iff it has a key and is the latest record for its
//! key (its offset is at least the key map's, or the key is not in the map);
//! a tombstone (null value) stays until its batch's delete horizon has
//! passed. A batch whose records all stay is kept byte for byte; otherwise
//! the survivors are re-encoded into a batch with the same base offset, last
//! offset delta, producer id/epoch/base sequence, leader epoch and codec, and
//! a fresh CRC. A batch left with no record disappears, unless it is the
//! last batch of an idempotent producer: then its header stays, empty, so
//! the producer's sequence state survives (Kafka's rule). Every record of
//! an aborted transaction goes (Kafka's cleaner discards them too), and the
//! key map never counted them, so an aborted value never displaces a
//! committed one. Transaction markers (control batches, [`filter_marker`])
//! stay while their transaction has records in the log; once it has none
//! they get a delete horizon like tombstones, and go after it.
//!
//! Tombstones follow KIP-534: the first clean of a batch holding tombstones
//! stamps it with a delete horizon (`now + delete.retention.ms`, kept in the
//! base timestamp with attribute bit 6, record timestamps re-based on it);
//! a later clean after the horizon drops them.

use std::collections::HashMap;

use bytes::Bytes;
use sluice_protocol::batch::{self, BatchBuilder, BatchError, BatchHeader, Record};
use sluice_protocol::compression::Compression;

use super::key_map::KeyMap;

/// Attribute bits a rewrite sets itself.
const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_DELETE_HORIZON: i16 = 0x40;
/// Where the CRC sits and where its coverage starts, in a v2 batch.
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;

/// What the filter needs besides the batch.
pub struct FilterContext<'a> {
    pub map: &'a KeyMap,
    pub now_ms: i64,
    pub delete_retention_ms: i64,
    /// Producer id -> last offset of that producer's last batch in the log.
    pub last_batch_of_producer: &'a HashMap<i64, i64>,
    /// The log's aborted transactions.
    pub aborted: &'a AbortedRanges,
}

/// A log's aborted transactions (from its `.txnindex` entries), per
/// producer: (first offset, abort marker offset).
#[derive(Debug, Default)]
pub struct AbortedRanges(HashMap<i64, Vec<(i64, i64)>>);

impl AbortedRanges {
    pub fn insert(&mut self, producer_id: i64, first_offset: i64, marker_offset: i64) {
        self.0
            .entry(producer_id)
            .or_default()
            .push((first_offset, marker_offset));
    }

    /// Whether `h` is a data batch of an aborted transaction.
    pub fn contains(&self, h: &BatchHeader) -> bool {
        h.is_transactional()
            && !h.is_control()
            && self.0.get(&h.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|(first, marker)| *first <= h.base_offset && h.base_offset < *marker)
            })
    }
}

/// The outcome for one batch.
#[derive(Debug, PartialEq, Eq)]
pub enum Filtered {
    /// Keep the batch's bytes as they are.
    Unchanged,
    /// Nothing of the batch stays.
    Removed,
    /// The batch becomes these bytes (same base offset).
    Rewritten(Vec<u8>),
}

/// What one batch contributed, for the cleaner's figures.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FilterStats {
    pub records_removed: u64,
    /// The delete horizon of the batch as it stays (tombstones still in it).
    pub delete_horizon: Option<i64>,
}

/// Decides what cleaning does to `bytes`, one whole v2 batch with header `h`.
pub fn filter_batch(
    bytes: &Bytes,
    h: &BatchHeader,
    ctx: &FilterContext<'_>,
) -> Result<(Filtered, FilterStats), BatchError> {
    if h.is_control() {
        return Ok((Filtered::Unchanged, FilterStats::default()));
    }
    let aborted = ctx.aborted.contains(h);
    let records = batch::decode_records(bytes)?;
    let horizon_passed = h.has_delete_horizon() && ctx.now_ms >= h.base_timestamp;
    let total = records.len();
    let retained: Vec<Record> = records
        .into_iter()
        .filter(|r| {
            let Some(key) = r.key.as_deref() else {
                return false;
            };
            if aborted {
                return false;
            }
            let latest = ctx.map.get(key).is_none_or(|newest| r.offset(h) >= newest);
            latest && !(r.value.is_none() && horizon_passed)
        })
        .collect();
    let removed = (total - retained.len()) as u64;
    let has_tombstones = retained.iter().any(|r| r.value.is_none());
    let horizon = match (has_tombstones, h.has_delete_horizon()) {
        (false, _) => None,
        (true, true) => Some(h.base_timestamp),
        (true, false) => Some(ctx.now_ms.saturating_add(ctx.delete_retention_ms)),
    };
    let stats = FilterStats {
        records_removed: removed,
        delete_horizon: horizon,
    };
    if removed == 0 && horizon.is_some() == h.has_delete_horizon() {
        return Ok((Filtered::Unchanged, stats));
    }
    if retained.is_empty() {
        let last_of_producer = h.has_producer_id()
            && ctx.last_batch_of_producer.get(&h.producer_id) == Some(&h.last_offset());
        if !last_of_producer {
            return Ok((Filtered::Removed, stats));
        }
    }
    Ok((Filtered::Rewritten(rebuild(h, &retained, horizon)?), stats))
}

/// What cleaning does to a transaction marker `h` (a control batch), given
/// whether its transaction still has records in the log (what the pass
/// kept of that producer's transactional batches since its previous
/// marker). As Kafka's cleaner does it: a marker of a transaction with
/// records stays as it is; one whose records are all gone (an aborted
/// transaction's always, a committed one's once superseded) is stamped
/// with a delete horizon (`now + delete.retention.ms`) at its first such
/// clean, and removed by a clean after that horizon, so a consumer that
/// read the transaction's records before then still reads its end.
pub fn filter_marker(
    bytes: &Bytes,
    h: &BatchHeader,
    ctx: &FilterContext<'_>,
    transaction_has_records: bool,
) -> Result<(Filtered, FilterStats), BatchError> {
    if transaction_has_records {
        return Ok((Filtered::Unchanged, FilterStats::default()));
    }
    if h.has_delete_horizon() {
        if ctx.now_ms >= h.base_timestamp {
            return Ok((Filtered::Removed, FilterStats::default()));
        }
        let stats = FilterStats {
            records_removed: 0,
            delete_horizon: Some(h.base_timestamp),
        };
        return Ok((Filtered::Unchanged, stats));
    }
    let horizon = ctx.now_ms.saturating_add(ctx.delete_retention_ms);
    let records = batch::decode_records(bytes)?;
    let stats = FilterStats {
        records_removed: 0,
        delete_horizon: Some(horizon),
    };
    Ok((
        Filtered::Rewritten(rebuild(h, &records, Some(horizon))?),
        stats,
    ))
}

/// Re-encodes `retained` (records of the batch `h`) as a batch with `h`'s
/// base offset, last offset delta, producer fields, leader epoch and codec,
/// base timestamp `horizon` (with the delete-horizon bit) when given, and a
/// fresh CRC. No records gives the bare header Kafka keeps for a producer.
pub fn rebuild(
    h: &BatchHeader,
    retained: &[Record],
    horizon: Option<i64>,
) -> Result<Vec<u8>, BatchError> {
    // Record timestamps as stored: base + delta (LogAppendTime batches keep
    // theirs too; readers use the max timestamp for them).
    let stored_ts = |r: &Record| h.base_timestamp.wrapping_add(r.timestamp_delta);
    let base_ts = match horizon {
        Some(t) => t,
        None if h.has_delete_horizon() => retained.first().map_or(h.max_timestamp, stored_ts),
        None => h.base_timestamp,
    };
    let mut builder = BatchBuilder::new(Compression::None).with_base_timestamp(base_ts);
    let mut max_ts = i64::MIN;
    for r in retained {
        let ts = stored_ts(r);
        max_ts = max_ts.max(ts);
        builder.push_with_offset_delta(
            r.offset_delta,
            ts,
            r.key.as_deref(),
            r.value.as_deref(),
            &r.headers,
        )?;
    }
    let plain = builder.build();
    let plain_records = plain.get(batch::BATCH_HEADER_LEN..).unwrap_or_default();
    // An empty batch says "uncompressed", as Kafka's empty headers do: a
    // codec over zero bytes is no valid frame.
    let mut codec = if retained.is_empty() {
        Compression::None
    } else {
        h.compression()?
    };
    let mut out = Vec::with_capacity(batch::BATCH_HEADER_LEN + plain_records.len());
    out.resize(batch::BATCH_HEADER_LEN, 0);
    if codec.compress(plain_records, &mut out).is_err() {
        // Still a valid batch, and its attributes say so.
        codec = Compression::None;
        out.truncate(batch::BATCH_HEADER_LEN);
        out.extend_from_slice(plain_records);
    }
    let mut attributes =
        (h.attributes & !ATTR_COMPRESSION_MASK & !ATTR_DELETE_HORIZON) | i16::from(codec.id());
    if horizon.is_some() {
        attributes |= ATTR_DELETE_HORIZON;
    }
    let max_timestamp = if h.timestamp_type_log_append() || retained.is_empty() {
        h.max_timestamp
    } else {
        max_ts
    };
    let header = BatchHeader {
        batch_length: i32::try_from(out.len() - batch::LOG_OVERHEAD)
            .map_err(|_| BatchError::TooLarge)?,
        crc: 0,
        attributes,
        base_timestamp: base_ts,
        max_timestamp,
        records_count: retained.len() as i32,
        ..*h
    };
    out[..batch::BATCH_HEADER_LEN].copy_from_slice(&header.encode());
    let crc = crc32c::crc32c(&out[CRC_FROM..]);
    out[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}
