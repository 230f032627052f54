//! (j) Graphs: flows run by `flw run`, against the same flows in PocketFlow
//! in one Python process. Two measurements: a batch node of CPU-bound items
//! (flw spreads them over its worker processes; PocketFlow's
//! `AsyncParallelBatchNode` runs them on one event loop, under one GIL), and
//! a loop of trivial nodes (what one transition costs).
//!
//! Unlike the other workloads this one starts commands, not servers: each
//! repetition is one `flw run` (events as JSON lines on stderr, the final
//! store on stdout) and one PocketFlow process, interleaved.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{median, progress, Ctx, Fmt, PeerResult, Row, Section, Workload};
use crate::peers::{Family, Peer, ENV_REMOVED};
use crate::procfs;

/// flw's flows, in bench/peers.
const FLOWS: &str = "graph_flows.py";
/// PocketFlow's side, in bench/peers.
const POCKETFLOW: &str = "pocketflow_batch.py";
/// The PocketFlow release `bench/run` installs (keep in step with it).
pub const POCKETFLOW_VERSION: &str = "0.0.3";
/// The target duration of one batch item.
pub const ITEM_MS: f64 = 3.0;
/// The item's `spin` count when calibration fails.
pub const DEFAULT_SPIN: u64 = 40_000;
/// The loop's count: `tick` runs this many times, then `stop` once.
pub const TICKS: u64 = 1_000;
/// The longest one command may take.
const LIMIT: Duration = Duration::from_secs(120);

/// The item's work, as in the Python peers: `spin(n)`.
fn spin(n: u64) -> u64 {
    let mut x = 0;
    for i in 0..n {
        x = (x * 31 + i) % 1_000_003;
    }
    x
}

/// A command that exited.
struct Done {
    /// From spawn to exit.
    wall_ms: f64,
    /// CPU time of the command and the descendants it waited for, over its wall time.
    cores: f64,
    stdout: String,
    stderr: String,
}

/// Runs `program args` in its own process group with the servers'
/// environment, stdout and stderr to `log.out` and `log.err`; fails on a
/// non-zero exit or after [`LIMIT`].
fn command(program: &Path, args: &[String], log: &Path) -> Result<Done, String> {
    let out_path = log.with_extension("out");
    let err_path = log.with_extension("err");
    let open =
        |p: &Path| File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()));
    let mut cmd = Command::new(program);
    for k in ENV_REMOVED {
        cmd.env_remove(k);
    }
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(open(&out_path)?)
        .stderr(open(&err_path)?)
        .process_group(0);
    let cpu0 = procfs::children_cpu_seconds();
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if t0.elapsed() > LIMIT => {
                procfs::kill_group(child.id() as i32);
                let _ = child.wait();
                return Err(format!(
                    "still running after {} s (killed); stderr: {}",
                    LIMIT.as_secs(),
                    err_path.display()
                ));
            }
            Ok(None) => thread::sleep(Duration::from_micros(500)),
            Err(e) => return Err(format!("cannot wait for {}: {e}", program.display())),
        }
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = procfs::children_cpu_seconds() - cpu0;
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    if !status.success() {
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let mut tail = tail.into_iter().rev().collect::<Vec<_>>().join(" | ");
        if let Some((i, _)) = tail.char_indices().nth(400) {
            tail.truncate(i);
            tail.push('…');
        }
        return Err(format!("{status}; stderr ({}): {tail}", err_path.display()));
    }
    Ok(Done {
        wall_ms: wall * 1e3,
        cores: cpu / wall.max(1e-9),
        stdout,
        stderr,
    })
}

/// The last line of `text` that parses as JSON.
fn last_json(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
}

/// One `flw run`.
struct FlwRun {
    /// The run's own time (`ms` of `run_finished`).
    run_ms: f64,
    /// Node visits (`steps` of `run_finished`).
    steps: f64,
    wall_ms: f64,
    cores: f64,
    /// The final store (stdout).
    shared: Value,
    /// `item_finished` events.
    items: usize,
}

/// Runs `flw run bench/peers/graph_flows.py FLOW --json STORE --events jsonl --instances N`.
fn flw_run(
    ctx: &Ctx,
    flow: &str,
    store: &Value,
    instances: usize,
    tag: &str,
) -> Result<FlwRun, String> {
    let script = ctx.paths.script(FLOWS);
    let args: Vec<String> = vec![
        "run".into(),
        script.display().to_string(),
        flow.into(),
        "--json".into(),
        store.to_string(),
        "--events".into(),
        "jsonl".into(),
        "--instances".into(),
        instances.to_string(),
    ];
    let log = ctx.paths.tmp.join(format!("graph-{tag}"));
    let done = command(&ctx.paths.flw(), &args, &log)?;
    let events: Vec<Value> = done
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v.get("event").is_some())
        .collect();
    let Some(fin) = events.iter().rev().find(|e| e["event"] == "run_finished") else {
        return Err(format!(
            "no run_finished event on stderr ({})",
            log.with_extension("err").display()
        ));
    };
    if fin["status"] != "succeeded" {
        return Err(format!("run {}: {}", fin["status"], fin["error"]));
    }
    let num = |k: &str| {
        fin[k]
            .as_f64()
            .ok_or_else(|| format!("run_finished has no number {k:?}: {fin}"))
    };
    let shared = last_json(&done.stdout)
        .ok_or_else(|| format!("no final store on stdout: {:?}", done.stdout))?;
    Ok(FlwRun {
        run_ms: num("ms")?,
        steps: num("steps")?,
        wall_ms: done.wall_ms,
        cores: done.cores,
        shared,
        items: events
            .iter()
            .filter(|e| e["event"] == "item_finished")
            .count(),
    })
}

/// Runs `pocketflow_batch.py ARGS` with `python`; its JSON, wall ms and cores.
fn py_run(
    ctx: &Ctx,
    python: &Path,
    args: &[String],
    tag: &str,
) -> Result<(Value, f64, f64), String> {
    let mut all = vec![ctx.paths.script(POCKETFLOW).display().to_string()];
    all.extend_from_slice(args);
    let log = ctx.paths.tmp.join(format!("graph-{tag}"));
    let done = command(python, &all, &log)?;
    let out =
        last_json(&done.stdout).ok_or_else(|| format!("no JSON on stdout: {:?}", done.stdout))?;
    Ok((out, done.wall_ms, done.cores))
}

/// Picks the item's `spin` count so one item takes about [`ITEM_MS`] in
/// `python3` (the interpreter of flw's workers); returns it and a note.
fn calibrate(ctx: &Ctx) -> (u64, String) {
    let args = ["calibrate".to_string(), format!("{ITEM_MS}")];
    match py_run(ctx, Path::new("python3"), &args, "calibrate") {
        Ok((v, _, _)) => match (v["spin"].as_u64(), v["ms"].as_f64()) {
            (Some(n), Some(ms)) => (
                n,
                format!(
                    "spin = {n}, calibrated with `python3` on CPU time so one item takes about \
                     {ITEM_MS} ms of CPU; measured: {ms:.2} ms of CPU and {:.2} ms of wall time \
                     per item (medians of 7, in one process).",
                    v["wall_ms"].as_f64().unwrap_or(f64::NAN)
                ),
            ),
            _ => (
                DEFAULT_SPIN,
                format!("spin = {DEFAULT_SPIN} (calibration said {v})."),
            ),
        },
        Err(e) => (
            DEFAULT_SPIN,
            format!("spin = {DEFAULT_SPIN} (calibration failed: {e})."),
        ),
    }
}

/// The PocketFlow venv's interpreter and pocketflow version, or why not.
fn pocketflow(ctx: &Ctx) -> Result<(PathBuf, String), String> {
    let python = ctx.paths.pocketflow_python();
    if !python.exists() {
        return Err(format!(
            "{} not found (bash bench/run creates it)",
            ctx.paths.rel(&python)
        ));
    }
    let out = Command::new(&python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('pocketflow'))",
        ])
        .output()
        .map_err(|e| format!("cannot start {}: {e}", ctx.paths.rel(&python)))?;
    if !out.status.success() {
        return Err(format!(
            "pocketflow is not installed in {} (bash bench/run installs it)",
            ctx.paths.rel(&python)
        ));
    }
    Ok((
        python,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    ))
}

/// Per-repetition values.
#[derive(Debug, Default)]
struct Samples {
    run_ms: Vec<f64>,
    wall_ms: Vec<f64>,
    cores: Vec<f64>,
    us_per_step: Vec<f64>,
    steps: Vec<f64>,
}

impl Samples {
    /// Sets the medians as `prefix.*` metrics.
    fn record(&self, r: &mut PeerResult, prefix: &str) {
        let sets: [(&str, &Vec<f64>); 5] = [
            ("run_ms", &self.run_ms),
            ("wall_ms", &self.wall_ms),
            ("cores", &self.cores),
            ("us_per_step", &self.us_per_step),
            ("steps", &self.steps),
        ];
        for (k, v) in sets {
            if let Some(m) = median(v) {
                r.set(format!("{prefix}.{k}"), m);
            }
        }
        if let (Some(lo), Some(hi)) = (
            self.run_ms.iter().copied().reduce(f64::min),
            self.run_ms.iter().copied().reduce(f64::max),
        ) {
            r.set(format!("{prefix}.run_ms_min"), lo);
            r.set(format!("{prefix}.run_ms_max"), hi);
        }
    }

    fn list(&self) -> String {
        self.run_ms
            .iter()
            .map(|v| {
                if *v >= 10.0 {
                    format!("{v:.1}")
                } else {
                    format!("{v:.2}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One side of the comparison while it runs: results, samples, and
/// whether it still runs (it stops at its first failure).
struct Side {
    r: PeerResult,
    batch: Samples,
    looped: Samples,
    ok: bool,
}

impl Side {
    fn new(r: PeerResult) -> Side {
        let ok = r.skipped.is_none();
        Side {
            r,
            batch: Samples::default(),
            looped: Samples::default(),
            ok,
        }
    }

    /// Notes a failure; the side stops.
    fn fail(&mut self, ctx: &Ctx, what: &str, e: String) {
        progress(&format!("  {} {what} failed: {e}", self.r.peer.label));
        ctx.failures.fetch_add(1, Ordering::Relaxed);
        self.r.failed += 1;
        self.r.notes.push(format!("{what} failed: {e}"));
        self.ok = false;
    }
}

/// Checks a batch's final store.
fn check_batch(shared: &Value, items: u64, expected: u64) -> Result<(), String> {
    if shared["items"].as_u64() != Some(items) || shared["sum"].as_u64() != Some(expected) {
        return Err(format!(
            "wrong result: items {} and sum {} instead of {items} and {expected}",
            shared["items"], shared["sum"]
        ));
    }
    Ok(())
}

/// Runs the graph workload.
pub fn run(ctx: &Ctx) -> Section {
    let items = ctx.pick(200, 50);
    let reps = ctx.pick(5, 2);
    let cores = thread::available_parallelism().map_or(2, |n| n.get());
    let mut notes = Vec::new();
    let mut results = Vec::new();
    let mut about_work = String::new();
    if ctx.peers(Workload::Graph).is_empty() {
        notes.push("Not run: `--peers` does not include flw.".to_string());
    } else {
        progress("graph: calibrating one item's work with python3");
        let (work, note) = calibrate(ctx);
        progress(&format!("  {note}"));
        about_work = note;
        let flw_peer = Peer {
            label: "flw run".into(),
            family: Family::Flw,
            variant: None,
        };
        let pf_peer = Peer {
            label: "PocketFlow, one process".into(),
            family: Family::PocketFlow,
            variant: None,
        };
        let mut flw = Side::new(PeerResult::new(&flw_peer));
        if !ctx.paths.flw().exists() {
            flw = Side::new(PeerResult::skipped(
                &flw_peer,
                format!(
                    "{} not found (cargo build --release -p flw)",
                    ctx.paths.rel(&ctx.paths.flw())
                ),
            ));
        }
        let (mut pf, python) = match pocketflow(ctx) {
            Ok((python, version)) => {
                if version != POCKETFLOW_VERSION {
                    notes.push(format!(
                        "PocketFlow {version} is installed, not {POCKETFLOW_VERSION}."
                    ));
                }
                (Side::new(PeerResult::new(&pf_peer)), python)
            }
            Err(e) => (Side::new(PeerResult::skipped(&pf_peer, e)), PathBuf::new()),
        };
        measure_batch(
            ctx,
            (&mut flw, &mut pf),
            &python,
            (items, work),
            (reps, cores),
        );
        measure_loop(ctx, (&mut flw, &mut pf), &python, reps);
        finish(&mut flw, &mut pf, &mut notes);
        results.push(flw.r);
        results.push(pf.r);
    }
    section(items as u64, reps, cores, about_work, results, notes)
}

/// The batch measurement: a warm-up, then `reps` repetitions, flw and
/// PocketFlow interleaved.
fn measure_batch(
    ctx: &Ctx,
    (flw, pf): (&mut Side, &mut Side),
    python: &Path,
    (items, work): (usize, u64),
    (reps, cores): (usize, usize),
) {
    let expected = items as u64 * spin(work);
    let store = json!({"n": items, "spin": work});
    let pf_args = ["batch".to_string(), items.to_string(), work.to_string()];
    for rep in 0..=reps {
        let what = if rep == 0 {
            format!("graph: batch of {items} items: warm-up")
        } else {
            format!("graph: batch of {items} items: repetition {rep}/{reps}")
        };
        let mut line = String::new();
        if flw.ok {
            let tag = format!("batch-flw-{rep}");
            match flw_run(ctx, "batch", &store, cores, &tag).and_then(|b| {
                check_batch(&b.shared, items as u64, expected)?;
                if b.items != items {
                    return Err(format!(
                        "{} item_finished events for {items} items",
                        b.items
                    ));
                }
                Ok(b)
            }) {
                Ok(b) => {
                    line += &format!(
                        "flw {:.1} ms (command {:.1} ms, {:.2} cores)",
                        b.run_ms, b.wall_ms, b.cores
                    );
                    if rep > 0 {
                        flw.batch.run_ms.push(b.run_ms);
                        flw.batch.wall_ms.push(b.wall_ms);
                        flw.batch.cores.push(b.cores);
                        flw.batch.steps.push(b.steps);
                    }
                }
                Err(e) => flw.fail(ctx, "the batch", e),
            }
        }
        if pf.ok {
            let tag = format!("batch-pocketflow-{rep}");
            match py_run(ctx, python, &pf_args, &tag).and_then(|(v, wall, c)| {
                check_batch(&v, items as u64, expected)?;
                let ms = v["ms"].as_f64().ok_or(format!("no ms in {v}"))?;
                Ok((ms, wall, c))
            }) {
                Ok((ms, wall, c)) => {
                    line += &format!(
                        "{}PocketFlow {ms:.1} ms (process {wall:.1} ms, {c:.2} cores)",
                        if line.is_empty() { "" } else { "; " }
                    );
                    if rep > 0 {
                        pf.batch.run_ms.push(ms);
                        pf.batch.wall_ms.push(wall);
                        pf.batch.cores.push(c);
                    }
                }
                Err(e) => pf.fail(ctx, "the batch", e),
            }
        }
        progress(&format!("{what}: {line}"));
    }
    if flw.r.skipped.is_none() {
        flw.r.set("batch.workers", cores as f64);
    }
    if pf.r.skipped.is_none() {
        pf.r.set("batch.workers", 1.0);
    }
}

/// The loop measurement: a warm-up, then `reps` repetitions; PocketFlow's
/// process runs the loop 5 times after a warm-up run of its own.
fn measure_loop(ctx: &Ctx, (flw, pf): (&mut Side, &mut Side), python: &Path, reps: usize) {
    let store = json!({"ticks": TICKS});
    let pf_args = ["loop".to_string(), TICKS.to_string(), "5".to_string()];
    for rep in 0..=reps {
        let what = if rep == 0 {
            format!("graph: loop of {TICKS}: warm-up")
        } else {
            format!("graph: loop of {TICKS}: repetition {rep}/{reps}")
        };
        let mut line = String::new();
        if flw.ok {
            let tag = format!("loop-flw-{rep}");
            let checked = flw_run(ctx, "loop", &store, 1, &tag).and_then(|l| {
                if l.shared["count"].as_u64() != Some(TICKS) {
                    return Err(format!("count {} instead of {TICKS}", l.shared["count"]));
                }
                Ok(l)
            });
            match checked {
                Ok(l) => {
                    let us = l.run_ms * 1e3 / l.steps.max(1.0);
                    line += &format!(
                        "flw {:.1} ms for {} steps = {us:.1} µs each (command {:.1} ms)",
                        l.run_ms, l.steps, l.wall_ms
                    );
                    if rep > 0 {
                        flw.looped.run_ms.push(l.run_ms);
                        flw.looped.wall_ms.push(l.wall_ms);
                        flw.looped.steps.push(l.steps);
                        flw.looped.us_per_step.push(us);
                    }
                }
                Err(e) => flw.fail(ctx, "the loop", e),
            }
        }
        if pf.ok {
            let tag = format!("loop-pocketflow-{rep}");
            let checked = py_run(ctx, python, &pf_args, &tag).and_then(|(v, _, _)| {
                let times: Vec<f64> = v["ms"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let steps = v["steps"].as_f64().unwrap_or(0.0);
                if v["count"].as_u64() != Some(TICKS) || times.is_empty() || steps < 1.0 {
                    return Err(format!("unexpected output {v}"));
                }
                Ok((times, steps))
            });
            match checked {
                Ok((times, steps)) => {
                    let ms = median(&times).unwrap_or(f64::NAN);
                    let us = ms * 1e3 / steps;
                    line += &format!(
                        "{}PocketFlow {ms:.2} ms for {steps} steps = {us:.2} µs each",
                        if line.is_empty() { "" } else { "; " }
                    );
                    if rep > 0 {
                        pf.looped.run_ms.push(ms);
                        pf.looped.steps.push(steps);
                        pf.looped.us_per_step.push(us);
                    }
                }
                Err(e) => pf.fail(ctx, "the loop", e),
            }
        }
        progress(&format!("{what}: {line}"));
    }
}

/// Medians, ratios and the summary lines.
fn finish(flw: &mut Side, pf: &mut Side, notes: &mut Vec<String>) {
    flw.batch.record(&mut flw.r, "batch");
    pf.batch.record(&mut pf.r, "batch");
    flw.looped.record(&mut flw.r, "loop");
    pf.looped.record(&mut pf.r, "loop");
    let (f0, p0) = (&flw.r.clone(), &pf.r);
    let both = |k: &str| Some((f0.get(k)?, p0.get(k)?));
    if let Some((f, p)) = both("batch.run_ms") {
        flw.r.set("batch.speedup", p / f);
        notes.push(format!(
            "**Batch: PocketFlow ÷ flw = {:.2}×** (above 1: flw is faster): PocketFlow {p:.1} ms \
             in one process, flw {f:.1} ms on {} workers (medians of the run times).",
            p / f,
            flw.r.get("batch.workers").unwrap_or(f64::NAN)
        ));
    }
    if let Some((f, p)) = both("batch.wall_ms") {
        flw.r.set("batch.speedup_wall", p / f);
        notes.push(format!(
            "Batch, whole commands (start-up included): PocketFlow's process ÷ the `flw run` \
             command = {:.2}× ({p:.1} ms vs {f:.1} ms).",
            p / f
        ));
    }
    if let Some((f, p)) = both("loop.us_per_step") {
        flw.r.set("loop.vs_pocketflow", f / p);
        notes.push(format!(
            "**Loop: one transition costs {f:.1} µs in flw** (a worker call, its store \
             changes, the events) and {p:.2} µs in PocketFlow in one process: {:.0}×.",
            f / p
        ));
    }
    for (what, f, p) in [
        ("Batch", &flw.batch, &pf.batch),
        ("Loop", &flw.looped, &pf.looped),
    ] {
        let mut parts = Vec::new();
        if !f.run_ms.is_empty() {
            parts.push(format!("flw {}", f.list()));
        }
        if !p.run_ms.is_empty() {
            parts.push(format!("PocketFlow {}", p.list()));
        }
        if !parts.is_empty() {
            notes.push(format!(
                "{what} run times per repetition (ms): {}.",
                parts.join("; ")
            ));
        }
    }
    if let Some(s) = flw.r.get("loop.steps") {
        if s != (TICKS + 1) as f64 {
            flw.r.notes.push(format!(
                "the loop took {s} steps; {} node visits were expected",
                TICKS + 1
            ));
        }
    }
}

fn section(
    items: u64,
    reps: usize,
    cores: usize,
    work_note: String,
    results: Vec<PeerResult>,
    notes: Vec<String>,
) -> Section {
    Section {
        workload: Workload::Graph,
        title: "(j) Graphs: a batch of CPU-bound items, and the cost of a transition".into(),
        about: vec![
            format!(
                "flw runs the flows of `bench/peers/{FLOWS}` with `flw run bench/peers/{FLOWS} \
                 FLOW --json STORE --events jsonl --instances N` (one command per run: it starts \
                 the pool's workers, runs the flow, stops them); \"run time\" is the `ms` of the \
                 run's `run_finished` event (from the run's start, after the workers are up), \
                 \"whole command\" the wall time from spawn to exit. PocketFlow \
                 {POCKETFLOW_VERSION} (`bench/.venv-pocketflow`) runs the same flows in one \
                 Python process (`bench/peers/{POCKETFLOW}`), timed inside it around \
                 `asyncio.run(flow.run_async(shared))` (the batch) or `flow.run(shared)` (the \
                 loop); its \"whole command\" is its process from spawn to exit. Each \
                 measurement is one untimed warm-up, then {reps} repetitions, flw and \
                 PocketFlow interleaved; the table shows medians. \"Cores used\" is the CPU \
                 time of the command and its descendants over its wall time. A failed run \
                 counts as a failed call."
            ),
            format!(
                "**Batch**: `batch` is one `BatchNode` whose `prep` returns {items} items; \
                 `exec` runs `spin(spin)` on each (`x = (x * 31 + i) % 1000003` for i in \
                 range(spin), pure Python, holding the GIL) and `post` stores the sum, which \
                 the driver checks. {work_note} flw runs it with `--instances {cores}` \
                 (isolated mode: each worker process runs one item at a time); PocketFlow's \
                 `AsyncParallelBatchNode` gathers the items on one event loop, so under one GIL \
                 they run one after another."
            ),
            format!(
                "**Loop**: `loop` is `@node tick`, which adds 1 to `count` and returns \
                 \"again\" (an edge back to itself) until `count` reaches {TICKS}, then \
                 \"done\" (an edge to `stop`, a node that does nothing): {} node visits. flw \
                 runs it with `--instances 1`; per transition = run time ÷ the run's `steps`. \
                 Each flw visit is a round trip to the worker process (the store goes there, \
                 the changes come back), much like one sequential tool call of (b) at 1 in \
                 flight, plus two events written to stderr; PocketFlow's is a `copy.copy` of \
                 the node and three method calls in the same process (its time is the median \
                 of 5 runs in each process).",
                TICKS + 1
            ),
        ],
        rows: vec![
            Row::new(
                format!("batch of {items}: run time (ms)"),
                "batch.run_ms",
                Fmt::Millis,
            ),
            Row::new(
                format!("batch of {items}: whole command (ms)"),
                "batch.wall_ms",
                Fmt::Millis,
            ),
            Row::new("batch: cores used", "batch.cores", Fmt::Dec2),
            Row::new("batch: worker processes", "batch.workers", Fmt::Int),
            Row::new(
                "batch: PocketFlow ÷ flw, run time",
                "batch.speedup",
                Fmt::Dec2,
            ),
            Row::new(
                "batch: PocketFlow ÷ flw, whole command",
                "batch.speedup_wall",
                Fmt::Dec2,
            ),
            Row::new("loop: node visits", "loop.steps", Fmt::Int),
            Row::new("loop: run time (ms)", "loop.run_ms", Fmt::Millis),
            Row::new("loop: µs per transition", "loop.us_per_step", Fmt::Dec2),
            Row::new("loop: whole command (ms)", "loop.wall_ms", Fmt::Millis),
            Row::new(
                "loop: flw ÷ PocketFlow per transition",
                "loop.vs_pocketflow",
                Fmt::Dec2,
            ),
        ],
        results,
        ratios: vec![],
        notes,
    }
}
