//! A call's live events on their way to one consumer, held in bounded
//! memory without ever making the worker's reader wait. (The stream is
//! generic over its [`Item`]: a flow's progress messages for MCP use it
//! too.)
//!
//! A worker's reader hands each event over with [`EventTx::send`], which
//! never blocks: the reader serves every call of its worker (all of them
//! in shared mode), so one slow consumer must not stall the others, and it
//! must not make flw hold an unbounded backlog either. So:
//! - progress keeps only its newest values (a few, so that a consumer
//!   slow for a moment still sees each step; one that falls behind skips
//!   to the latest reports);
//! - log lines and chunks queue up to [`Limits`] (a count and a size); past
//!   them the oldest are dropped, and the consumer gets a
//!   [`Received::Gap`] with how many, where they were;
//! - the order is kept: an event is received after every event sent
//!   before it, and the stream ends only once every sender is gone. The
//!   worker drops its sender as the call ends, so a consumer that reads to
//!   the end (as `mcp.rs` does before it answers) has passed on every
//!   event the tool sent before its result.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::Notify;

use super::CallEvent;

/// How much a stream holds for a consumer that falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Progress events held at most (at least 1): when more come, the
    /// oldest waiting one is dropped.
    pub progress: usize,
    /// Log lines and chunks held at most.
    pub events: usize,
    /// The approximate size in bytes of the progress events held, and
    /// apart of the log lines and chunks held (the newest event is always
    /// kept, however large: a worker's line is bounded on its own).
    pub bytes: usize,
}

impl Default for Limits {
    /// 16 progress events; 1024 log lines and chunks or 256 KiB of them,
    /// whichever comes first.
    fn default() -> Self {
        Limits {
            progress: 16,
            events: 1024,
            bytes: 256 * 1024,
        }
    }
}

/// What a stream carries: whether an item only matters as the newest of
/// its kind (progress), and about how much memory it holds.
pub trait Item {
    /// Whether a newer item of this kind replaces it while it waits.
    fn coalesces(&self) -> bool;
    /// About how many bytes it holds.
    fn size(&self) -> usize;
}

impl Item for CallEvent {
    fn coalesces(&self) -> bool {
        matches!(self, CallEvent::Progress { .. })
    }

    fn size(&self) -> usize {
        size_of_event(self)
    }
}

/// A line of text, e.g. a progress message: never coalesced.
impl Item for String {
    fn coalesces(&self) -> bool {
        false
    }

    fn size(&self) -> usize {
        64 + self.len()
    }
}

/// What a consumer receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Received<T = CallEvent> {
    /// The next event.
    Event(T),
    /// This many items (log lines and chunks) were dropped here because
    /// the consumer read more slowly than they were sent.
    Gap(u64),
}

/// The sending half, one per place that reports a call's events; cheap to
/// clone. The stream ends when the last clone is dropped.
pub struct EventTx<T = CallEvent> {
    shared: Arc<Shared<T>>,
}

/// The receiving half.
pub struct EventRx<T = CallEvent> {
    shared: Arc<Shared<T>>,
}

/// A new stream with the default [`Limits`].
pub fn channel<T: Item>() -> (EventTx<T>, EventRx<T>) {
    with_limits(Limits::default())
}

/// A new stream that holds at most `limits`.
pub fn with_limits<T: Item>(limits: Limits) -> (EventTx<T>, EventRx<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            limits,
            progress: VecDeque::new(),
            progress_bytes: 0,
            queue: VecDeque::new(),
            queued: 0,
            bytes: 0,
            next: 0,
            senders: 1,
            receiving: true,
        }),
        wake: Notify::new(),
    });
    (
        EventTx {
            shared: shared.clone(),
        },
        EventRx { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Wakes the receiver after a send, or when the last sender is gone.
    wake: Notify,
}

impl<T> Shared<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An entry of the queue: an event with its size, or a gap (only ever at
/// the front, since only the oldest entries are dropped).
enum Queued<T> {
    Event(T, usize),
    Gap(u64),
}

struct State<T> {
    limits: Limits,
    /// The newest progress events, each with its place in the order and
    /// its size.
    progress: VecDeque<(u64, T, usize)>,
    /// Their size.
    progress_bytes: usize,
    /// Log lines, chunks and a gap, oldest first, each with its place.
    queue: VecDeque<(u64, Queued<T>)>,
    /// Events in `queue` (gaps not counted).
    queued: usize,
    /// Their size.
    bytes: usize,
    /// The place of the next event sent.
    next: u64,
    senders: usize,
    receiving: bool,
}

impl<T: Item> State<T> {
    fn push(&mut self, event: T) {
        let place = self.next;
        self.next += 1;
        let size = event.size();
        if event.coalesces() {
            while !self.progress.is_empty()
                && (self.progress.len() >= self.limits.progress.max(1)
                    || self.progress_bytes + size > self.limits.bytes)
            {
                if let Some((_, _, old)) = self.progress.pop_front() {
                    self.progress_bytes -= old;
                }
            }
            self.progress_bytes += size;
            self.progress.push_back((place, event, size));
            return;
        }
        while self.queued > 0
            && (self.queued >= self.limits.events || self.bytes + size > self.limits.bytes)
        {
            self.drop_oldest();
        }
        self.queued += 1;
        self.bytes += size;
        self.queue.push_back((place, Queued::Event(event, size)));
    }

    /// Drops the oldest event, folding it into the gap at the front.
    fn drop_oldest(&mut self) {
        let mut gap = None;
        if let Some((place, Queued::Gap(n))) = self.queue.front() {
            gap = Some((*place, *n));
            self.queue.pop_front();
        }
        if let Some((place, Queued::Event(_, size))) = self.queue.pop_front() {
            self.queued -= 1;
            self.bytes -= size;
            let (at, n) = gap.unwrap_or((place, 0));
            gap = Some((at, n + 1));
        }
        if let Some((at, n)) = gap {
            self.queue.push_front((at, Queued::Gap(n)));
        }
    }

    /// The oldest entry, progress included.
    fn pop(&mut self) -> Option<Received<T>> {
        let progress_first = match (self.progress.front(), self.queue.front()) {
            (Some((p, _, _)), Some((q, _))) => p < q,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if progress_first {
            let (_, ev, size) = self.progress.pop_front()?;
            self.progress_bytes -= size;
            return Some(Received::Event(ev));
        }
        match self.queue.pop_front()? {
            (_, Queued::Gap(n)) => Some(Received::Gap(n)),
            (_, Queued::Event(ev, size)) => {
                self.queued -= 1;
                self.bytes -= size;
                Some(Received::Event(ev))
            }
        }
    }
}

impl<T: Item> EventTx<T> {
    /// Hands an event over; never waits (see the module docs). Dropped if
    /// the receiver is gone.
    pub fn send(&self, event: T) {
        {
            let mut st = self.shared.lock();
            if !st.receiving {
                return;
            }
            st.push(event);
        }
        self.shared.wake.notify_one();
    }
}

impl<T> Clone for EventTx<T> {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        EventTx {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for EventTx<T> {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.wake.notify_one();
        }
    }
}

impl<T> std::fmt::Debug for EventTx<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventTx").finish_non_exhaustive()
    }
}

impl<T: Item> EventRx<T> {
    /// The next event or gap; `None` once every sender is gone and all was
    /// received.
    pub async fn recv(&mut self) -> Option<Received<T>> {
        loop {
            {
                let mut st = self.shared.lock();
                if let Some(r) = st.pop() {
                    return Some(r);
                }
                if st.senders == 0 {
                    return None;
                }
            }
            // A send between the unlock and here leaves a permit: no wake
            // is lost (there is one receiver).
            self.shared.wake.notified().await;
        }
    }

    /// The next event or gap if one is there now.
    pub fn try_recv(&mut self) -> Option<Received<T>> {
        self.shared.lock().pop()
    }
}

impl<T> Drop for EventRx<T> {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.receiving = false;
        st.progress.clear();
        st.progress_bytes = 0;
        st.queue.clear();
    }
}

/// About how many bytes an event holds: its text, plus a fixed cost.
fn size_of_event(event: &CallEvent) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match event {
            CallEvent::Progress { message, .. } => message.as_ref().map_or(0, String::len),
            CallEvent::Log { message, .. } => message.len(),
            CallEvent::Chunk(value) => size_of_value(value),
        }
}

/// About how many bytes a JSON value holds in memory.
fn size_of_value(value: &Value) -> usize {
    const NODE: usize = std::mem::size_of::<Value>();
    NODE + match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(size_of_value).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + size_of_value(v)).sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flw_protocol::LogLevel;
    use serde_json::{json, Number};

    fn progress(n: u64) -> CallEvent {
        CallEvent::Progress {
            progress: Number::from(n),
            total: None,
            message: None,
        }
    }

    fn chunk(s: &str) -> CallEvent {
        CallEvent::Chunk(json!(s))
    }

    fn drain(rx: &mut EventRx) -> Vec<Received> {
        std::iter::from_fn(|| rx.try_recv()).collect()
    }

    fn ev(e: CallEvent) -> Received {
        Received::Event(e)
    }

    fn limits(progress: usize, events: usize, bytes: usize) -> Limits {
        Limits {
            progress,
            events,
            bytes,
        }
    }

    #[test]
    fn progress_keeps_only_the_newest_values_in_their_place() {
        let (tx, mut rx) = with_limits(limits(1, 100, usize::MAX));
        tx.send(progress(1));
        tx.send(chunk("a"));
        tx.send(progress(2));
        tx.send(progress(3));
        tx.send(chunk("b"));
        tx.send(progress(4));
        // 1, 2 and 3 were replaced by 4, which comes after everything sent
        // before it.
        assert_eq!(
            drain(&mut rx),
            [ev(chunk("a")), ev(chunk("b")), ev(progress(4))]
        );
        tx.send(progress(5));
        tx.send(chunk("c"));
        assert_eq!(drain(&mut rx), [ev(progress(5)), ev(chunk("c"))]);

        let (tx, mut rx) = with_limits(limits(2, 100, usize::MAX));
        for n in 1..=4 {
            tx.send(progress(n));
            tx.send(chunk(&n.to_string()));
        }
        assert_eq!(
            drain(&mut rx),
            [
                ev(chunk("1")),
                ev(chunk("2")),
                ev(progress(3)),
                ev(chunk("3")),
                ev(progress(4)),
                ev(chunk("4"))
            ]
        );
    }

    #[test]
    fn large_progress_messages_count_against_the_size_limit() {
        let (tx, mut rx) = with_limits(limits(16, 100, 1000));
        let report = |n: u64| CallEvent::Progress {
            progress: Number::from(n),
            total: None,
            message: Some("m".repeat(400)),
        };
        for n in 1..=5 {
            tx.send(report(n));
        }
        assert_eq!(drain(&mut rx), [ev(report(4)), ev(report(5))]);
    }

    #[test]
    fn a_consumer_that_keeps_up_sees_every_progress_step() {
        let (tx, mut rx) = channel();
        for n in 1..=16 {
            tx.send(progress(n));
        }
        let got = drain(&mut rx);
        assert_eq!(got, (1..=16).map(|n| ev(progress(n))).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_says_how_many_where() {
        let (tx, mut rx) = with_limits(limits(16, 3, usize::MAX));
        for s in ["a", "b", "c", "d", "e"] {
            tx.send(chunk(s));
        }
        tx.send(CallEvent::Log {
            level: LogLevel::Info,
            message: "f".into(),
        });
        assert_eq!(
            drain(&mut rx),
            [
                Received::Gap(3),
                ev(chunk("d")),
                ev(chunk("e")),
                ev(CallEvent::Log {
                    level: LogLevel::Info,
                    message: "f".into()
                }),
            ]
        );
        // Room again: nothing more is dropped.
        tx.send(chunk("g"));
        assert_eq!(drain(&mut rx), [ev(chunk("g"))]);
    }

    #[test]
    fn the_size_limit_counts_bytes_but_always_keeps_one_event() {
        let (tx, mut rx) = with_limits(limits(16, 100, 1000));
        let big = "x".repeat(600);
        tx.send(chunk(&big));
        tx.send(chunk(&big));
        tx.send(chunk(&"y".repeat(5000)));
        assert_eq!(
            drain(&mut rx),
            [Received::Gap(2), ev(chunk(&"y".repeat(5000)))]
        );
    }

    #[test]
    fn a_gap_before_progress_comes_first() {
        let (tx, mut rx) = with_limits(limits(16, 1, usize::MAX));
        tx.send(chunk("a"));
        tx.send(progress(1));
        tx.send(chunk("b"));
        assert_eq!(
            drain(&mut rx),
            [Received::Gap(1), ev(progress(1)), ev(chunk("b"))]
        );
    }

    #[tokio::test]
    async fn the_stream_ends_after_the_last_sender_and_the_last_event() {
        let (tx, mut rx) = channel();
        let tx2 = tx.clone();
        tx.send(chunk("a"));
        drop(tx);
        tx2.send(progress(1));
        let waiter = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(r) = rx.recv().await {
                got.push(r);
            }
            got
        });
        tokio::task::yield_now().await;
        tx2.send(chunk("b"));
        drop(tx2);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the stream ends")
            .unwrap();
        assert_eq!(got.last(), Some(&ev(chunk("b"))));
        assert!(got.contains(&ev(chunk("a"))));
    }

    #[test]
    fn a_receiver_that_left_drops_what_is_sent() {
        let (tx, rx) = channel();
        drop(rx);
        for _ in 0..10_000 {
            tx.send(chunk("a"));
        }
        assert_eq!(tx.shared.lock().queue.len(), 0);
    }
}
