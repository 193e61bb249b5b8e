//! One log segment: `<base offset, 20 digits>.log` holding v2 record batches
//! exactly as produced (base offsets patched), with its sparse offset and time
//! indexes and its transaction index (`.txnindex`, see `txn_index`). Writes go through the io_uring `compio` file handle; reads use a
//! plain file handle shared behind an `Arc`, so a fetch served by another
//! shard can splice the byte range straight from the page cache.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_protocol::batch::{BatchHeader, BATCH_HEADER_LEN};

use super::index::{OffsetIndex, TimeIndex};
use super::txn_index::{self, TxnIndex};

pub fn log_file_name(base: i64) -> String {
    format!("{base:020}.log")
}

pub fn parse_log_file_name(name: &str) -> Option<i64> {
    let stem = name.strip_suffix(".log")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub struct Segment {
    pub base_offset: i64,
    pub dir: PathBuf,
    /// io_uring handle used for appends and fdatasync.
    pub writer: compio::fs::File,
    /// Read handle; shared with fetches in flight (keeps the inode alive even
    /// if retention deletes the file meanwhile).
    pub reader: Arc<std::fs::File>,
    /// Bytes of whole batches written and acknowledged by the appender.
    pub size: u64,
    /// The offset after the last batch in this segment.
    pub next_offset: i64,
    pub offset_index: OffsetIndex,
    pub time_index: TimeIndex,
    /// The transactions aborted by markers in this segment.
    pub txn_index: TxnIndex,
    pub max_timestamp: i64,
    pub bytes_since_last_index: usize,
    /// Wall-clock ms of creation, for `segment.ms` rolling.
    pub created_ms: i64,
}

impl Segment {
    pub fn path(&self, ext: &str) -> PathBuf {
        self.dir.join(format!("{:020}.{ext}", self.base_offset))
    }

    /// A segment with no batches noted yet, over already-open files.
    pub(crate) fn empty(
        dir: &Path,
        base_offset: i64,
        writer: compio::fs::File,
        reader: std::fs::File,
        created_ms: i64,
    ) -> Segment {
        Segment {
            base_offset,
            dir: dir.to_path_buf(),
            writer,
            reader: Arc::new(reader),
            size: 0,
            next_offset: base_offset,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            txn_index: TxnIndex::default(),
            max_timestamp: -1,
            bytes_since_last_index: 0,
            created_ms,
        }
    }

    /// Creates an empty segment (truncating leftovers of the same name).
    pub async fn create(dir: &Path, base_offset: i64, now_ms: i64) -> std::io::Result<Segment> {
        let path = dir.join(log_file_name(base_offset));
        let writer = compio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .await?;
        let reader = std::fs::File::open(&path)?;
        for ext in ["index", "timeindex", "txnindex"] {
            let _ = std::fs::remove_file(dir.join(format!("{base_offset:020}.{ext}")));
        }
        Ok(Segment::empty(dir, base_offset, writer, reader, now_ms))
    }

    /// Opens an existing segment file without interpreting its content;
    /// returns it with the file's length.
    pub async fn open_raw(dir: &Path, base_offset: i64) -> std::io::Result<(Segment, u64)> {
        let path = dir.join(log_file_name(base_offset));
        let writer = compio::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .await?;
        let reader = std::fs::File::open(&path)?;
        let meta = reader.metadata()?;
        let created_ms = meta
            .modified()
            .ok()
            .map(sluice_protocol::clock::system_time_ms)
            .unwrap_or(0);
        Ok((
            Segment::empty(dir, base_offset, writer, reader, created_ms),
            meta.len(),
        ))
    }

    /// Records a batch appended at `position` in the in-memory indexes: an
    /// offset entry and (when the max timestamp grew) a time entry once every
    /// `index_interval` bytes, as Kafka's sparse indexes do.
    pub fn note_batch(&mut self, position: u64, h: &BatchHeader, index_interval: usize) {
        let len = h.total_len();
        if h.max_timestamp > self.max_timestamp {
            self.max_timestamp = h.max_timestamp;
        }
        if self.bytes_since_last_index >= index_interval {
            let rel = (h.base_offset - self.base_offset) as u32;
            self.offset_index.entries.push((rel, position as u32));
            let last_rel = (h.last_offset() - self.base_offset) as u32;
            let grew = self
                .time_index
                .entries
                .last()
                .is_none_or(|&(t, _)| self.max_timestamp > t);
            if grew {
                self.time_index.entries.push((self.max_timestamp, last_rel));
            }
            self.bytes_since_last_index = 0;
        }
        self.bytes_since_last_index += len;
        self.size = position + len as u64;
        self.next_offset = h.last_offset() + 1;
    }

    /// Reads the batch header at `position`, if a whole header is there.
    pub fn header_at(&self, position: u64) -> std::io::Result<Option<BatchHeader>> {
        read_header(&self.reader, position, self.size)
    }

    /// Finds the position of the batch containing `offset` (the first batch
    /// whose last offset is >= `offset`), scanning headers from the index.
    pub fn position_of(&self, offset: i64) -> std::io::Result<Option<(u64, BatchHeader)>> {
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let mut pos = u64::from(self.offset_index.lookup(rel));
        while pos < self.size {
            let Some(h) = self.header_at(pos)? else {
                return Ok(None);
            };
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Writes the in-memory indexes to their files (at roll and shutdown).
    pub fn persist_indexes(&self) -> std::io::Result<()> {
        persist_index_files(
            &self.dir,
            self.base_offset,
            &self.offset_index,
            &self.time_index,
        )
    }

    pub fn delete_files(&self) {
        for ext in ["log", "index", "timeindex", "txnindex"] {
            let _ = std::fs::remove_file(self.path(ext));
        }
    }

    /// Rewrites the whole `.txnindex` from memory (no file when empty):
    /// after recovery or truncation changed it.
    pub fn persist_txn_index(&self) -> std::io::Result<()> {
        let path = txn_index::txn_index_path(&self.dir, self.base_offset);
        if self.txn_index.entries.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        write_file_synced(&path, &self.txn_index.encode())
    }
}

/// Appends encoded entries at `position` of segment `base`'s `.txnindex`
/// through io_uring, fdatasync'ed with `sync`: how an append round (or a
/// follower's append) records the aborts it wrote.
pub async fn append_txn_index(
    dir: &Path,
    base: i64,
    position: u64,
    bytes: Vec<u8>,
    sync: bool,
) -> std::io::Result<()> {
    use compio::io::AsyncWriteAtExt;
    let file = compio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .open(txn_index::txn_index_path(dir, base))
        .await?;
    let mut w = file.clone();
    let compio::BufResult(res, _) = w.write_all_at(bytes, position).await;
    res?;
    if sync {
        file.sync_data().await?;
    }
    Ok(())
}

/// Writes segment `base`'s `.index` and `.timeindex` files in `dir`.
pub fn persist_index_files(
    dir: &Path,
    base: i64,
    offsets: &OffsetIndex,
    times: &TimeIndex,
) -> std::io::Result<()> {
    let mut b = Vec::with_capacity(offsets.entries.len() * 8);
    for &(r, p) in &offsets.entries {
        b.extend_from_slice(&OffsetIndex::encode_entry(r, p));
    }
    write_file_synced(&dir.join(format!("{base:020}.index")), &b)?;
    let mut t = Vec::with_capacity(times.entries.len() * 12);
    for &(ts, r) in &times.entries {
        t.extend_from_slice(&TimeIndex::encode_entry(ts, r));
    }
    write_file_synced(&dir.join(format!("{base:020}.timeindex")), &t)
}

pub fn read_header(
    file: &std::fs::File,
    position: u64,
    limit: u64,
) -> std::io::Result<Option<BatchHeader>> {
    if position + BATCH_HEADER_LEN as u64 > limit {
        return Ok(None);
    }
    let mut buf = [0u8; BATCH_HEADER_LEN];
    file.read_exact_at(&mut buf, position)?;
    Ok(BatchHeader::parse(&buf).ok())
}

/// Writes a small file whole through `<name>.tmp`, synced and renamed over
/// `path`, so a reader sees the old file or the new one, never a mix (index
/// files, which recovery can rebuild, and the log's own checkpoints).
pub fn write_file_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let Some(name) = path.file_name() else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        ));
    };
    let mut tmp_name = name.to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(&tmp, path)
}

/// [`write_file_synced`], then an fsync of the directory so the rename
/// itself survives a crash: Kafka's way for its checkpoint and metadata
/// files that cannot be rebuilt.
pub fn write_file_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_file_synced(path, bytes)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(log_file_name(42), "00000000000000000042.log");
        assert_eq!(parse_log_file_name("00000000000000000042.log"), Some(42));
        assert_eq!(parse_log_file_name("42.log"), None);
        assert_eq!(parse_log_file_name("00000000000000000042.index"), None);
    }
}
