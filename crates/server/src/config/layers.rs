//! Layering and provenance: the compiled-in defaults, then the user's file, then the
//! `RINGCAST_<SECTION>_<KEY>` environment variables, merged by figment.
//!
//! Each source is one figment provider ([`Layer`]) whose metadata records its [`Origin`]; every
//! value keeps the tag of the layer that set it, so an error names the key and the file or
//! variable that set it. Figment merges tables key by key and replaces values and arrays whole.
//!
//! A small adapter ([`env_layer`]) stands in for figment's `Env` provider, which cannot say
//! what this configuration needs:
//! - `Env` reads the process environment, while [`Config::load`](super::Config::load) takes the
//!   variables as an argument (the binary adds `--engine` as `RINGCAST_MEDIA_ENGINE`, tests pass
//!   their own);
//! - `Env::split("_")` would split `PORT_BASE`: here a variable names a section of the default
//!   file, and everything after that section's `_` is one key;
//! - a value is read as the type of its key in the default file: a string key keeps `5` a
//!   string, an array key takes a comma-separated list (or an array such as `["a", "b"]`);
//! - every variable must name a key of the default file, and one variable is one layer, so an
//!   error names that variable rather than "the environment".

use std::fmt;
use std::path::PathBuf;

use figment::error::Kind;
use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use serde::de::DeserializeOwned;

use super::{ConfigError, DEFAULT_CONFIG};

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

/// The path of a key, shown as `media.port_base`, `ice_servers[1].urls` or
/// `streams."a.b".view_token`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(Vec<Step>);

impl KeyPath {
    /// The path through these table keys.
    pub(super) fn of(keys: &[&str]) -> KeyPath {
        KeyPath(
            keys.iter()
                .map(|key| Step::Key((*key).to_owned()))
                .collect(),
        )
    }

    /// This path, then the table key `key`.
    pub(super) fn key(mut self, key: &str) -> KeyPath {
        self.0.push(Step::Key(key.to_owned()));
        self
    }

    /// This path, then the array index `index`.
    pub(super) fn index(mut self, index: usize) -> KeyPath {
        self.0.push(Step::Index(index));
        self
    }

    /// Whether the key holds a secret, which errors never show: an ICE server's `secret` and
    /// `credential`, `rooms.jwt_secret` and `rooms.secrets.*`.
    pub(super) fn is_secret(&self) -> bool {
        let key = |i: usize| match self.0.get(i) {
            Some(Step::Key(key)) => Some(key.as_str()),
            _ => None,
        };
        match (key(0), self.0.last()) {
            (Some("ice_servers"), Some(Step::Key(last))) => {
                last == "secret" || last == "credential"
            }
            (Some("rooms"), _) => matches!(key(1), Some("jwt_secret" | "secrets")),
            _ => false,
        }
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The configuration sources of one load, merged.
pub(super) struct Layers(Figment);

impl Layers {
    /// The compiled-in defaults, then `file` (its origin and text), then the `RINGCAST_*`
    /// variables of `env` in order, a later one winning; other variables and `RINGCAST_CONFIG`
    /// are skipped.
    pub(super) fn new(
        file: Option<(Origin, &str)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layers, ConfigError> {
        let defaults = Layer::parse(Origin::Default, DEFAULT_CONFIG)?;
        let mut figment = Figment::from(defaults.clone());
        if let Some((origin, text)) = file {
            figment = figment.merge(Layer::parse(origin, text)?);
        }
        for (var, raw) in env {
            if let Some(layer) = env_layer(&var, &raw, &defaults.data)? {
                figment = figment.merge(layer);
            }
        }
        Ok(Layers(figment))
    }

    /// The merged configuration as a `T`; an error names the key and who set it.
    pub(super) fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.0.extract().map_err(|error| self.explain(error))
    }

    /// Who set the key at `path`: the layer of its value, or of its nearest parent present.
    pub(super) fn origin(&self, path: &KeyPath) -> Origin {
        let keys: Vec<String> = path
            .0
            .iter()
            .map(|step| match step {
                Step::Key(key) => key.clone(),
                Step::Index(index) => index.to_string(),
            })
            .collect();
        let root = self.root();
        let (_, _, deepest) = walk(&root, &keys);
        self.origin_of(deepest)
    }

    /// The merged tables, each value tagged with its layer.
    fn root(&self) -> Value {
        let dict = self
            .0
            .data()
            .ok()
            .and_then(|mut profiles| profiles.remove(&Profile::Default))
            .unwrap_or_default();
        Value::from(dict)
    }

    /// The origin of the layer that set `value`.
    fn origin_of(&self, value: &Value) -> Origin {
        Origin::of(self.0.get_metadata(value.tag()))
    }

    /// Turns a deserialization error into one that names the key, its value and its origin.
    fn explain(&self, error: figment::Error) -> ConfigError {
        let root = self.root();
        let (mut key, value, _) = walk(&root, &error.path);
        let origin = Origin::of(error.metadata.as_ref());
        match error.kind {
            Kind::UnknownField(field, expected) => {
                if key.0.last() != Some(&Step::Key(field.clone())) {
                    key = key.key(&field);
                }
                ConfigError::UnknownKey {
                    origin,
                    key: key.to_string(),
                    hint: format!(" ({})", one_of(expected, "fields")),
                }
            }
            Kind::MissingField(field) => ConfigError::MissingKey {
                origin,
                key: key.key(&field).to_string(),
            },
            kind => ConfigError::InvalidValue {
                origin,
                key: key.to_string(),
                value: if key.is_secret() {
                    "(hidden)".to_owned()
                } else {
                    value.map_or_else(String::new, shown)
                },
                reason: reason(kind),
            },
        }
    }
}

/// The prefix of every configuration variable.
const ENV_PREFIX: &str = "RINGCAST_";
/// The variable that holds the file path (read by the CLI, skipped here).
const ENV_CONFIG: &str = "RINGCAST_CONFIG";
/// The top-level keys that only a file can set (arrays of tables, tables of tables).
const FILE_ONLY: [&str; 2] = ["streams", "ice_servers"];

/// Whether line `line` (from 1) of `text` may hold a secret: it names one, or it is in the
/// `[rooms.secrets]` table.
fn near_a_secret(text: &str, line: usize) -> bool {
    let lines: Vec<&str> = text.lines().collect();
    let end = line.clamp(1, lines.len().max(1));
    let names_one = |l: &str| l.contains("secret") || l.contains("credential");
    let here = lines.get(end - 1).is_some_and(|l| names_one(l));
    let table = lines[..end.min(lines.len())]
        .iter()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .is_some_and(|l| l.contains("secrets"));
    here || table
}

/// One configuration source: who it is and the tables it sets.
#[derive(Debug, Clone)]
struct Layer {
    origin: Origin,
    data: Dict,
}

impl Layer {
    /// The layer of a TOML document.
    fn parse(origin: Origin, text: &str) -> Result<Layer, ConfigError> {
        match Toml::from_str::<Dict>(text) {
            Ok(data) => Ok(Layer { origin, data }),
            Err(error) => {
                let line = error
                    .span()
                    .and_then(|span| text.get(..span.start))
                    .map_or(1, |before| before.matches('\n').count() + 1);
                // The parser quotes the line in error: not one that may hold a secret.
                let message = if near_a_secret(text, line) {
                    format!(
                        "TOML parse error at line {line} (not shown: it may hold a secret): {}",
                        error.message()
                    )
                } else {
                    error.to_string()
                };
                Err(ConfigError::Syntax { origin, message })
            }
        }
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        match &self.origin {
            Origin::Default => Metadata::named("compiled-in default configuration"),
            Origin::File(path) => Metadata::from("config file", Source::File(path.clone())),
            Origin::Env(var) => Metadata::from("environment", Source::Custom(var.clone())),
        }
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Map::from([(Profile::Default, self.data.clone())]))
    }
}

impl Origin {
    /// The origin whose [`Layer::metadata`] is `metadata`; a value of no layer (the merged
    /// root) counts as a default.
    fn of(metadata: Option<&Metadata>) -> Origin {
        match metadata.and_then(|metadata| metadata.source.as_ref()) {
            Some(Source::File(path)) => Origin::File(path.clone()),
            Some(Source::Custom(var)) => Origin::Env(var.clone()),
            _ => Origin::Default,
        }
    }
}

/// One step of a [`KeyPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// The layer of the environment variable `var`, or `None` when it is not a configuration
/// variable. It must name a key of a section of the compiled-in tables `defaults`; its value
/// is read as the type of that key there.
fn env_layer(var: &str, raw: &str, defaults: &Dict) -> Result<Option<Layer>, ConfigError> {
    let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
        return Ok(None);
    };
    if var == ENV_CONFIG {
        return Ok(None);
    }
    let env_error = |reason: String| ConfigError::Env {
        var: var.to_owned(),
        reason,
    };
    let name = rest.to_ascii_lowercase();
    if FILE_ONLY
        .iter()
        .any(|only| name == *only || name.starts_with(&format!("{only}_")))
    {
        return Err(env_error(
            "`streams` and `ice_servers` cannot be set from the environment; set them in the \
             config file"
                .into(),
        ));
    }
    let sections = defaults.iter().filter_map(|(section, value)| match value {
        Value::Dict(_, keys) => Some((section.as_str(), keys)),
        _ => None,
    });
    // The longest section that `name` starts with, then `_`; the rest is the key.
    let found = sections
        .clone()
        .filter_map(|(section, keys)| {
            let rest = name.strip_prefix(section)?;
            let key = if rest.is_empty() {
                rest
            } else {
                rest.strip_prefix('_')?
            };
            Some((section, keys, key))
        })
        .max_by_key(|(section, ..)| section.len());
    let Some((section, keys, key)) = found else {
        let section = name.split('_').next().unwrap_or_default();
        return Err(ConfigError::UnknownKey {
            origin: Origin::Env(var.to_owned()),
            key: section.to_owned(),
            hint: format!(
                " (expected one of {})",
                backticked(sections.map(|(section, _)| section))
            ),
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
        // Verbatim, unless quoted: `info`, `ringcast_core=debug,info`, `"*"`.
        Value::String(..) => match parsed(raw) {
            quoted @ Value::String(..) if raw.trim_start().starts_with('"') => quoted,
            _ => Value::from(raw),
        },
        Value::Array(..) => {
            let raw = raw.trim();
            if raw.starts_with('[') {
                parsed(raw)
            } else {
                Value::from(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(parsed)
                        .collect::<Vec<_>>(),
                )
            }
        }
        Value::Dict(..) => {
            return Err(env_error(format!(
                "`{section}.{key}` is a table; set its keys instead"
            )));
        }
        _ => parsed(raw),
    };
    let data = Dict::from([(
        section.to_owned(),
        Value::from(Dict::from([(key.to_owned(), value)])),
    )]);
    Ok(Some(Layer {
        origin: Origin::Env(var.to_owned()),
        data,
    }))
}

/// `raw` as figment reads an environment value: `40000`, `true`, `["a", "b"]`, `"quoted"`,
/// else the string itself. A value with a backslash and a non-ASCII character is taken
/// verbatim: figment 0.10.19 unescapes quoted strings counting characters as bytes, which
/// panics (`"é\n"`, found by the config fuzz target) or drops characters.
fn parsed(raw: &str) -> Value {
    if !raw.is_ascii() && raw.contains('\\') {
        return Value::from(raw);
    }
    let Ok(value) = raw.parse();
    value
}

/// Follows `keys` (as figment names them, indices as numbers) down from `root`: the path with
/// its indices told apart, the value at its end if present, and the deepest value present.
fn walk<'v>(root: &'v Value, keys: &[String]) -> (KeyPath, Option<&'v Value>, &'v Value) {
    let mut path = KeyPath::default();
    let mut at = Some(root);
    let mut deepest = root;
    for key in keys {
        at = match (at, key.parse::<usize>()) {
            (Some(Value::Array(_, items)), Ok(index)) => {
                path = path.index(index);
                items.get(index)
            }
            (Some(Value::Dict(_, dict)), _) => {
                path = path.key(key);
                dict.get(key)
            }
            _ => {
                path = path.key(key);
                None
            }
        };
        if let Some(value) = at {
            deepest = value;
        }
    }
    (path, at, deepest)
}

/// What was expected instead of a value, in the words of the configuration file.
fn reason(kind: Kind) -> String {
    match kind {
        Kind::InvalidType(_, expected)
        | Kind::InvalidValue(_, expected)
        | Kind::InvalidLength(_, expected) => {
            if expected.starts_with("struct ") || expected == "a map" {
                "expected a table".to_owned()
            } else if expected == "a sequence" {
                "expected an array".to_owned()
            } else {
                format!("expected {expected}")
            }
        }
        Kind::UnknownVariant(_, variants) => one_of(variants, "variants"),
        Kind::Message(message) => message,
        other => other.to_string(),
    }
}

/// `` expected one of `a`, `b` ``, as serde says it.
fn one_of(names: &[&str], what: &str) -> String {
    match names {
        [] => format!("there are no {what}"),
        [name] => format!("expected `{name}`"),
        names => format!("expected one of {}", backticked(names.iter().copied())),
    }
}

/// `` `a`, `b`, `c` ``.
fn backticked<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|name| format!("`{name}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as the user wrote it: a string bare, anything else as TOML would show it.
fn shown(value: &Value) -> String {
    match value {
        Value::String(_, s) => s.clone(),
        other => toml_like(other),
    }
}

/// A value in TOML syntax (`5`, `"a"`, `[1, 2]`, `{ a = 1 }`).
fn toml_like(value: &Value) -> String {
    match value {
        Value::String(_, s) => format!("{s:?}"),
        Value::Char(_, c) => format!("{:?}", c.to_string()),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_i128()
            .map(|i| i.to_string())
            .or_else(|| n.to_u128().map(|u| u.to_string()))
            .or_else(|| n.to_f64().map(|f| f.to_string()))
            .unwrap_or_default(),
        Value::Empty(..) => String::new(),
        Value::Array(_, items) => format!(
            "[{}]",
            items.iter().map(toml_like).collect::<Vec<_>>().join(", ")
        ),
        Value::Dict(_, dict) => format!(
            "{{ {} }}",
            dict.iter()
                .map(|(k, v)| format!("{} = {}", KeyPath::of(&[k.as_str()]), toml_like(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use crate::config::schema::MediaConfig;
    use crate::config::testing::{error, load};
    use crate::config::{Config, EngineChoice};

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
    fn a_wrong_value_inside_an_array_or_table_is_shown_as_written() {
        assert_eq!(
            error(Some("[media]\nport_base = [1, \"a\"]\n"), &[]),
            "config file /x.toml: invalid value `[1, \"a\"]` for `media.port_base`: \
             expected u16"
        );
        assert_eq!(
            error(Some("[media]\nbind = { a = true }\n"), &[]),
            "config file /x.toml: invalid value `{ a = true }` for `media.bind`: \
             expected IP address"
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
    fn a_string_key_from_the_environment_stays_a_string() {
        let config = load(
            None,
            &[
                ("RINGCAST_LOG_LEVEL", "ringcast_core=debug,info"),
                ("RINGCAST_HTTP_CORS_ORIGIN", "\"https://example.org\""),
                ("RINGCAST_WHIP_REPLACE_PUBLISHER", "true"),
            ],
        )
        .unwrap();
        assert_eq!(config.log.level, "ringcast_core=debug,info");
        assert_eq!(config.http.cors_origin, "https://example.org");
        assert!(config.whip.replace_publisher);
        assert_eq!(
            load(None, &[("RINGCAST_LOG_LEVEL", "5")])
                .unwrap()
                .log
                .level,
            "5"
        );
    }

    #[test]
    fn a_variable_names_a_section_then_one_key_underscores_and_all() {
        let config = load(
            None,
            &[("RINGCAST_MEDIA_MAX_PARTICIPANTS_PER_SHARD", "2000")],
        );
        assert_eq!(config.unwrap().media.max_participants_per_shard, 2000);
        let message = error(None, &[("RINGCAST_MEDIA__PORT_BASE", "1")]);
        assert!(
            message.starts_with(
                "environment RINGCAST_MEDIA__PORT_BASE: unknown key `media._port_base`"
            ),
            "{message}"
        );
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
    fn an_escape_after_a_non_ascii_character_is_taken_verbatim() {
        for raw in ["\"é\\n\"", "é\\", "[\"é\\t\"]"] {
            let config = load(None, &[("RINGCAST_LOG_LEVEL", raw)]).unwrap();
            assert_eq!(config.log.level, raw);
        }
        let message = error(None, &[("RINGCAST_MEDIA_SHARDS", "\"é\\n\"")]);
        assert!(message.contains("RINGCAST_MEDIA_SHARDS"), "{message}");
    }
}
