//! The control plane: WHIP (RFC 9725) and WHEP endpoints, the admin API, Prometheus metrics and
//! the demo pages, as one axum [`Router`] built by [`app`], or as two ([`public_app`] and
//! [`admin_app`]) for an admin surface on its own listener.
//!
//! It validates requests, places participants on shards, builds each participant's str0m `Rtc`
//! on a blocking thread (about 1 ms of CPU, never on a shard thread), hands it to the owning
//! shard with a [`Command`] and awaits the reply. It never touches a shard's state.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod client;
mod error;
mod events;
mod ice_servers;
mod jwt;
mod layers;
mod pages;
mod refusals;
mod rooms;
mod whip;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::routing::get;
use parking_lot::Mutex;
use ringcast_core::control::{AdmissionLimits, ControlConfig, Limits};
use ringcast_core::{Control, DtlsCert, ShardEvent, ShardId};
use ringcast_engine::ShardHandle;
use tokio::sync::mpsc;

pub use error::ApiError;
pub use ice_servers::{IceCredentials, IceServer};
pub use refusals::{RefusalCounters, Refusals};

/// Settings of the control plane.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `Access-Control-Allow-Origin`.
    pub cors_origin: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// `Retry-After` on a WHEP 409 (no publisher yet).
    pub whep_retry_after: u32,
    /// Placement limits per shard (affinity and maximum).
    pub limits: Limits,
    /// A WHIP POST for a live stream replaces its publisher instead of getting 409.
    pub replace_publisher: bool,
    /// STUN/TURN servers announced in each 201's `Link` headers and by `GET /api/ice-servers`.
    pub ice_servers: Vec<IceServer>,
    /// Per-stream tokens.
    pub streams: BTreeMap<String, StreamAuth>,
    /// Bearer token required on the admin routes (`/api/*`, `/metrics`); `None` = open.
    pub admin_token: Option<String>,
    /// The HS256 secret of access tokens (`rooms.jwt_secret`): when set, every WHIP/WHEP
    /// request needs a Bearer token, the stream's static one or a JWT for the stream.
    pub jwt_secret: Option<String>,
    /// Limits on new sessions, per client and in total (`[limits]`).
    pub admission: AdmissionLimits,
    /// Reverse proxies whose `X-Forwarded-For` names the client (its rightmost address).
    pub trusted_proxies: Vec<IpAddr>,
    /// Rooms with their own HS256 secret (`rooms.secrets`), used instead of `jwt_secret` for
    /// them: such a room needs a token even without `jwt_secret`.
    pub room_secrets: BTreeMap<String, String>,
    /// Most slots (`recvonly` sections) of each kind in a room member's offer.
    pub max_slots: usize,
    /// Most members of one room.
    pub max_room_members: u32,
}

/// Tokens of one stream.
#[derive(Clone, Default)]
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
    /// The control plane's state: the only state shared between requests, locked only for
    /// its calls (never across an await, never by the data path).
    control: Mutex<Control>,
    /// Bounds concurrent `Rtc` builds.
    builds: tokio::sync::Semaphore,
    /// `Rtc` builds started.
    peer_builds: AtomicU64,
    /// Refusals by reason, counted by the handlers and the HTTP server.
    refusals: Arc<Refusals>,
    /// The WHEP server-sent event streams and their pollers.
    events: events::Events,
    /// The key of access tokens, when `jwt_secret` is set.
    tokens: Option<jwt::TokenKey>,
    /// The keys of rooms with their own secret.
    room_tokens: BTreeMap<String, jwt::TokenKey>,
    /// The ICE servers, ready to announce.
    ice_servers: ice_servers::Announcement,
}

impl std::fmt::Debug for StreamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |t: &Option<String>| t.as_ref().map(|_| "<redacted>");
        f.debug_struct("StreamAuth")
            .field("publish_token", &shown(&self.publish_token))
            .field("view_token", &shown(&self.view_token))
            .finish()
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

fn settings_key(settings: &HttpSettings) -> Option<jwt::TokenKey> {
    settings.jwt_secret.as_deref().map(jwt::TokenKey::new)
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
        let control = Control::new(ControlConfig {
            shards: shards.len() as u16,
            limits: settings.limits,
            replace_publisher: settings.replace_publisher,
            admission: settings.admission,
            max_room_members: settings.max_room_members,
        });
        Arc::new(AppState {
            shards,
            candidates,
            cert,
            engine,
            control: Mutex::new(control),
            builds: tokio::sync::Semaphore::new(
                2 * std::thread::available_parallelism().map_or(2, |c| c.get()),
            ),
            peer_builds: AtomicU64::new(0),
            refusals: Arc::default(),
            events: events::Events::default(),
            tokens: settings_key(&settings),
            ice_servers: ice_servers::Announcement::new(&settings.ice_servers),
            room_tokens: settings
                .room_secrets
                .iter()
                .map(|(room, secret)| (room.clone(), jwt::TokenKey::new(secret)))
                .collect(),
            settings,
        })
    }
}

impl AppState {
    /// Participants placed or being placed, all shards together.
    pub fn participants(&self) -> usize {
        self.control.lock().participants()
    }

    /// Peers (`Rtc`s) built from offers so far: admitted joins only.
    pub fn peer_builds(&self) -> u64 {
        self.peer_builds.load(Ordering::Relaxed)
    }

    /// The refusal counters (`/api/stats`, `/metrics`), for the HTTP server to count its own
    /// refusals (connection caps, 413, 408) with.
    pub fn refusals(&self) -> Arc<Refusals> {
        self.refusals.clone()
    }
}

/// The whole HTTP surface, for one listener: [`public_app`] and [`admin_app`].
pub fn app(state: Arc<AppState>) -> Router {
    public_app(state.clone()).merge(admin_app(state))
}

/// What clients reach: the WHIP/WHEP endpoints and sessions and `GET /api/ice-servers` (with
/// CORS, for players on other origins), the demo pages (same-origin, no CORS) and `/healthz`.
pub fn public_app(state: Arc<AppState>) -> Router {
    let whip = whip::routes()
        .merge(rooms::routes())
        .merge(layers::routes())
        .merge(events::routes())
        .merge(ice_servers::routes())
        .layer(whip::cors(&state.settings.cors_origin))
        .layer(axum::middleware::from_fn(whip::options_headers));
    Router::new()
        .merge(whip)
        .merge(pages::routes())
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

/// The admin surface: `/api/*` and `/metrics`, behind `admin_token` when it is set; no CORS,
/// so no other origin's page can read it.
pub fn admin_app(state: Arc<AppState>) -> Router {
    pages::admin_routes()
        .merge(rooms::admin_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_admin_token,
        ))
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
                tracing::info!(session = %session.short(), shard = shard.0, "session ended (timeout or close)");
                whip::session_closed(&state, session).await;
            }
            ShardEvent::SessionConnected { session } => {
                tracing::debug!(session = %session.short(), shard = shard.0, "session connected");
                state.control.lock().connected(session);
            }
        }
    }
}
