//! The JSON shapes `batchctl` prints.

use batchd_protocol::{Done, ErrorCode, StatusReport};
use serde_json::{json, Value};

use crate::Completion;

/// One finished request: `index` (input position), `text`, `tokens`, `finish_reason`,
/// `usage`, `timings`, `steps`.
pub fn completion(index: usize, c: &Completion) -> Value {
    let Done {
        finish_reason,
        usage,
        timings,
        steps,
        ..
    } = &c.done;
    json!({
        "index": index,
        "text": c.text,
        "tokens": c.tokens,
        "finish_reason": finish_reason.as_str(),
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
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
    })
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
            }),
        }
    }

    #[test]
    fn completion_shape() {
        let c = Completion {
            text: "hi".into(),
            tokens: vec![7, 8],
            done: sample_done(),
        };
        let v = completion(2, &c);
        assert_eq!(
            v,
            json!({
                "index": 2, "text": "hi", "tokens": [7, 8], "finish_reason": "eos",
                "usage": {"prompt_tokens": 3, "completion_tokens": 2},
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
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        for key in ["name", "path", "synthetic", "note"] {
            assert!(v["model"].get(key).is_some(), "model.{key}");
        }
    }
}
