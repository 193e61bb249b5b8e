//! What an MSK user writes first: a consumer group reading JSON events from
//! `application-events` with auto commit.
//!
//! ```sh
//! cargo run -p sluice-client --example consumer -- 127.0.0.1:9092
//! ```
//! For MSK with IAM, pass `-X security.protocol=SASL_SSL -X sasl.mechanism=AWS_MSK_IAM
//! -X aws.region=us-east-1` style properties via `SLUICE_PROPS` (comma-separated k=v).

use std::time::Duration;

use sluice::ConsumerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let max: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let extra = std::env::var("SLUICE_PROPS").unwrap_or_default();
    let mut props = vec![
        ("bootstrap.servers".to_string(), bootstrap),
        (
            "group.id".to_string(),
            "application-events-readers".to_string(),
        ),
        ("auto.offset.reset".to_string(), "earliest".to_string()),
        ("enable.auto.commit".to_string(), "true".to_string()),
        ("max.poll.records".to_string(), "500".to_string()),
    ];
    for kv in extra.split(',').filter(|s| !s.is_empty()) {
        if let Some((k, v)) = kv.split_once('=') {
            props.push((k.to_string(), v.to_string()));
        }
    }
    let config =
        ConsumerConfig::from_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let mut consumer = sluice::Consumer::connect(config).await?;
    consumer.subscribe(&["application-events"])?;

    let mut seen = 0usize;
    let mut idle_polls = 0;
    while seen < max && idle_polls < 20 {
        let records = consumer.poll(Duration::from_millis(500)).await?;
        if records.is_empty() {
            idle_polls += 1;
            continue;
        }
        idle_polls = 0;
        for r in records {
            let key = r
                .key
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let value = r
                .value
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            println!("{}-{}@{} {key} {value}", r.topic, r.partition, r.offset);
            seen += 1;
        }
    }
    consumer.close().await?;
    eprintln!("read {seen} events");
    Ok(())
}
