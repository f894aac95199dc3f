//! What a run has counted: per-worker packet counters, session outcomes, errors, join times and
//! latency samples, shared by the coordinator, the media workers and the signalling threads.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use hdrhistogram::Histogram;

use crate::stats;

/// Counters one worker publishes (cumulative).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    /// Media packets written by publishers.
    pub sent: AtomicU64,
    /// Media packets received by viewers.
    pub received: AtomicU64,
    /// Bytes received by viewers (payload + RTP header).
    pub bytes: AtomicU64,
    /// Packets expected by viewers.
    pub expected: AtomicU64,
    /// Duplicates.
    pub duplicates: AtomicU64,
    /// Reorders.
    pub reorders: AtomicU64,
    /// Payloads that failed verification.
    pub corrupt: AtomicU64,
}

/// What a run has counted so far: written by the workers and the signalling threads, read by
/// the coordinator.
#[derive(Debug)]
pub struct Tally {
    /// One per worker.
    pub workers: Vec<WorkerCounters>,
    /// Latency samples (µs) not yet taken by the coordinator.
    pub latency: Mutex<Histogram<u64>>,
    /// Errors by cause.
    pub errors: Mutex<BTreeMap<String, u64>>,
    /// Viewers' join times (ms).
    pub joins_ms: Mutex<Vec<f64>>,
    /// Viewers' times to first frame (ms): POST to their first complete keyframe.
    pub first_frames_ms: Mutex<Vec<f64>>,
    /// The URLs of the sessions the server accepted, to leave at the end.
    pub locations: Mutex<Vec<String>>,
    /// Publishers that got media flowing.
    pub publishers_connected: AtomicUsize,
    /// Publishers that never did.
    pub publishers_failed: AtomicUsize,
    /// Viewers that got media flowing.
    pub viewers_connected: AtomicUsize,
    /// Viewers that never did.
    pub viewers_failed: AtomicUsize,
    /// Sessions with media flowing now (connected minus stalled or gone).
    pub active: AtomicUsize,
    /// What each group call participant received (`rooms`), left by the workers as the
    /// sessions end.
    pub members: Mutex<Vec<ringcast_loadtest::summary::ParticipantReport>>,
}

impl Tally {
    /// Nothing counted yet, with counters for `workers` workers.
    pub fn new(workers: usize) -> Self {
        Tally {
            workers: (0..workers).map(|_| WorkerCounters::default()).collect(),
            latency: Mutex::new(stats::histogram()),
            errors: Mutex::default(),
            joins_ms: Mutex::default(),
            first_frames_ms: Mutex::default(),
            locations: Mutex::default(),
            publishers_connected: AtomicUsize::new(0),
            publishers_failed: AtomicUsize::new(0),
            viewers_connected: AtomicUsize::new(0),
            viewers_failed: AtomicUsize::new(0),
            active: AtomicUsize::new(0),
            members: Mutex::default(),
        }
    }

    /// Count an error by cause.
    pub fn error(&self, cause: &str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(cause.to_string()).or_default() += 1;
        }
    }

    /// A session that never got media failed.
    pub fn fail(&self, publisher: bool, cause: &str) {
        self.error(cause);
        if publisher {
            self.publishers_failed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.viewers_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session got media flowing.
    pub fn connected(&self, publisher: bool) {
        if publisher {
            self.publishers_connected.fetch_add(1, Ordering::Relaxed);
        } else {
            self.viewers_connected.fetch_add(1, Ordering::Relaxed);
        }
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A connected session stopped getting media (or was dropped).
    pub fn lost_active(&self, _publisher: bool) {
        let _ = self
            .active
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |a| a.checked_sub(1));
    }

    /// A stalled session gets media again.
    pub fn regained_active(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// A viewer's join time.
    pub fn joined(&self, ms: f64) {
        if let Ok(mut joins) = self.joins_ms.lock() {
            joins.push(ms);
        }
    }

    /// Count a viewer's time to first frame.
    pub fn first_frame(&self, ms: f64) {
        if let Ok(mut first_frames) = self.first_frames_ms.lock() {
            first_frames.push(ms);
        }
    }

    /// The workers' counters summed.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for w in &self.workers {
            t.sent += w.sent.load(Ordering::Relaxed);
            t.received += w.received.load(Ordering::Relaxed);
            t.bytes += w.bytes.load(Ordering::Relaxed);
            t.expected += w.expected.load(Ordering::Relaxed);
            t.duplicates += w.duplicates.load(Ordering::Relaxed);
            t.reorders += w.reorders.load(Ordering::Relaxed);
            t.corrupt += w.corrupt.load(Ordering::Relaxed);
        }
        t
    }

    /// Take the latency samples not yet taken (the tally's histogram starts empty again).
    pub fn take_latency(&self) -> Histogram<u64> {
        let mut out = stats::histogram();
        if let Ok(mut h) = self.latency.lock() {
            let _ = out.add(&*h);
            h.reset();
        }
        out
    }
}

/// All workers' counters at one moment (the fields of [`WorkerCounters`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    /// Media packets written by publishers.
    pub sent: u64,
    /// Media packets received by viewers.
    pub received: u64,
    /// Bytes received by viewers (payload + RTP header).
    pub bytes: u64,
    /// Packets expected by viewers.
    pub expected: u64,
    /// Duplicates.
    pub duplicates: u64,
    /// Reorders.
    pub reorders: u64,
    /// Payloads that failed verification.
    pub corrupt: u64,
}

impl Totals {
    /// What was counted after `before`.
    pub fn since(self, before: Totals) -> Totals {
        Totals {
            sent: self.sent.saturating_sub(before.sent),
            received: self.received.saturating_sub(before.received),
            bytes: self.bytes.saturating_sub(before.bytes),
            expected: self.expected.saturating_sub(before.expected),
            duplicates: self.duplicates.saturating_sub(before.duplicates),
            reorders: self.reorders.saturating_sub(before.reorders),
            corrupt: self.corrupt.saturating_sub(before.corrupt),
        }
    }
}
