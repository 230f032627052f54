//! Flows as MCP tools (listed through [`crate::graph::Document::tool_spec`]):
//! a call runs the flow, and its node events become
//! `notifications/progress` when the client asked for them (a bounded
//! backlog of them for a client that reads slowly).

use std::sync::Arc;

use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam, ProgressToken};
use rmcp::{Peer, RoleServer};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::call::events::{self, Received};
use crate::graph::run::{run, RunOptions};
use crate::graph::{RunEvent, RunStatus, Stamped};
use crate::router::Router;

/// Runs flow `name` for an MCP `tools/call`; `None` when there is no such
/// flow. Cancelling `cancel` cancels the run.
pub async fn call_flow(
    router: &Router,
    name: &str,
    shared: Map<String, Value>,
    cancel: CancellationToken,
    progress: Option<(ProgressToken, Peer<RoleServer>)>,
) -> Option<CallToolResult> {
    let catalog = router.catalog().await.ok()?;
    if !catalog.flows.contains_key(name) {
        return None;
    }
    let plan = match catalog.plan(name) {
        Ok(plan) => plan,
        Err(e) => {
            return Some(CallToolResult::error(vec![ContentBlock::text(format!(
                "invalid_graph: {e}"
            ))]))
        }
    };
    let (events, forward) = match progress {
        Some((token, peer)) => {
            let (tx, rx) = mpsc::unbounded_channel();
            (
                Some(tx),
                Some(tokio::spawn(forward_progress(rx, token, peer))),
            )
        }
        None => (None, None),
    };
    let opts = RunOptions {
        cancel,
        events,
        max_steps: None,
        deadline: None,
    };
    let result = run(router, Arc::clone(&plan), shared, opts).await;
    if let Some(m) = router.metrics() {
        m.run(name, result.status);
    }
    if let Some(task) = forward {
        let _ = task.await; // progress before the result
    }
    let store = Value::Object(result.shared);
    Some(match (result.status, result.error) {
        (RunStatus::Succeeded, _) | (_, None) => {
            let mut r = CallToolResult::success(vec![ContentBlock::text(store.to_string())]);
            r.structured_content = Some(store);
            r
        }
        (status, Some(e)) => {
            let mut text = format!("{} ({}): {}: {}", name, status.as_str(), e.kind, e.message);
            if let Some(tb) = &e.traceback {
                let tail: Vec<&str> = tb.lines().rev().take(6).collect();
                text.push_str("\n\n");
                text.push_str(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"));
            }
            text.push_str(&format!("\n\nshared store as it stood: {store}"));
            CallToolResult::error(vec![ContentBlock::text(text)])
        }
    })
}

/// Node and item events as progress: the count of finished visits and
/// items, with a message saying which. The events are read as they come,
/// and the messages wait for the client in a bounded stream: a client that
/// reads slowly skips the oldest (the count jumps over them), so a busy
/// flow never builds up a backlog in flw.
async fn forward_progress(
    mut rx: mpsc::UnboundedReceiver<Stamped>,
    token: ProgressToken,
    peer: Peer<RoleServer>,
) {
    let (messages, mut pending) = events::channel::<String>();
    let read = async move {
        while let Some(ev) = rx.recv().await {
            if let Some(message) = progress_message(&ev.event) {
                messages.send(message);
            }
        }
        // Dropping `messages` ends `notify` once it has sent the last one.
    };
    let notify = async move {
        let mut count = 0u64;
        while let Some(received) = pending.recv().await {
            let message = match received {
                Received::Event(message) => message,
                Received::Gap(n) => {
                    count += n;
                    continue;
                }
            };
            count += 1;
            let mut p = ProgressNotificationParam::new(token.clone(), count as f64);
            p.message = Some(message);
            if peer.notify_progress(p).await.is_err() {
                return;
            }
        }
    };
    tokio::join!(read, notify);
}

/// The progress message for a run event, if it is one a client sees.
fn progress_message(event: &RunEvent) -> Option<String> {
    Some(match event {
        RunEvent::NodeStarted { path, .. } => format!("{path} started"),
        RunEvent::NodeFinished { path, action, ms } if action == "default" => {
            format!("{path} done ({ms} ms)")
        }
        RunEvent::NodeFinished { path, action, ms } => {
            format!("{path} done ({ms} ms) -> {action}")
        }
        RunEvent::NodeFailed { path, error, .. } => format!("{path} failed: {}", error.kind),
        RunEvent::NodeRetry { path, attempt, .. } => {
            format!("{path}: attempt {attempt} failed, retrying")
        }
        RunEvent::ItemFinished {
            path, done, total, ..
        } => format!("{path} done ({done}/{total})"),
        RunEvent::Progress {
            path,
            message: Some(m),
            ..
        } => format!("{path}: {m}"),
        _ => return None,
    })
}
