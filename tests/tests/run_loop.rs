//! `harness run` on the real default model: two rounds of each method on a handful of arith
//! problems, the run directory and its data sets checked against the graded samples, an
//! external trainer command that trains the same checkpoints, and a run killed at several
//! points that ends byte-identical to an uninterrupted one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use e2e_tests::{
    default_model, harness, harness_bin, harness_ok, read_jsonl, serial, small_loop_args,
};
use serde_json::Value;

/// The small loop of every test here (`e2e_tests::small_loop_args`).
fn args(out: &Path) -> Vec<String> {
    small_loop_args(out)
}

fn run(out: &Path) -> String {
    let args = args(out);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    harness_ok(&refs)
}

/// Runs the loop and kills it (SIGKILL) as soon as `stop` holds; returns whether it was
/// killed (false: it finished first).
fn run_until(out: &Path, stop: impl Fn() -> bool) -> bool {
    let mut child = Command::new(harness_bin())
        .args(args(out))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(900);
    let killed = loop {
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        if stop() || Instant::now() > deadline {
            child.kill().unwrap();
            break true;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    child.wait().unwrap();
    assert!(
        Instant::now() <= deadline,
        "the run did not reach the kill point in 900 s"
    );
    killed
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

/// (problem_id, response) -> (correct, finish_reason) of a sample file.
fn graded(path: &Path) -> HashMap<(String, String), (bool, String)> {
    read_jsonl(path)
        .into_iter()
        .map(|s| {
            (
                (
                    s["problem_id"].as_str().unwrap().to_string(),
                    s["response"].as_str().unwrap().to_string(),
                ),
                (
                    s["correct"].as_bool().expect("graded"),
                    s["finish_reason"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

fn check_directory(dir: &Path) {
    let r1 = dir.join("round-1");
    let gold = read_jsonl(&r1.join("gold.jsonl"));
    assert_eq!(gold.len(), 8);
    for g in &gold {
        assert!(g["completion"].as_str().unwrap().contains("####"), "{g}");
        assert!(g["prompt"].is_array(), "chat prompt: {g}");
    }
    assert_f16_adapter(&r1.join("model/adapter.gguf"));
    assert!(
        !r1.join("model/adapter").exists(),
        "no PEFT adapter/ when the embedded engine samples the rounds (--export-peft)"
    );
    for file in ["eval/arith.test.jsonl", "eval/arith.ood.jsonl"] {
        let samples = read_jsonl(&r1.join(file));
        let problems = if file.contains("test") { 3 } else { 2 };
        assert_eq!(samples.len(), problems * 3, "{file}: greedy + 2 each");
        assert!(samples.iter().all(|s| s["round"] == 1));
    }
    let train = r1.join("train_samples.jsonl");
    assert_eq!(lines(&train), 8 * 4);
    let samples = graded(&train);
    let train_lines = read_jsonl(&train);
    assert!(
        train_lines
            .iter()
            .all(|s| s["split"] == "train" && s["round"] == 1)
    );
    assert!(
        train_lines
            .iter()
            .all(|s| s["seed"].as_u64().unwrap() >= 1234 + 1_000_000),
        "round 1's training samples are seeded seed + 1000000 + j"
    );

    // SFT: correct responses only, never cut at max_tokens, no duplicate within a question.
    let sft = read_jsonl(&dir.join("sft/round-2/data.jsonl"));
    let mut seen = HashSet::new();
    for r in &sft {
        let key = (
            r["problem_id"].as_str().unwrap().to_string(),
            r["completion"].as_str().unwrap().to_string(),
        );
        let (correct, finish) = &samples[&key];
        assert!(*correct && finish == "stop", "{r}");
        assert!(seen.insert(key), "duplicate {r}");
    }
    let correct_stopped: HashSet<_> = samples
        .iter()
        .filter(|(_, (c, f))| *c && f == "stop")
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(
        seen, correct_stopped,
        "every usable correct response is kept"
    );

    // DPO (and SFT-DPO, whose round 2 is DPO's, linked, trained and sampled once): one
    // correct and one incorrect response of the same question per pair, at most 5 pairs a
    // question.
    let dpo = read_jsonl(&dir.join("dpo/round-2/data.jsonl"));
    assert_eq!(
        std::fs::read_link(dir.join("sft-dpo/round-2")).unwrap(),
        Path::new("../dpo/round-2"),
        "SFT-DPO's round 2 is DPO's"
    );
    let phases = std::fs::read_to_string(dir.join("phases.jsonl")).unwrap();
    let sampled: Vec<String> = phases
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|p| p["step"].as_str().unwrap().to_string())
        .collect();
    assert!(
        sampled.contains(&"dpo/round-2".to_string())
            && !sampled.iter().any(|s| s.starts_with("sft-dpo")),
        "round 2 sampled once: {sampled:?}"
    );
    let mut per_question: BTreeMap<String, usize> = BTreeMap::new();
    for p in &dpo {
        let id = p["problem_id"].as_str().unwrap().to_string();
        let chosen = &samples[&(id.clone(), p["chosen"].as_str().unwrap().to_string())];
        let rejected = &samples[&(id.clone(), p["rejected"].as_str().unwrap().to_string())];
        assert!(chosen.0 && !rejected.0, "{p}");
        *per_question.entry(id).or_default() += 1;
    }
    assert!(per_question.values().all(|&n| n <= 5));
    assert!(
        !sft.is_empty() && !dpo.is_empty(),
        "M1 gives a mix of right and wrong answers: {} SFT examples, {} pairs",
        sft.len(),
        dpo.len()
    );

    for method in ["sft", "dpo", "sft-dpo"] {
        let round = dir.join(method).join("round-2");
        assert!(round.join("model/adapter.gguf").exists(), "{method}");
        assert!(
            !round.join("model/model.gguf").exists(),
            "{method}: a LoRA round is sampled as M0 + its adapter; no merged model"
        );
        assert!(!round.join("model/adapter").exists(), "{method}: no PEFT");
        assert!(
            !round.join("train_samples.jsonl").exists(),
            "no sampling after the last round"
        );
        let eval = read_jsonl(&round.join("eval/arith.test.jsonl"));
        assert!(
            eval.iter()
                .all(|s| s["round"] == 2 && s["correct"].is_boolean())
        );
        let model = eval[0]["model"].as_str().unwrap();
        assert!(
            model.contains(".gguf@sha256:") && model.contains("+adapter.gguf@sha256:"),
            "{method}: sampled as M0 + the round's adapter: {model}"
        );
        let rounds = std::fs::read_to_string(dir.join(method).join("rounds.csv")).unwrap();
        let mut reader = csv::Reader::from_reader(rounds.as_bytes());
        let header = reader.headers().unwrap().clone();
        let col = |name: &str| header.iter().position(|h| h == name).unwrap();
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        let test_rounds: Vec<&str> = rows
            .iter()
            .filter(|r| &r[col("split")] == "test")
            .map(|r| &r[col("round")])
            .collect();
        assert_eq!(test_rounds, ["1", "2"], "{method}: {rounds}");
        let coverage = std::fs::read_to_string(dir.join(method).join("coverage.csv")).unwrap();
        assert!(
            coverage.lines().any(|l| l.contains(",train,1,8,32,")),
            "M1's coverage on 8 questions x 4 samples: {coverage}"
        );
        let metrics = std::fs::read_to_string(dir.join(method).join("metrics.csv")).unwrap();
        assert!(
            metrics.contains(",test+ood,") && metrics.contains("group_disparity"),
            "group disparity across test and ood: {method}"
        );
    }
}

/// A llama.cpp LoRA GGUF (the loop's default) holds f16 tensors, the rank-4 adapter of
/// every projection of the 30 layers.
fn assert_f16_adapter(path: &Path) {
    use candle_core::quantized::{GgmlDType, gguf_file};
    let mut file = std::fs::File::open(path).unwrap();
    let content = gguf_file::Content::read(&mut file).unwrap();
    assert_eq!(content.tensor_infos.len(), 30 * 7 * 2, "{}", path.display());
    for (name, info) in &content.tensor_infos {
        assert_eq!(info.ggml_dtype, GgmlDType::F16, "{name}");
    }
}

/// Where to kill a run: a name and a condition on its directory.
type KillPoint<'a> = (&'static str, Box<dyn Fn() -> bool + 'a>);

/// Every file that must be the same after a resumed run: samples, data sets, checkpoints,
/// adapters and reports (not the train logs, which hold timings).
fn outputs(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        for entry in std::fs::read_dir(&folder).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let kept = [
                ".jsonl",
                ".gguf",
                ".safetensors",
                ".csv",
                "adapter_config.json",
            ]
            .iter()
            .any(|s| name.ends_with(s))
                && !["train_log.jsonl", "phases.jsonl"].contains(&name.as_str());
            if kept {
                let rel = path.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// An external trainer that maps the HARNESS_* variables onto `harness train`, failing on
/// purpose while `$FAIL_MARK` exists.
const TRAIN_SCRIPT: &str = r#"set -e
if [ -f "$FAIL_MARK" ]; then echo "deliberate failure in round $HARNESS_ROUND" >&2; exit 7; fi
set -- train --method "$HARNESS_METHOD" --data "$HARNESS_DATA" --model "$HARNESS_INIT_MODEL" \
  --out "$HARNESS_OUT" --lr "$HARNESS_LR" --epochs "$HARNESS_EPOCHS" \
  --batch-size "$HARNESS_BATCH_SIZE" --grad-accum "$HARNESS_GRAD_ACCUM" --seed "$HARNESS_SEED" \
  --warmup-ratio "$HARNESS_WARMUP_RATIO" --schedule "$HARNESS_SCHEDULE" \
  --max-grad-norm "$HARNESS_MAX_GRAD_NORM" --weight-decay "$HARNESS_WEIGHT_DECAY" \
  --max-len "$HARNESS_MAX_LEN" --lora-rank "$HARNESS_LORA_RANK" \
  --lora-alpha "$HARNESS_LORA_ALPHA" --lora-dropout "$HARNESS_LORA_DROPOUT" \
  --lora-targets "$HARNESS_LORA_TARGETS" --beta "$HARNESS_BETA" \
  --label-smoothing "$HARNESS_LABEL_SMOOTHING" --nll-weight "$HARNESS_NLL_WEIGHT" \
  --gguf-type "$HARNESS_GGUF_TYPE"
# The built-in trainer continues the adapter the engine sampled, adapter.gguf beside adapter/.
if [ -n "$HARNESS_INIT_ADAPTER" ]; then set -- "$@" --continue-adapter "$HARNESS_INIT_ADAPTER.gguf"; fi
if [ -n "$HARNESS_REFERENCE" ]; then set -- "$@" --ref "$HARNESS_REFERENCE"; fi
exec "$HARNESS_BIN" "$@"
"#;

/// `harness run --method dpo --trainer external` with `harness train` as the command: the
/// first attempt fails on purpose (its status and output are reported, nothing is kept),
/// the same command then redoes the round, and every checkpoint equals `builtin`'s.
fn an_external_trainer_trains_the_same_models(builtin: &Path) {
    let tmp = tempfile::tempdir().unwrap();
    let script = tmp.path().join("train.sh");
    std::fs::write(&script, TRAIN_SCRIPT).unwrap();
    let mark = tmp.path().join("fail");
    std::fs::write(&mark, "").unwrap();
    let external = tmp.path().join("external");
    let cmd = format!("FAIL_MARK={} sh {}", mark.display(), script.display());
    let mut args = args(&external);
    args.extend(
        [
            "--method",
            "dpo",
            "--trainer",
            "external",
            "--train-cmd",
            &cmd,
        ]
        .map(String::from),
    );
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let failed = harness(&refs);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(err.contains("exit status: 7"), "{err}");
    assert!(err.contains("deliberate failure in round 1"), "{err}");
    assert!(err.contains("train.log"), "{err}");
    assert!(!external.join("round-1/model").exists());

    std::fs::remove_file(&mark).unwrap();
    harness_ok(&refs);
    let log = std::fs::read_to_string(external.join("round-1/train.log")).unwrap();
    assert!(
        log.contains("deliberate failure") && log.contains("step"),
        "{log}"
    );
    assert!(external.join("dpo/round-2/train.log").exists());
    // An external trainer's round keeps its PEFT adapter (what TRL continues), made over M0.
    let adapter: Value = serde_json::from_str(
        &std::fs::read_to_string(external.join("round-1/model/adapter/adapter_config.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        adapter["base_model_name_or_path"],
        default_model().display().to_string(),
        "the adapter is relative to M0"
    );
    let data = std::fs::read_to_string(external.join("dpo/round-2/data.jsonl")).unwrap();
    assert!(data.contains("\"chosen\""), "round 2 trained DPO on pairs");
    // `harness train` given the HARNESS_* settings trains what the built-in trainer trained,
    // byte for byte: the variables carry every setting, the start model and the adapter.
    for file in [
        "round-1/model/adapter.gguf",
        "dpo/round-2/model/adapter.gguf",
        "dpo/round-2/eval/arith.test.jsonl",
    ] {
        let read = |dir: &Path| std::fs::read(dir.join(file)).unwrap();
        assert!(
            read(builtin) == read(&external),
            "{file} differs between the built-in and the external trainer"
        );
    }
}

#[test]
fn two_rounds_of_each_method_and_a_killed_run_ends_the_same() {
    let _serial = serial();
    let whole_parent = tempfile::tempdir().unwrap();
    let whole = whole_parent.path().join("run");
    let stdout = run(&whole);
    assert!(stdout.contains("round  pass@1"), "{stdout}");
    assert!(
        stdout.contains("changes are against M1") && stdout.contains("detectable (80% power"),
        "the table's note on changes and the detectable change: {stdout}"
    );
    assert!(
        stdout.contains("round 2 is dpo's round 2 (the same training), computed once"),
        "the table says which round is shared: {stdout}"
    );
    check_directory(&whole);

    // The same command again redoes nothing.
    let before = outputs(&whole);
    let again = run(&whole);
    assert!(again.contains("round  pass@1"));
    assert_eq!(outputs(&whole), before, "a finished run is left as it was");
    an_external_trainer_trains_the_same_models(&whole);

    let cut_parent = tempfile::tempdir().unwrap();
    let cut = cut_parent.path().join("run");
    let kills: [KillPoint; 4] = [
        (
            "training M1",
            Box::new(|| cut.join("round-1/model.partial").exists()),
        ),
        (
            "sampling round 1",
            Box::new(|| lines(&cut.join("round-1/train_samples.jsonl")) >= 5),
        ),
        (
            "exporting an SFT round",
            Box::new(|| cut.join("sft/round-2/model.partial/adapter.gguf").exists()),
        ),
        (
            "sampling round 2",
            Box::new(|| lines(&cut.join("dpo/round-2/eval/arith.test.jsonl")) >= 2),
        ),
    ];
    let mut killed = Vec::new();
    for (point, stop) in &kills {
        if run_until(&cut, stop) {
            killed.push(*point);
        }
    }
    assert!(killed.len() >= 3, "killed at {killed:?}");
    run(&cut);
    let (a, b) = (outputs(&whole), outputs(&cut));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same files"
    );
    let differing: Vec<_> = a
        .iter()
        .filter(|(path, bytes)| &b[*path] != *bytes)
        .map(|(path, _)| path.display().to_string())
        .collect();
    if !differing.is_empty() && std::env::var_os("E2E_KEEP_DIRS").is_some() {
        eprintln!("kept: {} and {}", whole.display(), cut.display());
        let _ = (whole_parent.keep(), cut_parent.keep());
    }
    assert!(
        differing.is_empty(),
        "differ after resuming: {differing:?} (E2E_KEEP_DIRS=1 keeps both runs)"
    );
    compare_loops_and_methods(&whole, &cut);
}

/// `harness compare` on two loop directories (method by method) and on two methods of one
/// loop: greedy agreement and paired changes in deltas.csv. The two loops are the same run
/// (one of them killed and resumed), so every change is 0 and every answer agrees; the two
/// methods share M1, so their round-1 changes are 0.
fn compare_loops_and_methods(whole: &Path, cut: &Path) {
    let out = tempfile::tempdir().unwrap();
    let stdout = harness_ok(&[
        "compare",
        whole.to_str().unwrap(),
        cut.to_str().unwrap(),
        "--out",
        out.path().to_str().unwrap(),
    ]);
    for method in ["sft", "dpo", "sft-dpo"] {
        assert!(stdout.contains(&format!("== {method}")), "{stdout}");
        let rows = deltas(&out.path().join(method).join("deltas.csv"));
        assert!(!rows.is_empty(), "{method}: no paired change");
        for row in &rows {
            assert_eq!(row["change"].parse::<f64>().unwrap(), 0.0, "{row:?}");
            assert_eq!(
                row["before"],
                format!(
                    "run/{method} round {}",
                    row["after"].rsplit(' ').next().unwrap()
                )
            );
        }
        let pass1 = rows
            .iter()
            .find(|r| r["metric"] == "greedy_pass@1")
            .unwrap();
        assert_eq!(pass1["p_value"].parse::<f64>().unwrap(), 1.0, "{pass1:?}");
    }
    assert!(stdout.contains("same answer 3/3"), "{stdout}");
    // The loops' sampling throughput, from their phases.jsonl.
    let throughput = deltas(&out.path().join("sft").join("throughput.csv"));
    assert_eq!(throughput.len(), 2, "{throughput:?}");
    assert!(
        throughput
            .iter()
            .all(|r| r["tokens_per_s"].parse::<f64>().is_ok_and(|t| t > 0.0)),
        "{throughput:?}"
    );

    let methods = tempfile::tempdir().unwrap();
    harness_ok(&[
        "compare",
        whole.join("sft").to_str().unwrap(),
        whole.join("dpo").to_str().unwrap(),
        "--out",
        methods.path().to_str().unwrap(),
    ]);
    let rows = deltas(&methods.path().join("deltas.csv"));
    let round = |r: &HashMap<String, String>| r["after"].rsplit(' ').next().unwrap().to_string();
    assert!(rows.iter().any(|r| round(r) == "2"), "{rows:?}");
    for row in rows.iter().filter(|r| round(r) == "1") {
        assert_eq!(
            row["change"].parse::<f64>().unwrap(),
            0.0,
            "M1 is shared: {row:?}"
        );
    }
    assert!(
        rows.iter()
            .all(|r| r["after"].starts_with("run/dpo") && r["before"].starts_with("run/sft"))
    );
}

/// The rows of a CSV file (deltas.csv, throughput.csv) by column name.
fn deltas(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            header
                .iter()
                .map(String::from)
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[test]
fn a_loop_directory_refuses_other_settings_by_name() {
    let _serial = serial();
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("run");
    std::fs::create_dir_all(&dir).unwrap();
    // A manifest as a first invocation leaves it (the settings, before any step ran).
    let mut first = args(&dir);
    first.extend(["--rounds".into(), "0".into()]);
    let out = Command::new(harness_bin()).args(&first).output().unwrap();
    assert!(!out.status.success(), "--rounds 0 is refused");
    let mut a = args(&dir);
    a.extend(["--m1".into(), "/nonexistent".into()]);
    let _ = Command::new(harness_bin()).args(&a).output().unwrap();
    let mut b = args(&dir);
    let at = b.iter().position(|x| x == "--n-eval").unwrap();
    b[at + 1] = "3".into();
    b.extend(["--m1".into(), "/nonexistent".into()]);
    let out = Command::new(harness_bin()).args(&b).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("n_eval: 2 -> 3"), "{err}");
}

#[test]
fn gold_limit_trains_m1_on_its_own_number_of_gold_pairs_and_is_recorded() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("run");
    // The external trainer fails at once: the gold pairs are written before M1 is trained.
    let mut a = args(&dir);
    a.extend(
        [
            "--gold-limit",
            "12",
            "--trainer",
            "external",
            "--train-cmd",
            "false",
        ]
        .map(String::from),
    );
    let out = Command::new(harness_bin()).args(&a).output().unwrap();
    assert!(!out.status.success(), "the failing trainer stops the run");
    let gold = read_jsonl(&dir.join("round-1/gold.jsonl"));
    assert_eq!(
        gold.len(),
        12,
        "M1's gold pairs: --gold-limit, not --train-limit 8"
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let settings = &manifest["settings"];
    assert_eq!(
        (
            settings["train_limit"].as_u64(),
            settings["gold_limit"].as_u64()
        ),
        (Some(8), Some(12)),
        "{manifest}"
    );
    // Another gold limit on the same directory is refused by name.
    let at = a.iter().position(|x| x == "12").unwrap();
    a[at] = "16".into();
    let out = Command::new(harness_bin()).args(&a).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gold_limit"), "{err}");
}
