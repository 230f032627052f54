//! Unpacking an embedded SDK into flw's private cache folder, and checking
//! an unpacked one before a worker runs it: the folder tree must be this
//! user's and writable by no one else, and hold exactly the embedded files,
//! byte for byte (plus Python's `__pycache__` folders). Anything else is
//! moved aside and the SDK is unpacked again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::private_fs::{self, PrivateError};

/// The marker written last: a folder without it is half unpacked.
const COMPLETE: &str = ".complete";

/// Why an SDK could not be unpacked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UnpackError {
    /// The cache folder (or a folder in it) cannot be used.
    #[error(transparent)]
    Private(#[from] PrivateError),
    /// Writing the files failed (a full disk, say).
    #[error("cannot write {}: {message}", path.display())]
    Write {
        /// What was being written.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
}

/// What an unpacked folder was found to be.
#[derive(Debug, PartialEq)]
enum Found {
    /// Exactly the embedded files, safe to run.
    Good,
    /// Not there (or half there).
    Missing,
    /// There but not to be trusted: why.
    Bad(String),
}

/// Unpacks `files` into `<cache>/<kind>/<id>/<package>/` unless a checked
/// copy is there; returns `<cache>/<kind>/<id>`.
pub fn unpack(
    cache: &Path,
    kind: &str,
    id: &str,
    files: &[(&str, &[u8])],
    package: &str,
) -> Result<PathBuf, UnpackError> {
    let kind_dir = cache.join(kind);
    private_fs::make_dir(&kind_dir)?;
    private_fs::check_entry(&kind_dir)?;
    let root = kind_dir.join(id);
    match inspect(&root, files, package) {
        Found::Good => return Ok(root),
        Found::Missing => {}
        Found::Bad(why) => {
            tracing::warn!(
                "the unpacked SDK in {} is not the one flw carries ({why}); unpacking it again",
                root.display()
            );
            set_aside(&root);
        }
    }
    // Unpack into a folder of this process's, then rename it into place:
    // concurrent flw processes never see half a package.
    let tmp = kind_dir.join(format!(".{id}.tmp{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let written = write_all(&tmp, id, files, package);
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, &root).is_err() {
        // Another flw was faster; its copy is checked like any other.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    match inspect(&root, files, package) {
        Found::Good => Ok(root),
        Found::Missing => Err(UnpackError::Write {
            path: root,
            message: "the unpacked files are gone".into(),
        }),
        Found::Bad(why) => Err(UnpackError::Write {
            path: root,
            message: format!("the unpacked files do not check out: {why}"),
        }),
    }
}

fn write_all(
    tmp: &Path,
    id: &str,
    files: &[(&str, &[u8])],
    package: &str,
) -> Result<(), UnpackError> {
    let fail = |path: &Path, e: std::io::Error| UnpackError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let pkg = tmp.join(package);
    private_fs::make_dir(&pkg)?;
    for (name, bytes) in files {
        let dest = pkg.join(name);
        if let Some(dir) = dest.parent() {
            private_fs::make_dir(dir)?;
        }
        private_fs::create_file(&dest, bytes).map_err(|e| fail(&dest, e))?;
    }
    let marker = pkg.join(COMPLETE);
    private_fs::create_file(&marker, id.as_bytes()).map_err(|e| fail(&marker, e))
}

/// Moves a folder that cannot be trusted out of the way (and removes it if
/// it can): the parent is flw's own, so it can always be renamed.
fn set_aside(root: &Path) {
    let aside = root.with_file_name(format!(
        ".bad-{}-{}",
        std::process::id(),
        root.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    if std::fs::rename(root, &aside).is_ok() {
        let _ = std::fs::remove_dir_all(&aside);
    } else {
        let _ = std::fs::remove_dir_all(root);
    }
}

/// Checks an unpacked folder against the embedded files.
fn inspect(root: &Path, files: &[(&str, &[u8])], package: &str) -> Found {
    let marker = root.join(package).join(COMPLETE);
    match std::fs::symlink_metadata(root) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Found::Missing,
        Err(e) => return Found::Bad(e.to_string()),
        Ok(_) => {}
    }
    if let Err(e) = private_fs::check_tree(root) {
        return Found::Bad(e.to_string());
    }
    if !marker.is_file() {
        return Found::Bad("it was never finished".into());
    }
    // Every path that may be there: the files, the marker, their folders.
    let pkg = Path::new(package);
    let mut expected: HashSet<PathBuf> = HashSet::new();
    for name in files
        .iter()
        .map(|(n, _)| *n)
        .chain(std::iter::once(COMPLETE))
    {
        let path = pkg.join(name);
        for a in path.ancestors() {
            if !a.as_os_str().is_empty() {
                expected.insert(a.to_path_buf());
            }
        }
    }
    if let Some(extra) = unexpected(root, Path::new(""), &expected) {
        return Found::Bad(format!("{} is not one of its files", extra.display()));
    }
    for (name, bytes) in files {
        let path = root.join(package).join(name);
        match std::fs::read(&path) {
            Ok(found) if found == *bytes => {}
            Ok(_) => return Found::Bad(format!("{name} differs")),
            Err(e) => return Found::Bad(format!("{name}: {e}")),
        }
    }
    Found::Good
}

/// The first entry under `root/rel` that is not expected; Python's
/// `__pycache__` folders of `.pyc` files are.
fn unexpected(root: &Path, rel: &Path, expected: &HashSet<PathBuf>) -> Option<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join(rel)) else {
        return Some(rel.to_path_buf());
    };
    for entry in entries.flatten() {
        let path = rel.join(entry.file_name());
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if entry.file_name() == "__pycache__" && is_dir {
            // Python's byte code, and the temporary files it writes it
            // through (`m.cpython-311.pyc.<id>`) while a worker compiles.
            let Ok(pycs) = std::fs::read_dir(entry.path()) else {
                return Some(path);
            };
            for pyc in pycs.flatten() {
                let name = pyc.file_name();
                let file = pyc.file_type().is_ok_and(|t| t.is_file());
                if !file || !name.to_string_lossy().contains(".pyc") {
                    return Some(path.join(name));
                }
            }
            continue;
        }
        if !expected.contains(&path) {
            return Some(path);
        }
        if is_dir {
            if let Some(p) = unexpected(root, &path, expected) {
                return Some(p);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const FILES: &[(&str, &[u8])] = &[("__init__.py", b"x = 1\n"), ("sub/m.py", b"y = 2\n")];

    fn cache(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flw-unpack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        private_fs::ensure_private_dir(&d).unwrap()
    }

    #[test]
    fn unpacks_once_and_checks_what_is_there() {
        let c = cache("once");
        let root = unpack(&c, "python", "v1", FILES, "flw").unwrap();
        assert_eq!(
            std::fs::read(root.join("flw/sub/m.py")).unwrap(),
            b"y = 2\n"
        );
        let mode = std::fs::metadata(root.join("flw/__init__.py")).unwrap();
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
        assert_eq!(inspect(&root, FILES, "flw"), Found::Good);
        // Python's byte code is expected.
        std::fs::create_dir(root.join("flw/__pycache__")).unwrap();
        std::fs::write(root.join("flw/__pycache__/m.cpython-311.pyc"), b"").unwrap();
        assert_eq!(inspect(&root, FILES, "flw"), Found::Good);
        let _ = std::fs::remove_dir_all(&c);
    }

    #[test]
    fn planted_or_changed_files_are_replaced() {
        for plant in ["sitecustomize.py", "flw/json.py", "flw/__init__.py"] {
            let c = cache("plant");
            let root = unpack(&c, "python", "v1", FILES, "flw").unwrap();
            std::fs::write(root.join(plant), b"import os; os.system('id')\n").unwrap();
            assert!(
                matches!(inspect(&root, FILES, "flw"), Found::Bad(_)),
                "{plant}"
            );
            let again = unpack(&c, "python", "v1", FILES, "flw").unwrap();
            assert_eq!(inspect(&again, FILES, "flw"), Found::Good, "{plant}");
            assert_eq!(
                std::fs::read(again.join("flw/__init__.py")).unwrap(),
                b"x = 1\n"
            );
            assert!(!again.join("sitecustomize.py").exists());
            let _ = std::fs::remove_dir_all(&c);
        }
    }

    #[test]
    fn a_file_others_can_write_is_not_trusted() {
        let c = cache("mode");
        let root = unpack(&c, "python", "v1", FILES, "flw").unwrap();
        std::fs::set_permissions(
            root.join("flw/__init__.py"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        assert!(matches!(inspect(&root, FILES, "flw"), Found::Bad(_)));
        unpack(&c, "python", "v1", FILES, "flw").unwrap();
        let _ = std::fs::remove_dir_all(&c);
    }
}
