//! Outbound connections from this broker to another one (replica fetchers
//! now, controller RPCs later), on the shard's compio (io_uring) runtime.
//! Frames are encoded and decoded by `sluice_protocol::codec`, the same
//! codec the Rust client uses, so there is one wire client.
//!
//! [`PeerConnection`] is one TCP connection: connect with a timeout,
//! ApiVersions on open (the highest version both sides speak, from
//! [`OUTBOUND_VERSIONS`]), then [`PeerConnection::send`] with one request in
//! flight at a time and a timeout. A timed-out or failed connection is
//! broken for good. [`Peer`] keeps one connection to one broker and opens a
//! new one when it broke, waiting out an exponential backoff with jitter
//! between failed attempts (the Java client's `reconnect.backoff.ms` /
//! `reconnect.backoff.max.ms` rule).
//!
//! Security follows the inter-broker listener's protocol ([`PeerSecurity`]):
//! with TLS the socket is wrapped in a client-side rustls session (tls.rs
//! `connect`, the same hand-driven rustls as the broker's SSL listeners)
//! before ApiVersions; with SASL the connection then logs in (SaslHandshake
//! v1, SaslAuthenticate until the mechanism is satisfied) with the
//! broker's own `sasl.jaas.config` credentials, driving the PLAIN/SCRAM
//! machines of `sluice_protocol::sasl`. A session lifetime the peer grants
//! (KIP-368, `connections.max.reauth.ms`) retires the connection before it
//! ends, so the next request opens a fresh, freshly authenticated one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use compio::BufResult;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, SaslAuthenticateRequest,
    SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Request, StrBytes};
use sluice_protocol::codec::{self, CodecError};
use sluice_protocol::frame::{self, FrameError, SIZE_PREFIX_LEN};
use sluice_protocol::versions::{PeerVersions, VersionError};
use sluice_protocol::ErrorCode;

/// (api, lowest, highest) this broker sends to other brokers. Fetch starts
/// at 12, the first version with `last_fetched_epoch` and
/// `diverging_epoch` (KIP-595), which truncation by epoch needs.
pub const OUTBOUND_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::Fetch, 12, 16),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::SaslAuthenticate, 0, 2),
    (ApiKey::WriteTxnMarkers, 1, 1),
];

/// How connections to other brokers are secured: the inter-broker
/// listener's protocol made concrete.
#[derive(Debug, Clone, Default)]
pub struct PeerSecurity {
    /// TLS to the peer's listener (SSL, SASL_SSL); `None` for plaintext.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The SASL login (SASL_PLAINTEXT, SASL_SSL); `None` for none.
    pub sasl: Option<crate::config::jaas::BrokerLogin>,
}

/// How outbound connections behave.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Sent as the request header's client id.
    pub client_id: String,
    /// `socket.connection.setup.timeout.ms` (Kafka: 10 s).
    pub connect_timeout: Duration,
    /// Default time to wait for an answer (`replica.socket.timeout.ms`,
    /// Kafka: 30 s); a long-poll Fetch adds its own wait to it.
    pub request_timeout: Duration,
    /// `reconnect.backoff.ms` (Kafka: 50 ms).
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms` (Kafka: 1 s).
    pub reconnect_backoff_max: Duration,
    /// Largest response frame accepted.
    pub max_response_bytes: usize,
    /// TLS and SASL towards the peer's listener.
    pub security: PeerSecurity,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            client_id: "sluiced".into(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            max_response_bytes: 256 << 20,
            security: PeerSecurity::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{what} to {addr} timed out after {after:?}")]
    Timeout {
        what: String,
        addr: String,
        after: Duration,
    },
    #[error("connection to {addr} failed: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {0} is broken")]
    Broken(String),
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error(transparent)]
    Version(#[from] VersionError),
    #[error("bad response frame: {0}")]
    Frame(#[from] FrameError),
    #[error("{what} failed: {code}")]
    Kafka { what: String, code: ErrorCode },
    /// The SASL login was refused or could not be made; not retried faster
    /// than the reconnect backoff.
    #[error("SASL login to {addr} failed: {reason}")]
    Authentication { addr: String, reason: String },
}

/// The byte stream under a connection. The seam for TLS: a `Tls` variant
/// holding a client-side rustls session over the socket, read and written
/// through the same two methods.
pub enum PeerStream {
    Plain(TcpStream),
    Tls {
        socket: TcpStream,
        session: crate::tls::TlsSession,
        /// Decrypted bytes not yet asked for.
        pending: bytes::BytesMut,
    },
}

impl PeerStream {
    async fn write_all(&mut self, frame: Bytes) -> std::io::Result<()> {
        match self {
            PeerStream::Plain(s) => s.write_all(frame).await.0,
            PeerStream::Tls {
                socket, session, ..
            } => session.write_plain(socket, &frame).await,
        }
    }

    /// Fills all of `buf` (callers pass a zeroed buffer of the length they
    /// want).
    async fn read_exact(&mut self, mut buf: Vec<u8>) -> BufResult<(), Vec<u8>> {
        match self {
            PeerStream::Plain(s) => s.read_exact(buf).await,
            PeerStream::Tls {
                socket,
                session,
                pending,
            } => {
                let want = buf.len();
                while pending.len() < want {
                    match session.read_plain(socket, pending).await {
                        Ok(0) => {
                            let eof = std::io::Error::new(
                                std::io::ErrorKind::UnexpectedEof,
                                "the peer closed the TLS connection",
                            );
                            return BufResult(Err(eof), buf);
                        }
                        Ok(_) => {}
                        Err(e) => return BufResult(Err(e), buf),
                    }
                }
                buf.copy_from_slice(&pending.split_to(want));
                BufResult(Ok(()), buf)
            }
        }
    }
}

/// One connection to another broker, one request in flight at a time.
pub struct PeerConnection {
    addr: String,
    stream: PeerStream,
    versions: PeerVersions,
    client_id: StrBytes,
    request_timeout: Duration,
    max_response_bytes: usize,
    next_correlation: i32,
    /// A request failed or timed out half way: the stream is out of step.
    broken: bool,
    /// When the peer's SASL session would end (with a margin): the
    /// connection counts as broken from then on.
    retire_at: Option<Instant>,
}

impl PeerConnection {
    /// Connects to `addr` within the connect timeout and negotiates API
    /// versions.
    pub async fn open(addr: &str, cfg: &PeerConfig) -> Result<PeerConnection, PeerError> {
        let connect_error = |source| PeerError::Connect {
            addr: addr.to_string(),
            source,
        };
        let socket =
            match compio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return Err(connect_error(e)),
                Err(_) => {
                    return Err(PeerError::Timeout {
                        what: "connect".into(),
                        addr: addr.to_string(),
                        after: cfg.connect_timeout,
                    })
                }
            };
        socket.set_nodelay(true).map_err(connect_error)?;
        let stream = match &cfg.security.tls {
            None => PeerStream::Plain(socket),
            Some(tls) => {
                let mut socket = socket;
                let session = crate::tls::connect(tls.clone(), &mut socket, addr)
                    .await
                    .map_err(|e| connect_error(std::io::Error::other(e)))?;
                PeerStream::Tls {
                    socket,
                    session,
                    pending: bytes::BytesMut::new(),
                }
            }
        };
        let mut conn = PeerConnection {
            addr: addr.to_string(),
            stream,
            versions: PeerVersions::default(),
            client_id: StrBytes::from_string(cfg.client_id.clone()),
            request_timeout: cfg.request_timeout,
            max_response_bytes: cfg.max_response_bytes,
            next_correlation: 1,
            broken: false,
            retire_at: None,
        };
        conn.versions = conn.negotiate().await?;
        if let Some(login) = &cfg.security.sasl {
            conn.authenticate(login).await?;
        }
        Ok(conn)
    }

    /// Logs in with SASL (after ApiVersions, as Kafka's clients do).
    async fn authenticate(
        &mut self,
        login: &crate::config::jaas::BrokerLogin,
    ) -> Result<(), PeerError> {
        let refused = |addr: &str, reason: String| PeerError::Authentication {
            addr: addr.to_string(),
            reason,
        };
        let mechanism = login.mechanism.name();
        let mut handshake = SaslHandshakeRequest::default();
        handshake.mechanism = StrBytes::from_static_str(mechanism);
        let (answer, _): (SaslHandshakeResponse, _) = self.send(&handshake, Duration::ZERO).await?;
        if answer.error_code != ErrorCode::None.code() {
            let offered: Vec<String> = answer.mechanisms.iter().map(|m| m.to_string()).collect();
            return Err(refused(
                &self.addr,
                format!(
                    "the listener does not offer {mechanism} ({}); it offers {offered:?}",
                    ErrorCode::from_code(answer.error_code)
                ),
            ));
        }
        let mut exchange = login
            .start()
            .map_err(|e| refused(&self.addr, e.to_string()))?;
        let mut server: Option<Bytes> = None;
        let mut lifetime_ms = 0i64;
        while let Some(message) = exchange
            .step(server.as_deref())
            .map_err(|e| refused(&self.addr, e.to_string()))?
        {
            let mut req = SaslAuthenticateRequest::default();
            req.auth_bytes = Bytes::from(message);
            let (answer, _): (SaslAuthenticateResponse, _) =
                self.send(&req, Duration::ZERO).await?;
            if answer.error_code != ErrorCode::None.code() {
                let detail = answer.error_message.as_deref().unwrap_or_default();
                return Err(refused(
                    &self.addr,
                    format!(
                        "{mechanism} as {} ({}): {detail}",
                        login.username,
                        ErrorCode::from_code(answer.error_code)
                    ),
                ));
            }
            lifetime_ms = answer.session_lifetime_ms;
            server = Some(answer.auth_bytes);
        }
        if let Ok(ms) = u64::try_from(lifetime_ms) {
            if ms > 0 {
                // Kafka's clients re-authenticate at 85-95% of the lifetime;
                // reconnecting then has the same effect here.
                self.retire_at = Some(Instant::now() + Duration::from_millis(ms).mul_f64(0.85));
            }
        }
        Ok(())
    }

    async fn negotiate(&mut self) -> Result<PeerVersions, PeerError> {
        let mut req = ApiVersionsRequest::default();
        req.client_software_name = StrBytes::from_static_str("sluiced");
        req.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let timeout = self.request_timeout;
        let mut resp: ApiVersionsResponse = self.send_versioned(&req, 3, timeout).await?;
        if resp.error_code == ErrorCode::UnsupportedVersion.code() {
            // An older peer answers v0 to any version it does not know.
            resp = self
                .send_versioned(&ApiVersionsRequest::default(), 0, timeout)
                .await?;
        }
        match ErrorCode::from_code(resp.error_code) {
            ErrorCode::None => Ok(PeerVersions::from_response(&resp)),
            code => Err(PeerError::Kafka {
                what: "ApiVersions".into(),
                code,
            }),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Out of step after a failure, or past its SASL session.
    pub fn is_broken(&self) -> bool {
        self.broken || self.retire_at.is_some_and(|at| Instant::now() >= at)
    }

    /// The peer's ApiVersions ranges.
    pub fn versions(&self) -> &PeerVersions {
        &self.versions
    }

    /// The version to send `api` at: the highest both sides speak.
    pub fn pick(&self, api: ApiKey) -> Result<i16, PeerError> {
        Ok(self.versions.pick(OUTBOUND_VERSIONS, api)?)
    }

    /// Sends `req` at the negotiated version with the default timeout plus
    /// `extra` (a long-poll's wait); returns the response and the version.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        extra: Duration,
    ) -> Result<(R::Response, i16), PeerError> {
        let version = self.pick(codec::api_key_of::<R>()?)?;
        let timeout = self.request_timeout + extra;
        Ok((self.send_versioned(req, version, timeout).await?, version))
    }

    /// Sends `req` at `version` and waits up to `timeout` for its answer.
    pub async fn send_versioned<R: Request>(
        &mut self,
        req: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, PeerError> {
        if self.broken {
            return Err(PeerError::Broken(self.addr.clone()));
        }
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let frame =
            codec::encode_request(req, version, correlation_id, Some(self.client_id.clone()))?;
        // Until the answer is read whole, a failure leaves the stream out
        // of step: the connection is given up.
        self.broken = true;
        let body = match compio::time::timeout(timeout, self.round_trip(frame)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(PeerError::Timeout {
                    what: format!("{:?}", codec::api_key_of::<R>()?),
                    addr: self.addr.clone(),
                    after: timeout,
                })
            }
        };
        self.broken = false;
        Ok(codec::decode_response_to::<R>(
            body,
            version,
            correlation_id,
        )?)
    }

    async fn round_trip(&mut self, frame: Bytes) -> Result<Bytes, PeerError> {
        let io = |addr: &str, source| PeerError::Io {
            addr: addr.to_string(),
            source,
        };
        self.stream
            .write_all(frame)
            .await
            .map_err(|e| io(&self.addr, e))?;
        let BufResult(res, prefix) = self.stream.read_exact(vec![0u8; SIZE_PREFIX_LEN]).await;
        res.map_err(|e| io(&self.addr, e))?;
        let Some(prefix) = prefix.first_chunk::<SIZE_PREFIX_LEN>() else {
            return Err(PeerError::Broken(self.addr.clone()));
        };
        let len =
            frame::check_frame_size(frame::read_size_prefix(prefix), self.max_response_bytes)?;
        let BufResult(res, body) = self.stream.read_exact(vec![0u8; len]).await;
        res.map_err(|e| io(&self.addr, e))?;
        Ok(Bytes::from(body))
    }
}

/// One broker to talk to: a connection opened on demand and replaced when
/// it breaks, with backoff between failed attempts.
pub struct Peer {
    pub node_id: i32,
    addr: String,
    cfg: PeerConfig,
    conn: Option<PeerConnection>,
    /// Failed connection attempts in a row.
    failures: u32,
}

impl Peer {
    pub fn new(node_id: i32, addr: &str, cfg: PeerConfig) -> Peer {
        Peer {
            node_id,
            addr: addr.to_string(),
            cfg,
            conn: None,
            failures: 0,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The open connection, or a new one (after the backoff the failures so
    /// far call for).
    pub async fn connection(&mut self) -> Result<&mut PeerConnection, PeerError> {
        if self.conn.as_ref().is_some_and(PeerConnection::is_broken) {
            self.conn = None;
        }
        if self.conn.is_none() {
            if self.failures > 0 {
                compio::time::sleep(self.backoff()).await;
            }
            match PeerConnection::open(&self.addr, &self.cfg).await {
                Ok(c) => {
                    self.failures = 0;
                    self.conn = Some(c);
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    return Err(e);
                }
            }
        }
        self.conn
            .as_mut()
            .ok_or_else(|| PeerError::Broken(self.addr.clone()))
    }

    /// Sends `req` over the connection (opening one if needed); a failure
    /// drops the connection, so the next call reconnects.
    pub async fn send<R: Request>(
        &mut self,
        req: &R,
        extra: Duration,
    ) -> Result<(R::Response, i16), PeerError> {
        let result = self.connection().await?.send(req, extra).await;
        if result.is_err() && self.conn.as_ref().is_some_and(PeerConnection::is_broken) {
            self.conn = None;
            self.failures = self.failures.saturating_add(1);
        }
        result
    }

    /// Drops the connection (the next send opens a new one).
    pub fn disconnect(&mut self) {
        self.conn = None;
    }

    fn backoff(&self) -> Duration {
        let factor = 0.8 + 0.4 * rand::random::<f64>();
        backoff_delay(
            self.cfg.reconnect_backoff,
            self.cfg.reconnect_backoff_max,
            self.failures.saturating_sub(1),
            factor,
        )
    }
}

/// The wait before reconnect attempt `attempt` (0 for the first retry):
/// `initial` doubled per attempt, scaled by `factor` (the jitter), capped at
/// `max`; a `max` not above `initial` means a constant backoff.
pub fn backoff_delay(initial: Duration, max: Duration, attempt: u32, factor: f64) -> Duration {
    if max <= initial {
        return initial;
    }
    let grown = initial.saturating_mul(2u32.saturating_pow(attempt.min(31)));
    grown.mul_f64(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_the_cap() {
        let (i, m) = (Duration::from_millis(50), Duration::from_secs(1));
        assert_eq!(backoff_delay(i, m, 0, 1.0), Duration::from_millis(50));
        assert_eq!(backoff_delay(i, m, 2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff_delay(i, m, 2, 0.8), Duration::from_millis(160));
        assert_eq!(backoff_delay(i, m, 10, 1.2), m);
        assert_eq!(backoff_delay(i, m, u32::MAX, 1.0), m);
        assert_eq!(
            backoff_delay(m, i, 3, 1.2),
            m,
            "constant without a larger max"
        );
    }

    #[test]
    fn outbound_fetch_has_diverging_epochs() {
        let peer = PeerVersions::new([(ApiKey::Fetch as i16, 4, 16)]);
        assert_eq!(peer.pick(OUTBOUND_VERSIONS, ApiKey::Fetch), Ok(16));
        let old = PeerVersions::new([(ApiKey::Fetch as i16, 4, 11)]);
        assert!(old.pick(OUTBOUND_VERSIONS, ApiKey::Fetch).is_err());
    }

    #[test]
    fn connecting_to_nothing_fails_cleanly() {
        compio::runtime::Runtime::new()
            .expect("runtime")
            .block_on(async {
                // A port nobody listens on (bound, then released).
                let addr = {
                    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                    l.local_addr().expect("addr").to_string()
                };
                let cfg = PeerConfig {
                    reconnect_backoff: Duration::from_millis(1),
                    reconnect_backoff_max: Duration::from_millis(2),
                    ..PeerConfig::default()
                };
                let mut peer = Peer::new(2, &addr, cfg);
                for _ in 0..3 {
                    let err = peer
                        .send(&ApiVersionsRequest::default(), Duration::ZERO)
                        .await
                        .expect_err("nobody there");
                    assert!(matches!(err, PeerError::Connect { .. }), "{err}");
                }
                assert_eq!(peer.failures, 3);
            });
    }
}
