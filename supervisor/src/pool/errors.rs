//! Why a pool generation could not start its workers, and why a reload
//! failed: typed, so that callers decide on the variant, never on text.

use std::sync::Arc;

use super::manifest::ManifestError;
use crate::sdk::LaunchError;
use crate::worker::StartError;

/// Why a generation did not get a worker (its first ones, or a later one).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StartFailure {
    /// The script cannot be launched at all (no interpreter, an unknown
    /// kind of script): retrying cannot help.
    #[error(transparent)]
    Launch(Arc<LaunchError>),
    /// A worker failed to start or to pass its handshake.
    #[error(transparent)]
    Worker(StartError),
    /// A worker announced a tool flw cannot serve.
    #[error("worker {label} announced a bad tool: {error}")]
    BadTool {
        /// The worker's label.
        label: String,
        /// What is wrong with the tool.
        error: ManifestError,
    },
    /// The generation was stopped while it started.
    #[error("the generation stopped while it started")]
    Stopped,
    /// Workers started but none announced its tools.
    #[error("no worker announced its tools")]
    NoManifest,
}

/// Why a pool has no tools to list: its workers could not start.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ToolsUnavailable {
    /// The pool's last start failure, as its log said it.
    #[error("{0}")]
    Failed(String),
    /// The pool stopped before a worker announced its tools.
    #[error("the pool stopped")]
    Stopped,
}

/// Why `Pool::reload` did not swap generations.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ReloadError {
    /// The pool is closing.
    #[error("pool {pool} is shutting down")]
    PoolClosing {
        /// The pool's name.
        pool: String,
    },
    /// flw is shutting down.
    #[error("flw is shutting down")]
    Stopping,
    /// The new generation failed to start; the old one keeps serving.
    #[error("reload of pool {pool} failed; generation {serving} keeps serving: {cause}")]
    Failed {
        /// The pool's name.
        pool: String,
        /// The generation that keeps serving.
        serving: u64,
        /// Why the new one did not start.
        cause: StartFailure,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_reload_names_the_pool_the_generation_and_the_cause() {
        let e = ReloadError::Failed {
            pool: "agent".into(),
            serving: 3,
            cause: StartFailure::BadTool {
                label: "agent.py#4".into(),
                error: ManifestError::DuplicateFlow("plan".into()),
            },
        };
        assert_eq!(
            e.to_string(),
            "reload of pool agent failed; generation 3 keeps serving: worker agent.py#4 announced a bad tool: the worker's hello: two flows are named \"plan\""
        );
    }
}
