//! The controllers' wire: request/response messages over TCP, each framed as
//! a 4-byte big-endian length followed by that many payload bytes. One
//! connection carries one request at a time; a client reconnects lazily and
//! drops its connection on any error or timeout (a late answer would
//! otherwise be read as the next request's). The transport knows nothing of
//! Raft: payloads are opaque bytes, so it can later be replaced by the
//! Kafka-framed inter-broker client without touching the quorum.
//!
//! ## Security
//!
//! A connection is secured as [`TransportSecurity`] says (the controller
//! listener's protocol in `listener.security.protocol.map`), before any
//! request frame:
//!
//! 1. **TLS** (SSL, SASL_SSL): a TLS handshake right after TCP connect; the
//!    client verifies the server's certificate against
//!    `ssl.truststore.location` for the host it dialled, and presents the
//!    broker's keystore (required when `ssl.client.auth=required`).
//! 2. **SASL** (SASL_PLAINTEXT, SASL_SSL): an exchange of ordinary frames
//!    whose payloads are JSON [`SaslRequest`]s and [`SaslReply`]s:
//!    - client: `{"Authenticate":{"mechanism":"SCRAM-SHA-256","token":[..]}}`
//!      with the mechanism's first message;
//!    - server: `{"Challenge":{"token":[..]}}` (SCRAM's server-first), to
//!      which the client answers `{"Continue":{"token":[..]}}`;
//!    - server: `{"Authenticated":{"principal":"User:..","token":[..]}}` with
//!      the mechanism's last message (SCRAM's server signature, which the
//!      client verifies; empty for PLAIN): request frames may follow;
//!    - or, at any step, `{"Refused":{"reason":".."}}` and the server closes.
//!
//!    The server verifies with the broker's own authenticators (PLAIN users,
//!    SCRAM credentials) and mechanisms (`sasl.enabled.mechanisms`).
//! 3. **Authorization**: with an authorizer configured, the principal (SASL
//!    user, else the client certificate's subject, else `User:ANONYMOUS`)
//!    needs ClusterAction on the cluster. A refused peer on a listener
//!    without SASL gets the `Refused` frame in answer to its first request.
//!
//! The server answers a frame that arrives before the exchange finished (a
//! request from a peer configured without SASL) with `Refused`, and the
//! client reports a `Refused` answer as [`TransportError::Refused`]. Each
//! side logs a refusal once (again only if the reason changes, or after a
//! minute), not on every retry. A connection is established in a task of
//! its own, so a handshake longer than one call's timeout (Raft heartbeats
//! allow tens of ms) still completes for the next call.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub use super::security::TransportSecurity;
use super::security::{ServerExchange, ServerStep};

/// A frame longer than this is refused (snapshots are sent in one frame).
pub const MAX_FRAME: usize = 256 << 20;
/// The largest frame a peer may send before it is authenticated.
const MAX_HANDSHAKE_FRAME: usize = 64 << 10;
/// Longest a connection may take to become usable (TCP, TLS, SASL).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// TLS or SASL failed: wrong credentials, an untrusted certificate, a
    /// principal without ClusterAction, or mismatched security protocols.
    #[error("controller at {addr} refused the connection: {reason}")]
    Refused { addr: String, reason: String },
}

/// A client's SASL frame.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum SaslRequest {
    Authenticate { mechanism: String, token: Vec<u8> },
    Continue { token: Vec<u8> },
}

/// A server's SASL frame (`Refused` also answers a request frame from an
/// unauthenticated or unauthorized peer).
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum SaslReply {
    Challenge { token: Vec<u8> },
    Authenticated { principal: String, token: Vec<u8> },
    Refused { reason: String },
}

/// The reason of a `Refused` frame, if `frame` is one.
fn refusal(frame: &[u8]) -> Option<String> {
    if !frame.starts_with(b"{\"Refused\"") {
        return None;
    }
    match serde_json::from_slice::<SaslReply>(frame) {
        Ok(SaslReply::Refused { reason }) => Some(reason),
        _ => None,
    }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain enums of strings and bytes always serialise.
    serde_json::to_vec(value).unwrap_or_default()
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
    read_frame_within(r, MAX_FRAME).await
}

async fn read_frame_within<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame of {len} bytes exceeds the {max} limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

/// A byte stream a connection runs on: TCP, or TLS over TCP.
trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin> Stream for T {}
type BoxStream = Box<dyn Stream>;

/// The name a TLS client verifies the server's certificate for: the host
/// of `host:port` (an IP address or a DNS name).
fn server_name(addr: &str) -> Result<ServerName<'static>, String> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} cannot be verified as a TLS server name: {e}"))
}

/// Opens a connection to `addr` and completes TLS and SASL on it.
async fn connect(
    addr: String,
    security: Arc<TransportSecurity>,
) -> Result<BoxStream, TransportError> {
    let refused = |reason: String| TransportError::Refused {
        addr: addr.clone(),
        reason,
    };
    let tcp = TcpStream::connect(&addr)
        .await
        .map_err(|source| TransportError::Unreachable {
            addr: addr.clone(),
            source,
        })?;
    let _ = tcp.set_nodelay(true);
    let mut stream: BoxStream = match &security.tls {
        None => Box::new(tcp),
        Some(tls) => {
            let name = server_name(&addr).map_err(refused)?;
            let connector = tokio_rustls::TlsConnector::from(tls.client.clone());
            let tls = connector
                .connect(name, tcp)
                .await
                .map_err(|e| refused(format!("TLS handshake failed: {e}")))?;
            Box::new(tls)
        }
    };
    if let Some(login) = &security.login {
        let io_err = |source| TransportError::Io {
            addr: addr.clone(),
            source,
        };
        let mut client = login.start().map_err(|e| refused(e.to_string()))?;
        let first = client.step(None).map_err(|e| refused(e.to_string()))?;
        let mut request = SaslRequest::Authenticate {
            mechanism: login.mechanism.name().to_string(),
            token: first.unwrap_or_default(),
        };
        loop {
            write_frame(&mut stream, &to_json(&request))
                .await
                .map_err(io_err)?;
            let reply = read_frame_within(&mut stream, MAX_HANDSHAKE_FRAME)
                .await
                .map_err(io_err)?
                .ok_or_else(|| {
                    refused("the controller closed the connection during SASL".into())
                })?;
            let reply: SaslReply = serde_json::from_slice(&reply).map_err(|_| {
                refused(
                    "the controller did not answer the SASL handshake (is its controller \
                     listener SASL_PLAINTEXT or SASL_SSL?)"
                        .into(),
                )
            })?;
            match reply {
                SaslReply::Refused { reason } => return Err(refused(reason)),
                SaslReply::Challenge { token } => {
                    let next = client
                        .step(Some(&token))
                        .map_err(|e| refused(e.to_string()))?
                        .ok_or_else(|| {
                            refused("the controller's SASL challenge came after the end".into())
                        })?;
                    request = SaslRequest::Continue { token: next };
                }
                SaslReply::Authenticated { token, .. } => {
                    // SCRAM: verify the server's signature.
                    match client.step(Some(&token)) {
                        Ok(None) => break,
                        Ok(Some(_)) => {
                            return Err(refused(
                                "the controller ended the SASL exchange early".into(),
                            ))
                        }
                        Err(e) => return Err(refused(e.to_string())),
                    }
                }
            }
        }
    }
    Ok(stream)
}

/// A client for one peer address.
pub struct PeerClient {
    addr: String,
    security: Arc<TransportSecurity>,
    conn: Option<BoxStream>,
    /// A connection being established; it outlives a call that timed out
    /// waiting for it, so the next call picks it up.
    connecting: Option<JoinHandle<Result<BoxStream, TransportError>>>,
}

impl Drop for PeerClient {
    fn drop(&mut self) {
        if let Some(task) = self.connecting.take() {
            task.abort();
        }
    }
}

impl PeerClient {
    pub fn new(addr: impl Into<String>, security: Arc<TransportSecurity>) -> Self {
        PeerClient {
            addr: addr.into(),
            security,
            conn: None,
            connecting: None,
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// How this client secures its connections.
    pub fn security(&self) -> Arc<TransportSecurity> {
        self.security.clone()
    }

    /// Sends `request` and waits for its answer, all within `timeout`.
    pub async fn call(
        &mut self,
        request: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let result = match tokio::time::timeout(timeout, self.call_inner(request)).await {
            Ok(result) => result,
            Err(_) => Err(TransportError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
        };
        match &result {
            Ok(_) => self.security.accepted(&self.addr),
            Err(e) => {
                self.conn = None;
                if let TransportError::Refused { reason, .. } = e {
                    self.security.log_refusal(&self.addr, reason, false);
                }
            }
        }
        result
    }

    async fn call_inner(&mut self, request: &[u8]) -> Result<Vec<u8>, TransportError> {
        let conn = match self.conn.take() {
            Some(conn) => self.conn.insert(conn),
            None => {
                let (addr, security) = (self.addr.clone(), self.security.clone());
                let task = self.connecting.get_or_insert_with(|| {
                    tokio::spawn(async move {
                        match tokio::time::timeout(
                            HANDSHAKE_TIMEOUT,
                            connect(addr.clone(), security),
                        )
                        .await
                        {
                            Ok(result) => result,
                            Err(_) => Err(TransportError::Timeout {
                                addr,
                                timeout: HANDSHAKE_TIMEOUT,
                            }),
                        }
                    })
                });
                let joined = task.await;
                self.connecting = None;
                let stream = joined.map_err(|e| TransportError::Io {
                    addr: self.addr.clone(),
                    source: io::Error::other(e.to_string()),
                })??;
                self.conn.insert(stream)
            }
        };
        let io_err = |source| TransportError::Io {
            addr: self.addr.clone(),
            source,
        };
        write_frame(conn, request).await.map_err(io_err)?;
        match read_frame(conn).await {
            Ok(Some(answer)) => match refusal(&answer) {
                Some(reason) => Err(TransportError::Refused {
                    addr: self.addr.clone(),
                    reason,
                }),
                None => Ok(answer),
            },
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
    /// Serves `listener` on the current tokio runtime, securing each
    /// connection as `security` says before its first request.
    pub fn start<H, F>(
        listener: TcpListener,
        security: Arc<TransportSecurity>,
        handler: H,
    ) -> io::Result<Server>
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
                        Ok((stream, peer)) => {
                            let _ = stream.set_nodelay(true);
                            connections.spawn(serve_connection(stream, peer, security.clone(), handler.clone()));
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

/// How the server-side handshake ended.
enum Accepted {
    /// Request frames may follow.
    Ready(BoxStream),
    /// Refused for `reason`; answer the first request frame with it.
    RefuseFirstRequest(BoxStream, String),
    /// Refused, the peer already told (or unreachable): close.
    Closed(String),
}

/// TLS, SASL and the authorization check of one accepted connection.
async fn accept(tcp: TcpStream, security: &TransportSecurity) -> Accepted {
    let (mut stream, subject): (BoxStream, Option<String>) = match &security.tls {
        None => (Box::new(tcp), None),
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
            match acceptor.accept(tcp).await {
                Ok(tls) => {
                    let subject = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|certs| certs.first())
                        .and_then(|cert| crate::tls::subject_rfc2253(cert.as_ref()));
                    (Box::new(tls), subject)
                }
                Err(e) => {
                    return Accepted::Closed(format!(
                        "TLS handshake failed: {e} (a plaintext peer on a TLS controller listener?)"
                    ))
                }
            }
        }
    };
    let Some(verifier) = &security.verifier else {
        return Accepted::Ready(stream);
    };
    if !verifier.uses_sasl() {
        let principal = subject.map_or_else(
            || crate::auth::session::ANONYMOUS.to_string(),
            |dn| format!("User:{dn}"),
        );
        return match verifier.authorize(&principal) {
            Ok(()) => Accepted::Ready(stream),
            Err(reason) => Accepted::RefuseFirstRequest(stream, reason),
        };
    }
    // SASL: the first frame must start the exchange.
    let mut exchange: Option<ServerExchange> = None;
    loop {
        let frame = match read_frame_within(&mut stream, MAX_HANDSHAKE_FRAME).await {
            Ok(Some(frame)) => frame,
            Ok(None) => return Accepted::Closed("closed during SASL".into()),
            Err(e) => return Accepted::Closed(format!("SASL frame unreadable: {e}")),
        };
        let request = serde_json::from_slice::<SaslRequest>(&frame).ok();
        let step = match (request, exchange.take()) {
            (Some(SaslRequest::Authenticate { mechanism, token }), None) => {
                verifier.start(&mechanism, &token)
            }
            (Some(SaslRequest::Continue { token }), Some(ongoing)) => {
                verifier.step(ongoing, &token)
            }
            (Some(_), _) => Err("SASL message out of order".to_string()),
            (None, _) => Err(format!(
                "this controller listener is {} and the peer sent a request before \
                 authenticating (is sasl.mechanism.controller.protocol and its JAAS \
                 configuration set on the peer?)",
                security.protocol().name()
            )),
        };
        let reply = match step {
            Ok(ServerStep::Challenge(token, next)) => {
                exchange = Some(next);
                SaslReply::Challenge { token }
            }
            Ok(ServerStep::Done { principal, token }) => match verifier.authorize(&principal) {
                Ok(()) => SaslReply::Authenticated { principal, token },
                Err(reason) => SaslReply::Refused { reason },
            },
            Err(reason) => SaslReply::Refused { reason },
        };
        let _ = write_frame(&mut stream, &to_json(&reply)).await;
        match reply {
            SaslReply::Challenge { .. } => {}
            SaslReply::Authenticated { .. } => return Accepted::Ready(stream),
            SaslReply::Refused { reason } => return Accepted::Closed(reason),
        }
    }
}

async fn serve_connection<H, F>(
    tcp: TcpStream,
    peer: SocketAddr,
    security: Arc<TransportSecurity>,
    handler: H,
) where
    H: Fn(Vec<u8>) -> F,
    F: Future<Output = Vec<u8>>,
{
    let refused_peer = format!("{} (incoming)", peer.ip());
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(tcp, &security))
        .await
        .unwrap_or_else(|_| Accepted::Closed("handshake timed out".into()));
    let mut stream = match accepted {
        Accepted::Ready(stream) => stream,
        Accepted::Closed(reason) => {
            security.log_refusal(&refused_peer, &reason, true);
            return;
        }
        Accepted::RefuseFirstRequest(mut stream, reason) => {
            security.log_refusal(&refused_peer, &reason, true);
            let first =
                tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame_within(&mut stream, MAX_FRAME))
                    .await;
            if let Ok(Ok(Some(_))) = first {
                let _ = write_frame(&mut stream, &to_json(&SaslReply::Refused { reason })).await;
            }
            return;
        }
    };
    loop {
        let request = match read_frame(&mut stream).await {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "controller connection closed");
                return;
            }
        };
        // A SASL start on a listener without SASL (or a second one): say
        // why it cannot work rather than hand it to the handler.
        if request.starts_with(b"{\"Authenticate\"") {
            let reason = format!(
                "this controller listener is {}: no SASL exchange is expected here",
                security.protocol().name()
            );
            security.log_refusal(&refused_peer, &reason, true);
            let _ = write_frame(&mut stream, &to_json(&SaslReply::Refused { reason })).await;
            return;
        }
        let answer = handler(request).await;
        if let Err(e) = write_frame(&mut stream, &answer).await {
            tracing::debug!(error = %e, "controller connection closed while answering");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::RwLock;

    use sluice_protocol::sasl::PasswordMechanism;

    use super::super::security::{TlsConfigs, Verifier};
    use super::*;
    use crate::auth::{
        Authorizer, ClusterIdentity, PlainUsers, PolicyDocument, ScramCredential, ScramMechanism,
        ScramStore, Security,
    };
    use crate::config::jaas::{self, BrokerLogin, JaasConfigs};
    use crate::config::{SecurityProtocol, SslSettings};

    fn plaintext() -> Arc<TransportSecurity> {
        Arc::new(TransportSecurity::plaintext())
    }

    async fn echo_server(security: Arc<TransportSecurity>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Server::start(listener, security, |mut req: Vec<u8>| async move {
            req.reverse();
            req
        })
        .unwrap()
    }

    #[tokio::test]
    async fn calls_round_trip_and_reconnect_after_the_server_restarts() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(listener, plaintext(), |mut req: Vec<u8>| async move {
            req.reverse();
            req
        })
        .unwrap();
        let addr = server.local_addr();
        let mut client = PeerClient::new(addr.to_string(), plaintext());
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
        let server =
            Server::start(listener, plaintext(), |req: Vec<u8>| async move { req }).unwrap();
        assert_eq!(client.call(b"again", t).await.unwrap(), b"again");
        server.stop().await;
    }

    #[tokio::test]
    async fn a_silent_peer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(listener, plaintext(), |req: Vec<u8>| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            req
        })
        .unwrap();
        let mut client = PeerClient::new(server.local_addr().to_string(), plaintext());
        let err = client
            .call(b"x", Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, TransportError::Timeout { .. }), "{err}");
        server.stop().await;
    }

    /// A CA, and a certificate for 127.0.0.1 signed by it, as PEM files.
    struct TestPki {
        dir: tempfile::TempDir,
    }

    impl TestPki {
        fn new() -> TestPki {
            let dir = tempfile::tempdir().unwrap();
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca.distinguished_name
                .push(rcgen::DnType::CommonName, "quorum test CA");
            let ca_cert = ca.self_signed(&ca_key).unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
            let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
            let key = rcgen::KeyPair::generate().unwrap();
            let mut leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
            leaf.distinguished_name = rcgen::DistinguishedName::new();
            leaf.distinguished_name
                .push(rcgen::DnType::CommonName, "controller");
            let cert = leaf.signed_by(&key, &issuer).unwrap();
            std::fs::write(
                dir.path().join("keystore.pem"),
                format!("{}{}", cert.pem(), key.serialize_pem()),
            )
            .unwrap();
            TestPki { dir }
        }

        fn ssl(&self) -> SslSettings {
            SslSettings {
                keystore_location: Some(self.dir.path().join("keystore.pem")),
                key_location: None,
                truststore_location: Some(self.dir.path().join("ca.pem")),
                client_auth: None,
            }
        }

        fn tls(&self) -> TlsConfigs {
            let ssl = self.ssl();
            TlsConfigs {
                server: crate::tls::server_config(&ssl).unwrap(),
                client: crate::tls::client_config(&ssl).unwrap(),
            }
        }
    }

    fn security(plain: &[(&str, &str)], authorizer: Option<Authorizer>) -> Security {
        let mut users = PlainUsers::new();
        let mut scram = ScramStore::new();
        for (user, password) in plain {
            users.insert(user, password).unwrap();
            let m = ScramMechanism::Sha256;
            let credential = ScramCredential::from_password(m, password, b"salt", 4096).unwrap();
            scram.upsert(user, m, credential).unwrap();
        }
        Security {
            mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into()],
            reauth_ms: 0,
            plain: users,
            scram: RwLock::new(scram),
            scram_path: "/nonexistent/scram-credentials".into(),
            iam: None,
            authorizer,
        }
    }

    fn sasl_mechanisms() -> Vec<PasswordMechanism> {
        ["PLAIN", "SCRAM-SHA-256"]
            .iter()
            .filter_map(|m| PasswordMechanism::from_name(m))
            .collect()
    }

    fn login(mechanism: &str, user: &str, password: &str) -> Option<BrokerLogin> {
        let module = if mechanism == "PLAIN" {
            jaas::PLAIN_LOGIN_MODULE
        } else {
            jaas::SCRAM_LOGIN_MODULE
        };
        let mut configs = JaasConfigs::default();
        let line = format!(r#"{module} required username="{user}" password="{password}";"#);
        configs.set(jaas::SASL_JAAS_CONFIG, &line).unwrap();
        let login = jaas::broker_login(
            &configs,
            "CONTROLLER",
            "sasl.mechanism.controller.protocol",
            mechanism,
        );
        Some(login.unwrap())
    }

    #[tokio::test]
    async fn tls_carries_calls_and_a_plaintext_peer_gets_nothing() {
        let pki = TestPki::new();
        let server_side = Arc::new(TransportSecurity::from_parts(
            SecurityProtocol::Ssl,
            Some(pki.tls()),
            None,
            None,
        ));
        let server = echo_server(server_side).await;
        let addr = server.local_addr().to_string();
        let client_side = Arc::new(TransportSecurity::from_parts(
            SecurityProtocol::Ssl,
            Some(pki.tls()),
            None,
            None,
        ));
        let t = Duration::from_secs(5);
        let mut client = PeerClient::new(addr.clone(), client_side);
        assert_eq!(client.call(b"abc", t).await.unwrap(), b"cba");
        let big = vec![9u8; 1 << 20];
        assert_eq!(client.call(&big, t).await.unwrap(), big);

        // A plaintext peer's request gets no answer, only a closed socket.
        let mut plain = PeerClient::new(addr.clone(), plaintext());
        let err = plain.call(b"abc", t).await.unwrap_err();
        assert!(matches!(err, TransportError::Io { .. }), "{err}");
        let mut raw = TcpStream::connect(&addr).await.unwrap();
        write_frame(&mut raw, b"abc").await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(t, raw.read_to_end(&mut got)).await;
        assert!(!got.windows(3).any(|w| w == b"cba"), "{got:?}");

        // A TLS client that does not trust the server's CA is refused.
        let other = TestPki::new();
        let mut untrusting = PeerClient::new(
            addr,
            Arc::new(TransportSecurity::from_parts(
                SecurityProtocol::Ssl,
                Some(TlsConfigs {
                    server: other.tls().server,
                    client: other.tls().client,
                }),
                None,
                None,
            )),
        );
        let err = untrusting.call(b"abc", t).await.unwrap_err();
        assert!(
            matches!(&err, TransportError::Refused { reason, .. } if reason.contains("TLS handshake failed")),
            "{err}"
        );
        server.stop().await;
    }

    #[tokio::test]
    async fn sasl_logs_in_with_plain_and_scram_and_refuses_a_wrong_password() {
        let pki = TestPki::new();
        for protocol in [SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl] {
            let tls = || protocol.uses_tls().then(|| pki.tls());
            let verifier = Verifier::new(sasl_mechanisms(), security(&[("ctl", "s3cret")], None));
            let server_side = Arc::new(TransportSecurity::from_parts(
                protocol,
                tls(),
                None,
                Some(verifier),
            ));
            let server = echo_server(server_side).await;
            let addr = server.local_addr().to_string();
            let t = Duration::from_secs(5);
            let client = |login: Option<BrokerLogin>| {
                PeerClient::new(
                    addr.clone(),
                    Arc::new(TransportSecurity::from_parts(protocol, tls(), login, None)),
                )
            };
            for mechanism in ["PLAIN", "SCRAM-SHA-256"] {
                let mut ok = client(login(mechanism, "ctl", "s3cret"));
                assert_eq!(ok.call(b"abc", t).await.unwrap(), b"cba", "{mechanism}");
                assert_eq!(ok.call(b"xy", t).await.unwrap(), b"yx", "{mechanism}");

                let mut wrong = client(login(mechanism, "ctl", "guess"));
                let err = wrong.call(b"abc", t).await.unwrap_err();
                assert!(
                    matches!(&err, TransportError::Refused { reason, .. } if reason.contains("invalid credentials")),
                    "{mechanism}: {err}"
                );
            }
            // A mechanism the listener does not offer.
            let mut sha512 = client(login("SCRAM-SHA-512", "ctl", "s3cret"));
            let err = sha512.call(b"abc", t).await.unwrap_err();
            assert!(err.to_string().contains("not enabled"), "{err}");
            // A peer without SASL: its request is answered with the refusal.
            let mut anonymous = client(None);
            let err = anonymous.call(b"abc", t).await.unwrap_err();
            assert!(
                matches!(&err, TransportError::Refused { reason, .. } if reason.contains("before authenticating")),
                "{err}"
            );
            server.stop().await;
        }
    }

    #[tokio::test]
    async fn an_authorizer_requires_cluster_action() {
        let mut authorizer = Authorizer::new(ClusterIdentity {
            region: "us-east-1".into(),
            account: "123456789012".into(),
            name: "sluice".into(),
            uuid: "0".into(),
        });
        let everything = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kafka-cluster:*","Resource":"*"}}"#;
        let connect_only = r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"kafka-cluster:Connect","Resource":"*"}}"#;
        authorizer.attach("User:ctl", PolicyDocument::parse(everything).unwrap());
        authorizer.attach("User:app", PolicyDocument::parse(connect_only).unwrap());
        let users = security(&[("ctl", "s3cret"), ("app", "app-pw")], Some(authorizer));
        let verifier = Verifier::new(sasl_mechanisms(), users);
        let server = echo_server(Arc::new(TransportSecurity::from_parts(
            SecurityProtocol::SaslPlaintext,
            None,
            None,
            Some(verifier),
        )))
        .await;
        let addr = server.local_addr().to_string();
        let t = Duration::from_secs(5);
        let client = |login: Option<BrokerLogin>| {
            PeerClient::new(
                addr.clone(),
                Arc::new(TransportSecurity::from_parts(
                    SecurityProtocol::SaslPlaintext,
                    None,
                    login,
                    None,
                )),
            )
        };
        let mut ctl = client(login("PLAIN", "ctl", "s3cret"));
        assert_eq!(ctl.call(b"abc", t).await.unwrap(), b"cba");
        let mut app = client(login("PLAIN", "app", "app-pw"));
        let err = app.call(b"abc", t).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("User:app is not authorized for ClusterAction"),
            "{err}"
        );
        server.stop().await;
    }
}
