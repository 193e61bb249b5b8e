//! The durable Raft log and vote of one controller, under its quorum
//! directory:
//!
//! - `raft.log`: append-only frames `len (u32 BE) | CRC-32C of payload (u32 BE)
//!   | payload`, each payload a JSON [`LogFrame`]: an optional leading
//!   `Purged(log id)` marker, then consecutive entries. Appends are
//!   fdatasync'd before openraft is told they are durable. At start-up the
//!   file is read back; the first short, CRC-failing, undecodable or
//!   out-of-sequence frame and everything after it is cut off (a torn tail:
//!   nothing after it was ever acknowledged). `truncate_after` shortens the
//!   file; `purge` rewrites the (small) remainder to a temporary file and
//!   renames it over the log.
//! - `vote`: the current vote, written to `vote.tmp`, fsync'd, renamed, and
//!   the directory fsync'd. A corrupt vote file refuses start-up.
//! - `committed`: the last known committed log id, a hint for recovery
//!   (written without fsync; unreadable means unknown).
//!
//! The whole log is also held in memory: the metadata log stays small
//! because snapshots purge it.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::entry::RaftEntry;
use openraft::storage::{IOFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::OptionalSend;
use serde::{Deserialize, Serialize};

use super::types::{Entry, LogId, TypeConfig, Vote};

const LOG_FILE: &str = "raft.log";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const FRAME_HEADER: usize = 8;
/// A frame longer than this is garbage, not an entry.
const MAX_FRAME: usize = 256 << 20;
const VOTE_MAGIC: &[u8; 4] = b"SLVT";

/// One frame of `raft.log`.
#[derive(Serialize, Deserialize)]
enum LogFrame {
    /// Entries up to and including this id were purged (always first).
    Purged(LogId),
    Entry(Entry),
}

/// What opening the log found, for start-up logging and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogRecovery {
    pub entries: usize,
    /// Bytes cut off a torn or corrupt tail.
    pub truncated_bytes: u64,
}

/// The log store handed to openraft; clones share one log.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

struct LogInner {
    dir: PathBuf,
    file: File,
    /// Entries by index, with the byte offset of each entry's frame.
    entries: BTreeMap<u64, (Entry, u64)>,
    file_len: u64,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

fn encode_frame(frame: &LogFrame, out: &mut Vec<u8>) -> io::Result<()> {
    let payload = serde_json::to_vec(frame).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(|_| invalid("log entry too large"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Splits `bytes` into whole valid frames: returns them with their offsets,
/// and the length of the valid prefix.
fn decode_frames(bytes: &[u8]) -> (Vec<(LogFrame, u64)>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while bytes.len() - pos >= FRAME_HEADER {
        let len = u32::from_be_bytes([bytes[pos], bytes[pos + 1], bytes[pos + 2], bytes[pos + 3]])
            as usize;
        let crc = u32::from_be_bytes([
            bytes[pos + 4],
            bytes[pos + 5],
            bytes[pos + 6],
            bytes[pos + 7],
        ]);
        let start = pos + FRAME_HEADER;
        if len > MAX_FRAME || bytes.len() - start < len {
            break;
        }
        let payload = &bytes[start..start + len];
        if crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(frame) = serde_json::from_slice::<LogFrame>(payload) else {
            break;
        };
        frames.push((frame, pos as u64));
        pos = start + len;
    }
    (frames, pos)
}

/// fsyncs a directory so a rename or create in it is durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `dir/name` atomically: tmp file, fsync, rename, fsync dir.
pub(super) fn write_atomically(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    durable: bool,
) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        if durable {
            file.sync_all()?;
        }
    }
    std::fs::rename(&tmp, dir.join(name))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// `magic | CRC-32C of the JSON | JSON`, for the small state files.
fn encode_state<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    let json = serde_json::to_vec(value).map_err(io::Error::other)?;
    let mut out = Vec::with_capacity(json.len() + 8);
    out.extend_from_slice(VOTE_MAGIC);
    out.extend_from_slice(&crc32c::crc32c(&json).to_be_bytes());
    out.extend_from_slice(&json);
    Ok(out)
}

fn decode_state<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> io::Result<T> {
    if bytes.len() < 8 || &bytes[..4] != VOTE_MAGIC {
        return Err(invalid("bad magic"));
    }
    let crc = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if crc32c::crc32c(&bytes[8..]) != crc {
        return Err(invalid("CRC mismatch"));
    }
    serde_json::from_slice(&bytes[8..]).map_err(|e| invalid(e.to_string()))
}

fn read_optional(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, cutting off a torn tail.
    pub fn open(dir: &Path) -> io::Result<(LogStore, LogRecovery)> {
        std::fs::create_dir_all(dir)?;
        for stale in ["vote.tmp", "committed.tmp", "raft.log.tmp"] {
            let _ = std::fs::remove_file(dir.join(stale));
        }

        let vote = match read_optional(&dir.join(VOTE_FILE))? {
            None => None,
            Some(bytes) => Some(decode_state::<Vote>(&bytes).map_err(|e| {
                invalid(format!(
                    "controller vote file {} is corrupt ({e}); refusing to start",
                    dir.join(VOTE_FILE).display()
                ))
            })?),
        };
        let committed = read_optional(&dir.join(COMMITTED_FILE))?
            .and_then(|bytes| decode_state::<Option<LogId>>(&bytes).ok())
            .flatten();

        let path = dir.join(LOG_FILE);
        let mut bytes = Vec::new();
        if let Ok(mut file) = OpenOptions::new().read(true).open(&path) {
            file.read_to_end(&mut bytes)?;
        }
        let (frames, mut valid_len) = decode_frames(&bytes);

        let mut last_purged = None;
        let mut entries = BTreeMap::new();
        let mut next_index: Option<u64> = None;
        for (i, (frame, offset)) in frames.into_iter().enumerate() {
            match frame {
                LogFrame::Purged(log_id) if i == 0 => {
                    next_index = Some(log_id.index() + 1);
                    last_purged = Some(log_id);
                }
                LogFrame::Entry(entry) if next_index.is_none_or(|n| n == entry.index()) => {
                    next_index = Some(entry.index() + 1);
                    entries.insert(entry.index(), (entry, offset));
                }
                _ => {
                    // Out of sequence: treat as the end of the valid log.
                    valid_len = offset as usize;
                    break;
                }
            }
        }
        let recovery = LogRecovery {
            entries: entries.len(),
            truncated_bytes: (bytes.len() - valid_len) as u64,
        };

        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                path = %path.display(),
                cut = recovery.truncated_bytes,
                kept_entries = recovery.entries,
                "controller log had a torn or corrupt tail; truncated to the last whole entry"
            );
            file.set_len(valid_len as u64)?;
            file.sync_all()?;
        }
        sync_dir(dir)?;

        let mut inner = LogInner {
            dir: dir.to_path_buf(),
            file,
            entries,
            file_len: valid_len as u64,
            last_purged,
            vote,
            committed,
        };
        // A committed hint past what the log holds (lost to corruption) is
        // no hint at all.
        if inner.committed.as_ref().map(|c| c.index()) > inner.last_log_id().map(|l| l.index()) {
            inner.committed = None;
        }
        Ok((
            LogStore {
                inner: Arc::new(Mutex::new(inner)),
            },
            recovery,
        ))
    }

    fn lock(&self) -> io::Result<MutexGuard<'_, LogInner>> {
        self.inner
            .lock()
            .map_err(|_| io::Error::other("controller log lock poisoned"))
    }

    /// Whether nothing was ever stored: no vote, no entries, no purge.
    pub fn is_pristine(&self) -> io::Result<bool> {
        let inner = self.lock()?;
        Ok(inner.vote.is_none() && inner.entries.is_empty() && inner.last_purged.is_none())
    }
}

impl LogInner {
    fn last_log_id(&self) -> Option<LogId> {
        self.entries
            .values()
            .next_back()
            .map(|(e, _)| e.log_id())
            .or(self.last_purged)
    }

    fn append(&mut self, entries: Vec<Entry>) -> io::Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in &entries {
            offsets.push(self.file_len + buf.len() as u64);
            let frame = LogFrame::Entry(entry.clone());
            encode_frame(&frame, &mut buf)?;
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.file_len += buf.len() as u64;
        for (entry, offset) in entries.into_iter().zip(offsets) {
            self.entries.insert(entry.index(), (entry, offset));
        }
        Ok(())
    }

    fn truncate_after(&mut self, last: Option<LogId>) -> io::Result<()> {
        let from = last.map_or(0, |l| l.index() + 1);
        let Some(offset) = self
            .entries
            .range(from..)
            .next()
            .map(|(_, (_, offset))| *offset)
        else {
            return Ok(());
        };
        self.file.set_len(offset)?;
        self.file.sync_data()?;
        self.file_len = offset;
        self.entries.split_off(&from);
        Ok(())
    }

    fn purge(&mut self, upto: LogId) -> io::Result<()> {
        let keep = self.entries.split_off(&(upto.index() + 1));
        self.entries = keep;
        self.last_purged = Some(upto);

        let mut buf = Vec::new();
        encode_frame(&LogFrame::Purged(upto), &mut buf)?;
        let mut rewritten = BTreeMap::new();
        for (index, (entry, _)) in std::mem::take(&mut self.entries) {
            let offset = buf.len() as u64;
            encode_frame(&LogFrame::Entry(entry.clone()), &mut buf)?;
            rewritten.insert(index, (entry, offset));
        }
        write_atomically(&self.dir, LOG_FILE, &buf, true)?;
        self.file = OpenOptions::new()
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.file_len = buf.len() as u64;
        self.entries = rewritten;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let inner = self.lock()?;
        Ok(inner
            .entries
            .range(range)
            .map(|(_, (e, _))| e.clone())
            .collect())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        Ok(self.lock()?.vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let inner = self.lock()?;
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: inner.last_log_id(),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        let mut inner = self.lock()?;
        write_atomically(&inner.dir, VOTE_FILE, &encode_state(vote)?, true)?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        let mut inner = self.lock()?;
        // A hint: losing it in a crash only means re-applying from the
        // snapshot until the leader says what is committed.
        write_atomically(
            &inner.dir,
            COMMITTED_FILE,
            &encode_state(&committed)?,
            false,
        )?;
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.lock()?.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let result = self.lock().and_then(|mut inner| inner.append(entries));
        match result {
            Ok(()) => {
                callback.io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(e)
            }
        }
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        self.lock()?.truncate_after(last_log_id)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.lock()?.purge(log_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::quorum::records::MetadataRecord;
    use crate::cluster::quorum::types::Proposal;

    fn log_id(term: u64, index: u64) -> LogId {
        LogId::new_term_index(term, index)
    }

    fn entry(term: u64, index: u64) -> Entry {
        Entry::new_normal(
            log_id(term, index),
            Proposal {
                records: vec![MetadataRecord::ClusterId {
                    cluster_id: format!("c{index}"),
                }],
            },
        )
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().unwrap().entries.keys().copied().collect()
    }

    async fn append(store: &mut LogStore, entries: Vec<Entry>) {
        store.append(entries, IOFlushed::noop()).await.unwrap();
    }

    #[tokio::test]
    async fn entries_vote_and_purge_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, recovery) = LogStore::open(dir.path()).unwrap();
        assert_eq!(recovery, LogRecovery::default());
        assert!(store.is_pristine().unwrap());

        append(&mut store, (0..10).map(|i| entry(1, i)).collect()).await;
        let vote = Vote::new(2, 3);
        store.save_vote(&vote).await.unwrap();
        store.save_committed(Some(log_id(1, 7))).await.unwrap();
        store.truncate_after(Some(log_id(1, 7))).await.unwrap();
        append(&mut store, vec![entry(2, 8), entry(2, 9)]).await;
        store.purge(log_id(1, 3)).await.unwrap();
        append(&mut store, vec![entry(2, 10)]).await;
        drop(store);

        let (mut store, recovery) = LogStore::open(dir.path()).unwrap();
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(indexes(&store), (4..=10).collect::<Vec<_>>());
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert_eq!(store.read_committed().await.unwrap(), Some(log_id(1, 7)));
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id, Some(log_id(1, 3)));
        assert_eq!(state.last_log_id, Some(log_id(2, 10)));
        let got = store.try_get_log_entries(8..=9).await.unwrap();
        assert_eq!(got, vec![entry(2, 8), entry(2, 9)]);

        // Purging everything leaves the marker as the last log id.
        store.purge(log_id(2, 10)).await.unwrap();
        drop(store);
        let (mut store, _) = LogStore::open(dir.path()).unwrap();
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(log_id(2, 10)));
        assert!(indexes(&store).is_empty());
    }

    #[tokio::test]
    async fn a_torn_or_corrupt_tail_is_cut_to_the_last_whole_entry() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = LogStore::open(dir.path()).unwrap();
        append(&mut store, (0..5).map(|i| entry(1, i)).collect()).await;
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let whole = std::fs::read(&path).unwrap();

        // Torn: the last frame is cut short.
        std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
        let (store, recovery) = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![0, 1, 2, 3]);
        assert!(recovery.truncated_bytes > 0);
        let cut_len = std::fs::metadata(&path).unwrap().len();
        drop(store);

        // The file was truncated on disk: a second open finds nothing to cut.
        let (mut store, recovery) = LogStore::open(dir.path()).unwrap();
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), cut_len);
        // And appending continues where the whole entries end.
        append(&mut store, vec![entry(1, 4), entry(1, 5)]).await;
        drop(store);
        let (store, _) = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![0, 1, 2, 3, 4, 5]);
        drop(store);

        // Corrupt: a flipped byte inside the last frame fails its CRC.
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() - 10;
        bytes[at] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();
        let (store, recovery) = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![0, 1, 2, 3, 4]);
        assert!(recovery.truncated_bytes > 0);
    }

    #[tokio::test]
    async fn a_corrupt_vote_refuses_to_open() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, _) = LogStore::open(dir.path()).unwrap();
        store.save_vote(&Vote::new(1, 1)).await.unwrap();
        drop(store);
        let path = dir.path().join(VOTE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let err = LogStore::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("vote file"), "{err}");
    }
}
