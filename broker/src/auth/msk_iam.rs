//! AWS MSK IAM sign-in, verified by the broker itself. This module owns the
//! IAM credential store (access key id -> secret, principal ARN, optional
//! session token), the [`IamVerifier`] that recomputes SigV4 signatures with
//! those secrets, and the two wire forms MSK clients use:
//!
//! - OAUTHBEARER tokens as aws-msk-iam-sasl-signer (Python, JS, Go, Java)
//!   and sluice-client make them: base64url (no padding) of a query-presigned
//!   `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-...`
//!   with a `User-Agent` parameter appended after signing.
//! - The `AWS_MSK_IAM` mechanism of the Java aws-msk-iam-auth library: a JSON
//!   object carrying the same SigV4 parameters, signed over the broker's own
//!   host name, answered with `{"version":"2020_10_22","request-id":...}`.
//!
//! Both are checked the same way: algorithm `AWS4-HMAC-SHA256`, credential
//! scope `<AKID>/<date>/<region>/kafka-cluster/aws4_request` with the
//! broker's region and X-Amz-Date's date, action `kafka-cluster:Connect`,
//! `X-Amz-Expires` <= 900 s, the current time inside
//! `[X-Amz-Date - skew, X-Amz-Date + expires]`, only `host` signed, the
//! session token (when the stored credential has one) and finally the
//! signature over the canonical request (`GET`, `/`, the sorted query without
//! `X-Amz-Signature` and `User-Agent`, `host:<host>`, and the SHA-256 of an
//! empty payload, which is what aws-sigv4/botocore use for presigned GETs).
//! The constants and that canonicalisation are
//! [`sluice_protocol::msk_iam`]'s, shared with sluice-client's signer; this
//! module owns the checks around them. Secrets and derived keys never appear
//! in errors or `Debug` output.

use std::collections::HashMap;
use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use sluice_protocol::msk_iam::{
    param, parse_amz_date, regional_host, signature, ALGORITHM, CONNECT_ACTION, EXPIRES_SECS,
    JSON_VERSION, SCOPE_TERMINATOR, SERVICE, SIGNED_HEADERS,
};

use super::{ct_eq, sanitize, AuthError};

/// Default allowed clock difference between client and broker.
pub const DEFAULT_CLOCK_SKEW_MS: i64 = 5 * 60 * 1000;
/// Largest token / JSON message accepted (session tokens make real ones
/// 1-3 KiB); checked before decoding.
pub const MAX_INPUT_BYTES: usize = 16 * 1024;

const OAUTH: &str = "OAUTHBEARER";
const JSON_MECH: &str = "AWS_MSK_IAM";

/// base64url that tolerates a client that kept the `=` padding.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What the broker knows about one access key.
#[derive(Clone, PartialEq, Eq)]
pub struct IamCredential {
    pub secret_access_key: String,
    /// The principal requests are authorized as, e.g.
    /// `arn:aws:iam::123456789012:user/alice` or an assumed-role ARN.
    pub principal_arn: String,
    /// For temporary credentials: the token the client must present.
    pub session_token: Option<String>,
}

impl fmt::Debug for IamCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IamCredential")
            .field("secret_access_key", &"<redacted>")
            .field("principal_arn", &self.principal_arn)
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Access key id -> credential.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct IamCredentialStore {
    keys: HashMap<String, IamCredential>,
}

impl fmt::Debug for IamCredentialStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.keys.iter()).finish()
    }
}

impl IamCredentialStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; an empty id or secret, or an id already present, is refused.
    pub fn insert(
        &mut self,
        access_key_id: impl Into<String>,
        credential: IamCredential,
    ) -> Result<(), String> {
        let id = access_key_id.into();
        if id.is_empty() || id.contains(['/', ' ']) {
            return Err(format!("invalid access key id {:?}", sanitize(&id)));
        }
        if credential.secret_access_key.is_empty() {
            return Err(format!("access key {id}: empty secret access key"));
        }
        if credential.principal_arn.is_empty() {
            return Err(format!("access key {id}: empty principal ARN"));
        }
        if self.keys.contains_key(&id) {
            return Err(format!("access key {id} is listed twice"));
        }
        self.keys.insert(id, credential);
        Ok(())
    }

    /// The credential of an access key id.
    pub fn get(&self, access_key_id: &str) -> Option<&IamCredential> {
        self.keys.get(access_key_id)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Who signed in, and until when the signature vouches for them (KIP-368
/// session lifetime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamIdentity {
    pub access_key_id: String,
    pub principal_arn: String,
    /// X-Amz-Date + X-Amz-Expires, epoch milliseconds.
    pub expires_at_ms: i64,
}

/// Verifies MSK IAM sign-ins against the broker's region and credentials.
#[derive(Debug, Clone)]
pub struct IamVerifier {
    region: String,
    clock_skew_ms: i64,
    /// Host names an AWS_MSK_IAM signature may name (lower case); empty:
    /// any syntactically valid host.
    json_hosts: Vec<String>,
    store: IamCredentialStore,
}

impl IamVerifier {
    /// A verifier for `region` with the default clock skew (5 minutes).
    pub fn new(region: impl Into<String>, store: IamCredentialStore) -> Self {
        IamVerifier {
            region: region.into(),
            clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
            json_hosts: Vec::new(),
            store,
        }
    }

    /// How far X-Amz-Date may be ahead of the broker's clock.
    pub fn with_clock_skew_ms(mut self, ms: i64) -> Self {
        self.clock_skew_ms = ms.max(0);
        self
    }

    /// The host names (the broker's advertised ones) an AWS_MSK_IAM
    /// signature must name; an empty list accepts any valid host.
    pub fn with_json_hosts(mut self, hosts: impl IntoIterator<Item = String>) -> Self {
        self.json_hosts = hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect();
        self
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn clock_skew_ms(&self) -> i64 {
        self.clock_skew_ms
    }

    pub fn store(&self) -> &IamCredentialStore {
        &self.store
    }

    /// Verifies an OAUTHBEARER token (the value after `auth=Bearer `).
    pub fn verify_token(&self, token: &str, now_ms: i64) -> Result<IamIdentity, AuthError> {
        let bad = |r: &str| AuthError::malformed(OAUTH, format!("MSK IAM token: {r}"));
        if token.is_empty() {
            return Err(bad("empty"));
        }
        if token.len() > MAX_INPUT_BYTES {
            return Err(bad("too long"));
        }
        let raw = URL_SAFE_LENIENT
            .decode(token.trim())
            .map_err(|_| bad("not base64url"))?;
        let url = String::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| bad("not an https:// URL"))?;
        let (host, query) = rest
            .split_once("/?")
            .ok_or_else(|| bad("no `/?` query part"))?;
        if query.contains('#') {
            return Err(bad("URL has a fragment"));
        }
        let expected_host = regional_host(&self.region);
        if !host.eq_ignore_ascii_case(&expected_host) {
            return Err(AuthError::WrongHost(sanitize(host)));
        }
        let mut params = Vec::new();
        for pair in query.split('&') {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| bad("query parameter without `=`"))?;
            let k = percent_decode(k).ok_or_else(|| bad("bad percent-encoding"))?;
            let v = percent_decode(v).ok_or_else(|| bad("bad percent-encoding"))?;
            if params.iter().any(|(pk, _): &(String, String)| *pk == k) {
                return Err(bad("duplicate query parameter"));
            }
            params.push((k, v));
        }
        // Sign over the host exactly as the client wrote it (SigV4 does not
        // lower-case header values).
        self.verify(OAUTH, host, params, now_ms)
    }

    /// Verifies an AWS_MSK_IAM first client message; on success returns the
    /// identity and the JSON answer to send back.
    pub fn verify_json(
        &self,
        msg: &[u8],
        now_ms: i64,
    ) -> Result<(IamIdentity, Vec<u8>), AuthError> {
        let bad = |r: &str| AuthError::malformed(JSON_MECH, r.to_owned());
        if msg.is_empty() {
            return Err(bad("empty message"));
        }
        if msg.len() > MAX_INPUT_BYTES {
            return Err(bad("message too long"));
        }
        let v: serde_json::Value =
            serde_json::from_slice(msg).map_err(|_| bad("not a JSON object"))?;
        let obj = v.as_object().ok_or_else(|| bad("not a JSON object"))?;
        let field = |k: &str| -> Result<Option<&str>, AuthError> {
            match obj.get(k) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.as_str())),
                Some(_) => Err(bad(&format!("field {k:?} is not a string"))),
            }
        };
        let required = |k: &str| field(k)?.ok_or_else(|| bad(&format!("missing field {k:?}")));
        let version = required("version")?;
        if version != JSON_VERSION {
            return Err(AuthError::Unsupported {
                mechanism: JSON_MECH,
                reason: format!("version {:?} (expected {JSON_VERSION})", sanitize(version)),
            });
        }
        let host = required("host")?;
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        if !host_ok {
            return Err(AuthError::WrongHost(sanitize(host)));
        }
        if !self.json_hosts.is_empty()
            && !self.json_hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
        {
            return Err(AuthError::WrongHost(sanitize(host)));
        }
        // The JSON's lower-case keys stand for these signed query parameters.
        let mut params = vec![(param::ACTION.to_owned(), required("action")?.to_owned())];
        for (json_key, name) in [
            ("x-amz-algorithm", param::ALGORITHM),
            ("x-amz-credential", param::CREDENTIAL),
            ("x-amz-date", param::DATE),
            ("x-amz-expires", param::EXPIRES),
            ("x-amz-signedheaders", param::SIGNED_HEADERS),
            ("x-amz-signature", param::SIGNATURE),
        ] {
            params.push((name.to_owned(), required(json_key)?.to_owned()));
        }
        if let Some(t) = field("x-amz-security-token")? {
            params.push((param::SECURITY_TOKEN.to_owned(), t.to_owned()));
        }
        let id = self.verify(JSON_MECH, host, params, now_ms)?;
        Ok((id, json_response(&uuid::Uuid::new_v4().to_string())))
    }

    /// The checks shared by both forms. `params` are the decoded query
    /// parameters (including X-Amz-Signature; User-Agent is dropped here).
    fn verify(
        &self,
        mech: &'static str,
        host: &str,
        mut params: Vec<(String, String)>,
        now_ms: i64,
    ) -> Result<IamIdentity, AuthError> {
        let bad = |r: &str| AuthError::malformed(mech, r.to_owned());
        // Appended after signing by every MSK signer: not covered.
        params.retain(|(k, _)| k != param::USER_AGENT);
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
                .ok_or_else(|| bad(&format!("missing {name}")))
        };
        let algorithm = get(param::ALGORITHM)?;
        if algorithm != ALGORITHM {
            return Err(bad(&format!(
                "unsupported signing algorithm {:?}",
                sanitize(algorithm)
            )));
        }
        let credential = get(param::CREDENTIAL)?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [akid, scope_date, region, service, terminator] = scope[..] else {
            return Err(bad(
                "X-Amz-Credential is not <key>/<date>/<region>/<service>/aws4_request",
            ));
        };
        if akid.is_empty() || terminator != SCOPE_TERMINATOR {
            return Err(bad(
                "X-Amz-Credential is not <key>/<date>/<region>/<service>/aws4_request",
            ));
        }
        if service != SERVICE {
            return Err(AuthError::WrongService(sanitize(service)));
        }
        if region != self.region {
            return Err(AuthError::WrongRegion {
                expected: self.region.clone(),
                got: sanitize(region),
            });
        }
        let amz_date = get(param::DATE)?;
        let signed_at_ms =
            parse_amz_date(amz_date).ok_or_else(|| bad("X-Amz-Date is not yyyymmddThhmmssZ"))?;
        if amz_date.get(..8) != Some(scope_date) {
            return Err(bad("the credential scope date differs from X-Amz-Date"));
        }
        let action = get(param::ACTION)?;
        if action != CONNECT_ACTION {
            return Err(AuthError::BadAction(sanitize(action)));
        }
        let expires = get(param::EXPIRES)?;
        if expires.is_empty() || expires.len() > 10 || !expires.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(bad("X-Amz-Expires is not a number of seconds"));
        }
        let expires: u64 = expires
            .parse()
            .map_err(|_| bad("X-Amz-Expires is not a number of seconds"))?;
        if expires > EXPIRES_SECS {
            return Err(AuthError::ExpiresTooLong(expires));
        }
        // We cannot see any header but the host: a signature over others
        // cannot be checked, so it is refused.
        if get(param::SIGNED_HEADERS)? != SIGNED_HEADERS {
            return Err(bad("X-Amz-SignedHeaders must be `host`"));
        }
        let presented = get(param::SIGNATURE)?.to_ascii_lowercase();
        if presented.len() != 64 || !presented.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("X-Amz-Signature is not 64 hex digits"));
        }
        // Both bounds in i64 ms; the date parser caps the year at 9999.
        let expires_at_ms = signed_at_ms + (expires as i64) * 1000;
        if now_ms < signed_at_ms.saturating_sub(self.clock_skew_ms) {
            return Err(AuthError::NotYetValid);
        }
        if now_ms > expires_at_ms {
            return Err(AuthError::Expired);
        }
        let cred = self.store.get(akid).ok_or(AuthError::UnknownAccessKey)?;
        let presented_token = params
            .iter()
            .find(|(k, _)| k == param::SECURITY_TOKEN)
            .map(|(_, v)| v.as_bytes());
        if let Some(expected) = &cred.session_token {
            match presented_token {
                Some(t) if ct_eq(t, expected.as_bytes()) => {}
                _ => return Err(AuthError::SessionTokenMismatch),
            }
        }
        // Signers differ on whether the host is lower-cased before signing
        // (SigV4 itself keeps header values as they are): accept either.
        let lower = host.to_ascii_lowercase();
        let hosts: &[&str] = if lower == host {
            &[host]
        } else {
            &[host, &lower]
        };
        let mut matched = false;
        for h in hosts {
            let expected = signature(
                &cred.secret_access_key,
                h,
                &params,
                amz_date,
                scope_date,
                region,
            );
            matched |= ct_eq(expected.as_bytes(), presented.as_bytes());
        }
        if !matched {
            return Err(AuthError::SignatureMismatch);
        }
        Ok(IamIdentity {
            access_key_id: akid.to_owned(),
            principal_arn: cred.principal_arn.clone(),
            expires_at_ms,
        })
    }
}

/// The AWS_MSK_IAM server answer.
pub fn json_response(request_id: &str) -> Vec<u8> {
    serde_json::json!({"version": JSON_VERSION, "request-id": request_id})
        .to_string()
        .into_bytes()
}

/// Strict percent-decoding: `%` must be followed by two hex digits and the
/// result must be UTF-8. `+` stays `+` (signers encode spaces as `%20`).
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let h = bytes.get(i + 1..i + 3)?;
            let h = std::str::from_utf8(h).ok()?;
            out.push(u8::from_str_radix(h, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use sluice::net::sasl::msk_iam::{json_payload, token_for, AwsCredentials};
    use sluice_protocol::msk_iam::uri_encode;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const ARN: &str = "arn:aws:iam::123456789012:user/alice";
    const SESSION_AKID: &str = "ASIAEXAMPLE";
    const SESSION_TOKEN: &str = "FQoGZXIvYXdzEXAMPLE/tok+en==";
    /// 2026-11-25T14:44:47Z, the time of the test vectors below.
    const T0_SECS: u64 = 1_795_617_887;
    const T0_MS: i64 = 1_795_617_887_000;
    /// The token aws-msk-iam-sasl-signer-python 1.0.2 made for AKID/SECRET
    /// at T0 in us-east-1 (from sluice-client's test vectors).
    const PY_TOKEN: &str = "aHR0cHM6Ly9rYWZrYS51cy1lYXN0LTEuYW1hem9uYXdzLmNvbS8_QWN0aW9uPWthZmthLWNsdXN0ZXIlM0FDb25uZWN0JlgtQW16LUFsZ29yaXRobT1BV1M0LUhNQUMtU0hBMjU2JlgtQW16LUNyZWRlbnRpYWw9QUtJREVYQU1QTEUlMkYyMDI2MTEyNSUyRnVzLWVhc3QtMSUyRmthZmthLWNsdXN0ZXIlMkZhd3M0X3JlcXVlc3QmWC1BbXotRGF0ZT0yMDI2MTEyNVQxNDQ0NDdaJlgtQW16LUV4cGlyZXM9OTAwJlgtQW16LVNpZ25lZEhlYWRlcnM9aG9zdCZYLUFtei1TaWduYXR1cmU9NDFlYTY4ZDA5NjdjYTEwMzY0NDg3MzdkN2U3MmQyODBlMjhiNmE2MjVmMWY2ZWQ0YTllMzE5ODg2MzlmMDUwNCZVc2VyLUFnZW50PWF3cy1tc2staWFtLXNhc2wtc2lnbmVyLXB5dGhvbiUyRjEuMC4y";

    fn store() -> IamCredentialStore {
        let mut s = IamCredentialStore::new();
        let r1 = s.insert(
            AKID,
            IamCredential {
                secret_access_key: SECRET.into(),
                principal_arn: ARN.into(),
                session_token: None,
            },
        );
        let r2 = s.insert(
            SESSION_AKID,
            IamCredential {
                secret_access_key: SECRET.into(),
                principal_arn: "arn:aws:sts::123456789012:assumed-role/r/s".into(),
                session_token: Some(SESSION_TOKEN.into()),
            },
        );
        assert!(r1.is_ok() && r2.is_ok());
        s
    }

    fn verifier() -> IamVerifier {
        IamVerifier::new("us-east-1", store())
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0_SECS)
    }

    fn client_token(
        region: &str,
        akid: &str,
        secret: &str,
        session: Option<&str>,
        at: SystemTime,
    ) -> String {
        let creds = AwsCredentials::new(akid, secret, session.map(str::to_owned));
        match token_for(region, &creds, at, "test-agent/1.0") {
            Ok(t) => t.value,
            Err(e) => panic!("{e}"),
        }
    }

    fn decode(t: &str) -> String {
        String::from_utf8(URL_SAFE_NO_PAD.decode(t).unwrap_or_default()).unwrap_or_default()
    }

    fn encode(url: &str) -> String {
        URL_SAFE_NO_PAD.encode(url)
    }

    /// Rebuilds a token's URL with `edit` applied to its decoded parameters
    /// and the signature recomputed with `secret`, so the test exercises the
    /// rule under test rather than the signature check.
    fn resigned(token: &str, secret: &str, edit: impl Fn(&mut Vec<(String, String)>)) -> String {
        let url = decode(token);
        let (base, query) = url.split_once('?').unwrap_or_default();
        let host = base.trim_start_matches("https://").trim_end_matches('/');
        let mut params: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| {
                (
                    percent_decode(k).unwrap_or_default(),
                    percent_decode(v).unwrap_or_default(),
                )
            })
            .collect();
        edit(&mut params);
        let get = |n: &str| {
            params
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let date = get("X-Amz-Date");
        let cred = get("X-Amz-Credential");
        let parts: Vec<&str> = cred.split('/').collect();
        let sig = signature(
            secret,
            host,
            &params,
            &date,
            parts.get(1).copied().unwrap_or(""),
            parts.get(2).copied().unwrap_or(""),
        );
        for p in params.iter_mut() {
            if p.0 == "X-Amz-Signature" {
                p.1 = sig.clone();
            }
        }
        let q: Vec<String> = params
            .iter()
            .map(|(k, v)| format!("{}={}", uri_encode(k), uri_encode(v)))
            .collect();
        encode(&format!("{base}?{}", q.join("&")))
    }

    fn set(params: &mut [(String, String)], key: &str, value: &str) {
        for p in params.iter_mut() {
            if p.0 == key {
                p.1 = value.to_owned();
            }
        }
    }

    #[test]
    fn accepts_python_signer_vector() {
        let id = verifier().verify_token(PY_TOKEN, T0_MS + 1000);
        assert_eq!(
            id,
            Ok(IamIdentity {
                access_key_id: AKID.into(),
                principal_arn: ARN.into(),
                expires_at_ms: T0_MS + 900_000,
            })
        );
    }

    #[test]
    fn accepts_sluice_client_tokens() {
        let v = verifier();
        let tok = client_token("us-east-1", AKID, SECRET, None, t0());
        assert_eq!(
            v.verify_token(&tok, T0_MS).map(|i| i.principal_arn),
            Ok(ARN.to_string())
        );
        // Whole validity window, and the skew before it.
        assert!(v.verify_token(&tok, T0_MS + 900_000).is_ok());
        assert!(v.verify_token(&tok, T0_MS - DEFAULT_CLOCK_SKEW_MS).is_ok());
        // Padding kept by a client is tolerated.
        let padded = format!("{tok}{}", "=".repeat((4 - tok.len() % 4) % 4));
        assert!(v.verify_token(&padded, T0_MS).is_ok());
        // Temporary credentials with their session token.
        let tok = client_token("us-east-1", SESSION_AKID, SECRET, Some(SESSION_TOKEN), t0());
        let id = v.verify_token(&tok, T0_MS);
        assert_eq!(id.map(|i| i.access_key_id), Ok(SESSION_AKID.to_string()));
        // Other regions.
        let v2 = IamVerifier::new("eu-west-1", store());
        let tok = client_token("eu-west-1", AKID, SECRET, None, t0());
        assert!(v2.verify_token(&tok, T0_MS).is_ok());
    }

    #[test]
    fn rejects_bad_tokens() {
        let v = verifier();
        let tok = client_token("us-east-1", AKID, SECRET, None, t0());
        let err = |t: &str, now: i64| v.verify_token(t, now).err();
        assert_eq!(
            err(&client_token("us-east-1", AKID, "wrong", None, t0()), T0_MS),
            Some(AuthError::SignatureMismatch)
        );
        assert_eq!(
            err(
                &client_token("us-east-1", "AKIDUNKNOWN", SECRET, None, t0()),
                T0_MS
            ),
            Some(AuthError::UnknownAccessKey)
        );
        assert_eq!(err(&tok, T0_MS + 900_001), Some(AuthError::Expired));
        assert_eq!(
            err(&tok, T0_MS - DEFAULT_CLOCK_SKEW_MS - 1),
            Some(AuthError::NotYetValid)
        );
        // Signed for another region: the host is checked first.
        let other = client_token("us-west-2", AKID, SECRET, None, t0());
        assert!(matches!(err(&other, T0_MS), Some(AuthError::WrongHost(_))));
        // ...and with our host but another scope region.
        let t = resigned(&tok, SECRET, |p| {
            set(
                p,
                "X-Amz-Credential",
                "AKIDEXAMPLE/20261125/us-west-2/kafka-cluster/aws4_request",
            )
        });
        assert!(matches!(
            err(&t, T0_MS),
            Some(AuthError::WrongRegion { .. })
        ));
        let t = resigned(&tok, SECRET, |p| {
            set(
                p,
                "X-Amz-Credential",
                "AKIDEXAMPLE/20261125/us-east-1/kafka/aws4_request",
            )
        });
        assert!(matches!(err(&t, T0_MS), Some(AuthError::WrongService(_))));
        let t = resigned(&tok, SECRET, |p| set(p, "Action", "kafka-cluster:ReadData"));
        assert!(matches!(err(&t, T0_MS), Some(AuthError::BadAction(_))));
        let t = resigned(&tok, SECRET, |p| set(p, "X-Amz-Expires", "3600"));
        assert_eq!(err(&t, T0_MS), Some(AuthError::ExpiresTooLong(3600)));
        let t = resigned(&tok, SECRET, |p| {
            set(
                p,
                "X-Amz-Credential",
                "AKIDEXAMPLE/20261124/us-east-1/kafka-cluster/aws4_request",
            )
        });
        assert!(matches!(err(&t, T0_MS), Some(AuthError::Malformed { .. })));
        let t = resigned(&tok, SECRET, |p| {
            set(p, "X-Amz-SignedHeaders", "host;x-amz-date")
        });
        assert!(matches!(err(&t, T0_MS), Some(AuthError::Malformed { .. })));
        let t = resigned(&tok, SECRET, |p| {
            set(p, "X-Amz-Algorithm", "AWS4-HMAC-SHA512")
        });
        assert!(matches!(err(&t, T0_MS), Some(AuthError::Malformed { .. })));
        // A correctly re-signed token with an edited, still-valid field passes
        // (the helper itself is sound).
        let t = resigned(&tok, SECRET, |p| set(p, "X-Amz-Expires", "600"));
        assert_eq!(
            v.verify_token(&t, T0_MS).map(|i| i.expires_at_ms),
            Ok(T0_MS + 600_000)
        );

        // Tampering without re-signing: signature mismatch.
        let url = decode(&tok);
        for (from, to) in [
            ("X-Amz-Expires=900", "X-Amz-Expires=899"),
            ("X-Amz-Date=20261125T144447Z", "X-Amz-Date=20261125T144448Z"),
            (
                "Action=kafka-cluster%3AConnect",
                "Action=kafka-cluster%3AConnect&Extra=1",
            ),
        ] {
            assert!(url.contains(from), "{url}");
            let t = encode(&url.replacen(from, to, 1));
            assert_eq!(
                err(&t, T0_MS + 1000),
                Some(AuthError::SignatureMismatch),
                "{to}"
            );
        }
        // User-Agent is not signed: changing or dropping it is fine.
        let ua = url.rfind("&User-Agent=").unwrap_or(url.len());
        assert!(v
            .verify_token(
                &encode(&format!("{}&User-Agent=other%2F2", &url[..ua])),
                T0_MS
            )
            .is_ok());
        assert!(v.verify_token(&encode(&url[..ua]), T0_MS).is_ok());
        // Duplicated parameter.
        let t = encode(&format!("{url}&X-Amz-Expires=900"));
        assert!(matches!(err(&t, T0_MS), Some(AuthError::Malformed { .. })));
    }

    #[test]
    fn session_tokens() {
        let v = verifier();
        // Stored credential has a token: the URL must carry the same one.
        let no_token = client_token("us-east-1", SESSION_AKID, SECRET, None, t0());
        assert_eq!(
            v.verify_token(&no_token, T0_MS).err(),
            Some(AuthError::SessionTokenMismatch)
        );
        let wrong = client_token("us-east-1", SESSION_AKID, SECRET, Some("other"), t0());
        assert_eq!(
            v.verify_token(&wrong, T0_MS).err(),
            Some(AuthError::SessionTokenMismatch)
        );
        // Long-term key with no stored token: a presented token is signed
        // over and accepted (the store is the authority on the key).
        let extra = client_token("us-east-1", AKID, SECRET, Some("whatever"), t0());
        assert!(v.verify_token(&extra, T0_MS).is_ok());
    }

    #[test]
    fn json_mechanism_both_ways() {
        let host = "b-1.sluice.example.com";
        let creds = AwsCredentials::new(AKID, SECRET, None);
        let payload = match json_payload(host, "us-east-1", &creds, t0(), "java/1") {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        let v = verifier();
        match v.verify_json(&payload, T0_MS) {
            Ok((id, resp)) => {
                assert_eq!(id.principal_arn, ARN);
                assert_eq!(id.expires_at_ms, T0_MS + 900_000);
                let r: serde_json::Value = serde_json::from_slice(&resp).unwrap_or_default();
                assert_eq!(r["version"], "2020_10_22");
                assert!(r["request-id"].as_str().is_some_and(|s| !s.is_empty()));
            }
            Err(e) => panic!("{e}"),
        }
        // Host allow-list.
        let v2 = verifier().with_json_hosts(["B-1.SLUICE.example.com".to_string()]);
        assert!(v2.verify_json(&payload, T0_MS).is_ok());
        let v3 = verifier().with_json_hosts(["other".to_string()]);
        assert!(matches!(
            v3.verify_json(&payload, T0_MS),
            Err(AuthError::WrongHost(_))
        ));
        // A host written in mixed case verifies whichever way the signer
        // treated its case.
        let mixed = json_payload("B-1.Sluice.Example.com", "us-east-1", &creds, t0(), "j")
            .unwrap_or_default();
        assert!(v.verify_json(&mixed, T0_MS).is_ok());
        let mut j: serde_json::Value = serde_json::from_slice(&mixed).unwrap_or_default();
        let params: Vec<(String, String)> = [
            ("Action", "action"),
            ("X-Amz-Algorithm", "x-amz-algorithm"),
            ("X-Amz-Credential", "x-amz-credential"),
            ("X-Amz-Date", "x-amz-date"),
            ("X-Amz-Expires", "x-amz-expires"),
            ("X-Amz-SignedHeaders", "x-amz-signedheaders"),
        ]
        .iter()
        .map(|(p, k)| {
            (
                p.to_string(),
                j[*k].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
        j["x-amz-signature"] = signature(
            SECRET,
            "b-1.sluice.example.com",
            &params,
            "20261125T144447Z",
            "20261125",
            "us-east-1",
        )
        .into();
        assert!(v.verify_json(j.to_string().as_bytes(), T0_MS).is_ok());
        j["x-amz-signature"] = signature(
            SECRET,
            "b-1.sluice.example.org",
            &params,
            "20261125T144447Z",
            "20261125",
            "us-east-1",
        )
        .into();
        assert_eq!(
            v.verify_json(j.to_string().as_bytes(), T0_MS).err(),
            Some(AuthError::SignatureMismatch)
        );
        // With a session token.
        let creds = AwsCredentials::new(SESSION_AKID, SECRET, Some(SESSION_TOKEN.into()));
        let p2 = json_payload(host, "us-east-1", &creds, t0(), "java/1").unwrap_or_default();
        assert!(v.verify_json(&p2, T0_MS).is_ok());

        let edit = |k: &str, val: serde_json::Value| {
            let mut j: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            j[k] = val;
            j.to_string().into_bytes()
        };
        let e = |m: Vec<u8>| v.verify_json(&m, T0_MS).err();
        // Signature covers the host, the date and the action.
        assert_eq!(
            e(edit("host", "b-2.sluice.example.com".into())),
            Some(AuthError::SignatureMismatch)
        );
        assert_eq!(
            e(edit("x-amz-date", "20261125T144448Z".into())),
            Some(AuthError::SignatureMismatch)
        );
        assert!(matches!(
            e(edit("action", "kafka-cluster:WriteData".into())),
            Some(AuthError::BadAction(_))
        ));
        assert_eq!(
            e(edit("x-amz-expires", "3600".into())),
            Some(AuthError::ExpiresTooLong(3600))
        );
        assert!(matches!(
            e(edit("version", "2021_01_01".into())),
            Some(AuthError::Unsupported { .. })
        ));
        assert!(matches!(
            e(edit("host", "".into())),
            Some(AuthError::WrongHost(_))
        ));
        assert!(matches!(
            e(edit("host", "a/b".into())),
            Some(AuthError::WrongHost(_))
        ));
        assert!(matches!(
            e(edit("x-amz-date", 5.into())),
            Some(AuthError::Malformed { .. })
        ));
        // user-agent is not signed.
        assert!(e(edit("user-agent", "changed".into())).is_none());
        // Missing fields.
        for k in [
            "version",
            "host",
            "action",
            "x-amz-algorithm",
            "x-amz-credential",
            "x-amz-date",
            "x-amz-expires",
            "x-amz-signedheaders",
            "x-amz-signature",
        ] {
            let mut j: serde_json::Value = serde_json::from_slice(&payload).unwrap_or_default();
            if let Some(o) = j.as_object_mut() {
                o.remove(k);
            }
            assert!(
                v.verify_json(j.to_string().as_bytes(), T0_MS).is_err(),
                "{k}"
            );
        }
        // Wrong secret, expired.
        let bad = json_payload(
            host,
            "us-east-1",
            &AwsCredentials::new(AKID, "nope", None),
            t0(),
            "j",
        )
        .unwrap_or_default();
        assert_eq!(e(bad), Some(AuthError::SignatureMismatch));
        assert_eq!(
            v.verify_json(&payload, T0_MS + 901_000).err(),
            Some(AuthError::Expired)
        );
    }

    #[test]
    fn garbage_is_rejected_without_panic() {
        let v = verifier();
        let long = "A".repeat(MAX_INPUT_BYTES + 1);
        for t in [
            "",
            "!!!",
            "aGVsbG8",
            &long,
            &encode("https://kafka.us-east-1.amazonaws.com/"),
            &encode("https://kafka.us-east-1.amazonaws.com/?"),
            &encode("https://kafka.us-east-1.amazonaws.com/?a"),
            &encode("https://kafka.us-east-1.amazonaws.com/?a=%zz"),
            &encode("https://kafka.us-east-1.amazonaws.com/?a=%e2%28"),
            &encode("http://kafka.us-east-1.amazonaws.com/?Action=x"),
            &encode("https://kafka.us-east-1.amazonaws.com/?Action=x#f"),
            &URL_SAFE_NO_PAD.encode([0xff, 0xfe]),
        ] {
            assert!(v.verify_token(t, T0_MS).is_err(), "{t:?}");
        }
        let url = decode(&client_token("us-east-1", AKID, SECRET, None, t0()));
        for (from, to) in [
            ("X-Amz-Date=20261125T144447Z", "X-Amz-Date=20261325T144447Z"),
            ("X-Amz-Date=20261125T144447Z", "X-Amz-Date=99999999T999999Z"),
            ("X-Amz-Expires=900", "X-Amz-Expires=99999999999999999999"),
            ("X-Amz-Expires=900", "X-Amz-Expires=-1"),
            ("X-Amz-Expires=900", "X-Amz-Expires="),
            ("aws4_request", "aws4_request%2Fextra"),
        ] {
            assert!(
                v.verify_token(&encode(&url.replacen(from, to, 1)), T0_MS)
                    .is_err(),
                "{to}"
            );
        }
        // Every truncation of a good token's signed part fails cleanly (a cut
        // inside the unsigned User-Agent would still verify).
        let tok = client_token("us-east-1", AKID, SECRET, None, t0());
        for i in 0..tok.len() * 3 / 4 {
            if url.get(..i).is_some_and(|u| u.contains("&User-Agent=")) {
                break;
            }
            assert!(v.verify_token(&tok[..i], T0_MS).is_err(), "{i}");
        }
        for i in 0..url.find("&User-Agent").unwrap_or(0) {
            assert!(v.verify_token(&encode(&url[..i]), T0_MS).is_err(), "{i}");
        }
        for m in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"\xff",
            b"{\"version\":1}",
            long.as_bytes(),
        ] {
            assert!(v.verify_json(m, T0_MS).is_err());
        }
        // Random bytes.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        for _ in 0..2000 {
            let n = rng.gen_range(0..300);
            let bytes: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
            assert!(v
                .verify_token(&URL_SAFE_NO_PAD.encode(&bytes), T0_MS)
                .is_err());
            assert!(v.verify_json(&bytes, T0_MS).is_err());
        }
    }

    #[test]
    fn errors_and_debug_hold_no_secrets() {
        let v = verifier();
        let dbg = format!("{v:?}");
        assert!(
            !dbg.contains(SECRET) && !dbg.contains(SESSION_TOKEN),
            "{dbg}"
        );
        let tok = client_token("us-east-1", AKID, "wrong", None, t0());
        let msg = v
            .verify_token(&tok, T0_MS)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(!msg.contains(SECRET));
        let mut s = IamCredentialStore::new();
        let c = IamCredential {
            secret_access_key: "s".into(),
            principal_arn: "arn:x".into(),
            session_token: None,
        };
        assert!(s.insert("", c.clone()).is_err());
        assert!(s.insert("A", c.clone()).is_ok());
        assert!(s.insert("A", c.clone()).is_err());
        assert!(s
            .insert(
                "B",
                IamCredential {
                    secret_access_key: String::new(),
                    ..c
                }
            )
            .is_err());
    }
}
