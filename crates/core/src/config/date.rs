//! Calendar dates for the configuration and the CLI, in UTC, without a time-zone database:
//! user expiry dates, RFC 3339 metadata (`created`, `rotated`) and the month a data quota is
//! counted in. Civil-date arithmetic after Howard Hinnant's `days_from_civil`.

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { yoe + era * 400 + 1 } else { yoe + era * 400 }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str, len: usize) -> Option<u32> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok()).flatten()
}

const HINT: &str = "write a date as YYYY-MM-DD (valid through that day, UTC) or a time as YYYY-MM-DDTHH:MM:SSZ";

/// Parse `YYYY-MM-DD` (meaning the end of that day, UTC: the instant the next day starts) or an
/// RFC 3339 time `YYYY-MM-DDTHH:MM:SS` with `Z` or `±HH:MM`. Returns Unix seconds.
pub fn parse_expiry(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let bad = || format!("`{t}` is not a date; {HINT}");
    let (date, time) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    let mut parts = date.split('-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d), None) => (num(y, 4).ok_or_else(bad)?, num(m, 2).ok_or_else(bad)?, num(d, 2).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y as i64, m) {
        return Err(format!("`{t}` is not a calendar date; {HINT}"));
    }
    let day = days_from_civil(y as i64, m, d) * 86400;
    let Some(time) = time else { return Ok(day + 86400) };
    let (clock, offset) = if let Some(c) = time.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = time.rfind(['+', '-']) {
        let (c, o) = time.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':').ok_or_else(bad)?;
        let (oh, om) = (num(oh, 2).ok_or_else(bad)?, num(om, 2).ok_or_else(bad)?);
        (c, sign * (oh as i64 * 3600 + om as i64 * 60))
    } else {
        return Err(format!("`{t}` has no time zone; end it with Z (UTC) or an offset such as +03:00"));
    };
    let clock = clock.split('.').next().unwrap_or("");
    let mut hms = clock.split(':');
    let (h, mi, s) = match (hms.next(), hms.next(), hms.next(), hms.next()) {
        (Some(h), Some(mi), Some(s), None) => (num(h, 2).ok_or_else(bad)?, num(mi, 2).ok_or_else(bad)?, num(s, 2).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if h > 23 || mi > 59 || s > 60 {
        return Err(bad());
    }
    Ok(day + (h * 3600 + mi * 60 + s) as i64 - offset)
}

/// `2026-11-26T07:11:08Z`.
pub fn format_rfc3339(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86400));
    let s = unix.rem_euclid(86400);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", s / 3600, s / 60 % 60, s % 60)
}

/// The calendar month (UTC) an instant falls in, as `year * 12 + month - 1`: the period a
/// monthly data quota is counted in.
pub fn month_index(unix: i64) -> i64 {
    let (y, m, _) = civil_from_days(unix.div_euclid(86400));
    y * 12 + m as i64 - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_known_values() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_767_225_600), "2026-01-01T00:00:00Z");
        assert_eq!(parse_expiry("2026-01-01T00:00:00Z"), Ok(1_767_225_600));
        assert_eq!(parse_expiry("2025-12-31"), Ok(1_767_225_600), "a date is valid through that day");
        assert_eq!(parse_expiry("2026-01-01T03:00:00+03:00"), Ok(1_767_225_600));
        assert_eq!(parse_expiry("2024-02-29"), Ok(days_from_civil(2024, 3, 1) * 86400));
        for z in [-1000, 0, 19000, 20000, 100000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        assert_eq!(month_index(1_767_225_600), 2026 * 12);
        assert_eq!(month_index(1_767_225_599), 2025 * 12 + 11);
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for bad in ["2025-02-29", "2025-13-01", "25-01-01", "2025-01-01T10:00:00", "tomorrow", "2025-01-01T25:00:00Z", ""] {
            assert!(parse_expiry(bad).is_err(), "{bad}");
        }
    }
}
