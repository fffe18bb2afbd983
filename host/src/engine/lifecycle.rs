//! The plugin lifecycle: upload, validate, activate, change mode, roll
//! back, delete; the tenant's plugin set published with one pointer swap;
//! the crash-loop guard; the shadow report.
//!
//! A tenant's set is the built-in plugins overlaid by its slots: a slot
//! names the uploaded version that serves under a plugin name (or keeps the
//! built-in one) and may override its mode. Every change is computed on a
//! copy of the slots, the candidate set is built (compiled outside any lock
//! evaluations take), and only a set that builds is committed and
//! published. An evaluation clones the `Arc` of the set once when it starts
//! and finishes on it, so a swap never blocks or splits an evaluation.

use super::{Engine, EngineError, lock};
use crate::manifest::{Manifest, Mode};
use crate::pipeline::{PluginRun, PluginSet};
use crate::registry::{self, LoadedPlugin, fixtures};
use crate::store::{PluginSlot, PluginVersion, ts};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A tenant's plugin set as evaluations see it.
#[derive(Debug)]
pub struct TenantSet {
    /// The plugins.
    pub set: PluginSet,
    /// Increases with every published set (server-wide).
    pub generation: u64,
}

impl std::ops::Deref for TenantSet {
    type Target = PluginSet;
    fn deref(&self) -> &PluginSet {
        &self.set
    }
}

/// An uploaded plugin version.
#[derive(Debug, Clone)]
pub struct Upload {
    /// `plugin.toml`.
    pub manifest: String,
    /// The component.
    pub wasm: Vec<u8>,
    /// Its fixtures.
    pub fixtures: Vec<fixtures::Fixture>,
    /// Where it came from (`api`, `watcher:PATH`).
    pub source: String,
    /// The tenant's quota, for uploads through the API (the operator's
    /// own plugin directory has none).
    pub quota: Option<PluginQuota>,
}

/// How many plugins a tenant may upload, and how many versions of each
/// are kept.
#[derive(Debug, Clone, Copy)]
pub struct PluginQuota {
    /// Distinct uploaded plugin names.
    pub plugins: usize,
    /// Versions kept per plugin; older ones that do not serve are pruned.
    pub versions: usize,
}

/// What an upload did.
#[derive(Debug, Clone, Serialize)]
pub struct Installed {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// Whether it serves now.
    pub active: bool,
    /// Whether this exact version was already stored (nothing changed but
    /// activation).
    pub unchanged: bool,
    /// Fixture results.
    pub fixtures: Vec<fixtures::CaseResult>,
    /// Validation and compilation time, µs.
    pub validate_micros: u64,
    /// Upload to live, µs.
    pub total_micros: u64,
}

/// Calls in the crash-loop window.
pub const GUARD_WINDOW: usize = 20;
/// Failures in the window that trip the guard (most of the calls).
pub const GUARD_FAILURES: usize = 11;

/// Recent outcomes of one plugin version.
#[derive(Debug, Default)]
pub(super) struct Health {
    recent: VecDeque<bool>,
    last_error: String,
}

fn invalid(e: impl std::fmt::Display) -> EngineError {
    EngineError::Invalid(e.to_string())
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Active => "active",
        Mode::Shadow => "shadow",
        Mode::Disabled => "disabled",
    }
}

fn parse_mode(s: &str) -> Result<Mode, EngineError> {
    match s {
        "active" => Ok(Mode::Active),
        "shadow" => Ok(Mode::Shadow),
        "disabled" => Ok(Mode::Disabled),
        _ => Err(invalid(format!(
            "mode {s:?}: expected active, shadow or disabled"
        ))),
    }
}

fn with_mode(p: &LoadedPlugin, mode: Option<&str>) -> Result<LoadedPlugin, EngineError> {
    let Some(mode) = mode else {
        return Ok(p.clone());
    };
    let mut m: Manifest = (*p.manifest).clone();
    m.mode = parse_mode(mode)?;
    Ok(LoadedPlugin {
        manifest: Arc::new(m),
        ..p.clone()
    })
}

impl Engine {
    /// The built-in plugins, as loaded at start.
    pub fn builtins(&self) -> &[LoadedPlugin] {
        &self.builtins
    }

    /// A stored version, compiled (from the in-memory set of loaded
    /// versions, else from the store through the artifact cache).
    fn loaded_version(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<LoadedPlugin, EngineError> {
        let key = (tenant.to_string(), name.to_string(), version.to_string());
        if let Some(p) = lock(&self.versions).get(&key) {
            return Ok(p.clone());
        }
        let v = self
            .store
            .plugin_version(tenant, name, version)?
            .ok_or_else(|| {
                EngineError::NotFound(format!("no version {version} of plugin {name}"))
            })?;
        let p = registry::load_parts(
            &self.runtime,
            &v.manifest,
            &PathBuf::from(format!("{tenant}:{name}@{version}/plugin.toml")),
            &v.wasm,
            v.source.clone(),
        )
        .map_err(|e| EngineError::Internal(anyhow::anyhow!("stored plugin {name}@{version}: {e}")))?
        .with_matrix(&self.matrix);
        lock(&self.versions).insert(key, p.clone());
        Ok(p)
    }

    /// The set `slots` make for `tenant`; an error if it cannot serve
    /// (e.g. two active routers).
    fn build_set(&self, tenant: &str, slots: &[PluginSlot]) -> Result<PluginSet, EngineError> {
        PluginSet::new(self.effective(tenant, slots)?).map_err(EngineError::Conflict)
    }

    /// Every plugin `slots` make for `tenant`, disabled ones included, with
    /// their effective modes.
    fn effective(
        &self,
        tenant: &str,
        slots: &[PluginSlot],
    ) -> Result<Vec<LoadedPlugin>, EngineError> {
        let mut plugins = Vec::new();
        for b in &self.builtins {
            match slots.iter().find(|s| s.name == b.manifest.name) {
                Some(s) if s.version.is_some() => {}
                Some(s) => plugins.push(with_mode(b, s.mode.as_deref())?),
                None => plugins.push(b.clone()),
            }
        }
        for s in slots {
            if let Some(v) = &s.version {
                let p = self.loaded_version(tenant, &s.name, v)?;
                plugins.push(with_mode(&p, s.mode.as_deref())?);
            }
        }
        Ok(plugins)
    }

    /// Publish `set` for `tenant`: one pointer swap.
    fn publish_set(&self, tenant: &str, set: PluginSet) -> u64 {
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let new = Arc::new(TenantSet { set, generation });
        self.tenant_plugins
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_string(), new);
        generation
    }

    /// Load every tenant's plugin set from the store (at start).
    pub fn load_tenant_plugins(&self) -> anyhow::Result<usize> {
        let tenants = self.store.tenants_with_plugins()?;
        // Compile (or read from the artifact cache) every stored version in
        // force on all cores first; building the sets then finds them loaded.
        let mut wanted = Vec::new();
        for t in &tenants {
            for s in self.store.plugin_slots(t)? {
                if let Some(v) = s.version {
                    wanted.push((t.clone(), s.name, v));
                }
            }
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let next = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads.min(wanted.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((t, name, v)) = wanted.get(i) else {
                            return;
                        };
                        if let Err(e) = self.loaded_version(t, name, v) {
                            tracing::error!(tenant = %t, plugin = %name, version = %v, error = %e,
                                "a stored plugin version does not load");
                        }
                    }
                });
            }
        });
        for t in &tenants {
            let slots = self.store.plugin_slots(t)?;
            match self.build_set(t, &slots) {
                Ok(set) => {
                    self.publish_set(t, set);
                }
                Err(e) => tracing::error!(tenant = %t, error = %e,
                    "the stored plugin set does not build; the tenant runs the built-in set"),
            }
        }
        Ok(tenants.len())
    }

    /// Change a tenant's slots with `f`, check the set builds, commit the
    /// change with its log line, and publish. Serialised per server; never
    /// blocks evaluations.
    #[allow(clippy::too_many_arguments, reason = "the change and its log line")]
    fn change_slots(
        &self,
        tenant: &str,
        actor: &str,
        action: &str,
        name: &str,
        version: Option<&str>,
        detail: serde_json::Value,
        f: impl FnOnce(&mut Vec<PluginSlot>) -> Result<(), EngineError>,
    ) -> Result<u64, EngineError> {
        let _one_change = self.lifecycle.lock(tenant, "");
        let mut slots = self.store.plugin_slots(tenant)?;
        f(&mut slots)?;
        let set = self.build_set(tenant, &slots)?;
        let now = self.clock.now();
        self.store.write(|tx| {
            tx.set_plugin_slots(tenant, &slots)?;
            tx.plugin_change(tenant, now, actor, action, name, version, &detail)
        })?;
        lock(&self.health).retain(|(t, id), _| t != tenant || !id.starts_with(&format!("{name}@")));
        Ok(self.publish_set(tenant, set))
    }

    fn reject(&self, tenant: &str, actor: &str, name: &str, version: Option<&str>, why: &str) {
        let now = self.clock.now();
        let _ = self.store.write(|tx| {
            tx.plugin_change(
                tenant,
                now,
                actor,
                "rejected",
                name,
                version,
                &serde_json::json!({"reason": why}),
            )
        });
    }

    /// Validate and store a plugin version; with `activate`, make it serve.
    /// A version that fails validation is refused (and logged) and whatever
    /// served keeps serving.
    pub fn upload(
        &self,
        tenant: &str,
        up: Upload,
        actor: &str,
        activate: bool,
    ) -> Result<Installed, EngineError> {
        let started = std::time::Instant::now();
        let path = PathBuf::from(format!("{tenant}:upload/plugin.toml"));
        let manifest = match Manifest::parse(&up.manifest, &path) {
            Ok(m) => m,
            Err(e) => {
                // Log the refusal under whatever name the text gives.
                let t: toml::Table = toml::from_str(&up.manifest).unwrap_or_default();
                let field = |k: &str| t.get(k).and_then(|v| v.as_str()).map(String::from);
                self.reject(
                    tenant,
                    actor,
                    &field("name").unwrap_or_else(|| "?".into()),
                    field("version").as_deref(),
                    &e.to_string(),
                );
                return Err(invalid(e));
            }
        };
        let (name, version) = (manifest.name.clone(), manifest.version.clone());
        let fail = |why: String| {
            self.reject(tenant, actor, &name, Some(&version), &why);
            EngineError::Invalid(why)
        };
        // One upload of a tenant at a time: its quota is counted and its
        // old versions pruned with no other upload in between.
        let _one_upload = self.lifecycle.lock(tenant, "upload");
        if let Some(q) = up.quota {
            let names = self.store.uploaded_plugin_names(tenant)?;
            if !names.contains(&name) && names.len() >= q.plugins {
                return Err(fail(format!(
                    "at most {} plugins per tenant (the operator's [limits] plugins-per-tenant); \
                     delete one first",
                    q.plugins
                )));
            }
        }
        let digest = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(&up.wasm))
        };
        let existing = self.store.plugin_version(tenant, &name, &version)?;
        if let Some(e) = &existing
            && e.digest != digest
        {
            return Err(EngineError::Conflict(format!(
                "{name}@{version} exists with other bytes; give the new build a new version"
            )));
        }
        let (fixture_results, validate_micros) = if existing.is_none() {
            let p = registry::load_parts(
                &self.runtime,
                &up.manifest,
                &path,
                &up.wasm,
                up.source.clone(),
            )
            .map_err(|e| fail(format!("{name}@{version} refused: {e}")))?
            .with_matrix(&self.matrix);
            // Fixtures run as the uploading tenant, whatever their tickets
            // say: validation spends that tenant's share of plugin calls.
            let mut cases = up.fixtures.clone();
            for f in &mut cases {
                f.ticket.tenant = tenant.to_string();
            }
            let results = fixtures::run(&self.runtime, &p, &cases);
            let failed: Vec<String> = results
                .iter()
                .filter(|r| !r.passed)
                .map(|r| format!("{}: {}", r.name, r.detail))
                .collect();
            if !failed.is_empty() {
                return Err(fail(format!(
                    "{name}@{version} failed {} of {} fixture(s): {}",
                    failed.len(),
                    results.len(),
                    failed.join("; ")
                )));
            }
            let micros = started.elapsed().as_micros() as u64;
            let v = PluginVersion {
                name: name.clone(),
                version: version.clone(),
                kind: manifest.kind.to_string(),
                manifest: up.manifest.clone(),
                size: up.wasm.len(),
                wasm: up.wasm,
                digest,
                validation: serde_json::json!({"passed": true, "fixtures": results, "validate_us": micros}),
                source: up.source.clone(),
                uploaded_at: ts(self.clock.now()),
                uploaded_by: actor.to_string(),
            };
            let now = self.clock.now();
            self.store.write(|tx| {
                tx.insert_plugin_version(
                    tenant,
                    &v,
                    &serde_json::to_value(&up.fixtures).unwrap_or_default(),
                )?;
                tx.plugin_change(
                    tenant,
                    now,
                    actor,
                    "uploaded",
                    &name,
                    Some(&version),
                    &v.validation,
                )
            })?;
            lock(&self.versions).insert((tenant.into(), name.clone(), version.clone()), p);
            (results, micros)
        } else {
            (Vec::new(), 0)
        };
        if activate {
            self.activate(tenant, &name, &version, actor)?;
        }
        if let Some(q) = up.quota {
            // Older versions beyond the quota go, from memory and from
            // the artifact cache.
            let pruned = self.prune_versions(tenant, &name, q.versions, "quota")?;
            if !pruned.is_empty() {
                tracing::info!(%tenant, plugin = %name, ?pruned, "pruned old versions");
            }
        }
        Ok(Installed {
            kind: manifest.kind.to_string(),
            name,
            version,
            active: activate,
            unchanged: existing.is_some(),
            fixtures: fixture_results,
            validate_micros,
            total_micros: started.elapsed().as_micros() as u64,
        })
    }

    /// Make a stored version serve under its name.
    pub fn activate(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<u64, EngineError> {
        if self.store.plugin_version(tenant, name, version)?.is_none() {
            return Err(EngineError::NotFound(format!(
                "no version {version} of plugin {name}"
            )));
        }
        // Rolling back past the first upload of a built-in name brings the
        // built-in back; a new name has nothing before it.
        let builtin = self
            .builtins
            .iter()
            .any(|b| b.manifest.name == name)
            .then(|| "builtin".to_string());
        self.change_slots(
            tenant,
            actor,
            "activated",
            name,
            Some(version),
            serde_json::json!({}),
            |slots| {
                match slots.iter_mut().find(|s| s.name == name) {
                    Some(s) if s.version.as_deref() == Some(version) => {}
                    Some(s) => {
                        s.previous = s.version.take().or(builtin);
                        s.version = Some(version.to_string());
                    }
                    None => slots.push(PluginSlot {
                        name: name.to_string(),
                        version: Some(version.to_string()),
                        mode: None,
                        previous: builtin,
                    }),
                }
                Ok(())
            },
        )
    }

    /// Set the mode of a plugin name (uploaded or built-in).
    pub fn set_plugin_mode(
        &self,
        tenant: &str,
        name: &str,
        mode: &str,
        actor: &str,
    ) -> Result<u64, EngineError> {
        self.set_mode_as(
            tenant,
            name,
            mode,
            actor,
            "mode",
            serde_json::json!({"mode": mode}),
        )
    }

    fn set_mode_as(
        &self,
        tenant: &str,
        name: &str,
        mode: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, EngineError> {
        parse_mode(mode)?;
        self.known_name(tenant, name)?;
        self.change_slots(tenant, actor, action, name, None, detail, |slots| {
            match slots.iter_mut().find(|s| s.name == name) {
                Some(s) => s.mode = Some(mode.to_string()),
                None => slots.push(PluginSlot {
                    name: name.to_string(),
                    version: None,
                    mode: Some(mode.to_string()),
                    previous: None,
                }),
            }
            Ok(())
        })
    }

    fn known_name(&self, tenant: &str, name: &str) -> Result<(), EngineError> {
        let builtin = self.builtins.iter().any(|b| b.manifest.name == name);
        let slot = self
            .store
            .plugin_slots(tenant)?
            .iter()
            .any(|s| s.name == name);
        if builtin || slot {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!("no plugin {name}")))
        }
    }

    /// Put the previous version of a plugin back.
    pub fn rollback(&self, tenant: &str, name: &str, actor: &str) -> Result<u64, EngineError> {
        self.rollback_as(tenant, name, actor, "rolled-back", serde_json::json!({}))
    }

    fn rollback_as(
        &self,
        tenant: &str,
        name: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, EngineError> {
        let slots = self.store.plugin_slots(tenant)?;
        let s = slots.iter().find(|s| s.name == name).ok_or_else(|| {
            EngineError::NotFound(format!("plugin {name} has no version to roll back from"))
        })?;
        let previous = s.previous.clone().ok_or_else(|| {
            EngineError::Conflict(format!("plugin {name} has no previous version"))
        })?;
        let to = (previous != "builtin").then_some(previous.clone());
        // The guard never rolls "forward" onto the version it just took
        // down: after an automatic rollback there is nothing to go back to.
        let automatic = action == "auto-rolled-back";
        self.change_slots(
            tenant,
            actor,
            action,
            name,
            Some(&previous),
            detail,
            |slots| {
                if let Some(s) = slots.iter_mut().find(|s| s.name == name) {
                    let failed = s.version.take();
                    s.previous = if automatic { None } else { failed };
                    s.version = to;
                }
                Ok(())
            },
        )
    }

    /// Delete a stored version that does not serve.
    pub fn delete_version(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        actor: &str,
    ) -> Result<(), EngineError> {
        let _one_change = self.lifecycle.lock(tenant, "");
        let slots = self.store.plugin_slots(tenant)?;
        if slots
            .iter()
            .any(|s| s.name == name && s.version.as_deref() == Some(version))
        {
            return Err(EngineError::Conflict(format!(
                "{name}@{version} serves now; activate another version or remove the plugin first"
            )));
        }
        let now = self.clock.now();
        let mut unused = None;
        let deleted = self.store.write(|tx| {
            let digest = tx.version_digest(tenant, name, version)?;
            let d = tx.delete_plugin_version(tenant, name, version)?;
            if let Some(digest) = digest
                && !tx.digest_in_use(&digest)?
            {
                unused = Some(digest);
            }
            if d {
                tx.plugin_change(
                    tenant,
                    now,
                    actor,
                    "deleted",
                    name,
                    Some(version),
                    &serde_json::json!({}),
                )?;
            }
            Ok(d)
        })?;
        lock(&self.versions).remove(&(tenant.into(), name.into(), version.into()));
        if let Some(digest) = unused {
            self.runtime.forget_artifact(&digest);
        }
        if deleted {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!(
                "no version {version} of plugin {name}"
            )))
        }
    }

    /// Keep at most `keep` versions of plugin `name`: delete the oldest of
    /// the others, never the one in force nor the one a rollback returns
    /// to. Returns the versions deleted.
    pub fn prune_versions(
        &self,
        tenant: &str,
        name: &str,
        keep: usize,
        actor: &str,
    ) -> Result<Vec<String>, EngineError> {
        let slots = self.store.plugin_slots(tenant)?;
        let slot = slots.iter().find(|s| s.name == name);
        let pinned = |v: &str| {
            slot.is_some_and(|s| {
                s.version.as_deref() == Some(v) || s.previous.as_deref() == Some(v)
            })
        };
        let versions = self.store.plugin_versions(tenant, name)?;
        let mut excess = versions.len().saturating_sub(keep);
        let mut pruned = Vec::new();
        for v in versions {
            if excess == 0 {
                break;
            }
            if pinned(&v.version) {
                continue;
            }
            match self.delete_version(tenant, name, &v.version, actor) {
                Ok(()) => {
                    pruned.push(v.version);
                    excess -= 1;
                }
                // Activated since the slots were read: it stays.
                Err(EngineError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(pruned)
    }

    /// Remove a tenant's override of a plugin name: an uploaded plugin
    /// stops serving; a built-in one serves as shipped.
    pub fn remove_plugin(&self, tenant: &str, name: &str, actor: &str) -> Result<u64, EngineError> {
        self.known_name(tenant, name)?;
        self.change_slots(
            tenant,
            actor,
            "removed",
            name,
            None,
            serde_json::json!({}),
            |slots| {
                slots.retain(|s| s.name != name);
                Ok(())
            },
        )
    }

    /// The tenant's plugins as served now.
    pub fn plugin_list(&self, tenant: &str) -> serde_json::Value {
        let set = self.plugins(tenant);
        let slots = self.store.plugin_slots(tenant).unwrap_or_default();
        let all = self.effective(tenant, &slots).unwrap_or_default();
        let list: Vec<_> = all
            .iter()
            .map(|p| {
                let slot = slots.iter().find(|s| s.name == p.manifest.name);
                serde_json::json!({
                    "name": p.manifest.name, "version": p.manifest.version,
                    "kind": p.manifest.kind, "mode": mode_name(p.manifest.mode),
                    "description": p.manifest.description, "source": p.source,
                    "digest": p.plugin.digest(),
                    "origin": if slot.is_some_and(|s| s.version.is_some()) { "uploaded" } else { "builtin" },
                    "previous": slot.and_then(|s| s.previous.clone()),
                })
            })
            .collect();
        serde_json::json!({"generation": set.generation, "plugins": list})
    }

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

    /// The crash-loop guard: count each plugin version's outcomes; one that
    /// failed most of its last calls is rolled back (if it has a previous
    /// version) or disabled, the tenant's leads are alerted in-app, and the
    /// change is logged.
    pub(super) fn observe(&self, tenant: &str, runs: &[PluginRun]) {
        let mut tripped = Vec::new();
        {
            let mut health = lock(&self.health);
            // Only what a tenant's own plugin did counts: the vendor's
            // built-ins are never disabled, and a call that never ran (its
            // share was full) or that the host failed is not the plugin's
            // fault.
            let counted = runs.iter().filter(|r| {
                !r.vendor
                    && r.error_kind
                        .is_none_or(crate::runtime::PluginError::is_plugin_fault)
            });
            for r in counted {
                let h = health
                    .entry((tenant.to_string(), r.plugin.clone()))
                    .or_default();
                h.recent.push_back(r.error.is_some());
                if let Some(e) = &r.error {
                    h.last_error = e.clone();
                }
                if h.recent.len() > GUARD_WINDOW {
                    h.recent.pop_front();
                }
                let failures = h.recent.iter().filter(|f| **f).count();
                if h.recent.len() == GUARD_WINDOW && failures >= GUARD_FAILURES {
                    tripped.push((r.plugin.clone(), failures, h.last_error.clone()));
                    h.recent.clear();
                }
            }
        }
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
                    "disabled",
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
    fn alert_leads(&self, tenant: &str, title: &str, body: &str) {
        let now = self.clock.now();
        let agents = self.store.agents(tenant).unwrap_or_default();
        let items = self.store.write(|tx| {
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
