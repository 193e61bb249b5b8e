//! Exactly-once consume-transform-produce: a consumer group reads
//! `application-events` (what the producer example writes) with
//! `isolation.level=read_committed`, and a transactional producer writes
//! each polled batch, upper-cased, to `application-events-upper` in one
//! transaction together with the consumer's offsets. A crash or a fenced
//! instance never leaves half a batch visible or its offsets committed.
//!
//! ```sh
//! cargo run -p sluice-client --example transactional -- 127.0.0.1:9092 [COUNT] [INPUT] [OUTPUT] [GROUP]
//! ```
//! Stops after COUNT records (default: all, until 10 s pass with nothing new).

use std::collections::BTreeMap;
use std::time::Duration;

use sluice::producer::ProducerRecord;
use sluice::{
    Consumer, ConsumerConfig, OffsetAndMetadata, Producer, ProducerConfig, TopicPartition,
};

/// Transforms up to `max` records of `input` into `output`; returns the
/// records and transactions committed.
pub async fn run(
    bootstrap: &str,
    max: usize,
    input: &str,
    output: &str,
    group: &str,
) -> sluice::Result<(usize, usize)> {
    let producer = Producer::connect(ProducerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        // One transactional.id per instance of the application (here: per
        // group, as there is one instance); a restarted instance with the
        // same id fences the old one.
        ("transactional.id", &format!("{group}-transformer")),
        ("linger.ms", "5"),
    ])?)
    .await?;
    producer.init_transactions().await?;

    let mut consumer = Consumer::connect(ConsumerConfig::from_properties([
        ("bootstrap.servers", bootstrap),
        ("group.id", group),
        ("isolation.level", "read_committed"),
        ("enable.auto.commit", "false"),
        ("auto.offset.reset", "earliest"),
        ("max.poll.records", "200"),
    ])?)
    .await?;
    consumer.subscribe(&[input])?;

    let (mut done, mut transactions, mut idle_polls) = (0usize, 0usize, 0);
    while done < max && idle_polls < 20 {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        if records.is_empty() {
            idle_polls += 1;
            continue;
        }
        idle_polls = 0;
        // Where each partition's batch starts (to rewind after an abort) and
        // the offsets to commit with the transaction (the next to read).
        let mut first: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        let mut next: BTreeMap<TopicPartition, OffsetAndMetadata> = BTreeMap::new();
        producer.begin_transaction()?;
        let mut sends = Vec::with_capacity(records.len());
        for r in &records {
            let tp = r.topic_partition();
            first.entry(tp.clone()).or_insert(r.offset);
            next.insert(tp, OffsetAndMetadata::new(r.offset + 1));
            let upper = r
                .value
                .as_deref()
                .map(|v| String::from_utf8_lossy(v).to_uppercase())
                .unwrap_or_default();
            let mut out = ProducerRecord::new(output).value(upper);
            out.key = r.key.clone();
            sends.push(producer.send(out));
        }
        let group_metadata = consumer
            .group_metadata()
            .ok_or_else(|| sluice::Error::config("group.id", "the example needs a group"))?;
        let committed = async {
            producer
                .send_offsets_to_transaction(next, &group_metadata)
                .await?;
            producer.commit_transaction().await
        }
        .await;
        match committed {
            Ok(()) => {
                done += sends.len();
                transactions += 1;
            }
            Err(e) if e.is_abortable_transaction_error() => {
                // Nothing of the batch is visible: abort, rewind, redo it.
                eprintln!("transaction failed ({e}); aborting and retrying the batch");
                producer.abort_transaction().await?;
                for (tp, offset) in &first {
                    consumer.seek(tp, *offset)?;
                }
            }
            // Fatal (e.g. fenced by a newer instance): stop.
            Err(e) => return Err(e),
        }
        // Every send ended with its transaction (delivered, or failed and
        // the transaction aborted).
        futures::future::join_all(sends).await;
    }
    consumer.close().await?;
    producer.close(Duration::from_secs(10)).await?;
    Ok((done, transactions))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let arg = |i: usize| std::env::args().nth(i);
    let bootstrap = arg(1).unwrap_or_else(|| "127.0.0.1:9092".into());
    let max: usize = arg(2).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
    let input = arg(3).unwrap_or_else(|| "application-events".into());
    let output = arg(4).unwrap_or_else(|| "application-events-upper".into());
    let group = arg(5).unwrap_or_else(|| "application-events-transformers".into());
    let (records, transactions) = run(&bootstrap, max, &input, &output, &group).await?;
    println!("transformed {records} records in {transactions} transactions");
    Ok(())
}
