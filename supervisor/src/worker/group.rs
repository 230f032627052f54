//! Signals to a worker's whole process group, and exit statuses in words.

use std::process::ExitStatus;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Sends `signal` to process group `pgid`; a group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else {
        return;
    };
    if raw <= 1 {
        return; // never signal init's group or "every process"
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pgid, ?signal, "could not signal process group: {e}"),
    }
}

/// The process the supervisor signals to stop a worker: the worker itself,
/// leader of its process group, or (Python) its keeper, which leads its own
/// group and stops the worker's whole tree when asked (see
/// `protocol/PROTOCOL.md`, "Keeper").
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The pid, which is also the process group id.
    pub pid: u32,
    /// Whether it is a keeper.
    pub keeper: bool,
}

impl Target {
    /// Asks for a stop: SIGTERM to the group, or to the keeper (which sends
    /// it on to the worker's group and, before the kill grace is out,
    /// SIGKILLs every process of the worker's tree).
    pub fn terminate(&self) {
        if self.keeper {
            signal_pid(self.pid, Signal::SIGTERM);
        } else {
            signal_group(self.pid, Signal::SIGTERM);
        }
    }

    /// Stops it at once: SIGKILL to the group, or SIGUSR1 to the keeper,
    /// which SIGKILLs the worker's tree, processes that left its group
    /// (`setsid`) included, then exits.
    pub fn kill_now(&self) {
        if self.keeper {
            signal_pid(self.pid, Signal::SIGUSR1);
        } else {
            signal_group(self.pid, Signal::SIGKILL);
        }
    }

    /// The last resort: SIGKILL to the group (a keeper's group is itself).
    pub fn force(&self) {
        signal_group(self.pid, Signal::SIGKILL);
    }
}

fn signal_pid(pid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pid) else {
        return;
    };
    if raw <= 1 {
        return;
    }
    match nix::sys::signal::kill(Pid::from_raw(raw), signal) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, ?signal, "could not signal process: {e}"),
    }
}

/// Stops the worker at once when dropped ([`Target::kill_now`]), unless
/// disarmed: no worker outlives the task that owns it, even when that task
/// is dropped.
#[derive(Debug)]
pub struct GroupGuard {
    target: Target,
    armed: bool,
}

impl GroupGuard {
    /// Guards `target`.
    pub fn new(target: Target) -> Self {
        GroupGuard {
            target,
            armed: true,
        }
    }

    /// After the process has exited: SIGKILLs what is left of its group,
    /// and disarms the guard. A keeper's group is the keeper alone, and it
    /// left nothing behind (it exits last), so it gets no signal: its pid
    /// may already be another process's.
    pub fn sweep(&mut self) {
        if !self.target.keeper {
            self.target.force();
        }
        self.armed = false;
    }

    /// Stops the process now and disarms the guard.
    pub fn kill_now(&mut self) {
        self.target.kill_now();
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            self.target.kill_now();
        }
    }
}

/// "exit status 1" or "signal 9 (SIGKILL)".
pub fn describe_exit(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit status {code}")
    } else if let Some(sig) = status.signal() {
        match Signal::try_from(sig) {
            Ok(s) => format!("signal {sig} ({})", s.as_str()),
            Err(_) => format!("signal {sig}"),
        }
    } else {
        status.to_string()
    }
}
