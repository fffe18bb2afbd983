//! What a component is: which world it implements and what it imports.

use super::sandbox;
use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

/// The three plugin worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `world trigger`: exports `evaluate`.
    Trigger,
    /// `world router`: exports `route`.
    Router,
    /// `world notifier`: exports `plan`.
    Notifier,
}

impl Kind {
    /// The world's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Trigger => "trigger",
            Kind::Router => "router",
            Kind::Notifier => "notifier",
        }
    }

    /// The function the world exports.
    pub fn export(self) -> &'static str {
        match self {
            Kind::Trigger => "evaluate",
            Kind::Router => "route",
            Kind::Notifier => "plan",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One import of a component.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Import {
    /// The name, e.g. `wasi:io/streams@0.2.6`.
    pub name: String,
    /// Whether the host grants it.
    pub granted: bool,
}

/// What `escalator plugin inspect` reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Inspection {
    /// The world the component implements, if it implements one of ours.
    pub world: Option<Kind>,
    /// The contract version it was built against (from its imports).
    pub contract: Option<String>,
    /// Every export name.
    pub exports: Vec<String>,
    /// Every import, and whether it is granted.
    pub imports: Vec<Import>,
    /// Whether it imports any WASI interface (costs instantiation time).
    pub uses_wasi: bool,
}

impl Inspection {
    /// The imports the host does not grant.
    pub fn ungranted(&self) -> impl Iterator<Item = &str> {
        self.imports
            .iter()
            .filter(|i| !i.granted)
            .map(|i| i.name.as_str())
    }
}

/// Inspect a compiled component.
pub fn inspect(engine: &Engine, component: &Component) -> Inspection {
    let ty = component.component_type();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let imports: Vec<Import> = ty
        .imports(engine)
        .map(|(name, _)| Import {
            name: name.to_string(),
            granted: sandbox::is_granted(name),
        })
        .collect();
    let world = [Kind::Trigger, Kind::Router, Kind::Notifier]
        .into_iter()
        .find(|k| exports.iter().any(|e| e == k.export()));
    let contract = imports
        .iter()
        .find_map(|i| i.name.strip_prefix("escalator:plugin/"))
        .and_then(|rest| rest.split_once('@'))
        .map(|(_, version)| version.to_string());
    let uses_wasi = imports.iter().any(|i| sandbox::is_wasi(&i.name));
    Inspection {
        world,
        contract,
        exports,
        imports,
        uses_wasi,
    }
}
