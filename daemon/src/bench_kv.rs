//! `batchd bench-engine --kv-copy L,...`: what each way of reusing an already computed
//! prefix of L positions costs on this engine, next to computing it, so the prefix cache's
//! mechanism is chosen by measurement (bench/README.md has the numbers).

use std::time::Instant;

use batchd_protocol::Sampling;
use serde::Serialize;

use crate::engine::{init_backend, load_model, LlamaEngine};
use crate::policy::{median, BatchToken, Engine, StepBatch};
use crate::settings::EngineSettings;

/// The costs for one prefix length, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub struct KvCopyPoint {
    pub positions: u32,
    /// Computing the L positions (a prefill on its own).
    pub prefill_ms: f64,
    /// Copying the sequence's KV out to host memory (`llama_state_seq_get_data`).
    pub save_ms: f64,
    /// Writing it into a fresh sequence and keeping the L positions
    /// (`llama_state_seq_set_data`).
    pub restore_ms: f64,
    /// Bytes of the snapshot.
    pub snapshot_bytes: usize,
    /// What moving a sequence to another stream adds to the next one-token step (the
    /// whole-stream `llama_memory_seq_cp` that keeps sequence ids dense).
    pub stream_copy_ms: f64,
}

/// Repetitions per measurement (the median is kept).
const REPEAT: usize = 5;

pub fn run(mut settings: EngineSettings, lens: &[u32]) -> anyhow::Result<Vec<KvCopyPoint>> {
    settings.slots = settings.slots.max(2);
    settings.validate().map_err(anyhow::Error::msg)?;
    let backend = init_backend()?;
    let loaded = load_model(backend, &settings.model, settings.gpu_layers)?;
    let mut engine = LlamaEngine::new(backend, &loaded, &settings)?;
    let n_batch = settings.n_batch as usize;
    let limit = engine.n_ctx_seq().min(loaded.model.n_ctx_train()) - 2;
    anyhow::ensure!(
        lens.iter().all(|&l| l > 0 && l <= limit),
        "--kv-copy lengths must be 1..={limit}"
    );
    lens.iter()
        .map(|&l| measure(&mut engine, l, n_batch))
        .collect()
}

fn measure(engine: &mut LlamaEngine<'_>, len: u32, n_batch: usize) -> anyhow::Result<KvCopyPoint> {
    let greedy = Sampling::default();
    let (mut prefill, mut save, mut restore, mut copy, mut bytes) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), 0);
    for rep in 0..REPEAT as u64 {
        for slot in 0..2 {
            engine.release(slot);
            engine.begin(slot, &greedy, false);
        }
        let t = Instant::now();
        prefill_slot(engine, 0, len, n_batch)?;
        prefill.push(ms(t));
        let t = Instant::now();
        bytes = engine.save(0, rep).unwrap_or(0);
        save.push(ms(t));
        let t = Instant::now();
        anyhow::ensure!(engine.restore(1, rep, len), "restore failed");
        restore.push(ms(t));
        engine.forget(rep);
        // A one-token step of slot 1 alone, then again after slot 0 ends: slot 1's
        // sequence then moves down into the freed id first.
        let plain = one_token_step(engine, 1, len)?;
        engine.release(0);
        let moved = one_token_step(engine, 1, len + 1)?;
        copy.push(moved - plain);
    }
    for slot in 0..2 {
        engine.release(slot);
    }
    Ok(KvCopyPoint {
        positions: len,
        prefill_ms: median(prefill),
        save_ms: median(save),
        restore_ms: median(restore),
        snapshot_bytes: bytes,
        stream_copy_ms: median(copy),
    })
}

fn prefill_slot(
    engine: &mut LlamaEngine<'_>,
    slot: usize,
    len: u32,
    n_batch: usize,
) -> anyhow::Result<()> {
    let tokens: Vec<BatchToken> = (0..len)
        .map(|pos| BatchToken {
            token: 198 + (pos * 104729) % 40000,
            pos,
            slot,
            logits: pos + 1 == len,
        })
        .collect();
    for chunk in tokens.chunks(n_batch) {
        engine.decode(&StepBatch {
            tokens: chunk.to_vec(),
        })?;
    }
    Ok(())
}

/// Milliseconds of one decode of a single token of `slot` at `pos`.
fn one_token_step(engine: &mut LlamaEngine<'_>, slot: usize, pos: u32) -> anyhow::Result<f64> {
    let batch = StepBatch {
        tokens: vec![BatchToken {
            token: 464,
            pos,
            slot,
            logits: true,
        }],
    };
    let t = Instant::now();
    engine.decode(&batch)?;
    Ok(ms(t))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// The results as an aligned table.
pub fn table(points: &[KvCopyPoint]) -> String {
    let mut out =
        String::from("    L   prefill ms   save ms   restore ms   snapshot MiB   stream copy ms\n");
    for p in points {
        out.push_str(&format!(
            "{:>5} {:>12.2} {:>9.2} {:>12.2} {:>14.1} {:>16.2}\n",
            p.positions,
            p.prefill_ms,
            p.save_ms,
            p.restore_ms,
            p.snapshot_bytes as f64 / (1u64 << 20) as f64,
            p.stream_copy_ms
        ));
    }
    out
}
