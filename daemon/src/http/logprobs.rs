//! Tokens' log-probabilities in OpenAI's two shapes: the legacy completions object of
//! parallel lists (`tokens`, `token_logprobs`, `top_logprobs` as `{token: logprob}`,
//! `text_offset`) and chat's list of `{token, logprob, bytes, top_logprobs}`.
//!
//! A token's string is its bytes read as UTF-8, a piece of a character shown as U+FFFD;
//! chat's `bytes` carry the exact bytes.

use batchd_protocol::TokenLogprobs;
use serde_json::{json, Map, Value};

use super::response::Kind;
use crate::text::Utf8Stream;

/// Where the next token of a choice starts in its text, in characters (as Python indexes
/// a string), counting only whole characters as the text itself releases them; streams
/// keep one per choice.
#[derive(Debug, Default)]
pub struct TextOffset {
    chars: usize,
    text: Utf8Stream,
}

impl TextOffset {
    /// The offset of a token of `bytes`, moving past it.
    fn take(&mut self, bytes: &[u8]) -> usize {
        let at = self.chars;
        self.chars += self.text.push(bytes).chars().count();
        at
    }
}

/// The `logprobs` object of a choice (or chunk) whose tokens are `tokens`.
pub fn json(kind: Kind, tokens: &[TokenLogprobs], offset: &mut TextOffset) -> Value {
    match kind {
        Kind::Completion => completion(tokens, offset),
        Kind::Chat => chat(tokens),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn completion(tokens: &[TokenLogprobs], offset: &mut TextOffset) -> Value {
    let top = |t: &TokenLogprobs| {
        let pairs = t.top.iter().map(|a| (text(&a.bytes), json!(a.logprob)));
        Value::Object(pairs.collect::<Map<_, _>>())
    };
    json!({
        "tokens": tokens.iter().map(|t| text(&t.bytes)).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens.iter().map(top).collect::<Vec<_>>(),
        "text_offset": tokens.iter().map(|t| offset.take(&t.bytes)).collect::<Vec<_>>(),
    })
}

fn chat(tokens: &[TokenLogprobs]) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| {
            let top: Vec<Value> = t
                .top
                .iter()
                .map(|a| json!({"token": text(&a.bytes), "logprob": a.logprob, "bytes": a.bytes}))
                .collect();
            json!({"token": text(&t.bytes), "logprob": t.logprob, "bytes": t.bytes,
                   "top_logprobs": top})
        })
        .collect();
    json!({"content": content, "refusal": null})
}

#[cfg(test)]
mod tests {
    use super::*;
    use batchd_protocol::TopLogprob;

    fn token(bytes: &[u8], logprob: f32) -> TokenLogprobs {
        TokenLogprobs {
            bytes: bytes.to_vec(),
            logprob,
            top: vec![TopLogprob {
                token: 7,
                bytes: bytes.to_vec(),
                logprob,
            }],
        }
    }

    #[test]
    fn completions_get_parallel_lists_with_character_offsets() {
        // "é" split over two tokens: the second starts after it, the first at 3.
        let tokens = [
            token(b"abc", -0.5),
            token(&[0xc3], -1.0),
            token(&[0xa9, b'x'], -2.0),
            token(b"y", -0.25),
        ];
        let mut offset = TextOffset::default();
        let v = json(Kind::Completion, &tokens, &mut offset);
        assert_eq!(v["tokens"][0], "abc");
        assert_eq!(v["token_logprobs"], json!([-0.5, -1.0, -2.0, -0.25]));
        assert_eq!(v["top_logprobs"][0], json!({"abc": -0.5}));
        assert_eq!(v["text_offset"], json!([0, 3, 3, 5]));
        // A stream goes on where it was.
        let v = json(Kind::Completion, &tokens[..1], &mut offset);
        assert_eq!(v["text_offset"], json!([6]));
    }

    #[test]
    fn chat_gets_one_entry_per_token_with_its_bytes() {
        let v = json(
            Kind::Chat,
            &[token(&[0xc3], -1.0)],
            &mut TextOffset::default(),
        );
        let c = &v["content"][0];
        assert_eq!(c["token"], "\u{fffd}");
        assert_eq!(c["bytes"], json!([0xc3]));
        assert_eq!(c["logprob"], -1.0);
        assert_eq!(c["top_logprobs"][0]["bytes"], json!([0xc3]));
        assert!(v["refusal"].is_null());
    }
}
