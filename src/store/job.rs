//! What a job is, as stored: one durable action flexhook owes Twilio, of one [`JobKind`],
//! unique by its key within that kind, with its state, its attempts and Twilio's last answer.
//!
//! The store is kind-neutral: insert-if-absent, leases, retries, dead jobs and purging work
//! the same for every kind, and a job's input is JSON only its kind reads. What each kind
//! does, its input and its key live in `crate::jobs`, one module per kind.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use crate::domain::{
    AccountSid, ChatServiceSid, ConversationSid, InteractionChannelSid, InteractionSid, MessageSid,
    TaskSid, WebhookSid,
};

/// Which action a job performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Create the conversation's Flex interaction (then remove its webhook).
    Interaction,
    /// Set the conversation's `Timers.Closed` / `Timers.Inactive` after the hand-off.
    Timers,
    /// Close an orphaned conversation's interaction channel (after telling the customer),
    /// unless another task of the conversation is still live.
    Close,
    /// Post a routing rule's reply to the customer, at most once.
    Reply,
    /// `lifecycle.reengage = "flexhook"`: a task of the conversation ended and an agent
    /// left or parked its channel; give the conversation a webhook again, to hear the reply.
    Watch,
    /// `lifecycle.reengage = "flexhook"`: the customer replied to a left or parked channel;
    /// invite a new task to it, once per episode.
    Invite,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        Self::Interaction,
        Self::Timers,
        Self::Close,
        Self::Reply,
        Self::Watch,
        Self::Invite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Interaction => "interaction",
            Self::Timers => "timers",
            Self::Close => "close",
            Self::Reply => "reply",
            Self::Watch => "watch",
            Self::Invite => "invite",
        }
    }
}

impl FromStr for JobKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("`{s}` is not a job kind this flexhook knows (interaction, timers, close, reply, watch, invite)")
            })
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job stands. One stored vocabulary for every kind; which of these a kind can end
/// in, its module in `crate::jobs` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    /// An interaction job that is done: the interaction exists.
    Created,
    /// A timers job that is done.
    Set,
    /// A close job that closed the interaction channel.
    Closed,
    /// A close job that left the conversation open: another task still has the customer.
    KeptOpen,
    /// A reply job that posted its message.
    Sent,
    /// A watch job that gave the conversation its webhook again.
    Watching,
    /// An invite job that invited a new task to the channel.
    Invited,
    /// An interaction job whose rule said to create no task (yet: the conversation's next
    /// message decides again, at its own time); a watch or invite job with nothing to do
    /// (the channel is not left or parked, or a task has the customer).
    Ignored,
    /// Twilio answered 45354: the conversation is closed, so there is nothing left to do
    /// for it. Final, and not a failure to alert on.
    ConversationClosed,
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 11] = [
        Self::Pending,
        Self::Created,
        Self::Set,
        Self::Closed,
        Self::KeptOpen,
        Self::Sent,
        Self::Watching,
        Self::Invited,
        Self::Ignored,
        Self::ConversationClosed,
        Self::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Created => "created",
            Self::Set => "set",
            Self::Closed => "closed",
            Self::KeptOpen => "kept_open",
            Self::Sent => "sent",
            Self::Watching => "watching",
            Self::Invited => "invited",
            Self::Ignored => "ignored",
            Self::ConversationClosed => "conversation_closed",
            Self::Dead => "dead",
        }
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "`{s}` is not pending, created, set, closed, kept_open, sent, watching, invited, ignored, conversation_closed or dead"
                )
            })
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job as a webhook (or an earlier job) asks for it; `crate::jobs` makes one from an
/// action.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub kind: JobKind,
    /// Unique within the kind: a second job with the same key is not inserted.
    pub key: String,
    pub conversation_sid: ConversationSid,
    pub account_sid: AccountSid,
    pub chat_service_sid: Option<ChatServiceSid>,
    pub webhook_sid: Option<WebhookSid>,
    pub first_message_sid: Option<MessageSid>,
    /// What the kind needs, as JSON only the kind reads (never a message body).
    pub input: String,
    pub received_at: i64,
}

/// Why an attempt did not finish, as kept with a job: Twilio's error, or flexhook's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobError {
    pub code: Option<i64>,
    pub status: Option<u16>,
    pub message: String,
    /// Where it failed. Not stored in a column of its own (see [`JobError::stored`]), nor
    /// shown by `jobs list --json`.
    #[serde(skip)]
    pub origin: ErrorOrigin,
}

/// Where an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorOrigin {
    /// At Twilio: its answer (`code`, `status`), or none at all (the network).
    Twilio,
    /// In the store, mid-attempt.
    Store,
    /// flexhook's own pacing held the create back: the rate limit's next slot was too far.
    Pacing,
    /// flexhook's own lease: too little of it was left to send within it.
    Lease,
}

/// How a store failure's message starts: how a stored row says where it failed.
const STORE_PREFIX: &str = "store: ";

impl JobError {
    /// Twilio's answer; `code` and `status` both `None`: no answer.
    pub fn twilio(code: Option<i64>, status: Option<u16>, message: impl Into<String>) -> Self {
        Self {
            code,
            status,
            message: message.into(),
            origin: ErrorOrigin::Twilio,
        }
    }

    /// The store failed mid-attempt.
    pub fn store(message: impl fmt::Display) -> Self {
        Self::flexhook(ErrorOrigin::Store, format!("{STORE_PREFIX}{message}"))
    }

    /// flexhook held the attempt back itself (`Pacing`, `Lease`): nothing was sent.
    pub fn flexhook(origin: ErrorOrigin, message: impl Into<String>) -> Self {
        Self {
            code: None,
            status: None,
            message: message.into(),
            origin,
        }
    }

    /// An error as its row keeps it. The origin is read back from what the columns have
    /// always held: a store failure has neither code nor status and its message the store's
    /// prefix; anything else reads back as Twilio's (flexhook's own pacing and lease
    /// retries, with neither code nor status, as Twilio's lack of an answer).
    pub(super) fn stored(code: Option<i64>, status: Option<u16>, message: String) -> Self {
        let origin =
            if code.is_none() && status.is_none() && message.starts_with(STORE_PREFIX.trim_end()) {
                ErrorOrigin::Store
            } else {
                ErrorOrigin::Twilio
            };
        Self {
            code,
            status,
            message,
            origin,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub id: i64,
    pub kind: JobKind,
    pub key: String,
    pub conversation_sid: ConversationSid,
    pub account_sid: AccountSid,
    pub chat_service_sid: Option<ChatServiceSid>,
    pub webhook_sid: Option<WebhookSid>,
    pub first_message_sid: Option<MessageSid>,
    /// The kind's input, as JSON only the kind reads.
    #[serde(skip)]
    pub input: String,
    pub state: JobState,
    pub attempts: u32,
    pub next_attempt_at: i64,
    /// An interaction job's create may have reached Twilio: look for its task first.
    #[serde(rename = "needs_lookup")]
    pub create_may_have_gone_out: bool,
    /// Flex accepted this interaction job's create: it is never sent again.
    pub create_accepted: bool,
    /// A reply or close job's message was, or may have been, posted: never again.
    pub message_sent: bool,
    /// Who holds (or last held) the job's lease: `{pid}-{random}#{claim}`.
    pub lease_owner: Option<String>,
    pub interaction_sid: Option<InteractionSid>,
    pub interaction_channel_sid: Option<InteractionChannelSid>,
    pub task_sid: Option<TaskSid>,
    pub last_error: Option<JobError>,
    /// What a finished job did, in words.
    pub outcome: Option<String>,
    pub webhook_removed: bool,
    /// When the max-age clock started: the first message, or the last manual retry.
    pub age_from: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an attempt decided for its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Created {
        interaction_sid: Option<InteractionSid>,
        interaction_channel_sid: Option<InteractionChannelSid>,
        task_sid: Option<TaskSid>,
    },
    Retry {
        /// Due again this long from now, by the store's clock.
        retry_in: Duration,
        error: JobError,
        /// An interaction job's create may have reached Twilio (kept as it stands when
        /// nothing was sent).
        create_may_have_gone_out: bool,
        /// Flex accepted the create: kept for good (a later `false` does not clear it).
        accepted: bool,
    },
    /// A job other than an interaction is done, in `state`, with what it did.
    Finished {
        state: JobState,
        outcome: String,
    },
    Dead {
        error: JobError,
    },
}

/// Whether an insert made a new job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Known,
}
