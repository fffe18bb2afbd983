//! Metrics: counters and histograms the engine records as it works, and
//! the Prometheus text exposition of them (with gauges read from the store
//! at scrape time: open tickets per agent, notifications by outcome).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Bucket bounds, in seconds, for times to escalation and to claim.
pub const TIME_BUCKETS: &[f64] = &[
    60.0, 300.0, 900.0, 1800.0, 3600.0, 14_400.0, 43_200.0, 86_400.0, 604_800.0,
];
/// Bucket bounds, in seconds, for plugin call durations.
pub const CALL_BUCKETS: &[f64] = &[
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.01, 0.05, 0.25,
];
/// Bucket bounds for fuel per call.
pub const FUEL_BUCKETS: &[f64] = &[1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// A histogram with fixed bounds.
#[derive(Debug, Clone, Default)]
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    fn observe(&mut self, v: f64) {
        for (i, b) in self.bounds.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }

    /// Observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Their sum.
    pub fn sum(&self) -> f64 {
        self.sum
    }
}

pub type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Inner {
    counters: BTreeMap<(&'static str, Labels), f64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    /// Values seen per (label, scope), for [`Metrics::bounded`].
    seen: std::collections::HashMap<(&'static str, String), std::collections::HashSet<String>>,
}

/// Distinct values one label may take per scope (a tenant) before the
/// rest count as `other`: plugin-chosen strings never grow `/metrics`
/// without bound.
pub const MAX_LABEL_VALUES: usize = 32;
/// Characters of a label value kept.
pub const MAX_LABEL_CHARS: usize = 64;

/// The engine's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    /// The `instance` label on every line, where several instances share
    /// a database (their counters are their own).
    instance: std::sync::OnceLock<String>,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "escalator_escalations_total",
        "counter",
        "Escalations (first or to a higher tier), by tier and cause (the trigger of the highest signal).",
    ),
    (
        "escalator_claims_total",
        "counter",
        "Claims of escalated tickets, by tier and whether within the tier's response target.",
    ),
    (
        "escalator_sla_breaches_total",
        "counter",
        "SLA breach signals, by the ticket's tier and clock.",
    ),
    (
        "escalator_csat_ratings_total",
        "counter",
        "Satisfaction ratings, by whether the ticket had escalated.",
    ),
    (
        "escalator_csat_score_total",
        "counter",
        "Sum of the ratings' scores (1-5): over escalator_csat_ratings_total, the average.",
    ),
    (
        "escalator_resolution_after_escalation_seconds",
        "histogram",
        "From an escalated ticket's first escalation to its resolution, by tier.",
    ),
    (
        "escalator_over_escalations_total",
        "counter",
        "Escalated tickets resolved without a human writing to the customer after the escalation, by tier.",
    ),
    (
        "escalator_under_escalations_total",
        "counter",
        "Tickets that never escalated although their SLA breached (sla-breach) or the customer rated them 1-2 (low-csat).",
    ),
    (
        "escalator_events_failed_total",
        "counter",
        "Events whose decision failed (marked failed, never retried).",
    ),
    (
        "escalator_time_to_escalation_seconds",
        "histogram",
        "From ticket creation to its (first) escalation.",
    ),
    (
        "escalator_time_to_claim_seconds",
        "histogram",
        "From escalation to claim.",
    ),
    ("escalator_plugin_calls_total", "counter", "Plugin calls."),
    (
        "escalator_plugin_errors_total",
        "counter",
        "Failed plugin calls, by error kind.",
    ),
    (
        "escalator_plugin_call_seconds",
        "histogram",
        "Plugin call time: instantiation and call.",
    ),
    (
        "escalator_plugin_fuel",
        "histogram",
        "Fuel burnt per plugin call.",
    ),
    (
        "escalator_agent_open_tickets",
        "gauge",
        "Open tickets per agent.",
    ),
    ("escalator_agent_capacity", "gauge", "Capacity per agent."),
    (
        "escalator_notifications",
        "gauge",
        "Notifications in the delivery log, by channel and status.",
    ),
];

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Add `v` to counter `name`.
    pub fn add(&self, name: &'static str, labels: Labels, v: f64) {
        *lock(&self.inner)
            .counters
            .entry((name, labels))
            .or_default() += v;
    }

    /// `value` as a value of `label` within `scope`: itself for the first
    /// [`MAX_LABEL_VALUES`] distinct values (cut to [`MAX_LABEL_CHARS`]),
    /// `other` after that.
    pub fn bounded(&self, label: &'static str, scope: &str, value: &str) -> String {
        let value: String = value.chars().take(MAX_LABEL_CHARS).collect();
        let mut inner = lock(&self.inner);
        let seen = inner.seen.entry((label, scope.to_string())).or_default();
        if seen.contains(&value) {
            return value;
        }
        if seen.len() >= MAX_LABEL_VALUES {
            return "other".into();
        }
        seen.insert(value.clone());
        value
    }

    /// Observe `v` in histogram `name`.
    pub fn observe(&self, name: &'static str, bounds: &'static [f64], labels: Labels, v: f64) {
        lock(&self.inner)
            .histograms
            .entry((name, labels))
            .or_insert_with(|| Histogram::new(bounds))
            .observe(v);
    }

    /// A counter's value (0 if never touched).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        lock(&self.inner)
            .counters
            .iter()
            .filter(|((n, l), _)| *n == name && matches(l, labels))
            .map(|(_, v)| *v)
            .sum()
    }

    /// A histogram's (count, sum) over every label set matching `labels`.
    pub fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> (u64, f64) {
        lock(&self.inner)
            .histograms
            .iter()
            .filter(|((n, l), _)| *n == name && matches(l, labels))
            .fold((0, 0.0), |(c, s), (_, h)| (c + h.count, s + h.sum))
    }

    /// Every counter and histogram with a `tenant` label equal to `tenant`,
    /// summed over the other labels but `keep`: (name, kept label value,
    /// value or (count, sum)).
    pub fn by_label(&self, name: &str, tenant: &str, keep: &str) -> BTreeMap<String, (f64, f64)> {
        let inner = lock(&self.inner);
        let mut out: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let pick = |l: &Labels| {
            l.iter()
                .any(|(k, v)| *k == "tenant" && v == tenant)
                .then(|| l.iter().find(|(k, _)| *k == keep).map(|(_, v)| v.clone()))
                .flatten()
        };
        for ((n, l), v) in &inner.counters {
            if *n == name
                && let Some(k) = pick(l)
            {
                out.entry(k).or_default().0 += v;
            }
        }
        for ((n, l), h) in &inner.histograms {
            if *n == name
                && let Some(k) = pick(l)
            {
                let e = out.entry(k).or_default();
                e.0 += h.count as f64;
                e.1 += h.sum;
            }
        }
        out
    }

    /// Label every line with `instance` (once; later calls change
    /// nothing).
    pub fn set_instance(&self, instance: &str) {
        let _ = self.instance.set(instance.to_string());
    }

    /// The Prometheus text exposition, with `gauges` (name, labels, value)
    /// read from the store appended.
    pub fn render(&self, gauges: &[(&'static str, Labels, f64)]) -> String {
        let inner = lock(&self.inner);
        let mut out = String::new();
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let instance = self
            .instance
            .get()
            .map(|i| format!("instance=\"{}\"", esc(i)));
        let fmt_labels = |l: &Labels, extra: Option<(&str, String)>| {
            let mut parts: Vec<String> = instance.iter().cloned().collect();
            parts.extend(l.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))));
            if let Some((k, v)) = extra {
                parts.push(format!("{k}=\"{v}\""));
            }
            if parts.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", parts.join(","))
            }
        };
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for ((n, l), v) in &inner.counters {
                if n == name {
                    let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
                }
            }
            for ((n, l), h) in &inner.histograms {
                if n == name {
                    for (b, c) in h.bounds.iter().zip(&h.counts) {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {c}",
                            fmt_labels(l, Some(("le", format!("{b}"))))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        fmt_labels(l, Some(("le", "+Inf".into()))),
                        h.count
                    );
                    let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), h.sum);
                    let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
                }
            }
            for (n, l, v) in gauges {
                if n == name {
                    let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
                }
            }
        }
        out
    }
}

fn matches(have: &Labels, want: &[(&str, &str)]) -> bool {
    want.iter()
        .all(|(k, v)| have.iter().any(|(hk, hv)| hk == k && hv == v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_chosen_label_values_are_bounded_per_scope() {
        let m = Metrics::default();
        for i in 0..10_000 {
            let cause = m.bounded("cause", "attacker", &format!("k{i}"));
            m.add("escalator_escalations_total", vec![("cause", cause)], 1.0);
        }
        assert_eq!(
            m.bounded("cause", "victim", "sla"),
            "sla",
            "scopes are apart"
        );
        assert_eq!(
            m.bounded("cause", "attacker", "k3"),
            "k3",
            "seen values stay"
        );
        assert_eq!(m.bounded("cause", "attacker", "k9999"), "other");
        let text = m.render(&[]);
        let lines = text
            .lines()
            .filter(|l| l.starts_with("escalator_escalations_total{"))
            .count();
        assert_eq!(lines, MAX_LABEL_VALUES + 1);
        assert_eq!(m.bounded("x", "s", &"y".repeat(500)).len(), MAX_LABEL_CHARS);
    }

    #[test]
    fn counters_and_histograms_render_as_prometheus_text() {
        let m = Metrics::default();
        let l = || vec![("tenant", "acme".to_string()), ("tier", "high".to_string())];
        m.add("escalator_escalations_total", l(), 1.0);
        m.add("escalator_escalations_total", l(), 1.0);
        m.observe(
            "escalator_time_to_escalation_seconds",
            TIME_BUCKETS,
            l(),
            120.0,
        );
        let text = m.render(&[(
            "escalator_agent_open_tickets",
            vec![("agent", "a\"b".into())],
            3.0,
        )]);
        assert!(
            text.contains("escalator_escalations_total{tenant=\"acme\",tier=\"high\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("escalator_time_to_escalation_seconds_bucket{tenant=\"acme\",tier=\"high\",le=\"60\"} 0\n"));
        assert!(text.contains("escalator_time_to_escalation_seconds_bucket{tenant=\"acme\",tier=\"high\",le=\"300\"} 1\n"));
        assert!(text.contains(
            "escalator_time_to_escalation_seconds_count{tenant=\"acme\",tier=\"high\"} 1\n"
        ));
        assert!(text.contains("escalator_agent_open_tickets{agent=\"a\\\"b\"} 3\n"));
        assert!(text.contains("# TYPE escalator_plugin_call_seconds histogram"));
        assert_eq!(
            m.counter("escalator_escalations_total", &[("tier", "high")]),
            2.0
        );
        assert_eq!(
            m.histogram("escalator_time_to_escalation_seconds", &[]),
            (1, 120.0)
        );
    }
}
