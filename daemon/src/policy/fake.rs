//! A deterministic stand-in for the model, for unit tests of the policy.

use std::collections::HashMap;

use batchd_protocol::Sampling;

use super::{logprobs, Engine, EngineError, Logprobs, SnapshotId, StepBatch, Token};

/// The end-of-text token of the fake vocabulary.
pub const EOS: Token = 0;

/// Each slot's "model" output depends only on that slot's own token history, like a real
/// model with a correct block-diagonal mask: packing must not change results.
pub struct FakeEngine {
    /// Tokens in each slot's KV, by position.
    pub kv: Vec<Vec<Token>>,
    /// Every batch decoded, in order.
    pub batches: Vec<StepBatch>,
    /// Total KV cells; a batch that would exceed them is refused.
    pub kv_cells: usize,
    /// Token sequences that produce EOS next (to test EOS handling).
    pub eos_after: Option<usize>,
    pub released: Vec<usize>,
    /// Saved KV, by snapshot id.
    pub snapshots: HashMap<SnapshotId, Vec<Token>>,
    /// Slots begun with logprobs (only they may be asked for them).
    pub logprobs: Vec<bool>,
    /// What it reports as [`Engine::pass_tokens`] (0, as a unified KV cache).
    pub pass_tokens: usize,
    last: StepBatch,
}

/// Bytes a fake snapshot takes per position (GPT-2 small's f16 KV is about 36 KiB).
pub const FAKE_SNAPSHOT_BYTES_PER_TOKEN: usize = 1000;

impl FakeEngine {
    pub fn new(slots: usize) -> Self {
        Self {
            kv: vec![Vec::new(); slots],
            batches: Vec::new(),
            kv_cells: usize::MAX,
            eos_after: None,
            released: Vec::new(),
            snapshots: HashMap::new(),
            logprobs: vec![false; slots],
            pass_tokens: 0,
            last: StepBatch::default(),
        }
    }

    fn used(&self) -> usize {
        self.kv.iter().map(Vec::len).sum()
    }

    /// The "model's" next token for `slot`: a hash of its history.
    fn next(&self, slot: usize) -> Token {
        let history = &self.kv[slot];
        if self.eos_after.is_some_and(|n| history.len() >= n) {
            return EOS;
        }
        let h = history.iter().fold(1469598103u64, |h, &t| {
            (h ^ t as u64).wrapping_mul(1099511628211)
        });
        1 + (h % 26) as Token
    }
}

impl Engine for FakeEngine {
    /// One token per byte, `a`..`z` being 1..26; an empty text starts from EOS, as
    /// GPT-2's beginning-of-text token is its end-of-text token.
    fn tokenize(&self, text: &str) -> Vec<Token> {
        if text.is_empty() {
            return vec![EOS];
        }
        text.bytes()
            .map(|b| 1 + (b.wrapping_sub(b'a') % 26) as Token)
            .collect()
    }

    fn decode(&mut self, batch: &StepBatch) -> Result<(), EngineError> {
        if self.used() + batch.tokens.len() > self.kv_cells {
            return Err(EngineError::KvFull);
        }
        for t in &batch.tokens {
            let kv = &mut self.kv[t.slot];
            assert_eq!(
                kv.len() as u32,
                t.pos,
                "positions are contiguous per sequence"
            );
            kv.push(t.token);
        }
        self.batches.push(batch.clone());
        self.last = batch.clone();
        Ok(())
    }

    fn begin(&mut self, slot: usize, _sampling: &Sampling, logprobs: bool) {
        assert!(
            self.kv[slot].is_empty(),
            "slot {slot} reused without release"
        );
        self.logprobs[slot] = logprobs;
    }

    fn sample(&mut self, slot: usize, batch_index: usize) -> Token {
        let t = self.last.tokens[batch_index];
        assert!(t.logits && t.slot == slot);
        self.next(slot)
    }

    /// Logits over the 27 tokens that fall by half a nat per token after the greedy pick
    /// (wrapping around), so the pick is always the most likely.
    fn logprobs(&self, batch_index: usize, chosen: Token, top: usize) -> Logprobs {
        let t = self.last.tokens[batch_index];
        assert!(
            t.logits && self.logprobs[t.slot],
            "logprobs were not asked for"
        );
        let pick = self.next(t.slot);
        let row: Vec<f32> = (0..27)
            .map(|t| -0.5 * ((t + 27 - pick) % 27) as f32)
            .collect();
        logprobs::from_logits(&row, chosen, top)
    }

    fn release(&mut self, slot: usize) {
        self.kv[slot].clear();
        self.logprobs[slot] = false;
        self.released.push(slot);
    }

    fn save(&mut self, slot: usize, id: SnapshotId) -> Option<usize> {
        let kv = self.kv[slot].clone();
        let bytes = kv.len() * FAKE_SNAPSHOT_BYTES_PER_TOKEN;
        self.snapshots.insert(id, kv);
        Some(bytes)
    }

    fn restore(&mut self, slot: usize, id: SnapshotId, len: u32) -> bool {
        assert!(self.kv[slot].is_empty(), "restore into a used slot {slot}");
        let Some(snapshot) = self.snapshots.get(&id) else {
            return false;
        };
        assert!(len as usize <= snapshot.len(), "restore past the snapshot");
        self.kv[slot] = snapshot[..len as usize].to_vec();
        true
    }

    fn forget(&mut self, id: SnapshotId) {
        assert!(self.snapshots.remove(&id).is_some(), "forget unknown {id}");
    }

    fn pass_tokens(&self) -> usize {
        self.pass_tokens
    }

    fn is_eog(&self, token: Token) -> bool {
        token == EOS
    }

    fn token_bytes(&self, token: Token, out: &mut Vec<u8>) {
        out.push(b'a' + (token as u8 - 1));
    }
}
