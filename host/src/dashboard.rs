//! The dashboard: one HTML page (`/`, no external resources: its charts
//! are drawn as inline SVG by the page's own script) and the JSON it reads
//! (`GET /v1/dashboard` with the tenant's token), plus the feedback report
//! of issues that keep escalating.

use crate::engine::Engine;
use crate::engine::Result;
use crate::model::TicketState;
use crate::model::{TicketStatus, Tier};
use std::collections::BTreeMap;

/// The page.
pub const PAGE: &str = include_str!("dashboard.html");

const TIERS: [Tier; 4] = [Tier::Critical, Tier::High, Tier::Medium, Tier::Low];

fn name(t: Tier) -> &'static str {
    match t {
        Tier::Critical => "critical",
        Tier::High => "high",
        Tier::Medium => "medium",
        Tier::Low => "low",
    }
}

/// The dashboard and the feedback report read at most this many of the
/// newest escalations: one bounded query, whatever the history.
pub const NEWEST: u32 = 10_000;

/// Escalations of one tier by how their response target went.
#[derive(Default)]
struct SlaCount {
    /// Claimed within the target (or the tier has none).
    within: usize,
    /// Claimed after the target.
    late: usize,
    /// Never claimed, and the target has passed.
    never: usize,
    /// Not claimed yet, still within the target.
    pending: usize,
}

/// Everything the dashboard shows for `tenant`.
pub fn data(engine: &Engine, tenant: &str) -> Result<serde_json::Value> {
    let escalated = engine.store.escalated(tenant, NEWEST)?;
    let created = engine.store.tickets_per_day(tenant)?;
    // Escalations by tier per day, and the rate against tickets created.
    let mut by_day: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for (day, _) in &created {
        by_day.entry(day.clone()).or_default();
    }
    let mut tte: BTreeMap<&str, (f64, usize)> = BTreeMap::new();
    let now = engine.clock.now();
    let mut sla: BTreeMap<&str, SlaCount> = BTreeMap::new();
    let mut queue = Vec::new();
    for s in &escalated {
        let Some(e) = &s.escalation else { continue };
        let tier = name(e.tier);
        let first = s.first_escalated().unwrap_or(e.escalated_at);
        let day = s.ticket.created_at.format("%Y-%m-%d").to_string();
        *by_day.entry(day).or_default().entry(tier).or_default() += 1;
        let t = tte.entry(tier).or_default();
        t.0 += (first - s.ticket.created_at).num_seconds().max(0) as f64 / 60.0;
        t.1 += 1;
        // Claimed within the target, claimed late, or never claimed and
        // past the target (the worst: they count as missed). A ticket
        // still unclaimed within its target is not judged yet.
        let c = sla.entry(tier).or_default();
        let target = e.response_target_ms.and_then(|t| i64::try_from(t).ok());
        match (s.ticket.claimed_at, target) {
            (Some(claimed), _) => {
                let waited = (claimed - e.escalated_at).num_milliseconds();
                if target.is_none_or(|t| waited <= t) {
                    c.within += 1;
                } else {
                    c.late += 1;
                }
            }
            (None, Some(t)) if (now - e.escalated_at).num_milliseconds() > t => {
                c.never += 1;
            }
            (None, _) => c.pending += 1,
        }
        let open = !matches!(s.ticket.status, TicketStatus::Solved | TicketStatus::Closed);
        if open {
            queue.push(serde_json::json!({
                "ticket": s.ticket.id, "subject": s.ticket.subject, "tier": tier,
                "assignee": s.ticket.assignee, "queue": s.queue,
                "claimed": s.ticket.claimed_at.is_some(),
                "escalated_at": e.escalated_at,
                "customer": s.ticket.customer.as_ref().map(|c| c.name.clone()),
                "reasons": e.reasons.iter().filter(|r| r.action == crate::model::SignalAction::Escalate)
                    .map(|r| r.reason.clone()).collect::<Vec<_>>(),
            }));
        }
    }
    // Most urgent first, then oldest.
    let rank = |v: &serde_json::Value| match v["tier"].as_str() {
        Some("critical") => 0,
        Some("high") => 1,
        Some("medium") => 2,
        _ => 3,
    };
    queue.sort_by(|a, b| {
        rank(a)
            .cmp(&rank(b))
            .then(a["escalated_at"].as_str().cmp(&b["escalated_at"].as_str()))
    });
    let created: BTreeMap<String, i64> = created.into_iter().collect();
    let days: Vec<_> = by_day
        .iter()
        .map(|(day, tiers)| {
            let n: usize = tiers.values().sum();
            let c = created.get(day).copied().unwrap_or(0);
            let mut v = serde_json::json!({
                "day": day, "created": c, "escalated": n,
                "rate": if c > 0 { n as f64 / c as f64 } else { 0.0 },
            });
            for t in TIERS {
                v[name(t)] = tiers.get(name(t)).copied().unwrap_or(0).into();
            }
            v
        })
        .collect();
    let agents: Vec<_> = engine
        .store
        .agents(tenant)?
        .into_iter()
        .map(|a| {
            serde_json::json!({"id": a.id, "name": a.name, "role": a.role, "team": a.team,
                "status": a.status, "open_tickets": a.open_tickets, "capacity": a.capacity})
        })
        .collect();
    let calls = engine
        .metrics
        .by_label("escalator_plugin_calls_total", tenant, "plugin");
    let errors = engine
        .metrics
        .by_label("escalator_plugin_errors_total", tenant, "plugin");
    let times = engine
        .metrics
        .by_label("escalator_plugin_call_seconds", tenant, "plugin");
    let plugins: Vec<_> = calls
        .iter()
        .map(|(p, (n, _))| {
            let (count, sum) = times.get(p).copied().unwrap_or((0.0, 0.0));
            serde_json::json!({
                "plugin": p, "calls": n, "errors": errors.get(p).map_or(0.0, |e| e.0),
                "avg_us": if count > 0.0 { sum / count * 1e6 } else { 0.0 },
            })
        })
        .collect();
    Ok(serde_json::json!({
        "tenant": tenant,
        "now": now,
        "totals": {
            "tickets": created.values().sum::<i64>(),
            "escalated": escalated.len(),
            "open_escalations": queue.len(),
        },
        "days": days,
        "time_to_escalation_minutes": TIERS.iter().filter_map(|t| {
            tte.get(name(*t)).map(|(sum, n)| (name(*t).to_string(), serde_json::json!(sum / *n as f64)))
        }).collect::<serde_json::Map<_, _>>(),
        "sla": TIERS.iter().filter_map(|t| {
            sla.get(name(*t)).map(|c| {
                let judged = c.within + c.late + c.never;
                (name(*t).to_string(), serde_json::json!({
                    "claimed": c.within + c.late, "within_target": c.within,
                    "claimed_late": c.late, "never_claimed": c.never,
                    "unclaimed_within_target": c.pending,
                    "compliance": (judged > 0).then(|| c.within as f64 / judged as f64),
                }))
            })
        }).collect::<serde_json::Map<_, _>>(),
        "escalation_rate_trend": trend(&days, now),
        "quality": quality(&engine.store.ticket_heads(tenant, NEWEST)?),
        "agents": agents,
        "plugins": plugins,
        "failed_events": failed_events(engine, tenant)?,
        "queue": queue,
    }))
}

/// The escalation rate of the last seven days (by the day tickets were
/// created, today included) against the seven before.
fn trend(days: &[serde_json::Value], now: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
    let day = |back: i64| {
        (now - chrono::Duration::days(back))
            .format("%Y-%m-%d")
            .to_string()
    };
    let rate = |from: String, to: String| {
        let (mut created, mut escalated) = (0.0, 0.0);
        for d in days {
            let k = d["day"].as_str().unwrap_or_default();
            if k >= from.as_str() && k <= to.as_str() {
                created += d["created"].as_f64().unwrap_or(0.0);
                escalated += d["escalated"].as_f64().unwrap_or(0.0);
            }
        }
        (created > 0.0).then(|| escalated / created)
    };
    let last = rate(day(6), day(0));
    let before = rate(day(13), day(7));
    serde_json::json!({
        "last_7_days": last,
        "previous_7_days": before,
        "change": last.zip(before).map(|(a, b)| a - b),
    })
}

/// CSAT of escalated tickets beside the rest, resolution time after
/// escalation per tier, over- and under-escalation, over `heads` (the
/// newest tickets, without conversations).
fn quality(heads: &[TicketState]) -> serde_json::Value {
    #[derive(Default)]
    struct Csat {
        sum: f64,
        n: usize,
    }
    let (mut csat_esc, mut csat_rest) = (Csat::default(), Csat::default());
    let mut resolution: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let (mut resolved_escalations, mut over, mut over_examples) = (0usize, 0usize, Vec::new());
    let mut under: BTreeMap<&str, usize> = BTreeMap::new();
    let mut under_examples = Vec::new();
    for s in heads {
        let first = s.first_escalated();
        if let Some(c) = s.csat {
            let bucket = if first.is_some() {
                &mut csat_esc
            } else {
                &mut csat_rest
            };
            bucket.sum += f64::from(c.score);
            bucket.n += 1;
        }
        if let (Some(first), Some(done), Some(e)) = (first, s.resolved_at(), &s.escalation) {
            resolved_escalations += 1;
            let minutes = (done - first).num_seconds().max(0) as f64 / 60.0;
            resolution.entry(name(e.tier)).or_default().push(minutes);
            if s.over_escalated() {
                over += 1;
                if over_examples.len() < 5 {
                    over_examples.push(s.ticket.id.clone());
                }
            }
        }
        if let Some(why) = s.under_escalated() {
            *under.entry(why).or_default() += 1;
            if under_examples.len() < 5 {
                under_examples.push(s.ticket.id.clone());
            }
        }
    }
    let csat = |c: &Csat| serde_json::json!({"ratings": c.n, "average": (c.n > 0).then(|| c.sum / c.n as f64)});
    serde_json::json!({
        "tickets": heads.len(),
        "csat": {"escalated": csat(&csat_esc), "not_escalated": csat(&csat_rest)},
        "resolution_after_escalation_minutes": TIERS.iter().filter_map(|t| {
            let mut v = resolution.get(name(*t))?.clone();
            v.sort_by(f64::total_cmp);
            Some((name(*t).to_string(), serde_json::json!({
                "resolved": v.len(),
                "average": v.iter().sum::<f64>() / v.len() as f64,
                "median": v[v.len() / 2],
            })))
        }).collect::<serde_json::Map<_, _>>(),
        "over_escalated": {
            "tickets": over, "of_resolved_escalations": resolved_escalations,
            "rate": (resolved_escalations > 0).then(|| over as f64 / resolved_escalations as f64),
            "examples": over_examples,
        },
        "under_escalated": {
            "tickets": under.values().sum::<usize>(), "by_reason": under,
            "examples": under_examples,
        },
    })
}

/// Events whose decision failed: how many, and the newest ten with why.
fn failed_events(engine: &Engine, tenant: &str) -> Result<serde_json::Value> {
    let (events, total) = engine.store.failed_events(tenant, 10)?;
    Ok(serde_json::json!({
        "total": total,
        "newest": events.iter().map(|e| serde_json::json!({
            "seq": e.seq, "ticket": e.ticket, "kind": e.kind,
            "received_at": e.received_at, "error": e.failed,
        })).collect::<Vec<_>>(),
    }))
}

/// Issues that keep escalating, as knowledge-base gaps for the AI agent:
/// (category, reason) pairs by how many tickets they escalated, with their
/// trend (the last 7 days against the 7 before), the AI's intents, a few
/// example tickets and how humans resolved some of them.
pub fn feedback(engine: &Engine, tenant: &str) -> Result<serde_json::Value> {
    let escalated = engine.store.escalated(tenant, NEWEST)?;
    let now = engine.clock.now();
    let week = chrono::Duration::days(7);
    #[derive(Default)]
    struct Gap {
        tickets: usize,
        reason: String,
        intents: BTreeMap<String, usize>,
        examples: Vec<String>,
        low_confidence: usize,
        last_7: usize,
        previous_7: usize,
        resolutions: Vec<serde_json::Value>,
    }
    let mut gaps: BTreeMap<(String, String), Gap> = BTreeMap::new();
    for s in &escalated {
        let Some(e) = &s.escalation else { continue };
        let category = s
            .ticket
            .category
            .clone()
            .or_else(|| {
                s.ticket
                    .ai_analysis
                    .as_ref()
                    .and_then(|a| a.category.clone())
            })
            .unwrap_or_else(|| "uncategorised".into());
        let mut seen = std::collections::BTreeSet::new();
        for r in e
            .reasons
            .iter()
            .filter(|r| r.action == crate::model::SignalAction::Escalate)
        {
            // The cause, without its cycle or threshold: `sla:first-reply`.
            let cause: String = r.key.split(':').take(2).collect::<Vec<_>>().join(":");
            if !seen.insert(cause.clone()) {
                continue;
            }
            let g = gaps.entry((category.clone(), cause)).or_default();
            g.tickets += 1;
            if g.reason.is_empty() {
                g.reason = r.reason.clone();
            }
            if let Some(a) = &s.ticket.ai_analysis {
                if let Some(i) = &a.intent {
                    *g.intents.entry(i.clone()).or_default() += 1;
                }
                if a.confidence < 0.7 {
                    g.low_confidence += 1;
                }
            }
            if g.examples.len() < 5 {
                g.examples.push(s.ticket.id.clone());
            }
            let first = s.first_escalated().unwrap_or(e.escalated_at);
            if first > now - week {
                g.last_7 += 1;
            } else if first > now - week * 2 {
                g.previous_7 += 1;
            }
            // How a human resolved it: what the AI could learn.
            if s.resolved_at().is_some()
                && g.resolutions.len() < 3
                && let Some(m) = s.ticket.messages.iter().find(|m| {
                    m.author == crate::model::AuthorKind::HumanAgent && m.sent_at >= first
                })
            {
                g.resolutions.push(serde_json::json!({
                    "ticket": s.ticket.id, "agent": m.author_id,
                    "reply": m.body.chars().take(300).collect::<String>(),
                }));
            }
        }
    }
    let mut list: Vec<_> = gaps
        .into_iter()
        .filter(|(_, g)| g.tickets >= 2)
        .map(|((category, cause), g)| {
            let trend = match g.last_7.cmp(&g.previous_7) {
                std::cmp::Ordering::Greater => "rising",
                std::cmp::Ordering::Less => "falling",
                std::cmp::Ordering::Equal => "steady",
            };
            serde_json::json!({
                "category": category, "cause": cause, "tickets": g.tickets,
                "last_7_days": g.last_7, "previous_7_days": g.previous_7, "trend": trend,
                "example_reason": g.reason, "ai_intents": g.intents,
                "ai_low_confidence": g.low_confidence, "examples": g.examples,
                "resolutions": g.resolutions,
            })
        })
        .collect();
    list.sort_by(|a, b| {
        b["tickets"]
            .as_u64()
            .cmp(&a["tickets"].as_u64())
            .then(a["category"].as_str().cmp(&b["category"].as_str()))
    });
    Ok(serde_json::json!({"tenant": tenant, "recurring": list}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Event, HistoryEntry, Ticket};
    use crate::pipeline::apply;
    use chrono::{DateTime, Duration, Utc};

    fn noon() -> DateTime<Utc> {
        "2026-11-27T12:00:00Z".parse().unwrap()
    }

    fn escalated_at(at: DateTime<Utc>) -> TicketState {
        let mut s = apply::created(Ticket::new("T", noon()), "acme", noon());
        s.history.push(HistoryEntry {
            at,
            what: "escalated".into(),
            detail: String::new(),
        });
        s
    }

    #[test]
    fn a_human_reply_before_the_escalation_does_not_save_it_from_being_over_escalated() {
        let hour = Duration::hours(1);
        let mut s = escalated_at(noon() + hour);
        apply::event(
            &mut s,
            &Event::Reply {
                agent: "bo".into(),
                body: "Hi".into(),
            },
            noon(),
        )
        .unwrap();
        apply::event(&mut s, &Event::Resolve {}, noon() + hour * 2).unwrap();
        // Unresolved tickets and tickets that never escalated are neither.
        let fresh = apply::created(Ticket::new("U", noon()), "acme", noon());
        assert!(!fresh.over_escalated());
        assert!(
            s.over_escalated(),
            "the only human reply came before it escalated"
        );
        assert_eq!(s.resolved_at(), Some(noon() + hour * 2));
        let mut answered = escalated_at(noon());
        apply::event(
            &mut answered,
            &Event::Reply {
                agent: "bo".into(),
                body: "Done".into(),
            },
            noon() + hour,
        )
        .unwrap();
        apply::event(&mut answered, &Event::Resolve {}, noon() + hour).unwrap();
        assert!(!answered.over_escalated());
    }

    #[test]
    fn a_breach_or_a_low_rating_without_an_escalation_is_under_escalation() {
        let mut s = apply::created(Ticket::new("T", noon()), "acme", noon());
        assert_eq!(s.under_escalated(), None);
        apply::event(
            &mut s,
            &Event::Csat {
                score: 2,
                comment: None,
            },
            noon(),
        )
        .unwrap();
        assert_eq!(s.csat.map(|c| c.score), Some(2), "stored as a value");
        assert_eq!(s.under_escalated(), Some("low-csat"));
        s.history.push(HistoryEntry {
            at: noon(),
            what: "breached".into(),
            detail: "first reply SLA breached".into(),
        });
        assert_eq!(s.under_escalated(), Some("sla-breach"));
    }
}
