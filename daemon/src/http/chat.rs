//! Chat messages to one prompt: with the model's own chat template when its GGUF carries
//! one that llama.cpp knows, else with a plain fallback (GPT-2 has no template):
//!
//! ```text
//! System: You are terse.
//! User: Hello
//! Assistant:
//! ```
//!
//! one `Role: content` line per message (the role capitalised), then `Assistant:` for the
//! model to continue.

use std::path::Path;

use anyhow::Context as _;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use super::error::ApiError;

/// How chats become prompts for the served model.
pub struct ChatFormat {
    /// A vocabulary-only load of the model (llama.cpp's template code wants a model) and
    /// its template, when it has a usable one.
    native: Option<(LlamaModel, LlamaChatTemplate)>,
}

impl ChatFormat {
    /// Reads the model's template (loading only its vocabulary, not its weights).
    pub fn load(model: &Path) -> anyhow::Result<Self> {
        let backend = crate::engine::init_backend()?;
        let params = LlamaModelParams::default().with_vocab_only(true);
        let vocab = LlamaModel::load_from_file(backend, model, &params)
            .with_context(|| format!("reading the chat template of {}", model.display()))?;
        let native = match vocab.chat_template(None) {
            Ok(template) => {
                let probe = [("user".to_string(), "hi".to_string())];
                if apply(&vocab, &template, &probe).is_ok() {
                    Some((vocab, template))
                } else {
                    tracing::warn!(
                        "the model's chat template is not one llama.cpp knows; \
                         chats use the plain fallback"
                    );
                    None
                }
            }
            Err(_) => None,
        };
        Ok(Self { native })
    }

    /// A format that always uses the plain fallback.
    #[cfg(test)]
    pub fn plain() -> Self {
        Self { native: None }
    }

    /// The prompt for `messages` (role, content), ending where the assistant speaks next.
    pub fn render(&self, messages: &[(String, String)]) -> Result<String, ApiError> {
        match &self.native {
            Some((model, template)) => apply(model, template, messages)
                .map_err(|e| ApiError::invalid(format!("cannot apply the chat template: {e}"))),
            None => Ok(plain(messages)),
        }
    }
}

fn apply(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    messages: &[(String, String)],
) -> anyhow::Result<String> {
    let chat = messages
        .iter()
        .map(|(role, content)| LlamaChatMessage::new(role.clone(), content.clone()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(model.apply_chat_template(template, &chat, true)?)
}

/// The documented fallback (see the module doc).
fn plain(messages: &[(String, String)]) -> String {
    let mut out = String::new();
    for (role, content) in messages {
        let mut chars = role.chars();
        if let Some(c) = chars.next() {
            out.extend(c.to_uppercase());
            out.push_str(chars.as_str());
        }
        out.push_str(": ");
        out.push_str(content);
        out.push('\n');
    }
    out.push_str("Assistant:");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_fallback_is_one_line_per_message_then_the_assistant_cue() {
        let m = [
            ("system".to_string(), "Be terse.".to_string()),
            ("user".to_string(), "Hello".to_string()),
        ];
        assert_eq!(
            ChatFormat::plain().render(&m).unwrap(),
            "System: Be terse.\nUser: Hello\nAssistant:"
        );
    }
}
