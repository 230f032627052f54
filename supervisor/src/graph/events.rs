//! What a run reports while it goes: the events of `protocol/GRAPHS.md`
//! ("Events"), serialized as one JSON object each.

use serde::Serialize;
use serde_json::{Map, Number, Value};

use flw_protocol::{ErrorKind, LogLevel};

use crate::call::CallFailure;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The top flow ended.
    Succeeded,
    /// A node failed for good, or `max_steps` or the deadline passed.
    Failed,
    /// The run was cancelled.
    Cancelled,
}

impl RunStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// The kind of a node's or a run's failure: a call's error kind of
/// `PROTOCOL.md`, or `max_steps`, which only runs have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunErrorKind {
    /// A node's call failed (or the run's deadline passed: `timeout`; or it
    /// was cancelled: `cancelled`).
    Call(ErrorKind),
    /// The run made `max_steps` node visits.
    MaxSteps,
}

impl RunErrorKind {
    /// The wire name, e.g. `tool_error`, `max_steps`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunErrorKind::Call(k) => k.as_str(),
            RunErrorKind::MaxSteps => "max_steps",
        }
    }
}

impl std::fmt::Display for RunErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorKind> for RunErrorKind {
    fn from(kind: ErrorKind) -> Self {
        RunErrorKind::Call(kind)
    }
}

impl Serialize for RunErrorKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Why a node or a run failed: its kind and a message naming the node's
/// path (a tool run's failure too, in `flw serve`'s run registry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunError {
    /// The kind, e.g. `tool_error`, `timeout`, `max_steps`.
    pub kind: RunErrorKind,
    /// What happened and where.
    pub message: String,
    /// The stack trace of a node that raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

impl RunError {
    /// An error without a traceback.
    pub fn new(kind: impl Into<RunErrorKind>, message: impl Into<String>) -> RunError {
        RunError {
            kind: kind.into(),
            message: message.into(),
            traceback: None,
        }
    }

    /// Whether it is a call error of `kind`.
    pub fn is(&self, kind: ErrorKind) -> bool {
        self.kind == RunErrorKind::Call(kind)
    }
}

impl From<&CallFailure> for RunError {
    fn from(f: &CallFailure) -> RunError {
        RunError {
            kind: f.kind.into(),
            message: f.message.clone(),
            traceback: f.traceback.clone(),
        }
    }
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RunEvent {
    /// The run began.
    RunStarted {
        /// The top flow.
        flow: String,
        /// The initial store.
        shared: Map<String, Value>,
    },
    /// A node visit began.
    NodeStarted {
        /// Where.
        path: String,
        /// `node`, `batch`, `flow` or `parallel`.
        kind: &'static str,
        /// The run's visit count, this one included.
        step: u64,
    },
    /// An attempt failed and another one follows.
    NodeRetry {
        /// Where.
        path: String,
        /// The attempt that failed, from 1.
        attempt: u32,
        /// Why it failed.
        error: RunError,
        /// The wait before the next one.
        wait_ms: u64,
    },
    /// The attempts failed; the node's fallback runs.
    NodeFallback {
        /// Where.
        path: String,
        /// The last attempt's error.
        error: RunError,
    },
    /// A node visit ended with an action.
    NodeFinished {
        /// Where.
        path: String,
        /// The action it returned (`default` for none).
        action: String,
        /// How long the visit took.
        ms: u64,
    },
    /// A node failed for good.
    NodeFailed {
        /// Where.
        path: String,
        /// Why.
        error: RunError,
        /// How long the visit took.
        ms: u64,
    },
    /// A batch node's `prep` gave its items.
    BatchItems {
        /// The batch node.
        path: String,
        /// How many.
        total: usize,
    },
    /// One batch item's `exec` finished.
    ItemFinished {
        /// The item, as `node[i]`.
        path: String,
        /// Items done so far.
        done: usize,
        /// All items.
        total: usize,
        /// How long the item took.
        ms: u64,
    },
    /// Parallel branches changed the same keys; the later-listed won.
    MergeConflict {
        /// The parallel entry.
        path: String,
        /// The keys.
        keys: Vec<String>,
    },
    /// A node reported progress.
    Progress {
        /// Where.
        path: String,
        /// Increases with each event.
        progress: Number,
        /// Where it ends.
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<Number>,
        /// A short message.
        #[serde(skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// A node (or the runner) logged a line.
    Log {
        /// Where.
        path: String,
        /// Severity.
        level: LogLevel,
        /// The text.
        message: String,
    },
    /// A node streamed a piece of output.
    Chunk {
        /// Where.
        path: String,
        /// The piece.
        data: Value,
    },
    /// The run ended.
    RunFinished {
        /// How.
        status: RunStatus,
        /// Node visits made.
        steps: u64,
        /// How long the run took.
        ms: u64,
        /// The final store.
        shared: Map<String, Value>,
        /// Why, when it did not succeed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<RunError>,
    },
}

impl RunEvent {
    /// Its `event` name, e.g. `node_started`.
    pub fn name(&self) -> &'static str {
        match self {
            RunEvent::RunStarted { .. } => "run_started",
            RunEvent::NodeStarted { .. } => "node_started",
            RunEvent::NodeRetry { .. } => "node_retry",
            RunEvent::NodeFallback { .. } => "node_fallback",
            RunEvent::NodeFinished { .. } => "node_finished",
            RunEvent::NodeFailed { .. } => "node_failed",
            RunEvent::BatchItems { .. } => "batch_items",
            RunEvent::ItemFinished { .. } => "item_finished",
            RunEvent::MergeConflict { .. } => "merge_conflict",
            RunEvent::Progress { .. } => "progress",
            RunEvent::Log { .. } => "log",
            RunEvent::Chunk { .. } => "chunk",
            RunEvent::RunFinished { .. } => "run_finished",
        }
    }
}
/// An event and when it happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stamped {
    /// The event.
    #[serde(flatten)]
    pub event: RunEvent,
    /// Milliseconds since the run started.
    pub t_ms: u64,
}

impl Stamped {
    /// The event as one line of JSON (no `\n`).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serialized_tags() {
        let e = RunEvent::NodeRetry {
            path: "a".into(),
            attempt: 1,
            error: RunError::new(ErrorKind::Timeout, "slow"),
            wait_ms: 10,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], e.name());
    }

    #[test]
    fn events_serialize_with_their_kind_and_time() {
        let e = Stamped {
            event: RunEvent::NodeFinished {
                path: "agent/decide".into(),
                action: "search".into(),
                ms: 3,
            },
            t_ms: 12,
        };
        assert_eq!(
            e.to_json(),
            r#"{"event":"node_finished","path":"agent/decide","action":"search","ms":3,"t_ms":12}"#
        );
    }
}
