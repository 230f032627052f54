//! (i) Hot swap: how long after a save of its script flw serves the new
//! version, and what the swap costs a load that keeps running through it.
//! flw only: the peers have no hot swap.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{median, progress, Ctx, Fmt, PeerResult, Row, Section, Workload};
use crate::peers::{Peer, ISOLATED_2};
use crate::server::{LoadSpec, Notice, Server, Trace};

/// Calls kept in flight through the swaps.
pub const DEPTH: usize = 16;

/// The longest a saved version may take to serve before it counts as never.
pub const LIMIT: Duration = Duration::from_secs(10);

/// The tool script, in bench/peers.
const SCRIPT: &str = "swap_tools.py";

/// Its version line, rewritten for each swap.
const VERSION_LINE: &str = "VERSION = \"v1\"";

/// How one variant's run goes.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Saves of a new version.
    swaps: usize,
    /// Load before the measured span, after the first result.
    warmup: Duration,
    /// Load between a version's first result and the next save (and after the last).
    pause: Duration,
}

/// One save of the script.
#[derive(Debug)]
struct Swap {
    /// When the rename returned.
    saved: Instant,
    /// When the first result of the new version arrived.
    served: Option<Instant>,
}

/// The script's text with version `n` (`v{n}`).
fn version(template: &str, n: usize) -> String {
    template.replacen(VERSION_LINE, &format!("VERSION = \"v{n}\""), 1)
}

/// Writes `text` to `path` as editors save (a temporary file, then a
/// rename); returns when the rename was done.
fn save(path: &Path, text: &str) -> Result<Instant, String> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))?;
    Ok(Instant::now())
}

/// The `X` of flw's "pool P reloaded: generation N serves (started in X ms)".
fn started_in(text: &str) -> Option<f64> {
    let rest = text.split_once("reloaded: generation")?.1;
    let ms = rest.split_once("(started in ")?.1.split_once(" ms")?.0;
    ms.trim().parse().ok()
}

/// Spawns `flw mcp` on a fresh copy of the script and completes the handshake.
fn start(ctx: &Ctx, peer: &Peer, template: &str) -> Result<(Server, std::path::PathBuf), String> {
    let slug = peer.slug();
    // A folder per run: flw watches the script's whole folder.
    let dir = ctx.paths.tmp.join(format!("swap-{slug}"));
    let script = dir.join(SCRIPT);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&script, version(template, 1)))
        .map_err(|e| format!("cannot write {}: {e}", script.display()))?;
    let cfg = ctx.paths.tmp.join(format!("swap-{slug}.toml"));
    let variant = peer.variant.unwrap_or(ISOLATED_2);
    let launch = ctx.paths.flw_launch(&variant, &script, &cfg)?;
    let log = ctx.paths.tmp.join(format!("swap-{slug}.log"));
    let server = Server::spawn(&peer.label, &launch, &log)?;
    match server.handshake_expecting(Duration::from_secs(30), 1) {
        Ok(_) => Ok((server, script)),
        Err(e) => Err(ctx.failed(server, &e)),
    }
}

/// Saves versions 2, 3, ... while the load runs; stops at the first that
/// never serves.
fn swap_loop(
    server: &Server,
    script: &Path,
    template: &str,
    plan: Plan,
) -> Result<Vec<Swap>, String> {
    let mut swaps = Vec::new();
    for n in 2..plan.swaps + 2 {
        thread::sleep(plan.pause);
        let saved = save(script, &version(template, n))?;
        let served = server.wait_mark(&format!("v{n}"), saved + LIMIT);
        let took = served.map_or("never within 10 s".into(), |t| {
            format!("{:.1} ms after the save", ms(t - saved))
        });
        progress(&format!("  swap {}: v{n} served {took}", n - 1));
        swaps.push(Swap { saved, served });
        if served.is_none() {
            break;
        }
    }
    Ok(swaps)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Records the metrics of one run whose measured span is `[t0, t1)`.
fn record(
    r: &mut PeerResult,
    swaps: &[Swap],
    trace: &Trace,
    notices: &[Notice],
    (t0, t1): (Instant, Instant),
) {
    let delays: Vec<f64> = swaps
        .iter()
        .map(|s| s.served.map_or(f64::INFINITY, |t| ms(t - s.saved)))
        .collect();
    r.set(
        "swaps",
        swaps.iter().filter(|s| s.served.is_some()).count() as f64,
    );
    if let Some(m) = median(&delays) {
        r.set("p50_ms", m);
    }
    if let Some(m) = delays.iter().copied().reduce(f64::max) {
        r.set("max_ms", m);
    }
    // Swap windows: from each save to the first result of its version.
    let (mut in_calls, mut in_time) = (0, Duration::ZERO);
    for s in swaps {
        let end = s.served.unwrap_or(t1).min(t1);
        in_calls += trace.completed_between(s.saved, end);
        in_time += end.saturating_duration_since(s.saved);
    }
    let all = trace.completed_between(t0, t1);
    let out_time = (t1 - t0).saturating_sub(in_time);
    let steady = (all - in_calls) as f64 / out_time.as_secs_f64().max(1e-9);
    r.set("steady_calls_per_s", steady);
    if !in_time.is_zero() {
        let during = in_calls as f64 / in_time.as_secs_f64();
        r.set("swap_calls_per_s", during);
        r.set("swap_vs_steady", during / steady.max(1e-9));
    }
    // How long the replaced version still answered (its calls in flight).
    let tail = swaps.iter().enumerate().filter_map(|(i, s)| {
        let old = trace.mark(&format!("v{}", i + 1))?;
        Some(ms(old.last.saturating_duration_since(s.served?)))
    });
    if let Some(m) = tail.reduce(f64::max) {
        r.set("old_tail_ms", m);
    }
    let texts: Vec<String> = notices
        .iter()
        .filter(|n| n.at >= t0)
        .filter_map(Notice::text)
        .collect();
    let reported: Vec<f64> = texts.iter().filter_map(|t| started_in(t)).collect();
    r.set("reloads", reported.len() as f64);
    if let Some(m) = median(&reported) {
        r.set("reported_ms", m);
    }
    if reported.len() != swaps.len() {
        r.notes.push(format!(
            "flw announced {} reloads for {} saves",
            reported.len(),
            swaps.len()
        ));
    }
    for t in texts.iter().filter(|t| started_in(t).is_none()) {
        r.notes.push(format!("flw said: {t}"));
    }
    let changed = notices
        .iter()
        .filter(|n| n.at >= t0 && n.method == "notifications/tools/list_changed")
        .count();
    if changed > 0 {
        r.notes.push(format!(
            "{changed} notifications/tools/list_changed (the tools did not change)"
        ));
    }
}

/// Runs one flw variant: load, saves, metrics.
fn run_peer(ctx: &Ctx, peer: &Peer, template: &str, plan: Plan) -> PeerResult {
    let (server, script) = match start(ctx, peer, template) {
        Ok(s) => s,
        Err(e) => return PeerResult::skipped(peer, e),
    };
    let mut r = PeerResult::new(peer);
    server.start_traced(&LoadSpec {
        tool: "echo",
        args: json!({"text": "hello"}),
        depth: DEPTH,
        total: None,
        latencies: false,
    });
    let first = server.wait_mark("v1", Instant::now() + LIMIT);
    let (mut t0, mut swaps, mut failure) = (Instant::now(), Vec::new(), None);
    match first {
        None => failure = Some("no v1 echo result within 10 s".to_string()),
        Some(_) => {
            thread::sleep(plan.warmup);
            t0 = Instant::now();
            match swap_loop(&server, &script, template, plan) {
                Ok(s) => swaps = s,
                Err(e) => failure = Some(e),
            }
            if swaps.iter().any(|s| s.served.is_none()) {
                failure = Some("a saved version never served calls".into());
            }
        }
    }
    if failure.is_none() {
        thread::sleep(plan.pause);
    }
    let t1 = Instant::now();
    let (stats, trace) = server.stop_traced(Duration::from_secs(15));
    let notices = server.notices();
    r.failed += stats.errors;
    if let Some(e) = &stats.first_error {
        r.notes.push(format!("first failure: {e}"));
    }
    if stats.unanswered > 0 {
        r.notes.push(format!(
            "{} calls still unanswered 15 s after the load stopped",
            stats.unanswered
        ));
    }
    match failure {
        Some(e) => r.notes.push(ctx.failed(server, &e)),
        None => {
            server.shutdown(Duration::from_secs(5));
        }
    }
    if !swaps.is_empty() {
        record(&mut r, &swaps, &trace, &notices, (t0, t1));
    }
    let get = |k: &str| r.get(k).unwrap_or(f64::NAN);
    progress(&format!(
        "  save → new version: p50 {:.1} ms, max {:.1} ms (flw: started in {:.0} ms); \
         calls/s {:.0} steady, {:.0} during swaps{}",
        get("p50_ms"),
        get("max_ms"),
        get("reported_ms"),
        get("steady_calls_per_s"),
        get("swap_calls_per_s"),
        if r.failed > 0 {
            format!(", {} FAILED", r.failed)
        } else {
            String::new()
        }
    ));
    r
}

/// Runs the hot-swap workload.
pub fn run(ctx: &Ctx) -> Section {
    let plan = Plan {
        swaps: ctx.pick(5, 2),
        warmup: Duration::from_secs_f64(ctx.pick(1.0, 0.5)),
        pause: Duration::from_secs_f64(ctx.pick(1.5, 0.75)),
    };
    let mut results = Vec::new();
    let path = ctx.paths.script(SCRIPT);
    let template = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", ctx.paths.rel(&path)))
        .and_then(|t| {
            if t.contains(VERSION_LINE) {
                Ok(t)
            } else {
                Err(format!(
                    "{} has no line {VERSION_LINE}",
                    ctx.paths.rel(&path)
                ))
            }
        });
    let peers = ctx.peers(Workload::Swap);
    let mut notes = Vec::new();
    if peers.is_empty() {
        notes.push("Not run: `--peers` does not include flw.".to_string());
    }
    for peer in peers {
        progress(&format!("swap: {}", peer.label));
        results.push(match &template {
            Ok(t) => run_peer(ctx, &peer, t, plan),
            Err(e) => PeerResult::skipped(&peer, e.clone()),
        });
    }
    Section {
        workload: Workload::Swap,
        title: "(i) Hot swap: a save to its new version serving calls".into(),
        about: vec![
            format!(
                "flw only: the MCP SDK, the raw floor and Go have no hot swap. Each variant \
                 serves a copy of `bench/peers/{SCRIPT}` (one tool, `echo`, whose result starts \
                 with the script's version: `v1:hello`) in a folder of its own, with \
                 `flw mcp --config` (watching on, its default), under a load of {DEPTH} `echo` \
                 calls in flight (each reply sends the next call). After {:.1} s the driver \
                 saves a new version {} times (`v2`, `v3`, …: a temporary file renamed over \
                 the script, as editors save), each {:.2} s after the previous version first \
                 answered, and lets the load run {:.2} s after the last. A swap window lasts \
                 from a save (the rename) to the first result of its version; \"steady\" is the \
                 rest of the measured span. \"As flw reports it\" is the \"started in X ms\" of \
                 flw's `notifications/message` for each reload (from the start of the reload, \
                 after the debounce, until the new generation takes calls). \"Old-version \
                 results after the first new one\" is how long the replaced generation still \
                 answered: its calls in flight drain. A version not served within 10 s shows \
                 as never and fails the run.",
                plan.warmup.as_secs_f64(),
                plan.swaps,
                plan.pause.as_secs_f64(),
                plan.pause.as_secs_f64()
            ),
            "What bounds it: flw starts a reload only after the folder has been quiet for \
             its 100 ms debounce; then every worker of the new generation starts a Python \
             interpreter, imports the flw SDK and the script, and passes the worker \
             handshake, and the new generation takes calls only once all its workers have. \
             Meanwhile the old generation keeps serving the load, so on this 2-core machine \
             both generations, the supervisor and the driver share the CPU: the new workers \
             start slower than in (e), and the swap window's rate shows what the start \
             costs the calls in flight."
                .into(),
        ],
        rows: vec![
            Row::new(
                "save → first new-version result, p50 (ms)",
                "p50_ms",
                Fmt::Millis,
            ),
            Row::new(
                "save → first new-version result, max (ms)",
                "max_ms",
                Fmt::Millis,
            ),
            Row::new(
                "new generation start as flw reports it, median (ms)",
                "reported_ms",
                Fmt::Millis,
            ),
            Row::new(
                "old-version results after the first new one, max (ms)",
                "old_tail_ms",
                Fmt::Millis,
            ),
            Row::new("steady: calls/s", "steady_calls_per_s", Fmt::Int),
            Row::new("swap windows: calls/s", "swap_calls_per_s", Fmt::Int),
            Row::new("swap windows ÷ steady", "swap_vs_steady", Fmt::Dec2),
            Row::new("saves served", "swaps", Fmt::Int),
            Row::new("reloads flw announced", "reloads", Fmt::Int),
        ],
        results,
        ratios: vec![],
        notes,
    }
}
