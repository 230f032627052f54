//! `flw __keeper`: the keeper of one forked Python worker, in Rust.
//!
//! The fork server's child K becomes a child subreaper, forks the worker W
//! and then execs this (`FLW_KEEPER_EXE`, PROTOCOL.md "Keeper"), so that
//! the process that stays beside each worker holds none of the fork
//! server's Python heap: about 0.75 MB of private memory instead of 2 MB
//! (relocated read-only data and jemalloc's first arena), and no
//! copy-on-write faults. It does what `worker/_keeper.py` does, on the same
//! signals: SIGUSR1 kills W's tree now, SIGTERM (or SIGINT) stops W
//! gracefully within the grace, the lifeline's end means the supervisor is
//! gone; then the sweep, and an exit with W's status.
//!
//! It runs before anything else in `main` (no runtime, no logging), and K
//! exec'd it with those signals blocked, so none is lost: they wait in a
//! signalfd.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, killpg, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{getpgrp, getpid, Pid};

/// The argument that selects the keeper: `flw __keeper PID FD GRACE_MS LABEL`,
/// where `GRACE_MS` is the keeper's own grace for a SIGTERM (the
/// supervisor's `kill_grace` minus 50 ms, as the fork server computes it).
pub const ARG: &str = "__keeper";

/// The binary fork servers' children exec as their keeper: set by the
/// `flw` binary's `main` (`this_binary_keeps`); a program that only links
/// the library has none, and its forked workers keep Python keepers.
static EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Makes this program (the `flw` binary, which dispatches [`ARG`]) the
/// keeper of the workers it forks.
pub fn this_binary_keeps() {
    if let Ok(exe) = std::env::current_exe() {
        let _ = EXE.set(exe);
    }
}

/// The keeper program for `FLW_KEEPER_EXE`, if there is one.
pub fn exe() -> Option<&'static std::path::Path> {
    EXE.get().map(std::path::PathBuf::as_path)
}

/// How long the sweep waits for a signal before it looks at `/proc` again.
const SWEEP_WAIT: Duration = Duration::from_millis(20);
/// Rounds after which the sweep gives up on what it cannot kill.
const SWEEP_ROUNDS_MAX: u32 = 500;
/// Rounds the sweep waits for W's own group to die before it looks at
/// `/proc` anyway.
const SWEEP_ROUNDS_FOR_W: u32 = 5;

struct Keeper {
    worker: Pid,
    label: String,
    signals: SignalFd,
}

/// Runs the keeper with `args` (after `__keeper`); never returns.
pub fn main(args: &[OsString]) -> ! {
    let parsed = (|| {
        let [pid, fd, grace, label] = args else {
            return None;
        };
        let pid: i32 = pid.to_str()?.parse().ok().filter(|p| *p > 1)?;
        let fd: RawFd = fd.to_str()?.parse().ok().filter(|f| *f > 2)?;
        let grace: u64 = grace.to_str()?.parse().ok()?;
        Some((
            Pid::from_raw(pid),
            fd,
            grace,
            label.to_string_lossy().into_owned(),
        ))
    })();
    let Some((worker, lifeline, grace_ms, label)) = parsed else {
        note("flw", &format!("{ARG} takes a worker pid, a lifeline fd, a grace in ms and a label; it is run by the fork server, not by hand"));
        std::process::exit(2);
    };
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGUSR1,
    ] {
        mask.add(s);
    }
    let signals = match nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .and_then(|()| SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC))
    {
        Ok(s) => s,
        Err(e) => {
            note(
                &format!("flw[{label}]"),
                &format!("keeper: cannot take its signals: {e}; killing the worker"),
            );
            let _ = killpg(worker, Signal::SIGKILL);
            std::process::exit(1);
        }
    };
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let grace = Duration::from_millis(grace_ms);
    let keeper = Keeper {
        worker,
        label,
        signals,
    };
    // SAFETY: the fork server's child left the lifeline open on this fd
    // for the keeper, which only polls and reads it.
    let lifeline = unsafe { BorrowedFd::borrow_raw(lifeline) };
    let status = keeper.watch(lifeline, grace);
    let status = keeper.sweep(status);
    exit_like(status)
}

impl Keeper {
    fn note(&self, text: &str) {
        note(&format!("flw[{}]", self.label), text);
    }

    /// Waits for W's exit, a signal or the lifeline's end; W's status if it
    /// exited.
    fn watch(&self, lifeline: BorrowedFd<'_>, grace: Duration) -> Option<i32> {
        let mut status = None;
        let mut deadline: Option<Instant> = None;
        loop {
            let timeout = match deadline {
                None => PollTimeout::NONE,
                Some(d) => {
                    let left = d.saturating_duration_since(Instant::now()).as_millis();
                    PollTimeout::try_from(left.min(60_000) as i32).unwrap_or(PollTimeout::ZERO)
                }
            };
            let mut fds = [
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(lifeline, PollFlags::POLLIN),
            ];
            match poll(&mut fds, timeout) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => {
                    self.note(&format!("keeper: poll failed: {e}; killing the worker"));
                    return status;
                }
            }
            let signalled = fds[0].any().unwrap_or(false);
            let lifeline_ready = fds[1].revents().unwrap_or(PollFlags::empty());
            let mut kill_now = false;
            if signalled {
                while let Ok(Some(info)) = self.signals.read_signal() {
                    match Signal::try_from(info.ssi_signo as i32) {
                        Ok(Signal::SIGUSR1) => kill_now = true,
                        Ok(Signal::SIGTERM | Signal::SIGINT) if deadline.is_none() => {
                            let _ = killpg(self.worker, Signal::SIGTERM);
                            deadline = Some(Instant::now() + grace);
                        }
                        _ => {}
                    }
                }
            }
            if !lifeline_ready.is_empty() && lifeline_closed(lifeline, lifeline_ready) {
                self.note("keeper: the supervisor is gone (lifeline closed); killing the worker");
                kill_now = true;
            }
            let (s, _) = self.reap(status);
            status = s;
            if status.is_some() || kill_now {
                return status;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                self.note("keeper: the worker did not exit after SIGTERM; killing it");
                return status;
            }
        }
    }

    /// Reaps every child that has exited: W's status, and whether children
    /// are left. W's group gets SIGKILL before W is reaped: while W is a
    /// zombie its pid, and so its group id, cannot be another's.
    ///
    /// The waits are libc's, keeping the raw status: nix's wrappers fail on
    /// a child killed by a real-time signal, which would leave it unreaped.
    fn reap(&self, mut status: Option<i32>) -> (Option<i32>, bool) {
        loop {
            let pid = match exited_child() {
                Err(Errno::ECHILD) => return (status, false),
                Err(Errno::EINTR) => continue,
                Err(_) | Ok(None) => return (status, true),
                Ok(Some(pid)) => pid,
            };
            if pid == self.worker && status.is_none() {
                let _ = killpg(self.worker, Signal::SIGKILL);
            }
            let mut raw = 0;
            // SAFETY: waitpid on a child that has exited (waitid said so):
            // it does not block, and writes only `raw`.
            let reaped = unsafe { libc::waitpid(pid.as_raw(), &mut raw, 0) };
            if reaped == pid.as_raw() && pid == self.worker {
                status = Some(raw);
            }
        }
    }

    /// Kills W's group and every process that comes to the keeper, and
    /// reaps them all; W's status.
    fn sweep(&self, mut status: Option<i32>) -> Option<i32> {
        if status.is_none() {
            let _ = killpg(self.worker, Signal::SIGKILL);
        }
        let me = getpid();
        let own_group = getpgrp();
        let mut rounds = 0;
        loop {
            let (s, more) = self.reap(status);
            status = s;
            if !more {
                return status;
            }
            if status.is_some() || rounds >= SWEEP_ROUNDS_FOR_W {
                if rounds >= SWEEP_ROUNDS_MAX {
                    // A child SIGKILL cannot reach (a set-user-ID program):
                    // the keeper stops looking rather than spin.
                    return status;
                }
                for (pid, pgid) in children_of(me) {
                    let _ = kill(pid, Signal::SIGKILL);
                    if pgid != own_group {
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                }
            }
            rounds += 1;
            let mut fds = [PollFd::new(self.signals.as_fd(), PollFlags::POLLIN)];
            let wait =
                PollTimeout::try_from(SWEEP_WAIT.as_millis() as i32).unwrap_or(PollTimeout::ZERO);
            let _ = poll(&mut fds, wait);
            while let Ok(Some(_)) = self.signals.read_signal() {}
        }
    }
}

/// A child that has exited, left waitable (`WNOWAIT`): `None` when every
/// child still runs.
fn exited_child() -> Result<Option<Pid>, Errno> {
    // SAFETY: a zeroed siginfo_t is valid; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: P_ALL with a valid siginfo_t pointer.
    let r = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if r < 0 {
        return Err(Errno::last());
    }
    // SAFETY: waitid filled `info` (si_pid is 0 when no child has exited).
    let pid = unsafe { info.si_pid() };
    Ok((pid > 0).then(|| Pid::from_raw(pid)))
}

/// Writes `who: text` to stderr, never failing: once the supervisor is gone
/// its end of the pipe is closed, and the keeper must still sweep (where
/// `eprintln!` would panic on `EPIPE`).
fn note(who: &str, text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{who}: {text}");
}

/// Whether `poll` says the lifeline's writer (the supervisor) is gone.
fn lifeline_closed(fd: BorrowedFd<'_>, events: PollFlags) -> bool {
    if events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL) {
        return true;
    }
    let mut byte = [0u8; 1];
    // The supervisor never writes to it: a read returns 0 at its end.
    matches!(nix::unistd::read(fd, &mut byte), Ok(0))
}

/// The live (not zombie) children of `ppid`, as `(pid, pgid)`, from `/proc`:
/// the `children` file of each of its threads where the kernel has it
/// (`CONFIG_PROC_CHILDREN`), else every `/proc/*/stat`.
pub fn children_of(ppid: Pid) -> Vec<(Pid, Pid)> {
    let listed: Option<Vec<i32>> = std::fs::read_dir(format!("/proc/{ppid}/task"))
        .ok()
        .and_then(|tasks| {
            let mut pids = Vec::new();
            for task in tasks.flatten() {
                let text = std::fs::read_to_string(task.path().join("children")).ok()?;
                pids.extend(
                    text.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
            Some(pids)
        });
    let candidates: Vec<i32> = match listed {
        Some(pids) => pids,
        None => match std::fs::read_dir("/proc") {
            Ok(dir) => dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect(),
            Err(_) => return Vec::new(),
        },
    };
    candidates
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
            let (state, parent, group) = parse_stat(&stat)?;
            (state != b'Z' && parent == ppid.as_raw())
                .then(|| (Pid::from_raw(pid), Pid::from_raw(group)))
        })
        .collect()
}

/// `(state, ppid, pgrp)` from a `/proc/PID/stat` line, whose `comm` may
/// hold spaces and parentheses.
fn parse_stat(stat: &[u8]) -> Option<(u8, i32, i32)> {
    let close = stat.iter().rposition(|b| *b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 2..)?).ok()?;
    let mut fields = rest.split(' ');
    let state = *fields.next()?.as_bytes().first()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, ppid, pgrp))
}

/// Exits as W did: with its code, or killed by its signal (no core dump),
/// real-time signals included.
fn exit_like(status: Option<i32>) -> ! {
    let Some(raw) = status else {
        std::process::exit(1)
    };
    if libc::WIFEXITED(raw) {
        std::process::exit(libc::WEXITSTATUS(raw));
    }
    if libc::WIFSIGNALED(raw) {
        let signal = libc::WTERMSIG(raw);
        // SAFETY: plain syscalls on this process before it ends.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            libc::signal(signal, libc::SIG_DFL);
            let mut only: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut only);
            libc::sigaddset(&mut only, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &only, std::ptr::null_mut());
            libc::kill(libc::getpid(), signal);
        }
        std::process::exit(128 + signal);
    }
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_names_parse() {
        assert_eq!(
            parse_stat(b"42 (a) b (c)) S 7 42 42 0 -1"),
            Some((b'S', 7, 42))
        );
        assert_eq!(parse_stat(b"42 (x) Z 1 9"), Some((b'Z', 1, 9)));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn children_are_found() {
        let mut child = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep runs");
        let pid = Pid::from_raw(child.id() as i32);
        let found = children_of(getpid());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.iter().any(|(p, _)| *p == pid), "{found:?}");
    }
}
