//! The engine contract, run against every engine kind on loopback.
//!
//! io_uring is required: where `probe(Uring)` fails these tests fail with its reason, unless
//! `TEST_ENGINES=epoll` says to test the epoll engine only (a host or container
//! without io_uring).

// For the counting allocator below, the one unsafe item here.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use ringcast_net::{
    Driver, Engine, EngineCounters, EngineKind, EngineOptions, MAX_DATAGRAM, Notifier, TURN_BYTES,
    Transmit, Turn, TxQueue,
};

/// Counts the allocations of threads that asked for it (an engine thread in steady state).
struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    // `try_with`: the thread's locals may be gone while it exits; const-initialized cells
    // without destructors never allocate.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: every method forwards to the system allocator with the caller's arguments, which
// upholds GlobalAlloc's contract; the counting touches only thread-local integers.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded as received.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The engine kinds to test: all of them, unless `TEST_ENGINES=epoll`.
fn kinds() -> Vec<EngineKind> {
    if std::env::var("TEST_ENGINES").is_ok_and(|v| v.trim() == "epoll") {
        eprintln!("TEST_ENGINES=epoll: testing the epoll engine only");
        return vec![EngineKind::Epoll];
    }
    if let Err(why) = ringcast_net::probe(EngineKind::Uring) {
        panic!(
            "the io_uring engine cannot run here: {why}\n\
             (set TEST_ENGINES=epoll to test only the epoll engine on such a host)"
        );
    }
    vec![EngineKind::Epoll, EngineKind::Uring]
}

fn options() -> EngineOptions {
    EngineOptions {
        batch: 8,
        max_rx_per_turn: 64,
        uring_entries: 64,
        uring_buffers: 64,
        ..EngineOptions::default()
    }
}

/// A driver that echoes each datagram back from the address it arrived on, optionally
/// sending extra datagrams first, and stops when told.
struct Echo {
    stop: Arc<AtomicBool>,
    turns: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    destinations: Vec<SocketAddr>,
    /// The distinct source addresses seen (the first 16).
    sources: Vec<SocketAddr>,
    /// Also send a copy here before each echo (a closed port).
    also_to: Option<SocketAddr>,
    /// Also send a datagram too large for UDP before each echo.
    oversize: bool,
    /// Keep what arrives instead of echoing it.
    silent: bool,
    /// Also send this many 1,200-byte datagrams to `also_to` for each one received (a
    /// publisher's packet fanned out to viewers).
    fan_out: usize,
    /// Send the `fan_out` datagrams to as many ports, from `also_to`'s up (a broadcast's
    /// viewers), instead of all to `also_to`.
    spread: bool,
    /// The most bytes found queued when a datagram came.
    most_queued: usize,
    kept: Vec<Vec<u8>>,
    /// Sleep this long in each of the first `slow_for` datagrams.
    slow: Duration,
    slow_for: usize,
    /// While set, count the engine thread's allocations into `allocations`.
    count_allocations: Arc<AtomicBool>,
    allocations: Arc<AtomicU64>,
    /// Each turn asks to be woken this long after it (None: no deadline).
    deadline_in: Option<Duration>,
}

impl Echo {
    fn new() -> Echo {
        Echo {
            stop: Arc::new(AtomicBool::new(false)),
            turns: Arc::new(AtomicUsize::new(0)),
            received: Arc::new(AtomicUsize::new(0)),
            destinations: Vec::new(),
            sources: Vec::new(),
            also_to: None,
            oversize: false,
            silent: false,
            fan_out: 0,
            spread: false,
            most_queued: 0,
            kept: Vec::new(),
            slow: Duration::ZERO,
            slow_for: 0,
            count_allocations: Arc::new(AtomicBool::new(false)),
            allocations: Arc::new(AtomicU64::new(0)),
            deadline_in: None,
        }
    }
}

impl Driver for Echo {
    fn on_datagram(
        &mut self,
        _now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
        tx: &mut TxQueue,
    ) {
        let count = self.received.fetch_add(1, Ordering::SeqCst);
        self.most_queued = self.most_queued.max(tx.bytes());
        if count < self.slow_for {
            thread::sleep(self.slow);
        }
        if let Some(sink) = self.also_to {
            for k in 0..self.fan_out {
                let mut contents = tx.buffer();
                contents.resize(1200, 0);
                let mut to = sink;
                if self.spread {
                    to.set_port(sink.port().wrapping_add(k as u16));
                }
                tx.push(Transmit::new(to, None, contents));
            }
        }
        if self.destinations.len() < 16 && !self.destinations.contains(&destination) {
            self.destinations.push(destination);
        }
        if self.sources.len() < 16 && !self.sources.contains(&source) {
            self.sources.push(source);
        }
        if self.silent {
            self.kept.push(data.to_vec());
            return;
        }
        if let Some(other) = self.also_to {
            let mut contents = tx.buffer();
            contents.extend_from_slice(data);
            tx.push(Transmit::new(other, None, contents));
        }
        if self.oversize {
            tx.push(Transmit::new(source, None, vec![0; 70_000]));
        }
        let mut contents = tx.buffer();
        contents.extend_from_slice(data);
        tx.push(Transmit::new(source, Some(destination), contents));
    }

    fn on_turn(&mut self, now: Instant, _tx: &mut TxQueue) -> Turn {
        self.turns.fetch_add(1, Ordering::SeqCst);
        COUNTING.set(self.count_allocations.load(Ordering::SeqCst));
        self.allocations.store(ALLOCATIONS.get(), Ordering::SeqCst);
        if self.stop.load(Ordering::SeqCst) {
            Turn::Stop
        } else {
            Turn::Wait(self.deadline_in.map(|wait| now + wait))
        }
    }
}

type Finished = (Box<dyn Engine>, Echo, io::Result<()>);

/// An engine running `Echo` on its own thread (bound on the test's thread, as the shards do).
struct Running {
    kind: EngineKind,
    addr: SocketAddr,
    notifier: Notifier,
    stop: Arc<AtomicBool>,
    turns: Arc<AtomicUsize>,
    received: Arc<AtomicUsize>,
    done: mpsc::Receiver<Finished>,
}

impl Running {
    fn start(kind: EngineKind, addr: &str, driver: Echo, options: &EngineOptions) -> Running {
        let notifier = Notifier::new().unwrap();
        let mut engine = ringcast_net::bind(kind, addr.parse().unwrap(), &notifier, options)
            .unwrap_or_else(|e| panic!("{kind:?}: bind failed: {e}"));
        assert_eq!(engine.kind(), kind);
        let addr = engine.local_addr();
        let stop = driver.stop.clone();
        let turns = driver.turns.clone();
        let received = driver.received.clone();
        let (sender, done) = mpsc::channel();
        thread::spawn(move || {
            let mut driver = driver;
            let result = engine.run(&mut driver);
            let _ = sender.send((engine, driver, result));
        });
        Running {
            kind,
            addr,
            notifier,
            stop,
            turns,
            received,
            done,
        }
    }

    /// Wait until the engine has made more than `before` turns; fail with `why` after `limit`.
    fn turn_past(&self, before: usize, limit: Duration, why: &str) {
        let start = Instant::now();
        while self.turns.load(Ordering::SeqCst) == before {
            assert!(start.elapsed() < limit, "{:?}: {why}", self.kind);
            thread::sleep(Duration::from_millis(1));
        }
    }

    fn stop(self) -> (EngineCounters, Echo) {
        let (engine, driver) = self.stop_engine();
        (engine.counters(), driver)
    }

    fn stop_engine(self) -> (Box<dyn Engine>, Echo) {
        self.stop.store(true, Ordering::SeqCst);
        self.notifier.notify();
        let (engine, driver, result) = self
            .done
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{:?}: engine did not stop", self.kind));
        result.unwrap_or_else(|e| panic!("{:?}: run failed: {e}", self.kind));
        (engine, driver)
    }
}

fn client(addr: &str) -> UdpSocket {
    let socket = UdpSocket::bind(addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    socket
}

/// `recv_from` that asks again when a signal interrupts the wait: a socket read timeout is not
/// restarted by the kernel, so any signal reaching the test thread surfaces as EINTR.
fn recv(socket: &UdpSocket, buffer: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    loop {
        match socket.recv_from(buffer) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

fn payload(index: usize, size: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; size];
    bytes[..2].copy_from_slice(&(index as u16).to_be_bytes());
    for (k, byte) in bytes.iter_mut().enumerate().skip(2) {
        *byte = (index * 7 + k) as u8;
    }
    bytes
}

/// Send `count` datagrams of varied sizes (2..=2048 bytes) in windows and check every echo.
fn echo_round_trip(kind: EngineKind, client: &UdpSocket, server: SocketAddr, count: usize) {
    let sizes: Vec<usize> = (0..count).map(|i| 2 + (i * 131) % 2047).collect();
    let mut seen = vec![false; count];
    let mut buffer = [0u8; 4096];
    let indices: Vec<usize> = (0..count).collect();
    for window in indices.chunks(16) {
        for &i in window {
            client.send_to(&payload(i, sizes[i]), server).unwrap();
        }
        for _ in window {
            let (len, from) = recv(client, &mut buffer)
                .unwrap_or_else(|e| panic!("{kind:?}: no echo within 2 s: {e}"));
            assert_eq!(from, server, "{kind:?}");
            let index = u16::from_be_bytes([buffer[0], buffer[1]]) as usize;
            assert!(
                index < count && !seen[index],
                "{kind:?}: unexpected echo {index}"
            );
            assert_eq!(
                &buffer[..len],
                payload(index, sizes[index]).as_slice(),
                "{kind:?}"
            );
            seen[index] = true;
        }
    }
    assert!(seen.iter().all(|&s| s), "{kind:?}");
}

/// Run `test` for every engine kind, each on its own thread, at the same time.
fn for_each_kind(test: fn(EngineKind)) {
    let handles: Vec<_> = kinds()
        .into_iter()
        .map(|kind| (kind, thread::spawn(move || test(kind))))
        .collect();
    for (kind, handle) in handles {
        if let Err(panic) = handle.join() {
            eprintln!("engine {kind:?} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

#[test]
fn probe_reports_uring() {
    let kinds = kinds();
    if kinds.contains(&EngineKind::Uring) {
        assert_eq!(ringcast_net::probe(EngineKind::Uring), Ok(()));
    }
    assert_eq!(ringcast_net::probe(EngineKind::Epoll), Ok(()));
}

#[test]
fn echoes_a_thousand_datagrams() {
    for_each_kind(|kind| {
        let running = Running::start(kind, "127.0.0.1:0", Echo::new(), &options());
        let server = running.addr;
        let client = client("127.0.0.1:0");
        echo_round_trip(kind, &client, server, 1000);
        let (counters, driver) = running.stop();
        assert_eq!(counters.rx_datagrams, 1000, "{kind:?}: {counters:?}");
        assert_eq!(counters.tx_datagrams, 1000, "{kind:?}: {counters:?}");
        assert_eq!(counters.rx_bytes, counters.tx_bytes, "{kind:?}");
        assert_eq!(counters.rx_truncated, 0, "{kind:?}");
        assert_eq!(counters.tx_errors, 0, "{kind:?}");
        assert!(counters.syscalls > 0, "{kind:?}");
        assert_eq!(
            driver.destinations[0], server,
            "{kind:?}: bound address reported"
        );
    });
}

/// A turn stops taking datagrams once its output reaches `TURN_BYTES`: the engine sends that
/// and takes the rest next turn, so a burst fanned out to many viewers is never held whole.
#[test]
fn a_turn_takes_no_more_datagrams_once_its_output_is_full() {
    const DATAGRAMS: usize = 200;
    for_each_kind(|kind| {
        // Never read: the kernel drops what its buffer cannot hold.
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut driver = Echo::new();
        driver.silent = true;
        driver.also_to = Some(sink.local_addr().unwrap());
        driver.fan_out = 400;
        // The first datagram holds the engine while the others pile up: more than a turn
        // takes, and far more output than a turn may queue.
        driver.slow = Duration::from_millis(300);
        driver.slow_for = 1;
        // Without GSO every datagram is its own send: far more than the engine's send slots,
        // so sends must complete while datagrams wait.
        let options = EngineOptions {
            gso: false,
            ..options()
        };
        let running = Running::start(kind, "127.0.0.1:0", driver, &options);
        let client = client("127.0.0.1:0");
        for i in 0..DATAGRAMS {
            client.send_to(&payload(i, 100), running.addr).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while running.received.load(Ordering::SeqCst) < DATAGRAMS && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        let (counters, driver) = running.stop();
        assert_eq!(driver.kept.len(), DATAGRAMS, "{kind:?}: {counters:?}");
        let one = 400 * 1200;
        assert!(
            driver.most_queued < TURN_BYTES + one,
            "{kind:?}: {} bytes were queued when a datagram came ({DATAGRAMS} datagrams make {})",
            driver.most_queued,
            DATAGRAMS * one
        );
        assert_eq!(counters.tx_queue_full, 0, "{kind:?}");
    });
}

#[test]
fn notifier_wakes_a_sleeping_engine_and_stop_ends_run() {
    for_each_kind(|kind| {
        let running = Running::start(kind, "127.0.0.1:0", Echo::new(), &options());
        thread::sleep(Duration::from_millis(100));
        let idle_turns = running.turns.load(Ordering::SeqCst);
        assert!(
            idle_turns <= 3,
            "{kind:?}: engine spun while idle: {idle_turns} turns"
        );
        // Wake it a few times without stopping: each wake is one turn, no more.
        for _ in 0..3 {
            let before = running.turns.load(Ordering::SeqCst);
            let notifier = running.notifier.clone();
            thread::spawn(move || notifier.notify()).join().unwrap();
            running.turn_past(
                before,
                Duration::from_secs(2),
                "notify did not wake the engine",
            );
        }
        thread::sleep(Duration::from_millis(50));
        let turns = running.turns.load(Ordering::SeqCst);
        assert!(
            turns <= idle_turns + 6,
            "{kind:?}: {turns} turns after 3 wakes"
        );
        let notifier = running.notifier.clone();
        let stop = running.stop.clone();
        thread::spawn(move || {
            stop.store(true, Ordering::SeqCst);
            notifier.notify();
        })
        .join()
        .unwrap();
        let (_, _, result) = running
            .done
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{kind:?}: notify did not wake the engine"));
        result.unwrap();
    });
}

/// A driver that stops at its deadline.
struct Timer {
    deadline: Instant,
    turns: usize,
}

impl Driver for Timer {
    fn on_datagram(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8], _: &mut TxQueue) {
    }
    fn on_turn(&mut self, now: Instant, _: &mut TxQueue) -> Turn {
        self.turns += 1;
        if now >= self.deadline {
            Turn::Stop
        } else {
            Turn::Wait(Some(self.deadline))
        }
    }
}

#[test]
fn deadline_wakes_the_engine_and_idle_does_not_spin() {
    for_each_kind(|kind| {
        let notifier = Notifier::new().unwrap();
        let mut engine =
            ringcast_net::bind(kind, "127.0.0.1:0".parse().unwrap(), &notifier, &options())
                .unwrap();
        let start = Instant::now();
        let mut timer = Timer {
            deadline: start + Duration::from_millis(50),
            turns: 0,
        };
        engine.run(&mut timer).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(50), "{kind:?}");
        assert!(
            start.elapsed() < Duration::from_millis(500),
            "{kind:?}: {:?}",
            start.elapsed()
        );
        assert!(
            timer.turns <= 6,
            "{kind:?}: engine spun before its deadline: {} turns",
            timer.turns
        );
        let syscalls = engine.counters().syscalls;
        assert!(
            syscalls <= 6,
            "{kind:?}: {syscalls} system calls while idle"
        );

        // A deadline already past does not block; the engine runs again after a stop.
        let mut timer = Timer {
            deadline: Instant::now(),
            turns: 0,
        };
        engine.run(&mut timer).unwrap();
        assert_eq!(timer.turns, 1, "{kind:?}");
    });
}

#[test]
fn truncated_datagrams_are_counted_and_skipped() {
    for_each_kind(|kind| {
        let running = Running::start(kind, "127.0.0.1:0", Echo::new(), &options());
        let server = running.addr;
        let client = client("127.0.0.1:0");
        for size in [3000, MAX_DATAGRAM + 1, MAX_DATAGRAM, 100] {
            client.send_to(&payload(size, size), server).unwrap();
        }
        let mut buffer = [0u8; 4096];
        for size in [MAX_DATAGRAM, 100] {
            let (len, _) = recv(&client, &mut buffer).expect("echo within 2 s");
            assert_eq!(&buffer[..len], payload(size, size).as_slice(), "{kind:?}");
        }
        let (counters, _) = running.stop();
        assert_eq!(counters.rx_truncated, 2, "{kind:?}: {counters:?}");
        assert_eq!(counters.rx_datagrams, 2, "{kind:?}: {counters:?}");
    });
}

#[test]
fn wildcard_socket_reports_the_destination_and_replies_from_it() {
    for_each_kind(|kind| {
        let running = Running::start(kind, "0.0.0.0:0", Echo::new(), &options());
        let port = running.addr.port();
        assert!(running.addr.ip().is_unspecified(), "{kind:?}");
        // 127.0.0.2 is loopback too: replies must come from the address the peer used.
        for ip in [[127, 0, 0, 1], [127, 0, 0, 2]] {
            let server = SocketAddr::from((ip, port));
            let client = client("127.0.0.1:0");
            echo_round_trip(kind, &client, server, 20);
        }
        let (_, driver) = running.stop();
        assert!(!driver.destinations.is_empty(), "{kind:?}");
        for d in &driver.destinations {
            assert_eq!(d.port(), port, "{kind:?}");
            assert!(
                d.ip() == SocketAddr::from(([127, 0, 0, 1], 0)).ip()
                    || d.ip() == SocketAddr::from(([127, 0, 0, 2], 0)).ip(),
                "{kind:?}: {:?}",
                driver.destinations
            );
        }
        assert!(
            driver
                .destinations
                .iter()
                .any(|d| d.ip() == SocketAddr::from(([127, 0, 0, 2], 0)).ip()),
            "{kind:?}: {:?}",
            driver.destinations
        );
    });
}

#[test]
fn dual_stack_and_ipv6_sockets() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback (cannot bind [::1])");
        return;
    }
    for_each_kind(|kind| {
        let running = Running::start(kind, "[::]:0", Echo::new(), &options());
        let server = SocketAddr::from(([127, 0, 0, 1], running.addr.port()));
        echo_round_trip(kind, &client("127.0.0.1:0"), server, 20);
        let (_, driver) = running.stop();
        assert!(
            driver.destinations.iter().all(|&d| d == server),
            "{kind:?}: {:?}",
            driver.destinations
        );

        let running = Running::start(kind, "[::1]:0", Echo::new(), &options());
        let server = running.addr;
        echo_round_trip(kind, &client("[::1]:0"), server, 100);
        let (counters, _) = running.stop();
        assert_eq!(counters.rx_datagrams, 100, "{kind:?}");
    });
}

/// What `media.allow_ipv6` binds: one `[::]` socket per shard, serving IPv4 and IPv6 peers
/// at once, each seen as its own family (IPv4 never as v4-mapped) and answered from the address
/// it wrote to.
#[test]
fn one_dual_stack_socket_serves_ipv4_and_ipv6_clients() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback (cannot bind [::1])");
        return;
    }
    for_each_kind(|kind| {
        let running = Running::start(kind, "[::]:0", Echo::new(), &options());
        let port = running.addr.port();
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        let client4 = client("127.0.0.1:0");
        let client6 = client("[::1]:0");
        for _ in 0..3 {
            echo_round_trip(kind, &client4, v4, 20);
            echo_round_trip(kind, &client6, v6, 20);
        }
        let (counters, driver) = running.stop();
        assert_eq!(counters.rx_datagrams, 120, "{kind:?}: {counters:?}");
        assert_eq!(counters.tx_errors, 0, "{kind:?}: {counters:?}");
        let mut destinations = driver.destinations.clone();
        destinations.sort();
        assert_eq!(destinations, [v4, v6], "{kind:?}");
        let mut sources = driver.sources.clone();
        sources.sort();
        let expected = [client4.local_addr().unwrap(), client6.local_addr().unwrap()];
        assert_eq!(sources, expected, "{kind:?}");
    });
}

/// GSO (`UDP_SEGMENT`) from a dual-stack socket: to an IPv4 peer (sent v4-mapped) and to an
/// IPv6 one, with GSO on and off.
#[test]
fn a_dual_stack_socket_sends_segmented_bursts_to_both_families() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipped: no IPv6 loopback (cannot bind [::1])");
        return;
    }
    for_each_kind(|kind| {
        for gso in [true, false] {
            for peer in ["127.0.0.1:0", "[::1]:0"] {
                let client = client(peer);
                let to = client.local_addr().unwrap();
                let engine_options = EngineOptions { gso, ..options() };
                let counters = send_burst_from(kind, "[::]:0", to, 10, 1200, &engine_options);
                let what = format!("{kind:?} gso {gso} to {to}");
                assert_eq!(counters.tx_datagrams, 10, "{what}: {counters:?}");
                assert_eq!(
                    counters.tx_gso_sends,
                    u64::from(gso),
                    "{what}: {counters:?}"
                );
                assert_eq!(counters.tx_errors, 0, "{what}: {counters:?}");
                let mut buffer = [0u8; 4096];
                for i in 0..10 {
                    let (len, from) = recv(&client, &mut buffer)
                        .unwrap_or_else(|e| panic!("{what}: datagram {i}: {e}"));
                    assert_eq!(from.is_ipv4(), to.is_ipv4(), "{what}: from {from}");
                    assert_eq!(&buffer[..len], payload(i, 1200).as_slice(), "{what}: {i}");
                }
            }
        }
    });
}

#[test]
fn send_errors_do_not_stop_the_engine() {
    for_each_kind(|kind| {
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut echo = Echo::new();
        echo.also_to = Some(closed);
        echo.oversize = true;
        let running = Running::start(kind, "127.0.0.1:0", echo, &options());
        let server = running.addr;
        let client = client("127.0.0.1:0");
        let mut buffer = [0u8; 4096];
        for i in 0..5 {
            let sent = payload(i, 50);
            client.send_to(&sent, server).unwrap();
            let (len, _) = recv(&client, &mut buffer).expect("echo within 2 s");
            assert_eq!(&buffer[..len], sent.as_slice(), "{kind:?}");
        }
        let (counters, _) = running.stop();
        // Five oversize datagrams (EMSGSIZE) at least; a refused port may add more.
        assert!(counters.tx_errors >= 5, "{kind:?}: {counters:?}");
        assert!(counters.tx_datagrams >= 5, "{kind:?}: {counters:?}");
    });
}

/// A driver that queues `count` datagrams of `size` bytes to `to` on its first turn, then
/// stops (the engine sends them before `run` returns).
struct Burst {
    to: SocketAddr,
    count: usize,
    size: usize,
}

impl Driver for Burst {
    fn on_datagram(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8], _: &mut TxQueue) {
    }
    fn on_turn(&mut self, _: Instant, tx: &mut TxQueue) -> Turn {
        for i in 0..self.count {
            let mut contents = tx.buffer();
            contents.extend_from_slice(&payload(i, self.size));
            tx.push(Transmit::new(self.to, None, contents));
        }
        Turn::Stop
    }
}

fn send_burst(
    kind: EngineKind,
    to: SocketAddr,
    count: usize,
    size: usize,
    options: &EngineOptions,
) -> EngineCounters {
    send_burst_from(kind, "127.0.0.1:0", to, count, size, options)
}

/// [`send_burst`] from an engine bound at `from`.
fn send_burst_from(
    kind: EngineKind,
    from: &str,
    to: SocketAddr,
    count: usize,
    size: usize,
    options: &EngineOptions,
) -> EngineCounters {
    let notifier = Notifier::new().unwrap();
    let mut engine = ringcast_net::bind(kind, from.parse().unwrap(), &notifier, options).unwrap();
    engine.run(&mut Burst { to, count, size }).unwrap();
    engine.counters()
}

#[test]
fn equal_size_datagrams_to_one_destination_leave_in_one_gso_send() {
    for_each_kind(|kind| {
        let client = client("127.0.0.1:0");
        let to = client.local_addr().unwrap();
        let counters = send_burst(kind, to, 10, 1200, &options());
        assert_eq!(counters.tx_datagrams, 10, "{kind:?}: {counters:?}");
        assert_eq!(counters.tx_gso_sends, 1, "{kind:?}: {counters:?}");
        assert_eq!(counters.tx_errors, 0, "{kind:?}: {counters:?}");
        let mut buffer = [0u8; 4096];
        for i in 0..10 {
            let (len, _) = recv(&client, &mut buffer).expect("datagram within 2 s");
            assert_eq!(
                &buffer[..len],
                payload(i, 1200).as_slice(),
                "{kind:?}: datagram {i}"
            );
        }

        let no_gso = EngineOptions {
            gso: false,
            ..options()
        };
        let counters = send_burst(kind, to, 10, 1200, &no_gso);
        assert_eq!(counters.tx_datagrams, 10, "{kind:?}");
        assert_eq!(counters.tx_gso_sends, 0, "{kind:?}");
        for i in 0..10 {
            let (len, _) = recv(&client, &mut buffer).expect("datagram within 2 s");
            assert_eq!(
                &buffer[..len],
                payload(i, 1200).as_slice(),
                "{kind:?}: datagram {i}"
            );
        }
    });
}

/// A driver that queues its transmits on the first turn and stops.
struct Queue(Vec<Transmit>);

impl Driver for Queue {
    fn on_datagram(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8], _: &mut TxQueue) {
    }
    fn on_turn(&mut self, _: Instant, tx: &mut TxQueue) -> Turn {
        for transmit in self.0.drain(..) {
            tx.push(transmit);
        }
        Turn::Stop
    }
}

#[test]
fn a_refused_segmented_send_turns_gso_off_and_resends_one_by_one() {
    for_each_kind(|kind| {
        let client = client("127.0.0.1:0");
        let to = client.local_addr().unwrap();
        let notifier = Notifier::new().unwrap();
        let mut engine =
            ringcast_net::bind(kind, "127.0.0.1:0".parse().unwrap(), &notifier, &options())
                .unwrap();
        // 150 one-byte segments: more than the kernel's UDP_MAX_SEGMENTS (64 or 128), so it
        // refuses the segmented send with EINVAL, as a device without GSO would. (Few enough
        // for the client's default receive buffer.)
        let refused = Transmit {
            segment_size: Some(1),
            ..Transmit::new(to, None, (0..150).map(|i| i as u8).collect())
        };
        let mut queue = Queue(vec![refused]);
        engine.run(&mut queue).unwrap();
        let counters = engine.counters();
        assert_eq!(counters.tx_datagrams, 150, "{kind:?}: {counters:?}");
        assert_eq!(counters.tx_errors, 0, "{kind:?}: {counters:?}");
        let mut buffer = [0u8; 4096];
        for i in 0..150 {
            let (len, _) = recv(&client, &mut buffer).expect("datagram within 2 s");
            assert_eq!(&buffer[..len], &[i as u8], "{kind:?}: datagram {i}");
        }
        // GSO stays off: equal-size datagrams now leave one by one.
        let burst: Vec<Transmit> = (0..10)
            .map(|i| Transmit::new(to, None, payload(i, 1200)))
            .collect();
        engine.run(&mut Queue(burst)).unwrap();
        let after = engine.counters();
        assert_eq!(
            after.tx_gso_sends, counters.tx_gso_sends,
            "{kind:?}: {after:?}"
        );
        assert_eq!(after.tx_datagrams, 160, "{kind:?}: {after:?}");
        for i in 0..10 {
            let (len, _) = recv(&client, &mut buffer)
                .unwrap_or_else(|e| panic!("{kind:?}: datagram {i} not there: {e} {after:?}"));
            assert_eq!(
                &buffer[..len],
                payload(i, 1200).as_slice(),
                "{kind:?}: datagram {i}"
            );
        }
    });
}

/// A uring engine with `options` echoes 300 datagrams; its counters after.
fn uring_echo(options: &EngineOptions) -> EngineCounters {
    let running = Running::start(EngineKind::Uring, "127.0.0.1:0", Echo::new(), options);
    let server = running.addr;
    echo_round_trip(EngineKind::Uring, &client("127.0.0.1:0"), server, 300);
    running.stop().0
}

#[test]
fn uring_sqpoll_echoes() {
    if !kinds().contains(&EngineKind::Uring) {
        return;
    }
    let counters = uring_echo(&EngineOptions {
        uring_sqpoll: true,
        ..options()
    });
    assert_eq!(counters.tx_datagrams, 300, "{counters:?}");
}

/// Uring options with a coalescing window of `us` microseconds.
fn coalescing(us: u32) -> EngineOptions {
    EngineOptions {
        uring_coalesce_us: us,
        ..options()
    }
}

/// Whether the coalescing tests can run: io_uring with `min_wait_usec` (Linux 6.12).
fn coalescing_runs() -> bool {
    let runs = kinds().contains(&EngineKind::Uring) && ringcast_net::uring::can_coalesce();
    if !runs {
        eprintln!("skipped: no io_uring with min_wait_usec (Linux 6.12) here");
    }
    runs
}

/// Wait until `running` has made its first turn (its thread started and it runs its loop).
fn first_turn(running: &Running) {
    running.turn_past(0, Duration::from_secs(5), "the engine never ran");
}

#[test]
fn a_coalescing_uring_engine_echoes_sleeps_while_idle_and_wakes_when_notified() {
    if !coalescing_runs() {
        return;
    }
    let counters = uring_echo(&coalescing(1000));
    assert_eq!(counters.tx_datagrams, 300, "{counters:?}");

    // Idle without a deadline, it sleeps: it does not wake at the end of each window.
    let running = Running::start(
        EngineKind::Uring,
        "127.0.0.1:0",
        Echo::new(),
        &coalescing(1000),
    );
    thread::sleep(Duration::from_millis(100));
    let idle_turns = running.turns.load(Ordering::SeqCst);
    assert!(idle_turns <= 3, "spun while idle: {idle_turns} turns");
    running.stop();

    // Idle with a deadline far off, a notify still wakes it (within the window).
    let far_off = Echo {
        deadline_in: Some(Duration::from_secs(30)),
        ..Echo::new()
    };
    let running = Running::start(EngineKind::Uring, "127.0.0.1:0", far_off, &coalescing(1000));
    first_turn(&running);
    thread::sleep(Duration::from_millis(50));
    let before = running.turns.load(Ordering::SeqCst);
    running.notifier.notify();
    running.turn_past(before, Duration::from_secs(5), "notify did not wake it");
    running.stop();
}

#[test]
fn a_coalescing_uring_engine_takes_datagrams_that_trickle_in_few_turns_at_a_time() {
    if !coalescing_runs() {
        return;
    }
    // Without coalescing each of these datagrams, 1 ms apart, wakes the engine for a turn of
    // its own (40 turns for the 20 and their echoes). With a 50 ms window the first, after
    // the engine slept longer than that, wakes it at once (not at the 1 s fallback of a wait
    // without deadline); the rest wait for a window's end together.
    let running = Running::start(
        EngineKind::Uring,
        "127.0.0.1:0",
        Echo::new(),
        &coalescing(50_000),
    );
    first_turn(&running);
    thread::sleep(Duration::from_millis(100));
    let before = running.turns.load(Ordering::SeqCst);
    let client = client("127.0.0.1:0");
    let mut buffer = [0u8; 2048];
    let sent = Instant::now();
    client.send_to(&payload(0, 100), running.addr).unwrap();
    let (len, _) = recv(&client, &mut buffer).expect("echo within 2 s");
    assert_eq!(&buffer[..len], payload(0, 100).as_slice());
    let first_echo = sent.elapsed();
    assert!(
        first_echo < Duration::from_millis(500),
        "the first datagram after a long sleep waited {first_echo:?}"
    );
    for i in 1..20 {
        client.send_to(&payload(i, 100), running.addr).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    for i in 1..20 {
        let (len, _) = recv(&client, &mut buffer).expect("echo within 2 s");
        assert_eq!(&buffer[..len], payload(i, 100).as_slice(), "echo {i}");
    }
    let turns = running.turns.load(Ordering::SeqCst) - before;
    let (counters, _) = running.stop();
    assert_eq!(counters.rx_datagrams, 20, "{counters:?}");
    assert!(turns <= 10, "{turns} turns for 20 datagrams");
}

#[test]
fn a_coalescing_uring_engine_does_not_hold_the_input_of_a_wide_fan_out() {
    if !coalescing_runs() {
        return;
    }
    // Each datagram goes to 100 destinations besides its echo (a broadcast's fan-out). A 50 ms
    // window would hold the 20 datagrams, 5 ms apart, and take several in one turn; without
    // it each wakes the engine for turns of its own.
    let sink = client("127.0.0.1:0");
    let fanning = Echo {
        also_to: Some(sink.local_addr().unwrap()),
        fan_out: 100,
        spread: true,
        ..Echo::new()
    };
    // Send slots for the whole fan-out, so that no transmit waits for one (which would count as
    // behind and end coalescing for another reason).
    let options = EngineOptions {
        uring_entries: 512,
        ..coalescing(50_000)
    };
    let running = Running::start(EngineKind::Uring, "127.0.0.1:0", fanning, &options);
    first_turn(&running);
    thread::sleep(Duration::from_millis(100));
    let before = running.turns.load(Ordering::SeqCst);
    let client = client("127.0.0.1:0");
    for i in 0..20 {
        client.send_to(&payload(i, 100), running.addr).unwrap();
        thread::sleep(Duration::from_millis(5));
    }
    let mut buffer = [0u8; 2048];
    for i in 0..20 {
        let (len, _) = recv(&client, &mut buffer).expect("echo within 2 s");
        assert_eq!(&buffer[..len], payload(i, 100).as_slice(), "echo {i}");
    }
    let turns = running.turns.load(Ordering::SeqCst) - before;
    running.stop();
    // Two turns each (the datagram's, then its sends' completions): 40. Coalesced, ~20.
    assert!(turns >= 30, "{turns} turns for 20 datagrams 5 ms apart");
}

#[test]
fn a_coalescing_uring_engine_keeps_deadlines_shorter_than_its_window() {
    if !coalescing_runs() {
        return;
    }
    // Each turn asks to be woken 1 ms later. A 10 ms window that held those waits would allow
    // at most one turn per 10 ms; kept, they come about every millisecond.
    let ticking = Echo {
        deadline_in: Some(Duration::from_millis(1)),
        ..Echo::new()
    };
    let running = Running::start(
        EngineKind::Uring,
        "127.0.0.1:0",
        ticking,
        &coalescing(ringcast_net::uring::MAX_COALESCE_US),
    );
    first_turn(&running);
    let (start, before) = (Instant::now(), running.turns.load(Ordering::SeqCst));
    thread::sleep(Duration::from_millis(300));
    let turns = running.turns.load(Ordering::SeqCst) - before;
    let windows = start.elapsed().as_millis() as usize / 10;
    running.stop();
    assert!(
        turns > 2 * windows + 2,
        "{turns} turns of 1 ms deadlines in {windows} windows of 10 ms"
    );
}

fn polling(us: u32) -> EngineOptions {
    EngineOptions {
        epoll_poll_rx_us: us,
        ..options()
    }
}

#[test]
fn a_polling_epoll_engine_echoes_and_takes_datagrams_on_its_own_schedule() {
    let running = Running::start(
        EngineKind::Epoll,
        "127.0.0.1:0",
        Echo::new(),
        &polling(1000),
    );
    echo_round_trip(EngineKind::Epoll, &client("127.0.0.1:0"), running.addr, 300);
    // Without a deadline it still wakes every interval: nothing else would take a datagram.
    let before = running.turns.load(Ordering::SeqCst);
    thread::sleep(Duration::from_millis(100));
    let idle_turns = running.turns.load(Ordering::SeqCst) - before;
    assert!(
        idle_turns >= 10,
        "only {idle_turns} turns in 100 ms of 1 ms polls"
    );
    let (counters, _) = running.stop();
    assert_eq!(counters.tx_datagrams, 300, "{counters:?}");

    // Datagrams do not wake it: five sent 1 ms apart during a 200 ms sleep are taken in one
    // turn (an engine that watches the socket takes a turn for each).
    let running = Running::start(
        EngineKind::Epoll,
        "127.0.0.1:0",
        Echo::new(),
        &polling(200_000),
    );
    first_turn(&running);
    let before = running.turns.load(Ordering::SeqCst);
    let client = client("127.0.0.1:0");
    let mut buffer = [0u8; 2048];
    for i in 0..5 {
        client.send_to(&payload(i, 100), running.addr).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    for i in 0..5 {
        let (len, _) = recv(&client, &mut buffer).expect("echo within 2 s");
        assert_eq!(&buffer[..len], payload(i, 100).as_slice(), "echo {i}");
    }
    let turns = running.turns.load(Ordering::SeqCst) - before;
    assert!(turns <= 2, "{turns} turns for 5 datagrams");
    running.stop();

    // A notify still wakes it, long before its next poll.
    let running = Running::start(
        EngineKind::Epoll,
        "127.0.0.1:0",
        Echo::new(),
        &polling(60_000_000),
    );
    first_turn(&running);
    let before = running.turns.load(Ordering::SeqCst);
    running.notifier.notify();
    running.turn_past(before, Duration::from_secs(5), "notify did not wake it");
    running.stop();
}

#[test]
fn gro_hands_coalesced_datagrams_over_one_by_one() {
    for_each_kind(|kind| {
        let mut echo = Echo::new();
        echo.silent = true;
        let gro = EngineOptions {
            gro: true,
            ..options()
        };
        let running = Running::start(kind, "127.0.0.1:0", echo, &gro);
        let sent = send_burst(kind, running.addr, 40, 1000, &options());
        assert!(sent.tx_gso_sends >= 1, "{kind:?}: {sent:?}");
        let start = Instant::now();
        while running.received.load(Ordering::SeqCst) < 40 {
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{kind:?}: burst not received"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let (counters, echo) = running.stop();
        assert_eq!(counters.rx_datagrams, 40, "{kind:?}: {counters:?}");
        assert!(counters.rx_gro_receives >= 1, "{kind:?}: {counters:?}");
        assert_eq!(echo.kept.len(), 40, "{kind:?}");
        for (i, data) in echo.kept.iter().enumerate() {
            assert_eq!(data, &payload(i, 1000), "{kind:?}: datagram {i}");
        }
    });
}

#[test]
fn a_slow_driver_and_a_dry_buffer_ring_do_not_stop_the_engine() {
    for_each_kind(|kind| {
        let tiny = EngineOptions {
            uring_buffers: 4,
            max_rx_per_turn: 16,
            ..options()
        };
        let mut echo = Echo::new();
        echo.slow = Duration::from_millis(5);
        echo.slow_for = 20;
        let running = Running::start(kind, "127.0.0.1:0", echo, &tiny);
        let server = running.addr;
        let blaster = UdpSocket::bind("127.0.0.1:0").unwrap();
        let datagram = [7u8; 100];
        for _ in 0..10_000 {
            // The engine's socket buffer may overflow: those datagrams are lost, fine.
            let _ = blaster.send_to(&datagram, server);
        }
        // Wait until the engine has caught up (nothing new for 100 ms).
        let mut last = running.received.load(Ordering::SeqCst);
        let start = Instant::now();
        loop {
            thread::sleep(Duration::from_millis(100));
            let now = running.received.load(Ordering::SeqCst);
            if now == last {
                break;
            }
            last = now;
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "{kind:?}: never caught up"
            );
        }
        assert!(last > 100, "{kind:?}: only {last} datagrams received");
        // Recovered: a fresh client gets every echo.
        echo_round_trip(kind, &client("127.0.0.1:0"), server, 200);
        let (counters, _) = running.stop();
        eprintln!("{kind:?}: {counters:?}");
        if kind == EngineKind::Uring {
            assert!(counters.rx_no_buffers > 0, "{kind:?}: {counters:?}");
        } else {
            assert_eq!(counters.rx_no_buffers, 0, "{kind:?}: {counters:?}");
        }
    });
}

#[test]
fn garbage_from_many_sockets_does_not_disturb_an_echo() {
    for_each_kind(|kind| {
        let running = Running::start(kind, "127.0.0.1:0", Echo::new(), &options());
        let server = running.addr;
        let stop = Arc::new(AtomicBool::new(false));
        let flooded = Arc::new(AtomicUsize::new(0));
        let flooders: Vec<_> = (0..3u64)
            .map(|seed| {
                let (stop, flooded) = (stop.clone(), flooded.clone());
                thread::spawn(move || {
                    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                    let mut state = 0x9e37_79b9_7f4a_7c15 ^ (seed + 1);
                    let mut next = move || {
                        state ^= state << 13;
                        state ^= state >> 7;
                        state ^= state << 17;
                        state
                    };
                    let mut buffer = [0u8; 3000];
                    let mut sent = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let len = (next() % 3000) as usize;
                        for byte in &mut buffer[..len] {
                            *byte = next() as u8;
                        }
                        let _ = socket.send_to(&buffer[..len], server);
                        sent += 1;
                        flooded.fetch_add(1, Ordering::SeqCst);
                        // A flood the engine can keep up with on a small machine (two
                        // engines run at once): what is tested is that garbage is handled, not
                        // what overload loses.
                        if sent.is_multiple_of(8) {
                            thread::sleep(Duration::from_millis(1));
                        }
                    }
                    sent
                })
            })
            .collect();
        // The echo runs while the flood is under way, whatever the scheduler does.
        let start = Instant::now();
        while flooded.load(Ordering::SeqCst) < 200 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "flooders never started"
            );
            thread::sleep(Duration::from_millis(1));
        }
        let client = client("127.0.0.1:0");
        echo_round_trip(kind, &client, server, 300);
        stop.store(true, Ordering::SeqCst);
        let garbage: usize = flooders.into_iter().map(|f| f.join().unwrap()).sum();
        let (counters, _) = running.stop();
        assert!(garbage >= 200, "{kind:?}: only {garbage} garbage datagrams");
        assert!(counters.rx_datagrams >= 300, "{kind:?}: {counters:?}");
    });
}

#[test]
fn uring_zero_copy_sends_echo() {
    if !kinds().contains(&EngineKind::Uring) {
        return;
    }
    let zero_copy = EngineOptions {
        uring_zero_copy: true,
        ..options()
    };
    let counters = uring_echo(&zero_copy);
    assert_eq!(counters.tx_datagrams, 300, "{counters:?}");
    let to = client("127.0.0.1:0");
    let counters = send_burst(
        EngineKind::Uring,
        to.local_addr().unwrap(),
        10,
        1200,
        &zero_copy,
    );
    assert_eq!(counters.tx_gso_sends, 1, "{counters:?}");
    let mut buffer = [0u8; 4096];
    for i in 0..10 {
        let (len, _) = recv(&to, &mut buffer).expect("datagram within 2 s");
        assert_eq!(&buffer[..len], payload(i, 1200).as_slice(), "datagram {i}");
    }
}

#[test]
fn an_engine_runs_again_on_another_thread() {
    for_each_kind(|kind| {
        let running = Running::start(kind, "127.0.0.1:0", Echo::new(), &options());
        let server = running.addr;
        let client = client("127.0.0.1:0");
        echo_round_trip(kind, &client, server, 20);
        let (mut engine, _) = running.stop_engine();
        // Datagrams sent while no run is going wait for the next run.
        client.send_to(&payload(0, 10), server).unwrap();
        let mut echo = Echo::new();
        let stop = echo.stop.clone();
        let received = echo.received.clone();
        let waiter = thread::spawn(move || {
            let start = Instant::now();
            while received.load(Ordering::SeqCst) < 21 && start.elapsed() < Duration::from_secs(2) {
                thread::sleep(Duration::from_millis(1));
            }
            stop.store(true, Ordering::SeqCst);
        });
        // This thread, not the one of the first run; stop once the echo was handed over.
        echo.received.store(20, Ordering::SeqCst);
        let result = run_until_stopped(&mut *engine, &mut echo);
        waiter.join().unwrap();
        result.unwrap_or_else(|e| panic!("{kind:?}: second run failed: {e}"));
        let mut buffer = [0u8; 64];
        let (len, _) = recv(&client, &mut buffer).expect("echo within 2 s");
        assert_eq!(&buffer[..len], payload(0, 10).as_slice(), "{kind:?}");
    });
}

/// Run until the driver's stop flag is set; the engine polls it every 10 ms.
fn run_until_stopped(engine: &mut dyn Engine, echo: &mut Echo) -> io::Result<()> {
    struct Polling<'a>(&'a mut Echo);
    impl Driver for Polling<'_> {
        fn on_datagram(
            &mut self,
            now: Instant,
            source: SocketAddr,
            destination: SocketAddr,
            data: &[u8],
            tx: &mut TxQueue,
        ) {
            self.0.on_datagram(now, source, destination, data, tx);
        }
        fn on_turn(&mut self, now: Instant, tx: &mut TxQueue) -> Turn {
            match self.0.on_turn(now, tx) {
                Turn::Stop => Turn::Stop,
                Turn::Wait(_) => Turn::Wait(Some(now + Duration::from_millis(10))),
            }
        }
    }
    engine.run(&mut Polling(echo))
}

#[test]
fn no_allocation_per_datagram_in_steady_state() {
    for_each_kind(|kind| {
        let echo = Echo::new();
        let count = echo.count_allocations.clone();
        let allocations = echo.allocations.clone();
        let running = Running::start(kind, "127.0.0.1:0", echo, &options());
        let server = running.addr;
        let client = client("127.0.0.1:0");
        let datagram = payload(1, 1200);
        let mut buffer = [0u8; 2048];
        let mut round = |count: usize| {
            for _ in 0..count / 16 {
                for _ in 0..16 {
                    client.send_to(&datagram, server).unwrap();
                }
                for _ in 0..16 {
                    recv(&client, &mut buffer).expect("echo within 2 s");
                }
            }
        };
        round(1000);
        count.store(true, Ordering::SeqCst);
        // One turn to switch counting on, then the measured traffic.
        running.notifier.notify();
        thread::sleep(Duration::from_millis(20));
        round(2000);
        count.store(false, Ordering::SeqCst);
        running.notifier.notify();
        thread::sleep(Duration::from_millis(20));
        let (counters, _) = running.stop();
        let allocations = allocations.load(Ordering::SeqCst);
        assert_eq!(
            allocations, 0,
            "{kind:?}: {allocations} allocations for 2000 echoes, {counters:?}"
        );
    });
}
