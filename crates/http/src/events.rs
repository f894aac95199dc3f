//! The WHEP server-sent events extension (`urn:ietf:params:whep:ext:core:server-sent-events`):
//! a viewer's event stream of `active` / `inactive` (the stream's publisher is up or gone),
//! `viewercount` and `layers` (the publisher's simulcast layers).
//!
//! Two ways in, as clients do it:
//! - the draft's and the medooze `whep.js`'s: `POST` to the extension URL (optionally a JSON
//!   array of the event names wanted), answered `201` with the `Location` of a new event
//!   stream; `GET` there is the stream (an unguessable URL, so a browser's `EventSource`, which
//!   cannot send a token, can open it), `DELETE` there ends it;
//! - Broadcast Box's: `GET` on the extension URL itself is the stream (all events).
//!
//! Both need the session's token where the stream has a view token, except the `GET` of a
//! posted event stream. A session holds at most [`STREAMS_PER_SESSION`] event streams (posted
//! and open each), and its streams end when it does.
//!
//! One poller per watched stream, not one per viewer: it reads the stream's publisher and
//! viewer count from the control plane and asks the publisher's shard for the layers
//! ([`Command::StreamLayers`]) about once a second, and fans the result out on a
//! [`watch`] channel; it stops when no event stream watches any more. Each event stream sends
//! what changed since it last sent.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures_util::stream;
use parking_lot::Mutex;
use ringcast_core::layers::LayerInfo;
use ringcast_core::{Command, Reply, SessionId};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::AppState;
use crate::error::ApiError;
use crate::whip::{self, Viewer};

/// The relation of the extension's `Link`.
pub(crate) const REL: &str = "urn:ietf:params:whep:ext:core:server-sent-events";

/// The events sent, as the `Link`'s `events` attribute lists them.
pub(crate) const NAMES: [&str; 4] = ["active", "inactive", "layers", "viewercount"];

/// Event streams one session may hold: posted (not yet deleted), and open, each.
pub(crate) const STREAMS_PER_SESSION: usize = 4;

/// How often a watched stream is polled, and how soon an event stream notices that its
/// session ended.
const POLL: Duration = Duration::from_secs(1);

/// Its URL, under the session's.
pub(crate) fn url(session_url: &str) -> String {
    format!("{session_url}/sse")
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/whep/{stream}/{session}/sse",
            any(
                |State(state): State<Arc<AppState>>,
                 method: Method,
                 Path((stream, session)): Path<(String, String)>,
                 headers: HeaderMap,
                 body: Body| async move {
                    let result = match method {
                        Method::GET => whip::find_viewer(&state, &stream, &session, &headers)
                            .and_then(|viewer| {
                                open(state.clone(), stream, viewer, None, Wanted::ALL)
                            }),
                        Method::POST => create(&state, &stream, &session, &headers, body).await,
                        Method::OPTIONS => Ok(StatusCode::NO_CONTENT.into_response()),
                        _ => Ok(whip::method_not_allowed("GET, OPTIONS, POST")),
                    };
                    result.unwrap_or_else(IntoResponse::into_response)
                },
            ),
        )
        .route(
            "/whep/{stream}/{session}/sse/{id}",
            any(
                |State(state): State<Arc<AppState>>,
                 method: Method,
                 Path((stream, session, id)): Path<(String, String, String)>| async move {
                    let result = match method {
                        Method::GET => get_posted(state, stream, &session, id),
                        Method::DELETE => delete_posted(&state, &stream, &session, &id),
                        Method::OPTIONS => Ok(StatusCode::NO_CONTENT.into_response()),
                        _ => Ok(whip::method_not_allowed("DELETE, GET, OPTIONS")),
                    };
                    result.unwrap_or_else(IntoResponse::into_response)
                },
            ),
        )
}

/// The event streams of every session, and the pollers of the watched streams.
#[derive(Debug, Default)]
pub(crate) struct Events {
    sessions: Arc<Mutex<HashMap<SessionId, SessionStreams>>>,
    watchers: Mutex<HashMap<String, watch::Sender<Snapshot>>>,
}

impl Events {
    /// A session ended: its posted event streams go (its open ones end on their next check).
    pub(crate) fn forget(&self, session: SessionId) {
        self.sessions.lock().remove(&session);
    }
}

/// A session's event streams.
#[derive(Debug, Default)]
struct SessionStreams {
    /// Posted event streams by id, with the events each wants.
    posted: HashMap<String, Wanted>,
    /// Event streams open now.
    open: usize,
}

/// Which events an event stream sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Wanted {
    active: bool,
    layers: bool,
    viewercount: bool,
}

impl Wanted {
    const ALL: Wanted = Wanted {
        active: true,
        layers: true,
        viewercount: true,
    };

    /// From a POST's JSON array of event names; an empty body: all of them.
    fn parse(body: &str) -> Result<Wanted, ApiError> {
        if body.trim().is_empty() {
            return Ok(Wanted::ALL);
        }
        let names: Vec<String> = serde_json::from_str(body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body is a JSON array of event names: {e}"),
            )
        })?;
        let mut wanted = Wanted {
            active: false,
            layers: false,
            viewercount: false,
        };
        for name in &names {
            match name.as_str() {
                "active" | "inactive" => wanted.active = true,
                "layers" => wanted.layers = true,
                "viewercount" => wanted.viewercount = true,
                other => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "unknown event {other:?}: this server sends {}",
                            NAMES.join(", ")
                        ),
                    ));
                }
            }
        }
        Ok(wanted)
    }
}

/// What a watched stream looks like now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Snapshot {
    /// Polled at least once (the channel's first value is a placeholder).
    polled: bool,
    live: bool,
    viewers: u32,
    /// Best first (empty while there is no publisher).
    layers: Vec<LayerInfo>,
}

/// `POST` on the extension URL: a new event stream, at the URL its `Location` names.
async fn create(
    state: &AppState,
    stream: &str,
    session: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let viewer = whip::find_viewer(state, stream, session, headers)?;
    let body = whip::read_body(state, body).await?;
    let wanted = Wanted::parse(&body)?;
    prune(state);
    let id = whip::random_string(24);
    {
        let mut sessions = state.events.sessions.lock();
        let entry = sessions.entry(viewer.session).or_default();
        if entry.posted.len() >= STREAMS_PER_SESSION {
            return Err(too_many());
        }
        entry.posted.insert(id.clone(), wanted);
    }
    let location = format!("/whep/{stream}/{}/sse/{id}", viewer.session);
    let mut res = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `GET` of a posted event stream: its unguessable URL is the credential.
fn get_posted(
    state: Arc<AppState>,
    stream: String,
    session: &str,
    id: String,
) -> Result<Response, ApiError> {
    let viewer = whip::lookup_viewer(&state, &stream, session)?;
    let wanted = state
        .events
        .sessions
        .lock()
        .get(&viewer.session)
        .and_then(|s| s.posted.get(&id).copied())
        .ok_or_else(no_event_stream)?;
    open(state, stream, viewer, Some(id), wanted)
}

/// `DELETE` of a posted event stream: it ends, and further `GET`s of it get 404.
fn delete_posted(
    state: &AppState,
    stream: &str,
    session: &str,
    id: &str,
) -> Result<Response, ApiError> {
    let viewer = whip::lookup_viewer(state, stream, session)?;
    state
        .events
        .sessions
        .lock()
        .get_mut(&viewer.session)
        .and_then(|s| s.posted.remove(id))
        .ok_or_else(no_event_stream)?;
    Ok(StatusCode::OK.into_response())
}

/// Forget the posted event streams of sessions that ended without being forgotten (a viewer
/// ended by a publisher's codec change).
fn prune(state: &AppState) {
    let control = state.control.lock();
    state
        .events
        .sessions
        .lock()
        .retain(|id, _| control.session(*id).is_some());
}

/// The event stream of `viewer`, posted as `posted` (or opened directly).
fn open(
    state: Arc<AppState>,
    stream: String,
    viewer: Viewer,
    posted: Option<String>,
    wanted: Wanted,
) -> Result<Response, ApiError> {
    let slot = OpenSlot::take(&state.events.sessions, viewer.session)?;
    let updates = subscribe(&state, &stream);
    let key = viewer
        .video
        .as_ref()
        .map_or_else(|| "0".to_string(), |v| v.mid.clone());
    let events = EventStream {
        state,
        session: viewer.session,
        posted,
        wanted,
        key,
        updates,
        sent: None,
        queue: VecDeque::new(),
        _slot: slot,
    };
    let stream = stream::unfold(events, |mut s| async move {
        s.next().await.map(|e| (Ok::<_, Infallible>(e), s))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// A place among a session's open event streams, given back when the stream ends.
#[derive(Debug)]
struct OpenSlot {
    sessions: Arc<Mutex<HashMap<SessionId, SessionStreams>>>,
    session: SessionId,
}

impl OpenSlot {
    fn take(
        sessions: &Arc<Mutex<HashMap<SessionId, SessionStreams>>>,
        session: SessionId,
    ) -> Result<OpenSlot, ApiError> {
        let mut all = sessions.lock();
        let entry = all.entry(session).or_default();
        if entry.open >= STREAMS_PER_SESSION {
            return Err(too_many());
        }
        entry.open += 1;
        Ok(OpenSlot {
            sessions: sessions.clone(),
            session,
        })
    }
}

impl Drop for OpenSlot {
    fn drop(&mut self) {
        if let Some(entry) = self.sessions.lock().get_mut(&self.session) {
            entry.open = entry.open.saturating_sub(1);
        }
    }
}

/// One open event stream.
struct EventStream {
    state: Arc<AppState>,
    session: SessionId,
    posted: Option<String>,
    wanted: Wanted,
    /// The key of the `layers` payload: the viewer's video mid.
    key: String,
    updates: watch::Receiver<Snapshot>,
    /// What it last sent about; `None` before the first.
    sent: Option<Snapshot>,
    queue: VecDeque<Event>,
    _slot: OpenSlot,
}

impl EventStream {
    /// The next event; `None` when the session ended, the event stream was deleted, or the
    /// server is stopping.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if self.sent.is_none() {
                // The first events wait for the stream's first poll, however long it takes:
                // a placeholder would read as "no viewers, no layers".
                if self.updates.wait_for(|s| s.polled).await.is_err() {
                    return None;
                }
            } else {
                if !self.alive() {
                    return None;
                }
                // A change, or a second gone by: either way, look at the session again.
                let waited = tokio::time::timeout(POLL, self.updates.changed()).await;
                if let Ok(Err(_)) = waited {
                    // The poller is gone (the server is stopping).
                    return None;
                }
                if !self.alive() {
                    return None;
                }
            }
            let now = self.updates.borrow_and_update().clone();
            self.queue_changes(&now);
            self.sent = Some(now);
        }
    }

    /// Its session goes on, and so does its registration, if it was posted.
    fn alive(&self) -> bool {
        if self.state.control.lock().session(self.session).is_none() {
            return false;
        }
        match &self.posted {
            None => true,
            Some(id) => self
                .state
                .events
                .sessions
                .lock()
                .get(&self.session)
                .is_some_and(|s| s.posted.contains_key(id)),
        }
    }

    fn queue_changes(&mut self, now: &Snapshot) {
        let before = self.sent.as_ref();
        let was_live = before.is_some_and(|b| b.live);
        if self.wanted.active && now.live != was_live {
            // No initial `inactive` (the draft): only a change from live is.
            let name = if now.live { "active" } else { "inactive" };
            self.queue
                .push_back(Event::default().event(name).data("{}"));
        }
        if self.wanted.viewercount && before.is_none_or(|b| b.viewers != now.viewers) {
            let data = json!({ "viewercount": now.viewers }).to_string();
            self.queue
                .push_back(Event::default().event("viewercount").data(data));
        }
        if self.wanted.layers && before.is_none_or(|b| b.layers != now.layers) {
            let data = layers_payload(&self.key, &now.layers).to_string();
            self.queue
                .push_back(Event::default().event("layers").data(data));
        }
    }
}

/// The `layers` event's data, in the draft's shape: by the viewer's video section, the
/// `active` and `inactive` encodings, and the `layers` it can select (the active ones, best
/// first). `simulcastIdx` is the layer's place best first. A stream without simulcast has one
/// encoding with an empty id, which cannot be selected.
fn layers_payload(key: &str, layers: &[LayerInfo]) -> Value {
    let mut active = Vec::new();
    let mut inactive = Vec::new();
    let mut selectable = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let mut entry = Map::new();
        entry.insert("id".into(), json!(l.rid));
        entry.insert("simulcastIdx".into(), json!(i));
        if let Some((w, h)) = l.resolution {
            entry.insert("width".into(), json!(w));
            entry.insert("height".into(), json!(h));
        }
        if l.active {
            entry.insert("bitrate".into(), json!(l.bitrate_bps));
            active.push(Value::Object(entry));
            if !l.rid.is_empty() {
                let mut layer = Map::new();
                layer.insert("encodingId".into(), json!(l.rid));
                layer.insert("simulcastIdx".into(), json!(i));
                layer.insert("bitrate".into(), json!(l.bitrate_bps));
                if let Some((w, h)) = l.resolution {
                    layer.insert("width".into(), json!(w));
                    layer.insert("height".into(), json!(h));
                }
                selectable.push(Value::Object(layer));
            }
        } else {
            inactive.push(Value::Object(entry));
        }
    }
    json!({ key: { "active": active, "inactive": inactive, "layers": selectable } })
}

/// A receiver of `stream`'s snapshots, starting its poller if none runs.
fn subscribe(state: &Arc<AppState>, stream: &str) -> watch::Receiver<Snapshot> {
    let mut watchers = state.events.watchers.lock();
    if let Some(tx) = watchers.get(stream) {
        return tx.subscribe();
    }
    let (tx, rx) = watch::channel(Snapshot::default());
    watchers.insert(stream.to_string(), tx.clone());
    drop(watchers);
    tokio::spawn(poll(state.clone(), stream.to_string(), tx));
    rx
}

/// Poll `stream` until nothing watches it.
async fn poll(state: Arc<AppState>, stream: String, tx: watch::Sender<Snapshot>) {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        {
            let mut watchers = state.events.watchers.lock();
            if tx.receiver_count() == 0 {
                watchers.remove(&stream);
                return;
            }
        }
        let layers = tx.borrow().layers.clone();
        let now = snapshot(&state, &stream, layers).await;
        tx.send_if_modified(|current| {
            let changed = *current != now;
            *current = now;
            changed
        });
    }
}

/// `stream` as the control plane and its publisher's shard see it now; `layers` stays as it
/// was when the shard cannot answer.
async fn snapshot(state: &AppState, stream: &str, layers: Vec<LayerInfo>) -> Snapshot {
    let (live, viewers, publisher) = {
        let control = state.control.lock();
        match control.stream(stream) {
            Some(s) => (
                s.live,
                s.viewers,
                s.publisher_shard
                    .filter(|_| s.live)
                    .map(|shard| (shard, s.id)),
            ),
            None => (false, 0, None),
        }
    };
    let layers = match publisher {
        None => Vec::new(),
        Some((shard, id)) => match state.shards[usize::from(shard.0)]
            .call(Command::StreamLayers { stream: id })
            .await
        {
            Ok(Reply::Layers(l)) => l,
            _ => layers,
        },
    };
    Snapshot {
        polled: true,
        live,
        viewers,
        layers,
    }
}

fn too_many() -> ApiError {
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("this session holds its limit of {STREAMS_PER_SESSION} event streams"),
    )
}

fn no_event_stream() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no such event stream")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rid: &str, resolution: Option<(u32, u32)>, bps: u64, active: bool) -> LayerInfo {
        LayerInfo {
            rid: rid.into(),
            resolution,
            bitrate_bps: bps,
            active,
        }
    }

    #[test]
    fn the_layers_payload_is_keyed_by_the_video_mid_in_the_drafts_shape() {
        let layers = [
            layer("f", Some((1280, 720)), 2_000_000, true),
            layer("h", None, 600_000, true),
            layer("q", Some((320, 180)), 0, false),
        ];
        let v = layers_payload("1", &layers);
        assert_eq!(
            v,
            json!({ "1": {
                "active": [
                    { "id": "f", "simulcastIdx": 0, "bitrate": 2_000_000, "width": 1280, "height": 720 },
                    { "id": "h", "simulcastIdx": 1, "bitrate": 600_000 },
                ],
                "inactive": [ { "id": "q", "simulcastIdx": 2, "width": 320, "height": 180 } ],
                "layers": [
                    { "encodingId": "f", "simulcastIdx": 0, "bitrate": 2_000_000, "width": 1280, "height": 720 },
                    { "encodingId": "h", "simulcastIdx": 1, "bitrate": 600_000 },
                ],
            }})
        );
        // Without simulcast: one encoding, nothing to select.
        let v = layers_payload("0", &[layer("", Some((640, 360)), 900_000, true)]);
        assert_eq!(v["0"]["active"][0]["id"], "");
        assert_eq!(v["0"]["layers"], json!([]));
    }

    #[test]
    fn posted_event_names_are_checked() {
        assert_eq!(Wanted::parse("").unwrap(), Wanted::ALL);
        assert_eq!(
            Wanted::parse(r#"["active","inactive","layers","viewercount"]"#).unwrap(),
            Wanted::ALL
        );
        let only = Wanted::parse(r#"["viewercount"]"#).unwrap();
        assert!(only.viewercount && !only.layers && !only.active);
        let e = Wanted::parse(r#"["reactions"]"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.reason.contains("reactions"), "{}", e.reason);
        assert_eq!(
            Wanted::parse("{}").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }
}
