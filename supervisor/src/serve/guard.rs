//! Who may talk to `flw serve`: the `Host` check against DNS rebinding,
//! the `Origin` allow-list, the bearer token, and each client address's
//! limit of requests in flight.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::api::ApiError;
use super::host;
use crate::excerpt;

/// The checks every request passes before it is served.
#[derive(Debug)]
pub struct Guard {
    /// The bearer token clients must send, if any.
    token: Option<String>,
    /// `Host` names let in (lowercase); empty lets any in.
    hosts: Vec<String>,
    /// Origins let in besides loopback ones: exact `scheme://host:port`
    /// (lowercase), or ending in `:*` for any port.
    origins: Vec<String>,
}

/// Paths served without the token: probes must work without secrets.
const OPEN_PATHS: [&str; 2] = ["/healthz", "/readyz"];

impl Guard {
    /// Checks for a server listening on loopback or not (`loopback`).
    pub fn new(
        token: Option<String>,
        loopback: bool,
        hosts: &[String],
        origins: &[String],
    ) -> Guard {
        let hosts = if hosts.is_empty() && loopback {
            LOOPBACK_HOSTS.iter().map(|h| h.to_string()).collect()
        } else {
            hosts.iter().map(|h| h.to_ascii_lowercase()).collect()
        };
        Guard {
            token,
            hosts,
            origins: origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// The `Host` names let in, for rmcp's own check (empty: any).
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The origins let in, in rmcp's syntax, loopback ones included.
    pub fn rmcp_origins(&self) -> Vec<String> {
        let mut all: Vec<String> = ["http", "https"]
            .iter()
            .flat_map(|s| LOOPBACK_HOSTS.iter().map(move |h| format!("{s}://{h}:*")))
            .collect();
        all.extend(self.origins.iter().cloned());
        all
    }

    fn check(&self, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
        let host = host::of_request(uri, headers).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("{e} (DNS rebinding protection)"),
            )
        })?;
        if !self.hosts.is_empty() {
            let allowed = host.as_ref().is_some_and(|h| self.host_allowed(h.as_str()));
            if !allowed {
                let named = host.as_ref().map_or("", |h| h.as_str());
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_host",
                    format!(
                        "Host {} is not allowed (DNS rebinding protection); add it to allowed_hosts in the [serve] table of flw.toml",
                        excerpt::quote(named)
                    ),
                ));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !self.origin_allowed(origin) {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "forbidden_origin",
                    format!(
                        "Origin {} is not allowed; add it to allowed_origins in the [serve] table of flw.toml (or --allow-origin)",
                        excerpt::quote(origin)
                    ),
                ));
            }
        }
        if let Some(token) = &self.token {
            if OPEN_PATHS.contains(&uri.path()) {
                return Ok(());
            }
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .and_then(bearer_token);
            let ok = given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), token.as_bytes()));
            if !ok {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    if given.is_some() {
                        "the bearer token is wrong".to_string()
                    } else {
                        "this server needs a bearer token: send Authorization: Bearer TOKEN"
                            .to_string()
                    },
                )
                .with_header(header::WWW_AUTHENTICATE, "Bearer"));
            }
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        let name = strip_port(&host);
        self.hosts.iter().any(|h| *h == host || h == name)
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        if (scheme == "http" || scheme == "https") && LOOPBACK_HOSTS.contains(&strip_port(rest)) {
            return true;
        }
        self.origins.iter().any(|o| match o.strip_suffix(":*") {
            Some(prefix) => {
                *o == origin || origin == prefix || origin.starts_with(&format!("{prefix}:"))
            }
            None => *o == origin,
        })
    }
}

/// The token of `Bearer TOKEN` (the scheme in any case, RFC 7235).
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

/// Host names of this machine's loopback interface.
const LOOPBACK_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "[::1]"];

/// `host` without its `:port` (an IPv6 literal keeps its brackets).
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    host.rsplit_once(':').map_or(host, |(h, _)| h)
}

/// Compares without an early exit, so the time says nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= (*x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0)) as usize;
    }
    diff == 0
}

/// The middleware that runs [`Guard`]'s checks.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match guard.check(req.uri(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Each client address's requests in flight, up to a limit.
#[derive(Debug)]
pub struct ClientLimits {
    per_client: usize,
    clients: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

impl ClientLimits {
    /// At most `per_client` requests in flight per address.
    pub fn new(per_client: usize) -> ClientLimits {
        ClientLimits {
            per_client,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// A permit for one more request of `client`, or the `429` to answer.
    pub fn acquire(&self, client: IpAddr) -> Result<OwnedSemaphorePermit, ApiError> {
        let sem = {
            let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
            if clients.len() > 10_000 {
                // Forget idle clients so the map stays bounded.
                let full = self.per_client;
                clients.retain(|_, s| s.available_permits() < full);
            }
            clients
                .entry(client)
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_client)))
                .clone()
        };
        sem.try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!(
                    "client {client} already has {} in flight (client_limit in the [serve] table of flw.toml)",
                    crate::plural::count(self.per_client as u64, "request", "requests")
                ),
            )
            .with_header(header::RETRY_AFTER, "1")
        })
    }
}

/// What the `/mcp` middleware needs: the client limits, the body limit,
/// and the count of MCP requests in flight (for shutdown).
#[derive(Debug, Clone)]
pub struct McpGate {
    /// Requests in flight per client address.
    pub limits: Arc<ClientLimits>,
    /// Largest request body.
    pub max_body: usize,
    /// MCP POSTs whose answer is not done yet.
    pub in_flight: Arc<tokio::sync::watch::Sender<usize>>,
}

/// Counts one MCP request in flight until dropped.
struct Counted(Arc<tokio::sync::watch::Sender<usize>>);

impl Counted {
    fn new(count: &Arc<tokio::sync::watch::Sender<usize>>) -> Counted {
        count.send_modify(|n| *n += 1);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// The `/mcp` middleware for POSTs: a [`ClientLimits`] permit, the body
/// read here within its limits (so that an oversized chunked body, or one
/// with too many JSON values, is a 413, not an error inside rmcp), and the
/// request counted in flight. The permit and the count last as long as
/// the response body (a stream of server-sent events counts until it
/// ends). rmcp's refusals are cut to an excerpt of what they quote.
pub async fn mcp_gate(
    State(gate): State<McpGate>,
    conn: axum::Extension<super::conn::ConnInfo>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != axum::http::Method::POST {
        return next.run(req).await;
    }
    let permit = match gate.limits.acquire(conn.peer.ip()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let counted = Counted::new(&gate.in_flight);
    let (parts, body) = req.into_parts();
    let body = match super::body::read(body, gate.max_body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = super::json_values::check(&body, gate.max_body) {
        return e.into_response();
    }
    let response = next
        .run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await;
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|c| c.as_bytes().starts_with(b"text/event-stream"));
    if !streaming {
        return if response.status().is_client_error() {
            quote_less(response).await
        } else {
            response
        };
    }
    let (parts, body) = response.into_parts();
    let body = axum::body::Body::from_stream(futures::StreamExt::map(
        body.into_data_stream(),
        move |chunk| {
            let _held = (&permit, &counted);
            chunk
        },
    ));
    Response::from_parts(parts, body).into_response()
}

/// rmcp's refusal of a request, with any message in it longer than a
/// few lines cut to an excerpt: some of them quote the request (a
/// `Mcp-Name` header that does not match the body repeats the body's
/// name, however long).
async fn quote_less(response: Response) -> Response {
    const LONG: usize = 1024;
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    if bytes.len() <= LONG {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let short = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(mut v) => {
            let cut = v
                .pointer("/error/message")
                .and_then(serde_json::Value::as_str)
                .map(|m| excerpt::display(m, 4 * excerpt::CHARS));
            if let (Some(cut), Some(m)) = (cut, v.pointer_mut("/error/message")) {
                *m = cut.into();
            }
            v.to_string()
        }
        Err(_) => excerpt::display(&String::from_utf8_lossy(&bytes), 4 * excerpt::CHARS),
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(short))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &str) -> Uri {
        path.parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn loopback_servers_refuse_other_hosts_and_foreign_origins() {
        let g = Guard::new(None, true, &[], &["https://app.example.com".into()]);
        assert!(g
            .check(&at("/mcp"), &headers(&[("host", "127.0.0.1:8077")]))
            .is_ok());
        assert!(g
            .check(&at("/mcp"), &headers(&[("host", "[::1]:1")]))
            .is_ok());
        assert!(g
            .check(&at("/mcp"), &headers(&[("host", "evil.example:8077")]))
            .is_err());
        let r = g.check(
            &at("/mcp"),
            &headers(&[("host", "127.0.0.1:80@evil.example")]),
        );
        assert_eq!(r.unwrap_err().status, StatusCode::BAD_REQUEST);
        let r = g.check(
            &at("http://evil.example/mcp"),
            &headers(&[("host", "127.0.0.1")]),
        );
        assert_eq!(r.unwrap_err().status, StatusCode::BAD_REQUEST);
        let r = g.check(&at("http://evil.example/mcp"), &HeaderMap::new());
        assert_eq!(r.unwrap_err().status, StatusCode::FORBIDDEN);
        assert!(g
            .check(&at("http://127.0.0.1:8077/mcp"), &HeaderMap::new())
            .is_ok());
        let ok = [("host", "localhost"), ("origin", "http://localhost:5173")];
        assert!(g.check(&at("/mcp"), &headers(&ok)).is_ok());
        let ok = [("host", "localhost"), ("origin", "https://app.example.com")];
        assert!(g.check(&at("/mcp"), &headers(&ok)).is_ok());
        let bad = [("host", "localhost"), ("origin", "https://evil.example")];
        let r = g.check(&at("/mcp"), &headers(&bad)).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let bad = [
            ("host", "localhost"),
            ("origin", "https://app.example.com:444"),
        ];
        assert!(g.check(&at("/mcp"), &headers(&bad)).is_err());
    }

    #[test]
    fn the_token_is_required_except_on_probes() {
        let g = Guard::new(Some("s3cret".into()), false, &[], &[]);
        let none = headers(&[("host", "box.example")]);
        assert_eq!(g.check(&at("/v1/tools"), &none).unwrap_err().status, 401);
        assert!(g.check(&at("/healthz"), &none).is_ok());
        let wrong = headers(&[("authorization", "Bearer s3cre")]);
        assert_eq!(g.check(&at("/v1/tools"), &wrong).unwrap_err().status, 401);
        let right = headers(&[("authorization", "Bearer s3cret")]);
        assert!(g.check(&at("/v1/tools"), &right).is_ok());
        // The scheme is case-insensitive (RFC 7235); the token is not.
        for scheme in ["bearer", "BEARER", "bEaReR"] {
            let right = headers(&[("authorization", &format!("{scheme} s3cret"))]);
            assert!(g.check(&at("/v1/tools"), &right).is_ok(), "{scheme}");
        }
        let wrong = headers(&[("authorization", "Bearer S3CRET")]);
        assert_eq!(g.check(&at("/v1/tools"), &wrong).unwrap_err().status, 401);
        let other = headers(&[("authorization", "Basic s3cret")]);
        assert_eq!(g.check(&at("/v1/tools"), &other).unwrap_err().status, 401);
    }

    #[test]
    fn wildcard_ports_and_equality() {
        let g = Guard::new(
            None,
            false,
            &["api.example".into()],
            &["http://a.example:*".into()],
        );
        assert!(g.origin_allowed("http://a.example:3000"));
        assert!(g.origin_allowed("http://a.example"));
        assert!(!g.origin_allowed("http://a.example.evil:3000"));
        assert!(g.host_allowed("API.example:443"));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"a"));
    }
}
