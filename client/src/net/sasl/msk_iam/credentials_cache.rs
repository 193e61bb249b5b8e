//! Keeps the credentials a source returned and decides when to ask again,
//! as the AWS SDKs' identity caches do (aws-config's providers cache
//! nothing themselves):
//!
//! - temporary credentials are refreshed five minutes before they expire,
//!   credentials without an expiry every fifteen minutes (a rotated key or
//!   profile is picked up);
//! - one fetch runs at a time, bounded by [`FETCH_TIMEOUT`] (a hung
//!   `credential_process` must not stall every connection), and the callers
//!   that waited for it take its result, error included;
//! - after a failure the source is left alone for a growing backoff; while
//!   the held credentials are still valid (with a minute to spare) they
//!   stay in use, so a brief STS or metadata outage fails no connection.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::credentials::{cred_err, AwsCredentials};
use super::SaslError;

/// How long before temporary credentials expire they are refreshed.
pub(super) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);
/// How long credentials without an expiry are kept.
pub(super) const STATIC_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long one fetch may take.
pub(super) const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Credentials closer than this to their expiry are not signed with.
const VALIDITY_MARGIN: Duration = Duration::from_secs(60);
/// Backoff after a failed fetch: doubles from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

#[derive(Default)]
struct State {
    held: Option<(AwsCredentials, SystemTime)>,
    /// The last fetch failed: its error, and when the next may run.
    failed: Option<(String, SystemTime)>,
    failures: u32,
    /// Fetches finished, so a waiter can tell one ran while it waited.
    fetches: u64,
}

/// The credentials last fetched, and a lock that makes fetches single-file.
#[derive(Default)]
pub(super) struct CredentialsCache {
    state: Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
}

/// What the held state says for a caller at `now`.
enum Verdict {
    Use(AwsCredentials),
    Fail(String),
    Fetch,
}

impl CredentialsCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fresh credentials, or (backing off) valid ones or the last error;
    /// `after_fetch` means a fetch ended while this caller waited, whose
    /// outcome it takes rather than fetching again.
    fn verdict(&self, now: SystemTime, after_fetch: bool) -> Verdict {
        let st = self.lock();
        if let Some((c, refresh_at)) = &st.held {
            if now < *refresh_at {
                return Verdict::Use(c.clone());
            }
        }
        let backing_off = st
            .failed
            .as_ref()
            .is_some_and(|(_, until)| after_fetch || now < *until);
        if !backing_off {
            return Verdict::Fetch;
        }
        match (&st.held, &st.failed) {
            (Some((c, _)), _) if still_valid(c, now) => Verdict::Use(c.clone()),
            (_, Some((e, _))) => Verdict::Fail(e.clone()),
            _ => Verdict::Fetch,
        }
    }

    /// Credentials for `now`: the held ones while fresh, else what `fetch`
    /// returns (one fetch at a time), else, if it fails, the held ones while
    /// still valid.
    pub(super) async fn get<F, Fut>(
        &self,
        now: SystemTime,
        fetch: F,
    ) -> Result<AwsCredentials, SaslError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<AwsCredentials, SaslError>>,
    {
        match self.verdict(now, false) {
            Verdict::Use(c) => return Ok(c),
            Verdict::Fail(e) => return Err(cred_err(e)),
            Verdict::Fetch => {}
        }
        let seen = self.lock().fetches;
        let _single = self.fetching.lock().await;
        if self.lock().fetches != seen {
            match self.verdict(now, true) {
                Verdict::Use(c) => return Ok(c),
                Verdict::Fail(e) => return Err(cred_err(e)),
                Verdict::Fetch => {}
            }
        }
        let result = match tokio::time::timeout(FETCH_TIMEOUT, fetch()).await {
            Ok(r) => r,
            Err(_) => Err(cred_err(format!(
                "fetching AWS credentials took longer than {} s",
                FETCH_TIMEOUT.as_secs()
            ))),
        };
        let mut st = self.lock();
        st.fetches += 1;
        match result {
            Ok(creds) => {
                st.held = Some((creds.clone(), refresh_time(&creds, now)));
                st.failed = None;
                st.failures = 0;
                Ok(creds)
            }
            Err(e) => {
                st.failures += 1;
                let backoff = BACKOFF
                    .0
                    .saturating_mul(1 << (st.failures - 1).min(6))
                    .min(BACKOFF.1);
                st.failed = Some((e.to_string(), now + backoff));
                match &st.held {
                    Some((old, _)) if still_valid(old, now) => {
                        tracing::warn!(error = %e, "refreshing AWS credentials failed; the current ones are still valid and stay in use");
                        Ok(old.clone())
                    }
                    _ => Err(e),
                }
            }
        }
    }
}

/// Whether `c` can still sign at `now` with a margin.
fn still_valid(c: &AwsCredentials, now: SystemTime) -> bool {
    c.expires_at.is_none_or(|e| now + VALIDITY_MARGIN < e)
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

    /// The access key `cache` hands out at `t` when the source would give `creds`.
    async fn key_at(cache: &CredentialsCache, t: u64, creds: AwsCredentials) -> String {
        cache
            .get(at(t), || async { Ok(creds) })
            .await
            .unwrap()
            .access_key_id
    }

    #[tokio::test]
    async fn credentials_without_expiry_are_read_again_after_fifteen_minutes() {
        let cache = CredentialsCache::default();
        let c = |k: &str| AwsCredentials::new(k, "s", None);
        assert_eq!(key_at(&cache, 0, c("A")).await, "A");
        assert_eq!(key_at(&cache, 899, c("B")).await, "A");
        assert_eq!(key_at(&cache, 900, c("B")).await, "B");
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_valid_credentials_backs_off_and_reports_expiring_ones() {
        let cache = CredentialsCache::default();
        let calls = AtomicUsize::new(0);
        let down = || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err(err()) }
        };
        cache
            .get(at(0), || async { Ok(temporary("A", at(3600))) })
            .await
            .unwrap();
        // Due for refresh, STS fails, A still works: A.
        assert_eq!(cache.get(at(3400), down).await.unwrap().access_key_id, "A");
        // Within the backoff the source is not asked again.
        assert_eq!(cache.get(at(3400), down).await.unwrap().access_key_id, "A");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A minute before A expires it is no longer signed with.
        let e = cache.get(at(3545), down).await.unwrap_err();
        assert!(e.to_string().contains("STS is down"), "{e}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // Backing off: the last error, without asking.
        assert!(cache.get(at(3546), down).await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // STS is back, after the backoff.
        let c = cache
            .get(at(3700), || async { Ok(temporary("B", at(7200))) })
            .await
            .unwrap();
        assert_eq!(c.access_key_id, "B");
    }

    #[tokio::test]
    async fn short_lived_credentials_are_refreshed_half_way() {
        let cache = CredentialsCache::default();
        assert_eq!(key_at(&cache, 0, temporary("A", at(120))).await, "A");
        assert_eq!(key_at(&cache, 59, temporary("B", at(999))).await, "A");
        assert_eq!(key_at(&cache, 60, temporary("B", at(999))).await, "B");
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_fetch_times_out() {
        let cache = CredentialsCache::default();
        let e = cache
            .get(at(0), || {
                std::future::pending::<Result<AwsCredentials, SaslError>>()
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("longer than 30 s"), "{e}");
    }

    async fn concurrent(
        outcome: Result<AwsCredentials, SaslError>,
    ) -> (Vec<Result<AwsCredentials, SaslError>>, usize) {
        let cache = Arc::new(CredentialsCache::default());
        let calls = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let outcome = Arc::new(outcome);
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, calls, gate, outcome) =
                (cache.clone(), calls.clone(), gate.clone(), outcome.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(at(0), || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        gate.notified().await;
                        match &*outcome {
                            Ok(c) => Ok(c.clone()),
                            Err(e) => Err(cred_err(e.to_string())),
                        }
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
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        (results, calls.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_fetch_and_its_failure() {
        let (results, calls) = concurrent(Ok(temporary("A", at(3600)))).await;
        assert_eq!(calls, 1);
        assert!(results
            .iter()
            .all(|r| r.as_ref().is_ok_and(|c| c.access_key_id == "A")));
        let (results, calls) = concurrent(Err(err())).await;
        assert_eq!(
            calls, 1,
            "the waiters take the failure instead of fetching in turn"
        );
        assert!(results.iter().all(|r| r.is_err()));
    }
}
