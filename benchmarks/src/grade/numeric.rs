//! GSM8K-style numeric answers (gsm8k, svamp, arith): the number after the last `####`,
//! else the last number of the text, compared as exact decimals.

use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;
use rust_decimal::Decimal;

use super::Verdict;

/// A number as written in text: optional sign and `$`, thousands commas only in groups of
/// three (so `1,2,3` is three numbers), optional decimal part (a trailing `.` is not one).
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?").unwrap());

/// Rule names recorded in verdicts.
pub const AFTER_HASHES: &str = "after-hashes";
pub const LAST_NUMBER: &str = "last-number";
pub const HEDGED: &str = "hedged";

/// Finds the answer a response gives: (raw text, rule).
pub fn extract(text: &str) -> Option<(String, &'static str)> {
    if let Some((_, tail)) = text.rsplit_once("####")
        && let Some(first) = numbers(tail).next()
    {
        return Some((first, AFTER_HASHES));
    }
    numbers(text).last().map(|n| (n, LAST_NUMBER))
}

fn numbers(text: &str) -> impl Iterator<Item = String> + '_ {
    NUMBER
        .find_iter(text)
        .map(move |m| signed(text, &m).to_string())
}

/// A match of [`NUMBER`] in `text`: in `5-3` the minus is an operator, not a sign.
fn signed<'t>(text: &'t str, m: &regex::Match<'t>) -> &'t str {
    let glued = text[..m.start()]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric());
    match glued {
        true => m.as_str().trim_start_matches('-'),
        false => m.as_str(),
    }
}

/// The canonical decimal form of a number: commas, `$` and a trailing `.` ignored, trailing
/// zeros dropped (`$1,000.00` -> `1000`). None when it is not a number.
pub fn normalize(raw: &str) -> Option<String> {
    let cleaned: String = raw
        .trim()
        .trim_end_matches('.')
        .chars()
        .filter(|c| !matches!(c, ',' | '$'))
        .collect();
    Decimal::from_str(&cleaned)
        .ok()
        .map(|d| d.normalize().to_string())
}

/// The distinct values a response gives after its `####` marks, when there is more than
/// one: the numbers on the line that follows each mark (`#### 18 or 20`, `#### 18, 20`, two
/// `####` lines that disagree). An exponent (`m^2`) is not an answer. None for one value.
fn hedge(text: &str) -> Option<(String, Vec<String>)> {
    let mut lines = Vec::new();
    let mut values: Vec<String> = Vec::new();
    for segment in text.split("####").skip(1) {
        let line = segment.split('\n').next().unwrap_or_default();
        let exponent = |m: &regex::Match| line[..m.start()].ends_with('^');
        let numbers = NUMBER.find_iter(line).filter(|m| !exponent(m));
        let found: Vec<String> = numbers
            .filter_map(|m| normalize(signed(line, &m)))
            .collect();
        if !found.is_empty() {
            lines.push(format!("#### {}", line.trim()));
        }
        for value in found {
            if !values.contains(&value) {
                values.push(value);
            }
        }
    }
    (values.len() > 1).then(|| (lines.join(" / "), values))
}

/// Grades a response against the gold answer. A response that offers several values after
/// its `####` marks is wrong (`hedged`), whichever of them the gold is.
pub fn grade(response: &str, gold: &str) -> Verdict {
    let Some(gold) = normalize(gold) else {
        return Verdict::no_answer("gold-not-a-number");
    };
    if let Some((raw, values)) = hedge(response) {
        return Verdict {
            correct: false,
            extracted: Some(raw),
            normalized: Some(values.join(", ")),
            rule: HEDGED.to_string(),
            detail: None,
        };
    }
    match extract(response) {
        None => Verdict::no_answer("no-number"),
        Some((raw, rule)) => {
            let normalized = normalize(&raw);
            Verdict {
                correct: normalized.as_deref() == Some(gold.as_str()),
                extracted: Some(raw),
                normalized,
                rule: rule.to_string(),
                detail: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_hashes_wins_over_later_numbers() {
        assert_eq!(
            extract("3+4=7\n#### 7\nthen 9"),
            Some(("7".into(), AFTER_HASHES))
        );
        assert_eq!(
            extract("so 12 apples, 15"),
            Some(("15".into(), LAST_NUMBER))
        );
        assert_eq!(extract("no digits here"), None);
        // `####` with no number after it falls back to the last number of the text.
        assert_eq!(extract("it is 4\n####"), Some(("4".into(), LAST_NUMBER)));
    }

    #[test]
    fn commas_dollars_and_trailing_dots_are_ignored_exactly() {
        for same in ["1,000", "$1000.00", "1000", "1000.", "#### $1,000.00."] {
            assert!(grade(same, "1000").correct, "{same}");
        }
        assert!(!grade("1000.5", "1000").correct);
        assert!(!grade("13535", "13536").correct);
        assert!(grade("#### 1,080", "1,080").correct);
    }

    #[test]
    fn signs_only_when_not_an_operator() {
        assert_eq!(extract("#### -5").unwrap().0, "-5");
        assert_eq!(extract("10-5").unwrap().0, "5");
        assert!(grade("The loss is -3.", "-3").correct);
        assert!(!grade("The loss is 3.", "-3").correct);
    }

    #[test]
    fn list_commas_are_not_thousands_separators() {
        assert_eq!(extract("1,2,3").unwrap().0, "3");
        assert_eq!(normalize("0.50"), Some("0.5".into()));
        assert_eq!(normalize("abc"), None);
    }

    #[test]
    fn several_values_after_the_hashes_are_a_hedge() {
        for hedged in [
            "#### 18 or 20",
            "#### 18, 20",
            "#### either 20 or 18",
            "So 18.\n#### 18\nor maybe\n#### 20",
            "#### 20 (or 18 if she kept one)",
        ] {
            for gold in ["18", "20"] {
                let v = grade(hedged, gold);
                assert!(!v.correct, "{hedged} for {gold}: {v:?}");
                assert_eq!(v.rule, HEDGED, "{hedged}");
            }
        }
        assert_eq!(
            grade("#### 18 or 20", "18").normalized.as_deref(),
            Some("18, 20")
        );
        // One value, however often or however written, is an answer.
        for single in [
            "#### 18\n#### 18",
            "#### $18.00",
            "#### 18 m^2",
            "#### 18 dollars",
        ] {
            assert!(grade(single, "18").correct, "{single}");
        }
        // Without `####` the last number answers, hedge or not.
        assert!(grade("It is 18 or 20", "20").correct);
    }

    #[test]
    fn no_number_is_none_not_a_sentinel() {
        let v = grade("I do not know", "3");
        assert!(!v.correct && v.extracted.is_none() && v.normalized.is_none());
        assert_eq!(v.rule, "no-number");
    }
}
