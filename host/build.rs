//! Builds every guest in the repository to a `wasm32-wasip2` component:
//! the vendor plugins in `plugins/` (embedded in the binary as the default
//! plugin set, or as a component other commands start from when the crate
//! has no `plugin.toml`) and the test guests in `tests/guests/` (their directory is
//! handed to the tests as `ESCALATOR_TEST_GUESTS`).
//!
//! Installs the target with rustup if it is missing, and fails with a
//! message that says what to do when that is impossible. A guest crate with
//! no tests fails the build: every plugin is unit-tested natively.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(env("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    for dir in ["plugins", "tests/guests", "guest-sdk", "wit"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    ensure_target();

    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("wasm-guests");

    let plugins = crates_in(&root.join("plugins"));
    let guests = crates_in(&root.join("tests/guests"));
    for krate in plugins.iter().chain(&guests) {
        require_tests(krate);
    }
    // A guest that turns off features of other guests' crates (the
    // vendor's trigger set) builds alone, in a target directory of its own
    // (see `GuestCrate::target_dir`).
    let (alone, together): (Vec<_>, Vec<_>) = plugins.iter().chain(&guests).partition(|k| k.alone);
    // Guests that need std on wasm (feature `std` of the SDK) build on their
    // own: cargo unifies features, and std would strip the no_std guests of
    // their allocator and panic handler.
    let (std_guests, no_std_guests): (Vec<_>, Vec<_>) =
        together.into_iter().partition(|k| k.uses_std);
    for batch in [no_std_guests, std_guests] {
        build(&root, &target_dir, &batch);
    }
    for k in alone {
        build(&root, &k.target_dir(&target_dir), &[k]);
    }

    let out = PathBuf::from(env("OUT_DIR"));
    let mut generated = String::from(
        "/// The vendor plugins built from `plugins/`, embedded at build time.\n\
         pub const DEFAULT_PLUGINS: &[BuiltinPlugin] = &[\n",
    );
    // A plugin crate without a plugin.toml is a component other commands
    // start from (`learned`: `escalator learn` writes a model into it), not
    // a default plugin.
    let (defaults, components): (Vec<_>, Vec<_>) = plugins
        .iter()
        .partition(|p| p.dir.join("plugin.toml").is_file());
    for p in defaults {
        let wasm = copy_wasm(&target_dir, p, &out);
        let manifest = p.dir.join("plugin.toml");
        generated.push_str(&format!(
            "    BuiltinPlugin {{ dir: {:?}, manifest: include_str!({:?}), wasm: include_bytes!({:?}) }},\n",
            p.dir_name,
            manifest.display().to_string(),
            wasm.display().to_string(),
        ));
    }
    generated.push_str(
        "];\n\n/// Components built from `plugins/` that are not default plugins.\n\
         pub const COMPONENTS: &[(&str, &[u8])] = &[\n",
    );
    for p in components {
        let wasm = copy_wasm(&target_dir, p, &out);
        generated.push_str(&format!(
            "    ({:?}, include_bytes!({:?})),\n",
            p.dir_name,
            wasm.display().to_string(),
        ));
    }
    generated.push_str("];\n");
    std::fs::write(out.join("default_plugins.rs"), generated).expect("writing default_plugins.rs");

    let guest_out = out.join("test-guests");
    std::fs::create_dir_all(&guest_out).expect("creating the test guest directory");
    for g in &guests {
        copy_wasm(&target_dir, g, &guest_out);
    }
    println!(
        "cargo:rustc-env=ESCALATOR_TEST_GUESTS={}",
        guest_out.display()
    );
    println!(
        "cargo:rustc-env=ESCALATOR_PLUGINS_SRC={}",
        root.join("plugins").display()
    );
}

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("cargo sets {key} for build scripts"))
}

/// One guest crate.
struct GuestCrate {
    /// Its directory.
    dir: PathBuf,
    /// The directory's name (the plugin's folder name).
    dir_name: String,
    /// The package name.
    package: String,
    /// Whether it enables the SDK's `std` feature.
    uses_std: bool,
    /// Whether it builds in a cargo invocation of its own
    /// (`[package.metadata.escalator] build-alone = true`: it turns off
    /// features of crates other guests build with them on).
    alone: bool,
}

impl GuestCrate {
    /// Where it is built, under the guests' `target_dir`: a guest built
    /// alone in a directory of its own, since a trigger built as its
    /// dependency (without its export) would replace the trigger's own
    /// component.
    fn target_dir(&self, target_dir: &Path) -> PathBuf {
        if self.alone {
            target_dir.join("alone")
        } else {
            target_dir.to_path_buf()
        }
    }
}

/// The crates (directories with a Cargo.toml) directly under `dir`.
fn crates_in(dir: &Path) -> Vec<GuestCrate> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<GuestCrate> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .map(|dir| {
            let toml = std::fs::read_to_string(dir.join("Cargo.toml"))
                .expect("reading a guest Cargo.toml");
            let package = toml
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix("name = \"")
                        .and_then(|r| r.strip_suffix('"'))
                })
                .unwrap_or_else(|| panic!("{}: no package name", dir.display()))
                .to_string();
            let uses_std = toml.contains("features = [\"std\"]");
            let alone = toml.contains("build-alone = true");
            let dir_name = dir
                .file_name()
                .expect("a directory name")
                .to_string_lossy()
                .into_owned();
            GuestCrate {
                dir,
                dir_name,
                package,
                uses_std,
                alone,
            }
        })
        .collect();
    out.sort_by(|a, b| a.dir_name.cmp(&b.dir_name));
    out
}

/// Fail the build for a guest without a single test.
fn require_tests(krate: &GuestCrate) {
    let src = std::fs::read_to_string(krate.dir.join("src/lib.rs")).unwrap_or_default();
    if !src.contains("#[test]") && !krate.dir.join("tests").is_dir() {
        panic!(
            "guest {} ({}) has no tests: add unit tests to src/lib.rs (they run natively)",
            krate.package,
            krate.dir.display()
        );
    }
}

/// Make sure the wasm target is installed for the toolchain in use.
fn ensure_target() {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    let installed = |s: &Path| s.join("lib/rustlib").join(TARGET).is_dir();
    if sysroot.as_deref().is_some_and(installed) {
        return;
    }
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN").ok();
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", TARGET]);
    if let Some(t) = &toolchain {
        cmd.args(["--toolchain", t]);
    }
    let ok = cmd.status().map(|s| s.success()).unwrap_or(false);
    if !ok || !sysroot.as_deref().is_some_and(installed) {
        panic!(
            "the {TARGET} target is not installed and `rustup target add {TARGET}` failed.\n\
             Install it with: rustup target add {TARGET}{}",
            toolchain
                .map(|t| format!(" --toolchain {t}"))
                .unwrap_or_default()
        );
    }
}

/// Build `crates` for wasm in one cargo invocation.
fn build(root: &Path, target_dir: &Path, crates: &[&GuestCrate]) {
    if crates.is_empty() {
        return;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--profile",
            "guest",
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(target_dir)
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"));
    for k in crates {
        cmd.args(["-p", &k.package]);
    }
    // The outer build's flags and wrappers (clippy, coverage) are for the
    // host, not the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .expect("running cargo to build the wasm guests");
    if !status.success() {
        panic!("building the wasm guests failed (see the cargo output above)");
    }
}

/// Copy a guest's component to `<dest>/<dir_name>/<dir_name>.wasm` (with its
/// manifest, if it has one) and return the component's path.
fn copy_wasm(target_dir: &Path, krate: &GuestCrate, dest: &Path) -> PathBuf {
    let built = krate
        .target_dir(target_dir)
        .join(TARGET)
        .join("guest")
        .join(format!("{}.wasm", krate.package.replace('-', "_")));
    let dir = dest.join(&krate.dir_name);
    std::fs::create_dir_all(&dir).expect("creating a guest output directory");
    let wasm = dir.join(format!("{}.wasm", krate.dir_name));
    std::fs::copy(&built, &wasm).unwrap_or_else(|e| panic!("copying {}: {e}", built.display()));
    let manifest = krate.dir.join("plugin.toml");
    if manifest.is_file() {
        std::fs::copy(&manifest, dir.join("plugin.toml")).expect("copying a plugin manifest");
    }
    wasm
}
