//! Starting a worker process: no shell, its own session, the channel on fd 3.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

use flw_protocol::{CHANNEL_FD, ENV_CHANNEL_FD, ENV_MAX_LINE_BYTES, ENV_MODE, ENV_WORKER};

/// Variables a worker inherits from the supervisor's environment by default.
/// Everything else must be named in the pool's `env` or `pass_env`.
pub const ALLOWED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "TERM",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "PYTHONHOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    // The model endpoint of flw.llm (Python) and llm (TypeScript): calling
    // a model is what workers are for, so these need no `pass_env`.
    "OPENAI_BASE_URL",
    "OPENAI_API_KEY",
    "OPENAI_MODEL",
];

/// Everything needed to start one worker process. `Debug` shows the
/// variables' names, not their values (they may be secrets).
#[derive(Clone)]
pub struct SpawnSpec {
    /// The program, e.g. `python3`.
    pub program: PathBuf,
    /// Its arguments, e.g. `-m flw agent.py`.
    pub args: Vec<OsString>,
    /// The full environment of the child (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    /// Working directory; `None` keeps the supervisor's.
    pub cwd: Option<PathBuf>,
}

impl std::fmt::Debug for SpawnSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.env.iter().map(|(k, _)| k).collect();
        f.debug_struct("SpawnSpec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &names)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// A started child and the supervisor's end of its channel.
pub struct Spawned {
    /// The child process, leader of its own process group.
    pub child: Child,
    /// The supervisor's end of the socket pair.
    pub channel: tokio::net::UnixStream,
}

impl SpawnSpec {
    /// Builds the environment: the allow-listed variables of this process,
    /// then `extra` (which wins), then the protocol variables.
    pub fn environment(
        extra: &[(String, String)],
        pass: &[String],
        label: &str,
        mode: &str,
        max_line_bytes: usize,
    ) -> Vec<(OsString, OsString)> {
        let mut env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| {
                let k = k.to_string_lossy();
                ALLOWED_ENV.contains(&k.as_ref())
                    || k.starts_with("LC_")
                    || pass.iter().any(|p| p == k.as_ref())
            })
            .collect();
        for (k, v) in extra {
            env.retain(|(ek, _)| ek != k.as_str());
            env.push((k.into(), v.into()));
        }
        env.push((ENV_CHANNEL_FD.into(), CHANNEL_FD.to_string().into()));
        env.push((ENV_MODE.into(), mode.into()));
        env.push((ENV_WORKER.into(), label.into()));
        env.push((ENV_MAX_LINE_BYTES.into(), max_line_bytes.to_string().into()));
        env
    }

    /// The command line with its environment (nothing else inherited),
    /// stdin from /dev/null, stdout and stderr piped, killed when dropped.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(cwd) = &self.cwd {
            cmd.current_dir(cwd);
        }
        cmd
    }

    /// Why the program could not be run, with a hint when it is missing.
    pub fn could_not_run(&self, e: &std::io::Error) -> String {
        format!(
            "could not run {}: {e}{}",
            self.program.display(),
            if e.kind() == std::io::ErrorKind::NotFound {
                " (is it installed and on PATH?)"
            } else {
                ""
            }
        )
    }

    /// Starts the process in a new session with the channel on fd 3,
    /// stdin from /dev/null and stdout/stderr piped.
    ///
    /// The child also gets `PR_SET_PDEATHSIG(SIGTERM)`: the kernel signals it
    /// when the spawning thread exits, which for tokio's worker threads is
    /// when the supervisor exits. The worker SDK turns that SIGTERM, or the
    /// end of its channel, into a SIGKILL of its whole process group.
    pub fn spawn(&self) -> std::io::Result<Spawned> {
        let (ours, theirs) = UnixStream::pair()?;
        ours.set_nonblocking(true)?;
        let theirs: OwnedFd = theirs.into();
        let fd = theirs.as_raw_fd();
        let mut cmd = self.command();
        // SAFETY: only async-signal-safe calls (setsid, prctl, dup2, fcntl)
        // between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setsid() < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                crate::nofile::restore_in_child();
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if fd == CHANNEL_FD {
                    // dup2 onto itself keeps FD_CLOEXEC: clear it by hand.
                    if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(fd, CHANNEL_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        let channel = tokio::net::UnixStream::from_std(ours)?;
        Ok(Spawned { child, channel })
    }
}
