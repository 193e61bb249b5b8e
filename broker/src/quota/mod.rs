//! Client quotas as Kafka applies them (KIP-13, KIP-124, KIP-219, KIP-546,
//! KIP-599): the quota configuration and its resolution (entity.rs), Kafka's
//! windowed rate and throttle-time maths (rate.rs), the broker-wide
//! accounting with the operator's cluster caps (manager.rs), and
//! [`ChannelMute`], how a throttled connection stops being read: a handler
//! answers at once with `throttle_time_ms` set and mutes its connection
//! for that long, as Kafka's network layer does after KIP-219.
//!
//! Layout: entity.rs `QuotaEntity`, `QuotaKey`, `ClientQuotas`,
//! `resolve`, `Filter`; rate.rs `WindowedRate`, `throttle_ms`; manager.rs
//! `QuotaManager`, `Client`.

pub mod entity;
pub mod manager;
pub mod rate;

use std::cell::Cell;
use std::time::{Duration, Instant};

pub use entity::{ClientQuotas, QuotaKey};
pub use manager::{Client, QuotaManager};

/// A connection's mute: until when its requests are not read.
#[derive(Default, Debug)]
pub struct ChannelMute {
    until: Cell<Option<Instant>>,
}

impl ChannelMute {
    /// Mutes for `ms` from now (never shortening a longer mute).
    pub fn mute_for(&self, ms: u64) {
        if ms == 0 {
            return;
        }
        let until = Instant::now() + Duration::from_millis(ms);
        if self.until.get().is_none_or(|u| u < until) {
            self.until.set(Some(until));
        }
    }

    /// How long the connection stays muted, if it is.
    pub fn remaining(&self) -> Option<Duration> {
        let until = self.until.get()?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            self.until.set(None);
            return None;
        }
        Some(left)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mute_only_grows_and_ends() {
        let m = ChannelMute::default();
        assert!(m.remaining().is_none());
        m.mute_for(0);
        assert!(m.remaining().is_none());
        m.mute_for(60_000);
        m.mute_for(10);
        assert!(m.remaining().unwrap() > Duration::from_secs(50));
        let short = ChannelMute::default();
        short.mute_for(1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.remaining().is_none());
    }
}
