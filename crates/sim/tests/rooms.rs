//! Rooms (group calls): members join through the control plane's room flow, each with one
//! str0m connection publishing audio and video, receiving in slots, and talking over the
//! `ringcast` data channel. Joins and leaves in any order, slot assignment, speakers,
//! `subscribe`, keyframe-aligned switches with continuous numbering, byte-exact payloads, bad
//! input on the channel, and nothing left once everyone left.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use ringcast_core::control::Limits;
use ringcast_core::{ShardId, TrackKind};
use ringcast_sim::{
    ClientId, JoinError, LinkConfig, Member, MemberConfig, PublisherConfig, Sent, Sim, SimConfig,
    VideoCodec, check,
};
use serde_json::json;

const ROOM: &str = "call";

fn new_sim(seed: u64) -> Sim {
    common::init_log();
    Sim::new(SimConfig {
        seed,
        ..SimConfig::default()
    })
}

/// `n` members named m0.. join `ROOM` with `config`, connected and welcomed.
fn join_all(sim: &mut Sim, n: usize, config: &MemberConfig) -> Vec<ClientId> {
    let ids: Vec<ClientId> = (0..n)
        .map(|i| sim.join_room(ROOM, &format!("m{i}"), config.clone()))
        .collect();
    sim.connect_members(&ids, Duration::from_secs(3));
    ids
}

fn pid(sim: &Sim, id: ClientId) -> String {
    sim.participant(id).expect("a member").to_string()
}

/// The participant ids of `ids` but `me`, sorted.
fn others(sim: &Sim, ids: &[ClientId], me: ClientId) -> Vec<String> {
    let set: BTreeSet<String> = ids
        .iter()
        .filter(|&&i| i != me)
        .map(|&i| pid(sim, i))
        .collect();
    set.into_iter().collect()
}

/// The story a member's messages tell of who is in the room holds together: a `welcome`
/// first (once), then `join` only of someone absent and `leave` only of someone present,
/// never of itself.
fn roster_log(m: &Member) -> Result<(), String> {
    let me = m.participant().ok_or("no welcome")?;
    let mut present: BTreeSet<String> = BTreeSet::new();
    let mut welcomed = false;
    for msg in &m.messages {
        let who = || {
            msg.json["participant"]
                .as_str()
                .map(str::to_string)
                .ok_or(format!("no participant in {}", msg.json))
        };
        match msg.kind() {
            Some("welcome") => {
                if welcomed {
                    return Err("a second welcome".into());
                }
                welcomed = true;
                for p in msg.json["participants"].as_array().ok_or("no list")? {
                    let id = p["id"].as_str().ok_or("no id")?.to_string();
                    if id == me || !present.insert(id.clone()) {
                        return Err(format!("welcome lists {id} wrongly"));
                    }
                }
            }
            Some("join") => {
                let id = who()?;
                if !welcomed || id == me || !present.insert(id.clone()) {
                    return Err(format!("join of {id}, already present or before welcome"));
                }
            }
            Some("leave") => {
                let id = who()?;
                if !present.remove(&id) {
                    return Err(format!("leave of {id}, who was not there"));
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Who the last packet on each of a member's slots came from, in offer order.
fn showing(sim: &Sim, id: ClientId) -> Vec<Option<ClientId>> {
    let m = sim.client(id).member();
    m.slots
        .iter()
        .map(|s| sim.slot_sources(id, &s.mid).last().copied().flatten())
        .collect()
}

/// The participants the last `slots` message names for a member's slots of `kind`.
fn told(sim: &Sim, id: ClientId, kind: &str) -> Vec<Option<String>> {
    sim.client(id)
        .member()
        .slot_states()
        .into_iter()
        .filter(|s| s.kind == kind)
        .map(|s| s.participant)
        .collect()
}

/// What every member in `ids` sent of `kind`, in the same order.
fn sent_by<'a>(sim: &'a Sim, ids: &[ClientId], kind: TrackKind) -> Vec<&'a [Sent]> {
    ids.iter().map(|&i| sim.client(i).sent(kind)).collect()
}

/// Every slot of every member in `ids`: byte-exact payloads from the members in `sources`,
/// sequence numbers +1 on one SSRC across every switch, no gap within a source, timestamps
/// as sent within a source and forward across a switch, video switches on keyframes. Returns
/// the number of source switches seen on video slots.
fn slots_clean(sim: &Sim, ids: &[ClientId], sources: &[ClientId]) -> usize {
    let mut moves = 0;
    for &id in ids {
        let m = sim.client(id).member();
        for slot in &m.slots {
            if slot.received.is_empty() {
                continue;
            }
            let video = slot.kind == TrackKind::Video;
            let sent = sent_by(sim, sources, slot.kind);
            let trace = check::slot(&sent, &slot.received, video)
                .unwrap_or_else(|e| panic!("member {id:?} slot {} ({}): {e}", slot.mid, slot.kind));
            for s in &trace.switches {
                let from = sources[s.to];
                assert_ne!(from, id, "member {id:?} got its own {} back", slot.kind);
                if s.from.is_none() {
                    continue;
                }
                // No jump across a switch: the timestamp moves about as much as time did (a
                // click in audio, a stall in video otherwise).
                let (p, r) = (&slot.received[s.index - 1], &slot.received[s.index]);
                let rate: u64 = if video { 90 } else { 48 };
                let step_ms = u64::from(r.ts.wrapping_sub(p.ts)) / rate;
                let elapsed_ms = (r.at - p.at).as_millis() as u64;
                assert!(
                    step_ms <= elapsed_ms + 200,
                    "member {id:?} slot {}: timestamp +{step_ms} ms across a switch {elapsed_ms} ms apart",
                    slot.mid
                );
            }
            if video {
                moves += trace.moves().count();
            }
        }
    }
    moves
}

/// Each slot of each member in `ids` carries whom the last `slots` message names: its last
/// packet came from that member, and an empty slot got nothing since it was announced
/// (allowing for what was in flight).
fn slots_match(sim: &Sim, ids: &[ClientId]) {
    for &id in ids {
        let m = sim.client(id).member();
        let Some(told_at) = m.last_of("slots").map(|msg| msg.at) else {
            panic!("member {id:?} got no slots message");
        };
        let states = m.slot_states();
        let last = showing(sim, id);
        for ((slot, state), last) in m.slots.iter().zip(&states).zip(last) {
            match &state.participant {
                Some(p) => assert_eq!(
                    last.and_then(|c| sim.participant(c)),
                    Some(p.as_str()),
                    "member {id:?} slot {} ({})",
                    slot.mid,
                    slot.kind
                ),
                None => {
                    let late = slot
                        .received
                        .iter()
                        .filter(|r| r.at > told_at + Duration::from_millis(200))
                        .count();
                    assert_eq!(late, 0, "member {id:?} empty slot {} got media", slot.mid);
                }
            }
        }
    }
}

/// Everyone left: once timers ran, the shards hold nothing and the control plane forgot the
/// room.
fn assert_empty(sim: &mut Sim, shards: u16) {
    sim.run_for(Duration::from_secs(5));
    for s in 0..shards {
        assert_eq!(
            sim.shard(ShardId(s)).map_sizes(),
            [0; 7],
            "shard {s}: [participants, sessions, addrs, ufrags, streams, timers, rooms]"
        );
        let stats = sim.shard(ShardId(s)).stats();
        assert_eq!((stats.participants, stats.streams, stats.rooms), (0, 0, 0));
    }
    assert_eq!(sim.control().rooms().count(), 0);
    assert!(sim.control().room(ROOM).is_none());
    assert!(sim.room_info(ROOM).is_none());
    assert!(sim.control().load().iter().all(|&l| l == 0));
}

#[test]
fn members_join_and_leave_in_any_order_and_everyone_knows_who_is_there() {
    let mut sim = new_sim(31);
    let config = MemberConfig::slots(3, 2);
    let mut present = join_all(&mut sim, 4, &config);
    sim.run_for(Duration::from_millis(500));
    // Two more join a room that is already talking.
    let late: Vec<ClientId> = (4..6)
        .map(|i| sim.join_room(ROOM, &format!("m{i}"), config.clone()))
        .collect();
    sim.connect_members(&late, Duration::from_secs(3));
    present.extend(&late);
    sim.run_for(Duration::from_millis(500));

    let check_all = |sim: &Sim, present: &[ClientId]| {
        for &id in present {
            let m = sim.client(id).member();
            assert_eq!(m.participant().as_deref(), sim.participant(id));
            roster_log(m).unwrap_or_else(|e| panic!("member {id:?}: {e}"));
            assert_eq!(m.roster(), others(sim, present, id), "member {id:?}");
            assert!(m.unreadable.is_empty());
            // Its slots name only members still there.
            let shown: BTreeSet<String> = m
                .slot_states()
                .into_iter()
                .filter_map(|s| s.participant)
                .collect();
            let there: BTreeSet<String> = others(sim, present, id).into_iter().collect();
            assert!(
                shown.is_subset(&there),
                "member {id:?} shows {shown:?} of {there:?}"
            );
        }
    };
    check_all(&sim, &present);
    // Names and tracks as joined.
    let m0 = sim.client(present[0]).member();
    let late0 = pid(&sim, late[0]);
    let join = m0
        .messages_of("join")
        .find(|m| m.json["participant"] == late0.as_str())
        .expect("a join of the late member");
    assert_eq!(join.json["name"], "m4");
    assert_eq!(
        (join.json["audio"].as_bool(), join.json["video"].as_bool()),
        (Some(true), Some(true))
    );
    let welcome = sim.client(late[1]).member().welcome().unwrap().json.clone();
    assert_eq!(welcome["room"], ROOM);
    assert_eq!(welcome["participants"][0]["name"], "m0");
    let info = sim.room_info(ROOM).expect("the room");
    let listed: Vec<String> = info.participants.iter().map(|p| p.id.clone()).collect();
    let mut all: Vec<String> = present.iter().map(|&i| pid(&sim, i)).collect();
    all.sort_by_key(|p| p.parse::<u64>().unwrap());
    assert_eq!(listed, all);
    assert_eq!(sim.control().room(ROOM).unwrap().members, 6);

    // Leave in a shuffled order; someone joins half-way.
    let mut order = present.clone();
    order.shuffle(&mut StdRng::seed_from_u64(5));
    let mut joined_late = false;
    while let Some(leaving) = order.pop() {
        sim.remove(leaving).unwrap();
        present.retain(|&i| i != leaving);
        sim.run_for(Duration::from_millis(400));
        check_all(&sim, &present);
        let gone = pid(&sim, leaving);
        for &id in &present {
            let leaves = sim
                .client(id)
                .member()
                .messages_of("leave")
                .filter(|m| m.json["participant"] == gone.as_str())
                .count();
            assert_eq!(leaves, 1, "member {id:?} about {gone}");
        }
        if order.len() == 3 && !joined_late {
            joined_late = true;
            let newcomer = sim.join_room(ROOM, "newcomer", config.clone());
            sim.connect_members(&[newcomer], Duration::from_secs(3));
            present.push(newcomer);
            order.insert(1, newcomer);
            sim.run_for(Duration::from_millis(400));
            check_all(&sim, &present);
            // Its video slots each show a picture within a second of its join (the
            // keyframe cache, or a keyframe asked for).
            let joined_at = sim.client(newcomer).added_at;
            for slot in sim.client(newcomer).member().slots_of(TrackKind::Video) {
                if slot.received.is_empty() {
                    continue;
                }
                let frame = check::first_frame(&slot.received, VideoCodec::Vp8)
                    .unwrap_or_else(|| panic!("newcomer slot {}: no whole keyframe", slot.mid));
                assert!(
                    frame - joined_at <= Duration::from_secs(1),
                    "slot {}",
                    slot.mid
                );
            }
            let welcome = sim
                .client(newcomer)
                .member()
                .welcome()
                .unwrap()
                .json
                .clone();
            assert_eq!(
                welcome["participants"].as_array().unwrap().len(),
                present.len() - 1
            );
        }
        if let Some(info) = sim.room_info(ROOM) {
            assert_eq!(info.participants.len(), present.len());
        }
        slots_match(&sim, &present);
    }
    for c in sim.clients() {
        assert!(c.errors.is_empty(), "{:?}: {:?}", c.id, c.errors);
    }
    assert_empty(&mut sim, 1);
}

#[test]
fn slots_show_the_others_never_oneself_and_carry_what_they_say() {
    let mut sim = new_sim(32);
    // More video slots than others: the rest stay empty.
    let ids = join_all(&mut sim, 4, &MemberConfig::slots(5, 3));
    sim.run_for(Duration::from_secs(2));
    for &id in &ids {
        let me = pid(&sim, id);
        let states = sim.client(id).member().slot_states();
        let kinds: Vec<&str> = states.iter().map(|s| s.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "video", "video", "video", "video", "video", "audio", "audio", "audio"
            ]
        );
        let mids: Vec<&str> = states.iter().map(|s| s.mid.as_str()).collect();
        let own: Vec<&str> = sim
            .client(id)
            .member()
            .slots
            .iter()
            .map(|s| s.mid.as_str())
            .collect();
        assert_eq!(
            mids, own,
            "member {id:?}: the slots message lists its slots in offer order"
        );
        for kind in ["video", "audio"] {
            let shown: Vec<String> = told(&sim, id, kind).into_iter().flatten().collect();
            let set: BTreeSet<String> = shown.iter().cloned().collect();
            assert_eq!(set.len(), shown.len(), "member {id:?}: {kind} shown twice");
            assert!(!set.contains(&me), "member {id:?} is shown its own {kind}");
            assert_eq!(set.into_iter().collect::<Vec<_>>(), others(&sim, &ids, id));
        }
        assert_eq!(
            told(&sim, id, "video")
                .iter()
                .filter(|p| p.is_none())
                .count(),
            2
        );
        // What arrives on each slot is whom the slots message names, byte-exact, from the
        // source's first packet sent to it on; empty slots get nothing.
        let states = sim.client(id).member().slot_states();
        for (slot, state) in sim.client(id).member().slots.iter().zip(&states) {
            let Some(who) = &state.participant else {
                assert!(
                    slot.received.is_empty(),
                    "member {id:?} empty slot {} got media",
                    slot.mid
                );
                continue;
            };
            let source = sim.member_by_participant(who).unwrap();
            let sources: BTreeSet<_> = sim.slot_sources(id, &slot.mid).into_iter().collect();
            assert_eq!(
                sources,
                BTreeSet::from([Some(source)]),
                "member {id:?} slot {}",
                slot.mid
            );
            let sent = sim.client(source).sent(slot.kind);
            check::exact(sent, &slot.received)
                .unwrap_or_else(|e| panic!("member {id:?} slot {} from {source:?}: {e}", slot.mid));
        }
    }
    // The shard's view (GET /api/rooms/{room}) is what the members were told.
    let info = sim.room_info(ROOM).unwrap();
    for p in &info.participants {
        let id = sim.member_by_participant(&p.id).unwrap();
        let states = sim.client(id).member().slot_states();
        let theirs: Vec<(String, Option<String>)> = p
            .slots
            .iter()
            .map(|s| (s.mid.clone(), s.participant.clone()))
            .collect();
        let ours: Vec<(String, Option<String>)> =
            states.into_iter().map(|s| (s.mid, s.participant)).collect();
        assert_eq!(theirs, ours);
        assert!(p.audio && p.video);
    }
    assert_eq!(slots_clean(&sim, &ids, &ids), 0);
}

#[test]
fn a_slot_whose_member_left_is_announced_empty() {
    let mut sim = new_sim(42);
    // Three video slots, two others: one slot empty from the start.
    let ids = join_all(&mut sim, 3, &MemberConfig::slots(3, 3));
    sim.run_for(Duration::from_secs(1));
    let gone = pid(&sim, ids[2]);
    for &id in &ids[..2] {
        assert!(told(&sim, id, "video").contains(&Some(gone.clone())));
    }
    sim.remove(ids[2]).unwrap();
    sim.run_for(Duration::from_millis(500));
    // Nobody is left to show in its slots: they empty, and a `slots` message says so.
    for &id in &ids[..2] {
        let other = pid(&sim, ids[1 - id.0]);
        assert_eq!(sim.client(id).member().messages_of("leave").count(), 1);
        for kind in ["video", "audio"] {
            let shown: Vec<String> = told(&sim, id, kind).into_iter().flatten().collect();
            assert_eq!(
                shown,
                std::slice::from_ref(&other),
                "member {id:?} {kind} slots"
            );
        }
    }
}

#[test]
fn audio_slots_follow_the_loudest_speaker_without_flapping() {
    let mut sim = new_sim(33);
    // Four others, two audio slots: not everyone is heard.
    let ids = join_all(&mut sim, 5, &MemberConfig::slots(1, 2));
    for &id in &ids {
        // A quiet room: noise, nobody speaking.
        sim.set_audio_level(id, 90);
    }
    sim.run_for(Duration::from_secs(2));
    for &id in &ids {
        assert!(
            sim.client(id).member().speakers().is_empty(),
            "member {id:?}"
        );
    }
    let audio_of = |sim: &Sim, id: ClientId| -> Vec<String> {
        told(sim, id, "audio").into_iter().flatten().collect()
    };

    for loud in [ids[1], ids[3]] {
        for &id in &ids {
            sim.set_audio_level(id, if id == loud { 20 } else { 90 });
        }
        let who = pid(&sim, loud);
        let heard = sim.run_until_true(Duration::from_secs(2), |s| {
            ids.iter().all(|&id| {
                let m = s.client(id).member();
                m.speakers().first() == Some(&who) && (id == loud || audio_of(s, id).contains(&who))
            })
        });
        assert!(
            heard,
            "{who} does not top the speakers or fill the others' audio slots"
        );
        // The audio follows the slots: the speaker's packets arrive on every other member.
        sim.run_for(Duration::from_millis(200));
        for &id in ids.iter().filter(|&&i| i != loud) {
            assert!(showing(&sim, id).contains(&Some(loud)), "member {id:?}");
            assert!(!audio_of(&sim, loud).contains(&who));
        }
        // The video slot goes to the most recent speaker, on its keyframe.
        let seen = sim.run_until_true(Duration::from_secs(3), |s| {
            ids.iter()
                .filter(|&&i| i != loud)
                .all(|&id| showing(s, id)[0] == Some(loud))
        });
        assert!(seen, "the video slots do not show the speaker {who}");
        // Levels steady: once settled, nothing moves.
        sim.run_for(Duration::from_secs(2));
        let before: Vec<(usize, usize)> = ids
            .iter()
            .map(|&id| {
                let m = sim.client(id).member();
                (
                    m.messages_of("slots").count(),
                    m.messages_of("speakers").count(),
                )
            })
            .collect();
        sim.run_for(Duration::from_secs(3));
        for (&id, was) in ids.iter().zip(before) {
            let m = sim.client(id).member();
            let now = (
                m.messages_of("slots").count(),
                m.messages_of("speakers").count(),
            );
            assert_eq!(
                now, was,
                "member {id:?}: slots or speakers changed with steady levels"
            );
            assert_eq!(m.speakers(), std::slice::from_ref(&who));
        }
        slots_match(&sim, &ids);
    }
    let moves = slots_clean(&sim, &ids, &ids);
    assert!(moves >= 4, "only {moves} video slot switches");
    for c in sim.clients() {
        assert!(c.errors.is_empty(), "{:?}: {:?}", c.id, c.errors);
    }
}

#[test]
fn two_close_speakers_do_not_flap_a_single_audio_slot() {
    let mut sim = new_sim(39);
    let ids = join_all(&mut sim, 4, &MemberConfig::slots(1, 1));
    let (a, b) = (ids[0], ids[1]);
    for &id in &ids {
        sim.set_audio_level(id, 90);
    }
    sim.set_audio_level(a, 20);
    sim.run_for(Duration::from_secs(2));
    let listeners = [ids[2], ids[3]];
    for &l in &listeners {
        assert_eq!(told(&sim, l, "audio"), [Some(pid(&sim, a))]);
    }
    let slots_before: Vec<usize> = listeners
        .iter()
        .map(|&l| sim.client(l).member().messages_of("slots").count())
        .collect();
    // Both speak, a little louder in turn (3 dB, under the slot's margin), for five seconds.
    for turn in 0..12 {
        let (up, down) = if turn % 2 == 0 { (b, a) } else { (a, b) };
        sim.set_audio_level(up, 20);
        sim.set_audio_level(down, 23);
        sim.run_for(Duration::from_millis(400));
    }
    for (&l, before) in listeners.iter().zip(slots_before) {
        let m = sim.client(l).member();
        assert_eq!(
            m.messages_of("slots").count(),
            before,
            "member {l:?}: the audio slot moved"
        );
        assert_eq!(told(&sim, l, "audio"), [Some(pid(&sim, a))]);
        let sources: BTreeSet<_> = sim
            .slot_sources(l, &sim.slot_mids(l, TrackKind::Audio)[0])
            .into_iter()
            .collect();
        assert_eq!(sources, BTreeSet::from([Some(a)]));
    }
    // Both speak: both are listed.
    let speakers: BTreeSet<String> = sim.client(ids[3]).member().speakers().into_iter().collect();
    assert_eq!(speakers, BTreeSet::from([pid(&sim, a), pid(&sim, b)]));
    // Much louder wins the slot.
    sim.set_audio_level(b, 5);
    sim.set_audio_level(a, 40);
    let moved = sim.run_until_true(Duration::from_secs(3), |s| {
        listeners.iter().all(|&l| showing(s, l)[1] == Some(b))
    });
    assert!(moved);
    slots_clean(&sim, &ids, &ids);
}

#[test]
fn a_layer_message_picks_the_simulcast_layer_a_slot_shows() {
    let mut sim = new_sim(40);
    let config = MemberConfig {
        send: PublisherConfig::simulcast_3(),
        ..MemberConfig::slots(2, 1)
    };
    let ids = join_all(&mut sim, 3, &config);
    sim.run_for(Duration::from_secs(2));
    // Each member's layers are separate sources: index 3 * member + layer.
    let x = ids[0];
    let mid = |sim: &Sim, who: ClientId| {
        let p = pid(sim, who);
        let states = sim.client(x).member().slot_states();
        states
            .into_iter()
            .find(|s| s.participant.as_deref() == Some(&p))
            .expect("shown")
            .mid
    };
    let layer_now = |sim: &Sim, who: ClientId| {
        let layers: Vec<&[Sent]> = ids
            .iter()
            .flat_map(|&i| sim.client(i).sent_layers())
            .collect();
        let slot = sim.client(x).member().slot(&mid(sim, who)).unwrap();
        let t = check::slot(&layers, &slot.received, true).unwrap();
        t.last_layer().map(|l| (ids[l / 3], l % 3))
    };
    // By default a slot shows the best layer at most 360 high: h (640x360).
    assert_eq!(layer_now(&sim, ids[1]), Some((ids[1], 1)));
    let p1 = pid(&sim, ids[1]);
    assert!(sim.send_message(x, &json!({"type": "layer", "participant": p1, "rid": "f"})));
    let up = sim.run_until_true(Duration::from_secs(2), |s| {
        layer_now(s, ids[1]) == Some((ids[1], 2))
    });
    assert!(up, "{:?}", layer_now(&sim, ids[1]));
    assert!(sim.send_message(
        x,
        &json!({"type": "layer", "participant": p1, "maxHeight": 180})
    ));
    let down = sim.run_until_true(Duration::from_secs(2), |s| {
        layer_now(s, ids[1]) == Some((ids[1], 0))
    });
    assert!(down, "{:?}", layer_now(&sim, ids[1]));
    // The other slot stayed on h; every move was on a keyframe with continuous numbering.
    assert_eq!(layer_now(&sim, ids[2]), Some((ids[2], 1)));
    sim.run_for(Duration::from_millis(300));
    let layers: Vec<&[Sent]> = ids
        .iter()
        .flat_map(|&i| sim.client(i).sent_layers())
        .collect();
    for slot in sim.client(x).member().slots_of(TrackKind::Video) {
        check::slot(&layers, &slot.received, true)
            .unwrap_or_else(|e| panic!("slot {}: {e}", slot.mid));
    }
    assert!(sim.client(x).member().messages_of("error").next().is_none());
}

#[test]
fn subscribe_fills_the_video_slots_in_order_switching_on_keyframes() {
    let mut sim = new_sim(34);
    // Keyframes only when asked: each switch is the new source's answer to a PLI.
    let config = MemberConfig {
        send: PublisherConfig {
            keyframe_interval: Duration::from_secs(60),
            ..PublisherConfig::default()
        },
        ..MemberConfig::slots(2, 1)
    };
    let ids = join_all(&mut sim, 5, &config);
    sim.run_for(Duration::from_secs(1));
    let x = ids[0];
    let before = told(&sim, x, "video");
    let wanted = [ids[4], ids[3]];
    let asked: Vec<String> = wanted.iter().map(|&i| pid(&sim, i)).collect();
    assert_ne!(
        before.iter().flatten().cloned().collect::<BTreeSet<_>>(),
        asked.iter().cloned().collect(),
        "the test needs a change"
    );
    assert!(sim.send_message(x, &json!({"type": "subscribe", "video": asked})));
    let shown = sim.run_until_true(Duration::from_secs(2), |s| {
        let got: BTreeSet<_> = showing(s, x)[..2].iter().copied().collect();
        got == BTreeSet::from([Some(wanted[0]), Some(wanted[1])])
    });
    assert!(
        shown,
        "x shows {:?}, asked for {wanted:?}",
        showing(&sim, x)
    );
    let told_now: BTreeSet<_> = told(&sim, x, "video").into_iter().flatten().collect();
    assert_eq!(told_now, asked.iter().cloned().collect());
    assert!(sim.client(x).member().messages_of("error").next().is_none());

    // Another choice: the one asked for first, then the most recent speakers.
    let third = pid(&sim, ids[2]);
    assert!(sim.send_message(x, &json!({"type": "subscribe", "video": [third]})));
    let shown = sim.run_until_true(Duration::from_secs(2), |s| {
        showing(s, x)[..2].contains(&Some(ids[2]))
    });
    assert!(shown, "x shows {:?}", showing(&sim, x));
    sim.run_for(Duration::from_millis(500));
    // Every switch started on a keyframe of the new source with the slot's numbering
    // continuous (+1, timestamps forward), for x and everyone else.
    let moves = slots_clean(&sim, &ids, &ids);
    assert!(moves >= 2, "{moves}");
    slots_match(&sim, &ids);
    // The keyframes came on request (the interval is a minute).
    for &i in &wanted {
        assert!(!sim.client(i).publisher().keyframe_requests.is_empty());
    }
}

#[test]
fn a_video_slot_keeps_its_source_until_the_new_ones_keyframe() {
    let mut sim = new_sim(35);
    // Keyframes once a second, requests ignored (as OBS): a switch waits for the next one.
    let config = MemberConfig {
        send: PublisherConfig {
            keyframe_interval: Duration::from_secs(1),
            honor_keyframe_requests: false,
            ..PublisherConfig::default()
        },
        ..MemberConfig::slots(1, 1)
    };
    let ids = join_all(&mut sim, 3, &config);
    sim.run_for(Duration::from_millis(1500));
    let x = ids[0];
    let old = showing(&sim, x)[0].expect("x shows someone");
    let new = *ids[1..].iter().find(|&&i| i != old).unwrap();
    let mid = sim.slot_mids(x, TrackKind::Video)[0].clone();
    let asked_at = sim.now();
    assert!(sim.send_message(x, &json!({"type": "subscribe", "video": [pid(&sim, new)]})));
    let moved = sim.run_until_true(Duration::from_secs(2), |s| showing(s, x)[0] == Some(new));
    assert!(moved);
    sim.run_for(Duration::from_millis(300));
    let slot = sim.client(x).member().slot(&mid).unwrap();
    let sources = sim.slot_sources(x, &mid);
    let first_new = sources.iter().position(|s| *s == Some(new)).unwrap();
    let switch = &slot.received[first_new];
    let prev = &slot.received[first_new - 1];
    // The old source went on until the switch, which came with the new source's keyframe.
    assert_eq!(sources[first_new - 1], Some(old));
    assert!(prev.at > asked_at, "the slot went dark while waiting");
    assert!(ringcast_sim::media::starts_keyframe(
        VideoCodec::Vp8,
        &switch.payload
    ));
    assert_eq!(switch.seq, prev.seq + 1);
    assert_eq!(switch.ssrc, prev.ssrc);
    assert!(switch.ts.wrapping_sub(prev.ts) as i32 > 0);
    assert!(sources[first_new..].iter().all(|s| *s == Some(new)));
    slots_clean(&sim, &ids, &ids);
}

#[test]
fn nack_repairs_video_slots_over_lossy_links() {
    let mut sim = new_sim(43);
    let config = MemberConfig {
        send: PublisherConfig {
            // 2-3 packets per frame: more packets to measure residual loss on.
            delta_size: (1200, 3000),
            ..PublisherConfig::default()
        },
        ..MemberConfig::slots(3, 3)
    };
    let ids = join_all(&mut sim, 4, &config);
    // 5% loss on every member's down link, 20 ms each way.
    for &id in &ids {
        sim.set_down_link(id, LinkConfig::lossy(0.05, Duration::from_millis(20)));
    }
    let start = sim.now();
    sim.run_for(Duration::from_secs(6));
    let end = sim.now() - Duration::from_secs(1);
    for &id in &ids {
        let m = sim.client(id).member();
        assert!(
            sim.client(id).down.lost > 0,
            "member {id:?}: the link lost nothing"
        );
        for slot in &m.slots {
            let source = sim.slot_sources(id, &slot.mid).into_iter().flatten().next();
            let source =
                source.unwrap_or_else(|| panic!("member {id:?} slot {}: nothing", slot.mid));
            let sent = sim.client(source).sent(slot.kind);
            let cov = check::coverage(sent, &slot.received);
            assert_eq!(
                (cov.corrupt, cov.misnumbered),
                (0, 0),
                "member {id:?} slot {}: {cov:?}",
                slot.mid
            );
            if slot.kind == TrackKind::Audio {
                // Opus goes without RTX: what arrives is intact and numbered right.
                assert!(
                    cov.loss() < 0.15,
                    "member {id:?} slot {}: {cov:?}",
                    slot.mid
                );
                continue;
            }
            let from = sent
                .iter()
                .position(|s| s.at >= start + Duration::from_millis(500))
                .unwrap();
            let to = sent.iter().position(|s| s.at >= end).unwrap();
            let missing = check::missing_in(sent, &slot.received, from..to);
            assert!(
                missing * 200 < to - from,
                "member {id:?} slot {}: {missing} of {} video packets missing",
                slot.mid,
                to - from
            );
        }
    }
}

#[test]
fn bad_messages_get_errors_and_do_not_disturb_the_others() {
    let mut sim = new_sim(36);
    let ids = join_all(&mut sim, 3, &MemberConfig::slots(1, 2));
    sim.run_for(Duration::from_secs(1));
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    assert_eq!(told(&sim, a, "video"), [Some(pid(&sim, b))]);
    let errors = |sim: &Sim| sim.client(a).member().messages_of("error").count();
    let oversized = json!({"type": "message", "to": null, "data": "x".repeat(17 * 1024)});
    let bad: Vec<(bool, Vec<u8>)> = vec![
        (false, b"{not json".to_vec()),
        (false, br#"{"type":"dance"}"#.to_vec()),
        (false, br#"{"video":[]}"#.to_vec()),
        (false, oversized.to_string().into_bytes()),
        (true, br#"{"type":"subscribe","video":[]}"#.to_vec()),
        (
            false,
            br#"{"type":"layer","participant":"999","rid":"h"}"#.to_vec(),
        ),
        (false, br#"{"type":"message","to":"999","data":1}"#.to_vec()),
        (
            false,
            format!(r#"{{"type":"message","to":"{}","data":1}}"#, pid(&sim, a)).into_bytes(),
        ),
    ];
    for (i, (binary, bytes)) in bad.iter().enumerate() {
        assert!(sim.send_raw(a, *binary, bytes));
        sim.run_for(Duration::from_millis(100));
        assert_eq!(
            errors(&sim),
            i + 1,
            "message {i}: {}",
            String::from_utf8_lossy(bytes)
        );
        let e = &sim.client(a).member().last_of("error").unwrap().json;
        assert!(!e["error"].as_str().unwrap_or("").is_empty(), "{e}");
    }
    // Subscribing to someone unknown is an error, the known ones apply.
    let who = pid(&sim, c);
    assert!(sim.send_message(a, &json!({"type": "subscribe", "video": ["999", who]})));
    sim.run_for(Duration::from_millis(500));
    assert_eq!(errors(&sim), bad.len() + 1);
    let e = sim.client(a).member().last_of("error").unwrap().json["error"].clone();
    assert!(e.as_str().unwrap().contains("999"), "{e}");
    assert_eq!(told(&sim, a, "video")[0].as_deref(), Some(who.as_str()));
    assert!(
        sim.client(b)
            .member()
            .messages_of("message")
            .next()
            .is_none()
    );
    assert!(sim.client(b).member().messages_of("error").next().is_none());

    // A flood of app messages: a burst goes through, the rest are refused, counted.
    sim.run_for(Duration::from_secs(3));
    let (errors_before, drops_before) = (
        errors(&sim),
        sim.shard(ShardId(0)).stats().drop_room_message,
    );
    let received_before: Vec<usize> = [b, c]
        .iter()
        .map(|&i| {
            sim.client(i)
                .member()
                .slots
                .iter()
                .map(|s| s.received.len())
                .sum()
        })
        .collect();
    let flood = 300;
    for n in 0..flood {
        assert!(sim.send_message(a, &json!({"type": "message", "to": null, "data": {"n": n}})));
    }
    sim.run_for(Duration::from_secs(1));
    let delivered: Vec<Vec<i64>> = [b, c]
        .iter()
        .map(|&i| {
            sim.client(i)
                .member()
                .messages_of("message")
                .map(|m| {
                    assert_eq!(m.json["from"].as_str(), sim.participant(a));
                    m.json["data"]["n"].as_i64().unwrap()
                })
                .collect()
        })
        .collect();
    assert_eq!(delivered[0], delivered[1]);
    let passed = delivered[0].len();
    assert!(
        (20..=60).contains(&passed),
        "{passed} of {flood} messages passed"
    );
    assert_eq!(delivered[0], (0..passed as i64).collect::<Vec<_>>());
    assert_eq!(errors(&sim) - errors_before, flood - passed);
    let drops = sim.shard(ShardId(0)).stats().drop_room_message - drops_before;
    assert_eq!(drops, (flood - passed) as u64);
    // A's own message to everyone is relayed once the rate allows again.
    sim.run_for(Duration::from_secs(3));
    assert!(sim.send_message(
        a,
        &json!({"type": "message", "to": pid(&sim, b), "data": "hi"})
    ));
    sim.run_for(Duration::from_millis(200));
    let last = sim
        .client(b)
        .member()
        .last_of("message")
        .unwrap()
        .json
        .clone();
    assert_eq!(last["data"], "hi");
    assert_eq!(
        sim.client(c).member().messages_of("message").count(),
        passed
    );
    // Nobody gets its own messages back.
    assert!(
        sim.client(a)
            .member()
            .messages_of("message")
            .next()
            .is_none()
    );

    // The others' media went on untouched: no gap, nothing corrupt, still flowing.
    for (&i, before) in [b, c].iter().zip(received_before) {
        let now: usize = sim
            .client(i)
            .member()
            .slots
            .iter()
            .map(|s| s.received.len())
            .sum();
        assert!(
            now > before + 200,
            "member {i:?}: {before} -> {now} packets"
        );
        assert!(sim.client(i).member().unreadable.is_empty());
    }
    slots_clean(&sim, &[b, c], &ids);
    for c in sim.clients() {
        assert!(c.errors.is_empty(), "{:?}: {:?}", c.id, c.errors);
    }
}

#[test]
fn refused_offers_leave_nothing_behind() {
    let mut sim = new_sim(41);
    let too_many = MemberConfig::slots(17, 1);
    match sim.try_join_room(ROOM, Some("greedy"), too_many) {
        Err(JoinError::Offer(e)) => assert!(e.contains("at most 16"), "{e}"),
        other => panic!("17 video slots: {other:?}"),
    }
    assert_eq!(sim.control().rooms().count(), 0);
    assert!(sim.control().load().iter().all(|&l| l == 0));
    // The room's video codec is VP8 once its first member has joined: H264 alone is refused.
    let first = join_all(&mut sim, 1, &MemberConfig::default());
    let h264 = MemberConfig {
        send: PublisherConfig {
            codec: VideoCodec::H264,
            ..PublisherConfig::default()
        },
        ..MemberConfig::default()
    };
    match sim.try_join_room(ROOM, Some("h264"), h264) {
        Err(JoinError::Offer(e)) => assert!(e.contains("VP8"), "{e}"),
        other => panic!("an H264 member in a VP8 room: {other:?}"),
    }
    assert_eq!(sim.control().room(ROOM).map(|r| r.members), Some(1));
    sim.run_for(Duration::from_millis(500));
    // The one who is there never heard of it.
    assert!(
        sim.client(first[0])
            .member()
            .messages_of("join")
            .next()
            .is_none()
    );
    sim.remove(first[0]).unwrap();
    assert_empty(&mut sim, 1);
}

#[test]
fn nothing_is_left_after_everyone_leaves_or_vanishes() {
    let mut sim = new_sim(37);
    let ids = join_all(&mut sim, 5, &MemberConfig::default());
    sim.set_audio_level(ids[2], 10);
    sim.run_for(Duration::from_secs(1));
    for &id in &ids {
        let shown: BTreeSet<ClientId> = showing(&sim, id).into_iter().flatten().collect();
        assert_eq!(shown.len(), 4, "member {id:?} gets media from {shown:?}");
    }
    // Two leave, one vanishes (its session times out), then the rest leave.
    sim.remove(ids[1]).unwrap();
    sim.vanish(ids[3]);
    sim.run_for(Duration::from_millis(500));
    sim.remove(ids[0]).unwrap();
    sim.run_for(Duration::from_secs(30));
    for &id in &[ids[2], ids[4]] {
        assert_eq!(
            sim.client(id).member().roster(),
            [pid(&sim, if id == ids[2] { ids[4] } else { ids[2] })]
        );
    }
    assert_eq!(sim.control().room(ROOM).map(|r| r.members), Some(2));
    sim.remove(ids[4]).unwrap();
    sim.remove(ids[2]).unwrap();
    assert_empty(&mut sim, 1);
    // The room's name is free again: a new room starts from scratch.
    let again = join_all(&mut sim, 2, &MemberConfig::default());
    let w = sim
        .client(again[1])
        .member()
        .welcome()
        .unwrap()
        .json
        .clone();
    assert_eq!(w["participants"].as_array().unwrap().len(), 1);
    for &id in &again {
        sim.remove(id).unwrap();
    }
    assert_empty(&mut sim, 1);
}

#[test]
fn a_room_spread_over_two_shards_works_as_one() {
    common::init_log();
    let mut sim = Sim::new(SimConfig {
        seed: 38,
        shards: 2,
        limits: Limits {
            affinity: 3,
            max: 100,
        },
        ..SimConfig::default()
    });
    let ids = join_all(&mut sim, 5, &MemberConfig::slots(4, 4));
    let shards: BTreeSet<ShardId> = ids.iter().map(|&i| sim.client(i).shard).collect();
    assert_eq!(shards.len(), 2, "the room did not spread");
    sim.set_audio_level(ids[4], 15);
    sim.run_for(Duration::from_secs(3));
    for &id in &ids {
        let m = sim.client(id).member();
        roster_log(m).unwrap();
        assert_eq!(m.roster(), others(&sim, &ids, id));
        let video: BTreeSet<String> = told(&sim, id, "video").into_iter().flatten().collect();
        assert_eq!(
            video.into_iter().collect::<Vec<_>>(),
            others(&sim, &ids, id)
        );
        if id != ids[4] {
            assert_eq!(
                m.speakers().first(),
                Some(&pid(&sim, ids[4])),
                "member {id:?}"
            );
        }
        let shown: BTreeSet<ClientId> = showing(&sim, id).into_iter().flatten().collect();
        assert_eq!(shown.len(), 4, "member {id:?} gets media from {shown:?}");
    }
    slots_clean(&sim, &ids, &ids);
    slots_match(&sim, &ids);
    // App messages cross shards too.
    let from_other_shard = *ids
        .iter()
        .find(|&&i| sim.client(i).shard != sim.client(ids[0]).shard)
        .unwrap();
    assert!(sim.send_message(
        ids[0],
        &json!({"type": "message", "to": pid(&sim, from_other_shard), "data": [1, 2]})
    ));
    sim.run_for(Duration::from_millis(300));
    let got = sim
        .client(from_other_shard)
        .member()
        .last_of("message")
        .unwrap()
        .json
        .clone();
    assert_eq!(got["data"], json!([1, 2]));
    for &id in &ids {
        sim.remove(id).unwrap();
    }
    assert_empty(&mut sim, 2);
}
