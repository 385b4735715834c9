//! Response bodies in OpenAI's shapes, for text completions and chat alike.

use batchd_protocol::{Done, FinishReason};
use serde_json::{json, Value};

use super::logprobs::{self, TextOffset};

/// Which endpoint's shapes to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Completion,
    Chat,
}

/// What a response is about: its id, creation time and model.
#[derive(Clone, Debug)]
pub struct Header {
    pub kind: Kind,
    pub id: String,
    pub created: u64,
    pub model: String,
    /// Whether the request asked for logprobs (then every choice has a `logprobs` object,
    /// even one without tokens).
    pub logprobs: bool,
}

impl Header {
    pub fn new(kind: Kind, serial: u64, model: &str, logprobs: bool) -> Self {
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let prefix = match kind {
            Kind::Completion => "cmpl",
            Kind::Chat => "chatcmpl",
        };
        Self {
            kind,
            id: format!("{prefix}-{serial}"),
            created,
            model: model.to_string(),
            logprobs,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    /// A whole (non-streamed) response.
    pub fn body(&self, choices: Vec<Value>, usage: Value) -> Value {
        json!({
            "id": self.id, "object": self.object(false), "created": self.created,
            "model": self.model, "choices": choices, "usage": usage,
        })
    }

    /// One finished choice of a whole response, from its collected output.
    pub fn choice(&self, index: usize, done: &Done) -> Value {
        let finish = finish_reason(done.finish_reason);
        let output = done.output.clone().unwrap_or_default();
        let text = output.text;
        let logprobs = match self.logprobs {
            true => logprobs::json(self.kind, &output.logprobs, &mut TextOffset::default()),
            false => Value::Null,
        };
        match self.kind {
            Kind::Completion => json!({
                "index": index, "text": text, "logprobs": logprobs, "finish_reason": finish,
            }),
            Kind::Chat => json!({
                "index": index, "message": {"role": "assistant", "content": text},
                "logprobs": logprobs, "finish_reason": finish,
            }),
        }
    }

    /// One streamed chunk: new text for choice `index` with its tokens' `logprobs` object
    /// (null when not asked for), and its finish reason at the end. A chat stream's first
    /// chunk also names the role.
    pub fn chunk(
        &self,
        index: usize,
        text: &str,
        first: bool,
        done: Option<&Done>,
        logprobs: Value,
    ) -> Value {
        let finish = done.map(|d| finish_reason(d.finish_reason));
        let choice = match self.kind {
            Kind::Completion => json!({
                "index": index, "text": text, "logprobs": logprobs, "finish_reason": finish,
            }),
            Kind::Chat => {
                let delta = match (first, done.is_some() && text.is_empty()) {
                    (true, _) => json!({"role": "assistant", "content": text}),
                    (false, true) => json!({}),
                    (false, false) => json!({"content": text}),
                };
                json!({"index": index, "delta": delta, "logprobs": logprobs,
                       "finish_reason": finish})
            }
        };
        json!({
            "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": [choice],
        })
    }

    /// The chunk that carries only `usage`, after the last choice (`include_usage`).
    pub fn usage_chunk(&self, usage: Value) -> Value {
        json!({
            "id": self.id, "object": self.object(true), "created": self.created,
            "model": self.model, "choices": [], "usage": usage,
        })
    }
}

/// Token counts summed over a request's choices.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
    pub cached: u64,
}

impl Usage {
    pub fn add(&mut self, done: &Done) {
        self.prompt += u64::from(done.usage.prompt_tokens);
        self.completion += u64::from(done.usage.completion_tokens);
        self.cached += u64::from(done.usage.cached_tokens);
    }

    pub fn json(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.completion,
            "total_tokens": self.prompt + self.completion,
            "prompt_tokens_details": {"cached_tokens": self.cached},
        })
    }
}

/// OpenAI's finish reasons; batchd's `context` limit reads as `length` there, and a
/// request cancelled by a shutdown says so.
fn finish_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Eos | FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Context => "length",
        FinishReason::Cancelled => "cancelled",
    }
}
