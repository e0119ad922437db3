//! MBPP: which program a response contains and which function the tests call. Running the
//! program is the sandbox's job ([`crate::sandbox`]).

use std::sync::LazyLock;

use regex::Regex;

use crate::problem::CodeTests;

static FENCED: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)```[ \t]*(?:[A-Za-z0-9_+-]*)[ \t]*\r?\n(.*?)```").unwrap());
static OPEN_FENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?s)```[ \t]*(?:[A-Za-z0-9_+-]*)[ \t]*\r?\n(.*)$").unwrap());
static CALL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([A-Za-z_][A-Za-z0-9_.]*)\s*\(").unwrap());

/// Calls in an assert that wrap the tested function rather than being it.
const WRAPPERS: &[&str] = &[
    "set",
    "sorted",
    "list",
    "tuple",
    "str",
    "int",
    "float",
    "abs",
    "round",
    "len",
    "bool",
    "dict",
    "frozenset",
    "type",
    "isinstance",
    "all",
    "any",
    "sum",
    "max",
    "min",
    "repr",
    "math.isclose",
    "isclose",
    "math.floor",
    "math.ceil",
    "not",
];

/// The function an MBPP assert line tests: the first call that is not a wrapper, else the
/// first call (MBPP task 126 names its function `sum`).
pub fn called_function(assert_line: &str) -> Option<String> {
    let body = assert_line.trim().strip_prefix("assert")?;
    let calls: Vec<String> = CALL.captures_iter(body).map(|c| c[1].to_string()).collect();
    calls
        .iter()
        .find(|name| !WRAPPERS.contains(&name.as_str()))
        .or(calls.first())
        .cloned()
}

/// The program of a response: (code, rule). A fenced block if there is one (the first
/// that defines the entry point, else the first), an unclosed fence (a truncated reply),
/// else the whole text.
pub fn extract(response: &str, entry_point: &str) -> (String, &'static str) {
    let blocks: Vec<&str> = FENCED
        .captures_iter(response)
        .map(|c| c.get(1).map_or("", |m| m.as_str()))
        .collect();
    if let Some(block) = blocks
        .iter()
        .find(|b| defines(b, entry_point))
        .or(blocks.first())
    {
        return (block.to_string(), "fenced");
    }
    if let Some(c) = OPEN_FENCE.captures(response) {
        return (c[1].to_string(), "fenced-open");
    }
    (response.to_string(), "raw")
}

/// Whether `code` defines `name` (a `def`, a `class`, or a top-level assignment).
pub fn defines(code: &str, name: &str) -> bool {
    let pattern = format!(
        r"(?m)^\s*(?:async\s+)?(?:def|class)\s+{0}\b|^{0}\s*=",
        regex::escape(name)
    );
    Regex::new(&pattern).is_ok_and(|re| re.is_match(code))
}

/// The test program that follows the candidate code: setup, then the asserts.
pub fn test_program(tests: &CodeTests) -> String {
    let mut program = String::new();
    if !tests.setup.trim().is_empty() {
        program.push_str(&tests.setup);
        program.push('\n');
    }
    for line in &tests.asserts {
        program.push_str(line);
        program.push('\n');
    }
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_tested_function_through_wrappers() {
        assert_eq!(
            called_function("assert min_cost([[1]], 2, 2) == 8").as_deref(),
            Some("min_cost")
        );
        assert_eq!(
            called_function("assert set(similar_elements((3, 4), (5, 4))) == set((4,))").as_deref(),
            Some("similar_elements")
        );
        assert_eq!(
            called_function("assert math.isclose(area(2), 12.5, rel_tol=0.001)").as_deref(),
            Some("area")
        );
        assert_eq!(
            called_function("assert sum(10,15) == 6").as_deref(),
            Some("sum")
        );
        assert_eq!(called_function("x = f(1)"), None);
    }

    #[test]
    fn extraction_prefers_the_block_that_defines_the_function() {
        let text =
            "Example:\n```\nprint(1)\n```\nSolution:\n```python\ndef f(x):\n    return x\n```";
        assert_eq!(
            extract(text, "f"),
            ("def f(x):\n    return x\n".into(), "fenced")
        );
        let (code, rule) = extract("```python\ndef f(x):\n    return", "f");
        assert_eq!(
            (code.as_str(), rule),
            ("def f(x):\n    return", "fenced-open")
        );
        assert_eq!(extract("def f(): pass", "f").1, "raw");
    }

    #[test]
    fn definition_check() {
        assert!(defines("def f(x):\n  pass", "f"));
        assert!(defines("class f:\n  pass", "f"));
        assert!(defines("f = lambda x: x", "f"));
        assert!(!defines("def ff(x): pass", "f"));
        assert!(!defines("print(f(1))", "f"));
    }
}
