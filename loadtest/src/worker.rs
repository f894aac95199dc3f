//! A media worker: one thread, one ringcast-net engine (one UDP socket), many str0m peers.
//!
//! All peers of all workers talk to the server from distinct addresses, as the server demuxes
//! by source address: the socket is bound to `0.0.0.0:port` and each peer gets its own loopback
//! address `127.a.b.c` on that port. Outgoing datagrams leave from the peer's address
//! (`IP_PKTINFO`), incoming ones are routed to their peer by destination address (one hash
//! lookup). Peers are only touched when a datagram for them arrives or their deadline (str0m's
//! timeout, or the publisher's next media packet) passes: deadlines sit in a binary heap.
//! A publisher's media goes through `Rtc::send_rtp` (ringcast's str0m patch): from an idle
//! instance each packet leaves at once, and the peer is polled only when str0m queued one.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use ringcast_net::{Driver, Transmit, Turn, TxQueue};
use str0m::media::{Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpWrite, Ssrc};
use str0m::{Event, IceConnectionState, Input, Output, Rtc, SendRtp};

use crate::first_frame::FirstFrame;
use crate::media::{self, Layer, Packetizer, VideoCodec};
use crate::members::{self, Received, SlotReceiver, Speaking};
use crate::session::{Joined, Member, Role};
use crate::stats::{self, SeqTracker};
use crate::tally::Tally;

/// What the coordinator tells a worker.
#[derive(Debug)]
pub enum Command {
    /// Take over a session the server accepted.
    Add(Box<Joined>),
    /// Take over a session and say on `outcome` once it has media flowing (`Ok`) or has failed
    /// before that (`Err` with the cause, also counted in the tally as for [`Command::Add`]).
    Watch(Box<Joined>, Sender<Outcome>),
    /// Drop the session at this local address without counting a failure (it is leaving).
    Remove(IpAddr),
    /// The measured window opens: group call participants count from here on.
    OpenWindow,
    /// Leave the loop.
    Stop,
}

/// How a watched session's connection went: `Err` holds the failure's cause.
pub type Outcome = Result<(), &'static str>;

/// Media parameters shared by all publishers.
#[derive(Debug, Clone)]
pub struct MediaPlan {
    /// Video codec.
    pub codec: VideoCodec,
    /// Whether publishers send video (false: audio only).
    pub video: bool,
    /// Video frames per second.
    pub fps: u32,
    /// Video bytes per delta frame and per keyframe (publishers without simulcast).
    pub frame_sizes: (usize, usize),
    /// Simulcast layers publishers send, best first (empty: one plain video stream).
    pub layers: Vec<Layer>,
    /// Publishers ignore keyframe requests (PLI, FIR), as OBS and FFmpeg do: keyframes come
    /// only every `keyframe_interval`.
    pub ignore_pli: bool,
    /// Time between keyframes.
    pub keyframe_interval: Duration,
    /// Fraction of incoming RTP datagrams viewers drop before str0m (NACK off), 0 = none.
    pub simulate_loss: f64,
    /// A session with no media this long after its POST fails.
    pub connect_timeout: Duration,
    /// A connected viewer with no media this long is counted as stalled.
    pub stall_after: Duration,
    /// Group call participants: how long each one's turn as the loud speaker lasts.
    pub speaker_turn: Duration,
    /// Workers take their datagrams every this many microseconds (0: woken by each one);
    /// see [`crate::swarm::RxPolling`].
    pub rx_poll_us: u32,
}

/// How often the worker publishes its counters.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// How often the worker looks for sessions that never connected or stalled.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

/// The driver of one worker's engine.
pub struct Worker {
    index: usize,
    tally: Arc<Tally>,
    plan: Arc<MediaPlan>,
    mailbox: Receiver<Command>,
    peers: Vec<Option<Peer>>,
    free: Vec<usize>,
    by_ip: HashMap<IpAddr, usize>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    counters: Counters,
    latency: Histogram<u64>,
    next_flush: Instant,
    next_sweep: Instant,
}

/// A worker's cumulative counters.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    sent: u64,
    received: u64,
    bytes: u64,
    expected: u64,
    duplicates: u64,
    reorders: u64,
    corrupt: u64,
}

impl Counters {
    /// Count what a participant's packet did (its bytes are in its own report).
    fn add(&mut self, effect: &members::PacketEffect) {
        self.expected += effect.seq.expected;
        self.received += effect.seq.received;
        self.reorders += effect.seq.reordered;
        self.duplicates += effect.seq.duplicate;
        self.corrupt += u64::from(effect.corrupt);
    }
}

struct Peer {
    rtc: Rtc,
    local: SocketAddr,
    posted: Instant,
    /// The earliest deadline queued in the heap for this peer.
    scheduled: Option<Instant>,
    rtc_deadline: Instant,
    ice_ok: bool,
    dtls_ok: bool,
    /// Media flowing (viewers: first packet arrived; publishers: DTLS up).
    connected: bool,
    stalled: bool,
    kind: Kind,
    /// Told once when the session connects or fails first ([`Command::Watch`]).
    watcher: Option<Sender<Outcome>>,
}

enum Kind {
    Publisher(Box<Publisher>),
    Viewer(Box<Viewer>),
    Member(Box<MemberPeer>),
}

/// A group call participant's session: it publishes, receives on slots, or both.
struct MemberPeer {
    member: Member,
    /// The server's id of the participant.
    participant: Option<String>,
    publisher: Option<Publisher>,
    receiver: Option<SlotReceiver>,
}

struct Publisher {
    /// Sends video too (else audio only).
    with_video: bool,
    mids: [Mid; 2],
    pts: [Pt; 2],
    audio: Packetizer,
    /// The audio stream's SSRC, once str0m was asked for it.
    audio_ssrc: Option<Ssrc>,
    audio_seq: u64,
    /// One per simulcast layer, best first; one without a rid when not simulcasting.
    video: Vec<VideoLayer>,
    frames: u64,
    audio_packets: u64,
    next_audio: Instant,
    next_video: Instant,
    /// Group call participants: the RFC 6464 audio level on every audio packet.
    speaking: Option<Speaking>,
}

/// One video stream a publisher sends: a simulcast layer, or its only video.
struct VideoLayer {
    /// Its rid (None without simulcast).
    rid: Option<Rid>,
    /// What its VP8 keyframes say the resolution is.
    dims: (u16, u16),
    /// Bytes per delta frame and per keyframe.
    frame_sizes: (usize, usize),
    packetizer: Packetizer,
    /// Its SSRC, once str0m was asked for it.
    ssrc: Option<Ssrc>,
    rtp_seq: u64,
    last_key: Option<Instant>,
    force_key: bool,
}

struct Viewer {
    full: bool,
    streams: Vec<(Ssrc, SeqTracker)>,
    last_media: Option<Instant>,
    drop_credit: f64,
    /// The video mid while the first complete keyframe is awaited (None: audio only, or the
    /// first frame is in). Until then even a light viewer lets str0m decrypt its RTP.
    awaiting_first_frame: Option<Mid>,
    first_frame: FirstFrame,
}

impl Worker {
    /// A worker that takes sessions from `mailbox`.
    pub fn new(
        index: usize,
        tally: Arc<Tally>,
        plan: Arc<MediaPlan>,
        mailbox: Receiver<Command>,
    ) -> Self {
        let now = Instant::now();
        Worker {
            index,
            tally,
            plan,
            mailbox,
            peers: Vec::new(),
            free: Vec::new(),
            by_ip: HashMap::new(),
            timers: BinaryHeap::new(),
            counters: Counters::default(),
            latency: stats::histogram(),
            next_flush: now,
            next_sweep: now + SWEEP_EVERY,
        }
    }

    fn add(&mut self, joined: Joined, watcher: Option<Sender<Outcome>>, now: Instant) {
        let Joined {
            job,
            rtc,
            mids,
            pts,
            posted,
            location: _,
            slots,
            participant,
        } = joined;
        let kind = match (&job.role, pts) {
            (Role::Member(member), pts) => {
                let publisher = match (member.part.publishes(), pts) {
                    (true, Some(pts)) => Some(Publisher {
                        speaking: Some(Speaking {
                            position: member.position,
                            of: member.of,
                            turn: self.plan.speaker_turn,
                        }),
                        ..Publisher::new(&self.plan, member.id, mids, pts, now)
                    }),
                    _ => None,
                };
                let receiver = member
                    .part
                    .receives()
                    .then(|| SlotReceiver::new(&slots, member, self.plan.codec));
                Kind::Member(Box::new(MemberPeer {
                    member: member.clone(),
                    participant,
                    publisher,
                    receiver,
                }))
            }
            (Role::Publisher { id, .. }, Some(pts)) => {
                Kind::Publisher(Box::new(Publisher::new(&self.plan, *id, mids, pts, now)))
            }
            (_, _) => Kind::Viewer(Box::new(Viewer {
                full: matches!(job.role, Role::Viewer { full: true, .. }),
                streams: Vec::with_capacity(2),
                last_media: None,
                drop_credit: 0.0,
                awaiting_first_frame: self.plan.video.then_some(mids[1]),
                first_frame: FirstFrame::new(),
            })),
        };
        let peer = Peer {
            rtc,
            local: job.local,
            posted,
            scheduled: None,
            rtc_deadline: now,
            ice_ok: false,
            dtls_ok: false,
            connected: false,
            stalled: false,
            kind,
            watcher,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.peers[slot] = Some(peer);
                slot
            }
            None => {
                self.peers.push(Some(peer));
                self.peers.len() - 1
            }
        };
        self.by_ip.insert(job.local.ip(), slot);
        self.schedule(slot);
    }

    fn remove(&mut self, slot: usize, cause: &'static str) {
        if let Some(peer) = self.peers[slot].take() {
            self.by_ip.remove(&peer.local.ip());
            self.free.push(slot);
            let publisher = peer.publishes();
            if peer.connected && !peer.stalled {
                self.tally.lost_active(publisher);
            }
            self.report_member(&peer);
            if !peer.connected {
                self.tally.fail(publisher, cause);
                if let Kind::Member(m) = &peer.kind
                    && m.publisher.is_some()
                    && m.receiver.is_some()
                {
                    // A participant that never connected neither published nor received.
                    self.tally.viewers_failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(watcher) = peer.watcher {
                    let _ = watcher.send(Err(cause));
                }
            } else {
                self.tally.error(cause);
            }
        }
    }

    /// Drop a leaving session quietly: no failure, no error, only its place among the active.
    fn remove_leaving(&mut self, ip: IpAddr) {
        let Some(slot) = self.by_ip.remove(&ip) else {
            return; // already gone (failed, counted when it went)
        };
        if let Some(peer) = self.peers[slot].take() {
            self.free.push(slot);
            if peer.connected && !peer.stalled {
                self.tally.lost_active(peer.publishes());
            }
            self.report_member(&peer);
        }
    }

    /// A group call participant's receiving session leaves its report in the tally.
    fn report_member(&self, peer: &Peer) {
        if let Kind::Member(m) = &peer.kind
            && let Some(receiver) = &m.receiver
        {
            let report = receiver.report(&m.member, peer.posted, m.participant.clone());
            if let Ok(mut reports) = self.tally.members.lock() {
                reports.push(report);
            }
        }
    }

    /// Every participant's counts start again at the measured window.
    fn open_window(&mut self) {
        for peer in self.peers.iter_mut().flatten() {
            if let Kind::Member(m) = &mut peer.kind
                && let Some(receiver) = &mut m.receiver
            {
                receiver.open_window();
            }
        }
    }

    /// Queue a heap entry if the peer's wake-up time moved earlier than its queued one.
    fn schedule(&mut self, slot: usize) {
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        let wake = peer.wake();
        if peer.scheduled.is_none_or(|s| wake < s) {
            peer.scheduled = Some(wake);
            self.timers.push(Reverse((wake, slot)));
        }
    }

    /// Drain the peer's outputs until its next timeout; a peer that failed is removed.
    fn drain(&mut self, slot: usize, now: Instant, tx: &mut TxQueue) {
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        let mut ctx = Ctx {
            counters: &mut self.counters,
            latency: &mut self.latency,
            tally: &self.tally,
            plan: &self.plan,
        };
        if let Err(cause) = peer.drain(&mut ctx, now, tx) {
            self.remove(slot, cause);
            return;
        }
        self.schedule(slot);
    }

    /// Run one peer's timer: str0m's timeout and, for a publisher, its due media.
    fn on_timer(&mut self, slot: usize, now: Instant, tx: &mut TxQueue) {
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        peer.scheduled = None;
        // str0m's own timeout needs a poll after it; media alone needs none while every
        // packet leaves at once (`Rtc::send_rtp`), as it does from an idle instance.
        let mut poll = peer.rtc_deadline <= now;
        if poll && peer.rtc.handle_input(Input::Timeout(now)).is_err() {
            let cause = peer.failure_cause();
            self.remove(slot, cause);
            return;
        }
        if peer.dtls_ok
            && let Some(publisher) = peer.kind.publisher()
        {
            let mut out = Outbox {
                tx,
                local: peer.local,
                now,
                poll: false,
            };
            self.counters.sent += publisher.send_due(&mut peer.rtc, &self.plan, &mut out);
            poll |= out.poll;
        }
        if poll {
            self.drain(slot, now, tx);
        } else {
            self.schedule(slot);
        }
    }

    /// Fail sessions that never got media, count viewers whose media stopped.
    fn sweep(&mut self, now: Instant) {
        for slot in 0..self.peers.len() {
            let Some(peer) = self.peers[slot].as_mut() else {
                continue;
            };
            if !peer.connected {
                if now.saturating_duration_since(peer.posted) > self.plan.connect_timeout {
                    let cause = if !peer.ice_ok {
                        "ice failed"
                    } else if !peer.dtls_ok {
                        "dtls failed"
                    } else {
                        "no media"
                    };
                    self.remove(slot, cause);
                }
                continue;
            }
            let last_media = match &peer.kind {
                Kind::Viewer(viewer) => Some(viewer.last_media),
                Kind::Member(m) => m.receiver.as_ref().map(|r| r.last_media),
                Kind::Publisher(_) => None,
            };
            if let Some(last_media) = last_media {
                let last = last_media.unwrap_or(now);
                let silent = now.saturating_duration_since(last) > self.plan.stall_after;
                if silent && !peer.stalled {
                    peer.stalled = true;
                    self.tally.error("media stalled");
                    self.tally.lost_active(false);
                } else if !silent && peer.stalled {
                    peer.stalled = false;
                    self.tally.regained_active();
                }
            }
        }
    }

    /// Publish counters and the latency samples taken since the last flush.
    fn flush(&mut self) {
        let c = &self.tally.workers[self.index];
        c.sent.store(self.counters.sent, Ordering::Relaxed);
        c.received.store(self.counters.received, Ordering::Relaxed);
        c.bytes.store(self.counters.bytes, Ordering::Relaxed);
        c.expected.store(self.counters.expected, Ordering::Relaxed);
        c.duplicates
            .store(self.counters.duplicates, Ordering::Relaxed);
        c.reorders.store(self.counters.reorders, Ordering::Relaxed);
        c.corrupt.store(self.counters.corrupt, Ordering::Relaxed);
        if !self.latency.is_empty() {
            if let Ok(mut tallied) = self.tally.latency.lock() {
                let _ = tallied.add(&self.latency);
            }
            self.latency.reset();
        }
    }
}

impl Driver for Worker {
    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        let Some(&slot) = self.by_ip.get(&destination.ip()) else {
            return;
        };
        let Some(peer) = self.peers[slot].as_mut() else {
            return;
        };
        if self.plan.simulate_loss > 0.0
            && is_rtp(data)
            && let Kind::Viewer(viewer) = &mut peer.kind
        {
            viewer.drop_credit += self.plan.simulate_loss;
            if viewer.drop_credit >= 1.0 {
                viewer.drop_credit -= 1.0;
                return;
            }
        }
        // A light viewer counts RTP from its clear header and never decrypts it: str0m sees
        // only STUN, DTLS and RTCP. That is what makes thousands of viewers per core possible.
        // (Until its first complete keyframe is in: telling one needs the payload.)
        if peer.dtls_ok
            && is_rtp(data)
            && let Kind::Viewer(viewer) = &peer.kind
            && !viewer.full
            && viewer.awaiting_first_frame.is_none()
        {
            let seq = u16::from_be_bytes([data[2], data[3]]);
            let ssrc = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
            let mut ctx = Ctx {
                counters: &mut self.counters,
                latency: &mut self.latency,
                tally: &self.tally,
                plan: &self.plan,
            };
            // Payload bytes: the datagram less the fixed header and the SRTP tag.
            let payload = data.len().saturating_sub(12 + SRTP_TAG);
            peer.media_packet(&mut ctx, now, now, Ssrc::from(ssrc), seq, payload, None);
            return;
        }
        // A light participant likewise, on the slots whose SSRC str0m has told it.
        if peer.dtls_ok
            && is_rtp(data)
            && let Kind::Member(m) = &mut peer.kind
            && let Some(receiver) = &mut m.receiver
            && receiver.counts_headers_only()
        {
            let ssrc = Ssrc::from(u32::from_be_bytes([data[8], data[9], data[10], data[11]]));
            if let Some(index) = receiver.slot_of(ssrc) {
                let received = Received {
                    arrived: now,
                    seq: u16::from_be_bytes([data[2], data[3]]),
                    timestamp: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
                    marker: data[1] & 0x80 != 0,
                    payload_len: data.len().saturating_sub(12 + SRTP_TAG),
                    payload: None,
                };
                let effect = receiver.on_packet(index, received);
                self.counters.add(&effect);
                return;
            }
        }
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: peer.local,
                contents,
            },
        );
        if peer.rtc.handle_input(input).is_err() {
            let cause = peer.failure_cause();
            self.remove(slot, cause);
            return;
        }
        self.drain(slot, now, tx);
    }

    fn on_turn(&mut self, now: Instant, tx: &mut TxQueue) -> Turn {
        loop {
            match self.mailbox.try_recv() {
                Ok(Command::Add(joined)) => {
                    let ip = joined.job.local.ip();
                    self.add(*joined, None, now);
                    if let Some(&slot) = self.by_ip.get(&ip) {
                        self.drain(slot, now, tx);
                    }
                }
                Ok(Command::Watch(joined, watcher)) => {
                    let ip = joined.job.local.ip();
                    self.add(*joined, Some(watcher), now);
                    if let Some(&slot) = self.by_ip.get(&ip) {
                        self.drain(slot, now, tx);
                    }
                }
                Ok(Command::Remove(ip)) => self.remove_leaving(ip),
                Ok(Command::OpenWindow) => self.open_window(),
                Ok(Command::Stop) | Err(TryRecvError::Disconnected) => {
                    for peer in self.peers.iter().flatten() {
                        self.report_member(peer);
                    }
                    self.flush();
                    return Turn::Stop;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        while let Some(&Reverse((at, slot))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(peer) = self.peers[slot].as_mut() else {
                continue;
            };
            if peer.scheduled != Some(at) {
                continue; // superseded by an earlier entry that already ran
            }
            if peer.wake() > now {
                // The deadline moved later since this entry was queued.
                peer.scheduled = None;
                self.schedule(slot);
                continue;
            }
            self.on_timer(slot, now, tx);
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            self.sweep(now);
        }
        if now >= self.next_flush {
            self.next_flush = now + FLUSH_EVERY;
            self.flush();
        }
        let next = self
            .timers
            .peek()
            .map_or(self.next_flush, |Reverse((at, _))| *at)
            .min(self.next_flush);
        Turn::Wait(Some(next))
    }
}

/// What a peer's event handling updates besides the peer.
struct Ctx<'a> {
    counters: &'a mut Counters,
    latency: &'a mut Histogram<u64>,
    tally: &'a Tally,
    plan: &'a MediaPlan,
}

impl Peer {
    /// Account one media packet a viewer received: join time, loss/reorder/duplicate from
    /// its sequence number, bytes, and (full viewers, `payload` given) the probe's latency
    /// and the payload's integrity.
    #[allow(clippy::too_many_arguments)]
    fn media_packet(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        arrived: Instant,
        ssrc: Ssrc,
        seq: u16,
        payload_len: usize,
        payload: Option<&[u8]>,
    ) {
        let Kind::Viewer(viewer) = &mut self.kind else {
            return;
        };
        if !self.connected {
            self.connected = true;
            ctx.tally.connected(false);
            if let Some(watcher) = self.watcher.take() {
                let _ = watcher.send(Ok(()));
            }
            let join = arrived.saturating_duration_since(self.posted);
            ctx.tally.joined(join.as_secs_f64() * 1000.0);
        }
        viewer.last_media = Some(now);
        let index = match viewer.streams.iter().position(|(s, _)| *s == ssrc) {
            Some(i) => i,
            None => {
                if ctx.plan.simulate_loss > 0.0
                    && let Some(rx) = self.rtc.direct_api().stream_rx(&ssrc)
                {
                    rx.suppress_nack(true);
                }
                viewer.streams.push((ssrc, SeqTracker::new()));
                viewer.streams.len() - 1
            }
        };
        let d = viewer.streams[index].1.on_packet(seq);
        let c = &mut *ctx.counters;
        c.expected += d.expected;
        c.received += d.received;
        c.reorders += d.reordered;
        c.duplicates += d.duplicate;
        c.bytes += payload_len as u64 + 12;
        if viewer.full
            && let Some(payload) = payload
        {
            match media::verify(payload) {
                Some(probe) => {
                    let sent = probe.sent_ns;
                    let arrived = media::nanos_since_anchor(arrived);
                    let us = arrived.saturating_sub(sent) / 1000;
                    let _ = ctx.latency.record(us.max(1));
                }
                None => c.corrupt += 1,
            }
        }
    }

    /// A participant received a media packet (decrypted by str0m): account it on its slot.
    fn member_packet(&mut self, ctx: &mut Ctx<'_>, packet: &str0m::rtp::RtpPacket) {
        let Kind::Member(m) = &mut self.kind else {
            return;
        };
        let Some(receiver) = &mut m.receiver else {
            return;
        };
        let ssrc = packet.header.ssrc;
        let index = match receiver.slot_of(ssrc) {
            Some(index) => Some(index),
            None => self
                .rtc
                .direct_api()
                .stream_rx(&ssrc)
                .map(|s| s.mid())
                .and_then(|mid| receiver.learn(ssrc, mid)),
        };
        let Some(index) = index else {
            ctx.tally.error("rtp outside the slots");
            return;
        };
        let first = receiver.last_media.is_none();
        let effect = receiver.on_packet(
            index,
            Received {
                arrived: packet.timestamp,
                seq: packet.header.sequence_number,
                timestamp: packet.header.timestamp,
                marker: packet.header.marker,
                payload_len: packet.payload.len(),
                payload: Some(&packet.payload),
            },
        );
        ctx.counters.add(&effect);
        if let Some(us) = effect.latency_us {
            let _ = ctx.latency.record(us);
        }
        if first {
            // Media flows to it: a receiving session counts as a connected viewer.
            ctx.tally.connected(false);
            if m.publisher.is_none() {
                self.connected = true;
                if let Some(watcher) = self.watcher.take() {
                    let _ = watcher.send(Ok(()));
                }
            }
        }
    }

    /// Whether this session counts as a publisher (it sends media).
    fn publishes(&self) -> bool {
        match &self.kind {
            Kind::Publisher(_) => true,
            Kind::Viewer(_) => false,
            Kind::Member(m) => m.publisher.is_some(),
        }
    }

    /// A viewer awaiting its first complete keyframe: account one RTP packet of its video.
    fn first_frame_packet(&mut self, ctx: &mut Ctx<'_>, packet: &str0m::rtp::RtpPacket) {
        let Kind::Viewer(viewer) = &mut self.kind else {
            return;
        };
        let Some(video) = viewer.awaiting_first_frame else {
            return;
        };
        let ssrc = packet.header.ssrc;
        if self.rtc.direct_api().stream_rx(&ssrc).map(|s| s.mid()) != Some(video) {
            return;
        }
        let header = &packet.header;
        let key = media::is_keyframe(ctx.plan.codec, &packet.payload);
        if viewer.first_frame.on_packet(
            header.sequence_number,
            header.timestamp,
            header.marker,
            key,
        ) {
            viewer.awaiting_first_frame = None;
            let waited = packet.timestamp.saturating_duration_since(self.posted);
            ctx.tally.first_frame(waited.as_secs_f64() * 1000.0);
        }
    }

    /// When this peer next needs attention.
    fn wake(&self) -> Instant {
        match &self.kind {
            Kind::Publisher(p) if self.dtls_ok => p.wake(self.rtc_deadline),
            Kind::Member(m) if self.dtls_ok && m.publisher.is_some() => m
                .publisher
                .as_ref()
                .map_or(self.rtc_deadline, |p| p.wake(self.rtc_deadline)),
            _ => self.rtc_deadline,
        }
    }

    fn failure_cause(&self) -> &'static str {
        if !self.ice_ok {
            "ice failed"
        } else if !self.dtls_ok {
            "dtls failed"
        } else {
            "rtc error"
        }
    }

    fn drain(
        &mut self,
        ctx: &mut Ctx<'_>,
        now: Instant,
        tx: &mut TxQueue,
    ) -> Result<(), &'static str> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.rtc_deadline = t;
                    return Ok(());
                }
                Ok(Output::Transmit(t)) => push_transmit(tx, self.local, t),
                Ok(Output::Event(event)) => self.on_event(ctx, event, now)?,
                Err(_) => return Err(self.failure_cause()),
            }
        }
    }

    fn on_event(
        &mut self,
        ctx: &mut Ctx<'_>,
        event: Event,
        now: Instant,
    ) -> Result<(), &'static str> {
        match event {
            Event::IceConnectionStateChange(state) => match state {
                IceConnectionState::Connected | IceConnectionState::Completed => self.ice_ok = true,
                IceConnectionState::Disconnected => {
                    return Err(if self.connected {
                        "ice disconnected"
                    } else {
                        "ice failed"
                    });
                }
                _ => {}
            },
            Event::Connected => {
                self.dtls_ok = true;
                if let Some(p) = self.kind.publisher() {
                    p.next_audio = now;
                    p.next_video = now;
                    self.connected = true;
                    ctx.tally.connected(true);
                    if let Some(watcher) = self.watcher.take() {
                        let _ = watcher.send(Ok(()));
                    }
                }
            }
            Event::KeyframeRequest(request) => {
                if let Some(p) = self.kind.publisher()
                    && !ctx.plan.ignore_pli
                {
                    for layer in &mut p.video {
                        if request.rid.is_none() || request.rid == layer.rid {
                            layer.force_key = true;
                        }
                    }
                }
            }
            Event::RtpPacket(packet)
                if matches!(self.kind, Kind::Member(_)) && !packet.payload.is_empty() =>
            {
                self.member_packet(ctx, &packet);
            }
            Event::ChannelOpen(id, label) => {
                if let Kind::Member(m) = &mut self.kind
                    && let Some(receiver) = &mut m.receiver
                {
                    receiver.on_channel_open(id, &label);
                }
            }
            Event::ChannelData(data) => {
                if let Kind::Member(m) = &mut self.kind
                    && let Some(receiver) = &mut m.receiver
                {
                    receiver.on_channel_data(data.id, &data.data);
                }
            }
            Event::RtpPacket(packet) => {
                if packet.payload.is_empty() {
                    return Ok(()); // padding (bandwidth probes)
                }
                self.first_frame_packet(ctx, &packet);
                self.media_packet(
                    ctx,
                    now,
                    packet.timestamp,
                    packet.header.ssrc,
                    packet.header.sequence_number,
                    packet.payload.len(),
                    Some(&packet.payload),
                );
            }
            _ => {}
        }
        Ok(())
    }
}

impl Kind {
    /// The publishing side of this session, if it sends media.
    fn publisher(&mut self) -> Option<&mut Publisher> {
        match self {
            Kind::Publisher(p) => Some(p),
            Kind::Member(m) => m.publisher.as_mut(),
            Kind::Viewer(_) => None,
        }
    }
}

impl Publisher {
    /// A publisher of `plan`'s media with probe id `id`, sending on `mids` with `pts`.
    fn new(plan: &MediaPlan, id: u32, mids: [Mid; 2], pts: [Pt; 2], now: Instant) -> Self {
        Publisher {
            with_video: plan.video,
            mids,
            pts,
            audio: Packetizer::new(id),
            audio_ssrc: None,
            audio_seq: 1000,
            video: VideoLayer::of_plan(plan, id),
            frames: 0,
            audio_packets: 0,
            next_audio: now,
            next_video: now,
            speaking: None,
        }
    }

    /// When it next has media due, or `rtc_deadline` if that comes first.
    fn wake(&self, rtc_deadline: Instant) -> Instant {
        let media = if self.with_video {
            self.next_audio.min(self.next_video)
        } else {
            self.next_audio
        };
        rtc_deadline.min(media)
    }

    /// Write the audio packets and video frames that are due; returns packets written.
    fn send_due(&mut self, rtc: &mut Rtc, plan: &MediaPlan, out: &mut Outbox<'_>) -> u64 {
        let now = out.now;
        const AUDIO_EVERY: Duration = Duration::from_millis(20);
        let frame_every = Duration::from_secs(1) / plan.fps;
        // Far behind (a stalled thread): skip ahead rather than burst.
        if now.saturating_duration_since(self.next_audio) > Duration::from_secs(1) {
            self.next_audio = now;
        }
        if now.saturating_duration_since(self.next_video) > Duration::from_secs(1) {
            self.next_video = now;
        }
        let mut sent = 0;
        let sent_ns = media::nanos_since_anchor(now);
        while self.next_audio <= now {
            let size = 60 + (self.audio_packets as usize * 37) % 101;
            let payload = self.audio.audio(size, sent_ns);
            let ts = (self.audio_packets * 960) as u32;
            let seq = self.audio_seq;
            self.audio_seq += 1;
            let (mid, pt) = (self.mids[0], self.pts[0]);
            let mut rtp = RtpWrite::new(pt, seq.into(), ts, now, payload);
            if let Some(speaking) = &self.speaking {
                let (level, voice) = speaking.level(now);
                rtp = rtp.ext_vals(ExtensionValues {
                    audio_level: Some(level),
                    voice_activity: Some(voice),
                    ..ExtensionValues::default()
                });
            }
            sent += out.send(rtc, (mid, None), &mut self.audio_ssrc, rtp);
            self.audio_packets += 1;
            self.next_audio += AUDIO_EVERY;
        }
        while self.with_video && self.next_video <= now {
            // Every layer's frame has the same capture time, as an encoder's layers do.
            let ts = (self.frames * 90_000 / u64::from(plan.fps)) as u32;
            let (mid, pt) = (self.mids[1], self.pts[1]);
            for layer in &mut self.video {
                let key = layer.force_key
                    || layer
                        .last_key
                        .is_none_or(|k| now.saturating_duration_since(k) >= plan.keyframe_interval);
                if key {
                    layer.force_key = false;
                    layer.last_key = Some(now);
                }
                let size = if key {
                    layer.frame_sizes.1
                } else {
                    layer.frame_sizes.0
                };
                let packets = layer
                    .packetizer
                    .video(plan.codec, key, size, layer.dims, sent_ns);
                let n = packets.len();
                for (i, payload) in packets.into_iter().enumerate() {
                    let seq = layer.rtp_seq;
                    layer.rtp_seq += 1;
                    let mut rtp =
                        RtpWrite::new(pt, seq.into(), ts, now, payload).marker(i + 1 == n);
                    if layer.rid.is_some() {
                        // The rtp-stream-id on every packet, not only until the first
                        // receiver report (what str0m does by itself).
                        rtp = rtp.ext_vals(ExtensionValues {
                            rid: layer.rid,
                            ..ExtensionValues::default()
                        });
                    }
                    sent += out.send(rtc, (mid, layer.rid), &mut layer.ssrc, rtp);
                }
            }
            self.frames += 1;
            self.next_video += frame_every;
        }
        sent
    }
}

impl VideoLayer {
    /// A publisher's video streams: one per simulcast layer of `plan`, or one plain one.
    fn of_plan(plan: &MediaPlan, publisher: u32) -> Vec<VideoLayer> {
        let layer = |rid: Option<Rid>, dims, frame_sizes, i: u64| VideoLayer {
            rid,
            dims,
            frame_sizes,
            packetizer: Packetizer::new(publisher),
            ssrc: None,
            rtp_seq: 20_000 + i * 10_000,
            last_key: None,
            force_key: true,
        };
        if plan.layers.is_empty() {
            return vec![layer(None, media::PLAIN_DIMS, plan.frame_sizes, 0)];
        }
        plan.layers
            .iter()
            .zip(0..)
            .map(|(l, i)| layer(Some(Rid::from(l.rid.as_str())), l.dims, l.frame_sizes, i))
            .collect()
    }
}

/// Where a publisher's packets go: out on the worker's socket at once, or into str0m's queue
/// for the next poll.
struct Outbox<'a> {
    tx: &'a mut TxQueue,
    /// The session's own address, the datagrams' source.
    local: SocketAddr,
    now: Instant,
    /// The peer needs a poll: a packet went to str0m's queue, or str0m counts the instance
    /// as changed.
    poll: bool,
}

impl Outbox<'_> {
    /// Send one RTP packet on the stream of `mid` (and `rid`), whose SSRC `ssrc` remembers
    /// once found: taking str0m's `DirectApi` to look it up marks the instance changed, so
    /// no packet after it could leave at once. 1 when written, 0 when the stream is not there.
    fn send(
        &mut self,
        rtc: &mut Rtc,
        (mid, rid): (Mid, Option<Rid>),
        ssrc: &mut Option<Ssrc>,
        rtp: RtpWrite,
    ) -> u64 {
        let ssrc = match *ssrc {
            Some(known) => known,
            None => {
                self.poll = true;
                let found = rtc
                    .direct_api()
                    .stream_tx_by_mid(mid, rid)
                    .map(|s| s.ssrc());
                let Some(found) = found else {
                    return 0;
                };
                *ssrc.insert(found)
            }
        };
        if rtc.wants_datagram_buffer() {
            // The packet is protected straight into a buffer of the socket's pool.
            rtc.give_datagram_buffer(self.tx.buffer());
        }
        match rtc.send_rtp(ssrc, rtp.nackable(true), self.now) {
            SendRtp::Sent(t) => {
                push_transmit(self.tx, self.local, t);
                1
            }
            SendRtp::Queued => {
                self.poll = true;
                1
            }
            SendRtp::NoStream => 0,
        }
    }
}

/// Queue one of str0m's datagrams on the worker's socket, from the session's address. Its
/// buffer goes along (no copy) and joins the socket's pool once sent.
fn push_transmit(tx: &mut TxQueue, local: SocketAddr, t: str0m::net::Transmit) {
    tx.push(Transmit::new(t.destination, Some(local), t.contents.into()));
}

/// Whether a datagram is RTP (not STUN, DTLS or RTCP): RFC 7983 first byte 128..=191, and
/// not an RTCP packet type (200..=206 in the second byte).
/// SRTP authentication tag of the profiles str0m negotiates (AES-GCM: 16 bytes).
const SRTP_TAG: usize = 16;

fn is_rtp(data: &[u8]) -> bool {
    data.len() >= 12 && (128..=191).contains(&data[0]) && !(200..=206).contains(&data[1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_is_told_from_rtcp_stun_dtls() {
        let mut rtp = [0u8; 20];
        rtp[0] = 0x80;
        rtp[1] = 96;
        assert!(is_rtp(&rtp));
        rtp[1] = 0x80 | 96; // marker bit
        assert!(is_rtp(&rtp));
        rtp[1] = 201; // receiver report
        assert!(!is_rtp(&rtp));
        rtp[0] = 22; // DTLS handshake
        assert!(!is_rtp(&rtp));
        rtp[0] = 0; // STUN
        assert!(!is_rtp(&rtp));
    }
}
