//! See `ringcast_fuzz::sdpfrag`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::sdpfrag::run(data));
