//! Running a [`Plan`]: the walk from node to node, retries and fallbacks,
//! batch items, parallel branches and batch-flow runs spread across the
//! pools' workers, the shared store, and cancellation of everything in
//! flight. Node phases go through a [`NodeCaller`]: the router in flw, a
//! script in the graph-run vectors (`protocol/vectors/graph_runs.json`).
//!
//! **Invariant:** a run never leaves a call behind. Every node call is made
//! with a cancellation token of the run's tree, and when a run ends early
//! (cancel, deadline, a failed item or branch) the runner cancels the token
//! and waits for each call to come back through its pool's kill path before
//! it returns.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flw_protocol::outcome::{Changes, NodeOutcome};
use flw_protocol::{ErrorKind, LogLevel, NodeError, NodeKind, NodePhase};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::events::{RunError, RunErrorKind, RunEvent, RunStatus, Stamped};
use super::plan::{BatchPlan, Plan, Step, WorkerNode};
use super::{Options, DEFAULT_BACKOFF_MS};
use crate::call::events::{self as call_events, Received};
use crate::call::{CallEvent, CallOutcome, EventSink, NodeJob};

/// What a run calls node phases through: the router in flw (pools, the
/// global limit, the kill path), a script in tests.
pub trait NodeCaller: Sync {
    /// Runs `job` on a worker of pool `pool` (an index of the catalog's
    /// pools). `timeout` bounds the attempt; cancelling `cancel` stops it
    /// through the kill path; progress, logs and chunks go to `events`.
    fn call_node(
        &self,
        pool: usize,
        job: NodeJob,
        timeout: Option<Duration>,
        cancel: CancellationToken,
        events: EventSink,
    ) -> BoxFuture<'_, CallOutcome>;
}

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Items, runs or branches in flight at once when a batch or `parallel`
/// sets no `limit`: the largest default `max_workers`. A worker's `prep`
/// may return millions of items; each in flight holds its parameters and
/// a view of the store, so the runner bounds them itself.
pub const MAX_IN_FLIGHT: usize = 1024;

/// How to run a flow.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Cancelling it cancels the run and every call in its tree.
    pub cancel: CancellationToken,
    /// Where events go; `None` drops them.
    pub events: Option<mpsc::UnboundedSender<Stamped>>,
    /// Overrides the flow's `max_steps`.
    pub max_steps: Option<u64>,
    /// Overrides the flow's `deadline_ms`.
    pub deadline: Option<Duration>,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    /// Succeeded, failed or cancelled.
    pub status: RunStatus,
    /// The store as it stood at the end.
    pub shared: Map<String, Value>,
    /// Why, when it did not succeed.
    pub error: Option<RunError>,
    /// Node visits made.
    pub steps: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Why a walk stopped early.
enum Fail {
    /// A node failed for good, or a limit was passed.
    Error(RunError),
    /// The run's token was cancelled (a cancel or the deadline).
    Stopped,
}

/// Runs `plan` from `shared`; returns once every call of the run has ended.
pub async fn run(
    nodes: &dyn NodeCaller,
    plan: Arc<Plan>,
    mut shared: Map<String, Value>,
    opts: RunOptions,
) -> RunResult {
    let stop = opts.cancel.child_token();
    let runner = Runner {
        nodes,
        events: opts.events,
        steps: AtomicU64::new(0),
        max_steps: opts.max_steps.unwrap_or(plan.max_steps),
        began: Instant::now(),
    };
    runner.emit(RunEvent::RunStarted {
        flow: plan.name.clone(),
        shared: shared.clone(),
    });
    let deadline = opts.deadline.or(plan.deadline);
    let deadline_hit = AtomicBool::new(false);
    let timer = async {
        if let Some(d) = deadline {
            tokio::time::sleep(d).await;
            deadline_hit.store(true, Ordering::Release);
            stop.cancel(); // the walk below then stops through the kill path
        }
        std::future::pending::<()>().await
    };
    let outcome = {
        let top = Scope {
            params: &Map::new(),
            shared_with: None,
        };
        let walk = runner.run_flow(&plan, &plan.name, &mut shared, top, &stop);
        tokio::select! {
            r = walk => r,
            _ = timer => unreachable!("the timer never ends"),
        }
    };
    let (status, error) = match outcome {
        Ok(_) => (RunStatus::Succeeded, None),
        Err(Fail::Error(e)) => (RunStatus::Failed, Some(e)),
        Err(Fail::Stopped) if deadline_hit.load(Ordering::Acquire) => (
            RunStatus::Failed,
            Some(RunError::new(
                ErrorKind::Timeout,
                format!(
                    "flow {} passed its deadline of {:?}; every call in flight was stopped",
                    plan.name,
                    deadline.unwrap_or_default()
                ),
            )),
        ),
        Err(Fail::Stopped) => (
            RunStatus::Cancelled,
            Some(RunError::new(
                ErrorKind::Cancelled,
                format!("the run of flow {} was cancelled", plan.name),
            )),
        ),
    };
    let result = RunResult {
        status,
        shared,
        error,
        steps: runner.steps.load(Ordering::Relaxed),
        elapsed: runner.began.elapsed(),
    };
    runner.emit(RunEvent::RunFinished {
        status,
        steps: result.steps,
        ms: millis(result.elapsed),
        shared: result.shared.clone(),
        error: result.error.clone(),
    });
    result
}

struct Runner<'r> {
    nodes: &'r dyn NodeCaller,
    events: Option<mpsc::UnboundedSender<Stamped>>,
    steps: AtomicU64,
    max_steps: u64,
    began: Instant,
}

impl Runner<'_> {
    fn emit(&self, event: RunEvent) {
        if let Some(tx) = &self.events {
            let _ = tx.send(Stamped {
                event,
                t_ms: millis(self.began.elapsed()),
            });
        }
    }

    /// Runs `plan`: a walk from its start, or for a batch flow one walk per
    /// parameter set; returns the flow's action.
    fn run_flow<'a>(
        &'a self,
        plan: &'a Plan,
        path: &'a str,
        shared: &'a mut Map<String, Value>,
        scope: Scope<'a>,
        tok: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<String, Fail>> {
        Box::pin(async move {
            match &plan.batch {
                None => self.walk(plan, path, shared, scope, tok).await,
                Some(b) => self.batch_flow(plan, b, path, shared, scope, tok).await,
            }
        })
    }

    /// Walks `plan` from its start; returns the last node's action.
    async fn walk(
        &self,
        plan: &Plan,
        path: &str,
        shared: &mut Map<String, Value>,
        scope: Scope<'_>,
        tok: &CancellationToken,
    ) -> Result<String, Fail> {
        {
            let mut at = plan.start;
            loop {
                let action = self.visit(plan, at, path, shared, scope, tok).await?;
                let node = &plan.nodes[at];
                match plan.next(at, &action) {
                    Some(next) => at = next,
                    None => {
                        if !node.next.is_empty() {
                            // PocketFlow's wording, then where.
                            let known: Vec<String> =
                                node.next.iter().map(|(a, _)| format!("'{a}'")).collect();
                            let message = format!(
                                "Flow ends: '{action}' not found in [{}] (the edges of {path}/{})",
                                known.join(", "),
                                node.id,
                            );
                            tracing::warn!("{message}");
                            self.emit(RunEvent::Log {
                                path: format!("{path}/{}", node.id),
                                level: LogLevel::Warning,
                                message,
                            });
                        }
                        return Ok(action);
                    }
                }
            }
        }
    }

    /// A batch flow (PocketFlow's `BatchFlow`): its node's `prep` gives
    /// parameter sets, the graph runs once per set with those parameters
    /// added, one after another or (`concurrent`) overlapping on the one
    /// store, then its node's `post` gives the action.
    async fn batch_flow(
        &self,
        plan: &Plan,
        b: &BatchPlan,
        path: &str,
        shared: &mut Map<String, Value>,
        scope: Scope<'_>,
        tok: &CancellationToken,
    ) -> Result<String, Fail> {
        let none = Options::default();
        scope.refresh(shared);
        let job = scope.job(&b.node.name, NodePhase::Prep, Some(shared));
        let prep = self.call(&b.node, job, &none, path, tok).await?;
        let sets = match &prep.value {
            Value::Null => Vec::new(),
            Value::Array(sets) if sets.iter().all(Value::is_object) => {
                sets.iter().filter_map(|s| s.as_object().cloned()).collect()
            }
            other => {
                return Err(Fail::Error(RunError::new(
                    ErrorKind::ToolError,
                    format!(
                    "{path}: prep of batch flow {} returned {}, not a list of parameter objects",
                    plan.name,
                    crate::excerpt::display(other, crate::excerpt::CHARS)
                ),
                )))
            }
        };
        scope.commit(shared, [prep.changes]);
        let total = sets.len();
        self.emit(RunEvent::BatchItems {
            path: path.to_string(),
            total,
        });
        let with = |set: &Map<String, Value>| {
            let mut p = scope.params.clone();
            p.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
            p
        };
        if b.concurrent {
            let mut done = 0;
            let finished = |(run_path, took): &(String, Duration)| {
                done += 1;
                self.emit(RunEvent::ItemFinished {
                    path: run_path.clone(),
                    done,
                    total,
                    ms: millis(*took),
                });
            };
            let before = shared.clone();
            let store = Mutex::new(std::mem::take(shared));
            let store_ref = &store;
            let one = |i: usize, run_tok: CancellationToken| {
                let params = with(&sets[i]);
                async move {
                    let run_path = format!("{path}[{i}]");
                    let began = Instant::now();
                    let inner = Scope {
                        params: &params,
                        shared_with: Some(store_ref),
                    };
                    let mut local = Map::new();
                    self.walk(plan, &run_path, &mut local, inner, &run_tok)
                        .await?;
                    Ok((run_path, began.elapsed()))
                }
            };
            let r = all_or_first_failure(total, b.limit, tok, one, finished).await;
            *shared = store.into_inner().unwrap_or_else(|e| e.into_inner());
            // The runs' net changes go on to a store this flow shares.
            let net = Changes::between(&before, shared);
            *shared = before;
            scope.commit(shared, [net]);
            r?;
        } else {
            for (i, set) in sets.iter().enumerate() {
                let params = with(set);
                let run_path = format!("{path}[{i}]");
                let began = Instant::now();
                let inner = Scope {
                    params: &params,
                    shared_with: scope.shared_with,
                };
                self.walk(plan, &run_path, shared, inner, tok).await?;
                self.emit(RunEvent::ItemFinished {
                    path: run_path,
                    done: i + 1,
                    total,
                    ms: millis(began.elapsed()),
                });
            }
        }
        scope.refresh(shared);
        let mut job = scope.job(&b.node.name, NodePhase::Post, Some(shared));
        job.prep = Some(prep.value);
        let post = self.call(&b.node, job, &none, path, tok).await?;
        scope.commit(shared, [post.changes]);
        Ok(post.action.unwrap_or_else(|| "default".into()))
    }

    /// One visit of entry `idx` of `plan` (whose path is `flow_path`).
    fn visit<'a>(
        &'a self,
        plan: &'a Plan,
        idx: usize,
        flow_path: &'a str,
        shared: &'a mut Map<String, Value>,
        scope: Scope<'a>,
        tok: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<String, Fail>> {
        Box::pin(async move {
            if tok.is_cancelled() {
                return Err(Fail::Stopped);
            }
            let node = &plan.nodes[idx];
            let path = format!("{flow_path}/{}", node.id);
            let step = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
            if step > self.max_steps {
                self.steps.fetch_sub(1, Ordering::Relaxed);
                return Err(Fail::Error(RunError::new(
                    RunErrorKind::MaxSteps,
                    format!(
                        "the run made max_steps = {} node visits and would go on with {path}; it looks like a loop that does not end (raise max_steps in the flow, or --max-steps, if it is meant to run that long)",
                        self.max_steps
                    ),
                )));
            }
            let kind = match &node.step {
                Step::Worker(w) => w.kind.as_str(),
                Step::Flow(sub) if sub.batch.is_some() => "batch_flow",
                Step::Flow(_) => "flow",
                Step::Parallel(_) => "parallel",
            };
            self.emit(RunEvent::NodeStarted {
                path: path.clone(),
                kind,
                step,
            });
            let began = Instant::now();
            let opts = &node.options;
            let r = match &node.step {
                Step::Worker(w) if w.kind == NodeKind::Batch => {
                    self.batch_node(w, opts, &path, shared, scope, tok).await
                }
                Step::Worker(w) => self.worker_node(w, opts, &path, shared, scope, tok).await,
                Step::Flow(sub) if opts.retries == 0 => {
                    // In place, so a cancel keeps what its finished nodes did.
                    self.run_flow(sub, &path, shared, scope, tok).await
                }
                Step::Flow(sub) => {
                    scope.refresh(shared);
                    let before = &*shared;
                    let alone = scope.alone();
                    let tried = self
                        .retrying(opts, &path, tok, || async {
                            let mut copy = before.clone();
                            let action = self.run_flow(sub, &path, &mut copy, alone, tok).await?;
                            Ok((action, copy))
                        })
                        .await;
                    // No `?`: a failure must reach the node_failed event below.
                    tried.map(|(action, after)| {
                        let net = Changes::between(shared, &after);
                        scope.commit(shared, [net]);
                        action
                    })
                }
                Step::Parallel(branches) => {
                    scope.refresh(shared);
                    let before = &*shared;
                    let alone = scope.alone();
                    let copies = self
                        .retrying(opts, &path, tok, || {
                            self.parallel(
                                plan,
                                (branches, opts.limit),
                                flow_path,
                                before,
                                alone,
                                tok,
                            )
                        })
                        .await;
                    copies.map(|copies| {
                        let mut merged = shared.clone();
                        self.merge(plan, branches, &path, copies, &mut merged);
                        let net = Changes::between(shared, &merged);
                        scope.commit(shared, [net]);
                        "default".to_string()
                    })
                }
            };
            let ms = millis(began.elapsed());
            match &r {
                Ok(action) => self.emit(RunEvent::NodeFinished {
                    path,
                    action: action.clone(),
                    ms,
                }),
                Err(Fail::Error(e)) => self.emit(RunEvent::NodeFailed {
                    path,
                    error: e.clone(),
                    ms,
                }),
                Err(Fail::Stopped) => {}
            }
            r
        })
    }

    /// A node of kind `node`: `run` with retries, then the fallback.
    async fn worker_node(
        &self,
        w: &WorkerNode,
        opts: &Options,
        path: &str,
        shared: &mut Map<String, Value>,
        scope: Scope<'_>,
        tok: &CancellationToken,
    ) -> Result<String, Fail> {
        scope.refresh(shared);
        let store = &*shared;
        let tried = self
            .retrying(opts, path, tok, || {
                let job = scope.job(&w.name, NodePhase::Run, Some(store));
                self.call(w, job, opts, path, tok)
            })
            .await;
        let outcome = match tried {
            Err(Fail::Error(e)) if w.fallback && !tok.is_cancelled() => {
                self.emit(RunEvent::NodeFallback {
                    path: path.to_string(),
                    error: e.clone(),
                });
                let mut job = scope.job(&w.name, NodePhase::Fallback, Some(shared));
                job.error = Some(NodeError {
                    kind: e.kind.as_str().to_string(),
                    message: e.message,
                });
                self.call(w, job, opts, path, tok).await?
            }
            other => other?,
        };
        scope.commit(shared, [outcome.changes]);
        Ok(outcome.action.unwrap_or_else(|| "default".into()))
    }

    /// A batch node: `prep`, one `exec` per item across the pool, `post`.
    async fn batch_node(
        &self,
        w: &WorkerNode,
        opts: &Options,
        path: &str,
        shared: &mut Map<String, Value>,
        scope: Scope<'_>,
        tok: &CancellationToken,
    ) -> Result<String, Fail> {
        scope.refresh(shared);
        let store = &*shared;
        let prep = self
            .retrying(opts, path, tok, || {
                let job = scope.job(&w.name, NodePhase::Prep, Some(store));
                self.call(w, job, opts, path, tok)
            })
            .await?;
        let items = match &prep.value {
            Value::Array(items) => items.clone(),
            other => {
                return Err(Fail::Error(RunError::new(
                    ErrorKind::ToolError,
                    format!(
                        "{path}: prep of batch node {} returned {}, not a list of items",
                        w.name,
                        crate::excerpt::display(other, crate::excerpt::CHARS)
                    ),
                )))
            }
        };
        // prep's changes count only if the whole node succeeds.
        let mut store = None;
        if prep.changes != Changes::default() {
            let mut s = shared.clone();
            prep.changes.clone().apply(&mut s);
            store = Some(s);
        }
        self.emit(RunEvent::BatchItems {
            path: path.to_string(),
            total: items.len(),
        });
        let results = self.exec_items(w, opts, path, &items, scope, tok).await?;
        let post_store = store.as_ref().unwrap_or(shared);
        let post = self
            .retrying(opts, path, tok, || {
                let mut job = scope.job(&w.name, NodePhase::Post, Some(post_store));
                job.prep = Some(prep.value.clone());
                job.results = Some(results.clone());
                self.call(w, job, opts, path, tok)
            })
            .await?;
        scope.commit(shared, [prep.changes, post.changes]);
        Ok(post.action.unwrap_or_else(|| "default".into()))
    }

    /// Every item's `exec`, at most `limit` at once; the values in item
    /// order. The first item that fails for good cancels the others.
    async fn exec_items(
        &self,
        w: &WorkerNode,
        opts: &Options,
        path: &str,
        items: &[Value],
        scope: Scope<'_>,
        tok: &CancellationToken,
    ) -> Result<Vec<Value>, Fail> {
        let total = items.len();
        let mut done = 0;
        let one = |i: usize, items_tok: CancellationToken| async move {
            let item_path = format!("{path}[{i}]");
            let began = Instant::now();
            let outcome = self
                .retrying(opts, &item_path, &items_tok, || {
                    let mut job = scope.job(&w.name, NodePhase::Exec, None);
                    job.item = Some(items[i].clone());
                    self.call(w, job, opts, &item_path, &items_tok)
                })
                .await?;
            Ok((outcome.value, item_path, began.elapsed()))
        };
        let finished = |(_, item_path, took): &(Value, String, Duration)| {
            done += 1;
            self.emit(RunEvent::ItemFinished {
                path: item_path.clone(),
                done,
                total,
                ms: millis(*took),
            });
        };
        let results = all_or_first_failure(total, opts.limit, tok, one, finished).await?;
        Ok(results.into_iter().map(|(value, _, _)| value).collect())
    }

    /// Runs each branch on its own copy of `before`, at most `limit` at
    /// once; the copies in branch order. The first branch that fails
    /// cancels the others.
    async fn parallel(
        &self,
        plan: &Plan,
        (branches, limit): (&[usize], Option<usize>),
        flow_path: &str,
        before: &Map<String, Value>,
        scope: Scope<'_>,
        tok: &CancellationToken,
    ) -> Result<Vec<Map<String, Value>>, Fail> {
        let one = |k: usize, branch_tok: CancellationToken| async move {
            let mut copy = before.clone();
            self.visit(plan, branches[k], flow_path, &mut copy, scope, &branch_tok)
                .await?;
            Ok(copy)
        };
        all_or_first_failure(branches.len(), limit, tok, one, |_| {}).await
    }

    /// Applies each branch's net changes in branch order (the later-listed
    /// branch wins a key two branches changed) and reports clashes.
    fn merge(
        &self,
        plan: &Plan,
        branches: &[usize],
        path: &str,
        copies: Vec<Map<String, Value>>,
        shared: &mut Map<String, Value>,
    ) {
        let before = shared.clone();
        let mut owner: std::collections::HashMap<String, usize> = Default::default();
        let mut clashes: Vec<String> = Vec::new();
        for (k, copy) in copies.iter().enumerate() {
            let changes = Changes::between(&before, copy);
            for key in changes.keys() {
                if owner.insert(key.clone(), k).is_some() && !clashes.contains(key) {
                    clashes.push(key.clone());
                }
            }
            changes.apply(shared);
        }
        if !clashes.is_empty() {
            let names: Vec<&str> = branches
                .iter()
                .map(|&b| plan.nodes[b].id.as_str())
                .collect();
            tracing::debug!(
                "parallel {path} (branches {}): keys {} were changed by more than one branch; the later-listed branch won",
                names.join(", "),
                clashes.join(", ")
            );
            self.emit(RunEvent::MergeConflict {
                path: path.to_string(),
                keys: clashes,
            });
        }
    }

    /// Calls `attempt` until it succeeds or `opts.retries` more attempts
    /// have failed, waiting with exponential backoff in between.
    async fn retrying<T, F, Fut>(
        &self,
        opts: &Options,
        path: &str,
        tok: &CancellationToken,
        mut attempt: F,
    ) -> Result<T, Fail>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Fail>>,
    {
        let mut n = 1;
        loop {
            match attempt().await {
                Err(Fail::Error(e)) if n <= opts.retries && !tok.is_cancelled() => {
                    let wait = backoff(opts.backoff_ms.unwrap_or(DEFAULT_BACKOFF_MS), n);
                    self.emit(RunEvent::NodeRetry {
                        path: path.to_string(),
                        attempt: n,
                        error: e,
                        wait_ms: millis(wait),
                    });
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = tok.cancelled() => return Err(Fail::Stopped),
                    }
                    n += 1;
                }
                r => return r,
            }
        }
    }

    /// One node phase on a worker of `w`'s pool, with the entry's timeout;
    /// its progress, logs and chunks become events of `path`.
    async fn call(
        &self,
        w: &WorkerNode,
        job: NodeJob,
        opts: &Options,
        path: &str,
        tok: &CancellationToken,
    ) -> Result<NodeOutcome, Fail> {
        let phase = job.phase;
        let (tx, rx) = match self.events {
            Some(_) => {
                let (tx, rx) = call_events::channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let timeout = opts.timeout_ms.map(Duration::from_millis);
        let call = self.nodes.call_node(w.pool, job, timeout, tok.clone(), tx);
        let outcome = match rx {
            None => call.await,
            Some(mut rx) => {
                tokio::pin!(call);
                loop {
                    tokio::select! {
                        biased;
                        Some(ev) = rx.recv() => self.forward(path, ev),
                        r = &mut call => {
                            while let Some(ev) = rx.try_recv() {
                                self.forward(path, ev);
                            }
                            break r;
                        }
                    }
                }
            }
        };
        match outcome {
            Ok(v) => NodeOutcome::decode(v).map_err(|e| {
                Fail::Error(RunError::new(
                    ErrorKind::ProtocolError,
                    format!(
                        "{path}: node {} ({}) of pool {} answered with a bad outcome: {e}",
                        w.name,
                        phase.as_str(),
                        w.pool_name
                    ),
                ))
            }),
            Err(_) if tok.is_cancelled() => Err(Fail::Stopped),
            Err(f) => Err(Fail::Error(RunError {
                kind: f.kind.into(),
                message: format!("{path}: {}", f.message),
                traceback: f.traceback,
            })),
        }
    }

    fn forward(&self, path: &str, received: Received) {
        let path = path.to_string();
        let ev = match received {
            Received::Event(ev) => ev,
            Received::Gap(n) => {
                return self.emit(RunEvent::Log {
                    path,
                    level: LogLevel::Warning,
                    message: format!("{n} log lines and chunks of this node were dropped: they came faster than the run could take them"),
                })
            }
        };
        self.emit(match ev {
            CallEvent::Progress {
                progress,
                total,
                message,
            } => RunEvent::Progress {
                path,
                progress,
                total,
                message,
            },
            CallEvent::Log { level, message } => RunEvent::Log {
                path,
                level,
                message,
            },
            CallEvent::Chunk(data) => RunEvent::Chunk { path, data },
        });
    }
}

/// What a walk runs under: the parameters in force and, in the runs of a
/// concurrent batch flow, the store they share.
#[derive(Clone, Copy)]
struct Scope<'a> {
    /// PocketFlow's `params`: what the batch flows around the walk set.
    params: &'a Map<String, Value>,
    /// Set in the runs of a concurrent batch flow: the store they share.
    /// The walk's own store is refreshed from it before each node and each
    /// node's changes go into it as made since that refresh (see
    /// [`Changes::apply_since`]), so runs see each other's finished nodes.
    shared_with: Option<&'a Mutex<Map<String, Value>>>,
}

impl<'a> Scope<'a> {
    /// The same parameters on a store of the walk's own (a copy that is
    /// merged back as a whole: a branch, a flow that retries).
    fn alone(self) -> Scope<'a> {
        Scope {
            params: self.params,
            shared_with: None,
        }
    }

    /// Brings `shared` up to date with the store the walk shares, if any.
    fn refresh(self, shared: &mut Map<String, Value>) {
        if let Some(m) = self.shared_with {
            *shared = m.lock().unwrap_or_else(|e| e.into_inner()).clone();
        }
    }

    /// Applies `changes`, in order, to `shared`, which is as the node that
    /// made them found it; with a store the walk shares, their net effect
    /// goes into that store and `shared` is brought up to date with it.
    fn commit<const N: usize>(self, shared: &mut Map<String, Value>, changes: [Changes; N]) {
        let Some(m) = self.shared_with else {
            changes.into_iter().for_each(|c| c.apply(shared));
            return;
        };
        let mut after = shared.clone();
        changes.into_iter().for_each(|c| c.apply(&mut after));
        let mut store = m.lock().unwrap_or_else(|e| e.into_inner());
        Changes::between(shared, &after).apply_since(shared, &mut store);
        *shared = store.clone();
    }

    /// A job of `phase` for `node` with the parameters in force and, when
    /// given, a copy of the store.
    fn job(self, node: &str, phase: NodePhase, store: Option<&Map<String, Value>>) -> NodeJob {
        let mut job = match store {
            Some(s) => NodeJob::with_store(node, phase, s),
            None => NodeJob::new(node, phase),
        };
        if !self.params.is_empty() {
            job.params = Some(self.params.clone());
        }
        job
    }
}

/// Runs `one(i, token)` for every `i` below `total`, at most `limit` at
/// once, calling `finished` on each success as it comes; the values in
/// index order. The first failure cancels the token the others got, and
/// they are awaited (through their kill paths) before this returns it.
async fn all_or_first_failure<T, F, Fut>(
    total: usize,
    limit: Option<usize>,
    tok: &CancellationToken,
    one: F,
    mut finished: impl FnMut(&T),
) -> Result<Vec<T>, Fail>
where
    F: Fn(usize, CancellationToken) -> Fut,
    Fut: Future<Output = Result<T, Fail>>,
{
    let limit = limit.unwrap_or_else(|| total.min(MAX_IN_FLIGHT)).max(1);
    let group = tok.child_token();
    let start = |i: usize| {
        let fut = one(i, group.clone());
        async move { (i, fut.await) }
    };
    let mut values: Vec<Option<T>> = (0..total).map(|_| None).collect();
    let mut running = FuturesUnordered::new();
    let mut next = 0;
    let mut failed = None;
    while next < total && running.len() < limit {
        running.push(start(next));
        next += 1;
    }
    while let Some((i, r)) = running.next().await {
        match r {
            Ok(v) => {
                finished(&v);
                values[i] = Some(v);
            }
            Err(e) => {
                if failed.is_none() {
                    failed = Some(e);
                    group.cancel(); // the rest come back through the kill path
                }
            }
        }
        if failed.is_none() && next < total {
            running.push(start(next));
            next += 1;
        }
    }
    match failed {
        Some(_) if tok.is_cancelled() => Err(Fail::Stopped),
        Some(e) => Err(e),
        None => Ok(values.into_iter().flatten().collect()),
    }
}

/// The wait before retry `n` (from 1): `base`, doubling, capped.
fn backoff(base_ms: u64, n: u32) -> Duration {
    let factor = 1u64.checked_shl(n.saturating_sub(1)).unwrap_or(u64::MAX);
    Duration::from_millis(base_ms.saturating_mul(factor)).min(MAX_BACKOFF)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(100, 1), Duration::from_millis(100));
        assert_eq!(backoff(100, 3), Duration::from_millis(400));
        assert_eq!(backoff(100, 40), MAX_BACKOFF);
        assert_eq!(backoff(0, 5), Duration::ZERO);
    }

    #[tokio::test]
    async fn without_a_limit_at_most_max_in_flight_run_at_once() {
        let now = std::sync::atomic::AtomicUsize::new(0);
        let peak = std::sync::atomic::AtomicUsize::new(0);
        let tok = CancellationToken::new();
        let one = |i: usize, _tok: CancellationToken| {
            let (now, peak) = (&now, &peak);
            async move {
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                tokio::task::yield_now().await;
                now.fetch_sub(1, Ordering::SeqCst);
                Ok::<usize, Fail>(i)
            }
        };
        let total = MAX_IN_FLIGHT * 3;
        let done = all_or_first_failure(total, None, &tok, one, |_| {}).await;
        assert_eq!(done.map(|v| v.len()).ok(), Some(total));
        assert_eq!(peak.load(Ordering::SeqCst), MAX_IN_FLIGHT);
    }
}
