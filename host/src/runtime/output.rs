//! What the runtime checks of a plugin's output: its size and its sense.
//! Every duration, timestamp, count and string a plugin returns is
//! range-checked here, before anything uses it; a value out of range makes
//! the call `InvalidOutput` (and the manifest's error policy applies).

use super::wit;

/// The documented bounds of plugin output.
pub mod bounds {
    /// Signals one trigger call may return.
    pub const MAX_SIGNALS: usize = 64;
    /// Bytes of a signal key (`plugin:cause[:detail]`).
    pub const MAX_KEY_BYTES: usize = 128;
    /// Bytes of a reason.
    pub const MAX_REASON_BYTES: usize = 2_048;
    /// Evidence items of one signal.
    pub const MAX_EVIDENCE_ITEMS: usize = 32;
    /// Bytes of a skill, queue, agent, team or endpoint name.
    pub const MAX_NAME_BYTES: usize = 256;
    /// Fallback steps of one routing.
    pub const MAX_FALLBACK_STEPS: usize = 16;
    /// Steps of one notification plan.
    pub const MAX_PLAN_STEPS: usize = 64;
    /// The longest delay of a plan step or fallback: 30 days.
    pub const MAX_DELAY_MS: u64 = 30 * 24 * 3_600_000;
    /// The longest digest window: 1 day.
    pub const MAX_DIGEST_WINDOW_MS: u64 = 24 * 3_600_000;
    /// The furthest a `wake-at` may lie ahead of the evaluation: 366 days.
    pub const MAX_WAKE_AHEAD_MS: i64 = 366 * 24 * 3_600_000;
}
use bounds::*;

/// What the runtime checks of a plugin's output.
pub trait Output {
    /// Bytes of text (and a few bytes per item) it carries.
    fn size(&self) -> usize;
    /// Whether it makes sense for an evaluation at `now` (ms since the
    /// epoch); the error says what does not.
    fn validate(&self, now: i64) -> Result<(), String>;
}

fn name_ok(what: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_NAME_BYTES {
        return Err(format!(
            "{what} is {} bytes, over {MAX_NAME_BYTES}",
            s.len()
        ));
    }
    Ok(())
}

fn duration_ok(what: &str, ms: u64, max: u64) -> Result<(), String> {
    if ms > max {
        return Err(format!("{what} is {ms} ms, over the maximum of {max} ms"));
    }
    Ok(())
}

fn strings<'a>(items: impl IntoIterator<Item = &'a String>) -> usize {
    items.into_iter().map(|s| s.len() + 8).sum()
}

fn target_size(t: &wit::Target) -> usize {
    match t {
        wit::Target::Agent(s) | wit::Target::Queue(s) => s.len() + 8,
    }
}

fn check_target(t: &wit::Target, what: &str) -> Result<(), String> {
    match t {
        wit::Target::Agent(s) | wit::Target::Queue(s) if s.trim().is_empty() => {
            Err(format!("{what} names no one"))
        }
        wit::Target::Agent(s) | wit::Target::Queue(s) => name_ok(what, s),
    }
}

impl Output for wit::Evaluation {
    fn size(&self) -> usize {
        self.signals
            .iter()
            .map(|s| {
                32 + s.key.len()
                    + s.reason.len()
                    + strings(&s.evidence)
                    + strings(s.target_skill.iter().chain(&s.target_queue))
            })
            .sum()
    }
    fn validate(&self, now: i64) -> Result<(), String> {
        if self.signals.len() > MAX_SIGNALS {
            return Err(format!(
                "{} signals, over the maximum of {MAX_SIGNALS}",
                self.signals.len()
            ));
        }
        for (i, s) in self.signals.iter().enumerate() {
            if s.key.trim().is_empty() {
                return Err(format!("signal {i} has an empty key"));
            }
            if s.key.len() > MAX_KEY_BYTES {
                return Err(format!(
                    "signal {i}'s key is {} bytes, over {MAX_KEY_BYTES}",
                    s.key.len()
                ));
            }
            if s.reason.trim().is_empty() {
                return Err(format!("signal {i} ({}) has an empty reason", s.key));
            }
            if s.reason.len() > MAX_REASON_BYTES {
                return Err(format!(
                    "signal {i} ({})'s reason is {} bytes, over {MAX_REASON_BYTES}",
                    s.key,
                    s.reason.len()
                ));
            }
            if s.evidence.len() > MAX_EVIDENCE_ITEMS {
                return Err(format!(
                    "signal {i} ({}) has {} evidence items, over {MAX_EVIDENCE_ITEMS}",
                    s.key,
                    s.evidence.len()
                ));
            }
            for n in s.target_skill.iter().chain(&s.target_queue) {
                name_ok(&format!("signal {i}'s target"), n)?;
            }
        }
        if let Some(at) = self.wake_at {
            let latest = now.saturating_add(MAX_WAKE_AHEAD_MS);
            if !(0..=latest).contains(&at) {
                return Err(format!(
                    "wake-at {at} is outside 1970 .. now + {MAX_WAKE_AHEAD_MS} ms ({latest})"
                ));
            }
        }
        Ok(())
    }
}

impl Output for wit::Routing {
    fn size(&self) -> usize {
        target_size(&self.target)
            + self.reason.len()
            + self
                .fallback
                .iter()
                .map(|f| 16 + target_size(&f.target) + f.reason.len())
                .sum::<usize>()
    }
    fn validate(&self, _now: i64) -> Result<(), String> {
        check_target(&self.target, "the routing target")?;
        if self.fallback.len() > MAX_FALLBACK_STEPS {
            return Err(format!(
                "{} fallback steps, over the maximum of {MAX_FALLBACK_STEPS}",
                self.fallback.len()
            ));
        }
        for (i, f) in self.fallback.iter().enumerate() {
            check_target(&f.target, &format!("fallback step {i}"))?;
            duration_ok(&format!("fallback step {i}'s after"), f.after, MAX_DELAY_MS)?;
        }
        Ok(())
    }
}

impl Output for wit::NotificationPlan {
    fn size(&self) -> usize {
        self.customer_message.as_ref().map_or(0, String::len)
            + self
                .steps
                .iter()
                .map(|s| {
                    let r = match &s.recipient {
                        wit::Recipient::Agent(x)
                        | wit::Recipient::Team(x)
                        | wit::Recipient::Endpoint(x) => x.len(),
                    };
                    32 + r + s.title.len() + s.body.len()
                })
                .sum::<usize>()
    }
    fn validate(&self, _now: i64) -> Result<(), String> {
        if self.steps.len() > MAX_PLAN_STEPS {
            return Err(format!(
                "{} notification steps, over the maximum of {MAX_PLAN_STEPS}",
                self.steps.len()
            ));
        }
        for (i, s) in self.steps.iter().enumerate() {
            let r = match &s.recipient {
                wit::Recipient::Agent(x)
                | wit::Recipient::Team(x)
                | wit::Recipient::Endpoint(x) => x,
            };
            if r.trim().is_empty() {
                return Err(format!("notification step {i} has no recipient"));
            }
            name_ok(&format!("notification step {i}'s recipient"), r)?;
            duration_ok(
                &format!("notification step {i}'s delay"),
                s.delay,
                MAX_DELAY_MS,
            )?;
            duration_ok(
                &format!("notification step {i}'s digest window"),
                s.digest_window,
                MAX_DIGEST_WINDOW_MS,
            )?;
            if s.title.trim().is_empty() && s.body.trim().is_empty() {
                return Err(format!("notification step {i} has neither title nor body"));
            }
        }
        Ok(())
    }
}
