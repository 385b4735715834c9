//! One running request: its slot, its place in the prompt, and what it generated.

use std::time::Instant;

use batchd_protocol::{Done, FinishReason, StepSpan, Timings, TokenLogprobs, Usage};

use super::{Event, RequestKey, Submission, Token};
use crate::text::{StopMatcher, StopOutcome, Utf8Stream};

/// A request that holds a slot.
#[derive(Debug)]
pub(super) struct Sequence {
    pub key: RequestKey,
    pub slot: usize,
    pub prompt: Vec<Token>,
    /// Tokens already in the KV cache (= position of the next token fed).
    pub n_past: u32,
    /// Positions `0..cached` came from the prefix cache.
    pub cached: u32,
    /// Generated tokens, in order (each is fed back after it is sampled).
    pub output: Vec<Token>,
    pub generated: u32,
    pub max_tokens: u32,
    pub ignore_eos: bool,
    /// Alternatives reported with each token's log-probability (`None`: no logprobs).
    pub logprobs: Option<u8>,
    /// Set when the client cancelled; the sequence ends at the next step boundary.
    pub cancelled: bool,
    /// Admission order, for fairness and for choosing whom to end when the KV is full.
    pub admitted_seq: u64,
    utf8: Utf8Stream,
    stop: StopMatcher,
    received: Instant,
    admitted_at: Instant,
    first_token_at: Option<Instant>,
    steps: StepSpan,
}

/// A token just sampled for a sequence.
pub(super) struct Sampled<'a> {
    pub token: Token,
    pub is_eog: bool,
    /// The bytes it stands for (none for end-of-generation tokens).
    pub bytes: &'a [u8],
    /// When the request asked for them.
    pub logprobs: Option<TokenLogprobs>,
}

/// What happened to a sequence after it was given a token.
pub(super) enum Progress {
    /// It goes on, decoding the token next.
    Running,
    Finished(FinishReason),
}

impl Sequence {
    pub fn admit(sub: Submission, slot: usize, step: u64, admitted_seq: u64) -> Self {
        Self {
            key: sub.key,
            slot,
            prompt: sub.prompt,
            n_past: 0,
            cached: 0,
            output: Vec::new(),
            generated: 0,
            max_tokens: sub.max_tokens,
            ignore_eos: sub.ignore_eos,
            logprobs: sub.logprobs,
            cancelled: false,
            admitted_seq,
            utf8: Utf8Stream::default(),
            stop: StopMatcher::new(&sub.stop),
            received: sub.received,
            admitted_at: Instant::now(),
            first_token_at: None,
            steps: StepSpan {
                admitted: step,
                ..StepSpan::default()
            },
        }
    }

    /// The tokens whose KV this sequence holds, by position.
    pub fn kv_tokens(&self) -> Vec<Token> {
        let n = self.n_past as usize;
        let from_prompt = n.min(self.prompt.len());
        let mut tokens = self.prompt[..from_prompt].to_vec();
        tokens.extend_from_slice(&self.output[..n - from_prompt]);
        tokens
    }

    /// Prompt tokens not yet in the KV cache.
    pub fn prompt_left(&self) -> u32 {
        self.prompt.len() as u32 - self.n_past.min(self.prompt.len() as u32)
    }

    /// Handles a freshly sampled token: emits it and decides whether the sequence ends.
    /// `max_positions` is how many positions the sequence may occupy.
    pub fn on_sampled(
        &mut self,
        sampled: Sampled,
        step: u64,
        max_positions: u32,
        events: &mut Vec<Event>,
    ) -> Progress {
        let Sampled {
            token,
            is_eog,
            bytes,
            logprobs,
        } = sampled;
        if self.first_token_at.is_none() {
            self.first_token_at = Some(Instant::now());
            self.steps.first_token = step;
        }
        if is_eog && !self.ignore_eos {
            return Progress::Finished(FinishReason::Eos);
        }
        self.generated += 1;
        self.output.push(token);
        let decoded = self.utf8.push(bytes);
        let (text, stopped) = match self.stop.push(&decoded) {
            StopOutcome::Continue(t) => (t, false),
            StopOutcome::Stopped(t) => (t, true),
        };
        events.push(Event::Token {
            key: self.key,
            token,
            text,
            logprobs,
        });
        if stopped {
            Progress::Finished(FinishReason::Stop)
        } else if self.generated >= self.max_tokens {
            Progress::Finished(FinishReason::Length)
        } else if self.n_past >= max_positions {
            Progress::Finished(FinishReason::Context)
        } else {
            Progress::Running
        }
    }

    /// The final record, releasing held-back text unless a stop string ended it.
    pub fn finish(mut self, reason: FinishReason, step: u64) -> Done {
        let final_text = if reason == FinishReason::Stop {
            String::new()
        } else {
            let tail = self.utf8.finish();
            let mut text = match self.stop.push(&tail) {
                StopOutcome::Continue(t) | StopOutcome::Stopped(t) => t,
            };
            text.push_str(&self.stop.finish());
            text
        };
        let now = Instant::now();
        let ms = |t: Instant| t.duration_since(self.received).as_secs_f64() * 1e3;
        self.steps.finished = step;
        Done {
            finish_reason: reason,
            usage: Usage {
                prompt_tokens: self.prompt.len() as u32,
                completion_tokens: self.generated,
                cached_tokens: self.cached,
            },
            timings: Timings {
                queue_ms: ms(self.admitted_at),
                ttft_ms: self.first_token_at.map(ms).unwrap_or(0.0),
                total_ms: ms(now),
            },
            steps: self.steps,
            output: None,
            final_text,
        }
    }
}
