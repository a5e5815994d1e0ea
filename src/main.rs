use std::process::ExitCode;

use clap::Parser;

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
