//! The client library against a scripted fake daemon.
//!
//! One file past 400 lines: each test is one scripted exchange with the fake daemon in
//! `support/`; they share nothing else.

mod support;

use std::time::Duration;

use batchctl::{Client, ClientError, Event};
use batchd_protocol::{
    ClientMessage, ErrorCode, FinishReason, GenerateRequest, ServerMessage, StatusReport,
    StepSequence, StepTrace, PROTOCOL_VERSION,
};
use support::{done, temp_dir, Fake};
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(10);

fn non_stream(prompt: &str) -> GenerateRequest {
    GenerateRequest {
        stream: false,
        ..GenerateRequest::new(prompt)
    }
}

#[tokio::test]
async fn missing_socket_names_path_and_how_to_start() {
    let dir = temp_dir();
    let path = dir.path().join("absent.sock");
    let err = Client::connect(&path).await.unwrap_err();
    assert!(err.is_not_running());
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(
        msg.starts_with(&format!("cannot reach batchd at {}: ", path.display())),
        "{msg}"
    );
    assert!(msg.contains("start it with `batchd`"), "{msg}");
}

#[tokio::test]
async fn stale_socket_is_not_running() {
    let dir = temp_dir();
    let path = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let err = Client::connect(&path).await.unwrap_err();
    assert!(err.is_not_running(), "{err}");
    assert!(err.to_string().contains("start it with"), "{err}");
}

#[tokio::test]
async fn refused_hello_is_a_server_error() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept_raw().await;
        conn.recv().await;
        conn.send(ServerMessage::Error {
            id: None,
            code: ErrorCode::VersionMismatch,
            message: "speak 2".into(),
        })
        .await;
    };
    let (res, ()) = tokio::join!(Client::connect(&fake.path), server);
    let err = res.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::VersionMismatch), "{err}");
}

#[tokio::test]
async fn wrong_version_in_hello_is_refused() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept_raw().await;
        conn.recv().await;
        conn.send(ServerMessage::Hello {
            version: PROTOCOL_VERSION + 1,
            server: "future".into(),
        })
        .await;
        conn
    };
    let (res, _conn) = tokio::join!(Client::connect(&fake.path), server);
    assert_eq!(res.unwrap_err().code(), Some(ErrorCode::VersionMismatch));
}

#[tokio::test]
async fn streaming_events_in_order() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        let (id, req) = conn.recv_generate().await;
        assert_eq!(req.prompt, "Hi");
        assert!(req.stream);
        conn.token(id, 10, "Hel").await;
        conn.token(id, 11, "").await;
        conn.token(id, 12, "lo").await;
        conn.done(id, done(FinishReason::Length, None)).await;
        conn
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        assert_eq!(client.server(), "fake-batchd");
        assert_eq!(client.socket_path(), fake.path.as_path());
        let mut gen = client.generate(GenerateRequest::new("Hi")).await.unwrap();
        assert_eq!(gen.id(), 1);
        let mut events = Vec::new();
        while let Some(ev) = gen.next().await {
            events.push(ev);
        }
        assert!(gen.next().await.is_none());
        events
    };
    let (events, _conn) = timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
    assert_eq!(events.len(), 4);
    assert_eq!(
        events[0],
        Event::Token {
            token: 10,
            text: "Hel".into(),
            logprobs: None,
        }
    );
    assert!(matches!(&events[3], Event::Done(d) if d.finish_reason == FinishReason::Length));
}

#[tokio::test]
async fn collect_streaming_and_non_streaming() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        let (a, _) = conn.recv_generate().await;
        let (b, req) = conn.recv_generate().await;
        assert!(!req.stream);
        conn.token(a, 1, "ab").await;
        conn.token(a, 2, "c").await;
        conn.done(a, done(FinishReason::Eos, None)).await;
        conn.done(b, done(FinishReason::Stop, Some(("xyz", &[5, 6]))))
            .await;
        conn
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let a = client.generate(GenerateRequest::new("a")).await.unwrap();
        let b = client.generate(non_stream("b")).await.unwrap();
        (a.collect().await.unwrap(), b.collect().await.unwrap())
    };
    let ((a, b), _conn) = timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
    assert_eq!((a.text.as_str(), a.tokens.as_slice()), ("abc", &[1, 2][..]));
    assert_eq!(a.finish_reason(), FinishReason::Eos);
    assert_eq!((b.text.as_str(), b.tokens.as_slice()), ("xyz", &[5, 6][..]));
    assert_eq!(b.done.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn two_requests_interleaved_and_status_in_between() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        let (a, _) = conn.recv_generate().await;
        let (b, _) = conn.recv_generate().await;
        assert_ne!(a, b);
        conn.token(b, 20, "B1").await;
        conn.token(a, 10, "A1").await;
        assert_eq!(conn.recv().await, Some(ClientMessage::Status));
        conn.send(ServerMessage::Status(StatusReport {
            slots_busy: 2,
            ..Default::default()
        }))
        .await;
        conn.token(b, 21, "B2").await;
        conn.done(b, done(FinishReason::Length, None)).await;
        conn.token(a, 11, "A2").await;
        conn.done(a, done(FinishReason::Eos, None)).await;
        conn
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let a = client.generate(GenerateRequest::new("a")).await.unwrap();
        let b = client.generate(GenerateRequest::new("b")).await.unwrap();
        let status = client.status().await.unwrap();
        assert_eq!(status.slots_busy, 2);
        let (a, b) = tokio::join!(a.collect(), b.collect());
        (a.unwrap(), b.unwrap())
    };
    let ((a, b), _conn) = timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
    assert_eq!(a.text, "A1A2");
    assert_eq!(a.tokens, [10, 11]);
    assert_eq!(b.text, "B1B2");
    assert_eq!(b.tokens, [20, 21]);
}

#[tokio::test]
async fn request_error_becomes_server_error() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        let (id, _) = conn.recv_generate().await;
        conn.send(ServerMessage::Error {
            id: Some(id),
            code: ErrorCode::PromptTooLong,
            message: "9000 tokens".into(),
        })
        .await;
        let (id2, _) = conn.recv_generate().await;
        conn.done(id2, done(FinishReason::Eos, Some(("ok", &[1]))))
            .await;
        conn
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let err = client
            .generate(GenerateRequest::new("long"))
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err();
        // The connection stays usable.
        let ok = client.generate(non_stream("short")).await.unwrap();
        (err, ok.collect().await.unwrap())
    };
    let ((err, ok), _conn) = timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
    assert!(
        matches!(&err, ClientError::Server { code: ErrorCode::PromptTooLong, message } if message == "9000 tokens"),
        "{err:?}"
    );
    assert_eq!(ok.text, "ok");
}

#[tokio::test]
async fn dropped_connection_fails_every_open_request() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        let (a, _) = conn.recv_generate().await;
        conn.recv_generate().await;
        assert_eq!(conn.recv().await, Some(ClientMessage::Status));
        conn.token(a, 1, "x").await;
        drop(conn);
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let mut a = client.generate(GenerateRequest::new("a")).await.unwrap();
        let b = client.generate(non_stream("b")).await.unwrap();
        let status = client.status();
        let (status, first) = tokio::join!(status, a.next());
        assert!(
            matches!(status, Err(ClientError::Disconnected(_))),
            "{status:?}"
        );
        assert_eq!(
            first,
            Some(Event::Token {
                token: 1,
                text: "x".into(),
                logprobs: None,
            })
        );
        let second = a.next().await;
        assert!(
            matches!(&second, Some(Event::Error { code: ErrorCode::Internal, message }) if message.contains("connection to batchd lost")),
            "{second:?}"
        );
        assert_eq!(a.next().await, None);
        let err = b.collect().await.unwrap_err();
        assert!(matches!(err, ClientError::Disconnected(_)), "{err:?}");
        assert!(client.is_closed());
        // Later calls fail at once.
        assert!(client.generate(GenerateRequest::new("c")).await.is_err());
        assert!(client.status().await.is_err());
    };
    timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
}

#[tokio::test]
async fn connection_level_error_reaches_requests() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        conn.recv_generate().await;
        conn.send(ServerMessage::Error {
            id: None,
            code: ErrorCode::BadFrame,
            message: "garbled".into(),
        })
        .await;
        conn
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let gen = client.generate(GenerateRequest::new("a")).await.unwrap();
        gen.collect().await.unwrap_err()
    };
    let (err, _conn) = timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
    assert_eq!(err.code(), Some(ErrorCode::BadFrame), "{err:?}");
}

#[tokio::test]
async fn cancel_and_drop_send_cancel_once() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        let (a, _) = conn.recv_generate().await;
        let (b, _) = conn.recv_generate().await;
        conn.token(a, 1, "x").await;
        // Explicit cancel (sent twice by the client, arrives once).
        assert_eq!(conn.recv().await, Some(ClientMessage::Cancel { id: a }));
        conn.done(a, done(FinishReason::Cancelled, None)).await;
        // Dropping b cancels it.
        assert_eq!(conn.recv().await, Some(ClientMessage::Cancel { id: b }));
        conn.done(b, done(FinishReason::Cancelled, None)).await;
        // A finished request is not cancelled when dropped.
        let (c, _) = conn.recv_generate().await;
        conn.done(c, done(FinishReason::Eos, None)).await;
        assert_eq!(conn.recv().await, Some(ClientMessage::Status));
        conn.send(ServerMessage::Status(StatusReport::default()))
            .await;
        conn
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let mut a = client.generate(GenerateRequest::new("a")).await.unwrap();
        let b = client.generate(GenerateRequest::new("b")).await.unwrap();
        assert!(matches!(a.next().await, Some(Event::Token { .. })));
        a.cancel();
        a.cancel_handle().cancel();
        let whole = a.collect().await.unwrap();
        assert_eq!(whole.done.finish_reason, FinishReason::Cancelled);
        // Pieces already taken with `next` are part of the collected result.
        assert_eq!(
            (whole.text.as_str(), whole.tokens.as_slice()),
            ("x", &[1][..])
        );
        drop(b);
        let mut c = client.generate(GenerateRequest::new("c")).await.unwrap();
        assert!(matches!(c.next().await, Some(Event::Done(_))));
        c.cancel();
        drop(c);
        client.status().await.unwrap();
    };
    timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
}

#[tokio::test]
async fn dropping_everything_closes_the_connection() {
    let fake = Fake::start();
    let server = async {
        let mut conn = fake.accept().await;
        conn.recv_generate().await;
        // The client went away: its request is cancelled, then the stream ends.
        assert!(matches!(
            conn.recv().await,
            Some(ClientMessage::Cancel { .. })
        ));
        assert_eq!(conn.recv().await, None);
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let gen = client.generate(GenerateRequest::new("a")).await.unwrap();
        drop(client);
        tokio::task::yield_now().await;
        drop(gen);
    };
    timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
}

fn step(n: u64) -> ServerMessage {
    ServerMessage::Step(StepTrace {
        step: n,
        n_tokens: 1,
        passes: 1,
        sequences: vec![StepSequence {
            slot: 0,
            request: 1,
            prefill: None,
            pos: n as u32,
            reused: 0,
        }],
        micros: 10,
    })
}

#[tokio::test]
async fn trace_subscribes_once_and_routes_steps_to_every_stream() {
    let fake = Fake::start();
    let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel();
    let server = async {
        let mut conn = fake.accept().await;
        // Two trace() calls, one subscription: the next frame is the status request.
        assert_eq!(conn.recv().await, Some(ClientMessage::Trace));
        assert_eq!(conn.recv().await, Some(ClientMessage::Status));
        conn.send(ServerMessage::Status(StatusReport::default()))
            .await;
        conn.send(step(1)).await;
        conn.send(step(2)).await;
        dropped_rx.await.unwrap();
        // The remaining stream keeps the connection open.
        let r = timeout(Duration::from_millis(100), conn.recv()).await;
        assert!(r.is_err(), "{r:?}");
        conn.send(step(3)).await;
        drop(conn);
    };
    let client_side = async {
        let client = Client::connect(&fake.path).await.unwrap();
        let mut a = client.trace().await.unwrap();
        let mut b = client.trace().await.unwrap();
        client.status().await.unwrap();
        for n in [1, 2] {
            assert_eq!(a.next().await.unwrap().step, n);
            assert_eq!(b.next().await.unwrap().step, n);
        }
        drop((b, client));
        dropped_tx.send(()).unwrap();
        assert_eq!(a.next().await.unwrap().step, 3);
        let err = a.next().await.unwrap_err();
        assert!(matches!(err, ClientError::Disconnected(_)), "{err:?}");
        assert!(matches!(
            a.next().await.unwrap_err(),
            ClientError::Disconnected(_)
        ));
    };
    timeout(LIMIT, async { tokio::join!(client_side, server) })
        .await
        .unwrap();
}
