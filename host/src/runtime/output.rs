//! What the runtime checks of a plugin's output: its size and its sense.

use super::wit;

/// What the runtime checks of a plugin's output.
pub trait Output {
    /// Bytes of text (and a few bytes per item) it carries.
    fn size(&self) -> usize;
    /// Whether it makes sense; the error says what does not.
    fn validate(&self) -> Result<(), String>;
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
        _ => Ok(()),
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
    fn validate(&self) -> Result<(), String> {
        for (i, s) in self.signals.iter().enumerate() {
            if s.key.trim().is_empty() {
                return Err(format!("signal {i} has an empty key"));
            }
            if s.reason.trim().is_empty() {
                return Err(format!("signal {i} ({}) has an empty reason", s.key));
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
    fn validate(&self) -> Result<(), String> {
        check_target(&self.target, "the routing target")?;
        for (i, f) in self.fallback.iter().enumerate() {
            check_target(&f.target, &format!("fallback step {i}"))?;
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
    fn validate(&self) -> Result<(), String> {
        for (i, s) in self.steps.iter().enumerate() {
            let r = match &s.recipient {
                wit::Recipient::Agent(x)
                | wit::Recipient::Team(x)
                | wit::Recipient::Endpoint(x) => x,
            };
            if r.trim().is_empty() {
                return Err(format!("notification step {i} has no recipient"));
            }
            if s.title.trim().is_empty() && s.body.trim().is_empty() {
                return Err(format!("notification step {i} has neither title nor body"));
            }
        }
        Ok(())
    }
}
