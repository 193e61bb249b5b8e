//! `partition.metadata`: the file in each partition directory that binds it
//! to its topic id, in Kafka's format (KIP-516):
//!
//! ```text
//! version: 0
//! topic_id: <the topic id, base64url without padding>
//! ```
//!
//! A topic deleted and recreated under the same name has a new id, so a
//! directory `name-p` whose file names another id holds a deleted topic's
//! records; the replica layer (`ReplicaManager::open`) decides what to do
//! with it. This module only reads and writes the file.

use std::path::Path;

use base64::Engine;
use uuid::Uuid;

use super::segment::write_file_atomically;

pub const PARTITION_METADATA: &str = "partition.metadata";

/// The only version Kafka writes.
const VERSION: i32 = 0;

/// What a partition directory's `partition.metadata` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredTopicId {
    /// No file: a new directory, or one written before the file existed.
    Absent,
    /// A file that cannot be read or parsed (why).
    Malformed(String),
    Id(Uuid),
}

/// Kafka's text form of a topic id (`Uuid.toString`): base64url, no padding.
pub fn encode_topic_id(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// The inverse of [`encode_topic_id`]; `None` for anything but 16 bytes.
pub fn decode_topic_id(text: &str) -> Option<Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()?;
    Uuid::from_slice(&bytes).ok()
}

/// The file's contents for `topic_id` (no trailing newline, as Kafka's).
pub fn format(topic_id: Uuid) -> String {
    format!(
        "version: {VERSION}\ntopic_id: {}",
        encode_topic_id(topic_id)
    )
}

/// Parses the file's contents: exactly a `version: 0` line and a
/// `topic_id: <id>` line (blank lines and surrounding whitespace ignored).
pub fn parse(text: &str) -> Result<Uuid, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let field = |line: Option<&str>, key: &str| -> Result<String, String> {
        let line = line.ok_or_else(|| format!("no `{key}` line"))?;
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| format!("`{line}` is not `{key}: <value>`"))?;
        if k.trim() != key {
            return Err(format!("expected `{key}`, found `{}`", k.trim()));
        }
        Ok(v.trim().to_string())
    };
    let version = field(lines.next(), "version")?;
    if version.parse::<i32>() != Ok(VERSION) {
        return Err(format!("unknown version `{version}`"));
    }
    let id = field(lines.next(), "topic_id")?;
    let id = decode_topic_id(&id).ok_or_else(|| format!("`{id}` is not a topic id"))?;
    if id.is_nil() {
        return Err("the topic id is the zero id".to_string());
    }
    if let Some(extra) = lines.next() {
        return Err(format!("unexpected line `{extra}`"));
    }
    Ok(id)
}

/// Reads `dir/partition.metadata`.
pub fn read(dir: &Path) -> StoredTopicId {
    match std::fs::read(dir.join(PARTITION_METADATA)) {
        Ok(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) => match parse(text) {
                Ok(id) => StoredTopicId::Id(id),
                Err(why) => StoredTopicId::Malformed(why),
            },
            Err(_) => StoredTopicId::Malformed("not UTF-8 text".to_string()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => StoredTopicId::Absent,
        Err(e) => StoredTopicId::Malformed(format!("cannot read it: {e}")),
    }
}

/// Writes `dir/partition.metadata` atomically (temp file, fsync, rename,
/// directory fsync).
pub fn write(dir: &Path, topic_id: Uuid) -> std::io::Result<()> {
    write_file_atomically(&dir.join(PARTITION_METADATA), format(topic_id).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_kafkas_format() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        let text = format(id);
        assert_eq!(text, "version: 0\ntopic_id: ASNFZ4mrze_-3LqYdlQyEA");
        assert_eq!(parse(&text), Ok(id));
        // What Kafka itself writes parses, with or without a final newline.
        assert_eq!(
            parse("version: 0\ntopic_id: ASNFZ4mrze_-3LqYdlQyEA\n"),
            Ok(id)
        );
    }

    #[test]
    fn malformed_files_are_refused() {
        let id = encode_topic_id(Uuid::from_u128(7));
        for bad in [
            String::new(),
            "version: 0".to_string(),
            "version: 0\ntopic_id: ".to_string(),
            // Truncated mid-id.
            format!("version: 0\ntopic_id: {}", &id[..10]),
            format!("version: 1\ntopic_id: {id}"),
            format!("topic_id: {id}\nversion: 0"),
            format!("version: 0\ntopic_id: {id}\nmore: 1"),
            format!("version: 0\ntopic_id: {}", encode_topic_id(Uuid::nil())),
            "garbage".to_string(),
        ] {
            assert!(parse(&bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn reads_absent_malformed_and_written_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()), StoredTopicId::Absent);
        std::fs::write(dir.path().join(PARTITION_METADATA), "version: 0\ntopic_").expect("write");
        assert!(matches!(read(dir.path()), StoredTopicId::Malformed(_)));
        let id = Uuid::new_v4();
        write(dir.path(), id).expect("write");
        assert_eq!(read(dir.path()), StoredTopicId::Id(id));
        assert!(!dir.path().join("partition.metadata.tmp").exists());
    }
}
