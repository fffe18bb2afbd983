//! A tenant's API: tickets and their events, agents, plugins, settings,
//! deliveries, the dashboard and reports, and the in-app feed (SSE).

use super::*;

impl Api {
    pub(super) async fn tenant_route(
        self: &Arc<Self>,
        req: Request<Incoming>,
        method: Method,
        segs: &[&str],
        tenant: String,
    ) -> ApiResult {
        let engine = self.engine.clone();
        let store = engine.store.clone();
        let key = req
            .headers()
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        match (&method, segs) {
            (&Method::GET, ["plugins"]) => {
                ok(&blocking(move || Ok(engine.plugin_list(&tenant))).await?)
            }
            (&Method::POST, ["plugins"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct UploadBody<'a> {
                    manifest: String,
                    // Borrowed from the body (base64 has nothing to
                    // unescape): the upload is held once as text, once as
                    // bytes, never copied in between.
                    #[serde(borrow)]
                    component_base64: std::borrow::Cow<'a, str>,
                    #[serde(default)]
                    fixtures: Vec<crate::registry::fixtures::Fixture>,
                    #[serde(default = "crate::model::yes")]
                    activate: bool,
                }
                let raw = self.raw_body(req, self.max_upload_bytes).await?;
                let UploadBody {
                    manifest,
                    component_base64,
                    fixtures,
                    activate,
                } = parse_json(&raw)?;
                use base64::Engine as _;
                // Standard base64; bits after the last byte need not be zero
                // (the bytes are the same either way).
                const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
                    &base64::alphabet::STANDARD,
                    base64::engine::GeneralPurposeConfig::new()
                        .with_decode_allow_trailing_bits(true),
                );
                let wasm = BASE64.decode(component_base64.trim()).map_err(|e| {
                    ApiError::new(StatusCode::BAD_REQUEST, format!("component_base64: {e}"))
                })?;
                // Decoded: the text goes before the plugin is compiled.
                drop(component_base64);
                drop(raw);
                let q = self.quotas;
                let up = crate::engine::Upload {
                    manifest,
                    wasm,
                    fixtures,
                    source: "api".into(),
                    quota: Some(crate::engine::PluginQuota {
                        plugins: q.plugins_per_tenant,
                        versions: q.versions_per_plugin,
                    }),
                };
                let out =
                    blocking(move || Ok(engine.upload(&tenant, up, "api", activate)?)).await?;
                Ok(json(StatusCode::CREATED, &out))
            }
            (&Method::GET, ["dashboard"]) => {
                ok(&blocking(move || Ok(crate::dashboard::data(&engine, &tenant)?)).await?)
            }
            (&Method::GET, ["reports", "feedback"]) => {
                ok(&blocking(move || Ok(crate::dashboard::feedback(&engine, &tenant)?)).await?)
            }
            (&Method::GET, ["plugin-changes"]) => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let limit = page.limit as u32;
                let list = blocking(move || Ok(store.plugin_changes(&tenant, limit)?)).await?;
                ok(&list)
            }
            (&Method::GET, ["plugins", name, "versions"]) => {
                let name = name.to_string();
                ok(&blocking(move || Ok(store.plugin_versions(&tenant, &name)?)).await?)
            }
            (&Method::POST, ["plugins", name, "activate"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Activate {
                    version: String,
                }
                let a: Activate = self.body(req).await?;
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.activate(&tenant, &name, &a.version, "api")?))
                        .await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::POST, ["plugins", name, "mode"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct SetMode {
                    mode: String,
                }
                let m: SetMode = self.body(req).await?;
                let mode = crate::manifest::Mode::parse(&m.mode).ok_or_else(|| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("mode {:?}: expected active, shadow or disabled", m.mode),
                    )
                    .code(codes::PLUGIN_INVALID)
                })?;
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.set_plugin_mode(&tenant, &name, mode, "api")?))
                        .await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::POST, ["plugins", name, "rollback"]) => {
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.rollback(&tenant, &name, "api")?)).await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::DELETE, ["plugins", name, "versions", version]) => {
                let (name, version) = (name.to_string(), version.to_string());
                blocking(move || Ok(engine.delete_version(&tenant, &name, &version, "api")?))
                    .await?;
                ok(&serde_json::json!({"deleted": true}))
            }
            (&Method::DELETE, ["plugins", name]) => {
                let name = name.to_string();
                let generation =
                    blocking(move || Ok(engine.remove_plugin(&tenant, &name, "api")?)).await?;
                ok(&serde_json::json!({"generation": generation}))
            }
            (&Method::GET, ["plugins", name, "shadow-report"]) => {
                let q = query(&req);
                let now = engine.clock.now();
                let since = q
                    .get("since")
                    .cloned()
                    .unwrap_or_else(|| crate::store::ts(now - chrono::Duration::days(7)));
                let until = q
                    .get("until")
                    .cloned()
                    .unwrap_or_else(|| crate::store::ts(now + chrono::Duration::seconds(1)));
                for (k, v) in [("since", &since), ("until", &until)] {
                    if v.parse::<chrono::DateTime<chrono::Utc>>().is_err() {
                        return Err(ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("{k}: {v:?} is not an RFC 3339 time"),
                        ));
                    }
                }
                let name = name.to_string();
                let since = crate::store::ts(since.parse().expect("checked"));
                let until = crate::store::ts(until.parse().expect("checked"));
                ok(
                    &blocking(move || Ok(engine.shadow_report(&tenant, &name, &since, &until)?))
                        .await?,
                )
            }
            (&Method::GET, ["settings"]) => {
                let s: ChannelSettings = blocking(move || {
                    Ok(serde_json::from_value(store.settings(&tenant)?).unwrap_or_default())
                })
                .await?;
                ok(&s.redacted())
            }
            (&Method::PUT, ["settings"]) => {
                let mut s: ChannelSettings = self.body(req).await?;
                let (t, reader) = (tenant.clone(), store.clone());
                let stored: ChannelSettings = blocking(move || {
                    Ok(serde_json::from_value(reader.settings(&t)?).unwrap_or_default())
                })
                .await?;
                s.keep_secrets_from(&stored);
                if s.webhooks.len() > self.quotas.webhooks_per_tenant {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "webhooks: at most {} per tenant (the operator's [limits] webhooks-per-tenant)",
                            self.quotas.webhooks_per_tenant
                        ),
                    )
                    .code(codes::QUOTA_EXCEEDED));
                }
                s.validate()
                    .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
                s.check_destinations(&self.outbound)
                    .await
                    .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
                let v = serde_json::to_value(&s).map_err(anyhow::Error::from)?;
                let engine = self.engine.clone();
                blocking(move || Ok(engine.set_settings(&tenant, &v)?)).await?;
                ok(&s.redacted())
            }
            (&Method::GET, ["agents"]) => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let (list, next) = page
                    .cut(blocking(move || Ok(store.agents(&tenant)?)).await?, |a| {
                        a.id.clone()
                    });
                Ok(page.answer(&req, &list, next))
            }
            (&Method::GET, ["agents", id]) => {
                let id = id.to_string();
                let a = blocking(move || Ok(store.agent(&tenant, &id)?)).await?;
                a.map_or_else(|| Err(not_found("no such agent")), |a| ok(&a))
            }
            (&Method::PUT, ["agents", id]) => {
                let mut a: model::Agent = self.body(req).await?;
                if a.id.is_empty() {
                    a.id = id.to_string();
                }
                if a.id != *id {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("the body's id {:?} is not the path's {id:?}", a.id),
                    ));
                }
                let out = a.clone();
                blocking(move || Ok(engine.put_agent(&tenant, a)?)).await?;
                ok(&out)
            }
            (&Method::GET, ["agents", id, "notifications"]) => {
                let id = id.to_string();
                let a = blocking(move || Ok(store.agent(&tenant, &id)?)).await?;
                let a = a.ok_or_else(|| not_found("no such agent"))?;
                ok(&a.notifications.unwrap_or_default())
            }
            (&Method::PUT, ["agents", id, "notifications"]) => {
                let p: model::NotifyPrefs = self.body(req).await?;
                let id = id.to_string();
                let a =
                    blocking(move || Ok(engine.set_notifications(&tenant, &id, Some(p))?)).await?;
                ok(&a.notifications.unwrap_or_default())
            }
            (&Method::DELETE, ["agents", id, "notifications"]) => {
                let id = id.to_string();
                blocking(move || Ok(engine.set_notifications(&tenant, &id, None)?)).await?;
                ok(&serde_json::json!({"deleted": true}))
            }
            (&Method::POST, ["agents", id, "status"]) => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Status {
                    status: AgentStatus,
                }
                let s: Status = self.body(req).await?;
                let id = id.to_string();
                let moved =
                    blocking(move || Ok(engine.set_agent_status(&tenant, &id, s.status)?)).await?;
                ok(&serde_json::json!({"status": s.status, "rerouted": moved}))
            }
            (&Method::GET, ["agents", id, "feed"]) => {
                let id = id.to_string();
                let (s2, t2, i2) = (store.clone(), tenant.clone(), id.clone());
                if blocking(move || Ok(s2.agent(&t2, &i2)?)).await?.is_none() {
                    return Err(not_found("no such agent"));
                }
                // The feed item to start after: `Last-Event-ID` on a
                // reconnect, else `after`; anything but a number is refused.
                let cursor = |v: &str, what: &str| {
                    v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        ApiError::new(
                            StatusCode::BAD_REQUEST,
                            format!("{what} must be a feed item id (a number)"),
                        )
                    })
                };
                let from_query = query(&req)
                    .get("after")
                    .map(|a| cursor(a, "after"))
                    .transpose()?;
                let after = match req.headers().get("last-event-id") {
                    Some(h) => cursor(h.to_str().unwrap_or(""), "Last-Event-ID")?,
                    None => from_query.unwrap_or(0),
                };
                let wants_stream = req
                    .headers()
                    .get("accept")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|a| a.contains("text/event-stream"));
                if wants_stream {
                    let q = self.quotas;
                    let slot = self
                        .feeds
                        .take(&tenant, q.sse_per_tenant, q.sse_total)
                        .map_err(|r| match r {
                            quota::SlotRefusal::Tenant(n) => ApiError::too_many(
                                format!("at most {n} live feeds per tenant are open; close one"),
                                std::time::Duration::from_secs(5),
                            )
                            .code(codes::QUOTA_EXCEEDED),
                            quota::SlotRefusal::Total(n) => ApiError {
                                retry_after: Some(5),
                                ..ApiError::new(
                                    StatusCode::SERVICE_UNAVAILABLE,
                                    format!("the server has {n} live feeds open; try later"),
                                )
                            },
                        })?;
                    Ok(self.feed_stream(tenant, id, after, slot))
                } else {
                    ok(&blocking(move || Ok(store.feed(&tenant, &id, after)?)).await?)
                }
            }
            (&Method::POST, ["tickets"]) => {
                self.event_rate(&tenant)?;
                self.body_volume(&tenant, &req)?;
                let out = self
                    .metered(&tenant.clone(), async move |lane| {
                        let t: model::Ticket = self.body_in(req, &tenant, lane).await?;
                        blocking(move || {
                            engine.runtime.shares().within(&tenant, lane, || {
                                Ok(engine.create_ticket(&tenant, t, key.as_deref())?)
                            })
                        })
                        .await
                    })
                    .await?;
                Ok(json(StatusCode::CREATED, &out))
            }
            (&Method::GET, ["tickets", id]) => {
                let id = id.to_string();
                let v = blocking(move || {
                    let state = store
                        .ticket(&tenant, &id)?
                        .ok_or_else(|| not_found(&format!("no ticket {id}")))?;
                    Ok(serde_json::json!({
                        "ticket": state.ticket,
                        "tier": state.escalation.as_ref().map(|e| e.tier),
                        "assignee": state.ticket.assignee,
                        "queue": state.queue,
                        "escalation": state.escalation,
                        "history": state.history,
                        "csat": state.csat,
                        "handoff": crate::engine::handoff(&state),
                        "events": store.events(&tenant, &id)?,
                        "decisions": store.decisions(&tenant, &id)?,
                        "timers": store.timers(&tenant, &id)?,
                    }))
                })
                .await?;
                ok(&v)
            }
            (&Method::GET, ["tickets", id, "handoff"]) => {
                let id = id.to_string();
                let v = blocking(move || {
                    let state = store
                        .ticket(&tenant, &id)?
                        .ok_or_else(|| not_found(&format!("no ticket {id}")))?;
                    Ok(crate::engine::handoff(&state))
                })
                .await?;
                ok(&v)
            }
            (&Method::GET, ["tickets", id, "timers"]) => {
                let id = id.to_string();
                ok(&blocking(move || Ok(store.timers(&tenant, &id)?)).await?)
            }
            (&Method::POST, ["tickets", id, "events"]) => {
                self.event_rate(&tenant)?;
                self.body_volume(&tenant, &req)?;
                let id = id.to_string();
                let out = self
                    .metered(&tenant.clone(), async move |lane| {
                        let event: Event = self.body_in(req, &tenant, lane).await?;
                        blocking(move || {
                            engine.runtime.shares().within(&tenant, lane, || {
                                Ok(engine.add_event(&tenant, &id, event, key.as_deref())?)
                            })
                        })
                        .await
                    })
                    .await?;
                ok(&out)
            }
            (&Method::GET, ["escalations"]) => {
                let limit = Page::of(&req, self.quotas.max_page)?.limit as u32;
                let tier = query(&req).get("tier").cloned();
                if let Some(t) = &tier
                    && serde_json::from_value::<model::Tier>(serde_json::Value::String(t.clone()))
                        .is_err()
                {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!("tier {t:?}: must be one of low, medium, high, critical"),
                    ));
                }
                let list = blocking(move || Ok(store.escalated(&tenant, limit)?)).await?;
                let list: Vec<_> = list
                    .into_iter()
                    .filter(|s| {
                        tier.as_deref().is_none_or(|t| {
                            s.escalation.as_ref().is_some_and(|e| {
                                serde_json::to_value(e.tier).ok()
                                    == Some(serde_json::Value::String(t.into()))
                            })
                        })
                    })
                    .map(|s| {
                        serde_json::json!({
                            "ticket": s.ticket.id, "subject": s.ticket.subject,
                            "tier": s.escalation.as_ref().map(|e| e.tier),
                            "escalated_at": s.escalation.as_ref().map(|e| e.escalated_at),
                            "reasons": s.escalation.as_ref().map(|e| e.reasons.iter().map(|r| &r.reason).collect::<Vec<_>>()),
                            "assignee": s.ticket.assignee, "queue": s.queue,
                            "claimed_at": s.ticket.claimed_at, "status": s.ticket.status,
                        })
                    })
                    .collect();
                ok(&list)
            }
            (&Method::GET, ["deliveries"]) => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let ticket = query(&req).get("ticket").cloned();
                let after = match &page.after {
                    Some(a) => a.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                        ApiError::new(StatusCode::BAD_REQUEST, "after must be a delivery id")
                    })?,
                    None => 0,
                };
                let limit = page.limit;
                let list = blocking(move || {
                    Ok(store.deliveries(&tenant, ticket.as_deref(), after, limit + 1)?)
                })
                .await?;
                let (list, next) = page.trim(list, |d| d.id.to_string());
                Ok(page.answer(&req, &list, next))
            }
            _ => Err(no_route(&method, &format!("/v1/{}", segs.join("/")))),
        }
    }

    /// The agent's in-app feed as Server-Sent Events: everything after
    /// `after` (the `Last-Event-ID` on a reconnect), then each new item as
    /// it is written, with a keep-alive comment every 15 seconds.
    pub(super) fn feed_stream(
        &self,
        tenant: String,
        agent: String,
        after: i64,
        slot: quota::Slot,
    ) -> Response<Body> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
        let mut live = self.engine.feed.subscribe();
        let store = self.engine.store.clone();
        // With other instances on the database, their items come by its
        // notices; a notice missed (a listener reconnecting) is found by
        // looking at the store every few seconds, a little way back (items
        // of several instances commit out of id order).
        let look = self
            .engine
            .hears_others
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(FEED_LOOK);
        tokio::spawn(async move {
            // Held while the stream lives.
            let _slot = slot;
            let frame = |item: &crate::store::FeedItem| {
                Bytes::from(format!(
                    "id: {}\nevent: notification\ndata: {}\n\n",
                    item.id,
                    serde_json::to_string(item).unwrap_or_default()
                ))
            };
            let mut last = after;
            let mut sent = RecentIds::default();
            if tx
                .send(Bytes::from_static(b": connected\n\n"))
                .await
                .is_err()
            {
                return;
            }
            let mut keep_alive_at = tokio::time::Instant::now() + KEEP_ALIVE;
            let mut from = last;
            loop {
                // Catch up from the store (at start, after falling behind,
                // and at each look).
                let (s, t, a) = (store.clone(), tenant.clone(), agent.clone());
                let backlog = tokio::task::spawn_blocking(move || s.feed(&t, &a, from))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default();
                for item in &backlog {
                    if !sent.first(item.id) {
                        continue;
                    }
                    if tx.send(frame(item)).await.is_err() {
                        return;
                    }
                    last = last.max(item.id);
                }
                let look_at = look.map(|l| tokio::time::Instant::now() + l);
                loop {
                    let wake = look_at.map_or(keep_alive_at, |l| l.min(keep_alive_at));
                    tokio::select! {
                        ev = live.recv() => match ev {
                            Ok(FeedEvent { tenant: t, item }) => {
                                // Items of several instances may commit out
                                // of id order, and this instance hears its
                                // own twice (written, and told by the
                                // database): each id is sent once.
                                if t == tenant && item.agent == agent && sent.first(item.id) {
                                    if tx.send(frame(&item)).await.is_err() {
                                        return;
                                    }
                                    last = last.max(item.id);
                                }
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                        _ = tokio::time::sleep_until(wake) => {
                            let now = tokio::time::Instant::now();
                            if now >= keep_alive_at {
                                if tx.send(Bytes::from_static(b": keep-alive\n\n")).await.is_err() {
                                    return;
                                }
                                keep_alive_at = now + KEEP_ALIVE;
                            }
                            if look_at.is_some_and(|l| now >= l) {
                                break;
                            }
                        }
                    }
                }
                from = last.saturating_sub(FEED_LOOK_BACK).max(after);
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(BodyExt::boxed(ChannelBody(rx)))
            .expect("a valid response")
    }
}

/// How often a feed stream sends a keep-alive comment.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);
/// How often a feed stream looks at the store when other instances write
/// items too.
const FEED_LOOK: std::time::Duration = std::time::Duration::from_secs(3);
/// How far back (in ids) a look reads; each id is still sent once.
const FEED_LOOK_BACK: i64 = 256;

/// The ids of the last items a feed stream sent.
#[derive(Default)]
struct RecentIds {
    order: std::collections::VecDeque<i64>,
    set: std::collections::HashSet<i64>,
}

impl RecentIds {
    /// Remember `id`; `false` if it was sent already.
    fn first(&mut self, id: i64) -> bool {
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > 4096
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
        true
    }
}
