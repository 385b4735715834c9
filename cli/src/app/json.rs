//! The JSON shapes `batchctl` prints.

use batchd_protocol::{Done, ErrorCode, StatusReport, TokenLogprobs};
use serde_json::{json, Value};

use crate::Completion;

/// One finished request: `index` (input position), `text`, `tokens`, `finish_reason`,
/// `usage`, `timings`, `steps`, and `logprobs` when asked for.
pub fn completion(index: usize, c: &Completion) -> Value {
    let Done {
        finish_reason,
        usage,
        timings,
        steps,
        ..
    } = &c.done;
    let mut v = json!({
        "index": index,
        "text": c.text,
        "tokens": c.tokens,
        "finish_reason": finish_reason.as_str(),
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cached_tokens": usage.cached_tokens,
        },
        "timings": {
            "queue_ms": timings.queue_ms,
            "ttft_ms": timings.ttft_ms,
            "total_ms": timings.total_ms,
        },
        "steps": {
            "admitted": steps.admitted,
            "first_token": steps.first_token,
            "finished": steps.finished,
        },
    });
    if !c.logprobs.is_empty() {
        v["logprobs"] = logprobs(&c.tokens, &c.logprobs);
    }
    v
}

/// Each token's `{token, text, logprob, top: [{token, text, logprob}]}`; `text` is the
/// token's bytes as UTF-8 (a piece of a character shows as U+FFFD).
fn logprobs(tokens: &[u32], logprobs: &[TokenLogprobs]) -> Value {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    tokens
        .iter()
        .zip(logprobs)
        .map(|(token, l)| {
            let top: Vec<Value> = l
                .top
                .iter()
                .map(|t| json!({"token": t.token, "text": text(&t.bytes), "logprob": t.logprob}))
                .collect();
            json!({"token": token, "text": text(&l.bytes), "logprob": l.logprob, "top": top})
        })
        .collect()
}

/// One failed request: `index` and `error` {`code`, `message`}.
pub fn request_error(index: usize, code: ErrorCode, message: &str) -> Value {
    json!({
        "index": index,
        "error": { "code": code.as_str(), "message": message },
    })
}

/// The daemon's status.
pub fn status(s: &StatusReport) -> Value {
    json!({
        "version": s.version,
        "model": {
            "name": s.model.name,
            "path": s.model.path,
            "synthetic": s.model.synthetic,
            "note": s.model.note,
            "n_ctx_train": s.model.n_ctx_train,
            "n_vocab": s.model.n_vocab,
        },
        "policy": s.policy,
        "slots_total": s.slots_total,
        "slots_busy": s.slots_busy,
        "queued": s.queued,
        "queue_capacity": s.queue_capacity,
        "tokens_generated": s.tokens_generated,
        "tokens_per_second": s.tokens_per_second,
        "steps": s.steps,
        "uptime_s": s.uptime_s,
        "backend": s.backend,
        "device": s.device,
        "gpu_layers": s.gpu_layers,
        "device_sampling": s.device_sampling,
        "device_sampled_tokens": s.device_sampled_tokens,
        "deterministic": s.deterministic,
        "n_ctx": s.n_ctx,
        "n_ctx_seq": s.n_ctx_seq,
        "prefix_cache": {
            "budget_bytes": s.prefix_cache.budget_bytes,
            "bytes": s.prefix_cache.bytes,
            "entries": s.prefix_cache.entries,
            "tokens": s.prefix_cache.tokens,
            "hits": s.prefix_cache.hits,
            "misses": s.prefix_cache.misses,
            "reused_tokens": s.prefix_cache.reused_tokens,
            "evictions": s.prefix_cache.evictions,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchd_protocol::{FinishReason, Output, StepSpan, Timings, Usage};

    pub(crate) fn sample_done() -> Done {
        Done {
            finish_reason: FinishReason::Eos,
            usage: Usage {
                prompt_tokens: 3,
                completion_tokens: 2,
                cached_tokens: 1,
            },
            timings: Timings {
                queue_ms: 1.5,
                ttft_ms: 10.0,
                total_ms: 20.25,
            },
            steps: StepSpan {
                admitted: 4,
                first_token: 5,
                finished: 6,
            },
            final_text: String::new(),
            output: Some(Output {
                text: "hi".into(),
                tokens: vec![7, 8],
                logprobs: Vec::new(),
            }),
        }
    }

    #[test]
    fn completion_shape() {
        let c = Completion {
            text: "hi".into(),
            tokens: vec![7, 8],
            logprobs: Vec::new(),
            done: sample_done(),
        };
        let v = completion(2, &c);
        assert_eq!(
            v,
            json!({
                "index": 2, "text": "hi", "tokens": [7, 8], "finish_reason": "eos",
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "cached_tokens": 1},
                "timings": {"queue_ms": 1.5, "ttft_ms": 10.0, "total_ms": 20.25},
                "steps": {"admitted": 4, "first_token": 5, "finished": 6},
            })
        );
    }

    #[test]
    fn error_shape() {
        let v = request_error(1, ErrorCode::PromptTooLong, "too long");
        assert_eq!(
            v,
            json!({"index": 1, "error": {"code": "prompt_too_long", "message": "too long"}})
        );
    }

    #[test]
    fn status_has_every_key() {
        let v = status(&StatusReport::default());
        for key in [
            "slots_total",
            "slots_busy",
            "queued",
            "policy",
            "model",
            "tokens_generated",
            "tokens_per_second",
            "uptime_s",
            "steps",
            "backend",
            "device",
            "gpu_layers",
            "device_sampling",
            "device_sampled_tokens",
            "deterministic",
            "n_ctx",
            "n_ctx_seq",
            "version",
            "queue_capacity",
            "prefix_cache",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        for key in ["name", "path", "synthetic", "note"] {
            assert!(v["model"].get(key).is_some(), "model.{key}");
        }
    }
}
