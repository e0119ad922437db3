//! Training data in the JSON Lines formats TRL reads, so that data sets made here train
//! elsewhere and the other way round:
//!
//! - SFT: `{"prompt": P, "completion": C}` or `{"messages": [...]}` (the last assistant
//!   message is the completion; the messages before it are the prompt).
//! - DPO: `{"prompt": P, "chosen": C, "rejected": R}`.
//!
//! `P` is a string (raw text, no chat template) or a list of `{"role", "content"}` messages
//! (conversational: the model's chat template applies). `C` and `R` are a string or a list
//! holding one assistant message.

use std::path::{Path, PathBuf};

use backends::{ChatMessage, Prompt};
use serde_json::Value;

/// A record that cannot be used, with where it is.
#[derive(Debug, thiserror::Error)]
#[error("{}:{line}: field `{field}`: {message}", file.display())]
pub struct DataError {
    pub file: PathBuf,
    pub line: usize,
    pub field: String,
    pub message: String,
}

/// One supervised example.
#[derive(Debug, Clone, PartialEq)]
pub struct SftExample {
    pub prompt: Prompt,
    pub completion: String,
}

/// One preference pair.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferencePair {
    pub prompt: Prompt,
    pub chosen: String,
    pub rejected: String,
}

/// Reads every non-empty line of a JSON Lines file with `parse`.
fn read_lines<T>(
    path: &Path,
    mut parse: impl FnMut(&serde_json::Map<String, Value>) -> Result<T, (String, String)>,
) -> Result<Vec<T>, DataError> {
    let error = |line: usize, field: &str, message: String| DataError {
        file: path.to_path_buf(),
        line,
        field: field.to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| error(0, "-", e.to_string()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| error(line_no, "-", format!("not JSON: {e}")))?;
        let object = value
            .as_object()
            .ok_or_else(|| error(line_no, "-", "not a JSON object".into()))?;
        out.push(parse(object).map_err(|(field, message)| error(line_no, &field, message))?);
    }
    if out.is_empty() {
        return Err(error(0, "-", "no records".into()));
    }
    Ok(out)
}

/// Reads SFT examples.
pub fn read_sft(path: &Path) -> Result<Vec<SftExample>, DataError> {
    read_lines(path, |object| {
        if let Some(messages) = object.get("messages") {
            let mut messages = parse_messages(messages, "messages")?;
            let last = messages
                .pop()
                .filter(|m| m.role == "assistant")
                .ok_or_else(|| {
                    (
                        "messages".to_string(),
                        "the last message must be the assistant's (the completion)".to_string(),
                    )
                })?;
            if messages.is_empty() {
                return Err((
                    "messages".into(),
                    "no prompt before the assistant message".into(),
                ));
            }
            return Ok(SftExample {
                prompt: Prompt::Chat(messages),
                completion: last.content,
            });
        }
        Ok(SftExample {
            prompt: parse_prompt(object)?,
            completion: parse_response(object, "completion")?,
        })
    })
}

/// Reads DPO preference pairs.
pub fn read_preferences(path: &Path) -> Result<Vec<PreferencePair>, DataError> {
    read_lines(path, |object| {
        Ok(PreferencePair {
            prompt: parse_prompt(object)?,
            chosen: parse_response(object, "chosen")?,
            rejected: parse_response(object, "rejected")?,
        })
    })
}

fn parse_prompt(object: &serde_json::Map<String, Value>) -> Result<Prompt, (String, String)> {
    match object.get("prompt") {
        None => Err(("prompt".into(), "missing".into())),
        Some(Value::String(text)) => Ok(Prompt::Text(text.clone())),
        Some(messages @ Value::Array(_)) => {
            let messages = parse_messages(messages, "prompt")?;
            if messages.is_empty() {
                return Err(("prompt".into(), "empty message list".into()));
            }
            Ok(Prompt::Chat(messages))
        }
        Some(_) => Err((
            "prompt".into(),
            "expected a string or a list of messages".into(),
        )),
    }
}

fn parse_response(
    object: &serde_json::Map<String, Value>,
    field: &str,
) -> Result<String, (String, String)> {
    match object.get(field) {
        None => Err((field.into(), "missing".into())),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(messages @ Value::Array(_)) => {
            let messages = parse_messages(messages, field)?;
            match messages.as_slice() {
                [one] if one.role == "assistant" => Ok(one.content.clone()),
                _ => Err((
                    field.into(),
                    "a list must hold exactly one assistant message".into(),
                )),
            }
        }
        Some(_) => Err((
            field.into(),
            "expected a string or a list holding one assistant message".into(),
        )),
    }
}

fn parse_messages(value: &Value, field: &str) -> Result<Vec<ChatMessage>, (String, String)> {
    let items = value
        .as_array()
        .ok_or_else(|| (field.to_string(), "expected a list of messages".to_string()))?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let get = |key: &str| {
                item.get(key).and_then(Value::as_str).ok_or_else(|| {
                    (
                        format!("{field}[{i}].{key}"),
                        "missing or not a string".to_string(),
                    )
                })
            };
            let role = get("role")?;
            if !matches!(role, "system" | "user" | "assistant") {
                return Err((
                    format!("{field}[{i}].role"),
                    format!("`{role}`: expected system, user or assistant"),
                ));
            }
            Ok(ChatMessage {
                role: role.to_string(),
                content: get("content")?.to_string(),
            })
        })
        .collect()
}

/// Writes records as JSON Lines in TRL's formats (conversational prompts as message lists).
pub fn prompt_json(prompt: &Prompt) -> Value {
    match prompt {
        Prompt::Text(text) => Value::String(text.clone()),
        Prompt::Chat(messages) => serde_json::to_value(messages).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn reads_every_trl_shape() {
        let f = write(concat!(
            r#"{"prompt": "2+2=", "completion": "4"}"#,
            "\n\n",
            r#"{"prompt": [{"role": "user", "content": "hi"}], "completion": [{"role": "assistant", "content": "hello"}]}"#,
            "\n",
            r#"{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}, {"role": "assistant", "content": "a"}]}"#,
            "\n"
        ));
        let examples = read_sft(f.path()).unwrap();
        assert_eq!(examples.len(), 3);
        assert_eq!(examples[0].prompt, Prompt::Text("2+2=".into()));
        assert_eq!(examples[1].completion, "hello");
        match &examples[2].prompt {
            Prompt::Chat(m) => assert_eq!(m.len(), 2),
            other => panic!("{other:?}"),
        }
        assert_eq!(examples[2].completion, "a");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let f = write(concat!(
            r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#,
            "\n",
            r#"{"prompt": [{"role": "user"}], "chosen": "a", "rejected": "b"}"#,
            "\n"
        ));
        let e = read_preferences(f.path()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (2, "prompt[0].content"));
        assert!(
            e.to_string().contains(":2: field `prompt[0].content`"),
            "{e}"
        );

        let f = write("{\"prompt\": \"p\", \"chosen\": \"a\"}\n");
        let e = read_preferences(f.path()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (1, "rejected"));

        let f = write("{\"prompt\": \"p\", \"completion\": 3}\nnot json\n");
        let e = read_sft(f.path()).unwrap_err();
        assert_eq!((e.line, e.field.as_str()), (1, "completion"));

        let f = write("{\"messages\": [{\"role\": \"user\", \"content\": \"u\"}]}\n");
        let e = read_sft(f.path()).unwrap_err();
        assert_eq!(e.field, "messages");

        let f = write("\n\n");
        assert!(
            read_sft(f.path())
                .unwrap_err()
                .to_string()
                .contains("no records")
        );
    }
}
