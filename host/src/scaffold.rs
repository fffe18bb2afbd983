//! `escalator plugin new <kind> --lang rust|python|js|c <dir>`: a plugin
//! (trigger, router or notifier)
//! directory that builds, with a manifest, a fixture, the contract's WIT
//! and a build script. `./build.sh && escalator plugin test .` passes out of
//! the box.

use anyhow::{Context as _, Result, bail};
use std::path::Path;

/// The contract, copied into each scaffold so it builds on its own.
const WIT: &[(&str, &str)] = &[
    (
        "types.wit",
        include_str!("../../wit/since_v0.1.0/types.wit"),
    ),
    (
        "worlds.wit",
        include_str!("../../wit/since_v0.1.0/worlds.wit"),
    ),
];

/// A plugin language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with escalator-guest.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with componentize-js.
    Js,
    /// C with wit-bindgen's C generator and clang.
    C,
}

/// A plugin kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NewKind {
    /// A trigger.
    Trigger,
    /// A router.
    Router,
    /// A notifier.
    Notifier,
}

const FIXTURE_TRIGGER: &str = r#"{
  "name": "a customer asking for a supervisor escalates to high",
  "ticket": {"id": "F-1", "created_at": "2026-11-27T09:00:00Z",
             "messages": [{"author": "customer", "body": "I want to talk to your supervisor.",
                           "sent_at": "2026-11-27T09:00:00Z"}]},
  "expect": {"signals": [{"action": "escalate", "tier": "high", "key": "supervisor"}]}
}
"#;

const FIXTURE_QUIET: &str = r#"{
  "name": "a thank-you does not escalate",
  "ticket": {"id": "F-2", "created_at": "2026-11-27T09:00:00Z",
             "messages": [{"author": "customer", "body": "Thanks, that fixed it!",
                           "sent_at": "2026-11-27T09:00:00Z"}]},
  "expect": {"signals": []}
}
"#;

const FIXTURE_ROUTER: &str = r#"{
  "name": "the first available agent gets the ticket",
  "ticket": {"id": "F-1", "created_at": "2026-11-27T09:00:00Z"},
  "roster": [{"id": "away", "status": "away"}, {"id": "ana"}],
  "expect": {"target": {"agent": "ana"}}
}
"#;

const FIXTURE_NOTIFIER: &str = r#"{
  "name": "the assignee is told in-app at once",
  "ticket": {"id": "F-1", "created_at": "2026-11-27T09:00:00Z", "subject": "Help"},
  "routing": {"target": {"agent": "ana"}, "reason": "fixture", "fallback": []},
  "expect": {"steps": [{"delay_ms": 0, "recipient": {"agent": "ana"}, "channel": "in-app"}]}
}
"#;

fn rust_source(kind: NewKind) -> &'static str {
    match kind {
        NewKind::Trigger => {
            r#"//! A trigger: escalates to high when a customer asks for a supervisor.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
use escalator_guest::prelude::*;

struct Plugin;

impl Trigger for Plugin {
    type Config = ();
    fn evaluate(ticket: &Ticket, _ctx: &Ctx<()>) -> Result<Evaluation, String> {
        let asked = ticket.messages.iter().any(|m| {
            m.author == AuthorKind::Customer && text::contains_phrase(&m.body, "supervisor")
        });
        let signals = if asked {
            vec![Signal::escalate(Tier::High, "supervisor", "the customer asked for a supervisor")]
        } else {
            vec![]
        };
        Ok(Evaluation { signals, wake_at: None })
    }
}

escalator_guest::export_trigger!(Plugin);
"#
        }
        NewKind::Router => {
            r#"//! A router: the first available agent, else the general queue.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
use escalator_guest::prelude::*;

struct Plugin;

impl Router for Plugin {
    type Config = ();
    fn route(_t: &Ticket, _e: &Escalation, roster: &[Agent], _ctx: &Ctx<()>) -> Result<Routing, String> {
        let target = match roster.iter().find(|a| a.status == AgentStatus::Available) {
            Some(a) => Target::Agent(a.id.clone()),
            None => Target::Queue("general".into()),
        };
        Ok(Routing { target, reason: "first available agent".into(), fallback: vec![] })
    }
}

escalator_guest::export_router!(Plugin);
"#
        }
        NewKind::Notifier => {
            r#"//! A notifier: tells whoever got the ticket, in-app, at once.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;
use escalator_guest::prelude::*;

struct Plugin;

impl Notifier for Plugin {
    type Config = ();
    fn plan(t: &Ticket, _e: &Escalation, r: &Routing, _roster: &[Agent], _ctx: &Ctx<()>) -> Result<NotificationPlan, String> {
        let recipient = match &r.target {
            Target::Agent(a) => Recipient::Agent(a.clone()),
            Target::Queue(q) => Recipient::Team(q.clone()),
        };
        Ok(NotificationPlan {
            steps: vec![NotificationStep {
                delay: 0,
                recipient,
                channel: Channel::InApp,
                title: format!("Escalated: {}", t.subject),
                body: r.reason.clone(),
                stop_when_claimed: false,
                stop_when_answered: false,
                digest_window: 0,
            }],
            customer_message: None,
        })
    }
}

escalator_guest::export_notifier!(Plugin);
"#
        }
    }
}

const PYTHON_TRIGGER: &str = r#"# A trigger: escalates to high when a customer asks for a supervisor.
# Build: ./build.sh (needs `pip install componentize-py==0.25.1`).
import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def evaluate(self, ticket, ctx):
        asked = any(
            m.author == types.AuthorKind.CUSTOMER and "supervisor" in m.body.lower()
            for m in ticket.messages
        )
        signals = []
        if asked:
            signals.append(types.Signal(
                action=types.SignalAction.ESCALATE, tier=types.Tier.HIGH, key="supervisor",
                reason="the customer asked for a supervisor", evidence=[],
                target_skill=None, target_queue=None))
        return types.Evaluation(signals=signals, wake_at=None)
"#;

const JS_TRIGGER: &str = r#"// A trigger: escalates to high when a customer asks for a supervisor.
// Records are camelCase objects, enums strings, s64 timestamps BigInts.
export function evaluate(ticket, ctx) {
  const asked = ticket.messages.some(
    (m) => m.author === "customer" && m.body.toLowerCase().includes("supervisor"));
  const signals = asked
    ? [{ action: "escalate", tier: "high", key: "supervisor",
         reason: "the customer asked for a supervisor", evidence: [],
         targetSkill: undefined, targetQueue: undefined }]
    : [];
  return { signals, wakeAt: undefined };
}
"#;

const PYTHON_ROUTER: &str = r#"# A router: the first available agent, else the general queue.
# Build: ./build.sh (needs `pip install componentize-py==0.25.1`).
import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def route(self, ticket, escalation, roster, ctx):
        for a in roster:
            if a.status == types.AgentStatus.AVAILABLE:
                return types.Routing(target=types.Target_Agent(a.id),
                                     reason="first available agent", fallback=[])
        return types.Routing(target=types.Target_Queue("general"),
                             reason="nobody available: general queue", fallback=[])
"#;

const PYTHON_NOTIFIER: &str = r#"# A notifier: tells whoever got the ticket, in-app, at once.
# Build: ./build.sh (needs `pip install componentize-py==0.25.1`).
import wit_world
from wit_world.imports import types


class WitWorld(wit_world.WitWorld):
    def plan(self, ticket, escalation, routing, roster, ctx):
        t = routing.target
        if isinstance(t, types.Target_Agent):
            recipient = types.Recipient_Agent(t.value)
        else:
            recipient = types.Recipient_Team(t.value)
        step = types.NotificationStep(
            delay=0, recipient=recipient, channel=types.Channel.IN_APP,
            title="Escalated: " + ticket.subject, body=routing.reason,
            stop_when_claimed=False, stop_when_answered=False, digest_window=0)
        return types.NotificationPlan(steps=[step], customer_message=None)
"#;

const JS_ROUTER: &str = r#"// A router: the first available agent, else the general queue.
// Variants are {tag, val} objects.
export function route(ticket, escalation, roster, ctx) {
  const a = roster.find((a) => a.status === "available");
  return a
    ? { target: { tag: "agent", val: a.id }, reason: "first available agent", fallback: [] }
    : { target: { tag: "queue", val: "general" }, reason: "nobody available: general queue", fallback: [] };
}
"#;

const JS_NOTIFIER: &str = r#"// A notifier: tells whoever got the ticket, in-app, at once.
// Durations (u64) are BigInts; variants are {tag, val} objects.
export function plan(ticket, escalation, routing, roster, ctx) {
  const t = routing.target;
  const recipient = t.tag === "agent" ? { tag: "agent", val: t.val } : { tag: "team", val: t.val };
  return {
    steps: [{
      delay: 0n, recipient, channel: "in-app",
      title: `Escalated: ${ticket.subject}`, body: routing.reason,
      stopWhenClaimed: false, stopWhenAnswered: false, digestWindow: 0n,
    }],
    customerMessage: undefined,
  };
}
"#;

const C_ROUTER: &str = r#"// A router: the first available agent, else the general queue.
// Build: ./build.sh. Outputs are malloc'ed; the generated post-return
// function frees them.
#include "router.h"
#include <stdlib.h>
#include <string.h>

static void set(router_string_t *out, const void *bytes, size_t len) {
  out->ptr = malloc(len ? len : 1);
  memcpy(out->ptr, bytes, len);
  out->len = len;
}

bool exports_router_route(router_ticket_t *t, router_escalation_t *e, router_list_agent_t *roster,
                          router_context_t *ctx, router_routing_t *ret, router_string_t *err) {
  (void)t;
  (void)e;
  (void)ctx;
  (void)err;
  ret->fallback.ptr = NULL;
  ret->fallback.len = 0;
  for (size_t i = 0; i < roster->len; i++) {
    escalator_plugin_types_agent_t *a = &roster->ptr[i];
    if (a->status != ESCALATOR_PLUGIN_TYPES_AGENT_STATUS_AVAILABLE) continue;
    ret->target.tag = ESCALATOR_PLUGIN_TYPES_TARGET_AGENT;
    set(&ret->target.val.agent, a->id.ptr, a->id.len);
    set(&ret->reason, "first available agent", strlen("first available agent"));
    return true;
  }
  ret->target.tag = ESCALATOR_PLUGIN_TYPES_TARGET_QUEUE;
  set(&ret->target.val.queue, "general", 7);
  set(&ret->reason, "nobody available: general queue", strlen("nobody available: general queue"));
  return true;
}
"#;

const C_NOTIFIER: &str = r#"// A notifier: tells whoever got the ticket, in-app, at once.
// Build: ./build.sh. Outputs are malloc'ed; the generated post-return
// function frees them.
#include "notifier.h"
#include <stdlib.h>
#include <string.h>

static void set(notifier_string_t *out, const void *bytes, size_t len) {
  out->ptr = malloc(len ? len : 1);
  memcpy(out->ptr, bytes, len);
  out->len = len;
}

bool exports_notifier_plan(notifier_ticket_t *t, notifier_escalation_t *e, notifier_routing_t *r,
                           notifier_list_agent_t *roster, notifier_context_t *ctx,
                           notifier_notification_plan_t *ret, notifier_string_t *err) {
  (void)e;
  (void)roster;
  (void)ctx;
  (void)err;
  escalator_plugin_types_notification_step_t *s = calloc(1, sizeof *s);
  s->delay = 0;
  if (r->target.tag == ESCALATOR_PLUGIN_TYPES_TARGET_AGENT) {
    s->recipient.tag = ESCALATOR_PLUGIN_TYPES_RECIPIENT_AGENT;
    set(&s->recipient.val.agent, r->target.val.agent.ptr, r->target.val.agent.len);
  } else {
    s->recipient.tag = ESCALATOR_PLUGIN_TYPES_RECIPIENT_TEAM;
    set(&s->recipient.val.team, r->target.val.queue.ptr, r->target.val.queue.len);
  }
  s->channel = ESCALATOR_PLUGIN_TYPES_CHANNEL_IN_APP;
  const char *prefix = "Escalated: ";
  size_t n = strlen(prefix) + t->subject.len;
  s->title.ptr = malloc(n ? n : 1);
  memcpy(s->title.ptr, prefix, strlen(prefix));
  memcpy(s->title.ptr + strlen(prefix), t->subject.ptr, t->subject.len);
  s->title.len = n;
  set(&s->body, r->reason.ptr, r->reason.len);
  s->stop_when_claimed = false;
  s->stop_when_answered = false;
  s->digest_window = 0;
  ret->steps.ptr = s;
  ret->steps.len = 1;
  ret->customer_message.is_some = false;
  return true;
}
"#;

const JS_BUILD: &str = r#"// node build.mjs: plugin.js → plugin.wasm, importing only the contract.
import { componentize } from "@bytecodealliance/componentize-js";
import { readFile, writeFile } from "node:fs/promises";

// The world is the manifest's kind.
const kind = (await readFile("plugin.toml", "utf8")).match(/^kind = "(\w+)"/m)[1];
const { component } = await componentize({
  sourcePath: "plugin.js",
  witPath: "wit",
  worldName: kind,
  disableFeatures: ["stdio", "random", "clocks", "http", "fetch-event"],
});
await writeFile("plugin.wasm", component);
"#;

const C_TRIGGER: &str = r#"// A trigger: escalates to high when a customer asks for a supervisor.
// Build: ./build.sh (wit-bindgen CLI, Debian clang-19 + lld-19 +
// libclang-rt-19-dev-wasm32 + wasi-libc, wasm-tools). Outputs are malloc'ed;
// the generated post-return function frees them.
#include "trigger.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static void set(trigger_string_t *out, const char *s) {
  out->len = strlen(s);
  out->ptr = malloc(out->len);
  memcpy(out->ptr, s, out->len);
}

bool exports_trigger_evaluate(trigger_ticket_t *t, trigger_context_t *ctx,
                              trigger_evaluation_t *ret, trigger_string_t *err) {
  (void)ctx;
  (void)err;
  ret->signals.ptr = NULL;
  ret->signals.len = 0;
  ret->wake_at.is_some = false;
  for (size_t i = 0; i < t->messages.len; i++) {
    escalator_plugin_types_message_t *m = &t->messages.ptr[i];
    if (m->author != ESCALATOR_PLUGIN_TYPES_AUTHOR_KIND_CUSTOMER) continue;
    char *text = malloc(m->body.len + 1);
    for (size_t j = 0; j < m->body.len; j++) text[j] = (char)tolower(m->body.ptr[j]);
    text[m->body.len] = 0;
    int asked = strstr(text, "supervisor") != NULL;
    free(text);
    if (!asked) continue;
    escalator_plugin_types_signal_t *s = calloc(1, sizeof *s);
    s->action = ESCALATOR_PLUGIN_TYPES_SIGNAL_ACTION_ESCALATE;
    s->tier = ESCALATOR_PLUGIN_TYPES_TIER_HIGH;
    set(&s->key, "supervisor");
    set(&s->reason, "the customer asked for a supervisor");
    ret->signals.ptr = s;
    ret->signals.len = 1;
    break;
  }
  return true;
}
"#;

/// Write a new plugin of `kind` in `lang` into `dir` (which must not exist
/// or be empty). `sdk` is the path of escalator-guest for Rust plugins.
pub fn new(kind: NewKind, lang: Lang, dir: &Path, sdk: Option<&Path>) -> Result<Vec<String>> {
    if dir.exists()
        && std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .next()
            .is_some()
    {
        bail!("{} exists and is not empty", dir.display());
    }
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .map(|n| {
            n.to_lowercase()
                .replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        })
        .filter(|n| !n.is_empty())
        .context("the directory needs a name (it names the plugin)")?;
    let kind_name = format!("{kind:?}").to_lowercase();
    let mut files: Vec<(String, String)> = Vec::new();
    let limits = match lang {
        Lang::Rust | Lang::C => "",
        // Interpreters carry their runtime: room for the heap and start-up.
        Lang::Python | Lang::Js => {
            "\n[limits]\nfuel = 2_000_000_000\nmemory-mib = 256\ntimeout-ms = 5000\n"
        }
    };
    files.push((
        "plugin.toml".into(),
        format!(
            "name = \"{name}\"\nkind = \"{kind_name}\"\nversion = \"0.1.0\"\ndescription = \"\"\nmode = \"shadow\"   # start in shadow; switch to active when the shadow report looks right\ncomponent = \"plugin.wasm\"\n{limits}\n[on-error]\naction = \"ignore\"\n\n[config]\n"
        ),
    ));
    match kind {
        NewKind::Trigger => {
            files.push(("fixtures/escalates.json".into(), FIXTURE_TRIGGER.into()));
            files.push(("fixtures/quiet.json".into(), FIXTURE_QUIET.into()));
        }
        NewKind::Router => files.push(("fixtures/routes.json".into(), FIXTURE_ROUTER.into())),
        NewKind::Notifier => files.push(("fixtures/notifies.json".into(), FIXTURE_NOTIFIER.into())),
    }
    for (f, text) in WIT {
        files.push((format!("wit/{f}"), (*text).into()));
    }
    let crate_name = name.replace('-', "_");
    match lang {
        Lang::Rust => {
            let sdk = match sdk {
                Some(p) => format!("{{ path = \"{}\" }}", p.display()),
                None => "{ git = \"https://github.com/escalator-dev/escalator\" }".into(),
            };
            files.push((
                "Cargo.toml".into(),
                format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nescalator-guest = {sdk}\n\n[profile.release]\nopt-level = \"s\"\nlto = true\npanic = \"abort\"\n\n[workspace]\n"
                ),
            ));
            files.push(("src/lib.rs".into(), rust_source(kind).into()));
            files.push((
                "build.sh".into(),
                format!(
                    "#!/bin/sh\nset -e\ncd \"$(dirname \"$0\")\"\nrustup target add wasm32-wasip2 >/dev/null 2>&1 || true\ncargo build --release --target wasm32-wasip2\ncp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{crate_name}.wasm\" plugin.wasm\necho built plugin.wasm\n"
                ),
            ));
        }
        Lang::Python => {
            let source = match kind {
                NewKind::Trigger => PYTHON_TRIGGER,
                NewKind::Router => PYTHON_ROUTER,
                NewKind::Notifier => PYTHON_NOTIFIER,
            };
            files.push(("app.py".into(), source.into()));
            files.push((
                "build.sh".into(),
                format!("#!/bin/sh\nset -e\ncd \"$(dirname \"$0\")\"\ncomponentize-py -d wit -w {kind_name} componentize app -o plugin.wasm\n"),
            ));
        }
        Lang::Js => {
            let source = match kind {
                NewKind::Trigger => JS_TRIGGER,
                NewKind::Router => JS_ROUTER,
                NewKind::Notifier => JS_NOTIFIER,
            };
            files.push(("plugin.js".into(), source.into()));
            files.push(("build.mjs".into(), JS_BUILD.into()));
            files.push((
                "package.json".into(),
                "{\n  \"private\": true,\n  \"type\": \"module\",\n  \"dependencies\": {\"@bytecodealliance/componentize-js\": \"0.23.0\"}\n}\n".into(),
            ));
            files.push((
                "build.sh".into(),
                "#!/bin/sh\nset -e\ncd \"$(dirname \"$0\")\"\n[ -d node_modules ] || npm install --no-audit --no-fund\nnode build.mjs\n".into(),
            ));
        }
        Lang::C => {
            let source = match kind {
                NewKind::Trigger => C_TRIGGER,
                NewKind::Router => C_ROUTER,
                NewKind::Notifier => C_NOTIFIER,
            };
            files.push(("plugin.c".into(), source.into()));
            files.push((
                "build.sh".into(),
                format!("#!/bin/sh\nset -e\ncd \"$(dirname \"$0\")\"\nwit-bindgen c wit --world {kind_name} --out-dir gen\nclang-19 --target=wasm32-wasi --sysroot=/usr -mexec-model=reactor -O2 -fuse-ld=/usr/bin/wasm-ld-19 \\\n  -Igen -o plugin.core.wasm plugin.c gen/{kind_name}.c gen/{kind_name}_component_type.o\nwasm-tools component new plugin.core.wasm -o plugin.wasm\n"),
            ));
        }
    }
    let mut written = Vec::new();
    for (path, text) in files {
        let p = dir.join(&path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
        #[cfg(unix)]
        if path == "build.sh" {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(path);
    }
    Ok(written)
}
