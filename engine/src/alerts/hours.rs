//! The "outside hours" filter of trail rules: a daily time window, the
//! days it applies on and a fixed UTC offset; a record matches when its
//! local time falls outside the window (or on a day not listed).
//!
//! The offset is fixed: daylight saving time is not followed (a rule for
//! Central European working hours says `+01:00` in winter and must be
//! changed to `+02:00` for summer), so a record's local time never depends
//! on a time-zone database the nodes might disagree on.

use serde::{Deserialize, Serialize};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn every_day() -> String {
    "mon-sun".into()
}

fn utc() -> String {
    "+00:00".into()
}

/// Working hours as written by the operator (`08:00-18:00`, `mon-fri`,
/// `+01:00`); records outside them match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutsideHours {
    /// `HH:MM-HH:MM`, start inclusive, end exclusive; a start after the
    /// end (`22:00-06:00`) is a window across midnight.
    pub hours: String,
    /// Days the window applies on: `mon-fri`, `sat,sun`, `mon-wed,fri`;
    /// every record on another day matches.
    #[serde(default = "every_day")]
    pub days: String,
    /// Fixed offset from UTC of the local time, `+01:00` or `-05:30`.
    #[serde(default = "utc")]
    pub tz_offset: String,
}

/// [`OutsideHours`] parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    start_min: u32,
    end_min: u32,
    /// Bit `d` set: weekday `d` (0 = Monday) is a working day.
    days: u8,
    offset_secs: i64,
}

impl OutsideHours {
    /// Refuses a window that does not parse, with the reason.
    pub fn validate(&self) -> Result<(), String> {
        self.parse().map(|_| ())
    }

    /// Whether a record at Unix milliseconds `t_ms` falls outside the
    /// working hours (a window that does not parse matches nothing; rules
    /// are validated before they are stored).
    pub fn outside(&self, t_ms: u64) -> bool {
        let Ok(w) = self.parse() else {
            return false;
        };
        let local = i64::try_from(t_ms / 1000).unwrap_or(i64::MAX) + w.offset_secs;
        let day = local.div_euclid(86_400);
        // 1970-01-01 was a Thursday (weekday 3 counting from Monday).
        let weekday = (day + 3).rem_euclid(7) as u32;
        let minute = (local.rem_euclid(86_400) / 60) as u32;
        let in_hours = if w.start_min < w.end_min {
            (w.start_min..w.end_min).contains(&minute)
        } else {
            minute >= w.start_min || minute < w.end_min
        };
        let working_day = w.days & (1 << weekday) != 0;
        !(working_day && in_hours)
    }

    fn parse(&self) -> Result<Window, String> {
        let (start, end) = self
            .hours
            .split_once('-')
            .ok_or("outside_hours.hours must be HH:MM-HH:MM")?;
        let (start_min, end_min) = (clock_minutes(start)?, clock_minutes(end)?);
        if start_min == end_min {
            return Err("outside_hours.hours must not start and end at the same time".into());
        }
        Ok(Window {
            start_min,
            end_min,
            days: day_mask(&self.days)?,
            offset_secs: offset_secs(&self.tz_offset)?,
        })
    }
}

/// `HH:MM` (00:00 … 24:00) in minutes.
fn clock_minutes(s: &str) -> Result<u32, String> {
    let bad = || format!("outside_hours: {s:?} is not a time HH:MM");
    let (h, m) = s.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `mon-fri,sun` as a bit mask (bit 0 = Monday); a range may wrap
/// (`fri-mon`).
fn day_mask(s: &str) -> Result<u8, String> {
    let day = |d: &str| {
        DAYS.iter()
            .position(|x| x.eq_ignore_ascii_case(d.trim()))
            .ok_or_else(|| format!("outside_hours: {d:?} is not a day (mon … sun)"))
    };
    let mut mask = 0u8;
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day(a)?, day(b)?);
                let mut d = a;
                loop {
                    mask |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => mask |= 1 << day(part)?,
        }
    }
    Ok(mask)
}

/// `+01:00`, `-05:30`, `Z` in seconds east of UTC (at most 14 hours).
fn offset_secs(s: &str) -> Result<i64, String> {
    let bad = || format!("outside_hours: {s:?} is not a UTC offset such as +01:00");
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") {
        return Ok(0);
    }
    let (sign, rest) = match s.as_bytes().first() {
        Some(b'+') => (1, &s[1..]),
        Some(b'-') => (-1, &s[1..]),
        _ => return Err(bad()),
    };
    let minutes = i64::from(clock_minutes(rest).map_err(|_| bad())?);
    if minutes > 14 * 60 {
        return Err(bad());
    }
    Ok(sign * minutes * 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::record::parse_time_ms;

    fn office() -> OutsideHours {
        OutsideHours {
            hours: "08:00-18:00".into(),
            days: "mon-fri".into(),
            tz_offset: "+01:00".into(),
        }
    }

    fn at(time: &str) -> u64 {
        parse_time_ms(time).unwrap()
    }

    #[test]
    fn working_hours_in_the_local_offset_do_not_match() {
        let o = office();
        // Monday 2026-11-30: 07:30Z is 08:30 local, inside.
        assert!(!o.outside(at("2026-11-30T07:30:00Z")));
        // 06:59Z is 07:59 local: before the window.
        assert!(o.outside(at("2026-11-30T06:59:00Z")));
        // 17:00Z is 18:00 local: the end is exclusive.
        assert!(o.outside(at("2026-11-30T17:00:00Z")));
        assert!(!o.outside(at("2026-11-30T16:59:59Z")));
        // Saturday 2026-12-05 at noon local is outside (not a working day).
        assert!(o.outside(at("2026-12-05T11:00:00Z")));
        // Friday 23:30Z is Saturday 00:30 local.
        assert!(o.outside(at("2026-12-04T23:30:00Z")));
    }

    #[test]
    fn windows_across_midnight_and_odd_offsets() {
        let night = OutsideHours {
            hours: "22:00-06:00".into(),
            days: "sat,sun,mon-fri".into(),
            tz_offset: "-05:30".into(),
        };
        // 03:00Z is 21:30 local: outside the night shift.
        assert!(night.outside(at("2026-11-30T03:00:00Z")));
        // 04:00Z is 22:30 local: inside.
        assert!(!night.outside(at("2026-11-30T04:00:00Z")));
        // 11:00Z is 05:30 local: inside; 11:30Z is 06:00 local: outside.
        assert!(!night.outside(at("2026-11-30T11:00:00Z")));
        assert!(night.outside(at("2026-11-30T11:30:00Z")));
        // A wrapping day range.
        assert_eq!(day_mask("fri-mon").unwrap(), 0b111_0001);
    }

    #[test]
    fn malformed_windows_are_refused() {
        for (hours, days, tz) in [
            ("8-18", "mon-fri", "+01:00"),
            ("08:00-08:00", "mon-fri", "+01:00"),
            ("08:00-25:00", "mon-fri", "+01:00"),
            ("08:00-18:00", "mon-fry", "+01:00"),
            ("08:00-18:00", "mon-fri", "01:00"),
            ("08:00-18:00", "mon-fri", "+15:00"),
        ] {
            let o = OutsideHours {
                hours: hours.into(),
                days: days.into(),
                tz_offset: tz.into(),
            };
            assert!(o.validate().is_err(), "{o:?}");
            assert!(!o.outside(at("2026-11-30T03:00:00Z")));
        }
        office().validate().unwrap();
    }
}
