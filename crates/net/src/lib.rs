//! Kernel UDP batch I/O for ringcast shards.
//!
//! One [`Engine`] owns one UDP socket and runs one shard's loop: it receives datagrams in
//! batches, hands each to the [`Driver`] (the shard), lets the driver do its per-turn work
//! (mailbox, timers, relays), then flushes everything the driver queued in a [`TxQueue`] in
//! batched sends, and sleeps until the socket is readable, the [`Notifier`] fires or the
//! driver's deadline passes.
//!
//! Backends: [`epoll`] (mio readiness + `recvmmsg`/`sendmmsg`), the baseline and fallback.
//! The io_uring backend implements the same [`Engine`] trait.
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

pub use notifier::Notifier;
pub use pin::pin_current_thread;
pub use queue::{Transmit, TxQueue};

/// Which backend an [`Engine`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineKind {
    /// mio readiness + `recvmmsg`/`sendmmsg`.
    Epoll,
}

impl EngineKind {
    /// The name used in config, logs and `/api/stats`.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Epoll => "epoll",
        }
    }
}

/// What an engine asks its driver to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Sleep until a datagram arrives, the notifier fires, or this deadline (None: no deadline).
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
}

/// Counters an engine keeps (read by its own thread, reported through the driver).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EngineCounters {
    /// Datagrams received.
    pub rx_datagrams: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Datagrams sent.
    pub tx_datagrams: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Datagrams dropped because a send failed (other than would-block retried later).
    pub tx_errors: u64,
    /// Datagrams received truncated (larger than the receive buffer) and dropped.
    pub rx_truncated: u64,
    /// Receive/send system calls made.
    pub syscalls: u64,
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
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            batch: 32,
            recv_buffer: 4 << 20,
            send_buffer: 4 << 20,
            max_rx_per_turn: 256,
        }
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
