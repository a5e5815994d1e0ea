//! The labels `crate::metrics` counts by, each bounded by construction: a fixed list
//! (outcomes, event types), an account's configured name, an HTTP status or a Twilio
//! error code.

use prometheus_client::encoding::EncodeLabelSet;

use crate::store::{ErrorOrigin, JobError};

/// The `account` label of a webhook refused before its account was known: its
/// `AccountSid` names no configured account, or it could not be read.
pub const NO_ACCOUNT: &str = "unknown";

/// `account`, `route`, `event`, `outcome` of one webhook answer.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct WebhookLabels {
    pub(super) account: String,
    pub(super) route: &'static str,
    pub(super) event: &'static str,
    pub(super) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct RouteLabel {
    pub(super) account: String,
    pub(super) route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct JobLabels {
    pub(super) account: String,
    pub(super) kind: &'static str,
    pub(super) outcome: &'static str,
    pub(super) code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct KindLabel {
    pub(super) account: String,
    pub(super) kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct AccountLabel {
    pub(super) account: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ApiCallLabels {
    pub(super) account: String,
    pub(super) api: &'static str,
    pub(super) status: String,
    pub(super) code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ApiLabel {
    pub(super) account: String,
    pub(super) api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct BuildLabels {
    pub(super) version: &'static str,
    pub(super) store: &'static str,
}

/// How one webhook was answered: the `outcome` label of `flexhook_webhooks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum WebhookOutcome {
    /// New work was queued (a new conversation's job, a close job).
    Accepted,
    /// Nothing new: the conversation (or its close job) is known already.
    Known,
    /// Verified and understood, but not for flexhook to act on.
    Ignored,
    BadSignature,
    WrongAccount,
    BadRequest,
    TooLarge,
    StoreUnavailable,
}

impl WebhookOutcome {
    pub const ALL: [Self; 8] = [
        Self::Accepted,
        Self::Known,
        Self::Ignored,
        Self::BadSignature,
        Self::WrongAccount,
        Self::BadRequest,
        Self::TooLarge,
        Self::StoreUnavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Known => "known",
            Self::Ignored => "ignored",
            Self::BadSignature => "bad_signature",
            Self::WrongAccount => "wrong_account",
            Self::BadRequest => "bad_request",
            Self::TooLarge => "too_large",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

/// The `event` label of a webhook refused before its event was read.
pub const UNKNOWN_EVENT: &str = "unknown";
/// The `event` label of an event type not in [`EVENT_TYPES`].
pub const OTHER_EVENT: &str = "other";

/// A bounded `event` label: one of [`EVENT_TYPES`], [`OTHER_EVENT`] or [`UNKNOWN_EVENT`],
/// kept as its index so that the hot path finds its counter without hashing a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLabel(pub(super) u8);

impl EventLabel {
    pub const OTHER: Self = Self(EVENT_TYPES.len() as u8);
    pub const UNKNOWN: Self = Self(EVENT_TYPES.len() as u8 + 1);
    /// How many there are.
    pub(super) const COUNT: usize = EVENT_TYPES.len() + 2;

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OTHER => OTHER_EVENT,
            Self::UNKNOWN => UNKNOWN_EVENT,
            Self(i) => EVENT_TYPES[usize::from(i)],
        }
    }
}

// Every event label, `other` and `unknown` included, fits an `EventLabel`'s `u8`.
const _: () = assert!(EventLabel::COUNT <= u8::MAX as usize);

/// Every event type a label may name: Conversations' webhook events, then TaskRouter's.
const EVENT_TYPES: &[&str] = &[
    "onMessageAdded",
    "onMessageUpdated",
    "onMessageRemoved",
    "onMessageAdd",
    "onMessageUpdate",
    "onMessageRemove",
    "onConversationAdded",
    "onConversationUpdated",
    "onConversationRemoved",
    "onConversationStateUpdated",
    "onConversationAdd",
    "onConversationUpdate",
    "onConversationRemove",
    "onParticipantAdded",
    "onParticipantUpdated",
    "onParticipantRemoved",
    "onParticipantAdd",
    "onParticipantUpdate",
    "onParticipantRemove",
    "onDeliveryUpdated",
    "onUserAdded",
    "onUserUpdated",
    "onUserUpdate",
    "task.created",
    "task.updated",
    "task.canceled",
    "task.completed",
    "task.wrapup",
    "task.deleted",
    "task.system-deleted",
    "task.transfer-initiated",
    "task.transfer-attempt-failed",
    "task.transfer-failed",
    "task.transfer-canceled",
    "task.transfer-completed",
    "task-queue.entered",
    "task-queue.timeout",
    "task-queue.moved",
    "reservation.created",
    "reservation.accepted",
    "reservation.rejected",
    "reservation.timeout",
    "reservation.canceled",
    "reservation.rescinded",
    "reservation.completed",
    "reservation.failed",
    "reservation.wrapup",
    "workflow.target-matched",
    "workflow.entered",
    "workflow.timeout",
    "workflow.skipped",
    "worker.activity.update",
    "worker.attributes.update",
    "worker.capacity.update",
    "worker.channel.availability.update",
];

/// `raw` as a bounded label value: itself when it is a known event type, else `other`.
pub fn event_label(raw: &str) -> EventLabel {
    EVENT_TYPES
        .iter()
        .position(|known| *known == raw)
        .map_or(EventLabel::OTHER, |i| EventLabel(i as u8))
}

/// A failure's `code` label: `store` for the store's, else Twilio's error code, else
/// `http_<status>`, else `pacing` or `lease` for flexhook's own holding back (nothing was
/// sent), else `network`.
pub(super) fn error_code_label(error: &JobError) -> String {
    match (error.origin, error.code, error.status) {
        (ErrorOrigin::Store, ..) => "store".to_owned(),
        (_, Some(code), _) => code.to_string(),
        (_, None, Some(status)) => format!("http_{status}"),
        (ErrorOrigin::Pacing, None, None) => "pacing".to_owned(),
        (ErrorOrigin::Lease, None, None) => "lease".to_owned(),
        (ErrorOrigin::Twilio, None, None) => "network".to_owned(),
    }
}
