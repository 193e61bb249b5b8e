//! Request/response framing: every Kafka message on a connection is a
//! big-endian i32 size followed by that many bytes. This module owns reading
//! that prefix and judging it against the configured limit
//! (`socket.request.max.bytes`) before anything is allocated.

/// Bytes in the size prefix.
pub const SIZE_PREFIX_LEN: usize = 4;

/// A frame size a peer sent that we refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("negative frame size {0}")]
    Negative(i32),
    #[error("frame of {size} bytes exceeds the {max} byte limit")]
    TooLarge { size: usize, max: usize },
}

/// Decodes the 4-byte size prefix.
#[inline]
pub fn read_size_prefix(buf: &[u8; SIZE_PREFIX_LEN]) -> i32 {
    i32::from_be_bytes(*buf)
}

/// Checks a decoded size against `max`, returning it as a length to read.
#[inline]
pub fn check_frame_size(size: i32, max: usize) -> Result<usize, FrameError> {
    let Ok(len) = usize::try_from(size) else {
        return Err(FrameError::Negative(size));
    };
    if len > max {
        return Err(FrameError::TooLarge { size: len, max });
    }
    Ok(len)
}

/// The body length of the frame at the start of a receive buffer, checked
/// against `max`: `Ok(None)` while fewer than [`SIZE_PREFIX_LEN`] bytes are
/// buffered, else the length (whether or not the body has arrived), so the
/// reader can refuse an oversized frame before reserving room for it.
#[inline]
pub fn peek_frame_len(buf: &[u8], max: usize) -> Result<Option<usize>, FrameError> {
    let Some(prefix) = buf.first_chunk::<SIZE_PREFIX_LEN>() else {
        return Ok(None);
    };
    check_frame_size(read_size_prefix(prefix), max).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(read_size_prefix(&[0, 0, 1, 0]), 256);
        assert_eq!(read_size_prefix(&[0xff; 4]), -1);
        assert_eq!(check_frame_size(0, 10), Ok(0));
        assert_eq!(check_frame_size(10, 10), Ok(10));
        assert_eq!(
            check_frame_size(11, 10),
            Err(FrameError::TooLarge { size: 11, max: 10 })
        );
        assert_eq!(check_frame_size(-1, 10), Err(FrameError::Negative(-1)));
        assert_eq!(
            check_frame_size(i32::MIN, usize::MAX),
            Err(FrameError::Negative(i32::MIN))
        );
    }

    #[test]
    fn peeking_a_receive_buffer() {
        assert_eq!(peek_frame_len(&[], 10), Ok(None));
        assert_eq!(peek_frame_len(&[0, 0, 0], 10), Ok(None));
        // The length is known before the body is there.
        assert_eq!(peek_frame_len(&[0, 0, 0, 5], 10), Ok(Some(5)));
        assert_eq!(peek_frame_len(&[0, 0, 0, 2, 9, 9, 0, 0], 10), Ok(Some(2)));
        assert_eq!(
            peek_frame_len(&[0, 0, 1, 0], 10),
            Err(FrameError::TooLarge { size: 256, max: 10 })
        );
        assert_eq!(
            peek_frame_len(&[0xff, 0xff, 0xff, 0xfe], 10),
            Err(FrameError::Negative(-2))
        );
    }
}
