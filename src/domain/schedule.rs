//! Business-hours schedules: when a `[[routing.schedules]]` entry is open. Owns parsing the
//! plain strings of the configuration (an IANA time zone, `DAYS HH:MM-HH:MM` windows, closed
//! dates) into a [`Schedule`], and answering "open at this instant?".
//!
//! Windows are judged on the local wall clock of the schedule's zone, so `09:00` means nine
//! o'clock local in winter and in summer alike. Around daylight-saving changes this means:
//! local times that a spring-forward gap skips never happen (a window `02:30-04:00` on that
//! night opens at 03:00), and local times that an autumn fold repeats are open both times.
//!
//! Semantics of the edges:
//! - a window's end is exclusive; `24:00` is allowed as an end and means midnight;
//! - an end earlier than the start runs past midnight: `fri 22:00-02:00` is open from
//!   Friday 22:00 to Saturday 02:00 local (an end of `00:00` simply stops at midnight);
//! - a closed date closes its whole local day, 00:00 to 24:00, including the after-midnight
//!   part of an overnight window that started the evening before; and an overnight window
//!   that would start on a closed date does not open at all, so its after-midnight part on
//!   the next day stays closed too (the window belongs to the day it starts on).
//!
//! Time zones come from the system's `/usr/share/zoneinfo` when it exists and otherwise from
//! the copy bundled into the binary (jiff's `tzdb-bundle-always`), which is what the
//! production image, without zoneinfo, uses.

use std::collections::BTreeSet;
use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

const MINUTES_PER_DAY: u16 = 24 * 60;

/// One business-hours schedule, ready to be asked whether it is open.
#[derive(Debug, Clone)]
pub struct Schedule {
    name: String,
    /// The canonical IANA name, for display.
    timezone: String,
    tz: TimeZone,
    windows: Vec<Window>,
    closed: BTreeSet<Date>,
}

impl Schedule {
    /// Parses one `[[routing.schedules]]` entry.
    ///
    /// Errors name the offending entry, e.g. "open[1] `sat 10:00-25:00`: … " or
    /// "timezone `Europe/Madird` is not an IANA time zone".
    pub fn parse(
        name: &str,
        timezone: &str,
        open: &[String],
        closed_dates: &[String],
    ) -> Result<Schedule, String> {
        Self::parse_with_db(name, timezone, open, closed_dates, jiff::tz::db())
    }

    /// [`Schedule::parse`] against a given time-zone database (tests use the bundled one,
    /// the only one production has).
    fn parse_with_db(
        name: &str,
        timezone: &str,
        open: &[String],
        closed_dates: &[String],
        db: &TimeZoneDatabase,
    ) -> Result<Schedule, String> {
        let name = name.trim();
        if name.is_empty() {
            return Err("name must not be empty".to_owned());
        }
        // jiff also knows `Etc/Unknown` and fixed offsets, which have no IANA name: reject them
        // with the misspellings, since none of them follows daylight saving.
        let tz = db
            .get(timezone.trim())
            .ok()
            .filter(|tz| tz.iana_name().is_some())
            .ok_or_else(|| format!("timezone `{timezone}` is not an IANA time zone"))?;
        let canonical = tz.iana_name().unwrap_or(timezone).to_owned();

        if open.is_empty() {
            return Err("open must list at least one `DAYS HH:MM-HH:MM` window".to_owned());
        }
        let windows = open
            .iter()
            .enumerate()
            .map(|(i, entry)| Window::parse(entry).map_err(|e| format!("open[{i}] `{entry}`: {e}")))
            .collect::<Result<Vec<_>, _>>()?;

        let closed = closed_dates
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                parse_date(entry).map_err(|e| format!("closed_dates[{i}] `{entry}`: {e}"))
            })
            .collect::<Result<BTreeSet<_>, _>>()?;

        Ok(Schedule {
            name: name.to_owned(),
            timezone: canonical,
            tz,
            windows,
            closed,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the schedule is open at this instant (Unix milliseconds, UTC).
    ///
    /// Instants outside the years -9999..=9999 are closed.
    pub fn is_open_at(&self, unix_ms: i64) -> bool {
        let Ok(instant) = Timestamp::from_millisecond(unix_ms) else {
            return false;
        };
        let local = self.tz.to_datetime(instant);
        let today = local.date();
        if self.closed.contains(&today) {
            return false;
        }
        // An overnight window that started yesterday only runs on if yesterday was open.
        let yesterday_closed = today
            .yesterday()
            .map_or(true, |yesterday| self.closed.contains(&yesterday));
        // Whole seconds suffice: window edges are whole minutes, and the end is exclusive.
        let second = i32::from(local.hour()) * 3600
            + i32::from(local.minute()) * 60
            + i32::from(local.second());
        self.windows
            .iter()
            .any(|w| w.covers(today.weekday(), second, yesterday_closed))
    }
}

impl fmt::Display for Schedule {
    /// `support-hours (Europe/Madrid): mon-fri 09:00-18:00, sat 10:00-14:00; closed 2026-12-25`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): ", self.name, self.timezone)?;
        for (i, window) in self.windows.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{window}")?;
        }
        for (i, date) in self.closed.iter().enumerate() {
            f.write_str(if i == 0 { "; closed " } else { ", " })?;
            write!(f, "{date}")?;
        }
        Ok(())
    }
}

/// One `DAYS HH:MM-HH:MM` entry: the days it starts on and its local start and end.
#[derive(Debug, Clone, PartialEq)]
struct Window {
    /// As written, normalised (lower case, short names), for display.
    days_spec: Vec<DaySpec>,
    /// Bit `n` is set when the window starts on the weekday with Monday-zero offset `n`.
    days: u8,
    /// Minutes since local midnight: start in 0..1440, end in 0..=1440, never equal.
    start: u16,
    end: u16,
}

impl Window {
    fn parse(entry: &str) -> Result<Window, String> {
        // The times are the last word; the days are everything before it, so `mon, wed` works.
        let (days, times) = entry
            .trim()
            .rsplit_once(char::is_whitespace)
            .ok_or("expected `DAYS HH:MM-HH:MM`, e.g. `mon-fri 09:00-18:00`")?;
        let days_spec = parse_days(days.trim())?;
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| format!("expected `HH:MM-HH:MM` after the days, found `{times}`"))?;
        let start = parse_time(start)?;
        let end = parse_time(end)?;
        if start == MINUTES_PER_DAY {
            return Err("a window cannot start at 24:00; use 00:00".to_owned());
        }
        // `00:00-24:00` is the whole day; equal ends are ambiguous (empty, or all day?).
        if start == end {
            return Err(format!(
                "start and end are both {}: use 00:00-24:00 for a whole day",
                HhMm(start)
            ));
        }
        let days = days_spec.iter().fold(0u8, |mask, spec| mask | spec.mask());
        Ok(Window {
            days_spec,
            days,
            start,
            end,
        })
    }

    fn starts_on(&self, day: Weekday) -> bool {
        self.days & day_bit(day) != 0
    }

    /// Whether this window covers `second` (since local midnight) of a day that is a `today`.
    fn covers(&self, today: Weekday, second: i32, yesterday_closed: bool) -> bool {
        let start = i32::from(self.start) * 60;
        let end = i32::from(self.end) * 60;
        if start < end {
            self.starts_on(today) && start <= second && second < end
        } else {
            // Overnight: the evening part today, or the morning part of yesterday's window.
            (self.starts_on(today) && second >= start)
                || (!yesterday_closed && self.starts_on(today.previous()) && second < end)
        }
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, spec) in self.days_spec.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{spec}")?;
        }
        write!(f, " {}-{}", HhMm(self.start), HhMm(self.end))
    }
}

/// One item of a comma-separated DAYS list.
#[derive(Debug, Clone, Copy, PartialEq)]
enum DaySpec {
    Daily,
    Day(Weekday),
    /// Inclusive, and wrapping past Sunday: `fri-mon` is Friday to Monday.
    Range(Weekday, Weekday),
}

impl DaySpec {
    fn mask(self) -> u8 {
        match self {
            DaySpec::Daily => 0b111_1111,
            DaySpec::Day(day) => day_bit(day),
            DaySpec::Range(first, last) => {
                let mut mask = day_bit(first);
                let mut day = first;
                while day != last {
                    day = day.next();
                    mask |= day_bit(day);
                }
                mask
            }
        }
    }
}

impl fmt::Display for DaySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DaySpec::Daily => f.write_str("daily"),
            DaySpec::Day(day) => f.write_str(short_name(day)),
            DaySpec::Range(first, last) => {
                write!(f, "{}-{}", short_name(first), short_name(last))
            }
        }
    }
}

fn parse_days(days: &str) -> Result<Vec<DaySpec>, String> {
    if days.eq_ignore_ascii_case("daily") {
        return Ok(vec![DaySpec::Daily]);
    }
    days.split(',')
        .map(|item| {
            let item = item.trim();
            if item.is_empty() {
                return Err(format!("empty day in `{days}`"));
            }
            if item.eq_ignore_ascii_case("daily") {
                return Err("`daily` cannot be combined with other days".to_owned());
            }
            match item.split_once('-') {
                Some((first, last)) => Ok(DaySpec::Range(parse_day(first)?, parse_day(last)?)),
                None => Ok(DaySpec::Day(parse_day(item)?)),
            }
        })
        .collect()
}

fn parse_day(day: &str) -> Result<Weekday, String> {
    let day = day.trim();
    Ok(match day.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "unknown day `{day}` (expected mon, tue, wed, thu, fri, sat, sun or daily)"
            ))
        }
    })
}

/// `HH:MM` (two digits each), 00:00 to 24:00, as minutes since midnight.
fn parse_time(time: &str) -> Result<u16, String> {
    let malformed = || format!("time `{time}` is not HH:MM (00:00 to 24:00)");
    let bytes = time.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return Err(malformed());
    }
    let two_digits = |at: usize| -> Option<u16> {
        let (tens, ones) = (bytes[at], bytes[at + 1]);
        (tens.is_ascii_digit() && ones.is_ascii_digit())
            .then(|| u16::from(tens - b'0') * 10 + u16::from(ones - b'0'))
    };
    let (hour, minute) = two_digits(0).zip(two_digits(3)).ok_or_else(malformed)?;
    if minute > 59 || hour > 24 || (hour == 24 && minute != 0) {
        return Err(malformed());
    }
    Ok(hour * 60 + minute)
}

/// `YYYY-MM-DD`, and a real calendar date.
fn parse_date(date: &str) -> Result<Date, String> {
    let bytes = date.as_bytes();
    let shape_ok = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape_ok {
        return Err("expected a date as YYYY-MM-DD".to_owned());
    }
    // The shape check above makes these slices ASCII digits, so they parse.
    let year: i16 = date[0..4].parse().map_err(|_| "bad year".to_owned())?;
    let month: i8 = date[5..7].parse().map_err(|_| "bad month".to_owned())?;
    let day: i8 = date[8..10].parse().map_err(|_| "bad day".to_owned())?;
    Date::new(year, month, day).map_err(|_| "not a calendar date".to_owned())
}

fn day_bit(day: Weekday) -> u8 {
    1 << day.to_monday_zero_offset()
}

fn short_name(day: Weekday) -> &'static str {
    match day {
        Weekday::Monday => "mon",
        Weekday::Tuesday => "tue",
        Weekday::Wednesday => "wed",
        Weekday::Thursday => "thu",
        Weekday::Friday => "fri",
        Weekday::Saturday => "sat",
        Weekday::Sunday => "sun",
    }
}

/// Minutes since midnight shown as `HH:MM` (1440 as `24:00`).
struct HhMm(u16);

impl fmt::Display for HhMm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.0 / 60, self.0 % 60)
    }
}

#[cfg(test)]
mod tests;
