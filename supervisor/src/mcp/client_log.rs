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
    /// Something was lost, e.g. events a slow client did not read in time.
    Warning,
    /// Something failed, e.g. a reload.
    Error,
}

/// The least severe level the client wants (`None`: no lines at all);
/// `info` until a session's client says.
#[derive(Clone)]
pub struct ClientLog {
    wanted: Arc<Mutex<Option<LoggingLevel>>>,
}

impl Default for ClientLog {
    fn default() -> Self {
        ClientLog {
            wanted: Arc::new(Mutex::new(Some(LoggingLevel::Info))),
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
        *self.wanted.lock().unwrap_or_else(|p| p.into_inner()) = Some(request.level);
    }

    /// The log of one request of a client without a session (2026-07-28):
    /// the request's `_meta` names its level, and without one no line is
    /// sent (SEP-2575).
    pub fn for_request(meta: &rmcp::model::RequestMetaObject) -> ClientLog {
        ClientLog {
            wanted: Arc::new(Mutex::new(meta.log_level())),
        }
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
            Severity::Warning => LoggingLevel::Warning,
            Severity::Error => LoggingLevel::Error,
        };
        self.send_at(peer, level, "flw", text).await
    }

    /// Sends a log line a tool wrote through its context, with the tool's
    /// name as the logger, if the client wants its level.
    pub async fn tool_line(
        &self,
        peer: &rmcp::Peer<RoleServer>,
        level: flw_protocol::LogLevel,
        tool: &str,
        text: String,
    ) -> Result<(), rmcp::service::ServiceError> {
        let level = match level {
            flw_protocol::LogLevel::Debug => LoggingLevel::Debug,
            flw_protocol::LogLevel::Info => LoggingLevel::Info,
            flw_protocol::LogLevel::Warning => LoggingLevel::Warning,
            flw_protocol::LogLevel::Error => LoggingLevel::Error,
        };
        self.send_at(peer, level, tool, text).await
    }

    async fn send_at(
        &self,
        peer: &rmcp::Peer<RoleServer>,
        level: LoggingLevel,
        logger: &str,
        text: String,
    ) -> Result<(), rmcp::service::ServiceError> {
        let wanted = *self.wanted.lock().unwrap_or_else(|p| p.into_inner());
        if wanted.is_none_or(|w| rank(level) < rank(w)) {
            return Ok(());
        }
        peer.notify_logging_message(
            LoggingMessageNotificationParam::new(level, Value::String(text)).with_logger(logger),
        )
        .await
    }
}
