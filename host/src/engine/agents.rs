//! Agents: the roster, availability, and routing again when an agent
//! leaves (their unclaimed tickets) or comes back (the queued ones).

use super::*;

impl Engine {
    /// Insert or replace an agent.
    pub fn put_agent(&self, tenant: &str, agent: model::Agent) -> Result<(), EngineError> {
        if agent.id.trim().is_empty() {
            return Err(EngineError::Invalid(
                codes::AGENT_INVALID,
                "agent id must not be empty".into(),
            ));
        }
        crate::pipeline::contract::agent(&agent, self.clock.now())
            .map_err(|e| EngineError::Invalid(codes::AGENT_INVALID, e))?;
        if let Some(p) = &agent.notifications {
            super::prefs::check(p).map_err(|e| EngineError::Invalid(codes::AGENT_INVALID, e))?;
        }
        let was = self.store.agent(tenant, &agent.id)?;
        // A roster sync that says nothing of preferences keeps the ones the
        // person set.
        let mut agent = agent;
        if agent.notifications.is_none() {
            agent.notifications = was.as_ref().and_then(|w| w.notifications.clone());
        }
        self.store.write(|tx| tx.put_agent(tenant, &agent))?;
        match was.map(|w| available(w.status)) {
            Some(true) if !available(agent.status) => {
                self.reroute_from(tenant, &agent.id)?;
            }
            Some(false) | None if available(agent.status) => {
                self.offer_queued(tenant, &agent.id)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Set (`Some`) or clear (`None`) what `id` wants to be told; the agent
    /// as stored after.
    pub fn set_notifications(
        &self,
        tenant: &str,
        id: &str,
        prefs: Option<model::NotifyPrefs>,
    ) -> Result<model::Agent, EngineError> {
        if let Some(p) = &prefs {
            super::prefs::check(p).map_err(|e| EngineError::Invalid(codes::AGENT_INVALID, e))?;
        }
        let agent = self.store.write(|tx| -> Result<_, EngineError> {
            let mut a = tx.agent(tenant, id)?.ok_or_else(|| {
                EngineError::NotFound(codes::AGENT_NOT_FOUND, format!("no agent {id}"))
            })?;
            a.notifications = prefs.clone();
            tx.put_agent(tenant, &a)?;
            Ok(a)
        })?;
        Ok(agent)
    }

    /// Change an agent's availability; their unclaimed escalated tickets
    /// are routed again when they become unavailable. Returns the tickets
    /// moved.
    pub fn set_agent_status(
        &self,
        tenant: &str,
        id: &str,
        status: AgentStatus,
    ) -> Result<Vec<String>, EngineError> {
        let mut agent = self.store.agent(tenant, id)?.ok_or_else(|| {
            EngineError::NotFound(codes::AGENT_NOT_FOUND, format!("no agent {id}"))
        })?;
        let was = agent.status;
        agent.status = status;
        self.store.write(|tx| tx.put_agent(tenant, &agent))?;
        if available(was) && !available(status) {
            return self.reroute_from(tenant, id);
        }
        if !available(was) && available(status) {
            return self.offer_queued(tenant, id);
        }
        Ok(Vec::new())
    }

    /// Route again the unclaimed escalated tickets of `agent`, who just
    /// became unavailable.
    pub(super) fn reroute_from(
        &self,
        tenant: &str,
        agent: &str,
    ) -> Result<Vec<String>, EngineError> {
        let tickets = self.store.unclaimed_of(tenant, agent)?;
        self.reroute(tenant, tickets, agent, false)
    }

    /// Offer the tickets waiting in a queue again now that `agent` is
    /// available: each goes to whoever the router picks now (most often
    /// the agent who just came back), the longest waiting first.
    pub(super) fn offer_queued(
        &self,
        tenant: &str,
        agent: &str,
    ) -> Result<Vec<String>, EngineError> {
        let tickets = self.store.queued(tenant, QUEUED_OFFERED)?;
        self.reroute(tenant, tickets, agent, true)
    }

    /// Route `tickets` again because `agent` left (`back` false: the
    /// tickets are theirs) or came back (`back` true: the tickets wait in a
    /// queue).
    pub(super) fn reroute(
        &self,
        tenant: &str,
        tickets: Vec<TicketState>,
        agent: &str,
        back: bool,
    ) -> Result<Vec<String>, EngineError> {
        let mut moved = Vec::new();
        for s in tickets {
            let _g = self.ticket_lock(tenant, &s.ticket.id)?;
            let Some(mut state) = self.store.ticket(tenant, &s.ticket.id)? else {
                continue;
            };
            let now = self.clock.now();
            let set = self.plugins(tenant);
            let roster = self.store.agents(tenant)?;
            let settings = self.settings(tenant);
            let ask = self.ask(&set, &roster, now, EventKind::AgentAvailability);
            let Some((routing, runs)) = pipeline::reroute(&ask, &state, agent, back) else {
                continue;
            };
            let event_json = serde_json::json!({"kind": EventKind::AgentAvailability, "agent": agent, "at": now});
            let kept = Kept {
                plan: None,
                routing: Some(&routing),
            };
            let audit = audit_trail(&runs, &event_json, kept)?;
            let data = serde_json::json!({"event": event_json, "routing": routing}).to_string();
            let mut feed = Vec::new();
            self.store.write(|tx| -> Result<_> {
                let decision = tx.insert_decision(
                    tenant,
                    &NewDecision {
                        ticket: &state.ticket.id,
                        at: now,
                        cause: &Cause::Agent.label(),
                        escalated: false,
                        data: &data,
                        audit: &audit,
                    },
                )?;
                tx.cancel_timers(tenant, &state.ticket.id, &[TimerKind::Fallback], "rerouted")?;
                let why = if back {
                    format!("waiting in the queue; {agent} is available again")
                } else {
                    format!("{agent} is no longer available")
                };
                let act = Act {
                    tx,
                    tenant,
                    settings: &settings,
                    roster: &roster,
                    now,
                };
                let key = format!("r{decision}");
                self.reassign(&act, &mut state, &routing.target, &why, &key, &mut feed)?;
                fallback_timers(tx, tenant, &state.ticket.id, decision, &routing, now)?;
                tx.put_ticket(tenant, &mut state)?;
                Ok(())
            })?;
            self.publish(tenant, feed);
            moved.push(state.ticket.id.clone());
        }
        self.timer_wake.notify_one();
        Ok(moved)
    }

    /// Give the ticket to `target` and alert them the way the first
    /// assignee was alerted.
    pub(super) fn reassign(
        &self,
        act: &Act<'_, '_>,
        state: &mut TicketState,
        target: &Target,
        why: &str,
        key: &str,
        feed: &mut Vec<FeedItem>,
    ) -> Result<usize> {
        let fx = apply::reassignment(state, target, why, act.now);
        self.carry_out(act.tx, act.tenant, &state.ticket.id, &fx, act.now)?;
        let Some(esc) = &state.escalation else {
            return Ok(0);
        };
        let title = format!(
            "Reassigned to you ({why}): {} ticket {} — {}",
            esc.tier.name(),
            state.ticket.id,
            state.ticket.subject
        );
        let body = evidence_text(&esc.reasons.iter().collect::<Vec<_>>());
        let channels = if esc.alert_channels.is_empty() {
            vec![Channel::InApp]
        } else {
            esc.alert_channels.clone()
        };
        let recipient = apply::recipient_of(target);
        let mut sent = 0;
        for channel in channels {
            sent += self
                .notify(
                    act,
                    &state.ticket.id,
                    &Notice {
                        recipient: &recipient,
                        channel,
                        title: &title,
                        body: &body,
                        digest_window_ms: 0,
                        key,
                        tier: Some(esc.tier),
                        assignee: state.ticket.assignee.as_deref(),
                        overrule: false,
                    },
                    feed,
                )?
                .made;
        }
        Ok(sent)
    }
}
