//! The real GPT-2 byte-level BPE vocabulary, embedded in the binary.
//!
//! The files are the project's copy in `assets/gpt2-tokenizer/` (see its README); their
//! sha256 digests are pinned by a unit test.

use anyhow::{bail, ensure, Context};
use std::collections::HashMap;

/// `encoder.json`: token string → id.
pub const ENCODER_JSON: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../assets/gpt2-tokenizer/encoder.json"
));

/// `vocab.bpe`: a `#version` header line, then one merge rule (`"a b"`) per line.
pub const VOCAB_BPE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../assets/gpt2-tokenizer/vocab.bpe"
));

/// sha256 of [`ENCODER_JSON`] (the digest tiktoken pins for its `gpt2` encoding).
pub const ENCODER_JSON_SHA256: &str =
    "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783";

/// sha256 of [`VOCAB_BPE`].
pub const VOCAB_BPE_SHA256: &str =
    "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5";

/// Number of tokens in the GPT-2 vocabulary.
pub const N_VOCAB: usize = 50257;

/// Number of BPE merge rules in `vocab.bpe`.
pub const N_MERGES: usize = 50000;

/// Id of `<|endoftext|>`, GPT-2's only special token (used as both BOS and EOS).
pub const EOT_TOKEN_ID: u32 = 50256;

/// The GPT-2 vocabulary as llama.cpp wants it in GGUF metadata.
pub struct Gpt2Vocab {
    /// Token strings ordered by id, in GPT-2's byte-level unicode form (as in `encoder.json`).
    pub tokens: Vec<String>,
    /// Merge rules in rank order, each `"left right"`.
    pub merges: Vec<String>,
}

impl Gpt2Vocab {
    /// Parses the embedded tokenizer files.
    pub fn load() -> anyhow::Result<Self> {
        let encoder: HashMap<String, u32> =
            serde_json::from_slice(ENCODER_JSON).context("parsing encoder.json")?;
        ensure!(
            encoder.len() == N_VOCAB,
            "encoder.json has {} entries, expected {N_VOCAB}",
            encoder.len()
        );
        let mut slots: Vec<Option<String>> = vec![None; N_VOCAB];
        for (token, id) in encoder {
            let slot = slots
                .get_mut(id as usize)
                .with_context(|| format!("token id {id} out of range"))?;
            if slot.replace(token).is_some() {
                bail!("duplicate token id {id} in encoder.json");
            }
        }
        // Every slot is filled: N_VOCAB distinct ids below N_VOCAB.
        let tokens: Vec<String> = slots.into_iter().flatten().collect();

        let mut lines = VOCAB_BPE.lines();
        let header = lines.next().unwrap_or_default();
        ensure!(
            header.starts_with("#version"),
            "vocab.bpe: unexpected header {header:?}"
        );
        let merges: Vec<String> = lines.filter(|l| !l.is_empty()).map(str::to_owned).collect();
        ensure!(
            merges.len() == N_MERGES,
            "vocab.bpe has {} merges, expected {N_MERGES}",
            merges.len()
        );
        Ok(Self { tokens, merges })
    }
}

/// The raw bytes a GPT-2 token string stands for (the inverse of GPT-2's `bytes_to_unicode`:
/// printable Latin-1 characters map to themselves, the other 68 bytes to U+0100..U+0143).
/// `None` if the string holds a character outside that alphabet (e.g. `<|endoftext|>` does
/// not, but it is special and should not be decoded this way anyway).
pub fn token_bytes(token: &str) -> Option<Vec<u8>> {
    let mut unicode_to_byte = [None::<u8>; 0x144];
    let mut next = 0x100usize;
    for b in 0..=255u8 {
        let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        if printable {
            unicode_to_byte[usize::from(b)] = Some(b);
        } else {
            unicode_to_byte[next] = Some(b);
            next += 1;
        }
    }
    token
        .chars()
        .map(|c| unicode_to_byte.get(c as usize).copied().flatten())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn hex_sha256(data: &[u8]) -> String {
        Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    #[test]
    fn embedded_files_match_pinned_digests() {
        assert_eq!(hex_sha256(ENCODER_JSON), ENCODER_JSON_SHA256);
        assert_eq!(hex_sha256(VOCAB_BPE.as_bytes()), VOCAB_BPE_SHA256);
    }

    #[test]
    fn vocab_parses() {
        let v = Gpt2Vocab::load().unwrap();
        assert_eq!(v.tokens.len(), N_VOCAB);
        assert_eq!(v.tokens[0], "!");
        assert_eq!(v.tokens[15496], "Hello");
        assert_eq!(v.tokens[995], "\u{120}world");
        assert_eq!(v.tokens[EOT_TOKEN_ID as usize], "<|endoftext|>");
        assert_eq!(v.merges[0], "\u{120} t");
        assert_eq!(v.merges.last().unwrap(), "\u{120}g azed");
    }

    #[test]
    fn token_bytes_inverts_byte_level_alphabet() {
        assert_eq!(token_bytes("\u{120}world").unwrap(), b" world");
        assert_eq!(token_bytes("\u{10A}").unwrap(), b"\n");
        assert_eq!(token_bytes("\u{100}").unwrap(), [0u8]);
        assert_eq!(token_bytes("\u{143}").unwrap(), [0xADu8]);
        assert_eq!(token_bytes("\u{144}"), None);
        // All 50256 ordinary tokens decode, and the 256 single-byte ones are distinct.
        let v = Gpt2Vocab::load().unwrap();
        let mut singles = std::collections::HashSet::new();
        for t in &v.tokens[..EOT_TOKEN_ID as usize] {
            let bytes = token_bytes(t).unwrap();
            if bytes.len() == 1 {
                singles.insert(bytes[0]);
            }
        }
        assert_eq!(singles.len(), 256);
    }
}
