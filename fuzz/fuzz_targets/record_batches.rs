//! Fuzzes the v2 record batch codec with arbitrary bytes, along the paths
//! that meet bytes from outside:
//! - `split_batches`: the produce handler's split + header/CRC validation of
//!   a Produce request's records blob; every batch it accepts is then fully
//!   decoded with `decode_records` (decompression included);
//! - `decode_records` on the raw input: a batch that was never validated
//!   (what a consumer does with fetched bytes; it does not check the CRC,
//!   so the fuzzer reaches the record and codec parsers directly);
//! - `scan_valid_prefix`: recovery's scan of a possibly torn segment tail.
//! Any panic or abort is a finding.
//!
//! Seeds: on start-up the target writes small valid batches (each codec,
//! headers, a control batch, two batches back to back) into
//! `corpus/record_batches/` unless seeds are already there.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sluice_protocol::batch::{decode_records, scan_valid_prefix, split_batches, BatchBuilder, RecordHeader};
use sluice_protocol::compression::Compression;

#[global_allocator]
static ALLOC: sluice_broker::alloc::BrokerAllocator = sluice_broker::alloc::BrokerAllocator;

fn check(data: &[u8]) {
    let blob = Bytes::copy_from_slice(data);
    if let Ok(batches) = split_batches(&blob) {
        let mut total = 0;
        for (h, b) in &batches {
            assert_eq!(h.total_len(), b.len());
            total += b.len();
            let _ = decode_records(b);
        }
        assert_eq!(total, blob.len());
    }
    let _ = decode_records(&blob);
    let (valid, headers) = scan_valid_prefix(data);
    assert!(valid <= data.len());
    assert_eq!(headers.iter().map(|h| h.total_len()).sum::<usize>(), valid);
}

fn write_seeds() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus/record_batches"));
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let seeded = std::fs::read_dir(dir)
        .map(|d| d.flatten().any(|e| e.file_name().to_string_lossy().starts_with("seed-")))
        .unwrap_or(true);
    if seeded {
        return;
    }
    let headers = [RecordHeader { key: "h".into(), value: Some(Bytes::from_static(b"v")) }];
    for c in Compression::ALL {
        let mut b = BatchBuilder::new(c).with_producer(1000, 0, 0);
        for i in 0..4u8 {
            let hs: &[RecordHeader] = if i == 2 { &headers } else { &[] };
            let key = [i];
            let key = if i == 1 { None } else { Some(&key[..]) };
            let _ = b.push(1_700_000_000_000 + i64::from(i), key, Some(&b"some value bytes"[..]), hs);
        }
        let one = b.build();
        let _ = std::fs::write(dir.join(format!("seed-{}", c.name())), &one);
        let mut two = one.to_vec();
        two.extend_from_slice(&one);
        let _ = std::fs::write(dir.join(format!("seed-{}-x2", c.name())), two);
    }
    let mut ctl = BatchBuilder::new(Compression::None).with_control(true).with_transactional(true);
    let _ = ctl.push(1_700_000_000_000, Some(&[0, 0, 0, 1][..]), Some(&[0, 0, 0, 0, 0, 0][..]), &[]);
    let _ = std::fs::write(dir.join("seed-control"), ctl.build());
}

fuzz_target!(init: write_seeds(), |data: &[u8]| check(data));
