//! Shared helpers: one runtime per test process (with its own artifact
//! cache), the built guests, and ticket builders.

use escalator::model;
use escalator::pipeline::contract;
use escalator::registry::{self, LoadedPlugin};
use escalator::runtime::{Runtime, RuntimeConfig, wit};
use escalator::store::{Durability, PgStore, SqliteStore, Store};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The `escalator` binary with `args`, compiled plugins cached in a
/// directory the tests' runs share (not the user's own cache).
pub fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_escalator"))
        .arg("--cache-dir")
        .arg(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"))
        .args(args)
        .output()
        .expect("the escalator binary runs")
}

/// A command's stdout then stderr, as text.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn guest_dir() -> PathBuf {
    PathBuf::from(env!("ESCALATOR_TEST_GUESTS"))
}

/// The component of test guest `name`.
pub fn guest_wasm(name: &str) -> Vec<u8> {
    let path = guest_dir().join(name).join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The pipeline's decision on `ticket` as a new ticket (nothing fired
/// yet, no escalation) at `now`.
pub fn decide(
    set: &escalator::pipeline::PluginSet,
    ticket: &model::Ticket,
    roster: &[model::Agent],
    now: chrono::DateTime<chrono::Utc>,
    event: model::EventKind,
) -> escalator::pipeline::Decision {
    let ask = escalator::pipeline::Ask {
        runtime: runtime(),
        set,
        roster,
        targets: &Default::default(),
        now,
        event,
        deadlines: escalator::pipeline::Deadlines::Live,
    };
    let state = model::TicketState::new(ticket.clone());
    escalator::pipeline::decide(&ask, &state, &Default::default())
}

/// A runtime of its own with the default configuration, caching compiled
/// components in `dir`.
pub fn runtime_cached_in(dir: &std::path::Path) -> Arc<Runtime> {
    Arc::new(default_runtime(dir))
}

fn default_runtime(cache: &std::path::Path) -> Runtime {
    Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("the runtime starts")
}

/// The process-wide runtime, caching compiled components under the
/// build's temporary directory (shared by test runs, as the servers'
/// cache is: an entry is written whole and renamed into place). A temp dir
/// of its own was never removed: statics are never dropped.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        default_runtime(&std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("runtime-cache"))
    })
}

/// Load `wasm` with a manifest of `kind` and extra manifest text.
pub fn load(
    name: &str,
    kind: &str,
    extra: &str,
    wasm: &[u8],
) -> Result<LoadedPlugin, registry::RegistryError> {
    let manifest = format!("name = \"{name}\"\nkind = \"{kind}\"\nversion = \"1.0.0\"\n{extra}");
    registry::load_parts(
        runtime(),
        &manifest,
        &PathBuf::from(format!("test/{name}/plugin.toml")),
        wasm,
        name.into(),
    )
}

/// A built-in plugin, loaded.
pub fn builtin(name: &str) -> LoadedPlugin {
    let b = registry::builtin(name).unwrap_or_else(|| panic!("no built-in plugin {name}"));
    registry::load_parts(
        runtime(),
        b.manifest,
        &PathBuf::from(format!("builtin:{name}/plugin.toml")),
        b.wasm,
        name.into(),
    )
    .expect("built-in plugins load")
}

/// 2026-11-27T12:00:00Z.
pub fn noon() -> chrono::DateTime<chrono::Utc> {
    "2026-11-27T12:00:00Z".parse().expect("a valid time")
}

/// A ticket with `subject` and customer messages `bodies`.
pub fn ticket(subject: &str, bodies: &[&str]) -> model::Ticket {
    let t0: chrono::DateTime<chrono::Utc> = "2026-11-27T09:00:00Z".parse().expect("a valid time");
    model::Ticket {
        tenant: "acme".into(),
        subject: subject.into(),
        category: Some("billing".into()),
        channel: model::TicketChannel::Email,
        messages: bodies
            .iter()
            .enumerate()
            .map(|(i, b)| model::Message {
                id: format!("m{i}"),
                author: model::AuthorKind::Customer,
                author_id: None,
                body: (*b).into(),
                sent_at: t0 + chrono::Duration::minutes(i as i64),
                sentiment: None,
            })
            .collect(),
        ..model::Ticket::new("T-42", t0)
    }
}

/// The WIT context at `noon()` with `config`.
pub fn ctx(config: &str) -> wit::Context {
    contract::context(noon(), model::EventKind::MessageAdded, config.into())
}

/// Run a trigger on a ticket with the subject `subject`.
pub fn evaluate(p: &LoadedPlugin, subject: &str) -> escalator::runtime::Outcome<wit::Evaluation> {
    runtime().evaluate(
        &p.plugin,
        &std::sync::Arc::new(contract::ticket(&ticket(subject, &["hello"]))),
        &ctx(&p.config_json),
    )
}

/// Install Debian packages the test needs (as root, or with passwordless
/// sudo), waiting for the package lock if another test holds it, and
/// refreshing the package lists once if the first attempt fails.
pub fn apt_install(packages: &[&str]) {
    use std::process::Command;
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        cmd.args(["-q", "-y", "-o", "DPkg::Lock::Timeout=600"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
    };
    let mut install = vec!["install"];
    install.extend_from_slice(packages);
    let ok =
        |o: &std::io::Result<std::process::Output>| o.as_ref().is_ok_and(|o| o.status.success());
    let first = apt(&install);
    if ok(&first) {
        return;
    }
    let _ = apt(&["update"]);
    let second = apt(&install);
    assert!(
        ok(&second),
        "apt-get install {packages:?} failed (the test needs them; install them or run as root): {:?}",
        second.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
    );
}

/// A core module whose one function, taking and returning nothing, is
/// exported as `name`.
fn module_exporting(name: &str) -> wasm_encoder::Module {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, Module,
        TypeSection,
    };
    let mut types = TypeSection::new();
    types.ty().function([], []);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut exports = ExportSection::new();
    exports.export(name, ExportKind::Func, 0);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instruction(&Instruction::End);
    code.function(&f);
    let mut m = Module::new();
    m.section(&types)
        .section(&funcs)
        .section(&exports)
        .section(&code);
    m
}

/// The bytes of a core module (not a component) exporting `name`.
pub fn core_module_exporting(name: &str) -> Vec<u8> {
    module_exporting(name).finish()
}

/// A component that imports `instance` (an instance exporting one function
/// `handle`) and holds a core module exporting `evaluate`; `None`: an
/// empty component.
pub fn component_importing(instance: Option<&str>) -> Vec<u8> {
    use wasm_encoder::{
        Component, ComponentImportSection, ComponentTypeRef, ComponentTypeSection, InstanceType,
        ModuleSection,
    };
    let mut c = Component::new();
    if let Some(name) = instance {
        let mut inst = InstanceType::new();
        inst.ty()
            .function()
            .params(std::iter::empty::<(&str, wasm_encoder::ComponentValType)>())
            .result(None);
        inst.export("handle", ComponentTypeRef::Func(0));
        let mut types = ComponentTypeSection::new();
        types.instance(&inst);
        let mut imports = ComponentImportSection::new();
        imports.import(name, ComponentTypeRef::Instance(0));
        c.section(&types).section(&imports);
        c.section(&ModuleSection(&module_exporting("evaluate")));
    }
    c.finish()
}

/// A PostgreSQL server of this test process's own, on loopback: installed
/// from Debian's `postgresql` package if it is not there, its cluster
/// initialised in a temporary directory (as the `postgres` user when the
/// tests run as root, since PostgreSQL refuses to run as root), and
/// stopped when the test process ends.
pub struct Postgres {
    port: u16,
    next: std::sync::atomic::AtomicUsize,
    _dir: tempfile::TempDir,
    _server: std::process::Child,
}

/// The directory of PostgreSQL's programs (`initdb`, `postgres`).
fn postgres_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists())
        .collect();
    found.sort();
    found.pop()
}

impl Postgres {
    /// The process's server, started on first use.
    pub fn get() -> &'static Postgres {
        static PG: OnceLock<Postgres> = OnceLock::new();
        PG.get_or_init(Postgres::start)
    }

    fn start() -> Postgres {
        use std::process::{Command, Stdio};
        let bin = postgres_bin().unwrap_or_else(|| {
            apt_install(&["postgresql"]);
            postgres_bin().expect("postgresql installed, but no initdb under /usr/lib/postgresql")
        });
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout == b"0\n")
            .unwrap_or(false);
        // As root, run as `postgres` (the package creates the user).
        let as_owner = |program: &std::path::Path| {
            if root {
                let mut c = Command::new("runuser");
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            } else {
                Command::new(program)
            }
        };
        let dir = tempfile::tempdir().expect("a temp dir");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        if root {
            let chown = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(chown.success(), "chown of the cluster's directory failed");
        }
        let init = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "escalator", "-E", "UTF8", "--no-sync"])
            .output()
            .expect("initdb runs");
        assert!(
            init.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        // A free port on loopback; the server binds it right after.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // `sh` holds the server and stops it when this process's end of
        // its stdin closes, that is when the test process exits, however
        // it exits; then it removes the cluster (600 MB: the process's
        // statics, this among them, are never dropped).
        let script = format!(
            "{} -D {} -h 127.0.0.1 -p {port} -k {} -c fsync=off -c max_connections=200 \
             >{}/log 2>&1 & pid=$!; cat >/dev/null; kill -INT $pid; wait $pid; rm -rf {}",
            bin.join("postgres").display(),
            data.display(),
            dir.path().display(),
            dir.path().display(),
            dir.path().display(),
        );
        let server = as_owner(std::path::Path::new("sh"))
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .spawn()
            .expect("the server starts");
        let url = format!("postgres://escalator@127.0.0.1:{port}/postgres");
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            match postgres::Client::connect(&url, postgres::NoTls) {
                Ok(_) => break,
                Err(_) if std::time::Instant::now() < until => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(e) => panic!(
                    "PostgreSQL did not accept connections within 60 s: {e}; its log: {}",
                    std::fs::read_to_string(dir.path().join("log")).unwrap_or_default()
                ),
            }
        }
        Postgres {
            port,
            next: std::sync::atomic::AtomicUsize::new(0),
            _dir: dir,
            _server: server,
        }
    }

    /// The URL of a new, empty database of its own.
    pub fn database(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("test_{}_{n}", std::process::id());
        let admin = format!("postgres://escalator@127.0.0.1:{}/postgres", self.port);
        let mut c = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
        format!("postgres://escalator@127.0.0.1:{}/{name}", self.port)
    }
}

/// A database of one backend, for the tests that run on both:
/// [`Db::open`] opens a store on it as an instance would, and
/// [`Db::data_dir`] gives an `escalator serve` data directory that uses it.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub fn sqlite() -> Db {
        Db::Sqlite(tempfile::tempdir().unwrap())
    }

    pub fn postgres() -> Db {
        Db::Postgres(Postgres::get().database())
    }

    /// A store on this database.
    pub fn open(&self) -> Arc<Store> {
        match self {
            Db::Sqlite(dir) => Arc::new(
                SqliteStore::open(&dir.path().join("escalator.db"), Durability::Process).unwrap(),
            ),
            Db::Postgres(url) => Arc::new(PgStore::open(url, Durability::Process).unwrap()),
        }
    }

    /// A data directory for `escalator serve` on this database (a
    /// PostgreSQL one names it in `data/.database`, which
    /// [`crate::serve::Escalator`] passes as `--database`).
    pub fn data_dir(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        if let Db::Postgres(url) = self {
            std::fs::write(data.join(".database"), url).unwrap();
        }
        (dir, data)
    }

    /// Another store on the same database: a second instance.
    pub fn again(&self) -> Arc<Store> {
        self.open()
    }
}

/// Each test once per backend, as `sqlite::NAME` and `postgres::NAME`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $name() {
                super::$name(&$crate::support::Db::sqlite())
            })*
        }
        mod postgres {
            $(#[test]
            fn $name() {
                super::$name(&$crate::support::Db::postgres())
            })*
        }
    };
}

/// The first `n` tickets of a file of `../shared/data` (the public data
/// sets beside the repository), read as `format`.
pub fn shared_cases(
    name: &str,
    format: escalator::replay::Format,
    n: usize,
) -> Vec<escalator::replay::Case> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(name);
    let mut out = Vec::new();
    escalator::replay::read(&path, format, Some(n), n, |c| {
        out.extend(c);
        Ok(())
    })
    .unwrap();
    assert_eq!(out.len(), n, "{name}");
    out
}

/// The first `n` tickets of a shared data file replayed through the
/// default plugins on `runtime` with `matrix`: each ticket's end, as JSON
/// (without the calls made again for a busy machine: not the decision).
pub fn replayed(
    runtime: &Runtime,
    matrix: &escalator::matrix::Matrix,
    name: &str,
    format: escalator::replay::Format,
    n: usize,
) -> Vec<serde_json::Value> {
    use escalator::replay;
    let set = replay::plugin_set(runtime, matrix, None).unwrap();
    let targets = matrix.response_targets();
    let offline = replay::Offline {
        runtime,
        set: &set,
        roster: &[],
        targets: &targets,
    };
    replay::replay_batch(&offline, &shared_cases(name, format, n))
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r).unwrap();
            v.as_object_mut().unwrap().remove("deadline_retries");
            v
        })
        .collect()
}

/// An engine with the default plugins and matrix on `store`, its clock
/// stopped at `now` (RFC 3339).
pub fn builtin_engine(
    store: Arc<Store>,
    runtime: &Arc<Runtime>,
    now: &str,
) -> escalator::engine::Engine {
    builtin_engine_on(
        store,
        runtime,
        escalator::clock::Clock::manual(now.parse().unwrap()),
    )
}

/// An engine with the default plugins and matrix on `store`, reading
/// `clock`.
pub fn builtin_engine_on(
    store: Arc<Store>,
    runtime: &Arc<Runtime>,
    clock: escalator::clock::Clock,
) -> escalator::engine::Engine {
    escalator::engine::Engine::new(
        store,
        runtime.clone(),
        clock,
        registry::load_builtin(runtime).unwrap(),
        escalator::matrix::Matrix::default_matrix(),
    )
    .unwrap()
}
