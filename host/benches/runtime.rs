//! The cost of one plugin call, for a 1 KB and a 100 KB ticket:
//! - `fresh`: a new store and instance, then the call: what production does;
//! - `reused`: the call alone on a live instance (fuel and deadline reset);
//! - `native`: the same plugin's logic compiled natively, no wasm at all;
//! - `floor`: a plugin that returns at once, with a 1 KB ticket copied in,
//!   in a fresh instance and in a reused one;
//! - `phrases-defaults`: the plugin with its built-in 14 phrases instead of
//!   the shipped manifest's 35;
//! - `after-bomb`: fresh calls right after a memory bomb filled pool slots;
//! - `learned`: the `learned` trigger with both heads of a model fitted on
//!   the Hadoop bug reports of 2020-21 (its 1.1 MB of weights in the
//!   component's memory image), fresh and native, beside `phrases`.
//!
//! Run: `cargo bench -p escalator --bench runtime`.

mod support;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use escalator::model;
use escalator::pipeline::contract;
use escalator::registry;
use escalator::runtime::{Runtime, RuntimeConfig, wit};
use escalator_guest as guest;
use std::hint::black_box;
use std::path::Path;

/// Realistic support text: a customer, the AI agent, the customer again.
const LINES: &[&str] = &[
    "We were charged twice for our November invoice and nobody has answered my last two emails about it.",
    "I'm sorry to hear that! Refunds usually take five to seven business days. Could you share the invoice number?",
    "I already sent the invoice number yesterday. Our finance team is asking me every hour what is going on.",
    "Thank you for your patience. I can see the duplicate charge and I have asked the billing team to review it.",
    "Honestly this is the third time this quarter. If this is not fixed today I will cancel my account.",
];

/// A ticket of about `bytes` bytes of text in five messages, ending with an
/// escalation phrase so the plugin does its full work.
fn ticket(bytes: usize) -> model::Ticket {
    let t0: chrono::DateTime<chrono::Utc> = "2026-11-27T09:00:00Z".parse().unwrap();
    let per_message = bytes / LINES.len();
    let messages = LINES
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let body = support::filled(line, per_message);
            model::Message {
                id: format!("m{i}"),
                author: if i % 2 == 0 {
                    model::AuthorKind::Customer
                } else {
                    model::AuthorKind::AiAgent
                },
                author_id: None,
                body,
                sent_at: t0 + chrono::Duration::minutes(i as i64),
                sentiment: None,
            }
        })
        .collect();
    model::Ticket {
        tenant: "acme".into(),
        subject: "Charged twice".into(),
        category: Some("billing".into()),
        channel: model::TicketChannel::Email,
        messages,
        ..model::Ticket::new("T-1", t0)
    }
}

/// The same ticket as the guest SDK's native types.
fn native_ticket(t: &model::Ticket) -> guest::Ticket {
    guest::Ticket {
        subject: t.subject.clone(),
        category: t.category.clone(),
        messages: t
            .messages
            .iter()
            .map(|m| {
                let author = match m.author {
                    model::AuthorKind::Customer => guest::AuthorKind::Customer,
                    _ => guest::AuthorKind::AiAgent,
                };
                guest::testing::message(author, &m.body, m.sent_at.timestamp_millis())
            })
            .collect(),
        ..guest::testing::ticket()
    }
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let b = registry::builtin("phrases").unwrap();
    let phrases = registry::load_parts(
        &runtime,
        b.manifest,
        Path::new("phrases"),
        b.wasm,
        "phrases".into(),
    )
    .unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
    let ctx = contract::context(
        now,
        model::EventKind::MessageAdded,
        phrases.config_json.to_string(),
    );
    let native_config: escalator_plugin_phrases::Config =
        guest::parse_config(&phrases.config_json).unwrap();
    let native_ctx = guest::Ctx::new(
        now.timestamp_millis(),
        guest::EventKind::MessageAdded,
        native_config,
    );

    // Reused instances get a runtime (and so a pool) of their own: an
    // instance kept alive for thousands of calls grows its memory without
    // bound, which would skew the fresh-instance numbers measured after it.
    let reuse_runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let reuse_phrases = registry::load_parts(
        &reuse_runtime,
        b.manifest,
        Path::new("phrases"),
        b.wasm,
        "phrases".into(),
    )
    .unwrap();

    let mut group = c.benchmark_group("phrases");
    for (label, size) in [("1KB", 1_000), ("100KB", 100_000)] {
        let t = ticket(size);
        let wit_ticket = std::sync::Arc::new(contract::ticket(&t));
        let native = native_ticket(&t);
        let bytes: usize = t.messages.iter().map(|m| m.body.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));

        // Same answer three ways, or the comparison means nothing.
        let wasm_out = runtime
            .evaluate(&phrases.plugin, &wit_ticket, &ctx)
            .result
            .unwrap();
        let native_out =
            <escalator_plugin_phrases::Phrases as guest::Trigger>::evaluate(&native, &native_ctx)
                .unwrap();
        assert_eq!(wasm_out.signals.len(), native_out.signals.len());
        assert_eq!(wasm_out.signals[0].reason, native_out.signals[0].reason);

        group.bench_function(BenchmarkId::new("fresh", label), |b| {
            b.iter(|| {
                black_box(
                    runtime
                        .evaluate(&phrases.plugin, black_box(&wit_ticket), &ctx)
                        .result
                        .unwrap(),
                )
            })
        });
        // The same fresh call on the caller's thread: what the call thread,
        // the share and the watchdog cost.
        group.bench_function(BenchmarkId::new("fresh-on-caller-thread", label), |b| {
            b.iter(|| {
                black_box(
                    runtime
                        .evaluate_on_this_thread(&phrases.plugin, black_box(&wit_ticket), &ctx)
                        .result
                        .unwrap(),
                )
            })
        });
        let mut reused = reuse_runtime.reused_trigger(&reuse_phrases.plugin).unwrap();
        group.bench_function(BenchmarkId::new("reused", label), |b| {
            b.iter(|| black_box(reused.evaluate(black_box(&wit_ticket), &ctx).unwrap()))
        });
        group.bench_function(BenchmarkId::new("native", label), |b| {
            b.iter(|| {
                black_box(
                    <escalator_plugin_phrases::Phrases as guest::Trigger>::evaluate(
                        black_box(&native),
                        &native_ctx,
                    )
                    .unwrap(),
                )
            })
        });
    }
    group.finish();

    // The same plugin with its built-in defaults (14 phrases) instead of the
    // shipped manifest's 35: a plain keyword scan.
    let defaults_ctx = contract::context(now, model::EventKind::MessageAdded, "{}".into());
    let mut group = c.benchmark_group("phrases-defaults");
    for (label, size) in [("1KB", 1_000), ("100KB", 100_000)] {
        let t = ticket(size);
        let wit_ticket = std::sync::Arc::new(contract::ticket(&t));
        let native = native_ticket(&t);
        group.bench_function(BenchmarkId::new("fresh", label), |b| {
            b.iter(|| {
                black_box(
                    runtime
                        .evaluate(&phrases.plugin, black_box(&wit_ticket), &defaults_ctx)
                        .result
                        .unwrap(),
                )
            })
        });
        group.bench_function(BenchmarkId::new("native", label), |b| {
            b.iter(|| {
                let config: escalator_plugin_phrases::Config =
                    guest::parse_config(black_box("{}")).unwrap();
                let ctx = guest::Ctx::new(native_ctx.now, native_ctx.event, config);
                black_box(
                    <escalator_plugin_phrases::Phrases as guest::Trigger>::evaluate(
                        black_box(&native),
                        &ctx,
                    )
                    .unwrap(),
                )
            })
        });
    }
    group.finish();

    // The floor: a plugin that answers at once ("behave" subject of the
    // hostile test guest), 1 KB ticket copied in.
    let guests = Path::new(env!("ESCALATOR_TEST_GUESTS"));
    let wasm = std::fs::read(guests.join("hostile/hostile.wasm")).unwrap();
    let manifest = "name = \"noop\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n";
    let noop =
        registry::load_parts(&runtime, manifest, Path::new("noop"), &wasm, "noop".into()).unwrap();
    let mut t = ticket(1_000);
    t.subject = "behave".into();
    let wit_ticket = std::sync::Arc::new(contract::ticket(&t));
    let noop_ctx: wit::Context =
        contract::context(now, model::EventKind::MessageAdded, "{}".into());
    let mut group = c.benchmark_group("floor");
    group.bench_function("instantiate+return/1KB", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .evaluate(&noop.plugin, &wit_ticket, &noop_ctx)
                    .result
                    .unwrap(),
            )
        })
    });
    let reuse_noop = registry::load_parts(
        &reuse_runtime,
        manifest,
        Path::new("noop"),
        &wasm,
        "noop".into(),
    )
    .unwrap();
    let mut reused = reuse_runtime.reused_trigger(&reuse_noop.plugin).unwrap();
    group.bench_function("return/1KB", |b| {
        b.iter(|| black_box(reused.evaluate(&wit_ticket, &noop_ctx).unwrap()))
    });
    group.finish();

    // A hostile plugin that grows its memory to the cap (20 times) must not
    // slow down the calls of other plugins that follow it in the pool.
    let bomb = registry::load_parts(
        &runtime,
        "name = \"bomb\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n",
        Path::new("bomb"),
        &wasm,
        "bomb".into(),
    )
    .unwrap();
    let mut bt = ticket(1_000);
    bt.subject = "membomb".into();
    let bomb_ticket = std::sync::Arc::new(contract::ticket(&bt));
    for _ in 0..20 {
        assert!(
            runtime
                .evaluate(&bomb.plugin, &bomb_ticket, &noop_ctx)
                .result
                .is_err()
        );
    }
    let small = std::sync::Arc::new(contract::ticket(&ticket(1_000)));
    let mut group = c.benchmark_group("after-bomb");
    group.bench_function("phrases-defaults/fresh/1KB", |b| {
        b.iter(|| {
            black_box(
                runtime
                    .evaluate(&phrases.plugin, &small, &defaults_ctx)
                    .result
                    .unwrap(),
            )
        })
    });
    group.finish();
}

/// The learned trigger with a model fitted on the Hadoop reports of
/// 2020-21, fresh and native, on the same tickets as `phrases`.
fn bench_learned(c: &mut Criterion) {
    use escalator::learn;
    let cache = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let csv =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/hadoop_bugs_2020_2022.csv");
    let mut cases = Vec::new();
    escalator::replay::read(&csv, escalator::replay::Format::Hadoop, None, 4096, |b| {
        cases.extend(b);
        Ok(())
    })
    .expect("the Hadoop reports in ../shared/data");
    let examples = learn::examples(&cases);
    let cut = "2022-01-01T00:00:00Z".parse().unwrap();
    let (fit_part, _) = learn::split(&examples, Some(cut), 0.0);
    let urgency = learn::fit(&fit_part, 0.3, 300, learn::Weighting::Balanced);
    let class = learn::fit(&fit_part, 10.0, 300, learn::Weighting::Plain);
    let image = learn::image(&urgency, &class, 0.32, 1.2, fit_part.len()).unwrap();
    let wasm = learn::component(&image).unwrap();
    let manifest = "name = \"learned\"\nkind = \"trigger\"\nversion = \"1.0.0\"\n";
    let learned = registry::load_parts(
        &runtime,
        manifest,
        Path::new("learned"),
        &wasm,
        "learned".into(),
    )
    .unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-11-27T12:00:00Z".parse().unwrap();
    let ctx = contract::context(now, model::EventKind::MessageAdded, "{}".into());
    let model = guest::classify::Model::read(&image).unwrap().unwrap();
    let config = escalator_plugin_learned::Config::default();
    let mut group = c.benchmark_group("learned");
    for (label, size) in [("1KB", 1_000), ("100KB", 100_000)] {
        let t = ticket(size);
        let wit_ticket = std::sync::Arc::new(contract::ticket(&t));
        let native = native_ticket(&t);
        let bytes: usize = t.messages.iter().map(|m| m.body.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        let wasm_out = runtime
            .evaluate(&learned.plugin, &wit_ticket, &ctx)
            .result
            .unwrap();
        let native_out = escalator_plugin_learned::evaluate_with(&model, &native, &config);
        assert_eq!(wasm_out.signals.len(), native_out.signals.len());
        if let (Some(w), Some(n)) = (wasm_out.signals.first(), native_out.signals.first()) {
            assert_eq!(w.reason, n.reason, "the same model, the same answer");
        }
        group.bench_function(BenchmarkId::new("fresh", label), |b| {
            b.iter(|| {
                black_box(
                    runtime
                        .evaluate(&learned.plugin, black_box(&wit_ticket), &ctx)
                        .result
                        .unwrap(),
                )
            })
        });
        group.bench_function(BenchmarkId::new("native", label), |b| {
            b.iter(|| {
                black_box(escalator_plugin_learned::evaluate_with(
                    &model,
                    black_box(&native),
                    &config,
                ))
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(3));
    targets = bench, bench_learned
}
criterion_main!(benches);
