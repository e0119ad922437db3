//! The `harness` binary: parses the command line into a plan and hands it to one module per
//! subcommand. It only sequences the library crates (benchmarks, backends, trainer,
//! results); it computes no metric and grades nothing itself.

mod cli;
mod cmd;
mod config;
mod engine;
mod evaluate;
mod flags;
mod progress;
mod reports;
mod run_dir;
mod shell;
mod study;
mod summary;
mod training;

use clap::Parser;

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match config::expand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = cli::Cli::parse_from(args);
    let result = match cli.command {
        cli::Command::Prompt(args) => cmd::prompt::run(args),
        cli::Command::Grade(args) => cmd::grade::run(args),
        cli::Command::Tasks(args) => cmd::tasks::run(args),
        cli::Command::Bench(args) => cmd::bench::run(*args),
        cli::Command::Run(args) => cmd::run::run(*args),
        cli::Command::Train(args) => cmd::train::run(*args),
        cli::Command::Report(args) => cmd::report::run(args),
        cli::Command::Compare(args) => cmd::compare::run(args),
        cli::Command::Fetch(args) => fetch(&args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `harness fetch`: prints the cached path of the default model or the sentence encoder.
fn fetch(args: &cli::FetchArgs) -> anyhow::Result<()> {
    use backends::models;
    let path = if args.sentence_encoder {
        let files = models::ensure_all(&models::ALL_MINILM_L6_V2)?;
        files[0]
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default()
    } else {
        models::ensure(&models::SMOLLM2_135M)?
    };
    println!("{}", path.display());
    Ok(())
}
