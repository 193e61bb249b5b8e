//! Connections: listeners (one SO_REUSEPORT socket per shard, so the kernel
//! spreads connections over cores), request framing, and the per-connection
//! loop. Requests are read and decoded in order, handled concurrently, and
//! answered strictly in request order (Kafka's pipelining contract) by a
//! writer task. Framing is `sluice_protocol::frame`'s: a frame whose size
//! prefix is over `socket.request.max.bytes` is refused before anything is
//! allocated; a malformed frame or unknown API closes that one connection
//! with a logged reason. A connection a quota throttled is muted (KIP-219):
//! neither its buffered frames nor its socket are read until the throttle
//! time passes, while responses already under way still go out.

pub mod sasl;
pub mod zero_copy;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use compio::buf::{IntoInner, IoBuf};
use compio::io::AsyncRead;
use compio::io::AsyncWriteExt;
use compio::net::{TcpListener, TcpStream};
use compio::BufResult;
use futures::channel::{mpsc, oneshot};
use futures::{FutureExt, SinkExt, StreamExt};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;
use sluice_protocol::frame::{self, FrameError};

use crate::api::{self, RequestContext, Response, ResponsePart};
use crate::auth::{Listener, Session};
use crate::config::names;
use crate::metrics::METRICS;
use crate::shard::Shard;

/// Requests a connection may have in flight before reading pauses.
const MAX_IN_FLIGHT: usize = 64;

/// Binds one listener per shard on `addr` with SO_REUSEPORT.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count {
        let domain = if addr.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&addr.into())?;
        s.listen(1024)?;
        let l: std::net::TcpListener = s.into();
        // Port 0 picks a port once; the other shards join that one.
        addr = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

pub async fn accept_loop(shard: Rc<Shard>, info: Arc<Listener>, listener: std::net::TcpListener) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "cannot register listener with io_uring");
            return;
        }
    };
    let live = Rc::new(std::cell::Cell::new(0usize));
    loop {
        let accepted = futures::select! {
            r = listener.accept().fuse() => r,
            _ = shard.shutdown.clone().fuse() => break,
        };
        match accepted {
            Ok((stream, peer)) => {
                let s = shard.clone();
                compio::runtime::spawn(serve_connection(s, info.clone(), stream, peer)).detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                compio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let _ = live;
    // Closing an fd does not cancel io_uring ops on it; the select above
    // dropped (and so cancelled) the pending accept before we close.
    let _ = listener.close().await;
}

/// Why a connection was closed by us.
#[derive(Debug, thiserror::Error)]
enum CloseReason {
    #[error("{error} ({setting}{when})")]
    Frame {
        error: FrameError,
        setting: &'static str,
        when: &'static str,
    },
    #[error("frame of {0} bytes is too short for a request header")]
    ShortFrame(usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("unsupported version {version} of {api:?}")]
    UnsupportedVersion { api: ApiKey, version: i16 },
    #[error("{0}")]
    Auth(String),
    #[error("malformed {api:?} v{version} request: {detail}")]
    Malformed {
        api: ApiKey,
        version: i16,
        detail: String,
    },
}

struct ConnectionGauge;
impl ConnectionGauge {
    fn open() -> ConnectionGauge {
        METRICS.connections_open.fetch_add(1, Relaxed);
        METRICS.connections_total.fetch_add(1, Relaxed);
        ConnectionGauge
    }
}
impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        METRICS.connections_open.fetch_sub(1, Relaxed);
    }
}

type Pending = oneshot::Receiver<Response>;

pub async fn serve_connection(
    shard: Rc<Shard>,
    listener: Arc<Listener>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let _gauge = ConnectionGauge::open();
    let _ = stream.set_nodelay(true);
    let tls = match &listener.tls {
        Some(config) => match crate::tls::handshake(config.clone(), &mut stream, peer).await {
            Ok(t) => Some(t),
            Err(reason) => {
                METRICS.connections_closed_bad_input.fetch_add(1, Relaxed);
                tracing::warn!(%peer, listener = %listener.name, %reason, "closing connection");
                return;
            }
        },
        None => None,
    };
    let session = Rc::new(Session::new(
        listener,
        tls.as_ref().and_then(|t| t.peer_subject()),
    ));
    let (mut reader, writer) = stream.into_split();
    let (mut pending_tx, pending_rx) = mpsc::channel::<Pending>(MAX_IN_FLIGHT);
    let writer_task =
        compio::runtime::spawn(write_responses(writer, pending_rx, peer, tls.clone()));
    let max_authenticated = shard.broker.config.socket_request_max_bytes;
    // Before SASL authentication only small frames are accepted, so an
    // unauthenticated peer cannot make the broker buffer 100 MB.
    let max_unauthenticated = shard
        .broker
        .config
        .sasl_server_max_receive_size
        .min(max_authenticated);
    let idle = Duration::from_millis(shard.broker.config.connections_max_idle_ms.max(1));
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut shutdown = shard.shutdown.clone().fuse();
    let mute = Rc::new(crate::quota::ChannelMute::default());
    'conn: loop {
        // Hand every complete frame in the buffer to its handler.
        loop {
            if let Some(wait) = mute.remaining() {
                futures::select! {
                    _ = compio::time::sleep(wait).fuse() => {}
                    _ = shutdown => break 'conn,
                }
            }
            let (max, setting, when) = if session.is_authenticated() {
                (max_authenticated, names::SOCKET_REQUEST_MAX_BYTES, "")
            } else {
                (
                    max_unauthenticated,
                    names::SASL_SERVER_MAX_RECEIVE_SIZE,
                    ", before authentication",
                )
            };
            let len = match frame::peek_frame_len(&buf, max) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(error) => {
                    close_bad(
                        peer,
                        CloseReason::Frame {
                            error,
                            setting,
                            when,
                        },
                    );
                    break 'conn;
                }
            };
            let total = frame::SIZE_PREFIX_LEN + len;
            if buf.len() < total {
                buf.reserve(total - buf.len());
                break;
            }
            let mut body = buf.split_to(total).freeze();
            body.advance(frame::SIZE_PREFIX_LEN);
            match start_request(&shard, &session, &mute, body, peer) {
                Ok(Started::Pending(rx)) => {
                    if pending_tx.send(rx).await.is_err() {
                        break 'conn;
                    }
                }
                Ok(Started::PendingThenClose(rx)) => {
                    let _ = pending_tx.send(rx).await;
                    break 'conn;
                }
                Err(reason) => {
                    close_bad(peer, reason);
                    break 'conn;
                }
            }
        }
        if shard.is_shutting_down() {
            break;
        }
        if buf.capacity() - buf.len() < 16 * 1024 {
            buf.reserve(64 * 1024);
        }
        // compio reads into the buffer from its start: hand it only the
        // free tail, so bytes of a partial frame already buffered survive.
        if let Some(t) = &tls {
            let read = futures::select! {
                r = compio::time::timeout(idle, t.read_plain(&mut reader, &mut buf)).fuse() => r,
                _ = shutdown => break,
            };
            match read {
                Err(_elapsed) => {
                    tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)");
                    break;
                }
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS read failed");
                    break;
                }
            }
        }
        let filled = buf.len();
        let read = futures::select! {
            r = compio::time::timeout(idle, reader.read(buf.slice(filled..))).fuse() => r,
            _ = shutdown => break,
        };
        match read {
            Err(_elapsed) => {
                tracing::debug!(%peer, "closing idle connection (connections.max.idle.ms)");
                break;
            }
            Ok(BufResult(Ok(0), _)) => break,
            Ok(BufResult(Ok(_), b)) => buf = b.into_inner(),
            Ok(BufResult(Err(e), _)) => {
                tracing::debug!(%peer, error = %e, "read failed");
                break;
            }
        }
    }
    // Let the writer answer everything already accepted, then close.
    drop(pending_tx);
    let _ = writer_task.await;
}

fn close_bad(peer: SocketAddr, reason: CloseReason) {
    METRICS.connections_closed_bad_input.fetch_add(1, Relaxed);
    tracing::warn!(%peer, %reason, "closing connection");
}

/// What the connection does after a request was started.
enum Started {
    /// Queue the response and read on.
    Pending(Pending),
    /// Queue the response, then close (failed authentication).
    PendingThenClose(Pending),
}

fn ready(resp: Response) -> Pending {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(resp);
    rx
}

/// Decodes the header and request synchronously (so requests reach their
/// partitions in arrival order) and spawns the handler. SASL requests are
/// answered here, in order, since they change the connection's state.
fn start_request(
    shard: &Rc<Shard>,
    session: &Rc<Session>,
    mute: &Rc<crate::quota::ChannelMute>,
    mut frame: Bytes,
    peer: SocketAddr,
) -> Result<Started, CloseReason> {
    if session.sasl.borrow().expects_raw_token() {
        // After a v0 SaslHandshake the client sends bare SASL tokens.
        return match sasl::on_raw_token(shard, session, frame) {
            Ok(resp) => Ok(Started::Pending(ready(resp))),
            Err((resp, reason)) => match resp {
                Some(resp) => {
                    tracing::warn!(%peer, %reason, "closing connection");
                    Ok(Started::PendingThenClose(ready(resp)))
                }
                None => Err(CloseReason::Auth(reason)),
            },
        };
    }
    if frame.len() < 8 {
        return Err(CloseReason::ShortFrame(frame.len()));
    }
    let key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api = ApiKey::try_from(key_raw).map_err(|_| CloseReason::UnknownApi(key_raw))?;
    let Some((min, max)) = api::supported_range(api) else {
        return Err(CloseReason::UnknownApi(key_raw));
    };
    if version < min || version > max {
        if api == ApiKey::ApiVersions {
            // Kafka answers an unknown ApiVersions version with a v0 body
            // carrying UNSUPPORTED_VERSION and its ranges, so the client can
            // retry with a version both sides know.
            return Ok(Started::Pending(ready(
                api::api_versions::unsupported_version_response(correlation_id),
            )));
        }
        return Err(CloseReason::UnsupportedVersion { api, version });
    }
    let header_version = api.request_header_version(version);
    let header =
        RequestHeader::decode(&mut frame, header_version).map_err(|e| CloseReason::Malformed {
            api,
            version,
            detail: e.to_string(),
        })?;
    match sasl::gate(shard, session, api, version, correlation_id, &mut frame) {
        sasl::Gate::Pass => {}
        sasl::Gate::Respond(resp) => return Ok(Started::Pending(ready(resp))),
        sasl::Gate::RespondThenClose(resp, reason) => {
            METRICS.connections_closed_bad_input.fetch_add(1, Relaxed);
            tracing::warn!(%peer, principal = %session.principal(), %reason, "closing connection");
            return Ok(Started::PendingThenClose(ready(resp)));
        }
        sasl::Gate::Close(reason) => return Err(CloseReason::Auth(reason)),
    }
    let ctx = RequestContext {
        shard: shard.clone(),
        api,
        version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()).unwrap_or_default(),
        peer,
        session: session.clone(),
        mute: mute.clone(),
    };
    let request_quota = RequestQuota::new(&ctx);
    let started = std::time::Instant::now();
    let (fut, fetch_from) = api::prepare(ctx, frame).map_err(|detail| {
        METRICS.observe_request(key_raw, None, started.elapsed(), true);
        CloseReason::Malformed {
            api,
            version,
            detail,
        }
    })?;
    let (tx, rx) = oneshot::channel();
    compio::runtime::spawn(async move {
        let (resp, busy) = match &request_quota {
            Some(_) => PollTimed::new(fut).await,
            None => (fut.await, Duration::ZERO),
        };
        METRICS.observe_request(key_raw, fetch_from, started.elapsed(), false);
        if let Some(q) = request_quota {
            q.record(busy);
        }
        let _ = tx.send(resp);
    })
    .detach();
    Ok(Started::Pending(rx))
}

/// request_percentage accounting for one request: what it needs to charge
/// the request's time once it is answered. `None` when no request quota
/// can apply (ApiVersions is exempt, as in Kafka).
struct RequestQuota {
    ctx: RequestContext,
}

impl RequestQuota {
    fn new(ctx: &RequestContext) -> Option<RequestQuota> {
        if ctx.api == ApiKey::ApiVersions
            || ctx.shard.broker.metadata.image().client_quotas.is_empty()
        {
            return None;
        }
        Some(RequestQuota {
            ctx: RequestContext {
                shard: ctx.shard.clone(),
                api: ctx.api,
                version: ctx.version,
                correlation_id: ctx.correlation_id,
                client_id: ctx.client_id.clone(),
                peer: ctx.peer,
                session: ctx.session.clone(),
                mute: ctx.mute.clone(),
            },
        })
    }

    /// Charges `busy` (time the handler ran on this shard's thread) as a
    /// percentage of one thread-second, Kafka's request-time unit; a
    /// throttle mutes the connection.
    fn record(self, busy: Duration) {
        self.ctx.record_quota(
            crate::quota::QuotaKey::RequestPercentage,
            busy.as_secs_f64() * 100.0,
        );
    }
}

/// Runs a future, adding up the time spent inside its `poll` calls: the
/// shard thread's time this request took, excluding its waits (disk,
/// replication, other shards' work for it, parked fetches).
struct PollTimed<F> {
    inner: std::pin::Pin<Box<F>>,
    busy: Duration,
}

impl<F: std::future::Future> PollTimed<F> {
    fn new(inner: F) -> PollTimed<F> {
        PollTimed {
            inner: Box::pin(inner),
            busy: Duration::ZERO,
        }
    }
}

impl<F: std::future::Future> std::future::Future for PollTimed<F> {
    type Output = (F::Output, Duration);

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let start = std::time::Instant::now();
        let polled = self.inner.as_mut().poll(cx);
        self.busy += start.elapsed();
        polled.map(|out| (out, self.busy))
    }
}

async fn write_responses(
    mut sock: TcpStream,
    mut pending: mpsc::Receiver<Pending>,
    peer: SocketAddr,
    tls: Option<crate::tls::TlsSession>,
) {
    let mut pipe: Option<zero_copy::SplicePipe> = None;
    while let Some(rx) = pending.next().await {
        let Ok(resp) = rx.await else { continue };
        let parts = match resp {
            Response::None => continue,
            Response::Close => break,
            Response::Frame(b) => vec![ResponsePart::Bytes(b)],
            Response::Parts(p) => p,
        };
        for part in parts {
            let ok = match (part, &tls) {
                (ResponsePart::Bytes(b), Some(t)) => t.write_plain(&mut sock, &b).await.is_ok(),
                (ResponsePart::File(range), Some(t)) => {
                    match t.write_file_range(&mut sock, &range).await {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "fetch transfer failed");
                            false
                        }
                    }
                }
                (ResponsePart::Bytes(b), None) => sock.write_all(b).await.0.is_ok(),
                (ResponsePart::File(range), None) => {
                    if pipe.is_none() {
                        match zero_copy::SplicePipe::new().await {
                            Ok(p) => pipe = Some(p),
                            Err(e) => {
                                tracing::error!(%peer, error = %e, "cannot create splice pipe");
                                return;
                            }
                        }
                    }
                    match pipe.as_mut() {
                        Some(p) => match p.send_range(&range, &sock).await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "fetch transfer failed");
                                false
                            }
                        },
                        None => false,
                    }
                }
            };
            if !ok {
                // The peer is gone or the frame cannot be completed.
                return;
            }
        }
    }
    if let Some(t) = &tls {
        t.close(&mut sock).await;
    }
    let _ = compio::io::AsyncWrite::shutdown(&mut sock).await;
}
