//! Uploaded plugin versions, each tenant's slots (what serves under a
//! name), and the log of plugin changes.

use super::*;
use crate::manifest::Mode;

/// A stored plugin version.
#[derive(Debug, Clone, Serialize)]
pub struct PluginVersion {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Kind.
    pub kind: String,
    /// The manifest text.
    #[serde(skip)]
    pub manifest: String,
    /// The component.
    #[serde(skip)]
    pub wasm: Vec<u8>,
    /// Size of the component, bytes.
    pub size: usize,
    /// SHA-256 of the component.
    pub digest: String,
    /// What validation said.
    pub validation: serde_json::Value,
    /// Where it came from (`api`, `watcher:PATH`).
    pub source: String,
    /// When.
    pub uploaded_at: String,
    /// Who.
    pub uploaded_by: String,
}
/// Which version of a plugin name serves for a tenant, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginSlot {
    /// Name.
    pub name: String,
    /// The uploaded version in force; `None`: the built-in one.
    pub version: Option<String>,
    /// A mode overriding the manifest's (`active`, `shadow`, `disabled`).
    pub mode: Option<Mode>,
    /// The version in force before (for rollback).
    pub previous: Option<String>,
}
/// One change to a tenant's plugins.
#[derive(Debug, Clone, Serialize)]
pub struct PluginChange {
    /// Id.
    pub id: i64,
    /// When.
    pub at: String,
    /// Who (`api`, `watcher:PATH`, `crash-loop-guard`).
    pub actor: String,
    /// `uploaded`, `activated`, `mode`, `rolled-back`, `deleted`,
    /// `removed`, `rejected`, `auto-disabled`, `auto-rolled-back`.
    pub action: String,
    /// Plugin name.
    pub name: String,
    /// Version.
    pub version: Option<String>,
    /// Details: validation results, the reason.
    pub detail: serde_json::Value,
}
/// A change to a tenant's plugins, for the log.
#[derive(Debug, Clone, Copy)]
pub struct ChangeLog<'a> {
    /// Who (`admin`, a tenant's token, `crash-loop-guard`, ...).
    pub actor: &'a str,
    /// What (`uploaded`, `activated`, `rolled-back`, ...).
    pub action: &'a str,
    /// The plugin.
    pub name: &'a str,
    /// The version, if one.
    pub version: Option<&'a str>,
    /// Details.
    pub detail: &'a serde_json::Value,
}

pub(super) const VERSION_COLUMNS: &str = "SELECT name, version, kind, manifest, wasm, digest, validation, \
     source, uploaded_at, uploaded_by FROM plugin_versions";

pub(super) fn version_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PluginVersion> {
    let wasm: Vec<u8> = r.get(4)?;
    let validation: String = r.get(6)?;
    Ok(PluginVersion {
        name: r.get(0)?,
        version: r.get(1)?,
        kind: r.get(2)?,
        manifest: r.get(3)?,
        size: wasm.len(),
        wasm,
        digest: r.get(5)?,
        validation: serde_json::from_str(&validation).unwrap_or(serde_json::Value::Null),
        source: r.get(7)?,
        uploaded_at: r.get(8)?,
        uploaded_by: r.get(9)?,
    })
}
pub(super) fn slots(conn: &Connection, tenant: &str) -> Result<Vec<PluginSlot>> {
    let mut st = conn.prepare_cached(
        "SELECT name, version, mode, previous FROM plugin_slots WHERE tenant = ?1 ORDER BY name",
    )?;
    let rows = st.query_map([tenant], |r| {
        Ok(PluginSlot {
            name: r.get(0)?,
            version: r.get(1)?,
            mode: r
                .get::<_, Option<String>>(2)?
                .as_deref()
                .and_then(Mode::parse),
            previous: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
impl Plugins for SqliteStore {
    fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>> {
        let conn = self.lock();
        slots(&conn, tenant)
    }

    fn plugin_changes_after(&self, after: i64) -> Result<Vec<(i64, String)>> {
        let conn = self.read();
        let mut st =
            conn.prepare_cached("SELECT id, tenant FROM plugin_changes WHERE id > ?1 ORDER BY id")?;
        let rows = st.query_map([after], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn tenants_with_plugins(&self) -> Result<Vec<String>> {
        let conn = self.lock();
        let mut st =
            conn.prepare_cached("SELECT DISTINCT tenant FROM plugin_slots ORDER BY tenant")?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<PluginVersion>> {
        let conn = self.lock();
        Ok(conn
            .query_row(
                &format!("{VERSION_COLUMNS} WHERE tenant = ?1 AND name = ?2 AND version = ?3"),
                [tenant, name, version],
                version_row,
            )
            .optional()?)
    }

    fn plugin_versions(&self, tenant: &str, name: &str) -> Result<Vec<PluginVersion>> {
        let conn = self.read();
        // The bytes are left out by the query (`length` reads only the
        // record's header), not read and dropped.
        let mut st = conn.prepare_cached(
            "SELECT name, version, kind, manifest, X'', digest, validation, source, \
             uploaded_at, uploaded_by, length(wasm) FROM plugin_versions \
             WHERE tenant = ?1 AND name = ?2 ORDER BY uploaded_at, rowid",
        )?;
        let rows = st.query_map([tenant, name], |r| {
            let mut v = version_row(r)?;
            v.size = usize::try_from(r.get::<_, i64>(10)?).unwrap_or(0);
            Ok(v)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn uploaded_plugin_names(&self, tenant: &str) -> Result<Vec<String>> {
        let conn = self.read();
        let mut st = conn
            .prepare("SELECT DISTINCT name FROM plugin_versions WHERE tenant = ?1 ORDER BY name")?;
        let rows = st.query_map([tenant], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn plugin_changes(&self, tenant: &str, limit: u32) -> Result<Vec<PluginChange>> {
        let conn = self.read();
        let mut st = conn.prepare_cached(
            "SELECT id, at, actor, action, name, version, detail FROM plugin_changes \
             WHERE tenant = ?1 ORDER BY id DESC LIMIT ?2",
        )?;
        let rows = st.query_map(params![tenant, limit], |r| {
            let detail: String = r.get(6)?;
            Ok(PluginChange {
                id: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                name: r.get(4)?,
                version: r.get(5)?,
                detail: serde_json::from_str(&detail).unwrap_or(serde_json::Value::Null),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn decisions_with_plugin(
        &self,
        tenant: &str,
        name: &str,
        since: &str,
        until: &str,
    ) -> Result<Vec<(Option<String>, Vec<serde_json::Value>)>> {
        let conn = self.lock();
        let mut st = conn.prepare_cached(
            "SELECT d.id, json_extract(d.data, '$.tier') FROM decisions d \
             WHERE d.tenant = ?1 AND d.at >= ?2 AND d.at < ?3 AND d.cause LIKE 'event:%' ORDER BY d.id",
        )?;
        let decisions: Vec<(i64, Option<String>)> = st
            .query_map([tenant, since, until], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        let mut audit = conn.prepare_cached(
            "SELECT data FROM audit WHERE key BETWEEN ?1 * 65536 AND ?1 * 65536 + 65535 \
             AND (plugin = ?2 OR plugin LIKE ?2 || '@%') ORDER BY key",
        )?;
        let mut out = Vec::with_capacity(decisions.len());
        for (id, tier) in decisions {
            let mut runs = audit
                .query_map(params![id, name], |r| r.get::<_, String>(0))?
                .map(|t| Ok(serde_json::from_str(&t?)?))
                .collect::<Result<Vec<_>>>()?;
            if tickets::outputs_in_decision(&runs) {
                let data: Option<serde_json::Value> =
                    json_row(&conn, "SELECT data FROM decisions WHERE id = ?1", [id])?;
                tickets::restore_outputs(
                    data.as_ref().unwrap_or(&serde_json::Value::Null),
                    &mut runs,
                );
            }
            out.push((tier, runs));
        }
        Ok(out)
    }
}

impl PluginsTx for SqliteTx<'_> {
    fn plugin_health(&self, tenant: &str, plugin: &str) -> Result<(String, String)> {
        // The writer's transaction holds the whole database.
        Ok(row(
            &self.tx,
            "SELECT recent, last_error FROM plugin_health WHERE tenant = ?1 AND plugin = ?2",
            [tenant, plugin],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or_default())
    }

    fn clear_plugin_health(&self, tenant: &str, name: &str) -> Result<()> {
        exec(
            &self.tx,
            "DELETE FROM plugin_health WHERE tenant = ?1 AND substr(plugin, 1, length(?2) + 1) = ?2 || '@'",
            [tenant, name],
        )?;
        Ok(())
    }

    fn set_plugin_health(
        &self,
        tenant: &str,
        plugin: &str,
        recent: &str,
        last_error: &str,
    ) -> Result<()> {
        exec(
            &self.tx,
            "INSERT INTO plugin_health (tenant, plugin, recent, last_error) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (tenant, plugin) DO UPDATE SET recent = excluded.recent, \
             last_error = excluded.last_error",
            [tenant, plugin, recent, last_error],
        )?;
        Ok(())
    }

    fn insert_plugin_version(
        &self,
        tenant: &str,
        v: &PluginVersion,
        fixtures: &serde_json::Value,
    ) -> Result<bool> {
        let n = exec(
            &self.tx,
            "INSERT OR IGNORE INTO plugin_versions (tenant, name, version, kind, manifest, wasm, \
             digest, fixtures, validation, source, uploaded_at, uploaded_by) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            params![
                tenant,
                v.name,
                v.version,
                v.kind,
                v.manifest,
                v.wasm,
                v.digest,
                fixtures.to_string(),
                v.validation.to_string(),
                v.source,
                v.uploaded_at,
                v.uploaded_by
            ],
        )?;
        Ok(n == 1)
    }

    fn delete_plugin_version(&self, tenant: &str, name: &str, version: &str) -> Result<bool> {
        Ok(exec(
            &self.tx,
            "DELETE FROM plugin_versions WHERE tenant = ?1 AND name = ?2 AND version = ?3",
            [tenant, name, version],
        )? == 1)
    }

    fn version_digest(&self, tenant: &str, name: &str, version: &str) -> Result<Option<String>> {
        Ok(self
            .tx
            .query_row(
                "SELECT digest FROM plugin_versions WHERE tenant = ?1 AND name = ?2 AND version = ?3",
                [tenant, name, version],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn digest_in_use(&self, digest: &str) -> Result<bool> {
        Ok(row(
            &self.tx,
            "SELECT EXISTS (SELECT 1 FROM plugin_versions WHERE digest = ?1)",
            [digest],
            |r| r.get(0),
        )?)
    }

    fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>> {
        slots(&self.tx, tenant)
    }

    fn set_plugin_slots(&self, tenant: &str, new: &[PluginSlot]) -> Result<()> {
        self.tx
            .execute("DELETE FROM plugin_slots WHERE tenant = ?1", [tenant])?;
        for s in new {
            exec(
                &self.tx,
                "INSERT INTO plugin_slots (tenant, name, version, mode, previous) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    tenant,
                    s.name,
                    s.version,
                    s.mode.map(Mode::as_str),
                    s.previous
                ],
            )?;
        }
        Ok(())
    }

    fn plugin_change(&self, tenant: &str, at: DateTime<Utc>, c: &ChangeLog<'_>) -> Result<()> {
        let ChangeLog {
            actor,
            action,
            name,
            version,
            detail,
        } = *c;
        exec(
            &self.tx,
            "INSERT INTO plugin_changes (tenant, at, actor, action, name, version, detail) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                tenant,
                ts(at),
                actor,
                action,
                name,
                version,
                detail.to_string()
            ],
        )?;
        Ok(())
    }
}

/// What the engine reads and records about plugin versions, slots and their change log, outside a transaction.
pub trait Plugins {
    /// A tenant's plugin slots.
    fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>>;

    /// Tenants that have plugin slots.
    fn tenants_with_plugins(&self) -> Result<Vec<String>>;

    /// The changes after change `after`, oldest first, as (id, tenant):
    /// every change to a tenant's slots is logged in the transaction that
    /// makes it, so this is what another instance on the same database
    /// did since this one last looked.
    fn plugin_changes_after(&self, after: i64) -> Result<Vec<(i64, String)>>;

    /// One stored version, with its bytes.
    fn plugin_version(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> Result<Option<PluginVersion>>;

    /// A plugin's stored versions, oldest first, without their bytes.
    fn plugin_versions(&self, tenant: &str, name: &str) -> Result<Vec<PluginVersion>>;

    /// The names of the plugins a tenant has uploaded versions of.
    fn uploaded_plugin_names(&self, tenant: &str) -> Result<Vec<String>>;

    /// The change log of a tenant's plugins, newest first.
    fn plugin_changes(&self, tenant: &str, limit: u32) -> Result<Vec<PluginChange>>;

    /// Each decision of a tenant between `since` and `until` (RFC 3339):
    /// its composed active tier and its audit entries of plugin `name`.
    fn decisions_with_plugin(
        &self,
        tenant: &str,
        name: &str,
        since: &str,
        until: &str,
    ) -> Result<Vec<(Option<String>, Vec<serde_json::Value>)>>;
}

/// What a transaction ([`Store::write`]) reads and writes of plugin versions, slots and their change log.
pub trait PluginsTx {
    /// Store a plugin version; `false` if that version exists.
    fn insert_plugin_version(
        &self,
        tenant: &str,
        v: &PluginVersion,
        fixtures: &serde_json::Value,
    ) -> Result<bool>;

    /// Delete a stored version.
    fn delete_plugin_version(&self, tenant: &str, name: &str, version: &str) -> Result<bool>;

    /// The digest of a stored version.
    fn version_digest(&self, tenant: &str, name: &str, version: &str) -> Result<Option<String>>;

    /// Whether any stored version of any tenant has `digest`.
    fn digest_in_use(&self, digest: &str) -> Result<bool>;

    /// A tenant's plugin slots.
    fn plugin_slots(&self, tenant: &str) -> Result<Vec<PluginSlot>>;

    /// Replace a tenant's plugin slots with `new` (the whole set).
    fn set_plugin_slots(&self, tenant: &str, new: &[PluginSlot]) -> Result<()>;

    /// Log a change to a tenant's plugins.
    fn plugin_change(&self, tenant: &str, at: DateTime<Utc>, c: &ChangeLog<'_>) -> Result<()>;

    /// A plugin version's crash-loop window (outcomes of its last calls,
    /// `1` failed, oldest first) and last error, held until the
    /// transaction ends so instances update it one at a time; empty if
    /// none yet.
    fn plugin_health(&self, tenant: &str, plugin: &str) -> Result<(String, String)>;

    /// Forget the crash-loop windows of every version of plugin `name`.
    fn clear_plugin_health(&self, tenant: &str, name: &str) -> Result<()>;

    /// Replace a plugin version's crash-loop window and last error.
    fn set_plugin_health(
        &self,
        tenant: &str,
        plugin: &str,
        recent: &str,
        last_error: &str,
    ) -> Result<()>;
}
