//! Trigger: SLA clocks.
//!
//! Three clocks per ticket, each against the target of the ticket's tier:
//! - **first reply**: from the start of the cycle, or from the escalation
//!   to the ticket's tier when that came later, to the first human reply
//!   since (each tier an escalation reaches gets its own response clock);
//! - **next reply**: from a customer message that follows a human reply to
//!   the next human reply;
//! - **resolution**: from the same start as the first reply to solved.
//!
//! The first-reply target of a tier is the escalation matrix's response
//! target unless this plugin's configuration sets one, and the matrix's
//! `alert-minutes` adds a warning. Only a human reply stops a reply clock
//! (an AI answer does not). Clocks count business time in the calendar of
//! the team that owns the ticket's scenario (each team its own time zone,
//! hours and holidays; critical tickets around the clock by default) and
//! pause while the ticket is pending or on hold. A
//! reopened ticket starts a new cycle, so each warning and breach fires once
//! per cycle and tier (its key names both). Tickets no trigger tiered are
//! not timed unless `default-tier` says so: they stay with the AI agent. The
//! trigger asks to be woken when the next warning or breach falls due.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::matrix::Matrix;
use escalator_guest::prelude::*;
use escalator_guest::sla::{
    BusinessCalendar, CalendarConfig, cycle, cycle_start, due_at, elapsed, escalated_at,
};

/// Targets of one tier, in minutes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Targets {
    /// First human reply (default: the matrix's response target).
    pub first_reply: Option<u64>,
    /// Next human reply after a customer message.
    pub next_reply: Option<u64>,
    /// Solved.
    pub resolution: Option<u64>,
}

/// Targets per tier.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierTargets {
    /// Critical.
    pub critical: Targets,
    /// High.
    pub high: Targets,
    /// Medium.
    pub medium: Targets,
    /// Low.
    pub low: Targets,
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Time tickets not yet tiered as this tier (none: they are not timed,
    /// they stay with the AI agent).
    pub default_tier: Option<Tier>,
    /// Fractions at which to warn.
    pub warn_at: Vec<f64>,
    /// Targets per tier.
    pub targets: TierTargets,
    /// Business hours of teams without their own (none: around the
    /// clock).
    pub calendar: Option<CalendarConfig>,
    /// Business hours per team (the team of the ticket's scenario).
    pub calendars: BTreeMap<String, CalendarConfig>,
    /// Tiers whose clocks run around the clock whatever the calendar.
    pub around_the_clock: Vec<Tier>,
    /// The escalation matrix (the manifest says `uses = ["matrix"]`).
    pub matrix: Matrix,
}

impl Default for Config {
    fn default() -> Self {
        // First reply comes from the matrix.
        let t = |n, r| Targets {
            first_reply: None,
            next_reply: Some(n),
            resolution: Some(r),
        };
        Config {
            default_tier: None,
            warn_at: vec![0.5, 0.75],
            targets: TierTargets {
                critical: t(60, 480),
                high: t(480, 2880),
                medium: t(1440, 7200),
                low: Targets::default(),
            },
            calendar: None,
            calendars: BTreeMap::new(),
            around_the_clock: vec![Tier::Critical],
            matrix: Matrix::default(),
        }
    }
}

impl TierTargets {
    fn get(&self, tier: Tier) -> &Targets {
        match tier {
            Tier::Critical => &self.critical,
            Tier::High => &self.high,
            Tier::Medium => &self.medium,
            Tier::Low => &self.low,
        }
    }
}

/// One running clock: which, since when, against what.
struct Clock {
    name: &'static str,
    what: &'static str,
    start: Timestamp,
    target_ms: i64,
    /// An extra warning, ms into the clock (the matrix's alert).
    alert_ms: Option<i64>,
}

/// The clocks still running at `now` (a stopped clock has been met).
fn running_clocks(
    ticket: &Ticket,
    targets: &Targets,
    matrix: &escalator_guest::matrix::TierTargets,
    start: Timestamp,
) -> Vec<Clock> {
    let minutes = |m: u64| m as i64 * 60_000;
    let in_cycle = |m: &&Message| m.sent_at >= start;
    let human_replies: Vec<&Message> = ticket
        .messages
        .iter()
        .filter(in_cycle)
        .filter(|m| m.author == AuthorKind::HumanAgent)
        .collect();
    // The tier's clocks start when the ticket reached the tier.
    let responding_from = escalated_at(ticket).map_or(start, |e| e.max(start));
    let mut clocks = Vec::new();
    if let Some(target) = targets.first_reply.or(matrix.response_minutes)
        && !human_replies.iter().any(|m| m.sent_at >= responding_from)
    {
        clocks.push(Clock {
            name: "first-reply",
            what: "first reply",
            start: responding_from,
            target_ms: minutes(target),
            // The matrix's alert goes with the matrix's target.
            alert_ms: matrix
                .alert_minutes
                .filter(|_| targets.first_reply.is_none())
                .map(minutes),
        });
    }
    if let (Some(target), Some(last_reply)) = (targets.next_reply, human_replies.last()) {
        let waiting = ticket
            .messages
            .iter()
            .find(|m| m.author == AuthorKind::Customer && m.sent_at > last_reply.sent_at);
        if let Some(m) = waiting {
            clocks.push(Clock {
                name: "next-reply",
                what: "next reply",
                start: m.sent_at,
                target_ms: minutes(target),
                alert_ms: None,
            });
        }
    }
    let done = matches!(ticket.status, TicketStatus::Solved | TicketStatus::Closed);
    if let Some(target) = targets.resolution
        && !done
    {
        clocks.push(Clock {
            name: "resolution",
            what: "resolution",
            start: responding_from,
            target_ms: minutes(target),
            alert_ms: None,
        });
    }
    clocks
}

/// A warning fraction as the whole percent its key names.
fn pct(fraction: f64) -> u32 {
    (fraction * 100.0 + 0.5) as u32
}

/// The plugin.
pub struct Sla;

impl Trigger for Sla {
    type Config = Config;

    fn evaluate(ticket: &Ticket, ctx: &Ctx<Config>) -> Result<Evaluation, String> {
        let c = &ctx.config;
        if c.warn_at.iter().any(|w| !(0.0 < *w && *w < 1.0)) {
            return Err(format!(
                "warn-at {:?}: each fraction must be between 0 and 1",
                c.warn_at
            ));
        }
        let Some(tier) = ticket.tier.or(c.default_tier) else {
            // Nobody tiered it: it stays with the AI agent, untimed.
            return Ok(Evaluation::none());
        };
        let team = c.matrix.scenario_of(ticket).map(|s| s.team.as_str());
        let (calendar, hours) = match team
            .and_then(|t| c.calendars.get(t))
            .or(c.calendar.as_ref())
        {
            _ if c.around_the_clock.contains(&tier) => {
                (BusinessCalendar::always_open(), String::new())
            }
            Some(cfg) => {
                let whose = match team {
                    Some(t) if c.calendars.contains_key(t) => format!(", {t} business hours"),
                    _ => ", business hours".into(),
                };
                (BusinessCalendar::from_config(cfg)?, whose)
            }
            None => (BusinessCalendar::always_open(), String::new()),
        };
        let history = &ticket.status_history;
        let start = cycle_start(ticket.created_at, history);
        let n = cycle(history);
        let now = ctx.now;

        let mut signals = Vec::new();
        let mut wake_at: Option<Timestamp> = None;
        let mut wake = |t: Timestamp| {
            if t > now {
                wake_at = Some(wake_at.map_or(t, |w| w.min(t)));
            }
        };
        let matrix_targets = c.matrix.targets(tier);
        for clock in running_clocks(ticket, c.targets.get(tier), &matrix_targets, start) {
            let spent = elapsed(&calendar, history, clock.start, now);
            let fraction = spent as f64 / clock.target_ms as f64;
            let status = format!(
                "{} of {} used ({} target{hours})",
                time::human_duration(spent),
                time::human_duration(clock.target_ms),
                tier.as_str()
            );
            // The configured fractions, plus the matrix's alert as a
            // fraction unless it coincides with one (e.g. 15 of 30 min).
            let mut levels = c.warn_at.clone();
            if let Some(alert) = clock.alert_ms.filter(|&a| 0 < a && a < clock.target_ms) {
                let f = alert as f64 / clock.target_ms as f64;
                if !levels.iter().any(|w| pct(*w) == pct(f)) {
                    levels.push(f);
                }
            }
            for &w in &levels {
                let at = (clock.target_ms as f64 * w) as i64;
                if fraction >= w {
                    let pct = pct(w);
                    signals.push(
                        Signal::warn(
                            tier,
                            format!("sla:{}:cycle-{n}:{}:{pct}", clock.name, tier.as_str()),
                            format!("{} SLA {pct}% used", clock.what),
                        )
                        .with_evidence(status.clone()),
                    );
                } else if let Some(t) = due_at(&calendar, history, clock.start, at, now) {
                    wake(t);
                }
            }
            if fraction >= 1.0 {
                let breached_at = due_at(&calendar, history, clock.start, clock.target_ms, now);
                // A breach escalates one tier up (critical stays critical).
                let mut s = Signal::escalate(
                    tier.next(),
                    format!("sla:{}:cycle-{n}:{}:breach", clock.name, tier.as_str()),
                    format!("{} SLA breached", clock.what),
                )
                .with_evidence(status);
                if let Some(t) = breached_at {
                    s = s.with_evidence(format!("breached {} ago", time::human_duration(now - t)));
                }
                signals.push(s);
            } else if let Some(t) = due_at(&calendar, history, clock.start, clock.target_ms, now) {
                wake(t);
            }
        }
        Ok(Evaluation { signals, wake_at })
    }
}

#[cfg(feature = "component")]
escalator_guest::export_trigger!(Sla);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::time::{HOUR, MINUTE, timestamp};
    use escalator_guest::{StatusChange, testing};

    const T0: i64 = 1_795_770_000_000; // 2026-11-27T09:00:00Z, a Friday

    fn critical_ticket(messages: Vec<Message>) -> Ticket {
        Ticket {
            tier: Some(Tier::Critical),
            created_at: T0,
            status: TicketStatus::Open,
            messages,
            ..testing::ticket()
        }
    }

    fn customer(at: i64) -> Message {
        testing::message(AuthorKind::Customer, "help", at)
    }

    fn run(t: &Ticket, now: i64, config: Config) -> Evaluation {
        Sla::evaluate(t, &Ctx::new(now, EventKind::Tick, config)).unwrap()
    }

    /// The plugin's defaults with the default matrix's tiers and a billing
    /// scenario owned by the billing team.
    fn defaults() -> Config {
        Config {
            matrix: escalator_guest::parse_config(
                r#"{"tiers": {
                        "critical": {"response-minutes": 30, "alert-minutes": 15},
                        "high": {"response-minutes": 240, "alert-minutes": 120},
                        "medium": {"response-minutes": 720}, "low": {}},
                    "scenarios": [{"name": "Billing", "categories": ["billing"],
                                   "tier": "high", "team": "billing"}]}"#,
            )
            .unwrap(),
            ..Config::default()
        }
    }

    fn keys(e: &Evaluation) -> Vec<String> {
        e.signals.iter().map(|s| s.key.clone()).collect()
    }

    #[test]
    fn critical_first_reply_warns_at_15_and_22_minutes_and_escalates_at_30() {
        let t = critical_ticket(vec![customer(T0)]);
        let at = |m: i64| run(&t, T0 + m * MINUTE, defaults());
        let early = at(10);
        assert!(early.signals.is_empty());
        assert_eq!(
            early.wake_at,
            Some(T0 + 15 * MINUTE),
            "woken exactly when the 50% warning is due"
        );
        assert_eq!(keys(&at(15)), ["sla:first-reply:cycle-0:critical:50"]);
        assert_eq!(at(15).wake_at, Some(T0 + 22 * MINUTE + 30_000));
        let breach = at(30);
        assert_eq!(
            keys(&breach),
            [
                "sla:first-reply:cycle-0:critical:50",
                "sla:first-reply:cycle-0:critical:75",
                "sla:first-reply:cycle-0:critical:breach"
            ]
        );
        assert_eq!(breach.signals[2].action, SignalAction::Escalate);
        assert_eq!(breach.signals[2].tier, Tier::Critical);
        assert_eq!(breach.signals[0].action, SignalAction::Warn);
    }

    #[test]
    fn an_ai_answer_does_not_stop_the_clock_but_a_human_reply_does() {
        let mut t = critical_ticket(vec![
            customer(T0),
            testing::message(AuthorKind::AiAgent, "try this", T0 + MINUTE),
        ]);
        assert!(
            keys(&run(&t, T0 + 31 * MINUTE, defaults()))
                .contains(&"sla:first-reply:cycle-0:critical:breach".to_string())
        );
        t.messages.push(testing::message(
            AuthorKind::HumanAgent,
            "on it",
            T0 + 5 * MINUTE,
        ));
        assert!(
            !keys(&run(&t, T0 + 31 * MINUTE, defaults()))
                .iter()
                .any(|k| k.starts_with("sla:first-reply"))
        );
    }

    #[test]
    fn the_next_reply_clock_starts_when_the_customer_writes_after_a_human_reply() {
        let t = critical_ticket(vec![
            customer(T0),
            testing::message(AuthorKind::HumanAgent, "looking", T0 + 5 * MINUTE),
            customer(T0 + 10 * MINUTE),
        ]);
        let e = run(&t, T0 + 71 * MINUTE, defaults());
        assert!(
            keys(&e).contains(&"sla:next-reply:cycle-0:critical:breach".to_string()),
            "{:?}",
            keys(&e)
        );
        assert!(!keys(&e).iter().any(|k| k.starts_with("sla:first-reply")));
    }

    #[test]
    fn pending_time_pauses_the_clock() {
        let mut t = critical_ticket(vec![customer(T0)]);
        t.status_history = vec![
            StatusChange {
                status: TicketStatus::Open,
                at: T0,
            },
            StatusChange {
                status: TicketStatus::Pending,
                at: T0 + 10 * MINUTE,
            },
            StatusChange {
                status: TicketStatus::Open,
                at: T0 + 2 * HOUR,
            },
        ];
        // 2h10m of wall time, only 20 minutes on the clock.
        let e = run(&t, T0 + 2 * HOUR + 10 * MINUTE, defaults());
        assert_eq!(keys(&e), ["sla:first-reply:cycle-0:critical:50"]);
        // While pending, nothing falls due.
        t.status = TicketStatus::Pending;
        t.status_history.truncate(2);
        assert_eq!(run(&t, T0 + HOUR, defaults()).wake_at, None);
    }

    #[test]
    fn a_reopened_ticket_starts_a_new_cycle() {
        let mut t = critical_ticket(vec![
            customer(T0),
            testing::message(AuthorKind::HumanAgent, "done", T0 + MINUTE),
        ]);
        t.status_history = vec![
            StatusChange {
                status: TicketStatus::Open,
                at: T0,
            },
            StatusChange {
                status: TicketStatus::Solved,
                at: T0 + 2 * MINUTE,
            },
            StatusChange {
                status: TicketStatus::Open,
                at: T0 + HOUR,
            },
        ];
        t.messages.push(customer(T0 + HOUR));
        let e = run(&t, T0 + HOUR + 31 * MINUTE, defaults());
        assert!(
            keys(&e).contains(&"sla:first-reply:cycle-1:critical:breach".to_string()),
            "{:?}",
            keys(&e)
        );
    }

    #[test]
    fn business_hours_stop_the_clock_overnight() {
        let config = Config {
            calendar: Some(CalendarConfig {
                hours: vec!["mon-fri 09:00-17:00".into()],
                ..Default::default()
            }),
            around_the_clock: vec![],
            ..defaults()
        };
        // Created Friday 16:50 UTC: 10 minutes on Friday, 20 on Monday.
        let friday = timestamp(2026, 11, 27, 16, 50, 0);
        let t = Ticket {
            created_at: friday,
            ..critical_ticket(vec![customer(friday)])
        };
        let e = run(&t, friday + 12 * MINUTE, config.clone());
        assert_eq!(
            e.wake_at,
            Some(timestamp(2026, 11, 30, 9, 5, 0)),
            "the 50% warning is due Monday 09:05"
        );
        assert!(
            run(&t, timestamp(2026, 11, 29, 12, 0, 0), config.clone())
                .signals
                .is_empty(),
            "Sunday: 10 minutes used"
        );
        let monday = run(&t, timestamp(2026, 11, 30, 9, 21, 0), config);
        assert!(
            keys(&monday).contains(&"sla:first-reply:cycle-0:critical:breach".to_string()),
            "{:?}",
            keys(&monday)
        );
    }

    #[test]
    fn each_team_has_its_own_zone_and_critical_runs_around_the_clock() {
        let config = Config {
            calendar: Some(CalendarConfig {
                hours: vec!["mon-fri 09:00-17:00".into()],
                ..Default::default()
            }),
            calendars: [(
                "billing".to_string(),
                CalendarConfig {
                    time_zone: Some("America/New_York".into()),
                    hours: vec!["mon-fri 09:00-17:00".into()],
                    holidays: vec!["2026-11-26".into()],
                    ..Default::default()
                },
            )]
            .into(),
            ..defaults()
        };
        // A high billing ticket created Friday 2026-11-27 13:00 UTC, 08:00
        // in New York (EST): billing's clock starts at 09:00 EST = 14:00
        // UTC, so the 50% warning (2 of 4 h) is due 16:00 UTC.
        let created = timestamp(2026, 11, 27, 13, 0, 0);
        let t = Ticket {
            tier: Some(Tier::High),
            category: Some("billing".into()),
            created_at: created,
            ..critical_ticket(vec![customer(created)])
        };
        let e = run(&t, created + MINUTE, config.clone());
        assert_eq!(e.wake_at, Some(timestamp(2026, 11, 27, 16, 0, 0)));
        let warned = run(&t, timestamp(2026, 11, 27, 16, 0, 0), config.clone());
        assert_eq!(keys(&warned), ["sla:first-reply:cycle-0:high:50"]);
        assert!(
            warned.signals[0].evidence[0].contains("billing business hours"),
            "{:?}",
            warned.signals[0].evidence
        );
        // Another team's ticket uses the default calendar (UTC): its clock
        // started at 13:00 UTC, so 50% falls at 15:00.
        let other = Ticket {
            category: Some("shipping".into()),
            ..t.clone()
        };
        assert_eq!(
            run(&other, created + MINUTE, config.clone()).wake_at,
            Some(timestamp(2026, 11, 27, 15, 0, 0))
        );
        // A critical ticket ignores business hours: breached 30 min later,
        // Saturday night or not.
        let saturday = timestamp(2026, 11, 28, 23, 0, 0);
        let critical = Ticket {
            tier: Some(Tier::Critical),
            created_at: saturday,
            messages: vec![customer(saturday)],
            ..t
        };
        assert!(
            keys(&run(&critical, saturday + 30 * MINUTE, config))
                .contains(&"sla:first-reply:cycle-0:critical:breach".to_string())
        );
    }

    #[test]
    fn first_reply_targets_come_from_the_matrix_unless_configured() {
        let mut config = defaults();
        config
            .matrix
            .tiers
            .get_mut("critical")
            .unwrap()
            .alert_minutes = Some(10);
        let t = critical_ticket(vec![customer(T0)]);
        // The matrix's alert at 10 of 30 minutes is a 33% warning.
        assert_eq!(
            keys(&run(&t, T0 + 10 * MINUTE, config.clone())),
            ["sla:first-reply:cycle-0:critical:33"]
        );
        // The plugin's own first-reply target wins over the matrix's.
        config.targets.critical.first_reply = Some(60);
        let e = run(&t, T0 + 31 * MINUTE, config.clone());
        assert_eq!(
            keys(&e),
            ["sla:first-reply:cycle-0:critical:50"],
            "31 of 60 minutes"
        );
        // With neither, there is no first-reply clock.
        config.targets.critical.first_reply = None;
        config.matrix = Matrix::default();
        assert!(
            !keys(&run(&t, T0 + 10 * HOUR, config))
                .iter()
                .any(|k| k.starts_with("sla:first-reply"))
        );
    }

    #[test]
    fn an_unknown_time_zone_is_refused_with_its_name() {
        let config = Config {
            calendar: Some(CalendarConfig {
                time_zone: Some("Europe/Atlantis".into()),
                ..Default::default()
            }),
            around_the_clock: vec![],
            ..defaults()
        };
        let err = Sla::evaluate(
            &critical_ticket(vec![]),
            &Ctx::new(T0, EventKind::Tick, config),
        )
        .unwrap_err();
        assert!(err.contains("Europe/Atlantis"), "{err}");
    }

    #[test]
    fn untiered_tickets_stay_with_the_ai_unless_a_default_tier_is_set() {
        let mut t = critical_ticket(vec![
            customer(T0),
            testing::message(AuthorKind::AiAgent, "Settings, then Security", T0 + 5_000),
        ]);
        t.tier = None;
        let e = run(&t, T0 + 100 * HOUR, defaults());
        assert!(
            e.signals.is_empty() && e.wake_at.is_none(),
            "{:?}",
            keys(&e)
        );
        let timed = Config {
            default_tier: Some(Tier::Medium),
            ..defaults()
        };
        assert_eq!(
            keys(&run(&t, T0 + 6 * HOUR, timed)),
            ["sla:first-reply:cycle-0:medium:50"],
            "timed as medium when configured: 50% of 12 h"
        );
        t.tier = Some(Tier::Low);
        assert!(run(&t, T0 + 100 * HOUR, defaults()).signals.is_empty());
    }

    /// The note the host adds to the conversation when the ticket escalates.
    fn escalation_note(at: i64, decision: u32) -> Message {
        Message {
            id: format!("escalation-{decision}"),
            author_id: Some("escalator".into()),
            ..testing::message(AuthorKind::System, "Escalated", at)
        }
    }

    #[test]
    fn escalating_to_a_tier_starts_its_response_clock_at_the_escalation() {
        // Created at T0, escalated to critical at T0 + 5 h 30.
        let escalated = T0 + 5 * HOUR + 30 * MINUTE;
        let t = critical_ticket(vec![customer(T0), escalation_note(escalated, 7)]);
        let just = run(&t, escalated, defaults());
        assert!(just.signals.is_empty(), "{:?}", keys(&just));
        assert_eq!(just.wake_at, Some(escalated + 15 * MINUTE), "50% of 30 min");
        assert_eq!(
            keys(&run(&t, escalated + 30 * MINUTE, defaults())),
            [
                "sla:first-reply:cycle-0:critical:50",
                "sla:first-reply:cycle-0:critical:75",
                "sla:first-reply:cycle-0:critical:breach"
            ]
        );
        // A human reply before the escalation does not answer it; one after
        // does.
        let mut answered = t.clone();
        answered
            .messages
            .insert(1, testing::message(AuthorKind::HumanAgent, "hi", T0 + HOUR));
        assert!(
            keys(&run(&answered, escalated + 31 * MINUTE, defaults()))
                .iter()
                .any(|k| k.ends_with("critical:breach"))
        );
        answered.messages.push(testing::message(
            AuthorKind::HumanAgent,
            "on it",
            escalated + 10 * MINUTE,
        ));
        assert!(
            !keys(&run(&answered, escalated + 31 * MINUTE, defaults()))
                .iter()
                .any(|k| k.starts_with("sla:first-reply"))
        );
    }

    #[test]
    fn bad_config_is_refused_with_the_reason() {
        let e = Sla::evaluate(
            &testing::ticket(),
            &Ctx::new(
                0,
                EventKind::Tick,
                Config {
                    warn_at: vec![1.5],
                    ..defaults()
                },
            ),
        );
        assert!(e.unwrap_err().contains("warn-at"));
    }
}
