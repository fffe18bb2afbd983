//! The admin API: tenants, their tokens, and the manual clock.

use super::*;

impl Api {
    pub(super) async fn tenants(
        self: &Arc<Self>,
        req: Request<Incoming>,
        method: Method,
    ) -> ApiResult {
        self.admin(&req)?;
        let store = self.engine.store.clone();
        match method {
            Method::GET => {
                let page = Page::of(&req, self.quotas.max_page)?;
                let (list, next) = page.cut(blocking(move || Ok(store.tenants()?)).await?, |t| {
                    t.id.clone()
                });
                Ok(page.answer(&req, &list, next))
            }
            Method::POST => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct NewTenant {
                    id: String,
                    #[serde(default)]
                    name: Option<String>,
                }
                let t: NewTenant = self.body(req).await?;
                let valid = !t.id.is_empty()
                    && t.id.len() <= 64
                    && t.id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !valid {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "tenant id: 1-64 characters of a-z, A-Z, 0-9, - and _",
                    ));
                }
                let token = new_token()?;
                let hash = token_hash(&token);
                let engine = self.engine.clone();
                let (id, name) = (t.id.clone(), t.name.unwrap_or_else(|| t.id.clone()));
                let created =
                    blocking(move || Ok(engine.create_tenant(&id, &name, &hash)?)).await?;
                if !created {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!("tenant {} exists", t.id),
                    ));
                }
                Ok(json(
                    StatusCode::CREATED,
                    &serde_json::json!({"id": t.id, "token": token}),
                ))
            }
            _ => Err(no_route(&method, req.uri().path())),
        }
    }

    /// `POST /v1/tenants/{id}/token` issues a new token (the old one stops
    /// working at once); `DELETE` revokes the token (the tenant's requests
    /// fail until a new one is issued).
    pub(super) async fn tenant_token(
        self: &Arc<Self>,
        req: Request<Incoming>,
        method: Method,
        id: String,
    ) -> ApiResult {
        self.admin(&req)?;
        let (token, hash) = match method {
            Method::POST => {
                let token = new_token()?;
                let hash = token_hash(&token);
                (Some(token), hash)
            }
            // A hash no token has: nothing authenticates as the tenant.
            Method::DELETE => (None, format!("revoked:{}", new_token()?)),
            _ => return Err(no_route(&method, req.uri().path())),
        };
        let (t, revoked) = (id.clone(), token.is_none());
        let engine = self.engine.clone();
        let found = blocking(move || Ok(engine.set_tenant_token(&t, &hash, revoked)?)).await?;
        if !found {
            return Err(not_found(&format!("no tenant {id}")));
        }
        // Before answering: no request after this one gets in with the old
        // token, cached or not.
        self.forget_tokens(&id);
        tracing::info!(tenant = %id, revoked, "tenant token changed");
        match token {
            Some(token) => ok(&serde_json::json!({"id": id, "token": token})),
            None => ok(&serde_json::json!({"id": id, "revoked": true})),
        }
    }

    pub(super) async fn clock(
        self: &Arc<Self>,
        req: Request<Incoming>,
        method: Method,
    ) -> ApiResult {
        self.admin(&req)?;
        if !self.engine.clock.is_manual() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "the server runs on the system clock; start it with --manual-clock to move time",
            ));
        }
        match method {
            Method::GET => ok(&serde_json::json!({"now": self.engine.clock.now()})),
            Method::POST => {
                #[derive(Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Move {
                    #[serde(default)]
                    advance_ms: Option<u64>,
                    #[serde(default)]
                    to: Option<chrono::DateTime<chrono::Utc>>,
                }
                let m: Move = self.body(req).await?;
                let engine = self.engine.clone();
                let (now, fired) = blocking(move || {
                    let target = match (m.advance_ms, m.to) {
                        (Some(ms), None) => {
                            crate::engine::later(engine.clock.now(), ms).map_err(|e| {
                                ApiError::new(
                                    StatusCode::UNPROCESSABLE_ENTITY,
                                    format!("advance_ms: {e}"),
                                )
                            })?
                        }
                        (None, Some(to)) => to,
                        _ => {
                            return Err(ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "give advance_ms or to",
                            ));
                        }
                    };
                    // Step through the timers due before the target, so each
                    // fires at its own time.
                    let mut fired = 0;
                    while let Some(next) = engine.store.next_timer_at()?
                        && next <= target.timestamp_millis()
                    {
                        let at = chrono::DateTime::from_timestamp_millis(next).unwrap_or(target);
                        engine.clock.set(at);
                        let n = engine.run_due_timers()?;
                        fired += n;
                        // The scheduler may have fired them meanwhile; stop
                        // only when nothing moved on.
                        if n == 0 && engine.store.next_timer_at()? == Some(next) {
                            break;
                        }
                    }
                    let now = engine.clock.set(target).unwrap_or(target);
                    fired += engine.run_due_timers()?;
                    Ok((now, fired))
                })
                .await?;
                self.engine.delivery_wake.notify_one();
                ok(&serde_json::json!({"now": now, "fired": fired}))
            }
            _ => Err(no_route(&method, req.uri().path())),
        }
    }
}
