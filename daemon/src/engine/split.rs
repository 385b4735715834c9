//! How llama.cpp splits one `llama_decode` batch into micro-batches (forward passes), so
//! a step trace can say how many passes a step took. This mirrors the vendored
//! `llama_batch_allocr::split_simple` / `split_equal` (`src/llama-batch.cpp`): keep it in
//! step with the llama.cpp version the crate builds.

/// Micro-batches a batch runs as. `per_seq` is each sequence's token count, in ascending
/// order of sequence id (`(id, tokens)`); `streams` says whether each sequence has its own
/// KV stream (then llama.cpp uses `split_equal`, else `split_simple`).
pub fn micro_batches(per_seq: &[(i32, usize)], streams: bool, n_ubatch: usize) -> u32 {
    let n_ubatch = n_ubatch.max(1);
    if !streams {
        // split_simple: batch order, any ids, up to n_ubatch tokens each.
        let n: usize = per_seq.iter().map(|&(_, n)| n).sum();
        return n.div_ceil(n_ubatch) as u32;
    }
    // split_equal (sequential): a run of consecutive ids starting at the first sequence
    // with tokens left, the same number of tokens from each, at most n_ubatch in all.
    let mut left: Vec<(i32, usize)> = per_seq.iter().copied().filter(|&(_, n)| n > 0).collect();
    let mut passes = 0;
    while !left.is_empty() {
        let mut run = 1;
        while run < left.len() && run < n_ubatch && left[run].0 == left[run - 1].0 + 1 {
            run += 1;
        }
        let fewest = left[..run].iter().map(|&(_, n)| n).min().expect("a run");
        let take = fewest.min((n_ubatch / run).max(1));
        for s in &mut left[..run] {
            s.1 -= take;
        }
        left.retain(|&(_, n)| n > 0);
        passes += 1;
    }
    passes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_kv_buffer_takes_any_mix_in_one_pass() {
        let mix = [(0, 1), (1, 1), (2, 300), (5, 1)];
        assert_eq!(micro_batches(&mix, false, 512), 1);
        assert_eq!(micro_batches(&[(0, 600)], false, 512), 2);
    }

    #[test]
    fn decodes_alone_are_one_pass_with_streams() {
        let decodes: Vec<_> = (0..16).map(|id| (id, 1)).collect();
        assert_eq!(micro_batches(&decodes, true, 512), 1);
    }

    #[test]
    fn a_prompt_chunk_beside_decodes_costs_a_second_pass_with_streams() {
        // The first pass takes one token of every sequence; the chunk's rest goes alone.
        assert_eq!(
            micro_batches(&[(0, 1), (1, 1), (2, 1), (3, 64)], true, 512),
            2
        );
        assert_eq!(
            micro_batches(&[(0, 1), (1, 64), (2, 1), (3, 1)], true, 512),
            2
        );
    }

    #[test]
    fn ragged_chunks_and_id_gaps_cost_more_passes() {
        // Two chunks of different lengths: 1 token of each, then both up to the shorter
        // one, then the longer one's rest.
        assert_eq!(micro_batches(&[(0, 1), (1, 10), (2, 30)], true, 512), 3);
        // Chunks separated by a decode are never in one pass after the first.
        assert_eq!(micro_batches(&[(0, 10), (1, 1), (2, 10)], true, 512), 3);
        // An id gap breaks the very first pass.
        assert_eq!(micro_batches(&[(0, 1), (2, 1)], true, 512), 2);
    }

    #[test]
    fn equal_prompts_share_passes_up_to_the_ubatch() {
        // 16 prompts of 100 tokens: 32 tokens of each per 512-token pass.
        let burst: Vec<_> = (0..16).map(|id| (id, 100)).collect();
        assert_eq!(micro_batches(&burst, true, 512), 4);
    }
}
