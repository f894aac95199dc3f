//! The shards' counters as `/api/stats` JSON and as `/metrics` text, both visited from their
//! declarations ([`ShardStats`], [`EngineCounters`]): a counter declared there shows up in both
//! without a line of its own here.
//!
//! `/metrics` is the Prometheus text format (0.0.4), encoded by `prometheus-client` from a
//! snapshot taken per scrape: each shard answers a stats command between two loop turns and
//! its engine counters are read from what it last published, so a scrape costs the shards no
//! more than that. A [`Collector`] encodes the snapshot with a `shard` label on every value.
//! Names are `ringcast_<field>` for the shard's counters and `ringcast_io_<field>` for its
//! engine's; counters get the `_total` suffix from the encoder (`ringcast_rtp_forwarded_total`),
//! gauges none (`ringcast_participants`).

use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use ringcast_core::ShardStats;
use ringcast_counters::{Counter, CounterSet, Kind};
use ringcast_engine::EngineCounters;

use crate::RefusalCounters;
use serde_json::{Map, Value};

/// The `Content-Type` of [`metrics_text`].
pub(super) const METRICS_CONTENT_TYPE: &str =
    prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// One shard's counters, as a request read them.
#[derive(Debug, Clone, Default)]
pub(super) struct ShardCounters {
    /// The shard's id (the `shard` label).
    pub(super) id: u16,
    /// What the shard counted.
    pub(super) stats: ShardStats,
    /// What its I/O engine counted.
    pub(super) io: EngineCounters,
}

/// A shard's `/api/stats` entry: `entry` (its id, socket, ...) with its counters added, the
/// engine's under `"io"`.
pub(super) fn shard_json(mut entry: Map<String, Value>, shard: &ShardCounters) -> Value {
    insert_json(&mut entry, &shard.stats);
    let mut io = Map::new();
    insert_json(&mut io, &shard.io);
    entry.insert("io".to_string(), io.into());
    entry.into()
}

/// Every shard's counters, and the server's refusals (`ringcast_refused_<reason>_total`, no
/// label), as Prometheus text.
pub(super) fn metrics_text(shards: Vec<ShardCounters>, refusals: RefusalCounters) -> String {
    let mut registry = prometheus_client::registry::Registry::with_prefix("ringcast");
    registry.register_collector(Box::new(Snapshot(shards, refusals)));
    let mut out = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        .expect("encoding into a String does not fail");
    out
}

/// Write `counters` into `object` as declared: each under its key, in the object named by its
/// group if it has one.
pub(super) fn insert_json<T: CounterSet>(object: &mut Map<String, Value>, counters: &T) {
    counters.visit(|counter, value| {
        let members = match counter.group {
            None => &mut *object,
            Some(group) => object
                .entry(group)
                .or_insert_with(|| Map::new().into())
                .as_object_mut()
                .expect("a counter group is not also a counter's key"),
        };
        members.insert(counter.key.to_string(), value.into());
    });
}

/// The counters of every shard, and the refusals, at one scrape.
#[derive(Debug)]
struct Snapshot(Vec<ShardCounters>, RefusalCounters);

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let shards = &self.0;
        encode_families(&mut encoder, "", shards.iter().map(|s| (s.id, &s.stats)))?;
        encode_families(&mut encoder, "io_", shards.iter().map(|s| (s.id, &s.io)))?;
        encode_unlabelled(&mut encoder, &self.1)
    }
}

/// One metric family per counter of `counters`, with one value and no label.
fn encode_unlabelled<T: CounterSet>(encoder: &mut DescriptorEncoder, counters: &T) -> fmt::Result {
    let mut result = Ok(());
    counters.visit(|counter, value| {
        if result.is_ok() {
            result = encode_one(encoder, counter, value);
        }
    });
    result
}

fn encode_one(encoder: &mut DescriptorEncoder, counter: &Counter, value: u64) -> fmt::Result {
    let metric_type = match counter.kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let metric = encoder.encode_descriptor(counter.name, counter.help, None, metric_type)?;
    match counter.kind {
        Kind::Counter => ConstCounter::new(value).encode(metric),
        Kind::Gauge => ConstGauge::new(value).encode(metric),
    }
}

/// One metric family per counter of `T`, named `prefix` and the counter's name, with one value
/// per shard.
fn encode_families<'a, T: CounterSet + 'a>(
    encoder: &mut DescriptorEncoder,
    prefix: &str,
    shards: impl Iterator<Item = (u16, &'a T)>,
) -> fmt::Result {
    let shards: Vec<(u16, Vec<u64>)> = shards.map(|(id, c)| (id, c.values().collect())).collect();
    for (i, counter) in T::COUNTERS.iter().enumerate() {
        let name = format!("{prefix}{}", counter.name);
        let metric_type = match counter.kind {
            Kind::Counter => MetricType::Counter,
            Kind::Gauge => MetricType::Gauge,
        };
        let mut family = encoder.encode_descriptor(&name, counter.help, None, metric_type)?;
        for (id, values) in &shards {
            let labels = [("shard", *id)];
            let metric = family.encode_family(&labels)?;
            match counter.kind {
                Kind::Counter => ConstCounter::new(values[i]).encode(metric)?,
                Kind::Gauge => ConstGauge::new(values[i]).encode(metric)?,
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::json;

    use super::*;

    fn shard(id: u16) -> ShardCounters {
        let n = u64::from(id) * 100;
        ShardCounters {
            id,
            stats: ShardStats {
                participants: n + 1,
                rtp_forwarded: n + 2,
                drop_unknown_source: n + 3,
                drop_no_route: n + 4,
                connected_relay: n + 7,
                tcp_closed_slow: n + 8,
                ..ShardStats::default()
            },
            io: EngineCounters {
                tx_datagrams: n + 5,
                tx_gso_sends: n + 6,
                ..EngineCounters::default()
            },
        }
    }

    #[test]
    fn api_stats_entry_keeps_its_keys_and_groups() {
        let mut entry = Map::new();
        entry.insert("id".to_string(), json!(1));
        assert_eq!(
            shard_json(entry, &shard(1)),
            json!({
                "id": 1,
                "participants": 101,
                "publishers": 0,
                "streams": 0,
                "rx_datagrams": 0,
                "tx_datagrams": 0,
                "rtp_in": 0,
                "rtp_forwarded": 102,
                "rtp_forwarded_at_once": 0,
                "relayed": 0,
                "keyframe_requests": 0,
                "layer_switches": 0,
                "gop_replays": 0,
                "gop_overflows": 0,
                "gop_cache_bytes": 0,
                "layer_resolution_changes": 0,
                "rooms": 0,
                "slot_switches": 0,
                "room_messages_in": 0,
                "room_messages_out": 0,
                "ice_moves": 0,
                "connected": {
                    "host": 0,
                    "srflx": 0,
                    "prflx": 0,
                    "relay": 107,
                    "udp": 0,
                    "tcp": 0,
                },
                "tcp": {
                    "connections": 0,
                    "accepted": 0,
                    "refused": 0,
                    "closed_malformed": 0,
                    "closed_idle": 0,
                    "closed_slow": 108,
                    "dropped_frames": 0,
                },
                "drops": {
                    "unknown_source": 103,
                    "unknown_ufrag": 0,
                    "malformed": 0,
                    "rejected": 0,
                    "replayed": 0,
                    "room_message": 0,
                    "room_unsent": 0,
                    "unknown_layer": 0,
                    "no_route": 104,
                },
                "io": {
                    "rx_datagrams": 0,
                    "rx_bytes": 0,
                    "tx_datagrams": 105,
                    "tx_bytes": 0,
                    "tx_gso_sends": 106,
                    "rx_gro_receives": 0,
                    "syscalls": 0,
                    "rx_truncated": 0,
                    "rx_no_buffers": 0,
                    "tx_errors": 0,
                    "tx_queue_full": 0,
                },
            })
        );
    }

    #[test]
    fn metrics_have_one_family_per_counter_and_a_value_per_shard() {
        let text = metrics_text(vec![shard(0), shard(1)], RefusalCounters::default());
        for line in [
            "# HELP ringcast_participants Participants placed on the shard",
            "# TYPE ringcast_participants gauge",
            "ringcast_participants{shard=\"0\"} 1",
            "ringcast_participants{shard=\"1\"} 101",
            "# HELP ringcast_rtp_forwarded_total RTP packets forwarded to subscribers",
            "# TYPE ringcast_rtp_forwarded_total counter",
            "ringcast_rtp_forwarded_total{shard=\"1\"} 102",
            "# TYPE ringcast_drop_no_route_total counter",
            "ringcast_drop_no_route_total{shard=\"0\"} 4",
            "# HELP ringcast_io_tx_gso_sends_total Segmented (GSO) sends of several datagrams",
            "ringcast_io_tx_gso_sends_total{shard=\"1\"} 106",
            "ringcast_io_tx_datagrams_total{shard=\"0\"} 5",
            "# HELP ringcast_connected_relay_total Sessions connected through a TURN relay",
            "# TYPE ringcast_connected_relay_total counter",
            "ringcast_connected_relay_total{shard=\"1\"} 107",
            "# HELP ringcast_tcp_closed_slow_total TCP connections closed for reading too slowly",
            "ringcast_tcp_closed_slow_total{shard=\"1\"} 108",
            "# TYPE ringcast_tcp_connections gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        let declared = ShardStats::COUNTERS.len() + EngineCounters::COUNTERS.len();
        assert_eq!(
            samples,
            2 * declared + RefusalCounters::COUNTERS.len(),
            "{text}"
        );
    }

    #[test]
    fn metric_names_of_before_the_declarations_are_all_there() {
        let text = metrics_text(vec![shard(0)], RefusalCounters::default());
        let names: BTreeSet<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split('{').next())
            .collect();
        // The names /metrics had when it was written by hand; the declarations added
        // ringcast_streams and ringcast_io_{rx,tx}_{datagrams,bytes}_total.
        for name in [
            "ringcast_participants",
            "ringcast_publishers",
            "ringcast_rx_datagrams_total",
            "ringcast_tx_datagrams_total",
            "ringcast_rtp_in_total",
            "ringcast_rtp_forwarded_total",
            "ringcast_relayed_total",
            "ringcast_keyframe_requests_total",
            "ringcast_drop_unknown_source_total",
            "ringcast_drop_unknown_ufrag_total",
            "ringcast_drop_malformed_total",
            "ringcast_drop_rejected_total",
            "ringcast_drop_replayed_total",
            "ringcast_drop_no_route_total",
            "ringcast_io_tx_gso_sends_total",
            "ringcast_io_syscalls_total",
            "ringcast_io_rx_truncated_total",
            "ringcast_io_rx_no_buffers_total",
            "ringcast_io_tx_errors_total",
            "ringcast_io_tx_queue_full_total",
            "ringcast_io_rx_gro_receives_total",
        ] {
            assert!(names.contains(name), "{name} in {names:?}");
        }
        let refusals = RefusalCounters::COUNTERS.len();
        // Simulcast and the keyframe cache added six (layer switches and resolution changes,
        // cache replays, overflows and bytes, RTP on unknown layers); rooms six (rooms, slot
        // switches, messages in and out, and two drops); NATs one (remotes followed to a new
        // address) and six (sessions connected by candidate type and by transport); ICE over
        // TCP seven (connections open, accepted, refused, closed three ways, frames dropped);
        // the bounded send queue one (datagrams dropped when it is full); sending without a
        // poll one (packets forwarded at once).
        assert_eq!(names.len(), 53 + refusals, "{names:?}");
    }
}
