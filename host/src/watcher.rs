//! The plugin directory watcher: `DIR/TENANT/PLUGIN/` holds a plugin
//! (`plugin.toml`, its component, `fixtures/`). A new or changed directory
//! is uploaded and activated for the tenant (validated like an API upload);
//! a removed one is removed. The directory is scanned every 200 ms, so a
//! file landing is live well within a second; write files elsewhere and
//! rename them in, so a scan never sees half a component (a half-written
//! one is refused, and picked up again when it changes).

use crate::engine::{Engine, Upload};
use crate::registry::{self, fixtures};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What the watcher knows of one plugin directory.
#[derive(Debug, Clone)]
struct Seen {
    fingerprint: Vec<(PathBuf, u64, SystemTime)>,
    tenant: String,
    name: Option<String>,
}

/// Watch `dir` forever.
pub async fn run(engine: Arc<Engine>, dir: PathBuf, every: Duration) {
    let mut seen: HashMap<PathBuf, Seen> = HashMap::new();
    loop {
        let (e, d) = (engine.clone(), dir.clone());
        let mut s = std::mem::take(&mut seen);
        seen = tokio::task::spawn_blocking(move || {
            scan(&e, &d, &mut s);
            s
        })
        .await
        .unwrap_or_default();
        tokio::time::sleep(every).await;
    }
}

fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut files = Vec::new();
    for d in [dir.to_path_buf(), dir.join("fixtures")] {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            if let Ok(m) = e.metadata()
                && m.is_file()
            {
                files.push((
                    e.path(),
                    m.len(),
                    m.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ));
            }
        }
    }
    files.sort();
    files
}

fn subdirs(dir: &Path) -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (!name.starts_with('.')).then(|| (name, e.path()))
        })
        .collect()
}

/// One pass over the directory.
fn scan(engine: &Engine, dir: &Path, seen: &mut HashMap<PathBuf, Seen>) {
    let tenants: Vec<String> = match engine.store.tenants() {
        Ok(t) => t.into_iter().map(|t| t.id).collect(),
        Err(e) => {
            tracing::error!(error = %e, "watcher: reading tenants failed");
            return;
        }
    };
    let mut present = Vec::new();
    for (tenant, tdir) in subdirs(dir) {
        if !tenants.contains(&tenant) {
            continue;
        }
        for (_, pdir) in subdirs(&tdir) {
            present.push(pdir.clone());
            let fp = fingerprint(&pdir);
            if seen.get(&pdir).is_some_and(|s| s.fingerprint == fp) {
                continue;
            }
            let actor = format!("watcher:{}", pdir.display());
            let name = match load(&pdir) {
                Ok(up) => match engine.upload(&tenant, up, &actor, true) {
                    Ok(i) => {
                        tracing::info!(tenant, plugin = %i.name, version = %i.version,
                            us = i.total_micros, "watcher: plugin live");
                        Some(i.name)
                    }
                    Err(e) => {
                        tracing::warn!(tenant, dir = %pdir.display(), error = %e, "watcher: refused");
                        seen.get(&pdir).and_then(|s| s.name.clone())
                    }
                },
                Err(e) => {
                    tracing::warn!(tenant, dir = %pdir.display(), error = %e, "watcher: unreadable");
                    seen.get(&pdir).and_then(|s| s.name.clone())
                }
            };
            seen.insert(
                pdir,
                Seen {
                    fingerprint: fp,
                    tenant: tenant.clone(),
                    name,
                },
            );
        }
    }
    let gone: Vec<PathBuf> = seen
        .keys()
        .filter(|p| !present.contains(p))
        .cloned()
        .collect();
    for p in gone {
        if let Some(Seen {
            tenant,
            name: Some(name),
            ..
        }) = seen.remove(&p)
        {
            let actor = format!("watcher:{}", p.display());
            match engine.remove_plugin(&tenant, &name, &actor) {
                Ok(_) => tracing::info!(tenant, plugin = %name, "watcher: plugin removed"),
                Err(e) => {
                    tracing::warn!(tenant, plugin = %name, error = %e, "watcher: removing failed")
                }
            }
        }
    }
}

fn load(dir: &Path) -> Result<Upload, String> {
    let (manifest, wasm, path) = registry::read_dir_parts(dir).map_err(|e| e.to_string())?;
    Ok(Upload {
        manifest,
        wasm,
        fixtures: fixtures::read(dir)?,
        source: path.display().to_string(),
        quota: None,
    })
}
