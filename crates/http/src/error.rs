//! The one error type of the control plane: a status and a one-line human reason.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use ringcast_core::CommandError;
use ringcast_core::SetupError;
use ringcast_engine::CallError;

/// An HTTP error answer: `status` with `reason` as a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The status.
    pub status: StatusCode,
    /// One line for a human.
    pub reason: String,
    /// `Retry-After` seconds, for 409 (no publisher yet) and 503.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// An error with `status` and `reason`.
    pub fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        ApiError {
            status,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// Add a `Retry-After`.
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, format!("{}\n", self.reason)).into_response();
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

impl From<SetupError> for ApiError {
    fn from(e: SetupError) -> Self {
        let status = match e {
            SetupError::BadSdp(_) => StatusCode::BAD_REQUEST,
            SetupError::NothingToForward(_)
            | SetupError::CodecMismatch { .. }
            | SetupError::Layout(_) => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Busy | CallError::Refused(CommandError::ShardFull) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no capacity left on this server",
            )
            .retry_after(5),
            CallError::Refused(CommandError::UnknownSession) => {
                ApiError::new(StatusCode::NOT_FOUND, "no such session")
            }
            other => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
        }
    }
}
