//! Choosing a partition for a record, as the Java client does: a keyed
//! record goes to `toPositive(murmur2(key)) % partitions` (bit-for-bit the
//! Java default partitioner, so the same key lands on the same partition
//! from either client); a record without a key (or with
//! `partitioner.ignore.keys`) sticks to one partition until a batch for it
//! is closed, then moves to another partition picked at random among those
//! with a leader (KIP-480 sticky partitioning). Applications can replace the
//! whole choice with their own [`Partitioner`].

use std::collections::HashMap;
use std::sync::Mutex;

use rand::Rng;

use super::accumulator::FxBuild;
use sluice_protocol::murmur2::partition_for_key;

/// A user-supplied partition choice, called for every record that has no
/// explicit partition. It must return a partition in `0..partitions`.
pub trait Partitioner: Send + Sync {
    fn partition(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        partitions: i32,
    ) -> i32;
}

/// Kafka's keyed choice for every record: murmur2 of the key, and a random
/// partition for a record without one. The built-in partitioner (used when
/// none is set) does better for null keys (sticky batches); this one is for
/// wrapping or composing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Murmur2Partitioner;

impl Partitioner for Murmur2Partitioner {
    fn partition(
        &self,
        _topic: &str,
        key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: i32,
    ) -> i32 {
        match key {
            Some(k) => partition_for_key(k, partitions),
            None => random_partition(partitions),
        }
    }
}

/// Spreads records over all partitions in turn, ignoring keys (the Java
/// client's `RoundRobinPartitioner`, one counter per topic).
#[derive(Debug, Default)]
pub struct RoundRobinPartitioner {
    counters: Mutex<HashMap<String, u32>>,
}

impl Partitioner for RoundRobinPartitioner {
    fn partition(
        &self,
        topic: &str,
        _key: Option<&[u8]>,
        _value: Option<&[u8]>,
        partitions: i32,
    ) -> i32 {
        if partitions <= 0 {
            return 0;
        }
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let n = c.entry(topic.to_string()).or_insert(0);
        let p = (*n % partitions as u32) as i32;
        *n = n.wrapping_add(1);
        p
    }
}

fn random_partition(partitions: i32) -> i32 {
    if partitions <= 1 {
        return 0;
    }
    rand::thread_rng().gen_range(0..partitions)
}

/// The keyed half of the built-in partitioner: `None` means "no key to
/// hash" (null key, or keys ignored), i.e. use the sticky partition.
pub(crate) fn keyed_partition(
    key: Option<&[u8]>,
    ignore_keys: bool,
    partitions: i32,
) -> Option<i32> {
    match key {
        Some(k) if !ignore_keys => Some(partition_for_key(k, partitions)),
        _ => None,
    }
}

/// The sticky half of the built-in partitioner: the current partition per
/// topic for records without a key. Looked up on every keyless send, hence
/// the FxHash map (the accumulator's reasoning: speed, not flood resistance).
#[derive(Debug, Default)]
pub(crate) struct Sticky {
    current: Mutex<HashMap<String, i32, FxBuild>>,
}

impl Sticky {
    /// The topic's sticky partition, choosing one if there is none yet (or
    /// the partition count shrank under it). `available` (partitions with
    /// a leader) is asked for only then: building it for every record was
    /// an allocation per keyless send.
    pub(crate) fn partition(
        &self,
        topic: &str,
        available: impl FnOnce() -> Vec<i32>,
        partitions: i32,
    ) -> i32 {
        let mut m = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&p) = m.get(topic) {
            if p < partitions {
                return p;
            }
        }
        let p = pick(&available(), partitions, None);
        m.insert(topic.to_string(), p);
        p
    }

    /// Called when a record for `prev` would open a new batch: switch to
    /// another partition (unless another caller already did) and return it.
    pub(crate) fn on_new_batch(
        &self,
        topic: &str,
        prev: i32,
        available: &[i32],
        partitions: i32,
    ) -> i32 {
        let mut m = self.current.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(topic) {
            Some(&p) if p != prev && p < partitions => p,
            _ => {
                let p = pick(available, partitions, Some(prev));
                m.insert(topic.to_string(), p);
                p
            }
        }
    }
}

/// A random partition among `available` (those with a leader), avoiding
/// `avoid` when there is a choice; all partitions when none is available.
fn pick(available: &[i32], partitions: i32, avoid: Option<i32>) -> i32 {
    let mut rng = rand::thread_rng();
    let pool: Vec<i32> = if available.is_empty() {
        (0..partitions.max(1)).collect()
    } else {
        available.to_vec()
    };
    if pool.len() == 1 {
        return pool[0];
    }
    match avoid {
        Some(a) if pool.contains(&a) => {
            // Uniform over the others: draw among len-1 and skip `a`.
            let i = rng.gen_range(0..pool.len() - 1);
            let cand = pool[i];
            if cand == a {
                pool[pool.len() - 1]
            } else {
                cand
            }
        }
        _ => pool[rng.gen_range(0..pool.len())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_records_use_the_java_hash() {
        // murmur2("foobar") is checked against Java in the protocol crate;
        // here: the partitioner uses exactly that choice.
        assert_eq!(keyed_partition(Some(b"foobar"), false, 50), Some(16));
        for k in ["user-12345", "a", "", "some longer key with spaces"] {
            assert_eq!(
                keyed_partition(Some(k.as_bytes()), false, 7),
                Some(partition_for_key(k.as_bytes(), 7))
            );
            assert_eq!(
                Murmur2Partitioner.partition("t", Some(k.as_bytes()), None, 7),
                partition_for_key(k.as_bytes(), 7)
            );
        }
        assert_eq!(keyed_partition(Some(b"foobar"), true, 50), None);
        assert_eq!(keyed_partition(None, false, 50), None);
    }

    #[test]
    fn sticky_stays_until_a_new_batch_then_moves() {
        let s = Sticky::default();
        let avail: Vec<i32> = (0..8).collect();
        let p = s.partition("t", || avail.to_vec(), 8);
        for _ in 0..100 {
            assert_eq!(s.partition("t", || avail.to_vec(), 8), p);
        }
        let q = s.on_new_batch("t", p, &avail, 8);
        assert_ne!(q, p);
        assert_eq!(s.partition("t", || avail.to_vec(), 8), q);
        // A second caller reporting the same old partition does not move it again.
        assert_eq!(s.on_new_batch("t", p, &avail, 8), q);
        // Topics are independent.
        let other = s.partition("u", || avail.to_vec(), 8);
        assert!((0..8).contains(&other));
    }

    #[test]
    fn sticky_picks_only_available_partitions_and_spreads() {
        let s = Sticky::default();
        let avail = [1, 3, 5];
        let mut seen = std::collections::HashSet::new();
        let mut p = s.partition("t", || avail.to_vec(), 6);
        for _ in 0..200 {
            assert!(avail.contains(&p));
            seen.insert(p);
            p = s.on_new_batch("t", p, &avail, 6);
        }
        assert_eq!(seen.len(), 3);
        // A single available partition is kept even on a new batch.
        assert_eq!(pick(&[4], 6, Some(4)), 4);
        // None available: any partition.
        assert!((0..6).contains(&pick(&[], 6, None)));
    }

    #[test]
    fn round_robin_cycles_per_topic() {
        let rr = RoundRobinPartitioner::default();
        let got: Vec<i32> = (0..6)
            .map(|_| rr.partition("t", Some(b"k"), None, 3))
            .collect();
        assert_eq!(got, vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(rr.partition("u", None, None, 3), 0);
    }
}
