//! Wall-clock time as Kafka counts it: milliseconds since the Unix epoch.
//! Record timestamps, session deadlines and credential expiries on both
//! sides are compared in this unit, so it is read in one place.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch by the system clock.
pub fn now_ms() -> i64 {
    system_time_ms(SystemTime::now())
}

/// A `SystemTime` as epoch milliseconds (negative before 1970, saturating
/// far outside i64's range).
pub fn system_time_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn epoch_offsets() {
        assert_eq!(system_time_ms(UNIX_EPOCH), 0);
        assert_eq!(
            system_time_ms(UNIX_EPOCH + Duration::from_millis(1_500)),
            1_500
        );
        assert_eq!(system_time_ms(UNIX_EPOCH - Duration::from_millis(2)), -2);
        assert!(now_ms() > 1_700_000_000_000);
    }
}
