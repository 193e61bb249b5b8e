//! The OAUTHBEARER (RFC 7628) client message, parsed strictly and without
//! I/O so it can be fuzzed on its own. This module owns the grammar only:
//! the GS2 header (`n,` or `y,` plus an optional `a=<authzid>`), the
//! `\x01`-separated `key=value` pairs, the mandatory `auth=Bearer <token>`
//! pair (RFC 6750 `b64token`) and any SASL extensions (Kafka's KIP-342 keys:
//! letters only; values printable, space, tab, CR, LF). What the token means
//! (for sluiced: an MSK IAM presigned URL) is [`super::msk_iam`]'s business.
//!
//! Wire shape: `n,[a=authzid],` `\x01` (`key=value` `\x01`)* `\x01`.

use super::{sanitize, AuthError};

const MECH: &str = "OAUTHBEARER";
/// Largest client message accepted (IAM tokens with session tokens are a
/// few KiB).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// A parsed OAUTHBEARER initial client response.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthBearerMessage {
    /// The GS2 authzid, if the client sent one (unescaped).
    pub authzid: Option<String>,
    /// The bearer token.
    pub token: String,
    /// SASL extensions other than `auth`, in the order sent.
    pub extensions: Vec<(String, String)>,
}

impl std::fmt::Debug for OAuthBearerMessage {
    // The token is a bearer credential: whoever holds it can sign in.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthBearerMessage")
            .field("authzid", &self.authzid)
            .field("token", &"<redacted>")
            .field("extensions", &self.extensions)
            .finish()
    }
}

fn bad(reason: impl Into<String>) -> AuthError {
    AuthError::malformed(MECH, reason)
}

/// Whether `msg` is the lone `\x01` a client sends to acknowledge a
/// server error message (RFC 7628 section 3.2.3).
pub fn is_error_acknowledgement(msg: &[u8]) -> bool {
    msg == b"\x01"
}

/// The server's error challenge (RFC 7628 section 3.2.2), e.g.
/// `{"status":"invalid_token"}`.
pub fn error_challenge(status: &str) -> Vec<u8> {
    serde_json::json!({ "status": status })
        .to_string()
        .into_bytes()
}

/// Parses the initial client response.
pub fn parse_client_response(msg: &[u8]) -> Result<OAuthBearerMessage, AuthError> {
    if msg.len() > MAX_MESSAGE_BYTES {
        return Err(bad("message too long"));
    }
    let text = std::str::from_utf8(msg).map_err(|_| bad("not UTF-8"))?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or_else(|| bad("no key/value section"))?;
    // gs2-header = ("n" / "y") "," [ "a=" saslname ] ","
    let (flag, tail) = gs2.split_once(',').ok_or_else(|| bad("bad GS2 header"))?;
    match flag {
        "n" | "y" => {}
        f if f.starts_with("p=") => {
            return Err(AuthError::Unsupported {
                mechanism: MECH,
                reason: "channel binding is not supported".into(),
            })
        }
        _ => return Err(bad("bad GS2 header")),
    }
    let authzid = match tail.strip_suffix(',') {
        Some("") => None,
        Some(a) => {
            let name = a.strip_prefix("a=").ok_or_else(|| bad("bad GS2 authzid"))?;
            Some(super::scram::unescape_username(name).ok_or_else(|| bad("bad GS2 authzid"))?)
        }
        None => return Err(bad("bad GS2 header")),
    };
    // rest = *(kvpair) kvsep, with every kvpair ending in kvsep.
    let pairs = rest
        .strip_suffix('\x01')
        .ok_or_else(|| bad("message does not end with \\x01"))?;
    let mut token = None;
    let mut extensions: Vec<(String, String)> = Vec::new();
    if !pairs.is_empty() {
        let body = pairs
            .strip_suffix('\x01')
            .ok_or_else(|| bad("key/value pairs must end with \\x01"))?;
        for kv in body.split('\x01') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| bad("key/value pair without `=`"))?;
            if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(bad(format!("bad key {:?}", sanitize(k))));
            }
            if !v
                .bytes()
                .all(|b| (0x21..=0x7e).contains(&b) || b" \t\r\n".contains(&b))
            {
                return Err(bad(format!("bad value for key {k:?}")));
            }
            if k == "auth" {
                if token.is_some() {
                    return Err(bad("duplicate auth"));
                }
                token = Some(parse_auth(v)?);
            } else {
                if extensions.iter().any(|(ek, _)| ek == k) {
                    return Err(bad(format!("duplicate extension {k:?}")));
                }
                extensions.push((k.to_owned(), v.to_owned()));
            }
        }
    }
    let token = token.ok_or_else(|| bad("no auth=Bearer <token> pair"))?;
    Ok(OAuthBearerMessage {
        authzid,
        token,
        extensions,
    })
}

/// `Bearer <b64token>` (RFC 6750 section 2.1); the scheme is case-insensitive.
fn parse_auth(v: &str) -> Result<String, AuthError> {
    let (scheme, token) = v
        .split_once(' ')
        .ok_or_else(|| bad("auth is not `Bearer <token>`"))?;
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Err(bad("auth scheme is not Bearer"));
    }
    let token = token.trim_start_matches(' ');
    let body = token.trim_end_matches('=');
    let ok = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !ok {
        return Err(bad(
            "the bearer token has characters outside RFC 6750 b64token",
        ));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kafka_and_sluice_client_messages() {
        let m = parse_client_response(b"n,,\x01auth=Bearer abc.DEF-_~+/==\x01\x01");
        assert_eq!(
            m,
            Ok(OAuthBearerMessage {
                authzid: None,
                token: "abc.DEF-_~+/==".into(),
                extensions: vec![],
            })
        );
        let m = parse_client_response(
            b"n,a=al=2Cice,\x01host=b1\x01auth=bearer t\x01traceId=x y\x01\x01",
        );
        assert_eq!(
            m,
            Ok(OAuthBearerMessage {
                authzid: Some("al,ice".into()),
                token: "t".into(),
                extensions: vec![
                    ("host".into(), "b1".into()),
                    ("traceId".into(), "x y".into())
                ],
            })
        );
        assert!(parse_client_response(b"y,,\x01auth=Bearer t\x01\x01").is_ok());
        let dbg = format!(
            "{:?}",
            parse_client_response(b"n,,\x01auth=Bearer secret\x01\x01")
        );
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    #[test]
    fn sluice_client_iam_message() {
        use sluice::net::sasl::msk_iam::{token_for, AwsCredentials};
        use std::time::{Duration, UNIX_EPOCH};
        let t = token_for(
            "us-east-1",
            &AwsCredentials::new("AKID", "SECRET", None),
            UNIX_EPOCH + Duration::from_secs(1_795_617_887),
            "ua",
        );
        let token = t.map(|t| t.value).unwrap_or_default();
        let msg = format!("n,,\x01auth=Bearer {token}\x01\x01");
        assert_eq!(
            parse_client_response(msg.as_bytes()).map(|m| m.token),
            Ok(token)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"\x01",
            b"n,,",
            b"n,,\x01",
            b"n,,\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01auth=Bearer t",
            b"x,,\x01auth=Bearer t\x01\x01",
            b"n,\x01auth=Bearer t\x01\x01",
            b"n,b=x,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"n,,\x01auth=Bearer t t\x01\x01",
            b"n,,\x01auth=Bearer t\x01auth=Bearer u\x01\x01",
            b"n,,\x01auth=Bearer t\x01k1=v\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=v\x01k=w\x01\x01",
            b"n,,\x01auth=Bearer t\x01novalue\x01\x01",
            b"n,,\x01auth=Bearer t\x01k=\x7f\x01\x01",
            b"n,,\x01auth=Bearer t\x01\x01\x01",
            b"n,,\x01\xff\x01\x01",
        ] {
            assert!(
                parse_client_response(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert!(matches!(
            parse_client_response(b"p=tls-unique,,\x01auth=Bearer t\x01\x01"),
            Err(AuthError::Unsupported { .. })
        ));
        assert!(parse_client_response(&vec![b'n'; MAX_MESSAGE_BYTES + 1]).is_err());
        assert!(is_error_acknowledgement(b"\x01"));
        assert_eq!(
            error_challenge("invalid_token"),
            br#"{"status":"invalid_token"}"#.to_vec()
        );
    }

    #[test]
    fn garbage_never_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let alphabet = b"n,a=\x01authBer t=y";
        for _ in 0..5000 {
            let n = rng.gen_range(0..40);
            let m: Vec<u8> = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            let _ = parse_client_response(&m);
        }
    }
}
