//! The HTTP API's one coupling to the engine: requests go in through the same command
//! channel the socket connections use (so validation, scheduling, cancellation and
//! streaming are shared), each HTTP request acting as a pseudo-connection of its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Instant;

use batchd_protocol::{Done, ErrorCode, GenerateRequest, StatusReport, StepTrace, TokenLogprobs};
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use crate::router::{ClientId, Command, RequestEvent, Submit};

/// Pseudo-client ids count up from here; the socket server counts up from 1, so the two
/// never meet.
const FIRST_HTTP_CLIENT: ClientId = 1 << 62;

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
    Token {
        index: usize,
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    Done {
        index: usize,
        done: Done,
    },
    Failed {
        error: ApiError,
    },
}

/// Prompts submitted together; dropping it cancels whichever are still running (a
/// client that hung up stops costing slots at the next step).
pub struct Submission {
    client: ClientId,
    commands: std_mpsc::Sender<Command>,
    events: mpsc::UnboundedReceiver<(usize, RequestEvent)>,
}

impl Engine {
    pub fn new(commands: std_mpsc::Sender<Command>) -> Self {
        Self {
            commands,
            next_conn: std::sync::Arc::new(AtomicU64::new(FIRST_HTTP_CLIENT)),
        }
    }

    /// Submits every request at once, so they can start in the same step.
    pub fn submit(&self, requests: Vec<GenerateRequest>) -> Result<Submission, ApiError> {
        let client = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (out, events) = mpsc::unbounded_channel();
        let received = Instant::now();
        for (index, request) in requests.into_iter().enumerate() {
            let out = out.clone();
            let cmd = Command::Submit(Box::new(Submit {
                client,
                id: index as u64,
                request,
                received,
                events: Box::new(move |event| out.send((index, event)).is_ok()),
            }));
            if self.commands.send(cmd).is_err() {
                return Err(stopped());
            }
        }
        Ok(Submission {
            client,
            commands: self.commands.clone(),
            events,
        })
    }

    /// The engine's status report (slots, queue, counters).
    pub async fn status(&self) -> Result<StatusReport, ApiError> {
        let (reply, report) = oneshot::channel();
        self.commands
            .send(Command::Status(Box::new(move |r| {
                let _ = reply.send(r);
            })))
            .map_err(|_| stopped())?;
        report.await.map_err(|_| stopped())
    }

    /// Every step's trace from now on, until the receiver is dropped.
    pub fn trace(&self) -> Option<mpsc::UnboundedReceiver<StepTrace>> {
        let (tx, steps) = mpsc::unbounded_channel();
        // Dropping the receiver unsubscribes at the next step.
        let sink = Box::new(move |step: &StepTrace| tx.send(step.clone()).is_ok());
        self.commands.send(Command::Trace(sink)).ok()?;
        Some(steps)
    }
}

impl Submission {
    /// The next event of any of its prompts; `None` once the engine has let go of them all.
    pub async fn next(&mut self) -> Option<Event> {
        let (index, event) = self.events.recv().await?;
        Some(match event {
            RequestEvent::Token { text, logprobs, .. } => Event::Token {
                index,
                text,
                logprobs,
            },
            RequestEvent::Done(done) => Event::Done { index, done },
            RequestEvent::Error { code, message } => Event::Failed {
                error: ApiError::from_engine(code, message),
            },
        })
    }
}

impl Drop for Submission {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::ClientGone {
            client: self.client,
        });
    }
}

fn stopped() -> ApiError {
    ApiError::from_engine(ErrorCode::ShuttingDown, "the engine has stopped".into())
}
