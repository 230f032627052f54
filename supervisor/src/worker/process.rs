//! A worker's process as the lifecycle task sees it: exec'd (a tokio
//! `Child`) or forked by a fork server (a keeper's pid, its pidfd and the
//! fork server's report of its end).

use tokio::io::AsyncRead;

use super::fork_server::Forked;
use super::group::describe_exit;

/// A worker's stdout or stderr.
pub type Output = Box<dyn AsyncRead + Unpin + Send>;

/// The process that stands for a worker.
pub enum Process {
    /// Started by the supervisor, which reaps it.
    Exec(tokio::process::Child),
    /// Forked by a fork server, which reaps it.
    Forked(Forked),
}

impl Process {
    /// Its pid (0 if the child was already reaped, which cannot happen
    /// before [`Process::wait`] returns).
    pub fn pid(&self) -> u32 {
        match self {
            Process::Exec(c) => c.id().unwrap_or(0),
            Process::Forked(f) => f.pid,
        }
    }

    /// Waits for its end; its status in words. Cancel-safe.
    pub async fn wait(&mut self) -> String {
        match self {
            Process::Exec(c) => match c.wait().await {
                Ok(s) => describe_exit(&s),
                Err(e) => format!("an unknown status ({e})"),
            },
            Process::Forked(f) => f.wait().await,
        }
    }
}
