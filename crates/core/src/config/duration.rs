//! Human durations in the config: `"500ms"`, `"10s"`, `"5m"`, `"1h"`, `"2d"`, or a bare number of
//! seconds.

use std::time::Duration;

/// Parse a duration; the error says what is accepted.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{text}` is not a duration; write e.g. \"500ms\", \"10s\", \"5m\", \"1h\" or \"2d\""))?;
    let unit_secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        u => return Err(format!("unknown duration unit `{u}` in `{text}`; use ms, s, m, h or d")),
    };
    // A huge count times the unit must be refused, not wrapped around to a short duration.
    n.checked_mul(unit_secs).map(Duration::from_secs).ok_or_else(|| format!("`{text}` is too long a duration; write at most a few years, e.g. \"365d\""))
}

/// The shortest exact form of a duration in the units `parse_duration` reads.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    for (unit, size) in [("d", 86400), ("h", 3600), ("m", 60)] {
        if s >= size && s.is_multiple_of(size) {
            return format!("{}{unit}", s / size);
        }
    }
    format!("{s}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172800)));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("m").is_err());
        for d in ["500ms", "10s", "5m", "1h", "2d", "90s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn huge_counts_are_refused_not_wrapped() {
        // 307445734561825861 * 60 overflows u64; it used to panic in debug builds and wrap to
        // 44 seconds in release builds.
        let e = parse_duration("307445734561825861m").unwrap_err();
        assert!(e.contains("too long"), "{e}");
        assert!(parse_duration("213503982334602d").is_err());
        assert_eq!(parse_duration("213503982334601d"), Ok(Duration::from_secs(213503982334601 * 86400)));
        assert_eq!(parse_duration("18446744073709551615s"), Ok(Duration::from_secs(u64::MAX)));
    }
}
