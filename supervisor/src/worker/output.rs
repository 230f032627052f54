//! Worker stdout and stderr: each line becomes a `tracing` record tagged with
//! the worker, and the last stderr lines are kept for crash reports.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncRead;

use super::lines::{Line, LineReader};

/// Longest output line logged whole; longer ones are cut.
const MAX_OUTPUT_LINE: usize = 64 * 1024;
/// How many stderr lines a crash report shows.
pub const TAIL_LINES: usize = 20;

/// The last lines a worker wrote to stderr.
#[derive(Debug, Default, Clone)]
pub struct StderrTail(Arc<Mutex<VecDeque<String>>>);

impl StderrTail {
    fn push(&self, line: String) {
        let mut tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let tail = self.0.lock().unwrap_or_else(|p| p.into_inner());
        tail.iter().cloned().collect()
    }

    /// The kept lines as an indented block for an error message, or `""`.
    pub fn render(&self) -> String {
        let lines = self.lines();
        if lines.is_empty() {
            return String::new();
        }
        let mut s = String::from("\nlast lines of its stderr:");
        for l in lines {
            s.push_str("\n  ");
            s.push_str(&l);
        }
        s
    }
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// fd 1.
    Stdout,
    /// fd 2.
    Stderr,
}

/// Reads `stream` to its end, logging each line; stderr lines go to `tail`.
pub async fn pump(
    reader: impl AsyncRead + Unpin,
    stream: Stream,
    worker: Arc<str>,
    tail: Option<StderrTail>,
) {
    let mut lines = LineReader::new(reader, MAX_OUTPUT_LINE);
    while let Some(line) = lines.next().await {
        let text = match line {
            Line::Text(b) => String::from_utf8_lossy(&b)
                .trim_end_matches('\r')
                .to_string(),
            Line::TooLong => format!("(a line over {MAX_OUTPUT_LINE} bytes was dropped)"),
        };
        match stream {
            Stream::Stdout => {
                tracing::info!(target: "flw::worker", worker = %worker, stream = "stdout", "{text}")
            }
            Stream::Stderr => {
                tracing::info!(target: "flw::worker", worker = %worker, stream = "stderr", "{text}")
            }
        }
        if let Some(tail) = &tail {
            tail.push(text);
        }
    }
}
