//! When a signed MSK IAM token is reused and when it is re-signed: a token
//! is kept until 80% of its lifetime has passed, or until a minute before
//! the temporary credentials it was signed with expire, whichever is first.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sluice_protocol::clock::system_time_ms;

use super::super::OAuthToken;

/// Fraction of a token's lifetime after which it is replaced.
const REFRESH_FRACTION: f64 = 0.8;
/// How long before temporary credentials expire a token signed with them is
/// replaced.
const CREDENTIALS_MARGIN: Duration = Duration::from_secs(60);

struct Cached {
    token: OAuthToken,
    refresh_at: SystemTime,
}

/// The last signed token and when to replace it.
#[derive(Default)]
pub(super) struct TokenCache {
    slot: Mutex<Option<Cached>>,
}

impl TokenCache {
    /// The cached token, if `now` is before its refresh time.
    pub(super) fn fresh(&self, now: SystemTime) -> Option<OAuthToken> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .filter(|c| now < c.refresh_at)
            .map(|c| c.token.clone())
    }

    /// Keeps `token`, signed at `now` with credentials that expire at
    /// `credentials_expiry` (if known).
    pub(super) fn store(
        &self,
        token: &OAuthToken,
        now: SystemTime,
        credentials_expiry: Option<SystemTime>,
    ) {
        let lifetime = Duration::from_millis(
            u64::try_from(token.expires_at_ms.saturating_sub(system_time_ms(now))).unwrap_or(0),
        );
        let mut refresh_at = now
            .checked_add(lifetime.mul_f64(REFRESH_FRACTION))
            .unwrap_or(now);
        if let Some(exp) = credentials_expiry {
            refresh_at = refresh_at.min(exp.checked_sub(CREDENTIALS_MARGIN).unwrap_or(exp));
        }
        *self
            .slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Cached {
            token: token.clone(),
            refresh_at,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    use sluice_protocol::msk_iam::uri_encode;

    use crate::net::sasl::msk_iam::test_vectors::{decode, ok, AKID, PY_EPOCH_SECS, SECRET};
    use crate::net::sasl::msk_iam::{AwsCredentials, MskIamTokenProvider, DEFAULT_USER_AGENT};
    use crate::net::sasl::TokenProvider;

    use super::*;

    #[tokio::test]
    async fn provider_caches_and_refreshes_at_80_percent() {
        let t0 = UNIX_EPOCH + Duration::from_secs(PY_EPOCH_SECS);
        let offset = Arc::new(Mutex::new(0u64));
        let o2 = offset.clone();
        let p = MskIamTokenProvider::new()
            .with_region("eu-west-1")
            .with_credentials(AwsCredentials::new(AKID, SECRET, None))
            .with_clock_fn(move || t0 + Duration::from_secs(o2.lock().map(|g| *g).unwrap_or(0)));
        let first = ok(p.token().await);
        assert_eq!(first.expires_at_ms, (PY_EPOCH_SECS as i64 + 900) * 1000);
        let set = |s: u64| {
            if let Ok(mut g) = offset.lock() {
                *g = s;
            }
        };
        set(719);
        assert_eq!(ok(p.token().await), first, "still within 80% of 900 s");
        set(720);
        let second = ok(p.token().await);
        assert_ne!(second, first);
        assert_eq!(
            second.expires_at_ms,
            (PY_EPOCH_SECS as i64 + 720 + 900) * 1000
        );
        assert!(decode(&second.value).starts_with("https://kafka.eu-west-1.amazonaws.com/?Action="));
        assert!(decode(&second.value)
            .contains(&format!("User-Agent={}", uri_encode(DEFAULT_USER_AGENT))));
    }

    #[tokio::test]
    async fn temporary_credentials_bound_refresh() {
        // Credentials expiring 5 minutes after signing: refresh a minute before.
        let t0 = UNIX_EPOCH + Duration::from_secs(PY_EPOCH_SECS);
        let mut creds = AwsCredentials::new(AKID, SECRET, Some("tok".into()));
        creds.expires_at = Some(t0 + Duration::from_secs(300));
        let offset = Arc::new(Mutex::new(0u64));
        let o2 = offset.clone();
        let p = MskIamTokenProvider::new()
            .with_region("us-east-1")
            .with_credentials(creds)
            .with_clock_fn(move || t0 + Duration::from_secs(o2.lock().map(|g| *g).unwrap_or(0)));
        let a = ok(p.token().await);
        if let Ok(mut g) = offset.lock() {
            *g = 239;
        }
        assert_eq!(ok(p.token().await), a);
        if let Ok(mut g) = offset.lock() {
            *g = 240;
        }
        assert_ne!(ok(p.token().await), a);
    }
}
