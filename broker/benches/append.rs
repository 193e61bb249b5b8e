//! Micro-benchmarks for the partition log's hot paths, driven directly
//! through `PartitionLog` on a compio runtime (no network, no shards):
//!
//! - `append/<policy>/in_flight=<N>`: appends of one 100 x 100 B batch
//!   (~10.9 KB) each, with N appends kept in flight by one task. Under
//!   `flush.policy = always` every round is fdatasync'ed before the appends
//!   resolve, so N > 1 measures group commit (all N queued appends ride one
//!   write + one sync); `interval` measures the write path alone (the bytes
//!   stop in the page cache). One element = one append = 100 records, so
//!   records/s is 100x the elem/s criterion prints.
//! - `read/...`: `PartitionLog::read` (offset -> segment file range, as Fetch
//!   uses it) at random offsets of a log of 10,000 such batches over several
//!   segments, for a one-batch and a 1 MiB fetch.
//!
//! Each append sample opens a fresh log in a temporary directory and deletes
//! it afterwards (neither is timed), so disk use stays bounded.
//! Numbers depend on the disk (fdatasync latency) far more than on the code.
//!
//! Run: `cargo bench -p sluice-broker --bench append` (add a filter such as
//! `append/always` to run a subset).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput,
};
use futures::stream::{FuturesUnordered, StreamExt};
use rand::{Rng, SeedableRng};
use sluice_broker::config::{BrokerConfig, FlushPolicy};
use sluice_broker::log::read::Isolation;
use sluice_broker::log::{LogConfig, PartitionLog};
use sluice_broker::metrics::PartitionMetrics;
use sluice_protocol::batch::{BatchBuilder, BatchHeader};
use sluice_protocol::compression::Compression;

const RECORDS_PER_BATCH: usize = 100;
const VALUE_LEN: usize = 100;
const TOPIC: &str = "bench";

/// One uncompressed batch of 100 records with 100-byte values and 4-byte
/// keys, as a producer would send it (base offset 0, no producer id).
fn batch() -> (BatchHeader, Bytes) {
    let mut b =
        BatchBuilder::with_capacity(Compression::None, RECORDS_PER_BATCH * (VALUE_LEN + 16));
    let mut value = [0u8; VALUE_LEN];
    for (i, v) in value.iter_mut().enumerate() {
        *v = b'a' + (i % 26) as u8;
    }
    for i in 0..RECORDS_PER_BATCH {
        let key = (i as u32).to_be_bytes();
        b.push(1_700_000_000_000 + i as i64, Some(&key), Some(&value), &[])
            .expect("a 100 x 100 B batch is within the builder's limits");
    }
    let bytes = b.build();
    let header = BatchHeader::parse(&bytes).expect("the builder emits a valid header");
    (header, bytes)
}

fn log_config(policy: FlushPolicy, overrides: &[(&str, &str)]) -> LogConfig {
    let overrides: BTreeMap<String, String> = overrides
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut cfg = LogConfig::resolve(&BrokerConfig::default(), &overrides);
    cfg.flush_policy = policy;
    cfg
}

async fn open_log(dir: &std::path::Path, cfg: LogConfig) -> Rc<PartitionLog> {
    let part_dir = dir.join(PartitionLog::dir_name(TOPIC, 0));
    PartitionLog::open(
        &part_dir,
        TOPIC,
        uuid::Uuid::new_v4(),
        0,
        cfg,
        PartitionMetrics::default(),
    )
    .await
    .expect("open a partition log in a fresh temporary directory")
}

/// Issues `total` appends of `batch`, keeping `in_flight` of them queued.
/// Returns how many failed (they should not; reported, never asserted on).
async fn run_appends(
    log: &PartitionLog,
    batch: &(BatchHeader, Bytes),
    total: u64,
    in_flight: usize,
) -> u64 {
    let mut pending = FuturesUnordered::new();
    let mut issued = 0u64;
    let mut failed = 0u64;
    while issued < total && pending.len() < in_flight {
        pending.push(log.append(vec![batch.clone()], true));
        issued += 1;
    }
    while let Some(r) = pending.next().await {
        if r.error != sluice_protocol::ErrorCode::None {
            failed += 1;
        }
        if issued < total {
            pending.push(log.append(vec![batch.clone()], true));
            issued += 1;
        }
    }
    failed
}

fn bench_append(c: &mut Criterion) {
    let rt =
        compio::runtime::Runtime::new().expect("io_uring runtime (the broker needs io_uring too)");
    let batch = batch();
    for (policy, name) in [
        (FlushPolicy::Always, "always"),
        (FlushPolicy::Interval, "interval"),
    ] {
        let mut g = c.benchmark_group(format!("append/{name}"));
        g.throughput(Throughput::Elements(1));
        g.sampling_mode(SamplingMode::Flat);
        if policy == FlushPolicy::Always {
            // ~1-3 ms per sync: few, long samples.
            g.sample_size(10)
                .warm_up_time(Duration::from_secs(2))
                .measurement_time(Duration::from_secs(8));
        } else {
            g.sample_size(20)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4));
        }
        for in_flight in [1usize, 16] {
            g.bench_with_input(
                BenchmarkId::new("in_flight", in_flight),
                &in_flight,
                |b, &in_flight| {
                    b.iter_custom(|iters| {
                        let dir = tempfile::tempdir().expect("temporary directory");
                        let cfg = log_config(policy, &[]);
                        let took = rt.block_on(async {
                            let log = open_log(dir.path(), cfg).await;
                            let start = Instant::now();
                            let failed = run_appends(&log, &batch, iters, in_flight).await;
                            let took = start.elapsed();
                            if failed > 0 {
                                eprintln!("warning: {failed} of {iters} appends failed");
                            }
                            log.close();
                            took
                        });
                        drop(dir);
                        took
                    })
                },
            );
        }
        g.finish();
    }
}

fn bench_read(c: &mut Criterion) {
    const BATCHES: usize = 10_000;
    let rt =
        compio::runtime::Runtime::new().expect("io_uring runtime (the broker needs io_uring too)");
    let batch = batch();
    let dir = tempfile::tempdir().expect("temporary directory");
    // 32 MiB segments: the ~109 MB log spans four of them.
    let cfg = log_config(FlushPolicy::Interval, &[("segment.bytes", "33554432")]);
    let log = rt.block_on(async {
        let log = open_log(dir.path(), cfg).await;
        let failed = run_appends(&log, &batch, BATCHES as u64, 64).await;
        if failed > 0 {
            eprintln!("warning: {failed} of {BATCHES} appends failed while filling the read log");
        }
        log
    });
    let hw = log.high_watermark();
    let segments = log.state.borrow().segments.len();
    eprintln!("read benches: {BATCHES} batches, {hw} records, {segments} segments");

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let offsets: Vec<i64> = (0..4096).map(|_| rng.gen_range(0..hw)).collect();

    let mut g = c.benchmark_group("read");
    g.throughput(Throughput::Elements(1));
    for (label, max_bytes) in [("one_batch", 1usize), ("1MiB", 1 << 20)] {
        g.bench_function(BenchmarkId::new("random_offset", label), |b| {
            let mut i = 0usize;
            b.iter(|| {
                let off = offsets[i % offsets.len()];
                i += 1;
                black_box(
                    log.read(black_box(off), max_bytes, Isolation::ReadUncommitted)
                        .map(|r| r.records.map(|f| f.len)),
                )
            })
        });
    }
    // The consumer keeping up: the last ~1 MiB of the active segment, which
    // takes the "rest of the segment fits" fast path.
    let tail = (hw - (RECORDS_PER_BATCH * 90) as i64).max(0);
    g.bench_function(BenchmarkId::new("tail", "1MiB"), |b| {
        b.iter(|| {
            black_box(
                log.read(black_box(tail), 1 << 20, Isolation::ReadUncommitted)
                    .map(|r| r.records.map(|f| f.len)),
            )
        })
    });
    g.finish();
    log.close();
    drop(log);
    drop(dir);
}

criterion_group!(benches, bench_append, bench_read);
criterion_main!(benches);
