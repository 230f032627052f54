//! (e) Cold start: from spawn to the `tools/list` reply.

use std::time::{Duration, Instant};

use serde_json::json;

use super::{median, progress, Ctx, Fmt, PeerResult, Ratio, Row, Section, Workload};
use crate::server::Server;

/// Runs the cold-start workload.
pub fn run(ctx: &Ctx) -> Section {
    let runs = ctx.pick(10, 3);
    let mut results = Vec::new();
    'peers: for peer in ctx.peers(Workload::ColdStart) {
        progress(&format!("coldstart: {}", peer.label));
        let launch = match ctx.paths.launch(&peer) {
            Ok(l) => l,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, e));
                continue;
            }
        };
        let mut times = Vec::new();
        let mut first_call = Vec::new();
        for i in 0..=runs {
            let log = ctx
                .paths
                .tmp
                .join(format!("coldstart-{}-{i}.log", peer.slug()));
            let t0 = Instant::now();
            let server = match Server::spawn(&peer.label, &launch, &log) {
                Ok(s) => s,
                Err(e) => {
                    results.push(PeerResult::skipped(&peer, e));
                    continue 'peers;
                }
            };
            let echo = json!({"name": "echo", "arguments": {"text": "hello"}});
            let ready = server.handshake(Duration::from_secs(30)).and_then(|list| {
                let call = server.request("tools/call", echo, Duration::from_secs(30))?;
                Ok((list.at, call.at))
            });
            match ready {
                Ok((list, call)) => {
                    if i > 0 {
                        times.push((list - t0).as_secs_f64() * 1e3);
                        first_call.push((call - t0).as_secs_f64() * 1e3);
                    }
                    server.shutdown(Duration::from_secs(5));
                }
                Err(e) => {
                    let e = ctx.failed(server, &e);
                    results.push(PeerResult::skipped(&peer, e));
                    continue 'peers;
                }
            }
        }
        let mut r = PeerResult::new(&peer);
        if let Some(m) = median(&times) {
            r.set("median_ms", m);
        }
        if let Some(min) = times.iter().copied().reduce(f64::min) {
            r.set("min_ms", min);
        }
        if let Some(m) = median(&first_call) {
            r.set("first_call_ms", m);
        }
        progress(&format!(
            "  tools/list: median {:.1} ms, min {:.1} ms; first echo result: median {:.1} ms",
            r.get("median_ms").unwrap_or(f64::NAN),
            r.get("min_ms").unwrap_or(f64::NAN),
            r.get("first_call_ms").unwrap_or(f64::NAN)
        ));
        results.push(r);
    }
    Section {
        workload: Workload::ColdStart,
        title: "(e) Cold start: spawn to tools/list".into(),
        about: vec![format!(
            "From spawning the server to the `tools/list` reply (`initialize` → \
             `notifications/initialized` → `tools/list`), {runs} runs after one untimed warm-up \
             run (which also fills any cache a server keeps, e.g. bytecode or flw's tool \
             manifests). Each run then calls `echo(\"hello\")` at once: the last row is the time \
             from spawn to that first result, i.e. until a worker really serves calls."
        )],
        rows: vec![
            Row::new("median (ms)", "median_ms", Fmt::Millis),
            Row::new("min (ms)", "min_ms", Fmt::Millis),
            Row::new(
                "median to first echo result (ms)",
                "first_call_ms",
                Fmt::Millis,
            ),
        ],
        results,
        ratios: vec![
            Ratio {
                title: "cold start to tools/list, median".into(),
                key: "median_ms".into(),
                higher_better: false,
            },
            Ratio {
                title: "spawn to first echo result, median".into(),
                key: "first_call_ms".into(),
                higher_better: false,
            },
        ],
        notes: vec![],
    }
}
