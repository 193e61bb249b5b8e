//! The arithmetic behind the JMX-style series: Yammer's exponentially
//! weighted moving averages (a Kafka meter's One/Five/FifteenMinuteRate),
//! ticked every [`TICK`] from an absolute counter, and percentiles and means
//! of a latency histogram over a sliding window of bucket snapshots (the
//! broker keeps fixed buckets, not Yammer's sampled reservoir, so a
//! percentile is interpolated inside its bucket as Prometheus's
//! `histogram_quantile` does). Pure: no clocks, no globals.

use std::collections::VecDeque;
use std::time::Duration;

/// How often rates and histogram windows advance (Yammer ticks every 5 s).
pub const TICK: Duration = Duration::from_secs(5);

/// Snapshots a histogram window spans: five minutes of ticks, about the
/// horizon Yammer's forward-decaying reservoir (alpha 0.015) favours.
pub const WINDOW_TICKS: usize = 60;

/// One exponentially weighted moving average of a per-second rate.
#[derive(Debug, Clone)]
pub struct Ewma {
    alpha: f64,
    rate: f64,
    initialized: bool,
}

impl Ewma {
    /// An average over `minutes`, ticked every [`TICK`].
    pub fn minutes(minutes: f64) -> Ewma {
        Ewma {
            alpha: 1.0 - (-TICK.as_secs_f64() / 60.0 / minutes).exp(),
            rate: 0.0,
            initialized: false,
        }
    }

    /// `events` happened during the last tick. The first tick takes the
    /// instant rate as is (Yammer does the same).
    pub fn tick(&mut self, events: u64) {
        let instant = events as f64 / TICK.as_secs_f64();
        if self.initialized {
            self.rate += self.alpha * (instant - self.rate);
        } else {
            self.rate = instant;
            self.initialized = true;
        }
    }

    /// Events per second.
    pub fn rate(&self) -> f64 {
        self.rate
    }
}

/// A Kafka meter over an absolute counter: its count and the three moving
/// averages, plus the mean rate since the meter was first seen.
#[derive(Debug, Clone)]
pub struct Meter {
    first: u64,
    last: u64,
    /// Ticks since the meter was created (the mean rate's elapsed time).
    ticks: u64,
    pub one: Ewma,
    pub five: Ewma,
    pub fifteen: Ewma,
}

impl Meter {
    /// A meter whose counter stands at `count` now: what happened before it
    /// existed is not a rate.
    pub fn new(count: u64) -> Meter {
        Meter {
            first: count,
            last: count,
            ticks: 0,
            one: Ewma::minutes(1.0),
            five: Ewma::minutes(5.0),
            fifteen: Ewma::minutes(15.0),
        }
    }

    /// The counter reads `count` at this tick. A counter that went backwards
    /// (a topic deleted and created again) counts from its new value.
    pub fn tick(&mut self, count: u64) {
        let events = count.saturating_sub(self.last);
        if count < self.last {
            self.first = 0;
        }
        self.last = count;
        self.ticks += 1;
        self.one.tick(events);
        self.five.tick(events);
        self.fifteen.tick(events);
    }

    /// Events per second since the meter was created (Yammer's MeanRate).
    pub fn mean_rate(&self) -> f64 {
        if self.ticks == 0 {
            return 0.0;
        }
        self.last.saturating_sub(self.first) as f64 / (self.ticks as f64 * TICK.as_secs_f64())
    }
}

/// A snapshot of a bucketed histogram: per-bucket counts (not cumulative),
/// the count of observations past the last bound, and the sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub counts: Vec<u64>,
    pub overflow: u64,
    pub sum: f64,
}

impl Buckets {
    fn total(&self) -> u64 {
        self.counts.iter().sum::<u64>() + self.overflow
    }

    /// `self - older`, bucket by bucket.
    fn minus(&self, older: &Buckets) -> Buckets {
        Buckets {
            counts: self
                .counts
                .iter()
                .zip(older.counts.iter().chain(std::iter::repeat(&0)))
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
            overflow: self.overflow.saturating_sub(older.overflow),
            sum: (self.sum - older.sum).max(0.0),
        }
    }
}

/// What a window of a histogram reports (Yammer's Snapshot, in the
/// histogram's own unit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowStats {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p75: f64,
    pub p95: f64,
    pub p98: f64,
    pub p99: f64,
    pub p999: f64,
}

/// A histogram's snapshots over the last [`WINDOW_TICKS`] ticks.
#[derive(Debug, Clone, Default)]
pub struct HistogramWindow {
    snapshots: VecDeque<Buckets>,
}

impl HistogramWindow {
    /// Records this tick's snapshot, dropping the oldest past the window.
    pub fn tick(&mut self, now: Buckets) {
        self.snapshots.push_back(now);
        while self.snapshots.len() > WINDOW_TICKS + 1 {
            self.snapshots.pop_front();
        }
    }

    /// The observations between the oldest snapshot kept and `now`
    /// (everything since start while the window is not full yet), with
    /// percentiles over `bounds` (upper bounds of the buckets, ascending).
    pub fn stats(&self, now: &Buckets, bounds: &[f64]) -> WindowStats {
        let window = match self.snapshots.front() {
            Some(oldest) if self.snapshots.len() > WINDOW_TICKS => now.minus(oldest),
            _ => now.clone(),
        };
        let count = window.total();
        let q = |q: f64| quantile(&window, bounds, q);
        WindowStats {
            count,
            mean: if count == 0 {
                0.0
            } else {
                window.sum / count as f64
            },
            p50: q(0.50),
            p75: q(0.75),
            p95: q(0.95),
            p98: q(0.98),
            p99: q(0.99),
            p999: q(0.999),
        }
    }
}

/// The `q` quantile of a bucketed distribution, interpolated linearly
/// inside the bucket it falls in (the first bucket starts at 0).
/// Observations past the last bound count as the last bound. 0 when empty.
pub fn quantile(b: &Buckets, bounds: &[f64], q: f64) -> f64 {
    let total = b.total();
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (i, &n) in b.counts.iter().enumerate() {
        if n > 0 && (below + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let upper = bounds[i];
            let into = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
            return lower + (upper - lower) * into;
        }
        below += n;
    }
    bounds.last().copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_minute_rate_follows_yammer() {
        // A steady 10 events/s: the first tick takes the instant rate, and a
        // stop decays by exp(-5/60) per tick (Yammer's M1_ALPHA).
        let mut m = Meter::new(1000);
        m.tick(1050);
        assert!((m.one.rate() - 10.0).abs() < 1e-9);
        m.tick(1050);
        let expected = 10.0 * (-5.0f64 / 60.0).exp();
        assert!((m.one.rate() - expected).abs() < 1e-9, "{}", m.one.rate());
        // The fifteen-minute rate decays far slower.
        assert!(m.fifteen.rate() > 9.8, "{}", m.fifteen.rate());
        assert!((m.mean_rate() - 5.0).abs() < 1e-9);
    }

    #[test]
    fn rate_converges_to_a_new_steady_rate() {
        let mut m = Meter::new(0);
        let mut count = 0;
        m.tick(count);
        for _ in 0..120 {
            count += 100; // 20 events/s
            m.tick(count);
        }
        assert!((m.one.rate() - 20.0).abs() < 0.01, "{}", m.one.rate());
        // Ten minutes from 0 at a five-minute EWMA: 20 * (1 - e^-2).
        let five = 20.0 * (1.0 - (-2.0f64).exp());
        assert!((m.five.rate() - five).abs() < 1e-9, "{}", m.five.rate());
    }

    #[test]
    fn a_counter_reset_is_not_negative() {
        let mut m = Meter::new(500);
        m.tick(10);
        assert_eq!(m.one.rate(), 0.0);
        m.tick(60);
        assert!(m.one.rate() > 0.0);
    }

    const BOUNDS: [f64; 4] = [1.0, 2.0, 4.0, 8.0];

    fn buckets(counts: [u64; 4], overflow: u64, sum: f64) -> Buckets {
        Buckets {
            counts: counts.to_vec(),
            overflow,
            sum,
        }
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        // 100 observations: 50 in (0,1], 40 in (1,2], 10 in (2,4].
        let b = buckets([50, 40, 10, 0], 0, 100.0);
        assert!((quantile(&b, &BOUNDS, 0.5) - 1.0).abs() < 1e-9);
        assert!((quantile(&b, &BOUNDS, 0.7) - 1.5).abs() < 1e-9);
        assert!((quantile(&b, &BOUNDS, 0.95) - 3.0).abs() < 1e-9);
        assert!((quantile(&b, &BOUNDS, 0.25) - 0.5).abs() < 1e-9);
        assert_eq!(quantile(&Buckets::default(), &BOUNDS, 0.99), 0.0);
        // Past the last bound: reported as the last bound.
        let past = buckets([0, 0, 0, 0], 3, 90.0);
        assert_eq!(quantile(&past, &BOUNDS, 0.99), 8.0);
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it() {
        let mut w = HistogramWindow::default();
        // Slow observations first...
        let slow = buckets([0, 0, 0, 10], 0, 70.0);
        w.tick(slow.clone());
        // ...then a full window of fast ones only.
        let mut now = slow.clone();
        for i in 0..WINDOW_TICKS {
            now = buckets(
                [10 * (i as u64 + 1), 0, 0, 10],
                0,
                70.0 + 5.0 * (i as f64 + 1.0),
            );
            w.tick(now.clone());
        }
        let s = w.stats(&now, &BOUNDS);
        assert_eq!(s.count, 10 * WINDOW_TICKS as u64, "{s:?}");
        assert!(s.p99 <= 1.0, "{s:?}");
        assert!((s.mean - 0.5).abs() < 1e-9, "{s:?}");
        // Before the window fills, everything since start counts.
        let mut young = HistogramWindow::default();
        young.tick(slow.clone());
        let s = young.stats(&slow, &BOUNDS);
        assert_eq!(s.count, 10);
        assert!(s.p50 > 4.0 && s.p50 <= 8.0, "{s:?}");
        assert!((s.mean - 7.0).abs() < 1e-9);
    }
}
