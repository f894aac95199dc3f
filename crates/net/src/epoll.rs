//! The epoll backend: mio readiness plus `recvmmsg`/`sendmmsg` batches.
//!
//! One [`EpollEngine`] owns one nonblocking UDP socket and one `mio::Poll` in which the socket
//! and the [`Notifier`]'s eventfd are registered (edge-triggered). The run loop follows the
//! order the notifier's contract requires (see [`crate::Notifier`]):
//!
//! 1. arm the notifier, run [`Driver::on_turn`], flush the [`TxQueue`]; leave on [`Turn::Stop`];
//! 2. `epoll_wait` until the driver's deadline (`None`: block; past: don't sleep), or not at
//!    all when the socket may still hold datagrams from the previous turn;
//! 3. disarm the notifier and reset its eventfd if it fired;
//! 4. receive at most `max_rx_per_turn` datagrams with `recvmmsg` in batches of `batch`,
//!    calling [`Driver::on_datagram`] for each, then flush the queue again. Once the queue
//!    holds [`crate::TURN_BYTES`] the turn takes no more: the rest of a batch is held and
//!    handed over first next turn, which comes without waiting.
//!
//! **Polled receiving** (`EngineOptions::epoll_poll_rx_us`). The socket is then not in the
//! poll at all (only while a send waits for room, for writability): step 2 sleeps at most the
//! polling interval, and step 4 runs every turn. A datagram that arrives while the engine
//! sleeps then costs its sender no wake-up, which on one host is the sender's bill: a load
//! generator beside the server it measures would otherwise have the server pay for waking it.
//!
//! **Receiving.** Every buffer, address, control-message and header array is allocated once at
//! bind: `batch` slots of [`RECV_BUFFER_SIZE`] bytes each. A datagram larger than its slot
//! comes back with `MSG_TRUNC`; it is counted in [`EngineCounters::rx_truncated`] and dropped.
//! On a socket bound to a wildcard address (`0.0.0.0`, `::`) the kernel reports each
//! datagram's destination address (`IP_PKTINFO`/`IPV6_RECVPKTINFO`), which the driver gets as
//! `destination` with the socket's port; on a socket bound to a concrete address the
//! destination is the bound address. On an IPv6 socket, IPv4 peers (v4-mapped addresses)
//! are reported as plain IPv4 addresses, and IPv4 destinations are mapped back when sending.
//!
//! **Sending.** The queue is sent front to back with `sendmmsg`, `batch` datagrams per call,
//! straight from the transmits' own buffers (no copy). A transmit's `source`, when it is a
//! concrete address and the socket is bound to a wildcard address, goes along as an
//! `IP_PKTINFO`/`IPV6_PKTINFO` control message, so the reply leaves from the address the peer
//! used. When the socket buffer is full (`EAGAIN`) the rest stays queued, the socket is
//! registered for writability, and sending resumes when it is writable; nothing spins and
//! nothing is dropped. Any other error (`EMSGSIZE`, `EHOSTUNREACH`, `ECONNREFUSED`, a
//! destination of the wrong family, …) drops that one datagram, counts it in
//! [`EngineCounters::tx_errors`], and the rest goes on. Only errors that mean the socket itself
//! is broken (`EBADF`, `EFAULT`, `ENOTSOCK`) end [`Engine::run`].
//!
//! Transmits still queued when the driver stops (the socket buffer was full) stay in the
//! engine's queue and go out if `run` is called again.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::sys::{
    CONTROL_LEN, Control, bind_udp, enable_gro, gso_refused, gso_supported, is_fatal, option,
    read_control, read_sockaddr, set_buffer_size, set_option, socket_family_addr, write_pktinfo,
    write_segment_size, write_sockaddr, zeroed_sockaddr,
};
use crate::{
    Driver, Engine, EngineCounters, EngineKind, EngineOptions, GRO_BUFFER_SIZE, MAX_DATAGRAM,
    MAX_GSO_SEGMENTS, Notifier, Transmit, Turn, TxQueue, deliver,
};

/// Bytes per receive slot without GRO; larger datagrams are dropped as truncated.
pub const RECV_BUFFER_SIZE: usize = MAX_DATAGRAM;

/// Most datagrams per `recvmmsg`/`sendmmsg` call (the kernel's `UIO_MAXIOV`).
const MAX_BATCH: usize = 1024;

const SOCKET: Token = Token(0);
const NOTIFIER: Token = Token(1);

/// A UDP socket driven by mio readiness and batched `recvmmsg`/`sendmmsg`.
pub struct EpollEngine {
    socket: UdpSocket,
    local_addr: SocketAddr,
    /// Whether the socket is bound to `0.0.0.0` or `::` (pktinfo in and out).
    wildcard: bool,
    notifier: Notifier,
    poll: Poll,
    events: Events,
    rx: RecvBatch,
    sends: SendBatch,
    tx: TxQueue,
    batch: usize,
    max_rx_per_turn: usize,
    counters: EngineCounters,
    /// The socket may hold datagrams: the last receive stopped before the kernel ran dry.
    rx_ready: bool,
    /// Slots `rx_held.start..rx_held.end` of the last `recvmmsg` batch were received but not
    /// yet handed to the driver: the turn's output was full. They go first next turn.
    rx_held: std::ops::Range<usize>,
    /// The last send hit `EAGAIN`; wait for writability before sending again.
    tx_blocked: bool,
    /// The socket is registered for `WRITABLE` (as well as `READABLE` unless `poll_rx`).
    writable_interest: bool,
    /// `EngineOptions::epoll_poll_rx_us`: the socket is not registered for readability; a
    /// wait lasts at most this long, and every turn tries a receive.
    poll_rx: Option<Duration>,
    /// Segmented sends are on (asked for, and the kernel has not refused them).
    gso: bool,
}

impl std::fmt::Debug for EpollEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EpollEngine")
            .field("local_addr", &self.local_addr)
            .field("batch", &self.batch)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl EpollEngine {
    /// Bind a nonblocking UDP socket at `addr` and register it, with `notifier`'s eventfd, in a
    /// new mio poll. Socket buffer sizes are best effort (the kernel caps them at
    /// `net.core.rmem_max`/`wmem_max`).
    pub fn bind(
        addr: SocketAddr,
        notifier: &Notifier,
        options: &EngineOptions,
    ) -> io::Result<EpollEngine> {
        let socket = bind_udp(addr)?;
        socket.set_nonblocking(true)?;
        let fd = socket.as_raw_fd();
        set_buffer_size(fd, libc::SO_RCVBUF, options.recv_buffer);
        set_buffer_size(fd, libc::SO_SNDBUF, options.send_buffer);

        let local_addr = socket.local_addr()?;
        let wildcard = local_addr.ip().is_unspecified();
        if wildcard {
            match local_addr {
                SocketAddr::V4(_) => set_option(fd, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?,
                SocketAddr::V6(_) => set_option(fd, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)?,
            }
        }

        let gso = options.gso && gso_supported(fd);
        if options.gso && !gso {
            tracing::info!("UDP GSO is not available on this kernel: datagrams go one by one");
        }
        let gro = options.gro && enable_gro(fd).is_ok();
        let poll = Poll::new()?;
        let poll_rx = (options.epoll_poll_rx_us > 0)
            .then(|| Duration::from_micros(options.epoll_poll_rx_us.into()));
        if poll_rx.is_none() {
            poll.registry()
                .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)?;
        }
        poll.registry()
            .register(&mut SourceFd(&notifier.fd()), NOTIFIER, Interest::READABLE)?;

        let batch = options.batch.clamp(1, MAX_BATCH);
        tracing::debug!(
            local = %local_addr,
            batch,
            gso,
            gro,
            recv_buffer = option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).ok(),
            send_buffer = option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF).ok(),
            "epoll engine bound"
        );
        let mut tx = TxQueue::with_capacity(batch * 4);
        tx.set_max_segments(if gso { MAX_GSO_SEGMENTS } else { 1 });
        Ok(EpollEngine {
            socket,
            local_addr,
            wildcard,
            notifier: notifier.clone(),
            poll,
            events: Events::with_capacity(8),
            rx: RecvBatch::new(
                batch,
                wildcard || gro,
                if gro {
                    GRO_BUFFER_SIZE
                } else {
                    RECV_BUFFER_SIZE
                },
            ),
            sends: SendBatch::new(batch),
            tx,
            batch,
            max_rx_per_turn: options.max_rx_per_turn.max(1),
            counters: EngineCounters::default(),
            rx_ready: true,
            rx_held: 0..0,
            tx_blocked: false,
            writable_interest: false,
            poll_rx,
            gso,
        })
    }

    /// Receive up to `max_rx_per_turn` datagrams, handing each to the driver, until the
    /// queued output reaches [`crate::TURN_BYTES`]: what was received beyond that is held for
    /// the next turn.
    fn receive(&mut self, driver: &mut dyn Driver) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let mut received = self.deliver_held(driver);
        while received < self.max_rx_per_turn && self.rx_held.is_empty() && !self.tx.turn_is_full()
        {
            let want = (self.max_rx_per_turn - received).min(self.batch);
            self.rx.reset(want);
            // SAFETY: the first `want` headers were just reset and point at this batch's own
            // buffers, address and control slots, which live as long as `self.rx` and are not
            // otherwise borrowed during the call; `want` <= the number of headers.
            let result = unsafe {
                libc::recvmmsg(
                    fd,
                    self.rx.headers.as_mut_ptr(),
                    want as libc::c_uint,
                    0,
                    ptr::null_mut(),
                )
            };
            self.counters.syscalls += 1;
            if result < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.rx_ready = false;
                        return Ok(());
                    }
                    io::ErrorKind::Interrupted => continue,
                    _ if is_fatal(&error) || error.raw_os_error() == Some(libc::EINVAL) => {
                        return Err(error);
                    }
                    _ => {
                        // A pending socket error (e.g. from ICMP); reported once, then cleared.
                        tracing::debug!(%error, "recvmmsg failed");
                        return Ok(());
                    }
                }
            }
            let count = result as usize;
            self.rx_held = 0..count;
            received += self.deliver_held(driver);
            if count < want {
                // The kernel ran dry; the next datagram raises a new readiness edge.
                self.rx_ready = false;
                return Ok(());
            }
        }
        Ok(())
    }

    /// Hand the held slots of the last batch to the driver, in order, until none is left or
    /// the turn's output is full. Returns how many were handed over.
    fn deliver_held(&mut self, driver: &mut dyn Driver) -> usize {
        let port = self.local_addr.port();
        let now = Instant::now();
        let start = self.rx_held.start;
        while !self.rx_held.is_empty() && !self.tx.turn_is_full() {
            let slot = self.rx_held.start;
            self.rx_held.start += 1;
            let header = &self.rx.headers[slot];
            if header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                self.counters.rx_truncated += 1;
                continue;
            }
            let Some(source) = read_sockaddr(&self.rx.names[slot], header.msg_hdr.msg_namelen)
            else {
                tracing::trace!("datagram without a usable source address dropped");
                continue;
            };
            // SAFETY: the header's control pointer and length describe this slot's control
            // buffer as the kernel filled it (null and 0 without control space).
            let control = unsafe { read_control(&header.msg_hdr) };
            let destination = match control.destination {
                Some(ip) if self.wildcard => SocketAddr::new(ip, port),
                _ => self.local_addr,
            };
            let size = self.rx.slot_size;
            let len = (header.msg_len as usize).min(size);
            let data = &self.rx.buffers[slot * size..slot * size + len];
            deliver(
                driver,
                now,
                source,
                destination,
                data,
                control.segment_size,
                &mut self.counters,
                &mut self.tx,
            );
        }
        self.rx_held.start - start
    }

    /// Send what is queued until the queue is empty or the socket buffer is full.
    fn flush(&mut self) -> io::Result<()> {
        let fd = self.socket.as_raw_fd();
        let ipv6 = self.local_addr.is_ipv6();
        while !self.tx.is_empty() && !self.tx_blocked {
            let mut count = 0;
            while count < self.batch {
                let Some(transmit) = self.tx.get(count) else {
                    break;
                };
                if self
                    .sends
                    .prepare(count, transmit, ipv6, self.wildcard)
                    .is_some()
                {
                    count += 1;
                } else if count == 0 {
                    tracing::debug!(
                        destination = %transmit.destination,
                        local = %self.local_addr,
                        "destination of the wrong address family, datagram dropped"
                    );
                    self.counters.tx_errors += 1;
                    self.tx.consume(1);
                } else {
                    // Send what is prepared; the bad one comes first next time.
                    break;
                }
            }
            if count == 0 {
                continue;
            }
            self.sends.link(count);
            // SAFETY: the first `count` headers were just prepared and linked: they point at
            // this batch's address, iovec and control slots and at the contents of the first `count`
            // queued transmits, none of which is moved or freed before the call returns.
            let result = unsafe {
                libc::sendmmsg(
                    fd,
                    self.sends.headers.as_mut_ptr(),
                    count as libc::c_uint,
                    0,
                )
            };
            self.counters.syscalls += 1;
            if result < 0 {
                let error = io::Error::last_os_error();
                match error.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.tx_blocked = true;
                        self.set_writable_interest(true)?;
                    }
                    io::ErrorKind::Interrupted => {}
                    _ if is_fatal(&error) => return Err(error),
                    _ if self.gso
                        && gso_refused(&error)
                        && self.tx.get(0).is_some_and(|t| t.segment_size.is_some()) =>
                    {
                        tracing::warn!(
                            %error,
                            "the kernel refused a segmented (GSO) send: sending datagrams one by one from now on"
                        );
                        self.gso = false;
                        self.tx.unmerge();
                    }
                    _ => {
                        if let Some(transmit) = self.tx.get(0) {
                            tracing::debug!(
                                %error,
                                destination = %transmit.destination,
                                len = transmit.contents.len(),
                                "send failed, datagram dropped"
                            );
                        }
                        self.counters.tx_errors +=
                            self.tx.get(0).map_or(1, |t| t.segments()) as u64;
                        self.tx.consume(1);
                    }
                }
                continue;
            }
            let sent = (result as usize).min(count);
            if sent == 0 {
                // Not expected from the kernel; drop one so the loop always progresses.
                self.counters.tx_errors += 1;
                self.tx.consume(1);
                continue;
            }
            for transmit in self.tx.iter().take(sent) {
                let segments = transmit.segments() as u64;
                self.counters.tx_datagrams += segments;
                self.counters.tx_bytes += transmit.contents.len() as u64;
                self.counters.tx_gso_sends += u64::from(segments > 1);
            }
            self.tx.consume(sent);
        }
        if self.tx.is_empty() && self.writable_interest {
            self.set_writable_interest(false)?;
        }
        Ok(())
    }

    fn set_writable_interest(&mut self, writable: bool) -> io::Result<()> {
        if self.poll_rx.is_some() {
            // Registered only while a send waits for room.
            if writable == self.writable_interest {
                return Ok(());
            }
            let registry = self.poll.registry();
            let mut source = SourceFd(&self.socket.as_raw_fd());
            if writable {
                registry.register(&mut source, SOCKET, Interest::WRITABLE)?;
            } else {
                registry.deregister(&mut source)?;
            }
            self.writable_interest = writable;
            return Ok(());
        }
        let interest = if writable {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        self.poll.registry().reregister(
            &mut SourceFd(&self.socket.as_raw_fd()),
            SOCKET,
            interest,
        )?;
        self.writable_interest = writable;
        Ok(())
    }
}

impl Engine for EpollEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Epoll
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn counters(&self) -> EngineCounters {
        self.counters
    }

    fn run(&mut self, driver: &mut dyn Driver) -> io::Result<()> {
        loop {
            self.notifier.arm();
            self.counters.tx_queue_full = self.tx.dropped();
            driver.on_counters(&self.counters);
            let turn = driver.on_turn(Instant::now(), &mut self.tx);
            self.flush()?;
            let deadline = match turn {
                Turn::Stop => return Ok(()),
                Turn::Wait(deadline) => deadline,
            };
            // Datagrams to take wait for the queued output to leave: while it is full (the
            // socket refused more), sleep until it is writable rather than spin.
            let rx_waiting = self.rx_ready || !self.rx_held.is_empty();
            let timeout = if rx_waiting && !self.tx.turn_is_full() {
                Some(Duration::ZERO)
            } else {
                let until = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                match self.poll_rx {
                    Some(every) => Some(until.map_or(every, |u| u.min(every))),
                    None => until,
                }
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
            self.notifier.disarm();
            if self.poll_rx.is_some() {
                self.rx_ready = true;
            }

            let mut notified = false;
            for event in self.events.iter() {
                match event.token() {
                    SOCKET => {
                        if event.is_readable() || event.is_error() {
                            self.rx_ready = true;
                        }
                        if event.is_writable() {
                            self.tx_blocked = false;
                        }
                    }
                    NOTIFIER => notified = true,
                    _ => {}
                }
            }
            if notified {
                self.notifier.drain();
            }
            if self.rx_ready || !self.rx_held.is_empty() {
                self.receive(driver)?;
            }
            self.flush()?;
        }
    }
}

/// Receive slots: buffers, source addresses, control space and headers, allocated once. The
/// headers point into the other arrays (heap storage that never moves), set up once in `new`.
struct RecvBatch {
    buffers: Box<[u8]>,
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Control]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    /// Whether to hand the kernel control space (pktinfo on wildcard sockets, GRO).
    with_control: bool,
    /// Bytes per slot.
    slot_size: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into the heap arrays owned by
// this same value, so moving it to another thread moves everything they point at with it.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    fn new(batch: usize, with_control: bool, slot_size: usize) -> RecvBatch {
        let mut rx = RecvBatch {
            buffers: vec![0u8; batch * slot_size].into_boxed_slice(),
            names: vec![zeroed_sockaddr(); batch].into_boxed_slice(),
            controls: vec![Control::default(); batch].into_boxed_slice(),
            iovecs: vec![
                libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0,
                };
                batch
            ]
            .into_boxed_slice(),
            headers: (0..batch).map(|_| zeroed_mmsghdr()).collect(),
            with_control,
            slot_size,
        };
        // Each pointer is derived from its array's base after every write through the array,
        // so none is invalidated by a later borrow of the array.
        let buffers = rx.buffers.as_mut_ptr();
        for (slot, iovec) in rx.iovecs.iter_mut().enumerate() {
            *iovec = libc::iovec {
                iov_base: buffers.wrapping_add(slot * slot_size).cast(),
                iov_len: slot_size,
            };
        }
        let names = rx.names.as_mut_ptr();
        let iovecs = rx.iovecs.as_mut_ptr();
        let controls = rx.controls.as_mut_ptr();
        for (slot, entry) in rx.headers.iter_mut().enumerate() {
            let header = &mut entry.msg_hdr;
            header.msg_name = names.wrapping_add(slot).cast();
            header.msg_iov = iovecs.wrapping_add(slot);
            header.msg_iovlen = 1;
            if with_control {
                header.msg_control = controls.wrapping_add(slot).cast();
            }
        }
        rx.reset(batch);
        rx
    }

    /// Reset the lengths and flags the kernel overwrites, for the first `count` slots.
    fn reset(&mut self, count: usize) {
        let control_len = if self.with_control { CONTROL_LEN } else { 0 };
        for entry in &mut self.headers[..count] {
            entry.msg_len = 0;
            entry.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            entry.msg_hdr.msg_controllen = control_len as _;
            entry.msg_hdr.msg_flags = 0;
        }
    }
}

/// Send slots: destination addresses, control space, iovecs and headers, allocated once. The
/// iovecs point at the queued transmits' contents only for the duration of one `sendmmsg`.
struct SendBatch {
    names: Box<[libc::sockaddr_storage]>,
    controls: Box<[Control]>,
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point into heap arrays owned by this
// value, or at transmit contents only between `prepare` and the `sendmmsg` that follows it on
// the same thread; they are never read through outside that window.
unsafe impl Send for SendBatch {}

impl SendBatch {
    fn new(batch: usize) -> SendBatch {
        SendBatch {
            names: vec![zeroed_sockaddr(); batch].into_boxed_slice(),
            controls: vec![Control::default(); batch].into_boxed_slice(),
            iovecs: vec![
                libc::iovec {
                    iov_base: ptr::null_mut(),
                    iov_len: 0,
                };
                batch
            ]
            .into_boxed_slice(),
            headers: (0..batch).map(|_| zeroed_mmsghdr()).collect(),
        }
    }

    /// Fill slot `slot` for `transmit`; `None` when its destination cannot be reached from a
    /// socket of this family.
    fn prepare(
        &mut self,
        slot: usize,
        transmit: &Transmit,
        ipv6_socket: bool,
        wildcard: bool,
    ) -> Option<()> {
        let destination = socket_family_addr(transmit.destination, ipv6_socket)?;
        let name_len = write_sockaddr(destination, &mut self.names[slot]);
        self.iovecs[slot] = libc::iovec {
            iov_base: transmit.contents.as_ptr().cast_mut().cast(),
            iov_len: transmit.contents.len(),
        };
        let mut control_len = match transmit.source {
            Some(source) if wildcard => {
                write_pktinfo(&mut self.controls[slot], source.ip(), ipv6_socket)
            }
            _ => 0,
        };
        if let Some(size) = transmit.segment_size {
            control_len = write_segment_size(&mut self.controls[slot], control_len, size);
        }
        let header = &mut self.headers[slot].msg_hdr;
        header.msg_namelen = name_len;
        header.msg_controllen = control_len as _;
        Some(())
    }

    /// Point the first `count` prepared headers at their slots; call after the last
    /// `prepare`, right before `sendmmsg`, so no later write through the arrays invalidates
    /// the pointers.
    fn link(&mut self, count: usize) {
        let names = self.names.as_mut_ptr();
        let iovecs = self.iovecs.as_mut_ptr();
        let controls = self.controls.as_mut_ptr();
        for (slot, entry) in self.headers[..count].iter_mut().enumerate() {
            entry.msg_len = 0;
            let header = &mut entry.msg_hdr;
            header.msg_name = names.wrapping_add(slot).cast();
            header.msg_iov = iovecs.wrapping_add(slot);
            header.msg_iovlen = 1;
            header.msg_control = if header.msg_controllen == 0 {
                ptr::null_mut()
            } else {
                controls.wrapping_add(slot).cast()
            };
            header.msg_flags = 0;
        }
    }
}

fn zeroed_mmsghdr() -> libc::mmsghdr {
    // SAFETY: mmsghdr is integers and raw pointers; all zeroes (null pointers, zero lengths)
    // is a valid value.
    unsafe { std::mem::zeroed() }
}

#[cfg(test)]
mod tests {
    //! What only the epoll engine's internals show. The engine contract (echo, wake-ups,
    //! deadlines, truncation, pktinfo, send errors, GSO, GRO, IPv6, floods) is tested against
    //! every engine in `tests/engines.rs`.
    use super::*;

    fn payload(index: usize, size: usize) -> Vec<u8> {
        (0..size).map(|k| (index * 7 + k) as u8).collect()
    }

    #[test]
    fn blocked_sends_resume_when_writable() {
        // Loopback never fills a send buffer, so stand in for EAGAIN: mark the engine
        // blocked with WRITABLE interest, as flush does, and check that the writable event
        // sends what waited, in order, and drops the WRITABLE interest.
        let notifier = Notifier::new().unwrap();
        let mut engine = EpollEngine::bind(
            "127.0.0.1:0".parse().unwrap(),
            &notifier,
            &EngineOptions::default(),
        )
        .unwrap();
        let client = crate::testing::client();
        let destination = client.local_addr().unwrap();
        for i in 0..3 {
            engine
                .tx
                .push(Transmit::new(destination, None, payload(i, 10)));
        }
        engine.tx_blocked = true;
        engine.set_writable_interest(true).unwrap();
        engine.flush().unwrap();
        let queued: usize = engine.tx.iter().map(Transmit::segments).sum();
        assert_eq!(queued, 3, "nothing sent while blocked");
        engine.run(&mut crate::testing::OneWait::new()).unwrap();
        assert!(engine.tx.is_empty());
        assert!(!engine.tx_blocked && !engine.writable_interest);
        let mut buffer = [0u8; 64];
        for i in 0..3 {
            let (len, _) = client.recv_from(&mut buffer).expect("datagram within 2 s");
            assert_eq!(&buffer[..len], payload(i, 10).as_slice());
        }
        assert_eq!(engine.counters().tx_datagrams, 3);
    }
}
