//! Rooms in the control plane: which shard a room lives on, its members' count, and the codec
//! per kind every member's connection is built with.
//!
//! A room lives on the shard its first member was placed on, and the shard keeps everything
//! else (who is in it, slots, speakers): members join there while the shard has a seat, up to
//! [`super::ControlConfig::max_room_members`]. The room's codec of a kind is the one its first
//! member with that kind offered; it is kept until the room empties.

use std::time::Instant;

use super::{
    Admission, Control, Pending, Placing, Refusal, Requester, Role, Session, ShardCommand,
    placement,
};
use crate::ids::{RoomId, SessionId, ShardId, StreamId};
use crate::peer::{Membership, Peer, Published, TrackCodec};
use crate::shard::{Command, RoomMember};

/// A room as the control plane keeps it.
#[derive(Debug)]
pub(super) struct Room {
    id: RoomId,
    /// The shard its first member went to: the others join it while it has a seat.
    home: ShardId,
    /// Members placed or being placed, in join order.
    seats: Vec<Seat>,
    /// The codec per kind of its members' connections.
    codecs: [Option<TrackCodec>; 2],
    next_join: u64,
}

/// One member of a room, placed or being placed.
#[derive(Debug)]
struct Seat {
    info: RoomMember,
    /// Its command was made ([`Control::place`]): the others may hear of it.
    session: Option<SessionId>,
    /// Its shard took it.
    placed: bool,
}

impl Room {
    /// Shards with a placed member (bit per shard).
    fn placed_mask(&self) -> u64 {
        self.seats
            .iter()
            .filter(|s| s.placed)
            .fold(0, |m, s| m | 1u64 << s.info.shard.0)
    }

    /// Members placed or being placed, per shard.
    fn per_shard(&self, shards: usize) -> Vec<u32> {
        let mut v = vec![0; shards];
        for s in &self.seats {
            if let Some(n) = v.get_mut(usize::from(s.info.shard.0)) {
                *n += 1;
            }
        }
        v
    }

    fn view<'a>(&self, name: &'a str) -> RoomView<'a> {
        RoomView {
            name,
            id: self.id,
            shard: self.home,
            members: self.seats.len() as u32,
        }
    }
}

/// One room as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its id ([`Command::RoomInfo`]).
    pub id: RoomId,
    /// The shard it lives on (its first member's; members spill to others when it is full).
    pub shard: ShardId,
    /// Members placed or being placed.
    pub members: u32,
}

impl Control {
    /// Step 1 of a room join ([`Control::admit`] for rooms): check the admission limits, then
    /// reserve a seat: on the room's shard while it has one, then where the room already is,
    /// then on the least loaded shard (a new room: the least loaded). `name` is the member's
    /// display name (its participant id when `None`).
    pub fn admit_member(
        &mut self,
        room: &str,
        name: Option<&str>,
        from: Requester,
        now: Instant,
    ) -> Result<Admission, Refusal> {
        self.check_admission(from, now)?;
        let admission = self.admit_to_room(room, name, from)?;
        self.admitted(from, now);
        Ok(admission)
    }

    /// Every room with a member placed or being placed.
    pub fn rooms(&self) -> impl Iterator<Item = RoomView<'_>> {
        self.rooms.iter().map(|(name, r)| r.view(name))
    }

    /// A room by name.
    pub fn room(&self, name: &str) -> Option<RoomView<'_>> {
        self.rooms.get_key_value(name).map(|(n, r)| r.view(n))
    }

    /// The shards hosting a room's members (placed or being placed).
    pub fn room_shards(&self, name: &str) -> Vec<ShardId> {
        let Some(room) = self.rooms.get(name) else {
            return Vec::new();
        };
        let mut v: Vec<ShardId> = room.seats.iter().map(|s| s.info.shard).collect();
        v.sort();
        v.dedup();
        v
    }

    /// The member sessions of a room.
    pub fn members_of(&self, room: &str) -> Vec<SessionId> {
        let mut v: Vec<SessionId> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.role == Role::Member && s.stream == room)
            .map(|(id, _)| *id)
            .collect();
        v.sort();
        v
    }

    pub(super) fn admit_to_room(
        &mut self,
        name: &str,
        member_name: Option<&str>,
        from: Requester,
    ) -> Result<Admission, Refusal> {
        let max = self.config.max_room_members;
        let limits = self.placement_limits(from);
        let shards = self.load.len();
        let shard = match self.rooms.get(name) {
            Some(room) if room.seats.len() as u32 >= max => {
                return Err(Refusal::RoomFull(name.to_string(), max));
            }
            Some(room) => {
                placement::viewer(&self.load, limits, Some(room.home), &room.per_shard(shards))
                    .ok_or(Refusal::Full)?
            }
            None => placement::publisher(&self.load, limits, None).ok_or(Refusal::Full)?,
        };
        let next_room = RoomId(self.next_stream);
        let room = self.rooms.entry(name.to_string()).or_insert_with(|| Room {
            id: next_room,
            home: shard,
            seats: Vec::new(),
            codecs: [None, None],
            next_join: 1,
        });
        let codecs = Published {
            tracks: room.codecs.clone(),
            layers: Vec::new(),
        };
        // Room and member ids come from the stream counter: never reused, never equal.
        self.next_stream += 1;
        let member = StreamId(self.next_stream);
        self.next_stream += 1;
        let member_name = member_name
            .map(str::to_string)
            .unwrap_or_else(|| member.0.to_string());
        room.seats.push(Seat {
            info: RoomMember {
                stream: member,
                name: member_name.clone(),
                publishes: [None, None],
                layers: Vec::new(),
                joined: room.next_join,
                shard,
            },
            session: None,
            placed: false,
        });
        room.next_join += 1;
        self.load[usize::from(shard.0)] += 1;
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.pending.insert(
            ticket,
            Pending {
                role: Role::Member,
                stream: name.to_string(),
                shard,
                published: Some(codecs.clone()),
                relay_to: 0,
                session: None,
                from,
                member: Some((member, member_name)),
            },
        );
        Ok(Admission {
            ticket,
            role: Role::Member,
            stream: member,
            shard,
            published: Some(codecs),
        })
    }

    /// Step 2 of a room join: the room's codecs are fixed by the first member that has them;
    /// a member built for others (two first members at once) is refused. Its command names
    /// the room's members on other shards and the shards hosting the room.
    pub(super) fn place_member(
        &mut self,
        ticket: u64,
        session: SessionId,
        peer: Box<Peer>,
        membership: Box<Membership>,
    ) -> Result<(Placing, ShardCommand), Refusal> {
        let Some(p) = self.pending.get(&ticket) else {
            return Err(Refusal::UnknownSession);
        };
        let (shard, name) = (p.shard, p.stream.clone());
        let Some((member, _)) = p.member.clone() else {
            return Err(Refusal::UnknownSession);
        };
        let Some(room) = self.rooms.get_mut(&name) else {
            return Err(Refusal::UnknownSession);
        };
        let ours = Published {
            tracks: membership.codecs.clone(),
            layers: Vec::new(),
        };
        let theirs = Published {
            tracks: room.codecs.clone(),
            layers: Vec::new(),
        };
        if ours.changed_from(&theirs).is_some() {
            self.release_ticket(ticket);
            return Err(Refusal::CodecChanged);
        }
        for (have, offered) in room.codecs.iter_mut().zip(&membership.codecs) {
            if have.is_none() {
                have.clone_from(offered);
            }
        }
        let shards = room.placed_mask() | 1u64 << shard.0;
        let others: Vec<RoomMember> = room
            .seats
            .iter()
            .filter(|s| s.session.is_some() && s.info.shard != shard)
            .map(|s| s.info.clone())
            .collect();
        let Some(seat) = room.seats.iter_mut().find(|s| s.info.stream == member) else {
            return Err(Refusal::UnknownSession);
        };
        seat.session = Some(session);
        seat.info.publishes = membership
            .published
            .tracks
            .each_ref()
            .map(|t| t.as_ref().map(|t| t.name));
        seat.info.layers.clone_from(&membership.published.layers);
        let command = Command::AddMember {
            session,
            room: room.id,
            room_name: name,
            member: seat.info.clone(),
            peer,
            membership,
            others,
            shards,
        };
        Ok((
            Placing {
                ticket,
                session,
                shard,
            },
            ShardCommand { shard, command },
        ))
    }

    /// Step 3 of a room join: recorded; the room's other shards hear of the member, and its
    /// shard of the members elsewhere.
    pub(super) fn member_placed(
        &mut self,
        p: Pending,
        session: SessionId,
        etag: String,
    ) -> super::Joined {
        let member = p.member.as_ref().map(|(id, _)| *id);
        self.sessions.insert(
            session,
            Session {
                stream: p.stream.clone(),
                role: Role::Member,
                shard: p.shard,
                etag,
                from: p.from,
                connected: false,
                video: None,
                member,
            },
        );
        if let Some(room) = self.rooms.get_mut(&p.stream)
            && let Some(seat) = room
                .seats
                .iter_mut()
                .find(|s| Some(s.info.stream) == member)
        {
            seat.placed = true;
            let me = seat.info.clone();
            let shards = room.placed_mask();
            let mut commands = Vec::new();
            for to in shards_in(shards & !(1u64 << me.shard.0)) {
                commands.push(room_member(room.id, &p.stream, &me, true, shards, to));
            }
            for other in room.seats.iter().filter(|s| s.session.is_some()) {
                if other.info.shard != me.shard {
                    commands.push(room_member(
                        room.id,
                        &p.stream,
                        &other.info,
                        true,
                        shards,
                        me.shard,
                    ));
                }
            }
            self.commands.extend(commands);
        }
        super::Joined {
            session,
            shard: p.shard,
            codec_change: None,
        }
    }

    /// Member `member` of `room` left, or its join was undone: the room's other shards hear
    /// of it; an empty room goes.
    pub(super) fn member_gone(&mut self, room: &str, member: Option<StreamId>) {
        let Some(r) = self.rooms.get_mut(room) else {
            return;
        };
        let Some(i) = r.seats.iter().position(|s| Some(s.info.stream) == member) else {
            return;
        };
        let seat = r.seats.remove(i);
        if r.seats.is_empty() {
            self.rooms.remove(room);
            return;
        }
        if seat.session.is_none() {
            // Nobody heard of it.
            return;
        }
        let shards = r.placed_mask();
        for to in shards_in(shards & !(1u64 << seat.info.shard.0)) {
            self.commands
                .push_back(room_member(r.id, room, &seat.info, false, shards, to));
        }
    }
}

/// The shards of a mask (bit per shard), lowest first.
fn shards_in(mut mask: u64) -> impl Iterator<Item = ShardId> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let shard = mask.trailing_zeros() as u16;
            mask &= mask - 1;
            ShardId(shard)
        })
    })
}

/// A [`Command::RoomMember`] for `to`.
fn room_member(
    room: RoomId,
    name: &str,
    member: &RoomMember,
    present: bool,
    shards: u64,
    to: ShardId,
) -> ShardCommand {
    ShardCommand {
        shard: to,
        command: Command::RoomMember {
            room,
            room_name: name.to_string(),
            member: member.clone(),
            present,
            shards,
        },
    }
}
