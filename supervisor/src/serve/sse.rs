//! `GET /v1/runs/{id}/events`: a run's events as server-sent events, each
//! with its id, resumable with `Last-Event-ID` while the events are still
//! in the run's buffer (a `gap` event says how many were lost when not).
//! The stream ends after the `result` event.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tokio::sync::watch;

use super::api::App;
use super::extract::{Path, Query};
use super::runs::{Event, Run};

/// Query parameters of the event stream.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Start after this event id, like `Last-Event-ID` (the header wins).
    after: Option<u64>,
}

struct Cursor {
    run: Arc<Run>,
    after: u64,
    pending: VecDeque<SseEvent>,
    changes: watch::Receiver<u64>,
    done: bool,
}

/// `GET /v1/runs/{id}/events`.
pub async fn events(
    State(app): State<App>,
    Path(id): Path,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> Response {
    let Some(run) = app.runs.get(&id) else {
        return super::api::no_run(&id);
    };
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let after = last.or(q.after).unwrap_or(0);
    let (events, missed, _) = run.events_after(after);
    let mut pending: VecDeque<SseEvent> = VecDeque::new();
    if missed > 0 {
        pending.push_back(gap(missed));
    }
    let mut cursor = Cursor {
        changes: run.subscribe(),
        run,
        after,
        pending,
        done: false,
    };
    cursor.take(events);
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        loop {
            if let Some(ev) = c.pending.pop_front() {
                return Some((Ok::<_, Infallible>(ev), c));
            }
            if c.done {
                return None;
            }
            let (events, missed, ended) = c.run.events_after(c.after);
            if missed > 0 {
                c.pending.push_back(gap(missed));
            }
            if !events.is_empty() {
                c.take(events);
                continue;
            }
            if ended {
                // Everything after `after` was sent, `result` included (a
                // synchronous call has none).
                return None;
            }
            // At shutdown the run is cancelled, so it ends here too.
            if c.changes.changed().await.is_err() {
                return None;
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// The event that says `missed` events fell out of the run's buffer.
fn gap(missed: u64) -> SseEvent {
    SseEvent::default()
        .event("gap")
        .data(format!("{{\"missed\":{missed}}}"))
}

impl Cursor {
    fn take(&mut self, events: Vec<Event>) {
        for e in events {
            self.after = e.id;
            if e.name == "result" {
                self.done = true;
            }
            self.pending.push_back(
                SseEvent::default()
                    .id(e.id.to_string())
                    .event(e.name)
                    .data(&*e.data),
            );
        }
    }
}
