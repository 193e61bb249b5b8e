//! Tests for the v2 batch codec: round trips through every codec, damage
//! detection, truncation and garbage robustness, recovery scans, and a
//! cross-check against the kafka-protocol crate's own encoder/decoder.

use super::*;

fn hdr(key: &str, value: Option<&[u8]>) -> RecordHeader {
    RecordHeader {
        key: key.to_owned(),
        value: value.map(Bytes::copy_from_slice),
    }
}

/// A small batch with the awkward cases: null key, null value, empty
/// values, headers with null values, timestamps before the base.
fn sample_batch(c: Compression) -> Bytes {
    let mut b = BatchBuilder::new(c).with_producer(42, 3, 7);
    b.push(1_000, Some(b"k0"), Some(b"v0"), &[]).unwrap();
    b.push(
        999,
        None,
        Some(b"v1"),
        &[hdr("h", Some(b"x")), hdr("n", None)],
    )
    .unwrap();
    b.push(1_005, Some(b""), None, &[]).unwrap();
    b.push(
        1_002,
        Some(&[0xff; 300]),
        Some(&[7; 1000]),
        &[hdr("", Some(b""))],
    )
    .unwrap();
    b.build()
}

#[test]
fn round_trip_every_codec() {
    for c in Compression::ALL {
        let batch = sample_batch(c);
        let split = split_batches(&batch).unwrap();
        assert_eq!(split.len(), 1);
        let (h, bytes) = &split[0];
        assert_eq!(bytes, &batch);
        assert_eq!(h.compression().unwrap(), c);
        assert_eq!(h.magic, 2);
        assert_eq!(h.base_offset, 0);
        assert_eq!(h.total_len(), batch.len());
        assert_eq!(h.records_count, 4);
        assert_eq!(h.last_offset_delta, 3);
        assert_eq!(h.last_offset(), 3);
        assert_eq!(h.base_timestamp, 1_000);
        assert_eq!(h.max_timestamp, 1_005);
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (42, 3, 7)
        );
        assert_eq!(h.last_sequence(), 10);
        assert!(h.has_producer_id() && !h.is_transactional() && !h.is_control());
        assert!(!h.timestamp_type_log_append());
        assert_eq!(h.partition_leader_epoch, -1);

        let recs = decode_records(bytes).unwrap();
        assert_eq!(recs.len(), 4);
        assert_eq!(recs[0].key.as_deref(), Some(&b"k0"[..]));
        assert_eq!(recs[1].key, None);
        assert_eq!(recs[1].timestamp_delta, -1);
        assert_eq!(recs[1].headers, vec![hdr("h", Some(b"x")), hdr("n", None)]);
        assert_eq!(recs[2].key.as_deref(), Some(&b""[..]));
        assert_eq!(recs[2].value, None);
        assert_eq!(recs[3].value.as_deref(), Some(&[7u8; 1000][..]));
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.offset_delta, i as i32);
            assert_eq!(r.offset(h), i as i64);
        }
        assert_eq!(recs[3].timestamp(h), 1_002);
    }
}

#[test]
fn uncompressed_decode_is_zero_copy() {
    let batch = sample_batch(Compression::None);
    let recs = decode_records(&batch).unwrap();
    let v = recs[0].value.as_ref().unwrap();
    let range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
    assert!(range.contains(&(v.as_ptr() as usize)));
}

#[test]
fn builder_flags_and_empty_batch() {
    let mut b = BatchBuilder::new(Compression::None)
        .with_producer(1, 0, i32::MAX - 1)
        .with_transactional(true)
        .with_control(true)
        .with_partition_leader_epoch(9)
        .with_base_timestamp(500);
    assert!(b.is_empty());
    let before = b.estimated_size();
    for t in [600, 550, 700] {
        b.push(t, None, Some(b"x"), &[]).unwrap();
    }
    assert_eq!(b.len(), 3);
    assert!(b.estimated_size() > before);
    let batch = b.build();
    let h = validate_batch(&batch).unwrap();
    assert!(h.is_transactional() && h.is_control());
    assert_eq!(h.partition_leader_epoch, 9);
    assert_eq!(h.base_timestamp, 500);
    assert_eq!(h.max_timestamp, 700);
    // Kafka's sequence wrap: MAX-1, MAX, 0.
    assert_eq!(h.last_sequence(), 0);
    assert_eq!(decode_records(&batch).unwrap()[1].timestamp_delta, 50);

    let empty = BatchBuilder::new(Compression::Zstd).build();
    let h = validate_batch(&empty).unwrap();
    assert_eq!(
        (h.records_count, h.last_offset_delta, h.max_timestamp),
        (0, 0, -1)
    );
    assert!(decode_records(&empty).unwrap().is_empty());
}

#[test]
fn explicit_offset_deltas() {
    let mut b = BatchBuilder::new(Compression::Lz4);
    b.push_with_offset_delta(2, 10, Some(b"a"), None, &[])
        .unwrap();
    b.push_with_offset_delta(5, 11, Some(b"b"), None, &[])
        .unwrap();
    b.push(12, Some(b"c"), None, &[]).unwrap();
    let batch = b.build();
    let h = validate_batch(&batch).unwrap();
    assert_eq!((h.records_count, h.last_offset_delta), (3, 6));
    let deltas: Vec<i32> = decode_records(&batch)
        .unwrap()
        .iter()
        .map(|r| r.offset_delta)
        .collect();
    assert_eq!(deltas, [2, 5, 6]);
}

#[test]
fn header_fields_and_sequence_helpers() {
    let mut h = BatchHeader::parse(&sample_batch(Compression::None)).unwrap();
    assert_eq!(BatchHeader::parse(&h.encode()).unwrap(), h);
    h.base_sequence = -1;
    assert_eq!(h.last_sequence(), -1);
    h.producer_id = -1;
    assert!(!h.has_producer_id());
    h.attributes = 0x07;
    assert_eq!(h.compression(), Err(BatchError::UnsupportedCompression(7)));
    h.attributes = 0x48;
    assert!(h.timestamp_type_log_append() && h.has_delete_horizon());
    h.batch_length = -5;
    assert_eq!(h.total_len(), LOG_OVERHEAD);
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 2, 5), 2);
    assert_eq!(increment_sequence(10, 5), 15);
    assert_eq!(BatchHeader::parse(&[0; 60]), Err(BatchError::Truncated));
}

#[test]
fn crc_mismatch_detected() {
    let batch = sample_batch(Compression::None);
    // Flip one bit at every CRC-covered position.
    for i in OFF_ATTRIBUTES..batch.len() {
        let mut bad = batch.to_vec();
        bad[i] ^= 0x10;
        let bad = Bytes::from(bad);
        match split_batches(&bad) {
            Err(BatchError::CrcMismatch { expected, actual }) => assert_ne!(expected, actual),
            other => panic!("byte {i}: {other:?}"),
        }
        assert!(matches!(
            verify_crc(&bad),
            Err(BatchError::CrcMismatch { .. })
        ));
    }
    // A damaged stored CRC is also a mismatch.
    let mut bad = batch.to_vec();
    bad[OFF_CRC] ^= 1;
    assert!(matches!(
        verify_crc(&bad),
        Err(BatchError::CrcMismatch { .. })
    ));
    assert_eq!(verify_crc(&batch), Ok(()));
}

#[test]
fn header_rejections() {
    let batch = sample_batch(Compression::None).to_vec();

    let mut m = batch.clone();
    m[OFF_MAGIC] = 1;
    assert_eq!(
        split_batches(&Bytes::from(m)),
        Err(BatchError::UnsupportedMagic(1))
    );
    // A legacy message shorter than a v2 header still reports its magic.
    let mut legacy = vec![0u8; 30];
    legacy[OFF_MAGIC] = 0;
    assert_eq!(
        split_batches(&Bytes::from(legacy)),
        Err(BatchError::UnsupportedMagic(0))
    );

    let mut short = batch.clone();
    short[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&48i32.to_be_bytes());
    assert_eq!(
        split_batches(&Bytes::from(short)),
        Err(BatchError::InvalidLength)
    );

    let mut neg = batch.clone();
    neg[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(
        split_batches(&Bytes::from(neg)),
        Err(BatchError::InvalidLength)
    );

    // Fields inside the CRC: patch, then re-seal, to reach the later checks.
    let reseal = |mut b: Vec<u8>| {
        let crc = crc32c::crc32c(&b[OFF_ATTRIBUTES..]);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
        Bytes::from(b)
    };
    let mut c = batch.clone();
    c[OFF_RECORDS_COUNT..OFF_RECORDS_COUNT + 4].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        split_batches(&reseal(c)),
        Err(BatchError::Corrupt(_))
    ));
    let mut d = batch.clone();
    d[OFF_LAST_OFFSET_DELTA..OFF_LAST_OFFSET_DELTA + 4].copy_from_slice(&(-1i32).to_be_bytes());
    assert!(matches!(
        split_batches(&reseal(d)),
        Err(BatchError::Corrupt(_))
    ));
    let mut z = batch.clone();
    z[OFF_ATTRIBUTES + 1] |= 0x06; // codec id 6
    let z = reseal(z);
    assert_eq!(
        split_batches(&z),
        Err(BatchError::UnsupportedCompression(6))
    );
    assert_eq!(
        decode_records(&z),
        Err(BatchError::UnsupportedCompression(6))
    );
    // A count that disagrees with the records is an error on decode.
    let mut n = batch.clone();
    n[OFF_RECORDS_COUNT..OFF_RECORDS_COUNT + 4].copy_from_slice(&5i32.to_be_bytes());
    assert!(matches!(
        decode_records(&reseal(n)),
        Err(BatchError::Corrupt(_))
    ));
    let mut n = batch;
    n[OFF_RECORDS_COUNT..OFF_RECORDS_COUNT + 4].copy_from_slice(&3i32.to_be_bytes());
    assert!(matches!(
        decode_records(&reseal(n)),
        Err(BatchError::Corrupt(_))
    ));
}

#[test]
fn error_codes() {
    assert_eq!(
        BatchError::CrcMismatch {
            expected: 1,
            actual: 2
        }
        .kafka_error_code()
        .code(),
        2
    );
    assert_eq!(BatchError::Truncated.kafka_error_code().code(), 2);
    assert_eq!(BatchError::InvalidLength.kafka_error_code().code(), 2);
    assert_eq!(BatchError::Corrupt("x").kafka_error_code().code(), 2);
    assert_eq!(
        BatchError::Compression("x".into())
            .kafka_error_code()
            .code(),
        2
    );
    assert_eq!(
        BatchError::UnsupportedMagic(1).kafka_error_code().code(),
        87
    );
    assert_eq!(
        BatchError::UnsupportedCompression(5)
            .kafka_error_code()
            .code(),
        76
    );
}

fn three_batches() -> (Vec<u8>, Vec<usize>) {
    let mut blob = Vec::new();
    let mut ends = Vec::new();
    for (i, c) in [Compression::None, Compression::Snappy, Compression::Zstd]
        .into_iter()
        .enumerate()
    {
        let mut b = sample_batch(c).to_vec();
        set_base_offset(&mut b, i as i64 * 4);
        blob.extend_from_slice(&b);
        ends.push(blob.len());
    }
    (blob, ends)
}

#[test]
fn split_many_and_truncation_at_every_length() {
    let (blob, ends) = three_batches();
    let all = Bytes::from(blob.clone());
    let split = split_batches(&all).unwrap();
    assert_eq!(
        split.iter().map(|(h, _)| h.base_offset).collect::<Vec<_>>(),
        [0, 4, 8]
    );
    assert_eq!(split_batches(&Bytes::new()).unwrap(), vec![]);

    for cut in 0..=blob.len() {
        let prefix = Bytes::copy_from_slice(&blob[..cut]);
        let whole = cut == 0 || ends.contains(&cut);
        let r = split_batches(&prefix);
        assert_eq!(r.is_ok(), whole, "cut {cut}: {r:?}");
        let (valid, headers) = scan_valid_prefix(&prefix);
        let want = ends
            .iter()
            .copied()
            .filter(|&e| e <= cut)
            .max()
            .unwrap_or(0);
        assert_eq!(valid, want, "cut {cut}");
        assert_eq!(headers.len(), ends.iter().filter(|&&e| e <= cut).count());
        let _ = decode_records(&prefix);
        let _ = verify_crc(&prefix);
        let _ = BatchHeader::parse(&prefix);
    }
}

#[test]
fn scan_stops_at_torn_or_corrupt_batch() {
    let (blob, ends) = three_batches();
    // Torn tail: half of the third batch made it to disk.
    let torn = &blob[..ends[1] + (ends[2] - ends[1]) / 2];
    let (valid, headers) = scan_valid_prefix(torn);
    assert_eq!(valid, ends[1]);
    assert_eq!(
        headers.iter().map(|h| h.base_offset).collect::<Vec<_>>(),
        [0, 4]
    );
    // Zeroed tail (preallocated file): stops there.
    let mut zeroed = blob[..ends[0]].to_vec();
    zeroed.extend_from_slice(&[0u8; 4096]);
    assert_eq!(scan_valid_prefix(&zeroed).0, ends[0]);
    // A bit flip in the middle batch ends the valid prefix before it.
    let mut flipped = blob.clone();
    flipped[ends[0] + 70] ^= 1;
    assert_eq!(scan_valid_prefix(&flipped).0, ends[0]);
}

#[test]
fn patches_keep_or_recompute_crc() {
    let mut b = sample_batch(Compression::Gzip).to_vec();
    set_base_offset(&mut b, 1_234_567);
    set_partition_leader_epoch(&mut b, 17);
    let h = validate_batch(&b).unwrap();
    assert_eq!((h.base_offset, h.partition_leader_epoch), (1_234_567, 17));
    assert_eq!(h.last_offset(), 1_234_570);

    set_log_append_time(&mut b, 99_999);
    let h = validate_batch(&b).unwrap();
    assert!(h.timestamp_type_log_append());
    assert_eq!(h.max_timestamp, 99_999);
    assert_eq!(h.compression().unwrap(), Compression::Gzip);
    let bytes = Bytes::from(b.clone());
    let recs = decode_records(&bytes).unwrap();
    assert!(recs.iter().all(|r| r.timestamp(&h) == 99_999));
    // Idempotent.
    set_log_append_time(&mut b, 99_999);
    assert_eq!(&b[..], &bytes[..]);

    // Too-short slices are left alone instead of panicking.
    let mut tiny = [1u8; 10];
    set_base_offset(&mut tiny, 5);
    set_partition_leader_epoch(&mut tiny, 5);
    set_log_append_time(&mut tiny, 5);
    assert_eq!(tiny, [1u8; 10]);
}

/// Simple xorshift so the garbage tests are deterministic without a dep.
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn garbage_never_panics() {
    for seed in 1..200u64 {
        let mut g = noise(seed, (seed as usize * 37) % 700);
        // Make some of it look plausible so the deeper paths run.
        if g.len() > BATCH_HEADER_LEN && seed % 2 == 0 {
            g[OFF_MAGIC] = 2;
            let len = (g.len() - LOG_OVERHEAD) as i32;
            g[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
            g[OFF_ATTRIBUTES] = 0;
            g[OFF_ATTRIBUTES + 1] &= 0x07;
            if g[OFF_ATTRIBUTES + 1] > 4 {
                g[OFF_ATTRIBUTES + 1] = 0;
            }
        }
        let b = Bytes::from(g);
        let _ = split_batches(&b);
        let _ = scan_valid_prefix(&b);
        let _ = verify_crc(&b);
        let _ = decode_records(&b);
    }
}

#[test]
fn every_mutated_record_byte_is_handled() {
    // Mutate each byte of the records area and re-seal the CRC, so the
    // record parser (not the CRC check) meets the damage.
    for c in [Compression::None, Compression::Snappy, Compression::Lz4] {
        let batch = sample_batch(c).to_vec();
        for i in BATCH_HEADER_LEN..batch.len() {
            for v in [0x00, 0x7f, 0x80, 0xff, batch[i] ^ 0x01] {
                let mut b = batch.clone();
                b[i] = v;
                let crc = crc32c::crc32c(&b[OFF_ATTRIBUTES..]);
                b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_be_bytes());
                let _ = decode_records(&Bytes::from(b));
            }
        }
    }
}

#[test]
fn huge_declared_counts_do_not_allocate() {
    // A header claiming i32::MAX records over 1 byte of data must fail fast.
    let mut b = BatchBuilder::new(Compression::None).build().to_vec();
    b.push(0);
    b[OFF_RECORDS_COUNT..OFF_RECORDS_COUNT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
    let len = (b.len() - LOG_OVERHEAD) as i32;
    b[OFF_BATCH_LENGTH..OFF_BATCH_LENGTH + 4].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(
        decode_records(&Bytes::from(b)),
        Err(BatchError::Corrupt(_))
    ));
}

#[test]
fn decompression_cap_applies() {
    let mut b = BatchBuilder::new(Compression::Zstd);
    b.push(0, None, Some(&vec![0u8; 2 << 20]), &[]).unwrap();
    let batch = b.build();
    assert!(batch.len() < 4096);
    assert!(matches!(
        decode_records_with_limit(&batch, 1 << 20),
        Err(BatchError::Compression(_))
    ));
    assert_eq!(decode_records(&batch).unwrap().len(), 1);
}

// ---- Cross-check against kafka-protocol's independent implementation ----

mod kp {
    pub use kafka_protocol::protocol::StrBytes;
    pub use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };
}

fn kp_compression(c: Compression) -> kp::Compression {
    match c {
        Compression::None => kp::Compression::None,
        Compression::Gzip => kp::Compression::Gzip,
        Compression::Snappy => kp::Compression::Snappy,
        Compression::Lz4 => kp::Compression::Lz4,
        Compression::Zstd => kp::Compression::Zstd,
    }
}

fn kp_records() -> Vec<kp::Record> {
    (0..50i64)
        .map(|i| {
            let mut headers = indexmap::IndexMap::new();
            if i % 3 == 0 {
                headers.insert(
                    kp::StrBytes::from_string(format!("h{i}")),
                    Some(Bytes::from(vec![i as u8; 3])),
                );
                headers.insert(kp::StrBytes::from_static_str("null"), None);
            }
            kp::Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 5,
                producer_id: 77,
                producer_epoch: 2,
                timestamp_type: kp::TimestampType::Creation,
                offset: 100 + i,
                sequence: 10 + i as i32,
                timestamp: 1_700_000_000_000 + i * 3,
                key: (i % 4 != 1).then(|| Bytes::from(format!("key-{i}"))),
                value: (i % 5 != 2)
                    .then(|| Bytes::from(vec![b'a' + (i % 26) as u8; 10 + i as usize * 7])),
                headers,
            }
        })
        .collect()
}

#[test]
fn decodes_batches_encoded_by_kafka_protocol() {
    let want = kp_records();
    for c in Compression::ALL {
        let mut buf = bytes::BytesMut::new();
        let opts = kp::RecordEncodeOptions {
            version: 2,
            compression: kp_compression(c),
        };
        kp::RecordBatchEncoder::encode(&mut buf, &want, &opts).unwrap();
        let blob = buf.freeze();

        let split = split_batches(&blob).unwrap();
        assert_eq!(split.len(), 1, "{c:?}");
        let (h, batch) = &split[0];
        assert_eq!(h.compression().unwrap(), c);
        assert_eq!(
            (h.base_offset, h.records_count, h.last_offset()),
            (100, 50, 149)
        );
        assert_eq!(
            (h.producer_id, h.producer_epoch, h.base_sequence),
            (77, 2, 10)
        );
        assert_eq!(h.partition_leader_epoch, 5);
        let got = decode_records(batch).unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.offset(h), w.offset);
            assert_eq!(g.timestamp(h), w.timestamp);
            assert_eq!(g.key, w.key);
            assert_eq!(g.value, w.value);
            let wh: Vec<RecordHeader> = w
                .headers
                .iter()
                .map(|(k, v)| RecordHeader {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect();
            assert_eq!(g.headers, wh);
        }
    }
}

#[test]
fn kafka_protocol_decodes_our_batches() {
    let src = kp_records();
    for c in Compression::ALL {
        let mut b = BatchBuilder::new(c)
            .with_producer(77, 2, 10)
            .with_partition_leader_epoch(5);
        for r in &src {
            let headers: Vec<RecordHeader> = r
                .headers
                .iter()
                .map(|(k, v)| RecordHeader {
                    key: k.to_string(),
                    value: v.clone(),
                })
                .collect();
            b.push(r.timestamp, r.key.as_deref(), r.value.as_deref(), &headers)
                .unwrap();
        }
        let mut batch = b.build().to_vec();
        set_base_offset(&mut batch, 100);
        let mut bytes = Bytes::from(batch);
        let set = kp::RecordBatchDecoder::decode(&mut bytes).unwrap();
        assert_eq!(set.compression, kp_compression(c));
        assert_eq!(set.records, src, "{c:?}");
    }
}
