//! The `room_message` target: what a room member sends on its data channel, through
//! [`ClientMessage::parse`] as the shard runs it on every message: a refusal must say why in one
//! line (it goes back to the member), and a message taken must be within the bounds the shard
//! relies on.

use ringcast_core::room::{ClientMessage, MAX_MESSAGE_BYTES};

/// An input is one byte (bit 0: sent as binary), then the message.
pub fn run(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    match ClientMessage::parse(flags & 1 == 1, body) {
        Ok(_) => assert!(body.len() <= MAX_MESSAGE_BYTES),
        Err(why) => assert!(!why.is_empty() && !why.contains('\n'), "{why:?}"),
    }
}
