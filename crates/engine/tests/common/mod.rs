//! What the engine's integration tests share.

use std::net::SocketAddr;
use std::time::Instant;

use ringcast_core::{Command, IceCreds, Peer, PeerSetup, SessionId, StreamId};
use ringcast_engine::ShardHandle;
use str0m::Rtc;
use str0m::media::{Direction, MediaKind, Mid};

/// Offer one sending `kind` section from `client`, answer it as a ringcast publisher (session
/// 1, stream 1) and place that on `handle`'s shard, with `tcp_candidates` answered after the
/// UDP one. Returns the section's mid.
pub fn add_publisher(
    runtime: &tokio::runtime::Runtime,
    handle: &ShardHandle,
    client: &mut Rtc,
    kind: MediaKind,
    tcp_candidates: Vec<SocketAddr>,
) -> Mid {
    let mut api = client.sdp_api();
    let mid = api.add_media(kind, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    let setup = PeerSetup {
        cert: ringcast_core::generate_certificate().unwrap(),
        candidates: vec![handle.local_addr()],
        tcp_candidates,
        ice: IceCreds {
            ufrag: "h0s1".into(),
            pass: "enginetestpasswordengine".into(),
        },
    };
    let (peer, answer, published) =
        Peer::publisher(&setup, &offer.to_sdp_string(), Instant::now()).unwrap();
    client
        .sdp_api()
        .accept_answer(
            pending,
            str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap(),
        )
        .unwrap();
    runtime
        .block_on(handle.call(Command::AddPublisher {
            session: SessionId(1),
            stream: StreamId(1),
            peer: Box::new(peer),
            published: Box::new(published),
            relay_to: 0,
        }))
        .unwrap();
    mid
}
