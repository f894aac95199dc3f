//! ICE server announcement: the STUN/TURN servers each 201 names in `Link` headers (RFC 9725
//! §4.6) and `GET /api/ice-servers` lists as `RTCIceServer`s, for pages and apps that configure
//! their peer connection before they POST.
//!
//! A server with fixed credentials (or none) is announced the same way to everyone, so its
//! links are built once. A server with a shared secret (coturn's `use-auth-secret` +
//! `static-auth-secret`, the TURN REST API) gets credentials minted per session: username
//! `<expiry, unix seconds>:<id>`, password base64(HMAC-SHA1(secret, username)). coturn checks
//! them with the same secret and refuses them after the expiry, so a leaked one is worth little
//! and nothing is shared with coturn but the secret.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{bearer, same_token};
use crate::error::ApiError;
use crate::jwt::looks_like_jwt;

/// One STUN or TURN server announced to clients.
#[derive(Clone)]
pub struct IceServer {
    /// `stun:`, `stuns:`, `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// What clients authenticate with.
    pub credentials: IceCredentials,
}

/// How a client gets its credentials for an [`IceServer`].
#[derive(Clone)]
pub enum IceCredentials {
    /// The same for everyone, as configured (none for STUN).
    Fixed {
        /// The TURN username.
        username: Option<String>,
        /// The TURN password.
        credential: Option<String>,
    },
    /// Minted per session from the TURN server's shared secret, valid for `ttl`.
    Minted {
        /// coturn's `static-auth-secret`.
        secret: String,
        /// How long minted credentials are valid: a TURN allocation cannot be refreshed after
        /// its credentials expire, so a session that outlives them loses its relay.
        ttl: Duration,
    },
}

impl std::fmt::Debug for IceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceServer")
            .field("urls", &self.urls)
            .field("credentials", &self.credentials)
            .finish()
    }
}

impl std::fmt::Debug for IceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IceCredentials::Fixed {
                username,
                credential,
            } => f
                .debug_struct("Fixed")
                .field("username", username)
                .field("credential", &credential.as_ref().map(|_| "<redacted>"))
                .finish(),
            IceCredentials::Minted { ttl, .. } => f
                .debug_struct("Minted")
                .field("secret", &"<redacted>")
                .field("ttl", ttl)
                .finish(),
        }
    }
}

/// The configured servers, ready to announce: fixed links built once, secret keys set up once.
pub(crate) struct Announcement {
    servers: Vec<Announced>,
}

enum Announced {
    /// Everyone gets these: the `Link` values (one per URL) and the JSON entry.
    Fixed { links: Vec<String>, entry: Value },
    /// Credentials minted per session (the key, an HMAC context of about 1 KB, boxed).
    Minted {
        urls: Vec<String>,
        key: Box<hmac::Key>,
        ttl: Duration,
    },
}

/// A minted TURN username and password.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Minted {
    username: String,
    credential: String,
}

impl Announcement {
    pub(crate) fn new(servers: &[IceServer]) -> Self {
        let servers = servers
            .iter()
            .map(|server| match &server.credentials {
                IceCredentials::Fixed {
                    username,
                    credential,
                } => Announced::Fixed {
                    links: server
                        .urls
                        .iter()
                        .map(|url| link(url, username.as_deref(), credential.as_deref()))
                        .collect(),
                    entry: entry(&server.urls, username.as_deref(), credential.as_deref()),
                },
                IceCredentials::Minted { secret, ttl } => Announced::Minted {
                    urls: server.urls.clone(),
                    key: Box::new(hmac::Key::new(
                        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
                        secret.as_bytes(),
                    )),
                    ttl: *ttl,
                },
            })
            .collect();
        Announcement { servers }
    }

    /// The `Link` header values of a 201, one per URL in the configured order; `id` is the
    /// user part of minted usernames.
    pub(crate) fn links(&self, id: &str, now: SystemTime) -> Vec<String> {
        let mut links = Vec::new();
        for server in &self.servers {
            match server {
                Announced::Fixed { links: fixed, .. } => links.extend(fixed.iter().cloned()),
                Announced::Minted { urls, key, ttl } => {
                    let minted = mint(key, *ttl, id, now);
                    links
                        .extend(urls.iter().map(|url| {
                            link(url, Some(&minted.username), Some(&minted.credential))
                        }));
                }
            }
        }
        links
    }

    /// The `RTCIceServer` list; `id` is the user part of minted usernames.
    fn entries(&self, id: &str, now: SystemTime) -> Vec<Value> {
        self.servers
            .iter()
            .map(|server| match server {
                Announced::Fixed { entry, .. } => entry.clone(),
                Announced::Minted { urls, key, ttl } => {
                    let minted = mint(key, *ttl, id, now);
                    entry(urls, Some(&minted.username), Some(&minted.credential))
                }
            })
            .collect()
    }
}

/// `GET /api/ice-servers`, on the public surface with WHIP's CORS: a page on another origin
/// fetches it before it creates its peer connection.
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new().route("/api/ice-servers", get(list))
}

async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Err(e) = may_list(&state, &headers) {
        state.refusals.token(&e);
        return e.into_response();
    }
    // Not a session: a random id in the username, so two answers never share credentials.
    let id = crate::whip::random_string(8);
    let servers = state.ice_servers.entries(&id, SystemTime::now());
    let mut res = axum::Json(json!({ "iceServers": servers })).into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// The list hands out what a 201 would, so it asks for no more and no less than some POST
/// would: open while any stream can be published or played without a token (no
/// `rooms.jwt_secret`: every stream without a `[streams]` entry is open), else a Bearer token
/// that would open some POST — a stream's static token, or an unexpired JWT under
/// `rooms.jwt_secret` or a room's secret.
fn may_list(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = state.tokens.as_ref() else {
        return Ok(());
    };
    let token = bearer(headers).ok_or_else(|| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the ICE servers need a Bearer token that opens a stream or a room",
        )
    })?;
    let static_token = state.settings.streams.values().any(|s| {
        [&s.publish_token, &s.view_token]
            .into_iter()
            .flatten()
            .any(|t| same_token(token, t))
    });
    if static_token {
        return Ok(());
    }
    if looks_like_jwt(token) {
        if let Ok(claims) = key.verify(token, true)
            && (claims.stream.is_some() && (claims.publish || claims.subscribe)
                || claims
                    .room
                    .as_deref()
                    .is_some_and(|room| !state.room_tokens.contains_key(room)))
        {
            return Ok(());
        }
        let room_token = state.room_tokens.iter().any(|(room, key)| {
            key.verify(token, true)
                .is_ok_and(|c| c.room.as_deref() == Some(room))
        });
        if room_token {
            return Ok(());
        }
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "the token opens no stream or room",
    ))
}

/// Credentials for `id` that coturn takes until `now + ttl`.
fn mint(key: &hmac::Key, ttl: Duration, id: &str, now: SystemTime) -> Minted {
    let expiry = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(ttl)
        .as_secs();
    let username = format!("{expiry}:{id}");
    let credential = STANDARD.encode(hmac::sign(key, username.as_bytes()));
    Minted {
        username,
        credential,
    }
}

/// `<url>; rel="ice-server"`, with `username`, `credential` and `credential-type="password"`
/// when the server has them.
fn link(url: &str, username: Option<&str>, credential: Option<&str>) -> String {
    let mut link = format!("<{url}>; rel=\"ice-server\"");
    if let Some(username) = username {
        link.push_str(&format!("; username={}", quoted(username)));
    }
    if let Some(credential) = credential {
        link.push_str(&format!(
            "; credential={}; credential-type=\"password\"",
            quoted(credential)
        ));
    }
    link
}

/// An `RTCIceServer`: `urls`, and `username` and `credential` when present.
fn entry(urls: &[String], username: Option<&str>, credential: Option<&str>) -> Value {
    let mut entry = json!({ "urls": urls });
    if let Some(username) = username {
        entry["username"] = username.into();
    }
    if let Some(credential) = credential {
        entry["credential"] = credential.into();
    }
    entry
}

/// An HTTP quoted-string (RFC 9110 §5.6.4).
fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minted(secret: &str, ttl_s: u64) -> IceServer {
        IceServer {
            urls: vec![
                "turn:turn.example.org?transport=udp".into(),
                "turns:turn.example.org".into(),
            ],
            credentials: IceCredentials::Minted {
                secret: secret.into(),
                ttl: Duration::from_secs(ttl_s),
            },
        }
    }

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn the_credential_is_base64_of_hmac_sha1_of_the_username() {
        // RFC 2202 test case 2: HMAC-SHA1("Jefe", "what do ya want for nothing?") =
        // effcdf6ae5eb2fa2d27416d5f184df9c259a7c79, in base64 7/zfauXrL6LSdBbV8YTfnCWafHk=.
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"Jefe");
        let tag = hmac::sign(&key, b"what do ya want for nothing?");
        assert_eq!(STANDARD.encode(tag), "7/zfauXrL6LSdBbV8YTfnCWafHk=");
    }

    #[test]
    fn a_fixed_secret_time_and_session_mint_known_credentials() {
        let announcement = Announcement::new(&[minted("north-wind", 86_400)]);
        // Expected: python3 -c 'import hmac,hashlib,base64; print(base64.b64encode(hmac.new(
        //   b"north-wind", b"1700086400:s3ss", hashlib.sha1).digest()).decode())'
        let credential = "/PB5JrBe44WgsFzWGlXpN6RATNg=";
        assert_eq!(
            announcement.links("s3ss", at(1_700_000_000)),
            vec![
                format!(
                    "<turn:turn.example.org?transport=udp>; rel=\"ice-server\"; \
                     username=\"1700086400:s3ss\"; credential=\"{credential}\"; \
                     credential-type=\"password\""
                ),
                format!(
                    "<turns:turn.example.org>; rel=\"ice-server\"; username=\"1700086400:s3ss\"; \
                     credential=\"{credential}\"; credential-type=\"password\""
                ),
            ]
        );
        assert_eq!(
            announcement.entries("s3ss", at(1_700_000_000)),
            vec![json!({
                "urls": ["turn:turn.example.org?transport=udp", "turns:turn.example.org"],
                "username": "1700086400:s3ss",
                "credential": credential,
            })]
        );
        // Another session or another time: other credentials.
        let other = announcement.links("abcd", at(1_700_000_000));
        assert!(other[0].contains("username=\"1700086400:abcd\""));
        assert!(!other[0].contains(credential));
        let later = announcement.links("s3ss", at(1_700_000_060));
        assert!(later[0].contains("username=\"1700086460:s3ss\""));
    }

    #[test]
    fn fixed_servers_are_announced_as_configured() {
        let announcement = Announcement::new(&[
            IceServer {
                urls: vec!["stun:stun.example.org".into()],
                credentials: IceCredentials::Fixed {
                    username: None,
                    credential: None,
                },
            },
            IceServer {
                urls: vec![
                    "turn:turn.example.org?transport=udp".into(),
                    "turns:turn.example.org".into(),
                ],
                credentials: IceCredentials::Fixed {
                    username: Some("user".into()),
                    credential: Some("pa\"ss".into()),
                },
            },
            minted("s", 60),
        ]);
        let links = announcement.links("x", at(0));
        assert_eq!(
            links[..3],
            [
                "<stun:stun.example.org>; rel=\"ice-server\"".to_owned(),
                "<turn:turn.example.org?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\""
                    .to_owned(),
                "<turns:turn.example.org>; rel=\"ice-server\"; username=\"user\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\""
                    .to_owned(),
            ]
        );
        assert!(links[3].contains("username=\"60:x\""), "{}", links[3]);
        let entries = announcement.entries("x", at(0));
        assert_eq!(entries[0], json!({ "urls": ["stun:stun.example.org"] }));
        assert_eq!(entries[1]["credential"], "pa\"ss");
    }

    #[test]
    fn debug_never_shows_a_secret_or_a_password() {
        let shown = format!(
            "{:?}",
            [
                minted("north-wind", 60),
                IceServer {
                    urls: vec!["turn:t".into()],
                    credentials: IceCredentials::Fixed {
                        username: Some("user".into()),
                        credential: Some("hunter2".into()),
                    },
                },
            ]
        );
        assert!(
            !shown.contains("north-wind") && !shown.contains("hunter2"),
            "{shown}"
        );
        assert!(
            shown.contains("turn.example.org") && shown.contains("user"),
            "{shown}"
        );
    }
}
