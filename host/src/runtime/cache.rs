//! The on-disk cache of compiled components, so a restart does not
//! recompile. An entry is keyed by the SHA-256 of the component's bytes and
//! the engine's compatibility hash (wasmtime version, target, settings), so a
//! different engine never loads an artifact it cannot run.

use super::inspect::Inspection;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A directory of compiled artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: PathBuf,
    engine_key: String,
}

/// Where a component came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Loaded from the cache.
    Cached,
    /// Compiled now (and stored in the cache, if there is one).
    Compiled,
    /// Already loaded in this process from the same bytes (by another
    /// tenant, or another version): its compiled code is shared.
    Shared,
    /// Registered without loading its code (which an earlier load left
    /// in the cache): the code is loaded at its first call.
    Deferred,
}

/// Feeds `Hash` input into SHA-256, to turn the engine's compatibility hash
/// into a stable hex key.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 of a component's bytes, as hex.
pub fn wasm_digest(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

impl ArtifactCache {
    /// A cache in `dir` for components compiled by `engine`.
    pub fn new(dir: impl Into<PathBuf>, engine: &Engine) -> ArtifactCache {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        ArtifactCache {
            dir: dir.into(),
            engine_key: hex(&h.0.finalize()[..8]),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_for(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}-{}.cwasm", self.engine_key))
    }

    /// The compiled component for `wasm` (whose digest is `digest`), from the
    /// cache or compiled now. A cache that cannot be read or written only
    /// costs a compile; it is never an error of its own.
    pub fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: &str,
    ) -> wasmtime::Result<(Component, Origin)> {
        if let Some(component) = self.load(engine, digest) {
            return Ok((component, Origin::Cached));
        }
        let path = self.path_for(digest);
        let component = Component::new(engine, wasm)?;
        if let Err(e) = self.store(&component, &path) {
            tracing::warn!(path = %path.display(), error = %e, "could not write compiled artifact to cache");
        }
        Ok((component, Origin::Compiled))
    }

    /// The compiled component of `digest`, if the cache has it (no bytes
    /// to compile it from otherwise).
    pub fn load(&self, engine: &Engine, digest: &str) -> Option<Component> {
        let path = self.path_for(digest);
        if !path.is_file() {
            return None;
        }
        deserialize(engine, &path)
            .inspect_err(|e| {
                tracing::warn!(path = %path.display(), error = %e, "discarding unreadable cached artifact");
            })
            .ok()
    }

    /// Drop the compiled artifact of `digest` and its kept bytes, if any.
    pub fn remove(&self, digest: &str) {
        for path in [
            self.path_for(digest),
            self.wasm_path(digest),
            self.own_digest_path(digest),
            self.inspection_path(digest),
        ] {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not remove a cached artifact");
            }
        }
    }

    fn wasm_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm"))
    }

    fn inspection_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.inspection.json"))
    }

    /// Keep what a component imports and exports beside its bytes (once),
    /// so a plugin can be registered again without loading its code.
    pub fn keep_inspection(&self, digest: &str, inspection: &Inspection) -> std::io::Result<()> {
        let path = self.inspection_path(digest);
        if path.is_file() {
            return Ok(());
        }
        let json = serde_json::to_vec(inspection).map_err(std::io::Error::other)?;
        self.write_atomically(&path, &json)
    }

    /// What [`ArtifactCache::keep_inspection`] kept for `digest`, if its
    /// bytes are kept too (so its code can be loaded when called); `None`
    /// when either is missing or unreadable.
    pub fn kept_inspection(&self, digest: &str) -> Option<Inspection> {
        if !self.wasm_path(digest).is_file() {
            return None;
        }
        let json = std::fs::read(self.inspection_path(digest)).ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// Keep a component's bytes beside its artifact (once), so its code can
    /// be loaded again after it was dropped from memory, even if the
    /// artifact is gone.
    pub fn keep_wasm(&self, digest: &str, wasm: &[u8]) -> std::io::Result<()> {
        let path = self.wasm_path(digest);
        if path.is_file() {
            return Ok(());
        }
        // Kept under a digest that is not theirs (a component with its
        // configuration parsed ahead is kept under the original's and the
        // text's): their own digest beside them, to check them against.
        let own = wasm_digest(wasm);
        if own != digest {
            self.write_atomically(&self.own_digest_path(digest), own.as_bytes())?;
        }
        self.write_atomically(&path, wasm)
    }

    /// Whether bytes are kept for `digest`.
    pub fn has_wasm(&self, digest: &str) -> bool {
        self.wasm_path(digest).is_file()
    }

    fn own_digest_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.wasm.sha256"))
    }

    /// The bytes kept by [`ArtifactCache::keep_wasm`], checked against
    /// their digest.
    pub fn kept_wasm(&self, digest: &str) -> std::io::Result<Vec<u8>> {
        let wasm = std::fs::read(self.wasm_path(digest))?;
        let expected = match std::fs::read_to_string(self.own_digest_path(digest)) {
            Ok(own) => own,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => digest.to_string(),
            Err(e) => return Err(e),
        };
        if wasm_digest(&wasm) != expected {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the kept bytes do not match their digest",
            ));
        }
        Ok(wasm)
    }

    /// Store a compiled artifact.
    fn store(&self, component: &Component, path: &Path) -> anyhow::Result<()> {
        self.write_atomically(path, &component.serialize()?)?;
        Ok(())
    }

    /// Write `bytes` to `path` in the cache directory atomically: a crash
    /// mid-write leaves no half file behind.
    fn write_atomically(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, path)
    }
}

/// Load a compiled artifact from the cache.
///
/// The file is read into memory rather than mapped: a mapped file that is
/// truncated or rewritten while in use (by an operator, a disk cleaner, a
/// second process) would crash the host with SIGBUS.
#[allow(
    unsafe_code,
    reason = "deserialising our own cached artifacts is the one unsafe operation we need"
)]
fn deserialize(engine: &Engine, path: &Path) -> wasmtime::Result<Component> {
    let bytes = std::fs::read(path)?;
    // SAFETY: the file was written by `ArtifactCache::store` from
    // `Component::serialize` of an engine with the same compatibility hash
    // (it is in the file name), into a directory only this service writes.
    // wasmtime still checks the header and the engine settings on load.
    unsafe { Component::deserialize(engine, &bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_kept_under_another_digest_are_checked_against_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::new(dir.path(), &Engine::default());
        let (own, other) = (b"own bytes".as_slice(), wasm_digest(b"a name"));
        cache.keep_wasm(&wasm_digest(own), own).unwrap();
        cache.keep_wasm(&other, own).unwrap();
        assert_eq!(cache.kept_wasm(&wasm_digest(own)).unwrap(), own);
        assert_eq!(cache.kept_wasm(&other).unwrap(), own);
        // Changed on disk: refused, under either name.
        for d in [wasm_digest(own), other.clone()] {
            std::fs::write(cache.wasm_path(&d), b"changed").unwrap();
            let err = cache.kept_wasm(&d).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
        }
        // Removed with everything else kept for its name.
        cache.remove(&other);
        assert!(!cache.own_digest_path(&other).exists());
    }
}
