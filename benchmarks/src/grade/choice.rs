//! CommonsenseQA: which option letter (A-E) a response chose.
//!
//! Rules, first match wins: "the answer is (X)"; a parenthesised letter "(X)" / "X)"; a
//! bare letter that ends the response; the option text that appears last; the last
//! standalone capital A-E anywhere (SPEC.md's fallback).

use std::sync::LazyLock;

use regex::Regex;

use super::Verdict;

static ANSWER_IS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i:answer\s+is)\s*:?\s*\(?\s*([A-E])\b").unwrap());
static PAREN: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\(([A-E])\)|\b([A-E])\)").unwrap());
static FINAL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?:^|[^A-Za-z])([A-E])[\s.:\])]*$").unwrap());
static STANDALONE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b([A-E])\b").unwrap());

/// Finds the chosen letter: (letter, rule).
pub fn extract(response: &str, choices: &[(char, String)]) -> Option<(char, &'static str)> {
    let letter = |c: regex::Captures| {
        c.iter()
            .skip(1)
            .flatten()
            .next()
            .and_then(|m| m.as_str().chars().next())
    };
    if let Some(c) = ANSWER_IS.captures_iter(response).last() {
        return letter(c).map(|l| (l, "answer-is"));
    }
    if let Some(c) = PAREN.captures_iter(response).last() {
        return letter(c).map(|l| (l, "letter-paren"));
    }
    if let Some(c) = FINAL.captures(response.trim()) {
        return letter(c).map(|l| (l, "final-letter"));
    }
    if let Some(l) = last_option_text(response, choices) {
        return Some((l, "option-text"));
    }
    STANDALONE
        .captures_iter(response)
        .last()
        .and_then(letter)
        .map(|l| (l, "last-letter"))
}

/// The option whose text (whole words, any case) appears last in the response.
fn last_option_text(response: &str, choices: &[(char, String)]) -> Option<char> {
    let lower = response.to_lowercase();
    choices
        .iter()
        .filter_map(|(label, text)| {
            let pattern = format!(r"\b{}\b", regex::escape(&text.to_lowercase()));
            let re = Regex::new(&pattern).ok()?;
            re.find_iter(&lower).last().map(|m| (m.end(), *label))
        })
        .max()
        .map(|(_, label)| label)
}

/// Grades a response against the gold letter.
pub fn grade(response: &str, gold: &str, choices: &[(char, String)]) -> Verdict {
    match extract(response, choices) {
        None => Verdict::no_answer("no-choice"),
        Some((letter, rule)) => Verdict {
            correct: gold.trim().len() == 1 && gold.trim().starts_with(letter),
            extracted: Some(letter.to_string()),
            normalized: Some(letter.to_string()),
            rule: rule.to_string(),
            detail: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Vec<(char, String)> {
        ["bank", "library", "department store", "mall", "new york"]
            .iter()
            .zip('A'..='E')
            .map(|(t, l)| (l, t.to_string()))
            .collect()
    }

    fn pick(text: &str) -> Option<(char, &'static str)> {
        extract(text, &opts())
    }

    #[test]
    fn each_rule_positive() {
        assert_eq!(pick("So the answer is (B)."), Some(('B', "answer-is")));
        assert_eq!(pick("THE ANSWER IS: D"), Some(('D', "answer-is")));
        assert_eq!(pick("I pick C) because"), Some(('C', "letter-paren")));
        assert_eq!(pick("Option (E) fits best"), Some(('E', "letter-paren")));
        assert_eq!(pick("Best option:\nD"), Some(('D', "final-letter")));
        assert_eq!(
            pick("You would find it at a department store."),
            Some(('C', "option-text"))
        );
        assert_eq!(
            pick("B seems plausible, let me think more about it"),
            Some(('B', "last-letter"))
        );
    }

    #[test]
    fn each_rule_negative() {
        // A lowercase article is not an option letter; words are matched whole.
        assert_eq!(pick("a small thing"), None);
        assert_eq!(pick("nothing fits"), None);
        // Only a capital letter is an option: "the answer is a ..." names no letter.
        assert_eq!(
            pick("The answer is a department store"),
            Some(('C', "option-text"))
        );
        // "The answer is" wins over an earlier parenthesised letter.
        assert_eq!(pick("(A) is wrong, the answer is C").unwrap().0, 'C');
        assert!(!grade("The answer is A.", "B", &opts()).correct);
        assert!(grade("The answer is B.", "B", &opts()).correct);
    }

    #[test]
    fn latest_option_text_wins() {
        assert_eq!(pick("not the bank but the library").unwrap().0, 'B');
    }
}
