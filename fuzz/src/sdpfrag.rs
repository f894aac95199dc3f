//! The `sdpfrag` target: the body of a WHIP/WHEP PATCH (RFC 8840 fragment) through
//! [`SdpFragment::parse`], as the handler runs it once the body is UTF-8 text.

use ringcast_core::sdp::SdpFragment;

/// Parse one fragment; what it yields must be what the handler relies on.
pub fn run(data: &[u8]) {
    let Ok(body) = std::str::from_utf8(data) else {
        // The handler answers 400 before parsing.
        return;
    };
    if let Ok(frag) = SdpFragment::parse(body) {
        for c in &frag.candidates {
            assert!(c.starts_with("candidate:"), "candidate kept as {c:?}");
        }
    }
}
