//! What a traced load records besides counts: when each call completed, the
//! version markers its results carried, and the server's notifications.

use std::time::Instant;

use serde_json::Value;

/// Most notifications kept per server (they are rare: reload log lines).
pub const MAX_NOTICES: usize = 10_000;

/// One version marker seen in results: the text before the first `:` of
/// the first content block (`v2` in `v2:hello`).
#[derive(Debug, Clone)]
pub struct Mark {
    /// The marker.
    pub marker: String,
    /// When the first result carrying it arrived.
    pub first: Instant,
    /// When the last one arrived.
    pub last: Instant,
    /// How many results carried it.
    pub count: u64,
}

/// A traced load's record.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// When each call completed, in order.
    pub completions: Vec<Instant>,
    /// The markers, in the order they first appeared.
    pub marks: Vec<Mark>,
}

impl Trace {
    /// Records one reply that arrived at `at`; returns whether it carried a
    /// marker not seen before.
    pub fn record(&mut self, reply: &Value, at: Instant) -> bool {
        self.completions.push(at);
        let Some(marker) = reply
            .pointer("/result/content/0/text")
            .and_then(Value::as_str)
            .and_then(|t| t.split_once(':'))
            .map(|(m, _)| m)
        else {
            return false;
        };
        if let Some(m) = self.marks.iter_mut().find(|m| m.marker == marker) {
            m.last = at;
            m.count += 1;
            return false;
        }
        self.marks.push(Mark {
            marker: marker.to_string(),
            first: at,
            last: at,
            count: 1,
        });
        true
    }

    /// The record of `marker`, if a result carried it.
    pub fn mark(&self, marker: &str) -> Option<&Mark> {
        self.marks.iter().find(|m| m.marker == marker)
    }

    /// Calls completed in `[from, to)`.
    pub fn completed_between(&self, from: Instant, to: Instant) -> u64 {
        let before = |t: Instant| self.completions.partition_point(|&c| c < t);
        before(to).saturating_sub(before(from)) as u64
    }
}

/// A notification the server sent (a JSON-RPC message with a method and no id).
#[derive(Debug, Clone)]
pub struct Notice {
    /// Its method, e.g. `notifications/message`.
    pub method: String,
    /// Its params.
    pub params: Value,
    /// When the reader parsed it.
    pub at: Instant,
}

impl Notice {
    /// The text of a `notifications/message` (its `data`, as a string).
    pub fn text(&self) -> Option<String> {
        if self.method != "notifications/message" {
            return None;
        }
        let data = self.params.get("data")?;
        Some(match data.as_str() {
            Some(s) => s.to_string(),
            None => data.to_string(),
        })
    }
}
