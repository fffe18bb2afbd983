//! Tickets, customers, agents and plugin outputs as Escalator speaks them in
//! JSON: times in RFC 3339, enums in kebab-case, durations in ms with an
//! `_ms` suffix. The WIT types of the contract are converted in
//! `pipeline::contract`; the model knows nothing of the runtime.

mod state;
pub use state::*;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Priority tiers, lowest first (so `max` is the most urgent).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// Stays with the AI agent unless the customer asks for a human.
    Low,
    /// A human within the medium target.
    Medium,
    /// A human within the high target.
    High,
    /// A human within the critical target.
    Critical,
}

impl Tier {
    /// Its name, as in JSON: `critical`, `high`, `medium`, `low`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
            Tier::Critical => "critical",
        }
    }

    /// The delivery queue's order: 0 (critical, sent first) to 3 (low).
    pub fn send_priority(tier: Option<Tier>) -> i64 {
        match tier {
            Some(Tier::Critical) => 0,
            Some(Tier::High) => 1,
            Some(Tier::Medium) | None => 2,
            Some(Tier::Low) => 3,
        }
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AuthorKind {
    /// The customer.
    Customer,
    /// The AI agent.
    AiAgent,
    /// A human agent.
    HumanAgent,
    /// The system.
    System,
}

/// A ticket's status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TicketStatus {
    /// New.
    #[default]
    New,
    /// Open.
    Open,
    /// Waiting on the customer.
    Pending,
    /// Waiting on a third party.
    OnHold,
    /// Solved.
    Solved,
    /// Closed.
    Closed,
}

/// Where a ticket came from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TicketChannel {
    /// E-mail.
    Email,
    /// Chat.
    Chat,
    /// Phone.
    Phone,
    /// Social media.
    Social,
    /// Web form.
    WebForm,
    /// API.
    Api,
    /// Anything else.
    #[default]
    Other,
}

/// One message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// Id in the source system; numbered if absent.
    #[serde(default)]
    pub id: String,
    /// Who wrote it.
    pub author: AuthorKind,
    /// The author's id.
    #[serde(default)]
    pub author_id: Option<String>,
    /// The text.
    pub body: String,
    /// When.
    pub sent_at: DateTime<Utc>,
    /// Sentiment in -1..1 from upstream.
    #[serde(default)]
    pub sentiment: Option<f32>,
}

/// A status change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// The status entered.
    pub status: TicketStatus,
    /// When.
    pub at: DateTime<Utc>,
}

/// The customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Id.
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Plan, in the operator's words.
    #[serde(default)]
    pub plan: String,
    /// Monthly recurring revenue, cents.
    #[serde(default)]
    pub mrr_cents: u64,
    /// On a trial.
    #[serde(default)]
    pub trial: bool,
    /// Contacts in the last seven days, this one included.
    #[serde(default)]
    pub contacts_this_week: u32,
    /// Account creation.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// Anything else.
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
}

/// The AI agent's analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AiAnalysis {
    /// Confidence, 0..1.
    pub confidence: f32,
    /// Intent.
    #[serde(default)]
    pub intent: Option<String>,
    /// Category.
    #[serde(default)]
    pub category: Option<String>,
    /// Reasoning.
    #[serde(default)]
    pub reasoning: String,
    /// Solutions tried.
    #[serde(default)]
    pub solutions_tried: Vec<String>,
    /// When.
    #[serde(default)]
    pub analyzed_at: Option<DateTime<Utc>>,
}

/// serde's default for a flag that is on unless it is said to be off.
pub(crate) fn yes() -> bool {
    true
}

fn default_tenant() -> String {
    "default".into()
}

/// A ticket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ticket {
    /// Id.
    #[schemars(length(min = 1))]
    pub id: String,
    /// Tenant.
    #[serde(default = "default_tenant")]
    pub tenant: String,
    /// Subject.
    #[serde(default)]
    pub subject: String,
    /// Scenario / category.
    #[serde(default)]
    pub category: Option<String>,
    /// Channel.
    #[serde(default)]
    pub channel: TicketChannel,
    /// Status.
    #[serde(default)]
    pub status: TicketStatus,
    /// Status history, oldest first.
    #[serde(default)]
    pub status_history: Vec<StatusChange>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change; defaults to the latest message or `created_at`.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// Tier so far.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// Assignee.
    #[serde(default)]
    pub assignee: Option<String>,
    /// When a human claimed it.
    #[serde(default)]
    pub claimed_at: Option<DateTime<Utc>>,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The conversation.
    #[serde(default)]
    pub messages: Vec<Message>,
    /// The customer.
    #[serde(default)]
    pub customer: Option<Customer>,
    /// The AI's analysis.
    #[serde(default)]
    pub ai_analysis: Option<AiAnalysis>,
}

impl Tier {
    /// The next tier up (critical stays critical).
    pub fn next(self) -> Tier {
        match self {
            Tier::Low => Tier::Medium,
            Tier::Medium => Tier::High,
            Tier::High | Tier::Critical => Tier::Critical,
        }
    }
}

/// `at` plus `ms` milliseconds, if representable.
pub fn after(at: DateTime<Utc>, ms: u64) -> Option<DateTime<Utc>> {
    at.checked_add_signed(chrono::Duration::try_milliseconds(i64::try_from(ms).ok()?)?)
}

/// The id prefix of the conversation note an escalation adds (the guest
/// SDK's `sla::ESCALATION_NOTE`).
pub const ESCALATION_NOTE: &str = "escalation-";

impl Message {
    /// The note Escalator adds to the conversation when the ticket
    /// escalates (first, or to a higher tier) at `at`: triggers read its
    /// time as the moment the ticket reached its tier. `suffix` makes the
    /// id unique (the decision's number).
    pub fn escalation_note(
        suffix: impl std::fmt::Display,
        body: String,
        at: DateTime<Utc>,
    ) -> Message {
        Message {
            id: format!("{ESCALATION_NOTE}{suffix}"),
            author: AuthorKind::System,
            author_id: Some("escalator".into()),
            body,
            sent_at: at,
            sentiment: None,
        }
    }
}

impl Ticket {
    /// Whether the ticket is still to be worked on (not solved or closed).
    pub fn unresolved(&self) -> bool {
        !matches!(self.status, TicketStatus::Solved | TicketStatus::Closed)
    }

    /// A new, open ticket `id` of tenant `default`, created at `created_at`,
    /// with everything else empty: fill in the rest with struct update
    /// syntax.
    pub fn new(id: impl Into<String>, created_at: DateTime<Utc>) -> Ticket {
        Ticket {
            id: id.into(),
            tenant: default_tenant(),
            subject: String::new(),
            category: None,
            channel: TicketChannel::Other,
            status: TicketStatus::Open,
            status_history: Vec::new(),
            created_at,
            updated_at: None,
            tier: None,
            assignee: None,
            claimed_at: None,
            tags: Vec::new(),
            messages: Vec::new(),
            customer: None,
            ai_analysis: None,
        }
    }
}

/// What caused an evaluation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Created.
    TicketCreated,
    /// A message.
    #[default]
    MessageAdded,
    /// An AI analysis.
    AiAnalysis,
    /// Claimed.
    Claimed,
    /// An agent replied.
    AgentReplied,
    /// Status changed.
    StatusChanged,
    /// CSAT rating.
    CsatRating,
    /// Agent availability.
    AgentAvailability,
    /// A timer.
    Tick,
}

/// An agent's role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentRole {
    /// Agent.
    #[default]
    Agent,
    /// Team lead.
    Lead,
    /// Manager.
    Manager,
}

/// An agent's availability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AgentStatus {
    /// Available.
    #[default]
    Available,
    /// Away.
    Away,
    /// In a meeting.
    Meeting,
    /// Out of office.
    OutOfOffice,
    /// Offline.
    Offline,
}

/// A day of the week.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

/// A working shift, local time, `HH:MM`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Shift {
    /// The day.
    pub day: Weekday,
    /// Start, `HH:MM`.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// End, `HH:MM` (`24:00` for midnight).
    #[schemars(regex(pattern = r"^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"))]
    pub end: String,
}

fn default_capacity() -> u32 {
    10
}

fn default_zone() -> String {
    "UTC".into()
}

/// An agent of the roster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    /// Id (may be left out: the path's).
    pub id: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Role.
    #[serde(default)]
    pub role: AgentRole,
    /// Team.
    #[serde(default)]
    pub team: String,
    /// Skills.
    #[serde(default)]
    pub skills: Vec<String>,
    /// Availability.
    #[serde(default)]
    pub status: AgentStatus,
    /// Open tickets.
    #[serde(default)]
    pub open_tickets: u32,
    /// Capacity.
    #[serde(default = "default_capacity")]
    pub capacity: u32,
    /// Last assignment.
    #[serde(default)]
    pub last_assigned_at: Option<DateTime<Utc>>,
    /// Working hours; empty is always on.
    #[serde(default)]
    pub working_hours: Vec<Shift>,
    /// IANA time zone.
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// E-mail address for e-mail notifications.
    #[serde(default)]
    pub email: Option<String>,
    /// Slack member id (e.g. `U024BE7LH`), mentioned in Slack messages.
    #[serde(default)]
    pub slack_id: Option<String>,
    /// What this person wants to be told, set by them
    /// (`PUT /v1/agents/{id}/notifications`); none: what the plan says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<NotifyPrefs>,
}

/// A person's notification preferences. The host applies them to every
/// notifier's plan (the default one and a tenant's own): a person's wishes
/// do not depend on which plugin their tenant runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotifyPrefs {
    /// The tiers that notify this person; empty: every tier. Critical
    /// escalations still reach someone on duty (see [`TicketScope`]).
    #[serde(default)]
    pub tiers: Vec<Tier>,
    /// Which tickets.
    #[serde(default)]
    pub tickets: TicketScope,
    /// The channels this person is reached on, first preferred; a
    /// notification on another channel comes on the first of these
    /// instead. Empty: the plan's channel.
    #[serde(default)]
    pub channels: Vec<NotifyChannel>,
    /// Hours, in the person's time zone, when Slack, e-mail and webhook
    /// notifications below critical are held until the hours end (in-app
    /// ones are not held; critical ones never are).
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

/// A channel a person can be reached on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyChannel {
    /// Slack (the tenant's Slack webhook, mentioning them).
    Slack,
    /// E-mail, to their address.
    Email,
    /// Their in-app feed.
    InApp,
    /// The tenant's default webhook.
    Webhook,
}

impl From<NotifyChannel> for Channel {
    fn from(c: NotifyChannel) -> Channel {
        match c {
            NotifyChannel::Slack => Channel::Slack,
            NotifyChannel::Email => Channel::Email,
            NotifyChannel::InApp => Channel::InApp,
            NotifyChannel::Webhook => Channel::Webhook,
        }
    }
}

/// Which tickets notify a person.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TicketScope {
    /// Those the notifier's plan sends them: their own and their team's.
    #[default]
    Plan,
    /// Only tickets assigned to them.
    Mine,
    /// Every escalation of the tenant at their tiers, besides what the
    /// plan sends them (a lead or a manager watching everything).
    All,
}

/// Quiet hours, local time `HH:MM`; `start` after `end` crosses midnight
/// (`22:00`–`07:00`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// Start, `HH:MM`.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub start: String,
    /// End, `HH:MM`.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"))]
    pub end: String,
}

impl Signal {
    /// Whether this is an SLA breach: the sla trigger's keys are
    /// `sla:CLOCK:cycle-N:TIER:breach` (warnings end in a percentage).
    pub fn is_sla_breach(&self) -> bool {
        self.key.starts_with("sla:") && self.key.ends_with(":breach")
    }
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SignalAction {
    /// Escalate to the signal's tier.
    Escalate,
    /// Warn without re-tiering.
    Warn,
    /// Raise an escalating ticket one step, to the signal's tier at most.
    Raise,
}

/// A trigger's finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// Escalate or warn.
    pub action: SignalAction,
    /// Tier.
    pub tier: Tier,
    /// Stable key.
    pub key: String,
    /// Reason.
    pub reason: String,
    /// Evidence.
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Skill needed.
    #[serde(default)]
    pub target_skill: Option<String>,
    /// Queue.
    #[serde(default)]
    pub target_queue: Option<String>,
}

/// A trigger's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Evaluation {
    /// Signals.
    pub signals: Vec<Signal>,
    /// Evaluate again at.
    #[serde(default)]
    pub wake_at: Option<DateTime<Utc>>,
}

/// The composed escalation a router and notifier see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    /// Tier.
    pub tier: Tier,
    /// Signals.
    #[serde(default)]
    pub signals: Vec<Signal>,
    /// Response target, ms.
    #[serde(default)]
    pub response_target_ms: Option<u64>,
}

/// Who gets a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// An agent.
    Agent(String),
    /// A queue.
    Queue(String),
}

/// A fallback step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FallbackStep {
    /// After the assignment, ms.
    pub after_ms: u64,
    /// Who.
    pub target: Target,
    /// Why.
    pub reason: String,
}

/// A router's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Who now.
    pub target: Target,
    /// Why.
    pub reason: String,
    /// Then who.
    #[serde(default)]
    pub fallback: Vec<FallbackStep>,
}

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// Slack.
    Slack,
    /// E-mail.
    Email,
    /// In-app feed.
    InApp,
    /// Webhook.
    Webhook,
    /// A request to the help desk the ticket came from (write-back;
    /// plugins do not address it).
    Desk,
}

impl Channel {
    /// Its name, as in JSON: `slack`, `email`, `in-app`, `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Email => "email",
            Channel::InApp => "in-app",
            Channel::Webhook => "webhook",
            Channel::Desk => "desk",
        }
    }

    /// The channel of a name.
    pub fn parse(s: &str) -> Option<Channel> {
        [
            Channel::Slack,
            Channel::Email,
            Channel::InApp,
            Channel::Webhook,
            Channel::Desk,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A notification recipient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Recipient {
    /// An agent.
    Agent(String),
    /// A team.
    Team(String),
    /// A configured endpoint.
    Endpoint(String),
}

/// A notification step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationStep {
    /// After the escalation, ms.
    pub delay_ms: u64,
    /// To whom.
    pub recipient: Recipient,
    /// How.
    pub channel: Channel,
    /// Title.
    pub title: String,
    /// Body.
    pub body: String,
    /// Skip once claimed.
    pub stop_when_claimed: bool,
    /// Skip once a human answered after the plan was made.
    #[serde(default)]
    pub stop_when_answered: bool,
    /// Hold for a digest if the recipient was notified on this channel
    /// within this many ms (0: never hold).
    #[serde(default)]
    pub digest_window_ms: u64,
}

/// A notifier's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationPlan {
    /// Steps.
    pub steps: Vec<NotificationStep>,
    /// For the customer.
    #[serde(default)]
    pub customer_message: Option<String>,
}
