//! Tenants, their tokens and channel settings, and their agents.

use super::*;

/// A tenant.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// When it was created.
    pub created_at: String,
}
pub(super) fn agents_of(conn: &Connection, tenant: &str) -> Result<Vec<Agent>> {
    let mut st = conn.prepare_cached("SELECT data FROM agents WHERE tenant = ?1 ORDER BY id")?;
    let rows = st.query_map([tenant], |r| r.get::<_, String>(0))?;
    rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
}
pub(super) fn agent_of(conn: &Connection, tenant: &str, id: &str) -> Result<Option<Agent>> {
    json_row(
        conn,
        "SELECT data FROM agents WHERE tenant = ?1 AND id = ?2",
        [tenant, id],
    )
}
impl Tenants for SqliteStore {
    fn tenant_by_token(&self, hash: &str) -> Result<Option<Tenant>> {
        Ok(self
            .read()
            .query_row(
                "SELECT id, name, created_at FROM tenants WHERE token_hash = ?1 \
                 AND revoked_at IS NULL",
                [hash],
                |r| {
                    Ok(Tenant {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()?)
    }

    fn tenants(&self) -> Result<Vec<Tenant>> {
        let conn = self.read();
        let mut st = conn.prepare_cached("SELECT id, name, created_at FROM tenants ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(Tenant {
                id: r.get(0)?,
                name: r.get(1)?,
                created_at: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn settings(&self, tenant: &str) -> Result<serde_json::Value> {
        let text: Option<String> = self
            .read()
            .query_row(
                "SELECT settings FROM tenants WHERE id = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        Ok(serde_json::from_str(text.as_deref().unwrap_or("{}"))?)
    }

    fn settings_if_changed(
        &self,
        tenant: &str,
        known: Option<i64>,
    ) -> Result<Option<(i64, Option<serde_json::Value>)>> {
        let row: Option<(i64, Option<String>)> = self
            .read()
            .prepare_cached(
                "SELECT settings_rev, CASE WHEN settings_rev IS ?2 THEN NULL ELSE settings END \
                 FROM tenants WHERE id = ?1",
            )?
            .query_row(params![tenant, known], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        row.map(|(rev, text)| Ok((rev, text.map(|t| serde_json::from_str(&t)).transpose()?)))
            .transpose()
    }

    fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        agents_of(&self.read(), tenant)
    }

    fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        agent_of(&self.read(), tenant, id)
    }

    fn all_agents(&self) -> Result<Vec<(String, Agent)>> {
        let conn = self.read();
        let mut st = conn.prepare_cached("SELECT tenant, data FROM agents ORDER BY tenant, id")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (t, d) = r?;
            Ok((t, serde_json::from_str(&d)?))
        })
        .collect()
    }
}

impl TenantsTx for SqliteTx<'_> {
    fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        exec(
            &self.tx,
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [key, value],
        )?;
        Ok(())
    }

    fn create_tenant(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let n = exec(
            &self.tx,
            "INSERT OR IGNORE INTO tenants (id, name, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, name, token_hash, ts(now)],
        )?;
        Ok(n == 1)
    }

    fn set_tenant_token(
        &self,
        id: &str,
        token_hash: &str,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Result<bool> {
        Ok(exec(
            &self.tx,
            "UPDATE tenants SET token_hash = ?2, revoked_at = ?3 WHERE id = ?1",
            params![id, token_hash, revoked_at.map(ts)],
        )? == 1)
    }

    fn set_settings(&self, tenant: &str, settings: &serde_json::Value) -> Result<()> {
        exec(
            &self.tx,
            "UPDATE tenants SET settings = ?2, settings_rev = settings_rev + 1 WHERE id = ?1",
            params![tenant, settings.to_string()],
        )?;
        Ok(())
    }

    fn put_agent(&self, tenant: &str, agent: &Agent) -> Result<()> {
        exec(
            &self.tx,
            "INSERT INTO agents (tenant, id, data) VALUES (?1, ?2, ?3) \
             ON CONFLICT (tenant, id) DO UPDATE SET data = excluded.data",
            params![tenant, agent.id, serde_json::to_string(agent)?],
        )?;
        Ok(())
    }

    fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        agent_of(&self.tx, tenant, id)
    }

    fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        agents_of(&self.tx, tenant)
    }
}

/// What the engine reads and records about tenants, their tokens and settings, agents, outside a transaction.
pub trait Tenants {
    /// The tenant whose token hashes to `hash`.
    fn tenant_by_token(&self, hash: &str) -> Result<Option<Tenant>>;

    /// Every tenant.
    fn tenants(&self) -> Result<Vec<Tenant>>;

    /// A tenant's channel settings (JSON).
    fn settings(&self, tenant: &str) -> Result<serde_json::Value>;

    /// A tenant's channel settings if they changed since revision `known`:
    /// `None` for no such tenant, `(rev, None)` when `known` is current.
    fn settings_if_changed(
        &self,
        tenant: &str,
        known: Option<i64>,
    ) -> Result<Option<(i64, Option<serde_json::Value>)>>;

    /// A tenant's agents.
    fn agents(&self, tenant: &str) -> Result<Vec<Agent>>;

    /// One agent.
    fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>>;

    /// Every tenant's agents, for the metrics gauges.
    fn all_agents(&self) -> Result<Vec<(String, Agent)>>;
}

/// What a transaction ([`Store::write`]) reads and writes of tenants, their tokens and settings, agents.
pub trait TenantsTx {
    /// Set a `meta` value.
    fn set_meta(&self, key: &str, value: &str) -> Result<()>;

    /// Create a tenant; `false` if the id is taken.
    fn create_tenant(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Give a tenant a new token hash (`revoked_at` set: the token is
    /// revoked); `false` if there is no such tenant.
    fn set_tenant_token(
        &self,
        id: &str,
        token_hash: &str,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Result<bool>;

    /// Replace a tenant's channel settings.
    fn set_settings(&self, tenant: &str, settings: &serde_json::Value) -> Result<()>;

    /// Insert or replace an agent.
    fn put_agent(&self, tenant: &str, agent: &Agent) -> Result<()>;

    /// One agent.
    fn agent(&self, tenant: &str, id: &str) -> Result<Option<Agent>>;

    /// One agent, to be written back by this transaction: held until it
    /// commits, so no other transaction's change to it is lost in between
    /// (on SQLite the one writer already holds everything).
    fn agent_for_update(&self, tenant: &str, id: &str) -> Result<Option<Agent>> {
        self.agent(tenant, id)
    }

    /// A tenant's agents.
    fn agents(&self, tenant: &str) -> Result<Vec<Agent>>;
}
