//! The command line: `serve`, and the tools around it (`sign`, `simulate`, `jobs`,
//! `address`, `migrate`, …).
//! Every command goes through the library; none reimplements a request.

mod address;
mod check;
mod flexflow;
mod jobs;
mod reconcile;
mod routes;
mod sign;
mod simulate;
mod store;
mod taskrouter;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use crate::config::{self, ConfigError, LoadOptions, Settings};
use crate::startup::Application;
use crate::twilio::TwilioClient;

/// Twilio Conversations webhooks in, exactly one Flex interaction out.
#[derive(Debug, Parser)]
#[command(name = "flexhook", version, about, long_about = None)]
pub struct Cli {
    /// Extra TOML settings file, applied after config/<FLEXHOOK_ENV>.toml and before
    /// environment variables.
    #[arg(long, global = true, value_name = "FILE", env = "FLEXHOOK_CONFIG")]
    pub config: Option<PathBuf>,

    /// The account a command works on, by its [accounts.NAME]; required when several are
    /// configured (`check` then checks each, `jobs` lists every account's).
    #[arg(long, global = true, value_name = "NAME")]
    pub account: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: POST /webhooks/conversations, POST /webhooks/taskrouter, GET /healthz, GET /readyz.
    Serve,
    /// Print the X-Twilio-Signature Twilio would send for a URL and parameters.
    Sign(sign::SignArgs),
    /// Send a correctly signed onMessageAdded to a running flexhook and print its answer.
    Simulate(simulate::SimulateArgs),
    /// Inspect and replay the interaction jobs in the store.
    Jobs(jobs::JobsArgs),
    /// Connect the Flex workspace's event callback to flexhook, so that orphaned
    /// conversations are closed; disconnect it; or show its status.
    Taskrouter(taskrouter::TaskrouterArgs),
    /// Compare Twilio's state with the store once, now, and make up for webhooks and task
    /// events that never arrived. Exit 0: nothing was wrong; 1: something was found (and
    /// fixed, unless --dry-run); 2: the sweep failed.
    Reconcile(reconcile::ReconcileArgs),
    /// Copy the job store to another one (SQLite to PostgreSQL, say).
    Store(store::StoreArgs),
    /// Check the routing rules, and explain what they decide for a message.
    Routes(routes::RoutesArgs),
    /// Check the whole set-up against Twilio: credentials, workspace, workflow, task
    /// channel, server.public_base_url's /healthz, the connected addresses and the
    /// TaskRouter event callback. Each line says ok, or what to fix and how.
    Check(check::CheckArgs),
    /// Manage the Conversations address configurations, and connect an address's
    /// auto-creation to flexhook.
    Address(address::AddressArgs),
    /// Show the legacy Flex Flows (Flex UI 1.x) that route numbers.
    Flexflow(flexflow::FlexflowArgs),
    /// Move an address from its Flex Flow to flexhook: print the plan, act only with --yes.
    Migrate(flexflow::MigrateArgs),
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let load = LoadOptions {
        file: cli.config.clone(),
        ..LoadOptions::default()
    };
    let account = cli.account.clone();
    let load_settings = |load: &LoadOptions| -> anyhow::Result<Settings> {
        let mut settings = Settings::load(load)?;
        settings.account = account.clone();
        Ok(settings)
    };
    match cli.command {
        Command::Serve | Command::Store(_) if cli.account.is_some() => {
            eprintln!(
                "--account is for the commands that work on one account: `serve` runs every account, and `store` copies them all"
            );
            Ok(ExitCode::from(2))
        }
        Command::Serve => serve(&load).await,
        Command::Sign(args) => sign::run(&load_settings(&load)?, &args),
        Command::Simulate(args) => {
            simulate::run(&with_ngrok_url(load_settings(&load)?).await?, &args).await
        }
        Command::Jobs(args) => jobs::run(&load_settings(&load)?, &args).await,
        Command::Taskrouter(args) => {
            taskrouter::run(&with_ngrok_url(load_settings(&load)?).await?, &args).await
        }
        Command::Reconcile(args) => {
            reconcile::run(&with_ngrok_url(load_settings(&load)?).await?, &args).await
        }
        Command::Store(args) => store::run(&args).await,
        Command::Routes(args) => routes::run(&load_settings(&load)?, &args),
        Command::Check(args) => check::run(&load_settings(&load)?, &args).await,
        Command::Address(args) => {
            address::run(&with_ngrok_url(load_settings(&load)?).await?, &args).await
        }
        Command::Flexflow(args) => flexflow::run(&load_settings(&load)?, &args).await,
        Command::Migrate(args) => {
            flexflow::migrate(&with_ngrok_url(load_settings(&load)?).await?, &args).await
        }
    }
}

/// A command's error as shown to its user: the cause chain, then what to do when Twilio's
/// code says (wrong credentials, rate limited).
pub fn describe(e: &anyhow::Error) -> String {
    let hint = e
        .chain()
        .find_map(|cause| cause.downcast_ref::<crate::twilio::TwilioError>())
        .filter(|t| t.status() != Some(404))
        .and_then(crate::twilio::TwilioError::hint);
    match hint {
        Some(hint) => format!("{e:#}: {hint}"),
        None => format!("{e:#}"),
    }
}

/// `server.public_base_url = "ngrok"` replaced by the tunnel the local agent has to
/// `server.port`, as `serve` finds it.
async fn with_ngrok_url(mut settings: Settings) -> anyhow::Result<Settings> {
    if settings.server.wants_ngrok() {
        let url =
            crate::ngrok::public_url(&settings.server.ngrok_api_url, settings.server.port).await?;
        settings.server.public_base_url = Some(url);
    }
    Ok(settings)
}

async fn serve(load: &LoadOptions) -> anyhow::Result<ExitCode> {
    let settings = match Settings::load(load).and_then(Settings::validate) {
        Ok(s) => s,
        Err(e @ (ConfigError::Invalid(_) | ConfigError::Load(_) | ConfigError::Account(_))) => {
            eprintln!("flexhook cannot start: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    crate::telemetry::init(&settings.log);
    tracing::info!(
        environment = settings.environment.name(),
        version = env!("CARGO_PKG_VERSION"),
        "starting"
    );
    let app = Application::build(settings).await?;
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

/// The chosen account's auth token, or a clear error naming where to set it.
fn auth_token(settings: &Settings) -> anyhow::Result<String> {
    let account = settings.raw_account()?;
    let key = account.keys.twilio("auth_token");
    account
        .twilio
        .auth_token
        .as_ref()
        .map(|s| s.expose_secret().to_owned())
        .ok_or_else(|| anyhow::anyhow!("{key} is not set ({})", config::env_vars_for(&key)))
}

/// The secret of a SharedKey of the chosen account named on the command line.
fn shared_key(settings: &Settings, id: &str) -> anyhow::Result<String> {
    let account = settings.raw_account()?;
    let key = account.keys.twilio("webhook_shared_keys");
    account
        .twilio
        .webhook_shared_keys
        .get(id)
        .map(|s| s.expose_secret().to_owned())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "SharedKey `{id}` is not in {key} ({})",
                config::env_vars_for(&key)
            )
        })
}

/// The chosen account's credentials, or exit code 2 with the problems.
pub(crate) fn client(settings: &Settings) -> Result<TwilioClient, ExitCode> {
    match settings.twilio() {
        // A CLI call waits out a 429 rather than failing the operator's command.
        Ok(twilio) => TwilioClient::new(&twilio)
            .map(TwilioClient::with_cli_retries)
            .map_err(|e| {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }),
        Err(e) => {
            eprintln!("flexhook cannot reach Twilio: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Columns padded to their widest cell; the last one is not padded.
pub(crate) fn print_table<const N: usize>(header: [&str; N], rows: &[[String; N]]) {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
