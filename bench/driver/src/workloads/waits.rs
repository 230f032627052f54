//! (l) Model-like waits: 256 and 1,000 calls of a tool that waits 1 s, all
//! sent at once, with the total PSS of the server's process tree at the
//! peak; and, for flw's isolated pools, the time from a cancel to the next
//! call's result on a fresh worker.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{median, progress, Ctx, Fmt, PeerResult, Ratio, Row, Section, Workload};
use crate::peers::{Family, FlwVariant, Peer, ISOLATED_1};
use crate::procfs;
use crate::report::thousands;
use crate::server::{LoadSpec, Server};

/// A pool of exactly one worker: only the cancel-to-replacement measurement
/// runs on it (its bursts would only show one call at a time), and there the
/// next call always needs the replacement, however large the defaults let a
/// pool grow.
pub const REPLACEMENT_ONLY: FlwVariant = ISOLATED_1;

/// How long each call waits.
pub const WAIT_MS: u64 = 1_000;
/// The calls sent at once.
pub const COUNTS: [usize; 2] = [256, 1_000];
/// Each call of the memory burst (after the timed one) waits this long...
const HOLD_MS: u64 = 4_000;
/// ...and the total PSS is sampled from this long after the first send...
const SAMPLE_FROM: Duration = Duration::from_millis(500);
/// ...until this long after it, every [`SAMPLE_EVERY`].
const SAMPLE_UNTIL: Duration = Duration::from_millis(3_500);
/// The pause between two samples.
const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// A `block` call that has not started this long after it was sent waits
/// in the queue: the pool is full.
const FILL_WAIT: Duration = Duration::from_millis(300);
/// The most `block` calls sent to fill a pool before giving up: above the
/// 256 calls a pool on the defaults is meant to run at once, and few enough
/// that a pool of Python workers started by exec (about 15 MB each) stays
/// within a few GB.
const FILL_CAP: usize = 300;
/// How long after the cancel grace the next call may take to start.
const NEXT_LIMIT: Duration = Duration::from_secs(10);
/// How long after the next call started the cancelled call's worker may
/// take to die before the driver stops watching it.
const DEAD_WAIT: Duration = Duration::from_secs(1);
/// Repetitions in a row that may find the pool grown before giving up.
const GREW_LIMIT: usize = 5;

/// How the tool waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `await asyncio.sleep(1)` (TypeScript: an awaited `setTimeout`).
    Async,
    /// `time.sleep(1)` in a sync tool.
    Sync,
}

impl Kind {
    /// The tool that waits this way.
    pub fn tool(self) -> &'static str {
        match self {
            Kind::Async => "wait_async",
            Kind::Sync => "wait_sync",
        }
    }

    /// `async` or `sync`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Async => "async",
            Kind::Sync => "sync",
        }
    }
}

/// The metric key of `what` for `kind` at `n` calls, e.g. `async256.wall_s`.
pub fn key(kind: Kind, n: usize, what: &str) -> String {
    format!("{}{n}.{what}", kind.name())
}

/// The kinds a peer runs: the TypeScript tools have only the async wait.
fn kinds(peer: &Peer) -> &'static [Kind] {
    if peer.variant.is_some_and(|v| v.is_ts()) {
        &[Kind::Async]
    } else {
        &[Kind::Async, Kind::Sync]
    }
}

/// The largest total PSS seen while sampling.
#[derive(Debug, Default, Clone, Copy)]
struct Peak {
    pss: u64,
    procs: usize,
    samples: usize,
    slowest: Duration,
}

impl Peak {
    /// Samples the total PSS of `pid`'s tree once more.
    fn sample(&mut self, pid: i32) {
        let t = Instant::now();
        let (pss, procs) = procfs::tree_pss(pid);
        self.samples += 1;
        self.slowest = self.slowest.max(t.elapsed());
        if pss > self.pss {
            self.pss = pss;
            self.procs = procs;
        }
    }
}

/// Samples the total PSS of `pid`'s tree from `start + SAMPLE_FROM` until
/// `start + SAMPLE_UNTIL`; returns the largest.
fn sample_window(pid: i32, start: Instant) -> Peak {
    let mut peak = Peak::default();
    let mut next = start + SAMPLE_FROM;
    while next < start + SAMPLE_UNTIL {
        thread::sleep(next.saturating_duration_since(Instant::now()));
        peak.sample(pid);
        next = Instant::now() + SAMPLE_EVERY;
    }
    peak
}

/// On a fresh server: one call alone, then `n` calls at once, timed; then
/// `n` calls of [`HOLD_MS`] at once, to sample the memory they hold.
fn phase(ctx: &Ctx, peer: &Peer, kind: Kind, n: usize, limit: Duration, r: &mut PeerResult) {
    let k = |what: &str| key(kind, n, what);
    let server = match ctx.start(peer) {
        Ok(s) => s,
        Err(e) => {
            r.notes
                .push(format!("{} ×{n}: did not start: {e}", kind.name()));
            return;
        }
    };
    // flw answers tools/list from its manifest cache while its workers
    // start: a call of 0 ms first, so that the single call is not the start.
    let warm = json!({"name": kind.tool(), "arguments": {"ms": 0}});
    if let Err(e) = server.request("tools/call", warm, limit) {
        r.failed += 1;
        let e = ctx.failed(server, &e);
        r.notes.push(format!(
            "{} ×{n}: the warm-up call failed: {e}",
            kind.name()
        ));
        return;
    }
    let call = json!({"name": kind.tool(), "arguments": {"ms": WAIT_MS}});
    let t0 = Instant::now();
    let ideal = match server.request("tools/call", call, limit) {
        Ok(reply) => reply.at - t0,
        Err(e) => {
            r.failed += 1;
            let e = ctx.failed(server, &e);
            r.notes
                .push(format!("{} ×{n}: the single call failed: {e}", kind.name()));
            return;
        }
    };
    r.set(k("ideal_ms"), ideal.as_secs_f64() * 1e3);
    let burst = |ms: u64| LoadSpec {
        tool: kind.tool(),
        args: json!({"ms": ms}),
        depth: n,
        total: Some(n as u64),
        latencies: false,
    };
    // The timed burst, with nothing else running in the driver.
    server.start_burst(&burst(WAIT_MS));
    let timed = server.finish_burst(Instant::now() + limit);
    let wall = timed.wall.map_or(f64::INFINITY, |w| w.as_secs_f64());
    r.set(k("wall_s"), wall);
    r.set(k("ratio"), wall / ideal.as_secs_f64());
    r.set(k("answered"), timed.answered as f64);
    r.failed += timed.errors;
    if let Some(e) = &timed.first_error {
        r.notes
            .push(format!("{} ×{n}: first failure: {e}", kind.name()));
    }
    let closed = server.closed();
    if timed.unanswered > 0 && closed {
        // Lost, not slow (a slow burst shows in the "answered" row).
        r.failed += timed.unanswered;
        r.notes.push(format!(
            "{} ×{n}: the server exited with {} of {n} calls unanswered",
            kind.name(),
            timed.unanswered
        ));
    }
    // The memory: after a finished burst, n calls of HOLD_MS at once,
    // sampled while they wait; after a cut-off one, whose calls are still
    // in flight, one sample now.
    let mut peak = Peak::default();
    if !closed {
        if timed.unanswered == 0 {
            server.start_burst(&burst(HOLD_MS));
            peak = sample_window(server.pid, Instant::now());
            let (_, failed, first) = server.burst_status();
            if failed > 0 {
                r.notes.push(format!(
                    "{} ×{n}: {failed} calls of the memory burst failed{}",
                    kind.name(),
                    first.map_or(String::new(), |e| format!("; first failure: {e}"))
                ));
            }
        } else {
            peak.sample(server.pid);
        }
    }
    if peak.samples > 0 {
        r.set(k("pss"), peak.pss as f64);
        r.set(k("procs"), peak.procs as f64);
    }
    progress(&format!(
        "  {} ×{n}: one call {:.0} ms; all {n}: {}; {} answered, {} failed; peak PSS {:.1} MB \
         over {} processes ({} samples, slowest {:.0} ms)",
        kind.name(),
        ideal.as_secs_f64() * 1e3,
        if wall.is_finite() {
            format!("{wall:.2} s = {:.2}× one call", wall / ideal.as_secs_f64())
        } else {
            format!("unfinished after {} s", limit.as_secs())
        },
        timed.answered,
        timed.errors,
        peak.pss as f64 / 1e6,
        peak.procs,
        peak.samples,
        peak.slowest.as_secs_f64() * 1e3
    ));
    // Neither the memory burst's calls nor a cut-off burst's are waited for.
    server.kill();
}

/// A `block` call that has started: the driver holds its connection.
struct Blocked {
    id: u64,
    stream: TcpStream,
}

/// Waits up to `wait` for `poll(2)` events on `fds`.
fn poll_in(fds: &[i32], wait: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = wait.as_millis().clamp(0, 1_000) as i32;
    // SAFETY: pfds is a valid array of pollfd of the length given.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}

/// The connection of the `block` call `id` if it starts within `wait`.
fn accept_within(
    server: &Server,
    listener: &TcpListener,
    id: u64,
    wait: Duration,
) -> Result<Option<TcpStream>, String> {
    let deadline = Instant::now() + wait;
    loop {
        match listener.accept() {
            Ok((s, _)) => return Ok(Some(s)),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("accept: {e}")),
        }
        if let Some(reply) = server.wait_reply(id, Duration::ZERO)? {
            return Err(format!("block returned before connecting: {}", reply.value));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        poll_in(
            &[listener.as_raw_fd()],
            (deadline - now).min(Duration::from_millis(5)),
        );
    }
}

/// How [`fill`] ended.
enum Filled {
    /// Every worker is busy, and the call with this id waits.
    Waiting(u64),
    /// [`FILL_CAP`] calls run at once and none waits yet.
    NeverFull,
}

/// Sends `block` calls until one does not start within [`FILL_WAIT`]; the
/// ones that start join `busy`.
fn fill(
    server: &Server,
    listener: &TcpListener,
    port: u16,
    busy: &mut Vec<Blocked>,
) -> Result<Filled, String> {
    loop {
        if busy.len() >= FILL_CAP {
            return Ok(Filled::NeverFull);
        }
        let id = server.send_request(
            "tools/call",
            json!({"name": "block", "arguments": {"port": port}}),
        );
        // The first one must start: a pool has at least one worker, which
        // may still be starting.
        let wait = if busy.is_empty() {
            NEXT_LIMIT
        } else {
            FILL_WAIT
        };
        match accept_within(server, listener, id, wait)? {
            Some(stream) => busy.push(Blocked { id, stream }),
            None if busy.is_empty() => {
                return Err(format!(
                    "the first block call did not start within {} s",
                    wait.as_secs()
                ))
            }
            None => return Ok(Filled::Waiting(id)),
        }
    }
}

/// What one cancel measured, in ms from the cancel.
struct Rep {
    dead: Option<f64>,
    result: f64,
}

/// One cancel: the pool is full and `next` waits; cancels the oldest busy
/// call and times its worker's death and `next`'s result. `Ok(None)` when
/// `next` started before the grace ended (the pool grew instead).
fn one_cancel(
    server: &Server,
    listener: &TcpListener,
    busy: &mut Vec<Blocked>,
    next: u64,
    grace: Duration,
) -> Result<Option<Rep>, String> {
    let victim = busy.remove(0);
    victim
        .stream
        .set_nonblocking(true)
        .map_err(|e| e.to_string())?;
    let mut stream = victim.stream;
    let t0 = Instant::now();
    server.notify(
        "notifications/cancelled",
        json!({"requestId": victim.id, "reason": "benchmark: cancel to replacement"}),
    );
    let deadline = t0 + grace + NEXT_LIMIT;
    let (mut dead, mut started) = (None, None);
    let mut buf = [0u8; 256];
    loop {
        let now = Instant::now();
        // Done when the next call started and the victim's worker is dead
        // (or still alive 1 s after the next call started).
        let waited = started.is_some_and(|at| dead.is_some() || now >= at + DEAD_WAIT);
        if waited || now >= deadline {
            break;
        }
        let fds = [stream.as_raw_fd(), listener.as_raw_fd()];
        let watch = match (dead.is_none(), started.is_none()) {
            (true, true) => &fds[..],
            (true, false) => &fds[..1],
            _ => &fds[1..],
        };
        poll_in(watch, Duration::from_millis(5));
        let now = Instant::now();
        if dead.is_none() {
            match stream.read(&mut buf) {
                Ok(0) => dead = Some(now),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => dead = Some(now),
            }
        }
        if started.is_none() {
            match listener.accept() {
                Ok((s, _)) if now - t0 < grace => {
                    // Too early for a replacement: the pool grew instead.
                    busy.push(Blocked {
                        id: next,
                        stream: s,
                    });
                    return Ok(None);
                }
                // Released at once: the call returns, and its result is
                // the one timed.
                Ok((s, _)) => {
                    drop(s);
                    started = Some(now);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(format!("accept: {e}")),
            }
        }
    }
    if started.is_none() {
        return Err(format!(
            "the next call did not start within cancel_grace + {} s of the cancel",
            NEXT_LIMIT.as_secs()
        ));
    }
    let reply = server
        .wait_reply(next, NEXT_LIMIT)?
        .ok_or("the next call did not answer after its release")?;
    reply.outcome()?;
    let ms = |t: Instant| (t - t0).as_secs_f64() * 1e3;
    Ok(Some(Rep {
        dead: dead.map(ms),
        result: ms(reply.at),
    }))
}

/// The `q`-quantile (nearest rank) of values in ms.
fn quantile_ms(values: &[f64], q: f64) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let ns: Vec<u64> = v.iter().map(|ms| (ms * 1e6).max(0.0) as u64).collect();
    super::quantile(&ns, q).map(|ns| ns as f64 / 1e6)
}

/// flw in isolated mode: cancel to the next call's result on a fresh worker.
fn replacement(ctx: &Ctx, peer: &Peer, reps: usize, r: &mut PeerResult) {
    let Some(variant) = peer.variant else {
        return;
    };
    let grace_ms = variant.cancel_grace_ms();
    let grace = Duration::from_millis(grace_ms);
    progress(&format!(
        "  cancel to replacement: {reps} cancels, cancel_grace {grace_ms} ms"
    ));
    let listener = match TcpListener::bind("127.0.0.1:0").and_then(|l| {
        l.set_nonblocking(true)?;
        Ok(l)
    }) {
        Ok(l) => l,
        Err(e) => {
            r.notes
                .push(format!("cancel to replacement: listener: {e}"));
            return;
        }
    };
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let server = match ctx.start(peer) {
        Ok(s) => s,
        Err(e) => {
            r.notes
                .push(format!("cancel to replacement: did not start: {e}"));
            return;
        }
    };
    let mut busy = Vec::new();
    let (mut done, mut grew, mut workers) = (Vec::new(), 0, 0);
    // Why the cancels stopped early, and whether that is a failure (or only
    // a pool that never needs a replacement).
    let mut stopped: Option<(String, bool)> = None;
    while done.len() < reps {
        let next = match fill(&server, &listener, port, &mut busy) {
            Ok(Filled::Waiting(id)) => id,
            Ok(Filled::NeverFull) => {
                workers = busy.len();
                stopped = Some((
                    format!(
                        "not measured: the pool ran {FILL_CAP} blocking calls at once without \
                         queueing one, so its next call never waits for a replacement"
                    ),
                    false,
                ));
                break;
            }
            Err(e) => {
                stopped = Some((e, true));
                break;
            }
        };
        workers = workers.max(busy.len());
        match one_cancel(&server, &listener, &mut busy, next, grace) {
            Ok(Some(rep)) => {
                done.push(rep);
                grew = 0;
                if done.len() % 10 == 0 {
                    progress(&format!("    {} cancels", done.len()));
                }
            }
            Ok(None) => {
                grew += 1;
                if grew >= GREW_LIMIT {
                    stopped = Some((
                        format!(
                            "{GREW_LIMIT} times in a row the next call started before the \
                             cancel grace ended: the pool grew instead of waiting for the \
                             replacement"
                        ),
                        false,
                    ));
                    break;
                }
            }
            Err(e) => {
                stopped = Some((e, true));
                break;
            }
        }
    }
    let result: Vec<f64> = done.iter().map(|d| d.result - grace_ms as f64).collect();
    let dead: Vec<f64> = done.iter().filter_map(|d| d.dead).collect();
    let after_kill: Vec<f64> = done
        .iter()
        .filter_map(|d| d.dead.map(|dead| d.result - dead))
        .collect();
    let set = |r: &mut PeerResult, key: &str, v: Option<f64>| {
        if let Some(v) = v {
            r.set(key, v);
        }
    };
    set(r, "repl_p50", quantile_ms(&result, 0.5));
    set(r, "repl_p90", quantile_ms(&result, 0.9));
    let dead_less: Vec<f64> = dead.iter().map(|d| d - grace_ms as f64).collect();
    set(r, "dead_p50", median(&dead_less));
    set(r, "dead_max", dead_less.iter().copied().reduce(f64::max));
    set(r, "after_kill_p50", quantile_ms(&after_kill, 0.5));
    set(r, "after_kill_p90", quantile_ms(&after_kill, 0.9));
    r.set("grace_ms", grace_ms as f64);
    r.set("cancels", done.len() as f64);
    r.set("pool_workers", workers as f64);
    if dead.len() < done.len() {
        r.notes.push(format!(
            "cancel to replacement: the cancelled call's connection stayed open in {} of {} \
             cancels (its worker was not killed)",
            done.len() - dead.len(),
            done.len()
        ));
    }
    if let Some((e, failed)) = stopped {
        r.failed += u64::from(failed);
        let after = if done.is_empty() {
            String::new()
        } else {
            format!("stopped after {} cancels: ", done.len())
        };
        r.notes.push(format!("cancel to replacement: {after}{e}"));
        progress(&format!("    stopped: {e}"));
    }
    progress(&format!(
        "    cancel → next result − grace: p50 {:.1} ms, p90 {:.1} ms; worker dead − grace: p50 \
         {:.1} ms; kill → next result: p50 {:.1} ms ({} cancels, {workers} workers busy)",
        r.get("repl_p50").unwrap_or(f64::NAN),
        r.get("repl_p90").unwrap_or(f64::NAN),
        r.get("dead_p50").unwrap_or(f64::NAN),
        r.get("after_kill_p50").unwrap_or(f64::NAN),
        done.len()
    ));
    // Release the blocked calls, then stop the server.
    drop(busy);
    server.shutdown(Duration::from_secs(5));
}

/// Runs the model-like waits workload.
pub fn run(ctx: &Ctx) -> Section {
    let limit = Duration::from_secs(ctx.pick(45, 15));
    let reps = ctx.pick(50, 5);
    let mut results = Vec::new();
    for peer in ctx.peers(Workload::Waits) {
        progress(&format!("waits: {}", peer.label));
        let mut r = PeerResult::new(&peer);
        let bursts = peer.variant != Some(REPLACEMENT_ONLY);
        for &kind in kinds(&peer).iter().filter(|_| bursts) {
            for n in COUNTS {
                phase(ctx, &peer, kind, n, limit, &mut r);
            }
        }
        let isolated = peer
            .variant
            .is_some_and(|v| !v.is_ts() && (v.defaults || v.mode == "isolated"));
        if isolated {
            replacement(ctx, &peer, reps, &mut r);
        }
        if r.metrics.is_empty() {
            let why = r.notes.join("; ");
            results.push(PeerResult {
                failed: r.failed,
                ..PeerResult::skipped(&peer, why)
            });
        } else {
            results.push(r);
        }
    }
    let mut rows = Vec::new();
    for kind in [Kind::Async, Kind::Sync] {
        for n in COUNTS {
            let c = thousands(n as f64);
            let title = |what: &str| format!("{} ×{c}: {what}", kind.name());
            rows.push(Row::new(
                title("one call alone (ms)"),
                key(kind, n, "ideal_ms"),
                Fmt::Millis,
            ));
            rows.push(Row::new(
                title(&format!("all {c} at once (s)")),
                key(kind, n, "wall_s"),
                Fmt::Secs,
            ));
            rows.push(Row::new(
                title("ratio to one call"),
                key(kind, n, "ratio"),
                Fmt::Times,
            ));
            rows.push(Row::new(
                title(&format!("answered within {} s", limit.as_secs())),
                key(kind, n, "answered"),
                Fmt::Int,
            ));
            rows.push(Row::new(
                title("total PSS at the peak (MB)"),
                key(kind, n, "pss"),
                Fmt::Mb,
            ));
            rows.push(Row::new(
                title("processes at the peak"),
                key(kind, n, "procs"),
                Fmt::Int,
            ));
        }
    }
    rows.extend([
        Row::new("cancel_grace subtracted (ms)", "grace_ms", Fmt::Millis),
        Row::new(
            "cancel → next call's result on a fresh worker − grace: p50 (ms)",
            "repl_p50",
            Fmt::Millis,
        ),
        Row::new(
            "cancel → next call's result on a fresh worker − grace: p90 (ms)",
            "repl_p90",
            Fmt::Millis,
        ),
        Row::new(
            "cancel → worker dead − grace: p50 (ms)",
            "dead_p50",
            Fmt::Millis,
        ),
        Row::new(
            "cancel → worker dead − grace: max (ms)",
            "dead_max",
            Fmt::Millis,
        ),
        Row::new(
            "worker dead → next call's result: p50 (ms)",
            "after_kill_p50",
            Fmt::Millis,
        ),
        Row::new(
            "worker dead → next call's result: p90 (ms)",
            "after_kill_p90",
            Fmt::Millis,
        ),
        Row::new("cancels measured", "cancels", Fmt::Int),
        Row::new(
            "workers busy when the pool was full",
            "pool_workers",
            Fmt::Int,
        ),
    ]);
    let mut ratios = Vec::new();
    for kind in [Kind::Async, Kind::Sync] {
        for n in COUNTS {
            ratios.push(Ratio {
                title: format!(
                    "{} wait, {} calls of 1 s at once, wall time",
                    kind.name(),
                    thousands(n as f64)
                ),
                key: key(kind, n, "wall_s"),
                higher_better: false,
            });
        }
    }
    let flw_ran = results.iter().any(|r| r.peer.family == Family::Flw);
    let mut about = vec![format!(
        "A tool that waits like a model call: `wait_async(ms)` does `await \
             asyncio.sleep(ms / 1000)` (TypeScript: an awaited `setTimeout`), `wait_sync(ms)` \
             does `time.sleep(ms / 1000)` in a sync tool; the raw floor puts `wait_async` on its \
             timer heap and runs each `wait_sync` on a thread of its own; Go sleeps in the \
             call's goroutine for both. For each kind and count, on a fresh server: a call of 0 ms \
             (flw may still be starting its workers after `tools/list`), one call of \
             {WAIT_MS} ms alone (the ideal), then N calls of {WAIT_MS} ms written at once; \
             \"all N at once\" runs from queueing the first request to the last reply, and the \
             ratio divides it by the single call's time on the same server. A burst not \
             answered within {} s is cut off (\"unfinished\"); calls answered with an error \
             count as failed calls. \"Total PSS at the peak\" is the largest sum of `Pss` \
             (`/proc/PID/smaps_rollup`) over the server and all its descendants while N calls \
             are in flight, read outside the timed burst (reading 1,000 processes takes a core \
             for a second): after it, the driver sends N calls of {HOLD_MS} ms at once and \
             samples from {} ms to {} ms after the first send, every {} ms; after a burst cut \
             off unfinished, it samples once while those calls are still in flight. The server \
             is then killed. `flw defaults (TS)` serves `bench/peers/flw_tools.ts` (async wait \
             only).",
        limit.as_secs(),
        SAMPLE_FROM.as_millis(),
        SAMPLE_UNTIL.as_millis(),
        SAMPLE_EVERY.as_millis()
    )];
    if flw_ran {
        about.push(format!(
            "Cancel to replacement (flw, isolated pools, Python): `block(port)` is a sync tool \
             that connects to the driver and blocks in `recv` until the driver closes the \
             connection, so a cooperative cancel cannot stop it. The driver sends `block` calls \
             one at a time until one has not started {} ms after it was sent: every worker the \
             pool will run is then busy and that call waits (a pool that runs {FILL_CAP} at once \
             is not measured: its next call never waits for a replacement). It sends `notifications/cancelled` \
             for the oldest busy call and polls (poll(2), 5 ms at most) for that call's \
             connection to close (its worker is dead) and for the waiting call to connect (it \
             runs on the replacement); then it closes that call's connection and times the \
             call's result. The row \"cancel → next call's result\" is that time minus the \
             pool's cancel_grace (flw's default {} ms for `flw defaults`, the configured one \
             otherwise), since flw waits the grace before it kills an isolated worker; \"worker \
             dead → next call's result\" needs no grace. {reps} cancels; a cancel whose next \
             call started before the grace ended (the pool grew instead) is not counted. `{}` \
             runs only this measurement: a pool of one worker, whose next call always needs the \
             replacement.",
            FILL_WAIT.as_millis(),
            crate::peers::DEFAULT_CANCEL_GRACE_MS,
            REPLACEMENT_ONLY.label()
        ));
    }
    about.push(
        "Targets of issue 17, each a ratio within this run (see \"Targets (issue 17)\" below): \
         256 one-second calls within 1.3× of one call on flw's defaults, for the async and the \
         sync Python tool and the async TypeScript tool; total PSS of the whole flw tree with \
         256 Python calls in flight on the defaults ≤ 1 GB and with 1,000 async calls in a \
         shared pool ≤ 300 MB; cancel to the next call's result on a fresh worker, minus the \
         grace, ≤ 10 ms at p50."
            .into(),
    );
    Section {
        workload: Workload::Waits,
        title: format!(
            "(l) Model-like waits: calls of {} s, 256 and 1,000 at once",
            WAIT_MS / 1000
        ),
        about,
        rows,
        results,
        ratios,
        notes: vec![],
    }
}
