//! The JSON API of `flw serve` (`/v1/...`, described in `openapi.json`):
//! list tools and flows, call a tool (a reply, or `202` and a run), start a
//! flow run, read, list and cancel runs, and the probes.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use flw_protocol::ErrorKind;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::conn::ConnInfo;
use super::extract::{Body, Path, Query};
use super::guard::ClientLimits;
use super::runs::{Kind, Outcome, Run, Runs, Status};
use crate::call::events::{self, Received};
use crate::call::{CallEvent, CallFailure, CallOutcome};
use crate::config::OnDisconnect;
use crate::excerpt;
use crate::graph::run::{run as run_flow, RunOptions};
use crate::graph::{RunError, RunStatus, Stamped};
use crate::metrics::Metrics;
use crate::pool::CallOptions;
use crate::router::Router;

/// What every handler shares.
#[derive(Clone)]
pub struct App {
    /// The pools.
    pub router: Router,
    /// The runs started here.
    pub runs: Arc<Runs>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Requests in flight per client address.
    pub limits: Arc<ClientLimits>,
    /// Cancelled when shutdown begins: no new calls.
    pub stopping: CancellationToken,
    /// What a detached run does when its client disconnects, unless the
    /// request says.
    pub on_disconnect: OnDisconnect,
}

/// A refused request: a JSON body `{"error": {"kind", "message"}}` with
/// an HTTP status.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    kind: &'static str,
    message: String,
    headers: Vec<(header::HeaderName, &'static str)>,
}

impl ApiError {
    /// An error of `kind` (e.g. `invalid_request`) answered with `status`.
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: header::HeaderName, value: &'static str) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"kind": self.kind, "message": self.message}});
        let mut r = (self.status, Json(body)).into_response();
        for (name, value) in self.headers {
            r.headers_mut()
                .insert(name, header::HeaderValue::from_static(value));
        }
        r
    }
}

/// [`ApiError::new`] as a response.
pub fn error_response(
    status: StatusCode,
    kind: &'static str,
    message: impl Into<String>,
) -> Response {
    ApiError::new(status, kind, message).into_response()
}

/// The HTTP status for a failed call of this kind.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArguments => StatusCode::BAD_REQUEST,
        ErrorKind::UnknownTool => StatusCode::NOT_FOUND,
        ErrorKind::Cancelled => StatusCode::CONFLICT,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable | ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn failure_json(f: &CallFailure) -> Value {
    let mut e = json!({"kind": f.kind.as_str(), "message": f.message});
    if let Some(tb) = &f.traceback {
        e["traceback"] = Value::String(tb.clone());
    }
    e
}

fn shutting_down() -> Response {
    error_response(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "flw is shutting down and takes no new calls",
    )
}

/// The request body of a tool call or a flow run as a JSON object (`what`
/// it holds names it in the error); empty means `{}`. Public for the fuzz
/// target.
pub fn body_object(body: &[u8], what: &str) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!(
                "the request body must be a JSON object of {what}, not {}",
                flw_protocol::outcome::kind_of(&other)
            ),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("the request body is not JSON: {e}"),
        )),
    }
}

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// `GET /readyz`: every pool has a worker up and shutdown has not begun.
pub async fn readyz(State(app): State<App>) -> Response {
    let pools: Map<String, Value> = app
        .router
        .pools()
        .iter()
        .map(|p| {
            let state = match p.tools_now() {
                Some((_, true)) => "ready",
                _ => "starting",
            };
            (p.config().name.clone(), Value::from(state))
        })
        .collect();
    let status = if app.stopping.is_cancelled() {
        "stopping"
    } else if pools.values().all(|s| s == "ready") {
        "ready"
    } else {
        "starting"
    };
    let code = if status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(json!({"status": status, "pools": pools}))).into_response()
}

/// `GET /v1/pools`: each pool's workers (live, busy, idle, starting),
/// calls, limits and how its workers start.
pub async fn list_pools(State(app): State<App>) -> Response {
    let pools: Vec<Value> = app
        .router
        .pools()
        .iter()
        .map(|p| {
            let cfg = p.config();
            let c = p.census();
            json!({
                "name": cfg.name,
                "mode": cfg.mode.as_str(),
                "generation": p.generation(),
                "workers": {
                    "live": c.live,
                    "busy": c.busy,
                    "idle": c.live - c.busy,
                    "starting": c.starting,
                    "min": cfg.min_workers,
                    "max": cfg.max_workers,
                },
                "in_flight": p.in_flight(),
                "queued": p.queued(),
                "restarts": p.restarts(),
                "spawns": p.spawns(),
                "forks": p.forks(),
            })
        })
        .collect();
    Json(json!({"pools": pools})).into_response()
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<App>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

/// `GET /openapi.json`.
pub async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}

/// `GET /v1/tools`: every pool's tools (flows are at `/v1/flows`).
pub async fn list_tools(State(app): State<App>) -> Response {
    let mut tools = Vec::new();
    for pool in app.router.pools() {
        match pool.manifest().await {
            Ok(m) => tools.extend(m.tools().iter().map(|t| {
                let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
                v["pool"] = Value::from(pool.config().name.as_str());
                v
            })),
            Err(e) => {
                return error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    e.to_string(),
                )
            }
        }
    }
    Json(json!({"tools": tools})).into_response()
}

/// `GET /v1/flows`: every flow, with the input it takes.
pub async fn list_flows(State(app): State<App>) -> Response {
    let catalog = match app.router.catalog().await {
        Ok(c) => c,
        Err(e) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        }
    };
    let flows: Vec<Value> = catalog
        .flows
        .values()
        .map(|(doc, pool)| {
            let spec = doc.tool_spec();
            json!({
                "name": spec.name,
                "description": spec.description,
                "input_schema": spec.input_schema,
                "pool": pool.map(|i| catalog.pools[i].0.clone()),
            })
        })
        .collect();
    Json(json!({"flows": flows})).into_response()
}

/// Query parameters of `POST /v1/tools/{name}/call`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallQuery {
    /// Answer `202` with a run at once instead of waiting.
    #[serde(default, rename = "async")]
    detach: bool,
    /// The call's deadline, e.g. `30s` (overrides the pool's).
    timeout: Option<String>,
    /// What a detached run does when this client disconnects.
    on_disconnect: Option<OnDisconnect>,
}

/// A duration from the query (`name=30s`), if given.
fn query_duration(name: &str, value: Option<&str>) -> Result<Option<Duration>, ApiError> {
    value
        .map(crate::config::parse_duration)
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{name}: {}", excerpt::display(&e, 3 * excerpt::CHARS)),
            )
        })
}

/// Whether the client asked for `202` with `Prefer: respond-async`.
fn prefers_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
}

/// `POST /v1/tools/{name}/call`: the body is the arguments.
pub async fn call_tool(
    State(app): State<App>,
    Path(name): Path,
    Query(q): Query<CallQuery>,
    Extension(conn): Extension<ConnInfo>,
    headers: HeaderMap,
    Body(body): Body,
) -> Response {
    if app.stopping.is_cancelled() {
        return shutting_down();
    }
    let args = match body_object(&body, "the tool's arguments") {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let timeout = match query_duration("timeout", q.timeout.as_deref()) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    if !app.router.has_tool_now(&name) {
        // No run for a tool that does not exist, not even with `202`.
        if let Err(f) = app.router.pool_of(&name).await {
            let is_flow = f.kind == ErrorKind::UnknownTool
                && app
                    .router
                    .catalog()
                    .await
                    .is_ok_and(|c| c.flows.contains_key(&name));
            if is_flow {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "unknown_tool",
                    format!("{name:?} is a flow: start it with POST /v1/flows/{name}/runs"),
                );
            }
            return (status_of(f.kind), Json(json!({"error": failure_json(&f)}))).into_response();
        }
    }
    let detached = q.detach || prefers_async(&headers);
    let permit = match app.limits.acquire(conn.peer.ip()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let run = app.runs.create(Kind::Tool, &name, conn.peer.ip(), detached);
    let (events, forward) = if detached {
        let (tx, rx) = events::channel();
        (
            Some(tx),
            Some(tokio::spawn(forward_call_events(rx, run.clone()))),
        )
    } else {
        (None, None)
    };
    let task = {
        let (router, runs, run) = (app.router.clone(), app.runs.clone(), run.clone());
        spawn_run(app.runs.clone(), run.clone(), async move {
            crate::fault::panic_if_on(crate::fault::RUN_TASK_PANIC);
            let opts = CallOptions {
                timeout,
                cancel: run.cancel.clone(),
                events,
            };
            let outcome = router.call(&run.name, args, opts).await;
            if let Some(f) = forward {
                let _ = f.await;
            }
            runs.end(&run, tool_outcome(&outcome));
            drop(permit);
            outcome
        })
    };
    if detached {
        let on_disconnect = q.on_disconnect.unwrap_or(app.on_disconnect);
        cancel_with_client(&run, &conn, on_disconnect);
        return accepted(&run);
    }
    // A client that goes away drops this future: the guard cancels the call.
    let guard = run.cancel.clone().drop_guard();
    let outcome = match task.await {
        Ok(Ok(o)) => o,
        Ok(Err(f)) => Err(f),
        Err(e) => Err(CallFailure::new(
            ErrorKind::Internal,
            format!("the call's task failed: {e}"),
        )),
    };
    guard.disarm();
    match outcome {
        Ok(value) => {
            Json(json!({"id": run.id, "status": "succeeded", "result": value})).into_response()
        }
        Err(f) => {
            let status = if f.kind == ErrorKind::Cancelled {
                "cancelled"
            } else {
                "failed"
            };
            let mut r = (
                status_of(f.kind),
                Json(json!({"id": run.id, "status": status, "error": failure_json(&f)})),
            )
                .into_response();
            if f.kind == ErrorKind::Overloaded {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            r
        }
    }
}

fn tool_outcome(outcome: &CallOutcome) -> Outcome {
    match outcome {
        Ok(v) => Outcome {
            status: Status::Succeeded,
            value: Some(v.clone()),
            error: None,
        },
        Err(f) => Outcome {
            status: if f.kind == ErrorKind::Cancelled {
                Status::Cancelled
            } else {
                Status::Failed
            },
            value: None,
            error: Some(RunError::from(f)),
        },
    }
}

/// Spawns the task of `run`. A panic in it still ends the run: `failed`,
/// with kind `internal` (and the run's token is cancelled, so that what
/// the task started stops); the task's result is then that failure.
fn spawn_run<T: Send + 'static>(
    runs: Arc<Runs>,
    run: Arc<Run>,
    task: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<Result<T, CallFailure>> {
    use futures::FutureExt;
    tokio::spawn(async move {
        let panic = match std::panic::AssertUnwindSafe(task).catch_unwind().await {
            Ok(value) => return Ok(value),
            Err(panic) => panic,
        };
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        tracing::error!(run = %run.id, "the task of run {} ({}) panicked: {what}", run.id, run.name);
        run.cancel.cancel();
        let failure = CallFailure::new(
            ErrorKind::Internal,
            format!(
                "flw failed inside while running {} (a bug in flw; please report it): {what}",
                run.name
            ),
        );
        runs.end(
            &run,
            Outcome {
                status: Status::Failed,
                value: None,
                error: Some(RunError::from(&failure)),
            },
        );
        Err(failure)
    })
}

/// A tool's progress, logs and chunks as run events (a `gap` event if
/// some were dropped on the way, as the event stream says of events that
/// fell out of the run's buffer).
async fn forward_call_events(mut rx: events::EventRx, run: Arc<Run>) {
    while let Some(received) = rx.recv().await {
        let ev = match received {
            Received::Event(ev) => ev,
            Received::Gap(n) => {
                run.push("gap", json!({"missed": n}).to_string());
                continue;
            }
        };
        let (name, data) = match ev {
            CallEvent::Progress {
                progress,
                total,
                message,
            } => (
                "progress",
                json!({"progress": progress, "total": total, "message": message}),
            ),
            CallEvent::Log { level, message } => {
                ("log", json!({"level": level.as_str(), "message": message}))
            }
            CallEvent::Chunk(value) => ("chunk", json!({"chunk": value})),
        };
        run.push(name, data.to_string());
    }
}

/// A flow's events as run events.
async fn forward_flow_events(mut rx: mpsc::UnboundedReceiver<Stamped>, run: Arc<Run>) {
    while let Some(ev) = rx.recv().await {
        run.push(ev.event.name(), ev.to_json());
    }
}

/// Cancels a detached run when its client's connection closes, if asked.
fn cancel_with_client(run: &Arc<Run>, conn: &ConnInfo, on_disconnect: OnDisconnect) {
    if on_disconnect != OnDisconnect::Cancel {
        return;
    }
    let (run, closed) = (run.clone(), conn.closed.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = closed.cancelled() => run.cancel.cancel(),
            _ = run.finished() => {}
        }
    });
}

/// `202 Accepted` with the run and where to find it.
fn accepted(run: &Run) -> Response {
    let mut r = (StatusCode::ACCEPTED, Json(run.to_json())).into_response();
    if let Ok(v) = header::HeaderValue::from_str(&format!("/v1/runs/{}", run.id)) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Query parameters of `POST /v1/flows/{name}/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowQuery {
    /// Wait for the run to end and answer with it (instead of `202`).
    #[serde(default)]
    wait: bool,
    /// Overrides the flow's `max_steps`.
    max_steps: Option<u64>,
    /// Overrides the flow's deadline, e.g. `5m`.
    deadline: Option<String>,
    /// What the run does when this client disconnects.
    on_disconnect: Option<OnDisconnect>,
}

/// `POST /v1/flows/{name}/runs`: the body is the initial shared store.
pub async fn start_flow(
    State(app): State<App>,
    Path(name): Path,
    Query(q): Query<FlowQuery>,
    Extension(conn): Extension<ConnInfo>,
    Body(body): Body,
) -> Response {
    if app.stopping.is_cancelled() {
        return shutting_down();
    }
    let shared = match body_object(&body, "the initial shared store") {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let deadline = match query_duration("deadline", q.deadline.as_deref()) {
        Ok(d) => d,
        Err(e) => return e.into_response(),
    };
    let catalog = match app.router.catalog().await {
        Ok(c) => c,
        Err(e) => {
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                e.to_string(),
            )
        }
    };
    if !catalog.flows.contains_key(&name) {
        let mut names: Vec<&String> = catalog.flows.keys().collect();
        names.sort();
        let names: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
        return error_response(
            StatusCode::NOT_FOUND,
            "unknown_flow",
            format!(
                "no flow named {}; the flows are: {}",
                excerpt::quote(&name),
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ),
        );
    }
    let plan = match catalog.plan(&name) {
        Ok(p) => p,
        Err(e) => return error_response(StatusCode::BAD_REQUEST, "invalid_graph", e),
    };
    let permit = match app.limits.acquire(conn.peer.ip()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let detached = !q.wait;
    let run = app.runs.create(Kind::Flow, &name, conn.peer.ip(), true);
    let (tx, rx) = mpsc::unbounded_channel();
    let forward = tokio::spawn(forward_flow_events(rx, run.clone()));
    {
        let (router, runs, run, metrics) = (
            app.router.clone(),
            app.runs.clone(),
            run.clone(),
            app.metrics.clone(),
        );
        spawn_run(app.runs.clone(), run.clone(), async move {
            crate::fault::panic_if_on(crate::fault::RUN_TASK_PANIC);
            let opts = RunOptions {
                cancel: run.cancel.clone(),
                events: Some(tx),
                max_steps: q.max_steps,
                deadline,
            };
            let result = run_flow(&router, plan, shared, opts).await;
            let _ = forward.await;
            metrics.run(&run.name, result.status);
            let status = match result.status {
                RunStatus::Succeeded => Status::Succeeded,
                RunStatus::Failed => Status::Failed,
                RunStatus::Cancelled => Status::Cancelled,
            };
            runs.end(
                &run,
                Outcome {
                    status,
                    value: Some(Value::Object(result.shared)),
                    error: result.error,
                },
            );
            drop(permit);
        });
    }
    if detached {
        cancel_with_client(&run, &conn, q.on_disconnect.unwrap_or(app.on_disconnect));
        return accepted(&run);
    }
    let guard = run.cancel.clone().drop_guard();
    run.finished().await;
    guard.disarm();
    let body = run.to_json();
    let outcome = run.outcome();
    let timed_out = outcome
        .as_ref()
        .and_then(|o| o.error.as_ref())
        .is_some_and(|e| e.is(ErrorKind::Timeout));
    let code = match outcome.map(|o| o.status) {
        Some(Status::Succeeded) | None => StatusCode::OK,
        Some(Status::Cancelled) => StatusCode::CONFLICT,
        Some(_) if timed_out => StatusCode::GATEWAY_TIMEOUT,
        Some(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (code, Json(body)).into_response()
}

/// Query parameters of `GET /v1/runs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only runs with this status.
    status: Option<Status>,
}

/// `GET /v1/runs`.
pub async fn list_runs(State(app): State<App>, Query(q): Query<ListQuery>) -> Response {
    let runs: Vec<Value> = app
        .runs
        .list()
        .iter()
        .map(|r| r.to_json())
        .filter(|r| q.status.is_none_or(|s| r["status"] == json!(s)))
        .collect();
    Json(json!({"runs": runs})).into_response()
}

/// The answer for a run id that is not (or no longer) known.
pub(super) fn no_run(id: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "unknown_run",
        format!(
            "no run {} (finished runs are kept for a while, then forgotten)",
            excerpt::quote(id)
        ),
    )
}

/// `GET /v1/runs/{id}`.
pub async fn get_run(State(app): State<App>, Path(id): Path) -> Response {
    match app.runs.get(&id) {
        Some(run) => Json(run.to_json()).into_response(),
        None => no_run(&id),
    }
}

/// `DELETE /v1/runs/{id}`: cancels the run through the kill path and
/// answers once it has ended, with how it ended.
pub async fn cancel_run(State(app): State<App>, Path(id): Path) -> Response {
    let Some(run) = app.runs.get(&id) else {
        return no_run(&id);
    };
    run.cancel.cancel();
    // The kill path is bounded (cancel grace, then SIGTERM, kill grace, SIGKILL).
    let _ = tokio::time::timeout(Duration::from_secs(60), run.finished()).await;
    Json(run.to_json()).into_response()
}
