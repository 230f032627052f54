//! Running a [`Plan`]: the walk from node to node, retries and fallbacks,
//! batch items and parallel branches spread across the pools' workers, the
//! shared store, and cancellation of everything in flight.
//!
//! **Invariant:** a run never leaves a call behind. Every node call is made
//! with a cancellation token of the run's tree, and when a run ends early
//! (cancel, deadline, a failed item or branch) the runner cancels the token
//! and waits for each call to come back through its pool's kill path before
//! it returns.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flw_protocol::{LogLevel, NodeError, NodeKind, NodePhase};
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::document::{Options, DEFAULT_BACKOFF_MS};
use super::events::{RunError, RunEvent, RunStatus, Stamped};
use super::outcome::{Changes, NodeOutcome};
use super::plan::{Plan, Step, WorkerNode};
use crate::call::events::{self as call_events, Received};
use crate::call::{CallEvent, NodeJob};
use crate::pool::CallOptions;
use crate::router::Router;

/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

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
    router: &Router,
    plan: Arc<Plan>,
    mut shared: Map<String, Value>,
    opts: RunOptions,
) -> RunResult {
    let stop = opts.cancel.child_token();
    let runner = Runner {
        router,
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
        let walk = runner.run_flow(&plan, &plan.name, &mut shared, &stop);
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
                "timeout",
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
                "cancelled",
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
    router: &'r Router,
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

    /// Walks `plan` from its start; returns the last node's action.
    fn run_flow<'a>(
        &'a self,
        plan: &'a Plan,
        path: &'a str,
        shared: &'a mut Map<String, Value>,
        tok: &'a CancellationToken,
    ) -> BoxFuture<'a, Result<String, Fail>> {
        Box::pin(async move {
            let mut at = plan.start;
            loop {
                let action = self.visit(plan, at, path, shared, tok).await?;
                let node = &plan.nodes[at];
                match plan.next(at, &action) {
                    Some(next) => at = next,
                    None => {
                        if !node.next.is_empty() {
                            let known: Vec<&str> =
                                node.next.iter().map(|(a, _)| a.as_str()).collect();
                            let message = format!(
                                "node {path}/{} returned action {action:?}, which has no edge (its edges: {}); the flow ends here",
                                node.id,
                                known.join(", ")
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
        })
    }

    /// One visit of entry `idx` of `plan` (whose path is `flow_path`).
    fn visit<'a>(
        &'a self,
        plan: &'a Plan,
        idx: usize,
        flow_path: &'a str,
        shared: &'a mut Map<String, Value>,
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
                    "max_steps",
                    format!(
                        "the run made max_steps = {} node visits and would go on with {path}; it looks like a loop that does not end (raise max_steps in the flow, or --max-steps, if it is meant to run that long)",
                        self.max_steps
                    ),
                )));
            }
            let kind = match &node.step {
                Step::Worker(w) => w.kind.as_str(),
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
                Step::Worker(w) if w.kind == NodeKind::Node => {
                    self.worker_node(w, opts, &path, shared, tok).await
                }
                Step::Worker(w) => self.batch_node(w, opts, &path, shared, tok).await,
                Step::Flow(sub) if opts.retries == 0 => {
                    // In place, so a cancel keeps what its finished nodes did.
                    self.run_flow(sub, &path, shared, tok).await
                }
                Step::Flow(sub) => {
                    let before = &*shared;
                    let (action, after) = self
                        .retrying(opts, &path, tok, || async {
                            let mut copy = before.clone();
                            let action = self.run_flow(sub, &path, &mut copy, tok).await?;
                            Ok((action, copy))
                        })
                        .await?;
                    *shared = after;
                    Ok(action)
                }
                Step::Parallel(branches) => {
                    let before = &*shared;
                    let copies = self
                        .retrying(opts, &path, tok, || {
                            self.parallel(plan, branches, opts.limit, flow_path, before, tok)
                        })
                        .await?;
                    self.merge(plan, branches, &path, copies, shared);
                    Ok("default".to_string())
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
        tok: &CancellationToken,
    ) -> Result<String, Fail> {
        let store = &*shared;
        let tried = self
            .retrying(opts, path, tok, || {
                let job = NodeJob::with_store(&w.name, NodePhase::Run, store);
                self.call(w, job, opts, path, tok)
            })
            .await;
        let outcome = match tried {
            Err(Fail::Error(e)) if w.fallback && !tok.is_cancelled() => {
                self.emit(RunEvent::NodeFallback {
                    path: path.to_string(),
                    error: e.clone(),
                });
                let mut job = NodeJob::with_store(&w.name, NodePhase::Fallback, shared);
                job.error = Some(NodeError {
                    kind: e.kind,
                    message: e.message,
                });
                self.call(w, job, opts, path, tok).await?
            }
            other => other?,
        };
        outcome.changes.apply(shared);
        Ok(outcome.action.unwrap_or_else(|| "default".into()))
    }

    /// A batch node: `prep`, one `exec` per item across the pool, `post`.
    async fn batch_node(
        &self,
        w: &WorkerNode,
        opts: &Options,
        path: &str,
        shared: &mut Map<String, Value>,
        tok: &CancellationToken,
    ) -> Result<String, Fail> {
        let store = &*shared;
        let prep = self
            .retrying(opts, path, tok, || {
                let job = NodeJob::with_store(&w.name, NodePhase::Prep, store);
                self.call(w, job, opts, path, tok)
            })
            .await?;
        let items = match &prep.value {
            Value::Array(items) => items.clone(),
            other => {
                return Err(Fail::Error(RunError::new(
                    "tool_error",
                    format!(
                        "{path}: prep of batch node {} returned {}, not a list of items",
                        w.name,
                        serde_json::to_string(other).unwrap_or_default()
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
        let results = self.exec_items(w, opts, path, &items, tok).await?;
        let post_store = store.as_ref().unwrap_or(shared);
        let post = self
            .retrying(opts, path, tok, || {
                let mut job = NodeJob::with_store(&w.name, NodePhase::Post, post_store);
                job.prep = Some(prep.value.clone());
                job.results = Some(results.clone());
                self.call(w, job, opts, path, tok)
            })
            .await?;
        prep.changes.apply(shared);
        post.changes.apply(shared);
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
        tok: &CancellationToken,
    ) -> Result<Vec<Value>, Fail> {
        let total = items.len();
        let mut done = 0;
        let one = |i: usize, items_tok: CancellationToken| async move {
            let item_path = format!("{path}[{i}]");
            let began = Instant::now();
            let outcome = self
                .retrying(opts, &item_path, &items_tok, || {
                    let mut job = NodeJob::new(&w.name, NodePhase::Exec);
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
        branches: &[usize],
        limit: Option<usize>,
        flow_path: &str,
        before: &Map<String, Value>,
        tok: &CancellationToken,
    ) -> Result<Vec<Map<String, Value>>, Fail> {
        let one = |k: usize, branch_tok: CancellationToken| async move {
            let mut copy = before.clone();
            self.visit(plan, branches[k], flow_path, &mut copy, &branch_tok)
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
        let call_opts = CallOptions {
            timeout: opts.timeout_ms.map(Duration::from_millis),
            cancel: tok.clone(),
            events: tx,
        };
        let call = self.router.call_node(w.pool, job, call_opts);
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
                    "protocol_error",
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
                kind: f.kind.as_str().to_string(),
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
    let limit = limit.unwrap_or(total).max(1);
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
}
