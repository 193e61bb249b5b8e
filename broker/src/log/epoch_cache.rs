//! The leader epoch cache of one partition: for each leader epoch that
//! wrote to the log, the offset of its first batch, kept in Kafka's
//! `leader-epoch-checkpoint` file in the partition directory (a version line
//! `0`, a count line, then one `epoch startOffset` line per entry; written
//! temp file, fsync, rename). It answers OffsetForLeaderEpoch
//! ([`EpochCache::end_offset_for`]) and the leader's side of Fetch's
//! diverging-epoch check ([`EpochCache::diverging_epoch`], KIP-320/595),
//! which is how a follower finds where its log and the leader's part.
//!
//! Entries are added when the first batch of a new epoch is appended
//! (leader: the epoch it stamps; follower: the epoch in fetched batches),
//! cut from the end when the log is truncated and from the start when the
//! log start moves. At recovery the cache is rebuilt from the batch headers
//! that recovery walks anyway (no extra reads), so a crash between a log
//! write and a checkpoint write can never leave it stale; the file is
//! rewritten when it disagrees (or is missing or damaged), and exists for
//! Kafka's tools and layout.

use std::path::{Path, PathBuf};

use super::segment::write_file_synced;

/// The checkpoint file's name in the partition directory (Kafka's).
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";
/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;
/// The file format version Kafka writes.
const CHECKPOINT_VERSION: &str = "0";

/// One epoch and the offset of its first batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

/// Why a checkpoint file was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("unknown checkpoint version {0:?}")]
    Version(String),
    #[error("line {0} is not a number")]
    Number(usize),
    #[error("count says {expected} entries, found {found}")]
    Count { expected: usize, found: usize },
    #[error("entries are not increasing at line {0}")]
    Order(usize),
}

/// The epochs of one partition's log, in increasing order of both epoch and
/// start offset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<EpochEntry>,
    /// The checkpoint file; `None` keeps the cache in memory only (tests).
    path: Option<PathBuf>,
}

impl EpochCache {
    /// An empty cache checkpointed to `dir`'s `leader-epoch-checkpoint`.
    pub fn new(dir: &Path) -> EpochCache {
        EpochCache {
            entries: Vec::new(),
            path: Some(dir.join(LEADER_EPOCH_CHECKPOINT)),
        }
    }

    /// A cache with no file, from entries (tests and tools).
    pub fn in_memory(entries: impl IntoIterator<Item = (i32, i64)>) -> EpochCache {
        let mut c = EpochCache::default();
        for (epoch, start) in entries {
            c.assign(epoch, start);
        }
        c
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` wrote its first batch at `start_offset`. An
    /// epoch not above the latest changes nothing (it is already known, or
    /// it is stale: a follower truncates before appending an older epoch);
    /// entries starting at or after `start_offset` are dropped first (empty
    /// epochs a truncation left). Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 {
            return false;
        }
        if let Some(last) = self.entries.last() {
            if epoch <= last.epoch {
                if epoch < last.epoch {
                    tracing::warn!(
                        epoch,
                        start_offset,
                        latest = last.epoch,
                        "ignoring a leader epoch older than the latest"
                    );
                }
                return false;
            }
        }
        self.entries.retain(|e| e.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        true
    }

    /// Notes the leader epochs of appended batches (`(epoch, base offset)`
    /// in log order). Returns whether the cache changed.
    pub fn observe(&mut self, batches: impl IntoIterator<Item = (i32, i64)>) -> bool {
        let mut changed = false;
        for (epoch, base) in batches {
            if self.latest_epoch().is_none_or(|l| epoch > l) {
                changed |= self.assign(epoch, base);
            }
        }
        changed
    }

    /// The log was cut to end at `end_offset`: drops epochs that started
    /// there or later. Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        self.entries.len() != before
    }

    /// The log now starts at `start_offset`: drops epochs that ended before
    /// it, and the epoch covering it starts there. Returns whether the cache
    /// changed.
    pub fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let covering = self
            .entries
            .iter()
            .rposition(|e| e.start_offset <= start_offset);
        match covering {
            Some(i) if i > 0 || self.entries[i].start_offset < start_offset => {
                self.entries.drain(..i);
                self.entries[0].start_offset = start_offset;
                true
            }
            _ => false,
        }
    }

    /// Empties the cache (a log emptied to start again elsewhere).
    pub fn clear(&mut self) -> bool {
        let changed = !self.entries.is_empty();
        self.entries.clear();
        changed
    }

    /// Kafka's `endOffsetFor`: for `requested`, the largest known epoch <=
    /// it and the start offset of the next epoch, or `log_end` when
    /// `requested` is the latest; (`requested`, first start offset) when it
    /// is below every known epoch; UNDEFINED (-1, -1) when it is undefined,
    /// above every known epoch, or the cache is empty.
    pub fn end_offset_for(&self, requested: i32, log_end: i64) -> (i32, i64) {
        const UNDEFINED: (i32, i64) = (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        if requested == UNDEFINED_EPOCH {
            return UNDEFINED;
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end);
        }
        let higher = self.entries.iter().position(|e| e.epoch > requested);
        let Some(h) = higher else {
            return UNDEFINED;
        };
        let next_start = self.entries[h].start_offset;
        match h.checked_sub(1) {
            None => (requested, next_start),
            Some(floor) => (self.entries[floor].epoch, next_start),
        }
    }

    /// The leader's diverging-epoch check for a Fetch (v12+): a follower
    /// that last fetched `last_fetched_epoch` and now asks from
    /// `fetch_offset` has diverged when that epoch ends on this leader
    /// before `fetch_offset` or is unknown here; then the answer is the
    /// epoch and end offset it must truncate to. `None` when consistent or
    /// when the follower sent no epoch (-1).
    pub fn diverging_epoch(
        &self,
        last_fetched_epoch: i32,
        fetch_offset: i64,
        log_end: i64,
    ) -> Option<(i32, i64)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let (epoch, end) = self.end_offset_for(last_fetched_epoch, log_end);
        (epoch < last_fetched_epoch || end < fetch_offset).then_some((epoch, end))
    }

    /// The checkpoint file's text.
    pub fn encode(&self) -> String {
        let mut s = format!("{CHECKPOINT_VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            s.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        s
    }

    /// Parses a checkpoint file's text; anything but a well-formed file of
    /// increasing entries is an error.
    pub fn decode(text: &str) -> Result<Vec<EpochEntry>, CheckpointError> {
        let mut lines = text.lines();
        let version = lines.next().unwrap_or_default().trim();
        if version != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(version.to_string()));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or(CheckpointError::Number(2))?;
        let mut entries: Vec<EpochEntry> = Vec::new();
        for (i, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let line_no = i + 3;
            let mut parts = line.split_whitespace();
            let (Some(epoch), Some(start), None) = (parts.next(), parts.next(), parts.next())
            else {
                return Err(CheckpointError::Number(line_no));
            };
            let (Ok(epoch), Ok(start_offset)) = (epoch.parse::<i32>(), start.parse::<i64>()) else {
                return Err(CheckpointError::Number(line_no));
            };
            if epoch < 0
                || start_offset < 0
                || entries
                    .last()
                    .is_some_and(|l| epoch <= l.epoch || start_offset < l.start_offset)
            {
                return Err(CheckpointError::Order(line_no));
            }
            entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if entries.len() != count {
            return Err(CheckpointError::Count {
                expected: count,
                found: entries.len(),
            });
        }
        Ok(entries)
    }

    /// Reads the checkpoint file: `Ok(None)` when it is missing, `Err` when
    /// it is unreadable or damaged.
    pub fn read_file(dir: &Path) -> std::io::Result<Option<Vec<EpochEntry>>> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        EpochCache::decode(&text)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Writes the checkpoint file (temp file, fsync, rename).
    pub fn flush(&self) -> std::io::Result<()> {
        match &self.path {
            Some(path) => write_file_synced(path, self.encode().as_bytes()),
            None => Ok(()),
        }
    }

    /// [`flush`](Self::flush), logging a failure instead of returning it:
    /// for callers past the point of no return (the data is already
    /// written); recovery rebuilds the cache from the log anyway.
    pub fn flush_or_warn(&self) {
        if let Err(e) = self.flush() {
            tracing::warn!(path = ?self.path, error = %e, "cannot write the leader epoch checkpoint");
        }
    }

    /// Recovery: the cache rebuilt from the log (`rebuilt`, from its batch
    /// headers, cut to start at `log_start`) is the truth; the file in `dir`
    /// is rewritten when it is missing, damaged or says anything else.
    pub fn recover(dir: &Path, rebuilt: EpochCache, log_start: i64) -> EpochCache {
        let mut cache = EpochCache {
            entries: rebuilt.entries,
            path: Some(dir.join(LEADER_EPOCH_CHECKPOINT)),
        };
        cache.truncate_from_start(log_start);
        let on_disk = match EpochCache::read_file(dir) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "damaged leader epoch checkpoint; rebuilt from the log");
                None
            }
        };
        if on_disk.as_deref() != Some(&cache.entries[..]) {
            cache.flush_or_warn();
        }
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> EpochCache {
        EpochCache::in_memory(entries.iter().copied())
    }

    fn pairs(c: &EpochCache) -> Vec<(i32, i64)> {
        c.entries()
            .iter()
            .map(|e| (e.epoch, e.start_offset))
            .collect()
    }

    #[test]
    fn file_round_trip_in_kafkas_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = EpochCache::new(dir.path());
        c.assign(0, 0);
        c.assign(3, 120);
        c.assign(4, 500);
        c.flush().expect("flush");
        let text = std::fs::read_to_string(dir.path().join(LEADER_EPOCH_CHECKPOINT)).expect("read");
        assert_eq!(text, "0\n3\n0 0\n3 120\n4 500\n");
        let back = EpochCache::read_file(dir.path())
            .expect("read")
            .expect("present");
        assert_eq!(back, c.entries());
        assert_eq!(
            EpochCache::read_file(&dir.path().join("none")).expect("missing"),
            None
        );
    }

    #[test]
    fn damaged_files_are_refused() {
        for bad in [
            "",
            "1\n0\n",
            "0\nx\n",
            "0\n2\n0 0\n",
            "0\n1\n0 0\n1 5\n",
            "0\n2\n3 10\n2 20\n",
            "0\n2\n1 10\n2 5\n",
            "0\n1\n1 ten\n",
            "0\n1\n1 10 extra\n",
            "0\n1\n-2 10\n",
        ] {
            assert!(EpochCache::decode(bad).is_err(), "{bad:?}");
        }
        assert_eq!(EpochCache::decode("0\n0\n"), Ok(vec![]));
    }

    #[test]
    fn recovery_trusts_the_log_and_repairs_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(LEADER_EPOCH_CHECKPOINT);
        // Damaged file: rewritten from the log.
        std::fs::write(&path, "0\n7\ngarbage").expect("write");
        let c = EpochCache::recover(dir.path(), cache(&[(0, 0), (2, 50)]), 0);
        assert_eq!(pairs(&c), [(0, 0), (2, 50)]);
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "0\n2\n0 0\n2 50\n"
        );
        // Missing file: written.
        std::fs::remove_file(&path).expect("rm");
        let c = EpochCache::recover(dir.path(), cache(&[(0, 0), (2, 50)]), 10);
        assert_eq!(pairs(&c), [(0, 10), (2, 50)], "cut to the log start");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "0\n2\n0 10\n2 50\n"
        );
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        let c = cache(&[(1, 0), (3, 100), (5, 250)]);
        let leo = 400;
        assert_eq!(c.end_offset_for(-1, leo), (-1, -1));
        assert_eq!(c.end_offset_for(5, leo), (5, 400), "latest: the log end");
        assert_eq!(c.end_offset_for(3, leo), (3, 250));
        assert_eq!(
            c.end_offset_for(4, leo),
            (3, 250),
            "unknown: the floor epoch"
        );
        assert_eq!(c.end_offset_for(1, leo), (1, 100));
        assert_eq!(c.end_offset_for(0, leo), (0, 0), "below the first");
        assert_eq!(c.end_offset_for(6, leo), (-1, -1), "above the latest");
        assert_eq!(EpochCache::default().end_offset_for(0, 10), (-1, -1));
    }

    #[test]
    fn diverging_epoch_finds_where_a_follower_parts() {
        let leader = cache(&[(1, 0), (3, 100), (5, 250)]);
        let leo = 400;
        // No epoch sent, or consistent: nothing.
        assert_eq!(leader.diverging_epoch(-1, 77, leo), None);
        assert_eq!(leader.diverging_epoch(5, 300, leo), None);
        assert_eq!(leader.diverging_epoch(3, 250, leo), None);
        // The follower has epoch 3 beyond where it ended here.
        assert_eq!(leader.diverging_epoch(3, 260, leo), Some((3, 250)));
        // The follower has an epoch the leader never had.
        assert_eq!(leader.diverging_epoch(4, 260, leo), Some((3, 250)));
        assert_eq!(leader.diverging_epoch(2, 90, leo), Some((1, 100)));
        // An epoch from the future: undefined, truncate as Kafka does.
        assert_eq!(leader.diverging_epoch(9, 400, leo), Some((-1, -1)));
    }

    #[test]
    fn assign_observe_and_truncate() {
        let mut c = EpochCache::default();
        assert!(c.observe([(0, 0), (0, 5), (2, 10), (2, 20)]));
        assert_eq!(pairs(&c), [(0, 0), (2, 10)]);
        assert!(!c.observe([(2, 30)]), "same epoch: nothing new");
        assert!(!c.assign(1, 40), "older epoch ignored");
        assert!(c.assign(4, 40));
        // Truncation from the end drops epochs that started at or after it.
        assert!(c.truncate_from_end(40));
        assert_eq!(pairs(&c), [(0, 0), (2, 10)]);
        assert!(!c.truncate_from_end(40));
        assert!(c.truncate_from_end(10));
        assert_eq!(pairs(&c), [(0, 0)]);
        // A new epoch drops empty ones that start at or after it.
        let mut c = cache(&[(0, 0), (2, 10), (3, 10)]);
        assert_eq!(pairs(&c), [(0, 0), (3, 10)]);
        assert!(c.assign(5, 10));
        assert_eq!(pairs(&c), [(0, 0), (5, 10)]);
        // From the start: the covering epoch now starts at the log start.
        let mut c = cache(&[(0, 0), (2, 10), (4, 40)]);
        assert!(!c.truncate_from_start(0));
        assert!(c.truncate_from_start(15));
        assert_eq!(pairs(&c), [(2, 15), (4, 40)]);
        assert!(c.truncate_from_start(40));
        assert_eq!(pairs(&c), [(4, 40)]);
        assert!(!c.truncate_from_start(40));
        assert!(c.truncate_from_start(41));
        assert_eq!(pairs(&c), [(4, 41)]);
        assert!(c.clear());
        assert_eq!(c.latest_epoch(), None);
    }
}
