//! `harness run --dry-run`: what a run needs, checked without running it (no model loaded,
//! nothing sampled or trained, no run directory written), and what it will ask for: the
//! settings, the data, M0, the server, the trainer command, and the samples and tokens of
//! each round. A study set up on one machine for another (a GPU server, a cluster trainer)
//! fails here, in seconds, rather than hours into its first round.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use backends::OpenAi;

use super::flags::{RunArgs, TrainerKind};
use super::round::check_m1;
use super::serve::{Engine, served_m0};
use super::setup::{Problems, loop_settings};
use crate::engine::{backend_name, openai_config};
use crate::flags::BackendKind;

/// How long the server check waits for a server that is up to list M0.
const SERVER_WAIT: Duration = Duration::from_secs(10);

/// One line of the check list.
struct Check {
    what: &'static str,
    outcome: Result<String, String>,
}

/// Runs every check, prints them and the plan; fails when a check failed.
pub fn dry_run(args: &RunArgs, m0: Option<PathBuf>) -> Result<()> {
    // The engine's own checks of the serving flags (it contacts no server when made).
    let serving = Engine::new(args, m0.clone().unwrap_or_default(), Path::new("dry-run"))
        .map(|_| ())
        .map_err(|e| format!("{e:#}"));
    let mut checks = vec![Check {
        what: "settings",
        outcome: serving.map(|()| describe_settings(args)),
    }];
    let problems = Problems::load(args);
    checks.push(Check {
        what: "data",
        outcome: match &problems {
            Ok(p) => Ok(describe_data(p)),
            Err(e) => Err(format!("{e:#}")),
        },
    });
    checks.push(Check {
        what: "M0",
        outcome: check_m0(args, m0.as_deref()),
    });
    if let Some(m1) = &args.m1 {
        checks.push(Check {
            what: "M1",
            outcome: check_m1(args, m1)
                .map(|()| m1.display().to_string())
                .map_err(|e| format!("{e:#}")),
        });
    }
    checks.push(Check {
        what: "server",
        outcome: check_server(args, m0.as_deref()),
    });
    checks.push(Check {
        what: "trainer",
        outcome: check_trainer(args),
    });
    let mut failed = 0;
    for check in &checks {
        match &check.outcome {
            Ok(detail) => println!("ok    {:<9} {detail}", check.what),
            Err(reason) => {
                failed += 1;
                println!("FAIL  {:<9} {reason}", check.what);
            }
        }
    }
    if let Ok(problems) = &problems {
        print_plan(args, problems, m0.as_deref());
    }
    match failed {
        0 => {
            println!("dry run: every check passed; nothing was run");
            Ok(())
        }
        n => anyhow::bail!("dry run: {n} of {} checks failed", checks.len()),
    }
}

fn describe_settings(args: &RunArgs) -> String {
    let methods: Vec<&str> = args.method.iter().map(|m| m.name()).collect();
    format!(
        "{} rounds of {} on {}, backend {}, trainer {}",
        args.rounds,
        methods.join(", "),
        args.task,
        backend_name(args.backend),
        match args.training.trainer {
            TrainerKind::Candle => "built-in",
            TrainerKind::External => "external",
        }
    )
}

fn describe_data(p: &Problems) -> String {
    let mut parts = vec![format!(
        "{} training questions ({}:{})",
        p.train.len(),
        p.task.name,
        p.train_split
    )];
    if let Some(gold) = &p.gold {
        parts.push(format!("{} gold pairs for M1", gold.len()));
    }
    for (set, _, _, problems) in &p.eval_sets {
        parts.push(format!("{} {}:{}", problems.len(), set.task, set.split));
    }
    parts.join(", ")
}

fn check_m0(args: &RunArgs, m0: Option<&Path>) -> Result<String, String> {
    match m0 {
        Some(path) if path.exists() => Ok(path.display().to_string()),
        Some(path) => Err(format!(
            "--model {}: not found on this machine (the trainer reads M0 here, even when a \
             server samples it)",
            path.display()
        )),
        None if args.backend == BackendKind::Llamacpp => {
            let cached = backends::models::cached_path(&backends::models::SMOLLM2_135M);
            Ok(match cached.exists() {
                true => cached.display().to_string(),
                false => format!("{} (fetched on first use)", cached.display()),
            })
        }
        None => Err("--backend openai needs --model: M0's local path".into()),
    }
}

/// A server must be up now when the loop switches rounds by hot-loading (it samples M0's
/// rounds from the start); a serve hook starts its own server, so only the hook is checked.
fn check_server(args: &RunArgs, m0: Option<&Path>) -> Result<String, String> {
    if args.backend == BackendKind::Llamacpp {
        return Ok("embedded llama.cpp (no server)".into());
    }
    if let Some(hook) = &args.serving.serve_hook {
        return check_command("--serve-hook", hook)
            .map(|found| format!("started by --serve-hook each round ({found}); not contacted"));
    }
    let Some(m0) = m0 else {
        return Err("no M0 to ask the server for".into());
    };
    let served = served_m0(args, m0);
    let config = openai_config(&args.openai, &served).map_err(|e| format!("{e:#}"))?;
    let mut server = OpenAi::unchecked(config).map_err(|e| e.to_string())?;
    server
        .serve(&served, SERVER_WAIT)
        .map_err(|e| e.to_string())?;
    Ok(format!(
        "{} serves `{served}`",
        args.openai.base_url.join(", ")
    ))
}

fn check_trainer(args: &RunArgs) -> Result<String, String> {
    match (&args.training.trainer, &args.training.train_cmd) {
        (TrainerKind::Candle, _) => Ok("built-in candle trainer".into()),
        (TrainerKind::External, Some(cmd)) => check_command("--train-cmd", cmd),
        (TrainerKind::External, None) => Err("--trainer external needs --train-cmd".into()),
    }
}

/// A user's shell command, short of running it: `sh -n` accepts its syntax, its program is
/// found, and the scripts it names (words ending in .py or .sh) exist.
fn check_command(what: &str, cmd: &str) -> Result<String, String> {
    let syntax = Command::new("sh")
        .args(["-n", "-c", cmd])
        .output()
        .map_err(|e| format!("running sh: {e}"))?;
    if !syntax.status.success() {
        return Err(format!(
            "{what} `{cmd}`: {}",
            String::from_utf8_lossy(&syntax.stderr).trim()
        ));
    }
    let words = shlex::split(cmd).ok_or_else(|| format!("{what} `{cmd}`: unbalanced quotes"))?;
    let mut words = words.iter().skip_while(|w| is_assignment(w));
    let program = words
        .next()
        .ok_or_else(|| format!("{what} `{cmd}`: no command"))?;
    let found = find_program(program)
        .ok_or_else(|| format!("{what}: program `{program}` not found (nor on PATH)"))?;
    for script in
        words.filter(|w| !w.starts_with('-') && (w.ends_with(".py") || w.ends_with(".sh")))
    {
        if !Path::new(script).is_file() {
            return Err(format!("{what}: `{script}` not found (from {})", cwd()));
        }
    }
    Ok(format!("`{cmd}`: {} found", found.display()))
}

fn is_assignment(word: &str) -> bool {
    word.split_once('=').is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

fn find_program(program: &str) -> Option<PathBuf> {
    if let (Some(rest), Some(home)) = (program.strip_prefix("~/"), std::env::var_os("HOME")) {
        return Some(PathBuf::from(home).join(rest)).filter(|p| p.is_file());
    }
    if program.contains('/') {
        return Some(PathBuf::from(program)).filter(|p| p.is_file());
    }
    if matches!(program, "cd" | "exec" | "env" | "." | "source") {
        return Some(PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

fn cwd() -> String {
    std::env::current_dir().map_or_else(|_| "?".into(), |d| d.display().to_string())
}

/// The models the run samples and trains, and each one's samples and most new tokens.
fn print_plan(args: &RunArgs, p: &Problems, m0: Option<&Path>) {
    let model_id = m0.map_or_else(String::new, |m| m.display().to_string());
    let settings = loop_settings(
        args,
        p.task,
        p.train_split,
        Problems::split_sets(&p.eval_sets),
        (model_id, m0.unwrap_or(Path::new(""))),
    );
    // The most new tokens of one greedy-or-sampled pass over every evaluation set.
    let eval_pass_tokens: u64 = p
        .eval_sets
        .iter()
        .map(|(set, _, _, problems)| problems.len() as u64 * u64::from(set.max_tokens))
        .sum();
    let eval_count: u64 = p
        .eval_sets
        .iter()
        .map(|(_, _, _, ps)| ps.len() as u64)
        .sum();
    let per_eval = eval_count * (1 + u64::from(args.n_eval));
    let per_train = p.train.len() as u64 * u64::from(args.n_train);
    let train_tokens = per_train * u64::from(settings.max_tokens);
    let eval_tokens = eval_pass_tokens * (1 + u64::from(args.n_eval));
    println!(
        "plan: each model evaluated with {per_eval} samples ({eval_count} problems x (greedy + \
         {})), at most {eval_tokens} new tokens; each model before round {} samples the \
         training questions {per_train} times (x {}), at most {train_tokens} new tokens",
        args.n_eval, args.rounds, args.n_train
    );
    let mut total = (0u64, 0u64);
    println!("round  models sampled  trained  samples   max new tokens");
    for round in u32::from(!args.eval_base)..=args.rounds {
        let models = match round {
            0 | 1 => 1,
            t => args
                .method
                .iter()
                .filter(|&&m| settings.shared_round(m, t).is_none())
                .count() as u64,
        };
        let trained = match round {
            0 => 0,
            1 => u64::from(args.m1.is_none()),
            _ => models,
        };
        let sampled_train = u64::from(round >= 1 && round < args.rounds);
        let samples = models * (per_eval + sampled_train * per_train);
        let tokens = models * (eval_tokens + sampled_train * train_tokens);
        total = (total.0 + samples, total.1 + tokens);
        println!("{round:>5}  {models:>14}  {trained:>7}  {samples:>7}   {tokens:>14}");
    }
    println!(
        "total: {} samples, at most {} new tokens (a response stops at its end of turn, \
         so the real count is the mean response length times the samples)",
        total.0, total.1
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_assignments_before_the_program_are_skipped() {
        assert!(is_assignment("LLAMA_CPP_CONVERT=/x/convert.py"));
        assert!(!is_assignment("--lr=1e-4"));
        assert!(!is_assignment("=x"));
        let ok = check_command("--train-cmd", "A=1 B=2 sh -c true").unwrap();
        assert!(ok.contains("sh found"), "{ok}");
    }

    #[test]
    fn a_command_is_refused_for_its_syntax_its_program_or_a_missing_script() {
        let syntax = check_command("--train-cmd", "python3 x.py (").unwrap_err();
        assert!(
            syntax.starts_with("--train-cmd `python3 x.py (`:"),
            "{syntax}"
        );
        let program = check_command("--serve-hook", "no-such-program-xyz --port 1").unwrap_err();
        assert!(
            program.contains("program `no-such-program-xyz` not found"),
            "{program}"
        );
        let script = check_command("--train-cmd", "sh /nonexistent/train.sh --fast").unwrap_err();
        assert!(
            script.contains("`/nonexistent/train.sh` not found"),
            "{script}"
        );
    }
}
