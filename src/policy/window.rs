//! Maintenance windows on a zone's wall clock: is one open now, and when does it next open.
//!
//! Pure once built: [`Window::parse`] looks the zone up in jiff's database (the system copy or
//! `TZDIR` when there is one, else the copy compiled into the binary, see Cargo.toml), and
//! everything after that is arithmetic on the loaded zone.

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::{AmbiguousOffset, TimeZone};

use super::types::{Day, MaintenanceWindow};

/// A window, checked and ready to evaluate.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    days: Vec<Weekday>,
    /// Minutes after midnight: start included, end excluded; `start < end <= 1440`.
    start: u16,
    end: u16,
    tz: TimeZone,
    /// As the user wrote it, for messages: `Mon,Fri 02:00-04:00 Asia/Shanghai`.
    label: String,
}

/// `HH:MM` to minutes after midnight; `24:00` only when `allow_end_of_day`.
fn minutes(text: &str, allow_end_of_day: bool) -> Option<u16> {
    let (h, m) = text.split_once(':')?;
    let two_digits = |s: &str| s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit());
    if !two_digits(h) || !two_digits(m) {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (0..=23, 0..=59) => Some(h * 60 + m),
        (24, 0) if allow_end_of_day => Some(1440),
        _ => None,
    }
}

impl Window {
    /// Checks what the schema cannot: the zone exists, start is before end. The schema's pattern
    /// is checked again, for objects stored before it existed or written around it.
    pub(crate) fn parse(w: &MaintenanceWindow) -> Result<Window, String> {
        let days: Vec<Weekday> = w.days.iter().map(|d| d.weekday()).collect();
        let day_names: Vec<&str> = w.days.iter().map(|d| day_name(*d)).collect();
        let label = format!(
            "{} {}-{} {}",
            day_names.join(","),
            w.start,
            w.end,
            w.time_zone
        );
        if days.is_empty() {
            return Err(format!("window {label}: days is empty, so it never opens"));
        }
        let start = minutes(&w.start, false).ok_or_else(|| {
            format!(
                "window {label}: start {:?} is not HH:MM (00:00 to 23:59)",
                w.start
            )
        })?;
        let end = minutes(&w.end, true).ok_or_else(|| {
            format!(
                "window {label}: end {:?} is not HH:MM (00:01 to 24:00)",
                w.end
            )
        })?;
        if start >= end {
            return Err(format!(
                "window {label}: start must be before end; a window across midnight is written as two \
                 windows (for example Fri 22:00-24:00 and Sat 00:00-02:00)"
            ));
        }
        let tz = jiff::tz::db().get(&w.time_zone).map_err(|_| {
            format!(
                "window {label}: unknown time zone {:?} (an IANA name such as Asia/Shanghai or UTC)",
                w.time_zone
            )
        })?;
        Ok(Window {
            days,
            start,
            end,
            tz,
            label,
        })
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Whether a request may start at `now`: on one of the days, between start and end, both
    /// read on the zone's wall clock at `now`.
    pub(crate) fn is_open(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.days.contains(&local.weekday()) && self.start <= minute && minute < self.end
    }

    /// The instants after `now` at which this window opens, over the next eight local days
    /// (enough to meet every day of the week once more), earliest first.
    ///
    /// On a day the start falls into a skipped hour (clocks moving forward), the window opens
    /// when the clock jumps, if its end is later than that; when the start is repeated (clocks
    /// moving back), it opens at the first of the two.
    pub(crate) fn openings_after(&self, now: Timestamp) -> Vec<Timestamp> {
        let today = now.to_zoned(self.tz.clone()).date();
        let mut found = Vec::new();
        let mut date = today;
        for _ in 0..=8 {
            if self.days.contains(&date.weekday())
                && let Some(t) = self.opening_on(date)
                && t > now
                && self.is_open(t)
            {
                found.push(t);
            }
            match date.tomorrow() {
                Ok(next) => date = next,
                Err(_) => break,
            }
        }
        found
    }

    fn opening_on(&self, date: Date) -> Option<Timestamp> {
        let dt = date.at((self.start / 60) as i8, (self.start % 60) as i8, 0, 0);
        match self.tz.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => offset.to_timestamp(dt).ok(),
            // The wall clock never shows this time on this day: the first instant it shows a
            // later one is the transition itself. Read at the later offset, `dt` lies just before
            // the transition, so the first transition after it is the jump.
            AmbiguousOffset::Gap { after, .. } => {
                let just_before = after.to_timestamp(dt).ok()?;
                self.tz
                    .following(just_before)
                    .next()
                    .map(|transition| transition.timestamp())
            }
            // The time is shown twice: the first one opens the window.
            AmbiguousOffset::Fold { before, .. } => before.to_timestamp(dt).ok(),
        }
    }
}

fn day_name(d: Day) -> &'static str {
    match d {
        Day::Mon => "Mon",
        Day::Tue => "Tue",
        Day::Wed => "Wed",
        Day::Thu => "Thu",
        Day::Fri => "Fri",
        Day::Sat => "Sat",
        Day::Sun => "Sun",
    }
}

/// Whether any of the windows is open at `now`.
pub(crate) fn any_open(windows: &[Window], now: Timestamp) -> bool {
    windows.iter().any(|w| w.is_open(now))
}

/// The first instant after `now` at which every list of windows has one open, within the next
/// eight days, or None when they never meet in that time. Such an instant is always the opening
/// of one of the windows (an intersection of half-open intervals starts where one of them
/// starts), so only openings need to be tried.
pub(crate) fn next_all_open(lists: &[&[Window]], now: Timestamp) -> Option<Timestamp> {
    let mut candidates: Vec<Timestamp> = lists
        .iter()
        .flat_map(|list| list.iter())
        .flat_map(|w| w.openings_after(now))
        .collect();
    candidates.sort();
    candidates.dedup();
    candidates
        .into_iter()
        .find(|t| lists.iter().all(|list| any_open(list, *t)))
}

#[cfg(test)]
mod tests {
    use super::minutes;

    #[test]
    fn hh_mm() {
        for (text, end, want) in [
            ("00:00", false, Some(0)),
            ("23:59", false, Some(1439)),
            ("24:00", false, None),
            ("24:00", true, Some(1440)),
            ("24:01", true, None),
            ("9:00", false, None),
            ("09:60", false, None),
            ("0900", false, None),
            ("+9:00", false, None),
        ] {
            assert_eq!(minutes(text, end), want, "{text} end={end}");
        }
    }
}
