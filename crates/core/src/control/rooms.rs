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
use crate::shard::Command;

/// A room as the control plane keeps it.
#[derive(Debug)]
pub(super) struct Room {
    id: RoomId,
    shard: ShardId,
    /// Members placed or being placed.
    members: u32,
    /// The codec per kind of its members' connections.
    codecs: [Option<TrackCodec>; 2],
}

/// One room as the control plane knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomView<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its id ([`Command::RoomInfo`]).
    pub id: RoomId,
    /// The shard it lives on.
    pub shard: ShardId,
    /// Members placed or being placed.
    pub members: u32,
}

impl Control {
    /// Step 1 of a room join ([`Control::admit`] for rooms): check the admission limits, then
    /// reserve a seat on the room's shard (the least loaded one for a new room). `name` is the
    /// member's display name (its participant id when `None`).
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
        let shard = match self.rooms.get(name) {
            Some(room) if room.members >= max => {
                return Err(Refusal::RoomFull(name.to_string(), max));
            }
            // The room's shard while it has a seat: rooms do not spread over shards.
            Some(room) => {
                if self.load[usize::from(room.shard.0)] >= limits.max {
                    return Err(Refusal::RoomFull(name.to_string(), room.members));
                }
                room.shard
            }
            None => placement::publisher(&self.load, limits, None).ok_or(Refusal::Full)?,
        };
        let next_room = RoomId(self.next_stream);
        let room = self.rooms.entry(name.to_string()).or_insert_with(|| Room {
            id: next_room,
            shard,
            members: 0,
            codecs: [None, None],
        });
        room.members += 1;
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
    /// a member built for others (two first members at once) is refused.
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
        let Some((member, member_name)) = p.member.clone() else {
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
        let command = Command::AddMember {
            session,
            room: room.id,
            room_name: name,
            member,
            name: member_name,
            peer,
            membership,
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

    pub(super) fn member_placed(
        &mut self,
        p: Pending,
        session: SessionId,
        etag: String,
    ) -> super::Joined {
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
                member: p.member.map(|(id, _)| id),
            },
        );
        super::Joined {
            session,
            shard: p.shard,
            codec_change: None,
        }
    }

    /// A member of `room` left, or its join was undone.
    pub(super) fn member_gone(&mut self, room: &str) {
        if let Some(r) = self.rooms.get_mut(room) {
            r.members = r.members.saturating_sub(1);
            if r.members == 0 {
                self.rooms.remove(room);
            }
        }
    }
}

impl Room {
    fn view<'a>(&self, name: &'a str) -> RoomView<'a> {
        RoomView {
            name,
            id: self.id,
            shard: self.shard,
            members: self.members,
        }
    }
}
