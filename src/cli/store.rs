//! `flexhook store copy`: moves every job from one store to another, e.g. from the SQLite
//! file of a single machine to the PostgreSQL of several. Safe to run again: a job whose
//! kind and conversation are already in the target is left as it is there.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::domain::{Backend, DatabaseUrl};
use crate::store::{Store, StoreOptions};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy every job from one store to another (states, SIDs, errors and times kept);
    /// safe to re-run. Stop the service writing to --from first.
    Copy {
        /// The store to read, e.g. sqlite:///data/flexhook.db
        #[arg(long, value_name = "URL")]
        from: String,
        /// The store to write, e.g. postgres://user:password@host/db (migrated if new)
        #[arg(long, value_name = "URL")]
        to: String,
    },
}

async fn open(url: &DatabaseUrl, which: &str) -> anyhow::Result<Store> {
    let options = StoreOptions {
        busy_timeout: Duration::from_secs(5),
        clock: crate::clock::Clock::system(),
    };
    Store::open(url, &options)
        .await
        .map_err(|e| anyhow::anyhow!("{which}: {e}"))
}

pub async fn run(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        StoreCommand::Copy { from, to } => {
            let (from, to) = (DatabaseUrl::new(from), DatabaseUrl::new(to));
            if from.redacted() == to.redacted() {
                anyhow::bail!("--from and --to are the same store: {from}");
            }
            // Opening a SQLite URL creates the file: a mistyped --from must not copy nothing.
            if from.backend() == Some(Backend::Sqlite) {
                let path = from
                    .expose()
                    .trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:");
                let path = path.split('?').next().unwrap_or(path);
                if !std::path::Path::new(path).is_file() {
                    anyhow::bail!("--from {from}: no such SQLite file");
                }
            }
            let source = open(&from, "--from").await?;
            let target = open(&to, "--to").await?;
            let jobs = source.all_jobs().await?;
            let copied = target.copy_in(&jobs).await?;
            source.close().await;
            target.close().await;
            println!(
                "copied {copied} of {} jobs from {from} to {to} ({} already there)",
                jobs.len(),
                jobs.len() as u64 - copied
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
