//! The four record-batch codecs Kafka defines (attribute bits 0-2 of a v2
//! batch): ids, `compression.type` names, and byte-exact compress and
//! decompress in the framings real clients use. Snappy is xerial-framed on
//! the way out (as the Java client writes it) and either framed or raw on the
//! way in; LZ4 is the LZ4 frame format; zstd and gzip are standard streams.
//! Every decompression is capped so a small bomb cannot exhaust memory.

use std::io::{Cursor, Read, Write};

/// Decompressed-size cap used by [`Compression::decompress`]. Far above any
/// sane batch (Kafka's `message.max.bytes` default is 1 MiB compressed), yet
/// small enough that a hostile batch cannot take the process down.
pub const DEFAULT_MAX_DECOMPRESSED_LEN: usize = 256 << 20;

/// xerial snappy-java stream header: magic, then version 1 and compatible
/// version 1 (both big-endian i32).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = 16;
/// snappy-java's default block size, so our frames look like the Java client's.
const XERIAL_BLOCK: usize = 32 * 1024;
/// Kafka's default zstd level (`compression.zstd.level`).
const ZSTD_LEVEL: i32 = 3;

thread_local! {
    // A zstd context is costly to set up (tables sized for the level): keep
    // one per thread instead of one per batch.
    static ZSTD_CCTX: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A record batch compression codec, numbered as in the batch attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// Why a codec operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressionError {
    /// Attribute bits 0-2 hold an id Kafka does not define (5, 6, 7).
    #[error("unknown compression codec id {0}")]
    UnknownId(u8),
    /// The output would exceed the caller's cap.
    #[error("decompressed data exceeds {max} bytes")]
    TooLarge { max: usize },
    /// The codec rejected the input (corrupt, truncated, wrong framing).
    #[error("{codec:?}: {message}")]
    Codec { codec: Compression, message: String },
}

impl Compression {
    /// All codecs, in id order.
    pub const ALL: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// The id stored in attribute bits 0-2.
    pub const fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }

    /// The codec for an attribute id.
    pub const fn from_id(id: u8) -> Result<Compression, CompressionError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(CompressionError::UnknownId(other)),
        })
    }

    /// Parses a `compression.type` value: none, gzip, snappy, lz4, zstd
    /// (ASCII case-insensitive). The topic-level "uncompressed" also maps to
    /// `None`; "producer" is not a codec and returns `None` (the Option).
    pub fn from_name(name: &str) -> Option<Compression> {
        Compression::ALL
            .into_iter()
            .find(|c| c.name().eq_ignore_ascii_case(name))
            .or_else(|| {
                name.eq_ignore_ascii_case("uncompressed")
                    .then_some(Compression::None)
            })
    }

    /// Kafka's name for the codec.
    pub const fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    fn err(self, e: impl std::fmt::Display) -> CompressionError {
        CompressionError::Codec {
            codec: self,
            message: e.to_string(),
        }
    }

    /// Appends the compressed form of `input` to `out`.
    pub fn compress(self, input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
        match self {
            Compression::None => out.extend_from_slice(input),
            Compression::Gzip => {
                let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
                enc.write_all(input).map_err(|e| self.err(e))?;
                enc.finish().map_err(|e| self.err(e))?;
            }
            Compression::Snappy => snappy_compress_xerial(input, out).map_err(|e| self.err(e))?,
            Compression::Lz4 => {
                // Java's KafkaLZ4BlockInputStream insists on independent
                // blocks; 64 KiB blocks match what the Java client writes.
                let info = lz4_flex::frame::FrameInfo::new()
                    .block_size(lz4_flex::frame::BlockSize::Max64KB)
                    .block_mode(lz4_flex::frame::BlockMode::Independent);
                let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
                enc.write_all(input).map_err(|e| self.err(e))?;
                enc.finish().map_err(|e| self.err(e))?;
            }
            Compression::Zstd => {
                // Compress straight into `out`'s spare capacity: no temp buffer.
                let start = out.len();
                out.reserve(zstd::zstd_safe::compress_bound(input.len()));
                let mut cur = Cursor::new(std::mem::take(out));
                cur.set_position(start as u64);
                let res = ZSTD_CCTX.with(|cell| {
                    let mut slot = cell.borrow_mut();
                    let cctx = match &mut *slot {
                        Some(c) => c,
                        None => slot.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
                    };
                    cctx.compress_to_buffer(input, &mut cur)
                });
                *out = cur.into_inner();
                res.map_err(|e| self.err(e))?;
            }
        }
        Ok(())
    }

    /// Decompresses `input` with the [`DEFAULT_MAX_DECOMPRESSED_LEN`] cap.
    pub fn decompress(self, input: &[u8]) -> Result<Vec<u8>, CompressionError> {
        self.decompress_with_limit(input, DEFAULT_MAX_DECOMPRESSED_LEN)
    }

    /// Decompresses `input`, failing with `TooLarge` past `max_len` bytes.
    pub fn decompress_with_limit(
        self,
        input: &[u8],
        max_len: usize,
    ) -> Result<Vec<u8>, CompressionError> {
        let mut out = Vec::new();
        self.decompress_into(input, &mut out, max_len)?;
        Ok(out)
    }

    /// Appends the decompressed form of `input` to `out` (which callers may
    /// reuse across batches), producing at most `max_len` new bytes.
    pub fn decompress_into(
        self,
        input: &[u8],
        out: &mut Vec<u8>,
        max_len: usize,
    ) -> Result<(), CompressionError> {
        // A guess that saves most regrowth without trusting the input.
        out.reserve(input.len().saturating_mul(4).min(max_len));
        match self {
            Compression::None => {
                if input.len() > max_len {
                    return Err(CompressionError::TooLarge { max: max_len });
                }
                out.extend_from_slice(input);
                Ok(())
            }
            // Multi-member, as Java's GZIPInputStream accepts concatenations.
            Compression::Gzip => {
                read_capped(self, flate2::read::MultiGzDecoder::new(input), out, max_len)
            }
            Compression::Snappy => snappy_decompress(input, out, max_len),
            Compression::Lz4 => read_capped(
                self,
                lz4_flex::frame::FrameDecoder::new(input),
                out,
                max_len,
            ),
            Compression::Zstd => {
                let dec =
                    zstd::stream::read::Decoder::with_buffer(input).map_err(|e| self.err(e))?;
                read_capped(self, dec, out, max_len)
            }
        }
    }
}

/// Reads `r` to its end into `out`, but never more than `max_len + 1` bytes,
/// so an oversized stream is detected without being materialised.
fn read_capped(
    codec: Compression,
    r: impl Read,
    out: &mut Vec<u8>,
    max_len: usize,
) -> Result<(), CompressionError> {
    let start = out.len();
    let limit = (max_len as u64).saturating_add(1);
    r.take(limit).read_to_end(out).map_err(|e| codec.err(e))?;
    if out.len() - start > max_len {
        out.truncate(start);
        return Err(CompressionError::TooLarge { max: max_len });
    }
    Ok(())
}

fn snappy_compress_xerial(input: &[u8], out: &mut Vec<u8>) -> Result<(), snap::Error> {
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    let mut enc = snap::raw::Encoder::new();
    for chunk in input.chunks(XERIAL_BLOCK) {
        let len_at = out.len();
        let data_at = len_at + 4;
        out.resize(data_at + snap::raw::max_compress_len(chunk.len()), 0);
        let n = enc.compress(chunk, &mut out[data_at..])?;
        out.truncate(data_at + n);
        // n <= max_compress_len(32 KiB), far below u32::MAX.
        out[len_at..data_at].copy_from_slice(&(n as u32).to_be_bytes());
    }
    Ok(())
}

/// Accepts both xerial framing (Java, librdkafka) and a bare snappy block
/// (some other clients), telling them apart by the xerial magic as
/// snappy-java's own reader does.
fn snappy_decompress(
    input: &[u8],
    out: &mut Vec<u8>,
    max_len: usize,
) -> Result<(), CompressionError> {
    let codec = Compression::Snappy;
    let start = out.len();
    let mut dec = snap::raw::Decoder::new();
    let mut block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), CompressionError> {
        // The block states its own length: check it against the cap before
        // allocating, so the cap costs nothing on valid input.
        let n = snap::raw::decompress_len(block).map_err(|e| codec.err(e))?;
        let at = out.len();
        if at - start + n > max_len {
            return Err(CompressionError::TooLarge { max: max_len });
        }
        out.resize(at + n, 0);
        let got = dec
            .decompress(block, &mut out[at..])
            .map_err(|e| codec.err(e))?;
        out.truncate(at + got);
        Ok(())
    };
    let result = if input.len() >= XERIAL_HEADER_LEN && input[..8] == XERIAL_MAGIC {
        let mut rest = &input[XERIAL_HEADER_LEN..];
        let mut res = Ok(());
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                res = Err(codec.err("truncated xerial block length"));
                break;
            };
            let len = u32::from_be_bytes(*len) as usize;
            if len > tail.len() {
                res = Err(codec.err("truncated xerial block"));
                break;
            }
            let (data, next) = tail.split_at(len);
            // An empty chunk carries nothing; skip rather than fail.
            if !data.is_empty() {
                if let Err(e) = block(data, out) {
                    res = Err(e);
                    break;
                }
            }
            rest = next;
        }
        res
    } else {
        block(input, out)
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect()
    }

    #[test]
    fn ids_and_names() {
        for c in Compression::ALL {
            assert_eq!(Compression::from_id(c.id()), Ok(c));
            assert_eq!(Compression::from_name(c.name()), Some(c));
        }
        assert_eq!(Compression::from_id(5), Err(CompressionError::UnknownId(5)));
        assert_eq!(Compression::from_name("ZSTD"), Some(Compression::Zstd));
        assert_eq!(
            Compression::from_name("uncompressed"),
            Some(Compression::None)
        );
        assert_eq!(Compression::from_name("producer"), None);
        assert_eq!(Compression::from_name("brotli"), None);
    }

    #[test]
    fn round_trip_every_codec() {
        for len in [0, 1, 100, XERIAL_BLOCK, XERIAL_BLOCK + 1, 200_000] {
            let data = sample(len);
            for c in Compression::ALL {
                let mut z = vec![0xAA]; // compress must append, not overwrite
                c.compress(&data, &mut z).unwrap();
                assert_eq!(z[0], 0xAA);
                assert_eq!(c.decompress(&z[1..]).unwrap(), data, "{c:?} len {len}");
            }
        }
    }

    #[test]
    fn snappy_writes_xerial_and_reads_raw() {
        let data = sample(100_000);
        let mut z = Vec::new();
        Compression::Snappy.compress(&data, &mut z).unwrap();
        assert_eq!(z[..8], XERIAL_MAGIC);
        assert_eq!(z[8..16], [0, 0, 0, 1, 0, 0, 0, 1]);
        // 100 000 bytes -> four 32 KiB blocks.
        let mut blocks = 0;
        let mut rest = &z[16..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            rest = &rest[4 + len..];
            blocks += 1;
        }
        assert_eq!(blocks, 4);

        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(Compression::Snappy.decompress(&raw).unwrap(), data);
    }

    #[test]
    fn xerial_hand_built_frame() {
        // Two blocks built by hand from the documented layout.
        let mut z = XERIAL_MAGIC.to_vec();
        z.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        for part in [&b"hello "[..], &b"world"[..]] {
            let b = snap::raw::Encoder::new().compress_vec(part).unwrap();
            z.extend_from_slice(&(b.len() as u32).to_be_bytes());
            z.extend_from_slice(&b);
        }
        assert_eq!(Compression::Snappy.decompress(&z).unwrap(), b"hello world");
        // Every truncation is an error or a shorter prefix, never a panic.
        for cut in 0..z.len() {
            let _ = Compression::Snappy.decompress(&z[..cut]);
        }
    }

    #[test]
    fn cap_stops_bombs() {
        let zeros = vec![0u8; 4 << 20];
        for c in Compression::ALL {
            let mut z = Vec::new();
            c.compress(&zeros, &mut z).unwrap();
            assert_eq!(
                c.decompress_with_limit(&z, 1 << 20),
                Err(CompressionError::TooLarge { max: 1 << 20 }),
                "{c:?}"
            );
            assert_eq!(c.decompress_with_limit(&z, 4 << 20).unwrap().len(), 4 << 20);
        }
    }

    #[test]
    fn garbage_is_an_error() {
        let junk: Vec<u8> = (0..300u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for c in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            assert!(c.decompress(&junk).is_err(), "{c:?}");
            for cut in 0..64 {
                let _ = c.decompress(&junk[..cut]);
            }
        }
    }
}
