//! How llama.cpp splits one `llama_decode` batch into micro-batches (forward passes), so
//! a step trace can say how many passes a step took, and `--deterministic` can hand
//! llama.cpp one micro-batch at a time (`det.rs`). This mirrors the vendored
//! `llama_batch_allocr::split_simple` / `split_equal` (`src/llama-batch.cpp`): keep it in
//! step with the llama.cpp version the crate builds.

use crate::policy::may_pad;

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
    split_equal(per_seq, n_ubatch, usize::MAX).len() as u32
}

/// One micro-batch of `split_equal`: `take` tokens from each of the sequences `seqs`
/// (indices into its `per_seq`), the next ones of each in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pass {
    pub seqs: Vec<usize>,
    pub take: usize,
}

/// The micro-batches `split_equal` (sequential) cuts `per_seq` into, taking at most
/// `max_rows` tokens of one sequence per pass (`usize::MAX`: as llama.cpp does): a run of
/// consecutive ids starting at the first sequence with tokens left, the same number of
/// tokens from each, at most `n_ubatch` in all.
pub fn split_equal(per_seq: &[(i32, usize)], n_ubatch: usize, max_rows: usize) -> Vec<Pass> {
    let n_ubatch = n_ubatch.max(1);
    // (index into per_seq, id, tokens left)
    let mut left: Vec<(usize, i32, usize)> = (per_seq.iter().enumerate())
        .filter(|(_, &(_, n))| n > 0)
        .map(|(k, &(id, n))| (k, id, n))
        .collect();
    let mut passes = Vec::new();
    while !left.is_empty() {
        let mut run = 1;
        while run < left.len() && run < n_ubatch && left[run].1 == left[run - 1].1 + 1 {
            run += 1;
        }
        let fewest = left[..run].iter().map(|s| s.2).min().expect("a run");
        let take = fewest.min((n_ubatch / run).max(1)).min(max_rows.max(1));
        for s in &mut left[..run] {
            s.2 -= take;
        }
        passes.push(Pass {
            seqs: left[..run].iter().map(|s| s.0).collect(),
            take,
        });
        left.retain(|s| s.2 > 0);
    }
    passes
}

/// Padding for a step's prompt chunks, so that they take one pass instead of one each:
/// `split_equal` takes the same number of tokens from every sequence of a pass, so chunks
/// of 97, 100 and 103 tokens run as three passes, but padded to 103 as one. A chunk is
/// padded to the longest in the step where [`may_pad`] allows (its outputs are
/// unchanged: nothing before attends to the padding, whose cells are dropped after the
/// step), while `room` tokens last.
/// `chunks` is each sequence's `(tokens, ends)`; returns each one's padding.
pub fn pads(chunks: &[(usize, bool)], max_pad: usize, mut room: usize) -> Vec<usize> {
    let longest = chunks.iter().map(|&(n, _)| n).max().unwrap_or(0);
    chunks
        .iter()
        .map(|&(n, ends)| {
            let pad = longest - n;
            let pad = if may_pad(n, ends, pad, max_pad) && pad <= room {
                pad
            } else {
                0
            };
            room -= pad;
            pad
        })
        .collect()
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

    #[test]
    fn prompt_ends_are_padded_to_the_longest_chunk_within_limits() {
        // Decodes (1 token) stay; ending chunks grow to 103; one that does not end cannot.
        let chunks = [
            (1, true),
            (97, true),
            (103, true),
            (100, false),
            (100, true),
        ];
        assert_eq!(pads(&chunks, 8, 512), [0, 6, 0, 0, 3]);
        // Only as much padding as the pass costs, and as fits.
        assert_eq!(pads(&chunks, 4, 512), [0, 0, 0, 0, 3]);
        assert_eq!(pads(&chunks, 8, 5), [0, 0, 0, 0, 3]);
        // Padded, the two new prompts (consecutive ids) share one pass after the first.
        let padded = [(0, 1), (1, 1), (2, 103), (3, 103)];
        assert_eq!(micro_batches(&padded, true, 512), 2);
        assert_eq!(
            micro_batches(&[(0, 1), (1, 1), (2, 97), (3, 103)], true, 512),
            3
        );
    }
}
