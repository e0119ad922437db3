//! The bootstrap intervals and McNemar p-values against scipy and statsmodels
//! (`fixtures/stats.json`, made by `scripts/make-stats-fixture.sh`: scipy 1.17's
//! `bootstrap(method="percentile")` with 20,000 resamples, statsmodels 0.15's exact
//! `mcnemar`). The resamples differ from scipy's, so an interval end must agree within the
//! Monte Carlo error: 0.005 for a continuous statistic (measured: at most 0.0012 apart), one
//! step of the grid (1/n) for a share of n 0/1 outcomes, whose quantiles jump by 1/n
//! (measured: equal). The p-values must agree to 1e-12 (and 1e-9 relative).

use results::stats::{Bootstrap, Statistic, Units, interval, mcnemar_exact, paired_change};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/stats.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn ids(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i}")).collect()
}

fn is_binary(values: &[f64]) -> bool {
    values.iter().all(|v| *v == 0.0 || *v == 1.0)
}

#[test]
fn intervals_agree_with_scipy() {
    let fixture = fixture();
    let bootstrap = Bootstrap {
        resamples: fixture["resamples"].as_u64().unwrap() as u32,
        seed: 1,
    };
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (ours, value, tolerance) = match case["kind"].as_str().unwrap() {
            "mean" => {
                let values = floats(&case["values"]);
                let n = values.len();
                let step = if is_binary(&values) {
                    1.0 / n as f64
                } else {
                    0.005
                };
                let units = Units::mean(ids(n), values);
                (interval(&units, bootstrap, name), units.value(), step)
            }
            "ratio" => {
                let (num, den) = (floats(&case["num"]), floats(&case["den"]));
                let units = Units {
                    ids: ids(num.len()),
                    statistic: Statistic::Ratio { num, den },
                };
                (interval(&units, bootstrap, name), units.value(), 0.005)
            }
            "paired" => {
                let (before, after) = (floats(&case["before"]), floats(&case["after"]));
                let n = before.len();
                let binary = is_binary(&before) && is_binary(&after);
                let step = if binary { 1.0 / n as f64 } else { 0.005 };
                let change = paired_change(
                    &Units::mean(ids(n), before),
                    &Units::mean(ids(n), after),
                    binary,
                    bootstrap,
                    name,
                )
                .unwrap();
                (change.interval, Some(change.delta), step)
            }
            other => panic!("unknown case kind {other}"),
        };
        let expected = case["value"].as_f64().unwrap();
        assert!((value.unwrap() - expected).abs() < 1e-12, "{name}: value");
        let (low, high) = ours.unwrap_or_else(|| panic!("{name}: no interval"));
        let reference = floats(&case["interval"]);
        println!(
            "{name}: ours [{low:.5}, {high:.5}] scipy [{:.5}, {:.5}] (tolerance {tolerance:.4})",
            reference[0], reference[1]
        );
        assert!(
            (low - reference[0]).abs() <= tolerance + 1e-12
                && (high - reference[1]).abs() <= tolerance + 1e-12,
            "{name}: [{low}, {high}] vs scipy {reference:?}"
        );
    }
}

#[test]
fn mcnemar_agrees_with_statsmodels() {
    for table in fixture()["mcnemar"].as_array().unwrap() {
        let gained = table["gained"].as_u64().unwrap();
        let lost = table["lost"].as_u64().unwrap();
        let expected = table["p_value"].as_f64().unwrap();
        let ours = mcnemar_exact(gained, lost);
        // Absolute 1e-12, and relative 1e-9 for the tiny ones (4e-10).
        assert!(
            (ours - expected).abs() <= 1e-12 && (ours / expected - 1.0).abs() < 1e-9,
            "gained {gained}, lost {lost}: {ours} vs {expected}"
        );
    }
}

/// The paired change of greedy outcomes takes its p-value from McNemar's test on exactly the
/// problems that changed.
#[test]
fn paired_binary_change_uses_mcnemar() {
    let fixture = fixture();
    let case = &fixture["cases"].as_array().unwrap()[4];
    let (before, after) = (floats(&case["before"]), floats(&case["after"]));
    let gained = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| **b == 0.0 && **a == 1.0)
        .count();
    let lost = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| **b == 1.0 && **a == 0.0)
        .count();
    let n = before.len();
    let change = paired_change(
        &Units::mean(ids(n), before),
        &Units::mean(ids(n), after),
        true,
        Bootstrap::default(),
        "row",
    )
    .unwrap();
    assert_eq!(
        change.p_value,
        Some(mcnemar_exact(gained as u64, lost as u64))
    );
    assert_eq!(change.n, n);
}
