//! Router: skill-based routing.
//!
//! Picks, among agents with the skill the ticket needs, one who can take it
//! now (available, under capacity, within working hours), in round-robin or
//! load-balanced order; then builds the fallback path: backup specialist,
//! team lead, general queue, each after the tier's claim timeout.
#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use escalator_guest::matrix::Matrix;
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
    /// The queue of last resort. A queue is a team: the roster's members
    /// of the team of this name get its notifications.
    pub general_queue: String,
    /// Teams that help a team none of whose agents can take a ticket, in
    /// order: e.g. `billing = ["support"]`.
    pub backup_teams: BTreeMap<String, Vec<String>>,
    /// Claim timeouts per tier.
    pub claim_timeout_minutes: ClaimTimeouts,
    /// The escalation matrix (the manifest says `uses = ["matrix"]`): the
    /// team that owns the ticket's scenario.
    pub matrix: Matrix,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            strategy: Strategy::RoundRobin,
            general_queue: "general".into(),
            backup_teams: BTreeMap::new(),
            claim_timeout_minutes: ClaimTimeouts::default(),
            matrix: Matrix::default(),
        }
    }
}

/// Whether `agent` can take a ticket at `now`, and if not, why.
pub fn unavailable_because(agent: &Agent, now: Timestamp) -> Option<&'static str> {
    if let Some(why) = unreachable_because(agent, now) {
        return Some(why);
    }
    if agent.open_tickets >= agent.capacity {
        return Some("at capacity");
    }
    None
}

/// Whether `agent` (a lead, a manager) can be reached now, and if not,
/// why: signed in, available, within working hours.
pub fn unreachable_because(agent: &Agent, now: Timestamp) -> Option<&'static str> {
    match agent.status {
        AgentStatus::Available => {}
        AgentStatus::Away => return Some("away"),
        AgentStatus::Meeting => return Some("in a meeting"),
        AgentStatus::OutOfOffice => return Some("out of office"),
        AgentStatus::Offline => return Some("offline"),
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

/// The team that owns the ticket: the matrix's team for its scenario, else
/// a team a trigger named as the target queue, else the team of the agents
/// with the needed skill.
pub fn owning_team(
    ticket: &Ticket,
    escalation: &Escalation,
    roster: &[Agent],
    skill: Option<&str>,
    matrix: &Matrix,
) -> Option<String> {
    if let Some(s) = matrix.scenario_of(ticket) {
        return Some(s.team.clone());
    }
    let is_team = |t: &str| roster.iter().any(|a| a.team.eq_ignore_ascii_case(t));
    escalation
        .signals
        .iter()
        .filter_map(|s| s.target_queue.as_deref())
        .find(|q| is_team(q))
        .map(String::from)
        .or_else(|| {
            roster
                .iter()
                .filter(|a| a.role == AgentRole::Agent)
                .find(|a| skill.is_some_and(|s| has_skill(a, s)))
                .map(|a| a.team.clone())
        })
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
        let now = ctx.now;
        let skill = needed_skill(ticket, escalation);
        let skilled = |a: &Agent| skill.as_deref().is_some_and(|s| has_skill(a, s));
        let team = owning_team(ticket, escalation, roster, skill.as_deref(), &c.matrix);
        let in_team = |a: &Agent, t: &str| a.team.eq_ignore_ascii_case(t);
        let can_take =
            |a: &&Agent| a.role == AgentRole::Agent && unavailable_because(a, now).is_none();
        // Those with the skill first, then the strategy's order.
        let order = |agents: &mut Vec<&Agent>| {
            agents.sort_by(|a, b| {
                let by_strategy = match c.strategy {
                    Strategy::RoundRobin => a
                        .last_assigned_at
                        .unwrap_or(i64::MIN)
                        .cmp(&b.last_assigned_at.unwrap_or(i64::MIN)),
                    // a.open / a.cap < b.open / b.cap, without division.
                    Strategy::LoadBalanced => (u64::from(a.open_tickets)
                        * u64::from(b.capacity.max(1)))
                    .cmp(&(u64::from(b.open_tickets) * u64::from(a.capacity.max(1))))
                    .then(
                        a.last_assigned_at
                            .unwrap_or(i64::MIN)
                            .cmp(&b.last_assigned_at.unwrap_or(i64::MIN)),
                    ),
                };
                skilled(b)
                    .cmp(&skilled(a))
                    .then(by_strategy)
                    .then(a.id.cmp(&b.id))
            })
        };
        // The owning team's agents who can take it now (skills refine
        // within the team); without a team, whoever has the skill.
        let mut specialists: Vec<&Agent> = roster
            .iter()
            .filter(can_take)
            .filter(|a| match &team {
                Some(t) => in_team(a, t),
                None => skill.is_none() || skilled(a),
            })
            .collect();
        order(&mut specialists);
        // Then the backup teams', in the order configured.
        let mut helpers: Vec<(&Agent, &str)> = Vec::new();
        for b in team
            .as_ref()
            .and_then(|t| c.backup_teams.get(t))
            .into_iter()
            .flatten()
        {
            let mut of_b: Vec<&Agent> = roster
                .iter()
                .filter(can_take)
                .filter(|a| in_team(a, b))
                .collect();
            order(&mut of_b);
            helpers.extend(of_b.into_iter().map(|a| (a, b.as_str())));
        }
        let skill_text = skill.as_deref().unwrap_or("any");
        let team_text = team.as_deref().unwrap_or(skill_text);
        let step_ms = c.claim_timeout_minutes.for_tier(escalation.tier) * 60_000;
        let how = match c.strategy {
            Strategy::RoundRobin => "least recently assigned",
            Strategy::LoadBalanced => "least loaded",
        };

        let mut path: Vec<(Target, String)> = Vec::new();
        for (i, a) in specialists.iter().take(2).enumerate() {
            let role = if i == 0 {
                "specialist"
            } else {
                "backup specialist"
            };
            let what = match &team {
                Some(t) if !skilled(a) && skill.is_some() => format!("{t} team agent"),
                Some(t) => format!("{t} {skill_text} {role}"),
                None => format!("{skill_text} {role}"),
            };
            path.push((
                Target::Agent(a.id.clone()),
                format!("{how} available {what}"),
            ));
        }
        for (a, b) in helpers.iter().take(2 - path.len().min(2)) {
            path.push((
                Target::Agent(a.id.clone()),
                format!("{how} available agent of the backup team {b}"),
            ));
        }
        // The owning team's lead (with no owner known, the first
        // specialist's), if they can be reached: never another team's by
        // accident.
        let lead_team = team
            .clone()
            .or_else(|| specialists.first().map(|a| a.team.clone()));
        let lead = roster
            .iter()
            .filter(|a| a.role == AgentRole::Lead)
            .filter(|a| lead_team.as_deref().is_some_and(|t| in_team(a, t)))
            .filter(|a| unreachable_because(a, now).is_none())
            .min_by_key(|a| a.id.clone());
        if let Some(l) = lead {
            path.push((
                Target::Agent(l.id.clone()),
                format!("team lead of {}", l.team),
            ));
        }
        // A critical ticket reaches someone available now: nobody of the
        // team can take it, so the nearest person who can.
        if escalation.tier == Tier::Critical && path.is_empty() {
            let mut anyone: Vec<&Agent> = roster.iter().filter(can_take).collect();
            order(&mut anyone);
            let reachable = |role: AgentRole| {
                roster
                    .iter()
                    .filter(move |a| a.role == role && unreachable_because(a, now).is_none())
                    .min_by_key(|a| a.id.clone())
            };
            let nearest = anyone
                .first()
                .map(|a| (*a, format!("{how} available agent of any team")))
                .or_else(|| {
                    reachable(AgentRole::Lead).map(|l| {
                        (
                            l,
                            format!("team lead of {}, the only lead available", l.team),
                        )
                    })
                })
                .or_else(|| {
                    reachable(AgentRole::Manager)
                        .map(|m| (m, String::from("manager, the only one available")))
                });
            if let Some((a, why)) = nearest {
                path.push((
                    Target::Agent(a.id.clone()),
                    format!("{why}: a critical ticket goes to someone available now"),
                ));
            }
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
                .and_then(|a| unavailable_because(a, now))
            && target != Target::Agent(previous.to_string())
        {
            reason = format!("{reason} (was {previous}, now {why})");
        }
        if specialists.is_empty() {
            let why: Vec<String> = roster
                .iter()
                .filter(|a| {
                    a.role == AgentRole::Agent
                        && match &team {
                            Some(t) => in_team(a, t),
                            None => skill.is_none() || skilled(a),
                        }
                })
                .filter_map(|a| unavailable_because(a, now).map(|w| format!("{} {w}", a.name)))
                .collect();
            reason = if why.is_empty() {
                format!("{reason}: no agent in {team_text}")
            } else {
                format!(
                    "{reason}: no {team_text} agent available ({})",
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

    fn matrix() -> Matrix {
        escalator_guest::parse_config(
            r#"{"scenarios": [
                {"name": "Billing", "categories": ["billing"], "tier": "high", "team": "billing"},
                {"name": "Technical", "categories": ["bug", "technical"], "tier": "medium", "team": "technical"},
                {"name": "Outage", "categories": ["outage"], "tier": "critical", "team": "engineering"}]}"#,
        )
        .unwrap()
    }

    fn member(id: &str, team: &str, role: AgentRole, skills: &[&str]) -> Agent {
        Agent {
            team: team.into(),
            role,
            ..agent(id, skills)
        }
    }

    /// The example roster's shape: skills named after teams.
    fn teams() -> Vec<Agent> {
        vec![
            member("ana", "billing", AgentRole::Agent, &["billing"]),
            member("dee", "technical", AgentRole::Agent, &["technical"]),
            member("lee", "billing", AgentRole::Lead, &[]),
            member("tam", "technical", AgentRole::Lead, &[]),
            member("max", "support", AgentRole::Manager, &[]),
        ]
    }

    fn route_ticket(category: &str, tier: Tier, roster: &[Agent], config: Config) -> Routing {
        let ticket = Ticket {
            category: Some(category.into()),
            ..testing::ticket()
        };
        let config = Config {
            matrix: matrix(),
            ..config
        };
        Skills::route(
            &ticket,
            &testing::escalation(tier),
            roster,
            &Ctx::new(1_000, EventKind::MessageAdded, config),
        )
        .unwrap()
    }

    fn targets(r: &Routing) -> Vec<Target> {
        core::iter::once(r.target.clone())
            .chain(r.fallback.iter().map(|f| f.target.clone()))
            .collect()
    }

    #[test]
    fn the_matrix_team_owns_the_ticket_even_when_no_skill_is_named_like_the_category() {
        let r = route_ticket("bug", Tier::Medium, &teams(), Config::default());
        assert_eq!(
            targets(&r),
            [
                Target::Agent("dee".into()),
                Target::Agent("tam".into()),
                Target::Queue("general".into())
            ],
            "{}",
            r.reason
        );
        assert!(r.reason.contains("technical team agent"), "{}", r.reason);
    }

    #[test]
    fn another_teams_lead_never_gets_a_ticket_by_accident() {
        let mut roster = teams();
        roster[1].status = AgentStatus::Away;
        roster[3].status = AgentStatus::OutOfOffice;
        let r = route_ticket("bug", Tier::High, &roster, Config::default());
        assert_eq!(
            targets(&r),
            [Target::Queue("general".into())],
            "{}",
            r.reason
        );
        assert!(r.reason.contains("dee away"), "{}", r.reason);
    }

    #[test]
    fn a_backup_team_helps_before_the_lead() {
        let mut roster = teams();
        roster[1].status = AgentStatus::Meeting;
        roster.push(member("sue", "support", AgentRole::Agent, &[]));
        let config = Config {
            backup_teams: [("technical".to_string(), vec!["support".to_string()])].into(),
            ..Config::default()
        };
        let r = route_ticket("technical", Tier::High, &roster, config);
        assert_eq!(
            targets(&r),
            [
                Target::Agent("sue".into()),
                Target::Agent("tam".into()),
                Target::Queue("general".into())
            ]
        );
    }

    #[test]
    fn a_critical_ticket_nobody_of_its_team_can_take_goes_to_someone_available_now() {
        // Nobody is on the engineering team; the billing lead is out.
        let mut roster = teams();
        roster[2].status = AgentStatus::OutOfOffice;
        let r = route_ticket("outage", Tier::Critical, &roster, Config::default());
        assert_eq!(r.target, Target::Agent("ana".into()), "{}", r.reason);
        assert!(r.reason.contains("someone available now"), "{}", r.reason);
        // With every agent away, a lead who is in, of whichever team.
        for a in roster.iter_mut().filter(|a| a.role == AgentRole::Agent) {
            a.status = AgentStatus::Away;
        }
        let r = route_ticket("outage", Tier::Critical, &roster, Config::default());
        assert_eq!(r.target, Target::Agent("tam".into()), "{}", r.reason);
        // A high ticket waits in the queue instead.
        let r = route_ticket("outage", Tier::High, &roster, Config::default());
        assert_eq!(r.target, Target::Queue("general".into()));
    }

    #[test]
    fn without_an_owning_team_the_first_specialists_lead_is_on_the_path() {
        let roster = [agent("ana", &[]), lead("lee")];
        let r = Skills::route(
            &testing::ticket(),
            &testing::escalation(Tier::Critical),
            &roster,
            &Ctx::new(1_000, EventKind::MessageAdded, Config::default()),
        )
        .unwrap();
        assert_eq!(
            targets(&r),
            [
                Target::Agent("ana".into()),
                Target::Agent("lee".into()),
                Target::Queue("general".into())
            ]
        );
    }
}
