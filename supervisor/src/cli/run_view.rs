//! What `flw run` shows on stderr while a flow runs: a live view redrawn in
//! place on a terminal, plain lines otherwise, or the events as JSON lines.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;

use serde_json::Value;

use crate::graph::{RunError, RunEvent, RunStatus, Stamped};

/// Rows the live view keeps on screen; older finished rows are folded.
const VIEW_ROWS: usize = 16;
const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// How `flw run` reports events on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EventsFormat {
    /// A live view of each node's state, timing and progress, redrawn in place.
    View,
    /// One line per event.
    Plain,
    /// One JSON object per event (see protocol/GRAPHS.md, "Events").
    Jsonl,
    /// Nothing.
    None,
}

impl EventsFormat {
    /// `view` on a terminal, `plain` otherwise.
    pub fn default_for_stderr() -> EventsFormat {
        if std::io::stderr().is_terminal() {
            EventsFormat::View
        } else {
            EventsFormat::Plain
        }
    }
}

/// The state of the display.
pub struct View {
    format: EventsFormat,
    rows: Vec<Row>,
    index: HashMap<String, usize>,
    drawn: usize,
    dirty: bool,
    flow: String,
    steps: u64,
    began: Instant,
    frame: usize,
    mid_line: bool,
    summary: Option<String>,
}

struct Row {
    path: String,
    state: State,
    began: Instant,
    ms: Option<u64>,
    detail: String,
    items: Option<(usize, usize)>,
}

enum State {
    Running,
    Retrying(u32),
    Done(String),
    Failed,
}

impl View {
    /// An empty view that writes in `format`.
    pub fn new(format: EventsFormat) -> View {
        View {
            format,
            rows: Vec::new(),
            index: HashMap::new(),
            drawn: 0,
            dirty: false,
            flow: String::new(),
            steps: 0,
            began: Instant::now(),
            frame: 0,
            mid_line: false,
            summary: None,
        }
    }

    /// Takes one event into account (and prints it, unless live).
    pub fn event(&mut self, ev: &Stamped) {
        match self.format {
            EventsFormat::None => {}
            EventsFormat::Jsonl => eprintln!("{}", ev.to_json()),
            EventsFormat::Plain => self.plain(ev),
            EventsFormat::View => {
                self.update(&ev.event);
                self.dirty = true;
            }
        }
    }

    /// Redraws the live view if something changed (or to turn the spinner).
    pub fn tick(&mut self) {
        if self.format == EventsFormat::View {
            self.frame += 1;
            if self.dirty || self.rows.iter().any(|r| matches!(r.state, State::Running)) {
                self.draw();
            }
        }
    }

    /// Draws the last state and the summary line.
    pub fn finish(&mut self) {
        if self.format == EventsFormat::View {
            self.draw();
            if let Some(s) = self.summary.take() {
                eprintln!("{s}");
            }
        }
    }

    fn row(&mut self, path: &str) -> &mut Row {
        let i = *self.index.entry(path.to_string()).or_insert_with(|| {
            self.rows.push(Row {
                path: path.to_string(),
                state: State::Running,
                began: Instant::now(),
                ms: None,
                detail: String::new(),
                items: None,
            });
            self.rows.len() - 1
        });
        &mut self.rows[i]
    }

    fn update(&mut self, ev: &RunEvent) {
        match ev {
            RunEvent::RunStarted { flow, .. } => self.flow = flow.clone(),
            RunEvent::NodeStarted { path, step, .. } => {
                self.steps = *step;
                let row = self.row(path);
                row.state = State::Running;
                row.began = Instant::now();
                row.ms = None;
                row.detail.clear();
            }
            RunEvent::NodeRetry {
                path,
                attempt,
                error,
                ..
            } => {
                let row = self.row(path);
                row.state = State::Retrying(*attempt);
                row.detail = short(&format!("{}: {}", error.kind, error.message));
            }
            RunEvent::NodeFallback { path, error } => {
                self.row(path).detail = short(&format!("fallback after {}", error.kind));
            }
            RunEvent::NodeFinished { path, action, ms } => {
                let row = self.row(path);
                row.state = State::Done(action.clone());
                row.ms = Some(*ms);
            }
            RunEvent::NodeFailed { path, error, ms } => {
                let row = self.row(path);
                row.state = State::Failed;
                row.ms = Some(*ms);
                row.detail = short(&format!("{}: {}", error.kind, error.message));
            }
            RunEvent::BatchItems { path, total } => self.row(path).items = Some((0, *total)),
            RunEvent::ItemFinished {
                path, done, total, ..
            } => {
                let batch = path.rsplit_once('[').map_or(path.as_str(), |(b, _)| b);
                self.row(batch).items = Some((*done, *total));
            }
            RunEvent::MergeConflict { path, keys } => {
                self.row(path).detail =
                    short(&format!("merged; later branch won {}", keys.join(", ")));
            }
            RunEvent::Progress {
                path,
                progress,
                total,
                message,
            } => {
                let target = path
                    .rsplit_once('[')
                    .map_or(path.as_str(), |(b, _)| b)
                    .to_string();
                self.row(&target).detail =
                    short(&progress_text(progress, total.as_ref(), message.as_deref()));
            }
            RunEvent::Chunk { path, data } => {
                let text = match data {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let row = self.row(path);
                row.detail.push_str(&text);
                row.detail = tail(&row.detail.replace('\n', " "), 60);
            }
            RunEvent::Log { .. } => {}
            RunEvent::RunFinished {
                status,
                steps,
                ms,
                error,
                ..
            } => {
                self.summary = Some(summary(&self.flow, *status, *steps, *ms, error.as_ref()));
            }
        }
    }

    fn draw(&mut self) {
        let mut out = String::new();
        if self.drawn > 0 {
            out.push_str(&format!("\x1b[{}A", self.drawn));
        }
        let mut lines = vec![format!(
            "flow {} · step {} · {:.1}s",
            self.flow,
            self.steps,
            self.began.elapsed().as_secs_f64()
        )];
        let hidden = self.rows.len().saturating_sub(VIEW_ROWS);
        if hidden > 0 {
            lines.push(format!("  … {hidden} earlier node visits"));
        }
        let spin = SPINNER[self.frame % SPINNER.len()];
        for r in self.rows.iter().skip(hidden) {
            let (mark, state) = match &r.state {
                State::Running => (spin, "running".to_string()),
                State::Retrying(n) => ('↻', format!("retrying (attempt {n} failed)")),
                State::Done(a) if a == "default" => ('✓', "done".to_string()),
                State::Done(a) => ('✓', format!("→ {a}")),
                State::Failed => ('✗', "failed".to_string()),
            };
            let ms = r.ms.unwrap_or_else(|| r.began.elapsed().as_millis() as u64);
            let mut line = format!("  {mark} {:<32} {:<24} {:>7}", r.path, state, fmt_ms(ms));
            if let Some((done, total)) = r.items {
                line.push_str(&format!("  {done}/{total} items"));
            }
            if !r.detail.is_empty() {
                line.push_str("  ");
                line.push_str(&r.detail);
            }
            lines.push(line);
        }
        for l in &lines {
            out.push_str("\x1b[2K");
            out.push_str(l);
            out.push('\n');
        }
        // Lines left over from a longer frame.
        for _ in lines.len()..self.drawn {
            out.push_str("\x1b[2K\n");
        }
        let drawn = lines.len().max(self.drawn);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
        self.drawn = drawn;
        self.dirty = false;
    }

    fn line(&mut self, t_ms: u64, what: &str, text: &str) {
        if self.mid_line {
            eprintln!();
            self.mid_line = false;
        }
        eprintln!("{:>8}  {what:<8} {text}", fmt_ms(t_ms));
    }

    fn plain(&mut self, ev: &Stamped) {
        let t = ev.t_ms;
        match &ev.event {
            RunEvent::RunStarted { flow, .. } => {
                self.flow = flow.clone();
                self.line(t, "run", &format!("flow {flow}"));
            }
            RunEvent::NodeStarted { path, kind, .. } => {
                let what = if *kind == "node" {
                    String::new()
                } else {
                    format!(" ({kind})")
                };
                self.line(t, "start", &format!("{path}{what}"));
            }
            RunEvent::NodeFinished { path, action, ms } => {
                let to = if action == "default" {
                    String::new()
                } else {
                    format!(" -> {action}")
                };
                self.line(t, "done", &format!("{path}{to} ({})", fmt_ms(*ms)));
            }
            RunEvent::NodeFailed { path, error, .. } => {
                self.line(
                    t,
                    "fail",
                    &format!("{path}: {}: {}", error.kind, error.message),
                );
            }
            RunEvent::NodeRetry {
                path,
                attempt,
                error,
                wait_ms,
            } => self.line(
                t,
                "retry",
                &format!(
                    "{path}: attempt {attempt} failed ({}: {}); again in {}",
                    error.kind,
                    error.message,
                    fmt_ms(*wait_ms)
                ),
            ),
            RunEvent::NodeFallback { path, error } => {
                self.line(
                    t,
                    "fallback",
                    &format!("{path} after {}: {}", error.kind, error.message),
                );
            }
            RunEvent::BatchItems { path, total } => {
                self.line(t, "items", &format!("{path}: {total}"))
            }
            RunEvent::ItemFinished {
                path, done, total, ..
            } => {
                let step = (*total / 10).max(1);
                if *total <= 20 || done % step == 0 || done == total {
                    let batch = path.rsplit_once('[').map_or(path.as_str(), |(b, _)| b);
                    self.line(t, "items", &format!("{batch}: {done}/{total} done"));
                }
            }
            RunEvent::MergeConflict { path, keys } => self.line(
                t,
                "merge",
                &format!(
                    "{path}: {} changed by more than one branch; the later-listed branch won",
                    keys.join(", ")
                ),
            ),
            RunEvent::Progress {
                path,
                progress,
                total,
                message,
            } => {
                self.line(
                    t,
                    "progress",
                    &format!(
                        "{path} {}",
                        progress_text(progress, total.as_ref(), message.as_deref())
                    ),
                );
            }
            RunEvent::Log { .. } => {} // printed by the logger already
            RunEvent::Chunk { data, .. } => {
                match data {
                    Value::String(s) => eprint!("{s}"),
                    other => eprint!("{other}"),
                }
                self.mid_line = true;
            }
            RunEvent::RunFinished {
                status,
                steps,
                ms,
                error,
                ..
            } => {
                let s = summary(&self.flow, *status, *steps, *ms, error.as_ref());
                self.line(t, "end", &s);
            }
        }
    }
}

fn summary(flow: &str, status: RunStatus, steps: u64, ms: u64, error: Option<&RunError>) -> String {
    let mut s = format!(
        "flow {flow} {} after {} in {}",
        status.as_str(),
        crate::plural::count(steps, "step", "steps"),
        fmt_ms(ms)
    );
    if let (RunStatus::Cancelled, Some(e)) = (status, error) {
        s.push_str(&format!(": {}", e.message));
    }
    s
}

fn progress_text(
    progress: &serde_json::Number,
    total: Option<&serde_json::Number>,
    message: Option<&str>,
) -> String {
    let mut s = progress.to_string();
    if let Some(t) = total {
        s.push_str(&format!("/{t}"));
    }
    if let Some(m) = message {
        s.push_str(&format!(": {m}"));
    }
    s
}

fn fmt_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.2} s", ms as f64 / 1000.0)
    }
}

fn short(s: &str) -> String {
    let first = s.lines().next().unwrap_or_default();
    match first.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &first[..i]),
        None => first.to_string(),
    }
}

fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        s.to_string()
    } else {
        s.chars().skip(count - n).collect()
    }
}
