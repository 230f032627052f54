//! The open-file limit. Each worker holds four descriptors in flw (its
//! channel, stdout, stderr and, when forked, a pidfd), so hundreds of
//! workers need more than the common soft limit of 1024. flw raises its
//! own soft limit to the hard one at start, and gives the processes it
//! starts the limit it was started with (as Go's runtime does), so that
//! programs that still use `select()` see what they expect.

use std::sync::OnceLock;

static ORIGINAL: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit; the
/// original is kept for [`restore_in_child`].
pub fn raise() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    if ORIGINAL.set(lim).is_err() || lim.rlim_cur >= lim.rlim_max {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: lim.rlim_max,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::debug!("could not raise the open-file limit");
    }
}

/// In a child between fork and exec: puts back the limit flw was started
/// with. Only async-signal-safe work (one `setrlimit`).
pub fn restore_in_child() {
    if let Some(lim) = ORIGINAL.get() {
        // SAFETY: setrlimit is async-signal-safe and reads the struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, lim) };
    }
}
