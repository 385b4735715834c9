//! `--warmup on`: each kind of step once at start (off by default). It must leave nothing
//! behind that a request could meet.

use batchd_tests::{greedy, long_prompt, temp_dir, Daemon, PROMPTS};

/// Greedy tokens of four requests sent together, so that they take the sequence ids the
/// warm-up used, the long prompt among them; and the daemon's log.
async fn run(warmup: &str) -> (Vec<Vec<u32>>, String) {
    let dir = temp_dir("warmup");
    let log = dir.path().join("batchd.log");
    let d = Daemon::start_env_with_log(
        &["--slots", "4", "--warmup", warmup],
        &[("RUST_LOG", "info")],
        &log,
    );
    let client = d.client().await;
    let long = long_prompt();
    let mut gens = Vec::new();
    for p in PROMPTS.iter().copied().take(3).chain([long.as_str()]) {
        gens.push(client.generate(greedy(p, 12)).await.unwrap());
    }
    let mut tokens = Vec::new();
    for g in gens {
        tokens.push(g.collect().await.unwrap().tokens);
    }
    d.terminate();
    (tokens, std::fs::read_to_string(&log).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warmed_up_daemon_generates_what_a_cold_one_does() {
    let (cold, cold_log) = run("auto").await;
    let (warm, warm_log) = run("on").await;
    assert!(!cold_log.contains("warmed up"), "auto is off");
    assert!(warm_log.contains("warmed up"), "{warm_log}");
    assert_eq!(cold, warm);
}
