//! A scripted stand-in for batchd on a temporary socket.

#![allow(dead_code)]

use std::path::PathBuf;

use batchd_protocol::{
    read_frame, write_frame, ClientMessage, Done, FinishReason, Output, ServerMessage, StepSpan,
    Timings, Usage, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use tokio::net::{UnixListener, UnixStream};

pub use tempfile::TempDir;

/// A fresh directory, removed on drop.
pub fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("batchctl-test-")
        .tempdir()
        .expect("create a temp dir")
}

/// A listening fake daemon.
pub struct Fake {
    pub path: PathBuf,
    listener: UnixListener,
    _dir: TempDir,
}

impl Fake {
    pub fn start() -> Self {
        let dir = temp_dir();
        let path = dir.path().join("batchd.sock");
        let listener = UnixListener::bind(&path).unwrap();
        Self {
            path,
            listener,
            _dir: dir,
        }
    }

    /// Accepts one connection without answering its hello.
    pub async fn accept_raw(&self) -> Conn {
        let (stream, _) = self.listener.accept().await.unwrap();
        Conn { stream }
    }

    /// Accepts one connection and completes the handshake.
    pub async fn accept(&self) -> Conn {
        let mut conn = self.accept_raw().await;
        match conn.recv().await {
            Some(ClientMessage::Hello { version, .. }) => assert_eq!(version, PROTOCOL_VERSION),
            other => panic!("expected hello, got {other:?}"),
        }
        conn.send(ServerMessage::Hello {
            version: PROTOCOL_VERSION,
            server: "fake-batchd".into(),
        })
        .await;
        conn
    }
}

/// The daemon's side of one connection.
pub struct Conn {
    pub stream: UnixStream,
}

impl Conn {
    pub async fn recv(&mut self) -> Option<ClientMessage> {
        read_frame(&mut self.stream, DEFAULT_MAX_FRAME_BYTES)
            .await
            .unwrap()
    }

    pub async fn send(&mut self, msg: ServerMessage) {
        write_frame(&mut self.stream, &msg).await.unwrap();
    }

    /// Receives a `Generate`, returning its id and request.
    pub async fn recv_generate(&mut self) -> (u64, batchd_protocol::GenerateRequest) {
        match self.recv().await {
            Some(ClientMessage::Generate { id, request }) => (id, request),
            other => panic!("expected generate, got {other:?}"),
        }
    }

    pub async fn token(&mut self, id: u64, token: u32, text: &str) {
        self.send(ServerMessage::Token {
            id,
            token,
            text: text.into(),
            logprobs: None,
        })
        .await;
    }

    pub async fn done(&mut self, id: u64, done: Done) {
        self.send(ServerMessage::Done { id, done }).await;
    }
}

/// A `Done` with `reason`, carrying `output` if given.
pub fn done(reason: FinishReason, output: Option<(&str, &[u32])>) -> Done {
    Done {
        finish_reason: reason,
        usage: Usage {
            prompt_tokens: 2,
            completion_tokens: output.map_or(0, |(_, t)| t.len() as u32),
            cached_tokens: 0,
        },
        timings: Timings {
            queue_ms: 0.5,
            ttft_ms: 3.0,
            total_ms: 9.0,
        },
        steps: StepSpan {
            admitted: 1,
            first_token: 1,
            finished: 3,
        },
        final_text: String::new(),
        output: output.map(|(text, tokens)| Output {
            text: text.into(),
            tokens: tokens.to_vec(),
            logprobs: Vec::new(),
        }),
    }
}
