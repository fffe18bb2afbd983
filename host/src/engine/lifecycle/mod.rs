//! The plugin lifecycle: upload, validate, activate, change mode, roll
//! back, delete; the tenant's plugin set published with one pointer swap;
//! the crash-loop guard ([`guard`]); the shadow report ([`shadow`]).
//!
//! A tenant's set is the built-in plugins overlaid by its slots: a slot
//! names the uploaded version that serves under a plugin name (or keeps the
//! built-in one) and may override its mode. Every change is computed on a
//! copy of the slots, the candidate set is built (compiled outside any lock
//! evaluations take), and only a set that builds is committed and
//! published. An evaluation clones the `Arc` of the set once when it starts
//! and finishes on it, so a swap never blocks or splits an evaluation.

mod guard;
mod plugins;
mod shadow;

use super::{Engine, EngineError, lock};
use crate::codes;
use crate::manifest::{Manifest, Mode};
use crate::pipeline::{PluginRun, PluginSet};
use crate::registry::{self, LoadedPlugin, fixtures};
use crate::store::{ChangeLog, PluginSlot, PluginVersion, ts};
use serde::Serialize;
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

/// How far back (in change ids) a look for other instances' plugin
/// changes goes, for changes that committed after a newer one.
pub const CHANGE_LOOKBACK: i64 = 256;

/// How often a server looks for plugin changes made by another instance
/// on the same database (a backstop where the database tells it at once).
pub const SYNC_PLUGINS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What makes a set what it is: each plugin's version and mode, in order
/// (a stored version never changes), and the disabled ones.
fn signature(set: &PluginSet) -> Vec<String> {
    let mut sig: Vec<String> = set
        .triggers
        .iter()
        .chain(&set.router)
        .chain(&set.notifier)
        .map(|p| format!("{} {:?} {}", p.plugin.id(), p.manifest.mode, p.config_json))
        .collect();
    sig.extend(set.disabled.iter().map(|d| format!("disabled {d}")));
    sig
}

fn with_mode(p: &LoadedPlugin, mode: Option<Mode>) -> Result<LoadedPlugin, EngineError> {
    let Some(mode) = mode else {
        return Ok(p.clone());
    };
    let mut m: Manifest = (*p.manifest).clone();
    m.mode = mode;
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
        self.stored_version(tenant, name, version, false)
    }

    /// A stored version from the in-memory set of loaded versions, else
    /// from the store: with `defer`, registered without reading or loading
    /// its component where an earlier load kept what its first call needs
    /// (see [`crate::runtime::Runtime::register`]), which is what a start
    /// does, so it takes seconds, not minutes, with tens of thousands of
    /// versions stored; else compiled through the artifact cache.
    fn stored_version(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        defer: bool,
    ) -> Result<LoadedPlugin, EngineError> {
        let key = (tenant.to_string(), name.to_string(), version.to_string());
        if let Some(p) = lock(&self.versions).get(&key) {
            return Ok(p.clone());
        }
        let path = PathBuf::from(format!("{tenant}:{name}@{version}/plugin.toml"));
        let stored =
            |e| EngineError::Internal(anyhow::anyhow!("stored plugin {name}@{version}: {e}"));
        let mut registered = None;
        if defer
            && let Some(v) = self
                .store
                .plugin_versions(tenant, name)?
                .into_iter()
                .find(|v| v.version == version)
        {
            registered = registry::register_parts_with(
                &self.runtime,
                &v.manifest,
                &path,
                &v.digest,
                v.size,
                v.source.clone(),
                &self.matrix,
            )
            .map_err(stored)?;
        }
        let p = match registered {
            Some(p) => p,
            None => {
                let v = self
                    .store
                    .plugin_version(tenant, name, version)?
                    .ok_or_else(|| {
                        EngineError::NotFound(
                            codes::PLUGIN_NOT_FOUND,
                            format!("no version {version} of plugin {name}"),
                        )
                    })?;
                registry::load_parts_with(
                    &self.runtime,
                    &v.manifest,
                    &path,
                    &v.wasm,
                    v.source.clone(),
                    &self.matrix,
                )
                .map_err(stored)?
            }
        };
        lock(&self.versions).insert(key, p.clone());
        Ok(p)
    }

    /// The set `slots` make for `tenant`; an error if it cannot serve
    /// (e.g. two active routers).
    fn build_set(&self, tenant: &str, slots: &[PluginSlot]) -> Result<PluginSet, EngineError> {
        PluginSet::new(self.effective(tenant, slots)?)
            .map_err(|e| EngineError::Conflict(codes::PLUGIN_CONFLICT, e))
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
                Some(s) => plugins.push(with_mode(b, s.mode)?),
                None => plugins.push(b.clone()),
            }
        }
        for s in slots {
            if let Some(v) = &s.version {
                let p = self.loaded_version(tenant, &s.name, v)?;
                plugins.push(with_mode(&p, s.mode)?);
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
    pub fn load_tenant_plugins(&self) -> Result<usize, EngineError> {
        // Read first: a change made while the sets load is picked up by
        // the next [`Engine::sync_plugin_sets`].
        let changes = self.store.plugin_changes_after(0)?;
        let newest = changes.last().map_or(0, |c| c.0);
        lock(&self.plugin_changes_done).extend(changes.iter().map(|c| c.0));
        self.plugins_seen.store(newest, Ordering::SeqCst);
        let tenants = self.store.tenants_with_plugins()?;
        // Register (or compile, or read from the artifact cache) every
        // stored version in force on all cores first; building the sets
        // then finds them.
        let mut wanted = Vec::new();
        for t in &tenants {
            for s in self.store.plugin_slots(t)? {
                if let Some(v) = s.version {
                    wanted.push((t.clone(), s.name, v));
                }
            }
        }
        crate::cores::map(&wanted, |(t, name, v)| {
            if let Err(e) = self.stored_version(t, name, v, true) {
                tracing::error!(tenant = %t, plugin = %name, version = %v, error = %e,
                    "a stored plugin version does not load");
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

    /// Publish again the sets of tenants whose plugins another instance on
    /// the same database changed since this one last looked (an upload,
    /// activation, mode change, rollback or removal there); the server
    /// calls it every [`SYNC_PLUGINS_EVERY`]. A set that comes out the same
    /// as the one published (this instance's own change) is left as it
    /// is. Returns the tenants whose set changed.
    pub fn sync_plugin_sets(&self) -> Result<Vec<String>, EngineError> {
        // Ids are taken when a change is written but may commit out of
        // order across instances: the look goes back CHANGE_LOOKBACK ids
        // and skips the changes already taken.
        let mut done = lock(&self.plugin_changes_done);
        let seen = self.plugins_seen.load(Ordering::SeqCst);
        let changes = self
            .store
            .plugin_changes_after(seen.saturating_sub(CHANGE_LOOKBACK))?;
        let fresh: Vec<(i64, String)> = changes
            .into_iter()
            .filter(|(id, _)| !done.contains(id))
            .collect();
        let tenants: std::collections::BTreeSet<&String> = fresh.iter().map(|c| &c.1).collect();
        let mut changed = Vec::new();
        for t in tenants {
            let _one_change = self.lifecycle.lock(t, "");
            let slots = self.store.plugin_slots(t)?;
            let set = match self.build_set(t, &slots) {
                Ok(set) => set,
                Err(e) => {
                    tracing::error!(tenant = %t, error = %e, "a tenant's stored plugin set changed and does not build; its set stays as it was");
                    continue;
                }
            };
            if signature(&set) != signature(&self.plugins(t)) {
                self.publish_set(t, set);
                changed.push(t.clone());
            }
        }
        let newest = fresh.iter().map(|c| c.0).max().unwrap_or(seen).max(seen);
        done.extend(fresh.iter().map(|c| c.0));
        let floor = newest.saturating_sub(CHANGE_LOOKBACK);
        done.retain(|id| *id > floor);
        self.plugins_seen.fetch_max(newest, Ordering::SeqCst);
        Ok(changed)
    }

    /// Change a tenant's slots with `f`, check the set builds, commit the
    /// change with its log line, and publish. Serialised per server; never
    /// blocks evaluations.
    fn change_slots(
        &self,
        tenant: &str,
        change: ChangeLog<'_>,
        f: impl FnOnce(&mut Vec<PluginSlot>) -> Result<(), EngineError>,
    ) -> Result<u64, EngineError> {
        let name = change.name;
        let _one_change = self.lifecycle.lock(tenant, "");
        let mut slots = self.store.plugin_slots(tenant)?;
        f(&mut slots)?;
        let set = self.build_set(tenant, &slots)?;
        let now = self.clock.now();
        self.store.write(|tx| {
            tx.set_plugin_slots(tenant, &slots)?;
            // The guard's count starts again for whatever serves now.
            tx.clear_plugin_health(tenant, name)?;
            tx.plugin_change(tenant, now, &change)
        })?;
        Ok(self.publish_set(tenant, set))
    }

    fn reject(&self, tenant: &str, actor: &str, name: &str, version: Option<&str>, why: &str) {
        let now = self.clock.now();
        let _ = self.store.write(|tx| {
            tx.plugin_change(
                tenant,
                now,
                &ChangeLog {
                    actor,
                    action: "rejected",
                    name,
                    version,
                    detail: &serde_json::json!({"reason": why}),
                },
            )
        });
    }
}
