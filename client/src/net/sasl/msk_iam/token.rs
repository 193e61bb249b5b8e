//! The signed `kafka-cluster:Connect` request in the two forms MSK brokers
//! take: the OAUTHBEARER token ([`token_for`]) as aws-msk-iam-sasl-signer
//! makes it (a SigV4 query-presigned
//! `GET https://kafka.<region>.amazonaws.com/?Action=kafka-cluster%3AConnect`,
//! `X-Amz-Expires=900`, with `User-Agent` appended after signing,
//! base64url-encoded without padding; it expires at `X-Amz-Date` + 900 s),
//! and the `AWS_MSK_IAM` JSON first message ([`json_payload`]), the same
//! parameters signed over the broker's host name.
//!
//! The parameters and their signature come from
//! [`sluice_protocol::msk_iam::presign`], the SigV4 code the broker's
//! verifier uses too; this module checks the inputs, and encodes the result
//! as a token or a JSON object.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sluice_protocol::clock::system_time_ms;
use sluice_protocol::msk_iam::{self, param, AccessKey};

use super::super::OAuthToken;
use super::credentials::{cred_err, AwsCredentials};
use super::{SaslError, ACTION, JSON_VERSION, TOKEN_EXPIRY};

/// The SigV4 presigned query parameters for `GET https://<host>/?Action=kafka-cluster%3AConnect`.
struct Presigned {
    /// In botocore's order: Action, X-Amz-Algorithm, -Credential, -Date,
    /// -Expires, -SignedHeaders, [-Security-Token], -Signature. Values
    /// unencoded.
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
    let out_of_range = || SaslError::InvalidConfig("signing time outside 1970..=9999".into());
    // X-Amz-Date has four year digits: 1970..=9999 keeps all time arithmetic in range.
    let secs = match time.duration_since(UNIX_EPOCH) {
        Ok(d) if d.as_secs() <= msk_iam::MAX_SIGNING_SECS => d.as_secs(),
        _ => return Err(out_of_range()),
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
    let key = AccessKey {
        id: &creds.access_key_id,
        secret: &creds.secret_access_key,
        session_token: creds.session_token.as_deref(),
    };
    let params = msk_iam::presign(host, region, key, secs).ok_or_else(out_of_range)?;
    Ok(Presigned {
        params,
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
    let host = msk_iam::regional_host(region);
    let p = presign(&host, region, creds, time)?;
    let url = format!(
        "https://{host}/?{}&{}={}",
        msk_iam::query_string(&p.params),
        param::USER_AGENT,
        msk_iam::uri_encode(user_agent)
    );
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
    // The JSON's keys are the lower-cased query parameter names.
    fields.extend(
        p.params
            .iter()
            .filter(|(k, _)| *k != param::ACTION)
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
        let signed = [
            (param::ACTION, f("action")),
            (param::ALGORITHM, f("x-amz-algorithm")),
            (param::CREDENTIAL, f("x-amz-credential")),
            (param::DATE, f("x-amz-date")),
            (param::EXPIRES, f("x-amz-expires")),
            (param::SIGNED_HEADERS, f("x-amz-signedheaders")),
            (param::SECURITY_TOKEN, f("x-amz-security-token")),
        ];
        let signature = |host| {
            msk_iam::signature(
                SECRET,
                host,
                &signed,
                "20261125T144447Z",
                "20261125",
                "us-east-1",
            )
        };
        assert_eq!(f("x-amz-signature"), signature(host));
        assert_ne!(
            f("x-amz-signature"),
            signature("kafka.us-east-1.amazonaws.com")
        );
        assert!(String::from_utf8_lossy(&payload).starts_with(r#"{"version":"2020_10_22","host":"#));
    }

    #[test]
    fn signing_inputs_are_checked() {
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
