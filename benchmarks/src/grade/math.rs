//! MATH answers: the last brace-balanced `\boxed{}` (or `\fbox{}`), the standard MATH string
//! normalisation (Hendrycks et al. 2021, `strip_string`, plus a few common extras), then
//! comparison: equal strings, else both answers parsed into trees ([`math_parse`]) and
//! compared as a mathematician would ([`math_equiv`]): containers structurally, numbers
//! exactly, closed forms numerically, expressions with variables at seeded random points.
//!
//! [`math_parse`]: super::math_parse
//! [`math_equiv`]: super::math_equiv

use std::sync::LazyLock;

use regex::Regex;

use super::Verdict;
use super::math_equiv::compare;
use super::math_parse::parse;

/// The content of the last `\boxed{...}` / `\fbox{...}` (braces balanced), or of the
/// `\boxed 5` form.
pub fn last_boxed(text: &str) -> Option<&str> {
    let start = ["\\boxed", "\\fbox"]
        .iter()
        .filter_map(|cmd| text.rfind(cmd).map(|i| i + cmd.len()))
        .max()?;
    let rest = &text[start..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut depth = 1;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(&inner[..i]);
                    }
                }
                _ => {}
            }
        }
        None
    } else if let Some(inner) = rest.strip_prefix(' ') {
        let end = inner.find(['$', '\n']).unwrap_or(inner.len());
        Some(inner[..end].trim())
    } else {
        None
    }
}

static SQRT_BARE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\\sqrt(\w)").unwrap());
static TEXT_WRAP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\\(?:text|textbf|mbox|mathrm|mathbf)\{([^{}]*)\}").unwrap());
static THOUSANDS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^-?\d{1,3}(?:,\d{3})+(?:\.\d+)?$").unwrap());
static DOUBLED_COMMAND: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(^|[^\\])\\\\([a-zA-Z])").unwrap());
static MEMBER_OF: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^\s*[a-zA-Z]\s*\\in\b").unwrap());
/// Stands for a matrix row break (two backslashes) while spacing commands are removed.
const ROW_BREAK: &str = "\u{1}";
static SIMPLE_RATIO: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(-?\d+)/(\d+)$").unwrap());

/// The standard MATH normalisation of an answer string.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.replace('\n', "").replace("\\!", "");
    // A doubled backslash before a command is an escaping slip (`\\frac`); elsewhere it is
    // a matrix row break and stays.
    s = DOUBLED_COMMAND.replace_all(&s, r"$1\$2").into_owned();
    // Row breaks are set aside so that the spacing rules below (`\ `) cannot split them.
    s = s.replace("\\\\", ROW_BREAK);
    s = s.replace("{,}", ",");
    for (from, to) in [
        ("tfrac", "frac"),
        ("dfrac", "frac"),
        ("cfrac", "frac"),
        ("bmatrix", "pmatrix"),
        ("\\left", ""),
        ("\\right", ""),
    ] {
        s = s.replace(from, to);
    }
    for spacing in ["\\displaystyle", "\\,", "\\;", "\\:", "\\ "] {
        s = s.replace(spacing, "");
    }
    for degree in ["^{\\circ}", "^\\circ"] {
        s = s.replace(degree, "");
    }
    s = s.replace("\\$", "").replace('$', "");
    // Units: everything from a `\text{ ` (note the space) on is a unit (Hendrycks).
    for unit in ["\\text{ ", "\\mbox{ "] {
        if let Some(i) = s.find(unit)
            && i > 0
        {
            s.truncate(i);
        }
    }
    s = TEXT_WRAP.replace_all(&s, "$1").into_owned();
    s = s.replace("\\%", "").replace('%', "");
    s = s.replace(" .", " 0.").replace("{.", "{0.");
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    // "x = 5" / "k=5" / "x \in [-2,7]": a short variable name before a single `=` or
    // `\in` is dropped.
    if let Some((lhs, rhs)) = s.split_once('=')
        && !rhs.contains('=')
        && lhs.trim().len() <= 2
    {
        s = rhs.to_string();
    }
    s = MEMBER_OF.replace(&s, "").into_owned();
    s = SQRT_BARE.replace_all(&s, "\\sqrt{$1}").into_owned();
    s.retain(|c| !c.is_whitespace());
    s = s.replace(ROW_BREAK, "\\\\");
    s = fix_fracs(&s);
    s = s.trim_end_matches('.').to_string();
    if s == "0.5" {
        s = "\\frac{1}{2}".into();
    }
    if THOUSANDS.is_match(&s) {
        s.retain(|c| c != ',');
    }
    if let Some(c) = SIMPLE_RATIO.captures(&s) {
        s = format!("\\frac{{{}}}{{{}}}", &c[1], &c[2]);
    }
    s
}

/// `\frac12` -> `\frac{1}{2}`, `\frac1{2}` -> `\frac{1}{2}`, `\frac{1}2` -> `\frac{1}{2}`.
fn fix_fracs(s: &str) -> String {
    let mut parts = s.split("\\frac");
    let mut out = parts.next().unwrap_or_default().to_string();
    for part in parts {
        out.push_str("\\frac");
        let mut rest = part;
        for _ in 0..2 {
            if rest.starts_with('{') {
                match matching_brace(rest) {
                    Some(end) => {
                        out.push_str(&rest[..=end]);
                        rest = &rest[end + 1..];
                    }
                    None => break,
                }
            } else if let Some(command) = rest.strip_prefix('\\') {
                // `\frac\pi4`: a whole command is the argument.
                let end = 1 + command
                    .find(|ch: char| !ch.is_ascii_alphabetic())
                    .unwrap_or(command.len());
                out.push('{');
                out.push_str(&rest[..end]);
                out.push('}');
                rest = &rest[end..];
            } else if let Some(c) = rest.chars().next() {
                out.push('{');
                out.push(c);
                out.push('}');
                rest = &rest[c.len_utf8()..];
            }
        }
        out.push_str(rest);
    }
    out
}

/// Index of the `}` that closes the `{` at the start of `s`.
pub(crate) fn matching_brace(s: &str) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// How two normalised answers were found equal or not.
fn equivalent(a: &str, b: &str) -> (bool, &'static str) {
    if a == b {
        return (true, "string");
    }
    tree_equivalent(a, b).unwrap_or((false, "string"))
}

/// Two answers (raw, as inside `\boxed{}`) compared as trees, without the shortcut of equal
/// strings; None when either is outside the parser's grammar.
pub fn same_answer(a: &str, b: &str) -> Option<(bool, &'static str)> {
    tree_equivalent(&normalize(a), &normalize(b))
}

fn tree_equivalent(a: &str, b: &str) -> Option<(bool, &'static str)> {
    Some(compare(parse(a)?, parse(b)?))
}

/// Words and symbols that join alternatives: `or`, `and`, `either` (as words, usually in
/// `\text{}`), `\lor`, `\vee`.
static CONNECTIVE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\\(?:lor|vee)\b|(?:^|[^a-z\\])(?:or|and|either)(?:[^a-z]|$)").unwrap()
});
/// A connective with its `\text{}` wrapper and a comma before it, for [`as_list`].
static CONNECTIVE_SPAN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\s*,?\s*(?:\\(?:text|mbox|textbf|mathrm)\{\s*(?:either|or|and)?\s*(?:or|and)?\s*\}|\\(?:lor|vee)\b|\b(?:or|and)\b)\s*",
    )
    .unwrap()
});
static EITHER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:\\(?:text|mbox|textbf|mathrm)\{\s*either\s*\}|\beither\b)\s*").unwrap()
});

/// Whether an answer offers alternatives (`\frac{14}{3} \text{ or } \frac{3}{14}`).
fn offers_alternatives(answer: &str) -> bool {
    CONNECTIVE.is_match(answer)
}

/// The answer with its connectives as commas: `7, -2, \text{ and } -5` -> `7, -2,-5`.
fn as_list(answer: &str) -> String {
    let without_either = EITHER.replace_all(answer, "");
    CONNECTIVE_SPAN
        .replace_all(&without_either, ",")
        .trim_matches(',')
        .to_string()
}

/// Whether a (normalised) gold answer is a collection of values: a list with a top-level
/// comma, a set, or a `\pm` pair. A tuple or interval is one value.
fn is_collection(gold: &str) -> bool {
    let mut depth = 0i32;
    for c in gold.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => return true,
            _ => {}
        }
    }
    gold.starts_with("\\{") || gold.contains("\\pm") || gold.contains("\\mp")
}

/// Grades a response against the gold answer (already extracted from its `\boxed{}`). An
/// answer that offers alternatives is wrong (`boxed/hedged`) unless the gold is itself a
/// collection, which the alternatives are then compared with as a list.
pub fn grade(response: &str, gold: &str) -> Verdict {
    let Some(raw) = last_boxed(response) else {
        return Verdict::no_answer("no-boxed");
    };
    let gold = match offers_alternatives(gold) {
        true => normalize(&as_list(gold)),
        false => normalize(gold),
    };
    if offers_alternatives(raw) {
        let normalized = normalize(&as_list(raw));
        let (correct, rule) = match is_collection(&gold) {
            true => equivalent(&normalized, &gold),
            false => (false, "hedged"),
        };
        return Verdict {
            correct,
            extracted: Some(raw.to_string()),
            normalized: Some(normalized),
            rule: format!("boxed/{rule}"),
            detail: None,
        };
    }
    let normalized = normalize(raw);
    let (correct, rule) = equivalent(&normalized, &gold);
    Verdict {
        correct,
        extracted: Some(raw.to_string()),
        normalized: Some(normalized),
        rule: format!("boxed/{rule}"),
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_boxed_is_brace_balanced_and_last() {
        assert_eq!(
            last_boxed(r"\boxed{1} then \boxed{\frac{1}{2}}."),
            Some(r"\frac{1}{2}")
        );
        assert_eq!(last_boxed(r"so \fbox{7}"), Some("7"));
        assert_eq!(last_boxed(r"$\boxed 5$"), Some("5"));
        assert_eq!(last_boxed(r"\boxed{unclosed"), None);
        assert_eq!(last_boxed("no box"), None);
    }

    #[test]
    fn normalisation_rules() {
        let cases = [
            (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
            (r"\dfrac{14}{3}", r"\frac{14}{3}"),
            (r"\tfrac12", r"\frac{1}{2}"),
            (r"\frac1{2}", r"\frac{1}{2}"),
            (r"10\text{ cm}", "10"),
            (r"\text{(B)}", "(B)"),
            (r"90^\circ", "90"),
            (r"45^{\circ}", "45"),
            (r"50\%", "50"),
            ("5.", "5"),
            ("x = 3", "3"),
            (r"\sqrt3", r"\sqrt{3}"),
            ("0.5", r"\frac{1}{2}"),
            ("3/4", r"\frac{3}{4}"),
            ("10,000", "10000"),
            (r"\$18.90", "18.90"),
            (".5", r"\frac{1}{2}"),
            (r"\frac \pi4", r"\frac{\pi}{4}"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input), expected, "{input}");
        }
        for (input, expected) in [
            (r"x \in (2,\infty)", r"(2,\infty)"),
            (
                r"\begin{pmatrix} 1 \\ \frac23 \end{pmatrix}",
                r"\begin{pmatrix}1\\\frac{2}{3}\end{pmatrix}",
            ),
            (r"\\frac{1}{2}", r"\frac{1}{2}"),
        ] {
            assert_eq!(normalize(input), expected, "{input}");
        }
        // Negative: a long left-hand side is not a variable name; tuples keep commas.
        assert_eq!(normalize("y+z=3"), "y+z=3");
        assert_eq!(normalize("(1,2)"), "(1,2)");
    }

    fn same(a: &str, b: &str) -> bool {
        grade(&format!(r"\boxed{{{a}}}"), b).correct
    }

    #[test]
    fn numeric_comparison_exact_or_tolerant() {
        assert!(!same("13535", "13536"));
        assert!(same("13536.0", "13536"));
        assert!(same("0.33333", r"\frac{1}{3}"));
        assert!(!same("0.33", r"\frac{1}{3}"));
        assert!(same("1.41421", r"\sqrt{2}"));
        assert!(same("6.28318", r"2\pi"));
        assert!(same(r"\frac{2}{4}", "0.5"));
        assert!(!same("0.3333", "0.33333"));
        assert!(same(r"2\sqrt{3}", r"\sqrt{12}"));
    }

    #[test]
    fn tuples_and_intervals_elementwise() {
        assert!(same("(0.5, 3)", r"\left(\frac{1}{2},3\right)"));
        assert!(!same("[0.5, 3)", r"(\frac12, 3)"));
        assert!(!same("(1,2,3)", "(1,2)"));
        assert!(same("[2,5)", r"[2, 5)"));
        let v = grade(r"\boxed{(0.5, 3)}", "(1/2,3)");
        assert_eq!(v.rule, "boxed/tuple");
    }

    #[test]
    fn no_box_no_answer() {
        let v = grade("the answer is 5", "5");
        assert!(!v.correct && v.extracted.is_none());
    }
}
