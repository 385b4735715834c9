//! The `batchctl` command, in-process and as a binary, against a scripted fake daemon.
//!
//! One file past 400 lines: each test is one `batchctl` command against the fake daemon
//! in `support/`; they share nothing else.

mod support;

use std::future::Future;
use std::time::Duration;

use batchctl::app::status::example_report;
use batchctl::app::{
    main_with, Interrupt, EXIT_DATAERR, EXIT_TEMPFAIL, EXIT_UNAVAILABLE, EXIT_USAGE,
};
use batchd_protocol::{ClientMessage, ErrorCode, FinishReason, ServerMessage};
use support::{done, temp_dir, Fake};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

/// Runs batchctl in-process; resolves to (exit status, stdout, stderr).
fn batchctl(args: &[&str], interrupt: &Interrupt) -> impl Future<Output = (u8, String, String)> {
    let argv: Vec<String> = std::iter::once("batchctl")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    let interrupt = interrupt.clone();
    async move {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = main_with(argv, &mut out, &mut err, &interrupt).await;
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }
}

#[tokio::test]
async fn status_json_and_human() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let server = async {
        for _ in 0..2 {
            let mut conn = fake.accept().await;
            assert_eq!(conn.recv().await, Some(ClientMessage::Status));
            conn.send(ServerMessage::Status(example_report())).await;
        }
    };
    let client = async {
        let never = Interrupt::never();
        let json = batchctl(&["--socket", sock, "status", "--json"], &never).await;
        let human = batchctl(&["status", "--socket", sock], &never).await;
        (json, human)
    };
    let ((json, human), ()) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(json.0, 0, "{json:?}");
    let v: serde_json::Value = serde_json::from_str(json.1.trim()).unwrap();
    assert_eq!(v["slots_total"], 4);
    assert_eq!(v["model"]["synthetic"], true);
    assert_eq!(v["policy"], "continuous");
    assert_eq!(human.0, 0, "{human:?}");
    assert!(human.1.contains("policy:"), "{}", human.1);
    assert!(human.1.contains("1 busy of 4"), "{}", human.1);
}

#[tokio::test]
async fn one_prompt_streams_text() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let server = async {
        let mut conn = fake.accept().await;
        let (id, req) = conn.recv_generate().await;
        assert!(req.stream);
        assert_eq!(req.max_tokens, 5);
        assert_eq!(req.prompt, "Hello");
        conn.token(id, 1, " wor").await;
        conn.token(id, 2, "ld").await;
        let mut d = done(FinishReason::Stop, None);
        d.final_text = "!".into();
        conn.done(id, d).await;
    };
    let client = batchctl(
        &["--socket", sock, "generate", "Hello", "--max-tokens", "5"],
        &Interrupt::never(),
    );
    let ((code, out, err), ()) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!((code, out.as_str(), err.as_str()), (0, " world!\n", ""));
}

#[tokio::test]
async fn several_prompts_json_in_input_order_with_an_error() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let server = async {
        let mut conn = fake.accept().await;
        let mut ids = Vec::new();
        for want in ["a", "b", "c"] {
            let (id, req) = conn.recv_generate().await;
            assert_eq!(req.prompt, want);
            assert!(!req.stream);
            ids.push(id);
        }
        // Answer out of order.
        conn.done(ids[2], done(FinishReason::Eos, Some(("C", &[3]))))
            .await;
        conn.send(ServerMessage::Error {
            id: Some(ids[1]),
            code: ErrorCode::PromptTooLong,
            message: "too long".into(),
        })
        .await;
        conn.done(ids[0], done(FinishReason::Length, Some(("A", &[1]))))
            .await;
    };
    let client = batchctl(
        &["--socket", sock, "generate", "a", "b", "c", "--json"],
        &Interrupt::never(),
    );
    let ((code, out, err), ()) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(
        code, EXIT_DATAERR,
        "a rejected prompt is the caller's to fix"
    );
    assert_eq!(err, "batchctl: 1 of 3 requests failed\n");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["index"], 0);
    assert_eq!(lines[0]["text"], "A");
    assert_eq!(lines[0]["finish_reason"], "length");
    assert_eq!(lines[0]["tokens"], serde_json::json!([1]));
    assert_eq!(lines[0]["usage"]["completion_tokens"], 1);
    assert_eq!(lines[0]["timings"]["total_ms"], 9.0);
    assert_eq!(lines[0]["steps"]["finished"], 3);
    assert_eq!(lines[1]["index"], 1);
    assert_eq!(lines[1]["error"]["code"], "prompt_too_long");
    assert_eq!(lines[2]["text"], "C");
    assert_eq!(lines[2]["finish_reason"], "eos");
}

#[tokio::test]
async fn prompts_from_file_plain_output() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let dir = temp_dir();
    let file = dir.path().join("prompts.txt");
    std::fs::write(&file, "first\n\nsecond\n").unwrap();
    let server = async {
        let mut conn = fake.accept().await;
        let (a, _) = conn.recv_generate().await;
        let (b, _) = conn.recv_generate().await;
        conn.done(b, done(FinishReason::Eos, Some(("two", &[2]))))
            .await;
        conn.done(a, done(FinishReason::Length, Some(("one", &[1]))))
            .await;
    };
    let client = batchctl(
        &[
            "--socket",
            sock,
            "generate",
            "--file",
            file.to_str().unwrap(),
        ],
        &Interrupt::never(),
    );
    let ((code, out, err), ()) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "--- [0] length\none\n--- [1] eos\ntwo\n");
}

#[tokio::test]
async fn no_daemon_exits_69_with_one_line() {
    let dir = temp_dir();
    let sock = dir.path().join("none.sock");
    let (code, out, err) = batchctl(
        &["--socket", sock.to_str().unwrap(), "generate", "x"],
        &Interrupt::never(),
    )
    .await;
    assert_eq!(code, EXIT_UNAVAILABLE);
    assert_eq!(out, "");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "batchctl: cannot reach batchd at {}: ",
            sock.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn env_socket_is_used_and_flag_wins() {
    let fake = Fake::start();
    let dir = temp_dir();
    let bogus = dir.path().join("bogus.sock");
    let server = async {
        for _ in 0..2 {
            let mut conn = fake.accept().await;
            assert_eq!(conn.recv().await, Some(ClientMessage::Status));
            conn.send(ServerMessage::Status(example_report())).await;
        }
    };
    let client = async {
        let never = Interrupt::never();
        // The only test in this binary that reads the environment.
        std::env::set_var(batchd_protocol::SOCKET_ENV, &fake.path);
        let from_env = batchctl(&["status", "--json"], &never).await;
        std::env::set_var(batchd_protocol::SOCKET_ENV, &bogus);
        let flag = batchctl(
            &["--socket", fake.path.to_str().unwrap(), "status", "--json"],
            &never,
        )
        .await;
        let bad = batchctl(&["status"], &never).await;
        std::env::remove_var(batchd_protocol::SOCKET_ENV);
        (from_env, flag, bad)
    };
    let ((from_env, flag, bad), ()) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(from_env.0, 0, "{from_env:?}");
    assert_eq!(flag.0, 0, "{flag:?}");
    assert_eq!(bad.0, EXIT_UNAVAILABLE, "{bad:?}");
    assert!(bad.2.contains("bogus.sock"), "{bad:?}");
}

#[tokio::test]
async fn interrupt_cancels_and_exits_130() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let (trigger, interrupt) = Interrupt::channel();
    let server = async {
        let mut conn = fake.accept().await;
        let (a, _) = conn.recv_generate().await;
        let (b, _) = conn.recv_generate().await;
        trigger.trigger();
        let mut cancelled = vec![];
        for _ in 0..2 {
            match conn.recv().await {
                Some(ClientMessage::Cancel { id }) => cancelled.push(id),
                other => panic!("expected cancel, got {other:?}"),
            }
        }
        cancelled.sort();
        assert_eq!(cancelled, [a, b]);
        conn.done(a, done(FinishReason::Cancelled, Some(("x", &[1]))))
            .await;
        conn.done(b, done(FinishReason::Cancelled, Some(("", &[]))))
            .await;
    };
    let client = batchctl(
        &["--socket", sock, "generate", "a", "b", "--json"],
        &interrupt,
    );
    let ((code, out, _err), ()) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(code, 130);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("\"cancelled\""), "{out}");
}

#[tokio::test]
async fn interrupt_gives_up_on_a_silent_daemon() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let (trigger, interrupt) = Interrupt::channel();
    let server = async {
        let mut conn = fake.accept().await;
        conn.recv_generate().await;
        trigger.trigger();
        // Never answers; keep the connection open until the client gives up.
        conn
    };
    let client = batchctl(&["--socket", sock, "generate", "a"], &interrupt);
    let ((code, _, _), _conn) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(code, 130);
}

/// The real binary: streaming output, and SIGINT cancelling the request.
#[tokio::test]
async fn binary_streams_and_handles_sigint() {
    let fake = Fake::start();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_batchctl"))
        .args(["--socket", fake.path.to_str().unwrap(), "generate", "hi"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let mut conn = timeout(LIMIT, fake.accept()).await.unwrap();
    let (id, _) = conn.recv_generate().await;
    conn.token(id, 1, "partial").await;
    // Give the binary time to install its handler (it did before connecting) and print.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(
        timeout(LIMIT, conn.recv()).await.unwrap(),
        Some(ClientMessage::Cancel { id })
    );
    conn.done(id, done(FinishReason::Cancelled, None)).await;
    let out = timeout(LIMIT, child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "partial\n");
}

#[tokio::test]
async fn binary_without_daemon_exits_69() {
    let dir = temp_dir();
    let sock = dir.path().join("none.sock");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_batchctl"))
        .args(["--socket", sock.to_str().unwrap(), "status"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(EXIT_UNAVAILABLE.into()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("batchctl: cannot reach batchd at "),
        "{err}"
    );
}

#[tokio::test]
async fn trace_prints_steps_and_masks_then_stops() {
    use batchd_protocol::{StepSequence, StepTrace};
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let server = async {
        let mut conn = fake.accept().await;
        assert_eq!(conn.recv().await, Some(ClientMessage::Trace));
        for n in 1..=3 {
            let step = StepTrace {
                step: n,
                n_tokens: 3,
                passes: 1,
                sequences: vec![
                    StepSequence {
                        slot: 0,
                        request: 1,
                        prefill: Some(2),
                        pos: 0,
                        reused: 0,
                    },
                    StepSequence {
                        slot: 1,
                        request: 2,
                        prefill: None,
                        pos: 9,
                        reused: 0,
                    },
                ],
                micros: 1500,
            };
            conn.send(ServerMessage::Step(step)).await;
        }
        conn
    };
    let client = batchctl(
        &["--socket", sock, "trace", "--steps", "2", "--mask"],
        &Interrupt::never(),
    );
    let ((code, out, err), _conn) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("step 1: 3 tokens, 1 pass, 1.500 ms\n"),
        "{out}"
    );
    assert!(out.contains("step 2:") && !out.contains("step 3:"), "{out}");
    assert!(out.contains("PREFILL(2)    pos 0..2"), "{out}");
    assert!(out.contains("decode(1)     pos 9"), "{out}");
    assert!(out.contains("  A 0 #..\n  A 1 ##.\n  B 9 ..#\n"), "{out}");
}

#[tokio::test]
async fn trace_until_interrupted_exits_0() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let (trigger, interrupt) = Interrupt::channel();
    let server = async {
        let mut conn = fake.accept().await;
        assert_eq!(conn.recv().await, Some(ClientMessage::Trace));
        trigger.trigger();
        conn
    };
    let client = batchctl(&["--socket", sock, "trace"], &interrupt);
    let ((code, out, _), _conn) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!((code, out.as_str()), (0, ""));
}

#[tokio::test]
async fn bench_seed_json_against_a_fake() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let server = async {
        let mut conn = fake.accept().await;
        assert_eq!(conn.recv().await, Some(ClientMessage::Status));
        conn.send(ServerMessage::Status(example_report())).await;
        let mut reqs = Vec::new();
        for _ in 0..6 {
            let (id, req) = conn.recv_generate().await;
            assert!(req.stream && req.ignore_eos && req.sampling.is_greedy());
            reqs.push((id, req.max_tokens));
        }
        // Round-robin tokens, like a batch.
        let longest = reqs.iter().map(|r| r.1).max().unwrap();
        for t in 0..longest {
            for &(id, max) in &reqs {
                if t < max {
                    conn.token(id, t, "x").await;
                }
                if t + 1 == max {
                    let mut d = done(FinishReason::Length, None);
                    d.usage.completion_tokens = max;
                    conn.done(id, d).await;
                }
            }
        }
        conn
    };
    let client = batchctl(
        &["--socket", sock, "bench", "--workload", "seed", "--json"],
        &Interrupt::never(),
    );
    let ((code, out, err), _conn) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["workload"], "seed");
    assert_eq!(v["requests"], 6);
    assert_eq!(v["generated_tokens"], 611);
    assert_eq!(v["prompt_tokens"], 12);
    assert_eq!(v["slots"], 4);
    assert_eq!(v["policy"], "continuous");
    assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["ttft_ms"]["p50"].as_f64().unwrap() >= 0.0);
    assert!(v["itl_ms"]["p99"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["queue_ms"]["p99"], 0.5);
    // The fake has 4 slots, not 3.
    assert_eq!(v["warnings"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn bench_refuses_flags_of_other_workloads() {
    let (code, _, err) = batchctl(
        &["bench", "--workload", "seed", "--streams", "2"],
        &Interrupt::never(),
    )
    .await;
    assert_eq!(code, 1);
    assert!(err.contains("--streams does not apply"), "{err}");
}

#[tokio::test]
async fn a_busy_daemon_exits_75_and_a_bad_flag_2() {
    let fake = Fake::start();
    let sock = fake.path.to_str().unwrap();
    let server = async {
        let mut conn = fake.accept().await;
        let (id, _) = conn.recv_generate().await;
        conn.send(ServerMessage::Error {
            id: Some(id),
            code: ErrorCode::Busy,
            message: "the queue is full".into(),
        })
        .await;
    };
    let client = batchctl(&["--socket", sock, "generate", "x"], &Interrupt::never());
    let ((code, _, err), ()) = timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(code, EXIT_TEMPFAIL, "{err}");
    assert!(err.contains("busy"), "{err}");

    let (code, _, err) = batchctl(&["generate", "--no-such-flag"], &Interrupt::never()).await;
    assert_eq!(code, EXIT_USAGE, "{err}");
}

#[tokio::test]
async fn completions_and_man_pages_describe_every_subcommand() {
    let never = Interrupt::never();
    for shell in ["bash", "zsh", "fish"] {
        let (code, out, err) = batchctl(&["completions", shell], &never).await;
        assert_eq!(code, 0, "{err}");
        for sub in ["generate", "status", "bench", "trace", "completions"] {
            assert!(out.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let (code, out, _) = batchctl(&["man"], &never).await;
    assert_eq!(code, 0);
    assert!(
        out.starts_with(".ie"),
        "roff: {}",
        &out[..40.min(out.len())]
    );
    assert!(out.contains(".TH batchctl 1"), "{out}");
    assert!(
        out.contains("Exit status"),
        "the exit codes are in the page"
    );

    let dir = temp_dir();
    let d = dir.path().to_str().unwrap();
    let (code, _, err) = batchctl(&["man", "--dir", d], &never).await;
    assert_eq!(code, 0, "{err}");
    for page in ["batchctl.1", "batchctl-generate.1", "batchctl-bench.1"] {
        assert!(dir.path().join(page).is_file(), "{page} missing");
    }
}
