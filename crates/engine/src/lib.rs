//! Shard threads: each runs one [`ringcast_net::Engine`] (its own UDP socket) around one
//! [`ringcast_core::Shard`], pinned to its core, fed by a bounded mailbox that the control
//! plane and the other shards write to.
//!
//! The control plane holds [`Shards`]: a [`ShardHandle`] per shard to send commands and await
//! replies, and a stream of [`ShardEvent`]s (sessions that ended on their own). Cross-shard
//! relays go straight from one shard's thread to another's mailbox, and the receiving shard is
//! woken once per drain of the sender however many it got; a full mailbox drops the message and
//! counts it, it never blocks a shard. On shutdown, [`Shards::farewell`] tells
//! every peer goodbye before [`Shards::stop`] ends the threads.
//!
//! With [`ShardsConfig::tcp`], each shard also listens on TCP at its UDP port's number, on a
//! companion thread (see the `tcp` module), for ICE over TCP.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use ringcast_core::{
    Command, CommandError, Input, Output, Relay, Reply, Shard, ShardConfig, ShardEvent, ShardId,
    Transport,
};
use ringcast_counters::AtomicCounters;
use ringcast_net::{Driver, Notifier, Transmit, Turn, TxQueue};
pub use ringcast_net::{EngineCounters, EngineKind, EngineOptions};
pub use tcp::TcpConfig;
use tokio::sync::{mpsc, oneshot};

mod tcp;

/// How to start the shards.
#[derive(Debug, Clone)]
pub struct ShardsConfig {
    /// One entry per shard: its socket address (port included).
    pub binds: Vec<SocketAddr>,
    /// Pin shard `i` to core `i % cores`.
    pub pin_threads: bool,
    /// Settings each shard starts from (its id is filled in).
    pub shard: ShardConfig,
    /// Which I/O engine runs the shards (see [`ringcast_net::probe`] to choose one).
    pub kind: EngineKind,
    /// Socket, batch, GSO/GRO and ring settings.
    pub engine: EngineOptions,
    /// Mailbox capacity of each shard (commands and relays).
    pub mailbox: usize,
    /// ICE over TCP: each shard listens on TCP at its UDP port's number, with these bounds
    /// (`None`: UDP only).
    pub tcp: Option<TcpConfig>,
}

/// Why a command did not get an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The shard's mailbox is full: it is overloaded.
    #[error("shard is busy")]
    Busy,
    /// The shard has stopped.
    #[error("shard is gone")]
    Gone,
    /// The shard refused the command.
    #[error(transparent)]
    Refused(#[from] CommandError),
}

enum Mail {
    Command(Box<Command>, oneshot::Sender<Result<Reply, CommandError>>),
    Relay(Relay),
    Stop,
}

/// The control plane's handle on one shard.
#[derive(Clone)]
pub struct ShardHandle {
    id: ShardId,
    local_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    mailbox: Sender<Mail>,
    notifier: Notifier,
    relay_drops: Arc<AtomicU64>,
    relay_wakes: Arc<AtomicU64>,
    counters: Arc<PublishedCounters>,
}

/// A shard's engine counters, stored by the shard thread once per loop turn (relaxed atomic
/// stores, no lock) and read by the control plane.
type PublishedCounters = AtomicCounters<EngineCounters>;

impl std::fmt::Debug for ShardHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardHandle")
            .field("id", &self.id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl ShardHandle {
    /// The shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The shard's UDP socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shard's TCP listener address (ICE over TCP), if it listens.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// Relay messages to this shard dropped because its mailbox was full.
    pub fn relay_drops(&self) -> u64 {
        self.relay_drops.load(Ordering::Relaxed)
    }

    /// Wake-ups other shards gave this shard for relay messages: one per drain of a sending
    /// shard that relayed here, however many messages that drain carried.
    pub fn relay_wakes(&self) -> u64 {
        self.relay_wakes.load(Ordering::Relaxed)
    }

    /// The shard's I/O engine counters as of its last loop turn.
    pub fn engine_counters(&self) -> EngineCounters {
        self.counters.load()
    }

    /// Send a command and wait for its answer. A full mailbox answers [`CallError::Busy`] at
    /// once.
    pub async fn call(&self, command: Command) -> Result<Reply, CallError> {
        self.call_patiently(command, Duration::ZERO).await
    }

    /// Send a command and wait for its answer; while the mailbox is full, try again every
    /// 10 ms for up to `patience` before answering [`CallError::Busy`].
    pub async fn call_patiently(
        &self,
        command: Command,
        patience: Duration,
    ) -> Result<Reply, CallError> {
        let (tx, rx) = oneshot::channel();
        self.post(
            Mail::Command(Box::new(command), tx),
            Instant::now() + patience,
        )
        .await?;
        match rx.await {
            Ok(r) => r.map_err(CallError::Refused),
            Err(_) => Err(CallError::Gone),
        }
    }

    /// Put `mail` in the mailbox and wake the shard; while the mailbox is full, try again
    /// every 10 ms until `give_up`.
    async fn post(&self, mut mail: Mail, give_up: Instant) -> Result<(), CallError> {
        loop {
            match self.mailbox.try_send(mail) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < give_up => {
                    mail = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(TrySendError::Full(_)) => return Err(CallError::Busy),
                Err(TrySendError::Disconnected(_)) => return Err(CallError::Gone),
            }
        }
        self.notifier.notify();
        Ok(())
    }
}

/// The running shards.
pub struct Shards {
    handles: Vec<ShardHandle>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    tcp_threads: Vec<tcp::TcpThread>,
    engine: EngineKind,
}

impl std::fmt::Debug for Shards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shards")
            .field("handles", &self.handles)
            .finish()
    }
}

/// How many kernel-chosen UDP ports a shard bound at port 0 tries before giving up on one
/// whose number is free on TCP too.
const TCP_PORT_ATTEMPTS: usize = 16;

impl Shards {
    /// Bind every shard's socket (errors surface here, before any thread starts), then start
    /// one thread per shard. Events from all shards arrive on the returned receiver.
    pub fn start(
        config: ShardsConfig,
    ) -> io::Result<(Shards, mpsc::UnboundedReceiver<(ShardId, ShardEvent)>)> {
        let n = config.binds.len();
        assert!((1..=64).contains(&n), "1 to 64 shards");
        let mut engines = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut mailboxes = Vec::with_capacity(n);
        let mut tcp_sides = Vec::with_capacity(n);
        let mut tcp_threads = Vec::new();
        for (i, bind) in config.binds.iter().enumerate() {
            let notifier = Notifier::new()?;
            let mut engine = bind_retrying(config.kind, *bind, &notifier, &config.engine)?;
            let (tx, rx) = crossbeam_channel::bounded(config.mailbox);
            let mut tcp_addr = None;
            let mut tcp_side = None;
            if let Some(tcp) = &config.tcp {
                let mut attempts = 0;
                let (addr, side, thread) = loop {
                    // The UDP socket's port number (chosen by the kernel for port 0), on TCP.
                    let at = SocketAddr::new(bind.ip(), engine.local_addr().port());
                    // On an error the threads started so far stop as `tcp_threads` is dropped.
                    match tcp::start(i, at, tcp.clone(), notifier.clone()) {
                        Ok(started) => break started,
                        // A kernel-chosen UDP port whose number TCP already uses: choose again.
                        Err(e)
                            if bind.port() == 0
                                && e.kind() == io::ErrorKind::AddrInUse
                                && attempts < TCP_PORT_ATTEMPTS =>
                        {
                            attempts += 1;
                            drop(engine);
                            engine = bind_retrying(config.kind, *bind, &notifier, &config.engine)?;
                        }
                        Err(e) => return Err(e),
                    }
                };
                tcp_addr = Some(addr);
                tcp_side = Some(side);
                tcp_threads.push(thread);
            }
            tcp_sides.push(tcp_side);
            handles.push(ShardHandle {
                id: ShardId(i as u16),
                local_addr: engine.local_addr(),
                tcp_addr,
                mailbox: tx,
                notifier,
                relay_drops: Arc::new(AtomicU64::new(0)),
                relay_wakes: Arc::new(AtomicU64::new(0)),
                counters: Arc::default(),
            });
            engines.push(engine);
            mailboxes.push(rx);
        }
        let kind = engines[0].kind();
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let mut threads = Vec::with_capacity(n);
        let shards = engines.into_iter().zip(mailboxes).zip(tcp_sides);
        for (i, ((mut engine, mailbox), tcp)) in shards.enumerate() {
            let mut shard_config = config.shard.clone();
            shard_config.id = ShardId(i as u16);
            let peers = handles.clone();
            let events = events_tx.clone();
            let pin = config.pin_threads.then_some(i % cores);
            let thread = std::thread::Builder::new()
                .name(format!("ringcast-shard-{i}"))
                .spawn(move || {
                    if let Some(core) = pin
                        && let Err(e) = ringcast_net::pin_current_thread(core)
                    {
                        tracing::warn!(shard = i, core, "could not pin shard thread: {e}");
                    }
                    let counters = peers[i].counters.clone();
                    let mut driver =
                        ShardDriver::new(shard_config, mailbox, peers, events, counters, tcp);
                    let result = engine.run(&mut driver);
                    if let Err(e) = &result {
                        tracing::error!(shard = i, "shard engine stopped: {e}");
                    }
                    result
                })?;
            threads.push(thread);
        }
        Ok((
            Shards {
                handles,
                threads,
                tcp_threads,
                engine: kind,
            },
            events_rx,
        ))
    }

    /// The shards' handles, indexed by shard id.
    pub fn handles(&self) -> &[ShardHandle] {
        &self.handles
    }

    /// Which I/O engine runs.
    pub fn engine(&self) -> EngineKind {
        self.engine
    }

    /// Tell every peer on every shard that its session is over ([`Command::Farewell`]: an RTCP
    /// BYE per stream it sends and a DTLS close_notify, so players notice at once instead of
    /// when ICE gives up), and wait until each shard has handed those datagrams to its socket,
    /// or until `deadline`. Returns how many sessions were told. Meant for shutdown, once no
    /// new session can come: after it, [`Shards::stop`].
    pub async fn farewell(&self, deadline: Instant) -> usize {
        let mut answers = Vec::with_capacity(self.handles.len());
        for h in &self.handles {
            let (tx, rx) = oneshot::channel();
            match h
                .post(Mail::Command(Box::new(Command::Farewell), tx), deadline)
                .await
            {
                Ok(()) => answers.push((h.id, rx)),
                Err(e) => tracing::warn!(shard = h.id.0, "farewell not delivered: {e}"),
            }
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        let mut told = 0;
        for (shard, rx) in answers {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(Ok(Reply::Farewell { sessions }))) => told += sessions,
                Ok(Ok(other)) => {
                    tracing::warn!(shard = shard.0, "farewell answered {other:?}");
                }
                Ok(Err(_)) => tracing::warn!(shard = shard.0, "shard gone before its farewell"),
                Err(_) => tracing::warn!(shard = shard.0, "farewell not sent by the deadline"),
            }
        }
        told
    }

    /// Stop every shard and wait for the threads.
    pub fn stop(self) {
        for h in &self.handles {
            // A full mailbox still gets Stop through a blocking send: the shard drains it.
            let _ = h.mailbox.send(Mail::Stop);
            h.notifier.notify();
        }
        for t in self.threads {
            let _ = t.join();
        }
        stop_tcp(self.tcp_threads);
    }
}

fn stop_tcp(threads: Vec<tcp::TcpThread>) {
    for t in threads {
        t.stop();
    }
}

/// How long a shard socket's port may stay busy at startup before that is an error.
const BIND_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Bind a shard's engine, retrying while the port is in use for up to [`BIND_PATIENCE`]: a
/// previous ringcast running io_uring releases its sockets only when the kernel has torn its
/// rings down, a moment after the process exited, so a quick restart would otherwise fail.
fn bind_retrying(
    kind: EngineKind,
    addr: SocketAddr,
    notifier: &Notifier,
    options: &EngineOptions,
) -> io::Result<Box<dyn ringcast_net::Engine>> {
    let give_up = Instant::now() + BIND_PATIENCE;
    let mut logged = false;
    loop {
        match ringcast_net::bind(kind, addr, notifier, options) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && Instant::now() < give_up => {
                if !logged {
                    tracing::info!(%addr, "shard port busy, retrying for up to 5 s (a previous process may still be closing)");
                    logged = true;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

/// Most mailbox messages handled per loop turn, so datagrams and timers are never starved.
const MAIL_PER_TURN: usize = 256;

/// While a farewell's datagrams wait in the transmit queue, the shard looks again this soon.
const FAREWELL_RECHECK: Duration = Duration::from_millis(1);

struct ShardDriver {
    shard: Shard,
    mailbox: Receiver<Mail>,
    peers: Vec<ShardHandle>,
    events: mpsc::UnboundedSender<(ShardId, ShardEvent)>,
    replies: HashMap<u64, oneshot::Sender<Result<Reply, CommandError>>>,
    /// Farewell answers, held until the transmit queue is empty at the start of a turn: the
    /// close datagrams queued before them were handed to the socket.
    farewells: Vec<(oneshot::Sender<Result<Reply, CommandError>>, Reply)>,
    next_token: u64,
    deadline: Option<Instant>,
    stopping: bool,
    counters: Arc<PublishedCounters>,
    /// The TCP thread's side, when the shard listens on TCP.
    tcp: Option<tcp::ShardSide>,
    /// Shards (bit `i`: shard `i`; at most 64) whose mailbox got relays in the current drain,
    /// woken once when it ends rather than once per message.
    relayed_to: u64,
    /// Datagrams fed since the last drain.
    undrained: u32,
}

impl ShardDriver {
    fn new(
        config: ShardConfig,
        mailbox: Receiver<Mail>,
        peers: Vec<ShardHandle>,
        events: mpsc::UnboundedSender<(ShardId, ShardEvent)>,
        counters: Arc<PublishedCounters>,
        tcp: Option<tcp::ShardSide>,
    ) -> Self {
        ShardDriver {
            shard: Shard::new(config),
            mailbox,
            peers,
            events,
            replies: HashMap::new(),
            farewells: Vec::new(),
            next_token: 0,
            deadline: None,
            stopping: false,
            counters,
            tcp,
            relayed_to: 0,
            undrained: 0,
        }
    }

    /// Hand the shard the buffers of datagrams already sent or copied into a GSO batch (at
    /// once, with GSO), for str0m to build its next RTP packets in.
    fn return_buffers(&mut self, tx: &mut TxQueue) {
        for _ in 0..self.shard.datagram_buffers_wanted() {
            let Some(buffer) = tx.spare_buffer() else {
                return;
            };
            self.shard.give_datagram_buffer(buffer);
        }
    }

    /// Drain the shard until its timeout, routing every output. Shards that got relays are
    /// woken once, as it ends (the only way out of it).
    fn drain(&mut self, tx: &mut TxQueue) {
        loop {
            match self.shard.poll_output() {
                Output::Timeout(at) => {
                    self.deadline = at;
                    self.undrained = 0;
                    self.wake_relayed();
                    if let Some(tcp) = &mut self.tcp {
                        tcp.flush();
                    }
                    return;
                }
                Output::Transmit(t) => self.transmit(t, tx),
                Output::Relay { to, message } => {
                    let Some(peer) = self.peers.get(usize::from(to.0)) else {
                        continue;
                    };
                    match peer.mailbox.try_send(Mail::Relay(message)) {
                        Ok(()) => self.relayed_to |= 1u64 << to.0,
                        Err(_) => {
                            peer.relay_drops.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Output::Reply { token, result } => {
                    let Some(reply) = self.replies.remove(&token) else {
                        continue;
                    };
                    match result {
                        Ok(Reply::Stats(mut stats)) => {
                            if let Some(tcp) = &self.tcp {
                                tcp.fill(&mut stats);
                            }
                            let _ = reply.send(Ok(Reply::Stats(stats)));
                        }
                        Ok(farewell @ Reply::Farewell { .. }) => {
                            self.farewells.push((reply, farewell));
                        }
                        result => {
                            let _ = reply.send(result);
                        }
                    }
                }
                Output::Event(e) => {
                    let _ = self.events.send((self.shard.id(), e));
                }
            }
        }
    }

    /// Hand one of the shard's datagrams to its socket (or TCP connection).
    fn transmit(&mut self, t: ringcast_core::Transmit, tx: &mut TxQueue) {
        match (t.transport, &mut self.tcp) {
            (Transport::Udp, _) => {
                tx.push(Transmit::new(t.destination, t.source, t.contents));
                self.return_buffers(tx);
            }
            (Transport::Tcp, Some(tcp)) => tcp.send(t.destination, t.contents),
            // Nothing comes in over TCP without a listener, so nothing goes out.
            (Transport::Tcp, None) => {}
        }
    }

    /// Wake each shard that got relays since the last call, once.
    fn wake_relayed(&mut self) {
        let mut mask = std::mem::take(&mut self.relayed_to);
        while mask != 0 {
            let peer = &self.peers[mask.trailing_zeros() as usize];
            mask &= mask - 1;
            peer.relay_wakes.fetch_add(1, Ordering::Relaxed);
            peer.notifier.notify();
        }
    }
}

impl Driver for ShardDriver {
    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        self.shard.handle_input(Input::Datagram {
            transport: Transport::Udp,
            now,
            source,
            destination,
            contents: data,
        });
        while let Some(t) = self.shard.take_transmit() {
            self.transmit(t, tx);
        }
        // Drained once per receive batch, by `on_turn`, which the engines call right after it:
        // a viewer gets all the batch's packets for it in one poll. A long batch, or one whose
        // packets go to many viewers, is drained on the way, so an overloaded shard's sends
        // don't wait for hundreds of datagrams and a burst's output stays bounded.
        self.undrained += 1;
        if self.shard.drain_due(self.undrained) {
            self.drain(tx);
        }
    }

    fn on_counters(&mut self, counters: &EngineCounters) {
        self.counters.store(counters);
    }

    fn on_turn(&mut self, now: Instant, tx: &mut TxQueue) -> Turn {
        if !self.farewells.is_empty() && tx.is_empty() {
            for (reply, farewell) in self.farewells.drain(..) {
                let _ = reply.send(Ok(farewell));
            }
        }
        // The datagrams `on_datagram` fed since the last turn.
        self.drain(tx);
        let mut handled = 0;
        while handled < MAIL_PER_TURN {
            let Ok(mail) = self.mailbox.try_recv() else {
                break;
            };
            handled += 1;
            match mail {
                Mail::Command(cmd, reply) => {
                    let token = self.next_token;
                    self.next_token += 1;
                    self.replies.insert(token, reply);
                    self.shard.handle_input(Input::Command(now, token, *cmd));
                }
                Mail::Relay(r) => self.shard.handle_input(Input::Relay(now, r)),
                Mail::Stop => self.stopping = true,
            }
            self.drain(tx);
        }
        let mut frames = 0;
        while frames < MAIL_PER_TURN {
            let Some(frame) = self.tcp.as_ref().and_then(|t| t.frames_in.try_recv().ok()) else {
                break;
            };
            frames += 1;
            self.shard.handle_input(Input::Datagram {
                transport: Transport::Tcp,
                now,
                source: frame.source,
                destination: frame.destination,
                contents: &frame.contents,
            });
            self.drain(tx);
        }
        if self.deadline.is_some_and(|d| d <= now) {
            self.shard.handle_input(Input::Timeout(now));
            self.drain(tx);
        }
        if self.stopping {
            return Turn::Stop;
        }
        if handled == MAIL_PER_TURN || frames == MAIL_PER_TURN {
            // More mail may wait: come straight back after the socket had its turn.
            return Turn::Wait(Some(now));
        }
        if !self.farewells.is_empty() {
            let soon = now + FAREWELL_RECHECK;
            return Turn::Wait(Some(self.deadline.map_or(soon, |d| d.min(soon))));
        }
        Turn::Wait(self.deadline)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// One epoll shard on a loopback port; its events are dropped.
    fn one_epoll_shard() -> Shards {
        Shards::start(ShardsConfig {
            binds: vec!["127.0.0.1:0".parse().unwrap()],
            pin_threads: false,
            shard: ShardConfig::default(),
            kind: EngineKind::Epoll,
            engine: EngineOptions::default(),
            mailbox: 16,
            tcp: None,
        })
        .unwrap()
        .0
    }

    #[test]
    fn engine_counters_reach_the_handle() {
        let shards = one_epoll_shard();
        let handle = shards.handles()[0].clone();

        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for len in [10, 20, 30] {
            client
                .send_to(&vec![0xff; len], handle.local_addr())
                .unwrap();
        }
        // The shard thread publishes once per loop turn, field by field: wait until a load
        // shows the whole turn after the datagrams.
        let arrived =
            |c: &EngineCounters| c.rx_datagrams == 3 && c.rx_bytes == 60 && c.syscalls > 0;
        let give_up = Instant::now() + Duration::from_secs(10);
        let mut counters = handle.engine_counters();
        while !arrived(&counters) && Instant::now() < give_up {
            std::thread::sleep(Duration::from_millis(5));
            counters = handle.engine_counters();
        }
        shards.stop();
        assert!(arrived(&counters), "3 datagrams, 60 bytes: {counters:?}");
    }

    #[test]
    fn a_farewell_reaches_a_connected_client_before_it_returns() {
        use std::net::UdpSocket;

        use ringcast_core::{IceCreds, Peer, PeerSetup, SessionId, StreamId};
        use str0m::media::{Direction, MediaKind};
        use str0m::net::{Protocol, Receive};
        use str0m::{Candidate, Event, Rtc, RtcConfig};

        let shards = one_epoll_shard();
        let handle = shards.handles()[0].clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();

        // A str0m publisher (as OBS would be) on its own loopback socket.
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let local = socket.local_addr().unwrap();
        let mut client = RtcConfig::new()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .build(Instant::now());
        client.add_local_candidate(Candidate::host(local, "udp").unwrap());
        let mut api = client.sdp_api();
        api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
        let (offer, pending) = api.apply().unwrap();
        let setup = PeerSetup {
            cert: ringcast_core::generate_certificate().unwrap(),
            candidates: vec![handle.local_addr()],
            tcp_candidates: Vec::new(),
            ice: IceCreds {
                ufrag: "h0s1".into(),
                pass: "farewellpasswordfarewell".into(),
            },
        };
        let (peer, answer, published) =
            Peer::publisher(&setup, &offer.to_sdp_string(), Instant::now()).unwrap();
        client
            .sdp_api()
            .accept_answer(
                pending,
                str0m::change::SdpAnswer::from_sdp_string(&answer).unwrap(),
            )
            .unwrap();
        runtime
            .block_on(handle.call(Command::AddPublisher {
                session: SessionId(1),
                stream: StreamId(1),
                peer: Box::new(peer),
                published: Box::new(published),
                relay_to: 0,
            }))
            .unwrap();

        /// Drive the client until `until` says so (on one of its events) or 10 s passed.
        fn drive(
            client: &mut Rtc,
            socket: &UdpSocket,
            local: SocketAddr,
            until: impl Fn(&Event) -> bool,
        ) -> bool {
            let give_up = Instant::now() + Duration::from_secs(10);
            let mut buf = [0u8; 2000];
            while Instant::now() < give_up {
                loop {
                    match client.poll_output() {
                        Ok(str0m::Output::Timeout(_)) | Err(_) => break,
                        Ok(str0m::Output::Transmit(t)) => {
                            let _ = socket.send_to(&t.contents, t.destination);
                        }
                        Ok(str0m::Output::Event(e)) if until(&e) => return true,
                        Ok(str0m::Output::Event(_)) => {}
                    }
                }
                let input = match socket.recv_from(&mut buf) {
                    Ok((n, source)) => str0m::Input::Receive(
                        Instant::now(),
                        Receive::new(Protocol::Udp, source, local, &buf[..n]).unwrap(),
                    ),
                    Err(_) => str0m::Input::Timeout(Instant::now()),
                };
                let _ = client.handle_input(input);
            }
            false
        }
        assert!(
            drive(&mut client, &socket, local, |e| matches!(
                e,
                Event::Connected
            )),
            "the client connects"
        );

        // The farewell returns once the close datagrams were handed to the socket: they wait
        // in the client's socket buffer now, without the client being driven meanwhile.
        let told = runtime.block_on(shards.farewell(Instant::now() + Duration::from_secs(5)));
        assert_eq!(told, 1);
        let mut buf = [0u8; 2000];
        let mut waiting = Vec::new();
        socket.set_nonblocking(true).unwrap();
        while let Ok((n, source)) = socket.recv_from(&mut buf) {
            waiting.push((buf[..n].to_vec(), source));
        }
        socket.set_nonblocking(false).unwrap();
        assert!(
            !waiting.is_empty(),
            "the close datagrams left before farewell returned"
        );
        for (datagram, source) in waiting {
            let receive = Receive::new(Protocol::Udp, source, local, &datagram).unwrap();
            let _ = client.handle_input(str0m::Input::Receive(Instant::now(), receive));
        }
        assert!(
            drive(&mut client, &socket, local, |e| matches!(e, Event::Closed)),
            "the client's str0m saw the DTLS close"
        );
        let stats = runtime.block_on(handle.call(Command::Stats)).unwrap();
        assert!(matches!(stats, Reply::Stats(s) if s.participants == 0));
        shards.stop();
    }
}
