//! The ids of the requests in flight on stdio, so that a second request
//! with the id of one still in flight is answered with an error instead of
//! reaching rmcp. (rmcp keeps one cancellation token per id: a duplicate
//! would replace the first request's, and the first answer to go out would
//! cancel the other request and lose its answer.)
//!
//! An id is in flight from the moment its request is read until its answer
//! goes out, or, when the client cancelled it (so no answer goes out),
//! until its handler has returned.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    ClientNotification, ClientRequest, ProtocolVersion, RequestId, ServerConfig, ServerResult,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, Service};

/// Why an id is still held.
#[derive(Debug, Default)]
struct Held {
    /// No answer has gone out, and the client did not cancel it.
    answer_due: bool,
    /// Its handler is running.
    running: bool,
    /// Its handler has started (a cancel that comes before it must not
    /// free the id: the handler, when it runs, would take a reused id's
    /// place in rmcp and answer for it).
    started: bool,
}

/// The ids in flight, shared by the transport and [`Tracked`].
#[derive(Debug, Clone, Default)]
pub struct InFlight(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    ids: Mutex<HashMap<RequestId, Held>>,
    /// Messages handed to the writer and not written yet.
    writing: std::sync::atomic::AtomicUsize,
    /// Told each time an id is let go or a message written.
    freed: tokio::sync::Notify,
}

/// A message on its way to the client; counts until dropped.
pub struct Writing(Arc<Shared>);

impl Drop for Writing {
    fn drop(&mut self) {
        self.0
            .writing
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        self.0.freed.notify_waiters();
    }
}

impl InFlight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Held>> {
        self.0.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many requests are in flight, and messages not yet written.
    fn count(&self) -> usize {
        self.lock().len() + self.0.writing.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Counts a message handed to the writer until the guard is dropped.
    pub fn writing(&self) -> Writing {
        self.0
            .writing
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Writing(self.0.clone())
    }

    /// Resolves once fewer than `max` requests are in flight (or answers
    /// unwritten). The stdio
    /// transport reads no further line until then: a client that sends
    /// requests and never reads the answers would otherwise make flw hold
    /// a task and an answer for each of them.
    pub async fn room(&self, max: usize) {
        loop {
            let freed = self.0.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if self.count() < max {
                return;
            }
            freed.await;
        }
    }

    fn remove(&self, ids: &mut HashMap<RequestId, Held>, id: &RequestId) {
        if ids.remove(id).is_some() {
            self.0.freed.notify_waiters();
        }
    }

    /// Takes a request's id; false if a request with it is in flight.
    pub fn admit(&self, id: &RequestId) -> bool {
        use std::collections::hash_map::Entry;
        match self.lock().entry(id.clone()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(Held {
                    answer_due: true,
                    running: false,
                    started: false,
                });
                true
            }
        }
    }

    /// The client cancelled `id`, so no answer will go out: the id is free
    /// once its handler has run (rmcp runs the handler of every request it
    /// took, even one cancelled before it started).
    pub fn cancelled(&self, id: &RequestId) {
        let mut ids = self.lock();
        if let Some(held) = ids.get_mut(id) {
            held.answer_due = false;
            if held.started && !held.running {
                self.remove(&mut ids, id);
            }
        }
    }

    /// The answer to `id` is going out.
    pub fn answered(&self, id: &RequestId) {
        let mut ids = self.lock();
        if let Some(held) = ids.get_mut(id) {
            held.answer_due = false;
            if !held.running {
                self.remove(&mut ids, id);
            }
        }
    }

    /// Marks `id`'s handler running until the guard is dropped.
    fn running(&self, id: &RequestId) -> Option<Running> {
        let mut ids = self.lock();
        let held = ids.get_mut(id)?;
        held.running = true;
        held.started = true;
        Some(Running {
            ids: self.clone(),
            id: id.clone(),
        })
    }
}

/// Holds an id while its handler runs.
struct Running {
    ids: InFlight,
    id: RequestId,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut ids = self.ids.lock();
        if let Some(held) = ids.get_mut(&self.id) {
            held.running = false;
            if !held.answer_due {
                self.ids.remove(&mut ids, &self.id);
            }
        }
    }
}

/// A service that tells [`InFlight`] when each request's handler runs.
pub struct Tracked<S> {
    inner: S,
    ids: InFlight,
}

impl<S> Tracked<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, ids: InFlight) -> Self {
        Tracked { inner, ids }
    }
}

impl<S: Service<RoleServer>> Service<RoleServer> for Tracked<S> {
    async fn handle_request(
        &self,
        request: ClientRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        use futures::FutureExt;
        let _running = self.ids.running(&context.id);
        // A panic in a handler (a bug in flw) still answers the request, so
        // the client does not wait forever and the id is let go.
        match std::panic::AssertUnwindSafe(self.inner.handle_request(request, context))
            .catch_unwind()
            .await
        {
            Ok(answer) => answer,
            Err(_) => {
                tracing::error!("an MCP request handler panicked (a bug in flw)");
                Err(ErrorData::internal_error(
                    "flw failed inside while handling this request (a bug in flw; please report it)",
                    None,
                ))
            }
        }
    }

    fn handle_notification(
        &self,
        notification: ClientNotification,
        context: NotificationContext<RoleServer>,
    ) -> impl std::future::Future<Output = Result<(), ErrorData>> + Send + '_ {
        self.inner.handle_notification(notification, context)
    }

    fn get_info(&self) -> ServerConfig {
        self.inner.get_info()
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_free_again_once_answered_or_cancelled_and_its_handler_returned() {
        let ids = InFlight::default();
        let one = RequestId::Number(1);
        assert!(ids.admit(&one));
        assert!(!ids.admit(&one));
        assert!(ids.admit(&RequestId::String("1".into())));
        ids.answered(&one);
        assert!(ids.admit(&one));
        // Cancelled while its handler runs: held until the handler returns.
        let running = ids.running(&one);
        ids.answered(&one);
        assert!(!ids.admit(&one));
        drop(running);
        assert!(ids.admit(&one));
    }

    #[tokio::test]
    async fn room_waits_until_an_id_is_let_go() {
        let ids = InFlight::default();
        assert!(ids.admit(&RequestId::Number(1)));
        assert!(ids.admit(&RequestId::Number(2)));
        let waiting = {
            let ids = ids.clone();
            tokio::spawn(async move { ids.room(2).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "two in flight: no room for a third");
        ids.answered(&RequestId::Number(1));
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("room once one is answered")
            .unwrap();
    }

    #[test]
    fn a_cancel_before_the_handler_starts_holds_the_id_until_it_has_run() {
        let ids = InFlight::default();
        let six = RequestId::Number(6);
        assert!(ids.admit(&six));
        ids.cancelled(&six);
        assert!(!ids.admit(&six), "reused before the cancelled handler ran");
        let running = ids.running(&six).expect("held");
        assert!(!ids.admit(&six), "reused while the cancelled handler runs");
        drop(running);
        assert!(ids.admit(&six), "free once the cancelled handler returned");
    }
}
