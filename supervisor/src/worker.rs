//! One worker process: spawn, handshake, the channel, and its death.
//!
//! A [`Worker`] is a handle shared by the pool and the calls it hosts. Three
//! tasks serve it: a reader that routes the worker's messages to the calls
//! waiting for them, a writer that batches outgoing lines, and a lifecycle
//! task that owns the child, sends heartbeats, carries out kill requests
//! (SIGTERM to the group, a grace period, SIGKILL) and, once the process has
//! exited, sweeps the group with SIGKILL and fails whatever calls are left.
//!
//! **Architecture invariant:** every process group a worker creates is killed
//! when the worker ends, whatever the path: an exit, a kill request, a
//! dropped task (the [`group::GroupGuard`]), or the supervisor's own death
//! (the SDK's channel watchdog and `PR_SET_PDEATHSIG`).

pub mod fork_server;
pub mod group;
pub mod handshake;
pub mod lines;
pub mod output;
mod process;
pub mod spawn;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flw_protocol::{
    decode_worker_line, negotiate, Call, Cancel, DecodeErrorCode, ErrorKind, Heartbeat, Hello,
    NodeCall, Shutdown, SupervisorMessage, Welcome, WorkerMessage, MAX_CALL_ID,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot, watch};

use crate::call::{CallEvent, CallFailure, CallOutcome, EventSink, Job};
use fork_server::ForkServer;
use group::{GroupGuard, Target};
use handshake::HandshakeError;
use lines::{Line, LineReader};
use output::{pump, StderrTail, Stream};
use process::Process;
use spawn::SpawnSpec;

/// Where a worker's process comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A new process from the config's `spawn` command line.
    Exec,
    /// Forked by a pool generation's fork server (Python).
    Fork(Arc<ForkServer>),
}

/// How long a worker without a keeper gets between SIGTERM and SIGKILL when
/// it is killed at once (after a cancel): enough for its SDK's handler to
/// kill what its calls started, if its event loop is free.
const NO_KEEPER_KILL_GRACE: Duration = Duration::from_millis(250);

/// Settings of one worker process.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Label for logs and errors, e.g. `agent.py#2`.
    pub label: String,
    /// How to start the process (with [`Origin::Exec`]).
    pub spawn: SpawnSpec,
    /// Exec'd, or forked by a fork server.
    pub origin: Origin,
    /// Whether the process is a keeper that stops the worker's tree when
    /// signalled (Python workers), or the worker itself.
    pub keeper: bool,
    /// How long the worker has to send `hello`.
    pub handshake_timeout: Duration,
    /// Time between SIGTERM and SIGKILL when the group is killed.
    pub kill_grace: Duration,
    /// How often a heartbeat is sent.
    pub heartbeat_interval: Duration,
    /// How long a heartbeat may go unanswered before the worker is killed.
    pub heartbeat_timeout: Duration,
    /// Longest line accepted from the worker.
    pub max_line_bytes: usize,
}

/// Why a worker could not be started; the message includes the last lines
/// of its stderr.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StartError {
    /// What happened, where, and the worker's last stderr lines.
    pub message: String,
    /// Whether the process was started (and then failed its handshake), as
    /// opposed to not started at all.
    pub started: bool,
}

/// How a worker process ended.
#[derive(Debug, Clone)]
pub struct ExitInfo {
    /// "exit status 1", "signal 9 (SIGKILL)".
    pub status: String,
    /// Whether the supervisor asked for it (shutdown or kill).
    pub requested: bool,
    /// What the remaining calls were failed with, when not a plain crash.
    pub reason: Option<CallFailure>,
}

struct Pending {
    reply: oneshot::Sender<CallOutcome>,
    events: EventSink,
}

/// The calls a worker hosts; `dead` is set, under the same lock, once the
/// process has exited, so no call can slip in after the last drain.
#[derive(Default)]
struct Calls {
    map: HashMap<u64, Pending>,
    dead: bool,
}

enum Control {
    /// Kill the worker (at once, or SIGTERM first when `now` is false); fail
    /// the calls still hosted with this failure.
    Kill { why: CallFailure, now: bool },
    /// The channel reached end-of-file.
    ChannelClosed,
}

/// A live worker process. Cheap to share; see the module docs.
pub struct Worker {
    label: Arc<str>,
    pid: u32,
    hello: Hello,
    out: mpsc::UnboundedSender<Vec<u8>>,
    control: mpsc::UnboundedSender<Control>,
    pending: Mutex<Calls>,
    next_id: AtomicU64,
    max_line_bytes: usize,
    exit: watch::Receiver<Option<ExitInfo>>,
    closing: AtomicBool,
    /// Set once a kill was asked for: from then on, results and errors the
    /// worker still sends are dropped, and its calls fail with the kill's
    /// reason once the group is gone (a tool that returns because its child
    /// was killed has not succeeded).
    killing: AtomicBool,
    requested: AtomicBool,
    last_ack: Arc<AtomicU64>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("label", &self.label)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Worker {
    /// Spawns the process and completes the handshake.
    pub async fn start(cfg: WorkerConfig) -> Result<Arc<Worker>, StartError> {
        let label: Arc<str> = cfg.label.as_str().into();
        let program = cfg.spawn.program.display().to_string();
        let (mut child, channel, stdout, stderr) = match &cfg.origin {
            Origin::Exec => {
                let mut spawned = cfg.spawn.spawn().map_err(|e| StartError {
                    started: false,
                    message: format!(
                        "worker {label} failed to start: {}",
                        cfg.spawn.could_not_run(&e)
                    ),
                })?;
                let out = spawned
                    .child
                    .stdout
                    .take()
                    .map(|s| Box::new(s) as process::Output);
                let err = spawned
                    .child
                    .stderr
                    .take()
                    .map(|s| Box::new(s) as process::Output);
                (Process::Exec(spawned.child), spawned.channel, out, err)
            }
            Origin::Fork(server) => {
                let mut forked = server
                    .fork(&label, cfg.handshake_timeout)
                    .await
                    .map_err(|e| StartError {
                        started: false,
                        message: format!("worker {label} failed to start: {e}"),
                    })?;
                let (channel, out, err) = forked.take_io();
                (
                    Process::Forked(forked),
                    channel,
                    Some(Box::new(out) as process::Output),
                    Some(Box::new(err) as process::Output),
                )
            }
        };
        let pid = child.pid();
        let target = Target {
            pid,
            keeper: cfg.keeper,
        };
        let mut guard = GroupGuard::new(target);
        let tail = StderrTail::default();
        let stdout = stdout.map(|s| tokio::spawn(pump(s, Stream::Stdout, label.clone(), None)));
        let stderr = stderr
            .map(|s| tokio::spawn(pump(s, Stream::Stderr, label.clone(), Some(tail.clone()))));
        let (read_half, write_half) = channel.into_split();
        let mut reader = LineReader::new(read_half, cfg.max_line_bytes);

        let hello = tokio::select! {
            r = tokio::time::timeout(cfg.handshake_timeout, read_hello(&mut reader, cfg.max_line_bytes)) => match r {
                Ok(r) => r,
                Err(_) => Err(HandshakeError::Timeout(cfg.handshake_timeout)),
            },
            status = child.wait() => Err(exited_early(&program, status)),
        };
        // A worker that dies closes its channel just before it exits: report
        // the exit status rather than the closed channel when there is one.
        let hello = match hello {
            Err(HandshakeError::ChannelClosed) => {
                match tokio::time::timeout(Duration::from_secs(1), child.wait()).await {
                    Ok(status) => Err(exited_early(&program, status)),
                    Err(_) => Err(HandshakeError::ChannelClosed),
                }
            }
            other => other,
        };
        let (hello, version) = match hello.and_then(|h| negotiate_hello(&h).map(|v| (h, v))) {
            Ok(hv) => hv,
            Err(why) => {
                guard.kill_now();
                if tokio::time::timeout(Duration::from_secs(2), child.wait())
                    .await
                    .is_err()
                {
                    target.force(); // a keeper that did not sweep in time
                    let _ = child.wait().await;
                }
                if let Some(t) = stderr {
                    let _ = tokio::time::timeout(Duration::from_millis(500), t).await;
                }
                if let Some(t) = stdout {
                    t.abort();
                }
                return Err(StartError {
                    started: true,
                    message: format!("worker {label} failed to start: {why}{}", tail.render()),
                });
            }
        };

        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let (exit_tx, exit_rx) = watch::channel(None);
        let last_ack = Arc::new(AtomicU64::new(0));
        let worker = Arc::new(Worker {
            label: label.clone(),
            pid,
            hello,
            out: out_tx,
            control: control_tx,
            pending: Mutex::new(Calls::default()),
            next_id: AtomicU64::new(1),
            max_line_bytes: cfg.max_line_bytes,
            exit: exit_rx,
            closing: AtomicBool::new(false),
            killing: AtomicBool::new(false),
            requested: AtomicBool::new(false),
            last_ack: last_ack.clone(),
        });
        worker.send(&SupervisorMessage::Welcome(Welcome { protocol: version }));
        tokio::spawn(write_loop(write_half, out_rx));
        tokio::spawn(read_loop(
            reader,
            Arc::downgrade(&worker),
            cfg.max_line_bytes,
        ));
        tokio::spawn(lifecycle(
            LifecycleParts {
                child,
                guard,
                stderr,
                tail,
                control: control_rx,
                exit: exit_tx,
                started: Instant::now(),
            },
            worker.clone(),
            cfg,
        ));
        tracing::debug!(worker = %label, pid, "worker ready");
        Ok(worker)
    }

    /// The worker's label, e.g. `agent.py#2`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The process id, which is also its process group id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the worker announced: SDK, tools.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Whether the process has exited.
    pub fn has_exited(&self) -> bool {
        self.exit.borrow().is_some()
    }

    /// Whether the worker is being stopped or has exited.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire) || self.has_exited() || self.lock_pending().dead
    }

    /// Sends a call (a tool call or a node phase); the receiver gets
    /// exactly one outcome.
    pub fn start_call(
        &self,
        job: Job<'_>,
        deadline: Option<Duration>,
        events: EventSink,
    ) -> (u64, oneshot::Receiver<CallOutcome>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let mut line = Vec::with_capacity(128);
        let deadline_ms = deadline
            .map(|d| u64::try_from(d.as_millis()).map_or(MAX_CALL_ID, |ms| ms.min(MAX_CALL_ID)));
        let msg = match job {
            Job::Tool { tool, args } => SupervisorMessage::Call(Call {
                id,
                tool: tool.to_string(),
                args,
                deadline_ms,
            }),
            Job::Node(n) => {
                let n = *n;
                SupervisorMessage::Node(Box::new(NodeCall {
                    id,
                    node: n.node,
                    phase: n.phase,
                    shared: n.shared,
                    item: n.item.filter(|v| !v.is_null()),
                    prep: n.prep.filter(|v| !v.is_null()),
                    results: n.results,
                    error: n.error,
                    params: n.params,
                    deadline_ms,
                }))
            }
        };
        msg.encode_into(&mut line);
        if line.len() - 1 > self.max_line_bytes {
            let what = match &msg {
                SupervisorMessage::Node(n) => format!(
                    "the shared store and inputs of node {} ({})",
                    n.node,
                    n.phase.as_str()
                ),
                SupervisorMessage::Call(c) => format!("the arguments of this call to {}", c.tool),
                _ => "this call".to_string(),
            };
            let _ = tx.send(Err(CallFailure::new(
                ErrorKind::InvalidArguments,
                format!(
                    "{what} encode to {} bytes, over the worker's {}-byte line limit",
                    line.len() - 1,
                    self.max_line_bytes
                ),
            )));
            return (id, rx);
        }
        {
            let mut calls = self.lock_pending();
            if calls.dead {
                drop(calls);
                let info = self.exit.borrow().clone();
                let failure = match info {
                    Some(info) => self.exit_failure(&info),
                    None => CallFailure::new(
                        ErrorKind::WorkerCrashed,
                        format!("worker {} (pid {}) has exited", self.label, self.pid),
                    ),
                };
                let _ = tx.send(Err(failure));
                return (id, rx);
            }
            calls.map.insert(id, Pending { reply: tx, events });
        }
        let _ = self.out.send(line);
        (id, rx)
    }

    /// Asks the worker to stop call `id` (cooperative; see [`Worker::kill`]).
    pub fn cancel(&self, id: u64) {
        self.send(&SupervisorMessage::Cancel(Cancel { id }));
    }

    /// Drops call `id`: a late reply for it is ignored.
    pub fn forget(&self, id: u64) {
        self.lock_pending().map.remove(&id);
    }

    /// Stops the worker's processes (SIGTERM, grace, SIGKILL) and waits for
    /// the exit. Calls still hosted are failed with `reason`.
    pub async fn kill(&self, reason: CallFailure) -> ExitInfo {
        self.stop(reason, false).await
    }

    /// Kills the worker's processes at once (SIGKILL, through the keeper
    /// for Python, so that processes that left the group die too) and waits
    /// for the exit. Calls still hosted are failed with `reason`.
    pub async fn kill_now(&self, reason: CallFailure) -> ExitInfo {
        self.stop(reason, true).await
    }

    async fn stop(&self, why: CallFailure, now: bool) -> ExitInfo {
        self.requested.store(true, Ordering::Release);
        self.closing.store(true, Ordering::Release);
        self.killing.store(true, Ordering::Release);
        let _ = self.control.send(Control::Kill { why, now });
        self.exited().await
    }

    /// Asks the worker to exit; kills it if it has not within `grace`.
    pub async fn shutdown(&self, grace: Duration) -> ExitInfo {
        self.requested.store(true, Ordering::Release);
        self.closing.store(true, Ordering::Release);
        self.send(&SupervisorMessage::Shutdown(Shutdown::default()));
        match tokio::time::timeout(grace, self.exited()).await {
            Ok(info) => info,
            Err(_) => {
                self.kill_now(CallFailure::new(
                    ErrorKind::ShuttingDown,
                    format!(
                        "worker {} did not exit within {grace:?} of shutdown",
                        self.label
                    ),
                ))
                .await
            }
        }
    }

    /// Waits until the process has exited and its group is gone.
    pub async fn exited(&self) -> ExitInfo {
        let mut rx = self.exit.clone();
        loop {
            if let Some(info) = rx.borrow_and_update().as_ref() {
                return info.clone();
            }
            if rx.changed().await.is_err() {
                // The lifecycle task is gone without a report: treat as exited.
                return ExitInfo {
                    status: "unknown".into(),
                    requested: false,
                    reason: None,
                };
            }
        }
    }

    fn send(&self, msg: &SupervisorMessage) {
        let mut buf = Vec::with_capacity(128);
        msg.encode_into(&mut buf);
        let _ = self.out.send(buf);
    }

    fn lock_pending(&self) -> std::sync::MutexGuard<'_, Calls> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exit_failure(&self, info: &ExitInfo) -> CallFailure {
        if let Some(reason) = &info.reason {
            return reason.clone();
        }
        CallFailure::new(
            ErrorKind::WorkerCrashed,
            format!(
                "worker {} (pid {}) ended with {} while it hosted this call",
                self.label, self.pid, info.status
            ),
        )
    }

    fn protocol_violation(&self, why: String) {
        tracing::error!(worker = %self.label, "protocol error: {why}; replacing the worker");
        self.closing.store(true, Ordering::Release);
        self.killing.store(true, Ordering::Release);
        let _ = self.control.send(Control::Kill {
            why: CallFailure::new(
                ErrorKind::ProtocolError,
                format!("worker {} broke the protocol: {why}", self.label),
            ),
            now: true,
        });
    }

    fn route(&self, msg: WorkerMessage) {
        match msg {
            WorkerMessage::Result(_) | WorkerMessage::Error(_)
                if self.killing.load(Ordering::Acquire) => {}
            WorkerMessage::Result(r) => {
                let p = self.lock_pending().map.remove(&r.id);
                if let Some(p) = p {
                    let _ = p.reply.send(Ok(r.value));
                }
            }
            WorkerMessage::Error(e) => {
                let p = self.lock_pending().map.remove(&e.id);
                if let Some(p) = p {
                    let _ = p.reply.send(Err(CallFailure {
                        kind: e.kind,
                        message: e.message,
                        traceback: e.traceback,
                    }));
                }
            }
            WorkerMessage::Progress(p) => self.emit(
                p.id,
                CallEvent::Progress {
                    progress: p.progress,
                    total: p.total,
                    message: p.message,
                },
            ),
            WorkerMessage::Chunk(c) => self.emit(c.id, CallEvent::Chunk(c.data)),
            WorkerMessage::Log(l) => {
                crate::logging::worker_log(&self.label, l.id, l.level, &l.message);
                if let Some(id) = l.id {
                    self.emit(
                        id,
                        CallEvent::Log {
                            level: l.level,
                            message: l.message,
                        },
                    );
                }
            }
            WorkerMessage::Heartbeat(h) => self.last_ack.store(h.seq, Ordering::Release),
            WorkerMessage::Hello(_) => {
                self.protocol_violation("sent a second hello".into());
            }
        }
    }

    fn emit(&self, id: u64, event: CallEvent) {
        if let Some(Pending {
            events: Some(tx), ..
        }) = self.lock_pending().map.get(&id)
        {
            tx.send(event); // never waits: see `call::events`
        }
    }
}

async fn read_hello(
    reader: &mut LineReader<OwnedReadHalf>,
    max: usize,
) -> Result<Hello, HandshakeError> {
    match reader.next().await {
        None => Err(HandshakeError::ChannelClosed),
        Some(Line::TooLong) => Err(HandshakeError::TooLong(max)),
        Some(Line::Text(line)) => match decode_worker_line(&line, max) {
            Ok(WorkerMessage::Hello(h)) => Ok(h),
            Ok(other) => Err(HandshakeError::NotHello(
                other.encode().chars().take(80).collect(),
            )),
            Err(e) => Err(HandshakeError::Bad(e)),
        },
    }
}

fn exited_early(program: &str, status: String) -> HandshakeError {
    HandshakeError::ExitedEarly {
        program: program.to_string(),
        status,
    }
}

/// The protocol version to speak with a worker, or why there is none.
/// (Duplicate tool names are already refused by the decoder.)
fn negotiate_hello(hello: &Hello) -> Result<u32, HandshakeError> {
    negotiate(&hello.protocol).ok_or_else(|| HandshakeError::no_common_version(hello))
}

async fn write_loop(mut w: OwnedWriteHalf, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut batch = Vec::with_capacity(8 * 1024);
    while let Some(first) = rx.recv().await {
        batch.clear();
        batch.extend_from_slice(&first);
        while batch.len() < 256 * 1024 {
            match rx.try_recv() {
                Ok(more) => batch.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        if w.write_all(&batch).await.is_err() {
            return; // the process is gone; the lifecycle task reports it
        }
    }
}

async fn read_loop(
    mut reader: LineReader<OwnedReadHalf>,
    worker: std::sync::Weak<Worker>,
    max: usize,
) {
    while let Some(line) = reader.next().await {
        let Some(w) = worker.upgrade() else { return };
        match line {
            Line::TooLong => {
                w.protocol_violation(format!("sent a line over the {max}-byte limit"));
                return;
            }
            Line::Text(bytes) => match decode_worker_line(&bytes, max) {
                Ok(msg) => w.route(msg),
                Err(e) if e.code == DecodeErrorCode::UnknownType => {
                    tracing::warn!(worker = %w.label, "skipping a message: {e}");
                }
                Err(e) => {
                    w.protocol_violation(format!("sent a bad line: {e}"));
                    return;
                }
            },
        }
    }
    if let Some(w) = worker.upgrade() {
        let _ = w.control.send(Control::ChannelClosed);
    }
}

struct LifecycleParts {
    child: Process,
    guard: GroupGuard,
    stderr: Option<tokio::task::JoinHandle<()>>,
    tail: StderrTail,
    control: mpsc::UnboundedReceiver<Control>,
    exit: watch::Sender<Option<ExitInfo>>,
    started: Instant,
}

async fn lifecycle(mut p: LifecycleParts, worker: Arc<Worker>, cfg: WorkerConfig) {
    let label = worker.label.clone();
    let pid = worker.pid;
    // The lifecycle task must not keep the worker alive forever: it holds a
    // strong reference only until the process exits.
    let mut reason: Option<CallFailure> = None;
    let mut kill_at: Option<tokio::time::Instant> = None;
    let mut killed_now = false;
    let target = Target {
        pid,
        keeper: cfg.keeper,
    };
    let mut channel_closed_at: Option<tokio::time::Instant> = None;
    let mut heartbeat = tokio::time::interval(cfg.heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut seq: u64 = 0;
    let mut seq_sent_at = Instant::now();
    let status = loop {
        let deadline = match (kill_at, channel_closed_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        tokio::select! {
            status = p.child.wait() => break status,
            Some(ctl) = p.control.recv() => match ctl {
                Control::Kill { why, now } => {
                    if reason.is_none() {
                        reason = Some(why);
                    }
                    if now && !killed_now {
                        killed_now = true;
                        // A keeper SIGKILLs the worker's tree and exits; the
                        // SIGKILL of its group is for a keeper gone wrong. A
                        // worker with no keeper (Node) gets SIGTERM and a
                        // short grace, in which its SDK kills the processes
                        // its calls started that left the group, if its
                        // event loop is free.
                        let wait = if target.keeper {
                            target.kill_now();
                            Duration::from_secs(1)
                        } else {
                            target.terminate();
                            cfg.kill_grace.min(NO_KEEPER_KILL_GRACE)
                        };
                        let at = tokio::time::Instant::now() + wait;
                        kill_at = Some(kill_at.map_or(at, |k| k.min(at)));
                    } else if kill_at.is_none() {
                        target.terminate();
                        kill_at = Some(tokio::time::Instant::now() + cfg.kill_grace);
                    }
                }
                Control::ChannelClosed => {
                    worker.closing.store(true, Ordering::Release);
                    channel_closed_at.get_or_insert(tokio::time::Instant::now() + Duration::from_secs(2));
                }
            },
            _ = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => {
                if kill_at.is_some_and(|k| k <= tokio::time::Instant::now()) {
                    if target.keeper && !killed_now {
                        // The grace is out: the keeper SIGKILLs the tree
                        // (it would by itself, 50 ms before); SIGKILL of
                        // the keeper, which would leave what escaped the
                        // worker's group, only if it has not within 1 s.
                        killed_now = true;
                        target.kill_now();
                        kill_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    } else {
                        target.force();
                        kill_at = None;
                    }
                } else {
                    channel_closed_at = None;
                    reason.get_or_insert_with(|| CallFailure::new(
                        ErrorKind::ProtocolError,
                        format!("worker {label} closed its channel but kept running"),
                    ));
                    target.kill_now();
                    kill_at.get_or_insert(tokio::time::Instant::now() + Duration::from_secs(1));
                }
            }
            _ = heartbeat.tick() => {
                let acked = worker.last_ack.load(Ordering::Acquire);
                if acked < seq && seq_sent_at.elapsed() > cfg.heartbeat_timeout {
                    reason.get_or_insert_with(|| CallFailure::new(
                        ErrorKind::WorkerCrashed,
                        format!(
                            "worker {label} (pid {pid}) did not answer a heartbeat within {:?}; it was killed as unresponsive",
                            cfg.heartbeat_timeout
                        ),
                    ));
                    target.kill_now();
                    kill_at.get_or_insert(tokio::time::Instant::now() + Duration::from_secs(1));
                } else if acked >= seq {
                    seq += 1;
                    seq_sent_at = Instant::now();
                    worker.send(&SupervisorMessage::Heartbeat(Heartbeat { seq }));
                }
            }
        }
    };
    // No new call may start on a dead process.
    worker.lock_pending().dead = true;
    // Sweep the group: a tool's child processes die with their worker.
    p.guard.sweep();
    if let Some(t) = p.stderr.take() {
        let _ = tokio::time::timeout(Duration::from_millis(500), t).await;
    }
    let requested = worker.requested.load(Ordering::Acquire);
    let status_text = status;
    let lived = p.started.elapsed();
    if !requested {
        tracing::warn!(worker = %label, pid, "worker ended with {status_text} after {lived:?}");
    } else {
        tracing::debug!(worker = %label, pid, "worker ended with {status_text}");
    }
    let crash = CallFailure::new(
        ErrorKind::WorkerCrashed,
        format!(
            "worker {label} (pid {pid}) ended with {status_text} while it hosted this call{}",
            p.tail.render()
        ),
    );
    let failure = reason.clone().unwrap_or(crash);
    let pending: Vec<Pending> = worker.lock_pending().map.drain().map(|(_, p)| p).collect();
    for call in pending {
        let _ = call.reply.send(Err(failure.clone()));
    }
    let _ = p.exit.send(Some(ExitInfo {
        status: status_text,
        requested,
        reason,
    }));
}
