//! Router: skill-based routing.
//!
//! Picks, among agents with the skill the ticket needs, one who can take it
//! now (available, under capacity, within working hours), in round-robin or
//! load-balanced order; then builds the fallback path: backup specialist,
//! team lead, general queue, each after the tier's claim timeout.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::prelude::*;

/// How to choose among equally skilled agents.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The least recently assigned first.
    #[default]
    RoundRobin,
    /// The fewest open tickets relative to capacity first.
    LoadBalanced,
}

/// Claim timeouts per tier, in minutes.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimTimeouts {
    /// Critical.
    pub critical: u64,
    /// High.
    pub high: u64,
    /// Medium.
    pub medium: u64,
    /// Low.
    pub low: u64,
}

impl Default for ClaimTimeouts {
    fn default() -> Self {
        ClaimTimeouts {
            critical: 15,
            high: 60,
            medium: 240,
            low: 480,
        }
    }
}

impl ClaimTimeouts {
    fn for_tier(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Critical => self.critical,
            Tier::High => self.high,
            Tier::Medium => self.medium,
            Tier::Low => self.low,
        }
    }
}

/// The plugin's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// How to choose among equals.
    pub strategy: Strategy,
    /// The queue of last resort.
    pub general_queue: String,
    /// Claim timeouts per tier.
    pub claim_timeout_minutes: ClaimTimeouts,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            strategy: Strategy::RoundRobin,
            general_queue: "general".into(),
            claim_timeout_minutes: ClaimTimeouts::default(),
        }
    }
}

/// Whether `agent` can take a ticket at `now`, and if not, why.
pub fn unavailable_because(agent: &Agent, now: Timestamp) -> Option<&'static str> {
    match agent.status {
        AgentStatus::Available => {}
        AgentStatus::Away => return Some("away"),
        AgentStatus::Meeting => return Some("in a meeting"),
        AgentStatus::OutOfOffice => return Some("out of office"),
        AgentStatus::Offline => return Some("offline"),
    }
    if agent.open_tickets >= agent.capacity {
        return Some("at capacity");
    }
    if !time::within_shifts(now, agent.utc_offset_minutes, &agent.working_hours) {
        return Some("outside working hours");
    }
    None
}

fn has_skill(agent: &Agent, skill: &str) -> bool {
    agent.skills.iter().any(|s| s.eq_ignore_ascii_case(skill))
}

/// The skill the ticket needs: a trigger's target skill, else its category,
/// else the AI's category.
pub fn needed_skill(ticket: &Ticket, escalation: &Escalation) -> Option<String> {
    escalation
        .signals
        .iter()
        .find_map(|s| s.target_skill.clone())
        .or_else(|| ticket.category.clone())
        .or_else(|| ticket.ai_analysis.as_ref().and_then(|a| a.category.clone()))
}

/// The plugin.
pub struct Skills;

impl Router for Skills {
    type Config = Config;

    fn route(
        ticket: &Ticket,
        escalation: &Escalation,
        roster: &[Agent],
        ctx: &Ctx<Config>,
    ) -> Result<Routing, String> {
        let c = &ctx.config;
        let skill = needed_skill(ticket, escalation);
        let mut specialists: Vec<&Agent> = roster
            .iter()
            .filter(|a| a.role == AgentRole::Agent)
            .filter(|a| skill.as_deref().is_none_or(|s| has_skill(a, s)))
            .filter(|a| unavailable_because(a, ctx.now).is_none())
            .collect();
        match c.strategy {
            Strategy::RoundRobin => specialists.sort_by(|a, b| {
                a.last_assigned_at
                    .unwrap_or(i64::MIN)
                    .cmp(&b.last_assigned_at.unwrap_or(i64::MIN))
                    .then(a.id.cmp(&b.id))
            }),
            Strategy::LoadBalanced => specialists.sort_by(|a, b| {
                // a.open / a.cap < b.open / b.cap, without division.
                (u64::from(a.open_tickets) * u64::from(b.capacity.max(1)))
                    .cmp(&(u64::from(b.open_tickets) * u64::from(a.capacity.max(1))))
                    .then(
                        a.last_assigned_at
                            .unwrap_or(i64::MIN)
                            .cmp(&b.last_assigned_at.unwrap_or(i64::MIN)),
                    )
                    .then(a.id.cmp(&b.id))
            }),
        }
        let skill_text = skill.as_deref().unwrap_or("any");
        let step_ms = c.claim_timeout_minutes.for_tier(escalation.tier) * 60_000;

        // Leads of the team that owns the skill (the first specialist's team,
        // else any lead with the skill, else any lead), who are reachable.
        let team = specialists.first().map(|a| a.team.clone()).or_else(|| {
            roster
                .iter()
                .find(|a| skill.as_deref().is_some_and(|s| has_skill(a, s)))
                .map(|a| a.team.clone())
        });
        let lead = roster
            .iter()
            .filter(|a| a.role == AgentRole::Lead)
            .filter(|a| !matches!(a.status, AgentStatus::OutOfOffice | AgentStatus::Offline))
            .min_by_key(|a| (team.as_deref() != Some(a.team.as_str()), a.id.clone()));

        let mut path: Vec<(Target, String)> = Vec::new();
        for (i, a) in specialists.iter().take(2).enumerate() {
            let role = if i == 0 {
                "specialist"
            } else {
                "backup specialist"
            };
            let how = match c.strategy {
                Strategy::RoundRobin => "least recently assigned",
                Strategy::LoadBalanced => "least loaded",
            };
            path.push((
                Target::Agent(a.id.clone()),
                format!("{how} available {skill_text} {role}"),
            ));
        }
        if let Some(l) = lead {
            path.push((
                Target::Agent(l.id.clone()),
                format!("team lead of {}", l.team),
            ));
        }
        path.push((
            Target::Queue(c.general_queue.clone()),
            String::from("general queue"),
        ));

        let mut steps = path.into_iter();
        let (target, mut reason) = steps.next().ok_or("empty routing path")?;
        // Routed again because the assignee became unavailable (the host
        // re-routes unclaimed tickets on availability changes): say so.
        if ticket.claimed_at.is_none()
            && let Some(previous) = ticket.assignee.as_deref()
            && let Some(why) = roster
                .iter()
                .find(|a| a.id == previous)
                .and_then(|a| unavailable_because(a, ctx.now))
            && target != Target::Agent(previous.to_string())
        {
            reason = format!("{reason} (was {previous}, now {why})");
        }
        if specialists.is_empty() {
            let why: Vec<String> = roster
                .iter()
                .filter(|a| {
                    a.role == AgentRole::Agent && skill.as_deref().is_none_or(|s| has_skill(a, s))
                })
                .filter_map(|a| unavailable_because(a, ctx.now).map(|w| format!("{} {w}", a.name)))
                .collect();
            reason = if why.is_empty() {
                format!("{reason}: no agent has the {skill_text} skill")
            } else {
                format!(
                    "{reason}: no {skill_text} specialist available ({})",
                    why.join(", ")
                )
            };
        }
        let fallback = steps
            .enumerate()
            .map(|(i, (target, reason))| FallbackStep {
                after: step_ms * (i as u64 + 1),
                target,
                reason,
            })
            .collect();
        Ok(Routing {
            target,
            reason,
            fallback,
        })
    }
}

escalator_guest::export_router!(Skills);

#[cfg(test)]
mod tests {
    use super::*;
    use escalator_guest::testing::{self, agent};

    fn lead(id: &str) -> Agent {
        Agent {
            role: AgentRole::Lead,
            ..agent(id, &[])
        }
    }

    fn route(roster: &[Agent], config: Config) -> Routing {
        let ticket = Ticket {
            category: Some("billing".into()),
            ..testing::ticket()
        };
        Skills::route(
            &ticket,
            &testing::escalation(Tier::Critical),
            roster,
            &Ctx::new(1_000, EventKind::MessageAdded, config),
        )
        .unwrap()
    }

    #[test]
    fn round_robin_picks_the_least_recently_assigned_specialist_then_backup_lead_queue() {
        let roster = [
            Agent {
                last_assigned_at: Some(500),
                ..agent("ana", &["billing"])
            },
            Agent {
                last_assigned_at: Some(100),
                ..agent("bo", &["billing"])
            },
            agent("cy", &["technical"]),
            lead("lee"),
        ];
        let r = route(&roster, Config::default());
        assert_eq!(r.target, Target::Agent("bo".into()));
        let path: Vec<_> = r
            .fallback
            .iter()
            .map(|f| (f.after, f.target.clone()))
            .collect();
        assert_eq!(
            path,
            vec![
                (15 * 60_000, Target::Agent("ana".into())),
                (30 * 60_000, Target::Agent("lee".into())),
                (45 * 60_000, Target::Queue("general".into())),
            ]
        );
    }

    #[test]
    fn load_balanced_picks_the_lowest_load_relative_to_capacity() {
        let roster = [
            Agent {
                open_tickets: 2,
                capacity: 4,
                ..agent("ana", &["billing"])
            },
            Agent {
                open_tickets: 3,
                capacity: 10,
                ..agent("bo", &["billing"])
            },
        ];
        let r = route(
            &roster,
            Config {
                strategy: Strategy::LoadBalanced,
                ..Config::default()
            },
        );
        assert_eq!(r.target, Target::Agent("bo".into()));
    }

    #[test]
    fn unavailable_agents_are_skipped_and_named_when_nobody_is_left() {
        let roster = [
            Agent {
                status: AgentStatus::Away,
                ..agent("ana", &["billing"])
            },
            Agent {
                open_tickets: 10,
                capacity: 10,
                ..agent("bo", &["billing"])
            },
            lead("lee"),
        ];
        let r = route(&roster, Config::default());
        assert_eq!(r.target, Target::Agent("lee".into()));
        assert!(
            r.reason.contains("ana away") && r.reason.contains("bo at capacity"),
            "{}",
            r.reason
        );
        assert_eq!(r.fallback[0].target, Target::Queue("general".into()));
    }

    #[test]
    fn agents_outside_their_working_hours_are_skipped() {
        let off = Shift {
            day: escalator_guest::Weekday::Monday,
            start_minute: 0,
            end_minute: 1,
        };
        let roster = [
            Agent {
                working_hours: vec![off],
                ..agent("ana", &["billing"])
            },
            agent("bo", &["billing"]),
        ];
        assert_eq!(
            route(&roster, Config::default()).target,
            Target::Agent("bo".into())
        );
    }

    #[test]
    fn an_unclaimed_ticket_whose_assignee_went_away_is_routed_to_someone_else() {
        let roster = [
            Agent {
                status: AgentStatus::OutOfOffice,
                last_assigned_at: Some(1),
                ..agent("ana", &["billing"])
            },
            Agent {
                last_assigned_at: Some(500),
                ..agent("bo", &["billing"])
            },
        ];
        let ticket = Ticket {
            category: Some("billing".into()),
            assignee: Some("ana".into()),
            ..testing::ticket()
        };
        let ctx = Ctx::new(1_000, EventKind::AgentAvailability, Config::default());
        let r = Skills::route(&ticket, &testing::escalation(Tier::High), &roster, &ctx).unwrap();
        assert_eq!(r.target, Target::Agent("bo".into()));
        assert!(
            r.reason.ends_with("(was ana, now out of office)"),
            "{}",
            r.reason
        );
    }

    #[test]
    fn with_no_one_at_all_the_ticket_goes_to_the_general_queue() {
        let r = route(&[], Config::default());
        assert_eq!(r.target, Target::Queue("general".into()));
        assert!(r.fallback.is_empty());
    }
}
