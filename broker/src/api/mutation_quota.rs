//! What CreateTopics, CreatePartitions and DeleteTopics share about quotas:
//! the controller mutation quota (KIP-599: `controller_mutation_rate`,
//! partitions created or deleted per second) and the operator's cluster
//! partition cap (`quota.cluster.max.partitions`). New enough versions
//! (CreateTopics v6+, CreatePartitions v3+, DeleteTopics v5+) get KIP-599's
//! strict behaviour: once the quota is exceeded, further topics of the
//! request fail with THROTTLING_QUOTA_EXCEEDED and the client retries after
//! the throttle time. Older versions are permissive: every topic goes
//! through and the client is throttled. Either way the connection is
//! muted for the throttle time.

use sluice_protocol::ErrorCode;

use super::RequestContext;
use crate::cluster::ApiError;
use crate::quota::QuotaKey;

pub struct MutationQuota {
    strict: bool,
    throttle_ms: u64,
}

impl MutationQuota {
    /// `strict_from`: the first version with KIP-599's strict behaviour.
    pub fn new(ctx: &RequestContext, strict_from: i16) -> MutationQuota {
        MutationQuota {
            strict: ctx.version >= strict_from,
            throttle_ms: 0,
        }
    }

    /// Before one topic's mutation: refused when strict and the quota is
    /// already exceeded.
    pub fn check(&mut self, ctx: &RequestContext) -> Result<(), ApiError> {
        if !self.strict {
            return Ok(());
        }
        let t = ctx.quota_throttle_now(QuotaKey::ControllerMutationRate);
        if t == 0 {
            return Ok(());
        }
        self.throttle_ms = self.throttle_ms.max(t);
        Err(ApiError::new(
            ErrorCode::ThrottlingQuotaExceeded,
            format!("The controller mutation quota (controller_mutation_rate) is exceeded; retry in {t} ms"),
        ))
    }

    /// After one topic's mutation of `partitions` partitions.
    pub fn record(&mut self, ctx: &RequestContext, partitions: i32) {
        let t = ctx.record_quota(
            QuotaKey::ControllerMutationRate,
            f64::from(partitions.max(0)),
        );
        self.throttle_ms = self.throttle_ms.max(t);
    }

    /// The response's `throttle_time_ms`. The connection is muted for it
    /// (`record_quota` did; a strict refusal mutes here).
    pub fn throttle_time_ms(&self, ctx: &RequestContext) -> i32 {
        ctx.mute.mute_for(self.throttle_ms);
        i32::try_from(self.throttle_ms).unwrap_or(i32::MAX)
    }
}

/// Refuses `adding` more partitions when the cluster would then hold more
/// non-internal partitions than `quota.cluster.max.partitions` allows.
/// POLICY_VIOLATION, as Kafka answers a create-topic policy's refusal.
pub fn check_partition_cap(ctx: &RequestContext, adding: i64) -> Result<(), ApiError> {
    let Some(cap) = ctx.shard.broker.config.quotas.cluster_max_partitions else {
        return Ok(());
    };
    let image = ctx.shard.broker.metadata.image();
    let existing: i64 = image
        .by_name
        .values()
        .filter(|t| !t.internal)
        .map(|t| i64::from(t.partitions))
        .sum();
    if existing + adding > i64::from(cap) {
        return Err(ApiError::new(
            ErrorCode::PolicyViolation,
            format!(
                "The cluster may hold at most {cap} partitions (quota.cluster.max.partitions); it has {existing} and this request would add {adding}"
            ),
        ));
    }
    Ok(())
}
