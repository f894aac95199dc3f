//! Routing: a publisher's packets to local subscribers and to other shards, and keyframe
//! requests back to the publisher.
//!
//! A publisher's RTP packet is relayed once to each other shard with viewers, then rewritten
//! (SSRC by str0m's stream, payload type, sequence number, timestamp) into each local
//! subscriber's stream. Audio goes to every subscriber; video goes by simulcast layer: each
//! viewer is on one layer at a time (a stream without simulcast has one), listed under it, so a
//! packet touches only the viewers of its own layer. A viewer moving to another layer is also
//! listed as switching to it and moves on that layer's next keyframe; its rewriter keeps its
//! sequence numbers and timestamps continuous. A subscriber starts, and after a publisher
//! change restarts, on a keyframe; keyframe requests to one publisher layer are merged into at
//! most one per interval, and one asked for inside the interval goes when it ends.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::rtp::Vp8Descriptor;

use super::layers::StreamLayers;
use super::replay::Replay;
use super::{Output, Participant, Role, Sends, Shard};
use crate::gop::{GopCache, GopLimits};
use crate::ids::{RoomId, ShardId, StreamId, TrackKind};
use crate::keyframe::{resolution, starts_keyframe};
use crate::layers::{LayerChoice, MAX_LAYERS};
use crate::peer::{OutRtp, Peer, RtpIn};
use crate::rewrite::{Rewriter, Source, Vp8Ids};
use crate::sdp::CodecName;

/// A viewer's layer is chosen again at least this often.
const CHOOSE_AGAIN: Duration = Duration::from_millis(500);

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
    /// Viewers on the sending shard want a keyframe of one video layer.
    KeyframeRequest {
        /// The stream.
        stream: StreamId,
        /// Which simulcast layer (0 without simulcast).
        layer: u8,
    },
    /// A room member's app message for members on the receiving shard.
    RoomMessage {
        /// The room.
        room: RoomId,
        /// The sender (not sent to).
        from: Option<StreamId>,
        /// The one member it is for (`None`: all but the sender).
        to: Option<StreamId>,
        /// The `message` as the members get it.
        json: Arc<str>,
    },
}

/// One subscribing track of a participant, as the stream lists name it: a WHEP viewer's track
/// (`track` is its kind's index) or a room member's slot (`track` is the slot's index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SubRef {
    pub(super) key: usize,
    pub(super) track: u8,
}

/// A subscriber's track: what it is sent, renumbered into its own stream.
pub(super) struct SubTrack {
    /// Audio or video.
    pub(super) kind: TrackKind,
    /// The peer's section it is sent on.
    pub(super) section: usize,
    /// The stream it shows (a viewer's one stream; a room slot's current source, if any).
    pub(super) stream: Option<StreamId>,
    /// A room slot's next source, which it moves to on that stream's next keyframe (listed as
    /// switching there meanwhile).
    pub(super) next: Option<StreamId>,
    pub(super) rewriter: Rewriter,
    /// Video: VP8 picture numbers kept continuous across its sources.
    pub(super) vp8: Vp8Ids,
    pub(super) waiting_keyframe: bool,
    /// Video: the layer it is sent now.
    pub(super) layer: u8,
    /// Video: the layer it moves to on that layer's next keyframe.
    pub(super) target: Option<u8>,
    /// Video: the layer the viewer pinned ([`crate::Command::SetLayer`]); `None`: chosen by its
    /// bandwidth estimate.
    pub(super) pinned: Option<u8>,
    /// Video: the choice by bandwidth estimate.
    pub(super) choice: LayerChoice,
    /// Video: the (minimum, desired) bitrates last given to its estimator.
    pub(super) bitrate_targets: (u64, u64),
    /// Video: being caught up from the keyframe cache.
    pub(super) replay: Option<Box<Replay>>,
    /// Video: when its layer is chosen again without a new estimate (layers come and go, and
    /// an estimator reports only changes).
    pub(super) choose_at: Option<Instant>,
}

impl SubTrack {
    pub(super) fn new(
        kind: TrackKind,
        section: usize,
        stream: Option<StreamId>,
        rewriter: Rewriter,
    ) -> Self {
        SubTrack {
            kind,
            section,
            stream,
            next: None,
            rewriter,
            vp8: Vp8Ids::default(),
            waiting_keyframe: kind == TrackKind::Video,
            layer: 0,
            target: None,
            pinned: None,
            choice: LayerChoice::default(),
            bitrate_targets: (0, 0),
            replay: None,
            choose_at: None,
        }
    }

    /// Rewrite one packet from `source` onto this track and send it to `peer` through `sends`
    /// (`vp8`: its VP8 payload descriptor; `retimed`: replayed from the keyframe cache, see
    /// [`Rewriter::rewrite_retimed`]). True when it waits in the peer, which must be polled.
    pub(super) fn forward(
        &mut self,
        peer: &mut Peer,
        sends: &mut Sends,
        source: Source,
        packet: &RtpIn,
        vp8: Option<&Vp8Descriptor>,
        retimed: bool,
    ) -> bool {
        let now = sends.now;
        let rewritten = if retimed {
            self.rewriter
                .rewrite_retimed(source, packet.seq, packet.ts, now)
        } else {
            self.rewriter.rewrite(source, packet.seq, packet.ts, now)
        };
        let Some((seq, ts)) = rewritten else {
            return false;
        };
        let patch = vp8.and_then(|d| self.vp8.patch(source, d));
        let forwarded = peer.send_rtp(
            self.section,
            OutRtp {
                seq,
                ts,
                marker: packet.marker,
                payload: packet.payload.clone(),
                ext: packet.ext,
                vp8: patch,
            },
            now,
            || sends.buffer(),
        );
        sends.forwarded(forwarded)
    }
}

/// The viewers of one video layer on this shard.
#[derive(Default)]
pub(super) struct LayerViewers {
    /// Viewers sent this layer now.
    pub(super) on: Vec<SubRef>,
    /// Viewers moving to this layer on its next keyframe (listed in `on` of another layer, or
    /// of another stream, meanwhile).
    pub(super) switching: Vec<SubRef>,
}

/// A stream's routing state on this shard.
#[derive(Default)]
pub(super) struct StreamEntry {
    pub(super) publisher: Option<usize>,
    /// The current publisher's session id; relayed packets carry it.
    pub(super) epoch: u64,
    pub(super) origin: Option<ShardId>,
    /// Local audio subscribers.
    pub(super) audio: Vec<SubRef>,
    /// Local video subscribers by layer.
    pub(super) video: [LayerViewers; MAX_LAYERS],
    pub(super) relay_to: u64,
    /// Keyframe requests per video layer.
    pub(super) keyframes: [KeyframeThrottle; MAX_LAYERS],
    /// The publisher's codec per kind (to see its keyframes go by).
    pub(super) codecs: [Option<CodecName>; 2],
    /// The video's layers and what they carry.
    pub(super) layers: StreamLayers,
    /// Per video layer, its latest keyframe and what followed (when the cache is on). Changed
    /// only by `fan_out`'s push, [`StreamEntry::clear_gops`] and [`remove_stream`], which keep
    /// the shard's running total of cached bytes in step.
    pub(super) gops: [Option<GopCache>; MAX_LAYERS],
    /// The publisher session the cached packets are from.
    pub(super) gop_epoch: u64,
    /// The room whose member publishes it (its audio levels rank the room's speakers; the
    /// entry stays while the member is in the room).
    pub(super) room: Option<RoomId>,
}

impl StreamEntry {
    /// Bytes its keyframe caches hold (one per layer, so a handful to add up).
    pub(super) fn gop_bytes(&self) -> u64 {
        self.gops.iter().flatten().map(|g| g.bytes() as u64).sum()
    }

    /// Empty its keyframe caches (another publisher session), taking their bytes off the
    /// shard's running total `held`.
    pub(super) fn clear_gops(&mut self, held: &mut u64) {
        *held -= self.gop_bytes();
        self.gops = Default::default();
    }

    pub(super) fn is_unused(&self) -> bool {
        self.publisher.is_none()
            && self.room.is_none()
            && self.relay_to == 0
            && self.audio.is_empty()
            && self
                .video
                .iter()
                .all(|l| l.on.is_empty() && l.switching.is_empty())
    }

    /// The room and RFC 6464 level of a room member's audio packet.
    fn speaker_level(&self, packet: &RtpIn) -> Option<(RoomId, i8)> {
        match (self.room, packet.kind) {
            (Some(room), TrackKind::Audio) => packet.ext.audio_level.map(|l| (room, l)),
            _ => None,
        }
    }

    /// Does `packet` start a keyframe of the stream's video? (Read once per packet and shard.)
    fn starts_keyframe(&self, packet: &RtpIn) -> bool {
        packet.kind == TrackKind::Video
            && self.codecs[TrackKind::Video.index()]
                .is_some_and(|c| starts_keyframe(c, &packet.payload))
    }

    /// Take a viewer's video track off this stream's layer lists (a room slot is listed as
    /// switching on the stream it moves to; see [`Shard::unlist`]).
    pub(super) fn unlist_video(&mut self, sub: SubRef, track: &SubTrack) {
        unlist(&mut self.video[usize::from(track.layer)].on, sub);
        if let Some(t) = track.target {
            unlist(&mut self.video[usize::from(t)].switching, sub);
        }
    }
}

/// Drop a stream's state, taking its cached bytes off the shard's running total `held` (for
/// where the shard is borrowed field by field; see [`Shard::remove_stream`]).
pub(super) fn remove_stream(
    streams: &mut HashMap<StreamId, StreamEntry>,
    held: &mut u64,
    stream: StreamId,
) {
    if let Some(entry) = streams.remove(&stream) {
        *held -= entry.gop_bytes();
    }
}

pub(super) fn unlist(list: &mut Vec<SubRef>, sub: SubRef) {
    if let Some(i) = list.iter().position(|&k| k == sub) {
        list.swap_remove(i);
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

/// The video track of a viewer (WHEP) participant.
pub(super) fn video_track(p: &mut Participant) -> Option<&mut SubTrack> {
    match &mut p.role {
        Role::Subscriber { tracks, .. } => tracks[TrackKind::Video.index()].as_mut(),
        Role::Publisher { .. } | Role::Member(_) => None,
    }
}

/// A viewer's track or a member's slot, by its index.
pub(super) fn sub_track(role: &mut Role, track: u8) -> Option<&mut SubTrack> {
    match role {
        Role::Subscriber { tracks, .. } => tracks.get_mut(usize::from(track))?.as_mut(),
        Role::Member(m) => m.slots.get_mut(usize::from(track)),
        Role::Publisher { .. } => None,
    }
}

/// The VP8 payload descriptor of a video packet of a stream whose video is `codec` VP8.
pub(super) fn vp8_descriptor(codec: Option<CodecName>, packet: &RtpIn) -> Option<Vp8Descriptor> {
    if packet.kind != TrackKind::Video || codec != Some(CodecName::Vp8) {
        return None;
    }
    Vp8Descriptor::parse(&packet.payload).ok()
}

/// The list entry of a viewer's video track.
pub(super) fn viewer_video(key: usize) -> SubRef {
    SubRef {
        key,
        track: TrackKind::Video.index() as u8,
    }
}

impl Shard {
    /// Drop a stream's state (and its keyframe caches' bytes from the running total).
    pub(super) fn remove_stream(&mut self, stream: StreamId) {
        remove_stream(&mut self.streams, &mut self.stats.gop_cache_bytes, stream);
    }

    /// A packet from a local publisher: relay it once to each other shard with viewers, then fan
    /// it out here.
    pub(super) fn publish(&mut self, now: Instant, stream: StreamId, epoch: u64, packet: RtpIn) {
        self.stats.rtp_in += 1;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let keyframe = entry.starts_keyframe(&packet);
        let speaker = entry.speaker_level(&packet);
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
            self.keyframe_requests_on_packet(now, stream, packet.layer, keyframe);
        }
        self.fan_out(now, stream, epoch, &packet, keyframe);
        if let Some((room, level)) = speaker {
            self.member_audio_level(now, room, stream, level);
        }
    }

    /// Forward one packet to the local subscribers it is for: written to each one's peer, which
    /// is marked to be polled (never polled here, so the lists cannot change under us).
    /// `keyframe`: it starts a keyframe of the stream's video.
    fn fan_out(
        &mut self,
        now: Instant,
        stream: StreamId,
        epoch: u64,
        packet: &RtpIn,
        keyframe: bool,
    ) {
        let Shard {
            config,
            streams,
            participants,
            ready,
            stats,
            moved,
            transmits,
            buffers,
            ..
        } = self;
        let Some(entry) = streams.get_mut(&stream) else {
            stats.drop_no_route += 1;
            return;
        };
        let kind = packet.kind;
        // Parsed once for all of this packet's viewers.
        let vp8 = vp8_descriptor(entry.codecs[kind.index()], packet);
        let layer = usize::from(packet.layer);
        if layer >= MAX_LAYERS {
            stats.drop_no_route += 1;
            return;
        }
        if kind == TrackKind::Video {
            entry.layers.packet(packet.layer, packet.payload.len(), now);
            if config.gop_cache_bytes > 0
                && let Some(codec) = entry.codecs[kind.index()]
            {
                if entry.gop_epoch != epoch {
                    entry.gop_epoch = epoch;
                    entry.clear_gops(&mut stats.gop_cache_bytes);
                }
                let gop = entry.gops[layer].get_or_insert_with(|| {
                    GopCache::new(
                        codec,
                        GopLimits {
                            max_bytes: config.gop_cache_bytes,
                            max_age: config.gop_cache_max_age,
                        },
                    )
                });
                let (overflows, bytes) = (gop.overflows(), gop.bytes() as u64);
                gop.push(packet, now);
                stats.gop_overflows += gop.overflows() - overflows;
                stats.gop_cache_bytes += gop.bytes() as u64;
                stats.gop_cache_bytes -= bytes;
            }
            if keyframe {
                tracing::debug!(?stream, layer, "keyframe");
                entry.layers.keyframe(packet.layer, now);
                if let Some(codec) = entry.codecs[kind.index()]
                    && let Some((width, height)) = resolution(codec, &packet.payload)
                    && entry.layers.resolution(packet.layer, width, height)
                {
                    stats.layer_resolution_changes += 1;
                }
                // Viewers waiting for this layer's keyframe move onto it now; a room slot
                // coming from another stream leaves that one's list after this packet.
                if !entry.video[layer].switching.is_empty() {
                    let switching = std::mem::take(&mut entry.video[layer].switching);
                    for &sub in &switching {
                        let Some(track) = participants
                            .get_mut(sub.key)
                            .and_then(|p| sub_track(&mut p.role, sub.track))
                        else {
                            continue;
                        };
                        if track.stream == Some(stream) {
                            unlist(&mut entry.video[usize::from(track.layer)].on, sub);
                        } else if let Some(from) = track.stream {
                            moved.push((sub, from, track.layer));
                        }
                        entry.video[layer].on.push(sub);
                        track.stream = Some(stream);
                        track.next = None;
                        track.layer = packet.layer;
                        track.target = None;
                        stats.layer_switches += 1;
                        tracing::debug!(viewer = sub.key, layer, "layer switch done");
                    }
                    entry.video[layer].switching = switching;
                    entry.video[layer].switching.clear();
                }
            }
        }
        let source = Source {
            epoch,
            ssrc: packet.ssrc,
        };
        let list = match kind {
            TrackKind::Audio => &entry.audio,
            TrackKind::Video => &entry.video[layer].on,
        };
        // Viewers waiting to move onto this layer need its keyframe: ask again (throttled) until
        // it comes. A publisher may ignore a request: Chromium drops a PLI that comes within
        // 300 ms of the one before on any of its layers, and a viewer moving down would stay on
        // a layer its path cannot carry, its packets queueing in the pacer.
        let mut want_keyframe =
            kind == TrackKind::Video && !keyframe && !entry.video[layer].switching.is_empty();
        let mut sends = Sends::new(now, transmits, buffers, stats, config);
        for &sub in list {
            let Some(p) = participants.get_mut(sub.key) else {
                continue;
            };
            // Not before ICE and DTLS are up: str0m would queue it and flush it, stale, at
            // connect, and the keyframe would be spent on a viewer that cannot see it yet.
            if !p.peer.is_connected() {
                continue;
            }
            let Some(track) = sub_track(&mut p.role, sub.track) else {
                continue;
            };
            if let Some(replay) = track.replay.as_mut() {
                // Being caught up: live packets wait behind the replayed ones.
                if replay.queue_live(epoch, packet) {
                    continue;
                }
                // Another publisher, or a viewer that cannot keep up: live from a keyframe.
                // (The participant's replay timer stays: its next step finds nothing here.)
                track.replay = None;
                track.waiting_keyframe = true;
            }
            if !track.rewriter.follows(source) && kind == TrackKind::Video {
                track.waiting_keyframe = true;
            }
            if track.waiting_keyframe {
                if !keyframe {
                    want_keyframe = true;
                    continue;
                }
                track.waiting_keyframe = false;
            }
            if track.forward(&mut p.peer, &mut sends, source, packet, vp8.as_ref(), false) {
                p.mark_ready(sub.key, ready);
            }
        }
        for (sub, from, layer) in moved.drain(..) {
            if let Some(old) = streams.get_mut(&from) {
                unlist(&mut old.video[usize::from(layer)].on, sub);
                if old.is_unused() {
                    remove_stream(streams, &mut stats.gop_cache_bytes, from);
                }
            }
        }
        if want_keyframe {
            self.request_keyframe(now, stream, packet.layer);
        }
    }

    /// A keyframe of `stream`'s video layer `layer` is wanted: ask the publisher (throttled),
    /// locally or through its shard.
    pub(super) fn request_keyframe(&mut self, now: Instant, stream: StreamId, layer: u8) {
        let interval = self.config.keyframe_interval;
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(throttle) = entry.keyframes.get_mut(usize::from(layer)) else {
            return;
        };
        if throttle.ask(now, interval) {
            self.send_keyframe_request(stream, layer);
        } else {
            tracing::debug!(?stream, layer, "keyframe request merged");
        }
    }

    /// A video packet of `stream`'s layer `layer` went by (from the local publisher or relayed):
    /// a keyframe answers every request merged so far; a merged request that has waited out the
    /// interval goes now. Every shard with viewers runs this, so a request merged on a shard
    /// that only relays the stream is not lost.
    fn keyframe_requests_on_packet(
        &mut self,
        now: Instant,
        stream: StreamId,
        layer: u8,
        keyframe: bool,
    ) {
        let interval = self.config.keyframe_interval;
        let Some(throttle) = self
            .streams
            .get_mut(&stream)
            .and_then(|e| e.keyframes.get_mut(usize::from(layer)))
        else {
            return;
        };
        if keyframe {
            throttle.pending = false;
        }
        if throttle.due(now, interval) {
            tracing::debug!(?stream, layer, "merged keyframe request due");
            self.send_keyframe_request(stream, layer);
        }
    }

    /// Ask for a keyframe of `stream`'s layer `layer` now: the local publisher, or the shard it
    /// is on.
    fn send_keyframe_request(&mut self, stream: StreamId, layer: u8) {
        let Some(entry) = self.streams.get(&stream) else {
            return;
        };
        tracing::debug!(?stream, layer, "keyframe request sent");
        if let Some(pk) = entry.publisher {
            self.stats.keyframe_requests += 1;
            self.participants[pk]
                .peer
                .request_keyframe(TrackKind::Video, layer);
            self.enqueue(pk);
        } else if let Some(origin) = entry.origin.filter(|o| *o != self.config.id) {
            self.stats.relayed += 1;
            self.out.push_back(Output::Relay {
                to: origin,
                message: Relay::KeyframeRequest { stream, layer },
            });
        }
    }

    /// Participant `key` asked for a keyframe (PLI/FIR) of what it receives in peer section
    /// `section` (`None`: a viewer's video): ask for one of the layer it is sent.
    pub(super) fn viewer_wants_keyframe(
        &mut self,
        now: Instant,
        key: usize,
        section: Option<usize>,
    ) {
        let Some(p) = self.participants.get_mut(key) else {
            return;
        };
        let track = match (&mut p.role, section) {
            (Role::Member(m), Some(section)) => m.slots.iter().find(|t| t.section == section),
            (Role::Subscriber { tracks, .. }, _) => tracks[TrackKind::Video.index()].as_ref(),
            _ => None,
        };
        if let Some(track) = track
            && track.kind == TrackKind::Video
            && let Some(stream) = track.stream
        {
            let layer = track.layer;
            tracing::debug!(viewer = key, layer, "viewer asks for a keyframe");
            self.request_keyframe(now, stream, layer);
        }
    }

    /// Decide which layer viewer `key` should be on (its pin, else its bandwidth estimate) and
    /// start moving it there; tell its estimator what to probe for.
    pub(super) fn choose_layer(&mut self, now: Instant, key: usize) {
        let Some(p) = self.participants.get_mut(key) else {
            return;
        };
        let Role::Subscriber { stream, .. } = p.role else {
            return;
        };
        let Some(entry) = self.streams.get_mut(&stream) else {
            return;
        };
        let Some(track) = video_track(p) else {
            return;
        };
        let sub = viewer_video(key);
        let candidates = entry.layers.candidates(now);
        let candidates = candidates.as_slice();
        let count = entry.layers.count() as u8;
        let started = track.rewriter.has_started();
        // A viewer whose layer stopped has nothing to show until it moves.
        let stalled = !started || !entry.layers.is_active(track.layer, now);
        let wanted = match track.pinned.filter(|&l| l < count) {
            Some(pinned) => Some(pinned),
            None => {
                let current = started.then_some(track.target.unwrap_or(track.layer));
                track.choice.choose(candidates, current, now)
            }
        };
        track.choose_at = Some(now + CHOOSE_AGAIN);
        let targets = track.choice.targets(candidates, wanted);
        let retarget = targets != track.bitrate_targets;
        track.bitrate_targets = targets;
        let mut ask_keyframe = None;
        if let Some(wanted) = wanted.filter(|&w| w < count) {
            if wanted == track.layer {
                // Staying (or back before the switch happened).
                if let Some(t) = track.target.take() {
                    unlist(&mut entry.video[usize::from(t)].switching, sub);
                }
            } else if !started {
                // Nothing sent yet: it waits for a keyframe anyway, of the new layer now.
                entry.unlist_video(sub, track);
                track.layer = wanted;
                track.target = None;
                entry.video[usize::from(wanted)].on.push(sub);
                ask_keyframe = Some(wanted);
            } else if track.target != Some(wanted) {
                if let Some(t) = track.target {
                    unlist(&mut entry.video[usize::from(t)].switching, sub);
                }
                track.target = Some(wanted);
                tracing::debug!(
                    viewer = key,
                    from = track.layer,
                    to = wanted,
                    "layer switch wanted"
                );
                entry.video[usize::from(wanted)].switching.push(sub);
                ask_keyframe = Some(wanted);
            }
        }
        // A viewer with nothing to show starts on the layer's cached keyframe at once. One that
        // plays keeps its layer until the new one's next keyframe: a replay would take its
        // picture back in time and send a burst its estimator reads as congestion.
        if let Some(layer) = ask_keyframe
            && stalled
            && self.start_replay(sub, stream, layer, now)
        {
            ask_keyframe = None;
        }
        if retarget && let Some(p) = self.participants.get_mut(key) {
            p.peer.set_bitrate_targets(targets.0, targets.1);
            self.enqueue(key);
        }
        let connected = self.participants[key].peer.is_connected();
        if let Some(layer) = ask_keyframe.filter(|_| connected) {
            self.request_keyframe(now, stream, layer);
        }
    }

    /// Choose viewer `key`'s layer again if it is time (called as its timers fire).
    pub(super) fn choose_layer_if_due(&mut self, now: Instant, key: usize) {
        let due = self
            .participants
            .get_mut(key)
            .and_then(video_track)
            .is_some_and(|t| t.choose_at.is_some_and(|at| now >= at));
        if due {
            self.choose_layer(now, key);
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
                let (keyframe, speaker) = match self.streams.get_mut(&stream) {
                    Some(entry) => {
                        entry.origin = Some(origin);
                        (entry.starts_keyframe(&packet), entry.speaker_level(&packet))
                    }
                    None => {
                        self.stats.drop_no_route += 1;
                        return;
                    }
                };
                if packet.kind == TrackKind::Video {
                    self.keyframe_requests_on_packet(now, stream, packet.layer, keyframe);
                }
                self.fan_out(now, stream, epoch, &packet, keyframe);
                if let Some((room, level)) = speaker {
                    self.member_audio_level(now, room, stream, level);
                }
            }
            Relay::RoomMessage {
                room,
                from,
                to,
                json,
            } => self.relayed_room_message(room, from, to, &json),
            Relay::KeyframeRequest { stream, layer } => {
                if self
                    .streams
                    .get(&stream)
                    .is_some_and(|e| e.publisher.is_some())
                {
                    self.request_keyframe(now, stream, layer);
                }
            }
        }
    }
}
