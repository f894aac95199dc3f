//! The `offer` target: a WHIP, WHEP or room offer through what the HTTP handler (`whip.rs` and
//! `rooms.rs`, `join`) runs on it: the body must be UTF-8 and not blank, then
//! [`Built::from_offer`] (the SDP scan, str0m's parse, the codec choice and the `Rtc` build with
//! its answer), for a publisher or for a viewer of a stream that publishes what Chromium's offer
//! sends; or [`Peer::member`] for a room member, in a new room or in one whose codecs are
//! Chromium's.
//!
//! Not the axum router itself: that needs shard threads and sockets per process, and spends
//! most of each input in tokio, tower and the shard's mailbox rather than on the offer. What
//! the router adds before this point (method, content type, stream name, token, body size) is
//! covered by `crates/http/tests/api.rs`.
//!
//! An input is one byte (bits 0-1: 0 publisher, 1 viewer, 2 member of a new room, 3 member of
//! a room with Chromium's codecs), then the offer.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Instant;

use ringcast_core::control::Built;
use ringcast_core::peer::Published;
use ringcast_core::{IceCreds, Peer, PeerSetup, generate_certificate};
use str0m::change::SdpAnswer;

/// Chromium's WHIP offer (the publisher a viewer input watches).
const CHROMIUM: &str = include_str!("../../tests/fixtures/sdp/chromium-whip.sdp");

/// Build the participant one input's offer asks for; a refusal is fine, a panic is not, and
/// an answer given must be SDP that str0m (so a client) can read back.
pub fn run(data: &[u8]) {
    let Some((&role, body)) = data.split_first() else {
        return;
    };
    let Ok(offer) = std::str::from_utf8(body) else {
        // The handler answers 400 "request body is not UTF-8 text".
        return;
    };
    if offer.trim().is_empty() {
        // The handler answers 400 "empty SDP offer".
        return;
    }
    let answer = match role & 3 {
        0 | 1 => {
            let receives = (role & 1 == 1).then(published);
            Built::from_offer(setup(), offer, receives, Instant::now())
                .ok()
                .map(|(_, answer)| answer)
        }
        kind => {
            let room = match kind {
                3 => published().tracks.clone(),
                _ => [None, None],
            };
            Peer::member(setup(), offer, &room, 16, Instant::now())
                .ok()
                .map(|(_, answer, membership)| {
                    assert!(membership.slots.len() <= 32, "{membership:?}");
                    answer
                })
        }
    };
    if let Some(answer) = answer
        && let Err(e) = SdpAnswer::from_sdp_string(&answer)
    {
        panic!("the answer does not parse back ({e}):\n{answer}");
    }
}

/// What the server's setup for one shard looks like (one certificate per process).
fn setup() -> &'static PeerSetup {
    static SETUP: OnceLock<PeerSetup> = OnceLock::new();
    SETUP.get_or_init(|| PeerSetup {
        cert: generate_certificate().expect("a DTLS certificate"),
        candidates: vec![SocketAddr::from(([127, 0, 0, 1], 5000))],
        // media.tcp is on by default: the answers carry the TCP candidate too.
        tcp_candidates: vec![SocketAddr::from(([127, 0, 0, 1], 5000))],
        ice: IceCreds {
            ufrag: "s0fuzzfuzz".into(),
            pass: "fuzzfuzzfuzzfuzzfuzzfuzz".into(),
        },
    })
}

/// What Chromium's offer publishes.
fn published() -> &'static Published {
    static PUBLISHED: OnceLock<Published> = OnceLock::new();
    PUBLISHED.get_or_init(|| {
        let offer = CHROMIUM
            .split("---- answer ----")
            .next()
            .unwrap_or(CHROMIUM);
        match Built::from_offer(setup(), offer, None, Instant::now()) {
            Ok((Built::Publisher(_, published), _)) => published,
            other => panic!("Chromium's offer does not build a publisher: {other:?}"),
        }
    })
}
