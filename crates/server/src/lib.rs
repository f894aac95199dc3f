//! The parts of the `ringcast` binary that other code calls too: the configuration loader
//! (the fuzz targets in `fuzz/` feed it hostile text and variables).
#![forbid(unsafe_code)]

pub mod config;
