//! Changing a tenant's plugins: upload (validated, fixtures run, within
//! quota), activate, mode, rollback, delete, prune, and the list.

use super::*;

impl Engine {
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
                return Err(EngineError::Invalid(codes::PLUGIN_REFUSED, e.to_string()));
            }
        };
        let (name, version) = (manifest.name.clone(), manifest.version.clone());
        let fail = |code: &'static str, why: String| {
            self.reject(tenant, actor, &name, Some(&version), &why);
            EngineError::Invalid(code, why)
        };
        // One upload of a tenant at a time: its quota is counted and its
        // old versions pruned with no other upload in between.
        let _one_upload = self.lifecycle.lock(tenant, "upload");
        if let Some(q) = up.quota {
            let names = self.store.uploaded_plugin_names(tenant)?;
            if !names.contains(&name) && names.len() >= q.plugins {
                return Err(fail(
                    codes::QUOTA_EXCEEDED,
                    format!(
                        "at most {} plugins per tenant (the operator's [limits] plugins-per-tenant); \
                     delete one first",
                        q.plugins
                    ),
                ));
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
            return Err(EngineError::Conflict(
                codes::PLUGIN_CONFLICT,
                format!(
                    "{name}@{version} exists with other bytes; give the new build a new version"
                ),
            ));
        }
        let (fixture_results, validate_micros) = if existing.is_none() {
            let p = registry::load_parts_with(
                &self.runtime,
                &up.manifest,
                &path,
                &up.wasm,
                up.source.clone(),
                &self.matrix,
            )
            .map_err(|e| {
                fail(
                    codes::PLUGIN_REFUSED,
                    format!("{name}@{version} refused: {e}"),
                )
            })?;
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
                return Err(fail(
                    codes::PLUGIN_REFUSED,
                    format!(
                        "{name}@{version} failed {} of {} fixture(s): {}",
                        failed.len(),
                        results.len(),
                        failed.join("; ")
                    ),
                ));
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
                    &ChangeLog {
                        actor,
                        action: "uploaded",
                        name: &name,
                        version: Some(&version),
                        detail: &v.validation,
                    },
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
            return Err(EngineError::NotFound(
                codes::PLUGIN_NOT_FOUND,
                format!("no version {version} of plugin {name}"),
            ));
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
            ChangeLog {
                actor,
                action: "activated",
                name,
                version: Some(version),
                detail: &serde_json::json!({}),
            },
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
        mode: Mode,
        actor: &str,
    ) -> Result<u64, EngineError> {
        self.set_mode_as(
            tenant,
            name,
            mode,
            actor,
            "mode",
            serde_json::json!({"mode": mode.as_str()}),
        )
    }

    pub(super) fn set_mode_as(
        &self,
        tenant: &str,
        name: &str,
        mode: Mode,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, EngineError> {
        self.known_name(tenant, name)?;
        self.change_slots(
            tenant,
            ChangeLog {
                actor,
                action,
                name,
                version: None,
                detail: &detail,
            },
            |slots| {
                match slots.iter_mut().find(|s| s.name == name) {
                    Some(s) => s.mode = Some(mode),
                    None => slots.push(PluginSlot {
                        name: name.to_string(),
                        version: None,
                        mode: Some(mode),
                        previous: None,
                    }),
                }
                Ok(())
            },
        )
    }

    pub(super) fn known_name(&self, tenant: &str, name: &str) -> Result<(), EngineError> {
        let builtin = self.builtins.iter().any(|b| b.manifest.name == name);
        let slot = self
            .store
            .plugin_slots(tenant)?
            .iter()
            .any(|s| s.name == name);
        if builtin || slot {
            Ok(())
        } else {
            Err(EngineError::NotFound(
                codes::PLUGIN_NOT_FOUND,
                format!("no plugin {name}"),
            ))
        }
    }

    /// Put the previous version of a plugin back.
    pub fn rollback(&self, tenant: &str, name: &str, actor: &str) -> Result<u64, EngineError> {
        self.rollback_as(tenant, name, actor, "rolled-back", serde_json::json!({}))
    }

    pub(super) fn rollback_as(
        &self,
        tenant: &str,
        name: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<u64, EngineError> {
        let slots = self.store.plugin_slots(tenant)?;
        let s = slots.iter().find(|s| s.name == name).ok_or_else(|| {
            EngineError::NotFound(
                codes::PLUGIN_NOT_FOUND,
                format!("plugin {name} has no version to roll back from"),
            )
        })?;
        let previous = s.previous.clone().ok_or_else(|| {
            EngineError::Conflict(
                codes::PLUGIN_CONFLICT,
                format!("plugin {name} has no previous version"),
            )
        })?;
        let to = (previous != "builtin").then_some(previous.clone());
        // The guard never rolls "forward" onto the version it just took
        // down: after an automatic rollback there is nothing to go back to.
        let automatic = action == "auto-rolled-back";
        self.change_slots(
            tenant,
            ChangeLog {
                actor,
                action,
                name,
                version: Some(&previous),
                detail: &detail,
            },
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
            return Err(EngineError::Conflict(
                codes::PLUGIN_CONFLICT,
                format!(
                    "{name}@{version} serves now; activate another version or remove the plugin first"
                ),
            ));
        }
        let now = self.clock.now();
        let mut unused = None;
        let deleted = self.store.write(|tx| -> crate::store::Result<_> {
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
                    &ChangeLog {
                        actor,
                        action: "deleted",
                        name,
                        version: Some(version),
                        detail: &serde_json::json!({}),
                    },
                )?;
            }
            Ok(d)
        })?;
        let removed = lock(&self.versions).remove(&(tenant.into(), name.into(), version.into()));
        if let Some(digest) = unused {
            self.runtime.forget_artifact(&digest);
            // Its pre-initialised code too (made from these bytes alone).
            if let Some(p) = removed
                && p.plugin.configured_ahead()
            {
                self.runtime.forget_artifact(p.plugin.code_digest());
            }
        }
        if deleted {
            Ok(())
        } else {
            Err(EngineError::NotFound(
                codes::PLUGIN_NOT_FOUND,
                format!("no version {version} of plugin {name}"),
            ))
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
                Err(EngineError::Conflict(..)) => {}
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
            ChangeLog {
                actor,
                action: "removed",
                name,
                version: None,
                detail: &serde_json::json!({}),
            },
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
                    "kind": p.manifest.kind, "mode": p.manifest.mode.as_str(),
                    "description": p.manifest.description, "source": p.source,
                    "digest": p.plugin.digest(),
                    "origin": if slot.is_some_and(|s| s.version.is_some()) { "uploaded" } else { "builtin" },
                    "previous": slot.and_then(|s| s.previous.clone()),
                })
            })
            .collect();
        serde_json::json!({"generation": set.generation, "plugins": list})
    }
}
