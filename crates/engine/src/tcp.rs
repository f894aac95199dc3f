//! ICE over TCP for one shard (RFC 6544 passive candidates, RFC 4571 framing), on a companion
//! thread.
//!
//! The thread owns the shard's TCP listener (the UDP port's number) and its connections: it
//! accepts, reads each connection's length-prefixed frames and hands them to the shard over a
//! bounded channel (waking it through its [`Notifier`]); the shard hands back the frames it
//! sends over another bounded channel and wakes this thread through a [`mio::Waker`]. The
//! shard's UDP path (its engine, its loop) is untouched: the shard only drains one more
//! channel per turn. TCP is the fallback of clients whose networks drop UDP, so the copy and
//! the channel hop per frame cost little where it matters, and a stalled client can only fill
//! its own write buffer here, never block the shard thread.
//!
//! Bounds, each counted in the shard's `tcp_` counters: connections per shard and per client
//! IP (more are refused: accepted and closed at once); a frame that is empty or not STUN, DTLS,
//! RTP or RTCP (RFC 7983's first byte), or a first frame that is not STUN, closes its
//! connection; a connection with nothing received for the idle timeout is closed (half-open
//! ones included); one whose pending writes outgrow their bound (a slow reader) is closed. An
//! RFC 4571 frame's 16-bit length cannot exceed 64 KiB, so nothing larger is ever buffered.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use ringcast_core::ShardStats;
use ringcast_net::Notifier;
use slab::Slab;

/// Bounds of a shard's TCP connections.
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Most connections open on one shard.
    pub max_connections: usize,
    /// Most connections open from one client IP on one shard.
    pub max_per_ip: usize,
    /// A connection with nothing received this long is closed (ICE consent checks come every
    /// few seconds on a live session).
    pub idle_timeout: Duration,
    /// A connection whose unsent bytes outgrow this is closed (a slow reader).
    pub max_write_buffer: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_connections: 1000,
            max_per_ip: 16,
            idle_timeout: Duration::from_secs(30),
            max_write_buffer: 1 << 20,
        }
    }
}

/// A frame received on a connection, for the shard.
pub(crate) struct FrameIn {
    pub source: SocketAddr,
    pub destination: SocketAddr,
    pub contents: Vec<u8>,
}

/// The shard thread's side: frames in, frames out, and the counters the TCP thread keeps.
pub(crate) struct ShardSide {
    pub frames_in: Receiver<FrameIn>,
    frames_out: Sender<(SocketAddr, Vec<u8>)>,
    waker: Arc<Waker>,
    counts: Arc<Counts>,
    /// Frames were queued since the last wake.
    pending_wake: bool,
}

impl ShardSide {
    /// Queue a frame for the connection from `destination`; dropped (counted) when the queue
    /// is full.
    pub fn send(&mut self, destination: SocketAddr, contents: Vec<u8>) {
        match self.frames_out.try_send((destination, contents)) {
            Ok(()) => self.pending_wake = true,
            Err(_) => {
                self.counts.dropped_frames.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Wake the TCP thread if frames were queued since the last call.
    pub fn flush(&mut self) {
        if std::mem::take(&mut self.pending_wake) {
            let _ = self.waker.wake();
        }
    }

    /// Fill in the `tcp_` counters.
    pub fn fill(&self, stats: &mut ShardStats) {
        self.counts.fill(stats);
    }
}

/// The TCP thread of one shard, stopped by [`TcpThread::stop`], or told to stop when dropped
/// (a later shard failed to start).
pub(crate) struct TcpThread {
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

impl TcpThread {
    /// Stop the thread and wait for it (its connections close).
    pub fn stop(mut self) {
        self.tell_stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn tell_stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
    }
}

impl Drop for TcpThread {
    fn drop(&mut self) {
        self.tell_stop();
    }
}

/// Frames queued between the TCP thread and its shard, each way.
const QUEUE: usize = 4096;

/// The TCP thread looks for idle connections this often.
const SWEEP: Duration = Duration::from_millis(500);

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// Listen on `addr` (the shard's UDP address; its port number, TCP) and start the shard's TCP
/// thread. Returns the listener's address, the shard's side and the thread.
pub(crate) fn start(
    shard: usize,
    addr: SocketAddr,
    config: TcpConfig,
    notifier: Notifier,
) -> io::Result<(SocketAddr, ShardSide, TcpThread)> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let mut listener = TcpListener::from_std(std_listener);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let (in_tx, in_rx) = crossbeam_channel::bounded(QUEUE);
    let (out_tx, out_rx) = crossbeam_channel::bounded(QUEUE);
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut connections = Connections {
        poll,
        listener,
        config,
        conns: Slab::new(),
        by_remote: HashMap::new(),
        per_ip: HashMap::new(),
        to_shard: in_tx,
        notifier,
        from_shard: out_rx,
        counts: counts.clone(),
    };
    let thread = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name(format!("ringcast-tcp-{shard}"))
            .spawn(move || connections.run(&stop))?
    };
    let side = ShardSide {
        frames_in: in_rx,
        frames_out: out_tx,
        waker: waker.clone(),
        counts,
        pending_wake: false,
    };
    Ok((
        local,
        side,
        TcpThread {
            stop,
            waker,
            thread: Some(thread),
        },
    ))
}

/// Counters kept by the TCP thread, read by the shard thread for its stats.
#[derive(Default)]
struct Counts {
    connections: AtomicU64,
    accepted: AtomicU64,
    refused: AtomicU64,
    closed_malformed: AtomicU64,
    closed_idle: AtomicU64,
    closed_slow: AtomicU64,
    dropped_frames: AtomicU64,
}

impl Counts {
    fn fill(&self, s: &mut ShardStats) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        s.tcp_connections = load(&self.connections);
        s.tcp_accepted = load(&self.accepted);
        s.tcp_refused = load(&self.refused);
        s.tcp_closed_malformed = load(&self.closed_malformed);
        s.tcp_closed_idle = load(&self.closed_idle);
        s.tcp_closed_slow = load(&self.closed_slow);
        s.tcp_dropped_frames = load(&self.dropped_frames);
    }

    fn add(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

struct Conn {
    stream: TcpStream,
    remote: SocketAddr,
    local: SocketAddr,
    /// Received bytes not yet a whole frame.
    read: Vec<u8>,
    /// Frames not yet written.
    write: Vec<u8>,
    last_received: Instant,
    /// A frame was received (the first must be STUN).
    received: bool,
}

/// Why a connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Close {
    /// The client closed it, or it failed.
    Gone,
    Malformed,
    Idle,
    Slow,
}

struct Connections {
    poll: Poll,
    listener: TcpListener,
    config: TcpConfig,
    conns: Slab<Conn>,
    by_remote: HashMap<SocketAddr, usize>,
    per_ip: HashMap<IpAddr, usize>,
    to_shard: Sender<FrameIn>,
    notifier: Notifier,
    from_shard: Receiver<(SocketAddr, Vec<u8>)>,
    counts: Arc<Counts>,
}

impl Connections {
    fn run(&mut self, stop: &AtomicBool) {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + SWEEP;
        while !stop.load(Ordering::Relaxed) {
            let timeout = next_sweep.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!("TCP poll failed: {e}");
                return;
            }
            let mut received = false;
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(),
                    WAKER => {}
                    Token(key) => {
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            received |= self.read(key);
                        }
                        if event.is_writable() {
                            self.flush(key);
                        }
                    }
                }
            }
            if received {
                self.notifier.notify();
            }
            self.write_from_shard();
            let now = Instant::now();
            if now >= next_sweep {
                self.sweep(now);
                next_sweep = now + SWEEP;
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(key, Close::Gone);
        }
    }

    fn accept(&mut self) {
        loop {
            let (mut stream, remote) = match self.listener.accept() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // Out of descriptors, or a connection reset before it was taken: try later.
                Err(e) => {
                    tracing::debug!("TCP accept: {e}");
                    return;
                }
            };
            let from_ip = self.per_ip.get(&remote.ip()).copied().unwrap_or(0);
            if self.conns.len() >= self.config.max_connections || from_ip >= self.config.max_per_ip
            {
                Counts::add(&self.counts.refused);
                continue; // dropped: closed
            }
            let Ok(local) = stream.local_addr() else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            if self
                .poll
                .registry()
                .register(
                    &mut stream,
                    Token(key),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .is_err()
            {
                continue;
            }
            entry.insert(Conn {
                stream,
                remote,
                local,
                read: Vec::new(),
                write: Vec::new(),
                last_received: Instant::now(),
                received: false,
            });
            self.by_remote.insert(remote, key);
            *self.per_ip.entry(remote.ip()).or_default() += 1;
            Counts::add(&self.counts.accepted);
            self.counts.connections.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Read what a connection has and pass its whole frames on. True when a frame was passed.
    fn read(&mut self, key: usize) -> bool {
        let mut passed = false;
        let mut buf = [0u8; 16 * 1024];
        let closed = loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return passed;
            };
            match conn.stream.read(&mut buf) {
                Ok(0) => break Some(Close::Gone),
                Ok(n) => {
                    conn.read.extend_from_slice(&buf[..n]);
                    conn.last_received = Instant::now();
                    match self.pass_frames(key) {
                        Ok(any) => passed |= any,
                        Err(close) => break Some(close),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break None,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break Some(Close::Gone),
            }
        };
        if let Some(why) = closed {
            self.close(key, why);
        }
        passed
    }

    /// Hand a connection's whole frames to the shard; an empty frame, one that is not STUN,
    /// DTLS, RTP or RTCP, or a first one that is not STUN closes it.
    fn pass_frames(&mut self, key: usize) -> Result<bool, Close> {
        let conn = &mut self.conns[key];
        let mut at = 0;
        let mut passed = false;
        while conn.read.len() - at >= 2 {
            let len = usize::from(u16::from_be_bytes([conn.read[at], conn.read[at + 1]]));
            if conn.read.len() - at - 2 < len {
                break;
            }
            let frame = &conn.read[at + 2..at + 2 + len];
            let acceptable = match frame.first() {
                None => false,
                Some(_) if !conn.received => ringcast_core::stun::is_stun(frame),
                Some(b) => matches!(b, 0..=3 | 20..=63 | 128..=191),
            };
            if !acceptable {
                return Err(Close::Malformed);
            }
            conn.received = true;
            let frame = FrameIn {
                source: conn.remote,
                destination: conn.local,
                contents: frame.to_vec(),
            };
            match self.to_shard.try_send(frame) {
                Ok(()) => passed = true,
                Err(TrySendError::Full(_)) => Counts::add(&self.counts.dropped_frames),
                Err(TrySendError::Disconnected(_)) => return Err(Close::Gone),
            }
            at += 2 + len;
        }
        conn.read.drain(..at);
        Ok(passed)
    }

    /// Frames the shard sent: onto their connections' write buffers, and written.
    fn write_from_shard(&mut self) {
        while let Ok((destination, contents)) = self.from_shard.try_recv() {
            let Some(&key) = self.by_remote.get(&destination) else {
                // Its connection closed meanwhile.
                continue;
            };
            let Ok(len) = u16::try_from(contents.len()) else {
                continue;
            };
            let conn = &mut self.conns[key];
            if conn.write.len() + 2 + contents.len() > self.config.max_write_buffer {
                self.close(key, Close::Slow);
                continue;
            }
            conn.write.extend_from_slice(&len.to_be_bytes());
            conn.write.extend_from_slice(&contents);
            self.flush(key);
        }
    }

    /// Write what a connection has pending, as far as the socket takes it.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut written = 0;
        let failed = loop {
            if written == conn.write.len() {
                break false;
            }
            match conn.stream.write(&conn.write[written..]) {
                Ok(0) => break true,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        conn.write.drain(..written);
        if failed {
            self.close(key, Close::Gone);
        }
    }

    /// Close the connections with nothing received for the idle timeout.
    fn sweep(&mut self, now: Instant) {
        let idle: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| now.duration_since(c.last_received) >= self.config.idle_timeout)
            .map(|(k, _)| k)
            .collect();
        for key in idle {
            self.close(key, Close::Idle);
        }
    }

    fn close(&mut self, key: usize, why: Close) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.by_remote.remove(&conn.remote);
        if let Some(n) = self.per_ip.get_mut(&conn.remote.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&conn.remote.ip());
            }
        }
        self.counts.connections.fetch_sub(1, Ordering::Relaxed);
        match why {
            Close::Gone => {}
            Close::Malformed => Counts::add(&self.counts.closed_malformed),
            Close::Idle => Counts::add(&self.counts.closed_idle),
            Close::Slow => Counts::add(&self.counts.closed_slow),
        }
        tracing::debug!(remote = %conn.remote, ?why, "TCP connection closed");
    }
}
