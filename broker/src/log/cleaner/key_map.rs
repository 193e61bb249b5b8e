//! The cleaner's key map: for every key of the dirty section, the offset of
//! its latest record, kept as Kafka's `SkimpyOffsetMap` keeps it — a
//! 16-byte digest of the key instead of the key itself, so an entry costs
//! the same whatever the key's size — within a fixed memory budget
//! (`log.cleaner.dedupe.buffer.size`). When the budget is reached the map
//! refuses new keys and the pass cleans only up to where the map reaches.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

/// Memory one entry may take, counted generously: 16 digest bytes, 8 offset
/// bytes and a control byte per bucket, at a 7/8 load factor, with up to 2x
/// spare buckets right after the table grows.
pub const ENTRY_COST_BYTES: u64 = 64;

/// A key's digest. Two keys sharing one would make the cleaner drop the
/// older one's latest value: at 128 bits that is as unlikely as Kafka's
/// MD5-based map makes it.
pub type KeyDigest = [u8; 16];

pub fn digest(key: &[u8]) -> KeyDigest {
    let full = Sha256::digest(key);
    let mut d = [0u8; 16];
    d.copy_from_slice(&full[..16]);
    d
}

/// Key digest -> offset of the latest record with that key.
#[derive(Debug)]
pub struct KeyMap {
    entries: HashMap<KeyDigest, i64>,
    capacity: usize,
}

impl KeyMap {
    /// A map holding at most what `budget_bytes` of memory allows (at least
    /// one entry, so a pass always makes progress).
    pub fn with_budget(budget_bytes: u64) -> KeyMap {
        let capacity = (budget_bytes / ENTRY_COST_BYTES).clamp(1, usize::MAX as u64) as usize;
        KeyMap {
            entries: HashMap::new(),
            capacity,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `new_keys` more distinct keys would still fit.
    pub fn has_room_for(&self, new_keys: usize) -> bool {
        self.entries.len().saturating_add(new_keys) <= self.capacity
    }

    /// Records `offset` as the latest for `key`. Returns false (and changes
    /// nothing) if the key is new and the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        self.put_digest(digest(key), offset)
    }

    pub fn put_digest(&mut self, d: KeyDigest, offset: i64) -> bool {
        if let Some(slot) = self.entries.get_mut(&d) {
            *slot = (*slot).max(offset);
            return true;
        }
        if self.entries.len() >= self.capacity {
            return false;
        }
        self.entries.insert(d, offset);
        true
    }

    /// The latest offset recorded for `key`.
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&digest(key)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_offset_per_key() {
        let mut m = KeyMap::with_budget(1 << 20);
        assert!(m.put(b"a", 1));
        assert!(m.put(b"b", 2));
        assert!(m.put(b"a", 7));
        assert!(m.put(b"a", 3), "an older offset never replaces a newer one");
        assert_eq!(m.get(b"a"), Some(7));
        assert_eq!(m.get(b"b"), Some(2));
        assert_eq!(m.get(b"c"), None);
        assert_eq!(m.len(), 2);
    }

    #[test]
    fn the_budget_bounds_the_number_of_keys() {
        let mut m = KeyMap::with_budget(3 * ENTRY_COST_BYTES);
        assert_eq!(m.capacity(), 3);
        assert!(m.put(b"a", 0) && m.put(b"b", 1) && m.put(b"c", 2));
        assert!(!m.has_room_for(1));
        assert!(!m.put(b"d", 3), "a fourth key does not fit");
        assert_eq!(m.get(b"d"), None);
        assert!(m.put(b"a", 4), "known keys still update when full");
        assert_eq!(m.get(b"a"), Some(4));
        assert_eq!(KeyMap::with_budget(0).capacity(), 1, "always room for one");
    }
}
