//! One trigger, four languages: Rust (guest-sdk), Python (componentize-py),
//! JavaScript (componentize-js) and C (wit-bindgen's C generator + Debian's
//! clang for wasm32-wasi), each built here from source, loaded by the host
//! and run on the same fixtures (`tests/polyglot/fixtures`). The test
//! installs the tools it needs (pip into a virtualenv, npm, apt) under
//! `target/polyglot`, and caches each build by the hash of its sources.

use crate::support::guest_wasm;
use escalator::registry::{self, LoadedPlugin, fixtures};
use escalator::runtime::{Runtime, RuntimeConfig};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn work() -> PathBuf {
    let d = repo().join("target/polyglot");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The cache directory the tests of this file share with the CLI they run:
/// CPython and SpiderMonkey compiled once, their functions reused by every
/// later Python or JavaScript component (the function cache).
fn cache_dir() -> PathBuf {
    work().join("cache")
}

/// A runtime of this file's own, on the shared cache directory.
fn runtime() -> &'static Runtime {
    static RUNTIME: std::sync::OnceLock<Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        Runtime::new(RuntimeConfig {
            cache_dir: Some(cache_dir()),
            ..RuntimeConfig::default()
        })
        .expect("the runtime starts")
    })
}

/// A cache key over files' contents.
fn hash(files: &[PathBuf]) -> String {
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(std::fs::read(f).unwrap_or_default());
    }
    hex::encode(&h.finalize()[..8])
}

fn wit_files() -> Vec<PathBuf> {
    let dir = repo().join("wit/since_v0.1.0");
    let mut f: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    f.sort();
    f
}

/// componentize-py, installed with pip into a virtualenv if missing.
/// Tests call this at the same time: one installs while the others wait,
/// and an install counts only once it finished (a marker file). Running
/// the entry script while pip is still writing its native library ended in
/// a bus error.
fn componentize_py() -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let venv = work().join("venv");
    let done = venv.join(".escalator-installed");
    if !done.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "creating a virtualenv",
        );
        run(
            Command::new(venv.join("bin/pip")).args(["install", "-q", "componentize-py==0.25.1"]),
            "pip install componentize-py",
        );
        std::fs::write(&done, b"").unwrap();
    }
    venv.join("bin/componentize-py")
}

fn python() -> Vec<u8> {
    let src = repo().join("tests/polyglot/python/app.py");
    let mut inputs = wit_files();
    inputs.push(src.clone());
    let out = work().join(format!("refund-py-{}.wasm", hash(&inputs)));
    if let Ok(b) = std::fs::read(&out) {
        return b;
    }
    run(
        Command::new(componentize_py())
            .arg("-d")
            .arg(repo().join("wit/since_v0.1.0"))
            .args(["-w", "trigger", "componentize", "app", "-o"])
            .arg(&out)
            .current_dir(src.parent().unwrap()),
        "componentize-py",
    );
    std::fs::read(&out).unwrap()
}

/// A directory with componentize-js installed by npm. Tests call this at
/// the same time: one installs while the others wait, and an install
/// counts only once it finished (a marker file), never half-way.
fn js_tools() -> PathBuf {
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = work().join("js");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        repo().join("tests/polyglot/js/package.json"),
        dir.join("package.json"),
    )
    .unwrap();
    let done = dir.join("node_modules/.escalator-installed");
    if !done.exists() {
        run(
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir),
            "npm install componentize-js",
        );
        std::fs::write(&done, b"").unwrap();
    }
    dir
}

fn javascript() -> Vec<u8> {
    let src = repo().join("tests/polyglot/js");
    let mut inputs = wit_files();
    inputs.extend(["refund.js", "build.mjs", "package.json"].map(|f| src.join(f)));
    let out = work().join(format!("refund-js-{}.wasm", hash(&inputs)));
    if let Ok(b) = std::fs::read(&out) {
        return b;
    }
    let dir = js_tools();
    for f in ["refund.js", "build.mjs"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    run(
        Command::new("node")
            .args(["build.mjs", "refund.js"])
            .arg(repo().join("wit/since_v0.1.0"))
            .arg(&out)
            .current_dir(&dir),
        "componentize-js",
    );
    std::fs::read(&out).unwrap()
}

/// Debian's clang for wasm32-wasi, installed if missing.
fn clang() -> PathBuf {
    let clang = PathBuf::from("/usr/bin/clang-19");
    let sysroot_ok = Path::new("/usr/lib/wasm32-wasi/libc.a").exists();
    let rt_ok =
        Path::new("/usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a").exists();
    if !(clang.exists() && sysroot_ok && rt_ok && Path::new("/usr/bin/wasm-ld-19").exists()) {
        crate::support::apt_install(&[
            "clang-19",
            "lld-19",
            "libclang-rt-19-dev-wasm32",
            "wasi-libc",
        ]);
    }
    clang
}

fn c() -> Vec<u8> {
    let src = repo().join("tests/polyglot/c/refund.c");
    let mut inputs = wit_files();
    inputs.push(src.clone());
    let out = work().join(format!("refund-c-{}.wasm", hash(&inputs)));
    if let Ok(b) = std::fs::read(&out) {
        return b;
    }
    let component = c_build(&src, &work().join("c"), "trigger");
    std::fs::write(&out, &component).unwrap();
    component
}

/// Build the C trigger `src` in `dir`: bindings from wit-bindgen's C
/// generator (a library here), Debian's clang for wasm32-wasi, and the
/// component encoder (`wit-component`).
fn c_build(src: &Path, dir: &Path, world: &str) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let mut resolve = wit_parser::Resolve::default();
    let (pkg, _) = resolve.push_dir(repo().join("wit/since_v0.1.0")).unwrap();
    let world_id = resolve.select_world(&[pkg], Some(world)).unwrap();
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&resolve, world_id, &mut files)
        .unwrap();
    for (name, bytes) in files.iter() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    std::fs::copy(src, dir.join("plugin.c")).unwrap();
    let core = dir.join("plugin.core.wasm");
    run(
        Command::new(clang())
            .args([
                "--target=wasm32-wasi",
                "--sysroot=/usr",
                "-mexec-model=reactor",
                "-O2",
                "-fuse-ld=/usr/bin/wasm-ld-19",
                "-o",
            ])
            .arg(&core)
            .arg("plugin.c")
            .arg(format!("{world}.c"))
            .arg(format!("{world}_component_type.o"))
            .current_dir(dir),
        "clang (wasm32-wasi)",
    );
    let module = std::fs::read(&core).unwrap();
    wit_component::ComponentEncoder::default()
        .module(&module)
        .unwrap()
        .validate(true)
        .encode()
        .unwrap()
}

fn load(lang: &str, wasm: &[u8], limits: &str) -> LoadedPlugin {
    let manifest = format!(
        "name = \"refund-{lang}\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n[limits]\n{limits}"
    );
    registry::load_parts(
        runtime(),
        &manifest,
        &PathBuf::from(format!("polyglot/{lang}/plugin.toml")),
        wasm,
        lang.into(),
    )
    .unwrap_or_else(|e| panic!("the {lang} component loads: {e}"))
}

#[test]
fn the_same_trigger_in_rust_python_javascript_and_c_passes_the_same_fixtures() {
    let cases = fixtures::read(&repo().join("tests/polyglot")).unwrap();
    assert_eq!(cases.len(), 6);
    // Interpreted runtimes get room for their heaps and start-up.
    let big = "fuel = 2_000_000_000\nmemory-mib = 256\ntimeout-ms = 5000\n";
    let langs: Vec<(&str, Vec<u8>, &str)> = vec![
        ("rust", guest_wasm("refund"), ""),
        ("c", c(), ""),
        ("python", python(), big),
        ("javascript", javascript(), big),
    ];
    let mut table = vec![format!(
        "{:<11} {:>10} {:>10} {:>14} {:>12}",
        "language", "size KB", "compile ms", "fuel/call", "µs/call"
    )];
    for (lang, wasm, limits) in &langs {
        let t = std::time::Instant::now();
        let p = load(lang, wasm, limits);
        let compile = t.elapsed();
        let results = fixtures::run(runtime(), &p, &cases);
        for r in &results {
            assert!(r.passed, "{lang}: {}: {}", r.name, r.detail);
        }
        // Instantiate + call, the median of 15 rounds over the fixtures.
        let mut micros = Vec::new();
        let mut fuel = Vec::new();
        for _ in 0..15 {
            for r in fixtures::run(runtime(), &p, &cases) {
                micros.push(r.micros);
                fuel.push(r.fuel);
            }
        }
        micros.sort();
        fuel.sort();
        table.push(format!(
            "{:<11} {:>10} {:>10} {:>14} {:>12}",
            lang,
            wasm.len() / 1024,
            compile.as_millis(),
            fuel[fuel.len() / 2],
            micros[micros.len() / 2]
        ));
        let imports = p.plugin.inspection();
        if *lang == "rust" || *lang == "c" || *lang == "javascript" {
            assert!(
                !imports.uses_wasi,
                "{lang} imports WASI: {:?}",
                imports.imports
            );
        }
    }
    eprintln!("{}", table.join("\n"));
}

/// The CLI, on this file's cache directory.
fn escalator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_escalator"))
        .args(args)
        .env("ESCALATOR_CACHE_DIR", cache_dir())
        .output()
        .expect("the escalator binary runs")
}

/// `plugin new` of each kind in `lang` builds and passes its own fixtures,
/// and a scaffold never overwrites (one test per language, so languages
/// build side by side and each kind after the first reuses what it can).
fn scaffolds_in(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    for kind in ["trigger", "router", "notifier"] {
        let dir = tmp.path().join(format!("{kind}-{lang}"));
        let d = dir.to_str().unwrap();
        let out = escalator(&["plugin", "new", kind, "--lang", lang, d]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Build it the way its build.sh does, with the tools installed here.
        match lang {
            "rust" => run(
                Command::new("sh")
                    .arg(dir.join("build.sh"))
                    .env("CARGO_TARGET_DIR", work().join("scaffold-rust")),
                "build.sh (rust)",
            ),
            "python" => {
                let bin = componentize_py();
                let path = format!(
                    "{}:{}",
                    bin.parent().unwrap().display(),
                    std::env::var("PATH").unwrap_or_default()
                );
                run(
                    Command::new("sh")
                        .arg(dir.join("build.sh"))
                        .env("PATH", path),
                    "build.sh (python)",
                );
            }
            "js" => {
                std::os::unix::fs::symlink(
                    js_tools().join("node_modules"),
                    dir.join("node_modules"),
                )
                .unwrap();
                run(
                    Command::new("sh").arg(dir.join("build.sh")),
                    "build.sh (js)",
                );
            }
            _ => {
                // build.sh uses the wit-bindgen and wasm-tools CLIs; here
                // the same steps run through their libraries.
                let wasm = c_build(&dir.join("plugin.c"), &dir.join("build"), kind);
                std::fs::write(dir.join("plugin.wasm"), wasm).unwrap();
            }
        }
        let out = escalator(&["plugin", "test", d]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind} in {lang}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cases = if kind == "trigger" { 2 } else { 1 };
        assert!(
            text.contains(&format!("{cases} passed, 0 failed")),
            "{kind} in {lang}: {text}"
        );
        // A scaffold never overwrites.
        let again = escalator(&["plugin", "new", kind, "--lang", lang, d]);
        assert!(!again.status.success(), "{kind} in {lang} was overwritten");
    }
}

#[test]
fn plugin_new_scaffolds_of_every_kind_in_rust_build_and_pass_their_own_fixtures() {
    scaffolds_in("rust");
}

#[test]
fn plugin_new_scaffolds_of_every_kind_in_python_build_and_pass_their_own_fixtures() {
    scaffolds_in("python");
}

#[test]
fn plugin_new_scaffolds_of_every_kind_in_javascript_build_and_pass_their_own_fixtures() {
    scaffolds_in("js");
}

#[test]
fn plugin_new_scaffolds_of_every_kind_in_c_build_and_pass_their_own_fixtures() {
    scaffolds_in("c");
}
