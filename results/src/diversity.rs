//! Syntactic and logical diversity of one question's responses (SPEC.md; the study's
//! Distinct-N and Distinct Equations). Each function takes the response set S of one
//! question; the per-run figure is the mean over questions, taken by the caller.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

/// Distinct-N of a response set: the mean over n = 1..=5 of |unique n-grams in S| / |n-grams
/// in S|, on lower-cased whitespace tokens, n-grams taken within each response. Orders n
/// for which S has no n-gram are left out of the mean. None for fewer than two responses
/// (the study averages over questions with at least two) or when S has no token at all.
pub fn distinct_n(responses: &[&str]) -> Option<f64> {
    if responses.len() < 2 {
        return None;
    }
    let tokenised: Vec<Vec<String>> = responses
        .iter()
        .map(|r| r.split_whitespace().map(str::to_lowercase).collect())
        .collect();
    let ratios: Vec<f64> = (1..=5)
        .filter_map(|n| {
            let mut unique = HashSet::new();
            let mut total = 0usize;
            for tokens in &tokenised {
                for gram in tokens.windows(n) {
                    unique.insert(gram.to_vec());
                    total += 1;
                }
            }
            (total > 0).then(|| unique.len() as f64 / total as f64)
        })
        .collect();
    (!ratios.is_empty()).then(|| ratios.iter().sum::<f64>() / ratios.len() as f64)
}

static ANNOTATION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<<([^<>]*=[^<>]*)>>").unwrap());
static INLINE: LazyLock<Regex> = LazyLock::new(|| {
    let number = r"\d+(?:\.\d+)?";
    Regex::new(&format!(
        r"{number}(?:\s*[-+*/×x]\s*{number})+\s*=\s*{number}"
    ))
    .unwrap()
});

/// The equations of a response: its `<<lhs=rhs>>` annotations, then the inline `a op b = c`
/// spans of the text outside them, each with whitespace removed.
pub fn equations(response: &str) -> Vec<String> {
    let strip = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    let mut found: Vec<String> = ANNOTATION
        .captures_iter(response)
        .map(|c| strip(&c[1]))
        .collect();
    // An annotation breaks the text it stands in, so GSM8K's `16 - 3 - 4 = <<16-3-4=9>>9`
    // counts once, as its annotation.
    let outside = ANNOTATION.replace_all(response, " | ");
    found.extend(INLINE.find_iter(&outside).map(|m| strip(m.as_str())));
    found
}

/// Distinct Equations of a response set: |unique equations in S| / |equations in S|. None
/// for fewer than two responses (the rule of every diversity metric here: a lone response
/// is not diverse or uniform, and counting it as 1.0 would move the mean as the number of
/// correct responses per question shifts across rounds) or when S holds no equation.
pub fn distinct_equations(responses: &[&str]) -> Option<f64> {
    if responses.len() < 2 {
        return None;
    }
    let all: Vec<String> = responses.iter().flat_map(|r| equations(r)).collect();
    let unique: HashSet<&String> = all.iter().collect();
    (!all.is_empty()).then(|| unique.len() as f64 / all.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_n_by_hand() {
        // "a b" and "a c": unigrams {a,b,c} of 4 -> 3/4; bigrams {ab, ac} of 2 -> 1;
        // no trigrams or longer: mean (0.75 + 1) / 2.
        assert_eq!(distinct_n(&["a b", "A c"]), Some(0.875));
        // Identical responses: every order is half unique.
        assert_eq!(distinct_n(&["x y z", "x y z"]), Some(0.5));
        assert_eq!(distinct_n(&["only one"]), None);
        assert_eq!(distinct_n(&["", " "]), None);
    }

    #[test]
    fn equations_from_annotations_and_inline_spans() {
        let text =
            "She sells 16 - 3 - 4 = <<16-3-4=9>>9 eggs. Then 9 * 2 = 18 dollars, 3 x 4 = 12.";
        assert_eq!(equations(text), vec!["16-3-4=9", "9*2=18", "3x4=12"]);
        assert_eq!(equations("no maths here = nothing"), Vec::<String>::new());
    }

    #[test]
    fn distinct_equations_by_hand() {
        let a = "<<2+3=5>> and <<5*2=10>>";
        let b = "<<2 + 3 = 5>> then <<5+5=10>>";
        // {2+3=5, 5*2=10, 5+5=10} unique of 4.
        assert_eq!(distinct_equations(&[a, b]), Some(0.75));
        assert_eq!(distinct_equations(&["none", "either"]), None);
        assert_eq!(distinct_equations(&[a]), None);
        assert_eq!(distinct_equations(&[a, a]), Some(0.5));
    }
}
