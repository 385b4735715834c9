//! What a bench run sends: each workload's parameters, with defaults, and its requests.

use anyhow::{bail, Result};
use batchd_protocol::GenerateRequest;

use crate::app::args::{BenchArgs, Workload};

/// The seed's six prompts and their lengths (611 tokens in all), in submission order.
pub const SEED: [(&str, u32); 6] = [
    ("The capital of France is", 6),
    ("Today's weather is so", 50),
    ("In machine learning, a transformer is", 300),
    ("Once upon a time in a land far away,", 30),
    (
        "Quantum computing differs from classical computing because",
        180,
    ),
    ("The history of the Roman Empire began", 45),
];

/// The slot count the seed workload is meant for.
pub const SEED_SLOTS: u32 = 3;

/// Tokens the long-prompt workload's long request generates.
pub const LONG_MAX_TOKENS: u32 = 16;

/// Prompts of the long-prompt workload's streams (cycled).
pub const STREAM_PROMPTS: [&str; 4] = [
    "Once upon a time in a land far away,",
    "The history of the Roman Empire began",
    "In machine learning, a transformer is",
    "Today's weather is so",
];

/// Words each of which the GPT-2 tokenizer keeps as one token (with its leading space).
const WORDS: [&str; 16] = [
    "the", "old", "man", "walked", "down", "the", "long", "road", "to", "the", "river", "and",
    "sat", "by", "the", "water",
];

/// What the uniform workload's requests say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UniformPrompt {
    /// The same text every time.
    Fixed(String),
    /// A distinct prompt of about this many tokens per request: distinct from its first
    /// token, so no request can reuse another's prompt (as real clients' prompts differ).
    Tokens(u32),
    /// The same prefix of about this many tokens, then a distinct question (under 20
    /// tokens) per request.
    SharedPrefix(u32),
}

impl UniformPrompt {
    /// The prompt of request `i`.
    pub fn text(&self, i: u32) -> String {
        match self {
            UniformPrompt::Fixed(text) => text.clone(),
            UniformPrompt::Tokens(n) => {
                // " {i}" then words: GPT-2 keeps a number below 1000 as one token.
                let words: Vec<&str> = WORDS
                    .iter()
                    .copied()
                    .cycle()
                    .skip(i as usize % WORDS.len())
                    .take(n.saturating_sub(1) as usize)
                    .collect();
                format!("{i} {}", words.join(" ")).trim_end().to_string()
            }
            UniformPrompt::SharedPrefix(n) => format!(
                "{}\nQuestion {i}: what did the old man see by the river?\nAnswer:",
                long_prompt(*n)
            ),
        }
    }
}

/// A workload with every parameter decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// [`SEED`], all at once.
    Seed,
    /// Closed loop of `clients` clients sending `requests` requests in all.
    Uniform {
        clients: u32,
        requests: u32,
        max_tokens: u32,
        prompt: UniformPrompt,
    },
    /// `streams` streams of `max_tokens` tokens, then one prompt of ~`prompt_tokens`.
    LongPrompt {
        streams: u32,
        prompt_tokens: u32,
        max_tokens: u32,
    },
}

impl Plan {
    /// The plan `args` describe; an error names a flag that does not apply to the
    /// workload.
    pub fn from_args(a: &BenchArgs) -> Result<Plan> {
        use Workload::*;
        let flags: [(&str, bool, &[Workload]); 6] = [
            ("--clients", a.clients.is_some(), &[Uniform, SharedPrefix]),
            ("--requests", a.requests.is_some(), &[Uniform, SharedPrefix]),
            (
                "--max-tokens",
                a.max_tokens.is_some(),
                &[Uniform, LongPrompt, SharedPrefix],
            ),
            ("--prompt", a.prompt.is_some(), &[Uniform]),
            ("--streams", a.streams.is_some(), &[LongPrompt]),
            (
                "--prompt-tokens",
                a.prompt_tokens.is_some(),
                &[Uniform, LongPrompt, SharedPrefix],
            ),
        ];
        for (flag, given, applies) in flags {
            if given && !applies.contains(&a.workload) {
                let names: Vec<&str> = applies.iter().map(|w| w.name()).collect();
                bail!(
                    "{flag} does not apply to --workload {} (only to {})",
                    a.workload.name(),
                    names.join(", ")
                );
            }
        }
        Ok(match a.workload {
            Seed => Plan::Seed,
            Uniform => Plan::Uniform {
                clients: a.clients.unwrap_or(4),
                requests: a.requests.unwrap_or(32),
                max_tokens: a.max_tokens.unwrap_or(64),
                prompt: match &a.prompt {
                    Some(text) => UniformPrompt::Fixed(text.clone()),
                    None => UniformPrompt::Tokens(a.prompt_tokens.unwrap_or(16)),
                },
            },
            SharedPrefix => Plan::Uniform {
                clients: a.clients.unwrap_or(16),
                requests: a.requests.unwrap_or(32),
                max_tokens: a.max_tokens.unwrap_or(32),
                prompt: UniformPrompt::SharedPrefix(a.prompt_tokens.unwrap_or(500)),
            },
            LongPrompt => Plan::LongPrompt {
                streams: a.streams.unwrap_or(4),
                prompt_tokens: a.prompt_tokens.unwrap_or(900),
                max_tokens: a.max_tokens.unwrap_or(256),
            },
        })
    }

    /// Every prompt the plan sends, in submission order.
    pub fn prompts(&self) -> Vec<String> {
        match self {
            Plan::Seed => SEED.iter().map(|(p, _)| p.to_string()).collect(),
            Plan::Uniform {
                requests, prompt, ..
            } => (0..*requests).map(|i| prompt.text(i)).collect(),
            Plan::LongPrompt {
                streams,
                prompt_tokens,
                ..
            } => (0..*streams as usize)
                .map(|i| STREAM_PROMPTS[i % STREAM_PROMPTS.len()].to_string())
                .chain([long_prompt(*prompt_tokens)])
                .collect(),
        }
    }

    /// The workload this plan runs.
    pub fn workload(&self) -> Workload {
        match self {
            Plan::Seed => Workload::Seed,
            Plan::Uniform {
                prompt: UniformPrompt::SharedPrefix(_),
                ..
            } => Workload::SharedPrefix,
            Plan::Uniform { .. } => Workload::Uniform,
            Plan::LongPrompt { .. } => Workload::LongPrompt,
        }
    }
}

/// A greedy streaming request that ignores EOS, so it generates exactly `max_tokens`.
pub fn request(prompt: impl Into<String>, max_tokens: u32) -> GenerateRequest {
    GenerateRequest {
        max_tokens,
        ignore_eos: true,
        stream: true,
        ..GenerateRequest::new(prompt)
    }
}

/// A prompt of `tokens` words, about as many GPT-2 tokens.
pub fn long_prompt(tokens: u32) -> String {
    let words: Vec<&str> = WORDS
        .iter()
        .copied()
        .cycle()
        .take(tokens as usize)
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::args::{Cli, Command};
    use clap::Parser;

    fn plan(args: &[&str]) -> Result<Plan> {
        let argv = ["batchctl", "bench"].iter().chain(args);
        let Command::Bench(b) = Cli::try_parse_from(argv).unwrap().command else {
            panic!()
        };
        Plan::from_args(&b)
    }

    #[test]
    fn seed_is_611_tokens() {
        assert_eq!(SEED.iter().map(|(_, n)| n).sum::<u32>(), 611);
        assert_eq!(plan(&["--workload", "seed"]).unwrap(), Plan::Seed);
    }

    #[test]
    fn defaults_and_flags() {
        assert_eq!(
            plan(&["--workload", "uniform", "--clients", "2", "--prompt", "hi"]).unwrap(),
            Plan::Uniform {
                clients: 2,
                requests: 32,
                max_tokens: 64,
                prompt: UniformPrompt::Fixed("hi".into())
            }
        );
        assert_eq!(
            plan(&["--workload", "uniform", "--prompt-tokens", "100"]).unwrap(),
            Plan::Uniform {
                clients: 4,
                requests: 32,
                max_tokens: 64,
                prompt: UniformPrompt::Tokens(100)
            }
        );
        assert_eq!(
            plan(&["--workload", "long-prompt", "-n", "20"]).unwrap(),
            Plan::LongPrompt {
                streams: 4,
                prompt_tokens: 900,
                max_tokens: 20
            }
        );
    }

    #[test]
    fn flags_of_other_workloads_are_refused() {
        let e = plan(&["--workload", "seed", "--clients", "2"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--clients does not apply to --workload seed (only to uniform, shared-prefix)"
        );
        assert!(plan(&["--workload", "uniform", "--streams", "2"]).is_err());
        assert!(plan(&["--workload", "long-prompt", "--prompt", "x"]).is_err());
    }

    #[test]
    fn requests_are_greedy_exact_and_streaming() {
        let r = request("a", 7);
        assert!(r.sampling.is_greedy() && r.ignore_eos && r.stream);
        assert_eq!(r.max_tokens, 7);
    }

    #[test]
    fn uniform_prompts_are_distinct_from_their_first_token() {
        let p = UniformPrompt::Tokens(100);
        assert_eq!(p.text(7).split(' ').count(), 100);
        assert!(p.text(7).starts_with("7 "));
        let firsts: std::collections::HashSet<String> = (0..32)
            .map(|i| p.text(i).split(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(firsts.len(), 32);
        assert_eq!(UniformPrompt::Tokens(1).text(3), "3");
        let fixed = plan(&["--workload", "uniform", "--prompt", "hi", "--requests", "3"]);
        assert_eq!(fixed.unwrap().prompts(), ["hi", "hi", "hi"]);
    }

    #[test]
    fn shared_prefix_prompts_share_all_but_the_question() {
        let p = plan(&["--workload", "shared-prefix"]).unwrap();
        assert_eq!(p.workload(), Workload::SharedPrefix);
        let prompts = p.prompts();
        assert_eq!(prompts.len(), 32);
        let prefix = long_prompt(500);
        assert!(prompts.iter().all(|q| q.starts_with(&prefix)));
        assert_ne!(prompts[1], prompts[2]);
        let Plan::Uniform {
            clients,
            max_tokens,
            ..
        } = p
        else {
            panic!()
        };
        assert_eq!((clients, max_tokens), (16, 32));
    }

    #[test]
    fn long_prompt_has_the_words_asked_for() {
        let p = long_prompt(900);
        assert_eq!(p.split(' ').count(), 900);
        assert!(p.starts_with("the old man"));
        assert!(!p.ends_with(' '));
        assert_eq!(long_prompt(0), "");
    }
}
