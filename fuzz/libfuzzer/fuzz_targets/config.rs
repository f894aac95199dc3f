//! See `ringcast_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::config::run(data));
