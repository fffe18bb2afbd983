//! The whole default pipeline per event, as the server decides it: the
//! nine default plugins (seven triggers, the `skills` router, the `tiered`
//! notifier) on a ticket that escalates, so the decision makes every call:
//! the triggers, the router, the notifier, and the triggers that depend on
//! the escalation again on the ticket as it then stands (10 calls).
//!
//! - `decide/fresh`: [`pipeline::decide`], each call in a fresh instance
//!   (what the server does); after the escalation only the triggers that
//!   depend on it (`depends-on-escalation`, here `sla`) are asked again;
//!   each plugin's configuration parsed ahead, in its memory image;
//! - `decide/fresh-handed-off`: the same, each call handed to a call
//!   thread and back (as calls that can block are), not run on the
//!   caller's thread;
//! - `decide/fresh-parsed`: the same, each call parsing its configuration;
//! - `triggers/fresh`: the seven triggers alone, as one batch;
//! - `triggers/reused`: the seven triggers on live instances (no
//!   instantiation), for what instantiation costs;
//! - `decide/native` and `triggers/native`: the same plugins compiled
//!   natively (their configurations parsed once, as a native host would),
//!   the ticket converted from the host's types as the call does.
//!
//! On a 1.4 KB ticket (a customer, the AI agent's analysis, five messages)
//! and a 100 KB one. Run: `cargo bench -p escalator --bench pipeline`.

mod support;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use escalator::matrix::Matrix;
use escalator::model;
use escalator::pipeline::{self, Ask, Deadlines, Input, PluginSet, contract};
use escalator::runtime::{Runtime, RuntimeConfig, wit};
use escalator_guest as guest;
use serde_json::json;
use std::collections::BTreeSet;
use std::hint::black_box;
use std::sync::Arc;

const NOW: &str = "2026-11-27T12:00:00Z";

/// A customer's billing dispute, the AI agent's answers, ~`bytes` of text.
fn state(bytes: usize) -> model::TicketState {
    let lines = [
        "We were charged twice for our November invoice and nobody has answered my last two emails about it.",
        "I'm sorry to hear that! Refunds usually take five to seven business days. Could you share the invoice number?",
        "I already sent the invoice number yesterday. Our finance team is asking me every hour what is going on.",
        "Thank you for your patience. I can see the duplicate charge and I have asked the billing team to review it.",
        "Honestly this is unacceptable, the third time this quarter. If this is not fixed today I will cancel my account.",
    ];
    let per = bytes.saturating_sub(400) / lines.len();
    let messages: Vec<_> = lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            let body = support::filled(line, per);
            json!({
                "id": format!("m{i}"),
                "author": if i % 2 == 0 { "customer" } else { "ai-agent" },
                "body": body,
                "sent_at": format!("2026-11-27T{:02}:00:00Z", 6 + i),
            })
        })
        .collect();
    let t: model::Ticket = serde_json::from_value(json!({
        "id": "T-1",
        "tenant": "acme",
        "subject": "Charged twice for November",
        "category": "billing",
        "channel": "email",
        "created_at": "2026-11-27T06:00:00Z",
        "messages": messages,
        "customer": {
            "id": "c-1", "name": "Globex", "plan": "enterprise",
            "mrr_cents": 1_250_000, "contacts_this_week": 3,
        },
        "ai_analysis": {
            "confidence": 0.42, "intent": "refund-request", "category": "billing",
            "reasoning": "duplicate charge; refund needs a human",
            "solutions_tried": ["explained refund timeline"],
        },
    }))
    .unwrap();
    pipeline::apply::created(t, "acme", NOW.parse().unwrap())
}

fn roster() -> Vec<model::Agent> {
    serde_json::from_value(json!([
        {"id": "ana", "name": "Ana", "skills": ["billing", "refunds"], "team": "billing", "open_tickets": 2},
        {"id": "bo", "name": "Bo", "skills": ["billing"], "team": "billing", "open_tickets": 5},
        {"id": "cy", "name": "Cy", "skills": ["technical"], "team": "engineering"},
        {"id": "dee", "name": "Dee", "role": "lead", "skills": ["billing"], "team": "billing"},
        {"id": "eli", "name": "Eli", "role": "manager", "team": "support"},
    ]))
    .unwrap()
}

// The host's WIT types as the guest SDK's (natively, the same records).

fn g_tier(t: wit::Tier) -> guest::Tier {
    match t {
        wit::Tier::Critical => guest::Tier::Critical,
        wit::Tier::High => guest::Tier::High,
        wit::Tier::Medium => guest::Tier::Medium,
        wit::Tier::Low => guest::Tier::Low,
    }
}

fn g_status(s: wit::TicketStatus) -> guest::TicketStatus {
    match s {
        wit::TicketStatus::New => guest::TicketStatus::New,
        wit::TicketStatus::Open => guest::TicketStatus::Open,
        wit::TicketStatus::Pending => guest::TicketStatus::Pending,
        wit::TicketStatus::OnHold => guest::TicketStatus::OnHold,
        wit::TicketStatus::Solved => guest::TicketStatus::Solved,
        wit::TicketStatus::Closed => guest::TicketStatus::Closed,
    }
}

fn g_ticket(t: &wit::Ticket) -> guest::Ticket {
    guest::Ticket {
        id: t.id.clone(),
        tenant: t.tenant.clone(),
        subject: t.subject.clone(),
        category: t.category.clone(),
        channel: match t.channel {
            wit::TicketChannel::Chat => guest::TicketChannel::Chat,
            wit::TicketChannel::Email => guest::TicketChannel::Email,
            wit::TicketChannel::Phone => guest::TicketChannel::Phone,
            wit::TicketChannel::Social => guest::TicketChannel::Social,
            wit::TicketChannel::Api => guest::TicketChannel::Api,
            wit::TicketChannel::WebForm => guest::TicketChannel::WebForm,
            wit::TicketChannel::Other => guest::TicketChannel::Other,
        },
        status: g_status(t.status),
        status_history: t
            .status_history
            .iter()
            .map(|c| guest::StatusChange {
                status: g_status(c.status),
                at: c.at,
            })
            .collect(),
        created_at: t.created_at,
        updated_at: t.updated_at,
        tier: t.tier.map(g_tier),
        assignee: t.assignee.clone(),
        claimed_at: t.claimed_at,
        tags: t.tags.clone(),
        messages: t
            .messages
            .iter()
            .map(|m| guest::Message {
                id: m.id.clone(),
                author: match m.author {
                    wit::AuthorKind::Customer => guest::AuthorKind::Customer,
                    wit::AuthorKind::AiAgent => guest::AuthorKind::AiAgent,
                    wit::AuthorKind::HumanAgent => guest::AuthorKind::HumanAgent,
                    wit::AuthorKind::System => guest::AuthorKind::System,
                },
                author_id: m.author_id.clone(),
                body: m.body.clone(),
                sent_at: m.sent_at,
                sentiment: m.sentiment,
            })
            .collect(),
        customer: t.customer.as_ref().map(|c| guest::Customer {
            id: c.id.clone(),
            name: c.name.clone(),
            plan: c.plan.clone(),
            mrr_cents: c.mrr_cents,
            trial: c.trial,
            contacts_this_week: c.contacts_this_week,
            created_at: c.created_at,
            attributes: c
                .attributes
                .iter()
                .map(|a| guest::Attribute {
                    key: a.key.clone(),
                    value: a.value.clone(),
                })
                .collect(),
        }),
        ai_analysis: t.ai_analysis.as_ref().map(|a| guest::AiAnalysis {
            confidence: a.confidence,
            intent: a.intent.clone(),
            category: a.category.clone(),
            reasoning: a.reasoning.clone(),
            solutions_tried: a.solutions_tried.clone(),
            analyzed_at: a.analyzed_at,
        }),
    }
}

fn g_agent(a: &wit::Agent) -> guest::Agent {
    guest::Agent {
        id: a.id.clone(),
        name: a.name.clone(),
        role: match a.role {
            wit::AgentRole::Agent => guest::AgentRole::Agent,
            wit::AgentRole::Lead => guest::AgentRole::Lead,
            wit::AgentRole::Manager => guest::AgentRole::Manager,
        },
        team: a.team.clone(),
        skills: a.skills.clone(),
        status: match a.status {
            wit::AgentStatus::Available => guest::AgentStatus::Available,
            wit::AgentStatus::Away => guest::AgentStatus::Away,
            wit::AgentStatus::Meeting => guest::AgentStatus::Meeting,
            wit::AgentStatus::OutOfOffice => guest::AgentStatus::OutOfOffice,
            wit::AgentStatus::Offline => guest::AgentStatus::Offline,
        },
        open_tickets: a.open_tickets,
        capacity: a.capacity,
        last_assigned_at: a.last_assigned_at,
        working_hours: Vec::new(),
        time_zone: a.time_zone.clone(),
        utc_offset_minutes: a.utc_offset_minutes,
    }
}

/// The seven default triggers, the router and the notifier natively, each
/// with its configuration parsed once from the JSON the wasm call is given.
type TriggerFn = Box<dyn Fn(&guest::Ticket) -> guest::Evaluation>;
type RouteFn = Box<dyn Fn(&guest::Ticket, &guest::Escalation, &[guest::Agent]) -> guest::Routing>;
type PlanFn = Box<
    dyn Fn(
        &guest::Ticket,
        &guest::Escalation,
        &guest::Routing,
        &[guest::Agent],
    ) -> guest::NotificationPlan,
>;

struct Native {
    triggers: Vec<TriggerFn>,
    /// Per trigger: asked again after an escalation (its manifest's
    /// `depends-on-escalation`), as the pipeline does.
    again: Vec<bool>,
    route: RouteFn,
    plan: PlanFn,
}

fn ctx<C: serde::de::DeserializeOwned + Default>(
    set: &PluginSet,
    name: &str,
    now: i64,
) -> guest::Ctx<C> {
    let p = set
        .triggers
        .iter()
        .chain(&set.router)
        .chain(&set.notifier)
        .find(|p| p.manifest.name == name)
        .unwrap_or_else(|| panic!("{name} is a default plugin"));
    let config = guest::parse_config(&p.config_json).unwrap();
    guest::Ctx::new(now, guest::EventKind::MessageAdded, config)
}

macro_rules! trigger {
    ($set:expr, $now:expr, $name:literal, $plugin:ty) => {{
        let c = ctx($set, $name, $now);
        Box::new(move |t: &guest::Ticket| <$plugin as guest::Trigger>::evaluate(t, &c).unwrap())
            as TriggerFn
    }};
}

impl Native {
    fn new(set: &PluginSet, now: i64) -> Native {
        let names: Vec<&str> = set
            .triggers
            .iter()
            .map(|p| p.manifest.name.as_str())
            .collect();
        let triggers = names
            .iter()
            .map(|name| match *name {
                "ai-confidence" => trigger!(
                    set,
                    now,
                    "ai-confidence",
                    escalator_plugin_ai_confidence::AiConfidence
                ),
                "churn-risk" => trigger!(
                    set,
                    now,
                    "churn-risk",
                    escalator_plugin_churn_risk::ChurnRisk
                ),
                "customer-value" => trigger!(
                    set,
                    now,
                    "customer-value",
                    escalator_plugin_customer_value::CustomerValue
                ),
                "phrases" => trigger!(set, now, "phrases", escalator_plugin_phrases::Phrases),
                "scenario" => trigger!(
                    set,
                    now,
                    "scenario",
                    escalator_plugin_scenario::ScenarioTrigger
                ),
                "sentiment" => {
                    trigger!(set, now, "sentiment", escalator_plugin_sentiment::Sentiment)
                }
                "sla" => trigger!(set, now, "sla", escalator_plugin_sla::Sla),
                other => panic!("no native build of {other}"),
            })
            .collect();
        let rc = ctx(set, "skills", now);
        let nc = ctx(set, "tiered", now);
        Native {
            triggers,
            again: set
                .triggers
                .iter()
                .map(|p| p.manifest.depends_on_escalation)
                .collect(),
            route: Box::new(move |t, e, r| {
                <escalator_plugin_skills::Skills as guest::Router>::route(t, e, r, &rc).unwrap()
            }),
            plan: Box::new(move |t, e, g, r| {
                <escalator_plugin_tiered::Tiered as guest::Notifier>::plan(t, e, g, r, &nc).unwrap()
            }),
        }
    }

    /// The triggers, then (on an escalation) the router, the notifier and
    /// the triggers again, converting the host's types as a call does.
    fn decide(
        &self,
        state: &model::TicketState,
        roster: &[model::Agent],
        now: chrono::DateTime<chrono::Utc>,
    ) -> usize {
        let ticket = g_ticket(&contract::ticket(&state.ticket));
        let first: Vec<guest::Evaluation> = self.triggers.iter().map(|f| f(&ticket)).collect();
        let signals: Vec<guest::Signal> = first.iter().flat_map(|e| e.signals.clone()).collect();
        let Some(tier) = signals
            .iter()
            .filter(|s| s.action == guest::SignalAction::Escalate)
            .map(|s| s.tier)
            .max_by_key(|t| *t as u8)
        else {
            return signals.len();
        };
        let roster: Vec<guest::Agent> = pipeline::wit_roster(roster, now)
            .iter()
            .map(g_agent)
            .collect();
        let escalation = guest::Escalation {
            tier,
            signals,
            response_target: Some(30 * 60_000),
        };
        let routing = (self.route)(&ticket, &escalation, &roster);
        let plan = (self.plan)(&ticket, &escalation, &routing, &roster);
        let mut planned = ticket;
        planned.tier = Some(tier);
        let again: usize = self
            .triggers
            .iter()
            .zip(&self.again)
            .zip(&first)
            .map(|((f, again), first)| {
                if *again {
                    f(&planned).signals.len()
                } else {
                    first.signals.len()
                }
            })
            .sum();
        plan.steps.len() + again
    }
}

fn bench(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let config = RuntimeConfig {
        cache_dir: Some(cache.path().into()),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config.clone()).unwrap();
    let matrix = Matrix::default_matrix();
    let set = PluginSet::new(escalator::replay::plugins(&runtime, &matrix, None).unwrap()).unwrap();
    assert_eq!(
        (
            set.triggers.len(),
            set.router.is_some(),
            set.notifier.is_some()
        ),
        (7, true, true)
    );
    let now: chrono::DateTime<chrono::Utc> = NOW.parse().unwrap();
    let roster = roster();
    let targets = matrix.response_targets();
    let ask = Ask {
        runtime: &runtime,
        set: &set,
        roster: &roster,
        targets: &targets,
        now,
        event: model::EventKind::MessageAdded,
        deadlines: Deadlines::Live,
    };
    let native = Native::new(&set, contract::ms(now));
    // A baseline: a runtime (and pool) of its own with `config`, and the
    // default plugins loaded in it.
    let baseline = |config: RuntimeConfig| {
        let runtime = Runtime::new(config).unwrap();
        let set =
            PluginSet::new(escalator::replay::plugins(&runtime, &matrix, None).unwrap()).unwrap();
        (runtime, set)
    };
    // The baseline of the trigger set: each default trigger in an instance
    // of its own.
    let (each_runtime, each_set) = baseline(RuntimeConfig {
        trigger_set: false,
        ..config.clone()
    });
    let each_ask = Ask {
        runtime: &each_runtime,
        set: &each_set,
        ..ask
    };
    // The baseline of configurations parsed ahead: every call parses its
    // plugin's configuration.
    let (parsed_runtime, parsed_set) = baseline(RuntimeConfig {
        configure_ahead: false,
        ..config.clone()
    });
    let parsed_ask = Ask {
        runtime: &parsed_runtime,
        set: &parsed_set,
        ..ask
    };
    // The baseline of calls on the caller's thread: every call handed to a
    // call thread and back.
    let (handed_runtime, handed_set) = baseline(RuntimeConfig {
        inline_calls: false,
        ..config.clone()
    });
    let handed_ask = Ask {
        runtime: &handed_runtime,
        set: &handed_set,
        ..ask
    };
    // Reused instances get a runtime (and pool) of their own, as in the
    // runtime benchmark.
    let reuse_runtime = Runtime::new(config).unwrap();
    let reuse_set =
        PluginSet::new(escalator::replay::plugins(&reuse_runtime, &matrix, None).unwrap()).unwrap();
    let mut reused: Vec<_> = reuse_set
        .triggers
        .iter()
        .map(|p| {
            let ctx = contract::context(
                now,
                model::EventKind::MessageAdded,
                p.config_json.to_string(),
            );
            (reuse_runtime.reused_trigger(&p.plugin).unwrap(), ctx)
        })
        .collect();
    let contexts: Vec<_> = set
        .triggers
        .iter()
        .map(|p| {
            (
                &p.plugin,
                contract::context(
                    now,
                    model::EventKind::MessageAdded,
                    p.config_json.to_string(),
                ),
            )
        })
        .collect();

    let mut group = c.benchmark_group("pipeline");
    for (label, size) in [("1.4KB", 1_400), ("100KB", 100_000)] {
        let state = state(size);
        let fired = BTreeSet::new();
        let d = pipeline::decide(&ask, &state, &fired);
        let e = d.escalation.as_ref().expect("the bench ticket escalates");
        assert!(e.plan.is_some(), "the notifier planned");
        assert_eq!(d.runs.len(), 10, "7 triggers, router, notifier, sla again");
        assert!(d.runs.iter().all(|r| r.error.is_none()), "{:?}", d.runs);
        assert!(native.decide(&state, &roster, now) > 0);
        // PIPELINE_RUNS=1: each call's time and fuel in one decision.
        if std::env::var_os("PIPELINE_RUNS").is_some() {
            for (how, ask) in [("configured ahead", &ask), ("parsed per call", &parsed_ask)] {
                for _ in 0..200 {
                    pipeline::decide(ask, &state, &fired);
                }
                let t = std::time::Instant::now();
                let d = pipeline::decide(ask, &state, &fired);
                let total = t.elapsed();
                for r in &d.runs {
                    eprintln!(
                        "{label} {:<28} {:>6} us {:>9} fuel",
                        r.plugin,
                        r.report.duration.as_micros(),
                        r.report.fuel_used
                    );
                }
                let fuel: u64 = d.runs.iter().map(|r| r.report.fuel_used).sum();
                eprintln!("{label} total {} us {fuel} fuel ({how})", total.as_micros());
            }
        }
        group.bench_function(BenchmarkId::new("decide/fresh", label), |b| {
            b.iter(|| black_box(pipeline::decide(&ask, black_box(&state), &fired)))
        });
        group.bench_function(BenchmarkId::new("decide/fresh-handed-off", label), |b| {
            b.iter(|| black_box(pipeline::decide(&handed_ask, black_box(&state), &fired)))
        });
        group.bench_function(BenchmarkId::new("decide/fresh-parsed", label), |b| {
            b.iter(|| black_box(pipeline::decide(&parsed_ask, black_box(&state), &fired)))
        });
        group.bench_function(BenchmarkId::new("decide/fresh-each", label), |b| {
            b.iter(|| black_box(pipeline::decide(&each_ask, black_box(&state), &fired)))
        });
        group.bench_function(BenchmarkId::new("decide/native", label), |b| {
            b.iter(|| black_box(native.decide(black_box(&state), &roster, now)))
        });
        group.bench_function(BenchmarkId::new("triggers/fresh", label), |b| {
            b.iter(|| {
                let t = Arc::new(contract::ticket(black_box(&state.ticket)));
                let refs: Vec<_> = contexts.iter().map(|(p, c)| (*p, c.clone())).collect();
                black_box(runtime.evaluate_many(&refs, &t))
            })
        });
        group.bench_function(BenchmarkId::new("triggers/set", label), |b| {
            let triggers: Vec<_> = set.triggers.iter().collect();
            b.iter(|| {
                let input = Input::new(
                    black_box(&state.ticket),
                    &roster,
                    now,
                    model::EventKind::MessageAdded,
                );
                black_box(pipeline::triggers(
                    &runtime,
                    &triggers,
                    &input,
                    Deadlines::Live,
                ))
            })
        });
        group.bench_function(BenchmarkId::new("triggers/reused", label), |b| {
            b.iter(|| {
                let t = Arc::new(contract::ticket(black_box(&state.ticket)));
                for (r, ctx) in reused.iter_mut() {
                    black_box(r.evaluate(&t, ctx).unwrap());
                }
            })
        });
        group.bench_function(BenchmarkId::new("triggers/native", label), |b| {
            b.iter(|| {
                let t = g_ticket(&contract::ticket(black_box(&state.ticket)));
                for f in &native.triggers {
                    black_box(f(&t));
                }
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
    targets = bench
}
criterion_main!(benches);
