//! A request as the scheduler receives it, and why it may refuse one.

use std::time::Instant;

use batchd_protocol::{ErrorCode, Sampling};

use super::Token;

/// The daemon-wide id of a request (connections map their own ids onto these).
pub type RequestKey = u64;

/// A tokenized request waiting for a slot.
#[derive(Clone, Debug)]
pub struct Submission {
    pub key: RequestKey,
    pub prompt: Vec<Token>,
    pub max_tokens: u32,
    pub sampling: Sampling,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    /// Alternatives to report with each token's log-probability (`None`: no logprobs).
    pub logprobs: Option<u8>,
    /// When the daemon accepted it; all timings count from here.
    pub received: Instant,
}

/// Why the scheduler refused a submission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the queue is full ({0} requests waiting); try again later")]
    Busy(usize),
    #[error("the prompt has {tokens} tokens but a sequence holds at most {max} positions")]
    PromptTooLong { tokens: usize, max: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

impl Rejection {
    /// The protocol error code for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Rejection::Busy(_) => ErrorCode::Busy,
            Rejection::PromptTooLong { .. } => ErrorCode::PromptTooLong,
            Rejection::Invalid(_) => ErrorCode::InvalidRequest,
            Rejection::ShuttingDown => ErrorCode::ShuttingDown,
        }
    }
}
