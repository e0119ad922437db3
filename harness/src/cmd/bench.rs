//! `harness bench`: one evaluation round. Greedy pass@1 on the evaluation split plus N
//! samples per problem (pass@k), graded, in a run directory that a second invocation
//! continues.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use backends::{Backend, Completion, LlamaCpp, LlamaCppConfig, OpenAi, OpenAiConfig, Request};
use benchmarks::{Grader, GraderKind, Problem, PromptStyle, Sample, Sandbox, Task, prompt};
use serde_json::json;

use crate::cli::{BackendKind, BenchArgs, Style};
use crate::cmd::grade::sandbox_config;
use crate::progress;
use crate::reports::{ReportOptions, report_run};
use crate::run_dir::{RunDir, done_keys};
use crate::summary::{TaskSummary, print_table, write_csv};

/// One task of the plan with the problems to evaluate.
struct TaskPlan {
    task: &'static Task,
    split: String,
    template: &'static benchmarks::Template,
    problems: Vec<Problem>,
}

/// What a request of the batch stands for.
struct Origin {
    task: usize,
    problem: usize,
    greedy: bool,
}

pub fn run(args: BenchArgs) -> Result<()> {
    let plans = plan(&args)?;
    let mut backend = make_backend(&args)?;
    let out = args.out.clone().unwrap_or_else(default_out);
    let manifest = manifest(&args, &plans, backend.as_ref());
    let run = RunDir::open(&out, &manifest)?;
    eprintln!("run directory: {}", run.root().display());

    let style = match args.style {
        Style::Chat => PromptStyle::Chat,
        Style::Text => PromptStyle::Text,
    };
    let greedy = backends::Sampling {
        temperature: 0.0,
        top_p: 1.0,
        top_k: 0,
        min_p: 0.0,
        max_tokens: args.max_tokens,
        stop: Vec::new(),
        ignore_eos: args.ignore_eos,
    };
    let sampled = backends::Sampling {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        min_p: args.min_p,
        ..greedy.clone()
    };

    let mut requests = Vec::new();
    let mut origins = Vec::new();
    let mut prompts = Vec::new();
    for (t, plan) in plans.iter().enumerate() {
        let done = done_keys(&run.existing_samples(plan.task.name)?);
        for (p, problem) in plan.problems.iter().enumerate() {
            let prompt = plan.template.render(problem, style);
            let stop: Vec<String> = plan.task.stop.iter().map(|s| s.to_string()).collect();
            if !done.contains(&(problem.id.clone(), None)) {
                requests.push(Request {
                    prompt: to_backend_prompt(&prompt),
                    sampling: backends::Sampling {
                        stop: stop.clone(),
                        ..greedy.clone()
                    },
                    seed: args.seed,
                    indices: vec![0],
                });
                origins.push(Origin {
                    task: t,
                    problem: p,
                    greedy: true,
                });
                prompts.push(prompt.clone());
            }
            let missing: Vec<u32> = (0..args.n)
                .filter(|j| !done.contains(&(problem.id.clone(), Some(*j))))
                .collect();
            if !missing.is_empty() {
                requests.push(Request {
                    prompt: to_backend_prompt(&prompt),
                    sampling: backends::Sampling {
                        stop,
                        ..sampled.clone()
                    },
                    seed: args.seed,
                    indices: missing,
                });
                origins.push(Origin {
                    task: t,
                    problem: p,
                    greedy: false,
                });
                prompts.push(prompt);
            }
        }
    }

    let total: usize = requests.iter().map(|r| r.indices.len()).sum();
    let model_id = backend.model_id();
    let mut appenders = plans
        .iter()
        .map(|p| run.appender(p.task.name))
        .collect::<Result<Vec<_>>>()?;
    let bar = progress::bar(total, "sampling");
    let started = Instant::now();
    let mut new_tokens = 0u64;
    backend.generate(&requests, &mut |c: Completion| {
        let origin = &origins[c.request];
        let plan = &plans[origin.task];
        let request = &requests[c.request];
        new_tokens += u64::from(c.completion_tokens.unwrap_or(0));
        let sample = Sample {
            task: plan.task.name.to_string(),
            task_version: Some(plan.task.version),
            split: plan.split.clone(),
            problem_id: plan.problems[origin.problem].id.clone(),
            round: args.round,
            model: model_id.clone(),
            backend: backend_name(args.backend).to_string(),
            sample_index: (!origin.greedy).then_some(c.index),
            seed: Some(c.seed),
            sampling: benchmarks::Sampling {
                temperature: f64::from(request.sampling.temperature),
                top_p: Some(f64::from(request.sampling.top_p)),
                top_k: Some(request.sampling.top_k),
                min_p: Some(f64::from(request.sampling.min_p)),
                max_tokens: Some(request.sampling.max_tokens),
                stop: request.sampling.stop.clone(),
            },
            prompt: Some(prompts[c.request].clone()),
            response: c.text,
            finish_reason: Some(c.finish_reason.as_str().to_string()),
            prompt_tokens: Some(c.prompt_tokens),
            completion_tokens: c.completion_tokens,
            ..Sample::default()
        };
        appenders[origin.task]
            .append(&sample)
            .map_err(|e| backends::BackendError::Callback(format!("{e:#}")))?;
        bar.inc(1);
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!("sampling {:.0} tok/s", new_tokens as f64 / seconds));
        Ok(())
    })?;
    bar.finish_and_clear();
    let wall = started.elapsed();
    drop(appenders);

    let sandbox = match plans.iter().any(|p| p.task.grader == GraderKind::Code) {
        true => Some(Sandbox::new(sandbox_config(&args.sandbox))?),
        false => None,
    };
    let mut summaries = Vec::new();
    for plan in &plans {
        let samples = grade_task(&run, plan, sandbox.as_ref())?;
        summaries.push(TaskSummary::new(plan.task, &plan.split, &samples, args.n));
    }
    let context = json!({
        "backend": backend_name(args.backend),
        "model": model_id,
        "n": args.n,
        "temperature": args.temperature,
        "seed": args.seed,
        "wall_s": wall.as_secs_f64(),
        "new_tokens": new_tokens,
    });
    write_csv(&run.root().join("summary.csv"), &summaries, &context)?;
    print_table(&summaries, &context);
    let options = ReportOptions {
        regrade: false,
        semantic: !args.no_semantic,
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

/// Grades a task's samples and rewrites its sample file in canonical order (problem order,
/// greedy first, then by sample index), so an interrupted and continued run ends with the
/// same file as an uninterrupted one.
fn grade_task(run: &RunDir, plan: &TaskPlan, sandbox: Option<&Sandbox>) -> Result<Vec<Sample>> {
    let order: HashMap<&str, usize> = plan
        .problems
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut samples: Vec<Sample> = run
        .existing_samples(plan.task.name)?
        .into_iter()
        .filter(|s| order.contains_key(s.problem_id.as_str()))
        .collect();
    samples.sort_by_key(|s| {
        (
            order[s.problem_id.as_str()],
            s.sample_index.map_or(0, |i| i + 1),
        )
    });
    samples.dedup_by_key(|s| (s.problem_id.clone(), s.sample_index));
    let items: Vec<(&Problem, &str)> = samples
        .iter()
        .map(|s| {
            (
                &plan.problems[order[s.problem_id.as_str()]],
                s.response.as_str(),
            )
        })
        .collect();
    let grader = Grader::new(plan.task.grader, sandbox)?;
    let bar = progress::bar(items.len(), &format!("grading {}", plan.task.name));
    let verdicts = grader.grade_all(&items, &|| bar.inc(1));
    bar.finish_and_clear();
    for (sample, verdict) in samples.iter_mut().zip(verdicts) {
        sample.set_verdict(verdict);
    }
    benchmarks::write_samples(&run.samples_path(plan.task.name), &samples)?;
    Ok(samples)
}

fn plan(args: &BenchArgs) -> Result<Vec<TaskPlan>> {
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
        plans.push(TaskPlan {
            task,
            split,
            template,
            problems: evenly_spaced(all, args.limit),
        });
    }
    if plans.is_empty() {
        bail!("no --task given");
    }
    Ok(plans)
}

/// `limit` problems spread evenly through the split (all when `limit` is 0 or larger), so
/// a small subset still covers every level of a split ordered by level.
fn evenly_spaced(problems: Vec<Problem>, limit: usize) -> Vec<Problem> {
    if limit == 0 || limit >= problems.len() {
        return problems;
    }
    let len = problems.len();
    let keep: Vec<usize> = (0..limit).map(|i| i * len / limit).collect();
    problems
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep.binary_search(i).is_ok())
        .map(|(_, p)| p)
        .collect()
}

fn make_backend(args: &BenchArgs) -> Result<Box<dyn Backend>> {
    match args.backend {
        BackendKind::Llamacpp => {
            let model = match &args.model {
                Some(path) => PathBuf::from(path),
                None => backends::models::ensure(&backends::models::SMOLLM2_135M)?,
            };
            let l = &args.llamacpp;
            let config = LlamaCppConfig {
                threads: l.threads,
                parallel: l.parallel,
                context_per_sequence: l.ctx,
                batch_size: l.batch_size,
                ubatch_size: l.ubatch_size,
                gpu_layers: l.gpu_layers,
                flash_attention: l.flash_attn.into(),
                ..LlamaCppConfig::new(model)
            };
            Ok(Box::new(LlamaCpp::new(config)?))
        }
        BackendKind::Openai => {
            let o = &args.openai;
            if o.base_url.is_empty() {
                bail!("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)");
            }
            let model = args
                .model
                .clone()
                .context("--backend openai needs --model (the served model id)")?;
            let mut config = OpenAiConfig::new(o.base_url.clone(), model);
            if o.api_key.is_some() {
                config.api_key = o.api_key.clone();
            }
            config.concurrency = o.concurrency;
            config.timeout = std::time::Duration::from_secs_f64(o.request_timeout);
            config.max_retries = o.retries;
            config.native_n = o.native_n;
            Ok(Box::new(OpenAi::new(config)?))
        }
    }
}

fn backend_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Llamacpp => "llamacpp",
        BackendKind::Openai => "openai",
    }
}

fn manifest(args: &BenchArgs, plans: &[TaskPlan], backend: &dyn Backend) -> serde_json::Value {
    let tasks: Vec<_> = plans
        .iter()
        .map(|p| {
            json!({
                "task": p.task.name, "version": p.task.version, "split": p.split,
                "template": p.template.name, "template_version": p.template.version,
                "problems": p.problems.len(),
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
            "max_tokens": args.max_tokens,
            "ignore_eos": args.ignore_eos,
            "seed": args.seed,
            "round": args.round,
            "arith_seed": args.data.seed,
            // Changes greedy output, so a resumed run must use the same.
            "flash_attention": flash_attention(args),
        },
    })
}

/// The embedded engine's attention setting (`None` for a server, whose setting is its own).
fn flash_attention(args: &BenchArgs) -> Option<&'static str> {
    match args.backend {
        BackendKind::Llamacpp => {
            Some(backends::FlashAttention::from(args.llamacpp.flash_attn).as_str())
        }
        BackendKind::Openai => None,
    }
}

fn to_backend_prompt(prompt: &benchmarks::Prompt) -> backends::Prompt {
    match prompt {
        benchmarks::Prompt::Text(text) => backends::Prompt::Text(text.clone()),
        benchmarks::Prompt::Chat(messages) => backends::Prompt::Chat(
            messages
                .iter()
                .map(|m| backends::ChatMessage {
                    role: m.role.clone(),
                    content: m.content.clone(),
                })
                .collect(),
        ),
    }
}

fn default_out() -> PathBuf {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    PathBuf::from("runs").join(format!("bench-{now}"))
}
