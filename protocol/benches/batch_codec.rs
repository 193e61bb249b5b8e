//! Micro-benchmarks for the v2 batch codec's hot paths: building a
//! 1000 x 100 B batch with each codec, the broker's produce-side
//! split + CRC check over a 1 MiB blob, and full record decoding.
//! Run: `cargo bench -p sluice-protocol --bench batch_codec`.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice_protocol::batch::{decode_records, split_batches, verify_crc, BatchBuilder};
use sluice_protocol::compression::Compression;

const RECORDS: usize = 1000;
const VALUE_LEN: usize = 100;

/// Semi-compressible values (text-like), like typical JSON payloads.
fn values() -> Vec<Vec<u8>> {
    (0..RECORDS)
        .map(|i| {
            format!(
                "{{\"id\":{i},\"user\":\"u{:05}\",\"event\":\"click\",\"pad\":\"",
                i * 7919 % 100_000
            )
            .into_bytes()
            .into_iter()
            .chain(std::iter::repeat(b'a' + (i % 26) as u8))
            .take(VALUE_LEN)
            .collect()
        })
        .collect()
}

fn build(c: Compression, vals: &[Vec<u8>]) -> Bytes {
    let mut b = BatchBuilder::with_capacity(c, RECORDS * (VALUE_LEN + 16));
    for (i, v) in vals.iter().enumerate() {
        let key = (i as u32).to_be_bytes();
        // Builder is infallible for these sizes.
        let _ = b.push(1_700_000_000_000 + i as i64, Some(&key), Some(v), &[]);
    }
    b.build()
}

fn bench_build(cr: &mut Criterion) {
    let vals = values();
    let mut g = cr.benchmark_group("build_1000x100B");
    g.throughput(Throughput::Bytes((RECORDS * VALUE_LEN) as u64));
    for c in Compression::ALL {
        g.bench_with_input(BenchmarkId::from_parameter(c.name()), &c, |b, &c| {
            b.iter(|| black_box(build(c, &vals)))
        });
    }
    g.finish();
}

fn bench_split(cr: &mut Criterion) {
    let vals = values();
    let one = build(Compression::None, &vals);
    let mut blob = Vec::with_capacity(1 << 20);
    while blob.len() + one.len() <= 1 << 20 {
        blob.extend_from_slice(&one);
    }
    let blob = Bytes::from(blob);
    let mut g = cr.benchmark_group("split_verify_1MiB");
    g.throughput(Throughput::Bytes(blob.len() as u64));
    g.bench_function("split_batches", |b| {
        b.iter(|| black_box(split_batches(black_box(&blob))))
    });
    // The CRC pass alone, batch by batch over the same megabyte.
    let batches: Vec<Bytes> = split_batches(&blob)
        .unwrap_or_default()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    g.bench_function("verify_crc_each", |b| {
        b.iter(|| batches.iter().all(|x| verify_crc(black_box(x)).is_ok()))
    });
    g.finish();
}

fn bench_decode(cr: &mut Criterion) {
    let vals = values();
    let mut g = cr.benchmark_group("decode_1000x100B");
    g.throughput(Throughput::Bytes((RECORDS * VALUE_LEN) as u64));
    for c in Compression::ALL {
        let batch = build(c, &vals);
        g.bench_with_input(BenchmarkId::from_parameter(c.name()), &batch, |b, batch| {
            b.iter(|| black_box(decode_records(black_box(batch))))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_build, bench_split, bench_decode);
criterion_main!(benches);
