use std::collections::VecDeque;
use std::iter::Sum;
use std::ops::{AddAssign, SubAssign};
use std::time::{Duration, Instant};

/// Holds a history values of type T for up to a certain Duration, as well as the
/// cumulated (total) value.
#[derive(Debug)]
pub(crate) struct ValueHistory<T> {
    value: T,
    history: VecDeque<(Instant, T)>,
    max_time: Duration,
}

const DEFAULT_VALUE_HISTORY_DURATION: Duration = Duration::from_secs(1);

/// Values closer than this to the newest entry are added to it (ringcast patch, see `push`).
const COALESCE: Duration = Duration::from_millis(10);

impl<T: Default> Default for ValueHistory<T> {
    fn default() -> Self {
        Self {
            value: Default::default(),
            history: Default::default(),
            max_time: DEFAULT_VALUE_HISTORY_DURATION,
        }
    }
}

impl<T> ValueHistory<T>
where
    T: Copy + AddAssign + SubAssign + Sum,
{
    /// Adds a timed value
    /// Note: time should always monotonically increase in subsequent calls to add()
    ///
    /// ringcast patch: a value within [`COALESCE`] of the newest entry is added to that entry
    /// instead of getting its own, so a second of history is at most ~100 entries, not one
    /// per packet (a 2.5 Mbit/s stream kept ~230 of 24 bytes, and a burst grew the deque for
    /// good). The sum is the same; an entry ages out by its first value's time, so the window
    /// is exact to within [`COALESCE`].
    pub fn push(&mut self, t: Instant, v: T) {
        self.value += v;
        if let Some((first, sum)) = self.history.back_mut() {
            if t >= *first && t.duration_since(*first) < COALESCE {
                *sum += v;
                return;
            }
        }
        self.history.push_back((t, v));
    }

    /// Returns the sum of all values in the history up to max_time. Might
    /// return stale value unless [`ValueHistory::purge_old`] is called before.
    pub fn sum(&self) -> T {
        self.value
    }

    /// Recalculates sum purging values older than `now - max_time`.
    pub fn purge_old(&mut self, now: Instant) {
        while {
            let Some(front_t) = self.history.front().map(|v| v.0) else {
                return;
            };
            now.duration_since(front_t) > self.max_time
        } {
            if let Some((_, v)) = self.history.pop_front() {
                self.value -= v;
            }
        }
    }
}

#[allow(clippy::unchecked_time_subtraction)]
#[cfg(test)]
mod test {
    use std::time::{Duration, Instant};

    use super::ValueHistory;

    #[test]
    fn with_value_test() {
        let now = Instant::now();

        let mut h = ValueHistory {
            value: 11,
            max_time: Duration::from_secs(1),
            ..Default::default()
        };

        assert_eq!(h.sum(), 11);
        h.purge_old(now);
        assert_eq!(h.sum(), 11);
        h.push(now - Duration::from_millis(1500), 22);
        h.push(now - Duration::from_millis(500), 22);
        assert_eq!(h.sum(), 11 + 22 + 22);
        h.purge_old(now);
        assert_eq!(h.sum(), 11 + 22);
        h.push(now, 0);
        assert_eq!(h.sum(), 11 + 22);
    }

    #[test]
    fn test() {
        let now = Instant::now();
        let mut h = ValueHistory::default();

        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(1500), 22);
        assert_eq!(h.sum(), 22);
        h.purge_old(now);
        assert_eq!(h.sum(), 0);
        h.push(now - Duration::from_millis(700), 22);
        h.push(now - Duration::from_millis(500), 33);
        assert_eq!(h.sum(), 22 + 33);
        h.purge_old(now);
        assert_eq!(h.sum(), 22 + 33);

        h.purge_old(now + Duration::from_millis(400));
        assert_eq!(h.sum(), 33);
        h.purge_old(now + Duration::from_millis(600));
        assert_eq!(h.sum(), 0);
    }

    /// ringcast patch: values close in time share an entry; the sum and the window hold.
    #[test]
    fn close_values_share_an_entry() {
        let now = Instant::now();
        let mut h = ValueHistory::default();
        for i in 0..100 {
            h.push(now + Duration::from_micros(i * 100), 1u64);
        }
        h.push(now + Duration::from_millis(10), 5);
        h.push(now + Duration::from_millis(25), 7);
        assert_eq!(h.history.len(), 3);
        assert_eq!(h.sum(), 100 + 5 + 7);
        h.purge_old(now + Duration::from_millis(1005));
        assert_eq!(h.sum(), 5 + 7);
        h.purge_old(now + Duration::from_millis(1020));
        assert_eq!(h.sum(), 7);
    }
}
