//! Validation: what the types cannot say. Each error names the key, its value and who set it.

use super::layers::{KeyPath, Layers};
use super::schema::IceServer;
use super::{Config, ConfigError, MAX_SHARDS, Origin};

/// Checks `config`, as loaded from `layers`; the first problem found is the error.
pub(super) fn check(config: &Config, layers: &Layers) -> Result<(), ConfigError> {
    let invalid = |path: KeyPath, value: String, reason: String| ConfigError::InvalidValue {
        origin: layers.origin(&path),
        key: path.to_string(),
        value,
        reason,
    };
    let http = &config.http;
    if http.cors_origin.is_empty() || http.cors_origin.chars().any(char::is_control) {
        return Err(invalid(
            KeyPath::of(&["http", "cors_origin"]),
            http.cors_origin.clone(),
            "expected an origin such as \"*\" or \"https://example.org\"".into(),
        ));
    }
    for (key, value) in [
        ("header_timeout_ms", http.header_timeout_ms),
        ("body_timeout_ms", http.body_timeout_ms),
        ("idle_timeout_ms", http.idle_timeout_ms),
    ] {
        if value < 100 {
            return Err(invalid(
                KeyPath::of(&["http", key]),
                value.to_string(),
                "expected at least 100".into(),
            ));
        }
    }
    for (key, value) in [
        ("max_connections", http.max_connections),
        (
            "max_connections_per_client",
            http.max_connections_per_client,
        ),
    ] {
        if value == 0 {
            return Err(invalid(
                KeyPath::of(&["http", key]),
                "0".into(),
                "expected at least 1".into(),
            ));
        }
    }
    // HTTPS needs both files: one alone is a mistake, not plain HTTP.
    for (key, value, (other_key, other)) in [
        ("tls_cert", &http.tls_cert, ("tls_key", &http.tls_key)),
        ("tls_key", &http.tls_key, ("tls_cert", &http.tls_cert)),
    ] {
        if !value.as_os_str().is_empty() && other.as_os_str().is_empty() {
            return Err(invalid(
                KeyPath::of(&["http", key]),
                value.display().to_string(),
                format!("`http.{other_key}` is empty: HTTPS needs both PEM files"),
            ));
        }
    }
    if http
        .admin_token
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid(
            KeyPath::of(&["http", "admin_token"]),
            http.admin_token.clone(),
            "expected a token without spaces (empty = no token)".into(),
        ));
    }
    let secret = &config.rooms.jwt_secret;
    if !secret.is_empty()
        && (secret.chars().count() < 32
            || secret.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(invalid(
            KeyPath::of(&["rooms", "jwt_secret"]),
            "(hidden)".into(),
            "expected at least 32 characters without spaces (empty = no access tokens)".into(),
        ));
    }
    for (room, secret) in &config.rooms.secrets {
        let name_ok = !room.is_empty()
            && room.len() <= 128
            && room
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
        if !name_ok {
            return Err(invalid(
                KeyPath::of(&["rooms", "secrets"]),
                room.clone(),
                "expected room names of 1-128 characters of A-Z a-z 0-9 - _ . ~".into(),
            ));
        }
        if secret.chars().count() < 32
            || secret.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                KeyPath::of(&["rooms", "secrets", room]),
                "(hidden)".into(),
                "expected at least 32 characters without spaces".into(),
            ));
        }
    }
    let rooms = &config.rooms;
    for (key, value, max) in [
        ("max_slots", rooms.max_slots as u64, 64),
        ("max_members", u64::from(rooms.max_members), 10_000),
    ] {
        if !(1..=max).contains(&value) {
            return Err(invalid(
                KeyPath::of(&["rooms", key]),
                value.to_string(),
                format!("expected 1 to {max}"),
            ));
        }
    }
    if let Some(admin) = http.admin_listen
        && admin == http.listen
        && admin.port() != 0
    {
        return Err(invalid(
            KeyPath::of(&["http", "admin_listen"]),
            admin.to_string(),
            "expected another address than `http.listen` (empty = serve the admin API there)"
                .into(),
        ));
    }
    let media = &config.media;
    if media.shards > MAX_SHARDS {
        return Err(invalid(
            KeyPath::of(&["media", "shards"]),
            media.shards.to_string(),
            format!("expected at most {MAX_SHARDS} (0 = one per core)"),
        ));
    }
    if media.max_participants_per_shard == 0 {
        return Err(invalid(
            KeyPath::of(&["media", "max_participants_per_shard"]),
            "0".into(),
            "expected at least 1".into(),
        ));
    }
    if media.affinity_limit == 0 {
        return Err(invalid(
            KeyPath::of(&["media", "affinity_limit"]),
            "0".into(),
            "expected at least 1".into(),
        ));
    }
    if media.uring_coalesce_us > 10_000 {
        return Err(invalid(
            KeyPath::of(&["media", "uring_coalesce_us"]),
            media.uring_coalesce_us.to_string(),
            "expected at most 10000 (10 ms)".into(),
        ));
    }
    if media.keyframe_interval_ms < 100 {
        return Err(invalid(
            KeyPath::of(&["media", "keyframe_interval_ms"]),
            media.keyframe_interval_ms.to_string(),
            "expected at least 100".into(),
        ));
    }
    if media.gop_cache_bytes != 0 && media.gop_cache_bytes < 65_536 {
        return Err(invalid(
            KeyPath::of(&["media", "gop_cache_bytes"]),
            media.gop_cache_bytes.to_string(),
            "expected 0 (off) or at least 65536 (a keyframe must fit)".into(),
        ));
    }
    if media.gop_cache_max_age_ms < 100 {
        return Err(invalid(
            KeyPath::of(&["media", "gop_cache_max_age_ms"]),
            media.gop_cache_max_age_ms.to_string(),
            "expected at least 100".into(),
        ));
    }
    if media.connect_timeout_ms < 1000 {
        return Err(invalid(
            KeyPath::of(&["media", "connect_timeout_ms"]),
            media.connect_timeout_ms.to_string(),
            "expected at least 1000".into(),
        ));
    }
    for (key, value) in [
        ("tcp_max_connections", media.tcp_max_connections),
        ("tcp_max_per_ip", media.tcp_max_per_ip),
    ] {
        if value < 1 {
            return Err(invalid(
                KeyPath::of(&["media", key]),
                value.to_string(),
                "expected at least 1".into(),
            ));
        }
    }
    if media.tcp_idle_timeout_ms < 1000 {
        return Err(invalid(
            KeyPath::of(&["media", "tcp_idle_timeout_ms"]),
            media.tcp_idle_timeout_ms.to_string(),
            "expected at least 1000".into(),
        ));
    }
    let limits = &config.limits;
    for (key, value) in [
        ("sessions_per_client", limits.sessions_per_client as usize),
        ("creations_per_second", limits.creations_per_second as usize),
        ("creation_burst", limits.creation_burst as usize),
        ("viewers_per_stream", limits.viewers_per_stream as usize),
        ("pending_sessions", limits.pending_sessions as usize),
        ("tracked_clients", limits.tracked_clients),
    ] {
        if value == 0 {
            return Err(invalid(
                KeyPath::of(&["limits", key]),
                "0".into(),
                "expected at least 1".into(),
            ));
        }
    }
    if limits.token_reserve >= limits.pending_sessions {
        return Err(invalid(
            KeyPath::of(&["limits", "token_reserve"]),
            limits.token_reserve.to_string(),
            format!(
                "expected less than `limits.pending_sessions` ({})",
                limits.pending_sessions
            ),
        ));
    }
    // With a token on some stream, each shard keeps seats for token holders: some must be left
    // for the others.
    let tokens = config
        .streams
        .values()
        .any(|s| s.publish_token.is_some() || s.view_token.is_some());
    let kept = (limits.token_reserve as usize).div_ceil(config.shard_count().max(1));
    if tokens && kept >= media.max_participants_per_shard {
        return Err(invalid(
            KeyPath::of(&["limits", "token_reserve"]),
            limits.token_reserve.to_string(),
            format!(
                "expected fewer than {} seats per shard (`media.max_participants_per_shard`) \
                 kept for token holders: ceil(token_reserve / {} shards) is {kept}",
                media.max_participants_per_shard,
                config.shard_count()
            ),
        ));
    }
    // Shard i listens on port_base + i: the last one must still be a port.
    let shards = config.shard_count();
    let base = usize::from(media.port_base);
    let max_shards = usize::from(u16::MAX) + 1 - base;
    if shards > max_shards {
        let shards_path = KeyPath::of(&["media", "shards"]);
        let base_path = KeyPath::of(&["media", "port_base"]);
        // Blame the key the user set, the port base when both or neither were.
        return Err(
            if layers.origin(&shards_path) != Origin::Default
                && layers.origin(&base_path) == Origin::Default
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
    for (i, server) in config.ice_servers.iter().enumerate() {
        let path = |key: &str| KeyPath::of(&["ice_servers"]).index(i).key(key);
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
        check_ice_secret(server, &|key| {
            let path = path(key);
            (layers.origin(&path), path.to_string())
        })?;
    }
    for (name, stream) in &config.streams {
        if name.is_empty() || name.contains('/') {
            return Err(invalid(
                KeyPath::of(&["streams"]),
                name.clone(),
                "expected a stream name: not empty, no `/`".into(),
            ));
        }
        for (key, token) in [
            ("publish_token", &stream.publish_token),
            ("view_token", &stream.view_token),
        ] {
            if let Some(token) = token
                && (token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(invalid(
                    KeyPath::of(&["streams", name, key]),
                    token.clone(),
                    "expected a non-empty token without spaces (remove the key to let anyone \
                     in)"
                    .into(),
                ));
            }
        }
    }
    Ok(())
}

/// The shortest and longest `credential_ttl_s`: a minute (the time to connect, with a margin)
/// to a week.
const CREDENTIAL_TTL_S: std::ops::RangeInclusive<u64> = 60..=604_800;

/// An entry's `secret` (never shown) and `credential_ttl_s`; `at` gives a key's origin and
/// full name.
fn check_ice_secret(
    server: &IceServer,
    at: &dyn Fn(&str) -> (Origin, String),
) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: String, reason: String| {
        let (origin, key) = at(key);
        ConfigError::InvalidValue {
            origin,
            key,
            value,
            reason,
        }
    };
    let hidden = || "(hidden)".to_owned();
    match &server.secret {
        Some(_) if server.username.is_some() || server.credential.is_some() => {
            return Err(invalid(
                "secret",
                hidden(),
                "expected either `secret` (credentials minted per session) or \
                 `username`/`credential`, not both"
                    .into(),
            ));
        }
        Some(secret)
            if secret.is_empty() || secret.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            return Err(invalid(
                "secret",
                hidden(),
                "expected coturn's `static-auth-secret`: not empty, without spaces".into(),
            ));
        }
        Some(_) | None => {}
    }
    if let Some(ttl) = server.credential_ttl_s {
        if server.secret.is_none() {
            return Err(invalid(
                "credential_ttl_s",
                ttl.to_string(),
                "expected only with `secret` (fixed credentials do not expire here)".into(),
            ));
        }
        if !CREDENTIAL_TTL_S.contains(&ttl) {
            return Err(invalid(
                "credential_ttl_s",
                ttl.to_string(),
                format!(
                    "expected {} to {} seconds",
                    CREDENTIAL_TTL_S.start(),
                    CREDENTIAL_TTL_S.end()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{error, load};

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
            error(None, &[("RINGCAST_MEDIA_URING_COALESCE_US", "20000")]),
            "environment RINGCAST_MEDIA_URING_COALESCE_US: invalid value `20000` for \
             `media.uring_coalesce_us`: expected at most 10000 (10 ms)"
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
    fn http_timeouts_caps_and_tls_files_are_checked() {
        assert_eq!(
            error(None, &[("RINGCAST_HTTP_HEADER_TIMEOUT_MS", "0")]),
            "environment RINGCAST_HTTP_HEADER_TIMEOUT_MS: invalid value `0` for \
             `http.header_timeout_ms`: expected at least 100"
        );
        assert_eq!(
            error(Some("[http]\nmax_connections_per_client = 0\n"), &[]),
            "config file /x.toml: invalid value `0` for `http.max_connections_per_client`: \
             expected at least 1"
        );
        assert!(
            error(Some("[http]\ntls_cert = \"/etc/cert.pem\"\n"), &[]).starts_with(
                "config file /x.toml: invalid value `/etc/cert.pem` for `http.tls_cert`: \
                     `http.tls_key` is empty"
            ),
        );
        assert!(
            load(
                Some("[http]\ntls_cert = \"/c.pem\"\ntls_key = \"/k.pem\"\n"),
                &[]
            )
            .is_ok()
        );
    }

    #[test]
    fn the_shard_count_or_the_port_base_is_blamed_whichever_was_set() {
        assert_eq!(
            error(
                Some("[media]\nport_base = 65535\n"),
                &[("RINGCAST_MEDIA_SHARDS", "2")]
            ),
            "config file /x.toml: invalid value `65535` for `media.port_base`: expected at most \
             65534 with 2 shards (`media.shards`), as shard i listens on UDP port port_base + i \
             <= 65535"
        );
        let message = error(
            Some("[media]\nport_base = 65535\nshards = 2\n"),
            &[("RINGCAST_MEDIA_SHARDS", "3")],
        );
        assert!(
            message.starts_with("config file /x.toml: invalid value `65535` for `media.port_base`"),
            "{message}"
        );
    }

    #[test]
    fn the_admin_settings_load_and_are_checked() {
        let config = load(
            None,
            &[
                ("RINGCAST_HTTP_ADMIN_LISTEN", "127.0.0.1:9090"),
                ("RINGCAST_HTTP_ADMIN_TOKEN", "s3cret"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.http.admin_listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
        assert_eq!(config.http.admin_token, "s3cret");
        let message = error(Some("[http]\nadmin_listen = \"nowhere\"\n"), &[]);
        assert!(
            message.starts_with(
                "config file /x.toml: invalid value `nowhere` for `http.admin_listen`"
            ),
            "{message}"
        );
        let message = error(
            Some("[http]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n"),
            &[],
        );
        assert!(message.contains("expected another address"), "{message}");
        let message = error(Some("[http]\nadmin_token = \"a b\"\n"), &[]);
        assert!(
            message.starts_with("config file /x.toml: invalid value `a b` for `http.admin_token`"),
            "{message}"
        );
    }

    #[test]
    fn admission_limits_are_at_least_1_and_the_token_reserve_below_the_pending_budget() {
        assert_eq!(
            error(None, &[("RINGCAST_LIMITS_SESSIONS_PER_CLIENT", "0")]),
            "environment RINGCAST_LIMITS_SESSIONS_PER_CLIENT: invalid value `0` for \
             `limits.sessions_per_client`: expected at least 1"
        );
        assert_eq!(
            error(Some("[limits]\ncreations_per_second = 0\n"), &[]),
            "config file /x.toml: invalid value `0` for `limits.creations_per_second`: \
             expected at least 1"
        );
        assert_eq!(
            error(
                Some("[limits]\npending_sessions = 10\ntoken_reserve = 10\n"),
                &[]
            ),
            "config file /x.toml: invalid value `10` for `limits.token_reserve`: expected \
             less than `limits.pending_sessions` (10)"
        );
        let config = load(
            Some("[limits]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n"),
            &[("RINGCAST_LIMITS_TOKEN_RESERVE", "0")],
        )
        .unwrap();
        assert_eq!(config.limits.trusted_proxies.len(), 2);
        assert_eq!(config.limits.token_reserve, 0);
    }

    #[test]
    fn the_affinity_limit_is_at_least_1() {
        assert_eq!(
            load(None, &[("RINGCAST_MEDIA_AFFINITY_LIMIT", "1000")])
                .unwrap()
                .media
                .affinity_limit,
            1000
        );
        assert_eq!(
            error(Some("[media]\naffinity_limit = 0\n"), &[]),
            "config file /x.toml: invalid value `0` for `media.affinity_limit`: \
             expected at least 1"
        );
        // Above the shard's capacity it is the capacity: lowering the capacity alone is fine.
        assert!(load(None, &[("RINGCAST_MEDIA_AFFINITY_LIMIT", "5000")]).is_ok());
        assert!(load(Some("[media]\nmax_participants_per_shard = 100\n"), &[]).is_ok());
    }

    #[test]
    fn room_secrets_are_long_enough_never_shown_and_rooms_limits_bounded() {
        let message = error(Some("[rooms.secrets]\nstandup = \"short\"\n"), &[]);
        assert!(
            message.contains("`rooms.secrets.standup`") && message.contains("at least 32"),
            "{message}"
        );
        assert!(!message.contains("short"), "{message}");
        let message = error(Some("[rooms]\nmax_slots = 0\n"), &[]);
        assert!(
            message.contains("`rooms.max_slots`") && message.contains("1 to 64"),
            "{message}"
        );
    }

    #[test]
    fn an_ice_server_has_a_secret_or_fixed_credentials_and_a_bounded_ttl() {
        let entry = |rest: &str| format!("[[ice_servers]]\nurls = [\"turn:t\"]\n{rest}");
        let config = load(Some(&entry("secret = \"north-wind\"\n")), &[]).unwrap();
        assert_eq!(config.ice_servers[0].credential_ttl_s(), 86_400);
        let config = load(
            Some(&entry("secret = \"north-wind\"\ncredential_ttl_s = 60\n")),
            &[],
        )
        .unwrap();
        assert_eq!(config.ice_servers[0].credential_ttl_s(), 60);
        for both in ["username = \"u\"\n", "credential = \"c\"\n"] {
            let message = error(
                Some(&entry(&format!("secret = \"north-wind\"\n{both}"))),
                &[],
            );
            assert_eq!(
                message,
                "config file /x.toml: invalid value `(hidden)` for `ice_servers[0].secret`: \
                 expected either `secret` (credentials minted per session) or \
                 `username`/`credential`, not both"
            );
        }
        let message = error(Some(&entry("secret = \"north wind\"\n")), &[]);
        assert!(message.contains("`ice_servers[0].secret`"), "{message}");
        assert!(!message.contains("north"), "{message}");
        for ttl in ["59", "604801"] {
            assert_eq!(
                error(
                    Some(&entry(&format!(
                        "secret = \"north-wind\"\ncredential_ttl_s = {ttl}\n"
                    ))),
                    &[]
                ),
                format!(
                    "config file /x.toml: invalid value `{ttl}` for \
                     `ice_servers[0].credential_ttl_s`: expected 60 to 604800 seconds"
                )
            );
        }
        let message = error(Some(&entry("credential_ttl_s = 600\n")), &[]);
        assert!(
            message.contains("`ice_servers[0].credential_ttl_s`")
                && message.contains("only with `secret`"),
            "{message}"
        );
        let config = load(Some(&entry("secret = \"north-wind\"\n")), &[]).unwrap();
        let shown = format!("{config:?}");
        assert!(!shown.contains("north-wind"), "{shown}");
        // Nor in errors of type or syntax.
        let message = error(Some(&entry("secret = [\"north-wind\"]\n")), &[]);
        assert_eq!(
            message,
            "config file /x.toml: invalid value `(hidden)` for `ice_servers[0].secret`: \
             expected a string"
        );
        let message = error(Some(&entry("secret = \"north-wind\n")), &[]);
        assert!(message.contains("TOML parse error at line 3"), "{message}");
        assert!(!message.contains("north"), "{message}");
        let message = error(Some("[rooms.secrets]\nstandup = \"north-wind\n"), &[]);
        assert!(!message.contains("north"), "{message}");
        // Other lines are still quoted.
        let message = error(Some("[media]\nport_base = \"north-wind\n"), &[]);
        assert!(message.contains("north-wind"), "{message}");
    }

    #[test]
    fn the_jwt_secret_is_long_enough_and_never_shown() {
        let message = error(Some("[rooms]\njwt_secret = \"short\"\n"), &[]);
        assert!(
            message.contains("`rooms.jwt_secret`") && message.contains("at least 32"),
            "{message}"
        );
        assert!(!message.contains("short"), "{message}");
        let config = load(
            Some("[rooms]\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n"),
            &[],
        )
        .unwrap();
        assert_eq!(config.rooms.jwt_secret.len(), 32);
    }
}
