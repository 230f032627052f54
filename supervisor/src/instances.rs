//! The running `flw` servers of this user, so that commands such as
//! `flw reload` can find them.
//!
//! Each server writes `<pid>.json` (its pid, start time, command, scripts and
//! config) into `$XDG_RUNTIME_DIR/flw/`, or `run/` in flw's cache folder
//! without one, and removes it when it exits. The folder is private (0700,
//! checked by [`crate::private_fs`]) and only files of this user's are
//! read: `flw ps` sends the bearer token to the address a file names. A file whose process is gone, or whose pid
//! now belongs to another process (the start time differs), is stale and is
//! removed by whoever reads it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::private_fs::{self, PrivateError};

/// One running server, as it registered itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    /// Its process id.
    pub pid: u32,
    /// When it started, in clock ticks since boot (from `/proc`), to tell a
    /// reused pid from the server; 0 where `/proc` is missing.
    pub start_ticks: u64,
    /// The subcommand, e.g. `mcp`.
    pub command: String,
    /// Absolute paths of the scripts its pools run.
    pub scripts: Vec<PathBuf>,
    /// Its `flw.toml`, if it was given one.
    pub config: Option<PathBuf>,
    /// Where `flw serve` listens, e.g. `http://127.0.0.1:8077`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The folder of the registry, made private if it is not there.
pub fn dir() -> Result<PathBuf, PrivateError> {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(d) if d.is_absolute() => private_fs::ensure_private_dir(&d.join("flw")),
        _ => {
            let d = private_fs::cache_dir()?.join("run");
            private_fs::make_dir(&d)?;
            private_fs::check_entry(&d)?;
            Ok(d)
        }
    }
}

/// Removes this process's entry when dropped.
pub struct Registration {
    file: PathBuf,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Registers this process; failing to is not an error worth stopping for
/// (the server just cannot be found by `flw reload`).
pub fn register(
    command: &str,
    scripts: Vec<PathBuf>,
    config: Option<PathBuf>,
    url: Option<String>,
) -> Option<Registration> {
    let pid = std::process::id();
    let me = Instance {
        pid,
        start_ticks: start_ticks(pid).unwrap_or(0),
        command: command.into(),
        scripts,
        config,
        url,
    };
    let dir = match dir() {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!("cannot register this server: {e}");
            return None;
        }
    };
    let file = dir.join(format!("{pid}.json"));
    match private_fs::write_file(&file, &serde_json::to_vec(&me).unwrap_or_default()) {
        Ok(()) => Some(Registration { file }),
        Err(e) => {
            tracing::debug!("cannot register in {}: {e}", dir.display());
            None
        }
    }
}

/// The servers running now; stale entries are removed on the way.
pub fn running() -> Vec<Instance> {
    let Ok(entries) = dir().and_then(|d| {
        std::fs::read_dir(&d).map_err(|e| PrivateError::Io {
            path: d,
            message: e.to_string(),
        })
    }) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "json") || private_fs::check_entry(&path).is_err() {
            continue;
        }
        let Some(instance) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Instance>(&b).ok())
        else {
            continue;
        };
        if is_alive(&instance) {
            found.push(instance);
        } else {
            let _ = std::fs::remove_file(&path);
        }
    }
    found.sort_by_key(|i| i.pid);
    found
}

/// Whether the instance's process still runs (and is the same process).
fn is_alive(i: &Instance) -> bool {
    let Ok(pid) = i32::try_from(i.pid) else {
        return false;
    };
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err() {
        return false;
    }
    match start_ticks(i.pid) {
        Some(t) if i.start_ticks != 0 => t == i.start_ticks,
        _ => true,
    }
}

/// Field 22 of `/proc/PID/stat`: the process's start time.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat =
        std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: skip past its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time_is_read_and_a_dead_pid_is_not_alive() {
        let me = std::process::id();
        assert!(start_ticks(me).is_some_and(|t| t > 0));
        let alive = Instance {
            pid: me,
            start_ticks: start_ticks(me).unwrap(),
            command: "test".into(),
            scripts: vec![],
            config: None,
            url: None,
        };
        assert!(is_alive(&alive));
        let reused = Instance {
            start_ticks: alive.start_ticks + 1,
            ..alive.clone()
        };
        assert!(!is_alive(&reused), "same pid, other start time");
        let gone = Instance {
            pid: i32::MAX as u32,
            ..alive
        };
        assert!(!is_alive(&gone));
    }
}
