//! The broker's quota accounting (Kafka's `ClientQuotaManager`,
//! `ClientRequestQuotaManager` and `ControllerMutationQuotaManager` in one):
//! one [`WindowedRate`] sensor per (quota key, metric entity), shared by every
//! shard behind one mutex, so all connections of a principal or client id
//! count against one quota wherever SO_REUSEPORT put them (a per-shard
//! split would let a client with N connections on N shards use up to N
//! times its quota, or starve it when they land on one shard). Plus the
//! operator's cluster-wide caps (`quota.cluster.*`), each broker enforcing
//! its share (the cap divided by the live brokers). Nothing is locked when
//! no quota is configured.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::entity::{resolve, ClientQuotas, MetricEntity, QuotaKey};
use super::rate::{WindowedRate, Windows};
use crate::config::QuotaSettings;
use crate::metrics::METRICS;

/// Sensors unused this long are dropped (Kafka's inactive sensor
/// expiration for quota sensors: one hour).
const SENSOR_EXPIRY_MS: u64 = 3_600_000;

/// The label the cluster-wide caps report under in metrics.
const CLUSTER_PRODUCE: &str = "cluster_producer_byte_rate";
const CLUSTER_FETCH: &str = "cluster_consumer_byte_rate";

struct Tracked {
    rate: WindowedRate,
    last_used_ms: u64,
}

struct Sensors {
    by_entity: HashMap<(QuotaKey, MetricEntity), Tracked>,
    cluster_in: WindowedRate,
    cluster_out: WindowedRate,
    records: u64,
}

pub struct QuotaManager {
    windows: Windows,
    cluster_in: Option<f64>,
    cluster_out: Option<f64>,
    epoch: Instant,
    sensors: Mutex<Sensors>,
}

/// Who is asking: the principal name (Kafka's quota user) and client id.
#[derive(Clone, Copy, Debug)]
pub struct Client<'a> {
    pub user: &'a str,
    pub client_id: &'a str,
}

impl QuotaManager {
    pub fn new(settings: &QuotaSettings) -> QuotaManager {
        let windows = Windows {
            num: settings.window_num,
            size_ms: u64::from(settings.window_size_seconds) * 1000,
        };
        QuotaManager {
            windows,
            cluster_in: settings.cluster_producer_byte_rate,
            cluster_out: settings.cluster_consumer_byte_rate,
            epoch: Instant::now(),
            sensors: Mutex::new(Sensors {
                by_entity: HashMap::new(),
                cluster_in: WindowedRate::new(windows, 0),
                cluster_out: WindowedRate::new(windows, 0),
                records: 0,
            }),
        }
    }

    pub fn windows(&self) -> Windows {
        self.windows
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sensors> {
        self.sensors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster cap for `key` as this broker's share of it.
    fn cluster_cap(&self, key: QuotaKey, brokers: usize) -> Option<(f64, &'static str)> {
        let share = |cap: f64| cap / brokers.max(1) as f64;
        match key {
            QuotaKey::ProducerByteRate => self.cluster_in.map(|c| (share(c), CLUSTER_PRODUCE)),
            QuotaKey::ConsumerByteRate => self.cluster_out.map(|c| (share(c), CLUSTER_FETCH)),
            _ => None,
        }
    }

    /// Records `value` (bytes, percent-seconds of a request thread, or
    /// partition mutations) for `client` and answers the throttle time in
    /// ms (0: within every quota). `brokers` is the live broker count the
    /// cluster caps are shared among.
    pub fn record(
        &self,
        quotas: &ClientQuotas,
        key: QuotaKey,
        client: Client<'_>,
        value: f64,
        brokers: usize,
    ) -> u64 {
        let quota = resolve(quotas, key, client.user, client.client_id);
        let cap = self.cluster_cap(key, brokers);
        if quota.is_none() && cap.is_none() {
            return 0;
        }
        let now = self.now_ms();
        let mut sensors = self.lock();
        let mut throttle = 0;
        if let Some((limit, entity)) = quota {
            let windows = self.windows;
            let tracked = sensors
                .by_entity
                .entry((key, entity.clone()))
                .or_insert_with(|| Tracked {
                    rate: WindowedRate::new(windows, now),
                    last_used_ms: now,
                });
            tracked.last_used_ms = now;
            tracked.rate.record(value, now);
            let mut t = tracked.rate.throttle_ms(limit, now);
            if key == QuotaKey::RequestPercentage {
                // Kafka caps request-quota throttling at one window.
                t = t.min(self.windows.size_ms);
            }
            let rate = tracked.rate.rate(now);
            METRICS.observe_quota(key.name(), &entity.user, &entity.client_id, value, rate, t);
            throttle = t;
        }
        if let Some((limit, label)) = cap {
            let sensor = match key {
                QuotaKey::ProducerByteRate => &mut sensors.cluster_in,
                _ => &mut sensors.cluster_out,
            };
            sensor.record(value, now);
            let t = sensor.throttle_ms(limit, now);
            let rate = sensor.rate(now);
            METRICS.observe_quota(label, "", "", value, rate, t);
            throttle = throttle.max(t);
        }
        sensors.records += 1;
        if sensors.records.is_multiple_of(4096) {
            sensors.by_entity.retain(|(key, entity), t| {
                let keep = now.saturating_sub(t.last_used_ms) < SENSOR_EXPIRY_MS;
                if !keep {
                    METRICS.forget_quota(key.name(), &entity.user, &entity.client_id);
                }
                keep
            });
        }
        throttle
    }

    /// Takes `value` back off the sensors `record` added it to, without
    /// metrics or throttling (Kafka's `unrecordQuotaSensor`).
    pub fn unrecord(
        &self,
        quotas: &ClientQuotas,
        key: QuotaKey,
        client: Client<'_>,
        value: f64,
        brokers: usize,
    ) {
        let quota = resolve(quotas, key, client.user, client.client_id);
        let cap = self.cluster_cap(key, brokers);
        if quota.is_none() && cap.is_none() {
            return;
        }
        let now = self.now_ms();
        let mut sensors = self.lock();
        if let Some((_, entity)) = quota {
            if let Some(t) = sensors.by_entity.get_mut(&(key, entity)) {
                t.rate.record(-value, now);
            }
        }
        if cap.is_some() {
            match key {
                QuotaKey::ProducerByteRate => sensors.cluster_in.record(-value, now),
                _ => sensors.cluster_out.record(-value, now),
            }
        }
    }

    /// The throttle time `client` has earned so far for `key`, recording
    /// nothing (KIP-599's strict check before a mutation).
    pub fn throttle_now(&self, quotas: &ClientQuotas, key: QuotaKey, client: Client<'_>) -> u64 {
        let Some((limit, entity)) = resolve(quotas, key, client.user, client.client_id) else {
            return 0;
        };
        let now = self.now_ms();
        let mut sensors = self.lock();
        match sensors.by_entity.get_mut(&(key, entity)) {
            Some(t) => t.rate.throttle_ms(limit, now),
            None => 0,
        }
    }

    /// The most `client` may take for `key` within the quota window
    /// (Kafka's `getMaxValueInQuotaWindow`: quota x (windows - 1) x window
    /// size), so a fetch is capped rather than answered beyond it; `None`
    /// without a quota or cap.
    pub fn max_in_window(
        &self,
        quotas: &ClientQuotas,
        key: QuotaKey,
        client: Client<'_>,
        brokers: usize,
    ) -> Option<f64> {
        let quota = resolve(quotas, key, client.user, client.client_id).map(|(q, _)| q);
        let cap = self.cluster_cap(key, brokers).map(|(c, _)| c);
        let limit = match (quota, cap) {
            (Some(q), Some(c)) => q.min(c),
            (q, c) => q.or(c)?,
        };
        let span_s =
            (f64::from(self.windows.num.max(2) - 1)) * self.windows.size_ms as f64 / 1000.0;
        Some(limit * span_s)
    }
}

#[cfg(test)]
mod tests {
    use super::super::entity::{apply, EntityName, QuotaAlteration, QuotaEntity, QuotaValue};
    use super::*;

    fn settings() -> QuotaSettings {
        QuotaSettings::default()
    }

    fn quotas_for(user: &str, key: QuotaKey, v: f64) -> ClientQuotas {
        let mut q = ClientQuotas::new();
        apply(
            &mut q,
            &QuotaAlteration {
                entity: QuotaEntity {
                    user: Some(EntityName::Named(user.into())),
                    client_id: None,
                },
                ops: vec![(key, Some(QuotaValue(v)))],
            },
        );
        q
    }

    #[test]
    fn clients_of_one_user_share_its_quota_others_are_free() {
        let m = QuotaManager::new(&settings());
        let q = quotas_for("alice", QuotaKey::ProducerByteRate, 1000.0);
        let a1 = Client {
            user: "alice",
            client_id: "one",
        };
        let a2 = Client {
            user: "alice",
            client_id: "two",
        };
        let bob = Client {
            user: "bob",
            client_id: "one",
        };
        // 10 s x 1000 B/s fit in a fresh window; two clients of alice
        // together go over it, bob never is throttled.
        assert_eq!(m.record(&q, QuotaKey::ProducerByteRate, a1, 6000.0, 1), 0);
        let t = m.record(&q, QuotaKey::ProducerByteRate, a2, 6000.0, 1);
        assert!((1900..=2100).contains(&t), "{t}");
        assert_eq!(m.record(&q, QuotaKey::ProducerByteRate, bob, 1e9, 1), 0);
        // The quota of one key does not limit another.
        assert_eq!(m.record(&q, QuotaKey::ConsumerByteRate, a1, 1e9, 1), 0);
        assert_eq!(m.throttle_now(&q, QuotaKey::ProducerByteRate, a1), t);
    }

    #[test]
    fn cluster_caps_are_shared_among_live_brokers() {
        let s = QuotaSettings {
            cluster_producer_byte_rate: Some(3000.0),
            ..settings()
        };
        let m = QuotaManager::new(&s);
        let q = ClientQuotas::new();
        let c = Client {
            user: "ANONYMOUS",
            client_id: "x",
        };
        // Three brokers: this one's share is 1000 B/s, 10 kB per fresh window.
        assert_eq!(m.record(&q, QuotaKey::ProducerByteRate, c, 10_000.0, 3), 0);
        assert!(m.record(&q, QuotaKey::ProducerByteRate, c, 10_000.0, 3) >= 9_000);
        // No consumer cap configured.
        assert_eq!(m.record(&q, QuotaKey::ConsumerByteRate, c, 1e12, 3), 0);
        assert_eq!(
            m.max_in_window(&q, QuotaKey::ProducerByteRate, c, 3),
            Some(10_000.0)
        );
        assert_eq!(m.max_in_window(&q, QuotaKey::ConsumerByteRate, c, 3), None);
    }

    #[test]
    fn request_throttling_is_capped_at_one_window() {
        let m = QuotaManager::new(&settings());
        let q = quotas_for("alice", QuotaKey::RequestPercentage, 10.0);
        let c = Client {
            user: "alice",
            client_id: "",
        };
        // 100 s of a thread's time in one go: far over, capped at 1 s.
        assert_eq!(
            m.record(&q, QuotaKey::RequestPercentage, c, 100.0 * 100.0, 1),
            1000
        );
    }
}
