//! Any byte stream fed to the daemon's frame reader: it may refuse, never panic, and never
//! allocate more than the frame limit allows.
#![no_main]

use batchd_protocol::{read_frame, ClientMessage};
use libfuzzer_sys::fuzz_target;

static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    });
    rt.block_on(async {
        let mut input = data;
        // Read frames until the input ends or one is refused, as a connection does.
        while let Ok(Some(msg)) = read_frame::<_, ClientMessage>(&mut input, 4096).await {
            if let ClientMessage::Generate { request, .. } = msg {
                let _ = batchd_protocol::validate::validate(&request);
            }
        }
    });
});
