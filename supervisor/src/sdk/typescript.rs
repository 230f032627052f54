//! How Node runs a TypeScript worker script: with its own type stripping
//! on Node ≥ 22.6, else through the `tsx` loader, which flw installs with
//! npm into its cache the first time it is needed (no global install).
//! `FLW_TS_LOADER` names another loader module to `--import` instead.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use crate::private_fs;

/// The `tsx` release flw installs for Node < 22.6.
pub const TSX_VERSION: &str = "4.23.15";

/// Why Node cannot run a TypeScript worker.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NodeError {
    /// `node --version` could not be run.
    #[error("cannot run {node} --version: {error}")]
    NoVersion {
        /// The interpreter.
        node: String,
        /// The OS error, in words.
        error: String,
    },
    /// `node --version` printed no version.
    #[error("{node} --version printed {printed:?}, not a Node.js version")]
    BadVersion {
        /// The interpreter.
        node: String,
        /// What it printed.
        printed: String,
    },
    /// Node < 22.6 needs the tsx loader, and installing it failed.
    #[error("TypeScript workers on Node.js older than 22.6 need the tsx loader, and installing it failed: {0}. Install Node.js 22.6 or newer (it strips types itself), or set FLW_TS_LOADER to a loader module")]
    Tsx(String),
}

/// The Node flags that let `node` import a `.ts` script.
pub fn node_flags(node: &Path) -> Result<Vec<OsString>, NodeError> {
    if let Some(loader) = std::env::var_os("FLW_TS_LOADER") {
        return Ok(vec!["--import".into(), file_url(Path::new(&loader)).into()]);
    }
    if node_version(node)? >= (22, 6) {
        return Ok(vec![
            "--experimental-strip-types".into(),
            "--disable-warning=ExperimentalWarning".into(),
        ]);
    }
    let loader = tsx_loader()?;
    Ok(vec!["--import".into(), file_url(&loader).into()])
}

/// `(major, minor)` of `node --version`, asked once per interpreter.
fn node_version(node: &Path) -> Result<(u32, u32), NodeError> {
    static SEEN: OnceLock<Mutex<HashMap<PathBuf, (u32, u32)>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Default::default);
    if let Some(v) = seen.lock().ok().and_then(|m| m.get(node).copied()) {
        return Ok(v);
    }
    let out = Command::new(node)
        .arg("--version")
        .output()
        .map_err(|e| NodeError::NoVersion {
            node: node.display().to_string(),
            error: e.to_string(),
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v = parse_version(&text).ok_or_else(|| NodeError::BadVersion {
        node: node.display().to_string(),
        printed: text.trim().to_string(),
    })?;
    if let Ok(mut m) = seen.lock() {
        m.insert(node.to_path_buf(), v);
    }
    Ok(v)
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// The `tsx` ESM loader in flw's cache, installed with npm on first use.
fn tsx_loader() -> Result<PathBuf, NodeError> {
    // A failed install is not kept: the next launch (a reload) tries again.
    static LOADER: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut installed = LOADER.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(loader) = &*installed {
        return Ok(loader.clone());
    }
    let loader = install_tsx()?;
    *installed = Some(loader.clone());
    Ok(loader)
}

fn install_tsx() -> Result<PathBuf, NodeError> {
    let fail = NodeError::Tsx;
    let loaders = super::cache_dir()
        .map_err(|e| fail(e.to_string()))?
        .join("ts-loader");
    private_fs::make_dir(&loaders).map_err(|e| fail(e.to_string()))?;
    let root = loaders.join(format!("tsx-{TSX_VERSION}"));
    let entry = |r: &Path| r.join("node_modules/tsx/dist/esm/index.mjs");
    if entry(&root).is_file() {
        // What npm installed runs as this user: it must be theirs alone.
        match private_fs::check_tree(&root) {
            Ok(()) => return Ok(entry(&root)),
            Err(e) => {
                tracing::warn!("installing the tsx loader again: {e}");
                let _ = std::fs::remove_dir_all(&root);
            }
        }
    }
    let tmp = root.with_extension(format!("tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    private_fs::make_dir(&tmp).map_err(|e| fail(e.to_string()))?;
    tracing::info!(
        "installing tsx {TSX_VERSION} (the TypeScript loader for Node < 22.6) into {}",
        root.display()
    );
    let mut npm = Command::new("npm");
    // SAFETY: prctl is async-signal-safe, as pre_exec requires. The install
    // runs on a blocking thread that waits for it, so it ends (SIGTERM)
    // when flw exits rather than living on unsupervised.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut npm, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = npm
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            "--prefix",
        ])
        .arg(&tmp)
        .arg(format!("tsx@{TSX_VERSION}"))
        .output()
        .map_err(|e| {
            let _ = std::fs::remove_dir_all(&tmp);
            fail(format!("cannot run npm: {e}"))
        })?;
    if !out.status.success() || !entry(&tmp).is_file() {
        let _ = std::fs::remove_dir_all(&tmp);
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        return Err(fail(format!(
            "npm install tsx@{TSX_VERSION} ended with {}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    // npm's command links are not needed, and links are not trusted.
    let _ = std::fs::remove_dir_all(tmp.join("node_modules/.bin"));
    private_fs::make_tree_private(&tmp).map_err(|e| fail(e.to_string()))?;
    match std::fs::rename(&tmp, &root) {
        Ok(()) => {}
        Err(_) if entry(&root).is_file() => {
            let _ = std::fs::remove_dir_all(&tmp); // another flw was faster
        }
        Err(e) => return Err(fail(format!("{}: {e}", root.display()))),
    }
    Ok(entry(&root))
}

/// A `file://` URL for an absolute path (what `--import` takes).
fn file_url(path: &Path) -> String {
    let mut url = String::from("file://");
    for b in path.to_string_lossy().bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                url.push(b as char)
            }
            _ => url.push_str(&format!("%{b:02X}")),
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_from_node_output() {
        assert_eq!(parse_version("v20.20.2\n"), Some((20, 20)));
        assert_eq!(parse_version("v22.6.0"), Some((22, 6)));
        assert_eq!(parse_version("node"), None);
    }

    #[test]
    fn paths_become_file_urls() {
        assert_eq!(file_url(Path::new("/a b/c.mjs")), "file:///a%20b/c.mjs");
    }
}
