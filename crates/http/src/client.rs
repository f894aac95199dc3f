//! Who a request comes from: the peer of its TCP connection, or, when that peer is a trusted
//! reverse proxy (`limits.trusted_proxies`), the address the proxy put last in
//! `X-Forwarded-For`.
//!
//! Only the rightmost entry is believed: it is the one the trusted proxy appended itself;
//! anything left of it came from the client and can be made up.

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

/// The client address of a request from `peer` with `headers`.
pub(crate) fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpAddr]) -> IpAddr {
    let peer_ip = canonical(peer.ip());
    if !trusted.iter().any(|t| canonical(*t) == peer_ip) {
        return peer_ip;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').next())
        .and_then(|last| parse(last.trim()))
        .map_or(peer_ip, canonical)
}

/// An address as written in `X-Forwarded-For`: `192.0.2.1`, `2001:db8::1`, or with a port
/// (`192.0.2.1:4711`, `[2001:db8::1]:4711`), as some proxies write it.
fn parse(s: &str) -> Option<IpAddr> {
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

/// An IPv4-mapped IPv6 address (a dual-stack listener's view of an IPv4 peer) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let h = headers(&["198.51.100.1"]);
        assert_eq!(client_ip(peer, &h, &[]), ip("203.0.113.9"));
        assert_eq!(
            client_ip(peer, &h, &[ip("192.0.2.1")]),
            ip("203.0.113.9"),
            "an untrusted peer's X-Forwarded-For is ignored"
        );
        assert_eq!(
            client_ip(peer, &h, &[ip("203.0.113.9")]),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_forwarded_address_counts() {
        let proxy = [ip("127.0.0.1")];
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let cases = [
            (&["10.0.0.1, 198.51.100.1"][..], "198.51.100.1"),
            (&["10.0.0.1", "198.51.100.2"][..], "198.51.100.2"),
            (&["1.1.1.1, [2001:db8::7]:4711"][..], "2001:db8::7"),
            (&["198.51.100.3:4711"][..], "198.51.100.3"),
            (&["::ffff:198.51.100.4"][..], "198.51.100.4"),
            // Nothing usable: the proxy itself.
            (&["unknown"][..], "127.0.0.1"),
            (&[][..], "127.0.0.1"),
        ];
        for (xff, want) in cases {
            assert_eq!(client_ip(peer, &headers(xff), &proxy), ip(want), "{xff:?}");
        }
        // A dual-stack listener sees the proxy as a mapped address.
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        assert_eq!(
            client_ip(mapped, &headers(&["198.51.100.5"]), &proxy),
            ip("198.51.100.5")
        );
    }
}
