//! Calendar arithmetic both sides need for SigV4 dates (the broker checks
//! X-Amz-Date, the client reads credential expiry times): days since the
//! Unix epoch for a proleptic Gregorian date, without a date-time crate.

/// Days from 1970-01-01 to `year-month-day` (month 1-12). The caller
/// validates the date; this is the era-based days-from-civil algorithm
/// (Howard Hinnant's "chrono-compatible low-level date algorithms").
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::days_from_civil;

    #[test]
    fn known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 11, 25), 20_782);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
    }
}
