//! The bodies of ringcast's fuzz targets: one module per target, each with a `run(&[u8])` that
//! must never panic. The libFuzzer binaries in `fuzz/fuzz_targets/` call these, and so does the
//! corpus replay test (`tests/replay.rs`) in the ordinary `cargo test`: one code path.
//!
//! - [`datagram`]: datagrams into a shard with a live publisher and viewers;
//! - [`offer`]: WHIP/WHEP offers through what the HTTP handler runs on them;
//! - [`sdpfrag`]: trickle-ICE / ICE-restart fragments of a PATCH;
//! - [`room_message`]: what a room member sends on its data channel;
//! - [`config`]: the configuration loader with a file's text and `RINGCAST_*` variables.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod datagram;
pub mod offer;
pub mod room_message;
pub mod sdpfrag;

/// A target's body: one input, no panic.
pub type Target = fn(&[u8]);

/// The targets by name, as the corpus folders are named.
pub const TARGETS: [(&str, Target); 5] = [
    ("datagram", datagram::run),
    ("offer", offer::run),
    ("sdpfrag", sdpfrag::run),
    ("room_message", room_message::run),
    ("config", config::run),
];
