//! Waking a sleeping engine from other threads: an eventfd plus a "sleeping" flag.
//!
//! The control plane and other shards put messages in a shard's mailbox (a channel the driver
//! owns), then call [`Notifier::notify`]. The engine's thread sleeps in `epoll_wait` on its
//! socket and on the notifier's eventfd.
//!
//! # Contract
//!
//! The engine loop runs, in this order:
//!
//! ```text
//! loop {
//!     notifier.arm();                 // sleeping = true (SeqCst)
//!     turn = driver.on_turn(now, tx); // drains the mailbox
//!     flush tx;
//!     if turn == Stop { break }
//!     epoll_wait(until the driver's deadline);
//!     notifier.disarm();              // sleeping = false: awake, notifications are free
//!     drain the eventfd if it was readable;
//!     receive batches (at most max_rx_per_turn datagrams), driver.on_datagram for each;
//!     flush tx;
//! }
//! ```
//!
//! A sender pushes its message first and notifies second; `notify` is
//! `if sleeping.swap(false) { write 1 to the eventfd }`. So:
//!
//! - a message pushed before `arm()` is seen by the `on_turn` right after it;
//! - a message pushed after `arm()` finds `sleeping == true` (unless another sender got there
//!   first and already wrote), so the eventfd is written and `epoll_wait` returns at once (a
//!   coalescing uring engine within its window, see `EngineOptions::uring_coalesce_us`); if
//!   `on_turn` already saw the message, that is one spurious wake-up, never a lost one;
//! - a message pushed while the engine is awake (between `disarm()` and the next `arm()`)
//!   costs no system call and is seen by the next `on_turn`.
//!
//! Many notifications during one engine turn cost at most one `write`. One notifier belongs to
//! one engine.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Wakes one engine from any thread. Cheap to clone; clones share the same eventfd.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    eventfd: OwnedFd,
    sleeping: AtomicBool,
}

impl Notifier {
    /// A new notifier around a fresh nonblocking eventfd.
    pub fn new() -> io::Result<Notifier> {
        // SAFETY: eventfd takes no pointers; the flags are valid constants.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd, is valid and owned by nothing else.
        let eventfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Notifier {
            inner: Arc::new(Inner {
                eventfd,
                sleeping: AtomicBool::new(false),
            }),
        })
    }

    /// Wake the engine if it is (about to be) asleep. Call after putting the message where the
    /// driver will find it.
    pub fn notify(&self) {
        if self.inner.sleeping.swap(false, Ordering::SeqCst) {
            let one: u64 = 1;
            // SAFETY: the fd is a valid eventfd owned by `self`; the buffer is 8 readable
            // bytes, as eventfd requires.
            let written = unsafe {
                libc::write(
                    self.inner.eventfd.as_raw_fd(),
                    (&one as *const u64).cast(),
                    size_of::<u64>(),
                )
            };
            if written < 0 {
                // EAGAIN means the counter is saturated: the engine has a wake-up pending anyway.
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::WouldBlock {
                    tracing::warn!(%error, "notifier: eventfd write failed");
                }
            }
        }
    }

    /// The eventfd, for the engine to poll.
    pub fn fd(&self) -> RawFd {
        self.inner.eventfd.as_raw_fd()
    }

    /// Engine side: about to run the driver's turn and then sleep; from now on a notification
    /// writes the eventfd. A full barrier, so the driver's mailbox reads that follow cannot be
    /// ordered before it.
    pub fn arm(&self) {
        self.inner.sleeping.swap(true, Ordering::SeqCst);
    }

    /// Engine side: awake again; notifications until the next [`Notifier::arm`] cost nothing
    /// and are picked up by the next driver turn.
    pub fn disarm(&self) {
        self.inner.sleeping.store(false, Ordering::SeqCst);
    }

    /// Engine side: reset the eventfd after it polled readable. Returns the number of
    /// notifications read (0 if none were pending).
    pub fn drain(&self) -> u64 {
        let mut total = 0u64;
        loop {
            let mut value: u64 = 0;
            // SAFETY: the fd is a valid eventfd owned by `self`; the buffer is 8 writable
            // bytes, as eventfd requires.
            let read = unsafe {
                libc::read(
                    self.inner.eventfd.as_raw_fd(),
                    (&mut value as *mut u64).cast(),
                    size_of::<u64>(),
                )
            };
            if read == size_of::<u64>() as isize {
                total = total.saturating_add(value);
                continue;
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return total,
                _ => {
                    tracing::warn!(%error, "notifier: eventfd read failed");
                    return total;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_writes_only_when_armed() {
        let notifier = Notifier::new().unwrap();
        notifier.notify();
        assert_eq!(notifier.drain(), 0, "not armed: no write");

        notifier.arm();
        for _ in 0..100 {
            notifier.clone().notify();
        }
        assert_eq!(notifier.drain(), 1, "many notifications, one write");
        assert_eq!(notifier.drain(), 0);

        notifier.arm();
        notifier.disarm();
        notifier.notify();
        assert_eq!(notifier.drain(), 0, "disarmed: no write");
    }

    #[test]
    fn notify_from_another_thread() {
        let notifier = Notifier::new().unwrap();
        notifier.arm();
        let remote = notifier.clone();
        std::thread::spawn(move || remote.notify()).join().unwrap();
        assert_eq!(notifier.drain(), 1);
    }
}
