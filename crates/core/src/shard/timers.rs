//! Timers: one heap of deadlines, one entry per participant and deadline it reported.
//!
//! A participant's peer reports its next deadline when it is polled; the earlier of that and
//! its connect deadline is pushed onto the heap. Entries are not removed when a participant is
//! rescheduled: one whose time is no longer the participant's `scheduled` one, or whose
//! participant left, is stale and skipped when it comes up. A leaving participant's entries are
//! dropped at once, so an idle shard's heap ends empty.

use std::cmp::Reverse;
use std::time::Instant;

use super::{Output, Shard, ShardEvent};
use crate::ids::SessionId;

/// A heap entry: (when, participant key, its session). Reversed: the earliest comes first.
pub(super) type Deadline = Reverse<(Instant, usize, SessionId)>;

impl Shard {
    /// Time passed: touch only the participants whose deadline passed.
    pub(super) fn timeout(&mut self, now: Instant) {
        while let Some(Reverse((at, key, session))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(p) = self.participants.get_mut(key) else {
                continue;
            };
            if p.session != session || p.scheduled != Some(at) {
                continue;
            }
            p.scheduled = None;
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
        if p.scheduled.is_none_or(|s| at < s) {
            p.scheduled = Some(at);
            self.timers.push(Reverse((at, key, p.session)));
        }
    }

    /// The earliest deadline of a participant still here. Drops stale entries on the way.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, key, session))) = self.timers.peek().copied() {
            match self.participants.get(key) {
                Some(p) if p.session == session && p.scheduled == Some(at) => {
                    return Some(at);
                }
                _ => {
                    self.timers.pop();
                }
            }
        }
        None
    }

    /// Drop a leaving participant's entries now.
    pub(super) fn unschedule(&mut self, key: usize, session: SessionId) {
        self.timers
            .retain(|Reverse((_, k, s))| !(*k == key && *s == session));
    }
}
