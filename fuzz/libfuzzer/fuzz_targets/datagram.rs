//! See `ringcast_fuzz::datagram`. One live fixture serves many inputs (connecting three
//! str0m clients costs far more than an input); it is rebuilt when an input closed one of its
//! clients, every 2,000 inputs and every 30 s of virtual time. A crash is reproduced alone on a
//! fresh fixture (`ringcast_fuzz::datagram::run`, as the replay test does).
#![no_main]

use std::cell::RefCell;

use ringcast_fuzz::datagram::Fixture;

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    FIXTURE.with_borrow_mut(|f| {
        let fixture = f.get_or_insert_with(Fixture::live);
        fixture.feed(data);
        if fixture.spent() {
            *f = None;
        }
    })
});
