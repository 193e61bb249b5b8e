//! Wiring the group coordinator into a shard: the [`GroupLog`] backed by the
//! shard's `__consumer_offsets` partitions (a group's records go to the
//! partition Kafka's hash picks and are appended through the replica layer
//! with acks=all, so they are fsync'ed, and on every ISR member, before the
//! coordinator answers), and loading those
//! partitions' records back into the coordinator at start-up.

use std::rc::{Rc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::LocalBoxFuture;
use sluice_protocol::batch::{BatchBuilder, BatchHeader};
use sluice_protocol::clock::now_ms;
use sluice_protocol::compression::Compression;
use sluice_protocol::ErrorCode;

use crate::cluster::OFFSETS_TOPIC;
use crate::group::{GroupConfig, GroupCoordinator, GroupLog};
use crate::shard::Shard;

/// The group id at the start of every `__consumer_offsets` key (after the
/// key's i16 version).
fn group_of_key(key: &[u8]) -> Option<String> {
    let len = i16::from_be_bytes([*key.get(2)?, *key.get(3)?]);
    let len = usize::try_from(len).ok()?;
    String::from_utf8(key.get(4..4 + len)?.to_vec()).ok()
}

/// Kafka's `offsets.commit.timeout.ms` default: how long a commit waits for
/// the ISR.
const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_millis(5000);

struct OffsetsLog {
    shard: Weak<Shard>,
}

impl OffsetsLog {
    /// Appends `records` as one batch (transactional when `producer` is
    /// given) to the first record's group's partition, acks=all.
    fn append_batch(
        &self,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer: Option<(i64, i16)>,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>> {
        let shard = self.shard.upgrade();
        Box::pin(async move {
            let shard = shard.ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let Some((first_key, _)) = records.first() else {
                return Ok(());
            };
            let group = group_of_key(first_key).ok_or(ErrorCode::CorruptMessage)?;
            let meta = shard
                .broker
                .metadata
                .image()
                .by_name
                .get(OFFSETS_TOPIC)
                .cloned()
                .ok_or(ErrorCode::CoordinatorNotAvailable)?;
            let p = shard.broker.offsets_partition_of_group(&group);
            let partition = shard.replica(&meta, p).await?;
            let now = now_ms();
            let mut b = BatchBuilder::new(Compression::None).with_base_timestamp(now);
            if let Some((producer_id, producer_epoch)) = producer {
                // As Kafka's coordinator writes them: no sequence (the
                // coordinator, not the client, is the writer).
                b = b
                    .with_producer(producer_id, producer_epoch, -1)
                    .with_transactional(true);
            }
            for (k, v) in &records {
                b.push(now, Some(&k[..]), v.as_deref(), &[])
                    .map_err(|_| ErrorCode::CorruptMessage)?;
            }
            let bytes = b.build();
            let header = BatchHeader::parse(&bytes).map_err(|_| ErrorCode::CorruptMessage)?;
            // As Kafka's coordinator: acks=all, so a committed offset is on
            // every ISR member before the answer.
            let deadline = Instant::now() + OFFSETS_COMMIT_TIMEOUT;
            let r = partition.append(vec![(header, bytes)], -1, deadline).await;
            if r.error != ErrorCode::None {
                Err(r.error)
            } else {
                Ok(())
            }
        })
    }
}

impl GroupLog for OffsetsLog {
    fn append(
        &self,
        records: Vec<(Bytes, Option<Bytes>)>,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>> {
        self.append_batch(records, None)
    }

    fn append_transactional(
        &self,
        records: Vec<(Bytes, Option<Bytes>)>,
        producer_id: i64,
        producer_epoch: i16,
    ) -> LocalBoxFuture<'static, Result<(), ErrorCode>> {
        self.append_batch(records, Some((producer_id, producer_epoch)))
    }
}

pub async fn start(shard: &Rc<Shard>) -> anyhow::Result<()> {
    let cfg = &shard.broker.config;
    let gc = GroupConfig {
        group_min_session_timeout_ms: cfg.group_min_session_timeout_ms,
        group_max_session_timeout_ms: cfg.group_max_session_timeout_ms,
        group_initial_rebalance_delay_ms: cfg.group_initial_rebalance_delay_ms,
        group_max_size: cfg.group_max_size,
        offsets_retention_minutes: cfg.offsets_retention_minutes,
        broker_node_id: cfg.node_id,
        ..GroupConfig::default()
    };
    let coordinator = GroupCoordinator::new(
        gc,
        Rc::new(OffsetsLog {
            shard: Rc::downgrade(shard),
        }),
    );
    let image = shard.broker.metadata.image();
    // In a cluster, groups load when this broker becomes leader of their
    // partition (shard::roles).
    let standalone = shard.broker.metadata.member().is_none();
    if let Some(meta) = image.by_name.get(OFFSETS_TOPIC).filter(|_| standalone) {
        for p in 0..meta.partitions {
            if shard.broker.owner_of_partition(&meta.id, p) != shard.id {
                continue;
            }
            let Some(log) = shard.partition_if_open(&meta.id, p) else {
                continue;
            };
            coordinator.load(log.read_all_entries()?);
        }
    }
    *shard.groups.borrow_mut() = Some(coordinator);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_is_read_from_offsets_keys() {
        let mut key = vec![0u8, 1, 0, 3];
        key.extend_from_slice(b"abc");
        key.extend_from_slice(&[0, 1, b't']);
        assert_eq!(group_of_key(&key).as_deref(), Some("abc"));
        assert_eq!(group_of_key(&[0, 1, 0, 9, b'a']), None);
        assert_eq!(group_of_key(&[0]), None);
    }
}
