//! Reports of a run directory: reads its sample files (re-grading them when asked), looks
//! up each problem's groups, hands everything to `results`, and writes the CSVs and plots
//! next to the samples. `harness bench` and `harness report` both end here, so a report
//! recomputed later is the same as the one the run wrote.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use benchmarks::{Grader, GraderKind, Problem, Sample, Sandbox};
use results::{Bootstrap, Embedder, ProblemGroups, RunInfo, SampleSet, SentenceEncoder};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::flags::{DataArgs, SandboxArgs};
use crate::progress;
use crate::run_dir::{dir_name, read_manifest, write_atomic};

/// How to report.
pub struct ReportOptions<'a> {
    /// Grade every response again before measuring.
    pub regrade: bool,
    /// Compute SentenceBERT diversity (fetches the encoder on first use).
    pub semantic: bool,
    /// Resamples and seed of the metrics' 95% intervals.
    pub bootstrap: Bootstrap,
    pub sandbox: &'a SandboxArgs,
    pub data: &'a DataArgs,
}

/// The report settings a run directory's manifest records under `reports` (not compared on
/// resume: they change no sample), so `harness report` later writes the same files.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReportSettings {
    /// Bootstrap resamples of the intervals (0: none).
    pub bootstrap: u32,
    /// The bootstrap's seed (the run's `--seed`).
    pub bootstrap_seed: u64,
}

impl ReportSettings {
    pub fn bootstrap(self) -> Bootstrap {
        Bootstrap {
            resamples: self.bootstrap,
            seed: self.bootstrap_seed,
        }
    }

    /// What a run directory recorded; None when it recorded nothing (a run written before
    /// intervals existed, or sample files from another tool).
    pub fn recorded(dir: &Path) -> Result<Option<Self>> {
        let reports = read_manifest(dir)?["reports"].clone();
        if reports.is_null() {
            return Ok(None);
        }
        let settings = serde_json::from_value(reports)
            .with_context(|| format!("{}: field `reports`", dir.join("manifest.json").display()))?;
        Ok(Some(settings))
    }

    /// Writes these settings into the directory's manifest (under `reports`).
    pub fn record(self, dir: &Path) -> Result<()> {
        let mut manifest = read_manifest(dir)?;
        if manifest.is_null() {
            return Ok(());
        }
        manifest["reports"] = serde_json::to_value(self)?;
        write_atomic(
            &dir.join("manifest.json"),
            serde_json::to_string_pretty(&manifest)?.as_bytes(),
        )
    }
}

/// The sample files of a run directory, in name order.
pub fn sample_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let samples = dir.join("samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&samples)
        .with_context(|| format!("{}: not a run directory (no samples/)", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    Ok(files)
}

/// Recomputes every metric of a bench run directory (or a folder of sample files) and
/// rewrites its CSVs and plots; returns the measures.
pub fn report_run(dir: &Path, options: &ReportOptions) -> Result<results::Measures> {
    let manifest = read_manifest(dir)?;
    let method = text_or(
        &manifest["settings"]["method"],
        Some(manifest["command"].as_str().unwrap_or("bench")),
    );
    let files = sample_files(dir)?;
    report_files(dir, &files, &manifest["settings"], &method, dir, options)
}

/// Measures the samples of `paths` and writes the CSVs and plots into `out`. `settings`
/// are the run's (backend, model, arith seed); `cache_dir` holds the embedding cache.
pub fn report_files(
    out: &Path,
    paths: &[PathBuf],
    settings: &Value,
    method: &str,
    cache_dir: &Path,
    options: &ReportOptions,
) -> Result<results::Measures> {
    let (info, measures) = measure_files(out, paths, settings, method, cache_dir, options)?;
    results::write_reports(out, &info, &measures)?;
    results::plot_run(out, &measures)?;
    Ok(measures)
}

/// Measures the samples of `paths` (what [`report_files`] writes), and names the run after
/// the folder `out`.
pub fn measure_files(
    out: &Path,
    paths: &[PathBuf],
    settings: &Value,
    method: &str,
    cache_dir: &Path,
    options: &ReportOptions,
) -> Result<(RunInfo, results::Measures)> {
    let arith_seed = settings["arith_seed"].as_u64().unwrap_or(options.data.seed);
    let source = options.data.source();
    let mut files: Vec<(PathBuf, Vec<Sample>)> = Vec::new();
    for path in paths {
        let samples = benchmarks::read_samples(path)?;
        files.push((path.clone(), samples));
    }
    if options.regrade {
        regrade(&mut files, options, &source, arith_seed)?;
    }

    // Sets in order of first appearance; a sample without a task takes its file's name.
    let mut keys: Vec<(String, String, u32)> = Vec::new();
    let mut members: HashMap<(String, String, u32), Vec<Sample>> = HashMap::new();
    for (path, samples) in &files {
        let file_task = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for s in samples {
            let task = if s.task.is_empty() {
                file_task.clone()
            } else {
                s.task.clone()
            };
            let key = (task, s.split.clone(), s.round);
            if !members.contains_key(&key) {
                keys.push(key.clone());
            }
            members.entry(key).or_default().push(s.clone());
        }
    }
    let mut groups: HashMap<(String, String), HashMap<String, ProblemGroups>> = HashMap::new();
    for (task, split, _) in &keys {
        if groups.contains_key(&(task.clone(), split.clone())) {
            continue;
        }
        // A task this build does not know (or a foreign split) still gets every metric
        // except the per-group ones.
        let map = benchmarks::task(task)
            .and_then(|t| t.load(split, &source, arith_seed))
            .map(|problems| {
                problems
                    .into_iter()
                    .map(|p| {
                        let g = ProblemGroups {
                            level: p.meta.level,
                            subject: p.meta.subject,
                        };
                        (p.id, g)
                    })
                    .collect()
            })
            .unwrap_or_default();
        groups.insert((task.clone(), split.clone()), map);
    }
    let sets: Vec<SampleSet> = keys
        .iter()
        .map(|key| SampleSet {
            task: key.0.clone(),
            split: key.1.clone(),
            round: key.2,
            samples: &members[key],
            groups: &groups[&(key.0.clone(), key.1.clone())],
        })
        .collect();

    let mut encoder = match options.semantic {
        true => Some(CachedEmbedder::open(cache_dir)?),
        false => None,
    };
    let measures = results::measure(
        &sets,
        encoder.as_mut().map(|e| e as &mut dyn Embedder),
        options.bootstrap,
    )?;
    let first = members.values().flatten().next();
    let info = RunInfo {
        run: dir_name(out),
        backend: text_or(&settings["backend"], first.map(|s| s.backend.as_str())),
        model: text_or(&settings["model"], first.map(|s| s.model.as_str())),
        method: method.to_string(),
    };
    Ok((info, measures))
}

fn text_or(value: &Value, fallback: Option<&str>) -> String {
    value
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| fallback.unwrap_or_default().to_string())
}

/// The SentenceBERT encoder, fetched into the model cache on first use.
pub fn load_encoder() -> Result<SentenceEncoder> {
    let files = backends::models::ensure_all(&backends::models::ALL_MINILM_L6_V2)?;
    let dir = files[0].parent().context("model cache path")?;
    SentenceEncoder::load(dir)
}

/// Grades every sample again and rewrites the sample files.
fn regrade(
    files: &mut [(PathBuf, Vec<Sample>)],
    options: &ReportOptions,
    source: &benchmarks::DataSource,
    arith_seed: u64,
) -> Result<()> {
    let needs_sandbox = files
        .iter()
        .flat_map(|(_, s)| s)
        .any(|s| benchmarks::task(&s.task).is_ok_and(|t| t.grader == GraderKind::Code));
    let sandbox = match needs_sandbox {
        true => Some(Sandbox::new(options.sandbox.config())?),
        false => None,
    };
    for (path, samples) in files.iter_mut() {
        let mut problems: HashMap<(String, String), HashMap<String, Problem>> = HashMap::new();
        for s in samples.iter() {
            let key = (s.task.clone(), s.split.clone());
            if !problems.contains_key(&key) {
                let task = benchmarks::task(&s.task)
                    .with_context(|| format!("{}: cannot regrade", path.display()))?;
                let loaded = task.load(&s.split, source, arith_seed)?;
                problems.insert(
                    key.clone(),
                    loaded.into_iter().map(|p| (p.id.clone(), p)).collect(),
                );
            }
        }
        let mut items: Vec<(&Problem, &str)> = Vec::new();
        let mut graders: Vec<GraderKind> = Vec::new();
        for s in samples.iter() {
            let problem = problems[&(s.task.clone(), s.split.clone())]
                .get(&s.problem_id)
                .with_context(|| {
                    format!(
                        "{}: problem {} is not in {} {}",
                        path.display(),
                        s.problem_id,
                        s.task,
                        s.split
                    )
                })?;
            items.push((problem, s.response.as_str()));
            graders.push(benchmarks::task(&s.task)?.grader);
        }
        let bar = progress::bar(items.len(), &format!("regrading {}", path.display()));
        let mut verdicts = Vec::with_capacity(items.len());
        // Consecutive samples of one grader kind are graded together.
        let mut start = 0;
        while start < items.len() {
            let kind = graders[start];
            let end = (start..items.len())
                .find(|&i| graders[i] != kind)
                .unwrap_or(items.len());
            let grader = Grader::new(kind, sandbox.as_ref())?;
            verdicts.extend(grader.grade_all(&items[start..end], &|| bar.inc(1)));
            start = end;
        }
        bar.finish_and_clear();
        for (sample, verdict) in samples.iter_mut().zip(verdicts) {
            sample.set_verdict(verdict);
        }
        benchmarks::write_samples(path, samples)?;
    }
    Ok(())
}

/// SentenceBERT vectors, computed once per distinct response and kept in a file of the run
/// (`sbert-embeddings.bin`: per text, its sha256, the dimension as u32 and the f32 values,
/// little-endian), so a report after round t embeds only round t's new responses. The
/// encoder is loaded only when a text is not in the cache.
struct CachedEmbedder {
    encoder: Option<SentenceEncoder>,
    cache: HashMap<[u8; 32], Vec<f32>>,
    path: PathBuf,
}

const EMBEDDING_CACHE: &str = "sbert-embeddings.bin";

/// Time spent loading the encoder and embedding, over the process (the loop reports it
/// apart from the rest of its reports' time).
static EMBEDDING_NANOS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Seconds spent on SentenceBERT embedding so far in this process.
pub fn embedding_seconds() -> f64 {
    EMBEDDING_NANOS.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
}

impl CachedEmbedder {
    fn open(dir: &Path) -> Result<Self> {
        let path = dir.join(EMBEDDING_CACHE);
        let mut cache = HashMap::new();
        if path.exists() {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut at = 0;
            while at + 36 <= bytes.len() {
                let dim = u32::from_le_bytes(bytes[at + 32..at + 36].try_into()?) as usize;
                let end = at + 36 + 4 * dim;
                if end > bytes.len() {
                    break;
                }
                let key: [u8; 32] = bytes[at..at + 32].try_into()?;
                let vector = bytes[at + 36..end]
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                cache.insert(key, vector);
                at = end;
            }
            if at != bytes.len() {
                // A record cut short by a crash: drop it, it is computed again.
                let file = std::fs::OpenOptions::new().write(true).open(&path)?;
                file.set_len(at as u64)?;
            }
        }
        Ok(CachedEmbedder {
            encoder: None,
            cache,
            path,
        })
    }

    fn key(text: &str) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(text.as_bytes()).into()
    }
}

impl Embedder for CachedEmbedder {
    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut missing: Vec<&str> = texts
            .iter()
            .copied()
            .filter(|t| !self.cache.contains_key(&Self::key(t)))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let started = std::time::Instant::now();
            if self.encoder.is_none() {
                self.encoder = Some(load_encoder()?);
            }
            let encoder = self.encoder.as_ref().expect("loaded above");
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .with_context(|| format!("opening {}", self.path.display()))?;
            let bar = progress::bar(missing.len(), "embedding responses");
            for chunk in missing.chunks(256) {
                for (text, vector) in chunk.iter().zip(encoder.encode(chunk)?) {
                    let key = Self::key(text);
                    let mut record = key.to_vec();
                    record.extend((vector.len() as u32).to_le_bytes());
                    record.extend(vector.iter().flat_map(|v| v.to_le_bytes()));
                    std::io::Write::write_all(&mut file, &record)?;
                    self.cache.insert(key, vector);
                }
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            let nanos = started.elapsed().as_nanos() as u64;
            EMBEDDING_NANOS.fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(texts
            .iter()
            .map(|t| self.cache[&Self::key(t)].clone())
            .collect())
    }
}
