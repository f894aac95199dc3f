//! The control plane: WHIP (RFC 9725) and WHEP endpoints, the admin API, Prometheus metrics and
//! the demo pages, as one axum [`Router`] built by [`app`].
//!
//! It validates requests, places participants on shards, builds each participant's str0m `Rtc`
//! on a blocking thread (about 1 ms of CPU, never on a shard thread), hands it to the owning
//! shard with a [`Command`] and awaits the reply. It never touches a shard's state.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod pages;
mod registry;
mod whip;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use parking_lot::Mutex;
use ringcast_core::DtlsCert;
use ringcast_core::{ShardEvent, ShardId};
use ringcast_engine::ShardHandle;
use tokio::sync::mpsc;

pub use error::ApiError;
pub use registry::Registry;

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `Access-Control-Allow-Origin`.
    pub cors_origin: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `Retry-After` on a WHEP 409 (no publisher yet).
    pub whep_retry_after: u32,
    /// Most participants per shard.
    pub max_participants_per_shard: usize,
    /// `Link` header values for ICE servers (`<url>; rel="ice-server"; ...`).
    pub ice_links: Vec<String>,
    /// Per-stream tokens.
    pub streams: BTreeMap<String, StreamAuth>,
}

/// Tokens of one stream.
#[derive(Debug, Clone, Default)]
pub struct StreamAuth {
    /// Required to publish.
    pub publish_token: Option<String>,
    /// Required to play.
    pub view_token: Option<String>,
}

/// Everything the handlers share.
pub struct AppState {
    settings: HttpSettings,
    shards: Vec<ShardHandle>,
    /// Advertised candidate addresses per shard.
    candidates: Vec<Vec<SocketAddr>>,
    cert: DtlsCert,
    engine: &'static str,
    registry: Mutex<Registry>,
    /// Bounds concurrent `Rtc` builds.
    builds: tokio::sync::Semaphore,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for `shards`, each advertising `candidates[i]`.
    pub fn new(
        settings: HttpSettings,
        shards: Vec<ShardHandle>,
        candidates: Vec<Vec<SocketAddr>>,
        cert: DtlsCert,
        engine: &'static str,
    ) -> Arc<AppState> {
        let n = shards.len();
        Arc::new(AppState {
            settings,
            shards,
            candidates,
            cert,
            engine,
            registry: Mutex::new(Registry::new(n)),
            builds: tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(2, |c| c.get()),
            ),
        })
    }
}

impl AppState {
    /// Participants placed or being placed, all shards together.
    pub fn participants(&self) -> usize {
        self.registry.lock().load().iter().sum()
    }
}

/// The whole HTTP surface.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(whip::routes())
        .merge(pages::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(whip::cors(&state.settings.cors_origin))
        .layer(axum::middleware::from_fn(whip::options_headers))
        .with_state(state)
}

/// Keep the registry in step with sessions that end on the shards' side (consent or DTLS
/// timeout): run this for the life of the server.
pub async fn follow_shard_events(
    state: Arc<AppState>,
    mut events: mpsc::UnboundedReceiver<(ShardId, ShardEvent)>,
) {
    while let Some((shard, event)) = events.recv().await {
        match event {
            ShardEvent::SessionClosed { session } => {
                tracing::info!(%session, shard = shard.0, "session ended (timeout or close)");
                whip::session_ended(&state, session).await;
            }
            ShardEvent::SessionConnected { session } => {
                tracing::debug!(%session, shard = shard.0, "session connected");
            }
        }
    }
}
