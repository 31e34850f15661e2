//! The times SAE writes into change orders (`CreateTime`, `FinishTime`).
//!
//! SAE documents `CreateTime` as `"2020-12-17 21:06:45"`: one-second resolution and no time zone.
//! Its SDKs and other endpoints have been seen to carry the same instant as ISO 8601 with a zone or
//! as Unix milliseconds, with or without fractions of a second. Nothing here guesses a zone: a time
//! without one stays a civil (wall-clock) time, and the caller decides what it may conclude from it
//! (see `decide`'s window rules and the offset it learns from SAE's own answers).

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Timestamp};

/// A time read from an SAE answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaeTime {
    /// The text named its zone (ISO 8601 with `Z` or an offset) or was a Unix epoch number.
    Absolute(Timestamp),
    /// A wall-clock time in a zone SAE does not name.
    Civil(DateTime),
}

impl SaeTime {
    /// The instant, given the offset civil times are written in (None: unknown, so a civil time
    /// has no instant).
    pub fn instant(self, offset: Option<Offset>) -> Option<Timestamp> {
        match self {
            Self::Absolute(t) => Some(t),
            Self::Civil(civil) => civil
                .to_zoned(TimeZone::fixed(offset?))
                .ok()
                .map(|z| z.timestamp()),
        }
    }

    /// The earliest and latest instant this time can stand for over every UTC offset in use
    /// (−12:00 to +14:00), for when the offset is not known.
    pub fn bounds(self) -> Option<(Timestamp, Timestamp)> {
        match self {
            Self::Absolute(t) => Some((t, t)),
            Self::Civil(_) => {
                // A civil time is earliest as an instant in the zone furthest ahead of UTC.
                let earliest = self.instant(Some(Offset::constant(14)))?;
                let latest = self.instant(Some(Offset::constant(-12)))?;
                Some((earliest, latest))
            }
        }
    }

    /// The offset that makes this civil time the instant `at`, rounded to the quarter hour every
    /// zone in use is a multiple of, and what is left over (SAE's clock against ours, plus how
    /// far `at` is from the true moment). None for an absolute time or an offset out of range.
    pub fn offset_at(self, at: Timestamp) -> Option<(Offset, SignedDuration)> {
        let Self::Civil(civil) = self else {
            return None;
        };
        let as_utc = civil.to_zoned(TimeZone::UTC).ok()?.timestamp();
        let apart = as_utc.duration_since(at).as_secs();
        const QUARTER: i64 = 15 * 60;
        let quarters = (apart + apart.signum() * QUARTER / 2) / QUARTER;
        let seconds = i32::try_from(quarters * QUARTER).ok()?;
        let offset = Offset::from_seconds(seconds).ok()?;
        if !(-12 * 3600..=14 * 3600).contains(&seconds) {
            return None;
        }
        let rest = SignedDuration::from_secs(apart - i64::from(seconds));
        Some((offset, rest))
    }
}

/// What is known about the zone of the civil times SAE writes in a region.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CreateTimeZone {
    /// Not learned yet: a civil time could be in any zone.
    #[default]
    Unknown,
    /// Civil times are wall-clock times at this UTC offset.
    Offset(Offset),
    /// SAE names the zone in its times (ISO 8601 with an offset, or epoch numbers).
    Named,
}

/// How [`CreateTimeZone::Named`] is written in a status.
const NAMED: &str = "named";

impl CreateTimeZone {
    /// Whether times can be placed exactly (an absolute time always can).
    pub fn is_known(self) -> bool {
        self != Self::Unknown
    }

    /// The instant of `time`, or None when it cannot be placed (a civil time in an unknown zone).
    pub fn instant(self, time: SaeTime) -> Option<Timestamp> {
        match (self, time) {
            (_, SaeTime::Absolute(t)) => Some(t),
            (Self::Offset(offset), civil) => civil.instant(Some(offset)),
            (Self::Unknown | Self::Named, SaeTime::Civil(_)) => None,
        }
    }

    /// What a status records: `+08:00`-style offsets, or `named`. Unknown is not recorded.
    pub fn to_status(self) -> Option<String> {
        match self {
            Self::Unknown => None,
            Self::Offset(offset) => Some(offset_text(offset)),
            Self::Named => Some(NAMED.to_string()),
        }
    }

    /// Reads what [`Self::to_status`] wrote; anything else is Unknown (never a guess).
    pub fn from_status(text: &str) -> Self {
        let text = text.trim();
        if text == NAMED {
            return Self::Named;
        }
        parse_offset(text).map_or(Self::Unknown, Self::Offset)
    }
}

/// `+08:00`, `-05:00`, `+05:45`, `+00:00`.
pub fn offset_text(offset: Offset) -> String {
    let seconds = offset.seconds();
    let sign = if seconds < 0 { '-' } else { '+' };
    let minutes = seconds.unsigned_abs() / 60;
    format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Reads `+08:00`, `-0500`, `+8`, `UTC`/`Z` (offset zero); None for anything else.
pub fn parse_offset(text: &str) -> Option<Offset> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text.eq_ignore_ascii_case("z") {
        return Some(Offset::UTC);
    }
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "0"),
    };
    let hours: i32 = hours.parse().ok()?;
    let minutes: i32 = minutes.parse().ok()?;
    if !(0..=14).contains(&hours) || !(0..60).contains(&minutes) {
        return None;
    }
    Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

/// Reads every form of an SAE time seen in its answers and SDKs: `2020-12-17 21:06:45`, with
/// fractions (`21:06:45.123`), ISO 8601 with or without a zone (`2020-12-17T13:06:45Z`,
/// `…+08:00`, `2020-12-17T21:06:45`), and Unix time in milliseconds (or seconds) as digits.
/// None when it is none of these: the caller must treat such a time as "could be any".
pub fn parse_sae_time(text: &str) -> Option<SaeTime> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let number: i64 = text.parse().ok()?;
        // Ten digits or fewer are seconds (until the year 2286); more are milliseconds.
        let t = if text.len() <= 10 {
            Timestamp::from_second(number).ok()?
        } else {
            Timestamp::from_millisecond(number).ok()?
        };
        return Some(SaeTime::Absolute(t));
    }
    if let Ok(t) = text.parse::<Timestamp>() {
        return Some(SaeTime::Absolute(t));
    }
    // jiff's civil parser takes `T` or a space between date and time, and optional fractions.
    text.parse::<DateTime>().ok().map(SaeTime::Civil)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn civil(text: &str) -> SaeTime {
        SaeTime::Civil(text.parse().unwrap())
    }

    fn utc(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn every_form_sae_and_its_sdks_write_is_read() {
        let cases: &[(&str, Option<SaeTime>)] = &[
            ("2020-12-17 21:06:45", Some(civil("2020-12-17T21:06:45"))),
            (" 2020-12-17 21:06:45 ", Some(civil("2020-12-17T21:06:45"))),
            (
                "2020-12-17 21:06:45.123",
                Some(civil("2020-12-17T21:06:45.123")),
            ),
            ("2020-12-17T21:06:45", Some(civil("2020-12-17T21:06:45"))),
            (
                "2020-12-17T13:06:45Z",
                Some(SaeTime::Absolute(utc("2020-12-17T13:06:45Z"))),
            ),
            (
                "2020-12-17T21:06:45+08:00",
                Some(SaeTime::Absolute(utc("2020-12-17T13:06:45Z"))),
            ),
            (
                "2020-12-17T13:06:45.5Z",
                Some(SaeTime::Absolute(utc("2020-12-17T13:06:45.5Z"))),
            ),
            (
                "1608210405000",
                Some(SaeTime::Absolute(utc("2020-12-17T13:06:45Z"))),
            ),
            (
                "1608210405",
                Some(SaeTime::Absolute(utc("2020-12-17T13:06:45Z"))),
            ),
            ("", None),
            ("yesterday", None),
            ("2020-13-45 99:99:99", None),
            ("99999999999999999999999", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_sae_time(text), *want, "{text:?}");
        }
    }

    #[test]
    fn a_civil_time_has_an_instant_only_with_an_offset() {
        let t = civil("2020-12-17T21:06:45");
        assert_eq!(t.instant(None), None);
        assert_eq!(
            t.instant(Some(Offset::constant(8))),
            Some(utc("2020-12-17T13:06:45Z"))
        );
        assert_eq!(
            t.instant(Some(Offset::UTC)),
            Some(utc("2020-12-17T21:06:45Z"))
        );
        let (earliest, latest) = t.bounds().unwrap();
        assert_eq!(earliest, utc("2020-12-17T07:06:45Z"));
        assert_eq!(latest, utc("2020-12-18T09:06:45Z"));
    }

    #[test]
    fn the_offset_is_learned_to_the_quarter_hour_with_the_rest_kept() {
        let t = civil("2020-12-17T21:06:45");
        let (offset, rest) = t.offset_at(utc("2020-12-17T13:06:43Z")).unwrap();
        assert_eq!(offset, Offset::constant(8));
        assert_eq!(rest, SignedDuration::from_secs(2));
        let (offset, rest) = t.offset_at(utc("2020-12-17T21:06:50Z")).unwrap();
        assert_eq!(offset, Offset::UTC);
        assert_eq!(rest, SignedDuration::from_secs(-5));
        let (offset, _) = t.offset_at(utc("2020-12-18T02:06:45Z")).unwrap();
        assert_eq!(offset, Offset::from_seconds(-5 * 3600).unwrap());
        let (offset, _) = civil("2020-12-17T18:51:45")
            .offset_at(utc("2020-12-17T13:06:45Z"))
            .unwrap();
        assert_eq!(
            offset,
            Offset::from_seconds(5 * 3600 + 45 * 60).unwrap(),
            "Nepal"
        );
        assert_eq!(
            t.offset_at(utc("2020-12-19T13:06:45Z")),
            None,
            "two days apart is no zone"
        );
        assert_eq!(
            SaeTime::Absolute(utc("2020-12-17T13:06:45Z")).offset_at(utc("2020-12-17T13:06:45Z")),
            None
        );
    }

    #[test]
    fn the_zone_survives_a_status_round_trip_and_nothing_else_is_guessed() {
        for zone in [
            CreateTimeZone::Offset(Offset::constant(8)),
            CreateTimeZone::Offset(Offset::UTC),
            CreateTimeZone::Offset(Offset::from_seconds(-(3 * 3600 + 30 * 60)).unwrap()),
            CreateTimeZone::Named,
        ] {
            assert_eq!(
                CreateTimeZone::from_status(&zone.to_status().unwrap()),
                zone
            );
        }
        assert_eq!(CreateTimeZone::Unknown.to_status(), None);
        for junk in ["", "cst", "+25:00", "08:00", "+08:99"] {
            assert_eq!(
                CreateTimeZone::from_status(junk),
                CreateTimeZone::Unknown,
                "{junk:?}"
            );
        }
        assert_eq!(parse_offset("-0500"), Some(Offset::constant(-5)));
        assert_eq!(parse_offset("+8"), Some(Offset::constant(8)));
        assert_eq!(
            offset_text(Offset::from_seconds(-(3 * 3600 + 30 * 60)).unwrap()),
            "-03:30"
        );
    }

    #[test]
    fn a_civil_time_in_an_unknown_or_named_zone_has_no_instant() {
        let t = civil("2020-12-17T21:06:45");
        assert_eq!(CreateTimeZone::Unknown.instant(t), None);
        assert_eq!(CreateTimeZone::Named.instant(t), None);
        assert_eq!(
            CreateTimeZone::Offset(Offset::constant(8)).instant(t),
            Some(utc("2020-12-17T13:06:45Z"))
        );
        let absolute = SaeTime::Absolute(utc("2020-12-17T13:06:45Z"));
        assert_eq!(
            CreateTimeZone::Unknown.instant(absolute),
            Some(utc("2020-12-17T13:06:45Z"))
        );
    }
}
