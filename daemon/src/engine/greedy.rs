//! Greedy picks on the host: the argmax of each output's full-vocabulary logits.
//!
//! At 64 sequences a step's logits are 64 × 50,257 floats; a plain `if v > best` loop
//! over them took longer than the GPU's whole forward pass. This one is written so the
//! compiler vectorizes it, and rows are spread over threads when there are many.

use rayon::prelude::*;

/// Rows below which threads cost more than they save.
const PARALLEL_MIN_ROWS: usize = 4;

/// Index of the largest value; the first one on ties; 0 for an empty or all-NaN row.
///
/// Two passes the compiler turns into SIMD: lane-wise maxima (`>` rather than
/// `f32::max`, whose NaN rules cost a blend per lane), then the first chunk holding the
/// maximum. Several times the speed of a plain `if v > best` loop (`bench/README.md`
/// measures the host argmax against device sampling).
pub fn argmax(v: &[f32]) -> usize {
    const LANES: usize = 16;
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = v.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..LANES {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &x in rest.iter().chain(&lanes) {
        if x > max {
            max = x;
        }
    }
    let mut base = 0;
    for c in v.chunks(LANES) {
        if c.iter().fold(false, |hit, &x| hit | (x == max)) {
            return base + c.iter().position(|&x| x == max).unwrap_or(0);
        }
        base += c.len();
    }
    0
}

/// [`argmax`] of every row, on rayon's threads when `parallel` and there are enough rows.
pub fn argmax_rows(rows: &[&[f32]], parallel: bool) -> Vec<usize> {
    if parallel && rows.len() >= PARALLEL_MIN_ROWS {
        rows.par_iter().map(|r| argmax(r)).collect()
    } else {
        rows.iter().map(|r| argmax(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The obvious definition the fast one must agree with.
    fn reference(v: &[f32]) -> usize {
        let mut best = 0;
        let mut best_value = f32::NEG_INFINITY;
        for (i, &x) in v.iter().enumerate() {
            if x > best_value {
                best_value = x;
                best = i;
            }
        }
        best
    }

    /// Deterministic pseudo-random floats with many ties (few distinct values).
    fn row(seed: u64, n: usize, distinct: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 33) % distinct) as f32 - distinct as f32 / 2.0
            })
            .collect()
    }

    #[test]
    fn agrees_with_the_plain_loop_on_ties_and_odd_lengths() {
        for n in [1, 2, 15, 16, 17, 31, 100, 50_257] {
            for seed in 0..20 {
                for distinct in [2, 7, 1000, u64::MAX >> 1] {
                    let v = row(seed, n, distinct);
                    assert_eq!(argmax(&v), reference(&v), "n={n} seed={seed} d={distinct}");
                }
            }
        }
    }

    #[test]
    fn edge_rows() {
        assert_eq!(argmax(&[]), 0);
        assert_eq!(argmax(&[f32::NEG_INFINITY; 20]), 0);
        assert_eq!(argmax(&[f32::NAN, 1.0, f32::NAN, 3.0, 3.0]), 3);
        let mut v = vec![0.0; 40];
        v[39] = 1.0;
        assert_eq!(argmax(&v), 39, "the largest value in the remainder");
        v[17] = 1.0;
        assert_eq!(argmax(&v), 17, "the first of two");
    }

    #[test]
    fn rows_in_parallel_match_rows_in_order() {
        let data: Vec<Vec<f32>> = (0..37).map(|s| row(s, 5000, 300)).collect();
        let rows: Vec<&[f32]> = data.iter().map(Vec::as_slice).collect();
        let serial = argmax_rows(&rows, false);
        assert_eq!(argmax_rows(&rows, true), serial);
        assert_eq!(serial[3], reference(rows[3]));
    }
}
