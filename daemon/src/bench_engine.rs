//! `batchd bench-engine`: raw llama.cpp batched decode on the daemon's own engine adapter
//! and settings, with no socket, protocol or scheduler. This is the ceiling the daemon is
//! judged against.

use std::time::Instant;

use batchd_protocol::Sampling;
use serde::Serialize;

use crate::engine::{init_backend, load_model, LlamaEngine};
use crate::policy::{BatchToken, Engine, StepBatch, Token};
use crate::settings::EngineSettings;

/// One batch size's result.
#[derive(Clone, Debug, Serialize)]
pub struct CeilingPoint {
    /// Sequences decoded together.
    pub batch: u32,
    /// Prompt tokens per sequence.
    pub prompt_tokens: u32,
    /// Tokens generated per sequence.
    pub tokens: u32,
    /// Prompt tokens per second while prefilling all sequences.
    pub prefill_tok_s: f64,
    /// Generated tokens per second, all sequences together.
    pub decode_tok_s: f64,
    /// Mean wall time of one decode step, in milliseconds.
    pub step_ms: f64,
    /// Of which: taking the greedy argmax of the copied logits on the host once they
    /// arrived (0 with device sampling), in milliseconds.
    pub host_pick_ms: f64,
    /// Generated tokens per second over prefill and decode together: what serving these B
    /// requests as one perfect batch achieves.
    pub e2e_tok_s: f64,
}

/// Measures B sequences prefilled then decoded together, for each B in `batches`.
/// The context is created once with `max(settings.slots, max B)` slots.
pub fn run(
    mut settings: EngineSettings,
    batches: &[u32],
    prompt_tokens: u32,
    tokens: u32,
) -> anyhow::Result<Vec<CeilingPoint>> {
    let max_b = batches.iter().copied().max().unwrap_or(1);
    settings.slots = settings.slots.max(max_b);
    settings.n_batch = settings.n_batch.max(max_b);
    settings.step_budget = settings.n_batch;
    settings.validate().map_err(anyhow::Error::msg)?;
    let backend = init_backend()?;
    let loaded = load_model(backend, &settings.model, settings.gpu_layers)?;
    let n_ctx_train = loaded.model.n_ctx_train();
    anyhow::ensure!(
        prompt_tokens + tokens < n_ctx_train,
        "prompt + tokens must fit in the model's {n_ctx_train} positions"
    );
    let mut engine = LlamaEngine::new(backend, &loaded, &settings)?;
    let greedy = Sampling::default();
    // Warm up once so first-touch costs don't land on B = first.
    measure(
        &mut engine,
        &greedy,
        1,
        prompt_tokens.min(8),
        4,
        settings.n_batch,
    )?;
    batches
        .iter()
        .map(|&b| {
            measure(
                &mut engine,
                &greedy,
                b,
                prompt_tokens,
                tokens,
                settings.n_batch,
            )
        })
        .collect()
}

fn measure(
    engine: &mut LlamaEngine<'_>,
    sampling: &Sampling,
    b: u32,
    prompt_tokens: u32,
    tokens: u32,
    n_batch: u32,
) -> anyhow::Result<CeilingPoint> {
    let slots: Vec<usize> = (0..b as usize).collect();
    for &s in &slots {
        engine.release(s);
        engine.begin(s, sampling);
    }
    // Distinct deterministic prompts, prefilled in batches of at most n_batch tokens.
    let mut all = Vec::new();
    for &s in &slots {
        for p in 0..prompt_tokens {
            let token = 198 + ((s as u32 * 7919 + p * 104729) % 40000) as Token;
            all.push(BatchToken {
                token,
                pos: p,
                slot: s,
                logits: p + 1 == prompt_tokens,
            });
        }
    }
    let mut batch = StepBatch::default();
    let mut next = vec![0 as Token; slots.len()];
    let t0 = Instant::now();
    for chunk in all.chunks(n_batch as usize) {
        batch.tokens.clear();
        batch.tokens.extend_from_slice(chunk);
        engine.decode(&batch)?;
        for (i, t) in chunk.iter().enumerate() {
            if t.logits {
                next[t.slot] = engine.sample(t.slot, i);
            }
        }
    }
    let prefill_s = t0.elapsed().as_secs_f64();
    let picks_before = engine.host_pick_time();
    let t1 = Instant::now();
    for step in 0..tokens {
        batch.tokens.clear();
        for &s in &slots {
            batch.tokens.push(BatchToken {
                token: next[s],
                pos: prompt_tokens + step,
                slot: s,
                logits: true,
            });
        }
        engine.decode(&batch)?;
        for (i, &s) in slots.iter().enumerate() {
            next[s] = engine.sample(s, i);
        }
    }
    let decode_s = t1.elapsed().as_secs_f64();
    let pick_s = (engine.host_pick_time() - picks_before).as_secs_f64();
    for &s in &slots {
        engine.release(s);
    }
    Ok(CeilingPoint {
        batch: b,
        prompt_tokens,
        tokens,
        prefill_tok_s: (b * prompt_tokens) as f64 / prefill_s.max(1e-9),
        decode_tok_s: (b * tokens) as f64 / decode_s.max(1e-9),
        step_ms: decode_s * 1e3 / tokens.max(1) as f64,
        host_pick_ms: pick_s * 1e3 / tokens.max(1) as f64,
        e2e_tok_s: (b * tokens) as f64 / (prefill_s + decode_s).max(1e-9),
    })
}

/// The results as an aligned table.
pub fn table(points: &[CeilingPoint]) -> String {
    let mut out =
        String::from("    B   prefill tok/s   decode tok/s   ms/step   prefill+decode tok/s\n");
    for p in points {
        out.push_str(&format!(
            "{:>5} {:>15.1} {:>14.1} {:>9.2} {:>22.1}\n",
            p.batch, p.prefill_tok_s, p.decode_tok_s, p.step_ms, p.e2e_tok_s
        ));
    }
    out
}
