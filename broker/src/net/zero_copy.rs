//! Zero-copy fetch transfer: segment bytes go file -> pipe -> socket with
//! io_uring splice, never through user space. One pipe per connection,
//! grown to 1 MiB so a typical fetch moves in one or two rounds.
#![allow(unsafe_code)]

use std::os::fd::AsRawFd;
use std::sync::Arc;

use compio::driver::SharedFd;
use compio::fs::pipe::{self, Receiver, Sender};
use compio::net::TcpStream;

use crate::log::read::FileRange;

const PIPE_BYTES: usize = 1 << 20;

pub struct SplicePipe {
    rx: Receiver,
    tx: Sender,
    capacity: usize,
}

impl SplicePipe {
    pub async fn new() -> std::io::Result<SplicePipe> {
        let (rx, tx) = pipe::anonymous().await?;
        // SAFETY: fcntl on a pipe fd we own; F_SETPIPE_SZ takes an int and
        // only resizes the kernel buffer. Failure (e.g. over
        // /proc/sys/fs/pipe-max-size) leaves the default size, which we read back.
        let fd = tx.as_raw_fd();
        let set = unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, PIPE_BYTES as libc::c_int) };
        let capacity = if set > 0 {
            set as usize
        } else {
            // SAFETY: as above, F_GETPIPE_SZ only reads the size.
            let got = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
            if got > 0 {
                got as usize
            } else {
                64 * 1024
            }
        };
        Ok(SplicePipe { rx, tx, capacity })
    }

    /// Moves `range` from its file to `sock`. Errors if the file turns out
    /// shorter than the range (the response frame would be malformed, so
    /// the caller must close the connection).
    pub async fn send_range(&mut self, range: &FileRange, sock: &TcpStream) -> std::io::Result<()> {
        let file: SharedFd<Arc<std::fs::File>> = SharedFd::new(range.file.clone());
        let mut pos = range.position;
        let mut remaining = range.len as usize;
        while remaining > 0 {
            let want = remaining.min(self.capacity);
            let n = pipe::splice(&file, &self.tx, want)
                .offset_in(pos as i64)
                .await?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "segment shorter than fetch range",
                ));
            }
            let mut in_pipe = n;
            while in_pipe > 0 {
                let k = pipe::splice(&self.rx, sock, in_pipe).await?;
                if k == 0 {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::WriteZero,
                        "peer closed during fetch",
                    ));
                }
                in_pipe -= k;
            }
            pos += n as u64;
            remaining -= n;
        }
        Ok(())
    }
}
