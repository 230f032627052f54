//! `flw reload`: ask running flw servers to reload their workers (SIGHUP).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::instances::{self, Instance};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A worker script or flw.toml: reload the servers that run it. Without
    /// it, every running flw server of this user reloads.
    target: Option<PathBuf>,
    /// Reload only the server with this process id.
    #[arg(long)]
    pid: Option<u32>,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let target = args.target.as_deref().map(same_file);
    if let (Some(t), Some(given)) = (&target, &args.target) {
        if !t.exists() {
            anyhow::bail!("{} not found", given.display());
        }
    }
    let chosen: Vec<Instance> = instances::running()
        .into_iter()
        .filter(|i| args.pid.is_none_or(|p| p == i.pid))
        .filter(|i| target.as_ref().is_none_or(|t| serves(i, t)))
        .collect();
    if chosen.is_empty() {
        let what = match (&args.target, args.pid) {
            (Some(t), _) => format!(" serves {}", t.display()),
            (None, Some(p)) => format!(" has pid {p}"),
            (None, None) => " is running".to_string(),
        };
        eprintln!(
            "flw reload: no flw server of this user{what} (servers register in {})",
            instances::dir().map_or_else(|e| e.to_string(), |d| d.display().to_string())
        );
        return Ok(ExitCode::from(super::EXIT_CALL_FAILED));
    }
    for i in chosen {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(i.pid)?);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
            .map_err(|e| anyhow::anyhow!("cannot signal flw pid {}: {e}", i.pid))?;
        let scripts: Vec<String> = i.scripts.iter().map(|s| s.display().to_string()).collect();
        println!(
            "reloading flw {} (pid {}): {}",
            i.command,
            i.pid,
            scripts.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A path in the form paths are compared in.
fn same_file(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_path_buf())
}

/// Whether the server runs `target` as a script or as its config.
fn serves(i: &Instance, target: &Path) -> bool {
    i.scripts.iter().any(|s| same_file(s) == target)
        || i.config.as_deref().is_some_and(|c| same_file(c) == target)
}
