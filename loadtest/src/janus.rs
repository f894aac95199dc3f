//! Janus VideoRoom signalling over Janus's HTTP API: the reference peer of the comparison.
//!
//! Each stream of the run is one VideoRoom room, its id derived from the stream name
//! ([`room_id`]); the stream's publisher creates it when it is missing, and [`Janus::finish`]
//! destroys the rooms this run created. Every session of the swarm is one Janus session with
//! one `janus.plugin.videoroom` handle:
//! - publisher: `create` → `attach` → `join` (publisher) → `publish` with str0m's offer; Janus's
//!   answer is applied;
//! - viewer: `create` → `attach` → `join` (subscriber to the publisher's feed) → Janus offers,
//!   str0m accepts (`accept_offer`) → `start` with str0m's answer.
//!
//! Requests the plugin handles asynchronously are acknowledged (`ack`) and their result comes as
//! an event on the session's long poll (`GET <base>/<session>`), matched by transaction. Our SDPs
//! carry our one host candidate and say `"trickle": false`, so nothing is trickled either way
//! (Janus, half-trickle by default, puts its gathered candidates in its own SDP). Janus is a
//! full ICE agent: str0m takes the controlling role where it offers (publishers) and the
//! controlled one where it answers (viewers). Janus drops a session after 60 s without a
//! request, so a keepalive thread sends `keepalive` to every open session every 15 s.
//!
//! Janus rewrites SSRCs, sequence numbers and payload types towards each subscriber; the
//! workers only key viewers' streams by the SSRC they see and never assume the publisher's
//! ones, so loss, duplicates and payload checks work unchanged.
//!
//! Failures become causes in the errors table: `janus <code>: <reason>` for the core's errors,
//! `janus videoroom <code>: <reason>` for the plugin's (numbers in reasons become `N`, so one
//! cause is one row), `http …`/`timeout` for transport failures.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};

use crate::http;
use crate::media::VideoCodec;
use crate::negotiation::{self, Negotiation};
use crate::session::{Job, Joined, Member, Part, Role, Slot};

/// Publisher bitrate cap of the rooms we create (REMB Janus sends), bits/s: well above the
/// loadtest's 2.5 Mbit/s default, so Janus never asks our publishers to slow down.
pub const ROOM_BITRATE: u64 = 8_000_000;
/// Most publishers in one of our rooms: one per stream, plus room for a restart.
const ROOM_PUBLISHERS: u32 = 4;
/// Keepalive period; Janus's default session timeout is 60 s.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(15);

/// The Janus client of one run.
#[derive(Debug)]
pub struct Janus {
    base: String,
    negotiation: Negotiation,
    timeout: Duration,
    state: Arc<State>,
    keepalive: Mutex<Option<JoinHandle<()>>>,
}

/// What the signalling threads and the keepalive thread share.
#[derive(Debug, Default)]
struct State {
    /// Open sessions (ids), kept alive.
    sessions: Mutex<HashSet<u64>>,
    /// Rooms by id.
    rooms: Mutex<HashMap<u64, Room>>,
    stop: AtomicBool,
}

#[derive(Debug, Default, Clone)]
struct Room {
    /// This run created it (and destroys it at the end).
    created: bool,
    /// The publisher's feed id, once it joined.
    feed: Option<u64>,
    /// Group call rooms: each participant's feed by its place in the room.
    members: BTreeMap<usize, Feed>,
}

/// A group call participant's published feed: its id and the mids of its streams.
#[derive(Debug, Clone)]
struct Feed {
    id: u64,
    audio: String,
    video: String,
}

/// One Janus session with one videoroom handle.
#[derive(Debug, Clone, Copy)]
struct Handle {
    session: u64,
    handle: u64,
}

impl Janus {
    /// A client of the Janus HTTP API at `base` (e.g. `http://10.213.5.2:8088/janus`); starts
    /// the keepalive thread.
    pub fn new(base: &str, negotiation: Negotiation, timeout: Duration) -> Self {
        let state = Arc::new(State::default());
        let keepalive = {
            let (state, base) = (state.clone(), base.trim_end_matches('/').to_string());
            std::thread::Builder::new()
                .name("janus-keepalive".into())
                .spawn(move || keepalive_loop(&state, &base))
                .map_err(|error| tracing::warn!(%error, "no Janus keepalive thread"))
                .ok()
        };
        Janus {
            base: base.trim_end_matches('/').to_string(),
            negotiation,
            timeout,
            state,
            keepalive: Mutex::new(keepalive),
        }
    }

    /// Open one session; on failure, the cause as it goes into the errors table.
    pub fn join(&self, agent: &ureq::Agent, job: Job) -> Result<Joined, String> {
        let posted = Instant::now();
        let handle = self.open(agent)?;
        let result = match &job.role {
            Role::Publisher { stream, .. } => {
                let stream = stream.clone();
                self.publish(agent, handle, &stream, job, posted)
            }
            Role::Viewer { stream, .. } => {
                let stream = stream.clone();
                self.subscribe(agent, handle, &stream, job, posted)
            }
            Role::Member(member) => match member.part {
                Part::Publish => {
                    let member = member.clone();
                    self.publish_member(agent, handle, &member, job, posted)
                }
                Part::Subscribe => {
                    let member = member.clone();
                    self.subscribe_member(agent, handle, &member, job, posted)
                }
                Part::Both => Err("janus: a participant publishes and subscribes apart".into()),
            },
        };
        if result.is_err() {
            self.close(agent, handle.session);
        }
        result
    }

    /// Destroy the session behind `location` (errors ignored).
    pub fn leave(&self, agent: &ureq::Agent, location: &str) {
        if let Some(session) = location
            .rsplit('/')
            .next()
            .and_then(|id| id.parse::<u64>().ok())
        {
            self.close(agent, session);
        }
    }

    /// Destroy the rooms this run created, stop the keepalives.
    pub fn finish(&self) {
        self.state.stop.store(true, Ordering::Relaxed);
        let created: Vec<u64> = self
            .state
            .rooms
            .lock()
            .map(|rooms| {
                rooms
                    .iter()
                    .filter(|(_, r)| r.created)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .unwrap_or_default();
        if !created.is_empty() {
            let agent = http::agent(self.timeout);
            match self.open(&agent) {
                Ok(handle) => {
                    for room in created {
                        let body = json!({ "request": "destroy", "room": room });
                        if let Err(cause) = self.plugin_sync(&agent, handle, body) {
                            tracing::warn!(room, %cause, "Janus room not destroyed");
                        }
                    }
                    self.close(&agent, handle.session);
                }
                Err(cause) => tracing::warn!(%cause, "cannot destroy the Janus rooms"),
            }
        }
        if let Some(thread) = self.keepalive.lock().ok().and_then(|mut k| k.take()) {
            let _ = thread.join();
        }
    }

    /// Join `stream`'s room (creating it) as its publisher and publish str0m's offer.
    fn publish(
        &self,
        agent: &ureq::Agent,
        handle: Handle,
        stream: &str,
        job: Job,
        posted: Instant,
    ) -> Result<Joined, String> {
        let room = room_id(stream);
        self.ensure_room(agent, handle, room, stream, ROOM_PUBLISHERS)?;
        let (joined, _) = self.plugin_async(
            agent,
            handle,
            json!({
                "request": "join",
                "ptype": "publisher",
                "room": room,
                "display": format!("ringcast-loadtest {stream}"),
            }),
            None,
        )?;
        let feed = joined
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("janus videoroom: joined without a feed id")?;
        let mut rtc = negotiation::new_rtc(self.negotiation.codec, job.local)?;
        let (audio, video, offer, pending) =
            negotiation::offer(&mut rtc, Direction::SendOnly, self.negotiation.video, &[])?;
        let (_, jsep) = self.plugin_async(
            agent,
            handle,
            json!({ "request": "publish" }),
            Some(jsep_of("offer", &offer.to_sdp_string())),
        )?;
        let sdp = jsep_sdp(jsep.as_ref(), "answer")?;
        let sdp = negotiation::reachable_candidates_only(&sdp, &self.base);
        let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|_| "sdp".to_string())?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|_| "sdp".to_string())?;
        let pts = negotiation::publisher_pts(&rtc, audio, video, &self.negotiation)?;
        if let Ok(mut rooms) = self.state.rooms.lock() {
            rooms.entry(room).or_default().feed = Some(feed);
        }
        Ok(Joined {
            job,
            rtc,
            mids: [audio, video],
            pts: Some(pts),
            posted,
            location: format!("{}/{}", self.base, handle.session),
            slots: Vec::new(),
            participant: None,
        })
    }

    /// Answer Janus's subscriber offer `sdp` with a new str0m peer and `start` the
    /// subscription; the peer receives on `slots` (a group call participant) or on its one
    /// audio and video (a viewer: none).
    fn answer_and_start(
        &self,
        agent: &ureq::Agent,
        handle: Handle,
        sdp: &str,
        job: Job,
        posted: Instant,
        slots: Vec<Slot>,
    ) -> Result<Joined, String> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|_| "sdp".to_string())?;
        let mut rtc = negotiation::new_rtc(self.negotiation.codec, job.local)?;
        let answer = rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| format!("sdp: {}", first_words(&e.to_string())))?;
        self.plugin_async(
            agent,
            handle,
            json!({ "request": "start" }),
            Some(jsep_of("answer", &answer.to_sdp_string())),
        )?;
        Ok(Joined {
            job,
            rtc,
            mids: offered_mids(sdp),
            pts: None,
            posted,
            location: format!("{}/{}", self.base, handle.session),
            slots,
            participant: None,
        })
    }

    /// Subscribe to `stream`'s publisher: Janus offers, str0m answers, `start`.
    fn subscribe(
        &self,
        agent: &ureq::Agent,
        handle: Handle,
        stream: &str,
        job: Job,
        posted: Instant,
    ) -> Result<Joined, String> {
        let room = room_id(stream);
        let feed = match self.known_feed(room) {
            Some(feed) => feed,
            None => self.lookup_feed(agent, handle, room)?,
        };
        let sdp = self.join_subscriber(agent, handle, room, json!([{ "feed": feed }]))?;
        let sdp = negotiation::reachable_candidates_only(&sdp, &self.base);
        self.answer_and_start(agent, handle, &sdp, job, posted, Vec::new())
    }

    /// Join `room` as a subscriber of `streams` (`[{"feed", "mid"?}]`): Janus's offer SDP, its
    /// candidates trimmed to the reachable ones.
    fn join_subscriber(
        &self,
        agent: &ureq::Agent,
        handle: Handle,
        room: u64,
        streams: Value,
    ) -> Result<String, String> {
        // Janus answers 428 "No such feed" until the publisher's PeerConnection is up, which
        // can come after its publish request was answered: a subscriber waits for it, a while.
        let mut tries = 0;
        let (_, jsep) = loop {
            let joined = self.plugin_async(
                agent,
                handle,
                json!({
                    "request": "join",
                    "ptype": "subscriber",
                    "room": room,
                    "streams": streams,
                }),
                None,
            );
            match joined {
                Err(cause) if cause.starts_with("janus videoroom 428") && tries < FEED_TRIES => {
                    tries += 1;
                    std::thread::sleep(FEED_PAUSE);
                }
                other => break other?,
            }
        };
        let sdp = jsep_sdp(jsep.as_ref(), "offer")?;
        Ok(negotiation::reachable_candidates_only(&sdp, &self.base))
    }

    /// A group call participant publishes into its room (created with room for everyone).
    fn publish_member(
        &self,
        agent: &ureq::Agent,
        handle: Handle,
        member: &Member,
        job: Job,
        posted: Instant,
    ) -> Result<Joined, String> {
        let room = room_id(&member.room);
        let seats = u32::try_from(member.of + 1).unwrap_or(u32::MAX);
        self.ensure_room(agent, handle, room, &member.room, seats)?;
        let (joined, _) = self.plugin_async(
            agent,
            handle,
            json!({
                "request": "join",
                "ptype": "publisher",
                "room": room,
                "display": format!("p{}", member.position),
            }),
            None,
        )?;
        let feed = joined
            .get("id")
            .and_then(Value::as_u64)
            .ok_or("janus videoroom: joined without a feed id")?;
        let mut rtc = negotiation::new_rtc(self.negotiation.codec, job.local)?;
        let (audio, video, offer, pending) =
            negotiation::offer(&mut rtc, Direction::SendOnly, true, &[])?;
        let (_, jsep) = self.plugin_async(
            agent,
            handle,
            json!({ "request": "publish" }),
            Some(jsep_of("offer", &offer.to_sdp_string())),
        )?;
        let sdp = jsep_sdp(jsep.as_ref(), "answer")?;
        let sdp = negotiation::reachable_candidates_only(&sdp, &self.base);
        let answer = SdpAnswer::from_sdp_string(&sdp).map_err(|_| "sdp".to_string())?;
        rtc.sdp_api()
            .accept_answer(pending, answer)
            .map_err(|_| "sdp".to_string())?;
        let pts = negotiation::publisher_pts(&rtc, audio, video, &self.negotiation)?;
        if let Ok(mut rooms) = self.state.rooms.lock() {
            let feed = Feed {
                id: feed,
                audio: audio.to_string(),
                video: video.to_string(),
            };
            rooms
                .entry(room)
                .or_default()
                .members
                .insert(member.position, feed);
        }
        Ok(Joined {
            job,
            rtc,
            mids: [audio, video],
            pts: Some(pts),
            posted,
            location: format!("{}/{}", self.base, handle.session),
            slots: Vec::new(),
            participant: Some(feed.to_string()),
        })
    }

    /// A group call participant subscribes to what it would see in a ringcast room: the video
    /// of the others up to its video slots, their audio up to its audio slots (the others in
    /// turn from the one after it), in one subscriber peer connection whose m-lines are its
    /// slots.
    fn subscribe_member(
        &self,
        agent: &ureq::Agent,
        handle: Handle,
        member: &Member,
        job: Job,
        posted: Instant,
    ) -> Result<Joined, String> {
        let room = room_id(&member.room);
        let feeds = self
            .state
            .rooms
            .lock()
            .map(|rooms| rooms.get(&room).map(|r| r.members.clone()))
            .ok()
            .flatten()
            .unwrap_or_default();
        let others: Vec<&Feed> = (1..member.of)
            .filter_map(|step| feeds.get(&((member.position + step) % member.of)))
            .collect();
        let slots = self.negotiation.slots;
        let streams: Vec<Value> = others
            .iter()
            .take(slots.video)
            .map(|f| json!({ "feed": f.id, "mid": f.video }))
            .chain(
                others
                    .iter()
                    .take(slots.audio)
                    .map(|f| json!({ "feed": f.id, "mid": f.audio })),
            )
            .collect();
        if streams.is_empty() {
            return Err("janus: nobody else in the room published".into());
        }
        let sdp = self.join_subscriber(agent, handle, room, Value::Array(streams))?;
        let slots = offered_slots(&sdp);
        self.answer_and_start(agent, handle, &sdp, job, posted, slots)
    }

    /// Create the room unless it exists, with room for `publishers`; remember whether we did.
    fn ensure_room(
        &self,
        agent: &ureq::Agent,
        handle: Handle,
        room: u64,
        stream: &str,
        publishers: u32,
    ) -> Result<(), String> {
        let exists =
            self.plugin_sync(agent, handle, json!({ "request": "exists", "room": room }))?;
        if exists.get("exists").and_then(Value::as_bool) == Some(true) {
            return Ok(());
        }
        let videocodec = match self.negotiation.codec {
            VideoCodec::Vp8 => "vp8",
            VideoCodec::H264 => "h264",
        };
        let created = self.plugin_sync(
            agent,
            handle,
            json!({
                "request": "create",
                "room": room,
                "description": stream,
                "permanent": false,
                "publishers": publishers,
                "bitrate": ROOM_BITRATE,
                "audiocodec": "opus",
                "videocodec": videocodec,
                "notify_joining": false,
            }),
        );
        match created {
            Ok(_) => {
                if let Ok(mut rooms) = self.state.rooms.lock() {
                    rooms.entry(room).or_default().created = true;
                }
                Ok(())
            }
            // Created meanwhile by someone else: fine, not ours to destroy.
            Err(cause) if cause.starts_with("janus videoroom 427") => Ok(()),
            Err(cause) => Err(cause),
        }
    }

    fn known_feed(&self, room: u64) -> Option<u64> {
        self.state.rooms.lock().ok()?.get(&room)?.feed
    }

    /// The room's publisher, asked of Janus (a publisher from another process).
    fn lookup_feed(&self, agent: &ureq::Agent, handle: Handle, room: u64) -> Result<u64, String> {
        let list = self.plugin_sync(
            agent,
            handle,
            json!({ "request": "listparticipants", "room": room }),
        )?;
        let feed = list
            .get("participants")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("publisher").and_then(Value::as_bool) == Some(true))
            .and_then(|p| p.get("id").and_then(Value::as_u64))
            .ok_or("janus videoroom: no publisher in the room")?;
        if let Ok(mut rooms) = self.state.rooms.lock() {
            rooms.entry(room).or_default().feed = Some(feed);
        }
        Ok(feed)
    }

    /// A new session with a videoroom handle, kept alive from now on.
    fn open(&self, agent: &ureq::Agent) -> Result<Handle, String> {
        let created = self.janus(agent, &self.base, json!({ "janus": "create" }))?;
        let session = data_id(&created).ok_or("janus: create without a session id")?;
        if let Ok(mut sessions) = self.state.sessions.lock() {
            sessions.insert(session);
        }
        let attach = json!({ "janus": "attach", "plugin": "janus.plugin.videoroom" });
        let attached = self.janus(agent, &format!("{}/{session}", self.base), attach);
        match attached.and_then(|a| data_id(&a).ok_or("janus: attach without a handle id".into())) {
            Ok(handle) => Ok(Handle { session, handle }),
            Err(cause) => {
                self.close(agent, session);
                Err(cause)
            }
        }
    }

    /// Destroy a session (errors ignored) and stop keeping it alive.
    fn close(&self, agent: &ureq::Agent, session: u64) {
        if let Ok(mut sessions) = self.state.sessions.lock() {
            sessions.remove(&session);
        }
        let url = format!("{}/{session}", self.base);
        let _ = self.janus(agent, &url, json!({ "janus": "destroy" }));
    }

    /// A plugin request answered at once (`success` with plugindata): its data.
    fn plugin_sync(&self, agent: &ureq::Agent, h: Handle, body: Value) -> Result<Value, String> {
        let url = format!("{}/{}/{}", self.base, h.session, h.handle);
        let reply = self.janus(agent, &url, json!({ "janus": "message", "body": body }))?;
        plugin_data(&reply)
    }

    /// A plugin request whose result comes as an event (after an `ack`): its data and JSEP.
    fn plugin_async(
        &self,
        agent: &ureq::Agent,
        h: Handle,
        body: Value,
        jsep: Option<Value>,
    ) -> Result<(Value, Option<Value>), String> {
        let url = format!("{}/{}/{}", self.base, h.session, h.handle);
        let mut message = json!({ "janus": "message", "body": body });
        if let Some(jsep) = jsep {
            message["jsep"] = jsep;
        }
        let transaction = transaction();
        message["transaction"] = Value::String(transaction.clone());
        let reply = post(agent, &url, &message)?;
        let event = match reply.get("janus").and_then(Value::as_str) {
            Some("ack") => self.wait_event(h.session, &transaction)?,
            Some("success" | "event") => reply,
            _ => return Err(core_error(&reply)),
        };
        let data = plugin_data(&event)?;
        Ok((data, event.get("jsep").cloned()))
    }

    /// Long-poll the session until the event for `transaction` arrives.
    fn wait_event(&self, session: u64, transaction: &str) -> Result<Value, String> {
        let deadline = Instant::now() + self.timeout;
        // One long poll lasts up to 30 s on Janus's side; ours ends at the deadline.
        let poll = http::agent(self.timeout);
        let mut rid = 0u64;
        while Instant::now() < deadline {
            rid += 1;
            let url = format!("{}/{session}?maxev=10&rid={rid}", self.base);
            let mut response = poll.get(&url).call().map_err(|e| http::cause(&e))?;
            let status = response.status().as_u16();
            if status != 200 {
                return Err(format!("janus http {status}"));
            }
            let text = response
                .body_mut()
                .read_to_string()
                .map_err(|e| http::cause(&e))?;
            let events: Value =
                serde_json::from_str(&text).map_err(|_| "janus: bad JSON".to_string())?;
            let events = match events {
                Value::Array(list) => list,
                one => vec![one],
            };
            for event in events {
                let kind = event.get("janus").and_then(Value::as_str).unwrap_or("");
                if event.get("transaction").and_then(Value::as_str) == Some(transaction) {
                    return Ok(event);
                }
                match kind {
                    "error" => return Err(core_error(&event)),
                    "hangup" | "detached" => {
                        let reason = event.get("reason").and_then(Value::as_str).unwrap_or("");
                        return Err(format!("janus {kind}: {}", numbers_as_n(reason)));
                    }
                    // keepalive, webrtcup, media, slowlink, trickle: nothing to wait for.
                    _ => {}
                }
            }
        }
        Err("janus: no event (timeout)".into())
    }

    /// A core request (`create`, `attach`, `destroy`, `message`…) expecting `success`/`ack`.
    fn janus(&self, agent: &ureq::Agent, url: &str, mut body: Value) -> Result<Value, String> {
        body["transaction"] = Value::String(transaction());
        let reply = post(agent, url, &body)?;
        match reply.get("janus").and_then(Value::as_str) {
            Some("success" | "ack") => Ok(reply),
            _ => Err(core_error(&reply)),
        }
    }
}

/// The VideoRoom room id of a stream: FNV-1a of its name, kept below 2^53 so that every JSON
/// implementation reads it exactly; never 0.
pub fn room_id(stream: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in stream.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash & ((1 << 53) - 1)).max(1)
}

/// Send `keepalive` to every open session every [`KEEPALIVE_EVERY`] until told to stop.
fn keepalive_loop(state: &State, base: &str) {
    let agent = http::agent(Duration::from_secs(2));
    let mut next = Instant::now() + KEEPALIVE_EVERY;
    while !state.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + KEEPALIVE_EVERY;
        let sessions: Vec<u64> = state
            .sessions
            .lock()
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        for session in sessions {
            if state.stop.load(Ordering::Relaxed) {
                return;
            }
            let body = json!({ "janus": "keepalive", "transaction": transaction() });
            let _ = post(&agent, &format!("{base}/{session}"), &body);
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Result<Value, String> {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body.to_string())
        .map_err(|e| http::cause(&e))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(format!("janus http {status}"));
    }
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| http::cause(&e))?;
    serde_json::from_str(&text).map_err(|_| "janus: bad JSON".to_string())
}

fn transaction() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// `data.id` of a `create` or `attach` reply.
fn data_id(reply: &Value) -> Option<u64> {
    reply.get("data")?.get("id")?.as_u64()
}

/// The plugin's answer in a reply or event; a plugin error becomes its cause.
fn plugin_data(reply: &Value) -> Result<Value, String> {
    let data = reply
        .get("plugindata")
        .and_then(|p| p.get("data"))
        .ok_or_else(|| core_error(reply))?;
    if let Some(code) = data.get("error_code").and_then(Value::as_i64) {
        let reason = data.get("error").and_then(Value::as_str).unwrap_or("");
        return Err(format!("janus videoroom {code}: {}", numbers_as_n(reason)));
    }
    Ok(data.clone())
}

/// The cause of a core reply that is not what was expected.
fn core_error(reply: &Value) -> String {
    match reply.get("error") {
        Some(error) => {
            let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
            let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
            format!("janus {code}: {}", numbers_as_n(reason))
        }
        None => {
            let kind = reply.get("janus").and_then(Value::as_str).unwrap_or("?");
            format!("janus: unexpected {}", numbers_as_n(kind))
        }
    }
}

/// A JSEP object with our SDP; our candidates are in it, none will be trickled.
fn jsep_of(kind: &str, sdp: &str) -> Value {
    json!({ "type": kind, "sdp": sdp, "trickle": false })
}

/// The SDP of an event's JSEP of the expected type.
fn jsep_sdp(jsep: Option<&Value>, kind: &str) -> Result<String, String> {
    let jsep = jsep.ok_or_else(|| format!("janus: no {kind} in the event"))?;
    if jsep.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(format!("janus: expected an SDP {kind}"));
    }
    jsep.get("sdp")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| format!("janus: {kind} without SDP"))
}

/// The mids of the first audio and video m-lines of an SDP (the audio one twice when there is
/// no video; "0" when there is nothing).
fn offered_mids(sdp: &str) -> [Mid; 2] {
    let (mut audio, mut video) = (None, None);
    let mut kind = "";
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            kind = m.split_whitespace().next().unwrap_or("");
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            let mid = mid.trim();
            match kind {
                "audio" if audio.is_none() => audio = Some(Mid::from(mid)),
                "video" if video.is_none() => video = Some(Mid::from(mid)),
                _ => {}
            }
        }
    }
    let audio = audio.or(video).unwrap_or_else(|| Mid::from("0"));
    [audio, video.unwrap_or(audio)]
}

/// The audio and video m-lines of an SDP offer, in order: a subscriber's slots.
fn offered_slots(sdp: &str) -> Vec<Slot> {
    let mut slots = Vec::new();
    let mut kind = None;
    for line in sdp.lines() {
        if let Some(m) = line.strip_prefix("m=") {
            kind = match m.split_whitespace().next() {
                Some("audio") => Some(MediaKind::Audio),
                Some("video") => Some(MediaKind::Video),
                _ => None,
            };
        } else if let (Some(mid), Some(k)) = (line.strip_prefix("a=mid:"), kind) {
            slots.push(Slot {
                mid: Mid::from(mid.trim()),
                kind: k,
            });
        }
    }
    slots
}

/// How often a subscriber asks again for a feed Janus does not offer yet, and how long it
/// waits between two asks (2 s in all).
const FEED_TRIES: u32 = 20;
const FEED_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Digits in a reason become `N` (room and feed ids), and it is cut to 80 characters, so that
/// one cause is one row in the errors table.
fn numbers_as_n(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len());
    let mut in_number = false;
    for c in reason.chars().take(80) {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

fn first_words(text: &str) -> String {
    numbers_as_n(text.split(':').next().unwrap_or(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_stable_and_json_safe() {
        assert_eq!(room_id("lt1-0"), room_id("lt1-0"));
        assert_ne!(room_id("lt1-0"), room_id("lt1-1"));
        for name in ["", "a", "lt12345-99999-9999"] {
            let id = room_id(name);
            assert!(id > 0 && id < 1 << 53, "{name}: {id}");
        }
    }

    #[test]
    fn errors_become_causes() {
        let core =
            json!({"janus": "error", "error": {"code": 458, "reason": "No such session 123"}});
        assert_eq!(core_error(&core), "janus 458: No such session N");
        let plugin = json!({"janus": "event", "plugindata": {"plugin": "janus.plugin.videoroom",
            "data": {"videoroom": "event", "error_code": 426, "error": "No such room (8812)"}}});
        assert_eq!(
            plugin_data(&plugin).unwrap_err(),
            "janus videoroom 426: No such room (N)"
        );
        let ok = json!({"janus": "success", "plugindata": {"data": {"videoroom": "created"}}});
        assert_eq!(plugin_data(&ok).unwrap()["videoroom"], "created");
        assert_eq!(core_error(&json!({"x": 1})), "janus: unexpected ?");
        assert_eq!(core_error(&json!(null)), "janus: unexpected ?");
    }

    #[test]
    fn jsep_and_mids() {
        let event = json!({"type": "offer", "sdp": "v=0\r\n"});
        assert_eq!(jsep_sdp(Some(&event), "offer").unwrap(), "v=0\r\n");
        assert!(jsep_sdp(Some(&event), "answer").is_err());
        assert!(jsep_sdp(None, "offer").is_err());
        assert!(jsep_sdp(Some(&json!({"type": "offer"})), "offer").is_err());
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:v1\r\n";
        assert_eq!(offered_mids(sdp), [Mid::from("a0"), Mid::from("v1")]);
        let audio_only = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\n";
        assert_eq!(offered_mids(audio_only), [Mid::from("0"), Mid::from("0")]);
        assert_eq!(offered_mids("garbage"), [Mid::from("0"), Mid::from("0")]);
    }
}
