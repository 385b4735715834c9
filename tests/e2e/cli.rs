//! The real batchctl binary against the real daemon.

use batchd_tests::{bin, greedy, temp_dir, Daemon};

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_streams_one_prompt_as_text() {
    let d = Daemon::start(&["--slots", "2"]);
    let out = d.batchctl(&[
        "generate",
        "The capital of France is",
        "--max-tokens",
        "16",
        "--ignore-eos",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    // The same text the client library gets for the same request.
    let c = d.client().await;
    let expected = c
        .generate(greedy("The capital of France is", 16))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(
        text.trim_end_matches('\n'),
        expected.text.trim_end_matches('\n')
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_json_batches_many_prompts_from_stdin() {
    let d = Daemon::start(&["--slots", "4"]);
    let prompts = "first prompt\nsecond prompt\n\nthird prompt\nfourth\nfifth one\n";
    let out = d.batchctl_stdin(
        &[
            "generate",
            "-",
            "--json",
            "--max-tokens",
            "10",
            "--ignore-eos",
        ],
        Some(prompts),
    );
    assert!(out.status.success(), "{out:?}");
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    let mut spans = Vec::new();
    for (i, v) in lines.iter().enumerate() {
        assert_eq!(v["index"], i);
        assert_eq!(v["finish_reason"], "length");
        assert_eq!(v["tokens"].as_array().unwrap().len(), 10);
        assert_eq!(v["usage"]["completion_tokens"], 10);
        assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
        assert!(v["text"].is_string());
        for k in ["queue_ms", "ttft_ms", "total_ms"] {
            assert!(v["timings"][k].as_f64().unwrap() >= 0.0);
        }
        let steps = &v["steps"];
        spans.push((
            steps["admitted"].as_u64().unwrap(),
            steps["finished"].as_u64().unwrap(),
        ));
    }
    // They were batched: the first four (one per slot) were all running in some common step.
    let latest_start = spans[..4].iter().map(|s| s.0).max().unwrap();
    let earliest_end = spans[..4].iter().map(|s| s.1).min().unwrap();
    assert!(latest_start <= earliest_end, "{spans:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_json_and_text() {
    let d = Daemon::start(&["--slots", "3", "--policy", "static"]);
    let out = d.batchctl(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["slots_total"], 3);
    assert_eq!(v["slots_busy"], 0);
    assert_eq!(v["queued"], 0);
    assert_eq!(v["policy"], "static");
    assert_eq!(v["model"]["synthetic"], true);
    assert!(v["model"]["note"].as_str().unwrap().contains("meaningless"));
    let out = d.batchctl(&["status"]);
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.contains("static") && text.contains("synthetic"),
        "{text}"
    );
}

#[test]
fn no_daemon_is_a_one_line_error_naming_the_socket() {
    let dir = temp_dir("nodaemon");
    let socket = dir.path().join("nobody.sock");
    let out = std::process::Command::new(bin("batchctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["generate", "hi"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&socket.display().to_string()), "{err}");
    assert!(err.contains("batchd"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_long_prompt_via_batchctl_fails_with_the_reason() {
    let d = Daemon::start(&["--slots", "1"]);
    let prompt = "word ".repeat(1100);
    let out = d.batchctl(&["generate", &prompt]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("1024") && err.contains("prompt"), "{err}");
}
