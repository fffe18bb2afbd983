//! Acting on an escalation and telling people: fallback timers, the
//! handoff packet to subscribed endpoints (in chunks), the plan's steps,
//! and each notification's deliveries (digests, channels, addresses).

use super::*;

impl Engine {
    pub(super) fn publish(&self, tenant: &str, feed: Vec<FeedItem>) {
        let queued = !feed.is_empty();
        for item in feed {
            let _ = self.feed.send(FeedEvent {
                tenant: tenant.to_string(),
                item,
            });
        }
        if queued {
            tracing::debug!(tenant, "in-app items published");
        }
        self.delivery_wake.notify_one();
    }

    /// Act on an escalation already applied to `state`: its fallbacks, the
    /// handoff packet to subscribed endpoints, the plan's steps (now or as
    /// timers). Returns the notifications sent now.
    pub(super) fn escalate(
        &self,
        act: &Act<'_, '_>,
        state: &TicketState,
        x: &pipeline::Escalated,
        decision: i64,
        feed: &mut Vec<FeedItem>,
    ) -> Result<usize> {
        let Act {
            tx, tenant, now, ..
        } = *act;
        let (e, routing, plan) = (&x.escalation, &x.routing, x.plan.as_ref());
        let id = &state.ticket.id;
        fallback_timers(tx, tenant, id, decision, routing, now)?;
        // Endpoints subscribed to escalations get the handoff packet.
        let mut sent = 0;
        if act.settings.webhooks.values().any(|w| w.wants("escalated")) {
            let hooks = WebhookFanout {
                event: escalated(),
                decision,
                priority: Tier::send_priority(Some(e.tier)),
                title: apply::first_steps(plan, routing).first().map_or_else(
                    || format!("{} escalation: ticket {id}", name_of_tier(e.tier)),
                    |s| s.title.clone(),
                ),
                body: handoff(state).to_string(),
                after: None,
            };
            sent += self.fan_out(act, id, &hooks)?;
        }
        // The desk the ticket came from hears of it: note, priority,
        // assignee, and the line for the customer.
        if let Some((c, wb)) = write_back_to(act, id) {
            let summary = handoff(state)["summary"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let reasons: Vec<&Signal> = e.signals.iter().collect();
            let note = format!(
                "{} escalation by Escalator. {summary}\n\nWhy it escalated:\n{}\n\nAssigned: {}",
                name_of_tier(e.tier),
                evidence_text(&reasons),
                state
                    .ticket
                    .assignee
                    .as_deref()
                    .or(state.queue.as_deref())
                    .unwrap_or("nobody yet")
            );
            let requests = crate::connectors::writeback::escalation(
                c,
                wb,
                id,
                &crate::connectors::writeback::Escalation {
                    tier: e.tier,
                    note: &note,
                    reply: plan.and_then(|p| p.customer_message.as_deref()),
                    assignee: state.ticket.assignee.as_deref(),
                },
            );
            sent += write_back(act, id, wb, &requests, &format!("d{decision}"), e.tier)?;
        }
        let assignee = state.ticket.assignee.as_deref();
        let mut told = Told::default();
        let steps = plan.map(|p| p.steps.as_slice()).unwrap_or_default();
        // Steps due now are sent now; the others wait, as one chain.
        for (i, step) in steps.iter().enumerate().filter(|(_, s)| s.delay_ms == 0) {
            let t = self.notify(
                act,
                id,
                &Notice {
                    recipient: &step.recipient,
                    channel: step.channel,
                    title: &step.title,
                    body: &step.body,
                    digest_window_ms: step.digest_window_ms,
                    key: &format!("d{decision}:s{i}"),
                    tier: Some(e.tier),
                    assignee,
                    overrule: false,
                },
                feed,
            )?;
            told.made += t.made;
            told.on_duty += t.on_duty;
            told.dropped += t.dropped;
            told.reached.extend(t.reached);
        }
        let waiting = steps.iter().enumerate().filter(|(_, s)| s.delay_ms > 0);
        Chain::new(decision, now, waiting).schedule(tx, tenant, id)?;
        let first = apply::first_steps(plan, routing);
        let title = first.first().map_or_else(
            || format!("{} escalation: ticket {id}", name_of_tier(e.tier)),
            |s| s.title.clone(),
        );
        let body = first.first().map_or_else(
            || evidence_text(&e.signals.iter().collect::<Vec<_>>()),
            |s| s.body.clone(),
        );
        // One person, beyond the plan, with its title and body.
        let tell = |who: &model::Agent,
                    channel: Channel,
                    key: &str,
                    overrule: bool,
                    feed: &mut Vec<FeedItem>| {
            self.notify(
                act,
                id,
                &Notice {
                    recipient: &Recipient::Agent(who.id.clone()),
                    channel,
                    title: &title,
                    body: &body,
                    digest_window_ms: 0,
                    key: &format!("d{decision}:{key}"),
                    tier: Some(e.tier),
                    assignee,
                    overrule,
                },
                feed,
            )
        };
        // People watching every escalation at this tier hear of it too.
        for (a, channel) in prefs::watchers(act.roster, e.tier) {
            if !told.reached.contains(&a.id) {
                let t = tell(a, channel, "watch", false, feed)?;
                told.made += t.made;
                told.on_duty += t.on_duty;
            }
        }
        // A critical escalation that people's preferences kept from
        // everyone on duty still reaches someone who is, on the channels
        // the plan reaches its first recipient on.
        if e.tier == Tier::Critical && told.dropped > 0 && told.on_duty == 0 {
            let mut channels: Vec<Channel> = Vec::new();
            for s in &first {
                if !channels.contains(&s.channel) {
                    channels.push(s.channel);
                }
            }
            if channels.is_empty() {
                channels.push(Channel::InApp);
            }
            for a in prefs::on_duty(act.roster, assignee) {
                for &channel in &channels {
                    told.made += tell(a, channel, "duty", true, feed)?.made;
                }
            }
        }
        Ok(sent + told.made)
    }

    /// An escalated ticket was resolved (by the event `seq`): what the
    /// humans did goes to the endpoints subscribed to `resolved` and, as
    /// an internal note, to the desk the ticket came from, so the AI
    /// agent's knowledge base can learn it. Returns the deliveries queued.
    pub(super) fn resolved(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
        state: &TicketState,
        seq: i64,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let Some(e) = &state.escalation else {
            return Ok(0);
        };
        let settings = self.settings(tenant);
        let roster = tx.agents(tenant)?;
        let act = Act {
            tx,
            tenant,
            settings: &settings,
            roster: &roster,
            now,
        };
        let id = &state.ticket.id;
        let r = resolution(state, now);
        let mut sent = 0;
        if settings.webhooks.values().any(|w| w.wants("resolved")) {
            let hooks = WebhookFanout {
                event: "resolved".into(),
                decision: seq,
                priority: Tier::send_priority(Some(e.tier)),
                title: format!(
                    "Resolved: {} ticket {id} — {}",
                    name(&e.tier),
                    state.ticket.subject
                ),
                body: serde_json::json!({ "resolution": r }).to_string(),
                after: None,
            };
            sent += self.fan_out(&act, id, &hooks)?;
        }
        if let Some((_, wb)) = write_back_to(&act, id) {
            let requests = crate::connectors::writeback::note(wb, id, &resolution_note(&r));
            sent += write_back(&act, id, wb, &requests, &format!("r{seq}"), e.tier)?;
        }
        Ok(sent)
    }

    /// Queue (or, in-app, write) one notification to `recipient` on
    /// `channel`, as each person's preferences ([`prefs::reach`]) allow.
    pub(super) fn notify(
        &self,
        act: &Act<'_, '_>,
        ticket: &str,
        notice: &Notice<'_>,
        feed: &mut Vec<FeedItem>,
    ) -> Result<Told> {
        let Act { roster, now, .. } = *act;
        let Notice {
            recipient,
            channel,
            tier,
            assignee,
            overrule,
            ..
        } = *notice;
        let agents: Vec<&model::Agent> = match recipient {
            Recipient::Agent(id) => roster.iter().filter(|a| &a.id == id).collect(),
            // A team (a queue): in-app to every member, to read when back;
            // e-mail only to those available now. A queue no team of the
            // roster is named after still has members: the team leads.
            Recipient::Team(t) => {
                let named = roster.iter().any(|a| &a.team == t);
                roster
                    .iter()
                    .filter(|a| {
                        if named {
                            &a.team == t
                        } else {
                            a.role == model::AgentRole::Lead
                        }
                    })
                    .filter(|a| channel == Channel::InApp || available(a.status))
                    .collect()
            }
            Recipient::Endpoint(_) => Vec::new(),
        };
        // The people it reaches, grouped by the channel each gets it on.
        let mut told = Told::default();
        let mut groups: Vec<(Channel, Vec<&model::Agent>)> = Vec::new();
        if agents.is_empty() || overrule {
            groups.push((channel, agents));
        } else {
            for a in agents {
                let ch = match prefs::reach(a, channel, tier, assignee, now) {
                    prefs::Reach::Dropped => {
                        told.dropped += 1;
                        continue;
                    }
                    prefs::Reach::On(ch) => ch,
                    // Quiet hours: sent when they end (skipped if the
                    // ticket is claimed or answered by then; the plan's
                    // in-app steps are not held).
                    prefs::Reach::Held(ch, until) => {
                        let step = model::NotificationStep {
                            delay_ms: (until - now).num_milliseconds().max(0) as u64,
                            recipient: Recipient::Agent(a.id.clone()),
                            channel: ch,
                            title: notice.title.to_string(),
                            body: notice.body.to_string(),
                            stop_when_claimed: true,
                            stop_when_answered: true,
                            digest_window_ms: notice.digest_window_ms,
                        };
                        act.tx.insert_timer(
                            act.tenant,
                            ticket,
                            TimerKind::Step,
                            until,
                            &serde_json::json!({"plan_at": now, "held_for": a.id, "step": step}),
                        )?;
                        continue;
                    }
                };
                match groups.iter_mut().find(|(c, _)| *c == ch) {
                    Some((_, g)) => g.push(a),
                    None => groups.push((ch, vec![a])),
                }
            }
        }
        for (ch, people) in groups {
            let made = self.notify_on(act, ticket, notice, ch, &people, feed)?;
            told.made += made;
            if made > 0 {
                told.reached.extend(people.iter().map(|a| a.id.clone()));
                told.on_duty += people.iter().filter(|a| available(a.status)).count();
            }
        }
        Ok(told)
    }

    /// One notification on `channel` to `agents` (the recipient's people
    /// who get it there); returns how many deliveries it made.
    fn notify_on(
        &self,
        act: &Act<'_, '_>,
        ticket: &str,
        notice: &Notice<'_>,
        channel: Channel,
        agents: &[&model::Agent],
        feed: &mut Vec<FeedItem>,
    ) -> Result<usize> {
        let Act {
            tx,
            tenant,
            settings,
            now,
            ..
        } = *act;
        let Notice {
            recipient,
            title,
            body,
            digest_window_ms,
            key,
            tier,
            ..
        } = *notice;
        let priority = Tier::send_priority(tier);
        let who = match recipient {
            Recipient::Agent(x) | Recipient::Team(x) | Recipient::Endpoint(x) => x.clone(),
        };
        // (channel, address, status, note)
        let mut targets: Vec<(Channel, String, DeliveryStatus, Option<String>)> = Vec::new();
        match (recipient, channel) {
            (Recipient::Endpoint(name), _) => match settings.webhooks.get(name) {
                Some(w) => targets.push((
                    Channel::Webhook,
                    w.url.clone(),
                    DeliveryStatus::Pending,
                    None,
                )),
                None => targets.push((
                    Channel::Webhook,
                    name.clone(),
                    DeliveryStatus::Skipped,
                    Some(format!("no webhook endpoint {name:?} configured")),
                )),
            },
            (_, Channel::InApp) => {
                for a in agents {
                    targets.push((Channel::InApp, a.id.clone(), DeliveryStatus::Sent, None));
                }
            }
            (_, Channel::Email) => {
                for a in agents {
                    match &a.email {
                        Some(_) if settings.smtp.is_none() => targets.push((
                            Channel::Email,
                            a.id.clone(),
                            DeliveryStatus::Skipped,
                            Some("no SMTP server configured".into()),
                        )),
                        Some(addr) => targets.push((
                            Channel::Email,
                            addr.clone(),
                            DeliveryStatus::Pending,
                            None,
                        )),
                        None => targets.push((
                            Channel::Email,
                            a.id.clone(),
                            DeliveryStatus::Skipped,
                            Some(format!("agent {} has no e-mail address", a.id)),
                        )),
                    }
                }
            }
            (_, Channel::Slack) => match &settings.slack_webhook_url {
                Some(url) => {
                    targets.push((Channel::Slack, url.clone(), DeliveryStatus::Pending, None))
                }
                None => targets.push((
                    Channel::Slack,
                    "-".into(),
                    DeliveryStatus::Skipped,
                    Some("no Slack webhook configured".into()),
                )),
            },
            (_, Channel::Webhook) => match settings.webhooks.get("default") {
                Some(w) => targets.push((
                    Channel::Webhook,
                    w.url.clone(),
                    DeliveryStatus::Pending,
                    None,
                )),
                None => targets.push((
                    Channel::Webhook,
                    "default".into(),
                    DeliveryStatus::Skipped,
                    Some("no default webhook configured".into()),
                )),
            },
            // Plugins cannot name it (the contract has no such channel).
            (_, Channel::Desk) => targets.push((
                Channel::Desk,
                who.clone(),
                DeliveryStatus::Skipped,
                Some("desk requests come from write-back, not from a plan".into()),
            )),
        }
        let slack_text = |body: &str| {
            let mentions: Vec<String> = agents
                .iter()
                .filter_map(|a| a.slack_id.as_ref().map(|s| format!("<@{s}>")))
                .collect();
            if mentions.is_empty() {
                body.to_string()
            } else {
                format!("{} {body}", mentions.join(" "))
            }
        };
        let mut made = 0;
        for (ch, address, status, note) in targets {
            let mut status = status;
            let body = if ch == Channel::Slack {
                slack_text(body)
            } else {
                body.to_string()
            };
            // Digest: hold it if this address heard on this channel lately.
            if digest_window_ms > 0 && status != DeliveryStatus::Skipped {
                let window = delta(digest_window_ms)?;
                let since = now
                    .checked_sub_signed(window)
                    .unwrap_or(DateTime::<Utc>::MIN_UTC);
                if let Some(last) = tx.last_delivery_to(tenant, ch, &address, since)? {
                    status = DeliveryStatus::Held;
                    let group =
                        serde_json::json!({"channel": ch, "address": address, "recipient": who});
                    let pending = tx.pending_timers(tenant, "*", TimerKind::Digest)?;
                    if !pending.iter().any(|t| t.payload == group) {
                        tx.insert_timer(
                            tenant,
                            "*",
                            TimerKind::Digest,
                            later(last, digest_window_ms)?,
                            &group,
                        )?;
                    }
                }
            }
            let key = format!("{tenant}:{ticket}:{key}:{ch}:{address}");
            let d = NewDelivery {
                ticket: ticket.to_string(),
                idempotency_key: hex_key(&key),
                channel: ch,
                recipient: who.clone(),
                address: address.clone(),
                title: title.to_string(),
                body: body.clone(),
                status,
                note,
                priority,
            };
            if tx.insert_delivery(tenant, &d, now)? {
                made += 1;
                if ch == Channel::InApp && status == DeliveryStatus::Sent {
                    feed.push(tx.insert_feed(tenant, &address, ticket, title, &body, now)?);
                }
            }
        }
        Ok(made)
    }

    /// Queue the handoff packet for the next [`FANOUT_CHUNK`] endpoints
    /// subscribed to escalations (in name order, after `hooks.after`), and
    /// leave a `fanout` timer, due at once, for the rest: a tenant with a
    /// thousand endpoints writes them in short transactions that other
    /// tenants' events pass between, not in one long one.
    pub(super) fn fan_out(
        &self,
        act: &Act<'_, '_>,
        ticket: &str,
        hooks: &WebhookFanout,
    ) -> Result<usize> {
        let Act {
            tx,
            tenant,
            settings,
            now,
            ..
        } = *act;
        let after = hooks.after.as_deref();
        let mut subscribed = settings
            .webhooks
            .iter()
            .filter(|(name, w)| after.is_none_or(|a| name.as_str() > a) && w.wants(&hooks.event))
            .peekable();
        let mut queued = 0;
        let mut last = None;
        for (name, w) in subscribed.by_ref().take(FANOUT_CHUNK) {
            let d = NewDelivery {
                ticket: ticket.to_string(),
                idempotency_key: hex_key(&match hooks.event.as_str() {
                    "escalated" => format!("{tenant}:{ticket}:d{}:hook:{name}", hooks.decision),
                    other => format!("{tenant}:{ticket}:{other}{}:hook:{name}", hooks.decision),
                }),
                channel: Channel::Webhook,
                recipient: name.clone(),
                address: w.url.clone(),
                title: hooks.title.clone(),
                body: hooks.body.clone(),
                status: DeliveryStatus::Pending,
                note: None,
                priority: hooks.priority,
            };
            if tx.insert_delivery(tenant, &d, now)? {
                queued += 1;
            }
            last = Some(name.clone());
        }
        if subscribed.peek().is_some() {
            let rest = WebhookFanout {
                after: last,
                ..hooks.clone()
            };
            // The timer and delivery workers are woken after the commit.
            tx.insert_timer(
                tenant,
                ticket,
                TimerKind::Fanout,
                now,
                &serde_json::to_value(&rest)?,
            )?;
        }
        Ok(queued)
    }
}

/// What the humans did with an escalated ticket, resolved at `now`: the
/// question, why it escalated, what the AI had tried, and the human
/// replies after the escalation.
pub(super) fn resolution(state: &TicketState, now: DateTime<Utc>) -> serde_json::Value {
    let t = &state.ticket;
    let first = state.first_escalated();
    let replies: Vec<_> = t
        .messages
        .iter()
        .filter(|m| m.author == AuthorKind::HumanAgent && first.is_none_or(|f| m.sent_at >= f))
        .map(|m| serde_json::json!({"agent": m.author_id, "body": m.body, "sent_at": m.sent_at}))
        .collect();
    let asked: Vec<&str> = t
        .messages
        .iter()
        .filter(|m| m.author == AuthorKind::Customer && first.is_none_or(|f| m.sent_at <= f))
        .map(|m| m.body.as_str())
        .collect();
    serde_json::json!({
        "ticket": t.id,
        "subject": t.subject,
        "category": t.category,
        "tier": state.escalation.as_ref().map(|e| e.tier),
        "escalated_at": first,
        "resolved_at": now,
        "minutes_to_resolve": first.map(|f| (now - f).num_seconds().max(0) as f64 / 60.0),
        "status": t.status,
        "resolved_by": t.assignee,
        "why": state.escalation.as_ref().map(|e| e.reasons.iter()
            .filter(|r| r.action == SignalAction::Escalate)
            .map(|r| &r.reason).collect::<Vec<_>>()),
        "customer_asked": asked,
        "ai": t.ai_analysis.as_ref().map(|a| serde_json::json!({
            "intent": a.intent, "category": a.category, "confidence": a.confidence,
            "reasoning": a.reasoning, "solutions_tried": a.solutions_tried,
        })),
        "human_replies": replies,
    })
}

/// [`resolution`] as a note people and a desk's AI read.
fn resolution_note(r: &serde_json::Value) -> String {
    let mut out = format!(
        "Resolved by {} {} min after the {} escalation.",
        r["resolved_by"].as_str().unwrap_or("a human"),
        r["minutes_to_resolve"]
            .as_f64()
            .map_or(0, |m| m.round() as i64),
        r["tier"].as_str().unwrap_or("")
    );
    if let Some(why) = r["why"].as_array().filter(|w| !w.is_empty()) {
        out.push_str("\n\nWhy it escalated:");
        for w in why {
            out.push_str(&format!("\n- {}", w.as_str().unwrap_or_default()));
        }
    }
    let replies = r["human_replies"].as_array().cloned().unwrap_or_default();
    out.push_str("\n\nWhat the human did:");
    if replies.is_empty() {
        out.push_str("\n(no reply to the customer after the escalation)");
    }
    for m in &replies {
        out.push_str(&format!("\n- {}", m["body"].as_str().unwrap_or_default()));
    }
    out
}

/// `ms` milliseconds (from a plugin or a client) as a time delta, checked.
pub(super) fn delta(ms: u64) -> Result<Duration> {
    i64::try_from(ms)
        .ok()
        .and_then(Duration::try_milliseconds)
        .ok_or_else(|| EngineError::OutOfRange(format!("a duration of {ms} ms is out of range")))
}

pub(super) fn name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// Where the engine acts: the write transaction, the tenant with its
/// channel settings and roster, and the moment.
#[derive(Clone, Copy)]
pub(super) struct Act<'a, 't> {
    pub(super) tx: &'a Tx<'t>,
    pub(super) tenant: &'a str,
    pub(super) settings: &'a ChannelSettings,
    pub(super) roster: &'a [model::Agent],
    pub(super) now: DateTime<Utc>,
}

/// One notification: to whom, on which channel, what, and how it is
/// grouped (digest window), deduplicated (key) and ordered (priority).
#[derive(Clone, Copy)]
pub(super) struct Notice<'a> {
    pub(super) recipient: &'a Recipient,
    pub(super) channel: Channel,
    pub(super) title: &'a str,
    pub(super) body: &'a str,
    pub(super) digest_window_ms: u64,
    pub(super) key: &'a str,
    /// The ticket's tier (`None`: not escalated).
    pub(super) tier: Option<Tier>,
    /// Who has the ticket (for people who want only their own).
    pub(super) assignee: Option<&'a str>,
    /// Send as the plan says, whatever people's preferences: a critical
    /// escalation nobody would otherwise hear of.
    pub(super) overrule: bool,
}

/// What a notification did.
#[derive(Debug, Default)]
pub(super) struct Told {
    /// Deliveries made.
    pub(super) made: usize,
    /// People it reached (ids).
    pub(super) reached: Vec<String>,
    /// Of those, how many are available now.
    pub(super) on_duty: usize,
    /// People their preferences kept it from.
    pub(super) dropped: usize,
}

/// The connector and write-back settings of the desk `ticket` came from,
/// if the tenant writes back to it.
pub(super) fn write_back_to<'a>(
    act: &Act<'a, '_>,
    ticket: &str,
) -> Option<(
    &'a crate::connectors::Connector,
    &'a crate::connectors::writeback::WriteBack,
)> {
    let (desk, _) = crate::connectors::writeback::origin(ticket)?;
    let c = act.settings.connectors.get(desk)?;
    Some((c, c.writeback.as_ref()?))
}

/// Queue `requests` to the desk, one delivery each, sent in order of
/// urgency like every notification.
pub(super) fn write_back(
    act: &Act<'_, '_>,
    ticket: &str,
    wb: &crate::connectors::writeback::WriteBack,
    requests: &[crate::connectors::writeback::DeskRequest],
    key: &str,
    tier: Tier,
) -> Result<usize> {
    let Some((desk, _)) = crate::connectors::writeback::origin(ticket) else {
        return Ok(0);
    };
    let mut made = 0;
    for (i, r) in requests.iter().enumerate() {
        let d = NewDelivery {
            ticket: ticket.to_string(),
            idempotency_key: hex_key(&format!("{}:{ticket}:{key}:desk:{i}", act.tenant)),
            channel: Channel::Desk,
            recipient: desk.name().to_string(),
            address: format!("{}{}", wb.base_url.trim_end_matches('/'), r.path),
            title: r.method.clone(),
            body: r.body.to_string(),
            status: DeliveryStatus::Pending,
            note: None,
            priority: Tier::send_priority(Some(tier)),
        };
        if act.tx.insert_delivery(act.tenant, &d, act.now)? {
            made += 1;
        }
    }
    Ok(made)
}

/// Endpoints one transaction queues an escalation for; a `fanout` timer
/// queues the rest.
pub(super) const FANOUT_CHUNK: usize = 32;

/// An engine event (an escalation's handoff packet, a resolution) on its
/// way to the subscribed endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WebhookFanout {
    /// The engine event: `escalated` (a decision's) or `resolved` (an
    /// event's).
    #[serde(default = "escalated")]
    pub(super) event: String,
    /// The decision (escalated) or event (resolved) it is about.
    pub(super) decision: i64,
    pub(super) priority: i64,
    pub(super) title: String,
    pub(super) body: String,
    /// The last endpoint (by name) already queued.
    pub(super) after: Option<String>,
}

fn escalated() -> String {
    "escalated".into()
}

pub(super) fn name_of_tier(t: Tier) -> String {
    let n = name(&t);
    let mut c = n.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

pub(super) fn evidence_text(signals: &[&Signal]) -> String {
    signals
        .iter()
        .map(|s| {
            let mut line = format!("• {} ({})", s.reason, name(&s.tier));
            for e in &s.evidence {
                line.push_str(&format!("\n    {e}"));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub(super) fn hex_key(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..16])
}

/// The handoff packet's one-paragraph summary: tier, customer, subject,
/// the AI's confidence and reasoning, and what was tried.
pub fn handoff_summary(state: &TicketState) -> String {
    let t = &state.ticket;
    let esc = state.escalation.as_ref();
    let tried: Vec<&String> = t
        .ai_analysis
        .as_ref()
        .map(|a| a.solutions_tried.iter().collect())
        .unwrap_or_default();
    let mut summary = match (esc, &t.customer) {
        (Some(e), Some(c)) => format!(
            "{} escalation for {} ({} plan{}): {}",
            name(&e.tier),
            c.name,
            c.plan,
            if c.mrr_cents > 0 {
                format!(", ${} MRR", c.mrr_cents / 100)
            } else {
                String::new()
            },
            t.subject
        ),
        (Some(e), None) => format!("{} escalation: {}", name(&e.tier), t.subject),
        (None, _) => format!("Not escalated: {}", t.subject),
    };
    if let Some(a) = &t.ai_analysis {
        summary.push_str(&format!(
            ". AI confidence {:.0}%: {}",
            a.confidence * 100.0,
            a.reasoning.trim_end_matches('.')
        ));
    }
    if !tried.is_empty() {
        summary.push_str(&format!(
            ". Already tried: {}",
            tried
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    summary
}

/// The handoff packet: everything a human needs to take the ticket over
/// from the AI without asking the customer to repeat anything.
pub fn handoff(state: &TicketState) -> serde_json::Value {
    let t = &state.ticket;
    let esc = state.escalation.as_ref();
    let respond_by = esc.and_then(|e| {
        e.response_target_ms
            .and_then(|ms| later(e.escalated_at, ms).ok())
    });
    let summary = handoff_summary(state);
    serde_json::json!({
        "ticket": {
            "id": t.id, "subject": t.subject, "category": t.category, "channel": t.channel,
            "status": t.status, "created_at": t.created_at, "tags": t.tags,
        },
        "summary": summary,
        "customer": t.customer,
        "conversation": t.messages,
        "ai": t.ai_analysis.as_ref().map(|a| serde_json::json!({
            "confidence": (f64::from(a.confidence) * 1000.0).round() / 1000.0, "intent": a.intent, "category": a.category,
            "reasoning": a.reasoning, "solutions_tried": a.solutions_tried,
            "analyzed_at": a.analyzed_at,
        })),
        "escalation": esc.map(|e| serde_json::json!({
            "tier": e.tier,
            "escalated_at": e.escalated_at,
            "respond_by": respond_by,
            "why": e.reasons.iter().map(|s| serde_json::json!({
                "reason": s.reason, "tier": s.tier, "action": s.action, "key": s.key,
                "evidence": s.evidence,
            })).collect::<Vec<_>>(),
            "routing": e.routing,
        })),
        "assignee": t.assignee,
        "queue": state.queue,
        "claimed_at": t.claimed_at,
        "customer_message": esc.and_then(|e| e.customer_message.clone()),
    })
}

/// The steps of a plan that wait, in the order they fall due. Only the
/// first waits in a timer: firing it schedules the rest the same way. A
/// plan is one pending timer, not one per step (a plan of nine reminders
/// wrote nine rows, each with three index entries and a copy of its step,
/// and a claim rewrote them all); each step that fires keeps its own row
/// with its outcome. The steps themselves are read from the plan's
/// decision when they fire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Chain {
    /// The decision whose plan this is.
    decision: i64,
    /// When the plan was made: the steps' delays count from here.
    plan_at: DateTime<Utc>,
    /// The steps still to come, the next first.
    chain: Vec<Link>,
}

/// One step of a [`Chain`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Link {
    /// Its index in the plan.
    index: usize,
    /// When it falls due, after the plan was made.
    delay_ms: u64,
    /// Whether a claim stops it.
    stop_when_claimed: bool,
}

impl Chain {
    /// `steps` (index in the plan, step) of the plan of `decision`, made
    /// at `plan_at`, in the order they fall due (plan order among equals).
    pub(super) fn new<'a>(
        decision: i64,
        plan_at: DateTime<Utc>,
        steps: impl IntoIterator<Item = (usize, &'a model::NotificationStep)>,
    ) -> Chain {
        let mut chain: Vec<Link> = steps
            .into_iter()
            .map(|(index, s)| Link {
                index,
                delay_ms: s.delay_ms,
                stop_when_claimed: s.stop_when_claimed,
            })
            .collect();
        chain.sort_by_key(|l| l.delay_ms);
        Chain {
            decision,
            plan_at,
            chain,
        }
    }

    /// A timer's chain, if the timer is one (a step held for quiet hours,
    /// or one scheduled before chains, carries its step instead).
    pub(super) fn of(payload: &serde_json::Value) -> Option<Chain> {
        payload.get("chain")?;
        serde_json::from_value(payload.clone()).ok()
    }

    /// When the plan was made.
    pub(super) fn plan_at(&self) -> DateTime<Utc> {
        self.plan_at
    }

    /// Schedule the next step's timer (nothing once the chain is done).
    pub(super) fn schedule(&self, tx: &Tx<'_>, tenant: &str, ticket: &str) -> Result<()> {
        let Some(next) = self.chain.first() else {
            return Ok(());
        };
        tx.insert_timer(
            tenant,
            ticket,
            TimerKind::Step,
            later(self.plan_at, next.delay_ms)?,
            &serde_json::to_value(self)?,
        )?;
        Ok(())
    }

    /// The chain after its next step.
    pub(super) fn rest(&self) -> Chain {
        Chain {
            chain: self.chain.get(1..).unwrap_or_default().to_vec(),
            ..*self
        }
    }

    /// The chain without the steps a claim stops; `None` if it has none.
    fn claimed(&self) -> Option<Chain> {
        self.chain
            .iter()
            .any(|l| l.stop_when_claimed)
            .then(|| Chain {
                chain: self
                    .chain
                    .iter()
                    .filter(|l| !l.stop_when_claimed)
                    .copied()
                    .collect(),
                ..*self
            })
    }

    /// The next step, read from the plan of its decision (`None` if that
    /// decision or step is gone).
    pub(super) fn next_step(
        &self,
        tx: &Tx<'_>,
        tenant: &str,
    ) -> Result<Option<model::NotificationStep>> {
        #[derive(Deserialize)]
        struct Planned {
            plan: Option<model::NotificationPlan>,
        }
        let Some(next) = self.chain.first() else {
            return Ok(None);
        };
        let Some(data) = tx.decision_data(tenant, self.decision)? else {
            return Ok(None);
        };
        let planned: Planned = serde_json::from_str(&data)?;
        Ok(planned
            .plan
            .and_then(|p| p.steps.into_iter().nth(next.index)))
    }
}

/// A claim stops the plan steps that say so: those of the ticket's
/// chains (the chain's timer is cancelled and its other steps scheduled
/// anew) and single held steps.
pub(super) fn stop_steps_on_claim(tx: &Tx<'_>, tenant: &str, ticket: &str) -> Result<()> {
    tx.cancel_steps_on_claim(tenant, ticket)?;
    for t in tx.pending_timers(tenant, ticket, TimerKind::Step)? {
        if let Some(kept) = Chain::of(&t.payload).and_then(|c| c.claimed())
            && tx.cancel_timer(t.id, "claimed")?
        {
            kept.schedule(tx, tenant, ticket)?;
        }
    }
    Ok(())
}

/// Schedule the fallback path of `routing` (of `decision`, made at `now`).
pub(super) fn fallback_timers(
    tx: &Tx<'_>,
    tenant: &str,
    ticket: &str,
    decision: i64,
    routing: &model::Routing,
    now: DateTime<Utc>,
) -> Result<()> {
    fallback_path(tx, tenant, ticket, decision, now, &routing.fallback)
}

/// Schedule a fallback path whose delays count from `from`: its first
/// step waits in a timer that carries the rest, and firing it schedules
/// the next the same way (a path is one pending timer, not one per step).
pub(super) fn fallback_path(
    tx: &Tx<'_>,
    tenant: &str,
    ticket: &str,
    decision: i64,
    from: DateTime<Utc>,
    path: &[model::FallbackStep],
) -> Result<()> {
    let Some((step, rest)) = path.split_first() else {
        return Ok(());
    };
    tx.insert_timer(
        tenant,
        ticket,
        TimerKind::Fallback,
        later(from, step.after_ms)?,
        &serde_json::json!({"decision": decision, "from": from, "step": step, "rest": rest}),
    )?;
    Ok(())
}
