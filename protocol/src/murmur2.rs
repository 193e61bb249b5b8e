//! Kafka's default partitioner hash: the Java client's `Utils.murmur2`
//! (MurmurHash2, 32-bit, seed 0x9747b28c) and the keyed partition choice
//! built on it. Keyed records must land on the same partition as with the
//! Java client, so this is bit-for-bit the Java arithmetic: wrapping 32-bit
//! multiplies, unsigned shifts, little-endian 4-byte blocks.

const SEED: u32 = 0x9747_b28c;
const M: u32 = 0x5bd1_e995;
const R: u32 = 24;

/// MurmurHash2 of `data`, as `org.apache.kafka.common.utils.Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    // Java seeds with `seed ^ length` on an int; lengths past 2^32 cannot
    // occur in Java, and truncating here mirrors the int arithmetic.
    let mut h: u32 = SEED ^ (data.len() as u32);

    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }

    // The Java switch falls through 3 -> 2 -> 1, then multiplies once.
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&b0) = tail.first() {
        h ^= u32::from(b0);
        h = h.wrapping_mul(M);
    }

    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Java's `Utils.toPositive`: clears the sign bit (not `abs`, which would
/// overflow on `i32::MIN`).
#[inline]
pub fn to_positive(n: i32) -> i32 {
    n & 0x7fff_ffff
}

/// The partition the Java client's default partitioner picks for a
/// non-null key. `num_partitions` must be positive; a non-positive count
/// (where Java would throw) yields 0 rather than a panic.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    if num_partitions <= 0 {
        return 0;
    }
    to_positive(murmur2(key)) % num_partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pairs from Kafka's own `UtilsTest.testMurmur2`, also carried by
    /// librdkafka's and franz-go's partitioner tests.
    const KAFKA_VECTORS: &[(&str, i32)] = &[
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
        ),
        ("abc", 479470107),
    ];

    /// Pairs from librdkafka's `rdmurmur2.c` unit test (which it checks
    /// against the Java client), covering every tail length.
    const LIBRDKAFKA_VECTORS: &[(&str, i32)] = &[
        ("kafka", 0xd067cf64_u32 as i32),
        ("giberish123456789", 0x8f552b0c_u32 as i32),
        ("1234", 0x9fc97b14_u32 as i32),
        ("234", 0xe7c009ca_u32 as i32),
        ("34", 0x873930da_u32 as i32),
        ("4", 0x5a4b5ca1_u32 as i32),
        (
            "PreAmbleWillBeRemoved,ThePrePartThatIs",
            0x78424f1c_u32 as i32,
        ),
        (
            "reAmbleWillBeRemoved,ThePrePartThatIs",
            0x4a62b377_u32 as i32,
        ),
        (
            "eAmbleWillBeRemoved,ThePrePartThatIs",
            0xe0e4e09e_u32 as i32,
        ),
        ("AmbleWillBeRemoved,ThePrePartThatIs", 0x62b8b43f_u32 as i32),
        ("", 0x106e08d9_u32 as i32),
    ];

    #[test]
    fn matches_kafka_test_vectors() {
        for &(key, want) in KAFKA_VECTORS.iter().chain(LIBRDKAFKA_VECTORS) {
            assert_eq!(murmur2(key.as_bytes()), want, "{key:?}");
        }
    }

    #[test]
    fn tails_and_high_bytes() {
        // Exercise every tail length and bytes >= 0x80 (Java's `& 0xff`).
        let data: Vec<u8> = (0..=255u8).rev().collect();
        let mut seen = std::collections::HashSet::new();
        for n in 0..=9 {
            assert!(seen.insert(murmur2(&data[..n])), "collision at {n}");
        }
        assert_eq!(murmur2(&[]), murmur2(b""));
    }

    #[test]
    fn positive_and_partition() {
        assert_eq!(to_positive(-1), i32::MAX);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(to_positive(5), 5);
        for &(key, h) in KAFKA_VECTORS {
            let p = partition_for_key(key.as_bytes(), 7);
            assert_eq!(p, (h & 0x7fff_ffff) % 7);
            assert!((0..7).contains(&p));
        }
        assert_eq!(partition_for_key(b"foobar", 50), 16);
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
