//! Demo pages and the admin API: `/`, `/publish/{stream}`, `/watch/{stream}`, `/api/*`,
//! `/metrics`.

use std::fmt::Write;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use ringcast_core::{Command, Reply, ShardStats};
use ringcast_engine::EngineCounters;
use serde_json::json;

use crate::AppState;

const INDEX: &str = include_str!("../assets/index.html");
const PUBLISH: &str = include_str!("../assets/publish.html");
const WATCH: &str = include_str!("../assets/watch.html");

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route("/publish/{stream}", get(|| async { Html(PUBLISH) }))
        .route("/watch/{stream}", get(|| async { Html(WATCH) }))
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

async fn shard_stats(state: &AppState) -> Vec<ShardStats> {
    let mut out = Vec::with_capacity(state.shards.len());
    for h in &state.shards {
        let s = match h.call(Command::Stats).await {
            Ok(Reply::Stats(s)) => *s,
            _ => ShardStats::default(),
        };
        out.push(s);
    }
    out
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let stats = shard_stats(&state).await;
    let shards: Vec<_> = state
        .shards
        .iter()
        .zip(&stats)
        .map(|(h, s)| {
            let e = h.engine_counters();
            json!({
                "id": h.id().0,
                "socket": h.local_addr().to_string(),
                "candidates": state.candidates[usize::from(h.id().0)].iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "participants": s.participants,
                "publishers": s.publishers,
                "streams": s.streams,
                "rx_datagrams": s.rx_datagrams,
                "tx_datagrams": s.tx_datagrams,
                "rtp_in": s.rtp_in,
                "rtp_forwarded": s.rtp_forwarded,
                "relayed": s.relayed,
                "relay_drops": h.relay_drops(),
                "keyframe_requests": s.keyframe_requests,
                "drops": {
                    "unknown_source": s.drop_unknown_source,
                    "unknown_ufrag": s.drop_unknown_ufrag,
                    "malformed": s.drop_malformed,
                    "rejected": s.drop_rejected,
                    "replayed": s.drop_replayed,
                    "no_route": s.drop_no_route,
                },
                "io": {
                    "rx_datagrams": e.rx_datagrams,
                    "rx_bytes": e.rx_bytes,
                    "tx_datagrams": e.tx_datagrams,
                    "tx_bytes": e.tx_bytes,
                    "tx_gso_sends": e.tx_gso_sends,
                    "rx_gro_receives": e.rx_gro_receives,
                    "syscalls": e.syscalls,
                    "rx_truncated": e.rx_truncated,
                    "rx_no_buffers": e.rx_no_buffers,
                    "tx_errors": e.tx_errors,
                },
            })
        })
        .collect();
    axum::Json(json!({ "engine": state.engine, "shards": shards })).into_response()
}

/// A metric: name, help text, and how to read it from a shard's counters.
type Metric = (&'static str, &'static str, fn(&ShardStats) -> u64);

/// An I/O engine metric: name, help text, and how to read it from the engine's counters.
type IoMetric = (&'static str, &'static str, fn(&EngineCounters) -> u64);

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let stats = shard_stats(&state).await;
    let mut out = String::new();
    let counters: [Metric; 14] = [
        ("participants", "Participants placed on the shard", |s| {
            s.participants
        }),
        ("publishers", "Publishers on the shard", |s| s.publishers),
        ("rx_datagrams_total", "UDP datagrams received", |s| {
            s.rx_datagrams
        }),
        ("tx_datagrams_total", "UDP datagrams sent", |s| {
            s.tx_datagrams
        }),
        (
            "rtp_in_total",
            "RTP packets received from publishers (local or relayed)",
            |s| s.rtp_in,
        ),
        (
            "rtp_forwarded_total",
            "RTP packets forwarded to subscribers",
            |s| s.rtp_forwarded,
        ),
        ("relayed_total", "Messages relayed to other shards", |s| {
            s.relayed
        }),
        (
            "keyframe_requests_total",
            "Keyframe requests sent to publishers",
            |s| s.keyframe_requests,
        ),
        (
            "drop_unknown_source_total",
            "Datagrams dropped: unknown source address",
            |s| s.drop_unknown_source,
        ),
        (
            "drop_unknown_ufrag_total",
            "Datagrams dropped: STUN for no local ufrag",
            |s| s.drop_unknown_ufrag,
        ),
        (
            "drop_malformed_total",
            "Datagrams dropped: malformed",
            |s| s.drop_malformed,
        ),
        (
            "drop_rejected_total",
            "Datagrams dropped: refused by the peer (SRTP, DTLS)",
            |s| s.drop_rejected,
        ),
        (
            "drop_replayed_total",
            "Datagrams dropped: replayed RTP, before decryption",
            |s| s.drop_replayed,
        ),
        (
            "drop_no_route_total",
            "Media dropped: nothing waits for it",
            |s| s.drop_no_route,
        ),
    ];
    for (name, help, get) in counters {
        let typ = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        let _ = writeln!(
            out,
            "# HELP ringcast_{name} {help}\n# TYPE ringcast_{name} {typ}"
        );
        for (i, s) in stats.iter().enumerate() {
            let _ = writeln!(out, "ringcast_{name}{{shard=\"{i}\"}} {}", get(s));
        }
    }
    let io: [IoMetric; 6] = [
        (
            "io_tx_gso_sends_total",
            "Segmented (GSO) sends of several datagrams",
            |e| e.tx_gso_sends,
        ),
        (
            "io_syscalls_total",
            "Receive/send system calls (io_uring_enter for uring)",
            |e| e.syscalls,
        ),
        (
            "io_rx_truncated_total",
            "Datagrams dropped: larger than a receive buffer",
            |e| e.rx_truncated,
        ),
        (
            "io_rx_no_buffers_total",
            "Times the receive buffers ran out (recovered)",
            |e| e.rx_no_buffers,
        ),
        (
            "io_tx_errors_total",
            "Datagrams dropped: the send failed",
            |e| e.tx_errors,
        ),
        (
            "io_rx_gro_receives_total",
            "Coalesced (GRO) receives of several datagrams",
            |e| e.rx_gro_receives,
        ),
    ];
    for (name, help, get) in io {
        let _ = writeln!(
            out,
            "# HELP ringcast_{name} {help}\n# TYPE ringcast_{name} counter"
        );
        for h in state.shards.iter() {
            let _ = writeln!(
                out,
                "ringcast_{name}{{shard=\"{}\"}} {}",
                h.id().0,
                get(&h.engine_counters())
            );
        }
    }
    let mut res = out.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    res
}
