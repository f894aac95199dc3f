//! See `ringcast_fuzz::offer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::offer::run(data));
