//! Prefill pacing: how many prompt tokens may ride in a step while other sequences are
//! decoding, so that prompts get in fast and the running streams' inter-token gaps stay
//! within a stated bound.
//!
//! The bound: a step that carries prompt tokens takes at most `pace` × a decode-only
//! step of every busy slot ([`DEFAULT_PACE`] unless configured): the gap the running
//! streams see once the prompts being prefilled decode beside them. Against a decode step
//! of only the sequences decoding now, a wave of new prompts entering a nearly empty batch
//! was held to small chunks, and the batch ran half full for dozens of steps while they
//! trickled in. The pacer keeps the recent mixed steps'
//! cost per prompt token *on top of* the decodes they rode with, and allows the chunk
//! that, at the median of those costs, fills the bound. The cost per token includes the
//! chunk's fixed part (such as llama.cpp's extra micro-batch for a prompt chunk when each
//! sequence has its own KV stream), so it is only right near the chunk size it was
//! measured at; but sizing the next chunk from it converges to the chunk that fills the
//! bound, from above or below. The median, not the mean: one slow step (a first-time
//! kernel or graph for a new shape) or a prompt's small last chunk must not shrink every
//! chunk after it. With no decodes running, prompts get the whole step budget.

use std::collections::BTreeMap;

/// How much longer than a decode-only step a step with prompt tokens may take, unless
/// configured.
///
/// The running streams see at most this gap while a prompt is prefilled, and a prompt of
/// cost `C` alone reaches its first token after about `C × pace / (pace − 1)`. 3 keeps
/// that within 1.5× of prefilling it with everything else stalled (bench/README.md has
/// the measurements behind the choice).
pub const DEFAULT_PACE: f64 = 3.0;
/// Smallest chunk, so a long prompt always makes progress.
pub const MIN_CHUNK: usize = 8;
/// Chunk used before anything has been measured; the next step corrects it.
const FIRST_CHUNK: usize = 32;
/// Weight of the newest sample in the decode-step average.
const ALPHA: f64 = 0.2;
/// Mixed steps the median looks back over.
const WINDOW: usize = 16;

/// How prompt chunks are sized while other sequences decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefillChunk {
    /// Sized from measured step times (see the module docs).
    Auto,
    /// At most this many prompt tokens per step.
    Fixed(usize),
}

/// What recent steps cost.
#[derive(Debug, Default)]
pub struct Pacer {
    /// Moving average of a decode-only step, in seconds, by its number of decodes: the
    /// baseline a mixed step is measured against must be one of the same size (a stale
    /// one-sequence baseline under four decodes charged their cost to the prompt tokens).
    decode_step: BTreeMap<usize, f64>,
    /// Recent mixed steps' seconds per prompt token beyond a decode-only step.
    per_token: Vec<f64>,
    /// Where the next sample goes in `per_token` once it is full.
    next: usize,
    /// Seconds per prompt token when prompts ran alone (used until a mixed step is seen).
    alone_token: Option<f64>,
}

/// A decode-only step of `n` decodes, in seconds: measured, else interpolated between the
/// nearest sizes measured, else extended along the line through the two largest sizes
/// measured (never below the largest), else the one size measured.
fn decode_at(steps: &BTreeMap<usize, f64>, n: usize) -> Option<f64> {
    let below = steps.range(..=n).next_back();
    let above = steps.range(n..).next();
    match (below, above) {
        (Some((&b, &tb)), Some((&a, &ta))) if a > b => {
            Some(tb + (ta - tb) * (n - b) as f64 / (a - b) as f64)
        }
        (Some((&b, &tb)), None) if b < n => {
            let slope = (steps.range(..b).next_back())
                .map_or(0.0, |(&b0, &t0)| ((tb - t0) / (b - b0) as f64).max(0.0));
            Some(tb + slope * (n - b) as f64)
        }
        (Some((_, &t)), _) | (None, Some((_, &t))) => Some(t),
        (None, None) => None,
    }
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
            (n, 0) => {
                let avg = self.decode_step.entry(n).or_insert(secs);
                *avg += ALPHA * (secs - *avg);
            }
            (0, p) => self.alone_token = ema(self.alone_token, secs / p as f64),
            (n, p) => {
                if let Some(d) = decode_at(&self.decode_step, n) {
                    let sample = (secs - d).max(0.0) / p as f64;
                    if self.per_token.len() < WINDOW {
                        self.per_token.push(sample);
                    } else {
                        self.per_token[self.next] = sample;
                        self.next = (self.next + 1) % WINDOW;
                    }
                }
            }
        }
    }

    /// Seconds a prompt token adds to a step: the median of the recent mixed steps, else
    /// what prompt tokens cost alone.
    fn cost_per_token(&self) -> Option<f64> {
        if self.per_token.is_empty() {
            return self.alone_token;
        }
        let mut sorted = self.per_token.clone();
        sorted.sort_by(f64::total_cmp);
        Some(sorted[sorted.len() / 2])
    }

    /// Prompt tokens allowed in the next step, given the rule, the pace, the decodes in it,
    /// the busy slots (decoding, prefilling or waiting for a prefix), and the tokens left
    /// in the budget after the decodes.
    pub fn allowance(
        &self,
        rule: PrefillChunk,
        pace: f64,
        n_decode: usize,
        n_busy: usize,
        room: usize,
    ) -> usize {
        if n_decode == 0 {
            return room;
        }
        let chunk = match rule {
            PrefillChunk::Fixed(n) => n,
            PrefillChunk::Auto => match (
                decode_at(&self.decode_step, n_decode),
                decode_at(&self.decode_step, n_busy.max(n_decode)),
                self.cost_per_token(),
            ) {
                (Some(d), Some(full), Some(per_token)) if per_token > 0.0 => {
                    let spare = (pace * full - d).max(0.0);
                    ((spare / per_token).round().min(1e9) as usize).max(MIN_CHUNK)
                }
                (Some(_), _, Some(_)) => room, // prompt tokens measured free
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
        assert_eq!(
            p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 0, 0, 512),
            512
        );
        assert_eq!(
            p.allowance(PrefillChunk::Fixed(4), DEFAULT_PACE, 0, 0, 512),
            512
        );
    }

    #[test]
    fn fixed_chunks_are_capped_by_room() {
        let p = Pacer::default();
        assert_eq!(
            p.allowance(PrefillChunk::Fixed(64), DEFAULT_PACE, 3, 3, 512),
            64
        );
        assert_eq!(
            p.allowance(PrefillChunk::Fixed(64), DEFAULT_PACE, 3, 3, 10),
            10
        );
    }

    /// Runs `steps` mixed steps against a machine whose decode-only step takes `d` and
    /// whose prompt chunk adds `fixed + p × per_token`, each step taking the pacer's
    /// allowance (every third one only 10 tokens, a prompt's last chunk), and returns the
    /// allowance then.
    fn settle(d: f64, fixed: f64, per_token: f64, steps: usize) -> (Pacer, usize) {
        let mut p = Pacer::default();
        for i in 0..steps {
            p.observe(4, 0, d);
            let mut chunk = p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512);
            if i % 3 == 2 {
                chunk = chunk.min(10);
            }
            p.observe(4, chunk, d + fixed + chunk as f64 * per_token);
        }
        let chunk = p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512);
        (p, chunk)
    }

    #[test]
    fn auto_chunk_fills_the_step_up_to_the_pace() {
        // Decode-only steps take 20 ms; each prompt token adds 1 ms: the chunk that makes
        // the step 3 × 20 ms is 40 tokens.
        let (_, chunk) = settle(0.020, 0.0, 0.001, 40);
        assert!((38..=40).contains(&chunk), "{chunk}");
    }

    #[test]
    fn a_fixed_cost_per_chunk_settles_where_the_step_fills_the_bound() {
        // An extra pass costing 10 ms per prompt chunk, then 0.5 ms a token: the step
        // reaches 60 ms at (40 - 10) / 0.5 = 60 tokens, whatever size the last chunks had.
        let (_, chunk) = settle(0.020, 0.010, 0.0005, 60);
        assert!((56..=62).contains(&chunk), "{chunk}");
    }

    #[test]
    fn one_slow_step_does_not_shrink_the_chunks_after_it() {
        let (mut p, before) = settle(0.020, 0.0, 0.001, 40);
        p.observe(4, 0, 0.020);
        p.observe(4, before, 1.0); // a first-time kernel, a page fault storm...
        let after = p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512);
        assert_eq!(after, before);
    }

    #[test]
    fn expensive_prompt_tokens_still_make_progress() {
        let (_, chunk) = settle(0.020, 0.0, 1.0, 20);
        assert_eq!(chunk, MIN_CHUNK);
    }

    #[test]
    fn cheap_prompt_tokens_take_the_whole_room() {
        // A GPU-like step: 2.5 ms decodes, 5 µs a prompt token.
        let (_, chunk) = settle(0.0025, 0.0002, 0.000005, 20);
        assert_eq!(chunk, 512);
    }

    /// Runs 40 steps of four decodes (28 ms) and the pacer's chunk (1 ms a token) with
    /// `n_busy` slots busy, and returns the allowance then.
    fn four_decodes_and_a_chunk(p: &mut Pacer, n_busy: usize) -> usize {
        for _ in 0..40 {
            let chunk = p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, n_busy, 512);
            p.observe(4, chunk, 0.028 + chunk as f64 * 0.001);
        }
        p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, n_busy, 512)
    }

    #[test]
    fn the_baseline_is_a_decode_step_of_the_same_size() {
        // One sequence decodes in 20 ms, four in 28 ms; a prompt token adds 1 ms. Once a
        // one-sequence baseline was measured, four decodes with a chunk are still judged
        // against 28 ms, not 20: the chunk that makes the step 3 × 28 ms is 56 tokens.
        let mut p = Pacer::default();
        for _ in 0..5 {
            p.observe(1, 0, 0.020);
        }
        p.observe(4, 0, 0.028);
        let chunk = four_decodes_and_a_chunk(&mut p, 4);
        assert!((54..=56).contains(&chunk), "{chunk}");
        // Sizes never measured are interpolated, or extended along the last two measured.
        let d = decode_at(&p.decode_step, 2).unwrap();
        assert!((d - 0.0227).abs() < 0.0001, "{d}");
        let d = decode_at(&p.decode_step, 7).unwrap();
        assert!((d - 0.036).abs() < 0.0001, "{d}");
    }

    #[test]
    fn prompts_entering_a_half_empty_batch_are_judged_by_the_full_one() {
        // Four sequences decode in 28 ms, sixteen in 64 ms; twelve more prompts are being
        // prefilled. The streams will see 64 ms steps once those prompts decode, so a step
        // may take 3 × 64 ms: (192 - 28) / 1 ms = 164 prompt tokens, not the 56 that a
        // bound of 3 × 28 ms allows.
        let mut p = Pacer::default();
        p.observe(4, 0, 0.028);
        p.observe(16, 0, 0.064);
        let chunk = four_decodes_and_a_chunk(&mut p, 16);
        assert!((162..=164).contains(&chunk), "{chunk}");
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512), 56);
    }

    #[test]
    fn before_any_measurement_the_first_chunk_is_modest() {
        let mut p = Pacer::default();
        assert_eq!(
            p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512),
            FIRST_CHUNK
        );
        // Prompt-only steps give a first estimate once decodes are measured.
        p.observe(0, 100, 0.100);
        p.observe(4, 0, 0.020);
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512), 40);
    }
}
