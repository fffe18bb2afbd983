//! Finding and loading plugins: a directory (or manifest file) on disk, or
//! the default set built into the binary.

pub mod fixtures;

use crate::manifest::{Manifest, ManifestError};
use crate::matrix::Matrix;
use crate::runtime::inspect::Kind;
use crate::runtime::{Configure, LoadError, Plugin, PluginId, Runtime, SetMember, TriggerSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A vendor plugin compiled into the binary.
#[derive(Debug, Clone, Copy)]
pub struct BuiltinPlugin {
    /// Its folder name under `plugins/`.
    pub dir: &'static str,
    /// Its `plugin.toml`.
    pub manifest: &'static str,
    /// Its component.
    pub wasm: &'static [u8],
}

include!(concat!(env!("OUT_DIR"), "/default_plugins.rs"));

/// Why a plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The manifest is missing or wrong.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// No component beside the manifest.
    #[error("{}: no .wasm component beside the manifest (build the plugin, or set `component = \"...\"`)", dir.display())]
    NoComponent {
        /// The directory.
        dir: PathBuf,
    },
    /// Several components and no `component` key to choose.
    #[error("{}: several .wasm files ({}); name one with `component = \"...\"` in plugin.toml", dir.display(), files.join(", "))]
    AmbiguousComponent {
        /// The directory.
        dir: PathBuf,
        /// The candidates.
        files: Vec<String>,
    },
    /// The component was refused.
    #[error(transparent)]
    Load(#[from] LoadError),
}

/// A loaded plugin with its manifest.
#[derive(Debug, Clone)]
pub struct LoadedPlugin {
    /// The manifest.
    pub manifest: Arc<Manifest>,
    /// The compiled, checked plugin.
    pub plugin: Arc<Plugin>,
    /// Where it came from (a path, or `builtin:NAME`).
    pub source: String,
    /// The `[config]` table as JSON, computed once.
    pub config_json: Arc<str>,
}

impl LoadedPlugin {
    /// The same plugin configured with another escalation matrix (a no-op
    /// for plugins that do not use it).
    pub fn with_matrix(mut self, matrix: &Matrix) -> LoadedPlugin {
        self.config_json = self.manifest.config_json(matrix).into();
        self
    }
}

/// Load a plugin from its manifest text and component bytes, configured
/// with the built-in matrix (see [`LoadedPlugin::with_matrix`]).
pub fn load_parts(
    runtime: &Runtime,
    manifest_text: &str,
    manifest_path: &Path,
    wasm: &[u8],
    source: String,
) -> Result<LoadedPlugin, RegistryError> {
    load_parts_with(
        runtime,
        manifest_text,
        manifest_path,
        wasm,
        source,
        &Matrix::default_matrix(),
    )
}

/// [`load_parts`] configured with `matrix`, which is also the matrix its
/// configuration is parsed ahead with: calls with that text find it parsed
/// (see [`Runtime::load_configured`]); calls with other text parse their
/// own.
pub fn load_parts_with(
    runtime: &Runtime,
    manifest_text: &str,
    manifest_path: &Path,
    wasm: &[u8],
    source: String,
    matrix: &Matrix,
) -> Result<LoadedPlugin, RegistryError> {
    let (manifest, limits) = manifest_and_limits(manifest_text, manifest_path)?;
    let config = manifest.config_json(matrix);
    let plugin = runtime.load_configured(
        manifest.id(),
        manifest.kind,
        limits,
        wasm,
        Configure::One(&config),
    )?;
    Ok(loaded(manifest, plugin, source, config))
}

fn manifest_and_limits(
    text: &str,
    path: &Path,
) -> Result<(Manifest, crate::runtime::Limits), RegistryError> {
    let manifest = Manifest::parse(text, path)?;
    let limits = manifest.limits().map_err(|message| ManifestError {
        path: path.into(),
        message,
    })?;
    Ok((manifest, limits))
}

/// `plugin` with its manifest, source and configuration text (the one its
/// configuration was parsed ahead with).
fn loaded(manifest: Manifest, plugin: Plugin, source: String, config: String) -> LoadedPlugin {
    LoadedPlugin {
        config_json: config.into(),
        manifest: Arc::new(manifest),
        plugin: Arc::new(plugin),
        source,
    }
}

/// Register a stored plugin without loading its component (see
/// [`Runtime::register`]): its manifest, and the digest and size of the
/// bytes an earlier load checked. `Ok(None)` when its code cannot be
/// deferred: then [`load_parts`] it.
pub fn register_parts(
    runtime: &Runtime,
    manifest_text: &str,
    manifest_path: &Path,
    digest: &str,
    size: usize,
    source: String,
) -> Result<Option<LoadedPlugin>, RegistryError> {
    register_parts_with(
        runtime,
        manifest_text,
        manifest_path,
        digest,
        size,
        source,
        &Matrix::default_matrix(),
    )
}

/// [`register_parts`] configured with `matrix` (see [`load_parts_with`]).
pub fn register_parts_with(
    runtime: &Runtime,
    manifest_text: &str,
    manifest_path: &Path,
    digest: &str,
    size: usize,
    source: String,
    matrix: &Matrix,
) -> Result<Option<LoadedPlugin>, RegistryError> {
    let (manifest, limits) = manifest_and_limits(manifest_text, manifest_path)?;
    let config = manifest.config_json(matrix);
    Ok(runtime
        .register_configured(
            manifest.id(),
            manifest.kind,
            limits,
            digest,
            size,
            Configure::One(&config),
        )
        .map(|plugin| loaded(manifest, plugin, source, config)))
}

/// The manifest path for `path`: the file itself, or `plugin.toml` in it.
pub fn manifest_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("plugin.toml")
    } else {
        path.to_path_buf()
    }
}

/// Load a plugin from a directory holding `plugin.toml` and its component,
/// or from the manifest file itself.
pub fn load_path(runtime: &Runtime, path: &Path) -> Result<LoadedPlugin, RegistryError> {
    let manifest_path = manifest_path(path);
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| RegistryError::Io {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    let dir = manifest_path
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let (wasm, wasm_path) = match component_bytes(&dir, &manifest) {
        // A default plugin's source directory (or a copy of it to change
        // its configuration): no component beside the manifest, so the
        // built-in one of the same name.
        Err(RegistryError::NoComponent { .. })
            if manifest.component.is_none() && builtin(&manifest.name).is_some() =>
        {
            let b = builtin(&manifest.name)
                .ok_or_else(|| RegistryError::NoComponent { dir: dir.clone() })?;
            (b.wasm.to_vec(), PathBuf::from(format!("builtin:{}", b.dir)))
        }
        other => other?,
    };
    load_parts(
        runtime,
        &text,
        &manifest_path,
        &wasm,
        wasm_path.display().to_string(),
    )
}

/// The manifest text and component bytes of a plugin directory, and the
/// component's path.
pub fn read_dir_parts(dir: &Path) -> Result<(String, Vec<u8>, PathBuf), RegistryError> {
    let manifest_path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|source| RegistryError::Io {
        path: manifest_path.clone(),
        source,
    })?;
    let manifest = Manifest::parse(&text, &manifest_path)?;
    let (wasm, wasm_path) = component_bytes(dir, &manifest)?;
    Ok((text, wasm, wasm_path))
}

/// The component bytes a manifest names: `component = "builtin:NAME"`
/// reuses a built-in plugin's component (to run it with another
/// configuration), otherwise the file in `dir`.
fn component_bytes(dir: &Path, manifest: &Manifest) -> Result<(Vec<u8>, PathBuf), RegistryError> {
    if let Some(name) = manifest
        .component
        .as_deref()
        .and_then(|c| c.strip_prefix("builtin:"))
    {
        let b = builtin(name).ok_or_else(|| RegistryError::NoComponent {
            dir: dir.join(format!("builtin:{name} (no such built-in plugin)")),
        })?;
        return Ok((b.wasm.to_vec(), PathBuf::from(format!("builtin:{name}"))));
    }
    let wasm_path = component_path(dir, manifest)?;
    let wasm = std::fs::read(&wasm_path).map_err(|source| RegistryError::Io {
        path: wasm_path.clone(),
        source,
    })?;
    Ok((wasm, wasm_path))
}

/// The component file of a plugin directory.
fn component_path(dir: &Path, manifest: &Manifest) -> Result<PathBuf, RegistryError> {
    if let Some(name) = &manifest.component {
        return Ok(dir.join(name));
    }
    let entries = std::fs::read_dir(dir).map_err(|source| RegistryError::Io {
        path: dir.into(),
        source,
    })?;
    let mut wasm: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
        .collect();
    wasm.sort();
    match wasm.len() {
        0 => Err(RegistryError::NoComponent { dir: dir.into() }),
        1 => Ok(wasm.remove(0)),
        _ => Err(RegistryError::AmbiguousComponent {
            dir: dir.into(),
            files: wasm
                .iter()
                .filter_map(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect(),
        }),
    }
}

/// Load the default plugins built into the binary.
pub fn load_builtin(runtime: &Runtime) -> Result<Vec<LoadedPlugin>, RegistryError> {
    load_builtin_with(runtime, &Matrix::default_matrix())
}

/// [`load_builtin`] configured with `matrix` (see [`load_parts_with`]).
pub fn load_builtin_with(
    runtime: &Runtime,
    matrix: &Matrix,
) -> Result<Vec<LoadedPlugin>, RegistryError> {
    DEFAULT_PLUGINS
        .iter()
        .map(|b| {
            let path = PathBuf::from(format!("builtin:{}/plugin.toml", b.dir));
            load_parts_with(
                runtime,
                b.manifest,
                &path,
                b.wasm,
                format!("builtin:{}", b.dir),
                matrix,
            )
        })
        .collect()
}

/// The default triggers the vendor's trigger set (`plugins/trigger-set`)
/// runs, by the names it runs them by (their folder names).
pub use escalator_plugin_trigger_set::TRIGGERS as TRIGGER_SET;

/// The vendor's trigger set for `runtime`: its component, loaded with its
/// triggers' limits together, and each trigger's component digest and
/// limits. `None` (with a warning) if it cannot be made: each trigger is
/// then called in its own instance.
pub fn trigger_set(runtime: &Runtime) -> Option<TriggerSet> {
    trigger_set_with(runtime, &Matrix::default_matrix())
}

/// [`trigger_set`] with its triggers' configurations parsed ahead as
/// `matrix` gives them.
pub fn trigger_set_with(runtime: &Runtime, matrix: &Matrix) -> Option<TriggerSet> {
    let made = || -> Result<TriggerSet, String> {
        let (_, wasm) = COMPONENTS
            .iter()
            .find(|(dir, _)| *dir == "trigger-set")
            .ok_or("no trigger-set component was built")?;
        // Each trigger's shipped configuration (with the built-in matrix)
        // is parsed ahead in the set's memory image.
        let mut configs = Vec::new();
        let members = TRIGGER_SET
            .iter()
            .map(|name| {
                let b = builtin(name).ok_or_else(|| format!("no default plugin {name}"))?;
                let path = PathBuf::from(format!("builtin:{name}/plugin.toml"));
                let (manifest, limits) =
                    manifest_and_limits(b.manifest, &path).map_err(|e| e.to_string())?;
                configs.push((name.to_string(), manifest.config_json(matrix)));
                Ok(SetMember {
                    name,
                    digest: crate::runtime::cache::wasm_digest(b.wasm),
                    limits,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let limits = TriggerSet::limits_for(&members.iter().map(|m| m.limits).collect::<Vec<_>>());
        let id = PluginId {
            name: "trigger-set".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let plugin = runtime
            .load_configured(id, Kind::Trigger, limits, wasm, Configure::Each(&configs))
            .map_err(|e| e.to_string())?;
        TriggerSet::new(plugin, members)
    };
    made()
        .inspect_err(|e| {
            tracing::warn!(error = %e, "no trigger set: the default triggers run in an instance each");
        })
        .ok()
}

/// Find a built-in plugin by name.
pub fn builtin(name: &str) -> Option<&'static BuiltinPlugin> {
    DEFAULT_PLUGINS.iter().find(|b| b.dir == name)
}
