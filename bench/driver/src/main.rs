//! `flw-bench`: the benchmark driver of flw (issue 3).
//!
//! It starts flw and its peers (the official MCP Python SDK, a raw Python
//! floor, a minimal Go server) on pipes, runs every workload against each
//! with the same low-overhead client, and writes a Markdown report plus the
//! raw numbers as JSON. The graph workload runs `flw run` and PocketFlow
//! as commands instead; the http workload loads `flw serve` and the SDK's
//! HTTP server with its own HTTP client. `bash bench/run` builds everything
//! and runs it.

mod http;
mod peers;
mod procfs;
mod report;
mod server;
mod sysinfo;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clap::Parser;

use crate::peers::{Family, Paths};
use crate::workloads::{progress, Ctx, Workload};

/// Benchmarks flw against the MCP Python SDK, a raw Python floor and a Go server.
#[derive(Debug, Parser)]
#[command(name = "flw-bench", version, args_override_self = true)]
struct Args {
    /// Write the Markdown report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write the raw numbers as JSON to this file [default with --out: bench/results.json].
    #[arg(long)]
    json: Option<PathBuf>,
    /// Servers to run: flw, sdk, floor, go.
    #[arg(long, value_delimiter = ',', default_value = "flw,sdk,floor,go")]
    peers: Vec<String>,
    /// Workloads to run: latency, throughput, cpu, io, coldstart, cancel, memory,
    /// footprint, swap, graph, http, waits (or a..l), or all.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    workloads: Vec<String>,
    /// Shorter windows and fewer repetitions, for a smoke run.
    #[arg(long)]
    quick: bool,
    /// The repository root [default: found from the current directory].
    #[arg(long)]
    root: Option<PathBuf>,
    /// The command shown in the report (bench/run passes its own).
    #[arg(long, hide = true)]
    command: Option<String>,
}

/// The nearest folder at or above the current one that holds bench/peers.
fn find_root() -> Option<PathBuf> {
    let cwd = std::env::current_dir().ok()?;
    cwd.ancestors()
        .find(|d| d.join("bench/peers/flw_tools.py").is_file())
        .map(Path::to_path_buf)
}

fn parse_list<T>(
    names: &[String],
    all: &[T],
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, String>
where
    T: Copy + Ord,
{
    let mut out = Vec::new();
    for n in names.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        if n == "all" {
            out.extend_from_slice(all);
        } else {
            out.push(parse(n).ok_or_else(|| format!("unknown name {n:?}"))?);
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let started = Instant::now();
    progress("flw-bench starting");
    let families = match parse_list(&args.peers, &Family::ALL, Family::parse) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("flw-bench: --peers: {e} (use flw, sdk, floor, go)");
            return ExitCode::from(2);
        }
    };
    let selected = match parse_list(&args.workloads, &Workload::ALL, Workload::parse) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("flw-bench: --workloads: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(root) = args.root.clone().or_else(find_root) else {
        eprintln!("flw-bench: run it inside the flw repository (or pass --root)");
        return ExitCode::from(2);
    };
    let root = std::path::absolute(&root).unwrap_or(root);
    let tmp = std::env::temp_dir().join(format!("flw-bench-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&tmp) {
        eprintln!("flw-bench: cannot create {}: {e}", tmp.display());
        return ExitCode::from(2);
    }
    let ctx = Ctx {
        paths: Paths {
            root: root.clone(),
            tmp: tmp.clone(),
        },
        quick: args.quick,
        families,
        failures: AtomicUsize::new(0),
    };
    let sys = sysinfo::SysInfo::collect(&ctx.paths);
    let mut sections = Vec::new();
    for w in selected {
        sections.push(match w {
            Workload::Latency => workloads::latency::run(&ctx),
            Workload::Throughput => workloads::throughput::run(&ctx),
            Workload::Cpu => workloads::cpu::run(&ctx),
            Workload::Io => workloads::io::run(&ctx),
            Workload::ColdStart => workloads::coldstart::run(&ctx),
            Workload::Cancel => workloads::cancel::run(&ctx),
            Workload::Memory => workloads::memory::run(&ctx),
            Workload::Footprint => workloads::footprint::run(&ctx),
            Workload::Swap => workloads::swap::run(&ctx),
            Workload::Graph => workloads::graph::run(&ctx),
            Workload::Http => workloads::http::run(&ctx),
            Workload::Waits => workloads::waits::run(&ctx),
        });
    }
    let command = args.command.clone().unwrap_or_else(|| {
        let argv: Vec<String> = std::env::args().collect();
        argv.join(" ")
    });
    let run = report::Run {
        sys,
        command,
        quick: args.quick,
        wall_s: started.elapsed().as_secs_f64(),
        sections,
    };
    let targets = report::targets(&run);
    for t in &targets {
        let mark = match t.ok {
            Some(true) => "ok  ",
            Some(false) => "MISS",
            None => "n/a ",
        };
        eprintln!("  [{mark}] {}: {}", t.name, t.measured);
    }
    // No absolute paths of this machine in the files: the root becomes
    // relative, the private temporary folder `$TMP`.
    let root_text = format!("{}/", root.display());
    let tmp_text = tmp.display().to_string();
    let scrub = |s: String| s.replace(&root_text, "").replace(&tmp_text, "$TMP");
    let md = scrub(report::markdown(&run, &targets));
    let json_path = args
        .json
        .clone()
        .or_else(|| args.out.as_ref().map(|_| root.join("bench/results.json")));
    let mut code = ExitCode::SUCCESS;
    match &args.out {
        Some(out) => match std::fs::write(out, &md) {
            Ok(()) => progress(&format!("wrote {}", out.display())),
            Err(e) => {
                eprintln!("flw-bench: cannot write {}: {e}", out.display());
                code = ExitCode::FAILURE;
            }
        },
        None => print!("{md}"),
    }
    if let Some(p) = json_path {
        let text = serde_json::to_string_pretty(&report::json(&run, &targets)).unwrap_or_default();
        let text = scrub(text);
        match std::fs::write(&p, text + "\n") {
            Ok(()) => progress(&format!("wrote {}", p.display())),
            Err(e) => {
                eprintln!("flw-bench: cannot write {}: {e}", p.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    // A benchmark that lost calls or servers must not look like a pass
    // (bench/run is also the smoke test of scripts/test.sh).
    let failed_calls: u64 = run
        .sections
        .iter()
        .flat_map(|s| &s.results)
        .map(|r| r.failed)
        .sum();
    if failed_calls > 0 {
        eprintln!("flw-bench: {failed_calls} call(s) failed; see the tables");
        code = ExitCode::FAILURE;
    }
    if ctx.failures.load(Ordering::Relaxed) > 0 {
        progress(&format!(
            "servers failed: their logs are kept in {}",
            tmp.display()
        ));
        code = ExitCode::FAILURE;
    } else {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    code
}
