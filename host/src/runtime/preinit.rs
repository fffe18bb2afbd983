//! A plugin's configuration parsed once per version instead of once per
//! call: pre-initialisation.
//!
//! A component of a `configurable-*` world exports `configure` (the trigger
//! set: `configure-each`), which parses the configuration text and keeps
//! it in the instance's memory. At load, the host instruments the
//! component (Wizer: exports that read its globals and memories), calls
//! `configure` once in a sandboxed store (the plugin's own fuel, memory cap
//! and deadline, the same imports as a call), reads the instance's state,
//! and writes it into a new component whose initial memory is that state.
//! Every fresh instance of the new component maps it copy-on-write, so a
//! call whose configuration is the text that was kept finds it parsed; a
//! call with other text (another tenant's escalation matrix, say) parses
//! its own, as before. The new component is compiled and cached under a
//! digest of the original's digest and the text, so a restart finds it.
//!
//! Nothing here can make a plugin answer differently: if the component has
//! no such export, imports WASI, refuses the text, traps, runs out of fuel
//! or time, or Wizer cannot rewrite it, the plugin keeps its original code
//! (and parses its configuration per call).

use super::Limits;
use super::cache::wasm_digest;
use super::sandbox::CallState;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use wasmtime::component::{Component, Instance, Linker, WasmList};
use wasmtime::{Engine, Store};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

/// What to parse ahead: one plugin's configuration, or each of a trigger
/// set's triggers' (by name).
#[derive(Debug, Clone, Copy)]
pub enum Configure<'a> {
    /// Nothing: the plugin parses its configuration per call.
    Nothing,
    /// `configure(text)`.
    One(&'a str),
    /// `configure-each([(name, text)])`.
    Each(&'a [(String, String)]),
}

impl Configure<'_> {
    /// The export it calls, if any.
    pub(super) fn export(&self) -> Option<&'static str> {
        match self {
            Configure::Nothing => None,
            Configure::One(_) => Some("configure"),
            Configure::Each(_) => Some("configure-each"),
        }
    }

    /// The digest the pre-initialised component is kept under: the
    /// original's and the text's, so the same bytes configured the same way
    /// (by any tenant) share it.
    pub(super) fn digest(&self, original: &str) -> String {
        let mut key = format!("{original}\0configured\0");
        match self {
            Configure::Nothing => {}
            Configure::One(text) => key.push_str(text),
            Configure::Each(each) => {
                for (name, text) in *each {
                    key.push_str(name);
                    key.push('\0');
                    key.push_str(text);
                    key.push('\0');
                }
            }
        }
        wasm_digest(key.as_bytes())
    }
}

/// The engine `configure` runs on: the instrumented component it runs in
/// is compiled for this one call and thrown away, so it is compiled
/// without optimisation (a fraction of the time) and without the function
/// cache; fuel, epochs and the memory cap bound it as they bound a call.
pub(super) struct Preinit {
    engine: Engine,
    linker: Linker<CallState>,
}

impl Preinit {
    pub(super) fn new(epoch_tick: Duration) -> wasmtime::Result<Preinit> {
        let mut c = wasmtime::Config::new();
        c.wasm_component_model(true);
        c.strategy(wasmtime::Strategy::Winch);
        c.consume_fuel(true);
        c.epoch_interruption(true);
        c.max_wasm_stack(1 << 20);
        c.parallel_compilation(true);
        let engine = Engine::new(&c)?;
        let linker = super::sandbox::linker(&engine)?;
        super::engine::spawn_epoch_ticker(&engine, epoch_tick)?;
        Ok(Preinit { engine, linker })
    }
}

/// Whether the component `wasm` exports `export` and imports no WASI, from
/// its top-level sections alone (no compile): whether pre-initialising it
/// is worth trying.
pub fn worth_trying(wasm: &[u8], export: &str) -> bool {
    use wasmparser::{Parser, Payload};
    let (mut depth, mut exports, mut wasi) = (0usize, false, false);
    for payload in Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else { return false };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for e in reader.into_iter().flatten() {
                    exports |= e.name.0 == export;
                }
            }
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for i in reader.into_iter().flatten() {
                    wasi |= super::sandbox::is_wasi(i.name.0);
                }
            }
            _ => {}
        }
    }
    exports && !wasi
}

/// `wasm` with `configure` called and its state kept as the initial state:
/// the new component's bytes. `Ok(None)` when the component refuses the
/// text (its calls will report the error, as they would without this).
pub(super) fn preinitialize(
    Preinit { engine, linker }: &Preinit,
    wasm: &[u8],
    configure: Configure<'_>,
    limits: &Limits,
    epoch_tick: Duration,
) -> wasmtime::Result<Option<Vec<u8>>> {
    let Some(export) = configure.export() else {
        return Ok(None);
    };
    let wizer = Wizer::new();
    let (cx, instrumented) = wizer.instrument_component(wasm)?;
    let component = Component::new(engine, &instrumented)?;
    let mut store = Store::new(
        engine,
        CallState::new(0, 0, limits.memory_bytes, limits.log_bytes),
    );
    store.limiter(|s| &mut s.limiter);
    let ticks = u64::try_from(
        limits
            .timeout
            .as_nanos()
            .div_ceil(epoch_tick.as_nanos().max(1)),
    )
    .unwrap_or(u64::MAX);
    let budget = |store: &mut Store<CallState>| -> wasmtime::Result<()> {
        store.set_fuel(limits.fuel)?;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
        Ok(())
    };
    budget(&mut store)?;
    let instance = linker.instantiate(&mut store, &component)?;
    let accepted = match configure {
        Configure::Nothing => false,
        Configure::One(text) => {
            let f =
                instance.get_typed_func::<(&str,), (Result<(), String>,)>(&mut store, export)?;
            let (answer,) = f.call(&mut store, (text,))?;
            answer.is_ok()
        }
        Configure::Each(each) => {
            let f = instance.get_typed_func::<(&[(String, String)],), (Vec<Result<(), String>>,)>(
                &mut store, export,
            )?;
            let (answers,) = f.call(&mut store, (each,))?;
            // Each trigger refused is left to parse its own; the others
            // are kept.
            answers.iter().any(Result::is_ok)
        }
    };
    if !accepted {
        return Ok(None);
    }
    // Reading the state runs the instrumentation's exports: a budget of
    // their own, so a `configure` that spent its fuel cannot stop it.
    budget(&mut store)?;
    let mut state = State {
        store: &mut store,
        instance,
        failed: None,
    };
    let snapshot = finished(wizer.snapshot_component(&cx, &mut state))??;
    match state.failed {
        Some(e) => Err(e),
        None => Ok(Some(snapshot)),
    }
}

/// The instance's state, read through the exports Wizer added (plain
/// calls: nothing here waits). The trait cannot fail, so the first error
/// is kept and the snapshot thrown away.
struct State<'a> {
    store: &'a mut Store<CallState>,
    instance: Instance,
    failed: Option<wasmtime::Error>,
}

impl State<'_> {
    fn call<R: wasmtime::component::Lift + 'static, O: Default>(
        &mut self,
        instance: &str,
        func: &str,
        then: impl FnOnce(&mut Store<CallState>, R) -> O,
    ) -> O {
        if self.failed.is_some() {
            return O::default();
        }
        let read = (|| -> wasmtime::Result<R> {
            let (_, inst) = self
                .instance
                .get_export(&mut *self.store, None, instance)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}"))?;
            let (_, f) = self
                .instance
                .get_export(&mut *self.store, Some(&inst), func)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}#{func}"))?;
            let f = self
                .instance
                .get_typed_func::<(), (R,)>(&mut *self.store, f)?;
            let (r,) = f.call(&mut *self.store, ())?;
            Ok(r)
        })();
        match read {
            Ok(r) => then(self.store, r),
            Err(e) => {
                self.failed = Some(e);
                O::default()
            }
        }
    }
}

impl ComponentInstanceState for State<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(c) = contents.take() {
                c(list.as_le_slice(&*store));
            }
        });
        // Wizer expects the contents either way.
        if let Some(c) = contents {
            c(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, r| r)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, r| r)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, r: f32| r.to_bits())
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, r: f64| r.to_bits())
    }
}

/// The output of a future that never waits (every call above is a plain
/// one), polled once.
fn finished<F: Future>(f: F) -> wasmtime::Result<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(wasmtime::format_err!("reading the instance's state waited")),
    }
}
