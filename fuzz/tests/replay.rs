//! Every committed input of `fuzz/corpus/<target>/` (seeds, and crashes found and fixed) runs
//! through the same function its fuzz target calls, on stable, in the ordinary `cargo test`.

use std::path::PathBuf;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn replay(target: &str) {
    let (_, run) = ringcast_fuzz::TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap();
    let inputs = corpus(target);
    assert!(!inputs.is_empty(), "no corpus for {target}");
    for (path, bytes) in inputs {
        eprintln!("{target}: {}", path.display());
        run(&bytes);
    }
}

#[test]
fn datagram_corpus() {
    replay("datagram");
}

#[test]
fn offer_corpus() {
    replay("offer");
}

#[test]
fn sdpfrag_corpus() {
    replay("sdpfrag");
}

#[test]
fn room_message_corpus() {
    replay("room_message");
}

#[test]
fn config_corpus() {
    replay("config");
}

/// The room seed is a Chromium-shaped member offer (Chromium's WHIP sections, then two video
/// and one audio receive-only copies and a data channel): it must build a member with those
/// slots, or the `offer` target would only ever see refusals for rooms.
#[test]
fn the_room_member_seed_builds_a_member() {
    let seed = corpus("offer")
        .into_iter()
        .find(|(p, _)| p.ends_with("chromium-shaped-room-member"))
        .expect("the room member seed");
    let offer = std::str::from_utf8(&seed.1[1..]).unwrap();
    let setup = ringcast_core::PeerSetup {
        cert: ringcast_core::generate_certificate().unwrap(),
        candidates: vec!["127.0.0.1:5000".parse().unwrap()],
        tcp_candidates: vec!["127.0.0.1:5000".parse().unwrap()],
        ice: ringcast_core::IceCreds {
            ufrag: "s0seedseed".into(),
            pass: "seedseedseedseedseedseed".into(),
        },
    };
    #[allow(clippy::disallowed_methods, reason = "a test builds its own peer")]
    let now = std::time::Instant::now();
    let (_, _, m) = ringcast_core::Peer::member(&setup, offer, &[None, None], 16, now)
        .unwrap_or_else(|e| panic!("{e}"));
    let mids: Vec<&str> = m.slots.iter().map(|s| s.mid.as_str()).collect();
    assert_eq!(mids, ["2", "3", "4"]);
    assert!(m.data_channel);
}

/// The `default` config seed is the shipped `config/ringcast.toml`, so the `config` target
/// starts from every key the server has now, not from an old copy.
#[test]
fn the_default_config_seed_is_the_shipped_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read(root.join("../config/ringcast.toml")).unwrap();
    let seed = std::fs::read(root.join("corpus/config/default")).unwrap();
    assert!(
        seed == shipped,
        "fuzz/corpus/config/default differs from config/ringcast.toml: copy it again"
    );
}
