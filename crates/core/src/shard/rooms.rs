//! Rooms on one shard: members, which member each slot shows, speakers, and the data channel.
//!
//! A member publishes like a WHIP publisher (its own stream, relayed and cached the same way)
//! and receives in slots, each listed on the stream it shows like a WHEP viewer's track. What a
//! slot shows is decided here, for every member of the room at once, whenever it can change:
//! a join, a leave, a `subscribe`, a `layer`, and each speaker ranking ([`RANK_INTERVAL`], run
//! as a member's audio packet arrives after the interval; a room where nobody sends audio
//! keeps its slots). An audio slot moves at once (its rewriter keeps sequence numbers and
//! timestamps continuous); a video slot that shows someone keeps showing them until the new
//! source's next keyframe (asked for with a PLI), then moves with the keyframe.

use std::time::Instant;

use super::routing::{SubRef, SubTrack, sub_track};
use super::{Role, Shard};
use crate::ids::{RoomId, StreamId, TrackKind};
use crate::peer::Membership;
use crate::room::{
    ClientMessage, LayerPref, Loudness, MAX_LAYER_PREFS, MAX_SUBSCRIBE, MemberView, MessageRate,
    RANK_INTERVAL, ServerMessage, SlotView, kind_name, loudest, place_stable,
};

/// A member's data channel may hold this many bytes unsent; messages past it are dropped (a
/// member that does not read them).
const MAX_CHANNEL_BUFFER: usize = 256 * 1024;

/// Without a `layer` message, a simulcast source is shown in the best layer at most this
/// tall (a grid tile).
const DEFAULT_SLOT_HEIGHT: u32 = 360;

/// A room member's state on its shard.
pub(super) struct Member {
    /// The stream it publishes.
    pub(super) stream: StreamId,
    pub(super) room: RoomId,
    /// Its participant id (public; not its session).
    pub(super) id: String,
    pub(super) name: String,
    pub(super) publishes: [bool; 2],
    /// Its slots, in offer order.
    pub(super) slots: Vec<SubTrack>,
    /// Each slot's `a=mid`.
    pub(super) mids: Vec<String>,
    /// Each slot's source, the member key it shows (or moves to).
    pub(super) sources: Vec<Option<usize>>,
    pub(super) loudness: Loudness,
    /// When it last spoke (for filling video slots with recent speakers).
    pub(super) last_spoke: Option<Instant>,
    /// Its place in the join order.
    pub(super) joined: u64,
    /// Participant ids it asked to see, most wanted first (`subscribe`).
    pub(super) subscribed: Option<Vec<String>>,
    /// Layer choices per participant id (`layer`).
    pub(super) layer_prefs: Vec<(String, LayerPref)>,
    pub(super) rate: MessageRate,
    pub(super) channel_open: bool,
}

/// A room's state on its shard.
pub(super) struct RoomEntry {
    name: String,
    /// Member keys in join order.
    members: Vec<usize>,
    /// Speaking member keys, loudest first, as last told.
    speakers: Vec<usize>,
    next_rank: Option<Instant>,
    joins: u64,
}

/// A room as [`crate::Command::RoomInfo`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomInfo {
    /// Members in join order.
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
    pub session: crate::ids::SessionId,
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
    pub(super) session: crate::ids::SessionId,
    pub(super) room: RoomId,
    pub(super) room_name: String,
    pub(super) stream: StreamId,
    pub(super) name: String,
    pub(super) membership: Membership,
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
            stream,
            name,
            membership,
        } = new;
        let joined = {
            let entry = self.rooms.entry(room).or_insert_with(|| RoomEntry {
                name: room_name,
                members: Vec::new(),
                speakers: Vec::new(),
                next_rank: None,
                joins: 0,
            });
            entry.joins += 1;
            entry.joins
        };
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
        let publishes = membership.published.tracks.each_ref().map(Option::is_some);
        let member = Member {
            stream,
            room,
            id: stream.0.to_string(),
            name,
            publishes,
            sources: vec![None; slots.len()],
            slots,
            mids,
            loudness: Loudness::default(),
            last_spoke: None,
            joined,
            subscribed: None,
            layer_prefs: Vec::new(),
            rate: MessageRate::default(),
            channel_open: false,
        };
        let key = match self.insert(now, session, peer, Role::Member(member)) {
            Ok(key) => key,
            Err(e) => {
                self.drop_room_if_empty(room);
                return Err(e);
            }
        };
        let entry = self.streams.entry(stream).or_default();
        entry.publisher = Some(key);
        entry.epoch = session.0;
        entry.origin = Some(self.config.id);
        entry.room = true;
        entry.keyframes = Default::default();
        entry.codecs = membership
            .published
            .tracks
            .each_ref()
            .map(|t| t.as_ref().map(|t| t.name));
        entry.layers.reset(&membership.published.layers);
        entry.gops = Default::default();
        entry.gop_epoch = session.0;
        let Some(entry) = self.rooms.get_mut(&room) else {
            return Ok(key);
        };
        entry.members.push(key);
        let others = entry.members.clone();
        if let Role::Member(m) = &self.participants[key].role {
            let json = ServerMessage::Join {
                participant: &m.id,
                name: &m.name,
                audio: publishes[TrackKind::Audio.index()],
                video: publishes[TrackKind::Video.index()],
            }
            .to_json();
            for &other in others.iter().filter(|&&o| o != key) {
                self.send_json(other, &json);
            }
        }
        self.assign_room(now, room);
        Ok(key)
    }

    /// Take member `key` out of its room (before its lists are emptied): the others hear of
    /// it, and slots that showed it get another source.
    pub(super) fn leave_room(&mut self, now: Instant, key: usize) {
        let Some(Role::Member(m)) = self.participants.get(key).map(|p| &p.role) else {
            return;
        };
        let room = m.room;
        let json = ServerMessage::Leave { participant: &m.id }.to_json();
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        entry.members.retain(|&k| k != key);
        entry.speakers.retain(|&k| k != key);
        let others = entry.members.clone();
        for &other in &others {
            self.send_json(other, &json);
            // Slots showing the member that leaves show nothing until assigned again.
            let count = match self.participants.get(other).map(|p| &p.role) {
                Some(Role::Member(o)) => o.sources.len(),
                _ => 0,
            };
            for slot in 0..count {
                let shows = matches!(
                    self.participants.get(other).map(|p| &p.role),
                    Some(Role::Member(o)) if o.sources[slot] == Some(key)
                );
                if shows {
                    self.unlist(SubRef {
                        key: other,
                        track: slot as u8,
                    });
                    if let Some(Role::Member(o)) =
                        self.participants.get_mut(other).map(|p| &mut p.role)
                    {
                        o.sources[slot] = None;
                    }
                }
            }
        }
        if others.is_empty() {
            self.rooms.remove(&room);
        } else {
            self.assign_room(now, room);
        }
    }

    fn drop_room_if_empty(&mut self, room: RoomId) {
        if self.rooms.get(&room).is_some_and(|r| r.members.is_empty()) {
            self.rooms.remove(&room);
        }
    }

    /// An audio packet of member `key` carried `level` (RFC 6464): count it; rank the room's
    /// speakers when it is time.
    pub(super) fn member_audio_level(&mut self, now: Instant, key: usize, level: i8) {
        let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role) else {
            return;
        };
        m.loudness.packet(level);
        let room = m.room;
        let Some(entry) = self.rooms.get_mut(&room) else {
            return;
        };
        match entry.next_rank {
            Some(at) if now < at => {}
            _ => {
                entry.next_rank = Some(now + RANK_INTERVAL);
                self.rank_speakers(now, room);
            }
        }
    }

    /// Rank the room's speakers; tell the members when the ranking changed; give the slots
    /// their sources.
    fn rank_speakers(&mut self, now: Instant, room: RoomId) {
        let Some(entry) = self.rooms.get(&room) else {
            return;
        };
        let members = entry.members.clone();
        let mut speaking: Vec<(usize, f32)> = Vec::new();
        for &k in &members {
            if let Some(Role::Member(m)) = self.participants.get_mut(k).map(|p| &mut p.role) {
                let (level, speaks) = m.loudness.rank();
                if speaks {
                    m.last_spoke = Some(now);
                    speaking.push((k, level));
                }
            }
        }
        speaking.sort_by(|a, b| b.1.total_cmp(&a.1));
        let speakers: Vec<usize> = speaking.iter().map(|s| s.0).collect();
        let changed = self
            .rooms
            .get_mut(&room)
            .is_some_and(|e| std::mem::replace(&mut e.speakers, speakers.clone()) != speakers);
        if changed {
            let ids: Vec<String> = speakers.iter().filter_map(|&k| self.member_id(k)).collect();
            let json = ServerMessage::Speakers {
                participants: ids.iter().map(String::as_str).collect(),
            }
            .to_json();
            for &k in &members {
                self.send_json(k, &json);
            }
        }
        self.assign_room(now, room);
    }

    /// Decide every slot of every member of `room`, and move those that change.
    fn assign_room(&mut self, now: Instant, room: RoomId) {
        let Some(entry) = self.rooms.get(&room) else {
            return;
        };
        let members = entry.members.clone();
        // Everyone's standing, once: (key, id, publishes, loudness, speaking, last spoke, joined).
        let standing: Vec<Standing> = members
            .iter()
            .filter_map(|&k| match self.participants.get(k).map(|p| &p.role) {
                Some(Role::Member(m)) => Some(Standing {
                    key: k,
                    id: m.id.clone(),
                    publishes: m.publishes,
                    level: m.loudness.level(),
                    speaking: m.loudness.speaking(),
                    last_spoke: m.last_spoke,
                    joined: m.joined,
                }),
                _ => None,
            })
            .collect();
        // Video by recent speech, then join order.
        let mut recent: Vec<&Standing> = standing
            .iter()
            .filter(|s| s.publishes[TrackKind::Video.index()])
            .collect();
        recent.sort_by(|a, b| {
            b.last_spoke
                .cmp(&a.last_spoke)
                .then(a.joined.cmp(&b.joined))
        });
        for &k in &members {
            self.assign_member(now, k, &standing, &recent);
        }
    }

    /// Decide member `key`'s slots from everyone's standing.
    fn assign_member(
        &mut self,
        now: Instant,
        key: usize,
        standing: &[Standing],
        recent: &[&Standing],
    ) {
        let Some(Role::Member(m)) = self.participants.get(key).map(|p| &p.role) else {
            return;
        };
        let mut plan: Vec<(usize, Option<usize>)> = Vec::new();
        for kind in TrackKind::ALL {
            let idx: Vec<usize> = (0..m.slots.len())
                .filter(|&i| m.slots[i].kind == kind)
                .collect();
            if idx.is_empty() {
                continue;
            }
            let current: Vec<Option<usize>> = idx.iter().map(|&i| m.sources[i]).collect();
            let wanted: Vec<usize> = match kind {
                TrackKind::Audio => {
                    let candidates: Vec<(usize, f32, bool)> = standing
                        .iter()
                        .filter(|s| s.key != key && s.publishes[TrackKind::Audio.index()])
                        .map(|s| (s.key, s.level, s.speaking))
                        .collect();
                    loudest(&candidates, &current, idx.len())
                }
                TrackKind::Video => {
                    let mut order: Vec<usize> = Vec::new();
                    if let Some(ids) = &m.subscribed {
                        for id in ids {
                            if let Some(s) = recent.iter().find(|s| &s.id == id && s.key != key)
                                && !order.contains(&s.key)
                            {
                                order.push(s.key);
                            }
                        }
                    }
                    for s in recent {
                        if s.key != key && !order.contains(&s.key) {
                            order.push(s.key);
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

    /// Give slot `slot` of member `key` the source `source` (a member key), in the layer its
    /// member wants; true when the source changed.
    fn set_slot_source(
        &mut self,
        now: Instant,
        key: usize,
        slot: usize,
        source: Option<usize>,
    ) -> bool {
        let sub = SubRef {
            key,
            track: slot as u8,
        };
        let (stream, source_id) = match source.and_then(|s| self.participants.get(s)) {
            Some(p) => match &p.role {
                Role::Member(m) => (Some(m.stream), Some(m.id.clone())),
                _ => (None, None),
            },
            None => (None, None),
        };
        let Some(p) = self.participants.get_mut(key) else {
            return false;
        };
        let Role::Member(m) = &mut p.role else {
            return false;
        };
        let changed = m.sources[slot] != source;
        m.sources[slot] = source;
        let kind = m.slots[slot].kind;
        let pref = source_id.and_then(|id| {
            m.layer_prefs
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, pref)| pref.clone())
        });
        let Some(stream) = stream else {
            if changed {
                self.unlist(sub);
            }
            return changed;
        };
        let layer = match (kind, self.streams.get(&stream)) {
            (TrackKind::Video, Some(entry)) => {
                let max_height = match &pref {
                    Some(LayerPref::Rid(rid)) => match entry.layers.index_of(rid) {
                        Some(i) => Some(Err(i)),
                        None => Some(Ok(DEFAULT_SLOT_HEIGHT)),
                    },
                    Some(LayerPref::MaxHeight(h)) => Some(Ok(*h)),
                    None => Some(Ok(DEFAULT_SLOT_HEIGHT)),
                };
                match max_height {
                    Some(Err(index)) => index,
                    Some(Ok(h)) => entry.layers.best_within(h, now),
                    None => 0,
                }
            }
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
        // Video.
        let showing = track.stream == Some(stream) && track.layer == layer;
        let heading = track.next == Some(stream) && track.target == Some(layer);
        if showing {
            // Back before a move happened: cancel it.
            if track.next.is_some() {
                let current = track.stream;
                let layer = track.layer;
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
        let (room, id) = (m.room, m.id.clone());
        let Some(entry) = self.rooms.get(&room) else {
            return;
        };
        let participants: Vec<MemberView> = entry
            .members
            .iter()
            .filter(|&&k| k != key)
            .filter_map(|&k| self.member_view(k))
            .collect();
        let json = ServerMessage::Welcome {
            participant: &id,
            room: &entry.name,
            participants,
        }
        .to_json();
        let speakers: Vec<String> = entry
            .speakers
            .iter()
            .filter_map(|&k| self.member_id(k))
            .collect();
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
        let room = m.room;
        self.stats.room_messages_in += 1;
        let message = match ClientMessage::parse(binary, data) {
            Ok(m) => m,
            Err(error) => return self.refuse_message(key, &error),
        };
        match message {
            ClientMessage::Subscribe { video } => {
                let mut error = None;
                let mut ids = video;
                if ids.len() > MAX_SUBSCRIBE {
                    ids.truncate(MAX_SUBSCRIBE);
                    error = Some(format!("subscribe: at most {MAX_SUBSCRIBE} participants"));
                }
                let unknown: Vec<&str> = ids
                    .iter()
                    .filter(|id| self.member_in_room(room, id).is_none())
                    .map(String::as_str)
                    .collect();
                if !unknown.is_empty() {
                    error = Some(format!(
                        "subscribe: no participant {} in the room",
                        unknown.join(", ")
                    ));
                }
                if let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role) {
                    m.subscribed = Some(ids);
                }
                if let Some(error) = error {
                    self.refuse_message(key, &error);
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
                if self.member_in_room(room, &participant).is_none() {
                    return self.refuse_message(
                        key,
                        &format!("layer: no participant {participant} in the room"),
                    );
                }
                if let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role) {
                    m.layer_prefs.retain(|(p, _)| *p != participant);
                    if m.layer_prefs.len() >= MAX_LAYER_PREFS {
                        m.layer_prefs.remove(0);
                    }
                    m.layer_prefs.push((participant, pref));
                }
                self.assign_room(now, room);
            }
            ClientMessage::Message { to, data } => {
                let Some(Role::Member(m)) = self.participants.get_mut(key).map(|p| &mut p.role)
                else {
                    return;
                };
                if !m.rate.take(now) {
                    return self.refuse_message(key, "message: over the rate of messages");
                }
                let from = m.id.clone();
                let json = ServerMessage::Message {
                    from: &from,
                    data: &data,
                }
                .to_json();
                match to {
                    Some(id) => match self.member_in_room(room, &id) {
                        Some(k) if k != key => self.send_json(k, &json),
                        _ => {
                            self.refuse_message(
                                key,
                                &format!("message: no participant {id} in the room"),
                            );
                        }
                    },
                    None => {
                        let members = self
                            .rooms
                            .get(&room)
                            .map(|r| r.members.clone())
                            .unwrap_or_default();
                        for k in members.into_iter().filter(|&k| k != key) {
                            self.send_json(k, &json);
                        }
                    }
                }
            }
        }
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
                participant: source.and_then(|s| self.member_id(s)),
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

    fn member_id(&self, key: usize) -> Option<String> {
        match self.participants.get(key).map(|p| &p.role) {
            Some(Role::Member(m)) => Some(m.id.clone()),
            _ => None,
        }
    }

    fn member_view(&self, key: usize) -> Option<MemberView> {
        match self.participants.get(key).map(|p| &p.role) {
            Some(Role::Member(m)) => Some(MemberView {
                id: m.id.clone(),
                name: m.name.clone(),
                audio: m.publishes[TrackKind::Audio.index()],
                video: m.publishes[TrackKind::Video.index()],
            }),
            _ => None,
        }
    }

    /// The member of `room` whose participant id is `id`.
    fn member_in_room(&self, room: RoomId, id: &str) -> Option<usize> {
        self.rooms.get(&room)?.members.iter().copied().find(|&k| {
            matches!(self.participants.get(k).map(|p| &p.role), Some(Role::Member(m)) if m.id == id)
        })
    }

    /// The room as the admin API shows it.
    pub(super) fn room_info(&self, room: RoomId) -> Option<RoomInfo> {
        let entry = self.rooms.get(&room)?;
        let participants = entry
            .members
            .iter()
            .filter_map(|&k| {
                let p = self.participants.get(k)?;
                let Role::Member(m) = &p.role else {
                    return None;
                };
                Some(MemberInfo {
                    id: m.id.clone(),
                    name: m.name.clone(),
                    session: p.session,
                    audio: m.publishes[TrackKind::Audio.index()],
                    video: m.publishes[TrackKind::Video.index()],
                    slots: m
                        .slots
                        .iter()
                        .zip(&m.mids)
                        .zip(&m.sources)
                        .map(|((t, mid), s)| SlotInfo {
                            mid: mid.clone(),
                            kind: t.kind,
                            participant: s.and_then(|s| self.member_id(s)),
                        })
                        .collect(),
                })
            })
            .collect();
        Some(RoomInfo {
            participants,
            speakers: entry
                .speakers
                .iter()
                .filter_map(|&k| self.member_id(k))
                .collect(),
        })
    }
}

/// One member's standing when slots are decided.
struct Standing {
    key: usize,
    id: String,
    publishes: [bool; 2],
    level: f32,
    speaking: bool,
    last_spoke: Option<Instant>,
    joined: u64,
}
