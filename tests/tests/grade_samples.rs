//! `harness grade --input`: grading sample files as another tool would write them, and
//! clear errors for malformed input.

use std::path::Path;

use e2e_tests::{harness, harness_ok, read_jsonl, split_score};
use serde_json::{Value, json};

fn write_lines(path: &Path, lines: &[Value]) {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    std::fs::write(path, text).unwrap();
}

#[test]
fn gsm8k_samples_are_graded_with_rule_and_normal_form() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("samples.jsonl");
    let output = dir.path().join("graded.jsonl");
    // test-0000 is Janet's ducks: the answer is 18.
    write_lines(
        &input,
        &[
            json!({"problem_id": "test-0000", "response": "9 * 2 = 18 dollars.\n#### $18.00", "sample_index": 0}),
            json!({"problem_id": "test-0000", "response": "She makes 16 dollars."}),
            json!({"problem_id": "test-0000", "response": "I cannot tell."}),
        ],
    );
    let out = harness_ok(&[
        "grade",
        "--task",
        "gsm8k",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(split_score(&out, "test"), (1, 3), "{out}");
    let graded = read_jsonl(&output);
    assert_eq!(graded[0]["correct"], true);
    assert_eq!(graded[0]["rule"], "after-hashes");
    assert_eq!(graded[0]["normalized"], "18");
    assert_eq!(graded[0]["sample_index"], 0);
    assert_eq!(graded[1]["correct"], false);
    assert_eq!(graded[1]["rule"], "last-number");
    assert_eq!(graded[2]["rule"], "no-number");
    assert!(graded[2].get("extracted").is_none());
    assert_eq!(graded[2]["task"], "gsm8k");
    assert_eq!(graded[2]["split"], "test");
}

#[test]
fn mbpp_samples_run_in_the_sandbox() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("samples.jsonl");
    let output = dir.path().join("graded.jsonl");
    // Task 11: remove_Occ(s, ch) removes the first and last occurrence of ch.
    let good = "```python\ndef remove_Occ(s, ch):\n    i = s.find(ch)\n    if i >= 0:\n        s = s[:i] + s[i+1:]\n    j = s.rfind(ch)\n    if j >= 0:\n        s = s[:j] + s[j+1:]\n    return s\n```";
    write_lines(
        &input,
        &[
            json!({"problem_id": "11", "response": good}),
            json!({"problem_id": "11", "response": "```python\ndef remove_Occ(s, ch):\n    return s\n```"}),
            json!({"problem_id": "11", "response": "```python\ndef other(s, ch):\n    return s\n```"}),
            json!({"problem_id": "11", "response": "```python\ndef remove_Occ(s, ch):\n    while True:\n        pass\n```"}),
        ],
    );
    let out = harness_ok(&[
        "grade",
        "--task",
        "mbpp",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--sandbox-timeout",
        "2",
    ]);
    assert_eq!(split_score(&out, "test"), (1, 4), "{out}");
    let graded = read_jsonl(&output);
    let detail = |i: usize| graded[i]["grade_detail"].as_str().unwrap_or("").to_string();
    assert!(detail(0).starts_with("pass"), "{}", detail(0));
    assert!(detail(1).starts_with("fail assertion"), "{}", detail(1));
    assert_eq!(graded[2]["rule"], "missing-function");
    assert!(
        detail(3).starts_with("timeout") || detail(3).starts_with("cpu-limit"),
        "{}",
        detail(3)
    );
}

#[test]
fn malformed_sample_file_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(
        &input,
        "{\"problem_id\": \"test-0000\", \"response\": \"#### 18\"}\n{\"problem_id\": \"test-0001\"}\n",
    )
    .unwrap();
    let out = harness(&[
        "grade",
        "--task",
        "gsm8k",
        "--input",
        input.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.jsonl:2:") && err.contains("response"),
        "{err}"
    );

    std::fs::write(&input, "{\"problem_id\": \"nope\", \"response\": \"1\"}\n").unwrap();
    let out = harness(&[
        "grade",
        "--task",
        "gsm8k",
        "--input",
        input.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.jsonl:1: problem_id `nope`"),
        "{err}"
    );

    std::fs::write(
        &input,
        "{\"task\": \"math\", \"problem_id\": \"x\", \"response\": \"1\"}\n",
    )
    .unwrap();
    let out = harness(&[
        "grade",
        "--task",
        "gsm8k",
        "--input",
        input.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.jsonl:1: field `task`"),
        "{err}"
    );
}

#[test]
fn damaged_data_file_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("svamp")).unwrap();
    std::fs::write(dir.path().join("svamp/SVAMP.json"), "[]").unwrap();
    let out = harness(&[
        "grade",
        "--task",
        "svamp",
        "--gold",
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("svamp/SVAMP.json") && err.contains("sha256"),
        "{err}"
    );
}
