//! The fork server of a Python pool generation: one process that imported
//! the SDK and the script once and forks each worker on request (see
//! `protocol/PROTOCOL.md`, "Fork server").
//!
//! The supervisor talks to it over a `SOCK_SEQPACKET` socket on its fd 3,
//! one JSON message per datagram; a `fork` datagram carries the new
//! worker's channel, stdout and stderr as `SCM_RIGHTS`. The fork server
//! forks a *keeper* (a child subreaper that leads its own session), which
//! forks the worker; the answer names the keeper's pid, which stands for the
//! worker from then on: its exit is seen through a pidfd (kernel), its
//! status comes from the fork server, which reaps it.
//!
//! Its fd 4 is the read end of a pipe whose write end only this handle
//! holds: the *lifeline*. When the supervisor dies, every keeper sees the
//! pipe end and kills its worker's whole tree, whether or not the fork server
//! is still alive. A fork server that crashes leaves its workers serving:
//! they need nothing from it. Each worker holds the `Arc<ForkServer>` that
//! forked it, so the lifeline stays open while any of them lives.

use std::collections::HashMap;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flw_protocol::fork_server::{
    FromForkServer, ToForkServer, ENV_FORK_SERVER, ENV_KEEPER_EXE, ENV_LIFELINE_FD, LIFELINE_FD,
    MAX_DATAGRAM_BYTES,
};
use flw_protocol::CHANNEL_FD;
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType,
};
use tokio::io::unix::AsyncFd;
use tokio::process::Child;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::group::describe_exit;
use super::output::{pump, StderrTail, Stream};
use super::spawn::SpawnSpec;

/// How a keeper ended, as its parent (the fork server) saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitReport {
    /// Its exit status, when it exited.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
}

impl ExitReport {
    /// "exit status 1" or "signal 9 (SIGKILL)", as for an exec'd worker.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (_, Some(sig)) => match nix::sys::signal::Signal::try_from(sig) {
                Ok(s) => format!("signal {sig} ({})", s.as_str()),
                Err(_) => format!("signal {sig}"),
            },
            (Some(code), None) => format!("exit status {code}"),
            (None, None) => "an unknown status".into(),
        }
    }
}

/// Why a fork server gave no forks.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForkServerError {
    /// The script cannot be forked safely (it started threads while it was
    /// imported): its workers must be exec'd.
    #[error("{0}")]
    Unsafe(String),
    /// It could not start, or ended; the message has its stderr's last lines.
    #[error("{0}")]
    Failed(String),
}

/// Why a fork server gave no worker for one request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForkError {
    /// The supervisor's side failed: a socket or pipe could not be made.
    #[error("cannot {what} for a forked worker: {error}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error, in words.
        error: String,
    },
    /// The fork server has ended (crashed, shut down, or was killed).
    #[error("{0}")]
    Ended(String),
    /// The request could not be sent.
    #[error("cannot ask fork server {label} for a worker: {error}")]
    Send {
        /// The fork server's label.
        label: Arc<str>,
        /// The OS error, in words.
        error: String,
    },
    /// The fork server answered `fork_failed`.
    #[error("fork server {label} could not fork: {error}")]
    Refused {
        /// The fork server's label.
        label: Arc<str>,
        /// Its reason.
        error: String,
    },
    /// No answer within the timeout: the fork server was killed.
    #[error("fork server {label} did not fork a worker within {timeout:?}; it was killed")]
    Timeout {
        /// The fork server's label.
        label: Arc<str>,
        /// How long it had.
        timeout: Duration,
    },
}

/// A worker forked by a fork server.
pub struct Forked {
    /// The keeper's pid (leader of its own session and group).
    pub pid: u32,
    io: Option<(
        tokio::net::UnixStream,
        tokio::net::unix::pipe::Receiver,
        tokio::net::unix::pipe::Receiver,
    )>,
    /// Readable once the keeper has exited (`None` when it had already).
    pidfd: Option<AsyncFd<OwnedFd>>,
    /// The fork server's report of the keeper's end.
    exit: oneshot::Receiver<ExitReport>,
    status: Option<String>,
    /// Keeps the lifeline open while this worker lives.
    server: Arc<ForkServer>,
}

impl std::fmt::Debug for Forked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forked")
            .field("pid", &self.pid)
            .field("server", &self.server.label)
            .finish_non_exhaustive()
    }
}

impl Forked {
    /// The supervisor's end of the worker's channel, and the read ends of
    /// its stdout and stderr (once; later calls panic).
    pub fn take_io(
        &mut self,
    ) -> (
        tokio::net::UnixStream,
        tokio::net::unix::pipe::Receiver,
        tokio::net::unix::pipe::Receiver,
    ) {
        self.io.take().expect("take_io is called once")
    }

    /// Waits until the keeper has exited; its status in words. Cancel-safe.
    pub async fn wait(&mut self) -> String {
        if let Some(s) = &self.status {
            return s.clone();
        }
        let status = match &self.pidfd {
            Some(fd) => {
                // A pidfd polls readable once its process has exited; the
                // readiness is level-triggered, so this never misses it.
                if let Ok(guard) = fd.readable().await {
                    drop(guard);
                }
                // The fork server reaps the keeper and tells its status; if
                // it is gone (crashed), someone else reaped the keeper.
                tokio::time::timeout(Duration::from_millis(500), &mut self.exit)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            // No pidfd: the fork server's report is the only news.
            None => (&mut self.exit).await.ok(),
        };
        let status = status.map_or_else(
            || "an unknown status (its fork server was gone)".to_string(),
            |r| r.describe(),
        );
        self.status = Some(status.clone());
        status
    }
}

/// A fork's answer: the keeper's pid and where its end will be reported.
type ForkAnswer = Result<(u32, oneshot::Receiver<ExitReport>), ForkError>;

#[derive(Default)]
struct Shared {
    forks: HashMap<u64, oneshot::Sender<ForkAnswer>>,
    exits: HashMap<u32, oneshot::Sender<ExitReport>>,
    ended: Option<String>,
}

/// A running fork server; see the module docs.
pub struct ForkServer {
    label: Arc<str>,
    pid: u32,
    control: Arc<AsyncFd<OwnedFd>>,
    /// The write end of the lifeline (never written; closed when dropped).
    _lifeline: OwnedFd,
    shared: Mutex<Shared>,
    next_id: AtomicU64,
    ended: CancellationToken,
    forks: AtomicU64,
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        // Ends the read loop, which then drops the control socket: the fork
        // server reads its end and exits.
        self.ended.cancel();
    }
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("label", &self.label)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl ForkServer {
    /// Starts `spec` (a `python -m flw --fork-server SCRIPT` command line)
    /// and waits, up to `timeout`, until it has loaded the script.
    pub async fn start(
        spec: &SpawnSpec,
        label: &str,
        timeout: Duration,
    ) -> Result<Arc<ForkServer>, ForkServerError> {
        let label: Arc<str> = label.into();
        let program = spec.program.display().to_string();
        let failed = |why: String| ForkServerError::Failed(format!("fork server {label}: {why}"));
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )
        .map_err(|e| failed(format!("cannot make its socket: {e}")))?;
        let (life_r, life_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| failed(format!("cannot make its lifeline: {e}")))?;
        // The child's side is duplicated above fd 9 first, so that moving
        // the two onto 3 and 4 cannot overwrite one with the other.
        let theirs_hi = dup_high(&theirs).map_err(|e| failed(e.to_string()))?;
        let life_hi = dup_high(&life_r).map_err(|e| failed(e.to_string()))?;
        drop((theirs, life_r));
        let (a, b) = (theirs_hi.as_raw_fd(), life_hi.as_raw_fd());
        let mut cmd = spec.command();
        cmd.env(ENV_FORK_SERVER, "1")
            .env(ENV_LIFELINE_FD, LIFELINE_FD.to_string());
        // Its children exec flw as their keeper (`crate::keeper`).
        if let Some(exe) = crate::keeper::exe() {
            cmd.env(ENV_KEEPER_EXE, exe);
        }
        // SAFETY: only async-signal-safe calls (setsid, prctl, dup2) between
        // fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::nofile::restore_in_child();
                // The fork server dies with the supervisor; its workers
                // follow through the lifeline, not through it.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::dup2(a, CHANNEL_FD) < 0 || libc::dup2(b, LIFELINE_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| failed(spec.could_not_run(&e)))?;
        drop((theirs_hi, life_hi));
        let pid = child.id().unwrap_or(0);
        let tail = StderrTail::default();
        if let Some(s) = child.stdout.take() {
            tokio::spawn(pump(s, Stream::Stdout, label.clone(), None));
        }
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(pump(s, Stream::Stderr, label.clone(), Some(tail.clone()))));
        let control = register(ours).map_err(|e| failed(e.to_string()))?;
        let first = tokio::select! {
            m = tokio::time::timeout(timeout, recv(&control)) => m,
            status = child.wait() => {
                if let Some(t) = stderr {
                    let _ = tokio::time::timeout(Duration::from_millis(500), t).await;
                }
                let status = status.map_or_else(|e| e.to_string(), |s| describe_exit(&s));
                return Err(failed(format!("{program} exited with {status} before it was ready{}", tail.render())));
            }
        };
        let server = match first {
            Ok(Ok(Some(FromForkServer::Ready { .. }))) => Arc::new(ForkServer {
                label: label.clone(),
                pid,
                control: Arc::new(control),
                _lifeline: life_w,
                shared: Mutex::new(Shared::default()),
                next_id: AtomicU64::new(1),
                ended: CancellationToken::new(),
                forks: AtomicU64::new(0),
            }),
            Ok(Ok(Some(FromForkServer::Unsafe { reason }))) => {
                // It exits by itself; one whose script left a thread that
                // keeps it alive is killed.
                if tokio::time::timeout(Duration::from_secs(1), child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
                return Err(ForkServerError::Unsafe(reason));
            }
            other => {
                let why = match other {
                    Err(_) => format!("was not ready within {timeout:?} (raise handshake_timeout in flw.toml if its imports are slow)"),
                    Ok(Err(e)) => format!("its channel failed: {e}"),
                    Ok(Ok(None)) => "closed its channel before it was ready".into(),
                    Ok(Ok(Some(m))) => format!("sent {m:?} before ready"),
                };
                let _ = child.start_kill();
                let _ = child.wait().await;
                if let Some(t) = stderr {
                    let _ = tokio::time::timeout(Duration::from_millis(500), t).await;
                }
                return Err(failed(format!("{why}{}", tail.render())));
            }
        };
        tokio::spawn(read_loop(
            server.control.clone(),
            Arc::downgrade(&server),
            server.ended.clone(),
        ));
        tokio::spawn(watch_exit(child, server.clone()));
        tracing::debug!(fork_server = %label, pid, "fork server ready");
        Ok(server)
    }

    /// The fork server's label, e.g. `agent.py#fork`.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether it has ended (crashed, or was shut down).
    pub fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
    }

    /// Forks a worker labelled `label`; it then does its handshake on the
    /// channel like any other.
    /// A fork server that has not answered within `timeout` is ended and
    /// killed (the next worker starts a new one).
    pub async fn fork(
        self: &Arc<Self>,
        label: &str,
        timeout: Duration,
    ) -> Result<Forked, ForkError> {
        let io = |what: &'static str, e: std::io::Error| ForkError::Io {
            what,
            error: e.to_string(),
        };
        let (ours, theirs) = UnixStream::pair().map_err(|e| io("make a channel", e))?;
        ours.set_nonblocking(true)
            .map_err(|e| io("make a channel", e))?;
        let (out_r, out_w) = pipe().map_err(|e| io("make a pipe", e))?;
        let (err_r, err_w) = pipe().map_err(|e| io("make a pipe", e))?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut sh = self.lock();
            if let Some(why) = &sh.ended {
                return Err(ForkError::Ended(why.clone()));
            }
            sh.forks.insert(id, tx);
        }
        let msg = ToForkServer::Fork {
            id,
            label: label.to_string(),
        }
        .encode();
        let fds = [theirs.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        if let Err(e) = self.send(&msg, &fds).await {
            self.lock().forks.remove(&id);
            return Err(ForkError::Send {
                label: self.label.clone(),
                error: e.to_string(),
            });
        }
        drop((theirs, out_w, err_w));
        let (pid, exit) = match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => {
                return Err(ForkError::Ended(format!(
                    "fork server {} ended",
                    self.label
                )))
            }
            Err(_) => {
                let why = ForkError::Timeout {
                    label: self.label.clone(),
                    timeout,
                };
                tracing::warn!(fork_server = %self.label, "{why}");
                self.end(why.to_string());
                if let Ok(pid) = i32::try_from(self.pid) {
                    if pid > 1 {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                return Err(why);
            }
        };
        self.forks.fetch_add(1, Ordering::Relaxed);
        let pidfd = pidfd_open(pid).and_then(|fd| register(fd).ok());
        let channel = tokio::net::UnixStream::from_std(ours).map_err(|e| io("register", e))?;
        let stdout = tokio::net::unix::pipe::Receiver::from_owned_fd(out_r)
            .map_err(|e| io("register", e))?;
        let stderr = tokio::net::unix::pipe::Receiver::from_owned_fd(err_r)
            .map_err(|e| io("register", e))?;
        Ok(Forked {
            pid,
            io: Some((channel, stdout, stderr)),
            pidfd,
            exit,
            status: None,
            server: self.clone(),
        })
    }

    /// How many workers it forked.
    pub fn forks(&self) -> u64 {
        self.forks.load(Ordering::Relaxed)
    }

    /// Asks it to exit; the workers it forked go on.
    pub async fn shutdown(&self) {
        let _ = self.send(&ToForkServer::Shutdown.encode(), &[]).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
        loop {
            let mut guard = self.control.writable().await?;
            let res = guard.try_io(|inner| {
                let iov = [IoSlice::new(bytes)];
                let cmsg = [ControlMessage::ScmRights(fds)];
                let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &cmsg };
                sendmsg::<()>(inner.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None)
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
            match res {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    fn route(&self, msg: FromForkServer) {
        let mut sh = self.lock();
        match msg {
            FromForkServer::Forked { id, pid } => {
                let (tx, rx) = oneshot::channel();
                sh.exits.insert(pid, tx);
                if let Some(waiter) = sh.forks.remove(&id) {
                    let _ = waiter.send(Ok((pid, rx)));
                }
            }
            FromForkServer::ForkFailed { id, error } => {
                if let Some(waiter) = sh.forks.remove(&id) {
                    let _ = waiter.send(Err(ForkError::Refused {
                        label: self.label.clone(),
                        error,
                    }));
                }
            }
            FromForkServer::Exited { pid, code, signal } => {
                if let Some(tx) = sh.exits.remove(&pid) {
                    let _ = tx.send(ExitReport { code, signal });
                }
            }
            other => {
                tracing::warn!(fork_server = %self.label, "unexpected message: {other:?}");
            }
        }
    }

    fn end(&self, why: String) {
        let mut sh = self.lock();
        for (_, w) in sh.forks.drain() {
            let _ = w.send(Err(ForkError::Ended(why.clone())));
        }
        sh.exits.clear();
        sh.ended.get_or_insert(why);
        drop(sh);
        self.ended.cancel();
    }
}

/// Reads the fork server's messages until its channel ends, or until
/// every handle is gone (it then holds no strong reference while it waits,
/// so a dropped fork server sees its channel close and exits).
async fn read_loop(
    control: Arc<AsyncFd<OwnedFd>>,
    server: std::sync::Weak<ForkServer>,
    ended: CancellationToken,
) {
    loop {
        let msg = tokio::select! {
            m = recv(&control) => m,
            _ = ended.cancelled() => return,
        };
        let Some(s) = server.upgrade() else { return };
        match msg {
            Ok(Some(m)) => s.route(m),
            Ok(None) => {
                s.end(format!("fork server {} closed its channel", s.label));
                return;
            }
            Err(e) => {
                tracing::warn!(fork_server = %s.label, "{e}");
                if e.kind() != std::io::ErrorKind::InvalidData {
                    s.end(format!("fork server {}'s channel failed: {e}", s.label));
                    return;
                }
            }
        }
    }
}

/// Reaps the fork server and logs an end nobody asked for.
async fn watch_exit(mut child: Child, server: Arc<ForkServer>) {
    let weak = Arc::downgrade(&server);
    let ended = server.ended.clone();
    let label = server.label.clone();
    drop(server);
    let status = child.wait().await;
    let status = status.map_or_else(|e| e.to_string(), |s| describe_exit(&s));
    if let Some(s) = weak.upgrade() {
        if !ended.is_cancelled() {
            tracing::warn!(fork_server = %label, "fork server ended with {status}; its workers go on, and the next worker starts a new one");
        }
        s.end(format!("fork server {label} ended with {status}"));
    }
}

/// One datagram: `Ok(None)` at the end of the channel; a datagram that is
/// no message is `InvalidData`.
async fn recv(control: &AsyncFd<OwnedFd>) -> std::io::Result<Option<FromForkServer>> {
    let mut buf = vec![0u8; MAX_DATAGRAM_BYTES + 1];
    loop {
        let mut guard = control.readable().await?;
        let res = guard.try_io(|inner| {
            let mut iov = [std::io::IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                inner.as_raw_fd(),
                &mut iov,
                None,
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(std::io::Error::from)?;
            Ok(msg.bytes)
        });
        match res {
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(n)) => {
                return FromForkServer::decode(&buf[..n])
                    .map(Some)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
            }
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
}

/// Registers a descriptor this process owns with the runtime.
fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: the `OwnedFd` moves into the `AsyncFd`, which keeps it open
    // and the same descriptor for as long as it lives.
    unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

fn dup_high(fd: &impl AsFd) -> std::io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) returns a new descriptor we own.
    let raw = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(std::io::Error::from)
}

/// A pidfd for `pid` (Linux ≥ 5.3), or `None` when it is gone already or
/// pidfds are missing (then the fork server's report alone tells the end).
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    // SAFETY: a plain syscall; a non-negative result is a descriptor we own.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if raw < 0 {
        return None;
    }
    let raw = RawFd::try_from(raw).ok()?;
    // SAFETY: as above.
    Some(unsafe { OwnedFd::from_raw_fd(raw) })
}
