//! Timers: one heap of deadlines, at most one live entry per participant.
//!
//! A participant's peer reports its next deadline when it is polled; the earlier of that and
//! its connect deadline replaces what it waited for, earlier or later. A poll answers for
//! everything the peer has to do, so a deadline that moved later (str0m did the due work while
//! taking a datagram) leaves nothing to wake it for at the old one: 8 % of the timeout passes
//! at `rooms-30x6` were such wake-ups while an earlier deadline was kept.
//! Entries are never searched for: each carries a generation, and one whose generation is no
//! longer its participant's (it was rescheduled, or it left) is stale and skipped when it
//! comes up. So a leaving participant costs O(1) and a push O(log n), per forwarded packet
//! as before. Stale entries are dropped all at once when they pass half the heap (each is paid
//! for once), and the heap is emptied when no participant waits, so an idle shard's heap ends
//! empty.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use super::{Output, Shard, ShardEvent};

/// Below this many entries the heap is not compacted: stale entries go as they come up.
const COMPACT_FROM: usize = 64;

/// The shard's deadlines, by participant key.
#[derive(Default)]
pub(super) struct Timers {
    /// (when, participant key, generation). Reversed: the earliest comes first.
    heap: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Per participant key: the deadline it waits for and its entry's generation.
    due: Vec<Option<(Instant, u64)>>,
    /// Participants waiting for a deadline: the live entries, one each; the rest are stale.
    live: usize,
    next_generation: u64,
}

impl Timers {
    /// Participant `key` wants to be woken at `at`, and at nothing else: what it waited for
    /// before is replaced, earlier or later.
    pub(super) fn schedule(&mut self, key: usize, at: Instant) {
        if key >= self.due.len() {
            self.due.resize(key + 1, None);
        }
        let previous = self.due[key];
        if previous.is_some_and(|(waits, _)| waits == at) {
            return;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        self.due[key] = Some((at, generation));
        self.heap.push(Reverse((at, key, generation)));
        match previous {
            None => self.live += 1,
            // Its earlier entry is stale now.
            Some(_) => self.compact_if_stale(),
        }
    }

    /// Participant `key` waits for nothing any more (it leaves); its entry stays, stale.
    pub(super) fn cancel(&mut self, key: usize) {
        if self.due.get_mut(key).and_then(Option::take).is_some() {
            self.live -= 1;
            self.compact_if_stale();
        }
    }

    /// The participant whose deadline is the earliest, if that is at or before `now`; it waits
    /// for nothing from now on.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((at, key, generation))) = self.heap.peek() {
            if at > now {
                return None;
            }
            self.heap.pop();
            if self.is_live(at, key, generation) {
                self.due[key] = None;
                self.live -= 1;
                return Some(key);
            }
        }
        None
    }

    /// The earliest deadline a participant waits for. Drops stale entries on the way.
    pub(super) fn next(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, key, generation))) = self.heap.peek() {
            if self.is_live(at, key, generation) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Nobody waits for anything.
    pub(super) fn clear(&mut self) {
        self.heap.clear();
        self.due.clear();
        self.live = 0;
    }

    /// Entries in the heap, stale ones included.
    pub(super) fn len(&self) -> usize {
        self.heap.len()
    }

    fn is_live(&self, at: Instant, key: usize, generation: u64) -> bool {
        self.due.get(key) == Some(&Some((at, generation)))
    }

    /// Drop the stale entries if they are more than half the heap, or all there are.
    fn compact_if_stale(&mut self) {
        if self.live == 0 {
            self.heap.clear();
            return;
        }
        let stale = self.heap.len() - self.live;
        if self.heap.len() >= COMPACT_FROM && stale > self.live {
            let due = &self.due;
            self.heap.retain(|&Reverse((at, key, generation))| {
                due.get(key) == Some(&Some((at, generation)))
            });
        }
    }
}

impl Shard {
    /// Time passed: touch only the participants whose deadline passed.
    pub(super) fn timeout(&mut self, now: Instant) {
        while let Some(key) = self.timers.pop_due(now) {
            let Some(p) = self.participants.get_mut(key) else {
                continue;
            };
            let replay_due = p.replay_at.is_some_and(|r| r <= now);
            p.peer.handle_timeout(now);
            if replay_due {
                self.replay_step(key, now);
            }
            self.choose_layer_if_due(now, key);
            self.enqueue(key);
        }
    }

    /// A participant's peer was polled and wants to be woken at `at`: keep the earlier of that
    /// and its connect deadline. A participant whose connect deadline passed is removed.
    pub(super) fn schedule(&mut self, key: usize, at: Instant, now: Instant) {
        let Some(p) = self.participants.get_mut(key) else {
            return;
        };
        if p.connect_by.is_some_and(|by| now >= by) {
            let session = p.session;
            self.remove(key, now);
            self.out
                .push_back(Output::Event(ShardEvent::SessionClosed { session }));
            return;
        }
        let at = p.connect_by.map_or(at, |by| at.min(by));
        let at = p.replay_at.map_or(at, |r| at.min(r));
        self.timers.schedule(key, at);
    }

    /// The earliest deadline of a participant still here.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        self.timers.next()
    }
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "a test picks its own base instant"
)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn drain(timers: &mut Timers, now: Instant) -> Vec<usize> {
        std::iter::from_fn(|| timers.pop_due(now)).collect()
    }

    #[test]
    fn a_removed_participant_never_comes_up() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut timers = Timers::default();
        for key in 0..100 {
            timers.schedule(key, at(1000 + key as u64));
        }
        // Key 7 leaves: its entry stays in the heap (no search for it), skipped when it comes up.
        timers.cancel(7);
        assert_eq!(timers.len(), 100);
        // Key 8 leaves and a newcomer takes its key, with a later deadline than the old one.
        timers.cancel(8);
        timers.schedule(8, at(5000));
        // Key 9 moves earlier: its old entry is stale.
        timers.schedule(9, at(10));
        // Then later (its peer did at 10 what it waited for, while handling a datagram): the
        // entry at 10 is stale too, and nothing fires before 20.
        timers.schedule(9, at(20));

        assert_eq!(timers.next(), Some(at(20)));
        assert!(drain(&mut timers, at(19)).is_empty());
        assert_eq!(drain(&mut timers, at(999)), [9]);
        let fired = drain(&mut timers, at(1200));
        let expected: Vec<usize> = (0..100).filter(|k| ![7, 8, 9].contains(k)).collect();
        assert_eq!(
            fired, expected,
            "in deadline order, 7, 8 and 9's old entry skipped"
        );
        assert_eq!(timers.next(), Some(at(5000)));
        assert_eq!(drain(&mut timers, at(5000)), [8]);
        assert_eq!((timers.next(), timers.len()), (None, 0));
    }

    #[test]
    fn many_removals_keep_the_heap_bounded() {
        let start = Instant::now();
        let mut timers = Timers::default();
        // Ten participants stay, waiting far ahead; 10,000 come, wait and leave before their
        // deadline, and the staying ones' deadlines keep moving earlier.
        for key in 0..10 {
            timers.schedule(key, start + Duration::from_secs(3600));
        }
        let mut largest = 0;
        for i in 0..10_000u64 {
            let key = 10 + (i % 50) as usize;
            timers.schedule(
                key,
                start + Duration::from_secs(60) + Duration::from_millis(i),
            );
            timers.cancel(key);
            timers.schedule(
                (i % 10) as usize,
                start + Duration::from_secs(3599) - Duration::from_millis(i),
            );
            largest = largest.max(timers.len());
        }
        assert!(largest <= COMPACT_FROM + 1, "the heap grew to {largest}");
        let fired = drain(&mut timers, start + Duration::from_secs(3600));
        assert_eq!(fired.len(), 10);
        // Everyone leaves: nothing stays behind.
        timers.schedule(3, start);
        timers.cancel(3);
        assert_eq!(timers.len(), 0);
    }
}
