//! What the scheduler reports after a step.

use batchd_protocol::{Done, TokenLogprobs};

use super::{RequestKey, Token};

/// Something a request's client should hear about.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A generated token and the text it completes (possibly empty), with its
    /// log-probabilities when the request asked for them.
    Token {
        key: RequestKey,
        token: Token,
        text: String,
        logprobs: Option<TokenLogprobs>,
    },
    /// The request finished; its slot is already free.
    Done { key: RequestKey, done: Done },
    /// The request failed inside the engine; its slot is already free.
    Failed { key: RequestKey, message: String },
}

/// Whether a sequence's tokens in a step are prompt or one decoded token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqKind {
    /// `n` prompt tokens.
    Prefill(u32),
    /// One token fed back after sampling.
    Decode,
}

/// One sequence's part of a step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepEntry {
    pub slot: usize,
    pub key: RequestKey,
    pub kind: SeqKind,
    /// First position of its tokens in this step.
    pub pos: u32,
    /// Positions `0..reused` came from the prefix cache (prefill only).
    pub reused: u32,
}

/// What one step held (what `batchctl trace` will show).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StepReport {
    /// Step number, from 1.
    pub step: u64,
    pub entries: Vec<StepEntry>,
    /// Tokens in the batch.
    pub n_tokens: usize,
    /// Forward passes the engine ran the batch as.
    pub passes: u32,
}
