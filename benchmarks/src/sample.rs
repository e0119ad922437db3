//! The sample file: JSON Lines, one response per line, written by `harness bench` and read
//! by `harness grade` and the reports. Fields are documented in the README. Files from other
//! tools need only `problem_id` and `response`; everything else has a default.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::grade::Verdict;
use crate::prompt::Prompt;

/// Sampling settings of a response (temperature 0 is greedy).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: Option<f64>,
    pub top_k: Option<u32>,
    pub min_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub stop: Vec<String>,
}

/// One line of a sample file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    #[serde(default)]
    pub task: String,
    #[serde(default)]
    pub task_version: Option<u32>,
    #[serde(default)]
    pub split: String,
    pub problem_id: String,
    #[serde(default)]
    pub round: u32,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub backend: String,
    /// None for the greedy response, else the index j of the sample (seed = base + j).
    #[serde(default)]
    pub sample_index: Option<u32>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub prompt: Option<Prompt>,
    pub response: String,
    /// `stop` or `length`.
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub prompt_tokens: Option<u32>,
    #[serde(default)]
    pub completion_tokens: Option<u32>,
    /// Filled by grading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extracted: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub normalized: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade_detail: Option<String>,
}

impl Sample {
    /// Records a verdict on this sample.
    pub fn set_verdict(&mut self, verdict: Verdict) {
        self.correct = Some(verdict.correct);
        self.extracted = verdict.extracted;
        self.normalized = verdict.normalized;
        self.rule = Some(verdict.rule);
        self.grade_detail = verdict.detail;
    }
}

/// Reads a sample file; a bad line is an error naming the file and line.
pub fn read_samples(path: &Path) -> Result<Vec<Sample>> {
    Ok(read_sample_lines(path)?
        .into_iter()
        .map(|(_, s)| s)
        .collect())
}

/// Reads a sample file with the 1-based line number of each sample.
pub fn read_sample_lines(path: &Path) -> Result<Vec<(usize, Sample)>> {
    let file = std::fs::File::open(path).map_err(|e| BenchError::io(path, e))?;
    let mut samples = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| BenchError::io(path, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut json = serde_json::Deserializer::from_str(&line);
        let sample =
            serde_path_to_error::deserialize(&mut json).map_err(|e| BenchError::SampleLine {
                file: path.to_path_buf(),
                line: index + 1,
                message: format!("field `{}`: {}", e.path(), e.inner()),
            })?;
        samples.push((index + 1, sample));
    }
    Ok(samples)
}

/// Writes a sample file atomically: a temporary file in the same directory, then a rename,
/// so a crash leaves the old file or the new one, never half of one.
pub fn write_samples(path: &Path, samples: &[Sample]) -> Result<()> {
    write_jsonl(path, samples)
}

/// Writes values as JSON Lines through a temporary file in the same folder and a rename, so
/// a reader sees the old file or the whole new one.
pub fn write_jsonl<T: Serialize>(path: &Path, values: &[T]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |e| BenchError::io(path, e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    {
        let mut out = std::io::BufWriter::new(tmp.as_file_mut());
        for value in values {
            serde_json::to_writer(&mut out, value).map_err(|e| io(e.into()))?;
            out.write_all(b"\n").map_err(io)?;
        }
        out.flush().map_err(io)?;
    }
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_foreign_line_reads_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        std::fs::write(
            &path,
            "{\"problem_id\": \"7\", \"response\": \"#### 3\"}\n\n",
        )
        .unwrap();
        let mut samples = read_samples(&path).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].sample_index, None);
        samples[0].prompt = Some(Prompt::Text("q".into()));
        write_samples(&path, &samples).unwrap();
        assert_eq!(read_samples(&path).unwrap(), samples);
    }

    #[test]
    fn bad_line_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.jsonl");
        std::fs::write(
            &path,
            "{\"problem_id\": \"1\", \"response\": \"\"}\n{\"problem_id\": 2}\n",
        )
        .unwrap();
        let err = read_samples(&path).unwrap_err().to_string();
        assert!(err.contains("s.jsonl:2:"), "{err}");
        assert!(err.contains("field `problem_id`"), "{err}");
    }
}
