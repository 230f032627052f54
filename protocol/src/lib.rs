//! Wire types and line codec of the flw worker protocol (see `PROTOCOL.md`).
//!
//! This crate is the only place that knows the wire: the supervisor converts
//! these types at its edge. Decoding is strict about what a message needs and
//! lenient about members it does not know, so later minor revisions can add
//! optional members.

mod decode;
pub mod fork_server;
pub mod graph;
mod message;
pub mod outcome;

pub use decode::{decode_supervisor_line, decode_worker_line, DecodeError, DecodeErrorCode};
pub use message::{
    Call, CallError, CallResult, Cancel, Chunk, ErrorKind, Heartbeat, Hello, Log, LogLevel,
    NodeCall, NodeError, NodeKind, NodePhase, NodeSpec, Progress, Shutdown, SupervisorMessage,
    ToolSpec, Welcome, WorkerMessage,
};

/// Protocol versions this implementation speaks, highest last.
pub const SUPPORTED_VERSIONS: &[u32] = &[1];

/// Default limit on one line, in bytes, not counting the `\n`.
pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Largest call id (ids must survive a round trip through a JS number).
pub const MAX_CALL_ID: u64 = (1 << 53) - 1;

/// Name of the environment variable that tells a worker its channel fd.
pub const ENV_CHANNEL_FD: &str = "FLW_CHANNEL_FD";
/// Name of the environment variable that tells a worker the line limit.
pub const ENV_MAX_LINE_BYTES: &str = "FLW_MAX_LINE_BYTES";
/// Name of the environment variable that tells a worker its concurrency mode.
pub const ENV_MODE: &str = "FLW_MODE";
/// Name of the environment variable that carries the worker's label.
pub const ENV_WORKER: &str = "FLW_WORKER";
/// The file descriptor a worker finds its channel on.
pub const CHANNEL_FD: i32 = 3;

/// Picks the highest version both sides speak, if any.
pub fn negotiate(worker_versions: &[u32]) -> Option<u32> {
    SUPPORTED_VERSIONS
        .iter()
        .rev()
        .copied()
        .find(|v| worker_versions.contains(v))
}

/// Whether `name` is a valid tool name: 1–128 of `A-Z a-z 0-9 _ - .`.
pub fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}
