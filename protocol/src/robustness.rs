//! The properties the fuzz targets check, shared with the corpus-replay test so both run
//! the same code: whatever bytes arrive, decoding refuses or succeeds without panicking,
//! and whatever decodes validates without panicking and survives a round trip.

use crate::frame::{decode_payload, encode_frame, read_frame};
use crate::validate::validate;
use crate::ClientMessage;

/// Reads frames from `stream` (with a `max_frame` limit) until it ends or one is refused,
/// validating every generate request, as a connection does.
pub async fn frame_stream(mut stream: &[u8], max_frame: u32) {
    while let Ok(Some(msg)) = read_frame::<_, ClientMessage>(&mut stream, max_frame).await {
        if let ClientMessage::Generate { request, .. } = msg {
            let _ = validate(&request);
        }
    }
}

/// Decodes `payload` as one message; one that decodes must validate without panicking
/// and encode and decode back to the same value.
pub fn payload(payload: &[u8]) {
    let Ok(msg) = decode_payload::<ClientMessage>(payload) else {
        return;
    };
    if let ClientMessage::Generate { request, .. } = &msg {
        let _ = validate(request);
    }
    let again = encode_frame(&msg).expect("a decoded message encodes");
    let back: ClientMessage = decode_payload(&again[4..]).expect("and decodes again");
    // Debug, not PartialEq: NaN sampling values are fine and never equal themselves.
    assert_eq!(format!("{back:?}"), format!("{msg:?}"));
}
