//! The task table: each benchmark variant is one record (data source per split, grader,
//! prompt template, stop strings, version), in the manner of lm-evaluation-harness's YAML
//! tasks. A new variant adds a record here, not a branch elsewhere.

use crate::arith;
use crate::data::{self, DataFile, DataSource, Record};
use crate::error::{BenchError, Result};
use crate::grade::{GraderKind, math::last_boxed};
use crate::problem::{CodeTests, Problem, ProblemMeta};

/// A benchmark task.
#[derive(Debug)]
pub struct Task {
    /// Name used on the command line and in every output row.
    pub name: &'static str,
    /// Bumped whenever data, prompt or grading of the task changes, so numbers of different
    /// versions are never mixed.
    pub version: u32,
    /// Splits, each with its source.
    pub splits: &'static [Split],
    /// The split SFT and sampling use (None: evaluation-only task).
    pub train_split: Option<&'static str>,
    /// The split greedy pass@1 is measured on.
    pub eval_split: &'static str,
    /// How responses are graded.
    pub grader: GraderKind,
    /// Default prompt template (see [`crate::prompt`]).
    pub template: &'static str,
    /// Stop strings sent with every request of this task.
    pub stop: &'static [&'static str],
    /// Default largest number of new tokens per response: the smallest of 128, 256, 512,
    /// ... at least 1.5 times the 99th percentile of the gold solutions' length in
    /// SmolLM2's tokens with the end of turn (measured: gsm8k 292, math 1057, csqa 6, mbpp
    /// 244, svamp 39, arith 139), and at least 128 (prompts ask for the reasoning). A
    /// response cut at this length enters no training set.
    pub max_tokens: u32,
}

/// A split of a task and where its problems come from.
#[derive(Debug)]
pub struct Split {
    pub name: &'static str,
    pub(crate) source: Source,
}

/// The record formats of the data files.
#[derive(Debug)]
pub(crate) enum Source {
    Gsm8k(&'static DataFile),
    /// MATH in its original fields; `math500` adds a separate `answer` field.
    Math(&'static DataFile),
    Csqa(&'static DataFile),
    /// MBPP task ids `first..=last` of the full file.
    Mbpp {
        first: i64,
        last: i64,
    },
    Svamp,
    Arith,
}

impl std::fmt::Debug for DataFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Every task the harness knows.
pub static TASKS: &[Task] = &[
    Task {
        name: "gsm8k",
        version: 1,
        splits: &[
            Split {
                name: "train",
                source: Source::Gsm8k(&data::GSM8K_TRAIN),
            },
            Split {
                name: "test",
                source: Source::Gsm8k(&data::GSM8K_TEST),
            },
        ],
        train_split: Some("train"),
        eval_split: "test",
        grader: GraderKind::Numeric,
        template: "numeric",
        stop: &[],
        max_tokens: 512,
    },
    Task {
        name: "math",
        version: 1,
        splits: &[
            Split {
                name: "train",
                source: Source::Math(&data::MATH_TRAIN),
            },
            Split {
                name: "test",
                source: Source::Math(&data::MATH_TEST),
            },
            Split {
                name: "math500",
                source: Source::Math(&data::MATH500_TEST),
            },
        ],
        train_split: Some("train"),
        eval_split: "math500",
        grader: GraderKind::MathBoxed,
        template: "boxed",
        stop: &[],
        max_tokens: 2048,
    },
    Task {
        name: "csqa",
        version: 1,
        splits: &[
            Split {
                name: "train",
                source: Source::Csqa(&data::CSQA_TRAIN),
            },
            Split {
                name: "dev",
                source: Source::Csqa(&data::CSQA_DEV),
            },
        ],
        train_split: Some("train"),
        eval_split: "dev",
        grader: GraderKind::Choice,
        template: "choice",
        stop: &[],
        max_tokens: 128,
    },
    Task {
        name: "mbpp",
        version: 1,
        splits: &[
            Split {
                name: "train",
                source: Source::Mbpp {
                    first: 601,
                    last: 974,
                },
            },
            Split {
                name: "validation",
                source: Source::Mbpp {
                    first: 511,
                    last: 600,
                },
            },
            Split {
                name: "test",
                source: Source::Mbpp {
                    first: 11,
                    last: 510,
                },
            },
            Split {
                name: "prompt",
                source: Source::Mbpp { first: 1, last: 10 },
            },
        ],
        train_split: Some("train"),
        eval_split: "test",
        grader: GraderKind::Code,
        template: "code",
        stop: &[],
        max_tokens: 512,
    },
    Task {
        name: "svamp",
        version: 1,
        splits: &[Split {
            name: "test",
            source: Source::Svamp,
        }],
        train_split: None,
        eval_split: "test",
        grader: GraderKind::Numeric,
        template: "numeric",
        stop: &[],
        max_tokens: 128,
    },
    Task {
        name: "arith",
        version: arith::GENERATOR_VERSION,
        splits: &[
            Split {
                name: "train",
                source: Source::Arith,
            },
            Split {
                name: "test",
                source: Source::Arith,
            },
            Split {
                name: "ood",
                source: Source::Arith,
            },
        ],
        train_split: Some("train"),
        eval_split: "test",
        grader: GraderKind::Numeric,
        template: "numeric",
        stop: &[],
        max_tokens: 256,
    },
];

/// Looks a task up by name.
pub fn task(name: &str) -> Result<&'static Task> {
    TASKS.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<_> = TASKS.iter().map(|t| t.name).collect();
        BenchError::NotFound(format!(
            "unknown task `{name}` (known: {})",
            names.join(", ")
        ))
    })
}

impl Task {
    /// A split of this task by name.
    pub fn split(&self, name: &str) -> Result<&'static Split> {
        self.splits.iter().find(|s| s.name == name).ok_or_else(|| {
            let names: Vec<_> = self.splits.iter().map(|s| s.name).collect();
            BenchError::NotFound(format!(
                "task `{}` has no split `{name}` (splits: {})",
                self.name,
                names.join(", ")
            ))
        })
    }

    /// Loads the problems of a split. `seed` only matters for generated tasks (arith).
    pub fn load(&self, split: &str, source: &DataSource, seed: u64) -> Result<Vec<Problem>> {
        let _span = tracing::info_span!("load", task = self.name, split).entered();
        let spec = self.split(split)?;
        match &spec.source {
            Source::Gsm8k(file) => records(source, file, false)?
                .iter()
                .enumerate()
                .map(|(i, r)| gsm8k(r, &format!("{split}-{i:04}")))
                .collect(),
            Source::Math(file) => records(source, file, false)?.iter().map(math).collect(),
            Source::Csqa(file) => records(source, file, false)?.iter().map(csqa).collect(),
            Source::Mbpp { first, last } => {
                let mut problems = Vec::new();
                for record in records(source, &data::MBPP, false)? {
                    let id = record.int("task_id")?;
                    if (*first..=*last).contains(&id) {
                        problems.push(mbpp(&record, id)?);
                    }
                }
                Ok(problems)
            }
            Source::Svamp => records(source, &data::SVAMP, true)?
                .iter()
                .map(svamp)
                .collect(),
            Source::Arith => arith::generate(split, seed)
                .ok_or_else(|| BenchError::NotFound(format!("arith has no split `{split}`"))),
        }
    }
}

fn records(source: &DataSource, file: &DataFile, array: bool) -> Result<Vec<Record>> {
    let bytes = source.read(file)?;
    let name = source.display_name(file);
    if array {
        data::json_array_records(&name, &bytes)
    } else {
        data::jsonl_records(&name, &bytes)
    }
}

fn gsm8k(record: &Record, id: &str) -> Result<Problem> {
    let solution = record.str("answer")?;
    let answer = solution
        .rsplit_once("####")
        .map(|(_, a)| a.trim().to_string())
        .ok_or_else(|| record.error("answer", "no `####` final answer"))?;
    Ok(Problem {
        id: id.to_string(),
        question: record.str("question")?,
        answer,
        solution,
        meta: ProblemMeta::default(),
    })
}

fn math(record: &Record) -> Result<Problem> {
    let solution = record.str("solution")?;
    // MATH-500 carries its final answer; the original MATH files only the boxed solution.
    let answer = match record.value.get("answer") {
        Some(_) => record.str("answer")?,
        None => last_boxed(&solution)
            .ok_or_else(|| record.error("solution", "no \\boxed{} answer"))?
            .to_string(),
    };
    let level = match &record.value["level"] {
        serde_json::Value::Number(n) => n.as_u64().map(|l| l as u8),
        serde_json::Value::String(s) => s.strip_prefix("Level ").and_then(|l| l.parse().ok()),
        _ => return Err(record.error("level", "expected `Level N` or a number")),
    };
    let subject = match record.value.get("type") {
        Some(_) => record.str("type")?,
        None => record.str("subject")?,
    };
    Ok(Problem {
        id: record.str("unique_id")?,
        question: record.str("problem")?,
        answer,
        solution,
        meta: ProblemMeta {
            level,
            subject: Some(subject),
            ..ProblemMeta::default()
        },
    })
}

fn csqa(record: &Record) -> Result<Problem> {
    let answer = record.str("answerKey")?;
    let mut choices = Vec::new();
    for choice in record.list("question.choices")? {
        let label = choice["label"].as_str().and_then(|l| l.chars().next());
        let text = choice["text"].as_str();
        match (label, text) {
            (Some(label), Some(text)) => choices.push((label, text.to_string())),
            _ => return Err(record.error("question.choices", "each needs `label` and `text`")),
        }
    }
    if !choices.iter().any(|(label, _)| label.to_string() == answer) {
        return Err(record.error("answerKey", format!("`{answer}` is not an option label")));
    }
    let options: Vec<String> = choices.iter().map(|(l, t)| format!("{l}. {t}")).collect();
    Ok(Problem {
        id: record.str("id")?,
        question: format!("{}\n{}", record.str("question.stem")?, options.join("\n")),
        solution: format!("The answer is {answer}."),
        answer,
        meta: ProblemMeta {
            choices,
            ..ProblemMeta::default()
        },
    })
}

fn mbpp(record: &Record, id: i64) -> Result<Problem> {
    let code = record.str("code")?.replace("\r\n", "\n");
    let asserts = record.str_list("test_list")?;
    let entry_point = asserts
        .iter()
        .find_map(|line| crate::grade::code::called_function(line))
        .ok_or_else(|| record.error("test_list", "no function call found in the asserts"))?;
    let question = format!(
        "{}\nYour code should pass these tests:\n\n{}",
        record.str("text")?,
        asserts.join("\n")
    );
    Ok(Problem {
        id: id.to_string(),
        question,
        solution: format!("```python\n{}\n```", code.trim_end()),
        answer: code,
        meta: ProblemMeta {
            tests: Some(CodeTests {
                setup: record.str("test_setup_code")?.replace("\r\n", "\n"),
                asserts,
                entry_point,
            }),
            ..ProblemMeta::default()
        },
    })
}

fn svamp(record: &Record) -> Result<Problem> {
    let body = record.str("Body")?;
    let answer = record.number_text("Answer")?;
    let answer = crate::grade::numeric::normalize(&answer)
        .ok_or_else(|| record.error("Answer", "not a number"))?;
    let joiner = if body.trim_end().ends_with(['.', '?', '!', ',']) {
        " "
    } else {
        ". "
    };
    Ok(Problem {
        id: record.str("ID")?,
        question: format!("{}{joiner}{}", body.trim_end(), record.str("Question")?),
        solution: format!(
            "{} = {answer}\n#### {answer}",
            record.str("Equation")?.trim()
        ),
        answer,
        meta: ProblemMeta {
            subject: Some(record.str("Type")?),
            ..ProblemMeta::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(task: &str, split: &str) -> usize {
        self::task(task)
            .unwrap()
            .load(split, &DataSource::Embedded, arith::DEFAULT_SEED)
            .unwrap()
            .len()
    }

    #[test]
    fn split_sizes_match_spec() {
        assert_eq!(count("gsm8k", "train"), 7473);
        assert_eq!(count("gsm8k", "test"), 1319);
        assert_eq!(count("math", "train"), 7500);
        assert_eq!(count("math", "test"), 5000);
        assert_eq!(count("math", "math500"), 500);
        assert_eq!(count("csqa", "train"), 9741);
        assert_eq!(count("csqa", "dev"), 1221);
        assert_eq!(count("mbpp", "train"), 374);
        assert_eq!(count("mbpp", "validation"), 90);
        assert_eq!(count("mbpp", "test"), 500);
        assert_eq!(count("mbpp", "prompt"), 10);
        assert_eq!(count("svamp", "test"), 1000);
    }

    #[test]
    fn math_keeps_level_and_subject() {
        let problems = task("math")
            .unwrap()
            .load("math500", &DataSource::Embedded, 0)
            .unwrap();
        assert!(
            problems
                .iter()
                .all(|p| p.meta.level.is_some() && p.meta.subject.is_some())
        );
        let levels: std::collections::BTreeSet<_> =
            problems.iter().filter_map(|p| p.meta.level).collect();
        assert_eq!(levels.into_iter().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn unknown_names_are_clear_errors() {
        assert!(
            task("gsm9k")
                .unwrap_err()
                .to_string()
                .contains("known: gsm8k")
        );
        let err = task("mbpp").unwrap().split("dev").unwrap_err().to_string();
        assert!(
            err.contains("splits: train, validation, test, prompt"),
            "{err}"
        );
    }
}
