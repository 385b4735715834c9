//! `--deterministic` steps: the same batch as the other path, cut into the calls that keep
//! every token on the same CPU kernels (see `engine/det.rs`).

use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;

use super::super::{det, greedy};
use super::LlamaEngine;
use crate::policy::{EngineError, StepBatch, Token};

impl LlamaEngine<'_> {
    /// A step in deterministic mode: one `llama_decode` per [`det::Call`], each output's
    /// token picked before the next call overwrites the logits.
    ///
    /// With a KV stream per sequence, a sequence's cells are its own, so a call cannot
    /// run out of them once an earlier call of the step succeeded (`max_positions` keeps
    /// every sequence within its stream, with a cell to spare for the padding).
    pub(super) fn decode_deterministic(&mut self, batch: &StepBatch) -> Result<(), EngineError> {
        let toks: Vec<det::Tok> = batch
            .tokens
            .iter()
            .map(|t| det::Tok {
                seq: self.seq_of_slot[t.slot].expect("batched slot has begun"),
                logits: t.logits,
            })
            .collect();
        let calls = det::plan(&toks, self.n_ubatch);
        self.kept_rows.clear();
        self.host_picks.clear();
        self.host_picks.resize(batch.tokens.len(), None);
        let add = |b: &mut LlamaBatch, token: Token, pos: u32, seq: i32, logits: bool| {
            b.add(LlamaToken(token as i32), pos as i32, &[seq], logits)
                .map_err(|e| EngineError::Failed(e.to_string()))
        };
        for call in &calls {
            self.batch.clear();
            for &i in &call.tokens {
                let t = &batch.tokens[i];
                let logits = t.logits || call.extra_output == Some(i);
                add(&mut self.batch, t.token, t.pos, toks[i].seq, logits)?;
            }
            let pad = call.pad.then(|| {
                let i = call.tokens[0];
                (toks[i].seq, batch.tokens[i].pos + 1)
            });
            if let Some((seq, pos)) = pad {
                let t = &batch.tokens[call.tokens[0]];
                add(&mut self.batch, t.token, pos, seq, t.logits)?;
            }
            match self.ctx.decode(&mut self.batch) {
                Ok(()) => {}
                Err(DecodeError::NoKvCacheSlot) => return Err(EngineError::KvFull),
                Err(e) => return Err(EngineError::Failed(e.to_string())),
            }
            for (k, &i) in call.tokens.iter().enumerate() {
                if !batch.tokens[i].logits {
                    continue;
                }
                let slot = batch.tokens[i].slot;
                if self.wants_logprobs[slot] {
                    self.kept_rows
                        .insert(i, self.ctx.get_logits_ith(k as i32).to_vec());
                }
                let pick = match self.samplers[slot].as_mut() {
                    Some(sampler) => sampler.sample(&self.ctx, k as i32).0 as Token,
                    None => greedy::argmax(self.ctx.get_logits_ith(k as i32)) as Token,
                };
                self.host_picks[i] = Some(pick);
            }
            if let Some((seq, pos)) = pad {
                // Removing a range of a valid sequence cannot fail.
                let _ = self
                    .ctx
                    .clear_kv_cache_seq(Some(seq as u32), Some(pos), Some(pos + 1));
            }
        }
        self.passes = calls.len() as u32;
        Ok(())
    }
}
