//! Client-side TLS for broker connections (Kafka's `SSL` / `SASL_SSL`
//! security protocols), on rustls with the *ring* provider. This module owns
//! [`TlsConfig`], the user's settings (CA file or the system roots, an
//! optional client certificate for mutual TLS, a server-name override, and
//! an explicit opt-out of verification), turning them into a shared
//! `rustls::ClientConfig`, and [`connect`], which wraps a connected
//! `TcpStream`. Reading the PEM files is blocking I/O: build the
//! `ClientConfig` once, at client start-up, not per connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// TLS settings, named after the Java client's `ssl.*` properties where
/// those exist.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsConfig {
    /// PEM file of trusted CA certificates (`ssl.truststore.location` with
    /// type PEM). `None`: the operating system's roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS (`ssl.keystore.location`).
    pub cert_file: Option<PathBuf>,
    /// PEM private key for `cert_file`: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Dangerous: for tests only. Default false.
    pub insecure_skip_verify: bool,
    /// The name to verify the server certificate against (and send as SNI)
    /// instead of the broker's advertised host.
    pub server_name: Option<String>,
}

/// Why a TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A configured file could not be read.
    #[error("reading {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A configured file is not valid PEM of the expected kind.
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    /// `cert_file` and `key_file` must be set together.
    #[error("a client certificate needs both cert_file and key_file")]
    IncompleteClientAuth,
    /// No trusted roots could be loaded from the system.
    #[error("no system root certificates could be loaded: {0}")]
    NoSystemRoots(String),
    /// rustls rejected the configuration (e.g. key does not match the certificate).
    #[error("TLS configuration rejected: {0}")]
    Rustls(#[from] rustls::Error),
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> TlsError {
    match e {
        rustls::pki_types::pem::Error::Io(source) => TlsError::Io {
            path: path.to_owned(),
            source,
        },
        other => TlsError::Pem {
            path: path.to_owned(),
            what: format!("invalid PEM: {other:?}"),
        },
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "no CERTIFICATE found".into(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Pem {
            path: path.to_owned(),
            what: "no PRIVATE KEY (PKCS#8), RSA PRIVATE KEY or EC PRIVATE KEY found".into(),
        },
        other => pem_error(path, other),
    })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsConfig {
    /// The name to verify the broker's certificate against.
    pub fn server_name<'a>(&'a self, broker_host: &'a str) -> &'a str {
        self.server_name.as_deref().unwrap_or(broker_host)
    }

    /// Builds the rustls client configuration (blocking file reads).
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, TlsError> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if self.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(
                    provider.signature_verification_algorithms,
                )))
        } else {
            let mut roots = RootCertStore::empty();
            match &self.ca_file {
                Some(path) => {
                    for cert in load_certs(path)? {
                        roots.add(cert).map_err(|e| TlsError::Pem {
                            path: path.clone(),
                            what: format!("unusable CA certificate: {e}"),
                        })?;
                    }
                }
                None => {
                    let found = rustls_native_certs::load_native_certs();
                    let (added, _ignored) = roots.add_parsable_certificates(found.certs);
                    if added == 0 {
                        let why: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                        return Err(TlsError::NoSystemRoots(if why.is_empty() {
                            "none found".into()
                        } else {
                            why.join("; ")
                        }));
                    }
                }
            }
            builder.with_root_certificates(roots)
        };
        let config = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => {
                builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(TlsError::IncompleteClientAuth),
        };
        Ok(Arc::new(config))
    }
}

/// Performs the TLS handshake over `stream`, verifying the certificate
/// against `host` (pass [`TlsConfig::server_name`]). Handshake failures keep
/// their `io::ErrorKind` and name the host and rustls's reason.
pub async fn connect(
    stream: TcpStream,
    host: &str,
    cfg: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let name = ServerName::try_from(host.to_owned()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid TLS server name {host:?}: {e}"),
        )
    })?;
    TlsConnector::from(cfg)
        .connect(name, stream)
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {host} failed: {e}")))
}

/// Accepts any certificate but still checks handshake signatures, so the
/// peer must hold the key of the certificate it presents.
struct NoVerification(WebPkiSupportedAlgorithms);

impl fmt::Debug for NoVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NoVerification")
    }
}

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    use rustls::server::WebPkiClientVerifier;
    use rustls::ServerConfig;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsAcceptor;

    fn must<T, E: fmt::Display>(r: Result<T, E>) -> T {
        match r {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// A CA and leaf certificates it signs, written as PEM files.
    struct Pki {
        dir: PathBuf,
        ca_key: KeyPair,
        ca_params: CertificateParams,
    }

    impl Pki {
        fn new(name: &str) -> Pki {
            let dir =
                std::env::temp_dir().join(format!("sluice-tls-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            must(std::fs::create_dir_all(&dir));
            let ca_key = must(KeyPair::generate());
            let mut ca_params = must(CertificateParams::new(Vec::<String>::new()));
            ca_params
                .distinguished_name
                .push(DnType::CommonName, format!("{name} test CA"));
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let ca = must(ca_params.self_signed(&ca_key));
            must(std::fs::write(dir.join("ca.pem"), ca.pem()));
            Pki {
                dir,
                ca_key,
                ca_params,
            }
        }

        fn path(&self, f: &str) -> PathBuf {
            self.dir.join(f)
        }

        /// Issues a leaf for `names`, writing `<stem>.pem` and `<stem>.key`.
        fn leaf(
            &self,
            stem: &str,
            names: &[&str],
        ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
            let key = must(KeyPair::generate());
            let mut params = must(CertificateParams::new(
                names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ));
            params.distinguished_name.push(DnType::CommonName, stem);
            let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
            let cert = must(params.signed_by(&key, &issuer));
            must(std::fs::write(
                self.path(&format!("{stem}.pem")),
                cert.pem(),
            ));
            must(std::fs::write(
                self.path(&format!("{stem}.key")),
                key.serialize_pem(),
            ));
            let der_key = must(PrivateKeyDer::try_from(key.serialize_der()));
            (vec![cert.der().clone()], der_key)
        }
    }

    impl Drop for Pki {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Runs a TLS echo server on 127.0.0.1 for one connection; returns its port.
    async fn echo_server(config: ServerConfig) -> (u16, tokio::task::JoinHandle<io::Result<()>>) {
        let listener = must(tokio::net::TcpListener::bind("127.0.0.1:0").await);
        let port = must(listener.local_addr()).port();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await?;
            let mut tls = acceptor.accept(tcp).await?;
            let mut buf = [0u8; 5];
            tls.read_exact(&mut buf).await?;
            tls.write_all(&buf).await?;
            tls.shutdown().await
        });
        (port, task)
    }

    fn server_config(pki: &Pki, client_ca: Option<&Pki>) -> ServerConfig {
        let (certs, key) = pki.leaf("server", &["localhost", "127.0.0.1"]);
        let builder = must(
            ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions(),
        );
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for c in must(load_certs(&ca.path("ca.pem"))) {
                    must(roots.add(c));
                }
                let verifier = must(
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build(),
                );
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        must(builder.with_single_cert(certs, key))
    }

    async fn exchange(port: u16, host: &str, cfg: Arc<ClientConfig>) -> io::Result<Vec<u8>> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut tls = connect(tcp, host, cfg).await?;
        tls.write_all(b"hello").await?;
        let mut out = Vec::new();
        tls.read_to_end(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn server_verified_with_ca_file() {
        let pki = Pki::new("ca-file");
        let (port, server) = echo_server(server_config(&pki, None)).await;
        let cfg = TlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            ..TlsConfig::default()
        };
        let out = must(
            exchange(
                port,
                cfg.server_name("localhost"),
                must(cfg.client_config()),
            )
            .await,
        );
        assert_eq!(out, b"hello");
        must(must(server.await));
    }

    #[tokio::test]
    async fn server_name_override_and_ip() {
        let pki = Pki::new("override");
        let (port, server) = echo_server(server_config(&pki, None)).await;
        // The advertised host does not match; the override does (an IP SAN).
        let cfg = TlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            server_name: Some("127.0.0.1".into()),
            ..TlsConfig::default()
        };
        let out = must(
            exchange(
                port,
                cfg.server_name("broker-7.internal"),
                must(cfg.client_config()),
            )
            .await,
        );
        assert_eq!(out, b"hello");
        must(must(server.await));
    }

    #[tokio::test]
    async fn mutual_tls() {
        let pki = Pki::new("mtls");
        let _ = pki.leaf("client", &["client.example"]);
        let (port, server) = echo_server(server_config(&pki, Some(&pki))).await;
        let cfg = TlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            cert_file: Some(pki.path("client.pem")),
            key_file: Some(pki.path("client.key")),
            ..TlsConfig::default()
        };
        let out = must(exchange(port, "localhost", must(cfg.client_config())).await);
        assert_eq!(out, b"hello");
        must(must(server.await));

        // Without a client certificate the server refuses us.
        let (port, server) = echo_server(server_config(&pki, Some(&pki))).await;
        let cfg = TlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            ..TlsConfig::default()
        };
        assert!(exchange(port, "localhost", must(cfg.client_config()))
            .await
            .is_err());
        assert!(must(server.await).is_err());
    }

    #[tokio::test]
    async fn wrong_ca_fails_clearly_and_insecure_skips() {
        let real = Pki::new("real");
        let other = Pki::new("other");
        let (port, server) = echo_server(server_config(&real, None)).await;
        let cfg = TlsConfig {
            ca_file: Some(other.path("ca.pem")),
            ..TlsConfig::default()
        };
        let err = match exchange(port, "localhost", must(cfg.client_config())).await {
            Ok(_) => panic!("handshake with an untrusted CA succeeded"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(msg.contains("TLS handshake with localhost failed"), "{msg}");
        assert!(msg.contains("UnknownIssuer"), "{msg}");
        eprintln!("wrong-CA error: {msg}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let _ = server.await;

        let (port, server) = echo_server(server_config(&real, None)).await;
        let cfg = TlsConfig {
            insecure_skip_verify: true,
            ..TlsConfig::default()
        };
        assert_eq!(
            must(exchange(port, "whatever.invalid", must(cfg.client_config())).await),
            b"hello"
        );
        must(must(server.await));
    }

    #[test]
    fn config_errors() {
        let pki = Pki::new("errors");
        let _ = pki.leaf("client", &["c"]);
        let only_cert = TlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            cert_file: Some(pki.path("client.pem")),
            ..TlsConfig::default()
        };
        assert!(matches!(
            only_cert.client_config(),
            Err(TlsError::IncompleteClientAuth)
        ));
        let missing = TlsConfig {
            ca_file: Some(pki.path("nope.pem")),
            ..TlsConfig::default()
        };
        assert!(matches!(missing.client_config(), Err(TlsError::Io { .. })));
        let not_certs = TlsConfig {
            ca_file: Some(pki.path("client.key")),
            ..TlsConfig::default()
        };
        assert!(matches!(
            not_certs.client_config(),
            Err(TlsError::Pem { .. })
        ));
        let key_is_cert = TlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            cert_file: Some(pki.path("client.pem")),
            key_file: Some(pki.path("ca.pem")),
            ..TlsConfig::default()
        };
        assert!(matches!(
            key_is_cert.client_config(),
            Err(TlsError::Pem { .. })
        ));
        // SEC1 ("EC PRIVATE KEY") and PKCS#1 keys are accepted as well as PKCS#8.
        let sec1 = pki.path("client-sec1.key");
        must(std::fs::write(
            &sec1,
            pkcs8_p256_to_sec1_pem(&must(std::fs::read_to_string(pki.path("client.key")))),
        ));
        let cfg = TlsConfig {
            ca_file: Some(pki.path("ca.pem")),
            cert_file: Some(pki.path("client.pem")),
            key_file: Some(sec1),
            ..TlsConfig::default()
        };
        must(cfg.client_config());
    }

    /// Rewraps rcgen's PKCS#8 P-256 key as SEC1: the PKCS#8 structure
    /// embeds the SEC1 `ECPrivateKey` as its OCTET STRING payload.
    fn pkcs8_p256_to_sec1_pem(pkcs8_pem: &str) -> String {
        let der = match PrivateKeyDer::from_pem_slice(pkcs8_pem.as_bytes()) {
            Ok(PrivateKeyDer::Pkcs8(k)) => k.secret_pkcs8_der().to_vec(),
            _ => panic!("not PKCS#8"),
        };
        // Find the inner "30 .. 02 01 01" (ECPrivateKey, version 1) after the OCTET STRING tag.
        let start = der
            .windows(5)
            .position(|w| w[0] == 0x04 && w[2] == 0x30 && w[4] == 0x02)
            .map(|i| i + 2)
            .unwrap_or_else(|| panic!("no ECPrivateKey inside"));
        let len = usize::from(der[start + 1]) + 2;
        let sec1 = &der[start..start + len];
        let b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(sec1)
        };
        format!("-----BEGIN EC PRIVATE KEY-----\n{b64}\n-----END EC PRIVATE KEY-----\n")
    }
}
