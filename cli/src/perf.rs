//! `sluice perf produce|consume`: load generators for the `sluice` client,
//! the Rust counterpart of `benches/e2e/rdkafka_bench.c` (and of Kafka's
//! `kafka-producer-perf-test` / `kafka-consumer-perf-test`).
//!
//! - `produce` sends N records of S bytes as fast as the producer takes
//!   them, through [`sluice::Producer::enqueue`] (so `buffer.memory`
//!   backpressure applies) with at most `--max-pending` undelivered records.
//!   Latency is per record, from the send call to the moment its delivery
//!   future is seen complete, kept in an HDR histogram (microsecond
//!   resolution, 3 significant digits). Delivery futures wait in one FIFO
//!   per partition (deliveries complete in order within a partition),
//!   whose heads are checked every 64 sends, so the bookkeeping costs no
//!   allocation or wake-up per record; with `--spread sticky` the
//!   partition is unknown at send time and one FIFO holds every record, so
//!   a record seen late behind a slower partition's head counts that wait. Throughput is N over the time from
//!   the first send to the last delivery.
//! - `consume` reads N records from the beginning of a topic (all
//!   partitions assigned by hand, or as a group member with `--group`);
//!   throughput is N over the time from assignment to the last record.
//!
//! Progress goes to stderr (an indicatif bar, hidden when stderr is not a
//! terminal); the result is a table on stdout, or one JSON object with
//! `--json`. MB means 10^6 bytes of record values, as in rdkafka_bench.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use futures::FutureExt;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use sluice::{AdminClient, DeliveryFuture, NewTopic, ProducerRecord, TopicPartition};

use super::{consumer_config, producer_config, Cli};

#[derive(clap::Subcommand, Debug)]
pub enum PerfCmd {
    /// Produce N records of S bytes as fast as possible; report records/s,
    /// MB/s and delivery latency percentiles.
    Produce(PerfProduceArgs),
    /// Read N records from the beginning of a topic; report records/s and MB/s.
    Consume(PerfConsumeArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// Record i goes to partition i % P, as benches/e2e/rdkafka_bench.c does.
    RoundRobin,
    /// No key and no partition: the client's sticky partitioner chooses.
    Sticky,
}

#[derive(clap::Args, Debug)]
pub struct PerfProduceArgs {
    #[arg(long, short = 't')]
    topic: String,
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    num_records: u64,
    /// Value size in bytes (printable pseudo-random bytes, no key).
    #[arg(long, short = 's', default_value_t = 100)]
    record_size: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    acks: String,
    /// none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    #[arg(long, default_value_t = 1_048_576)]
    batch_size: usize,
    /// Partitions of the topic when it has to be created (it is created
    /// when missing, replication factor of the broker's default).
    #[arg(long, default_value_t = 12)]
    partitions: i32,
    /// enable.idempotence; default: on for acks=all, off otherwise.
    #[arg(long)]
    idempotence: Option<bool>,
    /// How records are spread over partitions.
    #[arg(long, value_enum, default_value_t = Spread::RoundRobin)]
    spread: Spread,
    /// Records sent but not yet seen delivered, at most.
    #[arg(long, default_value_t = 200_000)]
    max_pending: usize,
    /// Give up when the run has not finished after this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout_s: u64,
    /// Print the result as one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct PerfConsumeArgs {
    #[arg(long, short = 't')]
    topic: String,
    #[arg(long, short = 'n', default_value_t = 1_000_000)]
    num_records: u64,
    /// Consume as a member of this group (auto.offset.reset=earliest)
    /// instead of assigning every partition from the beginning.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Fail when N records have not arrived after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
    /// Print the result as one JSON object on stdout instead of a table.
    #[arg(long)]
    json: bool,
}

pub async fn run(cli: &Cli, cmd: &PerfCmd) -> anyhow::Result<()> {
    match cmd {
        PerfCmd::Produce(a) => produce(cli, a).await,
        PerfCmd::Consume(a) => consume(cli, a).await,
    }
}

fn progress_bar(len: u64, verb: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    let style = ProgressStyle::with_template(&format!(
        "{verb} [{{elapsed_precise}}] {{wide_bar}} {{human_pos}}/{{human_len}} {{rate}} {{msg}}"
    ))
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} records/s", s.per_sec());
        },
    );
    pb.set_style(style);
    pb
}

/// Printable pseudo-random bytes (the xorshift of rdkafka_bench.c, so the
/// two generators compress alike).
fn payload(size: usize) -> Bytes {
    let mut x: u32 = 2_463_534_242;
    (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            b' ' + (x % 94) as u8
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Creates `topic` with `partitions` partitions unless it exists, then
/// waits until every partition has a leader; returns the partition count.
/// `client` is the producer's connection settings (so `-X` may carry
/// producer properties, which the admin client would refuse).
async fn ensure_topic(
    client: sluice::ClientConfig,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<i32> {
    let admin = AdminClient::connect(client).await?;
    let names = [topic.to_string()];
    // Create first: describing a missing topic retries for request.timeout.ms.
    for (name, r) in admin
        .create_topics(vec![NewTopic::new(topic, partitions, -1)], false)
        .await?
    {
        if let Err(e) = r {
            // The topic exists already: use it as it is.
            if e.code() != Some(sluice::ErrorCode::TopicAlreadyExists) {
                return Err(e).with_context(|| format!("creating topic {name}"));
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(t) = admin.describe_topics(&names).await {
            if let Some(t) = t.first() {
                if !t.partitions.is_empty() && t.partitions.iter().all(|p| p.leader >= 0) {
                    return Ok(t.partitions.len() as i32);
                }
            }
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no leader for every partition after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the delivered records showed so far.
struct Tally {
    /// Latency of each successful delivery, in microseconds.
    hist: Histogram<u64>,
    delivered: u64,
    errors: u64,
    first_error: Option<sluice::Error>,
}

impl Tally {
    fn note(&mut self, (latency, r): (Duration, sluice::Result<sluice::RecordMetadata>)) {
        self.delivered += 1;
        match r {
            Ok(_) => self
                .hist
                .saturating_record(latency.as_micros().max(1) as u64),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// Takes the delivered heads off every lane; returns how many.
fn reap(lanes: &mut [VecDeque<(Instant, DeliveryFuture)>], tally: &mut Tally) -> usize {
    let mut n = 0;
    let mut now = None;
    for lane in lanes {
        while let Some((t, d)) = lane.front_mut() {
            let Some(r) = d.now_or_never() else { break };
            let now = *now.get_or_insert_with(Instant::now);
            let t = *t;
            lane.pop_front();
            tally.note((now.saturating_duration_since(t), r));
            n += 1;
        }
    }
    n
}

/// Waits for the oldest undelivered record, then reaps every lane; returns
/// how many records were taken off.
async fn wait_oldest(
    lanes: &mut [VecDeque<(Instant, DeliveryFuture)>],
    tally: &mut Tally,
) -> usize {
    let oldest = lanes
        .iter()
        .enumerate()
        .filter_map(|(k, l)| l.front().map(|(t, _)| (*t, k)))
        .min();
    let Some((_, k)) = oldest else { return 0 };
    let Some((t, d)) = lanes[k].pop_front() else {
        return 0;
    };
    let r = d.await;
    tally.note((t.elapsed(), r));
    1 + reap(lanes, tally)
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn produce(cli: &Cli, a: &PerfProduceArgs) -> anyhow::Result<()> {
    if a.num_records == 0 || a.record_size == 0 || a.max_pending == 0 {
        bail!("--num-records, --record-size and --max-pending must be above 0");
    }
    let idempotence = a.idempotence.unwrap_or(a.acks == "all" || a.acks == "-1");
    let extra = [
        ("acks", a.acks.clone()),
        ("compression.type", a.compression.clone()),
        ("linger.ms", a.linger_ms.to_string()),
        ("batch.size", a.batch_size.to_string()),
        ("enable.idempotence", idempotence.to_string()),
    ];
    let cfg = producer_config(cli, &extra)?;
    let partitions = ensure_topic(cfg.client.clone(), &a.topic, a.partitions).await?;
    let producer = sluice::Producer::connect(cfg).await?;
    // Metadata first, so the first send does not wait for it.
    producer.partitions_for(&a.topic).await?;

    let value = payload(a.record_size);
    let n = a.num_records;
    let pb = progress_bar(n, "produce");
    let mut tally = Tally {
        hist: Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?,
        delivered: 0,
        errors: 0,
        first_error: None,
    };
    // (send time, delivery) per partition, oldest first.
    let lanes = if a.spread == Spread::RoundRobin {
        partitions as usize
    } else {
        1
    };
    let mut pending: Vec<VecDeque<(Instant, DeliveryFuture)>> =
        (0..lanes).map(|_| VecDeque::new()).collect();
    let mut in_flight = 0usize;

    let run = async {
        let start = Instant::now();
        for i in 0..n {
            let lane = (i % lanes as u64) as usize;
            let mut rec = ProducerRecord::new(a.topic.as_str()).value(value.clone());
            if a.spread == Spread::RoundRobin {
                rec = rec.partition(lane as i32);
            }
            let sent_at = Instant::now();
            let d = producer.enqueue(rec).await?;
            pending[lane].push_back((sent_at, d));
            in_flight += 1;
            if in_flight >= a.max_pending {
                in_flight -= wait_oldest(&mut pending, &mut tally).await;
            }
            if i % 64 == 63 {
                in_flight -= reap(&mut pending, &mut tally);
            }
            if i % 8192 == 0 {
                pb.set_position(tally.delivered);
            }
        }
        pb.set_message("sent all; waiting for deliveries");
        while in_flight > 0 {
            in_flight -= wait_oldest(&mut pending, &mut tally).await;
            pb.set_position(tally.delivered);
        }
        anyhow::Ok(start.elapsed())
    };
    // Unconstrained: the loop polls delivery futures without yielding to
    // the runtime, and a spent coop budget would make every such poll
    // report "pending" until the next yield, inflating the latencies.
    let run = tokio::task::unconstrained(run);
    let elapsed = match tokio::time::timeout(Duration::from_secs(a.timeout_s), run).await {
        Ok(r) => r?,
        Err(_) => bail!(
            "produce did not finish within {} s ({} of {n} records delivered)",
            a.timeout_s,
            tally.delivered
        ),
    };
    pb.set_position(tally.delivered);
    pb.finish_and_clear();
    producer.close(Duration::from_secs(30)).await?;

    let Tally {
        hist,
        delivered,
        errors,
        first_error,
    } = tally;
    let secs = elapsed.as_secs_f64();
    let ok = delivered - errors;
    let p = |q: f64| ms(hist.value_at_quantile(q));
    let result = json!({
        "mode": "produce",
        "client": format!("sluice-client {}", env!("CARGO_PKG_VERSION")),
        "topic": a.topic,
        "records": n,
        "record_size": a.record_size,
        "bytes": n * a.record_size as u64,
        "partitions": partitions,
        "acks": a.acks,
        "compression": a.compression,
        "linger_ms": a.linger_ms,
        "batch_size": a.batch_size,
        "idempotence": idempotence,
        "spread": match a.spread { Spread::RoundRobin => "round-robin", Spread::Sticky => "sticky" },
        "max_pending": a.max_pending,
        "seconds": secs,
        "records_per_s": n as f64 / secs,
        "mb_per_s": (n * a.record_size as u64) as f64 / 1e6 / secs,
        "latency_ms": {
            "p50": p(0.50), "p99": p(0.99), "p99_9": p(0.999),
            "max": ms(hist.max()), "mean": hist.mean() / 1000.0,
        },
        "errors": errors,
        "first_error": first_error.as_ref().map(|e| e.to_string()),
    });
    if a.json {
        println!("{result}");
    } else {
        println!(
            "{:>10}  {:>12}  {:>8}  {:>9}  {:>9}  {:>10}  {:>9}",
            "records", "records/s", "MB/s", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
        );
        println!(
            "{:>10}  {:>12.0}  {:>8.2}  {:>9.2}  {:>9.2}  {:>10.2}  {:>9.2}",
            ok,
            n as f64 / secs,
            (n * a.record_size as u64) as f64 / 1e6 / secs,
            p(0.50),
            p(0.99),
            p(0.999),
            ms(hist.max())
        );
    }
    if let Some(e) = first_error {
        bail!("{errors} of {n} records failed; first error: {e}");
    }
    Ok(())
}

async fn consume(cli: &Cli, a: &PerfConsumeArgs) -> anyhow::Result<()> {
    if a.num_records == 0 {
        bail!("--num-records must be above 0");
    }
    let mut extra = vec![
        ("auto.offset.reset", "earliest".to_string()),
        ("allow.auto.create.topics", "false".to_string()),
    ];
    if let Some(g) = &a.group {
        extra.push(("group.id", g.clone()));
    }
    let mut consumer = sluice::Consumer::connect(consumer_config(cli, &extra)?).await?;
    let start = Instant::now();
    if a.group.is_some() {
        consumer.subscribe(&[&a.topic])?;
    } else {
        let cluster = consumer.cluster().clone();
        cluster
            .ensure_topics(std::slice::from_ref(&a.topic))
            .await?;
        let t = cluster.topic(&a.topic).filter(|t| !t.partitions.is_empty());
        let t = t.ok_or_else(|| anyhow!("topic {} does not exist", a.topic))?;
        let all: Vec<TopicPartition> = t
            .partitions
            .iter()
            .map(|p| TopicPartition::new(a.topic.clone(), p.partition))
            .collect();
        consumer.assign(all.iter().cloned())?;
        consumer.seek_to_beginning(&all)?;
    }

    let n = a.num_records;
    let pb = progress_bar(n, "consume");
    let deadline = start + Duration::from_secs(a.timeout_s);
    let (mut got, mut bytes) = (0u64, 0u64);
    let mut last = start;
    let mut partitions_seen = HashSet::new();
    while got < n && Instant::now() < deadline {
        let records = consumer.poll(Duration::from_millis(100)).await?;
        if records.is_empty() {
            continue;
        }
        last = Instant::now();
        for r in &records {
            bytes += r.value.as_ref().map_or(0, |v| v.len() as u64);
            if partitions_seen.len() < 4096 {
                partitions_seen.insert(r.partition);
            }
        }
        got += records.len() as u64;
        pb.set_position(got.min(n));
    }
    pb.finish_and_clear();
    let complete = got >= n;
    consumer.close().await?;

    let secs = (last - start).as_secs_f64();
    let rate = |x: f64| if secs > 0.0 { x / secs } else { 0.0 };
    let result = json!({
        "mode": "consume",
        "client": format!("sluice-client {}", env!("CARGO_PKG_VERSION")),
        "topic": a.topic,
        "group": a.group,
        "records": got,
        "bytes": bytes,
        "partitions_seen": partitions_seen.len(),
        "seconds": secs,
        "records_per_s": rate(got as f64),
        "mb_per_s": rate(bytes as f64 / 1e6),
        "complete": complete,
    });
    if a.json {
        println!("{result}");
    } else {
        println!(
            "{:>10}  {:>12}  {:>8}  {:>8}",
            "records", "records/s", "MB/s", "seconds"
        );
        println!(
            "{:>10}  {:>12.0}  {:>8.2}  {:>8.2}",
            got,
            rate(got as f64),
            rate(bytes as f64 / 1e6),
            secs
        );
    }
    if !complete {
        bail!(
            "only {got} of {n} records from {} within {} s",
            a.topic,
            a.timeout_s
        );
    }
    Ok(())
}
