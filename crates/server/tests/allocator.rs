//! The binary's allocator settings, read back from jemalloc itself: its statistics, printed
//! when the process exits (`_RJEM_MALLOC_CONF=stats_print:true`), list every option in effect.

use std::process::Command;

/// The statistics of a `ringcast --version` run with `conf` as jemalloc's run-time settings.
fn jemalloc_stats(conf: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ringcast"))
        .arg("--version")
        .env_clear()
        .env("_RJEM_MALLOC_CONF", conf)
        .output()
        .expect("ringcast runs");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stderr).expect("jemalloc's statistics are text")
}

/// jemalloc's own default keeps freed pages for 10 s: with the shard's buffers coming and going
/// every frame, that was 70-100 KiB of RSS per viewer at 1 -> 500 (README, "The cost of a
/// viewer"). `.cargo/config.toml` compiles in 500 ms.
#[test]
fn freed_pages_go_back_to_the_kernel_after_half_a_second() {
    let stats = jemalloc_stats("stats_print:true");
    let compiled_in = stats
        .lines()
        .find(|l| l.contains("config.malloc_conf"))
        .unwrap_or_default();
    assert!(compiled_in.contains("dirty_decay_ms:500"), "{stats}");
    assert!(stats.contains("opt.dirty_decay_ms: 500 "), "{stats}");
}

/// An operator can still choose another decay when starting the server.
#[test]
fn the_decay_can_be_set_at_run_time() {
    let stats = jemalloc_stats("stats_print:true,dirty_decay_ms:10000");
    assert!(stats.contains("opt.dirty_decay_ms: 10000 "), "{stats}");
}
