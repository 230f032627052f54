//! Why a worker's handshake failed, as a typed error: the supervisor
//! decides on the variant (a closed channel is reported as the exit that
//! caused it), never on the message.

use std::time::Duration;

use flw_protocol::{DecodeError, Hello, SUPPORTED_VERSIONS};

/// What went wrong between a worker's start and its `hello`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HandshakeError {
    /// The channel ended before a `hello` came (the process is likely
    /// exiting: the caller reports its exit status instead when it can).
    #[error("closed its channel before its handshake")]
    ChannelClosed,
    /// The `hello` line was longer than the line limit.
    #[error("sent a hello over the {0}-byte line limit")]
    TooLong(usize),
    /// The first line was another message (its first 80 characters).
    #[error("sent {0:?} before hello")]
    NotHello(String),
    /// The `hello` did not decode.
    #[error("sent a bad hello: {0}")]
    Bad(DecodeError),
    /// No `hello` within the handshake timeout.
    #[error("sent no hello within the handshake timeout of {0:?} (raise handshake_timeout in flw.toml if its imports are slow)")]
    Timeout(Duration),
    /// The process exited before its `hello`.
    #[error("{program} exited with {status} before its handshake")]
    ExitedEarly {
        /// The program that was run.
        program: String,
        /// Its exit status in words.
        status: String,
    },
    /// The worker and flw share no protocol version.
    #[error("no common protocol version: the worker ({sdk} SDK {sdk_version}) speaks {theirs:?}, this flw speaks {SUPPORTED_VERSIONS:?}; upgrade the older side")]
    NoCommonVersion {
        /// The worker's SDK.
        sdk: String,
        /// Its version.
        sdk_version: String,
        /// The versions it speaks.
        theirs: Vec<u32>,
    },
}

impl HandshakeError {
    /// The error for a `hello` whose versions flw does not speak.
    pub fn no_common_version(hello: &Hello) -> HandshakeError {
        HandshakeError::NoCommonVersion {
            sdk: hello.sdk.clone(),
            sdk_version: hello.sdk_version.clone(),
            theirs: hello.protocol.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_the_worker_did() {
        assert_eq!(
            HandshakeError::ChannelClosed.to_string(),
            "closed its channel before its handshake"
        );
        assert_eq!(
            HandshakeError::ExitedEarly {
                program: "python3".into(),
                status: "exit status 1".into()
            }
            .to_string(),
            "python3 exited with exit status 1 before its handshake"
        );
        let e = HandshakeError::NoCommonVersion {
            sdk: "python".into(),
            sdk_version: "0.1".into(),
            theirs: vec![99],
        };
        assert!(e.to_string().contains("speaks [99]"), "{e}");
    }
}
