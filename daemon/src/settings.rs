//! Every setting of the engine in one place: what the config file and flags resolve to,
//! and what a future auto-tuner would choose.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::policy::{Policy, PrefillChunk};

/// Flash attention: let llama.cpp decide, or force it. The default is `Off`: llama.cpp's
/// CPU flash-attention kernel picks its code path (split-KV, per-row, tiled) from the
/// shape of each micro-batch, so with it a greedy request's tokens can depend on what it
/// was packed with. Without it they don't (tested). `On` is faster (about +35% decode at
/// 16 sequences on the AVX-512 dev machine) where that guarantee is not needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FlashAttention {
    Auto,
    On,
    Off,
}

/// Resolved settings of the engine.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    /// GGUF model to serve.
    pub model: PathBuf,
    /// Sequences run at once (each has its own sequence id).
    pub slots: u32,
    /// KV cache size in tokens; `None` gives every slot the model's full trained context.
    pub n_ctx: Option<u32>,
    /// Most tokens one `llama_decode` accepts.
    pub n_batch: u32,
    /// Tokens per internal compute chunk.
    pub n_ubatch: u32,
    /// Most tokens in one step (decodes first, then prefill chunks); at most `n_batch`.
    pub step_budget: u32,
    /// Most prompt tokens per step while other sequences decode (`Auto`: sized from
    /// measured step times so running streams stay smooth).
    pub prefill_chunk: PrefillChunk,
    /// CPU threads for compute.
    pub threads: u32,
    pub policy: Policy,
    /// Requests that may wait for a slot before new ones are refused as busy.
    pub queue_capacity: u32,
    pub flash_attention: FlashAttention,
    /// One KV buffer shared by all sequences instead of a stream per sequence.
    pub kv_unified: bool,
    /// Layers offloaded to a GPU backend (ignored on CPU builds).
    pub gpu_layers: u32,
}

impl EngineSettings {
    /// Defaults for `model` on this machine.
    pub fn new(model: PathBuf) -> Self {
        let threads = std::thread::available_parallelism().map_or(4, |n| n.get() as u32);
        Self {
            model,
            slots: 16,
            n_ctx: None,
            n_batch: 512,
            n_ubatch: 512,
            step_budget: 512,
            prefill_chunk: PrefillChunk::Auto,
            threads,
            policy: Policy::Continuous,
            queue_capacity: 1024,
            flash_attention: FlashAttention::Off,
            kv_unified: false,
            gpu_layers: u32::MAX,
        }
    }

    /// Checks values that would make the engine misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots == 0 || self.slots > 256 {
            return Err(format!("slots must be 1..=256 (got {})", self.slots));
        }
        if self.n_batch == 0 || self.n_ubatch == 0 || self.threads == 0 {
            return Err("batch, ubatch and threads must be positive".into());
        }
        if self.step_budget < self.slots || self.step_budget > self.n_batch {
            return Err(format!(
                "the step budget ({}) must be at least the slot count ({}) and at most the batch size ({})",
                self.step_budget, self.slots, self.n_batch
            ));
        }
        Ok(())
    }
}
