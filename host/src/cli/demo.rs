//! `escalator demo`: the default plugins on example tickets.

use super::*;

pub(super) const DEMO_TICKETS: &[&str] = &[
    include_str!("../../../examples/tickets/enterprise-billing-dispute.json"),
    include_str!("../../../examples/tickets/password-reset.json"),
    include_str!("../../../examples/tickets/asks-for-a-human.json"),
];
pub(super) const DEMO_ROSTER: &str = include_str!("../../../examples/roster.json");

pub(super) fn demo(
    runtime: &Runtime,
    matrix: &Matrix,
    paths: &[PathBuf],
    roster: Option<&Path>,
) -> Result<i32> {
    let plugins = registry::load_builtin(runtime)?
        .into_iter()
        .map(|p| p.with_matrix(matrix));
    let set = PluginSet::new(plugins).map_err(anyhow::Error::msg)?;
    let targets = matrix.response_targets();
    let tickets: Vec<model::Ticket> = if paths.is_empty() {
        DEMO_TICKETS
            .iter()
            .map(|t| serde_json::from_str(t))
            .collect::<Result<_, _>>()?
    } else {
        paths
            .iter()
            .map(|p| read_json(p, "ticket"))
            .collect::<Result<_>>()?
    };
    let roster: Vec<model::Agent> = match roster {
        Some(p) => read_json(p, "roster")?,
        None => serde_json::from_str(DEMO_ROSTER)?,
    };
    for ticket in &tickets {
        let now = ticket
            .messages
            .iter()
            .map(|m| m.sent_at)
            .max()
            .unwrap_or(ticket.created_at);
        let ask = pipeline::Ask {
            runtime,
            set: &set,
            roster: &roster,
            targets: &targets,
            now,
            event: model::EventKind::MessageAdded,
            deadlines: Deadlines::Retried,
        };
        let state = pipeline::apply::created(ticket.clone(), &ticket.tenant, ticket.created_at);
        let d = pipeline::decide(&ask, &state, &Default::default());
        out!("━━ {} · {}", ticket.id, ticket.subject);
        match d.tier {
            None => out!("   stays with the AI agent: no trigger fired"),
            Some(t) => out!(
                "   tier: {}",
                serde_json::to_value(t)?.as_str().unwrap_or("?")
            ),
        }
        for s in &d.signals {
            let action = match s.action {
                model::SignalAction::Escalate => "",
                model::SignalAction::Raise => " (raises)",
                model::SignalAction::Warn => " (warns)",
            };
            out!("   • [{}]{action} {}", s.key, s.reason);
            for e in &s.evidence {
                out!("       {e}");
            }
        }
        let routing = d.escalation.as_ref().map(|e| &e.routing);
        if let Some(r) = routing {
            out!(
                "   → {}: {}",
                pipeline::apply::target_name(&r.target),
                r.reason
            );
            for f in &r.fallback {
                out!(
                    "     after {} min → {} ({})",
                    f.after_ms / 60_000,
                    pipeline::apply::target_name(&f.target),
                    f.reason
                );
            }
        }
        if let Some(p) = d.escalation.as_ref().and_then(|e| e.plan.as_ref()) {
            for s in &p.steps {
                out!(
                    "   ✉ +{:>3} min {:<8} {:<8} {}",
                    s.delay_ms / 60_000,
                    recipient(&s.recipient),
                    format!("{:?}", s.channel),
                    s.title
                );
            }
            if let Some(m) = &p.customer_message {
                out!("   customer sees: {m}");
            }
        }
        for r in &d.runs {
            let status = r.error_kind.map_or("ok", |k| k.as_str());
            out!(
                "   [{} {status}: {} fuel, {} µs]",
                r.plugin,
                r.report.fuel_used,
                r.report.duration.as_micros()
            );
        }
        out!();
    }
    Ok(0)
}

pub(super) fn recipient(r: &model::Recipient) -> String {
    match r {
        model::Recipient::Agent(a) | model::Recipient::Team(a) | model::Recipient::Endpoint(a) => {
            a.clone()
        }
    }
}
