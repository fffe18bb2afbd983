//! The report of a replay: tiers reached, escalation delays, reasons, and
//! against labels, agreement, per-class precision and recall, confusion;
//! against SLA outcomes, breaches flagged.

use super::run::Replayed;
use crate::model::Tier;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

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
    /// Calls made again after missing their wall-clock deadline on a busy
    /// machine (not errors: the result does not depend on them).
    pub deadline_retries: usize,
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
    retries: usize,
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
            self.retries += r.deadline_retries;
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
            deadline_retries: self.retries,
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
                // Flagged exactly when it breached (and not otherwise).
                (
                    "agreement".into(),
                    ratio(tickets + 2 * both - flagged - missed, tickets),
                ),
            ]));
        }
        rep
    }
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
            assignee: None,
            queue: None,
            sla_breach: false,
            evaluations: 1,
            errors: 0,
            deadline_retries: 0,
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
}
