//! Durations as kubectl writes them (`30s`, `5m`, `1h`, `1h30m`, `1m30.5s`), and elapsed times
//! printed back in the same style.

use std::time::Duration;

/// Parses a Go-style duration of hours, minutes, seconds and milliseconds (`h`, `m`, `s`, `ms`),
/// as `kubectl wait --timeout` takes it. A bare number is refused: kubectl's own flags read `5` as
/// nanoseconds, which nobody means, so the unit must be spelled.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad =
        |why: &str| format!("invalid duration {text:?}: {why} (examples: 30s, 5m, 1h, 1h30m)");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number needs a unit"))?;
        if digits == 0 {
            return Err(bad("expected a number"));
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad("not a number"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds_per = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return Err(bad("units are h, m, s and ms")),
        };
        rest = &rest[unit_len..];
        total += number * seconds_per;
    }
    // Past a year is surely a typo, and keeps the conversion below far from overflow.
    if total > 366.0 * 86400.0 {
        return Err(bad("longer than a year"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Whole seconds in kubectl's style: `42s`, `3m05s`, `1h02m03s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s:02}s"),
        _ => format!("{h}h{m:02}m{s:02}s"),
    }
}

/// A signed difference of two instants (`to - from`) as [`format_duration`]; negative (clock skew
/// between two writers) reads as zero.
pub fn format_between(from: jiff::Timestamp, to: jiff::Timestamp) -> String {
    let secs = to.as_second().saturating_sub(from.as_second()).max(0);
    format_duration(Duration::from_secs(secs.unsigned_abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_kubectl_writes() {
        let table = [
            ("30s", 30.0),
            ("5m", 300.0),
            ("1h", 3600.0),
            ("1h30m", 5400.0),
            ("2m30s", 150.0),
            ("1.5s", 1.5),
            ("500ms", 0.5),
            ("0s", 0.0),
            (" 10s ", 10.0),
        ];
        for (text, secs) in table {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for text in [
            "", "5", "s", "1d", "-5s", "5 m", "1h30", "abc", "1..2s", "9999h",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("invalid duration"), "{text}: {err}");
        }
    }

    #[test]
    fn formats_elapsed_time() {
        let table = [
            (0, "0s"),
            (42, "42s"),
            (60, "1m00s"),
            (185, "3m05s"),
            (3723, "1h02m03s"),
        ];
        for (secs, text) in table {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
        }
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-01-01T00:01:10Z".parse().unwrap();
        assert_eq!(format_between(t0, t1), "1m10s");
        assert_eq!(format_between(t1, t0), "0s");
    }
}
