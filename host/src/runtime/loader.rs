//! Plugins' code: compiled (or fetched from the artifact cache), checked,
//! shared by every plugin loaded from the same bytes, and — with a budget —
//! kept in memory only while used: the least recently used code beyond the
//! budget is dropped, and a plugin whose code was dropped loads it again
//! from the artifact cache at its next call (on the calling tenant's
//! share, so a cold tenant pays for its own load).

use super::cache::{ArtifactCache, Origin};
use super::inspect::{self, Inspection, Kind};
use super::sandbox::CallState;
use super::{LoadError, PluginId, Pre, wit};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

/// What a component's bytes become once compiled and checked: shared by
/// every plugin loaded from the same bytes (tenants running the same
/// component, a version uploaded again), so its code is in memory once.
pub(super) struct Code {
    pub(super) pre: Pre,
    /// A trigger that also exports `evaluate-each` (the vendor's trigger
    /// set): its entry point.
    pub(super) set: Option<wit::trigger_set::TriggerSetPre<CallState>>,
    pub(super) inspection: Arc<Inspection>,
    /// The compiled image's size: what keeping it costs.
    bytes: usize,
}

/// What [`Loader::configured`] needs besides the component.
pub(super) struct Ahead<'a> {
    /// The configuration to parse ahead.
    pub(super) configure: super::preinit::Configure<'a>,
    /// The digest the pre-initialised component is kept under.
    pub(super) digest: &'a str,
    /// The component's own digest.
    pub(super) original_digest: &'a str,
    /// The plugin's limits, which `configure` runs under.
    pub(super) limits: &'a super::Limits,
    /// The engine's epoch tick (for the deadline).
    pub(super) epoch_tick: std::time::Duration,
    /// The most configurations of one component parsed ahead.
    pub(super) most: usize,
}

/// Compiles, checks and keeps code; shared by the runtime and every plugin
/// it loaded.
pub(super) struct Loader {
    pub(super) engine: Engine,
    linker: Linker<CallState>,
    pub(super) cache: Option<ArtifactCache>,
    /// Code by digest while any plugin (or call) holds it.
    loaded: Mutex<Loaded>,
    /// With a budget (and an artifact cache to load from again), the code
    /// kept in memory; `None`: every plugin keeps its code.
    resident: Option<Mutex<Resident>>,
    /// The configurations parsed ahead of each component (by its digest):
    /// the digests of the pre-initialised components made from it.
    variants: Mutex<HashMap<String, std::collections::HashSet<String>>>,
    /// The engine configurations are parsed ahead on, made at first use.
    preinit: std::sync::OnceLock<Result<super::preinit::Preinit, String>>,
}

/// Entries whose code was dropped are swept when the map has doubled since
/// the last sweep (so loading N plugins costs O(N), not O(N²)).
#[derive(Default)]
struct Loaded {
    by_digest: HashMap<String, Weak<Code>>,
    sweep_at: usize,
}

/// The code kept in memory under the budget, least recently used first out.
struct Resident {
    budget: usize,
    bytes: usize,
    clock: u64,
    by_digest: HashMap<String, (Arc<Code>, u64)>,
}

/// What resident code there is and how it came and went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ResidentStats {
    /// Components whose code is kept.
    pub components: usize,
    /// Their compiled images' bytes.
    pub bytes: usize,
    /// The budget (0: none, every plugin keeps its code).
    pub budget: usize,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Loader {
    pub(super) fn new(
        engine: Engine,
        linker: Linker<CallState>,
        cache: Option<ArtifactCache>,
        budget: usize,
    ) -> Loader {
        let resident = (budget > 0 && cache.is_some()).then(|| {
            Mutex::new(Resident {
                budget,
                bytes: 0,
                clock: 0,
                by_digest: HashMap::new(),
            })
        });
        Loader {
            engine,
            linker,
            cache,
            loaded: Mutex::default(),
            resident,
            variants: Mutex::default(),
            preinit: std::sync::OnceLock::new(),
        }
    }

    /// Whether code is kept under a budget (and plugins reload it).
    pub(super) fn evicts(&self) -> bool {
        self.resident.is_some()
    }

    pub(super) fn resident(&self) -> ResidentStats {
        match &self.resident {
            None => ResidentStats::default(),
            Some(r) => {
                let r = lock(r);
                ResidentStats {
                    components: r.by_digest.len(),
                    bytes: r.bytes,
                    budget: r.budget,
                }
            }
        }
    }

    /// Compile `wasm`, or fetch it from the artifact cache.
    pub(super) fn compile(
        &self,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, Origin)> {
        match &self.cache {
            Some(cache) => cache.load_or_compile(&self.engine, wasm, digest),
            None => Component::new(&self.engine, wasm).map(|c| (c, Origin::Compiled)),
        }
    }

    fn shared(&self, digest: &str) -> Option<Arc<Code>> {
        lock(&self.loaded)
            .by_digest
            .get(digest)
            .and_then(Weak::upgrade)
    }

    /// The checked code of `wasm` (whose digest is `digest`): shared with
    /// the plugins already loaded from the same bytes, or compiled (or
    /// fetched from the artifact cache), its imports checked and its
    /// exports typed for `kind`'s world. With a budget, the bytes are kept
    /// beside the artifact so the code can be loaded again once dropped.
    pub(super) fn code(
        &self,
        id: &PluginId,
        kind: Kind,
        wasm: &[u8],
        digest: &str,
    ) -> Result<(Arc<Code>, Origin), LoadError> {
        if let Some(code) = self.shared(digest) {
            self.touch(digest, &code);
            return Ok((code, Origin::Shared));
        }
        let (component, origin) =
            self.compile(wasm, digest)
                .map_err(|source| LoadError::Compile {
                    plugin: id.clone(),
                    source: source.into(),
                })?;
        let code = self.check(id, kind, &component)?;
        if let (true, Some(cache)) = (self.evicts(), &self.cache) {
            if let Err(e) = cache.keep_wasm(digest, wasm) {
                // Without the bytes the code could not come back: keep it.
                tracing::warn!(error = %e, "could not keep a component's bytes; its code stays loaded");
                self.remember(digest, &code);
                return Ok((code, origin));
            }
            if let Err(e) = cache.keep_inspection(digest, &code.inspection) {
                // Only a restart's registration without loading needs it.
                tracing::warn!(error = %e, "could not keep what a component imports; a restart will load it");
            }
        }
        self.remember(digest, &code);
        self.touch(digest, &code);
        Ok((code, origin))
    }

    /// The code of `wasm` with `a.configure`
    /// called ahead ([`super::preinit`]), kept under `a.digest` (the
    /// original's and the text's): shared, from the artifact cache, or made
    /// now. `None`: the plugin keeps the original (the component refused
    /// the text, was configured `a.most` other ways already, or could not
    /// be pre-initialised; said in the log).
    pub(super) fn configured(
        &self,
        id: &PluginId,
        kind: Kind,
        wasm: &[u8],
        a: Ahead<'_>,
    ) -> Option<(Arc<Code>, Origin)> {
        let Ahead {
            configure,
            digest,
            original_digest,
            limits,
            epoch_tick,
            most,
        } = a;
        if !self.variant_slot(original_digest, digest, most) {
            return None;
        }
        let made = || -> Result<Option<(Arc<Code>, Origin)>, String> {
            let preinit = self
                .preinit
                .get_or_init(|| {
                    super::preinit::Preinit::new(epoch_tick).map_err(|e| format!("{e:#}"))
                })
                .as_ref()?;
            let prepared =
                super::preinit::preinitialize(preinit, wasm, configure, limits, epoch_tick)
                    .map_err(|e| format!("{e:#}"))?;
            let Some(prepared) = prepared else {
                return Ok(None);
            };
            let made = self
                .code(id, kind, &prepared, digest)
                .map_err(|e| e.to_string())?;
            // With a budget, the component's own bytes too: a plugin whose
            // configured code is lost falls back on them.
            if let (true, Some(cache)) = (self.evicts(), &self.cache)
                && let Err(e) = cache.keep_wasm(original_digest, wasm)
            {
                tracing::warn!(error = %e, "could not keep a component's bytes");
            }
            // Kept on disk whatever the budget (it cannot be made again
            // without running `configure`), so any later start finds it.
            if let Some(cache) = &self.cache {
                let kept = cache
                    .keep_wasm(digest, &prepared)
                    .and_then(|()| cache.keep_inspection(digest, &made.0.inspection));
                if let Err(e) = kept {
                    tracing::warn!(error = %e, "could not keep a configured component's bytes");
                }
            }
            Ok(Some(made))
        };
        let made = made();
        if !matches!(made, Ok(Some(_))) {
            // Not made: the slot is free for another configuration.
            if let Some(m) = lock(&self.variants).get_mut(original_digest) {
                m.remove(digest);
            }
        }
        match made {
            Ok(Some((code, origin))) if code.inspection.world == Some(kind) => Some((code, origin)),
            Ok(Some(_)) => {
                tracing::debug!(plugin = %id, "configured component is not of the world asked for; loaded as it is");
                None
            }
            Ok(None) => {
                tracing::debug!(plugin = %id, "configuration refused ahead; its calls will say why");
                None
            }
            Err(e) => {
                tracing::warn!(plugin = %id, error = %e, "could not pre-initialise; configuration parsed per call");
                None
            }
        }
    }

    /// Whether the component `original` may have its configuration
    /// `digest` parsed ahead: it is one of the first `most` ways it is
    /// configured (a slot is taken for it), or was already.
    fn variant_slot(&self, original: &str, digest: &str, most: usize) -> bool {
        let mut variants = lock(&self.variants);
        let made = variants.entry(original.to_string()).or_default();
        if made.contains(digest) {
            return true;
        }
        if made.len() >= most {
            return false;
        }
        made.insert(digest.to_string());
        true
    }

    /// The configured code of `digest` (see [`Loader::configured`]) if it
    /// was made before: in memory, or in the artifact cache with its bytes
    /// and the component's own (to fall back on) kept. Then the component's
    /// own code need not be loaded at all.
    pub(super) fn configured_made(
        &self,
        id: &PluginId,
        kind: Kind,
        digest: &str,
        original_digest: &str,
        most: usize,
    ) -> Option<(Arc<Code>, Origin)> {
        if let Some(code) = self.shared(digest) {
            if !self.variant_slot(original_digest, digest, most) {
                return None;
            }
            self.touch(digest, &code);
            return Some((code, Origin::Shared));
        }
        let cache = self.cache.as_ref()?;
        if self.evicts()
            && (cache.kept_inspection(digest).is_none() || !cache.has_wasm(original_digest))
        {
            return None;
        }
        let component = cache.load(&self.engine, digest)?;
        if !self.variant_slot(original_digest, digest, most) {
            return None;
        }
        let code = self.check(id, kind, &component).ok()?;
        if code.inspection.world != Some(kind) {
            return None;
        }
        self.remember(digest, &code);
        self.touch(digest, &code);
        Some((code, Origin::Cached))
    }

    /// What the component of `digest` imports and exports, if its code can
    /// be dropped and was kept to be loaded again (its bytes and this are
    /// in the artifact cache): then a plugin of it can be registered
    /// without loading the code.
    pub(super) fn deferrable(&self, digest: &str) -> Option<Inspection> {
        if !self.evicts() {
            return None;
        }
        self.cache.as_ref()?.kept_inspection(digest)
    }

    /// The code of `digest` again, after it was dropped: from the artifact
    /// cache (or compiled from the kept bytes).
    pub(super) fn reload(
        &self,
        id: &PluginId,
        kind: Kind,
        digest: &str,
    ) -> wasmtime::Result<Arc<Code>> {
        if let Some(code) = self.shared(digest) {
            self.touch(digest, &code);
            return Ok(code);
        }
        let cache = self
            .cache
            .as_ref()
            .ok_or_else(|| wasmtime::format_err!("no artifact cache to load {id}'s code from"))?;
        let wasm = cache
            .kept_wasm(digest)
            .map_err(|e| wasmtime::format_err!("{id}'s component is no longer kept: {e}"))?;
        let (component, _) = self.compile(&wasm, digest)?;
        let code = self
            .check(id, kind, &component)
            .map_err(|e| wasmtime::format_err!("{e}"))?;
        self.remember(digest, &code);
        self.touch(digest, &code);
        Ok(code)
    }

    /// Imports granted, the world as asked, exports typed.
    fn check(
        &self,
        id: &PluginId,
        kind: Kind,
        component: &Component,
    ) -> Result<Arc<Code>, LoadError> {
        let inspection = inspect::inspect(&self.engine, component);
        let ungranted: Vec<String> = inspection.ungranted().map(String::from).collect();
        if !ungranted.is_empty() {
            return Err(LoadError::UngrantedImport {
                plugin: id.clone(),
                imports: ungranted,
            });
        }
        if inspection.world != Some(kind) {
            return Err(LoadError::WrongWorld {
                plugin: id.clone(),
                expected: kind,
                found: inspection.world,
                exports: inspection.exports.clone(),
            });
        }
        let incompatible = |e: wasmtime::Error| LoadError::Incompatible {
            plugin: id.clone(),
            kind,
            source: e.into(),
        };
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(incompatible)?;
        let set = (kind == Kind::Trigger
            && inspection.exports.iter().any(|e| e == "evaluate-each"))
        .then(|| wit::trigger_set::TriggerSetPre::new(pre.clone()).ok())
        .flatten();
        let pre = match kind {
            Kind::Trigger => wit::trigger::TriggerPre::new(pre).map(Pre::Trigger),
            Kind::Router => wit::router::RouterPre::new(pre).map(Pre::Router),
            Kind::Notifier => wit::notifier::NotifierPre::new(pre).map(Pre::Notifier),
        }
        .map_err(incompatible)?;
        let image = component.image_range();
        Ok(Arc::new(Code {
            pre,
            set,
            inspection: Arc::new(inspection),
            bytes: (image.end as usize).saturating_sub(image.start as usize),
        }))
    }

    fn remember(&self, digest: &str, code: &Arc<Code>) {
        let mut loaded = lock(&self.loaded);
        if loaded.by_digest.len() >= loaded.sweep_at {
            loaded.by_digest.retain(|_, c| c.strong_count() > 0);
            loaded.sweep_at = (2 * loaded.by_digest.len()).max(64);
        }
        loaded
            .by_digest
            .insert(digest.to_string(), Arc::downgrade(code));
    }

    /// `code` was just used: keep it, and drop the least recently used
    /// code beyond the budget (never the code just used).
    pub(super) fn touch(&self, digest: &str, code: &Arc<Code>) {
        let Some(r) = &self.resident else { return };
        let mut r = lock(r);
        r.clock += 1;
        let now = r.clock;
        if let Some(entry) = r.by_digest.get_mut(digest) {
            entry.1 = now;
            return;
        }
        r.bytes += code.bytes;
        r.by_digest.insert(digest.to_string(), (code.clone(), now));
        while r.bytes > r.budget && r.by_digest.len() > 1 {
            let Some(oldest) = r
                .by_digest
                .iter()
                .filter(|(d, _)| d.as_str() != digest)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(d, _)| d.clone())
            else {
                break;
            };
            if let Some((c, _)) = r.by_digest.remove(&oldest) {
                r.bytes -= c.bytes;
            }
        }
    }

    /// Forget what is kept of `digest` (no plugin uses it any more).
    pub(super) fn forget(&self, digest: &str) {
        if let Some(r) = &self.resident {
            let mut r = lock(r);
            if let Some((c, _)) = r.by_digest.remove(digest) {
                r.bytes -= c.bytes;
            }
        }
        if let Some(cache) = &self.cache {
            cache.remove(digest);
        }
    }
}
