//! The signed `kafka-cluster:Connect` request in the two forms MSK brokers
//! take: the OAUTHBEARER token ([`token_for`]) as aws-msk-iam-sasl-signer
//! makes it (a SigV4 query-presigned
//! `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`,
//! `X-Amz-Expires=900`, with `User-Agent` appended after signing,
//! base64url-encoded without padding; it expires at `X-Amz-Date` + 900 s),
//! and the `AWS_MSK_IAM` JSON first message ([`json_payload`]), the same
//! parameters signed over the broker's host name.
//!
//! Signing uses the `aws-sigv4` crate (presigned query parameters at an
//! injectable time); this module only orders and encodes the resulting
//! parameters the way botocore does.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::super::{system_time_ms, OAuthToken};
use super::credentials::{cred_err, AwsCredentials};
use super::{SaslError, ACTION, JSON_VERSION, SIGNING_NAME, TOKEN_EXPIRY};

/// RFC 3986 percent-encoding with `-_.~` unreserved, as botocore and SigV4 use.
pub(super) fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The SigV4 presigned query parameters for `GET https://<host>/?Action=kafka-cluster%3AConnect`.
struct Presigned {
    /// In botocore's order: X-Amz-Algorithm, -Credential, -Date, -Expires,
    /// -SignedHeaders, [-Security-Token], -Signature. Values unencoded.
    params: Vec<(&'static str, String)>,
    /// The signing time truncated to seconds.
    signed_at: SystemTime,
}

fn presign(
    host: &str,
    region: &str,
    creds: &AwsCredentials,
    time: SystemTime,
) -> Result<Presigned, SaslError> {
    let serr = |e: &dyn fmt::Display| SaslError::Signing(e.to_string());
    // X-Amz-Date has four year digits: 1970..=9999 keeps all time arithmetic in range.
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= 253_402_300_799 => d.as_secs(),
        _ => {
            return Err(SaslError::InvalidConfig(
                "signing time outside 1970..=9999".into(),
            ))
        }
    };
    if creds.access_key_id.is_empty() || creds.secret_access_key.is_empty() {
        return Err(cred_err("AWS credentials can not be empty"));
    }
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(SaslError::InvalidConfig(format!(
            "invalid AWS region {region:?}"
        )));
    }
    let identity = aws_credential_types::Credentials::new(
        creds.access_key_id.clone(),
        creds.secret_access_key.clone(),
        creds.session_token.clone(),
        None,
        "sluice",
    )
    .into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(TOKEN_EXPIRY);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SIGNING_NAME)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| serr(&e))?
        .into();
    let url = format!("https://{host}/?Action={}", uri_encode(ACTION));
    let request = SignableRequest::new("GET", url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| serr(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| serr(&e))?.into_parts();
    let (_headers, signed) = instructions.into_parts();
    let get = |name: &str| {
        signed
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    };
    let mut out = Vec::with_capacity(7);
    for name in [
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
    ] {
        let v = get(name).ok_or_else(|| SaslError::Signing(format!("aws-sigv4 gave no {name}")))?;
        out.push((name, v));
    }
    if let Some(tok) = get("X-Amz-Security-Token") {
        out.push(("X-Amz-Security-Token", tok));
    }
    let sig = get("X-Amz-Signature")
        .ok_or_else(|| SaslError::Signing("aws-sigv4 gave no signature".into()))?;
    out.push(("X-Amz-Signature", sig));
    Ok(Presigned {
        params: out,
        signed_at: UNIX_EPOCH + Duration::from_secs(secs),
    })
}

/// The OAUTHBEARER token for `creds` at `time`, as aws-msk-iam-sasl-signer makes it.
pub fn token_for(
    region: &str,
    creds: &AwsCredentials,
    time: SystemTime,
    user_agent: &str,
) -> Result<OAuthToken, SaslError> {
    let host = format!("kafka.{region}.amazonaws.com");
    let p = presign(&host, region, creds, time)?;
    let mut url = format!("https://{host}/?Action={}", uri_encode(ACTION));
    for (k, v) in &p.params {
        url.push('&');
        url.push_str(k);
        url.push('=');
        url.push_str(&uri_encode(v));
    }
    url.push_str("&User-Agent=");
    url.push_str(&uri_encode(user_agent));
    Ok(OAuthToken {
        value: URL_SAFE_NO_PAD.encode(url),
        expires_at_ms: system_time_ms(p.signed_at + TOKEN_EXPIRY),
        principal: None,
        extensions: Vec::new(),
    })
}

/// The `AWS_MSK_IAM` first client message for `broker_host`.
pub fn json_payload(
    broker_host: &str,
    region: &str,
    creds: &AwsCredentials,
    time: SystemTime,
    user_agent: &str,
) -> Result<Vec<u8>, SaslError> {
    if broker_host.is_empty() || broker_host.contains(['/', '?', '#', '@', ' ']) {
        return Err(SaslError::InvalidConfig(format!(
            "invalid broker host {broker_host:?}"
        )));
    }
    let p = presign(broker_host, region, creds, time)?;
    let mut fields: Vec<(String, String)> = vec![
        ("version".into(), JSON_VERSION.into()),
        ("host".into(), broker_host.into()),
        ("user-agent".into(), user_agent.into()),
        ("action".into(), ACTION.into()),
    ];
    fields.extend(
        p.params
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
    );
    let mut out = String::from("{");
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::Value::from(k.as_str()).to_string());
        out.push(':');
        out.push_str(&serde_json::Value::from(v.as_str()).to_string());
    }
    out.push('}');
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::sasl::msk_iam::test_vectors::*;

    #[test]
    fn byte_equal_with_python_signer() {
        let creds = AwsCredentials::new(AKID, SECRET, None);
        let t = ok(token_for("us-east-1", &creds, py_time(), PY_USER_AGENT));
        assert_eq!(decode(&t.value), decode(PY_TOKEN));
        assert_eq!(t.value, PY_TOKEN);
        assert_eq!(t.expires_at_ms, PY_TOKEN_EXPIRY_MS);

        let creds = AwsCredentials::new(AKID, SECRET, Some(PY_SESSION_TOKEN.into()));
        let t = ok(token_for("us-east-1", &creds, py_time(), PY_USER_AGENT));
        assert_eq!(decode(&t.value), decode(PY_TOKEN_SESSION));
        assert_eq!(t.value, PY_TOKEN_SESSION);
        assert_eq!(t.expires_at_ms, PY_TOKEN_SESSION_EXPIRY_MS);
    }

    /// An independent SigV4 verifier following MSK-IAM.md's canonical request,
    /// so the aws-sigv4 output is checked against the spec, not only Python.
    fn verify_query_signature(host: &str, query: &str, secret: &str) -> bool {
        use hmac::{Hmac, KeyInit, Mac};
        use sha2::{Digest, Sha256};
        fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
                Ok(m) => m,
                Err(_) => return Vec::new(),
            };
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        let mut pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let sig = pairs
            .iter()
            .find(|(k, _)| *k == "X-Amz-Signature")
            .map(|(_, v)| v.to_string());
        let date = pairs
            .iter()
            .find(|(k, _)| *k == "X-Amz-Date")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let scope_enc = pairs
            .iter()
            .find(|(k, _)| *k == "X-Amz-Credential")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        pairs.retain(|(k, _)| *k != "X-Amz-Signature" && *k != "User-Agent");
        pairs.sort();
        let cq: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let empty_hash = hex(&Sha256::digest(b""));
        let creq = format!(
            "GET\n/\n{}\nhost:{host}\n\nhost\n{empty_hash}",
            cq.join("&")
        );
        let scope = scope_enc.replace("%2F", "/");
        let scope = scope
            .split_once('/')
            .map(|(_, s)| s)
            .unwrap_or_default()
            .to_string();
        let sts = format!(
            "AWS4-HMAC-SHA256\n{date}\n{scope}\n{}",
            hex(&Sha256::digest(creq.as_bytes()))
        );
        let parts: Vec<&str> = scope.split('/').collect();
        let mut k = mac(format!("AWS4{secret}").as_bytes(), parts[0].as_bytes());
        for p in &parts[1..] {
            k = mac(&k, p.as_bytes());
        }
        Some(hex(&mac(&k, sts.as_bytes()))) == sig
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn independent_sigv4_check() {
        for tok in [PY_TOKEN, PY_TOKEN_SESSION] {
            let url = decode(tok);
            let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
            assert!(
                verify_query_signature("kafka.us-east-1.amazonaws.com", query, SECRET),
                "{url}"
            );
            assert!(!verify_query_signature(
                "kafka.us-east-1.amazonaws.com",
                query,
                "wrong"
            ));
        }
    }

    #[test]
    fn json_payload_fields_and_signature() {
        let creds = AwsCredentials::new(AKID, SECRET, Some(PY_SESSION_TOKEN.into()));
        let host = "b-1.demo.abc123.c2.kafka.us-east-1.amazonaws.com";
        let payload = ok(json_payload(
            host,
            "us-east-1",
            &creds,
            py_time(),
            "sluice-test/1",
        ));
        let v: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
        let f = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(f("version"), "2020_10_22");
        assert_eq!(f("host"), host);
        assert_eq!(f("user-agent"), "sluice-test/1");
        assert_eq!(f("action"), "kafka-cluster:Connect");
        assert_eq!(f("x-amz-algorithm"), "AWS4-HMAC-SHA256");
        assert_eq!(
            f("x-amz-credential"),
            "AKIDEXAMPLE/20261125/us-east-1/kafka-cluster/aws4_request"
        );
        assert_eq!(f("x-amz-date"), "20261125T144447Z");
        assert_eq!(f("x-amz-signedheaders"), "host");
        assert_eq!(f("x-amz-expires"), "900");
        assert_eq!(f("x-amz-security-token"), PY_SESSION_TOKEN);
        // The signature covers the broker host.
        let query = format!(
            "Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={}&X-Amz-Date={}&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token={}&X-Amz-Signature={}",
            uri_encode(&f("x-amz-credential")),
            f("x-amz-date"),
            uri_encode(&f("x-amz-security-token")),
            f("x-amz-signature")
        );
        assert!(verify_query_signature(host, &query, SECRET));
        assert!(String::from_utf8_lossy(&payload).starts_with(r#"{"version":"2020_10_22","host":"#));
    }

    #[test]
    fn signing_inputs_are_checked() {
        assert_eq!(
            uri_encode("a/b+c=d~e_f-g.h i:"),
            "a%2Fb%2Bc%3Dd~e_f-g.h%20i%3A"
        );
        assert!(matches!(
            token_for(
                "us-east-1",
                &AwsCredentials::new("a", "b", None),
                UNIX_EPOCH + Duration::from_secs(1 << 40),
                "ua"
            ),
            Err(SaslError::InvalidConfig(_))
        ));
        assert!(matches!(
            token_for(
                "us-east-1",
                &AwsCredentials::new("", "x", None),
                py_time(),
                "ua"
            ),
            Err(SaslError::Credentials(_))
        ));
        assert!(token_for(
            "us east",
            &AwsCredentials::new("a", "b", None),
            py_time(),
            "ua"
        )
        .is_err());
    }
}
