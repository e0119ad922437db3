//! `--help` explains every subcommand and flag. (This file also makes `cargo test
//! --workspace` build the `harness` binary that the end-to-end tests in `tests/` drive.)

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_subcommand_and_flag_is_explained() {
    let top = help(&[]);
    for sub in ["prompt", "grade", "tasks", "bench", "train"] {
        assert!(top.contains(sub), "{top}");
    }
    for (sub, flags) in [
        (
            "grade",
            &[
                "--task",
                "--input",
                "--gold",
                "--split",
                "--output",
                "--show-failures",
                "--sandbox-parallel",
                "--sandbox-timeout",
                "--sandbox-memory-mb",
                "--data-dir",
                "--arith-seed",
            ][..],
        ),
        (
            "prompt",
            &[
                "--task",
                "--id",
                "--split",
                "--template",
                "--style",
                "--json",
            ][..],
        ),
        (
            "train",
            &[
                "--method",
                "--data",
                "--eval-data",
                "--model",
                "--ref",
                "--tokenizer",
                "--out",
                "--full",
                "--lora-rank",
                "--lora-alpha",
                "--lora-dropout",
                "--lora-targets",
                "--lr",
                "--epochs",
                "--batch-size",
                "--grad-accum",
                "--warmup-ratio",
                "--schedule",
                "--max-grad-norm",
                "--weight-decay",
                "--seed",
                "--max-len",
                "--beta",
                "--label-smoothing",
                "--nll-weight",
                "--gguf-type",
                "--export-hf",
                "--threads",
            ][..],
        ),
    ] {
        let text = help(&[sub]);
        for flag in flags {
            let line = text
                .lines()
                .position(|l| l.trim_start().starts_with(flag) || l.contains(&format!(", {flag}")))
                .unwrap_or_else(|| panic!("{sub} {flag} missing:\n{text}"));
            // The flag's line or the next one carries a description.
            let described = text.lines().skip(line).take(2).any(|l| {
                l.split_whitespace()
                    .filter(|w| !w.starts_with('-') && !w.starts_with('<'))
                    .count()
                    > 2
            });
            assert!(described, "{sub} {flag} has no description:\n{text}");
        }
    }
}
