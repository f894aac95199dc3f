//! The parts of `ringcast-loadtest` that other programs use: the summary a run writes as JSON
//! ([`summary`]).
#![forbid(unsafe_code)]

pub mod summary;
