//! `harness prompt` prints what a problem is asked with, in chat and plain-text form.

use e2e_tests::{harness, harness_ok};

#[test]
fn csqa_prompt_lists_options_and_answer_format() {
    let out = harness_ok(&[
        "prompt",
        "--task",
        "csqa",
        "--id",
        "1afa02df02c908a558b4036e80242fac",
    ]);
    assert!(out.starts_with("[system]\n"), "{out}");
    assert!(
        out.contains("[user]\nA revolving door is convenient"),
        "{out}"
    );
    assert!(
        out.contains("A. bank\nB. library\nC. department store\nD. mall\nE. new york"),
        "{out}"
    );
    assert!(out.contains("The answer is X."), "{out}");
}

#[test]
fn plain_text_and_json_forms() {
    let text = harness_ok(&[
        "prompt",
        "--task",
        "gsm8k",
        "--id",
        "test-0000",
        "--style",
        "text",
    ]);
    assert!(text.contains("Question: Janet"), "{text}");
    assert!(text.trim_end().ends_with("Answer:"), "{text}");
    let json = harness_ok(&[
        "prompt",
        "--task",
        "math",
        "--id",
        "test/algebra/1.json",
        "--json",
    ]);
    let messages: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(messages[1]["role"], "user");
    assert!(
        messages[1]["content"]
            .as_str()
            .unwrap()
            .contains("\\boxed{}")
    );
    let mbpp = harness_ok(&["prompt", "--task", "mbpp", "--id", "11"]);
    assert!(
        mbpp.contains("assert remove_Occ(\"hello\",\"l\") == \"heo\"")
            && mbpp.contains("```python"),
        "{mbpp}"
    );
}

#[test]
fn arith_prompt_is_reproducible_and_unknown_ids_fail() {
    let a = harness_ok(&[
        "prompt",
        "--task",
        "arith",
        "--id",
        "test-L2-0003",
        "--arith-seed",
        "5",
    ]);
    let b = harness_ok(&[
        "prompt",
        "--task",
        "arith",
        "--id",
        "test-L2-0003",
        "--arith-seed",
        "5",
    ]);
    let c = harness_ok(&[
        "prompt",
        "--task",
        "arith",
        "--id",
        "test-L2-0003",
        "--arith-seed",
        "6",
    ]);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let out = harness(&["prompt", "--task", "arith", "--id", "test-L9-0000"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no problem `test-L9-0000`"));
}
