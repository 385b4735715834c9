//! OpenAI request bodies and their translation into the engine's [`GenerateRequest`].
//!
//! Unknown fields are ignored (clients send many batchd has no use for); known fields
//! must have the right type, so `"temperature": "hot"` is a 400 rather than a default.

use batchd_protocol::validate::validate;
use batchd_protocol::{GenerateRequest, Sampling};
use serde::Deserialize;

use super::error::ApiError;
use super::response::Kind;

/// `POST /v1/completions`.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: Option<String>,
    pub prompt: Prompt,
    #[serde(flatten)]
    pub params: Params,
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize)]
pub struct ChatRequest {
    pub model: Option<String>,
    pub messages: Vec<Message>,
    /// OpenAI's newer name for `max_tokens` in chat.
    pub max_completion_tokens: Option<u32>,
    #[serde(flatten)]
    pub params: Params,
}

/// One prompt, or several answered together as separate choices.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    One(String),
    Many(Vec<String>),
}

impl Prompt {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Prompt::One(p) => vec![p],
            Prompt::Many(p) => p,
        }
    }
}

/// A chat message; `content` may be a string or a list of text parts.
#[derive(Debug, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: Content,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

impl Content {
    /// The text of a message; parts other than text are refused.
    pub fn text(&self) -> Result<String, ApiError> {
        match self {
            Content::Text(t) => Ok(t.clone()),
            Content::Parts(parts) => parts
                .iter()
                .map(|p| match (p.kind.as_str(), &p.text) {
                    ("text", Some(t)) => Ok(t.as_str()),
                    _ => Err(ApiError::invalid(format!(
                        "message parts of type {:?} are not supported (text only)",
                        p.kind
                    ))),
                })
                .collect(),
        }
    }
}

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `logprobs`: a count in completions, a flag (with `top_logprobs`) in chat.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Logprobs {
    Flag(bool),
    Count(u32),
}

/// Generation parameters shared by both endpoints.
#[derive(Debug, Default, Deserialize)]
pub struct Params {
    pub max_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Stop>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub n: Option<u32>,
    pub ignore_eos: Option<bool>,
    pub logprobs: Option<Logprobs>,
    pub top_logprobs: Option<u32>,
}

impl Params {
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a final chunk with `usage` is wanted after a stream.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .is_some_and(|o| o.include_usage)
    }

    /// How many alternatives `kind`'s request asks for with each token's logprob: a count
    /// in completions (`logprobs: N`), a flag with the count in `top_logprobs` in chat.
    /// The engine's validation refuses too many.
    fn logprobs(&self, kind: Kind) -> Result<Option<u8>, ApiError> {
        let n =
            match (kind, &self.logprobs, self.top_logprobs) {
                (_, None | Some(Logprobs::Flag(false)), None) => return Ok(None),
                (Kind::Completion, Some(Logprobs::Count(n)), None) => *n,
                (Kind::Chat, Some(Logprobs::Flag(true)), top) => top.unwrap_or(0),
                (Kind::Completion, Some(Logprobs::Flag(_)), _) => {
                    return Err(ApiError::invalid(
                        "logprobs is a number in completions: how many alternatives to list",
                    ))
                }
                (Kind::Completion, _, Some(_)) => {
                    return Err(ApiError::invalid(
                        "top_logprobs is for chat; completions take logprobs: N",
                    ))
                }
                (Kind::Chat, Some(Logprobs::Count(_)), _) => return Err(ApiError::invalid(
                    "logprobs is true or false in chat; top_logprobs says how many alternatives",
                )),
                (Kind::Chat, _, Some(_)) => {
                    return Err(ApiError::invalid("top_logprobs needs logprobs: true"))
                }
            };
        Ok(Some(u8::try_from(n).unwrap_or(u8::MAX)))
    }

    /// The engine request for one prompt of a `kind` request, checked like the socket
    /// protocol checks it.
    pub fn to_generate(
        &self,
        kind: Kind,
        prompt: String,
        max_tokens: Option<u32>,
        default_max_tokens: u32,
    ) -> Result<GenerateRequest, ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::invalid("only n = 1 is supported"));
        }
        let defaults = Sampling::default();
        let request = GenerateRequest {
            prompt,
            max_tokens: max_tokens.or(self.max_tokens).unwrap_or(default_max_tokens),
            sampling: Sampling {
                temperature: self.temperature.unwrap_or(defaults.temperature),
                top_k: self.top_k.unwrap_or(defaults.top_k),
                top_p: self.top_p.unwrap_or(defaults.top_p),
                min_p: self.min_p.unwrap_or(defaults.min_p),
                // OpenAI's seed is any integer; the engine's is 32 bits.
                seed: self.seed.map_or(defaults.seed, |s| s as u32),
                ..defaults
            },
            stop: match &self.stop {
                None => Vec::new(),
                Some(Stop::One(s)) => vec![s.clone()],
                Some(Stop::Many(s)) => s.clone(),
            },
            ignore_eos: self.ignore_eos.unwrap_or(false),
            stream: self.stream(),
            logprobs: self.logprobs(kind)?,
        };
        validate(&request).map_err(ApiError::invalid)?;
        Ok(request)
    }
}

/// Parses a JSON body into `T`, any failure a 400 with serde's reason.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fields_map_onto_the_engine_request() {
        let r: CompletionRequest = parse(
            br#"{"model":"m","prompt":["a","b"],"max_tokens":5,"temperature":0.5,
                 "top_k":40,"seed":-1,"stop":"\n","ignore_eos":true,"user":"x"}"#,
        )
        .unwrap();
        let g = r
            .params
            .to_generate(Kind::Completion, "a".into(), None, 16)
            .unwrap();
        assert_eq!(g.max_tokens, 5);
        assert_eq!(g.sampling.temperature, 0.5);
        assert_eq!(g.sampling.top_k, 40);
        assert_eq!(g.sampling.seed, u32::MAX);
        assert_eq!(g.stop, vec!["\n".to_string()]);
        assert!(g.ignore_eos && !g.stream);
        assert_eq!(r.prompt.into_vec(), vec!["a", "b"]);
    }

    #[test]
    fn wrong_types_and_values_are_refused() {
        assert!(parse::<CompletionRequest>(br#"{"prompt":"a","temperature":"hot"}"#).is_err());
        assert!(parse::<CompletionRequest>(br#"{"prompt":3}"#).is_err());
        assert!(parse::<CompletionRequest>(b"{not json").is_err());
        let r: CompletionRequest = parse(br#"{"prompt":"a","max_tokens":0}"#).unwrap();
        assert!(r
            .params
            .to_generate(Kind::Completion, "a".into(), None, 16)
            .is_err());
        let r: CompletionRequest = parse(br#"{"prompt":"a","n":2}"#).unwrap();
        assert!(r
            .params
            .to_generate(Kind::Completion, "a".into(), None, 16)
            .is_err());
    }

    #[test]
    fn logprobs_are_a_count_in_completions_and_a_flag_in_chat() {
        let logprobs = |kind, body: &str| {
            let r: CompletionRequest = parse(body.as_bytes()).unwrap();
            r.params
                .to_generate(kind, "a".into(), None, 16)
                .map(|g| g.logprobs)
        };
        use Kind::{Chat, Completion};
        assert_eq!(logprobs(Completion, r#"{"prompt":""}"#).unwrap(), None);
        assert_eq!(
            logprobs(Completion, r#"{"prompt":"","logprobs":null}"#).unwrap(),
            None
        );
        assert_eq!(
            logprobs(Completion, r#"{"prompt":"","logprobs":3}"#).unwrap(),
            Some(3)
        );
        assert_eq!(
            logprobs(Completion, r#"{"prompt":"","logprobs":0}"#).unwrap(),
            Some(0)
        );
        assert_eq!(
            logprobs(Chat, r#"{"prompt":"","logprobs":true}"#).unwrap(),
            Some(0)
        );
        let chat = r#"{"prompt":"","logprobs":true,"top_logprobs":20}"#;
        assert_eq!(logprobs(Chat, chat).unwrap(), Some(20));
        assert_eq!(
            logprobs(Chat, r#"{"prompt":"","logprobs":false}"#).unwrap(),
            None
        );
        for (kind, bad) in [
            (Completion, r#"{"prompt":"","logprobs":21}"#),
            (Completion, r#"{"prompt":"","logprobs":4000}"#),
            (Completion, r#"{"prompt":"","logprobs":true}"#),
            (Completion, r#"{"prompt":"","top_logprobs":2}"#),
            (Chat, r#"{"prompt":"","logprobs":true,"top_logprobs":21}"#),
            (Chat, r#"{"prompt":"","logprobs":2}"#),
            (Chat, r#"{"prompt":"","top_logprobs":2}"#),
        ] {
            let e = logprobs(kind, bad).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.message.contains("logprobs"), "{bad}: {}", e.message);
        }
        assert!(parse::<CompletionRequest>(br#"{"prompt":"","logprobs":-1}"#).is_err());
    }

    #[test]
    fn chat_content_may_be_text_parts() {
        let r: ChatRequest = parse(
            br#"{"messages":[{"role":"user","content":[{"type":"text","text":"hi"},
                 {"type":"text","text":" there"}]}]}"#,
        )
        .unwrap();
        assert_eq!(r.messages[0].content.text().unwrap(), "hi there");
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("prompt".to_string()),
                        Just("messages".to_string()),
                        Just("max_tokens".to_string()),
                        Just("temperature".to_string()),
                        Just("stop".to_string()),
                        Just("logprobs".to_string()),
                        Just("top_logprobs".to_string()),
                        Just("content".to_string()),
                        Just("role".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Whatever bytes arrive, parsing and translating either succeed or give a 400.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(body in prop::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(r) = parse::<CompletionRequest>(&body) {
                let _ = r.params.to_generate(Kind::Completion, String::new(), None, 16);
            }
            let _ = parse::<ChatRequest>(&body);
        }

        /// Arbitrary JSON with the real field names: never a panic, and every refusal is a
        /// 400 whose message says why.
        #[test]
        fn any_json_parses_or_fails_cleanly(v in json_value()) {
            let body = serde_json::to_vec(&v).unwrap();
            for result in [
                parse::<CompletionRequest>(&body).and_then(|r| {
                    r.params.to_generate(Kind::Completion, String::new(), None, 16).map(|_| ())
                }),
                parse::<ChatRequest>(&body).and_then(|r| {
                    r.messages.iter().try_for_each(|m| m.content.text().map(|_| ()))?;
                    r.params.to_generate(Kind::Chat, String::new(), None, 16).map(|_| ())
                }),
            ] {
                if let Err(e) = result {
                    prop_assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}
