//! `batchctl bench` and `batchctl trace` against the real daemon: they work and report
//! sane numbers (not fast ones: CI runs the tiny model on shared cores).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use batchd_tests::{eventually, greedy, Daemon};
use serde_json::Value;

/// Runs `batchctl bench ARGS --json`; the parsed object (also printed, for the record).
fn bench_json(d: &Daemon, args: &[&str]) -> Value {
    let mut argv = vec!["bench"];
    argv.extend_from_slice(args);
    argv.push("--json");
    let out = d.batchctl(&argv);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    eprintln!("bench {}: {}", args.join(" "), text.trim());
    serde_json::from_str(&text).unwrap()
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number: {v}"))
}

/// The `{p50, p99}` of `key`, both present and ordered.
fn p50_p99(v: &Value, key: &str) -> (f64, f64) {
    let (p50, p99) = (v[key]["p50"].as_f64(), v[key]["p99"].as_f64());
    let (Some(p50), Some(p99)) = (p50, p99) else {
        panic!("{key} lacks percentiles: {v}")
    };
    assert!(0.0 <= p50 && p50 <= p99, "{key}: {v}");
    (p50, p99)
}

/// What every bench object holds.
fn assert_common(v: &Value, workload: &str, requests: u64, generated: u64) {
    assert_eq!(v["workload"], workload);
    assert_eq!(v["requests"], requests);
    assert_eq!(v["generated_tokens"], generated);
    assert!(v["prompt_tokens"].as_u64().unwrap() >= requests);
    assert!(f64_of(v, "wall_s") > 0.0);
    assert!(f64_of(v, "tokens_per_s") > 0.0);
    for key in ["ttft_ms", "itl_ms", "queue_ms"] {
        p50_p99(v, key);
    }
    assert_eq!(v["policy"], "continuous");
    assert_eq!(v["slots"], 3);
    assert_eq!(v["warnings"], serde_json::json!([]));
}

/// One daemon for the three workloads (run one after another, as a user would).
#[test]
fn bench_workloads_report_sane_numbers() {
    let d = Daemon::start(&["--slots", "3"]);

    let v = bench_json(&d, &["--workload", "seed"]);
    assert_common(&v, "seed", 6, 611);

    let uniform = [
        "--workload",
        "uniform",
        "--clients",
        "4",
        "--requests",
        "8",
        "--max-tokens",
        "8",
    ];
    let v = bench_json(&d, &uniform);
    assert_common(&v, "uniform", 8, 64);
    assert_eq!(
        (v["clients"].as_u64(), v["max_tokens"].as_u64()),
        (Some(4), Some(8))
    );

    let v = bench_json(
        &d,
        &[
            "--workload",
            "long-prompt",
            "--streams",
            "2",
            "--prompt-tokens",
            "200",
            "--max-tokens",
            "64",
        ],
    );
    // Two streams of 64 tokens and the long request's 16.
    assert_common(&v, "long-prompt", 3, 2 * 64 + 16);
    assert_eq!(v["streams"], 2);
    let long = v["long_prompt_tokens"].as_u64().unwrap();
    assert!((180..=220).contains(&long), "{v}");
    assert!(f64_of(&v, "long_ttft_ms") > 0.0);
    p50_p99(&v, "streams_itl_ms");
    assert!(f64_of(&v["streams_itl_ms"], "max") >= f64_of(&v["streams_itl_ms"], "p99"));
    assert!(f64_of(&v, "streams_itl_ratio") >= 1.0);

    // The table form of the same.
    let mut argv = vec!["bench"];
    argv.extend_from_slice(&uniform);
    let out = d.batchctl(&argv);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8(out.stdout).unwrap();
    eprintln!("{table}");
    assert!(table.contains("generated tokens:    64\n"), "{table}");
    assert!(table.contains("time to first token: p50 "), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_prefill_decode_and_mask() {
    // A small step budget spreads prompts over many steps, each small enough to draw.
    let d = Arc::new(Daemon::start(&["--slots", "3", "--step-budget", "16"]));
    let client = d.client().await;
    // One slot decodes throughout (every step then has its decode), then two slots keep
    // prefilling long prompts (so nearly every step has a prompt chunk too).
    let mut decoder = client
        .generate(greedy("Once upon a time", 1000))
        .await
        .unwrap();
    assert!(matches!(
        decoder.next().await,
        Some(batchctl::Event::Token { .. })
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for k in 1..=2u32 {
        let (client, stop) = (client.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let prompt = format!("{k}{}", " word".repeat(400));
                let done = client.generate(greedy(&prompt, 1)).await.unwrap();
                done.collect().await.unwrap();
            }
        }));
    }
    let busy = eventually(Duration::from_secs(30), || async {
        client.status().await.unwrap().slots_busy == 3
    })
    .await;
    assert!(busy, "the load never filled the slots");

    let d2 = d.clone();
    let out =
        tokio::task::spawn_blocking(move || d2.batchctl(&["trace", "--steps", "3", "--mask"]))
            .await
            .unwrap();
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    drop(decoder);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    eprintln!("{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("step ")).count(),
        3,
        "{text}"
    );
    assert!(text.contains(" PREFILL("), "{text}");
    assert!(text.contains(" decode(1) "), "{text}");
    assert_eq!(text.matches("  mask (").count(), 3, "{text}");
    // With a KV stream per sequence, llama.cpp runs a prompt chunk beside decodes as a
    // pass of its own, and the trace says so.
    for block in text.split("\nstep ") {
        if block.contains(" PREFILL(") && block.contains(" decode(1) ") {
            let header = block.lines().next().unwrap();
            assert!(header.contains(" passes,"), "{header}");
        }
    }
    // Mask rows end in their cells: a decode row attends only itself within the step,
    // a prefill chunk's rows are a triangle.
    let rows: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|cells| cells.len() > 1 && cells.chars().all(|c| c == '#' || c == '.'))
        .collect();
    assert!(rows.iter().any(|r| r.matches('#').count() == 1), "{text}");
    assert!(rows.iter().any(|r| r.matches('#').count() > 1), "{text}");
    assert!(text.contains("  A = slot "), "{text}");
}
