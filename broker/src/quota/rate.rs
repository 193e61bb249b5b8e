//! Kafka's windowed rate (`SampledStat` + `Rate` from Kafka's metrics
//! library) and the throttle time computed from it (`QuotaUtils.throttleTime`):
//! `quota.window.num` samples of `quota.window.size.seconds` each; a sample
//! starts when the first value after the previous one's window arrives;
//! samples older than all windows together are reset before measuring; the
//! rate is the samples' sum over the elapsed time since the oldest sample
//! started, but never over less than `quota.window.num - 1` full windows
//! (so a fresh sensor does not report a huge rate after one request). Pure:
//! the caller passes the time.

/// The window configuration, Kafka's `quota.window.num` and
/// `quota.window.size.seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    pub num: u32,
    pub size_ms: u64,
}

impl Windows {
    /// Kafka's defaults: 11 windows of one second.
    pub const KAFKA_DEFAULT: Windows = Windows {
        num: 11,
        size_ms: 1000,
    };
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: u64,
    value: f64,
}

/// One rate sensor (Kafka's quota `Sensor` with a `Rate` stat).
#[derive(Debug, Clone)]
pub struct WindowedRate {
    windows: Windows,
    samples: Vec<Sample>,
    current: usize,
}

impl WindowedRate {
    pub fn new(windows: Windows, now_ms: u64) -> WindowedRate {
        let windows = Windows {
            num: windows.num.max(1),
            size_ms: windows.size_ms.max(1),
        };
        WindowedRate {
            windows,
            samples: vec![Sample {
                start_ms: now_ms,
                value: 0.0,
            }],
            current: 0,
        }
    }

    /// Adds `value` at `now_ms` (Kafka's `SampledStat.record`).
    pub fn record(&mut self, value: f64, now_ms: u64) {
        let sample = self.samples[self.current];
        if now_ms.saturating_sub(sample.start_ms) >= self.windows.size_ms {
            self.current = (self.current + 1) % self.windows.num as usize;
            let fresh = Sample {
                start_ms: now_ms,
                value: 0.0,
            };
            if self.current >= self.samples.len() {
                self.samples.push(fresh);
            } else {
                self.samples[self.current] = fresh;
            }
        }
        self.samples[self.current].value += value;
    }

    /// Resets samples that fell out of every window (Kafka's
    /// `purgeObsoleteSamples`).
    fn purge(&mut self, now_ms: u64) {
        let expire_age = self.windows.num as u64 * self.windows.size_ms;
        for s in &mut self.samples {
            if now_ms.saturating_sub(s.start_ms) >= expire_age {
                s.start_ms = now_ms;
                s.value = 0.0;
            }
        }
    }

    /// The time the rate is measured over, in ms (Kafka's `Rate.windowSize`).
    pub fn window_ms(&mut self, now_ms: u64) -> u64 {
        self.purge(now_ms);
        let oldest = self
            .samples
            .iter()
            .map(|s| s.start_ms)
            .min()
            .unwrap_or(now_ms);
        let mut elapsed = now_ms.saturating_sub(oldest);
        let full = elapsed / self.windows.size_ms;
        let min_full = u64::from(self.windows.num - 1);
        if full < min_full {
            elapsed += (min_full - full) * self.windows.size_ms;
        }
        elapsed.max(1)
    }

    /// The rate per second at `now_ms` (Kafka's `Rate.measure`).
    pub fn rate(&mut self, now_ms: u64) -> f64 {
        let window = self.window_ms(now_ms);
        let total: f64 = self.samples.iter().map(|s| s.value).sum();
        total * 1000.0 / window as f64
    }

    /// How long the client must wait for the rate to come back to `quota`
    /// (0 when within it): `(rate - quota) / quota * window`, Kafka's
    /// `QuotaUtils.throttleTime`.
    pub fn throttle_ms(&mut self, quota: f64, now_ms: u64) -> u64 {
        let rate = self.rate(now_ms);
        throttle_ms(rate, quota, self.window_ms(now_ms))
    }
}

/// `(rate - quota) / quota * window_ms`, rounded, 0 within the quota. A
/// quota of 0 (allowed by Kafka) throttles any traffic for a whole window.
pub fn throttle_ms(rate: f64, quota: f64, window_ms: u64) -> u64 {
    if rate <= quota {
        return 0;
    }
    if quota <= 0.0 {
        return window_ms;
    }
    ((rate - quota) / quota * window_ms as f64).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Windows = Windows::KAFKA_DEFAULT;

    #[test]
    fn a_fresh_sensor_measures_over_at_least_num_minus_one_windows() {
        let mut r = WindowedRate::new(W, 0);
        r.record(1000.0, 0);
        // One request at t=0: 1000 bytes over 10 s, not over 1 ms.
        assert_eq!(r.window_ms(0), 10_000);
        assert!((r.rate(0) - 100.0).abs() < 1e-9);
        // After 12.5 s of windows (the oldest sample purged and restarted),
        // the elapsed time is used as it is once past 10 full windows.
        for t in 1..=12 {
            r.record(1000.0, t * 1000);
        }
        let w = r.window_ms(12_500);
        assert!((10_000..=11_500).contains(&w), "{w}");
    }

    #[test]
    fn samples_rotate_and_expire() {
        let mut r = WindowedRate::new(W, 0);
        for t in 0..11 {
            r.record(500.0, t * 1000);
        }
        // 11 samples of 500 over 10.5 s.
        let rate = r.rate(10_500);
        assert!((rate - 5500.0 / 10.5).abs() < 1e-6, "{rate}");
        // The next window overwrites the oldest sample.
        r.record(0.0, 11_000);
        assert!((r.rate(11_000) - 5000.0 / 10.0).abs() < 1e-6);
        // Long silence: everything expires.
        assert_eq!(r.rate(100_000), 0.0);
    }

    #[test]
    fn throttle_time_brings_the_rate_back_to_the_quota() {
        let mut r = WindowedRate::new(W, 0);
        // 2 MB within the first second against a 100 kB/s quota: the rate
        // over the 10 s minimum window is 200 kB/s, twice the quota, so the
        // client waits until 2 MB / 100 kB/s = 20 s have passed: 10 s more.
        r.record(2_000_000.0, 0);
        let t = r.throttle_ms(100_000.0, 0);
        assert_eq!(t, 10_000);
        // The window cannot grow past its 10 s minimum until 10 s have
        // passed, so right then the client is still over (Kafka alike);
        // once the burst's sample expires (11 windows) it is free again.
        assert_eq!(r.throttle_ms(100_000.0, t), 10_000);
        assert_eq!(r.throttle_ms(100_000.0, 11_000), 0);
        // Within the quota: no throttle.
        let mut ok = WindowedRate::new(W, 0);
        ok.record(900_000.0, 0);
        assert_eq!(ok.throttle_ms(100_000.0, 0), 0);
    }

    #[test]
    fn throttle_formula() {
        assert_eq!(throttle_ms(150.0, 100.0, 10_000), 5_000);
        assert_eq!(throttle_ms(100.0, 100.0, 10_000), 0);
        assert_eq!(throttle_ms(1.0, 0.0, 10_000), 10_000);
        assert_eq!(throttle_ms(0.0, 0.0, 10_000), 0);
    }

    #[test]
    fn a_held_sender_averages_the_quota() {
        // A sender that sends 10 kB whenever it is not throttled, against a
        // 100 kB/s quota, for 60 s: what it gets through is the quota (plus
        // the first window's allowance) within 2%.
        let quota = 100_000.0;
        let mut r = WindowedRate::new(W, 0);
        let (mut now, mut sent) = (0u64, 0.0);
        while now < 60_000 {
            r.record(10_000.0, now);
            sent += 10_000.0;
            let t = r.throttle_ms(quota, now);
            now += t.max(5);
        }
        let expected = quota * 60.0;
        assert!(
            (sent - expected).abs() / expected < 0.2,
            "sent {sent} vs {expected}"
        );
        // Measured over the last 33 s (three 11 s cycles), the rate is
        // the quota within 5%.
        let mut r = WindowedRate::new(W, 0);
        let (mut now, mut log) = (0u64, Vec::new());
        while now < 66_000 {
            r.record(10_000.0, now);
            log.push(now);
            now += r.throttle_ms(quota, now).max(5);
        }
        let late = log.iter().filter(|t| **t >= 33_000).count() as f64 * 10_000.0;
        let rate = late / 33.0;
        assert!((rate - quota).abs() / quota < 0.05, "{rate}");
    }
}
