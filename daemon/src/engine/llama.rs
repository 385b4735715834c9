//! The thin adapter from the policy's [`Engine`] trait to llama.cpp.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use anyhow::anyhow;
use batchd_protocol::Sampling;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;

use crate::policy::{Engine, EngineError, StepBatch, Token};
use crate::settings::{EngineSettings, FlashAttention};

/// The process-wide llama.cpp backend (llama.cpp may be initialised only once).
pub fn init_backend() -> anyhow::Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| format!("initialising llama.cpp: {e}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// A llama.cpp context with one sequence id per running slot.
///
/// llama.cpp splits a batch into micro-batches that may only hold *consecutive* sequence
/// ids, in order, when each sequence has its own KV stream. Slots come and go in any
/// order, so the adapter keeps the live sequences' ids dense (`0..n_live`): when one ends,
/// the highest id moves into its place (a KV stream copy), and each batch is handed to
/// llama.cpp sorted by sequence id. Otherwise a step over slots {0, 2, 5} would run as
/// three forward passes.
pub struct LlamaEngine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    samplers: Vec<Option<LlamaSampler>>,
    /// Sequence id of each slot's sequence.
    seq_of_slot: Vec<Option<i32>>,
    /// Slot of each live sequence id (`0..n_live`).
    slot_of_seq: Vec<usize>,
    /// Where each policy batch index went in the llama.cpp batch.
    order: Vec<usize>,
}

impl<'m> LlamaEngine<'m> {
    /// Creates the context for `settings`. The KV cache holds `settings.n_ctx` tokens, by
    /// default the model's trained context for every slot.
    pub fn new(
        backend: &LlamaBackend,
        model: &'m LlamaModel,
        settings: &EngineSettings,
    ) -> anyhow::Result<Self> {
        let n_ctx = settings
            .n_ctx
            .unwrap_or(model.n_ctx_train().saturating_mul(settings.slots));
        let flash = match settings.flash_attention {
            FlashAttention::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(settings.n_batch)
            .with_n_ubatch(settings.n_ubatch.min(settings.n_batch))
            .with_n_seq_max(settings.slots)
            .with_n_threads(settings.threads as i32)
            .with_n_threads_batch(settings.threads as i32)
            .with_kv_unified(settings.kv_unified)
            .with_flash_attention_policy(flash);
        let ctx = model
            .new_context(backend, params)
            .map_err(|e| anyhow!("creating the llama.cpp context: {e}"))?;
        Ok(Self {
            model,
            ctx,
            batch: LlamaBatch::new(settings.n_batch as usize, 1),
            samplers: (0..settings.slots).map(|_| None).collect(),
            seq_of_slot: vec![None; settings.slots as usize],
            slot_of_seq: Vec::with_capacity(settings.slots as usize),
            order: Vec::new(),
        })
    }

    /// KV cells in the whole cache, as llama.cpp sized it.
    pub fn n_ctx(&self) -> u32 {
        self.ctx.n_ctx()
    }

    fn argmax(&self, batch_index: usize) -> Token {
        let logits = self.ctx.get_logits_ith(batch_index as i32);
        let mut best = 0;
        let mut best_value = f32::NEG_INFINITY;
        for (i, &v) in logits.iter().enumerate() {
            if v > best_value {
                best_value = v;
                best = i;
            }
        }
        best as Token
    }
}

/// The sampler chain for non-greedy requests (greedy ones take the argmax directly).
fn sampler_chain(n_vocab: i32, s: &Sampling) -> LlamaSampler {
    let mut chain = Vec::new();
    if s.repeat_penalty != 1.0 {
        chain.push(LlamaSampler::penalties(
            n_vocab,
            s.repeat_last_n as i32,
            s.repeat_penalty,
            0.0,
            0.0,
        ));
    }
    if s.temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
        return LlamaSampler::chain_simple(chain);
    }
    if s.top_k > 0 {
        chain.push(LlamaSampler::top_k(s.top_k as i32));
    }
    if s.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(s.top_p, 1));
    }
    if s.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(s.min_p, 1));
    }
    chain.push(LlamaSampler::temp(s.temperature));
    chain.push(LlamaSampler::dist(s.seed));
    LlamaSampler::chain_simple(chain)
}

impl Engine for LlamaEngine<'_> {
    fn decode(&mut self, batch: &StepBatch) -> Result<(), EngineError> {
        let seq = |slot: usize| self.seq_of_slot[slot].expect("batched slot has begun");
        // Sort by sequence id (stable: a prompt chunk keeps its order).
        let mut sorted: Vec<usize> = (0..batch.tokens.len()).collect();
        sorted.sort_by_key(|&i| seq(batch.tokens[i].slot));
        self.order.resize(batch.tokens.len(), 0);
        for (llama_index, &i) in sorted.iter().enumerate() {
            self.order[i] = llama_index;
        }
        self.batch.clear();
        for &i in &sorted {
            let t = &batch.tokens[i];
            self.batch
                .add(
                    LlamaToken(t.token as i32),
                    t.pos as i32,
                    &[seq(t.slot)],
                    t.logits,
                )
                .map_err(|e| EngineError::Failed(e.to_string()))?;
        }
        match self.ctx.decode(&mut self.batch) {
            Ok(()) => Ok(()),
            Err(DecodeError::NoKvCacheSlot) => Err(EngineError::KvFull),
            Err(e) => Err(EngineError::Failed(e.to_string())),
        }
    }

    fn begin(&mut self, slot: usize, sampling: &Sampling) {
        if self.seq_of_slot[slot].is_none() {
            self.seq_of_slot[slot] = Some(self.slot_of_seq.len() as i32);
            self.slot_of_seq.push(slot);
        }
        self.samplers[slot] =
            (!sampling.is_greedy()).then(|| sampler_chain(self.model.n_vocab(), sampling));
    }

    fn sample(&mut self, slot: usize, batch_index: usize) -> Token {
        let i = self.order[batch_index];
        match self.samplers[slot].as_mut() {
            Some(sampler) => sampler.sample(&self.ctx, i as i32).0 as Token,
            None => self.argmax(i),
        }
    }

    fn release(&mut self, slot: usize) {
        self.samplers[slot] = None;
        let Some(seq) = self.seq_of_slot[slot].take() else {
            return;
        };
        // Removing a whole sequence cannot fail for a valid id.
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        let last = self.slot_of_seq.len() as i32 - 1;
        let last_slot = self.slot_of_seq.pop().expect("a live sequence");
        if seq != last {
            // Keep ids dense: the highest id takes over the freed one.
            let _ = self.ctx.copy_kv_cache_seq(last, seq, None, None);
            let _ = self.ctx.clear_kv_cache_seq(Some(last as u32), None, None);
            self.seq_of_slot[last_slot] = Some(seq);
            self.slot_of_seq[seq as usize] = last_slot;
        }
    }

    fn is_eog(&self, token: Token) -> bool {
        self.model.vocab().is_eog(LlamaToken(token as i32))
    }

    fn token_bytes(&self, token: Token, out: &mut Vec<u8>) {
        self.model
            .vocab()
            .token_to_piece_into(LlamaToken(token as i32), out, false, None);
    }
}
