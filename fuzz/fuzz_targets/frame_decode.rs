//! Any byte stream fed to the daemon's frame reader: it may refuse, never panic, and never
//! allocate more than the frame limit allows.
#![no_main]

use libfuzzer_sys::fuzz_target;

static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let rt = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    });
    rt.block_on(batchd_protocol::robustness::frame_stream(data, 4096));
});
