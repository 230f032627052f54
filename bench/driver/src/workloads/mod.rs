//! The workloads, and the result model they share with the report.
//!
//! Each workload runs against a list of [`Peer`]s and returns a [`Section`]:
//! one [`PeerResult`] per column with named metrics, the rows to show, and the
//! ratios to compute. The report and `results.json` are built from sections.

pub mod cancel;
pub mod coldstart;
pub mod cpu;
pub mod footprint;
pub mod graph;
pub mod http;
pub mod io;
pub mod latency;
pub mod memory;
pub mod swap;
pub mod throughput;
pub mod waits;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::peers::{Family, Paths, Peer};
use crate::server::Server;

/// One workload of the benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Workload {
    /// (a) sequential echo latency.
    Latency,
    /// (b) echo throughput with 1, 16 and 256 in flight.
    Throughput,
    /// (c) a CPU-bound tool with 64 in flight.
    Cpu,
    /// (d) an async sleep tool with 256 and 1,000 in flight.
    Io,
    /// (e) spawn to the `tools/list` reply.
    ColdStart,
    /// (f) cancel to grandchild dead and connection closed.
    Cancel,
    /// (g) RSS idle and with 10,000 calls in flight.
    Memory,
    /// (h) binary and dependency sizes.
    Footprint,
    /// (i) hot swap: a save of the script to its new version serving calls.
    Swap,
    /// (j) graphs: a batch of CPU-bound items, and the cost of a transition.
    Graph,
    /// (k) echo over HTTP with 256 connections: flw serve and the SDK's HTTP server.
    Http,
    /// (l) model-like waits: 256 and 1,000 calls of 1 s at once, and the
    /// cancel-to-replacement time.
    Waits,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 12] = [
        Workload::Latency,
        Workload::Throughput,
        Workload::Cpu,
        Workload::Io,
        Workload::ColdStart,
        Workload::Cancel,
        Workload::Memory,
        Workload::Footprint,
        Workload::Swap,
        Workload::Graph,
        Workload::Http,
        Workload::Waits,
    ];

    /// The name used by `--workloads`.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Latency => "latency",
            Workload::Throughput => "throughput",
            Workload::Cpu => "cpu",
            Workload::Io => "io",
            Workload::ColdStart => "coldstart",
            Workload::Cancel => "cancel",
            Workload::Memory => "memory",
            Workload::Footprint => "footprint",
            Workload::Swap => "swap",
            Workload::Graph => "graph",
            Workload::Http => "http",
            Workload::Waits => "waits",
        }
    }

    /// Parses a `--workloads` name or its letter (`a`..`l`).
    pub fn parse(s: &str) -> Option<Workload> {
        let letters = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
        Workload::ALL
            .into_iter()
            .zip(letters)
            .find(|(w, l)| w.name() == s || *l == s)
            .map(|(w, _)| w)
    }
}

/// What every workload needs.
#[derive(Debug)]
pub struct Ctx {
    /// Where things are.
    pub paths: Paths,
    /// Shorter runs for smoke tests.
    pub quick: bool,
    /// The `--peers` filter.
    pub families: Vec<Family>,
    /// Set when a server failed: keep the logs.
    pub failures: AtomicUsize,
}

impl Ctx {
    /// `full` normally, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// The peers of a workload, in column order.
    pub fn peers(&self, w: Workload) -> Vec<Peer> {
        Peer::for_workload(w, &self.families)
    }

    /// Spawns `peer` and completes the MCP handshake.
    pub fn start(&self, peer: &Peer) -> Result<Server, String> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let launch = self.paths.launch(peer)?;
        let log = self.paths.tmp.join(format!("{n:03}-{}.log", peer.slug()));
        let server = Server::spawn(&peer.label, &launch, &log)?;
        match server.handshake_expecting(Duration::from_secs(30), peer.min_tools()) {
            Ok(_) => Ok(server),
            Err(e) => Err(self.failed(server, &e)),
        }
    }

    /// Notes a server failure: prints its log path, kills it, returns the message.
    pub fn failed(&self, server: Server, what: &str) -> String {
        self.failures.fetch_add(1, Ordering::Relaxed);
        let mut tail = server.log_tail(2).replace('\n', " | ");
        if let Some((i, _)) = tail.char_indices().nth(300) {
            tail.truncate(i);
            tail.push('…');
        }
        progress(&format!(
            "  {} failed: {what}; stderr log: {}",
            server.label,
            server.log.display()
        ));
        server.kill();
        if tail.is_empty() {
            what.to_string()
        } else {
            format!("{what} (stderr: {tail})")
        }
    }
}

/// Prints a progress line to stderr, with the time since the run started.
pub fn progress(msg: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed().as_secs_f64();
    eprintln!("[{t:6.1}s] {msg}");
}

/// How to show a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fmt {
    /// A count or rate, rounded, with thousands separators.
    Int,
    /// Two decimals (cores used, shares, seconds).
    Dec2,
    /// Microseconds, rounded.
    Micros,
    /// Milliseconds, one decimal; infinity is "never".
    Millis,
    /// Bytes shown as MB (10^6) with one decimal.
    Mb,
    /// Bytes shown as KB (10^3) with one decimal.
    Kb,
    /// Seconds, two decimals; infinity is "unfinished".
    Secs,
    /// A ratio such as `1.04×`; infinity is "unfinished".
    Times,
}

/// One row of a section's table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The row title.
    pub title: String,
    /// The metric key.
    pub key: String,
    /// How to show it.
    pub fmt: Fmt,
}

impl Row {
    /// A row.
    pub fn new(title: impl Into<String>, key: impl Into<String>, fmt: Fmt) -> Row {
        Row {
            title: title.into(),
            key: key.into(),
            fmt,
        }
    }
}

/// A ratio line: best flw variant vs the SDK and vs the raw floor.
#[derive(Debug, Clone)]
pub struct Ratio {
    /// What is compared, e.g. "echo at 256 in flight, calls/s".
    pub title: String,
    /// The metric key.
    pub key: String,
    /// Whether a higher value is better (for picking the best flw variant).
    pub higher_better: bool,
}

/// One column's results.
#[derive(Debug, Clone)]
pub struct PeerResult {
    /// The server.
    pub peer: Peer,
    /// Named values.
    pub metrics: Vec<(String, f64)>,
    /// Failed calls over the whole workload.
    pub failed: u64,
    /// Why the peer could not be measured, if it could not.
    pub skipped: Option<String>,
    /// Oddities worth a line in the report.
    pub notes: Vec<String>,
}

impl PeerResult {
    /// An empty result for `peer`.
    pub fn new(peer: &Peer) -> PeerResult {
        PeerResult {
            peer: peer.clone(),
            metrics: Vec::new(),
            failed: 0,
            skipped: None,
            notes: Vec::new(),
        }
    }

    /// A peer that could not run.
    pub fn skipped(peer: &Peer, why: String) -> PeerResult {
        progress(&format!("  {}: skipped: {why}", peer.label));
        PeerResult {
            skipped: Some(why),
            ..PeerResult::new(peer)
        }
    }

    /// Sets a metric.
    pub fn set(&mut self, key: impl Into<String>, v: f64) {
        self.metrics.push((key.into(), v));
    }

    /// A metric's value.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.metrics
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|m| m.1)
    }
}

/// A workload's results and how to present them.
#[derive(Debug, Clone)]
pub struct Section {
    /// Which workload.
    pub workload: Workload,
    /// The heading.
    pub title: String,
    /// What was measured and how (one paragraph per entry).
    pub about: Vec<String>,
    /// The table rows.
    pub rows: Vec<Row>,
    /// The columns.
    pub results: Vec<PeerResult>,
    /// The ratio lines.
    pub ratios: Vec<Ratio>,
    /// Extra lines under the table.
    pub notes: Vec<String>,
}

impl Section {
    /// The result of the column labelled `label`, if it was measured.
    pub fn result(&self, label: &str) -> Option<&PeerResult> {
        self.results
            .iter()
            .find(|r| r.peer.label == label && r.skipped.is_none())
    }

    /// The measured result of the first column of `family`.
    pub fn family(&self, f: Family) -> Option<&PeerResult> {
        self.results
            .iter()
            .find(|r| r.peer.family == f && r.skipped.is_none())
    }

    /// The flw variant with the best `key` (highest or lowest).
    pub fn best_flw(&self, key: &str, higher_better: bool) -> Option<(&PeerResult, f64)> {
        self.results
            .iter()
            .filter(|r| r.peer.family == Family::Flw && r.skipped.is_none())
            .filter_map(|r| r.get(key).map(|v| (r, v)))
            .filter(|(_, v)| v.is_finite())
            .reduce(|a, b| {
                let better = if higher_better { b.1 > a.1 } else { b.1 < a.1 };
                if better {
                    b
                } else {
                    a
                }
            })
    }
}

/// The `q`-quantile (0..=1) of sorted values (nearest rank).
pub fn quantile(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The median of values (infinity sorts last).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 || v[n / 2].is_infinite() {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}
