//! The WHEP video layer selection extension (`urn:ietf:params:whep:ext:core:layer`): a viewer
//! pins one simulcast layer of its stream by rid, or goes back to the layer its bandwidth
//! estimate chooses.
//!
//! `POST` `application/json` `{"mediaId": "1", "encodingId": "h"}` pins (the draft's shape,
//! and what Broadcast Box and the medooze `whep.js` send); `{}` (or no `encodingId`) and
//! `DELETE` unpin (the draft, and `whep.js`'s `unselectLayer`). `mediaId` names the viewer's
//! video section by its mid or by its m-line index (the draft says index, clients send either;
//! in a browser's offer they are the same); left out, it is the first video section. Spatial
//! and temporal layer selection (SVC) is refused: ringcast forwards whole simulcast layers.
//! Answers: 200 (the draft), 400 with the reason, 404 for an unknown session.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use ringcast_core::{Command, CommandError};
use ringcast_engine::CallError;
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::whip::{self, Viewer};

/// The relation of the extension's `Link`.
pub(crate) const REL: &str = "urn:ietf:params:whep:ext:core:layer";

/// Its URL, under the session's.
pub(crate) fn url(session_url: &str) -> String {
    format!("{session_url}/layer")
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route(
        "/whep/{stream}/{session}/layer",
        any(
            |State(state): State<Arc<AppState>>,
             method: Method,
             Path((stream, session)): Path<(String, String)>,
             headers: HeaderMap,
             body: Body| async move {
                let result = match method {
                    Method::POST => select(&state, &stream, &session, &headers, body).await,
                    Method::DELETE => unselect(&state, &stream, &session, &headers).await,
                    Method::OPTIONS => Ok(StatusCode::NO_CONTENT.into_response()),
                    _ => Ok(whip::method_not_allowed("DELETE, OPTIONS, POST")),
                };
                result.unwrap_or_else(IntoResponse::into_response)
            },
        ),
    )
}

/// The body of a layer POST, as the draft names its fields.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LayerRequest {
    /// A string as the draft has it; a number (an m-line index) is taken too.
    media_id: Option<serde_json::Value>,
    encoding_id: Option<String>,
    spatial_layer_id: Option<serde_json::Value>,
    temporal_layer_id: Option<serde_json::Value>,
    max_spatial_layer_id: Option<serde_json::Value>,
    max_temporal_layer_id: Option<serde_json::Value>,
}

async fn select(
    state: &AppState,
    stream: &str,
    session: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let viewer = whip::find_viewer(state, stream, session, headers)?;
    if whip::media_type(headers).as_deref() != Some("application/json") {
        return Err(bad(
            "a layer selection is sent as Content-Type: application/json",
        ));
    }
    let body = whip::read_body(state, body).await?;
    let request: LayerRequest = serde_json::from_str(&body).map_err(|e| {
        bad(format!(
            "the layer selection is not a JSON object of the draft's fields: {e}"
        ))
    })?;
    let svc = [
        ("spatialLayerId", &request.spatial_layer_id),
        ("temporalLayerId", &request.temporal_layer_id),
        ("maxSpatialLayerId", &request.max_spatial_layer_id),
        ("maxTemporalLayerId", &request.max_temporal_layer_id),
    ];
    if let Some((name, _)) = svc
        .iter()
        .find(|(_, v)| v.as_ref().is_some_and(|v| !v.is_null()))
    {
        return Err(bad(format!(
            "{name}: spatial and temporal layer selection is not supported; pick a simulcast layer by encodingId"
        )));
    }
    let media_id = match request.media_id {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(bad(format!("mediaId is a string, not {other}"))),
    };
    check_media(&viewer, media_id.as_deref())?;
    if let Some(rid) = &request.encoding_id {
        check_rid(state, stream, rid)?;
    }
    set_layer(state, &viewer, request.encoding_id).await
}

async fn unselect(
    state: &AppState,
    stream: &str,
    session: &str,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let viewer = whip::find_viewer(state, stream, session, headers)?;
    set_layer(state, &viewer, None).await
}

/// `mediaId` must name the viewer's video section, by mid or by m-line index.
fn check_media(viewer: &Viewer, media_id: Option<&str>) -> Result<(), ApiError> {
    let Some(video) = &viewer.video else {
        return Err(bad("this session receives no video"));
    };
    match media_id {
        None => Ok(()),
        Some(m) if m == video.mid || m == video.index.to_string() => Ok(()),
        Some(m) => Err(bad(format!(
            "unknown mediaId {m:?}: this session's video has mid {:?} (m-line {})",
            video.mid, video.index
        ))),
    }
}

/// `encodingId` must be one of the rids the stream's publisher announced.
fn check_rid(state: &AppState, stream: &str, rid: &str) -> Result<(), ApiError> {
    let control = state.control.lock();
    let layers = control
        .stream(stream)
        .and_then(|s| s.published)
        .map(|p| p.layers.clone())
        .unwrap_or_default();
    drop(control);
    if layers.iter().any(|l| l == rid) {
        return Ok(());
    }
    if layers.is_empty() {
        return Err(bad(format!(
            "unknown encodingId {rid:?}: the stream's publisher sends no simulcast layers"
        )));
    }
    Err(bad(format!(
        "unknown encodingId {rid:?}: the stream's layers are {}",
        layers.join(", ")
    )))
}

async fn set_layer(
    state: &AppState,
    viewer: &Viewer,
    rid: Option<String>,
) -> Result<Response, ApiError> {
    let pinned = rid.clone();
    let command = Command::SetLayer {
        session: viewer.session,
        rid,
    };
    match state.shards[usize::from(viewer.shard.0)]
        .call(command)
        .await
    {
        Ok(_) => {
            tracing::debug!(session = %viewer.session.short(), layer = ?pinned, "layer selected");
            Ok(StatusCode::OK.into_response())
        }
        // The publisher changed (a restart with other rids) since the check.
        Err(CallError::Refused(CommandError::UnknownLayer)) => Err(bad(
            "the stream's publisher does not send that layer (any more)",
        )),
        Err(e) => Err(e.into()),
    }
}

fn bad(reason: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, reason)
}
