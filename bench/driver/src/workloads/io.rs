//! (d) I/O-bound: the async `sleep(50)` tool with 256 and 1,000 calls in flight.

use std::time::Duration;

use serde_json::json;

use super::throughput::sweep;
use super::{Ctx, Fmt, Ratio, Row, Section, Workload};

/// The in-flight depths measured.
pub const DEPTHS: [usize; 2] = [256, 1_000];
/// The sleep of each call.
pub const SLEEP_MS: u64 = 50;

/// Runs the I/O workload.
pub fn run(ctx: &Ctx) -> Section {
    let warmup = Duration::from_secs_f64(ctx.pick(1.0, 0.3));
    let window = Duration::from_secs_f64(ctx.pick(5.0, 1.5));
    let results = sweep(
        ctx,
        Workload::Io,
        ("sleep", json!({"ms": SLEEP_MS})),
        &DEPTHS,
        (warmup, window),
        |r, depth, stats| {
            let ideal = depth as f64 * 1000.0 / SLEEP_MS as f64;
            r.set(format!("d{depth}.of_ideal"), stats.rate() / ideal);
        },
    );
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
