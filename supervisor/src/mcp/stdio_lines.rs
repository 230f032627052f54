//! The bounded line reader of `flw mcp`'s stdin. A line over the limit is
//! not kept: the rest of it is read through a lenient id scan
//! ([`super::id_scan`]) and dropped, so that its error reply can still
//! name the request, at no more memory than the limit.

use rmcp::model::RequestId;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::id_scan::IdScan;

/// What [`LineReader::next`] read.
#[derive(Debug)]
pub enum Line {
    /// A whole line, now in [`LineReader::line`].
    Full,
    /// A line over the limit, dropped; the id found in it, if any.
    TooLong(Option<RequestId>),
    /// The client closed its end.
    Eof,
    /// Reading failed.
    Failed(std::io::Error),
}

/// Above this, the buffer is given back after its line.
const KEEP_CAPACITY: usize = 1024 * 1024;

/// Reads `\n`-terminated lines of at most `max` bytes.
#[derive(Debug)]
pub struct LineReader<R> {
    read: BufReader<R>,
    buf: Vec<u8>,
    max: usize,
    /// The line in `buf` was returned; clear it before reading on.
    returned: bool,
    /// Reading the rest of a line over the limit.
    skipping: Option<IdScan>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// A reader of lines of at most `max` bytes (the `\n` not counted).
    pub fn new(read: R, max: usize) -> Self {
        LineReader {
            read: BufReader::new(read),
            buf: Vec::new(),
            max,
            returned: false,
            skipping: None,
        }
    }

    /// The line of the last [`Line::Full`], without its `\n`.
    pub fn line(&self) -> &[u8] {
        &self.buf
    }

    /// Reads the next line. Cancel safe: a read cut short goes on at the
    /// next call where it stopped.
    pub async fn next(&mut self) -> Line {
        if self.returned {
            self.returned = false;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        }
        loop {
            let available = match self.read.fill_buf().await {
                Ok(a) => a,
                Err(e) => return Line::Failed(e),
            };
            if available.is_empty() {
                // A last line without its `\n` is still a line.
                if let Some(scan) = self.skipping.take() {
                    return Line::TooLong(scan.id());
                }
                if self.buf.is_empty() {
                    return Line::Eof;
                }
                self.returned = true;
                return Line::Full;
            }
            let newline = available.iter().position(|b| *b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            if let Some(scan) = &mut self.skipping {
                scan.feed(chunk);
            } else if self.buf.len() + chunk.len() > self.max {
                let mut scan = IdScan::default();
                scan.feed(&self.buf);
                scan.feed(chunk);
                self.buf = Vec::new();
                self.skipping = Some(scan);
            } else {
                self.buf.extend_from_slice(chunk);
            }
            let consumed = newline.map_or(available.len(), |i| i + 1);
            self.read.consume(consumed);
            if newline.is_some() {
                if let Some(scan) = self.skipping.take() {
                    return Line::TooLong(scan.id());
                }
                self.returned = true;
                return Line::Full;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, Option<RequestId>>> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        loop {
            match r.next().await {
                Line::Full => out.push(Ok(r.line().to_vec())),
                Line::TooLong(id) => out.push(Err(id)),
                Line::Eof => return out,
                Line::Failed(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn long_lines_are_dropped_with_their_id_and_the_next_line_is_read() {
        let long = format!(
            r#"{{"method":"x","params":"{}","id":7}}"#,
            "a".repeat(100_000)
        );
        let input = format!("short\n{long}\nafter\nlast");
        let got = lines(input.as_bytes(), 1000).await;
        assert_eq!(
            got,
            [
                Ok(b"short".to_vec()),
                Err(Some(RequestId::Number(7))),
                Ok(b"after".to_vec()),
                Ok(b"last".to_vec()),
            ]
        );
        // Exactly the limit is fine; one more byte is not.
        let got = lines(b"12345\n123456\n", 5).await;
        assert_eq!(got, [Ok(b"12345".to_vec()), Err(None)]);
    }
}
