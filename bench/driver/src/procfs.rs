//! Reading `/proc`: process trees, CPU time, resident memory and liveness.

use std::collections::HashMap;
use std::fs;

/// The fields of `/proc/PID/stat` the benchmark needs.
#[derive(Debug, Clone, Copy)]
pub struct Stat {
    /// The process id.
    pub pid: i32,
    /// Its parent's id.
    pub ppid: i32,
    /// The state letter (`R`, `S`, `Z`, ...).
    pub state: char,
    /// utime + stime + cutime + cstime, in clock ticks. Counting the reaped
    /// children's time too keeps a tree's total steady when a worker dies.
    pub ticks: u64,
}

/// Reads `/proc/PID/stat`; `None` when the process is gone.
pub fn stat(pid: i32) -> Option<Stat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: split after the last ')'.
    let rest: Vec<&str> = text
        .get(text.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let state = rest.first()?.chars().next()?;
    let ppid = rest.get(1)?.parse().ok()?;
    // Fields 14..=17 (utime, stime, cutime, cstime); rest[0] is field 3.
    let mut ticks = 0u64;
    for field in rest.get(11..15)? {
        ticks += field.parse::<i64>().ok()?.max(0) as u64;
    }
    Some(Stat {
        pid,
        ppid,
        state,
        ticks,
    })
}

/// Every process visible in `/proc`.
fn all() -> Vec<Stat> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
        .collect()
}

/// `root` and all its descendants (found through the ppid links), root first.
pub fn tree(root: i32) -> Vec<Stat> {
    let procs = all();
    let mut children: HashMap<i32, Vec<&Stat>> = HashMap::new();
    for p in &procs {
        children.entry(p.ppid).or_default().push(p);
    }
    let mut out: Vec<Stat> = procs.iter().filter(|p| p.pid == root).copied().collect();
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i].pid) {
            out.extend(kids.iter().map(|k| **k));
        }
        i += 1;
    }
    out
}

/// The ids of `root` and its descendants.
pub fn tree_pids(root: i32) -> Vec<i32> {
    tree(root).iter().map(|s| s.pid).collect()
}

/// Clock ticks per second (the unit of [`Stat::ticks`]).
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds used so far by `root` and its descendants (and their reaped children).
pub fn tree_cpu_seconds(root: i32) -> f64 {
    let ticks: u64 = tree(root).iter().map(|s| s.ticks).sum();
    ticks as f64 / clock_ticks()
}

/// CPU seconds (user + system) this driver process has used so far.
pub fn self_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// CPU seconds (user + system) of this driver's children that have been
/// waited for, and of the descendants they waited for.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `VmRSS` of one process, in bytes; `None` when it is gone.
pub fn rss_bytes(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The sum of `VmRSS` over `root` and its descendants, in bytes.
pub fn tree_rss_bytes(root: i32) -> u64 {
    tree(root).iter().filter_map(|s| rss_bytes(s.pid)).sum()
}

/// `Pss` of one process (from `/proc/PID/smaps_rollup`), in bytes; `None`
/// when it is gone or cannot be read. Shared pages count once over all the
/// processes that map them, so PSS sums over a tree of forked processes
/// without counting their shared pages again and again as RSS would.
pub fn pss_bytes(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Pss:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The sum of `Pss` over `root` and its descendants, in bytes, and the
/// number of processes it was read from.
pub fn tree_pss(root: i32) -> (u64, usize) {
    tree(root)
        .iter()
        .filter_map(|s| pss_bytes(s.pid))
        .fold((0, 0), |(sum, n), b| (sum + b, n + 1))
}

/// True when `pid` no longer runs: it does not exist, or it is a zombie.
pub fn is_dead(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
    }
    matches!(
        stat(pid),
        None | Some(Stat {
            state: 'Z' | 'X',
            ..
        })
    )
}

/// Sends SIGKILL to `pid`, ignoring errors (it may be gone already).
pub fn kill(pid: i32) {
    if pid > 1 {
        // SAFETY: plain syscall.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Sends SIGKILL to the process group `pgid`, ignoring errors.
pub fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}
