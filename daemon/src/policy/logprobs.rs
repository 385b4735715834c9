//! Log-probabilities of a position's tokens, from its raw logits: what a request that
//! asks for `logprobs` gets with each token.
//!
//! A log-softmax over the whole vocabulary of the model's logits, before temperature,
//! top-k/p and penalties, as OpenAI reports them: the numbers describe the model, not the
//! sampler, so a greedy and a sampled request see the same ones at the same position.

use batchd_protocol::{TokenLogprobs, TopLogprob};

use super::{Engine, Token};

/// A token's log-probability and the most likely tokens at its position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Logprobs {
    pub logprob: f32,
    /// Most likely first; ties go to the lower token id, as the greedy pick does.
    pub top: Vec<(Token, f32)>,
}

/// The log-probability of `chosen` and of the `top` most likely tokens in `logits`.
///
/// Costs one pass of `exp` over the row; only requests that ask pay it.
pub fn from_logits(logits: &[f32], chosen: Token, top: usize) -> Logprobs {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    // Summed in f64: 150k small terms lose digits in f32.
    let sum: f64 = logits.iter().map(|&x| f64::from(x - max).exp()).sum();
    let log_z = f64::from(max) + sum.ln();
    let logprob = |x: f32| (f64::from(x) - log_z).min(0.0) as f32;
    let mut best: Vec<(Token, f32)> = Vec::with_capacity(top + 1);
    if top > 0 {
        // Keep the `top` largest in order; a new value enters only if it beats the last.
        for (t, &x) in logits.iter().enumerate() {
            if best.len() == top && x <= best[top - 1].1 {
                continue;
            }
            let at = best.partition_point(|&(_, y)| y >= x);
            best.insert(at, (t as Token, x));
            best.truncate(top);
        }
    }
    Logprobs {
        logprob: logits
            .get(chosen as usize)
            .map_or(f32::NEG_INFINITY, |&x| logprob(x)),
        top: best.into_iter().map(|(t, x)| (t, logprob(x))).collect(),
    }
}

/// What a client hears: the engine's numbers for batch entry `batch_index`, with the
/// bytes each token stands for.
pub(super) fn for_client<E: Engine>(
    engine: &E,
    batch_index: usize,
    chosen: Token,
    top: u8,
) -> TokenLogprobs {
    let l = engine.logprobs(batch_index, chosen, top as usize);
    let bytes = |t: Token| {
        let mut b = Vec::new();
        if !engine.is_eog(t) {
            engine.token_bytes(t, &mut b);
        }
        b
    };
    TokenLogprobs {
        bytes: bytes(chosen),
        logprob: l.logprob,
        top: l
            .top
            .into_iter()
            .map(|(token, logprob)| TopLogprob {
                token,
                bytes: bytes(token),
                logprob,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_softmax_over_the_row_with_the_largest_first() {
        let row = [1.0, 3.0, 2.0, 3.0, -1.0];
        let l = from_logits(&row, 2, 3);
        let z: f32 = row.iter().map(|x| x.exp()).sum();
        assert!((l.logprob - (2.0f32.exp() / z).ln()).abs() < 1e-6);
        let tokens: Vec<Token> = l.top.iter().map(|&(t, _)| t).collect();
        assert_eq!(tokens, [1, 3, 2], "ties go to the lower id");
        assert!(l.top.iter().all(|&(_, lp)| lp <= 0.0));
        assert_eq!(l.top[0].1, l.top[1].1);
        let total: f32 = (0..5).map(|t| from_logits(&row, t, 0).logprob.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn edges() {
        assert!(from_logits(&[0.5; 4], 0, 0).top.is_empty());
        assert_eq!(
            from_logits(&[0.5; 4], 1, 10).top.len(),
            4,
            "no more than the vocabulary"
        );
        let l = from_logits(&[0.0, 1000.0], 0, 1);
        assert!(l.logprob < -900.0 && l.top[0] == (1, 0.0), "{l:?}");
    }
}
