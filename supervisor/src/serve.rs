//! `flw serve`: the pools behind one HTTP listener, for many clients.
//!
//! - `/mcp`: MCP Streamable HTTP through rmcp's server transport, with
//!   sessions (protocol 2025-11-25 and before) and without (2026-07-28).
//! - `/v1/...`: a JSON API for tools, flows and runs, with server-sent
//!   events per run (`api`, `runs`, `sse`; described in `openapi.json`).
//! - `/metrics`, `/healthz`, `/readyz`, `/openapi.json`.
//!
//! Every request passes the [`guard`]: `Host` and `Origin` checks, the
//! bearer token, and a limit per client address. Shutdown drains: the
//! listener closes, calls and runs in flight get the drain time, the rest
//! are cancelled through the kill path, then every worker stops.

pub mod api;
mod body;
pub mod conn;
mod extract;
pub mod guard;
mod host;
mod json_values;
pub mod runs;
mod sse;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::ServeConfig;
use crate::mcp::McpServer;
use crate::metrics::Metrics;
use crate::router::Router;
use api::App;
use guard::{ClientLimits, Guard, McpGate};
use runs::{Limits, Runs};

/// A bound listener with everything it serves, ready to run.
pub struct Server {
    listener: TcpListener,
    app: App,
    routes: axum::Router,
    cfg: ServeConfig,
    mcp_stop: CancellationToken,
    /// MCP POSTs not answered yet.
    mcp_in_flight: Arc<tokio::sync::watch::Sender<usize>>,
}

impl Server {
    /// Binds `cfg.listen` and builds the routes over `router`; `token` is
    /// the bearer token clients must send, if any.
    pub async fn bind(
        router: Router,
        cfg: ServeConfig,
        token: Option<String>,
    ) -> anyhow::Result<Server> {
        let listener = listen(cfg.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.listen))?;
        let metrics = router
            .metrics()
            .cloned()
            .unwrap_or_else(|| Arc::new(Metrics::new()));
        count_reloads(&router, metrics.clone());
        let app = App {
            router: router.clone(),
            runs: Arc::new(Runs::new(Limits {
                kept: cfg.runs_kept,
                ttl: cfg.run_ttl,
                events: cfg.run_events,
            })),
            metrics,
            limits: Arc::new(ClientLimits::new(cfg.client_limit)),
            stopping: CancellationToken::new(),
            on_disconnect: cfg.on_disconnect,
        };
        let guard = Arc::new(Guard::new(
            token,
            cfg.listen.ip().is_loopback(),
            &cfg.allowed_hosts,
            &cfg.allowed_origins,
        ));
        let mcp_stop = CancellationToken::new();
        let mcp = mcp_service(router, &guard, &cfg, mcp_stop.clone());
        let gate = McpGate {
            limits: app.limits.clone(),
            max_body: cfg.max_body_bytes,
            in_flight: Arc::new(tokio::sync::watch::channel(0).0),
        };
        let mcp_in_flight = gate.in_flight.clone();
        let routes = routes(app.clone(), guard, mcp, gate, &cfg);
        Ok(Server {
            listener,
            app,
            routes,
            cfg,
            mcp_stop,
            mcp_in_flight,
        })
    }

    /// The address it listens on (the port is known here when it was 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` resolves, then drains: no new connections or
    /// calls; calls and runs in flight get `drain` to end; the rest are
    /// cancelled (kill path); every worker stops. Returns once all is done.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let stop_accepting = CancellationToken::new();
        let accept = tokio::spawn(conn::accept(
            self.listener,
            self.routes,
            self.cfg.client_timeout,
            stop_accepting.clone(),
        ));
        shutdown.await;
        let app = self.app;
        app.stopping.cancel();
        stop_accepting.cancel();
        // Connections finish the request they are on and close: keep-alive
        // ends, so no new request arrives while calls drain.
        let closing = accept.await.ok().map(|g| tokio::spawn(g.shutdown()));
        let deadline = tokio::time::Instant::now() + self.cfg.drain;
        tracing::info!(
            "shutting down: {} and {} in flight get {:?} to end",
            crate::plural::count(app.runs.live() as u64, "run", "runs"),
            crate::plural::count(in_flight(&app.router) as u64, "call", "calls"),
            self.cfg.drain
        );
        let drained =
            app.runs.drained(deadline).await && calls_drained(&app.router, deadline).await;
        if !drained {
            tracing::warn!("the drain time is over: cancelling what is left");
        }
        app.runs.cancel_all();
        app.router.shutdown(Duration::ZERO).await;
        // Every call has ended: let the MCP handlers answer theirs before
        // rmcp's sessions and streams are closed.
        let mut mcp = self.mcp_in_flight.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(5), mcp.wait_for(|n| *n == 0)).await;
        self.mcp_stop.cancel();
        // Let the last responses (cancelled calls, ended event streams) out.
        if let Some(closing) = closing {
            if tokio::time::timeout(Duration::from_secs(5), closing)
                .await
                .is_err()
            {
                tracing::warn!("some connections did not close within 5 s");
            }
        }
    }
}

/// Connections the kernel may hold before they are accepted: hundreds of
/// clients connecting at once must not overflow it (tokio's default is 128).
const BACKLOG: u32 = 4096;

/// A listener on `addr` with a [`BACKLOG`]-deep queue.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Calls in flight or queued in every pool.
fn in_flight(router: &Router) -> usize {
    router
        .pools()
        .iter()
        .map(|p| p.in_flight() + p.queued())
        .sum()
}

/// Waits until no call is in flight, or `deadline`; true if none is.
async fn calls_drained(router: &Router, deadline: tokio::time::Instant) -> bool {
    while in_flight(router) > 0 {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Counts each pool's reloads in `metrics`.
fn count_reloads(router: &Router, metrics: Arc<Metrics>) {
    let mut events = router.events();
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(crate::pool::PoolEvent::Reloaded { pool, .. }) => {
                    metrics.reload(&pool, "swapped")
                }
                Ok(crate::pool::PoolEvent::ReloadFailed { pool, .. }) => {
                    metrics.reload(&pool, "failed")
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    });
}

type Mcp = StreamableHttpService<McpServer, LocalSessionManager>;

/// rmcp's Streamable HTTP service, with its `Host` and `Origin` checks on.
fn mcp_service(router: Router, guard: &Guard, cfg: &ServeConfig, stop: CancellationToken) -> Mcp {
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(guard.rmcp_origins())
        .with_cancellation_token(stop);
    config = if guard.hosts().is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(guard.hosts().iter().cloned())
    };
    config.max_request_body_bytes = cfg.max_body_bytes;
    StreamableHttpService::new(
        move || Ok(McpServer::new(router.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    )
}

fn routes(app: App, guard: Arc<Guard>, mcp: Mcp, gate: McpGate, cfg: &ServeConfig) -> axum::Router {
    use axum::middleware::from_fn_with_state;
    let mcp = axum::Router::new()
        .route_service("/mcp", mcp)
        .layer(from_fn_with_state(gate, guard::mcp_gate));
    axum::Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics))
        .route("/openapi.json", get(api::openapi))
        .route("/v1/tools", get(api::list_tools))
        .route("/v1/pools", get(api::list_pools))
        .route("/v1/tools/{name}/call", post(api::call_tool))
        .route("/v1/flows", get(api::list_flows))
        .route("/v1/flows/{name}/runs", post(api::start_flow))
        .route("/v1/runs", get(api::list_runs))
        .route("/v1/runs/{id}", get(api::get_run).delete(api::cancel_run))
        .route("/v1/runs/{id}/events", get(sse::events))
        .with_state(app)
        .merge(mcp)
        .layer(from_fn_with_state(
            body::BodyLimits {
                max: cfg.max_body_bytes,
                deadline: cfg.client_timeout,
            },
            body::limit,
        ))
        .layer(from_fn_with_state(guard, guard::check))
}
