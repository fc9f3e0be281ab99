//! The crate's module graph has no loops: no two modules import each other, directly or
//! through others. Read from the sources, so a new `use crate::…` that closes a loop fails here.
//! Modules are the top-level ones (`registry`, `leak`, `owner`, …) and, inside a directory,
//! its files (`registry::schedule`, …), compared with their siblings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `registry/schedule.rs` -> ["registry", "schedule"]; `registry/mod.rs` -> ["registry"].
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b` path in the code (comments and doc text left out).
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let path: Vec<String> = tail
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .next()
                .unwrap_or("")
                .split("::")
                .filter(|s| !s.is_empty() && s.chars().next().is_some_and(|c| c.is_ascii_lowercase()))
                .map(str::to_owned)
                .collect();
            out.push(path);
            rest = tail;
        }
    }
    out
}

#[test]
fn no_two_modules_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeSet<Vec<String>> =
        files.iter().map(|f| module_of(&src, f)).filter(|m| !m.is_empty()).collect();
    // Edges between nodes that share a parent: top-level modules, or files of one directory.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for file in &files {
        let from = module_of(&src, file);
        if from.is_empty() {
            continue; // lib.rs declares and re-exports everything
        }
        for path in crate_paths(&std::fs::read_to_string(file).unwrap()) {
            // The longest known module the path names.
            let Some(to) = (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|m| modules.contains(m))
            else {
                continue;
            };
            // Compare at the level where the two first differ.
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common == from.len().min(to.len()) {
                // One is inside the other: a module and its own submodules work together
                // (a submodule extends its parent's types); only siblings can form a loop.
                continue;
            }
            let a = from[..=common].to_vec();
            let b = to[..=common].to_vec();
            edges.entry(a).or_default().insert(b);
        }
    }
    // Any cycle?
    fn reaches(
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        from: &Vec<String>,
        to: &Vec<String>,
        seen: &mut BTreeSet<Vec<String>>,
    ) -> bool {
        if from == to {
            return true;
        }
        for next in edges.get(from).into_iter().flatten() {
            if seen.insert(next.clone()) && reaches(edges, next, to, seen) {
                return true;
            }
        }
        false
    }
    let mut loops = Vec::new();
    for (a, targets) in &edges {
        for b in targets {
            if reaches(&edges, b, a, &mut BTreeSet::new()) {
                loops.push(format!("{} -> {} -> … -> {}", a.join("::"), b.join("::"), a.join("::")));
            }
        }
    }
    assert!(loops.is_empty(), "import loops:\n{}", loops.join("\n"));
    assert!(edges.len() > 10, "the graph was read: {} modules with imports", edges.len());
}
