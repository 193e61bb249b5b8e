//! The cleaner's files and how a cleaned segment replaces the originals
//! without a crash ever leaving a half-swapped log (Kafka's protocol):
//!
//! 1. the group's surviving batches go to `<base>.log.cleaned`, fsync'ed;
//! 2. it is renamed `<base>.log.swap` and the directory fsync'ed: from here
//!    the clean counts as done;
//! 3. in memory the new segment replaces the group, the group's other
//!    segment files are deleted and `.swap` is renamed over `<base>.log`.
//!
//! Start-up ([`recover_interrupted_cleans`], before the segments are read)
//! deletes `.cleaned` files (step 1 never finished: the originals are all
//! there) and completes every `.swap` (step 3): segment files whose offsets
//! the swap file covers go, and the swap file becomes the segment.

use std::path::{Path, PathBuf};

use sluice_protocol::batch::BATCH_HEADER_LEN;

use crate::log::segment::{self, log_file_name, parse_log_file_name};

pub const CLEANED_SUFFIX: &str = ".cleaned";
pub const SWAP_SUFFIX: &str = ".swap";

/// `<base>.log.cleaned`: a clean in progress.
pub fn cleaned_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}{CLEANED_SUFFIX}", log_file_name(base)))
}

/// `<base>.log.swap`: a finished clean not yet swapped in.
pub fn swap_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{}{SWAP_SUFFIX}", log_file_name(base)))
}

/// Removes a segment's index files (derived data, rebuilt at start-up).
pub fn remove_index_files(dir: &Path, base: i64) {
    for ext in ["index", "timeindex"] {
        let _ = std::fs::remove_file(dir.join(format!("{base:020}.{ext}")));
    }
}

/// Deletes what an interrupted clean left in `dir` and completes finished
/// swaps. Returns how many swaps it completed.
pub fn recover_interrupted_cleans(dir: &Path) -> std::io::Result<usize> {
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(CLEANED_SUFFIX) {
            tracing::info!(file = %entry.path().display(), "deleting the output of an interrupted clean");
            std::fs::remove_file(entry.path())?;
        } else if let Some(base) = name.strip_suffix(SWAP_SUFFIX).and_then(parse_log_file_name) {
            swaps.push(base);
        }
    }
    swaps.sort_unstable();
    for &base in &swaps {
        complete_swap(dir, base)?;
    }
    if !swaps.is_empty() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(swaps.len())
}

/// Step 3 of a swap at start-up: every segment whose base lies within the
/// swap file's offsets was part of the cleaned group (a later segment
/// starts past them), so it goes; then the swap file takes `base`'s name.
fn complete_swap(dir: &Path, base: i64) -> std::io::Result<()> {
    let swap = swap_path(dir, base);
    let last = last_offset_in(&swap)?.unwrap_or(base);
    let mut replaced = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(b) = parse_log_file_name(&name.to_string_lossy()) {
            if b > base && b <= last {
                replaced.push(b);
            }
        }
    }
    for b in replaced {
        std::fs::remove_file(dir.join(log_file_name(b)))?;
        remove_index_files(dir, b);
    }
    remove_index_files(dir, base);
    std::fs::rename(&swap, dir.join(log_file_name(base)))?;
    tracing::info!(dir = %dir.display(), segment = base, "completed an interrupted segment swap");
    Ok(())
}

/// The last offset of the last whole batch in a segment file.
fn last_offset_in(path: &Path) -> std::io::Result<Option<i64>> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let mut pos = 0u64;
    let mut last = None;
    while let Some(h) = segment::read_header(&file, pos, len)? {
        let total = h.total_len() as u64;
        if total < BATCH_HEADER_LEN as u64 || pos + total > len {
            break;
        }
        last = Some(h.last_offset());
        pos += total;
    }
    Ok(last)
}
