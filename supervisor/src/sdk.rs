//! Worker languages: which interpreter runs a script, and the embedded
//! Python SDK that the binary carries and unpacks into a cache folder.

use std::ffi::OsString;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/python_sdk.rs"));

/// The language of a worker script, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    /// `.py`
    Python,
}

impl Language {
    /// The language of `script`, or an error that names what flw runs.
    pub fn of(script: &Path) -> Result<Language, String> {
        match script.extension().and_then(|e| e.to_str()) {
            Some("py") => Ok(Language::Python),
            other => Err(format!(
                "cannot run {}: flw runs Python worker scripts (.py){}",
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
/// (`$FLW_PYTHON`, else `python3`).
pub fn launch(script: &Path, interpreter: Option<&Path>) -> Result<Launch, String> {
    match Language::of(script)? {
        Language::Python => {
            let program = interpreter
                .map(Path::to_path_buf)
                .or_else(|| std::env::var_os("FLW_PYTHON").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("python3"));
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
    }
}

/// The folder that holds the unpacked `flw` package, unpacking it on first
/// use. Set `FLW_PYTHON_SDK` to use a checkout instead (for SDK development).
pub fn python_sdk_dir() -> std::io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("FLW_PYTHON_SDK") {
        return Ok(PathBuf::from(dir));
    }
    static DIR: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| unpack().map_err(|e| e.to_string()))
        .clone()
        .map_err(std::io::Error::other)
}

/// flw's cache folder: `$XDG_CACHE_HOME/flw`, else `~/.cache/flw`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("flw")
}

/// What identifies the Python SDK workers run: the embedded one's version
/// and content hash, or the `FLW_PYTHON_SDK` folder.
pub fn python_sdk_id() -> String {
    if let Some(dir) = std::env::var_os("FLW_PYTHON_SDK") {
        return format!("checkout {}", Path::new(&dir).display());
    }
    embedded_sdk_id()
}

fn embedded_sdk_id() -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    PYTHON_SDK.hash(&mut h);
    format!("{}-{:016x}", env!("CARGO_PKG_VERSION"), h.finish())
}

fn unpack() -> std::io::Result<PathBuf> {
    let id = embedded_sdk_id();
    let root = cache_dir().join("python").join(&id);
    if root.join("flw").join(".complete").is_file() {
        return Ok(root);
    }
    // Unpack into a private folder, then rename it into place: concurrent
    // flw processes never see half a package.
    std::fs::create_dir_all(root.parent().unwrap())?;
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(tmp.join("flw"))?;
    for (name, bytes) in PYTHON_SDK {
        std::fs::write(tmp.join("flw").join(name), bytes)?;
    }
    std::fs::write(tmp.join("flw").join(".complete"), id.as_bytes())?;
    match std::fs::rename(&tmp, &root) {
        Ok(()) => Ok(root),
        Err(_) if root.join("flw").join(".complete").is_file() => {
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
    fn unknown_extension_is_refused_with_the_reason() {
        let e = Language::of(Path::new("agent.rb")).unwrap_err();
        assert!(e.contains("not .rb"), "{e}");
    }
}
