//! The io_uring backend: one multishot `recvmsg` into a provided buffer ring, batched `sendmsg`
//! submissions, and the notifier's eventfd read in the same ring.
//!
//! One [`UringEngine`] owns one UDP socket and one ring. The run loop follows the order the
//! notifier's contract requires (see [`crate::Notifier`]):
//!
//! 1. arm the notifier, run [`Driver::on_turn`], turn queued transmits into `SendMsg` entries;
//!    on [`Turn::Stop`] send what is queued (waiting for those sends, bounded), cancel what is
//!    still in flight and return;
//! 2. one `io_uring_enter` submits everything and waits for a completion until the driver's
//!    deadline (a relative timeout in `EXT_ARG`), or does not wait at all when completions
//!    are already there (left over from a turn that reached `max_rx_per_turn`); with
//!    `uring_coalesce_us` it may first gather completions for that window (see below), never
//!    past the deadline;
//! 3. disarm the notifier;
//! 4. handle completions: received datagrams go to [`Driver::on_datagram`] (at most
//!    `max_rx_per_turn` per turn; the rest stays in the completion queue for the next turn;
//!    once the queued output reaches [`crate::TURN_BYTES`] the turn's remaining datagrams are
//!    parked and go first next turn),
//!    their buffers go back to the buffer ring at once; send completions free their slot and
//!    give the transmit's buffer back to the [`TxQueue`]; the eventfd read means the notifier
//!    fired (the read itself resets the eventfd) and is armed again.
//!
//! **Receiving.** A buffer ring of `uring_buffers` buffers is registered once at bind
//! (page-aligned memory, allocated once). Each buffer holds the `io_uring_recvmsg_out` header,
//! room for the source address, control space when the socket needs it (pktinfo on wildcard
//! sockets, `UDP_GRO`) and [`MAX_DATAGRAM`] bytes of payload (64 KiB with GRO). A
//! larger datagram comes back with `MSG_TRUNC` and is counted in
//! [`EngineCounters::rx_truncated`]. When the ring runs dry (the driver is slower than the
//! peers) the receive ends with `ENOBUFS`: it is counted in [`EngineCounters::rx_no_buffers`]
//! and re-armed once the datagrams in hand were handled; what waits in the socket is received
//! then. A multishot receive that ends for any other reason is re-armed as well. With GRO
//! each buffer is 64 KiB, so the ring takes `uring_buffers` × 64 KiB of address space (64 MiB
//! for 1024 buffers), resident as buffers get used.
//!
//! **Sending.** Every transmit popped from the queue goes into a send slot (a `msghdr`, its
//! iovec, the destination address and control space, preallocated: `uring_entries` slots)
//! and keeps its buffer there until the kernel reports the send done. Pktinfo (wildcard
//! sockets) and `UDP_SEGMENT` (merged transmits) are attached as the epoll engine does.
//! `EAGAIN`/`ENOBUFS` put the transmit back at the head of the line and sending pauses until
//! the socket polls writable; a refused segmented send turns GSO off once, loudly, and its
//! datagrams go again one by one; other errors drop the datagrams and count them in
//! [`EngineCounters::tx_errors`]; `EBADF`, `EFAULT`, `ENOTSOCK` end [`Engine::run`]. With
//! `uring_zero_copy` the sends are `SendMsgZc` and a slot is free only after the kernel's
//! notification that it no longer reads the buffer.
//!
//! **The ring.** `uring_entries` submission entries, a completion queue four times as large
//! and at least twice `uring_buffers`. The engine asks for `SINGLE_ISSUER | DEFER_TASKRUN |
//! TASKRUN_FLAG` (completions are produced only when the engine enters the kernel, on its own
//! thread, with no inter-processor interrupts), falls back to `COOP_TASKRUN | TASKRUN_FLAG`,
//! then to a plain ring when the kernel refuses those flags; with `uring_sqpoll` it asks for
//! `SQPOLL` instead. A single-issuer ring is created disabled and enabled by the first
//! [`Engine::run`], so it may be bound on one thread and run on another (a later `run` on yet
//! another thread builds a new ring). The socket is a registered file when the kernel allows.
//! [`UringEngine::ring_flags`] says what this kernel gave. [`EngineCounters::syscalls`]
//! counts `io_uring_enter` calls (with SQPOLL, also submissions the poller took without one).
//!
//! **Coalescing.** With `uring_coalesce_us` (and Linux 6.12's `min_wait_usec`), a wait
//! gathers completions for that window before the engine wakes, the way a NIC's interrupt
//! coalescing does (a turn whose own sends already completed 64 times ends it at once). An
//! engine whose wait began more than a window ago wakes at the first completion as before.
//! One that is behind (the kernel already holds completions for it, datagrams are parked, or
//! transmits wait for the socket or a send slot) does not wait for more, nor does one whose
//! last turn with sends sent 64 or more (a broadcast's fan-out), and the window ends before
//! the driver's deadline. So a completion waits at most one window, whatever it is: a
//! datagram, a send, or the notifier's wake-up (control commands, relays from other shards,
//! ICE-TCP frames). A lightly loaded shard otherwise
//! wakes for nearly every datagram, and each wake-up costs a context switch, a pass over the
//! ring and a poll of every peer the datagram reached; a group call's datagrams go to few
//! peers each, so those costs are a large part of what each forwarded packet costs there.
//! With `DEFER_TASKRUN` (the default) the thread sleeps through the window; on other rings the
//! kernel still wakes it to run each completion's task work, so only the turns are saved. Off
//! with `uring_sqpoll`.
//!
//! **Lifetimes.** The buffer ring, the send slots and the eventfd read target are memory the
//! kernel reads or writes while operations are in flight. `run` cancels every operation before
//! it returns and waits for their last completions (datagrams received meanwhile are kept for
//! the next `run`), so a stopped engine has nothing in flight and can be dropped on any
//! thread. If that did not happen (a panic, or cancellation timed out), dropping the engine
//! tries again and, failing that, leaks that memory rather than free what the kernel may
//! still touch.

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use io_uring::types::{self, BufRingEntry, CancelBuilder, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, opcode, squeue};

use crate::sys::{
    CONTROL_LEN, Control, bind_udp, enable_gro, gso_refused, gso_supported, is_fatal, option,
    read_control_bytes, read_sockaddr, set_buffer_size, set_option, socket_family_addr,
    write_pktinfo, write_segment_size, write_sockaddr, zeroed_sockaddr,
};
use crate::{
    Driver, Engine, EngineCounters, EngineKind, EngineOptions, GRO_BUFFER_SIZE, MAX_DATAGRAM,
    MAX_GSO_SEGMENTS, Notifier, Transmit, Turn, TxQueue, deliver,
};

/// Whether this kernel can hold a wait for more completions (`min_wait_usec`, Linux 6.12),
/// which `EngineOptions::uring_coalesce_us` needs; false where io_uring cannot run.
pub fn can_coalesce() -> bool {
    IoUring::new(2).is_ok_and(|ring| ring.params().is_feature_min_timeout())
}

/// Whether io_uring can run here with what this engine needs: `Err` says why not.
///
/// Creates a small ring (which is what seccomp filters and `kernel.io_uring_disabled`
/// refuse), asks the kernel which operations it knows, and registers a one-entry provided
/// buffer ring.
pub fn probe() -> Result<(), String> {
    let ring: IoUring = IoUring::builder()
        .build(8)
        .map_err(|error| explain_setup_error(&error, io_uring_disabled(), under_seccomp()))?;
    check_ring(&ring)?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|error| {
            format!(
                "kernel too old: io_uring has no IORING_REGISTER_PROBE ({error}; needs Linux 6.0)"
            )
        })?;
    for &(code, name, version) in REQUIRED_OPS {
        if !probe.is_supported(code) {
            return Err(format!(
                "kernel too old: io_uring lacks {name} (needs Linux {version})"
            ));
        }
    }
    let memory = PageMemory::zeroed(size_of::<BufRingEntry>())
        .map_err(|error| format!("cannot allocate a buffer ring: {error}"))?;
    // SAFETY: `memory` is page-aligned, holds one ring entry and outlives the registration,
    // which is removed (and the ring closed) below before it is freed.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(memory.as_ptr() as u64, 1, 0, 0)
    }
    .map_err(|error| {
        format!(
            "kernel too old: io_uring cannot register a provided buffer ring ({error}; needs Linux 5.19)"
        )
    })?;
    let _ = ring.submitter().unregister_buf_ring(0);
    drop(ring);
    drop(memory);
    Ok(())
}

/// Operations the engine uses, with their names and the Linux release that brought them.
const REQUIRED_OPS: &[(u8, &str, &str)] = &[
    (opcode::RecvMsg::CODE, "IORING_OP_RECVMSG", "5.3"),
    (opcode::SendMsg::CODE, "IORING_OP_SENDMSG", "5.3"),
    (opcode::Read::CODE, "IORING_OP_READ", "5.6"),
    (opcode::PollAdd::CODE, "IORING_OP_POLL_ADD", "5.1"),
    (opcode::AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL", "5.5"),
    // Multishot recvmsg has no opcode of its own; it came with 6.0, as did SEND_ZC.
    (
        opcode::SendZc::CODE,
        "multishot IORING_OP_RECVMSG (probed through IORING_OP_SEND_ZC)",
        "6.0",
    ),
];

/// What a ring must offer beyond its operations.
fn check_ring(ring: &IoUring) -> Result<(), String> {
    if !ring.params().is_feature_ext_arg() {
        return Err("kernel too old: io_uring lacks IORING_FEAT_EXT_ARG (needs Linux 5.11)".into());
    }
    Ok(())
}

/// Why `io_uring_setup` failed, in words an operator can act on.
fn explain_setup_error(error: &io::Error, disabled: Option<u32>, seccomp: bool) -> String {
    match error.raw_os_error() {
        Some(libc::ENOSYS) if seccomp => format!(
            "io_uring_setup denied (seccomp?): {error}, and this process runs under a seccomp \
             filter (Docker's default profile denies io_uring)"
        ),
        Some(libc::ENOSYS) => format!(
            "no io_uring in this kernel: io_uring_setup says {error} (built without \
             CONFIG_IO_URING?)"
        ),
        Some(libc::EPERM) if disabled == Some(2) => {
            format!("io_uring is disabled by the sysctl kernel.io_uring_disabled = 2 ({error})")
        }
        Some(libc::EPERM) if disabled == Some(1) => format!(
            "io_uring is restricted by the sysctl kernel.io_uring_disabled = 1 and this process \
             is not in kernel.io_uring_group ({error})"
        ),
        Some(libc::EPERM) => format!(
            "io_uring_setup denied (seccomp?): {error} although kernel.io_uring_disabled does \
             not forbid it (Docker's default seccomp profile denies io_uring: allow io_uring_setup, \
             io_uring_enter and io_uring_register, or use the epoll engine)"
        ),
        Some(libc::ENOMEM) => format!(
            "io_uring_setup: {error} (locked-memory limit too low? RLIMIT_MEMLOCK matters \
             before Linux 5.12)"
        ),
        _ => format!("io_uring_setup failed: {error}"),
    }
}

/// `kernel.io_uring_disabled`, where the kernel has it.
fn io_uring_disabled() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Whether this thread runs under a seccomp filter (filters are per thread).
fn under_seccomp() -> bool {
    std::fs::read_to_string("/proc/thread-self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Seccomp:") && line.trim_end().ends_with('2'))
    })
}

/// Most `uring_entries` (the kernel's own limit is 32768).
const MAX_ENTRIES: u32 = 32_768;

/// Most buffers in the buffer ring (the kernel's limit for a provided buffer ring).
const MAX_BUFFERS: u16 = 32_768;

/// The provided buffer group the multishot receive takes buffers from.
const BUFFER_GROUP: u16 = 0;

/// Bytes of `struct io_uring_recvmsg_out` (four `u32`) at the start of each receive buffer.
const RECVMSG_OUT_LEN: usize = 16;

/// Room for the source address in each receive buffer: a `sockaddr_in6` (28 bytes), rounded
/// up so the control messages that follow stay 8-byte aligned.
const NAME_LEN: usize = 32;

/// How long `Turn::Stop` waits for queued sends to complete, and cancellation for the
/// operations it cancels.
const STOP_TIMEOUT: Duration = Duration::from_secs(1);

/// Completions that end a coalescing wait before its window. In practice only those already
/// there when the wait starts count: a turn's own sends, completed at submission, so a turn
/// that fanned out to many peers does not wait. Datagrams that arrive during the window do
/// not end it early: with `DEFER_TASKRUN` the kernel counts pending task work, and the
/// multishot receive is one item however many datagrams it holds.
const COALESCED_COMPLETIONS: usize = 64;

/// How long before the driver's deadline a coalescing window ends at the latest: the kernel
/// starts the window after it has taken the call's submissions (a few hundred sends at most).
const DEADLINE_MARGIN: Duration = Duration::from_micros(200);

/// The shortest window worth a coalescing wait; a deadline closer than this plus the margin
/// gets a plain wait.
const MIN_WINDOW: Duration = Duration::from_micros(50);

/// The longest coalescing window an engine takes (a larger `uring_coalesce_us` is cut to it).
pub const MAX_COALESCE_US: u32 = 10_000;

/// How long a coalescing wait with no deadline sleeps at most (the kernel needs a timeout to
/// fall back to after the window; without one it would wake at the window's end).
const IDLE_WAIT: Duration = Duration::from_secs(1);

/// `user_data` tags: the top byte says which operation completed; send slots keep their
/// index in the low bits.
const TAG_MASK: u64 = 0xff << 56;
const RECEIVE: u64 = 1 << 56;
const WAKE: u64 = 2 << 56;
const WRITABLE: u64 = 3 << 56;
const CANCEL: u64 = 4 << 56;
const SEND: u64 = 5 << 56;

/// A UDP socket driven by io_uring.
pub struct UringEngine {
    // Declared first so it is dropped first: the ring is closed before the memory it may
    // reference is freed (see `Drop`, which makes sure nothing is in flight by then).
    ring: IoUring,
    /// Memory the kernel reads or writes while operations are in flight; `None` once leaked.
    shared: Option<Box<Shared>>,
    socket: UdpSocket,
    local_addr: SocketAddr,
    /// Whether the socket is bound to `0.0.0.0` or `::` (pktinfo in and out).
    wildcard: bool,
    notifier: Notifier,
    tx: TxQueue,
    counters: EngineCounters,
    max_rx_per_turn: usize,
    /// The coalescing window (`uring_coalesce_us`), where the kernel can wait that way;
    /// `None`: every wait ends at the first completion.
    coalesce: Option<Duration>,
    /// Sends submitted by the last turn that submitted any.
    last_fan_out: usize,
    /// Segmented sends are on (asked for, and the kernel has not refused them).
    gso: bool,
    zero_copy: bool,
    setup: RingSetup,
    /// Whether the socket is registered file 0 of the ring.
    fixed_file: bool,
    /// Local tail of the buffer ring (published to the kernel after each completion batch).
    buffer_tail: u16,
    /// Send slots not in flight.
    free_slots: Vec<u32>,
    /// Transmits to send before the queue's: retries after `EAGAIN`, datagrams of a refused
    /// segmented send, sends cancelled by a stop.
    pending: VecDeque<Transmit>,
    /// Operations whose last completion has not been seen.
    in_flight: usize,
    receive_armed: bool,
    wake_armed: bool,
    /// How the eventfd is watched: a read (which also resets it), or a poll plus `drain` when
    /// this kernel completes reads of a nonblocking eventfd with `EAGAIN`.
    wake_by_poll: bool,
    writable_armed: bool,
    /// A send hit `EAGAIN`/`ENOBUFS`: nothing more goes out until the socket polls writable.
    tx_blocked: bool,
    /// Receive completions taken from the queue while stopping, for the next `run`.
    parked: VecDeque<cqueue::Entry>,
    /// Scratch: completions taken from the queue in one turn.
    completions: Vec<cqueue::Entry>,
    /// The thread that enabled the ring (single-issuer rings only accept that one).
    issuer: Option<ThreadId>,
}

impl std::fmt::Debug for UringEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringEngine")
            .field("local_addr", &self.local_addr)
            .field("ring", &self.setup.name)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

/// How the ring was (and is again, on a rebuild) set up.
#[derive(Debug, Clone)]
struct RingSetup {
    /// The setup flags this kernel accepted, in words.
    name: &'static str,
    entries: u32,
    cq_entries: u32,
    sqpoll: bool,
    /// Single-issuer: created disabled, enabled by the thread that runs it.
    single_issuer: bool,
    /// Not yet enabled (single-issuer rings between bind and the first run).
    disabled: bool,
}

/// Memory the kernel reads or writes while operations are in flight, allocated once.
struct Shared {
    /// The provided buffer ring's entries (page-aligned, as the kernel requires).
    ring_entries: PageMemory,
    /// `buffer_count` receive buffers of `buffer_size` bytes, back to back.
    buffers: PageMemory,
    buffer_count: u16,
    buffer_size: usize,
    /// The multishot receive's `msghdr`: only its name and control lengths matter.
    receive_header: Box<UnsafeCell<libc::msghdr>>,
    /// Where the eventfd read puts the counter.
    wake_value: Box<UnsafeCell<u64>>,
    slots: Box<[UnsafeCell<SendSlot>]>,
}

// SAFETY: the raw pointers inside (in `PageMemory`, the msghdr and the send slots) point only
// into memory owned by this same value or by the transmits its slots own, so moving it to
// another thread moves everything they point at with it; the kernel's accesses do not depend
// on which thread owns it.
unsafe impl Send for Shared {}

/// One `sendmsg` in flight: its header, iovec, destination and control space, and the
/// transmit whose buffer the kernel reads.
struct SendSlot {
    header: libc::msghdr,
    iovec: libc::iovec,
    name: libc::sockaddr_storage,
    control: Control,
    transmit: Option<Transmit>,
    /// What to do with the transmit once the kernel has let go of it (zero-copy sends learn
    /// the outcome before the buffer is free).
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Sent or dropped: give the buffer back to the queue.
    Done,
    /// Send it again later (`EAGAIN`, cancelled).
    Retry,
    /// Send its datagrams again one by one (GSO refused).
    Split,
}

impl UringEngine {
    /// Bind a UDP socket at `addr` and set up a ring around it, with `notifier`'s eventfd
    /// read in the same ring. Socket buffer sizes are best effort, as for the epoll engine.
    pub fn bind(
        addr: SocketAddr,
        notifier: &Notifier,
        options: &EngineOptions,
    ) -> io::Result<UringEngine> {
        let socket = bind_udp(addr)?;
        // io_uring's own sends ignore it; kept so the socket behaves like the epoll engine's.
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

        let entries = options
            .uring_entries
            .clamp(8, MAX_ENTRIES)
            .next_power_of_two();
        let buffer_count = options
            .uring_buffers
            .clamp(1, MAX_BUFFERS)
            .next_power_of_two();
        if buffer_count != options.uring_buffers {
            tracing::debug!(
                asked = options.uring_buffers,
                using = buffer_count,
                "uring_buffers is not a power of two in 1..=32768"
            );
        }
        let cq_entries = (entries * 4).max(u32::from(buffer_count) * 2);
        let (ring, setup) = build_ring(entries, cq_entries, options.uring_sqpoll)?;
        check_ring(&ring).map_err(io::Error::other)?;
        let coalesce = match options.uring_coalesce_us.min(MAX_COALESCE_US) {
            0 => None,
            _ if setup.sqpoll => {
                // On kernels without "io_uring: fix min_wait wakeups for SQPOLL" (December
                // 2025) a completion after an empty window does not wake an SQPOLL ring's
                // waiter: an idle shard would sleep until its deadline.
                tracing::info!("uring_coalesce_us is off with uring_sqpoll");
                None
            }
            _ if !ring.params().is_feature_min_timeout() => {
                tracing::info!(
                    "uring_coalesce_us: this kernel cannot hold a wait for more completions \
                     (needs Linux 6.12): the shard wakes at each first completion"
                );
                None
            }
            window => Some(Duration::from_micros(u64::from(window))),
        };
        if options.uring_zero_copy {
            let mut probe = Probe::new();
            ring.submitter().register_probe(&mut probe)?;
            if !probe.is_supported(opcode::SendMsgZc::CODE) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "uring_zero_copy: this kernel lacks IORING_OP_SENDMSG_ZC (needs Linux 6.1)",
                ));
            }
        }

        let control_len = if wildcard || gro { CONTROL_LEN } else { 0 };
        let payload = if gro { GRO_BUFFER_SIZE } else { MAX_DATAGRAM };
        let buffer_size = RECVMSG_OUT_LEN + NAME_LEN + control_len + payload;
        let slot_count = entries as usize;
        let shared = Box::new(Shared {
            ring_entries: PageMemory::zeroed(
                usize::from(buffer_count) * size_of::<BufRingEntry>(),
            )?,
            buffers: PageMemory::zeroed(usize::from(buffer_count) * buffer_size)?,
            buffer_count,
            buffer_size,
            receive_header: Box::new(UnsafeCell::new(zeroed_msghdr())),
            wake_value: Box::new(UnsafeCell::new(0)),
            slots: (0..slot_count)
                .map(|_| UnsafeCell::new(SendSlot::new()))
                .collect(),
        });
        // SAFETY: the header is ours alone until the receive is armed in `run`.
        let header = unsafe { &mut *shared.receive_header.get() };
        header.msg_namelen = NAME_LEN as libc::socklen_t;
        header.msg_controllen = control_len as _;

        let mut tx = TxQueue::with_capacity(slot_count);
        tx.set_max_segments(if gso { MAX_GSO_SEGMENTS } else { 1 });
        let mut engine = UringEngine {
            ring,
            shared: Some(shared),
            socket,
            local_addr,
            wildcard,
            notifier: notifier.clone(),
            tx,
            counters: EngineCounters::default(),
            max_rx_per_turn: options.max_rx_per_turn.max(1),
            coalesce,
            last_fan_out: 0,
            gso,
            zero_copy: options.uring_zero_copy,
            setup,
            fixed_file: false,
            buffer_tail: 0,
            free_slots: (0..slot_count as u32).rev().collect(),
            pending: VecDeque::with_capacity(slot_count),
            in_flight: 0,
            receive_armed: false,
            wake_armed: false,
            wake_by_poll: false,
            writable_armed: false,
            tx_blocked: false,
            parked: VecDeque::with_capacity(usize::from(buffer_count)),
            completions: Vec::with_capacity(cq_entries as usize),
            issuer: None,
        };
        engine.register()?;
        tracing::debug!(
            local = %local_addr,
            ring = engine.setup.name,
            entries,
            cq_entries,
            buffers = buffer_count,
            buffer_size,
            fixed_file = engine.fixed_file,
            gso,
            gro,
            zero_copy = engine.zero_copy,
            recv_buffer = option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF).ok(),
            send_buffer = option(fd, libc::SOL_SOCKET, libc::SO_SNDBUF).ok(),
            "uring engine bound"
        );
        Ok(engine)
    }

    /// The setup flags this kernel accepted for the ring, e.g.
    /// `"SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG"`, with `+FIXED_FILE` when the socket is a
    /// registered file.
    pub fn ring_flags(&self) -> String {
        let mut flags = self.setup.name.to_string();
        if self.fixed_file {
            flags.push_str("+FIXED_FILE");
        }
        flags
    }

    /// Register the socket (best effort) and the buffer ring, filled with every buffer not
    /// held by a parked completion.
    fn register(&mut self) -> io::Result<()> {
        let submitter = self.ring.submitter();
        self.fixed_file = match submitter.register_files(&[self.socket.as_raw_fd()]) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, "socket not registered with the ring: plain fd");
                false
            }
        };
        let shared = self.shared.as_ref().expect("memory present until drop");
        // SAFETY: the entries are page-aligned memory for `buffer_count` entries, owned by
        // `shared`, which the engine keeps until the ring is closed (see `Drop`).
        unsafe {
            submitter.register_buf_ring_with_flags(
                shared.ring_entries.as_ptr() as u64,
                shared.buffer_count,
                BUFFER_GROUP,
                0,
            )
        }?;
        self.buffer_tail = 0;
        let mut held = vec![false; usize::from(shared.buffer_count)];
        for entry in &self.parked {
            if let Some(id) = cqueue::buffer_select(entry.flags()) {
                held[usize::from(id)] = true;
            }
        }
        for (id, held) in held.into_iter().enumerate() {
            if !held {
                self.give_back(id as u16);
            }
        }
        self.publish_buffers();
        Ok(())
    }

    /// Put buffer `id` back in the ring (visible to the kernel after `publish_buffers`).
    fn give_back(&mut self, id: u16) {
        let shared = self.shared.as_ref().expect("memory present until drop");
        let mask = shared.buffer_count - 1;
        let entries = shared.ring_entries.as_ptr().cast::<BufRingEntry>();
        let index = usize::from(self.buffer_tail & mask);
        // SAFETY: `index` < buffer_count, the number of entries the memory holds; the entry at
        // the tail is not one the kernel reads (it reads only entries between its head and the
        // published tail), and the tail field it shares with entry 0 is left alone by the
        // setters. The buffer address is inside `buffers`.
        unsafe {
            let entry = &mut *entries.add(index);
            entry.set_addr(
                shared
                    .buffers
                    .as_ptr()
                    .add(usize::from(id) * shared.buffer_size) as u64,
            );
            entry.set_len(shared.buffer_size as u32);
            entry.set_bid(id);
        }
        self.buffer_tail = self.buffer_tail.wrapping_add(1);
    }

    /// Make the buffers given back so far visible to the kernel.
    fn publish_buffers(&mut self) {
        let shared = self.shared.as_ref().expect("memory present until drop");
        let entries = shared.ring_entries.as_ptr().cast::<BufRingEntry>();
        // SAFETY: the tail is a u16 inside the first entry, 2-byte aligned, in memory that
        // lives as long as `shared`; the kernel only reads it, so an atomic store (release:
        // the entries written before become visible first) is the one write to it.
        unsafe {
            let tail = BufRingEntry::tail(entries).cast_mut();
            AtomicU16::from_ptr(tail).store(self.buffer_tail, Ordering::Release);
        }
    }

    /// Before a run: enable a disabled single-issuer ring on this thread, or build a new ring
    /// if another thread enabled it.
    fn start(&mut self) -> io::Result<()> {
        let me = thread::current().id();
        if self.setup.single_issuer && self.issuer.is_some_and(|issuer| issuer != me) {
            if self.in_flight > 0 {
                return Err(io::Error::other(
                    "uring engine: operations of an earlier run are still in flight on another thread",
                ));
            }
            let (ring, setup) =
                build_ring(self.setup.entries, self.setup.cq_entries, self.setup.sqpoll)?;
            // The old ring has nothing in flight: closing it releases its registrations.
            self.ring = ring;
            self.setup = setup;
            self.register()?;
            self.receive_armed = false;
            self.wake_armed = false;
            self.writable_armed = false;
        }
        if self.setup.disabled {
            self.ring.submitter().register_enable_rings()?;
            self.setup.disabled = false;
        }
        self.issuer = Some(me);
        Ok(())
    }

    /// The loop proper; `run` cancels what is in flight after it.
    fn turns(&mut self, driver: &mut dyn Driver) -> io::Result<()> {
        loop {
            self.notifier.arm();
            self.counters.tx_queue_full = self.tx.dropped();
            driver.on_counters(&self.counters);
            let deadline = match driver.on_turn(Instant::now(), &mut self.tx) {
                Turn::Stop => return self.flush_before_stop(),
                Turn::Wait(deadline) => deadline,
            };
            self.arm()?;
            self.queue_sends()?;
            self.wait(deadline)?;
            self.notifier.disarm();
            self.complete(Some(driver))?;
        }
    }

    /// Arm the multishot receive and the eventfd watch if they are not.
    fn arm(&mut self) -> io::Result<()> {
        if !self.receive_armed {
            let header = self.shared_ref().receive_header.get().cast_const();
            let entry = match self.fixed_file {
                true => opcode::RecvMsgMulti::new(types::Fixed(0), header, BUFFER_GROUP).build(),
                false => opcode::RecvMsgMulti::new(self.socket_fd(), header, BUFFER_GROUP).build(),
            };
            // SAFETY: the header and the buffer ring live in `shared` until the ring is closed
            // (see `Drop`); the kernel reads the header and fills buffers it took from the ring.
            unsafe { self.push(entry.user_data(RECEIVE)) }?;
            self.receive_armed = true;
            self.in_flight += 1;
        }
        if !self.wake_armed {
            let fd = types::Fd(self.notifier.fd());
            let entry = if self.wake_by_poll {
                opcode::PollAdd::new(fd, libc::POLLIN as u32).build()
            } else {
                let value = self.shared_ref().wake_value.get().cast::<u8>();
                opcode::Read::new(fd, value, size_of::<u64>() as u32).build()
            };
            // SAFETY: the read target is 8 bytes in `shared`, alive until the ring is closed;
            // the notifier (and its eventfd) is owned by the engine.
            unsafe { self.push(entry.user_data(WAKE)) }?;
            self.wake_armed = true;
            self.in_flight += 1;
        }
        Ok(())
    }

    /// Turn queued transmits into send entries while slots are free (retries first).
    fn queue_sends(&mut self) -> io::Result<()> {
        if self.tx_blocked {
            if !self.writable_armed {
                let entry = match self.fixed_file {
                    true => opcode::PollAdd::new(types::Fixed(0), libc::POLLOUT as u32).build(),
                    false => opcode::PollAdd::new(self.socket_fd(), libc::POLLOUT as u32).build(),
                };
                // SAFETY: a poll references no memory.
                unsafe { self.push(entry.user_data(WRITABLE)) }?;
                self.writable_armed = true;
                self.in_flight += 1;
            }
            return Ok(());
        }
        let ipv6 = self.local_addr.is_ipv6();
        let mut submitted = 0;
        while let Some(&index) = self.free_slots.last() {
            let Some(transmit) = self.pending.pop_front().or_else(|| self.tx.pop_front()) else {
                break;
            };
            let Some(destination) = socket_family_addr(transmit.destination, ipv6) else {
                tracing::debug!(
                    destination = %transmit.destination,
                    local = %self.local_addr,
                    "destination of the wrong address family, datagram dropped"
                );
                self.counters.tx_errors += transmit.segments() as u64;
                self.tx.recycle(transmit.contents);
                continue;
            };
            let wildcard = self.wildcard;
            // SAFETY: the slot is free (not in flight), so nothing else refers to it.
            let slot = unsafe { &mut *self.shared_ref().slots[index as usize].get() };
            let message = slot.prepare(transmit, destination, wildcard, ipv6);
            let entry = match (self.zero_copy, self.fixed_file) {
                (false, true) => opcode::SendMsg::new(types::Fixed(0), message).build(),
                (false, false) => opcode::SendMsg::new(self.socket_fd(), message).build(),
                (true, true) => opcode::SendMsgZc::new(types::Fixed(0), message).build(),
                (true, false) => opcode::SendMsgZc::new(self.socket_fd(), message).build(),
            };
            // SAFETY: the header, iovec, address and control space are the slot's, and the
            // datagrams are the buffer of the transmit the slot now owns; the slot stays out of
            // `free_slots` until the kernel's last completion for it.
            unsafe { self.push(entry.user_data(SEND | u64::from(index))) }?;
            self.free_slots.pop();
            self.in_flight += 1;
            submitted += 1;
        }
        if submitted > 0 {
            self.last_fan_out = submitted;
        }
        Ok(())
    }

    /// Push one entry, submitting what is queued first if the submission queue is full.
    ///
    /// # Safety
    ///
    /// Whatever the entry points at must stay valid until its last completion.
    unsafe fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        for _ in 0..16 {
            // SAFETY: per this function's contract.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return Ok(());
            }
            self.enter(0, None, Duration::ZERO)?;
        }
        // The kernel keeps refusing to take entries (EBUSY/EAGAIN over and over).
        Err(io::Error::other(
            "io_uring submission queue stays full: the kernel does not take entries",
        ))
    }

    /// Submit what is queued and wait for completions until `deadline`; no waiting when
    /// completions are already there.
    fn wait(&mut self, deadline: Option<Instant>) -> io::Result<()> {
        let queued = !self.ring.submission().is_empty();
        let taskrun = self.ring.submission().taskrun();
        // Parked datagrams wait for the queued output to leave: while it is full, sleep until a
        // completion (a send done) rather than spin.
        let parked_ready = !self.parked.is_empty() && !self.tx.turn_is_full();
        if parked_ready || !self.ring.completion().is_empty() {
            if queued || taskrun {
                self.enter(0, None, Duration::ZERO)?;
            }
            return Ok(());
        }
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return if queued || taskrun {
                        self.enter(0, None, Duration::ZERO)
                    } else {
                        Ok(())
                    };
                }
                Some(left)
            }
        };
        match self.coalescing_window(taskrun, timeout) {
            // The kernel needs a timeout to fall back to after the window.
            Some(window) => self.enter(
                COALESCED_COMPLETIONS,
                Some(timeout.unwrap_or(IDLE_WAIT)),
                window,
            ),
            None => self.enter(1, timeout, Duration::ZERO),
        }
    }

    /// The coalescing window of the coming wait, if it coalesces (see the module), given the
    /// ring's taskrun flag and the time left to the driver's deadline.
    fn coalescing_window(&self, taskrun: bool, timeout: Option<Duration>) -> Option<Duration> {
        // Coalescing (see the module): wait out the window, then return with what came; with
        // none by then, wake at the first. Not when the shard is behind: the kernel already
        // holds completions for it (the taskrun flag), datagrams are parked, or transmits
        // wait for the socket or for a free send slot. The kernel sleeps the whole window
        // even past the timeout, and starts both after it has taken this call's submissions,
        // so the window ends `DEADLINE_MARGIN` before the deadline at the latest.
        let behind = taskrun
            || !self.parked.is_empty()
            || self.tx_blocked
            || !self.pending.is_empty()
            || !self.tx.is_empty();
        // Nor after a wide fan-out (a broadcast's): its wake-ups are few and shared by many
        // sends already, and held input only leaves in larger bursts (1 -> 1,000 viewers on
        // two shards lost 3-7 % in the receivers' sockets with it, none without).
        let wide = self.last_fan_out >= COALESCED_COMPLETIONS;
        self.coalesce
            .filter(|_| !behind && !wide)
            .map(|window| match timeout {
                Some(left) => window.min(left.saturating_sub(DEADLINE_MARGIN)),
                None => window,
            })
            .filter(|&window| window >= MIN_WINDOW)
    }

    /// One `io_uring_enter`: submit, and wait for `want` completions (at most `timeout`);
    /// with a `min_wait` (and a `timeout`), wait that long for them, then return with what
    /// came, or wait for one if none did.
    fn enter(
        &mut self,
        want: usize,
        timeout: Option<Duration>,
        min_wait: Duration,
    ) -> io::Result<()> {
        debug_assert!(
            min_wait.is_zero() || timeout.is_some(),
            "min_wait needs a timeout"
        );
        let result = match timeout {
            Some(timeout) => {
                let timespec = Timespec::from(timeout);
                let args = SubmitArgs::new()
                    .timespec(&timespec)
                    .min_wait_usec(min_wait.as_micros() as u32);
                self.ring.submitter().submit_with_args(want, &args)
            }
            None => self.ring.submitter().submit_and_wait(want),
        };
        self.counters.syscalls += 1;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) =>
            {
                // Timed out, interrupted, or the kernel wants completions reaped first.
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Handle completions: receives (at most `max_rx_per_turn`; with no driver, i.e. while
    /// stopping, they are parked for the next run), sends, wake-ups.
    fn complete<'d>(&mut self, mut driver: Option<&mut (dyn Driver + 'd)>) -> io::Result<()> {
        let now = Instant::now();
        let mut received = 0;
        if let Some(driver) = driver.as_deref_mut() {
            while received < self.max_rx_per_turn && !self.tx.turn_is_full() {
                let Some(entry) = self.parked.pop_front() else {
                    break;
                };
                self.on_receive(&entry, Some(&mut *driver), now)?;
                received += 1;
            }
        }
        self.completions.clear();
        let capacity = self.completions.capacity();
        {
            let mut queue = self.ring.completion();
            // Collected even while the turn's output is full (its receives are then parked):
            // the sends completing here are what empties it. Parked datagrams hold buffers of
            // the ring, so they are never more than it has.
            while received < self.max_rx_per_turn && self.completions.len() < capacity {
                let Some(entry) = queue.next() else {
                    break;
                };
                if entry.user_data() & TAG_MASK == RECEIVE
                    && cqueue::buffer_select(entry.flags()).is_some()
                {
                    received += 1;
                }
                self.completions.push(entry);
            }
        }
        let mut result = Ok(());
        for index in 0..self.completions.len() {
            let entry = self.completions[index].clone();
            let step = match entry.user_data() & TAG_MASK {
                // Once the turn's output reached `TURN_BYTES`, the rest is parked: taken first
                // next turn, after what is queued was submitted.
                RECEIVE if self.tx.turn_is_full() => self.on_receive(&entry, None, now),
                RECEIVE => self.on_receive(&entry, driver.as_deref_mut(), now),
                SEND => self.on_sent(entry.user_data(), entry.result(), entry.flags()),
                WAKE => {
                    self.on_wake(&entry);
                    Ok(())
                }
                WRITABLE => {
                    self.writable_armed = false;
                    self.tx_blocked = false;
                    self.in_flight -= 1;
                    Ok(())
                }
                CANCEL => {
                    self.in_flight -= 1;
                    Ok(())
                }
                _ => Ok(()),
            };
            // Keep going after a fatal error so every buffer and slot is accounted for.
            if result.is_ok() {
                result = step;
            }
        }
        self.publish_buffers();
        result
    }

    /// A multishot receive completion: hand the datagram over (or park it), give the buffer
    /// back, note whether the receive ended.
    fn on_receive<'d>(
        &mut self,
        entry: &cqueue::Entry,
        driver: Option<&mut (dyn Driver + 'd)>,
        now: Instant,
    ) -> io::Result<()> {
        let flags = entry.flags();
        let result = entry.result();
        let buffer = cqueue::buffer_select(flags);
        if entry.user_data() == RECEIVE && !cqueue::more(flags) {
            // The multishot receive ended with this completion: arm it again next turn.
            // (Parked completions carry user_data 0 so they do not count twice.)
            self.receive_armed = false;
            self.in_flight -= 1;
        }
        let Some(id) = buffer else {
            if result < 0 {
                match -result {
                    libc::ENOBUFS => self.counters.rx_no_buffers += 1,
                    libc::ECANCELED | libc::EINTR | libc::EAGAIN => {}
                    errno => {
                        let error = io::Error::from_raw_os_error(errno);
                        if is_fatal(&error) || errno == libc::EINVAL {
                            return Err(error);
                        }
                        // A pending socket error (e.g. from ICMP); reported once, then cleared.
                        tracing::debug!(%error, "multishot recvmsg ended");
                    }
                }
            }
            return Ok(());
        };
        let Some(driver) = driver else {
            // Stopping, or the turn's output is full: keep the datagram (and its buffer) for the
            // next run or turn.
            let mut kept = entry.clone();
            kept.set_user_data(0);
            self.parked.push_back(kept);
            return Ok(());
        };
        let shared = self.shared.as_deref().expect("memory present until drop");
        let start = usize::from(id) * shared.buffer_size;
        let len = usize::try_from(result).unwrap_or(0).min(shared.buffer_size);
        // SAFETY: buffer `id` was handed to us by this completion and is not in the ring
        // until `give_back` below, so the kernel does not write it meanwhile; `start + len`
        // stays inside `buffers`.
        let data = unsafe { std::slice::from_raw_parts(shared.buffers.as_ptr().add(start), len) };
        // SAFETY: the header is only read by the kernel when the receive is armed.
        let header = unsafe { &*shared.receive_header.get() };
        match RecvMsgOut::parse(data, header) {
            Ok(message) if message.is_payload_truncated() => self.counters.rx_truncated += 1,
            Ok(message) => {
                let mut name = zeroed_sockaddr();
                let name_data = message.name_data();
                // SAFETY: at most NAME_LEN (< size_of sockaddr_storage) bytes are copied into
                // the storage, from a slice of that length.
                unsafe {
                    ptr::copy_nonoverlapping(
                        name_data.as_ptr(),
                        (&mut name as *mut libc::sockaddr_storage).cast::<u8>(),
                        name_data.len().min(size_of::<libc::sockaddr_storage>()),
                    );
                }
                match read_sockaddr(&name, name_data.len() as libc::socklen_t) {
                    Some(source) => {
                        let control = read_control_bytes(message.control_data());
                        let destination = match control.destination {
                            Some(ip) if self.wildcard => {
                                SocketAddr::new(ip, self.local_addr.port())
                            }
                            _ => self.local_addr,
                        };
                        deliver(
                            driver,
                            now,
                            source,
                            destination,
                            message.payload_data(),
                            control.segment_size,
                            &mut self.counters,
                            &mut self.tx,
                        );
                    }
                    None => tracing::trace!("datagram without a usable source address dropped"),
                }
            }
            Err(()) => tracing::debug!(len, "malformed multishot recvmsg buffer dropped"),
        }
        self.give_back(id);
        Ok(())
    }

    /// A send completion (or a zero-copy send's notification).
    fn on_sent(&mut self, user_data: u64, result: i32, flags: u32) -> io::Result<()> {
        let index = (user_data & !TAG_MASK) as usize;
        // SAFETY: the slot's operation completed (or is past its result and only waits for
        // the notification, during which the kernel reads the transmit's buffer only, which
        // this reference does not touch).
        let slot = unsafe { &mut *self.shared_ref().slots[index].get() };
        if cqueue::notif(flags) {
            return self.release_slot(index);
        }
        let transmit = slot
            .transmit
            .as_ref()
            .expect("a slot in flight holds its transmit");
        let segments = transmit.segments() as u64;
        let mut fatal = None;
        slot.outcome = Outcome::Done;
        if result >= 0 {
            self.counters.tx_datagrams += segments;
            self.counters.tx_bytes += transmit.contents.len() as u64;
            self.counters.tx_gso_sends += u64::from(segments > 1);
        } else {
            let error = io::Error::from_raw_os_error(-result);
            match -result {
                libc::EAGAIN | libc::ENOBUFS | libc::EINTR => {
                    slot.outcome = Outcome::Retry;
                    self.tx_blocked = true;
                }
                libc::ECANCELED => slot.outcome = Outcome::Retry,
                _ if transmit.segment_size.is_some() && gso_refused(&error) => {
                    if self.gso {
                        tracing::warn!(
                            %error,
                            "the kernel refused a segmented (GSO) send: sending datagrams one by one from now on"
                        );
                        self.gso = false;
                        self.tx.unmerge();
                    }
                    slot.outcome = Outcome::Split;
                }
                _ => {
                    tracing::debug!(
                        %error,
                        destination = %transmit.destination,
                        len = transmit.contents.len(),
                        "send failed, datagram dropped"
                    );
                    self.counters.tx_errors += segments;
                    if is_fatal(&error) {
                        fatal = Some(error);
                    }
                }
            }
        }
        if !cqueue::more(flags) {
            self.release_slot(index)?;
        }
        match fatal {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The kernel is done with slot `index`: recycle, retry or split its transmit, free it.
    fn release_slot(&mut self, index: usize) -> io::Result<()> {
        // SAFETY: the slot's operation is over; nothing else refers to it.
        let slot = unsafe { &mut *self.shared_ref().slots[index].get() };
        let Some(transmit) = slot.transmit.take() else {
            return Ok(());
        };
        match slot.outcome {
            Outcome::Done => self.tx.recycle(transmit.contents),
            Outcome::Retry => self.pending.push_back(transmit),
            Outcome::Split => {
                for datagram in transmit.datagrams() {
                    let mut contents = self.tx.buffer();
                    contents.extend_from_slice(datagram);
                    self.pending.push_back(Transmit::new(
                        transmit.destination,
                        transmit.source,
                        contents,
                    ));
                }
                self.tx.recycle(transmit.contents);
            }
        }
        self.free_slots.push(index as u32);
        self.in_flight -= 1;
        Ok(())
    }

    /// The eventfd read (or poll) completed: the notifier fired.
    fn on_wake(&mut self, entry: &cqueue::Entry) {
        if !cqueue::more(entry.flags()) {
            self.wake_armed = false;
            self.in_flight -= 1;
        }
        match entry.result() {
            result if result >= 0 => {
                if self.wake_by_poll {
                    self.notifier.drain();
                }
            }
            result if -result == libc::EAGAIN && !self.wake_by_poll => {
                tracing::debug!("eventfd read completed with EAGAIN: watching it with a poll");
                self.wake_by_poll = true;
            }
            result if -result == libc::ECANCELED => {}
            result => {
                tracing::warn!(error = %io::Error::from_raw_os_error(-result), "eventfd watch failed");
            }
        }
    }

    /// `Turn::Stop`: send what is queued and wait (bounded) for those sends to complete.
    fn flush_before_stop(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            self.queue_sends()?;
            let sending = self.free_slots.len() < self.slot_count();
            if !sending && self.pending.is_empty() && self.tx.is_empty() {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::debug!("stopping with sends still queued or in flight");
                return Ok(());
            }
            self.enter(1, Some(left), Duration::ZERO)?;
            self.complete(None)?;
        }
    }

    /// Cancel everything in flight and wait (bounded) for the last completions, so nothing
    /// the kernel may touch is in use once `run` returns.
    fn quiesce(&mut self) -> io::Result<()> {
        if self.in_flight == 0 {
            return Ok(());
        }
        let entry = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(CANCEL);
        // SAFETY: a cancellation references no memory.
        unsafe { self.push(entry) }?;
        self.in_flight += 1;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while self.in_flight > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::other(format!(
                    "uring engine: {} operations still in flight after cancelling them",
                    self.in_flight
                )));
            }
            self.enter(1, Some(left), Duration::ZERO)?;
            self.complete(None)?;
        }
        Ok(())
    }

    fn shared_ref(&self) -> &Shared {
        self.shared.as_deref().expect("memory present until drop")
    }

    fn slot_count(&self) -> usize {
        self.shared_ref().slots.len()
    }

    fn socket_fd(&self) -> types::Fd {
        types::Fd(self.socket.as_raw_fd())
    }
}

impl Engine for UringEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Uring
    }

    fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn counters(&self) -> EngineCounters {
        self.counters
    }

    fn run(&mut self, driver: &mut dyn Driver) -> io::Result<()> {
        self.start()?;
        let result = self.turns(driver);
        let quiet = self.quiesce();
        result.and(quiet)
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        self.let_go();
    }
}

impl UringEngine {
    /// Make sure nothing in flight still uses the engine's memory before it is freed: cancel
    /// and wait if operations are in flight (a run that ended in a panic or a failed
    /// cancellation), and if that fails (a single-issuer ring refuses other threads), leak
    /// the memory rather than free what the kernel may still touch. Returns whether it leaked.
    fn let_go(&mut self) -> bool {
        if self.in_flight == 0 || self.shared.is_none() {
            return false;
        }
        match self.quiesce() {
            Ok(()) => false,
            Err(error) => {
                tracing::warn!(%error, "uring engine dropped with operations in flight: leaking its buffers");
                std::mem::forget(self.shared.take());
                true
            }
        }
    }
}

impl SendSlot {
    fn new() -> SendSlot {
        SendSlot {
            header: zeroed_msghdr(),
            iovec: libc::iovec {
                iov_base: ptr::null_mut(),
                iov_len: 0,
            },
            name: zeroed_sockaddr(),
            control: Control::default(),
            transmit: None,
            outcome: Outcome::Done,
        }
    }

    /// Take `transmit` and describe it in this slot's header; returns the header to submit.
    fn prepare(
        &mut self,
        transmit: Transmit,
        destination: SocketAddr,
        wildcard: bool,
        ipv6_socket: bool,
    ) -> *const libc::msghdr {
        let name_len = write_sockaddr(destination, &mut self.name);
        let mut control_len = match transmit.source {
            Some(source) if wildcard => write_pktinfo(&mut self.control, source.ip(), ipv6_socket),
            _ => 0,
        };
        if let Some(size) = transmit.segment_size {
            control_len = write_segment_size(&mut self.control, control_len, size);
        }
        let transmit = self.transmit.insert(transmit);
        self.iovec = libc::iovec {
            iov_base: transmit.contents.as_ptr().cast_mut().cast(),
            iov_len: transmit.contents.len(),
        };
        self.outcome = Outcome::Done;
        self.header = zeroed_msghdr();
        self.header.msg_name = (&mut self.name as *mut libc::sockaddr_storage).cast();
        self.header.msg_namelen = name_len;
        self.header.msg_iov = &mut self.iovec;
        self.header.msg_iovlen = 1;
        if control_len > 0 {
            self.header.msg_control = self.control.0.as_mut_ptr().cast();
            self.header.msg_controllen = control_len as _;
        }
        &self.header
    }
}

/// Build a ring with the best setup flags this kernel accepts.
fn build_ring(entries: u32, cq_entries: u32, sqpoll: bool) -> io::Result<(IoUring, RingSetup)> {
    type Configure = fn(&mut io_uring::Builder);
    let attempts: &[(&'static str, bool, Configure)] = if sqpoll {
        &[
            ("SQPOLL", false, |b| {
                b.setup_sqpoll(1000);
            }),
            ("plain (SQPOLL refused)", false, |_| {}),
        ]
    } else {
        &[
            ("SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG", true, |b| {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag()
                    .setup_r_disabled();
            }),
            ("COOP_TASKRUN|TASKRUN_FLAG", false, |b| {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }),
            ("plain", false, |_| {}),
        ]
    };
    let mut last = None;
    for &(name, single_issuer, configure) in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq_entries).setup_clamp();
        configure(&mut builder);
        match builder.build(entries) {
            Ok(ring) => {
                return Ok((
                    ring,
                    RingSetup {
                        name,
                        entries,
                        cq_entries,
                        sqpoll,
                        single_issuer,
                        disabled: single_issuer,
                    },
                ));
            }
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!(flags = name, "io_uring setup flags refused");
                last = Some(error);
            }
            Err(error) => {
                let why = explain_setup_error(&error, io_uring_disabled(), under_seccomp());
                return Err(io::Error::new(error.kind(), why));
            }
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no io_uring setup accepted")))
}

fn zeroed_msghdr() -> libc::msghdr {
    // SAFETY: msghdr is integers and raw pointers; all zeroes is a valid value.
    unsafe { std::mem::zeroed() }
}

/// Zeroed, page-aligned heap memory (the kernel wants a buffer ring page-aligned; buffers are
/// too, so each starts on a fresh cache line).
struct PageMemory {
    ptr: NonNull<u8>,
    layout: std::alloc::Layout,
}

impl PageMemory {
    fn zeroed(len: usize) -> io::Result<PageMemory> {
        let layout = std::alloc::Layout::from_size_align(len.max(1), page_size())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer memory too large"))?;
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr = NonNull::new(ptr).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(PageMemory { ptr, layout })
    }

    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for PageMemory {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this same layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_name_the_cause() {
        let error = |errno| io::Error::from_raw_os_error(errno);
        let why = explain_setup_error(&error(libc::EPERM), Some(0), true);
        assert!(why.contains("denied (seccomp?)"), "{why}");
        let why = explain_setup_error(&error(libc::EPERM), Some(2), false);
        assert!(why.contains("kernel.io_uring_disabled = 2"), "{why}");
        let why = explain_setup_error(&error(libc::EPERM), Some(1), false);
        assert!(why.contains("io_uring_group"), "{why}");
        let why = explain_setup_error(&error(libc::ENOSYS), None, true);
        assert!(why.contains("denied (seccomp?)"), "{why}");
        let why = explain_setup_error(&error(libc::ENOSYS), None, false);
        assert!(why.contains("no io_uring in this kernel"), "{why}");
    }

    /// What `probe` says on a thread whose `io_uring_setup` a seccomp filter fails with
    /// `errno`, as Docker's default profile does.
    fn probe_under_seccomp(errno: i32) -> Result<(), String> {
        thread::spawn(move || {
            let nr = libc::SYS_io_uring_setup as u32;
            let mut program = [
                // Load the system call number; if it is io_uring_setup, fail it with `errno`,
                // else allow.
                bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
                bpf(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr, 0, 1),
                bpf(
                    libc::BPF_RET | libc::BPF_K,
                    libc::SECCOMP_RET_ERRNO | errno as u32,
                    0,
                    0,
                ),
                bpf(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
            ];
            let filter = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_mut_ptr(),
            };
            // SAFETY: prctl with these options takes integers and a pointer to a filter that
            // lives across the call; the filter applies to this thread only, which ends below.
            unsafe {
                assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
                assert_eq!(
                    libc::prctl(
                        libc::PR_SET_SECCOMP,
                        libc::SECCOMP_MODE_FILTER,
                        &filter as *const libc::sock_fprog
                    ),
                    0,
                    "seccomp filter: {}",
                    io::Error::last_os_error()
                );
            }
            probe()
        })
        .join()
        .unwrap()
    }

    fn bpf(code: u32, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
        libc::sock_filter {
            code: code as u16,
            jt,
            jf,
            k,
        }
    }

    #[test]
    fn probe_under_a_seccomp_filter_says_denied() {
        for errno in [libc::EPERM, libc::ENOSYS] {
            let why = probe_under_seccomp(errno).expect_err("io_uring_setup is denied");
            eprintln!("probe under seccomp ({errno}): {why}");
            assert!(why.contains("denied (seccomp?)"), "{why}");
        }
        // The filter went with its thread.
        if std::env::var("TEST_ENGINES").is_err() {
            assert_eq!(probe(), Ok(()));
        }
    }

    /// A bound engine, or `None` where `TEST_ENGINES=epoll` says io_uring is not
    /// expected here; fails with the probe's reason otherwise.
    fn bound(notifier: &Notifier) -> Option<UringEngine> {
        if std::env::var("TEST_ENGINES").is_ok_and(|v| v.trim() == "epoll") {
            return None;
        }
        if let Err(why) = probe() {
            panic!("io_uring cannot run here: {why} (TEST_ENGINES=epoll skips this)");
        }
        let options = EngineOptions {
            uring_entries: 16,
            uring_buffers: 16,
            ..EngineOptions::default()
        };
        Some(UringEngine::bind("127.0.0.1:0".parse().unwrap(), notifier, &options).unwrap())
    }

    #[test]
    fn the_eventfd_read_resets_it_and_cancellation_leaves_nothing_in_flight() {
        let notifier = Notifier::new().unwrap();
        let Some(mut engine) = bound(&notifier) else {
            return;
        };
        eprintln!("ring flags on this kernel: {}", engine.ring_flags());
        engine.start().unwrap();
        engine.arm().unwrap();
        engine.enter(0, None, Duration::ZERO).unwrap();
        assert_eq!(engine.in_flight, 2, "receive and eventfd read armed");
        notifier.arm();
        notifier.notify();
        engine
            .enter(1, Some(Duration::from_secs(2)), Duration::ZERO)
            .unwrap();
        engine.complete(None).unwrap();
        assert!(!engine.wake_armed, "the eventfd read completed");
        assert!(
            !engine.wake_by_poll,
            "this kernel reads a nonblocking eventfd in the ring"
        );
        assert_eq!(notifier.drain(), 0, "the read reset the eventfd");
        assert_eq!(engine.in_flight, 1);
        engine.quiesce().unwrap();
        assert_eq!(engine.in_flight, 0);
        assert!(!engine.receive_armed);
        assert!(!engine.let_go(), "nothing to leak");
    }

    #[test]
    fn blocked_sends_resume_when_writable() {
        // Loopback never fills a send buffer, so stand in for EAGAIN: one send in flight
        // completes with it, and what is queued waits behind it until the socket polls
        // writable.
        let notifier = Notifier::new().unwrap();
        let Some(mut engine) = bound(&notifier) else {
            return;
        };
        let client = crate::testing::client();
        let destination = client.local_addr().unwrap();
        // A send "in flight" that the kernel never saw, completed by hand with EAGAIN.
        let index = engine.free_slots.pop().unwrap();
        // SAFETY: the slot was free; no operation refers to it.
        let slot = unsafe { &mut *engine.shared_ref().slots[index as usize].get() };
        slot.prepare(
            Transmit::new(destination, None, vec![0; 10]),
            destination,
            false,
            false,
        );
        engine.in_flight += 1;
        for i in 1..3u8 {
            engine
                .tx
                .push(Transmit::new(destination, None, vec![i; 10]));
        }
        engine
            .on_sent(SEND | u64::from(index), -libc::EAGAIN, 0)
            .unwrap();
        assert!(engine.tx_blocked);
        assert_eq!(engine.pending.len(), 1);
        assert_eq!(engine.free_slots.len(), engine.slot_count());
        assert_eq!(engine.in_flight, 0);

        engine.run(&mut crate::testing::OneWait::new()).unwrap();
        assert!(!engine.tx_blocked, "POLLOUT came");
        assert!(engine.pending.is_empty() && engine.tx.is_empty());
        let mut buffer = [0u8; 64];
        for i in 0..3u8 {
            let (len, _) = client.recv_from(&mut buffer).expect("datagram within 2 s");
            assert_eq!(&buffer[..len], &[i; 10], "in order");
        }
        assert_eq!(engine.counters().tx_datagrams, 3);
        assert_eq!(engine.counters().tx_errors, 0);
    }

    #[test]
    fn dropping_with_operations_in_flight_is_sound_on_any_thread() {
        let notifier = Notifier::new().unwrap();
        let Some(mut engine) = bound(&notifier) else {
            return;
        };
        engine.start().unwrap();
        engine.arm().unwrap();
        engine.enter(0, None, Duration::ZERO).unwrap();
        assert_eq!(engine.in_flight, 2);
        let single_issuer = engine.setup.single_issuer;
        // Another thread: a single-issuer ring refuses it, so the memory is leaked, not freed.
        let leaked = thread::spawn(move || {
            let leaked = engine.let_go();
            drop(engine);
            leaked
        })
        .join()
        .unwrap();
        assert_eq!(leaked, single_issuer);

        // The same thread: cancelled and waited for, nothing leaked.
        let Some(mut engine) = bound(&notifier) else {
            return;
        };
        engine.start().unwrap();
        engine.arm().unwrap();
        engine.enter(0, None, Duration::ZERO).unwrap();
        assert!(!engine.let_go());
        assert_eq!(engine.in_flight, 0);
    }
}
