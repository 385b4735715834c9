//! Broken clients break only themselves.

use std::time::Duration;

use batchctl::{ClientError, Event};
use batchd_protocol::{
    frame::encode_frame, read_frame, ClientMessage, ErrorCode, FinishReason, ServerMessage,
    PROTOCOL_VERSION,
};
use batchd_tests::{eventually, greedy, Daemon};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

async fn raw(d: &Daemon, hello: bool) -> UnixStream {
    let mut s = UnixStream::connect(d.socket()).await.unwrap();
    if hello {
        let frame = encode_frame(&ClientMessage::Hello {
            version: PROTOCOL_VERSION,
            client: "raw".into(),
        })
        .unwrap();
        s.write_all(&frame).await.unwrap();
        let reply: Option<ServerMessage> = read_frame(&mut s, 1 << 20).await.unwrap();
        assert!(matches!(reply, Some(ServerMessage::Hello { .. })));
    }
    s
}

/// Reads until the daemon closes, returning the connection-level error code if one came.
async fn error_then_close(s: &mut UnixStream) -> Option<ErrorCode> {
    let mut code = None;
    loop {
        match tokio::time::timeout(
            Duration::from_secs(10),
            read_frame::<_, ServerMessage>(s, 1 << 20),
        )
        .await
        .expect("daemon should answer or close")
        {
            Ok(Some(ServerMessage::Error {
                id: None, code: c, ..
            })) => code = Some(c),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return code,
        }
    }
}

async fn still_serves(d: &Daemon) {
    let c = d.client().await;
    let done = c
        .generate(greedy("still alive?", 4))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(done.tokens.len(), 4);
}

/// A daemon with someone else's request running through whatever one test does to its
/// own connection.
struct Bystander {
    d: Daemon,
    victim: batchctl::Generation,
    _client: batchctl::Client,
}

impl Bystander {
    async fn start() -> Self {
        let d = Daemon::start(&["--slots", "2", "--max-frame", "4096"]);
        let client = d.client().await;
        let victim = client.generate(greedy("bystander", 200)).await.unwrap();
        Self {
            d,
            victim,
            _client: client,
        }
    }

    /// The daemon still serves, and the bystander got every token it asked for.
    async fn unharmed(self) {
        still_serves(&self.d).await;
        let v = self.victim.collect().await.unwrap();
        assert_eq!(v.finish_reason(), FinishReason::Length);
        assert_eq!(v.tokens.len(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_hello_is_a_bad_frame() {
    let b = Bystander::start().await;
    let mut s = raw(&b.d, false).await;
    let garbage: Vec<u8> = (0..512u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&garbage).await;
    let code = error_then_close(&mut s).await;
    assert!(
        matches!(code, Some(ErrorCode::BadFrame | ErrorCode::FrameTooLarge)),
        "{code:?}"
    );
    b.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_length_prefix_is_refused() {
    let b = Bystander::start().await;
    let mut s = raw(&b.d, true).await;
    s.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
    assert_eq!(
        error_then_close(&mut s).await,
        Some(ErrorCode::FrameTooLarge)
    );
    b.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_just_over_the_configured_limit_is_refused() {
    let b = Bystander::start().await;
    let mut s = raw(&b.d, true).await;
    s.write_all(&4097u32.to_be_bytes()).await.unwrap();
    assert_eq!(
        error_then_close(&mut s).await,
        Some(ErrorCode::FrameTooLarge)
    );
    b.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_payload_is_a_bad_frame() {
    let b = Bystander::start().await;
    let mut s = raw(&b.d, true).await;
    s.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).await.unwrap();
    assert_eq!(error_then_close(&mut s).await, Some(ErrorCode::BadFrame));
    b.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_then_a_vanished_client_harms_no_one() {
    let b = Bystander::start().await;
    let mut s = raw(&b.d, true).await;
    let frame = encode_frame(&ClientMessage::Generate {
        id: 1,
        request: greedy("cut short", 5),
    })
    .unwrap();
    s.write_all(&frame[..frame.len() / 2]).await.unwrap();
    drop(s);
    b.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_hello_is_a_protocol_violation() {
    let b = Bystander::start().await;
    let mut s = raw(&b.d, true).await;
    let hello = encode_frame(&ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: "x".into(),
    })
    .unwrap();
    s.write_all(&hello).await.unwrap();
    assert_eq!(
        error_then_close(&mut s).await,
        Some(ErrorCode::ProtocolViolation)
    );
    b.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_protocol_version_is_refused() {
    let b = Bystander::start().await;
    let mut s = raw(&b.d, false).await;
    let hello = encode_frame(&ClientMessage::Hello {
        version: 999,
        client: "x".into(),
    })
    .unwrap();
    s.write_all(&hello).await.unwrap();
    assert_eq!(
        error_then_close(&mut s).await,
        Some(ErrorCode::VersionMismatch)
    );
    b.unharmed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_get_clear_errors_and_the_connection_goes_on() {
    let d = Daemon::start(&["--slots", "2"]);
    let c = d.client().await;
    let mut bad = greedy("x", 5);
    bad.sampling.temperature = -1.0;
    let err = c.generate(bad).await.unwrap().collect().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest), "{err}");
    assert!(err.to_string().contains("temperature"), "{err}");
    let mut bad = greedy("x", 0);
    bad.max_tokens = 0;
    let err = c.generate(bad).await.unwrap().collect().await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::InvalidRequest));
    // Same connection still works.
    let ok = c
        .generate(greedy("fine", 3))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(ok.tokens.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_longer_than_the_context_is_refused_clearly() {
    let d = Daemon::start(&["--slots", "2"]);
    let c = d.client().await;
    let prompt = "word ".repeat(1100);
    let err = c
        .generate(greedy(&prompt, 5))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::PromptTooLong), "{err}");
    assert!(err.to_string().contains("1024"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_that_fits_runs_until_the_context_is_full() {
    let d = Daemon::start(&["--slots", "2"]);
    let c = d.client().await;
    let prompt = "word ".repeat(1000);
    let done = c
        .generate(greedy(&prompt, 500))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(done.finish_reason(), FinishReason::Context);
    let used = done.done.usage.prompt_tokens + done.done.usage.completion_tokens;
    assert_eq!(
        used, 1025,
        "positions 0..=1023 are used and one last token is sampled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_frees_the_slot() {
    let d = Daemon::start(&["--slots", "1"]);
    let c = d.client().await;
    let mut long = c.generate(greedy("long", 1000)).await.unwrap();
    let waiting = c.generate(greedy("next", 5)).await.unwrap();
    assert!(matches!(long.next().await, Some(Event::Token { .. })));
    long.cancel();
    let mut reason = None;
    while let Some(ev) = long.next().await {
        if let Event::Done(done) = ev {
            reason = Some(done.finish_reason);
        }
    }
    assert_eq!(reason, Some(FinishReason::Cancelled));
    let next = waiting.collect().await.unwrap();
    assert_eq!(next.finish_reason(), FinishReason::Length);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_generation_frees_its_slot() {
    let d = Daemon::start(&["--slots", "1"]);
    let observer = d.client().await;
    {
        // A raw connection that vanishes mid-stream, with no polite cancel.
        let mut leaver = raw(&d, true).await;
        let f = encode_frame(&ClientMessage::Generate {
            id: 1,
            request: greedy("leaving", 1000),
        })
        .unwrap();
        leaver.write_all(&f).await.unwrap();
        let first: Option<ServerMessage> = read_frame(&mut leaver, 1 << 20).await.unwrap();
        assert!(
            matches!(first, Some(ServerMessage::Token { id: 1, .. })),
            "{first:?}"
        );
        assert_eq!(observer.status().await.unwrap().slots_busy, 1);
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            observer.status().await.unwrap().slots_busy == 0
        })
        .await,
        "the slot stayed busy after its client left"
    );
    let next = observer
        .generate(greedy("after", 5))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(next.tokens.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_at_once() {
    let d = Daemon::start(&["--slots", "1", "--queue", "1"]);
    let c = d.client().await;
    let mut running = c.generate(greedy("running", 1000)).await.unwrap();
    assert!(matches!(running.next().await, Some(Event::Token { .. })));
    let _queued = c.generate(greedy("queued", 5)).await.unwrap();
    let err = c
        .generate(greedy("refused", 5))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::Server {
                code: ErrorCode::Busy,
                ..
            }
        ),
        "{err}"
    );
    running.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_on_one_connection_are_refused() {
    let d = Daemon::start(&["--slots", "2"]);
    let mut s = raw(&d, true).await;
    for _ in 0..2 {
        let f = encode_frame(&ClientMessage::Generate {
            id: 9,
            request: greedy("dup", 50),
        })
        .unwrap();
        s.write_all(&f).await.unwrap();
    }
    let mut saw_dup = false;
    let mut saw_done = false;
    while !(saw_dup && saw_done) {
        match read_frame::<_, ServerMessage>(&mut s, 1 << 20)
            .await
            .unwrap()
        {
            Some(ServerMessage::Error {
                id: Some(9),
                code: ErrorCode::DuplicateId,
                ..
            }) => saw_dup = true,
            Some(ServerMessage::Done { id: 9, .. }) => saw_done = true,
            Some(_) => {}
            None => panic!("closed early"),
        }
    }
}
