//! `plugin.toml`: what a plugin is, its limits, its error policy, its mode
//! and its configuration.
//!
//! ```toml
//! name = "phrases"
//! kind = "trigger"            # trigger | router | notifier
//! version = "1.2.0"
//! description = "..."
//! mode = "active"             # active | shadow | disabled
//! component = "phrases.wasm"  # default: the only .wasm beside the manifest;
//!                               # "builtin:NAME" reuses a built-in component
//! depends-on-escalation = true # triggers: false when the answer never
//!                               # depends on the ticket's tier, assignee or
//!                               # system messages (see below)
//!
//! [limits]                    # every key optional; defaults shown
//! fuel = 100_000_000
//! memory-mib = 64
//! timeout-ms = 100
//! output-bytes = 1_048_576
//! log-bytes = 16_384
//!
//! [on-error]                  # what a failing call means
//! action = "escalate"         # ignore | escalate
//! tier = "high"               # with escalate
//!
//! [config]                    # handed to the plugin as JSON
//! ```

use crate::model::Tier;
use crate::runtime::Limits;
use crate::runtime::inspect::Kind;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Bounds of the limits a manifest may set.
pub const MAX_FUEL: u64 = 100_000_000_000;
/// The largest `memory-mib` (the runtime's pool slots are this big).
pub const MAX_MEMORY_MIB: u32 = 512;
/// The longest `timeout-ms`.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// The largest `output-bytes`.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;
/// The largest `log-bytes`.
pub const MAX_LOG_BYTES: usize = 1 << 20;

/// Whether the plugin's decisions count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Runs and is acted on.
    #[default]
    Active,
    /// Runs on live tickets; its decisions are recorded, never acted on.
    Shadow,
    /// Loaded but not run.
    Disabled,
}

impl Mode {
    /// Its name: `active`, `shadow`, `disabled`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Active => "active",
            Mode::Shadow => "shadow",
            Mode::Disabled => "disabled",
        }
    }

    /// The mode of a name.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "active" => Some(Mode::Active),
            "shadow" => Some(Mode::Shadow),
            "disabled" => Some(Mode::Disabled),
            _ => None,
        }
    }
}

/// What a failed call (trap, out of fuel, refusal, garbage) means.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ErrorPolicy {
    /// Log it and go on as if the plugin had said nothing.
    #[default]
    Ignore,
    /// Escalate the ticket to `tier`: when in doubt, a human looks.
    Escalate {
        /// The tier.
        tier: Tier,
    },
}

/// Operator data a plugin asks to receive in its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Uses {
    /// The escalation matrix, as `config.matrix`.
    Matrix,
}

/// `[limits]` as written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Memory per call, MiB.
    pub memory_mib: Option<u32>,
    /// Wall-clock deadline per call, ms.
    pub timeout_ms: Option<u64>,
    /// The largest output, bytes.
    pub output_bytes: Option<usize>,
    /// The largest log per call, bytes.
    pub log_bytes: Option<usize>,
}

/// A plugin manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// Lowercase letters, digits and dashes.
    pub name: String,
    /// The world it implements.
    pub kind: Kind,
    /// `MAJOR.MINOR.PATCH`, optionally `-pre`.
    pub version: String,
    /// One line for operators.
    #[serde(default)]
    pub description: String,
    /// Active, shadow or disabled.
    #[serde(default)]
    pub mode: Mode,
    /// The component file, relative to the manifest.
    #[serde(default)]
    pub component: Option<String>,
    /// Operator data handed to the plugin in its configuration.
    #[serde(default)]
    pub uses: Vec<Uses>,
    /// Limits per call.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// What a failed call means.
    #[serde(default)]
    pub on_error: ErrorPolicy,
    /// Triggers: whether the answer may depend on what an escalation
    /// changes in the ticket (its tier, its assignee, the system message
    /// that notes it). After an escalation the host asks the triggers again
    /// on the ticket as it then stands (for the new tier's clocks); a
    /// trigger that says `false` here gave its answer already, and that
    /// answer is used again instead of a second call. A wrong `false` only
    /// costs its own tenant a wake-up; the default is `true`.
    #[serde(default = "crate::model::yes")]
    pub depends_on_escalation: bool,
    /// The plugin's own configuration.
    #[serde(default)]
    pub config: toml::Table,
}

/// A manifest that cannot be used; the message names the file and the
/// field.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct ManifestError {
    /// The manifest file (or a description of where the text came from).
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
}

fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

fn valid_version(v: &str) -> bool {
    let (core, pre) = v.split_once('-').unwrap_or((v, ""));
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()))
        && pre
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && !(v.contains('-') && pre.is_empty())
}

impl Manifest {
    /// Parse manifest text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ManifestError> {
        let err = |message: String| ManifestError {
            path: path.to_path_buf(),
            message,
        };
        let m: Manifest =
            toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
        if !valid_name(&m.name) {
            return Err(err(format!(
                "name = {:?}: use 1 to 64 lowercase letters, digits and dashes, e.g. \"sla-breach\"",
                m.name
            )));
        }
        if !valid_version(&m.version) {
            return Err(err(format!(
                "version = {:?}: use MAJOR.MINOR.PATCH, e.g. \"1.0.0\"",
                m.version
            )));
        }
        m.limits().map_err(err)?;
        if !m.depends_on_escalation && m.kind != Kind::Trigger {
            return Err(err(format!(
                "depends-on-escalation = false: only a trigger is asked again after an escalation; remove it from this {}",
                m.kind
            )));
        }
        if let Some(c) = &m.component
            && !c.starts_with("builtin:")
            && (c.contains('/') || c.contains('\\') || !c.ends_with(".wasm"))
        {
            return Err(err(format!(
                "component = {c:?}: name a .wasm file beside the manifest, or builtin:NAME"
            )));
        }
        Ok(m)
    }

    /// Read and parse a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|e| ManifestError {
            path: path.to_path_buf(),
            message: format!("cannot read: {e}"),
        })?;
        Manifest::parse(&text, path)
    }

    /// The runtime limits, defaults filled in; the error names the field.
    pub fn limits(&self) -> Result<Limits, String> {
        fn check<T: PartialOrd + std::fmt::Display + Copy>(
            key: &str,
            v: Option<T>,
            lo: T,
            hi: T,
        ) -> Result<Option<T>, String> {
            match v {
                Some(x) if x < lo || x > hi => {
                    Err(format!("limits.{key} = {x}: must be between {lo} and {hi}"))
                }
                _ => Ok(v),
            }
        }
        let d = Limits::default();
        let l = &self.limits;
        Ok(Limits {
            fuel: check("fuel", l.fuel, 1_000, MAX_FUEL)?.unwrap_or(d.fuel),
            memory_bytes: check("memory-mib", l.memory_mib, 1, MAX_MEMORY_MIB)?
                .map_or(d.memory_bytes, |m| (m as usize) << 20),
            timeout: check("timeout-ms", l.timeout_ms, 1, MAX_TIMEOUT_MS)?
                .map_or(d.timeout, Duration::from_millis),
            output_bytes: check("output-bytes", l.output_bytes, 1_024, MAX_OUTPUT_BYTES)?
                .unwrap_or(d.output_bytes),
            log_bytes: check("log-bytes", l.log_bytes, 0, MAX_LOG_BYTES)?.unwrap_or(d.log_bytes),
        })
    }

    /// The `[config]` table as the JSON text handed to the plugin, with the
    /// matrix under `matrix` if the plugin uses it.
    pub fn config_json(&self, matrix: &crate::matrix::Matrix) -> String {
        let mut config: serde_json::Map<String, serde_json::Value> = self
            .config
            .iter()
            .map(|(k, v)| (k.clone(), toml_to_json(v)))
            .collect();
        if self.uses.contains(&Uses::Matrix) {
            config.insert("matrix".into(), matrix.to_json());
        }
        serde_json::Value::Object(config).to_string()
    }

    /// `name@version`.
    pub fn id(&self) -> crate::runtime::PluginId {
        crate::runtime::PluginId {
            name: self.name.clone(),
            version: self.version.clone(),
        }
    }
}

/// TOML to JSON; dates and times become RFC 3339 strings.
fn toml_to_json(v: &toml::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        toml::Value::String(s) => J::String(s.clone()),
        toml::Value::Integer(i) => J::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        toml::Value::Boolean(b) => J::Bool(*b),
        toml::Value::Datetime(d) => J::String(d.to_string()),
        toml::Value::Array(a) => J::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => J::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(text, Path::new("plugins/x/plugin.toml")).map_err(|e| e.to_string())
    }

    const MINIMAL: &str = "name = \"x\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n";

    #[test]
    fn a_minimal_manifest_gets_safe_defaults() {
        let m = parse(MINIMAL).unwrap();
        assert_eq!(m.mode, Mode::Active);
        assert_eq!(m.on_error, ErrorPolicy::Ignore);
        assert!(m.depends_on_escalation, "asked again unless it says not");
        assert_eq!(m.limits().unwrap(), Limits::default());
        assert_eq!(
            m.config_json(&crate::matrix::Matrix::default_matrix()),
            "{}"
        );
    }

    #[test]
    fn only_a_trigger_may_say_it_does_not_depend_on_the_escalation() {
        let m = parse(&format!("{MINIMAL}depends-on-escalation = false\n")).unwrap();
        assert!(!m.depends_on_escalation);
        let router = MINIMAL.replace("trigger", "router");
        let e = parse(&format!("{router}depends-on-escalation = false\n")).unwrap_err();
        assert!(e.contains("only a trigger"), "{e}");
        parse(&format!("{router}depends-on-escalation = true\n")).unwrap();
    }

    #[test]
    fn a_typo_names_the_file_and_the_key() {
        let e = parse(&format!("{MINIMAL}modee = \"shadow\"\n")).unwrap_err();
        assert!(e.starts_with("plugins/x/plugin.toml: "), "{e}");
        assert!(e.contains("modee"), "{e}");
    }

    #[test]
    fn an_unknown_kind_lists_what_is_allowed() {
        let e = parse("name = \"x\"\nkind = \"filter\"\nversion = \"1.0.0\"\n").unwrap_err();
        assert!(
            e.contains("filter") && e.contains("trigger") && e.contains("router"),
            "{e}"
        );
    }

    #[test]
    fn limits_out_of_range_are_refused_with_the_range() {
        let e = parse(&format!("{MINIMAL}[limits]\nmemory-mib = 4096\n")).unwrap_err();
        assert!(
            e.contains("limits.memory-mib = 4096: must be between 1 and 512"),
            "{e}"
        );
        let m = parse(&format!(
            "{MINIMAL}[limits]\nfuel = 5000\ntimeout-ms = 20\n"
        ))
        .unwrap();
        let l = m.limits().unwrap();
        assert_eq!((l.fuel, l.timeout), (5000, Duration::from_millis(20)));
    }

    #[test]
    fn names_and_versions_are_checked() {
        assert!(
            parse("name = \"Bad Name\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n")
                .unwrap_err()
                .contains("name = \"Bad Name\"")
        );
        assert!(
            parse("name = \"x\"\nkind = \"trigger\"\nversion = \"1.0\"\n")
                .unwrap_err()
                .contains("version = \"1.0\"")
        );
        assert!(parse("name = \"x\"\nkind = \"trigger\"\nversion = \"1.0.0-rc.1\"\n").is_ok());
    }

    #[test]
    fn the_error_policy_needs_a_tier_to_escalate_to() {
        let m = parse(&format!(
            "{MINIMAL}[on-error]\naction = \"escalate\"\ntier = \"high\"\n"
        ))
        .unwrap();
        assert_eq!(m.on_error, ErrorPolicy::Escalate { tier: Tier::High });
        let e = parse(&format!("{MINIMAL}[on-error]\naction = \"escalate\"\n")).unwrap_err();
        assert!(e.contains("tier"), "{e}");
    }

    #[test]
    fn config_becomes_json_with_dates_as_text() {
        let m = parse(&format!("{MINIMAL}[config]\nthreshold = -0.6\nwords = [\"a\"]\nsince = 2026-01-01\n[config.nested]\nk = 1\n")).unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&m.config_json(&crate::matrix::Matrix::default_matrix())).unwrap();
        assert_eq!(v["threshold"], -0.6);
        assert_eq!(v["words"][0], "a");
        assert_eq!(v["since"], "2026-01-01");
        assert_eq!(v["nested"]["k"], 1);
    }

    #[test]
    fn only_plugins_that_use_the_matrix_get_it() {
        let matrix = crate::matrix::Matrix::default_matrix();
        let m = parse(&format!("uses = [\"matrix\"]\n{MINIMAL}[config]\nk = 1\n")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&m.config_json(&matrix)).unwrap();
        assert_eq!(v["k"], 1);
        assert_eq!(v["matrix"]["scenarios"][0]["team"], "engineering");
        assert!(
            parse(&format!("uses = [\"crm\"]\n{MINIMAL}"))
                .unwrap_err()
                .contains("crm")
        );
    }

    #[test]
    fn the_component_must_sit_beside_the_manifest() {
        let e = parse(&format!("component = \"../x.wasm\"\n{MINIMAL}")).unwrap_err();
        assert!(e.contains("component"), "{e}");
    }
}
