//! The shadow report: what a shadow plugin would have changed beside the
//! active set, over a period.

use super::*;

impl Engine {
    /// Shadow against active for plugin `name` over decisions in
    /// `[since, until)`: how often the shadow plugin would have escalated
    /// and whether the active set did.
    pub fn shadow_report(
        &self,
        tenant: &str,
        name: &str,
        since: &str,
        until: &str,
    ) -> Result<serde_json::Value, EngineError> {
        let rows = self
            .store
            .decisions_with_plugin(tenant, name, since, until)?;
        let (mut runs, mut both, mut shadow_only, mut active_only, mut neither, mut errors) =
            (0, 0, 0, 0, 0, 0);
        let mut examples = Vec::new();
        for (tier, audit) in rows {
            let Some(run) = audit.iter().find(|a| a["mode"] == "shadow") else {
                continue;
            };
            runs += 1;
            if run["error"].is_string() {
                errors += 1;
                continue;
            }
            let would = run["output"]["signals"]
                .as_array()
                .is_some_and(|s| s.iter().any(|x| x["action"] == "escalate"));
            let did = tier.is_some();
            match (would, did) {
                (true, true) => both += 1,
                (true, false) => {
                    shadow_only += 1;
                    if examples.len() < 10 {
                        examples.push(run["output"]["signals"].clone());
                    }
                }
                (false, true) => active_only += 1,
                (false, false) => neither += 1,
            }
        }
        let agree = both + neither;
        Ok(serde_json::json!({
            "plugin": name, "since": since, "until": until,
            "shadow_runs": runs,
            "shadow_would_escalate": both + shadow_only,
            "active_escalated": both + active_only,
            "both": both, "shadow_only": shadow_only, "active_only": active_only,
            "neither": neither, "shadow_errors": errors,
            "agreement": if runs - errors > 0 { agree as f64 / (runs - errors) as f64 } else { 1.0 },
            "shadow_only_examples": examples,
        }))
    }
}
