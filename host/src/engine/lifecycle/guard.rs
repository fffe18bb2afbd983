//! The crash-loop guard: a tenant's plugin version that fails most of its
//! recent calls is rolled back (or disabled), and the leads are told.

use super::*;

impl Engine {
    /// The crash-loop guard: count each plugin version's outcomes; one that
    /// failed most of its last calls is rolled back (if it has a previous
    /// version) or disabled, the tenant's leads are alerted in-app, and the
    /// change is logged.
    pub(in crate::engine) fn observe(&self, tenant: &str, runs: &[PluginRun]) {
        // Only what a tenant's own plugin did counts: the vendor's
        // built-ins are never disabled, and a call that never ran (its
        // share was full) or that the host failed is not the plugin's
        // fault.
        let mut outcomes: std::collections::BTreeMap<&str, (String, Option<&str>)> =
            std::collections::BTreeMap::new();
        for r in runs.iter().filter(|r| {
            !r.vendor
                && r.error_kind
                    .is_none_or(crate::runtime::ErrorKind::is_plugin_fault)
        }) {
            let o = outcomes.entry(r.plugin.as_str()).or_default();
            o.0.push(if r.error.is_some() { '1' } else { '0' });
            if let Some(e) = &r.error {
                o.1 = Some(e);
            }
        }
        if outcomes.is_empty() {
            return;
        }
        // The window lives in the database, so every instance's calls
        // count and one instance trips the guard: the row is held while
        // it is updated, and a tripped window is emptied in the same
        // transaction.
        let tripped = self.store.write(|tx| -> Result<_, EngineError> {
            let mut tripped = Vec::new();
            for (plugin, (new, error)) in &outcomes {
                let (recent, last_error) = tx.plugin_health(tenant, plugin)?;
                let last_error = error.map_or(last_error, str::to_string);
                let all = format!("{recent}{new}");
                let window = &all[all.len().saturating_sub(GUARD_WINDOW)..];
                let failures = window.bytes().filter(|b| *b == b'1').count();
                if window.len() == GUARD_WINDOW && failures >= GUARD_FAILURES {
                    tripped.push((plugin.to_string(), failures, last_error.clone()));
                    tx.set_plugin_health(tenant, plugin, "", &last_error)?;
                } else {
                    tx.set_plugin_health(tenant, plugin, window, &last_error)?;
                }
            }
            Ok(tripped)
        });
        let tripped = match tripped {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(tenant, error = %e, "recording plugin outcomes for the crash-loop guard failed");
                return;
            }
        };
        for (id, failures, last_error) in tripped {
            let name = id.split('@').next().unwrap_or(&id).to_string();
            let detail = serde_json::json!({
                "failures": failures, "window": GUARD_WINDOW, "last_error": last_error,
            });
            let has_previous = self
                .store
                .plugin_slots(tenant)
                .unwrap_or_default()
                .iter()
                .any(|s| s.name == name && s.previous.is_some() && s.version.is_some());
            let result = if has_previous {
                self.rollback_as(
                    tenant,
                    &name,
                    "crash-loop-guard",
                    "auto-rolled-back",
                    detail.clone(),
                )
                .map(|_| "rolled back")
            } else {
                self.set_mode_as(
                    tenant,
                    &name,
                    Mode::Disabled,
                    "crash-loop-guard",
                    "auto-disabled",
                    detail,
                )
                .map(|_| "disabled")
            };
            match result {
                Ok(what) => {
                    tracing::error!(tenant, plugin = %id, failures, %last_error, what, "crash-loop guard tripped");
                    self.alert_leads(
                        tenant,
                        &format!("Plugin {id} {what}: it failed {failures} of its last {GUARD_WINDOW} calls"),
                        &format!("Last error: {last_error}"),
                    );
                }
                Err(e) => {
                    tracing::error!(tenant, plugin = %id, error = %e, "crash-loop guard could not act")
                }
            }
        }
    }

    /// Tell every lead and manager of the tenant, in-app.
    pub(super) fn alert_leads(&self, tenant: &str, title: &str, body: &str) {
        let now = self.clock.now();
        let agents = self.store.agents(tenant).unwrap_or_default();
        let items = self.store.write(|tx| -> crate::store::Result<_> {
            let mut items = Vec::new();
            for a in agents
                .iter()
                .filter(|a| a.role != crate::model::AgentRole::Agent)
            {
                items.push(tx.insert_feed(tenant, &a.id, "*", title, body, now)?);
            }
            Ok(items)
        });
        if let Ok(items) = items {
            self.publish(tenant, items);
        }
    }
}
