//! The runs of `flw serve`: every tool call and flow run started through
//! the JSON API, with an id, a status, its outcome and a bounded buffer of
//! its events for server-sent event streams that resume with
//! `Last-Event-ID`.
//!
//! A run is a spawned task that owns its call: an HTTP handler only waits
//! for it, so a client that goes away (or a `DELETE`) cancels the run's
//! token and the task still sees the kill path through. Synchronous tool
//! calls are listed while they run and forgotten when they end (their
//! caller has the result); tool calls started with `202` and flow runs are
//! kept after they end, up to `runs_kept` of them and for `run_ttl`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::graph::RunError;

/// What a run runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// One tool call.
    Tool,
    /// A flow (agent graph).
    Flow,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Started, not ended.
    Running,
    /// Ended with a result.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ended because it was cancelled.
    Cancelled,
}

/// How a run ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// `Succeeded`, `Failed` or `Cancelled`.
    pub status: Status,
    /// The tool's result, or the flow's final store.
    pub value: Option<Value>,
    /// What went wrong (`{kind, message, traceback?}` in JSON).
    pub error: Option<RunError>,
}

/// One event of a run, as sent on its event stream.
#[derive(Debug, Clone)]
pub struct Event {
    /// Its id on the stream: 1, 2, 3, ... within the run.
    pub id: u64,
    /// The SSE event name: `progress`, `log`, `chunk`, a node event such as
    /// `node_started`, or `result` last.
    pub name: &'static str,
    /// The event as JSON.
    pub data: Arc<str>,
}

/// One run.
#[derive(Debug)]
pub struct Run {
    /// Its id, e.g. `r_3f2a...`.
    pub id: String,
    /// Tool or flow.
    pub kind: Kind,
    /// The tool's or the flow's name.
    pub name: String,
    /// The client address that started it.
    pub client: IpAddr,
    /// Whether it is kept after it ends, with its events (tool calls
    /// started with `202`, and every flow run); a synchronous tool call is
    /// forgotten once its caller has the result.
    pub kept: bool,
    /// Cancelling it stops the run through the kill path.
    pub cancel: CancellationToken,
    created: SystemTime,
    started: Instant,
    state: Mutex<State>,
    /// Bumped at each event and when the run ends.
    changed: watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    outcome: Option<Outcome>,
    ended: Option<Instant>,
    events: VecDeque<Event>,
    next_id: u64,
    capacity: usize,
}

impl State {
    fn push(&mut self, name: &'static str, data: Arc<str>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        if self.events.len() == self.capacity {
            self.events.pop_front();
        }
        self.events.push_back(Event { id, name, data });
        id
    }
}

impl Run {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an event; the oldest is dropped when the buffer is full.
    pub fn push(&self, name: &'static str, data: impl Into<Arc<str>>) {
        let id = self.lock().push(name, data.into());
        self.changed.send_replace(id);
    }

    /// Whether it has ended.
    pub fn ended(&self) -> bool {
        self.lock().outcome.is_some()
    }

    /// Waits until it has ended.
    pub async fn finished(&self) {
        let mut rx = self.changed.subscribe();
        while !self.ended() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// How it ended, once it has.
    pub fn outcome(&self) -> Option<Outcome> {
        self.lock().outcome.clone()
    }

    /// Events after `after` (0: from the first), how many of those were
    /// dropped from the buffer before they could be read, and whether the
    /// run had ended then (so that no event follows these).
    pub fn events_after(&self, after: u64) -> (Vec<Event>, u64, bool) {
        let st = self.lock();
        let first = st.events.front().map_or(st.next_id, |e| e.id);
        let missed = first.saturating_sub(after.saturating_add(1));
        let events = st.events.iter().filter(|e| e.id > after).cloned().collect();
        (events, missed, st.outcome.is_some())
    }

    /// A receiver that changes with each new event.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The run as the JSON API shows it.
    pub fn to_json(&self) -> Value {
        self.json_of(&self.lock())
    }

    fn json_of(&self, st: &State) -> Value {
        let elapsed = st.ended.unwrap_or_else(Instant::now) - self.started;
        let created_ms = self
            .created
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut v = serde_json::json!({
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "status": st.outcome.as_ref().map_or(Status::Running, |o| o.status),
            "created_ms": created_ms,
            "elapsed_ms": elapsed.as_millis() as u64,
            "client": self.client.to_string(),
        });
        if let Some(o) = &st.outcome {
            let key = match self.kind {
                Kind::Tool => "result",
                Kind::Flow => "store",
            };
            if let Some(value) = &o.value {
                v[key] = value.clone();
            }
            if let Some(e) = &o.error {
                v["error"] = serde_json::to_value(e).unwrap_or(Value::Null);
            }
        }
        v
    }
}

/// Limits of the registry.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Ended runs kept.
    pub kept: usize,
    /// How long a finished run is kept.
    pub ttl: Duration,
    /// Events kept per run.
    pub events: usize,
}

/// Every run of one `flw serve`.
#[derive(Debug)]
pub struct Runs {
    limits: Limits,
    inner: Mutex<Inner>,
    /// The number of runs that have not ended, bumped at each change.
    live: watch::Sender<usize>,
}

#[derive(Debug, Default)]
struct Inner {
    runs: HashMap<String, Arc<Run>>,
    /// Ended kept runs, oldest first.
    ended: VecDeque<(Instant, String)>,
}

impl Runs {
    /// An empty registry.
    pub fn new(limits: Limits) -> Runs {
        Runs {
            limits,
            inner: Mutex::new(Inner::default()),
            live: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new run (the caller spawns its task and calls
    /// [`Runs::end`] when it is done).
    pub fn create(&self, kind: Kind, name: &str, client: IpAddr, kept: bool) -> Arc<Run> {
        let run = Arc::new(Run {
            id: format!("r_{}", uuid::Uuid::new_v4().simple()),
            kind,
            name: name.to_string(),
            client,
            kept,
            cancel: CancellationToken::new(),
            created: SystemTime::now(),
            started: Instant::now(),
            state: Mutex::new(State {
                outcome: None,
                ended: None,
                events: VecDeque::new(),
                next_id: 1,
                capacity: if kept { self.limits.events } else { 1 },
            }),
            changed: watch::channel(0).0,
        });
        self.lock().runs.insert(run.id.clone(), run.clone());
        self.live.send_modify(|n| *n += 1);
        run
    }

    /// Records how `run` ended, sends its `result` event, and forgets it
    /// (a synchronous tool call) or keeps it for a while.
    pub fn end(&self, run: &Arc<Run>, outcome: Outcome) {
        {
            // One step: whoever sees the run ended also sees its `result`.
            let mut st = run.lock();
            if st.outcome.is_some() {
                return;
            }
            st.ended = Some(Instant::now());
            st.outcome = Some(outcome);
            if run.kept {
                let data: Arc<str> = run.json_of(&st).to_string().into();
                st.push("result", data);
            }
        }
        run.changed.send_modify(|n| *n += 1); // wakes streams and `finished`
        let now = Instant::now();
        {
            let mut inner = self.lock();
            if run.kept {
                inner.ended.push_back((now, run.id.clone()));
                self.evict(&mut inner, now);
            } else {
                inner.runs.remove(&run.id);
            }
        }
        self.live.send_modify(|n| *n = n.saturating_sub(1));
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((at, id)) = inner.ended.front() {
            let expired = now.duration_since(*at) > self.limits.ttl;
            if inner.ended.len() > self.limits.kept || expired {
                let id = id.clone();
                inner.ended.pop_front();
                inner.runs.remove(&id);
            } else {
                break;
            }
        }
    }

    /// The run with this id, if it is running or still kept.
    pub fn get(&self, id: &str) -> Option<Arc<Run>> {
        let mut inner = self.lock();
        self.evict(&mut inner, Instant::now());
        inner.runs.get(id).cloned()
    }

    /// Every run kept, the running ones first, newest first within each.
    pub fn list(&self) -> Vec<Arc<Run>> {
        let mut inner = self.lock();
        self.evict(&mut inner, Instant::now());
        let mut all: Vec<Arc<Run>> = inner.runs.values().cloned().collect();
        drop(inner);
        all.sort_by_key(|r| (r.ended(), std::cmp::Reverse(r.started)));
        all
    }

    /// Runs that have not ended.
    pub fn live(&self) -> usize {
        *self.live.borrow()
    }

    /// Waits until no run is left running, or `deadline`; true if none is.
    pub async fn drained(&self, deadline: tokio::time::Instant) -> bool {
        let mut rx = self.live.subscribe();
        let none_left = tokio::time::timeout_at(deadline, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        none_left
    }

    /// Cancels every run that has not ended.
    pub fn cancel_all(&self) {
        for run in self.lock().runs.values() {
            run.cancel.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(kept: usize, events: usize) -> Runs {
        Runs::new(Limits {
            kept,
            ttl: Duration::from_secs(60),
            events,
        })
    }

    fn ok() -> Outcome {
        Outcome {
            status: Status::Succeeded,
            value: Some(Value::from(1)),
            error: None,
        }
    }

    #[test]
    fn the_buffer_keeps_the_last_events_and_counts_the_missed() {
        let r = runs(10, 3);
        let run = r.create(Kind::Tool, "t", [127, 0, 0, 1].into(), true);
        for i in 0..5 {
            run.push("progress", format!("{{\"n\":{i}}}"));
        }
        let (events, missed, ended) = run.events_after(0);
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [3, 4, 5]);
        assert_eq!((missed, ended), (2, false));
        let (events, missed, _) = run.events_after(3);
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(missed, 0);
    }

    #[test]
    fn sync_runs_are_forgotten_and_kept_ones_kept_up_to_the_limit() {
        let r = runs(2, 8);
        let sync = r.create(Kind::Tool, "t", [127, 0, 0, 1].into(), false);
        assert_eq!(r.live(), 1);
        r.end(&sync, ok());
        assert!(r.get(&sync.id).is_none());
        let ids: Vec<String> = (0..3)
            .map(|_| {
                let run = r.create(Kind::Flow, "f", [127, 0, 0, 1].into(), true);
                r.end(&run, ok());
                run.id.clone()
            })
            .collect();
        assert_eq!(r.live(), 0);
        assert!(r.get(&ids[0]).is_none(), "the oldest is evicted");
        let kept = r.get(&ids[2]).unwrap();
        assert_eq!(kept.to_json()["status"], "succeeded");
        assert_eq!(kept.to_json()["store"], 1);
        let (events, _, ended) = kept.events_after(0);
        assert!(ended);
        assert_eq!(events.last().unwrap().name, "result");
    }
}
