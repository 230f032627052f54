//! What a caller gets back from a tool call: its outcome, live events and errors.

use flw_protocol::{ErrorKind, LogLevel};
use serde_json::{Number, Value};
use tokio::sync::mpsc;

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

/// Where a call's events go; `None` drops them.
pub type EventSink = Option<mpsc::UnboundedSender<CallEvent>>;
