//! The io_uring backend (being written).

use std::io;
use std::net::SocketAddr;

use crate::{Driver, Engine, EngineCounters, EngineKind, EngineOptions, Notifier};

/// Whether io_uring can run here.
pub fn probe() -> Result<(), String> {
    Err("the io_uring engine is not built yet".into())
}

/// A UDP socket driven by io_uring.
#[derive(Debug)]
pub struct UringEngine {
    local_addr: SocketAddr,
    counters: EngineCounters,
}

impl UringEngine {
    /// Bind a socket at `addr` and set up the ring.
    pub fn bind(
        _addr: SocketAddr,
        _notifier: &Notifier,
        _options: &EngineOptions,
    ) -> io::Result<UringEngine> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            probe().unwrap_err(),
        ))
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
    fn run(&mut self, _driver: &mut dyn Driver) -> io::Result<()> {
        Err(io::Error::new(io::ErrorKind::Unsupported, "not built"))
    }
}
