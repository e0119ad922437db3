//! The names of the metrics: one closed set, so that a plot, a comparison or a table asks
//! only for metrics that are written, and a metrics.csv naming another is refused on reading.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A metric of metrics.csv (SPEC.md defines each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Metric {
    /// Share of problems whose greedy response is correct.
    #[serde(rename = "greedy_pass@1")]
    GreedyPass1,
    /// Unbiased pass@k of the sampled responses.
    #[serde(rename = "pass@k")]
    PassAtK,
    /// M1's pass@k on the improvement set IS(t).
    #[serde(rename = "is_round1_pass@k")]
    ImprovementSetRound1PassAtK,
    /// |IS(t)|: problems solved greedily at round t and not by M1.
    #[serde(rename = "improvement_set_size")]
    ImprovementSetSize,
    #[serde(rename = "coverage_pooled")]
    CoveragePooled,
    #[serde(rename = "coverage_per_question")]
    CoveragePerQuestion,
    /// Distinct-N (syntactic diversity).
    #[serde(rename = "distinct_n")]
    DistinctN,
    /// SentenceBERT diversity (semantic).
    #[serde(rename = "sbert_diversity")]
    SbertDiversity,
    /// Distinct equations (logical diversity).
    #[serde(rename = "distinct_equations")]
    DistinctEquations,
    /// Greedy pass@1 of the easiest group minus the hardest's.
    #[serde(rename = "group_disparity")]
    GroupDisparity,
    /// Share of responses cut at max_tokens.
    #[serde(rename = "max_tokens_share")]
    MaxTokensShare,
    #[serde(rename = "mean_response_tokens")]
    MeanResponseTokens,
}

impl Metric {
    pub const ALL: [Metric; 12] = [
        Metric::GreedyPass1,
        Metric::PassAtK,
        Metric::ImprovementSetRound1PassAtK,
        Metric::ImprovementSetSize,
        Metric::CoveragePooled,
        Metric::CoveragePerQuestion,
        Metric::DistinctN,
        Metric::SbertDiversity,
        Metric::DistinctEquations,
        Metric::GroupDisparity,
        Metric::MaxTokensShare,
        Metric::MeanResponseTokens,
    ];

    /// The name written in metrics.csv.
    pub fn name(self) -> &'static str {
        match self {
            Metric::GreedyPass1 => "greedy_pass@1",
            Metric::PassAtK => "pass@k",
            Metric::ImprovementSetRound1PassAtK => "is_round1_pass@k",
            Metric::ImprovementSetSize => "improvement_set_size",
            Metric::CoveragePooled => "coverage_pooled",
            Metric::CoveragePerQuestion => "coverage_per_question",
            Metric::DistinctN => "distinct_n",
            Metric::SbertDiversity => "sbert_diversity",
            Metric::DistinctEquations => "distinct_equations",
            Metric::GroupDisparity => "group_disparity",
            Metric::MaxTokensShare => "max_tokens_share",
            Metric::MeanResponseTokens => "mean_response_tokens",
        }
    }

    /// Whether the values are shares in [0, 1] (plotted on a unit axis).
    pub fn is_share(self) -> bool {
        matches!(
            self,
            Metric::GreedyPass1
                | Metric::PassAtK
                | Metric::ImprovementSetRound1PassAtK
                | Metric::CoveragePooled
                | Metric::CoveragePerQuestion
                | Metric::MaxTokensShare
        )
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Metric::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
                format!("unknown metric `{s}` (known: {})", known.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.name())
            );
        }
        assert!(
            "pass@4"
                .parse::<Metric>()
                .unwrap_err()
                .contains("unknown metric `pass@4`")
        );
    }
}
