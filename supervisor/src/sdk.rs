//! Worker languages: which interpreter runs a script, and the embedded SDKs
//! (Python and TypeScript) that the binary carries and unpacks into a cache
//! folder.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

mod typescript;

include!(concat!(env!("OUT_DIR"), "/sdks.rs"));

/// The language of a worker script, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `.py`
    Python,
    /// `.js`, `.mjs`: run by Node.js (≥ 20) with the TypeScript SDK.
    JavaScript,
    /// `.ts`, `.mts`: the same, with Node's type stripping (≥ 22.6) or,
    /// on older Node, the tsx loader that flw installs into its cache.
    TypeScript,
}

impl Language {
    /// The language of `script`, or an error that names what flw runs.
    pub fn of(script: &Path) -> Result<Language, String> {
        match script.extension().and_then(|e| e.to_str()) {
            Some("py") => Ok(Language::Python),
            Some("js" | "mjs") => Ok(Language::JavaScript),
            Some("ts" | "mts") => Ok(Language::TypeScript),
            other => Err(format!(
                "cannot run {}: flw runs Python (.py), JavaScript (.js, .mjs) and TypeScript \
                 (.ts, .mts) worker scripts{}",
                script.display(),
                match other {
                    Some(ext) => format!(", not .{ext}"),
                    None => String::new(),
                }
            )),
        }
    }
}

/// The command line that starts a worker for `script`.
pub struct Launch {
    /// The interpreter.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables the launch needs (e.g. `PYTHONPATH`), merged over the rest.
    pub env: Vec<(String, String)>,
}

/// Builds the launch for `script`; `interpreter` overrides the default
/// (`$FLW_PYTHON`, else `python3`; `$FLW_NODE`, else `node`).
pub fn launch(script: &Path, interpreter: Option<&Path>) -> Result<Launch, String> {
    match Language::of(script)? {
        Language::Python => {
            let program = program(interpreter, "FLW_PYTHON", "python3");
            let sdk = python_sdk_dir().map_err(|e| format!("cannot unpack the Python SDK: {e}"))?;
            let mut path = sdk.display().to_string();
            if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
                path.push(':');
                path.push_str(&existing.to_string_lossy());
            }
            Ok(Launch {
                program,
                args: vec!["-u".into(), "-m".into(), "flw".into(), script.into()],
                env: vec![("PYTHONPATH".into(), path)],
            })
        }
        lang @ (Language::JavaScript | Language::TypeScript) => {
            let program = program(interpreter, "FLW_NODE", "node");
            let sdk = ts_sdk_dir().map_err(|e| format!("cannot unpack the TypeScript SDK: {e}"))?;
            let mut args = Vec::new();
            if lang == Language::TypeScript {
                args.extend(typescript::node_flags(&program)?);
            }
            args.push(sdk.join("dist").join("main.js").into());
            args.push(script.into());
            Ok(Launch {
                program,
                args,
                env: Vec::new(),
            })
        }
    }
}

/// The folder that holds the unpacked `flw-worker` package (`package.json`,
/// `dist/`), unpacking it on first use. Set `FLW_TS_SDK` to use a checkout
/// (the `workers-ts` folder, built) instead.
pub fn ts_sdk_dir() -> std::io::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    sdk_dir("FLW_TS_SDK", &DIR, "ts", TS_SDK, "")
}

/// The folder that holds the unpacked `flw` package, unpacking it on first
/// use. Set `FLW_PYTHON_SDK` to use a checkout instead (for SDK development).
pub fn python_sdk_dir() -> std::io::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    sdk_dir("FLW_PYTHON_SDK", &DIR, "python", PYTHON_SDK, "flw")
}

/// The checkout named by `var`, else `files` unpacked once per process.
fn sdk_dir(
    var: &str,
    unpacked: &'static OnceLock<Result<PathBuf, String>>,
    kind: &str,
    files: &[(&str, &[u8])],
    package: &str,
) -> std::io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(var) {
        return Ok(PathBuf::from(dir));
    }
    unpacked
        .get_or_init(|| unpack(kind, files, package).map_err(|e| e.to_string()))
        .clone()
        .map_err(std::io::Error::other)
}

/// The interpreter: the pool's `interpreter`, else `$var`, else `default`.
fn program(interpreter: Option<&Path>, var: &str, default: &str) -> PathBuf {
    interpreter
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(var).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(default))
}

/// flw's cache folder: `$XDG_CACHE_HOME/flw`, else `~/.cache/flw`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("flw")
}

/// What identifies the SDK that runs `script`: the embedded one's version
/// and content hash, or the checkout named by `FLW_PYTHON_SDK` / `FLW_TS_SDK`.
pub fn sdk_id(script: &Path) -> String {
    let (var, files) = match Language::of(script) {
        Ok(Language::JavaScript | Language::TypeScript) => ("FLW_TS_SDK", TS_SDK),
        _ => ("FLW_PYTHON_SDK", PYTHON_SDK),
    };
    if let Some(dir) = std::env::var_os(var) {
        return format!("checkout {}", Path::new(&dir).display());
    }
    embedded_id(files)
}

fn embedded_id(files: &[(&str, &[u8])]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    files.hash(&mut h);
    format!("{}-{:016x}", env!("CARGO_PKG_VERSION"), h.finish())
}

/// Unpacks `files` into `<cache>/<kind>/<id>/<package>/` once; returns
/// `<cache>/<kind>/<id>`.
fn unpack(kind: &str, files: &[(&str, &[u8])], package: &str) -> std::io::Result<PathBuf> {
    let id = embedded_id(files);
    let root = cache_dir().join(kind).join(&id);
    let complete = |r: &Path| r.join(package).join(".complete").is_file();
    if complete(&root) {
        return Ok(root);
    }
    // Unpack into a private folder, then rename it into place: concurrent
    // flw processes never see half a package.
    std::fs::create_dir_all(cache_dir().join(kind))?;
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (name, bytes) in files {
        let dest = tmp.join(package).join(name);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(dest, bytes)?;
    }
    std::fs::create_dir_all(tmp.join(package))?;
    std::fs::write(tmp.join(package).join(".complete"), id.as_bytes())?;
    match std::fs::rename(&tmp, &root) {
        Ok(()) => Ok(root),
        Err(_) if complete(&root) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(root)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_is_embedded_with_its_entry_points() {
        let names: Vec<_> = PYTHON_SDK.iter().map(|(n, _)| *n).collect();
        for needed in ["__init__.py", "__main__.py", "py.typed"] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
    }

    #[test]
    fn typescript_sdk_is_embedded_compiled() {
        let names: Vec<_> = TS_SDK.iter().map(|(n, _)| *n).collect();
        for needed in [
            "package.json",
            "dist/main.js",
            "dist/index.js",
            "dist/resolve.js",
        ] {
            assert!(names.contains(&needed), "{needed} missing from {names:?}");
        }
    }

    #[test]
    fn languages_come_from_the_extension() {
        assert_eq!(Language::of(Path::new("a.mjs")), Ok(Language::JavaScript));
        assert_eq!(Language::of(Path::new("a.mts")), Ok(Language::TypeScript));
        assert_eq!(Language::of(Path::new("a.py")), Ok(Language::Python));
    }

    #[test]
    fn unknown_extension_is_refused_with_the_reason() {
        let e = Language::of(Path::new("agent.rb")).unwrap_err();
        assert!(e.contains("not .rb"), "{e}");
    }
}
