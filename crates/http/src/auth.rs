//! Bearer tokens (RFC 6750): a stream's token on every request of its WHIP/WHEP sessions
//! (RFC 9725 §4.7: the POST that creates a session, and its PATCH and DELETE), and the admin
//! token on `/api/*` and `/metrics`. Tokens are compared in constant time (only their length
//! can show) and never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::error::ApiError;

/// The request's Bearer token, if it has one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// Is `given` the token `required`? Compared in constant time.
pub(crate) fn same_token(given: &str, required: &str) -> bool {
    bool::from(given.as_bytes().ct_eq(required.as_bytes()))
}

/// `Ok` when `required` is `None` or the request carries `Authorization: Bearer <required>`;
/// else 401 (no token) or 403 (another token), the reason naming `what` is protected.
pub(crate) fn check_bearer(
    headers: &HeaderMap,
    required: Option<&str>,
    what: &str,
) -> Result<(), ApiError> {
    let Some(required) = required else {
        return Ok(());
    };
    match bearer(headers) {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("{what} needs a Bearer token"),
        )),
        Some(token) if same_token(token, required) => Ok(()),
        Some(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("wrong token for {what}"),
        )),
    }
}

/// Middleware of the admin routes: `http.admin_token`, when set, is required.
pub(crate) async fn require_admin_token(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let required = state.settings.admin_token.as_deref();
    match check_bearer(req.headers(), required, "the admin API") {
        Ok(()) => next.run(req).await,
        Err(e) => {
            state.refusals.token(&e);
            e.into_response()
        }
    }
}
