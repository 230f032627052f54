//! A pool of worker processes for one script: pre-warmed slots, a bounded
//! queue, restarts with backoff, and the cancel path.
//!
//! Each slot has a task that keeps a worker running in it: it starts one,
//! waits for it to end, and starts the next, with exponential backoff after
//! crashes and a ceiling (`max_restarts` consecutive failures) after which the
//! slot gives up. Calls take a [`Lease`] on a slot with free capacity (1 in
//! `isolated` mode, `max_concurrency` in `shared` mode) or wait in a bounded
//! queue; a lease handed back goes straight to the next waiter.
//!
//! **Architecture invariant:** when [`Pool::call`] returns for a cancelled or
//! timed-out call in `isolated` mode, the worker process group that ran it
//! has been killed (SIGTERM, grace, SIGKILL) and reaped; the slot then starts
//! a fresh worker.

mod manifest;
pub mod manifest_cache;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flw_protocol::ErrorKind;
use serde_json::{Map, Value};
use tokio::sync::{oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::call::{CallFailure, CallOutcome, EventSink};
use crate::config::{Mode, PoolConfig};
use crate::sdk;
use crate::worker::spawn::SpawnSpec;
use crate::worker::{Worker, WorkerConfig};
use flw_protocol::ToolSpec;
pub use manifest::Manifest;
use manifest_cache::ManifestCache;

/// Options of one call.
#[derive(Debug, Default, Clone)]
pub struct CallOptions {
    /// Overrides the pool's `call_timeout`.
    pub timeout: Option<Duration>,
    /// Cancelling it stops the call through the kill path.
    pub cancel: CancellationToken,
    /// Where progress, logs and chunks go.
    pub events: EventSink,
}

/// What the pool's tools are, once a worker has started.
#[derive(Debug, Clone)]
enum ToolsState {
    Starting,
    Ready(Arc<Manifest>),
    Failed(String),
}

/// A pool of workers for one script; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PoolConfig,
    /// Where the pool's manifest is kept between runs, and what was there.
    cache: Option<ManifestCache>,
    cached: Option<Vec<ToolSpec>>,
    state: Mutex<State>,
    tools: watch::Sender<ToolsState>,
    stop: CancellationToken,
    released: Notify,
    tasks: tokio_util::task::TaskTracker,
}

struct State {
    slots: Vec<Slot>,
    queue: VecDeque<oneshot::Sender<Lease>>,
    closed: bool,
    last_error: Option<String>,
    next_label: usize,
}

#[derive(Default)]
struct Slot {
    worker: Option<Arc<Worker>>,
    generation: u64,
    in_flight: usize,
    gave_up: bool,
}

/// The right to run one call on one worker; handed back on drop.
pub struct Lease {
    pool: Arc<Inner>,
    slot: usize,
    generation: u64,
    worker: Arc<Worker>,
    armed: bool,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.pool.release(self.slot, self.generation);
        }
    }
}

impl Pool {
    /// Starts the pool's slots; workers come up in the background.
    pub fn start(cfg: PoolConfig) -> Pool {
        let slots = match cfg.mode {
            Mode::Isolated | Mode::Shared => cfg.instances.max(1),
        };
        let cache = ManifestCache::for_pool(&cfg);
        let cached = cache.as_ref().and_then(ManifestCache::load);
        let inner = Arc::new(Inner {
            cache,
            cached,
            state: Mutex::new(State {
                slots: (0..slots).map(|_| Slot::default()).collect(),
                queue: VecDeque::new(),
                closed: false,
                last_error: None,
                next_label: 1,
            }),
            tools: watch::channel(ToolsState::Starting).0,
            stop: CancellationToken::new(),
            released: Notify::new(),
            tasks: tokio_util::task::TaskTracker::new(),
            cfg,
        });
        for i in 0..slots {
            inner.tasks.spawn(run_slot(inner.clone(), i));
        }
        Pool { inner }
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.cfg
    }

    /// The tools without waiting: `(tools, true)` once a worker has
    /// announced them, else `(tools, false)` from the manifest cache (see
    /// [`manifest_cache`]); `None` when neither exists or the start failed.
    pub fn tools_now(&self) -> Option<(Vec<ToolSpec>, bool)> {
        match &*self.inner.tools.borrow() {
            ToolsState::Ready(m) => Some((m.tools().to_vec(), true)),
            ToolsState::Starting => self.inner.cached.clone().map(|t| (t, false)),
            ToolsState::Failed(_) => None,
        }
    }

    /// Waits until the first worker has announced its tools, or the first
    /// start failed (with the reason, including the worker's stderr).
    pub async fn manifest(&self) -> Result<Arc<Manifest>, String> {
        let mut rx = self.inner.tools.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                ToolsState::Ready(m) => return Ok(m.clone()),
                ToolsState::Failed(e) => return Err(e.clone()),
                ToolsState::Starting => {}
            }
            if rx.changed().await.is_err() {
                return Err("the pool stopped".into());
            }
        }
    }

    /// Runs `tool` with `args` (already validated) on a free worker.
    pub async fn call(
        &self,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> CallOutcome {
        let cfg = &self.inner.cfg;
        let timeout = opts.timeout.or(cfg.call_timeout);
        let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        let lease = tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => {
                return Err(CallFailure::new(ErrorKind::Cancelled, format!("call to {tool} was cancelled while it waited for a worker")));
            }
            _ = &mut sleep => {
                return Err(CallFailure::new(ErrorKind::Timeout, format!(
                    "call to {tool} timed out after {:?} while it waited for a free worker in pool {}",
                    timeout.unwrap_or_default(), cfg.name
                )));
            }
            lease = self.inner.acquire() => lease?,
        };
        let remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let (id, mut rx) = lease.worker.start_call(tool, args, remaining, opts.events);
        let kind = tokio::select! {
            biased;
            outcome = &mut rx => {
                return outcome.unwrap_or_else(|_| Err(CallFailure::new(
                    ErrorKind::Internal,
                    format!("worker {} dropped call {id} without an outcome", lease.worker.label()),
                )));
            }
            _ = opts.cancel.cancelled() => ErrorKind::Cancelled,
            _ = &mut sleep => ErrorKind::Timeout,
        };
        let what = match kind {
            ErrorKind::Timeout => format!("timed out after {:?}", timeout.unwrap_or_default()),
            _ => "was cancelled".to_string(),
        };
        self.stop_call(lease, id, rx, kind, &format!("call {id} to {tool} {what}"))
            .await
    }

    /// The cancel path: a cooperative `cancel`, the grace period, then (always
    /// in `isolated` mode, and in `shared` mode when the call has not ended) a
    /// kill of the worker's process group.
    async fn stop_call(
        &self,
        lease: Lease,
        id: u64,
        mut rx: oneshot::Receiver<CallOutcome>,
        kind: ErrorKind,
        what: &str,
    ) -> CallOutcome {
        let cfg = &self.inner.cfg;
        let worker = lease.worker.clone();
        worker.cancel(id);
        let ended = tokio::time::timeout(cfg.cancel_grace, &mut rx)
            .await
            .is_ok();
        worker.forget(id);
        let killed = match cfg.mode {
            Mode::Isolated => {
                worker
                    .kill(CallFailure::new(
                        kind,
                        format!("{what}; its worker was stopped"),
                    ))
                    .await;
                true
            }
            Mode::Shared if !ended => {
                worker
                    .kill(CallFailure::new(
                        ErrorKind::WorkerKilled,
                        format!(
                            "worker {} was killed because {what} and did not stop within {:?}; this call ran in the same process",
                            worker.label(),
                            cfg.cancel_grace
                        ),
                    ))
                    .await;
                true
            }
            Mode::Shared => false,
        };
        drop(lease);
        let how = if killed {
            format!(
                "; worker {} and its process group were killed",
                worker.label()
            )
        } else {
            " and stopped on request".to_string()
        };
        Err(CallFailure::new(kind, format!("{what}{how}")))
    }

    /// Stops taking calls, lets calls in flight finish within `drain`, then
    /// shuts every worker down (killing what is left).
    pub async fn shutdown(&self, drain: Duration) {
        let inner = &self.inner;
        {
            let mut st = inner.lock();
            st.closed = true;
            st.queue.clear(); // waiters see their sender dropped: shutting_down
        }
        let deadline = tokio::time::Instant::now() + drain.min(crate::config::MAX_DURATION);
        loop {
            let released = inner.released.notified();
            if inner.lock().slots.iter().all(|s| s.in_flight == 0) {
                break;
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                break;
            }
        }
        // Each slot task shuts its own worker down (kills it after 2 s).
        inner.stop.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn capacity(&self) -> usize {
        match self.cfg.mode {
            Mode::Isolated => 1,
            Mode::Shared => self.cfg.max_concurrency,
        }
    }

    /// Reserves capacity on the least busy usable slot.
    fn take(self: &Arc<Self>, st: &mut State) -> Option<Lease> {
        let cap = self.capacity();
        let (slot, s) = st
            .slots
            .iter_mut()
            .enumerate()
            .filter(|(_, s)| {
                s.in_flight < cap && s.worker.as_ref().is_some_and(|w| !w.is_closing())
            })
            .min_by_key(|(_, s)| s.in_flight)?;
        s.in_flight += 1;
        Some(Lease {
            pool: self.clone(),
            slot,
            generation: s.generation,
            worker: s.worker.clone()?,
            armed: true,
        })
    }

    async fn acquire(self: &Arc<Self>) -> Result<Lease, CallFailure> {
        let rx = {
            let mut st = self.lock();
            if st.closed {
                return Err(shutting_down());
            }
            if let Some(lease) = self.take(&mut st) {
                return Ok(lease);
            }
            if st.slots.iter().all(|s| s.gave_up) {
                return Err(self.unavailable(&st));
            }
            st.queue.retain(|tx| !tx.is_closed()); // callers that gave up
            if st.queue.len() >= self.cfg.queue {
                return Err(CallFailure::new(
                    ErrorKind::Overloaded,
                    format!(
                        "pool {} is full: {} calls are already waiting for a worker (queue = {}); retry later, or raise instances or queue in flw.toml",
                        self.cfg.name,
                        st.queue.len(),
                        self.cfg.queue
                    ),
                ));
            }
            let (tx, rx) = oneshot::channel();
            st.queue.push_back(tx);
            rx
        };
        rx.await.map_err(|_| {
            let st = self.lock();
            if st.closed {
                shutting_down()
            } else {
                self.unavailable(&st)
            }
        })
    }

    fn unavailable(&self, st: &State) -> CallFailure {
        CallFailure::new(
            ErrorKind::Unavailable,
            format!(
                "pool {} has no worker: {}",
                self.cfg.name,
                st.last_error.as_deref().unwrap_or("every slot gave up")
            ),
        )
    }

    fn release(self: &Arc<Self>, slot: usize, generation: u64) {
        let mut st = self.lock();
        let s = &mut st.slots[slot];
        if s.generation == generation {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        self.dispatch(&mut st);
        drop(st);
        self.released.notify_waiters();
    }

    /// Hands free capacity to queued calls, oldest first.
    fn dispatch(self: &Arc<Self>, st: &mut State) {
        while let Some(front) = st.queue.front() {
            if front.is_closed() {
                st.queue.pop_front();
                continue;
            }
            let Some(lease) = self.take(st) else { break };
            let tx = st.queue.pop_front().expect("front exists");
            if let Err(mut back) = tx.send(lease) {
                // The caller went away between the check and the send.
                back.armed = false;
                let s = &mut st.slots[back.slot];
                if s.generation == back.generation {
                    s.in_flight -= 1;
                }
            }
        }
    }

    fn worker_config(&self, label: String) -> Result<WorkerConfig, String> {
        let cfg = &self.cfg;
        let launch = sdk::launch(&cfg.script, cfg.interpreter.as_deref())?;
        let mut extra = launch.env;
        extra.extend(cfg.env.iter().cloned());
        Ok(WorkerConfig {
            spawn: SpawnSpec {
                program: launch.program,
                args: launch.args,
                env: SpawnSpec::environment(
                    &extra,
                    &cfg.pass_env,
                    &label,
                    cfg.mode.as_str(),
                    flw_protocol::DEFAULT_MAX_LINE_BYTES,
                ),
                cwd: None,
            },
            label,
            handshake_timeout: cfg.handshake_timeout,
            kill_grace: cfg.kill_grace,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_timeout: Duration::from_secs(30),
            max_line_bytes: flw_protocol::DEFAULT_MAX_LINE_BYTES,
        })
    }
}

fn shutting_down() -> CallFailure {
    CallFailure::new(
        ErrorKind::ShuttingDown,
        "flw is shutting down and takes no new calls",
    )
}

/// Keeps a worker running in slot `i` until the pool stops.
/// Writes the pool's first live manifest to the cache when it changed.
fn remember_tools(inner: &Arc<Inner>, manifest: &Manifest) {
    if inner.cache.is_none() || inner.cached.as_deref() == Some(manifest.tools()) {
        return;
    }
    let inner = inner.clone();
    let tools = manifest.tools().to_vec();
    tokio::task::spawn_blocking(move || {
        if let Some(cache) = &inner.cache {
            if let Err(e) = cache.store(&tools) {
                tracing::debug!(pool = %inner.cfg.name, "cannot cache the manifest: {e}");
            }
        }
    });
}

async fn run_slot(inner: Arc<Inner>, i: usize) {
    let script_name = inner
        .cfg
        .script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut failures: u32 = 0;
    while !inner.stop.is_cancelled() {
        let label = {
            let mut st = inner.lock();
            let n = st.next_label;
            st.next_label += 1;
            format!("{script_name}#{n}")
        };
        let started = match inner.worker_config(label) {
            Ok(wcfg) => tokio::select! {
                r = Worker::start(wcfg) => r.map_err(|e| e.message),
                _ = inner.stop.cancelled() => return,
            },
            Err(e) => Err(e),
        };
        let outcome = match started {
            Ok(worker) => match Manifest::new(worker.hello().tools.clone()) {
                Ok(manifest) => Ok((worker, manifest)),
                Err(e) => {
                    let e = format!("worker {} announced a bad tool: {e}", worker.label());
                    worker
                        .kill(CallFailure::new(ErrorKind::Unavailable, e.clone()))
                        .await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok((worker, manifest)) => {
                let generation = {
                    let mut st = inner.lock();
                    let s = &mut st.slots[i];
                    s.generation += 1;
                    s.in_flight = 0;
                    s.worker = Some(worker.clone());
                    let g = s.generation;
                    inner.dispatch(&mut st);
                    g
                };
                // Publish the tools only once the worker can take calls.
                let manifest = Arc::new(manifest);
                let first = inner.tools.send_if_modified(|t| match t {
                    ToolsState::Ready(_) => false,
                    _ => {
                        *t = ToolsState::Ready(manifest.clone());
                        true
                    }
                });
                if first {
                    remember_tools(&inner, &manifest);
                }
                let alive_since = Instant::now();
                let info = tokio::select! {
                    info = worker.exited() => info,
                    _ = inner.stop.cancelled() => worker.shutdown(Duration::from_secs(2)).await,
                };
                {
                    let mut st = inner.lock();
                    let s = &mut st.slots[i];
                    if s.generation == generation {
                        s.worker = None;
                        s.generation += 1;
                        s.in_flight = 0;
                    }
                }
                inner.released.notify_waiters();
                if info.requested {
                    failures = 0;
                    continue; // refill the slot at once
                }
                if alive_since.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                failures += 1;
                inner.lock().last_error = Some(format!(
                    "worker {} ended with {}",
                    worker.label(),
                    info.status
                ));
            }
            Err(e) => {
                tracing::error!(pool = %inner.cfg.name, "{e}");
                failures += 1;
                inner.tools.send_if_modified(|t| match t {
                    ToolsState::Starting => {
                        *t = ToolsState::Failed(e.clone());
                        true
                    }
                    _ => false,
                });
                inner.lock().last_error = Some(e);
            }
        }
        if failures > inner.cfg.max_restarts {
            let mut st = inner.lock();
            st.slots[i].gave_up = true;
            tracing::error!(
                pool = %inner.cfg.name,
                "slot {i} gave up after {failures} failures in a row; last: {}",
                st.last_error.as_deref().unwrap_or("?")
            );
            if st.slots.iter().all(|s| s.gave_up) {
                st.queue.clear(); // waiters get `unavailable`
            }
            return;
        }
        let backoff = Duration::from_millis(100)
            .saturating_mul(1 << (failures - 1).min(7))
            .min(Duration::from_secs(10));
        tracing::info!(pool = %inner.cfg.name, "restarting slot {i} in {backoff:?}");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = inner.stop.cancelled() => return,
        }
    }
}
