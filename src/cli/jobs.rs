//! `flexhook jobs`: what is pending, done or dead, and why, for every kind of job; replay
//! dead jobs.

use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::{Args, Subcommand};
use serde_json::json;

use crate::config::Settings;
use crate::domain::ConversationSid;
use crate::jobs::routing;
use crate::store::{Job, JobKind, JobState, Store, StoreOptions};

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state: pending, created, ignored, set, closed, kept_open, sent,
        /// watching, invited, conversation_closed or dead.
        #[arg(long, value_parser = parse_state)]
        state: Option<JobState>,
        /// Only jobs of this kind: interaction, timers, close, reply, watch or invite.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<JobKind>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one conversation's jobs in full.
    Show {
        /// The conversation (CH…).
        conversation: String,
        /// As JSON: the conversation's job of --kind (default: its interaction job).
        #[arg(long)]
        json: bool,
        /// Only the job of this kind: interaction, timers, close, reply, watch or invite.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<JobKind>,
    },
    /// Move dead jobs back to pending; a running service picks them up within worker.poll_interval_ms.
    Retry {
        /// The conversation (CH…) whose dead job to retry.
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        conversation: Option<String>,
        /// Retry every dead job.
        #[arg(long)]
        all_dead: bool,
    },
}

fn parse_state(s: &str) -> Result<JobState, String> {
    s.parse()
}

fn parse_kind(s: &str) -> Result<JobKind, String> {
    s.parse()
}

fn conversation(raw: &str) -> anyhow::Result<ConversationSid> {
    ConversationSid::parse(raw.trim()).map_err(|e| anyhow::anyhow!("{e}"))
}

/// A job's account by its configured name; its SID when no configured account has it.
struct AccountNames(Vec<(String, Option<String>)>);

impl AccountNames {
    fn of(&self, job: &Job) -> String {
        let sid = job.account_sid.as_str();
        match self.0.as_slice() {
            // Dry-run: the one account without a SID takes every job.
            [(name, None)] => name.clone(),
            accounts => accounts
                .iter()
                .find(|(_, s)| s.as_deref() == Some(sid))
                .map_or_else(|| sid.to_owned(), |(name, _)| name.clone()),
        }
    }

    /// The SID of the account named `name`.
    fn sid(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, sid)| sid.clone())
    }
}

pub async fn run(settings: &Settings, args: &JobsArgs) -> anyhow::Result<ExitCode> {
    let names = AccountNames(settings.account_sids());
    // `--account NAME`: its jobs only (an unknown name is refused, naming those there are).
    let only = match &settings.account {
        Some(_) => names.sid(&settings.account_name()?),
        None => None,
    };
    let config = settings.store()?;
    let store = Store::open(
        &config.url,
        &StoreOptions {
            busy_timeout: config.busy_timeout.max(Duration::from_secs(5)),
            clock: crate::clock::Clock::system(),
        },
    )
    .await?;
    let code = match &args.command {
        JobsCommand::List {
            state,
            kind,
            limit,
            json,
        } => {
            let jobs = store.list(*state, *kind, only.as_deref(), *limit).await?;
            if *json {
                for job in &jobs {
                    println!("{}", to_json(job, &names));
                }
            } else if jobs.is_empty() {
                println!("no jobs");
            } else {
                println!(
                    "{:<34}  {:<10}  {:<11}  {:<7}  {:>8}  {:<24}  LAST ERROR",
                    "CONVERSATION",
                    "ACCOUNT",
                    "KIND",
                    "STATE",
                    "ATTEMPTS",
                    "NEXT ATTEMPT / UPDATED"
                );
                for job in &jobs {
                    let when = if job.state == JobState::Pending {
                        time(job.next_attempt_at)
                    } else {
                        time(job.updated_at)
                    };
                    println!(
                        "{:<34}  {:<10}  {:<11}  {:<7}  {:>8}  {:<24}  {}",
                        job.conversation_sid,
                        names.of(job),
                        job.kind,
                        job.state,
                        job.attempts,
                        when,
                        error_summary(job)
                    );
                }
            }
            ExitCode::SUCCESS
        }
        JobsCommand::Show {
            conversation: c,
            json,
            kind,
        } => {
            let sid = conversation(c)?;
            let mut jobs = store.for_conversation(&sid).await?;
            if let Some(account) = &only {
                jobs.retain(|j| j.account_sid.as_str() == account);
            }
            if *json || kind.is_some() {
                let wanted = kind.unwrap_or(JobKind::Interaction);
                jobs.retain(|j| j.kind == wanted);
            }
            match jobs.as_slice() {
                [] => {
                    eprintln!("no job for conversation {sid}");
                    ExitCode::from(1)
                }
                [job, ..] if *json => {
                    println!("{}", serde_json::to_string_pretty(&to_json(job, &names))?);
                    ExitCode::SUCCESS
                }
                jobs => {
                    for (i, job) in jobs.iter().enumerate() {
                        if i > 0 {
                            println!();
                        }
                        print_job(job, &names);
                    }
                    ExitCode::SUCCESS
                }
            }
        }
        JobsCommand::Retry {
            conversation: c,
            all_dead,
        } => {
            let n = if *all_dead {
                match &only {
                    None => store.retry_dead(None).await?,
                    // `--account NAME`: that account's dead jobs, conversation by conversation.
                    Some(account) => {
                        let dead = store
                            .list(Some(JobState::Dead), None, Some(account), usize::MAX)
                            .await?;
                        let mut conversations: Vec<&ConversationSid> =
                            dead.iter().map(|j| &j.conversation_sid).collect();
                        conversations.sort_by_key(|c| c.as_str());
                        conversations.dedup();
                        let mut n = 0;
                        for sid in conversations {
                            n += store.retry_dead(Some(sid)).await?;
                        }
                        n
                    }
                }
            } else {
                let sid = conversation(c.as_deref().unwrap_or_default())?;
                if let (Some(account), Some(job)) = (&only, store.get(&sid).await?) {
                    if job.account_sid.as_str() != account {
                        eprintln!(
                            "conversation {sid} is account {}'s, not --account {}'s: nothing retried",
                            names.of(&job),
                            settings.account.as_deref().unwrap_or_default()
                        );
                        store.close().await;
                        return Ok(ExitCode::from(1));
                    }
                }
                let n = store.retry_dead(Some(&sid)).await?;
                if n == 0 {
                    match store.get(&sid).await? {
                        None => eprintln!("no job for conversation {sid}"),
                        Some(job) => {
                            eprintln!("job {sid} is {}, not dead: nothing to retry", job.state)
                        }
                    }
                    store.close().await;
                    return Ok(ExitCode::from(1));
                }
                n
            };
            println!("{n} job(s) moved back to pending");
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(code)
}

fn time(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

fn error_summary(job: &Job) -> String {
    match &job.last_error {
        None => "-".into(),
        Some(e) => match e.code {
            Some(code) => format!("{code}: {}", e.message),
            None => e.message.clone(),
        },
    }
}

fn to_json(job: &Job, names: &AccountNames) -> serde_json::Value {
    let mut v = serde_json::to_value(job).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("account".into(), json!(names.of(job)));
    }
    if let (Some(obj), Some(routing)) = (v.as_object_mut(), routing(job)) {
        obj.insert(
            "customer".into(),
            json!(routing.customer_address.as_ref().map(|a| a.masked())),
        );
        obj.insert("channel_type".into(), json!(routing.channel_type));
    }
    v
}

fn print_job(job: &Job, names: &AccountNames) {
    let opt = |s: Option<&str>| s.unwrap_or("-").to_owned();
    println!("conversation     {}", job.conversation_sid);
    println!("kind             {}", job.kind);
    println!("state            {}", job.state);
    println!("account          {} ({})", names.of(job), job.account_sid);
    println!(
        "chat service     {}",
        opt(job.chat_service_sid.as_ref().map(|s| s.as_str()))
    );
    if let Some(routing) = routing(job) {
        println!(
            "customer         {} ({})",
            routing
                .customer_address
                .as_ref()
                .map_or("-".into(), |a| a.masked()),
            routing.channel_type
        );
    }
    println!("attempts         {}", job.attempts);
    if job.state == JobState::Pending {
        println!("next attempt     {}", time(job.next_attempt_at));
        println!("lookup first     {}", job.create_may_have_gone_out);
    }
    match job.kind {
        JobKind::Interaction => println!("create accepted  {}", job.create_accepted),
        JobKind::Reply | JobKind::Close => println!("message sent     {}", job.message_sent),
        JobKind::Watch | JobKind::Invite => {}
        JobKind::Timers => {}
    }
    println!(
        "interaction      {}",
        opt(job.interaction_sid.as_ref().map(|s| s.as_str()))
    );
    println!(
        "channel          {}",
        opt(job.interaction_channel_sid.as_ref().map(|s| s.as_str()))
    );
    println!(
        "task             {}",
        opt(job.task_sid.as_ref().map(|s| s.as_str()))
    );
    println!(
        "webhook          {} (removed: {})",
        opt(job.webhook_sid.as_ref().map(|s| s.as_str())),
        job.webhook_removed
    );
    println!("last error       {}", error_summary(job));
    println!("first message at {}", time(job.created_at));
    println!("updated at       {}", time(job.updated_at));
}
