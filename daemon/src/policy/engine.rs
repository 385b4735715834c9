//! The seam between the policy and whatever runs the model.

use batchd_protocol::Sampling;

use super::Logprobs;

/// A token id.
pub type Token = u32;

/// One token of a step's batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchToken {
    pub token: Token,
    /// Position within its own sequence.
    pub pos: u32,
    /// Slot, which is also the sequence id in the KV cache.
    pub slot: usize,
    /// Whether a token will be sampled from this position's logits.
    pub logits: bool,
}

/// Every token of one step: one forward pass over all active sequences.
#[derive(Clone, Debug, Default)]
pub struct StepBatch {
    pub tokens: Vec<BatchToken>,
}

/// Names a KV snapshot that the engine holds for the prefix cache.
pub type SnapshotId = u64;

/// Why a step's forward pass failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EngineError {
    /// The KV cache has no room for this batch; nothing was computed.
    #[error("the KV cache has no room for this batch")]
    KvFull,
    /// Anything else; the batch's sequences cannot go on.
    #[error("decode failed: {0}")]
    Failed(String),
}

/// What the policy and the router need from a model runner.
pub trait Engine {
    /// Prompt text to tokens; an empty prompt starts from the beginning-of-text token.
    fn tokenize(&self, text: &str) -> Vec<Token>;
    /// Runs one forward pass over `batch`, extending each slot's KV.
    fn decode(&mut self, batch: &StepBatch) -> Result<(), EngineError>;
    /// Prepares `slot` for a new sequence sampled with `sampling`; with `logprobs` its
    /// logits must stay readable by [`Engine::logprobs`] after each decode.
    fn begin(&mut self, slot: usize, sampling: &Sampling, logprobs: bool);
    /// Picks the next token of `slot` from the logits of batch entry `batch_index`
    /// of the last decode.
    fn sample(&mut self, slot: usize, batch_index: usize) -> Token;
    /// The log-probabilities of `chosen` and of the `top` most likely tokens at batch
    /// entry `batch_index` of the last decode (see [`super::logprobs`]). Asked only for
    /// slots begun with `logprobs`.
    fn logprobs(&self, batch_index: usize, chosen: Token, top: usize) -> Logprobs;
    /// Forgets `slot`'s sequence: its KV cells and sampler state.
    fn release(&mut self, slot: usize);
    /// True for end-of-generation tokens.
    fn is_eog(&self, token: Token) -> bool;
    /// Appends the bytes `token` stands for to `out`.
    fn token_bytes(&self, token: Token, out: &mut Vec<u8>);
    /// Copies `slot`'s KV cells (every position it holds) out of the cache into a snapshot
    /// named `id`; returns its size in bytes, or `None` where the engine cannot.
    fn save(&mut self, slot: usize, id: SnapshotId) -> Option<usize> {
        let _ = (slot, id);
        None
    }
    /// Writes snapshot `id` into `slot`, which has just begun, keeping its first `len`
    /// positions. False if it could not (the slot then holds nothing).
    fn restore(&mut self, slot: usize, id: SnapshotId, len: u32) -> bool {
        let _ = (slot, id, len);
        false
    }
    /// Drops snapshot `id`.
    fn forget(&mut self, id: SnapshotId) {
        let _ = id;
    }
    /// What one more forward pass in a step costs, in prompt tokens: the engine pads a
    /// prompt's last chunk by up to that many tokens to join a pass of longer chunks, and
    /// the policy shapes a step's chunks to spare passes worth it. 0: a step's passes do
    /// not depend on its chunk lengths.
    fn pass_tokens(&self) -> usize {
        0
    }
    /// Forward passes (micro-batches) the last decode ran as: a step is meant to be one,
    /// but a backend may have to split it.
    fn passes(&self) -> u32 {
        1
    }
    /// Tokens picked on the device so far (for status; 0 where nothing is).
    fn device_sampled_tokens(&self) -> u64 {
        0
    }
}

/// Whether a prompt chunk of `n` tokens may be padded with `pad` tokens to the length of
/// a longer chunk in its step, so that both take one pass, where a pass costs `max_pad`
/// prompt tokens ([`Engine::pass_tokens`]): only a chunk that `ends` its prompt (nothing
/// attends past it), and of more than one token (one token rides the pass every
/// sequence shares anyway). The engine pads by this rule, and the policy shapes chunks
/// by it.
pub fn may_pad(n: usize, ends: bool, pad: usize, max_pad: usize) -> bool {
    ends && n > 1 && pad <= max_pad
}
