//! HTTP for signalling, the same for WHIP/WHEP and Janus: the client, the causes of its
//! failures as the errors table names them, and the parts of the server's URL.

use std::time::Duration;

/// An HTTP client for signalling.
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

/// The cause of a failed request as it goes into the errors table.
pub fn cause(error: &ureq::Error) -> String {
    match error {
        ureq::Error::Timeout(_) => "timeout".into(),
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            "http connection refused".into()
        }
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => "timeout".into(),
        ureq::Error::Io(_) => "http io".into(),
        ureq::Error::ConnectionFailed => "http connection refused".into(),
        _ => "http protocol".into(),
    }
}

/// Whether the URL's host is a loopback address or `localhost`.
pub fn loopback_url(url: &str) -> bool {
    host_of(url).is_some_and(|h| {
        h == "localhost"
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

/// The host part of an http URL, without brackets and port.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// The absolute URL of `location` (a `Location` header), relative to the server at `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else {
        let origin = base
            .strip_prefix("http://")
            .and_then(|r| r.split('/').next())
            .map_or(base.to_string(), |a| format!("http://{a}"));
        format!("{origin}/{}", location.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert!(loopback_url("http://127.0.0.1:8080"));
        assert!(loopback_url("http://localhost:8080/"));
        assert!(loopback_url("http://[::1]:8080"));
        assert!(!loopback_url("http://10.1.2.3:8080"));
        assert_eq!(host_of("http://example.org"), Some("example.org".into()));
        assert_eq!(
            absolute("http://127.0.0.1:8080/", "/whep/a/b"),
            "http://127.0.0.1:8080/whep/a/b"
        );
        assert_eq!(absolute("http://h:1", "http://x/y"), "http://x/y");
    }
}
