//! The attention mask of one step, drawn as a grid.
//!
//! Rows and columns are the step's tokens in batch order; `#` marks where the row's token
//! may attend the column's: same sequence, and the column's position not after the row's.
//! Sequences of one batch never see each other, so the grid is block-diagonal, and
//! causal inside each block. Positions cached before this step are attended too but are
//! not drawn.

use batchd_protocol::{StepSequence, StepTrace};

use super::describe;

/// Largest step (in tokens) that is drawn.
pub const MAX_TOKENS: usize = 64;

/// One label per sequence of a step (enough for [`MAX_TOKENS`] one-token sequences).
const LABELS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+*";

/// The label of the `i`-th sequence of a step.
pub fn label(i: usize) -> char {
    LABELS.get(i).map_or('?', |&b| b as char)
}

/// The positions of a sequence's tokens in this step.
fn positions(seq: &StepSequence) -> std::ops::Range<u32> {
    seq.pos..seq.pos + seq.prefill.unwrap_or(1)
}

/// The mask of `step` with a legend, indented by two spaces; or a line saying it is
/// too big to draw.
pub fn render(step: &StepTrace) -> String {
    // (sequence index, position) of every token, in batch order.
    let tokens: Vec<(usize, u32)> = step
        .sequences
        .iter()
        .enumerate()
        .flat_map(|(i, s)| positions(s).map(move |p| (i, p)))
        .collect();
    if tokens.len() > MAX_TOKENS {
        return format!(
            "  mask: {} tokens, too big to draw (at most {MAX_TOKENS})\n",
            tokens.len()
        );
    }
    let width = tokens
        .iter()
        .map(|(_, p)| p.to_string().len())
        .max()
        .unwrap_or(1);
    let mut s = String::from("  mask (# = may attend; earlier positions not shown):\n");
    let header: String = tokens.iter().map(|&(i, _)| label(i)).collect();
    s.push_str(&format!("  {:width$}   {header}\n", ""));
    for &(row_seq, row_pos) in &tokens {
        let cells: String = tokens
            .iter()
            .map(|&(seq, pos)| {
                if seq == row_seq && pos <= row_pos {
                    '#'
                } else {
                    '.'
                }
            })
            .collect();
        s.push_str(&format!("  {} {row_pos:>width$} {cells}\n", label(row_seq)));
    }
    for (i, seq) in step.sequences.iter().enumerate() {
        let (kind, pos) = describe(seq);
        s.push_str(&format!(
            "  {} = slot {}, request {}, {kind} {pos}\n",
            label(i),
            seq.slot,
            seq.request
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(slot: u32, request: u64, prefill: Option<u32>, pos: u32) -> StepSequence {
        StepSequence {
            slot,
            request,
            prefill,
            pos,
            reused: 0,
        }
    }

    fn step(sequences: Vec<StepSequence>) -> StepTrace {
        StepTrace {
            step: 1,
            n_tokens: sequences.iter().map(|s| s.prefill.unwrap_or(1)).sum(),
            passes: 1,
            sequences,
            micros: 1000,
        }
    }

    #[test]
    fn block_diagonal_and_causal() {
        let s = step(vec![
            seq(1, 5, None, 42),
            seq(0, 7, Some(3), 0),
            seq(2, 9, None, 8),
        ]);
        let expected = "  mask (# = may attend; earlier positions not shown):
       ABBBC
  A 42 #....
  B  0 .#...
  B  1 .##..
  B  2 .###.
  C  8 ....#
  A = slot 1, request 5, decode(1) pos 42
  B = slot 0, request 7, PREFILL(3) pos 0..3
  C = slot 2, request 9, decode(1) pos 8
";
        assert_eq!(render(&s), expected);
    }

    #[test]
    fn a_prefill_chunk_continues_its_positions() {
        let s = step(vec![seq(0, 1, Some(2), 10)]);
        let text = render(&s);
        assert!(text.contains("  A 10 #.\n  A 11 ##\n"), "{text}");
        assert!(text.contains("PREFILL(2) pos 10..12"), "{text}");
    }

    #[test]
    fn too_big_is_said_not_drawn() {
        let s = step(vec![seq(0, 1, Some(60), 0), seq(1, 2, Some(5), 0)]);
        assert_eq!(
            render(&s),
            "  mask: 65 tokens, too big to draw (at most 64)\n"
        );
        let s = step(vec![seq(0, 1, Some(64), 0)]);
        assert_eq!(render(&s).lines().count(), 1 + 1 + 64 + 1);
    }

    #[test]
    fn labels() {
        assert_eq!(label(0), 'A');
        assert_eq!(label(26), 'a');
        assert_eq!(label(63), '*');
        assert_eq!(label(64), '?');
    }
}
