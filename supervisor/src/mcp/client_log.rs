//! Log lines for the MCP client (`notifications/message`) and the level it
//! asked for (`logging/setLevel`).
//!
//! MCP logging is deprecated by SEP-2577, but it is what hosts show their
//! users today, so flw reports reloads through it; the deprecation warnings
//! stay inside this module.
#![allow(deprecated)]

use std::sync::{Arc, Mutex};

use rmcp::model::{LoggingLevel, LoggingMessageNotificationParam, SetLevelRequestParams};
use rmcp::RoleServer;
use serde_json::Value;

/// How severe a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Routine news, e.g. a reload that worked.
    Info,
    /// Something failed, e.g. a reload.
    Error,
}

/// The least severe level the client wants; `info` until it says.
#[derive(Clone)]
pub struct ClientLog {
    wanted: Arc<Mutex<LoggingLevel>>,
}

impl Default for ClientLog {
    fn default() -> Self {
        ClientLog {
            wanted: Arc::new(Mutex::new(LoggingLevel::Info)),
        }
    }
}

/// The place of a level in the spec's order (debug lowest).
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

impl ClientLog {
    /// Takes the level of a `logging/setLevel` request.
    pub fn set(&self, request: SetLevelRequestParams) {
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = request.level;
    }

    /// Sends `text` from the logger `flw` if the client wants its severity.
    pub async fn send(
        &self,
        peer: &rmcp::Peer<RoleServer>,
        severity: Severity,
        text: String,
    ) -> Result<(), rmcp::service::ServiceError> {
        let level = match severity {
            Severity::Info => LoggingLevel::Info,
            Severity::Error => LoggingLevel::Error,
        };
        let wanted = *self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        if rank(level) < rank(wanted) {
            return Ok(());
        }
        peer.notify_logging_message(
            LoggingMessageNotificationParam::new(level, Value::String(text)).with_logger("flw"),
        )
        .await
    }
}
