//! The jobs flexhook owes Twilio, one module per kind: `interaction` (the hand-off),
//! `timers`, `close`, `reply`, and for replies to a left or parked channel `watch` and
//! `invite`. Each says, through [`Kind`], what its jobs carry, how they
//! are keyed, how one attempt runs, which states they can end in and what follows once an
//! outcome is recorded; its module doc says what an attempt may already have done.
//!
//! The store below is kind-neutral (rows, leases, retries; the input is JSON only the kind
//! reads); the worker above claims jobs and runs them through [`Action::run`], whatever
//! their kind. Adding a kind: its module with a [`Kind`], a variant of [`Action`] and of
//! `store::JobKind` (and a `JobState` for an end of its own), and an arm in each match here.

mod backoff;
pub mod close;
pub mod interaction;
pub mod invite;
mod message;
pub mod reply;
pub(crate) mod retry;
pub mod timers;
pub mod watch;
pub mod webhook;

use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::LifecycleConfig;
use crate::domain::{AccountSid, ChatServiceSid, ConversationSid};
use crate::metrics::Metrics;
use crate::routing::{Router, RoutingInput};
use crate::store::{Job, JobError, JobKind, JobState, NewJob, Store, Transition};
use crate::twilio::{TwilioClient, TwilioError};

pub(crate) use backoff::Backoff;
pub use close::CloseInput;
pub(crate) use interaction::pace::CreateRateLimit;
pub use interaction::routing;
pub use invite::InviteInput;
pub use reply::ReplyInput;
pub(crate) use retry::RetryPolicy;
pub use timers::TimersInput;
pub use watch::WatchInput;

use close::Close;
use interaction::Interaction;
use invite::Invite;
use reply::Reply;
use timers::Timers;
use watch::Watch;

/// What every kind says about itself.
pub(crate) trait Kind {
    /// What its jobs carry, stored as JSON in the job's `input`.
    type Input: Serialize + DeserializeOwned;
    const KIND: JobKind;
    /// The states its jobs can end in, `dead` among them.
    const ENDS: &'static [JobState];
    /// Unique within the kind: a second job with the same key is not inserted.
    fn key(conversation: &ConversationSid, input: &Self::Input) -> String;
    /// One attempt: what it decided, and the jobs to insert with that outcome; `None` when
    /// the lease was lost before anything was sent (there is nothing to record).
    async fn run(cx: &Context, job: &Job, input: Self::Input, claim: &Claim) -> Option<Outcome>;
    /// What follows once the outcome is durable, outside its transaction.
    async fn after_record(_cx: &Context, _job: &Job, _transition: &Transition) {}
}

/// A job's action with its kind's input (never a message body).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    CreateInteraction(RoutingInput),
    SetTimers(TimersInput),
    CloseOrphan(CloseInput),
    Reply(ReplyInput),
    /// `lifecycle.reengage = "flexhook"`: listen for the reply to a left or parked channel.
    Watch(WatchInput),
    /// `lifecycle.reengage = "flexhook"`: invite a task for the reply.
    Invite(InviteInput),
}

impl Action {
    pub fn kind(&self) -> JobKind {
        match self {
            Self::CreateInteraction(_) => Interaction::KIND,
            Self::SetTimers(_) => Timers::KIND,
            Self::CloseOrphan(_) => Close::KIND,
            Self::Reply(_) => Reply::KIND,
            Self::Watch(_) => Watch::KIND,
            Self::Invite(_) => Invite::KIND,
        }
    }

    /// Unique within the kind, by the kind's rule.
    pub fn key(&self, conversation: &ConversationSid) -> String {
        match self {
            Self::CreateInteraction(routing) => Interaction::key(conversation, routing),
            Self::SetTimers(timers) => Timers::key(conversation, timers),
            Self::CloseOrphan(close) => Close::key(conversation, close),
            Self::Reply(reply) => Reply::key(conversation, reply),
            Self::Watch(watch) => Watch::key(conversation, watch),
            Self::Invite(invite) => Invite::key(conversation, invite),
        }
    }

    /// The stored `input` column.
    pub(crate) fn input(&self) -> String {
        let json = match self {
            Self::CreateInteraction(routing) => serde_json::to_string(routing),
            Self::SetTimers(timers) => serde_json::to_string(timers),
            Self::CloseOrphan(close) => serde_json::to_string(close),
            Self::Reply(reply) => serde_json::to_string(reply),
            Self::Watch(watch) => serde_json::to_string(watch),
            Self::Invite(invite) => serde_json::to_string(invite),
        };
        json.unwrap_or_else(|_| "{}".into())
    }

    /// The job that performs this action on `conversation`: its kind, its kind's key and
    /// its stored input. No webhook or first message: a webhook's job adds its own.
    pub fn job(
        &self,
        conversation: &ConversationSid,
        account: &AccountSid,
        chat_service: Option<&ChatServiceSid>,
        received_at: i64,
    ) -> NewJob {
        NewJob {
            kind: self.kind(),
            key: self.key(conversation),
            conversation_sid: conversation.clone(),
            account_sid: account.clone(),
            chat_service_sid: chat_service.cloned(),
            webhook_sid: None,
            first_message_sid: None,
            input: self.input(),
            received_at,
        }
    }

    /// A follow-up of `job`: this action on the same conversation, asked for `now`.
    pub(crate) fn after(&self, job: &Job, now: i64) -> NewJob {
        self.job(
            &job.conversation_sid,
            &job.account_sid,
            job.chat_service_sid.as_ref(),
            now,
        )
    }

    /// A stored job's action, read by its kind.
    pub fn of(job: &Job) -> Result<Self, String> {
        Self::read(job.kind, &job.input)
    }

    fn read(kind: JobKind, input: &str) -> Result<Self, String> {
        fn read<K: Kind>(input: &str) -> serde_json::Result<K::Input> {
            serde_json::from_str(input)
        }
        let read = match kind {
            JobKind::Interaction => read::<Interaction>(input).map(Self::CreateInteraction),
            JobKind::Timers => read::<Timers>(input).map(Self::SetTimers),
            JobKind::Close => read::<Close>(input).map(Self::CloseOrphan),
            JobKind::Reply => read::<Reply>(input).map(Self::Reply),
            JobKind::Watch => read::<Watch>(input).map(Self::Watch),
            JobKind::Invite => read::<Invite>(input).map(Self::Invite),
        };
        read.map_err(|e| format!("input of a {kind} job: {e}"))
    }

    /// One attempt at `job`, by its kind.
    pub(crate) async fn run(self, cx: &Context, job: &Job, claim: &Claim) -> Option<Outcome> {
        match self {
            Self::CreateInteraction(routing) => Interaction::run(cx, job, routing, claim).await,
            Self::SetTimers(timers) => Timers::run(cx, job, timers, claim).await,
            Self::CloseOrphan(close) => Close::run(cx, job, close, claim).await,
            Self::Reply(reply) => Reply::run(cx, job, reply, claim).await,
            Self::Watch(watch) => Watch::run(cx, job, watch, claim).await,
            Self::Invite(invite) => Invite::run(cx, job, invite, claim).await,
        }
    }
}

/// The states a job of `kind` can end in.
pub fn ends(kind: JobKind) -> &'static [JobState] {
    match kind {
        JobKind::Interaction => Interaction::ENDS,
        JobKind::Timers => Timers::ENDS,
        JobKind::Close => Close::ENDS,
        JobKind::Reply => Reply::ENDS,
        JobKind::Watch => Watch::ENDS,
        JobKind::Invite => Invite::ENDS,
    }
}

/// The kind's work once `job`'s outcome is recorded.
pub(crate) async fn after_record(cx: &Context, job: &Job, transition: &Transition) {
    match job.kind {
        JobKind::Interaction => Interaction::after_record(cx, job, transition).await,
        JobKind::Timers => Timers::after_record(cx, job, transition).await,
        JobKind::Close => Close::after_record(cx, job, transition).await,
        JobKind::Reply => Reply::after_record(cx, job, transition).await,
        JobKind::Watch => Watch::after_record(cx, job, transition).await,
        JobKind::Invite => Invite::after_record(cx, job, transition).await,
    }
}

/// A job that finds nothing to do, and says why.
fn ignored(outcome: String) -> Transition {
    Transition::Finished {
        state: JobState::Ignored,
        outcome,
    }
}

/// What the kinds need from `worker.*`, `flex.*` and `lifecycle.*`.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub retry: RetryPolicy,
    /// How long a claim holds its jobs (`worker.lease_secs`).
    pub lease: Duration,
    pub remove_webhook: bool,
    pub max_creates_per_second: u32,
    pub lifecycle: LifecycleConfig,
    /// `server.public_base_url` (or the tunnel's): where a watch job's webhook points.
    pub public_base_url: Option<String>,
}

/// What a kind's run may use.
pub(crate) struct Context {
    /// The account's configured name: its jobs' logs and metrics carry it.
    pub account: String,
    pub store: Store,
    pub client: TwilioClient,
    pub router: Router,
    pub limiter: CreateRateLimit,
    pub settings: Settings,
    pub metrics: Metrics,
}

impl Context {
    /// What becomes of `job` after Twilio's error `e` ([`retry::after_failure`], now).
    /// `ambiguous`: the request may have been processed.
    pub fn failed(&self, job: &Job, e: &TwilioError, ambiguous: bool) -> Transition {
        retry::after_failure(
            &self.settings.retry,
            &retry::Attempt::of(job, self.store.now_ms()),
            &retry::Failure::of(e, ambiguous),
            &mut rand::thread_rng(),
        )
    }

    /// A retry after the store failed mid-attempt, `create_may_have_gone_out` as it must
    /// stay.
    pub fn store_failed(
        &self,
        job: &Job,
        message: &str,
        create_may_have_gone_out: bool,
    ) -> Transition {
        retry::after_store_failure(
            &self.settings.retry,
            &retry::Attempt::of(job, self.store.now_ms()),
            message,
            create_may_have_gone_out,
            &mut rand::thread_rng(),
        )
    }
}

/// One claim of due jobs: its lease token, and the last moment a create may start under it.
/// A create started by then is over, answered or timed out, before the lease ends and
/// another claim can look for what it made.
#[derive(Debug, Clone)]
pub(crate) struct Claim {
    pub lease: String,
    pub send_by: Instant,
}

/// What an attempt decided, and the jobs it asks for once that is recorded (in the same
/// transaction: they exist if and only if the outcome does).
pub(crate) struct Outcome {
    pub transition: Transition,
    pub follow_ups: Vec<NewJob>,
    /// The interaction was not created but found: an earlier attempt's, adopted.
    pub adopted: bool,
}

impl From<Transition> for Outcome {
    fn from(transition: Transition) -> Self {
        Self {
            transition,
            follow_ups: Vec::new(),
            adopted: false,
        }
    }
}

impl Outcome {
    /// The `outcome` label of `flexhook_jobs_total`.
    pub fn label(&self) -> &'static str {
        match &self.transition {
            Transition::Created { .. } if self.adopted => "adopted",
            Transition::Created { .. } => "created",
            Transition::Retry { .. } => "retried",
            Transition::Finished { state, .. } => state.as_str(),
            Transition::Dead { .. } => "dead",
        }
    }

    pub fn error(&self) -> Option<&JobError> {
        match &self.transition {
            Transition::Retry { error, .. } | Transition::Dead { error } => Some(error),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_but_pending_is_some_kinds_end_and_every_end_is_final() {
        for state in JobState::ALL {
            let ended = JobKind::ALL.iter().any(|k| ends(*k).contains(&state));
            assert_eq!(ended, state != JobState::Pending, "{state}");
        }
        for kind in JobKind::ALL {
            assert!(ends(kind).contains(&JobState::Dead), "{kind}");
        }
    }

    #[test]
    fn every_kind_keys_on_the_conversation_and_reads_back_what_it_stored() {
        let conversation = ConversationSid::parse(&format!("CH{:032x}", 7)).unwrap();
        let account = AccountSid::parse(&format!("AC{:032x}", 1)).unwrap();
        let reply = Action::Reply(ReplyInput {
            rule: "closed".into(),
            text: "We open at nine.".into(),
        });
        let timers = Action::SetTimers(TimersInput {
            closed: Some("PT24H".into()),
            inactive: None,
        });
        for action in [reply, timers] {
            let new = action.job(&conversation, &account, None, 1);
            assert_eq!(
                (new.kind, new.key.as_str()),
                (action.kind(), conversation.as_str())
            );
            assert_eq!(Action::read(new.kind, &new.input), Ok(action));
        }
    }

    #[test]
    fn watch_and_invite_jobs_key_on_the_episode_so_one_of_each_per_ended_task() {
        use crate::domain::{InteractionChannelSid, InteractionSid, TaskSid, WorkspaceSid};
        let conversation = ConversationSid::parse(&format!("CH{:032x}", 7)).unwrap();
        let account = AccountSid::parse(&format!("AC{:032x}", 1)).unwrap();
        let task = |n: u32| TaskSid::parse(&format!("WT{n:032x}")).unwrap();
        let watch = |n| {
            Action::Watch(WatchInput {
                workspace_sid: WorkspaceSid::parse(&format!("WS{:032x}", 1)).unwrap(),
                task_sid: task(n),
                interaction_sid: InteractionSid::parse(&format!("KD{:032x}", 1)).unwrap(),
                channel_sid: InteractionChannelSid::parse(&format!("UO{:032x}", 1)).unwrap(),
            })
        };
        let invite = |n| Action::Invite(InviteInput { task_sid: task(n) });
        for (first, second) in [(watch(1), watch(2)), (invite(1), invite(2))] {
            let a = first.job(&conversation, &account, None, 1);
            assert_eq!(a.key, format!("{conversation}/{}", task(1)));
            assert_ne!(a.key, second.key(&conversation), "another episode");
            assert_eq!(Action::read(a.kind, &a.input), Ok(first));
        }
    }
}
