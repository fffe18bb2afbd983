//! Importers: Escalator's own JSONL, the Twitter customer-care
//! conversations, the Hadoop bug reports and the ServiceNow incident
//! timings, each read as a stream of [`Case`]s.

use super::Case;
use crate::model::{self, AuthorKind, Message, Ticket, TicketStatus, Tier};
use anyhow::{Context as _, Result};
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_to_tiers() {
        assert_eq!(hadoop_tier("Blocker"), Some(Some(Tier::Critical)));
        assert_eq!(hadoop_tier("Trivial"), Some(None));
        assert_eq!(hadoop_tier("?"), None);
        assert_eq!(servicenow_tier("2 - High"), Some(Tier::High));
        assert_eq!(servicenow_tier("x"), None);
    }
}
