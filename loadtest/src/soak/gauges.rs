//! The server's counters as the soak compares them: every number of `/api/stats` (per shard and
//! its engine) and `/api/streams`, flattened to one name each, and which of them are gauges
//! (they must come back to their start value once the cycling sessions are gone) and which are
//! totals (they only grow).
//!
//! What is a gauge is the server's own word where it has one: `/metrics` declares each counter
//! of a shard (`ringcast_<name>`) and of its engine (`ringcast_io_<name>`) with its type. A
//! number `/metrics` does not declare is a total when its name says so (`drop` in it, or a
//! `_total` suffix: `relay_drops`) and a gauge otherwise, so that a new level nobody declared is
//! compared rather than missed. Everything `/api/streams` says is a level: the number of
//! streams, and each stream's viewers, placement and liveness.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

/// Levels that follow the steady stream's media rather than the sessions (the keyframe cache
/// fills between keyframes and empties at each): not compared, they are bounded by config.
const FOLLOWS_THE_MEDIA: &[&str] = &["gop_cache_bytes"];

/// Where the server's admin API is and how to be let in.
#[derive(Debug, Clone)]
pub struct Admin {
    /// Base URL of `/api/*` and `/metrics`.
    pub base: String,
    /// Sent as `Authorization: Bearer <token>` when set.
    pub token: Option<String>,
}

/// Every number the server reported at one moment, by flattened name, e.g.
/// `shard 0.participants`, `shard 1.io.rx_datagrams`, `stream live.viewers`, `streams`.
pub type Snapshot = BTreeMap<String, u64>;

/// What the server declared in `/metrics`: metric family name → whether it is a gauge.
#[derive(Debug, Clone, Default)]
pub struct Declared(BTreeMap<String, bool>);

/// One gauge at the start and at the end (`None`: not reported then, e.g. a stream that was
/// not there).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gauge {
    /// Its flattened name.
    pub name: String,
    /// Value at the start.
    pub start: Option<u64>,
    /// Value at the end.
    pub end: Option<u64>,
}

impl Admin {
    /// Read `/api/stats` and `/api/streams` into one snapshot.
    pub fn snapshot(&self, agent: &ureq::Agent) -> Result<Snapshot, String> {
        let stats = self.json(agent, "/api/stats")?;
        let streams = self.json(agent, "/api/streams")?;
        Ok(flatten(&stats, &streams))
    }

    /// Read what `/metrics` declares.
    pub fn declared(&self, agent: &ureq::Agent) -> Result<Declared, String> {
        Ok(Declared::from_metrics(&self.text(agent, "/metrics")?))
    }

    fn json(&self, agent: &ureq::Agent, path: &str) -> Result<Value, String> {
        serde_json::from_str(&self.text(agent, path)?)
            .map_err(|e| format!("GET {path}: not JSON: {e}"))
    }

    fn text(&self, agent: &ureq::Agent, path: &str) -> Result<String, String> {
        let url = format!("{}{path}", self.base.trim_end_matches('/'));
        let mut request = agent.get(&url);
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request
            .call()
            .map_err(|e| format!("GET {path}: {}", crate::http::cause(&e)))?;
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!("GET {path}: http {status}"));
        }
        response
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("GET {path}: {}", crate::http::cause(&e)))
    }
}

impl Declared {
    /// The `# TYPE <name> <type>` lines of Prometheus text.
    pub fn from_metrics(text: &str) -> Self {
        Declared(
            text.lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| {
                    let mut words = l.split_whitespace();
                    Some((words.next()?.to_string(), words.next()? == "gauge"))
                })
                .collect(),
        )
    }

    /// Whether the flattened `name` is a gauge (see the module's documentation).
    pub fn is_gauge(&self, name: &str) -> bool {
        if name == "streams" || name.starts_with("stream ") {
            return true;
        }
        // "shard 0.io.rx_datagrams" -> "io_rx_datagrams"
        let field = name
            .split_once('.')
            .map_or(name, |(_, f)| f)
            .replace('.', "_");
        if FOLLOWS_THE_MEDIA.contains(&field.as_str()) {
            return false;
        }
        for metric in [
            format!("ringcast_{field}"),
            format!("ringcast_{field}_total"),
        ] {
            if let Some(&gauge) = self.0.get(&metric) {
                return gauge;
            }
        }
        !(field.contains("drop") || field.ends_with("_total"))
    }
}

/// The gauges of `start` and `end` (a name in either), each with both values.
pub fn gauges(declared: &Declared, start: &Snapshot, end: &Snapshot) -> Vec<Gauge> {
    let names: BTreeSet<&String> = start.keys().chain(end.keys()).collect();
    names
        .into_iter()
        .filter(|n| declared.is_gauge(n))
        .map(|name| Gauge {
            name: name.clone(),
            start: start.get(name).copied(),
            end: end.get(name).copied(),
        })
        .collect()
}

/// The names of `snapshot` that are totals (not compared).
pub fn totals(declared: &Declared, snapshot: &Snapshot) -> Vec<String> {
    snapshot
        .keys()
        .filter(|n| !declared.is_gauge(n))
        .cloned()
        .collect()
}

/// Whether every gauge of `now` is at its `start` value.
pub fn back(declared: &Declared, start: &Snapshot, now: &Snapshot) -> bool {
    gauges(declared, start, now)
        .iter()
        .all(|g| g.start == g.end)
}

/// `/api/stats` and `/api/streams` as one flat map of numbers (booleans as 0 and 1).
pub fn flatten(stats: &Value, streams: &Value) -> Snapshot {
    let mut out = Snapshot::new();
    for (i, shard) in stats["shards"].as_array().into_iter().flatten().enumerate() {
        let id = shard["id"].as_u64().unwrap_or(i as u64);
        let Some(fields) = shard.as_object() else {
            continue;
        };
        for (key, value) in fields {
            // Its id names it; its socket and candidates are addresses, not levels.
            if key != "id" {
                leaves(&format!("shard {id}.{key}"), value, &mut out);
            }
        }
    }
    let list = streams["streams"].as_array().map_or(&[][..], Vec::as_slice);
    out.insert("streams".to_string(), list.len() as u64);
    for stream in list {
        let name = stream["name"].as_str().unwrap_or("?");
        for key in ["live", "viewers", "viewers_per_shard"] {
            leaves(&format!("stream {name}.{key}"), &stream[key], &mut out);
        }
    }
    out
}

/// The numbers under `value`, named `prefix`, `prefix.key`, `prefix[i]`.
fn leaves(prefix: &str, value: &Value, out: &mut Snapshot) {
    match value {
        Value::Number(n) => {
            if let Some(n) = n.as_u64() {
                out.insert(prefix.to_string(), n);
            }
        }
        Value::Bool(b) => {
            out.insert(prefix.to_string(), u64::from(*b));
        }
        Value::Object(fields) => {
            for (key, value) in fields {
                leaves(&format!("{prefix}.{key}"), value, out);
            }
        }
        Value::Array(items) => {
            for (i, value) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), value, out);
            }
        }
        Value::Null | Value::String(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stats(participants: u64, forwarded: u64) -> Value {
        json!({
            "engine": "epoll",
            "shards": [{
                "id": 0,
                "socket": "127.0.0.1:5000",
                "candidates": ["127.0.0.1:5000"],
                "relay_drops": 3,
                "participants": participants,
                "rtp_forwarded": forwarded,
                "drops": {"malformed": 1},
                "io": {"rx_datagrams": forwarded, "pending": 0},
            }]
        })
    }

    fn streams(names: &[&str]) -> Value {
        json!({"streams": names.iter().map(|n| json!({
            "name": n, "live": true, "viewers": 2, "shard": 0,
            "viewers_per_shard": [2, 0], "codecs": ["VP8"],
        })).collect::<Vec<_>>()})
    }

    const METRICS: &str = "# HELP ringcast_participants Participants\n\
        # TYPE ringcast_participants gauge\n\
        ringcast_participants{shard=\"0\"} 4\n\
        # TYPE ringcast_rtp_forwarded_total counter\n\
        # TYPE ringcast_io_rx_datagrams_total counter\n";

    #[test]
    fn flattens_every_number_and_no_address() {
        let s = flatten(&stats(4, 100), &streams(&["live"]));
        let names: Vec<&str> = s.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "shard 0.drops.malformed",
                "shard 0.io.pending",
                "shard 0.io.rx_datagrams",
                "shard 0.participants",
                "shard 0.relay_drops",
                "shard 0.rtp_forwarded",
                "stream live.live",
                "stream live.viewers",
                "stream live.viewers_per_shard[0]",
                "stream live.viewers_per_shard[1]",
                "streams",
            ]
        );
        assert_eq!(s["shard 0.participants"], 4);
        assert_eq!(s["stream live.live"], 1);
    }

    #[test]
    fn the_server_declares_what_is_a_gauge_and_names_decide_the_rest() {
        let d = Declared::from_metrics(METRICS);
        assert!(d.is_gauge("shard 0.participants"));
        assert!(!d.is_gauge("shard 0.rtp_forwarded"));
        assert!(!d.is_gauge("shard 1.io.rx_datagrams"));
        // Undeclared: by name.
        assert!(!d.is_gauge("shard 0.relay_drops"));
        assert!(!d.is_gauge("shard 0.drops.malformed"));
        assert!(d.is_gauge("shard 0.io.pending"));
        assert!(!d.is_gauge("shard 0.gop_cache_bytes"), "follows the media");
        assert!(d.is_gauge("streams"));
        assert!(d.is_gauge("stream x.viewers"));
        assert!(Declared::default().is_gauge("shard 0.participants"));
    }

    #[test]
    fn totals_may_grow_gauges_must_come_back() {
        let d = Declared::from_metrics(METRICS);
        let start = flatten(&stats(4, 100), &streams(&["live"]));
        let grown = flatten(&stats(4, 900), &streams(&["live"]));
        assert!(back(&d, &start, &grown));
        assert_eq!(
            totals(&d, &start),
            [
                "shard 0.drops.malformed",
                "shard 0.io.rx_datagrams",
                "shard 0.relay_drops",
                "shard 0.rtp_forwarded",
            ]
        );

        let leaked = flatten(&stats(5, 900), &streams(&["live", "gone"]));
        assert!(!back(&d, &start, &leaked));
        let moved: Vec<Gauge> = gauges(&d, &start, &leaked)
            .into_iter()
            .filter(|g| g.start != g.end)
            .collect();
        let names: Vec<&str> = moved.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "shard 0.participants",
                "stream gone.live",
                "stream gone.viewers",
                "stream gone.viewers_per_shard[0]",
                "stream gone.viewers_per_shard[1]",
                "streams",
            ]
        );
        assert_eq!((moved[0].start, moved[0].end), (Some(4), Some(5)));
        assert_eq!((moved[1].start, moved[1].end), (None, Some(1)));
    }
}
