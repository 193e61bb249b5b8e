//! `cleaner-offset-checkpoint`: each compacted partition's first dirty
//! offset (where the last clean ended), one file per data directory in
//! Kafka's checkpoint format (version 0 line, count line, then
//! `topic partition offset` lines; the format is `hw_checkpoint`'s). Every
//! shard's cleaner records its partitions here; the file is rewritten whole
//! and atomically after a pass, on a blocking thread.
//!
//! The checkpoint only saves work: a missing or stale entry makes the
//! cleaner treat more of the log as dirty (or, for a recreated topic, less
//! as clean), never removes a record that is the latest for its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::log::hw_checkpoint;
use crate::log::segment::write_file_atomically;

pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// First dirty offsets by (topic name, partition).
pub type FirstDirtyOffsets = BTreeMap<(String, i32), i64>;

/// The broker-wide checkpoint, shared by the shards' cleaners.
pub struct CleanerCheckpoint {
    data_dir: PathBuf,
    /// The file's entries with the cleaners' updates; read on first use.
    offsets: Mutex<Option<FirstDirtyOffsets>>,
    /// Held across a snapshot and its write, so writers never put an older
    /// snapshot last.
    writing: Mutex<()>,
}

impl CleanerCheckpoint {
    pub fn new(data_dir: PathBuf) -> CleanerCheckpoint {
        CleanerCheckpoint {
            data_dir,
            offsets: Mutex::new(None),
            writing: Mutex::new(()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut FirstDirtyOffsets) -> T) -> T {
        let mut g = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        f(g.get_or_insert_with(|| read(&self.data_dir)))
    }

    /// The checkpointed first dirty offset of a partition.
    pub fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        self.with(|m| m.get(&(topic.to_string(), partition)).copied())
    }

    /// Records a partition's new first dirty offset (written by [`write`](Self::write)).
    pub fn set(&self, topic: &str, partition: i32, offset: i64) {
        self.with(|m| m.insert((topic.to_string(), partition), offset));
    }

    /// Replaces the file with the current entries. Blocking (fsyncs).
    pub fn write(&self) -> std::io::Result<()> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = self.with(|m| m.clone());
        write_file_atomically(
            &self.data_dir.join(CLEANER_OFFSET_CHECKPOINT),
            hw_checkpoint::format(&snapshot).as_bytes(),
        )
    }
}

/// Reads `data_dir/cleaner-offset-checkpoint`; absent or damaged gives no
/// entries (with a warning if damaged): every log is then dirty from its
/// start, which costs a fuller first clean and nothing else.
pub fn read(data_dir: &Path) -> FirstDirtyOffsets {
    let path = data_dir.join(CLEANER_OFFSET_CHECKPOINT);
    match std::fs::read_to_string(&path) {
        Ok(text) => hw_checkpoint::parse(&text).unwrap_or_else(|why| {
            tracing::warn!(file = %path.display(), problem = %why, "the cleaner checkpoint is damaged; compacted logs count as dirty from their start");
            FirstDirtyOffsets::new()
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => FirstDirtyOffsets::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the cleaner checkpoint; compacted logs count as dirty from their start");
            FirstDirtyOffsets::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_write_and_a_new_reader() {
        let dir = tempfile::tempdir().unwrap();
        let cp = CleanerCheckpoint::new(dir.path().to_path_buf());
        assert_eq!(cp.get("t", 0), None);
        cp.set("t", 0, 42);
        cp.set("__consumer_offsets", 7, 9);
        cp.write().unwrap();
        let text = std::fs::read_to_string(dir.path().join(CLEANER_OFFSET_CHECKPOINT)).unwrap();
        assert_eq!(text, "0\n2\n__consumer_offsets 7 9\nt 0 42\n");
        let again = CleanerCheckpoint::new(dir.path().to_path_buf());
        assert_eq!(again.get("t", 0), Some(42));
        assert_eq!(again.get("__consumer_offsets", 7), Some(9));
        std::fs::write(dir.path().join(CLEANER_OFFSET_CHECKPOINT), "0\n5\nt 0 1\n").unwrap();
        assert!(
            read(dir.path()).is_empty(),
            "a truncated file counts as none"
        );
    }
}
