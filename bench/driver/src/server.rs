//! A peer server spawned on pipes, and the JSON-RPC connection to it.
//!
//! Two threads serve a connection. The writer takes lines from a channel,
//! drains whatever else is queued, writes it all and flushes once. The reader
//! reads replies line by line, stamps them with an [`Instant`] and either
//! parks them for a caller of [`Server::request`] or, during a load, counts
//! them and sends the next call at once, from the reader thread itself, so
//! exactly `depth` calls stay outstanding. A traced load also records each
//! completion and the version markers of the results ([`trace`]).

mod trace;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procfs;
pub use trace::{Notice, Trace};

/// The MCP protocol version the driver asks for.
pub const PROTOCOL_VERSION: &str = "2025-11-25";

/// How to start a peer.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The executable.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Variables removed from it.
    pub env_remove: Vec<String>,
}

enum Out {
    Line(Vec<u8>),
    Close,
}

/// What one reply says.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The whole message.
    pub value: Value,
    /// When the reader parsed it.
    pub at: Instant,
}

impl Reply {
    /// `Err` with a message for a JSON-RPC error or a tool result with `isError: true`.
    pub fn outcome(&self) -> Result<&Value, String> {
        outcome(&self.value)
    }
}

fn outcome(v: &Value) -> Result<&Value, String> {
    if let Some(e) = v.get("error") {
        let msg = e.get("message").and_then(Value::as_str).unwrap_or("");
        return Err(format!(
            "JSON-RPC error {}: {msg}",
            e.get("code").unwrap_or(&Value::Null)
        ));
    }
    let Some(result) = v.get("result") else {
        return Err("reply without result or error".into());
    };
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        let text = result
            .pointer("/content/0/text")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(format!("tool error: {}", truncate(text, 200)));
    }
    Ok(result)
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// One pipelined run of a single tool.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The tool to call.
    pub tool: &'static str,
    /// Its arguments.
    pub args: Value,
    /// Calls kept in flight.
    pub depth: usize,
    /// Stop sending after this many calls in total (`None`: until stopped).
    pub total: Option<u64>,
    /// Record each call's latency (meaningful with `depth == 1`).
    pub latencies: bool,
}

/// When a phase of a load ends: after `calls` completions or `time`, whichever first.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    /// Completions that end the phase, if any.
    pub calls: Option<u64>,
    /// The longest the phase lasts.
    pub time: Duration,
}

/// What a load measured.
#[derive(Debug, Clone, Default)]
pub struct LoadStats {
    /// Calls completed inside the measured window.
    pub calls: u64,
    /// The measured window.
    pub wall: Duration,
    /// Failed calls (JSON-RPC errors and `isError` results), warm-up included.
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Calls still unanswered after the drain timeout.
    pub unanswered: u64,
    /// Per-call latencies in nanoseconds, when asked for.
    pub latencies_ns: Vec<u64>,
    /// CPU seconds of the server's process tree in the window.
    pub server_cpu: f64,
    /// CPU seconds of this driver in the window.
    pub driver_cpu: f64,
}

/// What a burst measured ([`Server::finish_burst`]).
#[derive(Debug, Clone, Default)]
pub struct Burst {
    /// Calls answered (successes and failures).
    pub answered: u64,
    /// Calls still unanswered when the wait ended.
    pub unanswered: u64,
    /// Failed calls (JSON-RPC errors and `isError` results).
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// From queueing the first call for writing to the last reply; `None`
    /// unless every call was answered.
    pub wall: Option<Duration>,
}

impl LoadStats {
    /// Completed calls per second in the window.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    /// Cores the server used on average in the window.
    pub fn server_cores(&self) -> f64 {
        self.server_cpu / self.wall.as_secs_f64().max(1e-9)
    }
    /// Cores the driver used on average in the window.
    pub fn driver_cores(&self) -> f64 {
        self.driver_cpu / self.wall.as_secs_f64().max(1e-9)
    }
}

struct Load {
    /// The bytes after the id: `,"method":"tools/call","params":{...}}\n`.
    suffix: Vec<u8>,
    /// When the first calls were queued for writing.
    started: Instant,
    /// When the last reply so far arrived.
    last_reply: Option<Instant>,
    in_flight: HashMap<u64, Instant>,
    unsent: u64,
    stop: bool,
    measuring: bool,
    done: u64,
    total_done: u64,
    wake_at_total: Option<u64>,
    want: Option<u64>,
    measure_end: Option<Instant>,
    errors: u64,
    first_error: Option<String>,
    latencies: Option<Vec<u64>>,
    trace: Option<Trace>,
}

#[derive(Default)]
struct State {
    waiting: HashMap<u64, Option<Reply>>,
    load: Option<Load>,
    notices: Vec<Notice>,
    closed: bool,
}

struct Shared {
    epoch: Instant,
    last_write_ns: AtomicU64,
    next_id: AtomicU64,
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Appends the request line of call `id` to `out`.
fn push_request(out: &mut Vec<u8>, id: u64, suffix: &[u8]) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    let _ = write!(out, "{id}");
    out.extend_from_slice(suffix);
}

/// A running peer with its connection.
pub struct Server {
    /// The label in reports.
    pub label: String,
    /// The server's process id (also its process group).
    pub pid: i32,
    /// Its stderr.
    pub log: PathBuf,
    child: Child,
    shared: Arc<Shared>,
    tx: Sender<Out>,
    writer: Option<JoinHandle<()>>,
    extra_pids: Vec<i32>,
    done: bool,
}

impl Server {
    /// Starts `launch` in its own process group, stderr to `log`.
    pub fn spawn(label: &str, launch: &Launch, log: &Path) -> Result<Server, String> {
        let err_file =
            File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
        let mut cmd = Command::new(&launch.program);
        for k in &launch.env_remove {
            cmd.env_remove(k);
        }
        cmd.args(&launch.args)
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(err_file))
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", launch.program.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let shared = Arc::new(Shared {
            epoch: Instant::now(),
            last_write_ns: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel();
        let writer = {
            let shared = shared.clone();
            thread::Builder::new()
                .name("writer".into())
                .spawn(move || write_loop(stdin, rx, &shared))
                .map_err(|e| e.to_string())?
        };
        {
            let shared = shared.clone();
            let tx = tx.clone();
            thread::Builder::new()
                .name("reader".into())
                .spawn(move || read_loop(stdout, &shared, &tx))
                .map_err(|e| e.to_string())?;
        }
        Ok(Server {
            label: label.to_string(),
            pid: child.id() as i32,
            log: log.to_path_buf(),
            child,
            shared,
            tx,
            writer: Some(writer),
            extra_pids: Vec::new(),
            done: false,
        })
    }

    fn send(&self, line: Vec<u8>) {
        let _ = self.tx.send(Out::Line(line));
    }

    /// Sends a request and registers its id; fetch the reply with [`Server::wait_reply`].
    pub fn send_request(&self, method: &str, params: Value) -> u64 {
        let id = self.shared.id();
        self.shared.lock().waiting.insert(id, None);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut line = serde_json::to_vec(&msg).expect("JSON");
        line.push(b'\n');
        self.send(line);
        id
    }

    /// The reply to `id`, if it came within `timeout`; `Err` if the server closed stdout.
    pub fn wait_reply(&self, id: u64, timeout: Duration) -> Result<Option<Reply>, String> {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.lock();
        loop {
            if let Some(Some(_)) = st.waiting.get(&id) {
                return Ok(st.waiting.remove(&id).flatten());
            }
            if st.closed {
                st.waiting.remove(&id);
                return Err("the server closed its stdout".into());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Sends a request and waits for a successful reply.
    pub fn request(&self, method: &str, params: Value, timeout: Duration) -> Result<Reply, String> {
        let id = self.send_request(method, params);
        match self.wait_reply(id, timeout)? {
            Some(r) => {
                r.outcome()?;
                Ok(r)
            }
            None => {
                self.shared.lock().waiting.remove(&id);
                Err(format!("no reply to {method} within {timeout:?}"))
            }
        }
    }

    /// Sends a notification.
    pub fn notify(&self, method: &str, params: Value) {
        let msg = json!({"jsonrpc": "2.0", "method": method, "params": params});
        let mut line = serde_json::to_vec(&msg).expect("JSON");
        line.push(b'\n');
        self.send(line);
    }

    /// `initialize`, `notifications/initialized`, `tools/list`; returns the
    /// `tools/list` reply (its `at` is when it arrived).
    pub fn handshake(&self, timeout: Duration) -> Result<Reply, String> {
        self.handshake_expecting(timeout, 4)
    }

    /// [`Server::handshake`] for a server with at least `tools` tools.
    pub fn handshake_expecting(&self, timeout: Duration, tools: usize) -> Result<Reply, String> {
        let client = json!({"name": "flw-bench", "version": env!("CARGO_PKG_VERSION")});
        let init =
            json!({"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": client});
        self.request("initialize", init, timeout)?;
        self.notify("notifications/initialized", json!({}));
        let list = self.request("tools/list", json!({}), timeout)?;
        let n = list
            .value
            .pointer("/result/tools")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if n < tools {
            return Err(format!("tools/list returned {n} tools, expected {tools}"));
        }
        Ok(list)
    }

    /// Installs a load and sends its first window of calls: `depth` calls, or
    /// all of them for a `burst`, in writes of at most about 64 KiB. A
    /// `traced` load records a [`Trace`].
    fn start_load(&self, spec: &LoadSpec, wake_at_total: Option<u64>, burst: bool, traced: bool) {
        let depth = spec.depth as u64;
        let total = spec.total.unwrap_or(if burst { depth } else { u64::MAX });
        let first = if burst { total } else { total.min(depth) };
        let mut suffix = b",\"method\":\"tools/call\",\"params\":".to_vec();
        let params = json!({"name": spec.tool, "arguments": spec.args});
        suffix.extend_from_slice(&serde_json::to_vec(&params).expect("JSON"));
        suffix.extend_from_slice(b"}\n");
        let mut load = Load {
            suffix,
            started: Instant::now(),
            last_reply: None,
            in_flight: HashMap::with_capacity(first as usize),
            unsent: total - first,
            stop: burst,
            measuring: false,
            done: 0,
            total_done: 0,
            wake_at_total,
            want: None,
            measure_end: None,
            errors: 0,
            first_error: None,
            latencies: spec.latencies.then(Vec::new),
            trace: traced.then(Trace::default),
        };
        // The lock is held until the load is installed, so the reader cannot
        // see a reply to a call it does not know yet.
        let mut st = self.shared.lock();
        let now = Instant::now();
        load.started = now;
        let mut batch = Vec::new();
        for _ in 0..first {
            let id = self.shared.id();
            push_request(&mut batch, id, &load.suffix);
            load.in_flight.insert(id, now);
            if batch.len() >= 1 << 16 {
                self.send(std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            self.send(batch);
        }
        st.load = Some(load);
    }

    /// Runs a load: warm-up phase, measured phase, then stop and drain.
    pub fn run_load(&self, spec: &LoadSpec, warmup: Phase, measure: Phase) -> LoadStats {
        self.start_load(spec, warmup.calls, false, false);
        // Warm-up.
        self.wait_until(Instant::now() + warmup.time, |l| {
            warmup.calls.is_some_and(|c| l.total_done >= c)
        });
        let (t0, cpu0, self0) = {
            let mut st = self.shared.lock();
            let load = st.load.as_mut().expect("load");
            load.measuring = true;
            load.done = 0;
            load.want = measure.calls;
            if let Some(l) = load.latencies.as_mut() {
                l.clear();
            }
            (
                Instant::now(),
                procfs::tree_cpu_seconds(self.pid),
                procfs::self_cpu_seconds(),
            )
        };
        self.wait_until(t0 + measure.time, |l| l.measure_end.is_some());
        let mut stats = LoadStats::default();
        {
            let mut st = self.shared.lock();
            let load = st.load.as_mut().expect("load");
            load.measuring = false;
            load.stop = true;
            let end = load.measure_end.unwrap_or_else(Instant::now);
            stats.calls = load.done;
            stats.wall = end - t0;
            stats.latencies_ns = load.latencies.take().unwrap_or_default();
        }
        stats.server_cpu = procfs::tree_cpu_seconds(self.pid) - cpu0;
        stats.driver_cpu = procfs::self_cpu_seconds() - self0;
        self.wait_until(Instant::now() + Duration::from_secs(15), |l| {
            l.in_flight.is_empty()
        });
        let mut st = self.shared.lock();
        if let Some(load) = st.load.take() {
            stats.errors = load.errors;
            stats.first_error = load.first_error;
            stats.unanswered = load.in_flight.len() as u64;
        }
        stats
    }

    /// Sends `spec.total` calls at once and returns without waiting.
    pub fn start_burst(&self, spec: &LoadSpec) {
        self.start_load(spec, None, true, false);
    }

    /// Waits until every call of the burst is answered, the server closes
    /// its stdout, or `deadline`; then ends the burst and reports it.
    pub fn finish_burst(&self, deadline: Instant) -> Burst {
        self.wait_until(deadline, |l| l.in_flight.is_empty());
        let Some(load) = self.shared.lock().load.take() else {
            return Burst::default();
        };
        let unanswered = load.in_flight.len() as u64;
        Burst {
            answered: load.total_done,
            unanswered,
            errors: load.errors,
            first_error: load.first_error,
            wall: load
                .last_reply
                .filter(|_| unanswered == 0)
                .map(|last| last - load.started),
        }
    }

    /// For a burst: (replies so far, failed calls, first failure).
    pub fn burst_status(&self) -> (u64, u64, Option<String>) {
        let st = self.shared.lock();
        st.load.as_ref().map_or((0, 0, None), |l| {
            (l.total_done, l.errors, l.first_error.clone())
        })
    }

    fn wait_until(&self, deadline: Instant, done: impl Fn(&Load) -> bool) {
        let mut st = self.shared.lock();
        loop {
            if st.closed || st.load.as_ref().is_none_or(&done) {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self
                .shared
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Starts a traced load: `spec.depth` calls in flight until
    /// [`Server::stop_traced`], every completion and marker recorded.
    pub fn start_traced(&self, spec: &LoadSpec) {
        self.start_load(spec, None, false, true);
    }

    /// When the first result carrying `marker` arrived, waiting for it
    /// until `deadline`; `None` if none came (or the server closed).
    pub fn wait_mark(&self, marker: &str, deadline: Instant) -> Option<Instant> {
        let seen = |l: &Load| l.trace.as_ref().and_then(|t| t.mark(marker)).is_some();
        self.wait_until(deadline, seen);
        let st = self.shared.lock();
        let trace = st.load.as_ref()?.trace.as_ref()?;
        trace.mark(marker).map(|m| m.first)
    }

    /// Stops a traced load and waits up to `drain` for the calls in flight.
    /// The stats count every completed call (`wall` and the CPU times are
    /// not measured).
    pub fn stop_traced(&self, drain: Duration) -> (LoadStats, Trace) {
        if let Some(load) = self.shared.lock().load.as_mut() {
            load.stop = true;
        }
        self.wait_until(Instant::now() + drain, |l| l.in_flight.is_empty());
        let mut stats = LoadStats::default();
        let mut trace = Trace::default();
        if let Some(load) = self.shared.lock().load.take() {
            stats.calls = load.total_done;
            stats.errors = load.errors;
            stats.first_error = load.first_error;
            stats.unanswered = load.in_flight.len() as u64;
            trace = load.trace.unwrap_or_default();
        }
        (stats, trace)
    }

    /// The notifications the server sent so far.
    pub fn notices(&self) -> Vec<Notice> {
        self.shared.lock().notices.clone()
    }

    /// True once the server closed its stdout.
    pub fn closed(&self) -> bool {
        self.shared.lock().closed
    }

    /// Also SIGKILL `pid` at shutdown (e.g. a grandchild that may outlive the server).
    pub fn kill_at_shutdown(&mut self, pid: i32) {
        self.extra_pids.push(pid);
    }

    /// Closes stdin and waits up to `grace` for the server to exit, then
    /// SIGKILLs its process group and every process of its tree. Returns
    /// whether it exited on its own.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        self.finish(grace)
    }

    /// SIGKILLs the server, its group and its tree at once.
    pub fn kill(mut self) {
        self.finish(Duration::ZERO);
    }

    fn finish(&mut self, grace: Duration) -> bool {
        if self.done {
            return true;
        }
        self.done = true;
        let tree = procfs::tree_pids(self.pid);
        let _ = self.tx.send(Out::Close);
        let deadline = Instant::now() + grace;
        let mut exited = false;
        while !grace.is_zero() && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                exited = true;
                break;
            }
            thread::sleep(Duration::from_millis(2));
        }
        procfs::kill_group(self.pid);
        for &p in tree.iter().chain(&self.extra_pids) {
            procfs::kill(p);
        }
        let _ = self.child.wait();
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
        exited
    }

    /// The last lines of the server's stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.finish(Duration::ZERO);
    }
}

/// The last `lines` lines of a file.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn write_loop(stdin: ChildStdin, rx: Receiver<Out>, shared: &Shared) {
    let mut w = BufWriter::with_capacity(1 << 16, stdin);
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let stamp = shared.epoch.elapsed().as_nanos() as u64;
        shared.last_write_ns.store(stamp, Ordering::Relaxed);
        for out in batch {
            match out {
                Out::Line(line) => {
                    if w.write_all(&line).is_err() {
                        return;
                    }
                }
                Out::Close => {
                    let _ = w.flush();
                    return;
                }
            }
        }
        if w.flush().is_err() {
            return;
        }
    }
}

fn read_loop(stdout: ChildStdout, shared: &Shared, tx: &Sender<Out>) {
    let mut r = BufReader::with_capacity(1 << 16, stdout);
    let mut buf = Vec::with_capacity(4096);
    // Calls a load sends in answer to replies, held until every reply already
    // read is handled: one channel message (one write) per read of stdout.
    let mut pending = Vec::new();
    loop {
        if r.buffer().is_empty() && !pending.is_empty() {
            let _ = tx.send(Out::Line(std::mem::take(&mut pending)));
        }
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let at = Instant::now();
        let Ok(value) = serde_json::from_slice::<Value>(&buf) else {
            continue;
        };
        if let Some(method) = value.get("method").and_then(Value::as_str) {
            // A notification is kept; a request from the server is ignored.
            if value.get("id").is_none() {
                let mut st = shared.lock();
                if st.notices.len() < trace::MAX_NOTICES {
                    let method = method.to_string();
                    let params = value.get("params").cloned().unwrap_or(Value::Null);
                    st.notices.push(Notice { method, params, at });
                }
            }
            continue;
        }
        let Some(id) = value.get("id").and_then(Value::as_u64) else {
            continue;
        };
        let mut st = shared.lock();
        if let Some(slot) = st.waiting.get_mut(&id) {
            *slot = Some(Reply { value, at });
            shared.cv.notify_all();
            continue;
        }
        let Some(load) = st.load.as_mut() else {
            continue;
        };
        let Some(sent) = load.in_flight.remove(&id) else {
            continue;
        };
        on_load_reply(load, shared, &mut pending, &value, sent, at);
    }
    shared.lock().closed = true;
    shared.cv.notify_all();
}

fn on_load_reply(
    load: &mut Load,
    shared: &Shared,
    pending: &mut Vec<u8>,
    value: &Value,
    sent: Instant,
    at: Instant,
) {
    load.total_done += 1;
    load.last_reply = Some(at);
    if let Err(e) = outcome(value) {
        load.errors += 1;
        load.first_error.get_or_insert(e);
    }
    let mut wake = load.wake_at_total == Some(load.total_done);
    if let Some(t) = load.trace.as_mut() {
        // A new marker wakes whoever waits for it (Server::wait_mark).
        wake |= t.record(value, at);
    }
    if load.measuring {
        load.done += 1;
        if let Some(lat) = load.latencies.as_mut() {
            // Time from the write of the request (not its queueing) to the reply.
            let written =
                shared.epoch + Duration::from_nanos(shared.last_write_ns.load(Ordering::Relaxed));
            lat.push((at - sent.max(written)).as_nanos() as u64);
        }
        if load.want == Some(load.done) {
            load.stop = true;
            load.measure_end = Some(at);
            wake = true;
        }
    }
    if !load.stop && load.unsent > 0 {
        load.unsent -= 1;
        let id = shared.id();
        load.in_flight.insert(id, Instant::now());
        push_request(pending, id, &load.suffix);
    }
    if load.stop && load.in_flight.is_empty() {
        wake = true;
    }
    if wake {
        shared.cv.notify_all();
    }
}
