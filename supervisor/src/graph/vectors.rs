//! The graph-run vectors (`protocol/vectors/graph_runs.json`) replayed
//! against [`super::run::run`] through a scripted [`NodeCaller`], on tokio's
//! paused clock: no processes, and every delay, timeout and deadline lands
//! on its exact millisecond.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flw_protocol::{ErrorKind, NodeKind, NodePhase, NodeSpec};
use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::run::{run, NodeCaller, RunOptions};
use super::{Catalog, Document, RunEvent, RunStatus};
use crate::call::{CallFailure, CallOutcome, EventSink, NodeJob};

const VECTORS: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../protocol/vectors/graph_runs.json"
));

/// Serves each node call the next step of its key's script, and records
/// what the calls did.
struct Script {
    steps: HashMap<String, Vec<Value>>,
    used: Mutex<HashMap<String, Vec<bool>>>,
    trace: Mutex<Vec<(u64, String)>>,
    began: Instant,
}

impl Script {
    fn now(&self) -> u64 {
        u64::try_from(self.began.elapsed().as_millis()).unwrap()
    }

    fn record(&self, what: String) {
        let t = self.now();
        self.trace.lock().unwrap().push((t, what));
    }

    /// The first unused step of `key` for `params`, else the last that fits.
    fn step(&self, key: &str, params: &Map<String, Value>) -> Value {
        let steps = self
            .steps
            .get(key)
            .unwrap_or_else(|| panic!("no script for {key}"));
        let fits = |s: &Value| match s.get("params") {
            None => true,
            Some(Value::Object(p)) => p.iter().all(|(k, v)| params.get(k) == Some(v)),
            Some(other) => panic!("bad params filter {other}"),
        };
        let mut used = self.used.lock().unwrap();
        let used = used
            .entry(key.to_string())
            .or_insert_with(|| vec![false; steps.len()]);
        let pick = (0..steps.len())
            .find(|&i| !used[i] && fits(&steps[i]))
            .or_else(|| (0..steps.len()).rev().find(|&i| fits(&steps[i])))
            .unwrap_or_else(|| panic!("no step of {key} fits {params:?}"));
        used[pick] = true;
        steps[pick].clone()
    }
}

/// Compact JSON with sorted keys, as the SDK harnesses write it.
fn sorted_json(params: &Map<String, Value>) -> String {
    let sorted: BTreeMap<&String, &Value> = params.iter().collect();
    serde_json::to_string(&sorted).unwrap()
}

impl NodeCaller for Script {
    fn call_node(
        &self,
        _pool: usize,
        job: NodeJob,
        timeout: Option<Duration>,
        cancel: CancellationToken,
        _events: EventSink,
    ) -> BoxFuture<'_, CallOutcome> {
        Box::pin(async move {
            let key = match job.phase {
                NodePhase::Run => job.node.clone(),
                p => format!("{}.{}", job.node, p.as_str()),
            };
            let params = job.params.clone().unwrap_or_default();
            let step = self.step(&key, &params);
            let shown = if params.is_empty() {
                String::new()
            } else {
                format!(" {}", sorted_json(&params))
            };
            self.record(format!("start {key}{shown}"));
            let ms = step.get("ms").and_then(Value::as_u64).unwrap_or(0);
            let wait = tokio::time::sleep(Duration::from_millis(ms));
            let in_time = async {
                match timeout {
                    Some(d) => tokio::time::timeout(d, wait).await.is_ok(),
                    None => {
                        wait.await;
                        true
                    }
                }
            };
            tokio::select! {
                ok = in_time => if !ok {
                    return Err(CallFailure::new(ErrorKind::Timeout, format!("{key} timed out")));
                },
                _ = cancel.cancelled() => {
                    return Err(CallFailure::new(ErrorKind::Cancelled, format!("{key} was cancelled")));
                }
            }
            self.record(format!("end {key}"));
            if step.get("fail") == Some(&Value::Bool(true)) {
                return Err(CallFailure::new(
                    ErrorKind::ToolError,
                    format!("{key} failed"),
                ));
            }
            Ok(json!({
                "action": step.get("action").cloned().unwrap_or(Value::Null),
                "value": step.get("value").cloned().unwrap_or(Value::Null),
                "changes": {
                    "set": step.get("set").cloned().unwrap_or_else(|| json!({})),
                    "delete": step.get("delete").cloned().unwrap_or_else(|| json!([])),
                },
            }))
        })
    }
}

fn kind(s: &str) -> NodeKind {
    match s {
        "node" => NodeKind::Node,
        "batch" => NodeKind::Batch,
        "batch_flow" => NodeKind::BatchFlow,
        other => panic!("unknown node kind {other}"),
    }
}

/// An event as the vectors write it, or `None` for those they leave out.
fn event_text(e: &RunEvent) -> Option<String> {
    Some(match e {
        RunEvent::NodeStarted { path, .. } => format!("node_started {path}"),
        RunEvent::NodeRetry { path, attempt, .. } => format!("node_retry {path} {attempt}"),
        RunEvent::NodeFallback { path, .. } => format!("node_fallback {path}"),
        RunEvent::NodeFinished { path, action, .. } => format!("node_finished {path} {action}"),
        RunEvent::NodeFailed { path, error, .. } => format!("node_failed {path} {}", error.kind),
        RunEvent::BatchItems { path, total } => format!("batch_items {path} {total}"),
        RunEvent::ItemFinished { path, .. } => format!("item_finished {path}"),
        RunEvent::MergeConflict { path, keys } => {
            format!("merge_conflict {path} {}", keys.join(","))
        }
        _ => return None,
    })
}

/// Entries that share a time may come in any order: sorted within it.
fn normalized(trace: Vec<(u64, String)>) -> Vec<String> {
    let mut trace = trace;
    trace.sort(); // by time, then text
    trace.into_iter().map(|(t, s)| format!("{t} {s}")).collect()
}

fn expected_trace(expect: &Value) -> Vec<(u64, String)> {
    expect["trace"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (t, rest) = e.as_str().unwrap().split_once(' ').unwrap();
            (t.parse().unwrap(), rest.to_string())
        })
        .collect()
}

async fn replay(case: &Value) -> Result<(), String> {
    let name = case["name"].as_str().unwrap();
    let nodes: Vec<NodeSpec> = case["nodes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(n, spec)| NodeSpec {
            name: n.clone(),
            kind: kind(spec["kind"].as_str().unwrap()),
            description: String::new(),
            fallback: spec.get("fallback") == Some(&Value::Bool(true)),
        })
        .collect();
    let flow = Document::parse(&case["flow"], name).map_err(|e| e.to_string())?;
    let top = flow.name.clone();
    let catalog = Catalog {
        pools: vec![("test".to_string(), nodes)],
        flows: HashMap::from([(top.clone(), (flow, None))]),
    };
    let plan = catalog.plan(&top)?;
    let script = Arc::new(Script {
        steps: case["script"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_array().unwrap().clone()))
            .collect(),
        used: Mutex::default(),
        trace: Mutex::default(),
        began: Instant::now(),
    });
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let opts = RunOptions {
        events: Some(tx),
        ..RunOptions::default()
    };
    let shared = case["shared"].as_object().unwrap().clone();
    let result = run(&*script, plan, shared, opts).await;
    let mut events = Vec::new();
    let mut flow_ends = 0;
    while let Ok(stamped) = rx.try_recv() {
        if let RunEvent::Log { message, .. } = &stamped.event {
            if message.starts_with("Flow ends: '") {
                flow_ends += 1;
            }
        }
        events.extend(event_text(&stamped.event));
    }
    let expect = &case["expect"];
    let mut problems = Vec::new();
    let status = match result.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "cancelled",
    };
    if status != expect["status"] {
        problems.push(format!(
            "status {status} ({:?}), expected {}",
            result.error, expect["status"]
        ));
    }
    let kind = result.error.as_ref().map(|e| e.kind.as_str());
    if kind != expect.get("error").and_then(Value::as_str) {
        problems.push(format!(
            "error {kind:?}, expected {:?}",
            expect.get("error")
        ));
    }
    let trace = normalized(script.trace.lock().unwrap().clone());
    let want = normalized(expected_trace(expect));
    if trace != want {
        problems.push(format!("trace {trace:#?}\nexpected {want:#?}"));
    }
    if Value::Object(result.shared.clone()) != expect["shared"] {
        problems.push(format!(
            "shared {}, expected {}",
            Value::Object(result.shared),
            expect["shared"]
        ));
    }
    if Some(flow_ends) != expect["flow_ends"].as_u64() {
        problems.push(format!(
            "{flow_ends} 'Flow ends' warnings, expected {}",
            expect["flow_ends"]
        ));
    }
    let want_events: Vec<String> = serde_json::from_value(expect["events"].clone()).unwrap();
    if events != want_events {
        problems.push(format!("events {events:#?}\nexpected {want_events:#?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("case {name}:\n{}", problems.join("\n")))
    }
}

#[tokio::test(start_paused = true)]
async fn the_supervisor_runner_passes_every_graph_run_vector() {
    let vectors: Value = serde_json::from_str(VECTORS).unwrap();
    let mut failures = Vec::new();
    let cases = vectors["cases"].as_array().unwrap();
    for case in cases {
        if let Err(e) = replay(case).await {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}
