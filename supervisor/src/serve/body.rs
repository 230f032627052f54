//! Request bodies: capped at `max_body_bytes`, due whole within
//! `client_timeout` of the request, and read into one buffer.
//!
//! hyper hands a body over as the frames it read, each a slice of an 8 KiB
//! read buffer that stays allocated while the slice lives: a body sent one
//! byte per TCP segment, kept frame by frame until its end, cost about
//! 4 KiB of memory per byte. [`read`] copies each frame into one buffer as
//! it comes and lets it go, so a body costs about its size, at most the cap.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Sleep;

use super::api::ApiError;

/// The limits every request body gets.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body, in bytes.
    pub max: usize,
    /// Time from the request's arrival to the end of its body.
    pub deadline: Duration,
}

/// A body that did not arrive whole in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// The middleware that puts [`BodyLimits`] on every request: a larger
/// `Content-Length` is refused at once, a body without one is cut at `max`
/// (its reader then answers 413), and one still coming at the deadline
/// fails with [`BodyTimeout`] (408), however its bytes trickle in. The
/// limits go into the request's extensions for [`read`]'s callers.
pub async fn limit(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max as u64) {
        return too_large().into_response();
    }
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(limits);
    let body = Deadline {
        inner: http_body_util::Limited::new(body, limits.max),
        sleep: Box::pin(tokio::time::sleep(limits.deadline)),
        limit: limits.deadline,
    };
    next.run(Request::from_parts(parts, Body::new(body))).await
}

/// Reads a whole body into one buffer of at most `max` bytes (see the
/// module docs); a refusal is the [`ApiError`] to answer.
pub async fn read(mut body: Body, max: usize) -> Result<Bytes, ApiError> {
    // The declared length is only a hint: a client that declares 4 MiB and
    // sends a byte a second must not cost 4 MiB up front. Start at most
    // 64 KiB; the doubling below grows the buffer as bytes arrive.
    let hint = usize::try_from(body.size_hint().lower()).unwrap_or(max);
    let mut buf: Vec<u8> = Vec::with_capacity(hint.min(max).min(64 * 1024));
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| error(&e))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        let len = buf.len() + data.len();
        if len > max {
            return Err(too_large());
        }
        if len > buf.capacity() {
            // Grow by doubling, but never past the cap.
            let want = (buf.capacity() * 2).max(len).max(8 * 1024).min(max);
            buf.reserve_exact(want - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok(Bytes::from(buf))
}

/// The answer to a body over `max_body_bytes`.
pub fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "the request body is over the limit (max_body_bytes in the [serve] table of flw.toml)",
    )
}

/// Why a request body could not be read: too large (413), too slow (408),
/// or cut off (400).
pub fn error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    let mut source = Some(e);
    while let Some(err) = source {
        if err.is::<http_body_util::LengthLimitError>() {
            return too_large();
        }
        if let Some(BodyTimeout(limit)) = err.downcast_ref::<BodyTimeout>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {limit:?} (client_timeout in the [serve] table of flw.toml)"
                ),
            );
        }
        source = err.source();
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("cannot read the request body: {e}"),
    )
}

/// A body with a total deadline (see [`limit`]).
struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<Sleep>>,
    limit: Duration,
}

impl<B> HttpBody for Deadline<B>
where
    B: HttpBody + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.limit)))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|f| f.map(|r| r.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn limits(max: usize, deadline_ms: u64) -> BodyLimits {
        BodyLimits {
            max,
            deadline: Duration::from_millis(deadline_ms),
        }
    }

    /// A body of one-byte frames, `gap` apart.
    fn trickle(bytes: &'static [u8], gap: Duration) -> Body {
        let frames = futures::stream::iter(bytes.chunks(1)).then(move |b| async move {
            tokio::time::sleep(gap).await;
            Ok::<_, std::io::Error>(Bytes::from_static(b))
        });
        Body::from_stream(frames)
    }

    fn capped(body: Body, l: BodyLimits) -> Body {
        Body::new(Deadline {
            inner: http_body_util::Limited::new(body, l.max),
            sleep: Box::pin(tokio::time::sleep(l.deadline)),
            limit: l.deadline,
        })
    }

    #[tokio::test]
    async fn frames_are_gathered_into_one_buffer_no_larger_than_the_body() {
        let body = capped(trickle(b"hello world", Duration::ZERO), limits(100, 5_000));
        let got = read(body, 100).await.unwrap();
        assert_eq!(&got[..], b"hello world");
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_413() {
        let body = capped(trickle(b"hello world", Duration::ZERO), limits(5, 5_000));
        assert_eq!(read(body, 5).await.unwrap_err().status, 413);
    }

    #[tokio::test]
    async fn the_deadline_is_total_not_per_frame() {
        // Each byte comes well within the deadline; the whole body does not.
        let body = capped(
            trickle(b"0123456789", Duration::from_millis(50)),
            limits(100, 200),
        );
        let e = read(body, 100).await.unwrap_err();
        assert_eq!(e.status, StatusCode::REQUEST_TIMEOUT);
    }
}
