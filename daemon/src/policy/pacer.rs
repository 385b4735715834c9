//! Prefill pacing: how many prompt tokens may ride in a step while other sequences are
//! decoding, so that the running streams' inter-token latency stays smooth.
//!
//! A step's time is roughly `decode part + prefill tokens × cost per prompt token`. The
//! pacer keeps moving averages of both from the steps it has seen and allows the prompt
//! chunk that costs about `TARGET` × a decode-only step. With no decodes running, prompts
//! get the whole step budget.

/// Extra time a step with a prompt chunk may take, relative to a decode-only step.
const TARGET: f64 = 0.8;
/// Smallest chunk, so a long prompt always makes progress.
pub const MIN_CHUNK: usize = 8;
/// Chunk used before anything has been measured (small: an unmeasured step is a risk).
const FIRST_CHUNK: usize = MIN_CHUNK;
/// Weight of the newest sample in the moving averages.
const ALPHA: f64 = 0.2;

/// How prompt chunks are sized while other sequences decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillChunk {
    /// Sized from measured step times (see the module docs).
    Auto,
    /// At most this many prompt tokens per step.
    Fixed(usize),
}

/// Moving averages of step costs.
#[derive(Debug, Default)]
pub struct Pacer {
    /// Seconds of a decode-only step.
    decode_step: Option<f64>,
    /// Seconds per prompt token on top of the decodes.
    prefill_token: Option<f64>,
}

fn ema(old: Option<f64>, sample: f64) -> Option<f64> {
    Some(match old {
        Some(v) => v + ALPHA * (sample - v),
        None => sample,
    })
}

impl Pacer {
    /// Records a step of `n_decode` decode tokens and `n_prefill` prompt tokens.
    pub fn observe(&mut self, n_decode: usize, n_prefill: usize, secs: f64) {
        match (n_decode, n_prefill) {
            (0, 0) => {}
            (_, 0) => self.decode_step = ema(self.decode_step, secs),
            (0, p) => self.prefill_token = ema(self.prefill_token, secs / p as f64),
            (_, p) => {
                if let Some(d) = self.decode_step {
                    let extra = (secs - d).max(0.0) / p as f64;
                    self.prefill_token = ema(self.prefill_token, extra);
                }
            }
        }
    }

    /// Prompt tokens allowed in the next step, given the rule and the tokens left in the
    /// budget after the decodes.
    pub fn allowance(&self, rule: PrefillChunk, n_decode: usize, room: usize) -> usize {
        if n_decode == 0 {
            return room;
        }
        let chunk = match rule {
            PrefillChunk::Fixed(n) => n,
            PrefillChunk::Auto => match (self.decode_step, self.prefill_token) {
                (Some(d), Some(p)) if p > 0.0 => ((TARGET * d / p) as usize).max(MIN_CHUNK),
                _ => FIRST_CHUNK,
            },
        };
        chunk.min(room)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_decodes_means_the_whole_room() {
        let p = Pacer::default();
        assert_eq!(p.allowance(PrefillChunk::Auto, 0, 512), 512);
        assert_eq!(p.allowance(PrefillChunk::Fixed(4), 0, 512), 512);
    }

    #[test]
    fn fixed_chunks_are_capped_by_room() {
        let p = Pacer::default();
        assert_eq!(p.allowance(PrefillChunk::Fixed(64), 3, 512), 64);
        assert_eq!(p.allowance(PrefillChunk::Fixed(64), 3, 10), 10);
    }

    #[test]
    fn auto_chunk_costs_about_the_target_share_of_a_decode_step() {
        let mut p = Pacer::default();
        assert_eq!(p.allowance(PrefillChunk::Auto, 4, 512), FIRST_CHUNK);
        // Decode-only steps take 20 ms; each prompt token adds 1 ms.
        for _ in 0..50 {
            p.observe(4, 0, 0.020);
            p.observe(4, 30, 0.020 + 0.030);
        }
        let chunk = p.allowance(PrefillChunk::Auto, 4, 512);
        assert!((15..=16).contains(&chunk), "{chunk}");
        // Very expensive prompt tokens still make progress.
        for _ in 0..50 {
            p.observe(4, 10, 0.020 + 1.0);
        }
        assert_eq!(p.allowance(PrefillChunk::Auto, 4, 512), MIN_CHUNK);
    }
}
