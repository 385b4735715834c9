//! A connection to the daemon, multiplexing many requests.
//!
//! [`Client::connect`] does the hello handshake, then splits the socket between two tasks:
//! a writer fed by an unbounded channel of [`ClientMessage`]s (so a [`Generation`] can
//! send `Cancel` from `Drop`), and a reader that routes each [`ServerMessage`] by id to the
//! channel of the request it belongs to (and step traces to every [`TraceStream`]). When
//! the connection ends, every open request and trace stream gets an error and every later
//! call fails at once.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use batchd_protocol::frame::encode_frame;
use batchd_protocol::{
    read_frame, write_frame, ClientMessage, ErrorCode, GenerateRequest, ServerMessage,
    StatusReport, DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION,
};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::connection::{Lost, Shared};
use crate::error::ClientError;
use crate::generation::Generation;
use crate::trace::TraceStream;

/// How long the daemon may take to answer the hello.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The name this library introduces itself with unless told otherwise.
pub const DEFAULT_CLIENT_NAME: &str = concat!("batchctl/", env!("CARGO_PKG_VERSION"));

/// A connection to `batchd`. Cheap to clone: clones share the connection, and it stays
/// open while any clone or any unfinished [`Generation`] is alive.
#[derive(Clone, Debug)]
pub struct Client {
    tx: mpsc::UnboundedSender<ClientMessage>,
    shared: Arc<Shared>,
    info: Arc<Info>,
}

#[derive(Debug)]
struct Info {
    path: PathBuf,
    server: String,
}

impl Client {
    /// Connects to the daemon's socket at `path` and does the hello handshake.
    ///
    /// Must be called within a Tokio runtime (it spawns the reader and writer tasks).
    pub async fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        Self::connect_as(path, DEFAULT_CLIENT_NAME).await
    }

    /// Like [`Client::connect`], introducing itself as `client_name`.
    pub async fn connect_as(
        path: impl AsRef<Path>,
        client_name: &str,
    ) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.to_path_buf(),
                source,
            })?;
        let (rd, mut wr) = stream.into_split();
        let mut rd = BufReader::new(rd);
        let server = handshake(&mut rd, &mut wr, client_name).await?;

        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(rd, shared.clone()));
        tokio::spawn(write_loop(wr, rx, shared.clone()));
        Ok(Client {
            tx,
            shared,
            info: Arc::new(Info {
                path: path.to_path_buf(),
                server,
            }),
        })
    }

    /// The socket this client is connected to.
    pub fn socket_path(&self) -> &Path {
        &self.info.path
    }

    /// What the daemon called itself in its hello.
    pub fn server(&self) -> &str {
        &self.info.server
    }

    /// True once the connection has ended; every call then fails.
    pub fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// Submits a request and returns the handle its events arrive on. It is sent at once;
    /// many may be in flight on one connection.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Generation, ClientError> {
        let (etx, erx) = mpsc::unbounded_channel();
        let id = self.shared.open_request(etx)?;
        if self
            .tx
            .send(ClientMessage::Generate { id, request })
            .is_err()
        {
            self.shared.forget(id);
            return Err(self.shared.closed_error());
        }
        Ok(Generation::new(
            id,
            erx,
            self.tx.clone(),
            self.shared.clone(),
        ))
    }

    /// Asks the daemon for its status.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        let (otx, orx) = oneshot::channel();
        self.shared
            .wait_status(otx, || self.tx.send(ClientMessage::Status).is_ok())?;
        orx.await
            .unwrap_or_else(|_| Err(self.shared.closed_error()))
    }

    /// Subscribes to the daemon's step traces: the returned stream yields a [`StepTrace`]
    /// for every engine step from now on. The connection subscribes once (the protocol
    /// has no unsubscribe); further calls just add local streams. The stream keeps the
    /// connection open while it lives.
    pub async fn trace(&self) -> Result<TraceStream, ClientError> {
        let (stx, srx) = mpsc::unbounded_channel();
        self.shared
            .add_tracer(stx, || self.tx.send(ClientMessage::Trace).is_ok())?;
        Ok(TraceStream::new(srx, self.tx.clone(), self.shared.clone()))
    }
}

/// Sends the hello and reads the answer; returns the server's name.
async fn handshake(
    rd: &mut BufReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    client_name: &str,
) -> Result<String, ClientError> {
    let hello = ClientMessage::Hello {
        version: PROTOCOL_VERSION,
        client: client_name.to_string(),
    };
    // Even if writing fails, read: the daemon may have sent its refusal and closed.
    let wrote = write_frame(wr, &hello).await;
    let reply = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        read_frame::<_, ServerMessage>(rd, DEFAULT_MAX_FRAME_BYTES),
    )
    .await
    .map_err(|_| {
        ClientError::Protocol(format!(
            "no answer to hello within {} s",
            HANDSHAKE_TIMEOUT.as_secs()
        ))
    })?;
    match reply {
        Ok(Some(ServerMessage::Error { code, message, .. })) => {
            Err(ClientError::Server { code, message })
        }
        Ok(Some(ServerMessage::Hello { version, server })) => {
            wrote?;
            if version == PROTOCOL_VERSION {
                Ok(server)
            } else {
                Err(ClientError::Server {
                    code: ErrorCode::VersionMismatch,
                    message: format!(
                        "{server} speaks protocol version {version}, this client {PROTOCOL_VERSION}"
                    ),
                })
            }
        }
        Ok(Some(other)) => Err(ClientError::Protocol(format!(
            "expected a hello, got {}",
            kind(&other)
        ))),
        Ok(None) => {
            wrote?;
            Err(ClientError::Disconnected(
                "batchd closed the connection during the handshake".into(),
            ))
        }
        Err(e) => {
            wrote?;
            Err(e.into())
        }
    }
}

fn kind(msg: &ServerMessage) -> &'static str {
    match msg {
        ServerMessage::Hello { .. } => "hello",
        ServerMessage::Token { .. } => "token",
        ServerMessage::Done { .. } => "done",
        ServerMessage::Error { .. } => "error",
        ServerMessage::Status(_) => "status",
        ServerMessage::Step(_) => "step",
    }
}

/// Reads frames until the connection ends, routing each to its waiter.
async fn read_loop(mut rd: BufReader<OwnedReadHalf>, shared: Arc<Shared>) {
    let lost = loop {
        match read_frame::<_, ServerMessage>(&mut rd, DEFAULT_MAX_FRAME_BYTES).await {
            Ok(Some(msg)) => {
                if let Some(lost) = shared.dispatch(msg) {
                    break lost;
                }
            }
            Ok(None) => break Lost::Disconnected("batchd closed the connection".into()),
            Err(e) => break Lost::Disconnected(e.to_string()),
        }
    };
    shared.fail(lost);
}

/// Writes queued messages until every sender is gone (then the write half is shut down,
/// which tells the daemon we are done) or writing fails.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<ClientMessage>,
    shared: Arc<Shared>,
) {
    let mut buf = Vec::new();
    while let Some(msg) = rx.recv().await {
        buf.clear();
        // Coalesce whatever is already queued into one write.
        let mut next = Some(msg);
        while let Some(msg) = next {
            match encode_frame(&msg) {
                Ok(bytes) => buf.extend_from_slice(&bytes),
                Err(e) => {
                    shared.fail(Lost::Disconnected(e.to_string()));
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = wr.write_all(&buf).await {
            shared.fail(Lost::Disconnected(format!("write failed: {e}")));
            return;
        }
    }
    let _ = wr.shutdown().await;
}
