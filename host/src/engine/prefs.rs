//! People's notification preferences ([`NotifyPrefs`]) applied to a
//! notification: whether it reaches a person, and on which channel.

use super::*;
use crate::model::{NotifyPrefs, QuietHours, TicketScope};
use chrono::{Offset as _, TimeZone as _};

/// How a notification reaches one person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reach {
    /// Not at all: their preferences leave it out.
    Dropped,
    /// On this channel (the plan's, or the one they prefer).
    On(Channel),
    /// In their quiet hours, below critical: on this channel when the
    /// quiet hours end.
    Held(Channel, DateTime<Utc>),
}

/// How a notification on `channel` about a ticket of `tier` (assigned to
/// `assignee`) reaches `a` at `now`.
pub(super) fn reach(
    a: &model::Agent,
    channel: Channel,
    tier: Option<Tier>,
    assignee: Option<&str>,
    now: DateTime<Utc>,
) -> Reach {
    let Some(p) = &a.notifications else {
        return Reach::On(channel);
    };
    if let Some(t) = tier
        && !p.tiers.is_empty()
        && !p.tiers.contains(&t)
    {
        return Reach::Dropped;
    }
    if p.tickets == TicketScope::Mine && assignee != Some(a.id.as_str()) {
        return Reach::Dropped;
    }
    let channel = match p.channels.first() {
        Some(&first) if !p.channels.iter().any(|&c| Channel::from(c) == channel) => first.into(),
        _ => channel,
    };
    if channel != Channel::InApp
        && tier != Some(Tier::Critical)
        && let Some(until) = p.quiet_hours.as_ref().and_then(|q| quiet_until(a, q, now))
    {
        return Reach::Held(channel, until);
    }
    Reach::On(channel)
}

/// When `a`'s quiet hours end, if `now` is within them (in their time
/// zone).
fn quiet_until(a: &model::Agent, q: &QuietHours, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let start = pipeline::contract::parse_hhmm(&q.start)?;
    let end = pipeline::contract::parse_hhmm(&q.end)?;
    let offset = a.time_zone.parse::<chrono_tz::Tz>().map_or(0, |tz| {
        tz.offset_from_utc_datetime(&now.naive_utc())
            .fix()
            .local_minus_utc()
    });
    let local = (now + Duration::seconds(i64::from(offset))).time();
    let second = i64::from(chrono::Timelike::num_seconds_from_midnight(&local));
    let minute = (second / 60) as u16;
    let within = if start <= end {
        (start..end).contains(&minute)
    } else {
        minute >= start || minute < end
    };
    within.then(|| now + Duration::seconds((i64::from(end) * 60 - second).rem_euclid(86_400)))
}

/// Check preferences a person sets: tiers and channels are typed already;
/// the quiet hours must be `HH:MM`.
pub(crate) fn check(p: &NotifyPrefs) -> Result<(), String> {
    if let Some(q) = &p.quiet_hours {
        for (what, v) in [("start", &q.start), ("end", &q.end)] {
            if pipeline::contract::parse_hhmm(v).is_none_or(|m| m >= 1440) {
                return Err(format!(
                    "quiet_hours.{what} {v:?} is not HH:MM (00:00 to 23:59)"
                ));
            }
        }
    }
    Ok(())
}

/// The people watching every escalation at `tier` (preferences with
/// `tickets = "all"`), with the channel each wants.
pub(super) fn watchers(
    roster: &[model::Agent],
    tier: Tier,
) -> impl Iterator<Item = (&model::Agent, Channel)> {
    roster.iter().filter_map(move |a| {
        let p = a.notifications.as_ref()?;
        (p.tickets == TicketScope::All && (p.tiers.is_empty() || p.tiers.contains(&tier)))
            .then(|| (a, p.channels.first().map_or(Channel::InApp, |&c| c.into())))
    })
}

/// Who is on duty for a critical escalation nobody would otherwise hear
/// of: the assignee if available, else the available leads and managers,
/// else every available person.
pub(super) fn on_duty<'a>(
    roster: &'a [model::Agent],
    assignee: Option<&str>,
) -> Vec<&'a model::Agent> {
    let up: Vec<&model::Agent> = roster.iter().filter(|a| available(a.status)).collect();
    if let Some(a) = up.iter().find(|a| Some(a.id.as_str()) == assignee) {
        return vec![a];
    }
    let leads: Vec<_> = up
        .iter()
        .copied()
        .filter(|a| matches!(a.role, model::AgentRole::Lead | model::AgentRole::Manager))
        .collect();
    if leads.is_empty() { up } else { leads }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, prefs: Option<NotifyPrefs>) -> model::Agent {
        serde_json::from_value(serde_json::json!({
            "id": id, "time_zone": "Europe/Berlin", "notifications": prefs,
        }))
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn without_preferences_the_plan_holds() {
        let a = agent("ann", None);
        let r = reach(
            &a,
            Channel::Slack,
            Some(Tier::Low),
            Some("bob"),
            at("2026-12-03T02:00:00Z"),
        );
        assert_eq!(r, Reach::On(Channel::Slack));
    }

    #[test]
    fn tiers_scope_channels_and_quiet_hours_apply() {
        let prefs = NotifyPrefs {
            tiers: vec![Tier::High, Tier::Critical],
            tickets: TicketScope::Mine,
            channels: vec![crate::model::NotifyChannel::Email],
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "07:00".into(),
            }),
        };
        let a = agent("ann", Some(prefs));
        // 12:00 in Berlin (UTC+1 in December): not quiet.
        let noon = at("2026-12-03T11:00:00Z");
        // 23:30 in Berlin: quiet.
        let night = at("2026-12-03T22:30:00Z");
        assert_eq!(
            reach(&a, Channel::Slack, Some(Tier::Medium), Some("ann"), noon),
            Reach::Dropped,
            "a tier not asked for"
        );
        assert_eq!(
            reach(&a, Channel::Slack, Some(Tier::High), Some("bob"), noon),
            Reach::Dropped,
            "not hers"
        );
        assert_eq!(
            reach(&a, Channel::Slack, Some(Tier::High), Some("ann"), noon),
            Reach::On(Channel::Email),
            "her channel"
        );
        assert_eq!(
            reach(&a, Channel::Slack, Some(Tier::High), Some("ann"), night),
            Reach::Held(Channel::Email, at("2026-12-04T06:00:00Z")),
            "quiet hours: until 07:00 in Berlin"
        );
        assert_eq!(
            reach(&a, Channel::Slack, Some(Tier::Critical), Some("ann"), night),
            Reach::On(Channel::Email),
            "critical breaks quiet hours"
        );
    }

    #[test]
    fn quiet_hours_within_one_day_and_across_midnight() {
        let q = |s: &str, e: &str| QuietHours {
            start: s.into(),
            end: e.into(),
        };
        let mut a = agent("ann", None);
        a.time_zone = "UTC".into();
        let until = |q: &QuietHours, t: &str| quiet_until(&a, q, at(t));
        assert_eq!(
            until(&q("12:00", "13:00"), "2026-12-03T12:30:15Z"),
            Some(at("2026-12-03T13:00:00Z"))
        );
        assert_eq!(until(&q("12:00", "13:00"), "2026-12-03T13:00:00Z"), None);
        assert_eq!(
            until(&q("22:00", "07:00"), "2026-12-03T23:00:00Z"),
            Some(at("2026-12-04T07:00:00Z"))
        );
        assert_eq!(
            until(&q("22:00", "07:00"), "2026-12-03T06:59:00Z"),
            Some(at("2026-12-03T07:00:00Z"))
        );
        assert_eq!(until(&q("22:00", "07:00"), "2026-12-03T07:00:00Z"), None);
    }

    #[test]
    fn bad_preferences_are_refused_with_the_field() {
        let mut p = NotifyPrefs::default();
        assert!(
            serde_json::from_value::<NotifyPrefs>(serde_json::json!({"channels": ["desk"]}))
                .is_err()
        );
        p.quiet_hours = Some(QuietHours {
            start: "25:00".into(),
            end: "07:00".into(),
        });
        assert!(check(&p).unwrap_err().contains("quiet_hours.start"));
    }
}
