//! Calendar arithmetic on [`Timestamp`]s (ms since the Unix epoch, UTC),
//! time of day in a zone, and time zones.
//!
//! Plugins carry no time-zone database: the host resolves each agent's zone
//! to its offset at the evaluation's `now` (`Agent::utc_offset_minutes`),
//! and [`utc_offset`] asks the host for any IANA zone at any instant
//! (daylight saving time included), so a [`Zone`] can be named in
//! configuration.

use crate::{Shift, Timestamp, Weekday};
use alloc::string::String;

/// One second, in ms.
pub const SECOND: i64 = 1_000;
/// One minute, in ms.
pub const MINUTE: i64 = 60 * SECOND;
/// One hour, in ms.
pub const HOUR: i64 = 60 * MINUTE;
/// One day, in ms.
pub const DAY: i64 = 24 * HOUR;

/// Days since 1970-01-01 of the civil date `year-month-day` (proleptic
/// Gregorian; Howard Hinnant's algorithm).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of a day number (see
/// [`days_from_civil`]).
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
    (year, month, day)
}

/// The UTC timestamp of a civil date and time.
pub fn timestamp(
    year: i32,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
) -> Timestamp {
    days_from_civil(year, month, day) * DAY
        + i64::from(hour) * HOUR
        + i64::from(minute) * MINUTE
        + i64::from(second) * SECOND
}

/// Parse `YYYY-MM-DD` into a day number.
pub fn parse_date(s: &str) -> Option<i64> {
    let mut parts = s.trim().split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    let valid = parts.next().is_none() && (1..=12).contains(&month) && (1..=31).contains(&day);
    let days = days_from_civil(year, month, day);
    // Reject dates like 2026-02-30 that roll over into another month.
    (valid && civil_from_days(days) == (year, month, day)).then_some(days)
}

/// Parse `HH:MM` (24 h) into minutes after midnight; `24:00` is allowed as
/// the end of a day.
pub fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    let total = h.checked_mul(60)?.checked_add(m)?;
    (m < 60 && total <= 24 * 60).then_some(total)
}

/// The weekday of a day number.
pub fn weekday_of_day(days: i64) -> Weekday {
    // 1970-01-01 was a Thursday.
    match (days + 3).rem_euclid(7) {
        0 => Weekday::Monday,
        1 => Weekday::Tuesday,
        2 => Weekday::Wednesday,
        3 => Weekday::Thursday,
        4 => Weekday::Friday,
        5 => Weekday::Saturday,
        _ => Weekday::Sunday,
    }
}

/// A moment as seen on a wall clock in some zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    /// Local day number (days since 1970-01-01 in that zone).
    pub day: i64,
    /// Local weekday.
    pub weekday: Weekday,
    /// Minutes after local midnight, 0..1440.
    pub minute_of_day: u16,
}

/// `ts` on the wall clock of a zone `utc_offset_minutes` ahead of UTC.
pub fn local(ts: Timestamp, utc_offset_minutes: i32) -> LocalTime {
    let shifted = ts + i64::from(utc_offset_minutes) * MINUTE;
    let day = shifted.div_euclid(DAY);
    LocalTime {
        day,
        weekday: weekday_of_day(day),
        minute_of_day: (shifted.rem_euclid(DAY) / MINUTE) as u16,
    }
}

/// Whether `ts` falls within one of `shifts` in a zone `utc_offset_minutes`
/// ahead of UTC. No shifts at all means "always on".
pub fn within_shifts(ts: Timestamp, utc_offset_minutes: i32, shifts: &[Shift]) -> bool {
    if shifts.is_empty() {
        return true;
    }
    let t = local(ts, utc_offset_minutes);
    shifts.iter().any(|s| {
        s.day == t.weekday && s.start_minute <= t.minute_of_day && t.minute_of_day < s.end_minute
    })
}

/// Parse a weekday name (`mon`, `monday`, any case).
pub fn parse_weekday(s: &str) -> Option<Weekday> {
    let s = s.trim().to_ascii_lowercase();
    let day = match s.get(..3)? {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    };
    Some(day)
}

/// Format a duration in ms for people: `45s`, `12m`, `4h`, `2h 30m`, `3d 4h`.
pub fn human_duration(ms: i64) -> alloc::string::String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    let (d, h, m, s) = (
        ms / 86_400_000,
        ms / 3_600_000 % 24,
        ms / 60_000 % 60,
        ms / 1000 % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => alloc::format!("{sign}{s}s"),
        (0, 0, m) => alloc::format!("{sign}{m}m"),
        (0, h, 0) => alloc::format!("{sign}{h}h"),
        (0, h, m) => alloc::format!("{sign}{h}h {m}m"),
        (d, 0, _) => alloc::format!("{sign}{d}d"),
        (d, h, _) => alloc::format!("{sign}{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_round_trip() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        for days in [-1_000_000, -1, 0, 59, 60, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "day {days}");
        }
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    }

    #[test]
    fn timestamps_match_known_instants() {
        // 2026-11-27T09:30:00Z
        assert_eq!(timestamp(2026, 11, 27, 9, 30, 0), 1_795_771_800_000);
    }

    #[test]
    fn weekdays_are_right() {
        assert_eq!(weekday_of_day(0), Weekday::Thursday);
        assert_eq!(
            weekday_of_day(parse_date("2026-11-27").unwrap()),
            Weekday::Friday
        );
        assert_eq!(weekday_of_day(-1), Weekday::Wednesday);
    }

    #[test]
    fn dates_and_times_parse_strictly() {
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(parse_date("2026-13-01"), None);
        assert!(parse_date("2024-02-29").is_some());
        assert_eq!(parse_hhmm("09:30"), Some(570));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("24:01"), None);
        assert_eq!(parse_hhmm("9:60"), None);
        assert_eq!(parse_weekday("Tuesday"), Some(Weekday::Tuesday));
        assert_eq!(parse_weekday("xx"), None);
    }

    #[test]
    fn local_time_applies_the_offset_across_midnight() {
        // Friday 2026-11-27 23:30 UTC is Saturday 00:30 in UTC+1.
        let ts = timestamp(2026, 11, 27, 23, 30, 0);
        let t = local(ts, 60);
        assert_eq!(t.weekday, Weekday::Saturday);
        assert_eq!(t.minute_of_day, 30);
        // And Friday 18:30 in UTC-5.
        let t = local(ts, -300);
        assert_eq!(
            (t.weekday, t.minute_of_day),
            (Weekday::Friday, 18 * 60 + 30)
        );
    }

    #[test]
    fn shifts_bound_working_hours() {
        let shifts = [Shift {
            day: Weekday::Friday,
            start_minute: 9 * 60,
            end_minute: 17 * 60,
        }];
        assert!(within_shifts(timestamp(2026, 11, 27, 9, 0, 0), 0, &shifts));
        assert!(!within_shifts(
            timestamp(2026, 11, 27, 17, 0, 0),
            0,
            &shifts
        ));
        // 08:30 UTC is 09:30 in UTC+1.
        assert!(within_shifts(
            timestamp(2026, 11, 27, 8, 30, 0),
            60,
            &shifts
        ));
        assert!(within_shifts(0, 0, &[]));
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(45 * SECOND), "45s");
        assert_eq!(human_duration(30 * MINUTE), "30m");
        assert_eq!(human_duration(4 * HOUR), "4h");
        assert_eq!(human_duration(2 * HOUR + 30 * MINUTE), "2h 30m");
        assert_eq!(human_duration(3 * DAY + 4 * HOUR), "3d 4h");
        assert_eq!(human_duration(-5 * MINUTE), "-5m");
    }
}

/// The offset from UTC, in minutes, of the IANA zone `zone` (e.g.
/// `Europe/Berlin`) at `at`; `None` for an unknown zone. On wasm the host
/// answers (`host.utc-offset`); natively (unit tests) the same database is
/// linked in, so both give the same answers.
pub fn utc_offset(zone: &str, at: Timestamp) -> Option<i32> {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::trigger::escalator::plugin::host::utc_offset(zone, at)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use chrono::{Offset, TimeZone};
        let tz: chrono_tz::Tz = zone.parse().ok()?;
        let at = chrono::DateTime::from_timestamp_millis(at)?;
        Some(
            tz.offset_from_utc_datetime(&at.naive_utc())
                .fix()
                .local_minus_utc()
                / 60,
        )
    }
}

/// A time zone: a fixed offset, or an IANA zone whose offset follows its
/// daylight-saving rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Zone {
    /// Minutes east of UTC, all year.
    Fixed(i32),
    /// An IANA zone, e.g. `America/New_York`.
    Named(String),
}

impl Default for Zone {
    fn default() -> Self {
        Zone::Fixed(0)
    }
}

impl Zone {
    /// A named zone, checked against the host's database; the error says
    /// what is wrong.
    pub fn named(name: &str) -> Result<Zone, String> {
        match utc_offset(name, 0) {
            Some(_) => Ok(Zone::Named(name.into())),
            None => Err(alloc::format!(
                "unknown time zone {name:?} (use an IANA name like \"Europe/Berlin\")"
            )),
        }
    }

    /// The zone's offset from UTC at `at`, in minutes.
    pub fn offset_at(&self, at: Timestamp) -> i32 {
        match self {
            Zone::Fixed(m) => *m,
            Zone::Named(name) => utc_offset(name, at).unwrap_or(0),
        }
    }

    /// Local time of day at `ts`.
    pub fn local(&self, ts: Timestamp) -> LocalTime {
        local(ts, self.offset_at(ts))
    }

    /// The UTC instant of local day `day` (see [`days_from_civil`]) at
    /// `minute` after local midnight. In a daylight-saving gap the local time
    /// does not exist and the instant after the gap's offset change is used;
    /// in an overlap the earlier instant.
    pub fn to_utc(&self, day: i64, minute: u16) -> Timestamp {
        let wall = day * DAY + i64::from(minute) * MINUTE;
        match self {
            Zone::Fixed(m) => wall - i64::from(*m) * MINUTE,
            Zone::Named(_) => {
                // The offsets in force a day before and a day after: a wall
                // time maps through one of them (zones change offset at
                // most once around a given wall time).
                let before = wall - i64::from(self.offset_at(wall - DAY)) * MINUTE;
                let after = wall - i64::from(self.offset_at(wall + DAY)) * MINUTE;
                let valid = |t: Timestamp| t + i64::from(self.offset_at(t)) * MINUTE == wall;
                match (valid(before), valid(after)) {
                    (true, true) => before.min(after),
                    (true, false) => before,
                    (false, true) => after,
                    // A gap: the wall time is skipped; read it with the
                    // offset from before the change, landing after the gap.
                    (false, false) => before,
                }
            }
        }
    }
}
