//! Secure connection setup: TLS (rustls) over the TCP stream when
//! `security.protocol` is SSL or SASL_SSL, then ApiVersions, then the SASL
//! exchange (SaslHandshake v1, SaslAuthenticate until the mechanism is done)
//! when it is SASL_PLAINTEXT or SASL_SSL. A session lifetime the broker
//! announces (KIP-368) makes the connection retire itself before it ends, so
//! the cluster reconnects and authenticates afresh with a fresh token.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::net::TcpStream;

use super::connection::Connection;
use super::sasl::msk_iam::MskIamTokenProvider;
use super::sasl::SaslConfig;
use super::tls::TlsConfig;
use crate::config::ClientConfig;
use crate::error::{Error, ErrorCode, Result};

fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The SASL mechanism the configuration asks for.
pub fn sasl_config(cfg: &ClientConfig) -> Result<SaslConfig> {
    let mechanism = cfg.sasl_mechanism.as_deref().unwrap_or("PLAIN");
    let user_pass =
        || -> Result<(String, String)> {
            let u = cfg.sasl_username.clone().ok_or_else(|| {
                Error::config("sasl.username", format!("required for {mechanism}"))
            })?;
            let p = cfg.sasl_password.clone().ok_or_else(|| {
                Error::config("sasl.password", format!("required for {mechanism}"))
            })?;
            Ok((u, p))
        };
    Ok(match mechanism {
        "PLAIN" => {
            let (username, password) = user_pass()?;
            SaslConfig::Plain { username, password }
        }
        "SCRAM-SHA-256" => {
            let (username, password) = user_pass()?;
            SaslConfig::ScramSha256 { username, password }
        }
        "SCRAM-SHA-512" => {
            let (username, password) = user_pass()?;
            SaslConfig::ScramSha512 { username, password }
        }
        "OAUTHBEARER" => match &cfg.sasl_oauth_token_provider {
            Some(p) => SaslConfig::OAuthBearer {
                provider: p.0.clone(),
            },
            None => {
                return Err(Error::config(
                    "sasl.oauthbearer.token.provider",
                    "OAUTHBEARER needs a token provider callback",
                ))
            }
        },
        "AWS_MSK_IAM" => SaslConfig::AwsMskIam {
            provider: Arc::new(MskIamTokenProvider::from_client_config(cfg)),
        },
        other => {
            return Err(Error::config(
                "sasl.mechanism",
                format!("unsupported SASL mechanism `{other}`"),
            ))
        }
    })
}

fn tls_config(cfg: &ClientConfig) -> TlsConfig {
    TlsConfig {
        ca_file: cfg.ssl_ca_location.clone().map(Into::into),
        cert_file: cfg.ssl_certificate_location.clone().map(Into::into),
        key_file: cfg.ssl_key_location.clone().map(Into::into),
        insecure_skip_verify: !cfg.ssl_certificate_verification,
        server_name: None,
    }
}

/// Opens a connection over `tcp`: TLS when the protocol says so, then
/// ApiVersions, then authentication with `sasl` when given.
pub async fn open(
    tcp: TcpStream,
    addr: &str,
    node_id: i32,
    cfg: &ClientConfig,
    sasl: Option<&SaslConfig>,
) -> Result<Arc<Connection>> {
    let host = host_of(addr).to_string();
    let conn = if cfg.security_protocol.uses_tls() {
        let tls = tls_config(cfg);
        // Reads PEM files: keep it off the runtime's threads.
        let client = tokio::task::spawn_blocking(move || tls.client_config())
            .await
            .map_err(|e| Error::Authentication(format!("TLS setup: {e}")))?
            .map_err(|e| Error::Authentication(format!("TLS setup: {e}")))?;
        let stream =
            super::tls::connect(tcp, &host, client)
                .await
                .map_err(|e| Error::Connection {
                    broker: addr.to_string(),
                    reason: e.to_string(),
                })?;
        Connection::open(stream, addr, node_id, &cfg.client_id, cfg.request_timeout).await?
    } else {
        Connection::open(tcp, addr, node_id, &cfg.client_id, cfg.request_timeout).await?
    };
    if let Some(sasl) = sasl {
        authenticate(&conn, sasl, &host).await?;
    }
    Ok(conn)
}

/// Runs the SASL exchange on a fresh connection.
pub async fn authenticate(conn: &Connection, sasl: &SaslConfig, host: &str) -> Result<()> {
    let mut hs = SaslHandshakeRequest::default();
    hs.mechanism = StrBytes::from_static_str(sasl.mechanism_name());
    let resp = conn.send(&hs).await?;
    let offered: Vec<String> = resp.mechanisms.iter().map(|m| m.to_string()).collect();
    if resp.error_code != ErrorCode::None.code() {
        return Err(Error::Authentication(format!(
            "broker refused SASL mechanism {} ({}); it offers {offered:?}",
            sasl.mechanism_name(),
            ErrorCode::from_code(resp.error_code)
        )));
    }
    sasl.check_offered(&offered)
        .map_err(|e| Error::Authentication(e.to_string()))?;
    let mut session = sasl
        .start(host)
        .await
        .map_err(|e| Error::Authentication(e.to_string()))?;
    let mut server: Option<Bytes> = None;
    let mut lifetime_ms: i64 = 0;
    loop {
        let next = session
            .step(server.as_deref())
            .map_err(|e| Error::Authentication(e.to_string()))?;
        let Some(msg) = next else { break };
        let mut req = SaslAuthenticateRequest::default();
        req.auth_bytes = Bytes::from(msg);
        let resp = conn.send(&req).await?;
        if resp.error_code != ErrorCode::None.code() {
            let detail = resp
                .error_message
                .map(|m| m.to_string())
                .unwrap_or_default();
            return Err(Error::Authentication(format!(
                "{} ({}): {detail}",
                sasl.mechanism_name(),
                ErrorCode::from_code(resp.error_code)
            )));
        }
        lifetime_ms = resp.session_lifetime_ms;
        server = Some(resp.auth_bytes);
    }
    // Retire the connection before the broker's session (or our token) ends.
    let mut lifetime = (lifetime_ms > 0).then(|| Duration::from_millis(lifetime_ms as u64));
    if let Some(hint) = session.session_lifetime_hint() {
        lifetime = Some(lifetime.map_or(hint, |l| l.min(hint)));
    }
    if let Some(l) = lifetime {
        conn.retire_at(Instant::now() + l.mul_f64(0.85));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mechanisms_from_config() {
        let mut c = ClientConfig {
            sasl_mechanism: Some("SCRAM-SHA-512".into()),
            ..Default::default()
        };
        assert!(sasl_config(&c)
            .unwrap_err()
            .to_string()
            .contains("sasl.username"));
        c.sasl_username = Some("u".into());
        c.sasl_password = Some("p".into());
        assert_eq!(sasl_config(&c).unwrap().mechanism_name(), "SCRAM-SHA-512");
        c.sasl_mechanism = Some("OAUTHBEARER".into());
        assert!(sasl_config(&c).is_err());
        c.sasl_mechanism = Some("AWS_MSK_IAM".into());
        assert_eq!(sasl_config(&c).unwrap().mechanism_name(), "OAUTHBEARER");
        assert_eq!(
            host_of("b-1.kafka.us-east-1.amazonaws.com:9098"),
            "b-1.kafka.us-east-1.amazonaws.com"
        );
        assert_eq!(host_of("[::1]:9092"), "::1");
    }
}
