//! Zero-shot prompt templates, as data: each names the answer format its grader reads.
//! A template renders a problem either as chat messages (system + user) for instruct models
//! with a chat template, or as plain text for base models. Changing a template's text
//! changes every number measured with it, so it bumps the template's version.

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::problem::Problem;

/// A named prompt template. `{question}` is replaced by the problem's question.
#[derive(Debug)]
pub struct Template {
    pub name: &'static str,
    pub version: u32,
    pub system: &'static str,
    pub user: &'static str,
    pub plain: &'static str,
}

/// Every template the harness knows.
pub static TEMPLATES: &[Template] = &[
    Template {
        name: "numeric",
        version: 1,
        system: "You are a careful assistant that solves math word problems step by step.",
        user: "{question}\n\nSolve the problem step by step. End your response with a line of \
               the form \"#### N\", where N is the final numeric answer.",
        plain: "Solve the problem step by step. End with a line \"#### N\", where N is the \
                final numeric answer.\n\nQuestion: {question}\nAnswer:",
    },
    Template {
        name: "boxed",
        version: 1,
        system: "You are a careful assistant that solves competition mathematics problems.",
        user: "{question}\n\nSolve the problem step by step and put the final answer in \
               \\boxed{}.",
        plain: "Solve the problem step by step and put the final answer in \\boxed{}.\n\n\
                Problem: {question}\nSolution:",
    },
    Template {
        name: "choice",
        version: 1,
        system: "You are a careful assistant that answers multiple-choice questions.",
        user: "{question}\n\nThink briefly, then end your response with \"The answer is X.\", \
               where X is the letter of the correct option.",
        plain: "Answer the multiple-choice question. End with \"The answer is X.\", where X is \
                the letter of the correct option.\n\nQuestion: {question}\nAnswer:",
    },
    Template {
        name: "code",
        version: 1,
        system: "You are an expert Python programmer.",
        user: "{question}\n\nWrite the complete Python code in a single ```python code block.",
        plain: "Write a Python function for the task below, in a single ```python code block.\n\n\
                Task: {question}\nSolution:\n",
    },
];

/// Looks a template up by name.
pub fn template(name: &str) -> Result<&'static Template> {
    TEMPLATES.iter().find(|t| t.name == name).ok_or_else(|| {
        let names: Vec<_> = TEMPLATES.iter().map(|t| t.name).collect();
        BenchError::NotFound(format!(
            "unknown template `{name}` (known: {})",
            names.join(", ")
        ))
    })
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A rendered prompt: chat messages for a chat template, or raw text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    Chat(Vec<Message>),
    Text(String),
}

/// Which form of a template to render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptStyle {
    Chat,
    Text,
}

impl Template {
    /// The prompt for a problem.
    pub fn render(&self, problem: &Problem, style: PromptStyle) -> Prompt {
        let fill = |t: &str| t.replace("{question}", &problem.question);
        match style {
            PromptStyle::Chat => Prompt::Chat(vec![
                Message {
                    role: "system".into(),
                    content: self.system.to_string(),
                },
                Message {
                    role: "user".into(),
                    content: fill(self.user),
                },
            ]),
            PromptStyle::Text => Prompt::Text(fill(self.plain)),
        }
    }
}

impl std::fmt::Display for Prompt {
    /// A readable rendering: each message under its role, or the raw text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Prompt::Text(text) => f.write_str(text),
            Prompt::Chat(messages) => {
                for (i, m) in messages.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    writeln!(f, "[{}]\n{}", m.role, m.content)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::TASKS;

    #[test]
    fn every_task_template_exists_and_names_its_answer_format() {
        for task in TASKS {
            let t = template(task.template).unwrap();
            let format = match t.name {
                "numeric" => "####",
                "boxed" => "\\boxed{}",
                "choice" => "The answer is X",
                _ => "```python",
            };
            assert!(
                t.user.contains(format) && t.plain.contains(format),
                "{}",
                t.name
            );
            assert!(t.user.contains("{question}") && t.plain.contains("{question}"));
        }
        assert!(template("nope").is_err());
    }
}
