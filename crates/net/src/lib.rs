//! Kernel UDP batch I/O for ringcast shards.
//!
//! One [`Engine`] owns one UDP socket and runs one shard's loop: it receives datagrams in
//! batches, hands each to the [`Driver`] (the shard), lets the driver do its per-turn work
//! (mailbox, timers, relays), then flushes everything the driver queued in a [`TxQueue`] in
//! batched sends, and sleeps until the socket is readable, the [`Notifier`] fires or the
//! driver's deadline passes.
//!
//! Backends, behind the same [`Engine`] trait: [`uring`] (io_uring: multishot receive into a
//! provided buffer ring, batched `SendMsg` submissions) and [`epoll`] (mio readiness +
//! `recvmmsg`/`sendmmsg`), the baseline and fallback. [`probe`] tells whether this kernel (and
//! seccomp policy) lets a backend run; [`bind`] builds one.
//!
//! Both send several equal-size datagrams to one destination as one `UDP_SEGMENT` (GSO) send
//! when the kernel allows it (see [`TxQueue`]), and can receive coalesced datagrams
//! (`UDP_GRO`), handing them to the driver one by one.
//!
//! This is the only crate of the workspace with `unsafe`; each block carries a `// SAFETY:`
//! comment.
#![allow(unsafe_code)]

use std::io;
use std::net::SocketAddr;
use std::time::Instant;

pub mod epoll;
mod notifier;
mod pin;
mod queue;
mod sys;
pub mod uring;

#[cfg(test)]
mod testing;

pub use notifier::Notifier;
pub use pin::pin_current_thread;
pub use queue::{MAX_GSO_BYTES, MAX_GSO_SEGMENTS, TURN_BYTES, Transmit, TxQueue};

/// Largest datagram handed to a driver; larger ones are counted in
/// [`EngineCounters::rx_truncated`] and dropped (WebRTC keeps datagrams under the path MTU).
pub const MAX_DATAGRAM: usize = 2048;

/// Bytes per receive buffer when coalesced receives (GRO) are on.
pub(crate) const GRO_BUFFER_SIZE: usize = 65_536;

/// Hand one received buffer to the driver: one datagram, or `segment_size`-byte datagrams
/// back to back when the kernel coalesced several (GRO). Counts what it hands over.
#[allow(clippy::too_many_arguments)]
pub(crate) fn deliver(
    driver: &mut dyn Driver,
    now: Instant,
    source: SocketAddr,
    destination: SocketAddr,
    data: &[u8],
    segment_size: Option<u16>,
    counters: &mut EngineCounters,
    tx: &mut TxQueue,
) {
    let size = match segment_size {
        Some(size) if usize::from(size) < data.len() => {
            counters.rx_gro_receives += 1;
            usize::from(size)
        }
        _ => data.len().max(1),
    };
    for datagram in data.chunks(size) {
        if datagram.len() > MAX_DATAGRAM {
            counters.rx_truncated += 1;
            continue;
        }
        counters.rx_datagrams += 1;
        counters.rx_bytes += datagram.len() as u64;
        driver.on_datagram(now, source, destination, datagram, tx);
    }
    if data.is_empty() {
        counters.rx_datagrams += 1;
        driver.on_datagram(now, source, destination, data, tx);
    }
}

/// Which backend an [`Engine`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineKind {
    /// mio readiness + `recvmmsg`/`sendmmsg`.
    Epoll,
    /// io_uring: multishot `RecvMsgMulti` into a provided buffer ring, batched `SendMsg`.
    Uring,
}

impl EngineKind {
    /// The name used in config, logs and `/api/stats`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Epoll => "epoll",
            EngineKind::Uring => "uring",
        }
    }

    /// The kind named `name` (`"epoll"`, `"uring"`), as [`EngineKind::name`] writes it.
    pub fn from_name(name: &str) -> Option<EngineKind> {
        match name {
            "epoll" => Some(EngineKind::Epoll),
            "uring" => Some(EngineKind::Uring),
            _ => None,
        }
    }
}

/// What an engine asks its driver to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Sleep until a datagram arrives, the notifier fires, or this deadline (None: no deadline).
    /// A coalescing uring engine (`EngineOptions::uring_coalesce_us`) may take up to its window
    /// longer to wake for a datagram or the notifier; its window ends before the deadline.
    Wait(Option<Instant>),
    /// Leave the run loop (after flushing queued transmits).
    Stop,
}

/// The shard side of the loop. Called only from the engine's thread.
pub trait Driver {
    /// One received datagram. `destination` is the local address it was sent to (from
    /// `IP_PKTINFO`/`IPV6_PKTINFO` when the socket is bound to a wildcard address, else the
    /// bound address). `data` is only valid for the duration of the call.
    fn on_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        tx: &mut TxQueue,
    );

    /// Called once per loop turn, after the received batch was handed over and whenever the
    /// notifier fired or a deadline passed: drain the mailbox, run timers, queue sends.
    fn on_turn(&mut self, now: Instant, tx: &mut TxQueue) -> Turn;

    /// The engine's counters, offered once per loop turn right before [`Driver::on_turn`]
    /// (for a driver that publishes them to other threads). Does nothing by default.
    fn on_counters(&mut self, counters: &EngineCounters) {
        let _ = counters;
    }
}

ringcast_counters::counters! {
    /// Counters an engine keeps (read by its own thread, reported through the driver).
    #[derive(Copy)]
    pub struct EngineCounters {
        /// Datagrams received.
        rx_datagrams: Counter("Datagrams received from the socket"),
        /// Bytes received.
        rx_bytes: Counter("Bytes received from the socket"),
        /// Datagrams sent.
        tx_datagrams: Counter("Datagrams sent on the socket"),
        /// Bytes sent.
        tx_bytes: Counter("Bytes sent on the socket"),
        /// Datagrams dropped because a send failed (other than would-block retried later).
        tx_errors: Counter("Datagrams dropped: the send failed"),
        /// Datagrams received truncated (larger than the receive buffer) and dropped.
        rx_truncated: Counter("Datagrams dropped: larger than a receive buffer"),
        /// Receive/send system calls made (`io_uring_enter` for the uring engine).
        syscalls: Counter("Receive/send system calls (io_uring_enter for uring)"),
        /// Segmented (GSO) sends of more than one datagram; their datagrams count in
        /// `tx_datagrams`.
        tx_gso_sends: Counter("Segmented (GSO) sends of several datagrams"),
        /// Coalesced (GRO) receives of more than one datagram; their datagrams count in
        /// `rx_datagrams`.
        rx_gro_receives: Counter("Coalesced (GRO) receives of several datagrams"),
        /// Times the receive side ran out of buffers (uring: the provided buffer ring ran dry,
        /// `ENOBUFS`) and had to re-arm; datagrams the kernel dropped meanwhile are lost, the
        /// engine goes on.
        rx_no_buffers: Counter("Times the receive buffers ran out (recovered)"),
        /// Datagrams dropped because the send queue already held its limit of bytes (the
        /// shard produces more than the socket takes: overload); see [`TxQueue::dropped`].
        tx_queue_full: Counter("Datagrams dropped: the send queue was full (overload)"),
    }
}

/// A UDP I/O backend running one shard's loop.
pub trait Engine: Send {
    /// Which backend this is.
    fn kind(&self) -> EngineKind;
    /// The address the socket is bound to.
    fn local_addr(&self) -> SocketAddr;
    /// Counters so far.
    fn counters(&self) -> EngineCounters;
    /// Run the loop until the driver returns [`Turn::Stop`] or a fatal I/O error.
    fn run(&mut self, driver: &mut dyn Driver) -> io::Result<()>;
}

/// Options shared by all backends.
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// Datagrams per `recvmmsg`/`sendmmsg` batch.
    pub batch: usize,
    /// Socket receive buffer size (`SO_RCVBUF`), bytes.
    pub recv_buffer: usize,
    /// Socket send buffer size (`SO_SNDBUF`), bytes.
    pub send_buffer: usize,
    /// Most datagrams received per loop turn before the driver's turn runs (bounds latency of
    /// mailbox and timers under load).
    pub max_rx_per_turn: usize,
    /// Send equal-size datagrams to one destination as one segmented send (`UDP_SEGMENT`)
    /// when the kernel allows it; if it refuses, the engine logs once and sends them one by
    /// one.
    pub gso: bool,
    /// Ask the kernel for coalesced receives (`UDP_GRO`): fewer, larger receives when peers
    /// send bursts of equal-size datagrams (a GSO sender on loopback, or NIC GRO). Receive
    /// buffers grow to 64 KiB each.
    pub gro: bool,
    /// uring: entries in the submission queue (the completion queue gets four times as many,
    /// and at least as many as `uring_buffers`, so multishot receive does not stop itself).
    pub uring_entries: u32,
    /// uring: buffers in the provided buffer ring for multishot receive (a power of two).
    pub uring_buffers: u16,
    /// uring: a kernel thread polls the submission queue (`IORING_SETUP_SQPOLL`).
    pub uring_sqpoll: bool,
    /// uring: zero-copy sends (`SendMsgZc`).
    pub uring_zero_copy: bool,
    /// uring: a wait gathers completions for this many microseconds before the engine wakes
    /// (ending before the driver's deadline); an engine whose wait began longer ago wakes at
    /// the first completion at once, and one that is behind, or whose last turn with sends
    /// sent 64 or more, does not wait for more. 0 (the
    /// default here; the server's default is 500): every wait ends at the first completion.
    /// At most `uring::MAX_COALESCE_US` (10 ms). Needs Linux 6.12; older kernels, and engines
    /// with `uring_sqpoll`, wake at the first completion (with a log line per engine).
    pub uring_coalesce_us: u32,
    /// epoll: 0 (the default) waits for the socket's readability, so every datagram that
    /// finds the engine asleep wakes it, and the sender pays for the wake-up. Otherwise the
    /// socket is not watched: the engine sleeps at most this many microseconds (or until its
    /// deadline or a notify) and then takes whatever arrived, so a datagram may wait that
    /// long. For a load generator on the same host as the server it measures: the server
    /// then does not pay for waking it, as it never does for a client on another machine.
    pub epoll_poll_rx_us: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            batch: 32,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            max_rx_per_turn: 256,
            gso: true,
            gro: false,
            uring_entries: 1024,
            uring_buffers: 1024,
            uring_sqpoll: false,
            uring_zero_copy: false,
            uring_coalesce_us: 0,
            epoll_poll_rx_us: 0,
        }
    }
}

/// Whether a backend can run here: `Err` says why not (no kernel support,
/// `kernel.io_uring_disabled`, a seccomp policy that denies the system calls, ...). Epoll
/// always can.
pub fn probe(kind: EngineKind) -> Result<(), String> {
    match kind {
        EngineKind::Epoll => Ok(()),
        EngineKind::Uring => uring::probe(),
    }
}

/// Bind a UDP socket at `addr` and build a `kind` engine around it, woken by `notifier`.
/// At `[::]` the socket is dual-stack: IPv4 peers reach it too, and the driver sees their
/// addresses (source and destination) as plain IPv4, never v4-mapped; it sends to either family.
pub fn bind(
    kind: EngineKind,
    addr: SocketAddr,
    notifier: &Notifier,
    options: &EngineOptions,
) -> io::Result<Box<dyn Engine>> {
    match kind {
        EngineKind::Epoll => bind_epoll(addr, notifier, options),
        EngineKind::Uring => Ok(Box::new(uring::UringEngine::bind(addr, notifier, options)?)),
    }
}

/// Bind a UDP socket at `addr` and build an epoll engine around it, woken by `notifier`.
pub fn bind_epoll(
    addr: SocketAddr,
    notifier: &Notifier,
    options: &EngineOptions,
) -> io::Result<Box<dyn Engine>> {
    Ok(Box::new(epoll::EpollEngine::bind(addr, notifier, options)?))
}
