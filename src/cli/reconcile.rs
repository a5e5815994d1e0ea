//! `flexhook reconcile`: one sweep now, as the service runs them every `reconcile.interval`.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::sync::Notify;

use crate::config::Settings;
use crate::reconcile::{ReconcileError, Reconciler, Target};
use crate::store::{Store, StoreOptions};
use crate::twilio::TwilioClient;

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Look back this far (e.g. `2h`, `3d`) for conversations and task events, instead of
    /// to a little before the last sweep.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    since: Option<Duration>,
    /// Print what would be done, and do nothing (also `reconcile.dry_run`).
    #[arg(long)]
    dry_run: bool,
    /// The sweep as one JSON object: its findings and summary.
    #[arg(long)]
    json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration like `2h` or `3d` ({e})"))
}

/// Exit 0: nothing was wrong; 1: something was found (and, unless a dry run, fixed);
/// 2: the sweep failed.
pub async fn run(settings: &Settings, args: &ReconcileArgs) -> anyhow::Result<ExitCode> {
    let raw = settings;
    let settings = match settings.clone().validate() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("flexhook reconcile: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let account = match crate::config::Settings::account_name(raw)
        .map(|name| settings.accounts.by_name(&name).cloned())
    {
        Ok(Some(account)) => account,
        Ok(None) => unreachable!("a chosen account is a configured one"),
        Err(e) => {
            eprintln!("flexhook reconcile: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let Some(target) = Target::of(&account, settings.server.public_base_url.as_deref()) else {
        eprintln!(
            "flexhook reconcile: twilio.account_sid is not set ({}): there is no account to compare",
            crate::config::env_vars_for("twilio.account_sid")
        );
        return Ok(ExitCode::from(2));
    };
    if target.webhook_url.is_none() {
        eprintln!(
            "note: server.public_base_url is not set, so conversations whose first message never arrived cannot be told from other systems' and are not looked for"
        );
    }
    let store = Store::open(
        &settings.store.url,
        &StoreOptions {
            busy_timeout: settings.store.busy_timeout,
            clock: crate::clock::Clock::system(),
        },
    )
    .await?;
    let client = TwilioClient::new(&account.twilio)?.with_cli_retries();
    // The running service's worker picks the queued jobs up (worker.poll_interval_ms).
    let reconciler = Reconciler::new(
        store.clone(),
        client,
        Arc::new(Notify::new()),
        &settings.lifecycle,
        target,
        settings.reconcile.clone(),
    );
    let dry_run = args.dry_run || settings.reconcile.dry_run;
    let swept = reconciler.sweep(args.since, dry_run).await;
    store.close().await;
    let sweep = match swept {
        Ok(sweep) => sweep,
        Err(e @ ReconcileError::Busy) => {
            eprintln!("flexhook reconcile: {e}; try again in a moment");
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("flexhook reconcile: the sweep failed: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if args.json {
        let mut value = serde_json::to_value(&sweep)?;
        value["summary"] = serde_json::Value::String(sweep.summary());
        println!("{value}");
    } else {
        for finding in &sweep.findings {
            println!("{finding}");
        }
        println!("{}", sweep.summary());
    }
    Ok(if sweep.findings.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
