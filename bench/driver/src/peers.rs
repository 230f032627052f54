//! The servers under test: flw in several configurations, and its peers.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::server::Launch;
use crate::workloads::Workload;

/// Which family a server belongs to (the `--peers` filter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// `flw mcp` with a config written by the driver.
    Flw,
    /// The official MCP Python SDK (`MCPServer`).
    Sdk,
    /// The raw floor: a stdlib-only Python loop.
    Floor,
    /// The minimal Go server.
    Go,
    /// PocketFlow in one Python process: the reference of the graph workload.
    /// Not a server and not in [`Family::ALL`]: the graph workload runs it
    /// whenever it runs flw.
    PocketFlow,
}

impl Family {
    /// Every family, in table order.
    pub const ALL: [Family; 4] = [Family::Flw, Family::Sdk, Family::Floor, Family::Go];

    /// The name used by `--peers`.
    pub fn name(self) -> &'static str {
        match self {
            Family::Flw => "flw",
            Family::Sdk => "sdk",
            Family::Floor => "floor",
            Family::Go => "go",
            Family::PocketFlow => "pocketflow",
        }
    }

    /// Parses a `--peers` name.
    pub fn parse(s: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == s)
    }
}

/// How flw runs the pool: one line of the variant table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlwVariant {
    /// flw's defaults: `flw mcp SCRIPT`, no flw.toml and no flags. The pool
    /// fields below are then not written anywhere (see [`FlwVariant::config`]).
    pub defaults: bool,
    /// The tool script in bench/peers.
    pub script: &'static str,
    /// `isolated` or `shared`.
    pub mode: &'static str,
    /// Worker processes.
    pub instances: u32,
    /// Calls per process in shared mode.
    pub max_concurrency: u32,
    /// Calls that may wait in the supervisor.
    pub queue: u32,
}

/// The cancel grace every tuned flw variant is configured with.
pub const CANCEL_GRACE_MS: u64 = 100;

/// flw's own default `cancel_grace` (supervisor/src/config.rs), which the
/// defaults variants run with. Keep it in step with the supervisor.
pub const DEFAULT_CANCEL_GRACE_MS: u64 = 1_000;

const fn variant(mode: &'static str, instances: u32, max_concurrency: u32) -> FlwVariant {
    FlwVariant {
        defaults: false,
        script: "flw_tools.py",
        mode,
        instances,
        max_concurrency,
        queue: 20_000,
    }
}

const fn defaults(script: &'static str) -> FlwVariant {
    FlwVariant {
        defaults: true,
        script,
        mode: "",
        instances: 0,
        max_concurrency: 0,
        queue: 0,
    }
}

/// `flw mcp bench/peers/flw_tools.py` with no flw.toml and no flags: what a
/// new user gets.
pub const DEFAULTS: FlwVariant = defaults("flw_tools.py");
/// The same for the TypeScript tools, `flw mcp bench/peers/flw_tools.ts`.
pub const DEFAULTS_TS: FlwVariant = defaults("flw_tools.ts");

/// The default mode with one worker per core on this 2-core machine.
pub const ISOLATED_2: FlwVariant = variant("isolated", 2, 256);
/// One isolated worker (CPU scaling: 1 vs 2).
pub const ISOLATED_1: FlwVariant = variant("isolated", 1, 256);
/// One shared worker; max_concurrency covers 1,000 (I/O) and 10,000 (memory) in flight.
pub const SHARED_1: FlwVariant = variant("shared", 1, 10_000);
/// Two shared workers.
pub const SHARED_2: FlwVariant = variant("shared", 2, 10_000);

/// The flw variants each workload runs. Edit this table to change them; the
/// SDK, the raw floor and Go run every workload (subject to `--peers`).
/// flw's defaults come first wherever they run, so the README can quote them.
pub const FLW_VARIANTS: &[(Workload, &[FlwVariant])] = &[
    (Workload::Latency, &[DEFAULTS, ISOLATED_2, SHARED_1]),
    (
        Workload::Throughput,
        &[DEFAULTS, ISOLATED_2, SHARED_1, SHARED_2],
    ),
    (Workload::Cpu, &[ISOLATED_1, ISOLATED_2]),
    (Workload::Io, &[SHARED_1, SHARED_2]),
    (Workload::ColdStart, &[DEFAULTS, ISOLATED_2, SHARED_1]),
    (Workload::Cancel, &[ISOLATED_2, SHARED_1]),
    (Workload::Memory, &[DEFAULTS, ISOLATED_2, SHARED_1]),
    (Workload::Swap, &[ISOLATED_2, SHARED_1]),
    // isolated ×1 runs only the cancel-to-replacement measurement of (l).
    (
        Workload::Waits,
        &[DEFAULTS, DEFAULTS_TS, SHARED_1, ISOLATED_1],
    ),
];

/// Workloads only flw runs: the peers have no such feature (hot swap, graphs;
/// the graph workload compares flw with PocketFlow instead).
pub const FLW_ONLY: &[Workload] = &[Workload::Swap, Workload::Graph];

impl FlwVariant {
    /// The column label, e.g. `flw isolated ×2`, `flw defaults`, `flw defaults (TS)`.
    pub fn label(&self) -> String {
        let base = if self.defaults {
            "flw defaults".to_string()
        } else {
            format!("flw {} ×{}", self.mode, self.instances)
        };
        if self.is_ts() {
            format!("{base} (TS)")
        } else {
            base
        }
    }

    /// Whether the tools are the TypeScript ones (run by Node).
    pub fn is_ts(&self) -> bool {
        self.script.ends_with(".ts")
    }

    /// The `cancel_grace` this variant runs with, in ms.
    pub fn cancel_grace_ms(&self) -> u64 {
        if self.defaults {
            DEFAULT_CANCEL_GRACE_MS
        } else {
            CANCEL_GRACE_MS
        }
    }

    /// The `flw.toml` for a tuned variant (a defaults variant has none).
    pub fn config(&self, script: &Path) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "[pools.bench]");
        let _ = writeln!(s, "script = {:?}", script.display().to_string());
        let _ = writeln!(s, "mode = {:?}", self.mode);
        let _ = writeln!(s, "instances = {}", self.instances);
        let _ = writeln!(s, "max_concurrency = {}", self.max_concurrency);
        let _ = writeln!(s, "queue = {}", self.queue);
        let _ = writeln!(s, "cancel_grace = \"{CANCEL_GRACE_MS}ms\"");
        s
    }
}

/// One server to benchmark: a column of the tables.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The column label.
    pub label: String,
    /// Its family.
    pub family: Family,
    /// For flw, its configuration.
    pub variant: Option<FlwVariant>,
}

impl Peer {
    /// The label of a non-flw family.
    pub fn family_label(f: Family) -> &'static str {
        match f {
            Family::Flw => "flw",
            Family::Sdk => "MCP SDK",
            Family::Floor => "raw floor",
            Family::Go => "Go",
            Family::PocketFlow => "PocketFlow",
        }
    }

    /// The peers of `workload`, in column order, restricted to `families`.
    pub fn for_workload(workload: Workload, families: &[Family]) -> Vec<Peer> {
        let mut out = Vec::new();
        for f in Family::ALL {
            if !families.contains(&f) || (f != Family::Flw && FLW_ONLY.contains(&workload)) {
                continue;
            }
            if f == Family::Flw {
                let variants = FLW_VARIANTS
                    .iter()
                    .find(|(w, _)| *w == workload)
                    .map_or(&[ISOLATED_2][..], |(_, v)| v);
                out.extend(variants.iter().map(|v| Peer {
                    label: v.label(),
                    family: f,
                    variant: Some(*v),
                }));
            } else {
                out.push(Peer {
                    label: Peer::family_label(f).to_string(),
                    family: f,
                    variant: None,
                });
            }
        }
        out
    }

    /// The fewest tools its `tools/list` must show (the TypeScript tools
    /// are fewer than the Python ones).
    pub fn min_tools(&self) -> usize {
        if self.variant.is_some_and(|v| v.is_ts()) {
            2
        } else {
            4
        }
    }

    /// A file-name-safe form of the label.
    pub fn slug(&self) -> String {
        self.label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    }
}

/// Variables removed from every server's environment, so that the run does
/// not depend on the shell it starts from: Python caches bytecode and buffers
/// stdout as it does by default, and flw logs at its default level.
pub const ENV_REMOVED: [&str; 3] = ["PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "FLW_LOG"];

/// Paths of everything the peers need, relative to the repository root.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The repository root (absolute, found at run time).
    pub root: PathBuf,
    /// A private temporary folder for configs and logs.
    pub tmp: PathBuf,
}

impl Paths {
    /// `$FLW_BIN` when set (the smoke run of scripts/test.sh uses the debug
    /// build), else `target/release/flw`.
    pub fn flw(&self) -> PathBuf {
        std::env::var_os("FLW_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.root.join("target/release/flw"))
    }
    /// The SDK venv's interpreter.
    pub fn sdk_python(&self) -> PathBuf {
        self.root.join("bench/.venv-mcp/bin/python")
    }
    /// The interpreter of the PocketFlow venv (the graph workload's reference).
    pub fn pocketflow_python(&self) -> PathBuf {
        self.root.join("bench/.venv-pocketflow/bin/python")
    }
    /// The Go peer's binary.
    pub fn go_binary(&self) -> PathBuf {
        self.root.join("bench/peers/go/flw-bench-go")
    }
    /// A peer script.
    pub fn script(&self, name: &str) -> PathBuf {
        self.root.join("bench/peers").join(name)
    }

    /// How to start `peer`, or why it cannot start here.
    pub fn launch(&self, peer: &Peer) -> Result<Launch, String> {
        let need = |p: PathBuf, hint: &str| {
            if p.exists() {
                Ok(p)
            } else {
                Err(format!("{} not found ({hint})", self.rel(&p)))
            }
        };
        match peer.family {
            Family::Flw => {
                let variant = peer.variant.unwrap_or(ISOLATED_2);
                let cfg = self.tmp.join(format!("{}.toml", peer.slug()));
                let script = need(self.script(variant.script), "part of the repo")?;
                self.flw_launch(&variant, &script, &cfg)
            }
            Family::Sdk => Ok(Launch {
                program: need(self.sdk_python(), "bench/run creates it")?,
                args: vec![self.script("mcp_sdk_server.py").display().to_string()],
                env: vec![],
                env_remove: removed(),
            }),
            Family::Floor => Ok(Launch {
                program: "python3".into(),
                args: vec![self.script("raw_floor.py").display().to_string()],
                env: vec![],
                env_remove: removed(),
            }),
            Family::Go => Ok(Launch {
                program: need(self.go_binary(), "bench/run builds it when go is on PATH")?,
                args: vec![],
                env: vec![],
                env_remove: removed(),
            }),
            Family::PocketFlow => Err("PocketFlow is not a server (see the graph workload)".into()),
        }
    }

    /// How to start `flw mcp` with `variant` serving `script`; writes the
    /// config to `cfg`, except for a defaults variant, which gets the script
    /// on the command line and nothing else.
    pub fn flw_launch(
        &self,
        variant: &FlwVariant,
        script: &Path,
        cfg: &Path,
    ) -> Result<Launch, String> {
        let flw = self.flw();
        if !flw.exists() {
            return Err(format!(
                "{} not found (cargo build --release -p flw)",
                self.rel(&flw)
            ));
        }
        let args = if variant.defaults {
            vec!["mcp".into(), script.display().to_string()]
        } else {
            std::fs::write(cfg, variant.config(script))
                .map_err(|e| format!("cannot write {}: {e}", cfg.display()))?;
            vec!["mcp".into(), "--config".into(), cfg.display().to_string()]
        };
        Ok(Launch {
            program: flw,
            args,
            env: vec![],
            env_remove: removed(),
        })
    }

    /// `p` relative to the root, for messages and reports.
    pub fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .unwrap_or(p)
            .display()
            .to_string()
    }
}

fn removed() -> Vec<String> {
    ENV_REMOVED.iter().map(|s| s.to_string()).collect()
}
