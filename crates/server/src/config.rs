//! The configuration: typed sections, and how they are loaded.
//!
//! `config/ringcast.toml` is compiled in ([`DEFAULT_CONFIG`]) and is the only source of default
//! values: the types below have no `Default` of their own that could drift from it. Loading
//! works on TOML tables:
//!
//! 1. parse the compiled-in file into a table;
//! 2. deep-merge the user's file over it (tables key by key; values and arrays replaced whole);
//! 3. apply the `RINGCAST_<SECTION>_<KEY>` environment variables, each to one key of the
//!    compiled-in table, its value read as the type of that key there;
//! 4. deserialize the result (`deny_unknown_fields` everywhere), then [validate](Config::load).
//!
//! Every key set along the way remembers where it came from ([`Origin`]), so an error names the
//! key and the file or variable that set it:
//!
//! ```text
//! config file /etc/ringcast.toml: unknown key `media.portbase` (expected one of `announce`, …)
//! environment RINGCAST_MEDIA_PORT_BASE: invalid value `abc` for `media.port_base`: expected u16
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroUsize;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::{Table, Value};

/// Most shards one process runs (relay interest is a 64-bit mask of shards).
pub const MAX_SHARDS: usize = 64;

/// The compiled-in default configuration, `config/ringcast.toml`: every key with its default
/// value and its documentation.
pub const DEFAULT_CONFIG: &str = include_str!("../../../config/ringcast.toml");

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[http]`: the control plane.
    pub http: HttpConfig,
    /// `[media]`: the shards and their UDP sockets.
    pub media: MediaConfig,
    /// `[whep]`: playback.
    pub whep: WhepConfig,
    /// `[[ice_servers]]`: STUN/TURN servers announced to clients; none by default.
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    /// `[streams."name"]`: per-stream settings (tokens); none by default.
    #[serde(default)]
    pub streams: BTreeMap<String, StreamConfig>,
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
    /// Largest accepted request body in bytes; larger requests get 413.
    pub max_body_bytes: usize,
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
    /// Pin shard `i` to CPU core `i`.
    pub pin_threads: bool,
    /// Most participants on one shard; at least 1.
    pub max_participants_per_shard: usize,
    /// Keyframe requests to one publisher track are merged to at most one per this many
    /// milliseconds; at least 100.
    pub keyframe_interval_ms: u64,
    /// A session not connected (ICE + DTLS) this many milliseconds after its answer is
    /// removed; at least 1000.
    pub connect_timeout_ms: u64,
    /// Addresses advertised instead of the local ones (1:1 NAT); empty = the local addresses.
    pub announce: Vec<IpAddr>,
    /// Advertise the loopback addresses among the local ones (clients on the same host).
    pub advertise_loopback: bool,
    /// Advertise IPv6 local addresses too.
    pub allow_ipv6: bool,
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

/// `[whep]`: playback.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhepConfig {
    /// `Retry-After` seconds on the 409 answered when a stream has no publisher yet.
    pub retry_after_secs: u32,
}

/// One `[[ice_servers]]` entry: a STUN or TURN server announced to clients in `Link` headers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
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

/// `[log]`: logging.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter; `RUST_LOG` replaces it when set.
    pub level: String,
}

/// Where a configuration key got its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The compiled-in [`DEFAULT_CONFIG`].
    Default,
    /// The configuration file at this path.
    File(PathBuf),
    /// This environment variable.
    Env(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("compiled-in default configuration"),
            Origin::File(path) => write!(f, "config file {}", path.display()),
            Origin::Env(var) => write!(f, "environment {var}"),
        }
    }
}

/// Why the configuration could not be loaded. Each message names the source (file or
/// variable) and the key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file could not be read.
    #[error("config file {}: {error}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What reading it said.
        error: std::io::Error,
    },
    /// The file is not TOML.
    #[error("{origin}: {message}")]
    Syntax {
        /// Where the text came from.
        origin: Origin,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A key that the configuration does not have.
    #[error("{origin}: unknown key `{key}`{hint}")]
    UnknownKey {
        /// Who set it.
        origin: Origin,
        /// The full key, e.g. `media.portbase`.
        key: String,
        /// The keys that would have been accepted, as ` (expected …)`, or empty.
        hint: String,
    },
    /// A required key is absent (e.g. `urls` of an `[[ice_servers]]` entry).
    #[error("{origin}: missing key `{key}`")]
    MissingKey {
        /// Who wrote the table that lacks it.
        origin: Origin,
        /// The full key.
        key: String,
    },
    /// A value of the wrong type or out of range.
    #[error("{origin}: invalid value `{value}` for `{key}`: {reason}")]
    InvalidValue {
        /// Who set it.
        origin: Origin,
        /// The full key, e.g. `media.port_base`.
        key: String,
        /// The value as written.
        value: String,
        /// What was expected instead.
        reason: String,
    },
    /// A `RINGCAST_*` variable that does not name a key that can be set from the environment.
    #[error("environment {var}: {reason}")]
    Env {
        /// The variable.
        var: String,
        /// Why it was refused.
        reason: String,
    },
}

impl Config {
    /// Loads the configuration: the compiled-in defaults, then `file` merged over them, then
    /// the `RINGCAST_<SECTION>_<KEY>` variables of `env` (in order, so a later one wins;
    /// variables without the `RINGCAST_` prefix and `RINGCAST_CONFIG` are ignored), then
    /// validation.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                        path: path.to_owned(),
                        error,
                    })?,
                )
            }
            None => None,
        };
        let user = file
            .zip(text.as_deref())
            .map(|(path, text)| (Origin::File(path.to_owned()), text));
        load_layers(user, env)
    }

    /// The compiled-in configuration alone, as if no file and no variable were given.
    #[allow(
        dead_code,
        reason = "API for embedders and tests; the binary loads through `load`"
    )]
    pub fn from_default() -> Config {
        load_layers(None, std::iter::empty())
            .expect("the compiled-in default configuration loads (tested)")
    }

    /// The number of shards: `media.shards`, or one per CPU core available to the process
    /// when it is 0.
    pub fn shard_count(&self) -> usize {
        match self.media.shards {
            // One per core, up to the most shards a process runs.
            0 => std::thread::available_parallelism()
                .map_or(1, NonZeroUsize::get)
                .min(MAX_SHARDS),
            n => n,
        }
    }

    /// The `Link` header values announcing the ICE servers, one per URL (RFC 9725 §4.6):
    /// `<stun:stun.example.org>; rel="ice-server"`, with `username`, `credential` and
    /// `credential-type="password"` when the server has them.
    pub fn ice_links(&self) -> Vec<String> {
        let mut links = Vec::new();
        for server in &self.ice_servers {
            for url in &server.urls {
                let mut link = format!("<{url}>; rel=\"ice-server\"");
                if let Some(username) = &server.username {
                    link.push_str(&format!("; username={}", quoted(username)));
                }
                if let Some(credential) = &server.credential {
                    link.push_str(&format!(
                        "; credential={}; credential-type=\"password\"",
                        quoted(credential)
                    ));
                }
                links.push(link);
            }
        }
        links
    }

    /// Checks what the types cannot say; each error names the key and who set it.
    fn validate(&self, origins: &Origins) -> Result<(), ConfigError> {
        let invalid = |path: Vec<Seg>, value: String, reason: String| ConfigError::InvalidValue {
            origin: origins.of(&path),
            key: display_path(&path),
            value,
            reason,
        };
        let http = &self.http;
        if http.cors_origin.is_empty() || http.cors_origin.chars().any(char::is_control) {
            return Err(invalid(
                keys(&["http", "cors_origin"]),
                http.cors_origin.clone(),
                "expected an origin such as \"*\" or \"https://example.org\"".into(),
            ));
        }
        let media = &self.media;
        if media.shards > MAX_SHARDS {
            return Err(invalid(
                keys(&["media", "shards"]),
                media.shards.to_string(),
                format!("expected at most {MAX_SHARDS} (0 = one per core)"),
            ));
        }
        if media.max_participants_per_shard == 0 {
            return Err(invalid(
                keys(&["media", "max_participants_per_shard"]),
                "0".into(),
                "expected at least 1".into(),
            ));
        }
        if media.keyframe_interval_ms < 100 {
            return Err(invalid(
                keys(&["media", "keyframe_interval_ms"]),
                media.keyframe_interval_ms.to_string(),
                "expected at least 100".into(),
            ));
        }
        if media.connect_timeout_ms < 1000 {
            return Err(invalid(
                keys(&["media", "connect_timeout_ms"]),
                media.connect_timeout_ms.to_string(),
                "expected at least 1000".into(),
            ));
        }
        // Shard i listens on port_base + i: the last one must still be a port.
        let shards = self.shard_count();
        let base = usize::from(media.port_base);
        let max_shards = usize::from(u16::MAX) + 1 - base;
        if shards > max_shards {
            let shards_path = keys(&["media", "shards"]);
            let base_path = keys(&["media", "port_base"]);
            // Blame the key the user set, the port base when both or neither were.
            return Err(
                if origins.of(&shards_path) != Origin::Default
                    && origins.of(&base_path) == Origin::Default
                {
                    let cores = if media.shards == 0 {
                        format!(" (0 = one per core: {shards})")
                    } else {
                        String::new()
                    };
                    invalid(
                        shards_path,
                        format!("{}{cores}", media.shards),
                        format!(
                            "expected at most {max_shards} shards with `media.port_base` = \
                             {base}, as shard i listens on UDP port port_base + i <= 65535"
                        ),
                    )
                } else {
                    invalid(
                        base_path,
                        base.to_string(),
                        format!(
                            "expected at most {} with {shards} shards (`media.shards`), as \
                             shard i listens on UDP port port_base + i <= 65535",
                            (usize::from(u16::MAX) + 1).saturating_sub(shards)
                        ),
                    )
                },
            );
        }
        for (i, server) in self.ice_servers.iter().enumerate() {
            let path = |key: &str| {
                vec![
                    Seg::Key("ice_servers".into()),
                    Seg::Index(i),
                    Seg::Key(key.into()),
                ]
            };
            if server.urls.is_empty() {
                return Err(invalid(
                    path("urls"),
                    "[]".into(),
                    "expected at least one URL".into(),
                ));
            }
            for url in &server.urls {
                let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
                let known = matches!(scheme.as_deref(), Some("stun" | "stuns" | "turn" | "turns"));
                if !known || url.chars().any(|c| c.is_whitespace() || "<>\"".contains(c)) {
                    return Err(invalid(
                        path("urls"),
                        url.clone(),
                        "expected a stun:, stuns:, turn: or turns: URL".into(),
                    ));
                }
            }
            for (key, value) in [
                ("username", &server.username),
                ("credential", &server.credential),
            ] {
                if let Some(value) = value
                    && value.chars().any(char::is_control)
                {
                    return Err(invalid(
                        path(key),
                        value.clone(),
                        "expected no control characters".into(),
                    ));
                }
            }
        }
        for (name, stream) in &self.streams {
            if name.is_empty() || name.contains('/') {
                return Err(invalid(
                    vec![Seg::Key("streams".into())],
                    name.clone(),
                    "expected a stream name: not empty, no `/`".into(),
                ));
            }
            for (key, token) in [
                ("publish_token", &stream.publish_token),
                ("view_token", &stream.view_token),
            ] {
                if let Some(token) = token
                    && (token.is_empty()
                        || token.chars().any(|c| c.is_whitespace() || c.is_control()))
                {
                    return Err(invalid(
                        vec![
                            Seg::Key("streams".into()),
                            Seg::Key(name.clone()),
                            Seg::Key(key.into()),
                        ],
                        token.clone(),
                        "expected a non-empty token without spaces (remove the key to let \
                         anyone in)"
                            .into(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// The prefix of every configuration variable.
const ENV_PREFIX: &str = "RINGCAST_";
/// The variable that holds the file path (read by the CLI, skipped here).
const ENV_CONFIG: &str = "RINGCAST_CONFIG";

/// Loads the defaults, then `user` (a file's origin and text), then `env`, then validates.
fn load_layers(
    user: Option<(Origin, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let mut table: Table =
        DEFAULT_CONFIG
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin: Origin::Default,
                message: e.to_string(),
            })?;
    let mut origins = Origins::default();
    if let Some((origin, text)) = user {
        let over: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        merge(&mut table, over, &mut Vec::new(), &origin, &mut origins);
    }
    for (var, raw) in env {
        apply_env(&mut table, &var, &raw, &mut origins)?;
    }
    let config = deserialize(&table, &origins)?;
    config.validate(&origins)?;
    Ok(config)
}

/// Merges `over` into `base`: tables key by key, anything else replaced; records who set what.
fn merge(
    base: &mut Table,
    over: Table,
    prefix: &mut Vec<String>,
    origin: &Origin,
    origins: &mut Origins,
) {
    for (key, value) in over {
        prefix.push(key.clone());
        match (base.get_mut(&key), value) {
            (Some(Value::Table(base)), Value::Table(over)) => {
                merge(base, over, prefix, origin, origins);
            }
            (_, value) => {
                origins.set(prefix.clone(), origin.clone());
                base.insert(key, value);
            }
        }
        prefix.pop();
    }
}

/// Applies one environment variable to the merged table, if it is a `RINGCAST_` one.
fn apply_env(
    table: &mut Table,
    var: &str,
    raw: &str,
    origins: &mut Origins,
) -> Result<(), ConfigError> {
    let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    if var == ENV_CONFIG {
        return Ok(());
    }
    let env_error = |reason: String| ConfigError::Env {
        var: var.to_owned(),
        reason,
    };
    let name = rest.to_ascii_lowercase();
    if name == "streams"
        || name.starts_with("streams_")
        || name == "ice_servers"
        || name.starts_with("ice_servers_")
    {
        return Err(env_error(
            "`streams` and `ice_servers` cannot be set from the environment; set them in the \
             config file"
                .into(),
        ));
    }
    let (section, key) = name.split_once('_').unwrap_or((&name, ""));
    let sections: Vec<&str> = table
        .iter()
        .filter(|(_, v)| v.is_table())
        .map(|(k, _)| k.as_str())
        .collect();
    let Some(Value::Table(keys)) = table.get(section) else {
        return Err(ConfigError::UnknownKey {
            origin: Origin::Env(var.to_owned()),
            key: section.to_owned(),
            hint: format!(" (expected one of {})", backticked(sections)),
        });
    };
    if key.is_empty() {
        return Err(env_error(format!(
            "expected RINGCAST_<SECTION>_<KEY>, e.g. RINGCAST_{}_{}",
            section.to_ascii_uppercase(),
            keys.keys()
                .next()
                .map_or("KEY".into(), |k| k.to_ascii_uppercase())
        )));
    }
    let Some(default) = keys.get(key) else {
        return Err(ConfigError::UnknownKey {
            origin: Origin::Env(var.to_owned()),
            key: format!("{section}.{key}"),
            hint: format!(
                " (expected one of {})",
                backticked(keys.keys().map(String::as_str))
            ),
        });
    };
    let value = match default {
        Value::String(_) => match raw.parse::<Value>() {
            Ok(quoted @ Value::String(_)) => quoted,
            _ => Value::String(raw.to_owned()),
        },
        Value::Array(_) => {
            let raw = raw.trim();
            if raw.starts_with('[') {
                scalar(raw)
            } else {
                Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(scalar)
                        .collect(),
                )
            }
        }
        Value::Table(_) => {
            return Err(env_error(format!(
                "`{section}.{key}` is a table; set its keys instead"
            )));
        }
        _ => scalar(raw.trim()),
    };
    let section = section.to_owned();
    let key = key.to_owned();
    origins.set(
        vec![section.clone(), key.clone()],
        Origin::Env(var.to_owned()),
    );
    if let Some(Value::Table(keys)) = table.get_mut(&section) {
        keys.insert(key, value);
    }
    Ok(())
}

/// A TOML value if `raw` is one (`40000`, `true`, `["a"]`), else the string itself.
fn scalar(raw: &str) -> Value {
    raw.parse()
        .unwrap_or_else(|_| Value::String(raw.to_owned()))
}

/// Deserializes the merged table; errors are traced back to their key and origin.
///
/// The table is encoded and decoded again so that the decoder reports the span of the
/// offending key or value, which [`locate`] turns into the key's path.
fn deserialize(table: &Table, origins: &Origins) -> Result<Config, ConfigError> {
    let text = toml::to_string(table).map_err(|e| ConfigError::Syntax {
        origin: Origin::Default,
        message: format!("encoding the merged configuration: {e}"),
    })?;
    toml::from_str(&text).map_err(|error| {
        let mut path = error
            .span()
            .and_then(|span| locate(&text, &span))
            .unwrap_or_default();
        let message = error.message();
        let origin = origins.of(&path);
        if let Some(rest) = message.strip_prefix("unknown field `") {
            let (field, expected) = rest.split_once("`, ").unwrap_or((rest, ""));
            let field = field.trim_end_matches('`');
            if path.last() != Some(&Seg::Key(field.to_owned())) {
                path.push(Seg::Key(field.to_owned()));
            }
            let hint = if expected.is_empty() {
                String::new()
            } else {
                format!(" ({expected})")
            };
            return ConfigError::UnknownKey {
                origin,
                key: display_path(&path),
                hint,
            };
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            path.push(Seg::Key(rest.trim_end_matches('`').to_owned()));
            return ConfigError::MissingKey {
                origin,
                key: display_path(&path),
            };
        }
        let value = value_at(table, &path).map_or_else(String::new, |value| match value {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        let reason = match message.split_once(", expected ") {
            Some((_, expected)) if expected.starts_with("struct ") || expected == "a map" => {
                "expected a table".to_owned()
            }
            Some((_, "a sequence")) => "expected an array".to_owned(),
            Some((_, expected)) => format!("expected {expected}"),
            None => message.to_owned(),
        };
        ConfigError::InvalidValue {
            origin,
            key: display_path(&path),
            value,
            reason,
        }
    })
}

/// One step of a key's path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// Path of table keys.
fn keys(names: &[&str]) -> Vec<Seg> {
    names.iter().map(|n| Seg::Key((*n).to_owned())).collect()
}

/// `media.port_base`, `ice_servers[1].urls`, `streams."a.b".view_token`.
fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The value at `path` in `table`.
fn value_at<'t>(table: &'t Table, path: &[Seg]) -> Option<&'t Value> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(first) = first else {
        return None;
    };
    let mut value = table.get(first)?;
    for seg in rest {
        value = match (seg, value) {
            (Seg::Key(key), Value::Table(t)) => t.get(key)?,
            (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
            _ => return None,
        };
    }
    Some(value)
}

/// The path of the deepest key or value of the document `text` whose span holds `span`.
fn locate(text: &str, span: &Range<usize>) -> Option<Vec<Seg>> {
    fn walk_table(
        table: &DeTable<'_>,
        span: &Range<usize>,
        path: &mut Vec<Seg>,
        best: &mut Vec<Seg>,
    ) {
        for (key, value) in table.iter() {
            path.push(Seg::Key(key.get_ref().to_string()));
            if key.span() == *span {
                keep(path, best);
            }
            walk_value(value, span, path, best);
            path.pop();
        }
    }
    fn walk_value(
        value: &toml::Spanned<DeValue<'_>>,
        span: &Range<usize>,
        path: &mut Vec<Seg>,
        best: &mut Vec<Seg>,
    ) {
        let own = value.span();
        if own.start <= span.start && span.end <= own.end {
            keep(path, best);
        }
        match value.get_ref() {
            DeValue::Table(table) => walk_table(table, span, path, best),
            DeValue::Array(array) => {
                for (i, item) in array.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk_value(item, span, path, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    fn keep(path: &[Seg], best: &mut Vec<Seg>) {
        if path.len() > best.len() {
            *best = path.to_vec();
        }
    }
    let document = DeTable::parse(text).ok()?;
    let mut best = Vec::new();
    walk_table(document.get_ref(), span, &mut Vec::new(), &mut best);
    (!best.is_empty()).then_some(best)
}

/// Who set which key (table keys only; an array is set whole).
#[derive(Debug, Default)]
struct Origins(BTreeMap<Vec<String>, Origin>);

impl Origins {
    /// Records that `origin` set the key at `path` (and everything under it).
    fn set(&mut self, path: Vec<String>, origin: Origin) {
        self.0.retain(|k, _| !k.starts_with(&path));
        self.0.insert(path, origin);
    }

    /// Who set the key at `path`: the origin recorded for it or its nearest parent.
    fn of(&self, path: &[Seg]) -> Origin {
        let mut keys: Vec<String> = path
            .iter()
            .map_while(|seg| match seg {
                Seg::Key(key) => Some(key.clone()),
                Seg::Index(_) => None,
            })
            .collect();
        loop {
            if let Some(origin) = self.0.get(&keys) {
                return origin.clone();
            }
            if keys.pop().is_none() {
                return Origin::Default;
            }
        }
    }
}

/// `` `a`, `b`, `c` ``.
fn backticked<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
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
    use std::net::Ipv4Addr;

    use super::*;

    /// Loads with a file of this text (never written to disk) and these variables.
    fn load(text: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load_layers(
            text.map(|t| (Origin::File("/x.toml".into()), t)),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    fn error(text: Option<&str>, env: &[(&str, &str)]) -> String {
        load(text, env).unwrap_err().to_string()
    }

    #[test]
    fn the_default_loads_with_the_documented_values() {
        let config = Config::from_default();
        assert_eq!(config.http.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.http.cors_origin, "*");
        assert_eq!(config.http.max_body_bytes, 65536);
        assert_eq!(config.media.shards, 0);
        assert_eq!(config.media.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(config.media.port_base, 50000);
        assert_eq!(config.media.engine, EngineChoice::Auto);
        assert!(config.media.gso && !config.media.gro);
        assert!(!config.media.uring_sqpoll && !config.media.uring_zero_copy);
        assert!(config.media.pin_threads);
        assert_eq!(config.media.max_participants_per_shard, 1000);
        assert_eq!(config.media.keyframe_interval_ms, 1000);
        assert!(config.media.announce.is_empty());
        assert!(config.media.advertise_loopback);
        assert!(!config.media.allow_ipv6);
        assert_eq!(config.whep.retry_after_secs, 2);
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
        assert_eq!(config.ice_servers.len(), 1);
        assert_eq!(config.ice_servers[0].username.as_deref(), Some("user"));
        let demo = &config.streams["demo"];
        assert_eq!(demo.publish_token.as_deref(), Some("change-me"));
        assert_eq!(demo.view_token.as_deref(), Some("change-me-too"));
    }

    #[test]
    fn a_file_overriding_one_key_keeps_the_other_defaults() {
        let path =
            std::env::temp_dir().join(format!("ringcast-config-{}.toml", std::process::id()));
        std::fs::write(&path, "[media]\nport_base = 40000\n").unwrap();
        let config = Config::load(Some(&path), Vec::new());
        std::fs::remove_file(&path).unwrap();
        let config = config.unwrap();
        let default = Config::from_default();
        assert_eq!(config.media.port_base, 40000);
        assert_eq!(
            MediaConfig {
                port_base: 50000,
                ..config.media.clone()
            },
            default.media
        );
        assert_eq!(config.http, default.http);
        assert_eq!(config.log, default.log);
    }

    #[test]
    fn a_missing_or_broken_file_names_the_file() {
        let missing = Config::load(Some(Path::new("/nonexistent/ringcast.toml")), Vec::new());
        let message = missing.unwrap_err().to_string();
        assert!(
            message.starts_with("config file /nonexistent/ringcast.toml: "),
            "{message}"
        );
        let message = error(Some("[media\nport_base = 1\n"), &[]);
        assert!(
            message.starts_with("config file /x.toml: TOML parse error at line 1"),
            "{message}"
        );
    }

    #[test]
    fn an_unknown_key_in_a_file_is_named() {
        let message = error(Some("[media]\nportbase = 40000\n"), &[]);
        assert!(
            message
                .starts_with("config file /x.toml: unknown key `media.portbase` (expected one of"),
            "{message}"
        );
        assert!(message.contains("`port_base`"), "{message}");
        assert_eq!(
            error(Some("[htpp]\nlisten = \"0.0.0.0:1\"\n"), &[])
                .split(" (")
                .next()
                .unwrap(),
            "config file /x.toml: unknown key `htpp`"
        );
        assert!(
            error(Some("[media.extra]\nx = 1\n"), &[])
                .starts_with("config file /x.toml: unknown key `media.extra`")
        );
        assert!(
            error(Some("[streams.demo]\npublish_tokn = \"k\"\n"), &[])
                .starts_with("config file /x.toml: unknown key `streams.demo.publish_tokn`")
        );
        assert!(
            error(
                Some("[[ice_servers]]\nurls = [\"stun:a\"]\n[[ice_servers]]\nurls = [\"stun:b\"]\nuser = \"u\"\n"),
                &[]
            )
            .starts_with("config file /x.toml: unknown key `ice_servers[1].user`")
        );
        assert_eq!(
            error(Some("[[ice_servers]]\nusername = \"u\"\n"), &[]),
            "config file /x.toml: missing key `ice_servers[0].urls`"
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_in_a_file_is_named() {
        assert_eq!(
            error(Some("[media]\nport_base = \"abc\"\n"), &[]),
            "config file /x.toml: invalid value `abc` for `media.port_base`: expected u16"
        );
        assert_eq!(
            error(Some("[media]\nport_base = 70000\n"), &[]),
            "config file /x.toml: invalid value `70000` for `media.port_base`: expected u16"
        );
        assert_eq!(
            error(Some("[media]\nengine = \"iouring\"\n"), &[]),
            "config file /x.toml: invalid value `iouring` for `media.engine`: \
             expected one of `auto`, `uring`, `epoll`"
        );
        assert_eq!(
            error(Some("[media]\nannounce = [\"1.2.3.4\", \"nat\"]\n"), &[]),
            "config file /x.toml: invalid value `nat` for `media.announce[1]`: \
             invalid IP address syntax"
        );
        assert_eq!(
            error(Some("media = 5\n"), &[]),
            "config file /x.toml: invalid value `5` for `media`: expected a table"
        );
        assert_eq!(
            error(Some("[streams.\"a.b\"]\nview_token = 5\n"), &[]),
            "config file /x.toml: invalid value `5` for `streams.\"a.b\".view_token`: \
             expected a string"
        );
    }

    #[test]
    fn the_environment_overrides_numbers_bools_strings_and_arrays() {
        let config = load(
            None,
            &[
                ("PATH", "/usr/bin"),
                ("RINGCAST_CONFIG", "/etc/ringcast.toml"),
                ("RINGCAST_MEDIA_PORT_BASE", "40000"),
                ("RINGCAST_MEDIA_PIN_THREADS", "false"),
                ("RINGCAST_HTTP_LISTEN", "127.0.0.1:9000"),
                ("RINGCAST_HTTP_CORS_ORIGIN", "https://example.org"),
                ("RINGCAST_MEDIA_ANNOUNCE", "1.2.3.4, 5.6.7.8"),
                ("RINGCAST_LOG_LEVEL", "debug"),
                ("RINGCAST_MEDIA_ENGINE", "uring"),
                ("RINGCAST_MEDIA_ENGINE", "epoll"),
                ("RINGCAST_MEDIA_GSO", "false"),
            ],
        )
        .unwrap();
        assert!(!config.media.gso);
        assert_eq!(config.media.port_base, 40000);
        assert!(!config.media.pin_threads);
        assert_eq!(config.http.listen, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(config.http.cors_origin, "https://example.org");
        let announce: Vec<IpAddr> = vec!["1.2.3.4".parse().unwrap(), "5.6.7.8".parse().unwrap()];
        assert_eq!(config.media.announce, announce);
        assert_eq!(config.log.level, "debug");
        assert_eq!(
            config.media.engine,
            EngineChoice::Epoll,
            "a later variable wins"
        );

        let config = load(
            None,
            &[("RINGCAST_MEDIA_ANNOUNCE", "[\"1.2.3.4\", \"5.6.7.8\"]")],
        );
        assert_eq!(config.unwrap().media.announce, announce);
        let config = load(None, &[("RINGCAST_MEDIA_ANNOUNCE", "")]);
        assert!(config.unwrap().media.announce.is_empty());
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let config = load(
            Some("[media]\nport_base = 40000\nshards = 2\n"),
            &[("RINGCAST_MEDIA_PORT_BASE", "41000")],
        )
        .unwrap();
        assert_eq!(config.media.port_base, 41000);
        assert_eq!(config.media.shards, 2);
    }

    #[test]
    fn a_bad_environment_value_names_the_variable_and_the_key() {
        assert_eq!(
            error(None, &[("RINGCAST_MEDIA_PORT_BASE", "abc")]),
            "environment RINGCAST_MEDIA_PORT_BASE: invalid value `abc` for `media.port_base`: \
             expected u16"
        );
        assert_eq!(
            error(None, &[("RINGCAST_MEDIA_PIN_THREADS", "yes")]),
            "environment RINGCAST_MEDIA_PIN_THREADS: invalid value `yes` for \
             `media.pin_threads`: expected a boolean"
        );
        assert_eq!(
            error(
                Some("[media]\nport_base = \"abc\"\n"),
                &[("RINGCAST_MEDIA_PORT_BASE", "x")]
            ),
            "environment RINGCAST_MEDIA_PORT_BASE: invalid value `x` for `media.port_base`: \
             expected u16"
        );
    }

    #[test]
    fn an_unknown_environment_section_or_key_names_the_variable() {
        assert!(
            error(None, &[("RINGCAST_MEDIA_PORTBASE", "1")])
                .starts_with("environment RINGCAST_MEDIA_PORTBASE: unknown key `media.portbase`")
        );
        assert!(
            error(None, &[("RINGCAST_MEDIUM_PORT_BASE", "1")])
                .starts_with("environment RINGCAST_MEDIUM_PORT_BASE: unknown key `medium`")
        );
        let message = error(None, &[("RINGCAST_STREAMS_DEMO_PUBLISH_TOKEN", "k")]);
        assert!(
            message.starts_with("environment RINGCAST_STREAMS_DEMO_PUBLISH_TOKEN: `streams`"),
            "{message}"
        );
        assert!(message.contains("config file"), "{message}");
        assert!(
            error(None, &[("RINGCAST_ICE_SERVERS_URLS", "stun:a")])
                .starts_with("environment RINGCAST_ICE_SERVERS_URLS: `streams` and `ice_servers`")
        );
        assert_eq!(
            error(None, &[("RINGCAST_LOG", "debug")]),
            "environment RINGCAST_LOG: expected RINGCAST_<SECTION>_<KEY>, e.g. RINGCAST_LOG_LEVEL"
        );
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(
            error(Some("[media]\nport_base = 65535\nshards = 2\n"), &[]),
            "config file /x.toml: invalid value `65535` for `media.port_base`: expected at most \
             65534 with 2 shards (`media.shards`), as shard i listens on UDP port port_base + i \
             <= 65535"
        );
        assert!(load(Some("[media]\nport_base = 65534\nshards = 2\n"), &[]).is_ok());
        assert!(
            error(None, &[("RINGCAST_MEDIA_SHARDS", "20000")]).starts_with(
                "environment RINGCAST_MEDIA_SHARDS: invalid value `20000` for `media.shards`: \
                 expected at most 64"
            )
        );
        assert_eq!(
            error(None, &[("RINGCAST_MEDIA_MAX_PARTICIPANTS_PER_SHARD", "0")]),
            "environment RINGCAST_MEDIA_MAX_PARTICIPANTS_PER_SHARD: invalid value `0` for \
             `media.max_participants_per_shard`: expected at least 1"
        );
        assert_eq!(
            error(Some("[media]\nkeyframe_interval_ms = 50\n"), &[]),
            "config file /x.toml: invalid value `50` for `media.keyframe_interval_ms`: \
             expected at least 100"
        );
        assert!(
            error(Some("[http]\ncors_origin = \"\"\n"), &[]).starts_with(
                "config file /x.toml: invalid value `` for `http.cors_origin`: expected"
            )
        );
        assert!(
            error(Some("[[ice_servers]]\nurls = [\"http://x\"]\n"), &[]).starts_with(
                "config file /x.toml: invalid value `http://x` for `ice_servers[0].urls`"
            )
        );
        assert!(
            error(Some("[streams.demo]\npublish_token = \"\"\n"), &[]).starts_with(
                "config file /x.toml: invalid value `` for `streams.demo.publish_token`"
            )
        );
    }

    #[test]
    fn shard_count_resolves_zero_to_the_cores() {
        let mut config = Config::from_default();
        config.media.shards = 3;
        assert_eq!(config.shard_count(), 3);
        config.media.shards = 0;
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(config.shard_count(), cores);
    }

    #[test]
    fn ice_servers_become_link_headers() {
        let config = load(
            Some(
                "[[ice_servers]]\nurls = [\"stun:stun.example.org\"]\n\
                 [[ice_servers]]\nurls = [\"turn:turn.example.org?transport=udp\", \"turns:turn.example.org\"]\n\
                 username = \"user\"\ncredential = \"pa\\\"ss\"\n",
            ),
            &[],
        )
        .unwrap();
        assert_eq!(
            config.ice_links(),
            vec![
                "<stun:stun.example.org>; rel=\"ice-server\"".to_owned(),
                "<turn:turn.example.org?transport=udp>; rel=\"ice-server\"; username=\"user\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\""
                    .to_owned(),
                "<turns:turn.example.org>; rel=\"ice-server\"; username=\"user\"; \
                 credential=\"pa\\\"ss\"; credential-type=\"password\""
                    .to_owned(),
            ]
        );
    }
}
