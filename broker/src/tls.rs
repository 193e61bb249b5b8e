//! TLS for the SSL and SASL_SSL listeners, and for this broker's own
//! connections to other brokers' (replica fetchers on an SSL inter-broker
//! listener), with rustls driven by hand over the io_uring socket:
//! [`server_config`] and [`client_config`] build the rustls configurations
//! from Kafka's PEM `ssl.*` settings, [`handshake`] (server side) and
//! [`connect`] (client side) complete the handshake on the whole stream,
//! and [`TlsSession`] is then shared by the
//! connection's reader (ciphertext in, plaintext out) and writer (plaintext
//! in, ciphertext out). Both halves run on the same shard thread, so a
//! `RefCell` is enough and no borrow is held across an await.
//!
//! Fetch responses cannot be spliced through TLS: their file ranges are read
//! into memory and encrypted (kernel TLS would restore zero copy).

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use compio::buf::BufResult;
use compio::io::{AsyncRead, AsyncWriteExt};
use compio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::ServerName;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    ClientConfig, ClientConnection, Connection, RootCertStore, ServerConfig, ServerConnection,
};

use crate::config::{ClientAuth, SslSettings};
use crate::log::read::FileRange;

/// Longest a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Ciphertext read size.
const READ_CHUNK: usize = 64 * 1024;
/// Plaintext handed to rustls at a time (one maximum-size TLS record).
const TLS_CHUNK: usize = 16 * 1024;

/// What draining rustls' decrypted bytes found.
enum Drained {
    Bytes(usize),
    /// The peer sent close_notify and nothing is left.
    Closed,
}

fn drain_plaintext(conn: &mut Connection, out: &mut bytes::BytesMut) -> std::io::Result<Drained> {
    let mut tmp = [0u8; TLS_CHUNK];
    let mut total = 0;
    loop {
        match conn.reader().read(&mut tmp) {
            Ok(0) => {
                return Ok(if total == 0 {
                    Drained::Closed
                } else {
                    Drained::Bytes(total)
                })
            }
            Ok(n) => {
                out.extend_from_slice(&tmp[..n]);
                total += n;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return Ok(Drained::Bytes(total))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Builds the rustls server configuration from `ssl.*`.
pub fn server_config(ssl: &SslSettings) -> anyhow::Result<Arc<ServerConfig>> {
    use anyhow::Context;
    let (certs, key) = own_identity(ssl)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let client_auth = ssl
        .client_auth
        .unwrap_or(if ssl.truststore_location.is_some() {
            ClientAuth::Required
        } else {
            ClientAuth::None
        });
    let builder = match client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        ClientAuth::Requested | ClientAuth::Required => {
            let trust = ssl.truststore_location.as_deref().context(
                "ssl.client.auth needs ssl.truststore.location (the CA that signs client certificates)",
            )?;
            let roots = trust_roots(trust)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if client_auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder
                .with_client_cert_verifier(verifier.build().context("client certificate verifier")?)
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .context("the keystore's certificate and private key do not form a usable pair")?;
    cfg.alpn_protocols.clear();
    Ok(Arc::new(cfg))
}

/// The CA certificates of `ssl.truststore.location`.
fn trust_roots(path: &Path) -> anyhow::Result<RootCertStore> {
    use anyhow::Context;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read ssl.truststore.location {}", path.display()))?
    {
        let c = c.with_context(|| format!("bad certificate PEM in {}", path.display()))?;
        roots
            .add(c)
            .with_context(|| format!("unusable CA certificate in {}", path.display()))?;
    }
    Ok(roots)
}

/// The certificate chain and key of `ssl.keystore.location` (and
/// `ssl.key.location`).
fn own_identity(
    ssl: &SslSettings,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    use anyhow::Context;
    let keystore = ssl
        .keystore_location
        .as_deref()
        .context("ssl.keystore.location is not set")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(keystore)
        .with_context(|| format!("cannot read ssl.keystore.location {}", keystore.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad certificate PEM in {}", keystore.display()))?;
    if certs.is_empty() {
        anyhow::bail!(
            "ssl.keystore.location {} holds no certificate",
            keystore.display()
        );
    }
    let key_path: &Path = ssl.key_location.as_deref().unwrap_or(keystore);
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("no private key found in {}", key_path.display()))?;
    Ok((certs, key))
}

/// The rustls configuration this broker connects to other brokers' TLS
/// listeners with, as Kafka's inter-broker client uses the broker's own
/// `ssl.*`: servers are verified against `ssl.truststore.location`, and the
/// broker presents its keystore certificate (for listeners that require
/// client certificates, and as its principal there).
pub fn client_config(ssl: &SslSettings) -> anyhow::Result<Arc<ClientConfig>> {
    use anyhow::Context;
    let trust = ssl.truststore_location.as_deref().context(
        "TLS to other brokers needs ssl.truststore.location (the CA that signs the brokers' certificates)",
    )?;
    let roots = trust_roots(trust)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let cfg = if ssl.keystore_location.is_some() {
        let (certs, key) = own_identity(ssl)?;
        builder
            .with_client_auth_cert(certs, key)
            .context("the keystore's certificate and private key do not form a usable pair")?
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(cfg))
}

/// An established TLS session shared by the connection's two halves.
#[derive(Clone)]
pub struct TlsSession {
    conn: Rc<RefCell<Connection>>,
}

/// Runs the server side of the handshake on `sock`. Any bytes the client
/// sent after its last handshake message stay buffered in the session.
pub async fn handshake(
    config: Arc<ServerConfig>,
    sock: &mut TcpStream,
    peer: SocketAddr,
) -> Result<TlsSession, String> {
    let conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
    drive_handshake(Connection::Server(conn), sock, &peer.to_string()).await
}

/// Runs the client side of the handshake with the server at `addr`
/// (`host:port`), verifying its certificate for `host`.
pub async fn connect(
    config: Arc<ClientConfig>,
    sock: &mut TcpStream,
    addr: &str,
) -> Result<TlsSession, String> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host} cannot be verified as a TLS server name: {e}"))?;
    let conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    drive_handshake(Connection::Client(conn), sock, addr).await
}

/// Exchanges handshake messages until rustls is done (bounded).
async fn drive_handshake(
    mut conn: Connection,
    sock: &mut TcpStream,
    peer: &str,
) -> Result<TlsSession, String> {
    let run = async {
        let mut buf = Vec::with_capacity(READ_CHUNK);
        while conn.is_handshaking() {
            flush_tls(&mut conn, sock).await?;
            if !conn.is_handshaking() {
                break;
            }
            buf.clear();
            let BufResult(r, b) = sock.read(buf).await;
            buf = b;
            match r {
                Ok(0) => return Err("peer closed during the TLS handshake".to_string()),
                Ok(_) => {}
                Err(e) => return Err(format!("read failed during the TLS handshake: {e}")),
            }
            let mut slice = &buf[..];
            while !slice.is_empty() {
                conn.read_tls(&mut slice).map_err(|e| e.to_string())?;
                if let Err(e) = conn.process_new_packets() {
                    // Send the alert explaining why, then give up.
                    let _ = flush_tls(&mut conn, sock).await;
                    let hint = if buf.first().is_some_and(|b| *b != 0x16) {
                        " (the peer is not speaking TLS: a plaintext client on a TLS listener, or TLS sent to a plaintext one?)"
                    } else {
                        ""
                    };
                    return Err(format!("TLS handshake failed: {e}{hint}"));
                }
            }
        }
        flush_tls(&mut conn, sock).await?;
        Ok(())
    };
    match compio::time::timeout(HANDSHAKE_TIMEOUT, run).await {
        Ok(Ok(())) => Ok(TlsSession {
            conn: Rc::new(RefCell::new(conn)),
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("TLS handshake with {peer} timed out")),
    }
}

/// Writes every ciphertext byte rustls has queued.
async fn flush_tls(conn: &mut Connection, sock: &mut TcpStream) -> Result<(), String> {
    while conn.wants_write() {
        let mut out = Vec::new();
        conn.write_tls(&mut out).map_err(|e| e.to_string())?;
        let BufResult(r, _) = sock.write_all(out).await;
        r.map_err(|e| format!("write failed during TLS: {e}"))?;
    }
    Ok(())
}

impl TlsSession {
    /// The client certificate's subject as Kafka's default principal
    /// builder names it (`CN=...,OU=...`, RFC 2253 order), if one was sent.
    pub fn peer_subject(&self) -> Option<String> {
        let conn = self.conn.borrow();
        let cert = conn.peer_certificates()?.first()?.clone();
        drop(conn);
        subject_rfc2253(cert.as_ref())
    }

    /// Appends decrypted application bytes to `out`, reading from the
    /// socket as needed. Returns 0 at end of stream.
    pub async fn read_plain(
        &self,
        sock: &mut TcpStream,
        out: &mut bytes::BytesMut,
    ) -> std::io::Result<usize> {
        loop {
            {
                let mut conn = self.conn.borrow_mut();
                match drain_plaintext(&mut conn, out)? {
                    Drained::Closed => return Ok(0),
                    Drained::Bytes(n) if n > 0 => return Ok(n),
                    Drained::Bytes(_) => {}
                }
            }
            let buf = Vec::with_capacity(READ_CHUNK);
            let BufResult(r, buf) = sock.read(buf).await;
            let n = r?;
            if n == 0 {
                return Ok(0);
            }
            let mut conn = self.conn.borrow_mut();
            let mut slice = &buf[..];
            let mut total = 0;
            while !slice.is_empty() {
                conn.read_tls(&mut slice)?;
                conn.process_new_packets().map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
                })?;
                // rustls bounds its decrypted-data buffer (and refuses more
                // ciphertext once it is full): drain it after every step.
                match drain_plaintext(&mut conn, out)? {
                    Drained::Closed => return Ok(total),
                    Drained::Bytes(k) => total += k,
                }
            }
            if total > 0 {
                return Ok(total);
            }
        }
    }

    /// Encrypts `data` and writes it to `sock`.
    pub async fn write_plain(&self, sock: &mut TcpStream, data: &[u8]) -> std::io::Result<()> {
        let out = {
            let mut conn = self.conn.borrow_mut();
            let mut out = Vec::with_capacity(data.len() + data.len() / 256 + 64);
            // rustls bounds its buffered output, so feed it a record at a
            // time and collect the ciphertext as we go.
            let mut rest = data;
            while !rest.is_empty() {
                let n = conn.writer().write(&rest[..rest.len().min(TLS_CHUNK)])?;
                if n == 0 {
                    conn.write_tls(&mut out)?;
                    continue;
                }
                rest = &rest[n..];
                while conn.wants_write() {
                    conn.write_tls(&mut out)?;
                }
            }
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
            out
        };
        let BufResult(r, _) = sock.write_all(out).await;
        r
    }

    /// Sends a file range through TLS (read into memory, then encrypted).
    pub async fn write_file_range(
        &self,
        sock: &mut TcpStream,
        range: &FileRange,
    ) -> std::io::Result<()> {
        const CHUNK: u64 = 256 * 1024;
        let mut pos = range.position;
        let end = range.position + range.len;
        let mut buf = vec![0u8; CHUNK.min(range.len) as usize];
        while pos < end {
            let n = (end - pos).min(CHUNK) as usize;
            // The range was just read from the page cache by the fetch; a
            // pread here does not wait on the disk in practice.
            range.file.read_exact_at(&mut buf[..n], pos)?;
            self.write_plain(sock, &buf[..n]).await?;
            pos += n as u64;
        }
        Ok(())
    }

    /// Sends close_notify.
    pub async fn close(&self, sock: &mut TcpStream) {
        let out = {
            let mut conn = self.conn.borrow_mut();
            conn.send_close_notify();
            let mut out = Vec::new();
            while conn.wants_write() {
                if conn.write_tls(&mut out).is_err() {
                    break;
                }
            }
            out
        };
        let _ = sock.write_all(out).await;
    }
}

/// RFC 2253 rendering of a certificate's subject (most specific RDN first,
/// no spaces), as Java's `X500Principal.getName()` gives it.
pub fn subject_rfc2253(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let registry = oid_registry();
    let mut parts = Vec::new();
    for rdn in cert
        .subject()
        .iter_rdn()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        let attrs: Vec<String> = rdn
            .iter()
            .map(|a| {
                let name = x509_parser::objects::oid2abbrev(a.attr_type(), registry)
                    .map(str::to_string)
                    .unwrap_or_else(|_| a.attr_type().to_id_string());
                let value = a.as_str().map(escape_rdn_value).unwrap_or_default();
                format!("{name}={value}")
            })
            .collect();
        parts.push(attrs.join("+"));
    }
    Some(parts.join(","))
}

fn escape_rdn_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i + 1 == v.chars().count() && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_rendered_most_specific_first() {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let mut dn = rcgen::DistinguishedName::new();
        dn.push(rcgen::DnType::CountryName, "US");
        dn.push(rcgen::DnType::OrganizationName, "Acme, Inc");
        dn.push(rcgen::DnType::CommonName, "alice");
        params.distinguished_name = dn;
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_rfc2253(cert.der()).unwrap(),
            "CN=alice,O=Acme\\, Inc,C=US"
        );
    }
}
