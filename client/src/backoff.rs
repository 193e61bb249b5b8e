//! Retry backoff as Kafka's clients compute it (the Java client's
//! `ExponentialBackoff`): the n-th retry in a row waits `retry.backoff.ms`
//! times 2^n, capped at `retry.backoff.max.ms`, scaled by a random factor
//! in [0.8, 1.2) so that clients failing together do not retry together.
//! [`RetryStreak`] runs one streak of consecutive failures against a time
//! budget: retriable errors are waited out with that backoff until the
//! budget is spent; any other error, or one that outlasts the budget, is
//! the caller's.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// Growth per retry.
const MULTIPLIER: u32 = 2;
/// The random factor's spread around 1.
const JITTER: f64 = 0.2;

/// `retry.backoff.ms` growing exponentially to `retry.backoff.max.ms`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExponentialBackoff {
    initial: Duration,
    max: Duration,
}

impl ExponentialBackoff {
    pub fn new(initial: Duration, max: Duration) -> ExponentialBackoff {
        ExponentialBackoff { initial, max }
    }

    /// The wait before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, 1.0 - JITTER + 2.0 * JITTER * rand::random::<f64>())
    }

    /// [`delay`](Self::delay) with the random factor given.
    fn delay_with(&self, attempt: u32, factor: f64) -> Duration {
        // A maximum not above the start means a constant backoff, without
        // jitter (as Java does).
        if self.max <= self.initial {
            return self.initial;
        }
        let grown = self
            .initial
            .saturating_mul(MULTIPLIER.saturating_pow(attempt.min(31)));
        grown.mul_f64(factor).min(self.max)
    }
}

/// One run of consecutive failures of an operation that is retried.
#[derive(Debug)]
pub(crate) struct RetryStreak {
    backoff: ExponentialBackoff,
    budget: Duration,
    /// When the first failure of the current streak happened.
    started: Option<Instant>,
    /// Retries so far in the current streak.
    attempts: u32,
}

impl RetryStreak {
    /// A streak that gives up once its failures have lasted `budget`.
    pub fn new(backoff: ExponentialBackoff, budget: Duration) -> RetryStreak {
        RetryStreak {
            backoff,
            budget,
            started: None,
            attempts: 0,
        }
    }

    /// The operation succeeded: the next failure starts a new streak.
    pub fn reset(&mut self) {
        self.started = None;
        self.attempts = 0;
    }

    /// The operation failed with `e` at `now`: when to try again, or the
    /// error itself when it is not retriable or the budget is spent.
    pub fn on_error(&mut self, e: Error, now: Instant) -> Result<Instant> {
        if !e.is_retriable() {
            self.reset();
            return Err(e);
        }
        let started = *self.started.get_or_insert(now);
        if now.saturating_duration_since(started) >= self.budget {
            self.reset();
            return Err(e);
        }
        let delay = self.backoff.delay(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        tracing::debug!(error = %e, attempt = self.attempts, ?delay, "retriable error; backing off");
        Ok(now + delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn grows_exponentially_to_the_maximum_with_jitter() {
        let b = ExponentialBackoff::new(ms(100), ms(1000));
        assert_eq!(b.delay_with(0, 1.0), ms(100));
        assert_eq!(b.delay_with(1, 1.0), ms(200));
        assert_eq!(b.delay_with(3, 1.0), ms(800));
        assert_eq!(b.delay_with(4, 1.0), ms(1000));
        assert_eq!(b.delay_with(1_000, 1.0), ms(1000));
        assert_eq!(b.delay_with(1, 0.8), ms(160));
        assert_eq!(b.delay_with(1, 1.2), ms(240));
        for attempt in 0..40 {
            let d = b.delay(attempt);
            let nominal = ms(100).saturating_mul(2u32.saturating_pow(attempt.min(31)));
            assert!(d <= ms(1000), "{attempt}: {d:?}");
            assert!(d >= nominal.mul_f64(0.8).min(ms(1000)), "{attempt}: {d:?}");
        }
        // No room to grow: constant, without jitter.
        let flat = ExponentialBackoff::new(ms(100), ms(50));
        assert_eq!(flat.delay(5), ms(100));
    }

    #[test]
    fn a_streak_rides_out_retriable_errors_within_its_budget() {
        let backoff = ExponentialBackoff::new(ms(100), ms(1000));
        let mut s = RetryStreak::new(backoff, ms(5_000));
        let t0 = Instant::now();
        let retriable = || Error::kafka(ErrorCode::NotCoordinator);
        let first = s.on_error(retriable(), t0).expect("retried");
        assert!(first >= t0 + ms(80) && first <= t0 + ms(120));
        let second = s.on_error(retriable(), first).expect("retried");
        assert!(second >= first + ms(160) && second <= first + ms(240));
        // Connection trouble is retriable too.
        let conn = Error::Connection {
            broker: "b".into(),
            reason: "reset".into(),
        };
        assert!(s.on_error(conn, second).is_ok());
        // A non-retriable error reaches the caller at once and ends the streak.
        let fatal = s.on_error(Error::kafka(ErrorCode::TopicAuthorizationFailed), second);
        assert!(matches!(
            fatal,
            Err(Error::Kafka {
                code: ErrorCode::TopicAuthorizationFailed,
                ..
            })
        ));
        let again = s.on_error(retriable(), second).expect("a new streak");
        assert!(again <= second + ms(120));
        // Past the budget the error reaches the caller.
        let late = s.on_error(retriable(), second + ms(5_000));
        assert!(matches!(
            late,
            Err(Error::Kafka {
                code: ErrorCode::NotCoordinator,
                ..
            })
        ));
        // A success ends the streak.
        s.on_error(retriable(), t0).expect("retried");
        s.reset();
        assert!(s.on_error(retriable(), t0 + ms(60_000)).is_ok());
    }
}
