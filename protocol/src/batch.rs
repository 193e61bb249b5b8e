//! Kafka's v2 record batch (magic 2), the unit producers send, the log
//! stores and fetches return. This module owns its byte layout: parsing and
//! validating the 61-byte header and CRC-32C without touching the records
//! (the broker's hot path), in-place patches of the fields the broker
//! assigns, recovery scans over segment bytes, and the full record codec
//! (varint-framed records, headers, compression) for clients, internal
//! topics and tests.
//!
//! Layout (big-endian): baseOffset i64 @0, batchLength i32 @8 (bytes after
//! this field), partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17
//! (CRC-32C of bytes 21..end), attributes i16 @21, lastOffsetDelta i32 @23,
//! baseTimestamp i64 @27, maxTimestamp i64 @35, producerId i64 @43,
//! producerEpoch i16 @51, baseSequence i32 @53, recordsCount i32 @57, then
//! the (possibly compressed) records.

use bytes::Bytes;

use crate::compression::{Compression, CompressionError, DEFAULT_MAX_DECOMPRESSED_LEN};
use crate::error::ErrorCode;
use crate::varint::{
    decode_varint, decode_varlong, encode_varint, encode_varlong, varint_len, varlong_len,
};

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// baseOffset + batchLength: the bytes `batch_length` does not count.
pub const LOG_OVERHEAD: usize = 12;
/// Smallest legal `batch_length`: a header with no records.
pub const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;
/// The only record format this codec speaks.
pub const MAGIC_V2: i8 = 2;

const OFF_BASE_OFFSET: usize = 0;
const OFF_BATCH_LENGTH: usize = 8;
const OFF_LEADER_EPOCH: usize = 12;
const OFF_MAGIC: usize = 16;
const OFF_CRC: usize = 17;
/// CRC coverage starts here and runs to the end of the batch.
const OFF_ATTRIBUTES: usize = 21;
const OFF_LAST_OFFSET_DELTA: usize = 23;
const OFF_BASE_TIMESTAMP: usize = 27;
const OFF_MAX_TIMESTAMP: usize = 35;
const OFF_PRODUCER_ID: usize = 43;
const OFF_PRODUCER_EPOCH: usize = 51;
const OFF_BASE_SEQUENCE: usize = 53;
const OFF_RECORDS_COUNT: usize = 57;

const ATTR_COMPRESSION_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;
const ATTR_DELETE_HORIZON: i16 = 0x40;

/// Smallest encoded record: length, attributes, timestamp delta, offset
/// delta, key length, value length, header count, one byte each. Used to
/// bound allocations by what the input could possibly hold.
const MIN_RECORD_LEN: usize = 7;

/// Cap on the records area a [`BatchBuilder`] accepts, far past any Kafka
/// limit, so that lengths always fit the wire's i32 even after a codec
/// expands incompressible data.
pub const MAX_BUILDER_RECORDS_BYTES: usize = 1 << 30;

/// Why a batch was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("record batch truncated")]
    Truncated,
    /// `batch_length` below the 49-byte minimum (or negative).
    #[error("invalid record batch length")]
    InvalidLength,
    /// A magic other than 2 (legacy message sets are not supported).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// Stored CRC (`expected`) differs from the computed one (`actual`).
    #[error("record batch crc mismatch: stored {expected:#010x}, computed {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    /// Attribute bits 0-2 name no codec Kafka defines.
    #[error("unknown compression codec id {0}")]
    UnsupportedCompression(u8),
    /// The codec failed, or the output passed the decompression cap.
    #[error("record batch compression: {0}")]
    Compression(String),
    /// The records inside the batch do not parse.
    #[error("corrupt record batch: {0}")]
    Corrupt(&'static str),
    /// A [`BatchBuilder`] was handed more than [`MAX_BUILDER_RECORDS_BYTES`].
    #[error("record batch too large to encode")]
    TooLarge,
}

impl BatchError {
    /// The error code a Kafka broker answers a Produce partition with.
    ///
    /// - Damage (CRC, lengths, truncation, unparsable records, codec
    ///   failures): CORRUPT_MESSAGE (2), as `CorruptRecordException`.
    /// - A non-v2 magic: INVALID_RECORD (87), because Kafka's
    ///   `ProduceRequest.validateRecords` throws `InvalidRecordException` for
    ///   it on every produce version it still serves (v3+).
    /// - An undefined codec id: UNSUPPORTED_COMPRESSION_TYPE (76). Kafka
    ///   itself only reaches an `IllegalArgumentException` there (surfacing
    ///   as UNKNOWN_SERVER_ERROR); 76 is the code that says what is wrong.
    /// - TooLarge (builder only): MESSAGE_TOO_LARGE (10).
    pub fn kafka_error_code(&self) -> ErrorCode {
        match self {
            BatchError::Truncated
            | BatchError::InvalidLength
            | BatchError::CrcMismatch { .. }
            | BatchError::Compression(_)
            | BatchError::Corrupt(_) => ErrorCode::CorruptMessage,
            BatchError::UnsupportedMagic(_) => ErrorCode::InvalidRecord,
            BatchError::UnsupportedCompression(_) => ErrorCode::UnsupportedCompressionType,
            BatchError::TooLarge => ErrorCode::MessageTooLarge,
        }
    }
}

impl From<CompressionError> for BatchError {
    fn from(e: CompressionError) -> Self {
        match e {
            CompressionError::UnknownId(id) => BatchError::UnsupportedCompression(id),
            other => BatchError::Compression(other.to_string()),
        }
    }
}

/// The fixed header of a v2 batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

// Fixed-offset readers over the header array: the offsets are constants
// inside 61 bytes, so these cannot go out of bounds.
fn arr<const N: usize>(h: &[u8; BATCH_HEADER_LEN], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&h[at..at + N]);
    a
}

impl BatchHeader {
    /// Decodes the header from the first 61 bytes of `buf`. Checks nothing
    /// but the length: the fields mean what they say only when `magic == 2`
    /// (see [`validate_batch`] for the full check).
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        let h = buf
            .first_chunk::<BATCH_HEADER_LEN>()
            .ok_or(BatchError::Truncated)?;
        Ok(BatchHeader {
            base_offset: i64::from_be_bytes(arr(h, OFF_BASE_OFFSET)),
            batch_length: i32::from_be_bytes(arr(h, OFF_BATCH_LENGTH)),
            partition_leader_epoch: i32::from_be_bytes(arr(h, OFF_LEADER_EPOCH)),
            magic: i8::from_be_bytes(arr(h, OFF_MAGIC)),
            crc: u32::from_be_bytes(arr(h, OFF_CRC)),
            attributes: i16::from_be_bytes(arr(h, OFF_ATTRIBUTES)),
            last_offset_delta: i32::from_be_bytes(arr(h, OFF_LAST_OFFSET_DELTA)),
            base_timestamp: i64::from_be_bytes(arr(h, OFF_BASE_TIMESTAMP)),
            max_timestamp: i64::from_be_bytes(arr(h, OFF_MAX_TIMESTAMP)),
            producer_id: i64::from_be_bytes(arr(h, OFF_PRODUCER_ID)),
            producer_epoch: i16::from_be_bytes(arr(h, OFF_PRODUCER_EPOCH)),
            base_sequence: i32::from_be_bytes(arr(h, OFF_BASE_SEQUENCE)),
            records_count: i32::from_be_bytes(arr(h, OFF_RECORDS_COUNT)),
        })
    }

    /// The header's 61 bytes, exactly as stored.
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut h = [0u8; BATCH_HEADER_LEN];
        let mut put = |at: usize, b: &[u8]| h[at..at + b.len()].copy_from_slice(b);
        put(OFF_BASE_OFFSET, &self.base_offset.to_be_bytes());
        put(OFF_BATCH_LENGTH, &self.batch_length.to_be_bytes());
        put(OFF_LEADER_EPOCH, &self.partition_leader_epoch.to_be_bytes());
        put(OFF_MAGIC, &self.magic.to_be_bytes());
        put(OFF_CRC, &self.crc.to_be_bytes());
        put(OFF_ATTRIBUTES, &self.attributes.to_be_bytes());
        put(OFF_LAST_OFFSET_DELTA, &self.last_offset_delta.to_be_bytes());
        put(OFF_BASE_TIMESTAMP, &self.base_timestamp.to_be_bytes());
        put(OFF_MAX_TIMESTAMP, &self.max_timestamp.to_be_bytes());
        put(OFF_PRODUCER_ID, &self.producer_id.to_be_bytes());
        put(OFF_PRODUCER_EPOCH, &self.producer_epoch.to_be_bytes());
        put(OFF_BASE_SEQUENCE, &self.base_sequence.to_be_bytes());
        put(OFF_RECORDS_COUNT, &self.records_count.to_be_bytes());
        h
    }

    /// Whole batch size in bytes: `batch_length` plus the 12 bytes before
    /// it counts from. A negative length counts as 0.
    #[inline]
    pub fn total_len(&self) -> usize {
        usize::try_from(self.batch_length).unwrap_or(0) + LOG_OVERHEAD
    }

    /// Offset of the batch's last record (or last compacted-away slot).
    #[inline]
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// The offset the next batch starts at.
    #[inline]
    pub fn next_offset(&self) -> i64 {
        self.last_offset().wrapping_add(1)
    }

    /// The codec in attribute bits 0-2.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Ok(Compression::from_id(
            (self.attributes & ATTR_COMPRESSION_MASK) as u8,
        )?)
    }

    /// Attribute bit 3: timestamps are LogAppendTime (`max_timestamp` holds it).
    #[inline]
    pub fn timestamp_type_log_append(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }

    /// Attribute bit 4.
    #[inline]
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }

    /// Attribute bit 5: the records are transaction markers.
    #[inline]
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }

    /// Attribute bit 6: compaction set a delete horizon in `base_timestamp`.
    #[inline]
    pub fn has_delete_horizon(&self) -> bool {
        self.attributes & ATTR_DELETE_HORIZON != 0
    }

    /// Whether an idempotent/transactional producer wrote the batch.
    #[inline]
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }

    /// Sequence number of the last record; sequences wrap from i32::MAX to
    /// 0 as in Kafka's `DefaultRecordBatch.incrementSequence`. -1 when the
    /// batch has no sequence.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return -1;
        }
        increment_sequence(self.base_sequence, self.last_offset_delta)
    }
}

/// `seq + delta`, wrapping past i32::MAX to 0 rather than to i32::MIN.
fn increment_sequence(seq: i32, delta: i32) -> i32 {
    if delta >= 0 && seq > i32::MAX - delta {
        delta - (i32::MAX - seq) - 1
    } else {
        seq.wrapping_add(delta)
    }
}

/// Checks that `buf` holds one whole batch at its start with a matching
/// CRC-32C (over bytes 21 to the batch's end). Bytes past the batch's
/// declared length are ignored.
pub fn verify_crc(batch: &[u8]) -> Result<(), BatchError> {
    let h = BatchHeader::parse(batch)?;
    let total = checked_total(&h, batch.len())?;
    check_crc(&h, &batch[..total])
}

fn checked_total(h: &BatchHeader, available: usize) -> Result<usize, BatchError> {
    if h.batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidLength);
    }
    let total = h.total_len();
    if total > available {
        return Err(BatchError::Truncated);
    }
    Ok(total)
}

fn check_crc(h: &BatchHeader, batch: &[u8]) -> Result<(), BatchError> {
    let actual = crc32c::crc32c(batch.get(OFF_ATTRIBUTES..).unwrap_or_default());
    if actual != h.crc {
        return Err(BatchError::CrcMismatch {
            expected: h.crc,
            actual,
        });
    }
    Ok(())
}

/// Fully validates the batch at the start of `buf` without decompressing
/// it: magic 2, a sane length that fits in `buf`, the CRC, a known codec, a
/// non-negative record count and last offset delta. Returns the header; the
/// batch occupies `buf[..header.total_len()]`.
pub fn validate_batch(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    // Every format keeps magic at byte 16, so a legacy message set is named
    // as such even when it is shorter than a v2 header.
    match buf.get(OFF_MAGIC) {
        None => return Err(BatchError::Truncated),
        Some(&m) if m as i8 != MAGIC_V2 => return Err(BatchError::UnsupportedMagic(m as i8)),
        Some(_) => {}
    }
    let h = BatchHeader::parse(buf)?;
    let total = checked_total(&h, buf.len())?;
    check_crc(&h, &buf[..total])?;
    h.compression()?;
    if h.records_count < 0 {
        return Err(BatchError::Corrupt("negative record count"));
    }
    if h.last_offset_delta < 0 {
        return Err(BatchError::Corrupt("negative last offset delta"));
    }
    Ok(h)
}

/// Splits a Produce request's records blob into its batches, validating
/// each with [`validate_batch`]. Each returned `Bytes` is a zero-copy slice
/// holding one whole batch. A trailing partial batch is an error: producers
/// send whole batches. An empty blob gives an empty list.
pub fn split_batches(records: &Bytes) -> Result<Vec<(BatchHeader, Bytes)>, BatchError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < records.len() {
        let h = validate_batch(&records[pos..])?;
        let end = pos + h.total_len();
        out.push((h, records.slice(pos..end)));
        pos = end;
    }
    Ok(out)
}

/// For log recovery: the length of the longest prefix of `buf` made of
/// whole, valid batches (as [`validate_batch`] judges them), and their
/// headers. Stops at the first short or invalid batch; never panics.
pub fn scan_valid_prefix(buf: &[u8]) -> (usize, Vec<BatchHeader>) {
    let mut headers = Vec::new();
    let mut pos = 0;
    while let Some(rest) = buf.get(pos..).filter(|r| !r.is_empty()) {
        match validate_batch(rest) {
            Ok(h) => {
                pos += h.total_len();
                headers.push(h);
            }
            Err(_) => break,
        }
    }
    (pos, headers)
}

/// Sets baseOffset (outside the CRC, so the CRC stays valid). The broker
/// calls this on a batch [`split_batches`] accepted; a slice shorter than a
/// header is left untouched.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if batch.len() >= BATCH_HEADER_LEN {
        batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Sets partitionLeaderEpoch (outside the CRC). Same contract as
/// [`set_base_offset`].
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if batch.len() >= BATCH_HEADER_LEN {
        batch[OFF_LEADER_EPOCH..OFF_LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Stamps a batch for a LogAppendTime topic as Kafka does: sets the
/// timestamp-type bit and `max_timestamp = ts`, then recomputes the CRC
/// (both fields are inside it). `batch` must hold one whole batch, as
/// [`split_batches`] returns it; anything else is left untouched.
pub fn set_log_append_time(batch: &mut [u8], ts: i64) {
    let Ok(h) = BatchHeader::parse(batch) else {
        return;
    };
    let Ok(total) = checked_total(&h, batch.len()) else {
        return;
    };
    let attributes = h.attributes | ATTR_LOG_APPEND_TIME;
    if attributes == h.attributes && h.max_timestamp == ts {
        return; // already stamped: skip the CRC pass
    }
    batch[OFF_ATTRIBUTES..OFF_ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[OFF_MAX_TIMESTAMP..OFF_MAX_TIMESTAMP + 8].copy_from_slice(&ts.to_be_bytes());
    let crc = crc32c::crc32c(&batch[OFF_ATTRIBUTES..total]);
    batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

/// One record header. Kafka requires a non-null key; Java decodes it as
/// UTF-8 with replacement, and so do we.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: String,
    pub value: Option<Bytes>,
}

/// One record of a batch, with offset and timestamp relative to the
/// batch's `base_offset` and `base_timestamp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// Absolute offset given the batch header.
    pub fn offset(&self, batch: &BatchHeader) -> i64 {
        batch.base_offset.wrapping_add(i64::from(self.offset_delta))
    }

    /// Absolute timestamp given the batch header (for LogAppendTime
    /// batches Kafka reports `max_timestamp` for every record instead).
    pub fn timestamp(&self, batch: &BatchHeader) -> i64 {
        if batch.timestamp_type_log_append() {
            batch.max_timestamp
        } else {
            batch.base_timestamp.wrapping_add(self.timestamp_delta)
        }
    }
}

/// Decodes every record of one batch with the default decompression cap.
/// Checks structure, not the CRC (the broker checked it on the way in; a
/// consumer that wants to re-check calls [`verify_crc`]). Keys and values
/// of uncompressed batches are zero-copy slices of `batch`.
pub fn decode_records(batch: &Bytes) -> Result<Vec<Record>, BatchError> {
    decode_records_with_limit(batch, DEFAULT_MAX_DECOMPRESSED_LEN)
}

/// [`decode_records`] with an explicit cap on the decompressed size.
pub fn decode_records_with_limit(
    batch: &Bytes,
    max_decompressed: usize,
) -> Result<Vec<Record>, BatchError> {
    if let Some(&m) = batch.get(OFF_MAGIC) {
        if m as i8 != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(m as i8));
        }
    }
    let h = BatchHeader::parse(batch)?;
    let total = checked_total(&h, batch.len())?;
    let count = usize::try_from(h.records_count)
        .map_err(|_| BatchError::Corrupt("negative record count"))?;
    let body = batch.slice(BATCH_HEADER_LEN..total);
    let data = match h.compression()? {
        Compression::None => body,
        codec => Bytes::from(codec.decompress_with_limit(&body, max_decompressed)?),
    };
    parse_records(&data, count)
}

fn parse_records(data: &Bytes, count: usize) -> Result<Vec<Record>, BatchError> {
    // The count is untrusted: never reserve more than the bytes could hold.
    let mut records = Vec::with_capacity(count.min(data.len() / MIN_RECORD_LEN));
    let mut r = Reader {
        data,
        pos: 0,
        end: data.len(),
    };
    for _ in 0..count {
        let len = r.varint("record length")?;
        let len =
            usize::try_from(len).map_err(|_| BatchError::Corrupt("negative record length"))?;
        let end = r
            .pos
            .checked_add(len)
            .filter(|&e| e <= r.end)
            .ok_or(BatchError::Corrupt("record overruns batch"))?;
        let mut rr = Reader {
            data,
            pos: r.pos,
            end,
        };
        records.push(rr.record()?);
        if rr.pos != end {
            return Err(BatchError::Corrupt(
                "record length disagrees with its contents",
            ));
        }
        r.pos = end;
    }
    if r.pos != r.end {
        return Err(BatchError::Corrupt(
            "bytes left after the declared record count",
        ));
    }
    Ok(records)
}

/// Bounds-checked cursor over `data[pos..end]`.
struct Reader<'a> {
    data: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Reader<'_> {
    fn rest(&self) -> &[u8] {
        self.data.get(self.pos..self.end).unwrap_or_default()
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, BatchError> {
        let b = *self.rest().first().ok_or(BatchError::Corrupt(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self, what: &'static str) -> Result<i32, BatchError> {
        let (v, n) = decode_varint(self.rest()).ok_or(BatchError::Corrupt(what))?;
        self.pos += n;
        Ok(v)
    }

    fn varlong(&mut self, what: &'static str) -> Result<i64, BatchError> {
        let (v, n) = decode_varlong(self.rest()).ok_or(BatchError::Corrupt(what))?;
        self.pos += n;
        Ok(v)
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<Bytes, BatchError> {
        if len > self.end - self.pos {
            return Err(BatchError::Corrupt(what));
        }
        let b = self.data.slice(self.pos..self.pos + len);
        self.pos += len;
        Ok(b)
    }

    /// Length-prefixed bytes where any negative length means null, as in
    /// Java's `DefaultRecord.readFrom`.
    fn nullable(&mut self, what: &'static str) -> Result<Option<Bytes>, BatchError> {
        let len = self.varint(what)?;
        match usize::try_from(len) {
            Ok(len) => self.take(len, what).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn record(&mut self) -> Result<Record, BatchError> {
        let _attributes = self.u8("record attributes")?; // unused by Kafka
        let timestamp_delta = self.varlong("timestamp delta")?;
        let offset_delta = self.varint("offset delta")?;
        let key = self.nullable("record key")?;
        let value = self.nullable("record value")?;
        let n = self.varint("header count")?;
        let n = usize::try_from(n).map_err(|_| BatchError::Corrupt("negative header count"))?;
        // Each header takes at least two bytes.
        let mut headers = Vec::with_capacity(n.min((self.end - self.pos) / 2));
        for _ in 0..n {
            let klen = self.varint("header key length")?;
            let klen = usize::try_from(klen).map_err(|_| BatchError::Corrupt("null header key"))?;
            let key = self.take(klen, "header key")?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let value = self.nullable("header value")?;
            headers.push(RecordHeader { key, value });
        }
        Ok(Record {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers,
        })
    }
}

/// Encodes one v2 batch. Records are written straight into a single buffer
/// that already reserves the header, so an uncompressed batch is built with
/// no copy at all and a compressed one with one codec pass.
///
/// Defaults: no producer id/epoch/sequence (-1), partition leader epoch -1,
/// base timestamp = first record's timestamp (as the Java client does),
/// base offset 0 (the broker assigns the real one).
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    compression: Compression,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    partition_leader_epoch: i32,
    transactional: bool,
    control: bool,
    base_timestamp: Option<i64>,
    max_timestamp: i64,
    count: i32,
    last_offset_delta: i32,
    /// `BATCH_HEADER_LEN` placeholder bytes, then the uncompressed records.
    buf: Vec<u8>,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        Self::with_capacity(compression, 0)
    }

    /// Pre-sizes the records buffer (e.g. to `batch.size`).
    pub fn with_capacity(compression: Compression, records_bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(BATCH_HEADER_LEN + records_bytes);
        buf.resize(BATCH_HEADER_LEN, 0);
        BatchBuilder {
            compression,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            partition_leader_epoch: -1,
            transactional: false,
            control: false,
            base_timestamp: None,
            max_timestamp: i64::MIN,
            count: 0,
            last_offset_delta: -1,
            buf,
        }
    }

    /// Idempotent/transactional producer identity and the first record's
    /// sequence number.
    pub fn with_producer(
        mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    pub fn with_transactional(mut self, transactional: bool) -> Self {
        self.transactional = transactional;
        self
    }

    pub fn with_control(mut self, control: bool) -> Self {
        self.control = control;
        self
    }

    pub fn with_partition_leader_epoch(mut self, epoch: i32) -> Self {
        self.partition_leader_epoch = epoch;
        self
    }

    /// Fixes the base timestamp instead of taking the first record's. Set it
    /// before the first push: deltas are computed as records arrive.
    pub fn with_base_timestamp(mut self, ts: i64) -> Self {
        if self.count == 0 {
            self.base_timestamp = Some(ts);
        }
        self
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Records pushed so far.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Size of the batch if built uncompressed now: an upper bound for
    /// compressible data, which is what `batch.size` accounting needs.
    pub fn estimated_size(&self) -> usize {
        self.buf.len()
    }

    /// Appends a record at the next offset delta.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<(), BatchError> {
        let offset_delta = self.last_offset_delta.wrapping_add(1);
        self.push_with_offset_delta(offset_delta, timestamp, key, value, headers)
    }

    /// Appends a record at an explicit offset delta, for rewriting batches
    /// with gaps (compaction). Deltas must increase from call to call.
    pub fn push_with_offset_delta(
        &mut self,
        offset_delta: i32,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[RecordHeader],
    ) -> Result<(), BatchError> {
        let base = *self.base_timestamp.get_or_insert(timestamp);
        let timestamp_delta = timestamp.wrapping_sub(base);
        let key_len = nullable_len(key)?;
        let value_len = nullable_len(value)?;
        let header_count = i32::try_from(headers.len()).map_err(|_| BatchError::TooLarge)?;

        // Size first, so the length prefix goes out before the body with
        // no scratch buffer and a single reserve.
        let mut body = 1
            + varlong_len(timestamp_delta)
            + varint_len(offset_delta)
            + varint_len(key_len)
            + key.map_or(0, <[u8]>::len)
            + varint_len(value_len)
            + value.map_or(0, <[u8]>::len)
            + varint_len(header_count);
        for h in headers {
            body += varint_len(h.key.len() as i32)
                + h.key.len()
                + varint_len(nullable_len(h.value.as_deref())?)
                + h.value.as_ref().map_or(0, Bytes::len);
        }
        let body_len = i32::try_from(body).map_err(|_| BatchError::TooLarge)?;
        let record_len = varint_len(body_len) + body;
        if self.buf.len() - BATCH_HEADER_LEN + record_len > MAX_BUILDER_RECORDS_BYTES {
            return Err(BatchError::TooLarge);
        }

        let out = &mut self.buf;
        out.reserve(record_len);
        encode_varint(body_len, out);
        out.push(0); // record attributes: unused
        encode_varlong(timestamp_delta, out);
        encode_varint(offset_delta, out);
        put_nullable(out, key, key_len);
        put_nullable(out, value, value_len);
        encode_varint(header_count, out);
        for h in headers {
            encode_varint(h.key.len() as i32, out);
            out.extend_from_slice(h.key.as_bytes());
            let v = h.value.as_deref();
            put_nullable(out, v, nullable_len(v)?);
        }

        self.count += 1;
        self.last_offset_delta = self.last_offset_delta.max(offset_delta);
        self.max_timestamp = self.max_timestamp.max(timestamp);
        Ok(())
    }

    /// Finishes the batch: compresses the records once, fills the header
    /// and the CRC. If the codec fails (it cannot for in-memory output short
    /// of allocation failure) the batch is emitted uncompressed, which is
    /// still valid and says so in its attributes.
    pub fn build(self) -> Bytes {
        let mut compression = self.compression;
        let mut out = if compression == Compression::None {
            self.buf
        } else {
            let records = &self.buf[BATCH_HEADER_LEN..];
            let mut out = Vec::with_capacity(BATCH_HEADER_LEN + records.len() / 2 + 64);
            out.resize(BATCH_HEADER_LEN, 0);
            match compression.compress(records, &mut out) {
                Ok(()) => out,
                Err(_) => {
                    compression = Compression::None;
                    self.buf
                }
            }
        };

        let mut attributes = i16::from(compression.id());
        if self.transactional {
            attributes |= ATTR_TRANSACTIONAL;
        }
        if self.control {
            attributes |= ATTR_CONTROL;
        }
        let empty = self.count == 0;
        let header = BatchHeader {
            base_offset: 0,
            // push() keeps records under 1 GiB, codecs expand by far less
            // than 2x, so this always fits.
            batch_length: (out.len() - LOG_OVERHEAD) as i32,
            partition_leader_epoch: self.partition_leader_epoch,
            magic: MAGIC_V2,
            crc: 0,
            attributes,
            last_offset_delta: if empty { 0 } else { self.last_offset_delta },
            base_timestamp: self.base_timestamp.unwrap_or(-1),
            max_timestamp: if empty { -1 } else { self.max_timestamp },
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            base_sequence: self.base_sequence,
            records_count: self.count,
        };
        out[..BATCH_HEADER_LEN].copy_from_slice(&header.encode());
        let crc = crc32c::crc32c(&out[OFF_ATTRIBUTES..]);
        out[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(out)
    }
}

fn nullable_len(b: Option<&[u8]>) -> Result<i32, BatchError> {
    match b {
        None => Ok(-1),
        Some(b) => i32::try_from(b.len()).map_err(|_| BatchError::TooLarge),
    }
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>, len: i32) {
    encode_varint(len, out);
    if let Some(b) = b {
        out.extend_from_slice(b);
    }
}

#[cfg(test)]
mod tests;
