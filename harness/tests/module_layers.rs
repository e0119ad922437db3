//! The binary's modules import one way: each file may use files of its own layer or below,
//! never above, and the imports have no circle. The layers, top to bottom, are those of
//! `LAYERS`; a new file must be placed in one. Run with `--nocapture` to print the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top to bottom. `cmd/` turns flags into calls; `study/` is the loop, itself layered from
/// its round sequence down to its flags; below are the pieces bench and the loop share.
const LAYERS: &[&[&str]] = &[
    &["main", "config"],
    &[
        "cmd",
        "cmd/bench",
        "cmd/compare",
        "cmd/grade",
        "cmd/prompt",
        "cmd/report",
        "cmd/run",
        "cmd/tasks",
        "cmd/train",
    ],
    &["cli"],
    &["study"],
    &["study/sequence", "study/dry_run"],
    &["study/round", "study/report"],
    &["study/train"],
    &["study/serve", "study/table"],
    &["study/setup"],
    &["study/dir"],
    &["study/flags"],
    &["reports", "evaluate", "engine", "summary", "training"],
    &["flags", "run_dir", "progress", "shell"],
];

/// A source file's module path: `study/round.rs` is `study/round`, `study/mod.rs` is `study`,
/// `main.rs` is `main`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let name = rel.to_string_lossy().replace('\\', "/");
    name.strip_suffix("/mod").unwrap_or(&name).to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The paths a file names through `crate::`, `super::` or one of its own child modules, as
/// segment lists from the crate root; `use crate::a::{b, c::D}` gives `a::b` and `a::c::D`.
/// Stops at the tests module.
fn referenced_paths(text: &str, module: &str, modules: &BTreeSet<String>) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .take_while(|l| l.trim() != "#[cfg(test)]")
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    // `super` of a file module is its parent (`study/round` -> `study`); of `study` the root.
    let parent: Vec<String> = match module.rsplit_once('/') {
        Some((parent, _)) => parent.split('/').map(String::from).collect(),
        None => Vec::new(),
    };
    // A child module is named from the root (`main`) or from its `mod.rs` without a prefix.
    let own: Vec<String> = match module {
        "main" => Vec::new(),
        _ => module.split('/').map(String::from).collect(),
    };
    let mut prefixes = vec![
        ("crate::".to_string(), Vec::new()),
        ("super::".to_string(), parent),
    ];
    for m in modules {
        let child: Vec<String> = m.split('/').map(String::from).collect();
        if child.len() == own.len() + 1 && child.starts_with(&own) {
            prefixes.push((format!("{}::", child[own.len()]), own.clone()));
        }
    }
    let mut found = Vec::new();
    for (prefix, base) in prefixes {
        let keep_name = !prefix.starts_with("crate") && !prefix.starts_with("super");
        let mut rest = code.as_str();
        while let Some(at) = rest.find(&prefix) {
            let preceded = rest[..at]
                .chars()
                .last()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            let start = if keep_name { at } else { at + prefix.len() };
            let skip = &rest[start..];
            rest = &rest[at + prefix.len()..];
            if preceded {
                continue;
            }
            for path in expand(skip) {
                let mut full = base.clone();
                full.extend(path);
                found.push(full);
            }
        }
    }
    found
}

/// The paths at the start of `text`: `a::b::C` or `a::{b, c::D}` (one level of braces).
fn expand(text: &str) -> Vec<Vec<String>> {
    let mut head = Vec::new();
    let mut rest = text;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        head.push(rest[..end].to_string());
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => return vec![head],
        }
    }
    let Some(group) = rest.strip_prefix('{') else {
        return vec![head];
    };
    let inside = &group[..group.find('}').unwrap_or(group.len())];
    inside
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let mut path = head.clone();
            if item != "self" {
                path.extend(item.split("::").map(|s| s.trim().to_string()));
            }
            path
        })
        .collect()
}

/// The module file a path lands in: its longest prefix that is a module.
fn resolve(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("/"))
        .find(|m| modules.contains(m))
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

/// The import graph of `src`: module -> the modules it names.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let targets: BTreeSet<String> = referenced_paths(&text, &module, &modules)
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .filter(|t| *t != module)
            .collect();
        graph.insert(module, targets);
    }
    graph
}

/// A circle through `from`, if any (depth-first search).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| n == node) {
            let mut found = stack[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn imports_go_down_the_layers_without_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = graph(&src);
    let mut problems = Vec::new();
    for (module, targets) in &graph {
        println!("{module} -> {}", Vec::from_iter(targets.clone()).join(", "));
        let Some(from) = layer_of(module) else {
            problems.push(format!("{module} is in no layer: place it in LAYERS"));
            continue;
        };
        for target in targets {
            match layer_of(target) {
                Some(to) if to < from => {
                    problems.push(format!("{module} imports {target} above it"))
                }
                _ => {}
            }
            if target.starts_with("cmd") && module != "main" && module != "cmd" {
                problems.push(format!("{module} imports {target}: only main imports cmd/"));
            }
        }
    }
    if let Some(found) = circle(&graph) {
        problems.push(format!("import circle: {}", found.join(" -> ")));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn paths_are_read_from_use_lines_and_groups() {
    let text = "use crate::study::{self, flags::RunArgs};\nuse super::dir::LoopDir;\n\
                // use crate::cmd::x;\nlet x = crate::reports::embedding_seconds();\n\
                #[cfg(test)]\nuse crate::cli::Cli;\n";
    let modules = ["study", "study/dir", "study/flags", "reports", "cli", "cmd"]
        .map(String::from)
        .into();
    let paths = referenced_paths(text, "study/round", &modules);
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "study",
            "study::flags::RunArgs",
            "reports::embedding_seconds",
            "study::dir::LoopDir"
        ]
    );
    let from_mod = referenced_paths("use flags::RunArgs;\npub use dir::X;", "study", &modules);
    let joined: Vec<String> = from_mod.iter().map(|p| p.join("::")).collect();
    assert_eq!(joined, ["study::dir::X", "study::flags::RunArgs"]);
}
