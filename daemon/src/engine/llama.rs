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

/// A llama.cpp context with one sequence id per slot.
pub struct LlamaEngine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    samplers: Vec<Option<LlamaSampler>>,
}

impl<'m> LlamaEngine<'m> {
    /// Creates the context for `settings` (`n_ctx` is the KV cache's total size).
    pub fn new(
        backend: &LlamaBackend,
        model: &'m LlamaModel,
        settings: &EngineSettings,
        n_ctx: u32,
    ) -> anyhow::Result<Self> {
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
        self.batch.clear();
        for t in &batch.tokens {
            self.batch
                .add(
                    LlamaToken(t.token as i32),
                    t.pos as i32,
                    &[t.slot as i32],
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
        self.samplers[slot] =
            (!sampling.is_greedy()).then(|| sampler_chain(self.model.n_vocab(), sampling));
    }

    fn sample(&mut self, slot: usize, batch_index: usize) -> Token {
        match self.samplers[slot].as_mut() {
            Some(sampler) => sampler.sample(&self.ctx, batch_index as i32).0 as Token,
            None => self.argmax(batch_index),
        }
    }

    fn release(&mut self, slot: usize) {
        // Removing a whole sequence cannot fail for a valid slot id.
        let _ = self.ctx.clear_kv_cache_seq(Some(slot as u32), None, None);
        self.samplers[slot] = None;
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
