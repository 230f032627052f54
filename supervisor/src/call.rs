//! What a caller gets back from a tool call: its outcome, live events and errors.
//! The events travel on a bounded stream of their own ([`events`]).

pub mod events;

use flw_protocol::{ErrorKind, LogLevel, NodeError, NodePhase};
use serde_json::{Map, Number, Value};

/// A failed call, as reported to a caller (CLI, MCP client).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct CallFailure {
    /// What kind of failure (see `protocol/PROTOCOL.md`).
    pub kind: ErrorKind,
    /// What happened, where, and what to do.
    pub message: String,
    /// The stack trace, for `tool_error`.
    pub traceback: Option<String>,
}

impl CallFailure {
    /// A failure without a traceback.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CallFailure {
            kind,
            message: message.into(),
            traceback: None,
        }
    }
}

/// The outcome of one call.
pub type CallOutcome = Result<Value, CallFailure>;

/// Something a call reported while it ran.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// Progress, with an optional total and message.
    Progress {
        /// Increases with each event.
        progress: Number,
        /// The value `progress` reaches when done.
        total: Option<Number>,
        /// A short human message.
        message: Option<String>,
    },
    /// A log line the tool wrote through its context.
    Log {
        /// Severity.
        level: LogLevel,
        /// The text.
        message: String,
    },
    /// A piece of streamed output.
    Chunk(Value),
}

/// Where a call's events go (a bounded stream, see [`events`]); `None`
/// drops them.
pub type EventSink = Option<events::EventTx>;

/// One phase of a graph node to run: a `node` message without its id and
/// deadline (see `protocol/PROTOCOL.md`, "Graph nodes").
#[derive(Debug, Clone, PartialEq)]
pub struct NodeJob {
    /// The node's name in its worker's manifest.
    pub node: String,
    /// Which phase.
    pub phase: NodePhase,
    /// The shared store (`run`, `prep`, `post`, `fallback`).
    pub shared: Option<Map<String, Value>>,
    /// `exec`: the item.
    pub item: Option<Value>,
    /// `post`: what `prep` returned.
    pub prep: Option<Value>,
    /// `post`: the `exec` values in item order.
    pub results: Option<Vec<Value>>,
    /// `fallback`: the last attempt's error.
    pub error: Option<NodeError>,
    /// The batch-flow parameters in force (PocketFlow's `params`).
    pub params: Option<Map<String, Value>>,
}

impl NodeJob {
    /// A job of `phase` for `node` with no inputs yet.
    pub fn new(node: &str, phase: NodePhase) -> NodeJob {
        NodeJob {
            node: node.to_string(),
            phase,
            shared: None,
            item: None,
            prep: None,
            results: None,
            error: None,
            params: None,
        }
    }

    /// A job of `phase` for `node` that gets a copy of `shared`.
    pub fn with_store(node: &str, phase: NodePhase, shared: &Map<String, Value>) -> NodeJob {
        let mut job = NodeJob::new(node, phase);
        job.shared = Some(shared.clone());
        job
    }
}

/// What a call asks a worker to do.
#[derive(Debug)]
pub enum Job<'a> {
    /// Run a tool with arguments.
    Tool {
        /// The tool's name.
        tool: &'a str,
        /// Its arguments.
        args: Map<String, Value>,
    },
    /// Run a node phase (boxed: rarer, and larger).
    Node(Box<NodeJob>),
}

impl Job<'_> {
    /// The tool or node, for messages: `echo`, `node search (run)`.
    pub fn label(&self) -> String {
        match self {
            Job::Tool { tool, .. } => (*tool).to_string(),
            Job::Node(n) => format!("node {} ({})", n.node, n.phase.as_str()),
        }
    }
}
