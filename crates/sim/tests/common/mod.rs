//! Shared by the scenario tests.
#![allow(dead_code)]

use std::sync::Once;

/// Log to stderr as `RUST_LOG` says (nothing by default).
pub fn init_log() {
    static START: Once = Once::new();
    START.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
