//! Any payload decoded as a client message, then validated like the daemon does: decoding
//! and validation refuse bad input without panicking, and whatever decodes re-encodes.
#![no_main]

use batchd_protocol::frame::{decode_payload, encode_frame};
use batchd_protocol::{validate::validate, ClientMessage};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = decode_payload::<ClientMessage>(data) {
        if let ClientMessage::Generate { request, .. } = &msg {
            let _ = validate(request);
        }
        let again = encode_frame(&msg).expect("a decoded message encodes");
        let back: ClientMessage = decode_payload(&again[4..]).expect("and decodes again");
        assert_eq!(format!("{back:?}"), format!("{msg:?}"));
    }
});
