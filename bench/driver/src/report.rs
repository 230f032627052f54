//! The Markdown report, the targets of issue 3, and the JSON of raw numbers.

use std::fmt::Write as _;

use serde_json::{json, Map, Value};

use crate::peers::{
    Family, FlwVariant, Peer, CANCEL_GRACE_MS, DEFAULTS, DEFAULTS_TS, DEFAULT_CANCEL_GRACE_MS,
    ENV_REMOVED, FLW_VARIANTS, SHARED_1,
};
use crate::sysinfo::SysInfo;
use crate::workloads::{Fmt, PeerResult, Section, Workload};

/// Everything one run produced.
#[derive(Debug)]
pub struct Run {
    /// The environment.
    pub sys: SysInfo,
    /// The command line that produced the run.
    pub command: String,
    /// `--quick` was given.
    pub quick: bool,
    /// Wall time of the whole driver run, in seconds.
    pub wall_s: f64,
    /// The workloads' results, in order.
    pub sections: Vec<Section>,
}

/// One line of the targets table.
#[derive(Debug, Clone)]
pub struct Target {
    /// The issue that set it (3 or 17).
    pub issue: u32,
    /// The target, as the issue states it.
    pub name: String,
    /// What was measured.
    pub measured: String,
    /// Met (`Some(true)`), missed, or not measured.
    pub ok: Option<bool>,
}

/// `1234567.8` → `1,234,568`.
pub fn thousands(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

/// Formats one value.
pub fn fmt(v: f64, f: Fmt) -> String {
    if v.is_infinite() {
        return match f {
            Fmt::Secs | Fmt::Times => "unfinished".into(),
            _ => ">10 s (never)".into(),
        };
    }
    if v.is_nan() {
        return "—".into();
    }
    match f {
        Fmt::Int => thousands(v),
        Fmt::Dec2 => format!("{v:.2}"),
        Fmt::Micros => thousands(v),
        Fmt::Millis => format!("{v:.1}"),
        Fmt::Mb => format!("{:.1}", v / 1e6),
        Fmt::Kb => format!("{:.1}", v / 1e3),
        Fmt::Secs => format!("{v:.2}"),
        Fmt::Times => format!("{v:.2}×"),
    }
}

fn ratio(a: f64, b: f64) -> String {
    let r = a / b;
    if r >= 10.0 {
        format!("{r:.0}×")
    } else if r >= 0.1 {
        format!("{r:.2}×")
    } else {
        format!("{r:.3}×")
    }
}

fn section_table(out: &mut String, s: &Section) {
    let _ = write!(out, "| |");
    for r in &s.results {
        let _ = write!(out, " {} |", r.peer.label);
    }
    let _ = write!(out, "\n| --- |");
    for _ in &s.results {
        let _ = write!(out, " ---: |");
    }
    out.push('\n');
    let cell = |r: &PeerResult, text: String| {
        if r.skipped.is_some() {
            "skipped".to_string()
        } else {
            text
        }
    };
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    for row in &s.rows {
        if s.results.iter().all(|r| r.get(&row.key).is_none()) {
            continue;
        }
        let cells = s
            .results
            .iter()
            .map(|r| cell(r, r.get(&row.key).map_or("—".into(), |v| fmt(v, row.fmt))))
            .collect();
        rows.push((row.title.clone(), cells));
    }
    if s.workload != Workload::Footprint {
        let cells = s
            .results
            .iter()
            .map(|r| {
                let text = if r.failed > 0 {
                    format!("**{}**", r.failed)
                } else {
                    "0".into()
                };
                cell(r, text)
            })
            .collect();
        rows.push(("failed calls".into(), cells));
    }
    for (title, cells) in rows {
        let _ = writeln!(out, "| {title} | {} |", cells.join(" | "));
    }
}

fn section_ratios(out: &mut String, s: &Section) {
    for ra in &s.ratios {
        let Some((best, v)) = s.best_flw(&ra.key, ra.higher_better) else {
            continue;
        };
        let mut parts = Vec::new();
        for f in [Family::Sdk, Family::Floor, Family::Go] {
            if let Some(pv) = s.family(f).and_then(|p| p.get(&ra.key)) {
                if pv > 0.0 && pv.is_finite() {
                    parts.push(format!(
                        "**{}** the {} ({})",
                        ratio(v, pv),
                        Peer::family_label(f),
                        fmt(pv, row_fmt(s, &ra.key))
                    ));
                }
            }
        }
        if parts.is_empty() {
            continue;
        }
        let dir = if ra.higher_better {
            "higher is better"
        } else {
            "lower is better"
        };
        let _ = writeln!(
            out,
            "- {} ({dir}): best flw variant `{}` at {} is {}.",
            ra.title,
            best.peer.label,
            fmt(v, row_fmt(s, &ra.key)),
            parts.join(", ")
        );
    }
}

fn row_fmt(s: &Section, key: &str) -> Fmt {
    s.rows
        .iter()
        .find(|r| r.key == key)
        .map_or(Fmt::Dec2, |r| r.fmt)
}

fn section(out: &mut String, s: &Section) {
    let _ = writeln!(out, "## {}\n", s.title);
    for p in &s.about {
        let _ = writeln!(out, "{p}\n");
    }
    // No columns: a flw-only workload without flw in --peers.
    if !s.results.is_empty() {
        section_table(out, s);
        out.push('\n');
    }
    let before = out.len();
    section_ratios(out, s);
    for r in &s.results {
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "- {}: skipped: {why}", r.peer.label);
        }
        for n in &r.notes {
            let _ = writeln!(out, "- {}: {n}", r.peer.label);
        }
    }
    for n in &s.notes {
        let _ = writeln!(out, "- {n}");
    }
    if out.len() > before {
        out.push('\n');
    }
}

fn find(run: &Run, w: Workload) -> Option<&Section> {
    run.sections.iter().find(|s| s.workload == w)
}

fn failures(r: &PeerResult) -> String {
    if r.failed > 0 {
        format!(" ({} failed calls)", r.failed)
    } else {
        String::new()
    }
}

/// A target `flw ÷ peer` (on `key`) compared with `limit`.
#[allow(clippy::too_many_arguments)]
fn ratio_target(
    run: &Run,
    name: &str,
    w: Workload,
    key: &str,
    flw: Option<&str>,
    peer: Family,
    at_least: bool,
    limit: f64,
) -> Target {
    let missing = |why: &str| Target {
        issue: 3,
        name: name.into(),
        measured: format!("not measured ({why})"),
        ok: None,
    };
    let Some(s) = find(run, w) else {
        return missing("workload not run");
    };
    let flw = match flw {
        Some(label) => s.result(label).and_then(|r| r.get(key).map(|v| (r, v))),
        None => s.best_flw(key, at_least),
    };
    let Some((fr, fv)) = flw else {
        return missing("no flw result");
    };
    let Some(pr) = s.family(peer) else {
        return missing(&format!("no {} result", Peer::family_label(peer)));
    };
    let Some(pv) = pr.get(key).filter(|v| *v > 0.0) else {
        return missing(&format!("no {} result", Peer::family_label(peer)));
    };
    let r = fv / pv;
    let f = row_fmt(s, key);
    let ok = (if at_least { r >= limit } else { r <= limit }) && fr.failed == 0;
    Target {
        issue: 3,
        name: name.into(),
        measured: format!(
            "{}: {} vs {}: {}{}",
            fr.peer.label,
            fmt(fv, f),
            fmt(pv, f),
            ratio(fv, pv),
            failures(fr)
        ),
        ok: Some(ok),
    }
}

/// Evaluates the targets of issue 3 on a run.
pub fn targets(run: &Run) -> Vec<Target> {
    let mut t = vec![
        ratio_target(
            run,
            "echo throughput at 256 in flight ≥ 25× the SDK's",
            Workload::Throughput,
            "d256.calls_per_s",
            None,
            Family::Sdk,
            true,
            25.0,
        ),
        ratio_target(
            run,
            "echo throughput at 256 in flight ≥ 0.4× the raw floor's",
            Workload::Throughput,
            "d256.calls_per_s",
            None,
            Family::Floor,
            true,
            0.4,
        ),
        ratio_target(
            run,
            "echo p50 ≤ 2× the raw floor's",
            Workload::Latency,
            "p50_us",
            None,
            Family::Floor,
            false,
            2.0,
        ),
        ratio_target(
            run,
            "CPU-bound throughput ≥ 1.8× the SDK's (flw isolated ×2)",
            Workload::Cpu,
            "d64.calls_per_s",
            Some("flw isolated ×2"),
            Family::Sdk,
            true,
            1.8,
        ),
        ratio_target(
            run,
            "50 ms sleep tool ≥ 4× the SDK's at 256 in flight",
            Workload::Io,
            "d256.calls_per_s",
            None,
            Family::Sdk,
            true,
            4.0,
        ),
        ratio_target(
            run,
            "cold start to tools/list ≤ 1/10 of the SDK's (flw isolated ×2)",
            Workload::ColdStart,
            "median_ms",
            Some("flw isolated ×2"),
            Family::Sdk,
            false,
            0.1,
        ),
    ];
    let limit = CANCEL_GRACE_MS as f64 + 20.0;
    match find(run, Workload::Cancel) {
        Some(s) => {
            for r in s.results.iter().filter(|r| r.peer.family == Family::Flw) {
                let name = format!(
                    "cancel-to-dead ≤ grace + 20 ms = {limit:.0} ms ({})",
                    r.peer.label
                );
                t.push(match r.get("both_ms") {
                    Some(v) if r.skipped.is_none() => Target {
                        issue: 3,
                        name,
                        measured: format!(
                            "{} (grandchild {}, connection {}){}",
                            ms(v),
                            ms(r.get("child_ms").unwrap_or(f64::NAN)),
                            ms(r.get("conn_ms").unwrap_or(f64::NAN)),
                            failures(r)
                        ),
                        ok: Some(v <= limit && r.failed == 0),
                    },
                    _ => Target {
                        issue: 3,
                        name,
                        measured: "not measured".into(),
                        ok: None,
                    },
                });
            }
        }
        None => t.push(Target {
            issue: 3,
            name: format!("cancel-to-dead ≤ grace + 20 ms = {limit:.0} ms"),
            measured: "not measured (workload not run)".into(),
            ok: None,
        }),
    }
    let mem = find(run, Workload::Memory);
    let flw_mem: Vec<&PeerResult> = mem.map_or(Vec::new(), |s| {
        s.results
            .iter()
            .filter(|r| r.peer.family == Family::Flw && r.skipped.is_none())
            .collect()
    });
    let worst_idle = flw_mem
        .iter()
        .filter_map(|r| r.get("idle_rss").map(|v| (r, v)))
        .reduce(|a, b| if b.1 > a.1 { b } else { a });
    t.push(match worst_idle {
        Some((r, v)) => Target {
            issue: 3,
            name: "supervisor idle RSS ≤ 15 MB".into(),
            measured: format!("{} MB (worst variant: {})", fmt(v, Fmt::Mb), r.peer.label),
            ok: Some(v <= 15e6),
        },
        None => Target {
            issue: 3,
            name: "supervisor idle RSS ≤ 15 MB".into(),
            measured: "not measured".into(),
            ok: None,
        },
    });
    for r in &flw_mem {
        if let Some(v) = r.get("per_call") {
            t.push(Target {
                issue: 3,
                name: format!(
                    "≤ 4 KB per in-flight call at {} ({})",
                    fmt(r.get("in_flight").unwrap_or(f64::NAN), Fmt::Int),
                    r.peer.label
                ),
                measured: format!(
                    "{} KB per call (supervisor RSS){}",
                    fmt(v, Fmt::Kb),
                    failures(r)
                ),
                ok: Some(v <= 4e3 && r.failed == 0),
            });
        }
    }
    if flw_mem.is_empty() {
        t.push(Target {
            issue: 3,
            name: "≤ 4 KB per in-flight call at 10,000".into(),
            measured: "not measured".into(),
            ok: None,
        });
    }
    let stripped = find(run, Workload::Footprint)
        .and_then(|s| s.family(Family::Flw))
        .and_then(|r| r.get("stripped").or(r.get("binary")));
    t.push(Target {
        issue: 3,
        name: "stripped release binary ≤ 15 MB".into(),
        measured: stripped.map_or("not measured".into(), |v| format!("{} MB", fmt(v, Fmt::Mb))),
        ok: stripped.map(|v| v <= 15e6),
    });
    t.extend(targets_17(run));
    t
}

/// The result of the column `label` in the section of `w`, when measured.
fn column<'a>(run: &'a Run, w: Workload, label: &str) -> Option<&'a PeerResult> {
    find(run, w).and_then(|s| s.result(label))
}

/// A target of issue 17 on one metric of one column: `value <= limit`.
fn at_most(
    name: String,
    r: Option<&PeerResult>,
    key: &str,
    limit: f64,
    show: impl Fn(f64) -> String,
) -> Target {
    let Some((r, v)) = r.and_then(|r| r.get(key).map(|v| (r, v))) else {
        return Target {
            issue: 17,
            name,
            measured: "not measured".into(),
            ok: None,
        };
    };
    Target {
        issue: 17,
        name,
        measured: format!("{}: {}{}", r.peer.label, show(v), failures(r)),
        ok: Some(v <= limit && r.failed == 0),
    }
}

/// The targets of issue 17 (massive concurrency on the defaults), each a
/// ratio within this run or a bound.
fn targets_17(run: &Run) -> Vec<Target> {
    use crate::workloads::waits::{key, Kind, REPLACEMENT_ONLY};
    let defaults = DEFAULTS.label();
    let defaults_ts = DEFAULTS_TS.label();
    let mut t = Vec::new();
    for (kind, label, what) in [
        (Kind::Async, &defaults, "an async Python tool"),
        (Kind::Sync, &defaults, "a sync Python tool"),
        (Kind::Async, &defaults_ts, "an async TypeScript tool"),
    ] {
        let r = column(run, Workload::Waits, label);
        let ideal = r.and_then(|r| r.get(&key(kind, 256, "ideal_ms")));
        let wall = r.and_then(|r| r.get(&key(kind, 256, "wall_s")));
        let answered = r.and_then(|r| r.get(&key(kind, 256, "answered")));
        let show = move |v: f64| match (wall, ideal) {
            (Some(w), Some(i)) if v.is_finite() => {
                format!("{w:.2} s vs one call {:.2} s: {v:.2}×", i / 1e3)
            }
            _ => format!(
                "unfinished: {} of 256 answered",
                answered.map_or("?".into(), thousands)
            ),
        };
        t.push(at_most(
            format!("256 one-second calls of {what} within 1.3× of one call, on the defaults"),
            r,
            &key(kind, 256, "ratio"),
            1.3,
            show,
        ));
    }
    let mut echo = ratio_target(
        run,
        "echo at 256 in flight on the defaults ≥ 25× the SDK's",
        Workload::Throughput,
        "d256.calls_per_s",
        Some(&defaults),
        Family::Sdk,
        true,
        25.0,
    );
    echo.issue = 17;
    t.push(echo);
    let mut spawn = ratio_target(
        run,
        "spawn to the first tool result on the defaults ≤ the raw floor's",
        Workload::ColdStart,
        "first_call_ms",
        Some(&defaults),
        Family::Floor,
        false,
        1.0,
    );
    spawn.issue = 17;
    t.push(spawn);
    let d = column(run, Workload::Waits, &defaults);
    let worst = [Kind::Async, Kind::Sync]
        .into_iter()
        .filter_map(|k| d.and_then(|r| r.get(&key(k, 256, "pss")).map(|v| (k, v))))
        .reduce(|a, b| if b.1 > a.1 { b } else { a });
    let mb = |v: f64| format!("{} MB", fmt(v, Fmt::Mb));
    // A bound on memory holds only for a burst that ran: one cut off
    // unfinished never had its calls in the workers at once.
    let finished = |mut target: Target, r: Option<&PeerResult>, k: Kind, n: usize| {
        let wall = r.and_then(|r| r.get(&key(k, n, "wall_s")));
        if target.ok.is_some() && wall.is_none_or(f64::is_infinite) {
            target.ok = Some(false);
            target.measured.push_str(&format!(
                " (the {} burst of {n} did not finish, so its calls never all ran at once)",
                k.name()
            ));
        }
        target
    };
    t.push(match worst {
        Some((k, _)) => finished(
            at_most(
                format!(
                "total PSS with 256 model-like Python calls in flight on the defaults ≤ 1 GB (the \
                 larger of async and sync: {})",
                k.name()
            ),
                d,
                &key(k, 256, "pss"),
                1e9,
                mb,
            ),
            d,
            k,
            256,
        ),
        None => at_most(
            "total PSS with 256 model-like Python calls in flight on the defaults ≤ 1 GB".into(),
            None,
            "",
            1e9,
            mb,
        ),
    });
    let shared = column(run, Workload::Waits, &SHARED_1.label());
    t.push(finished(
        at_most(
            format!(
                "total PSS with 1,000 async calls in flight in a shared pool ≤ 300 MB ({})",
                SHARED_1.label()
            ),
            shared,
            &key(Kind::Async, 1000, "pss"),
            300e6,
            mb,
        ),
        shared,
        Kind::Async,
        1000,
    ));
    for label in [defaults.clone(), REPLACEMENT_ONLY.label()] {
        let r = column(run, Workload::Waits, &label);
        t.push(at_most(
            format!(
                "cancel to the next call's result on a fresh worker, minus cancel_grace, ≤ 10 ms \
                 at p50 ({label})"
            ),
            r,
            "repl_p50",
            10.0,
            |v| {
                let p90 = r.and_then(|r| r.get("repl_p90")).unwrap_or(f64::NAN);
                format!("p50 {} (p90 {})", ms(v), ms(p90))
            },
        ));
        t.push(at_most(
            format!(
                "a cancel kills the call's worker within cancel_grace + 20 ms ({label}; the \
                 slowest of the cancels above)"
            ),
            r,
            "dead_max",
            20.0,
            |v| format!("grace + {}", ms(v)),
        ));
    }
    t
}

/// Milliseconds with their unit, or "never".
fn ms(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.1} ms")
    } else {
        fmt(v, Fmt::Millis)
    }
}

/// A variant's line: its label and its pool settings.
pub fn variant_line(v: &FlwVariant) -> String {
    if v.defaults {
        return format!(
            "`{}`: `flw mcp bench/peers/{}`, no flw.toml and no flags: the pool runs on this \
             build's defaults (flw's default cancel_grace is {} ms)",
            v.label(),
            v.script,
            DEFAULT_CANCEL_GRACE_MS
        );
    }
    format!(
        "`{}`: mode = \"{}\", instances = {}, max_concurrency = {}, queue = {}, cancel_grace = \"{}ms\"",
        v.label(),
        v.mode,
        v.instances,
        v.max_concurrency,
        v.queue,
        CANCEL_GRACE_MS
    )
}

/// The whole report.
pub fn markdown(run: &Run, targets: &[Target]) -> String {
    let s = &run.sys;
    let mut out = String::new();
    let _ = writeln!(out, "# Benchmarks\n");
    let _ = writeln!(
        out,
        "Produced by `{}` on {}, at commit {}; the run took {:.1} min.{}\n",
        run.command,
        s.date,
        s.commit,
        run.wall_s / 60.0,
        if run.quick {
            " **Quick mode**: short windows, numbers are only a smoke test."
        } else {
            ""
        }
    );
    let _ = writeln!(out, "| machine | |\n| --- | --- |");
    let _ = writeln!(out, "| CPU | {} ({} cores) |", s.cpu, s.cores);
    let _ = writeln!(out, "| kernel | {} |", s.kernel);
    let _ = writeln!(out, "| load average (1 min) at start | {} |", s.load);
    let _ = writeln!(out, "| Python | {} |", s.python);
    let _ = writeln!(out, "| mcp (SDK peer) | {} |", s.mcp);
    let _ = writeln!(out, "| Go | {} |", s.go);
    let _ = writeln!(out, "| flw | {} |\n", s.flw);
    let _ = writeln!(
        out,
        "Run it all with `bash bench/run` (it builds flw and the driver, creates \
         `bench/.venv-mcp` and `bench/.venv-pocketflow`, builds the Go peer, then runs \
         `bench/driver`). Run a subset with e.g. \
         `bash bench/run --peers flw,floor --workloads latency,throughput --quick`. Peers: `flw`, \
         `sdk`, `floor`, `go`; workloads: `latency`, `throughput`, `cpu`, `io`, `coldstart`, \
         `cancel`, `memory`, `footprint`, `swap`, `graph`, `http`, `waits` (or `a`..`l`). Raw \
         numbers: `bench/results.json`.\n"
    );
    let _ = writeln!(
        out,
        "One driver (`bench/driver`, Rust, std threads and blocking pipes, \
         no async runtime) talks newline-delimited JSON-RPC over stdio to every server, except in \
         (k), where its HTTP/1.1 client loads `flw serve` and the SDK's Streamable HTTP server \
         (see there). The servers:\n"
    );
    let _ = writeln!(
        out,
        "- **flw**: `target/release/flw mcp bench/peers/flw_tools.py` on its defaults, and \
         `target/release/flw mcp --config flw.toml` with the pool `bench/peers/flw_tools.py` \
         (workers on the system `python3`; the swap workload serves a copy of \
         `bench/peers/swap_tools.py` instead; (l) also serves `bench/peers/flw_tools.ts` on \
         Node). Variants:"
    );
    let mut seen: Vec<FlwVariant> = Vec::new();
    for (_, vs) in FLW_VARIANTS {
        for v in *vs {
            if !seen.contains(v) {
                seen.push(*v);
                let _ = writeln!(out, "  - {}", variant_line(v));
            }
        }
    }
    let _ = writeln!(
        out,
        "- **MCP SDK**: `bench/peers/mcp_sdk_server.py`, `MCPServer` of the official Python SDK \
         on stdio, in `bench/.venv-mcp`. Same tool bodies as flw's, byte for byte.\n\
         - **raw floor**: `bench/peers/raw_floor.py`, a stdlib-only Python loop: big reads, \
         `json.loads`/`json.dumps`, one write per batch; sleeps on a timer heap (`wait_sync` on \
         a thread per call); no cancellation. The cost no Python worker behind a pipe can \
         avoid.\n\
         - **Go**: `bench/peers/go`, a minimal stdlib-only Go server: a goroutine per call, one \
         batching writer, cancellation through a context.\n"
    );
    let _ = writeln!(
        out,
        "Every server starts in its own process group with the driver's environment minus {}; \
         its stderr goes to a log file.\n",
        ENV_REMOVED.map(|v| format!("`{v}`")).join(", ")
    );
    for sec in &run.sections {
        section(&mut out, sec);
    }
    for issue in [3, 17] {
        let _ = writeln!(out, "## Targets (issue {issue})\n");
        let _ = writeln!(
            out,
            "| target | measured (flw vs peer: ratio) | met |\n| --- | --- | :---: |"
        );
        for t in targets.iter().filter(|t| t.issue == issue) {
            let mark = match t.ok {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "—",
            };
            let _ = writeln!(out, "| {} | {} | {mark} |", t.name, t.measured);
        }
        out.push('\n');
    }
    if targets.iter().any(|t| t.ok.is_some()) {
        let _ = writeln!(
            out,
            "\"Best flw variant\" is the best of the variants run for that workload; a target \
             whose flw side had failed calls is not met.\n"
        );
    }
    out.push_str(ANALYSIS);
    out
}

/// What bounds the numbers, found by profiling (perf, valgrind's massif);
/// kept with the tables so a reader of a miss knows where it comes from.
const ANALYSIS: &str = "\
## What bounds the numbers

- **Noise.** This is a shared 2-core VM: between full runs the SDK's echo rate \
has ranged from 800 to 1,600 calls/s and the raw floor's from 58,000 to 110,000. \
Compare the ratios of one run, not absolute numbers across runs.
- **Memory per call in flight** is bounded by rmcp, the MCP library flw serves \
stdio with: it spawns one task per request, and valgrind's massif puts that task \
at about 6 KB (rmcp's request handling future, the request, its context and the \
response). flw's own state per call (the pending map entry, the reply channel, \
the lease) is under 1 KB. Boxing flw's handler future made the total larger, not \
smaller. Getting under 4 KB needs a leaner request path in rmcp.
- **Echo throughput** is CPU-bound on 2 cores shared by the driver, the \
supervisor and the workers. Per call, the supervisor spends about 17-20 µs \
(much of it in rmcp: untagged JSON-RPC decoding, a spawned task and a \
cancellation token per request, and in scheduler wake-ups) and each Python \
worker about 20 µs, of which 10 µs is decoding, binding, running and encoding \
and the rest is reading small batches (about 3 lines per read at 256 in flight).
- **Cold start to `tools/list`** is answered from the manifest of the script's \
last run (flw keeps it in `~/.cache/flw/manifests`). The first start of a \
script, and the \"first echo result\" row, include starting Python (90-100 ms \
here, mostly site-packages' `.pth` files) and importing the script.
- **The 50 ms sleep at 256 in flight** cannot exceed 5,120 calls/s; flw gets \
within 5-10 % of that, so the ratio to the SDK depends mostly on how slow the \
SDK is in that run.
";

fn result_json(r: &PeerResult) -> Value {
    let metrics: Map<String, Value> = r
        .metrics
        .iter()
        .map(|(k, v)| {
            let v = if v.is_finite() { json!(v) } else { Value::Null };
            (k.clone(), v)
        })
        .collect();
    json!({
        "family": r.peer.family.name(),
        "flw_config": r.peer.variant.map(|v| if v.defaults {
            json!({"defaults": true, "script": v.script, "cancel_grace_ms": v.cancel_grace_ms()})
        } else {
            json!({
                "mode": v.mode, "instances": v.instances, "max_concurrency": v.max_concurrency,
                "queue": v.queue, "cancel_grace_ms": v.cancel_grace_ms(),
            })
        }),
        "metrics": metrics,
        "never": r.metrics.iter().filter(|(_, v)| v.is_infinite()).map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        "failed_calls": r.failed,
        "skipped": r.skipped,
        "notes": r.notes,
    })
}

/// The raw numbers.
pub fn json(run: &Run, targets: &[Target]) -> Value {
    let mut workloads = Map::new();
    for s in &run.sections {
        let peers: Map<String, Value> = s
            .results
            .iter()
            .map(|r| (r.peer.label.clone(), result_json(r)))
            .collect();
        workloads.insert(
            s.workload.name().into(),
            json!({"title": s.title, "peers": peers, "notes": s.notes}),
        );
    }
    json!({
        "meta": {
            "system": run.sys.to_json(),
            "command": run.command,
            "quick": run.quick,
            "wall_s": run.wall_s,
        },
        "workloads": workloads,
        "targets": targets.iter().map(|t| json!({
            "issue": t.issue, "target": t.name, "measured": t.measured, "met": t.ok,
        })).collect::<Vec<_>>(),
    })
}
