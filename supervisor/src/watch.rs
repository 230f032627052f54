//! Watching the pools' files: a saved change in a script's folder (or in a
//! pool's `watch_paths`) asks that pool to reload once the writes have
//! settled for [`DEBOUNCE`].
//!
//! Folders are watched one by one (inotify on Linux), skipping caches and
//! tool folders ([`IGNORED_DIRS`], hidden folders, `watch_ignore` globs), so
//! a `node_modules` beside the script costs nothing. A file counts when its
//! extension is one a worker imports or reads as configuration
//! ([`WATCHED_EXTENSIONS`]); editors' temporary files do not. A file named
//! in `watch_paths` always counts.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use globset::{Glob, GlobSet, GlobSetBuilder};
use notify::{EventKind, RecursiveMode, Watcher as _};

use crate::pool::Pool;

/// Quiet time after the last change before a reload starts: editors write
/// a file in several steps (truncate, write, rename, chmod).
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// Folders never watched (besides every hidden one).
pub const IGNORED_DIRS: &[&str] = &[
    "__pycache__",
    "node_modules",
    "venv",
    "target",
    "dist-newstyle",
    "site-packages",
];

/// Extensions of files whose change starts a reload.
pub const WATCHED_EXTENSIONS: &[&str] = &[
    "py", "pyi", "js", "mjs", "cjs", "ts", "mts", "cts", "json", "toml", "yaml", "yml",
];

/// Most folders watched per pool; past it the rest are left out, with a warning.
const MAX_DIRS: usize = 2_000;

/// What one pool watches.
struct Watched {
    pool: Pool,
    /// Folders watched with everything under them.
    trees: Vec<PathBuf>,
    /// Single files (watched through their folder, as editors replace them).
    files: HashSet<PathBuf>,
    ignore: GlobSet,
    /// flw's own cache (manifests, unpacked SDKs), which flw writes itself.
    own_cache: Option<PathBuf>,
}

impl Watched {
    fn new(pool: Pool) -> anyhow::Result<Watched> {
        let cfg = pool.config();
        let mut trees = Vec::new();
        let mut files = HashSet::new();
        files.insert(cfg.script.clone());
        if let Some(dir) = cfg.script.parent() {
            trees.push(dir.to_path_buf());
        }
        for p in &cfg.watch_paths {
            if p.is_dir() {
                trees.push(p.clone());
            } else {
                files.insert(p.clone());
            }
        }
        let mut globs = GlobSetBuilder::new();
        for g in &cfg.watch_ignore {
            globs.add(Glob::new(g)?);
        }
        Ok(Watched {
            pool,
            trees,
            files,
            ignore: globs.build()?,
            own_cache: crate::sdk::cache_dir().ok(),
        })
    }

    /// Whether a change of `path` concerns this pool.
    fn wants(&self, path: &Path) -> bool {
        if self.files.contains(path) {
            return true;
        }
        if self.own_cache.as_ref().is_some_and(|c| path.starts_with(c)) {
            return false;
        }
        let watched_ext = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| WATCHED_EXTENSIONS.contains(&e));
        watched_ext
            && self.trees.iter().any(|root| {
                path.strip_prefix(root)
                    .is_ok_and(|rel| !self.ignored(rel, path.is_dir()))
            })
    }

    /// Whether `rel` (relative to a watched folder) is left out.
    fn ignored(&self, rel: &Path, is_dir: bool) -> bool {
        let mut parts = rel.components().peekable();
        while let Some(c) = parts.next() {
            let name = c.as_os_str().to_string_lossy();
            let last = parts.peek().is_none();
            if name.starts_with('.') || name.ends_with('~') {
                return true;
            }
            if (!last || is_dir) && IGNORED_DIRS.contains(&name.as_ref()) {
                return true;
            }
        }
        self.ignore.is_match(rel)
    }

    /// Whether `dir`, a folder under the tree `root`, is one to watch.
    fn watches_dir(&self, root: &Path, dir: &Path) -> bool {
        !self.own_cache.as_ref().is_some_and(|c| dir.starts_with(c))
            && dir
                .strip_prefix(root)
                .is_ok_and(|rel| !self.ignored(rel, true))
    }

    /// The folders to watch: each tree's folders, and the folder of each file.
    fn dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for root in &self.trees {
            self.walk(root, root, 0, &mut out);
        }
        out.extend(
            self.files
                .iter()
                .filter_map(|f| f.parent().map(Path::to_path_buf)),
        );
        out
    }

    fn walk(&self, root: &Path, dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
        if out.len() >= MAX_DIRS {
            tracing::warn!(
                pool = %self.pool.config().name,
                "watching only the first {MAX_DIRS} folders under {}; add watch_ignore globs for the rest",
                root.display()
            );
            return;
        }
        out.push(dir.to_path_buf());
        if depth >= 16 {
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir && self.watches_dir(root, &path) {
                self.walk(root, &path, depth + 1, out);
            }
        }
    }
}

/// Keeps the watches alive; dropping it stops watching.
pub struct WatchHandle {
    tx: std::sync::mpsc::Sender<Message>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        let _ = self.tx.send(Message::Stop);
    }
}

/// What the watching thread receives.
enum Message {
    /// A file event from notify.
    Event(notify::Result<notify::Event>),
    /// The handle was dropped.
    Stop,
}

/// Watches the files of `pools` and reloads a pool when its files change.
/// `None` when no pool is watched. Walking folders and looking at changed
/// paths is blocking work, so it all runs on a thread of its own, which
/// asks the pools (on the current runtime) to reload.
pub fn start(pools: Vec<Pool>) -> anyhow::Result<Option<WatchHandle>> {
    if pools.is_empty() {
        return Ok(None);
    }
    let runtime = tokio::runtime::Handle::try_current()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let events = tx.clone();
    let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        let _ = events.send(Message::Event(ev));
    })?;
    std::thread::Builder::new()
        .name("flw-watch".into())
        .spawn(move || {
            let _runtime = runtime.enter();
            let watched = match pools
                .into_iter()
                .map(Watched::new)
                .collect::<anyhow::Result<Vec<_>>>()
            {
                Ok(w) => w,
                Err(e) => {
                    tracing::warn!("cannot watch the worker scripts, so saves will not reload them (flw reload still does): {e:#}");
                    return;
                }
            };
            let mut watcher = watcher;
            let mut dirs: HashSet<PathBuf> = HashSet::new();
            for w in &watched {
                for dir in w.dirs() {
                    if dirs.insert(dir.clone()) {
                        // One folder that cannot be watched (no permission, gone, the
                        // inotify limit) must not turn watching off for the rest.
                        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                            tracing::warn!("cannot watch {}: {e}", dir.display());
                            dirs.remove(&dir);
                        }
                    }
                }
                tracing::debug!(pool = %w.pool.config().name, "watching {} folders", dirs.len());
            }
            run(watcher, dirs, watched, rx);
        })?;
    Ok(Some(WatchHandle { tx }))
}

/// Turns file events into reloads: collects changed paths per pool and
/// reloads each pool once nothing has changed for [`DEBOUNCE`].
fn run(
    mut watcher: notify::RecommendedWatcher,
    mut dirs: HashSet<PathBuf>,
    watched: Vec<Watched>,
    rx: std::sync::mpsc::Receiver<Message>,
) {
    // Pool index → the first changed file, for the log line.
    let mut dirty: BTreeMap<usize, PathBuf> = BTreeMap::new();
    let mut deadline = Instant::now();
    loop {
        let message = if dirty.is_empty() {
            rx.recv().ok()
        } else {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    for (i, path) in std::mem::take(&mut dirty) {
                        let name = path.file_name().map_or_else(
                            || path.display().to_string(),
                            |n| n.to_string_lossy().into_owned(),
                        );
                        watched[i].pool.request_reload(format!("{name} changed"));
                    }
                    continue;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => None,
            }
        };
        let event = match message {
            Some(Message::Event(ev)) => ev,
            Some(Message::Stop) | None => return,
        };
        let event = match event {
            Ok(ev) => ev,
            Err(e) => {
                tracing::warn!("file watching: {e}");
                continue;
            }
        };
        if event.need_rescan() {
            // The kernel's queue overflowed: changes may have been lost.
            for (i, w) in watched.iter().enumerate() {
                dirty
                    .entry(i)
                    .or_insert_with(|| w.pool.config().script.clone());
            }
            deadline = Instant::now() + DEBOUNCE;
            continue;
        }
        if matches!(event.kind, EventKind::Access(_) | EventKind::Other) {
            continue;
        }
        let gone = matches!(
            event.kind,
            EventKind::Remove(_) | EventKind::Modify(notify::event::ModifyKind::Name(_))
        );
        for path in &event.paths {
            if gone && !path.exists() {
                // A removed or moved-away folder loses its watch: forget it,
                // so that a folder made again at that path is watched again.
                dirs.retain(|d| !d.starts_with(path));
            }
            if path.is_dir() && !dirs.contains(path) {
                // Made, or moved in: watch it and what it holds, and reload,
                // since files written before its watch existed were missed.
                for i in add_new_dir(&mut watcher, &mut dirs, &watched, path) {
                    dirty.entry(i).or_insert_with(|| path.clone());
                    deadline = Instant::now() + DEBOUNCE;
                }
            }
            let mut wanted = false;
            for (i, w) in watched.iter().enumerate() {
                if w.wants(path) {
                    wanted = true;
                    dirty.entry(i).or_insert_with(|| path.clone());
                    deadline = Instant::now() + DEBOUNCE;
                }
            }
            if wanted && path.extension().is_some_and(|e| e == "py") {
                forget_bytecode(path);
            }
        }
    }
}

/// Removes the cached bytecode of a changed Python module. Python trusts a
/// `__pycache__` entry when the source's size and mtime in whole seconds
/// match, so a save of the same size within the second of the last import
/// would run the old code in the new generation.
fn forget_bytecode(source: &Path) {
    let (Some(dir), Some(stem)) = (source.parent(), source.file_stem()) else {
        return;
    };
    let prefix = format!("{}.", stem.to_string_lossy());
    let Ok(entries) = std::fs::read_dir(dir.join("__pycache__")) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(".pyc") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Watches a folder created under (or moved into) a watched tree, and the
/// folders in it; returns the indices of the pools whose trees hold it.
fn add_new_dir(
    watcher: &mut notify::RecommendedWatcher,
    dirs: &mut HashSet<PathBuf>,
    watched: &[Watched],
    path: &Path,
) -> Vec<usize> {
    let mut pools = Vec::new();
    for (i, w) in watched.iter().enumerate() {
        for root in w.trees.iter().filter(|root| w.watches_dir(root, path)) {
            pools.push(i);
            let depth = path
                .strip_prefix(root)
                .map_or(0, |rel| rel.components().count());
            let mut found = Vec::new();
            w.walk(root, path, depth, &mut found);
            for dir in found {
                if dirs.insert(dir.clone()) {
                    if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        tracing::warn!("cannot watch {}: {e}", dir.display());
                    }
                }
            }
        }
    }
    pools.dedup();
    pools
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watched(dir: &Path, ignore: &[&str]) -> Watched {
        let mut cfg = crate::config::PoolConfig::for_script(&dir.join("agent.py")).unwrap();
        cfg.watch_ignore = ignore.iter().map(|s| s.to_string()).collect();
        cfg.min_workers = 1;
        cfg.max_workers = 1;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        // The pool's workers never start: the runtime is not driven.
        Watched::new(Pool::start(cfg, tokio::sync::broadcast::channel(1).0)).unwrap()
    }

    #[test]
    fn sources_count_and_caches_temps_and_ignored_globs_do_not() {
        let dir = std::env::temp_dir().join(format!("flw-watch-test-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("lib")).unwrap();
        std::fs::write(dir.join("agent.py"), "").unwrap();
        let w = watched(&dir, &["data/**"]);
        assert!(w.wants(&dir.join("agent.py")));
        assert!(w.wants(&dir.join("lib/helpers.py")));
        assert!(w.wants(&dir.join("tools.ts")));
        assert!(w.wants(&dir.join("settings.json")));
        assert!(!w.wants(&dir.join("notes.txt")), "not a source extension");
        assert!(!w.wants(&dir.join("__pycache__/agent.cpython-311.pyc")));
        assert!(!w.wants(&dir.join("node_modules/x/index.js")));
        assert!(!w.wants(&dir.join(".git/config.json")));
        assert!(!w.wants(&dir.join(".agent.py.swp")));
        assert!(!w.wants(&dir.join("agent.py~")));
        assert!(!w.wants(&dir.join("data/rows.json")), "watch_ignore glob");
        assert!(!w.wants(Path::new("/elsewhere/agent.py")));
        let dirs = w.dirs();
        assert!(dirs.contains(&dir.join("lib")));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
