//! Tenants, their tokens and their settings: what the API changes about a
//! tenant goes through here, never to the store directly.

use super::*;

impl Engine {
    /// Create tenant `id` with the hash of its first token; `false` if it
    /// exists.
    pub fn create_tenant(
        &self,
        id: &str,
        name: &str,
        token_hash: &str,
    ) -> Result<bool, EngineError> {
        let now = self.clock.now();
        Ok(self
            .store
            .write(|tx| tx.create_tenant(id, name, token_hash, now))?)
    }

    /// Give tenant `id` a new token hash (`revoked`: a hash no token has,
    /// and the time of the revocation is kept); `false` if there is no
    /// such tenant.
    pub fn set_tenant_token(
        &self,
        id: &str,
        hash: &str,
        revoked: bool,
    ) -> Result<bool, EngineError> {
        let now = self.clock.now();
        Ok(self
            .store
            .write(|tx| tx.set_tenant_token(id, hash, revoked.then_some(now)))?)
    }

    /// Replace a tenant's channel settings (validated by the caller); the
    /// settings cache sees the new revision on its next read.
    pub fn set_settings(
        &self,
        tenant: &str,
        settings: &serde_json::Value,
    ) -> Result<(), EngineError> {
        Ok(self.store.write(|tx| tx.set_settings(tenant, settings))?)
    }
}
