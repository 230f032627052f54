//! The messages of protocol version 1 and their canonical encoding.
//!
//! Serialization puts `type` first and the other members in the order the
//! tables of `PROTOCOL.md` give; optional members with no value are left out.

use serde::Serialize;
use serde_json::{Map, Number, Value};

/// A message a worker sends to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// First message: versions spoken and the tool manifest.
    Hello(Hello),
    /// The terminal success reply to a call.
    Result(CallResult),
    /// The terminal failure reply to a call.
    Error(CallError),
    /// Progress of a call.
    Progress(Progress),
    /// A log line, optionally tied to a call.
    Log(Log),
    /// A piece of streamed output of a call.
    Chunk(Chunk),
    /// Echo of a supervisor heartbeat.
    Heartbeat(Heartbeat),
}

/// A message the supervisor sends to a worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SupervisorMessage {
    /// Answer to `hello`: the version chosen.
    Welcome(Welcome),
    /// Run a tool.
    Call(Call),
    /// Run one phase of a graph node; a call in the same id space.
    Node(Box<NodeCall>),
    /// Stop a call.
    Cancel(Cancel),
    /// Liveness probe; the worker echoes `seq`.
    Heartbeat(Heartbeat),
    /// Exit now.
    Shutdown(Shutdown),
}

/// The worker's `hello`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hello {
    /// Every protocol version the worker speaks.
    pub protocol: Vec<u32>,
    /// SDK name (`python`, `typescript`).
    pub sdk: String,
    /// SDK version.
    pub sdk_version: String,
    /// Runtime description, e.g. `cpython 3.11.7`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The worker's process id as it sees it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// The tool manifest.
    pub tools: Vec<ToolSpec>,
    /// The graph nodes the worker implements.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nodes: Option<Vec<NodeSpec>>,
    /// The flows the worker's script defines: graph documents (`GRAPHS.md`),
    /// checked by the supervisor, not by the codec.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flows: Option<Vec<Map<String, Value>>>,
}

impl Hello {
    /// The flows as typed documents; the error names the flow and the problem.
    pub fn documents(&self) -> Result<Vec<crate::graph::Document>, crate::graph::DocumentError> {
        self.flows
            .iter()
            .flatten()
            .map(|f| crate::graph::Document::parse_object(f, "the worker's hello"))
            .collect()
    }
}

/// One graph node of a worker's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSpec {
    /// Unique among the worker's nodes; the rules of tool names.
    pub name: String,
    /// How the supervisor runs it.
    pub kind: NodeKind,
    /// What the node does.
    pub description: String,
    /// Whether the node has a `fallback` phase.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fallback: bool,
}

/// How the supervisor runs a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// One `run` per visit.
    Node,
    /// `prep`, one `exec` per item, `post`.
    Batch,
    /// A batch flow's own phases: `prep` (the parameter sets) and `post`
    /// (the flow's action); see `GRAPHS.md`, "Batch flows".
    BatchFlow,
}

impl NodeKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Node => "node",
            NodeKind::Batch => "batch",
            NodeKind::BatchFlow => "batch_flow",
        }
    }
}

/// One tool of a worker's manifest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    /// Unique within the worker; see [`crate::is_valid_tool_name`].
    pub name: String,
    /// What the tool does, for a model and a person.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: Map<String, Value>,
    /// JSON Schema of an object result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Map<String, Value>>,
}

/// A successful call result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallResult {
    /// The call's id.
    pub id: u64,
    /// The tool's return value.
    pub value: Value,
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallError {
    /// The call's id.
    pub id: u64,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// What happened, for a person.
    pub message: String,
    /// Stack trace, most recent call last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traceback: Option<String>,
}

/// Progress of a call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Progress {
    /// The call's id.
    pub id: u64,
    /// Increases with each message.
    pub progress: Number,
    /// The value `progress` reaches when done.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<Number>,
    /// A short human message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A log line from a worker.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Log {
    /// Severity.
    pub level: LogLevel,
    /// The text.
    pub message: String,
    /// The call it belongs to, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
}

/// Severity of a [`Log`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something to look at.
    Warning,
    /// Something failed.
    Error,
}

/// A piece of streamed output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Chunk {
    /// The call's id.
    pub id: u64,
    /// The piece, usually a string.
    pub data: Value,
}

/// A heartbeat, either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Heartbeat {
    /// Sequence number, echoed by the worker.
    pub seq: u64,
}

/// The supervisor's `welcome`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Welcome {
    /// The chosen protocol version.
    pub protocol: u32,
}

/// Run a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    /// Unique per worker.
    pub id: u64,
    /// Name from the worker's manifest.
    pub tool: String,
    /// The arguments object.
    pub args: Map<String, Value>,
    /// How long the supervisor waits before it times the call out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// Run one phase of a graph node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeCall {
    /// Unique per worker, shared with [`Call`] ids.
    pub id: u64,
    /// Name from the worker's `nodes`.
    pub node: String,
    /// Which phase.
    pub phase: NodePhase,
    /// The shared store (`run`, `prep`, `post`, `fallback`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared: Option<Map<String, Value>>,
    /// `exec`: the batch item; `None` for `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    /// `post`: what `prep` returned; `None` for `null`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prep: Option<Value>,
    /// `post`: the `exec` values in item order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<Value>>,
    /// `fallback`: the last failed attempt's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<NodeError>,
    /// The parameters of the batch-flow runs the node is in (PocketFlow's
    /// `params`); left out when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub params: Option<Map<String, Value>>,
    /// How long the supervisor waits before it times the call out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
}

/// The phase of a node a [`NodeCall`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodePhase {
    /// The whole node.
    Run,
    /// A batch node's `prep`: the items.
    Prep,
    /// A batch node's `exec` for one item.
    Exec,
    /// A batch node's `post`.
    Post,
    /// The node's fallback after failed attempts.
    Fallback,
}

impl NodePhase {
    /// Every phase.
    pub const ALL: [NodePhase; 5] = [
        NodePhase::Run,
        NodePhase::Prep,
        NodePhase::Exec,
        NodePhase::Post,
        NodePhase::Fallback,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodePhase::Run => "run",
            NodePhase::Prep => "prep",
            NodePhase::Exec => "exec",
            NodePhase::Post => "post",
            NodePhase::Fallback => "fallback",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<NodePhase> {
        NodePhase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// The error a `fallback` phase gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeError {
    /// An error kind, e.g. `tool_error`, `timeout`.
    pub kind: String,
    /// What happened.
    pub message: String,
}

/// Stop a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cancel {
    /// The call to stop.
    pub id: u64,
}

/// Exit now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Shutdown {
    /// Why, when it is not a normal stop.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The kind of a call failure (see `PROTOCOL.md`, "Error kinds").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The tool raised an exception.
    ToolError,
    /// The arguments do not fit the tool's parameters.
    InvalidArguments,
    /// No tool of that name.
    UnknownTool,
    /// The caller cancelled the call.
    Cancelled,
    /// A bug in the SDK or the supervisor.
    Internal,
    /// The call's deadline passed.
    Timeout,
    /// The worker exited while it hosted the call.
    WorkerCrashed,
    /// Shared mode: the worker was killed to stop a sibling call.
    WorkerKilled,
    /// The worker broke the protocol.
    ProtocolError,
    /// The pool's queue is full.
    Overloaded,
    /// No worker can be started.
    Unavailable,
    /// The supervisor is stopping.
    ShuttingDown,
    /// The call's worker belonged to a generation that a reload replaced, and
    /// the call did not finish within the drain time.
    Superseded,
}

impl ErrorKind {
    /// Every kind, in the order `PROTOCOL.md` lists them.
    pub const ALL: [ErrorKind; 13] = [
        ErrorKind::ToolError,
        ErrorKind::InvalidArguments,
        ErrorKind::UnknownTool,
        ErrorKind::Cancelled,
        ErrorKind::Internal,
        ErrorKind::Timeout,
        ErrorKind::WorkerCrashed,
        ErrorKind::WorkerKilled,
        ErrorKind::ProtocolError,
        ErrorKind::Overloaded,
        ErrorKind::Unavailable,
        ErrorKind::ShuttingDown,
        ErrorKind::Superseded,
    ];

    /// The wire name, e.g. `tool_error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::ToolError => "tool_error",
            ErrorKind::InvalidArguments => "invalid_arguments",
            ErrorKind::UnknownTool => "unknown_tool",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
            ErrorKind::Timeout => "timeout",
            ErrorKind::WorkerCrashed => "worker_crashed",
            ErrorKind::WorkerKilled => "worker_killed",
            ErrorKind::ProtocolError => "protocol_error",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::ShuttingDown => "shutting_down",
            ErrorKind::Superseded => "superseded",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<ErrorKind> {
        ErrorKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LogLevel {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<LogLevel> {
        [
            LogLevel::Debug,
            LogLevel::Info,
            LogLevel::Warning,
            LogLevel::Error,
        ]
        .into_iter()
        .find(|l| l.as_str() == s)
    }
}

impl WorkerMessage {
    /// The canonical line, without the `\n`.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("wire types always serialize")
    }
}

impl SupervisorMessage {
    /// The canonical line, without the `\n`.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("wire types always serialize")
    }

    /// Appends the canonical line and its `\n` to `buf`.
    pub fn encode_into(&self, buf: &mut Vec<u8>) {
        serde_json::to_writer(&mut *buf, self).expect("wire types always serialize");
        buf.push(b'\n');
    }
}
