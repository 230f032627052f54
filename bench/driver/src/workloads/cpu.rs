//! (c) CPU-bound: the `cpu(n)` tool (a pure-Python loop holding the GIL)
//! with 64 calls in flight.

use std::time::{Duration, Instant};

use serde_json::json;

use super::throughput::measure;
use super::{median, progress, Ctx, Fmt, PeerResult, Ratio, Row, Section, Workload};
use crate::peers::{Family, Peer};
use crate::server::{LoadSpec, Server};

/// Calls in flight.
pub const DEPTH: usize = 64;
/// The target duration of one call on the raw floor.
pub const TARGET_MS: f64 = 5.0;
/// `n` when the raw floor cannot calibrate it.
pub const DEFAULT_N: u64 = 70_000;

/// Times `reps` sequential `cpu(n)` calls and returns the median in ms.
fn time_calls(server: &Server, n: u64, reps: usize) -> Result<f64, String> {
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        server.request(
            "tools/call",
            json!({"name": "cpu", "arguments": {"n": n}}),
            Duration::from_secs(30),
        )?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    median(&times).ok_or_else(|| "no calls".into())
}

/// Picks `n` so that one call takes about [`TARGET_MS`] on the raw floor;
/// returns `(n, measured ms of one call, note)`.
pub fn calibrate(ctx: &Ctx) -> (u64, Option<f64>, String) {
    let floor = Peer {
        label: "raw floor (calibration)".into(),
        family: Family::Floor,
        variant: None,
    };
    let run = || -> Result<(u64, f64), String> {
        let server = ctx.start(&floor)?;
        time_calls(&server, 100_000, 2)?;
        let base = time_calls(&server, 100_000, 5)?;
        let n = ((100_000.0 * TARGET_MS / base / 1000.0).round() as u64).max(1) * 1000;
        let ms = time_calls(&server, n, 5)?;
        server.shutdown(Duration::from_secs(5));
        Ok((n, ms))
    };
    match run() {
        Ok((n, ms)) => (
            n,
            Some(ms),
            format!(
                "n = {n}, calibrated on the raw floor so one sequential call takes about \
                 {TARGET_MS} ms; measured: {ms:.2} ms per call (median of 5)."
            ),
        ),
        Err(e) => (
            DEFAULT_N,
            None,
            format!("n = {DEFAULT_N} (the raw floor could not calibrate it: {e})."),
        ),
    }
}

/// Runs the CPU workload.
pub fn run(ctx: &Ctx) -> Section {
    progress("cpu: calibrating n on the raw floor");
    let (n, single_ms, note) = calibrate(ctx);
    progress(&format!("  {note}"));
    let warmup = Duration::from_secs_f64(ctx.pick(1.0, 0.3));
    let window = Duration::from_secs_f64(ctx.pick(5.0, 1.5));
    let mut results = Vec::new();
    for peer in ctx.peers(Workload::Cpu) {
        progress(&format!("cpu: {}", peer.label));
        let server = match ctx.start(&peer) {
            Ok(s) => s,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, e));
                continue;
            }
        };
        let mut r = PeerResult::new(&peer);
        let spec = LoadSpec {
            tool: "cpu",
            args: json!({"n": n}),
            depth: DEPTH,
            total: None,
            latencies: false,
        };
        measure(&server, &mut r, &format!("d{DEPTH}"), &spec, warmup, window);
        if let Some(ms) = single_ms {
            r.set("n", n as f64);
            r.set("floor_call_ms", ms);
        }
        server.shutdown(Duration::from_secs(5));
        results.push(r);
    }
    Section {
        workload: Workload::Cpu,
        title: "(c) CPU-bound: pure-Python loop".into(),
        about: vec![format!(
            "`cpu(n)`: `x = (x * 31 + i) % 1000003` for i in range(n), holding the GIL, \
                 {DEPTH} calls in flight, {:.1} s warm-up, {:.0} s measured. {note} The Go peer \
                 runs the same loop compiled, so its row shows Go, not Python.",
            warmup.as_secs_f64(),
            window.as_secs_f64()
        )],
        rows: vec![
            Row::new("calls/s", format!("d{DEPTH}.calls_per_s"), Fmt::Int),
            Row::new("cores used", format!("d{DEPTH}.cores"), Fmt::Dec2),
            Row::new("driver cores", format!("d{DEPTH}.driver_cores"), Fmt::Dec2),
        ],
        results,
        ratios: vec![Ratio {
            title: format!("cpu calls/s at {DEPTH} in flight"),
            key: format!("d{DEPTH}.calls_per_s"),
            higher_better: true,
        }],
        notes: vec![],
    }
}
