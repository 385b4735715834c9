//! Prefill pacing: how many prompt tokens may ride in a step while other sequences are
//! decoding, so that prompts get in fast and the running streams' inter-token gaps stay
//! within a stated bound.
//!
//! The bound: a step that carries prompt tokens takes at most `pace` × a decode-only
//! step of every busy slot ([`DEFAULT_PACE`] unless configured): the gap the running
//! streams see once the prompts being prefilled decode beside them. Against a decode step
//! of only the sequences decoding now, a wave of new prompts entering a nearly empty batch
//! was held to small chunks, and the batch ran half full for dozens of steps while they
//! trickled in.
//!
//! What a chunk adds to a step is modelled as a fixed part plus a part per token, fitted
//! over the recent mixed steps (Theil–Sen: the median of the pairwise slopes, so one slow
//! step, a first-time kernel or graph, does not move it). The fixed part is real: with a
//! KV stream per sequence llama.cpp runs a step's prompt chunks as extra forward passes,
//! and on a GPU such a pass costs about as much as the whole decode step, so a cost
//! taken per token only, measured on small chunks, kept chunks small and every one of
//! them paid the pass again. The chunk then fills the bound; where even the fixed part
//! does not fit in it, the chunk does at least as much work as that fixed part costs.
//! The baseline, a decode-only step of the same size, is measured: when no decode-only
//! step near the current size has been seen (a fresh daemon whose prompts never stop
//! arriving), the step carries no prompt tokens, once, to measure it. With no decodes
//! running, prompts get the whole step budget.

use std::collections::BTreeMap;

/// How much longer than a decode-only step a step with prompt tokens may take on a CPU,
/// unless configured.
///
/// The running streams see at most this gap while a prompt is prefilled, and a prompt of
/// cost `C` alone reaches its first token after about `C × pace / (pace − 1)`. 3 keeps
/// that within 1.5× of prefilling it with everything else stalled (bench/README.md has
/// the measurements behind the choice).
pub const DEFAULT_PACE: f64 = 3.0;
/// The pace on a GPU, unless configured. There a pass costs about two decode steps
/// whatever its prompt tokens, and a step of a new shape also loses the decode step's
/// CUDA graph: at 3 a step fits about one extra pass, and a wave of prompts trickled in
/// over dozens of steps, each paying again. At 8, ~100-token prompts ran 13-17% faster,
/// ~16-token ones the same, and a long prompt's first token stayed within llama-server's
/// (bench/README.md).
pub const GPU_PACE: f64 = 8.0;
/// Smallest chunk, so a long prompt always makes progress.
pub const MIN_CHUNK: usize = 8;
/// Chunk used before anything has been measured; the next step corrects it.
const FIRST_CHUNK: usize = 32;
/// How many steps apart two mixed steps may be to give the fit a slope ([`fit`]).
const PAIR_SPAN: usize = 4;
/// Weight of the newest sample in the decode-step average.
const ALPHA: f64 = 0.2;
/// Mixed steps the fit looks back over.
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
    /// Recent mixed steps: prompt tokens, and seconds beyond a decode-only step.
    mixed: Vec<(usize, f64)>,
    /// Where the next sample goes in `mixed` once it is full.
    next: usize,
    /// Seconds per prompt token when prompts ran alone (used until a mixed step is seen).
    alone_token: Option<f64>,
}

/// What a prompt chunk of `p` tokens adds to a step: `fixed + p × per_token` seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ChunkCost {
    fixed: f64,
    per_token: f64,
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

/// The middle value (the upper one of an even count); `v` must not be empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Fits `fixed + p × per_token` to `(p, seconds)` samples, oldest first: the median
/// slope over pairs of steps at most [`PAIR_SPAN`] apart whose sizes differ by a factor
/// of two or more (over closer sizes the step times' noise decides the slope; over steps
/// further apart, a long prompt's small late chunk, deep in its positions where a token
/// costs more, cost what a large early one did, and the slope between them was about
/// zero), then the median intercept. With no such pair, the median cost per token and no
/// fixed part: sizing chunks from that still settles where the step fills the bound, only
/// more slowly.
fn fit(samples: &[(usize, f64)]) -> ChunkCost {
    let mut slopes = Vec::new();
    for (i, &(p1, x1)) in samples.iter().enumerate() {
        for &(p2, x2) in samples.iter().skip(i + 1).take(PAIR_SPAN) {
            if p1.max(p2) >= 2 * p1.min(p2) {
                slopes.push((x2 - x1) / (p2 as f64 - p1 as f64));
            }
        }
    }
    if slopes.is_empty() {
        let per_token = median(samples.iter().map(|&(p, x)| x / p as f64).collect());
        return ChunkCost {
            fixed: 0.0,
            per_token,
        };
    }
    let per_token = median(slopes);
    let fixed = median(
        samples
            .iter()
            .map(|&(p, x)| x - per_token * p as f64)
            .collect(),
    );
    ChunkCost {
        fixed: fixed.max(0.0),
        per_token,
    }
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
                    let sample = (p, (secs - d).max(0.0));
                    if self.mixed.len() < WINDOW {
                        self.mixed.push(sample);
                    } else {
                        self.mixed[self.next] = sample;
                        self.next = (self.next + 1) % WINDOW;
                    }
                }
            }
        }
    }

    /// What a prompt chunk adds to a step: fitted over the recent mixed steps, else what
    /// prompt tokens cost alone.
    fn chunk_cost(&self) -> Option<ChunkCost> {
        if self.mixed.is_empty() {
            return self.alone_token.map(|per_token| ChunkCost {
                fixed: 0.0,
                per_token,
            });
        }
        let (newer, older) = self.mixed.split_at(self.next);
        Some(fit(&[older, newer].concat()))
    }

    /// The largest chunk the fit may be trusted with: twice the largest measured lately. A
    /// slope fitted over chunks of similar sizes is mostly noise, and once it said prompt
    /// tokens were nearly free, a 385-token chunk stalled the streams for 17 decode steps.
    fn growth_cap(&self) -> usize {
        let largest = self.mixed.iter().map(|&(p, _)| p).max();
        largest.map_or(usize::MAX, |p| 2 * p.max(FIRST_CHUNK))
    }

    /// Whether no decode-only step within a factor of two of `n` decodes was measured.
    fn needs_baseline(&self, n: usize) -> bool {
        self.decode_step
            .range(n.div_ceil(2)..=2 * n)
            .next()
            .is_none()
    }

    /// Prompt tokens allowed in the next step, given the rule, the pace, the decodes in it,
    /// the busy slots (decoding, prefilling or waiting for a prefix), and the tokens left
    /// in the budget after the decodes. Zero when the step should measure its decodes alone.
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
            PrefillChunk::Auto if self.needs_baseline(n_decode) => 0,
            PrefillChunk::Auto => match (
                decode_at(&self.decode_step, n_decode),
                decode_at(&self.decode_step, n_busy.max(n_decode)),
                self.chunk_cost(),
            ) {
                (Some(d), Some(full), Some(cost)) if cost.per_token > 0.0 => {
                    let spare = (pace * full - d).max(0.0);
                    let work = (spare - cost.fixed).max(cost.fixed);
                    let chunk = ((work / cost.per_token).round().min(1e9) as usize).max(MIN_CHUNK);
                    chunk.min(self.growth_cap())
                }
                (Some(_), _, Some(_)) => self.growth_cap(), // prompt tokens measured free
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
        settle_on(d, fixed, per_token, steps, |i| {
            if i % 3 == 2 {
                10
            } else {
                usize::MAX
            }
        })
    }

    /// [`settle`], where step `i`'s prompts have at most `waiting(i)` tokens to give.
    fn settle_on(
        d: f64,
        fixed: f64,
        per_token: f64,
        steps: usize,
        waiting: impl Fn(usize) -> usize,
    ) -> (Pacer, usize) {
        let mut p = Pacer::default();
        for i in 0..steps {
            p.observe(4, 0, d);
            let chunk = p
                .allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512)
                .min(waiting(i));
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
    fn before_any_measurement_the_decodes_are_measured_alone_then_the_first_chunk_is_modest() {
        let mut p = Pacer::default();
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512), 0);
        p.observe(4, 0, 0.020);
        assert_eq!(
            p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512),
            FIRST_CHUNK
        );
        // Prompt-only steps give a first estimate.
        p.observe(0, 100, 0.100);
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512), 40);
        // Twice as many decodes as any measured are close enough; more are measured again.
        assert_ne!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 8, 8, 512), 0);
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 9, 9, 512), 0);
        assert_eq!(
            p.allowance(PrefillChunk::Fixed(64), DEFAULT_PACE, 9, 9, 512),
            64
        );
    }

    #[test]
    fn a_pass_that_costs_a_decode_step_is_paid_once_for_a_big_chunk() {
        // GPU-like: 2.5 ms decode steps, 2.5 ms for the prompt chunk's own pass, 10 µs a
        // token. The step may take 7.5 ms: (5 - 2.5) ms / 10 µs = 250 tokens, though most
        // steps find only one 100-token prompt waiting. Costed per token at those chunks,
        // the pass held every chunk to 5 ms / 35 µs = 143 tokens.
        let (_, chunk) = settle_on(0.0025, 0.0025, 0.000010, 40, |i| {
            if i % 3 == 2 {
                usize::MAX
            } else {
                100
            }
        });
        assert!((240..=260).contains(&chunk), "{chunk}");
    }

    #[test]
    fn a_fixed_cost_beyond_the_bound_still_buys_a_chunk_worth_it() {
        // The pass alone (3 ms) exceeds the 2 ms the bound leaves over a 1 ms decode step:
        // no chunk meets the bound, so a chunk does as much work as its pass costs.
        let (_, chunk) = settle(0.001, 0.003, 0.000010, 40);
        assert!((290..=310).contains(&chunk), "{chunk}");
    }

    #[test]
    fn chunks_shrinking_deep_in_a_long_prompt_give_no_slope() {
        // Each chunk costs 30 ms: later ones are smaller, deeper in the prompt, where a
        // token costs more. The slope between the first and the last says tokens are
        // free; only steps close together are compared, and the chunk stays as large as
        // the cost per token measured allows.
        let mut p = Pacer::default();
        p.observe(4, 0, 0.012);
        for chunk in [60, 56, 52, 48, 44, 40, 36, 32, 30] {
            p.observe(4, chunk, 0.012 + 0.030);
        }
        let chunk = p.allowance(PrefillChunk::Auto, 4.0, 4, 4, 512);
        assert!((50..60).contains(&chunk), "{chunk}");
    }

    #[test]
    fn a_fit_that_finds_tokens_free_grows_the_chunk_by_doubling_only() {
        // Chunks of 20 and 40 tokens that happened to cost the same: the slope says prompt
        // tokens are free, which only the next, bigger chunk can confirm.
        let mut p = Pacer::default();
        p.observe(4, 0, 0.017);
        for chunk in [20, 40, 20, 40] {
            p.observe(4, chunk, 0.045);
        }
        assert_eq!(p.allowance(PrefillChunk::Auto, DEFAULT_PACE, 4, 4, 512), 80);
    }
}
