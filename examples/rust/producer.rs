//! What an MSK user writes first: keyed JSON events to `application-events`
//! with acks=all, gzip and a short linger.
//!
//! ```sh
//! cargo run -p sluice-client --example producer -- 127.0.0.1:9092 1000
//! ```
//! For MSK with IAM set `SLUICE_PROPS=security.protocol=SASL_SSL,sasl.mechanism=AWS_MSK_IAM,aws.region=us-east-1`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sluice::{ProducerConfig, ProducerRecord};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9092".into());
    let count: u64 = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let extra = std::env::var("SLUICE_PROPS").unwrap_or_default();
    let mut props = vec![
        ("bootstrap.servers".to_string(), bootstrap),
        ("acks".to_string(), "all".to_string()),
        ("compression.type".to_string(), "gzip".to_string()),
        ("linger.ms".to_string(), "10".to_string()),
        ("batch.size".to_string(), "65536".to_string()),
    ];
    for kv in extra.split(',').filter(|s| !s.is_empty()) {
        if let Some((k, v)) = kv.split_once('=') {
            props.push((k.to_string(), v.to_string()));
        }
    }
    let config =
        ProducerConfig::from_properties(props.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let producer = sluice::Producer::connect(config).await?;

    let mut deliveries = Vec::with_capacity(count as usize);
    for i in 0..count {
        let user = format!("user-{}", 12345 + i % 50);
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis();
        let event = format!(r#"{{"user":"{user}","action":"page_view","seq":{i},"at":{now}}}"#);
        let record = ProducerRecord::new("application-events")
            .key(user.into_bytes())
            .value(event.into_bytes());
        // enqueue waits only for buffer space; the delivery resolves once the broker has the record.
        deliveries.push(producer.enqueue(record).await?);
    }
    for d in deliveries {
        let m = d.await?;
        if m.offset % 100 == 0 {
            println!(
                "delivered to {}-{} at offset {}",
                m.topic, m.partition, m.offset
            );
        }
    }
    producer.close(Duration::from_secs(10)).await?;
    eprintln!("sent {count} events");
    Ok(())
}
