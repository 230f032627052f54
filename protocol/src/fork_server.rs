//! The fork server's channel (see `PROTOCOL.md`, "Fork server"): one JSON
//! object per `SOCK_SEQPACKET` datagram between the supervisor and the
//! Python process that forks a pool generation's workers.

use serde::{Deserialize, Serialize};

/// Names the environment variable that marks a fork server (`1`).
pub const ENV_FORK_SERVER: &str = "FLW_FORK_SERVER";
/// Names the environment variable that holds the lifeline's descriptor.
pub const ENV_LIFELINE_FD: &str = "FLW_LIFELINE_FD";
/// Names the environment variable that tells a keeper the kill grace.
pub const ENV_KILL_GRACE_MS: &str = "FLW_KILL_GRACE_MS";
/// Names the environment variable that asks `python -m flw` for a keeper.
pub const ENV_KEEPER: &str = "FLW_KEEPER";
/// The fork server's variable naming the keeper program its children exec
/// (`flw`, run as `flw __keeper PID FD GRACE_MS LABEL`); without it they
/// stay Python keepers.
pub const ENV_KEEPER_EXE: &str = "FLW_KEEPER_EXE";
/// The descriptor a fork server finds the lifeline's read end on.
pub const LIFELINE_FD: i32 = 4;
/// Largest datagram either side sends.
pub const MAX_DATAGRAM_BYTES: usize = 65_536;
/// Descriptors sent with each `fork`: the channel, stdout, stderr.
pub const FORK_FDS: usize = 3;

/// From the supervisor to the fork server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToForkServer {
    /// Fork a worker; the datagram carries the channel, stdout and stderr.
    Fork {
        /// Echoed in the answer.
        id: u64,
        /// The worker's label (`FLW_WORKER`).
        label: String,
    },
    /// Exit; the workers already forked go on.
    Shutdown,
}

/// From the fork server to the supervisor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromForkServer {
    /// The script is loaded and the heap frozen: forks may be asked for.
    Ready {
        /// The fork server's pid.
        pid: u32,
    },
    /// Forking this script is not safe; the fork server exits.
    Unsafe {
        /// Why, for the log (e.g. the threads the script started).
        reason: String,
    },
    /// A worker's keeper was forked.
    Forked {
        /// The `fork` request's id.
        id: u64,
        /// The keeper's pid (it leads its own session).
        pid: u32,
    },
    /// The fork failed.
    ForkFailed {
        /// The `fork` request's id.
        id: u64,
        /// Why.
        error: String,
    },
    /// A keeper ended and was reaped.
    Exited {
        /// Its pid.
        pid: u32,
        /// Its exit status, when it exited (present, `null` otherwise).
        #[serde(deserialize_with = "Option::deserialize")]
        code: Option<i32>,
        /// The signal that ended it, when one did (present, `null` otherwise).
        #[serde(deserialize_with = "Option::deserialize")]
        signal: Option<i32>,
    },
}

/// Why a datagram is not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad fork server message: {0}")]
pub struct ForkMessageError(pub String);

impl ToForkServer {
    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data always encodes")
    }

    /// Parses a datagram.
    pub fn decode(bytes: &[u8]) -> Result<ToForkServer, ForkMessageError> {
        let msg: ToForkServer = decode(bytes)?;
        if let ToForkServer::Fork { id, label } = &msg {
            check_id(*id)?;
            if label.is_empty() || label.contains('\0') {
                return Err(ForkMessageError(
                    "`label` is a non-empty string with no NUL (it goes into the environment)"
                        .into(),
                ));
            }
        }
        Ok(msg)
    }
}

impl FromForkServer {
    /// The datagram's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("plain data always encodes")
    }

    /// Parses a datagram.
    pub fn decode(bytes: &[u8]) -> Result<FromForkServer, ForkMessageError> {
        let msg: FromForkServer = decode(bytes)?;
        match &msg {
            FromForkServer::Ready { pid } | FromForkServer::Exited { pid, .. } if *pid == 0 => {
                return Err(ForkMessageError("`pid` is 1 or more".into()));
            }
            FromForkServer::Forked { id, pid } => {
                check_id(*id)?;
                if *pid == 0 {
                    return Err(ForkMessageError("`pid` is 1 or more".into()));
                }
            }
            FromForkServer::ForkFailed { id, .. } => check_id(*id)?,
            FromForkServer::Exited { code, signal, .. } => {
                if code.is_some() == signal.is_some() {
                    return Err(ForkMessageError(
                        "exactly one of `code` and `signal` is an integer".into(),
                    ));
                }
                if code.is_some_and(|c| !(0..=255).contains(&c)) {
                    return Err(ForkMessageError("`code` is 0 to 255".into()));
                }
                if signal.is_some_and(|s| !(1..=64).contains(&s)) {
                    return Err(ForkMessageError("`signal` is 1 to 64".into()));
                }
            }
            _ => {}
        }
        Ok(msg)
    }
}

fn check_id(id: u64) -> Result<(), ForkMessageError> {
    if id > crate::MAX_CALL_ID {
        return Err(ForkMessageError("`id` is 0 to 2^53-1".into()));
    }
    Ok(())
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ForkMessageError> {
    if bytes.len() > MAX_DATAGRAM_BYTES {
        return Err(ForkMessageError(format!(
            "{} bytes, over the {MAX_DATAGRAM_BYTES}-byte limit",
            bytes.len()
        )));
    }
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    serde_json::from_slice(text).map_err(|e| ForkMessageError(e.to_string()))
}
