//! Rooms (group calls) over plain HTTP: `POST /rooms/{room}` with an offer makes a member with
//! one peer connection (its session resource takes PATCH and DELETE as WHIP's does), and the
//! admin API lists rooms, shows one, and removes a member.
//!
//! The offer's sending sections publish, its `recvonly` sections are slots the server fills,
//! its data channel (label `ringcast`) carries the room's JSON messages (see
//! `ringcast_core::room`). With `rooms.jwt_secret` set, joining needs a JWT whose `room` claim
//! names the room, with `publish` for an offer that sends and `subscribe` for one with slots;
//! its `name` (else `sub`) is the member's display name unless `?name=` gives one.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use ringcast_core::control::{Built, Requester};
use ringcast_core::room::kind_name;
use ringcast_core::sdp::{self, Direction, OfferSummary};
use ringcast_core::{Command, Peer, Reply, RoomInfo};
use ringcast_engine::CallError;
use serde_json::json;

use crate::AppState;
use crate::auth::bearer;
use crate::client::client_ip;
use crate::error::ApiError;
use crate::jwt::{Claims, TokenKey};
use crate::whip::{self, Kind};

/// The response header of a join that names the member's participant id.
pub(crate) const PARTICIPANT_HEADER: &str = "x-ringcast-participant";

/// Longest display name, in characters.
const MAX_NAME_CHARS: usize = 64;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/rooms/{room}", any(endpoint))
        .route("/rooms/{room}/{session}", whip::resource(Kind::Room))
}

pub(crate) fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/rooms", get(list))
        .route("/api/rooms/{room}", get(show))
        .route("/api/rooms/{room}/{participant}", any(remove))
}

async fn endpoint(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    Path(room): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match method {
        Method::POST => create(state, room, peer, query.get("name").cloned(), headers, body)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        Method::OPTIONS => whip::options(true),
        _ => whip::method_not_allowed("OPTIONS, POST"),
    }
}

/// The request may act on `room`: with no secret for it (its own in `rooms.secrets`, else
/// `rooms.jwt_secret`) anyone may (`None`); otherwise it needs a Bearer JWT for the room, signed
/// with that secret (`fresh`: and unexpired), whose claims are returned.
pub(crate) fn check_room_token(
    state: &AppState,
    room: &str,
    headers: &HeaderMap,
    fresh: bool,
) -> Result<Option<Claims>, ApiError> {
    let Some(key) = state.room_tokens.get(room).or(state.tokens.as_ref()) else {
        return Ok(None);
    };
    let token = bearer(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "this room needs a Bearer token"));
    token
        .and_then(|t| room_claims(key, room, t, fresh))
        .map(Some)
        .inspect_err(|e| state.refusals.token(e))
}

/// The claims of `token` when it is a JWT for `room` (`fresh`: unexpired too).
fn room_claims(key: &TokenKey, room: &str, token: &str, fresh: bool) -> Result<Claims, ApiError> {
    let claims = key
        .verify(token, fresh)
        .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
    if claims.room.as_deref() != Some(room) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "the token is for another room",
        ));
    }
    Ok(claims)
}

/// A display name from `?name=`: trimmed, without control characters, at most
/// [`MAX_NAME_CHARS`].
fn display_name(raw: &str) -> Option<String> {
    let name: String = raw
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    (!name.is_empty()).then_some(name)
}

async fn create(
    state: Arc<AppState>,
    room: String,
    peer: SocketAddr,
    name: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    whip::valid_name(&room, "room")?;
    if whip::media_type(&headers).as_deref() != Some("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        ));
    }
    let claims = check_room_token(&state, &room, &headers, true)?;
    let from = Requester::new(
        client_ip(peer, &headers, &state.settings.trusted_proxies),
        claims.is_some(),
    );
    let offer = whip::read_body(&state, body).await?;
    if offer.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty SDP offer"));
    }
    sdp::check_limits(&offer).map_err(|e| {
        state.refusals.sdp(&e);
        ApiError::new(StatusCode::BAD_REQUEST, format!("SDP offer refused: {e}"))
    })?;
    let summary = OfferSummary::scan(&offer)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("SDP offer refused: {e}")))?;
    if let Some(claims) = &claims {
        let media = summary
            .media
            .iter()
            .filter(|m| m.kind.is_some() && !m.disabled);
        let (mut sends, mut slots) = (false, false);
        for m in media {
            sends |= m.direction.sends();
            slots |= m.direction == Direction::RecvOnly;
        }
        let refuse = |grant: &str| {
            let e = ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the token does not grant `{grant}`"),
            );
            state.refusals.token(&e);
            e
        };
        if sends && !claims.publish {
            return Err(refuse("publish"));
        }
        if slots && !claims.subscribe {
            return Err(refuse("subscribe"));
        }
    }
    let name = name.as_deref().and_then(display_name).or_else(|| {
        claims
            .as_ref()
            .and_then(|c| c.name.as_deref().or(c.sub.as_deref()))
            .and_then(display_name)
    });
    // Set up in its own task, as WHIP's join: a client that hangs up cannot cancel it half-way.
    tokio::spawn(join(state, room, name, from, offer))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "session setup failed"))?
}

/// A member joins: admitted to the room's shard, its peer built off the async threads, placed.
async fn join(
    state: Arc<AppState>,
    room: String,
    name: Option<String>,
    from: Requester,
    offer: String,
) -> Result<Response, ApiError> {
    let admission = state
        .control
        .lock()
        .admit_member(&room, name.as_deref(), from, Instant::now())
        .map_err(|r| {
            tracing::debug!(client = %from.client, room, "refused: {r}");
            whip::refused(&state, r)
        })?;
    let setup = whip::setup_for(&state, admission.shard);
    let codecs = admission.published.clone().unwrap_or_default().tracks;
    let max_slots = state.settings.max_slots;
    let participant = admission.stream.0.to_string();
    let built = whip::build(&state, move || {
        Peer::member(&setup, &offer, &codecs, max_slots, Instant::now()).map(
            |(peer, answer, membership)| {
                (Built::Member(Box::new(peer), Box::new(membership)), answer)
            },
        )
    })
    .await;
    let (built, answer) = match built {
        Ok(b) => b,
        Err(e) => {
            state.control.lock().abandon(admission);
            return Err(e);
        }
    };
    let session = whip::new_session_id();
    let (placing, command) = state
        .control
        .lock()
        .place(admission, session, built)
        .map_err(|r| whip::refused(&state, r))?;
    let answered = match state.shards[usize::from(command.shard.0)]
        .call(command.command)
        .await
    {
        Ok(_) => Ok(()),
        Err(CallError::Refused(e)) => Err(e),
        Err(e) => {
            state.control.lock().abandon_placing(placing);
            return Err(e.into());
        }
    };
    let etag = whip::new_etag();
    let (joined, commands) = {
        let mut control = state.control.lock();
        let joined = control.placed(placing, answered, etag.clone());
        (joined, whip::drain(&mut control))
    };
    whip::deliver(&state, commands).await;
    let joined = joined.map_err(|r| whip::refused(&state, r))?;
    tracing::info!(session = %session.short(), room, participant, shard = joined.shard.0, "member joined");
    let mut res = whip::created(&state, Kind::Room, &room, session, &etag, answer);
    if let Ok(v) = HeaderValue::from_str(&participant) {
        res.headers_mut().insert(PARTICIPANT_HEADER, v);
    }
    Ok(res)
}

/// `GET /api/rooms`: every room, its members and shard.
async fn list(State(state): State<Arc<AppState>>) -> Response {
    let mut rooms: Vec<_> = state
        .control
        .lock()
        .rooms()
        .map(|r| json!({ "room": r.name, "participants": r.members, "shard": r.shard.0 }))
        .collect();
    rooms.sort_by(|a, b| a["room"].as_str().cmp(&b["room"].as_str()));
    axum::Json(json!({ "rooms": rooms })).into_response()
}

/// The room's state as its shards have it: each one's members, and the home shard's
/// speakers (every shard of a room ranks the same).
async fn room_info(state: &AppState, room: &str) -> Result<RoomInfo, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "no such room");
    let (id, home, shards) = {
        let control = state.control.lock();
        let r = control.room(room).ok_or_else(not_found)?;
        (r.id, r.shard, control.room_shards(room))
    };
    let mut info = RoomInfo {
        participants: Vec::new(),
        speakers: Vec::new(),
    };
    let mut found = false;
    for shard in shards {
        if let Reply::Room(Some(part)) = state.shards[usize::from(shard.0)]
            .call(Command::RoomInfo { room: id })
            .await?
        {
            found = true;
            info.participants.extend(part.participants);
            if shard == home || info.speakers.is_empty() {
                info.speakers = part.speakers;
            }
        }
    }
    // Join order: participant ids are handed out in it.
    info.participants
        .sort_by_key(|m| m.id.parse::<u64>().unwrap_or(u64::MAX));
    if found { Ok(info) } else { Err(not_found()) }
}

/// `GET /api/rooms/{room}`: members, their slots, and who speaks.
async fn show(State(state): State<Arc<AppState>>, Path(room): Path<String>) -> Response {
    let info = match room_info(&state, &room).await {
        Ok(info) => info,
        Err(e) => return e.into_response(),
    };
    let participants: Vec<_> = info
        .participants
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "name": m.name,
                "audio": m.audio,
                "video": m.video,
                "slots": m.slots.iter().map(|s| json!({
                    "mid": s.mid,
                    "kind": kind_name(s.kind),
                    "participant": s.participant,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    axum::Json(json!({
        "room": room,
        "participants": participants,
        "speakers": info.speakers,
    }))
    .into_response()
}

/// `DELETE /api/rooms/{room}/{participant}`: the member leaves as if it had sent DELETE.
async fn remove(
    State(state): State<Arc<AppState>>,
    method: Method,
    Path((room, participant)): Path<(String, String)>,
) -> Response {
    if method != Method::DELETE {
        return whip::method_not_allowed("DELETE");
    }
    let result = async {
        let info = room_info(&state, &room).await?;
        let member = info
            .participants
            .iter()
            .find(|m| m.id == participant)
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such participant"))?;
        let commands = {
            let mut control = state.control.lock();
            control
                .leave(member.session)
                .map_err(|r| whip::refused(&state, r))?;
            whip::drain(&mut control)
        };
        whip::deliver(&state, commands).await;
        tracing::info!(room, participant, "member removed through the admin API");
        Ok::<_, ApiError>(StatusCode::NO_CONTENT.into_response())
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_are_trimmed_bounded_and_printable() {
        assert_eq!(display_name("  Ada "), Some("Ada".into()));
        assert_eq!(display_name("a\u{7}b\nc"), Some("abc".into()));
        assert_eq!(display_name("   "), None);
        assert_eq!(display_name(&"x".repeat(500)).unwrap().chars().count(), 64);
    }
}
