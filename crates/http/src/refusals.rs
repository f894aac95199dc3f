//! What the server refused, by reason, for `/api/stats` (`"refused": {...}`) and `/metrics`
//! (`ringcast_refused_<reason>_total`): admission limits, SDP limits, tokens, bodies and HTTP
//! connections. The HTTP server counts its own refusals (caps, 413/408) through the same
//! [`Refusals`] ([`crate::AppState::refusals`]).

use axum::http::StatusCode;
use parking_lot::Mutex;
use ringcast_core::CommandError;
use ringcast_core::control::Refusal;
use ringcast_core::sdp::SdpError;

use crate::ApiError;

ringcast_counters::counters! {
    /// Refusals since the start, one counter per reason.
    #[derive(Copy)]
    pub struct RefusalCounters {
        /// A client held its limit of sessions (429).
        refused_client_sessions: Counter("Sessions refused: the client holds limits.sessions_per_client (429)") in refused.client_sessions,
        /// A client created sessions too fast (429).
        refused_client_rate: Counter("Sessions refused: the client's creation rate (429)") in refused.client_rate,
        /// Too many clients tracked at once (503).
        refused_tracked_clients: Counter("Sessions refused: too many clients tracked at once (503)") in refused.tracked_clients,
        /// Too many sessions still connecting (503).
        refused_unconnected: Counter("Sessions refused: too many sessions still connecting (503)") in refused.unconnected,
        /// A stream had its limit of viewers (503).
        refused_stream_viewers: Counter("Viewers refused: the stream holds limits.viewers_per_stream (503)") in refused.stream_viewers,
        /// Every shard was full (503).
        refused_full: Counter("Sessions refused: every shard is full (503)") in refused.full,
        /// An SDP offer or trickle fragment over a limit (400).
        refused_sdp_limits: Counter("SDP offers and fragments refused over a limit (400)") in refused.sdp_limits,
        /// A request with no token where one is needed (401).
        refused_token_missing: Counter("Requests refused: no Bearer token (401)") in refused.token_missing,
        /// A request with the wrong token (403).
        refused_token_wrong: Counter("Requests refused: wrong Bearer token (403)") in refused.token_wrong,
        /// A body larger than http.max_body_bytes (413).
        refused_body_too_large: Counter("Requests refused: body larger than http.max_body_bytes (413)") in refused.body_too_large,
        /// A body not received within http.body_timeout_ms (408).
        refused_body_timeout: Counter("Requests refused: body not received in time (408)") in refused.body_timeout,
        /// HTTP connections closed at once: http.max_connections open, none of them idle.
        refused_connections: Counter("HTTP connections refused: http.max_connections open, none idle") in refused.connections,
        /// HTTP connections closed at once: http.max_connections_per_client open.
        refused_connections_per_client: Counter("HTTP connections refused: http.max_connections_per_client open") in refused.connections_per_client,
        /// Idle HTTP connections closed to admit a new one at http.max_connections.
        refused_idle_connections_closed: Counter("Idle HTTP connections closed to admit a new one at http.max_connections") in refused.idle_connections_closed,
    }
}

/// The refusal counters, shared by the handlers and the HTTP server.
#[derive(Debug, Default)]
pub struct Refusals(Mutex<RefusalCounters>);

impl Refusals {
    /// Count one refusal: `f` adds to its counter.
    pub fn count(&self, f: impl FnOnce(&mut RefusalCounters)) {
        f(&mut self.0.lock());
    }

    /// The counters now.
    pub fn snapshot(&self) -> RefusalCounters {
        *self.0.lock()
    }

    /// Count a refusal of the control plane, if it is one an operator watches (admission and
    /// capacity; not "no such session" or "no publisher yet").
    pub(crate) fn admission(&self, refusal: &Refusal) {
        self.count(|c| match refusal {
            Refusal::ClientSessions(_) => c.refused_client_sessions += 1,
            Refusal::ClientRate(_) => c.refused_client_rate += 1,
            Refusal::TooManyClients => c.refused_tracked_clients += 1,
            Refusal::Pending => c.refused_unconnected += 1,
            Refusal::StreamFull(..) => c.refused_stream_viewers += 1,
            Refusal::Full | Refusal::Shard(CommandError::ShardFull) => c.refused_full += 1,
            _ => {}
        });
    }

    /// Count a token refusal (401 or 403).
    pub(crate) fn token(&self, error: &ApiError) {
        self.count(|c| match error.status {
            StatusCode::UNAUTHORIZED => c.refused_token_missing += 1,
            StatusCode::FORBIDDEN => c.refused_token_wrong += 1,
            _ => {}
        });
    }

    /// Count an SDP refusal when it is over a limit (not merely empty or not SDP).
    pub(crate) fn sdp(&self, error: &SdpError) {
        if !matches!(error, SdpError::Empty | SdpError::NotSdp(_)) {
            self.count(|c| c.refused_sdp_limits += 1);
        }
    }
}
