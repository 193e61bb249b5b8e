//! The two HTTP credential sources: the ECS/EKS container endpoint
//! (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` / `_FULL_URI`, restricted to
//! loopback and the ECS/EKS addresses, with its optional authorization
//! token) and EC2 instance metadata (IMDSv2, falling back to IMDSv1), and
//! the JSON credential document both return, with its RFC 3339 expiry.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::credentials::{cred_err, AwsCredentials, Env};
use super::http::{http_call, split_host_port};
use super::profile_file::read_file;
use super::SaslError;

/// Parses the JSON credential document both container and IMDS endpoints return.
fn parse_credential_json(body: &[u8], source: &str) -> Result<AwsCredentials, SaslError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| cred_err(format!("{source}: response is not JSON: {e}")))?;
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
    if let Some(code) = field("Code").filter(|c| c != "Success") {
        return Err(cred_err(format!(
            "{source}: {code}: {}",
            field("Message").unwrap_or_default()
        )));
    }
    let ak = field("AccessKeyId").ok_or_else(|| cred_err(format!("{source}: no AccessKeyId")))?;
    let sk = field("SecretAccessKey")
        .ok_or_else(|| cred_err(format!("{source}: no SecretAccessKey")))?;
    let mut c = AwsCredentials::new(ak, sk, field("Token"));
    c.expires_at = field("Expiration").and_then(|e| parse_rfc3339(&e));
    Ok(c)
}

/// ECS task role / EKS pod identity credentials.
pub(super) async fn container_credentials(env: &Env) -> Result<AwsCredentials, SaslError> {
    let url = if let Some(rel) = env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        format!("http://169.254.170.2{rel}")
    } else if let Some(full) = env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let authority = full
            .strip_prefix("http://")
            .ok_or_else(|| {
                cred_err("AWS_CONTAINER_CREDENTIALS_FULL_URI: only http:// is supported yet")
            })?
            .split('/')
            .next()
            .unwrap_or_default();
        let (host, _) = split_host_port(authority).map_err(cred_err)?;
        let allowed = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => {
                ip.is_loopback()
                    || ["169.254.170.2", "169.254.170.23", "fd00:ec2::23"].contains(&host.as_str())
            }
            Err(_) => host == "localhost",
        };
        if !allowed {
            return Err(cred_err(format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI host {host} is not loopback or an ECS/EKS endpoint"
            )));
        }
        full
    } else {
        return Err(cred_err(
            "neither AWS_CONTAINER_CREDENTIALS_RELATIVE_URI nor _FULL_URI is set",
        ));
    };
    let mut headers = Vec::new();
    let token = match env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Some(f) => Some(
            read_file(PathBuf::from(&f))
                .await
                .map_err(|e| {
                    cred_err(format!(
                        "reading AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {f}: {e}"
                    ))
                })?
                .trim()
                .to_owned(),
        ),
        None => env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    };
    if let Some(t) = token {
        headers.push(("Authorization", t));
    }
    let (status, body) = http_call("GET", &url, &headers)
        .await
        .map_err(|e| cred_err(format!("container endpoint: {e}")))?;
    if status != 200 {
        return Err(cred_err(format!(
            "container endpoint answered HTTP {status}"
        )));
    }
    parse_credential_json(&body, "container endpoint")
}

/// EC2 instance role credentials through IMDSv2 (falling back to IMDSv1 when
/// the token request is refused).
pub(super) async fn imds_credentials(env: &Env) -> Result<AwsCredentials, SaslError> {
    let base = env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| "http://169.254.169.254".into());
    let base = base.trim_end_matches('/');
    let e = |m: String| cred_err(format!("IMDS: {m}"));
    let (status, body) = http_call(
        "PUT",
        &format!("{base}/latest/api/token"),
        &[("X-aws-ec2-metadata-token-ttl-seconds", "21600".into())],
    )
    .await
    .map_err(e)?;
    let mut headers = Vec::new();
    if status == 200 {
        headers.push((
            "X-aws-ec2-metadata-token",
            String::from_utf8_lossy(&body).trim().to_owned(),
        ));
    }
    let path = format!("{base}/latest/meta-data/iam/security-credentials/");
    let (status, body) = http_call("GET", &path, &headers).await.map_err(e)?;
    if status != 200 {
        return Err(cred_err(format!("IMDS: no instance role (HTTP {status})")));
    }
    let listing = String::from_utf8_lossy(&body);
    let role = listing
        .lines()
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.contains('/'));
    let role = role.ok_or_else(|| cred_err("IMDS: no instance role"))?;
    let (status, body) = http_call("GET", &format!("{path}{role}"), &headers)
        .await
        .map_err(e)?;
    if status != 200 {
        return Err(cred_err(format!(
            "IMDS: role credentials answered HTTP {status}"
        )));
    }
    parse_credential_json(&body, "IMDS")
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|+00:00)` (UTC only).
fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = s.strip_suffix('Z').or_else(|| s.strip_suffix("+00:00"))?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.split('.').next()?;
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    if !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh > 23
        || mm > 59
        || ss > 60
    {
        return None;
    }
    let days = sluice_protocol::civil::days_from_civil(y, m, day);
    let secs = u64::try_from(days * 86_400 + hh * 3600 + mm * 60 + ss).ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::net::sasl::msk_iam::chain::resolve_credentials;
    use crate::net::sasl::msk_iam::credentials::CredentialSource;
    use crate::net::sasl::msk_iam::test_vectors::{ok, PY_EPOCH_SECS};

    /// Serves canned HTTP responses on 127.0.0.1, recording the requests.
    async fn fake_endpoint(
        responses: Vec<(&'static str, String)>,
    ) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        };
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let handle = tokio::spawn(async move {
            let mut seen = Vec::new();
            for (status, body) in responses {
                let Ok((mut s, _)) = listener.accept().await else {
                    break;
                };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap_or(0);
                seen.push(String::from_utf8_lossy(&buf[..n]).to_string());
                let resp = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
            seen
        });
        (addr, handle)
    }

    const CRED_JSON: &str = r#"{"Code":"Success","AccessKeyId":"ASIAX","SecretAccessKey":"SKX","Token":"TOKX","Expiration":"2026-11-25T15:44:47Z"}"#;

    #[tokio::test]
    async fn container_endpoint() {
        let (addr, server) = fake_endpoint(vec![("200 OK", CRED_JSON.into())]).await;
        let url = format!("http://{addr}/v1/credentials");
        let env = Env::from_pairs([
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", url.as_str()),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "Bearer abc"),
            ("HOME", "/nonexistent"),
        ]);
        let c = ok(resolve_credentials(&CredentialSource::DefaultChain, &env).await);
        assert_eq!(c.access_key_id, "ASIAX");
        assert_eq!(c.session_token.as_deref(), Some("TOKX"));
        assert_eq!(
            c.expires_at,
            Some(UNIX_EPOCH + Duration::from_secs(PY_EPOCH_SECS + 3600))
        );
        let seen = server.await.unwrap_or_default();
        assert!(
            seen[0].starts_with("GET /v1/credentials HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[0].contains("Authorization: Bearer abc\r\n"));

        let env = Env::from_pairs([(
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            "http://192.0.2.1/creds",
        )]);
        let err = resolve_credentials(&CredentialSource::Container, &env)
            .await
            .err();
        assert!(matches!(err, Some(SaslError::Credentials(ref m)) if m.contains("not loopback")));
    }

    #[tokio::test]
    async fn imds_v2() {
        let (addr, server) = fake_endpoint(vec![
            ("200 OK", "imds-token".into()),
            ("200 OK", "my-role\n".into()),
            ("200 OK", CRED_JSON.into()),
        ])
        .await;
        let endpoint = format!("http://{addr}");
        let env = Env::from_pairs([
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint.as_str()),
            ("HOME", "/nonexistent"),
        ]);
        let c = ok(resolve_credentials(&CredentialSource::DefaultChain, &env).await);
        assert_eq!(c.secret_access_key, "SKX");
        let seen = server.await.unwrap_or_default();
        assert!(seen[0].starts_with("PUT /latest/api/token HTTP/1.1\r\n"));
        assert!(seen[0].contains("X-aws-ec2-metadata-token-ttl-seconds: 21600\r\n"));
        assert!(seen[1].starts_with("GET /latest/meta-data/iam/security-credentials/ HTTP/1.1\r\n"));
        assert!(seen[2]
            .starts_with("GET /latest/meta-data/iam/security-credentials/my-role HTTP/1.1\r\n"));
        assert!(seen[2].contains("X-aws-ec2-metadata-token: imds-token\r\n"));
    }

    #[test]
    fn expiry_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_rfc3339("2026-11-25T14:44:47.123+00:00"),
            Some(UNIX_EPOCH + Duration::from_secs(PY_EPOCH_SECS))
        );
        assert_eq!(parse_rfc3339("garbage"), None);
        assert_eq!(parse_rfc3339("99999999999999-01-01T00:00:00Z"), None);
    }
}
