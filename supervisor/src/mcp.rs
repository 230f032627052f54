//! The pools' tools and flows as an MCP server, built on rmcp: on stdio
//! for `flw mcp`, and behind rmcp's Streamable HTTP transport for
//! `flw serve` (one server per session, or per request without one).
//!
//! `initialize` is answered at once (workers start in the background);
//! `tools/list` answers from the pools' manifest caches while their first
//! workers start (and sends `notifications/tools/list_changed` if the live
//! tools turn out different), else waits for the first worker of each pool. A `progressToken`
//! turns worker progress into `notifications/progress`, and
//! `notifications/cancelled` takes the kill path of [`crate::pool`].
//!
//! Reloads reach the client too: a new generation whose tools differ sends
//! `notifications/tools/list_changed`, and each reload, failed or not, is a
//! `notifications/message` log line (at or above the level the client set
//! with `logging/setLevel`; `info` until it does). A tool's own log lines
//! go the same way, with the tool's name as the logger; a request without
//! a session gets them only at the level its `_meta` names. Without a
//! session, `subscriptions/listen` carries `tools/list_changed`.

use std::sync::Arc;

use flw_protocol::ErrorKind;
#[allow(deprecated)] // see client_log
use rmcp::model::SetLevelRequestParams;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities,
    ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;

mod client_log;
mod flows;
mod id_scan;
mod in_flight;
pub mod incoming;
mod stdio;
mod stdio_lines;

pub use stdio::StdioSession;

use crate::call::events::{self, Received};
use crate::call::{CallEvent, CallFailure};
use crate::pool::{CallOptions, PoolEvent};
use crate::router::Router;
use client_log::{ClientLog, Severity};

/// Longest JSON-RPC line accepted from the MCP client on stdio; a longer
/// one is answered with a parse error.
pub const MAX_CLIENT_LINE_BYTES: usize = 16 * 1024 * 1024;

/// The MCP server over a [`Router`].
#[derive(Clone)]
pub struct McpServer {
    router: Router,
    /// A check of cached tools against the live ones was started.
    revalidating: Arc<std::sync::atomic::AtomicBool>,
    /// The least severe log message the client wants (`logging/setLevel`).
    log: ClientLog,
    /// The task that forwards reloads to the client was started.
    forwarding: Arc<std::sync::atomic::AtomicBool>,
    /// Cancelled when the last clone of this server (the session) is gone,
    /// which ends the session's forwarding task.
    ended: tokio_util::sync::CancellationToken,
    _end_on_drop: Arc<tokio_util::sync::DropGuard>,
}

impl McpServer {
    /// Serves `router` to an MCP client.
    pub fn new(router: Router) -> McpServer {
        let ended = tokio_util::sync::CancellationToken::new();
        McpServer {
            router,
            revalidating: Default::default(),
            log: ClientLog::default(),
            forwarding: Default::default(),
            _end_on_drop: Arc::new(ended.clone().drop_guard()),
            ended,
        }
    }

    /// Tells the client about reloads until the session ends (once per
    /// session, however often the client says it is initialized).
    fn forward_reloads(&self, peer: rmcp::Peer<RoleServer>) {
        if self
            .forwarding
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let mut events = self.router.events();
        let log = self.log.clone();
        let ended = self.ended.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    r = events.recv() => r,
                    _ = ended.cancelled() => return,
                };
                let event = match received {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        // Reloads were missed: the tools may have changed.
                        if peer.notify_tool_list_changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(_) => return,
                };
                let (severity, text, changed) = match event {
                    PoolEvent::Reloaded {
                        pool,
                        generation,
                        tools_changed,
                        took,
                    } => (
                        Severity::Info,
                        format!(
                            "pool {pool} reloaded: generation {generation} serves (started in {} ms){}",
                            took.as_millis(),
                            if tools_changed { "; its tools changed" } else { "" }
                        ),
                        tools_changed,
                    ),
                    PoolEvent::Recovered { pool } => (
                        Severity::Info,
                        format!("pool {pool} started: its workers are up after failing to start"),
                        true,
                    ),
                    PoolEvent::ReloadFailed { error, .. } => (Severity::Error, error, false),
                };
                if changed && peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
                if log.send(&peer, severity, text).await.is_err() {
                    return;
                }
            }
        });
    }

    /// Once the workers are up, tells the client if the tools it was given
    /// from the cache differ from the live ones.
    fn revalidate(&self, given: Vec<flw_protocol::ToolSpec>, peer: rmcp::Peer<RoleServer>) {
        if self
            .revalidating
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let router = self.router.clone();
        tokio::spawn(async move {
            let live = router.tools().await;
            if live.as_ref().ok() != Some(&given) {
                tracing::info!("the tools differ from the cached manifest; telling the client");
                let _ = peer.notify_tool_list_changed().await;
            }
        });
    }

    /// Serves on this process's stdin and stdout, in a task of its own
    /// (see [`StdioSession`]).
    pub fn serve_stdio(self) -> StdioSession {
        StdioSession::start(self, MAX_CLIENT_LINE_BYTES)
    }
}

/// Where one call's events go: progress (when the client gave a token)
/// and log lines (at the level the client wants).
struct EventSink<'a> {
    log: &'a ClientLog,
    peer: &'a rmcp::Peer<RoleServer>,
    tool: &'a str,
    progress: Option<rmcp::model::ProgressToken>,
    /// MCP requires progress to increase: values that do not are dropped.
    last: f64,
    /// The total of the tool's last progress report, which chunks repeat.
    total: Option<f64>,
}

/// The progress value of a chunk's notification: the least value above the
/// last one sent (0 for the first), so chunks keep progress increasing
/// without passing any value the tool itself reports next.
fn chunk_progress(last: f64) -> f64 {
    if last.is_finite() {
        // `f64::next_up` for a value >= 0 (that method needs Rust 1.86).
        let base = if last > 0.0 { last } else { 0.0 }; // not -0.0
        f64::from_bits(base.to_bits() + 1)
    } else {
        0.0
    }
}

impl EventSink<'_> {
    /// Tells the client, as a warning log line, that `n` log lines and
    /// chunks of this call were dropped because it read too slowly.
    async fn gap(&mut self, n: u64) {
        let text = format!(
            "flw dropped {n} of the log lines and chunks of this call of {}: the client read them more slowly than the tool sent them",
            self.tool
        );
        let _ = self.log.send(self.peer, Severity::Warning, text).await;
    }

    async fn send(&mut self, ev: CallEvent) {
        // A client that left is the cancel path's business, not this one's.
        match ev {
            CallEvent::Progress {
                progress,
                total,
                message,
            } => {
                let Some(token) = &self.progress else { return };
                let value = progress.as_f64().unwrap_or(0.0);
                if value <= self.last {
                    return;
                }
                self.last = value;
                self.total = total.and_then(|t| t.as_f64());
                let mut p = ProgressNotificationParam::new(token.clone(), value);
                p.total = self.total;
                p.message = message;
                let _ = self.peer.notify_progress(p).await;
            }
            CallEvent::Log { level, message } => {
                let _ = self
                    .log
                    .tool_line(self.peer, level, self.tool, message)
                    .await;
            }
            // MCP has no partial results: a chunk (a model's token, say)
            // goes out as a progress notification whose message is its
            // text, so a host shows the output as it comes.
            CallEvent::Chunk(data) => {
                let Some(token) = &self.progress else { return };
                self.last = chunk_progress(self.last);
                let mut p = ProgressNotificationParam::new(token.clone(), self.last);
                p.total = self.total;
                p.message = Some(match data {
                    Value::String(s) => s,
                    other => other.to_string(),
                });
                let _ = self.peer.notify_progress(p).await;
            }
        }
    }
}

/// The MCP form of a tool of the manifest.
fn to_mcp_tool(t: &flw_protocol::ToolSpec) -> Tool {
    let mut tool = Tool::new(
        t.name.clone(),
        t.description.clone(),
        Arc::new(t.input_schema.clone()),
    );
    tool.output_schema = t.output_schema.clone().map(Arc::new);
    tool
}

/// The MCP result for a call's outcome: text content, plus structured
/// content for object results; a failure is an `isError` result with its
/// message (and the last lines of a traceback).
pub fn to_mcp_result(outcome: Result<Value, CallFailure>) -> CallToolResult {
    match outcome {
        Ok(value) => {
            let text = match &value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            if value.is_object() {
                r.structured_content = Some(value);
            }
            r
        }
        Err(f) => {
            let mut text = format!("{}: {}", f.kind, f.message);
            if let Some(tb) = &f.traceback {
                let tail: Vec<&str> = tb.lines().rev().take(6).collect();
                text.push_str("\n\n");
                text.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            CallToolResult::error(vec![ContentBlock::text(text)])
        }
    }
}

impl ServerHandler for McpServer {
    #[allow(deprecated)] // logging: see client_log
    fn get_info(&self) -> ServerConfig {
        // Prompts, resources and completions: flw has none, and says so
        // with empty lists.
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .enable_logging()
                .enable_prompts()
                .enable_resources()
                .enable_completions()
                .build(),
        )
        .with_server_info(Implementation::new("flw", env!("CARGO_PKG_VERSION")))
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.forward_reloads(context.peer);
    }

    #[allow(deprecated)] // see client_log
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.log.set(request);
        Ok(())
    }

    /// `subscriptions/listen` (2026-07-28): `tools/list_changed` only.
    fn accepted_subscription_filter(
        &self,
        _requested: &rmcp::model::SubscriptionFilter,
    ) -> Option<rmcp::model::SubscriptionFilter> {
        Some(
            rmcp::model::SubscriptionFilter::builder()
                .tools_list_changed()
                .build(),
        )
    }

    async fn listen(&self, context: rmcp::service::SubscriptionContext) -> Result<(), McpError> {
        let mut events = self.router.events();
        loop {
            let changed = tokio::select! {
                _ = context.cancelled() => return Ok(()),
                ev = events.recv() => match ev {
                    Ok(PoolEvent::Reloaded { tools_changed, .. }) => tools_changed,
                    Ok(PoolEvent::Recovered { .. }) => true,
                    Ok(PoolEvent::ReloadFailed { .. }) => false,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                    Err(_) => return Ok(()),
                },
            };
            if changed && context.sink().notify_tool_list_changed().await.is_err() {
                return Ok(());
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.router.cache_read().await;
        if let Some((tools, live)) = self.router.tools_now() {
            if !live {
                let listed = tools.iter().map(to_mcp_tool).collect();
                self.revalidate(tools, context.peer);
                return Ok(ListToolsResult::with_all_items(listed));
            }
        }
        let tools = self
            .router
            .tools()
            .await
            .map_err(|e| McpError::internal_error(e.to_string(), None))?;
        Ok(ListToolsResult::with_all_items(
            tools.iter().map(to_mcp_tool).collect(),
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let args = request.arguments.unwrap_or_default();
        if !self.router.has_tool_now(&request.name) {
            let progress = context
                .meta
                .get_progress_token()
                .map(|t| (t, context.peer.clone()));
            if let Some(r) = flows::call_flow(
                &self.router,
                &request.name,
                args.clone(),
                context.ct.clone(),
                progress,
            )
            .await
            {
                return Ok(r.into());
            }
        }
        // The call's progress and log lines go to the client as they come,
        // before its result; they are read here, beside the call, with no
        // task of their own.
        let (tx, mut rx) = events::channel();
        let request_log = context
            .meta
            .protocol_version()
            .map(|_| ClientLog::for_request(&context.meta));
        let mut sink = EventSink {
            log: request_log.as_ref().unwrap_or(&self.log),
            peer: &context.peer,
            tool: &request.name,
            progress: context.meta.get_progress_token(),
            last: f64::NEG_INFINITY,
            total: None,
        };
        let call = self.router.call(
            &request.name,
            args,
            CallOptions {
                timeout: None,
                cancel: context.ct.clone(),
                events: Some(tx),
            },
        );
        let mut call = std::pin::pin!(call);
        // Both go on together: a slow client or a chatty tool must not keep
        // the call from seeing its cancel or its deadline.
        // The stream holds a bounded backlog (progress coalesced, the
        // oldest log lines and chunks dropped with a gap) for a client that
        // reads slowly.
        let forward = async {
            while let Some(received) = rx.recv().await {
                match received {
                    Received::Event(ev) => sink.send(ev).await,
                    Received::Gap(n) => sink.gap(n).await,
                }
            }
        };
        tokio::pin!(forward);
        let mut forwarded = false;
        let outcome = tokio::select! {
            outcome = &mut call => outcome,
            () = &mut forward => {
                forwarded = true;
                call.await
            }
        };
        if !forwarded {
            // The call is over, so the channel closes once its last events
            // are out: they reach the client before the result.
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), forward).await;
        }
        match outcome {
            Err(f) if f.kind == ErrorKind::UnknownTool => {
                Err(McpError::invalid_params(f.message, None))
            }
            other => Ok(to_mcp_result(other).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::chunk_progress;

    #[test]
    fn chunks_step_progress_by_the_least_amount() {
        assert_eq!(chunk_progress(f64::NEG_INFINITY), 0.0);
        let after_zero = chunk_progress(0.0);
        assert!(after_zero > 0.0 && after_zero < 1e-300);
        let after_three = chunk_progress(3.0);
        assert!(after_three > 3.0 && after_three < 3.000_001);
        // The tool's next report (4 of 10, say) is still above it.
        assert!(4.0 > chunk_progress(after_three));
    }
}
