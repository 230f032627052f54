//! The listener: accepts connections and serves HTTP/1.1 on each with
//! hyper, with a deadline for a request's headers (slow clients), a token
//! per connection that is cancelled when it closes (so that runs can end
//! with their client), and graceful shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What a handler knows of the connection its request came on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Cancelled when the connection closes.
    pub closed: CancellationToken,
}

/// Serves `app` on `listener` until `stop` is cancelled; then stops
/// accepting and returns the connections still open, for
/// [`GracefulShutdown::shutdown`].
pub async fn accept(
    listener: TcpListener,
    app: axum::Router,
    header_timeout: Duration,
    stop: CancellationToken,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, go on.
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            peer,
            closed: CancellationToken::new(),
        };
        let closed = info.closed.clone();
        let service =
            app.clone()
                .map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(info.clone());
                    req
                });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection from {peer}: {e}");
            }
            closed.cancel();
        });
    }
    graceful
}
