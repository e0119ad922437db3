//! `harness compare RUN_A RUN_B ...`: the runs' metrics side by side (from each run's
//! metrics.csv), greedy agreement with the first run, sampling throughput, and each metric's
//! paired change against the first run with its interval (`deltas.csv`); one CSV and one
//! plot per metric and a table on stdout. A run is a bench directory, one method of a loop
//! (`RUN/sft`), or, when every argument is one, a whole loop: the loops are then compared
//! method by method, each in its own folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use results::{Bootstrap, RunMeasures};

use crate::cli::CompareArgs;
use crate::reports::{ReportOptions, measure_files, sample_files};
use crate::run_dir::{dir_name, read_manifest};
use crate::study::dir::{LoopDir, LoopSettings, read_settings};
use crate::study::flags::LoopMethod;

/// One column of a comparison: where its metrics and samples are.
struct Compared {
    /// The column's name for a loop's method (`run-a/sft`); a bench run's is its
    /// metrics.csv's `run` (its directory's name).
    label: Option<String>,
    /// The folder that holds its metrics.csv.
    reports: PathBuf,
    /// Its sample files.
    files: Vec<PathBuf>,
    /// Where the SentenceBERT cache and the settings are (the run or loop root).
    root: PathBuf,
    /// Sampling throughput: a bench run's summary.csv, a loop's phases.jsonl.
    tokens_per_s: Option<f64>,
}

pub fn run(args: CompareArgs) -> Result<()> {
    if args.runs.len() < 2 {
        bail!("compare needs at least two run directories");
    }
    let out = args.out.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from("runs").join(format!("compare-{now}"))
    });
    let loops = args
        .runs
        .iter()
        .map(|dir| is_loop(dir))
        .collect::<Result<Vec<_>>>()?;
    if loops.iter().all(|l| *l) {
        let all: Vec<LoopSettings> = args
            .runs
            .iter()
            .map(|d| read_settings(d))
            .collect::<Result<_>>()?;
        let methods: Vec<LoopMethod> = all[0]
            .methods
            .iter()
            .copied()
            .filter(|m| all.iter().all(|s| s.methods.contains(m)))
            .collect();
        if methods.is_empty() {
            bail!("the loops share no method");
        }
        for method in methods {
            let columns = args
                .runs
                .iter()
                .zip(&all)
                .map(|(dir, settings)| loop_method(dir, settings, method))
                .collect::<Result<Vec<_>>>()?;
            println!("== {}", method.name());
            compare_columns(&out.join(method.name()), &columns, &args)?;
        }
        return Ok(());
    }
    if loops.iter().any(|l| *l) {
        bail!("compare loop directories with loop directories (or name one method: RUN/sft)");
    }
    let columns = args
        .runs
        .iter()
        .map(|d| column(d))
        .collect::<Result<Vec<_>>>()?;
    compare_columns(&out, &columns, &args)
}

fn is_loop(dir: &Path) -> Result<bool> {
    Ok(read_manifest(dir)?["command"] == "run")
}

/// A bench directory, or one method's folder of a loop (`RUN/sft`).
fn column(dir: &Path) -> Result<Compared> {
    let method_of_loop = dir
        .parent()
        .filter(|parent| is_loop(parent).unwrap_or(false))
        .zip(dir.file_name().and_then(|n| n.to_str()));
    if let Some((root, name)) = method_of_loop {
        let settings = read_settings(root)?;
        let method = settings
            .methods
            .iter()
            .copied()
            .find(|m| m.name() == name)
            .with_context(|| {
                format!(
                    "{}: not a method of the loop {}",
                    dir.display(),
                    root.display()
                )
            })?;
        return loop_method(root, &settings, method);
    }
    require_metrics(dir, dir)?;
    Ok(Compared {
        label: None,
        reports: dir.to_path_buf(),
        files: sample_files(dir)?,
        root: dir.to_path_buf(),
        tokens_per_s: tokens_per_s(&dir.join("summary.csv"))?,
    })
}

/// Refuses a folder without metrics.csv, naming the command that writes one.
fn require_metrics(reports: &Path, root: &Path) -> Result<()> {
    if !reports.join("metrics.csv").is_file() {
        bail!(
            "{}: no metrics.csv (run `harness report {}` first)",
            reports.display(),
            root.display()
        );
    }
    Ok(())
}

fn loop_method(root: &Path, settings: &LoopSettings, method: LoopMethod) -> Result<Compared> {
    let dir = LoopDir::existing(root);
    require_metrics(&dir.reports(method), root)?;
    let mut name = dir_name(root);
    if name.is_empty() {
        name = root.display().to_string();
    }
    Ok(Compared {
        label: Some(format!("{name}/{}", method.name())),
        reports: dir.reports(method),
        files: dir.method_files(method, settings.rounds)?,
        root: root.to_path_buf(),
        tokens_per_s: dir.sampling_throughput(method),
    })
}

/// Writes the comparison of `columns` into `out` and prints its table.
fn compare_columns(out: &Path, columns: &[Compared], args: &CompareArgs) -> Result<()> {
    let runs = columns.iter().map(load).collect::<Result<Vec<_>>>()?;
    let compared = results::compare(&runs);
    let table = results::write_compare(out, &compared)?;
    print!("{table}");
    // Paired changes against the first column, on the problems both evaluated.
    let options = ReportOptions {
        regrade: false,
        semantic: false,
        bootstrap: Bootstrap {
            resamples: args.bootstrap,
            seed: 0,
        },
        sandbox: &args.sandbox,
        data: &args.data,
    };
    let measured = columns
        .iter()
        .map(|c| {
            let settings = read_manifest(&c.root)?["settings"].clone();
            let (_, measures) =
                measure_files(&c.reports, &c.files, &settings, "", &c.root, &options)?;
            Ok(measures)
        })
        .collect::<Result<Vec<_>>>()?;
    let mut changes = Vec::new();
    for (run, measures) in compared.runs.iter().zip(&measured).skip(1) {
        changes.extend(results::method_changes(
            (&compared.runs[0], &measured[0]),
            (run, measures),
            0,
            options.bootstrap,
        ));
    }
    let marked = changes.iter().filter(|c| c.excludes_zero()).count();
    results::write_changes(out, "deltas.csv", "compare", &changes)?;
    println!(
        "paired changes against {}: {} of {} with a 95% interval that excludes 0 (deltas.csv)",
        compared.runs[0],
        marked,
        changes.len()
    );
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn load(column: &Compared) -> Result<RunMeasures> {
    let metrics = column.reports.join("metrics.csv");
    let (mut info, rows) = results::read_metrics(&metrics)?;
    if let Some(label) = &column.label {
        info.run = label.clone();
    }
    // Runs from different places may share a directory name: the path tells them apart.
    if info.run.is_empty() {
        info.run = column.reports.display().to_string();
    }
    let mut greedy = BTreeMap::new();
    for path in &column.files {
        for s in benchmarks::read_samples(path)? {
            if s.sample_index.is_none() {
                let answer = s.normalized.clone().or(s.extracted.clone());
                greedy.insert(
                    (s.task, s.split, s.round, s.problem_id),
                    (answer, s.response),
                );
            }
        }
    }
    Ok(RunMeasures {
        info,
        metrics: rows,
        greedy,
        tokens_per_s: column.tokens_per_s,
    })
}

/// The sampling throughput `harness bench` recorded in summary.csv, if any.
fn tokens_per_s(path: &Path) -> Result<Option<f64>> {
    if !path.is_file() {
        return Ok(None);
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    let Some(column) = headers.iter().position(|h| h == "tokens_per_s") else {
        return Ok(None);
    };
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", path.display()))?;
        if let Some(value) = record.get(column).and_then(|v| v.parse().ok()) {
            return Ok(Some(value));
        }
    }
    Ok(None)
}
