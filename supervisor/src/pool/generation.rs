//! One generation of a pool: the worker processes that run one version of
//! the script, with their slots, bounded queue and restarts.
//!
//! Each slot has a task that keeps a worker running in it: it starts one,
//! waits for it to end, and starts the next, with exponential backoff after
//! crashes and a ceiling (`max_restarts` consecutive failures) after which the
//! slot gives up. Calls take a [`Lease`] on a slot with free capacity (1 in
//! `isolated` mode, `max_concurrency` in `shared` mode) or wait in a bounded
//! queue; a lease handed back goes straight to the next waiter.
//!
//! A generation started by a reload is a *candidate*: a slot whose first
//! start fails gives up at once, so that [`Generation::ready`] can report the
//! failure and the pool keeps the generation it has. A generation that is
//! replaced is *retired*: its queued calls are handed back (to go to the new
//! generation), its calls in flight get the drain time, and what is left is
//! stopped through the kill path with `superseded`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use flw_protocol::ErrorKind;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::manifest::Manifest;
use crate::call::CallFailure;
use crate::config::{Mode, PoolConfig};
use crate::sdk;
use crate::worker::spawn::SpawnSpec;
use crate::worker::{Worker, WorkerConfig};

/// What a generation's tools are, once a worker has started.
#[derive(Debug, Clone)]
pub(super) enum ToolsState {
    Starting,
    Ready(Arc<Manifest>),
    Failed(String),
}

/// Why a generation gave no lease.
pub(super) enum AcquireError {
    /// The generation was replaced: ask the pool's current one.
    Retired,
    /// The call fails with this.
    Failed(CallFailure),
}

/// The workers of one version of a pool's script.
pub(super) struct Generation {
    /// 1 for the pool's first generation, then one more per reload.
    pub(super) number: u64,
    pub(super) cfg: PoolConfig,
    candidate: bool,
    state: Mutex<State>,
    /// The first manifest a worker of this generation announced.
    manifest: OnceLock<Arc<Manifest>>,
    pub(super) tools: watch::Sender<ToolsState>,
    /// Each slot reports the outcome of its first start here.
    first_starts: tokio::sync::Mutex<mpsc::Receiver<Result<(), String>>>,
    stop: CancellationToken,
    released: Notify,
    /// A deadline for the drain sooner than its own, set by [`Generation::hurry`].
    hurry: Mutex<Option<tokio::time::Instant>>,
    tasks: tokio_util::task::TaskTracker,
    /// The pool's count of workers started again after one ended.
    restarts: Arc<AtomicU64>,
    /// How a worker is started, worked out once (off the runtime: it may
    /// unpack an SDK or install the tsx loader) for all slots.
    launch: tokio::sync::OnceCell<Result<Arc<sdk::Launch>, sdk::LaunchError>>,
}

struct State {
    slots: Vec<Slot>,
    /// Waiters, with the token that cancels each (a cancelled one no longer
    /// counts against a full queue's bound, even before its future is
    /// dropped).
    queue: VecDeque<(oneshot::Sender<Lease>, CancellationToken)>,
    closed: bool,
    retired: bool,
    last_error: Option<String>,
    next_label: usize,
}

#[derive(Default)]
struct Slot {
    worker: Option<(Arc<Worker>, Arc<Manifest>)>,
    /// Bumped at each worker change, so that a stale lease hands back nothing.
    epoch: u64,
    in_flight: usize,
    gave_up: bool,
}

/// The right to run one call on one worker; handed back on drop.
pub struct Lease {
    generation: Arc<Generation>,
    slot: usize,
    epoch: u64,
    pub(super) worker: Arc<Worker>,
    /// The tools of the worker, to check the call against.
    pub(super) manifest: Arc<Manifest>,
    armed: bool,
}

impl Lease {
    /// The generation whose worker this is.
    pub(super) fn generation(&self) -> &Arc<Generation> {
        &self.generation
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.armed {
            self.generation.release(self.slot, self.epoch);
        }
    }
}

impl Generation {
    /// Starts the slots; workers come up in the background.
    /// A worker started in a slot whose worker ended adds one to `restarts`.
    pub(super) fn start(
        cfg: PoolConfig,
        number: u64,
        candidate: bool,
        restarts: Arc<AtomicU64>,
    ) -> Arc<Generation> {
        let slots = cfg.instances.max(1);
        let (first_tx, first_rx) = mpsc::channel(slots);
        let generation = Arc::new(Generation {
            number,
            candidate,
            state: Mutex::new(State {
                slots: (0..slots).map(|_| Slot::default()).collect(),
                queue: VecDeque::new(),
                closed: false,
                retired: false,
                last_error: None,
                next_label: 1,
            }),
            manifest: OnceLock::new(),
            tools: watch::channel(ToolsState::Starting).0,
            first_starts: tokio::sync::Mutex::new(first_rx),
            stop: CancellationToken::new(),
            released: Notify::new(),
            hurry: Mutex::new(None),
            tasks: tokio_util::task::TaskTracker::new(),
            restarts,
            launch: tokio::sync::OnceCell::new(),
            cfg,
        });
        for i in 0..slots {
            generation
                .tasks
                .spawn(run_slot(generation.clone(), i, first_tx.clone()));
        }
        generation
    }

    /// Waits until every slot has a worker, or one of them failed to start
    /// (the error has the worker's stderr).
    pub(super) async fn ready(&self) -> Result<Arc<Manifest>, String> {
        let mut rx = self.first_starts.lock().await;
        for _ in 0..self.cfg.instances.max(1) {
            match rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e),
                None => return Err("the generation stopped while it started".into()),
            }
        }
        self.manifest
            .get()
            .cloned()
            .ok_or_else(|| "no worker announced its tools".into())
    }

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
                s.in_flight < cap && s.worker.as_ref().is_some_and(|(w, _)| !w.is_closing())
            })
            .min_by_key(|(_, s)| s.in_flight)?;
        let (worker, manifest) = s.worker.clone()?;
        s.in_flight += 1;
        Some(Lease {
            generation: self.clone(),
            slot,
            epoch: s.epoch,
            worker,
            manifest,
            armed: true,
        })
    }

    /// A lease on a free worker, waiting in the queue if there is none.
    pub(super) async fn acquire(
        self: &Arc<Self>,
        cancel: &CancellationToken,
    ) -> Result<Lease, AcquireError> {
        let rx = {
            let mut st = self.lock();
            if st.retired {
                return Err(AcquireError::Retired);
            }
            if st.closed {
                return Err(AcquireError::Failed(shutting_down()));
            }
            if let Some(lease) = self.take(&mut st) {
                return Ok(lease);
            }
            if st.slots.iter().all(|s| s.gave_up) {
                return Err(AcquireError::Failed(self.unavailable(&st)));
            }
            st.queue.retain(|(tx, _)| !tx.is_closed()); // callers that gave up
            if st.queue.len() >= self.cfg.queue {
                // Callers cancelled but not yet dropped count as gone too;
                // checked only here, as each check takes the token's lock.
                st.queue.retain(|(_, c)| !c.is_cancelled());
            }
            if st.queue.len() >= self.cfg.queue {
                return Err(AcquireError::Failed(CallFailure::new(
                    ErrorKind::Overloaded,
                    format!(
                        "pool {} is full: {} calls are already waiting for a worker (queue = {}); retry later, or raise instances or queue in flw.toml",
                        self.cfg.name,
                        st.queue.len(),
                        self.cfg.queue
                    ),
                )));
            }
            let (tx, rx) = oneshot::channel();
            st.queue.push_back((tx, cancel.clone()));
            rx
        };
        rx.await.map_err(|_| {
            let st = self.lock();
            if st.retired {
                AcquireError::Retired
            } else if st.closed {
                AcquireError::Failed(shutting_down())
            } else {
                AcquireError::Failed(self.unavailable(&st))
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

    fn release(self: &Arc<Self>, slot: usize, epoch: u64) {
        let mut st = self.lock();
        let retired = st.retired;
        let s = &mut st.slots[slot];
        if s.epoch == epoch {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
        let idle_and_retired = (retired && s.in_flight == 0)
            .then(|| s.worker.as_ref().map(|(w, _)| w.clone()))
            .flatten();
        self.dispatch(&mut st);
        drop(st);
        if let Some(worker) = idle_and_retired {
            retire_worker(worker);
        }
        self.released.notify_waiters();
    }

    /// Hands free capacity to queued calls, oldest first.
    fn dispatch(self: &Arc<Self>, st: &mut State) {
        while let Some((front, _)) = st.queue.front() {
            if front.is_closed() {
                st.queue.pop_front();
                continue;
            }
            let Some(lease) = self.take(st) else { break };
            let (tx, _) = st.queue.pop_front().expect("front exists");
            if let Err(mut back) = tx.send(lease) {
                // The caller went away between the check and the send.
                back.armed = false;
                let s = &mut st.slots[back.slot];
                if s.epoch == back.epoch {
                    s.in_flight -= 1;
                }
            }
        }
    }

    /// Takes no more calls: queued ones get `shutting_down`, or, when
    /// `retire`, are handed back to go to the pool's next generation.
    pub(super) fn close(&self, retire: bool) {
        let mut st = self.lock();
        st.closed = true;
        st.retired |= retire;
        st.queue.clear(); // waiters see their sender dropped
        if retire {
            // Idle workers of a replaced generation exit now, not at the
            // end of the drain; busy ones when their last call ends.
            for s in st.slots.iter().filter(|s| s.in_flight == 0) {
                if let Some((w, _)) = &s.worker {
                    retire_worker(w.clone());
                }
            }
        }
    }

    /// Ends a drain under way within `drain` from now, if it would end
    /// later (flw is shutting down while this generation drains).
    pub(super) fn hurry(&self, drain: Duration) {
        *self.lock_hurry() =
            Some(tokio::time::Instant::now() + drain.min(crate::config::MAX_DURATION));
        self.released.notify_waiters();
    }

    fn lock_hurry(&self) -> std::sync::MutexGuard<'_, Option<tokio::time::Instant>> {
        self.hurry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Calls in flight on this generation's workers.
    pub(super) fn in_flight(&self) -> usize {
        self.lock().slots.iter().map(|s| s.in_flight).sum()
    }

    /// Calls waiting for a worker.
    pub(super) fn queued(&self) -> usize {
        self.lock().queue.len()
    }

    /// After [`Generation::close`]: lets calls in flight finish within
    /// `drain`, stops the ones left through the kill path with `leftover`
    /// (when given), then shuts every worker down.
    pub(super) async fn stop(&self, drain: Duration, leftover: Option<CallFailure>) {
        let mut deadline = tokio::time::Instant::now() + drain.min(crate::config::MAX_DURATION);
        loop {
            let released = self.released.notified();
            if self.in_flight() == 0 {
                break;
            }
            if let Some(sooner) = *self.lock_hurry() {
                deadline = deadline.min(sooner);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                break;
            }
        }
        let hurried = self.lock_hurry().is_some();
        let leftover = leftover.map(|reason| {
            if hurried {
                CallFailure::new(
                    ErrorKind::ShuttingDown,
                    format!(
                        "flw is shutting down and the call, on workers of generation {} of pool {} that a reload replaced, did not finish within the drain time",
                        self.number, self.cfg.name
                    ),
                )
            } else {
                reason
            }
        });
        if let Some(reason) = leftover {
            let busy: Vec<Arc<Worker>> = self
                .lock()
                .slots
                .iter()
                .filter(|s| s.in_flight > 0)
                .filter_map(|s| s.worker.as_ref().map(|(w, _)| w.clone()))
                .collect();
            futures::future::join_all(busy.iter().map(|w| w.kill(reason.clone()))).await;
        }
        // Each slot task shuts its own worker down (kills it after 2 s).
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }

    /// The launch of this generation's workers, worked out by the first
    /// slot to ask on a blocking thread; its failure is logged once.
    async fn launch(&self) -> Result<Arc<sdk::Launch>, sdk::LaunchError> {
        self.launch
            .get_or_init(|| async {
                let script = self.cfg.script.clone();
                let interpreter = self.cfg.interpreter.clone();
                let launched = tokio::task::spawn_blocking(move || {
                    sdk::launch(&script, interpreter.as_deref())
                })
                .await
                .unwrap_or_else(|e| Err(sdk::LaunchError::Interrupted(e.to_string())))
                .map(Arc::new);
                if let Err(e) = &launched {
                    tracing::error!(pool = %self.cfg.name, "{e}");
                }
                launched
            })
            .await
            .clone()
    }

    fn worker_config(&self, launch: &sdk::Launch, label: String) -> WorkerConfig {
        let cfg = &self.cfg;
        let mut extra = launch.env.clone();
        extra.extend(cfg.env.iter().cloned());
        WorkerConfig {
            spawn: SpawnSpec {
                program: launch.program.clone(),
                args: launch.args.clone(),
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
            heartbeat_interval: cfg.heartbeat_interval,
            heartbeat_timeout: cfg.heartbeat_timeout,
            max_line_bytes: flw_protocol::DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// The manifest for a worker's tools: the generation's own when they
    /// are the same, so its validators are compiled once.
    fn manifest_for(&self, worker: &Worker) -> Result<Arc<Manifest>, String> {
        let hello = worker.hello();
        if let Some(m) = self.manifest.get() {
            if m.same_as(hello) {
                return Ok(m.clone());
            }
        }
        let m = Arc::new(Manifest::from_hello(&self.cfg.name, hello)?);
        let first = self.manifest.get_or_init(|| m.clone());
        Ok(if first.same_interface(&m) {
            first.clone()
        } else {
            m
        })
    }
}

/// Asks an idle worker of a replaced generation to exit (killed after 2 s);
/// its slot, closed, starts no other.
fn retire_worker(worker: Arc<Worker>) {
    if let Ok(rt) = tokio::runtime::Handle::try_current() {
        rt.spawn(async move {
            worker.shutdown(Duration::from_secs(2)).await;
        });
    }
}

fn shutting_down() -> CallFailure {
    CallFailure::new(
        ErrorKind::ShuttingDown,
        "flw is shutting down and takes no new calls",
    )
}

/// Keeps a worker running in slot `i` until the generation stops.
async fn run_slot(
    generation: Arc<Generation>,
    i: usize,
    first_start: mpsc::Sender<Result<(), String>>,
) {
    let g = &generation;
    let script_name = g
        .cfg
        .script
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut first_start = Some(first_start);
    let mut failures: u32 = 0;
    while !g.stop.is_cancelled() && !g.lock().closed {
        let label = {
            let mut st = g.lock();
            let n = st.next_label;
            st.next_label += 1;
            if g.number > 1 {
                format!("{script_name}#{n}.g{}", g.number)
            } else {
                format!("{script_name}#{n}")
            }
        };
        let launch = tokio::select! {
            l = g.launch() => l,
            _ = g.stop.cancelled() => return,
        };
        let launch = match launch {
            Ok(l) => l,
            Err(e) => {
                // Starting again cannot help (the cause is outside the
                // worker, and cached): the slot gives up at once, and the
                // error was logged once for all slots.
                let e = e.to_string();
                if let Some(tx) = first_start.take() {
                    let _ = tx.try_send(Err(e.clone()));
                }
                g.tools.send_if_modified(|t| match t {
                    ToolsState::Starting => {
                        *t = ToolsState::Failed(e.clone());
                        true
                    }
                    _ => false,
                });
                let mut st = g.lock();
                st.last_error = Some(e);
                st.slots[i].gave_up = true;
                if st.slots.iter().all(|s| s.gave_up) {
                    st.queue.clear(); // waiters get `unavailable`
                }
                return;
            }
        };
        let started = tokio::select! {
            r = Worker::start(g.worker_config(&launch, label)) => r.map_err(|e| e.message),
            _ = g.stop.cancelled() => return,
        };
        let outcome = match started {
            Ok(worker) => match g.manifest_for(&worker) {
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
        let is_first = first_start.is_some();
        if !is_first && outcome.is_ok() {
            g.restarts.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(tx) = first_start.take() {
            let _ = tx.try_send(outcome.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        match outcome {
            Ok((worker, manifest)) => {
                let epoch = {
                    let mut st = g.lock();
                    let s = &mut st.slots[i];
                    s.epoch += 1;
                    s.in_flight = 0;
                    s.worker = Some((worker.clone(), manifest.clone()));
                    let e = s.epoch;
                    g.dispatch(&mut st);
                    e
                };
                // Publish the tools only once the worker can take calls.
                g.tools.send_if_modified(|t| match t {
                    ToolsState::Ready(_) => false,
                    _ => {
                        *t = ToolsState::Ready(manifest.clone());
                        true
                    }
                });
                let alive_since = Instant::now();
                let info = tokio::select! {
                    info = worker.exited() => info,
                    _ = g.stop.cancelled() => worker.shutdown(Duration::from_secs(2)).await,
                };
                {
                    let mut st = g.lock();
                    let s = &mut st.slots[i];
                    if s.epoch == epoch {
                        s.worker = None;
                        s.epoch += 1;
                        s.in_flight = 0;
                    }
                }
                g.released.notify_waiters();
                if info.requested {
                    failures = 0;
                    continue; // refill the slot at once
                }
                if alive_since.elapsed() > Duration::from_secs(30) {
                    failures = 0;
                }
                failures += 1;
                g.lock().last_error = Some(format!(
                    "worker {} ended with {}",
                    worker.label(),
                    info.status
                ));
            }
            Err(e) => {
                if g.candidate && is_first {
                    // The pool reports it and keeps its current generation.
                    g.lock().slots[i].gave_up = true;
                    return;
                }
                tracing::error!(pool = %g.cfg.name, "{e}");
                failures += 1;
                g.tools.send_if_modified(|t| match t {
                    ToolsState::Starting => {
                        *t = ToolsState::Failed(e.clone());
                        true
                    }
                    _ => false,
                });
                g.lock().last_error = Some(e);
            }
        }
        if failures > g.cfg.max_restarts {
            let mut st = g.lock();
            st.slots[i].gave_up = true;
            tracing::error!(
                pool = %g.cfg.name,
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
        tracing::info!(pool = %g.cfg.name, "restarting slot {i} in {backoff:?}");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = g.stop.cancelled() => return,
        }
    }
}
