//! One request in flight: its events, its cancellation, its collected result.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use batchd_protocol::{ClientMessage, Done, ErrorCode, FinishReason, RequestId, TokenLogprobs};
use tokio::sync::mpsc;

use crate::connection::{Item, Lost, Shared};
use crate::error::ClientError;

/// Something that happened to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A generated token (streaming requests only); `text` may be empty while bytes of a
    /// multi-byte character are held back.
    Token {
        /// Token id.
        token: u32,
        /// New complete text it releases.
        text: String,
        /// Its log-probabilities, when the request asked for them.
        logprobs: Option<TokenLogprobs>,
    },
    /// The request finished; nothing follows.
    Done(Done),
    /// The request was refused or failed, or the connection ended under it (then `code` is
    /// the connection-level error's, or [`ErrorCode::Internal`] if the stream just
    /// closed); nothing follows.
    Error {
        /// Stable error code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
}

/// The whole result of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// Generated text (without the prompt).
    pub text: String,
    /// Generated token ids.
    pub tokens: Vec<u32>,
    /// One per token when the request asked for logprobs, else empty.
    pub logprobs: Vec<TokenLogprobs>,
    /// The daemon's final record.
    pub done: Done,
}

impl Completion {
    /// Why generation ended.
    pub fn finish_reason(&self) -> FinishReason {
        self.done.finish_reason
    }
}

/// A request in flight, returned by [`Client::generate`](crate::Client::generate).
///
/// Dropping it before its `Done` or `Error` arrived cancels the request.
#[derive(Debug)]
pub struct Generation {
    rx: mpsc::UnboundedReceiver<Item>,
    handle: CancelHandle,
    finished: bool,
    /// Text and tokens streamed so far, for [`Generation::collect`].
    text: String,
    tokens: Vec<u32>,
    logprobs: Vec<TokenLogprobs>,
}

impl Generation {
    pub(crate) fn new(
        id: RequestId,
        rx: mpsc::UnboundedReceiver<Item>,
        tx: mpsc::UnboundedSender<ClientMessage>,
        shared: Arc<Shared>,
    ) -> Self {
        Self {
            rx,
            handle: CancelHandle {
                id,
                tx,
                shared,
                sent: Arc::new(AtomicBool::new(false)),
            },
            finished: false,
            text: String::new(),
            tokens: Vec::new(),
            logprobs: Vec::new(),
        }
    }

    /// The id of this request on its connection.
    pub fn id(&self) -> RequestId {
        self.handle.id
    }

    /// The next event, or `None` after the final `Done` or `Error` has been returned.
    pub async fn next(&mut self) -> Option<Event> {
        match self.next_item().await? {
            Item::Event(ev) => Some(ev),
            Item::Lost(lost) => Some(lost.to_event()),
        }
    }

    async fn next_item(&mut self) -> Option<Item> {
        if self.finished {
            return None;
        }
        let item = self.rx.recv().await.unwrap_or_else(|| {
            // The sender went without a word; only possible if the connection broke.
            Item::Lost(Lost::Disconnected("request abandoned".into()))
        });
        match &item {
            Item::Event(Event::Token {
                token,
                text,
                logprobs,
            }) => {
                self.tokens.push(*token);
                self.text.push_str(text);
                self.logprobs.extend(logprobs.clone());
            }
            _ => self.finished = true,
        }
        Some(item)
    }

    /// Asks the daemon to stop this request; it then ends with a `Done` whose finish
    /// reason is `cancelled` (or its normal end, if that came first). Only the first call
    /// sends anything; after the end it does nothing.
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// A handle that can cancel this request from elsewhere (another task, a signal
    /// handler).
    pub fn cancel_handle(&self) -> CancelHandle {
        self.handle.clone()
    }

    /// Waits for the end and returns the whole result, for streaming and non-streaming
    /// requests alike: every streamed piece (including those already returned by
    /// [`Generation::next`]) plus [`Done::final_text`], or [`Done::output`] when present.
    /// A request-level (or connection-level) error from the daemon becomes
    /// [`ClientError::Server`]; a lost connection [`ClientError::Disconnected`].
    pub async fn collect(mut self) -> Result<Completion, ClientError> {
        loop {
            match self.next_item().await {
                Some(Item::Event(Event::Token { .. })) => {}
                Some(Item::Event(Event::Done(done))) => {
                    let (text, tokens, logprobs) = match &done.output {
                        Some(out) => (out.text.clone(), out.tokens.clone(), out.logprobs.clone()),
                        None => {
                            let mut text = std::mem::take(&mut self.text);
                            text.push_str(&done.final_text);
                            let tokens = std::mem::take(&mut self.tokens);
                            (text, tokens, std::mem::take(&mut self.logprobs))
                        }
                    };
                    return Ok(Completion {
                        text,
                        tokens,
                        logprobs,
                        done,
                    });
                }
                Some(Item::Event(Event::Error { code, message })) => {
                    return Err(ClientError::Server { code, message })
                }
                Some(Item::Lost(lost)) => return Err(lost.to_error()),
                None => {
                    return Err(ClientError::Protocol(
                        "collect called after the request ended".into(),
                    ))
                }
            }
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        // Forget the request, and cancel it if the daemon is still working on it.
        if self.handle.shared.forget(self.handle.id) {
            self.handle.send_cancel();
        }
    }
}

/// Cancels one request; cheap to clone, usable from any task.
#[derive(Clone, Debug)]
pub struct CancelHandle {
    id: RequestId,
    tx: mpsc::UnboundedSender<ClientMessage>,
    shared: Arc<Shared>,
    sent: Arc<AtomicBool>,
}

impl CancelHandle {
    /// The id of the request.
    pub fn id(&self) -> RequestId {
        self.id
    }

    /// Same as [`Generation::cancel`].
    pub fn cancel(&self) {
        if self.shared.is_open(self.id) {
            self.send_cancel();
        }
    }

    fn send_cancel(&self) {
        if !self.sent.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(ClientMessage::Cancel { id: self.id });
        }
    }
}
