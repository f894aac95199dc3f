//! Where a new participant goes: a pure choice over the shards' loads, no state of its own.
//!
//! A stream lives on one shard while it fits (DESIGN §2): its viewers join the publisher's shard
//! until that shard holds [`Limits::affinity`] participants, then spill — first to a shard that
//! already gets a relay copy of the stream, so copies between cores stay few, then to the
//! least-loaded shard. Past the affinity limit everywhere, the least-loaded shard below the hard
//! limit takes it; past that, nobody does.

use crate::ids::ShardId;

/// The two per-shard limits placement works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Participants a shard takes for the streams it hosts before their new viewers spill.
    pub affinity: usize,
    /// Participants a shard takes at all.
    pub max: usize,
}

/// The shard for a viewer of a stream whose publisher is on `home`; `viewers[i]` is how many
/// viewers of that stream shard `i` holds or is taking. `None`: every shard is full.
pub fn viewer(
    load: &[usize],
    limits: Limits,
    home: Option<ShardId>,
    viewers: &[u32],
) -> Option<ShardId> {
    if let Some(home) = home
        && load.get(index(home)).is_some_and(|n| *n < limits.affinity)
    {
        return Some(home);
    }
    // A shard that already gets this stream's copy, the one holding most of its viewers.
    let sharing = (0..load.len())
        .filter(|&i| Some(shard(i)) != home && viewers.get(i).is_some_and(|v| *v > 0))
        .filter(|&i| load[i] < limits.affinity)
        .max_by_key(|&i| (viewers[i], std::cmp::Reverse(i)));
    sharing
        .map(shard)
        .or_else(|| least_loaded(load, limits.affinity))
        .or_else(|| least_loaded(load, limits.max))
}

/// The shard for a publisher: `prefer` (the shard of the publisher it replaces, or the one
/// holding most of the stream's waiting viewers) while it has room below the affinity limit,
/// else the least-loaded shard. `None`: every shard is full.
pub fn publisher(load: &[usize], limits: Limits, prefer: Option<ShardId>) -> Option<ShardId> {
    if let Some(p) = prefer
        && load.get(index(p)).is_some_and(|n| *n < limits.affinity)
    {
        return Some(p);
    }
    least_loaded(load, limits.affinity).or_else(|| least_loaded(load, limits.max))
}

/// The least-loaded shard below `limit` (the lowest index among equals).
fn least_loaded(load: &[usize], limit: usize) -> Option<ShardId> {
    load.iter()
        .enumerate()
        .filter(|(_, n)| **n < limit)
        .min_by_key(|(i, n)| (**n, *i))
        .map(|(i, _)| shard(i))
}

fn index(s: ShardId) -> usize {
    usize::from(s.0)
}

fn shard(i: usize) -> ShardId {
    ShardId(i as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        affinity: 3,
        max: 5,
    };

    #[test]
    fn viewers_stay_with_their_publisher_until_its_affinity_limit() {
        assert_eq!(
            viewer(&[1, 0], LIMITS, Some(ShardId(0)), &[0, 0]),
            Some(ShardId(0))
        );
        assert_eq!(
            viewer(&[2, 0], LIMITS, Some(ShardId(0)), &[1, 0]),
            Some(ShardId(0))
        );
        // Shard 0 reached it: the viewer spills to the least-loaded shard.
        assert_eq!(
            viewer(&[3, 1, 0], LIMITS, Some(ShardId(0)), &[2, 0, 0]),
            Some(ShardId(2))
        );
    }

    #[test]
    fn spilled_viewers_go_where_the_stream_already_has_a_copy() {
        // Shard 2 is less loaded, but shard 1 already gets the relay copy.
        assert_eq!(
            viewer(&[3, 2, 0], LIMITS, Some(ShardId(0)), &[2, 1, 0]),
            Some(ShardId(1))
        );
        // Unless that shard is at its affinity limit too.
        assert_eq!(
            viewer(&[3, 3, 1], LIMITS, Some(ShardId(0)), &[2, 2, 0]),
            Some(ShardId(2))
        );
    }

    #[test]
    fn past_affinity_everywhere_the_least_loaded_below_the_maximum_takes_it() {
        assert_eq!(
            viewer(&[4, 3], LIMITS, Some(ShardId(0)), &[3, 3]),
            Some(ShardId(1))
        );
        assert_eq!(viewer(&[5, 5], LIMITS, Some(ShardId(0)), &[4, 5]), None);
        // Without a publisher (it is restarting), the least-loaded shard.
        assert_eq!(viewer(&[2, 1], LIMITS, None, &[0, 0]), Some(ShardId(1)));
    }

    #[test]
    fn publishers_go_to_the_preferred_shard_or_the_least_loaded() {
        assert_eq!(publisher(&[2, 1], LIMITS, None), Some(ShardId(1)));
        assert_eq!(publisher(&[0, 0], LIMITS, None), Some(ShardId(0)));
        assert_eq!(
            publisher(&[2, 1], LIMITS, Some(ShardId(0))),
            Some(ShardId(0))
        );
        assert_eq!(
            publisher(&[3, 1], LIMITS, Some(ShardId(0))),
            Some(ShardId(1))
        );
        assert_eq!(publisher(&[4, 5], LIMITS, None), Some(ShardId(0)));
        assert_eq!(publisher(&[5, 5], LIMITS, None), None);
    }
}
