//! (b) Throughput: pipelined `echo` with 1, 16 and 256 calls in flight.

use std::time::Duration;

use serde_json::json;

use super::{progress, Ctx, Fmt, PeerResult, Ratio, Row, Section, Workload};
use crate::server::{LoadSpec, LoadStats, Phase, Server};

/// The in-flight depths measured.
pub const DEPTHS: [usize; 3] = [1, 16, 256];

/// Runs one pipelined load and records `calls_per_s`, `cores` and
/// `driver_cores` under `prefix`; returns the stats.
pub fn measure(
    server: &Server,
    r: &mut PeerResult,
    prefix: &str,
    spec: &LoadSpec,
    warmup: Duration,
    window: Duration,
) -> LoadStats {
    let stats = server.run_load(
        spec,
        Phase {
            calls: None,
            time: warmup,
        },
        Phase {
            calls: None,
            time: window,
        },
    );
    r.set(format!("{prefix}.calls_per_s"), stats.rate());
    r.set(format!("{prefix}.cores"), stats.server_cores());
    r.set(format!("{prefix}.driver_cores"), stats.driver_cores());
    r.failed += stats.errors;
    if let Some(e) = &stats.first_error {
        r.notes.push(format!("{prefix}: first failure: {e}"));
    }
    if stats.unanswered > 0 {
        r.notes.push(format!(
            "{prefix}: {} calls still unanswered 15 s after the window",
            stats.unanswered
        ));
    }
    progress(&format!(
        "  {prefix}: {:.0} calls/s, server {:.2} cores, driver {:.2} cores{}",
        stats.rate(),
        stats.server_cores(),
        stats.driver_cores(),
        if stats.errors > 0 {
            format!(", {} FAILED", stats.errors)
        } else {
            String::new()
        }
    ));
    stats
}

/// Runs `tool(args)` at each depth against every peer of `workload`,
/// recording what [`measure`] records under `d{depth}`; `extra` adds a
/// workload's own metrics for each depth.
pub fn sweep(
    ctx: &Ctx,
    workload: Workload,
    (tool, args): (&'static str, serde_json::Value),
    depths: &[usize],
    (warmup, window): (Duration, Duration),
    mut extra: impl FnMut(&mut PeerResult, usize, &LoadStats),
) -> Vec<PeerResult> {
    let mut results = Vec::new();
    for peer in ctx.peers(workload) {
        progress(&format!("{}: {}", workload.name(), peer.label));
        let server = match ctx.start(&peer) {
            Ok(s) => s,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, e));
                continue;
            }
        };
        let mut r = PeerResult::new(&peer);
        for &depth in depths {
            let spec = LoadSpec {
                tool,
                args: args.clone(),
                depth,
                total: None,
                latencies: false,
            };
            let stats = measure(&server, &mut r, &format!("d{depth}"), &spec, warmup, window);
            extra(&mut r, depth, &stats);
            if server.closed() {
                r.notes.push("the server exited during the run".into());
                break;
            }
        }
        server.shutdown(Duration::from_secs(5));
        results.push(r);
    }
    results
}

/// Runs the throughput workload.
pub fn run(ctx: &Ctx) -> Section {
    let warmup = Duration::from_secs_f64(ctx.pick(0.5, 0.2));
    let window = Duration::from_secs_f64(ctx.pick(3.0, 1.0));
    let results = sweep(
        ctx,
        Workload::Throughput,
        ("echo", json!({"text": "hello"})),
        &DEPTHS,
        (warmup, window),
        |_, _, _| {},
    );
    let mut rows = Vec::new();
    for d in DEPTHS {
        rows.push(Row::new(
            format!("{d} in flight: calls/s"),
            format!("d{d}.calls_per_s"),
            Fmt::Int,
        ));
        rows.push(Row::new(
            format!("{d} in flight: cores used"),
            format!("d{d}.cores"),
            Fmt::Dec2,
        ));
        rows.push(Row::new(
            format!("{d} in flight: driver cores"),
            format!("d{d}.driver_cores"),
            Fmt::Dec2,
        ));
    }
    Section {
        workload: Workload::Throughput,
        title: "(b) Throughput: pipelined echo".into(),
        about: vec![format!(
            "`echo(\"hello\")` with exactly D calls outstanding (each reply sends the next call): \
             {:.1} s warm-up, {:.0} s measured per depth. \"Cores used\" is the CPU time \
             (utime+stime, /proc) of the server and all its descendants divided by wall time; \
             \"driver cores\" is the same for this driver (getrusage), i.e. what the client costs.",
            warmup.as_secs_f64(),
            window.as_secs_f64()
        )],
        rows,
        results,
        ratios: DEPTHS
            .iter()
            .map(|d| Ratio {
                title: format!("echo calls/s at {d} in flight"),
                key: format!("d{d}.calls_per_s"),
                higher_better: true,
            })
            .collect(),
        notes: vec![],
    }
}
