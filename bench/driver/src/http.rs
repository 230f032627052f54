//! A small HTTP/1.1 load client for the http workload (k).
//!
//! `conns` keep-alive connections, each with exactly one POST in flight: a
//! response sends the connection's next request at once. One thread drives
//! them all on epoll (edge-triggered, non-blocking sockets), so the client
//! costs a few system calls per call and no thread switches. Responses may
//! carry a `Content-Length` body, a chunked one, or one that ends when the
//! server closes; an MCP reply may be a JSON body or a `text/event-stream`
//! whose JSON-RPC response event completes the call (the stream is still
//! read to its end before the connection's next request). Every answer is
//! checked: each request echoes a value of its own (`hello <id>`), and a
//! wrong answer, an HTTP error, a broken connection or a call unanswered
//! after the drain counts as a failed call.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::procfs;

/// The MCP revision whose requests are self-contained: no `initialize`, no
/// session, the protocol version in a header and in `params._meta`.
pub const MCP_VERSION: &str = "2026-07-28";

/// How long calls in flight may take to finish after the window.
const DRAIN: Duration = Duration::from_secs(15);

/// Failed calls after which a load stops sending.
const MAX_ERRORS: u64 = 1_000;

/// The largest response head or body accepted.
const MAX_RESPONSE: usize = 1 << 20;

/// Which API a load calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// MCP Streamable HTTP: a JSON-RPC `tools/call` per POST.
    Mcp,
    /// A plain JSON API: the tool's arguments as the body, `{"result": ...}` back.
    Json,
}

/// What to call, and where.
#[derive(Debug, Clone)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// The request path, e.g. `/mcp`.
    pub path: String,
    /// The API at that path.
    pub api: Api,
    /// The request head up to `Content-Length: ` (built by [`Target::new`]).
    head: String,
    /// The body around the id and the echoed value: `body[0] id body[1] value body[2]`.
    body: [String; 3],
}

impl Target {
    /// A target calling `tool(arg = "hello <id>")` through `api` at `path`;
    /// the tool must return its argument unchanged.
    pub fn new(addr: SocketAddr, path: &str, api: Api, tool: &str, arg: &str) -> Target {
        let mut head =
            format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n");
        let tool_json = Value::from(tool).to_string();
        let arg_json = Value::from(arg).to_string();
        let body = match api {
            Api::Mcp => {
                head.push_str("Accept: application/json, text/event-stream\r\n");
                head.push_str(&format!("MCP-Protocol-Version: {MCP_VERSION}\r\n"));
                head.push_str("Mcp-Method: tools/call\r\n");
                head.push_str(&format!("Mcp-Name: {tool}\r\n"));
                let meta = json!({
                    "io.modelcontextprotocol/protocolVersion": MCP_VERSION,
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {
                        "name": "flw-bench", "version": env!("CARGO_PKG_VERSION"),
                    },
                });
                [
                    "{\"jsonrpc\":\"2.0\",\"id\":".to_string(),
                    format!(
                        ",\"method\":\"tools/call\",\"params\":{{\"name\":{tool_json},\
                         \"arguments\":{{{arg_json}:\"hello "
                    ),
                    format!("\"}},\"_meta\":{meta}}}}}"),
                ]
            }
            Api::Json => {
                head.push_str("Accept: application/json\r\n");
                [
                    String::new(),
                    format!("{{{arg_json}:\"hello "),
                    "\"}".to_string(),
                ]
            }
        };
        head.push_str("Content-Length: ");
        Target {
            addr,
            path: path.to_string(),
            api,
            head,
            body,
        }
    }

    /// Appends request `id` to `out`.
    fn request(&self, id: u64, out: &mut Vec<u8>) {
        let id_text = if self.api == Api::Mcp {
            id.to_string()
        } else {
            String::new()
        };
        let body_len =
            self.body.iter().map(String::len).sum::<usize>() + id_text.len() + id.to_string().len();
        out.extend_from_slice(self.head.as_bytes());
        let _ = write!(out, "{body_len}\r\n\r\n");
        out.extend_from_slice(self.body[0].as_bytes());
        out.extend_from_slice(id_text.as_bytes());
        out.extend_from_slice(self.body[1].as_bytes());
        let _ = write!(out, "{id}");
        out.extend_from_slice(self.body[2].as_bytes());
    }

    /// Whether `answer` is the right reply to call `id`.
    fn check(&self, id: u64, answer: &Value) -> Result<(), String> {
        let expected = format!("hello {id}");
        let got = match self.api {
            Api::Mcp => {
                if answer.get("id").and_then(Value::as_u64) != Some(id) {
                    return Err(format!("reply to id {id} has id {}", answer["id"]));
                }
                if let Some(e) = answer.get("error") {
                    return Err(format!("JSON-RPC error: {}", clip(&e.to_string())));
                }
                let result = &answer["result"];
                if result.get("isError").and_then(Value::as_bool) == Some(true) {
                    return Err(format!("tool error: {}", clip(&result.to_string())));
                }
                result.pointer("/content/0/text")
            }
            Api::Json => answer.get("result"),
        };
        match got.and_then(Value::as_str) {
            Some(s) if s == expected => Ok(()),
            _ => Err(format!(
                "expected {expected:?}, got {}",
                clip(&answer.to_string())
            )),
        }
    }
}

/// `s`, at most 300 characters.
fn clip(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// Where a chunked body's decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    Size,
    Data(usize),
    DataEnd,
    Trailer,
    Done,
}

#[derive(Debug)]
struct Head {
    status: u16,
    sse: bool,
    framing: Framing,
    keep_alive: bool,
    /// For the report: content type and framing.
    kind: (&'static str, &'static str),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(bytes: &[u8]) -> Result<Head, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "response head is not UTF-8".to_string())?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/1."))
        .ok_or_else(|| format!("bad status line {:?}", clip(status_line)))?;
    let mut keep_alive = version == "HTTP/1.1";
    let (mut length, mut chunked, mut ctype) = (None, false, "");
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| format!("bad Content-Length {value:?}"))?,
                );
            }
            "transfer-encoding" => chunked = value.to_ascii_lowercase().contains("chunked"),
            "content-type" => ctype = value,
            "connection" => match value.to_ascii_lowercase().as_str() {
                "close" => keep_alive = false,
                "keep-alive" => keep_alive = true,
                _ => {}
            },
            _ => {}
        }
    }
    let ctype = ctype.to_ascii_lowercase();
    let sse = ctype.starts_with("text/event-stream");
    let framing = if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if status == 204 || status == 304 {
        Framing::Length(0)
    } else {
        Framing::Close
    };
    if framing == Framing::Close {
        keep_alive = false;
    }
    let kind = (
        if sse {
            "text/event-stream"
        } else if ctype.starts_with("application/json") {
            "application/json"
        } else {
            "other content type"
        },
        match framing {
            Framing::Length(_) => "Content-Length",
            Framing::Chunked => "chunked",
            Framing::Close => "ended by close",
        },
    );
    Ok(Head {
        status,
        sse,
        framing,
        keep_alive,
        kind,
    })
}

/// One response being read.
#[derive(Debug)]
struct Resp {
    head: Option<Head>,
    body: Vec<u8>,
    chunk: Chunk,
    /// SSE: the bytes of `body` already split into lines.
    sse_pos: usize,
    /// SSE: the data lines of the event being read.
    sse_data: Vec<u8>,
    /// The JSON-RPC response (SSE) and when it arrived.
    answer: Option<(Value, Instant)>,
}

impl Resp {
    fn new() -> Resp {
        Resp {
            head: None,
            body: Vec::new(),
            chunk: Chunk::Size,
            sse_pos: 0,
            sse_data: Vec::new(),
            answer: None,
        }
    }

    /// Consumes what it can of `buf`; `Ok(true)` once the response is complete.
    fn advance(&mut self, buf: &mut Vec<u8>, eof: bool) -> Result<bool, String> {
        if self.head.is_none() {
            let Some(end) = find(buf, b"\r\n\r\n") else {
                if eof {
                    return Err(if buf.is_empty() {
                        "the server closed the connection without a response".into()
                    } else {
                        "the server closed the connection inside the response head".into()
                    });
                }
                if buf.len() > MAX_RESPONSE {
                    return Err("response head too large".into());
                }
                return Ok(false);
            };
            let head = parse_head(&buf[..end])?;
            buf.drain(..end + 4);
            if (100..200).contains(&head.status) {
                // An interim response: the real one follows.
                return self.advance(buf, eof);
            }
            self.head = Some(head);
        }
        let head = self.head.as_ref().expect("head");
        let (framing, sse) = (head.framing, head.sse);
        let complete = match framing {
            Framing::Length(n) => {
                let take = (n - self.body.len()).min(buf.len());
                self.body.extend(buf.drain(..take));
                self.body.len() == n
            }
            Framing::Close => {
                self.body.append(buf);
                eof
            }
            Framing::Chunked => self.dechunk(buf)?,
        };
        if self.body.len() > MAX_RESPONSE {
            return Err("response body too large".into());
        }
        if sse {
            self.scan_events();
        }
        if !complete && eof {
            return Err("the server closed the connection inside the response body".into());
        }
        Ok(complete)
    }

    /// Decodes chunks from `buf` into the body; whether the last one came.
    fn dechunk(&mut self, buf: &mut Vec<u8>) -> Result<bool, String> {
        loop {
            match self.chunk {
                Chunk::Size | Chunk::Trailer => {
                    let Some(end) = find(buf, b"\r\n") else {
                        return Ok(false);
                    };
                    let line: Vec<u8> = buf.drain(..end + 2).take(end).collect();
                    if self.chunk == Chunk::Trailer {
                        if line.is_empty() {
                            self.chunk = Chunk::Done;
                        }
                        continue;
                    }
                    let text = String::from_utf8_lossy(&line);
                    let hex = text.split(';').next().unwrap_or("").trim();
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size line {:?}", clip(&text)))?;
                    self.chunk = if size == 0 {
                        Chunk::Trailer
                    } else {
                        Chunk::Data(size)
                    };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(false);
                    }
                    let take = left.min(buf.len());
                    self.body.extend(buf.drain(..take));
                    self.chunk = if take == left {
                        Chunk::DataEnd
                    } else {
                        Chunk::Data(left - take)
                    };
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(false);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF".into());
                    }
                    buf.drain(..2);
                    self.chunk = Chunk::Size;
                }
                Chunk::Done => return Ok(true),
            }
        }
    }

    /// Reads the complete lines of an SSE body; keeps the first JSON-RPC
    /// response (a message with an id and a result or an error).
    fn scan_events(&mut self) {
        while self.answer.is_none() {
            let rest = &self.body[self.sse_pos..];
            let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
                return;
            };
            let line = &rest[..nl];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            self.sse_pos += nl + 1;
            if line.is_empty() {
                let data = std::mem::take(&mut self.sse_data);
                if let Ok(v) = serde_json::from_slice::<Value>(&data) {
                    if v.get("id").is_some()
                        && (v.get("result").is_some() || v.get("error").is_some())
                    {
                        self.answer = Some((v, Instant::now()));
                    }
                }
            } else if let Some(d) = line.strip_prefix(b"data:") {
                if !self.sse_data.is_empty() {
                    self.sse_data.push(b'\n');
                }
                self.sse_data
                    .extend_from_slice(d.strip_prefix(b" ").unwrap_or(d));
            }
        }
    }

    /// The JSON-RPC (or JSON API) answer of a complete response, and when it came.
    fn finish(&mut self) -> Result<(Value, Instant), String> {
        let head = self.head.as_ref().expect("complete response");
        if head.status != 200 {
            return Err(format!(
                "HTTP {}: {}",
                head.status,
                clip(&String::from_utf8_lossy(&self.body))
            ));
        }
        if head.sse {
            // An event not followed by a blank line before the end still counts.
            if self.answer.is_none() && !self.sse_data.is_empty() {
                self.body.extend_from_slice(b"\n\n");
                self.scan_events();
            }
            return self
                .answer
                .take()
                .ok_or_else(|| "the event stream ended without a JSON-RPC response".into());
        }
        serde_json::from_slice(&self.body)
            .map(|v| (v, Instant::now()))
            .map_err(|e| {
                format!(
                    "body is not JSON ({e}): {}",
                    clip(&String::from_utf8_lossy(&self.body))
                )
            })
    }
}

/// Connects to `addr` with Nagle off.
fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

/// One call over a fresh blocking connection: the preflight that shows,
/// before a load, whether the server answers correctly and how.
pub fn call_once(target: &Target, id: u64, timeout: Duration) -> Result<String, String> {
    let mut s = connect(target.addr)?;
    let _ = s.set_read_timeout(Some(timeout));
    let mut req = Vec::new();
    target.request(id, &mut req);
    s.write_all(&req).map_err(|e| format!("write: {e}"))?;
    let mut resp = Resp::new();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1 << 14];
    loop {
        let n = s.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        buf.extend_from_slice(&chunk[..n]);
        if resp.advance(&mut buf, n == 0)? {
            break;
        }
    }
    let (answer, _) = resp.finish()?;
    target.check(id, &answer)?;
    let (ct, fr) = resp.head.as_ref().expect("head").kind;
    Ok(format!("{ct}, {fr}"))
}

/// What a load measured.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Calls answered inside the measured window.
    pub calls: u64,
    /// The measured window.
    pub wall: Duration,
    /// Their latencies, from the write of the request to its answer, in ns.
    pub latencies_ns: Vec<u64>,
    /// Failed calls over the whole load (warm-up and drain included).
    pub errors: u64,
    /// The first failure's message.
    pub first_error: Option<String>,
    /// Calls still unanswered after the drain (also counted in `errors`).
    pub unanswered: u64,
    /// How long opening the connections took (before the warm-up).
    pub connect_time: Duration,
    /// Connections opened again after the server closed one.
    pub reconnects: u64,
    /// Responses by content type and framing.
    pub kinds: BTreeMap<(&'static str, &'static str), u64>,
    /// CPU seconds of the server's process tree in the window.
    pub server_cpu: f64,
    /// CPU seconds of the server's main process alone in the window.
    pub root_cpu: f64,
    /// CPU seconds of this driver in the window.
    pub driver_cpu: f64,
}

impl Stats {
    /// Answered calls per second in the window.
    pub fn rate(&self) -> f64 {
        self.calls as f64 / self.wall.as_secs_f64().max(1e-9)
    }
    /// Cores the server used on average in the window.
    pub fn server_cores(&self) -> f64 {
        self.server_cpu / self.wall.as_secs_f64().max(1e-9)
    }
    /// Cores the driver used on average in the window.
    pub fn driver_cores(&self) -> f64 {
        self.driver_cpu / self.wall.as_secs_f64().max(1e-9)
    }
    /// CPU time of the server's tree per answered call, in µs.
    pub fn server_us_per_call(&self) -> f64 {
        self.server_cpu * 1e6 / self.calls.max(1) as f64
    }
    /// CPU time of the server's main process per answered call, in µs.
    pub fn root_us_per_call(&self) -> f64 {
        self.root_cpu * 1e6 / self.calls.max(1) as f64
    }

    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}

/// An epoll instance.
struct Epoll(RawFd);

impl Epoll {
    fn new() -> Result<Epoll, String> {
        // SAFETY: a plain system call without pointers.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "epoll_create1: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(Epoll(fd))
    }

    fn add(&self, fd: RawFd, token: usize) -> Result<(), String> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token as u64,
        };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        let rc = unsafe { libc::epoll_ctl(self.0, libc::EPOLL_CTL_ADD, fd, &mut ev) };
        if rc < 0 {
            return Err(format!("epoll_ctl: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Waits up to `timeout` for events; fills `events` and returns how many.
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: `events` is a valid, writable buffer of the length passed.
        let n = unsafe { libc::epoll_wait(self.0, events.as_mut_ptr(), events.len() as i32, ms) };
        n.max(0) as usize
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

/// A call in flight on a connection.
struct Call {
    id: u64,
    sent: Instant,
    resp: Resp,
}

/// One keep-alive connection.
struct Conn {
    stream: Option<TcpStream>,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    wpos: usize,
    call: Option<Call>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Warmup,
    Measure,
    Drain,
}

/// The load's state, shared by the event handlers.
struct Load<'a> {
    target: &'a Target,
    epoll: Epoll,
    conns: Vec<Conn>,
    next_id: u64,
    phase: Phase,
    in_flight: usize,
    stats: Stats,
}

impl Load<'_> {
    /// Opens connection `i` (again) and registers it.
    fn open(&mut self, i: usize) -> Result<(), String> {
        let s = connect(self.target.addr)?;
        s.set_nonblocking(true)
            .map_err(|e| format!("set_nonblocking: {e}"))?;
        self.epoll.add(s.as_raw_fd(), i)?;
        let c = &mut self.conns[i];
        c.stream = Some(s);
        c.rbuf.clear();
        c.wbuf.clear();
        c.wpos = 0;
        Ok(())
    }

    /// Sends connection `i`'s next call, if the load still sends.
    fn send(&mut self, i: usize) {
        // Past MAX_ERRORS the run has failed anyway: stop sending rather
        // than loop on a server that breaks every connection.
        if self.phase == Phase::Drain || self.stats.errors >= MAX_ERRORS {
            return;
        }
        if self.conns[i].stream.is_none() {
            self.stats.reconnects += 1;
            if let Err(e) = self.open(i) {
                // A server that refuses connections fails the run; the
                // connection stays closed.
                self.stats.fail(e);
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let c = &mut self.conns[i];
        c.wbuf.clear();
        c.wpos = 0;
        self.target.request(id, &mut c.wbuf);
        c.call = Some(Call {
            id,
            sent: Instant::now(),
            resp: Resp::new(),
        });
        self.in_flight += 1;
        self.flush(i);
    }

    /// Writes what connection `i` still has to write.
    fn flush(&mut self, i: usize) {
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else {
            return;
        };
        while c.wpos < c.wbuf.len() {
            match s.write(&c.wbuf[c.wpos..]) {
                Ok(0) => break,
                Ok(n) => c.wpos += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg = format!("write: {e}");
                    self.broken(i, msg);
                    return;
                }
            }
        }
    }

    /// Connection `i` broke: its call fails, it closes, and it opens again
    /// for the next call.
    fn broken(&mut self, i: usize, msg: String) {
        let c = &mut self.conns[i];
        c.stream = None;
        if c.call.take().is_some() {
            self.in_flight -= 1;
            self.stats.fail(msg);
        }
        self.send(i);
    }

    /// Connection `i` is readable or writable (`flags`: the epoll events).
    fn event(&mut self, i: usize, flags: u32) {
        self.flush(i);
        let c = &mut self.conns[i];
        let Some(s) = c.stream.as_mut() else {
            return;
        };
        // Edge-triggered: read until the socket is empty. A short read
        // empties it (new data raises a new edge), unless the peer closed or
        // failed: then read on to the end or the error.
        let closing = flags & (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
        let mut eof = false;
        let mut chunk = [0u8; 1 << 14];
        loop {
            match s.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) if n < chunk.len() && !closing => {
                    c.rbuf.extend_from_slice(&chunk[..n]);
                    break;
                }
                Ok(n) => c.rbuf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    let msg = format!("read: {e}");
                    self.broken(i, msg);
                    return;
                }
            }
        }
        let Some(call) = c.call.as_mut() else {
            if !c.rbuf.is_empty() {
                let msg = format!(
                    "bytes with no request outstanding: {}",
                    clip(&String::from_utf8_lossy(&c.rbuf))
                );
                c.stream = None;
                self.stats.fail(msg);
            } else if eof {
                // An idle connection the server closed: open it for the next call.
                c.stream = None;
            }
            return;
        };
        match call.resp.advance(&mut c.rbuf, eof) {
            Ok(false) => {}
            Ok(true) => {
                let mut call = c.call.take().expect("call");
                let keep_alive = call.resp.head.as_ref().is_some_and(|h| h.keep_alive);
                if !keep_alive || eof {
                    c.stream = None;
                }
                let leftover = !c.rbuf.is_empty();
                self.in_flight -= 1;
                self.done(&mut call);
                if leftover && self.conns[i].stream.is_some() {
                    self.conns[i].stream = None;
                    self.stats
                        .fail("bytes after the response (the client does not pipeline)".into());
                }
                self.send(i);
            }
            Err(e) => self.broken(i, e),
        }
    }

    /// A complete response: checks it and records it.
    fn done(&mut self, call: &mut Call) {
        let kind = call.resp.head.as_ref().expect("head").kind;
        *self.stats.kinds.entry(kind).or_default() += 1;
        let answer = call
            .resp
            .finish()
            .and_then(|(v, at)| self.target.check(call.id, &v).map(|()| at));
        match answer {
            Ok(at) => {
                if self.phase == Phase::Measure {
                    self.stats.calls += 1;
                    self.stats
                        .latencies_ns
                        .push(at.saturating_duration_since(call.sent).as_nanos() as u64);
                }
            }
            Err(e) => self.stats.fail(format!("call {}: {e}", call.id)),
        }
    }
}

/// Runs `conns` connections against `target`: `warmup`, then `window`
/// measured, then a drain of the calls in flight. `server_pid` is the root
/// of the server's process tree, for its CPU time.
pub fn run(
    target: &Target,
    conns: usize,
    warmup: Duration,
    window: Duration,
    server_pid: i32,
) -> Stats {
    let mut stats = Stats::default();
    let epoll = match Epoll::new() {
        Ok(e) => e,
        Err(e) => {
            stats.fail(e);
            return stats;
        }
    };
    let mut load = Load {
        target,
        epoll,
        conns: (0..conns)
            .map(|_| Conn {
                stream: None,
                rbuf: Vec::with_capacity(4096),
                wbuf: Vec::with_capacity(1024),
                wpos: 0,
                call: None,
            })
            .collect(),
        next_id: 1,
        phase: Phase::Warmup,
        in_flight: 0,
        stats,
    };
    let t_open = Instant::now();
    for i in 0..conns {
        if let Err(e) = load.open(i) {
            load.stats.fail(e);
            return load.stats;
        }
    }
    load.stats.connect_time = t_open.elapsed();
    for i in 0..conns {
        load.send(i);
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let start = Instant::now();
    let (mut t0, mut cpu0, mut root0, mut self0) = (start, 0.0, 0.0, 0.0);
    let root_cpu =
        || procfs::stat(server_pid).map_or(0.0, |s| s.ticks as f64 / procfs::clock_ticks());
    let mut deadline = start + warmup;
    loop {
        let now = Instant::now();
        if now >= deadline || (load.phase == Phase::Drain && load.in_flight == 0) {
            match load.phase {
                Phase::Warmup => {
                    load.phase = Phase::Measure;
                    (t0, cpu0, root0, self0) = (
                        Instant::now(),
                        procfs::tree_cpu_seconds(server_pid),
                        root_cpu(),
                        procfs::self_cpu_seconds(),
                    );
                    deadline = t0 + window;
                }
                Phase::Measure => {
                    load.phase = Phase::Drain;
                    load.stats.wall = now - t0;
                    load.stats.server_cpu = procfs::tree_cpu_seconds(server_pid) - cpu0;
                    load.stats.root_cpu = root_cpu() - root0;
                    load.stats.driver_cpu = procfs::self_cpu_seconds() - self0;
                    deadline = now + DRAIN;
                }
                Phase::Drain => break,
            }
            continue;
        }
        let n = load.epoll.wait(&mut events, deadline - now);
        for ev in &events[..n] {
            load.event(ev.u64 as usize, ev.events);
        }
    }
    if load.in_flight > 0 {
        load.stats.unanswered = load.in_flight as u64;
        load.stats.errors += load.in_flight as u64;
        load.stats.first_error.get_or_insert(format!(
            "{} calls unanswered {} s after the window",
            load.in_flight,
            DRAIN.as_secs()
        ));
    }
    load.stats
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Result<(Value, Instant), String> {
        let mut r = Resp::new();
        let mut buf = Vec::new();
        // Byte by byte: every split point.
        for &b in bytes {
            buf.push(b);
            if r.advance(&mut buf, false)? {
                return r.finish();
            }
        }
        if r.advance(&mut buf, true)? {
            return r.finish();
        }
        Err("incomplete".into())
    }

    #[test]
    fn parses_length_chunked_sse_and_close() {
        let body =
            r#"{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"hello 3"}]}}"#;
        let t = Target::new(
            "127.0.0.1:1".parse().unwrap(),
            "/mcp",
            Api::Mcp,
            "echo",
            "text",
        );
        let length = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        let (v, _) = complete(length.as_bytes()).unwrap();
        t.check(3, &v).unwrap();
        assert!(t.check(4, &v).is_err());
        let sse = format!(
            "event: message\r\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}}\r\n\r\nevent: message\r\ndata: {body}\r\n\r\n"
        );
        let (a, b) = sse.split_at(40);
        let chunked = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{:x};x=y\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nX-T: 1\r\n\r\n",
            a.len(),
            b.len()
        );
        let (v, _) = complete(chunked.as_bytes()).unwrap();
        t.check(3, &v).unwrap();
        let close = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}"
        );
        let (v, _) = complete(close.as_bytes()).unwrap();
        t.check(3, &v).unwrap();
        let err = "HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nno!";
        assert!(complete(err.as_bytes()).unwrap_err().contains("HTTP 400"));
    }

    /// A toy server: for each request, one of four answers in turn (JSON
    /// with a length, a chunked event stream with a notification first, a
    /// body ended by close, JSON with `Connection: close`).
    fn toy_server(wrong_every: u64) -> SocketAddr {
        use std::io::{BufRead, BufReader};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (first, s) in listener.incoming().enumerate() {
                let Ok(s) = s else { return };
                let first = first as u64;
                std::thread::spawn(move || {
                    let mut r = BufReader::new(s.try_clone().unwrap());
                    let mut w = s;
                    let mut k = first;
                    loop {
                        let mut len = 0;
                        loop {
                            let mut line = String::new();
                            if r.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            if let Some(v) = line.strip_prefix("Content-Length: ") {
                                len = v.trim().parse().unwrap();
                            }
                        }
                        let mut body = vec![0; len];
                        r.read_exact(&mut body).unwrap();
                        let req: Value = serde_json::from_slice(&body).unwrap();
                        let id = req["id"].as_u64().unwrap();
                        let mut text = req["params"]["arguments"]["text"]
                            .as_str()
                            .unwrap()
                            .to_string();
                        if wrong_every > 0 && id.is_multiple_of(wrong_every) {
                            text.push('!');
                        }
                        let reply = json!({"jsonrpc": "2.0", "id": id,
                            "result": {"content": [{"type": "text", "text": text}]}})
                        .to_string();
                        k += 1;
                        let out = match k % 4 {
                            0 => format!(
                                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{reply}",
                                reply.len()
                            ),
                            1 => {
                                let sse = format!(
                                    "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}}\n\nevent: message\ndata: {reply}\n\n"
                                );
                                let (a, b) = sse.split_at(sse.len() / 3);
                                format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                                    a.len(),
                                    b.len()
                                )
                            }
                            2 => {
                                let out = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{reply}");
                                let _ = w.write_all(out.as_bytes());
                                return;
                            }
                            _ => {
                                let out = format!(
                                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{reply}",
                                    reply.len()
                                );
                                let _ = w.write_all(out.as_bytes());
                                return;
                            }
                        };
                        // Two writes: the client must join them.
                        let (a, b) = out.as_bytes().split_at(out.len() / 2);
                        if w.write_all(a).is_err() || w.flush().is_err() || w.write_all(b).is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
        addr
    }

    #[test]
    fn loads_a_server_with_every_framing() {
        let t = Target::new(toy_server(0), "/mcp", Api::Mcp, "echo", "text");
        for _ in 0..8 {
            call_once(&t, 7, Duration::from_secs(5)).unwrap();
        }
        let pid = std::process::id() as i32;
        let s = run(
            &t,
            16,
            Duration::from_millis(50),
            Duration::from_millis(300),
            pid,
        );
        assert_eq!(s.errors, 0, "{:?}", s.first_error);
        assert!(s.calls > 100, "{} calls", s.calls);
        assert_eq!(s.latencies_ns.len() as u64, s.calls);
        assert!(s.reconnects > 0);
        assert_eq!(s.kinds.len(), 3, "{:?}", s.kinds);
    }

    #[test]
    fn counts_wrong_answers() {
        let t = Target::new(toy_server(50), "/mcp", Api::Mcp, "echo", "text");
        let pid = std::process::id() as i32;
        let s = run(
            &t,
            4,
            Duration::from_millis(20),
            Duration::from_millis(200),
            pid,
        );
        assert!(s.errors > 0);
        assert!(s.first_error.unwrap().contains("expected \"hello "));
    }

    #[test]
    fn requests_have_the_right_length() {
        for api in [Api::Mcp, Api::Json] {
            let t = Target::new("127.0.0.1:9".parse().unwrap(), "/x", api, "echo", "text");
            let mut out = Vec::new();
            t.request(12345, &mut out);
            let text = String::from_utf8(out).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(len, body.len());
            let v: Value = serde_json::from_str(body).unwrap();
            match api {
                Api::Mcp => {
                    assert_eq!(v["id"], 12345);
                    assert_eq!(v["params"]["arguments"]["text"], "hello 12345");
                    assert_eq!(
                        v["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"],
                        MCP_VERSION
                    );
                }
                Api::Json => assert_eq!(v, json!({"text": "hello 12345"})),
            }
        }
    }
}
