//! Worker languages: which interpreter runs a script, and the embedded SDKs
//! (Python and TypeScript) that the binary carries and unpacks into a cache
//! folder.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

mod typescript;
mod unpack;

pub use unpack::UnpackError;

use crate::private_fs::{self, PrivateError};

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
    pub fn of(script: &Path) -> Result<Language, UnknownScript> {
        match script.extension().and_then(|e| e.to_str()) {
            Some("py") => Ok(Language::Python),
            Some("js" | "mjs") => Ok(Language::JavaScript),
            Some("ts" | "mts") => Ok(Language::TypeScript),
            other => Err(UnknownScript {
                script: script.to_path_buf(),
                extension: other.map(str::to_string),
            }),
        }
    }
}

/// A script whose extension names no language flw runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot run {}: flw runs Python (.py), JavaScript (.js, .mjs) and TypeScript (.ts, .mts) worker scripts{}",
    script.display(),
    extension.as_ref().map(|e| format!(", not .{e}")).unwrap_or_default()
)]
pub struct UnknownScript {
    /// The script.
    pub script: PathBuf,
    /// Its extension, if it has one.
    pub extension: Option<String>,
}

/// The command line that starts a worker for `script`.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The script's language.
    pub language: Language,
    /// The interpreter.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<OsString>,
    /// Variables the launch needs (e.g. `PYTHONPATH`), merged over the rest.
    pub env: Vec<(String, String)>,
}

/// Why a worker cannot be launched at all: retrying will not help, so a
/// pool that meets one fails at once with it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LaunchError {
    /// The script's extension names no language flw runs.
    #[error(transparent)]
    Language(#[from] UnknownScript),
    /// The embedded SDK cannot be unpacked or trusted.
    #[error("cannot unpack the {language} SDK: {source}")]
    Unpack {
        /// `Python` or `TypeScript`.
        language: &'static str,
        /// Why.
        #[source]
        source: UnpackError,
    },
    /// Node.js cannot run TypeScript (its version, or the tsx loader).
    #[error(transparent)]
    Node(#[from] typescript::NodeError),
    /// The work was cut short (its thread panicked or was cancelled).
    #[error("working out how to start the worker was cut short: {0}")]
    Interrupted(String),
}

/// Builds the launch for `script`; `interpreter` overrides the default
/// (`$FLW_PYTHON`, else `python3`; `$FLW_NODE`, else `node`). The first
/// launch of a process may unpack an SDK, run `node --version` or install
/// the tsx loader: call it off the async runtime (`spawn_blocking`).
pub fn launch(script: &Path, interpreter: Option<&Path>) -> Result<Launch, LaunchError> {
    match Language::of(script)? {
        Language::Python => {
            let program = program(interpreter, "FLW_PYTHON", "python3");
            let sdk = python_sdk_dir().map_err(|source| LaunchError::Unpack {
                language: "Python",
                source,
            })?;
            let mut path = sdk.display().to_string();
            if let Some(existing) = std::env::var_os("PYTHONPATH").filter(|p| !p.is_empty()) {
                path.push(':');
                path.push_str(&existing.to_string_lossy());
            }
            Ok(Launch {
                language: Language::Python,
                program,
                args: vec!["-u".into(), "-m".into(), "flw".into(), script.into()],
                env: vec![("PYTHONPATH".into(), path)],
            })
        }
        lang @ (Language::JavaScript | Language::TypeScript) => {
            let program = program(interpreter, "FLW_NODE", "node");
            let sdk = ts_sdk_dir().map_err(|source| LaunchError::Unpack {
                language: "TypeScript",
                source,
            })?;
            let mut args = Vec::new();
            if lang == Language::TypeScript {
                args.extend(typescript::node_flags(&program).map_err(LaunchError::Node)?);
            }
            args.push(sdk.join("dist").join("main.js").into());
            args.push(script.into());
            Ok(Launch {
                language: lang,
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
pub fn ts_sdk_dir() -> Result<PathBuf, UnpackError> {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    sdk_dir("FLW_TS_SDK", &DIR, "ts", TS_SDK, "")
}

/// The folder that holds the unpacked `flw` package, unpacking it on first
/// use. Set `FLW_PYTHON_SDK` to use a checkout instead (for SDK development).
pub fn python_sdk_dir() -> Result<PathBuf, UnpackError> {
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    sdk_dir("FLW_PYTHON_SDK", &DIR, "python", PYTHON_SDK, "flw")
}

/// The checkout named by `var`, else `files` unpacked (and checked) once
/// per process. A failure is not kept: the next launch (a reload, say)
/// tries again, so a disk that was full may have room by then.
fn sdk_dir(
    var: &str,
    unpacked: &'static Mutex<Option<PathBuf>>,
    kind: &str,
    files: &[(&str, &[u8])],
    package: &str,
) -> Result<PathBuf, UnpackError> {
    if let Some(dir) = std::env::var_os(var) {
        return Ok(PathBuf::from(dir));
    }
    // Held while unpacking: one unpack at a time in this process.
    let mut done = unpacked.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = &*done {
        return Ok(dir.clone());
    }
    let cache = cache_dir()?;
    let dir = unpack::unpack(&cache, kind, &embedded_id(files), files, package)?;
    *done = Some(dir.clone());
    Ok(dir)
}

/// The interpreter: the pool's `interpreter`, else `$var`, else `default`.
fn program(interpreter: Option<&Path>, var: &str, default: &str) -> PathBuf {
    interpreter
        .map(Path::to_path_buf)
        .or_else(|| std::env::var_os(var).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(default))
}

/// flw's private cache folder (see [`crate::private_fs`] for where it is).
pub fn cache_dir() -> Result<PathBuf, PrivateError> {
    private_fs::cache_dir()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_is_embedded_with_its_entry_points() {
        let names: Vec<_> = PYTHON_SDK.iter().map(|(n, _)| *n).collect();
        for needed in [
            "__init__.py",
            "__main__.py",
            "py.typed",
            "llm/__init__.py",
            "graph/_run.py",
            "worker/_entry.py",
        ] {
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
            // The modules in its folders.
            "dist/llm/index.js",
            "dist/graph/run.js",
            // Loaded by its path at run time, from its own folder.
            "dist/worker/reader_thread.js",
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
        assert_eq!(e.extension.as_deref(), Some("rb"));
        assert!(e.to_string().contains("not .rb"), "{e}");
    }
}
