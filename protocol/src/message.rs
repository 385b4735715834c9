//! Messages exchanged over a connection.

use serde::{Deserialize, Serialize};

/// A client-chosen id naming one request on one connection.
pub type RequestId = u64;

/// Everything a client may send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClientMessage {
    /// First frame of every connection.
    Hello { version: u32, client: String },
    /// Start generating; events for it carry `id`.
    Generate {
        id: RequestId,
        request: GenerateRequest,
    },
    /// Stop request `id`; it ends with finish reason `cancelled`.
    Cancel { id: RequestId },
    /// Ask for a [`StatusReport`].
    Status,
    /// Receive a [`ServerMessage::Step`] for every engine step from now on, until the
    /// connection closes. Tracing costs the engine nothing while nobody subscribes.
    Trace,
}

/// Everything the daemon may send.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ServerMessage {
    /// Answer to the client's hello.
    Hello { version: u32, server: String },
    /// One generated token (only for streaming requests). `text` holds the new complete
    /// UTF-8 text it releases, which may be empty while bytes are held back.
    Token {
        id: RequestId,
        token: u32,
        text: String,
        /// Present when the request asked for [`GenerateRequest::logprobs`].
        logprobs: Option<TokenLogprobs>,
    },
    /// The request finished.
    Done { id: RequestId, done: Done },
    /// Something went wrong; `id` is `None` for connection-level errors.
    Error {
        id: Option<RequestId>,
        code: ErrorCode,
        message: String,
    },
    /// Answer to [`ClientMessage::Status`].
    Status(StatusReport),
    /// What one engine step held (for subscribers of [`ClientMessage::Trace`]).
    Step(StepTrace),
}

/// One engine step: one forward pass over every active sequence's pending tokens.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepTrace {
    /// Step number, from 1.
    pub step: u64,
    /// Tokens in the batch.
    pub n_tokens: u32,
    /// Forward passes (llama.cpp micro-batches) the step ran as.
    pub passes: u32,
    /// Each sequence's part of the batch, in batch order.
    pub sequences: Vec<StepSequence>,
    /// Wall time of the whole step (batch build, decode, sampling), in microseconds.
    pub micros: u64,
}

/// One sequence's tokens in a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepSequence {
    pub slot: u32,
    /// The daemon-wide request number (not the client's id).
    pub request: u64,
    /// `n` prompt tokens (`prefill`) or one fed-back token (`decode`).
    pub prefill: Option<u32>,
    /// Position of its first token in this step.
    pub pos: u32,
    /// Positions `0..reused` of a prefilling sequence came from the prefix cache.
    pub reused: u32,
}

/// Parameters of one generation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerateRequest {
    /// Prompt text; empty means "start from the beginning-of-text token".
    pub prompt: String,
    /// Most tokens to generate.
    pub max_tokens: u32,
    /// How to pick each token.
    pub sampling: Sampling,
    /// Generation ends before the first occurrence of any of these.
    pub stop: Vec<String>,
    /// Keep going past end-of-text tokens.
    pub ignore_eos: bool,
    /// Send a [`ServerMessage::Token`] per token (otherwise only the final `Done`).
    pub stream: bool,
    /// Report each generated token's log-probability and this many most likely
    /// alternatives (at most [`crate::validate::MAX_TOP_LOGPROBS`]); `None` reports none
    /// and costs nothing.
    pub logprobs: Option<u8>,
}

impl GenerateRequest {
    /// A greedy, streaming request for up to 128 tokens.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            max_tokens: 128,
            sampling: Sampling::default(),
            stop: Vec::new(),
            ignore_eos: false,
            stream: true,
            logprobs: None,
        }
    }
}

/// Sampling parameters. The default is greedy (temperature 0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 disables top-k.
    pub top_k: u32,
    /// 1.0 disables top-p.
    pub top_p: f32,
    /// 0.0 disables min-p.
    pub min_p: f32,
    /// 1.0 disables the repeat penalty.
    pub repeat_penalty: f32,
    /// How many recent tokens the repeat penalty looks at.
    pub repeat_last_n: u32,
    /// Seed of the random choice; the same seed gives the same output.
    pub seed: u32,
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: 0,
        }
    }
}

impl Sampling {
    /// True when every token is simply the most likely one.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repeat_penalty == 1.0
    }
}

/// Why a generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinishReason {
    /// `max_tokens` reached.
    Length,
    /// The model produced an end-of-text token.
    Eos,
    /// A stop string was produced.
    Stop,
    /// The client cancelled or went away, or the daemon shut down.
    Cancelled,
    /// The sequence reached the model's context or the KV cache's capacity.
    Context,
}

impl FinishReason {
    /// Lower-case name used in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Length => "length",
            FinishReason::Eos => "eos",
            FinishReason::Stop => "stop",
            FinishReason::Cancelled => "cancelled",
            FinishReason::Context => "context",
        }
    }
}

/// Final record of a request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Done {
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub timings: Timings,
    /// Engine step numbers of the request's life (for tracing and tests).
    pub steps: StepSpan,
    /// Text released only at the end, carried by no token event: the rest of a partial
    /// stop-string match or of an incomplete character when generation ended. Streaming
    /// clients append it to what they printed; it is usually empty.
    pub final_text: String,
    /// Whole output, present for non-streaming requests.
    pub output: Option<Output>,
}

/// Generated text (including `final_text`) and tokens of a non-streaming request.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub text: String,
    pub tokens: Vec<u32>,
    /// One per token when the request asked for logprobs, else empty.
    pub logprobs: Vec<TokenLogprobs>,
}

/// A generated token's log-probability, and the most likely tokens at its position.
///
/// Natural logarithms of the model's own distribution: a log-softmax over the whole
/// vocabulary of the raw logits, before any temperature, top-k/p or repeat penalty (as
/// OpenAI reports them), so the same position gives the same numbers however it was
/// sampled.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenLogprobs {
    /// The bytes the generated token stands for (not always whole UTF-8 characters).
    pub bytes: Vec<u8>,
    pub logprob: f32,
    /// The most likely tokens, most likely first (ties by token id).
    pub top: Vec<TopLogprob>,
}

/// One of the most likely tokens at a position.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopLogprob {
    pub token: u32,
    pub bytes: Vec<u8>,
    pub logprob: f32,
}

/// Token counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    /// Prompt tokens whose KV came from the prefix cache instead of being computed.
    pub cached_tokens: u32,
}

/// Wall-clock milliseconds measured by the daemon from the moment it accepted the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Until the request got a slot.
    pub queue_ms: f64,
    /// Until the first generated token.
    pub ttft_ms: f64,
    /// Until it finished.
    pub total_ms: f64,
}

/// The engine steps in which a request was admitted, got its first token, and finished.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepSpan {
    /// First step whose batch held this request's tokens.
    pub admitted: u64,
    /// Step that produced its first token (0 if none).
    pub first_token: u64,
    /// Step after which it finished (the last step it took part in).
    pub finished: u64,
}

/// Stable error codes; the message says the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// A frame could not be read or decoded; the connection closes.
    BadFrame,
    /// A frame was larger than the daemon accepts; the connection closes.
    FrameTooLarge,
    /// The client speaks another protocol version; the connection closes.
    VersionMismatch,
    /// The first frame was not a hello, or a hello came twice.
    ProtocolViolation,
    /// A request's parameters are not acceptable.
    InvalidRequest,
    /// The prompt does not fit in the context.
    PromptTooLong,
    /// The queue is full; try again later.
    Busy,
    /// The daemon is shutting down and takes no new work.
    ShuttingDown,
    /// The id is already in use on this connection.
    DuplicateId,
    /// The peer is not allowed to use this daemon.
    Unauthorized,
    /// The daemon failed; the message says how.
    Internal,
}

impl ErrorCode {
    /// Snake-case name used in JSON output and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::VersionMismatch => "version_mismatch",
            ErrorCode::ProtocolViolation => "protocol_violation",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::PromptTooLong => "prompt_too_long",
            ErrorCode::Busy => "busy",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::DuplicateId => "duplicate_id",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Internal => "internal",
        }
    }
}

/// What `batchctl status` shows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub version: String,
    pub model: ModelInfo,
    /// `continuous` or `static`.
    pub policy: String,
    pub slots_total: u32,
    pub slots_busy: u32,
    pub queued: u32,
    /// Requests the queue holds at most.
    pub queue_capacity: u32,
    /// Tokens generated since start.
    pub tokens_generated: u64,
    /// Generated tokens per second over the last few seconds.
    pub tokens_per_second: f64,
    /// Engine steps run since start.
    pub steps: u64,
    pub uptime_s: f64,
    /// Context size of the whole KV cache and what one sequence may use.
    pub n_ctx: u32,
    pub n_ctx_seq: u32,
    /// Compute backend where the model runs, e.g. `cpu` or `cuda` (found at run time).
    pub backend: String,
    /// The device, e.g. `NVIDIA H100 80GB HBM3`, or the CPU's name.
    pub device: String,
    /// Model layers offloaded to the GPU (0 on CPU).
    pub gpu_layers: u32,
    /// Whether greedy tokens are picked on the device (only token ids leave it).
    pub device_sampling: bool,
    /// Tokens picked on the device since start.
    pub device_sampled_tokens: u64,
    pub prefix_cache: PrefixCacheStatus,
    /// Whether `--deterministic` is on: greedy output does not depend on batching.
    pub deterministic: bool,
}

/// The prefix cache: saved prompt prefixes whose KV new requests reuse.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixCacheStatus {
    /// Bytes it may hold (0: the cache is off).
    pub budget_bytes: u64,
    pub bytes: u64,
    pub entries: u32,
    /// Positions held over all entries.
    pub tokens: u64,
    /// Requests that reused cached positions, and those that found none worth reusing.
    pub hits: u64,
    pub misses: u64,
    /// Prompt tokens reused instead of computed.
    pub reused_tokens: u64,
    pub evictions: u64,
}

/// The model being served.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub name: String,
    pub path: String,
    /// True for the built-in demo model whose weights are random.
    pub synthetic: bool,
    /// What users should know about it (e.g. that synthetic text is meaningless).
    pub note: String,
    pub n_ctx_train: u32,
    pub n_vocab: u32,
}
