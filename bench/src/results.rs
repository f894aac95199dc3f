//! What a benchmark run found: figures per scenario × variant (medians over the repeats), CPU per
//! forwarded packet relative to the two references (`ringcast-epoll-gso` and `janus`), and the
//! markdown and HTML tables. Plain data and pure functions: unit tested at the bottom.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ringcast_loadtest::summary::Summary;
use serde::{Deserialize, Serialize};

/// The ringcast reference variant of the ratios.
pub const EPOLL_GSO: &str = "ringcast-epoll-gso";
/// The other reference: Janus.
pub const JANUS: &str = "janus";

/// The figures of one run (or the medians of several).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Server CPU microseconds per forwarded packet.
    pub cpu_us_per_packet: f64,
    /// Server CPU, percent of one core.
    pub server_cpu_pct: f64,
    /// Packets the viewers received per second (what the server forwarded).
    pub forwarded_pps: f64,
    /// Loss, percent.
    pub loss_pct: f64,
    /// One-way latency, ms.
    pub latency_p50_ms: f64,
    /// One-way latency, ms.
    pub latency_p99_ms: f64,
    /// Join time (signalling start → first media packet), ms.
    pub join_p50_ms: f64,
    /// Join time, ms.
    pub join_p99_ms: f64,
    /// Time to first frame (signalling start → first complete keyframe), ms.
    #[serde(default)]
    pub first_frame_p50_ms: f64,
    /// Time to first frame, ms.
    #[serde(default)]
    pub first_frame_p95_ms: f64,
    /// Server resident memory growth per participant, KiB.
    pub rss_kib_per_viewer: f64,
    /// Server resident memory at the end, KiB.
    #[serde(default)]
    pub rss_kib: f64,
    /// Viewers that got media.
    pub viewers_connected: f64,
    /// Viewers asked for.
    pub viewers_requested: f64,
}

impl Figures {
    /// The figures of one loadtest summary (server figures zero without `--server-pid`).
    pub fn from_summary(s: &Summary) -> Self {
        let server = s.server.unwrap_or_default();
        Figures {
            cpu_us_per_packet: server.cpu_us_per_packet,
            server_cpu_pct: server.cpu_pct,
            forwarded_pps: if s.measured_s > 0.0 {
                s.packets_received as f64 / s.measured_s
            } else {
                0.0
            },
            loss_pct: s.loss_pct,
            latency_p50_ms: s.latency_ms.p50,
            latency_p99_ms: s.latency_ms.p99,
            join_p50_ms: s.join_ms.p50,
            join_p99_ms: s.join_ms.p99,
            first_frame_p50_ms: s.first_frame_ms.p50,
            first_frame_p95_ms: s.first_frame_ms.p95,
            rss_kib_per_viewer: server.rss_kib_per_participant,
            rss_kib: server.rss_kib as f64,
            viewers_connected: s.viewers.connected as f64,
            viewers_requested: s.viewers.requested as f64,
        }
    }

    /// Each figure's median over `runs`; None when there are none.
    pub fn median(runs: &[Figures]) -> Option<Figures> {
        if runs.is_empty() {
            return None;
        }
        let m = |f: fn(&Figures) -> f64| median(&mut runs.iter().map(f).collect::<Vec<_>>());
        Some(Figures {
            cpu_us_per_packet: m(|f| f.cpu_us_per_packet),
            server_cpu_pct: m(|f| f.server_cpu_pct),
            forwarded_pps: m(|f| f.forwarded_pps),
            loss_pct: m(|f| f.loss_pct),
            latency_p50_ms: m(|f| f.latency_p50_ms),
            latency_p99_ms: m(|f| f.latency_p99_ms),
            join_p50_ms: m(|f| f.join_p50_ms),
            join_p99_ms: m(|f| f.join_p99_ms),
            first_frame_p50_ms: m(|f| f.first_frame_p50_ms),
            first_frame_p95_ms: m(|f| f.first_frame_p95_ms),
            rss_kib_per_viewer: m(|f| f.rss_kib_per_viewer),
            rss_kib: m(|f| f.rss_kib),
            viewers_connected: m(|f| f.viewers_connected),
            viewers_requested: m(|f| f.viewers_requested),
        })
    }
}

/// The median of `values` (the mean of the middle two for an even count; NaN sorts last).
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// `value / reference` when both are positive and finite.
pub fn ratio(value: f64, reference: f64) -> Option<f64> {
    (value.is_finite() && reference.is_finite() && value > 0.0 && reference > 0.0)
        .then(|| value / reference)
}

/// What the garbage flood did in one cell.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Flood {
    /// Garbage datagrams sent during the flooded run(s).
    pub sent: u64,
    /// Median loss of the clean runs, percent.
    pub loss_pct_clean: f64,
    /// Median loss of the flooded runs, percent.
    pub loss_pct_flooded: f64,
    /// Growth of the server's drop counters during the flooded run(s), by cause (ringcast's
    /// `/api/stats`; empty for servers without such counters).
    pub drops: BTreeMap<String, u64>,
    /// Figures of the flooded runs (medians).
    pub flooded: Option<Figures>,
}

/// One scenario against one server variant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Scenario name, e.g. `video-1x200`.
    pub scenario: String,
    /// Variant name, e.g. `ringcast-epoll-gso`.
    pub variant: String,
    /// Why the cell has no figures (the server refused to start, the loadtest failed).
    pub failed: Option<String>,
    /// Each run's figures.
    pub runs: Vec<Figures>,
    /// Their medians.
    pub median: Option<Figures>,
    /// Errors by cause, summed over the runs (failed joins, stalls…).
    pub errors: BTreeMap<String, u64>,
    /// The load generator's warnings (e.g. it was the bottleneck).
    pub warnings: Vec<String>,
    /// Datagrams the kernel dropped at the load generator's own sockets, summed over the clean
    /// runs' measured windows (counted in the loss, though the server sent them).
    #[serde(default)]
    pub generator_socket_drops: u64,
    /// CPU per packet relative to `ringcast-epoll-gso` in the same scenario.
    pub cpu_vs_epoll_gso: Option<f64>,
    /// CPU per packet relative to `janus` in the same scenario.
    pub cpu_vs_janus: Option<f64>,
    /// With `--garbage-flood`.
    pub flood: Option<Flood>,
}

impl Cell {
    /// Whether the cell counts as an error for `--smoke`: it failed, or sessions failed, or
    /// errors were counted.
    pub fn has_errors(&self) -> bool {
        self.failed.is_some()
            || !self.errors.is_empty()
            || self
                .median
                .is_none_or(|m| m.viewers_connected < m.viewers_requested)
    }
}

/// Set every cell's ratios from the references' medians in its scenario.
pub fn fill_ratios(cells: &mut [Cell]) {
    let reference = |cells: &[Cell], scenario: &str, variant: &str| {
        cells
            .iter()
            .find(|c| c.scenario == scenario && c.variant == variant && c.failed.is_none())
            .and_then(|c| c.median)
            .map(|m| m.cpu_us_per_packet)
    };
    let refs: Vec<(Option<f64>, Option<f64>)> = cells
        .iter()
        .map(|c| {
            (
                reference(cells, &c.scenario, EPOLL_GSO),
                reference(cells, &c.scenario, JANUS),
            )
        })
        .collect();
    for (cell, (epoll, janus)) in cells.iter_mut().zip(refs) {
        let value = cell.median.map_or(0.0, |m| m.cpu_us_per_packet);
        cell.cpu_vs_epoll_gso = epoll.and_then(|r| ratio(value, r));
        cell.cpu_vs_janus = janus.and_then(|r| ratio(value, r));
    }
}

/// Where and when the run was made.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// RFC 3339 UTC.
    pub date: String,
    /// `model name` of /proc/cpuinfo.
    pub cpu: String,
    /// Cores available.
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
}

/// A scenario as the report describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Its name.
    pub name: String,
    /// What it is, in words.
    pub description: String,
}

/// Everything `results.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// Machine and date.
    pub machine: Machine,
    /// The settings of the run, in words (duration, warm-up, repeats, shards…).
    pub settings: String,
    /// The scenarios, in run order.
    pub scenarios: Vec<ScenarioInfo>,
    /// The variants, in run order.
    pub variants: Vec<String>,
    /// One per scenario × variant.
    pub cells: Vec<Cell>,
}

/// The tables in markdown, ready for the README.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(
        out,
        "{} on {} ({} cores), Linux {}; {}.\n",
        m.date.get(..10).unwrap_or(&m.date),
        m.cpu,
        m.cores,
        m.kernel,
        r.settings
    );
    for scenario in &r.scenarios {
        let _ = writeln!(out, "**{}**: {}\n", scenario.name, scenario.description);
        let flood = cells_of(r, &scenario.name).any(|c| c.flood.is_some());
        let mut header = vec![
            "variant",
            "CPU µs/pkt",
            "× epoll-gso",
            "× janus",
            "fwd pkt/s",
            "server CPU",
            "loss",
            "latency p50 / p99 ms",
            "join p50 / p99 ms",
            "first frame p50 / p95 ms",
            "RSS KiB/viewer",
        ];
        if flood {
            header.extend(["loss clean → flood", "drops under flood"]);
        }
        header.push("notes");
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let align: Vec<&str> = header
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---" } else { "---:" })
            .collect();
        let _ = writeln!(out, "|{}|", align.join("|"));
        for cell in cells_of(r, &scenario.name) {
            let row = row(cell, flood);
            let row: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    out.push_str(&figures_markdown(r));
    out
}

/// The simulcast figures, where the scenarios that make them ran: CPU per forwarded packet
/// of `simulcast-1xN` against `video-1xN`, and time to first frame with the keyframe cache on
/// (`ttff-1xN`) and off (`ttff-nocache-1xN`), per variant.
pub fn figures_markdown(r: &Results) -> String {
    let mut out = String::new();
    let median = |scenario: &str, variant: &str| {
        r.cells
            .iter()
            .find(|c| c.scenario == scenario && c.variant == variant && c.failed.is_none())
            .and_then(|c| c.median)
    };
    let pairs = |from: &str, to: &str| -> Vec<(String, String, String)> {
        r.scenarios
            .iter()
            .filter_map(|s| {
                let shape = s.name.strip_prefix(from)?;
                let other = format!("{to}{shape}");
                r.scenarios
                    .iter()
                    .any(|o| o.name == other)
                    .then(|| (shape.to_string(), s.name.clone(), other))
            })
            .collect()
    };
    let simulcast = pairs("video-", "simulcast-");
    if !simulcast.is_empty() {
        let _ = writeln!(
            out,
            "**Simulcast against plain**: server CPU µs per forwarded packet\n\n\
             | variant | viewers | plain | simulcast | × plain |\n|---|---:|---:|---:|---:|"
        );
        for variant in &r.variants {
            for (shape, plain, sim) in &simulcast {
                let (p, s) = (median(plain, variant), median(sim, variant));
                let cpu = |m: Option<Figures>| {
                    m.map_or("–".into(), |m| format!("{:.2}", m.cpu_us_per_packet))
                };
                let times = match (p, s) {
                    (Some(p), Some(s)) => ratio(s.cpu_us_per_packet, p.cpu_us_per_packet)
                        .map_or("–".into(), |x| format!("{x:.2}")),
                    _ => "–".into(),
                };
                let viewers = shape.rsplit('x').next().unwrap_or(shape);
                let _ = writeln!(
                    out,
                    "| {variant} | {viewers} | {} | {} | {times} |",
                    cpu(p),
                    cpu(s)
                );
            }
        }
        out.push('\n');
    }
    let ttff = pairs("ttff-", "ttff-nocache-");
    if !ttff.is_empty() {
        let _ = writeln!(
            out,
            "**Time to first frame**, publisher ignoring PLI: p50 / p95 ms; the server's \
             memory at the end with the cache on less off (one publisher)\n\n\
             | variant | viewers | cache on | cache off | RSS on − off KiB |\n\
             |---|---:|---:|---:|---:|"
        );
        for variant in &r.variants {
            for (shape, on, off) in &ttff {
                let ms = |m: Option<Figures>| {
                    m.map_or("–".into(), |m| {
                        format!("{:.0} / {:.0}", m.first_frame_p50_ms, m.first_frame_p95_ms)
                    })
                };
                let viewers = shape.rsplit('x').next().unwrap_or(shape);
                let (with, without) = (median(on, variant), median(off, variant));
                let rss = match (with, without) {
                    (Some(a), Some(b)) if a.rss_kib > 0.0 && b.rss_kib > 0.0 => {
                        format!("{:.0}", a.rss_kib - b.rss_kib)
                    }
                    _ => "–".into(),
                };
                let _ = writeln!(
                    out,
                    "| {variant} | {viewers} | {} | {} | {rss} |",
                    ms(with),
                    ms(without)
                );
            }
        }
        out.push('\n');
    }
    out
}

/// A whole HTML page with the same tables.
pub fn html(r: &Results) -> String {
    let mut out = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>ringcast benchmark</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}\
         td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child\
         {text-align:left}td.failed{color:#b00}caption{text-align:left;font-weight:bold;padding:4px}</style>\n\
         </head><body>\n<h1>ringcast benchmark</h1>\n",
    );
    let m = &r.machine;
    let _ = writeln!(
        out,
        "<p>{} on {} ({} cores), Linux {}; {}.</p>",
        escape(&m.date),
        escape(&m.cpu),
        m.cores,
        escape(&m.kernel),
        escape(&r.settings)
    );
    for scenario in &r.scenarios {
        let flood = cells_of(r, &scenario.name).any(|c| c.flood.is_some());
        let _ = writeln!(
            out,
            "<table><caption>{}: {}</caption>",
            escape(&scenario.name),
            escape(&scenario.description)
        );
        let mut header = vec![
            "variant",
            "CPU µs/packet",
            "× ringcast-epoll-gso",
            "× janus",
            "forwarded packets/s",
            "server CPU",
            "loss",
            "latency p50 / p99 ms",
            "join p50 / p99 ms",
            "first frame p50 / p95 ms",
            "RSS KiB per viewer",
        ];
        if flood {
            header.extend(["loss clean → flood", "drops under flood"]);
        }
        header.push("notes");
        out.push_str("<tr>");
        for h in header {
            let _ = write!(out, "<th>{}</th>", escape(h));
        }
        out.push_str("</tr>\n");
        for cell in cells_of(r, &scenario.name) {
            let class = if cell.failed.is_some() {
                " class=\"failed\""
            } else {
                ""
            };
            out.push_str("<tr>");
            for value in row(cell, flood) {
                let _ = write!(out, "<td{class}>{}</td>", escape(&value));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

fn cells_of<'a>(r: &'a Results, scenario: &'a str) -> impl Iterator<Item = &'a Cell> + 'a {
    r.cells.iter().filter(move |c| c.scenario == scenario)
}

/// One table row: the figures, or the failure.
fn row(cell: &Cell, flood: bool) -> Vec<String> {
    let mut row = vec![cell.variant.clone()];
    let columns = 10 + if flood { 2 } else { 0 };
    let Some(m) = cell.median.filter(|_| cell.failed.is_none()) else {
        row.extend(std::iter::repeat_n("–".to_string(), columns));
        row.push(format!(
            "failed: {}",
            cell.failed.as_deref().unwrap_or("no figures")
        ));
        return row;
    };
    let times = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.2}"));
    row.push(format!("{:.2}", m.cpu_us_per_packet));
    row.push(times(cell.cpu_vs_epoll_gso));
    row.push(times(cell.cpu_vs_janus));
    row.push(format!("{:.0}", m.forwarded_pps));
    row.push(format!("{:.0} %", m.server_cpu_pct));
    row.push(format!("{:.2} %", m.loss_pct));
    row.push(format!("{:.1} / {:.1}", m.latency_p50_ms, m.latency_p99_ms));
    row.push(format!("{:.0} / {:.0}", m.join_p50_ms, m.join_p99_ms));
    row.push(format!(
        "{:.0} / {:.0}",
        m.first_frame_p50_ms, m.first_frame_p95_ms
    ));
    row.push(format!("{:.0}", m.rss_kib_per_viewer));
    if flood {
        match &cell.flood {
            Some(f) => {
                row.push(format!(
                    "{:.2} % → {:.2} %",
                    f.loss_pct_clean, f.loss_pct_flooded
                ));
                let total: u64 = f.drops.values().sum();
                row.push(if f.drops.is_empty() {
                    format!("n/a ({} sent)", f.sent)
                } else {
                    let parts: Vec<String> = f
                        .drops
                        .iter()
                        .filter(|(_, v)| **v > 0)
                        .map(|(k, v)| format!("{k} +{v}"))
                        .collect();
                    format!("+{total} of {} sent ({})", f.sent, parts.join(", "))
                });
            }
            None => row.extend(["–".to_string(), "–".to_string()]),
        }
    }
    let mut notes = Vec::new();
    if m.viewers_connected < m.viewers_requested {
        notes.push(format!(
            "{:.0}/{:.0} viewers connected",
            m.viewers_connected, m.viewers_requested
        ));
    }
    if !cell.errors.is_empty() {
        let errors: Vec<String> = cell
            .errors
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        notes.push(format!("errors: {}", errors.join(", ")));
    }
    if !cell.warnings.is_empty() {
        notes.push("load generator saturated".into());
    }
    if cell.generator_socket_drops > 0 {
        notes.push(format!(
            "load generator's sockets dropped {} datagrams in {} run{}",
            cell.generator_socket_drops,
            cell.runs.len(),
            if cell.runs.len() == 1 { "" } else { "s" }
        ));
    }
    if cell.runs.len() > 1 {
        notes.push(format!("median of {}", cell.runs.len()));
    }
    row.push(notes.join("; "));
    row
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(cpu: f64) -> Figures {
        Figures {
            cpu_us_per_packet: cpu,
            viewers_connected: 10.0,
            viewers_requested: 10.0,
            ..Figures::default()
        }
    }

    fn cell(scenario: &str, variant: &str, cpu: Option<f64>) -> Cell {
        Cell {
            scenario: scenario.into(),
            variant: variant.into(),
            failed: cpu.is_none().then(|| "server refused to start".into()),
            runs: cpu.map(figures).into_iter().collect(),
            median: cpu.map(figures),
            ..Cell::default()
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0]), 3.0);
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
        let runs = [figures(6.0), figures(2.0), figures(4.0)];
        assert_eq!(Figures::median(&runs).unwrap().cpu_us_per_packet, 4.0);
        assert_eq!(Figures::median(&[]), None);
    }

    #[test]
    fn ratios_against_both_references_per_scenario() {
        assert_eq!(ratio(3.0, 1.5), Some(2.0));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(0.0, 2.0), None);
        assert_eq!(ratio(f64::NAN, 2.0), None);
        let mut cells = vec![
            cell("a", EPOLL_GSO, Some(2.0)),
            cell("a", "ringcast-uring-gso", Some(1.5)),
            cell("a", JANUS, Some(8.0)),
            cell("b", EPOLL_GSO, None),
            cell("b", JANUS, Some(10.0)),
            cell("b", "ringcast-epoll-nogso", Some(2.5)),
        ];
        fill_ratios(&mut cells);
        assert_eq!(cells[0].cpu_vs_epoll_gso, Some(1.0));
        assert_eq!(cells[1].cpu_vs_epoll_gso, Some(0.75));
        assert_eq!(cells[1].cpu_vs_janus, Some(0.1875));
        assert_eq!(cells[2].cpu_vs_epoll_gso, Some(4.0));
        // Scenario b has no ringcast-epoll-gso figures: no ratio against it, only Janus.
        assert_eq!(cells[3].cpu_vs_epoll_gso, None);
        assert_eq!(cells[5].cpu_vs_epoll_gso, None);
        assert_eq!(cells[5].cpu_vs_janus, Some(0.25));
        assert!(cells[3].has_errors() && !cells[0].has_errors());
    }

    #[test]
    fn tables_show_figures_and_failures() {
        let mut cells = vec![
            cell("video-1x50", EPOLL_GSO, Some(2.0)),
            cell("video-1x50", JANUS, Some(8.0)),
            cell("video-1x50", "ringcast-uring-gso", None),
        ];
        cells[2].failed = Some("Error: engine | uring <missing>".into());
        cells[1].generator_socket_drops = 40;
        fill_ratios(&mut cells);
        let results = Results {
            machine: Machine {
                date: "2026-11-24T10:00:00Z".into(),
                cpu: "AMD EPYC".into(),
                cores: 2,
                kernel: "6.18".into(),
            },
            settings: "10 s measured".into(),
            scenarios: vec![ScenarioInfo {
                name: "video-1x50".into(),
                description: "1 stream × 50 viewers".into(),
            }],
            variants: vec![EPOLL_GSO.into(), JANUS.into(), "ringcast-uring-gso".into()],
            cells,
        };
        let md = markdown(&results);
        assert!(md.starts_with("2026-11-24 on AMD EPYC (2 cores), Linux 6.18"));
        let janus_row = md.lines().find(|l| l.starts_with("| janus")).unwrap();
        assert!(janus_row.contains("| 8.00 | 4.00 | 1.00 |"), "{janus_row}");
        assert!(
            janus_row.contains("load generator's sockets dropped 40 datagrams in 1 run |"),
            "{janus_row}"
        );
        let failed = md.lines().find(|l| l.contains("uring")).unwrap();
        assert!(failed.contains("failed: Error: engine \\| uring <missing>"));
        // Every row has as many columns as the header.
        let bars = |l: &str| l.matches(" | ").count();
        let table: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert!(table.iter().all(|l| bars(l) == bars(table[0])), "{md}");
        let page = html(&results);
        assert!(page.contains("&lt;missing&gt;") && page.contains("class=\"failed\""));
        // Round trip through results.json.
        let json = serde_json::to_string(&results).unwrap();
        assert_eq!(serde_json::from_str::<Results>(&json).unwrap(), results);
    }

    #[test]
    fn simulcast_and_first_frame_figures() {
        let info = |name: &str| ScenarioInfo {
            name: name.into(),
            description: String::new(),
        };
        let mut cells = vec![
            cell("video-1x200", "ringcast", Some(2.0)),
            cell("simulcast-1x200", "ringcast", Some(3.0)),
            cell("ttff-1x40", "ringcast", Some(1.0)),
            cell("ttff-nocache-1x40", "ringcast", Some(1.0)),
        ];
        for (cell, (p50, p95, rss)) in cells[2..]
            .iter_mut()
            .zip([(40.0, 90.0, 20_500.0), (2100.0, 3900.0, 20_000.0)])
        {
            let m = cell.median.as_mut().unwrap();
            m.first_frame_p50_ms = p50;
            m.first_frame_p95_ms = p95;
            m.rss_kib = rss;
        }
        let results = Results {
            scenarios: [
                "video-1x200",
                "simulcast-1x200",
                "ttff-1x40",
                "ttff-nocache-1x40",
            ]
            .map(info)
            .to_vec(),
            variants: vec!["ringcast".into()],
            cells,
            ..Results::default()
        };
        let md = markdown(&results);
        assert!(
            md.contains("| ringcast | 200 | 2.00 | 3.00 | 1.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| ringcast | 40 | 40 / 90 | 2100 / 3900 | 500 |"),
            "{md}"
        );
        // The per-scenario tables show first frame too.
        assert!(md.contains("| 2100 / 3900 |"), "{md}");
        // Without both halves of a pair, no figure.
        let alone = Results {
            scenarios: vec![info("video-1x200")],
            variants: vec!["ringcast".into()],
            cells: vec![cell("video-1x200", "ringcast", Some(2.0))],
            ..Results::default()
        };
        assert_eq!(figures_markdown(&alone), "");
        // results.json from before these figures still reads.
        let old = r#"{"cpu_us_per_packet":1.0,"server_cpu_pct":1.0,"forwarded_pps":1.0,
            "loss_pct":0.0,"latency_p50_ms":1.0,"latency_p99_ms":1.0,"join_p50_ms":1.0,
            "join_p99_ms":1.0,"rss_kib_per_viewer":1.0,"viewers_connected":1.0,
            "viewers_requested":1.0}"#;
        let f: Figures = serde_json::from_str(old).unwrap();
        assert_eq!(f.first_frame_p50_ms, 0.0);
    }
}
