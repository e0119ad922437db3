//! The `harness` binary: parses the command line into a plan and hands it to one module per
//! subcommand. It only sequences the library crates (benchmarks, backends, trainer,
//! results); it computes no metric and grades nothing itself.

mod cli;
mod cmd;
mod progress;
mod run_dir;
mod summary;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Prompt(args) => cmd::prompt::run(args),
        cli::Command::Grade(args) => cmd::grade::run(args),
        cli::Command::Tasks(args) => cmd::tasks::run(args),
        cli::Command::Bench(args) => cmd::bench::run(*args),
        cli::Command::Train(args) => cmd::train::run(*args),
        cli::Command::Fetch => backends::models::ensure(&backends::models::SMOLLM2_135M)
            .map(|path| println!("{}", path.display()))
            .map_err(Into::into),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
