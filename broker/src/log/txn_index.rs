//! The transaction index of one segment, `<base>.txnindex`, in Kafka's
//! on-disk layout: one 34-byte big-endian entry per aborted transaction
//! whose abort marker lies in the segment (version i16 = 0, producer id
//! i64, first offset i64, last offset i64 = the marker's, last stable
//! offset i64 when the abort was appended). read_committed fetches take
//! from it the aborted transactions overlapping what they return (Kafka's
//! `collectAbortedTxns`).
//!
//! The entries are kept in memory beside the segment and appended to the
//! file by the append path (io_uring, synced with the round); the file is
//! derived data: start-up recovery checks it against the abort markers in
//! the log and rewrites it when it lags (a crash between the log write and
//! the index write) or names markers the log no longer has.

use std::path::{Path, PathBuf};

/// Bytes per entry.
pub const ENTRY_LEN: usize = 34;
/// The one entry version Kafka writes.
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// The offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// The offset of its abort marker.
    pub last_offset: i64,
    /// The partition's last stable offset once the abort was appended
    /// (the first offset of the oldest other open transaction, or the
    /// marker's offset + 1).
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0u8; ENTRY_LEN];
        b[..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        b[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        b[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        b[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        b[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        b
    }

    /// One entry; `None` for another version or offsets out of order.
    pub fn decode(b: &[u8; ENTRY_LEN]) -> Option<AbortedTxn> {
        let i64_at = |at: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[at..at + 8]);
            i64::from_be_bytes(a)
        };
        if i16::from_be_bytes([b[0], b[1]]) != ENTRY_VERSION {
            return None;
        }
        let e = AbortedTxn {
            producer_id: i64_at(2),
            first_offset: i64_at(10),
            last_offset: i64_at(18),
            last_stable_offset: i64_at(26),
        };
        (e.first_offset >= 0 && e.first_offset <= e.last_offset).then_some(e)
    }
}

/// The file of segment `base` in `dir`.
pub fn txn_index_path(dir: &Path, base: i64) -> PathBuf {
    dir.join(format!("{base:020}.txnindex"))
}

/// A segment's aborted transactions, in marker order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TxnIndex {
    pub entries: Vec<AbortedTxn>,
}

/// What one segment's index answers for a read (Kafka's TxnIndexSearchResult).
#[derive(Debug, Default)]
pub struct AbortedSearch {
    pub aborted: Vec<AbortedTxn>,
    /// Every transaction that started below the upper bound has ended by
    /// this segment: later segments need not be searched.
    pub complete: bool,
}

impl TxnIndex {
    /// Parses a whole file; stops at the first entry that does not decode
    /// or does not follow the one before (a torn or damaged tail).
    pub fn parse(bytes: &[u8]) -> TxnIndex {
        let mut entries: Vec<AbortedTxn> = Vec::with_capacity(bytes.len() / ENTRY_LEN);
        for chunk in bytes.chunks_exact(ENTRY_LEN) {
            let Some(e) = chunk.try_into().ok().and_then(AbortedTxn::decode) else {
                break;
            };
            if entries
                .last()
                .is_some_and(|l| e.last_offset <= l.last_offset)
            {
                break;
            }
            entries.push(e);
        }
        TxnIndex { entries }
    }

    /// Reads segment `base`'s file; empty when there is none.
    pub fn read(dir: &Path, base: i64) -> TxnIndex {
        match std::fs::read(txn_index_path(dir, base)) {
            Ok(bytes) => TxnIndex::parse(&bytes),
            Err(_) => TxnIndex::default(),
        }
    }

    /// The whole file's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode_entries(&self.entries)
    }

    /// The aborted transactions that overlap `[fetch_offset, upper_bound)`:
    /// marker at or after the fetch offset, first offset below the bound.
    pub fn collect(&self, fetch_offset: i64, upper_bound: i64) -> AbortedSearch {
        let mut out = AbortedSearch::default();
        for e in &self.entries {
            if e.last_offset >= fetch_offset && e.first_offset < upper_bound {
                out.aborted.push(*e);
            }
            if e.last_stable_offset >= upper_bound {
                out.complete = true;
                break;
            }
        }
        out
    }

    /// Drops the entries whose marker is at or after `offset` (truncation);
    /// whether any went.
    pub fn truncate_from(&mut self, offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|e| e.last_offset < offset);
        self.entries.len() != before
    }
}

pub fn encode_entries(entries: &[AbortedTxn]) -> Vec<u8> {
    let mut b = Vec::with_capacity(entries.len() * ENTRY_LEN);
    for e in entries {
        b.extend_from_slice(&e.encode());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(pid: i64, first: i64, last: i64, lso: i64) -> AbortedTxn {
        AbortedTxn {
            producer_id: pid,
            first_offset: first,
            last_offset: last,
            last_stable_offset: lso,
        }
    }

    #[test]
    fn entries_have_kafkas_layout_and_round_trip() {
        let x = e(0x0102, 3, 9, 10);
        let b = x.encode();
        assert_eq!(b.len(), 34);
        assert_eq!(&b[..2], &[0, 0], "version 0");
        assert_eq!(&b[2..10], &0x0102i64.to_be_bytes());
        assert_eq!(&b[10..18], &3i64.to_be_bytes());
        assert_eq!(&b[18..26], &9i64.to_be_bytes());
        assert_eq!(&b[26..34], &10i64.to_be_bytes());
        assert_eq!(AbortedTxn::decode(&b), Some(x));
        let idx = TxnIndex {
            entries: vec![x, e(5, 4, 12, 13)],
        };
        assert_eq!(TxnIndex::parse(&idx.encode()), idx);
    }

    #[test]
    fn parse_stops_at_a_torn_or_foreign_tail() {
        let mut b = encode_entries(&[e(1, 0, 5, 6), e(2, 1, 8, 9)]);
        let good = TxnIndex::parse(&b);
        b.extend_from_slice(&e(3, 2, 7, 9).encode()); // marker not after the last
        b.extend_from_slice(&[0, 0, 1]); // partial entry
        assert_eq!(TxnIndex::parse(&b), good);
        let mut v1 = e(4, 0, 20, 21).encode();
        v1[1] = 1; // version 1
        let mut b = encode_entries(&good.entries);
        b.extend_from_slice(&v1);
        assert_eq!(TxnIndex::parse(&b), good);
    }

    #[test]
    fn collect_takes_overlapping_aborts_and_says_when_it_is_complete() {
        let idx = TxnIndex {
            entries: vec![e(1, 0, 5, 3), e(2, 3, 8, 9), e(3, 10, 12, 13)],
        };
        // Fetch [6, 11): txn 1 ended before 6, txn 2 overlaps, txn 3 starts
        // at 10 < 11 and overlaps; txn 3's LSO 13 > 11 completes the search.
        let r = idx.collect(6, 11);
        let pids: Vec<i64> = r.aborted.iter().map(|a| a.producer_id).collect();
        assert_eq!(pids, [2, 3]);
        assert!(r.complete);
        // Fetch [0, 3): txn 1 overlaps (first 0 < 3) and its LSO 3 reaches
        // the bound: everything that started below it has ended.
        let r = idx.collect(0, 3);
        assert_eq!(r.aborted, [e(1, 0, 5, 3)]);
        assert!(r.complete);
        // Past everything: nothing, and later segments must be searched.
        let r = idx.collect(13, 20);
        assert!(r.aborted.is_empty() && !r.complete);
    }

    #[test]
    fn truncation_drops_markers_at_or_after_the_cut() {
        let mut idx = TxnIndex {
            entries: vec![e(1, 0, 5, 6), e(2, 3, 8, 9)],
        };
        assert!(!idx.truncate_from(9));
        assert!(idx.truncate_from(8));
        assert_eq!(idx.entries, [e(1, 0, 5, 6)]);
    }
}
