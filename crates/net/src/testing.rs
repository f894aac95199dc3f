//! Pieces the engines' unit tests share.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use crate::{Driver, Turn, TxQueue};

/// A driver that ignores datagrams, waits once, and stops on its second turn (so `run`
/// returns after one wake-up, having flushed what was queued).
pub(crate) struct OneWait(usize);

impl OneWait {
    pub(crate) fn new() -> OneWait {
        OneWait(0)
    }
}

impl Driver for OneWait {
    fn on_datagram(&mut self, _: Instant, _: SocketAddr, _: SocketAddr, _: &[u8], _: &mut TxQueue) {
    }

    fn on_turn(&mut self, _: Instant, _: &mut TxQueue) -> Turn {
        self.0 += 1;
        if self.0 > 1 {
            Turn::Stop
        } else {
            Turn::Wait(None)
        }
    }
}

/// A loopback client socket that gives up reading after 2 s.
pub(crate) fn client() -> UdpSocket {
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client
}
