//! The OpenAI-compatible HTTP API, through a real HTTP client over its Unix socket (and
//! TCP): the same engine and answers as the socket protocol, OpenAI's shapes and errors.
//!
//! One file past 400 lines: one scenario per test, all against the same daemon helpers and
//! OpenAI shapes; split by endpoint they would repeat those helpers.

use std::time::Duration;

use batchd_tests::http::{call, get, open, post, post_raw, Target};
use batchd_tests::{eventually, greedy, Daemon};
use serde_json::{json, Value};

fn model_name(d: &Daemon) -> String {
    let out = d.batchctl(&["status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["model"]["name"].as_str().unwrap().to_string()
}

/// batchctl's greedy text for `prompt`.
fn batchctl_text(d: &Daemon, prompt: &str, max_tokens: u32) -> String {
    let n = max_tokens.to_string();
    let out = d.batchctl(&[
        "generate",
        prompt,
        "--max-tokens",
        &n,
        "--ignore-eos",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

fn assert_error(a: &batchd_tests::http::Answer, status: u16, code: &str) {
    assert_eq!(a.status.as_u16(), status, "{}", a.text());
    let e = &a.json()["error"];
    assert_eq!(e["code"], code, "{}", a.text());
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        a.text()
    );
    assert!(e["type"].is_string(), "{}", a.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completions_match_batchctl_and_stream_as_sse() {
    let d = Daemon::start(&["--slots", "4"]);
    let sock = d.http_socket();
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sock).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(get(&sock, "/health").await.status, 200);
    let name = model_name(&d);
    let models = get(&sock, "/v1/models").await.json();
    assert_eq!(models["data"][0]["id"], name.as_str());

    let prompt = "The capital of France is";
    let expected = batchctl_text(&d, prompt, 12);
    let a = post(
        &sock,
        "/v1/completions",
        &json!({"model": name, "prompt": prompt, "max_tokens": 12, "temperature": 0,
                "ignore_eos": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["text"], expected.as_str());
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 12);
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 0);

    // A list of prompts: one choice each, in order.
    let a = post(
        &sock,
        "/v1/completions",
        &json!({"prompt": [prompt, "Hello"], "max_tokens": 12, "ignore_eos": true}),
    )
    .await;
    let v = a.json();
    assert_eq!(v["choices"][0]["text"], expected.as_str());
    assert_eq!(v["choices"][1]["index"], 1);
    assert_eq!(
        v["choices"][1]["text"],
        batchctl_text(&d, "Hello", 12).as_str()
    );
    assert_eq!(v["usage"]["completion_tokens"], 24);

    // Streamed: chunks that add up to the same text, then [DONE].
    let a = post(
        &sock,
        "/v1/completions",
        &json!({"prompt": prompt, "max_tokens": 12, "ignore_eos": true, "stream": true,
                "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(a.status, 200);
    assert!(a.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let data = a.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, expected);
    assert!(chunks.len() > 2, "one chunk per token: {chunks:?}");
    let finish: Vec<&Value> = chunks
        .iter()
        .map(|c| &c["choices"][0]["finish_reason"])
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finish, [&json!("length")]);
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 12);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_uses_the_plain_template_for_gpt2_and_streams() {
    let d = Daemon::start(&["--slots", "2"]);
    let sock = d.http_socket();
    let messages = json!([
        {"role": "system", "content": "Be terse."},
        {"role": "user", "content": "Hello"},
    ]);
    // GPT-2 has no chat template: the documented fallback renders the chat as this prompt.
    let expected = batchctl_text(&d, "System: Be terse.\nUser: Hello\nAssistant:", 10);
    let a = post(
        &sock,
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 10, "ignore_eos": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    let v = a.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], expected.as_str());

    let a = post(
        &sock,
        "/v1/chat/completions",
        &json!({"messages": messages, "max_completion_tokens": 10, "ignore_eos": true,
                "stream": true}),
    )
    .await;
    let data = a.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_openai_errors_and_the_daemon_keeps_serving() {
    let d = Daemon::start(&["--slots", "2"]);
    let sock = d.http_socket();
    let url = "/v1/completions";
    assert_error(
        &post_raw(&sock, url, b"{not json".to_vec()).await,
        400,
        "invalid_request",
    );
    let a = post(&sock, url, &json!({"prompt": "a", "temperature": "hot"})).await;
    assert_error(&a, 400, "invalid_request");
    let a = post(&sock, url, &json!({"prompt": "a", "max_tokens": 0})).await;
    assert_error(&a, 400, "invalid_request");
    // About 3,000 tokens, past the tiny model's 1,024-token context.
    let long = "word ".repeat(3000);
    let a = post(&sock, url, &json!({"prompt": long, "max_tokens": 4})).await;
    assert_error(&a, 400, "context_length_exceeded");
    let a = post_raw(&sock, url, vec![b' '; 8 << 20]).await;
    assert_error(&a, 413, "request_too_large");
    let a = post(&sock, url, &json!({"model": "gpt-9", "prompt": "a"})).await;
    assert_error(&a, 404, "model_not_found");
    let a = post(&sock, "/v1/chat/completions", &json!({"messages": []})).await;
    assert_error(&a, 400, "invalid_request");
    assert_error(&get(&sock, "/v2/nothing").await, 404, "not_found");
    // Still serving, both doors.
    assert_eq!(get(&sock, "/health").await.status, 200);
    let a = post(
        &sock,
        url,
        &json!({"prompt": "still", "max_tokens": 3, "ignore_eos": true}),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert!(d.batchctl(&["status"]).status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_with_retry_after() {
    let d = Daemon::start(&["--slots", "1", "--queue", "1"]);
    let sock = d.http_socket();
    let c = d.client().await;
    let mut running = c.generate(greedy("running", 1000)).await.unwrap();
    assert!(running.next().await.is_some());
    let _queued = c.generate(greedy("queued", 5)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            c.status().await.unwrap().queued == 1
        })
        .await
    );
    let a = post(
        &sock,
        "/v1/completions",
        &json!({"prompt": "refused", "max_tokens": 2}),
    )
    .await;
    assert_error(&a, 429, "queue_full");
    assert!(a.headers.contains_key("retry-after"), "{:?}", a.headers);
    running.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_is_cancelled_streaming_or_not() {
    let d = Daemon::start(&["--slots", "1"]);
    let c = d.client().await;
    {
        let target = Target::Unix(d.http_socket());
        let body = json!({"prompt": "leaving", "max_tokens": 1000, "ignore_eos": true,
                          "stream": true});
        let mut response = open(
            &target,
            "POST",
            "/v1/completions",
            Some(body.to_string().into_bytes()),
            &[],
        )
        .await;
        assert_eq!(response.status(), 200);
        use http_body_util::BodyExt;
        let frame = response.body_mut().frame().await.unwrap().unwrap();
        assert!(frame.is_data());
        assert_eq!(c.status().await.unwrap().slots_busy, 1);
    }
    assert!(
        eventually(Duration::from_secs(20), || async {
            c.status().await.unwrap().slots_busy == 0
        })
        .await,
        "the slot stayed busy after its HTTP client left"
    );
    let generated = c.status().await.unwrap().tokens_generated;
    assert!(
        generated < 1000,
        "the request ran to its end: {generated} tokens"
    );

    // A whole (non-streamed) request whose client gives up before the answer.
    let before = c.status().await.unwrap().tokens_generated;
    let body = json!({"prompt": "impatient", "max_tokens": 1000, "ignore_eos": true});
    let target = Target::Unix(d.http_socket());
    let request = call(
        &target,
        "POST",
        "/v1/completions",
        Some(body.to_string().into_bytes()),
        &[],
    );
    let gave_up = tokio::time::timeout(Duration::from_millis(100), request).await;
    assert!(gave_up.is_err(), "answered within 100 ms: {gave_up:?}");
    assert!(
        eventually(Duration::from_secs(20), || async {
            c.status().await.unwrap().slots_busy == 0
        })
        .await
    );
    let generated = c.status().await.unwrap().tokens_generated - before;
    assert!(
        generated < 1000,
        "the request ran to its end: {generated} tokens"
    );
}

/// Checks every line is Prometheus text: a comment, or `name{labels} value`.
fn parse_prometheus(text: &str) -> std::collections::HashMap<String, f64> {
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels in {line:?}");
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_as_prometheus_text_and_move() {
    let d = Daemon::start(&["--slots", "2"]);
    let sock = d.http_socket();
    let before = get(&sock, "/metrics").await;
    assert_eq!(before.status, 200);
    let before = parse_prometheus(&before.text());
    let a = post(
        &sock,
        "/v1/completions",
        &json!({"prompt": "count me", "max_tokens": 7, "ignore_eos": true}),
    )
    .await;
    assert_eq!(a.status, 200);
    let after = parse_prometheus(&get(&sock, "/metrics").await.text());
    let moved = |k: &str| after[k] - before.get(k).copied().unwrap_or(0.0);
    assert_eq!(moved("llamacpp:tokens_predicted_total"), 7.0);
    assert!(moved("llamacpp:prompt_tokens_total") > 0.0);
    assert!(moved("batchd_tokens_generated_total") >= 7.0);
    assert!(moved("llamacpp:n_decode_total") >= 7.0);
    assert!(moved("batchd_step_seconds_count") >= 7.0, "{after:?}");
    assert_eq!(
        after["batchd_http_requests_total{path=\"/v1/completions\",code=\"200\"}"],
        1.0
    );
    assert_eq!(after["llamacpp:requests_processing"], 0.0);
    assert_eq!(after["batchd_slots_total"], 2.0);
}

#[test]
fn the_http_socket_can_be_moved_or_turned_off() {
    let d = Daemon::start(&["--slots", "1", "--http-socket", "none"]);
    assert!(!d.http_socket().exists());
    drop(d);
    let dir = batchd_tests::temp_dir("http-moved");
    let moved = dir.path().join("api.sock");
    let d = Daemon::start(&["--slots", "1", "--http-socket", moved.to_str().unwrap()]);
    assert!(moved.exists() && !d.http_socket().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_needs_an_api_key_and_checks_it() {
    let d = Daemon::start(&["--slots", "1"]);
    let out = Daemon::command(d.socket(), d.dir(), &["--http-listen", "127.0.0.1:0"])
        .env_remove("BATCHD_API_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--api-key"),
        "{out:?}"
    );
    drop(d);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start(&[
        "--slots",
        "1",
        "--http-listen",
        &addr,
        "--api-key",
        "s3cret",
    ]);
    let target = Target::Tcp(addr.parse().unwrap());
    let models = |auth: &'static [(&'static str, &'static str)]| {
        let target = target.clone();
        async move { call(&target, "GET", "/v1/models", None, auth).await }
    };
    assert_error(&models(&[]).await, 401, "invalid_api_key");
    assert_error(
        &models(&[("authorization", "Bearer wrong")]).await,
        401,
        "invalid_api_key",
    );
    let a = models(&[("authorization", "Bearer s3cret")]).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let body = json!({"prompt": "tcp", "max_tokens": 3})
        .to_string()
        .into_bytes();
    let a = call(
        &target,
        "POST",
        "/v1/completions",
        Some(body),
        &[("authorization", "Bearer s3cret")],
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    drop(d);
}

/// The README's Python example, with the official `openai` package over httpx's Unix
/// socket transport. `.ci/run` installs the package and sets BATCHD_TEST_OPENAI, which
/// turns a missing package from a skip into a failure.
#[test]
fn the_openai_python_package_works_over_the_socket() {
    let required = std::env::var_os("BATCHD_TEST_OPENAI").is_some();
    let probe = std::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        Ok(out) if !required => {
            eprintln!(
                "skipped: python3 cannot import openai ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return;
        }
        Err(e) if !required => {
            eprintln!("skipped: no python3 ({e})");
            return;
        }
        other => panic!("BATCHD_TEST_OPENAI is set but openai is unusable: {other:?}"),
    }
    let d = Daemon::start(&["--slots", "2"]);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/openai_socket.py");
    let out = std::process::Command::new("python3")
        .arg(script)
        .arg(d.http_socket())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let expected = batchctl_text(&d, "The capital of France is", 12);
    assert_eq!(v["model"], model_name(&d).as_str());
    assert_eq!(v["completion"], expected.as_str());
    assert_eq!(v["streamed"], expected.as_str());
    assert_eq!(v["completion_tokens"], 12);
    assert_eq!(
        v["chat"],
        batchctl_text(&d, "User: Hello\nAssistant:", 12).as_str()
    );
    assert_eq!(v["not_found_raised"], true);
    let l = &v["logprobs"];
    assert_eq!(
        l["text"],
        expected.as_str(),
        "logprobs leave the text alone"
    );
    check_completion_logprobs(l, 12, 3, true);
    assert_eq!(l["chat_text"], v["chat"]);
    let chat = l["chat"].as_array().unwrap();
    assert_eq!(chat.len(), 12);
    for t in chat {
        let top = t["top"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert_eq!(top[0], t["logprob"], "greedy: the token is the most likely");
        assert!(t["logprob"].as_f64().unwrap() <= 0.0);
    }
}

/// Checks one completions `logprobs` object: `n` tokens of `top` alternatives, all ≤ 0,
/// offsets rising from 0; greedy, each token is its position's most likely one.
fn check_completion_logprobs(l: &Value, n: usize, top: usize, greedy: bool) {
    let tokens = l["tokens"].as_array().unwrap();
    let chosen = l["token_logprobs"].as_array().unwrap();
    let tops = l["top_logprobs"].as_array().unwrap();
    let offsets: Vec<u64> = l["text_offset"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_u64().unwrap())
        .collect();
    assert_eq!((tokens.len(), chosen.len(), tops.len()), (n, n, n), "{l}");
    assert_eq!(offsets.first(), Some(&0));
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    for (i, top_i) in tops.iter().enumerate() {
        let top_i = top_i.as_object().unwrap();
        // Two alternatives may read the same (pieces of one character): keys can merge.
        assert!(top_i.len() <= top && top_i.len() >= top.min(2), "{top_i:?}");
        let lp = chosen[i].as_f64().unwrap();
        let best = top_i
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::MIN, f64::max);
        assert!(lp <= 0.0 && best <= 0.0, "{l}");
        assert!(top_i.values().all(|v| v.as_f64().unwrap() <= 0.0));
        if greedy {
            assert!(
                (lp - best).abs() < 1e-5,
                "greedy token {i} is not the most likely: {l}"
            );
            assert_eq!(top_i[tokens[i].as_str().unwrap()].as_f64(), Some(lp), "{l}");
        } else {
            assert!(lp <= best + 1e-5, "{l}");
        }
    }
}

/// Checks one chat `logprobs` object: `n` entries with `top` alternatives each, bytes, ≤ 0,
/// the greedy token first among its alternatives.
fn check_chat_logprobs(l: &Value, n: usize, top: usize) -> Vec<f64> {
    let content = l["content"].as_array().unwrap();
    assert_eq!(content.len(), n, "{l}");
    content
        .iter()
        .map(|c| {
            let lp = c["logprob"].as_f64().unwrap();
            let alternatives = c["top_logprobs"].as_array().unwrap();
            assert_eq!(alternatives.len(), top, "{c}");
            assert!(
                lp <= 0.0 && c["bytes"].is_array() && c["token"].is_string(),
                "{c}"
            );
            assert_eq!(alternatives[0]["logprob"].as_f64(), Some(lp), "{c}");
            assert_eq!(alternatives[0]["bytes"], c["bytes"], "{c}");
            assert!(alternatives
                .windows(2)
                .all(|w| w[0]["logprob"].as_f64() >= w[1]["logprob"].as_f64()));
            lp
        })
        .collect()
}

/// Every token's log-probability, computed on the host from the logits even where greedy
/// picks happen on the device (`--device-sampling on`), and the greedy text unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logprobs_come_from_the_logits_and_leave_the_text_alone() {
    let d = Daemon::start(&["--slots", "4", "--device-sampling", "on"]);
    let sock = d.http_socket();
    let c = d.client().await;
    let prompt = "The capital of France is";
    let expected = batchctl_text(&d, prompt, 8);
    let device_sampled = c.status().await.unwrap().device_sampled_tokens;
    assert!(device_sampled >= 8, "greedy picks run on the device here");

    let greedy = json!({"prompt": prompt, "max_tokens": 8, "ignore_eos": true, "logprobs": 5});
    let a = post(&sock, "/v1/completions", &greedy).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let whole = a.json()["choices"][0].clone();
    assert_eq!(whole["text"], expected.as_str());
    check_completion_logprobs(&whole["logprobs"], 8, 5, true);
    assert_eq!(
        c.status().await.unwrap().device_sampled_tokens,
        device_sampled,
        "a request with logprobs takes the host path"
    );

    // Streamed: one token per chunk, the same tokens and (alone in the batch) numbers.
    let mut streamed = greedy.clone();
    streamed["stream"] = json!(true);
    let a = post(&sock, "/v1/completions", &streamed).await;
    let chunks: Vec<Value> = a.sse_data()[..]
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let mut joined = json!({"tokens": [], "token_logprobs": [], "top_logprobs": [],
                            "text_offset": []});
    let mut text = String::new();
    for chunk in &chunks {
        let choice = &chunk["choices"][0];
        text.push_str(choice["text"].as_str().unwrap());
        if choice["logprobs"].is_null() {
            continue;
        }
        for key in ["tokens", "token_logprobs", "top_logprobs", "text_offset"] {
            let part = choice["logprobs"][key].as_array().unwrap();
            assert_eq!(part.len(), 1, "one token a chunk: {chunk}");
            joined[key].as_array_mut().unwrap().push(part[0].clone());
        }
    }
    assert_eq!(text, expected);
    check_completion_logprobs(&joined, 8, 5, true);
    assert_eq!(joined["tokens"], whole["logprobs"]["tokens"]);
    assert_eq!(joined["text_offset"], whole["logprobs"]["text_offset"]);
    let close = |a: &Value, b: &Value| {
        let (a, b) = (a.as_array().unwrap(), b.as_array().unwrap());
        a.iter()
            .zip(b)
            .all(|(x, y)| (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-3)
    };
    assert!(close(
        &joined["token_logprobs"],
        &whole["logprobs"]["token_logprobs"]
    ));

    // Sampled: the same seed gives the same text with and without logprobs.
    let sampled = json!({"prompt": prompt, "max_tokens": 8, "ignore_eos": true,
                         "temperature": 0.9, "top_k": 40, "seed": 11});
    let plain = post(&sock, "/v1/completions", &sampled).await.json();
    let mut asked = sampled.clone();
    asked["logprobs"] = json!(2);
    let a = post(&sock, "/v1/completions", &asked).await.json();
    assert_eq!(a["choices"][0]["text"], plain["choices"][0]["text"]);
    check_completion_logprobs(&a["choices"][0]["logprobs"], 8, 2, false);

    // Chat: a flag and a count, whole and streamed.
    let messages = json!([{"role": "user", "content": "Hello"}]);
    let chat_text = batchctl_text(&d, "User: Hello\nAssistant:", 6);
    let body = json!({"messages": messages, "max_tokens": 6, "ignore_eos": true,
                      "logprobs": true, "top_logprobs": 3});
    let a = post(&sock, "/v1/chat/completions", &body).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let choice = &a.json()["choices"][0];
    assert_eq!(choice["message"]["content"], chat_text.as_str());
    let whole = check_chat_logprobs(&choice["logprobs"], 6, 3);
    let mut body = body;
    body["stream"] = json!(true);
    let a = post(&sock, "/v1/chat/completions", &body).await;
    let mut content = Vec::new();
    for d in a.sse_data().iter().filter(|d| *d != "[DONE]") {
        let chunk: Value = serde_json::from_str(d).unwrap();
        if let Some(c) = chunk["choices"][0]["logprobs"]["content"].as_array() {
            content.extend(c.iter().cloned());
        }
    }
    let streamed = check_chat_logprobs(&json!({ "content": content }), 6, 3);
    assert!(whole
        .iter()
        .zip(&streamed)
        .all(|(a, b)| (a - b).abs() < 1e-3));
    let a = post(
        &sock,
        "/v1/chat/completions",
        &json!({"messages": messages, "max_tokens": 2, "logprobs": true}),
    )
    .await;
    let content = &a.json()["choices"][0]["logprobs"]["content"];
    assert!(content[0]["top_logprobs"].as_array().unwrap().is_empty());

    // Refused: too many alternatives, or the wrong shape for the endpoint.
    for (url, body) in [
        ("/v1/completions", json!({"prompt": "a", "logprobs": 21})),
        ("/v1/completions", json!({"prompt": "a", "logprobs": true})),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "logprobs": true, "top_logprobs": 21}),
        ),
        (
            "/v1/chat/completions",
            json!({"messages": messages, "top_logprobs": 2}),
        ),
    ] {
        assert_error(&post(&sock, url, &body).await, 400, "invalid_request");
    }

    // batchctl prints them too.
    let out = d.batchctl(&[
        "generate",
        prompt,
        "--max-tokens",
        "4",
        "--ignore-eos",
        "--logprobs",
        "2",
        "--json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = v["logprobs"].as_array().unwrap();
    assert_eq!(l.len(), 4);
    for (entry, token) in l.iter().zip(v["tokens"].as_array().unwrap()) {
        assert_eq!(&entry["token"], token);
        assert_eq!(entry["top"][0]["token"], *token);
        assert_eq!(entry["top"].as_array().unwrap().len(), 2);
    }
}

/// The HTTP socket answers from the start: while the model loads (held by the test's load
/// gate), /health is 503 `loading` and an API request waits; once loaded, 200, and the
/// waiting request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_loading_until_the_model_is_loaded() {
    let dir = batchd_tests::temp_dir("loading");
    let socket = dir.path().join("batchd.sock");
    let gate = dir.path().join("load");
    let mut child = Daemon::command(&socket, dir.path(), &["--slots", "1"])
        .env("BATCHD_TEST_LOAD_GATE", &gate)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sock = socket.with_file_name("http.sock");
    assert!(
        eventually(Duration::from_secs(60), || async {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        })
        .await
    );
    let a = get(&sock, "/health").await;
    assert_error(&a, 503, "loading");
    assert_eq!(a.json()["status"], "loading");
    let waiting = {
        let sock = sock.clone();
        tokio::spawn(async move {
            let body = json!({"prompt": "early", "max_tokens": 3, "ignore_eos": true});
            post(&sock, "/v1/completions", &body).await
        })
    };
    // The gate is shut: nothing can have loaded, whatever the timing.
    assert_eq!(get(&sock, "/health").await.status, 503);
    assert!(!waiting.is_finished());

    std::fs::write(&gate, b"").unwrap();
    assert!(
        eventually(Duration::from_secs(60), || async {
            get(&sock, "/health").await.status == 200
        })
        .await
    );
    let a = waiting.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json()["usage"]["completion_tokens"], 3);
    child.kill().unwrap();
    child.wait().unwrap();
}
