//! WHIP and WHEP resources: create (POST), trickle and ICE restart (PATCH), delete (DELETE),
//! plus OPTIONS/GET/HEAD and CORS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use rand::Rng;
use rand::distr::Alphanumeric;
use ringcast_core::control::{Built, Refusal, Requester, Role, ShardCommand, VideoSection};
use ringcast_core::sdp::{self, OfferSummary, SdpFragment};
use ringcast_core::{CommandError, Control, IceCreds, PeerSetup, SessionId, ShardId, TrackKind};
use ringcast_engine::CallError;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::AppState;
use crate::auth::{bearer, check_bearer, same_token};
use crate::client::client_ip;
use crate::error::ApiError;
use crate::jwt::looks_like_jwt;
use crate::{events, layers};

/// Publish (WHIP), play (WHEP), or take part in a room: the kinds of session resources,
/// which share PATCH and DELETE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Whip,
    Whep,
    Room,
}

impl Kind {
    fn role(self) -> Role {
        match self {
            Kind::Whip => Role::Publisher,
            Kind::Whep => Role::Viewer,
            Kind::Room => Role::Member,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Whip => "whip",
            Kind::Whep => "whep",
            Kind::Room => "rooms",
        }
    }
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/whip/{stream}", endpoint(Kind::Whip))
        .route("/whep/{stream}", endpoint(Kind::Whep))
        .route("/whip/{stream}/{session}", resource(Kind::Whip))
        .route("/whep/{stream}/{session}", resource(Kind::Whep))
}

pub(crate) fn cors(origin: &str) -> CorsLayer {
    let allow = if origin == "*" {
        AllowOrigin::any()
    } else {
        AllowOrigin::exact(HeaderValue::from_str(origin).unwrap_or(HeaderValue::from_static("*")))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
        ])
        .expose_headers([
            header::LOCATION,
            header::ETAG,
            header::LINK,
            header::HeaderName::from_static("accept-patch"),
            header::HeaderName::from_static(crate::rooms::PARTICIPANT_HEADER),
        ])
}

/// CORS preflights are answered by the CORS layer before any handler runs; this adds what
/// RFC 9725 asks an OPTIONS answer to carry (`Accept-Post` on endpoints, `Accept-Patch` on
/// sessions) to every OPTIONS answer, preflight or not.
pub(crate) async fn options_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let is_options = req.method() == Method::OPTIONS;
    let segments = req.uri().path().trim_matches('/').split('/').count();
    let whip = ["/whip/", "/whep/", "/rooms/"]
        .iter()
        .any(|p| req.uri().path().starts_with(p));
    let mut res = next.run(req).await;
    if is_options && whip {
        let h = res.headers_mut();
        if segments == 2 {
            h.insert("accept-post", HeaderValue::from_static("application/sdp"));
        } else if segments == 3 {
            h.insert(
                "accept-patch",
                HeaderValue::from_static("application/trickle-ice-sdpfrag"),
            );
        }
    }
    res
}

fn endpoint(kind: Kind) -> MethodRouter<Arc<AppState>> {
    any(
        move |State(state): State<Arc<AppState>>,
              ConnectInfo(peer): ConnectInfo<SocketAddr>,
              method: Method,
              Path(stream): Path<String>,
              headers: HeaderMap,
              body: Body| async move {
            match method {
                Method::POST => create(state, kind, stream, peer, headers, body)
                    .await
                    .unwrap_or_else(IntoResponse::into_response),
                Method::OPTIONS => options(true),
                Method::GET | Method::HEAD => StatusCode::NO_CONTENT.into_response(),
                _ => method_not_allowed("GET, HEAD, OPTIONS, POST"),
            }
        },
    )
}

pub(crate) fn resource(kind: Kind) -> MethodRouter<Arc<AppState>> {
    any(
        move |State(state): State<Arc<AppState>>,
              method: Method,
              Path((stream, session)): Path<(String, String)>,
              headers: HeaderMap,
              body: Body| async move {
            let result = match method {
                Method::PATCH => patch(state, kind, stream, session, headers, body).await,
                Method::DELETE => delete(state, kind, stream, session, headers).await,
                Method::OPTIONS => Ok(options(false)),
                Method::GET | Method::HEAD => Ok(StatusCode::NO_CONTENT.into_response()),
                _ => Ok(method_not_allowed("DELETE, GET, HEAD, OPTIONS, PATCH")),
            };
            result.unwrap_or_else(IntoResponse::into_response)
        },
    )
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Response {
    let mut res =
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response();
    res.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    res
}

pub(crate) fn options(endpoint: bool) -> Response {
    let mut res = StatusCode::NO_CONTENT.into_response();
    let h = res.headers_mut();
    if endpoint {
        h.insert("accept-post", HeaderValue::from_static("application/sdp"));
    } else {
        h.insert(
            "accept-patch",
            HeaderValue::from_static("application/trickle-ice-sdpfrag"),
        );
    }
    res
}

/// The media type of a request, without parameters, lower-cased.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

pub(crate) async fn read_body(state: &AppState, body: Body) -> Result<String, ApiError> {
    let limit = state.settings.max_body_bytes;
    let bytes = to_bytes(body, limit).await.map_err(|_| {
        state.refusals.count(|c| c.refused_body_too_large += 1);
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {limit} bytes"),
        )
    })?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| ApiError::new(StatusCode::BAD_REQUEST, "request body is not UTF-8 text"))
}

/// The token a request on `stream` needs: the publish token for WHIP, the view token for WHEP;
/// the same for the POST that creates a session and for its PATCH and DELETE (RFC 9725 §4.7).
fn stream_token<'a>(state: &'a AppState, kind: Kind, stream: &str) -> Option<&'a str> {
    let auth = state.settings.streams.get(stream)?;
    match kind {
        Kind::Whip => auth.publish_token.as_deref(),
        Kind::Whep => auth.view_token.as_deref(),
        Kind::Room => None,
    }
}

/// The request may act on `stream` as `kind`: with neither a static token for the stream nor
/// `rooms.jwt_secret`, anyone may; otherwise it needs `Authorization: Bearer` with the stream's
/// static token, or a JWT signed with the secret for this stream that grants publishing (WHIP)
/// or playing (WHEP). `fresh` (the POST that makes a session) also needs the JWT unexpired.
/// `Ok(true)` when a token was needed and given (admission favours token holders). A room's
/// session takes a JWT for the room (see [`crate::rooms`]).
pub(crate) fn check_token(
    state: &AppState,
    kind: Kind,
    stream: &str,
    headers: &HeaderMap,
    fresh: bool,
) -> Result<bool, ApiError> {
    if kind == Kind::Room {
        return crate::rooms::check_room_token(state, stream, headers, fresh)
            .map(|claims| claims.is_some());
    }
    let required = stream_token(state, kind, stream);
    let Some(key) = state.tokens.as_ref() else {
        return check_bearer(headers, required, "this stream")
            .map(|()| required.is_some())
            .inspect_err(|e| state.refusals.token(e));
    };
    let given = bearer(headers)
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "this stream needs a Bearer token"));
    let verdict = given.and_then(|token| {
        if required.is_some_and(|r| same_token(token, r)) {
            return Ok(true);
        }
        if !looks_like_jwt(token) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "wrong token for this stream",
            ));
        }
        let claims = key
            .verify(token, fresh)
            .map_err(|e| ApiError::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        let (grant, name) = match kind {
            Kind::Whip => (claims.publish, "publish"),
            Kind::Whep | Kind::Room => (claims.subscribe, "subscribe"),
        };
        if claims.stream.as_deref() != Some(stream) {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "the token is for another stream",
            ))
        } else if !grant {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!("the token does not grant `{name}`"),
            ))
        } else {
            Ok(true)
        }
    });
    verdict.inspect_err(|e| state.refusals.token(e))
}

fn valid_stream_name(name: &str) -> Result<(), ApiError> {
    valid_name(name, "stream")
}

/// A stream's or a room's name (`what`) is 1-128 URL-safe characters.
pub(crate) fn valid_name(name: &str, what: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{what} names are 1-128 characters of A-Z a-z 0-9 - _ . ~"),
        ))
    }
}

pub(crate) fn random_string(n: usize) -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

pub(crate) fn new_etag() -> String {
    format!("\"{}\"", random_string(16))
}

/// Local ICE credentials; the ufrag starts with the shard so a log line tells where it lives.
fn mint_ice(shard: ShardId) -> IceCreds {
    IceCreds {
        ufrag: format!("s{}{}", shard.0, random_string(8)),
        pass: random_string(24),
    }
}

/// A new session id: random, with its top bit set so it prints as 16 hex digits.
pub(crate) fn new_session_id() -> SessionId {
    SessionId(rand::rng().random::<u64>() | 1 << 63)
}

fn parse_session(s: &str) -> Option<SessionId> {
    (s.len() == 16)
        .then(|| u64::from_str_radix(s, 16).ok())
        .flatten()
        .map(SessionId)
}

async fn create(
    state: Arc<AppState>,
    kind: Kind,
    stream: String,
    peer: SocketAddr,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    valid_stream_name(&stream)?;
    if media_type(&headers).as_deref() != Some("application/sdp") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the offer must be sent as Content-Type: application/sdp",
        ));
    }
    let authenticated = check_token(&state, kind, &stream, &headers, true)?;
    let from = Requester::new(
        client_ip(peer, &headers, &state.settings.trusted_proxies),
        authenticated,
    );
    let offer = read_body(&state, body).await?;
    if offer.trim().is_empty() {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "empty SDP offer"));
    }
    // Over a limit: refused before it takes an admission or a build.
    sdp::check_limits(&offer).map_err(|e| {
        state.refusals.sdp(&e);
        ApiError::new(StatusCode::BAD_REQUEST, format!("SDP offer refused: {e}"))
    })?;
    // The session is set up in its own task: a client that hangs up mid-request cannot cancel
    // it half-way (a participant placed on a shard but never registered would leak).
    tokio::spawn(join(state, kind, stream, from, offer))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "session setup failed"))?
}

/// Run an `Rtc` build (about 1 ms of CPU) on the blocking pool, at most a few at a time so a
/// burst of offers cannot take every thread.
pub(crate) async fn build<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce() -> Result<T, ringcast_core::SetupError> + Send + 'static,
) -> Result<T, ApiError> {
    let _permit = state
        .builds
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    state.peer_builds.fetch_add(1, Ordering::Relaxed);
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "setup task failed"))?
        .map_err(ApiError::from)
}

pub(crate) fn setup_for(state: &AppState, shard: ShardId) -> PeerSetup {
    PeerSetup {
        cert: state.cert.clone(),
        candidates: state.candidates[usize::from(shard.0)].clone(),
        tcp_candidates: tcp_candidates(state, shard),
        ice: mint_ice(shard),
    }
}

/// The shard's TCP candidates (ICE over TCP): its advertised addresses at its TCP listener's
/// port, when it listens.
fn tcp_candidates(state: &AppState, shard: ShardId) -> Vec<SocketAddr> {
    let i = usize::from(shard.0);
    let Some(tcp) = state.shards[i].tcp_addr() else {
        return Vec::new();
    };
    state.candidates[i]
        .iter()
        .map(|a| SocketAddr::new(a.ip(), tcp.port()))
        .collect()
}

/// A publisher or a viewer joins, through the control plane's three steps: admit (the
/// admission limits are checked and a shard is reserved, before anything costly), build the
/// peer off the async threads, place it on its shard.
async fn join(
    state: Arc<AppState>,
    kind: Kind,
    stream: String,
    from: Requester,
    offer: String,
) -> Result<Response, ApiError> {
    let role = kind.role();
    let admission = state
        .control
        .lock()
        .admit(role, &stream, from, Instant::now())
        .map_err(|r| {
            tracing::debug!(client = %from.client, stream, "refused: {r}");
            refused(&state, r)
        })?;
    let setup = setup_for(&state, admission.shard);
    let video = match role {
        Role::Viewer => video_section(&offer),
        Role::Publisher | Role::Member => None,
    };
    let receives = admission.published.clone();
    let built = build(&state, move || {
        Built::from_offer(&setup, &offer, receives.as_ref(), Instant::now())
    })
    .await;
    let (built, answer) = match built {
        Ok(b) => b,
        Err(e) => {
            state.control.lock().abandon(admission);
            return Err(e);
        }
    };
    let session = new_session_id();
    let (placing, command) = state
        .control
        .lock()
        .place(admission, session, built)
        .map_err(|r| refused(&state, r))?;
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
    let etag = new_etag();
    let (joined, commands) = {
        let mut control = state.control.lock();
        let joined = control.placed(placing, answered, etag.clone());
        if let (Ok(_), Some(video)) = (&joined, video) {
            control.set_video(session, video);
        }
        (joined, drain(&mut control))
    };
    deliver(&state, commands).await;
    let joined = joined.map_err(|r| refused(&state, r))?;
    if let Some((change, viewers)) = &joined.codec_change {
        tracing::info!(
            stream,
            change,
            viewers,
            "codec changed on publisher restart: viewers must reconnect"
        );
    }
    let shard = joined.shard.0;
    match role {
        Role::Publisher => {
            tracing::info!(session = %session.short(), stream, shard, "publisher joined")
        }
        Role::Viewer | Role::Member => {
            tracing::info!(session = %session.short(), stream, shard, "viewer joined")
        }
    }
    Ok(created(&state, kind, &stream, session, &etag, answer))
}

/// The answer to a refusal of the control plane.
pub(crate) fn refused(state: &AppState, refusal: Refusal) -> ApiError {
    state.refusals.admission(&refusal);
    match refusal {
        Refusal::NoPublisher(_) => ApiError::new(StatusCode::CONFLICT, refusal.to_string())
            .retry_after(state.settings.whep_retry_after),
        Refusal::CodecChanged => {
            ApiError::new(StatusCode::CONFLICT, refusal.to_string()).retry_after(1)
        }
        Refusal::PublisherExists(_) => ApiError::new(StatusCode::CONFLICT, refusal.to_string()),
        Refusal::Full | Refusal::Shard(CommandError::ShardFull) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, refusal.to_string()).retry_after(5)
        }
        // Per client: 429. Its sessions end when it deletes them or they time out.
        Refusal::ClientSessions(_) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, refusal.to_string()).retry_after(10)
        }
        Refusal::ClientRate(secs) => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, refusal.to_string()).retry_after(secs)
        }
        // The server's: 503. Unconnected sessions connect (or time out) within seconds.
        Refusal::Pending => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, refusal.to_string()).retry_after(2)
        }
        Refusal::TooManyClients | Refusal::StreamFull(..) | Refusal::RoomFull(..) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, refusal.to_string()).retry_after(5)
        }
        Refusal::UnknownSession | Refusal::Shard(CommandError::UnknownSession) => {
            ApiError::new(StatusCode::NOT_FOUND, "no such session")
        }
        Refusal::DuplicateSession | Refusal::Shard(_) => {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, refusal.to_string())
        }
    }
}

/// The commands a control-plane call left, taken under the same lock as the call.
pub(crate) fn drain(control: &mut Control) -> Vec<ShardCommand> {
    std::iter::from_fn(|| control.poll_command()).collect()
}

/// Deliver commands whose answers the control plane does not wait for, in order. A busy
/// mailbox is tried again for a while: these settle state (a removal, a relay) and must not be
/// lost to a moment of overload.
pub(crate) async fn deliver(state: &AppState, commands: Vec<ShardCommand>) {
    for ShardCommand { shard, command } in commands {
        let handle = &state.shards[usize::from(shard.0)];
        match handle.call_patiently(command, DELIVERY_PATIENCE).await {
            Ok(_) | Err(CallError::Refused(CommandError::UnknownSession)) => {}
            Err(e) => tracing::warn!(shard = shard.0, "control command not delivered: {e}"),
        }
    }
}

/// How long a busy shard's mailbox is retried for one command.
const DELIVERY_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn created(
    state: &AppState,
    kind: Kind,
    stream: &str,
    session: SessionId,
    etag: &str,
    answer: String,
) -> Response {
    let location = format!("/{}/{stream}/{session}", kind.path());
    let len = answer.len();
    let mut res = (StatusCode::CREATED, answer).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    // FFmpeg cannot read a chunked 201: always a Content-Length.
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        "accept-patch",
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    let extensions = match kind {
        // The WHEP extensions, under the session's resource.
        Kind::Whep => vec![
            format!("<{}>; rel=\"{}\"", layers::url(&location), layers::REL),
            format!(
                "<{}>; rel=\"{}\"; events=\"{}\"",
                events::url(&location),
                events::REL,
                events::NAMES.join(",")
            ),
        ],
        Kind::Whip | Kind::Room => Vec::new(),
    };
    // The TURN usernames minted for the session carry the id logs show: the whole id guards
    // an open stream's session, and TURN servers log usernames.
    let ice_links = state
        .ice_servers
        .links(&session.short().to_string(), SystemTime::now());
    for link in ice_links.iter().chain(&extensions) {
        if let Ok(v) = HeaderValue::from_str(link) {
            h.append(header::LINK, v);
        }
    }
    res
}

/// The first video section of a viewer's offer that receives.
fn video_section(offer: &str) -> Option<VideoSection> {
    let summary = OfferSummary::scan(offer).ok()?;
    summary
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == Some(TrackKind::Video) && !m.disabled && m.direction.receives())
        .and_then(|(index, m)| {
            Some(VideoSection {
                mid: m.mid.clone()?,
                index,
            })
        })
}

/// A viewer session named in an extension's URL.
#[derive(Debug)]
pub(crate) struct Viewer {
    pub(crate) session: SessionId,
    pub(crate) shard: ShardId,
    pub(crate) video: Option<VideoSection>,
}

/// The viewer session `session` of `stream`, for a request that carries the stream's view
/// token (when it has one), as its session resource asks.
pub(crate) fn find_viewer(
    state: &AppState,
    stream: &str,
    session: &str,
    headers: &HeaderMap,
) -> Result<Viewer, ApiError> {
    check_token(state, Kind::Whep, stream, headers, false)?;
    lookup_viewer(state, stream, session)
}

/// The viewer session `session` of `stream`, without a token check: for URLs that are
/// themselves the capability (an event stream's).
pub(crate) fn lookup_viewer(
    state: &AppState,
    stream: &str,
    session: &str,
) -> Result<Viewer, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "no such session");
    let id = parse_session(session).ok_or_else(not_found)?;
    let control = state.control.lock();
    let rec = control.session(id).ok_or_else(not_found)?;
    if rec.stream != stream || rec.role != Role::Viewer {
        return Err(not_found());
    }
    Ok(Viewer {
        session: id,
        shard: rec.shard,
        video: rec.video.cloned(),
    })
}

/// Look up a session named in a URL; it must belong to `stream` and `kind`.
fn find_session(
    state: &AppState,
    kind: Kind,
    stream: &str,
    session: &str,
) -> Result<(SessionId, ShardId, String), ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "no such session");
    let id = parse_session(session).ok_or_else(not_found)?;
    let control = state.control.lock();
    let rec = control.session(id).ok_or_else(not_found)?;
    if rec.stream != stream || rec.role != kind.role() {
        return Err(not_found());
    }
    Ok((id, rec.shard, rec.etag.to_string()))
}

async fn patch(
    state: Arc<AppState>,
    kind: Kind,
    stream: String,
    session: String,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_token(&state, kind, &stream, &headers, false)?;
    let (id, shard, etag) = find_session(&state, kind, &stream, &session)?;
    if media_type(&headers).as_deref() != Some("application/trickle-ice-sdpfrag") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "PATCH takes Content-Type: application/trickle-ice-sdpfrag",
        ));
    }
    let if_match = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let restart = if_match == Some("*");
    if let Some(m) = if_match
        && !restart
        && m != etag
    {
        return Err(ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "If-Match does not match the session's current ETag",
        ));
    }
    let body = read_body(&state, body).await?;
    let frag = SdpFragment::parse(&body).map_err(|e| {
        state.refusals.sdp(&e);
        ApiError::new(StatusCode::BAD_REQUEST, format!("bad sdpfrag: {e}"))
    })?;
    if !restart {
        // ICE-lite: the server learns the client's addresses from its checks; trickled
        // candidates only tell the shard their types (for its connected_* counters).
        if !frag.candidates.is_empty() {
            let command = state
                .control
                .lock()
                .trickle(id, frag.candidates)
                .map_err(|r| refused(&state, r))?;
            state.shards[usize::from(command.shard.0)]
                .call(command.command)
                .await?;
        }
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (Some(ufrag), Some(pass)) = (frag.ufrag, frag.pwd) else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "an ICE restart needs a=ice-ufrag and a=ice-pwd",
        ));
    };
    let local = mint_ice(shard);
    let command = state
        .control
        .lock()
        .ice_restart(id, IceCreds { ufrag, pass }, local.clone())
        .map_err(|r| refused(&state, r))?;
    state.shards[usize::from(command.shard.0)]
        .call(command.command)
        .await?;
    let etag = new_etag();
    state.control.lock().set_etag(id, etag.clone());
    let mut frag = format!(
        "a=ice-lite\r\na=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
        local.ufrag, local.pass
    );
    let udp = state.candidates[usize::from(shard.0)].iter();
    for (i, addr) in udp.enumerate() {
        frag.push_str(&format!(
            "a=candidate:{} 1 udp {} {} {} typ host\r\n",
            i + 1,
            2_130_706_431u32.saturating_sub(i as u32),
            addr.ip(),
            addr.port()
        ));
    }
    // After the UDP ones, lower (type preference 90, as str0m ranks host TCP candidates).
    for (i, addr) in tcp_candidates(&state, shard).iter().enumerate() {
        frag.push_str(&format!(
            "a=candidate:t{} 1 tcp {} {} {} typ host tcptype passive\r\n",
            i + 1,
            1_526_726_399u32.saturating_sub(i as u32),
            addr.ip(),
            addr.port()
        ));
    }
    frag.push_str("a=end-of-candidates\r\n");
    let mut res = (StatusCode::OK, frag).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/trickle-ice-sdpfrag"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    Ok(res)
}

async fn delete(
    state: Arc<AppState>,
    kind: Kind,
    stream: String,
    session: String,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_token(&state, kind, &stream, &headers, false)?;
    let (id, _, _) = find_session(&state, kind, &stream, &session)?;
    let commands = {
        let mut control = state.control.lock();
        control.leave(id).map_err(|r| refused(&state, r))?;
        drain(&mut control)
    };
    deliver(&state, commands).await;
    state.events.forget(id);
    tracing::info!(session = %id.short(), stream, "session deleted");
    Ok(StatusCode::OK.into_response())
}

/// A shard ended a session on its own (timeout, close, replacement).
pub(crate) async fn session_closed(state: &AppState, session: SessionId) {
    let commands = {
        let mut control = state.control.lock();
        control.closed(session);
        drain(&mut control)
    };
    state.events.forget(session);
    deliver(state, commands).await;
}
