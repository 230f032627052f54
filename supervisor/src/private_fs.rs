//! Private folders and files: where flw keeps what it writes (its cache and
//! the registry of running servers), created 0700 and 0600 and checked, as
//! ssh checks its files, before anything in them is trusted.
//!
//! The cache folder is `$XDG_CACHE_HOME/flw`, else `$HOME/.cache/flw`. A
//! variable that is unset, empty or not an absolute path does not count (as
//! the XDG spec says), and a home whose cache cannot be made or is not
//! private is passed over. Without a usable one flw falls back to
//! `$TMPDIR/flw-UID` (`/tmp/flw-UID` without `TMPDIR`), made 0700. It never
//! uses a folder relative to the working directory or one shared between
//! users. A folder is private when it is no symbolic link, belongs to this
//! user, and no one else may write to it or to any folder above it (a
//! sticky folder such as `/tmp` excepted).

use std::fs::Metadata;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Why a folder or file cannot be trusted or made.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PrivateError {
    /// Reading or making it failed.
    #[error("{}: {message}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error, as text (io::Error is not Clone).
        message: String,
    },
    /// It is a symbolic link where a folder or file of flw's own must be.
    #[error("{} is a symbolic link; flw does not follow links in its own folders: remove it", path.display())]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// Another user owns it.
    #[error("{} belongs to uid {owner}, not to this user (uid {uid}), so flw does not trust what it holds: remove it, or set XDG_CACHE_HOME to a folder of your own", path.display())]
    NotOwned {
        /// The path.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        uid: u32,
    },
    /// Others may write to it.
    #[error("{} can be written by other users (mode {mode:04o}), so flw does not trust what it holds: run chmod go-w {}", path.display(), path.display())]
    WritableByOthers {
        /// The path.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// No candidate cache folder could be used.
    #[error("flw has no private cache folder it can use: {}", tried.join("; "))]
    NoCacheFolder {
        /// Each candidate and why it was passed over.
        tried: Vec<String>,
    },
}

impl PrivateError {
    fn io(path: &Path, e: &std::io::Error) -> PrivateError {
        PrivateError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    }
}

/// flw's private cache folder, chosen and made once per process (see the
/// module documentation for where it is).
pub fn cache_dir() -> Result<PathBuf, PrivateError> {
    // A failure is not kept: the next caller tries again.
    static DIR: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut chosen = DIR.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(dir) = &*chosen {
        return Ok(dir.clone());
    }
    let dir = choose_cache_dir(&CacheEnv::from_process())?;
    *chosen = Some(dir.clone());
    Ok(dir)
}

/// The variables that decide where the cache folder is.
#[derive(Debug, Default, Clone)]
pub struct CacheEnv {
    /// `XDG_CACHE_HOME`.
    pub xdg_cache_home: Option<std::ffi::OsString>,
    /// `HOME`.
    pub home: Option<std::ffi::OsString>,
    /// `TMPDIR`.
    pub tmpdir: Option<std::ffi::OsString>,
}

impl CacheEnv {
    /// This process's variables.
    pub fn from_process() -> CacheEnv {
        CacheEnv {
            xdg_cache_home: std::env::var_os("XDG_CACHE_HOME"),
            home: std::env::var_os("HOME"),
            tmpdir: std::env::var_os("TMPDIR"),
        }
    }

    /// The candidate folders, best first: never a relative one.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(xdg) = absolute(&self.xdg_cache_home) {
            out.push(xdg.join("flw"));
        }
        if let Some(home) = absolute(&self.home) {
            out.push(home.join(".cache").join("flw"));
        }
        let tmp = absolute(&self.tmpdir).unwrap_or_else(|| PathBuf::from("/tmp"));
        out.push(tmp.join(format!("flw-{}", uid())));
        out
    }
}

/// The value as a path when it is set, not empty, and absolute.
fn absolute(value: &Option<std::ffi::OsString>) -> Option<PathBuf> {
    value
        .as_ref()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
}

/// The first candidate of `env` that can be made private.
pub fn choose_cache_dir(env: &CacheEnv) -> Result<PathBuf, PrivateError> {
    let mut tried = Vec::new();
    for dir in env.candidates() {
        match ensure_private_dir(&dir) {
            Ok(real) => {
                if !tried.is_empty() {
                    tracing::warn!(
                        "using {} as flw's cache folder: {}",
                        real.display(),
                        tried.join("; ")
                    );
                }
                return Ok(real);
            }
            Err(e) => tried.push(e.to_string()),
        }
    }
    Err(PrivateError::NoCacheFolder { tried })
}

/// Makes `dir` (0700, with any missing parents 0700) unless it exists, and
/// checks that it and every folder above it are private; returns it with
/// symbolic links above it resolved. A folder of this user's that others
/// may read (but not write), such as one an older flw made 0755, is made
/// 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<PathBuf, PrivateError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PrivateError::io(dir, &e))?;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| PrivateError::io(dir, &e))?;
    check_own(dir, &meta)?;
    if !meta.is_dir() {
        return Err(PrivateError::Io {
            path: dir.to_path_buf(),
            message: "not a folder".into(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| PrivateError::io(dir, &e))?;
    }
    let real = std::fs::canonicalize(dir).map_err(|e| PrivateError::io(dir, &e))?;
    check_ancestors(&real)?;
    // A write proves the folder usable now (a read-only file system lets
    // the checks above pass).
    let probe = real.join(format!(".probe{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&probe)
        .map_err(|e| PrivateError::io(&real, &e))?;
    let _ = std::fs::remove_file(&probe);
    Ok(real)
}

/// Checks an entry of flw's own: no link, this user's, not writable by
/// others.
pub fn check_own(path: &Path, meta: &Metadata) -> Result<(), PrivateError> {
    if meta.file_type().is_symlink() {
        return Err(PrivateError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if meta.uid() != uid() {
        return Err(PrivateError::NotOwned {
            path: path.to_path_buf(),
            owner: meta.uid(),
            uid: uid(),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(PrivateError::WritableByOthers {
            path: path.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Checks the folders above `real` (a path without links): each belongs to
/// root or this user, and none that others may write to lacks the sticky
/// bit (in a sticky folder such as `/tmp` no one else can move ours away).
fn check_ancestors(real: &Path) -> Result<(), PrivateError> {
    for dir in real.ancestors().skip(1) {
        let meta = std::fs::symlink_metadata(dir).map_err(|e| PrivateError::io(dir, &e))?;
        if meta.uid() != 0 && meta.uid() != uid() {
            return Err(PrivateError::NotOwned {
                path: dir.to_path_buf(),
                owner: meta.uid(),
                uid: uid(),
            });
        }
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.mode() & 0o022 != 0 && !sticky {
            return Err(PrivateError::WritableByOthers {
                path: dir.to_path_buf(),
                mode: meta.mode() & 0o7777,
            });
        }
    }
    Ok(())
}

/// Checks one entry of flw's own with [`check_own`].
pub fn check_entry(path: &Path) -> Result<(), PrivateError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| PrivateError::io(path, &e))?;
    check_own(path, &meta)
}

/// Checks every entry under `root` (and `root`) with [`check_own`]. Python
/// makes its `__pycache__` folders with the user's umask (0775 under umask
/// 002): in them only the owner and links are checked, which is enough
/// under a cache folder that is 0700 (no one else can reach them).
pub fn check_tree(root: &Path) -> Result<(), PrivateError> {
    check_tree_in(root, false)
}

fn check_tree_in(path: &Path, in_pycache: bool) -> Result<(), PrivateError> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| PrivateError::io(path, &e))?;
    let in_pycache =
        in_pycache || (meta.is_dir() && path.file_name() == Some("__pycache__".as_ref()));
    match check_own(path, &meta) {
        Err(PrivateError::WritableByOthers { .. }) if in_pycache => {}
        other => other?,
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(|e| PrivateError::io(path, &e))? {
            let entry = entry.map_err(|e| PrivateError::io(path, &e))?;
            check_tree_in(&entry.path(), in_pycache)?;
        }
    }
    Ok(())
}

/// Takes every permission of group and others off `root` and everything
/// under it (links are left alone, and refused later by [`check_tree`]).
pub fn make_tree_private(root: &Path) -> Result<(), PrivateError> {
    let meta = std::fs::symlink_metadata(root).map_err(|e| PrivateError::io(root, &e))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(root, std::fs::Permissions::from_mode(meta.mode() & 0o7700))
            .map_err(|e| PrivateError::io(root, &e))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(root).map_err(|e| PrivateError::io(root, &e))? {
            let entry = entry.map_err(|e| PrivateError::io(root, &e))?;
            make_tree_private(&entry.path())?;
        }
    }
    Ok(())
}

/// Makes a folder under a private one (0700).
pub fn make_dir(dir: &Path) -> Result<(), PrivateError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| PrivateError::io(dir, &e))
}

/// Writes `bytes` to `path` (0600) through a temporary file beside it that
/// is renamed into place, so readers never see half a file; the temporary
/// file is removed when anything fails (a full disk leaves nothing behind).
pub fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Unique in this process too: two threads may write the same file.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.tmp{}-{n}", std::process::id()));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Writes a new file (0600) that must not exist yet.
pub fn create_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = f.write_all(bytes);
    if written.is_err() {
        drop(f);
        let _ = std::fs::remove_file(path);
    }
    written
}

/// This process's effective uid.
pub fn uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("flw-pfs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn empty_and_relative_variables_do_not_count() {
        let env = CacheEnv {
            xdg_cache_home: Some("".into()),
            home: Some("relative/home".into()),
            tmpdir: Some("".into()),
        };
        assert_eq!(
            env.candidates(),
            vec![PathBuf::from(format!("/tmp/flw-{}", uid()))]
        );
        let env = CacheEnv {
            xdg_cache_home: Some("/x".into()),
            home: Some("/h".into()),
            tmpdir: Some("/t".into()),
        };
        assert_eq!(
            env.candidates(),
            ["/x/flw", "/h/.cache/flw", &format!("/t/flw-{}", uid())]
                .map(PathBuf::from)
                .to_vec()
        );
    }

    #[test]
    fn a_folder_others_can_write_is_refused_and_an_unusable_home_passed_over() {
        let base = temp("others");
        let shared = base.join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = ensure_private_dir(&shared.join("flw")).unwrap_err();
        assert!(
            matches!(e, PrivateError::WritableByOthers { ref path, .. } if *path == shared),
            "{e}"
        );
        let env = CacheEnv {
            xdg_cache_home: Some(shared.clone().into()),
            home: Some("/dev/null".into()),
            tmpdir: Some(base.clone().into()),
        };
        let chosen = choose_cache_dir(&env).unwrap();
        assert_eq!(chosen, base.join(format!("flw-{}", uid())));
        let mode = std::fs::metadata(&chosen).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn an_own_folder_others_may_read_is_made_private() {
        let base = temp("read");
        let dir = base.join("flw");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn links_are_refused_in_a_tree() {
        let base = temp("link");
        std::fs::create_dir(base.join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", base.join("a/l")).unwrap();
        assert!(matches!(
            check_tree(&base),
            Err(PrivateError::Symlink { .. })
        ));
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn files_are_written_private_and_a_failed_write_leaves_nothing() {
        let base = temp("write");
        let f = base.join("m.json");
        write_file(&f, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o777, 0o600);
        // Into a folder that does not exist: the write fails, no tmp stays.
        assert!(write_file(&base.join("none/m.json"), b"{}").is_err());
        let names: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.json")]);
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn python_s_group_writable_byte_code_folders_pass() {
        let base = temp("pycache");
        std::fs::create_dir_all(base.join("flw/__pycache__")).unwrap();
        std::fs::write(base.join("flw/__pycache__/m.cpython-311.pyc"), b"").unwrap();
        std::fs::set_permissions(
            base.join("flw/__pycache__"),
            std::fs::Permissions::from_mode(0o775),
        )
        .unwrap();
        check_tree(&base).unwrap();
        std::fs::set_permissions(base.join("flw"), std::fs::Permissions::from_mode(0o775)).unwrap();
        assert!(matches!(
            check_tree(&base),
            Err(PrivateError::WritableByOthers { .. })
        ));
        let _ = std::fs::remove_dir_all(&base);
    }
}
