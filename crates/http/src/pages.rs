//! Demo pages (`/`, `/publish/{stream}`, `/watch/{stream}`, `/room/{room}`, the `/ice` check)
//! and the admin API (`/api/*`, `/metrics`), routed apart so the admin API can have its own
//! token and listener.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ringcast_core::{Command, Reply, ShardStats};
use serde_json::{Map, json};

use crate::AppState;

mod counters;

use counters::ShardCounters;

const INDEX: &str = include_str!("../assets/index.html");
const PUBLISH: &str = include_str!("../assets/publish.html");
const WATCH: &str = include_str!("../assets/watch.html");
const ROOM: &str = include_str!("../assets/room.html");
const ICE: &str = include_str!("../assets/ice.html");
/// What the demo pages share (their `Authorization` header, their ICE configuration).
const PAGE_JS: &str = include_str!("../assets/page.js");

/// The demo pages.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/publish/{stream}", get(|| async { Html(PUBLISH) }))
        .route("/watch/{stream}", get(|| async { Html(WATCH) }))
        .route("/room/{room}", get(|| async { Html(ROOM) }))
        .route("/ice", get(|| async { Html(ICE) }))
        .route("/page.js", get(page_js))
}

/// The script the demo pages share.
async fn page_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        PAGE_JS,
    )
}

/// The admin API and the metrics.
pub(crate) fn admin_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/streams", get(streams))
        .route("/api/stats", get(stats))
        .route("/metrics", get(metrics))
}

async fn streams(State(state): State<Arc<AppState>>) -> Response {
    let control = state.control.lock();
    let mut list: Vec<_> = control
        .streams()
        .map(|s| {
            json!({
                "name": s.name,
                "live": s.live,
                "viewers": s.viewers,
                "shard": s.publisher_shard.map(|p| p.0),
                "viewers_per_shard": s.viewers_per_shard,
                "codecs": s.published.map(|p| p.tracks.iter().flatten()
                    .map(|t| t.offered.to_string()).collect::<Vec<_>>()),
            })
        })
        .collect();
    drop(control);
    list.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    axum::Json(json!({ "streams": list })).into_response()
}

/// Every shard's counters: its stats (a command it answers between two loop turns) and the
/// engine counters it last published.
async fn shard_counters(state: &AppState) -> Vec<ShardCounters> {
    let mut out = Vec::with_capacity(state.shards.len());
    for h in &state.shards {
        let stats = match h.call(Command::Stats).await {
            Ok(Reply::Stats(s)) => *s,
            _ => ShardStats::default(),
        };
        out.push(ShardCounters {
            id: h.id().0,
            stats,
            io: h.engine_counters(),
        });
    }
    out
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let snapshot = shard_counters(&state).await;
    let shards: Vec<_> = state
        .shards
        .iter()
        .zip(&snapshot)
        .map(|(h, c)| {
            let entry = Map::from_iter([
                ("id".to_string(), json!(h.id().0)),
                ("socket".to_string(), json!(h.local_addr().to_string())),
                (
                    "candidates".to_string(),
                    json!(
                        state.candidates[usize::from(h.id().0)]
                            .iter()
                            .map(|a| a.to_string())
                            .collect::<Vec<_>>()
                    ),
                ),
                ("relay_drops".to_string(), json!(h.relay_drops())),
            ]);
            counters::shard_json(entry, c)
        })
        .collect();
    let mut body = Map::from_iter([
        ("engine".to_string(), json!(state.engine)),
        ("shards".to_string(), json!(shards)),
    ]);
    counters::insert_json(&mut body, &state.refusals.snapshot());
    axum::Json(body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = counters::metrics_text(shard_counters(&state).await, state.refusals.snapshot());
    (
        [(header::CONTENT_TYPE, counters::METRICS_CONTENT_TYPE)],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_load_the_shared_script_before_their_own() {
        assert!(PAGE_JS.contains("authHeaders(token, extra)"));
        assert!(PAGE_JS.contains("async rtcConfig(token, relay)"));
        for (name, page) in [
            ("publish", PUBLISH),
            ("watch", WATCH),
            ("room", ROOM),
            ("ice", ICE),
        ] {
            let shared = page.find("<script src=\"/page.js\"></script>");
            let own = page.find("<script>\n");
            assert!(
                shared.is_some() && shared < own,
                "{name}.html loads /page.js first"
            );
            assert!(page.contains("RingcastPage."), "{name}.html");
        }
    }
}
