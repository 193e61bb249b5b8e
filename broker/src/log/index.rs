//! Sparse offset and time indexes of one segment, in Kafka's on-disk layout:
//! `.index` holds 8-byte entries (relative offset u32, file position u32) and
//! `.timeindex` 12-byte entries (timestamp i64, relative offset u32), all
//! big-endian. An entry is added every `index.interval.bytes` of log. The
//! indexes are kept in memory for lookups and appended to their files; they
//! are derived data, so a missing or damaged index is rebuilt from the log.

/// One segment's offset index, in memory.
#[derive(Debug, Default, Clone)]
pub struct OffsetIndex {
    /// (offset relative to the segment base, byte position in the segment)
    pub entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Byte position to start scanning from to find `relative` offset: the
    /// position of the greatest indexed offset <= `relative`, or 0.
    pub fn lookup(&self, relative: u32) -> u32 {
        match self.entries.partition_point(|&(o, _)| o <= relative) {
            0 => 0,
            i => self.entries[i - 1].1,
        }
    }

    pub fn encode_entry(relative: u32, position: u32) -> [u8; 8] {
        let mut b = [0u8; 8];
        b[..4].copy_from_slice(&relative.to_be_bytes());
        b[4..].copy_from_slice(&position.to_be_bytes());
        b
    }

    /// Parses an index file; stops at the first entry that is not strictly
    /// increasing or points past `log_len` (a torn or stale tail).
    pub fn parse(bytes: &[u8], log_len: u64) -> OffsetIndex {
        let mut entries: Vec<(u32, u32)> = Vec::with_capacity(bytes.len() / 8);
        for c in bytes.chunks_exact(8) {
            let rel = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
            let pos = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
            if let Some(&(lr, lp)) = entries.last() {
                if rel <= lr || pos <= lp {
                    break;
                }
            }
            if u64::from(pos) >= log_len {
                break;
            }
            entries.push((rel, pos));
        }
        OffsetIndex { entries }
    }
}

/// One segment's time index, in memory.
#[derive(Debug, Default, Clone)]
pub struct TimeIndex {
    /// (max timestamp so far, offset relative to the segment base)
    pub entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// The first indexed relative offset whose timestamp is >= `ts`, or the
    /// last entry before it (the scan continues from there).
    pub fn lookup(&self, ts: i64) -> u32 {
        match self.entries.partition_point(|&(t, _)| t < ts) {
            0 => 0,
            i => self.entries[i - 1].1,
        }
    }

    pub fn encode_entry(ts: i64, relative: u32) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&ts.to_be_bytes());
        b[8..].copy_from_slice(&relative.to_be_bytes());
        b
    }

    pub fn parse(bytes: &[u8]) -> TimeIndex {
        let mut entries: Vec<(i64, u32)> = Vec::with_capacity(bytes.len() / 12);
        for c in bytes.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&c[..8]);
            let ts = i64::from_be_bytes(t);
            let rel = u32::from_be_bytes([c[8], c[9], c[10], c[11]]);
            if let Some(&(lt, lr)) = entries.last() {
                if ts < lt || rel < lr {
                    break;
                }
            }
            entries.push((ts, rel));
        }
        TimeIndex { entries }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_finds_floor_entry() {
        let idx = OffsetIndex {
            entries: vec![(10, 4096), (20, 8192)],
        };
        assert_eq!(idx.lookup(0), 0);
        assert_eq!(idx.lookup(10), 4096);
        assert_eq!(idx.lookup(19), 4096);
        assert_eq!(idx.lookup(25), 8192);
    }

    #[test]
    fn parse_stops_at_torn_tail() {
        let mut b = Vec::new();
        b.extend_from_slice(&OffsetIndex::encode_entry(5, 100));
        b.extend_from_slice(&OffsetIndex::encode_entry(9, 200));
        b.extend_from_slice(&OffsetIndex::encode_entry(3, 300)); // not increasing
        b.extend_from_slice(&[1, 2, 3]); // partial
        assert_eq!(
            OffsetIndex::parse(&b, 1000).entries,
            vec![(5, 100), (9, 200)]
        );
        assert_eq!(OffsetIndex::parse(&b, 150).entries, vec![(5, 100)]);
    }

    #[test]
    fn time_lookup() {
        let idx = TimeIndex {
            entries: vec![(100, 0), (200, 10), (300, 20)],
        };
        assert_eq!(idx.lookup(50), 0);
        assert_eq!(idx.lookup(200), 0);
        assert_eq!(idx.lookup(250), 10);
        let mut b = Vec::new();
        for (t, r) in &idx.entries {
            b.extend_from_slice(&TimeIndex::encode_entry(*t, *r));
        }
        assert_eq!(TimeIndex::parse(&b).entries, idx.entries);
    }
}
