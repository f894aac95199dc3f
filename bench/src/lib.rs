//! Criterion micro benchmarks of ringcast's hot path, in memory: no sockets, no kernel, so a
//! regression in the core shows on its own. The code is in `benches/`; this library is empty.
//!
//! ```sh
//! cargo bench -p ringcast-bench
//! ```
