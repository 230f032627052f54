//! The machine and tool versions, for the report header.

use std::process::Command;

use serde_json::{json, Value};

use crate::peers::Paths;

/// What the header of the report says about the environment.
#[derive(Debug, Clone)]
pub struct SysInfo {
    /// UTC date and time of the run.
    pub date: String,
    /// `git rev-parse --short HEAD` (with `-dirty` when the tree has changes).
    pub commit: String,
    /// CPU model from /proc/cpuinfo.
    pub cpu: String,
    /// Cores available.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// `python3 --version`, without the word Python.
    pub python: String,
    /// The mcp version in bench/.venv-mcp.
    pub mcp: String,
    /// `go version`, without the words "go version".
    pub go: String,
    /// `flw --version`.
    pub flw: String,
    /// The 1-minute load average when the run started (other work on the machine skews results).
    pub load: String,
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let mut s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if s.is_empty() {
        s = String::from_utf8_lossy(&out.stderr).trim().to_string();
    }
    Some(s)
}

impl SysInfo {
    /// Collects everything; missing tools show as "not found".
    pub fn collect(paths: &Paths) -> SysInfo {
        let na = || "not found".to_string();
        let root = paths.root.display().to_string();
        let commit = run("git", &["-C", &root, "rev-parse", "--short", "HEAD"]).map(|c| {
            let dirty = run(
                "git",
                &["-C", &root, "status", "--porcelain", "--untracked-files=no"],
            )
            .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} (with uncommitted changes)")
            } else {
                c
            }
        });
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or_else(na, |s| s.trim().to_string());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| na(), |s| s.trim().to_string());
        let mcp = run(
            &paths.sdk_python().display().to_string(),
            &[
                "-c",
                "import importlib.metadata as m; print(m.version('mcp'))",
            ],
        );
        SysInfo {
            date: run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(na),
            commit: commit.unwrap_or_else(na),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            kernel: format!("Linux {kernel}"),
            python: run("python3", &["--version"])
                .map(|v| v.trim_start_matches("Python ").to_string())
                .unwrap_or_else(na),
            mcp: mcp.unwrap_or_else(na),
            go: run("go", &["version"])
                .map(|v| v.trim_start_matches("go version ").to_string())
                .unwrap_or_else(na),
            flw: run(&paths.flw().display().to_string(), &["--version"]).unwrap_or_else(na),
            load: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next().map(String::from))
                .unwrap_or_else(na),
        }
    }

    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "date": self.date, "commit": self.commit, "cpu": self.cpu, "cores": self.cores,
            "kernel": self.kernel, "python": self.python, "mcp": self.mcp, "go": self.go,
            "flw": self.flw, "load_average_1m_at_start": self.load,
        })
    }
}
