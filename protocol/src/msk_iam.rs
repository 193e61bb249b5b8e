//! AWS MSK IAM's signed `kafka-cluster:Connect` request: the part the
//! client's signer and the broker's verifier must agree on byte for byte.
//! Both MSK IAM forms (the OAUTHBEARER token, a query-presigned URL, and the
//! `AWS_MSK_IAM` JSON message) carry the query parameters of a SigV4
//! presigned `GET https://<host>/?Action=kafka-cluster%3AConnect`; this
//! module owns their names and fixed values, SigV4's URI encoding, the
//! canonical request (`GET`, path `/`, the query sorted by encoded key
//! without `X-Amz-Signature` and `User-Agent`, only `host` signed, the
//! SHA-256 of an empty payload), the string to sign, the signing key
//! derivation and the HMAC-SHA256 signature, the `X-Amz-Date` format, and
//! [`presign`], which produces the parameters in the order botocore (and so
//! aws-msk-iam-sasl-signer) writes them. Pure: the caller supplies the time
//! and the secrets, and checks its own policy (expiry, clock skew, region).

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::civil::{civil_from_days, days_from_civil};

/// SigV4 signing service name of MSK.
pub const SERVICE: &str = "kafka-cluster";
/// The action a sign-in signature carries (the `Action` parameter).
pub const CONNECT_ACTION: &str = "kafka-cluster:Connect";
/// The SigV4 algorithm MSK signers use.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The only signed header (`X-Amz-SignedHeaders`).
pub const SIGNED_HEADERS: &str = "host";
/// The last element of a SigV4 credential scope.
pub const SCOPE_TERMINATOR: &str = "aws4_request";
/// `X-Amz-Expires` of the official signers' tokens, in seconds, and the
/// longest validity MSK accepts.
pub const EXPIRES_SECS: u64 = 900;
/// `version` of the AWS_MSK_IAM JSON message and of the broker's answer.
pub const JSON_VERSION: &str = "2020_10_22";
/// The latest signing time `X-Amz-Date` can write (9999-12-31T23:59:59Z),
/// in seconds since the Unix epoch.
pub const MAX_SIGNING_SECS: u64 = 253_402_300_799;

/// Names of the presigned URL's query parameters.
pub mod param {
    pub const ACTION: &str = "Action";
    pub const ALGORITHM: &str = "X-Amz-Algorithm";
    pub const CREDENTIAL: &str = "X-Amz-Credential";
    pub const DATE: &str = "X-Amz-Date";
    pub const EXPIRES: &str = "X-Amz-Expires";
    pub const SIGNED_HEADERS: &str = "X-Amz-SignedHeaders";
    pub const SECURITY_TOKEN: &str = "X-Amz-Security-Token";
    pub const SIGNATURE: &str = "X-Amz-Signature";
    /// Appended after signing by every MSK signer, so not covered by the
    /// signature.
    pub const USER_AGENT: &str = "User-Agent";
}

/// The regional endpoint an OAUTHBEARER token's URL names.
pub fn regional_host(region: &str) -> String {
    format!("kafka.{region}.amazonaws.com")
}

/// SigV4's URI encoding (RFC 3986): everything but `A-Za-z0-9-_.~` as `%XX`
/// with upper-case hex digits.
pub fn uri_encode(s: &str) -> String {
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

/// `key=value` pairs, URI-encoded and joined with `&` in the given order
/// (how a presigned URL writes its query).
pub fn query_string<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let pairs: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k.as_ref()), uri_encode(v.as_ref())))
        .collect();
    pairs.join("&")
}

/// The canonical query string of the unencoded `params`: encoded, sorted by
/// key then value, without `X-Amz-Signature` and `User-Agent`.
pub fn canonical_query<K: AsRef<str>, V: AsRef<str>>(params: &[(K, V)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| *k != param::SIGNATURE && *k != param::USER_AGENT)
        .map(|(k, v)| (uri_encode(k), uri_encode(v)))
        .collect();
    encoded.sort();
    let pairs: Vec<String> = encoded.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join("&")
}

/// The canonical request of a presigned `GET /` to `host` with
/// `canonical_query`, only `host` signed and an empty payload.
pub fn canonical_request(host: &str, canonical_query: &str) -> String {
    format!(
        "GET\n/\n{canonical_query}\nhost:{host}\n\n{SIGNED_HEADERS}\n{}",
        hex(&Sha256::digest(b""))
    )
}

/// `<date>/<region>/kafka-cluster/aws4_request`, the credential scope after
/// the access key id.
pub fn credential_scope(scope_date: &str, region: &str) -> String {
    format!("{scope_date}/{region}/{SERVICE}/{SCOPE_TERMINATOR}")
}

/// The SigV4 string to sign.
pub fn string_to_sign(amz_date: &str, credential_scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{credential_scope}\n{}",
        hex(&Sha256::digest(canonical_request.as_bytes()))
    )
}

/// The SigV4 signing key for `secret` on `scope_date` (yyyymmdd) in `region`.
pub fn signing_key(secret: &str, scope_date: &str, region: &str) -> Vec<u8> {
    let mut key = hmac_sha256(format!("AWS4{secret}").as_bytes(), scope_date.as_bytes());
    for part in [region, SERVICE, SCOPE_TERMINATOR] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    key
}

/// The signature (lower-case hex) of a presigned `GET https://<host>/` whose
/// query carries the unencoded `params` (which may include
/// `X-Amz-Signature` and `User-Agent`: they are left out), signed at
/// `amz_date` with the scope of `scope_date` and `region`.
pub fn signature<K: AsRef<str>, V: AsRef<str>>(
    secret: &str,
    host: &str,
    params: &[(K, V)],
    amz_date: &str,
    scope_date: &str,
    region: &str,
) -> String {
    let request = canonical_request(host, &canonical_query(params));
    let to_sign = string_to_sign(amz_date, &credential_scope(scope_date, region), &request);
    hex(&hmac_sha256(
        &signing_key(secret, scope_date, region),
        to_sign.as_bytes(),
    ))
}

/// The key a request is signed with.
#[derive(Clone, Copy)]
pub struct AccessKey<'a> {
    pub id: &'a str,
    pub secret: &'a str,
    /// For temporary credentials, sent (and signed) as `X-Amz-Security-Token`.
    pub session_token: Option<&'a str>,
}

/// The signed query parameters (unencoded) of
/// `GET https://<host>/?Action=kafka-cluster%3AConnect` presigned with `key`
/// for `region` at `epoch_secs`, valid for [`EXPIRES_SECS`], in botocore's
/// order: `Action`, `X-Amz-Algorithm`, `-Credential`, `-Date`, `-Expires`,
/// `-SignedHeaders`, [`-Security-Token`], `-Signature`. `None` when the
/// time is after [`MAX_SIGNING_SECS`].
pub fn presign(
    host: &str,
    region: &str,
    key: AccessKey<'_>,
    epoch_secs: u64,
) -> Option<Vec<(&'static str, String)>> {
    let amz_date = format_amz_date(epoch_secs)?;
    let scope_date = amz_date.get(..8)?.to_owned();
    let mut params = vec![
        (param::ACTION, CONNECT_ACTION.to_owned()),
        (param::ALGORITHM, ALGORITHM.to_owned()),
        (
            param::CREDENTIAL,
            format!("{}/{}", key.id, credential_scope(&scope_date, region)),
        ),
        (param::DATE, amz_date.clone()),
        (param::EXPIRES, EXPIRES_SECS.to_string()),
        (param::SIGNED_HEADERS, SIGNED_HEADERS.to_owned()),
    ];
    if let Some(token) = key.session_token {
        params.push((param::SECURITY_TOKEN, token.to_owned()));
    }
    let signature = signature(key.secret, host, &params, &amz_date, &scope_date, region);
    params.push((param::SIGNATURE, signature));
    Some(params)
}

/// `epoch_secs` as `yyyymmddThhmmssZ`; `None` after [`MAX_SIGNING_SECS`].
pub fn format_amz_date(epoch_secs: u64) -> Option<String> {
    if epoch_secs > MAX_SIGNING_SECS {
        return None;
    }
    let secs = i64::try_from(epoch_secs).ok()?;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    Some(format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60
    ))
}

/// `yyyymmddThhmmssZ` -> epoch milliseconds; `None` unless it is a valid
/// date and time in 1970..=9999.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if y < 1970 || !(1..=12).contains(&m) || hh > 23 || mm > 59 || ss > 59 {
        return None;
    }
    if d < 1 || d > month_days[usize::try_from(m - 1).ok()?] {
        return None;
    }
    let days = days_from_civil(y, m, d);
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1000)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length; an empty result never verifies.
        Err(_) => Vec::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    // The fake credentials, time and results of MSK-IAM.md's example, made by
    // aws-msk-iam-sasl-signer-python 1.0.2 (botocore 1.44.8).
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SESSION_TOKEN: &str = "FQoGZXIvYXdzEXAMPLE/tok+en==";
    /// 2026-11-25T14:44:47Z.
    const EPOCH_SECS: u64 = 1_795_617_887;
    const HOST: &str = "kafka.us-east-1.amazonaws.com";
    /// The Python signer's URLs, without the unsigned `&User-Agent=...` tail.
    const PY_URL: &str = "https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261125%2Fus-east-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20261125T144447Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature=41ea68d0967ca1036448737d7e72d280e28b6a625f1f6ed4a9e31988639f0504";
    const PY_URL_SESSION: &str = "https://kafka.us-east-1.amazonaws.com/?Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261125%2Fus-east-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20261125T144447Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE%2Ftok%2Ben%3D%3D&X-Amz-Signature=a157b66fbd4b22673e69615ef954f3ab6d7ff698ecfdfe810e4270618cddfee5";

    fn key(session_token: Option<&str>) -> AccessKey<'_> {
        AccessKey {
            id: AKID,
            secret: SECRET,
            session_token,
        }
    }

    #[test]
    fn presign_matches_the_python_signer() {
        for (token, url) in [(None, PY_URL), (Some(SESSION_TOKEN), PY_URL_SESSION)] {
            let params = presign(HOST, "us-east-1", key(token), EPOCH_SECS).unwrap_or_default();
            assert_eq!(
                format!(
                    "https://{}/?{}",
                    regional_host("us-east-1"),
                    query_string(&params)
                ),
                url
            );
        }
    }

    #[test]
    fn the_documented_signature_step_by_step() {
        let params = [
            (param::ACTION, CONNECT_ACTION),
            (param::ALGORITHM, ALGORITHM),
            (
                param::CREDENTIAL,
                "AKIDEXAMPLE/20261125/us-east-1/kafka-cluster/aws4_request",
            ),
            (param::DATE, "20261125T144447Z"),
            (param::EXPIRES, "900"),
            (param::SIGNED_HEADERS, "host"),
            // Left out of the canonical query.
            (param::SIGNATURE, "0000"),
            (param::USER_AGENT, "aws-msk-iam-sasl-signer-python/1.0.2"),
        ];
        let query = canonical_query(&params);
        assert_eq!(
            query,
            "Action=kafka-cluster%3AConnect&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20261125%2Fus-east-1%2Fkafka-cluster%2Faws4_request&X-Amz-Date=20261125T144447Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host"
        );
        let request = canonical_request(HOST, &query);
        assert_eq!(
            request,
            format!("GET\n/\n{query}\nhost:{HOST}\n\nhost\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        let scope = credential_scope("20261125", "us-east-1");
        assert_eq!(scope, "20261125/us-east-1/kafka-cluster/aws4_request");
        let to_sign = string_to_sign("20261125T144447Z", &scope, &request);
        assert!(to_sign.starts_with(
            "AWS4-HMAC-SHA256\n20261125T144447Z\n20261125/us-east-1/kafka-cluster/aws4_request\n"
        ));
        assert_eq!(signing_key(SECRET, "20261125", "us-east-1").len(), 32);
        let expected = "41ea68d0967ca1036448737d7e72d280e28b6a625f1f6ed4a9e31988639f0504";
        assert_eq!(
            signature(
                SECRET,
                HOST,
                &params,
                "20261125T144447Z",
                "20261125",
                "us-east-1"
            ),
            expected
        );
        assert_ne!(
            signature(
                "wrong",
                HOST,
                &params,
                "20261125T144447Z",
                "20261125",
                "us-east-1"
            ),
            expected
        );
        // The host is signed.
        assert_ne!(
            signature(
                SECRET,
                "kafka.us-east-1.amazonaws.co",
                &params,
                "20261125T144447Z",
                "20261125",
                "us-east-1"
            ),
            expected
        );
    }

    #[test]
    fn the_python_session_token_vector_verifies() {
        // Read back from the URL as a verifier does: decoded pairs in the
        // URL's order, the session token among the signed parameters.
        let params = [
            (param::ACTION, CONNECT_ACTION),
            (param::ALGORITHM, ALGORITHM),
            (
                param::CREDENTIAL,
                "AKIDEXAMPLE/20261125/us-east-1/kafka-cluster/aws4_request",
            ),
            (param::DATE, "20261125T144447Z"),
            (param::EXPIRES, "900"),
            (param::SIGNED_HEADERS, "host"),
            (param::SECURITY_TOKEN, SESSION_TOKEN),
        ];
        let sig = |secret| {
            signature(
                secret,
                HOST,
                &params,
                "20261125T144447Z",
                "20261125",
                "us-east-1",
            )
        };
        assert_eq!(
            sig(SECRET),
            "a157b66fbd4b22673e69615ef954f3ab6d7ff698ecfdfe810e4270618cddfee5"
        );
        assert_ne!(
            sig("wrong"),
            "a157b66fbd4b22673e69615ef954f3ab6d7ff698ecfdfe810e4270618cddfee5"
        );
    }

    #[test]
    fn encoding() {
        assert_eq!(
            uri_encode("a/b+c=d~e_f-g.h i:"),
            "a%2Fb%2Bc%3Dd~e_f-g.h%20i%3A"
        );
        assert_eq!(uri_encode("é"), "%C3%A9");
        assert_eq!(query_string(&[("b", "1 2"), ("a", "/")]), "b=1%202&a=%2F");
        // Sorted by encoded key, then value.
        assert_eq!(
            canonical_query(&[("b", "2"), ("a", "z"), ("a", "y"), ("A", "x")]),
            "A=x&a=y&a=z&b=2"
        );
        assert_eq!(regional_host("eu-west-1"), "kafka.eu-west-1.amazonaws.com");
    }

    #[test]
    fn date_formatting() {
        assert_eq!(format_amz_date(0).as_deref(), Some("19700101T000000Z"));
        assert_eq!(
            format_amz_date(EPOCH_SECS).as_deref(),
            Some("20261125T144447Z")
        );
        assert_eq!(
            format_amz_date(MAX_SIGNING_SECS).as_deref(),
            Some("99991231T235959Z")
        );
        assert_eq!(format_amz_date(MAX_SIGNING_SECS + 1), None);
        assert_eq!(presign(HOST, "us-east-1", key(None), 1 << 40), None);
        for secs in [0, 951_782_400, EPOCH_SECS, MAX_SIGNING_SECS] {
            let formatted = format_amz_date(secs).unwrap_or_default();
            assert_eq!(
                parse_amz_date(&formatted),
                i64::try_from(secs).ok().map(|s| s * 1000),
                "{formatted}"
            );
        }
    }

    #[test]
    fn date_parsing() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20261125T144447Z"), Some(1_795_617_887_000));
        assert!(parse_amz_date("20240229T000000Z").is_some());
        assert_eq!(parse_amz_date("20230229T000000Z"), None);
        assert_eq!(parse_amz_date("20261125T244447Z"), None);
        assert_eq!(parse_amz_date("2026112ST144447Z"), None);
        assert_eq!(parse_amz_date("+0261125T144447Z"), None);
        assert_eq!(parse_amz_date("20261125T144447"), None);
        assert!(parse_amz_date("99991231T235959Z").is_some());
    }
}
