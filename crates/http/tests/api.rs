//! The control plane against real shards on loopback (no HTTP socket: requests go through
//! `tower::ServiceExt::oneshot`). Covers the API contract and every bad-input answer.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use ringcast_core::ShardConfig;
use ringcast_core::control::{AdmissionLimits, Limits, Rate};
use ringcast_engine::{Shards, ShardsConfig};
use ringcast_http::{AppState, HttpSettings, IceCredentials, IceServer, StreamAuth};
use ringcast_net::EngineOptions;
use str0m::media::{Direction, MediaKind};
use tower::ServiceExt;

const CHROMIUM_FILE: &str = include_str!("../../../tests/fixtures/sdp/chromium-whip.sdp");
const FFMPEG_FILE: &str = include_str!("../../../tests/fixtures/sdp/ffmpeg9-whip.sdp");

/// A fixture file holds the client's offer, then "---- answer ----".
fn offer_of(file: &str) -> String {
    file.split("---- answer ----").next().unwrap().to_string()
}

fn chromium() -> String {
    offer_of(CHROMIUM_FILE)
}

struct Server {
    app: Router,
    state: Arc<AppState>,
    shards: Option<Shards>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.shards.take() {
            s.stop();
        }
    }
}

/// Where the in-process requests come from (no socket: the handlers read it from here).
const CLIENT: ([u8; 4], u16) = ([192, 0, 2, 1], 40000);

/// The app as seen by requests from `peer`.
fn app_from(state: &Arc<AppState>, peer: impl Into<SocketAddr>) -> Router {
    ringcast_http::app(state.clone()).layer(MockConnectInfo(peer.into()))
}

/// The engine under test: `TEST_ENGINE` (`uring`, `epoll`; `scripts/test` runs the suite once
/// with each), else io_uring where it runs.
fn test_engine() -> ringcast_net::EngineKind {
    use ringcast_net::EngineKind;
    match std::env::var("TEST_ENGINE") {
        Ok(name) if name != "auto" => EngineKind::from_name(&name)
            .unwrap_or_else(|| panic!("TEST_ENGINE={name}: expected uring, epoll or auto")),
        _ if ringcast_net::probe(EngineKind::Uring).is_ok() => EngineKind::Uring,
        _ => EngineKind::Epoll,
    }
}

fn server(limit: usize, streams: BTreeMap<String, StreamAuth>) -> Server {
    server_with(limit, limit, false, streams)
}

fn server_with(
    limit: usize,
    affinity: usize,
    replace_publisher: bool,
    streams: BTreeMap<String, StreamAuth>,
) -> Server {
    server_tuned(limit, affinity, replace_publisher, streams, |_| {})
}

/// [`server_with`] with admission limits and trusted proxies.
fn server_limited(
    limit: usize,
    affinity: usize,
    replace_publisher: bool,
    streams: BTreeMap<String, StreamAuth>,
    admission: AdmissionLimits,
    trusted_proxies: Vec<IpAddr>,
) -> Server {
    server_tuned(limit, affinity, replace_publisher, streams, |s| {
        s.admission = admission;
        s.trusted_proxies = trusted_proxies;
    })
}

/// [`server_with`], its settings changed by `tune` first.
fn server_tuned(
    limit: usize,
    affinity: usize,
    replace_publisher: bool,
    streams: BTreeMap<String, StreamAuth>,
    tune: impl FnOnce(&mut HttpSettings),
) -> Server {
    let (shards, events) = Shards::start(ShardsConfig {
        binds: vec!["127.0.0.1:0".parse().unwrap(); 2],
        pin_threads: false,
        shard: ShardConfig {
            max_participants: limit,
            ..ShardConfig::default()
        },
        kind: test_engine(),
        engine: EngineOptions::default(),
        mailbox: 64,
        tcp: None,
    })
    .unwrap();
    let candidates: Vec<Vec<SocketAddr>> = shards
        .handles()
        .iter()
        .map(|h| vec![h.local_addr()])
        .collect();
    let mut settings = HttpSettings {
        cors_origin: "*".into(),
        max_body_bytes: 65536,
        whep_retry_after: 2,
        limits: Limits {
            affinity,
            max: limit,
        },
        replace_publisher,
        ice_servers: vec![IceServer {
            urls: vec!["stun:stun.example.invalid:3478".into()],
            credentials: IceCredentials::Fixed {
                username: None,
                credential: None,
            },
        }],
        streams,
        admin_token: None,
        jwt_secret: None,
        admission: AdmissionLimits::NONE,
        trusted_proxies: Vec::new(),
        room_secrets: BTreeMap::new(),
        max_slots: 16,
        max_room_members: 100,
    };
    tune(&mut settings);
    let state = AppState::new(
        settings,
        shards.handles().to_vec(),
        candidates,
        ringcast_core::generate_certificate().unwrap(),
        "epoll",
    );
    tokio::spawn(ringcast_http::follow_shard_events(state.clone(), events));
    Server {
        app: app_from(&state, CLIENT),
        state,
        shards: Some(shards),
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn post(path: &str, ct: &str, body: impl Into<String>) -> Request<Body> {
    Request::post(path)
        .header(header::CONTENT_TYPE, ct)
        .body(Body::from(body.into()))
        .unwrap()
}

/// A recvonly offer (what a WHEP player sends), from a str0m peer with `codecs` enabled.
fn viewer_offer(video_h264_only: bool) -> String {
    let mut cfg = str0m::RtcConfig::new();
    if video_h264_only {
        cfg = cfg
            .clear_codecs()
            .enable_opus(true, false)
            .enable_h264(true);
    }
    let mut rtc = cfg.build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    let (offer, _) = api.apply().unwrap();
    offer.to_sdp_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_whep_contract() {
    let s = server(100, BTreeMap::new());
    let a = send(&s.app, post("/whip/cam", "application/sdp", chromium())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let location = a.header("location").unwrap().to_string();
    assert!(location.starts_with("/whip/cam/"));
    assert!(a.header("etag").unwrap().starts_with('"'));
    assert_eq!(a.header("content-type"), Some("application/sdp"));
    assert_eq!(
        a.header("content-length"),
        Some(a.body.len().to_string().as_str())
    );
    assert_eq!(
        a.header("accept-patch"),
        Some("application/trickle-ice-sdpfrag")
    );
    assert!(a.header("link").unwrap().contains("rel=\"ice-server\""));
    assert!(a.body.contains("a=candidate:"), "{}", a.body);
    assert!(a.body.contains("a=end-of-candidates"));
    assert!(a.body.contains("a=ice-lite"));
    assert!(
        a.body.contains("VP8/90000"),
        "first offered video codec answered"
    );

    // One publisher per stream.
    let b = send(&s.app, post("/whip/cam", "application/sdp", chromium())).await;
    assert_eq!(b.status, StatusCode::CONFLICT);

    // A viewer.
    let v = send(
        &s.app,
        post("/whep/cam", "application/sdp", viewer_offer(false)),
    )
    .await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    let vloc = v.header("location").unwrap().to_string();
    assert!(vloc.starts_with("/whep/cam/"));
    assert!(v.body.contains("a=sendonly"));

    // A viewer that cannot decode VP8 gets a 422 naming it.
    let h = send(
        &s.app,
        post("/whep/cam", "application/sdp", viewer_offer(true)),
    )
    .await;
    assert_eq!(h.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(h.body.contains("VP8"), "{}", h.body);

    let list = send(
        &s.app,
        Request::get("/api/streams").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(
        list.body.contains("\"cam\"") && list.body.contains("\"viewers\":1"),
        "{}",
        list.body
    );
    let metrics = send(
        &s.app,
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(metrics.body.contains("ringcast_participants{shard=\"0\"}"));
    let stats = send(
        &s.app,
        Request::get("/api/stats").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(stats.body.contains("\"engine\":\"epoll\""));

    // Trickle, stale If-Match, ICE restart.
    let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n";
    let patch = |if_match: Option<&str>, ct: &str| {
        let mut r = Request::patch(&vloc).header(header::CONTENT_TYPE, ct);
        if let Some(m) = if_match {
            r = r.header(header::IF_MATCH, m);
        }
        r.body(Body::from(frag)).unwrap()
    };
    assert_eq!(
        send(&s.app, patch(None, "application/trickle-ice-sdpfrag"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    let etag = v.header("etag").unwrap();
    assert_eq!(
        send(&s.app, patch(Some(etag), "application/trickle-ice-sdpfrag"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        send(
            &s.app,
            patch(Some("\"stale\""), "application/trickle-ice-sdpfrag")
        )
        .await
        .status,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        send(&s.app, patch(None, "text/plain")).await.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let r = send(&s.app, patch(Some("*"), "application/trickle-ice-sdpfrag")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("a=ice-ufrag:") && r.body.contains("a=end-of-candidates"));
    assert_ne!(r.header("etag"), Some(etag));

    // DELETE frees the session; a second DELETE finds nothing.
    let d = send(&s.app, Request::delete(&vloc).body(Body::empty()).unwrap()).await;
    assert_eq!(d.status, StatusCode::OK);
    let d = send(&s.app, Request::delete(&vloc).body(Body::empty()).unwrap()).await;
    assert_eq!(d.status, StatusCode::NOT_FOUND);
    let d = send(
        &s.app,
        Request::delete(&location).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(d.status, StatusCode::OK);
    let list = send(
        &s.app,
        Request::get("/api/streams").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(list.body, "{\"streams\":[]}");
    assert_eq!(s.state.participants(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors() {
    let s = server(100, BTreeMap::new());
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            post("/whip/x", "text/plain", chromium()),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "application/sdp",
        ),
        (
            post("/whip/x", "application/sdp", ""),
            StatusCode::BAD_REQUEST,
            "empty",
        ),
        (
            post("/whip/x", "application/sdp", "hello"),
            StatusCode::BAD_REQUEST,
            "SDP",
        ),
        (
            post(
                "/whip/x",
                "application/sdp",
                "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=audio",
            ),
            StatusCode::BAD_REQUEST,
            "SDP",
        ),
        (
            post("/whip/x", "application/sdp", "x".repeat(70_000)),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger",
        ),
        (
            post(
                "/whip/x",
                "application/sdp",
                chromium()
                    .replace("opus/48000/2", "PCMU/8000")
                    .replace("VP8/90000", "X/90000")
                    .replace("H264/", "Y/")
                    .replace("AV1/", "Z/")
                    .replace("VP9/", "W/"),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "forward",
        ),
        (
            post("/whep/nobody", "application/sdp", viewer_offer(false)),
            StatusCode::CONFLICT,
            "no publisher",
        ),
        (
            post("/whip/bad%20name", "application/sdp", chromium()),
            StatusCode::BAD_REQUEST,
            "stream names",
        ),
        (
            Request::delete("/whip/x/0123456789abcdef")
                .body(Body::empty())
                .unwrap(),
            StatusCode::NOT_FOUND,
            "no such session",
        ),
        (
            Request::patch("/whep/x/nothex")
                .header(header::CONTENT_TYPE, "application/trickle-ice-sdpfrag")
                .body(Body::from("a=ice-ufrag:x"))
                .unwrap(),
            StatusCode::NOT_FOUND,
            "no such session",
        ),
        (
            Request::put("/whip/x").body(Body::empty()).unwrap(),
            StatusCode::METHOD_NOT_ALLOWED,
            "not allowed",
        ),
    ];
    for (req, status, reason) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let a = send(&s.app, req).await;
        assert_eq!(a.status, status, "{what}: {}", a.body);
        assert!(
            a.body.contains(reason),
            "{what}: reason {:?} not in {:?}",
            reason,
            a.body
        );
        assert!(!a.body.trim().contains('\n'), "one line: {:?}", a.body);
        if status == StatusCode::CONFLICT {
            assert_eq!(a.header("retry-after"), Some("2"));
        }
    }
    assert_eq!(s.state.participants(), 0, "nothing leaked");

    // OPTIONS and CORS.
    let o = send(
        &s.app,
        Request::options("/whip/x").body(Body::empty()).unwrap(),
    )
    .await;
    assert!(o.status.is_success());
    assert_eq!(o.header("accept-post"), Some("application/sdp"));
    let pre = send(
        &s.app,
        Request::options("/whip/x")
            .header("origin", "http://example.invalid")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type, if-match",
            )
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(pre.status.is_success());
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("if-match"));
    let a = send(
        &s.app,
        Request::post("/whip/cors")
            .header("origin", "http://example.invalid")
            .header(header::CONTENT_TYPE, "application/sdp")
            .body(Body::from(chromium()))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED);
    let exposed = a
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in ["location", "etag", "link", "accept-patch"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let g = send(&s.app, Request::get("/whip/x").body(Body::empty()).unwrap()).await;
    assert!(g.status.is_success() && g.body.is_empty());
    let h = send(
        &s.app,
        Request::get("/healthz").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(h.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_limits() {
    let mut streams = BTreeMap::new();
    streams.insert(
        "secret".to_string(),
        StreamAuth {
            publish_token: Some("key1".into()),
            view_token: Some("view1".into()),
        },
    );
    let s = server(1, streams);
    let with = |path: &str, token: Option<&str>, body: String| {
        let mut r = Request::post(path).header(header::CONTENT_TYPE, "application/sdp");
        if let Some(t) = token {
            r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        r.body(Body::from(body)).unwrap()
    };
    let a = send(&s.app, with("/whip/secret", None, chromium())).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.header("www-authenticate"), Some("Bearer"));
    assert_eq!(
        send(&s.app, with("/whip/secret", Some("nope"), chromium()))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let ok = send(&s.app, with("/whip/secret", Some("key1"), chromium())).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(
        send(&s.app, with("/whep/secret", None, viewer_offer(false)))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let v = send(
        &s.app,
        with("/whep/secret", Some("view1"), viewer_offer(false)),
    )
    .await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    // Two shards of one participant each: full.
    let full = send(
        &s.app,
        with("/whep/secret", Some("view1"), viewer_offer(false)),
    )
    .await;
    assert_eq!(full.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(full.header("retry-after").is_some());
    assert_eq!(
        s.state.participants(),
        2,
        "the refused viewer left nothing behind"
    );
    // The viewer leaves, with its token (RFC 9725 §4.7).
    let d = send(
        &s.app,
        bearer(
            Request::delete(v.header("location").unwrap())
                .body(Body::empty())
                .unwrap(),
            Some("view1"),
        ),
    )
    .await;
    assert_eq!(d.status, StatusCode::OK);
    let again = send(
        &s.app,
        with("/whep/secret", Some("view1"), viewer_offer(false)),
    )
    .await;
    assert_eq!(again.status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_offer_is_answered_as_dtls_client_with_candidates() {
    let s = server(100, BTreeMap::new());
    let offer = offer_of(FFMPEG_FILE);
    let a = send(&s.app, post("/whip/ff", "application/sdp", offer)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert!(a.body.contains("a=setup:active"), "{}", a.body);
    assert!(a.body.contains("a=candidate:"));
    assert!(a.body.contains("H264/90000") && a.body.to_lowercase().contains("opus/48000"));
    assert!(a.body.contains("packetization-mode=1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_restart_keeps_viewers_unless_the_codec_changes() {
    let s = server(100, BTreeMap::new());
    let viewers = |s: &Server| {
        let list = s.app.clone();
        async move {
            let a = send(
                &list,
                Request::get("/api/streams").body(Body::empty()).unwrap(),
            )
            .await;
            a.body
        }
    };
    let p = send(&s.app, post("/whip/r", "application/sdp", chromium())).await;
    assert_eq!(p.status, StatusCode::CREATED);
    let v = send(
        &s.app,
        post("/whep/r", "application/sdp", viewer_offer(false)),
    )
    .await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    // The publisher leaves: the viewer stays, the stream is not live.
    let d = send(
        &s.app,
        Request::delete(p.header("location").unwrap())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(d.status, StatusCode::OK);
    let list = viewers(&s).await;
    assert!(
        list.contains("\"live\":false") && list.contains("\"viewers\":1"),
        "{list}"
    );
    // It comes back with the same codec: the viewer is kept.
    let p = send(&s.app, post("/whip/r", "application/sdp", chromium())).await;
    assert_eq!(p.status, StatusCode::CREATED);
    let list = viewers(&s).await;
    assert!(
        list.contains("\"live\":true") && list.contains("\"viewers\":1"),
        "{list}"
    );
    // It comes back sending H264: the VP8 viewer must renegotiate, its session ends.
    let d = send(
        &s.app,
        Request::delete(p.header("location").unwrap())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(d.status, StatusCode::OK);
    let h264_first = chromium().replace("SAVPF 96 97 102 103", "SAVPF 102 103 96 97");
    let p = send(&s.app, post("/whip/r", "application/sdp", h264_first)).await;
    assert_eq!(p.status, StatusCode::CREATED);
    assert!(
        p.body.contains("H264/90000") && !p.body.contains("VP8/90000"),
        "{}",
        p.body
    );
    let list = viewers(&s).await;
    assert!(list.contains("\"viewers\":0"), "{list}");
    let gone = send(
        &s.app,
        Request::delete(v.header("location").unwrap())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(s.state.participants(), 1);
}

/// The `/api/streams` entry of `name`.
async fn stream_entry(app: &Router, name: &str) -> serde_json::Value {
    let list = send(
        app,
        Request::get("/api/streams").body(Body::empty()).unwrap(),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&list.body).unwrap();
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_join_the_publishers_shard_until_its_affinity_limit() {
    // Two shards; a shard takes three participants for its own streams before they spill.
    let s = server_with(100, 3, false, BTreeMap::new());
    let a = send(&s.app, post("/whip/aff", "application/sdp", chromium())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    for _ in 0..4 {
        let v = send(
            &s.app,
            post("/whep/aff", "application/sdp", viewer_offer(false)),
        )
        .await;
        assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    }
    let entry = stream_entry(&s.app, "aff").await;
    assert_eq!(entry["shard"], 0, "{entry}");
    assert_eq!(
        entry["viewers_per_shard"],
        serde_json::json!([2, 2]),
        "{entry}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_publisher_replaces_the_first_when_configured() {
    let s = server_with(100, 100, true, BTreeMap::new());
    let first = send(&s.app, post("/whip/rep", "application/sdp", chromium())).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let second = send(&s.app, post("/whip/rep", "application/sdp", chromium())).await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    assert_ne!(first.header("location"), second.header("location"));
    // The first session is gone; the second is the stream's publisher.
    let gone = send(
        &s.app,
        Request::delete(first.header("location").unwrap())
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert_eq!(s.state.participants(), 1);
    let entry = stream_entry(&s.app, "rep").await;
    assert_eq!(entry["live"], true, "{entry}");
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

/// `req` with `Authorization: Bearer <token>`, when there is one.
fn bearer(mut req: Request<Body>, token: Option<&str>) -> Request<Body> {
    if let Some(t) = token {
        req.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        );
    }
    req
}

fn protected_stream() -> BTreeMap<String, StreamAuth> {
    BTreeMap::from([(
        "secret".to_string(),
        StreamAuth {
            publish_token: Some("key1".into()),
            view_token: Some("view1".into()),
        },
    )])
}

fn trickle(path: &str, if_match: Option<&str>, frag: &str) -> Request<Body> {
    let mut r =
        Request::patch(path).header(header::CONTENT_TYPE, "application/trickle-ice-sdpfrag");
    if let Some(m) = if_match {
        r = r.header(header::IF_MATCH, m);
    }
    r.body(Body::from(frag.to_string())).unwrap()
}

const FRAG: &str = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijklmn\r\n\
                    a=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n";

/// Issue 9, finding 4: on a protected stream, PATCH (trickle and ICE restart) and DELETE
/// worked without a token. They need the token of the POST that made the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_ice_restart_and_delete_need_the_streams_token() {
    let s = server(100, protected_stream());
    let p = send(
        &s.app,
        bearer(
            post("/whip/secret", "application/sdp", chromium()),
            Some("key1"),
        ),
    )
    .await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let v = send(
        &s.app,
        bearer(
            post("/whep/secret", "application/sdp", viewer_offer(false)),
            Some("view1"),
        ),
    )
    .await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    // Each session with its own token, and the other one's as the wrong one.
    let sessions = [
        (p.header("location").unwrap().to_string(), "key1", "view1"),
        (v.header("location").unwrap().to_string(), "view1", "key1"),
    ];
    for (location, right, wrong) in &sessions {
        for if_match in [None, Some("*")] {
            let what = format!("PATCH {location} If-Match {if_match:?}");
            let a = send(&s.app, trickle(location, if_match, FRAG)).await;
            assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{what}: {}", a.body);
            assert_eq!(a.header("www-authenticate"), Some("Bearer"));
            let a = send(
                &s.app,
                bearer(trickle(location, if_match, FRAG), Some(wrong)),
            )
            .await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{what}: {}", a.body);
            assert!(a.body.contains("wrong token"), "{what}: {}", a.body);
        }
        let a = send(&s.app, bearer(trickle(location, None, FRAG), Some(right))).await;
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
        let a = send(
            &s.app,
            bearer(trickle(location, Some("*"), FRAG), Some(right)),
        )
        .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        assert!(a.body.contains("a=ice-pwd:"), "{}", a.body);
        let delete = || {
            Request::delete(location.as_str())
                .body(Body::empty())
                .unwrap()
        };
        assert_eq!(
            send(&s.app, delete()).await.status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            send(&s.app, bearer(delete(), Some(wrong))).await.status,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(s.state.participants(), 2, "refused DELETEs removed nothing");
    for (location, right, _) in &sessions {
        let delete = Request::delete(location.as_str())
            .body(Body::empty())
            .unwrap();
        let a = send(&s.app, bearer(delete, Some(right))).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    assert_eq!(s.state.participants(), 0);
    // Without the token, whether a session exists is not told either.
    let a = send(
        &s.app,
        Request::delete("/whip/secret/8123456789abcdef")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

/// Issue 9, finding 6: `/api/*` and `/metrics` were open to anyone, with no setting to close
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_token_guards_the_api_and_the_metrics() {
    let s = server_tuned(100, 100, false, BTreeMap::new(), |settings| {
        settings.admin_token = Some("adm1n".into());
    });
    for path in ["/api/streams", "/api/stats", "/metrics"] {
        let a = send(&s.app, get(path)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}: {}", a.body);
        assert_eq!(a.header("www-authenticate"), Some("Bearer"));
        assert!(
            a.body.contains("the admin API needs a Bearer token"),
            "{}",
            a.body
        );
        let a = send(&s.app, bearer(get(path), Some("adm1"))).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{path}: {}", a.body);
        let a = send(&s.app, bearer(get(path), Some("adm1n"))).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    }
    let lower = Request::get("/api/streams")
        .header(header::AUTHORIZATION, "bearer adm1n")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        send(&s.app, lower).await.status,
        StatusCode::OK,
        "the scheme is case-insensitive"
    );
    // Nothing else needs it.
    for path in ["/healthz", "/", "/watch/x", "/whip/x"] {
        let a = send(&s.app, get(path)).await;
        assert!(a.status.is_success(), "{path}: {}", a.status);
    }
    let a = send(&s.app, post("/whip/open", "application/sdp", chromium())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // An unknown path is a 404, not a 401.
    assert_eq!(
        send(&s.app, get("/api/nothing")).await.status,
        StatusCode::NOT_FOUND
    );
}

/// Issue 9, finding 6: `Access-Control-Allow-Origin: *` was on every answer, so any page could
/// read the admin API. Only the WHIP/WHEP endpoints and sessions carry CORS headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_only_on_whip_and_whep() {
    let s = server(100, BTreeMap::new());
    let from_elsewhere = |method: &str, path: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("origin", "http://example.invalid")
            .header("access-control-request-method", "GET")
            .body(Body::empty())
            .unwrap()
    };
    for path in ["/api/stats", "/api/streams", "/metrics", "/healthz", "/"] {
        let a = send(&s.app, from_elsewhere("GET", path)).await;
        assert_eq!(a.status, StatusCode::OK, "{path}");
        assert_eq!(a.header("access-control-allow-origin"), None, "GET {path}");
        let a = send(&s.app, from_elsewhere("OPTIONS", path)).await;
        assert_eq!(
            a.header("access-control-allow-origin"),
            None,
            "OPTIONS {path}"
        );
    }
    let p = send(&s.app, post("/whip/c", "application/sdp", chromium())).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    for path in ["/whip/x", "/whep/x", p.header("location").unwrap()] {
        let a = send(&s.app, from_elsewhere("OPTIONS", path)).await;
        assert!(a.status.is_success(), "OPTIONS {path}: {}", a.status);
        assert_eq!(
            a.header("access-control-allow-origin"),
            Some("*"),
            "OPTIONS {path}"
        );
    }
}

/// `admin_listen`: the public listener serves no admin route, the admin one nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_and_admin_apps_split_the_routes() {
    let s = server(100, BTreeMap::new());
    let public = ringcast_http::public_app(s.state.clone())
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1000))));
    let admin = ringcast_http::admin_app(s.state.clone());
    for path in ["/api/streams", "/api/stats", "/metrics"] {
        assert_eq!(
            send(&public, get(path)).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
        assert_eq!(
            send(&admin, get(path)).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    for path in [
        "/healthz",
        "/",
        "/publish/x",
        "/room/x",
        "/ice",
        "/page.js",
        "/whip/x",
    ] {
        assert!(send(&public, get(path)).await.status.is_success(), "{path}");
        assert_eq!(
            send(&admin, get(path)).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let a = send(&public, post("/whip/split", "application/sdp", chromium())).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

/// Issue 9, finding 5: a 65 KB offer of 617 audio sections was accepted and answered with
/// 321 KB. Offers and fragments over a limit get a 400 naming it, and leave nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_and_fragments_over_a_limit_are_refused() {
    let s = server(100, BTreeMap::new());
    let head = offer_of(CHROMIUM_FILE);
    let head = &head[..head.find("m=audio").unwrap()];
    let mut big = head.replace("a=group:BUNDLE 0 1\r\n", "");
    for i in 0..617 {
        big.push_str(&format!(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:{i}\r\n\
             a=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
        ));
    }
    assert!(big.len() > 60_000 && big.len() < 65_536, "{}", big.len());
    let a = send(&s.app, post("/whip/big", "application/sdp", big)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("more than 40 media sections"), "{}", a.body);
    let pwd = chromium().replace("a=ice-pwd:KdyA3BSWPORo2Z58uviIWq9T", "a=ice-pwd:short");
    let a = send(&s.app, post("/whip/pwd", "application/sdp", pwd)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("a=ice-pwd of 5 characters"), "{}", a.body);
    assert_eq!(s.state.participants(), 0, "nothing leaked");

    let p = send(&s.app, post("/whip/frag", "application/sdp", chromium())).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let location = p.header("location").unwrap();
    let short_pwd = "a=ice-ufrag:abcd\r\na=ice-pwd:tooshort\r\n";
    let a = send(&s.app, trickle(location, None, short_pwd)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("a=ice-pwd of 8 characters"), "{}", a.body);
    let many: String = (0..300)
        .map(|i| {
            format!(
                "a=candidate:{i} 1 udp 1 192.0.2.1 {} typ host\r\n",
                1000 + i
            )
        })
        .collect();
    let a = send(
        &s.app,
        trickle(location, Some("*"), &(FRAG.to_string() + &many)),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);
    assert!(a.body.contains("a=candidate lines"), "{}", a.body);
}

/// A request refused by an admission limit: its status, `Retry-After` and one-line reason,
/// and no peer built, nothing held.
async fn refused(s: &Server, app: &Router, req: Request<Body>, status: StatusCode) -> Answer {
    let (builds, participants) = (s.state.peer_builds(), s.state.participants());
    let a = send(app, req).await;
    assert_eq!(a.status, status, "{}", a.body);
    assert!(a.header("retry-after").is_some(), "{}", a.body);
    assert!(!a.body.trim().contains('\n'), "one line: {:?}", a.body);
    assert_eq!(
        s.state.peer_builds(),
        builds,
        "no Rtc built for a refused request"
    );
    assert_eq!(s.state.participants(), participants, "nothing reserved");
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_fill_the_server() {
    let s = server_limited(
        100,
        100,
        false,
        BTreeMap::new(),
        AdmissionLimits {
            sessions_per_client: 2,
            // Three at once, then one per 100 s: no test runs long enough to earn one.
            creation_rate: Some(Rate {
                per_second: 0.01,
                burst: 3,
            }),
            viewers_per_stream: 3,
            ..AdmissionLimits::NONE
        },
        Vec::new(),
    );
    let a = app_from(&s.state, ([198, 51, 100, 1], 1000));
    let p = send(&a, post("/whip/a", "application/sdp", chromium())).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let v = send(&a, post("/whep/a", "application/sdp", viewer_offer(false))).await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    assert_eq!(s.state.peer_builds(), 2);

    // Sessions per client: 429.
    let r = refused(
        &s,
        &a,
        post("/whep/a", "application/sdp", viewer_offer(false)),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert!(r.body.contains("limit of 2 sessions"), "{}", r.body);
    // Another port of the same address is the same client.
    let a2 = app_from(&s.state, ([198, 51, 100, 1], 2000));
    refused(
        &s,
        &a2,
        post("/whep/a", "application/sdp", viewer_offer(false)),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;

    // Creations per client: its third and last token, then 429 with the wait.
    let gone = |loc: &str| Request::delete(loc).body(Body::empty()).unwrap();
    assert_eq!(
        send(&a, gone(v.header("location").unwrap())).await.status,
        StatusCode::OK
    );
    let v = send(&a, post("/whep/a", "application/sdp", viewer_offer(false))).await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    assert_eq!(
        send(&a, gone(v.header("location").unwrap())).await.status,
        StatusCode::OK
    );
    let r = refused(
        &s,
        &a,
        post("/whep/a", "application/sdp", viewer_offer(false)),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    let wait: u32 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=100).contains(&wait), "{wait}");
    assert!(r.body.contains("too many new sessions"), "{}", r.body);

    // Viewers per stream: 503, whoever asks.
    for n in 2..=4 {
        let other = app_from(&s.state, ([198, 51, 100, n], 1000));
        let v = send(
            &other,
            post("/whep/a", "application/sdp", viewer_offer(false)),
        )
        .await;
        assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    }
    let other = app_from(&s.state, ([198, 51, 100, 5], 1000));
    let r = refused(
        &s,
        &other,
        post("/whep/a", "application/sdp", viewer_offer(false)),
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(r.body.contains("limit of 3 viewers"), "{}", r.body);
    // Another stream is open to that client.
    let q = send(&other, post("/whip/b", "application/sdp", chromium())).await;
    assert_eq!(q.status, StatusCode::CREATED, "{}", q.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconnected_sessions_are_bounded_and_token_holders_keep_a_share() {
    let mut streams = BTreeMap::new();
    streams.insert(
        "paid".to_string(),
        StreamAuth {
            publish_token: Some("key".into()),
            view_token: None,
        },
    );
    // Two unconnected sessions at most, the second only for token holders. Nothing connects
    // here (no client answers), so every session stays unconnected.
    let s = server_limited(
        100,
        100,
        false,
        streams,
        AdmissionLimits {
            pending_sessions: 2,
            token_reserve: 1,
            ..AdmissionLimits::NONE
        },
        Vec::new(),
    );
    let flood = send(&s.app, post("/whip/open", "application/sdp", chromium())).await;
    assert_eq!(flood.status, StatusCode::CREATED, "{}", flood.body);
    let other = app_from(&s.state, ([198, 51, 100, 7], 1000));
    let r = refused(
        &s,
        &other,
        post("/whip/open2", "application/sdp", chromium()),
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(r.body.contains("still connecting"), "{}", r.body);
    assert_eq!(r.header("retry-after"), Some("2"));
    let paid = send(
        &other,
        Request::post("/whip/paid")
            .header(header::CONTENT_TYPE, "application/sdp")
            .header(header::AUTHORIZATION, "Bearer key")
            .body(Body::from(chromium()))
            .unwrap(),
    )
    .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{}", paid.body);
    // The unconnected sessions leave (each with its stream's token, if any): their slots are
    // free again.
    for (a, token) in [(&flood, None), (&paid, Some("key"))] {
        let d = send(
            &s.app,
            bearer(
                Request::delete(a.header("location").unwrap())
                    .body(Body::empty())
                    .unwrap(),
                token,
            ),
        )
        .await;
        assert_eq!(d.status, StatusCode::OK);
    }
    let again = send(&other, post("/whip/open2", "application/sdp", chromium())).await;
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_trusted_proxy_the_forwarded_address_is_the_client() {
    let s = server_limited(
        100,
        100,
        false,
        BTreeMap::new(),
        AdmissionLimits {
            sessions_per_client: 1,
            ..AdmissionLimits::NONE
        },
        vec!["127.0.0.1".parse().unwrap()],
    );
    let forwarded = |path: &str, xff: &str| {
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/sdp")
            .header("x-forwarded-for", xff)
            .body(Body::from(chromium()))
            .unwrap()
    };
    let proxy = app_from(&s.state, ([127, 0, 0, 1], 5000));
    let a = send(&proxy, forwarded("/whip/p1", "198.51.100.1")).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    refused(
        &s,
        &proxy,
        forwarded("/whip/p2", "10.9.9.9, 198.51.100.1"),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    let b = send(&proxy, forwarded("/whip/p2", "198.51.100.1, 198.51.100.2")).await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.body);
    // Anyone else's X-Forwarded-For is not believed: it is counted as itself.
    let direct = app_from(&s.state, ([203, 0, 113, 5], 5000));
    let c = send(&direct, forwarded("/whip/p3", "198.51.100.3")).await;
    assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    refused(
        &s,
        &direct,
        forwarded("/whip/p4", "198.51.100.4"),
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
}

/// Every refusal the hostile-client limits make is counted by reason in `/api/stats`
/// (`"refused": {...}`) and `/metrics` (`ringcast_refused_<reason>_total`): before, an operator
/// saw none of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_in_api_stats_and_metrics() {
    let s = server_limited(
        100,
        100,
        false,
        protected_stream(),
        AdmissionLimits {
            sessions_per_client: 1,
            ..AdmissionLimits::NONE
        },
        Vec::new(),
    );
    let p = send(&s.app, post("/whip/a", "application/sdp", chromium())).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    let v = send(
        &s.app,
        post("/whep/a", "application/sdp", viewer_offer(false)),
    )
    .await;
    assert_eq!(v.status, StatusCode::TOO_MANY_REQUESTS, "{}", v.body);
    let t = send(&s.app, post("/whip/secret", "application/sdp", chromium())).await;
    assert_eq!(t.status, StatusCode::UNAUTHORIZED, "{}", t.body);
    for _ in 0..2 {
        let t = send(
            &s.app,
            bearer(
                post("/whip/secret", "application/sdp", chromium()),
                Some("nope"),
            ),
        )
        .await;
        assert_eq!(t.status, StatusCode::FORBIDDEN, "{}", t.body);
    }
    let pwd = chromium().replace("a=ice-pwd:KdyA3BSWPORo2Z58uviIWq9T", "a=ice-pwd:short");
    let b = send(&s.app, post("/whip/pwd", "application/sdp", pwd)).await;
    assert_eq!(b.status, StatusCode::BAD_REQUEST, "{}", b.body);

    let stats = send(&s.app, get("/api/stats")).await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    let stats: serde_json::Value = serde_json::from_str(&stats.body).unwrap();
    let refused = &stats["refused"];
    assert_eq!(refused["client_sessions"], 1, "{stats}");
    assert_eq!(refused["token_missing"], 1, "{stats}");
    assert_eq!(refused["token_wrong"], 2, "{stats}");
    assert_eq!(refused["sdp_limits"], 1, "{stats}");
    assert_eq!(refused["full"], 0, "{stats}");
    assert_eq!(refused["connections"], 0, "{stats}");

    let metrics = send(&s.app, get("/metrics")).await;
    for line in [
        "# TYPE ringcast_refused_client_sessions_total counter",
        "ringcast_refused_client_sessions_total 1",
        "ringcast_refused_token_missing_total 1",
        "ringcast_refused_token_wrong_total 2",
        "ringcast_refused_sdp_limits_total 1",
        "ringcast_refused_body_too_large_total 0",
        "ringcast_refused_connections_per_client_total 0",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "{line:?} in\n{}",
            metrics.body
        );
    }
}

/// A JWT with `claims`, signed with `secret` (HS256).
fn jwt(secret: &str, claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Issue 11 (auth): with `rooms.jwt_secret` set, WHIP/WHEP need a Bearer token, the stream's
/// static one or a JWT for the stream that grants what the request does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_tokens_open_streams_to_their_holders() {
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    let s = server_tuned(100, 100, false, protected_stream(), |s| {
        s.jwt_secret = Some(SECRET.into());
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |claims: serde_json::Value| jwt(SECRET, claims);
    let publish = token(serde_json::json!({"stream": "free", "publish": true, "exp": now + 600}));
    let whip = |t: Option<&str>| bearer(post("/whip/free", "application/sdp", chromium()), t);
    // A stream without a static token is closed too once the secret is set.
    let a = send(&s.app, whip(None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    for (t, status, reason) in [
        (
            token(serde_json::json!({"stream": "free", "subscribe": true, "exp": now + 600})),
            StatusCode::FORBIDDEN,
            "does not grant `publish`",
        ),
        (
            token(serde_json::json!({"stream": "other", "publish": true, "exp": now + 600})),
            StatusCode::FORBIDDEN,
            "another stream",
        ),
        (
            token(serde_json::json!({"stream": "free", "publish": true, "exp": now - 3600})),
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
        (
            jwt(
                "another secret, just as long as the first",
                serde_json::json!({"stream": "free", "publish": true, "exp": now + 600}),
            ),
            StatusCode::UNAUTHORIZED,
            "bad signature",
        ),
        ("key1".to_string(), StatusCode::FORBIDDEN, "wrong token"),
    ] {
        let a = send(&s.app, whip(Some(&t))).await;
        assert_eq!(a.status, status, "{reason}: {}", a.body);
        assert!(a.body.contains(reason), "{reason}: {}", a.body);
    }
    let p = send(&s.app, whip(Some(&publish))).await;
    assert_eq!(p.status, StatusCode::CREATED, "{}", p.body);
    // A viewer with a `subscribe` token plays; the publisher's token does not.
    let subscribe =
        token(serde_json::json!({"stream": "free", "subscribe": true, "exp": now + 600}));
    let whep = |t: &str| {
        bearer(
            post("/whep/free", "application/sdp", viewer_offer(false)),
            Some(t),
        )
    };
    assert_eq!(
        send(&s.app, whep(&publish)).await.status,
        StatusCode::FORBIDDEN
    );
    let v = send(&s.app, whep(&subscribe)).await;
    assert_eq!(v.status, StatusCode::CREATED, "{}", v.body);
    // The static token of a protected stream still works beside the tokens.
    let st = send(
        &s.app,
        bearer(
            post("/whip/secret", "application/sdp", chromium()),
            Some("key1"),
        ),
    )
    .await;
    assert_eq!(st.status, StatusCode::CREATED, "{}", st.body);
    // The session's DELETE needs the token too.
    let location = p.header("location").unwrap().to_string();
    let del = |t: Option<&str>| bearer(Request::delete(&location).body(Body::empty()).unwrap(), t);
    assert_eq!(
        send(&s.app, del(None)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        send(&s.app, del(Some(&publish))).await.status,
        StatusCode::OK
    );
}

/// A room member's offer (str0m as the browser): audio and video sent, `video` and `audio`
/// receive-only slots, the `ringcast` data channel.
fn member_offer(h264: bool, video: usize, audio: usize) -> String {
    let mut cfg = str0m::RtcConfig::new()
        .clear_codecs()
        .enable_opus(true, false);
    cfg = if h264 {
        cfg.enable_h264(true)
    } else {
        cfg.enable_vp8(true)
    };
    let mut rtc = cfg.build(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    for _ in 0..video {
        api.add_media(MediaKind::Video, Direction::RecvOnly, None, None, None);
    }
    for _ in 0..audio {
        api.add_media(MediaKind::Audio, Direction::RecvOnly, None, None, None);
    }
    api.add_channel("ringcast".into());
    let (offer, _) = api.apply().unwrap();
    offer.to_sdp_string()
}

async fn json_of(app: &Router, path: &str) -> serde_json::Value {
    let a = send(app, get(path)).await;
    assert_eq!(a.status, StatusCode::OK, "{path}: {}", a.body);
    serde_json::from_str(&a.body).unwrap()
}

/// Issue 11: members join a room with one offer, get a session resource and a participant id,
/// and the admin API shows them with what each slot carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_take_members_and_show_their_slots() {
    let s = server(100, BTreeMap::new());
    let join = |name: &str| {
        post(
            &format!("/rooms/demo?name={name}"),
            "application/sdp",
            member_offer(false, 3, 2),
        )
    };
    let ada = send(&s.app, join("Ada")).await;
    assert_eq!(ada.status, StatusCode::CREATED, "{}", ada.body);
    let ada_at = ada.header("location").unwrap().to_string();
    assert!(ada_at.starts_with("/rooms/demo/"), "{ada_at}");
    assert!(ada.body.contains("m=application"), "{}", ada.body);
    let ada_id = ada.header("x-ringcast-participant").unwrap().to_string();
    let bob = send(&s.app, join("Bob")).await;
    assert_eq!(bob.status, StatusCode::CREATED, "{}", bob.body);
    let bob_id = bob.header("x-ringcast-participant").unwrap().to_string();
    assert_ne!(ada_id, bob_id);

    let rooms = json_of(&s.app, "/api/rooms").await;
    assert_eq!(rooms["rooms"][0]["room"], "demo");
    assert_eq!(rooms["rooms"][0]["participants"], 2);
    let room = json_of(&s.app, "/api/rooms/demo").await;
    let members = room["participants"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(members[0]["name"], "Ada");
    assert_eq!(members[0]["id"], ada_id.as_str());
    // Each member's first video and first audio slot carry the other; nobody gets itself.
    for (m, other) in [(&members[0], &bob_id), (&members[1], &ada_id)] {
        let slots = m["slots"].as_array().unwrap();
        assert_eq!(slots.len(), 5);
        let shown: Vec<&str> = slots
            .iter()
            .filter_map(|s| s["participant"].as_str())
            .collect();
        assert_eq!(shown, [other.as_str(), other.as_str()], "{m}");
    }
    let unknown = send(&s.app, get("/api/rooms/nowhere")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // Bad offers: too many slots, a codec that is not the room's.
    let many = send(
        &s.app,
        post("/rooms/demo", "application/sdp", member_offer(false, 17, 1)),
    )
    .await;
    assert_eq!(
        many.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        many.body
    );
    assert!(many.body.contains("at most 16"), "{}", many.body);
    let h264 = send(
        &s.app,
        post("/rooms/demo", "application/sdp", member_offer(true, 1, 1)),
    )
    .await;
    assert_eq!(
        h264.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        h264.body
    );
    let bad_name = send(
        &s.app,
        post("/rooms/a%20b", "application/sdp", member_offer(false, 1, 1)),
    )
    .await;
    assert_eq!(
        bad_name.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_name.body
    );

    // The admin removes Bob; Ada leaves with DELETE on her Location; the room is gone.
    let removed = send(
        &s.app,
        Request::delete(format!("/api/rooms/demo/{bob_id}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{}", removed.body);
    let room = json_of(&s.app, "/api/rooms/demo").await;
    assert_eq!(room["participants"].as_array().unwrap().len(), 1);
    let left = send(
        &s.app,
        Request::delete(&ada_at).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(left.status, StatusCode::OK, "{}", left.body);
    let rooms = json_of(&s.app, "/api/rooms").await;
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 0, "{rooms}");
}

/// Issue 11 (auth): with `rooms.jwt_secret` set, joining a room needs a JWT for the room that
/// grants what the offer does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_tokens_name_the_room_and_grant_publish_and_subscribe() {
    const SECRET: &str = "0123456789abcdef0123456789abcdef";
    let s = server_tuned(100, 100, false, BTreeMap::new(), |s| {
        s.jwt_secret = Some(SECRET.into());
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = |claims: serde_json::Value| jwt(SECRET, claims);
    let join = |t: Option<&str>| {
        bearer(
            post("/rooms/call", "application/sdp", member_offer(false, 2, 1)),
            t,
        )
    };
    let a = send(&s.app, join(None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    for (t, status, reason) in [
        (
            token(
                serde_json::json!({"room": "other", "publish": true, "subscribe": true, "exp": now + 600}),
            ),
            StatusCode::FORBIDDEN,
            "another room",
        ),
        (
            token(serde_json::json!({"room": "call", "subscribe": true, "exp": now + 600})),
            StatusCode::FORBIDDEN,
            "does not grant `publish`",
        ),
        (
            token(serde_json::json!({"room": "call", "publish": true, "exp": now + 600})),
            StatusCode::FORBIDDEN,
            "does not grant `subscribe`",
        ),
        (
            token(
                serde_json::json!({"room": "call", "publish": true, "subscribe": true, "exp": now - 3600}),
            ),
            StatusCode::UNAUTHORIZED,
            "expired",
        ),
    ] {
        let a = send(&s.app, join(Some(&t))).await;
        assert_eq!(a.status, status, "{reason}: {}", a.body);
        assert!(a.body.contains(reason), "{reason}: {}", a.body);
    }
    let good = token(serde_json::json!({
        "room": "call", "sub": "u-17", "name": "Grace", "publish": true, "subscribe": true, "exp": now + 600
    }));
    let a = send(&s.app, join(Some(&good))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let room = json_of(&s.app, "/api/rooms/call").await;
    assert_eq!(room["participants"][0]["name"], "Grace");
    // The session's DELETE needs the token too.
    let at = a.header("location").unwrap().to_string();
    let d = send(&s.app, Request::delete(&at).body(Body::empty()).unwrap()).await;
    assert_eq!(d.status, StatusCode::UNAUTHORIZED, "{}", d.body);
    let d = send(
        &s.app,
        bearer(
            Request::delete(&at).body(Body::empty()).unwrap(),
            Some(&good),
        ),
    )
    .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
}

/// Issue 11: a room bigger than its shard spreads; members on different shards see and hear
/// each other (each shard knows every member and relays its members' streams to the others).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_bigger_than_its_shard_spreads_and_its_members_still_see_each_other() {
    // Two shards of two seats each.
    let s = server(2, BTreeMap::new());
    let mut ids = Vec::new();
    let mut locations = Vec::new();
    for name in ["a", "b", "c"] {
        let a = send(
            &s.app,
            post(
                &format!("/rooms/big?name={name}"),
                "application/sdp",
                member_offer(false, 3, 2),
            ),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        ids.push(a.header("x-ringcast-participant").unwrap().to_string());
        locations.push(a.header("location").unwrap().to_string());
    }
    let stats = json_of(&s.app, "/api/stats").await;
    let placed: Vec<u64> = stats["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["participants"].as_u64().unwrap())
        .collect();
    assert_eq!(placed, [2, 1], "{stats}");
    let room = json_of(&s.app, "/api/rooms/big").await;
    let members = room["participants"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{room}");
    for m in members {
        let me = m["id"].as_str().unwrap();
        let mut video: Vec<&str> = m["slots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["kind"] == "video")
            .filter_map(|s| s["participant"].as_str())
            .collect();
        video.sort();
        let mut others: Vec<&str> = ids
            .iter()
            .map(String::as_str)
            .filter(|i| *i != me)
            .collect();
        others.sort();
        assert_eq!(video, others, "{m}");
    }
    // The one on the second shard leaves: the others' slots no longer show it.
    let gone = &ids[2];
    let d = send(
        &s.app,
        Request::delete(&locations[2]).body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    let room = json_of(&s.app, "/api/rooms/big").await;
    let members = room["participants"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{room}");
    for m in members {
        assert!(
            !m.to_string()
                .contains(&format!("\"participant\":\"{gone}\"")),
            "{m}"
        );
    }
    for at in &locations[..2] {
        let d = send(&s.app, Request::delete(at).body(Body::empty()).unwrap()).await;
        assert_eq!(d.status, StatusCode::OK, "{}", d.body);
    }
    let rooms = json_of(&s.app, "/api/rooms").await;
    assert_eq!(rooms["rooms"].as_array().unwrap().len(), 0, "{rooms}");
}

/// Issue 11 (auth, per room): a room with its own secret needs a JWT signed with it, even when
/// `jwt_secret` is empty; other rooms stay open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_with_its_own_secret_needs_its_token() {
    const VIP: &str = "vip-secret-vip-secret-vip-secret-0";
    let s = server_tuned(100, 100, false, BTreeMap::new(), |s| {
        s.room_secrets = BTreeMap::from([("vip".to_string(), VIP.to_string())]);
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims =
        serde_json::json!({"room": "vip", "publish": true, "subscribe": true, "exp": now + 600});
    let join = |room: &str, t: Option<&str>| {
        bearer(
            post(
                &format!("/rooms/{room}"),
                "application/sdp",
                member_offer(false, 1, 1),
            ),
            t,
        )
    };
    let a = send(&s.app, join("vip", None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let other_key = jwt("some-other-secret-some-other-secret", claims.clone());
    let a = send(&s.app, join("vip", Some(&other_key))).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let a = send(&s.app, join("vip", Some(&jwt(VIP, claims)))).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a = send(&s.app, join("lobby", None)).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
}

/// A TURN server whose credentials ringcast mints from coturn's `static-auth-secret`.
fn turn_with_secret(secret: &str) -> IceServer {
    IceServer {
        urls: vec![
            "turn:turn.example.invalid:3478?transport=udp".into(),
            "turn:turn.example.invalid:3478?transport=tcp".into(),
        ],
        credentials: IceCredentials::Minted {
            secret: secret.into(),
            ttl: std::time::Duration::from_secs(600),
        },
    }
}

/// Checks minted TURN credentials: `<expiry>:<id>` with the expiry 600 s from now, and the
/// credential base64(HMAC-SHA1(secret, username)) as coturn computes it. Returns the id.
fn check_minted(username: &str, credential: &str, secret: &str) -> String {
    use base64::Engine as _;
    let (expiry, id) = username.split_once(':').unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&expiry),
        "{expiry} vs {now}"
    );
    let key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        secret.as_bytes(),
    );
    let expected = base64::engine::general_purpose::STANDARD
        .encode(aws_lc_rs::hmac::sign(&key, username.as_bytes()));
    assert_eq!(credential, expected, "credential of {username}");
    id.to_owned()
}

/// The `ice-server` links of an answer, as (url, username, credential).
fn ice_links(a: &Answer) -> Vec<(String, Option<String>, Option<String>)> {
    let param = |link: &str, name: &str| {
        let start = link.find(&format!("; {name}=\""))? + name.len() + 4;
        Some(link[start..start + link[start..].find('"')?].to_owned())
    };
    a.headers
        .get_all(header::LINK)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .filter(|l| l.contains("rel=\"ice-server\""))
        .map(|l| {
            let url = l[1..l.find('>').unwrap()].to_owned();
            (url, param(&l, "username"), param(&l, "credential"))
        })
        .collect()
}

/// Issue 12: an `[[ice_servers]]` entry with a `secret` gets TURN REST credentials minted per
/// session in every 201 (WHIP, WHEP, rooms), the first four hex digits of the session (what
/// logs show) as the user part; `GET /api/ice-servers` lists the same servers as
/// `RTCIceServer`s with fresh credentials, on the public surface, with CORS and no caching.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_credentials_are_minted_per_session_and_listed() {
    let secret = "north-wind";
    let s = server_tuned(100, 100, false, BTreeMap::new(), |settings| {
        settings.ice_servers.push(turn_with_secret(secret));
        settings.admin_token = Some("adm1n".into());
    });
    let whip = send(&s.app, post("/whip/turn", "application/sdp", chromium())).await;
    assert_eq!(whip.status, StatusCode::CREATED, "{}", whip.body);
    let whep = send(
        &s.app,
        post("/whep/turn", "application/sdp", viewer_offer(false)),
    )
    .await;
    assert_eq!(whep.status, StatusCode::CREATED, "{}", whep.body);
    let room = send(
        &s.app,
        post("/rooms/turn", "application/sdp", member_offer(false, 1, 1)),
    )
    .await;
    assert_eq!(room.status, StatusCode::CREATED, "{}", room.body);
    for a in [&whip, &whep, &room] {
        let links = ice_links(a);
        assert_eq!(links.len(), 3, "{links:?}");
        // The fixed STUN server first, unchanged.
        assert_eq!(
            links[0],
            ("stun:stun.example.invalid:3478".into(), None, None)
        );
        let session = a.header("location").unwrap().rsplit('/').next().unwrap();
        for (i, (url, username, credential)) in links[1..].iter().enumerate() {
            assert_eq!(url, &turn_with_secret(secret).urls[i]);
            let (username, credential) = (username.as_ref().unwrap(), credential.as_ref().unwrap());
            let id = check_minted(username, credential, secret);
            assert_eq!(id, session[..4], "the session's short id");
        }
        let all: Vec<_> = a.headers.get_all(header::LINK).iter().collect();
        assert!(
            all.iter()
                .filter(|l| l.to_str().unwrap().contains(":3478?transport="))
                .all(|l| l
                    .to_str()
                    .unwrap()
                    .ends_with("credential-type=\"password\"")),
            "{all:?}"
        );
    }

    let list = |origin: Option<&str>| {
        let mut req = get("/api/ice-servers");
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        req
    };
    // No admin token needed: clients call it.
    let a = send(&s.app, list(Some("http://player.example.invalid"))).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("content-type"), Some("application/json"));
    assert_eq!(a.header("access-control-allow-origin"), Some("*"));
    let json: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    let servers = json["iceServers"].as_array().unwrap();
    assert_eq!(servers.len(), 2, "{json}");
    assert_eq!(
        servers[0],
        serde_json::json!({ "urls": ["stun:stun.example.invalid:3478"] })
    );
    assert_eq!(
        servers[1]["urls"],
        serde_json::json!(turn_with_secret(secret).urls)
    );
    let first = check_minted(
        servers[1]["username"].as_str().unwrap(),
        servers[1]["credential"].as_str().unwrap(),
        secret,
    );
    // Each answer its own credentials.
    let again: serde_json::Value =
        serde_json::from_str(&send(&s.app, list(None)).await.body).unwrap();
    let second = check_minted(
        again["iceServers"][1]["username"].as_str().unwrap(),
        again["iceServers"][1]["credential"].as_str().unwrap(),
        secret,
    );
    assert_ne!(first, second);
    // A preflight (a page sending a token) is answered.
    let preflight = Request::builder()
        .method("OPTIONS")
        .uri("/api/ice-servers")
        .header("origin", "http://player.example.invalid")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .body(Body::empty())
        .unwrap();
    let p = send(&s.app, preflight).await;
    assert!(p.status.is_success(), "{}", p.status);
    assert_eq!(p.header("access-control-allow-origin"), Some("*"));
    // On the public listener, not the admin one.
    let public = ringcast_http::public_app(s.state.clone())
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1000))));
    assert_eq!(send(&public, list(None)).await.status, StatusCode::OK);
    let admin = ringcast_http::admin_app(s.state.clone());
    assert_eq!(send(&admin, list(None)).await.status, StatusCode::NOT_FOUND);
    // The secret is nowhere in what a client sees.
    for a in [&whip, &whep, &room, &a] {
        assert!(!format!("{:?}{}", a.headers, a.body).contains(secret));
    }
}

/// Issue 12: with `rooms.jwt_secret` every POST needs a token, and so do the ICE servers: any
/// token that would open some POST (a stream's static token, an unexpired JWT for a stream or
/// a room), and no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_servers_need_a_token_when_every_post_does() {
    let secret = "0123456789abcdef0123456789abcdef";
    let room_secret = "fedcba9876543210fedcba9876543210";
    let s = server_tuned(100, 100, false, protected_stream(), |settings| {
        settings.ice_servers.push(turn_with_secret("north-wind"));
        settings.jwt_secret = Some(secret.into());
        settings.room_secrets = BTreeMap::from([("own".to_string(), room_secret.to_string())]);
    });
    let in_an_hour = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let list = |token: Option<&str>| bearer(get("/api/ice-servers"), token);
    let valid = [
        "key1".to_owned(),
        "view1".to_owned(),
        jwt(
            secret,
            serde_json::json!({"stream": "any", "subscribe": true, "exp": in_an_hour}),
        ),
        jwt(
            secret,
            serde_json::json!({"room": "standup", "exp": in_an_hour}),
        ),
        jwt(
            room_secret,
            serde_json::json!({"room": "own", "exp": in_an_hour}),
        ),
    ];
    for token in &valid {
        let a = send(&s.app, list(Some(token))).await;
        assert_eq!(a.status, StatusCode::OK, "{token}: {}", a.body);
        assert!(a.body.contains("\"username\""), "{}", a.body);
    }
    let a = send(&s.app, list(None)).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    let refused = [
        "nope".to_owned(),
        // Expired.
        jwt(
            secret,
            serde_json::json!({"stream": "any", "subscribe": true, "exp": 1_000_000}),
        ),
        // Grants nothing.
        jwt(
            secret,
            serde_json::json!({"stream": "any", "exp": in_an_hour}),
        ),
        // Signed with another secret.
        jwt(
            "another-secret-another-secret-xx",
            serde_json::json!({"stream": "any", "publish": true, "exp": in_an_hour}),
        ),
        // A room with its own secret takes no token signed with `jwt_secret`.
        jwt(
            secret,
            serde_json::json!({"room": "own", "exp": in_an_hour}),
        ),
    ];
    for token in &refused {
        let a = send(&s.app, list(Some(token))).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{token}: {}", a.body);
        assert!(!a.body.contains("username"), "{}", a.body);
    }
}
