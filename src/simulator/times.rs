//! How the simulator writes the times it reports. SAE documents `CreateTime` only by an example
//! (`"2020-12-17 21:06:45"`, no zone), so the simulator can write it in any fixed offset and in each
//! form a real answer might plausibly take; a controller tested against every variant tolerates
//! whichever SAE really sends. Also the HTTP `Date` header of the simulator's own clock.
//!
//! A leaf: it depends on no other simulator module and on nothing of the controller's time
//! parsing, so the two cannot agree by sharing a bug.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The shape of a reported time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TimeForm {
    /// `2020-12-17 21:06:45`: SAE's documented example, one-second resolution, no zone.
    #[default]
    Plain,
    /// `2020-12-17 21:06:45.123`: the same with milliseconds.
    Millis,
    /// `2020-12-17T13:06:45Z` in UTC, `2020-12-17T21:06:45+08:00` in another offset.
    Iso8601,
    /// `2020-12-17T21:06:45`: ISO 8601 with the zone left out, like `plain`.
    Iso8601Local,
    /// Unix milliseconds as a JSON number (`1608210405000`); the zone does not apply.
    EpochMillis,
    /// Unix milliseconds as a JSON string (`"1608210405000"`); the zone does not apply.
    EpochMillisString,
    /// Unix seconds as a JSON number (`1608210405`); the zone does not apply.
    EpochSeconds,
}

impl TimeForm {
    pub const ALL: [TimeForm; 7] = [
        TimeForm::Plain,
        TimeForm::Millis,
        TimeForm::Iso8601,
        TimeForm::Iso8601Local,
        TimeForm::EpochMillis,
        TimeForm::EpochMillisString,
        TimeForm::EpochSeconds,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TimeForm::Plain => "plain",
            TimeForm::Millis => "millis",
            TimeForm::Iso8601 => "iso8601",
            TimeForm::Iso8601Local => "iso8601Local",
            TimeForm::EpochMillis => "epochMillis",
            TimeForm::EpochMillisString => "epochMillisString",
            TimeForm::EpochSeconds => "epochSeconds",
        }
    }
}

impl fmt::Display for TimeForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TimeForm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        TimeForm::ALL
            .into_iter()
            .find(|form| form.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = TimeForm::ALL.iter().map(|f| f.name()).collect();
                format!("unknown time format {s:?}; one of {}", names.join(", "))
            })
    }
}

/// Parses a fixed UTC offset: `UTC`, `Z`, `GMT`, or `+08:00`, `-05:00`, `+0530`, `+08`.
pub fn parse_offset(s: &str) -> Result<Offset, String> {
    let s = s.trim();
    if ["UTC", "Z", "GMT"]
        .iter()
        .any(|z| s.eq_ignore_ascii_case(z))
    {
        return Ok(Offset::UTC);
    }
    let bad = || format!("time zone {s:?} is not UTC or an offset like +08:00 or -05:00");
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    // Only ASCII from here on, so splitting by byte index cannot cut a character.
    if !rest.is_ascii() {
        return Err(bad());
    }
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "00"),
    };
    let all_digits = |p: &str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(hours) || !all_digits(minutes) {
        return Err(bad());
    }
    let (hours, minutes): (i32, i32) = (
        hours.parse().map_err(|_| bad())?,
        minutes.parse().map_err(|_| bad())?,
    );
    if hours > 18 || minutes > 59 || (hours == 18 && minutes > 0) {
        return Err(format!("time zone {s:?} is beyond ±18:00"));
    }
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).map_err(|e| e.to_string())
}

/// `+08:00`, `-05:00`, `+00:00`.
pub fn offset_name(offset: Offset) -> String {
    let secs = offset.seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let secs = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", secs / 3600, secs % 3600 / 60)
}

/// Where and how reported times are written. The default is SAE's example: `plain` in UTC+08:00
/// (China Standard Time, as SAE's console shows times).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeStyle {
    pub zone: Offset,
    pub form: TimeForm,
}

impl Default for TimeStyle {
    fn default() -> Self {
        Self {
            zone: jiff::tz::offset(8),
            form: TimeForm::Plain,
        }
    }
}

impl TimeStyle {
    /// The JSON value of `t` in this style (a number for `epochMillis`, else a string).
    pub fn render(&self, t: Timestamp) -> Value {
        let local = || t.to_zoned(TimeZone::fixed(self.zone));
        match self.form {
            TimeForm::Plain => Value::String(local().strftime("%Y-%m-%d %H:%M:%S").to_string()),
            TimeForm::Millis => {
                Value::String(local().strftime("%Y-%m-%d %H:%M:%S%.3f").to_string())
            }
            TimeForm::Iso8601 if self.zone == Offset::UTC => {
                Value::String(local().strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
            }
            TimeForm::Iso8601 => {
                Value::String(local().strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
            }
            TimeForm::Iso8601Local => {
                Value::String(local().strftime("%Y-%m-%dT%H:%M:%S").to_string())
            }
            TimeForm::EpochMillis => Value::from(t.as_millisecond()),
            TimeForm::EpochMillisString => Value::String(t.as_millisecond().to_string()),
            TimeForm::EpochSeconds => Value::from(t.as_second()),
        }
    }
}

/// An HTTP `Date` value (RFC 9110's IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn http_date(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC)
        .strftime("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_and_print() {
        for (raw, want) in [
            ("UTC", "+00:00"),
            ("z", "+00:00"),
            ("+08:00", "+08:00"),
            ("-05:00", "-05:00"),
            ("+0530", "+05:30"),
            ("+08", "+08:00"),
            (" -03:30 ", "-03:30"),
        ] {
            assert_eq!(offset_name(parse_offset(raw).unwrap()), want, "{raw}");
        }
        for bad in [
            "",
            "8",
            "+8",
            "+08:0",
            "+19:00",
            "+08:60",
            "Asia/Shanghai",
            "+٠٨:00",
            "+a€",
        ] {
            assert!(parse_offset(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_form_renders_the_same_instant() {
        let t: Timestamp = "2020-12-17T13:06:45.678Z".parse().unwrap();
        let style = |zone: &str, form| TimeStyle {
            zone: parse_offset(zone).unwrap(),
            form,
        };
        let cases = [
            (
                "+08:00",
                TimeForm::Plain,
                Value::from("2020-12-17 21:06:45"),
            ),
            ("UTC", TimeForm::Plain, Value::from("2020-12-17 13:06:45")),
            (
                "-05:00",
                TimeForm::Millis,
                Value::from("2020-12-17 08:06:45.678"),
            ),
            (
                "UTC",
                TimeForm::Iso8601,
                Value::from("2020-12-17T13:06:45Z"),
            ),
            (
                "+08:00",
                TimeForm::Iso8601,
                Value::from("2020-12-17T21:06:45+08:00"),
            ),
            (
                "+08:00",
                TimeForm::EpochMillis,
                Value::from(1_608_210_405_678_i64),
            ),
            (
                "UTC",
                TimeForm::EpochMillisString,
                Value::from("1608210405678"),
            ),
            (
                "-05:00",
                TimeForm::Iso8601Local,
                Value::from("2020-12-17T08:06:45"),
            ),
            (
                "+08:00",
                TimeForm::EpochSeconds,
                Value::from(1_608_210_405_i64),
            ),
        ];
        for (zone, form, want) in cases {
            assert_eq!(style(zone, form).render(t), want, "{zone} {form}");
        }
        assert_eq!(TimeStyle::default().render(t), "2020-12-17 21:06:45");
        let whole: Timestamp = "2020-12-17T13:06:45Z".parse().unwrap();
        assert_eq!(
            style("UTC", TimeForm::Millis).render(whole),
            "2020-12-17 13:06:45.000"
        );
    }

    #[test]
    fn forms_parse_by_name() {
        for form in TimeForm::ALL {
            assert_eq!(form.name().parse::<TimeForm>(), Ok(form));
            let json = serde_json::to_value(form).unwrap();
            assert_eq!(json, form.name());
        }
        assert!("rfc2822".parse::<TimeForm>().is_err());
    }

    #[test]
    fn http_dates_are_gmt() {
        let t: Timestamp = "1994-11-06T08:49:37.9Z".parse().unwrap();
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
