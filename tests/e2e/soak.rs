//! A short soak: normal, vanishing and malformed clients at once, counted exactly.

use batchd_tests::soak::{self, SoakConfig, EXPECTED_ERRORS};

#[test]
fn a_short_soak_completes_every_request_exactly_once() {
    let cfg = SoakConfig {
        requests: 200,
        clients: 16,
        seed: 20240601,
        slots: 4,
        // More garbage than the full soak's 1%, so that every kind of fault comes up.
        fault_share: 0.05,
        ..SoakConfig::default()
    };
    let r = soak::run(&cfg);
    eprintln!("{r}");
    assert!(r.sent.normal > 0 && r.sent.killed > 0, "{r}");
    for kind in ["random_bytes", "oversized", "truncated", "not_hello"] {
        assert!(r.faults.contains_key(kind), "no {kind} fault: {r}");
    }
    assert_eq!(r.completions_expected, r.completions_received, "{r}");
    assert_eq!(r.completions_wrong, 0, "{r}");
    assert_eq!(r.duplicates, 0, "{r}");
    assert_eq!(r.events_after_done, 0, "{r}");
    assert_eq!(r.panics, 0, "{r}");
    assert!(r.daemon_alive, "{r}");
    assert_eq!(r.slots_busy, Some(0), "{r}");
    assert_eq!(r.queued, Some(0), "{r}");
    for code in r.errors.keys() {
        assert!(EXPECTED_ERRORS.contains(&code.as_str()), "{r}");
    }
    assert!(r.passed(), "{r}");
}
