//! More tokens in flight than the KV cache holds: the affected requests end with
//! `context`; the step never fails for everyone.

use batchd_protocol::FinishReason;
use batchd_tests::{greedy, Daemon};

async fn run_over_capacity(args: &[&str], n: usize, max_tokens: u32) -> Vec<batchctl::Completion> {
    let d = Daemon::start(args);
    let c = d.client().await;
    let mut gens = Vec::new();
    for i in 0..n {
        gens.push(
            c.generate(greedy(&format!("request number {i}"), max_tokens))
                .await
                .unwrap(),
        );
    }
    let mut out = Vec::new();
    for g in gens {
        out.push(
            g.collect()
                .await
                .expect("every request completes, none errors"),
        );
    }
    let s = c.status().await.unwrap();
    assert_eq!((s.slots_busy, s.queued), (0, 0));
    // And the daemon keeps serving afterwards.
    let after = c
        .generate(greedy("after", 4))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(after.tokens.len(), 4);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_kv_cache_that_fills_up_ends_the_newest_requests_with_context() {
    // 256 shared cells, 4 sequences wanting ~200 tokens each.
    let out = run_over_capacity(
        &["--slots", "4", "--ctx", "256", "--kv-unified", "true"],
        4,
        200,
    )
    .await;
    let reasons: Vec<_> = out.iter().map(|c| c.finish_reason()).collect();
    assert!(reasons.contains(&FinishReason::Context), "{reasons:?}");
    let used: u32 = out
        .iter()
        .map(|c| c.done.usage.prompt_tokens + c.done.usage.completion_tokens)
        .max()
        .unwrap();
    assert!(used <= 257, "no sequence outgrew the cache: {used}");
    assert_eq!(
        reasons[0],
        FinishReason::Length,
        "the oldest request is kept going: {reasons:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sequence_streams_end_each_request_at_its_own_capacity() {
    // 1024 cells in 4 streams of 256: each sequence holds at most 256 positions.
    let out = run_over_capacity(&["--slots", "4", "--ctx", "1024"], 6, 400).await;
    for c in &out {
        assert_eq!(c.finish_reason(), FinishReason::Context);
        assert_eq!(
            c.done.usage.prompt_tokens + c.done.usage.completion_tokens,
            257
        );
    }
}
