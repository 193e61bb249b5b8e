//! Keeps the credentials a source returned and decides when to ask again,
//! as the AWS SDKs' identity caches do (aws-config's providers cache
//! nothing themselves): temporary credentials are refreshed five minutes
//! before they expire, credentials without an expiry every fifteen minutes
//! (a rotated key or profile is picked up); one refresh runs at a time and
//! the others wait for its result; and when a refresh fails while the held
//! credentials are still valid, those keep being used, so a brief STS or
//! metadata outage does not fail connections.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::credentials::AwsCredentials;
use super::SaslError;

/// How long before temporary credentials expire they are refreshed.
pub(super) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How long credentials without an expiry are kept.
pub(super) const STATIC_LIFETIME: Duration = Duration::from_secs(15 * 60);

struct Held {
    creds: AwsCredentials,
    refresh_at: SystemTime,
}

/// The credentials last fetched, and a lock that makes refreshes single-file.
#[derive(Default)]
pub(super) struct CredentialsCache {
    slot: Mutex<Option<Held>>,
    refreshing: tokio::sync::Mutex<()>,
}

impl CredentialsCache {
    fn held<T>(&self, f: impl FnOnce(&Held) -> Option<T>) -> Option<T> {
        self.slot
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .and_then(f)
    }

    /// The held credentials if they are not yet due for a refresh at `now`.
    fn fresh(&self, now: SystemTime) -> Option<AwsCredentials> {
        self.held(|h| (now < h.refresh_at).then(|| h.creds.clone()))
    }

    /// The held credentials if they still work at `now`.
    fn valid(&self, now: SystemTime) -> Option<AwsCredentials> {
        self.held(|h| {
            h.creds
                .expires_at
                .is_none_or(|e| now < e)
                .then(|| h.creds.clone())
        })
    }

    /// Credentials for `now`: the held ones while fresh, else what `fetch`
    /// returns (one fetch at a time), else, if that fails, the held ones
    /// while still valid.
    pub(super) async fn get<F, Fut>(
        &self,
        now: SystemTime,
        fetch: F,
    ) -> Result<AwsCredentials, SaslError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AwsCredentials, SaslError>>,
    {
        if let Some(c) = self.fresh(now) {
            return Ok(c);
        }
        let _single = self.refreshing.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(c) = self.fresh(now) {
            return Ok(c);
        }
        match fetch().await {
            Ok(creds) => {
                let refresh_at = refresh_time(&creds, now);
                *self
                    .slot
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Held {
                    creds: creds.clone(),
                    refresh_at,
                });
                Ok(creds)
            }
            Err(e) => match self.valid(now) {
                Some(old) => {
                    tracing::warn!(error = %e, "refreshing AWS credentials failed; the current ones are still valid and stay in use");
                    Ok(old)
                }
                None => Err(e),
            },
        }
    }
}

/// When credentials fetched at `now` are next refreshed.
fn refresh_time(creds: &AwsCredentials, now: SystemTime) -> SystemTime {
    match creds.expires_at {
        None => now + STATIC_LIFETIME,
        Some(expiry) => match expiry.checked_sub(REFRESH_BEFORE_EXPIRY) {
            Some(t) if t > now => t,
            // Shorter-lived than the margin: refresh half way to expiry.
            _ => match expiry.duration_since(now) {
                Ok(left) => now + left / 2,
                Err(_) => now,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn temporary(key: &str, expires: SystemTime) -> AwsCredentials {
        let mut c = AwsCredentials::new(key, "secret", Some("token".into()));
        c.expires_at = Some(expires);
        c
    }

    fn err() -> SaslError {
        SaslError::Credentials("STS is down".into())
    }

    #[tokio::test]
    async fn temporary_credentials_are_kept_until_five_minutes_before_expiry() {
        let cache = CredentialsCache::default();
        let calls = AtomicUsize::new(0);
        let fetch = |key: &'static str| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(temporary(key, at(3600))) }
        };
        assert_eq!(
            cache.get(at(0), || fetch("A")).await.unwrap().access_key_id,
            "A"
        );
        assert_eq!(
            cache
                .get(at(3299), || fetch("B"))
                .await
                .unwrap()
                .access_key_id,
            "A"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(
            cache
                .get(at(3300), || fetch("B"))
                .await
                .unwrap()
                .access_key_id,
            "B"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn credentials_without_expiry_are_read_again_after_fifteen_minutes() {
        let cache = CredentialsCache::default();
        let c = |k: &str| AwsCredentials::new(k, "s", None);
        assert_eq!(
            cache
                .get(at(0), || async { Ok(c("A")) })
                .await
                .unwrap()
                .access_key_id,
            "A"
        );
        assert_eq!(
            cache
                .get(at(899), || async { Ok(c("B")) })
                .await
                .unwrap()
                .access_key_id,
            "A"
        );
        assert_eq!(
            cache
                .get(at(900), || async { Ok(c("B")) })
                .await
                .unwrap()
                .access_key_id,
            "B"
        );
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_valid_credentials_and_reports_expired_ones() {
        let cache = CredentialsCache::default();
        cache
            .get(at(0), || async { Ok(temporary("A", at(3600))) })
            .await
            .unwrap();
        // Due for refresh, STS fails, A still works: A.
        let c = cache.get(at(3400), || async { Err(err()) }).await.unwrap();
        assert_eq!(c.access_key_id, "A");
        // Past A's expiry, STS still fails: the error.
        assert!(cache.get(at(3600), || async { Err(err()) }).await.is_err());
        // STS is back.
        let c = cache
            .get(at(3601), || async { Ok(temporary("B", at(7200))) })
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "B");
    }

    #[tokio::test]
    async fn short_lived_credentials_are_refreshed_half_way() {
        let cache = CredentialsCache::default();
        cache
            .get(at(0), || async { Ok(temporary("A", at(120))) })
            .await
            .unwrap();
        assert_eq!(
            cache
                .get(at(59), || async { Ok(temporary("B", at(999))) })
                .await
                .unwrap()
                .access_key_id,
            "A"
        );
        assert_eq!(
            cache
                .get(at(60), || async { Ok(temporary("B", at(999))) })
                .await
                .unwrap()
                .access_key_id,
            "B"
        );
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh() {
        let cache = Arc::new(CredentialsCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, calls, gate) = (cache.clone(), calls.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(at(0), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        Ok(temporary("A", at(3600)))
                    })
                    .await
            }));
        }
        // Let every task reach the cache, then release the one fetch.
        while calls.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().access_key_id, "A");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
