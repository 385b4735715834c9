//! How a step's prompt allowance is divided among the sequences still prefilling.
//!
//! With a KV stream per sequence, llama.cpp runs a step as one pass over a token of every
//! sequence, then one pass for each run of neighbouring sequences with the same number of
//! tokens left (`split_equal`). Handing the allowance out first come, first served puts
//! one prompt's tail and the next one's head in a step: two lengths, so two passes after
//! the shared one. Chunks of one length cost one.

use super::engine::may_pad;

/// Tokens of worth a split may give up to spread over fewer sequences ([`split_room`]).
const SPREAD_TOKENS: usize = super::pacer::MIN_CHUNK;

/// Each prefilling sequence's chunk this step, in admission order (0: none).
///
/// `left` is what each has still to compute, `started` whether it holds KV already (so
/// a sequence id), `room` the step's prompt allowance, and `pass_tokens` what one more
/// pass costs in prompt tokens (the engine pads a prompt's last chunk by up to that many
/// tokens to reach the step's chunk length; 0: passes do not depend on chunk lengths,
/// and first come, first served is kept). Every candidate chunk length `c` is tried,
/// each sequence taking `min(left, c)` in order until one does not fit, and none that
/// leaves out a started sequence (one left out between others' ids splits their run,
/// each part a pass of its own). The split kept is worth the most ([`worth`]), with the
/// fewest sequences among equals (the oldest prompts finish first). While others are
/// `decoding` (and the room is paced for them), one with fewer sequences within
/// [`SPREAD_TOKENS`] of the best is kept instead: a prompt started holds its slot
/// without decoding until it ends, and must ride in every step until then; spread thin,
/// twelve prompts crawled eight tokens a step beside three decodes. With none decoding,
/// the room is the whole step, and prompts that progress together keep it so.
pub fn split_room(
    left: &[usize],
    started: &[bool],
    room: usize,
    pass_tokens: usize,
    decoding: bool,
) -> Vec<usize> {
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
    let keeps_started = |chunks: &[usize]| chunks.iter().zip(started).all(|(&n, &s)| n > 0 || !s);
    let splits: Vec<(usize, Vec<usize>, i64)> = (candidates(left, room).into_iter())
        .map(|c| (c, fill(left, room, c)))
        .filter(|(_, chunks)| keeps_started(chunks))
        .map(|(c, chunks)| {
            let w = worth(left, &chunks, c, pass_tokens);
            (c, chunks, w)
        })
        .collect();
    let best = splits.iter().map(|s| s.2).max().unwrap_or(0);
    let spread = if decoding { SPREAD_TOKENS as i64 } else { 1 };
    let sequences = |chunks: &[usize]| chunks.iter().filter(|&&n| n > 0).count();
    (splits.into_iter())
        .filter(|s| s.2 + spread > best)
        .min_by_key(|(c, chunks, w)| (sequences(chunks), -w, std::cmp::Reverse(*c)))
        .map_or_else(|| fill(left, room, 1), |(_, chunks, _)| chunks)
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

/// Tokens a split computes less what its passes cost: one for each chunk length beyond
/// the first (a chunk shorter than `c` joins the `c` pass where the engine pads it,
/// [`may_pad`]; one token rides the pass every sequence shares), and one
/// for each length of tail it leaves too short to be padded to the longest prompt left
/// (12 of 16 tokens now leaves 4, a pass of their own later).
fn worth(left: &[usize], chunks: &[usize], c: usize, pass_tokens: usize) -> i64 {
    let distinct = |mut v: Vec<usize>| {
        v.sort_unstable();
        v.dedup();
        v.len()
    };
    // A chunk shorter than `c` ends its prompt.
    let lengths = (chunks.iter())
        .filter(|&&n| n > 1)
        .map(|&n| {
            if may_pad(n, true, c - n, pass_tokens) {
                c
            } else {
                n
            }
        })
        .collect();
    let longest = left.iter().copied().max().unwrap_or(0);
    let tails = (left.iter().zip(chunks))
        .filter(|&(&l, &n)| n > 0 && n < l && l - n + pass_tokens < longest)
        .map(|(&l, &n)| l - n)
        .collect();
    let used: usize = chunks.iter().sum();
    let passes = distinct(lengths).saturating_sub(1) + distinct(tails);
    used as i64 - (passes * pass_tokens) as i64
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
        assert_eq!(
            split_room(&[15, 100, 100], &[false; 3], 105, 0, true),
            vec![15, 90, 0]
        );
        assert_eq!(split_room(&[300], &[false; 1], 105, 8, true), vec![105]);
    }

    #[test]
    fn a_tail_and_a_head_become_equal_chunks() {
        // First come, first served: 15 and 90, three passes with the decodes' one.
        // Here the 15-token tail is padded to 22, and four heads take 22 each.
        let chunks = split_room(
            &[15, 100, 100, 100, 100, 100, 100, 100],
            &[false; 8],
            105,
            8,
            true,
        );
        assert_eq!(chunks, vec![15, 22, 22, 22, 22, 0, 0, 0]);
        let chunks = split_room(&[85, 85, 100, 100], &[false; 4], 105, 8, true);
        assert_eq!(chunks, vec![52, 52, 0, 0]);
        // A tail too long to pad is finished alone rather than cut beside a head.
        assert_eq!(
            split_room(&[50, 100], &[false; 2], 60, 8, true),
            vec![50, 0]
        );
    }

    #[test]
    fn short_last_chunks_are_padded_to_the_step_length() {
        // 33 and 33 end their prompts 6 short of 39: padded, one pass for all three.
        assert_eq!(
            split_room(&[33, 33, 85, 100], &[false; 4], 105, 8, true),
            vec![33, 33, 39, 0]
        );
    }

    #[test]
    fn a_second_length_is_kept_when_it_is_worth_its_pass() {
        // Equal chunks would leave most of the room empty: 15 + 15 against 15 + 90.
        assert_eq!(
            split_room(&[15, 100], &[false; 2], 105, 8, true),
            vec![15, 90]
        );
        // Where padding is cheap (a GPU), the 15 is padded to 90 instead.
        assert_eq!(
            split_room(&[15, 100], &[false; 2], 105, 512, true),
            vec![15, 90]
        );
    }

    #[test]
    fn no_prompt_is_cut_short_of_a_tail_that_cannot_be_padded() {
        // 18 chunks of 12 would compute more now than 13 whole prompts, but leave 18
        // tails of 4 that cannot be padded to the 16 of the others.
        let chunks = split_room(&[16; 18], &[false; 18], 216, 8, true);
        assert_eq!(chunks, [vec![16; 13], vec![0; 5]].concat());
    }

    #[test]
    fn no_started_sequence_is_left_out() {
        let left = [58, 89, 89, 89, 89, 89, 89, 89];
        assert_eq!(
            split_room(&left, &[false; 8], 94, 8, true)[..3],
            [47, 47, 0]
        );
        assert_eq!(split_room(&left, &[true; 8], 94, 8, true), vec![11; 8]);
    }

    #[test]
    fn prompts_are_not_spread_thin_for_a_token() {
        // Twelve chunks of 8 would compute one token more than five of 19.
        let left = [[41; 5].as_slice(), &[100; 9]].concat();
        let started = [[true; 5].as_slice(), &[false; 9]].concat();
        let chunks = split_room(&left, &started, 97, 8, true);
        assert_eq!(chunks, [vec![19; 5], vec![0; 9]].concat());
        // With nothing decoding, the token is worth it.
        let chunks = split_room(&left, &started, 97, 8, false);
        assert_eq!(chunks, [vec![8; 12], vec![0; 2]].concat());
    }

    #[test]
    fn prompts_that_fit_whole_all_go() {
        assert_eq!(
            split_room(&[10, 12, 14], &[false; 3], 512, 8, true),
            vec![10, 12, 14]
        );
        assert_eq!(split_room(&[100, 100], &[false; 2], 0, 8, true), vec![0, 0]);
    }
}
