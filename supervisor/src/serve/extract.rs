//! Extractors of the JSON API whose refusals are [`ApiError`]s: a bad query
//! string, path segment or body gets the documented JSON error body, not
//! the framework's plain-text one.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::api::ApiError;
use super::body::BodyLimits;
use crate::excerpt;

/// The query string as `T`; a bad one is a `400 invalid_request`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e: QueryRejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!(
                        "bad query string: {}",
                        excerpt::display(&e.body_text(), 3 * excerpt::CHARS)
                    ),
                )
            })
    }
}

/// A path segment; one that is not UTF-8 is a `400 invalid_request`.
#[derive(Debug)]
pub struct Path(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Path {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e: PathRejection| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!(
                        "bad path: {}",
                        excerpt::display(&e.body_text(), 3 * excerpt::CHARS)
                    ),
                )
            })
    }
}

/// The whole body; too large (or with too many JSON values, see
/// `json_values`) is `413`, too slow `408`, else `400`.
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        // The cap is enforced on the body itself (`body::limit`); knowing
        // it here bounds the buffer too.
        let max = req
            .extensions()
            .get::<BodyLimits>()
            .map_or(usize::MAX, |l| l.max);
        let body = super::body::read(req.into_body(), max).await?;
        super::json_values::check(&body, max)?;
        Ok(Body(body))
    }
}
