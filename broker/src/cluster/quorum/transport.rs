//! The controllers' wire: request/response messages over TCP, each framed as
//! a 4-byte big-endian length followed by that many payload bytes. One
//! connection carries one request at a time; a client reconnects lazily and
//! drops its connection on any error or timeout (a late answer would
//! otherwise be read as the next request's). The transport knows nothing of
//! Raft: payloads are opaque bytes, so it can later be replaced by the
//! Kafka-framed inter-broker client without touching the quorum.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A frame longer than this is refused (snapshots are sent in one frame).
pub const MAX_FRAME: usize = 256 << 20;

/// Why a call did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No connection could be made: the peer is down or not listening.
    #[error("cannot connect to {addr}: {source}")]
    Unreachable { addr: String, source: io::Error },
    /// The connection broke or the peer sent garbage.
    #[error("connection to {addr} failed: {source}")]
    Io { addr: String, source: io::Error },
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|len| *len as usize <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
    w.write_all(&len.to_be_bytes()).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Reads one frame; `None` when the peer closed the connection between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {MAX_FRAME} limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

/// A client for one peer address.
pub struct PeerClient {
    addr: String,
    conn: Option<TcpStream>,
}

impl PeerClient {
    pub fn new(addr: impl Into<String>) -> Self {
        PeerClient {
            addr: addr.into(),
            conn: None,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits for its answer, all within `timeout`.
    pub async fn call(
        &mut self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        match tokio::time::timeout(timeout, self.call_inner(request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.conn = None;
                Err(e)
            }
            Err(_) => {
                self.conn = None;
                Err(TransportError::Timeout {
                    addr: self.addr.clone(),
                    timeout,
                })
            }
        }
    }

    async fn call_inner(&mut self, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let stream = TcpStream::connect(&self.addr).await.map_err(|source| {
                    TransportError::Unreachable {
                        addr: self.addr.clone(),
                        source,
                    }
                })?;
                let _ = stream.set_nodelay(true);
                self.conn.insert(stream)
            }
        };
        let io_err = |source| TransportError::Io {
            addr: self.addr.clone(),
            source,
        };
        write_frame(conn, request).await.map_err(io_err)?;
        match read_frame(conn).await {
            Ok(Some(answer)) => Ok(answer),
            Ok(None) => Err(io_err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed the connection before answering",
            ))),
            Err(e) => Err(io_err(e)),
        }
    }
}

/// A running server: every request frame is answered with the handler's
/// answer frame. Stopping it closes the listener and every connection.
pub struct Server {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Server {
    /// Serves `listener` on the current tokio runtime.
    pub fn start<H, F>(listener: TcpListener, handler: H) -> io::Result<Server>
    where
        H: Fn(Vec<u8>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Vec<u8>> + Send + 'static,
    {
        let local_addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // Connections live in this set: dropping it (when the accept
            // task is aborted) aborts them all.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            connections.spawn(serve_connection(stream, handler.clone()));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "controller listener accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(Server { local_addr, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, closes every connection and releases the port.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

async fn serve_connection<H, F>(mut stream: TcpStream, handler: H)
where
    H: Fn(Vec<u8>) -> F,
    F: Future<Output = Vec<u8>>,
{
    loop {
        let request = match read_frame(&mut stream).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "controller connection closed");
                return;
            }
        };
        let answer = handler(request).await;
        if let Err(e) = write_frame(&mut stream, &answer).await {
            tracing::debug!(error = %e, "controller connection closed while answering");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_round_trip_and_reconnect_after_the_server_restarts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(listener, |mut req: Vec<u8>| async move {
            req.reverse();
            req
        })
        .unwrap();
        let addr = server.local_addr();
        let mut client = PeerClient::new(addr.to_string());
        let t = Duration::from_secs(5);
        assert_eq!(client.call(b"abc", t).await.unwrap(), b"cba");
        assert_eq!(client.call(b"", t).await.unwrap(), b"");
        let big = vec![7u8; 1 << 20];
        assert_eq!(client.call(&big, t).await.unwrap(), big);

        server.stop().await;
        assert!(client.call(b"x", t).await.is_err());
        assert!(matches!(
            client.call(b"x", t).await,
            Err(TransportError::Unreachable { .. })
        ));

        // Same port again: the client reconnects by itself.
        let listener = TcpListener::bind(addr).await.unwrap();
        let server = Server::start(listener, |req: Vec<u8>| async move { req }).unwrap();
        assert_eq!(client.call(b"again", t).await.unwrap(), b"again");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(listener, |req: Vec<u8>| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            req
        })
        .unwrap();
        let mut client = PeerClient::new(server.local_addr().to_string());
        let err = client
            .call(b"x", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
        server.stop().await;
    }
}
