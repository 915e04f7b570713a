//! UTC day and hour buckets ("YYYY-MM-DD", "YYYY-MM-DDTHH") from Unix time,
//! without a calendar dependency. Pure.

/// Seconds in a day.
const DAY: i64 = 86_400;

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// UTC day of a Unix time in seconds, "YYYY-MM-DD".
pub fn day_of(unix_secs: i64) -> String {
    format_day(unix_secs.div_euclid(DAY))
}

/// UTC hour of a Unix time in seconds, "YYYY-MM-DDTHH".
pub fn hour_of(unix_secs: i64) -> String {
    let hour = unix_secs.rem_euclid(DAY) / 3600;
    format!("{}T{hour:02}", day_of(unix_secs))
}

fn format_day(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses "YYYY-MM-DD" into days since the epoch.
pub fn parse_day(text: &str) -> Option<i64> {
    let mut parts = text.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let days = days_from_civil(y, m, d);
    // Rejects 2026-02-30 and friends: the round trip must give the same text.
    (format_day(days) == text).then_some(days)
}

/// Every day from `from` to `to` inclusive, "YYYY-MM-DD".
pub fn days_between(from: i64, to: i64) -> Vec<String> {
    (from..=to).map(format_day).collect()
}

/// The hours of a rolling window of `hours` hours ending with the hour of
/// `now_secs`, and the days they fall on (oldest first).
pub fn window(now_secs: i64, hours: u32) -> (Vec<String>, Vec<String>) {
    let this_hour = now_secs.div_euclid(3600);
    let first = this_hour - i64::from(hours) + 1;
    let hour_list: Vec<String> = (first..=this_hour).map(|h| hour_of(h * 3600)).collect();
    let mut days: Vec<String> = (first..=this_hour).map(|h| day_of(h * 3600)).collect();
    days.dedup();
    (hour_list, days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants_format_as_utc_day_and_hour() {
        assert_eq!(day_of(0), "1970-01-01");
        // 2024-02-29T13:05:00Z, a leap day.
        assert_eq!(hour_of(1_709_211_900), "2024-02-29T13");
        assert_eq!(day_of(1_709_211_900 + DAY), "2024-03-01");
        assert_eq!(day_of(-1), "1969-12-31");
    }

    #[test]
    fn days_parse_and_round_trip() {
        let d = parse_day("2026-11-23").expect("valid day");
        assert_eq!(
            days_between(d, d + 2),
            ["2026-11-23", "2026-11-24", "2026-11-25"]
        );
        assert_eq!(parse_day("2026-02-30"), None);
        assert_eq!(parse_day("2026-1-01"), None);
        assert_eq!(parse_day("yesterday"), None);
    }

    #[test]
    fn window_spans_midnight() {
        // 2024-03-01T01:30Z: a 3-hour window covers 23h of the day before.
        let now = parse_day("2024-03-01").expect("day") * DAY + 5400;
        let (hours, days) = window(now, 3);
        assert_eq!(hours, ["2024-02-29T23", "2024-03-01T00", "2024-03-01T01"]);
        assert_eq!(days, ["2024-02-29", "2024-03-01"]);
    }
}
