//! Any payload decoded as a client message, then validated like the daemon does: decoding
//! and validation refuse bad input without panicking, and whatever decodes re-encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| batchd_protocol::robustness::payload(data));
