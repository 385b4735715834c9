//! What the daemon accepts in a generate request, checked before it costs anything.

use crate::GenerateRequest;

/// Most stop strings per request.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop string, in bytes.
pub const MAX_STOP_BYTES: usize = 256;
/// Longest prompt, in bytes (the frame limit bounds it too).
pub const MAX_PROMPT_BYTES: usize = 1 << 20;
/// Most alternatives `logprobs` may ask for per token (OpenAI's limit).
pub const MAX_TOP_LOGPROBS: u8 = 20;

/// Returns a human-readable reason when `req` cannot be served.
pub fn validate(req: &GenerateRequest) -> Result<(), String> {
    let s = &req.sampling;
    if req.max_tokens == 0 {
        return Err("max_tokens must be at least 1".into());
    }
    if req.prompt.len() > MAX_PROMPT_BYTES {
        return Err(format!(
            "the prompt is longer than {MAX_PROMPT_BYTES} bytes"
        ));
    }
    if !(s.temperature.is_finite() && s.temperature >= 0.0) {
        return Err(format!("temperature must be >= 0 (got {})", s.temperature));
    }
    if !(s.top_p > 0.0 && s.top_p <= 1.0) {
        return Err(format!("top_p must be in (0, 1] (got {})", s.top_p));
    }
    if !(s.min_p >= 0.0 && s.min_p <= 1.0) {
        return Err(format!("min_p must be in [0, 1] (got {})", s.min_p));
    }
    if !(s.repeat_penalty.is_finite() && s.repeat_penalty > 0.0) {
        return Err(format!(
            "repeat_penalty must be > 0 (got {})",
            s.repeat_penalty
        ));
    }
    if s.repeat_last_n > 4096 {
        return Err("repeat_last_n must be at most 4096".into());
    }
    if req.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
        return Err(format!(
            "logprobs may ask for at most {MAX_TOP_LOGPROBS} alternatives per token"
        ));
    }
    if req.stop.len() > MAX_STOP_STRINGS {
        return Err(format!("at most {MAX_STOP_STRINGS} stop strings"));
    }
    if req.stop.iter().any(|x| x.len() > MAX_STOP_BYTES) {
        return Err(format!("stop strings are at most {MAX_STOP_BYTES} bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_defaults_and_rejects_nonsense() {
        let ok = GenerateRequest::new("hi");
        assert!(validate(&ok).is_ok());
        let mut r = ok.clone();
        r.sampling.temperature = f32::NAN;
        assert!(validate(&r).unwrap_err().contains("temperature"));
        let mut r = ok.clone();
        r.sampling.top_p = 0.0;
        assert!(validate(&r).is_err());
        let mut r = ok.clone();
        r.max_tokens = 0;
        assert!(validate(&r).is_err());
        let mut r = ok.clone();
        r.stop = vec!["x".repeat(300)];
        assert!(validate(&r).is_err());
        let mut r = ok;
        r.logprobs = Some(MAX_TOP_LOGPROBS);
        assert!(validate(&r).is_ok());
        r.logprobs = Some(MAX_TOP_LOGPROBS + 1);
        assert!(validate(&r).unwrap_err().contains("logprobs"));
    }
}
