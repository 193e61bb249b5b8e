//! Cluster mode's one `replication-offset-checkpoint` per data directory
//! (Kafka keeps one per log dir; sluiced has one data directory), although
//! shards own the partitions: every shard reports its partitions' high
//! watermarks to the broker-wide [`HwCheckpoint`] every
//! `replica.high.watermark.checkpoint.interval.ms`, and shard 0 then writes
//! the union of the latest reports (on a blocking thread, so no shard's
//! io_uring loop waits on the fsyncs), only once every shard has reported
//! and only when something moved. At clean shutdown every shard reports its
//! final figures and writes, so the last shard down writes them all.
//!
//! At start-up each shard's replica manager gets the file's entries
//! ([`HwCheckpoint::checkpointed`]) and starts each partition's high
//! watermark there (min'd with its log end). A checkpoint may lag the
//! partitions by an interval: an older high watermark is still a committed
//! prefix, so it only delays what consumers see after a restart, until the
//! ISR's log ends move it again. Standalone brokers neither read nor write
//! it (their high watermark is their log end).

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use super::Shard;
use crate::log::hw_checkpoint::{self, HighWatermarks};

/// The broker-wide checkpoint: what each shard last reported and what the
/// file holds.
pub struct HwCheckpoint {
    data_dir: PathBuf,
    reports: Mutex<Reports>,
    /// Held across a snapshot of the reports and its write, so two writers
    /// (shards shutting down together) never put an older snapshot last.
    writing: Mutex<Option<HighWatermarks>>,
}

struct Reports {
    /// Per shard: its partitions' high watermarks; `None` until it reports.
    by_shard: Vec<Option<HighWatermarks>>,
    /// The file as read at start-up (read once, on first use).
    loaded: Option<HighWatermarks>,
}

impl HwCheckpoint {
    pub fn new(data_dir: PathBuf, shards: usize) -> HwCheckpoint {
        HwCheckpoint {
            data_dir,
            reports: Mutex::new(Reports {
                by_shard: vec![None; shards],
                loaded: None,
            }),
            writing: Mutex::new(None),
        }
    }

    /// The checkpointed high watermarks found at start-up (read on the
    /// first call; a missing or damaged file gives none, with a warning).
    pub fn checkpointed(&self) -> HighWatermarks {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        reports
            .loaded
            .get_or_insert_with(|| hw_checkpoint::read(&self.data_dir))
            .clone()
    }

    /// Shard `shard`'s partitions and their high watermarks now.
    pub fn report(&self, shard: usize, hws: HighWatermarks) {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = reports.by_shard.get_mut(shard) {
            *slot = Some(hws);
        }
    }

    /// Writes the union of the shards' reports if every shard has reported
    /// and it differs from what was last written. Returns whether it wrote.
    /// Blocking (fsyncs).
    pub fn write_if_complete(&self) -> std::io::Result<bool> {
        let mut written = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = {
            let reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
            let mut all = HighWatermarks::new();
            for shard in &reports.by_shard {
                let Some(hws) = shard else {
                    return Ok(false);
                };
                all.extend(hws.iter().map(|(k, v)| (k.clone(), *v)));
            }
            all
        };
        if written.as_ref() == Some(&snapshot) {
            return Ok(false);
        }
        hw_checkpoint::write(&self.data_dir, &snapshot)?;
        *written = Some(snapshot);
        Ok(true)
    }
}

/// Starts this shard's periodic report (cluster mode; shard 0 also writes
/// the file). It ends when the broker shuts down.
pub fn start(shard: &Rc<Shard>) {
    let interval = Duration::from_millis(
        shard
            .broker
            .config
            .cluster
            .replica_high_watermark_checkpoint_interval_ms
            .max(1),
    );
    let weak = Rc::downgrade(shard);
    compio::runtime::spawn(async move {
        loop {
            compio::time::sleep(interval).await;
            let Some(shard) = weak.upgrade() else { return };
            if shard.is_shutting_down() {
                return;
            }
            let broker = shard.broker.clone();
            broker
                .hw_checkpoint
                .report(shard.id, shard.replicas.high_watermarks());
            let writes = shard.id == 0;
            drop(shard);
            if writes {
                let written = compio::runtime::spawn_blocking(move || {
                    broker.hw_checkpoint.write_if_complete()
                })
                .await;
                match written {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot write the high watermark checkpoint")
                    }
                    Err(_) => tracing::warn!("the high watermark checkpoint writer failed"),
                }
            }
        }
    })
    .detach();
}

/// At clean shutdown, after the final sync of the shard's logs: reports
/// its final high watermarks and writes the file (complete once the last
/// shard gets here). Does nothing standalone.
pub fn at_shutdown(shard: &Shard) {
    if !shard.replicas.is_replicated() {
        return;
    }
    let checkpoint = &shard.broker.hw_checkpoint;
    checkpoint.report(shard.id, shard.replicas.high_watermarks());
    if let Err(e) = checkpoint.write_if_complete() {
        tracing::error!(error = %e, "cannot write the high watermark checkpoint at shutdown");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hws(entries: &[(&str, i32, i64)]) -> HighWatermarks {
        entries
            .iter()
            .map(|(t, p, o)| ((t.to_string(), *p), *o))
            .collect()
    }

    #[test]
    fn writes_the_union_once_every_shard_has_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cp = HwCheckpoint::new(dir.path().to_path_buf(), 2);
        assert!(cp.checkpointed().is_empty());
        cp.report(0, hws(&[("a", 0, 5)]));
        assert!(!cp.write_if_complete().expect("write"), "shard 1 not heard");
        assert!(hw_checkpoint::read(dir.path()).is_empty());
        cp.report(1, hws(&[("a", 1, 7), ("b", 0, 0)]));
        assert!(cp.write_if_complete().expect("write"));
        let all = hws(&[("a", 0, 5), ("a", 1, 7), ("b", 0, 0)]);
        assert_eq!(hw_checkpoint::read(dir.path()), all);
        assert!(!cp.write_if_complete().expect("write"), "nothing moved");
        // A deleted partition leaves the file with its shard's next report.
        cp.report(1, hws(&[("a", 1, 9)]));
        assert!(cp.write_if_complete().expect("write"));
        assert_eq!(
            hw_checkpoint::read(dir.path()),
            hws(&[("a", 0, 5), ("a", 1, 9)])
        );
        // What a later start reads.
        let again = HwCheckpoint::new(dir.path().to_path_buf(), 2);
        assert_eq!(again.checkpointed(), hws(&[("a", 0, 5), ("a", 1, 9)]));
    }
}
