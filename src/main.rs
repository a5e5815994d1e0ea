use std::process::ExitCode;

use clap::Parser;
use mimalloc::MiMalloc;

/// mimalloc rather than glibc's malloc: a webhook allocates a few dozen small strings, and
/// glibc's allocator was a tenth of the hot path's CPU (README, Performance).
#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = flexhook::cli::Cli::parse();
    match flexhook::cli::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", flexhook::cli::describe(&e));
            ExitCode::FAILURE
        }
    }
}
