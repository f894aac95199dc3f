//! Instant start: a viewer that starts on a layer, or moves to one, gets the layer's cached
//! keyframe and everything after it at once instead of waiting for the publisher's next
//! keyframe (OBS and FFmpeg ignore keyframe requests; their keyframes come every 2–4 s).
//!
//! The cached frames go out faster than they were recorded ([`SPEEDUP`]), each re-timed to
//! when it is sent ([`crate::rewrite::Rewriter::rewrite_retimed`]), so the viewer's jitter
//! buffer plays them as they come; live packets arriving meanwhile queue behind them and go out
//! at the same pace, until the queue is empty and the viewer is fed live like everyone else.
//! The viewer's decoder sees the keyframe first and then only the frames that follow it.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::routing::{SubRef, SubTrack, sub_track, video_track, viewer_video, vp8_descriptor};
use super::{Output, Relay, Role, Sends, Shard};
use crate::ids::{ShardId, StreamId, TrackKind};
use crate::peer::RtpIn;
use crate::rewrite::Source;
use crate::sdp::CodecName;

/// Replayed frames go out this many times faster than they were recorded ...
const SPEEDUP: u32 = 4;
/// ... and never further apart than this.
const MAX_FRAME_GAP: Duration = Duration::from_millis(50);

/// A viewer being caught up.
pub(super) struct Replay {
    queue: VecDeque<RtpIn>,
    /// The publisher session the packets are from.
    epoch: u64,
    bytes: usize,
    /// Most bytes queued: live packets pile up behind a replay that cannot go out (a viewer
    /// whose str0m queue is full); past this it is given up.
    max_bytes: usize,
    next_at: Instant,
    /// The stream's video codec.
    codec: Option<CodecName>,
}

impl Replay {
    /// Queue a live packet behind the replay. False when it is not from the replayed
    /// publisher, or the queue is over its bound: the replay is over.
    pub(super) fn queue_live(&mut self, epoch: u64, packet: &RtpIn) -> bool {
        if epoch != self.epoch || self.bytes + packet.payload.len() > self.max_bytes {
            return false;
        }
        self.bytes += packet.payload.len();
        self.queue.push_back(packet.clone());
        true
    }
}

impl Shard {
    /// Start viewer `key` (just connected, waiting for its first keyframe) from its layer's
    /// cache. False when there is nothing cached to start from.
    pub(super) fn start_cached(&mut self, key: usize, now: Instant) -> bool {
        let Some(p) = self.participants.get_mut(key) else {
            return false;
        };
        let Role::Subscriber { stream, .. } = p.role else {
            return false;
        };
        let Some(track) = video_track(p) else {
            return false;
        };
        if track.replay.is_some() || track.rewriter.has_started() {
            return false;
        }
        let layer = track.layer;
        self.start_replay(viewer_video(key), stream, layer, now)
    }

    /// Start a subscribing video track (a viewer's, a room slot) on `stream`'s layer `layer`
    /// from that layer's cache. False (and nothing changed) when the cache holds nothing a
    /// decoder can start from.
    pub(super) fn start_replay(
        &mut self,
        sub: SubRef,
        stream: StreamId,
        layer: u8,
        now: Instant,
    ) -> bool {
        if !self
            .participants
            .get(sub.key)
            .is_some_and(|p| p.peer.is_connected())
        {
            return false;
        }
        let Some(entry) = self.streams.get(&stream) else {
            return false;
        };
        let Some(gop) = entry.gops.get(usize::from(layer)).and_then(Option::as_ref) else {
            return false;
        };
        let queue: VecDeque<RtpIn> = gop.replay(now).packets.into();
        if queue.is_empty() {
            return false;
        }
        let bytes = queue.iter().map(|p| p.payload.len()).sum();
        let max_bytes = 2 * self.config.gop_cache_bytes;
        let epoch = entry.gop_epoch;
        let codec = entry.codecs[TrackKind::Video.index()];
        let started = self
            .participants
            .get_mut(sub.key)
            .and_then(|p| sub_track(&mut p.role, sub.track))
            .is_some_and(|t| t.rewriter.has_started());
        if started {
            self.stats.layer_switches += 1;
        }
        self.unlist(sub);
        let Some(track) = self
            .participants
            .get_mut(sub.key)
            .and_then(|p| sub_track(&mut p.role, sub.track))
        else {
            return false;
        };
        track.stream = Some(stream);
        track.layer = layer;
        track.waiting_keyframe = false;
        track.replay = Some(Box::new(Replay {
            queue,
            epoch,
            bytes,
            max_bytes,
            next_at: now,
            codec,
        }));
        if let Some(entry) = self.streams.get_mut(&stream) {
            entry.video[usize::from(layer)].on.push(sub);
        }
        self.stats.gop_replays += 1;
        self.replay_step(sub.key, now);
        true
    }

    /// Relay the stream's cached keyframes (and what followed) to `shard`, which starts
    /// getting the stream now.
    pub(super) fn relay_cached(&mut self, now: Instant, stream: StreamId, shard: ShardId) {
        let Some(entry) = self.streams.get(&stream) else {
            return;
        };
        for gop in entry.gops.iter().flatten() {
            for packet in gop.replay(now).packets {
                self.stats.relayed += 1;
                self.out.push_back(Output::Relay {
                    to: shard,
                    message: Relay::Rtp {
                        stream,
                        epoch: entry.gop_epoch,
                        origin: self.config.id,
                        packet,
                    },
                });
            }
        }
    }

    /// Send the frames of participant `key`'s replays that are due (a viewer has one at most,
    /// a room member one per slot); a track whose queue is empty is fed live from now on.
    pub(super) fn replay_step(&mut self, key: usize, now: Instant) {
        let Shard {
            config,
            participants,
            ready,
            stats,
            transmits,
            buffers,
            ..
        } = self;
        let Some(p) = participants.get_mut(key) else {
            return;
        };
        let tracks: &mut [SubTrack] = match &mut p.role {
            Role::Subscriber { tracks, .. } => match tracks[TrackKind::Video.index()].as_mut() {
                Some(t) => std::slice::from_mut(t),
                None => &mut [],
            },
            Role::Member(m) => &mut m.slots,
            Role::Publisher { .. } => &mut [],
        };
        let mut next = None;
        let mut sends = Sends::new(now, transmits, buffers, stats, config);
        for track in tracks {
            if let Some(at) = replay_track(track, &mut p.peer, &mut sends) {
                next = Some(next.map_or(at, |n: Instant| n.min(at)));
            }
        }
        p.replay_at = next;
        p.mark_ready(key, ready);
    }
}

/// Send what is due of one track's replay; when its next frame is due, if any is left.
fn replay_track(
    track: &mut SubTrack,
    peer: &mut crate::peer::Peer,
    sends: &mut Sends,
) -> Option<Instant> {
    let now = sends.now;
    // Out of the track while it sends (forwarding rewrites the track).
    let mut replay = track.replay.take()?;
    let clock = track.rewriter.clock_rate().max(1);
    while replay.next_at <= now {
        let Some(ts) = replay.queue.front().map(|f| f.ts) else {
            break;
        };
        while replay.queue.front().is_some_and(|f| f.ts == ts) {
            let Some(packet) = replay.queue.pop_front() else {
                break;
            };
            replay.bytes -= packet.payload.len();
            let source = Source {
                epoch: replay.epoch,
                ssrc: packet.ssrc,
            };
            let vp8 = vp8_descriptor(replay.codec, &packet);
            // The caller polls the peer after its replays anyway.
            track.forward(peer, sends, source, &packet, vp8.as_ref(), true);
        }
        let Some(next) = replay.queue.front() else {
            break;
        };
        let ticks = u64::from(next.ts.wrapping_sub(ts));
        let gap = Duration::from_micros(ticks * 1_000_000 / u64::from(clock));
        let gap = if ticks > u64::from(u32::MAX / 2) {
            Duration::ZERO
        } else {
            (gap / SPEEDUP).min(MAX_FRAME_GAP)
        };
        replay.next_at = now + gap;
    }
    if replay.queue.is_empty() {
        None
    } else {
        let next = replay.next_at;
        track.replay = Some(replay);
        Some(next)
    }
}
