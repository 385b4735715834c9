//! One client connection: handshake, then frames in → router commands, request events →
//! frames out. A broken client only ever breaks its own connection.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use batchd_protocol::{
    read_frame, write_frame, ClientMessage, ErrorCode, FrameError, RequestId, ServerMessage,
    PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};

use crate::router::{ClientId, Command, EventSink, RequestEvent, Submit};

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// What a connection's writer task receives.
// Token frames dominate and are small; boxing every message to shrink the rare status
// reply would cost an allocation per token.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Outgoing {
    /// A frame to send.
    Msg(ServerMessage),
    /// Send what came before, then close the connection.
    Close,
}

/// Channel to one connection's writer task.
type OutTx = mpsc::UnboundedSender<Outgoing>;

/// Serves one client: owns the read half of its stream, the channel to the task that
/// writes its frames, whether its peer may talk to us, and the signal that the engine
/// has stopped (after which nothing it sends could be served).
pub struct Handler {
    pub client: ClientId,
    reader: OwnedReadHalf,
    out: OutTx,
    writer: tokio::task::JoinHandle<()>,
    /// The access decision, taken from the peer's credentials at accept time.
    allowed: bool,
    engine: std_mpsc::Sender<Command>,
    max_frame: u32,
    /// Turns true once the engine has stopped.
    engine_stopped: watch::Receiver<bool>,
}

impl Handler {
    /// Splits `stream` and starts its writer task.
    pub fn new(
        stream: UnixStream,
        client: ClientId,
        allowed: bool,
        engine: std_mpsc::Sender<Command>,
        max_frame: u32,
        engine_stopped: watch::Receiver<bool>,
    ) -> Self {
        let (reader, mut writer) = stream.into_split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
        let writer = tokio::spawn(async move {
            while let Some(item) = out_rx.recv().await {
                match item {
                    Outgoing::Msg(msg) => {
                        if write_frame(&mut writer, &msg).await.is_err() {
                            break;
                        }
                    }
                    Outgoing::Close => break,
                }
            }
            let _ = writer.shutdown().await;
        });
        Self {
            client,
            reader,
            out,
            writer,
            allowed,
            engine,
            max_frame,
            engine_stopped,
        }
    }

    /// Serves the connection until the client leaves or breaks the protocol, then cancels
    /// whatever it had running and closes.
    pub async fn run(mut self) {
        if !self.allowed {
            self.fail(
                ErrorCode::Unauthorized,
                "this user may not use this batchd (see allow_uids / allow_group)".into(),
            );
        } else if self.handshake().await {
            self.serve().await;
        }
        // Whatever the client had running is cancelled; its slots free up at the next step.
        let _ = self.engine.send(Command::ClientGone {
            client: self.client,
        });
        let _ = self.out.send(Outgoing::Close);
        drop(self.out);
        let _ = self.writer.await;
    }

    fn send(&self, msg: ServerMessage) {
        let _ = self.out.send(Outgoing::Msg(msg));
    }

    /// Sends a connection-level error and closes.
    fn fail(&self, code: ErrorCode, message: String) {
        tracing::debug!(conn = self.client, code = code.as_str(), %message, "closing connection");
        self.send(ServerMessage::Error {
            id: None,
            code,
            message,
        });
        let _ = self.out.send(Outgoing::Close);
    }

    /// Reads the client's hello and answers it; false when the connection must close.
    async fn handshake(&mut self) -> bool {
        let hello = read_frame(&mut self.reader, self.max_frame);
        match tokio::time::timeout(HELLO_TIMEOUT, hello).await {
            Ok(Ok(Some(ClientMessage::Hello { version, .. }))) if version == PROTOCOL_VERSION => {
                self.send(ServerMessage::Hello {
                    version: PROTOCOL_VERSION,
                    server: format!("batchd {}", env!("CARGO_PKG_VERSION")),
                });
                true
            }
            Ok(Ok(Some(ClientMessage::Hello { version, .. }))) => {
                self.fail(
                    ErrorCode::VersionMismatch,
                    format!("this daemon speaks protocol {PROTOCOL_VERSION}, the client {version}"),
                );
                false
            }
            Ok(Ok(Some(_))) => {
                self.fail(
                    ErrorCode::ProtocolViolation,
                    "the first frame must be a hello".into(),
                );
                false
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                self.fail(frame_error_code(&e), e.to_string());
                false
            }
            Err(_) => {
                self.fail(ErrorCode::ProtocolViolation, "no hello within 10 s".into());
                false
            }
        }
    }

    /// Turns frames into router commands until the client leaves, breaks the protocol,
    /// or the engine has stopped.
    async fn serve(&mut self) {
        loop {
            let frame = tokio::select! {
                frame = read_frame::<_, ClientMessage>(&mut self.reader, self.max_frame) => frame,
                _ = self.engine_stopped.wait_for(|stopped| *stopped) => break,
            };
            let cmd = match frame {
                Ok(Some(ClientMessage::Generate { id, request })) => {
                    Command::Submit(Box::new(Submit {
                        client: self.client,
                        id,
                        request,
                        received: Instant::now(),
                        events: self.event_sink(id),
                    }))
                }
                Ok(Some(ClientMessage::Cancel { id })) => Command::Cancel {
                    client: self.client,
                    id,
                },
                Ok(Some(ClientMessage::Status)) => {
                    let out = self.out.clone();
                    Command::Status(Box::new(move |report| {
                        let _ = out.send(Outgoing::Msg(ServerMessage::Status(report)));
                    }))
                }
                Ok(Some(ClientMessage::Trace)) => {
                    let out = self.out.clone();
                    Command::Trace(Box::new(move |trace| {
                        out.send(Outgoing::Msg(ServerMessage::Step(trace.clone())))
                            .is_ok()
                    }))
                }
                Ok(Some(ClientMessage::Hello { .. })) => {
                    return self.fail(ErrorCode::ProtocolViolation, "hello sent twice".into());
                }
                Ok(None) => return,
                Err(FrameError::Io(e)) => {
                    tracing::debug!(conn = self.client, error = %e, "connection read failed");
                    return;
                }
                Err(e) => return self.fail(frame_error_code(&e), e.to_string()),
            };
            let submits = matches!(cmd, Command::Submit(_));
            if self.engine.send(cmd).is_err() && submits {
                return self.fail(ErrorCode::ShuttingDown, "the engine has stopped".into());
            }
        }
    }

    /// Request `id`'s events as frames to this connection.
    fn event_sink(&self, id: RequestId) -> EventSink {
        let out = self.out.clone();
        Box::new(move |event| {
            let msg = match event {
                RequestEvent::Token {
                    token,
                    text,
                    logprobs,
                } => ServerMessage::Token {
                    id,
                    token,
                    text,
                    logprobs,
                },
                RequestEvent::Done(done) => ServerMessage::Done { id, done },
                RequestEvent::Error { code, message } => ServerMessage::Error {
                    id: Some(id),
                    code,
                    message,
                },
            };
            out.send(Outgoing::Msg(msg)).is_ok()
        })
    }
}

fn frame_error_code(e: &FrameError) -> ErrorCode {
    match e {
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::BadFrame,
    }
}
