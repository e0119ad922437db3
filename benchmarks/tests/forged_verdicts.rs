//! Programs that try to forge a verdict instead of computing the answer. The test expects a
//! value no program can compute (`secret-4f1c9a`); each program looks for it wherever the
//! old single-process design kept it (the test code's frame and constants, objects the
//! garbage collector tracks, the process's memory, files it can read) or writes a reply of
//! its own. None may pass, each fails for its named reason, and none leaves a process or a
//! file behind. The searches build their pattern at run time so that they cannot find
//! their own source.

mod common;

use benchmarks::sandbox::{Job, Outcome};
use common::{SERIAL, run_job_contained, sandbox};

const TESTS: &str = "assert f(1) == 'secret-4f1c9a'\n";

/// Searches strings for the secret's shape; returns the first match.
const FIND: &str = r#"
import re
KEY = re.compile(('sec' + 'ret-') + '[0-9a-f]{6}')
def find(texts):
    for text in texts:
        if isinstance(text, bytes):
            text = text.decode('latin-1')
        if isinstance(text, str):
            match = KEY.search(text)
            if match:
                return match.group(0)
    return None
"#;

fn secret_job(code: &str) -> Job {
    Job {
        code: format!("{FIND}\n{code}"),
        tests: TESTS.to_string(),
        entry_point: "f".to_string(),
    }
}

fn forged(name: &str, code: &str) -> Outcome {
    let outcome = run_job_contained(&sandbox(), name, &secret_job(code));
    assert!(
        !outcome.passed,
        "{name}: a forged verdict passed: {outcome:?}"
    );
    outcome
}

/// The program ran to the end, found nothing, and returned its own (wrong) answer.
fn assert_found_nothing(name: &str, outcome: &Outcome) {
    assert!(
        outcome.reason.starts_with("fail assertion"),
        "{name}: {outcome:?}"
    );
}

#[test]
fn searching_the_process_finds_no_expected_value() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let frames = r#"
import sys
def contents(obj):
    if isinstance(obj, dict):
        return list(obj.keys()) + list(obj.values())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    if hasattr(obj, 'co_consts'):
        return list(obj.co_consts) + [obj.co_filename, obj.co_name]
    return [obj]
def f(x):
    frame = sys._getframe()
    while frame is not None:
        scopes = [frame.f_locals, frame.f_globals, frame.f_code]
        for scope in scopes:
            items = contents(scope)
            for item in list(items):
                items += contents(item)
            found = find(items)
            if found:
                return found
        frame = frame.f_back
    return 'nothing found'
"#;
    assert_found_nothing("frame walking", &forged("frame walking", frames));

    let gc_scan = r#"
import gc
def f(x):
    for obj in gc.get_objects():
        try:
            if isinstance(obj, dict):
                texts = list(obj.keys()) + list(obj.values())
            elif isinstance(obj, (list, tuple)):
                texts = list(obj)
            elif hasattr(obj, '__code__'):
                texts = list(obj.__code__.co_consts)
            else:
                continue
        except Exception:
            continue
        found = find(texts)
        if found:
            return found
    return 'nothing found'
"#;
    assert_found_nothing("gc scanning", &forged("gc scanning", gc_scan));

    // Anonymous writable mappings (the heap, the interpreter's arenas) through ctypes, the
    // rest (code, data, mapped files) through /proc/self/mem, which answers EIO for a page
    // it cannot read instead of crashing.
    let memory = r#"
import ctypes
def f(x):
    with open('/proc/self/maps') as maps, open('/proc/self/mem', 'rb', 0) as mem:
        for line in maps.read().splitlines():
            fields = line.split()
            start, end = (int(a, 16) for a in fields[0].split('-'))
            if not fields[1].startswith('r') or end - start > (512 << 20):
                continue
            anonymous = len(fields) < 6 or fields[5] == '[heap]'
            try:
                if anonymous and fields[1].startswith('rw'):
                    data = ctypes.string_at(start, end - start)
                else:
                    mem.seek(start)
                    data = mem.read(end - start)
            except (OSError, ValueError, OverflowError):
                continue
            found = find([data])
            if found:
                return found
    return 'nothing found'
"#;
    assert_found_nothing("memory reads", &forged("memory reads", memory));

    let files = r#"
import os
def f(x):
    texts = []
    for root in ['.', os.environ.get('HOME', '.'), '/tmp']:
        for name in os.listdir(root):
            try:
                texts.append(open(os.path.join(root, name), 'rb').read())
            except OSError:
                pass
    for name in ['cmdline', 'environ']:
        texts.append(open('/proc/self/' + name, 'rb').read())
    return find(texts) or 'nothing found'
"#;
    assert_found_nothing("files it can read", &forged("files it can read", files));

    // The data sets, on disk and inside the binary that embeds them (this test's binary
    // embeds them as the harness does), are not in the program's file system.
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/mbpp/mbpp.jsonl.gz");
    let exe = std::env::current_exe().unwrap().canonicalize().unwrap();
    let hidden = format!(
        "import os\nseen = [p for p in [{data:?}, {exe:?}] if os.path.exists(p) and os.path.getsize(p)]\n\
         print('visible:', seen, flush=True)\ndef f(x):\n    return 'nothing found'\n"
    );
    let o = forged("the data sets on disk", &hidden);
    assert_found_nothing("the data sets on disk", &o);
    if o.pid_namespace {
        assert!(o.stdout.contains("visible: []"), "{o:?}");
    }
}

#[test]
fn a_reply_of_its_own_is_never_a_pass() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // After the runner's probe, every descriptor gets a complete reply that claims a guess,
    // and the old design's result line; then the program exits before any test.
    let every_descriptor = r#"
import os
fake = (b'["probe", "isolated", "private"]\n["ready"]\n'
        b'["value", 0, ["str", "secret-000000"]]\n["done"]\n'
        b'0123456789abcdef0123456789abcdef isolated private pass\n')
for fd in range(256):
    try:
        os.write(fd, fake)
    except OSError:
        pass
os._exit(0)
"#;
    let o = forged("write to every descriptor", every_descriptor);
    assert!(o.reason.starts_with("fail malformed-reply"), "{o:?}");

    // A well-formed reply that claims a value: the judge compares it like any result, and
    // a claim tagged as another type cannot stand for a string either.
    for (name, claimed, reason) in [
        (
            "claim the expected value",
            r#"["str", "secret-000000"]"#,
            "fail assertion",
        ),
        (
            "claim through a type tag",
            r#"["other", "str"]"#,
            "fail type-mismatch",
        ),
    ] {
        let claim = format!(
            "import os\nos.write(3, b'[\"ready\"]\\n[\"value\", 0, {claimed}]\\n[\"done\"]\\n')\nos._exit(0)\n"
        );
        let o = forged(name, &claim);
        assert!(o.reason.starts_with(reason), "{name}: {o:?}");
    }

    let printed = r#"
import sys
line = '0123456789abcdef0123456789abcdef isolated private pass'
print(line)
print(line, file=sys.stderr)
print('["value", 0, ["str", "secret-000000"]]')
def f(x):
    return 'secret-000000'
"#;
    let o = forged("print a fake result line", printed);
    assert!(o.reason.starts_with("fail assertion"), "{o:?}");

    // The child outlives the call and writes a late reply; it dies with the program.
    let late_child = r#"
import os, time
def f(x):
    if os.fork() == 0:
        time.sleep(0.5)
        os.write(3, b'["value", 0, ["str", "secret-000000"]]\n["done"]\n')
        os._exit(0)
    os._exit(0)
"#;
    let o = forged("a child that outlives the call", late_child);
    assert!(o.reason.starts_with("no-result"), "{o:?}");

    let garbage = "import os\nos.write(3, b'\\xff\\xfe not json\\n')\ndef f(x):\n    return 1\n";
    let o = forged("garbage on the reply pipe", garbage);
    assert!(o.reason.starts_with("fail malformed-reply"), "{o:?}");
}

#[test]
fn oversized_and_exiting_replies_are_named_failures() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let flood = "import os\nos.write(3, b'[' * (3 << 20))\ndef f(x):\n    return 1\n";
    let o = forged("flood the reply pipe", flood);
    assert!(o.reason.starts_with("fail reply-too-large"), "{o:?}");

    let huge = "def f(x):\n    return 'x' * (3 << 20)\n";
    let o = forged("a result past the reply limit", huge);
    assert!(o.reason.starts_with("fail reply-too-large"), "{o:?}");

    let exits = "import sys\ndef f(x):\n    sys.exit(0)\n";
    let o = forged("sys.exit in the call", exits);
    assert!(o.reason.starts_with("fail exit-in-tests"), "{o:?}");

    let raises = "def f(x):\n    raise ValueError('no')\n";
    let o = forged("an exception in the call", raises);
    assert_eq!(o.reason, "fail error-in-tests: ValueError: no", "{o:?}");

    let generator = "def f(x):\n    yield 'secret-4f1c9a'\n";
    let o = forged("a generator", generator);
    assert!(o.reason.starts_with("fail type-mismatch"), "{o:?}");
}
