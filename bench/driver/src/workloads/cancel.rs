//! (f) Cancel: how long after `notifications/cancelled` the work a tool
//! started is really gone: its grandchild process and its TCP connection.

use std::io::{ErrorKind, Read};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{median, progress, Ctx, Fmt, PeerResult, Row, Section, Workload};
use crate::peers::{Family, CANCEL_GRACE_MS};
use crate::procfs;
use crate::server::Server;

/// How long the driver waits for each effect.
pub const LIMIT: Duration = Duration::from_secs(10);

/// One repetition: ms to grandchild dead and to connection closed (`None`: never).
struct Rep {
    child: Option<f64>,
    conn: Option<f64>,
}

/// Waits for the tool's connection and reads its request; returns the stream
/// and the grandchild's pid.
fn accept_hold(
    server: &Server,
    listener: &TcpListener,
    id: u64,
) -> Result<(TcpStream, i32), String> {
    let deadline = Instant::now() + LIMIT;
    let mut stream = loop {
        match listener.accept() {
            Ok((s, _)) => break s,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(format!("accept: {e}")),
        }
        if let Some(reply) = server.wait_reply(id, Duration::ZERO)? {
            return Err(format!("hold returned before connecting: {}", reply.value));
        }
        if Instant::now() > deadline {
            return Err("the tool did not connect within 10 s".into());
        }
        thread::sleep(Duration::from_millis(1));
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) => return Err("connection closed before the request".into()),
            Ok(n) => req.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("reading the request: {e}")),
        }
    }
    let text = String::from_utf8_lossy(&req);
    let pid = text
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse::<i32>().ok())
        .ok_or_else(|| format!("no pid in request {text:?}"))?;
    Ok((stream, pid))
}

fn one_rep(server: &mut Server, listener: &TcpListener, port: u16) -> Result<Rep, String> {
    let id = server.send_request(
        "tools/call",
        json!({"name": "hold", "arguments": {"port": port}}),
    );
    let (mut stream, pid) = accept_hold(server, listener, id)?;
    server.kill_at_shutdown(pid);
    let t0 = Instant::now();
    server.notify(
        "notifications/cancelled",
        json!({"requestId": id, "reason": "benchmark: cancel"}),
    );
    stream.set_nonblocking(true).map_err(|e| e.to_string())?;
    let (mut child, mut conn) = (None, None);
    let mut buf = [0u8; 4096];
    while t0.elapsed() < LIMIT && (child.is_none() || conn.is_none()) {
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        if child.is_none() && procfs::is_dead(pid) {
            child = Some(ms);
        }
        if conn.is_none() {
            match stream.read(&mut buf) {
                Ok(0) => conn = Some(ms),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => conn = Some(ms),
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    procfs::kill(pid);
    Ok(Rep { child, conn })
}

/// Runs the cancel workload.
pub fn run(ctx: &Ctx) -> Section {
    let reps = ctx.pick(5, 2);
    let mut results = Vec::new();
    let mut notes = Vec::new();
    for peer in ctx.peers(Workload::Cancel) {
        progress(&format!("cancel: {}", peer.label));
        let listener = match TcpListener::bind("127.0.0.1:0").and_then(|l| {
            l.set_nonblocking(true)?;
            Ok(l)
        }) {
            Ok(l) => l,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, format!("listener: {e}")));
                continue;
            }
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let mut server = match ctx.start(&peer) {
            Ok(s) => s,
            Err(e) => {
                results.push(PeerResult::skipped(&peer, e));
                continue;
            }
        };
        let mut r = PeerResult::new(&peer);
        let mut done = Vec::new();
        for i in 0..reps {
            match one_rep(&mut server, &listener, port) {
                Ok(rep) => {
                    let show =
                        |v: Option<f64>| v.map_or("never".into(), |ms| format!("{ms:.1} ms"));
                    progress(&format!(
                        "  rep {}: grandchild gone {}, connection closed {}",
                        i + 1,
                        show(rep.child),
                        show(rep.conn)
                    ));
                    let never = rep.child.is_none() || rep.conn.is_none();
                    done.push(rep);
                    if never && i + 1 < reps {
                        notes.push(format!(
                            "{}: stopped after repetition {} because an effect never happened \
                             within 10 s.",
                            peer.label,
                            i + 1
                        ));
                        break;
                    }
                }
                Err(e) => {
                    r.failed += 1;
                    r.notes.push(format!("repetition {}: {e}", i + 1));
                    progress(&format!("  rep {}: {e}", i + 1));
                    break;
                }
            }
        }
        let ms = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
        let child: Vec<f64> = done.iter().map(|d| ms(d.child)).collect();
        let conn: Vec<f64> = done.iter().map(|d| ms(d.conn)).collect();
        let both: Vec<f64> = done.iter().map(|d| ms(d.child).max(ms(d.conn))).collect();
        for (key, v) in [("child_ms", child), ("conn_ms", conn), ("both_ms", both)] {
            if let Some(m) = median(&v) {
                r.set(key, m);
            }
        }
        r.set("reps", done.len() as f64);
        if peer.family == Family::Flw {
            r.set("grace_ms", CANCEL_GRACE_MS as f64);
        }
        server.kill();
        results.push(r);
    }
    Section {
        workload: Workload::Cancel,
        title: "(f) Cancel: time until the work is really gone".into(),
        about: vec![format!(
            "`hold(port)` starts a grandchild `sleep 300`, connects to the driver's loopback \
             listener and waits forever for an answer. When the request arrives, the driver sends \
             `notifications/cancelled` and polls every 1 ms until the grandchild is gone (ESRCH \
             or zombie) and the connection is closed (EOF or error). Median of {reps} \
             repetitions; \"never\" means not within 10 s. flw runs with cancel_grace = \
             {CANCEL_GRACE_MS} ms."
        )],
        rows: vec![
            Row::new("configured cancel grace (ms)", "grace_ms", Fmt::Millis),
            Row::new("grandchild gone (ms)", "child_ms", Fmt::Millis),
            Row::new("connection closed (ms)", "conn_ms", Fmt::Millis),
            Row::new("both (ms)", "both_ms", Fmt::Millis),
            Row::new("repetitions", "reps", Fmt::Int),
        ],
        results,
        ratios: vec![],
        notes,
    }
}
