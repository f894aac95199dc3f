//! The HTML report: one self-contained file (inline CSS, inline SVG plots drawn with
//! `plotters`, no scripts, no external resources) that reads well in a browser and prints.
//!
//! Everything that comes from outside (scenario, target, error causes, threshold messages)
//! is escaped; plots skip non-finite values and show a "no data" note when there is
//! nothing to draw.

use std::fmt::Write as _;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::summary::{Counts, Percentiles, ServerFigures, Summary, Tick};

/// Writes the report for `summary` to `path`.
pub fn write_html(summary: &Summary, path: &Path) -> std::io::Result<()> {
    std::fs::write(path, render_html(summary))
}

/// The report for `summary`, as one HTML document.
pub fn render_html(summary: &Summary) -> String {
    let s = summary;
    let mut h = String::with_capacity(64 * 1024);
    let title = if s.scenario.is_empty() {
        "ringcast load test".to_owned()
    } else {
        format!("ringcast load test: {}", s.scenario)
    };

    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(h, "<title>{}</title>", esc(&title));
    let _ = writeln!(h, "<style>{CSS}</style>\n</head>\n<body>\n<main>");

    // Header.
    h.push_str("<header>\n");
    if s.scenario.trim().is_empty() {
        h.push_str("<h1>Load test</h1>\n");
    } else {
        let _ = writeln!(
            h,
            "<h1>Load test <span class=\"scenario\">{}</span></h1>",
            esc(&s.scenario)
        );
    }
    let _ = writeln!(
        h,
        "<p class=\"meta\"><span>target <code>{}</code></span><span>started {}</span>\
         <span>run {} s, measured {} s</span></p>",
        esc(or_dash(&s.target)),
        esc(or_dash(&s.started_at)),
        fmt_fixed(s.duration_s, 1),
        fmt_fixed(s.measured_s, 1),
    );
    h.push_str("</header>\n");

    // Verdict and warnings.
    if s.threshold_failures.is_empty() {
        h.push_str("<div class=\"box ok\"><strong>No threshold failures.</strong></div>\n");
    } else {
        h.push_str("<div class=\"box fail\"><strong>Thresholds failed</strong>\n<ul>\n");
        for f in &s.threshold_failures {
            let _ = writeln!(h, "<li>{}</li>", esc(f));
        }
        h.push_str("</ul>\n</div>\n");
    }
    if let Some(w) = &s.bottleneck_warning {
        let _ = writeln!(
            h,
            "<div class=\"box warn\"><strong>Load generator bottleneck:</strong> {}<br>\
             <span class=\"note\">Figures measured while the load generator was saturated \
             describe the load generator as much as the server.</span></div>",
            esc(w)
        );
    }

    tiles(&mut h, s);

    // Detail tables.
    h.push_str("<section class=\"cards\">\n");
    sessions_card(&mut h, s);
    percentiles_card(
        &mut h,
        "Join time",
        "POST to first media packet at the viewer",
        &s.join_ms,
        &[
            ("p50", s.join_ms.p50),
            ("p95", s.join_ms.p95),
            ("p99", s.join_ms.p99),
        ],
    );
    percentiles_card(
        &mut h,
        "Latency",
        "publisher to viewer, one way, full viewers",
        &s.latency_ms,
        &[
            ("p50", s.latency_ms.p50),
            ("p99", s.latency_ms.p99),
            ("p99.9", s.latency_ms.p999),
        ],
    );
    first_frame_card(&mut h, s);
    delivery_card(&mut h, s);
    server_card(&mut h, s.server.as_ref());
    loadgen_card(&mut h, s);
    errors_card(&mut h, s);
    h.push_str("</section>\n");

    // Plots.
    h.push_str("<h2>Over time</h2>\n<section class=\"plots\">\n");
    figure(
        &mut h,
        "wide",
        "Packets per second and loss",
        "Media packets/s sent by the publishers and received by the viewers \
         (left axis, log scale), loss in each second (right axis).",
        plot_or_note(|| traffic_plot(&s.timeline), (WIDE, TALL)),
    );
    figure(
        &mut h,
        "wide",
        "Sessions",
        "Sessions with media flowing and sessions failed so far, against the number requested.",
        plot_or_note(
            || sessions_plot(&s.timeline, s.publishers.requested + s.viewers.requested),
            (WIDE, TALL),
        ),
    );
    h.push_str("</section>\n<h2>Distributions</h2>\n<section class=\"plots\">\n");
    figure(
        &mut h,
        "half",
        "Latency histogram",
        &if s.latency_ms.count > 0 && s.latency_ms.p99.is_finite() {
            format!(
                "Packets per latency bucket (full viewers, log scale); buckets past p99 \
                 ({} ms) in orange.",
                fmt_ms(s.latency_ms.p99)
            )
        } else {
            "Packets per latency bucket (full viewers, log scale).".to_owned()
        },
        plot_or_note(
            || latency_histogram_plot(&s.latency_histogram, &s.latency_ms),
            (HALF, TALL),
        ),
    );
    figure(
        &mut h,
        "half",
        "Join time CDF",
        "Fraction of connected viewers that had their first media packet by then.",
        plot_or_note(
            || cdf_plot(&s.join_cdf, "join time, ms", "viewers joined"),
            (HALF, TALL),
        ),
    );
    figure(
        &mut h,
        "half",
        "Time to first frame CDF",
        "Fraction of the viewers with a first frame that had their first complete keyframe \
         by then.",
        plot_or_note(
            || cdf_plot(&s.first_frame_ms.cdf, "time to first frame, ms", "viewers"),
            (HALF, TALL),
        ),
    );
    h.push_str("</section>\n");

    let _ = writeln!(
        h,
        "<footer>ringcast-loadtest {}</footer>\n</main>\n</body>\n</html>",
        env!("CARGO_PKG_VERSION")
    );
    h
}

const CSS: &str = r#"
:root { --fg:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f4f5f7; --card:#fff;
  --red:#b91c1c; --redbg:#fef2f2; --amber:#92400e; --amberbg:#fffbeb; --green:#166534; --greenbg:#f0fdf4; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font:15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width:1120px; margin:0 auto; padding:28px 24px 40px; }
header h1 { font-size:26px; margin:0 0 6px; font-weight:650; }
header h1 .scenario { color:#1d4ed8; }
.meta { margin:0 0 18px; color:var(--muted); display:flex; flex-wrap:wrap; gap:6px 22px; }
code { font:13px/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background:#e9ebef; padding:1px 6px; border-radius:4px; color:var(--fg); }
h2 { font-size:19px; margin:30px 0 12px; font-weight:620; }
h3 { font-size:15px; margin:0 0 2px; font-weight:620; }
.box { border-radius:8px; padding:10px 16px; margin:0 0 12px; border:1px solid; }
.box ul { margin:6px 0 2px; padding-left:22px; }
.box.fail { background:var(--redbg); color:var(--red); border-color:#fecaca; }
.box.warn { background:var(--amberbg); color:var(--amber); border-color:#fcd34d; }
.box.ok { background:var(--greenbg); color:var(--green); border-color:#bbf7d0; }
.note { font-size:13px; opacity:.85; }
.tiles { display:grid; grid-template-columns:repeat(auto-fit, minmax(160px, 1fr)); gap:12px; margin:18px 0 6px; }
.tile { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:12px 16px; }
.tile .k { color:var(--muted); font-size:13px; }
.tile .v { font-size:24px; font-weight:650; font-variant-numeric:tabular-nums; white-space:nowrap; }
.tile .v small { font-size:14px; font-weight:500; color:var(--muted); }
.tile.bad .v { color:var(--red); }
.tile.warn .v { color:#b45309; }
.cards { display:grid; grid-template-columns:repeat(auto-fill, minmax(330px, 1fr)); gap:14px; margin-top:18px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 18px; }
.card .sub { color:var(--muted); font-size:13px; margin:0 0 8px; }
table { border-collapse:collapse; width:100%; font-variant-numeric:tabular-nums; }
th, td { padding:4px 6px; border-bottom:1px solid var(--line); text-align:right; }
td { white-space:nowrap; }
th:first-child, td:first-child { text-align:left; }
thead th { color:var(--muted); font-weight:500; font-size:13px; }
tbody th { font-weight:500; }
tr:last-child td, tr:last-child th { border-bottom:none; }
td.bad { color:var(--red); font-weight:600; }
td.warn { color:#b45309; font-weight:600; }
td.dim, .dim { color:var(--muted); }
.plots { display:grid; grid-template-columns:repeat(2, minmax(0, 1fr)); gap:14px; }
figure { margin:0; background:var(--card); border:1px solid var(--line); border-radius:10px; padding:14px 16px 8px; }
figure.wide { grid-column:1 / -1; }
figcaption { margin-bottom:6px; }
figcaption .sub { display:block; color:var(--muted); font-size:13px; }
figure svg { display:block; width:100%; height:auto; }
.plot-error { color:var(--red); padding:30px; text-align:center; }
footer { margin-top:28px; color:var(--muted); font-size:12px; text-align:right; }
@media (max-width: 760px) { .plots { grid-template-columns:1fr; } }
@media print { body { background:#fff; } .card, figure, .tile { break-inside:avoid; } }
"#;

// ---------------------------------------------------------------------------------------
// Tables.

fn tiles(h: &mut String, s: &Summary) {
    h.push_str("<section class=\"tiles\">\n");
    let viewers_bad = s.viewers.failed > 0 || s.viewers.connected < s.viewers.requested;
    tile(
        h,
        "Viewers connected",
        &format!(
            "{} <small>/ {}</small>",
            fmt_int(s.viewers.connected as u64),
            fmt_int(s.viewers.requested as u64)
        ),
        bad_if(viewers_bad),
    );
    tile(
        h,
        "Join time p95",
        &with_unit(&pct_value(&s.join_ms, s.join_ms.p95), "ms"),
        "",
    );
    tile(
        h,
        "Latency p99",
        &with_unit(&pct_value(&s.latency_ms, s.latency_ms.p99), "ms"),
        "",
    );
    tile(
        h,
        "Loss",
        &with_unit(&fmt_loss(s.loss_pct), "%"),
        warn_if(s.loss_pct.is_finite() && s.loss_pct > 0.0),
    );
    if let Some(sv) = &s.server {
        tile(
            h,
            "Server CPU per packet",
            &with_unit(&fmt_sig(sv.cpu_us_per_packet), "µs"),
            "",
        );
    } else {
        tile(
            h,
            "Bitrate per viewer",
            &with_unit(&fmt_sig(s.bitrate_per_viewer_kbps), "kbit/s"),
            "",
        );
    }
    h.push_str("</section>\n");
}

/// A headline figure; `class` is "", "warn" or "bad".
fn tile(h: &mut String, key: &str, value_html: &str, class: &str) {
    let _ = writeln!(
        h,
        "<div class=\"tile {class}\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
        esc(key),
        value_html
    );
}

fn with_unit(value: &str, unit: &str) -> String {
    if value == DASH {
        value.to_owned()
    } else {
        format!("{} <small>{}</small>", esc(value), esc(unit))
    }
}

fn card_start(h: &mut String, title: &str, sub: &str) {
    let _ = writeln!(h, "<div class=\"card\">\n<h3>{}</h3>", esc(title));
    let _ = writeln!(h, "<p class=\"sub\">{}</p>", esc(sub));
}

fn card_end(h: &mut String) {
    h.push_str("</div>\n");
}

/// One row: a label and a value, the value already formatted (it is escaped here).
fn row(h: &mut String, label: &str, value: &str, class: &str) {
    let _ = writeln!(
        h,
        "<tr><th>{}</th><td class=\"{}\">{}</td></tr>",
        esc(label),
        class,
        esc(value)
    );
}

fn sessions_card(h: &mut String, s: &Summary) {
    card_start(h, "Sessions", "requested, with media flowing, gave up");
    h.push_str(
        "<table>\n<thead><tr><th></th><th>requested</th><th>connected</th><th>failed</th>\
         </tr></thead>\n<tbody>\n",
    );
    counts_row(h, "Publishers", &s.publishers);
    counts_row(h, "Viewers", &s.viewers);
    h.push_str("</tbody>\n</table>\n<table>\n<tbody>\n");
    row(
        h,
        "Full viewers (payload verified)",
        &fmt_int(s.full_viewers as u64),
        "",
    );
    h.push_str("</tbody>\n</table>\n");
    card_end(h);
}

fn counts_row(h: &mut String, label: &str, c: &Counts) {
    let _ = writeln!(
        h,
        "<tr><th>{}</th><td>{}</td><td class=\"{}\">{}</td><td class=\"{}\">{}</td></tr>",
        esc(label),
        fmt_int(c.requested as u64),
        if c.connected < c.requested { "bad" } else { "" },
        fmt_int(c.connected as u64),
        if c.failed > 0 { "bad" } else { "" },
        fmt_int(c.failed as u64),
    );
}

fn percentiles_card(h: &mut String, title: &str, sub: &str, p: &Percentiles, rows: &[(&str, f64)]) {
    card_start(h, &format!("{title}, ms"), sub);
    h.push_str("<table>\n<tbody>\n");
    for (label, v) in rows {
        row(h, label, &pct_value(p, *v), "");
    }
    row(h, "max", &pct_value(p, p.max), "");
    row(h, "samples", &fmt_int(p.count), "dim");
    h.push_str("</tbody>\n</table>\n");
    card_end(h);
}

fn first_frame_card(h: &mut String, s: &Summary) {
    let f = &s.first_frame_ms;
    card_start(
        h,
        "Time to first frame, ms",
        "POST to the viewer's first complete keyframe",
    );
    h.push_str("<table>\n<tbody>\n");
    let ms = |v: f64| {
        if f.count == 0 {
            "–".to_owned()
        } else {
            fmt_ms(v)
        }
    };
    for (label, v) in [
        ("p10", f.p10),
        ("p50", f.p50),
        ("p90", f.p90),
        ("p95", f.p95),
        ("p99", f.p99),
        ("max", f.max),
    ] {
        row(h, label, &ms(v), "");
    }
    row(h, "samples", &fmt_int(f.count), "dim");
    row(
        h,
        "without a first frame",
        &fmt_int(f.missing),
        bad_if(f.missing > 0),
    );
    h.push_str("</tbody>\n</table>\n");
    card_end(h);
}

fn delivery_card(h: &mut String, s: &Summary) {
    card_start(h, "Delivery", "measured window");
    h.push_str("<table>\n<tbody>\n");
    row(h, "Packets sent", &fmt_int(s.packets_sent), "");
    row(h, "Packets received", &fmt_int(s.packets_received), "");
    let lossy = s.loss_pct.is_finite() && s.loss_pct > 0.0;
    row(
        h,
        "Loss",
        &format!("{} %", fmt_loss(s.loss_pct)),
        warn_if(lossy),
    );
    row(
        h,
        "Duplicates",
        &fmt_int(s.duplicates),
        warn_if(s.duplicates > 0),
    );
    row(h, "Reorders", &fmt_int(s.reorders), warn_if(s.reorders > 0));
    row(
        h,
        "Corrupt payloads",
        &fmt_int(s.corrupt),
        bad_if(s.corrupt > 0),
    );
    row(
        h,
        "Bitrate per viewer",
        &format!("{} kbit/s", fmt_sig(s.bitrate_per_viewer_kbps)),
        "",
    );
    h.push_str("</tbody>\n</table>\n");
    card_end(h);
}

fn server_card(h: &mut String, server: Option<&ServerFigures>) {
    let Some(sv) = server else {
        card_start(h, "Server", "not measured: run with --server-pid");
        card_end(h);
        return;
    };
    card_start(
        h,
        "Server",
        &format!("pid {}, /proc over the measured window", sv.pid),
    );
    h.push_str("<table>\n<tbody>\n");
    row(
        h,
        "CPU per forwarded packet",
        &format!("{} µs", fmt_sig(sv.cpu_us_per_packet)),
        "",
    );
    row(
        h,
        "CPU, % of one core",
        &format!("{} %", fmt_sig(sv.cpu_pct)),
        "",
    );
    row(
        h,
        "CPU per viewer",
        &format!("{} ms/s", fmt_sig(sv.cpu_ms_per_viewer_s)),
        "",
    );
    row(
        h,
        "RSS per participant",
        &format!("{} KiB", fmt_sig(sv.rss_kib_per_participant)),
        "",
    );
    row(
        h,
        "RSS at end",
        &format!("{} MiB", fmt_sig(sv.rss_kib as f64 / 1024.0)),
        "dim",
    );
    row(h, "CPU time", &format!("{} s", fmt_sig(sv.cpu_s)), "dim");
    row(
        h,
        "Forwarded packets",
        &fmt_int(sv.forwarded_packets),
        "dim",
    );
    h.push_str("</tbody>\n</table>\n");
    card_end(h);
}

fn loadgen_card(h: &mut String, s: &Summary) {
    card_start(h, "Load generator", "its own cost");
    h.push_str("<table>\n<tbody>\n");
    row(
        h,
        "CPU, % of one core",
        &format!("{} %", fmt_sig(s.loadtest_cpu_pct)),
        bad_if(s.bottleneck_warning.is_some()),
    );
    row(h, "Threads", &fmt_int(s.loadtest_threads as u64), "");
    row(
        h,
        "Bottleneck",
        if s.bottleneck_warning.is_some() {
            "yes, see above"
        } else {
            "no"
        },
        bad_if(s.bottleneck_warning.is_some()),
    );
    h.push_str("</tbody>\n</table>\n");
    card_end(h);
}

fn errors_card(h: &mut String, s: &Summary) {
    let total: u64 = s.errors.values().sum();
    card_start(h, "Errors by cause", &format!("{} in all", fmt_int(total)));
    if s.errors.is_empty() {
        h.push_str("<p class=\"dim\">None.</p>\n");
    } else {
        let mut errors: Vec<(&String, &u64)> = s.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        h.push_str("<table>\n<tbody>\n");
        for (cause, n) in errors {
            row(h, cause, &fmt_int(*n), bad_if(*n > 0));
        }
        h.push_str("</tbody>\n</table>\n");
    }
    card_end(h);
}

fn bad_if(bad: bool) -> &'static str {
    if bad { "bad" } else { "" }
}

fn warn_if(warn: bool) -> &'static str {
    if warn { "warn" } else { "" }
}

fn figure(h: &mut String, class: &str, title: &str, sub: &str, body: String) {
    let _ = writeln!(
        h,
        "<figure class=\"{class}\">\n<figcaption><h3>{}</h3><span class=\"sub\">{}</span>\
         </figcaption>\n{body}</figure>",
        esc(title),
        esc(sub)
    );
}

// ---------------------------------------------------------------------------------------
// Formatting.

const DASH: &str = "—";

/// HTML-escapes text for element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn or_dash(s: &str) -> &str {
    if s.trim().is_empty() { DASH } else { s }
}

/// Thousands separators for the integer part of an already formatted number.
fn group(formatted: &str) -> String {
    let (sign, rest) = match formatted.strip_prefix('-') {
        Some(r) => ("-", r),
        None => ("", formatted),
    };
    let (int, frac) = match rest.find('.') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let mut out = String::with_capacity(formatted.len() + int.len() / 3);
    out.push_str(sign);
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out.push_str(frac);
    out
}

fn fmt_int(v: u64) -> String {
    group(&v.to_string())
}

fn fmt_fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return DASH.to_owned();
    }
    group(&format!("{v:.decimals$}"))
}

/// About three significant figures, no exponent.
fn fmt_sig(v: f64) -> String {
    if !v.is_finite() {
        return DASH.to_owned();
    }
    let a = v.abs();
    let decimals = if a == 0.0 || a >= 100.0 {
        0
    } else if a >= 10.0 {
        1
    } else if a >= 1.0 {
        2
    } else {
        3
    };
    fmt_fixed(v, decimals)
}

fn fmt_ms(v: f64) -> String {
    fmt_sig(v)
}

fn fmt_loss(v: f64) -> String {
    if !v.is_finite() {
        DASH.to_owned()
    } else if v == 0.0 {
        "0".to_owned()
    } else if v.abs() < 1.0 {
        fmt_fixed(v, 3)
    } else {
        fmt_fixed(v, 2)
    }
}

/// A percentile, or a dash when the distribution has no samples.
fn pct_value(p: &Percentiles, v: f64) -> String {
    if p.count == 0 {
        DASH.to_owned()
    } else {
        fmt_ms(v)
    }
}

/// Short axis labels: 1200 → "1.2k", 3_500_000 → "3.5M".
fn fmt_axis(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        trim_zero(format!("{:.1}", v / 1e6)) + "M"
    } else if a >= 1e3 {
        trim_zero(format!("{:.1}", v / 1e3)) + "k"
    } else if a >= 10.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim_zero(format!("{v:.1}"))
    } else {
        trim_zero(format!("{v:.2}"))
    }
}

fn trim_zero(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

// ---------------------------------------------------------------------------------------
// Plots.

type PlotResult<T> = Result<T, Box<dyn std::error::Error>>;

const WIDE: u32 = 1040;
const HALF: u32 = 510;
const TALL: u32 = 320;

const FONT: &str = "sans-serif";
const BLUE: RGBColor = RGBColor(37, 99, 235);
const GREEN: RGBColor = RGBColor(22, 163, 74);
const RED: RGBColor = RGBColor(220, 38, 38);
const ORANGE: RGBColor = RGBColor(234, 88, 12);
const GREY: RGBColor = RGBColor(156, 163, 175);
const TEXT: RGBColor = RGBColor(75, 85, 99);
const GRID_BOLD: RGBColor = RGBColor(222, 225, 230);
const GRID_LIGHT: RGBColor = RGBColor(243, 244, 246);

/// Why a plot has nothing to draw.
#[derive(Debug)]
struct NoData;

impl std::fmt::Display for NoData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no data")
    }
}

impl std::error::Error for NoData {}

/// The plot's SVG, or a "no data" panel, or (should drawing itself fail) a note.
fn plot_or_note(draw: impl FnOnce() -> PlotResult<String>, size: (u32, u32)) -> String {
    match draw() {
        Ok(svg) => svg,
        Err(e) => {
            let note = if e.is::<NoData>() {
                "no data".to_owned()
            } else {
                format!("plot failed: {e}")
            };
            match note_svg(&note, size) {
                Ok(svg) => svg,
                Err(e) => format!("<p class=\"plot-error\">{}</p>\n", esc(&e.to_string())),
            }
        }
    }
}

/// Draws into a fresh SVG string of `size`.
fn svg(
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend<'_>, Shift>) -> PlotResult<()>,
) -> PlotResult<String> {
    let mut buf = String::new();
    {
        let root = SVGBackend::with_string(&mut buf, size).into_drawing_area();
        root.fill(&WHITE)?;
        draw(&root)?;
        root.present()?;
    }
    Ok(buf)
}

fn note_svg(note: &str, size: (u32, u32)) -> PlotResult<String> {
    svg(size, |root| {
        let (w, h) = root.dim_in_pixel();
        let (w, h) = (w as i32, h as i32);
        root.draw(&Rectangle::new(
            [(10, 10), (w - 10, h - 10)],
            ShapeStyle::from(&GRID_BOLD).stroke_width(1),
        ))?;
        let style = TextStyle::from((FONT, 20).into_font())
            .color(&GREY)
            .pos(Pos::new(HPos::Center, VPos::Center));
        root.draw(&Text::new(note.to_owned(), (w / 2, h / 2), style))?;
        Ok(())
    })
}

fn label_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 16).into_font()).color(&TEXT)
}

fn desc_style() -> TextStyle<'static> {
    TextStyle::from((FONT, 17).into_font()).color(&TEXT)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// The range of the finite values, widened when empty or a single point.
fn span(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return None;
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    Some((lo, hi))
}

/// A top for a 0-based axis with headroom, at least `min`.
fn top(max: f64, min: f64, headroom: f64) -> f64 {
    if max.is_finite() && max > 0.0 {
        (max * headroom).max(min)
    } else {
        min
    }
}

/// Height of the legend strip above a chart.
const LEGEND_H: u32 = 30;

/// Splits off a strip at the top of `root` and draws a one-line legend in it, aligned with
/// the plotting area (charts with a 12 px margin and a 64 px y label area), so that it never
/// hides a line.
fn with_legend<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    items: &[(RGBColor, &str)],
) -> PlotResult<DrawingArea<SVGBackend<'a>, Shift>> {
    let (strip, rest) = root.split_vertically(LEGEND_H);
    let font = label_style().pos(Pos::new(HPos::Left, VPos::Center));
    let h = strip.dim_in_pixel().1;
    let y = h as i32 / 2 + 2;
    let widths: Vec<i32> = items
        .iter()
        .map(|(_, text)| {
            strip
                .estimate_text_size(text, &font)
                .map_or(100, |(tw, _)| tw as i32)
        })
        .collect();
    let mut x = 76;
    for ((color, text), tw) in items.iter().zip(widths) {
        strip.draw(&PathElement::new(
            vec![(x, y), (x + 22, y)],
            color.stroke_width(3),
        ))?;
        strip.draw(&Text::new((*text).to_owned(), (x + 28, y), font.clone()))?;
        x += 22 + 6 + tw + 22;
    }
    Ok(rest)
}

/// Axis labels with as many decimals as an axis up to `top` needs.
fn fmt_tick(v: f64, top: f64) -> String {
    if top >= 1000.0 {
        return fmt_axis(v);
    }
    let decimals = if top > 0.0 && top.is_finite() {
        (1.0 - top.log10().floor()).clamp(0.0, 6.0) as usize
    } else {
        0
    };
    trim_zero(format!("{v:.decimals$}"))
}

/// Packets/s in and out (left axis) and loss % (right axis) against time.
fn traffic_plot(timeline: &[Tick]) -> PlotResult<String> {
    let ticks: Vec<&Tick> = timeline.iter().filter(|t| t.t_s.is_finite()).collect();
    let has_values = ticks
        .iter()
        .any(|t| t.pps_in.is_finite() || t.pps_out.is_finite() || t.loss_pct.is_finite());
    let Some((t0, t1)) = span(ticks.iter().map(|t| t.t_s)).filter(|_| has_values) else {
        return Err(NoData.into());
    };
    // Packets/s on a log axis: a broadcast's viewers receive hundreds of times what its
    // publisher sends, and both lines should be readable. Zero sits on the bottom edge.
    let pps = || {
        ticks
            .iter()
            .flat_map(|t| [t.pps_in, t.pps_out])
            .filter(|v| v.is_finite())
    };
    let pps_max = pps().fold(0.0, f64::max);
    let pps_min_pos = pps().filter(|v| *v > 0.0).fold(f64::INFINITY, f64::min);
    let pps_lo = if pps_min_pos.is_finite() {
        10f64.powf(pps_min_pos.log10().floor())
    } else {
        1.0
    };
    let pps_top = (pps_max * 1.5).max(pps_lo * 10.0);
    let loss_max = ticks
        .iter()
        .filter_map(|t| finite(t.loss_pct))
        .fold(0.0, f64::max)
        .min(100.0);
    let loss_top = if loss_max > 0.0 {
        (loss_max * 1.3).min(100.0)
    } else {
        1.0
    };

    svg((WIDE, TALL), |root| {
        let plot = with_legend(
            root,
            &[
                (BLUE, "sent by publishers"),
                (GREEN, "received by viewers"),
                (RED, "loss % (right axis)"),
            ],
        )?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .margin_top(6)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .right_y_label_area_size(58)
            .build_cartesian_2d(t0..t1, (pps_lo..pps_top).log_scale())?
            .set_secondary_coord(t0..t1, 0.0..loss_top);
        chart
            .configure_mesh()
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .axis_style(GREY)
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .x_desc("time since start, s")
            .y_desc("packets/s (log scale)")
            .x_label_formatter(&|v| fmt_axis(*v))
            .y_label_formatter(&|v| fmt_axis(*v))
            .draw()?;
        chart
            .configure_secondary_axes()
            .axis_style(GREY)
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .y_desc("loss, %")
            .y_label_formatter(&|v| fmt_tick(*v, loss_top))
            .draw()?;
        chart.draw_series(LineSeries::new(
            ticks
                .iter()
                .filter_map(|t| Some((t.t_s, finite(t.pps_out)?.max(pps_lo)))),
            BLUE.stroke_width(2),
        ))?;
        chart.draw_series(LineSeries::new(
            ticks
                .iter()
                .filter_map(|t| Some((t.t_s, finite(t.pps_in)?.max(pps_lo)))),
            GREEN.stroke_width(2),
        ))?;
        chart.draw_secondary_series(LineSeries::new(
            ticks
                .iter()
                .filter_map(|t| Some((t.t_s, finite(t.loss_pct)?.clamp(0.0, 100.0)))),
            RED.stroke_width(2),
        ))?;
        Ok(())
    })
}

/// Connected and failed sessions against time, with the number requested.
fn sessions_plot(timeline: &[Tick], requested: usize) -> PlotResult<String> {
    let ticks: Vec<&Tick> = timeline.iter().filter(|t| t.t_s.is_finite()).collect();
    let Some((t0, t1)) = span(ticks.iter().map(|t| t.t_s)) else {
        return Err(NoData.into());
    };
    let max = ticks
        .iter()
        .map(|t| t.connected.max(t.failed))
        .max()
        .unwrap_or(0)
        .max(requested) as f64;
    let y_top = top(max, 1.0, 1.15);

    let requested_label = format!("requested ({requested})");
    let mut items = vec![(BLUE, "connected"), (RED, "failed")];
    if requested > 0 {
        items.insert(0, (GREY, requested_label.as_str()));
    }

    svg((WIDE, TALL), |root| {
        let plot = with_legend(root, &items)?;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .margin_top(6)
            .margin_right(28)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(t0..t1, 0.0..y_top)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .axis_style(GREY)
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .x_desc("time since start, s")
            .y_desc("sessions")
            .x_label_formatter(&|v| fmt_axis(*v))
            .y_label_formatter(&|v| fmt_axis(*v))
            .draw()?;
        if requested > 0 {
            let r = requested as f64;
            chart.draw_series(LineSeries::new([(t0, r), (t1, r)], GREY.stroke_width(1)))?;
        }
        chart.draw_series(LineSeries::new(
            ticks.iter().map(|t| (t.t_s, t.connected as f64)),
            BLUE.stroke_width(2),
        ))?;
        chart.draw_series(LineSeries::new(
            ticks.iter().map(|t| (t.t_s, t.failed as f64)),
            RED.stroke_width(2),
        ))?;
        Ok(())
    })
}

/// Packets per latency bucket; one bar per bucket, labelled with its upper bound.
fn latency_histogram_plot(buckets: &[(f64, u64)], latency: &Percentiles) -> PlotResult<String> {
    let mut b: Vec<(f64, u64)> = buckets
        .iter()
        .copied()
        .filter(|(ub, _)| ub.is_finite())
        .collect();
    b.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Leading and trailing empty buckets say nothing.
    let first = b.iter().position(|&(_, n)| n > 0);
    let last = b.iter().rposition(|&(_, n)| n > 0);
    let (Some(first), Some(last)) = (first, last) else {
        return Err(NoData.into());
    };
    let b = &b[first..=last];
    let n = b.len() as u32;
    let max = b.iter().map(|&(_, c)| c).max().unwrap_or(0);
    // Counts on a log axis, so that the tail (the buckets past p99) shows at all.
    let y_lo = 0.5;
    let y_top = (max as f64 * 2.0).max(10.0);
    let p99 = (latency.count > 0 && latency.p99.is_finite()).then_some(latency.p99);
    let label = |v: &SegmentValue<u32>| match v {
        SegmentValue::Exact(i) | SegmentValue::CenterOf(i) => b
            .get(*i as usize)
            .map(|&(ub, _)| fmt_axis(ub))
            .unwrap_or_default(),
        SegmentValue::Last => String::new(),
    };

    svg((HALF, TALL), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_top(16)
            .margin_right(20)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d((0u32..n).into_segmented(), (y_lo..y_top).log_scale())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .axis_style(GREY)
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .x_labels((n as usize).min(8))
            .x_desc("latency, ms (bucket upper bound)")
            .y_desc("packets (log scale)")
            .x_label_formatter(&label)
            .y_label_formatter(&|v| fmt_axis(*v))
            .draw()?;
        // One rectangle per bucket, in order (plotters' `Histogram` sums through a hash map,
        // which makes the SVG differ from run to run).
        let gap = if n > 40 { 0 } else { 1 };
        chart.draw_series(b.iter().enumerate().filter(|(_, (_, c))| *c > 0).map(
            |(i, &(_, c))| {
                // Orange once the bucket's lower bound is past p99.
                let tail = p99.is_some_and(|p99| i > 0 && b[i - 1].0 >= p99);
                let color = if tail { ORANGE } else { BLUE };
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), y_lo),
                        (SegmentValue::Exact(i + 1), c as f64),
                    ],
                    color.filled(),
                );
                bar.set_margin(0, 0, gap, gap);
                bar
            },
        ))?;
        Ok(())
    })
}

/// Fraction of connected viewers joined against time since their POST.
fn cdf_plot(cdf: &[(f64, f64)], x_desc: &str, y_desc: &str) -> PlotResult<String> {
    let mut pts: Vec<(f64, f64)> = cdf
        .iter()
        .copied()
        .filter(|(ms, f)| ms.is_finite() && f.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(NoData.into());
    }
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let ms_max = pts.iter().map(|p| p.0).fold(0.0, f64::max);
    let x_lo = pts[0].0.min(0.0);
    let x_top = top(ms_max, 1.0, 1.05);
    let y_top = pts.iter().map(|p| p.1).fold(1.0, f64::max);
    // Start from zero so the first step shows.
    if pts[0].1 > 0.0 {
        pts.insert(0, (pts[0].0, 0.0));
    }

    svg((HALF, TALL), |root| {
        let mut chart = ChartBuilder::on(root)
            .margin(12)
            .margin_top(16)
            .margin_right(20)
            .x_label_area_size(44)
            .y_label_area_size(60)
            .build_cartesian_2d(x_lo..x_top, 0.0..y_top)?;
        chart
            .configure_mesh()
            .bold_line_style(GRID_BOLD)
            .light_line_style(GRID_LIGHT)
            .axis_style(GREY)
            .label_style(label_style())
            .axis_desc_style(desc_style())
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_labels(8)
            .x_label_formatter(&|v| fmt_axis(*v))
            .y_label_formatter(&|v| format!("{:.0} %", v * 100.0))
            .draw()?;
        let mut area = pts.clone();
        area.push((pts[pts.len() - 1].0, 0.0));
        chart.draw_series(std::iter::once(Polygon::new(area, BLUE.mix(0.12).filled())))?;
        chart.draw_series(LineSeries::new(pts.iter().copied(), BLUE.stroke_width(2)))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::ServerFigures;

    fn filled() -> Summary {
        let mut s = Summary {
            scenario: "broadcast 1x200 vp8 <2500kbps> & \"friends\"".into(),
            target: "http://127.0.0.1:8080/?a=1&b=<2>".into(),
            started_at: "2026-05-01T12:00:00Z".into(),
            measured_s: 60.0,
            duration_s: 75.0,
            publishers: Counts {
                requested: 1,
                connected: 1,
                failed: 0,
            },
            viewers: Counts {
                requested: 200,
                connected: 197,
                failed: 3,
            },
            full_viewers: 20,
            join_ms: Percentiles {
                count: 197,
                p50: 84.5,
                p95: 143.25,
                p99: 210.0,
                p999: 230.0,
                max: 251.75,
            },
            latency_ms: Percentiles {
                count: 1_200_000,
                p50: 0.42,
                p95: 0.9,
                p99: 1.73,
                p999: 4.85,
                max: 12.6,
            },
            packets_sent: 15_000,
            packets_received: 2_954_321,
            loss_pct: 0.0126,
            duplicates: 2,
            reorders: 17,
            corrupt: 0,
            bitrate_per_viewer_kbps: 2480.6,
            loadtest_cpu_pct: 312.4,
            loadtest_threads: 8,
            bottleneck_warning: Some("load generator at 97% of its cores <busy>".into()),
            generator_socket_drops: Some(12),
            server: Some(ServerFigures {
                pid: 4242,
                cpu_s: 41.3,
                cpu_pct: 68.8,
                forwarded_packets: 2_954_321,
                cpu_us_per_packet: 13.97,
                cpu_ms_per_viewer_s: 3.49,
                rss_kib: 182_000,
                rss_kib_per_participant: 312.25,
            }),
            threshold_failures: vec!["join p99 210 ms > 200 ms <limit>".into()],
            first_frame_ms: crate::stats::first_frames(
                &(1..=200).map(|i| 40.0 + f64::from(i)).collect::<Vec<_>>(),
                201,
            ),
            ..Summary::default()
        };
        s.errors.insert("http 503".into(), 2);
        s.errors.insert("ice <failed> & gone".into(), 1);
        for i in 0..75 {
            let t = i as f64;
            let connected = if i < 10 { i * 20 } else { 198 };
            s.timeline.push(Tick {
                t_s: t,
                connected,
                failed: if i < 8 { 0 } else { 3 },
                pps_out: if i < 2 { 0.0 } else { 250.0 },
                pps_in: 250.0 * connected as f64 * (1.0 - 0.01 * (i % 7) as f64 / 7.0),
                loss_pct: if i == 30 {
                    f64::NAN
                } else {
                    0.01 * (i % 5) as f64
                },
                p99_ms: 1.7,
            });
        }
        s.timeline.push(Tick {
            t_s: f64::INFINITY,
            ..Tick::default()
        });
        let mut ub = 0.05;
        for i in 0..40 {
            let x = i as f64 - 15.0;
            let tail = if (18..36).contains(&i) {
                2000 >> ((i - 18) / 2)
            } else {
                0
            };
            let n = (200_000.0 * (-(x * x) / 10.0).exp()) as u64 + tail;
            s.latency_histogram.push((ub, n));
            ub *= 1.15;
        }
        s.latency_histogram.push((f64::NAN, 5));
        for i in 0..=100 {
            let ms = 40.0 + 2.1 * i as f64;
            s.join_cdf.push((ms, i as f64 / 100.0));
        }
        s.join_cdf.push((f64::INFINITY, 1.0));
        s
    }

    #[test]
    fn report_filled_summary() {
        let s = filled();
        let html = render_html(&s);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.ends_with("</html>\n"));
        assert_eq!(html.matches("<svg").count(), 5, "five plots");
        assert!(!html.contains("no data"));
        assert!(html.contains("Time to first frame, ms") && html.contains("without a first frame"));
        // Escaped, never raw.
        assert!(html.contains("broadcast 1x200 vp8 &lt;2500kbps&gt; &amp; &quot;friends&quot;"));
        assert!(!html.contains("<2500kbps>"));
        assert!(html.contains("http://127.0.0.1:8080/?a=1&amp;b=&lt;2&gt;"));
        assert!(html.contains("ice &lt;failed&gt; &amp; gone"));
        assert!(html.contains("join p99 210 ms &gt; 200 ms &lt;limit&gt;"));
        assert!(html.contains("&lt;busy&gt;"));
        assert!(html.contains("2026-05-01T12:00:00Z"));
        // Figures.
        for needle in [
            "197",
            "84.5",
            "143",
            "210",
            "252",
            "0.420",
            "1.73",
            "4.85",
            "12.6",
            "0.013 %",
            "2,954,321",
            "15,000",
            "2,481 kbit/s",
            "312 %",
            "14.0 µs",
            "68.8 %",
            "3.49 ms/s",
            "312 KiB",
            "178 MiB",
            "http 503",
        ] {
            assert!(html.contains(needle), "missing {needle}");
        }
        assert!(html.contains("class=\"box fail\""));
        assert!(html.contains("class=\"box warn\""));
        // Plot labels are real text.
        for label in [
            "packets/s",
            "loss, %",
            "sessions",
            "join time, ms",
            "received by viewers",
        ] {
            assert!(html.contains(label), "missing plot label {label}");
        }
        assert!(html.contains("<text"));
        assert!(!html.contains("NaN"));
        assert!(!html.contains("inf"));
        assert!(!html.contains("<script"));
        assert!(!html.contains("http://www.w3.org/2000/svg\" href"));
    }

    #[test]
    fn report_empty_summary() {
        let html = render_html(&Summary::default());
        assert_eq!(html.matches("<svg").count(), 5);
        assert_eq!(html.matches("\nno data\n").count(), 5);
        assert!(html.contains("No threshold failures."));
        assert!(!html.contains("class=\"box warn\""));
        assert!(html.contains("not measured"));
        assert!(!html.contains("NaN"));
    }

    #[test]
    fn report_all_non_finite() {
        let mut s = Summary {
            loss_pct: f64::NAN,
            bitrate_per_viewer_kbps: f64::INFINITY,
            latency_histogram: vec![(f64::NAN, 3), (1.0, 0), (2.0, 0)],
            join_cdf: vec![(f64::NAN, 0.5), (3.0, f64::INFINITY)],
            ..Summary::default()
        };
        s.timeline.push(Tick {
            t_s: 1.0,
            pps_in: f64::NAN,
            pps_out: f64::INFINITY,
            loss_pct: f64::NEG_INFINITY,
            ..Tick::default()
        });
        let html = render_html(&s);
        assert_eq!(html.matches("<svg").count(), 5);
        // Traffic, histogram and CDFs have nothing finite; sessions has one point.
        assert_eq!(html.matches("\nno data\n").count(), 4);
        assert!(!html.contains("NaN"));
        assert!(!html.contains("inf"));
    }

    #[test]
    fn write_html_to_file() {
        let path = std::env::temp_dir().join(format!(
            "ringcast-loadtest-report-{}.html",
            std::process::id()
        ));
        write_html(&filled(), &path).unwrap();
        let back = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(
            back == render_html(&filled()),
            "the file holds the rendered report"
        );
        // To look at the report: RINGCAST_REPORT_SAMPLE=/tmp/report.html cargo test ... report
        // writes a filled report there and an empty one next to it (`.empty.html`).
        if let Ok(sample) = std::env::var("RINGCAST_REPORT_SAMPLE") {
            let sample = Path::new(&sample);
            write_html(&filled(), sample).unwrap();
            write_html(&Summary::default(), &sample.with_extension("empty.html")).unwrap();
        }
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_int(0), "0");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_int(1000), "1,000");
        assert_eq!(fmt_int(1_234_567), "1,234,567");
        assert_eq!(fmt_fixed(-12345.678, 1), "-12,345.7");
        assert_eq!(fmt_sig(f64::NAN), DASH);
        assert_eq!(fmt_sig(0.0), "0");
        assert_eq!(fmt_sig(1.234), "1.23");
        assert_eq!(fmt_sig(12.34), "12.3");
        assert_eq!(fmt_sig(1234.5), "1,234");
        assert_eq!(fmt_axis(1500.0), "1.5k");
        assert_eq!(fmt_axis(2_000_000.0), "2M");
        assert_eq!(fmt_axis(0.25), "0.25");
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}
