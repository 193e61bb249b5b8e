//! `replication-offset-checkpoint`: the high watermark of every partition
//! in a data directory, kept across restarts, in Kafka's checkpoint format:
//!
//! ```text
//! 0                      version
//! 2                      number of entries
//! orders 0 1234          topic partition high-watermark
//! payments 3 56
//! ```
//!
//! A replicated partition's high watermark starts from here at start-up
//! (min'd with its log end), so records a restarted node holds beyond what
//! was committed stay invisible until the ISR's log ends pass them again.
//! The file is written whole and atomically (temp file, fsync, rename,
//! directory fsync) by `shard::hw_checkpoint`; this module owns the format.

use std::collections::BTreeMap;
use std::path::Path;

use super::segment::write_file_atomically;

pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";

/// The only version Kafka writes.
const VERSION: i32 = 0;

/// High watermarks by (topic name, partition).
pub type HighWatermarks = BTreeMap<(String, i32), i64>;

/// The file's contents.
pub fn format(hws: &HighWatermarks) -> String {
    let mut out = format!("{VERSION}\n{}\n", hws.len());
    for ((topic, partition), offset) in hws {
        out.push_str(&format!("{topic} {partition} {offset}\n"));
    }
    out
}

/// Parses the file's contents. Anything short of a whole, well-formed file
/// (a version other than 0, fewer or more entries than the count says, a
/// line that is not `topic partition offset`) is an error saying why.
pub fn parse(text: &str) -> Result<HighWatermarks, String> {
    let mut lines = text.lines();
    let version = lines.next().ok_or("empty file")?.trim();
    if version.parse::<i32>() != Ok(VERSION) {
        return Err(format!("unknown version `{version}`"));
    }
    let count = lines.next().ok_or("no entry count")?.trim();
    let count: usize = count
        .parse()
        .map_err(|_| format!("`{count}` is not an entry count"))?;
    let mut hws = HighWatermarks::new();
    for n in 0..count {
        let line = lines
            .next()
            .ok_or_else(|| format!("{n} of {count} entries (truncated)"))?;
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [topic, partition, offset] = fields[..] else {
            return Err(format!("`{line}` is not `topic partition offset`"));
        };
        let partition: i32 = partition
            .parse()
            .map_err(|_| format!("bad partition in `{line}`"))?;
        let offset: i64 = offset
            .parse()
            .map_err(|_| format!("bad offset in `{line}`"))?;
        if partition < 0 || offset < 0 {
            return Err(format!("negative number in `{line}`"));
        }
        hws.insert((topic.to_string(), partition), offset);
    }
    if let Some(extra) = lines.find(|l| !l.trim().is_empty()) {
        return Err(format!("more than {count} entries: `{extra}`"));
    }
    Ok(hws)
}

/// Reads `data_dir/replication-offset-checkpoint`. Absent: no entries (a
/// new directory, or one from before the file existed). Unreadable or
/// malformed: a warning and no entries, so every partition starts from its
/// log start and its high watermark rises again as the ISR allows; nothing
/// on disk is touched.
pub fn read(data_dir: &Path) -> HighWatermarks {
    let path = data_dir.join(REPLICATION_OFFSET_CHECKPOINT);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HighWatermarks::new(),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "cannot read the high watermark checkpoint; high watermarks start from the log start");
            return HighWatermarks::new();
        }
    };
    match parse(&text) {
        Ok(hws) => hws,
        Err(why) => {
            tracing::warn!(file = %path.display(), problem = %why, "the high watermark checkpoint is damaged; high watermarks start from the log start");
            HighWatermarks::new()
        }
    }
}

/// Replaces `data_dir/replication-offset-checkpoint` atomically.
pub fn write(data_dir: &Path, hws: &HighWatermarks) -> std::io::Result<()> {
    write_file_atomically(
        &data_dir.join(REPLICATION_OFFSET_CHECKPOINT),
        format(hws).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> HighWatermarks {
        [
            (("orders".to_string(), 0), 1234),
            (("orders".to_string(), 1), 0),
            (("__consumer_offsets".to_string(), 17), 9),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn round_trips_in_kafkas_format() {
        let text = format(&sample());
        assert_eq!(
            text,
            "0\n3\n__consumer_offsets 17 9\norders 0 1234\norders 1 0\n"
        );
        assert_eq!(parse(&text), Ok(sample()));
        assert_eq!(
            parse(&format(&HighWatermarks::new())),
            Ok(HighWatermarks::new())
        );
        // Kafka's own file (no entries, or without a final newline) parses.
        assert_eq!(parse("0\n0\n"), Ok(HighWatermarks::new()));
        assert_eq!(
            parse("0\n1\norders 0 1234"),
            Ok([(("orders".to_string(), 0), 1234)].into_iter().collect())
        );
    }

    #[test]
    fn truncated_and_corrupt_files_are_refused() {
        let whole = format(&sample());
        // Every strict prefix that cuts an entry or the header is refused.
        for cut in [0, 1, 2, 3, whole.find("orders").unwrap_or(0)] {
            assert!(parse(&whole[..cut]).is_err(), "{:?} parsed", &whole[..cut]);
        }
        for bad in [
            "1\n0\n",
            "0\nx\n",
            "0\n2\norders 0 1\n",
            "0\n1\norders 0 1\norders 1 2\n",
            "0\n1\norders 0\n",
            "0\n1\norders zero 1\n",
            "0\n1\norders 0 1x\n",
            "0\n1\norders 0 -1\n",
            "\u{0}\u{0}\u{0}",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn reading_falls_back_to_nothing_and_writing_replaces_atomically() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(read(dir.path()).is_empty());
        write(dir.path(), &sample()).expect("write");
        assert_eq!(read(dir.path()), sample());
        assert!(!dir
            .path()
            .join("replication-offset-checkpoint.tmp")
            .exists());
        // A torn file: a warning and no entries, never a panic.
        let path = dir.path().join(REPLICATION_OFFSET_CHECKPOINT);
        std::fs::write(&path, "0\n3\norders 0 12").expect("write");
        assert!(read(dir.path()).is_empty());
        std::fs::write(&path, [0xff, 0xfe, 0x00]).expect("write");
        assert!(read(dir.path()).is_empty());
    }
}
