//! Request bodies: 413 at once when `Content-Length` announces more than the limit (tower-http's
//! `RequestBodyLimitLayer`), chunked bodies cut at the limit, and the whole body read within
//! the body timeout (408 and the connection closed otherwise) before a handler sees it.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, LengthLimitError};
use hyper::body::Body as _;
use ringcast_http::{ApiError, Refusals};
use tower_http::limit::RequestBodyLimitLayer;

/// `app` with the body limit and the body deadline in front of every route; each 413 and 408
/// counted in `refusals`.
pub(super) fn bounded(
    app: Router,
    max_body_bytes: usize,
    body_timeout: Duration,
    refusals: Arc<Refusals>,
) -> Router {
    let counted = refusals.clone();
    app.layer(axum::middleware::from_fn(move |request, next| {
        whole_body(body_timeout, counted.clone(), request, next)
    }))
    .layer(RequestBodyLimitLayer::new(max_body_bytes))
    .layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            // What `RequestBodyLimitLayer` answers with 413 before reading a byte.
            let announced = request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if announced.is_some_and(|n| n > max_body_bytes as u64) {
                refusals.count(|c| c.refused_body_too_large += 1);
            }
            next.run(request)
        },
    ))
}

async fn whole_body(
    body_timeout: Duration,
    refusals: Arc<Refusals>,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    if body.is_end_stream() {
        return next.run(Request::from_parts(parts, body)).await;
    }
    match tokio::time::timeout(body_timeout, body.collect()).await {
        Ok(Ok(collected)) => {
            let body = Body::from(collected.to_bytes());
            next.run(Request::from_parts(parts, body)).await
        }
        Ok(Err(e)) if is_length_limit(&e) => {
            refusals.count(|c| c.refused_body_too_large += 1);
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body larger than http.max_body_bytes",
            )
            .into_response()
        }
        Ok(Err(e)) => {
            ApiError::new(StatusCode::BAD_REQUEST, format!("request body: {e}")).into_response()
        }
        Err(_) => {
            refusals.count(|c| c.refused_body_timeout += 1);
            let mut response = ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "request body not received within {} ms",
                    body_timeout.as_millis()
                ),
            )
            .into_response();
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            response
        }
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}
