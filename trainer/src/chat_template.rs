//! A Hugging Face chat template rendered as transformers renders it, and therefore as vLLM
//! does (its chat endpoint calls transformers' `apply_chat_template`): transformers compiles
//! templates with `trim_blocks` and `lstrip_blocks` on, the `loopcontrols` extension
//! (`{% break %}`, `{% continue %}`), Python's `json.dumps` as `tojson`, and the globals
//! `raise_exception` and `strftime_now`. A default jinja environment would give templates
//! that rely on trimming other whitespace, so the trainer's token ids would differ from the
//! ones the server samples from.

use anyhow::{Context, Result};
use backends::ChatMessage;
use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

/// The special tokens the tokenizer defines, by name (`bos_token`, `eos_token`,
/// `unk_token`, `pad_token`): transformers passes its `special_tokens_map` to the template,
/// so a token the tokenizer lacks is undefined there, not empty.
pub type SpecialTokens = [(&'static str, String)];

impl ChatTemplate {
    /// Compiles `source`; a syntax error names the line.
    pub fn new(source: String) -> Result<Self> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned("chat", source)
            .context("chat template")?;
        Ok(ChatTemplate { env })
    }

    /// `messages` (and an assistant turn holding `assistant`, if any) rendered, with the
    /// generation prompt when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        assistant: Option<&str>,
        add_generation_prompt: bool,
        tokens: &SpecialTokens,
    ) -> Result<String> {
        let turn = |role: &str, content: &str| {
            // Built as minijinja mappings (insertion order kept), so `tojson` and `items()`
            // see `role` before `content`, as Python's dicts do.
            minijinja::context! { role => role, content => content }
        };
        let mut all: Vec<Value> = messages.iter().map(|m| turn(&m.role, &m.content)).collect();
        if let Some(content) = assistant {
            all.push(turn("assistant", content));
        }
        // transformers passes tools and documents as None when there are none.
        let mut context: Vec<(&str, Value)> = vec![
            ("messages", Value::from(all)),
            ("tools", Value::from(())),
            ("documents", Value::from(())),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
        ];
        context.extend(tokens.iter().map(|(k, v)| (*k, Value::from(v.as_str()))));
        let context: Value = context.into_iter().collect();
        self.env
            .get_template("chat")?
            .render(context)
            .context("rendering the chat template")
    }
}

fn raise_exception(message: String) -> Result<String, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Today's date in Python's `strftime` format, as transformers' `strftime_now` (local time).
/// `SOURCE_DATE_EPOCH` (seconds since 1970, the reproducible-builds convention) fixes the
/// date, so that a template that prints it (Llama 3.2's) renders the same on any day.
fn strftime_now(format: String) -> Result<String, Error> {
    use chrono::TimeZone;
    let now = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(epoch) => {
            let seconds: i64 = epoch.trim().parse().map_err(|_| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("SOURCE_DATE_EPOCH `{epoch}` is not a whole number of seconds"),
                )
            })?;
            chrono::Local
                .timestamp_opt(seconds, 0)
                .single()
                .ok_or_else(|| Error::new(ErrorKind::InvalidOperation, "SOURCE_DATE_EPOCH"))?
        }
        Err(_) => chrono::Local::now(),
    };
    let mut out = String::new();
    use std::fmt::Write;
    write!(out, "{}", now.format(&format)).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: bad format `{format}`"),
        )
    })?;
    Ok(out)
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)` with those keywords honoured, as transformers' `tojson`. (minijinja's
/// own `tojson` escapes HTML characters and uses other separators.)
fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let (item, key) = match separators.as_deref() {
        Some([item, key]) => (item.clone(), key.clone()),
        Some(_) => {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be two strings",
            ));
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let style = JsonStyle {
        indent,
        item,
        key,
        ensure_ascii: ensure_ascii.unwrap_or(false),
        sort_keys: sort_keys.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(&value, 0, &mut out)?;
    // Marked safe, as jinja's own tojson output is.
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<usize>,
    item: String,
    key: String,
    ensure_ascii: bool,
    sort_keys: bool,
}

impl JsonStyle {
    fn write(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&python_number(value)),
            ValueKind::String | ValueKind::Bytes => {
                self.string(value.as_str().unwrap_or_default(), out)
            }
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container('[', ']', items.len(), depth, out, |i, out| {
                    self.write(&items[i], depth + 1, out)
                })?;
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if self.sort_keys {
                    keys.sort();
                }
                self.container('{', '}', keys.len(), depth, out, |i, out| {
                    let key = &keys[i];
                    match key.as_str() {
                        Some(text) => self.string(text, out),
                        None => {
                            let mut text = String::new();
                            self.write(key, depth + 1, &mut text)?;
                            self.string(&text, out);
                        }
                    }
                    out.push_str(&self.key);
                    self.write(&value.get_item(key)?, depth + 1, out)
                })?;
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: {} is not JSON serializable", value.kind()),
                ));
            }
        }
        Ok(())
    }

    /// `open` items `close`, one item per line at `depth + 1` when indenting.
    fn container(
        &self,
        open: char,
        close: char,
        len: usize,
        depth: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if len > 0 {
            for i in 0..len {
                if i > 0 {
                    out.push_str(&self.item);
                }
                self.newline(depth + 1, out);
                item(i, out)?;
            }
            self.newline(depth, out);
        }
        out.push(close);
        Ok(())
    }

    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(width) = self.indent {
            out.push('\n');
            out.extend(std::iter::repeat_n(' ', width * depth));
        }
    }

    /// A JSON string as Python writes it: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other
    /// control characters as `\u00XX`, and with `ensure_ascii` every non-ASCII character as
    /// `\uXXXX` (UTF-16, surrogate pairs above the BMP).
    fn string(&self, text: &str, out: &mut String) {
        use std::fmt::Write;
        out.push('"');
        for c in text.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !c.is_ascii()) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A number as Python's `json.dumps` writes it: integers as digits, floats as Python's
/// `repr` (`3.0`, `2.5`, `1e+20`, `1e-05`), `NaN` / `Infinity` as Python writes them.
fn python_number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 || (1e-4..1e16).contains(&f.abs()) {
        // Rust's shortest round-trip digits, as Python's repr, with `.0` when whole.
        let text = format!("{f}");
        return if text.contains('.') {
            text
        } else {
            format!("{text}.0")
        };
    }
    let text = format!("{f:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.abs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, context: Value) -> String {
        let mut env = Environment::new();
        env.add_filter("tojson", tojson);
        env.render_str(template, context).unwrap()
    }

    #[test]
    fn tojson_writes_what_python_json_dumps_writes() {
        let value = minijinja::context! {
            name => "get_weather",
            text => "é \"q\" \\ \n\t\u{1}<&>",
            list => vec![Value::from(1), Value::from(2.5), Value::from(3.0), Value::from(())],
            flag => true,
            empty => Vec::<Value>::new(),
        };
        // json.dumps(value, ensure_ascii=False)
        assert_eq!(
            render(
                "{{ v | tojson }}",
                minijinja::context! { v => value.clone() }
            ),
            r#"{"name": "get_weather", "text": "é \"q\" \\ \n\t\u0001<&>", "list": [1, 2.5, 3.0, null], "flag": true, "empty": []}"#
        );
        // json.dumps(value, ensure_ascii=False, indent=2)
        assert_eq!(
            render(
                "{{ v.list | tojson(indent=2) }}",
                minijinja::context! { v => value.clone() }
            ),
            "[\n  1,\n  2.5,\n  3.0,\n  null\n]"
        );
        // json.dumps({"b": 1, "a": "é"}, sort_keys=True, ensure_ascii=True, separators=(",", ":"))
        assert_eq!(
            render(
                "{{ v | tojson(sort_keys=true, ensure_ascii=true, separators=[',', ':']) }}",
                minijinja::context! { v => minijinja::context! { b => 1, a => "é😀" } }
            ),
            r#"{"a":"\u00e9\ud83d\ude00","b":1}"#
        );
        // json.dumps([1e20, 1e-5, 0.0001, 123456789012345678.0, -0.0, 1.5])
        let floats = [1e20, 1e-5, 0.0001, 123456789012345678.0, -0.0, 1.5].map(Value::from);
        assert_eq!(
            render("{{ v | tojson }}", minijinja::context! { v => floats }),
            "[1e+20, 1e-05, 0.0001, 1.2345678901234568e+17, -0.0, 1.5]"
        );
    }
}
