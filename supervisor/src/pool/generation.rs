//! One generation of a pool: the worker processes that run one version of
//! the script, with their slots, bounded queue and restarts.
//!
//! The pool is elastic. `min_workers` slots start with the generation; more
//! are added while calls wait, up to `max_workers`, and a slot beyond
//! `min_workers` whose worker has been idle for `idle_timeout` is stopped.
//! Each slot has a task that keeps a worker running in it: it starts one,
//! waits for it to end, and starts the next (at once after a kill, so a
//! cancelled call's worker is replaced; with exponential backoff after a
//! crash). `max_restarts` failures in a row across the generation make it
//! give up. Calls take a [`Lease`] on a slot with free capacity (1 in
//! `isolated` mode, `max_concurrency` in `shared` mode) or wait in a bounded
//! queue; a lease handed back goes straight to the next waiter.
//!
//! When to grow: a call that waits adds a slot at once while the
//! generation has fewer than one per core (or in `shared` mode, where a call
//! waits only when every worker is full). Beyond that, slots are added
//! [`GROW_AFTER`] later, if calls still wait and every busy worker has been
//! on its call for that long: calls that wait on a model get a worker each,
//! while a stream of quick calls is served by the workers there are (more
//! processes than cores would not run them sooner).
//!
//! Python workers are forked by the generation's fork server
//! ([`crate::worker::fork_server`]) unless `spawn = "exec"`, the script is
//! not safe to fork (it started threads while it was imported), or a forked
//! worker failed to start before any had: then they are exec'd, and a log
//! line says why.
//!
//! A generation started by a reload is a *candidate*: a slot whose first
//! start fails gives up at once, so that [`Generation::ready`] can report the
//! failure and the pool keeps the generation it has. A generation that is
//! replaced is *retired*: its queued calls are handed back (to go to the new
//! generation), its calls in flight get the drain time, and what is left is
//! stopped through the kill path with `superseded`.

use std::collections::VecDeque;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use flw_protocol::ErrorKind;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::manifest::{Manifest, ManifestError};
use crate::call::CallFailure;
use crate::config::{Mode, PoolConfig, Spawn};
use crate::sdk;
use crate::worker::fork_server::{ForkServer, ForkServerError};
use crate::worker::spawn::SpawnSpec;
use crate::worker::{Origin, Worker, WorkerConfig};

use super::errors::StartFailure;
use flw_protocol::fork_server::{ENV_KEEPER, ENV_KILL_GRACE_MS};

/// How long calls wait, beyond one worker per core, before more workers
/// start for them (see the module docs).
pub const GROW_AFTER: Duration = Duration::from_millis(5);

/// A fork server that ends this many times in one generation is given up
/// for exec.
const MAX_FORK_SERVER_STARTS: u32 = 4;

/// The pool's counters, shared by its generations.
#[derive(Debug, Default)]
pub struct Counters {
    /// Workers started again after one ended.
    pub restarts: AtomicU64,
    /// Workers started with exec.
    pub spawns: AtomicU64,
    /// Workers forked by a fork server.
    pub forks: AtomicU64,
}

/// A generation's workers at one moment.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    /// Workers that passed their handshake and are not stopping.
    pub live: usize,
    /// Live workers with a call.
    pub busy: usize,
    /// Workers starting.
    pub starting: usize,
}

/// How the generation starts its workers.
#[derive(Default)]
struct Forking {
    server: Option<Arc<ForkServer>>,
    /// Why workers are exec'd, once fork was given up.
    exec: Option<String>,
    starts: u32,
    /// A forked worker passed its handshake.
    proven: bool,
}

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
    first_starts: tokio::sync::Mutex<mpsc::Receiver<Result<(), StartFailure>>>,
    stop: CancellationToken,
    released: Notify,
    /// A deadline for the drain sooner than its own, set by [`Generation::hurry`].
    hurry: Mutex<Option<tokio::time::Instant>>,
    tasks: tokio_util::task::TaskTracker,
    /// The pool's counters.
    counters: Arc<Counters>,
    /// How a worker is started, worked out once (off the runtime: it may
    /// unpack an SDK or install the tsx loader) for all slots.
    launch: tokio::sync::OnceCell<Result<Arc<sdk::Launch>, sdk::LaunchError>>,
    forking: tokio::sync::Mutex<Forking>,
    /// Slots that report their first start to [`Generation::ready`].
    initial: usize,
    cores: usize,
}

struct State {
    /// Slots in use and free ones (`active` false), reused by index.
    slots: Vec<Slot>,
    /// Slots in use.
    active: usize,
    /// Slots whose worker is starting.
    starting: usize,
    /// `max_restarts` was passed: no slot starts a worker any more.
    gave_up: bool,
    /// A check for more workers is due ([`GROW_AFTER`]).
    grow_armed: bool,
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
    /// A task keeps a worker in it.
    active: bool,
    /// Its worker is being stopped for idleness: it takes no calls.
    retiring: bool,
    /// Since when it has had no call, or when its current calls began.
    since: Option<Instant>,
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
    /// Starts `min_workers` slots (at least one, whose worker announces the
    /// tools); workers come up in the background.
    pub(super) fn start(
        cfg: PoolConfig,
        number: u64,
        candidate: bool,
        counters: Arc<Counters>,
    ) -> Arc<Generation> {
        let initial = cfg.min_workers.max(1);
        let (first_tx, first_rx) = mpsc::channel(initial);
        let generation = Arc::new(Generation {
            number,
            candidate,
            state: Mutex::new(State {
                slots: Vec::new(),
                active: 0,
                starting: 0,
                gave_up: false,
                grow_armed: false,
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
            counters,
            launch: tokio::sync::OnceCell::new(),
            forking: tokio::sync::Mutex::new(Forking::default()),
            initial,
            cores: std::thread::available_parallelism().map_or(2, NonZeroUsize::get),
            cfg,
        });
        {
            let mut st = generation.lock();
            for _ in 0..initial {
                generation.add_slot(&mut st, Some(first_tx.clone()));
            }
        }
        generation
    }

    /// Waits until the first `min_workers` workers (at least one) are up,
    /// or one of them failed to start (the error has the worker's stderr).
    pub(super) async fn ready(&self) -> Result<Arc<Manifest>, StartFailure> {
        let mut rx = self.first_starts.lock().await;
        for _ in 0..self.initial {
            match rx.recv().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(e),
                None => return Err(StartFailure::Stopped),
            }
        }
        self.manifest.get().cloned().ok_or(StartFailure::NoManifest)
    }

    /// Takes a free slot (or a new one) and starts its task.
    fn add_slot(
        self: &Arc<Self>,
        st: &mut State,
        first_start: Option<mpsc::Sender<Result<(), StartFailure>>>,
    ) {
        let i = match st.slots.iter().position(|s| !s.active) {
            Some(i) => i,
            None => {
                st.slots.push(Slot::default());
                st.slots.len() - 1
            }
        };
        let s = &mut st.slots[i];
        s.active = true;
        s.retiring = false;
        s.in_flight = 0;
        s.worker = None;
        s.since = None;
        st.active += 1;
        st.starting += 1;
        self.tasks.spawn(run_slot(self.clone(), i, first_start));
    }

    /// Adds slots for the calls that wait, up to `max_workers`: `urgent`
    /// for as many as needed, else only while fewer than one per core (see
    /// the module docs); the rest is checked again after [`GROW_AFTER`].
    fn grow(self: &Arc<Self>, st: &mut State, urgent: bool) {
        if st.closed || st.gave_up || self.stop.is_cancelled() {
            return;
        }
        let room = self.cfg.max_workers.saturating_sub(st.active);
        if room == 0 {
            return;
        }
        // On the path of every call that waits: the queue's length (callers
        // that gave up are removed lazily) is close enough, and O(1).
        let cap = self.capacity();
        let waiting = st.queue.len();
        let coming = st.starting * cap;
        if waiting <= coming {
            return;
        }
        let needed = (waiting - coming).div_ceil(cap).min(room);
        let now = match self.cfg.mode {
            Mode::Shared => needed,
            Mode::Isolated if urgent => needed,
            Mode::Isolated => needed.min(self.cores.saturating_sub(st.active)),
        };
        if now > 0 {
            tracing::debug!(
                pool = %self.cfg.name,
                generation = self.number,
                "scale up by {now} to {} workers: {waiting} calls wait{}",
                st.active + now,
                if urgent { " and the busy workers have been busy a while" } else { "" }
            );
            for _ in 0..now {
                self.add_slot(st, None);
            }
        }
        if needed > now && !st.grow_armed {
            st.grow_armed = true;
            let g = self.clone();
            tokio::spawn(async move {
                tokio::time::sleep(GROW_AFTER).await;
                let mut st = g.lock();
                st.grow_armed = false;
                // Every busy worker has been on its call a while: calls
                // wait on something slow, not on a worker busy with quick
                // calls (where more processes than cores would not help).
                let busy = st.slots.iter().filter(|s| s.active && s.in_flight > 0);
                let (mut n, mut long) = (0, 0);
                for s in busy {
                    n += 1;
                    if s.since.is_some_and(|t| t.elapsed() >= GROW_AFTER) {
                        long += 1;
                    }
                }
                g.grow(&mut st, n > 0 && long == n);
            });
        }
    }

    /// Workers live, busy and starting.
    pub(super) fn census(&self) -> Census {
        let st = self.lock();
        let mut c = Census {
            starting: st.starting,
            ..Census::default()
        };
        for s in st.slots.iter().filter(|s| s.active && !s.retiring) {
            if s.worker.as_ref().is_some_and(|(w, _)| !w.is_closing()) {
                c.live += 1;
                if s.in_flight > 0 {
                    c.busy += 1;
                }
            }
        }
        c
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
                s.in_flight < cap
                    && !s.retiring
                    && s.worker.as_ref().is_some_and(|(w, _)| !w.is_closing())
            })
            .min_by_key(|(_, s)| s.in_flight)?;
        let (worker, manifest) = s.worker.clone()?;
        if s.in_flight == 0 {
            s.since = Some(Instant::now());
        }
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
            if st.gave_up {
                return Err(AcquireError::Failed(self.unavailable(&st)));
            }
            st.queue.retain(|(tx, _)| !tx.is_closed()); // callers that gave up
                                                        // Calls the workers the pool may still start will take wait too.
            let room = self.cfg.max_workers.saturating_sub(st.active) * self.capacity();
            let bound = self.cfg.queue.saturating_add(room);
            if st.queue.len() >= bound {
                // Callers cancelled but not yet dropped count as gone too;
                // checked only here, as each check takes the token's lock.
                st.queue.retain(|(_, c)| !c.is_cancelled());
            }
            if st.queue.len() >= bound {
                return Err(AcquireError::Failed(CallFailure::new(
                    ErrorKind::Overloaded,
                    format!(
                        "pool {} is full: {} workers are busy (max_workers = {}) and {} calls are already waiting (queue = {}); retry later, or raise max_workers or queue in flw.toml",
                        self.cfg.name,
                        st.active,
                        self.cfg.max_workers,
                        st.queue.len(),
                        self.cfg.queue
                    ),
                )));
            }
            let (tx, rx) = oneshot::channel();
            st.queue.push_back((tx, cancel.clone()));
            self.grow(&mut st, false);
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
            if s.in_flight == 0 {
                s.since = Some(Instant::now());
            }
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
                    if s.in_flight == 0 {
                        s.since = Some(Instant::now());
                    }
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
        self.stop_fork_server().await;
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

    fn spawn_spec(
        &self,
        launch: &sdk::Launch,
        label: &str,
        args: Vec<std::ffi::OsString>,
    ) -> SpawnSpec {
        let cfg = &self.cfg;
        let mut extra = launch.env.clone();
        extra.extend(cfg.env.iter().cloned());
        if launch.language == sdk::Language::Python {
            let grace = cfg.kill_grace.as_millis().to_string();
            extra.push((ENV_KILL_GRACE_MS.into(), grace));
            extra.push((ENV_KEEPER.into(), "1".into()));
        }
        SpawnSpec {
            program: launch.program.clone(),
            args,
            env: SpawnSpec::environment(
                &extra,
                &cfg.pass_env,
                label,
                cfg.mode.as_str(),
                flw_protocol::DEFAULT_MAX_LINE_BYTES,
            ),
            cwd: None,
        }
    }

    fn worker_config(&self, launch: &sdk::Launch, label: String, origin: Origin) -> WorkerConfig {
        let cfg = &self.cfg;
        WorkerConfig {
            spawn: self.spawn_spec(launch, &label, launch.args.clone()),
            keeper: launch.language == sdk::Language::Python,
            origin,
            label,
            handshake_timeout: cfg.handshake_timeout,
            kill_grace: cfg.kill_grace,
            heartbeat_interval: cfg.heartbeat_interval,
            heartbeat_timeout: cfg.heartbeat_timeout,
            max_line_bytes: flw_protocol::DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// Where the next worker comes from: the fork server (started, or
    /// started again, here), or exec.
    async fn origin(&self, launch: &sdk::Launch) -> Origin {
        if self.cfg.spawn == Spawn::Exec || launch.language != sdk::Language::Python {
            return Origin::Exec;
        }
        let mut f = self.forking.lock().await;
        if f.exec.is_some() {
            return Origin::Exec;
        }
        if let Some(server) = f.server.as_ref().filter(|s| !s.has_ended()) {
            return Origin::Fork(server.clone());
        }
        if f.starts >= MAX_FORK_SERVER_STARTS {
            let why = format!("its fork server ended {} times", f.starts);
            self.give_up_fork(&mut f, why);
            return Origin::Exec;
        }
        f.starts += 1;
        let label = self.label("fork");
        let mut args = launch.args.clone();
        // `-u -m flw SCRIPT` becomes `-u -m flw --fork-server SCRIPT`.
        let at = args.len().saturating_sub(1);
        args.insert(at, "--fork-server".into());
        let spec = self.spawn_spec(launch, &label, args);
        let started = tokio::select! {
            r = ForkServer::start(&spec, &label, self.cfg.handshake_timeout) => r,
            _ = self.stop.cancelled() => return Origin::Exec,
        };
        match started {
            Ok(server) => {
                f.server = Some(server.clone());
                Origin::Fork(server)
            }
            Err(ForkServerError::Unsafe(reason)) => {
                self.give_up_fork(&mut f, reason);
                Origin::Exec
            }
            Err(ForkServerError::Failed(e)) => {
                self.give_up_fork(&mut f, format!("its fork server failed: {e}"));
                Origin::Exec
            }
        }
    }

    fn give_up_fork(&self, f: &mut Forking, why: String) {
        if let Some(server) = f.server.take() {
            // Its workers go on; it would only hold the script in memory.
            tokio::spawn(async move { server.shutdown().await });
        }
        tracing::warn!(
            pool = %self.cfg.name,
            generation = self.number,
            "workers start with exec, not fork: {why} (set spawn = \"exec\" in flw.toml to skip the fork server)"
        );
        f.exec = Some(why);
        f.server = None;
    }

    /// A forked worker failed to start: before any forked worker of this
    /// generation had, fork is given up (the script or a library may not
    /// survive fork) and the slot tries again with exec at once.
    async fn forked_start_failed(&self, e: &str) -> bool {
        let mut f = self.forking.lock().await;
        if f.proven || f.exec.is_some() {
            return false;
        }
        self.give_up_fork(
            &mut f,
            format!("a forked worker failed to start, so the script may not survive fork: {e}"),
        );
        true
    }

    async fn forked_started(&self) {
        self.forking.lock().await.proven = true;
    }

    /// The label of worker `n` (or the fork server), e.g. `agent.py#3`,
    /// `agent.py#fork.g2`.
    fn label(&self, n: &str) -> String {
        let script_name = self
            .cfg
            .script
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if self.number > 1 {
            format!("{script_name}#{n}.g{}", self.number)
        } else {
            format!("{script_name}#{n}")
        }
    }

    /// Stops the fork server, if any (its workers go on).
    pub(super) async fn stop_fork_server(&self) {
        let server = self.forking.lock().await.server.take();
        if let Some(s) = server {
            s.shutdown().await;
        }
    }

    /// The manifest for a worker's tools: the generation's own when they
    /// are the same, so its validators are compiled once.
    fn manifest_for(&self, worker: &Worker) -> Result<Arc<Manifest>, ManifestError> {
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

/// What a slot's task does once its worker has ended.
enum Next {
    /// Start another at once (a requested end: a kill after a cancel).
    Refill,
    /// Start another after a backoff (a crash, or a failed start);
    /// `lived_long` when the worker had served a while (30 s), which ends a
    /// run of failures.
    Backoff { lived_long: bool },
    /// The slot is no longer needed.
    Leave,
}

/// Keeps a worker running in slot `i` until the generation stops, the
/// generation gives up, or the slot is not needed (idle, or beyond
/// `min_workers` with no call waiting after a crash).
async fn run_slot(
    generation: Arc<Generation>,
    i: usize,
    mut first_start: Option<mpsc::Sender<Result<(), StartFailure>>>,
) {
    let g = &generation;
    let mut starting = true; // counted in `State::starting`
    let mut backoff_failures = 0u32;
    let mut had_worker = false;
    loop {
        if g.stop.is_cancelled() || g.lock().closed {
            break;
        }
        let label = {
            let mut st = g.lock();
            let n = st.next_label;
            st.next_label += 1;
            g.label(&n.to_string())
        };
        if !starting {
            g.lock().starting += 1;
            starting = true;
        }
        let launch = tokio::select! {
            l = g.launch() => l,
            _ = g.stop.cancelled() => break,
        };
        let launch = match launch {
            Ok(l) => l,
            Err(e) => {
                // Starting again cannot help (the cause is outside the
                // worker, and cached): the generation gives up at once, and
                // the error was logged once for all slots.
                let failure = StartFailure::Launch(Arc::new(e));
                let e = failure.to_string();
                if let Some(tx) = first_start.take() {
                    let _ = tx.try_send(Err(failure));
                }
                g.fail_tools(&e);
                let mut st = g.lock();
                st.last_error = Some(e);
                st.gave_up = true;
                st.queue.clear(); // waiters get `unavailable`
                break;
            }
        };
        let mut origin = tokio::select! {
            o = g.origin(&launch) => o,
            _ = g.stop.cancelled() => break,
        };
        let started = loop {
            let forked = matches!(origin, Origin::Fork(_));
            let r = tokio::select! {
                r = Worker::start(g.worker_config(&launch, label.clone(), origin.clone())) => r,
                _ = g.stop.cancelled() => break Err(StartFailure::Stopped),
            };
            // A forked worker that started and died before its handshake,
            // while its fork server lives: the script may not survive fork.
            // (A fork server that ended, or a fork that failed, is not the
            // script's doing: the slot tries again.)
            let died_forked = match (&r, &origin) {
                (Err(e), Origin::Fork(server)) => e.started && !server.has_ended(),
                _ => false,
            };
            let r = r.map_err(StartFailure::Worker);
            match &r {
                Err(e) if died_forked && g.forked_start_failed(&e.to_string()).await => {
                    origin = Origin::Exec;
                    continue;
                }
                Ok(_) if forked => g.forked_started().await,
                _ => {}
            }
            if r.is_ok() {
                let counter = if forked {
                    &g.counters.forks
                } else {
                    &g.counters.spawns
                };
                counter.fetch_add(1, Ordering::Relaxed);
                if had_worker {
                    g.counters.restarts.fetch_add(1, Ordering::Relaxed);
                }
                had_worker = true;
            }
            break r;
        };
        if g.stop.is_cancelled() {
            break;
        }
        let outcome = match started {
            Ok(worker) => match g.manifest_for(&worker) {
                Ok(manifest) => Ok((worker, manifest)),
                Err(error) => {
                    let e = StartFailure::BadTool {
                        label: worker.label().to_string(),
                        error,
                    };
                    worker
                        .kill_now(CallFailure::new(ErrorKind::Unavailable, e.to_string()))
                        .await;
                    Err(e)
                }
            },
            Err(e) => Err(e),
        };
        let is_first = first_start.is_some();
        if let Some(tx) = first_start.take() {
            let _ = tx.try_send(outcome.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        g.lock().starting -= 1;
        starting = false;
        let next = match outcome {
            Ok((worker, manifest)) => {
                let epoch = {
                    let mut st = g.lock();
                    let s = &mut st.slots[i];
                    s.epoch += 1;
                    s.in_flight = 0;
                    s.since = Some(Instant::now());
                    s.worker = Some((worker.clone(), manifest.clone()));
                    let e = s.epoch;
                    g.dispatch(&mut st);
                    g.grow(&mut st, false);
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
                g.serve(i, epoch, &worker).await
            }
            Err(e) => {
                if g.candidate && is_first {
                    // The pool reports it and keeps its current generation.
                    break;
                }
                let e = e.to_string();
                if !g.stop.is_cancelled() {
                    tracing::error!(pool = %g.cfg.name, "{e}");
                }
                g.fail_tools(&e);
                g.lock().last_error = Some(e);
                Next::Backoff { lived_long: false }
            }
        };
        match next {
            Next::Leave => break,
            // A killed worker is replaced at once, even with no call
            // waiting: the pool needed it a moment ago, and idle_timeout
            // trims what stays unused.
            Next::Refill => backoff_failures = 0,
            Next::Backoff { lived_long } => {
                if lived_long {
                    backoff_failures = 0;
                }
                backoff_failures += 1;
                if backoff_failures > g.cfg.max_restarts {
                    g.slot_gave_up(backoff_failures);
                    break;
                }
                let backoff = Duration::from_millis(100)
                    .saturating_mul(1 << (backoff_failures - 1).min(7))
                    .min(Duration::from_secs(10));
                tracing::info!(pool = %g.cfg.name, "restarting a worker in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = g.stop.cancelled() => break,
                }
                if !g.still_needed() {
                    tracing::debug!(
                        pool = %g.cfg.name,
                        generation = g.number,
                        "scale down: a worker that ended is not replaced (no call waits, and the pool has min_workers)"
                    );
                    break;
                }
            }
        }
    }
    let mut st = g.lock();
    if starting {
        st.starting -= 1;
    }
    let s = &mut st.slots[i];
    s.active = false;
    s.retiring = false;
    s.worker = None;
    s.epoch += 1;
    s.in_flight = 0;
    st.active -= 1;
    drop(st);
    g.released.notify_waiters();
}

impl Generation {
    /// Serves with the worker in slot `i` until it ends or is idle too
    /// long; what the slot does next.
    async fn serve(&self, i: usize, epoch: u64, worker: &Arc<Worker>) -> Next {
        let alive_since = Instant::now();
        let info = loop {
            let idle_at = self.idle_deadline(i, epoch);
            tokio::select! {
                info = worker.exited() => break info,
                _ = self.stop.cancelled() => break worker.shutdown(Duration::from_secs(2)).await,
                _ = tokio::time::sleep_until(idle_at) => {
                    if self.retire_if_idle(i, epoch) {
                        worker.shutdown(Duration::from_secs(2)).await;
                        self.clear_slot(i, epoch);
                        return Next::Leave;
                    }
                }
            }
        };
        self.clear_slot(i, epoch);
        if info.requested {
            return Next::Refill;
        }
        self.lock().last_error = Some(format!(
            "worker {} ended with {}",
            worker.label(),
            info.status
        ));
        Next::Backoff {
            lived_long: alive_since.elapsed() > Duration::from_secs(30),
        }
    }

    fn clear_slot(&self, i: usize, epoch: u64) {
        {
            let mut st = self.lock();
            let s = &mut st.slots[i];
            if s.epoch == epoch {
                s.worker = None;
                s.epoch += 1;
                s.in_flight = 0;
            }
        }
        self.released.notify_waiters();
    }

    /// When slot `i`'s worker is to be checked for idleness next.
    fn idle_deadline(&self, i: usize, epoch: u64) -> tokio::time::Instant {
        let st = self.lock();
        let s = &st.slots[i];
        let timeout = self.cfg.idle_timeout.min(crate::config::MAX_DURATION);
        match s.since {
            Some(t) if s.epoch == epoch && s.in_flight == 0 => {
                tokio::time::Instant::from_std(t) + timeout
            }
            // Busy: look again later, at most once a second.
            _ => tokio::time::Instant::now() + timeout.max(Duration::from_secs(1)),
        }
    }

    /// Marks slot `i` retiring if its worker has been idle for
    /// `idle_timeout`, the generation has more than `min_workers` and no
    /// call waits.
    fn retire_if_idle(&self, i: usize, epoch: u64) -> bool {
        let mut st = self.lock();
        let serving = st.active - st.slots.iter().filter(|s| s.retiring).count();
        let live_calls = st.queue.iter().any(|(tx, _)| !tx.is_closed());
        let s = &st.slots[i];
        let idle = s.epoch == epoch
            && s.in_flight == 0
            && s.since
                .is_some_and(|t| t.elapsed() >= self.cfg.idle_timeout);
        if !idle || serving <= self.cfg.min_workers || live_calls || st.closed {
            return false;
        }
        st.slots[i].retiring = true;
        tracing::debug!(
            pool = %self.cfg.name,
            generation = self.number,
            "scale down to {} workers: a worker was idle for {:?} (min_workers = {})",
            serving - 1,
            self.cfg.idle_timeout,
            self.cfg.min_workers
        );
        true
    }

    /// Whether slot `i` should start another worker: the generation has no
    /// more than `min_workers`, or calls wait for more than the workers
    /// there are and starting can take.
    fn still_needed(&self) -> bool {
        let st = self.lock();
        if st.closed || st.gave_up {
            return false;
        }
        let others = st.active - 1;
        if others < self.cfg.min_workers.max(1) {
            return true;
        }
        let waiting = st.queue.iter().filter(|(tx, _)| !tx.is_closed()).count();
        waiting > st.starting * self.capacity()
    }

    /// Slot gave up after `failures` failures in a row: if it was the last
    /// slot, the generation gives up (calls fail `unavailable` until a
    /// reload); otherwise the others serve on, and calls that wait may
    /// start new slots.
    fn slot_gave_up(&self, failures: u32) {
        let mut st = self.lock();
        let last = st.active <= 1;
        tracing::error!(
            pool = %self.cfg.name,
            "a worker slot gave up after {failures} failures in a row{}; last: {}",
            if last { ", and it was the pool's last" } else { "" },
            st.last_error.as_deref().unwrap_or("?")
        );
        if last {
            st.gave_up = true;
            st.queue.clear(); // waiters get `unavailable`
        }
    }

    /// Marks the tools failed while no worker has announced them.
    fn fail_tools(&self, e: &str) {
        self.tools.send_if_modified(|t| match t {
            ToolsState::Starting => {
                *t = ToolsState::Failed(e.to_string());
                true
            }
            _ => false,
        });
    }
}
