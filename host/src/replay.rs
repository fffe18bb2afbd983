//! `escalator replay`: historical tickets through a plugin set, on a
//! virtual clock that follows the tickets' own timestamps.
//!
//! Each ticket is evaluated at every moment something happened to it (its
//! creation, each message, each status change) and at every `wake_at` its
//! triggers asked for before it ended, seeing only what had happened by
//! then, so SLA timers fire as they would have. As in the engine, a signal
//! key acts once and the tier only rises. Tickets are read as a stream and
//! replayed in batches on all cores; results are aggregated in input order,
//! so the same input gives the same report.
//!
//! Inputs: Escalator's own JSONL (a ticket per line, or
//! `{"ticket": ..., "expected": "high" | null}`), and importers for the
//! Twitter customer-care conversations, the Hadoop bug reports (human
//! priority as the expected tier) and the ServiceNow incident timings
//! (priority as the tier, `made_sla` as the SLA outcome).

use crate::model::{self, AuthorKind, EventKind, Message, Ticket, TicketStatus, Tier};
use crate::pipeline::{self, PluginSet};
use crate::runtime::Runtime;
use anyhow::{Context as _, Result, bail};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;

/// An input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Escalator's ticket JSONL.
    Escalator,
    /// `twitter_care_dev.jsonl`.
    Twitter,
    /// `hadoop_bugs_*.csv`.
    Hadoop,
    /// `servicenow_incidents.csv`.
    Servicenow,
}

impl Format {
    /// Guess from the file's first line.
    pub fn detect(path: &Path) -> Result<Format> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut first = String::new();
        std::io::BufReader::new(f).read_line(&mut first)?;
        Ok(if first.starts_with("Summary,Issue id") {
            Format::Hadoop
        } else if first.to_ascii_lowercase().starts_with("number,opened_at") {
            Format::Servicenow
        } else if first.contains("\"dialogContent\"") {
            Format::Twitter
        } else {
            Format::Escalator
        })
    }
}

/// One historical ticket.
#[derive(Debug, Clone)]
pub struct Case {
    /// The ticket as it ended, with its whole history.
    pub ticket: Ticket,
    /// The tier a person gave it (`Some(None)`: should not escalate).
    pub expected: Option<Option<Tier>>,
    /// Whether it met its SLA (ServiceNow).
    pub made_sla: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseLine {
    ticket: Ticket,
    /// Absent: unlabelled; `null`: should not escalate; a tier.
    #[serde(default, deserialize_with = "present")]
    expected: Option<Option<Tier>>,
}

/// A field that is present (even as `null`) is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<Tier>>, D::Error> {
    Option::<Tier>::deserialize(d).map(Some)
}

/// Read cases from `path`, calling `f` on each batch of `batch` cases.
pub fn read(
    path: &Path,
    format: Format,
    limit: Option<usize>,
    batch: usize,
    mut f: impl FnMut(Vec<Case>) -> Result<()>,
) -> Result<()> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = Vec::with_capacity(batch);
    let mut n = 0usize;
    let mut push = |c: Case, buf: &mut Vec<Case>| -> Result<bool> {
        buf.push(c);
        n += 1;
        if buf.len() == batch {
            f(std::mem::take(buf))?;
        }
        Ok(limit.is_some_and(|l| n >= l))
    };
    match format {
        Format::Escalator | Format::Twitter => {
            for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let case = if format == Format::Twitter {
                    twitter(&line, i)
                } else {
                    escalator_line(&line)
                }
                .with_context(|| format!("{} line {}", path.display(), i + 1))?;
                if push(case, &mut buf)? {
                    break;
                }
            }
        }
        Format::Hadoop | Format::Servicenow => {
            let mut r = csv::Reader::from_reader(file);
            let headers = r.headers()?.clone();
            for (i, rec) in r.records().enumerate() {
                let rec = rec.with_context(|| format!("{} record {}", path.display(), i + 1))?;
                let row = Row {
                    headers: &headers,
                    rec: &rec,
                };
                let case = if format == Format::Hadoop {
                    hadoop(&row)
                } else {
                    servicenow(&row)
                }
                .with_context(|| format!("{} record {}", path.display(), i + 1))?;
                if push(case, &mut buf)? {
                    break;
                }
            }
        }
    }
    if !buf.is_empty() {
        f(buf)?;
    }
    Ok(())
}

/// A CSV record with its header.
struct Row<'a> {
    headers: &'a csv::StringRecord,
    rec: &'a csv::StringRecord,
}

impl<'a> Row<'a> {
    fn get(&self, k: &str) -> &'a str {
        self.headers
            .iter()
            .position(|h| h == k)
            .and_then(|p| self.rec.get(p))
            .unwrap_or("")
    }
}

fn escalator_line(line: &str) -> Result<Case> {
    let v: serde_json::Value = serde_json::from_str(line)?;
    let (ticket, expected) = if v.get("ticket").is_some() {
        let c: CaseLine = serde_json::from_value(v)?;
        (c.ticket, c.expected)
    } else {
        (serde_json::from_value(v)?, None)
    };
    Ok(Case {
        ticket,
        expected,
        made_sla: None,
    })
}

/// A Twitter conversation: customer turns and the company's (human) turns.
pub fn twitter(line: &str, i: usize) -> Result<Case> {
    let v: serde_json::Value = serde_json::from_str(line)?;
    let turns = v["dialogContent"].as_array().context("no dialogContent")?;
    let mut messages = Vec::new();
    for (j, turn) in turns.iter().enumerate() {
        messages.push(Message {
            id: format!("m{j}"),
            author: if turn.get("agent").is_some() {
                AuthorKind::HumanAgent
            } else {
                AuthorKind::Customer
            },
            author_id: None,
            body: turn["message"].as_str().unwrap_or_default().to_string(),
            sent_at: turn["datetime"].as_str().context("no datetime")?.parse()?,
            sentiment: None,
        });
    }
    let created = messages.first().context("an empty conversation")?.sent_at;
    Ok(Case {
        ticket: Ticket {
            subject: messages[0].body.chars().take(80).collect(),
            channel: model::TicketChannel::Social,
            messages,
            ..Ticket::new(format!("twitter-{i}"), created)
        },
        expected: None,
        made_sla: None,
    })
}

fn naive(s: &str, fmt: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s.trim(), fmt)
        .ok()
        .map(|n| n.and_utc())
}

/// The tier a Hadoop priority maps to: Blocker → critical, Critical →
/// high, Major → medium, Minor and Trivial → low (stays with the AI).
pub fn hadoop_tier(priority: &str) -> Option<Option<Tier>> {
    Some(match priority {
        "Blocker" => Some(Tier::Critical),
        "Critical" => Some(Tier::High),
        "Major" => Some(Tier::Medium),
        "Minor" | "Trivial" => None,
        _ => return None,
    })
}

fn hadoop(row: &Row<'_>) -> Result<Case> {
    let get = |k: &str| row.get(k);
    let created = naive(get("Created"), "%d/%b/%y %H:%M").context("Created")?;
    let resolved = naive(get("Resolved"), "%d/%b/%y %H:%M");
    let mut t = Ticket {
        subject: get("Summary").to_string(),
        category: Some("bug".into()),
        channel: model::TicketChannel::WebForm,
        messages: vec![Message {
            id: "m1".into(),
            author: AuthorKind::Customer,
            author_id: None,
            body: format!("{}\n\n{}", get("Summary"), get("Description")),
            sent_at: created,
            sentiment: None,
        }],
        ..Ticket::new(format!("HADOOP-{}", get("Issue id")), created)
    };
    t.status_history.push(model::StatusChange {
        status: TicketStatus::Open,
        at: created,
    });
    if let Some(r) = resolved.filter(|r| *r >= created) {
        t.status_history.push(model::StatusChange {
            status: TicketStatus::Solved,
            at: r,
        });
        t.status = TicketStatus::Solved;
    }
    Ok(Case {
        ticket: t,
        expected: hadoop_tier(get("Priority")),
        made_sla: None,
    })
}

/// The tier of an ITIL priority (`1 - Critical` … `4 - Low`).
pub fn servicenow_tier(priority: &str) -> Option<Tier> {
    match priority.split(" - ").next()?.trim() {
        "1" => Some(Tier::Critical),
        "2" => Some(Tier::High),
        "3" => Some(Tier::Medium),
        "4" => Some(Tier::Low),
        _ => None,
    }
}

fn servicenow(row: &Row<'_>) -> Result<Case> {
    let get = |k: &str| row.get(k);
    let fmt = "%Y-%m-%d %H:%M:%S";
    let opened = naive(get("opened_at"), fmt).context("opened_at")?;
    let mut t = Ticket {
        subject: format!("incident {} (category {})", get("number"), get("category")),
        channel: model::TicketChannel::Phone,
        tier: servicenow_tier(get("priority")),
        messages: vec![Message {
            id: "m1".into(),
            author: AuthorKind::Customer,
            author_id: None,
            body: String::new(),
            sent_at: opened,
            sentiment: None,
        }],
        ..Ticket::new(format!("INC{}", get("number")), opened)
    };
    t.status_history.push(model::StatusChange {
        status: TicketStatus::New,
        at: opened,
    });
    // First active: a person started work (the first human response).
    if let Some(a) = naive(get("first_active_at"), fmt).filter(|a| *a >= opened) {
        t.messages.push(Message {
            id: "m2".into(),
            author: AuthorKind::HumanAgent,
            author_id: None,
            body: String::new(),
            sent_at: a,
            sentiment: None,
        });
        t.status_history.push(model::StatusChange {
            status: TicketStatus::Open,
            at: a,
        });
    }
    if let Some(r) = naive(get("resolved_at"), fmt).filter(|r| *r >= opened) {
        t.status_history.push(model::StatusChange {
            status: TicketStatus::Solved,
            at: r,
        });
    }
    t.status_history.sort_by_key(|s| s.at);
    t.status = t
        .status_history
        .last()
        .map_or(TicketStatus::Open, |s| s.status);
    Ok(Case {
        ticket: t,
        expected: None,
        made_sla: match get("made_sla") {
            "True" => Some(true),
            "False" => Some(false),
            _ => None,
        },
    })
}

/// What replaying one ticket decided.
#[derive(Debug, Clone, Serialize)]
pub struct Replayed {
    /// Ticket id.
    pub id: String,
    /// The tier it reached (`None`: stayed with the AI).
    pub tier: Option<Tier>,
    /// When it first escalated, minutes after creation.
    pub minutes_to_escalation: Option<f64>,
    /// The keys of the escalate signals that fired, in order.
    pub reasons: Vec<String>,
    /// Whether an SLA breach fired.
    pub sla_breach: bool,
    /// Evaluations run.
    pub evaluations: usize,
    /// Plugin errors.
    pub errors: usize,
    /// The expected tier, if labelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<Option<Tier>>,
    /// The SLA outcome, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub made_sla: Option<bool>,
}

/// The ticket as it stood at `t`: messages and status changes up to `t`.
fn at(ticket: &Ticket, t: DateTime<Utc>, tier: Option<Tier>) -> Ticket {
    let history: Vec<_> = ticket
        .status_history
        .iter()
        .filter(|s| s.at <= t)
        .cloned()
        .collect();
    Ticket {
        messages: ticket
            .messages
            .iter()
            .filter(|m| m.sent_at <= t)
            .cloned()
            .collect(),
        status: history.last().map_or(TicketStatus::Open, |s| s.status),
        status_history: history,
        updated_at: Some(t),
        tier,
        ..ticket.clone()
    }
}

/// The most evaluations one ticket gets (a trigger that keeps asking to be
/// woken cannot stall a replay).
pub const MAX_EVALUATIONS: usize = 256;

/// Replay one case.
pub fn replay_case(runtime: &Runtime, set: &PluginSet, case: &Case) -> Replayed {
    let t = &case.ticket;
    let mut moments: BTreeSet<DateTime<Utc>> = BTreeSet::new();
    moments.insert(t.created_at);
    moments.extend(t.messages.iter().map(|m| m.sent_at));
    moments.extend(t.status_history.iter().map(|s| s.at));
    // The replay ends when the ticket did (solved or closed), or at its
    // last moment.
    let end = t
        .status_history
        .iter()
        .find(|s| matches!(s.status, TicketStatus::Solved | TicketStatus::Closed))
        .map(|s| s.at)
        .or_else(|| moments.iter().next_back().copied())
        .unwrap_or(t.created_at);
    let preset = t.tier;
    let (mut tier, mut first, mut fired) = (None::<Tier>, None, BTreeSet::<String>::new());
    let (mut reasons, mut sla_breach, mut evaluations, mut errors) = (Vec::new(), false, 0, 0);
    let mut notes: Vec<model::Message> = Vec::new();
    while let Some(now) = moments.pop_first() {
        if now > end || evaluations >= MAX_EVALUATIONS {
            break;
        }
        evaluations += 1;
        let mut snapshot = at(t, now, tier.max(preset));
        snapshot.messages.extend(notes.iter().cloned());
        let kind = if now == t.created_at {
            EventKind::TicketCreated
        } else {
            EventKind::Tick
        };
        let f = pipeline::run_triggers(runtime, set, &snapshot, now, kind);
        errors += f.runs.iter().filter(|r| r.error.is_some()).count();
        for s in &f.signals {
            if fired.insert(s.key.clone()) {
                if s.action == model::SignalAction::Escalate {
                    reasons.push(s.key.clone());
                }
                if s.key.starts_with("sla:") && s.key.ends_with(":breach") {
                    sla_breach = true;
                }
            }
        }
        if f.tier > tier {
            tier = f.tier;
            first.get_or_insert(now);
            // As the server does: the escalation's note in the
            // conversation, and the triggers asked again at once for the
            // new tier (its response clock starts now).
            notes.push(Message::escalation_note(
                evaluations,
                "Escalated".into(),
                now,
            ));
            moments.insert(now);
            continue;
        }
        if let Some(w) = f.wake_at.filter(|w| *w > now && *w <= end) {
            moments.insert(w);
        }
    }
    Replayed {
        id: t.id.clone(),
        tier,
        minutes_to_escalation: first.map(|f| (f - t.created_at).num_seconds() as f64 / 60.0),
        reasons,
        sla_breach,
        evaluations,
        errors,
        expected: case.expected,
        made_sla: case.made_sla,
    }
}

/// Replay `cases` on all cores; results in input order.
pub fn replay_batch(runtime: &Runtime, set: &PluginSet, cases: &[Case]) -> Vec<Replayed> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(cases.len().max(1));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut out: Vec<Option<Replayed>> = vec![None; cases.len()];
    let slots: Vec<std::sync::Mutex<&mut Option<Replayed>>> =
        out.iter_mut().map(std::sync::Mutex::new).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(case) = cases.get(i) else { return };
                    let r = replay_case(runtime, set, case);
                    **slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                }
            });
        }
    });
    drop(slots);
    out.into_iter().flatten().collect()
}

fn class(t: Option<Tier>) -> &'static str {
    match t {
        Some(Tier::Critical) => "critical",
        Some(Tier::High) => "high",
        Some(Tier::Medium) => "medium",
        // Low and no escalation both stay with the AI.
        Some(Tier::Low) | None => "low",
    }
}

const CLASSES: [&str; 4] = ["critical", "high", "medium", "low"];

/// Precision and recall of one class.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ClassScore {
    /// Tickets labelled this class.
    pub support: usize,
    /// Tickets predicted this class.
    pub predicted: usize,
    /// Both.
    pub correct: usize,
    /// correct / predicted.
    pub precision: f64,
    /// correct / support.
    pub recall: f64,
}

/// The report of a replay.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Tickets replayed.
    pub tickets: usize,
    /// Evaluations run.
    pub evaluations: usize,
    /// Plugin errors.
    pub plugin_errors: usize,
    /// Tickets per tier reached (`none`: stayed with the AI).
    pub tiers: BTreeMap<String, usize>,
    /// Share of tickets that escalated.
    pub escalation_rate: f64,
    /// Minutes from creation to first escalation: p50, p90, max.
    pub minutes_to_escalation: BTreeMap<String, f64>,
    /// Escalate-signal keys by how many tickets they fired on.
    pub top_reasons: Vec<(String, usize)>,
    /// Labelled tickets.
    pub labelled: usize,
    /// Share of labelled tickets in the expected class.
    pub agreement: Option<f64>,
    /// Per class (`critical`, `high`, `medium`, `low` = stays with the AI).
    pub classes: BTreeMap<String, ClassScore>,
    /// expected → predicted → count.
    pub confusion: BTreeMap<String, BTreeMap<String, usize>>,
    /// Tickets escalated above their label (first 20).
    pub over_escalated: Vec<serde_json::Value>,
    /// Tickets escalated below their label (first 20).
    pub under_escalated: Vec<serde_json::Value>,
    /// With SLA outcomes: breaches flagged against `made_sla`.
    pub sla: Option<BTreeMap<String, f64>>,
    /// Tickets per second.
    pub tickets_per_second: f64,
}

/// Aggregates replayed tickets into a [`Report`] as they stream by:
/// counters, capped example lists, and the escalation delays (4 bytes per
/// escalated ticket) for the quantiles.
#[derive(Debug, Default)]
pub struct Aggregate {
    tickets: usize,
    evaluations: usize,
    errors: usize,
    tiers: BTreeMap<&'static str, usize>,
    minutes: Vec<f32>,
    reasons: BTreeMap<String, usize>,
    labelled: usize,
    confusion: BTreeMap<String, BTreeMap<String, usize>>,
    over: Vec<serde_json::Value>,
    under: Vec<serde_json::Value>,
    sla: [usize; 4],
}

impl Aggregate {
    /// Add results (in input order).
    pub fn add(&mut self, rs: &[Replayed]) {
        for r in rs {
            self.tickets += 1;
            self.evaluations += r.evaluations;
            self.errors += r.errors;
            let key = match r.tier {
                None => "none",
                t => class(t),
            };
            *self.tiers.entry(key).or_default() += 1;
            if let Some(m) = r.minutes_to_escalation {
                self.minutes.push(m as f32);
            }
            for k in r.reasons.iter().collect::<BTreeSet<_>>() {
                *self.reasons.entry(k.clone()).or_default() += 1;
            }
            if let Some(made) = r.made_sla {
                self.sla[0] += 1;
                self.sla[1] += usize::from(r.sla_breach);
                self.sla[2] += usize::from(!made);
                self.sla[3] += usize::from(r.sla_breach && !made);
            }
            if let Some(exp) = r.expected {
                self.labelled += 1;
                let (e, p) = (class(exp), class(r.tier));
                *self
                    .confusion
                    .entry(e.into())
                    .or_default()
                    .entry(p.into())
                    .or_default() += 1;
                let rank = |c: &str| CLASSES.iter().position(|x| *x == c).unwrap_or(3);
                let entry = serde_json::json!({"ticket": r.id, "expected": e, "got": p, "reasons": r.reasons});
                if rank(p) < rank(e) && self.over.len() < 20 {
                    self.over.push(entry);
                } else if rank(p) > rank(e) && self.under.len() < 20 {
                    self.under.push(entry);
                }
            }
        }
    }

    /// The report, for a replay that took `seconds`.
    pub fn report(&self, seconds: f64) -> Report {
        let n = self.tickets;
        let mut rep = Report {
            tickets: n,
            evaluations: self.evaluations,
            plugin_errors: self.errors,
            tickets_per_second: if seconds > 0.0 {
                n as f64 / seconds
            } else {
                0.0
            },
            labelled: self.labelled,
            confusion: self.confusion.clone(),
            over_escalated: self.over.clone(),
            under_escalated: self.under.clone(),
            ..Report::default()
        };
        for k in ["critical", "high", "medium", "low", "none"] {
            rep.tiers
                .insert(k.into(), self.tiers.get(k).copied().unwrap_or(0));
        }
        let escalated = n - rep.tiers["none"] - rep.tiers["low"];
        rep.escalation_rate = if n > 0 {
            escalated as f64 / n as f64
        } else {
            0.0
        };
        let mut minutes = self.minutes.clone();
        minutes.sort_by(f32::total_cmp);
        if !minutes.is_empty() {
            let q = |p: f64| f64::from(minutes[((minutes.len() - 1) as f64 * p).round() as usize]);
            rep.minutes_to_escalation.insert("p50".into(), q(0.5));
            rep.minutes_to_escalation.insert("p90".into(), q(0.9));
            rep.minutes_to_escalation.insert("max".into(), q(1.0));
        }
        let mut top: Vec<_> = self.reasons.clone().into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(15);
        rep.top_reasons = top;
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        if rep.labelled > 0 {
            let mut correct = 0;
            for c in CLASSES {
                let row = rep.confusion.get(c);
                let support: usize = row.map_or(0, |r| r.values().sum());
                let predicted: usize = rep
                    .confusion
                    .values()
                    .map(|r| r.get(c).copied().unwrap_or(0))
                    .sum();
                let hit = row.and_then(|r| r.get(c)).copied().unwrap_or(0);
                correct += hit;
                rep.classes.insert(
                    c.into(),
                    ClassScore {
                        support,
                        predicted,
                        correct: hit,
                        precision: ratio(hit, predicted),
                        recall: ratio(hit, support),
                    },
                );
            }
            rep.agreement = Some(correct as f64 / rep.labelled as f64);
        }
        let [tickets, flagged, missed, both] = self.sla;
        if tickets > 0 {
            rep.sla = Some(BTreeMap::from([
                ("tickets".into(), tickets as f64),
                ("missed_sla".into(), missed as f64),
                ("flagged_breach".into(), flagged as f64),
                ("flagged_and_missed".into(), both as f64),
                ("precision".into(), ratio(both, flagged)),
                ("recall".into(), ratio(both, missed)),
            ]));
        }
        rep
    }
}

/// Load a plugin set: the built-in plugins, overlaid by the plugin
/// directories in `dir` (a directory of plugin directories, or one plugin
/// directory), matched by name.
pub fn plugin_set(
    runtime: &Runtime,
    matrix: &crate::matrix::Matrix,
    dir: Option<&Path>,
) -> Result<PluginSet> {
    let mut plugins: Vec<_> = crate::registry::load_builtin(runtime)?
        .into_iter()
        .map(|p| p.with_matrix(matrix))
        .collect();
    if let Some(dir) = dir {
        let dirs: Vec<std::path::PathBuf> = if dir.join("plugin.toml").exists() {
            vec![dir.to_path_buf()]
        } else {
            let mut d: Vec<_> = std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("plugin.toml").exists())
                .collect();
            d.sort();
            d
        };
        if dirs.is_empty() {
            bail!(
                "{}: no plugin directories (with plugin.toml) in it",
                dir.display()
            );
        }
        for d in dirs {
            let p = crate::registry::load_path(runtime, &d)?.with_matrix(matrix);
            plugins.retain(|b| b.manifest.name != p.manifest.name);
            plugins.push(p);
        }
    }
    PluginSet::new(plugins).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(tier: Option<Tier>, expected: Option<Tier>) -> Replayed {
        Replayed {
            id: "x".into(),
            tier,
            minutes_to_escalation: tier.map(|_| 10.0),
            reasons: vec!["k".into()],
            sla_breach: false,
            evaluations: 1,
            errors: 0,
            expected: Some(expected),
            made_sla: None,
        }
    }

    #[test]
    fn precision_recall_and_confusion_are_counted_per_class() {
        use Tier::*;
        let mut a = Aggregate::default();
        a.add(&[
            r(Some(Critical), Some(Critical)),
            r(Some(High), Some(Critical)),
            r(None, Some(Medium)),
            r(Some(Medium), Some(Medium)),
            r(Some(Critical), None),
            r(Some(Low), None),
        ]);
        let rep = a.report(1.0);
        assert_eq!(rep.labelled, 6);
        // Correct: critical/critical, medium/medium, low(=none)/none.
        assert_eq!(rep.agreement, Some(3.0 / 6.0));
        let c = &rep.classes["critical"];
        assert_eq!((c.support, c.predicted, c.correct), (2, 2, 1));
        assert_eq!((c.precision, c.recall), (0.5, 0.5));
        let low = &rep.classes["low"];
        assert_eq!((low.support, low.predicted, low.correct), (2, 2, 1));
        assert_eq!(rep.confusion["critical"]["high"], 1);
        assert_eq!(rep.over_escalated.len(), 1);
        assert_eq!(rep.under_escalated.len(), 2);
        assert_eq!(rep.tiers["none"], 1);
        assert_eq!(rep.tiers["low"], 1);
        assert!((rep.escalation_rate - 4.0 / 6.0).abs() < 1e-9);
    }

    #[test]
    fn priorities_map_to_tiers() {
        assert_eq!(hadoop_tier("Blocker"), Some(Some(Tier::Critical)));
        assert_eq!(hadoop_tier("Trivial"), Some(None));
        assert_eq!(hadoop_tier("?"), None);
        assert_eq!(servicenow_tier("2 - High"), Some(Tier::High));
        assert_eq!(servicenow_tier("x"), None);
    }
}
