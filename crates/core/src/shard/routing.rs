//! Routing: a publisher's packets to local subscribers and to other shards, and keyframe
//! requests back to the publisher.
//!
//! A publisher's RTP packet is relayed once to each other shard with viewers, then rewritten
//! (SSRC by str0m's stream, payload type, sequence number, timestamp) into each local
//! subscriber's stream. A subscriber starts, and after a publisher change restarts, on a
//! keyframe; keyframe requests to one publisher track are merged into at most one per
//! interval, and one asked for inside the interval goes when it ends.

use std::time::{Duration, Instant};

use super::layers::StreamLayers;
use super::{Output, Role, Shard};
use crate::ids::{ShardId, StreamId, TrackKind};
use crate::keyframe::starts_keyframe;
use crate::peer::RtpIn;
use crate::rewrite::{Rewriter, Source};
use crate::sdp::CodecName;

/// Messages between shards.
#[derive(Debug, Clone)]
pub enum Relay {
    /// A publisher's packet for viewers on the receiving shard (sent once per shard).
    Rtp {
        /// The stream.
        stream: StreamId,
        /// The publisher session (changes on restart).
        epoch: u64,
        /// The shard the publisher is on.
        origin: ShardId,
        /// The packet.
        packet: RtpIn,
    },
    /// Viewers on the sending shard want a keyframe.
    KeyframeRequest {
        /// The stream.
        stream: StreamId,
        /// Which track.
        kind: TrackKind,
    },
}

/// A subscriber's track: what it is sent, renumbered into its own stream.
pub(super) struct SubTrack {
    pub(super) codec: CodecName,
    pub(super) rewriter: Rewriter,
    pub(super) waiting_keyframe: bool,
    /// The video layer the viewer pinned ([`crate::Command::SetLayer`]); `None`: chosen by its
    /// bandwidth estimate.
    pub(super) pinned: Option<u8>,
}

/// A stream's routing state on this shard.
#[derive(Default)]
pub(super) struct StreamEntry {
    pub(super) publisher: Option<usize>,
    /// The current publisher's session id; relayed packets carry it.
    pub(super) epoch: u64,
    pub(super) origin: Option<ShardId>,
    pub(super) subscribers: Vec<usize>,
    pub(super) relay_to: u64,
    pub(super) keyframes: [KeyframeThrottle; 2],
    /// The publisher's codec per kind (to see its keyframes go by).
    pub(super) codecs: [Option<CodecName>; 2],
    /// The video's layers and what they carry.
    pub(super) layers: StreamLayers,
}

impl StreamEntry {
    pub(super) fn is_unused(&self) -> bool {
        self.publisher.is_none() && self.subscribers.is_empty() && self.relay_to == 0
    }
}

/// Merges keyframe requests: at most one per interval; one asked for inside the interval is
/// sent when it ends (checked as the publisher's packets arrive).
#[derive(Default, Clone, Copy)]
pub(super) struct KeyframeThrottle {
    last: Option<Instant>,
    pending: bool,
}

impl KeyframeThrottle {
    fn ask(&mut self, now: Instant, interval: Duration) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < interval => {
                self.pending = true;
                false
            }
            _ => {
                self.last = Some(now);
                self.pending = false;
                true
            }
        }
    }

    fn due(&mut self, now: Instant, interval: Duration) -> bool {
        self.pending && self.ask(now, interval)
    }
}

impl Shard {
    /// A packet from a local publisher: relay it once to each other shard with viewers, then fan
    /// it out here.
    pub(super) fn publish(&mut self, now: Instant, stream: StreamId, epoch: u64, packet: RtpIn) {
        self.stats.rtp_in += 1;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let mut mask = entry.relay_to & !(1u64 << self.config.id.0);
        while mask != 0 {
            let shard = mask.trailing_zeros() as u16;
            mask &= mask - 1;
            self.stats.relayed += 1;
            self.out.push_back(Output::Relay {
                to: ShardId(shard),
                message: Relay::Rtp {
                    stream,
                    epoch,
                    origin: self.config.id,
                    packet: packet.clone(),
                },
            });
        }
        if packet.kind == TrackKind::Video {
            entry.layers.packet(packet.layer, packet.payload.len(), now);
        }
        // A keyframe going by answers every request merged so far: none is left pending.
        let k = packet.kind.index();
        if entry.codecs[k].is_some_and(|c| starts_keyframe(c, &packet.payload)) {
            entry.keyframes[k].pending = false;
        }
        // A merged keyframe request that waited out the interval goes now.
        if entry.keyframes[k].due(now, self.config.keyframe_interval)
            && let Some(pk) = entry.publisher
        {
            self.stats.keyframe_requests += 1;
            self.participants[pk].peer.request_keyframe(packet.kind);
            self.enqueue(pk);
        }
        self.fan_out(now, stream, epoch, &packet);
    }

    /// Forward one packet to every local subscriber of the stream: written to each one's peer,
    /// which is marked to be polled (never polled here, so the list cannot change under us).
    fn fan_out(&mut self, now: Instant, stream: StreamId, epoch: u64, packet: &RtpIn) {
        let Shard {
            streams,
            participants,
            ready,
            stats,
            ..
        } = self;
        let Some(entry) = streams.get(&stream) else {
            stats.drop_no_route += 1;
            return;
        };
        let kind = packet.kind;
        let source = Source {
            epoch,
            ssrc: packet.ssrc,
        };
        let mut want_keyframe = false;
        for &key in &entry.subscribers {
            let Some(p) = participants.get_mut(key) else {
                continue;
            };
            // Not before ICE and DTLS are up: str0m would queue it and flush it, stale, at
            // connect, and the keyframe would be spent on a viewer that cannot see it yet.
            if !p.peer.is_connected() {
                continue;
            }
            let Role::Subscriber { tracks, .. } = &mut p.role else {
                continue;
            };
            let Some(track) = tracks[kind.index()].as_mut() else {
                continue;
            };
            if !track.rewriter.follows(source) && kind == TrackKind::Video {
                track.waiting_keyframe = true;
            }
            if track.waiting_keyframe {
                if !starts_keyframe(track.codec, &packet.payload) {
                    want_keyframe = true;
                    continue;
                }
                track.waiting_keyframe = false;
            }
            let Some((seq, ts)) = track.rewriter.rewrite(source, packet.seq, packet.ts, now) else {
                continue;
            };
            if p.peer.write_rtp(
                kind,
                seq,
                ts,
                packet.marker,
                packet.payload.clone(),
                packet.ext,
                now,
            ) {
                stats.rtp_forwarded += 1;
                p.mark_ready(key, ready);
            }
        }
        if want_keyframe {
            self.request_keyframe(now, stream, kind);
        }
    }

    /// A keyframe is wanted on `stream`'s `kind` track: ask the publisher (throttled), locally
    /// or through its shard.
    pub(super) fn request_keyframe(&mut self, now: Instant, stream: StreamId, kind: TrackKind) {
        let interval = self.config.keyframe_interval;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        if !entry.keyframes[kind.index()].ask(now, interval) {
            return;
        }
        if let Some(pk) = entry.publisher {
            self.stats.keyframe_requests += 1;
            self.participants[pk].peer.request_keyframe(kind);
            self.enqueue(pk);
        } else if let Some(origin) = entry.origin.filter(|o| *o != self.config.id) {
            self.stats.relayed += 1;
            self.out.push_back(Output::Relay {
                to: origin,
                message: Relay::KeyframeRequest { stream, kind },
            });
        }
    }

    /// A message from another shard.
    pub(super) fn relay(&mut self, now: Instant, relay: Relay) {
        match relay {
            Relay::Rtp {
                stream,
                epoch,
                origin,
                packet,
            } => {
                self.stats.rtp_in += 1;
                match self.streams.get_mut(&stream) {
                    Some(entry) => entry.origin = Some(origin),
                    None => {
                        self.stats.drop_no_route += 1;
                        return;
                    }
                }
                self.fan_out(now, stream, epoch, &packet);
            }
            Relay::KeyframeRequest { stream, kind } => {
                if self
                    .streams
                    .get(&stream)
                    .is_some_and(|e| e.publisher.is_some())
                {
                    self.request_keyframe(now, stream, kind);
                }
            }
        }
    }
}
