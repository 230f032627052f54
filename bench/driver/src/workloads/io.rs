//! (d) I/O-bound: the async `sleep(50)` tool with 256 and 1,000 calls in flight.

use std::time::Duration;

use serde_json::json;

use super::throughput::measure;
use super::{progress, Ctx, Fmt, PeerResult, Ratio, Row, Section, Workload};
use crate::server::LoadSpec;

/// The in-flight depths measured.
pub const DEPTHS: [usize; 2] = [256, 1_000];
/// The sleep of each call.
pub const SLEEP_MS: u64 = 50;

/// Runs the I/O workload.
pub fn run(ctx: &Ctx) -> Section {
    let warmup = Duration::from_secs_f64(ctx.pick(1.0, 0.3));
    let window = Duration::from_secs_f64(ctx.pick(5.0, 1.5));
    let mut results = Vec::new();
    for peer in ctx.peers(Workload::Io) {
        progress(&format!("io: {}", peer.label));
        let server = match ctx.start(&peer) {
            Ok(s) => s,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, e));
                continue;
            }
        };
        let mut r = PeerResult::new(&peer);
        for depth in DEPTHS {
            let spec = LoadSpec {
                tool: "sleep",
                args: json!({"ms": SLEEP_MS}),
                depth,
                total: None,
                latencies: false,
            };
            let stats = measure(&server, &mut r, &format!("d{depth}"), &spec, warmup, window);
            let ideal = depth as f64 * 1000.0 / SLEEP_MS as f64;
            r.set(format!("d{depth}.of_ideal"), stats.rate() / ideal);
            if server.closed() {
                r.notes.push("the server exited during the run".into());
                break;
            }
        }
        server.shutdown(Duration::from_secs(5));
        results.push(r);
    }
    let mut rows = Vec::new();
    for d in DEPTHS {
        let ideal = d as u64 * 1000 / SLEEP_MS;
        rows.push(Row::new(
            format!("{d} in flight: calls/s (ideal {ideal})"),
            format!("d{d}.calls_per_s"),
            Fmt::Int,
        ));
        rows.push(Row::new(
            format!("{d} in flight: share of ideal"),
            format!("d{d}.of_ideal"),
            Fmt::Dec2,
        ));
        rows.push(Row::new(
            format!("{d} in flight: cores used"),
            format!("d{d}.cores"),
            Fmt::Dec2,
        ));
    }
    Section {
        workload: Workload::Io,
        title: format!("(d) I/O-bound: async sleep({SLEEP_MS} ms)"),
        about: vec![format!(
            "`sleep(ms={SLEEP_MS})` (`await asyncio.sleep`; Go: `time.Sleep`; raw floor: a timer \
             heap) with D calls outstanding, {:.1} s warm-up, {:.1} s measured per depth. The \
             ideal rate is D / {SLEEP_MS} ms.",
            warmup.as_secs_f64(),
            window.as_secs_f64()
        )],
        rows,
        results,
        ratios: DEPTHS
            .iter()
            .map(|d| Ratio {
                title: format!("sleep calls/s at {d} in flight"),
                key: format!("d{d}.calls_per_s"),
                higher_better: true,
            })
            .collect(),
        notes: vec![],
    }
}
