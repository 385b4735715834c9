//! Warming the compute device up before the first request.
//!
//! A GPU backend pays one-time costs the first time it meets a shape of step: CUDA loads
//! each kernel on its first launch, cuBLAS sets itself up on the first large matrix
//! product. A cold daemon's first step of prompts took many times as long as a warm one
//! (bench/README.md), and the request that happened to meet each new shape paid for it.
//! Running each kind of shape once at start moves that cost to startup, before the daemon
//! says it is ready.

use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::token::LlamaToken;

/// Prompt chunk lengths a serving daemon's steps carry (besides a whole micro-batch).
const CHUNKS: [usize; 5] = [16, 32, 64, 128, 256];
/// Decode batches up to this many sequences each get their own call: GPU kernels for
/// small batches are compiled per batch size.
const SMALL_BATCHES: usize = 8;

/// The calls a warm-up makes: `(sequences, tokens of each)`, each within `n_batch` tokens,
/// `n_seqs` sequences and `n_ctx_seq` positions per sequence.
pub(super) fn shapes(
    n_ubatch: usize,
    n_batch: usize,
    n_seqs: usize,
    n_ctx_seq: usize,
) -> Vec<(usize, usize)> {
    let longest = n_ubatch.min(n_ctx_seq);
    let mut calls = vec![(1, longest)];
    calls.extend(CHUNKS.iter().filter(|&&c| c < longest).map(|&c| (1, c)));
    // Several prompts in one call, as when requests arrive together.
    calls.push((n_seqs.min(4), 64.min(longest)));
    // Decodes: every small batch, then powers of two up to every sequence.
    calls.extend((1..=n_seqs.min(SMALL_BATCHES)).map(|b| (b, 1)));
    let mut b = 2 * SMALL_BATCHES;
    while b < n_seqs {
        calls.push((b, 1));
        b *= 2;
    }
    if n_seqs > SMALL_BATCHES {
        calls.push((n_seqs, 1));
    }
    calls.retain(|&(s, t)| s * t <= n_batch);
    calls
}

/// Runs every call of [`shapes`] on `ctx`, emptying its KV cache after each. Returns the
/// time taken; a call that fails ends the warm-up early (it only ever saves time later).
pub(super) fn warm_up(
    ctx: &mut LlamaContext,
    calls: &[(usize, usize)],
) -> Result<Duration, String> {
    let start = Instant::now();
    let capacity = calls.iter().map(|&(s, t)| s * t).max().unwrap_or(1);
    let mut batch = LlamaBatch::new(capacity, 1);
    let result = calls.iter().try_for_each(|&(seqs, tokens)| {
        batch.clear();
        for seq in 0..seqs as i32 {
            for pos in 0..tokens as i32 {
                let last = pos + 1 == tokens as i32;
                batch
                    .add(LlamaToken(0), pos, &[seq], last)
                    .map_err(|e| e.to_string())?;
            }
        }
        let decoded = ctx.decode(&mut batch).map_err(|e| e.to_string());
        ctx.clear_kv_cache();
        decoded
    });
    result.map(|()| start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_cover_a_micro_batch_chunks_and_every_decode_size() {
        let calls = shapes(512, 2048, 64, 1024);
        assert_eq!(calls[0], (1, 512));
        for c in CHUNKS {
            assert!(calls.contains(&(1, c)));
        }
        for b in [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 64] {
            assert!(calls.contains(&(b, 1)), "{b} decodes");
        }
        assert!(calls.contains(&(4, 64)));
    }

    #[test]
    fn shapes_stay_within_the_batch_the_sequences_and_their_cells() {
        let calls = shapes(512, 2048, 3, 100);
        assert_eq!(calls[0], (1, 100));
        assert!(calls.iter().all(|&(s, t)| s <= 3 && t <= 100));
        assert!(!calls.contains(&(1, 128)));
        assert!(shapes(512, 64, 16, 1024).iter().all(|&(s, t)| s * t <= 64));
        assert_eq!(shapes(512, 2048, 12, 1024).last(), Some(&(12, 1)));
    }
}
