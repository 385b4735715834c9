//! The HTTP API's one coupling to the engine: requests go in through the same command
//! channel the socket connections use (so validation, scheduling, cancellation and
//! streaming are shared), each HTTP request acting as a pseudo-connection of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use batchd_protocol::{Done, ErrorCode, GenerateRequest, ServerMessage, StatusReport, StepTrace};
use tokio::sync::mpsc;

use super::error::ApiError;
use crate::engine::{Command, ConnId, Outgoing};

/// Pseudo-connection ids count up from here; the socket server counts up from 1, so the
/// two never meet.
const FIRST_HTTP_CONN: ConnId = 1 << 62;

/// The engine, as the HTTP handlers see it.
#[derive(Clone)]
pub struct Engine {
    commands: std_mpsc::Sender<Command>,
    next_conn: std::sync::Arc<AtomicU64>,
}

/// What happens to one prompt of a submission; `index` is its place in the request (a
/// refusal ends the whole submission, so it needs none).
#[derive(Debug)]
pub enum Event {
    Token { index: usize, text: String },
    Done { index: usize, done: Done },
    Failed { error: ApiError },
}

/// Prompts submitted together; dropping it cancels whichever are still running (a
/// client that hung up stops costing slots at the next step).
pub struct Submission {
    conn: ConnId,
    commands: std_mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<Outgoing>,
}

impl Engine {
    pub fn new(commands: std_mpsc::Sender<Command>) -> Self {
        Self {
            commands,
            next_conn: std::sync::Arc::new(AtomicU64::new(FIRST_HTTP_CONN)),
        }
    }

    /// Submits every request at once, so they can start in the same step.
    pub fn submit(&self, requests: Vec<GenerateRequest>) -> Result<Submission, ApiError> {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out, events) = mpsc::unbounded_channel();
        let received = Instant::now();
        for (id, request) in requests.into_iter().enumerate() {
            let cmd = Command::Submit {
                conn,
                id: id as u64,
                request: Box::new(request),
                out: out.clone(),
                received,
            };
            if self.commands.send(cmd).is_err() {
                return Err(stopped());
            }
        }
        Ok(Submission {
            conn,
            commands: self.commands.clone(),
            events,
        })
    }

    /// The engine's status report (slots, queue, counters).
    pub async fn status(&self) -> Result<StatusReport, ApiError> {
        let (out, mut rx) = mpsc::unbounded_channel();
        self.commands
            .send(Command::Status { out })
            .map_err(|_| stopped())?;
        match rx.recv().await {
            Some(Outgoing::Msg(ServerMessage::Status(report))) => Ok(report),
            _ => Err(stopped()),
        }
    }

    /// Every step's trace from now on, until the receiver is dropped.
    pub fn trace(&self) -> Option<mpsc::UnboundedReceiver<StepTrace>> {
        let (out, mut rx) = mpsc::unbounded_channel();
        self.commands.send(Command::Trace { out }).ok()?;
        let (tx, steps) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                if let Outgoing::Msg(ServerMessage::Step(step)) = item {
                    if tx.send(step).is_err() {
                        break; // dropping rx unsubscribes at the next step
                    }
                }
            }
        });
        Some(steps)
    }
}

impl Submission {
    /// The next event of any of its prompts; `None` once the engine has let go of them all.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            let Outgoing::Msg(msg) = self.events.recv().await? else {
                continue;
            };
            return Some(match msg {
                ServerMessage::Token { id, text, .. } => Event::Token {
                    index: id as usize,
                    text,
                },
                ServerMessage::Done { id, done } => Event::Done {
                    index: id as usize,
                    done,
                },
                ServerMessage::Error {
                    id: Some(_),
                    code,
                    message,
                } => Event::Failed {
                    error: ApiError::from_engine(code, message),
                },
                _ => continue,
            });
        }
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::ConnClosed { conn: self.conn });
    }
}

fn stopped() -> ApiError {
    ApiError::from_engine(ErrorCode::ShuttingDown, "the engine has stopped".into())
}
