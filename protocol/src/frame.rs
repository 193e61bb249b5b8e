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
}
