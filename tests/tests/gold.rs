//! Every task's gold solutions grade as correct through the real binary (MBPP through the
//! real sandbox), with the split sizes of SPEC.md.

use e2e_tests::{harness_ok, split_score};

fn gold(task: &str) -> String {
    harness_ok(&["grade", "--task", task, "--gold", "--show-failures", "20"])
}

#[test]
fn text_tasks_gold_is_fully_correct() {
    let expected: &[(&str, &[(&str, usize)])] = &[
        ("gsm8k", &[("train", 7473), ("test", 1319)]),
        ("math", &[("train", 7500), ("test", 5000), ("math500", 500)]),
        ("csqa", &[("train", 9741), ("dev", 1221)]),
        ("svamp", &[("test", 1000)]),
        ("arith", &[("train", 3000), ("test", 600), ("ood", 400)]),
    ];
    for (task, splits) in expected {
        let out = gold(task);
        for (split, size) in *splits {
            assert_eq!(
                split_score(&out, split),
                (*size, *size),
                "{task} {split}:\n{out}"
            );
        }
    }
}

#[test]
fn mbpp_gold_passes_in_the_sandbox() {
    let out = gold("mbpp");
    for (split, size) in [
        ("train", 374),
        ("validation", 90),
        ("test", 500),
        ("prompt", 10),
    ] {
        assert_eq!(split_score(&out, split), (size, size), "{split}:\n{out}");
    }
}
