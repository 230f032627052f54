//! A bounded line reader: never buffers more than the limit for one line.
//!
//! Built on tokio-util's `AnyDelimiterCodec`, driven by hand so that an
//! over-long line is reported and skipped while reading goes on (a
//! `FramedRead` ends its stream after a decoder error).

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder};

/// One item read: a line (without `\n`) or a line that was too long.
#[derive(Debug)]
pub enum Line {
    /// A complete line.
    Text(Bytes),
    /// A line longer than the limit; its bytes were discarded.
    TooLong,
}

/// Reads `\n`-terminated lines of at most `max` bytes from `R`.
pub struct LineReader<R> {
    inner: R,
    buf: BytesMut,
    codec: AnyDelimiterCodec,
    eof: bool,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    /// Wraps `inner`; lines longer than `max` bytes are skipped.
    pub fn new(inner: R, max: usize) -> Self {
        LineReader {
            inner,
            buf: BytesMut::with_capacity(8 * 1024),
            codec: AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max),
            eof: false,
        }
    }

    /// The next line, or `None` at end of input (a final line without `\n`
    /// is returned first). Read errors count as end of input.
    pub async fn next(&mut self) -> Option<Line> {
        loop {
            let decoded = if self.eof {
                self.codec.decode_eof(&mut self.buf)
            } else {
                self.codec.decode(&mut self.buf)
            };
            match decoded {
                Ok(Some(line)) => return Some(Line::Text(line)),
                Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => return Some(Line::TooLong),
                Err(AnyDelimiterCodecError::Io(_)) => return None,
                Ok(None) if self.eof => return None,
                Ok(None) => {}
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(8 * 1024);
            }
            match self.inner.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => self.eof = true,
                Ok(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read_all(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(l) = r.next().await {
            out.push(match l {
                Line::Text(b) => String::from_utf8_lossy(&b).into_owned(),
                Line::TooLong => "<too long>".into(),
            });
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_a_final_partial_line() {
        assert_eq!(read_all(b"a\nbb\n\nccc", 10).await, ["a", "bb", "", "ccc"]);
    }

    #[tokio::test]
    async fn over_long_line_is_skipped_and_reading_goes_on() {
        let mut input = vec![b'x'; 50];
        input.extend_from_slice(b"\nok\n");
        assert_eq!(read_all(&input, 10).await, ["<too long>", "ok"]);
    }
}
