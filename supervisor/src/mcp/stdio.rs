//! `flw mcp`'s transport: the MCP session on stdin and stdout.
//!
//! flw reads the lines itself ([`super::stdio_lines`]) and hands rmcp only
//! the messages it can take; every other line is answered here with its
//! JSON-RPC error ([`super::incoming`]), as is a request whose id is in
//! flight already ([`super::in_flight`]). rmcp's messages and these errors
//! go out through one writer under one lock, a whole line at a time.
//!
//! The session ends when its owner says so ([`StdioSession::close`]), not
//! when stdin closes: then the transport only tells its owner, and waits.
//! (rmcp would cancel the calls in flight a few seconds after the end of
//! its input, whatever `--drain` says.)

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BufMut;
use futures::SinkExt;
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::{RoleServer, ServiceExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio_util::codec::{Encoder, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::in_flight::{InFlight, Tracked};
use super::incoming::{classify, ErrorReply, Incoming};
use super::stdio_lines::{Line, LineReader};
use super::McpServer;

/// Most requests of one stdio session in flight (read, not yet answered).
/// At the limit flw reads no further line until one is answered, so a
/// client that sends and never reads costs bounded memory (rmcp holds a
/// task and an answer per request); an MCP host never comes near it.
pub const MAX_IN_FLIGHT: usize = 4096;

/// A line flw writes: rmcp's message, or an error of flw's own.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // encoded at once; a box would cost an allocation per message
enum Outgoing {
    Rmcp(ServerJsonRpcMessage),
    Reply(ErrorReply),
}

/// Writes each [`Outgoing`] as one line of JSON.
#[derive(Debug, Default)]
struct LineEncoder;

impl Encoder<Outgoing> for LineEncoder {
    type Error = std::io::Error;

    fn encode(&mut self, item: Outgoing, buf: &mut bytes::BytesMut) -> std::io::Result<()> {
        match &item {
            Outgoing::Rmcp(m) => serde_json::to_writer(buf.writer(), m)?,
            Outgoing::Reply(r) => serde_json::to_writer(buf.writer(), r)?,
        }
        buf.put_u8(b'\n');
        Ok(())
    }
}

type Writer<W> = Arc<Mutex<Option<FramedWrite<W, LineEncoder>>>>;

/// The end of the client's input, as the transport and its owner share it.
#[derive(Debug, Clone, Default)]
struct Input {
    /// Cancelled when stdin has closed (or cannot be read).
    closed: CancellationToken,
    /// Cancelled by the owner: the transport may report the end to rmcp.
    release: CancellationToken,
}

/// The transport rmcp serves on.
struct StdioTransport<R, W> {
    lines: LineReader<R>,
    max_line: usize,
    out: Writer<W>,
    /// Errors to write before reading on.
    replies: VecDeque<ErrorReply>,
    /// Replies were handed to the writer but not flushed yet.
    unflushed: bool,
    ids: InFlight,
    input: Input,
}

impl<R, W> StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    fn new(read: R, write: W, max_line: usize, ids: InFlight, input: Input) -> Self {
        StdioTransport {
            lines: LineReader::new(read, max_line),
            max_line,
            out: Arc::new(Mutex::new(Some(FramedWrite::new(write, LineEncoder)))),
            replies: VecDeque::new(),
            unflushed: false,
            ids,
            input,
        }
    }

    /// Lets a message through to rmcp, or gives the error to answer it with.
    fn admit(&self, message: ClientJsonRpcMessage) -> Result<ClientJsonRpcMessage, ErrorReply> {
        match &message {
            JsonRpcMessage::Request(r) if !self.ids.admit(&r.id) => {
                tracing::warn!(id = %r.id, "a request came with the id of one in flight; answering it with an error");
                return Err(ErrorReply::duplicate(r.id.clone()));
            }
            JsonRpcMessage::Notification(n) => {
                if let ClientNotification::CancelledNotification(c) = &n.notification {
                    if let Some(id) = &c.params.request_id {
                        self.ids.cancelled(id);
                    }
                }
            }
            _ => {}
        }
        Ok(message)
    }

    /// Writes the pending replies. Cancel safe: a reply is taken from the
    /// queue only once the writer has taken it whole.
    async fn write_replies(&mut self) {
        if self.replies.is_empty() && !self.unflushed {
            return;
        }
        let out = self.out.clone();
        let mut out = out.lock().await;
        let Some(w) = out.as_mut() else {
            self.replies.clear();
            return;
        };
        let written: std::io::Result<()> = async {
            while !self.replies.is_empty() {
                std::future::poll_fn(|cx| w.poll_ready_unpin(cx)).await?;
                if let Some(reply) = self.replies.pop_front() {
                    w.start_send_unpin(Outgoing::Reply(reply))?;
                    self.unflushed = true;
                }
            }
            w.flush().await
        }
        .await;
        if let Err(e) = written {
            tracing::debug!("cannot write to stdout: {e}");
            self.replies.clear();
        }
        self.unflushed = false;
    }
}

impl<R, W> Transport<RoleServer> for StdioTransport<R, W>
where
    R: AsyncRead + Send + Unpin,
    W: AsyncWrite + Send + Unpin + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: ServerJsonRpcMessage,
    ) -> impl std::future::Future<Output = std::io::Result<()>> + Send + 'static {
        // The id is free once its answer is on its way: the client cannot
        // reuse it before it has read the answer. The answer counts against
        // MAX_IN_FLIGHT until it is written, so answers waiting for a
        // client that does not read stop the reading of more requests.
        match &item {
            JsonRpcMessage::Response(r) => self.ids.answered(&r.id),
            JsonRpcMessage::Error(e) => {
                if let Some(id) = &e.id {
                    self.ids.answered(id);
                }
            }
            _ => {}
        }
        let writing = self.ids.writing();
        let out = self.out.clone();
        async move {
            let _writing = writing;
            let mut out = out.lock().await;
            match out.as_mut() {
                Some(w) => w.send(Outgoing::Rmcp(item)).await,
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::NotConnected,
                    "the MCP session's stdout is closed",
                )),
            }
        }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            self.write_replies().await;
            tokio::select! {
                () = self.ids.room(MAX_IN_FLIGHT) => {}
                _ = self.input.release.cancelled() => return None,
            }
            let line = tokio::select! {
                line = self.lines.next() => line,
                _ = self.input.release.cancelled() => return None,
            };
            match line {
                Line::Full => match classify(self.lines.line()) {
                    Incoming::Message(m) => match self.admit(m) {
                        Ok(m) => return Some(m),
                        Err(reply) => self.replies.push_back(reply),
                    },
                    Incoming::Reply(reply) => {
                        tracing::debug!(
                            "answering a line from the client with an error: {}",
                            reply.message
                        );
                        self.replies.push_back(reply);
                    }
                    Incoming::Skip => {}
                },
                Line::TooLong(id) => {
                    tracing::warn!(
                        "the client sent a line longer than {} bytes; it was dropped and answered with an error",
                        self.max_line
                    );
                    self.replies
                        .push_back(ErrorReply::too_long(id, self.max_line));
                }
                end @ (Line::Eof | Line::Failed(_)) => {
                    if let Line::Failed(e) = end {
                        tracing::error!("cannot read stdin: {e}");
                    }
                    self.write_replies().await;
                    self.input.closed.cancel();
                    self.input.release.cancelled().await;
                    return None;
                }
            }
        }
    }

    async fn close(&mut self) -> std::io::Result<()> {
        let mut out = self.out.lock().await;
        if let Some(mut w) = out.take() {
            w.flush().await?;
        }
        Ok(())
    }
}

/// An MCP session on stdio, served in a task of its own.
pub struct StdioSession {
    input: Input,
    ended: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl StdioSession {
    /// Serves `server` on this process's stdin and stdout, reading lines of
    /// at most `max_line` bytes.
    pub fn start(server: McpServer, max_line: usize) -> StdioSession {
        let input = Input::default();
        let ended = CancellationToken::new();
        let task = {
            let (input, ended) = (input.clone(), ended.clone());
            tokio::spawn(async move {
                let _ended = ended.drop_guard();
                let (r, w) = rmcp::transport::stdio_pipes();
                let ids = InFlight::default();
                let transport = StdioTransport::new(r, w, max_line, ids.clone(), input);
                let running = Tracked::new(server, ids).serve(transport).await?;
                running.waiting().await?;
                Ok(())
            })
        };
        StdioSession { input, ended, task }
    }

    /// Resolves when the client has closed stdin, or the session ended.
    pub async fn client_left(&self) {
        tokio::select! {
            _ = self.input.closed.cancelled() => {}
            _ = self.ended.cancelled() => {}
        }
    }

    /// Ends the session: rmcp sends the answers of the requests still
    /// running (for up to 5 s) and stops; `within` bounds the whole.
    pub async fn close(self, within: Duration) -> anyhow::Result<()> {
        self.input.release.cancel();
        let mut task = self.task;
        match tokio::time::timeout(within, &mut task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(anyhow::anyhow!("the MCP session's task failed: {e}")),
            Err(_) => {
                task.abort();
                Err(anyhow::anyhow!(
                    "the MCP session did not end within {within:?}; it was stopped"
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ErrorCode;

    fn transport(
        input: &'static [u8],
    ) -> (
        StdioTransport<&'static [u8], tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Input,
    ) {
        let (w, r) = tokio::io::duplex(1 << 16);
        let inp = Input::default();
        let t = StdioTransport::new(input, w, 64, InFlight::default(), inp.clone());
        (t, r, inp)
    }

    async fn read_all(mut r: tokio::io::DuplexStream) -> Vec<serde_json::Value> {
        use tokio::io::AsyncReadExt;
        let mut s = String::new();
        r.read_to_string(&mut s).await.unwrap();
        s.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn bad_lines_and_duplicate_ids_are_answered_and_good_ones_go_on() {
        let input: &'static [u8] = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n\
            not json\n\
            {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n\
            {\"id\":2,\"x\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n";
        let (mut t, out, inp) = transport(input);
        let first = t.receive().await.expect("the first ping");
        assert!(matches!(first, JsonRpcMessage::Request(_)));
        // The rest is answered; at the end of the input the transport says
        // so and waits to be released before it reports the end to rmcp.
        let rest = tokio::spawn(async move {
            let end = t.receive().await;
            (t, end)
        });
        inp.closed.cancelled().await;
        assert!(!rest.is_finished());
        inp.release.cancel();
        let (mut t, end) = rest.await.unwrap();
        assert!(end.is_none());
        // The first ping's answer frees its id.
        t.send(ServerJsonRpcMessage::response(
            rmcp::model::ServerResult::empty(()),
            rmcp::model::RequestId::Number(1),
        ))
        .await
        .unwrap();
        t.close().await.unwrap();
        drop(t);
        let lines = read_all(out).await;
        let codes: Vec<_> = lines
            .iter()
            .map(|l| (l["id"].clone(), l["error"]["code"].as_i64()))
            .collect();
        assert_eq!(
            codes,
            [
                (
                    serde_json::Value::Null,
                    Some(ErrorCode::PARSE_ERROR.0 as i64)
                ),
                (
                    serde_json::json!(1),
                    Some(ErrorCode::INVALID_REQUEST.0 as i64)
                ),
                (serde_json::json!(2), Some(ErrorCode::PARSE_ERROR.0 as i64)),
                (serde_json::json!(1), None),
            ]
        );
    }
}
