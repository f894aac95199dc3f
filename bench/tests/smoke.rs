//! `ringcast-bench --smoke` against ringcast only (the build's defaults), so `cargo test` stays
//! quick: the whole path — network namespace, server start, loadtest, JSON, tables — for a
//! broadcast and a group call, in ~20 s.
//!
//! Needs root and iproute2 (scripts/test installs it), and the workspace's binaries built
//! beside this one (`cargo build --workspace --bins`, as scripts/test does).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn smoke_run_against_ringcast() {
    let bench = PathBuf::from(env!("CARGO_BIN_EXE_ringcast-bench"));
    let dir = bench.parent().expect("a target directory").to_path_buf();
    for name in ["ringcast", "ringcast-loadtest"] {
        assert!(
            dir.join(name).exists(),
            "{} is missing: run cargo build --workspace --bins first",
            dir.join(name).display()
        );
    }
    let out = std::env::temp_dir().join(format!("ringcast-bench-smoke-{}", std::process::id()));
    let output = Command::new(&bench)
        .args(["--smoke", "--variants", "ringcast", "--out"])
        .arg(&out)
        .output()
        .expect("ringcast-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the smoke run passed");
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("results.json")).unwrap()).unwrap();
    let cell = &results["cells"][0];
    assert_eq!(cell["scenario"], "video-1x10");
    assert_eq!(cell["variant"], "ringcast");
    assert!(cell["failed"].is_null());
    let median = &cell["median"];
    assert_eq!(median["viewers_connected"], 10.0);
    // The group call: 2 rooms of 3, every participant receiving, nothing lost on loopback.
    let rooms = &results["cells"][1];
    assert_eq!(rooms["scenario"], "rooms-2x3");
    assert!(rooms["failed"].is_null(), "{rooms}");
    assert_eq!(rooms["median"]["viewers_connected"], 6.0);
    assert!(rooms["median"]["cpu_us_per_packet"].as_f64().unwrap() > 0.0);
    assert!(median["cpu_us_per_packet"].as_f64().unwrap() > 0.0);
    assert!(median["forwarded_pps"].as_f64().unwrap() > 0.0);
    assert!(results["machine"]["cores"].as_u64().unwrap() >= 1);
    // The markdown table went to stdout and results.md, the page to report.html.
    assert!(stdout.contains("| ringcast |"));
    assert!(
        std::fs::read_to_string(out.join("results.md"))
            .unwrap()
            .contains("video-1x10")
    );
    assert!(
        std::fs::read_to_string(out.join("report.html"))
            .unwrap()
            .contains("<table>")
    );
    let _ = std::fs::remove_dir_all(out);
}
