//! How a step's prompt allowance is divided among the sequences still prefilling.
//!
//! With a KV stream per sequence, llama.cpp runs a step as one pass over a token of every
//! sequence, then one pass for each run of neighbouring sequences with the same number of
//! tokens left (`split_equal`). Handing the allowance out first come, first served puts
//! one prompt's tail and the next one's head in a step: two lengths, so two passes after
//! the shared one. Chunks of one length cost one.

/// Each prefilling sequence's chunk this step, in admission order (0: none).
///
/// `left` is what each has still to compute, `room` the step's prompt allowance, and
/// `pass_tokens` what one more pass costs in prompt tokens (the engine pads a prompt's
/// last chunk by up to that many tokens to reach the step's chunk length; 0: passes do
/// not depend on chunk lengths, and first come, first served is kept). Every candidate
/// chunk length `c` is tried, each sequence taking `min(left, c)` in order until one does
/// not fit; the split kept is the one with the most tokens less the cost of its extra
/// passes, the longer chunk on a tie (the oldest prompts finish first).
pub fn split_room(left: &[usize], room: usize, pass_tokens: usize) -> Vec<usize> {
    if pass_tokens == 0 || left.len() < 2 {
        let mut room = room;
        return left
            .iter()
            .map(|&n| {
                let take = n.min(room);
                room -= take;
                take
            })
            .collect();
    }
    let mut best = (i64::MIN, 0);
    for c in candidates(left, room) {
        let chunks = fill(left, room, c);
        let score = worth(&chunks, c, pass_tokens);
        if score > best.0 || (score == best.0 && c > best.1) {
            best = (score, c);
        }
    }
    fill(left, room, best.1)
}

/// Chunks of at most `c` tokens, in order, until one does not fit in `room`.
fn fill(left: &[usize], room: usize, c: usize) -> Vec<usize> {
    let mut used = 0;
    let mut full = false;
    left.iter()
        .map(|&n| {
            let take = n.min(c);
            full |= used + take > room;
            if full {
                return 0;
            }
            used += take;
            take
        })
        .collect()
}

/// Tokens a split computes less what its passes beyond the first prompt pass cost: a
/// chunk shorter than `c` joins the `c` pass when it ends its prompt within `pass_tokens`
/// of `c` (the engine pads it; one token rides the shared pass), else it is a pass of
/// its own length.
fn worth(chunks: &[usize], c: usize, pass_tokens: usize) -> i64 {
    let mut lengths: Vec<usize> = chunks
        .iter()
        .filter(|&&n| n > 1)
        .map(|&n| if c - n <= pass_tokens { c } else { n })
        .collect();
    lengths.sort_unstable();
    lengths.dedup();
    let used: usize = chunks.iter().sum();
    used as i64 - (lengths.len().saturating_sub(1) * pass_tokens) as i64
}

/// The chunk lengths worth trying: each sequence's own `left` (so it ends in this step),
/// and for each count of sequences, the longest chunk with which that many fit.
fn candidates(left: &[usize], room: usize) -> Vec<usize> {
    let longest = left.iter().copied().max().unwrap_or(0).min(room);
    let mut out: Vec<usize> = left.iter().map(|&n| n.min(room)).collect();
    for j in 1..=left.len() {
        let fits = |c: usize| left[..j].iter().map(|&n| n.min(c)).sum::<usize>() <= room;
        let (mut lo, mut hi) = (0, longest);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        out.push(lo);
    }
    out.retain(|&c| c > 0);
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_pass_cost_it_is_first_come_first_served() {
        assert_eq!(split_room(&[15, 100, 100], 105, 0), vec![15, 90, 0]);
        assert_eq!(split_room(&[300], 105, 8), vec![105]);
    }

    #[test]
    fn a_tail_and_a_head_become_equal_chunks() {
        // First come, first served: 15 and 90, three passes with the decodes' one.
        // Here the 15-token tail is padded to 18, and five heads take 18 each.
        let chunks = split_room(&[15, 100, 100, 100, 100, 100, 100, 100], 105, 8);
        assert_eq!(chunks, vec![15, 18, 18, 18, 18, 18, 0, 0]);
        let chunks = split_room(&[85, 85, 100, 100], 105, 8);
        assert_eq!(chunks, vec![35, 35, 35, 0]);
        // A tail too long to pad shares its length with the next head.
        assert_eq!(split_room(&[50, 100], 60, 8), vec![30, 30]);
    }

    #[test]
    fn short_last_chunks_are_padded_to_the_step_length() {
        // 33 and 33 end their prompts 6 short of 39: padded, one pass for all three.
        assert_eq!(split_room(&[33, 33, 85, 100], 105, 8), vec![33, 33, 39, 0]);
    }

    #[test]
    fn a_second_length_is_kept_when_it_is_worth_its_pass() {
        // Equal chunks would leave most of the room empty: 15 + 15 against 15 + 90.
        assert_eq!(split_room(&[15, 100], 105, 8), vec![15, 90]);
        // Where padding is cheap (a GPU), the 15 is padded to 90 instead.
        assert_eq!(split_room(&[15, 100], 105, 512), vec![15, 90]);
    }

    #[test]
    fn prompts_that_fit_whole_all_go() {
        assert_eq!(split_room(&[10, 12, 14], 512, 8), vec![10, 12, 14]);
        assert_eq!(split_room(&[100, 100], 0, 8), vec![0, 0]);
    }
}
