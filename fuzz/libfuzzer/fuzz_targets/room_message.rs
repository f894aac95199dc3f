//! See `ringcast_fuzz::room_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringcast_fuzz::room_message::run(data));
