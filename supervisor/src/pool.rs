//! A pool of worker processes for one script: generations of workers, hot
//! swap between them, and the cancel path.
//!
//! The workers themselves live in a [`generation::Generation`]: slots kept
//! running with restarts and backoff, a bounded queue, leases. A pool has one
//! current generation; [`Pool::reload`] starts the next one beside it, and
//! only when every worker of the new one has passed its handshake does it
//! become current. Calls queued on the old generation then move to the new
//! one, its calls in flight get `reload_drain` to finish (then are stopped
//! through the kill path with `superseded`), and its workers exit. A new
//! generation that fails to start is stopped, and the old one keeps serving.
//!
//! **Architecture invariant:** when [`Pool::call`] returns for a cancelled or
//! timed-out call in `isolated` mode, the worker process group that ran it
//! has been killed (SIGTERM, grace, SIGKILL) and reaped; the slot then starts
//! a fresh worker.

mod errors;
mod generation;
mod manifest;
pub mod manifest_cache;

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use flw_protocol::ErrorKind;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::call::{CallFailure, CallOutcome, EventSink, Job, NodeJob};
use crate::config::{Mode, PoolConfig};
pub use errors::{ReloadError, StartFailure, ToolsUnavailable};
use flw_protocol::ToolSpec;
pub use generation::Census;
pub use generation::Lease;
use generation::{AcquireError, Counters, Generation, ToolsState};
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

/// What happened to a pool's generations, for clients to hear about.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    /// A new generation serves the pool's calls.
    Reloaded {
        /// The pool's name.
        pool: String,
        /// The new generation's number.
        generation: u64,
        /// Whether its tools (names or schemas) differ from the old ones.
        tools_changed: bool,
        /// From the start of the reload until the new generation took calls.
        took: Duration,
    },
    /// The first generation started after failing to: its tools are now
    /// listed where there were none.
    Recovered {
        /// The pool's name.
        pool: String,
    },
    /// A new generation failed to start; the old one keeps serving.
    ReloadFailed {
        /// The pool's name.
        pool: String,
        /// Why, with the last lines of the worker's stderr.
        error: String,
    },
}

/// A pool of workers for one script; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PoolConfig,
    current: ArcSwap<Generation>,
    /// What was in the manifest cache when the pool started (read on a
    /// blocking thread: it reads the script's metadata and a file).
    cached: tokio::sync::OnceCell<CacheRead>,
    /// The current generation's tools, as callers should see them.
    tools: watch::Sender<ToolsState>,
    events: broadcast::Sender<PoolEvent>,
    /// Held for the whole of a reload: one at a time.
    swap: tokio::sync::Mutex<()>,
    reloads: Mutex<Reloads>,
    next_generation: AtomicU64,
    closed: AtomicBool,
    closing: CancellationToken,
    /// Cancelled when reloads stop (a drain began, or `closing`): a reload
    /// under way gives up its new generation, and no other starts.
    no_reloads: CancellationToken,
    /// Replaced generations while they drain.
    retiring: tokio_util::task::TaskTracker,
    draining: Mutex<Vec<std::sync::Weak<Generation>>>,
    /// Restarts, spawns and forks, in every generation.
    counters: Arc<Counters>,
}

/// Reload requests that wait for the one running.
#[derive(Default)]
struct Reloads {
    pending: Option<String>,
    running: bool,
}

impl Pool {
    /// Starts the pool's first generation; workers come up in the
    /// background. Reloads are announced on `events`.
    pub fn start(cfg: PoolConfig, events: broadcast::Sender<PoolEvent>) -> Pool {
        let counters = Arc::new(Counters::default());
        let first = Generation::start(cfg.clone(), 1, false, counters.clone());
        let closing = CancellationToken::new();
        let inner = Arc::new(Inner {
            cfg,
            current: ArcSwap::new(first.clone()),
            cached: tokio::sync::OnceCell::new(),
            tools: watch::channel(ToolsState::Starting).0,
            events,
            swap: tokio::sync::Mutex::new(()),
            reloads: Mutex::new(Reloads::default()),
            next_generation: AtomicU64::new(2),
            closed: AtomicBool::new(false),
            no_reloads: closing.child_token(),
            closing,
            retiring: tokio_util::task::TaskTracker::new(),
            draining: Mutex::new(Vec::new()),
            counters,
        });
        tokio::spawn(follow_first(inner.clone(), first));
        Pool { inner }
    }

    /// The pool's configuration.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.cfg
    }

    /// The number of the generation that takes new calls: 1, then higher
    /// after reloads (a failed reload uses a number up too).
    pub fn generation(&self) -> u64 {
        self.inner.current.load().number
    }

    /// Calls in flight on the current generation.
    pub fn in_flight(&self) -> usize {
        self.inner.current.load().in_flight()
    }

    /// Calls waiting for a worker of the current generation.
    pub fn queued(&self) -> usize {
        self.inner.current.load().queued()
    }

    /// Workers started again after one ended (crashed, was killed, or
    /// exited), in every generation so far.
    pub fn restarts(&self) -> u64 {
        self.inner.counters.restarts.load(Ordering::Relaxed)
    }

    /// Workers started with exec, in every generation so far.
    pub fn spawns(&self) -> u64 {
        self.inner.counters.spawns.load(Ordering::Relaxed)
    }

    /// Workers forked by a fork server, in every generation so far.
    pub fn forks(&self) -> u64 {
        self.inner.counters.forks.load(Ordering::Relaxed)
    }

    /// The current generation's workers: live, busy, starting.
    pub fn census(&self) -> Census {
        self.inner.current.load().census()
    }

    /// Waits until the manifest cache has been read (a few ms after the
    /// start), so that [`Pool::tools_now`] can answer from it.
    pub async fn cache_read(&self) {
        self.inner.read_cache().await;
    }

    /// The tools without waiting: `(tools, true)` once a worker has
    /// announced them, else `(tools, false)` from the manifest cache (see
    /// [`manifest_cache`]); `None` when neither exists or the start failed.
    pub fn tools_now(&self) -> Option<(Vec<ToolSpec>, bool)> {
        match &*self.inner.tools.borrow() {
            ToolsState::Ready(m) => Some((m.listed().to_vec(), true)),
            ToolsState::Starting => self
                .inner
                .cached
                .get()
                .and_then(|c| c.tools.clone())
                .map(|t| (t, false)),
            ToolsState::Failed(_) => None,
        }
    }

    /// Whether the current generation has announced a tool called `name`
    /// (`false` while the pool starts); cheap, for every call.
    pub fn has_tool_now(&self, name: &str) -> bool {
        match &*self.inner.tools.borrow() {
            ToolsState::Ready(m) => m.get(name).is_some(),
            _ => false,
        }
    }

    /// Waits until the first worker has announced its tools, or the first
    /// start failed (with the reason, including the worker's stderr).
    pub async fn manifest(&self) -> Result<Arc<Manifest>, ToolsUnavailable> {
        let mut rx = self.inner.tools.subscribe();
        loop {
            match &*rx.borrow_and_update() {
                ToolsState::Ready(m) => return Ok(m.clone()),
                ToolsState::Failed(e) => return Err(ToolsUnavailable::Failed(e.clone())),
                ToolsState::Starting => {}
            }
            if rx.changed().await.is_err() {
                return Err(ToolsUnavailable::Stopped);
            }
        }
    }

    /// Asks for a reload; requests that come while one runs are folded into
    /// one more reload after it. The outcome is announced as a [`PoolEvent`].
    pub fn request_reload(&self, reason: impl Into<String>) {
        {
            let mut r = self.inner.lock_reloads();
            r.pending = Some(reason.into());
            if r.running {
                return;
            }
            r.running = true;
        }
        let pool = self.clone();
        tokio::spawn(async move {
            loop {
                let reason = {
                    let mut r = pool.inner.lock_reloads();
                    match r.pending.take() {
                        Some(reason) => reason,
                        None => {
                            r.running = false;
                            return;
                        }
                    }
                };
                let _ = pool.reload(&reason).await;
            }
        });
    }

    /// Starts a new generation and, once all its workers have passed their
    /// handshake, makes it current; the old one drains in the background.
    /// On failure the old generation keeps serving. Returns the number of
    /// the generation that serves afterwards.
    pub async fn reload(&self, reason: &str) -> Result<u64, ReloadError> {
        let s = &self.inner;
        let _one = s.swap.lock().await;
        if s.closed.load(Ordering::Acquire) || s.no_reloads.is_cancelled() {
            return Err(ReloadError::PoolClosing {
                pool: s.cfg.name.clone(),
            });
        }
        let number = s.next_generation.fetch_add(1, Ordering::Relaxed);
        let began = Instant::now();
        tracing::info!(pool = %s.cfg.name, "reloading ({reason}): starting generation {number}");
        let candidate = Generation::start(s.cfg.clone(), number, true, s.counters.clone());
        let ready = tokio::select! {
            r = candidate.ready() => r,
            _ = s.no_reloads.cancelled() => Err(StartFailure::Stopped),
        };
        let manifest = match ready {
            Ok(m) => m,
            Err(_) if s.no_reloads.is_cancelled() => {
                candidate.close(false);
                candidate.stop(Duration::ZERO, None).await;
                return Err(ReloadError::Stopping);
            }
            Err(e) => {
                candidate.close(false);
                candidate.stop(Duration::ZERO, None).await;
                let serving = s.current.load().number;
                let error = ReloadError::Failed {
                    pool: s.cfg.name.clone(),
                    serving,
                    cause: e,
                };
                tracing::error!(pool = %s.cfg.name, "{error}");
                let _ = s.events.send(PoolEvent::ReloadFailed {
                    pool: s.cfg.name.clone(),
                    error: error.to_string(),
                });
                return Err(error);
            }
        };
        let old = s.current.swap(candidate);
        old.close(true); // its queued calls move to the new generation
        let tools_changed = match &*s.tools.borrow() {
            ToolsState::Ready(m) => !m.same_interface(&manifest),
            _ => true,
        };
        s.tools.send_replace(ToolsState::Ready(manifest.clone()));
        let cfg = s.cfg.clone();
        store_manifest(&s.cfg.name, &manifest, move || {
            ManifestCache::for_pool(&cfg)
        });
        let took = began.elapsed();
        tracing::info!(
            pool = %s.cfg.name,
            "generation {number} serves after {took:?}{}; generation {} drains",
            if tools_changed { " with changed tools" } else { "" },
            old.number
        );
        let drain = s.cfg.reload_drain;
        let leftover = CallFailure::new(
            ErrorKind::Superseded,
            format!(
                "generation {} of pool {} was replaced by generation {number} after its script changed, and the call did not finish within reload_drain = {drain:?}; it was stopped",
                old.number, s.cfg.name
            ),
        );
        {
            let mut draining = s.draining.lock().unwrap_or_else(|p| p.into_inner());
            draining.retain(|g| g.strong_count() > 0);
            draining.push(Arc::downgrade(&old));
        }
        s.retiring
            .spawn(async move { old.stop(drain, Some(leftover)).await });
        let _ = s.events.send(PoolEvent::Reloaded {
            pool: s.cfg.name.clone(),
            generation: number,
            tools_changed,
            took,
        });
        Ok(number)
    }

    /// Runs `tool` with `args` on a free worker, after checking them against
    /// the tool's input schema.
    pub fn call<'a>(
        &'a self,
        tool: &'a str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> impl std::future::Future<Output = CallOutcome> + 'a {
        // Not an async fn: its future would wrap dispatch's and be larger.
        self.dispatch(Job::Tool { tool, args }, opts)
    }

    /// Runs one phase of a graph node on a free worker; the outcome is the
    /// worker's outcome object (see `protocol/PROTOCOL.md`, "Graph nodes").
    pub async fn call_node(&self, job: NodeJob, opts: CallOptions) -> CallOutcome {
        self.dispatch(Job::Node(Box::new(job)), opts).await
    }

    async fn dispatch(&self, job: Job<'_>, opts: CallOptions) -> CallOutcome {
        let cfg = &self.inner.cfg;
        let checked = self
            .manifest()
            .await
            .map_err(|e| CallFailure::new(ErrorKind::Unavailable, e.to_string()))?;
        let mut job = checked.check(job)?;
        let timeout = opts.timeout.or(cfg.call_timeout);
        let deadline = timeout.and_then(|t| tokio::time::Instant::now().checked_add(t));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        let lease = loop {
            let generation = self.inner.current.load_full();
            let got = tokio::select! {
                biased;
                _ = opts.cancel.cancelled() => {
                    return Err(CallFailure::new(ErrorKind::Cancelled, format!("call to {} was cancelled while it waited for a worker", job.label())));
                }
                _ = &mut sleep => {
                    return Err(CallFailure::new(ErrorKind::Timeout, format!(
                        "call to {} timed out after {:?} while it waited for a free worker in pool {}",
                        job.label(), timeout.unwrap_or_default(), cfg.name
                    )));
                }
                lease = generation.acquire(&opts.cancel) => lease,
            };
            match got {
                Ok(lease) => break lease,
                Err(AcquireError::Retired) => continue, // a reload: go to the new generation
                Err(AcquireError::Failed(f)) => return Err(f),
            }
        };
        if !Arc::ptr_eq(&lease.manifest, &checked) {
            // A reload came between the check and the lease.
            let what = match &job {
                Job::Tool { tool, .. } => format!("tool {tool:?}"),
                Job::Node(_) => job.label(),
            };
            job = lease.manifest.check(job).map_err(|mut f| {
                if f.kind == ErrorKind::UnknownTool {
                    f.message = format!(
                        "{what} was removed from pool {} by a reload of its script (generation {}); the tools are now: {}",
                        cfg.name,
                        lease.generation().number,
                        tool_names(&lease.manifest)
                    );
                }
                f
            })?;
        }
        drop(checked); // not kept in the future's state while the call runs
        let remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        let name = match &job {
            Job::Tool { tool, .. } => Cow::Borrowed(*tool),
            Job::Node(_) => Cow::Owned(job.label()),
        };
        let (id, mut rx) = lease.worker.start_call(job, remaining, opts.events);
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
        // Boxed: the cancel path is rare, and inline its state would make
        // every call's future (held for each call in flight) larger.
        Box::pin(self.stop_call(lease, id, rx, kind, &format!("call {id} to {name} {what}"))).await
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
            // The call had cancel_grace to stop on its own: what is left is
            // killed at once, processes that left its group included.
            Mode::Isolated => {
                worker
                    .kill_now(CallFailure::new(
                        kind,
                        format!("{what}; its worker was stopped"),
                    ))
                    .await;
                true
            }
            Mode::Shared if !ended => {
                worker
                    .kill_now(CallFailure::new(
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

    /// Starts no more reloads, and makes one under way give up its new
    /// generation (a drain began: only the workers up now may serve).
    pub fn stop_reloads(&self) {
        self.inner.no_reloads.cancel();
    }

    /// Stops taking calls, lets calls in flight finish within `drain`, then
    /// shuts every worker down (killing what is left), draining generations
    /// included.
    pub async fn shutdown(&self, drain: Duration) {
        let s = &self.inner;
        s.closed.store(true, Ordering::Release);
        s.closing.cancel();
        let _no_more_swaps = s.swap.lock().await;
        let current = s.current.load_full();
        current.close(false);
        // Generations still draining after a reload get no longer than the rest.
        for old in s
            .draining
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(std::sync::Weak::upgrade)
        {
            old.hurry(drain);
        }
        s.retiring.close();
        // Calls still running after the drain are stopped through the kill
        // path and fail with `shutting_down` (not with whatever a worker
        // that is being stopped would answer).
        let leftover = CallFailure::new(
            ErrorKind::ShuttingDown,
            format!(
                "flw is shutting down and the call did not finish within the drain time ({drain:?}); its worker was stopped"
            ),
        );
        tokio::join!(current.stop(drain, Some(leftover)), s.retiring.wait());
    }
}

impl Inner {
    fn lock_reloads(&self) -> std::sync::MutexGuard<'_, Reloads> {
        self.reloads.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The manifest cache's entry for the script as it was at the start,
    /// and what it held, read once off the runtime.
    async fn read_cache(&self) -> &CacheRead {
        self.cached
            .get_or_init(|| async {
                let cfg = self.cfg.clone();
                tokio::task::spawn_blocking(move || {
                    let entry = ManifestCache::for_pool(&cfg);
                    let tools = entry.as_ref().and_then(ManifestCache::load);
                    CacheRead { entry, tools }
                })
                .await
                .unwrap_or(CacheRead {
                    entry: None,
                    tools: None,
                })
            })
            .await
    }
}

/// The manifest cache as a pool found it at its start.
struct CacheRead {
    /// The entry of the script as it was then (`None`: caching is off).
    entry: Option<ManifestCache>,
    /// The tools it held, when its stamp matched.
    tools: Option<Vec<ToolSpec>>,
}

/// The names of a manifest's tools, for error messages.
fn tool_names(m: &Manifest) -> String {
    let names: Vec<&str> = m.tools().iter().map(|t| t.name.as_str()).collect();
    if names.is_empty() {
        "(none)".into()
    } else {
        names.join(", ")
    }
}

/// Publishes the first generation's tools (or its failure to start) while
/// it is current, and caches them once they are known.
async fn follow_first(inner: Arc<Inner>, first: Arc<Generation>) {
    let read = inner.read_cache().await;
    let mut cache = read.entry.clone();
    let mut rx = first.tools.subscribe();
    loop {
        let state = rx.borrow_and_update().clone();
        if !Arc::ptr_eq(&inner.current.load(), &first) {
            return; // a reload replaced it and publishes its own tools
        }
        let ready = matches!(state, ToolsState::Ready(_));
        if let ToolsState::Ready(m) = &state {
            if read.tools.as_deref() != Some(m.listed()) {
                if let Some(cache) = cache.take() {
                    // The entry stamped at start: the script may have changed since.
                    store_manifest(&inner.cfg.name, m, move || Some(cache));
                }
            }
        }
        // Checked again under the watch's lock: a reload swaps the current
        // generation before it publishes, so once it has, this is skipped.
        let mut before = None;
        inner.tools.send_if_modified(|t| {
            if !Arc::ptr_eq(&inner.current.load(), &first) {
                return false;
            }
            before = Some(std::mem::replace(t, state.clone()));
            true
        });
        if ready {
            if matches!(before, Some(ToolsState::Failed(_))) {
                let _ = inner.events.send(PoolEvent::Recovered {
                    pool: inner.cfg.name.clone(),
                });
            }
            return;
        }
        tokio::select! {
            r = rx.changed() => if r.is_err() { return },
            _ = inner.closing.cancelled() => return,
        }
    }
}

/// Writes a manifest to the cache entry `entry` gives, off the runtime
/// (finding the entry reads the script's metadata, so it runs there too).
fn store_manifest(
    pool: &str,
    manifest: &Manifest,
    entry: impl FnOnce() -> Option<ManifestCache> + Send + 'static,
) {
    let pool = pool.to_string();
    let tools = manifest.listed().to_vec();
    tokio::task::spawn_blocking(move || {
        if let Some(cache) = entry() {
            if let Err(e) = cache.store(&tools) {
                tracing::debug!(pool = %pool, "cannot cache the manifest: {e}");
            }
        }
    });
}
