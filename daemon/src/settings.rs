//! Every setting of the engine in one place: what the config file and flags resolve to,
//! and what a future auto-tuner would choose.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::engine::ComputeDevice;
use crate::policy::{Policy, PrefillChunk};

/// Sequence ids one llama.cpp context has at most (`LLAMA_MAX_SEQ`).
pub const MAX_SEQUENCES: u32 = 256;

/// An engine feature that can be left to the engine (`Auto`) or forced on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    Auto,
    On,
    Off,
}

impl Switch {
    /// Whether the feature is on, given what `Auto` resolves to.
    pub fn resolve(self, auto: bool) -> bool {
        match self {
            Switch::Auto => auto,
            Switch::On => true,
            Switch::Off => false,
        }
    }
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
    /// `None`: `n_batch` ([`EngineSettings::step_budget`]).
    pub step_budget: Option<u32>,
    /// Most prompt tokens per step while other sequences decode (`Auto`: sized from
    /// measured step times so running streams stay smooth).
    pub prefill_chunk: PrefillChunk,
    /// With `PrefillChunk::Auto`: how many times a decode-only step of every busy slot a
    /// step carrying prompt tokens may take. `None`: by device
    /// ([`EngineSettings::prefill_pace_on`]).
    pub prefill_pace: Option<f64>,
    /// Prefix cache budget in MiB (0: off); `None` sizes it from the KV cache, see
    /// [`prefix_cache_default`].
    pub prefix_cache_mb: Option<u64>,
    /// CPU threads for llama.cpp's compute. `None`: every core, except when every layer
    /// runs on a GPU: then 1, since the CPU only looks up token embeddings, and llama.cpp's
    /// OpenMP threads spinning on every core slow every step down (measured in
    /// `bench/README.md`).
    pub threads: Option<u32>,
    pub policy: Policy,
    /// Requests that may wait for a slot before new ones are refused as busy.
    pub queue_capacity: u32,
    /// Flash attention. `Auto` (the default) leaves it to llama.cpp, which turns it on
    /// wherever the backend supports it, CPU and CUDA included: it is the faster kernel on
    /// both (bench/README.md). Its CPU kernel picks its code path (split-KV, per-row,
    /// tiled) from the shape of each micro-batch, so a greedy request's tokens can depend
    /// on what it was packed with; the README says what holds in which mode.
    pub flash_attention: Switch,
    /// One KV buffer shared by all sequences instead of a stream per sequence.
    pub kv_unified: bool,
    /// Layers offloaded to a GPU backend (ignored on CPU builds).
    pub gpu_layers: u32,
    /// Greedy requests pick their token on the compute device (an argmax in llama.cpp's
    /// graph), so only token ids come back instead of every sequence's full-vocabulary
    /// logits. `Auto` is off: llama.cpp runs one argmax and one copy per sequence, which
    /// measured slower than the host's vectorized, multi-threaded argmax over the copied
    /// logits with many sequences, and faster with few (`bench/README.md`); `On` is there
    /// for such setups.
    pub device_sampling: Switch,
    /// Greedy output independent of what a request is packed with, on every x86-64 and
    /// ARM CPU tier, at the cost in `bench/README.md`: the adapter shapes each step so
    /// every token meets the same CPU kernels (`engine/det.rs`). Needs a KV stream per
    /// sequence and flash attention's per-row path; CPU only.
    pub deterministic: bool,
    /// Runs each kind of step once at start (`engine/llama/warmup.rs`), so the first steps
    /// of each new shape on a GPU do not pay for loading its kernels. `Auto` is off for
    /// now: the one GPU run that crashed (a CUDA illegal instruction) had it on, and until
    /// that is understood it is a choice (bench/README.md); on a CPU there is nothing to
    /// load.
    pub warmup: Switch,
}

impl EngineSettings {
    /// The thread count `threads` resolves to for a model placed on `device`.
    pub fn threads_for(&self, device: &ComputeDevice) -> u32 {
        self.threads.unwrap_or_else(|| {
            if device.all_layers_on_gpu {
                1
            } else {
                std::thread::available_parallelism().map_or(4, |n| n.get() as u32)
            }
        })
    }

    /// The pace for a model placed on `device`: unless set, [`crate::policy::GPU_PACE`]
    /// when every layer runs on a GPU, where a pass costs more than its prompt tokens, else
    /// [`crate::policy::DEFAULT_PACE`].
    pub fn prefill_pace_on(&self, device: &ComputeDevice) -> f64 {
        self.prefill_pace.unwrap_or(if device.all_layers_on_gpu {
            crate::policy::GPU_PACE
        } else {
            crate::policy::DEFAULT_PACE
        })
    }

    /// The step budget: unless set, the whole batch, so that prompts arriving together are
    /// prefilled in one step and, on a GPU, the pacer's chunks may grow past a micro-batch
    /// (both measured faster, bench/README.md).
    pub fn step_budget(&self) -> u32 {
        self.step_budget.unwrap_or(self.n_batch)
    }

    /// Defaults for `model` on this machine.
    pub fn new(model: PathBuf) -> Self {
        Self {
            model,
            slots: 16,
            n_ctx: None,
            n_batch: 2048,
            n_ubatch: 512,
            step_budget: None,
            prefill_chunk: PrefillChunk::Auto,
            prefill_pace: None,
            prefix_cache_mb: None,
            threads: None,
            policy: Policy::Continuous,
            queue_capacity: 1024,
            flash_attention: Switch::Auto,
            kv_unified: false,
            gpu_layers: u32::MAX,
            device_sampling: Switch::Auto,
            deterministic: false,
            warmup: Switch::Auto,
        }
    }

    /// Checks values that would make the engine misbehave.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots == 0 || self.slots > MAX_SEQUENCES {
            return Err(format!(
                "slots must be 1..={MAX_SEQUENCES} (got {})",
                self.slots
            ));
        }
        if let Some(pace) = self.prefill_pace.filter(|p| !(*p > 1.0 && p.is_finite())) {
            return Err(format!(
                "prefill_pace must be a number above 1 (got {pace})"
            ));
        }
        if self.n_batch == 0 || self.n_ubatch == 0 || self.threads == Some(0) {
            return Err("batch, ubatch and threads must be positive".into());
        }
        if self.device_sampling == Switch::On && self.slots > MAX_SEQUENCES / 2 {
            return Err(format!(
                "device sampling needs two sequence ids per slot: at most {} slots (got {})",
                MAX_SEQUENCES / 2,
                self.slots
            ));
        }
        if self.deterministic {
            if self.kv_unified {
                return Err(
                    "--deterministic needs a KV stream per sequence (kv_unified off)".into(),
                );
            }
            if self.flash_attention == Switch::Off {
                return Err("--deterministic runs flash attention's per-row path: flash_attn must be on or auto".into());
            }
            if self.device_sampling == Switch::On {
                return Err("--deterministic picks every token on the host: device_sampling must be off or auto".into());
            }
            if self.n_ubatch.min(self.n_batch) < 2 {
                return Err(
                    "--deterministic runs steps of at least two tokens: ubatch must be 2 or more"
                        .into(),
                );
            }
        }
        let budget = self.step_budget();
        if budget < self.slots || budget > self.n_batch {
            return Err(format!(
                "the step budget ({budget}) must be at least the slot count ({}) and at most the batch size ({})",
                self.slots, self.n_batch
            ));
        }
        Ok(())
    }
}

/// The prefix cache's default budget in bytes: as much as the KV cache itself (`kv_bytes`),
/// which holds every running sequence's positions, so the cache can keep that many again;
/// but at most a quarter of the memory available now (`available`, when known), so a big
/// context on a small machine does not push it into swap.
pub fn prefix_cache_default(kv_bytes: u64, available: Option<u64>) -> u64 {
    available.map_or(kv_bytes, |a| kv_bytes.min(a / 4))
}

/// `MemAvailable` from `/proc/meminfo`, in bytes.
pub fn memory_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(gpu_layers: u32, all: bool) -> ComputeDevice {
        ComputeDevice {
            backend: if gpu_layers > 0 { "cuda" } else { "cpu" }.into(),
            name: "test".into(),
            gpu_layers,
            all_layers_on_gpu: all,
        }
    }

    #[test]
    fn auto_switches_follow_the_device() {
        assert!(Switch::Auto.resolve(true) && !Switch::Auto.resolve(false));
        assert!(Switch::On.resolve(false) && !Switch::Off.resolve(true));
    }

    #[test]
    fn threads_default_to_one_only_when_every_layer_is_on_the_gpu() {
        let mut s = EngineSettings::new("m.gguf".into());
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get() as u32);
        assert_eq!(s.threads_for(&device(0, false)), cores);
        assert_eq!(s.threads_for(&device(5, false)), cores, "partial offload");
        assert_eq!(s.threads_for(&device(13, true)), 1);
        s.threads = Some(3);
        assert_eq!(
            s.threads_for(&device(13, true)),
            3,
            "an explicit count wins"
        );
    }

    #[test]
    fn the_step_budget_is_the_whole_batch_unless_set() {
        let mut s = EngineSettings::new("m.gguf".into());
        assert_eq!(s.step_budget(), s.n_batch);
        s.n_batch = 256;
        assert_eq!(s.step_budget(), 256);
        s.step_budget = Some(1024);
        assert!(s.validate().unwrap_err().contains("step budget (1024)"));
        s.n_batch = 2048;
        assert_eq!(s.step_budget(), 1024, "an explicit budget wins");
        s.step_budget = None;
        s.slots = 16;
        s.n_batch = 8;
        assert!(s.validate().unwrap_err().contains("step budget (8)"));
    }

    #[test]
    fn the_prefill_pace_must_leave_room_for_prompt_tokens() {
        let mut s = EngineSettings::new("m.gguf".into());
        assert!(s.validate().is_ok());
        for bad in [1.0, 0.5, f64::NAN, f64::INFINITY] {
            s.prefill_pace = Some(bad);
            let err = s.validate().unwrap_err();
            assert!(
                err.contains("prefill_pace must be a number above 1"),
                "{err}"
            );
        }
        s.prefill_pace = Some(1.5);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn the_pace_defaults_by_device_unless_set() {
        let mut s = EngineSettings::new("m.gguf".into());
        assert_eq!(
            s.prefill_pace_on(&device(0, false)),
            crate::policy::DEFAULT_PACE
        );
        assert_eq!(
            s.prefill_pace_on(&device(13, true)),
            crate::policy::GPU_PACE
        );
        assert_eq!(
            s.prefill_pace_on(&device(6, false)),
            crate::policy::DEFAULT_PACE
        );
        s.prefill_pace = Some(5.0);
        assert_eq!(s.prefill_pace_on(&device(13, true)), 5.0);
    }

    #[test]
    fn device_sampling_on_needs_two_ids_per_slot() {
        let mut s = EngineSettings::new("m.gguf".into());
        s.slots = MAX_SEQUENCES / 2 + 1;
        assert!(s.validate().is_ok(), "auto falls back to host sampling");
        s.device_sampling = Switch::On;
        assert!(s.validate().unwrap_err().contains("at most 128 slots"));
        s.slots = MAX_SEQUENCES / 2;
        assert!(s.validate().is_ok());
        s.threads = Some(0);
        assert!(s.validate().is_err());
    }

    #[test]
    fn deterministic_refuses_the_settings_it_cannot_keep_its_promise_with() {
        let mut s = EngineSettings::new("m.gguf".into());
        s.deterministic = true;
        assert!(s.validate().is_ok());
        s.kv_unified = true;
        assert!(s.validate().unwrap_err().contains("KV stream"));
        s.kv_unified = false;
        s.flash_attention = Switch::Off;
        assert!(s.validate().unwrap_err().contains("flash"));
        s.flash_attention = Switch::On;
        s.device_sampling = Switch::On;
        assert!(s.validate().unwrap_err().contains("device_sampling"));
        s.device_sampling = Switch::Auto;
        s.n_ubatch = 1;
        assert!(s.validate().unwrap_err().contains("ubatch"));
    }
}
