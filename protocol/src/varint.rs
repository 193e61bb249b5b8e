//! Zigzag varints as Kafka's v2 record format uses them (`ByteUtils.readVarint`
//! / `readVarlong` in the Java client): signed values are zigzag-mapped, then
//! written little-endian in 7-bit groups with a continuation bit. This module
//! owns only those primitives; callers keep their own cursor.

/// Longest encoding of an `i32` varint.
pub const MAX_VARINT_LEN: usize = 5;
/// Longest encoding of an `i64` varlong.
pub const MAX_VARLONG_LEN: usize = 10;

#[inline]
fn zigzag32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

#[inline]
fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Number of bytes [`encode_varint`] writes for `v`.
#[inline]
pub fn varint_len(v: i32) -> usize {
    unsigned_len(u64::from(zigzag32(v)))
}

/// Number of bytes [`encode_varlong`] writes for `v`.
#[inline]
pub fn varlong_len(v: i64) -> usize {
    unsigned_len(zigzag64(v))
}

#[inline]
fn unsigned_len(u: u64) -> usize {
    // 1 byte per started 7-bit group; `| 1` makes zero take one byte.
    let bits = 64 - (u | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends the zigzag varint encoding of `v`.
#[inline]
pub fn encode_varint(v: i32, out: &mut Vec<u8>) {
    encode_unsigned(u64::from(zigzag32(v)), out);
}

/// Appends the zigzag varlong encoding of `v`.
#[inline]
pub fn encode_varlong(v: i64, out: &mut Vec<u8>) {
    encode_unsigned(zigzag64(v), out);
}

#[inline]
fn encode_unsigned(mut u: u64, out: &mut Vec<u8>) {
    while u >= 0x80 {
        out.push((u as u8) | 0x80);
        u >>= 7;
    }
    out.push(u as u8);
}

/// Decodes a zigzag varint from the start of `buf`, returning the value and
/// the number of bytes it took, or `None` if `buf` ends early or the
/// encoding runs past 5 bytes (Java rejects those too).
#[inline]
pub fn decode_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let (u, n) = decode_unsigned(buf, MAX_VARINT_LEN)?;
    // Bits beyond 32 in the fifth byte are dropped, as Java's int shift does.
    let u = u as u32;
    Some((((u >> 1) as i32) ^ -((u & 1) as i32), n))
}

/// Decodes a zigzag varlong from the start of `buf`; see [`decode_varint`].
#[inline]
pub fn decode_varlong(buf: &[u8]) -> Option<(i64, usize)> {
    let (u, n) = decode_unsigned(buf, MAX_VARLONG_LEN)?;
    Some((((u >> 1) as i64) ^ -((u & 1) as i64), n))
}

#[inline]
fn decode_unsigned(buf: &[u8], max_len: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in buf.iter().take(max_len).enumerate() {
        // At i = 9 the shift is 63: higher bits fall off, as in Java.
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lengths() {
        let ints = [0, 1, -1, 63, -64, 64, -65, 8191, 8192, i32::MAX, i32::MIN];
        for &v in &ints {
            let mut out = Vec::new();
            encode_varint(v, &mut out);
            assert_eq!(out.len(), varint_len(v), "{v}");
            assert_eq!(decode_varint(&out), Some((v, out.len())));
        }
        let longs = [0, 1, -1, 1 << 40, -(1 << 40), i64::MAX, i64::MIN];
        for &v in &longs {
            let mut out = Vec::new();
            encode_varlong(v, &mut out);
            assert_eq!(out.len(), varlong_len(v), "{v}");
            assert_eq!(decode_varlong(&out), Some((v, out.len())));
        }
    }

    #[test]
    fn known_encodings() {
        // Zigzag: 0->0, -1->1, 1->2, -64->127 (one byte), 64->128 (two bytes).
        let mut out = Vec::new();
        encode_varint(-1, &mut out);
        encode_varint(1, &mut out);
        encode_varint(64, &mut out);
        assert_eq!(out, [0x01, 0x02, 0x80, 0x01]);
    }

    #[test]
    fn rejects_short_and_overlong() {
        assert_eq!(decode_varint(&[]), None);
        assert_eq!(decode_varint(&[0x80]), None);
        assert_eq!(decode_varint(&[0x80; 6]), None);
        assert_eq!(decode_varlong(&[0xff; 11]), None);
    }
}
