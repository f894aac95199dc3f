//! Counters declared once.
//!
//! [`counters!`] declares a struct of plain `u64` counters, and with each field its metric
//! help text, its kind ([`Kind::Counter`] or [`Kind::Gauge`]) and, optionally, the JSON object
//! it is grouped under. From that one list it generates the struct and an implementation of
//! [`CounterSet`]: the descriptors of every counter in declaration order
//! ([`CounterSet::COUNTERS`]), their values in the same order, and a visit of both together
//! ([`CounterSet::visit`]). [`AtomicCounters`] is the same list as atomics, for a thread that
//! publishes its counters to others.
//!
//! The code that counts keeps writing plain fields (`stats.rtp_in += 1`); whatever reports
//! them (JSON, Prometheus text) visits the list instead of naming each field, so a new counter
//! is one new line in its declaration.
//!
//! ```
//! ringcast_counters::counters! {
//!     /// Counters of a toy.
//!     pub struct ToyCounters {
//!         /// Toys in the box.
//!         toys: Gauge("Toys in the box"),
//!         /// Toys thrown away, broken.
//!         broken: Counter("Toys thrown away: broken") in thrown.broken,
//!     }
//! }
//!
//! use ringcast_counters::{CounterSet, Kind};
//!
//! let mut c = ToyCounters::default();
//! c.broken += 2;
//! let mut seen = Vec::new();
//! c.visit(|counter, value| seen.push((counter.name, counter.kind, counter.group, counter.key, value)));
//! assert_eq!(seen, [
//!     ("toys", Kind::Gauge, None, "toys", 0),
//!     ("broken", Kind::Counter, Some("thrown"), "broken", 2),
//! ]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a counter's value means, as Prometheus types it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (until a restart): events, packets, bytes.
    Counter,
    /// Goes up and down: how many of something there are now.
    Gauge,
}

/// The declaration of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// The field's name; metric names are built from it.
    pub name: &'static str,
    /// One line saying what it counts (a metric's help text).
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The JSON object it is written under, if any (`drops` for `"drops": {...}`).
    pub group: Option<&'static str>,
    /// Its key in JSON: the field's name, or the key the declaration gave with its group.
    pub key: &'static str,
}

/// A struct of counters declared with [`counters!`].
pub trait CounterSet: Sized {
    /// Every counter, in declaration order.
    const COUNTERS: &'static [Counter];

    /// The values, in declaration order.
    fn values(&self) -> impl Iterator<Item = u64>;

    /// The counters with these values, in declaration order; counters past the end of
    /// `values` are zero.
    fn from_values(values: impl IntoIterator<Item = u64>) -> Self;

    /// Call `f` with each counter and its value, in declaration order.
    fn visit(&self, mut f: impl FnMut(&'static Counter, u64)) {
        for (counter, value) in Self::COUNTERS.iter().zip(self.values()) {
            f(counter, value);
        }
    }
}

/// A [`CounterSet`] as atomics: one thread stores its counters with [`AtomicCounters::store`]
/// (relaxed stores, no lock), others read them with [`AtomicCounters::load`]. Each value is
/// read whole; a load racing a store may see some counters from before it and some from after.
pub struct AtomicCounters<T> {
    values: Box<[AtomicU64]>,
    set: PhantomData<fn() -> T>,
}

impl<T: CounterSet> AtomicCounters<T> {
    /// Store every counter of `counters`.
    pub fn store(&self, counters: &T) {
        for (slot, value) in self.values.iter().zip(counters.values()) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// The counters as last stored (all zero before the first store).
    pub fn load(&self) -> T {
        T::from_values(self.values.iter().map(|v| v.load(Ordering::Relaxed)))
    }
}

impl<T: CounterSet> Default for AtomicCounters<T> {
    fn default() -> Self {
        AtomicCounters {
            values: T::COUNTERS.iter().map(|_| AtomicU64::new(0)).collect(),
            set: PhantomData,
        }
    }
}

impl<T: CounterSet + std::fmt::Debug> std::fmt::Debug for AtomicCounters<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AtomicCounters").field(&self.load()).finish()
    }
}

/// Declare a struct of `u64` counters and implement [`CounterSet`] for it.
///
/// Each field is `name: Kind("help")`, where `Kind` is `Counter` or `Gauge` (see [`Kind`]) and
/// the help is one line; `in group.key` after it writes the counter as `key` inside the JSON
/// object `group` instead of as `name` at the top (its metric name is still built from
/// `name`). Doc comments and attributes on the struct and its fields are kept. The struct
/// derives `Debug`, `Clone`, `Default`, `PartialEq` and `Eq`; add others (`Copy`) with an
/// attribute. Every field is `pub`.
///
/// ```
/// ringcast_counters::counters! {
///     /// Counters of a queue.
///     #[derive(Copy)]
///     pub struct QueueCounters {
///         /// Items waiting now.
///         waiting: Gauge("Items waiting"),
///         /// Items dropped because the queue was full.
///         drop_full: Counter("Items dropped: the queue was full") in drops.full,
///     }
/// }
/// # let _ = QueueCounters::default();
/// ```
#[macro_export]
macro_rules! counters {
    (@group) => { None };
    (@group $group:ident) => { Some(stringify!($group)) };
    (@key $field:ident) => { stringify!($field) };
    (@key $field:ident $key:ident) => { stringify!($key) };
    (
        $(#[$attr:meta])*
        $vis:vis struct $name:ident {
            $(
                $(#[$field_attr:meta])*
                $field:ident : $kind:ident ( $help:literal ) $(in $group:ident . $key:ident)?
            ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        $vis struct $name {
            $(
                $(#[$field_attr])*
                pub $field: u64,
            )*
        }

        impl $crate::CounterSet for $name {
            const COUNTERS: &'static [$crate::Counter] = &[
                $(
                    $crate::Counter {
                        name: stringify!($field),
                        help: $help,
                        kind: $crate::Kind::$kind,
                        group: $crate::counters!(@group $($group)?),
                        key: $crate::counters!(@key $field $($key)?),
                    },
                )*
            ];

            fn values(&self) -> impl Iterator<Item = u64> {
                [$(self.$field),*].into_iter()
            }

            fn from_values(values: impl IntoIterator<Item = u64>) -> Self {
                let mut values = values.into_iter();
                // Struct fields are evaluated in the order written: declaration order.
                $name {
                    $($field: values.next().unwrap_or(0),)*
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    counters! {
        /// Counters of a test.
        #[derive(Copy)]
        pub struct TestCounters {
            /// A gauge.
            open: Gauge("Open things"),
            /// A counter.
            packets: Counter("Packets seen"),
            /// A grouped counter.
            drop_bad: Counter("Packets dropped: bad") in drops.bad,
            /// Another one in the same group.
            drop_late: Counter("Packets dropped: late") in drops.late,
        }
    }

    fn sample() -> TestCounters {
        TestCounters {
            open: 1,
            packets: 2,
            drop_bad: 3,
            drop_late: 4,
        }
    }

    #[test]
    fn declarations_keep_order_names_help_kinds_and_groups() {
        let names: Vec<_> = TestCounters::COUNTERS.iter().map(|c| c.name).collect();
        assert_eq!(names, ["open", "packets", "drop_bad", "drop_late"]);
        assert_eq!(
            TestCounters::COUNTERS[0],
            Counter {
                name: "open",
                help: "Open things",
                kind: Kind::Gauge,
                group: None,
                key: "open",
            }
        );
        assert_eq!(TestCounters::COUNTERS[1].kind, Kind::Counter);
        assert_eq!(TestCounters::COUNTERS[1].key, "packets");
        assert_eq!(
            TestCounters::COUNTERS[3],
            Counter {
                name: "drop_late",
                help: "Packets dropped: late",
                kind: Kind::Counter,
                group: Some("drops"),
                key: "late",
            }
        );
    }

    #[test]
    fn visit_pairs_each_declaration_with_its_field() {
        let mut seen = Vec::new();
        sample().visit(|c, v| seen.push((c.name, v)));
        assert_eq!(
            seen,
            [
                ("open", 1),
                ("packets", 2),
                ("drop_bad", 3),
                ("drop_late", 4)
            ]
        );
    }

    #[test]
    fn from_values_is_the_inverse_of_values_and_zero_fills() {
        let c = sample();
        assert_eq!(TestCounters::from_values(c.values()), c);
        assert_eq!(
            TestCounters::from_values([7, 8]),
            TestCounters {
                open: 7,
                packets: 8,
                ..TestCounters::default()
            }
        );
    }

    #[test]
    fn atomic_mirror_stores_and_loads_every_counter() {
        let atomic = AtomicCounters::<TestCounters>::default();
        assert_eq!(atomic.load(), TestCounters::default());
        atomic.store(&sample());
        assert_eq!(atomic.load(), sample());
        let later = TestCounters {
            drop_late: 40,
            ..sample()
        };
        atomic.store(&later);
        assert_eq!(atomic.load(), later);
        assert!(format!("{atomic:?}").contains("drop_late: 40"));
    }

    #[test]
    fn atomic_mirror_is_read_from_another_thread() {
        let atomic = std::sync::Arc::new(AtomicCounters::<TestCounters>::default());
        let writer = atomic.clone();
        std::thread::spawn(move || writer.store(&sample()))
            .join()
            .unwrap();
        assert_eq!(atomic.load(), sample());
    }
}
