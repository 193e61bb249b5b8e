//! One connection to one broker: requests are pipelined (many in flight,
//! matched to responses by correlation id), a writer task owns the write
//! half and a reader task the read half. ApiVersions is negotiated when the
//! connection opens. A broken connection fails every pending request with a
//! retriable `Error::Connection` and is replaced by the cluster on next use.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use sluice_protocol::codec;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use super::versions::BrokerVersions;
use crate::error::{Error, ErrorCode, Result};

/// Largest response we accept (a fetch of `fetch.max.bytes` plus overhead).
const MAX_RESPONSE_BYTES: usize = 256 << 20;
/// Requests queued for the writer before callers wait.
const WRITE_QUEUE: usize = 256;

type Pending = HashMap<i32, (ApiKey, i16, oneshot::Sender<Result<Bytes>>)>;

pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

pub struct Connection {
    /// The broker's node id (-1 for a bootstrap connection).
    pub node_id: i32,
    pub addr: String,
    client_id: StrBytes,
    request_timeout: Duration,
    next_correlation: AtomicI32,
    pending: Arc<Mutex<Pending>>,
    writer: mpsc::Sender<Bytes>,
    closed: Arc<AtomicBool>,
    versions: BrokerVersions,
    /// When set, the connection counts as closed from then on (a SASL
    /// session about to expire), so the cluster opens a new one.
    retire_at: Mutex<Option<std::time::Instant>>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection({} node {})", self.addr, self.node_id)
    }
}

impl Connection {
    /// Opens a connection over `transport` (TCP, or TLS over TCP) and
    /// negotiates API versions. SASL, when configured, runs after this.
    pub async fn open(
        transport: impl Transport,
        addr: &str,
        node_id: i32,
        client_id: &str,
        request_timeout: Duration,
    ) -> Result<Arc<Connection>> {
        let (read, write) = tokio::io::split(transport);
        let (tx, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let pending: Arc<Mutex<Pending>> = Arc::new(Mutex::new(HashMap::new()));
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_loop(
            write,
            rx,
            closed.clone(),
            pending.clone(),
            addr.to_string(),
        ));
        tokio::spawn(read_loop(
            read,
            pending.clone(),
            closed.clone(),
            addr.to_string(),
        ));
        let mut conn = Connection {
            node_id,
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            request_timeout,
            next_correlation: AtomicI32::new(1),
            pending,
            writer: tx,
            closed,
            versions: BrokerVersions::default(),
            retire_at: Mutex::new(None),
        };
        conn.versions = conn.negotiate().await?;
        Ok(Arc::new(conn))
    }

    async fn negotiate(&self) -> Result<BrokerVersions> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("sluice-client");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let mut resp: ApiVersionsResponse = self.send_versioned(&req, 3).await?;
        if resp.error_code == ErrorCode::UnsupportedVersion.code() {
            // The broker is older; v0 always works.
            resp = self
                .send_versioned(&ApiVersionsRequest::default(), 0)
                .await?;
        }
        if resp.error_code != ErrorCode::None.code() {
            return Err(Error::from_wire(
                resp.error_code,
                Some("ApiVersions failed".into()),
            ));
        }
        Ok(BrokerVersions::from_response(&resp))
    }

    pub fn versions(&self) -> &BrokerVersions {
        &self.versions
    }

    pub fn is_closed(&self) -> bool {
        if self.closed.load(Ordering::Relaxed) {
            return true;
        }
        let retire = *self.retire_at.lock().unwrap_or_else(|e| e.into_inner());
        retire.is_some_and(|t| std::time::Instant::now() >= t)
    }

    /// Marks the connection for replacement at `at` (requests in flight finish).
    pub fn retire_at(&self, at: std::time::Instant) {
        *self.retire_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }

    /// Sends `req` at the highest version both sides support.
    pub async fn send<R: Request>(&self, req: &R) -> Result<R::Response>
    where
        R::Response: Decodable,
    {
        let api = api_key_of::<R>()?;
        let v = self.versions.pick(api)?;
        self.send_versioned(req, v).await
    }

    /// Like [`send`](Self::send), also returning the version used (callers
    /// that must interpret version-dependent fields need it).
    pub async fn send_with_version<R: Request>(&self, req: &R) -> Result<(R::Response, i16)>
    where
        R::Response: Decodable,
    {
        let api = api_key_of::<R>()?;
        let v = self.versions.pick(api)?;
        Ok((self.send_versioned(req, v).await?, v))
    }

    pub async fn send_versioned<R: Request>(&self, req: &R, version: i16) -> Result<R::Response>
    where
        R::Response: Decodable,
    {
        self.send_versioned_with_timeout(req, version, self.request_timeout)
            .await
    }

    /// Like [`send_versioned`](Self::send_versioned) with a timeout of its
    /// own, for requests the broker may legitimately hold longer than
    /// `request.timeout.ms` (JoinGroup waits for the whole rebalance).
    pub async fn send_versioned_with_timeout<R: Request>(
        &self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response>
    where
        R::Response: Decodable,
    {
        let api = api_key_of::<R>()?;
        if self.closed.load(Ordering::Relaxed) {
            return Err(Error::Connection {
                broker: self.addr.clone(),
                reason: "connection closed".into(),
            });
        }
        let rx = self
            .enqueue(req, api, version, true)
            .await?
            .ok_or_else(|| Error::Protocol("no response slot".into()))?;
        let body = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(Error::Connection {
                    broker: self.addr.clone(),
                    reason: "connection closed".into(),
                })
            }
            Err(_) => {
                return Err(Error::Timeout(format!(
                    "{api:?} to {} after {timeout:?}",
                    self.addr
                )));
            }
        };
        decode_body::<R>(body, version)
    }

    /// Queues `req` for writing and returns a future of its response.
    /// Requests queued by successive awaited calls go out on the wire in
    /// call order (Kafka handles a connection's requests in order, which the
    /// producer's pipelined batches rely on); the outer await only waits for
    /// room in the write queue.
    pub async fn send_pipelined<R: Request>(
        &self,
        req: &R,
        version: i16,
    ) -> Result<impl std::future::Future<Output = Result<R::Response>> + Send + 'static>
    where
        R::Response: Decodable + Send + 'static,
    {
        let api = api_key_of::<R>()?;
        let rx = self
            .enqueue(req, api, version, true)
            .await?
            .ok_or_else(|| Error::Protocol("no response slot".into()))?;
        let (addr, request_timeout) = (self.addr.clone(), self.request_timeout);
        Ok(async move {
            let body = match tokio::time::timeout(request_timeout, rx).await {
                Ok(Ok(r)) => r?,
                Ok(Err(_)) => {
                    return Err(Error::Connection {
                        broker: addr,
                        reason: "connection closed".into(),
                    })
                }
                Err(_) => {
                    return Err(Error::Timeout(format!(
                        "{api:?} to {addr} after {request_timeout:?}"
                    )))
                }
            };
            decode_body::<R>(body, version)
        })
    }

    /// Sends a request that gets no response (Produce with acks=0).
    pub async fn send_no_response<R: Request>(&self, req: &R, version: i16) -> Result<()> {
        let api = api_key_of::<R>()?;
        self.enqueue(req, api, version, false).await.map(|_| ())
    }

    async fn enqueue<R: Request>(
        &self,
        req: &R,
        api: ApiKey,
        version: i16,
        expect_response: bool,
    ) -> Result<Option<oneshot::Receiver<Result<Bytes>>>> {
        let correlation_id = self.next_correlation.fetch_add(1, Ordering::Relaxed);
        let frame =
            codec::encode_request(req, version, correlation_id, Some(self.client_id.clone()))
                .map_err(|e| Error::Protocol(e.to_string()))?;
        let rx = if expect_response {
            let (tx, rx) = oneshot::channel();
            lock(&self.pending).insert(correlation_id, (api, version, tx));
            Some(rx)
        } else {
            None
        };
        if self.writer.send(frame).await.is_err() {
            lock(&self.pending).remove(&correlation_id);
            return Err(Error::Connection {
                broker: self.addr.clone(),
                reason: "connection closed".into(),
            });
        }
        Ok(rx)
    }
}

fn lock(p: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    p.lock().unwrap_or_else(|e| e.into_inner())
}

fn api_key_of<R: Request>() -> Result<ApiKey> {
    codec::api_key_of::<R>().map_err(|e| Error::Protocol(e.to_string()))
}

/// Decodes a response frame body (header and body) of request type `R`.
fn decode_body<R: Request>(body: Bytes, version: i16) -> Result<R::Response>
where
    R::Response: Decodable,
{
    codec::decode_response::<R>(body, version)
        .map(|(_, resp)| resp)
        .map_err(|e| Error::Protocol(e.to_string()))
}

fn fail_all(pending: &Mutex<Pending>, addr: &str, reason: &str) {
    for (_, (_, _, tx)) in lock(pending).drain() {
        let _ = tx.send(Err(Error::Connection {
            broker: addr.to_string(),
            reason: reason.to_string(),
        }));
    }
}

async fn write_loop(
    mut write: impl AsyncWrite + Unpin,
    mut rx: mpsc::Receiver<Bytes>,
    closed: Arc<AtomicBool>,
    pending: Arc<Mutex<Pending>>,
    addr: String,
) {
    let mut batch: Vec<Bytes> = Vec::with_capacity(16);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        // Coalesce whatever else is queued into one write.
        while batch.len() < 64 {
            match rx.try_recv() {
                Ok(b) => batch.push(b),
                Err(_) => break,
            }
        }
        let total: usize = batch.iter().map(|b| b.len()).sum();
        let result = if batch.len() == 1 {
            write.write_all(&batch[0]).await
        } else {
            let mut joined = BytesMut::with_capacity(total);
            for b in &batch {
                joined.extend_from_slice(b);
            }
            write.write_all(&joined).await
        };
        batch.clear();
        if let Err(e) = result.and(write.flush().await) {
            closed.store(true, Ordering::Relaxed);
            fail_all(&pending, &addr, &e.to_string());
            return;
        }
    }
    let _ = write.shutdown().await;
}

async fn read_loop(
    mut read: impl AsyncRead + Unpin,
    pending: Arc<Mutex<Pending>>,
    closed: Arc<AtomicBool>,
    addr: String,
) {
    let reason = loop {
        let mut size = [0u8; 4];
        if let Err(e) = read.read_exact(&mut size).await {
            break e.to_string();
        }
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_RESPONSE_BYTES {
            break format!("invalid response size {size}");
        }
        let mut body = BytesMut::zeroed(size as usize);
        if let Err(e) = read.read_exact(&mut body).await {
            break e.to_string();
        }
        let body = body.freeze();
        // The response header starts with the correlation id; the header
        // decoder reads it again, so peek rather than consume (size >= 4).
        let Some(correlation_id) = codec::response_correlation_id(&body) else {
            break format!("invalid response size {size}");
        };
        let entry = lock(&pending).remove(&correlation_id);
        match entry {
            Some((_, _, tx)) => {
                let _ = tx.send(Ok(body));
            }
            None => tracing::warn!(%addr, correlation_id, "response for no pending request"),
        }
    };
    closed.store(true, Ordering::Relaxed);
    tracing::debug!(%addr, %reason, "connection closed");
    fail_all(&pending, &addr, &reason);
}
