//! How `--deterministic` cuts one step into `llama_decode` calls so that every token goes
//! through the same CPU kernels whatever it is packed with.
//!
//! What varies with a step's shape in the vendored ggml CPU backend (read in
//! `ggml-cpu.c`, `ops.cpp`, `llamafile/sgemm.cpp`):
//! - a matmul over one row runs ggml's `vec_dot`, over two or more rows llamafile's
//!   tinyBLAS; each sums in its own order, but tinyBLAS gives every output element the
//!   same sum whatever the row count, and so does `vec_dot`;
//! - the last layer's feed-forward and the output matmul see only the rows that want
//!   logits, so their row count is the step's output count;
//! - flash attention splits the KV cells across threads for a lone query row of a lone
//!   stream over 512+ cells, and tiles 64+ query rows of one stream; otherwise it walks
//!   each row's cells in order, skipping masked ones, which gives a row the same result
//!   whatever else is in the micro-batch.
//!
//! So each call here is one micro-batch cut the way llama.cpp's `split_equal` would cut
//! the step (a run of consecutive sequence ids, the same number of tokens from each: see
//! `split.rs`), so llama.cpp does not split it again, with at most [`MAX_ROWS`] tokens of
//! one sequence, and then made to have at least two tokens and never exactly one output.
//! A call that would hold one token gets a throwaway second token of the same sequence one
//! position later (causal attention keeps it out of the real token's result; the adapter
//! removes its KV cell after the call).

use super::split;

/// Query rows of one sequence per call: one below flash attention's tile height
/// (`GGML_FA_TILE_Q`, 64), so its per-row path always serves them.
pub const MAX_ROWS: usize = 63;

/// One token of a step, as the planner needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tok {
    pub seq: i32,
    pub logits: bool,
}

/// One `llama_decode` call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Indices into the step's tokens, by sequence id, each sequence's in step order.
    pub tokens: Vec<usize>,
    /// A token that also asks for logits (ignored), so the call never has exactly one.
    pub extra_output: Option<usize>,
    /// The call's lone token gets a throwaway companion one position later.
    pub pad: bool,
}

/// Cuts `tokens` (a step, each sequence's tokens in position order) into calls of at
/// most `max_tokens` tokens each (`n_ubatch`).
pub fn plan(tokens: &[Tok], max_tokens: usize) -> Vec<Call> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| tokens[i].seq);
    // Each sequence's tokens, by sequence id, and how many of them are in a call yet.
    let mut groups: Vec<(&[usize], usize)> = Vec::new();
    let mut start = 0;
    for end in 1..=order.len() {
        if end == order.len() || tokens[order[end]].seq != tokens[order[start]].seq {
            groups.push((&order[start..end], 0));
            start = end;
        }
    }
    let per_seq: Vec<(i32, usize)> = (groups.iter())
        .map(|(g, _)| (tokens[g[0]].seq, g.len()))
        .collect();
    split::split_equal(&per_seq, max_tokens, MAX_ROWS)
        .into_iter()
        .map(|pass| {
            let mut ids = Vec::new();
            for k in pass.seqs {
                let (g, done) = &mut groups[k];
                ids.extend_from_slice(&g[*done..*done + pass.take]);
                *done += pass.take;
            }
            call(tokens, &ids)
        })
        .collect()
}

fn call(tokens: &[Tok], ids: &[usize]) -> Call {
    let outputs = ids.iter().filter(|&&i| tokens[i].logits).count();
    Call {
        tokens: ids.to_vec(),
        extra_output: (outputs == 1 && ids.len() > 1)
            .then(|| ids.iter().copied().find(|&i| !tokens[i].logits))
            .flatten(),
        pad: ids.len() == 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(spec: &[(i32, usize)]) -> Vec<Tok> {
        // Each sequence's tokens; the last of each asks for logits.
        spec.iter()
            .flat_map(|&(seq, n)| {
                (0..n).map(move |k| Tok {
                    seq,
                    logits: k + 1 == n,
                })
            })
            .collect()
    }

    fn check(tokens: &[Tok], calls: &[Call], max_tokens: usize) {
        let mut seen: Vec<usize> = calls.iter().flat_map(|c| c.tokens.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..tokens.len()).collect::<Vec<_>>(), "{calls:?}");
        for c in calls {
            let n = c.tokens.len() + usize::from(c.pad);
            assert!(n >= 2 && c.tokens.len() <= max_tokens, "{c:?}");
            let outputs = c.tokens.iter().filter(|&&i| tokens[i].logits).count()
                + usize::from(c.extra_output.is_some())
                + usize::from(c.pad && tokens[c.tokens[0]].logits);
            assert_ne!(outputs, 1, "{c:?}");
            // Consecutive ids, the same number of tokens from each: one micro-batch.
            let mut seqs: Vec<i32> = c.tokens.iter().map(|&i| tokens[i].seq).collect();
            seqs.dedup();
            assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{c:?}");
            let each = c.tokens.len() / seqs.len();
            assert_eq!(each * seqs.len(), c.tokens.len(), "{c:?}");
            assert!(each <= MAX_ROWS, "{c:?}");
        }
    }

    #[test]
    fn a_lone_decode_is_padded() {
        let t = step(&[(3, 1)]);
        let calls = plan(&t, 512);
        assert_eq!(calls.len(), 1);
        assert!(calls[0].pad);
        check(&t, &calls, 512);
    }

    #[test]
    fn consecutive_decodes_share_one_call_and_gaps_split_it() {
        let t = step(&[(0, 1), (1, 1), (2, 1), (4, 1), (5, 1), (7, 1)]);
        let calls = plan(&t, 512);
        let sizes: Vec<_> = calls.iter().map(|c| c.tokens.len()).collect();
        assert_eq!(sizes, [3, 2, 1]);
        check(&t, &calls, 512);
    }

    #[test]
    fn calls_are_cut_like_llama_cpp_cuts_micro_batches() {
        // As `split.rs` counts passes, plus the tile cap on a long chunk.
        let t = step(&[(0, 1), (1, 1), (2, 30), (3, 1)]);
        let calls = plan(&t, 512);
        let sizes: Vec<_> = calls.iter().map(|c| c.tokens.len()).collect();
        assert_eq!(sizes, [4, 29]);
        let t = step(&[(0, 20), (1, 20), (2, 100)]);
        let sizes: Vec<_> = plan(&t, 512).iter().map(|c| c.tokens.len()).collect();
        assert_eq!(sizes, [60, 63, 17]);
    }

    #[test]
    fn prompt_chunks_stay_under_the_attention_tile() {
        for n in [2, 5, 63, 64, 65, 127, 200, 600] {
            let t = step(&[(0, 1), (1, n), (2, 1)]);
            let calls = plan(&t, 512);
            check(&t, &calls, 512);
        }
    }

    #[test]
    fn a_final_prompt_token_never_is_the_only_output() {
        let t = step(&[(0, 40)]);
        let calls = plan(&t, 512);
        assert_eq!(calls.len(), 1);
        assert!(calls[0].extra_output.is_some());
        check(&t, &calls, 512);
    }

    #[test]
    fn every_mix_obeys_the_rules_under_a_small_ubatch() {
        for max in [2, 3, 8, 512] {
            for spec in [
                &[(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)][..],
                &[(0, 3), (1, 1), (2, 70), (3, 1), (4, 1), (9, 2)],
                &[(5, 1), (6, 130)],
            ] {
                let t = step(spec);
                check(&t, &plan(&t, max), max);
            }
        }
    }
}
