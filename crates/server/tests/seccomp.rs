//! `config/seccomp-ringcast.json`, the seccomp profile README gives for running the io_uring
//! engine under Docker (whose default profile denies io_uring): it must allow every system call
//! ringcast makes. No Docker engine runs here, so the server runs under `strace -f -c` through
//! a WHIP publisher and a WHEP viewer session, and every system call it made must be in the
//! profile's allowlist. Needs strace (`scripts/test` installs it).

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{client, run_publisher, run_viewer, start_server_under};

fn profile() -> serde_json::Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/seccomp-ringcast.json"
    );
    let text = std::fs::read_to_string(path).expect("config/seccomp-ringcast.json");
    serde_json::from_str(&text).expect("the profile is JSON")
}

fn allowed(profile: &serde_json::Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for rule in profile["syscalls"].as_array().expect("syscalls") {
        assert_eq!(rule["action"], "SCMP_ACT_ALLOW", "an allowlist: {rule}");
        for name in rule["names"].as_array().expect("names") {
            names.insert(name.as_str().expect("a name").to_owned());
        }
    }
    names
}

#[test]
fn profile_denies_by_default_and_allows_io_uring() {
    let profile = profile();
    assert_eq!(profile["defaultAction"], "SCMP_ACT_ERRNO");
    let names = allowed(&profile);
    for name in ["io_uring_setup", "io_uring_enter", "io_uring_register"] {
        assert!(names.contains(name), "{name} allowed");
    }
}

#[test]
fn every_system_call_of_a_session_is_in_the_profile() {
    let out = std::env::temp_dir().join(format!("ringcast-strace-{}.txt", std::process::id()));
    let out_arg = out.to_str().unwrap().to_owned();
    let wrapper = ["strace", "-f", "-qq", "-c", "-U", "name", "-o", &out_arg];
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("strace is not installed (scripts/test installs the Debian package)");
    }
    let mut server = start_server_under(&wrapper, 2, &[]);
    let http = server.http.clone();
    let body = ureq::get(format!("{http}/api/stats"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    let stats: serde_json::Value = serde_json::from_str(&body).unwrap();
    let engine = stats["engine"].as_str().unwrap().to_owned();

    let (publisher, _) = client(&http, "/whip/seccomp", true);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Default::default();
    let publishing = {
        let (http, stop) = (http.clone(), stop.clone());
        std::thread::spawn(move || run_publisher(http, publisher, stop, sent))
    };
    let (viewer, posted) = client(&http, "/whep/seccomp", false);
    let (seen, _) = run_viewer(viewer, posted, 30, Duration::from_secs(10));
    stop.store(true, Ordering::SeqCst);
    publishing.join().unwrap();
    assert!(seen.rtp.len() >= 30, "the viewer got media");
    for path in ["/metrics", "/", "/api/streams"] {
        let _ = ureq::get(format!("{http}{path}")).call();
    }

    // Kill the traced server (strace's child); strace then writes its summary and exits.
    let children =
        std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", server.child.id()))
            .expect("strace's children");
    let pid = children
        .split_whitespace()
        .next()
        .expect("the traced server");
    Command::new("kill").args(["-9", pid]).status().unwrap();
    server.child.wait().unwrap();
    let summary = std::fs::read_to_string(&out).expect("strace summary");
    let _ = std::fs::remove_file(&out);

    let seen: BTreeSet<String> = summary
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("syscall") && !l.starts_with('-'))
        .filter(|l| *l != "total")
        // A system call's name; not the notice strace writes into the same file when the
        // server it traces is killed inside a call ("17306 ???( <detached ...>").
        .filter(|l| {
            l.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
        .map(str::to_owned)
        .collect();
    assert!(
        seen.contains("sendmmsg") || seen.contains("io_uring_enter"),
        "{seen:?}"
    );
    if engine == "uring" {
        assert!(seen.contains("io_uring_enter"), "{seen:?}");
    }
    let allowed = allowed(&profile());
    let missing: Vec<&String> = seen.difference(&allowed).collect();
    assert!(
        missing.is_empty(),
        "system calls ringcast made (engine {engine}) that config/seccomp-ringcast.json denies: {missing:?}"
    );
}
