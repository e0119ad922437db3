//! `harness bench`: one evaluation round. Greedy pass@1 on the evaluation split plus N
//! samples per problem (pass@k), graded, in a run directory that a second invocation
//! continues.

use std::path::PathBuf;

use anyhow::{Result, bail};
use benchmarks::{Sandbox, prompt};
use serde_json::json;

use crate::cli::BenchArgs;
use crate::engine::{backend_name, flash_attention, make_backend};
use crate::evaluate::{self, Plan, Settings, evenly_spaced};
use crate::reports::{ReportOptions, ReportSettings, report_run};
use crate::run_dir::RunDir;
use crate::summary::{TaskSummary, print_table, write_csv};

pub fn run(args: BenchArgs) -> Result<()> {
    let mut backend = make_backend(
        args.backend,
        args.model.as_deref(),
        &args.llamacpp,
        &args.openai,
    )?;
    backend.set_adapter(args.lora.as_deref())?;
    let out = args.out.clone().unwrap_or_else(default_out);
    let plans = plan(&args, &out)?;
    let run = RunDir::open(&out, &manifest(&args, &plans, backend.as_ref()))?;
    eprintln!("run directory: {}", run.root().display());
    let sandbox = match evaluate::needs_sandbox(&plans) {
        true => Some(Sandbox::new(args.sandbox.config())?),
        false => None,
    };
    let outcome = evaluate::sample_and_grade(
        backend.as_mut(),
        &plans,
        &settings(&args),
        sandbox.as_ref(),
        "bench",
    )?;
    let summaries: Vec<TaskSummary> = plans
        .iter()
        .zip(&outcome.samples)
        .map(|(plan, samples)| TaskSummary::new(plan.task, &plan.split, samples, args.n))
        .collect();
    let context = json!({
        "backend": backend_name(args.backend),
        "model": backend.model_id(),
        "n": args.n,
        "temperature": args.temperature,
        "seed": args.seed,
        "wall_s": outcome.sampling_seconds,
        "new_tokens": outcome.new_tokens,
    });
    write_csv(&run.root().join("summary.csv"), &summaries, &context)?;
    print_table(&summaries, &context);
    let report_settings = ReportSettings {
        bootstrap: args.bootstrap,
        bootstrap_seed: args.seed,
    };
    report_settings.record(run.root())?;
    let options = ReportOptions {
        regrade: false,
        semantic: !args.no_semantic,
        bootstrap: report_settings.bootstrap(),
        sandbox: &args.sandbox,
        data: &args.data,
    };
    report_run(run.root(), &options)?;
    eprintln!(
        "reports: {}/{{metrics,rounds,improvement_set,coverage}}.csv and plots",
        run.root().display()
    );
    Ok(())
}

/// Greedy and sampling settings of the command line.
fn settings(args: &BenchArgs) -> Settings {
    let sampled = backends::Sampling {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        // Each plan sets its own (the task's default unless --max-tokens is given).
        max_tokens: args.max_tokens.unwrap_or(0),
        stop: Vec::new(),
        ignore_eos: args.ignore_eos,
    };
    Settings::new(args.style.into(), sampled, backend_name(args.backend))
}

/// One plan per task. A task's evaluation split goes to `samples/<task>.jsonl`, another
/// split to `samples/<task>.<split>.jsonl`, so two splits never share a file.
fn plan(args: &BenchArgs, out: &std::path::Path) -> Result<Vec<Plan>> {
    let source = args.data.source();
    let mut plans = Vec::new();
    for name in &args.task {
        let task = benchmarks::task(name)?;
        let split = match &args.split {
            Some(split) => task.split(split)?.name.to_string(),
            None => task.eval_split.to_string(),
        };
        let template = prompt::template(args.template.as_deref().unwrap_or(task.template))?;
        let all = task.load(&split, &source, args.data.seed)?;
        let file = match split == task.eval_split {
            true => format!("{}.jsonl", task.name),
            false => format!("{}.{split}.jsonl", task.name),
        };
        plans.push(Plan {
            task,
            split,
            template,
            problems: evenly_spaced(all, args.limit),
            file: out.join("samples").join(file),
            round: args.round,
            greedy: true,
            n: args.n,
            seed: args.seed,
            max_tokens: args.max_tokens.unwrap_or(task.max_tokens),
        });
    }
    if plans.is_empty() {
        bail!("no --task given");
    }
    Ok(plans)
}

fn manifest(
    args: &BenchArgs,
    plans: &[Plan],
    backend: &dyn backends::Backend,
) -> serde_json::Value {
    let tasks: Vec<_> = plans
        .iter()
        .map(|p| {
            json!({
                "task": p.task.name, "version": p.task.version, "split": p.split,
                "template": p.template.name, "template_version": p.template.version,
                "problems": p.problems.len(), "max_tokens": p.max_tokens,
            })
        })
        .collect();
    json!({
        "harness_version": env!("CARGO_PKG_VERSION"),
        "command": "bench",
        "settings": {
            "backend": backend.name(),
            "model": backend.model_id(),
            "tasks": tasks,
            "style": format!("{:?}", args.style).to_lowercase(),
            "limit": args.limit,
            "n": args.n,
            "temperature": args.temperature,
            "top_p": args.top_p,
            "top_k": args.top_k,
            "min_p": args.min_p,
            "ignore_eos": args.ignore_eos,
            "seed": args.seed,
            "round": args.round,
            "arith_seed": args.data.seed,
            // Changes greedy output, so a resumed run must use the same.
            "flash_attention": flash_attention(args.backend, &args.llamacpp),
        },
    })
}

fn default_out() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("bench-{now}"))
}
