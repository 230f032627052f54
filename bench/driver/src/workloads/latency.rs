//! (a) Latency: sequential `echo("hello")` calls, one in flight.

use std::time::Duration;

use serde_json::json;

use super::{progress, quantile, Ctx, Fmt, PeerResult, Ratio, Row, Section, Workload};
use crate::server::{LoadSpec, Phase};

/// Runs the latency workload.
pub fn run(ctx: &Ctx) -> Section {
    let warm = ctx.pick(200, 50);
    let calls = ctx.pick(2_000, 300);
    let cap = Duration::from_secs(2);
    let mut results = Vec::new();
    for peer in ctx.peers(Workload::Latency) {
        progress(&format!("latency: {}", peer.label));
        let server = match ctx.start(&peer) {
            Ok(s) => s,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, e));
                continue;
            }
        };
        let spec = LoadSpec {
            tool: "echo",
            args: json!({"text": "hello"}),
            depth: 1,
            total: None,
            latencies: true,
        };
        let warmup = Phase {
            calls: Some(warm),
            time: cap,
        };
        let measure = Phase {
            calls: Some(calls),
            time: cap,
        };
        let stats = server.run_load(&spec, warmup, measure);
        let mut r = PeerResult::new(&peer);
        let mut lat = stats.latencies_ns.clone();
        lat.sort_unstable();
        if let (Some(p50), Some(p99)) = (quantile(&lat, 0.5), quantile(&lat, 0.99)) {
            r.set("p50_us", p50 as f64 / 1e3);
            r.set("p99_us", p99 as f64 / 1e3);
            progress(&format!(
                "  p50 {:.0} µs, p99 {:.0} µs ({} calls)",
                p50 as f64 / 1e3,
                p99 as f64 / 1e3,
                lat.len()
            ));
        }
        r.set("calls", lat.len() as f64);
        r.failed = stats.errors;
        if let Some(e) = stats.first_error {
            r.notes.push(format!("first failure: {e}"));
        }
        server.shutdown(Duration::from_secs(5));
        results.push(r);
    }
    let calls = crate::report::thousands(calls as f64);
    Section {
        workload: Workload::Latency,
        title: "(a) Latency: sequential echo".into(),
        about: vec![format!(
            "`echo(\"hello\")`, one call in flight: {warm} warm-up calls, then {calls} measured \
             (or 2 s, whichever first). Latency runs from the driver's write of the request to \
             the parsed reply."
        )],
        rows: vec![
            Row::new("p50 (µs)", "p50_us", Fmt::Micros),
            Row::new("p99 (µs)", "p99_us", Fmt::Micros),
            Row::new("calls measured", "calls", Fmt::Int),
        ],
        results,
        ratios: vec![Ratio {
            title: "echo p50 latency".into(),
            key: "p50_us".into(),
            higher_better: false,
        }],
        notes: vec![],
    }
}
