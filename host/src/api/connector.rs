//! `POST /v1/connectors/{desk}/events`: a help desk's own webhook, signed
//! by the desk, for the tenant the URL names.

use super::*;
use crate::connectors::{self, Desk, Headers, Mapped};

impl Api {
    pub(super) async fn connector_event(
        self: &Arc<Self>,
        req: Request<Incoming>,
        method: Method,
        desk: &str,
    ) -> ApiResult {
        let desk = Desk::parse(desk).ok_or_else(|| {
            not_found(&format!(
                "no connector for {desk:?} (known: zendesk, intercom, chatwoot, zammad)"
            ))
        })?;
        if method != Method::POST {
            return Err(no_route(&method, req.uri().path()));
        }
        // The tenant: its bearer token where the desk can send one (Zendesk,
        // Zammad), else `?tenant=ID`; the desk's signature with that
        // tenant's secret is checked either way.
        let tenant = if req.headers().contains_key("authorization") {
            self.tenant(&req).await?
        } else {
            query(&req).get("tenant").cloned().ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "name the tenant: ?tenant=ID in the webhook URL, or a bearer token",
                )
                .code(codes::AUTH_UNAUTHORIZED)
            })?
        };
        let headers: Headers = req
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        let body = self.raw_body(req, self.max_body_bytes).await?;
        let (engine, t) = (self.engine.clone(), tenant.clone());
        let settings = blocking(move || Ok(engine.channels.get(&*engine.store, &t))).await?;
        // The same answer for a tenant that does not exist: the URL does
        // not tell a prober which tenants do.
        let connector = settings.connectors.get(desk).cloned().ok_or_else(|| {
            not_found(&format!(
                "tenant {tenant:?} has no {0} connector: PUT /v1/settings with \
                 connectors.{0}.secret",
                desk.name()
            ))
        })?;
        let now = self.engine.clock.now();
        connectors::verify(desk, &connector.secret, &headers, &body, now).map_err(|why| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                format!("{} signature refused: {why}", desk.name()),
            )
            .code(codes::AUTH_UNAUTHORIZED)
        })?;
        // Only a delivery the desk signed counts against the tenant's event
        // rate and volume: an unsigned flood naming the tenant cannot spend
        // them.
        self.event_rate(&tenant)?;
        self.volume_of(&tenant, body.len())?;
        let inbound = match connectors::map(desk, &connector, &headers, &body) {
            Ok(Mapped::Inbound(i)) => i,
            Ok(Mapped::Ignored(why)) => {
                return Ok(json(
                    StatusCode::ACCEPTED,
                    &serde_json::json!({"ignored": why}),
                ));
            }
            Err(why) => {
                return Err(
                    ApiError::new(StatusCode::BAD_REQUEST, why).code(codes::REQUEST_INVALID)
                );
            }
        };
        let kind = inbound.kind.clone();
        let ticket = inbound.ticket.id.clone();
        let out = self
            .metered(&tenant.clone(), async move |lane| {
                let engine = self.engine.clone();
                blocking(move || {
                    engine.runtime.shares().within(&tenant, lane, || {
                        Ok(engine.desk_delivery(&tenant, desk, &inbound)?)
                    })
                })
                .await
            })
            .await?;
        ok(&serde_json::json!({
            "desk": desk.name(),
            "kind": kind,
            "ticket": ticket,
            "outcome": out,
        }))
    }
}
