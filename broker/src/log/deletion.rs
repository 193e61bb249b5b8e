//! Removing a partition's directory (its topic deleted, or the partition
//! reassigned away from this broker) without ever leaving a half-deleted
//! log behind under the partition's name: the directory is first renamed to
//! `<topic>-<partition>.<random>-delete` (one atomic step, as Kafka does),
//! then removed. A crash in between leaves only a `-delete` directory,
//! which start-up sweeps away ([`sweep`]); a later replica of the same
//! partition starts from an empty directory instead of a log with holes.

use std::io;
use std::path::{Path, PathBuf};

const SUFFIX: &str = "-delete";

/// Deletes `dir` (a partition directory); absent is fine.
pub fn delete_partition_dir(dir: &Path) -> io::Result<()> {
    let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a partition directory", dir.display()),
        ));
    };
    let doomed: PathBuf =
        dir.with_file_name(format!("{name}.{}{SUFFIX}", uuid::Uuid::new_v4().simple()));
    match std::fs::rename(dir, &doomed) {
        Ok(()) => std::fs::remove_dir_all(&doomed),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes what deletions interrupted by a crash left in `data_dir`.
/// Returns how many directories went.
pub fn sweep(data_dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(data_dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let doomed = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(SUFFIX) && n.contains('.'));
        if doomed && path.is_dir() {
            match std::fs::remove_dir_all(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(dir = %path.display(), error = %e, "cannot remove a deleted partition directory")
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_partition_leaves_nothing_under_its_name_and_leftovers_are_swept() {
        let data = tempfile::tempdir().unwrap();
        let part = data.path().join("orders-3");
        std::fs::create_dir(&part).unwrap();
        std::fs::write(part.join("00000000000000000000.log"), b"x").unwrap();
        delete_partition_dir(&part).unwrap();
        assert!(!part.exists());
        assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
        delete_partition_dir(&part).expect("deleting an absent directory is fine");

        // A crash between the rename and the removal.
        let left = data.path().join("orders-3.0123abcd-delete");
        std::fs::create_dir(&left).unwrap();
        std::fs::write(left.join("00000000000000000000.log"), b"x").unwrap();
        let kept = data.path().join("orders-4");
        std::fs::create_dir(&kept).unwrap();
        assert_eq!(sweep(data.path()), 1);
        assert!(!left.exists());
        assert!(kept.exists(), "live partitions stay");
    }
}
