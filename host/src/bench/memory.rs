//! `escalator bench-memory`: what registered plugins cost in memory. It
//! loads `--tenants` × `--plugins` plugins the way the server registers
//! them (five default triggers, each tenant with its own manifest), keeps
//! them all, and reports the process's resident memory per plugin, the
//! time a load took and what one tenant's evaluation then costs.
//!
//! - `--distinct`: every plugin has bytes of its own (a unique custom
//!   section, as distinct uploaded versions have): each is compiled (its
//!   functions come from the function cache) and kept as code of its own.
//! - otherwise tenants run the same components with their own manifests
//!   (the defaults, tuned): the code is shared.

use super::with_custom_section;
use crate::model;
use crate::pipeline::contract;
use crate::registry;
use crate::runtime::{Runtime, RuntimeConfig};
use anyhow::{Context as _, Result};
use std::time::Instant;

/// Flags of `escalator bench-memory`.
#[derive(Debug, Clone, clap::Args)]
pub struct MemoryArgs {
    /// Tenants.
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    /// Plugins per tenant (at most 5: the default triggers).
    #[arg(long, default_value_t = 5)]
    pub plugins: usize,
    /// Give every plugin bytes of its own (distinct versions).
    #[arg(long)]
    pub distinct: bool,
    /// Keep at most this much compiled code in memory, MiB (0: all); the
    /// rest is loaded again from the artifact cache when called.
    #[arg(long, default_value_t = 0)]
    pub resident_mib: usize,
}

/// The process's resident memory, bytes (Linux; 0 elsewhere).
fn rss() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Run the benchmark and print its numbers.
pub fn run(args: &MemoryArgs) -> Result<i32> {
    const TRIGGERS: [&str; 5] = [
        "phrases",
        "sentiment",
        "ai-confidence",
        "churn-risk",
        "customer-value",
    ];
    anyhow::ensure!(
        (1..=TRIGGERS.len()).contains(&args.plugins),
        "--plugins: 1 to {}",
        TRIGGERS.len()
    );
    let dir = tempfile::Builder::new()
        .prefix("escalator-bench-memory")
        .tempdir()?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(dir.path().join("cache")),
        resident_code_bytes: args.resident_mib << 20,
        ..RuntimeConfig::default()
    })?;
    let before = rss();
    let started = Instant::now();
    let mut loaded = Vec::with_capacity(args.tenants * args.plugins);
    let mut slowest = 0f64;
    for t in 0..args.tenants {
        for name in &TRIGGERS[..args.plugins] {
            let b = registry::builtin(name).with_context(|| format!("built-in {name}"))?;
            let wasm = if args.distinct {
                with_custom_section(b.wasm, "bench-id", format!("t{t}").as_bytes())
            } else {
                b.wasm.to_vec()
            };
            let at = Instant::now();
            let p = registry::load_parts(
                &runtime,
                b.manifest,
                std::path::Path::new(name),
                &wasm,
                format!("t{t}/{name}"),
            )?;
            slowest = slowest.max(at.elapsed().as_secs_f64() * 1000.0);
            loaded.push(p);
        }
    }
    let took = started.elapsed();
    let after = rss();
    let n = loaded.len();
    // A tenant's plugins, evaluated once each: the last tenant loaded
    // (its code in memory), then the first (with a budget, its code was
    // dropped long ago: loaded again from the artifact cache).
    let ticket = std::sync::Arc::new(contract::ticket(&model::Ticket {
        subject: "Charged twice, this is unacceptable".into(),
        category: Some("billing".into()),
        ..model::Ticket::new("T-1", chrono::Utc::now())
    }));
    let evaluate = |plugins: &[registry::LoadedPlugin]| -> Result<f64> {
        let at = Instant::now();
        for p in plugins {
            let ctx = contract::context(
                chrono::Utc::now(),
                model::EventKind::TicketCreated,
                p.config_json.to_string(),
            );
            runtime
                .evaluate(&p.plugin, &ticket, &ctx)
                .result
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(at.elapsed().as_secs_f64() * 1000.0)
    };
    let warm_ms = evaluate(&loaded[n - args.plugins..])?;
    let cold_ms = evaluate(&loaded[..args.plugins])?;
    let after_calls = rss();
    println!(
        "bench-memory: {} tenants x {} plugins ({}), {n} plugins registered",
        args.tenants,
        args.plugins,
        if args.distinct {
            "every plugin its own bytes"
        } else {
            "tenants share the components"
        }
    );
    println!(
        "  resident memory: {:.1} MiB before, {:.1} MiB after: {:.1} KiB per plugin",
        before as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / 1024.0 / n as f64
    );
    println!(
        "  loading: {:.2} s in all, {:.2} ms per plugin, the slowest {slowest:.1} ms",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / n as f64
    );
    println!(
        "  one tenant's {} plugins evaluated once each: the last tenant {warm_ms:.2} ms, the first {cold_ms:.2} ms",
        args.plugins
    );
    let r = runtime.resident_code();
    if r.budget > 0 {
        println!(
            "  resident code: {} components, {:.1} MiB of a {:.0} MiB budget; {:.1} MiB resident after those calls",
            r.components,
            r.bytes as f64 / 1048576.0,
            r.budget as f64 / 1048576.0,
            after_calls as f64 / 1048576.0
        );
    }
    if let Some(f) = runtime.function_cache() {
        println!(
            "  function cache: {} found compiled, {} compiled",
            f.hits, f.misses
        );
    }
    Ok(0)
}
