//! (g) Memory: resident set idle and with 10,000 calls in flight.

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{progress, Ctx, Fmt, PeerResult, Ratio, Row, Section, Workload};
use crate::procfs;
use crate::report::thousands;
use crate::server::LoadSpec;

/// Each in-flight call sleeps this long: far longer than the measurement.
pub const SLEEP_MS: u64 = 20_000;

/// Runs the memory workload.
pub fn run(ctx: &Ctx) -> Section {
    let calls: u64 = ctx.pick(10_000, 2_000);
    let max_wait = Duration::from_secs(ctx.pick(10, 5));
    let mut results = Vec::new();
    for peer in ctx.peers(Workload::Memory) {
        progress(&format!("memory: {}", peer.label));
        let server = match ctx.start(&peer) {
            Ok(s) => s,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, e));
                continue;
            }
        };
        thread::sleep(Duration::from_millis(500));
        let mut r = PeerResult::new(&peer);
        let idle = procfs::rss_bytes(server.pid).unwrap_or(0) as f64;
        let idle_total = procfs::tree_rss_bytes(server.pid) as f64;
        r.set("in_flight", calls as f64);
        r.set("idle_rss", idle);
        r.set("idle_total", idle_total);
        server.start_burst(&LoadSpec {
            tool: "sleep",
            args: json!({"ms": SLEEP_MS}),
            depth: calls as usize,
            total: Some(calls),
            latencies: false,
        });
        // Wait until the tree's RSS has been stable (within 1%) for 1 s.
        let t0 = Instant::now();
        let mut history: Vec<(Instant, u64)> = Vec::new();
        let stable = loop {
            thread::sleep(Duration::from_millis(100));
            let now = Instant::now();
            let total = procfs::tree_rss_bytes(server.pid);
            history.push((now, total));
            let old = history
                .iter()
                .rev()
                .find(|(t, _)| now - *t >= Duration::from_secs(1));
            if let Some(&(_, before)) = old {
                let window = history
                    .iter()
                    .filter(|(t, _)| now - *t <= Duration::from_secs(1));
                let (lo, hi) =
                    window.fold((u64::MAX, 0), |(lo, hi), (_, v)| (lo.min(*v), hi.max(*v)));
                if (hi - lo) as f64 <= before as f64 * 0.01 {
                    break true;
                }
            }
            if now - t0 >= max_wait || server.closed() {
                break false;
            }
        };
        let loaded = procfs::rss_bytes(server.pid).unwrap_or(0) as f64;
        let loaded_total = procfs::tree_rss_bytes(server.pid) as f64;
        let (answered, failed, first) = server.burst_status();
        r.set("loaded_rss", loaded);
        r.set("loaded_total", loaded_total);
        r.set("per_call", (loaded - idle) / calls as f64);
        r.set("per_call_total", (loaded_total - idle_total) / calls as f64);
        r.set("wait_s", t0.elapsed().as_secs_f64());
        r.failed = failed;
        if answered > 0 {
            r.notes.push(format!(
                "{answered} of the {calls} calls were answered while they should all still be \
                 sleeping ({failed} failed{})",
                first.map_or(String::new(), |e| format!("; first failure: {e}"))
            ));
        }
        if !stable {
            r.notes.push(format!(
                "RSS still changing after {:.0} s: sampled anyway",
                t0.elapsed().as_secs_f64()
            ));
        }
        progress(&format!(
            "  idle {:.1} MB, loaded {:.1} MB, {:.0} B per call (server); tree {:.1} → {:.1} MB; \
             {answered} answered, {failed} failed",
            idle / 1e6,
            loaded / 1e6,
            (loaded - idle) / calls as f64,
            idle_total / 1e6,
            loaded_total / 1e6
        ));
        server.kill();
        results.push(r);
    }
    let calls = thousands(calls as f64);
    Section {
        workload: Workload::Memory,
        title: format!("(g) Memory: idle and with {calls} calls in flight"),
        about: vec![format!(
            "RSS (VmRSS) of the server process, and the total over the server and all its \
             descendants, 0.5 s after `tools/list`; then with {calls} `sleep({SLEEP_MS} ms)` calls \
             written at once, sampled when the total RSS has been stable within 1% for 1 s (at \
             most {} s). Per call = (loaded − idle) / {calls}. In flw's isolated mode all but \
             one call per worker wait in the supervisor's queue. MB = 10^6 bytes.",
            max_wait.as_secs()
        )],
        rows: vec![
            Row::new("server RSS idle (MB)", "idle_rss", Fmt::Mb),
            Row::new("total RSS idle (MB)", "idle_total", Fmt::Mb),
            Row::new(
                format!("server RSS, {calls} in flight (MB)"),
                "loaded_rss",
                Fmt::Mb,
            ),
            Row::new(
                format!("total RSS, {calls} in flight (MB)"),
                "loaded_total",
                Fmt::Mb,
            ),
            Row::new("server bytes per call (KB)", "per_call", Fmt::Kb),
            Row::new("total bytes per call (KB)", "per_call_total", Fmt::Kb),
            Row::new("time to stable RSS (s)", "wait_s", Fmt::Dec2),
        ],
        results,
        ratios: vec![
            Ratio {
                title: "server RSS idle".into(),
                key: "idle_rss".into(),
                higher_better: false,
            },
            Ratio {
                title: "total RSS per in-flight call".into(),
                key: "per_call_total".into(),
                higher_better: false,
            },
        ],
        notes: vec![],
    }
}
