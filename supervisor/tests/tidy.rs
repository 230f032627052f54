//! Checks of the source tree in the style of rust-analyzer's `tidy`: every
//! source file opens with a doc comment, and ARCHITECTURE.md's code map
//! names every module that exists and no module that does not.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The folders whose modules the code map must name, with their language.
const ROOTS: [(&str, &str); 4] = [
    ("supervisor/src", "rs"),
    ("protocol/src", "rs"),
    ("workers-python/src/flw", "py"),
    ("workers-ts/src", "ts"),
];

/// Folders never walked, besides every folder whose name starts with a
/// dot (`.git`, `.venv`, `.tools`, `bench/.venv-mcp`): build output and
/// installed dependencies.
const SKIP: [&str; 4] = ["target", "node_modules", "dist", "__pycache__"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the crate lives in the repository")
        .to_path_buf()
}

/// Every file under `dir`, as paths relative to `base`.
fn walk(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if SKIP.iter().any(|s| name == *s) || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            walk(base, &path, out);
        } else if let Ok(rel) = path.strip_prefix(base) {
            out.push(rel.to_path_buf());
        }
    }
}

/// The source files of `root` with extension `ext`, relative to `root`.
fn sources(root: &str, ext: &str) -> Vec<PathBuf> {
    let base = repo().join(root);
    let mut files = Vec::new();
    walk(&base, &base, &mut files);
    files.retain(|f| f.extension().is_some_and(|e| e == ext));
    files.sort();
    files
}

/// Whether a source file opens with its language's doc comment (after a
/// `#!` line).
fn opens_with_doc(text: &str, ext: &str) -> bool {
    let mut lines = text.lines().skip_while(|l| l.starts_with("#!"));
    let first = lines.next().unwrap_or_default();
    match ext {
        "rs" => first.starts_with("//!"),
        "py" => first.starts_with("\"\"\""),
        "ts" => first.starts_with("/**"),
        _ => false,
    }
}

#[test]
fn every_source_file_opens_with_a_doc_comment() {
    let mut bare = Vec::new();
    for (root, ext) in ROOTS {
        for rel in sources(root, ext) {
            let path = repo().join(root).join(&rel);
            let text = std::fs::read_to_string(&path).expect("a source file reads");
            if !opens_with_doc(&text, ext) {
                bare.push(format!("{root}/{}", rel.display()));
            }
        }
    }
    assert!(
        bare.is_empty(),
        "these files do not open with a doc comment (//! in Rust, a docstring in Python, /** in TypeScript):\n{}",
        bare.join("\n")
    );
}

/// Every `` `token` `` of the text, with `a/{b,c}.rs` expanded to
/// `a/b.rs` and `a/c.rs`.
fn named(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 0 || part.contains(char::is_whitespace) {
            continue;
        }
        match (part.find('{'), part.find('}')) {
            (Some(open), Some(close)) if open < close => {
                let (head, tail) = (&part[..open], &part[close + 1..]);
                for alt in part[open + 1..close].split(',') {
                    out.insert(format!("{head}{alt}{tail}"));
                }
            }
            _ => {
                out.insert(part.to_string());
            }
        }
    }
    out
}

fn architecture() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("ARCHITECTURE.md"))
        .expect("ARCHITECTURE.md is at the repository's root");
    named(&text)
}

#[test]
fn the_code_map_names_every_module() {
    let names = architecture();
    let all: Vec<(&str, String)> = ROOTS
        .iter()
        .flat_map(|(root, ext)| {
            sources(root, ext)
                .into_iter()
                .map(move |rel| (*root, rel.display().to_string()))
        })
        .collect();
    let mut unnamed = Vec::new();
    for (root, rel) in &all {
        let full = format!("{root}/{rel}");
        // A path two folders share (`lib.rs`, `graph.rs`) must be named in
        // full, or one mention would stand for both.
        let shared = all.iter().filter(|(_, r)| r == rel).count() > 1;
        if !names.contains(&full) && (shared || !names.contains(rel)) {
            unnamed.push(full);
        }
    }
    assert!(
        unnamed.is_empty(),
        "ARCHITECTURE.md's code map does not name these modules (name each as `path/under/its/src` in backticks):\n{}",
        unnamed.join("\n")
    );
}

#[test]
fn every_module_the_code_map_names_exists() {
    let mut files = Vec::new();
    walk(&repo(), &repo(), &mut files);
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let mut missing = Vec::new();
    for name in architecture() {
        let source = [".rs", ".py", ".ts", ".mjs"]
            .iter()
            .any(|e| name.ends_with(e) && name.len() > e.len());
        if !source || name.contains('*') {
            continue;
        }
        let exists = files
            .iter()
            .any(|f| *f == name || f.ends_with(&format!("/{name}")));
        if !exists {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names modules that do not exist:\n{}",
        missing.join("\n")
    );
}

#[test]
fn brace_groups_expand() {
    let n = named("see `cli/{run,call}.rs` and `a b` and `x.py`");
    assert!(n.contains("cli/run.rs") && n.contains("cli/call.rs") && n.contains("x.py"));
    assert!(!n.contains("a b"));
}
