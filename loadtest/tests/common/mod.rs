//! Shared by the loadtest's integration tests.

use std::path::PathBuf;

/// The `ringcast` binary of this workspace (scripts/test builds it before the tests).
pub fn ringcast_binary() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let path = target.join("debug").join("ringcast");
    assert!(
        path.exists(),
        "{} is missing: run cargo build -p ringcast first",
        path.display()
    );
    path
}

/// The I/O engine the servers under test run: `TEST_ENGINE` (`uring`, `epoll`; `scripts/test`
/// runs the suite once with each), else `auto`.
pub fn test_engine() -> String {
    std::env::var("TEST_ENGINE").unwrap_or_else(|_| "auto".into())
}
