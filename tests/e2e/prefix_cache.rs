//! The prefix cache as a client sees it: reused prompt positions never change the tokens,
//! are reported, and a small budget only costs hits.

use batchctl::{Client, Completion};
use batchd_protocol::FinishReason;
use batchd_tests::{greedy, long_prompt, Daemon};

/// `n` prompts sharing the long prompt as a prefix, each with a question of its own.
fn shared_prompts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{}\nQuestion {i}: what comes next?", long_prompt()))
        .collect()
}

/// Sends `prompts` all at once and waits for every completion.
async fn together(client: &Client, prompts: &[String], max_tokens: u32) -> Vec<Completion> {
    let mut gens = Vec::new();
    for p in prompts {
        gens.push(client.generate(greedy(p, max_tokens)).await.unwrap());
    }
    let mut out = Vec::new();
    for g in gens {
        out.push(g.collect().await.unwrap());
    }
    out
}

/// Runs a shared-prefix workload (a wave together, then a second wave, then an exact
/// repeat) and returns every completion, on a daemon with `cache_mb` (None: default).
async fn workload(
    policy: &str,
    kv_unified: &str,
    cache_mb: Option<&str>,
) -> (Vec<Completion>, Daemon) {
    let mut args = vec![
        "--slots",
        "4",
        "--policy",
        policy,
        "--kv-unified",
        kv_unified,
        "--step-budget",
        "48",
        "--batch",
        "64",
    ];
    // Greedy output that does not depend on batching (the README), so that only the cache
    // can change it: --deterministic, which needs a KV stream per sequence; with the
    // unified cache, flash attention off holds for the tiny model's rows.
    if kv_unified == "true" {
        args.extend(["--flash-attn", "off"]);
    } else {
        args.push("--deterministic");
    }
    if let Some(mb) = cache_mb {
        args.extend(["--prefix-cache-mb", mb]);
    }
    let d = Daemon::start(&args);
    let client = d.client().await;
    let prompts = shared_prompts(8);
    let mut all = together(&client, &prompts[..4], 10).await;
    all.extend(together(&client, &prompts[4..], 10).await);
    all.extend(together(&client, &prompts[..1], 10).await);
    (all, d)
}

async fn cached_equals_computed(policy: &str, kv_unified: &str) {
    let (off, _) = workload(policy, kv_unified, Some("0")).await;
    let (on, d) = workload(policy, kv_unified, None).await;
    for (i, (a, b)) in off.iter().zip(&on).enumerate() {
        assert_eq!(
            a.tokens, b.tokens,
            "{policy}: request {i} changed with the cache"
        );
        assert_eq!(a.done.usage.cached_tokens, 0);
    }
    let cached: Vec<u32> = on.iter().map(|c| c.done.usage.cached_tokens).collect();
    let prompt = on[0].done.usage.prompt_tokens;
    // The first request computes the prefix; every later one reuses at least it, and the
    // exact repeat all but its last token.
    assert_eq!(cached[0], 0, "{policy}: {cached:?}");
    assert!(
        cached[1..8].iter().all(|&c| c + 12 >= prompt && c < prompt),
        "{policy}: {cached:?} of {prompt}"
    );
    assert_eq!(cached[8], prompt - 1, "{policy}: {cached:?}");
    let status = d.client().await.status().await.unwrap();
    let c = status.prefix_cache;
    assert_eq!(c.hits, 8, "{policy}: {c:?}");
    assert_eq!(
        c.reused_tokens,
        cached.iter().map(|&n| n as u64).sum::<u64>()
    );
    assert!(
        c.entries > 0 && c.bytes > 0 && c.bytes <= c.budget_bytes,
        "{c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_prefixes_give_the_same_greedy_tokens_continuous() {
    cached_equals_computed("continuous", "false").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_prefixes_give_the_same_greedy_tokens_with_a_unified_kv_cache() {
    cached_equals_computed("continuous", "true").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_prefixes_give_the_same_greedy_tokens_static() {
    cached_equals_computed("static", "false").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tiny_budget_under_many_long_prefixes_loses_nothing() {
    // 1 MiB holds about 2,000 positions of the tiny model; 32 distinct ~250-token
    // prefixes need four times that. Each comes twice in a wave, the second reusing the
    // first, so the cache keeps saving them all (it thins out saves nobody reuses).
    let d = Daemon::start(&["--slots", "4", "--prefix-cache-mb", "1"]);
    let client = d.client().await;
    let prompts: Vec<String> = (0..64)
        .map(|i| format!("{} {}", i / 2, long_prompt()))
        .collect();
    for wave in prompts.chunks(16) {
        for c in together(&client, wave, 4).await {
            assert_eq!(c.finish_reason(), FinishReason::Length);
            assert_eq!(c.tokens.len(), 4);
        }
        let c = client.status().await.unwrap().prefix_cache;
        assert!(
            c.bytes <= c.budget_bytes && c.budget_bytes == 1 << 20,
            "{c:?}"
        );
    }
    let c = client.status().await.unwrap().prefix_cache;
    assert!(c.evictions > 0, "{c:?}");
    // A repeat of the last prompt is still a hit: the newest entries stay.
    let again = together(&client, &prompts[63..], 4).await;
    assert!(again[0].done.usage.cached_tokens > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_after_unrelated_prompts_is_noticed_and_its_next_turn_reuses() {
    // Two slots: after two saves nobody reused, finished requests are not saved.
    let d = Daemon::start(&["--slots", "2"]);
    let client = d.client().await;
    for i in 0..4 {
        together(&client, &[format!("Story {i}. {}", long_prompt())], 4).await;
    }
    // A conversation: each turn's prompt is the last one, its answer and a question.
    let mut prompt = format!("Chat. {}", long_prompt());
    let mut cached = Vec::new();
    for question in [" And then?", " Why?", " Really?"] {
        let c = together(&client, std::slice::from_ref(&prompt), 4)
            .await
            .remove(0);
        cached.push(c.done.usage.cached_tokens);
        prompt = format!("{prompt}{}{question}", c.text);
    }
    // The first turn was passed over; the second started like it, found nothing, but
    // turned saving back on; the third reuses the second.
    assert_eq!(cached[..2], [0, 0], "{cached:?}");
    assert!(cached[2] >= 32, "{cached:?}");
    let c = client.status().await.unwrap().prefix_cache;
    assert_eq!((c.hits, c.misses), (1, 6), "{c:?}");
}

#[test]
fn a_budget_that_is_not_a_number_is_a_clear_startup_error() {
    let d = batchd_tests::temp_dir("prefix-bad");
    let socket = d.path().join("batchd.sock");
    let out = Daemon::command(&socket, d.path(), &["--prefix-cache-mb", "lots"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--prefix-cache-mb") && err.contains("lots"),
        "{err}"
    );
    let out = Daemon::command(&socket, d.path(), &[])
        .env("BATCHD_PREFIX_CACHE_MB", "-1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("BATCHD_PREFIX_CACHE_MB"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_that_fills_the_whole_context_works_twice() {
    let d = Daemon::start(&["--slots", "2", "--flash-attn", "off"]);
    let client = d.client().await;
    // The tiny model's context is 1,024 positions: find a prompt of exactly that many.
    let status = client.status().await.unwrap();
    let n_ctx = status.n_ctx_seq;
    let prompt = "a ".repeat(n_ctx as usize - 1);
    let first = together(&client, std::slice::from_ref(&prompt), 4).await;
    let second = together(&client, std::slice::from_ref(&prompt), 4).await;
    let (a, b) = (&first[0], &second[0]);
    assert_eq!(
        a.done.usage.prompt_tokens, n_ctx,
        "pick a prompt of n_ctx tokens"
    );
    assert_eq!(a.finish_reason(), FinishReason::Context);
    assert_eq!(b.finish_reason(), FinishReason::Context);
    assert_eq!(a.tokens, b.tokens);
    assert_eq!(b.done.usage.cached_tokens, n_ctx - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_usage_and_metrics_count_reused_tokens() {
    use batchd_tests::http::{get, post};
    use serde_json::json;
    let d = Daemon::start(&["--slots", "2"]);
    let sock = d.http_socket();
    let prompt = &shared_prompts(1)[0];
    let body = json!({"prompt": prompt, "max_tokens": 4, "temperature": 0, "ignore_eos": true});
    let first = post(&sock, "/v1/completions", &body).await.json();
    let second = post(&sock, "/v1/completions", &body).await.json();
    let usage = |v: &serde_json::Value| {
        (
            v["usage"]["prompt_tokens"].as_u64().unwrap(),
            v["usage"]["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap(),
        )
    };
    let (prompt_tokens, cached) = usage(&first);
    assert_eq!(cached, 0);
    assert_eq!(usage(&second), (prompt_tokens, prompt_tokens - 1));
    assert_eq!(first["choices"][0]["text"], second["choices"][0]["text"]);
    let metrics = get(&sock, "/metrics").await.text();
    assert!(
        metrics.contains("\nbatchd_prefix_cache_hits_total 1\n")
            && metrics.contains(&format!(
                "\nbatchd_prefix_cache_reused_tokens_total {}\n",
                prompt_tokens - 1
            )),
        "{metrics}"
    );
}
