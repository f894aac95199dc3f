//! The schema: one serde struct per section of `config/ringcast.toml`.
//!
//! The compiled-in file ([`DEFAULT_CONFIG`](super::DEFAULT_CONFIG)) is the only source of
//! default values: these types have no `Default` of their own that could drift from it, and
//! `deny_unknown_fields` everywhere makes a misspelt key an error.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::de::{Error as _, Unexpected};
use serde::{Deserialize, Deserializer};

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[http]`: the control plane.
    pub http: HttpConfig,
    /// `[media]`: the shards and their UDP sockets.
    pub media: MediaConfig,
    /// `[whip]`: ingest.
    pub whip: WhipConfig,
    /// `[whep]`: playback.
    pub whep: WhepConfig,
    /// `[limits]`: admission limits on new sessions.
    pub limits: LimitsConfig,
    /// `[[ice_servers]]`: STUN/TURN servers announced to clients; none by default.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// `[streams."name"]`: per-stream settings (tokens); none by default.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamConfig>,
    /// `[rooms]`: group calls, and the access tokens WHIP/WHEP share with them.
    pub rooms: RoomsConfig,
    /// `[log]`: logging.
    pub log: LogConfig,
}

/// `[http]`: the HTTP server (WHIP/WHEP signalling, demo pages, metrics).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address and port the HTTP server listens on.
    pub listen: SocketAddr,
    /// Value of `Access-Control-Allow-Origin`; never empty.
    pub cors_origin: String,
    /// Largest accepted request body in bytes; larger requests get 413 (at once when their
    /// `Content-Length` says so).
    pub max_body_bytes: usize,
    /// Milliseconds a client has to send a request's head (line and headers); at least 100.
    pub header_timeout_ms: u64,
    /// Milliseconds a client has to send a request's whole body; at least 100.
    pub body_timeout_ms: u64,
    /// A connection with no request in flight and nothing received for this many milliseconds
    /// is closed; at least 100.
    pub idle_timeout_ms: u64,
    /// Most concurrent connections, all clients together; at least 1.
    pub max_connections: usize,
    /// Most concurrent connections from one client address (IPv6: one /64); at least 1.
    pub max_connections_per_client: usize,
    /// On SIGTERM, milliseconds in-flight requests have to finish before their connections
    /// are closed.
    pub drain_timeout_ms: u64,
    /// Certificate chain (PEM) for HTTPS; empty = plain HTTP. Set with `tls_key`.
    pub tls_cert: PathBuf,
    /// Private key (PEM) of `tls_cert`; empty = plain HTTP.
    pub tls_key: PathBuf,
    /// Bearer token required on the admin surface (`/api/*`, `/metrics`); empty = open.
    pub admin_token: String,
    /// Address the admin surface is served on instead of `listen` (which then has no `/api/*`
    /// or `/metrics`); `None` (empty in the file) = served on `listen`.
    #[serde(deserialize_with = "empty_or_address")]
    pub admin_listen: Option<SocketAddr>,
}

/// `""` as `None`, else an address and port.
fn empty_or_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| {
        D::Error::invalid_value(
            Unexpected::Str(&text),
            &"an address and port such as \"127.0.0.1:9090\", or \"\"",
        )
    })
}

/// `[media]`: the shards, their sockets and what they advertise.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Number of shards; 0 = one per CPU core (see [`Config::shard_count`]).
    pub shards: usize,
    /// Address the shard sockets bind to.
    pub bind: IpAddr,
    /// UDP port of shard 0; shard `i` listens on `port_base + i`.
    pub port_base: u16,
    /// Which I/O engine runs the shards.
    pub engine: EngineChoice,
    /// Send a frame's equal-size packets to one viewer as one segmented send (UDP GSO) when
    /// the kernel allows it.
    pub gso: bool,
    /// Ask the kernel for coalesced receives (UDP GRO).
    pub gro: bool,
    /// io_uring: a kernel thread polls the submission queue (SQPOLL).
    pub uring_sqpoll: bool,
    /// io_uring: zero-copy sends.
    pub uring_zero_copy: bool,
    /// io_uring: microseconds a shard's wait gathers datagrams before it wakes; 0 off, at
    /// most 10000.
    pub uring_coalesce_us: u32,
    /// Pin shard `i` to CPU core `i`.
    pub pin_threads: bool,
    /// Most participants on one shard; at least 1.
    pub max_participants_per_shard: usize,
    /// A stream's viewers join its publisher's shard while that shard holds fewer than this
    /// many participants, then spill to the least-loaded shard (one relay copy of the stream
    /// there); at least 1; above `max_participants_per_shard` it is that.
    pub affinity_limit: usize,
    /// Keyframe requests to one publisher track are merged to at most one per this many
    /// milliseconds; at least 100.
    pub keyframe_interval_ms: u64,
    /// Bytes of the keyframe cache per publisher video layer (its latest keyframe and what
    /// followed); 0 turns the cache off.
    pub gop_cache_bytes: usize,
    /// A cached keyframe older than this many milliseconds is dropped; at least 100.
    pub gop_cache_max_age_ms: u64,
    /// A session not connected (ICE + DTLS) this many milliseconds after its answer is
    /// removed; at least 1000.
    pub connect_timeout_ms: u64,
    /// Addresses advertised instead of the local ones (1:1 NAT); empty = the local addresses.
    pub announce: Vec<IpAddr>,
    /// Advertise the loopback addresses among the local ones (clients on the same host).
    pub advertise_loopback: bool,
    /// Serve IPv6 too: the IPv4 wildcard `bind` becomes the dual-stack IPv6 one, and the IPv6
    /// local addresses are advertised.
    pub allow_ipv6: bool,
    /// ICE over TCP: each shard also listens on TCP at its UDP port's number, and answers
    /// carry a passive TCP candidate after the UDP ones (clients whose networks drop UDP).
    pub tcp: bool,
    /// Most TCP connections open on one shard; at least 1.
    pub tcp_max_connections: usize,
    /// Most TCP connections from one client IP on one shard; at least 1.
    pub tcp_max_per_ip: usize,
    /// A TCP connection with nothing received this many milliseconds is closed; at least 1000.
    pub tcp_idle_timeout_ms: u64,
}

/// `media.engine`: the I/O engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The best one the kernel allows.
    Auto,
    /// io_uring; the server refuses to start if the kernel does not allow it.
    Uring,
    /// epoll.
    Epoll,
}

/// `[whip]`: ingest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhipConfig {
    /// A WHIP POST for a stream that already has a live publisher replaces it (the old
    /// session ends, viewers stay and switch over) instead of getting 409.
    pub replace_publisher: bool,
}

/// `[whep]`: playback.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhepConfig {
    /// `Retry-After` seconds on the 409 answered when a stream has no publisher yet.
    pub retry_after_secs: u32,
}

/// `[limits]`: what one client, one stream and everyone together may start.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Sessions (placed or being set up) of one client address (an IPv6 client: its /64);
    /// at least 1.
    pub sessions_per_client: u32,
    /// New sessions per second per client address, once its burst is spent; at least 1.
    pub creations_per_second: u32,
    /// New sessions one client address may start at once; at least 1.
    pub creation_burst: u32,
    /// Viewers of one stream; at least 1.
    pub viewers_per_stream: u32,
    /// Sessions not yet connected (ICE + DTLS), all clients together; at least 1.
    pub pending_sessions: u32,
    /// Of `pending_sessions`, how many only requests with a stream token may use (and, split
    /// over the shards, seats of each shard); below `pending_sessions`.
    pub token_reserve: u32,
    /// Client addresses whose counts are kept at once; at least 1.
    pub tracked_clients: usize,
    /// Reverse proxies whose `X-Forwarded-For` (its rightmost address) names the client.
    pub trusted_proxies: Vec<IpAddr>,
}

/// One `[[ice_servers]]` entry: a STUN or TURN server announced to clients in `Link` headers
/// and by `GET /api/ice-servers`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs; at least one.
    pub urls: Vec<String>,
    /// Username, for TURN.
    #[serde(default)]
    pub username: Option<String>,
    /// Credential (password), for TURN.
    #[serde(default)]
    pub credential: Option<String>,
    /// The TURN server's shared secret (coturn `static-auth-secret`): credentials are minted
    /// per session from it instead of `username`/`credential`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Seconds minted credentials are valid; only with `secret`;
    /// [`DEFAULT_CREDENTIAL_TTL_S`] when absent.
    #[serde(default)]
    pub credential_ttl_s: Option<u64>,
}

/// `credential_ttl_s` when an entry with a `secret` has none: a day, longer than sessions
/// usually last (a relay cannot be refreshed once its credentials expire).
pub const DEFAULT_CREDENTIAL_TTL_S: u64 = 86_400;

impl IceServer {
    /// How long minted credentials are valid.
    pub fn credential_ttl_s(&self) -> u64 {
        self.credential_ttl_s.unwrap_or(DEFAULT_CREDENTIAL_TTL_S)
    }
}

/// The secret and the credential are passwords: never shown (configs get logged and printed).
impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("username", &self.username)
            .field("credential", &hidden(&self.credential))
            .field("secret", &hidden(&self.secret))
            .field("credential_ttl_s", &self.credential_ttl_s)
            .finish()
    }
}

/// One `[streams."name"]` entry. A stream without an entry needs no token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// Bearer token required to publish (WHIP): the stream key; `None` = anyone may publish.
    #[serde(default)]
    pub publish_token: Option<String>,
    /// Bearer token required to play (WHEP); `None` = anyone may play.
    #[serde(default)]
    pub view_token: Option<String>,
}

/// `[rooms]`: group calls, and the access tokens WHIP/WHEP share with them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    /// HS256 secret of access tokens (JWT); empty = none.
    pub jwt_secret: String,
    /// Rooms with their own HS256 secret, by room name.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Most slots of each kind in a member's offer.
    pub max_slots: usize,
    /// Most members of one room.
    pub max_members: u32,
}

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter; `RUST_LOG` replaces it when set.
    pub level: String,
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::config::DEFAULT_CONFIG;
    use crate::config::testing::load;

    #[test]
    fn the_default_loads_with_the_documented_values() {
        let config = Config::from_default();
        assert_eq!(config.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.http.cors_origin, "*");
        assert_eq!(config.http.max_body_bytes, 65536);
        assert_eq!(config.http.header_timeout_ms, 10_000);
        assert_eq!(config.http.body_timeout_ms, 10_000);
        assert_eq!(config.http.idle_timeout_ms, 60_000);
        assert_eq!(config.http.max_connections, 10_000);
        assert_eq!(config.http.max_connections_per_client, 100);
        assert_eq!(config.http.drain_timeout_ms, 5000);
        assert_eq!(config.http.tls_cert, PathBuf::new());
        assert_eq!(config.http.tls_key, PathBuf::new());
        assert_eq!(config.http.admin_token, "");
        assert_eq!(config.rooms.jwt_secret, "");
        assert_eq!(config.rooms.max_slots, 16);
        assert_eq!(config.rooms.max_members, 100);
        assert!(config.rooms.secrets.is_empty());
        assert_eq!(config.http.admin_listen, None);
        assert_eq!(config.media.shards, 0);
        assert_eq!(config.media.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(config.media.port_base, 50000);
        assert_eq!(config.media.engine, EngineChoice::Auto);
        assert!(config.media.gso && !config.media.gro);
        assert!(!config.media.uring_sqpoll && !config.media.uring_zero_copy);
        assert_eq!(config.media.uring_coalesce_us, 500);
        assert!(config.media.pin_threads);
        assert_eq!(config.media.max_participants_per_shard, 1000);
        assert_eq!(config.media.affinity_limit, 100);
        assert_eq!(config.media.keyframe_interval_ms, 1000);
        assert_eq!(config.media.gop_cache_bytes, 4 << 20);
        assert_eq!(config.media.gop_cache_max_age_ms, 10_000);
        assert!(config.media.announce.is_empty());
        assert!(config.media.advertise_loopback);
        assert!(!config.media.allow_ipv6);
        assert!(config.media.tcp);
        assert_eq!(config.media.tcp_max_connections, 1000);
        assert_eq!(config.media.tcp_max_per_ip, 16);
        assert_eq!(config.media.tcp_idle_timeout_ms, 30_000);
        assert!(!config.whip.replace_publisher);
        assert_eq!(config.whep.retry_after_secs, 2);
        assert_eq!(config.limits.sessions_per_client, 100);
        assert_eq!(config.limits.creations_per_second, 5);
        assert_eq!(config.limits.creation_burst, 50);
        assert_eq!(config.limits.viewers_per_stream, 1000);
        assert_eq!(config.limits.pending_sessions, 200);
        assert_eq!(config.limits.token_reserve, 50);
        assert_eq!(config.limits.tracked_clients, 10000);
        assert!(config.limits.trusted_proxies.is_empty());
        assert!(config.ice_servers.is_empty());
        assert!(config.streams.is_empty());
        assert_eq!(config.log.level, "info");
        assert!(config.shard_count() >= 1);
        assert_eq!(Config::load(None, Vec::new()).unwrap(), config);
    }

    #[test]
    fn the_commented_examples_of_the_default_file_load_when_uncommented() {
        // What an operator does with `--print-default-config`: uncomment the examples.
        let text: String = DEFAULT_CONFIG
            .lines()
            .map(|line| {
                let example = [
                    "# [",
                    "# urls",
                    "# username",
                    "# credential",
                    "# secret",
                    "# publish",
                    "# view",
                ];
                if example.iter().any(|e| line.starts_with(e)) {
                    &line[2..]
                } else {
                    line
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = load(Some(&text), &[]).unwrap();
        assert_eq!(config.ice_servers.len(), 2);
        assert_eq!(config.ice_servers[0].username.as_deref(), Some("user"));
        assert_eq!(config.ice_servers[1].credential_ttl_s, Some(86_400));
        assert!(config.ice_servers[1].secret.is_some());
        let demo = &config.streams["demo"];
        assert_eq!(demo.publish_token.as_deref(), Some("change-me"));
        assert_eq!(demo.view_token.as_deref(), Some("change-me-too"));
    }
}
