//! One client connection: handshake, then frames in → engine commands, engine events →
//! frames out. A broken client only ever breaks its own connection.

use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use batchd_protocol::{
    read_frame, write_frame, ClientMessage, ErrorCode, FrameError, ServerMessage, PROTOCOL_VERSION,
};
use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedReadHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::access::Access;
use crate::engine::{Command, ConnId, Outgoing};

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one connection until the client leaves or breaks the protocol.
pub async fn serve(
    stream: UnixStream,
    conn: ConnId,
    engine: std_mpsc::Sender<Command>,
    access: Arc<Access>,
    max_frame: u32,
) {
    let peer = stream.peer_cred().map(|c| (c.uid(), c.gid()));
    let (mut reader, mut writer) = stream.into_split();
    let (out, mut out_rx) = mpsc::unbounded_channel::<Outgoing>();
    let writer_task = tokio::spawn(async move {
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
    let send = |msg: ServerMessage| {
        let _ = out.send(Outgoing::Msg(msg));
    };
    let fail = |code: ErrorCode, message: String| {
        tracing::debug!(conn, code = code.as_str(), %message, "closing connection");
        let _ = out.send(Outgoing::Msg(ServerMessage::Error {
            id: None,
            code,
            message,
        }));
        let _ = out.send(Outgoing::Close);
    };

    let allowed = match peer {
        Ok((uid, gid)) => {
            let ok = access.allows(uid, gid);
            if !ok && access.first_refusal(uid) {
                tracing::warn!(
                    uid,
                    gid,
                    "refused a connection from a peer that is not allowed"
                );
            }
            ok
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read peer credentials; refusing");
            false
        }
    };
    if !allowed {
        fail(
            ErrorCode::Unauthorized,
            "this user may not use this batchd (see allow_uids / allow_group)".into(),
        );
    } else {
        handshake_and_serve(&mut reader, &out, conn, &engine, max_frame, &send, &fail).await;
    }
    // Whatever the client had running is cancelled; its slots free up at the next step.
    let _ = engine.send(Command::ConnClosed { conn });
    let _ = out.send(Outgoing::Close);
    drop(out);
    let _ = writer_task.await;
}

async fn handshake_and_serve(
    reader: &mut OwnedReadHalf,
    out: &mpsc::UnboundedSender<Outgoing>,
    conn: ConnId,
    engine: &std_mpsc::Sender<Command>,
    max_frame: u32,
    send: &impl Fn(ServerMessage),
    fail: &impl Fn(ErrorCode, String),
) {
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut *reader, max_frame)).await;
    match hello {
        Ok(Ok(Some(ClientMessage::Hello { version, .. }))) if version == PROTOCOL_VERSION => {
            send(ServerMessage::Hello {
                version: PROTOCOL_VERSION,
                server: format!("batchd {}", env!("CARGO_PKG_VERSION")),
            });
        }
        Ok(Ok(Some(ClientMessage::Hello { version, .. }))) => {
            return fail(
                ErrorCode::VersionMismatch,
                format!("this daemon speaks protocol {PROTOCOL_VERSION}, the client {version}"),
            )
        }
        Ok(Ok(Some(_))) => {
            return fail(
                ErrorCode::ProtocolViolation,
                "the first frame must be a hello".into(),
            )
        }
        Ok(Ok(None)) => return,
        Ok(Err(e)) => return fail(frame_error_code(&e), e.to_string()),
        Err(_) => return fail(ErrorCode::ProtocolViolation, "no hello within 10 s".into()),
    }
    loop {
        match read_frame::<_, ClientMessage>(&mut *reader, max_frame).await {
            Ok(Some(ClientMessage::Generate { id, request })) => {
                let cmd = Command::Submit {
                    conn,
                    id,
                    request: Box::new(request),
                    out: out.clone(),
                    received: Instant::now(),
                };
                if engine.send(cmd).is_err() {
                    fail(ErrorCode::ShuttingDown, "the engine has stopped".into());
                    break;
                }
            }
            Ok(Some(ClientMessage::Cancel { id })) => {
                let _ = engine.send(Command::Cancel { conn, id });
            }
            Ok(Some(ClientMessage::Status)) => {
                let _ = engine.send(Command::Status { out: out.clone() });
            }
            Ok(Some(ClientMessage::Trace)) => {
                let _ = engine.send(Command::Trace { out: out.clone() });
            }
            Ok(Some(ClientMessage::Hello { .. })) => {
                fail(ErrorCode::ProtocolViolation, "hello sent twice".into());
                break;
            }
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!(conn, error = %e, "connection read failed");
                break;
            }
            Err(e) => {
                fail(frame_error_code(&e), e.to_string());
                break;
            }
        }
    }
}

fn frame_error_code(e: &FrameError) -> ErrorCode {
    match e {
        FrameError::TooLarge { .. } => ErrorCode::FrameTooLarge,
        _ => ErrorCode::BadFrame,
    }
}
