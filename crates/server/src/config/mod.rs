//! The configuration: typed sections ([`schema`]), how they are loaded ([`layers`]) and checked
//! ([`validate`]).
//!
//! `config/ringcast.toml` is compiled in ([`DEFAULT_CONFIG`]) and is the only source of default
//! values. Loading merges, last one winning (tables key by key; values and arrays replaced
//! whole):
//!
//! 1. the compiled-in file;
//! 2. the user's file (`--config`, `RINGCAST_CONFIG`);
//! 3. the `RINGCAST_<SECTION>_<KEY>` environment variables, each naming one key of the
//!    compiled-in file, its value read as the type of that key there (the binary passes its
//!    command-line flags, `--engine`, as such variables);
//!
//! then deserializes the result (`deny_unknown_fields` everywhere) and validates it.
//!
//! Every value remembers where it came from ([`Origin`]), so an error names the key and the
//! file or variable that set it:
//!
//! ```text
//! config file /etc/ringcast.toml: unknown key `media.portbase` (expected one of `shards`, …)
//! environment RINGCAST_MEDIA_PORT_BASE: invalid value `abc` for `media.port_base`: expected u16
//! ```

mod layers;
pub mod schema;
mod validate;

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

pub use layers::Origin;
pub use schema::{Config, EngineChoice};

use layers::Layers;

/// Most shards one process runs (relay interest is a 64-bit mask of shards).
pub const MAX_SHARDS: usize = 64;

/// The compiled-in default configuration, `config/ringcast.toml`: every key with its default
/// value and its documentation.
pub const DEFAULT_CONFIG: &str = include_str!("../../../../config/ringcast.toml");

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
        match (file, text.as_deref()) {
            (Some(path), Some(text)) => Config::load_text(path, text, env),
            _ => load_layers(None, env),
        }
    }

    /// Like [`Config::load`] with a file's text given instead of read from `path` (which only
    /// names it in errors): what the config fuzz target calls.
    pub fn load_text(
        path: &Path,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        load_layers(Some((Origin::File(path.to_owned()), text)), env)
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

    /// The address the shard sockets bind: `media.bind`, except that with `media.allow_ipv6`
    /// the IPv4 wildcard (the default) becomes the IPv6 one, whose sockets are dual-stack: one
    /// port per shard serves IPv4 and IPv6 clients alike.
    pub fn shard_bind_ip(&self) -> IpAddr {
        match self.media.bind {
            IpAddr::V4(v4) if v4.is_unspecified() && self.media.allow_ipv6 => {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            }
            ip => ip,
        }
    }

    /// The ICE servers as the control plane announces them: fixed credentials as given, or
    /// credentials minted per session from `secret`.
    pub fn ice_servers(&self) -> Vec<ringcast_http::IceServer> {
        use ringcast_http::{IceCredentials, IceServer};
        self.ice_servers
            .iter()
            .map(|server| IceServer {
                urls: server.urls.clone(),
                credentials: match &server.secret {
                    Some(secret) => IceCredentials::Minted {
                        secret: secret.clone(),
                        ttl: std::time::Duration::from_secs(server.credential_ttl_s()),
                    },
                    None => IceCredentials::Fixed {
                        username: server.username.clone(),
                        credential: server.credential.clone(),
                    },
                },
            })
            .collect()
    }
}

/// Loads the defaults, then `user` (a file's origin and text), then `env`, then validates.
fn load_layers(
    user: Option<(Origin, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let layers = Layers::new(user, env)?;
    let config: Config = layers.extract()?;
    validate::check(&config, &layers)?;
    Ok(config)
}

/// Loading from text and variables, for the tests of every part of the configuration.
#[cfg(test)]
mod testing {
    use super::{Config, ConfigError, Origin, load_layers};

    /// Loads with a file of this text (never written to disk) and these variables.
    pub(super) fn load(text: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        load_layers(
            text.map(|t| (Origin::File("/x.toml".into()), t)),
            env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        )
    }

    /// The message of the error that loading this file and these variables gives.
    pub(super) fn error(text: Option<&str>, env: &[(&str, &str)]) -> String {
        load(text, env).unwrap_err().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{error, load};
    use super::*;

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
    fn shard_count_resolves_zero_to_the_cores() {
        let mut config = Config::from_default();
        config.media.shards = 3;
        assert_eq!(config.shard_count(), 3);
        config.media.shards = 0;
        let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        assert_eq!(config.shard_count(), cores);
    }

    #[test]
    fn allow_ipv6_turns_the_ipv4_wildcard_into_the_dual_stack_one() {
        let mut config = Config::from_default();
        assert_eq!(config.shard_bind_ip(), IpAddr::from([0, 0, 0, 0]));
        config.media.allow_ipv6 = true;
        assert_eq!(config.shard_bind_ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        for bind in ["127.0.0.1", "::", "::1", "192.0.2.1"] {
            config.media.bind = bind.parse().unwrap();
            assert_eq!(config.shard_bind_ip(), config.media.bind, "{bind}");
        }
    }

    #[test]
    fn ice_servers_keep_fixed_credentials_or_mint_from_the_secret() {
        use ringcast_http::IceCredentials;
        let config = load(
            Some(
                "[[ice_servers]]\nurls = [\"stun:stun.example.org\"]\n\
                 [[ice_servers]]\nurls = [\"turn:a?transport=udp\", \"turns:a\"]\n\
                 username = \"user\"\ncredential = \"pass\"\n\
                 [[ice_servers]]\nurls = [\"turn:b\"]\nsecret = \"north-wind\"\n\
                 credential_ttl_s = 3600\n",
            ),
            &[],
        )
        .unwrap();
        let servers = config.ice_servers();
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[1].urls, ["turn:a?transport=udp", "turns:a"]);
        assert!(matches!(
            &servers[0].credentials,
            IceCredentials::Fixed {
                username: None,
                credential: None
            }
        ));
        assert!(matches!(
            &servers[1].credentials,
            IceCredentials::Fixed { username: Some(u), credential: Some(c) } if u == "user" && c == "pass"
        ));
        assert!(matches!(
            &servers[2].credentials,
            IceCredentials::Minted { secret, ttl }
                if secret == "north-wind" && ttl.as_secs() == 3600
        ));
    }
}
