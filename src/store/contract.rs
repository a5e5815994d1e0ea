//! The storage contract: every operation both backends offer, with one signature each.
//! Times are lengths from "now", and "now" is the store's [`Clock`] (PostgreSQL: the
//! database's clock, which its instances share, moved by the same offset), so no caller
//! converts between clocks and no backend drifts from the other.
//!
//! One list makes both the [`Storage`] trait each backend implements and [`Store`]'s
//! methods, which hand each call to whichever backend the store is.

use std::time::Duration;

use super::{
    Armed, Inserted, Job, JobKind, JobState, NewJob, Slot, Store, StoreError, StoreStats,
    Transition, Writer,
};
use crate::clock::Clock;
use crate::domain::{Backend, ConversationSid, InteractionChannelSid, InteractionSid, TaskSid};

/// Declares the contract: the trait, and `Store`'s delegating methods.
macro_rules! contract {
    (
        sync { $( $(#[$sync_doc:meta])* fn $sync:ident(&self) -> $sync_ret:ty; )* }
        $(
            $(#[$doc:meta])*
            async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)?;
        )*
    ) => {
        /// What a backend is: `SqliteStore` and `PostgresStore` implement exactly this.
        pub(crate) trait Storage {
            $( $(#[$sync_doc])* fn $sync(&self) -> $sync_ret; )*
            $( $(#[$doc])* async fn $name(&self $(, $arg: $ty)*) $(-> $ret)?; )*
        }

        impl Store {
            $(
                $(#[$sync_doc])*
                pub fn $sync(&self) -> $sync_ret {
                    match self {
                        Self::Sqlite(s) => Storage::$sync(s),
                        Self::Postgres(p) => Storage::$sync(p),
                    }
                }
            )*
            $(
                $(#[$doc])*
                pub async fn $name(&self $(, $arg: $ty)*) $(-> $ret)? {
                    match self {
                        Self::Sqlite(s) => Storage::$name(s $(, $arg)*).await,
                        Self::Postgres(p) => Storage::$name(p $(, $arg)*).await,
                    }
                }
            )*
        }
    };
}

contract! {
    sync {
        /// Which backend this is.
        fn backend(&self) -> Backend;

        /// The clock the store times jobs by (chosen in `StoreOptions`).
        fn clock(&self) -> &Clock;
    }

    /// Inserts each job unless its conversation already has one; one transaction for all.
    async fn insert_batch(&self, jobs: &[NewJob]) -> Result<Vec<Inserted>, StoreError>;

    /// A dedicated connection for the group-commit writer.
    async fn writer(&self) -> Result<Writer, StoreError>;

    /// Reserves the account's next Interactions API slot in the budget every instance
    /// shares, if it is at most `max_wait` away; `None` when the budget is this process's
    /// own (SQLite: one instance).
    async fn reserve_slot(
        &self,
        account: &str,
        interval: Duration,
        max_wait: Duration,
    ) -> Result<Option<Slot>, StoreError>;

    /// Takes up to `limit` due pending jobs of `account` (`None`: of any) for `owner`,
    /// leased for `lease` from now.
    async fn claim_due(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
        account: Option<&str>,
    ) -> Result<Vec<Job>, StoreError>;

    /// Records an attempt's outcome, if `owner` still holds the lease (`false`: it did not),
    /// and inserts `follow_ups` (unless present) in the same transaction: they exist if and
    /// only if the outcome is recorded. A retry is due its `retry_in` from now.
    async fn record_with(
        &self,
        job: i64,
        owner: &str,
        transition: &Transition,
        follow_ups: &[NewJob],
    ) -> Result<bool, StoreError>;

    /// Arms the conversation's close job for a task that ended: a job still pending (perhaps
    /// in flight) is told to look again ([`Armed::Recheck`]: it will not settle for
    /// `kept_open` on a list read before this end), one that finished `kept_open` is re-armed
    /// with `job`'s input, due now, and, with `insert`, a missing one is inserted. `task` and
    /// `interaction` (KD, UO) are kept with the job. A finished job's `message_sent` stays.
    async fn arm_close(
        &self,
        job: &NewJob,
        task: Option<&TaskSid>,
        interaction: Option<(&InteractionSid, &InteractionChannelSid)>,
        insert: bool,
    ) -> Result<Armed, StoreError>;

    /// Write-ahead before a create is sent: until an outcome is recorded, the job counts as
    /// possibly created, so whoever claims it next looks for its task first, and not before
    /// `lookup_delay` past this claim's lease, by when a create sent under it has reached
    /// Twilio and its task has had time to show. `false`: the lease is no longer `owner`'s,
    /// and nothing may be sent.
    async fn mark_attempt_started(
        &self,
        job: i64,
        owner: &str,
        lookup_delay: Duration,
    ) -> Result<bool, StoreError>;

    /// Write-ahead before a reply or close job posts its message (`sent = true`): from then
    /// on it counts as posted and is never posted again. `sent = false` takes it back after
    /// Twilio surely did not take it (a refusal, a refused connection). `false`: the lease is
    /// no longer `owner`'s.
    async fn mark_message(&self, job: i64, owner: &str, sent: bool) -> Result<bool, StoreError>;

    /// Replaces a leased job's input (facts looked up once, kept for every retry); `false`:
    /// the lease is no longer `owner`'s.
    async fn update_input(&self, job: i64, owner: &str, input: &str)
        -> Result<bool, StoreError>;

    /// Notes that the job's conversation webhook is gone.
    async fn mark_webhook_removed(&self, job: i64) -> Result<(), StoreError>;

    /// How long until the earliest pending job of `account` (`None`: of any) falls due
    /// (zero if it is due, or leased until then); `None` when nothing is pending.
    async fn next_due_in(&self, account: Option<&str>) -> Result<Option<Duration>, StoreError>;

    /// The job of `kind` with `key`.
    async fn find(&self, kind: JobKind, key: &str) -> Result<Option<Job>, StoreError>;

    /// Every job of a conversation, its episodes' (keyed `CH…/WT…`) included, oldest first.
    async fn for_conversation(
        &self,
        conversation: &ConversationSid,
    ) -> Result<Vec<Job>, StoreError>;

    /// The jobs whose task is `task`, oldest first (TaskRouter's events name tasks).
    async fn for_task(&self, task: &TaskSid) -> Result<Vec<Job>, StoreError>;

    /// Jobs, newest first, optionally of one state and one kind.
    async fn list(
        &self,
        state: Option<JobState>,
        kind: Option<JobKind>,
        account: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Job>, StoreError>;

    /// Moves dead jobs back to pending, due now, with a fresh max-age clock: the
    /// conversation's, or with `None` all of them.
    async fn retry_dead(&self, conversation: Option<&ConversationSid>) -> Result<u64, StoreError>;

    /// Deletes finished and dead jobs last touched more than `older_than` ago.
    async fn purge_finished(&self, older_than: Duration) -> Result<u64, StoreError>;

    /// Inserts copies of `jobs` from another store, each unless its kind and key exist here;
    /// how many were new. States, SIDs, errors and times are kept; leases are not.
    async fn copy_in(&self, jobs: &[Job]) -> Result<u64, StoreError>;

    /// Pending and dead jobs by kind, and the oldest pending job's age (for the metrics).
    async fn stats(&self) -> Result<StoreStats, StoreError>;

    /// A cheap round-trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes the pool; later calls fail.
    async fn close(&self);
}
