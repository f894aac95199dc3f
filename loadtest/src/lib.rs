//! The parts of `ringcast-loadtest` that other programs use: the summary a run writes as JSON
//! ([`summary`]), report dates ([`clock`]) and the network-namespace test bed with its Janus
//! configuration ([`testbed`]), shared by the loadtest's integration tests and the
//! `ringcast-bench` scenario runner.
#![forbid(unsafe_code)]

pub mod clock;
pub mod summary;
pub mod testbed;
