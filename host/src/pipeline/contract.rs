//! Conversions between the JSON model and the WIT types of the contract.

use crate::model::*;
use crate::runtime::wit;
use chrono::{DateTime, Utc};
use chrono::{Offset, TimeZone};

/// ms since the epoch.
pub fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// A time from ms since the epoch, if representable.
pub fn time(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// Tier to WIT.
pub fn tier(t: Tier) -> wit::Tier {
    match t {
        Tier::Low => wit::Tier::Low,
        Tier::Medium => wit::Tier::Medium,
        Tier::High => wit::Tier::High,
        Tier::Critical => wit::Tier::Critical,
    }
}

/// Tier from WIT.
pub fn tier_from(t: wit::Tier) -> Tier {
    match t {
        wit::Tier::Low => Tier::Low,
        wit::Tier::Medium => Tier::Medium,
        wit::Tier::High => Tier::High,
        wit::Tier::Critical => Tier::Critical,
    }
}

fn status(s: TicketStatus) -> wit::TicketStatus {
    match s {
        TicketStatus::New => wit::TicketStatus::New,
        TicketStatus::Open => wit::TicketStatus::Open,
        TicketStatus::Pending => wit::TicketStatus::Pending,
        TicketStatus::OnHold => wit::TicketStatus::OnHold,
        TicketStatus::Solved => wit::TicketStatus::Solved,
        TicketStatus::Closed => wit::TicketStatus::Closed,
    }
}

fn author(a: AuthorKind) -> wit::AuthorKind {
    match a {
        AuthorKind::Customer => wit::AuthorKind::Customer,
        AuthorKind::AiAgent => wit::AuthorKind::AiAgent,
        AuthorKind::HumanAgent => wit::AuthorKind::HumanAgent,
        AuthorKind::System => wit::AuthorKind::System,
    }
}

fn channel_in(c: TicketChannel) -> wit::TicketChannel {
    match c {
        TicketChannel::Email => wit::TicketChannel::Email,
        TicketChannel::Chat => wit::TicketChannel::Chat,
        TicketChannel::Phone => wit::TicketChannel::Phone,
        TicketChannel::Social => wit::TicketChannel::Social,
        TicketChannel::WebForm => wit::TicketChannel::WebForm,
        TicketChannel::Api => wit::TicketChannel::Api,
        TicketChannel::Other => wit::TicketChannel::Other,
    }
}

/// A ticket as plugins see it.
/// How much of a ticket plugins are handed. The newest messages are kept,
/// up to [`MAX_MESSAGES`] and [`MAX_CONVERSATION_BYTES`] of message text
/// (a single newer message over the byte cap keeps its first bytes); a
/// ticket that was cut carries the tag [`CUT_TAG`]. Every plugin's memory
/// and fuel can then be sized for the largest ticket it will ever see.
pub const MAX_MESSAGES: usize = 200;
/// Bytes of message text handed to plugins, at most.
pub const MAX_CONVERSATION_BYTES: usize = 256 << 10;
/// Bytes of the subject handed to plugins, at most.
pub const MAX_SUBJECT_BYTES: usize = 4 << 10;
/// Status changes handed to plugins, at most (the newest).
pub const MAX_STATUS_CHANGES: usize = 100;
/// Tags handed to plugins, at most.
pub const MAX_TAGS: usize = 64;
/// The tag a ticket carries when plugins see only part of it.
pub const CUT_TAG: &str = "escalator:conversation-cut";

fn cut_str(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Which messages of `t` plugins see, newest kept: the index of the first
/// one, and whether anything was left out.
fn kept_messages(t: &Ticket) -> (usize, bool) {
    let mut bytes = 0usize;
    let mut first = t.messages.len();
    for (i, m) in t.messages.iter().enumerate().rev() {
        if t.messages.len() - i > MAX_MESSAGES {
            break;
        }
        if bytes + m.body.len() > MAX_CONVERSATION_BYTES && first < t.messages.len() {
            break;
        }
        bytes += m.body.len();
        first = i;
    }
    let cut = first > 0
        || t.messages
            .last()
            .is_some_and(|m| m.body.len() > MAX_CONVERSATION_BYTES);
    (first, cut)
}

/// `t` as plugins see it: bounded (see [`MAX_MESSAGES`]).
pub fn ticket(t: &Ticket) -> wit::Ticket {
    let (first, mut cut) = kept_messages(t);
    cut |= t.subject.len() > MAX_SUBJECT_BYTES
        || t.status_history.len() > MAX_STATUS_CHANGES
        || t.tags.len() > MAX_TAGS;
    let mut tags: Vec<String> = t
        .tags
        .iter()
        .take(MAX_TAGS)
        .map(|s| cut_str(s, 256))
        .collect();
    if cut {
        tags.push(CUT_TAG.into());
    }
    let updated = t
        .updated_at
        .or_else(|| t.messages.iter().map(|m| m.sent_at).max())
        .map_or(t.created_at, |u| u.max(t.created_at));
    wit::Ticket {
        id: t.id.clone(),
        tenant: t.tenant.clone(),
        subject: cut_str(&t.subject, MAX_SUBJECT_BYTES),
        category: t.category.clone(),
        channel: channel_in(t.channel),
        status: status(t.status),
        status_history: t.status_history
            [t.status_history.len().saturating_sub(MAX_STATUS_CHANGES)..]
            .iter()
            .map(|c| wit::StatusChange {
                status: status(c.status),
                at: ms(c.at),
            })
            .collect(),
        created_at: ms(t.created_at),
        updated_at: ms(updated),
        tier: t.tier.map(tier),
        assignee: t.assignee.clone(),
        claimed_at: t.claimed_at.map(ms),
        tags,
        messages: t
            .messages
            .iter()
            .enumerate()
            .skip(first)
            .map(|(i, m)| wit::Message {
                id: if m.id.is_empty() {
                    format!("m{}", i + 1)
                } else {
                    m.id.clone()
                },
                author: author(m.author),
                author_id: m.author_id.clone(),
                body: cut_str(&m.body, MAX_CONVERSATION_BYTES),
                sent_at: ms(m.sent_at),
                sentiment: m.sentiment,
            })
            .collect(),
        customer: t.customer.as_ref().map(|c| wit::Customer {
            id: c.id.clone(),
            name: c.name.clone(),
            plan: c.plan.clone(),
            mrr_cents: c.mrr_cents,
            trial: c.trial,
            contacts_this_week: c.contacts_this_week,
            created_at: c.created_at.map_or(0, ms),
            attributes: c
                .attributes
                .iter()
                .map(|(k, v)| wit::Attribute {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect(),
        }),
        ai_analysis: t.ai_analysis.as_ref().map(|a| wit::AiAnalysis {
            confidence: a.confidence,
            intent: a.intent.clone(),
            category: a.category.clone(),
            reasoning: a.reasoning.clone(),
            solutions_tried: a.solutions_tried.clone(),
            analyzed_at: a.analyzed_at.map_or(ms(updated), ms),
        }),
    }
}

/// The evaluation context.
pub fn context(now: DateTime<Utc>, event: EventKind, config_json: String) -> wit::Context {
    let event = match event {
        EventKind::TicketCreated => wit::EventKind::TicketCreated,
        EventKind::MessageAdded => wit::EventKind::MessageAdded,
        EventKind::AiAnalysis => wit::EventKind::AiAnalysis,
        EventKind::Claimed => wit::EventKind::Claimed,
        EventKind::AgentReplied => wit::EventKind::AgentReplied,
        EventKind::StatusChanged => wit::EventKind::StatusChanged,
        EventKind::CsatRating => wit::EventKind::CsatRating,
        EventKind::AgentAvailability => wit::EventKind::AgentAvailability,
        EventKind::Tick => wit::EventKind::Tick,
    };
    wit::Context {
        now: ms(now),
        event,
        config: config_json,
    }
}

pub(crate) fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (m < 60 && h * 60 + m <= 1440).then_some(h * 60 + m)
}

/// An agent as plugins see it: shifts in minutes, the zone resolved to its
/// offset at `now`. The error names the agent and the field.
pub fn agent(a: &Agent, now: DateTime<Utc>) -> Result<wit::Agent, String> {
    let tz: chrono_tz::Tz = a.time_zone.parse().map_err(|_| {
        format!(
            "agent {}: unknown time zone {:?} (use an IANA name like \"Europe/Berlin\")",
            a.id, a.time_zone
        )
    })?;
    let offset = tz
        .offset_from_utc_datetime(&now.naive_utc())
        .fix()
        .local_minus_utc()
        / 60;
    let mut working_hours = Vec::with_capacity(a.working_hours.len());
    for s in &a.working_hours {
        let (Some(start), Some(end)) = (parse_hhmm(&s.start), parse_hhmm(&s.end)) else {
            return Err(format!(
                "agent {}: working hours {}-{} are not HH:MM",
                a.id, s.start, s.end
            ));
        };
        if start >= end {
            return Err(format!(
                "agent {}: shift {}-{} ends before it starts",
                a.id, s.start, s.end
            ));
        }
        let day = match s.day {
            Weekday::Monday => wit::Weekday::Monday,
            Weekday::Tuesday => wit::Weekday::Tuesday,
            Weekday::Wednesday => wit::Weekday::Wednesday,
            Weekday::Thursday => wit::Weekday::Thursday,
            Weekday::Friday => wit::Weekday::Friday,
            Weekday::Saturday => wit::Weekday::Saturday,
            Weekday::Sunday => wit::Weekday::Sunday,
        };
        working_hours.push(wit::Shift {
            day,
            start_minute: start,
            end_minute: end,
        });
    }
    Ok(wit::Agent {
        id: a.id.clone(),
        name: if a.name.is_empty() {
            a.id.clone()
        } else {
            a.name.clone()
        },
        role: match a.role {
            AgentRole::Agent => wit::AgentRole::Agent,
            AgentRole::Lead => wit::AgentRole::Lead,
            AgentRole::Manager => wit::AgentRole::Manager,
        },
        team: a.team.clone(),
        skills: a.skills.clone(),
        status: match a.status {
            AgentStatus::Available => wit::AgentStatus::Available,
            AgentStatus::Away => wit::AgentStatus::Away,
            AgentStatus::Meeting => wit::AgentStatus::Meeting,
            AgentStatus::OutOfOffice => wit::AgentStatus::OutOfOffice,
            AgentStatus::Offline => wit::AgentStatus::Offline,
        },
        open_tickets: a.open_tickets,
        capacity: a.capacity,
        last_assigned_at: a.last_assigned_at.map(ms),
        working_hours,
        time_zone: a.time_zone.clone(),
        utc_offset_minutes: offset,
    })
}

fn signal(s: &Signal) -> wit::Signal {
    wit::Signal {
        action: match s.action {
            SignalAction::Escalate => wit::SignalAction::Escalate,
            SignalAction::Warn => wit::SignalAction::Warn,
            SignalAction::Raise => wit::SignalAction::Raise,
        },
        tier: tier(s.tier),
        key: s.key.clone(),
        reason: s.reason.clone(),
        evidence: s.evidence.clone(),
        target_skill: s.target_skill.clone(),
        target_queue: s.target_queue.clone(),
    }
}

fn signal_from(s: wit::Signal) -> Signal {
    Signal {
        action: match s.action {
            wit::SignalAction::Escalate => SignalAction::Escalate,
            wit::SignalAction::Warn => SignalAction::Warn,
            wit::SignalAction::Raise => SignalAction::Raise,
        },
        tier: tier_from(s.tier),
        key: s.key,
        reason: s.reason,
        evidence: s.evidence,
        target_skill: s.target_skill,
        target_queue: s.target_queue,
    }
}

/// The escalation, to WIT.
pub fn escalation(e: &Escalation) -> wit::Escalation {
    wit::Escalation {
        tier: tier(e.tier),
        signals: e.signals.iter().map(signal).collect(),
        response_target: e.response_target_ms,
    }
}

fn target(t: &Target) -> wit::Target {
    match t {
        Target::Agent(a) => wit::Target::Agent(a.clone()),
        Target::Queue(q) => wit::Target::Queue(q.clone()),
    }
}

fn target_from(t: wit::Target) -> Target {
    match t {
        wit::Target::Agent(a) => Target::Agent(a),
        wit::Target::Queue(q) => Target::Queue(q),
    }
}

/// A routing, to WIT (what the notifier sees).
pub fn routing(r: &Routing) -> wit::Routing {
    wit::Routing {
        target: target(&r.target),
        reason: r.reason.clone(),
        fallback: r
            .fallback
            .iter()
            .map(|f| wit::FallbackStep {
                after: f.after_ms,
                target: target(&f.target),
                reason: f.reason.clone(),
            })
            .collect(),
    }
}

/// A trigger's output, from WIT. Fails on a `wake-at` no calendar can hold.
pub fn evaluation_from(e: wit::Evaluation) -> Result<Evaluation, String> {
    let wake_at = match e.wake_at {
        None => None,
        Some(ms) => {
            Some(time(ms).ok_or_else(|| format!("wake-at {ms} is not a representable time"))?)
        }
    };
    Ok(Evaluation {
        signals: e.signals.into_iter().map(signal_from).collect(),
        wake_at,
    })
}

/// A router's output, from WIT.
pub fn routing_from(r: wit::Routing) -> Routing {
    Routing {
        target: target_from(r.target),
        reason: r.reason,
        fallback: r
            .fallback
            .into_iter()
            .map(|f| FallbackStep {
                after_ms: f.after,
                target: target_from(f.target),
                reason: f.reason,
            })
            .collect(),
    }
}

/// A notifier's output, from WIT.
pub fn plan_from(p: wit::NotificationPlan) -> NotificationPlan {
    NotificationPlan {
        steps: p
            .steps
            .into_iter()
            .map(|s| NotificationStep {
                delay_ms: s.delay,
                recipient: match s.recipient {
                    wit::Recipient::Agent(x) => Recipient::Agent(x),
                    wit::Recipient::Team(x) => Recipient::Team(x),
                    wit::Recipient::Endpoint(x) => Recipient::Endpoint(x),
                },
                channel: match s.channel {
                    wit::Channel::Slack => Channel::Slack,
                    wit::Channel::Email => Channel::Email,
                    wit::Channel::InApp => Channel::InApp,
                    wit::Channel::Webhook => Channel::Webhook,
                },
                title: s.title,
                body: s.body,
                stop_when_claimed: s.stop_when_claimed,
                stop_when_answered: s.stop_when_answered,
                digest_window_ms: s.digest_window,
            })
            .collect(),
        customer_message: p.customer_message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_minimal_ticket_json_is_enough() {
        let t: Ticket = serde_json::from_str(
            r#"{"id":"T-9","created_at":"2026-11-27T09:00:00Z",
                "messages":[{"author":"customer","body":"hi","sent_at":"2026-11-27T09:05:00Z"}]}"#,
        )
        .unwrap();
        let w = ticket(&t);
        assert_eq!(w.tenant, "default");
        assert_eq!(w.messages[0].id, "m1");
        assert_eq!(w.updated_at, ms(at("2026-11-27T09:05:00Z")));
    }

    fn ticket_with(bodies: &[usize]) -> Ticket {
        let messages: Vec<String> = bodies
            .iter()
            .enumerate()
            .map(|(i, n)| {
                format!(
                    r#"{{"id":"m{i}","author":"customer","body":"{}","sent_at":"2026-11-27T09:05:00Z"}}"#,
                    "x".repeat(*n)
                )
            })
            .collect();
        serde_json::from_str(&format!(
            r#"{{"id":"T","created_at":"2026-11-27T09:00:00Z","messages":[{}]}}"#,
            messages.join(",")
        ))
        .unwrap()
    }

    #[test]
    fn plugins_see_the_newest_messages_up_to_the_caps_and_a_cut_tag() {
        let small = ticket(&ticket_with(&[10, 10]));
        assert_eq!(small.messages.len(), 2);
        assert!(!small.tags.iter().any(|t| t == CUT_TAG));

        let many = ticket(&ticket_with(&vec![5; MAX_MESSAGES + 50]));
        assert_eq!(many.messages.len(), MAX_MESSAGES);
        assert_eq!(many.messages[0].id, "m50", "the newest are kept");
        assert!(many.tags.iter().any(|t| t == CUT_TAG));

        let big = ticket(&ticket_with(&[
            MAX_CONVERSATION_BYTES / 2,
            MAX_CONVERSATION_BYTES / 2,
            100,
        ]));
        assert_eq!(big.messages.len(), 2);
        assert_eq!(big.messages[1].id, "m2");
        let bytes: usize = big.messages.iter().map(|m| m.body.len()).sum();
        assert!(bytes <= MAX_CONVERSATION_BYTES, "{bytes}");

        let huge = ticket(&ticket_with(&[10, MAX_CONVERSATION_BYTES * 3]));
        assert_eq!(huge.messages.len(), 1);
        assert_eq!(huge.messages[0].body.len(), MAX_CONVERSATION_BYTES);
        assert!(huge.tags.iter().any(|t| t == CUT_TAG));
    }

    #[test]
    fn unknown_ticket_fields_are_refused_by_name() {
        let e = serde_json::from_str::<Ticket>(
            r#"{"id":"T","created_at":"2026-11-27T09:00:00Z","priority":"p1"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("priority"), "{e}");
    }

    #[test]
    fn agent_zones_resolve_to_the_offset_at_now_including_dst() {
        let a: Agent = serde_json::from_str(
            r#"{"id":"ana","time_zone":"Europe/Berlin",
            "working_hours":[{"day":"monday","start":"09:00","end":"17:30"}]}"#,
        )
        .unwrap();
        assert_eq!(
            agent(&a, at("2026-01-15T12:00:00Z"))
                .unwrap()
                .utc_offset_minutes,
            60
        );
        let summer = agent(&a, at("2026-07-15T12:00:00Z")).unwrap();
        assert_eq!(summer.utc_offset_minutes, 120);
        assert_eq!(
            (
                summer.working_hours[0].start_minute,
                summer.working_hours[0].end_minute
            ),
            (540, 1050)
        );
    }

    #[test]
    fn bad_agent_zones_and_shifts_name_the_agent() {
        let mut a: Agent =
            serde_json::from_str(r#"{"id":"bo","time_zone":"Mars/Olympus"}"#).unwrap();
        assert!(agent(&a, Utc::now()).unwrap_err().contains("bo"));
        a.time_zone = "UTC".into();
        a.working_hours.push(Shift {
            day: Weekday::Monday,
            start: "17:00".into(),
            end: "09:00".into(),
        });
        assert!(
            agent(&a, Utc::now())
                .unwrap_err()
                .contains("ends before it starts")
        );
    }
}
