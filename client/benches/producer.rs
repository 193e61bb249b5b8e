//! Criterion benchmarks of the producer's batching and encoding path, with
//! no network: 100k records of 100 B (keyed, murmur2-partitioned over 12
//! partitions) go through buffer accounting, the accumulator's per-partition
//! batches (batch.size 16 KiB) and batch encoding with each codec, stamped
//! with a producer id and sequence as the sender does. Two narrower groups
//! keep the hot pieces apart: appending a record (accumulator append plus
//! its delivery future), and completing a batch (settling it and reading
//! each record's metadata from its future).
//! Run: `cargo bench -p sluice-client --bench producer`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use sluice::producer::bench_support::{self, Pipeline};
use sluice::Compression;

const RECORDS: usize = 100_000;
const VALUE_LEN: usize = 100;
const PARTITIONS: i32 = 12;

/// Text-like, semi-compressible values and `user-N` keys.
fn records() -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..RECORDS)
        .map(|i| {
            let key = format!("user-{}", i * 7919 % 50_000).into_bytes();
            let value: Vec<u8> = format!(
                "{{\"id\":{i},\"event\":\"click\",\"page\":\"/p/{}\",\"pad\":\"",
                i % 977
            )
            .into_bytes()
            .into_iter()
            .chain(std::iter::repeat(b'a' + (i % 26) as u8))
            .take(VALUE_LEN)
            .collect();
            (key, value)
        })
        .collect()
}

fn bench_accumulate(c: &mut Criterion) {
    let recs = records();
    let mut g = c.benchmark_group("producer_accumulate_100k_x_100B");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(10);
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Snappy,
    ] {
        g.bench_with_input(
            BenchmarkId::from_parameter(format!("{codec:?}").to_lowercase()),
            &codec,
            |b, &codec| {
                b.iter(|| {
                    let mut p = Pipeline::new(codec, 16 * 1024, PARTITIONS);
                    for (i, (k, v)) in recs.iter().enumerate() {
                        p.send(1_700_000_000_000 + i as i64, k, v).expect("append");
                    }
                    black_box(p.finish())
                })
            },
        );
    }
    g.finish();
}

fn bench_append(c: &mut Criterion) {
    let values: Vec<Vec<u8>> = records().into_iter().map(|(_, v)| v).collect();
    let mut g = c.benchmark_group("producer_append_100k_x_100B");
    g.throughput(Throughput::Elements(RECORDS as u64));
    g.sample_size(10);
    g.bench_function("append", |b| {
        b.iter(|| black_box(bench_support::append_only(&values, PARTITIONS)))
    });
    g.finish();
}

fn bench_complete(c: &mut Criterion) {
    const BATCH: usize = 1000;
    let mut g = c.benchmark_group("producer_complete_batch");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("1000_records", |b| {
        b.iter(|| black_box(bench_support::complete_batch(BATCH)))
    });
    g.finish();
}

criterion_group!(benches, bench_accumulate, bench_append, bench_complete);
criterion_main!(benches);
