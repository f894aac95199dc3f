//! Rooms in the sim: members join through the control plane's room flow (as `POST
//! /rooms/{room}` does), talk over the data channel, and a room's state is read from its
//! shards (as `GET /api/rooms/{room}` does).

use std::time::Duration;

use ringcast_core::control::{Built, Refusal, Requester};
use ringcast_core::{Command, Peer, Reply, RoomInfo, SetupError, TrackKind};
use serde_json::Value;

use crate::client::{ClientId, Spec};
use crate::member::{self, MemberConfig};
use crate::{Sim, client_addr};

/// Why a member could not join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinError {
    /// The control plane refused it (an HTTP 4xx/5xx of its own).
    Refused(Refusal),
    /// Its offer was refused (`Peer::member`: 400 or 422).
    Offer(String),
}

impl std::fmt::Display for JoinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JoinError::Refused(r) => write!(f, "refused: {r}"),
            JoinError::Offer(e) => write!(f, "offer refused: {e}"),
        }
    }
}

impl From<Refusal> for JoinError {
    fn from(r: Refusal) -> Self {
        JoinError::Refused(r)
    }
}

impl From<SetupError> for JoinError {
    fn from(e: SetupError) -> Self {
        JoinError::Offer(e.to_string())
    }
}

impl Sim {
    /// A member named `name` joins `room`: its client and offer are built ([`MemberConfig`]),
    /// and the control plane admits it, its peer is built with `Peer::member`, placed, and the
    /// shards told what follows — the flow of `POST /rooms/{room}?name=`. It connects, opens
    /// the data channel and starts sending as the sim runs. Panics if refused.
    pub fn join_room(&mut self, room: &str, name: &str, config: MemberConfig) -> ClientId {
        self.try_join_room(room, Some(name), config)
            .unwrap_or_else(|e| panic!("member {name} of room {room}: {e}"))
    }

    /// Like [`Sim::join_room`], with why it was refused; `name` `None` leaves the display name
    /// to the server (the participant id).
    pub fn try_join_room(
        &mut self,
        room: &str,
        name: Option<&str>,
        config: MemberConfig,
    ) -> Result<ClientId, JoinError> {
        let id = ClientId(self.clients.len());
        let addr = client_addr(id);
        let from = Requester::new(addr.ip(), false);
        let admission = self.control.admit_member(room, name, from, self.now)?;
        let (shard, stream) = (admission.shard, admission.stream);
        let codecs = admission.published.clone().unwrap_or_default().tracks;
        let built = member::build(self.now, &self.client_cert, addr, &config);
        let (session, setup) = self.mint(shard);
        let offer = built.offer.to_sdp_string();
        let made = Peer::member(&setup, &offer, &codecs, self.config.max_slots, self.now);
        let (peer, answer, membership) = match made {
            Ok(m) => m,
            Err(e) => {
                self.control.abandon(admission);
                return Err(e.into());
            }
        };
        let made = Built::Member(Box::new(peer), Box::new(membership));
        let (placing, command) = self.control.place(admission, session, made)?;
        let answered = self.command(command.shard, command.command).map(|_| ());
        let joined = self
            .control
            .placed(placing, answered, format!("\"{session}\""));
        self.deliver_commands();
        joined?;
        let generation = self.new_generation(id);
        let spec = Spec::Member(Box::new(config), generation, self.seed_for(id, 3));
        let mut client = self.new_client(id, built, &answer, shard, session, stream, spec);
        client.participant = Some(stream.0.to_string());
        self.clients.push(client);
        self.client_addrs.insert(addr, id);
        self.publishers.push(id);
        self.schedule_client(id);
        Ok(id)
    }

    /// Run until every member in `ids` is connected and got its `welcome`; panics after `max`.
    pub fn connect_members(&mut self, ids: &[ClientId], max: Duration) {
        let welcomed = |s: &Sim, id: &ClientId| {
            let c = &s.clients[id.0];
            c.is_connected() && c.member().welcome().is_some()
        };
        let ok = self.run_until_true(max, |s| ids.iter().all(|id| welcomed(s, id)));
        if !ok {
            let stuck: Vec<_> = ids.iter().filter(|id| !welcomed(self, id)).collect();
            panic!("members {stuck:?} not connected and welcomed after {max:?}");
        }
    }

    /// The RFC 6464 audio level (0 loud .. 127 silence) of a member's next audio packets.
    pub fn set_audio_level(&mut self, id: ClientId, level: u8) {
        self.clients[id.0].member_mut().send.audio_level = Some(level.min(member::SILENCE));
    }

    /// A member sends one JSON message on its data channel. `false` while the channel is not
    /// open.
    pub fn send_message(&mut self, id: ClientId, json: &Value) -> bool {
        self.send_raw(id, false, json.to_string().as_bytes())
    }

    /// A member sends these bytes on its data channel as they are (text or binary), for bad
    /// input. `false` while the channel is not open.
    pub fn send_raw(&mut self, id: ClientId, binary: bool, bytes: &[u8]) -> bool {
        let c = &mut self.clients[id.0];
        let ok = match &mut c.role {
            crate::Role::Member(m) => m.write(&mut c.rtc, binary, bytes),
            _ => panic!("client {id:?} is not a room member"),
        };
        self.drain_client(id.0);
        ok
    }

    /// The participant id of a member (as `X-Ringcast-Participant` says), `None` for others.
    pub fn participant(&self, id: ClientId) -> Option<&str> {
        self.clients[id.0].participant.as_deref()
    }

    /// The member whose participant id this is.
    pub fn member_by_participant(&self, participant: &str) -> Option<ClientId> {
        self.clients
            .iter()
            .find(|c| c.participant.as_deref() == Some(participant))
            .map(|c| c.id)
    }

    /// Who sent each packet received on a member's slot `mid` (by the payload's tag), in
    /// arrival order.
    pub fn slot_sources(&self, id: ClientId, mid: &str) -> Vec<Option<ClientId>> {
        let slot = self.clients[id.0]
            .member()
            .slot(mid)
            .unwrap_or_else(|| panic!("client {id:?} has no slot {mid}"));
        slot.received
            .iter()
            .map(|r| self.source_of(&r.payload))
            .collect()
    }

    /// The mids of a member's slots of `kind`, in offer order.
    pub fn slot_mids(&self, id: ClientId, kind: TrackKind) -> Vec<String> {
        self.clients[id.0]
            .member()
            .slots_of(kind)
            .map(|s| s.mid.clone())
            .collect()
    }

    /// A room's state from its shards (`Command::RoomInfo` to each shard hosting it, merged as
    /// `GET /api/rooms/{room}` does): members in join order, the home shard's speakers.
    /// `None` for a room the control plane does not know.
    pub fn room_info(&mut self, room: &str) -> Option<RoomInfo> {
        let (id, home) = {
            let r = self.control.room(room)?;
            (r.id, r.shard)
        };
        let mut info = RoomInfo {
            participants: Vec::new(),
            speakers: Vec::new(),
        };
        let mut found = false;
        for shard in self.control.room_shards(room) {
            if let Ok(Reply::Room(Some(part))) = self.command(shard, Command::RoomInfo { room: id })
            {
                found = true;
                info.participants.extend(part.participants);
                if shard == home || info.speakers.is_empty() {
                    info.speakers = part.speakers;
                }
            }
        }
        info.participants
            .sort_by_key(|m| m.id.parse::<u64>().unwrap_or(u64::MAX));
        found.then_some(info)
    }
}
