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
    /// Steps of the B decodes plus one more sequence's prompt chunk, per chunk size.
    pub mixed: Vec<MixedPoint>,
}

/// Mixed steps: B decodes and a P-token prompt chunk of one more sequence, as continuous
/// batching runs them while a prompt arrives.
#[derive(Clone, Debug, Serialize)]
pub struct MixedPoint {
    /// Prompt tokens in the chunk.
    pub prompt_tokens: u32,
    /// Mean wall time of one such step, in milliseconds.
    pub step_ms: f64,
    /// Forward passes llama.cpp ran the step as.
    pub passes: u32,
}

/// Mixed steps measured per chunk size (after one unmeasured step).
const MIXED_STEPS: u32 = 4;

/// Measures B sequences prefilled then decoded together, for each B in `batches`.
/// The context is created once with `max(settings.slots, max B)` slots (one more with
/// `mixed`).
pub fn run(
    mut settings: EngineSettings,
    batches: &[u32],
    prompt_tokens: u32,
    tokens: u32,
    mixed: &[u32],
) -> anyhow::Result<Vec<CeilingPoint>> {
    let max_b = batches.iter().copied().max().unwrap_or(1);
    // One more slot for the mixed steps' prompt (only then: at B = 128 it would take
    // device sampling past its 128 slots).
    settings.slots = settings.slots.max(max_b + u32::from(!mixed.is_empty()));
    settings.n_batch = settings.n_batch.max(max_b);
    settings.validate().map_err(anyhow::Error::msg)?;
    let backend = init_backend()?;
    let loaded = load_model(backend, &settings.model, settings.gpu_layers)?;
    let n_ctx_train = loaded.model.n_ctx_train();
    let mixed_decodes = (MIXED_STEPS + 1) * mixed.len() as u32;
    anyhow::ensure!(
        prompt_tokens + tokens + mixed_decodes < n_ctx_train
            && mixed.iter().all(|&p| p > 0 && p <= n_ctx_train),
        "prompt + tokens (+ a decode per mixed step) must fit in the model's {n_ctx_train} positions"
    );
    let mut engine = LlamaEngine::new(backend, &loaded, &settings)?;
    let greedy = Sampling::default();
    // Warm up once so first-touch costs don't land on B = first.
    let shape = |b, prompt_tokens, tokens, mixed| Shape {
        b,
        prompt_tokens,
        tokens,
        n_batch: settings.n_batch,
        n_ctx: n_ctx_train,
        mixed,
    };
    measure(
        &mut engine,
        &greedy,
        &shape(1, prompt_tokens.min(8), 4, &[]),
    )?;
    batches
        .iter()
        .map(|&b| {
            measure(
                &mut engine,
                &greedy,
                &shape(b, prompt_tokens, tokens, mixed),
            )
        })
        .collect()
}

/// What one measurement runs.
struct Shape<'a> {
    b: u32,
    prompt_tokens: u32,
    tokens: u32,
    n_batch: u32,
    /// Positions one sequence may use.
    n_ctx: u32,
    mixed: &'a [u32],
}

fn measure(
    engine: &mut LlamaEngine<'_>,
    sampling: &Sampling,
    shape: &Shape<'_>,
) -> anyhow::Result<CeilingPoint> {
    let Shape {
        b,
        prompt_tokens,
        tokens,
        n_batch,
        n_ctx,
        mixed,
    } = *shape;
    let slots: Vec<usize> = (0..b as usize).collect();
    for &s in &slots {
        engine.release(s);
        engine.begin(s, sampling, false);
    }
    // Distinct deterministic prompts, prefilled in batches of at most n_batch tokens.
    let mut all = Vec::new();
    for &s in &slots {
        for p in 0..prompt_tokens {
            let token = prompt_token(s, p);
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
    // Mixed steps: the same decodes, plus a chunk of slot B's prompt each step.
    let extra = b as usize;
    let mut pos = prompt_tokens + tokens;
    let mut mixed_points = Vec::new();
    for &p in mixed {
        engine.release(extra);
        engine.begin(extra, sampling, false);
        let mut extra_pos = 0;
        let mut took = 0.0;
        for step in 0..=MIXED_STEPS {
            if extra_pos + p > n_ctx {
                engine.release(extra);
                engine.begin(extra, sampling, false);
                extra_pos = 0;
            }
            batch.tokens.clear();
            for &s in &slots {
                batch.tokens.push(BatchToken {
                    token: next[s],
                    pos,
                    slot: s,
                    logits: true,
                });
            }
            batch.tokens.extend((0..p).map(|i| BatchToken {
                token: prompt_token(extra, extra_pos + i),
                pos: extra_pos + i,
                slot: extra,
                logits: i + 1 == p,
            }));
            let t = Instant::now();
            engine.decode(&batch)?;
            for (i, &s) in slots.iter().enumerate() {
                next[s] = engine.sample(s, i);
            }
            if step > 0 {
                took += t.elapsed().as_secs_f64();
            }
            pos += 1;
            extra_pos += p;
        }
        mixed_points.push(MixedPoint {
            prompt_tokens: p,
            step_ms: took * 1e3 / MIXED_STEPS as f64,
            passes: engine.passes(),
        });
    }
    if !mixed.is_empty() {
        engine.release(extra);
    }
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
        mixed: mixed_points,
    })
}

/// Token `pos` of slot `slot`'s prompt: deterministic, and distinct between slots.
fn prompt_token(slot: usize, pos: u32) -> Token {
    198 + ((slot as u32 * 7919 + pos * 104729) % 40000) as Token
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
        for m in &p.mixed {
            out.push_str(&format!(
                "        + a {}-token prompt chunk: {:.2} ms/step, {} pass{}\n",
                m.prompt_tokens,
                m.step_ms,
                m.passes,
                if m.passes == 1 { "" } else { "es" }
            ));
        }
    }
    out
}
