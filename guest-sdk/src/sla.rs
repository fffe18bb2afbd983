//! SLA arithmetic: how long a ticket's clock has run, when it breaches.
//!
//! The clock runs in *business time* (a [`BusinessCalendar`]: shifts in a
//! zone, minus holidays) and pauses while the ticket waits on the customer or
//! a third party ([`pauses_clock`]). Each reopen starts a new cycle
//! ([`cycle`], [`cycle_start`]), so a plugin keyed by cycle fires once per
//! breach per cycle.

use crate::time::{Zone, parse_date, parse_hhmm, parse_weekday};
use crate::{AuthorKind, Shift, StatusChange, Ticket, TicketStatus, Timestamp};
use alloc::string::String;
use alloc::vec::Vec;

/// Whether the SLA clock stops in this status (waiting on the customer or a
/// third party).
pub fn pauses_clock(status: TicketStatus) -> bool {
    matches!(status, TicketStatus::Pending | TicketStatus::OnHold)
}

fn is_done(status: TicketStatus) -> bool {
    matches!(status, TicketStatus::Solved | TicketStatus::Closed)
}

/// How many times the ticket was reopened (went from solved/closed back to
/// an open status). The first cycle is 0.
pub fn cycle(history: &[StatusChange]) -> usize {
    history
        .windows(2)
        .filter(|w| is_done(w[0].status) && !is_done(w[1].status))
        .count()
}

/// When the current cycle started: the last reopen, else `created_at`.
pub fn cycle_start(created_at: Timestamp, history: &[StatusChange]) -> Timestamp {
    history
        .windows(2)
        .filter(|w| is_done(w[0].status) && !is_done(w[1].status))
        .map(|w| w[1].at)
        .next_back()
        .unwrap_or(created_at)
}

/// The id prefix of the note the host adds to the conversation each time
/// the ticket escalates (first, or to a higher tier): a `system` message
/// from `escalator` whose id is `escalation-` and the escalation's ordinal (1, 2, ...).
pub const ESCALATION_NOTE: &str = "escalation-";

/// When the ticket last escalated (reached its current tier): the time of
/// the host's latest escalation note, if there is one.
pub fn escalated_at(ticket: &Ticket) -> Option<Timestamp> {
    ticket
        .messages
        .iter()
        .filter(|m| {
            m.author == AuthorKind::System
                && m.author_id.as_deref() == Some("escalator")
                && m.id.starts_with(ESCALATION_NOTE)
        })
        .map(|m| m.sent_at)
        .max()
}

/// The status at time `t` according to `history` (`New` before the first
/// change).
pub fn status_at(history: &[StatusChange], t: Timestamp) -> TicketStatus {
    history
        .iter()
        .take_while(|c| c.at <= t)
        .last()
        .map_or(TicketStatus::New, |c| c.status)
}

/// The intervals within `[from, to)` in which the clock runs (the ticket is
/// neither paused nor done), in order.
pub fn running_intervals(
    history: &[StatusChange],
    from: Timestamp,
    to: Timestamp,
) -> Vec<(Timestamp, Timestamp)> {
    let mut out = Vec::new();
    if to <= from {
        return out;
    }
    let mut start = from;
    let mut status = status_at(history, from);
    for change in history.iter().filter(|c| c.at > from && c.at < to) {
        let runs = !pauses_clock(status) && !is_done(status);
        if runs && change.at > start {
            out.push((start, change.at));
        }
        start = change.at;
        status = change.status;
    }
    if !pauses_clock(status) && !is_done(status) {
        out.push((start, to));
    }
    out
}

/// Business hours: shifts in a time zone, minus holidays. With no shifts
/// the calendar is open around the clock.
#[derive(Debug, Clone, Default)]
pub struct BusinessCalendar {
    /// The zone the shifts and holidays are in.
    pub zone: Zone,
    /// Open hours; several on one day make a split shift.
    pub shifts: Vec<Shift>,
    /// Local day numbers (see [`crate::time::days_from_civil`]) on which
    /// the calendar stays closed.
    pub holidays: Vec<i64>,
}

/// A calendar as operators write it in configuration.
///
/// ```toml
/// time-zone = "Europe/Berlin"   # or utc-offset-minutes = 60
/// hours = ["mon-fri 09:00-12:00", "mon-fri 13:00-17:00", "sat 10:00-14:00"]
/// holidays = ["2026-12-25"]
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct CalendarConfig {
    /// An IANA time zone, e.g. `Europe/Berlin` (daylight saving time
    /// followed). Takes precedence over `utc_offset_minutes`.
    pub time_zone: Option<String>,
    /// A fixed offset from UTC, in minutes, for zones without a name.
    pub utc_offset_minutes: i32,
    /// Open hours: `DAY[-DAY] HH:MM-HH:MM`.
    pub hours: Vec<String>,
    /// Closed dates, `YYYY-MM-DD`.
    pub holidays: Vec<String>,
}

impl BusinessCalendar {
    /// A calendar that is always open.
    pub fn always_open() -> BusinessCalendar {
        BusinessCalendar::default()
    }

    /// Build a calendar from configuration; the error names the bad entry.
    pub fn from_config(config: &CalendarConfig) -> Result<BusinessCalendar, String> {
        let mut shifts = Vec::new();
        for entry in &config.hours {
            shifts.extend(parse_hours(entry).ok_or_else(|| {
                alloc::format!(
                    "invalid business hours {entry:?}: expected e.g. \"mon-fri 09:00-17:00\""
                )
            })?);
        }
        let holidays = config
            .holidays
            .iter()
            .map(|d| {
                parse_date(d)
                    .ok_or_else(|| alloc::format!("invalid holiday {d:?}: expected YYYY-MM-DD"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let zone = match &config.time_zone {
            Some(name) => Zone::named(name)?,
            None => Zone::Fixed(config.utc_offset_minutes),
        };
        Ok(BusinessCalendar {
            zone,
            shifts,
            holidays,
        })
    }

    /// The open intervals (UTC) of one local day, in order.
    fn open_on_day(&self, day: i64) -> Vec<(Timestamp, Timestamp)> {
        if self.holidays.contains(&day) {
            return Vec::new();
        }
        let weekday = crate::time::weekday_of_day(day);
        let mut open: Vec<_> = self
            .shifts
            .iter()
            .filter(|s| s.day == weekday && s.start_minute < s.end_minute)
            .map(|s| {
                (
                    self.zone.to_utc(day, s.start_minute),
                    self.zone.to_utc(day, s.end_minute),
                )
            })
            .collect();
        open.sort_unstable();
        open
    }

    /// Whether the calendar is open at `ts`.
    pub fn is_open(&self, ts: Timestamp) -> bool {
        self.shifts.is_empty()
            || self
                .open_on_day(self.zone.local(ts).day)
                .iter()
                .any(|&(a, b)| a <= ts && ts < b)
    }

    /// Business time between `from` and `to`, in ms.
    pub fn open_ms_between(&self, from: Timestamp, to: Timestamp) -> i64 {
        if to <= from {
            return 0;
        }
        if self.shifts.is_empty() {
            return to - from;
        }
        let first = self.zone.local(from).day;
        let last = self.zone.local(to).day;
        (first..=last)
            .flat_map(|day| self.open_on_day(day))
            .map(|(a, b)| (b.min(to) - a.max(from)).max(0))
            .sum()
    }

    /// The moment `ms` of business time after `from`; `None` if the calendar
    /// does not open within ten years.
    pub fn add_open_ms(&self, from: Timestamp, ms: i64) -> Option<Timestamp> {
        if self.shifts.is_empty() {
            return Some(from + ms);
        }
        let mut remaining = ms.max(0);
        let first = self.zone.local(from).day;
        for day in first..first + 3660 {
            for (a, b) in self.open_on_day(day) {
                let start = a.max(from);
                if b <= start {
                    continue;
                }
                if remaining <= b - start {
                    return Some(start + remaining);
                }
                remaining -= b - start;
            }
        }
        None
    }
}

/// Parse `mon-fri 09:00-17:00` or `sat 10:00-14:00` into shifts.
fn parse_hours(entry: &str) -> Option<Vec<Shift>> {
    let (days, hours) = entry.trim().split_once(' ')?;
    let (start, end) = hours.trim().split_once('-')?;
    let (start, end) = (parse_hhmm(start)?, parse_hhmm(end)?);
    if start >= end {
        return None;
    }
    let (first, last) = match days.split_once('-') {
        Some((a, b)) => (parse_weekday(a)?, parse_weekday(b)?),
        None => (parse_weekday(days)?, parse_weekday(days)?),
    };
    let (first, last) = (first as u8, last as u8);
    if first > last {
        return None;
    }
    Some(
        (first..=last)
            .map(|d| Shift {
                day: weekday_from_index(d),
                start_minute: start,
                end_minute: end,
            })
            .collect(),
    )
}

fn weekday_from_index(i: u8) -> crate::Weekday {
    use crate::Weekday::*;
    [
        Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday,
    ][usize::from(i % 7)]
}

/// Business time the SLA clock ran between `from` and `to`: open hours of
/// `calendar` while the ticket was not paused.
pub fn elapsed(
    calendar: &BusinessCalendar,
    history: &[StatusChange],
    from: Timestamp,
    to: Timestamp,
) -> i64 {
    running_intervals(history, from, to)
        .into_iter()
        .map(|(a, b)| calendar.open_ms_between(a, b))
        .sum()
}

/// When the clock started at `from` reaches `target` ms: in the past if it
/// already has, else assuming the status at `now` persists. `None` while the
/// clock is paused (it cannot be due) or if the calendar never opens.
pub fn due_at(
    calendar: &BusinessCalendar,
    history: &[StatusChange],
    from: Timestamp,
    target: i64,
    now: Timestamp,
) -> Option<Timestamp> {
    let mut remaining = target;
    for (a, b) in running_intervals(history, from, now) {
        let open = calendar.open_ms_between(a, b);
        if remaining <= open {
            return calendar.add_open_ms(a, remaining);
        }
        remaining -= open;
    }
    let status = status_at(history, now);
    if pauses_clock(status) || is_done(status) {
        return None;
    }
    calendar.add_open_ms(now.max(from), remaining)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{HOUR, MINUTE, timestamp};
    use alloc::vec;

    fn change(status: TicketStatus, at: Timestamp) -> StatusChange {
        StatusChange { status, at }
    }

    #[test]
    fn pending_time_does_not_count() {
        let t0 = timestamp(2026, 11, 27, 9, 0, 0);
        let history = vec![
            change(TicketStatus::Open, t0),
            change(TicketStatus::Pending, t0 + HOUR),
            change(TicketStatus::Open, t0 + 3 * HOUR),
        ];
        let cal = BusinessCalendar::always_open();
        assert_eq!(elapsed(&cal, &history, t0, t0 + 4 * HOUR), 2 * HOUR);
        // Paused now: no deadline.
        assert_eq!(due_at(&cal, &history, t0, 4 * HOUR, t0 + 2 * HOUR), None);
        // Running again: two hours spent, two to go from 4h.
        assert_eq!(
            due_at(&cal, &history, t0, 4 * HOUR, t0 + 4 * HOUR),
            Some(t0 + 6 * HOUR)
        );
        // Already breached: the exact crossing time, inside the first run.
        assert_eq!(
            due_at(&cal, &history, t0, 30 * MINUTE, t0 + 4 * HOUR),
            Some(t0 + 30 * MINUTE)
        );
    }

    #[test]
    fn reopen_starts_a_new_cycle() {
        let history = vec![
            change(TicketStatus::Open, 0),
            change(TicketStatus::Solved, 10),
            change(TicketStatus::Open, 20),
            change(TicketStatus::Closed, 30),
        ];
        assert_eq!(cycle(&history), 1);
        assert_eq!(cycle_start(0, &history), 20);
        assert_eq!(cycle_start(5, &[]), 5);
    }

    #[test]
    fn business_hours_skip_nights_weekends_and_holidays() {
        let cal = BusinessCalendar::from_config(&CalendarConfig {
            utc_offset_minutes: 60,
            hours: vec!["mon-fri 09:00-12:00".into(), "mon-fri 13:00-17:00".into()],
            holidays: vec!["2026-11-30".into()],
            ..Default::default()
        })
        .unwrap();
        // Friday 2026-11-27 16:00 local = 15:00 UTC. Four business hours
        // later: 1 h on Friday, Monday the 30th is a holiday, then
        // Tuesday 09:00-12:00 local: due Tuesday 12:00 local = 11:00 UTC.
        let friday_4pm = timestamp(2026, 11, 27, 15, 0, 0);
        assert_eq!(
            cal.add_open_ms(friday_4pm, 4 * HOUR),
            Some(timestamp(2026, 12, 1, 11, 0, 0))
        );
        assert_eq!(
            cal.open_ms_between(friday_4pm, timestamp(2026, 12, 1, 11, 0, 0)),
            4 * HOUR
        );
        // The lunch break splits the shift.
        assert!(!cal.is_open(timestamp(2026, 12, 1, 11, 30, 0)));
        assert!(cal.is_open(timestamp(2026, 12, 1, 12, 30, 0)));
        // A deadline landing exactly on the lunch break rolls past it.
        let tuesday_9am = timestamp(2026, 12, 1, 8, 0, 0);
        assert_eq!(
            cal.add_open_ms(tuesday_9am, 4 * HOUR),
            Some(timestamp(2026, 12, 1, 13, 0, 0))
        );
    }

    #[test]
    fn a_named_zone_keeps_local_hours_across_daylight_saving_changes() {
        let cal = BusinessCalendar::from_config(&CalendarConfig {
            time_zone: Some("America/New_York".into()),
            hours: vec!["mon-fri 09:00-17:00".into()],
            ..Default::default()
        })
        .unwrap();
        // Friday 2026-10-30, EDT (UTC-4): opens 13:00 UTC.
        assert!(!cal.is_open(timestamp(2026, 10, 30, 12, 59, 0)));
        assert!(cal.is_open(timestamp(2026, 10, 30, 13, 0, 0)));
        // DST ends Sunday 2026-11-01. Monday 11-02, EST (UTC-5): opens
        // 14:00 UTC, an hour later in UTC, at the same local 09:00.
        assert!(!cal.is_open(timestamp(2026, 11, 2, 13, 30, 0)));
        assert!(cal.is_open(timestamp(2026, 11, 2, 14, 0, 0)));
        // Two business hours from Friday 16:00 EDT: one on Friday, one on
        // Monday, due at 10:00 EST = 15:00 UTC.
        assert_eq!(
            cal.add_open_ms(timestamp(2026, 10, 30, 20, 0, 0), 2 * HOUR),
            Some(timestamp(2026, 11, 2, 15, 0, 0))
        );
    }

    #[test]
    fn wall_times_in_gaps_and_overlaps_resolve_once() {
        let berlin = Zone::named("Europe/Berlin").unwrap();
        // 2026-03-29 02:30 does not exist in Berlin (02:00 → 03:00): it
        // lands after the gap, 01:30 UTC (03:30 CEST).
        let day = crate::time::days_from_civil(2026, 3, 29);
        assert_eq!(berlin.to_utc(day, 150), timestamp(2026, 3, 29, 1, 30, 0));
        // 2026-10-25 02:30 happens twice: the earlier one, 00:30 UTC.
        let day = crate::time::days_from_civil(2026, 10, 25);
        assert_eq!(berlin.to_utc(day, 150), timestamp(2026, 10, 25, 0, 30, 0));
        // An ordinary day.
        let day = crate::time::days_from_civil(2026, 7, 1);
        assert_eq!(berlin.to_utc(day, 9 * 60), timestamp(2026, 7, 1, 7, 0, 0));
        let err = Zone::named("Europe/Atlantis").unwrap_err();
        assert!(err.contains("Europe/Atlantis"), "{err}");
    }

    #[test]
    fn bad_calendar_entries_are_named() {
        let err = BusinessCalendar::from_config(&CalendarConfig {
            hours: vec!["someday 9-5".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("someday 9-5"), "{err}");
        let err = BusinessCalendar::from_config(&CalendarConfig {
            holidays: vec!["2026-02-30".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("2026-02-30"), "{err}");
    }

    #[test]
    fn a_calendar_with_no_open_hours_never_comes_due() {
        let cal = BusinessCalendar {
            shifts: vec![Shift {
                day: crate::Weekday::Monday,
                start_minute: 0,
                end_minute: 0,
            }],
            ..Default::default()
        };
        assert_eq!(cal.add_open_ms(0, HOUR), None);
    }
}
