//! The sans-IO core of ringcast: everything a shard does, as a deterministic state machine
//! with no sockets, threads or clock.
//!
//! # The contract
//!
//! A [`Shard`] is driven like str0m's `Rtc` and quinn-proto's `Connection`:
//!
//! 1. Feed one input with [`Shard::handle_input`]: a datagram ([`Input::Datagram`]), the
//!    passing of time ([`Input::Timeout`]), a command from the control plane
//!    ([`Input::Command`]) or a message from another shard ([`Input::Relay`]). Every input
//!    carries `now`; the core never reads a clock.
//! 2. Drain [`Shard::poll_output`] until it returns [`Output::Timeout`]: datagrams to send
//!    ([`Output::Transmit`]), messages to other shards ([`Output::Relay`]), answers to commands
//!    ([`Output::Reply`]) and events for the control plane ([`Output::Event`]).
//! 3. Wait for the next input, or for the deadline the timeout named, then go to 1.
//!
//! Drain after every command, timeout and relay. Datagrams may come several in a row (a
//! receive batch) before one drain: the peers they route packets to are polled once for all of
//! them there. After each, [`Shard::drain_due`] says whether to drain before the batch ends. A
//! deadline is only correct after a full drain.
//!
//! # What it does per input
//!
//! Datagrams are demultiplexed by source address (a hash map); from an unknown address only a
//! STUN request whose USERNAME names a local ICE ufrag (another hash map) is taken, once
//! confirmed by that peer, and the address is learned. Only the participant the datagram
//! belongs to is touched. Timers live in a heap: only participants whose deadline passed are
//! touched on a timeout. No input ever scans all participants.
//!
//! A publisher's RTP packet is relayed once to each other shard with viewers, then rewritten
//! (SSRC by str0m's stream, payload type, sequence number, timestamp) into each local
//! subscriber's stream and handed to its str0m `Rtc`, which encrypts it and keeps it for
//! NACK/RTX.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod buffers;
pub mod control;
pub mod gop;
pub mod ids;
pub mod keyframe;
pub mod layers;
pub mod peer;
pub mod rewrite;
pub mod room;
pub mod sdp;
pub mod shard;
pub mod stats;
pub mod stun;

pub use buffers::{DATAGRAM_BUFFERS, DATAGRAM_CAPACITY};
pub use control::{Control, ControlConfig};
pub use ids::{RoomId, SessionId, ShardId, ShortSessionId, StreamId, TrackKind};
pub use layers::LayerInfo;
pub use peer::{Peer, PeerSetup, Published, SetupError, Transport, generate_certificate};
pub use shard::{
    Command, CommandError, DRAIN_AT_LEAST, DRAIN_EVERY, DRAIN_PACKETS, Input, MemberInfo, Output,
    Relay, Reply, RoomInfo, Shard, ShardConfig, ShardEvent, SlotInfo, Transmit,
};
pub use stats::ShardStats;
pub use str0m::IceCreds;
pub use str0m::config::DtlsCert;
