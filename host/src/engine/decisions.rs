//! Asking the pipeline and acting on its answer: the decision and its
//! audit trail, the keys acted on, the escalation's effects, the wake-up,
//! the answer to the sender, and the metrics of the calls.

use super::*;
use crate::manifest::Mode;
use crate::pipeline::Output;
use crate::runtime::{CallReport, ErrorKind};

/// A decision the pipeline made, with everything its storing needs,
/// before anything of it is written ([`Engine::consider`]).
pub(super) struct Considered {
    d: pipeline::Decision,
    /// The plugin set it was made with.
    set: Arc<TenantSet>,
    roster: Vec<model::Agent>,
    settings: Arc<ChannelSettings>,
    kind: EventKind,
    /// Seconds from the ticket's creation, when this is its first
    /// escalation.
    first_escalation: Option<f64>,
}

/// A decision's data as stored: serialized straight from the decision
/// (no JSON tree built first).
#[derive(Serialize)]
struct DecisionData<'a> {
    event: &'a serde_json::Value,
    plugin_set: u64,
    skipped_plugins: &'a [String],
    tier: Option<Tier>,
    signals: &'a [Signal],
    new_keys: Vec<&'a str>,
    shadow_signals: &'a [Signal],
    wake_at: Option<DateTime<Utc>>,
    escalated: bool,
    routing: Option<&'a model::Routing>,
    plan: Option<&'a Option<model::NotificationPlan>>,
}

impl Engine {
    /// Ask the pipeline for its decision on the ticket and act on it. For a
    /// timer, the decision's transaction takes it: `None` if it was taken
    /// already (nothing is stored then).
    pub(super) fn evaluate(
        &self,
        tenant: &str,
        mut state: TicketState,
        now: DateTime<Utc>,
        kind: EventKind,
        cause: Cause,
    ) -> Result<Option<Outcome>, EngineError> {
        let c = self.consider(tenant, &state, now, kind)?;
        let mut feed = Vec::new();
        let outcome = self
            .store
            .write(|tx| self.store_decision(tx, tenant, &mut state, &c, &cause, now, &mut feed))?;
        let Some(outcome) = outcome else {
            return Ok(None);
        };
        self.decided(tenant, &c, &outcome, feed);
        Ok(Some(outcome))
    }

    /// Ask the pipeline for its decision on the ticket as it stands,
    /// writing nothing.
    pub(super) fn consider(
        &self,
        tenant: &str,
        state: &TicketState,
        now: DateTime<Utc>,
        kind: EventKind,
    ) -> Result<Considered, EngineError> {
        let set = self.plugins(tenant);
        let roster = self.store.agents(tenant)?;
        let settings = self.settings(tenant);
        // Read, not written: the ticket's lock keeps the keys as they are
        // until the decision is stored, so the writer is not taken for it.
        let fired: BTreeSet<String> = self.store.fired(tenant, &state.ticket.id)?;
        let ask = self.ask(&set, &roster, now, kind);
        let decide = || pipeline::decide(&ask, state, &fired);
        let d = if crate::lane::current() == crate::lane::Lane::Normal
            && conversation_bytes(&state.ticket) > crate::lane::BIG_DECISION_BYTES
        {
            self.runtime
                .shares()
                .within(tenant, crate::lane::Lane::Yield, decide)
        } else {
            decide()
        };
        let first_escalation = (d.escalation.is_some() && state.escalation.is_none())
            .then(|| (now - state.ticket.created_at).num_milliseconds().max(0) as f64 / 1000.0);
        Ok(Considered {
            d,
            set,
            roster,
            settings,
            kind,
            first_escalation,
        })
    }

    /// Store a considered decision in `tx` and act on it: its audit trail,
    /// keys, escalation, notices, wake-up, the ticket written back if it
    /// changed, and the event it answers marked processed. `None`: its
    /// cause (a timer) was taken already.
    #[allow(
        clippy::too_many_arguments,
        reason = "the parts of one decision's storing"
    )]
    pub(super) fn store_decision(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        state: &mut TicketState,
        c: &Considered,
        cause: &Cause,
        now: DateTime<Utc>,
        feed: &mut Vec<FeedItem>,
    ) -> Result<Option<Outcome>, EngineError> {
        if let Cause::Timer(id) = *cause
            && !tx.take_timer(id, now)?
        {
            return Ok(None);
        }
        let (d, roster, settings, kind) = (&c.d, &c.roster, &c.settings, c.kind);
        let escalated = d.escalation.is_some();
        let event = serde_json::json!({"kind": kind, "cause": cause.label(), "at": now});
        let data = serde_json::to_string(&DecisionData {
            event: &event,
            plugin_set: c.set.generation,
            skipped_plugins: &c.set.disabled,
            tier: d.tier,
            signals: &d.signals,
            new_keys: d.fresh.iter().map(|s| s.key.as_str()).collect(),
            shadow_signals: &d.shadow_signals,
            wake_at: d.wake_at,
            escalated,
            routing: d.escalation.as_ref().map(|e| &e.routing),
            plan: d.escalation.as_ref().map(|e| &e.plan),
        })?;
        let kept = Kept {
            plan: d.escalation.as_ref().and_then(|e| e.plan.as_ref()),
            routing: d.escalation.as_ref().map(|e| &e.routing),
        };
        let audit = audit_trail(&d.runs, &event, kept)?;
        let mut notified = 0;
        let decision = tx.insert_decision(
            tenant,
            &NewDecision {
                ticket: &state.ticket.id,
                at: now,
                cause: &cause.label(),
                escalated,
                data: &data,
                audit: &audit,
            },
        )?;
        for s in &d.fresh {
            tx.fire(tenant, &state.ticket.id, &s.key, decision)?;
        }
        let fx = apply::decision(state, d, decision, now);
        self.carry_out(tx, tenant, &state.ticket.id, &fx, now)?;
        let act = Act {
            tx,
            tenant,
            settings,
            roster,
            now,
        };
        // A claim made in Escalator goes to the desk the ticket came
        // from (one the desk itself sent is not echoed back).
        if kind == EventKind::Claimed
            && let Some(agent) = state.ticket.assignee.as_deref()
            && let Some((c, wb)) = write_back_to(&act, &state.ticket.id)
            && crate::connectors::arriving_from().is_none()
        {
            let requests = crate::connectors::writeback::claim(c, wb, &state.ticket.id, agent);
            let tier = state.escalation.as_ref().map_or(Tier::Low, |e| e.tier);
            notified += write_back(
                &act,
                &state.ticket.id,
                wb,
                &requests,
                &format!("claim{decision}"),
                tier,
            )?;
        }
        if let Some(e) = &d.escalation {
            notified += self.escalate(&act, state, e, decision, feed)?;
        } else if let (Some(esc), false) = (&state.escalation, d.update.is_empty()) {
            // New causes on an escalated ticket: tell whoever has it.
            let news: Vec<&Signal> = d.update.iter().collect();
            let title = format!(
                "Update on {} ticket {}: {}",
                esc.tier.name(),
                state.ticket.id,
                news.iter()
                    .map(|s| s.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            );
            if let Some(a) = state.ticket.assignee.clone() {
                notified += self
                    .notify(
                        &act,
                        &state.ticket.id,
                        &Notice {
                            recipient: &Recipient::Agent(a.clone()),
                            channel: Channel::InApp,
                            title: &title,
                            body: &evidence_text(&news),
                            digest_window_ms: 0,
                            key: &format!("update:{decision}"),
                            tier: Some(esc.tier),
                            assignee: Some(&a),
                            overrule: false,
                        },
                        feed,
                    )?
                    .made;
            }
        }
        // One pending wake-up per ticket: the earliest a trigger asked
        // for (after an escalation, for the new tier). Most decisions ask
        // for the one the ticket has (its SLA's next threshold): it stays
        // as it is, and no row or index page is written for it.
        let pending = tx.pending_timers(tenant, &state.ticket.id, TimerKind::Wake)?;
        let kept = match (pending.as_slice(), d.wake) {
            ([only], Some(at)) => only.due_at == at.timestamp_millis(),
            ([], None) => true,
            _ => false,
        };
        if !kept {
            tx.cancel_timers(tenant, &state.ticket.id, &[TimerKind::Wake], "superseded")?;
            if let Some(at) = d.wake {
                tx.insert_timer(
                    tenant,
                    &state.ticket.id,
                    TimerKind::Wake,
                    at,
                    &serde_json::json!({}),
                )?;
            }
        }
        // Most decisions change nothing of the ticket itself (the keys
        // acted on and the decision are stored apart): it is written
        // back only when they do.
        if fx.ticket_changed {
            tx.put_ticket(tenant, state)?;
        }
        let outcome = Outcome {
            ticket: state.ticket.id.clone(),
            event: match cause {
                Cause::Event(seq) => *seq,
                _ => 0,
            },
            decision,
            tier: state.escalation.as_ref().map(|e| e.tier),
            escalated,
            new_signals: d.fresh.clone(),
            assignee: state.ticket.assignee.clone(),
            queue: state.queue.clone(),
            customer_message: d
                .escalation
                .as_ref()
                .and_then(|e| e.plan.as_ref())
                .and_then(|p| p.customer_message.clone()),
            notified,
            duplicate: None,
        };
        if let Cause::Event(seq) = cause {
            tx.event_processed(*seq, &serde_json::to_string(&outcome)?)?;
        }
        Ok(Some(outcome))
    }

    /// What follows a stored decision: its feed items published, the
    /// scheduler told, its metrics.
    pub(super) fn decided(
        &self,
        tenant: &str,
        c: &Considered,
        outcome: &Outcome,
        feed: Vec<FeedItem>,
    ) {
        self.publish(tenant, feed);
        self.timer_wake.notify_one();
        self.record(tenant, &c.d.runs, &c.d.fresh, outcome, c.first_escalation);
        self.observe(tenant, &c.d.runs);
    }

    /// Count an evaluation: plugin calls, escalations, SLA breaches.
    pub(super) fn record(
        &self,
        tenant: &str,
        runs: &[PluginRun],
        fresh: &[Signal],
        outcome: &Outcome,
        first_escalation: Option<f64>,
    ) {
        use crate::metrics::{CALL_BUCKETS, FUEL_BUCKETS, TIME_BUCKETS};
        let m = &self.metrics;
        for r in runs {
            let plugin = m.bounded("plugin", tenant, &r.plugin);
            let l = || vec![("tenant", tenant.to_string()), ("plugin", plugin.clone())];
            m.add("escalator_plugin_calls_total", l(), 1.0);
            if let Some(kind) = r.error_kind {
                let mut l = l();
                l.push(("kind", kind.to_string()));
                m.add("escalator_plugin_errors_total", l, 1.0);
            }
            m.observe(
                "escalator_plugin_call_seconds",
                CALL_BUCKETS,
                l(),
                r.report.duration.as_secs_f64(),
            );
            m.observe(
                "escalator_plugin_fuel",
                FUEL_BUCKETS,
                l(),
                r.report.fuel_used as f64,
            );
        }
        let tier = outcome.tier.map(|t| name(&t)).unwrap_or_default();
        if outcome.escalated {
            let cause = fresh
                .iter()
                .filter(|s| s.action == SignalAction::Escalate)
                .max_by_key(|s| s.tier)
                .or(fresh.first())
                .map(|s| m.bounded("cause", tenant, s.key.split(':').next().unwrap_or("")))
                .unwrap_or_else(|| "earlier".into());
            m.add(
                "escalator_escalations_total",
                vec![
                    ("tenant", tenant.into()),
                    ("tier", tier.clone()),
                    ("cause", cause),
                ],
                1.0,
            );
        }
        if let Some(secs) = first_escalation {
            m.observe(
                "escalator_time_to_escalation_seconds",
                TIME_BUCKETS,
                vec![("tenant", tenant.into()), ("tier", tier.clone())],
                secs,
            );
        }
        for s in fresh.iter().filter(|s| s.is_sla_breach()) {
            // A breach that escalated nothing.
            if outcome.tier.is_none() {
                m.add(
                    "escalator_under_escalations_total",
                    vec![("tenant", tenant.into()), ("why", "sla-breach".into())],
                    1.0,
                );
            }
            let clock = m.bounded("clock", tenant, s.key.split(':').nth(1).unwrap_or(""));
            m.add(
                "escalator_sla_breaches_total",
                vec![
                    ("tenant", tenant.into()),
                    ("tier", name(&s.tier)),
                    ("clock", clock),
                ],
                1.0,
            );
        }
    }

    /// After a claim, ask the pipeline for the acknowledgement plan
    /// (reminders if the claimed ticket stays unanswered) and schedule it.
    /// The caller holds the ticket's lock.
    pub(super) fn plan_after_claim(
        &self,
        tenant: &str,
        ticket: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let Some(state) = self.store.ticket(tenant, ticket)? else {
            return Ok(());
        };
        let set = self.plugins(tenant);
        let roster = self.store.agents(tenant)?;
        let ask = self.ask(&set, &roster, now, EventKind::Claimed);
        let Some((plan, runs)) = pipeline::after_claim(&ask, &state) else {
            return Ok(());
        };
        let event_json = serde_json::json!({"kind": EventKind::Claimed, "at": now});
        let kept = Kept {
            plan: plan.as_ref(),
            routing: None,
        };
        let audit = audit_trail(&runs, &event_json, kept)?;
        let data = serde_json::json!({"event": event_json, "plan": plan}).to_string();
        self.store.write(|tx| -> Result<_> {
            let decision = tx.insert_decision(
                tenant,
                &NewDecision {
                    ticket,
                    at: now,
                    cause: "claim-plan",
                    escalated: false,
                    data: &data,
                    audit: &audit,
                },
            )?;
            Chain::new(
                decision,
                now,
                plan.iter().flat_map(|p| p.steps.iter()).enumerate(),
            )
            .schedule(tx, tenant, ticket)?;
            Ok(())
        })?;
        self.timer_wake.notify_one();
        Ok(())
    }

    /// What the pipeline is asked with, live.
    pub(super) fn ask<'a>(
        &'a self,
        set: &'a PluginSet,
        roster: &'a [model::Agent],
        now: DateTime<Utc>,
        event: EventKind,
    ) -> pipeline::Ask<'a> {
        pipeline::Ask {
            runtime: &self.runtime,
            set,
            roster,
            targets: &self.targets,
            now,
            event,
            deadlines: pipeline::Deadlines::Live,
        }
    }
}

/// What a decision's data keeps whole of its calls' outputs.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Kept<'a> {
    /// The notifier's plan (`plan`).
    pub plan: Option<&'a model::NotificationPlan>,
    /// The router's routing (`routing`).
    pub routing: Option<&'a model::Routing>,
}

/// A decision's audit trail as stored: each call's run and the event it
/// answered, serialized straight from the run. An output the decision's
/// data keeps whole ([`Kept`]) is not stored again in its entry: the entry
/// says where it is ([`crate::store::OUTPUT_IN_DECISION`]), and reads put
/// it back. The plan is the largest part of an escalation (a default
/// critical chain is 21 steps, each with the ticket's summary).
pub(super) fn audit_trail(
    runs: &[PluginRun],
    event: &serde_json::Value,
    kept: Kept<'_>,
) -> serde_json::Result<Vec<AuditEntry>> {
    #[derive(Serialize)]
    struct Entry<'a> {
        plugin: &'a str,
        mode: Mode,
        output: Option<&'a Output>,
        #[serde(skip_serializing_if = "Option::is_none")]
        output_in_decision: Option<&'static str>,
        error_kind: Option<ErrorKind>,
        error: Option<&'a str>,
        #[serde(flatten)]
        report: &'a CallReport,
        #[serde(skip_serializing_if = "crate::pipeline::is_zero")]
        retries: u32,
        input_event: &'a serde_json::Value,
    }
    runs.iter()
        .map(|run| {
            // Every field of the run, as it serializes itself.
            let PluginRun {
                plugin,
                mode,
                output,
                error_kind,
                error,
                report,
                retries,
                vendor: _,
            } = run;
            let in_decision = match (output, *mode) {
                (Some(Output::Plan(p)), Mode::Active) if Some(p) == kept.plan => Some("plan"),
                (Some(Output::Routing(r)), Mode::Active) if Some(r) == kept.routing => {
                    Some("routing")
                }
                _ => None,
            };
            Ok(AuditEntry {
                plugin: plugin.clone(),
                data: serde_json::to_string(&Entry {
                    plugin,
                    mode: *mode,
                    output: output.as_ref().filter(|_| in_decision.is_none()),
                    output_in_decision: in_decision,
                    error_kind: *error_kind,
                    error: error.as_deref(),
                    report,
                    retries: *retries,
                    input_event: event,
                })?,
            })
        })
        .collect()
}

/// The text a decision reads: the subject and the messages' bodies.
fn conversation_bytes(t: &Ticket) -> usize {
    t.messages
        .iter()
        .fold(t.subject.len(), |n, m| n.saturating_add(m.body.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::PluginRun;

    fn plan(body: &str) -> model::NotificationPlan {
        serde_json::from_value(serde_json::json!({"steps": [
            {"delay_ms": 0, "recipient": {"agent": "ana"}, "channel": "slack", "title": "t",
             "body": body, "stop_when_claimed": false},
            {"delay_ms": 600000, "recipient": {"agent": "ana"}, "channel": "slack",
             "title": "Reminder: t", "body": body, "stop_when_claimed": true}],
            "customer_message": null}))
        .unwrap()
    }

    fn run(output: Option<Output>, mode: Mode) -> PluginRun {
        PluginRun {
            plugin: "tiered@0.1.0".into(),
            mode,
            output,
            error_kind: None,
            error: None,
            report: CallReport {
                fuel_used: 7,
                ..CallReport::default()
            },
            retries: 0,
            vendor: true,
        }
    }

    /// What the entry was before the plan was stored once: the run
    /// serialized whole, with its event.
    fn whole(run: &PluginRun, event: &serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::to_value(run).unwrap();
        v["input_event"] = event.clone();
        v
    }

    #[test]
    fn the_plan_and_the_routing_are_stored_once_and_read_back_whole() {
        let event = serde_json::json!({"kind": "message-added", "at": "2026-12-05T00:00:00Z"});
        let plan_kept = plan(&"a long summary of the ticket ".repeat(20));
        let routing: model::Routing = serde_json::from_value(serde_json::json!({
            "target": {"agent": "ana"}, "reason": "least recently assigned billing specialist",
            "fallback": [{"after_ms": 3600000, "target": {"queue": "billing"}, "reason": "team"}]}))
        .unwrap();
        let other_routing = model::Routing {
            reason: "another".into(),
            ..routing.clone()
        };
        let runs = [
            run(Some(Output::Plan(plan_kept.clone())), Mode::Active),
            run(Some(Output::Routing(routing.clone())), Mode::Active),
            // Not the decision's, or a shadow's: stored as they are.
            run(Some(Output::Plan(plan("another"))), Mode::Active),
            run(Some(Output::Routing(other_routing)), Mode::Active),
            run(Some(Output::Plan(plan_kept.clone())), Mode::Shadow),
            run(None, Mode::Active),
        ];
        let kept = Kept {
            plan: Some(&plan_kept),
            routing: Some(&routing),
        };
        let stored = audit_trail(&runs, &event, kept).unwrap();
        assert!(
            !stored[0].data.contains("a long summary"),
            "{}",
            stored[0].data
        );
        assert!(stored[0].data.len() < 400, "{}", stored[0].data.len());
        assert!(!stored[1].data.contains("specialist"), "{}", stored[1].data);
        for s in &stored[2..] {
            assert!(!s.data.contains(crate::store::OUTPUT_IN_DECISION));
        }
        // Read back with the decision's data: each entry as the run
        // serializes itself, field for field.
        let decision = serde_json::json!({"plan": plan_kept, "routing": routing, "tier": "high"});
        let mut read: Vec<serde_json::Value> = stored
            .iter()
            .map(|s| serde_json::from_str(&s.data).unwrap())
            .collect();
        crate::store::restore_outputs(&decision, &mut read);
        let want: Vec<serde_json::Value> = runs.iter().map(|r| whole(r, &event)).collect();
        assert_eq!(read, want);
        // Nothing kept in the decision: every output is stored.
        let alone = audit_trail(&runs, &event, Kept::default()).unwrap();
        let alone: Vec<serde_json::Value> = alone
            .iter()
            .map(|s| serde_json::from_str(&s.data).unwrap())
            .collect();
        assert_eq!(alone, want);
    }
}
