//! Embeds the worker SDKs into the binary, so that running a worker needs no
//! separate `pip install` or `npm install`:
//! - the Python SDK: the `.py` files (and `py.typed`) of
//!   `workers-python/src/flw` and its subpackages;
//! - the TypeScript SDK, compiled: the `.js` files of `workers-ts/dist` and its
//!   `package.json` (the compiled files are committed; `scripts/test.sh`
//!   checks they match the sources).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = String::new();
    embed(
        &mut out,
        "PYTHON_SDK",
        "The Python SDK's files: path inside the package folder, content.",
        &files(
            &manifest.join("../workers-python/src/flw"),
            &["py", "typed"],
            "",
        ),
    );
    let ts = manifest.join("../workers-ts");
    let mut ts_files = files(&ts.join("dist"), &["js"], "dist/");
    ts_files.push(("package.json".into(), ts.join("package.json")));
    embed(
        &mut out,
        "TS_SDK",
        "The TypeScript SDK's files: path inside the package folder, content.",
        &ts_files,
    );
    let dest = Path::new(&std::env::var("OUT_DIR").unwrap()).join("sdks.rs");
    std::fs::write(dest, out).unwrap();
}

/// The files of `dir` and of its subfolders (but Python's `__pycache__`)
/// with one of `extensions`, named `prefix` + their path inside `dir`.
fn files(dir: &Path, extensions: &[&str], prefix: &str) -> Vec<(String, PathBuf)> {
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut found = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && name != "__pycache__" {
            found.extend(files(&path, extensions, &format!("{prefix}{name}/")));
        } else if path.is_file()
            && path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| extensions.contains(&e))
        {
            found.push((format!("{prefix}{name}"), path));
        }
    }
    found.sort();
    found
}

fn embed(out: &mut String, name: &str, doc: &str, files: &[(String, PathBuf)]) {
    writeln!(out, "/// {doc}\npub static {name}: &[(&str, &[u8])] = &[").unwrap();
    for (rel, path) in files {
        println!("cargo:rerun-if-changed={}", path.display());
        let abs = path.canonicalize().unwrap();
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
}
