//! Device sampling: greedy tokens picked inside llama.cpp's graph (only token ids come
//! back) must be the tokens the host would have picked, for every packing of greedy and
//! sampled requests. On CPU the "device" is the CPU backend, so this runs in CI.

use batchd_protocol::{GenerateRequest, Sampling};
use batchd_tests::{greedy, long_prompt, Daemon, PROMPTS};

/// Twelve requests through 4 slots: greedy ones and seeded sampled ones interleaved, so
/// sequences of both kinds come and go while the others run (the adapter renumbers
/// sequence ids within each kind as they finish).
fn requests() -> Vec<GenerateRequest> {
    let long = long_prompt();
    PROMPTS
        .iter()
        .copied()
        .take(11)
        .chain([long.as_str()])
        .enumerate()
        .map(|(i, p)| {
            let mut r = greedy(p, 6 + (i as u32 * 7) % 19);
            if i % 3 == 1 {
                r.sampling = Sampling {
                    temperature: 0.9,
                    top_k: 40,
                    seed: 7 + i as u32,
                    ..Sampling::default()
                };
            }
            r
        })
        .collect()
}

async fn run_packed(device_sampling: &str) -> (Vec<Vec<u32>>, batchd_protocol::StatusReport) {
    let d = Daemon::start(&[
        "--slots",
        "4",
        "--prefill-chunk",
        "16",
        "--device-sampling",
        device_sampling,
    ]);
    let client = d.client().await;
    let mut gens = Vec::new();
    for r in requests() {
        gens.push(client.generate(r).await.unwrap());
    }
    let mut out = Vec::new();
    for g in gens {
        out.push(g.collect().await.unwrap().tokens);
    }
    (out, client.status().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_sampling_picks_the_tokens_host_sampling_picks() {
    let (host, host_status) = run_packed("off").await;
    let (device, device_status) = run_packed("on").await;
    assert!(!host_status.device_sampling);
    assert!(device_status.device_sampling);
    assert_eq!(host_status.device_sampled_tokens, 0);
    // Every greedy token was picked by llama.cpp's graph, none fell back to the logits.
    let greedy_tokens: usize = requests()
        .iter()
        .zip(&device)
        .filter(|(r, _)| r.sampling.is_greedy())
        .map(|(_, t)| t.len())
        .sum();
    assert_eq!(device_status.device_sampled_tokens, greedy_tokens as u64);
    for (i, (h, d)) in host.iter().zip(&device).enumerate() {
        assert_eq!(h, d, "request {i} changed with device sampling");
    }
    assert!(
        host.iter()
            .any(|t| t.iter().collect::<std::collections::HashSet<_>>().len() > 3),
        "the model should not be degenerate"
    );
    // With a sequence-id pool per kind, each kind still gets the full context.
    assert_eq!(host_status.n_ctx_seq, device_status.n_ctx_seq);
    assert_eq!(host_status.n_ctx, device_status.n_ctx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_the_backend_found_at_run_time() {
    let d = Daemon::start(&[]);
    let s = d.client().await.status().await.unwrap();
    assert_eq!(s.backend, "cpu");
    assert_eq!(s.gpu_layers, 0);
    assert!(!s.device.is_empty(), "the CPU backend names the processor");
    assert!(
        !s.device_sampling,
        "auto leaves sampling on the host on CPU"
    );
    let out = d.batchctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("backend:") && l.contains("cpu on ")),
        "{text}"
    );
}

#[test]
fn bench_engine_runs_device_sampling_at_its_most_slots() {
    // Device sampling takes two sequence ids a slot, so 128 slots at most; the ceiling at
    // B = 128 needs no more (a slot for a prompt chunk only with `--mixed`).
    let model = batchd_tests::tiny_model().to_str().unwrap();
    let out = std::process::Command::new(batchd_tests::bin("batchd"))
        .args(["bench-engine", "--model", model, "--batches", "128"])
        .args([
            "--prompt-tokens",
            "4",
            "--tokens",
            "2",
            "--device-sampling",
            "on",
        ])
        .args(["--json"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let points: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(points[0]["batch"], 128, "{points}");
    assert!(
        points[0]["decode_tok_s"].as_f64().unwrap() > 0.0,
        "{points}"
    );
}
