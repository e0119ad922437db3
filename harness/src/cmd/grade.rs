//! `harness grade`: grades a sample file, or a task's gold solutions, and prints accuracy.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use benchmarks::{
    Grader, GraderKind, Problem, Sample, Sandbox, Task, read_sample_lines, task, write_samples,
};

use crate::cli::GradeArgs;
use crate::progress;

pub fn run(args: GradeArgs) -> Result<()> {
    let task = task(&args.task)?;
    let source = args.data.source();
    let (samples, origin) = match &args.input {
        Some(path) => (
            input_samples(task, path, args.split.as_deref())?,
            path.display().to_string(),
        ),
        None => {
            let splits: Vec<&str> = match &args.split {
                Some(split) => vec![task.split(split)?.name],
                None => task.splits.iter().map(|s| s.name).collect(),
            };
            (
                gold_samples(task, &splits, &source, args.data.seed)?,
                "gold solutions".to_string(),
            )
        }
    };

    let mut problems: HashMap<(String, String), Problem> = HashMap::new();
    let mut loaded = Vec::new();
    for (_, sample) in &samples {
        if !loaded.contains(&sample.split) {
            for p in task.load(&sample.split, &source, args.data.seed)? {
                problems.insert((sample.split.clone(), p.id.clone()), p);
            }
            loaded.push(sample.split.clone());
        }
    }
    let mut items = Vec::with_capacity(samples.len());
    for (line, sample) in &samples {
        let problem = problems
            .get(&(sample.split.clone(), sample.problem_id.clone()))
            .with_context(|| {
                format!(
                    "{origin}:{line}: problem_id `{}` is not in {} split `{}`",
                    sample.problem_id, task.name, sample.split
                )
            })?;
        items.push((problem, sample.response.as_str()));
    }

    let sandbox = match task.grader {
        GraderKind::Code => Some(Sandbox::new(args.sandbox.config())?),
        _ => None,
    };
    let grader = Grader::new(task.grader, sandbox.as_ref())?;
    let bar = progress::bar(items.len(), &format!("grading {}", task.name));
    let started = Instant::now();
    let verdicts = grader.grade_all(&items, &|| bar.inc(1));
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    let mut graded: Vec<Sample> = samples.into_iter().map(|(_, s)| s).collect();
    for (sample, verdict) in graded.iter_mut().zip(verdicts) {
        sample.set_verdict(verdict);
    }
    if let Some(output) = &args.output {
        write_samples(output, &graded)?;
    }
    report(task, &origin, &graded, elapsed, args.show_failures);
    Ok(())
}

/// The samples of a file, each with its line, checked against the task.
fn input_samples(task: &Task, path: &Path, split: Option<&str>) -> Result<Vec<(usize, Sample)>> {
    let default_split = match split {
        Some(split) => task.split(split)?.name,
        None => task.eval_split,
    };
    let mut samples = read_sample_lines(path)?;
    for (line, sample) in &mut samples {
        if sample.task.is_empty() {
            sample.task = task.name.to_string();
        } else if sample.task != task.name {
            bail!(
                "{}:{line}: field `task` is `{}`, but --task is `{}`",
                path.display(),
                sample.task,
                task.name
            );
        }
        if sample.split.is_empty() {
            sample.split = default_split.to_string();
        }
        task.split(&sample.split)
            .with_context(|| format!("{}:{line}: field `split`", path.display()))?;
    }
    Ok(samples)
}

/// The gold solutions of the given splits as greedy responses of a model named `gold`.
fn gold_samples(
    task: &Task,
    splits: &[&str],
    source: &benchmarks::DataSource,
    seed: u64,
) -> Result<Vec<(usize, Sample)>> {
    let mut samples = Vec::new();
    for split in splits {
        for problem in task.load(split, source, seed)? {
            samples.push((
                samples.len() + 1,
                Sample {
                    task: task.name.to_string(),
                    task_version: Some(task.version),
                    split: split.to_string(),
                    problem_id: problem.id,
                    model: "gold".into(),
                    backend: "gold".into(),
                    response: problem.solution,
                    ..Sample::default()
                },
            ));
        }
    }
    Ok(samples)
}

/// Prints accuracy per split, the rules that decided, and the first failures.
fn report(task: &Task, origin: &str, samples: &[Sample], elapsed: Duration, show: usize) {
    let mut per_split: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut rules: BTreeMap<&str, usize> = BTreeMap::new();
    for s in samples {
        let entry = per_split.entry(&s.split).or_default();
        entry.1 += 1;
        if s.correct == Some(true) {
            entry.0 += 1;
        }
        *rules.entry(s.rule.as_deref().unwrap_or("-")).or_default() += 1;
    }
    println!(
        "{} v{} — {origin} — graded in {:.1}s",
        task.name,
        task.version,
        elapsed.as_secs_f64()
    );
    for (split, (correct, total)) in &per_split {
        let accuracy = 100.0 * *correct as f64 / (*total).max(1) as f64;
        println!("  {split:<11} {correct:>6}/{total:<6} {accuracy:6.2}%");
    }
    let rules: Vec<String> = rules.iter().map(|(r, n)| format!("{r} {n}")).collect();
    println!("  rules: {}", rules.join(", "));
    let failures: Vec<&Sample> = samples.iter().filter(|s| s.correct != Some(true)).collect();
    for s in failures.iter().take(show) {
        println!(
            "  incorrect: {}/{} rule={} extracted={:?} {}",
            s.split,
            s.problem_id,
            s.rule.as_deref().unwrap_or("-"),
            s.extracted
                .as_deref()
                .map(|e| e.chars().take(60).collect::<String>()),
            s.grade_detail.as_deref().unwrap_or("")
        );
    }
    if failures.len() > show {
        println!("  ... and {} more incorrect", failures.len() - show);
    }
}
