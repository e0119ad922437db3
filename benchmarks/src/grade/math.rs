//! MATH answers: the last brace-balanced `\boxed{}` (or `\fbox{}`), the standard MATH string
//! normalisation (Hendrycks et al. 2021, `strip_string`, plus a few common extras), then
//! comparison: equal strings; tuples and intervals element by element; numbers exactly
//! when both are plain integers or decimals (13536 is not 13535); a relative tolerance of
//! 1e-4 only when one side is a fraction, root or constant evaluated to a decimal.

use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use rust_decimal::Decimal;

use super::Verdict;
use super::math_eval::evaluate;

/// Relative tolerance for a decimal against an evaluated fraction, root or constant.
pub const RELATIVE_TOLERANCE: f64 = 1e-4;

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
static SIMPLE_RATIO: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^(-?\d+)/(\d+)$").unwrap());

/// The standard MATH normalisation of an answer string.
pub fn normalize(answer: &str) -> String {
    let mut s = answer.replace('\n', "").replace("\\!", "");
    s = s.replace("\\\\", "\\");
    for (from, to) in [
        ("tfrac", "frac"),
        ("dfrac", "frac"),
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
    // "x = 5" / "k=5": a short variable name before a single `=` is dropped.
    if let Some((lhs, rhs)) = s.split_once('=')
        && !rhs.contains('=')
        && lhs.trim().len() <= 2
    {
        s = rhs.to_string();
    }
    s = SQRT_BARE.replace_all(&s, "\\sqrt{$1}").into_owned();
    s.retain(|c| !c.is_whitespace());
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
    if let (Some((open_a, items_a, close_a)), Some((open_b, items_b, close_b))) =
        (split_tuple(a), split_tuple(b))
    {
        let same_shape = open_a == open_b && close_a == close_b && items_a.len() == items_b.len();
        let all = same_shape
            && items_a
                .iter()
                .zip(&items_b)
                .all(|(x, y)| x == y || numbers_equal(x, y).is_some_and(|(eq, _)| eq));
        return (all, "elementwise");
    }
    numbers_equal(a, b).unwrap_or((false, "string"))
}

/// Numeric comparison: exact for two plain decimals, tolerant when either side had to be
/// evaluated. None when either side is not a number.
fn numbers_equal(a: &str, b: &str) -> Option<(bool, &'static str)> {
    if let (Ok(x), Ok(y)) = (Decimal::from_str(a), Decimal::from_str(b)) {
        return Some((x == y, "numeric-exact"));
    }
    let (x, y) = (evaluate(a)?, evaluate(b)?);
    let scale = x.abs().max(y.abs());
    let close = (x - y).abs() <= RELATIVE_TOLERANCE * scale;
    Some((close, "numeric-tolerance"))
}

/// `(a,b)` / `[a,b)` / `\{a,b\}`-like: (opening bracket, items, closing bracket), split on
/// top-level commas. None unless it has at least two items.
fn split_tuple(s: &str) -> Option<(char, Vec<String>, char)> {
    let open = s.chars().next().filter(|c| matches!(c, '(' | '['))?;
    let close = s.chars().last().filter(|c| matches!(c, ')' | ']'))?;
    let inner = &s[1..s.len() - 1];
    let mut items = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(inner[start..i].to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(inner[start..].to_string());
    (items.len() >= 2).then_some((open, items, close))
}

/// Grades a response against the gold answer (already extracted from its `\boxed{}`).
pub fn grade(response: &str, gold: &str) -> Verdict {
    let Some(raw) = last_boxed(response) else {
        return Verdict::no_answer("no-boxed");
    };
    let normalized = normalize(raw);
    let (correct, rule) = equivalent(&normalized, &normalize(gold));
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
        ];
        for (input, expected) in cases {
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
        assert_eq!(v.rule, "boxed/elementwise");
    }

    #[test]
    fn no_box_no_answer() {
        let v = grade("the answer is 5", "5");
        assert!(!v.correct && v.extracted.is_none());
    }
}
