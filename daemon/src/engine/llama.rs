//! The thin adapter from the policy's [`Engine`] trait to llama.cpp.
//!
//! One file past 400 lines: every method here reads or writes the same context, batch and
//! sequence-id pools, which is the one thing this file is; the deterministic step path,
//! the other idea, is in `llama/deterministic.rs`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use batchd_protocol::Sampling;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::DecodeError;

mod deterministic;
mod warmup;

use super::seq_pool::SeqPool;
use super::{greedy, split, LoadedModel};
use crate::policy::{logprobs, Engine, EngineError, Logprobs, SnapshotId, StepBatch, Token};
use crate::settings::{EngineSettings, Switch};

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
/// order, so the adapter keeps the live sequences' ids dense within their pool (see
/// [`SeqPool`]), and each batch is handed to llama.cpp sorted by sequence id. Otherwise a
/// step over slots {0, 2, 5} would run as three forward passes. A sequence takes its id
/// only when it first decodes (or restores a prefix): a prompt still waiting for its
/// first chunk holds no id between the others', and the prompts that start in one step
/// take consecutive ids, so their chunks can share a pass.
///
/// With device sampling, ids `0..slots` carry a greedy sampler inside llama.cpp's graph
/// (llama.cpp ties backend samplers to sequence ids, fixed when the context is made):
/// greedy requests take those ids and only their token ids come back from the device.
/// Other requests take ids `slots..2 × slots`, whose full logits come back to be sampled
/// here; so do greedy requests that want logprobs, which need those logits.
pub struct LlamaEngine<'m> {
    model: &'m LlamaModel,
    ctx: LlamaContext<'m>,
    batch: LlamaBatch<'static>,
    samplers: Vec<Option<LlamaSampler>>,
    /// Sequence id of each slot's sequence, once it has one.
    seq_of_slot: Vec<Option<i32>>,
    /// The pool each begun slot takes its sequence id from.
    pool_of_slot: Vec<Option<usize>>,
    /// `[host]`, or `[device, host]` with device sampling.
    pools: Vec<SeqPool>,
    /// Where each policy batch index went in the llama.cpp batch.
    order: Vec<usize>,
    /// Outputs before each llama batch index: its row in llama.cpp's logits buffer.
    output_row: Vec<usize>,
    kv_unified: bool,
    n_ubatch: usize,
    /// Tokens `batch` holds.
    batch_capacity: usize,
    /// Whether the forward pass runs on a GPU. Then prompt chunks are padded whatever the
    /// length ([`LlamaEngine::pads`]), and host greedy picks are spread over threads (the
    /// CPU cores are idle meanwhile; on CPU one thread is plenty next to a decode step).
    on_gpu: bool,
    /// Micro-batches the last decode ran as.
    passes: u32,
    n_ctx_seq: u32,
    /// Tokens whose pick came back from the device rather than from logits.
    device_sampled: u64,
    /// Greedy picks made on the host right after the last decode, by llama batch index.
    host_picks: Vec<Option<Token>>,
    /// Time spent taking host greedy picks (after the step's outputs arrived).
    host_pick_time: Duration,
    /// The prefix cache's KV snapshots, in host memory.
    snapshots: HashMap<SnapshotId, SeqState>,
    /// Slots whose requests want logprobs.
    wants_logprobs: Vec<bool>,
    /// `--deterministic`: the logits rows of the last step's outputs that want logprobs, by
    /// policy batch index (a step's later calls overwrite llama.cpp's logits).
    kept_rows: HashMap<usize, Vec<f32>>,
    /// `--deterministic`: steps run as [`super::det::plan`] cuts them, and every pick is taken
    /// right after its call (by policy batch index in `host_picks`).
    deterministic: bool,
}

/// Debug builds only: with `BATCHD_TEST_PANIC_IN_DECODE` set, every decode panics, so
/// the e2e suite can check that a dead engine thread ends the daemon (`worker.rs`)
/// instead of leaving its clients waiting.
#[cfg(debug_assertions)]
fn injected_panic() {
    if std::env::var_os("BATCHD_TEST_PANIC_IN_DECODE").is_some() {
        panic!("BATCHD_TEST_PANIC_IN_DECODE: an injected engine panic");
    }
}

/// What a pass costs on a CPU, in prompt tokens ([`Engine::pass_tokens`]).
const CPU_PASS_TOKENS: usize = 8;

/// With device sampling, the pool whose ids carry llama.cpp's greedy samplers.
const DEVICE_POOL: usize = 0;

impl<'m> LlamaEngine<'m> {
    /// Creates the context for `settings`. The KV cache holds `settings.n_ctx` tokens, by
    /// default the model's trained context for every slot.
    pub fn new(
        backend: &LlamaBackend,
        loaded: &'m LoadedModel,
        settings: &EngineSettings,
    ) -> anyhow::Result<Self> {
        let model = &loaded.model;
        let slots = settings.slots;
        // `Auto` is off (measured, see `EngineSettings::device_sampling`). `validate` makes
        // sure two ids per slot fit in llama.cpp's sequence ids when it is `On`.
        let device_sampling = settings.device_sampling.resolve(false);
        if settings.deterministic && loaded.device.is_gpu() {
            // `det` relies on the CPU kernels' dispatch; GPU kernels choose by step shape
            // with no such way around it (README).
            anyhow::bail!(
                "--deterministic is for the CPU backend; this model runs on a GPU (--gpu-layers 0 keeps it on the CPU)"
            );
        }
        // Every pool has `slots` ids; with a stream per sequence each id gets its own
        // stream of `n_ctx / slots` cells.
        let n_pools = if device_sampling { 2 } else { 1 };
        let n_seq_max = slots * n_pools;
        let threads = settings.threads_for(&loaded.device);
        let n_ctx = settings
            .n_ctx
            .unwrap_or(model.n_ctx_train().saturating_mul(slots));
        let n_ctx_llama = if settings.kv_unified {
            n_ctx
        } else {
            n_ctx.saturating_mul(n_pools)
        };
        let flash = match settings.flash_attention {
            // `det` relies on flash attention's per-row path (`validate` refuses `Off`).
            _ if settings.deterministic => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            // llama.cpp turns it on wherever the backend supports it (CPU and CUDA do).
            Switch::Auto => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_AUTO,
            Switch::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            Switch::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx_llama))
            .with_n_batch(settings.n_batch)
            .with_n_ubatch(settings.n_ubatch.min(settings.n_batch))
            .with_n_seq_max(n_seq_max)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32)
            .with_kv_unified(settings.kv_unified)
            .with_flash_attention_policy(flash)
            // llama.cpp otherwise copies host weights to a GPU for large steps, whose
            // kernels `det` does not shape for.
            .with_op_offload(!settings.deterministic);
        let device_samplers = (0..if device_sampling { slots } else { 0 }).map(|seq| {
            (
                seq as i32,
                LlamaSampler::chain_simple([LlamaSampler::greedy()]),
            )
        });
        let mut ctx = model
            .new_context_with_samplers(backend, params, device_samplers)
            .map_err(|e| anyhow!("creating the llama.cpp context: {e}"))?;
        let pools = (0..n_pools)
            .map(|p| SeqPool::new(p * slots, slots))
            .collect();
        let n_ctx_seq = if settings.kv_unified {
            ctx.n_ctx()
        } else {
            ctx.n_ctx() / n_seq_max
        };
        let n_ubatch = settings.n_ubatch.min(settings.n_batch) as usize;
        // `Auto` is off for now (see `EngineSettings::warmup`).
        if settings.warmup.resolve(false) {
            let calls = warmup::shapes(
                n_ubatch,
                settings.n_batch as usize,
                slots as usize,
                n_ctx_seq as usize,
            );
            match warmup::warm_up(&mut ctx, &calls) {
                Ok(took) => tracing::info!(calls = calls.len(), ?took, "warmed up"),
                Err(e) => tracing::warn!("warm-up stopped early: {e}"),
            }
        }
        Ok(Self {
            model,
            ctx,
            batch: LlamaBatch::new(settings.n_batch as usize, 1),
            samplers: (0..slots).map(|_| None).collect(),
            seq_of_slot: vec![None; slots as usize],
            pool_of_slot: vec![None; slots as usize],
            pools,
            order: Vec::new(),
            output_row: Vec::new(),
            kv_unified: settings.kv_unified,
            n_ubatch,
            batch_capacity: settings.n_batch as usize,
            on_gpu: loaded.device.is_gpu(),
            passes: 0,
            n_ctx_seq,
            device_sampled: 0,
            host_picks: Vec::new(),
            host_pick_time: Duration::ZERO,
            snapshots: HashMap::new(),
            wants_logprobs: vec![false; slots as usize],
            kept_rows: HashMap::new(),
            deterministic: settings.deterministic,
        })
    }

    /// KV cells the running sequences can use together, as llama.cpp sized the cache
    /// (with a stream per sequence id: the streams of one pool's worth of ids).
    pub fn n_ctx(&self) -> u32 {
        if self.kv_unified {
            self.ctx.n_ctx()
        } else {
            self.n_ctx_seq * self.samplers.len() as u32
        }
    }

    /// Whether greedy tokens are picked on the compute device.
    pub fn device_sampling(&self) -> bool {
        self.pools.len() > 1
    }

    /// Time spent so far taking host greedy picks.
    pub fn host_pick_time(&self) -> Duration {
        self.host_pick_time
    }

    /// KV cells one sequence may use (in deterministic mode one fewer: a padded call's
    /// throwaway token takes the next cell).
    pub fn n_ctx_seq(&self) -> u32 {
        self.n_ctx_seq - self.reserved_positions()
    }

    /// Positions at the end of the model's context kept free for a padded call's
    /// throwaway token.
    pub fn reserved_positions(&self) -> u32 {
        u32::from(self.deterministic)
    }

    /// Whether `--deterministic` is on.
    pub fn deterministic(&self) -> bool {
        self.deterministic
    }

    /// Bytes of the whole KV cache: K and V of every layer, in f16 (llama.cpp's default
    /// cache type), for every cell.
    pub fn kv_bytes(&self) -> u64 {
        let m = self.model;
        let kv_width = m.n_embd() as u64 * m.n_head_kv() as u64 / m.n_head().max(1) as u64;
        let per_cell = 2 * m.n_layer() as u64 * kv_width * 2;
        per_cell * self.ctx.n_ctx() as u64
    }
}

impl LlamaEngine<'_> {
    /// The sequence id of `slot`, taken from its pool now if it has none yet.
    fn seq_id(&mut self, slot: usize) -> i32 {
        if let Some(seq) = self.seq_of_slot[slot] {
            return seq;
        }
        let p = self.pool_of_slot[slot].expect("slot has begun");
        let seq = self.pools[p].take(slot);
        self.seq_of_slot[slot] = Some(seq);
        seq
    }

    /// Closes the holes ended sequences left, then gives the batch's new sequences their
    /// ids, in batch order: after the others', next to each other.
    fn assign_ids(&mut self, batch: &StepBatch) {
        self.compact();
        for t in &batch.tokens {
            self.seq_id(t.slot);
        }
    }

    /// Closes every pool's holes before a step, so its ids are consecutive.
    fn compact(&mut self) {
        for p in 0..self.pools.len() {
            while let Some((from, to, slot)) = self.pools[p].next_move() {
                let _ = self.ctx.copy_kv_cache_seq(from, to, None, None);
                let _ = self.ctx.clear_kv_cache_seq(Some(from as u32), None, None);
                self.pools[p].put(to, slot);
                self.pools[p].free(from);
                self.seq_of_slot[slot] = Some(to);
            }
        }
    }

    /// Whether `slot`'s sequence has its greedy token picked inside llama.cpp's graph.
    fn picks_on_device(&self, slot: usize) -> bool {
        self.pools.len() > 1 && self.pool_of_slot[slot] == Some(DEVICE_POOL)
    }

    /// The logits of each llama batch index in `wanted` (ascending).
    ///
    /// llama.cpp keeps the requested outputs' logits contiguous, in batch order (its API
    /// promise for `llama_get_logits`), but every `llama_get_logits_ith` call also
    /// synchronizes every backend: 64 of them cost a measurable share of a GPU step. So
    /// the rows are found from the first one's address, after checking that the last one
    /// is where that promise puts it (else each row is asked for).
    fn logit_rows(&self, wanted: &[usize]) -> Vec<&[f32]> {
        let n_vocab = self.model.n_vocab() as usize;
        let (first, last) = (wanted[0], wanted[wanted.len() - 1]);
        let first_row = self.ctx.get_logits_ith(first as i32);
        let row_of = |i: usize| (self.output_row[i] - self.output_row[first]) * n_vocab;
        let last_row = self.ctx.get_logits_ith(last as i32);
        // SAFETY: `last_row` is a live row of llama.cpp's logits buffer, of which
        // `first_row` is an earlier row; the check makes every row asked for lie within
        // `first_row.as_ptr()..=last_row.as_ptr()`, whole rows of that one buffer, which
        // stays untouched until the next decode (which needs `&mut self`).
        if first_row.as_ptr().wrapping_add(row_of(last)) == last_row.as_ptr() {
            let base = first_row.as_ptr();
            wanted
                .iter()
                .map(|&i| unsafe { std::slice::from_raw_parts(base.add(row_of(i)), n_vocab) })
                .collect()
        } else {
            wanted
                .iter()
                .map(|&i| self.ctx.get_logits_ith(i as i32))
                .collect()
        }
    }

    /// Padding after each sequence's tokens in `runs` (`(id, tokens, last index)`, in id
    /// order) so that the step's prompt chunks share passes ([`split::pads`]), up to
    /// [`Engine::pass_tokens`]: none with one KV buffer for all (padding would take its
    /// cells), and never past a sequence's last position.
    fn pads(&self, batch: &StepBatch, runs: &[(i32, usize, usize)]) -> Vec<usize> {
        let max_pad = self.pass_tokens();
        if max_pad == 0 {
            return vec![0; runs.len()];
        }
        let chunks: Vec<(usize, bool)> = (runs.iter())
            .map(|&(_, n, last)| (n, batch.tokens[last].logits))
            .collect();
        let room = self.batch_capacity - batch.tokens.len();
        let mut pads = split::pads(&chunks, max_pad, room);
        // Within the sequence's stream and the model's positions (GPT-2's are learned).
        let limit = self.n_ctx_seq.min(self.model.n_ctx_train()) as usize;
        for (pad, &(_, _, last)) in pads.iter_mut().zip(runs) {
            let end = batch.tokens[last].pos as usize + 1;
            if end + *pad > limit {
                *pad = 0;
            }
        }
        pads
    }

    /// Takes the argmax of every greedy output whose logits came back, all at once (in
    /// parallel where that pays), so `sample` only looks the pick up.
    fn pick_greedy_on_host(&mut self, batch: &StepBatch) {
        self.host_picks.clear();
        // By llama batch index (padding included).
        self.host_picks.resize(self.output_row.len(), None);
        let mut wanted: Vec<usize> = batch
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.logits && self.samplers[t.slot].is_none() && !self.picks_on_device(t.slot)
            })
            .map(|(i, _)| self.order[i])
            .collect();
        wanted.sort_unstable();
        if wanted.is_empty() {
            return;
        }
        // The first row waits for the step to finish; time what comes after.
        let rows = self.logit_rows(&wanted);
        let started = Instant::now();
        let picks = greedy::argmax_rows(&rows, self.on_gpu);
        for (&i, pick) in wanted.iter().zip(picks) {
            self.host_picks[i] = Some(pick as Token);
        }
        self.host_pick_time += started.elapsed();
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
    fn tokenize(&self, text: &str) -> Vec<Token> {
        let vocab = self.model.vocab();
        let mut tokens: Vec<Token> = Vec::new();
        if text.is_empty() || vocab.should_add_bos() {
            tokens.push(vocab.bos().0 as Token);
        }
        tokens.extend(
            vocab
                .tokenize(text.as_bytes(), false, false)
                .into_iter()
                .map(|LlamaToken(t)| t as Token),
        );
        tokens
    }

    fn decode(&mut self, batch: &StepBatch) -> Result<(), EngineError> {
        #[cfg(debug_assertions)]
        injected_panic();
        self.assign_ids(batch);
        if self.deterministic {
            return self.decode_deterministic(batch);
        }
        let seq = |slot: usize| self.seq_of_slot[slot].expect("batched slot has begun");
        // Sort by sequence id (stable: a prompt chunk keeps its order).
        let mut sorted: Vec<usize> = (0..batch.tokens.len()).collect();
        sorted.sort_by_key(|&i| seq(batch.tokens[i].slot));
        // Each sequence's tokens: its id, how many, the policy index of its last one.
        let mut runs: Vec<(i32, usize, usize)> = Vec::new();
        for &i in &sorted {
            let id = seq(batch.tokens[i].slot);
            match runs.last_mut() {
                Some(run) if run.0 == id => (run.1, run.2) = (run.1 + 1, i),
                _ => runs.push((id, 1, i)),
            }
        }
        let pads = self.pads(batch, &runs);
        self.order.resize(batch.tokens.len(), 0);
        self.batch.clear();
        self.output_row.clear();
        let mut outputs = 0;
        let mut run = 0;
        for &i in &sorted {
            let t = &batch.tokens[i];
            self.order[i] = self.output_row.len();
            self.output_row.push(outputs);
            outputs += usize::from(t.logits);
            let id = seq(t.slot);
            let add = |b: &mut LlamaBatch, token: Token, pos: u32, logits: bool| {
                b.add(LlamaToken(token as i32), pos as i32, &[id], logits)
                    .map_err(|e| EngineError::Failed(e.to_string()))
            };
            add(&mut self.batch, t.token, t.pos, t.logits)?;
            if runs[run].2 == i {
                for k in 1..=pads[run] as u32 {
                    self.output_row.push(outputs);
                    add(&mut self.batch, t.token, t.pos + k, false)?;
                }
                run += 1;
            }
        }
        let per_seq: Vec<(i32, usize)> = (runs.iter().zip(&pads))
            .map(|(&(id, n, _), &pad)| (id, n + pad))
            .collect();
        self.passes = split::micro_batches(&per_seq, !self.kv_unified, self.n_ubatch);
        match self.ctx.decode(&mut self.batch) {
            Ok(()) => {}
            Err(DecodeError::NoKvCacheSlot) => return Err(EngineError::KvFull),
            Err(e) => return Err(EngineError::Failed(e.to_string())),
        }
        // The padding's cells go; the next token takes the first of them.
        for (&(id, _, last), &pad) in runs.iter().zip(&pads) {
            if pad > 0 {
                let end = batch.tokens[last].pos + 1;
                let _ = self
                    .ctx
                    .clear_kv_cache_seq(Some(id as u32), Some(end), None);
            }
        }
        self.pick_greedy_on_host(batch);
        Ok(())
    }

    fn begin(&mut self, slot: usize, sampling: &Sampling, logprobs: bool) {
        self.release(slot);
        let greedy = sampling.is_greedy();
        let p = if greedy && !logprobs && self.pools.len() > 1 {
            DEVICE_POOL
        } else {
            self.pools.len() - 1
        };
        self.pool_of_slot[slot] = Some(p);
        self.samplers[slot] = (!greedy).then(|| sampler_chain(self.model.n_vocab(), sampling));
        self.wants_logprobs[slot] = logprobs;
    }

    fn sample(&mut self, slot: usize, batch_index: usize) -> Token {
        if self.deterministic {
            return self.host_picks[batch_index].expect("picked right after its call");
        }
        let i = self.order[batch_index];
        if let Some(sampler) = self.samplers[slot].as_mut() {
            return sampler.sample(&self.ctx, i as i32).0 as Token;
        }
        // A sequence in the device pool has its token picked on the device; should
        // llama.cpp have declined the device sampler, its logits came back instead.
        match self
            .picks_on_device(slot)
            .then(|| self.ctx.sampled_token_ith(i as i32))
            .flatten()
        {
            Some(token) => {
                self.device_sampled += 1;
                token.0 as Token
            }
            None => self
                .host_picks
                .get(i)
                .copied()
                .flatten()
                .unwrap_or_else(|| greedy::argmax(self.ctx.get_logits_ith(i as i32)) as Token),
        }
    }

    fn logprobs(&self, batch_index: usize, chosen: Token, top: usize) -> Logprobs {
        // The raw logits: the sampler chains copy them before changing anything.
        if let Some(row) = self.kept_rows.get(&batch_index) {
            return logprobs::from_logits(row, chosen, top);
        }
        let row = self.ctx.get_logits_ith(self.order[batch_index] as i32);
        logprobs::from_logits(row, chosen, top)
    }

    fn release(&mut self, slot: usize) {
        self.samplers[slot] = None;
        let p = self.pool_of_slot[slot].take();
        let (Some(p), Some(seq)) = (p, self.seq_of_slot[slot].take()) else {
            return;
        };
        // Removing a whole sequence cannot fail for a valid id.
        let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
        self.pools[p].free(seq);
    }

    fn save(&mut self, slot: usize, id: SnapshotId) -> Option<usize> {
        let seq = self.seq_of_slot[slot]?;
        let state = self
            .ctx
            .state_seq_get(seq, LlamaStateSeqFlags::empty())
            .ok()?;
        let bytes = state.byte_len();
        self.snapshots.insert(id, state);
        Some(bytes)
    }

    fn restore(&mut self, slot: usize, id: SnapshotId, len: u32) -> bool {
        if !self.snapshots.contains_key(&id) {
            return false;
        }
        let seq = self.seq_id(slot);
        let state = &self.snapshots[&id];
        if self.ctx.state_seq_set(state, seq).is_err() {
            let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            return false;
        }
        // The snapshot may hold more than the shared prefix: keep `0..len`.
        self.ctx
            .clear_kv_cache_seq(Some(seq as u32), Some(len), None)
            .unwrap_or(false)
    }

    fn forget(&mut self, id: SnapshotId) {
        self.snapshots.remove(&id);
    }

    /// On a GPU a pass costs about a decode step and a token next to nothing; on a CPU a
    /// pass costs about what eight prompt tokens do (bench/README.md). With one KV buffer
    /// for all, a step is one pass whatever its chunks.
    fn pass_tokens(&self) -> usize {
        match (self.kv_unified, self.on_gpu) {
            (true, _) => 0,
            (false, true) => self.n_ubatch,
            (false, false) => CPU_PASS_TOKENS,
        }
    }

    fn passes(&self) -> u32 {
        self.passes
    }

    fn is_eog(&self, token: Token) -> bool {
        self.model.vocab().is_eog(LlamaToken(token as i32))
    }

    fn token_bytes(&self, token: Token, out: &mut Vec<u8>) {
        self.model
            .vocab()
            .token_to_piece_into(LlamaToken(token as i32), out, false, None);
    }

    fn device_sampled_tokens(&self) -> u64 {
        self.device_sampled
    }
}
