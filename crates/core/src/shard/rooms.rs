//! Rooms on one shard: members, which member each slot shows, speakers, and the data channel.
//!
//! A member publishes like a WHIP publisher (its own stream, relayed and cached the same way)
//! and receives in slots, each listed on the stream it shows like a WHEP viewer's track. What a
//! slot shows is decided here, for every local member of the room at once, whenever it can
//! change: a join, a leave, a `subscribe`, a `layer`, and each speaker ranking
//! ([`RANK_INTERVAL`], run as a member's audio packet arrives after the interval; a room where
//! nobody sends audio keeps its slots). An audio slot moves at once (its rewriter keeps
//! sequence numbers and timestamps continuous); a video slot that shows someone keeps showing
//! them until the new source's next keyframe (asked for with a PLI), then moves with the
//! keyframe; a slot with nothing to show starts from the source's keyframe cache.
//!
//! # A room over several shards
//!
//! A room lives on one shard while it fits; past that, its members spread. Every shard hosting
//! members knows every member ([`RoomMember`], from the control plane: the others with
//! [`crate::Command::AddMember`], later ones with [`crate::Command::RoomMember`]) and the set
//! of shards hosting the room. Each member's stream is relayed once to each other shard of the
//! room, so every shard sees every member's audio levels and ranks the same speakers, and a
//! slot shows a member of another shard like a local one (a keyframe request goes to the
//! member's shard as for any relayed stream). App messages for members elsewhere go as
//! [`Relay::RoomMessage`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::routing::{SubRef, SubTrack, sub_track};
use super::{Output, Relay, Role, Shard};
use crate::ids::{RoomId, SessionId, ShardId, StreamId, TrackKind};
use crate::peer::Membership;
use crate::room::{
    ClientMessage, LayerPref, Loudness, MAX_LAYER_PREFS, MAX_SUBSCRIBE, MemberView, MessageRate,
    RANK_INTERVAL, ServerMessage, SlotView, kind_name, loudest, place_stable,
};
use crate::sdp::CodecName;

/// A member's data channel may hold this many bytes unsent; messages past it are dropped (a
/// member that does not read them).
const MAX_CHANNEL_BUFFER: usize = 256 * 1024;

/// Without a `layer` message, a simulcast source is shown in the best layer at most this
/// tall (a grid tile).
const DEFAULT_SLOT_HEIGHT: u32 = 360;

/// A member of a room, as every shard hosting the room knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomMember {
    /// The stream it publishes; its participant id is this stream's number.
    pub stream: StreamId,
    /// Its display name.
    pub name: String,
    /// The codec of each kind it publishes.
    pub publishes: [Option<CodecName>; 2],
    /// Its video's simulcast rids (empty: one layer).
    pub layers: Vec<String>,
    /// Its place in the room's join order.
    pub joined: u64,
    /// The shard it is on.
    pub shard: ShardId,
}

impl RoomMember {
    /// Its participant id.
    pub fn id(&self) -> String {
        self.stream.0.to_string()
    }

    fn view(&self) -> MemberView {
        MemberView {
            id: self.id(),
            name: self.name.clone(),
            audio: self.publishes[TrackKind::Audio.index()].is_some(),
            video: self.publishes[TrackKind::Video.index()].is_some(),
        }
    }
}

/// A room member's connection state on its shard (the rest is its [`RoomMember`]).
pub(super) struct Member {
    /// The stream it publishes.
    pub(super) stream: StreamId,
    pub(super) room: RoomId,
    /// Its slots, in offer order.
    pub(super) slots: Vec<SubTrack>,
    /// Each slot's `a=mid`.
    pub(super) mids: Vec<String>,
    /// Each slot's source (the member stream it shows, or moves to).
    pub(super) sources: Vec<Option<StreamId>>,
    /// Participants it asked to see, most wanted first (`subscribe`).
    pub(super) subscribed: Option<Vec<StreamId>>,
    /// Layer choices per participant (`layer`).
    pub(super) layer_prefs: Vec<(StreamId, LayerPref)>,
    pub(super) rate: MessageRate,
    pub(super) channel_open: bool,
}

/// A member as this shard knows it.
struct Known {
    info: RoomMember,
    loudness: Loudness,
    /// When it last spoke (for filling video slots with recent speakers).
    last_spoke: Option<Instant>,
    /// Its participant key when it is on this shard.
    key: Option<usize>,
}

/// A room's state on one shard.
pub(super) struct RoomEntry {
    name: String,
    members: HashMap<StreamId, Known>,
    /// Local member keys, in join order.
    local: Vec<usize>,
    /// Speaking members, loudest first, as last told.
    speakers: Vec<StreamId>,
    next_rank: Option<Instant>,
    /// Shards hosting the room (bit per shard).
    shards: u64,
}

impl RoomEntry {
    fn new(name: String) -> Self {
        RoomEntry {
            name,
            members: HashMap::new(),
            local: Vec::new(),
            speakers: Vec::new(),
            next_rank: None,
            shards: 0,
        }
    }

    /// Members in join order.
    fn in_order(&self) -> Vec<&Known> {
        let mut v: Vec<&Known> = self.members.values().collect();
        v.sort_by_key(|k| k.info.joined);
        v
    }
}

/// A room as [`crate::Command::RoomInfo`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Members on this shard, in join order.
    pub participants: Vec<MemberInfo>,
    /// Speaking participant ids, loudest first.
    pub speakers: Vec<String>,
}

/// A member as [`RoomInfo`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Participant id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Its session.
    pub session: SessionId,
    /// Publishes audio.
    pub audio: bool,
    /// Publishes video.
    pub video: bool,
    /// Its slots.
    pub slots: Vec<SlotInfo>,
}

/// A slot as [`MemberInfo`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// `a=mid`.
    pub mid: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// The participant it shows.
    pub participant: Option<String>,
}

/// What [`Shard::add_member`] needs besides the peer.
pub(super) struct NewMember {
    pub(super) session: SessionId,
    pub(super) room: RoomId,
    pub(super) room_name: String,
    pub(super) me: RoomMember,
    pub(super) membership: Membership,
    pub(super) others: Vec<RoomMember>,
    pub(super) shards: u64,
}

/// A participant id as members write it: a member stream's number.
fn parse_id(id: &str) -> Option<StreamId> {
    id.parse().ok().map(StreamId)
}

impl Shard {
    /// Place a room member: its stream, its slots, its room; the others hear of it.
    pub(super) fn add_member(
        &mut self,
        now: Instant,
        new: NewMember,
        peer: crate::peer::Peer,
    ) -> Result<usize, super::CommandError> {
        let NewMember {
            session,
            room,
            room_name,
            me,
            membership,
            others,
            shards,
        } = new;
        let mut slots = Vec::with_capacity(membership.slots.len());
        let mut mids = Vec::with_capacity(membership.slots.len());
        for (i, spec) in membership.slots.iter().enumerate() {
            let Some(codec) = &membership.codecs[spec.kind.index()] else {
                continue;
            };
            let rewriter = super::commands::seeded_rewriter(session, i, codec);
            slots.push(SubTrack::new(spec.kind, spec.section, None, rewriter));
            mids.push(spec.mid.clone());
        }
        let stream = me.stream;
        let member = Member {
            stream,
            room,
            sources: vec![None; slots.len()],
            slots,
            mids,
            subscribed: None,
            layer_prefs: Vec::new(),
            rate: MessageRate::default(),
            channel_open: false,
        };
        let key = self.insert(now, session, peer, Role::Member(member))?;
        self.rooms
            .entry(room)
            .or_insert_with(|| RoomEntry::new(room_name));
        self.set_room_shards(room, shards);
        for other in others {
            self.learn_member(room, other);
        }
        let entry = self.streams.entry(stream).or_default();
        entry.publisher = Some(key);
        entry.epoch = session.0;
        entry.origin = Some(self.config.id);
        entry.room = Some(room);
        entry.keyframes = Default::default();
        entry.codecs = membership
            .published
            .tracks
            .each_ref()
            .map(|t| t.as_ref().map(|t| t.name));
        entry.layers.reset(&membership.published.layers);
        entry.clear_gops(&mut self.stats.gop_cache_bytes);
        entry.gop_epoch = session.0;
        entry.relay_to = shards & !(1u64 << self.config.id.0);
        let json = ServerMessage::Join {
            participant: &me.id(),
            name: &me.name,
            audio: me.publishes[TrackKind::Audio.index()].is_some(),
            video: me.publishes[TrackKind::Video.index()].is_some(),
        }
        .to_json();
        let Some(entry) = self.rooms.get_mut(&room) else {
            return Ok(key);
        };
        entry.members.insert(
            stream,
            Known {
                info: me,
                loudness: Loudness::default(),
                last_spoke: None,
                key: Some(key),
            },
        );
        let locals = entry.local.clone();
        entry.local.push(key);
        for other in locals {
            self.send_json(other, &json);
        }
        self.assign_room(now, room);
        Ok(key)
    }

    /// The control plane's word on a member elsewhere: it is in the room (`present`) or gone;
    /// `shards` hosts the room now.
    pub(super) fn room_member(
        &mut self,
        now: Instant,
        room: RoomId,
        room_name: String,
        member: RoomMember,
        present: bool,
        shards: u64,
    ) {
        if member.shard == self.config.id {
            // Its own shard places and removes it.
            return;
        }
        if present {
            self.rooms
                .entry(room)
                .or_insert_with(|| RoomEntry::new(room_name));
            self.set_room_shards(room, shards);
            if self.learn_member(room, member) {
                self.assign_room(now, room);
            }
            return;
        }
        if !self.rooms.contains_key(&room) {
            return;
        }
        self.set_room_shards(room, shards);
        self.forget_member(now, room, member.stream);
        self.drop_room_if_idle(room);
    }

    /// The shards hosting `room` are `shards`: local members' streams are relayed to the others.
    fn set_room_shards(&mut self, room: RoomId, shards: u64) {
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        entry.shards = shards;
        let others = shards & !(1u64 << self.config.id.0);
        let streams: Vec<StreamId> = entry
            .members
            .values()
            .filter(|k| k.key.is_some())
            .map(|k| k.info.stream)
            .collect();
        for s in streams {
            if let Some(e) = self.streams.get_mut(&s) {
                e.relay_to = others;
            }
        }
    }

    /// Note a member of another shard, with a stream entry its relayed packets arrive on; the
    /// local members hear of it. False when it was known already.
    fn learn_member(&mut self, room: RoomId, info: RoomMember) -> bool {
        let Some(entry) = self.rooms.get_mut(&room) else {
            return false;
        };
        if entry.members.contains_key(&info.stream) || info.shard == self.config.id {
            return false;
        }
        let json = ServerMessage::Join {
            participant: &info.id(),
            name: &info.name,
            audio: info.publishes[TrackKind::Audio.index()].is_some(),
            video: info.publishes[TrackKind::Video.index()].is_some(),
        }
        .to_json();
        let stream = self.streams.entry(info.stream).or_default();
        stream.room = Some(room);
        stream.origin = Some(info.shard);
        stream.codecs = info.publishes;
        stream.layers.reset(&info.layers);
        let stream_id = info.stream;
        entry.members.insert(
            stream_id,
            Known {
                info,
                loudness: Loudness::default(),
                last_spoke: None,
                key: None,
            },
        );
        let locals = entry.local.clone();
        for k in locals {
            self.send_json(k, &json);
        }
        true
    }

    /// A member left `room` (a local one before its lists are emptied): the local members hear
    /// of it, and slots that showed it get another source.
    fn forget_member(&mut self, now: Instant, room: RoomId, stream: StreamId) {
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        let Some(known) = entry.members.remove(&stream) else {
            return;
        };
        if let Some(key) = known.key {
            entry.local.retain(|&k| k != key);
        }
        let was_speaking = entry.speakers.contains(&stream);
        entry.speakers.retain(|&s| s != stream);
        let speakers = was_speaking.then(|| {
            let ids: Vec<String> = entry.speakers.iter().map(|s| s.0.to_string()).collect();
            ServerMessage::Speakers {
                participants: ids.iter().map(String::as_str).collect(),
            }
            .to_json()
        });
        let locals = entry.local.clone();
        let json = ServerMessage::Leave {
            participant: &known.info.id(),
        }
        .to_json();
        for &other in &locals {
            self.send_json(other, &json);
            if let Some(speakers) = &speakers {
                self.send_json(other, speakers);
            }
            let showing: Vec<usize> = match self.participants.get(other).map(|p| &p.role) {
                Some(Role::Member(o)) => (0..o.sources.len())
                    .filter(|&i| o.sources[i] == Some(stream))
                    .collect(),
                _ => Vec::new(),
            };
            // The slot stops now; its source stays noted so that the assignment below sees the
            // change and tells the member (a `slots` message even when the slot stays empty).
            for slot in showing {
                self.unlist(SubRef {
                    key: other,
                    track: slot as u8,
                });
            }
        }
        // Its stream here: a local member's goes with it (see remove_from_stream); another
        // shard's relay copy goes now.
        if let Some(e) = self.streams.get_mut(&stream) {
            e.room = None;
            if known.key.is_none() && e.is_unused() {
                self.remove_stream(stream);
            }
        }
        if !locals.is_empty() {
            self.assign_room(now, room);
        }
    }

    /// Take local member `key` out of its room (before its lists are emptied).
    pub(super) fn leave_room(&mut self, now: Instant, key: usize) {
        let Some(Role::Member(m)) = self.participants.get(key).map(|p| &p.role) else {
            return;
        };
        let (room, stream) = (m.room, m.stream);
        self.forget_member(now, room, stream);
        self.drop_room_if_idle(room);
    }

    /// A room with no member here any more goes, with the relay copies of the others' streams.
    fn drop_room_if_idle(&mut self, room: RoomId) {
        if !self.rooms.get(&room).is_some_and(|r| r.local.is_empty()) {
            return;
        }
        let Some(entry) = self.rooms.remove(&room) else {
            return;
        };
        for stream in entry.members.keys() {
            if let Some(e) = self.streams.get_mut(stream) {
                e.room = None;
                if e.is_unused() {
                    self.remove_stream(*stream);
                }
            }
        }
    }

    /// An audio packet of member stream `stream` (local or relayed) carried `level` (RFC
    /// 6464): count it; rank the room's speakers when it is time.
    pub(super) fn member_audio_level(
        &mut self,
        now: Instant,
        room: RoomId,
        stream: StreamId,
        level: i8,
    ) {
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        if let Some(k) = entry.members.get_mut(&stream) {
            k.loudness.packet(level);
        }
        match entry.next_rank {
            Some(at) if now < at => {}
            _ => {
                entry.next_rank = Some(now + RANK_INTERVAL);
                self.rank_speakers(now, room);
            }
        }
    }

    /// Rank the room's speakers; tell the local members when the ranking changed; give the
    /// slots their sources.
    fn rank_speakers(&mut self, now: Instant, room: RoomId) {
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        let mut speaking: Vec<(StreamId, f32)> = Vec::new();
        for (stream, k) in &mut entry.members {
            let (level, speaks) = k.loudness.rank();
            if speaks {
                k.last_spoke = Some(now);
                speaking.push((*stream, level));
            }
        }
        speaking.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let speakers: Vec<StreamId> = speaking.iter().map(|s| s.0).collect();
        if entry.speakers != speakers {
            entry.speakers.clone_from(&speakers);
            let ids: Vec<String> = speakers.iter().map(|s| s.0.to_string()).collect();
            let json = ServerMessage::Speakers {
                participants: ids.iter().map(String::as_str).collect(),
            }
            .to_json();
            for k in entry.local.clone() {
                self.send_json(k, &json);
            }
        }
        self.assign_room(now, room);
    }

    /// Decide every slot of every local member of `room`, and move those that change.
    fn assign_room(&mut self, now: Instant, room: RoomId) {
        let Some(entry) = self.rooms.get(&room) else {
            return;
        };
        let standing: Vec<Standing> = entry
            .in_order()
            .iter()
            .map(|k| Standing {
                stream: k.info.stream,
                publishes: k.info.publishes.map(|c| c.is_some()),
                level: k.loudness.level(),
                speaking: k.loudness.speaking(),
                last_spoke: k.last_spoke,
            })
            .collect();
        // Video by recent speech, then join order (`standing` is in join order; the sort keeps it).
        let mut recent: Vec<&Standing> = standing
            .iter()
            .filter(|s| s.publishes[TrackKind::Video.index()])
            .collect();
        recent.sort_by_key(|s| std::cmp::Reverse(s.last_spoke));
        let recent: Vec<StreamId> = recent.iter().map(|s| s.stream).collect();
        for key in entry.local.clone() {
            self.assign_member(now, key, &standing, &recent);
        }
    }

    /// Decide member `key`'s slots from everyone's standing.
    fn assign_member(
        &mut self,
        now: Instant,
        key: usize,
        standing: &[Standing],
        recent: &[StreamId],
    ) {
        let Some(Role::Member(m)) = self.participants.get(key).map(|p| &p.role) else {
            return;
        };
        let me = m.stream;
        let mut plan: Vec<(usize, Option<StreamId>)> = Vec::new();
        for kind in TrackKind::ALL {
            let idx: Vec<usize> = (0..m.slots.len())
                .filter(|&i| m.slots[i].kind == kind)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let current: Vec<Option<StreamId>> = idx.iter().map(|&i| m.sources[i]).collect();
            let wanted: Vec<StreamId> = match kind {
                TrackKind::Audio => {
                    let candidates: Vec<(StreamId, f32, bool)> = standing
                        .iter()
                        .filter(|s| s.stream != me && s.publishes[TrackKind::Audio.index()])
                        .map(|s| (s.stream, s.level, s.speaking))
                        .collect();
                    loudest(&candidates, &current, idx.len())
                }
                TrackKind::Video => {
                    let mut order: Vec<StreamId> = Vec::new();
                    let asked = m.subscribed.iter().flatten();
                    for &s in asked.chain(recent) {
                        if s != me && recent.contains(&s) && !order.contains(&s) {
                            order.push(s);
                        }
                    }
                    order
                }
            };
            let placed = place_stable(&current, &wanted);
            plan.extend(idx.iter().copied().zip(placed));
        }
        let mut changed = false;
        for (slot, source) in plan {
            changed |= self.set_slot_source(now, key, slot, source);
        }
        if changed {
            self.send_slots(key);
        }
    }

    /// Give slot `slot` of member `key` the source `source` (a member's stream), in the layer
    /// its member wants; true when the source changed.
    fn set_slot_source(
        &mut self,
        now: Instant,
        key: usize,
        slot: usize,
        source: Option<StreamId>,
    ) -> bool {
        let sub = SubRef {
            key,
            track: slot as u8,
        };
        let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role) else {
            return false;
        };
        let changed = m.sources[slot] != source;
        m.sources[slot] = source;
        let kind = m.slots[slot].kind;
        let pref = source.and_then(|s| {
            m.layer_prefs
                .iter()
                .find(|(p, _)| *p == s)
                .map(|(_, pref)| pref.clone())
        });
        let Some(stream) = source else {
            if changed {
                self.unlist(sub);
            }
            return changed;
        };
        let layer = match (kind, self.streams.get(&stream)) {
            (TrackKind::Video, Some(entry)) => match &pref {
                Some(LayerPref::Rid(rid)) => entry
                    .layers
                    .index_of(rid)
                    .unwrap_or_else(|| entry.layers.best_within(DEFAULT_SLOT_HEIGHT, now)),
                Some(LayerPref::MaxHeight(h)) => entry.layers.best_within(*h, now),
                None => entry.layers.best_within(DEFAULT_SLOT_HEIGHT, now),
            },
            _ => 0,
        };
        let Some(track) = self
            .participants
            .get_mut(key)
            .and_then(|p| sub_track(&mut p.role, sub.track))
        else {
            return changed;
        };
        if kind == TrackKind::Audio {
            if track.stream != Some(stream) {
                self.unlist(sub);
                if let Some(track) = self
                    .participants
                    .get_mut(key)
                    .and_then(|p| sub_track(&mut p.role, sub.track))
                {
                    track.stream = Some(stream);
                }
                if let Some(entry) = self.streams.get_mut(&stream) {
                    entry.audio.push(sub);
                }
                self.stats.slot_switches += 1;
            }
            return changed;
        }
        let showing = track.stream == Some(stream) && track.layer == layer;
        let heading = track.next == Some(stream) && track.target == Some(layer);
        if showing {
            // Back before a move happened: cancel it.
            if track.next.is_some() {
                let (current, layer) = (track.stream, track.layer);
                self.unlist(sub);
                self.list_video(sub, current, layer);
            }
            return changed;
        }
        if heading {
            return changed;
        }
        let playing = track.stream.is_some() && track.rewriter.has_started();
        if playing {
            // Keeps showing what it shows until the new source's keyframe.
            let (current, current_layer) = (track.stream, track.layer);
            self.unlist(sub);
            self.list_video(sub, current, current_layer);
            if let Some(track) = self
                .participants
                .get_mut(key)
                .and_then(|p| sub_track(&mut p.role, sub.track))
            {
                track.next = Some(stream);
                track.target = Some(layer);
            }
            if let Some(entry) = self.streams.get_mut(&stream) {
                entry.video[usize::from(layer)].switching.push(sub);
            }
        } else {
            // Nothing to show yet: the source's cached keyframe at once, else its next one.
            self.stats.slot_switches += 1;
            if self.start_replay(sub, stream, layer, now) {
                return changed;
            }
            self.unlist(sub);
            self.list_video(sub, Some(stream), layer);
            if let Some(track) = self
                .participants
                .get_mut(key)
                .and_then(|p| sub_track(&mut p.role, sub.track))
            {
                track.waiting_keyframe = true;
            }
        }
        if self.participants[key].peer.is_connected() {
            self.request_keyframe(now, stream, layer);
        }
        changed
    }

    /// List a video slot as shown `stream`'s layer `layer` (nothing when `stream` is `None`).
    fn list_video(&mut self, sub: SubRef, stream: Option<StreamId>, layer: u8) {
        let Some(track) = self
            .participants
            .get_mut(sub.key)
            .and_then(|p| sub_track(&mut p.role, sub.track))
        else {
            return;
        };
        track.stream = stream;
        track.layer = layer;
        track.next = None;
        track.target = None;
        if let Some(entry) = stream.and_then(|s| self.streams.get_mut(&s)) {
            entry.video[usize::from(layer)].on.push(sub);
        }
    }

    /// Member `key` connected: its video slots start from their sources' cached keyframes, or
    /// on keyframes asked for now.
    pub(super) fn member_connected(&mut self, now: Instant, key: usize) {
        let waiting: Vec<(u8, StreamId, u8)> = match self.participants.get(key).map(|p| &p.role) {
            Some(Role::Member(m)) => m
                .slots
                .iter()
                .enumerate()
                .filter(|(_, t)| {
                    t.kind == TrackKind::Video && t.replay.is_none() && !t.rewriter.has_started()
                })
                .filter_map(|(i, t)| Some((i as u8, t.stream?, t.layer)))
                .collect(),
            _ => return,
        };
        for (track, stream, layer) in waiting {
            if !self.start_replay(SubRef { key, track }, stream, layer, now) {
                self.request_keyframe(now, stream, layer);
            }
        }
    }

    /// Member `key`'s data channel opened: welcome it, and tell it its slots.
    pub(super) fn member_channel_open(&mut self, _now: Instant, key: usize) {
        let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role) else {
            return;
        };
        m.channel_open = true;
        let (room, me) = (m.room, m.stream);
        let Some(entry) = self.rooms.get(&room) else {
            return;
        };
        let participants: Vec<MemberView> = entry
            .in_order()
            .iter()
            .filter(|k| k.info.stream != me)
            .map(|k| k.info.view())
            .collect();
        let json = ServerMessage::Welcome {
            participant: &me.0.to_string(),
            room: &entry.name,
            participants,
        }
        .to_json();
        let speakers: Vec<String> = entry.speakers.iter().map(|s| s.0.to_string()).collect();
        self.send_json(key, &json);
        self.send_slots(key);
        if !speakers.is_empty() {
            let json = ServerMessage::Speakers {
                participants: speakers.iter().map(String::as_str).collect(),
            }
            .to_json();
            self.send_json(key, &json);
        }
    }

    /// A message from member `key` on its data channel.
    pub(super) fn member_message(&mut self, now: Instant, key: usize, binary: bool, data: &[u8]) {
        let Some(Role::Member(m)) = self.participants.get(key).map(|p| &p.role) else {
            return;
        };
        let (room, me) = (m.room, m.stream);
        self.stats.room_messages_in += 1;
        // Every message costs a token: a flood of any kind is refused before it is read.
        let allowed = match self.participants.get_mut(key).map(|p| &mut p.role) {
            Some(Role::Member(m)) => m.rate.take(now),
            _ => false,
        };
        if !allowed {
            return self.refuse_message(key, "over the rate of messages (20 a second)");
        }
        let message = match ClientMessage::parse(binary, data) {
            Ok(m) => m,
            Err(error) => return self.refuse_message(key, &error),
        };
        match message {
            ClientMessage::Subscribe { video } => {
                let mut errors = Vec::new();
                if video.len() > MAX_SUBSCRIBE {
                    errors.push(format!("at most {MAX_SUBSCRIBE} participants"));
                }
                let mut wanted = Vec::new();
                let mut unknown = Vec::new();
                for id in video.iter().take(MAX_SUBSCRIBE) {
                    match self.member_in_room(room, id) {
                        Some(s) => wanted.push(s),
                        None => unknown.push(id.as_str()),
                    }
                }
                if !unknown.is_empty() {
                    errors.push(format!("no participant {} in the room", unknown.join(", ")));
                }
                if let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role) {
                    m.subscribed = Some(wanted);
                }
                if !errors.is_empty() {
                    self.refuse_message(key, &format!("subscribe: {}", errors.join("; ")));
                }
                self.assign_room(now, room);
            }
            ClientMessage::Layer {
                participant,
                rid,
                max_height,
            } => {
                let pref = match (rid, max_height) {
                    (Some(rid), None) => LayerPref::Rid(rid),
                    (None, Some(h)) => LayerPref::MaxHeight(h),
                    _ => {
                        return self.refuse_message(key, "layer: give either rid or maxHeight");
                    }
                };
                let Some(source) = self.member_in_room(room, &participant) else {
                    return self.refuse_message(
                        key,
                        &format!("layer: no participant {participant} in the room"),
                    );
                };
                if let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role) {
                    m.layer_prefs.retain(|(p, _)| *p != source);
                    if m.layer_prefs.len() >= MAX_LAYER_PREFS {
                        m.layer_prefs.remove(0);
                    }
                    m.layer_prefs.push((source, pref));
                }
                self.assign_room(now, room);
            }
            ClientMessage::Message { to, data } => {
                let to = match to {
                    None => None,
                    Some(id) => match self.member_in_room(room, &id).filter(|&s| s != me) {
                        Some(s) => Some(s),
                        None => {
                            return self.refuse_message(
                                key,
                                &format!("message: no participant {id} in the room"),
                            );
                        }
                    },
                };
                let json: Arc<str> = ServerMessage::Message {
                    from: &me.0.to_string(),
                    data: &data,
                }
                .to_json()
                .into();
                self.deliver_room_message(room, Some(me), to, &json, true);
            }
        }
    }

    /// Deliver an app message in `room` to `to` (`None`: every member but `from`), here and, when
    /// `relay`, on the room's other shards.
    fn deliver_room_message(
        &mut self,
        room: RoomId,
        from: Option<StreamId>,
        to: Option<StreamId>,
        json: &Arc<str>,
        relay: bool,
    ) {
        let Some(entry) = self.rooms.get(&room) else {
            return;
        };
        let targets: Vec<usize> = entry
            .members
            .values()
            .filter(|k| Some(k.info.stream) != from && to.is_none_or(|t| t == k.info.stream))
            .filter_map(|k| k.key)
            .collect();
        let shards = match to {
            Some(t) => entry
                .members
                .get(&t)
                .filter(|k| k.key.is_none())
                .map_or(0, |k| 1u64 << k.info.shard.0),
            None => entry.shards & !(1u64 << self.config.id.0),
        };
        for k in targets {
            self.send_json(k, json);
        }
        if !relay {
            return;
        }
        let mut mask = shards;
        while mask != 0 {
            let shard = mask.trailing_zeros() as u16;
            mask &= mask - 1;
            self.stats.relayed += 1;
            self.out.push_back(Output::Relay {
                to: ShardId(shard),
                message: Relay::RoomMessage {
                    room,
                    from,
                    to,
                    json: json.clone(),
                },
            });
        }
    }

    /// An app message relayed from another shard of the room.
    pub(super) fn relayed_room_message(
        &mut self,
        room: RoomId,
        from: Option<StreamId>,
        to: Option<StreamId>,
        json: &Arc<str>,
    ) {
        self.deliver_room_message(room, from, to, json, false);
    }

    /// Tell member `key` why its message was dropped, and count it.
    fn refuse_message(&mut self, key: usize, error: &str) {
        self.stats.drop_room_message += 1;
        let json = ServerMessage::Error { error }.to_json();
        self.send_json(key, &json);
    }

    /// Tell member `key` what each of its slots shows.
    fn send_slots(&mut self, key: usize) {
        let Some(Role::Member(m)) = self.participants.get(key).map(|p| &p.role) else {
            return;
        };
        if !m.channel_open {
            return;
        }
        let slots: Vec<SlotView> = m
            .slots
            .iter()
            .zip(&m.mids)
            .zip(&m.sources)
            .map(|((t, mid), source)| SlotView {
                mid: mid.clone(),
                kind: kind_name(t.kind),
                participant: source.map(|s| s.0.to_string()),
            })
            .collect();
        let json = ServerMessage::Slots { slots }.to_json();
        self.send_json(key, &json);
    }

    /// Send JSON text to member `key` on its data channel (counted as dropped when it is not
    /// open or not read).
    fn send_json(&mut self, key: usize, json: &str) {
        let Some(p) = self.participants.get_mut(key) else {
            return;
        };
        let open = matches!(&p.role, Role::Member(m) if m.channel_open);
        if open && p.peer.send_message(json, MAX_CHANNEL_BUFFER) {
            self.stats.room_messages_out += 1;
            p.mark_ready(key, &mut self.ready);
        } else {
            self.stats.drop_room_unsent += 1;
        }
    }

    /// The member of `room` whose participant id is `id`.
    fn member_in_room(&self, room: RoomId, id: &str) -> Option<StreamId> {
        let stream = parse_id(id)?;
        self.rooms
            .get(&room)?
            .members
            .contains_key(&stream)
            .then_some(stream)
    }

    /// The room's members on this shard, as the admin API shows them.
    pub(super) fn room_info(&self, room: RoomId) -> Option<RoomInfo> {
        let entry = self.rooms.get(&room)?;
        let participants = entry
            .in_order()
            .iter()
            .filter_map(|k| {
                let p = self.participants.get(k.key?)?;
                let Role::Member(m) = &p.role else {
                    return None;
                };
                let view = k.info.view();
                Some(MemberInfo {
                    id: view.id,
                    name: view.name,
                    session: p.session,
                    audio: view.audio,
                    video: view.video,
                    slots: m
                        .slots
                        .iter()
                        .zip(&m.mids)
                        .zip(&m.sources)
                        .map(|((t, mid), s)| SlotInfo {
                            mid: mid.clone(),
                            kind: t.kind,
                            participant: s.map(|s| s.0.to_string()),
                        })
                        .collect(),
                })
            })
            .collect();
        Some(RoomInfo {
            participants,
            speakers: entry.speakers.iter().map(|s| s.0.to_string()).collect(),
        })
    }
}

/// One member's standing when slots are decided.
struct Standing {
    stream: StreamId,
    publishes: [bool; 2],
    level: f32,
    speaking: bool,
    last_spoke: Option<Instant>,
}
