//! Notifier: channels by tier and an escalation chain.
//!
//! The assignee is told at once on every channel of the tier, reminded if
//! the ticket is not claimed, then the team lead and the manager are told in
//! turn. Every step but the first stops when a human claims the ticket; a
//! claimed ticket nobody answers within the acknowledgement timeout brings
//! a reminder to whoever claimed it, then the chain starts again with the
//! lead. Below critical, notifications to someone notified moments ago wait
//! for a digest. Messages carry what a person needs at a glance: tier, customer, revenue,
//! issue, and time to the SLA.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// Something per tier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerTier<T> {
    /// Critical.
    pub critical: T,
    /// High.
    pub high: T,
    /// Medium.
    pub medium: T,
    /// Low.
    pub low: T,
}

impl<T> PerTier<T> {
    /// The value for `tier`.
    pub fn get(&self, tier: Tier) -> &T {
        match tier {
            Tier::Critical => &self.critical,
            Tier::High => &self.high,
            Tier::Medium => &self.medium,
            Tier::Low => &self.low,
        }
    }
}

/// A channel name in configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChannelName {
    /// Slack.
    Slack,
    /// E-mail.
    Email,
    /// In-app.
    InApp,
    /// Webhook.
    Webhook,
}

impl From<ChannelName> for Channel {
    fn from(c: ChannelName) -> Channel {
        match c {
            ChannelName::Slack => Channel::Slack,
            ChannelName::Email => Channel::Email,
            ChannelName::InApp => Channel::InApp,
            ChannelName::Webhook => Channel::Webhook,
        }
    }
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// Channels per tier.
    pub channels: PerTier<Vec<ChannelName>>,
    /// Minutes until the assignee is reminded.
    pub reminder_minutes: PerTier<u64>,
    /// Minutes until the team lead is told (the manager at twice this).
    pub next_level_minutes: PerTier<u64>,
    /// How many more rounds of the whole chain while nobody claims the
    /// ticket (a round lasts three times `next-level-minutes`).
    pub repeats: u32,
    /// No two steps to the same recipient on the same channel closer than
    /// this: no alert fatigue.
    pub min_interval_minutes: u64,
    /// Hours in which agents are not disturbed below critical, in each
    /// agent's local time.
    pub quiet_hours: Option<QuietHours>,
    /// Every team lead sees every critical escalation at once (in-app).
    pub leads_see_all_critical: bool,
    /// Minutes a claimed ticket may stay unanswered before whoever claimed
    /// it is reminded; at twice this the chain starts again with the lead.
    pub ack_timeout_minutes: PerTier<u64>,
    /// Digest window per tier, in minutes (0: every notification goes out
    /// on its own).
    pub digest_minutes: PerTier<u64>,
}

/// Quiet hours, `HH:MM` in the recipient's local time; may span midnight.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Start, e.g. `22:00`.
    pub start: String,
    /// End, e.g. `07:00`.
    pub end: String,
}

impl QuietHours {
    /// Minutes from `ts` until the quiet hours end, if `ts` falls in them
    /// for someone `offset` minutes ahead of UTC.
    fn wait(&self, ts: Timestamp, offset: i32) -> Result<Option<u64>, String> {
        let parse =
            |s: &str| time::parse_hhmm(s).ok_or_else(|| format!("quiet-hours {s:?} is not HH:MM"));
        let (start, end) = (parse(&self.start)?, parse(&self.end)?);
        let now = time::local(ts, offset).minute_of_day;
        let quiet = if start <= end {
            start <= now && now < end
        } else {
            now >= start || now < end
        };
        Ok(quiet.then(|| u64::from((end + 1440 - now) % 1440)))
    }
}

impl Default for Config {
    fn default() -> Self {
        use ChannelName::*;
        Config {
            channels: PerTier {
                critical: vec![Slack, Email, InApp],
                high: vec![Slack, InApp],
                medium: vec![InApp],
                low: vec![InApp],
            },
            reminder_minutes: PerTier {
                critical: 10,
                high: 60,
                medium: 240,
                low: 480,
            },
            next_level_minutes: PerTier {
                critical: 15,
                high: 120,
                medium: 480,
                low: 960,
            },
            repeats: 1,
            min_interval_minutes: 5,
            quiet_hours: None,
            leads_see_all_critical: true,
            ack_timeout_minutes: PerTier {
                critical: 15,
                high: 60,
                medium: 240,
                low: 480,
            },
            digest_minutes: PerTier {
                critical: 0,
                high: 5,
                medium: 30,
                low: 60,
            },
        }
    }
}

fn capitalized(tier: Tier) -> &'static str {
    match tier {
        Tier::Critical => "Critical",
        Tier::High => "High",
        Tier::Medium => "Medium",
        Tier::Low => "Low",
    }
}

/// `$50K MRR`, `$950 MRR`, `$1.2M MRR`.
pub fn money(cents: u64) -> String {
    let dollars = cents / 100;
    if dollars >= 1_000_000 {
        format!(
            "${}.{}M",
            dollars / 1_000_000,
            dollars % 1_000_000 / 100_000
        )
    } else if dollars >= 1_000 {
        format!("${}K", dollars / 1_000)
    } else {
        format!("${dollars}")
    }
}

/// The one-line summary: "Critical escalation: Enterprise customer (Acme
/// Corp, $50K MRR) reports billing issue — SLA: 30 minutes".
pub fn headline(ticket: &Ticket, escalation: &Escalation) -> String {
    let who = match &ticket.customer {
        Some(c) => {
            let plan = if c.plan.is_empty() {
                String::from("Customer")
            } else {
                format!("{}{} customer", c.plan[..1].to_uppercase(), &c.plan[1..])
            };
            if c.mrr_cents > 0 {
                format!("{plan} ({}, {} MRR)", c.name, money(c.mrr_cents))
            } else {
                format!("{plan} ({})", c.name)
            }
        }
        None => String::from("Customer"),
    };
    let issue = ticket.category.as_deref().map_or_else(
        || format!("\"{}\"", ticket.subject),
        |c| format!("{c} issue"),
    );
    let sla = escalation
        .response_target
        .map(|ms| format!(" — SLA: {}", time::human_duration(ms as i64)))
        .unwrap_or_default();
    format!(
        "{} escalation: {who} reports {issue}{sla}",
        capitalized(escalation.tier)
    )
}

fn body(ticket: &Ticket, escalation: &Escalation, routing: &Routing) -> String {
    let mut lines = vec![format!("Ticket {}: {}", ticket.id, ticket.subject)];
    for s in &escalation.signals {
        lines.push(format!("• {} ({})", s.reason, s.tier.as_str()));
    }
    if let Some(ai) = &ticket.ai_analysis {
        lines.push(format!(
            "AI confidence {:.0}%: {}",
            ai.confidence * 100.0,
            ai.reasoning
        ));
    }
    lines.push(format!("Assigned: {}", routing.reason));
    lines.join("\n")
}

/// What to tell the customer, chosen by the escalation's cause.
pub fn customer_message(escalation: &Escalation, ticket: &Ticket) -> Option<String> {
    if escalation.tier == Tier::Low && escalation.signals.is_empty() {
        return None;
    }
    let skill = escalation
        .signals
        .iter()
        .find_map(|s| s.target_skill.clone())
        .or_else(|| ticket.category.clone());
    let who = match skill.as_deref() {
        Some("billing") => "a billing specialist",
        Some("technical") => "a technical specialist",
        Some("legal") | Some("compliance") => "a member of our compliance team",
        _ => "a member of our support team",
    };
    let when = match escalation.tier {
        Tier::Critical => "right away",
        Tier::High => "shortly",
        _ => "as soon as possible",
    };
    Some(format!(
        "I'm connecting you with {who} who will pick this up {when}. They will see our whole conversation, so you won't need to repeat anything."
    ))
}

/// The plugin.
pub struct Tiered;

impl Notifier for Tiered {
    type Config = Config;

    fn plan(
        ticket: &Ticket,
        escalation: &Escalation,
        routing: &Routing,
        roster: &[Agent],
        ctx: &Ctx<Config>,
    ) -> Result<NotificationPlan, String> {
        let c = &ctx.config;
        let tier = escalation.tier;
        let channels: Vec<Channel> = c.channels.get(tier).iter().map(|&ch| ch.into()).collect();
        if channels.is_empty() {
            return Err(format!("no channels configured for tier {}", tier.as_str()));
        }
        let title = headline(ticket, escalation);
        let text = body(ticket, escalation, routing);
        let minute = 60_000;
        let digest_window = c.digest_minutes.get(tier) * minute;
        if ctx.event == EventKind::Claimed {
            return Ok(claimed_plan(ticket, escalation, roster, c, title, text));
        }
        let mut steps = Vec::new();
        let mut notify =
            |delay: u64, recipient: Recipient, channels: &[Channel], title: String, stop: bool| {
                for &channel in channels {
                    steps.push(NotificationStep {
                        delay,
                        recipient: recipient.clone(),
                        channel,
                        title: title.clone(),
                        body: text.clone(),
                        stop_when_claimed: stop,
                        stop_when_answered: false,
                        digest_window,
                    });
                }
            };
        let (first, team) = match &routing.target {
            Target::Agent(id) => (
                Recipient::Agent(id.clone()),
                roster.iter().find(|a| &a.id == id).map(|a| a.team.clone()),
            ),
            Target::Queue(q) => (Recipient::Team(q.clone()), Some(q.clone())),
        };
        notify(0, first.clone(), &channels, title.clone(), false);
        let reminder_channel = [*channels
            .iter()
            .find(|c| **c == Channel::Slack)
            .unwrap_or(&channels[0])];
        notify(
            c.reminder_minutes.get(tier) * minute,
            first,
            &reminder_channel,
            format!("Reminder: {title}"),
            true,
        );

        let next = c.next_level_minutes.get(tier) * minute;
        // Only people who can be reached now (not away, in a meeting, out
        // of office, off shift): the team's lead, never another team's; a
        // manager, of the team's department first.
        let reachable = |a: &&Agent| {
            a.status == AgentStatus::Available
                && time::within_shifts(ctx.now, a.utc_offset_minutes, &a.working_hours)
        };
        let same_team = |a: &Agent| team.as_deref() == Some(a.team.as_str());
        let lead = roster
            .iter()
            .filter(|a| a.role == AgentRole::Lead && same_team(a))
            .filter(reachable)
            .min_by_key(|a| a.id.clone());
        let manager = roster
            .iter()
            .filter(|a| a.role == AgentRole::Manager)
            .filter(reachable)
            .min_by_key(|a| (!same_team(a), a.id.clone()));
        if let Some(lead) = lead {
            notify(
                next,
                Recipient::Agent(lead.id.clone()),
                &channels,
                format!(
                    "Unclaimed after {}: {title}",
                    time::human_duration(next as i64)
                ),
                true,
            );
        }
        if let Some(manager) = manager {
            notify(
                2 * next,
                Recipient::Agent(manager.id.clone()),
                &channels,
                format!(
                    "Unclaimed after {}: {title}",
                    time::human_duration(2 * next as i64)
                ),
                true,
            );
        }
        // Later rounds of the same chain while nobody claims the ticket.
        let round = 3 * next;
        let first_round = steps.clone();
        for r in 1..=u64::from(c.repeats) {
            for step in &first_round {
                let delay = step.delay + r * round;
                steps.push(NotificationStep {
                    delay,
                    // The time as it will be then, not the first round's.
                    title: format!(
                        "Still unclaimed after {} (round {}): {title}",
                        time::human_duration(delay as i64),
                        r + 1
                    ),
                    stop_when_claimed: true,
                    ..step.clone()
                });
            }
        }
        // Every lead hears of every critical escalation at once.
        if tier == Tier::Critical && c.leads_see_all_critical {
            for lead in roster.iter().filter(|a| a.role == AgentRole::Lead) {
                steps.push(NotificationStep {
                    delay: 0,
                    recipient: Recipient::Agent(lead.id.clone()),
                    channel: Channel::InApp,
                    title: format!("FYI: {title}"),
                    body: text.clone(),
                    stop_when_claimed: false,
                    stop_when_answered: false,
                    digest_window,
                });
            }
        }
        // Quiet hours hold steps below critical until the recipient's
        // morning.
        if let (Some(q), true) = (&c.quiet_hours, tier != Tier::Critical) {
            for step in &mut steps {
                let Recipient::Agent(id) = &step.recipient else {
                    continue;
                };
                let Some(agent) = roster.iter().find(|a| &a.id == id) else {
                    continue;
                };
                if let Some(wait) = q.wait(ctx.now + step.delay as i64, agent.utc_offset_minutes)? {
                    step.delay += wait * minute;
                }
            }
        }
        // No alert fatigue: drop a step that comes too soon after another
        // to the same recipient on the same channel.
        steps.sort_by_key(|s| s.delay);
        let gap = c.min_interval_minutes * minute;
        let mut kept: Vec<NotificationStep> = Vec::with_capacity(steps.len());
        for step in steps {
            let too_soon = kept.iter().any(|k| {
                k.recipient == step.recipient
                    && k.channel == step.channel
                    && step.delay < k.delay + gap
            });
            if !too_soon {
                kept.push(step);
            }
        }
        let steps = kept;
        Ok(NotificationPlan {
            steps,
            customer_message: customer_message(escalation, ticket),
        })
    }
}

/// The plan for a ticket just claimed: if nobody answers the customer
/// within the acknowledgement timeout, remind whoever claimed it; at twice
/// the timeout, start the chain again with the lead (and the manager at
/// three times). Every step stops once the ticket is answered.
fn claimed_plan(
    ticket: &Ticket,
    escalation: &Escalation,
    roster: &[Agent],
    c: &Config,
    title: String,
    text: String,
) -> NotificationPlan {
    let tier = escalation.tier;
    let timeout = c.ack_timeout_minutes.get(tier) * 60_000;
    let channels: Vec<Channel> = c.channels.get(tier).iter().map(|&ch| ch.into()).collect();
    let owner = ticket.assignee.as_ref();
    let team = owner
        .and_then(|id| roster.iter().find(|a| &a.id == id))
        .map(|a| a.team.as_str());
    // The owner's own lead (never another team's), a manager; not those
    // gone for longer (out of office, signed out).
    let pick = |role: AgentRole| {
        roster
            .iter()
            .filter(|a| a.role == role && Some(&a.id) != owner)
            .filter(|a| role != AgentRole::Lead || team == Some(a.team.as_str()))
            .filter(|a| !matches!(a.status, AgentStatus::OutOfOffice | AgentStatus::Offline))
            .min_by_key(|a| (team != Some(a.team.as_str()), a.id.clone()))
    };
    let who = owner.map_or("someone", |o| o.as_str());
    let mut steps = Vec::new();
    let mut push = |delay: u64, recipient: String, channels: &[Channel], title: String| {
        for &channel in channels {
            steps.push(NotificationStep {
                delay,
                recipient: Recipient::Agent(recipient.clone()),
                channel,
                title: title.clone(),
                body: text.clone(),
                stop_when_claimed: false,
                stop_when_answered: true,
                digest_window: 0,
            });
        }
    };
    let untouched = |d: u64| time::human_duration(d as i64);
    if let Some(owner) = owner {
        let first = channels.first().copied().unwrap_or(Channel::InApp);
        push(
            timeout,
            owner.clone(),
            &[first],
            format!(
                "You claimed this {} ago and the customer has no answer yet: {title}",
                untouched(timeout)
            ),
        );
    }
    for (n, role) in [AgentRole::Lead, AgentRole::Manager]
        .into_iter()
        .enumerate()
    {
        if let Some(a) = pick(role) {
            let delay = (n as u64 + 2) * timeout;
            push(
                delay,
                a.id.clone(),
                &channels,
                format!(
                    "Claimed by {who} but unanswered after {}: {title}",
                    untouched(delay)
                ),
            );
        }
    }
    steps.sort_by_key(|s| s.delay);
    NotificationPlan {
        steps,
        customer_message: None,
    }
}

escalator_guest::export_notifier!(Tiered);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing::{self, agent};

    fn enterprise_billing_ticket() -> Ticket {
        Ticket {
            subject: "Charged twice".into(),
            category: Some("billing".into()),
            customer: Some(Customer {
                name: "Acme Corp".into(),
                plan: "enterprise".into(),
                mrr_cents: 5_000_000,
                ..testing::customer()
            }),
            ..testing::ticket()
        }
    }

    fn critical() -> Escalation {
        Escalation {
            response_target: Some(30 * 60_000),
            ..testing::escalation(Tier::Critical)
        }
    }

    #[test]
    fn the_headline_says_who_what_how_much_and_the_sla() {
        assert_eq!(
            headline(&enterprise_billing_ticket(), &critical()),
            "Critical escalation: Enterprise customer (Acme Corp, $50K MRR) reports billing issue — SLA: 30m"
        );
    }

    #[test]
    fn a_critical_chain_alerts_now_reminds_at_10_and_goes_up_at_15_and_30() {
        let roster = [
            agent("ana", &["billing"]),
            Agent {
                role: AgentRole::Lead,
                ..agent("lee", &[])
            },
            Agent {
                role: AgentRole::Manager,
                ..agent("max", &[])
            },
        ];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: "specialist".into(),
            fallback: vec![],
        };
        let plan = Tiered::plan(
            &enterprise_billing_ticket(),
            &critical(),
            &routing,
            &roster,
            &Ctx::new(
                0,
                EventKind::MessageAdded,
                Config {
                    repeats: 0,
                    leads_see_all_critical: false,
                    ..Config::default()
                },
            ),
        )
        .unwrap();
        let summary = summary(&plan);
        use Channel::*;
        assert_eq!(
            summary,
            vec![
                (0, "ana".into(), Slack, false),
                (0, "ana".into(), Email, false),
                (0, "ana".into(), InApp, false),
                (10, "ana".into(), Slack, true),
                (15, "lee".into(), Slack, true),
                (15, "lee".into(), Email, true),
                (15, "lee".into(), InApp, true),
                (30, "max".into(), Slack, true),
                (30, "max".into(), Email, true),
                (30, "max".into(), InApp, true),
            ]
        );
        assert!(
            plan.customer_message
                .unwrap()
                .contains("billing specialist")
        );
    }

    /// The minutes at which Slack steps go out.
    fn slack_delays(plan: &NotificationPlan) -> Vec<u64> {
        summary(plan)
            .into_iter()
            .filter(|s| s.2 == Channel::Slack)
            .map(|s| s.0)
            .collect()
    }

    /// Each step as (minutes, recipient, channel, stops when claimed).
    fn summary(plan: &NotificationPlan) -> Vec<(u64, String, Channel, bool)> {
        plan.steps
            .iter()
            .map(|s| {
                let who = match &s.recipient {
                    Recipient::Agent(a) | Recipient::Team(a) | Recipient::Endpoint(a) => a.clone(),
                };
                (s.delay / 60_000, who, s.channel, s.stop_when_claimed)
            })
            .collect()
    }

    #[test]
    fn an_unclaimed_chain_repeats_a_bounded_number_of_times() {
        let roster = [agent("ana", &["billing"])];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: "specialist".into(),
            fallback: vec![],
        };
        let config = Config {
            repeats: 2,
            ..Config::default()
        };
        let plan = Tiered::plan(
            &enterprise_billing_ticket(),
            &critical(),
            &routing,
            &roster,
            &Ctx::new(0, EventKind::MessageAdded, config),
        )
        .unwrap();
        let slack = slack_delays(&plan);
        // Alert at 0 and reminder at 10, again at 45/55 and 90/100: three rounds.
        assert_eq!(slack, vec![0, 10, 45, 55, 90, 100]);
        let titles: Vec<&str> = plan.steps.iter().map(|s| s.title.as_str()).collect();
        assert!(
            titles
                .iter()
                .any(|t| t.starts_with("Still unclaimed after 1h 30m (round 3)")),
            "{titles:?}"
        );
        // Each round's titles say the time as it is then.
        assert!(
            !titles
                .iter()
                .any(|t| t.starts_with("Still") && t.contains("Unclaimed after 15m")),
            "{titles:?}"
        );
    }

    #[test]
    fn every_lead_hears_of_every_critical_escalation_but_not_of_a_high_one() {
        let lead = |id: &str, team: &str| Agent {
            role: AgentRole::Lead,
            team: team.into(),
            ..agent(id, &[])
        };
        let roster = [
            agent("ana", &["billing"]),
            lead("lee", "billing"),
            lead("lia", "technical"),
        ];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: "specialist".into(),
            fallback: vec![],
        };
        let ctx = Ctx::new(0, EventKind::MessageAdded, Config::default());
        let plan = Tiered::plan(
            &enterprise_billing_ticket(),
            &critical(),
            &routing,
            &roster,
            &ctx,
        )
        .unwrap();
        let fyi: Vec<_> = summary(&plan)
            .into_iter()
            .filter(|s| s.0 == 0 && s.1 != "ana")
            .collect();
        assert_eq!(
            fyi,
            vec![
                (0, "lee".into(), Channel::InApp, false),
                (0, "lia".into(), Channel::InApp, false)
            ]
        );
        let high = Escalation {
            tier: Tier::High,
            ..critical()
        };
        let plan =
            Tiered::plan(&enterprise_billing_ticket(), &high, &routing, &roster, &ctx).unwrap();
        assert!(summary(&plan).iter().all(|s| s.0 > 0 || s.1 == "ana"));
    }

    #[test]
    fn quiet_hours_hold_a_high_alert_until_morning_but_never_a_critical_one() {
        let roster = [Agent {
            utc_offset_minutes: 60,
            ..agent("ana", &["billing"])
        }];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: "specialist".into(),
            fallback: vec![],
        };
        let config = Config {
            quiet_hours: Some(QuietHours {
                start: "22:00".into(),
                end: "07:00".into(),
            }),
            repeats: 0,
            ..Config::default()
        };
        // 22:30 UTC is 23:30 for ana: 7.5 hours until 07:00.
        let now = time::timestamp(2026, 11, 27, 22, 30, 0);
        let high = Escalation {
            tier: Tier::High,
            ..critical()
        };
        let plan = Tiered::plan(
            &enterprise_billing_ticket(),
            &high,
            &routing,
            &roster,
            &Ctx::new(now, EventKind::MessageAdded, config.clone()),
        )
        .unwrap();
        assert_eq!(plan.steps[0].delay, 450 * 60_000);
        let plan = Tiered::plan(
            &enterprise_billing_ticket(),
            &critical(),
            &routing,
            &roster,
            &Ctx::new(now, EventKind::MessageAdded, config),
        )
        .unwrap();
        assert_eq!(plan.steps[0].delay, 0);
    }

    #[test]
    fn steps_too_close_to_the_same_person_are_dropped() {
        let roster = [agent("ana", &["billing"])];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: "specialist".into(),
            fallback: vec![],
        };
        let mut config = Config {
            repeats: 0,
            min_interval_minutes: 5,
            ..Config::default()
        };
        config.reminder_minutes.critical = 2;
        let plan = Tiered::plan(
            &enterprise_billing_ticket(),
            &critical(),
            &routing,
            &roster,
            &Ctx::new(0, EventKind::MessageAdded, config),
        )
        .unwrap();
        let slack = slack_delays(&plan);
        assert_eq!(
            slack,
            vec![0],
            "the reminder two minutes after the alert is dropped"
        );
    }

    #[test]
    fn a_medium_ticket_only_goes_in_app() {
        let routing = Routing {
            target: Target::Queue("general".into()),
            reason: "queue".into(),
            fallback: vec![],
        };
        let plan = Tiered::plan(
            &testing::ticket(),
            &testing::escalation(Tier::Medium),
            &routing,
            &[],
            &Ctx::new(0, EventKind::Tick, Config::default()),
        )
        .unwrap();
        assert!(plan.steps.iter().all(|s| s.channel == Channel::InApp));
        assert_eq!(plan.steps[0].recipient, Recipient::Team("general".into()));
    }

    #[test]
    fn a_claimed_ticket_left_unanswered_reminds_its_owner_then_restarts_the_chain() {
        let role = |id: &str, role: AgentRole| Agent {
            role,
            team: "billing".into(),
            ..agent(id, &[])
        };
        let roster = [
            role("ana", AgentRole::Agent),
            role("lee", AgentRole::Lead),
            role("max", AgentRole::Manager),
        ];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: "specialist".into(),
            fallback: vec![],
        };
        let ticket = Ticket {
            assignee: Some("ana".into()),
            claimed_at: Some(0),
            ..enterprise_billing_ticket()
        };
        let plan = Tiered::plan(
            &ticket,
            &critical(),
            &routing,
            &roster,
            &Ctx::new(0, EventKind::Claimed, Config::default()),
        )
        .unwrap();
        let steps: Vec<_> = summary(&plan)
            .into_iter()
            .map(|(m, who, ch, _)| (m, who, ch))
            .collect();
        assert_eq!(
            steps,
            vec![
                (15, "ana".into(), Channel::Slack),
                (30, "lee".into(), Channel::Slack),
                (30, "lee".into(), Channel::Email),
                (30, "lee".into(), Channel::InApp),
                (45, "max".into(), Channel::Slack),
                (45, "max".into(), Channel::Email),
                (45, "max".into(), Channel::InApp),
            ]
        );
        assert!(
            plan.steps
                .iter()
                .all(|s| s.stop_when_answered && !s.stop_when_claimed)
        );
        assert!(
            plan.steps[1]
                .title
                .starts_with("Claimed by ana but unanswered after 30m"),
            "{}",
            plan.steps[1].title
        );
        assert_eq!(plan.customer_message, None, "the customer heard already");
    }

    #[test]
    fn below_critical_notifications_may_wait_for_a_digest() {
        let roster = [agent("ana", &["billing"])];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: "specialist".into(),
            fallback: vec![],
        };
        let windows = |tier: Tier| {
            let e = Escalation { tier, ..critical() };
            let ctx = Ctx::new(0, EventKind::MessageAdded, Config::default());
            let plan =
                Tiered::plan(&enterprise_billing_ticket(), &e, &routing, &roster, &ctx).unwrap();
            let mut w: Vec<u64> = plan
                .steps
                .iter()
                .map(|s| s.digest_window / 60_000)
                .collect();
            w.dedup();
            w
        };
        assert_eq!(windows(Tier::Critical), [0], "critical is never held");
        assert_eq!(windows(Tier::High), [5]);
        assert_eq!(windows(Tier::Medium), [30]);
    }

    #[test]
    fn money_reads_naturally() {
        assert_eq!(money(95_000), "$950");
        assert_eq!(money(5_000_000), "$50K");
        assert_eq!(money(123_000_000), "$1.2M");
    }

    #[test]
    fn the_chain_skips_leads_who_are_out_and_never_takes_another_teams_lead() {
        let lead = |id: &str, team: &str, status: AgentStatus| Agent {
            role: AgentRole::Lead,
            team: team.into(),
            status,
            ..agent(id, &[])
        };
        let roster = [
            Agent {
                team: "billing".into(),
                ..agent("ana", &["billing"])
            },
            lead("lee", "billing", AgentStatus::OutOfOffice),
            lead("tam", "technical", AgentStatus::Available),
            Agent {
                role: AgentRole::Manager,
                team: "support".into(),
                ..agent("max", &[])
            },
        ];
        let routing = Routing {
            target: Target::Agent("ana".into()),
            reason: String::new(),
            fallback: vec![],
        };
        let escalation = Escalation {
            tier: Tier::High,
            ..critical()
        };
        let plan = Tiered::plan(
            &enterprise_billing_ticket(),
            &escalation,
            &routing,
            &roster,
            &Ctx::new(0, EventKind::MessageAdded, Config::default()),
        )
        .unwrap();
        let who: Vec<String> = plan
            .steps
            .iter()
            .map(|s| match &s.recipient {
                Recipient::Agent(a) | Recipient::Team(a) | Recipient::Endpoint(a) => a.clone(),
            })
            .collect();
        assert!(!who.iter().any(|w| w == "lee" || w == "tam"), "{who:?}");
        assert!(who.iter().any(|w| w == "max"), "{who:?}");
    }
}
